import AllocBenchGate
import AllocBenchHarness
import AllocBenchModel
import Foundation
import XCTest

/// The gate end to end: the real `allocbench` binary replays a fixture trace in real children and
/// the kernel counts the pages.
final class GateCLITests: XCTestCase {
    /// Eight 64 KiB blocks, below glibc's mmap threshold: with `--touch none` the replay writes
    /// nothing into them and glibc touches only its chunk headers; with `--touch pages` every page
    /// of every block is touched. The same trace, a genuinely worse configuration.
    static let blocksTrace = (1...8).map { "1: malloc 0x\(String($0, radix: 16))000 65536" }.joined(separator: "\n") + "\n"

    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("gate-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Self.blocksTrace.write(to: directory.appendingPathComponent("blocks.txt"), atomically: true, encoding: .utf8)
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(at: directory)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    /// Records the glibc baseline of blocks.txt with `touch`.
    func recordBaseline(touch: String) throws {
        let result = try allocbench(["baseline", "update", "--trace", path("blocks.txt"), "--allocators", "glibc",
                                     "--repeat", "0", "--touch", touch, "--output", path("baselines")])
        XCTAssertEqual(result.status, 0, result.standardError)
        XCTAssertEqual(result.standardOutput, "wrote \(path("baselines/blocks.json")) (glibc)\n")
    }

    func check(touch: String, _ extra: [String] = []) throws -> (status: Int32, standardOutput: String, standardError: String) {
        try allocbench(["check", "--baseline", path("baselines"), "--trace", path("blocks.txt"), "--allocators", "glibc",
                        "--repeat", "0", "--touch", touch] + extra)
    }

    func testAnInjectedRegressionExitsTwoAndSaysWhichMetricMovedFromWhatToWhat() throws {
        try recordBaseline(touch: "none")
        let text = try check(touch: "pages")
        XCTAssertEqual(text.status, 2, text.standardOutput + text.standardError)
        XCTAssertTrue(text.standardOutput.hasPrefix("allocbench check: regression (exit 2)\n"), text.standardOutput)
        XCTAssertTrue(text.standardOutput.contains("touch: none (baseline) → pages (now), on blocks"), text.standardOutput)

        let json = try check(touch: "pages", ["--format", "json"])
        XCTAssertEqual(json.status, 2)
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let report = try decoder.decode(GateReport.self, from: Data(json.standardOutput.utf8))
        let touched = try XCTUnwrap(report.metric("blocks", "glibc", "touched_peak"))
        XCTAssertEqual(touched.verdict, .regression)
        let before = try XCTUnwrap(touched.baseline)
        let after = try XCTUnwrap(touched.current)
        XCTAssertGreaterThanOrEqual(after - before, 100, "the eight blocks span 128 pages, untouched until now")
        let line = try XCTUnwrap(text.standardOutput.split(separator: "\n").first { $0.hasPrefix("  touched_peak ") },
                                 "no touched_peak line in\n\(text.standardOutput)")
        XCTAssertTrue(line.contains("\(Int(before)) → \(Int(after)) pages"), String(line))
        XCTAssertTrue(line.contains("+\(Int(after - before)) ("), String(line))
        XCTAssertTrue(line.contains("tolerance ±0") && line.hasSuffix("REGRESSION"), String(line))
    }

    func testTheSameConfigurationPassesAndTheReverseIsAnImprovement() throws {
        try recordBaseline(touch: "pages")
        let same = try check(touch: "pages")
        XCTAssertEqual(same.status, 0, same.standardOutput + same.standardError)
        XCTAssertTrue(same.standardOutput.contains("blocks/glibc: pass"), same.standardOutput)

        let better = try check(touch: "none", ["--format", "markdown"])
        XCTAssertEqual(better.status, 4, better.standardOutput + better.standardError)
        XCTAssertTrue(better.standardOutput.hasPrefix("### ⚠️ allocbench check: improvement beyond tolerance (refresh the baseline) (exit 4)"),
                      better.standardOutput)
        XCTAssertTrue(better.standardOutput.contains("| blocks | glibc | touched_peak |"), better.standardOutput)
    }

    /// Records a baseline of blocks.txt for glibc, slab and jemalloc, then rewrites it with `edit`
    /// (the decoded JSON object) as a baseline taken elsewhere would read.
    func recordBaselineTakenElsewhere(_ edit: (inout [String: Any]) -> Void) throws {
        let result = try allocbench(["baseline", "update", "--trace", path("blocks.txt"), "--allocators", "glibc,slab,jemalloc",
                                     "--repeat", "0", "--output", path("baselines")])
        XCTAssertEqual(result.status, 0, result.standardError)
        let file = path("baselines/blocks.json")
        var object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any])
        edit(&object)
        try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: file))
    }

    func checkThreeAllocators(_ extra: [String] = []) throws -> (status: Int32, standardOutput: String, standardError: String) {
        try allocbench(["check", "--baseline", path("baselines"), "--trace", path("blocks.txt"), "--allocators", "glibc,slab,jemalloc",
                        "--repeat", "0"] + extra)
    }

    func testAnotherKernelBuildStringPassesWithANote() throws {
        try recordBaselineTakenElsewhere { object in
            var environment = object["environment"] as? [String: Any] ?? [:]
            environment["kernel"] = EnvironmentFact.kernelRelease(environment["kernel"] as? String ?? "") + "-another-build-v1"
            object["environment"] = environment
        }
        let result = try checkThreeAllocators()
        XCTAssertEqual(result.status, 0, result.standardOutput + result.standardError)
        XCTAssertTrue(result.standardOutput.contains("-another-build-v1 (baseline) → "), result.standardOutput)
        XCTAssertTrue(result.standardOutput.contains("describes the machine only, not compared"), result.standardOutput)
        for allocator in ["glibc", "slab", "jemalloc"] {
            XCTAssertTrue(result.standardOutput.contains("blocks/\(allocator): pass"), result.standardOutput)
        }
    }

    func testAnotherJemallocFailsOnlyItsRowsAndASlabRegressionIsStillReported() throws {
        try recordBaselineTakenElsewhere { object in
            var environment = object["environment"] as? [String: Any] ?? [:]
            environment["jemalloc"] = "0.0.1-elsewhere"
            object["environment"] = environment
            // One page fewer in the slab's baseline: this run's count is a one-page slab regression.
            var allocators = object["allocators"] as? [String: [String: Double]] ?? [:]
            allocators["slab"]?["touched_peak"]? -= 1
            object["allocators"] = allocators
        }
        let result = try checkThreeAllocators()
        XCTAssertEqual(result.status, 3, result.standardOutput + result.standardError)
        XCTAssertTrue(result.standardOutput.contains("jemalloc: 0.0.1-elsewhere (baseline) → "), result.standardOutput)
        XCTAssertTrue(result.standardOutput.contains("— affects jemalloc rows"), result.standardOutput)
        XCTAssertTrue(result.standardOutput.contains("blocks/jemalloc: environment changed — jemalloc 0.0.1-elsewhere → "), result.standardOutput)
        XCTAssertTrue(result.standardOutput.contains("blocks/glibc: pass"), result.standardOutput)
        XCTAssertTrue(result.standardOutput.contains("blocks/slab: regression"), result.standardOutput)
        let line = try XCTUnwrap(result.standardOutput.split(separator: "\n").first { $0.hasPrefix("  touched_peak ") }, result.standardOutput)
        XCTAssertTrue(line.hasSuffix("REGRESSION") && line.contains("+1 "), String(line))

        let allowed = try checkThreeAllocators(["--allow-env-change"])
        XCTAssertEqual(allowed.status, 2, "with --allow-env-change the slab's regression decides: " + allowed.standardOutput)
    }

    func testAnotherPageSizeFailsEveryRow() throws {
        try recordBaselineTakenElsewhere { object in
            var environment = object["environment"] as? [String: Any] ?? [:]
            environment["page_size"] = 16384
            object["environment"] = environment
        }
        let result = try checkThreeAllocators()
        XCTAssertEqual(result.status, 3, result.standardOutput + result.standardError)
        for allocator in ["glibc", "slab", "jemalloc"] {
            XCTAssertTrue(result.standardOutput.contains("blocks/\(allocator): environment changed — page_size 16384 → "), result.standardOutput)
        }
        XCTAssertTrue(result.standardOutput.contains("— affects every row"), result.standardOutput)
    }

    func testATraceWithoutBaselineFailsClosedWithExitFive() throws {
        try FileManager.default.createDirectory(atPath: path("baselines"), withIntermediateDirectories: true)
        let result = try check(touch: "pages", ["--output", path("report.md"), "--format", "markdown"])
        XCTAssertEqual(result.status, 5, result.standardError)
        XCTAssertEqual(result.standardOutput, "", "the report went to the file")
        XCTAssertTrue(result.standardError.contains("check: baseline missing (exit 5): blocks/glibc: no baseline for this pair"), result.standardError)
        XCTAssertTrue(try String(contentsOfFile: path("report.md"), encoding: .utf8).contains("| blocks | glibc | ❌ no baseline |"))
    }

    func testBadTolerancesAreUsageErrors() throws {
        try recordBaseline(touch: "pages")
        let flag = try check(touch: "pages", ["--tolerance", "touched_peak=lots"])
        XCTAssertEqual(flag.status, 64)
        XCTAssertEqual(flag.standardError,
                       "allocbench: tolerance 'touched_peak=lots': 'lots' is not a tolerance; a part is [+|-]NUMBER or [+|-]NUMBER% with NUMBER ≥ 0 (or inf), or the whole value is off\n")

        try "touched_peak=0\nminor_fault=5%\n".write(toFile: path("baselines/tolerances.txt"), atomically: true, encoding: .utf8)
        let file = try check(touch: "pages")
        XCTAssertEqual(file.status, 64)
        XCTAssertTrue(file.standardError.hasPrefix("allocbench: \(path("baselines/tolerances.txt")):2: tolerance 'minor_fault=5%': unknown metric 'minor_fault'"),
                      file.standardError)
    }

    func testABaselineDirectorysToleranceFileApplies() throws {
        try recordBaseline(touch: "none")
        try ("# pages may move freely here\ntouched_final=off\ntouched_peak=off\nminor_faults=inf\npage_tables_kb_final=inf\npage_tables_kb_peak=inf\n"
             + "process_rss_anon_kb_end=off\nprocess_rss_anon_kb_peak=off\nprocess_vm_pte_kb_end=off\nprocess_vm_pte_kb_peak=off\n")
            .write(toFile: path("baselines/tolerances.txt"), atomically: true, encoding: .utf8)
        let result = try check(touch: "pages")
        XCTAssertEqual(result.status, 0, result.standardOutput + result.standardError)
        XCTAssertTrue(result.standardOutput.contains("tolerances: defaults, \(path("baselines/tolerances.txt"))"), result.standardOutput)
    }

    func testAMalformedBaselineIsBadInput() throws {
        try FileManager.default.createDirectory(atPath: path("baselines"), withIntermediateDirectories: true)
        try "{\"schema\": \"allocbench.baseline/1\", \"allocators\": 3}".write(toFile: path("baselines/blocks.json"), atomically: true, encoding: .utf8)
        let result = try check(touch: "pages")
        XCTAssertEqual(result.status, 65)
        XCTAssertTrue(result.standardError.hasPrefix("allocbench: \(path("baselines/blocks.json")): not a valid allocbench.baseline/1 file"),
                      result.standardError)
    }

    func testAFailedReplayExitsOneAndIsNeverRecorded() throws {
        try recordBaseline(touch: "pages")
        // 2^48 − 1 bytes: no allocator can map 256 TiB, so the replay reports out of memory.
        try "1: malloc 0x1000 281474976710655\n".write(toFile: path("blocks.txt"), atomically: true, encoding: .utf8)
        let recorded = try String(contentsOfFile: path("baselines/blocks.json"), encoding: .utf8)

        let update = try allocbench(["baseline", "update", "--trace", path("blocks.txt"), "--allocators", "glibc", "--repeat", "0",
                                     "--output", path("baselines")])
        XCTAssertEqual(update.status, 1)
        XCTAssertTrue(update.standardError.contains("blocks/glibc: failed: out of memory at op 1"), update.standardError)
        XCTAssertEqual(try String(contentsOfFile: path("baselines/blocks.json"), encoding: .utf8), recorded, "the old baseline stays")

        let result = try check(touch: "pages")
        XCTAssertEqual(result.status, 1, result.standardOutput + result.standardError)
        XCTAssertTrue(result.standardOutput.contains("blocks/glibc: replay failed — current side: failed: out of memory at op 1"), result.standardOutput)
    }

    func testCompareDiffsTwoRunReports() throws {
        for touch in ["none", "pages"] {
            let run = try allocbench(["--trace", path("blocks.txt"), "--allocators", "glibc", "--repeat", "0", "--touch", touch,
                                      "--format", "json", "--output", path("\(touch).json")])
            XCTAssertEqual(run.status, 0, run.standardError)
        }
        let worse = try allocbench(["compare", path("none.json"), path("pages.json")])
        XCTAssertEqual(worse.status, 2, worse.standardOutput + worse.standardError)
        XCTAssertTrue(worse.standardOutput.hasPrefix("allocbench compare: regression (exit 2)\n"), worse.standardOutput)
        let better = try allocbench(["compare", path("pages.json"), path("none.json")])
        XCTAssertEqual(better.status, 4)
        let same = try allocbench(["compare", path("pages.json"), path("pages.json")])
        XCTAssertEqual(same.status, 0)
    }

    // MARK: - Running the binary

    /// `allocbench` is built next to this test bundle by `swift build` / `swift test`.
    func allocbench(_ arguments: [String]) throws -> (status: Int32, standardOutput: String, standardError: String) {
        let executable = AllocatorCatalog.executableDirectory() + "/allocbench"
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw CLIError("no allocbench at \(executable); build the package first (swift build)")
        }
        let result = try runCommand(executable, arguments, environment: ["NO_COLOR": "1"])
        return (result.status, result.stdout, result.stderr)
    }
}

struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
