@testable import AllocBenchHarness
import CAllocBench
import Glibc
import XCTest

/// What places a replay child's mappings is fixed by the harness, not inherited from whoever runs
/// allocbench (docs/gating.md, "Environment"), and what identifies a third-party row's code is
/// recorded with every run.
final class ChildLayoutTests: XCTestCase {
    /// An unlimited stack would switch the child to the legacy bottom-up layout (and a limit above
    /// 128 MiB would move mmap_base), moving jemalloc's large blocks: perl-wordcount read 324 pages
    /// instead of 323 under `ulimit -s unlimited` before children got a fixed limit.
    func testEveryChildGetsTheDefaultStackLimitWhateverTheParentHas() throws {
        var saved = rlimit()
        XCTAssertEqual(getrlimit(Int32(RLIMIT_STACK.rawValue), &saved), 0)
        defer { setrlimit(Int32(RLIMIT_STACK.rawValue), &saved) }
        var unlimited = saved
        unlimited.rlim_cur = saved.rlim_max
        XCTAssertEqual(setrlimit(Int32(RLIMIT_STACK.rawValue), &unlimited), 0)

        let child = try Subprocess.run(["/bin/sh", "-c", "ulimit -s"], options: Subprocess.Options(environment: []),
                                       timeout: .seconds(60))
        XCTAssertEqual(child.output, "\(AB_CHILD_STACK_LIMIT / 1024)\n")

        var after = rlimit()
        getrlimit(Int32(RLIMIT_STACK.rawValue), &after)
        XCTAssertEqual(after.rlim_cur, unlimited.rlim_cur, "the parent's own limit is left as it was")
    }

    func testEveryRunRecordsTheLibraryBehindEachPreloadRow() throws {
        let catalog = try AllocatorCatalog.discover(in: TestPaths.products)
        let environment = Benchmark.environment(catalog: catalog)
        for name in ["mimalloc", "tcmalloc"] {
            let library = try XCTUnwrap(catalog.entry(named: name)?.expectedMallocProvider, name)
            let identity = try XCTUnwrap(environment.allocatorLibraries?[name], "no identity for \(name)")
            XCTAssertTrue(identity.hasPrefix("lib") && identity.contains(" (fnv1a64 "), identity)
            XCTAssertEqual(identity, SystemFacts.libraryIdentity(library), "the same file reads the same identity")
        }
        XCTAssertNil(environment.allocatorLibraries?["slab"], "a module is identified by the allocbench build, not a library")
        XCTAssertNotNil(environment.transparentHugePages)
        XCTAssertEqual(environment.cores, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    }

    func testALibraryIdentityTellsTwoBuildsOfOneFileNameApart() throws {
        let directory = try TestPaths.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let first = directory + "/a/libx.so.1"
        let second = directory + "/b/libx.so.1"
        for (path, bytes) in [(first, "build one"), (second, "build two")] {
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try bytes.write(toFile: path, atomically: true, encoding: .utf8)
        }
        let one = try XCTUnwrap(SystemFacts.libraryIdentity(first))
        XCTAssertTrue(one.hasPrefix("libx.so.1 (fnv1a64 "), one)
        XCTAssertNotEqual(one, SystemFacts.libraryIdentity(second))
        XCTAssertNil(SystemFacts.libraryIdentity(directory + "/missing.so"))
    }
}
