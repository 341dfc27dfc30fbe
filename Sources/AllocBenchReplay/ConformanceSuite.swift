import AllocBenchCore
import CAllocBench
#if canImport(Glibc)
import Glibc
#endif

/// The checks every registered allocator must pass (the contract on `Allocator`). It runs inside
/// the allocator's own replay child, so a process-wide malloc such as jemalloc is checked in the
/// process it is measured in. Returns one line per failed check; empty means conformant.
public enum ConformanceSuite {
    public static let pageSize = Page.size

    @inlinable
    public static func run<A: Allocator>(_: A.Type) -> [String] {
        var allocator = A()
        var failures: [String] = []
        checkAlignment(&allocator, &failures)
        checkZeroSize(&allocator, &failures)
        checkZeroed(&allocator, &failures)
        checkReallocate(&allocator, &failures)
        checkManySizesWithoutOverlap(&allocator, &failures, seed: 0x5EED)
        checkSelfReportFits(allocator, &failures)
        if A.isThreadSafe { checkThreads(&allocator, &failures) }
        return failures
    }

    /// For an allocator that says it is thread-safe: one instance, called from four threads at
    /// once (allocate, fill, verify, free, with blocks kept live across calls), then blocks
    /// allocated on one thread freed on three others. A thread's blocks must keep their contents.
    @inlinable
    static func checkThreads<A: Allocator>(_ allocator: inout A, _ failures: inout [String]) {
        let threads = 4
        var corrupted = [Int](repeating: 0, count: threads)
        withUnsafeMutablePointer(to: &allocator) { shared in
            corrupted.withUnsafeMutableBufferPointer { corrupted in
                concurrently(threads) { thread in
                    var live: [(UnsafeMutableRawPointer, Int)] = []
                    var state = UInt64(thread + 1) &* 0x9E37_79B9_7F4A_7C15
                    for _ in 0..<2000 {
                        state = state &* 6364136223846793005 &+ 1442695040888963407
                        let byteCount = Int(state >> 52) + 1
                        if live.count < 64, let block = shared.pointee.allocate(byteCount: byteCount, alignment: 16) {
                            fill(block, byteCount, seed: UInt8(thread))
                            live.append((block, byteCount))
                        }
                        if live.count == 64 || state & 1 == 0, !live.isEmpty {
                            let (block, byteCount) = live.remove(at: Int(state >> 40) % live.count)
                            if !verify(block, byteCount, seed: UInt8(thread)) { corrupted[thread] += 1 }
                            shared.pointee.deallocate(block, byteCount: byteCount, alignment: 16)
                        }
                    }
                    for (block, byteCount) in live {
                        if !verify(block, byteCount, seed: UInt8(thread)) { corrupted[thread] += 1 }
                        shared.pointee.deallocate(block, byteCount: byteCount, alignment: 16)
                    }
                }
            }
            for (thread, count) in corrupted.enumerated() where count > 0 {
                failures.append("threads: \(count) blocks of thread \(thread) lost their contents while four threads allocated at once")
            }
            // Allocated here, freed on three other threads at once.
            var blocks: [(UnsafeMutableRawPointer, Int)] = []
            for index in 0..<999 {
                let byteCount = 16 + (index * 37) % 2000
                guard let block = shared.pointee.allocate(byteCount: byteCount, alignment: 16) else { continue }
                fill(block, byteCount, seed: 7)
                blocks.append((block, byteCount))
            }
            var crossCorrupted = [Int](repeating: 0, count: 3)
            blocks.withUnsafeBufferPointer { blocks in
                crossCorrupted.withUnsafeMutableBufferPointer { crossCorrupted in
                    concurrently(3) { thread in
                        for index in stride(from: thread, to: blocks.count, by: 3) {
                            let (block, byteCount) = blocks[index]
                            if !verify(block, byteCount, seed: 7) { crossCorrupted[thread] += 1 }
                            shared.pointee.deallocate(block, byteCount: byteCount, alignment: 16)
                        }
                    }
                }
            }
            if crossCorrupted.reduce(0, +) > 0 {
                failures.append("threads: \(crossCorrupted.reduce(0, +)) blocks lost their contents before another thread freed them")
            }
        }
    }

