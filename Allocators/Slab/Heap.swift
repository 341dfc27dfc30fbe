// The heap: its header, the section directory, runs of units, page release and huge objects. The
// map of the allocator's structures and its invariants is at the top of Slab.swift.

#if canImport(Glibc)
import Glibc
#endif

/// The heap's own state. It lives in units 1…4 of the first section, so that a small program's
/// first objects share its page; the per-class arrays and the first directory entries follow it
/// (see `HeapLayout`).
struct HeapHeader {
    /// Σ requested bytes of live blocks (the page-release limit is a fraction of it).
    var liveRequestedBytes = 0
    /// Pages that are entirely free but still resident (`Section.dirtyFreePages`, summed).
    var dirtyFreePages = 0
    /// The section directory: base address and largest free run of every formatted section,
    /// oldest first. Inline in the heap header until it outgrows `HeapLayout.inlineDirectoryCapacity`.
    var directoryBases: UnsafeMutablePointer<UnsafeMutableRawPointer>
    var directoryLargest: UnsafeMutablePointer<UInt8>
    var directoryCount = 0
    var directoryCapacity: Int
    /// 0 while the directory is inline, else the length of its own mapping.
    var directoryMappedBytes = 0
    /// Mapped sections not formatted yet (untouched), lowest first.
    var freshSections: UnsafeMutableRawPointer?
    var freshSectionCount = 0
    /// The lowest address of the latest section mapping: the next mapping is tried just below it.
    var lowestMappedAddress: UInt = 0
    var sectionMappedBytes = 0
    var slabCount = 0
    var hugeObjectCount = 0
    var hugeMappedBytes = 0
    var mmapCalls = 0
    var munmapCalls = 0
    var madviseCalls = 0
    var pagesReleased = 0
}

enum HeapLayout {
    static let headerBytes = (MemoryLayout<HeapHeader>.stride + 15) & ~15
    /// The head of each class's list of slabs with room.
    static let classListsOffset = headerBytes
    /// The number of slabs of each class (UInt16).
    static let classSlabCountsOffset = classListsOffset + SizeClass.count * 8
    static let inlineDirectoryCapacity = 8
    static let inlineDirectoryBasesOffset = (classSlabCountsOffset + SizeClass.count * 2 + 7) & ~7
    static let inlineDirectoryLargestOffset = inlineDirectoryBasesOffset + inlineDirectoryCapacity * 8
    static let totalBytes = inlineDirectoryLargestOffset + inlineDirectoryCapacity
    static let units = Geometry.unitsCovering(totalBytes)
    /// The heap header starts at unit 1 of the first section.
    static let firstUnit = 1
}

/// What a run is for, which decides the pages taking it touches.
enum RunUse {
    /// A slab: only its header's page is written now; carving writes the rest lazily.
    case slab
    /// A medium object, or the heap header: the program may write every page.
    case object
}

/// Mapping constants that Swift's Glibc module does not export.
enum Kernel {
    static let mapFixedNoReplace: Int32 = 0x10_0000
    static let readWrite = PROT_READ | PROT_WRITE
    static let privateAnonymous = MAP_PRIVATE | MAP_ANONYMOUS

    /// mmap with a result that is nil on failure, and, with `exactly`, only when it lands at the hint.
    static func map(_ length: Int, at hint: UInt = 0, exactly: Bool = false) -> UnsafeMutableRawPointer? {
        let flags = privateAnonymous | (exactly ? mapFixedNoReplace : 0)
        guard let address = mmap(UnsafeMutableRawPointer(bitPattern: hint), length, readWrite, flags, -1, 0),
              address != MAP_FAILED else { return nil }
        if exactly && UInt(bitPattern: address) != hint {
            // A kernel without MAP_FIXED_NOREPLACE treats the hint as a hint.
            munmap(address, length)
            return nil
        }
        return address
    }
}

/// The heap through the address of its header. All state is behind the pointer, so copies of a
/// `Heap` (and of the `Slab` holding it) share one heap. Single-threaded.
struct Heap {
    let header: UnsafeMutablePointer<HeapHeader>

    var raw: UnsafeMutableRawPointer { UnsafeMutableRawPointer(header) }

