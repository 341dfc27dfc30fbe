import AllocBenchCore
import AllocBenchModel
import CAllocBench
import Glibc

/// `allocbench fleet`: N lean children that each replay a trace and then park at their end state,
/// blocked on one shared pipe; measured together at rest, then ended by closing the pipe.
///
/// Every member is started as a timed replay is (`ReplayRunner.spawn`, plus `--park`), with the
/// op stream shared and a control block of its own, whose descriptor is closed once the member
/// runs (the mapping stays): the fleet holds one pidfd per member and nothing else per member.
/// Members die with allocbench (PR_SET_PDEATHSIG), and a parked member also ends when the pipe's
/// write end closes, so no member outlives allocbench however it ends.
public struct Fleet: Sendable {
    public var processes: Int
    public var settings: RunSettings
    /// How long the fleet stays at rest after it is measured, for other tools to look at it.
    public var holdSeconds: Double = 0
    /// Short progress messages (the CLI shows them on a terminal only).
    public var progress: @Sendable (String) -> Void

    public init(processes: Int, settings: RunSettings, progress: @escaping @Sendable (String) -> Void = { _ in }) {
        self.processes = processes
        self.settings = settings
        self.progress = progress
    }

    /// SIGINT, SIGTERM or SIGHUP arrived while a fleet ran: every member has been ended and reaped
    /// and the cgroup removed; `resend()` then ends allocbench by that signal, as it would have.
    public struct Interrupted: Error, Sendable {
        public var signal: Int32

        public func resend() -> Never {
            raise(signal)
            // A handler that returned (none of allocbench's do): end as the signal would have.
            _exit(128 + signal)
        }
    }

    /// Starts the fleet for one allocator, measures it at rest and ends it. `single` is the traced
    /// single process at its end marker.
    public func run(_ allocator: CatalogEntry, trace: Benchmark.PreparedTrace, single: MemorySample) throws(Interrupted) -> FleetResult {
        var result = FleetResult(allocator: allocator.name, status: .ok, processes: processes, single: single)
        let signals = DeferredSignals()
        defer { signals.restore() }
        var members = Members()
        let cgroup = MemoryCgroup.create()
        defer {
            // Whatever happened, no member survives the fleet, and the cgroup goes once they are gone.
            members.end(killing: true)
            if case .success(let group) = cgroup { group.remove() }
        }
        do {
            try measure(allocator, trace: trace, into: &result, members: &members, cgroup: cgroup, signals: signals)
        } catch {
            switch error {
            case .interrupted(let signal):
                throw Interrupted(signal: signal)
            case .failed(let detail):
                result.status = .failed
                result.detail = detail
            }
        }
        return result
    }

    enum Stop: Error {
        case interrupted(Int32)
        case failed(String)
    }

