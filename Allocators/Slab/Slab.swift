// Slab: a size-class slab allocator whose purpose is to touch and map as few pages as the live
// bytes need, while staying fast. Single-threaded: it has no locks and no thread caches.
//
// MAP OF STRUCTURES
//
//   bss tail: the bytes from the executable's `_end` to the end of its page, resident before the
//   program's first malloc (4032 bytes in the replay child). The first allocator in the process
//   to ask gets it (`ab_claim_bss_tail`); the slab puts its heap header there and cuts the rest
//   into tail slabs, so a small program's first objects cost no page at all.
//
//     ┌─────────────┬───────────┬───────────┬─────┬──────────────────┐
//     │ heap header │ tail slab │ tail slab │  …  │ untaken          │ page end
//     └─────────────┴───────────┴───────────┴─────┴──────────────────┘
//      header + HeapLayout.totalBytes        tailBump ^
//     A tail slab is a slab (below) whose length counts 16-byte granules; a 256-bit map in the
//     heap header marks where each starts. It is never released nor grown; when it is empty, a
//     class that has no slab may re-format it.
//
//   section: 256 KiB, aligned to 256 KiB, mapped with mmap (1 to 8 at a time, formatted only when
//   a run needs one) downward from the middle of the stack's 512 GiB (Geometry.sectionRegionTop),
//   so the layout of the rest of the process never moves them. Its 2048 units of 128 bytes hold runs: slabs and medium
//   objects.
//
//     ┌───────────┬──────────────────────────────────────────────────────────────────┐
//     │ units 0…6 │ units 7…2047: [slab][slab][medium object][ free ][slab] …          │
//     │ header    │ (no bss tail: the first section's units 7…15 hold the heap header) │
//     └───────────┴──────────────────────────────────────────────────────────────────┘
//     header: freeUnits, runStarts, slabStarts (2048-bit maps), releasedPages (64 bits, one per
//     page), freeUnitCount, directoryIndex.
//
//   slab: a run of 2…128 units (256 B…16 KiB) carving objects of one size class.
//
//     ┌────────────┬────────┬────────┬─────┬────────────────────────────┬──────┐
//     │ SlabHeader │ object │ object │  …  │ uncarved: never written    │ tail │
//     │  48 bytes  │        │        │     │                            │      │
//     └────────────┴────────┴────────┴─────┴────────────────────────────┴──────┘
//      firstObject ^                  bump ^          limit ^   capacityEnd ^  run end ^
//     freeList: freed objects, linked through their first word.
//     limit = min(capacityEnd, end of the page holding bump − 1): carving past it is the slow
//     path, which counts the page it reaches as written.
//
//   heap header: live requested bytes, resident and peak-resident page counts, empty resident
//   pages, the section directory (per section, oldest first: base, a bound on its longest free
//   run and one on its longest free run in resident pages; inline for 8 sections, then a
//   mapping of its own), per class the head of a doubly linked list of slabs with room and the
//   number of slabs, the huge cache (up to 4 freed huge mappings), the quick-run lists, the tail
//   slab map, and counters.
//
//   medium object (513 bytes up to 2041 units): a run of its own, packed first-fit beside slabs.
//   Freed runs of up to 16 units (2 KiB) wait on a quick list per length (linked through their
//   first word) for the next object of that length.
//
//   huge object (more than 2041 units, or alignment of 256 KiB or more): a mapping of its own.
//   No metadata: deallocation is sized, so its length is known. realloc grows it in place when
//   the pages behind it are free, else moves it with mremap (page-aligned blocks only), so a
//   doubling buffer is never copied nor resident twice. A new huge object takes a cached mapping
//   that fits, else grows the cached one with the most resident pages (mremap), reusing them.
//
// Where a small program's memory goes: the heap header and the first slab of each class (about
// 256 bytes, at least one object) go to the bss tail, so five allocations of five sizes touch no
// page; without a tail, the first section's first page holds its header, the heap header and
// those slabs, so they touch one.
//
// LOOKUPS, all O(1)
//   size → class:    bit arithmetic (SizeClass.index); no table.
//   object → slab:   o = address − heap header; if o < tailBytes (unsigned): the tail slab at
//                    16 · (highest tail-map bit ≤ o / 16); else section = address & ~0x3FFFF;
//                    unit = (address >> 7) & 0x7FF; slab = section + 128 · (highest slabStarts
//                    bit ≤ unit).
//   medium object:   its address is its run's first unit; its byte count gives the run's length.
//
// INVARIANTS, as equations. Tier 1: `assert` on the paths that touch them (debug builds). Tier 2:
// `validate()` checks all of them over the whole heap; tests call it, and a build with
// `-Xswiftc -DSLAB_VALIDATE_EVERY_OPERATION` runs it after every operation.
//   slab:     live + |freeList| = carved = (bump − firstObject) / objectSize
//             carved + uncarved = capacity = (capacityEnd − firstObject) / objectSize
//             capacityEnd ≤ run end;  objectSize = SizeClass.byteCount(ofClass: sizeClass)
//             limit = min(capacityEnd, pageEnd(bump − 1));  carved pages ∩ released = ∅
//             each freeList entry e: firstObject ≤ e < bump ∧ (e − firstObject) mod objectSize = 0
//   class c:  isListed ⇔ slab is in list c;  has room ⇒ isListed;  listed ∧ full ⇒ head of list c
//             live = 0 ∧ in a section ⇒ head of list c   (so at most one empty section slab per class)
//             classSlabCounts[c] = |slabs of class c|;  Σ_c classSlabCounts[c] = slabCount
//   tail:     header + HeapLayout.totalBytes + Σ tail slab lengths = tailBump ≤ header + tailBytes;
//             tail slabs are contiguous, in address order, limit = capacityEnd
//   quick:    each entry is an allocated medium run (a run start, not a slab);
//             Σ entries = quickRunCount;  Σ lengths = quickRunUnits;
//             quickRunUnits · 128 ≤ live requested bytes / 256 when an entry is added
//   section:  freeUnits ∩ runStarts = ∅;  slabStarts ⊆ runStarts;  header units ∉ freeUnits
//             freeUnitCount = |freeUnits|;  directoryBases[directoryIndex] = base
//             directoryLargest[i] ≥ longest free stretch;  directoryResidentLargest[i] ≥ longest
//             free stretch within resident pages
//             released(p) ⇔ page p was not written since it was mapped or released, so
//             released(p) ⇒ page p holds no medium object, no slab header, no carved object
//   heap:     dirtyFreePages = Σ_sections |{p : page p all free ∧ ¬released(p)}|
//             residentPages = Σ_sections |{p : ¬released(p)}| + (huge + cached-resident huge
//             + directory mapping bytes) / 4096 ≤ peakResidentPages
//
// POLICIES
//   Classes: 8, 16…512 by 16 (waste ≤ 15 B); larger objects are runs of 128-byte units (waste
//   < 128 B) up to 255 KiB, then huge mappings. Classes above 512 bytes cost more pages than they
//   save (each keeps a partly carved page); docs/slab.md has the measurements.
//   Tail slabs: while the bss tail has untaken room, every new slab that fits goes there; when
//   it has none, a class without slabs re-formats the shortest empty tail slab that holds one of
//   its objects.
//   Slab sizing: a class's first slab holds one object (at least 256 bytes); each further slab
//   doubles, at most three times (a tail slab does not count); a full slab whose units behind it are free grows in place to up to
//   twice its length (≤ 16 KiB). So busy classes get large slabs and idle ones share pages.
//   Slab choice: allocation takes from the head of the class's list; a slab that stops being full
//   goes to the head (it is the fullest slab with room), so emptier slabs drain.
//   Medium runs: a quick list's run first (no map search); else first fit. The search goes a
//   map word at a time for runs of up to 64 units. Quick runs go back to the map before a search
//   would write a fresh page, and with every release of held pages.
//   Run placement: resident memory first (the oldest section with a long enough free run in
//   pages already written), then the oldest section with a long enough free run, lowest unit
//   first; then a new section.
//   Page return: a slab that empties is released (its units return to its section) unless it
//   heads its class's list and the class has another slab. Empty resident pages and freed huge
//   mappings (the huge cache) are "held" for reuse, and go back to the kernel (MADV_DONTNEED,
//   munmap for whole sections and huge mappings) (a) all at once when the empty pages exceed
//   max(16, live pages / 2), and (b) in batches of 32 pages whenever writing a new page would
//   raise the footprint above its previous peak while more than 1/64 of the live pages are
//   held (cached huge mappings' pages first, then the newest sections'): held memory adds at
//   most that sliver to any new peak. The price is time: pages given back for a peak and reused
//   later fault again (gcc-hello: 2651 faults for a peak of 2307 pages; without (b), 2533
//   faults for a peak of 2532).
//
// FAST PATHS (small objects: ≤ 512 bytes, alignment ≤ 16)
//   allocate:   class by bit math; the class's head slab; pop its free list, or carve the next
//               object when it ends within `limit`: about 4 loads, 3 stores and 3 well-predicted
//               branches.
//   deallocate: a subtraction and a compare rule out the tail; a mask, one map word and a
//               leading-zero count find the slab; push on its free list and decrement live: about
//               5 loads and 3 stores, and one branch to the slow path when the slab was full or
//               has become empty.
//   medium, with a quick run of the length: a pop (allocate) or a push (deallocate), about 3
//               loads and 3 stores beside the unit arithmetic.

