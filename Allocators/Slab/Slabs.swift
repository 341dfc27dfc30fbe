// Slabs: runs that carve objects of one size class. The map of the allocator's structures and its
// invariants is at the top of Slab.swift.

/// The header at the start of every slab; objects follow it at `byteCount`.
struct SlabHeader {
    /// Freed objects, linked through their first word.
    var freeList: UnsafeMutableRawPointer?
    /// The next object never handed out: carving moves it up one object at a time, so no page of
    /// the slab is written before an object in it is handed out.
    var bump: UnsafeMutableRawPointer
    /// Carving stays on the fast path while bump + objectSize ≤ limit, where
    /// limit = min(capacityEnd, end of the page that holds bump − 1). Passing it means the slab is
    /// full or carving reaches a page not written yet, which the slow path counts first.
    var limit: UnsafeMutableRawPointer
    /// The class's list of slabs with room.
    var next: UnsafeMutablePointer<SlabHeader>?
    var previous: UnsafeMutablePointer<SlabHeader>?
    var live: UInt16
    var objectSize: UInt16
    var sizeClass: UInt8
    /// The slab's length: in 128-byte units in a section, in 16-byte granules in the bss tail.
    var units: UInt8
    var isListed: Bool
    /// Where the slab lives, which is also its magic number: `inSection` or `inTail`.
    var magic: UInt8

    /// Objects start here: a multiple of 16 so that every class keeps 16-byte alignment.
    static let byteCount = 48
    static let inSection: UInt8 = 0xA5
    /// A slab in the bss tail: never released, never grown, always resident; when empty it may
    /// be re-formatted for another class (`Heap.takeTailSlab`).
    static let inTail: UInt8 = 0x5A

    /// The end of the page that holds the byte before `address`.
    @inline(__always)
    static func pageEnd(after address: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        UnsafeMutableRawPointer(bitPattern: ((UInt(bitPattern: address) &- 1) | UInt(Geometry.pageSize &- 1)) &+ 1).unsafelyUnwrapped
    }
}

extension UnsafeMutablePointer where Pointee == SlabHeader {
    var start: UnsafeMutableRawPointer { UnsafeMutableRawPointer(self) }
    var firstObject: UnsafeMutableRawPointer { start + SlabHeader.byteCount }
    var isInTail: Bool { pointee.magic == SlabHeader.inTail }
    var hasMagic: Bool { pointee.magic == SlabHeader.inSection || pointee.magic == SlabHeader.inTail }
    var byteLength: Int { Int(pointee.units) << (isInTail ? HeapLayout.tailGranuleShift : Geometry.unitShift) }
    var capacity: Int { (byteLength - SlabHeader.byteCount) / Int(pointee.objectSize) }
    /// One past the last object that fits.
    var capacityEnd: UnsafeMutableRawPointer { firstObject + capacity * Int(pointee.objectSize) }
    var isFull: Bool { pointee.freeList == nil && pointee.bump >= capacityEnd }
}

extension Heap {
    /// The largest slab: 16 KiB. Larger slabs would make freeing a whole slab rarer.
    static let maximumSlabUnits = (16 * 1024) >> Geometry.unitShift
    /// The smallest slab: room for the header and at least 13 objects of 16 bytes.
    static let minimumSlabUnits = 256 >> Geometry.unitShift
    /// A new slab is at most 8 times the smallest for its class: slabs grow further in place.
    static let creationDoublings = 3

    /// A class's next slab: big enough for one object (and no smaller than `minimumSlabUnits`),
    /// doubling with each slab the class already has, up to `creationDoublings` times (a class
    /// with one object gets a sub-page run that shares its page with other classes' slabs; a busy
    /// class's slabs then grow in place, see `extend`); within the last quarter below that size,
    /// the unit count that leaves the smallest tail per unit.
    func slabUnits(forClass sizeClass: Int, objectSize: Int) -> Int {
        let minimum = max(Heap.minimumSlabUnits, Geometry.unitsCovering(SlabHeader.byteCount + objectSize))
        // A slab in the tail does not count: the class's first section slab starts small too.
        let sectionSlabs = Int(classSlabCounts[sizeClass]) - tailSlabCount(ofClass: sizeClass)
        let grown = minimum << min(sectionSlabs, Heap.creationDoublings)
        let target = max(minimum, min(grown, Heap.maximumSlabUnits))
        func tailBytes(_ units: Int) -> Int { ((units << Geometry.unitShift) - SlabHeader.byteCount) % objectSize }
        var best = target
        var units = target - 1
        while units >= max(minimum, target - target / 4) {
            if tailBytes(units) * best < tailBytes(best) * units { best = units }
            units -= 1
        }
        return best
    }

