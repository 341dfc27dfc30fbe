import AllocBenchCore
import AllocBenchHarness
@testable import AllocBenchReplay
@testable import BssArenaAllocator
import CAllocBench
import SystemMallocAllocator
import XCTest

/// bss-arena against a model of exact address-ordered first fit. Every instance starts a new arena
/// (the state is static), so each test and each random sequence begins with `BssArena()`.
final class BssArenaTests: XCTestCase {
    /// A live block as the model knows it.
    private struct LiveBlock {
        var byteCount: Int
        var alignment: Int
        var tag: UInt8
    }

    /// The model's block size: 8-byte header, 16-byte granule, 32 bytes at least.
    private static func blockBytes(_ byteCount: Int) -> UInt {
        max(32, (UInt(byteCount) + 8 + 15) & ~15)
    }

    /// Where exact first fit must put `byteCount` bytes aligned to `alignment`, given the arena's
    /// blocks: the payload address inside the lowest-addressed free block that can hold it, or nil
    /// when none can (a new region must then be mapped). Above 16, the block goes as low as
    /// alignment allows while leaving before it nothing or a gap that can stay a free block.
    private static func expectedFirstFit(byteCount: Int, alignment: Int, blocks: [Arena.BlockInfo]) -> UInt? {
        let need = blockBytes(byteCount)
        for free in blocks where !free.isInUse {
            if alignment <= 16 {
                if free.size >= need { return free.payload }
                continue
            }
            let step = UInt(alignment)
            var payload = (free.payload + step - 1) / step * step
            let gap = payload - 8 - free.address
            if gap != 0 && gap < 32 { payload += step }
            if payload - 8 + need <= free.end { return payload }
        }
        return nil
    }

    private static func statistic(_ name: String, _ arena: BssArena) -> Int64? {
        arena.statistics().first { $0.name == name }?.value
    }

    private static func fill(_ block: UnsafeMutableRawPointer, _ byteCount: Int, tag: UInt8) {
        block.initializeMemory(as: UInt8.self, repeating: tag, count: byteCount)
    }

    /// Whether every byte is `tag`, a word at a time (the blocks reach 600 KB).
    private static func holds(_ block: UnsafeMutableRawPointer, _ byteCount: Int, tag: UInt8) -> Bool {
        let pattern = UInt64(tag) &* 0x0101_0101_0101_0101
        var offset = 0
        while offset + 8 <= byteCount {
            if block.loadUnaligned(fromByteOffset: offset, as: UInt64.self) != pattern { return false }
            offset += 8
        }
        while offset < byteCount {
            if block.load(fromByteOffset: offset, as: UInt8.self) != tag { return false }
            offset += 1
        }
        return true
    }

    private static func randomByteCount(_ random: inout SplitMix64) -> Int {
        let shape = random.next() % 100
        if shape < 60 { return Int(random.next() % 129) }
        if shape < 85 { return Int(random.next() % 4096) + 129 }
        if shape < 97 { return Int(random.next() % 100_000) + 4096 }
        return Int(random.next() % 500_000) + 100_000
    }

    private static func randomAlignment(_ random: inout SplitMix64) -> Int {
        let alignments = [1, 8, 16, 16, 16, 16, 16, 16, 16, 16, 16, 32, 64, 256, 4096, 65536]
        return alignments[Int(random.next() % UInt64(alignments.count))]
    }

    // MARK: - The property test

