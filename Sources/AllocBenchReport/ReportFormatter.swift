import AllocBenchModel
import Foundation

/// The output formats of a run.
public enum ReportFormat: String, Sendable, CaseIterable {
    case table, json, csv, markdown
}

/// Renders a RunReport. Data only: diagnostics go to stderr elsewhere.
public struct ReportFormatter: Sendable {
    public var useColor: Bool

    public init(useColor: Bool) {
        self.useColor = useColor
    }

    public func render(_ report: RunReport, as format: ReportFormat) throws -> String {
        switch format {
        case .json: String(decoding: try report.encoded(), as: UTF8.self)
        case .table: table(report)
        case .csv: csv(report)
        case .markdown: markdown(report)
        }
    }

    // MARK: - Cells shared by every tabular format

    /// A column of the table (and of Markdown and HTML, which share its cells): one metric, or a
    /// group of metrics shown in one cell, in `Metric.all`'s order.
    public struct Column: Sendable {
        public var title: String
        public var metrics: [Metric]
        /// Text (the allocator, a list of syscalls), aligned left; numbers align right.
        public var isText: Bool
        /// "final/peak" of its metrics, whatever their own column (the whole-process table's
        /// share of the allocator is the allocator table's touched final and peak).
        public var joinsFinalAndPeak = false
    }

    /// The allocator, then every metric of `Metric.all` in the allocator's section.
    public static let columns: [Column] = columns(of: .allocator)

    /// The whole-process table: the allocator, every whole-process metric, then how many of the
    /// process's anonymous pages are the allocator's (touched final/peak).
    public static let wholeProcessColumns: [Column] = columns(of: .wholeProcess) + [
        Column(title: "allocator pages", metrics: [Metric.touchedFinal, Metric.touchedPeak], isText: false, joinsFinalAndPeak: true),
    ]

    /// The allocator, then every metric of `Metric.all` in `section`, grouped by column.
    static func columns(of section: Metric.Section) -> [Column] {
        var columns = [Column(title: "allocator", metrics: [], isText: true)]
        for metric in Metric.all where metric.section == section {
            switch metric.column {
            case .own:
                columns.append(Column(title: metric.title, metrics: [metric], isText: false))
            case .listed(let title, _), .finalPeak(let title):
                if let index = columns.firstIndex(where: { $0.title == title }) {
                    columns[index].metrics.append(metric)
                } else {
                    if case .listed = metric.column {
                        columns.append(Column(title: title, metrics: [metric], isText: true))
                    } else {
                        columns.append(Column(title: title, metrics: [metric], isText: false))
                    }
                }
            }
        }
        return columns
    }

    public static var columnTitles: [String] { columns.map(\.title) }

    /// `columns` without those of metrics shown only where measured that no row of `run` has
    /// (a per-thread replay's hand-overs, in a serial run).
    public static func columns(_ columns: [Column], shownIn run: TraceRun, context: Metric.Context) -> [Column] {
        columns.filter { column in
            guard !column.metrics.isEmpty, column.metrics.allSatisfy(\.isShownOnlyWhereMeasured) else { return true }
            return run.results.contains { result in result.isOK && column.metrics.contains { $0.read(result, context) != nil } }
        }
    }

    /// "crashed: SIGSEGV after op 2", "timed out after op 1", "failed: out of memory at op 4".
    public static func statusText(_ result: AllocatorResult) -> String {
        switch result.status {
        case .ok: "ok"
        case .timedOut: result.detail ?? "timed out"
        case .crashed, .failed: "\(result.status.rawValue): \(result.detail ?? "")"
        }
    }

    /// One cell per column; a failed row has its status in the second.
    public static func cells(_ result: AllocatorResult, in context: Metric.Context, columns: [Column] = columns) -> [String] {
        guard result.isOK else {
            return [result.allocator, statusText(result)] + Array(repeating: "", count: columns.count - 2)
        }
        return [result.allocator] + columns.dropFirst().map { cell($0, result, context) }
    }

    static func cell(_ column: Column, _ result: AllocatorResult, _ context: Metric.Context) -> String {
        func value(_ metric: Metric) -> Double? { metric.read(result, context) }
        guard let first = column.metrics.first else { return "" }
        if column.joinsFinalAndPeak {
            let parts = column.metrics.map { metric in value(metric).map(metric.text) }
            return parts.contains { $0 == nil } ? "-" : parts.compactMap { $0 }.joined(separator: "/")
        }
        switch first.column {
        case .own where first.key == Metric.nanosecondsPerOp.key:
            return result.nsPerOp.map(timeSummary) ?? "-"
        case .own:
            return value(first).map(first.text) ?? "-"
        case .finalPeak:
            let parts = column.metrics.map { metric in value(metric).map(metric.text) }
            return parts.contains { $0 == nil } ? "-" : parts.compactMap { $0 }.joined(separator: "/")
        case .listed:
            guard column.metrics.contains(where: { value($0) != nil }) else { return "-" }
            let parts = column.metrics.compactMap { metric -> String? in
                guard case .listed(_, let label) = metric.column, let number = value(metric), number != 0 else { return nil }
                return "\(label) \(metric.text(number))"
            }
            return parts.isEmpty ? "none" : parts.joined(separator: ", ")
        }
    }

