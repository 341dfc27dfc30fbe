import AllocBenchCore
import CJemalloc

/// jemalloc 5 (Debian's libjemalloc), called through its non-standard API: `mallocx` with
/// `MALLOCX_ALIGN`, `rallocx`, and sized `sdallocx`.
///
/// Linking it replaces malloc for the whole process, Swift runtime included, and it cannot be
/// dlopened (its TLS is static), so it runs in a replay child of its own
/// (`allocbench-replay-jemalloc`, see `Child/`), never beside another allocator.
public struct Jemalloc: Allocator {
    public static let name = "jemalloc"
    public static let summary = "jemalloc (Debian libjemalloc-dev) through mallocx/rallocx/sdallocx, in its own child process."
    public static let isProcessMalloc = true

    public init() {}

    @inline(__always)
    static func flags(alignment: Int) -> Int32 {
        alignment <= 16 ? 0 : cjemalloc_align_flags(alignment)
    }

    @inline(__always)
    public mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        // mallocx(0) is undefined; malloc(0) semantics are a minimal block.
        mallocx(max(byteCount, 1), Jemalloc.flags(alignment: alignment))
    }

    @inline(__always)
    public mutating func allocateZeroed(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        mallocx(max(byteCount, 1), Jemalloc.flags(alignment: alignment) | cjemalloc_zero_flag())
    }

    @inline(__always)
    public mutating func reallocate(
        _ block: UnsafeMutableRawPointer, from oldByteCount: Int, to newByteCount: Int, alignment: Int
    ) -> UnsafeMutableRawPointer? {
        rallocx(block, max(newByteCount, 1), Jemalloc.flags(alignment: alignment))
    }

    @inline(__always)
    public mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {
        sdallocx(block, max(byteCount, 1), Jemalloc.flags(alignment: alignment))
    }

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
