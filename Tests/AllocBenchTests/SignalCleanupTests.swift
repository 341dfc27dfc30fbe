@testable import AllocBenchHarness
import Foundation
import XCTest

/// SIGTERM or SIGINT in the middle of a command leaves no process and no temporary file behind.
final class SignalCleanupTests: XCTestCase {
    /// `record` was ended by SIGTERM while its command ran: before, its spool directory stayed.
    func testATerminatedRecordLeavesNoSpoolAndNoCommand() throws {
        let directory = try TestPaths.temporaryDirectory()
        let marker = "31.\(getpid())"  // a sleep no other test runs
        let record = try Subprocess([TestPaths.cli, "record", "-o", directory + "/out.txt", "--", "/bin/sleep", marker],
                                    options: Subprocess.Options(environment: ProcessInfo.processInfo.environment.map { $0.key + "=" + $0.value }))
        XCTAssertTrue(Self.eventually { Self.spools(in: directory).count == 1 && Self.sleeper(marker) != nil }, "the recording started")
        let command = try XCTUnwrap(Self.sleeper(marker))
        XCTAssertEqual(kill(record.pid, SIGTERM), 0)
        let ended = try record.wait(timeout: .seconds(30))
        XCTAssertEqual(ended.termination, .signaled(SIGTERM), "allocbench ends by the signal it was sent")
        XCTAssertEqual(Self.spools(in: directory), [], "the spool directory is gone")
        XCTAssertTrue(Self.eventually { kill(command, 0) != 0 }, "the recorded command is gone")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/out.txt"))
    }

    /// A run ended at several points (parsing, replaying, writing) leaves no replay child and no
    /// temporary output file.
    func testATerminatedRunLeavesNoChildAndNoTemporaryFile() throws {
        guard let trace = TestPaths.sharedTrace("real/gcc-hello.txt") else { return }
        try assertSignalledAtSeveralPointsLeavesNothing { directory in
            ["--trace", trace, "--repeat", "2", "--format", "json", "--output", directory + "/run.json"]
        }
    }

    /// So does a check (it replays and writes its report) and a conformance run.
    func testATerminatedCheckOrConformanceRunLeavesNoChildAndNoTemporaryFile() throws {
        try assertSignalledAtSeveralPointsLeavesNothing { directory in
            ["check", "--baseline", TestPaths.packageRoot + "/Benchmarks/baselines", "--trace", TestPaths.bundledTraces + "/sqlite3.txt.gz",
             "--allow-env-change", "--format", "markdown", "--output", directory + "/gate.md"]
        }
        try assertSignalledAtSeveralPointsLeavesNothing(signal: SIGINT) { _ in ["conformance"] }
    }

    func assertSignalledAtSeveralPointsLeavesNothing(signal: Int32 = SIGTERM, file: StaticString = #filePath, line: UInt = #line,
                                                     _ arguments: (String) -> [String]) throws {
        for delay in [50_000, 200_000, 600_000, 1_500_000] as [useconds_t] {
            let directory = try TestPaths.temporaryDirectory()
            let command = try Subprocess([TestPaths.cli] + arguments(directory),
                                         options: Subprocess.Options(environment: ProcessInfo.processInfo.environment.map { $0.key + "=" + $0.value }))
            usleep(delay)
            let children = Self.children(of: command.pid)
            kill(command.pid, signal)
            let ended = try command.wait(timeout: .seconds(60))
            // Ended by the signal, or done before it came (with whatever verdict): never killed otherwise.
            let byTheSignal = ended.termination == .signaled(signal)
            if case .exited = ended.termination {} else {
                XCTAssertTrue(byTheSignal, "\(arguments(directory).first ?? ""): \(ended.termination)", file: file, line: line)
            }
            XCTAssertTrue(Self.eventually { children.allSatisfy { kill($0, 0) != 0 } },
                          "after \(delay) µs: a child outlived allocbench", file: file, line: line)
            let left = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.contains(".tmp-") }
            XCTAssertEqual(left, [], "after \(delay) µs", file: file, line: line)
        }
    }

    /// The direct children of `parent`, from /proc/*/stat.
    static func children(of parent: pid_t) -> [pid_t] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == parent ? pid : nil
        }
    }

    static func spools(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.contains(".spool-") }
    }

    /// The pid of the `sleep MARKER` process, if one runs.
    static func sleeper(_ marker: String) -> pid_t? {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = pid_t(entry),
                  let commandLine = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { continue }
            let arguments = commandLine.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if arguments.last == marker && arguments.first?.hasSuffix("sleep") == true { return pid }
        }
        return nil
    }

    /// Whether `condition` holds within 5 s.
    static func eventually(_ condition: () -> Bool) -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
