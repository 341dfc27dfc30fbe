import AllocBenchModel
import Foundation

/// The output formats of check and compare.
public enum GateFormat: String, Sendable, CaseIterable {
    case text, markdown, json
}

/// Renders a GateReport: text for a terminal or CI log, Markdown for a pull-request comment or
/// `$GITHUB_STEP_SUMMARY`, JSON for tools.
public struct GateRenderer: Sendable {
    public init() {}

    public func render(_ report: GateReport, as format: GateFormat) throws -> String {
        switch format {
        case .text: text(report)
        case .markdown: markdown(report)
        case .json: String(decoding: try report.encoded(), as: UTF8.self)
        }
    }

    // MARK: - Shared wording

    static func headline(_ outcome: GateOutcome) -> String {
        switch outcome {
        case .passed: "pass"
        case .replayFailed: "a replay failed"
        case .missing: "baseline missing"
        case .environmentChanged: "environment changed"
        case .regressed: "regression"
        case .improved: "improvement beyond tolerance (refresh the baseline)"
        }
    }

    static func symbol(_ outcome: GateOutcome) -> String {
        switch outcome {
        case .passed: "✅"
        case .improved: "⚠️"
        case .regressed, .replayFailed, .missing, .environmentChanged: "❌"
        }
    }

    static func pairResult(_ pair: PairComparison) -> String {
        switch pair.status {
        case .missingBaseline: "no baseline"
        case .missingCurrent: "not in this run"
        case .replayFailed: "replay failed"
        case .compared:
            switch pair.outcome {
            case .passed: "pass"
            case .regressed: "regression"
            case .improved: "improvement"
            case .missing: "metric missing"
            case .replayFailed, .environmentChanged: headline(pair.outcome)
            }
        }
    }

    static func verdictWords(_ verdict: MetricComparison.Verdict) -> String {
        switch verdict {
        case .unchanged: "unchanged"
        case .withinTolerance: "within tolerance"
        case .regression: "REGRESSION"
        case .improvement: "IMPROVEMENT"
        case .missingBaseline: "no baseline value"
        case .missingCurrent: "not measured in this run"
        case .notGated: "not gated"
        }
    }

    static func number(_ value: Double?) -> String {
        guard let value else { return "—" }
        return Tolerance.format((value * 1000).rounded() / 1000)
    }

    /// "+3 (+150.0%)", "−2 (−0.4%)", "+3" from 0.
    static func change(_ metric: MetricComparison) -> String {
        guard let change = metric.change else { return "" }
        let sign = change > 0 ? "+" : change < 0 ? "−" : "±"
        var text = sign + number(abs(change))
        if let relative = metric.relativeChange { text += " (" + sign + String(format: "%.1f%%", abs(relative) * 100) + ")" }
        return text
    }

    /// The metrics worth a line: anything but unchanged and not gated.
    static func moved(_ pair: PairComparison) -> [MetricComparison] {
        pair.metrics.filter { $0.verdict != .unchanged && $0.verdict != .notGated }
    }

    /// The facts of the environment line: what the numbers depend on, and the kernel that counted
    /// them; the host, CPU and libraries' digests are in the JSON.
    static let environmentLineFacts = [
        "kernel", "glibc", "jemalloc", "page_size", "machine", "allocbench_version", "build", "address_randomization",
        "transparent_hugepages",
    ]

    static func environmentLine(_ report: GateReport) -> String {
        environmentLineFacts.compactMap { field in
            report.environment[field].map { "\(EnvironmentFact.named(field)?.label ?? field) \($0)" }
        }.joined(separator: " · ")
    }

    /// The rows a count-affecting difference fails: "every row", "jemalloc rows".
    static func scope(_ difference: FieldDifference) -> String {
        guard let allocators = difference.allocators else { return "every row" }
        return allocators.joined(separator: ", ") + " rows"
    }

