import AllocBenchCore
import AllocBenchModel
import CAllocBench
import Foundation
import Glibc

public let allocbenchVersion = "0.1.0"

/// Replays traces through allocators, one fresh child per replay: a traced measurement run, then
/// `timedRuns` untraced runs for time.
public struct Benchmark: Sendable {
    /// What a measurement run records besides the totals.
    public struct Detail: OptionSet, Sendable {
        public let rawValue: Int
        public init(rawValue: Int) { self.rawValue = rawValue }

        /// The counters at every mm syscall and at `timelineSamples` evenly spaced ops.
        public static let timeline = Detail(rawValue: 1)
        /// /proc/PID/smaps at the baseline, the touched peak and the end, by region.
        public static let breakdown = Detail(rawValue: 2)
    }

    public var settings: RunSettings
    public var detail: Detail
    /// Evenly spaced points a timeline gets besides the mm syscalls.
    public var timelineSamples = 1000
    /// The most points a timeline keeps (the peak and the end are always kept).
    public var maximumTimelinePoints = 4000
    /// Called with short progress messages (the CLI shows them on a terminal only).
    public var progress: @Sendable (String) -> Void

    public init(settings: RunSettings, detail: Detail = [], progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.settings = settings
        self.detail = detail
        self.progress = progress
    }

    public static var pageSize: Int { Int(sysconf(Int32(_SC_PAGESIZE))) }

    /// A trace parsed and written to its op stream, ready for any number of replays.
    public struct PreparedTrace: Sendable {
        public let summary: TraceSummary
        let stream: OpStreamFile
    }

    /// Parses a trace and writes its op stream. Separate from `run` so that every trace of an
    /// invocation can be checked before the first child is spawned.
    public func prepare(tracePath: String) throws(InputError) -> PreparedTrace {
        progress("parsing \(tracePath)")
        let (facts, stream) = try OpStreamFile.parse(path: tracePath, options: TraceParser.Options(lenient: settings.lenient))
        // A concurrent replay gives every recorded thread an OS thread and a stack from before the
        // baseline (ab_thread_plan_prepare_concurrent): refused here, before any child starts,
        // rather than as a failed row per allocator.
        let concurrentMaximum = Int(AB_CONCURRENT_THREADS_MAX)
        if settings.threads.resolved(threads: facts.threadIDs.count) == .concurrent && facts.threadIDs.count > concurrentMaximum {
            throw .badTrace(path: tracePath, line: nil, message: "\(facts.threadIDs.count) threads: --threads concurrent replays at most "
                + "\(concurrentMaximum) (an OS thread and a stack each, all made before the baseline); --threads per-thread replays any number")
        }
        let summary = TraceSummary(
            path: tracePath,
            name: Benchmark.traceName(tracePath),
            lines: facts.lineCount,
            ops: facts.opCount,
            threads: facts.threadIDs.count,
            threadsDone: facts.threadsDone,
            slots: facts.slotCount,
            peakLiveBytes: facts.peakLiveBytes,
            finalLiveBytes: facts.finalLiveBytes,
            idealPages: facts.idealPages(pageSize: Benchmark.pageSize),
            anomaliesSkipped: facts.anomalies.total,
            failedAllocationsSkipped: facts.failedAllocationsSkipped,
            threadActivity: ThreadActivity(facts.threads),
            threadMode: settings.threads.resolved(threads: facts.threadIDs.count))
        return PreparedTrace(summary: summary, stream: stream)
    }

    /// Parses the trace once and replays it through each allocator.
    public func run(tracePath: String, allocators: [CatalogEntry]) throws(InputError) -> TraceRun {
        run(try prepare(tracePath: tracePath), allocators: allocators)
    }

