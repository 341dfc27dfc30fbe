// Whole-heap walks: the census behind `statistics()` and the tier-2 check of every invariant listed
// at the top of Slab.swift. Both may allocate; neither runs during a measured replay unless the
// build asks for SLAB_VALIDATE_EVERY_OPERATION.

/// Totals gathered by walking every section and slab.
struct HeapCensus {
    var liveSlabObjects = 0
    /// Σ live · objectSize over slabs.
    var liveSlabObjectBytes = 0
    /// Carved objects that are free (on free lists).
    var freeCarvedBytes = 0
    var classesInUse = 0
    var slabsInBusiestClass = 0
    var mediumObjects = 0
    var mediumUnits = 0
    /// Section headers, the heap header, slab headers and the directory's own mapping.
    var metadataBytes = 0
    /// Carved pages of empty slabs beyond their header's page.
    var emptySlabCarvedPages = 0
}

extension Heap {
    /// Calls `body` with every slab of every section, in address order within a section.
    func forEachSlab(_ body: (Section, _ unit: Int, UnsafeMutablePointer<SlabHeader>) -> Void) {
        for index in 0..<header.pointee.directoryCount {
            let section = self.section(at: index)
            var unit = section.next(Section.slabStartsOffset, true, from: 0)
            while unit < Geometry.unitsPerSection {
                body(section, unit, section.address(ofUnit: unit).assumingMemoryBound(to: SlabHeader.self))
                unit = section.next(Section.slabStartsOffset, true, from: unit + 1)
            }
        }
    }

    /// The pages of its section that a slab's header and carving have written.
    static func carvedPages(_ section: Section, _ slab: UnsafeMutablePointer<SlabHeader>) -> UInt64 {
        let firstPage = (slab.start - section.base) >> Geometry.pageShift
        let lastPage = (slab.pointee.bump - 1 - section.base) >> Geometry.pageShift
        return Section.pageMask(first: firstPage, last: lastPage)
    }

    func census() -> HeapCensus {
        var census = HeapCensus()
        var slabsPerClass = [Int](repeating: 0, count: SizeClass.count)
        var slabUnits = 0
        func count(_ slab: UnsafeMutablePointer<SlabHeader>) {
            let size = Int(slab.pointee.objectSize)
            let carved = (slab.pointee.bump - slab.firstObject) / size
            census.liveSlabObjects += Int(slab.pointee.live)
            census.liveSlabObjectBytes += Int(slab.pointee.live) * size
            census.freeCarvedBytes += (carved - Int(slab.pointee.live)) * size
            slabsPerClass[Int(slab.pointee.sizeClass)] += 1
        }
        forEachSlab { section, _, slab in
            count(slab)
            slabUnits += Int(slab.pointee.units)
            if slab.pointee.live == 0 { census.emptySlabCarvedPages += Heap.carvedPages(section, slab).nonzeroBitCount - 1 }
        }
        forEachTailSlab(count)
        census.classesInUse = slabsPerClass.filter { $0 > 0 }.count
        census.slabsInBusiestClass = slabsPerClass.max() ?? 0
        var allocatedUnits = 0
        var runs = 0
        for index in 0..<header.pointee.directoryCount {
            let section = self.section(at: index)
            allocatedUnits += Geometry.maximumRunUnits - section.freeUnitCount
            runs += section.popCount(Section.runStartsOffset)
        }
        let headerUnitsInSection = headerSection == nil ? 0 : HeapLayout.units
        census.mediumObjects = runs - (header.pointee.slabCount - header.pointee.tailSlabCount) - (headerSection == nil ? 0 : 1)
            - header.pointee.quickRunCount
        census.mediumUnits = allocatedUnits - slabUnits - headerUnitsInSection - header.pointee.quickRunUnits
        census.metadataBytes = header.pointee.directoryCount * Geometry.sectionHeaderUnits * Geometry.unitSize
            + (headerSection == nil ? HeapLayout.totalBytes : headerUnitsInSection * Geometry.unitSize)
            + header.pointee.slabCount * SlabHeader.byteCount + header.pointee.directoryMappedBytes
        return census
    }

