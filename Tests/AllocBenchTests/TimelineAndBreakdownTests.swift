@testable import AllocBenchHarness
import AllocBenchModel
import XCTest

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
