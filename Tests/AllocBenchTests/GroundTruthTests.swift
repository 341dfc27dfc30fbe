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
