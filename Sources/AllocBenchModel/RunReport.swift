import AllocBenchCore
import Foundation

/// The machine a run was taken on. Baselines compare it before comparing numbers; which of these
/// facts can change a row's page counts, and which only describe the machine, is decided in one
/// table, `EnvironmentFact` (AllocBenchGate), and written down in docs/gating.md.
public struct RunEnvironment: Codable, Sendable, Equatable {
    /// uname(2) release, e.g. "6.18.44-fc-v782": the kernel release and its build suffix.
    public var kernel: String
    public var glibc: String
    public var jemalloc: String?
    public var pageSize: Int
    public var machine: String
    public var allocbenchVersion: String
    /// /sys/kernel/mm/transparent_hugepage/enabled, the mode in brackets ("madvise"); nil in reports
    /// written before it was recorded.
    public var transparentHugePages: String?
    /// The code behind each row that is not built from this package, by allocator name: a preload
    /// library's file name and digest ("libmimalloc.so.2.0 (fnv1a64 …)"). glibc and jemalloc are
    /// identified by their own version fields above.
    public var allocatorLibraries: [String: String]?
    /// Facts that only describe the machine (never fail a gate): host name, CPU model, online CPUs.
    public var hostname: String?
    public var cpuModel: String?
    public var cores: Int?

    public init(kernel: String, glibc: String, jemalloc: String?, pageSize: Int, machine: String, allocbenchVersion: String,
                transparentHugePages: String? = nil, allocatorLibraries: [String: String]? = nil,
                hostname: String? = nil, cpuModel: String? = nil, cores: Int? = nil) {
        self.kernel = kernel
        self.glibc = glibc
        self.jemalloc = jemalloc
        self.pageSize = pageSize
        self.machine = machine
        self.allocbenchVersion = allocbenchVersion
        self.transparentHugePages = transparentHugePages
        self.allocatorLibraries = allocatorLibraries
        self.hostname = hostname
        self.cpuModel = cpuModel
        self.cores = cores
    }
}

/// What a measurement depends on besides `RunEnvironment`, known only to the CLI that measured it,
/// which records them in its run report and its baselines.
public struct MeasurementConditions: Codable, Sendable, Equatable {
    /// "debug" or "release": the replay children's own code differs, and so do the pages it touches.
    public var build: String
    /// false when the replays ran with address-space randomization off (`setarch -R`,
    /// kernel.randomize_va_space=0); jemalloc's page counts depend on it.
    public var addressRandomization: Bool

    public init(build: String, addressRandomization: Bool) {
        self.build = build
        self.addressRandomization = addressRandomization
    }
}

/// How the replays were run.
public struct RunSettings: Codable, Sendable, Equatable {
    public var touch: TouchMode
    public var timedRuns: Int
    public var timeoutSeconds: Double
    public var lenient: Bool
    /// Whether the replay children kept address-space randomization (off unless --aslr).
    public var addressRandomization: Bool
    /// Which threads replay a trace (`--threads`; each trace's resolved mode is in its summary).
    public var threads: ThreadMode

    public init(touch: TouchMode, timedRuns: Int, timeoutSeconds: Double, lenient: Bool, addressRandomization: Bool = false,
                threads: ThreadMode = .auto) {
        self.touch = touch
        self.timedRuns = timedRuns
        self.timeoutSeconds = timeoutSeconds
        self.lenient = lenient
        self.addressRandomization = addressRandomization
        self.threads = threads
    }

    enum CodingKeys: String, CodingKey {
        case touch, timedRuns, timeoutSeconds, lenient, addressRandomization, threads
    }

    /// Reports written before `threads` existed replayed every trace on one thread.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        touch = try container.decode(TouchMode.self, forKey: .touch)
        timedRuns = try container.decode(Int.self, forKey: .timedRuns)
        timeoutSeconds = try container.decode(Double.self, forKey: .timeoutSeconds)
        lenient = try container.decode(Bool.self, forKey: .lenient)
        addressRandomization = try container.decodeIfPresent(Bool.self, forKey: .addressRandomization) ?? false
        threads = try container.decodeIfPresent(ThreadMode.self, forKey: .threads) ?? .serial
    }

    /// The timeout in whole milliseconds, rounded up: the deadline of every child of the run.
    public var timeoutMilliseconds: UInt64 { UInt64((timeoutSeconds * 1000).rounded(.up)) }
}

