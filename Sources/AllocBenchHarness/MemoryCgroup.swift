import Foundation
import Glibc

/// A fresh memory cgroup that a fleet's children are born into: allocbench moves itself into it
/// before it starts them (a child starts in its parent's cgroup, and its memory stays charged where
/// it was first touched), out again once they are all running, and removes it when they are gone.
/// Under cgroup v2 it is `memory.current`, under v1 `memory.usage_in_bytes`: both count the pages
/// and the kernel memory (page tables, kernel stacks, task structures) charged to the group.
public final class MemoryCgroup {
    public enum Version: String, Sendable, Codable {
        case v1, v2
    }

    public let version: Version
    /// The fleet's cgroup directory.
    public let path: String
    /// Where allocbench was, and returns to.
    private let home: String
    private var isInside = false

    private init(version: Version, path: String, home: String) {
        self.version = version
        self.path = path
        self.home = home
    }

    /// Creates `allocbench-fleet-PID` beside the cgroup allocbench runs in, or says why it cannot.
    public static func create() -> Result<MemoryCgroup, CgroupUnavailable> {
        guard let (version, home) = ownMemoryCgroup() else {
            return .failure(CgroupUnavailable("no memory controller mounted at /sys/fs/cgroup or /sys/fs/cgroup/memory"))
        }
        removeStale(in: home)
        let path = home + "/allocbench-fleet-\(getpid())"
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            return .failure(CgroupUnavailable("cannot create \(path): \(String(cString: strerror(errno)))"))
        }
        let cgroup = MemoryCgroup(version: version, path: path, home: home)
        if version == .v2 && !((try? String(contentsOfFile: path + "/cgroup.controllers", encoding: .utf8)) ?? "").contains("memory") {
            // Its parent does not delegate the memory controller (and, holding processes, cannot).
            cgroup.remove()
            return .failure(CgroupUnavailable("\(home) does not enable the memory controller for its children"))
        }
        return .success(cgroup)
    }

    /// Bytes charged to the group now.
    public func usageBytes() -> Int? {
        let file = path + (version == .v2 ? "/memory.current" : "/memory.usage_in_bytes")
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Moves allocbench (every thread) into the group.
    public func enter() throws(SystemError) {
        try Self.move(getpid(), to: path)
        isInside = true
    }

    /// Moves allocbench back where it was.
    public func leave() {
        guard isInside else { return }
        if (try? Self.move(getpid(), to: home)) != nil { isInside = false }
    }

    /// Leaves it and removes the directory; a group that still holds a process stays (EBUSY) and is
    /// removed by the next fleet's `removeStale`.
    public func remove() {
        leave()
        rmdir(path)
    }

    deinit { remove() }

    private static func move(_ pid: pid_t, to directory: String) throws(SystemError) {
        let file = try FileDescriptor.open(directory + "/cgroup.procs", O_WRONLY)
        let text = Array("\(pid)\n".utf8)
        try text.withUnsafeBytes { bytes in Result { () throws(SystemError) in try file.writeAll(bytes) } }.get()
    }

    /// The memory cgroup this process is in: v2 when /sys/fs/cgroup is the unified hierarchy with
    /// the memory controller, else the v1 memory hierarchy.
    private static func ownMemoryCgroup() -> (Version, String)? {
        guard let membership = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8) else { return nil }
        let lines = membership.split(separator: "\n").map { $0.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false) }
        let unifiedControllers = (try? String(contentsOfFile: "/sys/fs/cgroup/cgroup.controllers", encoding: .utf8)) ?? ""
        if unifiedControllers.split(whereSeparator: \.isWhitespace).contains("memory"),
           let line = lines.first(where: { $0.count == 3 && $0[0] == "0" && $0[1].isEmpty }) {
            return (.v2, "/sys/fs/cgroup" + trimmed(line[2]))
        }
        if let line = lines.first(where: { $0.count == 3 && $0[1].split(separator: ",").contains("memory") }),
           FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/cgroup.procs") {
            return (.v1, "/sys/fs/cgroup/memory" + trimmed(line[2]))
        }
        return nil
    }

    private static func trimmed(_ path: Substring) -> String {
        path == "/" ? "" : String(path)
    }

    /// The fleet groups beside the cgroup allocbench runs in (a fleet's, or one a killed
    /// allocbench left).
    static func fleetGroups() -> [String] {
        guard let (_, home) = ownMemoryCgroup() else { return [] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: home)) ?? []
        return names.filter { $0.hasPrefix("allocbench-fleet-") }.map { home + "/" + $0 }
    }

    /// Groups left by a fleet whose allocbench died inside one (SIGKILL): empty by now, since their
    /// children died with it; rmdir removes only an empty group.
    private static func removeStale(in home: String) {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: home)) ?? []
        for name in names where name.hasPrefix("allocbench-fleet-") {
            guard let pid = pid_t(name.dropFirst("allocbench-fleet-".count)), kill(pid, 0) != 0 && errno == ESRCH else { continue }
            rmdir(home + "/" + name)
        }
    }
}

/// Why a fleet is measured without a cgroup.
public struct CgroupUnavailable: Error, Sendable, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }
}
