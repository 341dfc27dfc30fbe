import AllocBenchGate
import AllocBenchHarness
import AllocBenchModel
import Foundation
import XCTest

/// Which environment facts fail which rows (docs/gating.md, "Environment"): a new machine of the
/// same kind passes; a fact that can change page counts fails only the rows it can change.
final class GateEnvironmentTests: XCTestCase {
    typealias Row = GateFixtures.Row

    let rows = [Row("glibc"), Row("slab"), Row("jemalloc"), Row("mimalloc")]

    func compare(_ change: (inout RunEnvironment) -> Void, current: [Row]? = nil,
                 options: GateOptions = GateOptions()) throws -> GateReport {
        var environment = GateFixtures.environment
        change(&environment)
        return try GateFixtures.compare(GateFixtures.report(rows: rows),
                                        GateFixtures.report(rows: current ?? rows, environment: environment), options: options)
    }

    func testAnotherKernelBuildOfTheSameReleaseIsANoteAndPasses() throws {
        let result = try compare { $0.kernel = "6.1.0-test-v1272" }
        XCTAssertEqual(result.exitCode, 0, GateRenderer.summary(result))
        XCTAssertEqual(result.environmentDifferences.map(\.field), ["kernel"])
        XCTAssertEqual(result.environmentDifferences.first?.effect, .describes)
        XCTAssertEqual(result.environmentDifferences.first?.fails, false)
        XCTAssertTrue(result.notes.contains("kernel: 6.1.0-test (baseline) → 6.1.0-test-v1272 (now): describes the machine only, not compared"),
                      "\(result.notes)")
        XCTAssertTrue(result.pairs.allSatisfy { $0.outcome == .passed })
    }

    func testANewKernelReleaseWarnsNamingTheGroundTruthTestAndFailsOnlyWithStrictEnv() throws {
        let warned = try compare { $0.kernel = "6.8.0-test" }
        XCTAssertEqual(warned.exitCode, 0)
        let warning = try XCTUnwrap(warned.notes.first { $0.hasPrefix("warning: kernel release 6.1.0 (baseline) → 6.8.0 (now)") }, "\(warned.notes)")
        XCTAssertTrue(warning.contains("`swift test --filter GroundTruthTests`"), warning)

        let strict = try compare({ $0.kernel = "6.8.0-test" }, options: GateOptions(strictEnvironment: true))
        XCTAssertEqual(strict.exitCode, 3)
        XCTAssertEqual(strict.pairs.map(\.outcome), Array(repeating: .environmentChanged, count: rows.count), "the kernel counts every row")
        XCTAssertEqual(strict.pair("djb", "slab")?.detail, "kernel_release 6.1.0 → 6.8.0")
    }

    func testANewJemallocFailsOnlyJemallocsRowsWhileASlabRegressionIsStillReported() throws {
        let current = rows.map { $0.allocator == "slab" ? $0.with { $0.touched.peak += 1 } : $0 }
        let result = try compare({ $0.jemalloc = "5.4.0" }, current: current)
        XCTAssertEqual(result.exitCode, 3, "3 outranks the regression")
        XCTAssertEqual(result.pair("djb", "jemalloc")?.outcome, .environmentChanged)
        XCTAssertEqual(result.pair("djb", "jemalloc")?.detail, "jemalloc 5.3.0 → 5.4.0")
        XCTAssertEqual(result.pair("djb", "slab")?.outcome, .regressed)
        XCTAssertEqual(result.metric("djb", "slab", "touched_peak")?.verdict, .regression)
        XCTAssertEqual(result.pair("djb", "glibc")?.outcome, .passed)
        XCTAssertEqual(result.pair("djb", "mimalloc")?.outcome, .passed)
        XCTAssertEqual(result.environmentDifferences.first?.allocators, ["jemalloc"])

        let text = try GateRenderer().render(result, as: .text)
        XCTAssertTrue(text.contains("jemalloc: 5.3.0 (baseline) → 5.4.0 (now), on djb — affects jemalloc rows"), text)
        XCTAssertTrue(text.contains("djb/slab: regression"), text)
        XCTAssertTrue(text.contains("djb/jemalloc: environment changed — jemalloc 5.3.0 → 5.4.0"), text)

        let allowed = try compare({ $0.jemalloc = "5.4.0" }, current: current, options: GateOptions(allowEnvironmentChange: true))
        XCTAssertEqual(allowed.exitCode, 2, "with --allow-env-change the numbers decide")
    }