    /// Replays a prepared trace through each allocator. A replay that cannot even be started or
    /// traced becomes a failed row; the other allocators still run.
    ///
    /// Pages first, one traced replay per allocator; then the timed replays in rounds, each round
    /// one of every allocator, so a burst of noise on the machine hits them all alike instead of
    /// all of one allocator's runs.
    public func run(_ trace: PreparedTrace, allocators: [CatalogEntry]) -> TraceRun {
        var results: [AllocatorResult] = []
        for allocator in allocators {
            do {
                var result = try measure(allocator, stream: trace.stream, summary: trace.summary)
                if var timeline = result.timeline {
                    timeline = Timeline.bounded(timeline, to: maximumTimelinePoints)
                    try Timeline.fillLiveBytes(&timeline, stream: trace.stream)
                    result.timeline = timeline
                }
                results.append(result)
            } catch {
                results.append(failedRow(allocator, trace.summary, error))
            }
        }
        var times = [[TimedRun]](repeating: [], count: allocators.count)
        for round in 0..<settings.timedRuns {
            for (index, allocator) in allocators.enumerated() where results[index].isOK {
                progress("timing round \(round + 1) of \(settings.timedRuns): \(allocator.name)")
                do {
                    switch try time(allocator, stream: trace.stream, summary: trace.summary) {
                    case .success(let timed): times[index].append(timed)
                    case .failure(let failed): results[index] = failed.row
                    }
                } catch {
                    results[index] = failedRow(allocator, trace.summary, error)
                }
            }
        }
        for index in results.indices where results[index].isOK && !times[index].isEmpty {
            results[index].nsPerOp = TimePerOp(runs: times[index].map(\.nanosecondsPerOp))
            if let handOvers = times[index].first?.handOvers, handOvers > 0 {
                results[index].handOvers = HandOvers(count: handOvers, nsPerOp: TimePerOp(runs: times[index].map(\.handOverNanosecondsPerOp)))
            }
        }
        // The op stream cannot be read back only if the memfd that every replay just mapped fails a
        // pread: then the chart goes without the ideal's line rather than the run without its rows.
        let liveBytes = detail.contains(.timeline)
            ? try? Timeline.liveBytes(stream: trace.stream, buckets: maximumTimelinePoints / 2) : nil
        return TraceRun(trace: trace.summary, results: results, liveBytes: liveBytes)
    }

    /// "djb" for "Benchmarks/traces/djb.txt", "systemui" for "systemui.zip".
    public static func traceName(_ path: String) -> String {
        var name = (path as NSString).lastPathComponent
        for suffix in [".gz", ".zip", ".txt"] where name.hasSuffix(suffix) {
            name.removeLast(suffix.count)
        }
        return name
    }

    func failedRow(_ allocator: CatalogEntry, _ summary: TraceSummary, _ error: SystemError) -> AllocatorResult {
        AllocatorResult(failed: allocator.name, idealPages: summary.idealPages, detail: "the harness could not run the replay: \(error)")
    }

    func request(_ allocator: CatalogEntry, traced: Bool, summary: TraceSummary) -> ReplayRunner.Request {
        ReplayRunner.Request(
            executable: allocator.executable, allocator: allocator.childAllocator, touch: settings.touch,
            traced: traced, deadlineMilliseconds: settings.timeoutMilliseconds,
            environment: allocator.environment,
            samples: detail.contains(.timeline) ? timelineSamples : 0,
            collectBreakdown: detail.contains(.breakdown),
            addressRandomization: settings.addressRandomization,
            threads: summary.threadMode ?? .serial)
    }

    /// One untraced replay's time per op: the replay's wall time without its hand-overs between
    /// threads (a per-thread replay's; none in the other modes), and the hand-overs'.
    struct TimedRun {
        var nanosecondsPerOp: Double
        var handOvers: Int
        var handOverNanosecondsPerOp: Double
    }

    /// One untraced replay: its time, or the row of a replay that failed.
    func time(_ allocator: CatalogEntry, stream: OpStreamFile, summary: TraceSummary) throws(SystemError) -> Result<TimedRun, TimedRunFailed> {
        let timed = try ReplayRunner().run(request(allocator, traced: false, summary: summary), stream: stream)
        guard timed.succeeded else {
            return .failure(TimedRunFailed(row: AllocatorResult(measured: timed, name: allocator.name, summary: summary,
                                                                 pageSize: Benchmark.pageSize, recording: [])))
        }
        let ops = Double(max(summary.ops, 1))
        let handOverNanoseconds = min(timed.handOverNanoseconds, timed.replayNanoseconds)
        return .success(TimedRun(nanosecondsPerOp: Double(timed.replayNanoseconds - handOverNanoseconds) / ops,
                                 handOvers: Int(timed.handOvers), handOverNanosecondsPerOp: Double(handOverNanoseconds) / ops))
    }

