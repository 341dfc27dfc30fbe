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
        case .json: String(decoding: try report.encoded(), as: UTF8.self) + "\n"
        case .table: table(report)
        case .csv: csv(report)
        case .markdown: markdown(report)
        }
    }

    // MARK: - Cells shared by every tabular format

    public static let columns = [
        "allocator", "touched final", "touched peak", "mapped final", "mapped peak", "ideal", "overhead",
        "faults", "mm syscalls", "ns/op",
    ]

    /// The text columns (allocator, mm syscalls); the others are numbers, aligned right.
    static let leftAlignedColumns: Set<Int> = [0, 8]

    /// "crashed: SIGSEGV after op 2", "timed out after op 1", "failed: out of memory at op 4".
    public static func statusText(_ result: AllocatorResult) -> String {
        switch result.status {
        case .ok: "ok"
        case .timedOut: result.detail ?? "timed out"
        case .crashed, .failed: "\(result.status.rawValue): \(result.detail ?? "")"
        }
    }

    public static func cells(_ result: AllocatorResult) -> [String] {
        guard result.isOK, let touched = result.touchedPages, let mapped = result.mappedPages else {
            return [result.allocator, statusText(result)] + Array(repeating: "", count: columns.count - 2)
        }
        return [
            result.allocator,
            String(touched.final), String(touched.peak),
            String(mapped.final), String(mapped.peak),
            String(result.idealPages),
            result.overhead.map { String(format: "%.2f", $0) } ?? "-",
            result.minorFaults.map(String.init) ?? "-",
            syscallSummary(result.mmSyscalls),
            result.nsPerOp.map(timeSummary) ?? "-",
        ]
    }

    static func syscallSummary(_ counts: [String: Int]?) -> String {
        guard let counts else { return "-" }
        let parts = MemorySyscall.allCases.compactMap { kind -> String? in
            guard let count = counts[kind.rawValue], count > 0 else { return nil }
            return "\(kind.rawValue) \(count)"
        }
        return parts.isEmpty ? "none" : parts.joined(separator: ", ")
    }

    static func timeSummary(_ time: TimePerOp) -> String {
        time.runs.count > 1
            ? String(format: "%.1f (%.1f–%.1f)", time.median, time.min, time.max)
            : String(format: "%.1f", time.median)
    }

    public static func header(_ report: RunReport, _ run: TraceRun) -> [String] {
        let trace = run.trace
        let environment = report.environment
        var lines = [
            "trace \(trace.path): \(trace.ops) ops, \(trace.threads) thread\(trace.threads == 1 ? "" : "s"), "
                + "peak live \(trace.peakLiveBytes) bytes (ideal \(trace.idealPages) page\(trace.idealPages == 1 ? "" : "s"))",
            "page size \(environment.pageSize) · kernel \(environment.kernel) · glibc \(environment.glibc)"
                + " · jemalloc \(environment.jemalloc ?? "not built") · touch \(report.settings.touch)"
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
            output += "pages are \(report.environment.pageSize / 1024) KiB; touched = RssAnon, mapped = VmSize, both relative to the baseline\n\n"
            // Failed rows print their status after the name instead of numbers, and do not widen columns.
            let measured = run.results.filter(\.isOK).map(Self.cells)
            let widths = Self.columns.indices.map { column in
                ([Self.columns] + measured).map { $0[column].count }.max() ?? 0
            }
            func aligned(_ cells: [String]) -> String {
                cells.enumerated().map { column, cell in
                    Self.leftAlignedColumns.contains(column)
                        ? cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
                        : String(repeating: " ", count: max(0, widths[column] - cell.count)) + cell
                }.joined(separator: "  ")
            }
            output += bold(trimmed(aligned(Self.columns))) + "\n"
            for result in run.results {
                let line = result.isOK
                    ? aligned(Self.cells(result))
                    : result.allocator.padding(toLength: widths[0], withPad: " ", startingAt: 0) + "  " + Self.statusText(result)
                output += trimmed(line) + "\n"
            }
            let breakdown = Self.breakdownSection(run)
            if !breakdown.isEmpty { output += "\n" + breakdown.map { $0 + "\n" }.joined() }
            let notes = Self.notes(run, pageSize: report.environment.pageSize)
            if !notes.isEmpty {
                output += "\n" + notes.map { $0 + "\n" }.joined()
            }
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

    func csv(_ report: RunReport) -> String {
        let header = ["trace", "allocator", "status", "detail", "touched_final", "touched_peak", "mapped_final",
                      "mapped_peak", "ideal_pages", "overhead", "minor_faults", "page_tables_kb_final",
                      "mmap", "munmap", "brk", "madvise", "mremap", "ns_per_op_median", "ns_per_op_min", "ns_per_op_max"]
        var lines = [header.joined(separator: ",")]
        for run in report.runs {
            for result in run.results {
                let syscalls = MemorySyscall.allCases.map { kind in result.mmSyscalls?[kind.rawValue].map(String.init) ?? "" }
                let fields: [String] = [
                    run.trace.name, result.allocator, result.status.rawValue, result.detail ?? "",
                    result.touchedPages.map { String($0.final) } ?? "", result.touchedPages.map { String($0.peak) } ?? "",
                    result.mappedPages.map { String($0.final) } ?? "", result.mappedPages.map { String($0.peak) } ?? "",
                    String(result.idealPages), result.overhead.map { String(format: "%.4f", $0) } ?? "",
                    result.minorFaults.map(String.init) ?? "", result.pageTablesKilobytes.map { String($0.final) } ?? "",
                ] + syscalls + [
                    result.nsPerOp.map { String(format: "%.2f", $0.median) } ?? "",
                    result.nsPerOp.map { String(format: "%.2f", $0.min) } ?? "",
                    result.nsPerOp.map { String(format: "%.2f", $0.max) } ?? "",
                ]
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
            output += "| " + Self.columns.joined(separator: " | ") + " |\n"
            output += "|" + Self.columns.indices.map { Self.leftAlignedColumns.contains($0) ? " --- |" : " ---: |" }.joined() + "\n"
            for result in run.results {
                let cells = Self.cells(result).map { $0.replacingOccurrences(of: "|", with: "\\|") }
                output += "| " + cells.joined(separator: " | ") + " |\n"
            }
            output += "\n"
        }
        return output
    }
}
