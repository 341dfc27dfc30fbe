@testable import AllocBenchHarness
import AllocBenchCore
import AllocBenchModel
import AllocBenchReport
import XCTest

final class ReportFormatterTests: XCTestCase {
    static func report(_ results: [AllocatorResult]) -> RunReport {
        let trace = TraceSummary(path: "t.txt", name: "t", lines: 3, ops: 3, threads: 1, threadsDone: 0, slots: 2, peakLiveBytes: 5000,
                                 finalLiveBytes: 0, idealPages: 2, anomaliesSkipped: 0, failedAllocationsSkipped: 0)
        return RunReport(
            environment: RunEnvironment(kernel: "6.18", glibc: "2.36", jemalloc: "5.3.0", pageSize: 4096,
                                        machine: "x86_64", allocbenchVersion: allocbenchVersion),
            settings: RunSettings(touch: .pages, timedRuns: 3, timeoutSeconds: 300, lenient: false),
            runs: [TraceRun(trace: trace, results: results)])
    }

    static func row(_ name: String, status: AllocatorResult.Status = .ok, detail: String? = nil) -> AllocatorResult {
        AllocatorResult(
            allocator: name, status: status, detail: detail,
            touchedPages: status == .ok ? FinalAndPeak(final: 2, peak: 3) : nil,
            mappedPages: status == .ok ? FinalAndPeak(final: 10, peak: 12) : nil,
            idealPages: 2, overhead: status == .ok ? 1.5 : nil, minorFaults: status == .ok ? 4 : nil,
            pageTablesKilobytes: nil, mmSyscalls: status == .ok ? ["mmap": 1, "munmap": 0, "brk": 2, "madvise": 0, "mremap": 0] : nil,
            nsPerOp: status == .ok ? TimePerOp(runs: [30, 10, 20]) : nil, baseline: nil, selfReported: [:],
            selfReportedBaseline: nil, mallocProvider: "/lib/libc.so.6", runtimeMallocDeltaBytes: nil, timeline: nil, breakdown: nil)
    }

    func testTableShowsNumbersAndFailureRows() throws {
        let report = Self.report([Self.row("glibc"), Self.row("crashy", status: .crashed, detail: "SIGSEGV after op 2"),
                                  Self.row("slow", status: .timedOut, detail: "timed out after op 1")])
        let table = try ReportFormatter(useColor: false).render(report, as: .table)
        let lines = table.split(separator: "\n").map(String.init)
        let header = try XCTUnwrap(lines.first { $0.hasPrefix("allocator") })
        XCTAssertTrue(header.contains("touched peak"))
        let glibc = try XCTUnwrap(lines.first { $0.hasPrefix("glibc") })
        // Lazy free needs the row's samples, which this row (like a report written before them) lacks.
        XCTAssertEqual(glibc.split(separator: " ", omittingEmptySubsequences: true).prefix(10),
                       ["glibc", "2", "3", "-", "-", "10", "12", "2", "1.50", "4"])
        XCTAssertTrue(glibc.hasSuffix("20.0 (10.0–30.0 ±50.0%)         -"), glibc)
        XCTAssertTrue(glibc.contains("mmap 1, brk 2"))
        XCTAssertTrue(lines.contains("crashy     crashed: SIGSEGV after op 2"), table)
        XCTAssertTrue(lines.contains("slow       timed out after op 1"), table)
        XCTAssertFalse(table.contains("\u{1B}["), "no color unless asked")
        XCTAssertTrue(try ReportFormatter(useColor: true).render(report, as: .table).contains("\u{1B}[1m"))
    }

    func testJSONRoundTripsAndCSVQuotes() throws {
        let report = Self.report([Self.row("a,\"b\""), Self.row("c", status: .failed, detail: "out of memory at op 4")])
        XCTAssertEqual(try RunReport.decode(try report.encoded()), report)
        let json = String(decoding: try report.encoded(), as: UTF8.self)
        XCTAssertTrue(json.contains("\"touched_pages\""))
        XCTAssertTrue(json.contains("\"ns_per_op\""))
        let csv = try ReportFormatter(useColor: false).render(report, as: .csv)
        XCTAssertTrue(csv.contains("t,\"a,\"\"b\"\"\",ok,"), csv)
        XCTAssertTrue(csv.contains("t,c,failed,out of memory at op 4,"), csv)
    }

    /// Issue 15 item 4: a multi-threaded trace's header says how its threads overlapped and shared
    /// blocks, and so does its JSON.
    func testThreadActivityIsInTheHeaderAndTheJSON() throws {
        var report = Self.report([Self.row("glibc")])
        var statistics = ThreadStatistics()
        statistics.peakAlive = 3
        statistics.crossThreadFrees = 2
        statistics.crossThreadFreedBytes = 64
        statistics.crossThreadReallocs = 1
        statistics.crossThreadReallocatedBytes = 16
        let activity = ThreadActivity(statistics)
        report.runs[0].trace.threads = 8
        report.runs[0].trace.threadActivity = activity
        let table = try ReportFormatter(useColor: false).render(report, as: .table)
        XCTAssertTrue(table.hasPrefix("trace t.txt: 3 ops, 8 threads (at most 3 alive at once; 2 frees of 64 bytes and 1 realloc "
                                      + "of 16 bytes cross threads), peak live 5000 bytes"), table)
        let json = String(decoding: try report.encoded(), as: UTF8.self)
        for key in ["\"thread_activity\"", "\"peak_alive\" : 3", "\"cross_thread_frees\" : 2", "\"cross_thread_freed_bytes\" : 64",
                    "\"cross_thread_reallocs\" : 1", "\"cross_thread_reallocated_bytes\" : 16"] {
            XCTAssertTrue(json.contains(key), "\(key) missing from \(json)")
        }
        XCTAssertEqual(try RunReport.decode(try report.encoded()).runs[0].trace.threadActivity, activity)
    }
}
