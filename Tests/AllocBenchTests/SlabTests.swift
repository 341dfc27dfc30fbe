import AllocBenchCore
import AllocBenchHarness
import AllocBenchModel
import AllocBenchReplay
import Foundation
import Glibc
@testable import SlabAllocator
import XCTest

final class SlabTests: XCTestCase {
    // MARK: Size classes

    /// Every size maps to the smallest class that holds it, and every class's size maps back to
    /// that class; rounding stays within the documented bounds.
    func testEverySizeMapsToTheSmallestClassThatFitsAndBack() {
        var previousSize = 0
        for sizeClass in 0..<SizeClass.count {
            let size = SizeClass.byteCount(ofClass: sizeClass)
            XCTAssertGreaterThan(size, previousSize, "class sizes must increase (class \(sizeClass))")
            XCTAssertEqual(SizeClass.index(ofByteCount: size), sizeClass, "class \(sizeClass) (\(size) bytes) does not map back")
            XCTAssertEqual(size % (sizeClass == 0 ? 8 : 16), 0, "class \(sizeClass) breaks 16-byte alignment")
            previousSize = size
        }
        XCTAssertEqual(SizeClass.byteCount(ofClass: SizeClass.count - 1), SizeClass.largestByteCount)

        for byteCount in 0...SizeClass.largestByteCount {
            let sizeClass = SizeClass.index(ofByteCount: byteCount)
            XCTAssert((0..<SizeClass.count).contains(sizeClass), "\(byteCount) bytes → class \(sizeClass)")
            let size = SizeClass.byteCount(ofClass: sizeClass)
            XCTAssertGreaterThanOrEqual(size, byteCount, "\(byteCount) bytes → class \(sizeClass) of \(size) bytes")
            if sizeClass > 0 {
                XCTAssertLessThan(SizeClass.byteCount(ofClass: sizeClass - 1), byteCount,
                                  "\(byteCount) bytes would fit class \(sizeClass - 1)")
            }
            XCTAssertLessThanOrEqual(size - byteCount, 15, "\(byteCount) bytes waste \(size - byteCount)")
        }
    }

    // MARK: The seed program

    /// D. J. Bernstein's program: malloc(360), malloc(80), malloc(180), malloc(16), malloc(440).
    /// Without a bss tail, all five blocks and the heap's own header sit in one 4 KiB page, and it
    /// is the only page of the heap's mapping that is resident afterwards.
    func testTheSeedsFiveAllocationsShareOnePageWithTheHeapHeader() throws {
        var slab = Slab(tail: nil)
        let heap = try XCTUnwrap(slab.heap)
        XCTAssertNotNil(heap.headerSection)
        let page = UInt(bitPattern: heap.raw) >> 12
        for byteCount in [360, 80, 180, 16, 440] {
            let block = try XCTUnwrap(slab.allocate(byteCount: byteCount, alignment: 16))
            block.initializeMemory(as: UInt8.self, repeating: 0xA5, count: byteCount)
            XCTAssertEqual(UInt(bitPattern: block) >> 12, page, "malloc(\(byteCount)) left the heap header's page")
            XCTAssertEqual((UInt(bitPattern: block) + UInt(byteCount) - 1) >> 12, page, "malloc(\(byteCount)) crosses a page")
        }
        XCTAssertEqual(try residentPages(heap.section(at: 0).base, byteCount: Geometry.sectionSize), 1)
        XCTAssertEqual(statistic(slab, "resident_bytes"), 4096)
        XCTAssertEqual(heap.validate(), [])
    }

