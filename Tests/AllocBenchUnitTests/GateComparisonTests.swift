import AllocBenchGate
import AllocBenchHarness
import AllocBenchModel
import Foundation
import XCTest

final class GateComparisonTests: XCTestCase {
    typealias Row = GateFixtures.Row

    let glibc = Row("glibc")
    let jemalloc = Row("jemalloc")

    func testIdenticalRunsPassWithExitZero() throws {
        let report = GateFixtures.report(rows: [glibc, jemalloc])
        let result = try GateFixtures.compare(report, report)
        XCTAssertEqual(result.outcome, .passed)
        XCTAssertEqual(result.exitCode, 0)
        XCTAssertEqual(result.pairs.map(\.allocator), ["glibc", "jemalloc"])
        XCTAssertTrue(result.pairs.allSatisfy { $0.metrics.allSatisfy { $0.verdict == .unchanged || $0.verdict == .notGated } })
    }

    func testMorePagesIsARegressionWithExitTwoNamingTheMetricAndTheMove() throws {
        let baseline = GateFixtures.report(rows: [glibc, jemalloc])
        let current = GateFixtures.report(rows: [glibc, jemalloc.with { $0.touched.peak = 15 }])
        let result = try GateFixtures.compare(baseline, current)
        XCTAssertEqual(result.outcome, .regressed)
        XCTAssertEqual(result.exitCode, 2)
        let metric = try XCTUnwrap(result.metric("djb", "jemalloc", "touched_peak"))
        XCTAssertEqual(metric.verdict, .regression)
        XCTAssertEqual(metric.baseline, 12)
        XCTAssertEqual(metric.current, 15)
        XCTAssertEqual(metric.change, 3)
        XCTAssertEqual(metric.relativeChange ?? 0, 0.25, accuracy: 1e-12)
        XCTAssertEqual(result.pair("djb", "glibc")?.outcome, .passed)
        XCTAssertEqual(GateRenderer.summary(result),
                       "check: regression (exit 2): djb/jemalloc touched_peak 12 → 15 pages, +3 (+25.0%), tolerance ±0")
    }

    func testFewerPagesIsAnImprovementWithExitFour() throws {
        let baseline = GateFixtures.report(rows: [glibc, jemalloc])
        let current = GateFixtures.report(rows: [glibc, jemalloc.with { $0.mapped.final = 16 }])
        let result = try GateFixtures.compare(baseline, current)
        XCTAssertEqual(result.outcome, .improved)
        XCTAssertEqual(result.exitCode, 4)
        XCTAssertEqual(result.metric("djb", "jemalloc", "mapped_final")?.verdict, .improvement)
    }

    func testHigherIsBetterPolarityTurnsAnIncreaseIntoAnImprovement() {
        let throughput = Metric(key: "ops_per_second", title: "ops/s", unit: .calls, polarity: .higherIsBetter) { _, _ in nil }
        let pages = Metric(key: "pages", title: "pages", unit: .pages) { _, _ in nil }
        func snapshot(_ throughputValue: Double, _ pagesValue: Double) -> GateSnapshot {
            let settings = RunSettings(touch: .pages, timedRuns: 1, timeoutSeconds: 1, lenient: false)
            return GateSnapshot(source: "test", traces: [GateSnapshot.Trace(
                name: "t", ops: 1, peakLiveBytes: 1, environment: [:], settings: settings,
                pairs: [GateSnapshot.Pair(allocator: "a", metrics: ["ops_per_second": throughputValue, "pages": pagesValue])])])
        }
        let options = GateOptions(metrics: [throughput, pages])
        let faster = Gate.compare(baseline: snapshot(100, 5), current: snapshot(120, 5), tolerances: ToleranceTable(), options: options, command: "compare")
        XCTAssertEqual(faster.outcome, .improved)
        XCTAssertEqual(faster.metric("t", "a", "ops_per_second")?.verdict, .improvement)
        let slower = Gate.compare(baseline: snapshot(100, 5), current: snapshot(80, 5), tolerances: ToleranceTable(), options: options, command: "compare")
        XCTAssertEqual(slower.outcome, .regressed)
        let morePages = Gate.compare(baseline: snapshot(100, 5), current: snapshot(100, 6), tolerances: ToleranceTable(), options: options, command: "compare")
        XCTAssertEqual(morePages.metric("t", "a", "pages")?.verdict, .regression)
        XCTAssertTrue(Polarity.higherIsBetter.isWorse(1, than: 2))
        XCTAssertFalse(Polarity.lowerIsBetter.isWorse(1, than: 2))
    }

