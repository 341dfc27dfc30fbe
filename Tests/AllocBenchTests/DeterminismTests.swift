@testable import AllocBenchHarness
import AllocBenchModel
import Foundation
import XCTest

/// With address-space randomization off (the default), a replay's page counts repeat exactly.
final class DeterminismTests: XCTestCase {
    func testPageCountsRepeatExactly() throws {
        guard let trace = TestPaths.sharedTrace("real/dogfood.txt") else { return }
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 0, timeoutSeconds: 120, lenient: false))
        let allocators = try catalog.select([])
        let first = try benchmark.run(tracePath: trace, allocators: allocators)
        let second = try benchmark.run(tracePath: trace, allocators: allocators)
        XCTAssertEqual(first.results.map(\.allocator), allocators.map(\.name))
        XCTAssertEqual(second.results.map(\.allocator), allocators.map(\.name))
        XCTAssertEqual(allocators.filter { $0.randomization != nil }.map(\.name), ["scudo"],
                       "only scudo randomizes its layout; its gate tolerances say by how much")
        for (entry, (a, b)) in zip(allocators, zip(first.results, second.results)) {
            // Two failed rows have equal (absent) numbers: only measured rows can prove anything.
            XCTAssertEqual(a.status, .ok, "\(a.allocator): \(a.detail ?? "")")
            XCTAssertEqual(b.status, .ok, "\(b.allocator): \(b.detail ?? "")")
            guard entry.randomization == nil else { continue }
            XCTAssertNotNil(a.touchedPages, a.allocator)
            XCTAssertEqual(a.touchedPages, b.touchedPages, a.allocator)
            XCTAssertEqual(a.mappedPages, b.mappedPages, a.allocator)
            XCTAssertEqual(a.mmSyscalls, b.mmSyscalls, a.allocator)
            XCTAssertEqual(a.pageTablesKilobytes, b.pageTablesKilobytes, a.allocator)
        }
    }

    /// The replay's clock: from the start of the replay to its end, clock_gettime in a replay
    /// child advances 1 ns a call, for a library preloaded into it too. A malloc that reads
    /// CLOCK_MONOTONIC on every call counts the calls whose reading is exactly 1 ns after the one
    /// before (into a shared file mapping, one file per process: the child ends with _exit, so no
    /// destructor runs). On the wall clock two calls with a malloc between them are never 1 ns
    /// apart; under the replay's clock every malloc of the replay is, in the traced run and the
    /// timed one alike.
    func testTheReplaysClockAdvancesOneNanosecondACall() throws {
        let directory = try TestPaths.temporaryDirectory()
        let library = try MallocLibrary.build(named: "clocked", malloc: """
            #include <fcntl.h>
            #include <stdio.h>
            #include <sys/mman.h>
            #include <time.h>
            static long long *counts;  // [0] calls 1 ns after the one before, [1] calls, [2] the last reading
            void *malloc(size_t size) {
                if (counts == NULL) {
                    char path[256];
                    snprintf(path, sizeof path, "\(directory)/counts-%d", (int)getpid());
                    int descriptor = open(path, O_RDWR | O_CREAT, 0644);
                    if (descriptor < 0 || ftruncate(descriptor, 4096) != 0) return NULL;
                    counts = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, descriptor, 0);
                    close(descriptor);
                }
                struct timespec now;
                clock_gettime(CLOCK_MONOTONIC, &now);
                long long reading = now.tv_sec * 1000000000LL + now.tv_nsec;
                if (reading - counts[2] == 1) counts[0]++;
                counts[1]++;
                counts[2] = reading;
                return __libc_malloc(size);
            }
            """)
        let mallocs = 300
        let trace = (0..<mallocs).flatMap { index -> [String] in
            let pointer = "0x" + String(0x10000 + index * 64, radix: 16)
            return ["1: malloc \(pointer) \(index % 200 + 8)", "1: free \(pointer)"]
        }.joined(separator: "\n")
        let run = try runCommand(TestPaths.cli, ["run", "--trace", try writeTrace(trace), "--preload", "clocked=" + library,
                                                 "--allocators", "clocked", "--repeat", "1", "--threads", "serial"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("counts-") }
        XCTAssertGreaterThanOrEqual(files.count, 2, "the traced run and the timed run: \(files)")
        var replays = 0
        for file in files {
            let data = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + file))
            let counts = data.withUnsafeBytes { Array($0.bindMemory(to: Int64.self).prefix(2)) }
            // Children that never replay (allocbench asks one which malloc it runs) count nothing.
            if counts[1] >= Int64(mallocs) { replays += 1 } else { continue }
            XCTAssertGreaterThanOrEqual(counts[0], Int64(mallocs - 1), "\(file): \(counts[0]) of \(counts[1]) calls 1 ns apart")
        }
        XCTAssertEqual(replays, 2, "\(files)")
    }

    /// CI clones the package somewhere else than a developer does, and its shell exports other
    /// variables: neither may move a page. (Before the child stopped reading `CommandLine.arguments`,
    /// the heap held a copy of argv[0], and a clone 6 characters deeper made python3-json cost
    /// glibc 34 pages more.)
    func testPageCountsDoNotDependOnTheChildsPathOrTheCallersEnvironment() throws {
        let trace = TestPaths.bundledTraces + "/python3-json.txt.gz"
        let deeper = try TestPaths.temporaryDirectory() + "/a-directory-whose-name-makes-the-path-of-the-child-much-longer"
        try FileManager.default.createDirectory(atPath: deeper, withIntermediateDirectories: true)
        for child in try FileManager.default.contentsOfDirectory(atPath: TestPaths.products) where child.hasPrefix("allocbench-lean") {
            try FileManager.default.copyItem(atPath: TestPaths.products + "/" + child, toPath: deeper + "/" + child)
        }
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 0, timeoutSeconds: 120, lenient: false))
        let here = try benchmark.run(tracePath: trace, allocators: try AllocatorCatalog.discover(in: TestPaths.products).select([]))

        setenv("ALLOCBENCH_TEST_NOISE", String(repeating: "x", count: 3000), 1)
        setenv("MALLOC_ARENA_MAX", "1", 1)
        defer {
            unsetenv("ALLOCBENCH_TEST_NOISE")
            unsetenv("MALLOC_ARENA_MAX")
        }
        XCTAssertFalse(ReplayRunner.childEnvironment(adding: []).contains { $0.hasPrefix("ALLOCBENCH_TEST_NOISE=") || $0.hasPrefix("MALLOC_") })
        let there = try benchmark.run(tracePath: trace, allocators: try AllocatorCatalog.discover(in: deeper).select([]))

        XCTAssertEqual(here.results.map(\.allocator), there.results.map(\.allocator))
        XCTAssertGreaterThanOrEqual(here.results.count, 4)
        let randomized = Set(try AllocatorCatalog.discover(in: TestPaths.products).entries.filter { $0.randomization != nil }.map(\.name))
        for (a, b) in zip(here.results, there.results) {
            XCTAssertEqual(a.status, .ok, a.allocator)
            guard !randomized.contains(a.allocator) else { continue }
            // Static children report their own path as the provider; the copies' paths differ.
            XCTAssertTrue(b.mallocProvider == a.mallocProvider || (a.mallocProvider.hasSuffix(" (static)") && b.mallocProvider.hasSuffix(" (static)")),
                          "\(a.allocator): \(a.mallocProvider) vs \(b.mallocProvider)")
            XCTAssertEqual(a.touchedPages, b.touchedPages, a.allocator)
            XCTAssertEqual(a.mappedPages, b.mappedPages, a.allocator)
            XCTAssertEqual(a.mmSyscalls, b.mmSyscalls, a.allocator)
        }
    }
}