    struct TimedRunFailed: Error {
        var row: AllocatorResult
    }

    /// The traced replay: every page count of the row.
    func measure(_ allocator: CatalogEntry, stream: OpStreamFile, summary: TraceSummary) throws(SystemError) -> AllocatorResult {
        if let failure = allocator.failure {
            return AllocatorResult(failed: allocator.name, idealPages: summary.idealPages, detail: failure)
        }
        progress("\(allocator.name): measuring pages")
        let measured = try ReplayRunner().run(request(allocator, traced: true, summary: summary), stream: stream)
        var result = AllocatorResult(measured: measured, name: allocator.name, summary: summary,
                                     pageSize: Benchmark.pageSize, recording: detail)
        if let library = allocator.expectedMallocProvider {
            // Only a child that got as far as recording its provider can be blamed for it.
            if measured.state != .starting && !AllocatorCatalog.sameFile(measured.mallocProvider, library) {
                result.status = .failed
                result.detail = "malloc resolved into \(measured.mallocProvider), not the preloaded \(library)"
            }
            // The glibc child's statistics are glibc's mallinfo2, which knows nothing of a preloaded malloc.
            result.selfReported = [:]
            result.selfReportedBaseline = nil
        }
        return result
    }

    /// kernel, glibc and jemalloc versions, page size, the huge-page mode, the library behind each
    /// preload row, and what describes the machine; `jemalloc` comes from the jemalloc child's note.
    public static func environment(catalog: AllocatorCatalog) -> RunEnvironment {
        let names = SystemFacts.unameFields
        let jemallocNote = catalog.entry(named: "jemalloc")?.note
        let jemalloc = jemallocNote.map { $0.hasPrefix("jemalloc ") ? String($0.dropFirst("jemalloc ".count)) : $0 }
        var libraries: [String: String] = [:]
        for entry in catalog.entries where entry.isAvailable {
            if let library = entry.expectedMallocProvider { libraries[entry.name] = SystemFacts.libraryIdentity(library) ?? library }
        }
        return RunEnvironment(
            kernel: names.release,
            glibc: String(cString: ab_glibc_version()),
            jemalloc: jemalloc,
            pageSize: pageSize,
            machine: names.machine,
            allocbenchVersion: allocbenchVersion,
            transparentHugePages: SystemFacts.transparentHugePages,
            allocatorLibraries: libraries,
            hostname: names.nodename,
            cpuModel: SystemFacts.cpuModel,
            cores: SystemFacts.onlineCores)
    }
}

extension AllocatorResult {
    /// A row for a replay that produced no outcome at all.
    init(failed name: String, idealPages: Int, detail: String) {
        self.init(allocator: name, status: .failed, detail: detail, idealPages: idealPages)
    }

    /// Turns a child's outcome into a row: counters in pages relative to the baseline, or the
    /// reason there are none.
    init(measured outcome: ChildOutcome, name: String, summary: TraceSummary, pageSize: Int, recording: Benchmark.Detail) {
        func pages(_ kilobytes: Int) -> Int { AllocBenchModel.pages(kilobytes: kilobytes, pageSize: pageSize) }

        self.init(
            allocator: name, status: .ok, detail: nil, touchedPages: nil, mappedPages: nil,
            idealPages: summary.idealPages, overhead: nil, minorFaults: nil, pageTablesKilobytes: nil,
            mmSyscalls: nil, nsPerOp: nil, baseline: nil,
            selfReported: Dictionary(outcome.statistics.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first }),
            selfReportedBaseline: outcome.baselineStatistics.isEmpty ? nil
                : Dictionary(outcome.baselineStatistics.map { ($0.name, $0.value) }, uniquingKeysWith: { first, _ in first }),
            mallocProvider: outcome.mallocProvider,
            runtimeMallocDeltaBytes: outcome.runtimeMallocDelta,
            timeline: nil,
            breakdown: nil)
        threadMode = outcome.threadMode

