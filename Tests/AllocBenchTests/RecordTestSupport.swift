import AllocBenchCore
import AllocBenchHarness
import Foundation
import XCTest

/// Builds C test programs, records them, and reads what was recorded.
enum RecordFixture {
    /// Where SwiftPM put the test binary, the recorder library and the CLI.
    static var productsDirectory: String { AllocatorCatalog.executableDirectory() }

    static var libraryPath: String { productsDirectory + "/" + Recorder.libraryFileName }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "allocbench-record-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Compiles `source` with cc -O0 (so that no malloc/free pair is optimized away).
    static func compile(_ source: String, named name: String, in directory: String,
                        file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let sourcePath = directory + "/" + name + ".c"
        let executable = directory + "/" + name
        try source.write(toFile: sourcePath, atomically: true, encoding: .utf8)
        let result = try runCommand("/usr/bin/env", ["cc", "-O0", "-g", "-pthread", "-o", executable, sourcePath])
        XCTAssertEqual(result.status, 0, "cc failed: \(result.stderr)", file: file, line: line)
        return executable
    }

    /// Records `command` into `<directory>/trace.txt`.
    static func record(_ command: [String], in directory: String, followChildren: Bool = true,
                       timestamps: Bool = false) throws -> RecordOutcome {
        XCTAssertTrue(FileManager.default.fileExists(atPath: libraryPath),
                      "\(libraryPath) is missing: build the package (swift build) before testing")
        return try Recorder.record(RecordRequest(
            command: command, outputPath: directory + "/trace.txt", libraryPath: libraryPath,
            followChildren: followChildren, timestamps: timestamps))
    }

    static func lines(of path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: false)
            .dropLast().map(String.init)
    }

    /// A report file the test programs write after their last recorded operation: whitespace-
    /// separated words, pointers as printf's %p ("(nil)" becomes "0x0").
    static func report(_ path: String) throws -> [String] {
        try String(contentsOfFile: path, encoding: .utf8).split(whereSeparator: { $0 == " " || $0 == "\n" })
            .map { $0 == "(nil)" ? "0x0" : String($0) }
    }

    static func parseStrictly(_ path: String) throws -> ParsedTrace {
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        return try TraceParser.parse(bytes)
    }
}
