import AllocBenchCore
import AllocBenchHarness
import Foundation
import XCTest

/// `allocbench convert --from mtrace`: real glibc mtrace logs, and malformed ones.
final class RecordMtraceTests: XCTestCase {
    private var directory = ""

    override func setUpWithError() throws {
        directory = try RecordFixture.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static let traced = #"""
        #define _GNU_SOURCE
        #include <malloc.h>
        #include <mcheck.h>
        #include <stdint.h>
        #include <stdio.h>
        #include <stdlib.h>

        static volatile size_t huge = SIZE_MAX - 4096;

        int main(int argc, char **argv) {
            if (argc != 2) return 2;
            void *early = malloc(77);          // allocated before tracing starts
            void *early2 = malloc(88);
            mtrace();
            void *a = malloc(10);
            void *b = calloc(3, 7);
            void *c = realloc(a, 100);
            void *d = memalign(64, 50);
            void *e = realloc(early2, 5000);
            void *f = malloc(huge);
            void *g = realloc(b, huge);
            void *z = malloc(0);
            free(early);
            free(c);
            free(d);
            free(e);
            free(z);
            free(NULL);
            void *h = realloc(b, 0);
            muntrace();
            FILE *report = fopen(argv[1], "w");
            fprintf(report, "%p %p %p %p %p %p %p %p %p\n", a, b, c, d, e, f, g, z, h);
            fclose(report);
            return 0;
        }
        """#

    /// glibc's own log of a program with known allocations, converted exactly.
    func testConvertsARealMtraceLog() throws {
        let program = try RecordFixture.compile(Self.traced, named: "traced", in: directory)
        let log = directory + "/log.mtrace"
        let run = try runCommand(program, [directory + "/report"],
                                 environment: ["MALLOC_TRACE": log, "LD_PRELOAD": "libc_malloc_debug.so.0"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let logText = try String(contentsOfFile: log, encoding: .utf8)
        XCTAssertTrue(logText.hasPrefix("= Start\n"), logText)
        XCTAssertTrue(logText.hasSuffix("= End\n"), logText)
        XCTAssertTrue(logText.contains("] < 0x") && logText.contains("] > 0x") && logText.contains("] ! 0x"), logText)

        let report = try RecordFixture.report(directory + "/report")
        let (a, b, c, d, e, f, g, z, h) = (report[0], report[1], report[2], report[3], report[4], report[5], report[6], report[7], report[8])
        XCTAssertEqual([f, g, h], ["0x0", "0x0", "0x0"])
        let huge = UInt64.max - 4096

        let output = directory + "/trace.txt"
        let (text, summary) = try MtraceConverter.convert(inputPath: log, outputPath: output)
        XCTAssertEqual(try String(contentsOfFile: output, encoding: .utf8), String(decoding: text, as: UTF8.self))
        XCTAssertEqual(try RecordFixture.lines(of: output), [
            "# allocbench convert --from mtrace log.mtrace: tid 1, every allocation as malloc",
            "1: malloc \(a) 10",
            "1: malloc \(b) 21",               // calloc(3, 7)
            "1: realloc \(c) \(a) 100",
            "1: malloc \(d) 50",               // memalign(64, 50)
            "1: malloc \(e) 5000",             // realloc of a block allocated before mtrace()
            "1: malloc 0x0 \(huge)",           // + (nil)
            "1: realloc 0x0 \(b) \(huge)",     // ! (failed realloc; b stays)
            "1: malloc \(z) 0",                // %#lx prints 0 without 0x
            "1: free \(c)",                    // free(early) is dropped
            "1: free \(d)",
            "1: free \(e)",
            "1: free \(z)",
            "1: free \(b)",                    // realloc(b, 0)
        ])
        var expected = MtraceConverter.Summary()
        expected.inputLines = logText.split(separator: "\n").count
        expected.operations = 13
        expected.freesOfUntracedBlocks = 1
        expected.reallocsOfUntracedBlocks = 1
        expected.failedAllocations = 2
        XCTAssertEqual(summary, expected)

        let parsed = try RecordFixture.parseStrictly(output)
        XCTAssertEqual(parsed.threadIDs, [1])
        XCTAssertEqual(parsed.failedAllocationsSkipped, 2)
        XCTAssertEqual(parsed.finalLiveBytes, 0)
    }

    /// Callers as glibc prints them: a bare address, a file, a symbol, a file name with spaces.
    func testCallerPrefixesAndOperationsWithoutOne() throws {
        let log = """
            = Start
            @ [0x4005d0] + 0x1000 0x10
            @ /lib/x86_64-linux-gnu/libc.so.6:(__libc_start_main+0x80)[0x7f0000001234] + 0x2000 0x20
            @ /tmp/my prog] + x:[0x11c0] < 0x1000
            @ /tmp/my prog] + x:[0x11c0] > 0x3000 0x30
            - 0x2000
            @ ./a.out:(main-0x10)[0x401000] - 0x3000
            = End

            """
        let converted = try convert(log)
        XCTAssertEqual(converted, """
            1: malloc 0x1000 16
            1: malloc 0x2000 32
            1: realloc 0x3000 0x1000 48
            1: free 0x2000
            1: free 0x3000

            """)
        XCTAssertNoThrow(try TraceParser.parse(Array(converted.utf8)))
    }

    func testMalformedLogsNameTheLine() throws {
        let cases: [(log: String, line: Int, message: String)] = [
            ("= Start\n+ 0x10 0x8\n* 0x10\n", 3, "expected an mtrace line ('= ', '@ ', or one of + - < > ! and a space), found '* 0x10'"),
            ("+ 0x10\n", 1, "expected '+ <pointer> <size>', found '+ 0x10'"),
            ("+ 0x10 16\n", 1, "expected '+ <pointer> <size>' with a 0x size, found '+ 0x10 16'"),
            ("+ 10 0x8\n", 1, "expected '+ <pointer> <size>' with a 0x pointer or (nil), found '+ 10 0x8'"),
            ("- 0x10 0x8\n", 1, "expected '- <pointer>' and nothing after it, found '- 0x10 0x8'"),
            ("+ 0x10 0x8\n< 0x10\n- 0x10\n", 2, "'< 0x10' (realloc) is followed by '- 0x10' at line 3, not by '> <new> <size>'"),
            ("+ 0x10 0x8\n< 0x10\n", 2, "'< 0x10' (realloc) is not followed by its '> <new> <size>' line"),
            ("= Start\n> 0x20 0x8\n", 2, "'>' (realloc result) without the '< <old pointer>' line before it"),
            ("@ [0x4005d0] 0x10\n", 1, "expected '@ <caller> <op> ...' with <op> one of + - < > !, found '@ [0x4005d0] 0x10'"),
        ]
        for (log, line, message) in cases {
            XCTAssertThrowsError(try convert(log), log) { error in
                XCTAssertEqual(error as? TraceError, TraceError(line: line, message: message), log)
            }
        }
    }

    func testMultiThreadedInterleavingIsCountedNotFatal() throws {
        let (text, summary) = try Array("+ 0x10 0x8\n+ 0x10 0x8\n".utf8).withUnsafeBytes { try MtraceConverter.convert($0) }
        XCTAssertEqual(summary.pointersReturnedWhileLive, 1)
        XCTAssertEqual(summary.operations, 2)
        XCTAssertThrowsError(try TraceParser.parse(text))
        XCTAssertNoThrow(try TraceParser.parse(text, options: .init(lenient: true)))
    }

    /// The CLI: line-numbered errors with exit 65, 66 for a missing log, and nothing half-written.
    func testConvertCommandErrorsAndAtomicOutput() throws {
        let cli = RecordFixture.productsDirectory + "/allocbench"
        let bad = directory + "/bad.mtrace"
        try "= Start\n+ 0x10 0x8\n+ 0x20\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let output = directory + "/out.txt"
        try "keep me\n".write(toFile: output, atomically: true, encoding: .utf8)

        let malformed = try runCommand(cli, ["convert", "--from", "mtrace", bad, "-o", output])
        XCTAssertEqual(malformed.status, 65)
        XCTAssertEqual(malformed.stderr, "allocbench: \(bad):3: expected '+ <pointer> <size>', found '+ 0x20'\n")
        XCTAssertEqual(try String(contentsOfFile: output, encoding: .utf8), "keep me\n", "a failed conversion leaves the output alone")

        let missing = try runCommand(cli, ["convert", "--from", "mtrace", directory + "/none.mtrace", "-o", output])
        XCTAssertEqual(missing.status, 66)
        XCTAssertTrue(missing.stderr.hasPrefix("allocbench: \(directory)/none.mtrace: no such file"), missing.stderr)

        let good = directory + "/good.mtrace"
        try "= Start\n@ [0x1] + 0x10 0x8\n@ [0x1] - 0x10\n= End\n".write(toFile: good, atomically: true, encoding: .utf8)
        let converted = try runCommand(cli, ["convert", "--from", "mtrace", good, "-o", output])
        XCTAssertEqual(converted.status, 0, converted.stderr)
        XCTAssertEqual(try RecordFixture.lines(of: output).dropFirst(), ["1: malloc 0x10 8", "1: free 0x10"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory).sorted(),
                       ["bad.mtrace", "good.mtrace", "out.txt"], "no temporary file left behind")

        let usage = try runCommand(cli, ["convert", "--from", "valgrind", good])
        XCTAssertEqual(usage.status, 64)
    }

    private func convert(_ log: String) throws -> String {
        let (text, _) = try Array(log.utf8).withUnsafeBytes { try MtraceConverter.convert($0) }
        let lines = String(decoding: text, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        XCTAssertTrue(lines[0].hasPrefix("# allocbench convert --from mtrace"))
        return lines.dropFirst().joined(separator: "\n")
    }
}
