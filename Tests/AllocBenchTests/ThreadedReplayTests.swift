@testable import AllocBenchHarness
import AllocBenchModel
import XCTest

/// `--threads per-thread`: every op on an OS thread of its recorded thread, one at a time, in
/// file order; `--threads serial`: every op on one thread.
final class ThreadedReplayTests: XCTestCase {
    /// Three recorded threads; a block's size is 1000 × its thread + n (ThreadCheckingAllocator).
    /// Thread 2 frees a block of thread 1, thread 3 reallocates one of thread 2 (both cross
    /// threads), and thread 1's last op comes before thread 3's first.
    static let crossingTrace = """
        1: malloc 0x10 1001
        1: malloc 0x20 1002
        2: malloc 0x30 2001
        2: free 0x10
        1: free 0x20
        3: realloc 0x40 0x30 3005
        3: malloc 0x50 3001
        2: malloc 0x60 2002
        3: free 0x40
        2: free 0x60
        3: free 0x50
        """

    private func replay(_ text: String, threads: ThreadMode, allocator: CatalogEntry) throws -> TraceRun {
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 1, timeoutSeconds: 60, lenient: false, threads: threads))
        return try benchmark.run(tracePath: try writeTrace(text), allocators: [allocator])
    }

    func testEachOpRunsOnTheThreadOfItsRecordedThread() throws {
        let run = try replay(Self.crossingTrace, threads: .auto, allocator: testingEntry("thread-checking"))
        XCTAssertEqual(run.trace.threadMode, .perThread, "auto replays a multi-threaded trace per thread")
        let row = try XCTUnwrap(run.results.first)
        XCTAssertEqual(row.status, .ok, row.detail ?? "")
        XCTAssertEqual(row.selfReported["os_threads_count"], 3)
        XCTAssertEqual(row.selfReported["wrong_thread_count"], 0)
        // The free of 0x10 on thread 2 and the free of 0x40 (reallocated on 3 from 2's block: a
        // new block of 3's) — only the first crosses at the free; the realloc's own free of 2's
        // block happens on 3.
        XCTAssertEqual(row.selfReported["cross_thread_frees_count"], 2)

        let serial = try XCTUnwrap(try replay(Self.crossingTrace, threads: .serial, allocator: testingEntry("thread-checking")).results.first)
        XCTAssertEqual(serial.selfReported["os_threads_count"], 1)
        XCTAssertEqual(serial.selfReported["cross_thread_frees_count"], 0)
    }

    /// glibc gives a thread that finds the main arena busy an arena of its own: with the ops on
    /// their threads there is more than one (each a 64 MiB reservation: mapped pages jump), on
    /// one thread there is the main arena alone (brk).
    func testGlibcMakesArenasOnlyWhenTheOpsRunOnTheirThreads() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let glibc = try XCTUnwrap(catalog.entry(named: "glibc"))
        let trace = (0..<4).flatMap { thread in (0..<50).map { "\(thread + 1): malloc 0x\(String(thread * 4096 + $0 * 16 + 16, radix: 16)) 64" } }
            .joined(separator: "\n")
        let perThread = try XCTUnwrap(try replay(trace, threads: .perThread, allocator: glibc).results.first)
        let serial = try XCTUnwrap(try replay(trace, threads: .serial, allocator: glibc).results.first)
        XCTAssertEqual(perThread.status, .ok, perThread.detail ?? "")
        XCTAssertEqual(serial.mmSyscalls?["mmap"], 0, "serial: the main arena only")
        XCTAssertGreaterThanOrEqual(perThread.mappedPages?.peak ?? 0, 64 * 256, "per thread: another arena's 64 MiB")
    }

    /// The replay's own thread stacks are mapped and written before the baseline: a thousand
    /// threads that each allocate and free 16 bytes in bss-arena's tail touch no page.
    func testThreadStacksAreNotChargedToTheAllocator() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let arena = try XCTUnwrap(catalog.entry(named: "bss-arena"))
        let trace = (1...1000).map { "\($0): malloc 0x10 16\n\($0): free 0x10" }.joined(separator: "\n")
        let run = try replay(trace, threads: .perThread, allocator: arena)
        let row = try XCTUnwrap(run.results.first)
        XCTAssertEqual(row.status, .ok, row.detail ?? "")
        XCTAssertEqual(run.trace.threads, 1000)
        XCTAssertEqual(row.touchedPages, FinalAndPeak(final: 0, peak: 0))
    }

    /// Page counts of a per-thread replay repeat exactly: one thread runs between two stops, and
    /// the allocators' timers (jemalloc's decay, mimalloc's reset delays) run on the replay's clock,
    /// which counts calls, not time. (On the wall clock, jemalloc's touched peaks over 5 runs of
    /// systemui were 51 pages apart, mimalloc's 29: thread exits start purges whose size followed
    /// the replay's speed.) scudo alone moves, as in serial replay: it shuffles its blocks with a
    /// seed from getrandom(2) (`randomization` in its catalog entry).
    func testPerThreadPageCountsRepeat() throws {
        guard let systemui = TestPaths.sharedTrace("android/systemui.zip") else { return }
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 0, timeoutSeconds: 300, lenient: false, threads: .perThread))
        let allocators = try catalog.select(["glibc", "musl", "slab", "bss-arena", "tcmalloc", "tbbmalloc", "jemalloc", "jemalloc-static",
                                             "mimalloc", "scudo"])
        let first = try benchmark.run(tracePath: systemui, allocators: allocators)
        let second = try benchmark.run(tracePath: systemui, allocators: allocators)
        for (entry, (a, b)) in zip(allocators, zip(first.results, second.results)) {
            XCTAssertEqual(a.status, .ok, "\(a.allocator): \(a.detail ?? "")")
            guard entry.randomization == nil else {
                let (x, y) = (Double(a.touchedPages?.peak ?? 0), Double(b.touchedPages?.peak ?? 0))
                XCTAssertLessThanOrEqual(abs(x - y), max(8, 0.02 * x), "\(a.allocator): \(x) vs \(y)")
                continue
            }
            XCTAssertEqual(a.touchedPages, b.touchedPages, a.allocator)
            XCTAssertEqual(a.mappedPages, b.mappedPages, a.allocator)
            XCTAssertEqual(a.mmSyscalls, b.mmSyscalls, a.allocator)
        }
    }

    /// A per-thread replay's ns/op leaves out its hand-overs between threads, and the row counts
    /// them. Two threads take turns op by op (8000 ops, 7999 changes of thread), so the turn passes
    /// 7999 times, plus 4 through the thread that runs the replay: to the first thread, and back
    /// at the end; and where a thread starts (thread 2, at op 2: 1 → replay → 2 instead of 1 → 2)
    /// or ends (thread 1, at op 7999: 1 → replay → 2). Each pass is a futex wake and a context
    /// switch, microseconds; a malloc or free of 32 bytes is far less: the hand-overs' time per op
    /// exceeds the ops' own, which it could not if ns/op still held it.
    func testPerThreadTimeLeavesTheHandOversOut() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let trace = (0..<2000).flatMap { index -> [String] in
            let (first, second) = ("0x" + String(0x100000 + index * 64, radix: 16), "0x" + String(0x900000 + index * 64, radix: 16))
            return ["1: malloc \(first) 32", "2: malloc \(second) 32", "1: free \(first)", "2: free \(second)"]
        }.joined(separator: "\n")
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 3, timeoutSeconds: 60, lenient: false, threads: .perThread))
        let run = try benchmark.run(tracePath: try writeTrace(trace), allocators: [try XCTUnwrap(catalog.entry(named: "glibc"))])
        let row = try XCTUnwrap(run.results.first)
        XCTAssertEqual(row.status, .ok, row.detail ?? "")
        let handOvers = try XCTUnwrap(row.handOvers, "a per-thread replay reports its hand-overs")
        XCTAssertEqual(handOvers.count, 7999 + 4)
        XCTAssertEqual(handOvers.nsPerOp.runs.count, 3)
        let time = try XCTUnwrap(row.nsPerOp)
        XCTAssertGreaterThan(handOvers.nsPerOp.median, time.median, "ns/op \(time.median), hand-overs \(handOvers.nsPerOp.median) a op")

        let serial = try XCTUnwrap(try replay(trace, threads: .serial, allocator: try XCTUnwrap(catalog.entry(named: "glibc"))).results.first)
        XCTAssertNil(serial.handOvers, "one thread: no hand-overs")
    }

    /// `--threads concurrent`: a thread-safe allocator runs every thread at once (each free still
    /// after its allocation: the replay completes, every op returns); one that is not thread-safe
    /// runs per thread and the row says so; the gate refuses the mode.
    func testConcurrentReplayRunsThreadSafeAllocatorsAtOnceAndTheOthersPerThread() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let trace = (1...8).flatMap { thread in
            (0..<200).flatMap { index -> [String] in
                let pointer = "0x" + String(thread * 0x100000 + index * 64 + 64, radix: 16)
                // Every block is freed by the next thread: 1600 frees that cross threads.
                return ["\(thread): malloc \(pointer) \(index % 300 + 1)", "\(thread % 8 + 1): free \(pointer)"]
            }
        }.joined(separator: "\n")
        let run = try replay(trace, threads: .concurrent, allocator: try XCTUnwrap(catalog.entry(named: "glibc")))
        let glibc = try XCTUnwrap(run.results.first)
        XCTAssertEqual(glibc.status, .ok, glibc.detail ?? "")
        XCTAssertEqual(glibc.threadMode, .concurrent)
        XCTAssertEqual(run.trace.threadMode, .concurrent)
        let arena = try XCTUnwrap(try replay(trace, threads: .concurrent, allocator: try XCTUnwrap(catalog.entry(named: "bss-arena"))).results.first)
        XCTAssertEqual(arena.status, .ok, arena.detail ?? "")
        XCTAssertEqual(arena.threadMode, .perThread, "bss-arena is not thread-safe")

        let check = try runCommand(TestPaths.cli, ["check", "--baseline", TestPaths.packageRoot + "/Benchmarks/baselines", "--threads", "concurrent"])
        XCTAssertEqual(check.status, 64)
        XCTAssertTrue(check.stderr.contains("--threads concurrent is for time"), check.stderr)
    }

    /// A concurrent replay that fails stops every thread: the one waiting for a block that the
    /// failed thread never allocated, and the one whose turn to start (after that wait) never
    /// comes. The row says out of memory; nothing hangs until the timeout.
    func testConcurrentReplayStopsEveryThreadOnAFailure() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let trace = """
            1: malloc 0x10 16
            2: malloc 0x20 16
            1: malloc 0x30 281474976710655
            1: malloc 0x40 16
            2: free 0x40
            3: malloc 0x50 16
            3: free 0x10
            """
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 1, timeoutSeconds: 10, lenient: false, threads: .concurrent))
        let row = try XCTUnwrap(try benchmark.run(tracePath: try writeTrace(trace), allocators: [try XCTUnwrap(catalog.entry(named: "glibc"))]).results.first)
        XCTAssertEqual(row.status, .failed, row.detail ?? "")
        XCTAssertTrue(row.detail?.contains("out of memory") ?? false, row.detail ?? "")
    }

    /// A concurrent replay makes an OS thread and a stack for every recorded thread before the
    /// baseline, so it takes at most 4096: a trace with more is refused up front, exit 65, in one
    /// line naming the file, before any child starts; per thread, the same trace replays.
    func testConcurrentReplayRefusesMoreThreadsThanItMakesUpFront() throws {
        let path = try writeTrace((1...4097).map { "\($0): malloc 0x\(String($0 * 16, radix: 16)) 16" }.joined(separator: "\n"))
        let refused = try runCommand(TestPaths.cli, ["run", "--trace", path, "--allocators", "glibc", "--threads", "concurrent", "--repeat", "0"])
        XCTAssertEqual(refused.status, 65, refused.stderr)
        XCTAssertEqual(refused.stderr.split(separator: "\n").count, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("\(path): 4097 threads: --threads concurrent replays at most 4096"), refused.stderr)
        XCTAssertEqual(refused.stdout, "")
        let perThread = try runCommand(TestPaths.cli, ["run", "--trace", path, "--allocators", "bss-arena", "--threads", "per-thread", "--repeat", "0"])
        XCTAssertEqual(perThread.status, 0, perThread.stderr)
    }

    /// More thread ids than 16 bits hold: the trace parses and replays (serially here; a per-thread
    /// replay of it starts 70,000 threads one after another, 20 s a row on the 2-core machine).
    func testSeventyThousandThreadIdsReplay() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let trace = (1...70_000).map { "\($0): malloc 0x\(String($0 * 16, radix: 16)) 16\n\($0): free 0x\(String($0 * 16, radix: 16))" }
            .joined(separator: "\n")
        let run = try replay(trace, threads: .serial, allocator: try XCTUnwrap(catalog.entry(named: "bss-arena")))
        XCTAssertEqual(run.trace.threads, 70_000)
        XCTAssertEqual(run.results.first?.status, .ok, run.results.first?.detail ?? "")
        XCTAssertEqual(run.results.first?.touchedPages, FinalAndPeak(final: 0, peak: 0))
    }
}
