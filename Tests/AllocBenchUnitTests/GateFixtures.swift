import AllocBenchCore
import AllocBenchGate
import AllocBenchHarness
import AllocBenchModel
import Foundation

/// Builds RunReports for the gate's unit tests from the result model's own types.
enum GateFixtures {
    struct Row {
        var allocator: String
        var touched = (final: 10, peak: 12)
        var mapped = (final: 20, peak: 24)
        var minorFaults = 100
        var pageTablesKilobytes = (final: 8, peak: 8)
        var syscalls = ["mmap": 2, "munmap": 1, "brk": 0, "madvise": 0, "mremap": 0, "other": 0]
        var nanosecondsPerOp: Double? = 50
        /// The timed runs, when the row should have several (their median replaces nanosecondsPerOp).
        var timedRuns: [Double]?
        var status = AllocatorResult.Status.ok
        var detail: String?

        init(_ allocator: String) {
            self.allocator = allocator
        }

        func with(_ change: (inout Row) -> Void) -> Row {
            var row = self
            change(&row)
            return row
        }

        var result: AllocatorResult {
            guard status == .ok else {
                return AllocatorResult(allocator: allocator, status: status, detail: detail, idealPages: 3, mallocProvider: "libc.so.6")
            }
            return AllocatorResult(
                allocator: allocator, status: status, detail: detail,
                touchedPages: FinalAndPeak(final: touched.final, peak: touched.peak),
                mappedPages: FinalAndPeak(final: mapped.final, peak: mapped.peak), idealPages: 3,
                minorFaults: minorFaults,
                pageTablesKilobytes: FinalAndPeak(final: pageTablesKilobytes.final, peak: pageTablesKilobytes.peak),
                mmSyscalls: syscalls, nsPerOp: timedRuns.map(TimePerOp.init(runs:)) ?? nanosecondsPerOp.map { TimePerOp(runs: [$0]) },
                baseline: MemorySample(), endSample: MemorySample(rssAnonKilobytes: touched.final * 4),
                touchedPeakSample: MemorySample(rssAnonKilobytes: touched.peak * 4),
                processEndSample: MemorySample(rssAnonKilobytes: 8, vmSizeKilobytes: 200, pageTablesKilobytes: 28,
                                               rssFileKilobytes: 100, stackKilobytes: 132),
                processPeakSample: MemorySample(rssAnonKilobytes: 8, vmSizeKilobytes: 200, pageTablesKilobytes: 28,
                                                rssFileKilobytes: 100, stackKilobytes: 132),
                mallocProvider: "libc.so.6")
        }
    }

    static let environment = RunEnvironment(
        kernel: "6.1.0-test", glibc: "2.36", jemalloc: "5.3.0", pageSize: 4096, machine: "x86_64", allocbenchVersion: "0.1.0")

    static let conditions = MeasurementConditions(build: "release", addressRandomization: true)

    static func report(trace: String = "djb", ops: Int = 5, rows: [Row], environment: RunEnvironment = environment,
                       touch: TouchMode = .pages) -> RunReport {
        report(traces: [(trace, ops, rows)], environment: environment, touch: touch)
    }

    static func report(traces: [(name: String, ops: Int, rows: [Row])], environment: RunEnvironment = environment,
                       touch: TouchMode = .pages) -> RunReport {
        let runs = traces.map { trace in
            TraceRun(
                trace: TraceSummary(path: "Benchmarks/traces/\(trace.name).txt", name: trace.name, lines: trace.ops, ops: trace.ops,
                                    threads: 1, slots: trace.ops, peakLiveBytes: 1076, finalLiveBytes: 1076, idealPages: 1,
                                    anomaliesSkipped: 0, failedAllocationsSkipped: 0),
                results: trace.rows.map(\.result))
        }
        return RunReport(environment: environment, settings: RunSettings(touch: touch, timedRuns: 3, timeoutSeconds: 300, lenient: false),
                         runs: runs)
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