    /// "413.4 (410.2–415.0 ±0.6%)": the median, the range and the coefficient of variation.
    static func timeSummary(_ time: TimePerOp) -> String {
        guard time.runs.count > 1 else { return String(format: "%.1f", time.median) }
        let spread = time.coefficientOfVariation.map { String(format: " ±%.1f%%", $0 * 100) } ?? ""
        return String(format: "%.1f (%.1f–%.1f", time.median, time.min, time.max) + spread + ")"
    }

    /// " (at most 12 alive at once; 3 frees of 96 bytes and 1 realloc of 40 bytes cross threads)"
    /// for a trace of several threads; nothing for one thread, or a report that did not record it.
    static func threadActivity(_ trace: TraceSummary) -> String {
        guard trace.threads > 1, let activity = trace.threadActivity else { return "" }
        func plural(_ count: Int, _ noun: String) -> String { "\(count) \(noun)\(count == 1 ? "" : "s")" }
        return " (at most \(activity.peakAlive) alive at once; "
            + "\(plural(activity.crossThreadFrees, "free")) of \(activity.crossThreadFreedBytes) bytes and "
            + "\(plural(activity.crossThreadReallocs, "realloc")) of \(activity.crossThreadReallocatedBytes) bytes cross threads)"
    }

    public static func header(_ report: RunReport, _ run: TraceRun) -> [String] {
        let trace = run.trace
        let environment = report.environment
        var lines = [
            "trace \(trace.path): \(trace.ops) ops, \(trace.threads) thread\(trace.threads == 1 ? "" : "s")\(threadActivity(trace))"
                + (trace.threadMode == .perThread ? ", replayed on a thread each, one op at a time (ns/op without the hand-overs)" : "")
                + (trace.threadMode == .concurrent ? ", replayed on a thread each, all at once (pages not exact)" : "") + ", "
                + "peak live \(trace.peakLiveBytes) bytes (ideal \(trace.idealPages) page\(trace.idealPages == 1 ? "" : "s"))",
            "page size \(environment.pageSize) · kernel \(environment.kernel) · glibc \(environment.glibc)"
                + " · jemalloc \(environment.jemalloc ?? "not built") · touch \(report.settings.touch.rawValue)"
                + " · \(report.settings.timedRuns) timed run\(report.settings.timedRuns == 1 ? "" : "s")",
        ]
        if trace.anomaliesSkipped > 0 {
            lines.append("lenient: skipped \(trace.anomaliesSkipped) anomalous line\(trace.anomaliesSkipped == 1 ? "" : "s")")
        }
        if trace.failedAllocationsSkipped > 0 {
            lines.append("skipped \(trace.failedAllocationsSkipped) allocation\(trace.failedAllocationsSkipped == 1 ? "" : "s") recorded as failed (null result)")
        }
        return lines
    }

    // MARK: - Table

    func table(_ report: RunReport) -> String {
        var output = ""
        for (index, run) in report.runs.enumerated() {
            if index > 0 { output += "\n" }
            for line in Self.header(report, run) { output += line + "\n" }
            let context = Metric.Context(run: run, pageSize: report.environment.pageSize)
            if run.results.contains(where: { $0.processEndSample != nil }) {
                output += "\nwhole process, from its exec to the end of the replay (kB, end/peak; allocator pages: its touched final/peak):\n"
                output += tableLines(run, columns: Self.wholeProcessColumns, context: context)
            }
            output += "\nthe allocator, from the baseline to the end: pages are \(report.environment.pageSize / 1024) KiB; touched = RssAnon, mapped = VmSize\n"
            output += tableLines(run, columns: Self.columns(Self.columns, shownIn: run, context: context), context: context)
            let breakdown = Self.breakdownSection(run)
            if !breakdown.isEmpty { output += "\n" + breakdown.map { $0 + "\n" }.joined() }
            let notes = Self.notes(run, pageSize: report.environment.pageSize)
            if !notes.isEmpty {
                output += "\n" + notes.map { $0 + "\n" }.joined()
            }
        }
        return output
    }

    /// One aligned table of `run`'s rows. Failed rows print their status after the name instead of
    /// numbers, and do not widen columns.
    private func tableLines(_ run: TraceRun, columns: [Column], context: Metric.Context) -> String {
        let titles = columns.map(\.title)
        let measured = run.results.filter(\.isOK).map { Self.cells($0, in: context, columns: columns) }
        let widths = titles.indices.map { column in
            ([titles] + measured).map { $0[column].count }.max() ?? 0
        }
        func aligned(_ cells: [String]) -> String {
            cells.enumerated().map { column, cell in
                columns[column].isText
                    ? cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
                    : String(repeating: " ", count: max(0, widths[column] - cell.count)) + cell
            }.joined(separator: "  ")
        }
        var output = bold(trimmed(aligned(titles))) + "\n"
        for result in run.results {
            let line = result.isOK
                ? aligned(Self.cells(result, in: context, columns: columns))
                : result.allocator.padding(toLength: widths[0], withPad: " ", startingAt: 0) + "  " + Self.statusText(result)
            output += trimmed(line) + "\n"
        }
        return output
    }