    static func differenceLines(_ differences: [FieldDifference]) -> [String] {
        differences.map { difference in
            var line = "\(difference.field): \(difference.baseline) (baseline) → \(difference.current) (now), on \(difference.traces.joined(separator: ", "))"
            if difference.effect == .countsEveryRow || difference.effect == .countsOwnRow || difference.fails == true {
                line += " — affects \(scope(difference))"
            }
            return line
        }
    }

    /// Differences of facts that can change counts (and the kernel release under --strict-env);
    /// the others are in the notes.
    static func countDifferences(_ report: GateReport) -> [FieldDifference] {
        report.environmentDifferences.filter { $0.fails == true || $0.effect == .countsEveryRow || $0.effect == .countsOwnRow }
    }

    /// The first violation, in one sentence, for the closing line and for stderr.
    public static func summary(_ report: GateReport) -> String {
        var text = "\(report.command): \(headline(report.outcome)) (exit \(report.exitCode))"
        let pairs = report.outcome == .passed ? [] : report.pairs.filter { $0.outcome == report.outcome }
        if report.outcome == .environmentChanged, let difference = report.environmentDifferences.first(where: { $0.fails == true }) {
            text += ": \(difference.field) \(difference.baseline) → \(difference.current) (\(scope(difference))); "
                + "re-record the baselines here or pass --allow-env-change"
        } else if let pair = pairs.first {
            let location = "\(pair.trace)/\(pair.allocator)"
            if let metric = pair.metrics.first(where: \.isViolation) {
                text += ": \(location) \(metric.metric) \(number(metric.baseline)) → \(number(metric.current)) \(metric.unit)"
                if metric.change != nil { text += ", \(change(metric)), tolerance \(metric.tolerance)" }
            } else if let detail = pair.detail {
                text += ": \(location): \(detail)"
            }
            if pairs.count > 1 { text += " (and \(pairs.count - 1) more pair\(pairs.count == 2 ? "" : "s"))" }
        }
        return text
    }

    // MARK: - Text

    func text(_ report: GateReport) -> String {
        var lines = [
            "allocbench \(report.command): \(Self.headline(report.outcome)) (exit \(report.exitCode))",
            "baseline \(report.baselineSource) · current \(report.currentSource)",
            "environment: \(Self.environmentLine(report))",
        ]
        let countDifferences = Self.countDifferences(report)
        if !countDifferences.isEmpty {
            lines.append(report.environmentChangeAllowed
                ? "environment differs from the baseline in what can change page counts (allowed by --allow-env-change):"
                : "environment differs from the baseline in what can change page counts; those rows fail (exit 3): "
                    + "re-record the baselines here, or pass --allow-env-change:")
            lines += Self.differenceLines(countDifferences).map { "  " + $0 }
        }
        if !report.settingsDifferences.isEmpty {
            lines.append("settings differ from the baseline (the numbers may move because of them):")
            lines += Self.differenceLines(report.settingsDifferences).map { "  " + $0 }
        }
        lines.append("tolerances: \(report.tolerances.joined(separator: ", "))")
        lines.append("")

        var rows: [[String]] = []
        for pair in report.pairs {
            var line = "\(pair.trace)/\(pair.allocator): \(Self.pairResult(pair))"
            if let detail = pair.detail { line += " — \(detail)" }
            let moved = Self.moved(pair)
            let unchanged = pair.metrics.filter { $0.verdict == .unchanged }.count
            if pair.status == .compared {
                line += moved.isEmpty ? " (\(unchanged) metrics unchanged)" : " (\(unchanged) unchanged, \(moved.count) moved)"
            }
            rows.append([line])
            for metric in moved {
                rows.append([metric.metric, Self.number(metric.baseline), "→", Self.number(metric.current), metric.unit,
                             Self.change(metric), "tolerance " + metric.tolerance, Self.verdictWords(metric.verdict)])
            }
        }
        let metricRows = rows.filter { $0.count > 1 }
        let widths = (0..<8).map { column in metricRows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            guard row.count > 1 else {
                lines.append(row[0])
                continue
            }
            let cells = row.enumerated().map { column, cell in
                [1, 3, 5].contains(column)
                    ? String(repeating: " ", count: widths[column] - cell.count) + cell
                    : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }
            var line = "  " + cells[0] + "  " + cells[1...4].joined(separator: " ") + "  " + cells[5...].joined(separator: "  ")
            while line.hasSuffix(" ") { line.removeLast() }
            lines.append(line)
        }
        if !report.notes.isEmpty {
            lines.append("")
            lines += report.notes.map { "note: " + $0 }
        }
        lines.append("")
        lines.append(Self.summary(report))
        return lines.joined(separator: "\n") + "\n"
    }

