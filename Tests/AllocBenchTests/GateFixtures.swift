import AllocBenchGate
import AllocBenchHarness
import Foundation

/// Builds RunReports for the gate's unit tests through the same JSON decoding `allocbench compare`
/// uses, since the harness's row types are built only by the harness.
enum GateFixtures {
    struct Row {
        var allocator: String
        var touched = (final: 10, peak: 12)
        var mapped = (final: 20, peak: 24)
        var minorFaults = 100
        var pageTablesKilobytes = (final: 8, peak: 8)
        var syscalls = ["mmap": 2, "munmap": 1, "brk": 0, "madvise": 0, "mremap": 0]
        var nanosecondsPerOp: Double? = 50
        /// "ok", "failed", "crashed", "timed_out".
        var status = "ok"
        var detail: String?

        init(_ allocator: String) {
            self.allocator = allocator
        }

        func with(_ change: (inout Row) -> Void) -> Row {
            var row = self
            change(&row)
            return row
        }

        var json: [String: Any] {
            var object: [String: Any] = [
                "allocator": allocator, "status": status, "ideal_pages": 3, "self_reported": [String: Int](),
                "malloc_provider": "libc.so.6",
            ]
            if let detail { object["detail"] = detail }
            guard status == "ok" else { return object }
            object["touched_pages"] = ["final": touched.final, "peak": touched.peak]
            object["mapped_pages"] = ["final": mapped.final, "peak": mapped.peak]
            object["minor_faults"] = minorFaults
            object["page_tables_kilobytes"] = ["final": pageTablesKilobytes.final, "peak": pageTablesKilobytes.peak]
            object["mm_syscalls"] = syscalls
            if let nanosecondsPerOp {
                object["ns_per_op"] = ["median": nanosecondsPerOp, "min": nanosecondsPerOp, "max": nanosecondsPerOp, "runs": [nanosecondsPerOp]]
            }
            return object
        }
    }

    static let environment = RunEnvironment(
        kernel: "6.1.0-test", glibc: "2.36", jemalloc: "5.3.0", pageSize: 4096, machine: "x86_64", allocbenchVersion: "0.1.0")

    static let conditions = MeasurementConditions(build: "release", addressRandomization: true)

    static func report(trace: String = "djb", ops: Int = 5, rows: [Row], environment: RunEnvironment = environment,
                       touch: String = "pages") -> RunReport {
        report(traces: [(trace, ops, rows)], environment: environment, touch: touch)
    }

    static func report(traces: [(name: String, ops: Int, rows: [Row])], environment: RunEnvironment = environment,
                       touch: String = "pages") -> RunReport {
        let runs: [[String: Any]] = traces.map { trace in
            [
                "trace": [
                    "path": "Benchmarks/traces/\(trace.name).txt", "name": trace.name, "lines": trace.ops, "ops": trace.ops,
                    "threads": 1, "slots": trace.ops, "peak_live_bytes": 1076, "final_live_bytes": 1076, "ideal_pages": 1,
                    "anomalies_skipped": 0, "failed_allocations_skipped": 0,
                ],
                "results": trace.rows.map(\.json),
            ]
        }
        let settings = RunSettings(touch: touch, timedRuns: 3, timeoutSeconds: 300, lenient: false)
        do {
            let skeleton = try RunReport(environment: environment, settings: settings, runs: []).encoded()
            var object = try JSONSerialization.jsonObject(with: skeleton) as? [String: Any] ?? [:]
            object["runs"] = runs
            return try RunReport.decode(try JSONSerialization.data(withJSONObject: object))
        } catch {
            preconditionFailure("fixture report does not decode: \(error)")
        }
    }

    static func snapshot(_ report: RunReport, source: String = "fixture") -> GateSnapshot {
        GateSnapshot(report: report, conditions: conditions, source: source)
    }

    static func compare(_ baseline: RunReport, _ current: RunReport, tolerances: [String] = [],
                        options: GateOptions = GateOptions()) throws -> GateReport {
        var table = ToleranceTable()
        for text in tolerances { table.add(try ToleranceOverride.parse(text), source: "--tolerance") }
        return Gate.compare(baseline: snapshot(baseline, source: "old"), current: snapshot(current, source: "new"),
                            tolerances: table, options: options, command: "check")
    }
}

extension GateReport {
    func pair(_ trace: String, _ allocator: String) -> PairComparison? {
        pairs.first { $0.trace == trace && $0.allocator == allocator }
    }

    func metric(_ trace: String, _ allocator: String, _ metric: String) -> MetricComparison? {
        pair(trace, allocator)?.metrics.first { $0.metric == metric }
    }
}