    /// A new slab of class `sizeClass`, at the head of the class's list: in the bss tail while it
    /// has room (`takeTailSlab`), else in a section.
    func createSlab(sizeClass: Int) -> UnsafeMutablePointer<SlabHeader>? {
        let objectSize = SizeClass.byteCount(ofClass: sizeClass)
        if let slab = takeTailSlab(sizeClass: sizeClass, objectSize: objectSize, reformatting: classSlabCounts[sizeClass] == 0) {
            return slab
        }
        let units = slabUnits(forClass: sizeClass, objectSize: objectSize)
        guard let run = allocateRun(units: units, alignmentUnits: 1, use: .slab) else { return nil }
        let start = run.section.address(ofUnit: run.unit)
        return formatSlab(at: start, length: UInt8(units), byteLength: units << Geometry.unitShift,
                          where: SlabHeader.inSection, sizeClass: sizeClass, objectSize: objectSize)
    }

    /// Writes an empty slab's header at `start` and links it at the head of its class's list.
    private func formatSlab(at start: UnsafeMutableRawPointer, length: UInt8, byteLength: Int, where magic: UInt8,
                            sizeClass: Int, objectSize: Int) -> UnsafeMutablePointer<SlabHeader> {
        let firstObject = start + SlabHeader.byteCount
        let capacityEnd = firstObject + (byteLength - SlabHeader.byteCount) / objectSize * objectSize
        // A tail slab is resident throughout; a section slab's carving counts each page it reaches.
        let limit = magic == SlabHeader.inTail ? capacityEnd : min(capacityEnd, SlabHeader.pageEnd(after: start + 1))
        let slab = start.bindMemory(to: SlabHeader.self, capacity: 1)
        slab.initialize(to: SlabHeader(
            freeList: nil, bump: firstObject, limit: limit,
            next: nil, previous: nil, live: 0, objectSize: UInt16(objectSize), sizeClass: UInt8(sizeClass),
            units: length, isListed: false, magic: magic))
        classSlabCounts[sizeClass] += 1
        header.pointee.slabCount += 1
        link(slab)
        return slab
    }

    // MARK: Tail slabs

    func tailSlabCount(ofClass sizeClass: Int) -> Int {
        guard header.pointee.tailSlabCount > 0 else { return 0 }
        var count = 0
        forEachTailSlab { slab in if Int(slab.pointee.sizeClass) == sizeClass { count += 1 } }
        return count
    }

    var tailSlabStarts: UnsafeMutablePointer<UInt64> {
        (raw + HeapLayout.tailSlabStartsOffset).assumingMemoryBound(to: UInt64.self)
    }

    /// The slab that holds `block`, in the bss tail or in a section. The caller guarantees that the
    /// block is a small object.
    @inline(__always)
    func slab(containing block: UnsafeRawPointer) -> UnsafeMutablePointer<SlabHeader> {
        let offset = UInt(bitPattern: block) &- UInt(bitPattern: raw)
        if offset < UInt(bitPattern: header.pointee.tailBytes) { return tailSlab(atOffset: Int(bitPattern: offset)) }
        return Section.slab(containing: block)
    }

    /// The nearest tail slab start at or below `offset` bytes past the header.
    func tailSlab(atOffset offset: Int) -> UnsafeMutablePointer<SlabHeader> {
        let granule = offset &>> HeapLayout.tailGranuleShift
        var word = granule &>> 6
        var bits = tailSlabStarts[word] & (UInt64.max &>> UInt64(63 &- (granule & 63)))
        while bits == 0 {
            word &-= 1
            bits = tailSlabStarts[word]
        }
        let start = (word &<< 6) &+ 63 &- bits.leadingZeroBitCount
        return (raw + (start &<< HeapLayout.tailGranuleShift)).assumingMemoryBound(to: SlabHeader.self)
    }

    /// Calls `body` with every tail slab, in address order.
    func forEachTailSlab(_ body: (UnsafeMutablePointer<SlabHeader>) -> Void) {
        for word in 0..<HeapLayout.tailMapWords {
            var bits = tailSlabStarts[word]
            while bits != 0 {
                let granule = (word << 6) + bits.trailingZeroBitCount
                bits &= bits - 1
                body((raw + (granule << HeapLayout.tailGranuleShift)).assumingMemoryBound(to: SlabHeader.self))
            }
        }
    }

