import AllocBenchCore
import Foundation

/// `allocbench fleet`: N real processes per allocator, each replaying the trace and then parked at
/// its end state, measured together at rest (docs/fleet.md).
public struct FleetReport: Codable, Sendable, Equatable {
    public static let schema = "allocbench.fleet/1"

    public var schema: String
    public var environment: RunEnvironment
    public var trace: TraceSummary
    public var processes: Int
    public var touch: TouchMode
    public var results: [FleetResult]

    public init(environment: RunEnvironment, trace: TraceSummary, processes: Int, touch: TouchMode, results: [FleetResult]) {
        schema = FleetReport.schema
        self.environment = environment
        self.trace = trace
        self.processes = processes
        self.touch = touch
        self.results = results
    }

    public var allSucceeded: Bool { results.allSatisfy(\.isOK) }

    public static func decode(_ data: Data) throws -> FleetReport {
        try AllocBenchJSON.decode(FleetReport.self, from: data)
    }

    public func encoded() throws -> Data {
        try AllocBenchJSON.encode(self)
    }
}

/// One allocator's fleet.
public struct FleetResult: Codable, Sendable, Equatable {
    public enum Status: String, Codable, Sendable {
        case ok, failed
    }

    public var allocator: String
    public var status: Status
    /// Why the fleet failed (a member's replay failed, it died, or the fleet did not settle in time).
    public var detail: String?
    public var processes: Int
    /// The single traced process at its end marker (`AllocatorResult.processEndSample`).
    public var single: MemorySample?
    /// From the first spawn to the last one's return, and on to every member's control block
    /// saying done.
    public var startSeconds: Double?
    public var settleSeconds: Double?
    /// From closing the park pipe to every member reaped.
    public var endSeconds: Double?
    /// Each counter summed over every member's /proc/PID/status at rest.
    public var total: MemorySample?
    /// MemAvailable before the first spawn minus MemAvailable at rest, and how much of that drop
    /// (and of the cgroup's usage) is allocbench's, not the fleet's: the members' control blocks
    /// (one shared memfd page each, touched by allocbench inside the cgroup) and allocbench's own
    /// RssAnon and VmPTE growth.
    public var memAvailableDropKilobytes: Int?
    public var harnessKilobytes: Int?
    /// A fresh memory cgroup's usage growth, from before the first spawn to rest; nil with
    /// `cgroupUnavailable` saying why there is none.
    public var cgroup: FleetCgroupUsage?
    public var cgroupUnavailable: String?

    public init(allocator: String, status: Status, detail: String? = nil, processes: Int, single: MemorySample? = nil) {
        self.allocator = allocator
        self.status = status
        self.detail = detail
        self.processes = processes
        self.single = single
    }

    public var isOK: Bool { status == .ok }

    /// RssAnon + VmPTE of one process, as a fleet's members are compared with it.
    public static func privateKilobytes(_ sample: MemorySample) -> Int {
        sample.rssAnonKilobytes + sample.pageTablesKilobytes
    }

    /// N × the single process's RssAnon + VmPTE.
    public var expectedKilobytes: Int? {
        single.map { processes * FleetResult.privateKilobytes($0) }
    }

    /// The summed RssAnon + VmPTE over N × the single process's (1 when the members are exactly
    /// as the single process).
    public var ratio: Double? {
        guard let total, let expected = expectedKilobytes, expected > 0 else { return nil }
        return Double(FleetResult.privateKilobytes(total)) / Double(expected)
    }

    /// The MemAvailable drop without allocbench's share, per member.
    public var netDropPerProcessKilobytes: Double? {
        guard let drop = memAvailableDropKilobytes, processes > 0 else { return nil }
        return Double(drop - (harnessKilobytes ?? 0)) / Double(processes)
    }
}

/// What a fleet's memory cgroup was charged.
public struct FleetCgroupUsage: Codable, Sendable, Equatable {
    /// "v1" (memory.usage_in_bytes) or "v2" (memory.current).
    public var version: String
    public var usageKilobytes: Int

    public init(version: String, usageKilobytes: Int) {
        self.version = version
        self.usageKilobytes = usageKilobytes
    }
}