/// Which threads run a trace's ops (docs/metrics.md, "Threads").
public enum ThreadMode: String, Codable, Sendable, CaseIterable {
    /// per-thread for a trace with more than one thread, else serial.
    case auto
    /// Every op on one thread, in file order.
    case serial
    /// Every op on an OS thread of its recorded thread, one op at a time in file order: the
    /// allocators' per-thread machinery runs, and page counts stay exact and repeat.
    case perThread = "per-thread"
    /// Every recorded thread at once, synchronised only where a block passes between threads
    /// (an op waits for the earlier ops on its slot), for time; allocators that are not
    /// thread-safe run per thread. Page counts are not exact (a thread faults pages in while
    /// another is stopped), so `check` and `baseline` refuse it.
    case concurrent

    /// The mode a trace with `threads` recorded threads is replayed in.
    public func resolved(threads: Int) -> ThreadMode {
        self == .auto ? (threads > 1 ? .perThread : .serial) : self
    }
}

/// What the parser found in a trace.
public struct TraceSummary: Codable, Sendable, Equatable {
    public var path: String
    public var name: String
    public var lines: Int
    public var ops: Int
    public var threads: Int
    /// How its ops were replayed: serial or per-thread (absent in reports written before).
    public var threadMode: ThreadMode?
    /// thread_done lines (absent in reports written before it was recorded).
    public var threadsDone: Int?
    public var slots: Int
    public var peakLiveBytes: UInt64
    public var finalLiveBytes: UInt64
    public var idealPages: Int
    public var anomaliesSkipped: Int
    public var failedAllocationsSkipped: Int
    /// How the threads overlapped and shared blocks (absent in reports written before it was recorded).
    public var threadActivity: ThreadActivity?

    public init(path: String, name: String, lines: Int, ops: Int, threads: Int, threadsDone: Int? = nil, slots: Int,
                peakLiveBytes: UInt64, finalLiveBytes: UInt64, idealPages: Int, anomaliesSkipped: Int,
                failedAllocationsSkipped: Int, threadActivity: ThreadActivity? = nil, threadMode: ThreadMode? = nil) {
        self.threadMode = threadMode
        self.path = path
        self.name = name
        self.lines = lines
        self.ops = ops
        self.threads = threads
        self.threadsDone = threadsDone
        self.slots = slots
        self.peakLiveBytes = peakLiveBytes
        self.finalLiveBytes = finalLiveBytes
        self.idealPages = idealPages
        self.anomaliesSkipped = anomaliesSkipped
        self.failedAllocationsSkipped = failedAllocationsSkipped
        self.threadActivity = threadActivity
    }
}

/// The parser's `ThreadStatistics` as reports store them. A type of the model's own: the replay
/// children link `AllocBenchCore`, and a `Codable` conformance there would put its caches in every
/// child's bss, whose pages are measured.
public struct ThreadActivity: Codable, Sendable, Equatable {
    /// The most thread lifetimes alive at once (docs/trace-format.md, "Thread statistics").
    public var peakAlive: Int
    public var crossThreadFrees: Int
    public var crossThreadFreedBytes: UInt64
    public var crossThreadReallocs: Int
    public var crossThreadReallocatedBytes: UInt64

    public init(_ statistics: ThreadStatistics) {
        peakAlive = statistics.peakAlive
        crossThreadFrees = statistics.crossThreadFrees
        crossThreadFreedBytes = statistics.crossThreadFreedBytes
        crossThreadReallocs = statistics.crossThreadReallocs
        crossThreadReallocatedBytes = statistics.crossThreadReallocatedBytes
    }
}

/// A final value and the largest value at any instant of the replay, both relative to the baseline.
public struct FinalAndPeak: Codable, Sendable, Equatable {
    public var final: Int
    public var peak: Int

    public init(final: Int, peak: Int) {
        self.final = final
        self.peak = peak
    }
}