    func testAPreloadLibraryChangeFailsOnlyItsRow() throws {
        let baseline = GateFixtures.report(rows: rows, environment: withLibrary("libmimalloc.so.2.0 (fnv1a64 0000000000000001)"))
        let current = GateFixtures.report(rows: rows, environment: withLibrary("libmimalloc.so.2.1 (fnv1a64 0000000000000002)"))
        let result = try GateFixtures.compare(baseline, current)
        XCTAssertEqual(result.exitCode, 3)
        XCTAssertEqual(result.pairs.filter { $0.outcome == .environmentChanged }.map(\.allocator), ["mimalloc"])
        XCTAssertEqual(result.environmentDifferences.map(\.field), ["library:mimalloc"])
    }

    func withLibrary(_ identity: String) -> RunEnvironment {
        var environment = GateFixtures.environment
        environment.allocatorLibraries = ["mimalloc": identity]
        return environment
    }

    func testAPageSizeChangeFailsEveryRow() throws {
        let result = try compare { $0.pageSize = 16384 }
        XCTAssertEqual(result.exitCode, 3)
        XCTAssertEqual(result.pairs.map(\.outcome), Array(repeating: .environmentChanged, count: rows.count))
        XCTAssertNil(result.environmentDifferences.first?.allocators, "every row")
        XCTAssertTrue(GateRenderer.summary(result).contains("page_size 4096 → 16384 (every row)"), GateRenderer.summary(result))
    }

    func testTheHugePageModeFailsEveryRow() throws {
        let baseline = GateFixtures.report(rows: rows, environment: with { $0.transparentHugePages = "madvise" })
        let current = GateFixtures.report(rows: rows, environment: with { $0.transparentHugePages = "always" })
        XCTAssertEqual(try GateFixtures.compare(baseline, current).pairs.map(\.outcome),
                       Array(repeating: .environmentChanged, count: rows.count))
    }

    func with(_ change: (inout RunEnvironment) -> Void) -> RunEnvironment {
        var environment = GateFixtures.environment
        change(&environment)
        return environment
    }

    func testHostCPUAndCoreCountOnlyDescribeTheMachine() throws {
        let baseline = GateFixtures.report(rows: rows, environment: with { $0.hostname = "a"; $0.cpuModel = "Xeon"; $0.cores = 2 })
        let current = GateFixtures.report(rows: rows, environment: with { $0.hostname = "b"; $0.cpuModel = "EPYC"; $0.cores = 4 })
        let result = try GateFixtures.compare(baseline, current)
        XCTAssertEqual(result.exitCode, 0)
        XCTAssertEqual(result.environmentDifferences.map(\.field), ["hostname", "cpu", "cores"])
        XCTAssertEqual(result.notes.filter { $0.contains("describes the machine only") }.count, 3)
    }

    func testACountFactTheBaselineDoesNotRecordIsNotedNotCompared() throws {
        let result = try compare { $0.transparentHugePages = "madvise" }
        XCTAssertEqual(result.exitCode, 0)
        XCTAssertTrue(result.notes.contains { $0.hasPrefix("transparent_hugepages is not recorded in the baseline") }, "\(result.notes)")
    }

    func testTheKernelReleaseIsTheLeadingDottedNumbers() {
        XCTAssertEqual(EnvironmentFact.kernelRelease("6.18.44-fc-v782"), "6.18.44")
        XCTAssertEqual(EnvironmentFact.kernelRelease("6.1.0-18-amd64"), "6.1.0")
        XCTAssertEqual(EnvironmentFact.kernelRelease("5.15.0"), "5.15.0")
        XCTAssertEqual(EnvironmentFact.kernelRelease("6.8.rc1"), "6.8")
        XCTAssertEqual(EnvironmentFact.kernelRelease("custom"), "custom")
    }

    /// docs/gating.md's table names every fact and says what it does, in the table's own words.
    func testTheDocumentedTableIsTheCodesTable() throws {
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let document = try String(contentsOf: packageRoot.appendingPathComponent("docs/gating.md"), encoding: .utf8)
        let words: [EnvironmentFact.Effect: String] = [
            .countsEveryRow: "every row", .countsOwnRow: "its own rows", .kernelRelease: "warning", .describes: "note",
        ]
        for fact in EnvironmentFact.all {
            let row = try XCTUnwrap(document.split(separator: "\n").first { $0.hasPrefix("| `\(fact.name)` |") },
                                    "docs/gating.md has no table row for \(fact.name)")
            XCTAssertTrue(row.contains("| \(words[fact.effect] ?? "") |"), "docs/gating.md: \(fact.name) should say '\(words[fact.effect] ?? "")': \(row)")
        }
    }
}
