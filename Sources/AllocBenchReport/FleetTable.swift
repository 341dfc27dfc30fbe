import AllocBenchModel
import Foundation

/// The output formats of `allocbench fleet`.
public enum FleetFormat: String, Sendable, CaseIterable {
    case table, json
}

/// Renders a FleetReport: one row per allocator, sums in MiB and per-process figures in KB.
public enum FleetTable {
    public static func render(_ report: FleetReport, as format: FleetFormat) throws -> String {
        switch format {
        case .json: String(decoding: try report.encoded(), as: UTF8.self)
        case .table: table(report)
        }
    }

    static let titles = ["allocator", "N", "start s", "settle s", "Σ RssAnon", "Σ VmPTE", "per process",
                         "single", "N × single", "ratio", "MemAvailable drop", "per process", "cgroup", "per process"]

    static func table(_ report: FleetReport) -> String {
        var lines = ["trace \(report.trace.path): \(Format.count(report.trace.ops)) ops; \(Format.count(report.processes)) processes per allocator, "
            + "each parked at its end state. RssAnon + VmPTE per process; MemAvailable drop and cgroup net of allocbench's share."]
        var rows: [[String]] = []
        var notes: [String] = []
        for result in report.results {
            guard result.isOK, let total = result.total, let single = result.single else {
                rows.append([result.allocator, Format.count(result.processes), "failed: " + (result.detail ?? "no measurement")])
                continue
            }
            let processes = Double(max(result.processes, 1))
            let harness = result.harnessKilobytes ?? 0
            func net(_ kilobytes: Int?) -> (String, String) {
                guard let kilobytes else { return ("-", "-") }
                return (Format.kibibytes(kilobytes - harness), kb(Double(kilobytes - harness) / processes))
            }
            let drop = net(result.memAvailableDropKilobytes)
            let cgroup = result.cgroup.map { net($0.usageKilobytes) } ?? ("no cgroup", "-")
            rows.append([
                result.allocator, Format.count(result.processes),
                seconds(result.startSeconds), seconds(result.settleSeconds),
                Format.kibibytes(total.rssAnonKilobytes), Format.kibibytes(total.pageTablesKilobytes),
                kb(Double(FleetResult.privateKilobytes(total)) / processes),
                kb(Double(FleetResult.privateKilobytes(single))),
                result.expectedKilobytes.map(Format.kibibytes) ?? "-",
                result.ratio.map { String(format: "%.3f", $0) } ?? "-",
                drop.0, drop.1, cgroup.0, cgroup.1,
            ])
            if let unavailable = result.cgroupUnavailable { notes.append("\(result.allocator): no cgroup: \(unavailable)") }
            if harness != 0 {
                notes.append("\(result.allocator): allocbench's share, left out: \(Format.kibibytes(harness)) (the control blocks and its own growth)"
                    + (result.cgroup.map { "; cgroup \($0.version)" } ?? ""))
            }
        }
        lines.append(contentsOf: aligned([titles] + rows))
        return (lines + notes).joined(separator: "\n") + "\n"
    }

    /// Columns padded to their widest cell: the first (the allocator) left-aligned, numbers right.
    /// A failed row's reason runs on past the columns.
    static func aligned(_ rows: [[String]]) -> [String] {
        let full = rows.filter { $0.count == titles.count }
        let widths = titles.indices.map { column in full.map { $0[column].count }.max() ?? 0 }
        return rows.map { cells in
            cells.enumerated().map { column, cell in
                if column == cells.count - 1 && cells.count < titles.count { return cell }
                let padding = String(repeating: " ", count: max(widths[column] - cell.count, 0))
                return column == 0 ? cell + padding : padding + cell
            }.joined(separator: "  ")
        }
    }

    static func kb(_ kilobytes: Double) -> String {
        Format.trimmed(kilobytes, decimals: 1) + " KB"
    }

    static func seconds(_ value: Double?) -> String {
        value.map { String(format: "%.2f", $0) } ?? "-"
    }
}
