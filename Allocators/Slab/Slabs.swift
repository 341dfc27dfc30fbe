// Slabs: runs that carve objects of one size class. The map of the allocator's structures and its
// invariants is at the top of Slab.swift.

/// The header at the start of every slab; objects follow it at `byteCount`.
struct SlabHeader {
    /// Freed objects, linked through their first word.
    var freeList: UnsafeMutableRawPointer?
    /// The next object never handed out: carving moves it up one object at a time, so no page of
    /// the slab is written before an object in it is handed out.
    var bump: UnsafeMutableRawPointer
    /// One past the last object that fits.
    var end: UnsafeMutableRawPointer
    /// The class's list of slabs with room.
    var next: UnsafeMutablePointer<SlabHeader>?
    var previous: UnsafeMutablePointer<SlabHeader>?
    var live: UInt16
    var objectSize: UInt16
    var sizeClass: UInt8
    var units: UInt8
    var isListed: Bool
    var magic: UInt8

    /// Objects start here: a multiple of 16 so that every class keeps 16-byte alignment.
    static let byteCount = 48
    static let magicValue: UInt8 = 0xA5
}

extension Heap {
    /// The largest slab: 64 units (16 KiB). Larger slabs would make freeing a whole slab rarer.
    static let maximumSlabUnits = 64

    /// A class's next slab: big enough for one object, doubling with each slab the class already
    /// has (a busy class gets big slabs, a class with one object gets a sub-page run that shares
    /// its page with other classes' slabs), capped at `maximumSlabUnits`; within the last quarter
    /// below that size, the unit count that leaves the smallest tail per unit.
    func slabUnits(forClass sizeClass: Int, objectSize: Int) -> Int {
        let minimum = Geometry.unitsCovering(SlabHeader.byteCount + objectSize)
        let grown = minimum << min(Int(classSlabCounts[sizeClass]), 8)
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

    /// A new slab of class `sizeClass`, at the head of the class's list.
    func createSlab(sizeClass: Int) -> UnsafeMutablePointer<SlabHeader>? {
        let objectSize = SizeClass.byteCount(ofClass: sizeClass)
        let units = slabUnits(forClass: sizeClass, objectSize: objectSize)
        guard let run = allocateRun(units: units, alignmentUnits: 1, use: .slab) else { return nil }
        let start = run.section.address(ofUnit: run.unit)
        let firstObject = start + SlabHeader.byteCount
        let capacity = ((units << Geometry.unitShift) - SlabHeader.byteCount) / objectSize
        let slab = start.bindMemory(to: SlabHeader.self, capacity: 1)
        slab.initialize(to: SlabHeader(
            freeList: nil, bump: firstObject, end: firstObject + capacity * objectSize, next: nil, previous: nil,
            live: 0, objectSize: UInt16(objectSize), sizeClass: UInt8(sizeClass), units: UInt8(units),
            isListed: false, magic: SlabHeader.magicValue))
        classSlabCounts[sizeClass] += 1
        header.pointee.slabCount += 1
        link(slab)
        return slab
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
                unlink(head)
                releaseSlab(head)
            } else if head.pointee.freeList == nil && head.pointee.bump >= head.pointee.end {
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

    /// Gives an unlisted, empty slab's units back to its section.
    func releaseSlab(_ slab: UnsafeMutablePointer<SlabHeader>) {
        assert(slab.pointee.live == 0 && !slab.pointee.isListed, "releasing a slab that is live or listed")
        let start = UnsafeMutableRawPointer(slab)
        let sizeClass = Int(slab.pointee.sizeClass)
        let units = Int(slab.pointee.units)
        let writtenUnits = Geometry.unitsCovering(slab.pointee.bump - start)
        classSlabCounts[sizeClass] -= 1
        header.pointee.slabCount -= 1
        slab.pointee.magic = 0
        free(Section(containing: start), unit: Section.unit(of: start), units: units, writtenUnits: writtenUnits, endsRun: true)
    }

    /// The slow half of `allocate` for a small object: the head of the class's list is exhausted
    /// (or there is none). Full heads leave the list until one with room comes up; otherwise a
    /// new slab is made.
    func allocateSmallSlow(byteCount: Int, sizeClass: Int) -> UnsafeMutableRawPointer? {
        while let head = classLists[sizeClass] {
            if head.pointee.freeList != nil || head.pointee.bump < head.pointee.end {
                return allocate(from: head, byteCount: byteCount)
            }
            unlink(head)
        }
        guard let slab = createSlab(sizeClass: sizeClass) else { return nil }
        return allocate(from: slab, byteCount: byteCount)
    }

    @inline(__always)
    func allocate(from slab: UnsafeMutablePointer<SlabHeader>, byteCount: Int) -> UnsafeMutableRawPointer {
        let object: UnsafeMutableRawPointer
        if let free = slab.pointee.freeList {
            slab.pointee.freeList = free.load(as: UnsafeMutableRawPointer?.self)
            object = free
        } else {
            object = slab.pointee.bump
            slab.pointee.bump = object + Int(slab.pointee.objectSize)
        }
        slab.pointee.live &+= 1
        header.pointee.liveRequestedBytes &+= byteCount
        return object
    }

    /// The slow half of `deallocate` for a small object: the slab was full (it joins its class's
    /// list) or is now empty (it is released unless it heads its class's list, which keeps one
    /// empty slab per class against create-release churn).
    func slabNeedsAttention(_ slab: UnsafeMutablePointer<SlabHeader>) {
        if !slab.pointee.isListed {
            if slab.pointee.live == 0 && classLists[Int(slab.pointee.sizeClass)] != nil {
                releaseSlab(slab)
            } else {
                link(slab)
            }
        } else if slab.pointee.live == 0 && slab.pointee.previous != nil {
            unlink(slab)
            releaseSlab(slab)
        }
    }
}
