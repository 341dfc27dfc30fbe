@testable import AllocBenchHarness
import AllocBenchModel
import CAllocBench
import Foundation
import Glibc
import XCTest

/// One way to start a child (`Subprocess`): its streams captured at once, a deadline, and no child
/// outliving allocbench. The CLI cases are the hardening issue's: a `--preload` whose malloc hangs
/// or crashes before the child's `main` must fail its own row, not the run, and an interrupted
/// run must leave neither a child nor a file behind.
final class SubprocessTests: XCTestCase {
    /// A traced child with threads, killed: each of its threads waits to be reaped by its tracer
    /// (waitpid with __WALL), and until all are, its pidfd does not turn readable — a poll on it
    /// (Subprocess.wait) waited forever for a replay child whose tracing failed half-way.
    /// ReplayRunner.reapTraced reaps the threads and returns how the child ended.
    func testAKilledTracedChildWithThreadsIsReapedByItsTracer() throws {
        let directory = try TestPaths.temporaryDirectory()
        let marker = directory + "/ready"
        let program = try RecordFixture.compile("""
            #include <fcntl.h>
            #include <pthread.h>
            #include <unistd.h>
            static void *wait_forever(void *argument) { (void)argument; for (;;) pause(); return NULL; }
            int main(int argc, char **argv) {
                (void)argc;
                for (int index = 0; index < 4; index++) { pthread_t thread; pthread_create(&thread, NULL, wait_forever, NULL); }
                close(open(argv[1], O_CREAT | O_WRONLY, 0644));
                for (;;) pause();
            }
            """, named: "threads", in: directory)
        let child = try Subprocess([program, marker], options: Subprocess.Options(environment: [], tracedFromExec: true))
        var status: Int32 = 0
        XCTAssertEqual(waitpid(child.pid, &status, __WALL), child.pid, "the exec's stop")
        XCTAssertEqual(ab_ptrace_set_options(child.pid), 0)
        XCTAssertEqual(ab_ptrace_continue(child.pid, 0), 0)
        // Let it run (every stop continued: its mmaps' seccomp stops, its new threads' first stop)
        // until its four threads exist.
        let deadline = ab_monotonic_nanoseconds() + 30_000_000_000
        while !FileManager.default.fileExists(atPath: marker) && ab_monotonic_nanoseconds() < deadline {
            let thread = waitpid(-1, &status, __WALL | WNOHANG)
            if thread > 0 { _ = ab_ptrace_continue(thread, 0) } else { usleep(1000) }
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: marker), "the child never started its threads")
        child.kill()
        XCTAssertNil(try Subprocess.firstExited(of: [child], among: [0], waitingUpTo: 500),
                     "killed, its threads wait for their tracer: the pidfd stays unreadable")
        XCTAssertEqual(ReplayRunner.reapTraced(child.pid), .signaled(SIGKILL))
    }

    /// Under nohup allocbench ignores SIGHUP, and a hang-up sent to its process group must not
    /// end its replays either: each replay child keeps SIGHUP ignored (ab_spawn resets every other
    /// ignored signal of an isolated child). Each replay child here gets a SIGHUP while it runs;
    /// before, its row read "crashed: signal 1".
    func testANohupRunSurvivesAHangUp() throws {
        guard let systemui = TestPaths.sharedTrace("android/systemui.zip") else { return }
        let output = try TestPaths.temporaryDirectory() + "/report.json"
        let run = try Subprocess(["/usr/bin/nohup", TestPaths.cli, "run", "--trace", systemui, "--allocators", "glibc",
                                  "--threads", "per-thread", "--repeat", "3", "--format", "json", "--output", output],
                                 options: Subprocess.Options(environment: ProcessInfo.processInfo.environment.map { "\($0)=\($1)" }))
        var signaled = Set<pid_t>()
        let deadline = ab_monotonic_nanoseconds() + 120_000_000_000
        // One traced replay and three timed ones, each in a fresh child of allocbench (nohup execs it).
        while signaled.count < 4 && ab_monotonic_nanoseconds() < deadline {
            if try Subprocess.firstExited(of: [run], among: [0], waitingUpTo: 10) != nil { break }
            for child in Self.children(of: run.pid) where !signaled.contains(child) {
                Glibc.kill(child, SIGHUP)
                signaled.insert(child)
            }
        }
        let completion = try run.wait(timeout: .seconds(120))
        XCTAssertEqual(completion.termination, .exited(0), completion.errors)
        XCTAssertGreaterThanOrEqual(signaled.count, 2, "replay children that got a SIGHUP while they ran")
        let report = try RunReport.decode(Data(contentsOf: URL(fileURLWithPath: output)))
        let row = try XCTUnwrap(report.runs.first?.results.first)
        XCTAssertEqual(row.status, .ok, row.detail ?? "")
    }

    /// The processes whose parent is `parent` (from /proc/PID/stat, field 4).
    static func children(of parent: pid_t) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return nil }
            let fields = stat[stat.index(close, offsetBy: 2)...].split(separator: " ")
            return fields.count > 1 && pid_t(fields[1]) == parent ? pid : nil
        }
    }

    func testBothStreamsAreCapturedAtOnceWhateverTheirSize() throws {
        // 1 MiB on each stream, interleaved: a parent that read one stream to its end before the
        // other would leave the child blocked on a full pipe.
        let script = "i=0; while [ $i -lt 64 ]; do head -c 16384 /dev/zero | tr '\\0' o; head -c 16384 /dev/zero | tr '\\0' e >&2; i=$((i+1)); done"
        let child = try Subprocess.run(["/bin/sh", "-c", script], options: Subprocess.Options(environment: ["PATH=/usr/bin:/bin"]),
                                       timeout: .seconds(60))
        XCTAssertEqual(child.termination, .exited(0))
        XCTAssertEqual(child.output, String(repeating: "o", count: 1 << 20))
        XCTAssertEqual(child.errors, String(repeating: "e", count: 1 << 20))
    }

    func testAChildPastItsDeadlineIsKilledAndReaped() throws {
        let start = Date()
        let child = try Subprocess(["/bin/sleep", "60"], options: Subprocess.Options(environment: []))
        let completion = try child.wait(timeout: .milliseconds(300))
        XCTAssertEqual(completion.termination, .timedOut(after: .milliseconds(300)))
        XCTAssertEqual(completion.failure, "timed out after 0.3 s")
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "/proc/\(child.pid)"), "the killed child is reaped, not a zombie")
    }

    func testAProgramThatCannotRunIsTheExecsError() {
        XCTAssertThrowsError(try Subprocess(["/nonexistent/program"], options: Subprocess.Options(environment: []))) { error in
            XCTAssertEqual((error as? SystemError)?.errno, ENOENT, "\(error)")
        }
    }

    // MARK: - The hardening issue, through the CLI

    /// Before: allocbench waited forever in the malloc-provider check, --timeout notwithstanding.
    func testAPreloadWhoseMallocHangsFailsItsRowAtTheTimeout() throws {
        let library = try MallocLibrary.build(.hangs)
        let start = Date()
        let result = try runCommand(TestPaths.cli, ["--trace", TestPaths.bundledTraces + "/djb.txt", "--preload", "hang=" + library,
                                                    "--allocators", "glibc,hang", "--timeout", "5", "--repeat", "0"],
                                    timeout: .seconds(60))
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertEqual(result.status, 1, result.stderr)
        // The lean child calls malloc first in the replay: the row times out there.
        XCTAssertTrue(result.stdout.contains("hang       timed out"), result.stdout)
        XCTAssertTrue(result.stdout.contains("\nglibc "), result.stdout)
        XCTAssertFalse(result.stdout.contains("glibc      failed"), result.stdout)
    }

    /// Before: exit 66, "allocbench-replay describe failed: was killed by signal 11", and no row ran.
    func testAPreloadWhoseMallocCrashesFailsOnlyItsRow() throws {
        let library = try MallocLibrary.build(.crashes)
        let result = try runCommand(TestPaths.cli, ["--trace", TestPaths.bundledTraces + "/djb.txt", "--preload", "crash=" + library,
                                                    "--allocators", "crash,glibc", "--repeat", "0", "--format", "csv"],
                                    timeout: .seconds(60))
        XCTAssertEqual(result.status, 1, result.stderr)
        // The lean child calls malloc first in the replay: the row crashes there.
        XCTAssertTrue(result.stdout.contains(",crash,crashed,SIGSEGV"), result.stdout)
        XCTAssertTrue(result.stdout.contains(",glibc,ok,"), result.stdout)
    }

    /// Before: the hanging child ran on after allocbench died, and its stderr file stayed in /tmp.
    func testAnInterruptedRunLeavesNoChildAndNoFile() throws {
        let library = try MallocLibrary.build(.hangs)
        for signal in [SIGINT, SIGTERM] {
            let allocbench = try Subprocess(
                [TestPaths.cli, "--trace", TestPaths.bundledTraces + "/djb.txt", "--preload", "hang=" + library,
                 "--allocators", "hang", "--repeat", "0"],
                options: Subprocess.Options(environment: ProcessInfo.processInfo.environment.map { $0.key + "=" + $0.value }))
            // The lean child first calls malloc in its replay: that is where it hangs.
            let helper = try XCTUnwrap(Self.child(of: allocbench.pid, running: "run", within: 30),
                                       "allocbench never started its replay")
            defer { if Self.isRunning(helper) { kill(helper, SIGKILL) } }
            XCTAssertTrue(Self.isRunning(helper))
            kill(allocbench.pid, signal)
            XCTAssertEqual(try allocbench.wait(timeout: .seconds(10)).termination, .signaled(signal))
            let deadline = Date().addingTimeInterval(5)
            while Self.isRunning(helper) && Date() < deadline { usleep(20_000) }
            XCTAssertFalse(Self.isRunning(helper), "the hanging replay child \(helper) outlived allocbench (signal \(signal))")
            let left = try FileManager.default.contentsOfDirectory(atPath: "/tmp").filter { $0.hasPrefix("allocbench-\(allocbench.pid)-") }
            XCTAssertEqual(left, [], "signal \(signal)")
        }
    }

    /// The child of `parent` whose command line has `argument`, once it shows up within `seconds`.
    private static func child(of parent: pid_t, running argument: String, within seconds: Double) -> pid_t? {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let children = (try? String(contentsOfFile: "/proc/\(parent)/task/\(parent)/children", encoding: .utf8)) ?? ""
            for pid in children.split(separator: " ").compactMap({ pid_t($0) }) {
                let arguments = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline"))) ?? Data()
                if arguments.split(separator: 0).contains(Data(argument.utf8)) { return pid }
            }
            usleep(20_000)
        }
        return nil
    }

    /// Whether `pid` is alive (a zombie waiting for a reaper that is not its parent counts as dead).
    private static func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(close, offsetBy: 2)]
        return state != "Z" && state != "X"
    }
}