    /// A slab in the bss tail, which costs no page: about as long as a section's smallest slab, cut
    /// from the tail's untaken bytes while they hold one object; else, for a class that has no
    /// slab (`reformatting`), an empty tail slab of another class — the shortest that holds one
    /// object — re-formatted. Nil when neither exists.
    func takeTailSlab(sizeClass: Int, objectSize: Int, reformatting: Bool) -> UnsafeMutablePointer<SlabHeader>? {
        guard header.pointee.tailBytes > 0, let bump = header.pointee.tailBump else { return nil }
        let needed = (SlabHeader.byteCount + objectSize + 15) & ~15
        let smallest = Heap.minimumSlabUnits << Geometry.unitShift
        let wanted = (SlabHeader.byteCount + max(1, (smallest - SlabHeader.byteCount) / objectSize) * objectSize + 15) & ~15
        let room = raw + header.pointee.tailBytes - bump
        if room >= needed {
            let length = min(wanted, room)
            let granule = (bump - raw) >> HeapLayout.tailGranuleShift
            tailSlabStarts[granule >> 6] |= 1 << UInt64(granule & 63)
            header.pointee.tailBump = bump + length
            header.pointee.tailSlabCount += 1
            return formatSlab(at: bump, length: UInt8(length >> HeapLayout.tailGranuleShift), byteLength: length,
                              where: SlabHeader.inTail, sizeClass: sizeClass, objectSize: objectSize)
        }
        guard reformatting else { return nil }
        var chosen: UnsafeMutablePointer<SlabHeader>?
        forEachTailSlab { slab in
            if slab.pointee.live == 0, slab.byteLength >= needed, chosen.map({ slab.byteLength < $0.byteLength }) ?? true {
                chosen = slab
            }
        }
        guard let chosen else { return nil }
        if chosen.pointee.isListed { unlink(chosen) }
        classSlabCounts[Int(chosen.pointee.sizeClass)] -= 1
        header.pointee.slabCount -= 1
        return formatSlab(at: chosen.start, length: chosen.pointee.units, byteLength: chosen.byteLength,
                          where: SlabHeader.inTail, sizeClass: sizeClass, objectSize: objectSize)
    }

    /// Puts a slab that has room at the head of its class's list: the next objects of the class
    /// come from it. A slab that just left the full state has one free object and is the fullest
    /// slab with room, so allocating from it first lets emptier slabs drain. An empty slab at the
    /// head gives way: it is released, so a class holds at most one empty slab. So does a full
    /// head (full heads leave the list lazily, on the next allocation), so that only the head can
    /// be full.
    func link(_ slab: UnsafeMutablePointer<SlabHeader>) {
        let sizeClass = Int(slab.pointee.sizeClass)
        if let head = classLists[sizeClass] {
            if head.pointee.live == 0 {
                // An empty tail slab stays listed behind the new head.
                if !head.isInTail {
                    unlink(head)
                    releaseSlab(head)
                }
            } else if head.isFull {
                unlink(head)
            }
        }
        let head = classLists[sizeClass]
        slab.pointee.next = head
        slab.pointee.previous = nil
        head?.pointee.previous = slab
        classLists[sizeClass] = slab
        slab.pointee.isListed = true
    }

    func unlink(_ slab: UnsafeMutablePointer<SlabHeader>) {
        let next = slab.pointee.next
        let previous = slab.pointee.previous
        if let previous { previous.pointee.next = next } else { classLists[Int(slab.pointee.sizeClass)] = next }
        next?.pointee.previous = previous
        slab.pointee.next = nil
        slab.pointee.previous = nil
        slab.pointee.isListed = false
    }

    /// Grows a full slab into the free units behind its run: up to twice its length (within
    /// `maximumSlabUnits`), and only if at least one more object fits. A class's slabs thus start
    /// small and grow with demand where there is room, instead of reserving room up front.
    func extend(_ slab: UnsafeMutablePointer<SlabHeader>) -> Bool {
        guard !slab.isInTail else { return false }
        let section = Section(containing: slab.start)
        let units = Int(slab.pointee.units)
        let runEnd = Section.unit(of: slab.start) + units
        let wanted = min(Heap.maximumSlabUnits, units * 2) - units
        guard wanted > 0, runEnd < Geometry.unitsPerSection, section.bit(Section.freeUnitsOffset, runEnd) else { return false }
        let available = min(wanted, section.next(Section.freeUnitsOffset, false, from: runEnd) - runEnd)
        let objectSize = Int(slab.pointee.objectSize)
        let capacity = (((units + available) << Geometry.unitShift) - SlabHeader.byteCount) / objectSize
        guard capacity > slab.capacity else { return false }
        // Carving marks the new units' pages as it reaches them.
        take(section, unit: runEnd, units: available, startsRun: false, use: .slabGrowth)
        slab.pointee.units = UInt8(units + available)
        slab.pointee.limit = min(slab.capacityEnd, SlabHeader.pageEnd(after: slab.pointee.bump))
        return true
    }

