import AllocBenchCore
import AllocBenchModel
import CAllocBench
import Glibc
import Synchronization

extension MemorySyscall {
    /// The syscall of a seccomp stop, from the filter's AB_STOP_* kind.
    init?(stopKind: UInt) {
        switch Int(stopKind) {
        case AB_STOP_MMAP: self = .mmap
        case AB_STOP_MUNMAP: self = .munmap
        case AB_STOP_BRK: self = .brk
        case AB_STOP_MADVISE: self = .madvise
        case AB_STOP_MREMAP: self = .mremap
        case AB_STOP_OTHER: self = .other
        default: return nil
        }
    }
}

/// What a traced replay measured between its begin and end marks.
public struct TracedCounters: Sendable {
    public var baseline = MemorySample()
    public var final = MemorySample()
    /// The largest value of each counter at any instant between the marks.
    public var peak = MemorySample()
    /// Every counter at the first instant RssAnon reached its peak.
    public var atTouchedPeak = MemorySample()
    public var minorFaults = 0
    public var syscalls: [MemorySyscall: Int] = [:]
    /// The counters at every mm syscall, in op order.
    public var timeline: [TimelinePoint] = []
    /// The whole process from its exec (the tracer stops it before its first instruction): every
    /// counter at the end marker, and each one's largest value from the exec to the end marker.
    public var processFinal = MemorySample()
    public var processPeak = MemorySample()
    public var sawBegin = false
    public var sawEnd = false
    /// The mappings at the baseline, at the last new RssAnon maximum, and at the end (only when
    /// the request collects a breakdown).
    public var mapsAtBaseline: [Mapping] = []
    public var mapsAtPeak: [Mapping] = []
    public var mapsAtEnd: [Mapping] = []
    public var executable = ""
}

/// How one child ended and what it left in its control block.
public struct ChildOutcome: Sendable {
    /// How far the child got, from its control block (AB_STATE_*).
    public enum State: Sendable, Equatable {
        /// It never got to map its inputs (AB_STATE_STARTING): it cannot be blamed for its malloc.
        case starting
        case replaying
        case done
        case failed(Failure)
        /// A value no child writes: a corrupt control block.
        case unknown(UInt32)

        init(state: UInt32, failure: UInt32) {
            switch Int(state) {
            case AB_STATE_STARTING: self = .starting
            case AB_STATE_REPLAYING: self = .replaying
            case AB_STATE_DONE: self = .done
            case AB_STATE_FAILED: self = .failed(Failure(failure))
            default: self = .unknown(state)
            }
        }
    }

    /// Why a child gave up (AB_FAILURE_*).
    public enum Failure: Sendable, Equatable {
        /// The allocator returned nil.
        case outOfMemory
        /// A block did not honour its alignment.
        case misaligned
        /// The child could not map its inputs (its stderr says why).
        case setup
        case unspecified(UInt32)

        init(_ code: UInt32) {
            switch Int(code) {
            case AB_FAILURE_OUT_OF_MEMORY: self = .outOfMemory
            case AB_FAILURE_MISALIGNED: self = .misaligned
            case AB_FAILURE_SETUP: self = .setup
            default: self = .unspecified(code)
            }
        }
    }

    public var termination: Subprocess.Termination
    public var state: State
    public var opsCompleted: Int
    public var replayNanoseconds: UInt64
    /// Per-thread replay: how many times the turn passed between OS threads, and the time those
    /// passes took (part of `replayNanoseconds`).
    public var handOvers: UInt64
    public var handOverNanoseconds: UInt64
    public var runtimeMallocDelta: Int64?
    public var statistics: [AllocatorStatistic]
    public var baselineStatistics: [AllocatorStatistic]
    public var mallocProvider: String
    /// How the child ran the ops (its control block's replay_threads).
    public var threadMode: ThreadMode
    public var traced: TracedCounters?

    public var succeeded: Bool { termination == .exited(0) && state == .done }
}

