import Foundation

/// Runs the conformance suite for one allocator inside its replay child
/// (`allocbench-replay conformance NAME`), with the child's environment (LD_PRELOAD for preloads).
public enum ConformanceRunner {
    public struct Outcome: Sendable {
        public var allocator: String
        public var passed: Bool
        /// The child's report: one line per failed check, or "conformant".
        public var output: String

        public var summary: String {
            passed ? "\(allocator): conformant" : "\(allocator): NOT conformant\n\(output)"
        }
    }

    public static func run(_ entry: CatalogEntry) -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: entry.executable)
        process.arguments = ["conformance", entry.childAllocator]
        var environment = ProcessInfo.processInfo.environment
        environment["LD_PRELOAD"] = nil
        for assignment in entry.environment {
            let parts = assignment.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { environment[parts[0]] = parts[1] }
        }
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        do {
            try process.run()
        } catch {
            return Outcome(allocator: entry.name, passed: false, output: "cannot start \(entry.executable): \(error.localizedDescription)")
        }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        let signaled = process.terminationReason == .uncaughtSignal
        let detail = signaled ? output + "killed by signal \(process.terminationStatus)\n" : output
        return Outcome(allocator: entry.name, passed: !signaled && process.terminationStatus == 0, output: detail)
    }
}
