import CAllocBench

/// A memory allocator that allocbench can replay traces through.
///
/// Conformers are best written as structs that hold raw pointers: the replay child creates the
/// allocator on its stack after the baseline snapshot, so its `init()` is part of what is measured,
/// and a class instance would itself be allocated by the process malloc.
///
/// Contract (checked for every registered allocator by the conformance suite):
/// - `alignment` is a power of two. Above 16 the block's address is a multiple of it. At 16 and
///   below it asks for C malloc's guarantee, which need not exceed the object's size: the address
///   is a multiple of `guaranteedAlignment(requested:byteCount:)`, so jemalloc may hand out an
///   8-byte-aligned 8-byte block as it does for `malloc(8)`.
/// - `allocate(byteCount: 0, …)` returns a block that is distinct from every other live block.
/// - `nil` means out of memory, never a crash; on `nil` from `reallocate` the old block is untouched.
/// - `deallocate` and `reallocate` are given back the byte count and alignment the block was
///   allocated with (sized deallocation).
/// - No two live blocks overlap.
public protocol Allocator: SendableMetatype {
    /// The short name users select it by, e.g. `"slab"`: lowercase letters, digits and `-`.
    static var name: String { get }
    /// One sentence saying what it is.
    static var summary: String { get }
    /// True when this allocator *is* the process malloc (glibc, jemalloc, a preloaded library):
    /// then the child does not check that the process malloc stayed idle during the replay.
    static var isProcessMalloc: Bool { get }
    /// True when one instance may be called from several threads at once (a process malloc is).
    /// Every allocator runs in the per-thread replay, which calls it from one thread at a time and
    /// orders each call after the one before; the conformance suite calls a thread-safe one from
    /// four threads at once and frees blocks on other threads than the one that allocated them.
    static var isThreadSafe: Bool { get }

    init()

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer?
    mutating func allocateZeroed(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer?
    mutating func reallocate(
        _ block: UnsafeMutableRawPointer, from oldByteCount: Int, to newByteCount: Int, alignment: Int
    ) -> UnsafeMutableRawPointer?
    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int)

    /// What the allocator says about itself (jemalloc's `stats.resident`, glibc's `mallinfo2`, …).
    /// Called after the replay has been measured, so it may allocate.
    func statistics() -> [AllocatorStatistic]

    /// The same statistics read just before the baseline snapshot, for allocators that are already
    /// running when the replay starts (a process malloc), so that deltas can be cross-checked
    /// against the kernel's. Reading them here also keeps the cost of a first read (jemalloc
    /// builds its stats tables on the first epoch) out of the measurement.
    static func statisticsBeforeReplay() -> [AllocatorStatistic]

    /// A short note for `allocbench list` about this build of the allocator (e.g. the bss tail
    /// available in this executable). Called outside any measurement.
    static func buildNote() -> String?
}

extension Allocator {
    public static var isProcessMalloc: Bool { false }
    public static var isThreadSafe: Bool { false }

    public mutating func allocateZeroed(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        guard let block = allocate(byteCount: byteCount, alignment: alignment) else { return nil }
        block.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
        return block
    }

    public mutating func reallocate(
        _ block: UnsafeMutableRawPointer, from oldByteCount: Int, to newByteCount: Int, alignment: Int
    ) -> UnsafeMutableRawPointer? {
        guard let moved = allocate(byteCount: newByteCount, alignment: alignment) else { return nil }
        moved.copyMemory(from: block, byteCount: min(oldByteCount, newByteCount))
        deallocate(block, byteCount: oldByteCount, alignment: alignment)
        return moved
    }

    public func statistics() -> [AllocatorStatistic] { [] }

    public static func statisticsBeforeReplay() -> [AllocatorStatistic] { [] }

    public static func buildNote() -> String? { nil }
}

/// The alignment a block of `byteCount` bytes requested with `alignment` must have: the request
/// itself above C's fundamental alignment (16), otherwise no more than the largest power of two
/// that fits in the block, as C's malloc promises.
@inlinable
public func guaranteedAlignment(requested alignment: Int, byteCount: Int) -> Int {
    if alignment > 16 { return alignment }
    let fitting = byteCount <= 1 ? 1 : 1 << (Int.bitWidth - 1 - byteCount.leadingZeroBitCount)
    return min(alignment, fitting)
}

/// One self-reported number. Units are in the name's suffix (`_bytes`, `_pages`, `_count`).
public struct AllocatorStatistic: Sendable, Equatable {
    public var name: String
    public var value: Int64

    public init(_ name: String, _ value: Int64) {
        self.name = name
        self.value = value
    }

    public init(_ name: String, _ value: Int) {
        self.init(name, Int64(value))
    }
}

/// How much of each block the replay writes, so that pages touched reflect a program that uses
/// its memory.
public enum TouchMode: String, Sendable, CaseIterable {
    /// Write nothing: only the allocator's own writes (headers, free lists, zeroing) count.
    case none
    /// Write the first byte of the block, the first byte of every later page it spans, and its last byte.
    case pages
    /// Write every byte.
    case all

    /// Its position in `allCases`, as the child's record stores it.
    public var ordinal: UInt32 {
        switch self {
        case .none: 0
        case .pages: 1
        case .all: 2
        }
    }
}

/// The page size the replay children and the module allocators are built for (AB_PAGE_SIZE in the
/// C shim): size classes and page arithmetic are constants. The harness measures in the machine's
/// own pages (sysconf), and a replay child refuses a machine whose page size differs from this.
public enum Page {
    public static let size = Int(AB_PAGE_SIZE)
    public static let shift = Int(AB_PAGE_SHIFT)
}