    func testRelativeToleranceScalesWithTheBaseline() throws {
        let baseline = GateFixtures.report(rows: [glibc.with { $0.minorFaults = 1000 }])
        let within = try GateFixtures.compare(baseline, GateFixtures.report(rows: [glibc.with { $0.minorFaults = 1050 }]))
        XCTAssertEqual(within.metric("djb", "glibc", "minor_faults")?.verdict, .withinTolerance, "5% of 1000 is 50")
        XCTAssertEqual(within.outcome, .passed)
        let beyond = try GateFixtures.compare(baseline, GateFixtures.report(rows: [glibc.with { $0.minorFaults = 1051 }]))
        XCTAssertEqual(beyond.metric("djb", "glibc", "minor_faults")?.verdict, .regression)
        XCTAssertEqual(beyond.exitCode, 2)
    }

    func testAbsoluteToleranceIsAFloorForSmallBaselines() throws {
        let baseline = GateFixtures.report(rows: [glibc.with { $0.minorFaults = 3 }])
        let within = try GateFixtures.compare(baseline, GateFixtures.report(rows: [glibc.with { $0.minorFaults = 7 }]))
        XCTAssertEqual(within.metric("djb", "glibc", "minor_faults")?.verdict, .withinTolerance, "5% of 3 is 0.15, but 4 faults are allowed")
        let beyond = try GateFixtures.compare(baseline, GateFixtures.report(rows: [glibc.with { $0.minorFaults = 8 }]))
        XCTAssertEqual(beyond.metric("djb", "glibc", "minor_faults")?.verdict, .regression)
        let absoluteOnly = try GateFixtures.compare(GateFixtures.report(rows: [glibc.with { $0.minorFaults = 1000 }]),
                                                    GateFixtures.report(rows: [glibc.with { $0.minorFaults = 1005 }]),
                                                    tolerances: ["minor_faults=4"])
        XCTAssertEqual(absoluteOnly.metric("djb", "glibc", "minor_faults")?.verdict, .regression, "an override replaces the relative part too")
    }

    func testToleranceOverridesLoosenOnlyTheirAllocator() throws {
        let baseline = GateFixtures.report(rows: [glibc, jemalloc])
        let current = GateFixtures.report(rows: [glibc.with { $0.touched.final = 12 }, jemalloc.with { $0.touched.final = 12 }])
        let result = try GateFixtures.compare(baseline, current, tolerances: ["jemalloc:touched_final=2"])
        XCTAssertEqual(result.metric("djb", "jemalloc", "touched_final")?.verdict, .withinTolerance)
        XCTAssertEqual(result.metric("djb", "glibc", "touched_final")?.verdict, .regression)
        XCTAssertEqual(result.outcome, .regressed)
    }

    func testAFailedReplayExitsOneAndOutranksEveryOtherVerdict() throws {
        let baseline = GateFixtures.report(rows: [glibc, jemalloc])
        var otherKernel = GateFixtures.environment
        otherKernel.kernel = "6.8.0-other"
        let current = GateFixtures.report(
            rows: [glibc.with { $0.touched.peak = 99 }, jemalloc.with { $0.status = .crashed; $0.detail = "SIGSEGV after op 3" }, Row("slab")],
            environment: otherKernel)
        let result = try GateFixtures.compare(baseline, current)
        XCTAssertEqual(result.outcome, .replayFailed)
        XCTAssertEqual(result.exitCode, 1)
        let pair = try XCTUnwrap(result.pair("djb", "jemalloc"))
        XCTAssertEqual(pair.status, .replayFailed)
        XCTAssertEqual(pair.detail, "current side: crashed: SIGSEGV after op 3")
    }

