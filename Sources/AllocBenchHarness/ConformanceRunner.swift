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
        do {
            let completion = try ChildProcess.run([entry.executable, "conformance", entry.childAllocator], adding: entry.environment)
            let output = completion.output + completion.errors
                + (completion.killedBySignal ? "killed by signal \(completion.status)\n" : "")
            return Outcome(allocator: entry.name, passed: completion.succeeded, output: output)
        } catch {
            return Outcome(allocator: entry.name, passed: false, output: "cannot start \(entry.executable): \(error.message)")
        }
    }
}