import AllocBenchCore
import CAllocBench

/// A size-class slab allocator that keeps the pages it touches and maps close to the live bytes:
/// its header and first slabs in the bss tail, sub-page first slabs shared by many classes, lazily
/// carved slabs, runs of 128-byte units for medium objects, and empty pages handed back to the
/// kernel with hysteresis. See the map at the
/// top of Slab.swift.
///
/// Single-threaded. All state sits behind one pointer, so copies of a `Slab` share one heap; the
/// heap is never torn down (there is no deinit for a struct).
public struct Slab: Allocator {
    public static let name = "slab"
    public static let summary = "Size-class slab allocator for the fewest pages touched: header and first slabs in the bss tail, lazy carving, 128-byte runs, held pages never raise the peak."

    var heap: Heap?

    /// A slab that starts in the executable's bss tail when no other allocator in the process
    /// has claimed it.
    public init() {
        self.init(tail: Heap.claimBssTail())
    }

    /// A slab whose heap header and first slabs go to `tail`, resident memory it may use (nil: the
    /// header goes to the first mapped section).
    init(tail: UnsafeMutableRawBufferPointer?) {
        heap = Heap.create(tail: tail)
    }

    // MARK: Kinds of blocks

    @inline(__always)
    static func isSmall(byteCount: Int, alignment: Int) -> Bool {
        byteCount <= SizeClass.largestByteCount && alignment <= 16
    }

