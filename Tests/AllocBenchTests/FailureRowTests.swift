@testable import AllocBenchHarness
import AllocBenchModel
import XCTest

final class FailureRowTests: XCTestCase {
    private func run(_ names: [String], trace: String, timeout: Double = 30) throws -> [AllocatorResult] {
        let path = try writeTrace(trace)
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 1, timeoutSeconds: timeout, lenient: false))
        return try benchmark.run(tracePath: path, allocators: names.map {
            testingEntry($0, environment: ["ALLOCBENCH_GROUND_TRUTH=4 1 0"])
        }).results
    }

    static let sixMallocs = (1...6).map { "1: malloc 0x\($0)0 32" }.joined(separator: "\n") + "\n"

    func testCrashTimeoutAndFailuresGetRowsAndTheOthersComplete() throws {
        let results = try run(["crashing", "ground-truth", "hanging", "out-of-memory", "misaligned"], trace: Self.sixMallocs, timeout: 2)
        XCTAssertEqual(results.map(\.allocator), ["crashing", "ground-truth", "hanging", "out-of-memory", "misaligned"])
        XCTAssertEqual(results[0].status, .crashed)
        XCTAssertEqual(results[0].detail, "SIGSEGV after op 2")
        XCTAssertEqual(results[1].status, .ok, "a crash in one child does not touch the next")
        XCTAssertEqual(results[2].status, .timedOut)
        XCTAssertEqual(results[2].detail, "timed out after op 1")
        XCTAssertEqual(results[3].status, .failed)
        XCTAssertEqual(results[3].detail, "out of memory at op 4")
        XCTAssertEqual(results[4].status, .failed)
        XCTAssertEqual(results[4].detail, "misaligned block at op 1")
    }

    /// Every failure row names its op, an exit with status 0 in the middle of the replay too.
    func testAChildThatExitsMidReplayNamesTheOp() throws {
        let result = try XCTUnwrap(try run(["exiting"], trace: Self.sixMallocs).first)
        XCTAssertEqual(result.status, .failed)
        XCTAssertEqual(result.detail, "the replay child exited with status 0 after op 2")
    }

    /// A malloc that returns NULL from some op on: the replay records out of memory at that op
    /// before whatever mallocs next (the runtime on its way out) crashes on a NULL of its own.
    func testAMallocThatKeepsReturningNullIsOutOfMemoryNotACrash() throws {
        let library = try MallocLibrary.build(named: "null-from-now-on", malloc: """
            static int broken;
            void *malloc(size_t size) {
                if (size == 123457) broken = 1;
                return broken ? NULL : __libc_malloc(size);
            }
            """)
        let trace = try writeTrace("1: malloc 0x10 100\n1: malloc 0x20 200\n1: malloc 0x30 123457\n1: malloc 0x40 50\n")
        let result = try runCommand(TestPaths.cli, ["--trace", trace, "--preload", "null=" + library, "--allocators", "null", "--repeat", "0"])
        XCTAssertEqual(result.status, 1, result.stderr)
        XCTAssertTrue(result.stdout.contains("null       failed: out of memory at op 3"), result.stdout)
    }

    func testThreadsOfTheChildAreTracedToo() throws {
        let result = try XCTUnwrap(try run(["threaded"], trace: Self.sixMallocs).first)
        XCTAssertEqual(result.status, .ok, "the helper thread's mmap failed: \(result.detail ?? "")")
        XCTAssertGreaterThanOrEqual(result.touchedPages?.peak ?? 0, 8)
        XCTAssertGreaterThanOrEqual(result.mmSyscalls?["mmap"] ?? 0, 2, "the thread's stack and its 8 pages")
    }

    /// A self-report that the child could pass only in part fails the conformance suite, naming
    /// what does not fit, instead of losing statistics on the way to the parent.
    func testASelfReportThatDoesNotFitFailsConformance() throws {
        let result = try runCommand(TestPaths.testingChild, ["conformance", "chatty"])
        XCTAssertEqual(result.status, 4, result.stderr)
        XCTAssertTrue(result.stderr.contains("self-report: 41 statistics; the control block holds 40"), result.stderr)
        XCTAssertTrue(result.stderr.contains("self-report: the name \(String(repeating: "n", count: 60)) is longer than 55 bytes"),
                      result.stderr)
        XCTAssertTrue(result.stderr.contains("self-report before the replay: 9 statistics; the control block holds 8"), result.stderr)
        XCTAssertFalse(result.stderr.contains("alignment") || result.stderr.contains("overlap"), "otherwise conformant: \(result.stderr)")
    }

    func testAModuleAllocatorThatCallsMallocIsFlagged() throws {
        let results = try run(["malloc-calling"], trace: Self.sixMallocs)
        XCTAssertEqual(results.first?.status, .ok)
        XCTAssertGreaterThanOrEqual(results.first?.runtimeMallocDeltaBytes ?? 0, 6 * (32 + 64 * 1024))
    }
}