    /// Thousands of random malloc/calloc/free/realloc sequences. After every operation: the block
    /// is where exact first fit puts it (or in a new region when nothing fits), it is aligned, it
    /// overlaps no live block, every block it touched kept its contents, a calloc block is zero, and
    /// the arena passes its full validation (tier 2: tiling, flags, coalescing, tree order and
    /// summaries, counters, released pages).
    func testRandomSequencesFollowExactFirstFit() {
        var random = SplitMix64(seed: 0xB55_A2E4A)
        var checkedPlacements = 0
        var growths = 0
        var releasedBytes: Int64 = 0
        for sequence in 0..<1200 {
            let arena = BssArena()
            var live: [UInt: LiveBlock] = [:]
            var nextTag: UInt8 = 1
            func takeTag() -> UInt8 {
                defer { nextTag = nextTag == 255 ? 1 : nextTag + 1 }
                return nextTag
            }
            let operations = 40 + Int(random.next() % 160)
            for step in 0..<operations {
                let context = "sequence \(sequence) step \(step)"
                let before = Arena.allBlocks()
                let regionsBefore = Self.statistic("mapped_region_count", arena) ?? -1
                let choice = live.isEmpty ? 0 : random.next() % 10
                if choice < 5 {
                    let byteCount = Self.randomByteCount(&random)
                    let alignment = Self.randomAlignment(&random)
                    let zeroed = random.next() % 8 == 0
                    let expected = Self.expectedFirstFit(byteCount: byteCount, alignment: alignment, blocks: before)
                    guard let block = zeroed ? arena.allocateZeroed(byteCount: byteCount, alignment: alignment)
                        : arena.allocate(byteCount: byteCount, alignment: alignment) else {
                        return XCTFail("\(context): allocate(\(byteCount), alignment: \(alignment)) returned nil")
                    }
                    let address = UInt(bitPattern: block)
                    if let expected {
                        XCTAssertEqual(address, expected, "\(context): not the first fit for \(byteCount) bytes aligned \(alignment)")
                        checkedPlacements += 1
                    } else {
                        XCTAssertEqual(Self.statistic("mapped_region_count", arena), regionsBefore + 1,
                                       "\(context): nothing fit, so one region must be mapped")
                        XCTAssertFalse(before.contains { $0.address <= address && address < $0.end },
                                       "\(context): a new region's block lies in an old block")
                        growths += 1
                    }
                    if zeroed { XCTAssertTrue(Self.holds(block, byteCount, tag: 0), "\(context): calloc block is not zero") }
                    XCTAssertEqual(address % UInt(guaranteedAlignment(requested: alignment, byteCount: byteCount)), 0, "\(context): misaligned")
                    for (other, entry) in live {
                        XCTAssertTrue(address + UInt(byteCount) <= other || other + UInt(entry.byteCount) <= address,
                                      "\(context): new block overlaps a live one")
                    }
                    let tag = takeTag()
                    Self.fill(block, byteCount, tag: tag)
                    live[address] = LiveBlock(byteCount: byteCount, alignment: alignment, tag: tag)
                } else if choice < 8 {
                    let address = live.keys.sorted()[Int(random.next() % UInt64(live.count))]
                    let entry = live.removeValue(forKey: address)!
                    let block = UnsafeMutableRawPointer(bitPattern: address)!
                    XCTAssertTrue(Self.holds(block, entry.byteCount, tag: entry.tag), "\(context): block lost its contents before free")
                    arena.deallocate(block, byteCount: entry.byteCount, alignment: entry.alignment)
                } else {
                    let address = live.keys.sorted()[Int(random.next() % UInt64(live.count))]
                    let entry = live.removeValue(forKey: address)!
                    let block = UnsafeMutableRawPointer(bitPattern: address)!
                    let byteCount = random.next() % 3 == 0 ? Self.randomByteCount(&random)
                        : max(0, entry.byteCount + Int(random.next() % 512) - 200)
                    let need = Self.blockBytes(byteCount)
                    let current = before.first { $0.address == address - 8 }!
                    let next = before.first { $0.address == current.end }
                    let staysInPlace = need <= current.size
                        || (!current.isLastInRegion && next.map { !$0.isInUse && current.size + $0.size >= need } == true)
                    let expected = staysInPlace ? address
                        : Self.expectedFirstFit(byteCount: byteCount, alignment: entry.alignment, blocks: before)
                    guard let moved = arena.reallocate(block, from: entry.byteCount, to: byteCount, alignment: entry.alignment) else {
                        return XCTFail("\(context): reallocate(\(entry.byteCount) → \(byteCount)) returned nil")
                    }
                    let movedAddress = UInt(bitPattern: moved)
                    if let expected {
                        XCTAssertEqual(movedAddress, expected,
                                       "\(context): realloc \(entry.byteCount) → \(byteCount) not in place or not first fit")
                        checkedPlacements += 1
                    } else {
                        XCTAssertFalse(before.contains { $0.address <= movedAddress && movedAddress < $0.end },
                                       "\(context): a new region's block lies in an old block")
                        growths += 1
                    }
                    XCTAssertTrue(Self.holds(moved, min(entry.byteCount, byteCount), tag: entry.tag), "\(context): realloc lost contents")
                    XCTAssertEqual(movedAddress % UInt(guaranteedAlignment(requested: entry.alignment, byteCount: byteCount)), 0,
                                   "\(context): realloc misaligned")
                    for (other, otherEntry) in live {
                        XCTAssertTrue(movedAddress + UInt(byteCount) <= other || other + UInt(otherEntry.byteCount) <= movedAddress,
                                      "\(context): reallocated block overlaps a live one")
                    }
                    let tag = takeTag()
                    Self.fill(moved, byteCount, tag: tag)
                    live[movedAddress] = LiveBlock(byteCount: byteCount, alignment: entry.alignment, tag: tag)
                }
                if let failure = Arena.validationFailure() { return XCTFail("\(context): \(failure)") }
            }
            for (address, entry) in live {
                let block = UnsafeMutableRawPointer(bitPattern: address)!
                XCTAssertTrue(Self.holds(block, entry.byteCount, tag: entry.tag), "sequence \(sequence): block lost its contents")
                arena.deallocate(block, byteCount: entry.byteCount, alignment: entry.alignment)
            }
            releasedBytes += Self.statistic("released_bytes", arena) ?? 0
            if let failure = Arena.validationFailure() { return XCTFail("sequence \(sequence) emptied: \(failure)") }
            XCTAssertEqual(Self.statistic("in_use_bytes", arena), 0)
            XCTAssertLessThanOrEqual(Self.statistic("mapped_region_count", arena) ?? 99, 1,
                                     "sequence \(sequence): only one empty region may stay mapped")
        }
        // The sequences must have exercised every outcome: placements, growth, and returned pages.
        XCTAssertGreaterThan(checkedPlacements, 50_000)
        XCTAssertGreaterThan(growths, 1_000)
        XCTAssertGreaterThan(releasedBytes, 0)
    }

