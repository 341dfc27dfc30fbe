import Foundation
import XCTest

/// --output is a file allocbench may replace: never a trace it reads, never an empty name.
final class OutputPathTests: XCTestCase {
    func testAnOutputThatIsATraceOrEmptyIsAUsageError() throws {
        let directory = try TestPaths.temporaryDirectory()
        let trace = directory + "/t.txt"
        try "1: malloc 0x10 16\n".write(toFile: trace, atomically: true, encoding: .utf8)
        let same = try runCommand(TestPaths.cli, ["--trace", trace, "--output", trace, "--repeat", "0"])
        XCTAssertEqual(same.status, 64, same.stderr)
        XCTAssertTrue(same.stderr.contains("is the trace"), same.stderr)
        XCTAssertEqual(try String(contentsOfFile: trace, encoding: .utf8), "1: malloc 0x10 16\n", "the trace is untouched")
        let viaLink = directory + "/link.txt"
        try FileManager.default.createSymbolicLink(atPath: viaLink, withDestinationPath: trace)
        XCTAssertEqual(try runCommand(TestPaths.cli, ["--trace", trace, "--output", viaLink, "--repeat", "0"]).status, 64)
        let empty = try runCommand(TestPaths.cli, ["--trace", trace, "--output", "", "--repeat", "0"])
        XCTAssertEqual(empty.status, 64, empty.stderr)
        XCTAssertTrue(empty.stderr.contains("--output needs a file name"), empty.stderr)
    }
}