/// A replay child's executable, copied once per invocation into a sealed memfd named after it, and
/// run from there (`ab_spawn_options.exec_descriptor`). What a child can learn of its own path is
/// then the same on every machine: its AT_EXECFN is "/dev/fd/N" and /proc/self/exe
/// "/memfd:NAME (deleted)". A static glibc copies its executable's directory into the heap at
/// start-up (`_dl_get_origin`), so with the real path a clone of the package eleven characters
/// deeper moved the jemalloc-static row by 11 pages.
final class ChildImage: Sendable {
    let name: String
    let file: FileDescriptor

    private init(name: String, file: FileDescriptor) {
        self.name = name
        self.file = file
    }

    private static let loadedImages = Mutex<[String: ChildImage]>([:])

    /// The image of `executable`, loaded on first use.
    static func loaded(_ executable: String) throws(SystemError) -> ChildImage {
        if let image = loadedImages.withLock({ $0[executable] }) { return image }
        let name = String(executable.split(separator: "/").last ?? Substring(executable))
        let source = try FileDescriptor.open(executable, O_RDONLY)
        let file = try FileDescriptor.memory(named: name)
        let size = try source.size()
        var copied = 0
        while copied < size {
            let count = try SystemCall.check("sendfile \(executable)") {
                sendfile(file.rawValue, source.rawValue, nil, size - copied)
            }
            if count == 0 { throw SystemError("sendfile \(executable): the file shrank", errno: EIO) }
            copied += count
        }
        let image = ChildImage(name: name, file: file)
        return loadedImages.withLock { images in
            if let earlier = images[executable] { return earlier }
            images[executable] = image
            return image
        }
    }
}

/// A child's control block: a one-page memfd the child gets as its descriptor 4, mapped shared
/// here, with the magic the child checks. The mapping outlives the descriptor, so a fleet of
/// children needs no open descriptor per control block once each child has started.
final class ControlBlock: @unchecked Sendable {
    private let mapping: SharedMapping
    let control: UnsafeMutablePointer<ab_control>

    private init(_ mapping: SharedMapping) {
        self.mapping = mapping
        control = mapping.address.bindMemory(to: ab_control.self, capacity: 1)
    }

    /// The block and its memfd (to pass to the child, then close).
    static func create() throws(SystemError) -> (ControlBlock, FileDescriptor) {
        let file = try FileDescriptor.memory(named: "allocbench-control")
        try file.truncate(to: Int(AB_CONTROL_BLOCK_SIZE))
        let block = ControlBlock(try SharedMapping(file, size: Int(AB_CONTROL_BLOCK_SIZE), writable: true))
        block.control.pointee.magic = AB_CONTROL_MAGIC
        return (block, file)
    }

    /// How far the child got (its state, with the failure when it failed).
    var state: ChildOutcome.State {
        ChildOutcome.State(state: control.pointee.state, failure: control.pointee.failure)
    }

    var opsCompleted: Int { Int(control.pointee.ops_completed) }
}

/// Spawns replay children and, for measurement runs, traces their mm syscalls.
public struct ReplayRunner: Sendable {
    public struct Request: Sendable {
        public var executable: String
        public var allocator: String
        public var touch: TouchMode
        public var traced: Bool
        public var deadlineMilliseconds: UInt64
        /// Extra environment entries (e.g. LD_PRELOAD=...); LD_PRELOAD is otherwise removed.
        public var environment: [String]
        /// Evenly spaced timeline points the child marks, besides its mm syscalls (traced runs).
        public var samples: Int
        /// Read /proc/PID/smaps at the baseline, at each new peak and at the end (traced runs).
        public var collectBreakdown: Bool
        /// Leave address-space randomization on in the child (off by default: layouts repeat).
        public var addressRandomization: Bool
        /// How the ops run: serial, per-thread or concurrent (never auto).
        public var threads: ThreadMode
        /// A fleet member (`--park`): after its replay the child holds its end state, blocked
        /// reading the go pipe, until the parent closes the pipe's write end.
        public var park: Bool

        public init(executable: String, allocator: String, touch: TouchMode, traced: Bool,
                    deadlineMilliseconds: UInt64, environment: [String] = [], samples: Int = 0,
                    collectBreakdown: Bool = false, addressRandomization: Bool = false, threads: ThreadMode = .serial,
                    park: Bool = false) {
            self.executable = executable
            self.allocator = allocator
            self.touch = touch
            self.traced = traced
            self.deadlineMilliseconds = deadlineMilliseconds
            self.environment = environment
            self.samples = samples
            self.collectBreakdown = collectBreakdown
            self.addressRandomization = addressRandomization
            self.threads = threads
            self.park = park
        }
    }