    private func trimmed(_ line: String) -> String {
        var line = line
        while line.hasSuffix(" ") { line.removeLast() }
        return line
    }

    /// "Where the pages went": each allocator's regions at the touched peak and at the end.
    static func breakdownSection(_ run: TraceRun) -> [String] {
        let rows = run.results.filter { $0.breakdown != nil }
        guard !rows.isEmpty else { return [] }
        var lines = ["where the pages went (touched / mapped pages, relative to the baseline):"]
        for result in rows {
            guard let breakdown = result.breakdown else { continue }
            func describe(_ usage: [RegionUsage]) -> String {
                usage.isEmpty ? "nothing" : usage.map { "\($0.region) \($0.touchedPages)/\($0.mappedPages)" }.joined(separator: ", ")
            }
            lines.append("  \(result.allocator) at peak: " + describe(breakdown.peak))
            lines.append("  \(result.allocator) at end:  " + describe(breakdown.end))
            if !breakdown.newMappingsAtEnd.isEmpty {
                let listed = breakdown.newMappingsAtEnd.prefix(6).map { "\($0.start) \($0.touchedPages)/\($0.mappedPages)" }
                let more = breakdown.newMappingsAtEnd.count > 6 ? ", … \(breakdown.newMappingsAtEnd.count - 6) more" : ""
                lines.append("  \(result.allocator) own mappings at end: " + listed.joined(separator: ", ") + more)
            }
        }
        return lines
    }

    /// Self-reported statistics and warnings, one line per allocator that has any.
    public static func notes(_ run: TraceRun, pageSize: Int) -> [String] {
        var lines: [String] = []
        for result in run.results {
            if run.trace.threadMode == .concurrent, result.threadMode == .perThread {
                lines.append("\(result.allocator): not thread-safe: replayed on its threads one op at a time, not concurrently")
            }
            if let delta = result.runtimeMallocDeltaBytes, delta != 0 {
                lines.append("warning: \(result.allocator): the process malloc gained \(delta) bytes during replay; the replay or the allocator called malloc")
            }
            if !result.selfReported.isEmpty {
                let pairs = result.selfReported.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }
                lines.append("\(result.allocator) self-reported: " + pairs.joined(separator: ", "))
            }
            if let after = result.selfReported["resident_bytes"], let before = result.selfReportedBaseline?["resident_bytes"],
               let touched = result.touchedPages {
                lines.append("\(result.allocator) cross-check: its own resident_bytes grew by \((after - before) / Int64(pageSize)) pages; RssAnon grew by \(touched.final) pages")
            }
        }
        return lines
    }

    private func bold(_ text: String) -> String {
        useColor ? "\u{1B}[1m" + text + "\u{1B}[0m" : text
    }

    // MARK: - CSV and Markdown

    /// One line per row: the trace, the allocator, its status, then every metric by key (and the
    /// timed runs' range), numbers in full precision.
    func csv(_ report: RunReport) -> String {
        let header = ["trace", "allocator", "status", "detail"] + Metric.all.map(\.key) + ["ns_per_op_min", "ns_per_op_max", "ns_per_op_cv"]
        var lines = [header.joined(separator: ",")]
        for run in report.runs {
            for result in run.results {
                let values = Metric.all.map { metric in
                    result.isOK ? metric.read(result, Metric.Context(run: run, pageSize: report.environment.pageSize)).map { metric.decimals == 0 ? metric.text($0) : String(format: "%.4f", $0) } ?? "" : ""
                }
                let range = [result.nsPerOp?.min, result.nsPerOp?.max].map { $0.map { String(format: "%.2f", $0) } ?? "" }
                    + [result.nsPerOp?.coefficientOfVariation.map { String(format: "%.4f", $0) } ?? ""]
                let fields = [run.trace.name, result.allocator, result.status.rawValue, result.detail ?? ""] + values + range
                lines.append(fields.map(Self.csvField).joined(separator: ","))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    static func csvField(_ value: String) -> String {
        value.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" })
            ? "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : value
    }

    func markdown(_ report: RunReport) -> String {
        var output = ""
        for run in report.runs {
            output += "### \(run.trace.name)\n\n"
            output += Self.header(report, run).map { $0 + "  \n" }.joined() + "\n"
            let context = Metric.Context(run: run, pageSize: report.environment.pageSize)
            var tables = [Self.columns(Self.columns, shownIn: run, context: context)]
            if run.results.contains(where: { $0.processEndSample != nil }) { tables.insert(Self.wholeProcessColumns, at: 0) }
            for columns in tables {
                output += "| " + columns.map(\.title).joined(separator: " | ") + " |\n"
                output += "|" + columns.map { $0.isText ? " --- |" : " ---: |" }.joined() + "\n"
                for result in run.results {
                    let cells = Self.cells(result, in: context, columns: columns).map { $0.replacingOccurrences(of: "|", with: "\\|") }
                    output += "| " + cells.joined(separator: " | ") + " |\n"
                }
                output += "\n"
            }
        }
        return output
    }
}
