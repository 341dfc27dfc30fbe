@testable import AllocBenchHarness
import AllocBenchModel
import XCTest

/// An allocator that maps exactly N pages and writes M must be reported as exactly N and M, at
/// the peak and after it unmaps K of them.
final class GroundTruthTests: XCTestCase {
    /// Two allocations then two frees: the first allocation maps and writes, the first free unmaps.
    static let trace = "1: malloc 0x10 16\n1: malloc 0x20 16\n1: free 0x10\n1: free 0x20\n"

    private func measure(mapped: Int, written: Int, unmapped: Int) throws -> AllocatorResult {
        let path = try writeTrace(Self.trace)
        let benchmark = Benchmark(settings: RunSettings(touch: .none, timedRuns: 0, timeoutSeconds: 60, lenient: false),
                                  detail: [.timeline, .breakdown])
        let run = try benchmark.run(tracePath: path, allocators: [
            testingEntry("ground-truth", environment: ["ALLOCBENCH_GROUND_TRUTH=\(mapped) \(written) \(unmapped)"]),
        ])
        return try XCTUnwrap(run.results.first)
    }

    func testExactPagesForSeveralShapes() throws {
        let shapes = [(1, 1, 0), (1, 0, 0), (10, 3, 0), (10, 10, 5), (10, 2, 9), (64, 0, 64), (300, 120, 50), (300, 300, 300), (1000, 517, 483)]
        for (mapped, written, unmapped) in shapes {
            let result = try measure(mapped: mapped, written: written, unmapped: unmapped)
            let label = "N=\(mapped) M=\(written) K=\(unmapped)"
            XCTAssertEqual(result.status, .ok, "\(label): \(result.detail ?? "")")
            // The last K pages are unmapped; the written ones are the first M.
            let writtenAmongUnmapped = max(0, written - (mapped - unmapped))
            XCTAssertEqual(result.mappedPages, FinalAndPeak(final: mapped - unmapped, peak: mapped), label)
            XCTAssertEqual(result.touchedPages, FinalAndPeak(final: written - writtenAmongUnmapped, peak: written), label)
            XCTAssertEqual(result.mmSyscalls?["mmap"], 1, label)
            XCTAssertEqual(result.mmSyscalls?["munmap"], unmapped > 0 ? 1 : 0, label)
            XCTAssertEqual(result.runtimeMallocDeltaBytes, 0, "\(label): the replay allocated through malloc")
            // The timeline's largest point is the reported peak, and its points are in op order.
            let timeline = try XCTUnwrap(result.timeline)
            let ops = timeline.map(\.opsCompleted)
            XCTAssertEqual(ops, ops.sorted(), label)
            let baseline = try XCTUnwrap(result.baseline)
            XCTAssertEqual((timeline.map(\.sample.rssAnonKilobytes).max()! - baseline.rssAnonKilobytes) / 4, written, label)
        }
    }

    func testWrittenPagesAreFoundEvenWithNoSyscallAfterThem() throws {
        // Nothing is unmapped: the only reads are the begin mark, the mmap (before the writes) and
        // the end mark, so the peak must come from the end mark.
        let result = try measure(mapped: 40, written: 33, unmapped: 0)
        XCTAssertEqual(result.touchedPages, FinalAndPeak(final: 33, peak: 33))
    }
}

final class FailureRowTests: XCTestCase {
    private func run(_ names: [String], trace: String, timeout: Double = 30) throws -> [AllocatorResult] {
        let path = try writeTrace(trace)
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 1, timeoutSeconds: timeout, lenient: false))
        return try benchmark.run(tracePath: path, allocators: names.map {
            testingEntry($0, environment: ["ALLOCBENCH_GROUND_TRUTH=4 1 0"])
        }).results
    }

    static let sixMallocs = (1...6).map { "1: malloc 0x\($0)0 32" }.joined(separator: "\n") + "\n"

    func testCrashTimeoutAndFailuresGetRowsAndTheOthersComplete() throws {
        let results = try run(["crashing", "ground-truth", "hanging", "out-of-memory", "misaligned"], trace: Self.sixMallocs, timeout: 2)
        XCTAssertEqual(results.map(\.allocator), ["crashing", "ground-truth", "hanging", "out-of-memory", "misaligned"])
        XCTAssertEqual(results[0].status, .crashed)
        XCTAssertEqual(results[0].detail, "SIGSEGV after op 2")
        XCTAssertEqual(results[1].status, .ok, "a crash in one child does not touch the next")
        XCTAssertEqual(results[2].status, .timedOut)
        XCTAssertEqual(results[2].detail, "timed out after op 1")
        XCTAssertEqual(results[3].status, .failed)
        XCTAssertEqual(results[3].detail, "out of memory at op 4")
        XCTAssertEqual(results[4].status, .failed)
        XCTAssertEqual(results[4].detail, "misaligned block at op 1")
    }

    func testThreadsOfTheChildAreTracedToo() throws {
        let result = try XCTUnwrap(try run(["threaded"], trace: Self.sixMallocs).first)
        XCTAssertEqual(result.status, .ok, "the helper thread's mmap failed: \(result.detail ?? "")")
        XCTAssertGreaterThanOrEqual(result.touchedPages?.peak ?? 0, 8)
        XCTAssertGreaterThanOrEqual(result.mmSyscalls?["mmap"] ?? 0, 2, "the thread's stack and its 8 pages")
    }

    /// A self-report that the child could pass only in part fails the conformance suite, naming
    /// what does not fit, instead of losing statistics on the way to the parent.
    func testASelfReportThatDoesNotFitFailsConformance() throws {
        let result = try runCommand(TestPaths.testingChild, ["conformance", "chatty"])
        XCTAssertEqual(result.status, 4, result.stderr)
        XCTAssertTrue(result.stderr.contains("self-report: 41 statistics; the control block holds 40"), result.stderr)
        XCTAssertTrue(result.stderr.contains("self-report: the name \(String(repeating: "n", count: 60)) is longer than 55 bytes"),
                      result.stderr)
        XCTAssertTrue(result.stderr.contains("self-report before the replay: 9 statistics; the control block holds 8"), result.stderr)
        XCTAssertFalse(result.stderr.contains("alignment") || result.stderr.contains("overlap"), "otherwise conformant: \(result.stderr)")
    }

    func testAModuleAllocatorThatCallsMallocIsFlagged() throws {
        let results = try run(["malloc-calling"], trace: Self.sixMallocs)
        XCTAssertEqual(results.first?.status, .ok)
        XCTAssertGreaterThanOrEqual(results.first?.runtimeMallocDeltaBytes ?? 0, 6 * (32 + 64 * 1024))
    }
}

