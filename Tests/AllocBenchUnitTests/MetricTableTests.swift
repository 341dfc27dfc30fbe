import AllocBenchGate
import AllocBenchModel
import AllocBenchReport
import Foundation
import XCTest

/// Every output shows the same metric set, the one of `Metric.all`: a row whose every metric has a
/// value of its own is rendered in each format, and each value is looked for there.
final class MetricTableTests: XCTestCase {
    /// Distinct values, so that finding one in an output means that metric was printed.
    static let row = AllocatorResult(
        allocator: "slab", status: .ok, touchedPages: FinalAndPeak(final: 1101, peak: 1102),
        mappedPages: FinalAndPeak(final: 1103, peak: 1104), idealPages: 1001, overhead: 1.1,
        minorFaults: 1105, pageTablesKilobytes: FinalAndPeak(final: 1108, peak: 1112),
        mmSyscalls: ["mmap": 1121, "munmap": 1122, "brk": 1123, "madvise": 1124, "mremap": 1125, "other": 1126],
        nsPerOp: TimePerOp(runs: [77.5]),
        baseline: MemorySample(rssAnonKilobytes: 1000, vmSizeKilobytes: 9000, pageTablesKilobytes: 40),
        // Counters in kB: lazy free 1131 pages at the end, 1132 at the touched peak; RssAnon 3000 and 3100 pages up.
        endSample: MemorySample(rssAnonKilobytes: 13000, vmSizeKilobytes: 9000, pageTablesKilobytes: 40, lazyFreeKilobytes: 4524),
        touchedPeakSample: MemorySample(rssAnonKilobytes: 13400, vmSizeKilobytes: 9000, pageTablesKilobytes: 40, lazyFreeKilobytes: 4528),
        processEndSample: MemorySample(rssAnonKilobytes: 2201, vmSizeKilobytes: 2203, pageTablesKilobytes: 2205,
                                       rssFileKilobytes: 2207, stackKilobytes: 2209),
        processPeakSample: MemorySample(rssAnonKilobytes: 2202, vmSizeKilobytes: 2204, pageTablesKilobytes: 2206,
                                        rssFileKilobytes: 2208, stackKilobytes: 2210),
        mallocProvider: "slab", handOvers: HandOvers(count: 40, nsPerOp: TimePerOp(runs: [1141.5])))
    static let glibc = AllocatorResult(
        allocator: "glibc", status: .ok, touchedPages: FinalAndPeak(final: 1, peak: 1), mappedPages: FinalAndPeak(final: 1, peak: 1),
        idealPages: 1001, overhead: 0.001, minorFaults: 1, pageTablesKilobytes: FinalAndPeak(final: 0, peak: 0),
        mmSyscalls: [:], nsPerOp: TimePerOp(runs: [50]), mallocProvider: "libc.so.6")
    static let run = TraceRun(
        trace: TraceSummary(path: "t.txt", name: "t", lines: 20_000, ops: 20_000, threads: 1, slots: 10, peakLiveBytes: 4_000_000,
                            finalLiveBytes: 0, idealPages: 1001, anomaliesSkipped: 0, failedAllocationsSkipped: 0),
        results: [glibc, row])
    static let context = Metric.Context(run: run, pageSize: 4096)
    static let report = RunReport(environment: GateFixtures.environment,
                                  settings: RunSettings(touch: .pages, timedRuns: 1, timeoutSeconds: 60, lenient: false), runs: [run])

    /// How each metric's value reads in a text output.
    func expectedTexts() throws -> [(metric: Metric, text: String)] {
        try Metric.all.map { metric in
            let value = try XCTUnwrap(metric.read(Self.row, Self.context), "\(metric.key) has no value in the fixture row")
            if case .listed(_, let label) = metric.column { return (metric, "\(label) \(metric.text(value))") }
            return (metric, metric.text(value))
        }
    }

    func testTheFixtureGivesEveryMetricADistinctValue() throws {
        let texts = try expectedTexts().map(\.text)
        XCTAssertEqual(Set(texts).count, texts.count, "two metrics print the same text: \(texts)")
    }