/// Replay time per op over the timed runs.
public struct TimePerOp: Codable, Sendable, Equatable {
    public var median: Double
    public var min: Double
    public var max: Double
    /// Standard deviation over mean of the runs: how far one run is from another. nil for a single
    /// run, and in reports written before it was recorded.
    public var coefficientOfVariation: Double?
    public var runs: [Double]

    public init(runs: [Double]) {
        let sorted = runs.sorted()
        self.runs = runs
        min = sorted.first ?? 0
        max = sorted.last ?? 0
        if sorted.isEmpty {
            median = 0
        } else if sorted.count % 2 == 1 {
            median = sorted[sorted.count / 2]
        } else {
            median = (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        let mean = runs.reduce(0, +) / Double(Swift.max(runs.count, 1))
        if runs.count > 1 && mean > 0 {
            let variance = runs.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(runs.count - 1)
            coefficientOfVariation = variance.squareRoot() / mean
        }
    }
}

/// A per-thread replay's hand-overs: the turn passing from one OS thread to the next (a futex
/// wake and a context switch, the replay's cost and not the allocator's), which its ns/op leaves out.
public struct HandOvers: Codable, Sendable, Equatable {
    /// Hand-overs in one replay (the same in every run: they follow from the trace).
    public var count: Int
    /// Their time per op of the trace, over the timed runs: ns/op plus this is the replay's wall
    /// time per op.
    public var nsPerOp: TimePerOp

    public init(count: Int, nsPerOp: TimePerOp) {
        self.count = count
        self.nsPerOp = nsPerOp
    }
}

/// One allocator's row: every metric of docs/metrics.md.
public struct AllocatorResult: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        case ok
        /// The allocator returned nil or a misaligned block.
        case failed
        /// The child died of a signal.
        case crashed
        case timedOut = "timed_out"
    }

    public var allocator: String
    public var status: Status
    /// For anything but ok: what happened, e.g. "SIGSEGV after op 1234".
    public var detail: String?
    public var touchedPages: FinalAndPeak?
    public var mappedPages: FinalAndPeak?
    public var idealPages: Int
    /// touched peak / ideal.
    public var overhead: Double?
    public var minorFaults: Int?
    public var pageTablesKilobytes: FinalAndPeak?
    public var mmSyscalls: [String: Int]?
    public var nsPerOp: TimePerOp?
    /// A per-thread replay's hand-overs between OS threads, left out of `nsPerOp` (nil: the ops
    /// ran on one thread, or concurrently).
    public var handOvers: HandOvers?
    /// RssAnon and VmSize of the child at the baseline, in kB: what every such process pays before
    /// its first allocation.
    public var baseline: MemorySample?
    /// The child's counters at the end marker, the largest value of each between the markers, and
    /// all of them at the instant of the touched (RssAnon) peak: a metric of a counter reads its
    /// delta from `baseline` here, so a new counter needs no new field in the row.
    public var endSample: MemorySample?
    public var peakSample: MemorySample?
    public var touchedPeakSample: MemorySample?
    /// The whole process from its exec (traced from the first instruction) to the end marker:
    /// every counter at the end marker, and each counter's own peak over that span. Absolute,
    /// not deltas: the stack, the child's data page, the loader and the C library's start-up are in.
    public var processEndSample: MemorySample?
    public var processPeakSample: MemorySample?
    public var selfReported: [String: Int64]
    /// The same statistics read just before the baseline (allocators that run before the replay).
    public var selfReportedBaseline: [String: Int64]?
    public var mallocProvider: String
    /// How this row's ops ran (serial, per-thread, concurrent; absent in older reports): in a
    /// concurrent run an allocator that is not thread-safe runs per thread.
    public var threadMode: ThreadMode?
    /// Bytes the process malloc gained during replay of an allocator that is not the process
    /// malloc: non-zero means the replay itself allocated, and the row's numbers are suspect.
    public var runtimeMallocDeltaBytes: Int64?
    /// The counters at every mm syscall and at evenly spaced ops (only with --timeline).
    public var timeline: [TimelinePoint]?
    /// Touched and mapped pages by region at the touched peak and at the end (only with --breakdown).
    public var breakdown: MemoryBreakdown?