    /// Every violated invariant, described; empty when the heap is consistent.
    func validate() -> [String] {
        var violations: [String] = []
        var dirtyFreePages = 0
        for index in 0..<header.pointee.directoryCount {
            validateSection(index, &violations)
            dirtyFreePages += section(at: index).dirtyFreePages().nonzeroBitCount
        }
        if dirtyFreePages != header.pointee.dirtyFreePages {
            violations.append("heap: dirtyFreePages is \(header.pointee.dirtyFreePages), sections hold \(dirtyFreePages)")
        }
        var residentPages = (header.pointee.hugeMappedBytes + header.pointee.hugeCachedResidentBytes + header.pointee.directoryMappedBytes)
            >> Geometry.pageShift
        for index in 0..<header.pointee.directoryCount { residentPages += (~section(at: index).releasedPages).nonzeroBitCount }
        if residentPages != header.pointee.residentPages || residentPages > header.pointee.peakResidentPages {
            violations.append("heap: residentPages is \(header.pointee.residentPages) (peak \(header.pointee.peakResidentPages)), the maps say \(residentPages)")
        }

        var slabsPerClass = [Int](repeating: 0, count: SizeClass.count)
        var listedPerClass = [Int](repeating: 0, count: SizeClass.count)
        var slabCount = 0
        /// Checks a slab (`section` and `unit` nil for a tail slab) and counts it for its class.
        func check(_ section: Section?, _ unit: Int?, _ slab: UnsafeMutablePointer<SlabHeader>) {
            slabCount += 1
            let sizeClass = Int(slab.pointee.sizeClass)
            if sizeClass < SizeClass.count {
                slabsPerClass[sizeClass] += 1
                if slab.pointee.isListed { listedPerClass[sizeClass] += 1 }
            }
            validateSlab(section, unit, slab, &violations)
        }
        forEachSlab(check)
        forEachTailSlab { check(nil, nil, $0) }
        validateTail(&violations)
        validateQuickRuns(&violations)
        if slabCount != header.pointee.slabCount {
            violations.append("heap: slabCount is \(header.pointee.slabCount), sections and the tail hold \(slabCount) slabs")
        }
        for sizeClass in 0..<SizeClass.count {
            if Int(classSlabCounts[sizeClass]) != slabsPerClass[sizeClass] {
                violations.append("class \(sizeClass): classSlabCounts is \(classSlabCounts[sizeClass]), sections hold \(slabsPerClass[sizeClass])")
            }
            validateClassList(sizeClass, listed: listedPerClass[sizeClass], &violations)
        }
        return violations
    }