    /// A medium block's run: its length and alignment in units, or nil for a huge block.
    @inline(__always)
    static func mediumRun(byteCount: Int, alignment: Int) -> (units: Int, alignmentUnits: Int)? {
        let units = Geometry.unitsCovering(byteCount)
        let alignmentUnits = max(1, alignment >> Geometry.unitShift)
        // The header's units come first, so an alignment of n units leaves starts at n, 2n, … past it.
        let longest = alignmentUnits <= Geometry.sectionHeaderUnits ? Geometry.maximumRunUnits
            : Geometry.unitsPerSection - alignmentUnits
        return units <= longest ? (units, alignmentUnits) : nil
    }

    // MARK: Allocator

    @inline(__always)
    public mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        defer { afterOperation() }
        if Slab.isSmall(byteCount: byteCount, alignment: alignment), let heap,
           let slab = heap.classLists[SizeClass.index(ofByteCount: byteCount)] {
            if slab.pointee.freeList != nil { return heap.allocate(from: slab, byteCount: byteCount) }
            if slab.pointee.bump + Int(slab.pointee.objectSize) <= slab.pointee.limit {
                return heap.carveWithinLimit(slab, byteCount: byteCount)
            }
        }
        return allocateSlow(byteCount: byteCount, alignment: alignment, zeroed: false)
    }

    public mutating func allocateZeroed(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if Slab.isSmall(byteCount: byteCount, alignment: alignment) {
            guard let block = allocate(byteCount: byteCount, alignment: alignment) else { return nil }
            block.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount)
            return block
        }
        defer { afterOperation() }
        return allocateSlow(byteCount: byteCount, alignment: alignment, zeroed: true)
    }

    @inline(__always)
    public mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {
        guard let heap else { return }
        if Slab.isSmall(byteCount: byteCount, alignment: alignment) {
            let slab = heap.slab(containing: block)
            assert(slab.hasMagic
                   && Int(slab.pointee.sizeClass) == SizeClass.index(ofByteCount: byteCount),
                   "deallocate: \(block) is not a live \(byteCount)-byte object")
            assert(block >= UnsafeMutableRawPointer(slab) + SlabHeader.byteCount && block < slab.pointee.bump
                   && (block - (UnsafeMutableRawPointer(slab) + SlabHeader.byteCount)) % Int(slab.pointee.objectSize) == 0
                   && slab.pointee.live > 0, "deallocate: \(block) is not an object of its slab")
            block.storeBytes(of: slab.pointee.freeList, as: UnsafeMutableRawPointer?.self)
            slab.pointee.freeList = block
            slab.pointee.live &-= 1
            heap.header.pointee.liveRequestedBytes &-= byteCount
            if slab.pointee.live == 0 || !slab.pointee.isListed { heap.slabNeedsAttention(slab) }
        } else if let run = Slab.mediumRun(byteCount: byteCount, alignment: alignment) {
            let section = Section(containing: block)
            let unit = Section.unit(of: block)
            assert(section.bit(Section.runStartsOffset, unit) && !section.bit(Section.slabStartsOffset, unit),
                   "deallocate: \(block) is not a medium object")
            heap.header.pointee.liveRequestedBytes -= byteCount
            if run.alignmentUnits > 1 || !heap.keepQuickRun(block, units: run.units) {
                heap.free(section, unit: unit, units: run.units, endsRun: true)
            }
        } else {
            heap.header.pointee.liveRequestedBytes -= byteCount
            heap.deallocateHuge(block, byteCount: byteCount)
        }
        afterOperation()
    }

    public mutating func reallocate(
        _ block: UnsafeMutableRawPointer, from oldByteCount: Int, to newByteCount: Int, alignment: Int
    ) -> UnsafeMutableRawPointer? {
        if let heap, let resized = resizeWithoutCopy(heap, block, from: oldByteCount, to: newByteCount, alignment: alignment) {
            heap.header.pointee.liveRequestedBytes += newByteCount - oldByteCount
            afterOperation()
            return resized
        }
        guard let moved = allocate(byteCount: newByteCount, alignment: alignment) else { return nil }
        moved.copyMemory(from: block, byteCount: min(oldByteCount, newByteCount))
        deallocate(block, byteCount: oldByteCount, alignment: alignment)
        return moved
    }

    /// The block's address after resizing it without copying, or nil: a small block whose new
    /// size has the same class; a medium block that fits its run after trimming it or taking the
    /// free units behind it; a huge block whose mapping shrinks, grows in place, or moves with
    /// mremap (`Heap.resizeHuge`).
    private func resizeWithoutCopy(_ heap: Heap, _ block: UnsafeMutableRawPointer, from oldByteCount: Int, to newByteCount: Int,
                                   alignment: Int) -> UnsafeMutableRawPointer? {
        let oldSmall = Slab.isSmall(byteCount: oldByteCount, alignment: alignment)
        let newSmall = Slab.isSmall(byteCount: newByteCount, alignment: alignment)
        if oldSmall || newSmall {
            let sameClass = oldSmall && newSmall
                && SizeClass.index(ofByteCount: oldByteCount) == SizeClass.index(ofByteCount: newByteCount)
            return sameClass ? block : nil
        }
        let oldRun = Slab.mediumRun(byteCount: oldByteCount, alignment: alignment)
        let newRun = Slab.mediumRun(byteCount: newByteCount, alignment: alignment)
        if let oldRun, let newRun {
            let section = Section(containing: block)
            let unit = Section.unit(of: block)
            if newRun.units < oldRun.units {
                let tail = oldRun.units - newRun.units
                heap.free(section, unit: unit + newRun.units, units: tail, endsRun: false)
                return block
            }
            let oldEnd = unit + oldRun.units
            let newEnd = unit + newRun.units
            guard newEnd <= Geometry.unitsPerSection,
                  section.allBitsSet(Section.freeUnitsOffset, from: oldEnd, to: newEnd) else { return nil }
            if newEnd > oldEnd { heap.take(section, unit: oldEnd, units: newEnd - oldEnd, startsRun: false, use: .object) }
            return block
        }
        if oldRun == nil && newRun == nil {
            return heap.resizeHuge(block, from: oldByteCount, to: newByteCount, mayMove: alignment <= Geometry.pageSize)
        }
        return nil
    }

    /// Everything but a small object from a slab with room: a refill, a medium run or a huge mapping.
    private mutating func allocateSlow(byteCount: Int, alignment: Int, zeroed: Bool) -> UnsafeMutableRawPointer? {
        if heap == nil { heap = Heap.create(tail: nil) }
        guard let heap else { return nil }
        if Slab.isSmall(byteCount: byteCount, alignment: alignment) {
            return heap.allocateSmallSlow(byteCount: byteCount, sizeClass: SizeClass.index(ofByteCount: byteCount))
        }
        let block: UnsafeMutableRawPointer
        if let run = Slab.mediumRun(byteCount: byteCount, alignment: alignment) {
            if run.alignmentUnits == 1, let quick = heap.takeQuickRun(units: run.units) {
                block = quick
                if zeroed { block.initializeMemory(as: UInt8.self, repeating: 0, count: byteCount) }
            } else {
                guard let taken = heap.allocateRun(units: run.units, alignmentUnits: run.alignmentUnits, use: .object) else { return nil }
                block = taken.section.address(ofUnit: taken.unit)
                if zeroed { Slab.zero(block, byteCount: byteCount, exceptPages: taken.knownZeroPages) }
            }
        } else {
            // A fresh mapping reads as zero; cached ones are not handed out for zeroed blocks.
            guard let mapped = heap.allocateHuge(byteCount: byteCount, alignment: alignment, zeroed: zeroed) else { return nil }
            block = mapped
        }
        heap.header.pointee.liveRequestedBytes += byteCount
        return block
    }

    /// Zeroes a medium block except where its section's pages were released (already zero).
    private static func zero(_ block: UnsafeMutableRawPointer, byteCount: Int, exceptPages knownZero: UInt64) {
        let section = Section(containing: block)
        var start = block
        let end = block + byteCount
        while start < end {
            let pageEnd = min(end, UnsafeMutableRawPointer(bitPattern: (UInt(bitPattern: start) | UInt(Geometry.pageSize - 1)) + 1)!)
            let page = (start - section.base) >> Geometry.pageShift
            if knownZero & (1 << page) == 0 { start.initializeMemory(as: UInt8.self, repeating: 0, count: pageEnd - start) }
            start = pageEnd
        }
    }

    @inline(__always)
    private func afterOperation() {
        #if SLAB_VALIDATE_EVERY_OPERATION
        if let heap {
            let violations = heap.validate()
            precondition(violations.isEmpty, "slab heap invariants: " + violations.joined(separator: "; "))
        }
        #endif
    }

    // MARK: Self-report

    /// What the bss tail of this executable holds for a slab (without claiming it).
    public static func buildNote() -> String? {
        let end = ab_end_of_bss()
        let pageEnd = (end + UInt(Geometry.pageSize) - 1) & ~UInt(Geometry.pageSize - 1)
        let tail = UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: end), count: Int(pageEnd - end))
        guard let (headerAddress, tailBytes) = Heap.headerPlacement(in: tail) else {
            return "bss tail: \(pageEnd - end) bytes, too short for the heap header (\(HeapLayout.totalBytes) bytes)"
        }
        let skipped = Int(bitPattern: UInt(bitPattern: headerAddress) - end)
        return "bss tail: \(pageEnd - end) bytes (\(HeapLayout.totalBytes) for the heap header, "
            + "\(tailBytes - HeapLayout.totalBytes) for tail slabs\(skipped > 0 ? ", \(skipped) to align" : ""))"
    }

    /// What the heap holds, from its counters and a walk over every section and slab.
    public func statistics() -> [AllocatorStatistic] {
        guard let heap else { return [] }
        let census = heap.census()
        let header = heap.header.pointee
        let pageSize = Geometry.pageSize
        return [
            AllocatorStatistic("live_objects_count", census.liveSlabObjects + census.mediumObjects + header.hugeObjectCount),
            AllocatorStatistic("live_requested_bytes", header.liveRequestedBytes),
            AllocatorStatistic("rounding_waste_bytes",
                               census.liveSlabObjectBytes + census.mediumUnits << Geometry.unitShift
                               + header.hugeMappedBytes - header.liveRequestedBytes),
            AllocatorStatistic("slabs_count", header.slabCount),
            AllocatorStatistic("tail_slabs_count", header.tailSlabCount),
            AllocatorStatistic("bss_tail_bytes", header.tailBytes),
            AllocatorStatistic("slab_classes_in_use_count", census.classesInUse),
            AllocatorStatistic("slabs_in_busiest_class_count", census.slabsInBusiestClass),
            AllocatorStatistic("slab_free_carved_bytes", census.freeCarvedBytes),
            AllocatorStatistic("medium_objects_count", census.mediumObjects),
            AllocatorStatistic("quick_runs_count", header.quickRunCount),
            AllocatorStatistic("quick_run_bytes", header.quickRunUnits << Geometry.unitShift),
            AllocatorStatistic("huge_objects_count", header.hugeObjectCount),
            AllocatorStatistic("huge_cached_bytes", header.hugeCachedBytes),
            AllocatorStatistic("huge_cached_resident_bytes", header.hugeCachedResidentBytes),
            AllocatorStatistic("sections_count", header.directoryCount),
            AllocatorStatistic("metadata_bytes", census.metadataBytes),
            AllocatorStatistic("empty_resident_pages", header.dirtyFreePages + census.emptySlabCarvedPages),
            AllocatorStatistic("resident_bytes", header.residentPages * pageSize),
            AllocatorStatistic("peak_resident_bytes", header.peakResidentPages * pageSize),
            AllocatorStatistic("mapped_bytes", header.sectionMappedBytes + header.hugeMappedBytes + header.hugeCachedBytes
                               + header.directoryMappedBytes),
            AllocatorStatistic("mmap_calls_count", header.mmapCalls),
            AllocatorStatistic("munmap_calls_count", header.munmapCalls),
            AllocatorStatistic("madvise_calls_count", header.madviseCalls),
            AllocatorStatistic("mremap_calls_count", header.mremapCalls),
            AllocatorStatistic("released_pages_total_count", header.pagesReleased),
            AllocatorStatistic("releases_over_limit_count", header.limitReleases),
            AllocatorStatistic("releases_at_peak_count", header.peakReleases),
        ]
    }
}
