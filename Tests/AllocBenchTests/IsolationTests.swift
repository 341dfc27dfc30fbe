import AllocBenchHarness
import XCTest

/// jemalloc replaces malloc for its whole process, so it must live in its own child and nowhere else.
final class IsolationTests: XCTestCase {
    func testEachChildRunsOnlyItsOwnMalloc() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let path = try writeTrace("1: malloc 0x10 100\n1: free 0x10\n")
        let benchmark = Benchmark(settings: RunSettings(touch: "pages", timedRuns: 0, timeoutSeconds: 60, lenient: false))
        let run = try benchmark.run(tracePath: path, allocators: try catalog.select(["glibc", "jemalloc"]))
        let providers = Dictionary(uniqueKeysWithValues: run.results.map { ($0.allocator, $0.mallocProvider) })
        XCTAssertTrue(providers["glibc"]?.contains("libc.so") == true, "glibc child's malloc comes from \(providers["glibc"] ?? "?")")
        XCTAssertTrue(providers["jemalloc"]?.contains("libjemalloc") == true, "jemalloc child's malloc comes from \(providers["jemalloc"] ?? "?")")
        for result in run.results where result.allocator != "jemalloc" {
            XCTAssertFalse(result.mallocProvider.contains("jemalloc"), result.allocator)
        }
    }

    func testOnlyTheJemallocChildLinksJemalloc() throws {
        for executable in try FileManager.default.contentsOfDirectory(atPath: TestPaths.products)
        where executable.hasPrefix("allocbench") && !executable.contains(".") {
            let needed = try runCommand("/usr/bin/readelf", ["-d", TestPaths.products + "/" + executable]).stdout
            XCTAssertEqual(needed.contains("libjemalloc"), executable == "allocbench-replay-jemalloc", executable)
        }
    }
}

/// Every registered allocator passes the conformance suite in its own child.
final class ConformanceTests: XCTestCase {
    func testEveryRegisteredAllocatorConforms() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        XCTAssertTrue(catalog.entries.contains { $0.name == "glibc" })
        XCTAssertTrue(catalog.entries.contains { $0.name == "jemalloc" })
        for entry in catalog.entries where entry.isAvailable {
            let outcome = ConformanceRunner.run(entry)
            XCTAssertTrue(outcome.passed, outcome.summary)
        }
    }

    func testTheSuiteCatchesABrokenAllocator() throws {
        let outcome = ConformanceRunner.run(testingEntry("misaligned"))
        XCTAssertFalse(outcome.passed)
        XCTAssertTrue(outcome.output.contains("alignment"), outcome.output)
    }
}