    func testAPairWithoutBaselineFailsClosedWithExitFive() throws {
        let baseline = GateFixtures.report(rows: [glibc])
        let current = GateFixtures.report(rows: [glibc.with { $0.touched.peak = 99 }, Row("slab")])
        let result = try GateFixtures.compare(baseline, current)
        XCTAssertEqual(result.outcome, .missing, "a missing baseline outranks a regression")
        XCTAssertEqual(result.exitCode, 5)
        XCTAssertEqual(result.pair("djb", "slab")?.status, .missingBaseline)
        XCTAssertTrue(GateRenderer.summary(result).contains("djb/slab: no baseline for this pair"), GateRenderer.summary(result))
    }

    func testABaselinePairMissingFromTheRunExitsFiveUnlessItsAllocatorWasNotSelected() throws {
        let baseline = GateFixtures.report(rows: [glibc, jemalloc])
        let current = GateFixtures.report(rows: [glibc])
        let removed = try GateFixtures.compare(baseline, current)
        XCTAssertEqual(removed.exitCode, 5)
        XCTAssertEqual(removed.pair("djb", "jemalloc")?.status, .missingCurrent)

        let selected = try GateFixtures.compare(baseline, current, options: GateOptions(selectedAllocators: ["glibc"]))
        XCTAssertEqual(selected.exitCode, 0)
        XCTAssertNil(selected.pair("djb", "jemalloc"))
        XCTAssertTrue(selected.notes.contains { $0.contains("djb/jemalloc") && $0.contains("--allocators") }, "\(selected.notes)")
    }

    func testATraceOnOneSideOnlyFailsClosed() throws {
        let baseline = GateFixtures.report(traces: [("djb", 5, [glibc]), ("ls", 82, [glibc])])
        let current = GateFixtures.report(traces: [("djb", 5, [glibc])])
        let result = try GateFixtures.compare(baseline, current)
        XCTAssertEqual(result.exitCode, 5)
        XCTAssertEqual(result.pair("ls", "glibc")?.status, .missingCurrent)
    }

    func testNothingToCompareFailsClosed() {
        let empty = GateSnapshot(source: "empty", traces: [])
        let result = Gate.compare(baseline: empty, current: empty, tolerances: ToleranceTable(), command: "compare")
        XCTAssertEqual(result.exitCode, 5)
    }

    func testBuildAndAddressRandomizationArePartOfTheEnvironment() {
        let report = GateFixtures.report(rows: [glibc])
        let baseline = GateSnapshot(report: report, conditions: MeasurementConditions(build: "debug", addressRandomization: true), source: "old")
        let current = GateSnapshot(report: report, conditions: MeasurementConditions(build: "release", addressRandomization: false), source: "new")
        let result = Gate.compare(baseline: baseline, current: current, tolerances: ToleranceTable(), command: "check")
        XCTAssertEqual(result.exitCode, 3)
        XCTAssertEqual(result.environmentDifferences.map(\.field), ["build", "address_randomization"])
        let unknown = GateSnapshot(report: report, conditions: nil, source: "run report")
        XCTAssertEqual(Gate.compare(baseline: baseline, current: unknown, tolerances: ToleranceTable(), command: "compare").exitCode, 0,
                       "a run report does not record them, so they are not compared")
    }

    func testExitCodesAndTheirPrecedence() throws {
        let order: [GateOutcome] = [.replayFailed, .missing, .environmentChanged, .regressed, .improved, .passed]
        XCTAssertEqual(order.map(\.exitCode), [1, 5, 3, 2, 4, 0])
        XCTAssertEqual(Set(GateOutcome.allCases), Set(order))

        // 5 outranks 3: a pair without baseline under a changed environment.
        var environment = GateFixtures.environment
        environment.glibc = "2.39"
        let result = try GateFixtures.compare(GateFixtures.report(rows: [glibc]),
                                              GateFixtures.report(rows: [glibc, Row("slab")], environment: environment))
        XCTAssertEqual(result.exitCode, 5)
        XCTAssertEqual(result.environmentDifferences.map(\.field), ["glibc"])
    }

    func testRegressionOutranksImprovementInOneRun() throws {
        let baseline = GateFixtures.report(rows: [glibc, jemalloc])
        let current = GateFixtures.report(rows: [glibc.with { $0.touched.peak = 11 }, jemalloc.with { $0.touched.peak = 13 }])
        let result = try GateFixtures.compare(baseline, current)
        XCTAssertEqual(result.pair("djb", "glibc")?.outcome, .improved)
        XCTAssertEqual(result.exitCode, 2)
    }