    public init(allocator: String, status: Status, detail: String? = nil, touchedPages: FinalAndPeak? = nil,
                mappedPages: FinalAndPeak? = nil, idealPages: Int, overhead: Double? = nil, minorFaults: Int? = nil,
                pageTablesKilobytes: FinalAndPeak? = nil, mmSyscalls: [String: Int]? = nil, nsPerOp: TimePerOp? = nil,
                baseline: MemorySample? = nil, endSample: MemorySample? = nil, peakSample: MemorySample? = nil,
                touchedPeakSample: MemorySample? = nil, processEndSample: MemorySample? = nil, processPeakSample: MemorySample? = nil,
                selfReported: [String: Int64] = [:], selfReportedBaseline: [String: Int64]? = nil,
                mallocProvider: String = "", runtimeMallocDeltaBytes: Int64? = nil, timeline: [TimelinePoint]? = nil,
                breakdown: MemoryBreakdown? = nil, handOvers: HandOvers? = nil) {
        self.allocator = allocator
        self.status = status
        self.detail = detail
        self.touchedPages = touchedPages
        self.mappedPages = mappedPages
        self.idealPages = idealPages
        self.overhead = overhead
        self.minorFaults = minorFaults
        self.pageTablesKilobytes = pageTablesKilobytes
        self.mmSyscalls = mmSyscalls
        self.nsPerOp = nsPerOp
        self.baseline = baseline
        self.endSample = endSample
        self.peakSample = peakSample
        self.touchedPeakSample = touchedPeakSample
        self.processEndSample = processEndSample
        self.processPeakSample = processPeakSample
        self.selfReported = selfReported
        self.selfReportedBaseline = selfReportedBaseline
        self.mallocProvider = mallocProvider
        self.runtimeMallocDeltaBytes = runtimeMallocDeltaBytes
        self.timeline = timeline
        self.breakdown = breakdown
        self.handOvers = handOvers
    }

    public var isOK: Bool { status == .ok }
}

/// One trace replayed through a set of allocators.
public struct TraceRun: Codable, Sendable, Equatable {
    public var trace: TraceSummary
    public var results: [AllocatorResult]
    /// Requested bytes live over the trace (only with --timeline): the ideal line.
    public var liveBytes: [LiveBytesPoint]?

    public init(trace: TraceSummary, results: [AllocatorResult], liveBytes: [LiveBytesPoint]? = nil) {
        self.trace = trace
        self.results = results
        self.liveBytes = liveBytes
    }
}

/// A whole invocation: `allocbench --format json` prints this.
public struct RunReport: Codable, Sendable, Equatable {
    public static let schema = "allocbench.run/1"

    public var schema: String
    public var environment: RunEnvironment
    /// The build and address-space randomization of the replays: like the environment, they can
    /// change page counts. nil in reports written before they were recorded.
    public var conditions: MeasurementConditions?
    public var settings: RunSettings
    /// The shard of a `--shard K/N` run and the plan it was cut from; nil for a whole run.
    public var shard: Shard?
    public var runs: [TraceRun]

    public init(environment: RunEnvironment, conditions: MeasurementConditions? = nil, settings: RunSettings,
                shard: Shard? = nil, runs: [TraceRun]) {
        schema = RunReport.schema
        self.environment = environment
        self.conditions = conditions
        self.settings = settings
        self.shard = shard
        self.runs = runs
    }

    public var allSucceeded: Bool { runs.allSatisfy { $0.results.allSatisfy(\.isOK) } }

    public static func decode(_ data: Data) throws -> RunReport {
        try AllocBenchJSON.decode(RunReport.self, from: data)
    }

    public func encoded() throws -> Data {
        try AllocBenchJSON.encode(self)
    }
}

/// The one JSON form of every file allocbench writes (run reports, baselines, gate reports):
/// snake_case keys, sorted, one value per line and a final newline, so a diff of two files shows
/// exactly the values that moved.
public enum AllocBenchJSON {
    public static func encode(_ value: some Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(value) + Data("\n".utf8)
    }

    public static func decode<Value: Decodable>(_ type: Value.Type, from data: Data) throws -> Value {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(type, from: data)
    }
}