    @inline(__always)
    var classLists: UnsafeMutablePointer<UnsafeMutablePointer<SlabHeader>?> {
        (raw + HeapLayout.classListsOffset).assumingMemoryBound(to: UnsafeMutablePointer<SlabHeader>?.self)
    }

    @inline(__always)
    var classSlabCounts: UnsafeMutablePointer<UInt16> {
        (raw + HeapLayout.classSlabCountsOffset).assumingMemoryBound(to: UInt16.self)
    }

    var firstSection: Section { Section(containing: raw) }

    // MARK: Bootstrap

    /// Maps and formats the first section and builds the heap header inside it.
    static func create() -> Heap? {
        var mappings = 0
        guard let base = mapAlignedSections(count: 1, below: 0, mappings: &mappings) else { return nil }
        let section = Section(base: base)
        section.format(directoryIndex: 0)
        let headerAddress = section.address(ofUnit: HeapLayout.firstUnit)
        let bases = (headerAddress + HeapLayout.inlineDirectoryBasesOffset).bindMemory(
            to: UnsafeMutableRawPointer.self, capacity: HeapLayout.inlineDirectoryCapacity)
        let largest = (headerAddress + HeapLayout.inlineDirectoryLargestOffset).bindMemory(
            to: UInt8.self, capacity: HeapLayout.inlineDirectoryCapacity)
        let header = headerAddress.bindMemory(to: HeapHeader.self, capacity: 1)
        header.initialize(to: HeapHeader(directoryBases: bases, directoryLargest: largest,
                                         directoryCapacity: HeapLayout.inlineDirectoryCapacity))
        (headerAddress + HeapLayout.classListsOffset).bindMemory(
            to: UnsafeMutablePointer<SlabHeader>?.self, capacity: SizeClass.count).initialize(repeating: nil, count: SizeClass.count)
        (headerAddress + HeapLayout.classSlabCountsOffset).bindMemory(
            to: UInt16.self, capacity: SizeClass.count).initialize(repeating: 0, count: SizeClass.count)
        let heap = Heap(header: header)
        header.pointee.mmapCalls = mappings
        header.pointee.lowestMappedAddress = UInt(bitPattern: base)
        header.pointee.sectionMappedBytes = Geometry.sectionSize
        heap.register(section)
        _ = heap.take(section, unit: HeapLayout.firstUnit, units: HeapLayout.units, startsRun: true, use: .object)
        return heap
    }

    // MARK: Sections

    /// Maps `count` sections at a 64 KiB-aligned address without mapping more than that: first just
    /// below `below` (where the kernel's top-down placement would put it anyway), then wherever the
    /// kernel likes if that happens to be aligned, then aligned down from there, and only as a last
    /// resort an oversized mapping trimmed to alignment.
    static func mapAlignedSections(count: Int, below: UInt, mappings: inout Int) -> UnsafeMutableRawPointer? {
        let length = count << Geometry.sectionShift
        let alignment = UInt(Geometry.sectionSize)
        if below > UInt(length) {
            mappings += 1
            if let address = Kernel.map(length, at: below - UInt(length), exactly: true) { return address }
        }
        mappings += 1
        guard let anywhere = Kernel.map(length) else { return nil }
        let address = UInt(bitPattern: anywhere)
        if address & (alignment - 1) == 0 { return anywhere }
        munmap(anywhere, length)
        mappings += 2
        if let alignedDown = Kernel.map(length, at: address & ~(alignment - 1), exactly: true) { return alignedDown }
        let padded = length + Geometry.sectionSize - Geometry.pageSize
        guard let wide = Kernel.map(padded) else { return nil }
        let start = (UInt(bitPattern: wide) + alignment - 1) & ~(alignment - 1)
        let head = Int(start - UInt(bitPattern: wide))
        if head > 0 { munmap(wide, head) }
        if padded - head - length > 0 { munmap(UnsafeMutableRawPointer(bitPattern: start + UInt(length)), padded - head - length) }
        return UnsafeMutableRawPointer(bitPattern: start)
    }