    public init() {}

    public func run(_ request: Request, stream: OpStreamFile) throws(SystemError) -> ChildOutcome {
        let (controlBlock, controlFile) = try ControlBlock.create()
        let control = controlBlock.control
        let (goRead, goWrite) = try FileDescriptor.pipe()
        let image = try ChildImage.loaded(request.executable)
        let child = try Self.spawn(request, image: image, stream: stream, control: controlFile,
                                   go: request.traced || request.park ? goRead : nil)

        var counters: TracedCounters?
        let termination: Subprocess.Termination
        // The parent's read end stays open until the go byte is written: a child that died early
        // then cannot turn that write into SIGPIPE.
        if request.traced {
            (termination, counters) = try withExtendedLifetime(goRead) { () throws(SystemError) in
                try trace(child, go: goWrite, control: control, breakdown: request.collectBreakdown, image: image.name)
            }
        } else {
            termination = try child.wait(timeout: Self.backstop(request.deadlineMilliseconds)).termination
        }

        let statistics = Self.statistics(&control.pointee.statistics, count: control.pointee.statistic_count)
        let baselineStatistics = Self.statistics(&control.pointee.baseline_statistics,
                                                 count: control.pointee.baseline_statistic_count)
        let provider = withUnsafeBytes(of: &control.pointee.malloc_provider) {
            String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
        }
        return ChildOutcome(
            termination: termination,
            state: controlBlock.state,
            opsCompleted: controlBlock.opsCompleted,
            replayNanoseconds: control.pointee.replay_nanoseconds,
            handOvers: control.pointee.hand_overs,
            handOverNanoseconds: control.pointee.hand_over_nanoseconds,
            runtimeMallocDelta: control.pointee.runtime_malloc_checked != 0 ? control.pointee.runtime_malloc_delta : nil,
            statistics: statistics,
            baselineStatistics: baselineStatistics,
            mallocProvider: provider,
            threadMode: Self.threadMode(control.pointee.replay_threads),
            traced: counters)
    }

    /// The mode a child reports it ran its ops in.
    static func threadMode(_ code: UInt32) -> ThreadMode {
        switch Int(code) {
        case AB_REPLAY_PER_THREAD: .perThread
        case AB_REPLAY_CONCURRENT: .concurrent
        default: .serial
        }
    }

    /// Starts a replay child for `request`: the op stream becomes its descriptor 3, the control
    /// block 4 and the go pipe's read end (traced or parked children) 5. The one place that turns
    /// a request into a child's arguments, environment and descriptors: a fleet member is started
    /// exactly as a timed replay is, plus `--park`.
    static func spawn(_ request: Request, image: ChildImage, stream: OpStreamFile, control: FileDescriptor, go: FileDescriptor?)
        throws(SystemError) -> Subprocess
    {
        var arguments = [image.name, "run", request.allocator, "--touch", request.touch.rawValue,
                         request.traced ? "--traced" : "--timed"]
        if request.deadlineMilliseconds > 0 { arguments += ["--deadline-ms", String(request.deadlineMilliseconds)] }
        if request.traced && request.samples > 0 { arguments += ["--samples", String(request.samples)] }
        if request.threads != .serial && request.threads != .auto { arguments += ["--threads", request.threads.rawValue] }
        if request.park { arguments.append("--park") }
        let keep = [stream.descriptor.rawValue, control.rawValue] + (go.map { [$0.rawValue] } ?? [])
        // Run from a copy in memory: the child's path is then "/dev/fd/N" and /proc/self/exe a
        // memfd named after it, wherever the package was cloned (ChildImage).
        let environment = Self.paddingArgumentArea(of: ["/dev/fd/\(3 + keep.count)"] + arguments.dropFirst(),
                                                   Self.childEnvironment(adding: request.environment))
        var options = Subprocess.Options(
            environment: environment, descriptors: keep,
            standardOutput: .standardError, standardError: .inherited,
            addressRandomization: request.addressRandomization, tracedFromExec: request.traced)
        options.executable = image.file
        return try Subprocess(arguments, options: options)
    }

