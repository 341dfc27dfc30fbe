import AllocBenchModel
import Foundation

/// The verdict of a check or compare, and its exit code.
///
/// When several apply, the first in this order wins: 1 > 5 > 3 > 2 > 4 > 0. A failed replay has no
/// numbers to judge; a missing baseline means part of the run is not gated at all; a changed
/// environment may explain any regression; a regression matters more than an improvement.
public enum GateOutcome: String, Codable, Sendable, CaseIterable {
    /// Every metric of every pair within tolerance.
    case passed = "pass"
    /// A replay failed, crashed or timed out, on either side.
    case replayFailed = "replay_failed"
    /// A (trace, allocator) pair, or a gated metric of one, is on one side only: fail closed.
    case missing
    /// The baseline was taken where a fact that can change this row's page counts differs (page
    /// size, architecture, build, ASLR, allocbench version, huge-page mode, the row's own allocator
    /// library), or on another kernel release with --strict-env. See `EnvironmentFact`.
    case environmentChanged = "environment_changed"
    /// A metric got worse beyond its tolerance.
    case regressed = "regression"
    /// A metric got better beyond its tolerance: refresh the baseline so the gain is kept.
    case improved = "improvement"

    public var exitCode: Int32 {
        switch self {
        case .passed: 0
        case .replayFailed: 1
        case .regressed: 2
        case .environmentChanged: 3
        case .improved: 4
        case .missing: 5
        }
    }

    /// Higher wins.
    var precedence: Int {
        switch self {
        case .passed: 0
        case .improved: 1
        case .regressed: 2
        case .environmentChanged: 3
        case .missing: 4
        case .replayFailed: 5
        }
    }

    static func worst(_ outcomes: some Sequence<GateOutcome>) -> GateOutcome {
        outcomes.max { $0.precedence < $1.precedence } ?? .passed
    }
}

/// One metric of one pair.
public struct MetricComparison: Codable, Sendable, Equatable {
    public enum Verdict: String, Codable, Sendable {
        case unchanged
        case withinTolerance = "within_tolerance"
        case regression
        case improvement
        case missingBaseline = "missing_baseline"
        case missingCurrent = "missing_current"
        /// `METRIC=off`, or a timing metric on a trace too short to time.
        case notGated = "not_gated"
    }

    public var metric: String
    public var unit: String
    public var baseline: Double?
    public var current: Double?
    /// current − baseline.
    public var change: Double?
    /// change / baseline, nil when the baseline is 0.
    public var relativeChange: Double?
    public var tolerance: String
    public var verdict: Verdict

    public init(metric: Metric, baseline: Double?, current: Double?, tolerance: Tolerance, verdict: Verdict) {
        self.metric = metric.key
        unit = metric.unit.rawValue
        self.baseline = baseline
        self.current = current
        if let baseline, let current {
            change = current - baseline
            relativeChange = baseline == 0 ? nil : (current - baseline) / abs(baseline)
        }
        self.tolerance = tolerance.description
        self.verdict = verdict
    }

    /// Beyond tolerance or on one side only.
    public var isViolation: Bool {
        [.regression, .improvement, .missingBaseline, .missingCurrent].contains(verdict)
    }
}

/// One (trace, allocator) pair.
public struct PairComparison: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        case compared
        case missingBaseline = "missing_baseline"
        case missingCurrent = "missing_current"
        case replayFailed = "replay_failed"
    }

    public var trace: String
    public var allocator: String
    public var status: Status
    /// For a failed replay: which side and what happened.
    public var detail: String?
    public var metrics: [MetricComparison]
    public var outcome: GateOutcome
}

/// A field that differs between the baseline and the current side, and on which traces.
public struct FieldDifference: Codable, Sendable, Equatable {
    public var field: String
    public var baseline: String
    public var current: String
    public var traces: [String]
    /// For an environment fact: what it can change (nil for a setting).
    public var effect: EnvironmentFact.Effect?
    /// For a fact that can change counts: the rows it fails, by allocator; nil for every row.
    public var allocators: [String]?
    /// Whether it fails the rows it affects (exit 3): a count-affecting fact without
    /// --allow-env-change, or the kernel release with --strict-env.
    public var fails: Bool?
}

/// Everything a check or compare found; rendered as text, Markdown or JSON.
public struct GateReport: Codable, Sendable {
    public static let schema = "allocbench.gate/1"