    /// Formats a fresh section (mapping more first when none is left): a quarter of the sections
    /// the heap has, between 1 and 16 at a time, so mappings grow with the heap but VmSize stays
    /// within 25 % of what is used.
    func addSection() -> Section? {
        if header.pointee.freshSectionCount == 0 {
            let count = min(16, max(1, header.pointee.directoryCount / 4))
            var mappings = 0
            let mapped = Heap.mapAlignedSections(count: count, below: header.pointee.lowestMappedAddress, mappings: &mappings)
            header.pointee.mmapCalls += mappings
            guard let base = mapped else { return nil }
            header.pointee.lowestMappedAddress = min(header.pointee.lowestMappedAddress, UInt(bitPattern: base))
            header.pointee.sectionMappedBytes += count << Geometry.sectionShift
            header.pointee.freshSections = base
            header.pointee.freshSectionCount = count
        }
        guard header.pointee.directoryCount < header.pointee.directoryCapacity || growDirectory(),
              let base = header.pointee.freshSections else { return nil }
        header.pointee.freshSections = base + Geometry.sectionSize
        header.pointee.freshSectionCount -= 1
        let section = Section(base: base)
        section.format(directoryIndex: header.pointee.directoryCount)
        register(section)
        return section
    }

    private func register(_ section: Section) {
        let index = header.pointee.directoryCount
        precondition(index < header.pointee.directoryCapacity)
        header.pointee.directoryBases[index] = section.base
        header.pointee.directoryLargest[index] = UInt8(section.largestFreeRun)
        header.pointee.directoryCount = index + 1
    }

    /// Moves the directory to a mapping twice its size (the first move leaves the inline array).
    private func growDirectory() -> Bool {
        let capacity = max(HeapLayout.inlineDirectoryCapacity * 2, header.pointee.directoryCapacity * 2)
        let length = Geometry.roundUpToPage(capacity * 9)
        header.pointee.mmapCalls += 1
        guard let mapping = Kernel.map(length) else { return false }
        let bases = mapping.bindMemory(to: UnsafeMutableRawPointer.self, capacity: capacity)
        let largest = (mapping + capacity * 8).bindMemory(to: UInt8.self, capacity: capacity)
        let count = header.pointee.directoryCount
        bases.update(from: header.pointee.directoryBases, count: count)
        largest.update(from: header.pointee.directoryLargest, count: count)
        if header.pointee.directoryMappedBytes > 0 {
            munmap(UnsafeMutableRawPointer(header.pointee.directoryBases), header.pointee.directoryMappedBytes)
            header.pointee.munmapCalls += 1
        }
        header.pointee.directoryBases = bases
        header.pointee.directoryLargest = largest
        header.pointee.directoryCapacity = capacity
        header.pointee.directoryMappedBytes = length
        return true
    }

    @inline(__always)
    func section(at index: Int) -> Section { Section(base: header.pointee.directoryBases[index]) }

    @inline(__always)
    private func updateLargestFreeRun(_ section: Section, _ largest: Int) {
        section.largestFreeRun = largest
        header.pointee.directoryLargest[section.directoryIndex] = UInt8(truncatingIfNeeded: largest)
    }

    // MARK: Runs

    /// Takes `units` free units at a multiple of `alignmentUnits`: the oldest section with room,
    /// lowest unit first; a new section when none has room.
    func allocateRun(units: Int, alignmentUnits: Int, use: RunUse) -> (section: Section, unit: Int, knownZeroPages: UInt16)? {
        let largest = header.pointee.directoryLargest
        let count = header.pointee.directoryCount
        var index = 0
        while index < count {
            if Int(largest[index]) >= units {
                let section = self.section(at: index)
                if let unit = section.firstFreeRun(units: units, alignmentUnits: alignmentUnits) {
                    return (section, unit, take(section, unit: unit, units: units, startsRun: true, use: use))
                }
            }
            index &+= 1
        }
        guard let section = addSection(),
              let unit = section.firstFreeRun(units: units, alignmentUnits: alignmentUnits) else { return nil }
        return (section, unit, take(section, unit: unit, units: units, startsRun: true, use: use))
    }

