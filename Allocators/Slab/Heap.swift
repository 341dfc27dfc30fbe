// The heap: its header, the section directory, runs of units, residency accounting, page release
// and huge objects. The map of the allocator's structures and its invariants is at the top of
// Slab.swift.

import CAllocBench

/// The heap's own state, at the start of the executable's bss tail when the heap owns the tail
/// (the rest of the tail then holds tail slabs, see Slabs.swift), else after the first section's
/// header, so that a small program's first objects share its page. The per-class arrays, the huge
/// cache, the first directory entries, the quick lists and the tail's slab map follow it (see
/// `HeapLayout`).
struct HeapHeader {
    /// Bytes of the bss tail from this header's address to the end of its page, or 0 when the
    /// header lives in the first section. A block at offset o from the header is in the tail
    /// ⇔ o < tailBytes (unsigned), one comparison on the free path.
    var tailBytes = 0
    /// The tail's first byte no slab has taken yet.
    var tailBump: UnsafeMutableRawPointer?
    var tailSlabCount = 0
    /// Freed medium runs kept for the next object of the same length (`QuickRuns`).
    var quickRunCount = 0
    var quickRunUnits = 0
    /// Σ requested bytes of live blocks (the held-page limit is a fraction of it).
    var liveRequestedBytes = 0
    /// Pages that are entirely free but still resident (`Section.dirtyFreePages`, summed).
    var dirtyFreePages = 0
    /// Pages this heap has written and not given back: sections' unreleased pages, huge mappings
    /// (live and cached) and the directory's own mapping.
    var residentPages = 0
    /// The most `residentPages` has been.
    var peakResidentPages = 0
    /// The section directory, oldest section first: each section's base address, an upper bound
    /// of its longest free run, and one of its longest free run in resident pages (both bounds
    /// made exact when a search of the section fails). Inline in the heap header until it
    /// outgrows `HeapLayout.inlineDirectoryCapacity`.
    var directoryBases: UnsafeMutablePointer<UnsafeMutableRawPointer>
    var directoryLargest: UnsafeMutablePointer<UInt16>
    var directoryResidentLargest: UnsafeMutablePointer<UInt16>
    var directoryCount = 0
    var directoryCapacity: Int
    /// 0 while the directory is inline, else the length of its own mapping.
    var directoryMappedBytes = 0
    /// Mapped sections not formatted yet (untouched), lowest first.
    var freshSections: UnsafeMutableRawPointer?
    var freshSectionCount = 0
    /// The lowest address of the section mappings: the next mapping is tried just below it,
    /// starting from `Geometry.sectionRegionTop()`.
    var lowestMappedAddress = Geometry.sectionRegionTop()
    var sectionMappedBytes = 0
    var slabCount = 0
    var hugeObjectCount = 0
    var hugeMappedBytes = 0
    /// Mappings of freed huge objects kept for the next huge object (`HugeCache`).
    var hugeCacheCount = 0
    var hugeCachedBytes = 0
    var hugeCachedResidentBytes = 0
    var mmapCalls = 0
    var munmapCalls = 0
    var madviseCalls = 0
    var mremapCalls = 0
    var pagesReleased = 0
    /// Releases of held pages because they passed the limit, and because growth reached the peak.
    var limitReleases = 0
    var peakReleases = 0
}

enum HeapLayout {
    static let headerBytes = (MemoryLayout<HeapHeader>.stride + 15) & ~15
    /// The head of each class's list of slabs with room.
    static let classListsOffset = headerBytes
    /// The number of slabs of each class (UInt16).
    static let classSlabCountsOffset = classListsOffset + SizeClass.count * 8
    /// Freed huge mappings kept for reuse: base and length of each, oldest first.
    static let hugeCacheOffset = (classSlabCountsOffset + SizeClass.count * 2 + 7) & ~7
    /// The section directory until it outgrows this capacity, laid out by `directory(capacity:)`.
    static let inlineDirectoryCapacity = 8
    static let inlineDirectoryOffset = hugeCacheOffset + HugeCache.capacity * MemoryLayout<HugeCache.Entry>.stride
    /// The heads of the quick-run lists, one per run length (`QuickRuns.lengths`).
    static let quickRunsOffset = (inlineDirectoryOffset + directory(capacity: inlineDirectoryCapacity).byteCount + 7) & ~7
    /// Bit g set: a tail slab starts 16·g bytes past the header (the tail is less than a page).
    static let tailSlabStartsOffset = quickRunsOffset + QuickRuns.lengths.count * 8
    static let tailGranuleShift = 4
    static let tailMapWords = (Geometry.pageSize >> tailGranuleShift) / 64
    static let totalBytes = (tailSlabStartsOffset + tailMapWords * 8 + 15) & ~15
    static let units = Geometry.unitsCovering(totalBytes)
    /// The heap header follows the first section's header.
    static let firstUnit = Geometry.sectionHeaderUnits

    /// Where the section directory's three arrays lie from its start for `capacity` sections, the
    /// same inline in the header and in a mapping of its own: the bases (8 bytes each), then the
    /// two UInt16 bounds, so that every array is aligned for its elements.
    static func directory(capacity: Int) -> (basesOffset: Int, largestOffset: Int, residentLargestOffset: Int, byteCount: Int) {
        let largestOffset = capacity * MemoryLayout<UnsafeMutableRawPointer>.stride
        let residentLargestOffset = largestOffset + capacity * MemoryLayout<UInt16>.stride
        return (0, largestOffset, residentLargestOffset, residentLargestOffset + capacity * MemoryLayout<UInt16>.stride)
    }
}