    // MARK: - The bss tail

    /// The seed's five mallocs (1076 bytes, 1136 in blocks) go to the bss tail, one after another
    /// from its start, when the tail of this test binary can hold them; whatever does not fit goes
    /// to a mapped region.
    func testSeedMallocsLandInTheBssTail() {
        let arena = BssArena()
        let tail = Arena.tailBlocks
        let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let end = UInt(ab_end_of_bss())
        // XCTest runs BssArenaTests before SlabTests, so the arena claims the tail, not a slab.
        XCTAssertEqual(Arena.claimedTail?.end, end, "the arena owns this process's bss tail")
        let pageEnd = (end + pageSize - 1) / pageSize * pageSize
        if !tail.isEmpty {
            XCTAssertEqual(tail.lowerBound, (end + 15) / 16 * 16 + 8, "the first block starts after _end rounded up to 16")
            XCTAssertLessThanOrEqual(tail.upperBound, pageEnd)
        }
        XCTAssertEqual(Self.statistic("bss_tail_bytes", arena), Int64(pageEnd - end))

        let sizes = [360, 80, 180, 16, 440]
        var nextInTail = tail.lowerBound
        var inTail: UInt = 0
        var inRegions = 0
        for byteCount in sizes {
            guard let block = arena.allocate(byteCount: byteCount, alignment: 16) else { return XCTFail("malloc(\(byteCount)) returned nil") }
            let address = UInt(bitPattern: block)
            XCTAssertEqual(address % 16, 0)
            let need = Self.blockBytes(byteCount)
            if nextInTail + need <= tail.upperBound, !tail.isEmpty {
                XCTAssertEqual(address, nextInTail + 8, "malloc(\(byteCount)) should take the tail's next bytes")
                XCTAssertTrue(UInt(bitPattern: block) + UInt(byteCount) <= pageEnd)
                nextInTail += need
                inTail += need
            } else {
                XCTAssertFalse(tail.contains(address), "malloc(\(byteCount)) cannot fit in the tail")
                inRegions += 1
            }
        }
        if tail.count >= 1136 {
            XCTAssertEqual(inTail, 1136, "all five fit: 368 + 96 + 192 + 32 + 448 block bytes")
            XCTAssertEqual(Self.statistic("mapped_region_count", arena), 0, "no page was mapped")
        }
        XCTAssertEqual(Self.statistic("bss_tail_in_use_bytes", arena), Int64(inTail))
        XCTAssertEqual(Self.statistic("mapped_region_count", arena), inRegions > 0 ? 1 : 0)
        XCTAssertNil(Arena.validationFailure())
    }

    /// Freeing and reallocating one big buffer gives its pages back once, not every time: the
    /// release batch rises past the buffer's size after the first release.
    func testABigBufferFreedAndReallocatedIsNotReleasedEveryTime() {
        let arena = BssArena()
        let byteCount = 600 << 10  // big (≥ 512 KiB) but inside one ordinary 1 MiB region
        var releases: [Int64] = []
        for round in 0..<20 {
            guard let block = arena.allocate(byteCount: byteCount, alignment: 16) else { return XCTFail("nil at round \(round)") }
            Self.fill(block, byteCount, tag: UInt8(round))
            // A small neighbour keeps the region from being wholly free (which would unmap it).
            let pin = arena.allocate(byteCount: 64, alignment: 16)
            arena.deallocate(block, byteCount: byteCount, alignment: 16)
            releases.append(Self.statistic("released_bytes", arena) ?? -1)
            if let pin { arena.deallocate(pin, byteCount: 64, alignment: 16) }
        }
        XCTAssertGreaterThan(releases.last ?? 0, 0, "the first free gives the pages back")
        XCTAssertEqual(Set(releases.dropFirst()).count, 1, "and later frees of the same buffer do not: \(releases)")
    }