/// The timeline and the per-region breakdown agree with the totals they explain.
final class TimelineAndBreakdownTests: XCTestCase {
    func testGroundTruthBreakdownNamesTheAllocatorsMapping() throws {
        let path = try writeTrace(GroundTruthTests.trace)
        let benchmark = Benchmark(settings: RunSettings(touch: .none, timedRuns: 0, timeoutSeconds: 60, lenient: false),
                                  detail: [.timeline, .breakdown])
        let run = try benchmark.run(tracePath: path, allocators: [
            testingEntry("ground-truth", environment: ["ALLOCBENCH_GROUND_TRUTH=50 20 10"]),
        ])
        let breakdown = try XCTUnwrap(run.results.first?.breakdown)
        XCTAssertEqual(breakdown.peak, [RegionUsage(region: "anonymous mmaps", touchedPages: 20, mappedPages: 50)])
        XCTAssertEqual(breakdown.end, [RegionUsage(region: "anonymous mmaps", touchedPages: 20, mappedPages: 40)])
        XCTAssertEqual(breakdown.newMappingsAtEnd.map(\.mappedPages), [40])
        XCTAssertEqual(breakdown.newMappingsAtEnd.map(\.touchedPages), [20])
    }

    func testOnARealTraceTheRegionsSumToTheTotalsAndTheTimelineReachesThePeak() throws {
        guard let trace = TestPaths.sharedTrace("real/gcc-hello.txt") else { return }
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 0, timeoutSeconds: 120, lenient: false),
                                  detail: [.timeline, .breakdown])
        let run = try benchmark.run(tracePath: trace, allocators: catalog.entries.filter(\.isAvailable))
        XCTAssertFalse(run.results.isEmpty)
        let live = try XCTUnwrap(run.liveBytes)
        XCTAssertEqual(live.map(\.liveBytes).max(), run.trace.peakLiveBytes, "the ideal line reaches the ideal's peak")
        XCTAssertEqual(live.map(\.opsCompleted), live.map(\.opsCompleted).sorted())
        XCTAssertLessThanOrEqual(live.count, 4002)
        for result in run.results {
            let name = result.allocator
            XCTAssertEqual(result.status, .ok, "\(name): \(result.detail ?? "")")
            let touched = try XCTUnwrap(result.touchedPages, name)
            let mapped = try XCTUnwrap(result.mappedPages, name)
            let breakdown = try XCTUnwrap(result.breakdown, name)
            XCTAssertEqual(breakdown.end.reduce(0) { $0 + $1.touchedPages }, touched.final, "\(name) end touched: \(breakdown.end)")
            XCTAssertEqual(breakdown.end.reduce(0) { $0 + $1.mappedPages }, mapped.final, "\(name) end mapped: \(breakdown.end)")
            XCTAssertEqual(breakdown.peak.reduce(0) { $0 + $1.touchedPages }, touched.peak, "\(name) peak touched: \(breakdown.peak)")

            let timeline = try XCTUnwrap(result.timeline, name)
            let baseline = try XCTUnwrap(result.baseline, name)
            XCTAssertGreaterThanOrEqual(timeline.count, 1000, "\(name): evenly spaced points are there")
            XCTAssertLessThanOrEqual(timeline.count, 4000, name)
            XCTAssertEqual(timeline.map(\.opsCompleted), timeline.map(\.opsCompleted).sorted(), "\(name): monotone in op index")
            let highest = timeline.map(\.sample.rssAnonKilobytes).max()! - baseline.rssAnonKilobytes
            XCTAssertEqual(highest / 4, touched.peak, "\(name): the timeline's maximum is the exact peak")
            let highestMapped = timeline.map(\.sample.vmSizeKilobytes).max()! - baseline.vmSizeKilobytes
            XCTAssertEqual(highestMapped / 4, mapped.peak, name)
            XCTAssertLessThanOrEqual(timeline.map(\.liveBytes).max() ?? 0, run.trace.peakLiveBytes, name)
        }
    }

    func testBoundingKeepsThePeakAndTheEnds() {
        var points: [TimelinePoint] = []
        for index in 0..<10_000 {
            let rss = index == 7_777 ? 1_000_000 : (index * 37) % 5000
            points.append(TimelinePoint(opsCompleted: index, sample: MemorySample(rssAnonKilobytes: rss)))
        }
        let bounded = Timeline.bounded(points, to: 400)
        XCTAssertLessThanOrEqual(bounded.count, 400)
        XCTAssertEqual(bounded.first?.opsCompleted, 0)
        XCTAssertEqual(bounded.last?.opsCompleted, 9_999)
        XCTAssertTrue(bounded.contains { $0.opsCompleted == 7_777 })
        XCTAssertEqual(bounded.map(\.opsCompleted), bounded.map(\.opsCompleted).sorted())
    }
}
