import AllocBenchCore
import CAllocBench
#if canImport(Glibc)
import Glibc
#endif

/// The process malloc, called through the C API: glibc's ptmalloc2 in the shared replay child,
/// or whichever library LD_PRELOAD puts in front of it.
///
/// Alignment: malloc, calloc and realloc give 16 bytes on x86-64 and aarch64 glibc; stricter
/// alignments go through aligned_alloc, and a realloc of such a block moves it by hand because
/// C's realloc only promises malloc's alignment.
public struct SystemMalloc: Allocator {
    public static let name = "glibc"
    public static let summary = "The process malloc (glibc ptmalloc2), called through malloc/free/realloc/calloc/aligned_alloc."
    public static let isProcessMalloc = true
    static let mallocAlignment = 16

    public init() {}

    @inline(__always)
    public mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if alignment <= Self.mallocAlignment { return malloc(byteCount) }
        // aligned_alloc wants a size that is a multiple of the alignment only in C11's letter; glibc
        // accepts any size, and posix_memalign has no such rule at all.
        var block: UnsafeMutableRawPointer?
        return posix_memalign(&block, alignment, byteCount) == 0 ? block : nil
    }

    @inline(__always)
    public mutating func allocateZeroed(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if alignment <= Self.mallocAlignment { return calloc(1, byteCount) }
        guard let block = allocate(byteCount: byteCount, alignment: alignment) else { return nil }
        block.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        return block
    }

    @inline(__always)
    public mutating func reallocate(
        _ block: UnsafeMutableRawPointer, from oldByteCount: Int, to newByteCount: Int, alignment: Int
    ) -> UnsafeMutableRawPointer? {
        if alignment <= Self.mallocAlignment { return realloc(block, newByteCount) }
        guard let moved = allocate(byteCount: newByteCount, alignment: alignment) else { return nil }
        moved.copyMemory(from: block, byteCount: min(oldByteCount, newByteCount))
        free(block)
        return moved
    }

    @inline(__always)
    public mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {
        free(block)
    }

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
