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

/// Runs an executable with arguments and optional environment additions through the harness's
/// own `Subprocess`: both streams captured, and a command that hangs fails the test after
/// `timeout` instead of hanging the suite (and dies with it, if the suite is killed).
func runCommand(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                workingDirectory: String? = nil, timeout: Duration = .seconds(900)) throws -> CommandResult {
    var merged = ProcessInfo.processInfo.environment
    for (key, value) in environment { merged[key] = value }
    let completion = try Subprocess.run(
        [executable] + arguments,
        options: Subprocess.Options(environment: merged.map { $0.key + "=" + $0.value }, workingDirectory: workingDirectory),
        timeout: timeout)
    let status: Int32
    switch completion.termination {
    case .exited(let code): status = code
    case .signaled(let signal): status = 128 + signal
    case .timedOut: throw CommandTimedOut(command: ([executable] + arguments).joined(separator: " "), termination: completion.termination)
    }
    return CommandResult(status: status, stdout: completion.output, stderr: completion.errors)
}

struct CommandTimedOut: Error, CustomStringConvertible {
    var command: String
    var termination: Subprocess.Termination
    var description: String { "\(command) \(termination)" }
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