    /// Gives an unlisted, empty slab's units back to its section.
    func releaseSlab(_ slab: UnsafeMutablePointer<SlabHeader>) {
        assert(slab.pointee.live == 0 && !slab.pointee.isListed && !slab.isInTail, "releasing a slab that is live, listed or in the tail")
        let sizeClass = Int(slab.pointee.sizeClass)
        classSlabCounts[sizeClass] -= 1
        header.pointee.slabCount -= 1
        slab.pointee.magic = 0
        free(Section(containing: slab.start), unit: Section.unit(of: slab.start), units: Int(slab.pointee.units), endsRun: true)
    }

    /// The slow half of `allocate` for a small object: the head of the class's list has no free
    /// object and cannot carve on the fast path (or there is no head). Carving may just have
    /// reached a new page; a full head leaves the list, the last one first tries to grow in place;
    /// with no slab left, a new one is made.
    func allocateSmallSlow(byteCount: Int, sizeClass: Int) -> UnsafeMutableRawPointer? {
        while let head = classLists[sizeClass] {
            if head.pointee.freeList != nil { return allocate(from: head, byteCount: byteCount) }
            if let object = carve(head, byteCount: byteCount) { return object }
            if head.pointee.next == nil && extend(head), let object = carve(head, byteCount: byteCount) { return object }
            unlink(head)
        }
        guard let slab = createSlab(sizeClass: sizeClass) else { return nil }
        return carve(slab, byteCount: byteCount)
    }

    /// Pops the slab's free list, which is not empty.
    @inline(__always)
    func allocate(from slab: UnsafeMutablePointer<SlabHeader>, byteCount: Int) -> UnsafeMutableRawPointer {
        let object = slab.pointee.freeList.unsafelyUnwrapped
        let next = object.load(as: UnsafeMutableRawPointer?.self)
        assert(next == nil || Section(containing: next.unsafelyUnwrapped) == Section(containing: object), "a free list leaves its slab")
        slab.pointee.freeList = next
        slab.pointee.live &+= 1
        header.pointee.liveRequestedBytes &+= byteCount
        return object
    }

    /// Carves the slab's next object, which ends within `limit`.
    @inline(__always)
    func carveWithinLimit(_ slab: UnsafeMutablePointer<SlabHeader>, byteCount: Int) -> UnsafeMutableRawPointer {
        let object = slab.pointee.bump
        slab.pointee.bump = object + Int(slab.pointee.objectSize)
        slab.pointee.live &+= 1
        header.pointee.liveRequestedBytes &+= byteCount
        return object
    }

    /// Carves the slab's next object, first counting the pages it reaches that were not written
    /// yet; nil when the slab is full.
    func carve(_ slab: UnsafeMutablePointer<SlabHeader>, byteCount: Int) -> UnsafeMutableRawPointer? {
        let object = slab.pointee.bump
        let next = object + Int(slab.pointee.objectSize)
        if next > slab.pointee.limit {
            let capacityEnd = slab.capacityEnd
            guard next <= capacityEnd else { return nil }
            // A release for the peak gives back only empty pages and cached huge mappings, never
            // this slab's pages.
            let section = Section(containing: object)
            let firstPage = (slab.pointee.limit - section.base) >> Geometry.pageShift
            let lastPage = (next - 1 - section.base) >> Geometry.pageShift
            let newlyWritten = section.releasedPages & Section.pageMask(first: firstPage, last: lastPage)
            if newlyWritten != 0 {
                admitWritten(pages: newlyWritten.nonzeroBitCount)
                section.releasedPages &= ~newlyWritten
                pagesBecameResident(section, newlyWritten)
            }
            slab.pointee.limit = min(capacityEnd, SlabHeader.pageEnd(after: next))
        }
        return carveWithinLimit(slab, byteCount: byteCount)
    }

    /// The slow half of `deallocate` for a small object: the slab was full (it joins its class's
    /// list) or is now empty. An empty slab is released unless it heads its class's list and the
    /// class is busy (has another slab): that one stays, against create-release churn, with its
    /// carved pages returned at the next page release.
    func slabNeedsAttention(_ slab: UnsafeMutablePointer<SlabHeader>) {
        let sizeClass = Int(slab.pointee.sizeClass)
        if slab.pointee.live != 0 {
            if !slab.pointee.isListed { link(slab) }
            return
        }
        let head = classLists[sizeClass]
        let keeps = slab.isInTail || classSlabCounts[sizeClass] >= 2 && (head == slab || head == nil)
        if keeps {
            if !slab.pointee.isListed { link(slab) }
        } else {
            if slab.pointee.isListed { unlink(slab) }
            releaseSlab(slab)
        }
    }
}
