/// Putting run reports back together: the shards of one `--shard K/N` run, or any runs of disjoint
/// (trace, allocator) pairs taken with the same settings.
///
/// This is the structural half: pairs, traces, settings, shard plans. Whether the environments
/// agree is decided by the gate's table of facts, `EnvironmentFact.all`, in `ReportMerge`
/// (AllocBenchGate), which calls this after it; the merged report keeps the first file's
/// environment.
extension RunReport {
    /// One input of a merge and the name errors give it (its path).
    public struct MergePart: Sendable {
        public var source: String
        public var report: RunReport

        public init(source: String, report: RunReport) {
            self.source = source
            self.report = report
        }
    }

    /// The merged report and what a reader should know about it (one line each).
    public struct Merged: Sendable {
        public var report: RunReport
        public var notes: [String]
    }

    /// Refuses a (trace, allocator) pair in two parts, a trace whose parts disagree on what it is,
    /// settings that differ, and shards of different plans or one shard twice. Traces and rows
    /// come out in the plan's order when the parts are shards, else in the order first met.
    public static func merging(_ parts: [MergePart]) throws(MergeConflict) -> Merged {
        guard let first = parts.first else { throw MergeConflict("nothing to merge: no run reports given") }
        var notes: [String] = []
        for part in parts.dropFirst() where part.report.settings != first.report.settings {
            let difference = settingsDifferences(first.report.settings, part.report.settings)
                .map { "\($0.field) \($0.before) (\(first.source)) vs \($0.after) (\(part.source))" }
            throw MergeConflict("\(first.source) and \(part.source) were run with different settings: "
                + difference.joined(separator: ", "))
        }
        let plan = try commonPlan(parts, notes: &notes)

        var runs: [TraceRun] = []
        var sourceOfTrace: [String: String] = [:]
        var sourceOfPair: [String: String] = [:]
        var timedAcrossParts: Set<String> = []
        for part in parts {
            for run in part.report.runs {
                let name = run.trace.name
                if let index = runs.firstIndex(where: { $0.trace.name == name }) {
                    guard sameTrace(runs[index].trace, run.trace) else {
                        throw MergeConflict("trace '\(name)' is not the same trace in \(sourceOfTrace[name] ?? first.source) "
                            + "and \(part.source) (ops \(runs[index].trace.ops) vs \(run.trace.ops), "
                            + "peak live bytes \(runs[index].trace.peakLiveBytes) vs \(run.trace.peakLiveBytes))")
                    }
                    runs[index].results += run.results
                    runs[index].liveBytes = runs[index].liveBytes ?? run.liveBytes
                    if part.report.settings.timedRuns > 0 && !run.results.isEmpty { timedAcrossParts.insert(name) }
                } else {
                    runs.append(run)
                    sourceOfTrace[name] = part.source
                }
                for result in run.results {
                    let pair = "\(name)/\(result.allocator)"
                    if let other = sourceOfPair[pair] {
                        throw MergeConflict(other == part.source
                            ? "\(pair) is in \(part.source) twice"
                            : "\(pair) is in both \(other) and \(part.source)")
                    }
                    sourceOfPair[pair] = part.source
                }
            }
        }
        if let plan {
            runs = runs.sorted(byPositionIn: plan.traces, \.trace.name)
            for index in runs.indices {
                runs[index].results = runs[index].results.sorted(byPositionIn: plan.allocators, \.allocator)
            }
        }
        let timedApart = runs.map(\.trace.name).filter(timedAcrossParts.contains)
        if !timedApart.isEmpty {
            notes.append("ns/op vs glibc on \(timedApart.joined(separator: ", ")) compares rows timed in different runs, "
                + "perhaps on different machines (docs/sharding.md)")
        }
        let report = RunReport(environment: first.report.environment, conditions: first.report.conditions,
                               settings: first.report.settings, shard: nil, runs: runs)
        return Merged(report: report, notes: notes)
    }

    /// The plan every shard among the parts was cut from (nil when no part is a shard); notes the
    /// shards missing from it.
    private static func commonPlan(_ parts: [MergePart], notes: inout [String]) throws(MergeConflict) -> Shard? {
        let shards = parts.compactMap { part in part.report.shard.map { (source: part.source, shard: $0) } }
        guard let first = shards.first else { return nil }
        var seen: [Int: String] = [:]
        for (source, shard) in shards {
            guard shard.isCut(from: first.shard) else {
                throw MergeConflict("\(first.source) (shard \(first.shard)) and \(source) (shard \(shard)) are shards of "
                    + "different runs: their shard counts, traces or allocators differ")
            }
            if let other = seen[shard.index] {
                throw MergeConflict("shard \(shard) is in both \(other) and \(source)")
            }
            seen[shard.index] = source
        }
        let missing = (1...first.shard.count).filter { seen[$0] == nil }
        if !missing.isEmpty {
            notes.append("warning: shard\(missing.count == 1 ? "" : "s") "
                + missing.map { "\($0)/\(first.shard.count)" }.joined(separator: ", ")
                + " not given: the merged result lacks their pairs")
        }
        return first.shard
    }

    /// The same trace, read from wherever it was: every fact of its summary but the path.
    private static func sameTrace(_ one: TraceSummary, _ other: TraceSummary) -> Bool {
        var relocated = other
        relocated.path = one.path
        return relocated == one
    }

    private static func settingsDifferences(_ one: RunSettings, _ other: RunSettings) -> [(field: String, before: String, after: String)] {
        [
            ("touch", one.touch.rawValue, other.touch.rawValue),
            ("timed_runs", String(one.timedRuns), String(other.timedRuns)),
            ("timeout_seconds", String(one.timeoutSeconds), String(other.timeoutSeconds)),
            ("lenient", String(one.lenient), String(other.lenient)),
            ("address_randomization", String(one.addressRandomization), String(other.addressRandomization)),
        ].filter { $0.1 != $0.2 }
    }
}

/// Why run reports cannot be merged, in one line naming the files (exit 65).
public struct MergeConflict: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

extension Array {
    /// Stable: elements keep their order among those `order` does not list, after those it does.
    fileprivate func sorted(byPositionIn order: [String], _ key: (Element) -> String) -> [Element] {
        let position = Dictionary(order.enumerated().map { ($0.element, $0.offset) }, uniquingKeysWith: { first, _ in first })
        return enumerated().sorted { lhs, rhs in
            (position[key(lhs.element)] ?? order.count, lhs.offset) < (position[key(rhs.element)] ?? order.count, rhs.offset)
        }.map(\.element)
    }
}
