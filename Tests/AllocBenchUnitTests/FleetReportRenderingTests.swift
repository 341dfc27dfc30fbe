import AllocBenchModel
import AllocBenchReport
import XCTest

/// A measured fleet shows in the HTML report's "Ten thousand small processes" section of its trace,
/// and only there.
final class FleetReportRenderingTests: XCTestCase {
    func testTheHTMLReportShowsAMeasuredFleetBesideTheEstimate() throws {
        let report = MetricTableTests.report
        var fleetResult = FleetResult(allocator: "slab", status: .ok, processes: 10_000,
                                      single: MemorySample(rssAnonKilobytes: 8, pageTablesKilobytes: 28))
        fleetResult.total = MemorySample(rssAnonKilobytes: 80_000, pageTablesKilobytes: 280_000)
        fleetResult.startSeconds = 9.5
        fleetResult.memAvailableDropKilobytes = 1_300_000
        fleetResult.harnessKilobytes = 40_000
        fleetResult.cgroup = FleetCgroupUsage(version: "v1", usageKilobytes: 1_400_000)
        let fleet = FleetReport(environment: report.environment, trace: report.runs[0].trace, processes: 10_000, touch: .pages,
                                results: [fleetResult])
        var otherTrace = fleet
        otherTrace.trace.name = "another"

        let html = HTMLReport.render(report, fleets: [fleet, otherTrace])
        XCTAssertTrue(html.contains("Measured: 10,000 real processes per allocator"), "the measured fleet's paragraph")
        XCTAssertEqual(html.components(separatedBy: "Measured: 10,000 real processes").count, 2, "only the fleet of this trace")
        XCTAssertTrue(html.contains(">1.000<"), "the ratio to 10,000 × the single process")
        XCTAssertTrue(html.contains(">126.0 KiB<"), "MemAvailable drop per process, allocbench's share left out")
        XCTAssertTrue(html.contains(">136.0 KiB<"), "the cgroup's usage per process")
        XCTAssertFalse(HTMLReport.render(report).contains("Measured:"), "no fleet, no measured section")
    }
}
