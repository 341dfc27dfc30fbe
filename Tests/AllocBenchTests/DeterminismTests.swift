@testable import AllocBenchHarness
import AllocBenchModel
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