    func testBuildNoteStatesTheTailOfThisExecutable() {
        let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))
        let end = UInt(ab_end_of_bss())
        let tailBytes = (end + pageSize - 1) / pageSize * pageSize - end
        XCTAssertTrue(BssArena.buildNote()?.hasPrefix("bss tail: \(tailBytes) bytes") == true, BssArena.buildNote() ?? "nil")
    }

    // MARK: - Regions and statistics

    /// Filling past the tail maps regions; emptying them unmaps all but one ordinary region, and a
    /// region made for one big block goes back as soon as the block is freed.
    func testEmptyRegionsAreUnmappedButOne() {
        let arena = BssArena()
        var blocks: [UnsafeMutableRawPointer] = []
        let chunk = Int(Layout.regionChunkBytes)
        for _ in 0..<(4 * chunk / 100_000) {
            guard let block = arena.allocate(byteCount: 100_000, alignment: 16) else { return XCTFail("allocate returned nil") }
            Self.fill(block, 100_000, tag: 7)
            blocks.append(block)
        }
        XCTAssertGreaterThanOrEqual(Self.statistic("mapped_region_count", arena) ?? 0, 3)
        guard let big = arena.allocate(byteCount: 3 * chunk, alignment: 16) else { return XCTFail("big allocate returned nil") }
        let regionsWithBig = Self.statistic("mapped_region_count", arena) ?? 0
        arena.deallocate(big, byteCount: 3 * chunk, alignment: 16)
        XCTAssertEqual(Self.statistic("mapped_region_count", arena), regionsWithBig - 1, "the big block's own region is unmapped")
        for block in blocks { arena.deallocate(block, byteCount: 100_000, alignment: 16) }
        XCTAssertNil(Arena.validationFailure())
        XCTAssertEqual(Self.statistic("mapped_region_count", arena), 1)
        XCTAssertEqual(Self.statistic("mapped_bytes", arena), Int64(chunk))
        XCTAssertEqual(Self.statistic("in_use_bytes", arena), 0)
    }

    /// A freed big block keeps only its front resident (checked by mincore in the validation), and
    /// the statistics agree with a walk of the blocks.
    func testStatisticsAgreeWithTheBlocks() {
        let arena = BssArena()
        var random = SplitMix64(seed: 42)
        var live: [(UnsafeMutableRawPointer, Int)] = []
        for _ in 0..<400 {
            if !live.isEmpty && random.next() % 3 == 0 {
                let (block, byteCount) = live.remove(at: Int(random.next() % UInt64(live.count)))
                arena.deallocate(block, byteCount: byteCount, alignment: 16)
            } else {
                let byteCount = Self.randomByteCount(&random)
                guard let block = arena.allocate(byteCount: byteCount, alignment: 16) else { return XCTFail("nil") }
                Self.fill(block, byteCount, tag: 1)
                live.append((block, byteCount))
            }
        }
        XCTAssertNil(Arena.validationFailure())
        let blocks = Arena.allBlocks()
        let free = blocks.filter { !$0.isInUse }
        XCTAssertEqual(Self.statistic("in_use_bytes", arena), Int64(blocks.filter(\.isInUse).map(\.size).reduce(0, +)))
        XCTAssertEqual(Self.statistic("free_bytes", arena), Int64(free.map(\.size).reduce(0, +)))
        XCTAssertEqual(Self.statistic("free_block_count", arena), Int64(free.count))
        XCTAssertEqual(Self.statistic("largest_free_block_bytes", arena), Int64(free.map(\.size).max() ?? 0))
        XCTAssertEqual(Self.statistic("bss_tail_in_use_bytes", arena), Int64(blocks.filter { $0.isInTail && $0.isInUse }.map(\.size).reduce(0, +)))
        XCTAssertGreaterThanOrEqual(Self.statistic("peak_in_use_bytes", arena) ?? 0, Self.statistic("in_use_bytes", arena) ?? 0)
    }

    /// A new instance takes the arena over: the previous instance's regions are unmapped and the
    /// tail is one free block again.
    func testNewInstanceStartsAFreshArena() {
        let first = BssArena()
        for _ in 0..<8 { _ = first.allocate(byteCount: 200_000, alignment: 16) }
        XCTAssertGreaterThan(Self.statistic("mapped_region_count", first) ?? 0, 1)
        let second = BssArena()
        XCTAssertEqual(Self.statistic("mapped_region_count", second), 0)
        XCTAssertEqual(Self.statistic("in_use_bytes", second), 0)
        XCTAssertEqual(Arena.allBlocks().count, Arena.tailBlocks.isEmpty ? 0 : 1)
        XCTAssertNil(Arena.validationFailure())
    }

    /// The tier-2 hook runs the full validation after every operation when switched on (a broken
    /// invariant stops the process with the invariant's name).
    func testEveryOperationValidationHook() {
        BssArena.validatesEveryOperation = true
        defer { BssArena.validatesEveryOperation = false }
        let arena = BssArena()
        var blocks: [UnsafeMutableRawPointer] = []
        for byteCount in [0, 24, 25, 4000, 300_000, 17] {
            blocks.append(arena.allocate(byteCount: byteCount, alignment: 64)!)
        }
        for (block, byteCount) in zip(blocks, [0, 24, 25, 4000, 300_000, 17]).reversed() {
            arena.deallocate(block, byteCount: byteCount, alignment: 64)
        }
        XCTAssertEqual(Self.statistic("in_use_bytes", arena), 0)
    }

    // MARK: - Timing (a report, not a check)

    /// Replays gcc-hello and systemui in this process through the replay child's own loop, for
    /// bss-arena and for glibc, and prints ns/op. Timing is reported, never asserted; the check is
    /// that every op succeeds. Run it in release for meaningful numbers:
    ///     swift test -c release -Xswiftc -enable-testing --filter BssArenaTests.testReplayTimingReport
    /// Even then the figures lean towards glibc: its heap stays warm across the three runs while
    /// each bss-arena run maps fresh regions, and `-enable-testing` makes internal state visible
    /// outside the module, so the optimiser keeps exclusivity checks (swift_beginAccess) on
    /// bss-arena's static state. Timed replay children (`allocbench-replay run … --timed`) are the
    /// measurement of record.
    func testReplayTimingReport() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let traces = root.deletingLastPathComponent().appendingPathComponent("shared/traces").path
        for name in ["real/gcc-hello.txt", "android/systemui.zip"] {
            let path = traces + "/" + name
            guard FileManager.default.fileExists(atPath: path) else {
                return XCTFail("\(path) is missing: the timing report reads the real traces from ../shared/traces")
            }
            let trace = try TraceInput.parse(path: path, options: .init(lenient: true))
            for touch in [TouchMode.none, .pages] {
                let arenaNanoseconds = try Self.replayNanoseconds(BssArena.self, trace, touch: touch)
                let glibcNanoseconds = try Self.replayNanoseconds(SystemMalloc.self, trace, touch: touch)
                let ops = Double(trace.ops.count)
                print(String(format: "replay timing %@ (%d ops, touch %@): bss-arena %.1f ns/op, glibc %.1f ns/op, ratio %.2f",
                             name, trace.ops.count, touch.rawValue, Double(arenaNanoseconds) / ops,
                             Double(glibcNanoseconds) / ops, Double(arenaNanoseconds) / Double(glibcNanoseconds)))
            }
        }
    }

    /// The fastest of three in-process replays, each from a fresh allocator, everything freed after.
    private static func replayNanoseconds<A: Allocator>(_: A.Type, _ trace: ParsedTrace, touch: TouchMode) throws -> UInt64 {
        let slotCount = max(trace.slotCount, 1)
        let slots = UnsafeMutablePointer<Slot>.allocate(capacity: slotCount)
        let control = UnsafeMutablePointer<ab_control>.allocate(capacity: 1)
        defer {
            slots.deallocate()
            control.deallocate()
        }
        var best = UInt64.max
        for _ in 0..<3 {
            slots.initialize(repeating: Slot(block: nil, byteCount: 0), count: slotCount)
            control.initialize(to: ab_control())
            var allocator = A()
            let failure = trace.ops.withUnsafeBufferPointer { ops in
                let session = ReplaySession(ops: ops, slots: slots, control: control, touch: touch, traced: false, sampleInterval: 0, threadPlan: nil)
                let start = ab_monotonic_nanoseconds()
                let failure = replayOps(&allocator, session)
                best = min(best, ab_monotonic_nanoseconds() - start)
                return failure
            }
            XCTAssertEqual(failure, UInt32(AB_FAILURE_NONE), "\(A.name) failed after \(control.pointee.ops_completed) ops")
            for index in 0..<slotCount {
                if let block = slots[index].block {
                    allocator.deallocate(block, byteCount: slots[index].byteCount, alignment: 16)
                }
            }
        }
        return best
    }
}
