@testable import AllocBenchHarness
import AllocBenchModel
import XCTest

/// LazyFree: pages given back with madvise(MADV_FREE) stay in RssAnon until the kernel reclaims
/// them; the metrics say how many, at the end and at the touched peak, exactly.
final class LazyFreeTests: XCTestCase {
    static let context = Metric.Context(run: nil, pageSize: 4096)

    func measure(mapped: Int, freed: Int, rewritten: Int, extra: Int) throws -> AllocatorResult {
        let path = try writeTrace("1: malloc 0x10 16\n1: free 0x10\n1: malloc 0x20 16\n")
        let benchmark = Benchmark(settings: RunSettings(touch: .none, timedRuns: 0, timeoutSeconds: 60, lenient: false))
        let run = try benchmark.run(tracePath: path, allocators: [
            testingEntry("lazy-free-ground-truth", environment: ["ALLOCBENCH_LAZY_FREE=\(mapped) \(freed) \(rewritten) \(extra)"]),
        ])
        let result = try XCTUnwrap(run.results.first)
        XCTAssertEqual(result.status, .ok, result.detail ?? "")
        return result
    }

    func value(_ metric: Metric, _ result: AllocatorResult) -> Int? {
        metric.read(result, Self.context).map { Int($0) }
    }

    func testLazyFreePagesAreCountedExactlyAtTheEndAndAtTheTouchedPeak() throws {
        // The peak (10 pages) is first seen at the madvise's entry, before anything is lazily free.
        let before = try measure(mapped: 10, freed: 4, rewritten: 0, extra: 0)
        XCTAssertEqual(before.touchedPages, FinalAndPeak(final: 10, peak: 10), "MADV_FREE leaves the pages in RssAnon")
        XCTAssertEqual(value(.lazyFreeFinal, before), 4)
        XCTAssertEqual(value(.lazyFreeAtPeak, before), 0)
        XCTAssertEqual(value(.touchedNotLazyFinal, before), 6)
        XCTAssertEqual(value(.touchedNotLazyPeak, before), 10)

        // Rewritten pages stop being lazily free; the peak (13) comes after the MADV_FREE.
        let after = try measure(mapped: 10, freed: 4, rewritten: 1, extra: 3)
        XCTAssertEqual(after.touchedPages, FinalAndPeak(final: 13, peak: 13))
        XCTAssertEqual(value(.lazyFreeFinal, after), 3)
        XCTAssertEqual(value(.lazyFreeAtPeak, after), 3)
        XCTAssertEqual(value(.touchedNotLazyFinal, after), 10)
        XCTAssertEqual(value(.touchedNotLazyPeak, after), 10)
        XCTAssertEqual(after.mmSyscalls?["madvise"], 1)
    }

    /// glibc gives memory back with munmap, brk and MADV_DONTNEED, never MADV_FREE.
    func testGlibcNeverLeavesLazyFreePages() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 0, timeoutSeconds: 120, lenient: false))
        let run = try benchmark.run(tracePath: TestPaths.bundledTraces + "/sqlite3.txt.gz", allocators: try catalog.select(["glibc"]))
        let glibc = try XCTUnwrap(run.results.first)
        XCTAssertEqual(glibc.status, .ok, glibc.detail ?? "")
        XCTAssertEqual(value(.lazyFreeFinal, glibc), 0)
        XCTAssertEqual(value(.lazyFreeAtPeak, glibc), 0)
        XCTAssertEqual(value(.touchedNotLazyPeak, glibc), glibc.touchedPages?.peak, "without lazy pages the two are the same")
    }
}
