import AllocBenchHarness
import AllocBenchModel
import Foundation
import XCTest

/// `--shard K/N` and `merge` end to end, through the real CLI on bundled traces: three shards put
/// back together are the unsharded run, page for page.
final class ShardedRunTests: XCTestCase {
    /// The small bundled traces: a few seconds for every allocator with --repeat 1.
    static let traces = ["djb.txt", "sort.txt.gz", "python3-json.txt.gz"].map { TestPaths.bundledTraces + "/" + $0 }

    var directory: String!

    override func setUpWithError() throws {
        directory = try TestPaths.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try FileManager.default.removeItem(atPath: directory)
    }

    func path(_ name: String) -> String { directory + "/" + name }

    func allocbench(_ arguments: [String]) throws -> CommandResult {
        try runCommand(TestPaths.cli, arguments, environment: ["NO_COLOR": "1"])
    }

    /// Every allocator whose page counts repeat exactly (scudo randomizes its layout: two runs of
    /// it differ, sharded or not).
    static let allocators: [String] = {
        let catalog = try? AllocatorCatalog.discover(in: TestPaths.products)
        return (catalog?.entries ?? []).filter { $0.isAvailable && $0.randomization == nil }.map(\.name)
    }()

    func run(_ output: String, _ extra: [String] = []) throws -> RunReport {
        let result = try allocbench(["--trace"] + Self.traces + ["--repeat", "1", "--format", "json", "--output", path(output),
                                                                 "--allocators", Self.allocators.joined(separator: ",")] + extra)
        XCTAssertEqual(result.status, 0, result.stderr)
        return try RunReport.decode(Data(contentsOf: URL(fileURLWithPath: path(output))))
    }

    /// Every pair's page counts and mm syscalls, keyed "trace/allocator".
    func pageCounts(_ report: RunReport) -> [String: [String]] {
        var counts: [String: [String]] = [:]
        for run in report.runs {
            for row in run.results {
                counts["\(run.trace.name)/\(row.allocator)"] = [
                    "\(row.status)", "\(String(describing: row.touchedPages))", "\(String(describing: row.mappedPages))",
                    "\(row.mmSyscalls?.sorted { $0.key < $1.key } ?? [])",
                ]
            }
        }
        return counts
    }

    func testThreeShardsMergedEqualTheUnshardedRunPageForPage() throws {
        let whole = try run("whole.json")
        var shardPairs: [Set<String>] = []
        for index in 1...3 {
            let shard = try run("shard-\(index).json", ["--shard", "\(index)/3"])
            XCTAssertEqual(shard.shard?.description, "\(index)/3")
            XCTAssertEqual(shard.shard?.traces, ["djb", "sort", "python3-json"])
            shardPairs.append(Set(pageCounts(shard).keys))
        }
        for (one, other) in [(0, 1), (0, 2), (1, 2)] {
            XCTAssertTrue(shardPairs[one].isDisjoint(with: shardPairs[other]), "shards \(one + 1) and \(other + 1) share a pair")
        }
        XCTAssertEqual(shardPairs.reduce(Set()) { $0.union($1) }, Set(pageCounts(whole).keys), "the shards cover every pair")

        let merge = try allocbench(["merge", path("shard-1.json"), path("shard-2.json"), path("shard-3.json"), "-o", path("merged.json"),
                                    "--report", path("merged.html")])
        XCTAssertEqual(merge.status, 0, merge.stderr)
        let merged = try RunReport.decode(Data(contentsOf: URL(fileURLWithPath: path("merged.json"))))
        XCTAssertEqual(pageCounts(merged), pageCounts(whole))
        XCTAssertEqual(merged.runs.map(\.trace.name), whole.runs.map(\.trace.name), "the unsharded order of traces")
        XCTAssertEqual(merged.runs.map { $0.results.map(\.allocator) }, whole.runs.map { $0.results.map(\.allocator) },
                       "and of allocators")
        XCTAssertNil(merged.shard)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("merged.html")), "--report renders the merged result")

        // The gate reads the merged result like any run: the unsharded run as its baseline passes.
        let compare = try allocbench(["compare", path("whole.json"), path("merged.json")])
        XCTAssertEqual(compare.status, 0, compare.stdout + compare.stderr)

        // A shard given twice is one line and exit 65.
        let twice = try allocbench(["merge", path("shard-1.json"), path("shard-1.json")])
        XCTAssertEqual(twice.status, 65)
        XCTAssertEqual(twice.stderr, "allocbench: shard 1/3 is in both \(path("shard-1.json")) and \(path("shard-1.json"))\n")
    }

    func testCheckGatesAResultsFileAgainstBaselinesItRecordedAndAShardItsOwnPairs() throws {
        let update = try allocbench(["baseline", "update", "--trace"] + Self.traces
            + ["--repeat", "0", "--output", path("baselines"), "--allocators", Self.allocators.joined(separator: ",")])
        XCTAssertEqual(update.status, 0, update.stderr)
        _ = try run("shard-2.json", ["--repeat", "0", "--shard", "2/3"])
        let check = try allocbench(["check", "--baseline", path("baselines"), "--results", path("shard-2.json")])
        XCTAssertEqual(check.status, 0, check.stdout + check.stderr)
        XCTAssertTrue(check.stdout.contains("note: shard 2/3: "), check.stdout)
    }

    func testABadShardIsOneLineOfUsage() throws {
        for (shard, reason) in [("0/3", "K must be 1 to 3"), ("4/3", "K must be 1 to 3"), ("1/0", "N must be 1 or more"), ("2", "expected K/N, e.g. 2/3")] {
            let result = try allocbench(["--shard", shard])
            XCTAssertEqual(result.status, 64, shard)
            XCTAssertEqual(result.stderr, "allocbench: --shard '\(shard)': \(reason)\n")
            XCTAssertEqual(result.stdout, "")
        }
    }
}