    /// Marks units [unit, unit + units) allocated. Returns the pages of the run that were released
    /// before (their bytes read as zero), for zeroed allocations.
    @discardableResult
    func take(_ section: Section, unit: Int, units: Int, startsRun: Bool, use: RunUse) -> UInt16 {
        let end = unit &+ units
        let firstPage = unit &>> 4
        let lastPage = (end &- 1) &>> 4
        let carvedFrom = section.freeRunLength(around: unit)
        header.pointee.dirtyFreePages &-= section.countDirtyFreePages(first: firstPage, last: lastPage)
        section.setBits(Section.freeUnitsOffset, from: unit, to: end, false)
        if startsRun {
            section.setBit(Section.runStartsOffset, unit, true)
            if use == .slab { section.setBit(Section.slabStartsOffset, unit, true) }
        }
        section.freeUnitCount -= units
        let released = section.releasedPages
        let written = use == .slab ? Section.pageMask(first: firstPage, last: firstPage) : Section.pageMask(first: firstPage, last: lastPage)
        section.releasedPages = released & ~written
        if carvedFrom >= section.largestFreeRun {
            updateLargestFreeRun(section, section.computeLargestFreeRun())
        }
        return released & Section.pageMask(first: firstPage, last: lastPage)
    }

    /// Marks units [unit, unit + units) free; the first `writtenUnits` of them may have been
    /// written, so their pages are resident until released.
    func free(_ section: Section, unit: Int, units: Int, writtenUnits: Int, endsRun: Bool) {
        let end = unit &+ units
        let firstPage = unit &>> 4
        let lastPage = (end &- 1) &>> 4
        if writtenUnits > 0 {
            section.releasedPages &= ~Section.pageMask(first: firstPage, last: (unit &+ writtenUnits &- 1) &>> 4)
        }
        section.setBits(Section.freeUnitsOffset, from: unit, to: end, true)
        if endsRun {
            section.setBit(Section.runStartsOffset, unit, false)
            section.setBit(Section.slabStartsOffset, unit, false)
        }
        section.freeUnitCount += units
        header.pointee.dirtyFreePages &+= section.countDirtyFreePages(first: firstPage, last: lastPage)
        let merged = section.freeRunLength(around: unit)
        if merged > section.largestFreeRun { updateLargestFreeRun(section, merged) }
        releasePagesIfOverLimit()
    }

    // MARK: Page release

    /// Empty pages held before they go back to the kernel: at least 16, or 1/32 of the live pages.
    /// Each release drops every one of them, so the resident slack stays under this bound and the
    /// number of madvise calls grows only with how much memory is freed.
    static let minimumHeldPages = 16
    static let heldPagesShift = 5

    @inline(__always)
    func releasePagesIfOverLimit() {
        let limit = max(Heap.minimumHeldPages, (header.pointee.liveRequestedBytes &>> Geometry.pageShift) &>> Heap.heldPagesShift)
        if header.pointee.dirtyFreePages > limit { releaseEmptyPages() }
    }

    /// Returns every free resident page to the kernel: sections with nothing in them are unmapped
    /// (except the first, which holds the heap header), the free pages of the others are dropped
    /// with MADV_DONTNEED (one call per contiguous stretch), and so are the carved pages of each
    /// class's empty slab, which is reset to uncarved.
    func releaseEmptyPages() {
        unmapEmptySections()
        for index in 0..<header.pointee.directoryCount {
            let section = self.section(at: index)
            var dirty = section.dirtyFreePages()
            while dirty != 0 {
                let first = dirty.trailingZeroBitCount
                let length = (~(dirty &>> UInt16(first))).trailingZeroBitCount
                let stretch = Section.pageMask(first: first, last: first + length - 1)
                release(section.base + (first << Geometry.pageShift), pages: length)
                section.releasedPages |= stretch
                dirty &= ~stretch
            }
        }
        header.pointee.dirtyFreePages = 0
        for sizeClass in 0..<SizeClass.count {
            if let head = classLists[sizeClass], head.pointee.live == 0 { resetEmptySlab(head) }
        }
    }

    /// Unmaps every section but the first whose units are all free, keeping the directory in
    /// creation order.
    private func unmapEmptySections() {
        let count = header.pointee.directoryCount
        var kept = 0
        for index in 0..<count {
            let section = self.section(at: index)
            if section.freeUnitCount == Geometry.maximumRunUnits && section != firstSection {
                unmap(section.base, Geometry.sectionSize)
                header.pointee.sectionMappedBytes -= Geometry.sectionSize
                continue
            }
            if kept != index {
                header.pointee.directoryBases[kept] = section.base
                header.pointee.directoryLargest[kept] = header.pointee.directoryLargest[index]
                section.directoryIndex = kept
            }
            kept += 1
        }
        header.pointee.directoryCount = kept
    }

