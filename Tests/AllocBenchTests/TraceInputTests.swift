@testable import AllocBenchHarness
import Foundation
import XCTest

/// Traces are read in chunks: nothing is held, mapped or decompressed whole, so a bomb fails at
/// its first line and a file that changes while it is read is an error naming it.
final class TraceInputTests: XCTestCase {
    /// 256 MiB of zeros compressed to a few hundred kB: before, the whole of it was decompressed
    /// (and a 2 GB one took 2.1 GB and aborted under `ulimit -v`); now line 1 fails at once.
    func testADecompressionBombFailsAtItsFirstLine() throws {
        let directory = try TestPaths.temporaryDirectory()
        let bomb = directory + "/zeros.txt.gz"
        let made = try runCommand("/bin/sh", ["-c", "head -c 268435456 /dev/zero | gzip -1 > '\(bomb)'"])
        XCTAssertEqual(made.status, 0, made.stderr)
        let started = Date()
        XCTAssertThrowsError(try TraceInput.parse(path: bomb, options: .init())) { error in
            XCTAssertEqual("\(error)", "\(bomb):1: a line longer than 4096 bytes: not a record_allocs trace")
        }
        XCTAssertLessThan(Date().timeIntervalSince(started), 5, "it stops after its first chunk, not after 256 MiB")
    }

    func testAFileThatChangesWhileItIsReadIsAnErrorNamingIt() throws {
        let path = try writeTrace("1: malloc 0x10 16\n1: free 0x10\n")
        // The size it had when it was opened, as if it had since been truncated.
        XCTAssertThrowsError(try TraceInput.readPlain(path, size: 1000) { _ throws(InputError) in }) { error in
            XCTAssertEqual("\(error)", "\(path): the file changed while it was read (1000 bytes when opened, 31 read)")
        }
    }

    func testTextGzipAndZipOfOneTraceParseAlike() throws {
        let text = (1...5000).map { "1: malloc 0x\(String($0, radix: 16))0 \($0 % 500 + 1)" }.joined(separator: "\n") + "\n"
        let plain = try writeTrace(text)
        let directory = (plain as NSString).deletingLastPathComponent
        XCTAssertEqual(try runCommand("/bin/sh", ["-c", "gzip -k -c '\(plain)' > '\(plain).gz'"]).status, 0)
        let whole = try TraceInput.parse(path: plain, options: .init())
        let gzipped = try TraceInput.parse(path: plain + ".gz", options: .init())
        XCTAssertEqual(gzipped.ops.map { $0.size }, whole.ops.map { $0.size })
        XCTAssertEqual(whole.ops.count, 5000)
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory))
    }

    /// A newline in a file name would split the one-line error in two.
    func testAFileNameIsPrintedOnOneLine() throws {
        let directory = try TestPaths.temporaryDirectory()
        let path = directory + "/bad\nname.txt"
        try "not a trace\n".write(toFile: path, atomically: true, encoding: .utf8)
        let result = try runCommand(TestPaths.cli, ["--trace", path, "--repeat", "0"])
        XCTAssertEqual(result.status, 65)
        XCTAssertEqual(result.stderr.split(separator: "\n").count, 1, result.stderr)
        XCTAssertTrue(result.stderr.contains("/bad\\x0aname.txt:1: "), result.stderr)
    }

    /// Streaming: a .gz whose text (480 MB: 40 M lines, nearly all `free 0x0`, which the format
    /// allows and the parser skips) is larger than the parent's whole address-space limit
    /// (`ulimit -v`: setrlimit(RLIMIT_AS), 390 MiB) parses and replays: the text is never held.
    func testAGzipLargerThanTheParentsMemoryLimitParses() throws {
        let directory = try TestPaths.temporaryDirectory()
        let trace = directory + "/large.txt.gz"
        let made = try runCommand("/bin/sh", ["-c", "{ echo '1: malloc 0x10 16'; yes '1: free 0x0' | head -n 40000000; echo '1: free 0x10'; } | gzip -1 > '\(trace)'"])
        XCTAssertEqual(made.status, 0, made.stderr)
        let limited = "ulimit -v 400000; exec '\(TestPaths.cli)' --allocators glibc --repeat 0 --trace '\(trace)'"
        let result = try runCommand("/bin/sh", ["-c", limited])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.hasPrefix("trace \(trace): 2 ops, 1 thread,"), result.stdout)
    }

    /// A trace too large for the address-space limit was a SIGABRT (exit 134) when the op array's
    /// growth failed; it is a clean error naming the file (71), and a small trace under the same
    /// limit still runs. The parent keeps no op array now, only the live set's tables (4 M live
    /// blocks: 161 MiB), so the limit is one those tables pass and djb's run does not.
    func testATraceTooLargeForTheAddressSpaceLimitIsACleanError() throws {
        let directory = try TestPaths.temporaryDirectory()
        let trace = directory + "/four-million.txt"
        XCTAssertTrue(FileManager.default.createFile(atPath: trace, contents: nil))
        let file = try FileHandle(forWritingTo: URL(fileURLWithPath: trace))
        var text = ""
        for index in 1...4_000_000 {
            text += "1: malloc 0x\(String(index * 16, radix: 16)) \(index % 300 + 1)\n"
            if index % 200_000 == 0 {
                file.write(Data(text.utf8))
                text = ""
            }
        }
        try file.close()
        let limited = "ulimit -v 400000; exec '\(TestPaths.cli)' --allocators glibc --repeat 0 --trace"
        let large = try runCommand("/bin/sh", ["-c", "\(limited) '\(trace)'"])
        XCTAssertEqual(large.status, 71, large.stderr)
        XCTAssertTrue(large.stderr.hasPrefix("allocbench: \(trace): out of memory: the parsed trace holds "), large.stderr)
        XCTAssertTrue(large.stderr.hasSuffix("(ulimit -v)\n"), large.stderr)
        let small = try runCommand("/bin/sh", ["-c", "\(limited) '\(TestPaths.bundledTraces)/djb.txt'"])
        XCTAssertEqual(small.status, 0, small.stderr)
    }
}