    func testTheTableMarkdownAndHTMLShowEveryMetric() throws {
        let formatter = ReportFormatter(useColor: false)
        let outputs = [
            "table": try formatter.render(Self.report, as: .table),
            "markdown": try formatter.render(Self.report, as: .markdown),
            "html": HTMLReport.render(Self.report),
        ]
        for (name, output) in outputs {
            // The rows of slab, one per table: lines of text, or HTML table rows, however wrapped.
            let rows = name == "html" ? output.components(separatedBy: "<tr") : output.components(separatedBy: "\n")
            let allocatorLine = try XCTUnwrap(rows.first { $0.contains("slab") && $0.contains("1103") }, "\(name): no row for slab")
            let processLine = try XCTUnwrap(rows.first { $0.contains("slab") && $0.contains("2201") }, "\(name): no whole-process row for slab")
            for (metric, text) in try expectedTexts() {
                let line = metric.section == .wholeProcess ? processLine : allocatorLine
                XCTAssertTrue(line.contains(text), "\(name) does not show \(metric.key) (\(text)) in \(line)")
            }
            for column in ReportFormatter.columns + ReportFormatter.wholeProcessColumns {
                XCTAssertTrue(output.contains(column.title), "\(name) has no column \(column.title)")
            }
        }
    }

    func testCSVHasAColumnPerMetricKey() throws {
        let csv = try ReportFormatter(useColor: false).render(Self.report, as: .csv).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let header = csv[0].map(String.init)
        let slab = try XCTUnwrap(csv.first { $0.count > 1 && $0[1] == "slab" })
        for metric in Metric.all {
            let index = try XCTUnwrap(header.firstIndex(of: metric.key), "CSV has no column \(metric.key)")
            let value = try XCTUnwrap(Double(slab[index]), "CSV \(metric.key) is '\(slab[index])'")
            XCTAssertEqual(value, metric.read(Self.row, Self.context) ?? .nan, accuracy: 0.0001, metric.key)
        }
    }

    func testJSONKeepsEveryMetric() throws {
        let decoded = try RunReport.decode(try Self.report.encoded())
        let row = try XCTUnwrap(decoded.runs.first?.results.first { $0.allocator == "slab" })
        for metric in Metric.all {
            XCTAssertEqual(metric.read(row, Metric.Context(run: decoded.runs.first, pageSize: 4096)), metric.read(Self.row, Self.context), metric.key)
        }
    }

    func testTheGateRecordsAndComparesEveryGatedMetric() throws {
        let baseline = try BaselineFile.record(Self.run, environment: Self.report.environment, settings: Self.report.settings,
                                               conditions: GateFixtures.conditions).get()
        XCTAssertEqual(Set(try XCTUnwrap(baseline.allocators["slab"]).keys), Set(Metric.gated.map(\.key)))
        let snapshot = GateSnapshot(report: Self.report, conditions: GateFixtures.conditions, source: "run")
        let comparison = Gate.compare(baseline: snapshot, current: snapshot, tolerances: ToleranceTable(), command: "compare")
        XCTAssertEqual(comparison.pair("t", "slab")?.metrics.map(\.metric), Metric.gated.map(\.key))
        XCTAssertEqual(Set(Metric.gated.map(\.key)), Set(Metric.all.filter(\.isGated).map(\.key)))
        XCTAssertEqual(Metric.all.filter { !$0.isGated }.map(\.key),
                       ["touched_not_lazy_final", "touched_not_lazy_peak", "ideal_pages", "overhead", "ns_per_op", "hand_over_ns_per_op"],
                       "only what follows from gated metrics (and absolute time) is shown without being gated")
    }

    /// A per-thread replay's hand-overs have a column only where some row has them: a serial run's
    /// tables leave it out, and CSV keeps its key with empty values.
    func testTheHandOverColumnIsLeftOutWhereNoRowHasIt() throws {
        var serialRow = Self.row
        serialRow.handOvers = nil
        let run = TraceRun(trace: Self.run.trace, results: [Self.glibc, serialRow])
        let report = RunReport(environment: Self.report.environment, settings: Self.report.settings, runs: [run])
        let formatter = ReportFormatter(useColor: false)
        let title = Metric.handOverNanosecondsPerOp.title
        for output in [try formatter.render(report, as: .table), try formatter.render(report, as: .markdown), HTMLReport.render(report)] {
            XCTAssertFalse(output.contains(title), output)
        }
        XCTAssertTrue(try formatter.render(Self.report, as: .table).contains(title), "a row with hand-overs shows the column")
        let csv = try formatter.render(report, as: .csv).split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false) }
        let index = try XCTUnwrap(csv[0].firstIndex(of: Substring(Metric.handOverNanosecondsPerOp.key)))
        XCTAssertEqual(csv[2][index], "")
    }
}