    // MARK: - Markdown

    /// The headline metrics of the summary table; every moved metric is in the table below it.
    static let summaryColumns: [(metric: String, title: String)] = Metric.gated.filter(\.isHeadline).map { ($0.key, $0.title) }

    func markdown(_ report: GateReport) -> String {
        func escape(_ text: String) -> String { text.replacingOccurrences(of: "|", with: "\\|") }
        var output = "### \(Self.symbol(report.outcome)) allocbench \(report.command): \(Self.headline(report.outcome)) (exit \(report.exitCode))\n\n"

        output += "| trace | allocator | result | " + Self.summaryColumns.map(\.title).joined(separator: " | ") + " |\n"
        output += "| --- | --- | --- |" + String(repeating: " ---: |", count: Self.summaryColumns.count) + "\n"
        for pair in report.pairs {
            let cells = Self.summaryColumns.map { column -> String in
                guard let metric = pair.metrics.first(where: { $0.metric == column.metric }) else { return "" }
                // A ratio reads as one only with its sign: 0.85×.
                let suffix = metric.unit == "×" ? "×" : ""
                let before = Self.number(metric.baseline) + suffix
                let after = Self.number(metric.current) + suffix
                switch metric.verdict {
                case .unchanged, .notGated: return metric.current == nil ? "" : after
                case .withinTolerance: return "\(before) → \(after)"
                default: return "\(before) → **\(after)**"
                }
            }
            let result = pair.status == .compared && pair.outcome == .passed ? "✅ pass" : "\(Self.symbol(pair.outcome)) \(Self.pairResult(pair))"
            output += "| \(escape(pair.trace)) | \(escape(pair.allocator)) | \(result) | " + cells.joined(separator: " | ") + " |\n"
        }

        let moved = report.pairs.flatMap { pair in Self.moved(pair).map { (pair, $0) } }
        if moved.isEmpty {
            output += "\nNo metric moved.\n"
        } else {
            output += "\n| trace | allocator | metric | baseline | current | change | tolerance | verdict |\n"
            output += "| --- | --- | --- | ---: | ---: | ---: | --- | --- |\n"
            for (pair, metric) in moved {
                output += "| \(escape(pair.trace)) | \(escape(pair.allocator)) | \(metric.metric) | \(Self.number(metric.baseline)) "
                    + "| \(Self.number(metric.current)) | \(Self.change(metric)) | \(metric.tolerance) | \(Self.verdictWords(metric.verdict)) |\n"
            }
        }

        var footer: [String] = []
        for pair in report.pairs where pair.detail != nil {
            footer.append("\(pair.trace)/\(pair.allocator): \(pair.detail ?? "")")
        }
        let countDifferences = Self.countDifferences(report)
        if !countDifferences.isEmpty {
            footer.append((report.environmentChangeAllowed ? "Environment differs (allowed): " : "**Environment differs from the baseline:** ")
                + Self.differenceLines(countDifferences).joined(separator: "; "))
        }
        if !report.settingsDifferences.isEmpty {
            footer.append("Settings differ: " + Self.differenceLines(report.settingsDifferences).joined(separator: "; "))
        }
        footer += report.notes.map { "Note: " + $0 }
        footer.append("Environment: \(Self.environmentLine(report)). Tolerances: \(report.tolerances.joined(separator: ", ")).")
        output += "\n" + footer.map { escape($0) + "  \n" }.joined()
        return output
    }
}
