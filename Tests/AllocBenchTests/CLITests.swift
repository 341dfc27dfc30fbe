import AllocBenchHarness
import AllocBenchModel
import Foundation
@testable import SlabAllocator
import XCTest

/// The command line end to end, as users and CI run it.
final class CLITests: XCTestCase {
    func testSeedTraceByDefault() throws {
        let result = try runCommand(TestPaths.cli, ["--repeat", "1"], workingDirectory: TestPaths.packageRoot)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("trace Benchmarks/traces/djb.txt: 5 ops"), result.stdout)
        XCTAssertTrue(result.stdout.contains("peak live 1076 bytes (ideal 1 page)"), result.stdout)
        for name in ["glibc", "jemalloc"] {
            XCTAssertNotNil(result.stdout.split(separator: "\n").first { $0.hasPrefix(name + " ") }, "no \(name) row:\n\(result.stdout)")
        }
        XCTAssertEqual(result.stderr, "", "no progress noise when stderr is not a terminal")
    }

    /// `--harness-usage` prints allocbench's own peak RSS. Checked against the kernel's figure for
    /// the same process seen from outside: ru_maxrss of wait4(2) in a Python parent, which is the
    /// larger of allocbench's own and its children's (the lean replay children: well under 1 MiB
    /// here), so the two agree to within what allocbench touches after it printed.
    func testHarnessUsageIsTheParentsOwnPeakRSS() throws {
        let script = #"""
            import os, re, sys
            read, write = os.pipe()
            pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, write, 2)])
            os.close(write)
            stderr = b""
            while chunk := os.read(read, 65536):
                stderr += chunk
            _, status, usage = os.wait4(pid, 0)
            print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, *re.search(r"\((\d+) kB\) for (\d+) ops", stderr.decode()).groups())
            """#
        let result = try runCommand("/usr/bin/python3", ["-c", script, TestPaths.cli, "--trace", TestPaths.packageRoot + "/Benchmarks/traces/djb.txt",
                                                         "--allocators", "glibc,bss-arena", "--repeat", "1", "--harness-usage", "--output", "/dev/null"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let fields = result.stdout.split(whereSeparator: \.isWhitespace).compactMap { Int($0) }
        XCTAssertEqual(fields.count, 4, result.stdout)
        guard fields.count == 4 else { return }
        let (exitCode, kernelKilobytes, printedKilobytes, ops) = (fields[0], fields[1], fields[2], fields[3])
        XCTAssertEqual(exitCode, 0)
        XCTAssertEqual(ops, 5)
        XCTAssertGreaterThan(printedKilobytes, 1024, "a Swift process holds megabytes")
        XCTAssertLessThanOrEqual(printedKilobytes, kernelKilobytes)
        XCTAssertLessThanOrEqual(kernelKilobytes - printedKilobytes, 1024, "printed \(printedKilobytes) kB, the kernel says \(kernelKilobytes) kB")
    }

    /// The seed's question, answered: in its lean child (static, musl, one allocator), the bss arena
    /// fits the five blocks into the free tail of the one data page the process has anyway, and the
    /// whole process holds two pages: its stack page and that data page. The slab's 912-byte heap
    /// header leaves room there for four of its five tail slabs: its fifth class takes a page.
    func testTheSeedFitsTheBssTail() throws {
        let result = try runCommand(TestPaths.cli, ["--trace", TestPaths.bundledTraces + "/djb.txt", "--allocators", "bss-arena,slab",
                                                    "--repeat", "0", "--format", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let rows = try XCTUnwrap(RunReport.decode(Data(result.stdout.utf8)).runs.first?.results)
        let arena = try XCTUnwrap(rows.first { $0.allocator == "bss-arena" })
        XCTAssertEqual(arena.touchedPages, FinalAndPeak(final: 0, peak: 0))
        XCTAssertEqual(arena.mappedPages, FinalAndPeak(final: 0, peak: 0))
        XCTAssertEqual(arena.processEndSample?.rssAnonKilobytes, 8, "the stack page and the data page")
        XCTAssertEqual(arena.processPeakSample?.rssAnonKilobytes, 8)
        let tail = try XCTUnwrap(arena.selfReported["bss_tail_bytes"])
        XCTAssertTrue((1136..<4096).contains(tail), "the tail is the rest of the data page: \(tail)")
        XCTAssertEqual(arena.selfReported["bss_tail_in_use_bytes"], 1136, "five blocks of 360, 80, 180, 16, 440 bytes with headers")
        XCTAssertEqual(arena.mmSyscalls?.values.reduce(0, +), 0, "no mm syscall from the begin marker to the end")
        let slab = try XCTUnwrap(rows.first { $0.allocator == "slab" })
        XCTAssertEqual(slab.selfReported["tail_slabs_count"], 4, "four classes in the tail")
        XCTAssertEqual(slab.touchedPages, FinalAndPeak(final: 1, peak: 1), "the fifth class in a section")
        XCTAssertEqual(slab.processEndSample?.rssAnonKilobytes, 12)
        let list = try runCommand(TestPaths.cli, ["list"])
        XCTAssertTrue(list.stdout.contains("bss tail: \(tail) bytes (\(tail - 16) for blocks)"), list.stdout)
    }

    func testJSONIsVersionedAndDecodes() throws {
        let directory = try TestPaths.temporaryDirectory()
        let output = directory + "/r.json"
        let result = try runCommand(TestPaths.cli, [
            "--trace", TestPaths.bundledTraces + "/djb.txt", "--allocators", "glibc,jemalloc",
            "--format", "json", "--output", output, "--repeat", "2",
        ])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, "")
        let report = try RunReport.decode(try Data(contentsOf: URL(fileURLWithPath: output)))
        XCTAssertEqual(report.schema, "allocbench.run/1")
        XCTAssertEqual(report.environment.pageSize, 4096)
        XCTAssertEqual(report.settings.timedRuns, 2)
        let run = try XCTUnwrap(report.runs.first)
        XCTAssertEqual(run.trace.ops, 5)
        XCTAssertEqual(run.trace.idealPages, 1)
        XCTAssertEqual(run.results.map(\.allocator), ["glibc", "jemalloc"])
        for row in run.results {
            XCTAssertEqual(row.status, .ok)
            XCTAssertEqual(row.nsPerOp?.runs.count, 2)
            XCTAssertNotNil(row.touchedPages)
            XCTAssertNotNil(row.mmSyscalls?["brk"])
        }
    }

    func testCSVAndMarkdown() throws {
        let trace = TestPaths.bundledTraces + "/djb.txt"
        let csv = try runCommand(TestPaths.cli, ["--trace", trace, "--allocators", "glibc", "--format", "csv", "--repeat", "1"])
        XCTAssertEqual(csv.status, 0, csv.stderr)
        let lines = csv.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertTrue(lines[0].hasPrefix("trace,allocator,status,"))
        XCTAssertTrue(lines[1].hasPrefix("djb,glibc,ok,"))
        let markdown = try runCommand(TestPaths.cli, ["--trace", trace, "--allocators", "glibc", "--format", "markdown", "--repeat", "1"])
        XCTAssertEqual(markdown.status, 0, markdown.stderr)
        XCTAssertTrue(markdown.stdout.contains("| allocator | touched final |"), markdown.stdout)
        XCTAssertTrue(markdown.stdout.contains("| glibc |"), markdown.stdout)
    }

    func testUsageErrorsExit64() throws {
        for arguments in [["--repeat", "-1"], ["--touch", "some"], ["--format", "xml"], ["--allocators", ","], ["--bogus"],
                          ["--allocators", "nosuch", "--trace", TestPaths.bundledTraces + "/djb.txt"]] {
            let result = try runCommand(TestPaths.cli, arguments)
            XCTAssertEqual(result.status, 64, "\(arguments): \(result.stderr)")
            XCTAssertFalse(result.stderr.isEmpty, "\(arguments)")
        }
    }

    func testBadTraceExits65WithFileAndLineAndWritesNothing() throws {
        let directory = try TestPaths.temporaryDirectory()
        let trace = directory + "/bad.txt"
        try "1: malloc 0x10 8\n1: free 0x10\n1: free 0x10\n".write(toFile: trace, atomically: true, encoding: .utf8)
        let output = directory + "/keep.json"
        try "previous".write(toFile: output, atomically: true, encoding: .utf8)
        let result = try runCommand(TestPaths.cli, ["--trace", trace, "--output", output, "--format", "json"])
        XCTAssertEqual(result.status, 65)
        XCTAssertEqual(result.stderr, "allocbench: \(trace):3: free of 0x10, which is not live\n")
        XCTAssertEqual(try String(contentsOfFile: output, encoding: .utf8), "previous", "a failed run leaves the output alone")
        let lenient = try runCommand(TestPaths.cli, ["--trace", trace, "--lenient", "--allocators", "glibc", "--repeat", "0"])
        XCTAssertEqual(lenient.status, 0, lenient.stderr)
        XCTAssertTrue(lenient.stdout.contains("lenient: skipped 1 anomalous line"), lenient.stdout)
    }

    func testOutputsNeverCrashOrReplaceDevices() throws {
        let trace = TestPaths.bundledTraces + "/djb.txt"
        let directory = try TestPaths.temporaryDirectory()
        XCTAssertEqual(try runCommand("/bin/mknod", [directory + "/null", "c", "1", "3"]).status, 0)
        let device = try runCommand(TestPaths.cli, ["--trace", trace, "--allocators", "glibc", "--repeat", "0", "--output", directory + "/null"])
        XCTAssertEqual(device.status, 0, device.stderr)
        var status = stat()
        XCTAssertEqual(lstat(directory + "/null", &status), 0)
        XCTAssertEqual(status.st_mode & S_IFMT, S_IFCHR, "the device is still a device")
        let full = try runCommand("/bin/sh", ["-c", "'\(TestPaths.cli)' --trace '\(trace)' --allocators glibc --repeat 0 > /dev/full"])
        XCTAssertEqual(full.status, 73)
        XCTAssertEqual(full.stderr, "allocbench: standard output: write: No space left on device\n")
        let missing = try runCommand(TestPaths.cli, ["--trace", trace, "--allocators", "glibc", "--repeat", "0", "--output", "/nonexistent/r.txt"])
        XCTAssertEqual(missing.status, 73)
        XCTAssertTrue(missing.stderr.hasPrefix("allocbench: /nonexistent/r.txt: "), missing.stderr)
    }

    /// A replaced --output keeps its mode: a report kept private (0600) does not become 0644.
    func testAReplacedOutputKeepsItsMode() throws {
        let directory = try TestPaths.temporaryDirectory()
        let output = directory + "/private.csv"
        XCTAssertTrue(FileManager.default.createFile(atPath: output, contents: Data("old".utf8), attributes: [.posixPermissions: 0o600]))
        let result = try runCommand(TestPaths.cli, ["--trace", TestPaths.bundledTraces + "/djb.txt", "--allocators", "glibc",
                                                    "--repeat", "0", "--format", "csv", "--output", output])
        XCTAssertEqual(result.status, 0, result.stderr)
        var status = stat()
        XCTAssertEqual(stat(output, &status), 0)
        XCTAssertEqual(status.st_mode & 0o777, 0o600)
        XCTAssertTrue(try String(contentsOfFile: output, encoding: .utf8).hasPrefix("trace,allocator,"))
    }

    func testTimeoutsOutOfRangeAreUsageErrors() throws {
        for value in ["inf", "nan", "1e300", "0.0001", "0", "-1"] {
            let result = try runCommand(TestPaths.cli, ["--timeout", value, "--repeat", "0"])
            XCTAssertEqual(result.status, 64, "--timeout \(value): \(result.stderr)")
        }
        XCTAssertEqual(try runCommand(TestPaths.cli, ["--trace", "", "--repeat", "0"]).status, 64)
    }

    func testABadSecondTraceStopsBeforeAnyReplay() throws {
        let bad = try writeTrace("1: free 0x10\n")
        let start = Date()
        let result = try runCommand(TestPaths.cli, ["--trace", TestPaths.bundledTraces + "/djb.txt", bad, "--repeat", "3"])
        XCTAssertEqual(result.status, 65)
        XCTAssertEqual(result.stdout, "")
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    }

    func testMissingInputExits66() throws {
        let result = try runCommand(TestPaths.cli, ["--trace", "/nonexistent/trace.txt"])
        XCTAssertEqual(result.status, 66)
        XCTAssertEqual(result.stderr, "allocbench: /nonexistent/trace.txt: no such file or directory\n")
    }

    func testCompressedTraces() throws {
        let directory = try TestPaths.temporaryDirectory()
        let text = try String(contentsOfFile: TestPaths.bundledTraces + "/djb.txt", encoding: .utf8)
        try text.write(toFile: directory + "/djb.txt", atomically: true, encoding: .utf8)
        XCTAssertEqual(try runCommand("/bin/gzip", ["-k", directory + "/djb.txt"]).status, 0)
        let zipPath = directory + "/djb.zip"
        let archive = try XCTUnwrap(try? ZipTestSupport.makeArchive(at: zipPath, entries: ["djb.txt": Data(text.utf8)]))
        _ = archive
        for path in [directory + "/djb.txt.gz", zipPath] {
            let parsed = try TraceInput.parse(path: path, options: .init())
            XCTAssertEqual(parsed.ops.count, 5, path)
            XCTAssertEqual(parsed.peakLiveBytes, 1076, path)
        }
        try ZipTestSupport.makeArchive(at: directory + "/two.zip", entries: ["a.txt": Data(text.utf8), "b.txt": Data(text.utf8)])
        XCTAssertThrowsError(try TraceInput.parse(path: directory + "/two.zip", options: .init())) { error in
            XCTAssertEqual((error as? InputError)?.kind, .badInput)
            XCTAssertTrue("\(error)".contains("exactly one file; this one holds 2"), "\(error)")
        }
        try "not gzip at all, but long enough to look like something".write(toFile: directory + "/fake.gz", atomically: true, encoding: .utf8)
        // zlib reads a file without a gzip header as plain text, so this is a trace error, not a crash.
        XCTAssertThrowsError(try TraceInput.parse(path: directory + "/fake.gz", options: .init())) { error in
            XCTAssertEqual((error as? InputError)?.kind, .badInput, "\(error)")
        }
        let truncated = directory + "/truncated.gz"
        let gz = try Data(contentsOf: URL(fileURLWithPath: directory + "/djb.txt.gz"))
        try gz.prefix(gz.count - 10).write(to: URL(fileURLWithPath: truncated))
        XCTAssertThrowsError(try TraceInput.parse(path: truncated, options: .init())) { error in
            XCTAssertEqual((error as? InputError)?.kind, .badInput, "\(error)")
        }
        // Cut inside the compressed data, where everything before the cut still inflates: the
        // lost tail must be an error, not a shorter trace.
        guard let real = TestPaths.sharedTrace("real/gcc-hello.txt") else { return }
        XCTAssertEqual(try runCommand("/bin/sh", ["-c", "gzip -c '\(real)' > '\(directory)/g.gz'"]).status, 0)
        let whole = try Data(contentsOf: URL(fileURLWithPath: directory + "/g.gz"))
        try whole.prefix(whole.count - 1000).write(to: URL(fileURLWithPath: directory + "/cut.gz"))
        XCTAssertThrowsError(try TraceInput.parse(path: directory + "/cut.gz", options: .init())) { error in
            XCTAssertTrue("\(error)".contains("truncated or corrupt gzip stream"), "\(error)")
        }
    }

    func testEveryRealTraceReplays() throws {
        guard let directory = TestPaths.sharedTrace("real") else { return }
        let traces = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".txt") }.sorted()
        XCTAssertGreaterThanOrEqual(traces.count, 9)
        let result = try runCommand(TestPaths.cli, ["--trace"] + traces.map { directory + "/" + $0 } + ["--repeat", "1", "--format", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try RunReport.decode(Data(result.stdout.utf8))
        XCTAssertEqual(report.runs.count, traces.count)
        for run in report.runs {
            for row in run.results {
                XCTAssertEqual(row.status, .ok, "\(run.trace.name) \(row.allocator): \(row.detail ?? "")")
                XCTAssertGreaterThanOrEqual(row.touchedPages?.peak ?? -1, 0)
                XCTAssertGreaterThanOrEqual(row.touchedPages?.peak ?? 0, row.touchedPages?.final ?? 0)
                XCTAssertGreaterThanOrEqual(row.mappedPages?.peak ?? 0, row.mappedPages?.final ?? 0)
            }
        }
    }

    func testSystemUIThroughGlibcAndJemalloc() throws {
        guard let trace = TestPaths.sharedTrace("android/systemui.zip") else { return }
        // The recording interleaves 393 threads; it is consistent enough to replay strictly.
        let result = try runCommand(TestPaths.cli, ["--trace", trace, "--allocators", "glibc,jemalloc", "--repeat", "1", "--format", "json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let run = try XCTUnwrap(RunReport.decode(Data(result.stdout.utf8)).runs.first)
        XCTAssertEqual(run.trace.threads, 393)
        XCTAssertGreaterThan(run.trace.ops, 750_000)
        XCTAssertEqual(run.trace.idealPages, 2550)
        for row in run.results {
            XCTAssertEqual(row.status, .ok, row.detail ?? "")
            // Real allocators cannot beat the ideal, and do not cost twice it on this workload.
            let overhead = try XCTUnwrap(row.overhead)
            XCTAssertGreaterThanOrEqual(overhead, 1.0, row.allocator)
            XCTAssertLessThan(overhead, 2.0, row.allocator)
        }
    }

    func testListShowsEveryAllocator() throws {
        let result = try runCommand(TestPaths.cli, ["list"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("glibc"))
        XCTAssertTrue(result.stdout.contains("jemalloc 5."), result.stdout)
    }
}
