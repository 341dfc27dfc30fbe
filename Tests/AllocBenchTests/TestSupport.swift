import AllocBenchHarness
import Foundation
import XCTest

/// Paths the tests need: the build products beside the test bundle, the package root, and the
/// read-only real traces in ../shared (CI lays them beside the clone).
enum TestPaths {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().path
    static let products = AllocatorCatalog.executableDirectory()
    static let cli = products + "/allocbench"
    static let testingChild = products + "/allocbench-testing-child"
    static let sharedTraces = packageRoot + "/../shared/traces"
    static let bundledTraces = packageRoot + "/Benchmarks/traces"

    /// A file under ../shared/traces; fails the test (never skips it) when the folder is missing.
    static func sharedTrace(_ relative: String, file: StaticString = #filePath, line: UInt = #line) -> String? {
        let path = sharedTraces + "/" + relative
        guard FileManager.default.fileExists(atPath: path) else {
            XCTFail("\(path) is missing: the tests read the real traces from ../shared/traces beside the package", file: file, line: line)
            return nil
        }
        return path
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "allocbench-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }
}

/// The result of running a command to completion.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs an executable with arguments and optional environment additions; captures both streams.
func runCommand(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                workingDirectory: String? = nil) throws -> CommandResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    var merged = ProcessInfo.processInfo.environment
    for (key, value) in environment { merged[key] = value }
    process.environment = merged
    if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
    let out = Pipe()
    let err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes concurrently with the process so that neither fills and blocks it.
    let group = DispatchGroup()
    nonisolated(unsafe) var errData = Data()
    group.enter()
    DispatchQueue.global().async {
        errData = err.fileHandleForReading.readDataToEndOfFile()
        group.leave()
    }
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    group.wait()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus,
                         stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

/// A catalog entry for an allocator of the testing child.
func testingEntry(_ name: String, environment: [String] = []) -> CatalogEntry {
    CatalogEntry(name: name, kind: .module, summary: "", note: "", executable: TestPaths.testingChild,
                 childAllocator: name, environment: environment, unavailableReason: nil)
}

/// Writes `text` to a new temporary trace file and returns its path.
func writeTrace(_ text: String, name: String = "trace.txt") throws -> String {
    let path = try TestPaths.temporaryDirectory() + "/" + name
    try text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}
