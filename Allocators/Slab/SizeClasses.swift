// Size classes and the fixed geometry of the slab allocator. The map of its structures and its
// invariants is at the top of Slab.swift.

import AllocBenchCore

/// Sizes below the page: units (the grain of runs) and sections (the aligned blocks that carry
/// their own header). Everything is a power of two so that every lookup is a shift or a mask.
enum Geometry {
    static let pageSize = Page.size
    static let pageShift = Page.shift

    /// Runs (slabs and medium objects) are whole units: 128 bytes, so a medium object wastes less
    /// than 128 bytes and a class's first slab fits its one object closely.
    static let unitShift = 7
    static let unitSize = 1 << unitShift

    /// A section is 256 KiB, aligned to 256 KiB; its first units hold its header. Objects up to
    /// almost 256 KiB (buffers of 64 KiB and 128 KiB are common) are runs in a section and reuse
    /// its free units; only larger ones get mappings of their own.
    static let sectionShift = 18
    static let sectionSize = 1 << sectionShift
    static let sectionMask = UInt(sectionSize - 1)
    static let unitsPerSection = sectionSize >> unitShift  // 2048
    /// 64-bit words in each of a section's unit maps.
    static let mapWords = unitsPerSection / 64
    /// Sections are mapped downward from the middle of the 512 GiB of address space the stack is
    /// in, so where they land, and so how many pages and calls mapping them costs, does not depend
    /// on where the kernel put the program's other mappings: that moves with the vdso's size, the
    /// loader cache, the libraries and the stack limit, and with it whether the kernel's choice
    /// happened to be section-aligned (docs/gating.md measured 63 pages of mapped peak and 29
    /// calls between layouts). Linux puts nothing there by itself (mmap_base sits just under the
    /// stack and mappings grow down from it; 256 GiB of them would be needed to get there), and
    /// sharing the stack's top-level page-table entry costs one page-table page, not two. Where it
    /// is taken, the kernel chooses as before.
    static func sectionRegionTop() -> UInt {
        var onTheStack = 0
        let stack = withUnsafeMutablePointer(to: &onTheStack) { UInt(bitPattern: $0) }
        return (stack & ~(stackSlotSize - 1)) + stackSlotSize / 2
    }

    /// What one top-level page-table entry maps on x86-64 and 4-level arm64: 512 GiB.
    static let stackSlotSize: UInt = 1 << 39
    static let unitsPerPageShift = pageShift - unitShift
    static let unitsPerPage = 1 << unitsPerPageShift  // 32
    static let pagesPerSection = sectionSize >> pageShift  // 64: one bit each in a UInt64
    /// Units taken by the section header (three unit maps and a few counters).
    static let sectionHeaderUnits = unitsCovering(3 * mapWords * 8 + 24)
    /// The longest run a section can hold: every unit but the header's.
    static let maximumRunUnits = unitsPerSection - sectionHeaderUnits

    @inline(__always)
    static func page(ofUnit unit: Int) -> Int { unit &>> unitsPerPageShift }

    @inline(__always)
    static func unitsCovering(_ byteCount: Int) -> Int {
        max(1, (byteCount &+ (unitSize &- 1)) &>> unitShift)
    }

    @inline(__always)
    static func roundUpToPage(_ byteCount: Int) -> Int {
        (byteCount &+ (pageSize &- 1)) & ~(pageSize &- 1)
    }
}

/// The size classes of small objects, computed by bit arithmetic (no table):
///
///     class 0        8 bytes                 (1…8: C promises them only 8-byte alignment)
///     class 1…32     16, 32, …, 512          (16-byte steps: every multiple of 16 up to 512)
///
/// Rounding wastes at most 15 bytes. Larger objects are not classed: each takes a run of 128-byte
/// units of its own, packed first-fit beside slabs and other runs, which wastes less than 128
/// bytes (≤ 24.8 % at 513 bytes, ≤ 12.5 % from 1 KiB, falling with size). Measured on the real
/// traces, classes above 512 bytes cost more pages than that rounding: every class in use keeps
/// a partly carved page, and programs use many sizes between 512 bytes and 2 KiB (see
/// docs/slab.md).
///
/// Sizes that are not multiples of 16 are never needed above 8 bytes: a block of 17…31 bytes
/// must be 16-byte aligned (C's guarantee for a block that can hold a 16-byte object), so a
/// 24-byte class could not sit at a 24-byte stride.
enum SizeClass {
    static let count = 33
    /// The largest small object; its class is `count - 1`.
    static let largestByteCount = 512
    /// Medium objects up to this size are kept on quick lists when freed (`QuickRuns`).
    static let largestMediumQuickBytes = 2048

    /// The smallest class whose size is at least `byteCount` (0 ≤ byteCount ≤ largestByteCount).
    @inline(__always)
    static func index(ofByteCount byteCount: Int) -> Int {
        byteCount <= 8 ? 0 : (byteCount &+ 15) &>> 4
    }

    /// The object size of class `index`.
    @inline(__always)
    static func byteCount(ofClass index: Int) -> Int {
        index == 0 ? 8 : index &<< 4
    }
}