    func testTheSpreadOfTimedRunsIsTheirCoefficientOfVariation() {
        XCTAssertNil(TimePerOp(runs: [10]).coefficientOfVariation)
        XCTAssertEqual(TimePerOp(runs: [10, 12]).coefficientOfVariation ?? 0, 2.0.squareRoot() / 11, accuracy: 1e-12)
        XCTAssertEqual(TimePerOp(runs: [5, 5, 5]).coefficientOfVariation, 0)
    }

    /// A time ratio whose runs vary by more than a third of its tolerance is reported, not judged.
    func testTooNoisyATimeRatioIsNotGatedAndSaysWhy() throws {
        let baseline = GateFixtures.report(ops: 20_000, rows: [glibc.with { $0.nanosecondsPerOp = 100 }, jemalloc.with { $0.nanosecondsPerOp = 80 }])
        let steady = GateFixtures.report(ops: 20_000, rows: [glibc.with { $0.timedRuns = [99, 100, 101] },
                                                            jemalloc.with { $0.timedRuns = [129, 130, 131] }])
        XCTAssertEqual(try GateFixtures.compare(baseline, steady).metric("djb", "jemalloc", "ns_per_op_vs_glibc")?.verdict, .regression)
        // glibc's runs spread ±20%: more than a third of ±50%.
        let noisy = GateFixtures.report(ops: 20_000, rows: [glibc.with { $0.timedRuns = [80, 100, 120] },
                                                           jemalloc.with { $0.timedRuns = [129, 130, 131] }])
        let result = try GateFixtures.compare(baseline, noisy)
        XCTAssertEqual(result.metric("djb", "jemalloc", "ns_per_op_vs_glibc")?.verdict, .notGated)
        XCTAssertEqual(result.exitCode, 0)
        XCTAssertTrue(result.notes.contains { $0.hasPrefix("djb/jemalloc: ns_per_op_vs_glibc not gated: its timed runs vary by ±20.0%") },
                      "\(result.notes)")
    }

    func testTimeIsGatedAsARatioToGlibcInTheSameRunAndOnlyOnLongTraces() throws {
        // glibc twice as slow on the second machine, jemalloc too: the ratio, and the verdict, hold.
        let baseline = GateFixtures.report(ops: 20_000, rows: [glibc.with { $0.nanosecondsPerOp = 100 }, jemalloc.with { $0.nanosecondsPerOp = 80 }])
        let slowerMachine = GateFixtures.report(ops: 20_000, rows: [glibc.with { $0.nanosecondsPerOp = 200 }, jemalloc.with { $0.nanosecondsPerOp = 160 }])
        let same = try GateFixtures.compare(baseline, slowerMachine)
        XCTAssertEqual(same.exitCode, 0)
        XCTAssertEqual(same.metric("djb", "jemalloc", "ns_per_op_vs_glibc")?.current, 0.8)
        XCTAssertNil(same.metric("djb", "glibc", "ns_per_op_vs_glibc"), "glibc is the yardstick, not a row of the ratio")

        let slowerJemalloc = GateFixtures.report(ops: 20_000, rows: [glibc.with { $0.nanosecondsPerOp = 100 }, jemalloc.with { $0.nanosecondsPerOp = 121 }])
        let regressed = try GateFixtures.compare(baseline, slowerJemalloc)
        XCTAssertEqual(regressed.metric("djb", "jemalloc", "ns_per_op_vs_glibc")?.verdict, .regression, "1.21 is more than 50% above 0.8")
        XCTAssertEqual(regressed.exitCode, 2)
        let tighter = try GateFixtures.compare(
            baseline, GateFixtures.report(ops: 20_000, rows: [glibc.with { $0.nanosecondsPerOp = 100 }, jemalloc.with { $0.nanosecondsPerOp = 100 }]),
            tolerances: ["ns_per_op=+20%"])
        XCTAssertEqual(tighter.metric("djb", "jemalloc", "ns_per_op_vs_glibc")?.verdict, .regression, "1.0 is 25% above 0.8")

        let short = try GateFixtures.compare(
            GateFixtures.report(ops: 5, rows: [glibc, jemalloc.with { $0.nanosecondsPerOp = 50 }]),
            GateFixtures.report(ops: 5, rows: [glibc, jemalloc.with { $0.nanosecondsPerOp = 500 }]))
        XCTAssertEqual(short.metric("djb", "jemalloc", "ns_per_op_vs_glibc")?.verdict, .notGated)
        XCTAssertEqual(short.exitCode, 0)
        XCTAssertTrue(short.notes.contains { $0.contains("5 ops") }, "\(short.notes)")
    }