    public var schema: String
    /// "check" or "compare".
    public var command: String
    public var outcome: GateOutcome
    public var exitCode: Int32
    public var baselineSource: String
    public var currentSource: String
    /// The current side's environment (of its first trace).
    public var environment: [String: String]
    /// Every environment fact that differs, each with what it can change and whether it failed.
    public var environmentDifferences: [FieldDifference]
    public var environmentChangeAllowed: Bool
    /// The kernel release fails like a count-affecting fact (--strict-env).
    public var strictEnvironment: Bool?
    /// touch, lenient, timed runs: reported, never failed on; the numbers say what they changed.
    public var settingsDifferences: [FieldDifference]
    /// "defaults", then each tolerances file and `--tolerance` in the order applied.
    public var tolerances: [String]
    public var minimumOpsForTiming: Int
    public var pairs: [PairComparison]
    public var notes: [String]

    public func encoded() throws -> Data {
        try AllocBenchJSON.encode(self)
    }

    /// The comparison of one (trace, allocator) pair.
    public func pair(_ trace: String, _ allocator: String) -> PairComparison? {
        pairs.first { $0.trace == trace && $0.allocator == allocator }
    }

    /// One metric of one pair.
    public func metric(_ trace: String, _ allocator: String, _ metric: String) -> MetricComparison? {
        pair(trace, allocator)?.metrics.first { $0.metric == metric }
    }
}

public struct GateOptions: Sendable {
    /// Report environment differences but do not fail on them (exit 3).
    public var allowEnvironmentChange: Bool
    /// Fail on a new kernel release too, not only warn (--strict-env).
    public var strictEnvironment: Bool
    /// Timing metrics are compared only on traces with at least this many ops: below it the
    /// replay lasts microseconds and the ratio measures process start-up and noise.
    public var minimumOpsForTiming: Int
    /// The allocators the user chose with `--allocators`; baseline rows of the others are not
    /// expected in the run. nil: every baseline row must be in the run.
    public var selectedAllocators: Set<String>?
    public var metrics: [Metric]

    public static let defaultMinimumOpsForTiming = 10_000

    public init(allowEnvironmentChange: Bool = false, strictEnvironment: Bool = false,
                minimumOpsForTiming: Int = defaultMinimumOpsForTiming,
                selectedAllocators: Set<String>? = nil, metrics: [Metric] = Metric.gated) {
        self.allowEnvironmentChange = allowEnvironmentChange
        self.strictEnvironment = strictEnvironment
        self.minimumOpsForTiming = minimumOpsForTiming
        self.selectedAllocators = selectedAllocators
        self.metrics = metrics
    }
}

