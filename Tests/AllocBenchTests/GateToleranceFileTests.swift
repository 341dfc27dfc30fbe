import AllocBenchGate
@testable import AllocBenchHarness
import AllocBenchModel
import Foundation
import XCTest

/// The committed gate (Benchmarks/baselines and the Makefile) keeps its promises: our own
/// allocators are gated exactly, and a test run never writes the baselines it gates on.
final class GateToleranceFileTests: XCTestCase {
    let pageMetrics = [Metric.touchedFinal, .touchedPeak, .mappedFinal, .mappedPeak]

    func testTheCommittedTolerancesKeepEveryModuleAllocatorExact() throws {
        let path = TestPaths.packageRoot + "/Benchmarks/baselines/tolerances.txt"
        var table = ToleranceTable()
        for override in try ToleranceTable.parseFile(try String(contentsOfFile: path, encoding: .utf8), path: path) {
            table.add(override, source: path)
        }
        let modules = try AllocatorCatalog.discover(in: TestPaths.products).entries.filter { $0.kind == .module }.map(\.name)
        XCTAssertTrue(modules.contains("slab") && modules.contains("bss-arena"), "\(modules)")
        for module in modules + ["an-allocator-added-later"] {
            for metric in pageMetrics {
                XCTAssertEqual(table.tolerance(for: metric, allocator: module), .exact,
                               "\(path) loosens \(metric.key) for \(module), one of our own allocators")
            }
        }
        XCTAssertNotEqual(table.tolerance(for: .touchedPeak, allocator: "jemalloc"), .exact,
                          "jemalloc's layout-dependent pages need the measured allowance (docs/gating.md)")
    }

    /// `make -n` prints every command `make test` would run (and runs the recursive `$(MAKE) gate`
    /// the same way): none of them may record baselines.
    func testMakeTestNeverRecordsBaselines() throws {
        let dryRun = try runCommand("/usr/bin/make", ["-n", "--no-print-directory", "test"], workingDirectory: TestPaths.packageRoot)
        XCTAssertEqual(dryRun.status, 0, dryRun.stderr)
        XCTAssertTrue(dryRun.stdout.contains("allocbench check --baseline Benchmarks/baselines"), dryRun.stdout)
        for line in dryRun.stdout.split(separator: "\n") {
            XCTAssertFalse(line.contains("baseline update") || line.contains("make baselines") || line.contains("--output Benchmarks/baselines"),
                           "make test would write the baselines: \(line)")
        }
        XCTAssertTrue(dryRun.stdout.contains("Benchmarks/baselines changed during the run"),
                      "make test no longer checks that the baselines are unchanged after the run")
    }
}
