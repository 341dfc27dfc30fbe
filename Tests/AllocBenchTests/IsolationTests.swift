@testable import AllocBenchHarness
import AllocBenchModel
import XCTest

/// jemalloc replaces malloc for its whole process, so it must live in its own child and nowhere else.
final class IsolationTests: XCTestCase {
    func testEachChildRunsOnlyItsOwnMalloc() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let path = try writeTrace("1: malloc 0x10 100\n1: free 0x10\n")
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 0, timeoutSeconds: 60, lenient: false))
        let run = try benchmark.run(tracePath: path, allocators: try catalog.select(["glibc", "jemalloc"]))
        let providers = Dictionary(uniqueKeysWithValues: run.results.map { ($0.allocator, $0.mallocProvider) })
        XCTAssertTrue(providers["glibc"]?.contains("libc.so") == true, "glibc child's malloc comes from \(providers["glibc"] ?? "?")")
        XCTAssertTrue(providers["jemalloc"]?.contains("libjemalloc") == true, "jemalloc child's malloc comes from \(providers["jemalloc"] ?? "?")")
        for result in run.results where result.allocator != "jemalloc" {
            XCTAssertFalse(result.mallocProvider.contains("jemalloc"), result.allocator)
        }
    }

    /// The lean children call no malloc of their own before the baseline: the C library's malloc
    /// first runs inside the replay. For glibc and musl the seed's first malloc therefore creates
    /// the heap (a brk to find the break, one to grow it) — had anything used malloc before the
    /// begin marker, the 1076 bytes would fit in a heap that already existed, with no brk. A
    /// static glibc is the documented exception: its start-up mallocs its directory and library
    /// paths (`_dl_non_dynamic_init`), so its heap exists before `main`. Every row names the file
    /// its malloc came from.
    func testTheLeanChildsMallocIsFirstCalledByTheReplay() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 0, timeoutSeconds: 60, lenient: false))
        let run = try benchmark.run(tracePath: TestPaths.bundledTraces + "/djb.txt",
                                    allocators: try catalog.select(["glibc", "musl", "glibc-static", "jemalloc-static"]))
        let rows = Dictionary(uniqueKeysWithValues: run.results.map { ($0.allocator, $0) })
        for name in ["glibc", "musl"] {
            let row = try XCTUnwrap(rows[name])
            XCTAssertEqual(row.status, .ok, "\(name): \(row.detail ?? "")")
            XCTAssertEqual(row.mmSyscalls?["brk"], 2, "\(name): the replay's first malloc creates the heap")
            XCTAssertGreaterThan(row.touchedPages?.peak ?? 0, 0, name)
        }
        XCTAssertEqual(rows["glibc-static"]?.mmSyscalls?["brk"], 0, "a static glibc's heap exists before main")
        XCTAssertTrue(rows["glibc"]?.mallocProvider.hasSuffix("/libc.so.6") == true, rows["glibc"]?.mallocProvider ?? "")
        for name in ["musl", "glibc-static", "jemalloc-static"] {
            XCTAssertEqual(rows[name]?.mallocProvider, "/memfd:allocbench-lean-\(name) (deleted) (static)")
        }
    }

    func testPreloadedLibrariesReallyRunAndBadPathsAreRefused() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let path = try writeTrace((1...2000).map { "1: malloc 0x\(String($0 * 16, radix: 16)) \($0 % 300 + 1)" }.joined(separator: "\n"))
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 0, timeoutSeconds: 60, lenient: false))
        let run = try benchmark.run(tracePath: path, allocators: try catalog.select(["glibc", "mimalloc", "tcmalloc"]))
        let rows = Dictionary(uniqueKeysWithValues: run.results.map { ($0.allocator, $0) })
        let glibc = try XCTUnwrap(rows["glibc"])
        for name in ["mimalloc", "tcmalloc"] {
            let row = try XCTUnwrap(rows[name])
            XCTAssertEqual(row.status, .ok, "\(name): \(row.detail ?? "")")
            let library = try XCTUnwrap(catalog.entry(named: name)?.expectedMallocProvider)
            XCTAssertTrue(AllocatorCatalog.sameFile(row.mallocProvider, library), "\(name) ran on \(row.mallocProvider)")
            XCTAssertNotEqual(row.mmSyscalls, glibc.mmSyscalls, "\(name)'s syscalls are glibc's: was it really preloaded?")
            XCTAssertEqual(row.selfReported, [:], "\(name): glibc's mallinfo2 says nothing about a preloaded malloc")
            XCTAssertNotEqual(row.touchedPages, glibc.touchedPages, name)
        }

        let missing = try runCommand(TestPaths.cli, ["--preload", "mine=/nonexistent/libmine.so", "--allocators", "mine"])
        XCTAssertEqual(missing.status, 66)
        XCTAssertEqual(missing.stderr, "allocbench: --preload mine=/nonexistent/libmine.so: no such readable file\n")
        let notMalloc = try runCommand(TestPaths.cli, ["--preload", "z=" + AllocatorCatalog.libraryDirectories[0] + "/libz.so.1", "--allocators", "z"])
        XCTAssertEqual(notMalloc.status, 66)
        XCTAssertTrue(notMalloc.stderr.contains("malloc still resolves into"), notMalloc.stderr)
        // Malformed --preloads are usage errors (64); only a missing library is missing input (66).
        let malformed = try runCommand(TestPaths.cli, ["list", "--preload", "nameonly"])
        XCTAssertEqual(malformed.status, 64)
        XCTAssertEqual(malformed.stderr, "allocbench: --preload takes NAME=PATH, not 'nameonly'\n")
        let library = catalog.entry(named: "mimalloc")?.expectedMallocProvider ?? ""
        let builtIn = try runCommand(TestPaths.cli, ["list", "--preload", "glibc=" + library])
        XCTAssertEqual(builtIn.status, 64, builtIn.stderr)
        XCTAssertEqual(builtIn.stderr, "allocbench: --preload glibc: that name is a built-in allocator\n")
        let unselectable = try runCommand(TestPaths.cli, ["list", "--preload", "a,b=" + library])
        XCTAssertEqual(unselectable.status, 64, unselectable.stderr)
        XCTAssertTrue(unselectable.stderr.contains("a name is letters, digits"), unselectable.stderr)
        // A --preload that --allocators does not name still gets its row.
        let named = try runCommand(TestPaths.cli, ["--allocators", "glibc", "--preload", "mine=" + library, "--repeat", "0", "--format", "csv"])
        XCTAssertEqual(named.status, 0, named.stderr)
        XCTAssertEqual(named.stdout.split(separator: "\n").dropFirst().map { $0.split(separator: ",")[1] }, ["glibc", "mine"])
        let explicit = try runCommand(TestPaths.cli, ["--preload", "mi2=" + (catalog.entry(named: "mimalloc")?.expectedMallocProvider ?? ""),
                                                      "--allocators", "mi2", "--repeat", "0", "--format", "csv"])
        XCTAssertEqual(explicit.status, 0, explicit.stderr)
        XCTAssertTrue(explicit.stdout.contains("\nmi2,ok,") || explicit.stdout.contains(",mi2,ok,"), explicit.stdout)
    }

    func testOnlyTheJemallocChildLinksJemalloc() throws {
        for executable in try FileManager.default.contentsOfDirectory(atPath: TestPaths.products)
        where executable.hasPrefix("allocbench") && !executable.contains(".") {
            let needed = try runCommand("/usr/bin/readelf", ["-d", TestPaths.products + "/" + executable]).stdout
            XCTAssertEqual(needed.contains("libjemalloc"), ["allocbench-replay-jemalloc", "allocbench-lean-jemalloc"].contains(executable),
                           executable)
        }
    }
}
