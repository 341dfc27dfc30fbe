import AllocBenchModel
import Foundation

/// One committed baseline file, `<trace name>.json`: every gated metric of every allocator on one
/// trace, and everything the numbers depend on. Schema "allocbench.baseline/1".
///
/// A thin wrapper rather than a RunReport: a RunReport also holds every timed run, self-reported
/// statistics and library paths, which change on every refresh and would bury the diff that
/// matters in review.
public struct BaselineFile: Codable, Sendable, Equatable {
    public static let schema = "allocbench.baseline/1"

    public var schema: String
    public var environment: RunEnvironment
    public var conditions: MeasurementConditions
    public var settings: RunSettings
    public var trace: TraceSummary
    /// allocator → metric name → value.
    public var allocators: [String: [String: Double]]

    /// The baseline of one replayed trace; nil with the failed rows when any replay failed, since
    /// a failure is not a baseline.
    public static func record(_ run: TraceRun, environment: RunEnvironment, settings: RunSettings,
                              conditions: MeasurementConditions) -> Result<BaselineFile, FailedRows> {
        let failed = run.results.filter { !$0.isOK }
        guard failed.isEmpty else { return .failure(FailedRows(trace: run.trace.name, rows: failed)) }
        let snapshot = GateSnapshot.Trace(run: run, environment: environment, conditions: conditions, settings: settings)
        return .success(BaselineFile(
            schema: schema, environment: environment, conditions: conditions, settings: settings, trace: run.trace,
            allocators: Dictionary(snapshot.pairs.map { ($0.allocator, $0.metrics) }, uniquingKeysWith: { first, _ in first })))
    }

    public struct FailedRows: Error, Sendable {
        public var trace: String
        public var rows: [AllocatorResult]
    }

    /// Pretty, sorted keys, one value per line: diffs show exactly the metrics that moved.
    public func encoded() throws -> Data {
        try AllocBenchJSON.encode(self)
    }
}

/// A baseline or run file that cannot be used: not JSON, another schema, an unknown metric (exit 65).
public struct GateInputError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// The numbers on one side of a comparison, from a run report, baseline files, or a fresh run.
public struct GateSnapshot: Sendable {
    public struct Pair: Sendable, Equatable {
        public var allocator: String
        /// Why the replay produced no numbers ("crashed: SIGSEGV after op 12"), or nil.
        public var failure: String?
        public var metrics: [String: Double]
        /// The larger coefficient of variation of this row's timed runs and glibc's, which the time
        /// ratio divides; nil when not known (a baseline file keeps none).
        public var timingSpread: Double?

        public init(allocator: String, failure: String? = nil, metrics: [String: Double], timingSpread: Double? = nil) {
            self.allocator = allocator
            self.failure = failure
            self.metrics = metrics
            self.timingSpread = timingSpread
        }
    }

    public struct Trace: Sendable {
        public var name: String
        public var ops: Int
        public var peakLiveBytes: UInt64
        /// Fact name → value; see `EnvironmentFact`.
        public var environment: [String: String]
        public var settings: RunSettings
        public var pairs: [Pair]

        public init(name: String, ops: Int, peakLiveBytes: UInt64, environment: [String: String], settings: RunSettings, pairs: [Pair]) {
            self.name = name
            self.ops = ops
            self.peakLiveBytes = peakLiveBytes
            self.environment = environment
            self.settings = settings
            self.pairs = pairs
        }

        init(run: TraceRun, environment: RunEnvironment, conditions: MeasurementConditions?, settings: RunSettings) {
            self.init(
                name: run.trace.name, ops: run.trace.ops, peakLiveBytes: run.trace.peakLiveBytes,
                environment: EnvironmentFact.fields(environment, conditions), settings: settings,
                pairs: run.results.map { result in
                    let glibc = run.results.first { $0.allocator == Metric.glibcName && $0.isOK }?.nsPerOp?.coefficientOfVariation
                    let spreads = [result.nsPerOp?.coefficientOfVariation, glibc].compactMap { $0 }
                    return result.isOK
                        ? Pair(allocator: result.allocator, metrics: Metric.values(of: result, in: Metric.Context(run: run, pageSize: environment.pageSize)),
                               timingSpread: spreads.max())
                        : Pair(allocator: result.allocator,
                               failure: result.status.rawValue + (result.detail.map { ": " + $0 } ?? ""), metrics: [:])
                })
        }