    private static func statistics<Storage>(_ storage: inout Storage, count: UInt32) -> [AllocatorStatistic] {
        withUnsafeBytes(of: &storage) { raw in
            let slots = raw.bindMemory(to: ab_statistic.self)
            return (0..<min(Int(count), slots.count)).map { index in
                var entry = slots[index]
                let name = withUnsafeBytes(of: &entry.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                return AllocatorStatistic(name, entry.value)
            }
        }
    }

    // MARK: - Tracing

    private func trace(_ child: Subprocess, go: FileDescriptor, control: UnsafeMutablePointer<ab_control>, breakdown: Bool,
                       image: String) throws(SystemError) -> (Subprocess.Termination, TracedCounters)
    {
        do {
            return try traceSeized(pid: child.pid, go: go, control: control, breakdown: breakdown, image: image)
        } catch {
            // Whatever went wrong, no child outlives this replay.
            child.kill()
            _ = Self.reapTraced(child.pid)
            throw error
        }
    }

    /// Reaps a traced child once it is ending (killed): its threads are ours to wait for, one by
    /// one (waitpid(2) with __WALL), and only once all of them are does its pidfd turn readable.
    /// `Subprocess.wait`, which polls the pidfd, waited forever for a replay child with threads
    /// whose tracing failed half-way. Returns how the child ended, or nil if it was reaped already.
    static func reapTraced(_ pid: pid_t) -> Subprocess.Termination? {
        while true {
            var status: Int32 = 0
            // Any thread of the child (the traced child is the parent's only one, as in traceSeized).
            let thread = waitpid(-1, &status, __WALL)
            if thread < 0 {
                if errno == EINTR { continue }
                return nil  // ECHILD: nothing left to reap
            }
            // A thread still in a stop has the SIGKILL pending: it exits next.
            if thread == pid, let termination = Subprocess.Termination(status: status) { return termination }
        }
    }

    private func traceSeized(pid: pid_t, go: FileDescriptor, control: UnsafeMutablePointer<ab_control>, breakdown: Bool,
                             image: String) throws(SystemError) -> (Subprocess.Termination, TracedCounters)
    {
        // Spawned traced from its exec: the first stop is the exec's SIGTRAP, before the program's
        // first instruction. The tracer's options (seccomp stops, kill on our exit, new threads)
        // are set there.
        var execStatus: Int32 = 0
        _ = try SystemCall.check("waitpid") { waitpid(pid, &execStatus, __WALL) }
        if let termination = Subprocess.Termination(status: execStatus) { return (termination, TracedCounters()) }
        try SystemCall.check("ptrace(PTRACE_SETOPTIONS)") { ab_ptrace_set_options(pid) }
        let proc = try ProcReader(pid: pid)
        let goByte: [UInt8] = [1]
        try goByte.withUnsafeBytes { bytes in Result { () throws(SystemError) in try go.writeAll(bytes) } }.get()

        var counters = TracedCounters()
        counters.processPeak = try proc.sample()
        if ab_ptrace_continue(pid, 0) != 0 { throw SystemError("ptrace(PTRACE_CONT)", errno: errno) }
        if breakdown { counters.executable = proc.executablePath() }
        var measuring = false
        var faultsAtBegin = 0
        // Only madvise(MADV_FREE) (or process_madvise) makes pages lazily free, so LazyFree stays
        // at its baseline value until the first of them; from then on every sample reads it
        // (smaps_rollup walks every mapping, and each read first drains the kernel's page batches).
        var readsLazyFree = false
        /// Every reading between the marks goes through here: it may be the peak.
        func record(_ sample: MemorySample) throws(SystemError) {
            if sample.rssAnonKilobytes > counters.peak.rssAnonKilobytes {
                counters.atTouchedPeak = sample
                if breakdown { counters.mapsAtPeak = try proc.smaps() }
            }
            counters.peak = MemorySample.maximum(counters.peak, sample)
            counters.timeline.append(TimelinePoint(opsCompleted: Int(control.pointee.ops_completed), sample: sample))
        }
        while true {
            // Any thread of the child may stop (PTRACE_O_TRACECLONE); the child is our only one.
            var status: Int32 = 0
            let thread = try SystemCall.check("waitpid") { waitpid(-1, &status, __WALL) }
            if let termination = Subprocess.Termination(status: status) {
                if thread == pid { return (termination, counters) }
                continue
            }
            var signalToDeliver: Int32 = 0
            if ab_is_seccomp_stop(status) != 0 {
                var kind: UInt = 0
                // ESRCH: the thread was killed while stopped (SIGKILL, the OOM killer); its exit
                // status is the next thing waitpid reports.
                guard ab_ptrace_event_message(thread, &kind) == 0 else {
                    if errno == ESRCH { continue }
                    throw SystemError("ptrace(PTRACE_GETEVENTMSG)", errno: errno)
                }
                let beforeEnd = !counters.sawEnd
                if Int(kind) == AB_STOP_MARKER {
                    var mark: UInt64 = 0
                    guard ab_ptrace_argument(thread, 0, &mark) == 0 else {
                        if errno == ESRCH { continue }
                        throw SystemError("ptrace(PTRACE_GETREGS)", errno: errno)
                    }
                    let begins = Int(mark) == AB_MARK_BEGIN && !counters.sawBegin
                    // The baseline reads LazyFree once: pages freed lazily before it keep it read.
                    let sample = try proc.sample(lazyFree: readsLazyFree || begins)
                    if beforeEnd { counters.processPeak = MemorySample.maximum(counters.processPeak, sample) }
                    if begins {
                        readsLazyFree = sample.lazyFreeKilobytes > 0
                        counters.sawBegin = true
                        counters.baseline = sample
                        counters.peak = sample
                        counters.atTouchedPeak = sample
                        faultsAtBegin = try proc.minorFaults()
                        counters.timeline.append(TimelinePoint(opsCompleted: 0, sample: sample))
                        if breakdown {
                            counters.mapsAtBaseline = try proc.smaps()
                            counters.mapsAtPeak = counters.mapsAtBaseline
                        }
                        measuring = true
                    } else if Int(mark) == AB_MARK_SAMPLE && measuring {
                        try record(sample)
                    } else if Int(mark) == AB_MARK_END && measuring {
                        counters.sawEnd = true
                        counters.final = sample
                        counters.processFinal = sample
                        // The child's own executable runs from a memfd (ChildImage), whose pages
                        // the kernel counts as RssShmem: add its file pages to RssFile, as for
                        // an executable run from a file. They are never unmapped, so the count
                        // at the end is also their count at any earlier peak.
                        let imagePages = try proc.smaps().filter { $0.path.hasPrefix("/memfd:" + image + " ") }
                            .reduce(0) { $0 + $1.residentKilobytes - $1.anonymousKilobytes }
                        counters.processFinal.rssFileKilobytes += imagePages
                        counters.processPeak.rssFileKilobytes += imagePages
                        counters.minorFaults = try proc.minorFaults() - faultsAtBegin
                        try record(sample)
                        if breakdown { counters.mapsAtEnd = try proc.smaps() }
                        measuring = false
                    }
                } else if beforeEnd && !measuring {
                    // Before the begin marker (the loader, the C start-up, the child's setup):
                    // only the whole process's peaks are kept.
                    counters.processPeak = MemorySample.maximum(counters.processPeak, try proc.sample())
                } else if measuring, let syscall = MemorySyscall(stopKind: kind) {
                    // Stopped on entry: the counters still hold everything since the last mm
                    // syscall, and RssAnon only falls and VmSize only changes inside one.
                    counters.syscalls[syscall, default: 0] += 1
                    let sample = try proc.sample(lazyFree: readsLazyFree)
                    counters.processPeak = MemorySample.maximum(counters.processPeak, sample)
                    try record(sample)
                    var advice: UInt64 = 0
                    if syscall == .other || (syscall == .madvise && ab_ptrace_argument(thread, 2, &advice) == 0 && advice == UInt64(MADV_FREE)) {
                        readsLazyFree = true
                    }
                }
            } else {
                // A signal-delivery stop: pass the signal on (SIGSEGV, SIGALRM from the deadline, …).
                signalToDeliver = ab_delivery_stop_signal(status)
            }
            if ab_ptrace_continue(thread, signalToDeliver) != 0 && errno != ESRCH {
                throw SystemError("ptrace(PTRACE_CONT)", errno: errno)
            }
        }
    }

    /// How long the parent waits for an untraced replay: the child's own deadline (its SIGALRM,
    /// armed once its `main` runs, which reports the op it stopped at), then as long again, so that
    /// a child that never reaches its `main` still ends. nil: no deadline.
    static func backstop(_ deadlineMilliseconds: UInt64) -> Duration? {
        deadlineMilliseconds > 0 ? .milliseconds(deadlineMilliseconds) * 2 : nil
    }

    // MARK: - Spawning

    /// Variables a child inherits from the harness: the ones that decide which libraries load.
    /// Nothing else passes, so a run cannot depend on what happened to be exported in the user's
    /// shell (MALLOC_CONF, GLIBC_TUNABLES, MIMALLOC_*, SWIFT_* ...), nor on the size of that
    /// environment.
    static let inheritedVariables = ["LD_LIBRARY_PATH="]

    /// The child's whole environment: the inherited variables, plus
    /// - LD_BIND_NOW=1: with lazy binding, the first call of a library function from inside the
    ///   replay writes its GOT entry, and copying that page on write would be charged to the
    ///   allocator as a touched page;
    /// - SWIFT_BACKTRACE=enable=no: a crash is reported in its row, not as a backtrace on stderr;
    /// - ALLOCBENCH_PARENT: so that the child can check that it runs for this process (ab_spawn has
    ///   already made it die with it);
    /// - `extra`: what the allocator's catalog entry needs (LD_PRELOAD=...).
    public static func childEnvironment(adding extra: [String]) -> [String] {
        SystemFacts.environment.filter { text in inheritedVariables.contains { text.hasPrefix($0) } }
            + ["LD_BIND_NOW=1", "SWIFT_BACKTRACE=enable=no", "ALLOCBENCH_PARENT=\(getpid())"] + extra
    }

    /// The bytes the kernel puts at the top of a replay child's stack for its path, argv and
    /// environment (each string with its NUL, and a pointer to each), made the same for every
    /// replay by `paddingArgumentArea`.
    public static let argumentAreaBytes = 1024

    /// `environment` with ALLOCBENCH_PAD=… appended, sized so that the child's path, arguments and
    /// environment take exactly `argumentAreaBytes` on its stack. The kernel copies them to the top
    /// of the stack, so their size decides where the child's frames start, which stack pages its
    /// replay touches — a whole-process figure — and, without a padding, whether an allocator's
    /// call chain crosses into a new stack page: a clone of the package six characters deeper, or
    /// a pid of six digits instead of five, would move a row by a page. Over the size, no padding.
    public static func paddingArgumentArea(of arguments: [String], _ environment: [String]) -> [String] {
        let pointerBytes = MemoryLayout<UInt>.size
        // The executable's path (AT_EXECFN) is copied too; the padding variable adds one pointer.
        let strings = ([arguments[0]] + arguments + environment).reduce(0) { $0 + $1.utf8.count + 1 }
        let used = strings + pointerBytes * (arguments.count + environment.count + 1)
        let prefix = "ALLOCBENCH_PAD="
        let padding = argumentAreaBytes - used - prefix.utf8.count - 1
        guard padding >= 0 else { return environment }
        return environment + [prefix + String(repeating: "x", count: padding)]
    }

    /// How long an errand may take when the command has no `--timeout` (`allocbench list`,
    /// `allocbench conformance`): a describe takes milliseconds, the conformance suite about a second.
    public static let defaultErrandTimeout: Duration = .seconds(60)

    /// Runs a replay child for a short errand (`describe`, `malloc-provider`, `conformance NAME`)
    /// with the environment a replay gets (`extra`: the entry's LD_PRELOAD), both streams captured,
    /// and `timeout`: a preloaded malloc that hangs or crashes ends the errand, not allocbench.
    public static func errand(_ arguments: [String], adding extra: [String] = [], timeout: Duration)
        throws(SystemError) -> Subprocess.Completion
    {
        try Subprocess.run(arguments, options: Subprocess.Options(environment: childEnvironment(adding: extra)), timeout: timeout)
    }
}