    /// Uncarves an empty slab and releases its carved pages that lie wholly inside its run, except
    /// the header's page.
    private func resetEmptySlab(_ slab: UnsafeMutablePointer<SlabHeader>) {
        let start = UnsafeMutableRawPointer(slab)
        let carvedEnd = UInt(bitPattern: slab.pointee.bump)
        slab.pointee.freeList = nil
        slab.pointee.bump = start + SlabHeader.byteCount
        let pageShift = UInt(Geometry.pageShift)
        let firstPage = (UInt(bitPattern: start) >> pageShift) + 1
        let runEnd = UInt(bitPattern: start) + UInt(slab.pointee.units) << UInt(Geometry.unitShift)
        let endPage = min(runEnd >> pageShift, (carvedEnd + UInt(Geometry.pageSize - 1)) >> pageShift)
        guard endPage > firstPage else { return }
        let pages = Int(endPage - firstPage)
        release(UnsafeMutableRawPointer(bitPattern: firstPage << pageShift).unsafelyUnwrapped, pages: pages)
        let section = Section(containing: start)
        let sectionPage = Int(firstPage - (UInt(bitPattern: section.base) >> pageShift))
        section.releasedPages |= Section.pageMask(first: sectionPage, last: sectionPage + pages - 1)
    }

    private func release(_ address: UnsafeMutableRawPointer, pages: Int) {
        madvise(address, pages << Geometry.pageShift, MADV_DONTNEED)
        header.pointee.madviseCalls += 1
        header.pointee.pagesReleased += pages
    }

    // MARK: Huge objects

    /// A mapping of its own, in whole pages; over-mapped and trimmed when the alignment exceeds a page.
    func allocateHuge(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        let length = Geometry.roundUpToPage(max(byteCount, 1))
        if alignment <= Geometry.pageSize {
            header.pointee.mmapCalls += 1
            guard let block = Kernel.map(length) else { return nil }
            recordHuge(length)
            return block
        }
        let padded = length + alignment - Geometry.pageSize
        header.pointee.mmapCalls += 1
        guard let wide = Kernel.map(padded) else { return nil }
        let start = (UInt(bitPattern: wide) + UInt(alignment) - 1) & ~UInt(alignment - 1)
        let head = Int(start - UInt(bitPattern: wide))
        let tail = padded - head - length
        if head > 0 { unmap(wide, head) }
        if tail > 0 { unmap(UnsafeMutableRawPointer(bitPattern: start + UInt(length)).unsafelyUnwrapped, tail) }
        recordHuge(length)
        return UnsafeMutableRawPointer(bitPattern: start)
    }

    private func recordHuge(_ length: Int) {
        header.pointee.hugeObjectCount += 1
        header.pointee.hugeMappedBytes += length
    }

    func deallocateHuge(_ block: UnsafeMutableRawPointer, byteCount: Int) {
        let length = Geometry.roundUpToPage(max(byteCount, 1))
        unmap(block, length)
        header.pointee.hugeObjectCount -= 1
        header.pointee.hugeMappedBytes -= length
    }

    /// Shrinks in place by unmapping the tail, grows in place when the pages after it are free.
    func resizeHugeInPlace(_ block: UnsafeMutableRawPointer, from oldByteCount: Int, to newByteCount: Int) -> Bool {
        let oldLength = Geometry.roundUpToPage(max(oldByteCount, 1))
        let newLength = Geometry.roundUpToPage(max(newByteCount, 1))
        if newLength < oldLength {
            unmap(block + newLength, oldLength - newLength)
        } else if newLength > oldLength {
            header.pointee.mmapCalls += 1
            guard Kernel.map(newLength - oldLength, at: UInt(bitPattern: block + oldLength), exactly: true) != nil else { return false }
        }
        header.pointee.hugeMappedBytes += newLength - oldLength
        return true
    }

    private func unmap(_ address: UnsafeMutableRawPointer, _ length: Int) {
        munmap(address, length)
        header.pointee.munmapCalls += 1
    }
}
