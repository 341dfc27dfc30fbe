import AllocBenchCore
import CAllocBench
import Glibc

/// Maps exactly N pages on its first allocation, writes M of them, and unmaps the last K on its
/// first deallocation: the harness must report mapped peak N, touched peak M, mapped final N-K and
/// touched final M minus the written pages among the K. N, M and K come from
/// ALLOCBENCH_GROUND_TRUTH="N M K". Replay it with --touch none so that only these writes count.
struct GroundTruth: Allocator {
    static let name = "ground-truth"
    static let summary = "Test fixture: maps N pages, writes M, unmaps K."

    static let pageSize = 4096
    var region: UnsafeMutableRawPointer?
    var mapped = 0
    var written = 0
    var unmapped = 0
    var handedOut = 0

    init() {
        (mapped, written, unmapped, _) = numbers(fromVariable: "ALLOCBENCH_GROUND_TRUTH")
    }

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if region == nil {
            guard let address = mmap(nil, mapped * Self.pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  address != MAP_FAILED else { return nil }
            region = address
            for page in 0..<written { (address + page * Self.pageSize).storeBytes(of: 1, as: UInt8.self) }
        }
        // Blocks are carved from the first written page, so the replay's own writes add nothing.
        defer { handedOut += 16 }
        return region! + handedOut
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {
        guard let region, unmapped > 0 else { return }
        munmap(region + (mapped - unmapped) * Self.pageSize, unmapped * Self.pageSize)
        self.unmapped = 0
    }
}

/// Up to four numbers separated by spaces from an environment variable, zero where missing. Parsed
/// by hand: an Array here would be a malloc inside the measurement.
func numbers(fromVariable name: String) -> (Int, Int, Int, Int) {
    var values = (0, 0, 0, 0)
    guard var cursor = UnsafePointer(getenv(name)) else { return values }
    var index = 0
    while cursor.pointee != 0 {
        let byte = UInt8(bitPattern: cursor.pointee)
        if byte == UInt8(ascii: " ") {
            index += 1
        } else {
            let digit = Int(byte) - 48
            switch index {
            case 0: values.0 = values.0 * 10 + digit
            case 1: values.1 = values.1 * 10 + digit
            case 2: values.2 = values.2 * 10 + digit
            default: values.3 = values.3 * 10 + digit
            }
        }
        cursor += 1
    }
    return values
}

/// LazyFree's ground truth. Its first allocation maps N pages and writes them all; its first
/// deallocation hands the first F back with madvise(MADV_FREE), which leaves them in RssAnon;
/// its second allocation writes R of those again (they stop being lazily free) and maps and writes
/// E more pages, so the touched peak comes after the MADV_FREE. From ALLOCBENCH_LAZY_FREE="N F R E",
/// replayed with --touch none: touched peak N+E, lazy free F−R at that peak and at the end.
struct LazyFreeGroundTruth: Allocator {
    static let name = "lazy-free-ground-truth"
    static let summary = "Test fixture: maps and writes N pages, MADV_FREEs F, rewrites R, adds E."

    static let pageSize = 4096
    var region: UnsafeMutableRawPointer?
    var counts: (mapped: Int, freed: Int, rewritten: Int, extra: Int)
    var allocations = 0
    var freedOnce = false

    init() {
        counts = numbers(fromVariable: "ALLOCBENCH_LAZY_FREE")
    }

    static func mapWritten(pages: Int) -> UnsafeMutableRawPointer? {
        guard let address = mmap(nil, pages * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              address != MAP_FAILED else { return nil }
        for page in 0..<pages { (address + page * pageSize).storeBytes(of: 1, as: UInt8.self) }
        return address
    }

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        allocations += 1
        if allocations == 1 {
            region = Self.mapWritten(pages: counts.mapped)
        } else if allocations == 2, let region {
            for page in 0..<counts.rewritten { (region + page * Self.pageSize).storeBytes(of: 2, as: UInt8.self) }
            if counts.extra > 0 && Self.mapWritten(pages: counts.extra) == nil { return nil }
        }
        // Every block is the last mapped page's last 16 bytes: written already, so the replay adds nothing.
        return region.map { $0 + counts.mapped * Self.pageSize - 16 }
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {
        guard let region, !freedOnce else { return }
        freedOnce = true
        madvise(region, counts.freed * Self.pageSize, MADV_FREE)
    }
}

/// Exits the process with status 0 on its third allocation, as a preload that calls exit(0) does:
/// the row must read "failed: the replay child exited with status 0 after op 2".
struct ExitingAllocator: Allocator {
    static let name = "exiting"
    static let summary = "Test fixture: exit(0) on the third allocation."
    var calls = 0
    var system = BumpRegion()

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        calls += 1
        if calls == 3 { exit(0) }
        return system.allocate(byteCount, alignment)
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {}
}

/// Dereferences a null pointer on its third allocation: the row must read "SIGSEGV after op 2".
struct CrashingAllocator: Allocator {
    static let name = "crashing"
    static let summary = "Test fixture: SIGSEGV on the third allocation."
    var calls = 0
    var system = BumpRegion()

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        calls += 1
        if calls == 3 { UnsafeMutablePointer<Int>(bitPattern: 8)!.pointee = 1 }
        return system.allocate(byteCount, alignment)
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {}
}

/// Spins forever on its second allocation: the row must read "timed out after op 1".
struct HangingAllocator: Allocator {
    static let name = "hanging"
    static let summary = "Test fixture: never returns from the second allocation."
    var calls = 0
    var system = BumpRegion()

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        calls += 1
        while calls == 2 { sched_yield() }
        return system.allocate(byteCount, alignment)
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {}
}

/// Returns nil from the fourth allocation on: the row must read "out of memory at op 4".
struct OutOfMemoryAllocator: Allocator {
    static let name = "out-of-memory"
    static let summary = "Test fixture: nil from the fourth allocation."
    var calls = 0
    var system = BumpRegion()

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        calls += 1
        return calls >= 4 ? nil : system.allocate(byteCount, alignment)
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {}
}

/// Returns an odd address for a 16-byte block: the row must read "misaligned block at op 1".
struct MisalignedAllocator: Allocator {
    static let name = "misaligned"
    static let summary = "Test fixture: blocks one byte off their alignment."
    var system = BumpRegion()

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        system.allocate(byteCount + 1, alignment).map { $0 + 1 }
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {}
}

/// A module allocator that (wrongly) takes its memory from malloc: the row must carry a non-zero
/// runtime_malloc_delta_bytes. Each block is padded past glibc's tcache sizes (1032 bytes), whose
/// cached chunks already count as in use, so that every call shows in the delta.
struct MallocCallingAllocator: Allocator {
    static let name = "malloc-calling"
    static let summary = "Test fixture: a module allocator that secretly calls malloc."
    static let padding = 64 * 1024

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        var block: UnsafeMutableRawPointer?
        return posix_memalign(&block, max(alignment, 16), byteCount + Self.padding) == 0 ? block : nil
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {}
}

/// A never-freeing bump region in one 1 MiB mapping, for the failing fixtures.
struct BumpRegion {
    var base: UnsafeMutableRawPointer?
    var used = 0

