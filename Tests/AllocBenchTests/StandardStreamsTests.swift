import Foundation
import XCTest

/// allocbench started with a standard stream closed or full: the files it opens never become that
/// stream, and every error still exits with the code it means.
final class StandardStreamsTests: XCTestCase {
    /// `allocbench ARGUMENTS` through the shell, with `redirections` applied (e.g. `>&-`).
    func allocbench(_ arguments: [String], _ redirections: String) throws -> CommandResult {
        let quoted = arguments.map { "'" + $0 + "'" }.joined(separator: " ")
        return try runCommand("/bin/sh", ["-c", "exec '\(TestPaths.cli)' \(quoted) \(redirections)"], workingDirectory: TestPaths.packageRoot)
    }

    /// With stdout closed, a replay's op stream used to become descriptor 1 and be overwritten in
    /// the child by its stdout: every row failed ("descriptor 3 is not an op stream").
    func testWithStdoutClosedEveryReplayStillRunsAndTheFileIsWhole() throws {
        let directory = try TestPaths.temporaryDirectory()
        let output = directory + "/run.json"
        let result = try allocbench(["--output", output, "--format", "json", "--repeat", "0", "--allocators", "glibc,slab,bss-arena"], ">&-")
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as? [String: Any]
        let rows = try XCTUnwrap(((report?["runs"] as? [[String: Any]])?.first?["results"]) as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["allocator"] as? String }, ["glibc", "slab", "bss-arena"])
        XCTAssertEqual(rows.map { $0["status"] as? String }, ["ok", "ok", "ok"])
    }

    func testATableForAClosedStdoutIsAnOutputError() throws {
        let result = try allocbench(["--repeat", "0", "--allocators", "glibc"], ">&-")
        XCTAssertEqual(result.status, 73, result.stderr)
        XCTAssertEqual(result.stderr, "allocbench: standard output is closed; write to a file with --output\n")
    }

    /// Writing the error used to raise in FileHandle and kill the process with SIGILL (exit 132).
    func testWithStderrClosedOrFullErrorsKeepTheirExitCodes() throws {
        XCTAssertEqual(try allocbench(["--trace", "/nonexistent/trace.txt"], "2>&-").status, 66)
        XCTAssertEqual(try allocbench(["--trace", "/nonexistent/trace.txt"], "2>/dev/full").status, 66)
        XCTAssertEqual(try allocbench(["--touch", "sideways"], "2>&-").status, 64)
        let full = try allocbench(["--repeat", "0", "--allocators", "glibc"], ">/dev/full 2>&-")
        XCTAssertEqual(full.status, 73, "stdout full: the table cannot be written")
    }
}
