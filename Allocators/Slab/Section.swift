// Sections: 256 KiB-aligned blocks of 2048 units whose first units hold their header. The map of the
// allocator's structures and its invariants is at the top of Slab.swift.

/// A view of one section through its base address. The header is raw memory at known offsets
/// (three unit maps of `Geometry.unitsPerSection` bits and a few counters), read and written with
/// raw loads and stores.
struct Section: Equatable {
    let base: UnsafeMutableRawPointer

    init(base: UnsafeMutableRawPointer) {
        self.base = base
    }

    /// The section a heap address lies in: one mask.
    @inline(__always)
    init(containing address: UnsafeRawPointer) {
        base = UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: address) & ~Geometry.sectionMask).unsafelyUnwrapped
    }

    // MARK: Header layout

    static let mapBytes = Geometry.mapWords * 8
    /// Bit u set: unit u is free.
    static let freeUnitsOffset = 0
    /// Bit u set: an allocated run (slab, medium object or the heap header) starts at unit u.
    static let runStartsOffset = mapBytes
    /// Bit u set: the run starting at unit u is a slab. A subset of runStarts.
    static let slabStartsOffset = 2 * mapBytes
    static let releasedPagesOffset = 3 * mapBytes
    static let freeUnitCountOffset = releasedPagesOffset + 8
    static let directoryIndexOffset = releasedPagesOffset + 12
    static let magicOffset = releasedPagesOffset + 16
    static let headerByteCount = releasedPagesOffset + 20
    static let magic: UInt32 = 0x5345_4354  // "SECT"

    /// Bit p set: page p of the section is known not to be resident: nothing has written it since it
    /// was mapped or since MADV_DONTNEED. Stale in one direction only: a slab's carving may write a
    /// page whose bit is still set (the bit is cleared when the slab is released), so a set bit means
    /// "every byte of the page outside live slabs reads as zero".
    var releasedPages: UInt64 {
        @inline(__always) get { base.load(fromByteOffset: Self.releasedPagesOffset, as: UInt64.self) }
        @inline(__always) nonmutating set { base.storeBytes(of: newValue, toByteOffset: Self.releasedPagesOffset, as: UInt64.self) }
    }

    var freeUnitCount: Int {
        @inline(__always) get { Int(base.load(fromByteOffset: Self.freeUnitCountOffset, as: UInt16.self)) }
        @inline(__always) nonmutating set { base.storeBytes(of: UInt16(truncatingIfNeeded: newValue), toByteOffset: Self.freeUnitCountOffset, as: UInt16.self) }
    }

    var directoryIndex: Int {
        @inline(__always) get { Int(base.load(fromByteOffset: Self.directoryIndexOffset, as: UInt32.self)) }
        @inline(__always) nonmutating set { base.storeBytes(of: UInt32(truncatingIfNeeded: newValue), toByteOffset: Self.directoryIndexOffset, as: UInt32.self) }
    }

    var hasMagic: Bool { base.load(fromByteOffset: Self.magicOffset, as: UInt32.self) == Self.magic }

    /// Writes a fresh header: every unit but the header's free, every page but the header's
    /// released (a section is formatted straight after mmap, so its other pages are untouched).
    func format(directoryIndex: Int) {
        for word in 0..<Geometry.mapWords {
            storeWord(Self.freeUnitsOffset, word, 0)
            storeWord(Self.runStartsOffset, word, 0)
            storeWord(Self.slabStartsOffset, word, 0)
        }
        setBits(Self.freeUnitsOffset, from: Geometry.sectionHeaderUnits, to: Geometry.unitsPerSection, true)
        releasedPages = ~UInt64(1)
        freeUnitCount = Geometry.maximumRunUnits
        self.directoryIndex = directoryIndex
        base.storeBytes(of: Self.magic, toByteOffset: Self.magicOffset, as: UInt32.self)
    }

    // MARK: Addresses

    @inline(__always)
    func address(ofUnit unit: Int) -> UnsafeMutableRawPointer { base + (unit &<< Geometry.unitShift) }

    @inline(__always)
    static func unit(of address: UnsafeRawPointer) -> Int {
        Int(truncatingIfNeeded: (UInt(bitPattern: address) & Geometry.sectionMask) &>> UInt(Geometry.unitShift))
    }

    /// The slab that holds `address`: the nearest slab start at or below its unit. The caller
    /// guarantees that the address lies in a slab (its size says it is a small object).
    @inline(__always)
    static func slab(containing address: UnsafeRawPointer) -> UnsafeMutablePointer<SlabHeader> {
        let section = Section(containing: address)
        let unit = Section.unit(of: address)
        var word = unit &>> 6
        var bits = section.word(slabStartsOffset, word) & (UInt64.max &>> UInt64(63 &- (unit & 63)))
        while bits == 0 {
            word &-= 1
            bits = section.word(slabStartsOffset, word)
        }
        let start = (word &<< 6) &+ 63 &- bits.leadingZeroBitCount
        return section.address(ofUnit: start).assumingMemoryBound(to: SlabHeader.self)
    }

    // MARK: Unit maps

    @inline(__always)
    func word(_ map: Int, _ index: Int) -> UInt64 {
        base.load(fromByteOffset: map &+ (index &<< 3), as: UInt64.self)
    }

    @inline(__always)
    func storeWord(_ map: Int, _ index: Int, _ value: UInt64) {
        base.storeBytes(of: value, toByteOffset: map &+ (index &<< 3), as: UInt64.self)
    }

    @inline(__always)
    func bit(_ map: Int, _ index: Int) -> Bool {
        word(map, index &>> 6) & (1 &<< UInt64(index & 63)) != 0
    }

    @inline(__always)
    func setBit(_ map: Int, _ index: Int, _ value: Bool) {
        let mask: UInt64 = 1 &<< UInt64(index & 63)
        let old = word(map, index &>> 6)
        storeWord(map, index &>> 6, value ? old | mask : old & ~mask)
    }

    /// Bits [low, high) of one word, 0 ≤ low < high ≤ 64.
    @inline(__always)
    static func mask(from low: Int, to high: Int) -> UInt64 {
        let upper: UInt64 = high == 64 ? .max : (1 &<< UInt64(high)) &- 1
        return upper & ~((1 &<< UInt64(low)) &- 1)
    }

    /// Sets or clears bits [start, end).
    func setBits(_ map: Int, from start: Int, to end: Int, _ value: Bool) {
        var index = start
        while index < end {
            let word = index &>> 6
            let mask = Self.mask(from: index & 63, to: min(64, end &- (word &<< 6)))
            let old = self.word(map, word)
            storeWord(map, word, value ? old | mask : old & ~mask)
            index = (word &+ 1) &<< 6
        }
    }

    /// Whether every bit of [start, end) is set.
    func allBitsSet(_ map: Int, from start: Int, to end: Int) -> Bool {
        var index = start
        while index < end {
            let word = index &>> 6
            let mask = Self.mask(from: index & 63, to: min(64, end &- (word &<< 6)))
            if self.word(map, word) & mask != mask { return false }
            index = (word &+ 1) &<< 6
        }
        return true
    }

    func popCount(_ map: Int) -> Int {
        (0..<Geometry.mapWords).reduce(0) { $0 + word(map, $1).nonzeroBitCount }
    }

    /// The first index ≥ `start` whose bit equals `value`, or `Geometry.unitsPerSection`.
    @inline(__always)
    func next(_ map: Int, _ value: Bool, from start: Int) -> Int {
        guard start < Geometry.unitsPerSection else { return Geometry.unitsPerSection }
        var index = start &>> 6
        let flip: UInt64 = value ? 0 : .max
        var bits = (word(map, index) ^ flip) & (UInt64.max &<< UInt64(start & 63))
        while bits == 0 {
            index &+= 1
            if index == Geometry.mapWords { return Geometry.unitsPerSection }
            bits = word(map, index) ^ flip
        }
        return (index &<< 6) &+ bits.trailingZeroBitCount
    }

    /// The last index ≤ `start` whose bit equals `value`, or -1.
    @inline(__always)
    func previous(_ map: Int, _ value: Bool, from start: Int) -> Int {
        guard start >= 0 else { return -1 }
        var index = start &>> 6
        let flip: UInt64 = value ? 0 : .max
        var bits = (word(map, index) ^ flip) & (UInt64.max &>> UInt64(63 &- (start & 63)))
        while bits == 0 {
            index &-= 1
            if index < 0 { return -1 }
            bits = word(map, index) ^ flip
        }
        return (index &<< 6) &+ 63 &- bits.leadingZeroBitCount
    }

    // MARK: Free runs

    /// The lowest unit where `units` free units start at a multiple of `alignmentUnits`.
    @inline(__always)
    func firstFreeRun(units: Int, alignmentUnits: Int, residentOnly: Bool = false) -> Int? {
        if alignmentUnits == 1 && units <= 64 { return firstShortFreeRun(units: units, residentOnly: residentOnly) }
        return firstFreeRunByWalking(units: units, alignmentUnits: alignmentUnits, residentOnly: residentOnly)
    }

    /// `firstFreeRun` for runs of at most 64 units, the common case (objects of 513 bytes to 8 KiB
    /// and slabs): a word at a time instead of a free stretch at a time, since an old section has
    /// many short stretches. Within a word, log₂(units) shift-and steps leave bit i set iff units
    /// i … i + units − 1 are free; a run across a word boundary is the free units at the top of the
    /// words before (`carried`) plus those at the bottom of this one.
    func firstShortFreeRun(units: Int, residentOnly: Bool) -> Int? {
        var carried = 0
        for index in 0..<Geometry.mapWords {
            let free = freeWord(index, residentOnly: residentOnly)
            if free == 0 {
                carried = 0
                continue
            }
            if carried != 0 && carried &+ (~free).trailingZeroBitCount >= units { return (index &<< 6) &- carried }
            var starts = free
            var length = 1
            while length < units {
                let shift = min(length, units &- length)
                starts &= starts &>> UInt64(shift)
                length &+= shift
            }
            if starts != 0 { return (index &<< 6) &+ starts.trailingZeroBitCount }
            carried = free == .max ? carried &+ 64 : (~free).leadingZeroBitCount
        }
        return nil
    }

    /// `firstFreeRun` one free stretch at a time: any length and alignment.
    func firstFreeRunByWalking(units: Int, alignmentUnits: Int, residentOnly: Bool = false) -> Int? {
        var position = Geometry.sectionHeaderUnits
        while position < Geometry.unitsPerSection {
            let start = nextFree(from: position, residentOnly: residentOnly, true)
            if start == Geometry.unitsPerSection { return nil }
            let end = nextFree(from: start, residentOnly: residentOnly, false)
            let aligned = (start &+ alignmentUnits &- 1) & ~(alignmentUnits &- 1)
            if aligned &+ units <= end { return aligned }
            position = end
        }
        return nil
    }

    /// Word `index` of the free map, restricted to units of resident pages when `residentOnly`.
    @inline(__always)
    func freeWord(_ index: Int, residentOnly: Bool) -> UInt64 {
        let free = word(Self.freeUnitsOffset, index)
        guard residentOnly else { return free }
        // Two pages per word: spread each page's released bit over its 32 units.
        let released = (releasedPages &>> UInt64(index &<< 1)) & 3
        let lowPage: UInt64 = (0 &- (released & 1)) & 0x0000_0000_FFFF_FFFF
        let highPage: UInt64 = (0 &- (released &>> 1)) & 0xFFFF_FFFF_0000_0000
        return free & ~(lowPage | highPage)
    }

    /// The first unit ≥ `start` that is free (`value`) or not, optionally counting units of
    /// released pages as not free; `Geometry.unitsPerSection` when there is none.
    @inline(__always)
    func nextFree(from start: Int, residentOnly: Bool, _ value: Bool) -> Int {
        guard start < Geometry.unitsPerSection else { return Geometry.unitsPerSection }
        var index = start &>> 6
        let flip: UInt64 = value ? 0 : .max
        var bits = (freeWord(index, residentOnly: residentOnly) ^ flip) & (UInt64.max &<< UInt64(start & 63))
        while bits == 0 {
            index &+= 1
            if index == Geometry.mapWords { return Geometry.unitsPerSection }
            bits = freeWord(index, residentOnly: residentOnly) ^ flip
        }
        return (index &<< 6) &+ bits.trailingZeroBitCount
    }

    /// The length of the longest free run (of units in resident pages only, with `residentOnly`),
    /// by walking the free map.
    func computeLargestFreeRun(residentOnly: Bool = false) -> Int {
        var largest = 0
        var position = Geometry.sectionHeaderUnits
        while position < Geometry.unitsPerSection {
            let start = nextFree(from: position, residentOnly: residentOnly, true)
            if start == Geometry.unitsPerSection { break }
            let end = nextFree(from: start, residentOnly: residentOnly, false)
            largest = max(largest, end &- start)
            position = end
        }
        return largest
    }

    /// The free run that contains `unit` (which must be free): its length.
    func freeRunLength(around unit: Int) -> Int {
        let run = freeRun(around: unit)
        return run.upperBound &- run.lowerBound
    }

    /// The free run that contains `unit` (which must be free).
    @inline(__always)
    func freeRun(around unit: Int) -> Range<Int> {
        (previous(Self.freeUnitsOffset, false, from: unit) &+ 1)..<next(Self.freeUnitsOffset, false, from: unit)
    }

    /// The longest stretch of free units of resident pages within `range`.
    func longestResidentFreeRun(in range: Range<Int>) -> Int {
        var longest = 0
        var position = range.lowerBound
        while position < range.upperBound {
            let start = nextFree(from: position, residentOnly: true, true)
            if start >= range.upperBound { break }
            let end = min(range.upperBound, nextFree(from: start, residentOnly: true, false))
            longest = max(longest, end &- start)
            position = end
        }
        return longest
    }

    /// The free units of page `page`, as a mask of the map word that holds them.
    @inline(__always)
    func freeUnits(inPage page: Int) -> UInt64 {
        let firstUnit = page &<< Geometry.unitsPerPageShift
        let mask = Self.mask(from: firstUnit & 63, to: (firstUnit & 63) &+ Geometry.unitsPerPage)
        return word(Self.freeUnitsOffset, firstUnit &>> 6) & mask
    }

    // MARK: Pages

    /// Whether every unit of page `page` is free (never true for page 0, which holds the header).
    @inline(__always)
    func isPageFree(_ page: Int) -> Bool {
        let firstUnit = page &<< Geometry.unitsPerPageShift
        let mask: UInt64 = Geometry.unitsPerPage == 64 ? .max : (1 &<< UInt64(Geometry.unitsPerPage)) &- 1
        return (word(Self.freeUnitsOffset, firstUnit &>> 6) &>> UInt64(firstUnit & 63)) & mask == mask
    }

    /// The pages that are free and not released: the empty pages this section holds resident.
    func dirtyFreePages() -> UInt64 {
        var pages: UInt64 = 0
        for page in 1..<Geometry.pagesPerSection where isPageFree(page) { pages |= 1 << page }
        return pages & ~releasedPages
    }

    /// Bits first…last of a page mask.
    @inline(__always)
    static func pageMask(first: Int, last: Int) -> UInt64 {
        (UInt64.max &>> UInt64(63 &- last)) & ~((1 &<< UInt64(first)) &- 1)
    }

    /// Free pages that are not released among pages first…last.
    @inline(__always)
    func countDirtyFreePages(first: Int, last: Int) -> Int {
        var count = 0
        let released = releasedPages
        for page in first...last where isPageFree(page) && released & (1 << page) == 0 { count &+= 1 }
        return count
    }
}