public enum Gate {
    /// Compares every (trace, allocator) pair of `current` against `baseline`.
    public static func compare(baseline: GateSnapshot, current: GateSnapshot, tolerances: ToleranceTable,
                               options: GateOptions = GateOptions(), command: String) -> GateReport {
        var pairs: [PairComparison] = []
        var notes: [String] = []
        var environmentDifferences: [FieldDifference] = []
        var settingsDifferences: [FieldDifference] = []
        /// Count-affecting facts one side does not record, "field in side" → traces, in order met.
        var unrecordedFacts: [(fact: String, traces: [String])] = []

        let baselineTraces = Dictionary(baseline.traces.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let currentTraces = Dictionary(current.traces.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        let traceNames = ordered(current.traces.map(\.name) + baseline.traces.map(\.name))

        for traceName in traceNames {
            let old = baselineTraces[traceName]
            let new = currentTraces[traceName]
            var failingFacts: [EnvironmentFact] = []
            if let old, let new {
                for field in EnvironmentFact.ordered(Set(old.environment.keys).union(new.environment.keys)) {
                    guard let fact = EnvironmentFact.named(field) else { continue }
                    guard let before = old.environment[field], let after = new.environment[field] else {
                        if fact.effect == .countsEveryRow || fact.effect == .countsOwnRow {
                            let fact = "\(field) is not recorded in " + (old.environment[field] == nil ? "the baseline" : "this side")
                            if let index = unrecordedFacts.firstIndex(where: { $0.fact == fact }) {
                                unrecordedFacts[index].traces.append(traceName)
                            } else {
                                unrecordedFacts.append((fact, [traceName]))
                            }
                        }
                        continue
                    }
                    guard before != after else { continue }
                    let fails = switch fact.effect {
                    case .countsEveryRow, .countsOwnRow: true
                    case .kernelRelease: options.strictEnvironment
                    case .describes: false
                    }
                    if fails { failingFacts.append(fact) }
                    record(&environmentDifferences, field: field, before, after, trace: traceName, fact: fact,
                           fails: fails && !options.allowEnvironmentChange)
                }
                for (field, before, after) in [
                    ("touch", old.settings.touch.rawValue, new.settings.touch.rawValue),
                    ("lenient", String(old.settings.lenient), String(new.settings.lenient)),
                    ("timed_runs", String(old.settings.timedRuns), String(new.settings.timedRuns)),
                ] where before != after {
                    record(&settingsDifferences, field: field, before, after, trace: traceName)
                }
                if old.ops != new.ops || old.peakLiveBytes != new.peakLiveBytes {
                    notes.append("\(traceName): the trace changed since the baseline (ops \(old.ops) → \(new.ops), "
                        + "peak live bytes \(old.peakLiveBytes) → \(new.peakLiveBytes)); refresh its baseline if that was intended")
                }
            }
            let timingTooShort = (new ?? old).map { $0.ops < options.minimumOpsForTiming } ?? false
            let timed = options.metrics.filter(\.isTiming).map(\.key).filter { name in
                [old, new].contains { $0?.pairs.contains { $0.metrics[name] != nil } ?? false }
            }
            if timingTooShort && !timed.isEmpty {
                notes.append("\(traceName): \(timed.joined(separator: ", ")) not gated: the trace has \((new ?? old)?.ops ?? 0) ops "
                    + "and time is gated from \(options.minimumOpsForTiming) (--min-ops-for-time)")
            }

            let oldPairs = Dictionary((old?.pairs ?? []).map { ($0.allocator, $0) }, uniquingKeysWith: { first, _ in first })
            let newPairs = Dictionary((new?.pairs ?? []).map { ($0.allocator, $0) }, uniquingKeysWith: { first, _ in first })
            let allocators = ordered((new?.pairs ?? []).map(\.allocator) + (old?.pairs ?? []).map(\.allocator))
            for allocator in allocators {
                let oldPair = oldPairs[allocator]
                let newPair = newPairs[allocator]
                if newPair == nil, let selected = options.selectedAllocators, !selected.contains(allocator) {
                    notes.append("\(traceName)/\(allocator): in the baseline, not checked (not among --allocators)")
                    continue
                }
                // A ratio of medians whose runs vary by more than a third of its tolerance cannot tell
                // a change from noise: say so instead of judging it.
                let spread = max(oldPair?.timingSpread ?? 0, newPair?.timingSpread ?? 0)
                var timingTooNoisy = false
                for metric in options.metrics where metric.isTiming && !timingTooShort {
                    let allowance = tolerances.tolerance(for: metric, allocator: allocator).increase.relative ?? 0
                    guard allowance.isFinite, spread * 3 > allowance, newPair?.metrics[metric.key] != nil else { continue }
                    timingTooNoisy = true
                    notes.append("\(traceName)/\(allocator): \(metric.key) not gated: its timed runs vary by ±"
                        + String(format: "%.1f%%", spread * 100) + " (coefficient of variation), more than a third of its "
                        + String(format: "%g%%", allowance * 100) + " tolerance; time again on a quieter machine or with more --repeat")
                }
                var pair = comparePair(trace: traceName, allocator: allocator, old: oldPair, new: newPair,
                                       timingTooShort: timingTooShort || timingTooNoisy, tolerances: tolerances, options: options)
                let changed = failingFacts.filter { $0.allocator == nil || $0.allocator == allocator }
                if !changed.isEmpty && !options.allowEnvironmentChange && pair.status == .compared {
                    pair.outcome = GateOutcome.worst([pair.outcome, .environmentChanged])
                    let facts = changed.map { fact in
                        "\(fact.name) \(old?.environment[fact.name] ?? "") → \(new?.environment[fact.name] ?? "")"
                    }
                    pair.detail = facts.joined(separator: ", ")
                }
                pairs.append(pair)
            }
        }
        for unrecorded in unrecordedFacts {
            notes.append("\(unrecorded.fact) (a run report, or a file an earlier allocbench wrote), so it is not compared, "
                + "on \(unrecorded.traces.joined(separator: ", "))")
        }
        for difference in environmentDifferences where difference.fails != true {
            switch difference.effect {
            case .kernelRelease?:
                notes.append("warning: kernel release \(difference.baseline) (baseline) → \(difference.current) (now): the kernel does "
                    + "the counting, so run the ground-truth tests on this kernel (`\(EnvironmentFact.groundTruthTest)`); "
                    + "--strict-env makes this fail")
            case .describes?:
                notes.append("\(difference.field): \(difference.baseline) (baseline) → \(difference.current) (now): describes the "
                    + "machine only, not compared")
            case .countsEveryRow?, .countsOwnRow?, nil:
                break
            }
        }

        let knownAllocators = Set(baseline.traces.flatMap(\.pairs).map(\.allocator) + current.traces.flatMap(\.pairs).map(\.allocator))
        for allocator in tolerances.scopedAllocators.subtracting(knownAllocators).sorted() {
            notes.append("tolerances for '\(allocator):…' match no allocator on either side")
        }

        var outcomes = pairs.map(\.outcome)
        if pairs.isEmpty {
            notes.append("nothing to compare: neither side has a (trace, allocator) pair")
            outcomes.append(.missing)
        }
        let outcome = GateOutcome.worst(outcomes)
        return GateReport(
            schema: GateReport.schema, command: command, outcome: outcome, exitCode: outcome.exitCode,
            baselineSource: baseline.source, currentSource: current.source,
            environment: current.traces.first?.environment ?? [:],
            environmentDifferences: environmentDifferences, environmentChangeAllowed: options.allowEnvironmentChange,
            strictEnvironment: options.strictEnvironment,
            settingsDifferences: settingsDifferences, tolerances: ["defaults"] + tolerances.sources,
            minimumOpsForTiming: options.minimumOpsForTiming, pairs: pairs, notes: notes)
    }

    static func comparePair(trace: String, allocator: String, old: GateSnapshot.Pair?, new: GateSnapshot.Pair?,
                            timingTooShort: Bool, tolerances: ToleranceTable, options: GateOptions) -> PairComparison {
        func pair(_ status: PairComparison.Status, _ detail: String?, _ metrics: [MetricComparison], _ outcome: GateOutcome) -> PairComparison {
            PairComparison(trace: trace, allocator: allocator, status: status, detail: detail, metrics: metrics, outcome: outcome)
        }
        let failures = [old?.failure.map { "baseline side: " + $0 }, new?.failure.map { "current side: " + $0 }].compactMap { $0 }
        if !failures.isEmpty {
            return pair(.replayFailed, failures.joined(separator: "; "), [], .replayFailed)
        }
        guard let old else {
            return pair(.missingBaseline, "no baseline for this pair; record one with `allocbench baseline update`", [], .missing)
        }
        guard let new else {
            return pair(.missingCurrent, "in the baseline but not in this run (allocator removed or unavailable?)", [], .missing)
        }
        var metrics: [MetricComparison] = []
        for metric in options.metrics {
            let tolerance = tolerances.tolerance(for: metric, allocator: allocator)
            let before = old.metrics[metric.key]
            let after = new.metrics[metric.key]
            if before == nil && after == nil { continue }
            let verdict: MetricComparison.Verdict
            if !tolerance.isGated || (metric.isTiming && timingTooShort) {
                verdict = .notGated
            } else if let before, let after {
                verdict = before == after ? .unchanged
                    : tolerance.permits(from: before, to: after) ? .withinTolerance
                    : metric.polarity.isWorse(after, than: before) ? .regression : .improvement
            } else {
                verdict = before == nil ? .missingBaseline : .missingCurrent
            }
            metrics.append(MetricComparison(metric: metric, baseline: before, current: after, tolerance: tolerance, verdict: verdict))
        }
        let verdicts = Set(metrics.map(\.verdict))
        let outcome: GateOutcome = !verdicts.isDisjoint(with: [.missingBaseline, .missingCurrent]) ? .missing
            : verdicts.contains(.regression) ? .regressed
            : verdicts.contains(.improvement) ? .improved
            : .passed
        return pair(.compared, nil, metrics, outcome)
    }

    static func record(_ differences: inout [FieldDifference], field: String, _ before: String, _ after: String, trace: String,
                       fact: EnvironmentFact? = nil, fails: Bool? = nil) {
        if let index = differences.firstIndex(where: { $0.field == field && $0.baseline == before && $0.current == after }) {
            differences[index].traces.append(trace)
        } else {
            differences.append(FieldDifference(
                field: field, baseline: before, current: after, traces: [trace], effect: fact?.effect,
                allocators: fact?.allocator.map { [$0] }, fails: fails))
        }
    }

    /// First occurrences, in order.
    static func ordered(_ names: [String]) -> [String] {
        var seen = Set<String>()
        return names.filter { seen.insert($0).inserted }
    }
}
