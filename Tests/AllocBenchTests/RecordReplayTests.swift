import AllocBenchCore
import AllocBenchHarness
import Foundation
import XCTest

/// Recorded traces replay: strictly through the parser, and through the CLI.
final class RecordReplayTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = try RecordFixture.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// A real program doing real work: sort, single-threaded, on 20,000 generated lines.
    func testRecordedSortReplaysStrictlyThroughTheCLI() throws {
        let input = (0..<20_000).map { "line \(($0 &* 7919) % 20_000) \(String(repeating: "x", count: $0 % 37))" }
        try (input.joined(separator: "\n") + "\n").write(toFile: directory + "/input.txt", atomically: true, encoding: .utf8)
        let outcome = try RecordFixture.record(
            ["sort", "--parallel=1", "-o", directory + "/sorted.txt", directory + "/input.txt"], in: directory)
        XCTAssertEqual(outcome.termination, .exited(0))
        XCTAssertEqual(try String(contentsOfFile: directory + "/sorted.txt", encoding: .utf8).split(separator: "\n").count, 20_000)

        let parsed = try RecordFixture.parseStrictly(directory + "/trace.txt")
        XCTAssertGreaterThan(parsed.ops.count, 200)
        XCTAssertEqual(parsed.anomalies.total, 0)

        let cli = RecordFixture.productsDirectory + "/allocbench"
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: cli), "\(cli) is missing: build the package first")
        let result = try runCommand(cli, ["--trace", directory + "/trace.txt", "--allocators", "glibc",
                                                 "--repeat", "1", "--format", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let run = try XCTUnwrap((report["runs"] as? [[String: Any]])?.first)
        XCTAssertEqual((run["trace"] as? [String: Any])?["ops"] as? Int, parsed.ops.count)
        let row = try XCTUnwrap((run["results"] as? [[String: Any]])?.first)
        XCTAssertEqual(row["allocator"] as? String, "glibc")
        XCTAssertEqual(row["status"] as? String, "ok")
    }

    /// The CLI end to end: record forwards the exit status, writes the files it names on stderr.
    func testRecordCommandForwardsTheExitStatusAndNamesItsFiles() throws {
        let cli = RecordFixture.productsDirectory + "/allocbench"
        let result = try runCommand(cli, ["record", "-o", directory + "/trace.txt", "--", "sh", "-c", "ls / >/dev/null; exit 7"])
        XCTAssertEqual(result.status, 7, result.stderr)
        XCTAssertTrue(result.stderr.contains("lines (the command) in \(directory)/trace.txt\n"), result.stderr)
        XCTAssertNoThrow(try RecordFixture.parseStrictly(directory + "/trace.txt"))

        let missing = try runCommand(cli, ["record", "-o", directory + "/x.txt", "--", "allocbench-no-such-command"])
        XCTAssertEqual(missing.status, 127)
        XCTAssertEqual(missing.stderr, "allocbench: allocbench-no-such-command: command not found\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/x.txt"))
    }

    /// Recorders write a failed allocation as a null result, whatever size it asked for.
    func testFailedAllocationsOfAnySizeAreSkipped() throws {
        let text = """
            1: malloc 0x10 8
            1: malloc 0x0 18446744073709547519
            1: calloc 0x0 9223372036854775808 4
            1: memalign 0x0 64 18446744073709551000
            1: free 0x10

            """
        let parsed = try TraceParser.parse(Array(text.utf8))
        XCTAssertEqual(parsed.ops.count, 2)
        XCTAssertEqual(parsed.failedAllocationsSkipped, 3)
        XCTAssertThrowsError(try TraceParser.parse(Array("1: calloc 0x10 9223372036854775808 4\n".utf8))) { error in
            XCTAssertEqual((error as? TraceError)?.line, 1)
        }
        XCTAssertThrowsError(try TraceParser.parse(Array("1: malloc 0x10 18446744073709547519\n".utf8)))
    }
}
