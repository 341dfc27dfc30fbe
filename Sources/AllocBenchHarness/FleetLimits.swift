import AllocBenchModel
import Foundation
import Glibc

/// Why a fleet cannot start: a limit of the system or of this process that N processes would
/// exceed (a usage error: ask for fewer), or memory the machine does not have (a system error).
public struct FleetRefusal: Error, Sendable, CustomStringConvertible {
    public var kind: FailureKind
    public var description: String

    init(_ kind: FailureKind, _ description: String) {
        self.kind = kind
        self.description = description
    }
}

/// The limits a fleet of N processes must fit, checked before the first member starts so that a
/// fleet never fails half-way.
public enum FleetLimits {
    /// What the kernel spends on a process beyond its own counters (task_struct, the kernel stack,
    /// the mm, VMAs, open files): about 80 KB, from 10,000 raw static processes whose MemAvailable
    /// fell by 68.4 KB each (docs/fleet.md).
    public static let kernelKilobytesPerProcess = 80
    /// Descriptors allocbench keeps besides one pidfd per member: the trace, the op stream, the
    /// park pipe, a /proc file being read, the standard streams.
    static let spareDescriptors = 64
    /// The share of MemAvailable a fleet may take: the rest is for everything else on the machine.
    static let availableShare = 0.9
    /// RLIM_INFINITY, which Swift imports as a negative literal.
    static let unlimited = rlim_t.max

    /// Checks the pid space, RLIMIT_NPROC, RLIMIT_NOFILE (raising the soft limit up to the hard
    /// one) and the mapping count (allocbench maps each member's control block).
    public static func checkProcessLimits(processes: Int) throws(FleetRefusal) {
        let runningTasks = Self.runningTasks()
        if let pidMax = readNumber("/proc/sys/kernel/pid_max") {
            let free = pidMax - runningTasks
            guard processes <= free else {
                throw FleetRefusal(.usage, "--processes \(processes) exceeds the free process ids: pid_max \(pidMax) minus \(runningTasks) running tasks leaves \(max(free, 0))")
            }
        }
        if let threadsMax = readNumber("/proc/sys/kernel/threads-max"), processes > threadsMax - runningTasks {
            throw FleetRefusal(.usage, "--processes \(processes) exceeds kernel.threads-max \(threadsMax) minus \(runningTasks) running tasks")
        }
        var processLimit = rlimit()
        // Root (CAP_SYS_RESOURCE, CAP_SYS_ADMIN) is not held to RLIMIT_NPROC.
        if getrlimit(__rlimit_resource_t(__RLIMIT_NPROC.rawValue), &processLimit) == 0, processLimit.rlim_cur != Self.unlimited, getuid() != 0 {
            let mine = tasksOfUser(getuid())
            guard processes + mine <= Int(processLimit.rlim_cur) else {
                throw FleetRefusal(.usage, "--processes \(processes) exceeds RLIMIT_NPROC \(processLimit.rlim_cur) minus the \(mine) tasks this user runs (ulimit -u)")
            }
        }
        try raiseDescriptorLimit(toHold: processes + spareDescriptors + openDescriptors())
        if let mapLimit = readNumber("/proc/sys/vm/max_map_count") {
            let mappings = ((try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8)) ?? "").split(separator: "\n").count
            guard processes + mappings < mapLimit else {
                throw FleetRefusal(.usage, "--processes \(processes) exceeds vm.max_map_count \(mapLimit) minus the \(mappings) mappings allocbench has: it maps each member's control block")
            }
        }
    }

    /// Checks that `processes` processes each holding `perProcessKilobytes` (the single process's
    /// RssAnon + VmPTE) plus the kernel's own cost fit in MemAvailable.
    public static func checkMemory(processes: Int, perProcessKilobytes: Int, allocator: String) throws(FleetRefusal) {
        guard let available = MemInfo.read()?.availableKilobytes else { return }
        let needed = processes * (perProcessKilobytes + kernelKilobytesPerProcess)
        let usable = Int(Double(available) * availableShare)
        guard needed <= usable else {
            throw FleetRefusal(.system, "not enough memory for \(processes) \(allocator) processes: they need about \(needed / 1024) MB "
                + "(\(perProcessKilobytes) KB RssAnon + VmPTE and ~\(kernelKilobytesPerProcess) KB of kernel each), "
                + "\(Int(availableShare * 100)) % of MemAvailable is \(usable / 1024) MB")
        }
    }

    /// RLIMIT_NOFILE's soft limit raised to hold `count` descriptors, if the hard limit allows.
    static func raiseDescriptorLimit(toHold count: Int) throws(FleetRefusal) {
        var limit = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        if limit.rlim_cur != Self.unlimited && Int(limit.rlim_cur) >= count { return }
        guard limit.rlim_max == Self.unlimited || Int(limit.rlim_max) >= count else {
            throw FleetRefusal(.usage, "--processes needs \(count) open descriptors (a pidfd per process) but RLIMIT_NOFILE's hard limit is \(limit.rlim_max) (ulimit -Hn)")
        }
        limit.rlim_cur = rlim_t(count)
        guard setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            throw FleetRefusal(.usage, "--processes needs \(count) open descriptors and RLIMIT_NOFILE cannot be raised: \(String(cString: strerror(errno)))")
        }
    }

    /// Tasks (threads included: each takes a pid) on the system: the denominator of /proc/loadavg's
    /// fourth field.
    static func runningTasks() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return 0 }
        let field = text.split(separator: " ").dropFirst(3).first
        return field.flatMap { $0.split(separator: "/").last }.flatMap { Int($0) } ?? 0
    }

    /// Tasks of a user: each /proc/PID it owns, with its threads (the links of /proc/PID/task).
    static func tasksOfUser(_ uid: uid_t) -> Int {
        var count = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] where name.first?.isNumber == true {
            var status = stat()
            guard stat("/proc/\(name)", &status) == 0, status.st_uid == uid else { continue }
            var tasks = stat()
            count += stat("/proc/\(name)/task", &tasks) == 0 ? max(Int(tasks.st_nlink) - 2, 1) : 1
        }
        return count
    }

    static func openDescriptors() -> Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).count
    }

    static func readNumber(_ path: String) -> Int? {
        (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }
}

/// The /proc/meminfo lines a fleet reads, in kB.
public struct MemInfo: Sendable {
    public var availableKilobytes: Int

    public static func read() -> MemInfo? {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return nil }
        var values: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let value = Int(parts[1].split(separator: " ").first ?? "") else { continue }
            values[String(parts[0])] = value
        }
        guard let available = values["MemAvailable"] else { return nil }
        return MemInfo(availableKilobytes: available)
    }
}