    private func validateSection(_ index: Int, _ violations: inout [String]) {
        let section = self.section(at: index)
        let name = "section \(index) at \(section.base)"
        if !section.hasMagic || section.directoryIndex != index {
            violations.append("\(name): bad magic or directory index \(section.directoryIndex)")
            return
        }
        for unit in 0..<Geometry.sectionHeaderUnits where section.bit(Section.freeUnitsOffset, unit) {
            violations.append("\(name): header unit \(unit) is free")
        }
        for word in 0..<Geometry.mapWords {
            let free = section.word(Section.freeUnitsOffset, word)
            let starts = section.word(Section.runStartsOffset, word)
            if free & starts != 0 { violations.append("\(name): a free unit starts a run (word \(word))") }
            if section.word(Section.slabStartsOffset, word) & ~starts != 0 {
                violations.append("\(name): a slab start is not a run start (word \(word))")
            }
        }
        let freeUnits = section.popCount(Section.freeUnitsOffset)
        if freeUnits != section.freeUnitCount {
            violations.append("\(name): freeUnitCount is \(section.freeUnitCount), the map has \(freeUnits)")
        }
        let largest = section.computeLargestFreeRun()
        let residentLargest = section.computeLargestFreeRun(residentOnly: true)
        if largest > Int(header.pointee.directoryLargest[index]) || residentLargest > Int(header.pointee.directoryResidentLargest[index]) {
            violations.append("\(name): longest free runs are \(largest) (\(residentLargest) resident), bounds \(header.pointee.directoryLargest[index]) (\(header.pointee.directoryResidentLargest[index]))")
        }
        if section.releasedPages & 1 != 0 { violations.append("\(name): its header page is marked released") }
        // Runs: each extends to the next run start or free unit; medium objects and slab headers
        // never lie in released pages.
        var unit = section.next(Section.runStartsOffset, true, from: 0)
        while unit < Geometry.unitsPerSection {
            let end = min(section.next(Section.runStartsOffset, true, from: unit + 1),
                          section.next(Section.freeUnitsOffset, true, from: unit + 1))
            let isSlab = section.bit(Section.slabStartsOffset, unit)
            let firstPage = Geometry.page(ofUnit: unit)
            let mustBeResident = Section.pageMask(first: firstPage, last: isSlab ? firstPage : Geometry.page(ofUnit: end - 1))
            if section.releasedPages & mustBeResident != 0 {
                violations.append("\(name): the \(isSlab ? "slab" : "run") at unit \(unit) lies in a released page")
            }
            if isSlab {
                let slab = section.address(ofUnit: unit).assumingMemoryBound(to: SlabHeader.self)
                if Int(slab.pointee.units) != end - unit {
                    violations.append("\(name): the slab at unit \(unit) claims \(slab.pointee.units) units, its run has \(end - unit)")
                }
            }
            unit = section.next(Section.runStartsOffset, true, from: unit + 1)
        }
    }

    /// Tail slabs tile the tail from the end of the heap header to `tailBump`:
    /// header + HeapLayout.totalBytes + Σ byteLength = tailBump ≤ header + tailBytes.
    private func validateTail(_ violations: inout [String]) {
        guard header.pointee.tailBytes > 0 else {
            if header.pointee.tailSlabCount != 0 { violations.append("tail: \(header.pointee.tailSlabCount) tail slabs without a tail") }
            return
        }
        var end = raw + HeapLayout.totalBytes
        var count = 0
        forEachTailSlab { slab in
            if slab.start != end { violations.append("tail: the slab at \(slab) does not start where the one before ends (\(end))") }
            if !slab.isInTail { violations.append("tail: the slab at \(slab) is not marked as a tail slab") }
            end = slab.start + slab.byteLength
            count += 1
        }
        if end != header.pointee.tailBump || end > raw + header.pointee.tailBytes || count != header.pointee.tailSlabCount {
            violations.append("tail: \(count) slabs end at \(end); tailBump \(header.pointee.tailBump.map { UInt(bitPattern: $0) } ?? 0), \(header.pointee.tailSlabCount) counted, \(header.pointee.tailBytes) bytes")
        }
    }

    /// Each quick run is an allocated run (a run start, not a slab) in one of the heap's sections,
    /// and the lists hold quickRunCount runs of quickRunUnits units in all.
    private func validateQuickRuns(_ violations: inout [String]) {
        var sections = Set<UnsafeMutableRawPointer>()
        for index in 0..<header.pointee.directoryCount { sections.insert(section(at: index).base) }
        var count = 0
        var units = 0
        for length in QuickRuns.lengths {
            var entry = quickRuns[length - QuickRuns.lengths.lowerBound]
            while let run = entry {
                count += 1
                units += length
                let section = Section(containing: run)
                let unit = Section.unit(of: run)
                if count > header.pointee.quickRunCount || !sections.contains(section.base) || run != section.address(ofUnit: unit)
                    || !section.bit(Section.runStartsOffset, unit) || section.bit(Section.slabStartsOffset, unit)
                    || section.bit(Section.freeUnitsOffset, unit) {
                    violations.append("quick runs: \(run) (list \(length)) is not an allocated medium run, or the lists hold more than \(header.pointee.quickRunCount)")
                    return
                }
                entry = run.load(as: UnsafeMutableRawPointer?.self)
            }
        }
        if count != header.pointee.quickRunCount || units != header.pointee.quickRunUnits {
            violations.append("quick runs: the lists hold \(count) runs of \(units) units; counted \(header.pointee.quickRunCount) of \(header.pointee.quickRunUnits)")
        }
    }