/// What a run is for, which decides the pages taking it writes.
enum RunUse {
    /// A slab: only its header's page is written now; carving marks the rest as it reaches them.
    case slab
    /// Units a slab grows into: nothing is written until carving reaches them.
    case slabGrowth
    /// A medium object, or the heap header: the program may write every page.
    case object
}

/// Medium runs of up to 2 KiB, freed and kept for the next object of the same length, like a
/// thread cache's bins: a program that frees and mallocs the same sizes (most do) skips the map
/// search and the map updates. They hold at most 1/256 of the live bytes, and go back to the map
/// before a run search would write a fresh page and whenever held pages are released, so they
/// cost no page of peak that the map would have saved.
enum QuickRuns {
    /// Run lengths with a quick list: from the shortest run a medium object of 16-byte alignment
    /// takes (513 bytes) to 2 KiB.
    static let lengths = Geometry.unitsCovering(SizeClass.largestByteCount + 1)...(SizeClass.largestMediumQuickBytes >> Geometry.unitShift)
    static let liveShift = 8
}

enum HugeCache {
    struct Entry {
        var base: UnsafeMutableRawPointer
        var length: Int
        /// The first `residentLength` bytes are resident; the rest was released for a peak.
        var residentLength: Int
    }

    static let capacity = 4
    /// Larger mappings are unmapped when freed.
    static let maximumBytes = 8 << 20
    /// The cache may hold this much even when the held-page limit is lower.
    static let minimumBudgetPages = (2 << 20) >> Geometry.pageShift
}

/// Mapping constants that Swift's Glibc module does not export, and the heap's mmap wrappers.
/// Callers count the mmap calls; `mapTrimmed` counts its munmaps, as only it knows how many.
enum Kernel {
    static let mapFixedNoReplace: Int32 = 0x10_0000
    static let readWrite = PROT_READ | PROT_WRITE
    static let privateAnonymous = MAP_PRIVATE | MAP_ANONYMOUS

    /// mmap with a result that is nil on failure, and, with `exactly`, only when it lands at the hint.
    static func map(_ length: Int, at hint: UInt = 0, exactly: Bool = false) -> UnsafeMutableRawPointer? {
        let flags = privateAnonymous | (exactly ? mapFixedNoReplace : 0)
        guard let address = mmap(UnsafeMutableRawPointer(bitPattern: hint), length, readWrite, flags, -1, 0),
              address != ab_map_failed() else { return nil }
        if exactly && UInt(bitPattern: address) != hint {
            // A kernel without MAP_FIXED_NOREPLACE treats the hint as a hint.
            munmap(address, length)
            return nil
        }
        return address
    }

