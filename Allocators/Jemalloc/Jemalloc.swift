import AllocBenchCore
import CJemalloc

/// jemalloc 5 (Debian's libjemalloc), called as programs call it: malloc, calloc, realloc, free
/// and posix_memalign (`CMallocAPI`), which in this child are jemalloc's. (Its own mallocx,
/// rallocx and sdallocx take jemalloc's general path instead of the fast one malloc and free have:
/// 1.07–1.20× per op in a C loop, so a row through them was not comparable with the others.)
///
/// Linking it replaces malloc for the whole process, Swift runtime included, and it cannot be
/// dlopened (its TLS is static), so it runs in a replay child of its own
/// (`allocbench-replay-jemalloc`, see `Child/`), never beside another allocator.
public struct Jemalloc: CMallocAPI {
    public static let name = "jemalloc"
    public static let summary = "jemalloc (Debian libjemalloc-dev) through malloc/free/realloc/calloc/posix_memalign, in its own child process."
    public static let isProcessMalloc = true

    public init() {}

    public func statistics() -> [AllocatorStatistic] {
        Jemalloc.currentStatistics()
    }

    public static func statisticsBeforeReplay() -> [AllocatorStatistic] {
        currentStatistics()
    }

    static func currentStatistics() -> [AllocatorStatistic] {
        // Cached thread-local blocks are counted as allocated until the tcache is flushed.
        _ = mallctl("thread.tcache.flush", nil, nil, nil, 0)
        return [
            AllocatorStatistic("resident_bytes", Jemalloc.readStatistic("stats.resident") ?? 0),
            AllocatorStatistic("mapped_bytes", Jemalloc.readStatistic("stats.mapped") ?? 0),
            AllocatorStatistic("active_bytes", Jemalloc.readStatistic("stats.active") ?? 0),
            AllocatorStatistic("allocated_bytes", Jemalloc.readStatistic("stats.allocated") ?? 0),
            AllocatorStatistic("metadata_bytes", Jemalloc.readStatistic("stats.metadata") ?? 0),
        ]
    }

    public static func buildNote() -> String? {
        var version: UnsafePointer<CChar>?
        var length = MemoryLayout<UnsafePointer<CChar>?>.size
        guard mallctl("version", &version, &length, nil, 0) == 0, let version else { return nil }
        return "jemalloc " + String(cString: version)
    }

    /// Reads a size_t statistic after advancing the epoch, without allocating.
    static func readStatistic(_ name: String) -> Int? {
        var epoch: UInt64 = 1
        _ = mallctl("epoch", nil, nil, &epoch, MemoryLayout<UInt64>.size)
        var value = 0
        var length = MemoryLayout<Int>.size
        return mallctl(name, &value, &length, nil, 0) == 0 ? value : nil
    }
}