    /// Checks one slab; `section` and `unit` are nil for a tail slab.
    private func validateSlab(_ section: Section?, _ unit: Int?, _ slab: UnsafeMutablePointer<SlabHeader>,
                              _ violations: inout [String]) {
        let name = section.map { "slab at \(slab) (section \($0.directoryIndex), unit \(unit ?? -1))" } ?? "tail slab at \(slab)"
        let sizeClass = Int(slab.pointee.sizeClass)
        guard slab.pointee.magic == (section == nil ? SlabHeader.inTail : SlabHeader.inSection), sizeClass < SizeClass.count,
              Int(slab.pointee.objectSize) == SizeClass.byteCount(ofClass: sizeClass) else {
            violations.append("\(name): bad magic, class \(sizeClass) or object size \(slab.pointee.objectSize)")
            return
        }
        let size = Int(slab.pointee.objectSize)
        let first = slab.firstObject
        let runEnd = slab.start + slab.byteLength
        let end = slab.capacityEnd
        let bump = slab.pointee.bump
        guard end <= runEnd, bump >= first, bump <= end, (bump - first) % size == 0 else {
            violations.append("\(name): bump \(bump) outside [\(first), \(end)] or off the object grid")
            return
        }
        if let section {
            if slab.pointee.limit != min(end, SlabHeader.pageEnd(after: bump)) {
                violations.append("\(name): limit \(slab.pointee.limit) is not min(capacity end \(end), end of the page before bump \(bump))")
            }
            let carvedPages = Heap.carvedPages(section, slab)
            if section.releasedPages & carvedPages != 0 {
                violations.append("\(name): carved pages \(String(carvedPages, radix: 2)) are marked released \(String(section.releasedPages, radix: 2))")
            }
        } else if slab.pointee.limit != end {
            violations.append("\(name): limit \(slab.pointee.limit) is not the capacity end \(end)")
        }
        let carved = (bump - first) / size
        var freeCount = 0
        var entry = slab.pointee.freeList
        while let object = entry {
            if object < first || object >= bump || (object - first) % size != 0 {
                violations.append("\(name): free list entry \(object) is not a carved object")
                return
            }
            freeCount += 1
            if freeCount > carved {
                violations.append("\(name): the free list is longer than the \(carved) carved objects (a cycle or a double free)")
                return
            }
            entry = object.load(as: UnsafeMutableRawPointer?.self)
        }
        if Int(slab.pointee.live) + freeCount != carved {
            violations.append("\(name): live \(slab.pointee.live) + free \(freeCount) ≠ carved \(carved)")
        }
        let hasRoom = freeCount > 0 || bump < end
        let isHead = classLists[sizeClass] == slab
        if hasRoom && !slab.pointee.isListed { violations.append("\(name): has room but is not listed") }
        if slab.pointee.isListed && !hasRoom && !isHead { violations.append("\(name): is full, listed, and not the head") }
        if slab.pointee.live == 0 && !isHead && section != nil { violations.append("\(name): is empty and not the head of its class") }
    }

    private func validateClassList(_ sizeClass: Int, listed: Int, _ violations: inout [String]) {
        var count = 0
        var previous: UnsafeMutablePointer<SlabHeader>? = nil
        var entry = classLists[sizeClass]
        while let slab = entry {
            count += 1
            if count > listed {
                violations.append("class \(sizeClass): the list holds more slabs than the \(listed) marked listed")
                return
            }
            if !slab.pointee.isListed || Int(slab.pointee.sizeClass) != sizeClass || slab.pointee.previous != previous {
                violations.append("class \(sizeClass): \(slab) is in the list but unmarked, of another class, or mislinked")
            }
            previous = slab
            entry = slab.pointee.next
        }
        if count != listed {
            violations.append("class \(sizeClass): the list holds \(count) slabs, \(listed) are marked listed")
        }
    }
}
