import CAllocBench

/// An allocator called the way a C program calls malloc: malloc, calloc, realloc, free, and
/// posix_memalign for alignments above malloc's. Every row that measures the process malloc (glibc,
/// jemalloc in its own child, any preload) takes these, so none is called by a faster or slower
/// path than programs use (jemalloc's mallocx/sdallocx take its general path: 7–20 % slower per op).
///
/// Alignment: malloc, calloc and realloc give 16 bytes on x86-64 and aarch64; a realloc of a block
/// with a stricter alignment moves it by hand, as C's realloc only promises malloc's alignment.
public protocol CMallocAPI: Allocator {}

/// What malloc, calloc and realloc align to on the platforms allocbench runs on.
public let cMallocAlignment = 16

extension CMallocAPI {
    /// C's malloc is thread-safe.
    public static var isThreadSafe: Bool { true }

    @inline(__always)
    public mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if alignment <= cMallocAlignment { return malloc(byteCount) }
        // aligned_alloc wants a size that is a multiple of the alignment in C11's letter;
        // posix_memalign has no such rule at all.
        var block: UnsafeMutableRawPointer?
        return posix_memalign(&block, alignment, byteCount) == 0 ? block : nil
    }

    @inline(__always)
    public mutating func allocateZeroed(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if alignment <= cMallocAlignment { return calloc(1, byteCount) }
        guard let block = allocate(byteCount: byteCount, alignment: alignment) else { return nil }
        block.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        return block
    }

    @inline(__always)
    public mutating func reallocate(
        _ block: UnsafeMutableRawPointer, from oldByteCount: Int, to newByteCount: Int, alignment: Int
    ) -> UnsafeMutableRawPointer? {
        if alignment <= cMallocAlignment { return realloc(block, newByteCount) }
        guard let moved = allocate(byteCount: newByteCount, alignment: alignment) else { return nil }
        moved.copyMemory(from: block, byteCount: min(oldByteCount, newByteCount))
        free(block)
        return moved
    }

    @inline(__always)
    public mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {
        free(block)
    }
}