        // What the replay recorded before the child died says more than the death: an allocator
        // that returned nil may crash whatever calls malloc after it (the runtime on its way out).
        if case .failed(let failure) = outcome.state, failure != .setup {
            status = .failed
            let op = outcome.opsCompleted + 1
            detail = switch failure {
            case .misaligned: "misaligned block at op \(op)"
            case .outOfMemory: "out of memory at op \(op)"
            case .setup, .unspecified: "the replay failed at op \(op)"
            }
            return
        }
        switch outcome.termination {
        case .signaled(SIGALRM), .timedOut:
            status = .timedOut
            detail = "timed out after op \(outcome.opsCompleted)"
            return
        case .signaled(let signal):
            status = .crashed
            detail = "\(signalName(signal)) after op \(outcome.opsCompleted)"
            return
        case .exited(let code) where outcome.state != .done || code != 0:
            status = .failed
            switch outcome.state {
            case .failed(.setup): detail = "the replay child could not start (exit \(code)); see its message above"
            default: detail = "the replay child exited with status \(code) after op \(outcome.opsCompleted)"
            }
            return
        case .exited:
            break
        }
        guard let counters = outcome.traced else { return }
        guard counters.sawBegin && counters.sawEnd else {
            status = .failed
            detail = "the replay child ended without its begin and end marks"
            return
        }
        let base = counters.baseline
        touchedPages = FinalAndPeak(final: pages(counters.final.rssAnonKilobytes - base.rssAnonKilobytes),
                                    peak: pages(counters.peak.rssAnonKilobytes - base.rssAnonKilobytes))
        mappedPages = FinalAndPeak(final: pages(counters.final.vmSizeKilobytes - base.vmSizeKilobytes),
                                   peak: pages(counters.peak.vmSizeKilobytes - base.vmSizeKilobytes))
        pageTablesKilobytes = FinalAndPeak(final: counters.final.pageTablesKilobytes - base.pageTablesKilobytes,
                                           peak: counters.peak.pageTablesKilobytes - base.pageTablesKilobytes)
        minorFaults = counters.minorFaults
        mmSyscalls = Dictionary(uniqueKeysWithValues: MemorySyscall.allCases.map { ($0.rawValue, counters.syscalls[$0] ?? 0) })
        baseline = base
        endSample = counters.final
        peakSample = counters.peak
        touchedPeakSample = counters.atTouchedPeak
        processEndSample = counters.processFinal
        processPeakSample = counters.processPeak
        if summary.idealPages > 0, let touched = touchedPages {
            overhead = Double(touched.peak) / Double(summary.idealPages)
        }
        if recording.contains(.timeline) { timeline = counters.timeline }
        if recording.contains(.breakdown) {
            breakdown = MemoryBreakdown(
                peak: MemoryMap.usage(from: counters.mapsAtBaseline, to: counters.mapsAtPeak,
                                      executable: counters.executable, pageSize: pageSize),
                end: MemoryMap.usage(from: counters.mapsAtBaseline, to: counters.mapsAtEnd,
                                     executable: counters.executable, pageSize: pageSize),
                newMappingsAtEnd: MemoryMap.newMappings(from: counters.mapsAtBaseline, to: counters.mapsAtEnd,
                                                        executable: counters.executable, pageSize: pageSize))
        }
    }
}

/// "SIGSEGV" for 11.
public func signalName(_ signal: Int32) -> String {
    let names: [Int32: String] = [
        SIGSEGV: "SIGSEGV", SIGBUS: "SIGBUS", SIGABRT: "SIGABRT", SIGILL: "SIGILL", SIGFPE: "SIGFPE",
        SIGKILL: "SIGKILL", SIGTERM: "SIGTERM", SIGTRAP: "SIGTRAP", SIGSYS: "SIGSYS", SIGPIPE: "SIGPIPE",
    ]
    return names[signal] ?? "signal \(signal)"
}