    func testAGatedMetricMeasuredOnOneSideOnlyFailsClosedUnlessSwitchedOff() throws {
        let baseline = GateFixtures.report(ops: 20_000, rows: [glibc, jemalloc])
        let untimed = GateFixtures.report(ops: 20_000, rows: [glibc.with { $0.nanosecondsPerOp = nil }, jemalloc.with { $0.nanosecondsPerOp = nil }])
        let result = try GateFixtures.compare(baseline, untimed)
        XCTAssertEqual(result.metric("djb", "jemalloc", "ns_per_op_vs_glibc")?.verdict, .missingCurrent)
        XCTAssertEqual(result.exitCode, 5)
        XCTAssertEqual(try GateFixtures.compare(baseline, untimed, tolerances: ["ns_per_op_vs_glibc=off"]).exitCode, 0)
    }

    func testSettingsDifferencesAreReportedButDoNotFail() throws {
        let report = GateFixtures.report(rows: [glibc])
        let result = try GateFixtures.compare(report, GateFixtures.report(rows: [glibc], touch: .none))
        XCTAssertEqual(result.exitCode, 0)
        let difference = try XCTUnwrap(result.settingsDifferences.first)
        XCTAssertEqual(result.settingsDifferences.count, 1)
        XCTAssertEqual([difference.field, difference.baseline, difference.current], ["touch", "pages", "none"])
        XCTAssertEqual(difference.traces, ["djb"])
    }

    func testMarkdownHasASummaryTableAndATableOfWhatMoved() throws {
        let baseline = GateFixtures.report(rows: [glibc, jemalloc])
        let current = GateFixtures.report(rows: [glibc.with { $0.minorFaults = 102 }, jemalloc.with { $0.touched.peak = 15 }])
        let markdown = try GateRenderer().render(try GateFixtures.compare(baseline, current), as: .markdown)
        XCTAssertTrue(markdown.hasPrefix("### ❌ allocbench check: regression (exit 2)\n"), markdown)
        XCTAssertTrue(markdown.contains("| djb | jemalloc | ❌ regression | 10 | 12 → **15** | 24 | 100 |"), markdown)
        XCTAssertTrue(markdown.contains("| djb | glibc | ✅ pass | 10 | 12 | 24 | 100 → 102 |"), markdown)
        XCTAssertTrue(markdown.contains("| djb | jemalloc | touched_peak | 12 | 15 | +3 (+25.0%) | ±0 | REGRESSION |"), markdown)
        XCTAssertTrue(markdown.contains("| djb | glibc | minor_faults | 100 | 102 | +2 (+2.0%) | ±5% or 4 | within tolerance |"), markdown)
    }

    func testJSONReportRoundTrips() throws {
        let report = try GateFixtures.compare(GateFixtures.report(rows: [glibc]), GateFixtures.report(rows: [glibc.with { $0.brk = 1 }]))
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let decoded = try decoder.decode(GateReport.self, from: try report.encoded())
        XCTAssertEqual(decoded.schema, "allocbench.gate/1")
        XCTAssertEqual(decoded.exitCode, 2)
        XCTAssertEqual(decoded.pairs, report.pairs)
    }

    // MARK: - Baseline files