    private func measure(_ allocator: CatalogEntry, trace: Benchmark.PreparedTrace, into result: inout FleetResult,
                         members: inout Members, cgroup: Result<MemoryCgroup, CgroupUnavailable>, signals: DeferredSignals) throws(Stop) {
        let name = allocator.name
        let request = ReplayRunner.Request(
            executable: allocator.executable, allocator: allocator.childAllocator, touch: settings.touch,
            traced: false, deadlineMilliseconds: settings.timeoutMilliseconds, environment: allocator.environment,
            addressRandomization: settings.addressRandomization, park: true)
        let memoryBefore = MemInfo.read()
        let ownBefore = Self.ownSample()
        var cgroupBefore: Int?
        switch cgroup {
        case .success(let group):
            do {
                try group.enter()
                cgroupBefore = group.usageBytes()
            } catch {
                result.cgroupUnavailable = "cannot move allocbench into \(group.path): \(error)"
            }
        case .failure(let reason):
            result.cgroupUnavailable = reason.description
        }

        let started = ab_monotonic_nanoseconds()
        members.firstSpawn = started
        // The write end is held by `members` alone: closing it there is what unparks the fleet.
        let parkReadEnd: FileDescriptor
        do {
            (parkReadEnd, members.parkWriteEnd) = try FileDescriptor.pipe()
        } catch {
            throw .failed("cannot create the park pipe: \(error)")
        }
        let image: ChildImage
        do {
            image = try ChildImage.loaded(request.executable)
        } catch {
            throw .failed("cannot load \(request.executable): \(error)")
        }
        for index in 0..<processes {
            if index % 64 == 0 {
                if let signal = signals.pending() { throw .interrupted(signal) }
                progress("\(name): started \(index) of \(processes)")
            }
            do {
                let (block, file) = try ControlBlock.create()
                let child = try ReplayRunner.spawn(request, image: image, stream: trace.stream, control: file, go: parkReadEnd)
                members.children.append(child)
                members.blocks.append(block)
            } catch {
                throw .failed("could not start member \(index + 1) of \(processes): \(error)")
            }
        }
        let spawned = ab_monotonic_nanoseconds()
        result.startSeconds = Self.seconds(spawned - started)
        // Every member is born in the group; what allocbench does from here is not the fleet's.
        if case .success(let group) = cgroup { group.leave() }

        try settle(members, name: name, started: started, signals: signals)
        let settled = ab_monotonic_nanoseconds()
        result.settleSeconds = Self.seconds(settled - started)

        progress("\(name): measuring \(processes) processes at rest")
        var total = MemorySample()
        for (index, child) in members.children.enumerated() {
            guard let sample = Self.statusSample(of: child.pid) else {
                throw .failed("member \(index + 1) (pid \(child.pid)) ended while parked")
            }
            total.rssAnonKilobytes += sample.rssAnonKilobytes
            total.vmSizeKilobytes += sample.vmSizeKilobytes
            total.pageTablesKilobytes += sample.pageTablesKilobytes
            total.rssFileKilobytes += sample.rssFileKilobytes
            total.stackKilobytes += sample.stackKilobytes
        }
        result.total = total
        let memoryAtRest = MemInfo.read()
        let ownAtRest = Self.ownSample()
        if let memoryBefore, let memoryAtRest {
            result.memAvailableDropKilobytes = memoryBefore.availableKilobytes - memoryAtRest.availableKilobytes
            // Not Shmem's growth: other processes move it too. The control pages are known exactly.
            result.harnessKilobytes = processes * Int(AB_CONTROL_BLOCK_SIZE) / 1024
                + FleetResult.privateKilobytes(ownAtRest) - FleetResult.privateKilobytes(ownBefore)
        }
        if case .success(let group) = cgroup, let cgroupBefore, let usage = group.usageBytes() {
            result.cgroup = FleetCgroupUsage(version: group.version.rawValue, usageKilobytes: (usage - cgroupBefore) / 1024)
        }

        if holdSeconds > 0 {
            progress("\(name): \(processes) processes at rest for \(Int(holdSeconds)) s (--hold)")
            let holdEnd = ab_monotonic_nanoseconds() + UInt64(holdSeconds * 1e9)
            while ab_monotonic_nanoseconds() < holdEnd {
                if let signal = signals.pending() { throw .interrupted(signal) }
                usleep(20_000)
            }
        }
        progress("\(name): ending \(processes) processes")
        let ending = ab_monotonic_nanoseconds()
        let failures = members.end(killing: false)
        result.endSeconds = Self.seconds(ab_monotonic_nanoseconds() - ending)
        if let failure = failures.first {
            throw .failed("\(failures.count) of \(processes) members did not end cleanly; the first \(failure)")
        }
    }

    /// Waits until every member's control block says done; a member that failed or died, a signal
    /// or the run's timeout stops the wait.
    private func settle(_ members: Members, name: String, started: UInt64, signals: DeferredSignals) throws(Stop) {
        let deadline = started + settings.timeoutMilliseconds * 1_000_000
        var pending = Array(members.children.indices)
        while true {
            if let signal = signals.pending() { throw .interrupted(signal) }
            pending.removeAll { members.blocks[$0].state == .done }
            if pending.isEmpty { return }
            progress("\(name): \(processes - pending.count) of \(processes) at rest")
            for index in pending {
                switch members.blocks[index].state {
                case .failed(let failure):
                    throw .failed("member \(index + 1) (pid \(members.children[index].pid)) failed at op \(members.blocks[index].opsCompleted + 1): \(failure)")
                case .unknown(let state):
                    throw .failed("member \(index + 1) wrote an unknown state \(state) into its control block")
                default:
                    continue
                }
            }
            guard ab_monotonic_nanoseconds() < deadline else {
                throw .failed("\(pending.count) of \(processes) members were not at rest after \(Int(settings.timeoutSeconds)) s")
            }
            // The poll is also the pause between two looks at the control blocks.
            let exited: Int?
            do {
                exited = try Subprocess.firstExited(of: members.children, among: pending, waitingUpTo: 10)
            } catch {
                throw .failed("cannot watch the members: \(error)")
            }
            if let exited, members.blocks[exited].state != .done {
                throw .failed("member \(exited + 1) (pid \(members.children[exited].pid)) ended before it was at rest, after op \(members.blocks[exited].opsCompleted)")
            }
        }
    }