        init(baseline: BaselineFile) {
            self.init(
                name: baseline.trace.name, ops: baseline.trace.ops, peakLiveBytes: baseline.trace.peakLiveBytes,
                environment: EnvironmentFact.fields(baseline.environment, baseline.conditions),
                settings: baseline.settings,
                pairs: baseline.allocators.keys.sorted().map { Pair(allocator: $0, metrics: baseline.allocators[$0] ?? [:]) })
        }
    }

    /// A path, or "this run".
    public var source: String
    public var traces: [Trace]

    public init(source: String, traces: [Trace]) {
        self.source = source
        self.traces = traces
    }

    /// A run report; `conditions` when the caller knows them (a run it just made).
    public init(report: RunReport, conditions: MeasurementConditions?, source: String) {
        self.init(source: source, traces: report.runs.map {
            Trace(run: $0, environment: report.environment, conditions: conditions, settings: report.settings)
        })
    }

    public init(baselines: [BaselineFile], source: String) {
        self.init(source: source, traces: baselines.map(Trace.init(baseline:)))
    }

    /// A run report ("allocbench.run/1") or a baseline file ("allocbench.baseline/1"), told apart
    /// by their schema field. `source` names the file in errors.
    public static func decode(_ data: Data, source: String, metrics: [Metric] = Metric.gated) throws(GateInputError) -> Decoded {
        struct SchemaProbe: Decodable { var schema: String? }
        let schema: String?
        do {
            schema = try JSONDecoder().decode(SchemaProbe.self, from: data).schema
        } catch {
            throw GateInputError("\(source): not a JSON object (\(describe(error)))")
        }
        switch schema {
        case RunReport.schema:
            do {
                return .run(try RunReport.decode(data))
            } catch {
                throw GateInputError("\(source): not a valid \(RunReport.schema) report (\(describe(error)))")
            }
        case BaselineFile.schema:
            let baseline: BaselineFile
            do {
                baseline = try AllocBenchJSON.decode(BaselineFile.self, from: data)
            } catch {
                throw GateInputError("\(source): not a valid \(BaselineFile.schema) file (\(describe(error)))")
            }
            for (allocator, values) in baseline.allocators.sorted(by: { $0.key < $1.key }) {
                for name in values.keys.sorted() {
                    guard let metric = Metric.named(name, in: metrics) else {
                        throw GateInputError("\(source): allocator '\(allocator)' has unknown metric '\(name)' "
                            + "(written by another allocbench version? re-record with `allocbench baseline update`)")
                    }
                    if let value = values[name], !metric.admits(value) {
                        throw GateInputError("\(source): allocator '\(allocator)', \(name) is \(value); "
                            + (metric.unit == .ratio ? "a ratio is a finite number ≥ 0" : "a count of \(metric.unit.rawValue) is a whole number from 0 to 2^53"))
                    }
                }
            }
            return .baseline(baseline)
        case let other:
            throw GateInputError("\(source): schema \(other.map { "'\($0)'" } ?? "missing"); expected \(RunReport.schema) or \(BaselineFile.schema)")
        }
    }

    public enum Decoded: Sendable {
        case run(RunReport)
        case baseline(BaselineFile)
    }

    /// The field path and reason of a decoding error, in one line.
    static func describe(_ error: Error) -> String {
        guard let error = error as? DecodingError else { return String(describing: error) }
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }
            return keys.isEmpty ? "" : " at " + keys.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context): return "missing '\(key.stringValue)'\(path(context))"
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return context.debugDescription + path(context)
        @unknown default: return String(describing: error)
        }
    }
}