    func testABaselineFileRecordsEveryMetricAndRoundTripsSorted() throws {
        let report = GateFixtures.report(ops: 20_000, rows: [glibc, jemalloc.with { $0.nanosecondsPerOp = 61.23456 }])
        guard case .success(let baseline) = BaselineFile.record(report.runs[0], environment: report.environment,
                                                                settings: report.settings, conditions: GateFixtures.conditions) else {
            return XCTFail("a successful run records")
        }
        XCTAssertEqual(baseline.schema, "allocbench.baseline/1")
        XCTAssertEqual(Set(try XCTUnwrap(baseline.allocators["jemalloc"]).keys), Set(Metric.gated.map(\.key)))
        XCTAssertEqual(baseline.allocators["jemalloc"]?["ns_per_op_vs_glibc"], 1.225, "rounded to 0.1%")
        XCTAssertNil(baseline.allocators["glibc"]?["ns_per_op_vs_glibc"])

        let data = try baseline.encoded()
        let text = String(decoding: data, as: UTF8.self)
        XCTAssertTrue(text.contains("\"schema\" : \"allocbench.baseline/1\""))
        XCTAssertTrue(text.contains("\"allocbench_version\" : \"0.1.0\""))
        let keys = text.split(separator: "\n").filter { $0.hasPrefix("  \"") }.map { String($0.split(separator: "\"")[1]) }
        XCTAssertEqual(keys, keys.sorted(), "top-level keys sorted")
        guard case .baseline(let decoded) = try GateSnapshot.decode(data, source: "djb.json") else { return XCTFail("decodes as a baseline") }
        XCTAssertEqual(decoded, baseline)

        let fromFile = GateSnapshot(baselines: [decoded], source: "dir")
        let fromRun = GateFixtures.snapshot(report)
        let result = Gate.compare(baseline: fromFile, current: fromRun, tolerances: ToleranceTable(), command: "check")
        XCTAssertEqual(result.exitCode, 0, GateRenderer.summary(result))
    }

    func testAFailedReplayIsNotRecordedAsABaseline() {
        let report = GateFixtures.report(rows: [glibc, jemalloc.with { $0.status = .failed; $0.detail = "out of memory at op 1" }])
        guard case .failure(let failed) = BaselineFile.record(report.runs[0], environment: report.environment,
                                                              settings: report.settings, conditions: GateFixtures.conditions) else {
            return XCTFail("a failed row must not become a baseline")
        }
        XCTAssertEqual(failed.rows.map(\.allocator), ["jemalloc"])
    }

    func testDecodingRejectsOtherSchemasAndUnknownMetricsNamingTheFile() throws {
        func message(_ json: String) -> String {
            do {
                _ = try GateSnapshot.decode(Data(json.utf8), source: "b/djb.json")
                return "decoded"
            } catch {
                return error.description
            }
        }
        XCTAssertEqual(message("[1]").prefix(26), "b/djb.json: not a JSON obj")
        XCTAssertEqual(message(#"{"schema": "allocbench.run/9"}"#),
                       "b/djb.json: schema 'allocbench.run/9'; expected allocbench.run/1 or allocbench.baseline/1")
        XCTAssertTrue(message(#"{"schema": "allocbench.baseline/1"}"#).hasPrefix("b/djb.json: not a valid allocbench.baseline/1 file (missing '"))

        let report = GateFixtures.report(rows: [glibc])
        guard case .success(let baseline) = BaselineFile.record(report.runs[0], environment: report.environment,
                                                                settings: report.settings, conditions: GateFixtures.conditions) else {
            return XCTFail("records")
        }
        let text = String(decoding: try baseline.encoded(), as: UTF8.self).replacingOccurrences(of: "\"brk_calls\"", with: "\"brk_cals\"")
        XCTAssertTrue(message(text).contains("allocator 'glibc' has unknown metric 'brk_cals'"), message(text))

        // A page count that is not a whole number from 0 to 2^53 is a malformed baseline (65),
        // never a regression or an improvement.
        let touched = #""touched_peak" : 12"#
        XCTAssertTrue(String(decoding: try baseline.encoded(), as: UTF8.self).contains(touched))
        for bad in ["13.7", "1e300", "18446744073709551616", "-5"] {
            let edited = String(decoding: try baseline.encoded(), as: UTF8.self).replacingOccurrences(of: touched, with: #""touched_peak" : "# + bad)
            XCTAssertTrue(message(edited).contains("allocator 'glibc', touched_peak is"), "\(bad): \(message(edited))")
            XCTAssertTrue(message(edited).contains("a count of pages is a whole number from 0 to 2^53"), message(edited))
        }

        guard case .run(let decoded) = try GateSnapshot.decode(try report.encoded(), source: "run.json") else { return XCTFail("a run report") }
        XCTAssertEqual(decoded, report)
    }
}

extension GateFixtures.Row {
    var brk: Int {
        get { syscalls["brk"] ?? 0 }
        set { syscalls["brk"] = newValue }
    }
}