    /// The members of a running fleet and the pipe they are parked on.
    struct Members {
        var children: [Subprocess] = []
        var blocks: [ControlBlock] = []
        var parkWriteEnd: FileDescriptor?

        /// When the first member was spawned: a member's wait deadline counts from its own spawn.
        var firstSpawn = ab_monotonic_nanoseconds()
        /// How long unparked members may take to exit before they are killed.
        static let exitGrace: Duration = .seconds(30)

        /// Ends every member and reaps it: closing the pipe's write end unparks them all (killing
        /// them first when the fleet was cut short; a member still there after `exitGrace` is
        /// killed too). Returns how the members that did not exit with 0 ended.
        @discardableResult
        mutating func end(killing: Bool) -> [String] {
            if killing { children.forEach { $0.kill() } }
            parkWriteEnd = nil
            // Every member was spawned after `firstSpawn`: each gets at least the grace from now.
            let timeout = Duration.nanoseconds(Int64(ab_monotonic_nanoseconds() - firstSpawn)) + Self.exitGrace
            var failures: [String] = []
            for (index, child) in children.enumerated() {
                let completion: Subprocess.Completion
                do {
                    completion = try child.wait(timeout: timeout)
                } catch {
                    child.kill()
                    failures.append("member \(index + 1) (pid \(child.pid)) could not be waited for: \(error)")
                    continue
                }
                if !completion.succeeded && !killing {
                    failures.append("member \(index + 1) (pid \(child.pid)) \(completion.termination)")
                }
            }
            children = []
            blocks = []
            return failures
        }
    }

    /// allocbench's own RssAnon and VmPTE (its growth while a fleet runs is allocbench's, not the fleet's).
    static func ownSample() -> MemorySample {
        statusSample(of: getpid()) ?? MemorySample()
    }

    /// /proc/PID/status read once; nil when the process is gone.
    static func statusSample(of pid: pid_t) -> MemorySample? {
        guard let file = try? FileDescriptor.open("/proc/\(pid)/status", O_RDONLY) else { return nil }
        return withUnsafeTemporaryAllocation(byteCount: 16384, alignment: 16) { buffer -> MemorySample? in
            guard let count = try? file.read(into: buffer, at: 0) else { return nil }
            var sample = MemorySample()
            ProcReader.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), into: &sample)
            return sample
        }
    }

    static func seconds(_ nanoseconds: UInt64) -> Double {
        Double(nanoseconds) / 1e9
    }
}

/// SIGINT, SIGTERM and SIGHUP blocked while a fleet runs and picked up where the fleet can stop in
/// order (ending its members, removing its cgroup) rather than by the cleanup handler, which knows
/// neither. A signal allocbench ignores (nohup's SIGHUP) stays ignored.
struct DeferredSignals {
    private var deferred = sigset_t()
    private var previous = sigset_t()

    init() {
        sigemptyset(&deferred)
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            var action = sigaction()
            if sigaction(signal, nil, &action) == 0, let handler = action.__sigaction_handler.sa_handler,
               unsafeBitCast(handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self) { continue }
            sigaddset(&deferred, signal)
        }
        pthread_sigmask(SIG_BLOCK, &deferred, &previous)
    }

    /// A deferred signal that arrived (taken off the pending set), or nil.
    func pending() -> Int32? {
        var set = deferred
        var now = timespec(tv_sec: 0, tv_nsec: 0)
        let signal = sigtimedwait(&set, nil, &now)
        return signal > 0 ? signal : nil
    }

    func restore() {
        var mask = previous
        pthread_sigmask(SIG_SETMASK, &mask, nil)
    }
}
