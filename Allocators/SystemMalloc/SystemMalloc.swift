import AllocBenchCore
import CAllocBench

/// The process malloc, called through the C API (`CMallocAPI`): glibc's ptmalloc2 in the shared
/// replay child, or whichever library LD_PRELOAD puts in front of it.
public struct SystemMalloc: CMallocAPI {
    public static let name = "glibc"
    public static let summary = "The process malloc (glibc ptmalloc2), called through malloc/free/realloc/calloc/aligned_alloc."
    public static let isProcessMalloc = true

    public init() {}

    /// mallinfo2: what ptmalloc2 holds from the kernel and what it has handed out.
    public func statistics() -> [AllocatorStatistic] {
        let info = ab_glibc_malloc_info()
        return [
            AllocatorStatistic("arena_bytes", Int(info.arena)),
            AllocatorStatistic("mmapped_bytes", Int(info.mmapped)),
            AllocatorStatistic("in_use_bytes", Int(info.in_use)),
            AllocatorStatistic("free_bytes", Int(info.free)),
            AllocatorStatistic("releasable_top_bytes", Int(info.top_pad)),
        ]
    }
}
