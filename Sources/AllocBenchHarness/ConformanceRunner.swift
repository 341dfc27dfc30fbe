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

    /// The suite may take `timeout`; an entry whose preload check already failed is not conformant.
    public static func run(_ entry: CatalogEntry, timeout: Duration = ReplayRunner.defaultErrandTimeout) -> Outcome {
        if let failure = entry.failure { return Outcome(allocator: entry.name, passed: false, output: failure + "\n") }
        do {
            let completion = try ReplayRunner.errand([entry.executable, "conformance", entry.childAllocator],
                                                     adding: entry.environment, timeout: timeout)
            var output = completion.output + completion.errors
            if case .exited = completion.termination {} else { output += completion.termination.description + "\n" }
            return Outcome(allocator: entry.name, passed: completion.succeeded, output: output)
        } catch {
            return Outcome(allocator: entry.name, passed: false, output: "cannot start \(entry.executable): \(error)")
        }
    }
}