    /// A mapping of `length` bytes aligned to `alignment` (a power of two above a page) wherever
    /// the kernel likes: an oversized mapping with its unaligned head and its tail unmapped. One
    /// mmap call, up to two munmap calls.
    static func mapTrimmed(_ length: Int, alignment: Int, munmapCalls: inout Int) -> UnsafeMutableRawPointer? {
        let padded = length + alignment - Geometry.pageSize
        guard let wide = map(padded) else { return nil }
        let start = (UInt(bitPattern: wide) + UInt(alignment) - 1) & ~UInt(alignment - 1)
        let head = Int(start - UInt(bitPattern: wide))
        let tail = padded - head - length
        if head > 0 {
            munmap(wide, head)
            munmapCalls += 1
        }
        if tail > 0 {
            munmap(UnsafeMutableRawPointer(bitPattern: start + UInt(length)), tail)
            munmapCalls += 1
        }
        return UnsafeMutableRawPointer(bitPattern: start)
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

    // MARK: Bootstrap

    /// The process's bss tail when this is the first allocator to claim it (`ab_claim_bss_tail`):
    /// resident before the first allocation, so what the heap keeps there costs no page.
    static func claimBssTail() -> UnsafeMutableRawBufferPointer? {
        var length = 0
        let end = ab_claim_bss_tail(&length)
        guard end != 0 else { return nil }
        return UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: end), count: length)
    }

    /// A heap whose header sits at the start of `tail` (resident memory the heap may use, such as
    /// the bss tail), with the rest of the tail for slabs, when the tail holds the header; else a
    /// heap whose header follows the first section's header in a mapped section.
    static func create(tail: UnsafeMutableRawBufferPointer?) -> Heap? {
        if let tail, let (headerAddress, tailBytes) = headerPlacement(in: tail) {
            let heap = format(at: headerAddress)
            heap.header.pointee.tailBytes = tailBytes
            heap.header.pointee.tailBump = headerAddress + HeapLayout.totalBytes
            return heap
        }
        var calls = (mmap: 0, munmap: 0)
        guard let base = mapAlignedSections(count: 1, below: Geometry.sectionRegionTop(), calls: &calls) else { return nil }
        let section = Section(base: base)
        section.format(directoryIndex: 0)
        let heap = format(at: section.address(ofUnit: HeapLayout.firstUnit))
        heap.header.pointee.mmapCalls = calls.mmap
        heap.header.pointee.munmapCalls = calls.munmap
        heap.header.pointee.lowestMappedAddress = UInt(bitPattern: base)
        heap.header.pointee.sectionMappedBytes = Geometry.sectionSize
        heap.header.pointee.residentPages = 1
        heap.header.pointee.peakResidentPages = 1
        heap.register(section)
        _ = heap.take(section, unit: HeapLayout.firstUnit, units: HeapLayout.units, startsRun: true, use: .object)
        return heap
    }

    /// Where the heap header goes in `tail` (its first 16-byte boundary) and how many bytes of the
    /// tail follow from there; nil when the header does not fit. The slab map covers a page, and a
    /// tail is at most that.
    static func headerPlacement(in tail: UnsafeMutableRawBufferPointer) -> (UnsafeMutableRawPointer, Int)? {
        guard let start = tail.baseAddress else { return nil }
        let headerAddress = UnsafeMutableRawPointer(bitPattern: (UInt(bitPattern: start) + 15) & ~15).unsafelyUnwrapped
        let tailBytes = min(start + tail.count - headerAddress, Geometry.pageSize - 16) & ~15
        return tailBytes >= HeapLayout.totalBytes ? (headerAddress, tailBytes) : nil
    }

    /// Writes an empty heap header and its arrays at `headerAddress`.
    private static func format(at headerAddress: UnsafeMutableRawPointer) -> Heap {
        let directory = bindDirectory(at: headerAddress + HeapLayout.inlineDirectoryOffset, capacity: HeapLayout.inlineDirectoryCapacity)
        let header = headerAddress.bindMemory(to: HeapHeader.self, capacity: 1)
        header.initialize(to: HeapHeader(directoryBases: directory.bases, directoryLargest: directory.largest,
                                         directoryResidentLargest: directory.residentLargest,
                                         directoryCapacity: HeapLayout.inlineDirectoryCapacity))
        (headerAddress + HeapLayout.classListsOffset).bindMemory(
            to: UnsafeMutablePointer<SlabHeader>?.self, capacity: SizeClass.count).initialize(repeating: nil, count: SizeClass.count)
        (headerAddress + HeapLayout.classSlabCountsOffset).bindMemory(
            to: UInt16.self, capacity: SizeClass.count).initialize(repeating: 0, count: SizeClass.count)
        (headerAddress + HeapLayout.hugeCacheOffset).bindMemory(to: HugeCache.Entry.self, capacity: HugeCache.capacity)
        (headerAddress + HeapLayout.quickRunsOffset).bindMemory(
            to: UnsafeMutableRawPointer?.self, capacity: QuickRuns.lengths.count).initialize(repeating: nil, count: QuickRuns.lengths.count)
        (headerAddress + HeapLayout.tailSlabStartsOffset).bindMemory(
            to: UInt64.self, capacity: HeapLayout.tailMapWords).initialize(repeating: 0, count: HeapLayout.tailMapWords)
        return Heap(header: header)
    }

    /// The section that holds the heap header, or nil when the header is in the bss tail.
    var headerSection: Section? { header.pointee.tailBytes == 0 ? Section(containing: raw) : nil }

    // MARK: Residency

    /// Pages kept resident only so that they need not be faulted in again: empty pages in
    /// sections and cached huge mappings.
    var heldPages: Int { header.pointee.dirtyFreePages + header.pointee.hugeCachedResidentBytes >> Geometry.pageShift }

    /// Whether writing `pages` more pages would lift the footprint above its peak while more than
    /// a sliver of memory (1/64 of the live pages) is held for speed: then held memory goes first
    /// (`releaseHeldPagesForPeak`), so that kept memory adds at most that sliver to a new peak.
    /// Releasing for every page would trade a page of peak for a page fault each time it is
    /// reused; the sliver keeps the faults down where a heap grows while it churns.
    @inline(__always)
    func growthNeedsRelease(pages: Int) -> Bool {
        header.pointee.residentPages + pages > header.pointee.peakResidentPages
            && heldPages > (header.pointee.liveRequestedBytes &>> Geometry.pageShift) &>> Heap.peakSlackShift
    }

    static let peakSlackShift = 6

    /// Counts `pages` newly written pages.
    @inline(__always)
    func recordWritten(pages: Int) {
        header.pointee.residentPages += pages
        header.pointee.peakResidentPages = max(header.pointee.peakResidentPages, header.pointee.residentPages)
    }

    /// Makes room under the peak if needed, then counts `pages` newly written pages. A release
    /// gives back only empty pages, whole empty sections and cached huge mappings: callers mark
    /// the units they are about to write allocated first.
    func admitWritten(pages: Int) {
        guard pages > 0 else { return }
        if growthNeedsRelease(pages: pages) { releaseHeldPagesForPeak(pages: pages) }
        recordWritten(pages: pages)
    }

    // MARK: Sections

    /// Maps `count` sections at a section-aligned address without mapping more than that: first just
    /// below `below` (the lowest section so far, or `Geometry.sectionRegionTop()`), then wherever the
    /// kernel likes if that happens to be aligned, then aligned down from there, and only as a last
    /// resort an oversized mapping trimmed to alignment.
    static func mapAlignedSections(count: Int, below: UInt, calls: inout (mmap: Int, munmap: Int)) -> UnsafeMutableRawPointer? {
        let length = count << Geometry.sectionShift
        let alignment = UInt(Geometry.sectionSize)
        if below > UInt(length) {
            calls.mmap += 1
            if let address = Kernel.map(length, at: below - UInt(length), exactly: true) { return address }
        }
        calls.mmap += 1
        guard let anywhere = Kernel.map(length) else { return nil }
        let address = UInt(bitPattern: anywhere)
        if address & (alignment - 1) == 0 { return anywhere }
        munmap(anywhere, length)
        calls.munmap += 1
        calls.mmap += 1
        if let alignedDown = Kernel.map(length, at: address & ~(alignment - 1), exactly: true) { return alignedDown }
        calls.mmap += 1
        return Kernel.mapTrimmed(length, alignment: Geometry.sectionSize, munmapCalls: &calls.munmap)
    }

    /// Formats a fresh section (mapping more first when none is left): a quarter of the sections
    /// the heap has, between 1 and 8 (2 MiB) at a time, so mappings grow with the heap but VmSize stays
    /// within 25 % of what is used.
    func addSection() -> Section? {
        // Formatting writes the section's first page.
        admitWritten(pages: 1)
        if header.pointee.freshSectionCount == 0 {
            let count = min(8, max(1, header.pointee.directoryCount / 4))
            var calls = (mmap: 0, munmap: 0)
            let mapped = Heap.mapAlignedSections(count: count, below: header.pointee.lowestMappedAddress, calls: &calls)
            header.pointee.mmapCalls += calls.mmap
            header.pointee.munmapCalls += calls.munmap
            guard let base = mapped else {
                header.pointee.residentPages -= 1
                return nil
            }
            header.pointee.lowestMappedAddress = min(header.pointee.lowestMappedAddress, UInt(bitPattern: base))
            header.pointee.sectionMappedBytes += count << Geometry.sectionShift
            header.pointee.freshSections = base
            header.pointee.freshSectionCount = count
        }
        guard header.pointee.directoryCount < header.pointee.directoryCapacity || growDirectory(),
              let base = header.pointee.freshSections else {
            header.pointee.residentPages -= 1
            return nil
        }
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
        header.pointee.directoryLargest[index] = UInt16(Geometry.maximumRunUnits)
        // A fresh section's only resident page is its first.
        header.pointee.directoryResidentLargest[index] = UInt16(Geometry.unitsPerPage - Geometry.sectionHeaderUnits)
        header.pointee.directoryCount = index + 1
    }

    /// The section directory's arrays for `capacity` sections, starting at `start`.
    private static func bindDirectory(at start: UnsafeMutableRawPointer, capacity: Int)
        -> (bases: UnsafeMutablePointer<UnsafeMutableRawPointer>, largest: UnsafeMutablePointer<UInt16>,
            residentLargest: UnsafeMutablePointer<UInt16>) {
        let layout = HeapLayout.directory(capacity: capacity)
        return ((start + layout.basesOffset).bindMemory(to: UnsafeMutableRawPointer.self, capacity: capacity),
                (start + layout.largestOffset).bindMemory(to: UInt16.self, capacity: capacity),
                (start + layout.residentLargestOffset).bindMemory(to: UInt16.self, capacity: capacity))
    }

    /// Moves the directory to a mapping twice its size (the first move leaves the inline array).
    private func growDirectory() -> Bool {
        let capacity = max(HeapLayout.inlineDirectoryCapacity * 2, header.pointee.directoryCapacity * 2)
        let length = Geometry.roundUpToPage(HeapLayout.directory(capacity: capacity).byteCount)
        header.pointee.mmapCalls += 1
        guard let mapping = Kernel.map(length) else { return false }
        let (bases, largest, residentLargest) = Heap.bindDirectory(at: mapping, capacity: capacity)
        let count = header.pointee.directoryCount
        bases.update(from: header.pointee.directoryBases, count: count)
        largest.update(from: header.pointee.directoryLargest, count: count)
        residentLargest.update(from: header.pointee.directoryResidentLargest, count: count)
        recordWritten(pages: length >> Geometry.pageShift)
        if header.pointee.directoryMappedBytes > 0 {
            unmap(UnsafeMutableRawPointer(header.pointee.directoryBases), header.pointee.directoryMappedBytes)
            header.pointee.residentPages -= header.pointee.directoryMappedBytes >> Geometry.pageShift
        }
        header.pointee.directoryBases = bases
        header.pointee.directoryLargest = largest
        header.pointee.directoryResidentLargest = residentLargest
        header.pointee.directoryCapacity = capacity
        header.pointee.directoryMappedBytes = length
        return true
    }

    @inline(__always)
    func section(at index: Int) -> Section { Section(base: header.pointee.directoryBases[index]) }

    /// Raises a section's recorded bounds to cover the free run `run`, just made longer.
    private func raiseFreeRunBounds(_ section: Section, for run: Range<Int>) {
        let index = section.directoryIndex
        let length = UInt16(truncatingIfNeeded: run.upperBound &- run.lowerBound)
        if header.pointee.directoryLargest[index] < length { header.pointee.directoryLargest[index] = length }
        let resident = UInt16(truncatingIfNeeded: section.longestResidentFreeRun(in: run))
        if header.pointee.directoryResidentLargest[index] < resident { header.pointee.directoryResidentLargest[index] = resident }
    }

    /// Pages `pages` of a section were written for the first time since their release: free
    /// units among them are now resident, so resident free runs through them may be longer.
    func pagesBecameResident(_ section: Section, _ pages: UInt64) {
        var remaining = pages
        while remaining != 0 {
            let page = remaining.trailingZeroBitCount
            remaining &= remaining &- 1
            let free = section.freeUnits(inPage: page)
            if free == 0 { continue }
            let unit = ((page &<< Geometry.unitsPerPageShift) & ~63) &+ free.trailingZeroBitCount
            let index = section.directoryIndex
            let resident = UInt16(truncatingIfNeeded: section.longestResidentFreeRun(in: section.freeRun(around: unit)))
            if header.pointee.directoryResidentLargest[index] < resident { header.pointee.directoryResidentLargest[index] = resident }
        }
    }

    // MARK: Runs

    /// Takes `units` free units at a multiple of `alignmentUnits`. Resident memory first: the
    /// oldest section with a long enough free run in pages that are already resident, lowest unit
    /// first, so that freed memory is reused before fresh pages are faulted in; then the oldest
    /// section with a long enough free run anywhere; then a new section. The directory's bounds
    /// only rise as units are taken; a search that fails makes its bound exact.
    func allocateRun(units: Int, alignmentUnits: Int, use: RunUse) -> (section: Section, unit: Int, knownZeroPages: UInt64)? {
        for pass in 0..<3 {
            // Passes 0 and 1 search resident memory; before pass 1 tries again, the quick runs go
            // back to the map, so that they never cost a fresh page. Pass 2 searches everywhere.
            if pass == 1 {
                guard header.pointee.quickRunCount > 0 else { continue }
                flushQuickRuns()
            }
            let residentOnly = pass < 2
            // Flushing frees units, which may release held pages and unmap emptied sections.
            let count = header.pointee.directoryCount
            let bounds = residentOnly ? header.pointee.directoryResidentLargest : header.pointee.directoryLargest
            var index = 0
            while index < count {
                if Int(bounds[index]) >= units {
                    let section = self.section(at: index)
                    if let unit = section.firstFreeRun(units: units, alignmentUnits: alignmentUnits, residentOnly: residentOnly) {
                        return (section, unit, take(section, unit: unit, units: units, startsRun: true, use: use))
                    }
                    if alignmentUnits == 1 {
                        bounds[index] = UInt16(truncatingIfNeeded: section.computeLargestFreeRun(residentOnly: residentOnly))
                    }
                }
                index &+= 1
            }
        }
        guard let section = addSection(),
              let unit = section.firstFreeRun(units: units, alignmentUnits: alignmentUnits) else { return nil }
        return (section, unit, take(section, unit: unit, units: units, startsRun: true, use: use))
    }

    /// Marks units [unit, unit + units) allocated and counts the released pages that the run's use
    /// writes now. Returns the pages of the run that were released before (their bytes read as
    /// zero), for zeroed allocations.
    @discardableResult
    func take(_ section: Section, unit: Int, units: Int, startsRun: Bool, use: RunUse) -> UInt64 {
        let end = unit &+ units
        let firstPage = Geometry.page(ofUnit: unit)
        let lastPage = Geometry.page(ofUnit: end &- 1)
        header.pointee.dirtyFreePages &-= section.countDirtyFreePages(first: firstPage, last: lastPage)
        section.setBits(Section.freeUnitsOffset, from: unit, to: end, false)
        if startsRun {
            section.setBit(Section.runStartsOffset, unit, true)
            if use == .slab { section.setBit(Section.slabStartsOffset, unit, true) }
        }
        section.freeUnitCount -= units
        // The units are allocated before any release runs, so a release cannot touch them.
        let written: UInt64 = switch use {
        case .slab: Section.pageMask(first: firstPage, last: firstPage)
        case .slabGrowth: 0
        case .object: Section.pageMask(first: firstPage, last: lastPage)
        }
        let released = section.releasedPages
        if released & written != 0 {
            admitWritten(pages: (released & written).nonzeroBitCount)
            section.releasedPages = section.releasedPages & ~written
            pagesBecameResident(section, released & written)
        }
        return released & Section.pageMask(first: firstPage, last: lastPage)
    }

    /// Marks units [unit, unit + units) free.
    func free(_ section: Section, unit: Int, units: Int, endsRun: Bool) {
        let end = unit &+ units
        section.setBits(Section.freeUnitsOffset, from: unit, to: end, true)
        if endsRun {
            section.setBit(Section.runStartsOffset, unit, false)
            section.setBit(Section.slabStartsOffset, unit, false)
        }
        section.freeUnitCount += units
        header.pointee.dirtyFreePages &+= section.countDirtyFreePages(first: Geometry.page(ofUnit: unit),
                                                                      last: Geometry.page(ofUnit: end &- 1))
        raiseFreeRunBounds(section, for: section.freeRun(around: unit))
        releaseHeldPagesIfOverLimit()
    }

    // MARK: Quick runs

    /// The quick-run lists' heads; the list for runs of n units is at n − QuickRuns.lengths.lowerBound.
    var quickRuns: UnsafeMutablePointer<UnsafeMutableRawPointer?> {
        (raw + HeapLayout.quickRunsOffset).assumingMemoryBound(to: UnsafeMutableRawPointer?.self)
    }

    /// A freed medium run of `units` units, taken off its quick list: no map is searched or written.
    @inline(__always)
    func takeQuickRun(units: Int) -> UnsafeMutableRawPointer? {
        let list = units &- QuickRuns.lengths.lowerBound
        guard UInt(bitPattern: list) < UInt(QuickRuns.lengths.count), let run = quickRuns[list] else { return nil }
        quickRuns[list] = run.load(as: UnsafeMutableRawPointer?.self)
        header.pointee.quickRunCount &-= 1
        header.pointee.quickRunUnits &-= units
        return run
    }

    /// Keeps a freed medium run for the next object of its length, while quick runs hold at most
    /// 1/2^liveShift (1/256) of the live bytes; false when the run must be freed to the map.
    @inline(__always)
    func keepQuickRun(_ run: UnsafeMutableRawPointer, units: Int) -> Bool {
        let list = units &- QuickRuns.lengths.lowerBound
        guard UInt(bitPattern: list) < UInt(QuickRuns.lengths.count),
              (header.pointee.quickRunUnits &+ units) &<< Geometry.unitShift <= header.pointee.liveRequestedBytes &>> QuickRuns.liveShift
        else { return false }
        run.storeBytes(of: quickRuns[list], as: UnsafeMutableRawPointer?.self)
        quickRuns[list] = run
        header.pointee.quickRunCount &+= 1
        header.pointee.quickRunUnits &+= units
        return true
    }

    /// Frees every quick run to its section's map.
    func flushQuickRuns() {
        for units in QuickRuns.lengths {
            while let run = takeQuickRun(units: units) {
                free(Section(containing: run), unit: Section.unit(of: run), units: units, endsRun: true)
            }
        }
    }

    // MARK: Page release

    /// Empty pages held before they go back to the kernel: at least 16, or half the live pages.
    /// Past that, every held page goes at once, so the number of madvise calls grows only with how
    /// much memory is freed. Held pages add at most a sliver to a new peak
    /// (`releaseHeldPagesForPeak`), so this limit trades the resident size between peaks (after a
    /// program shrinks) against page faults when it grows again, not the peak itself. Page faults
    /// are expensive (several microseconds each on a virtual machine), which is why it is generous.
    static let minimumHeldPages = 16
    static let heldPagesShift = 1

    var heldPageLimit: Int {
        max(Heap.minimumHeldPages, (header.pointee.liveRequestedBytes &>> Geometry.pageShift) &>> Heap.heldPagesShift)
    }

    @inline(__always)
    func releaseHeldPagesIfOverLimit() {
        if header.pointee.dirtyFreePages > heldPageLimit {
            header.pointee.limitReleases += 1
            releaseHeldPages()
        }
    }

    /// Keeps the footprint at its peak when `pages` more are about to be written: returns held
    /// pages to the kernel, at least that many and a batch of `peakReleaseBatch` when there are
    /// that many, so that a heap that grows a page at a time does not call madvise for each page.
    /// The tails of cached huge mappings go first (they stay cached: reusing one faults in only
    /// what was released, and only a huge object can reuse them), then empty pages of the newest
    /// sections (allocation prefers the oldest sections, so those are the least likely to be
    /// reused). That order re-faults fewer pages later: 2685 → 2654 faults on gcc-hello, 3786 →
    /// 3651 on systemui, same peaks.
    func releaseHeldPagesForPeak(pages: Int) {
        header.pointee.peakReleases += 1
        let target = header.pointee.residentPages - max(pages, peakReleaseBatch)
        releaseCachedHugePages(header.pointee.residentPages - target)
        var index = header.pointee.directoryCount - 1
        while index >= 0 && header.pointee.residentPages > target && header.pointee.dirtyFreePages > 0 {
            let section = self.section(at: index)
            let dirty = section.dirtyFreePages()
            if dirty != 0 {
                releaseStretches(section, dirty)
                header.pointee.dirtyFreePages -= dirty.nonzeroBitCount
            }
            index -= 1
        }
    }

    var peakReleaseBatch: Int { 32 }

    /// madvise(MADV_DONTNEED) over `pages` of `section`, one call per contiguous stretch.
    private func releaseStretches(_ section: Section, _ pages: UInt64) {
        var remaining = pages
        while remaining != 0 {
            let first = remaining.trailingZeroBitCount
            let length = (~(remaining &>> UInt64(first))).trailingZeroBitCount
            let stretch = Section.pageMask(first: first, last: first + length - 1)
            release(section.base + (first << Geometry.pageShift), pages: length)
            section.releasedPages |= stretch
            remaining &= ~stretch
        }
    }

    /// Returns every held page to the kernel: cached huge mappings and sections with nothing in
    /// them are unmapped (except one that holds the heap header), the free pages
    /// of the other sections are dropped with MADV_DONTNEED (one call per contiguous stretch), and
    /// so are the carved pages of each class's empty slab, which is reset to uncarved.
    func releaseHeldPages() {
        flushQuickRuns()
        flushHugeCache()
        unmapEmptySections()
        for index in 0..<header.pointee.directoryCount {
            let section = self.section(at: index)
            releaseStretches(section, section.dirtyFreePages())
        }
        header.pointee.dirtyFreePages = 0
        for sizeClass in 0..<SizeClass.count {
            if let head = classLists[sizeClass], head.pointee.live == 0, !head.isInTail { resetEmptySlab(head) }
        }
    }

    /// Unmaps every section but the first whose units are all free, keeping the directory in
    /// creation order.
    private func unmapEmptySections() {
        let count = header.pointee.directoryCount
        var kept = 0
        for index in 0..<count {
            let section = self.section(at: index)
            if section.freeUnitCount == Geometry.maximumRunUnits && section != headerSection {
                header.pointee.residentPages -= (~section.releasedPages).nonzeroBitCount
                unmap(section.base, Geometry.sectionSize)
                header.pointee.sectionMappedBytes -= Geometry.sectionSize
                continue
            }
            if kept != index {
                header.pointee.directoryBases[kept] = section.base
                header.pointee.directoryLargest[kept] = header.pointee.directoryLargest[index]
                header.pointee.directoryResidentLargest[kept] = header.pointee.directoryResidentLargest[index]
                section.directoryIndex = kept
            }
            kept += 1
        }
        header.pointee.directoryCount = kept
    }

    /// Uncarves an empty slab and releases its carved pages past the header's page that lie wholly
    /// inside its run.
    private func resetEmptySlab(_ slab: UnsafeMutablePointer<SlabHeader>) {
        let start = slab.start
        let carvedEnd = UInt(bitPattern: slab.pointee.bump)
        let headerPageEnd = SlabHeader.pageEnd(after: start + 1)
        slab.pointee.freeList = nil
        slab.pointee.bump = slab.firstObject
        slab.pointee.limit = min(slab.capacityEnd, headerPageEnd)
        let pageShift = UInt(Geometry.pageShift)
        let firstPage = UInt(bitPattern: headerPageEnd) >> pageShift
        // Only pages wholly inside the run: the last one may hold the next run's start.
        let runEnd = UInt(bitPattern: start) + UInt(slab.pointee.units) << UInt(Geometry.unitShift)
        let endPage = min(runEnd >> pageShift, (carvedEnd + UInt(Geometry.pageSize - 1)) >> pageShift)
        guard endPage > firstPage else { return }
        let pages = Int(endPage - firstPage)
        release(headerPageEnd, pages: pages)
        let section = Section(containing: start)
        let sectionPage = Int(firstPage - (UInt(bitPattern: section.base) >> pageShift))
        section.releasedPages |= Section.pageMask(first: sectionPage, last: sectionPage + pages - 1)
    }

    private func release(_ address: UnsafeMutableRawPointer, pages: Int) {
        madvise(address, pages << Geometry.pageShift, MADV_DONTNEED)
        header.pointee.madviseCalls += 1
        header.pointee.pagesReleased += pages
        header.pointee.residentPages -= pages
    }

    private func unmap(_ address: UnsafeMutableRawPointer, _ length: Int) {
        munmap(address, length)
        header.pointee.munmapCalls += 1
    }

    // MARK: Huge objects

    /// A mapping of its own, in whole pages: a cached one when one fits (and the block need not be
    /// zero), else a new one, over-mapped and trimmed when the alignment exceeds a page.
    func allocateHuge(byteCount: Int, alignment: Int, zeroed: Bool) -> UnsafeMutableRawPointer? {
        let length = Geometry.roundUpToPage(max(byteCount, 1))
        if !zeroed && alignment <= Geometry.pageSize,
           let cached = takeCachedHuge(length: length) ?? growCachedHuge(to: length) {
            recordHuge(length)
            return cached
        }
        admitWritten(pages: length >> Geometry.pageShift)
        header.pointee.mmapCalls += 1
        guard let block = alignment <= Geometry.pageSize
                ? Kernel.map(length) : Kernel.mapTrimmed(length, alignment: alignment, munmapCalls: &header.pointee.munmapCalls)
        else {
            header.pointee.residentPages -= length >> Geometry.pageShift
            return nil
        }
        recordHuge(length)
        return block
    }

    private func recordHuge(_ length: Int) {
        header.pointee.hugeObjectCount += 1
        header.pointee.hugeMappedBytes += length
    }

    /// Frees a huge object's mapping into the cache, or unmaps it when it is too large to keep.
    func deallocateHuge(_ block: UnsafeMutableRawPointer, byteCount: Int) {
        let length = Geometry.roundUpToPage(max(byteCount, 1))
        header.pointee.hugeObjectCount -= 1
        header.pointee.hugeMappedBytes -= length
        if length <= HugeCache.maximumBytes {
            cacheHuge(block, length: length)
        } else {
            unmapHuge(block, length)
        }
    }

    /// Resizes a huge block's mapping: shrinking unmaps its tail; growing is one mremap, which
    /// extends the mapping in place when the pages behind it are free and otherwise, with
    /// `mayMove`, moves its page-table entries — nothing is copied and no page is resident twice
    /// (allocate-copy-free held old and new at once: on sqlite3's doubling buffers that was the
    /// peak). A moved block is page-aligned only, so the caller passes `mayMove` only for blocks
    /// that need no more. nil when it cannot grow; the block is then untouched.
    func resizeHuge(_ block: UnsafeMutableRawPointer, from oldByteCount: Int, to newByteCount: Int,
                    mayMove: Bool) -> UnsafeMutableRawPointer? {
        let oldLength = Geometry.roundUpToPage(max(oldByteCount, 1))
        let newLength = Geometry.roundUpToPage(max(newByteCount, 1))
        var resized = block
        if newLength < oldLength {
            unmapHuge(block + newLength, oldLength - newLength)
        } else if newLength > oldLength {
            header.pointee.mremapCalls += 1
            guard let grown = ab_mremap(block, oldLength, newLength, mayMove ? 1 : 0) else { return nil }
            admitWritten(pages: (newLength - oldLength) >> Geometry.pageShift)
            resized = grown
        }
        header.pointee.hugeMappedBytes += newLength - oldLength
        return resized
    }

    private func unmapHuge(_ address: UnsafeMutableRawPointer, _ length: Int) {
        unmap(address, length)
        header.pointee.residentPages -= length >> Geometry.pageShift
    }

    // MARK: The huge cache
    //
    // A program that frees a huge block and allocates another of about the same size (a buffer
    // per file, per frame) would otherwise pay a munmap, an mmap and a page fault per page each
    // time. So freed huge mappings wait in a small cache. They are held pages like empty pages in
    // sections: they go whenever keeping them would make a new peak, and the cache stays within
    // max(2 MiB, the held-page limit).

    private var hugeCache: UnsafeMutablePointer<HugeCache.Entry> {
        (raw + HeapLayout.hugeCacheOffset).assumingMemoryBound(to: HugeCache.Entry.self)
    }

    /// The smallest cached mapping at least `length` long and at most a quarter longer, trimmed to
    /// `length`; the part of it that was released is counted as written again.
    private func takeCachedHuge(length: Int) -> UnsafeMutableRawPointer? {
        let count = header.pointee.hugeCacheCount
        var best = -1
        for index in 0..<count where hugeCache[index].length >= length && hugeCache[index].length - length <= length / 4 {
            if best < 0 || hugeCache[index].length < hugeCache[best].length { best = index }
        }
        guard best >= 0 else { return nil }
        let entry = removeCachedHuge(at: best)
        if entry.length > length { unmap(entry.base + length, entry.length - length) }
        admitWritten(pages: length >> Geometry.pageShift)
        return entry.base
    }

    /// The cached mapping with the most resident pages among those shorter than `length`, grown
    /// to `length` with mremap: its resident pages are reused instead of faulting in fresh ones
    /// (the kernel moves the page tables if it must move the mapping). Nil when none is cached or
    /// mremap fails (the mapping then stays cached).
    private func growCachedHuge(to length: Int) -> UnsafeMutableRawPointer? {
        let count = header.pointee.hugeCacheCount
        var best = -1
        for index in 0..<count where hugeCache[index].length < length && hugeCache[index].residentLength > 0 {
            if best < 0 || hugeCache[index].residentLength > hugeCache[best].residentLength { best = index }
        }
        guard best >= 0 else { return nil }
        let entry = hugeCache[best]
        header.pointee.mremapCalls += 1
        guard let grown = ab_mremap(entry.base, entry.length, length, 1) else { return nil }
        removeCachedHuge(at: best)
        admitWritten(pages: length >> Geometry.pageShift)
        return grown
    }

    private func cacheHuge(_ block: UnsafeMutableRawPointer, length: Int) {
        let budget = max(HugeCache.minimumBudgetPages, heldPageLimit) << Geometry.pageShift
        while header.pointee.hugeCacheCount > 0
            && (header.pointee.hugeCacheCount == HugeCache.capacity || header.pointee.hugeCachedBytes + length > budget) {
            evictOldestHuge()
        }
        guard length <= budget else {
            unmapHuge(block, length)
            return
        }
        (hugeCache + header.pointee.hugeCacheCount).initialize(to: HugeCache.Entry(base: block, length: length, residentLength: length))
        header.pointee.hugeCacheCount += 1
        header.pointee.hugeCachedBytes += length
        header.pointee.hugeCachedResidentBytes += length
    }

    private func evictOldestHuge() {
        let oldest = removeCachedHuge(at: 0)
        unmap(oldest.base, oldest.length)
    }

    /// Takes entry `index` out of the cache, keeping the rest oldest first. Its resident pages stop
    /// counting, so a caller that keeps the mapping counts what it will write (`admitWritten`).
    @discardableResult
    private func removeCachedHuge(at index: Int) -> HugeCache.Entry {
        let entry = hugeCache[index]
        let count = header.pointee.hugeCacheCount
        (hugeCache + index).update(from: hugeCache + index + 1, count: count - index - 1)
        header.pointee.hugeCacheCount = count - 1
        header.pointee.hugeCachedBytes -= entry.length
        header.pointee.hugeCachedResidentBytes -= entry.residentLength
        header.pointee.residentPages -= entry.residentLength >> Geometry.pageShift
        return entry
    }

    /// Releases up to `pages` resident pages of cached mappings, from the tail of the oldest first,
    /// keeping the mappings for reuse.
    private func releaseCachedHugePages(_ pages: Int) {
        var remaining = pages
        var index = 0
        while remaining > 0 && index < header.pointee.hugeCacheCount {
            let residentPages = hugeCache[index].residentLength >> Geometry.pageShift
            let dropped = min(remaining, residentPages)
            if dropped > 0 {
                let kept = (residentPages - dropped) << Geometry.pageShift
                release(hugeCache[index].base + kept, pages: dropped)
                hugeCache[index].residentLength = kept
                header.pointee.hugeCachedResidentBytes -= dropped << Geometry.pageShift
                remaining -= dropped
            }
            index += 1
        }
    }

    func flushHugeCache() {
        while header.pointee.hugeCacheCount > 0 { evictOldestHuge() }
    }
}