    /// Runs `body(0)` … `body(count - 1)` on `count` threads at once, and waits for them.
    @usableFromInline
    static func concurrently(_ count: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            let tasks = (0..<count).map { index in ThreadTask { body(index) } }
            var threads: [pthread_t] = []
            for task in tasks {
                var thread = pthread_t()
                let created = pthread_create(&thread, nil, { context in
                    Unmanaged<ThreadTask>.fromOpaque(context!).takeUnretainedValue().run()
                    return nil
                }, Unmanaged.passUnretained(task).toOpaque())
                if created == 0 { threads.append(thread) } else { task.run() }
            }
            // The threads hold their tasks unretained: the tasks live until every thread is joined.
            withExtendedLifetime(tasks) {
                for thread in threads { pthread_join(thread, nil) }
            }
        }
    }

    /// The child passes the self-report to the parent in fixed slots; more statistics than fit, or
    /// names longer than a slot holds, would be cut, so they fail here rather than vanish.
    @inlinable
    static func checkSelfReportFits<A: Allocator>(_ allocator: A, _ failures: inout [String]) {
        for (what, statistics, capacity) in [("self-report", allocator.statistics(), Int(AB_MAX_STATISTICS)),
                                             ("self-report before the replay", A.statisticsBeforeReplay(), Int(AB_MAX_BASELINE_STATISTICS))] {
            if statistics.count > capacity {
                failures.append("\(what): \(statistics.count) statistics; the control block holds \(capacity)")
            }
            for statistic in statistics where statistic.name.utf8.count >= Int(AB_STATISTIC_NAME_BYTES) {
                failures.append("\(what): the name \(statistic.name) is longer than \(AB_STATISTIC_NAME_BYTES - 1) bytes")
            }
        }
    }

    @inlinable
    static func checkAlignment<A: Allocator>(_ allocator: inout A, _ failures: inout [String]) {
        var alignment = 1
        while alignment <= pageSize {
            for byteCount in [1, 8, 24, alignment, alignment + 1, 3 * alignment + 5, 5000] {
                guard let block = allocator.allocate(byteCount: byteCount, alignment: alignment) else {
                    failures.append("alignment: allocate(\(byteCount), alignment: \(alignment)) returned nil")
                    continue
                }
                if Int(bitPattern: block) % guaranteedAlignment(requested: alignment, byteCount: byteCount) != 0 {
                    failures.append("alignment: allocate(\(byteCount), alignment: \(alignment)) returned \(block)")
                }
                fill(block, byteCount, seed: UInt8(truncatingIfNeeded: byteCount))
                if !verify(block, byteCount, seed: UInt8(truncatingIfNeeded: byteCount)) {
                    failures.append("alignment: block of \(byteCount) bytes (alignment \(alignment)) did not keep its contents")
                }
                allocator.deallocate(block, byteCount: byteCount, alignment: alignment)
            }
            alignment *= 2
        }
    }

    @inlinable
    static func checkZeroSize<A: Allocator>(_ allocator: inout A, _ failures: inout [String]) {
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<64 {
            guard let block = allocator.allocate(byteCount: 0, alignment: 16) else {
                failures.append("size 0: allocate(0) returned nil")
                return
            }
            blocks.append(block)
        }
        if Set(blocks).count != blocks.count {
            failures.append("size 0: allocate(0) returned the same address for two live blocks")
        }
        for block in blocks { allocator.deallocate(block, byteCount: 0, alignment: 16) }
    }

    @inlinable
    static func checkZeroed<A: Allocator>(_ allocator: inout A, _ failures: inout [String]) {
        for byteCount in [1, 16, 100, 4096, 10_000, 300_000] {
            // Dirty memory first so that a recycled block would show its old contents.
            if let dirty = allocator.allocate(byteCount: byteCount, alignment: 16) {
                dirty.initializeMemory(as: UInt8.self, repeating: 0xFF, count: byteCount)
                allocator.deallocate(dirty, byteCount: byteCount, alignment: 16)
            }
            guard let block = allocator.allocateZeroed(byteCount: byteCount, alignment: 16) else {
                failures.append("zeroed: allocateZeroed(\(byteCount)) returned nil")
                continue
            }
            let bytes = UnsafeRawBufferPointer(start: block, count: byteCount)
            if bytes.contains(where: { $0 != 0 }) {
                failures.append("zeroed: allocateZeroed(\(byteCount)) returned a block that is not all zero")
            }
            allocator.deallocate(block, byteCount: byteCount, alignment: 16)
        }
    }

    @inlinable
    static func checkReallocate<A: Allocator>(_ allocator: inout A, _ failures: inout [String]) {
        let steps = [1, 7, 16, 100, 4000, 5000, 70_000, 300_000, 64, 3, 2_000_000, 10]
        for alignment in [16, 64, 4096] {
            var byteCount = 5
            guard var block = allocator.allocate(byteCount: byteCount, alignment: alignment) else {
                failures.append("reallocate: initial allocate returned nil")
                continue
            }
            fill(block, byteCount, seed: 0x3C)
            for next in steps {
                guard let moved = allocator.reallocate(block, from: byteCount, to: next, alignment: alignment) else {
                    failures.append("reallocate: \(byteCount) → \(next) returned nil")
                    break
                }
                let kept = min(byteCount, next)
                if !verify(moved, kept, seed: 0x3C) {
                    failures.append("reallocate: \(byteCount) → \(next) (alignment \(alignment)) lost contents")
                }
                if Int(bitPattern: moved) % guaranteedAlignment(requested: alignment, byteCount: next) != 0 {
                    failures.append("reallocate: \(byteCount) → \(next) broke alignment \(alignment)")
                }
                block = moved
                byteCount = next
                fill(block, byteCount, seed: 0x3C)
            }
            allocator.deallocate(block, byteCount: byteCount, alignment: alignment)
        }
    }

    /// Thousands of live blocks of mixed sizes, each filled with its own pattern and verified
    /// before it is freed: any overlap corrupts a neighbour's pattern.
    @inlinable
    static func checkManySizesWithoutOverlap<A: Allocator>(_ allocator: inout A, _ failures: inout [String], seed: UInt64) {
        var random = SplitMix64(seed: seed)
        var live: [(block: UnsafeMutableRawPointer, byteCount: Int, tag: UInt8)] = []
        var corrupted = 0
        for round in 0..<6000 {
            let freeing = !live.isEmpty && random.next() % 3 == 0
            if freeing {
                let index = Int(random.next() % UInt64(live.count))
                let victim = live.swapRemoveAt(index)
                if !verify(victim.block, victim.byteCount, seed: victim.tag) { corrupted += 1 }
                allocator.deallocate(victim.block, byteCount: victim.byteCount, alignment: 16)
                continue
            }
            let shape = random.next() % 100
            let byteCount = shape < 70 ? Int(random.next() % 256) + 1
                : shape < 95 ? Int(random.next() % 8192) + 1 : Int(random.next() % 300_000) + 1
            guard let block = allocator.allocate(byteCount: byteCount, alignment: 16) else {
                failures.append("many sizes: allocate(\(byteCount)) returned nil at round \(round)")
                break
            }
            let tag = UInt8(truncatingIfNeeded: round)
            fill(block, byteCount, seed: tag)
            live.append((block, byteCount, tag))
        }
        let ordered = live.sorted { UInt(bitPattern: $0.block) < UInt(bitPattern: $1.block) }
        for (lower, upper) in zip(ordered, ordered.dropFirst())
        where UInt(bitPattern: lower.block) + UInt(lower.byteCount) > UInt(bitPattern: upper.block) {
            failures.append("overlap: [\(lower.block), +\(lower.byteCount)) overlaps \(upper.block)")
            break
        }
        for entry in live {
            if !verify(entry.block, entry.byteCount, seed: entry.tag) { corrupted += 1 }
            allocator.deallocate(entry.block, byteCount: entry.byteCount, alignment: 16)
        }
        if corrupted > 0 {
            failures.append("overlap: \(corrupted) blocks lost their contents while other blocks were live")
        }
    }

    @inlinable
    static func fill(_ block: UnsafeMutableRawPointer, _ byteCount: Int, seed: UInt8) {
        let bytes = block.assumingMemoryBound(to: UInt8.self)
        for index in 0..<byteCount { bytes[index] = UInt8(truncatingIfNeeded: index) &* 31 &+ seed }
    }

    @inlinable
    static func verify(_ block: UnsafeMutableRawPointer, _ byteCount: Int, seed: UInt8) -> Bool {
        let bytes = block.assumingMemoryBound(to: UInt8.self)
        for index in 0..<byteCount where bytes[index] != UInt8(truncatingIfNeeded: index) &* 31 &+ seed {
            return false
        }
        return true
    }
}

/// A small deterministic generator (Steele, Lea and Flood's SplitMix64).
public struct SplitMix64: RandomNumberGenerator, Sendable {
    @usableFromInline var state: UInt64

    @inlinable
    public init(seed: UInt64) { state = seed }

    @inlinable
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var mixed = state
        mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
        mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
        return mixed ^ (mixed >> 31)
    }
}

extension Array {
    @inlinable
    mutating func swapRemoveAt(_ index: Int) -> Element {
        swapAt(index, count - 1)
        return removeLast()
    }
}

/// A closure for a thread started by `ConformanceSuite.concurrently`, which joins it before the
/// closure's captures go away.
@usableFromInline
final class ThreadTask: @unchecked Sendable {
    let run: () -> Void

    @usableFromInline
    init(_ run: @escaping () -> Void) {
        self.run = run
    }
}
