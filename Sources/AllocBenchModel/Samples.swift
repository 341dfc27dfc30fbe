// The counters a replay reads from the kernel, as the result model carries them.

/// Page counts from /proc's kB figures. /proc reports whole pages in kB, so the division is exact.
@inlinable
public func pages(kilobytes: Int, pageSize: Int) -> Int {
    kilobytes * 1024 / pageSize
}

/// The kernel's memory counters for one process at one instant, in kB as /proc prints them.
public struct MemorySample: Sendable, Equatable, Codable {
    /// RssAnon: resident private anonymous memory (heap, anonymous mmaps, written private file pages).
    public var rssAnonKilobytes: Int
    /// VmSize: the whole address space.
    public var vmSizeKilobytes: Int
    /// VmPTE: page tables.
    public var pageTablesKilobytes: Int
    /// LazyFree (/proc/PID/smaps_rollup): pages handed back with madvise(MADV_FREE) and still
    /// resident, which RssAnon counts until the kernel reclaims them under memory pressure.
    public var lazyFreeKilobytes: Int
    /// RssFile: resident file-backed pages mapped by the process (its executable, the C library,
    /// the loader), shared with every other process that maps them.
    public var rssFileKilobytes: Int
    /// VmStk: the main thread's stack mapping.
    public var stackKilobytes: Int

    public init(rssAnonKilobytes: Int = 0, vmSizeKilobytes: Int = 0, pageTablesKilobytes: Int = 0, lazyFreeKilobytes: Int = 0,
                rssFileKilobytes: Int = 0, stackKilobytes: Int = 0) {
        self.rssAnonKilobytes = rssAnonKilobytes
        self.vmSizeKilobytes = vmSizeKilobytes
        self.pageTablesKilobytes = pageTablesKilobytes
        self.lazyFreeKilobytes = lazyFreeKilobytes
        self.rssFileKilobytes = rssFileKilobytes
        self.stackKilobytes = stackKilobytes
    }

    /// Each counter's largest value of the two.
    public static func maximum(_ a: MemorySample, _ b: MemorySample) -> MemorySample {
        MemorySample(rssAnonKilobytes: max(a.rssAnonKilobytes, b.rssAnonKilobytes), vmSizeKilobytes: max(a.vmSizeKilobytes, b.vmSizeKilobytes),
                     pageTablesKilobytes: max(a.pageTablesKilobytes, b.pageTablesKilobytes),
                     lazyFreeKilobytes: max(a.lazyFreeKilobytes, b.lazyFreeKilobytes),
                     rssFileKilobytes: max(a.rssFileKilobytes, b.rssFileKilobytes), stackKilobytes: max(a.stackKilobytes, b.stackKilobytes))
    }

    enum CodingKeys: String, CodingKey {
        case rssAnonKilobytes, vmSizeKilobytes, pageTablesKilobytes, lazyFreeKilobytes, rssFileKilobytes, stackKilobytes
    }

    /// Reports written before a counter was recorded read it as 0.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        rssAnonKilobytes = try container.decode(Int.self, forKey: .rssAnonKilobytes)
        vmSizeKilobytes = try container.decode(Int.self, forKey: .vmSizeKilobytes)
        pageTablesKilobytes = try container.decode(Int.self, forKey: .pageTablesKilobytes)
        lazyFreeKilobytes = try container.decodeIfPresent(Int.self, forKey: .lazyFreeKilobytes) ?? 0
        rssFileKilobytes = try container.decodeIfPresent(Int.self, forKey: .rssFileKilobytes) ?? 0
        stackKilobytes = try container.decodeIfPresent(Int.self, forKey: .stackKilobytes) ?? 0
    }
}

/// The mm syscalls a traced replay stops at, in the order of the seccomp filter's stop kinds.
public enum MemorySyscall: String, Sendable, CaseIterable, Codable {
    case mmap, munmap, brk, madvise, mremap
    /// shmat, shmdt, process_madvise: rare, but they move the counters too.
    case other
}

/// One point of a traced replay: the counters when `opsCompleted` ops had returned.
public struct TimelinePoint: Sendable, Equatable, Codable {
    public var opsCompleted: Int
    public var sample: MemorySample
    /// The requested bytes live after `opsCompleted` ops (filled in from the trace).
    public var liveBytes: UInt64 = 0

    public init(opsCompleted: Int, sample: MemorySample, liveBytes: UInt64 = 0) {
        self.opsCompleted = opsCompleted
        self.sample = sample
        self.liveBytes = liveBytes
    }
}

/// Where pages went: one region's touched (Anonymous) and mapped (Size) pages, relative to the
/// baseline. The regions of one instant add up to the row's touched and mapped totals.
public struct RegionUsage: Codable, Sendable, Equatable {
    public var region: String
    public var touchedPages: Int
    public var mappedPages: Int

    public init(region: String, touchedPages: Int, mappedPages: Int) {
        self.region = region
        self.touchedPages = touchedPages
        self.mappedPages = mappedPages
    }
}

/// An anonymous mapping that did not exist at the baseline: one the allocator made.
public struct NewMapping: Codable, Sendable, Equatable {
    public var start: String
    public var mappedPages: Int
    public var touchedPages: Int

    public init(start: String, mappedPages: Int, touchedPages: Int) {
        self.start = start
        self.mappedPages = mappedPages
        self.touchedPages = touchedPages
    }
}

/// The breakdown of one replay: at the instant of the touched peak and at the end.
public struct MemoryBreakdown: Codable, Sendable, Equatable {
    public var peak: [RegionUsage]
    public var end: [RegionUsage]
    /// The allocator's own anonymous mappings alive at the end.
    public var newMappingsAtEnd: [NewMapping]

    public init(peak: [RegionUsage], end: [RegionUsage], newMappingsAtEnd: [NewMapping]) {
        self.peak = peak
        self.end = end
        self.newMappingsAtEnd = newMappingsAtEnd
    }
}

/// Requested bytes live after `opsCompleted` ops: the ideal line of a timeline chart.
public struct LiveBytesPoint: Codable, Sendable, Equatable {
    public var opsCompleted: Int
    public var liveBytes: UInt64

    public init(opsCompleted: Int, liveBytes: UInt64) {
        self.opsCompleted = opsCompleted
        self.liveBytes = liveBytes
    }
}
