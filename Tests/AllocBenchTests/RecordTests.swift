import AllocBenchCore
import AllocBenchHarness
import Foundation
import XCTest

/// Records C programs with known allocations through liballocbench-recorder.so and checks the lines.
final class RecordTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = try RecordFixture.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: - One thread: every interposed function, exactly

    private static let everyFunction = #"""
        #define _GNU_SOURCE
        #include <malloc.h>
        #include <stdint.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <unistd.h>

        static volatile size_t huge = SIZE_MAX - 4096;      // malloc fails
        static volatile size_t half = SIZE_MAX / 2 + 1;     // calloc(half, 4) overflows
        static void *volatile null;                         // so that cc cannot turn realloc(NULL, n)
                                                            // into malloc(n) or drop free(NULL)

        int main(int argc, char **argv) {
            if (argc != 2) return 2;
            void *begin = malloc(11111);
            free(begin);
            void *a = malloc(100);
            void *b = calloc(10, 20);
            void *c = realloc(a, 3000);
            void *d = memalign(64, 50);
            void *e = NULL;
            int e_status = posix_memalign(&e, 128, 70);
            void *f = aligned_alloc(256, 512);
            void *g = valloc(100);
            void *h = pvalloc(5000);
            void *i = realloc(null, 40);
            void *j = malloc(huge);
            void *k = calloc(half, 4);
            void *l = reallocarray(NULL, 6, 7);
            void *m = memalign(48, 16);
            free(b); free(c); free(d); free(e); free(f); free(g); free(h);
            free(null);
            void *n = realloc(i, 0);
            free(l);
            free(m);
            void *end = malloc(22222);
            FILE *report = fopen(argv[1], "w");
            fprintf(report, "%d %d\n", gettid(), e_status);
            void *all[] = {begin, a, b, c, d, e, f, g, h, i, j, k, l, m, n, end};
            for (size_t index = 0; index < sizeof all / sizeof *all; index++) fprintf(report, "%p\n", all[index]);
            fclose(report);
            return 0;
        }
        """#

    func testRecordsEveryInterposedFunctionExactly() throws {
        let program = try RecordFixture.compile(Self.everyFunction, named: "every", in: directory)
        let outcome = try RecordFixture.record([program, directory + "/report"], in: directory)
        XCTAssertEqual(outcome.termination, .exited(0))
        XCTAssertEqual(outcome.traces.map(\.path), [directory + "/trace.txt"])

        let report = try RecordFixture.report(directory + "/report")
        let (tid, values) = (report[0], Array(report.dropFirst(2)))
        XCTAssertEqual(report[1], "0", "posix_memalign succeeded")
        XCTAssertEqual(tid, String(outcome.pid), "a single-threaded program's tid is its pid")
        let names = ["begin", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "end"]
        let p = Dictionary(uniqueKeysWithValues: zip(names, values))
        XCTAssertEqual(p["j"], "0x0")
        XCTAssertEqual(p["k"], "0x0")
        XCTAssertEqual(p["n"], "0x0")

        let expected = [
            "malloc \(p["begin"]!) 11111",
            "free \(p["begin"]!)",
            "malloc \(p["a"]!) 100",
            "calloc \(p["b"]!) 10 20",
            "realloc \(p["c"]!) \(p["a"]!) 3000",
            "memalign \(p["d"]!) 64 50",
            "memalign \(p["e"]!) 128 70",        // posix_memalign
            "memalign \(p["f"]!) 256 512",       // aligned_alloc
            "memalign \(p["g"]!) 4096 100",      // valloc: page alignment
            "memalign \(p["h"]!) 4096 8192",     // pvalloc: page alignment, size rounded up to pages
            "realloc \(p["i"]!) 0x0 40",
            "malloc 0x0 \(UInt64.max - 4096)",   // failed
            "calloc 0x0 \(UInt64.max / 2 + 1) 4",  // failed: the product overflows
            "realloc \(p["l"]!) 0x0 42",         // reallocarray(NULL, 6, 7)
            "memalign \(p["m"]!) 64 16",         // alignment 48 rounded up to a power of two
            "free \(p["b"]!)", "free \(p["c"]!)", "free \(p["d"]!)", "free \(p["e"]!)",
            "free \(p["f"]!)", "free \(p["g"]!)", "free \(p["h"]!)",
            "free 0x0",
            "realloc 0x0 \(p["i"]!) 0",          // realloc(i, 0) freed i and returned NULL
            "free \(p["l"]!)",
            "free \(p["m"]!)",
            "malloc \(p["end"]!) 22222",
        ].map { "\(tid): " + $0 }

        let lines = try RecordFixture.lines(of: directory + "/trace.txt")
        let start = try XCTUnwrap(lines.firstIndex(of: expected[0]), "the begin marker was recorded")
        XCTAssertEqual(Array(lines[start..<min(lines.count, start + expected.count)]), expected)
        XCTAssertEqual(outcome.commandTrace?.lineCount, lines.count)

        let parsed = try RecordFixture.parseStrictly(directory + "/trace.txt")
        XCTAssertEqual(parsed.failedAllocationsSkipped, 2)
        XCTAssertEqual(parsed.threadIDs, [UInt32(outcome.pid)])
    }

    // MARK: - Before main

    /// A library's constructor may allocate before the recorder's constructor has run (the order of
    /// constructors across libraries is the loader's); the recorder initializes on that first call.
    func testAllocationsInLibraryConstructorsAreRecorded() throws {
        let library = directory + "/libearly.so"
        try "#include <stdlib.h>\nvoid *early_block;\n__attribute__((constructor)) static void early(void) { early_block = malloc(777); }\n"
            .write(toFile: directory + "/early.c", atomically: true, encoding: .utf8)
        let built = try runCommand("/usr/bin/env", ["cc", "-shared", "-fPIC", "-O0", "-o", library, directory + "/early.c"])
        XCTAssertEqual(built.status, 0, built.stderr)
        let program = directory + "/uses-early"
        try "#include <stdlib.h>\nextern void *early_block;\nint main(void) { free(early_block); return 0; }\n"
            .write(toFile: program + ".c", atomically: true, encoding: .utf8)
        let linked = try runCommand("/usr/bin/env", ["cc", "-O0", "-o", program, program + ".c", library, "-Wl,-rpath," + directory])
        XCTAssertEqual(linked.status, 0, linked.stderr)

        let outcome = try RecordFixture.record([program], in: directory)
        XCTAssertEqual(outcome.termination, .exited(0))
        let lines = try RecordFixture.lines(of: directory + "/trace.txt")
        let allocation = try XCTUnwrap(lines.first { $0.hasSuffix(" 777") })
        let pointer = allocation.split(separator: " ")[2]
        XCTAssertEqual(lines.filter { $0.hasSuffix("free \(pointer)") }.count, 1)
        XCTAssertNoThrow(try RecordFixture.parseStrictly(directory + "/trace.txt"))
    }

    // MARK: - Threads

    private static let threads = #"""
        #define _GNU_SOURCE
        #include <pthread.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <unistd.h>

        enum { THREADS = 4, ROUNDS = 3000 };
        static pid_t tids[THREADS];

        static void *work(void *argument) {
            size_t index = (size_t)argument;
            tids[index] = gettid();
            for (int round = 0; round < ROUNDS; round++) {
                char *block = malloc(1000 + index);
                block[0] = 1;
                free(block);
            }
            return NULL;
        }

        int main(int argc, char **argv) {
            if (argc != 2) return 2;
            pthread_t threads[THREADS];
            for (size_t index = 0; index < THREADS; index++) pthread_create(&threads[index], NULL, work, (void *)index);
            for (size_t index = 0; index < THREADS; index++) pthread_join(threads[index], NULL);
            FILE *report = fopen(argv[1], "w");
            for (size_t index = 0; index < THREADS; index++) fprintf(report, "%d\n", tids[index]);
            fclose(report);
            return 0;
        }
        """#

    func testRecordsEveryThreadWithItsTidAndThreadDone() throws {
        let program = try RecordFixture.compile(Self.threads, named: "threads", in: directory)
        let outcome = try RecordFixture.record([program, directory + "/report"], in: directory)
        XCTAssertEqual(outcome.termination, .exited(0))
        let trace = try XCTUnwrap(outcome.commandTrace)
        XCTAssertEqual(trace.tornLinesDropped, 0)
        XCTAssertNil(trace.recorderError)

        let tids = try RecordFixture.report(directory + "/report")
        XCTAssertEqual(Set(tids).count, 4)
        let lines = try RecordFixture.lines(of: trace.path)
        for (index, tid) in tids.enumerated() {
            let mine = lines.filter { $0.hasPrefix(tid + ": ") }.map { String($0.dropFirst(tid.count + 2)) }
            let size = " \(1000 + index)"
            // Each malloc of this thread's size is followed, on this thread, by the free of that block.
            var rounds = 0
            for (position, line) in mine.enumerated() where line.hasPrefix("malloc ") && line.hasSuffix(size) {
                let pointer = line.split(separator: " ")[1]
                XCTAssertEqual(mine[position + 1], "free \(pointer)", "thread \(tid), line \(position)")
                rounds += 1
            }
            XCTAssertEqual(rounds, 3000, "thread \(tid)")
            XCTAssertEqual(mine.filter { $0 == "thread_done 0x0" }.count, 1, "thread \(tid) ended once")
            // thread_done follows the thread's work (glibc's thread teardown may still free after it).
            let lastRound = try XCTUnwrap(mine.lastIndex { $0.hasPrefix("malloc ") && $0.hasSuffix(size) })
            XCTAssertLessThan(lastRound + 1, try XCTUnwrap(mine.firstIndex(of: "thread_done 0x0")))
        }
        // Frees are reserved before the block is released, allocations after they return: with no
        // realloc, the interleaving of four threads replays strictly.
        let parsed = try RecordFixture.parseStrictly(trace.path)
        XCTAssertEqual(parsed.threadsDone, 4)
        XCTAssertEqual(parsed.threadIDs.count, 5)
    }

    // MARK: - fork, exec, _exit, signals

    private static let forks = #"""
        #define _GNU_SOURCE
        #include <stdio.h>
        #include <stdlib.h>
        #include <sys/wait.h>
        #include <unistd.h>

        int main(int argc, char **argv) {
            if (argc != 2) return 2;
            void *before = malloc(301);
            void *kept = malloc(300);
            pid_t child = fork();
            if (child == 0) {
                void *mine = malloc(302);
                free(mine);
                free(before);          // inherited from the parent
                _exit(0);              // no exit handlers, no flushing
            }
            waitpid(child, NULL, 0);
            void *after = malloc(303);
            free(before);
            FILE *report = fopen(argv[1], "w");
            fprintf(report, "%d %p %p %p\n", child, before, kept, after);
            fclose(report);
            return 5;
        }
        """#

    func testForkedChildWritesItsOwnFileStartingWithTheInheritedHeap() throws {
        let program = try RecordFixture.compile(Self.forks, named: "forks", in: directory)
        let outcome = try RecordFixture.record([program, directory + "/report"], in: directory)
        XCTAssertEqual(outcome.termination, .exited(5))
        XCTAssertEqual(outcome.forwardedExitStatus, 5)
        let report = try RecordFixture.report(directory + "/report")
        let (child, before, kept, after) = (report[0], report[1], report[2], report[3])
        let parent = String(outcome.pid)
        XCTAssertEqual(outcome.traces.map(\.path), [directory + "/trace.txt", directory + "/trace.txt.\(child)"])
        XCTAssertEqual(outcome.traces.map(\.role), [.command, .child])

        let parentLines = try RecordFixture.lines(of: directory + "/trace.txt")
        let ops = parentLines.filter { $0.hasSuffix(" 301") || $0.hasSuffix(" 300") || $0.hasSuffix(" 303") || $0.contains("free \(before)") }
        XCTAssertEqual(ops, ["\(parent): malloc \(before) 301", "\(parent): malloc \(kept) 300",
                             "\(parent): malloc \(after) 303", "\(parent): free \(before)"])
        XCTAssertFalse(parentLines.contains { $0.hasSuffix(" 302") }, "the child's operations stay out of the parent's file")

        let childLines = try RecordFixture.lines(of: directory + "/trace.txt.\(child)")
        XCTAssertTrue(childLines[0].hasPrefix("# forked from \(parent).0 at "), childLines[0])
        XCTAssertTrue(childLines[1].hasPrefix("# inherited "), childLines[1])
        // The inherited blocks come first, on the child's thread, in the parent's allocation order.
        let inherited = childLines.dropFirst(2).prefix { !$0.contains(" 302") }
        XCTAssertEqual(inherited.filter { $0.contains(before) || $0.contains(kept) },
                       ["\(child): malloc \(before) 301", "\(child): malloc \(kept) 300"])
        XCTAssertTrue(inherited.allSatisfy { $0.hasPrefix("\(child): ") })
        let own = Array(childLines.dropFirst(2 + inherited.count))
        XCTAssertEqual(own.count, 3)
        XCTAssertTrue(own[0].hasPrefix("\(child): malloc ") && own[0].hasSuffix(" 302"), own[0])
        XCTAssertEqual(own[1], "\(child): free \(own[0].split(separator: " ")[2])")
        XCTAssertEqual(own[2], "\(child): free \(before)")

        XCTAssertNoThrow(try RecordFixture.parseStrictly(directory + "/trace.txt"))
        XCTAssertNoThrow(try RecordFixture.parseStrictly(directory + "/trace.txt.\(child)"))
    }

    func testFollowNoneRecordsOnlyTheCommand() throws {
        let program = try RecordFixture.compile(Self.forks, named: "forks", in: directory)
        let outcome = try RecordFixture.record([program, directory + "/report"], in: directory, followChildren: false)
        XCTAssertEqual(outcome.termination, .exited(5))
        XCTAssertEqual(outcome.traces.map(\.path), [directory + "/trace.txt"])
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix("trace.txt") }
        XCTAssertEqual(files, ["trace.txt"])
        XCTAssertTrue(try RecordFixture.lines(of: directory + "/trace.txt").contains { $0.hasSuffix(" 303") })
    }

    private static let execs = #"""
        #define _GNU_SOURCE
        #include <stdio.h>
        #include <stdlib.h>
        #include <string.h>
        #include <unistd.h>

        int main(int argc, char **argv) {
            if (argc == 2) {
                malloc(401);                                    // then this program is replaced
                execl(argv[0], argv[0], argv[1], "again", (char *)NULL);
                return 3;
            }
            void *block = malloc(402);
            FILE *report = fopen(argv[1], "w");
            fprintf(report, "%d %p\n", getpid(), block);
            fclose(report);
            return 0;
        }
        """#

    func testExecReplacesTheProcessTraceAndKeepsTheEarlierImage() throws {
        let program = try RecordFixture.compile(Self.execs, named: "execs", in: directory)
        let outcome = try RecordFixture.record([program, directory + "/report"], in: directory)
        XCTAssertEqual(outcome.termination, .exited(0))
        let report = try RecordFixture.report(directory + "/report")
        XCTAssertEqual(report[0], String(outcome.pid))
        XCTAssertEqual(outcome.traces.map(\.path), [directory + "/trace.txt.\(outcome.pid).0", directory + "/trace.txt"])
        XCTAssertEqual(outcome.traces.map(\.role), [.replacedByExec, .command])
        let last = try RecordFixture.lines(of: directory + "/trace.txt")
        XCTAssertTrue(last.contains("\(outcome.pid): malloc \(report[1]) 402"))
        XCTAssertFalse(last.contains { $0.hasSuffix(" 401") })
        let first = try RecordFixture.lines(of: directory + "/trace.txt.\(outcome.pid).0")
        XCTAssertTrue(first.contains { $0.hasPrefix("\(outcome.pid): malloc ") && $0.hasSuffix(" 401") })
        XCTAssertFalse(first.contains { $0.hasSuffix(" 402") })
    }

    private static let killed = #"""
        #define _GNU_SOURCE
        #include <signal.h>
        #include <stdio.h>
        #include <stdlib.h>
        #include <unistd.h>

        int main(void) {
            for (int index = 0; index < 100000; index++) malloc(501);
            raise(SIGKILL);
            return 0;
        }
        """#

    func testNothingRecordedIsLostWhenTheProgramIsKilled() throws {
        let program = try RecordFixture.compile(Self.killed, named: "killed", in: directory)
        let outcome = try RecordFixture.record([program], in: directory)
        XCTAssertEqual(outcome.termination, .signaled(SIGKILL))
        XCTAssertEqual(outcome.forwardedExitStatus, 128 + SIGKILL)
        let lines = try RecordFixture.lines(of: directory + "/trace.txt")
        XCTAssertEqual(lines.filter { $0.hasSuffix(" 501") }.count, 100_000)
        XCTAssertEqual(outcome.commandTrace?.tornLinesDropped, 0)
    }

    // MARK: - Timestamps

    func testTimestampsFollowEveryLineAndThreadDoneHasItsEndTime() throws {
        let program = try RecordFixture.compile(Self.threads, named: "threads", in: directory)
        let outcome = try RecordFixture.record([program, directory + "/report"], in: directory, timestamps: true)
        XCTAssertEqual(outcome.termination, .exited(0))
        let lines = try RecordFixture.lines(of: directory + "/trace.txt")
        var previousStart: [Substring: UInt64] = [:]
        for line in lines {
            let fields = line.split(separator: " ")
            let tid = fields[0]
            if fields[1] == "thread_done" {
                XCTAssertEqual(fields.count, 4, line)
                XCTAssertNotNil(UInt64(fields[3]), line)
                continue
            }
            let normal = ["malloc": 4, "free": 3, "calloc": 5, "memalign": 5, "realloc": 5][String(fields[1])]
            XCTAssertEqual(fields.count, try XCTUnwrap(normal, line) + 2, line)
            let start = try XCTUnwrap(UInt64(fields[fields.count - 2]), line)
            let end = try XCTUnwrap(UInt64(fields[fields.count - 1]), line)
            XCTAssertLessThanOrEqual(start, end, line)
            XCTAssertGreaterThanOrEqual(start, previousStart[tid] ?? 0, "one thread's calls start in order: \(line)")
            previousStart[tid] = start
        }
        let parsed = try RecordFixture.parseStrictly(directory + "/trace.txt")
        XCTAssertEqual(parsed.threadsDone, 4)
    }

    // MARK: - Spool files and errors

    func testTornLinesAreDroppedAndCompleteLinesKept() {
        let zeros = [UInt8](repeating: 0, count: 7)
        var spool = Array("1: malloc 0x10 5\n".utf8)
        spool += Array("1: mal".utf8) + zeros               // its thread died while copying it
        spool += Array("2: free 0x20\n".utf8)
        spool += zeros                                      // reserved, never written
        spool += Array("2: free 0x30\n".utf8)
        spool += Array("1: free 0x10\n".utf8)
        spool += zeros + zeros                              // unused space
        let lines = spool.withUnsafeBytes { RecordSpool.completeLines(in: $0) }
        XCTAssertEqual(String(decoding: lines.text, as: UTF8.self), "1: malloc 0x10 5\n2: free 0x20\n2: free 0x30\n1: free 0x10\n")
        XCTAssertEqual(lines.lineCount, 4)
        XCTAssertEqual(lines.tornLineCount, 2)

        let tornLast = Array("1: free 0x10\n1: malloc 0x".utf8) + zeros
        let last = tornLast.withUnsafeBytes { RecordSpool.completeLines(in: $0) }
        XCTAssertEqual(String(decoding: last.text, as: UTF8.self), "1: free 0x10\n")
        XCTAssertEqual(last.tornLineCount, 1)
    }

    func testNewlinesAreCountedEightBytesAtATime() {
        var generator = SystemRandomNumberGenerator()
        for count in [0, 1, 7, 8, 9, 63, 64, 65, 1000] {
            // Bytes around '\n' (0x0a) and 0x8a, which share its low seven bits.
            let bytes = (0..<count).map { _ in [UInt8(0x0a), 0x8a, 0x0b, 0x09, 0x00, 0xff, 0x61][Int.random(in: 0..<7, using: &generator)] }
            bytes.withUnsafeBufferPointer { buffer in
                for offset in 0..<min(count, 8) {
                    XCTAssertEqual(RecordSpool.newlineCount(buffer.baseAddress! + offset, count - offset),
                                   bytes[offset...].filter { $0 == 0x0a }.count, "count \(count), offset \(offset)")
                }
            }
        }
    }

    func testCommandNotFoundAndMissingLibraryAreReported() throws {
        XCTAssertThrowsError(try RecordFixture.record(["allocbench-no-such-command"], in: directory)) { error in
            XCTAssertEqual((error as? RecordError)?.kind, .commandNotFound)
            XCTAssertEqual("\(error)", "allocbench-no-such-command: command not found")
        }
        let request = RecordRequest(command: ["true"], outputPath: directory + "/trace.txt", libraryPath: directory + "/missing.so")
        XCTAssertThrowsError(try Recorder.record(request)) { error in
            XCTAssertEqual((error as? RecordError)?.kind, .missingInput)
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), [], "no spool directory left behind")
    }
}
