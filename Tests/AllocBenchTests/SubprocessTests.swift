import AllocBenchHarness
import Foundation
import Glibc
import XCTest

/// One way to start a child (`Subprocess`): its streams captured at once, a deadline, and no child
/// outliving allocbench.
final class SubprocessTests: XCTestCase {
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
}