/// A malloc-replacing library, compiled at test time, that forwards to glibc's and misbehaves at
/// its 5th call: before the replay child's `main`, where nothing in the child can help. (Not set
/// from the environment: allocbench passes a child only the variables that choose libraries.)
enum MallocLibrary: String {
    case hangs = "for (;;) pause();"
    case crashes = "*(volatile int *)0 = 0;"

    static func build(_ behaviour: MallocLibrary) throws -> String {
        try build(named: behaviour == .hangs ? "hangs" : "crashes", malloc: """
            static int calls;
            void *malloc(size_t size) {
                if (__atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST) == 5) { \(behaviour.rawValue) }
                return __libc_malloc(size);
            }
            """)
    }

    /// Compiles `malloc`, C source that may call glibc's `__libc_malloc`, into libmalloc-NAME.so.
    static func build(named name: String, malloc: String) throws -> String {
        let directory = try TestPaths.temporaryDirectory()
        let source = directory + "/malloc.c"
        let library = directory + "/libmalloc-\(name).so"
        try ("#include <stddef.h>\n#include <unistd.h>\nextern void *__libc_malloc(size_t);\n" + malloc)
            .write(toFile: source, atomically: true, encoding: .utf8)
        let built = try runCommand("/usr/bin/cc", ["-shared", "-fPIC", "-O2", "-o", library, source], timeout: .seconds(120))
        guard built.status == 0 else { throw CLIError("cc failed: \(built.stderr)") }
        return library
    }
}