    mutating func allocate(_ byteCount: Int, _ alignment: Int) -> UnsafeMutableRawPointer? {
        if base == nil {
            guard let address = mmap(nil, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  address != MAP_FAILED else { return nil }
            base = address
        }
        used = (used + alignment - 1) & ~(alignment - 1)
        guard used + byteCount <= 1 << 20 else { return nil }
        defer { used += max(byteCount, 1) }
        return base! + used
    }
}

/// Starts a thread on its first allocation that maps and writes 8 pages, and waits for it: the
/// thread's mmap is filtered too, so it must be traced (or it would fail with ENOSYS).
struct ThreadedAllocator: Allocator {
    static let name = "threaded"
    static let summary = "Test fixture: a helper thread maps and writes 8 pages."
    var started = false
    var system = BumpRegion()

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if !started {
            started = true
            var thread = pthread_t()
            let created = pthread_create(&thread, nil, { _ in
                guard let pages = mmap(nil, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                      pages != MAP_FAILED else { return UnsafeMutableRawPointer(bitPattern: 1) }
                for page in 0..<8 { (pages + page * 4096).storeBytes(of: 1, as: UInt8.self) }
                return nil
            }, nil)
            var failure: UnsafeMutableRawPointer?
            guard created == 0, pthread_join(thread, &failure) == 0, failure == nil else { return nil }
        }
        return system.allocate(byteCount, alignment)
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {}
}

/// The process malloc, with self-reports too big for the control block (41 statistics, one name
/// of 60 bytes; 9 before the replay): the conformance suite must fail it instead of cutting them.
struct ChattyAllocator: Allocator {
    static let name = "chatty"
    static let summary = "Test fixture: a conformant allocator whose self-report does not fit."

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        var block: UnsafeMutableRawPointer?
        return posix_memalign(&block, max(alignment, 16), max(byteCount, 1)) == 0 ? block : nil
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {
        free(block)
    }

    func statistics() -> [AllocatorStatistic] {
        (0..<40).map { AllocatorStatistic("statistic_\($0)", $0) }
            + [AllocatorStatistic(String(repeating: "n", count: 60), 1)]
    }

    static func statisticsBeforeReplay() -> [AllocatorStatistic] {
        (0..<9).map { AllocatorStatistic("before_\($0)", $0) }
    }
}

/// Checks that every op runs on the OS thread of its recorded thread. The fixture traces make a
/// block's size tell its recorded thread (1000 × thread + n bytes), so each allocation knows the
/// thread it must be on; a block's header keeps the OS thread that allocated it, so a free on
/// another one counts as a cross-thread free. Self-reports: OS threads seen, allocations on the
/// wrong OS thread (must be 0) and cross-thread frees.
struct ThreadCheckingAllocator: Allocator {
    static let name = "thread-checking"
    static let summary = "Test fixture: records which OS thread runs each op."
    static let maximumThreads = 64
    var system = BumpRegion()
    /// The OS thread of each recorded thread (0: not seen yet), in the allocator itself: no
    /// Array, which would be a malloc during the replay.
    var osThreads = (Int32(0), Int32(0), Int32(0), Int32(0), Int32(0), Int32(0), Int32(0), Int32(0))
    var osThreadsSeen = 0
    var wrongThread = 0
    var crossThreadFrees = 0

    mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        let recorded = byteCount / 1000
        let current = ab_gettid()
        withUnsafeMutableBytes(of: &osThreads) { raw in
            let table = raw.bindMemory(to: Int32.self)
            guard recorded < table.count else { wrongThread += 1; return }
            if table[recorded] == 0 {
                if !table.contains(current) { osThreadsSeen += 1 }
                table[recorded] = current
            } else if table[recorded] != current {
                wrongThread += 1
            }
        }
        guard let block = system.allocate(byteCount + 16, 16) else { return nil }
        block.storeBytes(of: current, as: Int32.self)
        return block + 16
    }

    mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {
        if (block - 16).load(as: Int32.self) != ab_gettid() { crossThreadFrees += 1 }
    }

    func statistics() -> [AllocatorStatistic] {
        [AllocatorStatistic("os_threads_count", osThreadsSeen), AllocatorStatistic("wrong_thread_count", wrongThread),
         AllocatorStatistic("cross_thread_frees_count", crossThreadFrees)]
    }
}