    /// With a bss tail — here a stand-in: the last 4032 bytes of a page — the heap header and the
    /// seed's five blocks all fit in it: no section is mapped, no page is written, and the tail
    /// slabs tile the tail from the header's end.
    func testTheSeedsFiveAllocationsFitInTheBssTailWithTheHeapHeader() throws {
        let page = try XCTUnwrap(UnsafeMutableRawPointer(mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)))
        defer { munmap(page, 4096) }
        let tail = UnsafeMutableRawBufferPointer(start: page + 64, count: 4032)
        var slab = Slab(tail: tail)
        let heap = try XCTUnwrap(slab.heap)
        XCTAssertNil(heap.headerSection)
        XCTAssertEqual(heap.raw, page + 64)
        var blocks: [(UnsafeMutableRawPointer, Int)] = []
        for byteCount in [360, 80, 180, 16, 440] {
            let block = try XCTUnwrap(slab.allocate(byteCount: byteCount, alignment: 16))
            block.initializeMemory(as: UInt8.self, repeating: UInt8(byteCount & 0xFF), count: byteCount)
            XCTAssertTrue(block >= page + 64 + HeapLayout.totalBytes && block + byteCount <= page + 4096,
                          "malloc(\(byteCount)) = \(block) is outside the tail's slab area")
            XCTAssertEqual(Int(bitPattern: block) % 16, 0)
            blocks.append((block, byteCount))
        }
        XCTAssertEqual(heap.header.pointee.directoryCount, 0, "no section was needed")
        XCTAssertEqual(statistic(slab, "mmap_calls_count"), 0)
        XCTAssertEqual(statistic(slab, "resident_bytes"), 0)
        XCTAssertEqual(statistic(slab, "tail_slabs_count"), 5)
        XCTAssertEqual(heap.validate(), [])
        for (block, byteCount) in blocks {
            XCTAssertTrue(heap.slab(containing: block).isInTail)
            XCTAssertEqual(block.load(fromByteOffset: byteCount - 1, as: UInt8.self), UInt8(byteCount & 0xFF))
            slab.deallocate(block, byteCount: byteCount, alignment: 16)
        }
        XCTAssertEqual(heap.validate(), [])
        XCTAssertEqual(statistic(slab, "live_objects_count"), 0)
    }

    /// When the tail has no untaken room, a class's first slab re-formats an empty tail slab of
    /// another class; a live one is never taken, and with none empty the slab goes to a section.
    func testAFullTailReformatsAnEmptyTailSlabForANewClass() throws {
        let page = try XCTUnwrap(UnsafeMutableRawPointer(mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)))
        defer { munmap(page, 4096) }
        // Room for the header and two tail slabs of 240 bytes (48 + 6 · 32, 48 + 4 · 48).
        var slab = Slab(tail: UnsafeMutableRawBufferPointer(start: page + 16, count: HeapLayout.totalBytes + 480))
        let heap = try XCTUnwrap(slab.heap)
        let small = try XCTUnwrap(slab.allocate(byteCount: 32, alignment: 16))
        let other = try XCTUnwrap(slab.allocate(byteCount: 48, alignment: 16))
        let (smallSlab, otherSlab) = (heap.slab(containing: small), heap.slab(containing: other))
        XCTAssertTrue(smallSlab.isInTail && otherSlab.isInTail)
        XCTAssertEqual([smallSlab.byteLength, otherSlab.byteLength], [240, 240])
        XCTAssertEqual(heap.header.pointee.tailBump, heap.raw + heap.header.pointee.tailBytes, "the tail is taken")

        let crowded = try XCTUnwrap(slab.allocate(byteCount: 64, alignment: 16))
        XCTAssertFalse(heap.slab(containing: crowded).isInTail, "both tail slabs are live")
        slab.deallocate(small, byteCount: 32, alignment: 16)
        XCTAssertEqual(heap.validate(), [])
        let reformatted = try XCTUnwrap(slab.allocate(byteCount: 16, alignment: 16))
        XCTAssertEqual(heap.slab(containing: reformatted), smallSlab)
        XCTAssertEqual(smallSlab.pointee.objectSize, 16)
        XCTAssertEqual(smallSlab.capacity, (240 - SlabHeader.byteCount) / 16)
        XCTAssertEqual(statistic(slab, "tail_slabs_count"), 2, "re-formatting adds no slab")
        XCTAssertEqual(heap.validate(), [])
        let next = try XCTUnwrap(slab.allocate(byteCount: 32, alignment: 16))
        XCTAssertFalse(heap.slab(containing: next).isInTail, "the 32-byte class lost its tail slab")

        for (block, byteCount) in [(other, 48), (crowded, 64), (reformatted, 16), (next, 32)] {
            slab.deallocate(block, byteCount: byteCount, alignment: 16)
        }
        XCTAssertEqual(heap.validate(), [])
        XCTAssertEqual(statistic(slab, "live_objects_count"), 0)
    }

    // MARK: Against a model

    /// Thousands of random mallocs, callocs, reallocs and frees of small, medium and huge blocks
    /// with several alignments, checked against a model of what is live: every block aligned,
    /// no two live blocks overlapping, contents kept across reallocation, zeroed blocks zero,
    /// reallocation within a class in place, and the whole heap's invariants every 250 operations.
    func testRandomOperationsAgainstAModel() throws {
        for seed: UInt64 in [1, 2, 3] {
            try runModel(seed: seed, operations: 6000)
        }
    }

    struct LiveBlock {
        var block: UnsafeMutableRawPointer
        var byteCount: Int
        var alignment: Int
        var tag: UInt8
    }

    private func runModel(seed: UInt64, operations: Int) throws {
        var slab = Slab()
        let heap = try XCTUnwrap(slab.heap)
        var random = SplitMix64(seed: seed)
        var live: [LiveBlock] = []

        func randomSize() -> Int {
            switch random.next() % 100 {
            case 0..<60: Int(random.next() % 256)
            case 60..<85: Int(random.next() % 2048) + 1
            case 85..<97: Int(random.next() % 60_000) + 1
            default: Int(random.next() % 600_000) + 1
            }
        }
        func randomAlignment() -> Int {
            random.next() % 10 == 0 ? 1 << Int(5 + random.next() % 9) : 16
        }

        for operation in 0..<operations {
            let choice = random.next() % 100
            if choice < 35 && !live.isEmpty {
                let index = Int(random.next() % UInt64(live.count))
                let victim = live[index]
                live.swapAt(index, live.count - 1)
                live.removeLast()
                XCTAssert(holdsPattern(victim), "seed \(seed) op \(operation): a \(victim.byteCount)-byte block lost its contents")
                slab.deallocate(victim.block, byteCount: victim.byteCount, alignment: victim.alignment)
            } else if choice < 55 && !live.isEmpty {
                let index = Int(random.next() % UInt64(live.count))
                var entry = live[index]
                let newByteCount = random.next() % 2 == 0 ? randomSize()
                    : max(0, entry.byteCount + Int(random.next() % 64) - 32)
                XCTAssert(holdsPattern(entry), "seed \(seed) op \(operation): a block lost its contents before realloc")
                let moved = try XCTUnwrap(slab.reallocate(entry.block, from: entry.byteCount, to: newByteCount,
                                                          alignment: entry.alignment))
                if Slab.isSmall(byteCount: entry.byteCount, alignment: entry.alignment)
                    && Slab.isSmall(byteCount: newByteCount, alignment: entry.alignment)
                    && SizeClass.index(ofByteCount: entry.byteCount) == SizeClass.index(ofByteCount: newByteCount) {
                    XCTAssertEqual(moved, entry.block, "realloc \(entry.byteCount) → \(newByteCount) within a class moved")
                }
                let kept = LiveBlock(block: moved, byteCount: min(entry.byteCount, newByteCount), alignment: entry.alignment, tag: entry.tag)
                XCTAssert(holdsPattern(kept), "seed \(seed) op \(operation): realloc \(entry.byteCount) → \(newByteCount) lost contents")
                entry.block = moved
                entry.byteCount = newByteCount
                fill(entry)
                live[index] = entry
                checkAlignment(entry, "realloc")
            } else {
                let byteCount = randomSize()
                let alignment = randomAlignment()
                let zeroed = random.next() % 4 == 0
                let block = try XCTUnwrap(zeroed ? slab.allocateZeroed(byteCount: byteCount, alignment: alignment)
                                                 : slab.allocate(byteCount: byteCount, alignment: alignment))
                if zeroed {
                    XCTAssertFalse(UnsafeRawBufferPointer(start: block, count: byteCount).contains { $0 != 0 },
                                   "seed \(seed) op \(operation): calloc(\(byteCount)) is not zero")
                }
                let entry = LiveBlock(block: block, byteCount: byteCount, alignment: alignment, tag: UInt8(truncatingIfNeeded: operation))
                checkAlignment(entry, "allocate")
                fill(entry)
                live.append(entry)
            }
            if operation % 250 == 0 {
                XCTAssertEqual(heap.validate(), [], "seed \(seed) op \(operation)")
                checkNoOverlap(live)
            }
        }
        checkNoOverlap(live)
        for entry in live {
            XCTAssert(holdsPattern(entry), "seed \(seed): a \(entry.byteCount)-byte block lost its contents")
            slab.deallocate(entry.block, byteCount: entry.byteCount, alignment: entry.alignment)
        }
        XCTAssertEqual(heap.validate(), [], "seed \(seed) after freeing everything")
        XCTAssertEqual(statistic(slab, "live_objects_count"), 0)
        XCTAssertEqual(statistic(slab, "live_requested_bytes"), 0)
        XCTAssertEqual(statistic(slab, "huge_objects_count"), 0)
    }

    private func fill(_ entry: LiveBlock) {
        let bytes = entry.block.assumingMemoryBound(to: UInt8.self)
        for index in 0..<entry.byteCount { bytes[index] = UInt8(truncatingIfNeeded: index &* 7) &+ entry.tag }
    }

    private func holdsPattern(_ entry: LiveBlock) -> Bool {
        let bytes = entry.block.assumingMemoryBound(to: UInt8.self)
        for index in 0..<entry.byteCount where bytes[index] != UInt8(truncatingIfNeeded: index &* 7) &+ entry.tag {
            return false
        }
        return true
    }

    private func checkAlignment(_ entry: LiveBlock, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let required = guaranteedAlignment(requested: entry.alignment, byteCount: entry.byteCount)
        XCTAssertEqual(Int(bitPattern: entry.block) % required, 0,
                       "\(what) of \(entry.byteCount) bytes with alignment \(entry.alignment) returned \(entry.block)",
                       file: file, line: line)
    }

    private func checkNoOverlap(_ live: [LiveBlock], file: StaticString = #filePath, line: UInt = #line) {
        let ordered = live.sorted { $0.block < $1.block }
        for (lower, upper) in zip(ordered, ordered.dropFirst()) where lower.block + max(lower.byteCount, 1) > upper.block {
            XCTFail("[\(lower.block), +\(lower.byteCount)) overlaps \(upper.block)", file: file, line: line)
            return
        }
    }

    // MARK: Pages going back

    /// Filling the heap with small and medium objects and freeing them all unmaps the sections
    /// that emptied and leaves at most the hysteresis's worth of empty pages resident, as the
    /// kernel sees it.
    func testFreedMemoryGoesBackToTheKernel() throws {
        var slab = Slab()
        let heap = try XCTUnwrap(slab.heap)
        var blocks: [(UnsafeMutableRawPointer, Int)] = []
        for index in 0..<40_000 {
            let byteCount = index % 10 == 0 ? 3000 + index % 5000 : 16 + index % 400
            let block = try XCTUnwrap(slab.allocate(byteCount: byteCount, alignment: 16))
            block.initializeMemory(as: UInt8.self, repeating: 1, count: byteCount)
            blocks.append((block, byteCount))
        }
        let sectionsWhenFull = heap.header.pointee.directoryCount
        XCTAssertGreaterThan(try residentHeapPages(heap), 2000)
        for (block, byteCount) in blocks.reversed() { slab.deallocate(block, byteCount: byteCount, alignment: 16) }
        XCTAssertEqual(heap.validate(), [])
        let sectionsWhenEmpty = heap.header.pointee.directoryCount
        XCTAssertLessThan(sectionsWhenEmpty, sectionsWhenFull / 2)
        let residentWhenEmpty = try residentHeapPages(heap)
        // Each section keeps its header page; beyond that only the hysteresis and the empty slabs
        // that head their classes (whose pages are reset on the next release) stay resident.
        XCTAssertLessThanOrEqual(residentWhenEmpty, sectionsWhenEmpty + Heap.minimumHeldPages + SizeClass.count * 4)
        XCTAssertEqual(statistic(slab, "resident_bytes") / 4096, residentWhenEmpty)
        XCTAssertGreaterThan(statistic(slab, "madvise_calls_count"), 0)
    }

    /// A slab touches its pages only as it hands out objects: a class's 100th object does not
    /// make the pages of the 1000th resident.
    func testSlabsAreCarvedLazily() throws {
        var slab = Slab()
        let heap = try XCTUnwrap(slab.heap)
        for _ in 0..<2000 { _ = try XCTUnwrap(slab.allocate(byteCount: 64, alignment: 16)) }
        let resident = try residentHeapPages(heap)
        // 2000 · 64 bytes = 31.25 pages, plus slab headers and the heap's first page.
        XCTAssertLessThanOrEqual(resident, 34)
        XCTAssertEqual(heap.validate(), [])
    }

    /// Medium blocks grow into free units behind them and shrink in place; huge blocks shrink in
    /// place and keep their contents when they move.
    func testMediumAndHugeReallocation() throws {
        var slab = Slab()
        let heap = try XCTUnwrap(slab.heap)
        let medium = try XCTUnwrap(slab.allocate(byteCount: 5000, alignment: 16))
        medium.initializeMemory(as: UInt8.self, repeating: 7, count: 5000)
        XCTAssertEqual(slab.reallocate(medium, from: 5000, to: 9000, alignment: 16), medium, "free units behind it")
        XCTAssertEqual(slab.reallocate(medium, from: 9000, to: 3000, alignment: 16), medium, "shrinks in place")
        let huge = try XCTUnwrap(slab.allocate(byteCount: 600_000, alignment: 16))
        huge.initializeMemory(as: UInt8.self, repeating: 9, count: 600_000)
        XCTAssertEqual(slab.reallocate(huge, from: 600_000, to: 400_000, alignment: 16), huge)
        let grown = try XCTUnwrap(slab.reallocate(huge, from: 400_000, to: 1_000_000, alignment: 16))
        XCTAssertFalse(UnsafeRawBufferPointer(start: grown, count: 400_000).contains { $0 != 9 })
        XCTAssertFalse(UnsafeRawBufferPointer(start: medium, count: 3000).contains { $0 != 7 })
        slab.deallocate(grown, byteCount: 1_000_000, alignment: 16)
        slab.deallocate(medium, byteCount: 3000, alignment: 16)
        XCTAssertEqual(heap.validate(), [])
        XCTAssertEqual(statistic(slab, "huge_objects_count"), 0)
        XCTAssertEqual(statistic(slab, "medium_objects_count"), 0)
    }

    /// A huge block whose neighbour is taken grows by mremap: its contents stay, its old pages are
    /// not left behind (no copy held in the huge cache), and a block aligned beyond a page, which
    /// mremap cannot promise to keep aligned, takes the copying path instead.
    func testHugeBlocksThatCannotGrowInPlaceMoveWithoutACopy() throws {
        var slab = Slab()
        let heap = try XCTUnwrap(slab.heap)
        let byteCount = 400_000
        let (huge, fence) = try fencedHugeBlock(&slab, byteCount: byteCount, alignment: 16, filledWith: 5)
        defer { if let fence { munmap(fence, 4096) } }

        let grown = try XCTUnwrap(slab.reallocate(huge, from: byteCount, to: 1_000_000, alignment: 16))
        XCTAssertNotEqual(grown, huge)
        XCTAssertEqual(statistic(slab, "mremap_calls_count"), 1)
        XCTAssertFalse(UnsafeRawBufferPointer(start: grown, count: byteCount).contains { $0 != 5 })
        XCTAssertEqual(statistic(slab, "huge_cached_bytes"), 0, "the old mapping moved; nothing was left to cache")
        var vector = [UInt8](repeating: 0, count: 1)
        XCTAssertEqual(mincore(huge, 4096, &vector), -1, "the old address range is unmapped")
        XCTAssertEqual(try residentPages(grown, byteCount: 1_000_000), Geometry.roundUpToPage(byteCount) / 4096,
                       "the pages moved with the block; none was copied or faulted in")
        XCTAssertEqual(heap.validate(), [])

        let (aligned, alignedFence) = try fencedHugeBlock(&slab, byteCount: byteCount, alignment: 65536, filledWith: 6)
        defer { if let alignedFence { munmap(alignedFence, 4096) } }
        let alignedGrown = try XCTUnwrap(slab.reallocate(aligned, from: byteCount, to: 3_000_000, alignment: 65536))
        XCTAssertEqual(UInt(bitPattern: alignedGrown) % 65536, 0)
        XCTAssertNotEqual(alignedGrown, aligned)
        XCTAssertFalse(UnsafeRawBufferPointer(start: alignedGrown, count: byteCount).contains { $0 != 6 })
        XCTAssertEqual(statistic(slab, "mremap_calls_count"), 2,
                       "an alignment beyond a page: one mremap that may only grow in place, then a copy")
        slab.deallocate(grown, byteCount: 1_000_000, alignment: 16)
        slab.deallocate(alignedGrown, byteCount: 3_000_000, alignment: 65536)
        XCTAssertEqual(heap.validate(), [])
        XCTAssertEqual(statistic(slab, "huge_objects_count"), 0)
    }

    /// A huge block larger than every cached mapping grows the cached one with the most resident
    /// pages by mremap: those pages serve the new block without faulting fresh ones in, and no
    /// second mapping is made.
    func testAHugeBlockGrowsACachedMappingInsteadOfMappingAfresh() throws {
        var slab = Slab(tail: nil)
        let heap = try XCTUnwrap(slab.heap)
        let small = 300_000, large = 900_000
        let first = try XCTUnwrap(slab.allocate(byteCount: small, alignment: 16))
        first.initializeMemory(as: UInt8.self, repeating: 7, count: small)
        slab.deallocate(first, byteCount: small, alignment: 16)
        XCTAssertEqual(statistic(slab, "huge_cached_bytes"), Geometry.roundUpToPage(small))
        let mmapsBefore = statistic(slab, "mmap_calls_count")

        let second = try XCTUnwrap(slab.allocate(byteCount: large, alignment: 16))
        XCTAssertEqual(statistic(slab, "mmap_calls_count"), mmapsBefore, "no fresh mapping")
        XCTAssertEqual(statistic(slab, "mremap_calls_count"), 1)
        XCTAssertEqual(statistic(slab, "huge_cached_bytes"), 0)
        XCTAssertEqual(try residentPages(second, byteCount: Geometry.roundUpToPage(large)), Geometry.roundUpToPage(small) / 4096,
                       "the cached mapping's pages came along, resident, before the block is written")
        XCTAssertEqual(second.load(as: UInt8.self), 7, "not zeroed: a plain malloc may reuse old bytes")
        second.initializeMemory(as: UInt8.self, repeating: 8, count: large)
        XCTAssertEqual(heap.validate(), [])

        // calloc never takes a cached mapping: its pages must read as zero.
        slab.deallocate(second, byteCount: large, alignment: 16)
        let zeroed = try XCTUnwrap(slab.allocateZeroed(byteCount: 2 * large, alignment: 16))
        XCTAssertFalse(UnsafeRawBufferPointer(start: zeroed, count: 2 * large).contains { $0 != 0 })
        XCTAssertEqual(statistic(slab, "mremap_calls_count"), 1)
        slab.deallocate(zeroed, byteCount: 2 * large, alignment: 16)
        XCTAssertEqual(heap.validate(), [])
        XCTAssertEqual(statistic(slab, "huge_objects_count"), 0)
    }

    // MARK: Medium runs

    /// The word-at-a-time search for short runs finds the same first fit as the walk over free
    /// stretches, for every length up to 64 units, on random free maps with random released pages.
    func testShortFreeRunSearchFindsTheSameFirstFitAsTheWalk() throws {
        let buffer = try XCTUnwrap(UnsafeMutableRawPointer(mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)))
        defer { munmap(buffer, 4096) }
        let section = Section(base: buffer)
        var generator = SystemRandomNumberGenerator()
        for trial in 0..<400 {
            // Free stretches of random lengths: from many one-unit holes to a few long ones.
            let density = UInt64.random(in: 1...6, using: &generator)
            for word in 0..<Geometry.mapWords {
                var bits: UInt64 = 0
                for _ in 0..<density { bits |= UInt64.random(in: 0...UInt64.max, using: &generator) }
                if trial % 4 == 0 && word % 5 == 2 { bits = .max }
                section.storeWord(Section.freeUnitsOffset, word, bits)
            }
            section.setBits(Section.freeUnitsOffset, from: 0, to: Geometry.sectionHeaderUnits, false)
            section.releasedPages = trial % 2 == 0 ? 0 : UInt64.random(in: 0...UInt64.max, using: &generator) & ~1
            for units in 1...64 {
                for residentOnly in [false, true] {
                    XCTAssertEqual(section.firstShortFreeRun(units: units, residentOnly: residentOnly),
                                   section.firstFreeRunByWalking(units: units, alignmentUnits: 1, residentOnly: residentOnly),
                                   "trial \(trial), \(units) units, residentOnly \(residentOnly)")
                }
            }
        }
    }

    /// A freed medium run of up to 2 KiB is kept on the quick list for its length and handed to
    /// the next object of that length; quick runs go back to the map when held pages are released.
    func testFreedMediumRunsAreReusedFromQuickLists() throws {
        var slab = Slab(tail: nil)
        let heap = try XCTUnwrap(slab.heap)
        // Live bytes that allow quick runs: they may hold 1/256 of them.
        var ballast: [UnsafeMutableRawPointer] = []
        for _ in 0..<128 { ballast.append(try XCTUnwrap(slab.allocate(byteCount: 4000, alignment: 16))) }
        let first = try XCTUnwrap(slab.allocate(byteCount: 600, alignment: 16))
        slab.deallocate(first, byteCount: 600, alignment: 16)
        XCTAssertEqual(statistic(slab, "quick_runs_count"), 1)
        XCTAssertEqual(statistic(slab, "quick_run_bytes"), 640)
        XCTAssertEqual(heap.validate(), [])
        let other = try XCTUnwrap(slab.allocate(byteCount: 700, alignment: 16))
        XCTAssertNotEqual(other, first, "a 6-unit object does not take a 5-unit quick run")
        let again = try XCTUnwrap(slab.allocate(byteCount: 520, alignment: 16))
        XCTAssertEqual(again, first, "the quick run of 5 units is reused")
        XCTAssertEqual(statistic(slab, "quick_runs_count"), 0)
        let zeroed = try XCTUnwrap(slab.allocateZeroed(byteCount: 700, alignment: 16))
        slab.deallocate(other, byteCount: 700, alignment: 16)
        slab.deallocate(zeroed, byteCount: 700, alignment: 16)
        let reused = try XCTUnwrap(slab.allocateZeroed(byteCount: 700, alignment: 16))
        XCTAssertTrue([other, zeroed].contains(reused))
        XCTAssertTrue(UnsafeRawBufferPointer(start: reused, count: 700).allSatisfy { $0 == 0 }, "calloc from a quick run is zeroed")
        XCTAssertEqual(statistic(slab, "medium_objects_count"), 128 + 2)
        XCTAssertEqual(heap.validate(), [])

        slab.deallocate(again, byteCount: 520, alignment: 16)
        XCTAssertEqual(statistic(slab, "quick_runs_count"), 2)
        heap.releaseHeldPages()
        XCTAssertEqual(statistic(slab, "quick_runs_count"), 0, "a release flushes the quick lists")
        XCTAssertEqual(heap.validate(), [])
        slab.deallocate(reused, byteCount: 700, alignment: 16)
        for block in ballast { slab.deallocate(block, byteCount: 4000, alignment: 16) }
        XCTAssertEqual(heap.validate(), [])
        XCTAssertEqual(statistic(slab, "live_objects_count"), 0)
    }

    // MARK: Its own count against the kernel's

    /// The slab counts the pages it writes and gives back (its page-release policy runs on that
    /// count). Replayed in the replay child on every bundled and real trace, its count at the end
    /// and at its peak must equal the kernel's: RssAnon's growth over the baseline, final and peak.
    func testTheSlabsPageCountIsTheKernels() throws {
        guard let real = TestPaths.sharedTrace("real") else { return }
        let bundled = try FileManager.default.contentsOfDirectory(atPath: TestPaths.bundledTraces)
            .filter { $0.hasSuffix(".txt.gz") || $0.hasSuffix(".txt") }.map { TestPaths.bundledTraces + "/" + $0 }
        let traces = try FileManager.default.contentsOfDirectory(atPath: real).filter { $0.hasSuffix(".txt") }.map { real + "/" + $0 }
        XCTAssertGreaterThanOrEqual(bundled.count + traces.count, 16)
        let result = try runCommand(TestPaths.cli, ["--trace"] + (bundled + traces).sorted()
                                    + ["--allocators", "slab", "--repeat", "0", "--format", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try RunReport.decode(Data(result.stdout.utf8))
        XCTAssertEqual(report.runs.count, bundled.count + traces.count)
        for run in report.runs {
            let row = try XCTUnwrap(run.results.first)
            XCTAssertEqual(row.status, .ok, "\(run.trace.name): \(row.detail ?? "")")
            let resident = Int(try XCTUnwrap(row.selfReported["resident_bytes"])) / 4096
            let peak = Int(try XCTUnwrap(row.selfReported["peak_resident_bytes"])) / 4096
            XCTAssertEqual(resident, row.touchedPages?.final, "\(run.trace.name): the slab's count at the end")
            XCTAssertEqual(peak, row.touchedPages?.peak, "\(run.trace.name): the slab's count at its peak")
        }
    }

    // MARK: Helpers

    /// A huge block filled with `byte` whose next page is taken, so that it cannot grow in place:
    /// by a PROT_NONE fence this maps (returned, for the caller to unmap), or already by another
    /// mapping (nil).
    private func fencedHugeBlock(_ slab: inout Slab, byteCount: Int, alignment: Int, filledWith byte: UInt8) throws
        -> (block: UnsafeMutableRawPointer, fence: UnsafeMutableRawPointer?) {
        let block = try XCTUnwrap(slab.allocate(byteCount: byteCount, alignment: alignment))
        block.initializeMemory(as: UInt8.self, repeating: byte, count: byteCount)
        let behind = block + Geometry.roundUpToPage(byteCount)
        let fence = mmap(behind, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | Kernel.mapFixedNoReplace, -1, 0)
        if fence == behind { return (block, behind) }
        XCTAssertEqual(errno, EEXIST, "the page behind the block is neither free nor taken")
        return (block, nil)
    }

    /// Resident pages of every section and of the directory's own mapping.
    private func residentHeapPages(_ heap: Heap) throws -> Int {
        var pages = 0
        for index in 0..<heap.header.pointee.directoryCount {
            pages += try residentPages(heap.section(at: index).base, byteCount: Geometry.sectionSize)
        }
        if heap.header.pointee.directoryMappedBytes > 0 {
            pages += try residentPages(UnsafeMutableRawPointer(heap.header.pointee.directoryBases),
                                       byteCount: heap.header.pointee.directoryMappedBytes)
        }
        return pages
    }

    private func statistic(_ slab: Slab, _ name: String, file: StaticString = #filePath, line: UInt = #line) -> Int {
        guard let entry = slab.statistics().first(where: { $0.name == name }) else {
            XCTFail("no statistic \(name)", file: file, line: line)
            return -1
        }
        return Int(entry.value)
    }

    /// Resident pages of a mapping, as mincore reports them.
    private func residentPages(_ base: UnsafeMutableRawPointer, byteCount: Int) throws -> Int {
        let pages = (byteCount + 4095) / 4096
        var vector = [UInt8](repeating: 0, count: pages)
        guard mincore(base, byteCount, &vector) == 0 else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EINVAL)
        }
        return vector.filter { $0 & 1 != 0 }.count
    }
}
