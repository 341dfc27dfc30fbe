import AllocBenchGate
import AllocBenchModel
import XCTest

/// `allocbench merge`'s rules, on reports built from the model's own types: what it refuses (each
/// in one line naming the files), what it only notes, and that shards come back in plan order.
final class ReportMergeTests: XCTestCase {
    typealias Row = GateFixtures.Row

    func part(_ source: String, _ report: RunReport) -> RunReport.MergePart {
        RunReport.MergePart(source: source, report: report)
    }

    func report(_ rows: [Row], ops: Int = 5, environment: RunEnvironment = GateFixtures.environment,
                conditions: MeasurementConditions? = GateFixtures.conditions, shard: Shard? = nil) -> RunReport {
        var report = GateFixtures.report(trace: "djb", ops: ops, rows: rows, environment: environment)
        report.conditions = conditions
        report.shard = shard
        return report
    }

    func refusal(_ parts: [RunReport.MergePart], strictEnvironment: Bool = false) -> String {
        do {
            _ = try ReportMerge.merge(parts, strictEnvironment: strictEnvironment)
            XCTFail("merged what it should have refused")
            return ""
        } catch {
            XCTAssertFalse(error.description.contains("\n"), "one line: \(error.description)")
            return error.description
        }
    }

    func testDisjointPairsMergeIntoOneTraceRun() throws {
        let merged = try ReportMerge.merge([part("a.json", report([Row("glibc")])), part("b.json", report([Row("slab")]))])
        XCTAssertEqual(merged.report.runs.map(\.trace.name), ["djb"])
        XCTAssertEqual(merged.report.runs[0].results.map(\.allocator), ["glibc", "slab"])
        XCTAssertNil(merged.report.shard)
        XCTAssertEqual(merged.report.conditions, GateFixtures.conditions)
    }

    func testAPairInTwoReportsIsRefusedNamingBoth() {
        let message = refusal([part("a.json", report([Row("glibc"), Row("slab")])), part("b.json", report([Row("slab")]))])
        XCTAssertEqual(message, "djb/slab is in both a.json and b.json")
    }

    func testAPairTwiceInOneReportIsRefused() {
        XCTAssertEqual(refusal([part("a.json", report([Row("glibc"), Row("glibc")]))]), "djb/glibc is in a.json twice")
    }

    func testAPageCountFactThatDiffersOrIsRecordedOnOneSideIsRefused() {
        var otherPageSize = GateFixtures.environment
        otherPageSize.pageSize = 16384
        XCTAssertTrue(refusal([part("a.json", report([Row("glibc")])), part("b.json", report([Row("slab")], environment: otherPageSize))])
            .contains("page_size 4096 (a.json) vs 16384 (b.json)"))

        var otherGlibc = GateFixtures.environment
        otherGlibc.glibc = "2.41"
        XCTAssertTrue(refusal([part("a.json", report([Row("glibc")])), part("b.json", report([Row("slab")], environment: otherGlibc))])
            .contains("glibc 2.36 (a.json) vs 2.41 (b.json)"))

        let debug = MeasurementConditions(build: "debug", addressRandomization: true)
        XCTAssertEqual(refusal([part("a.json", report([Row("glibc")])), part("b.json", report([Row("slab")], conditions: debug))]),
                       "a.json and b.json were measured where page counts can differ: build release (a.json) vs debug (b.json); "
                           + "merge only results of one environment")

        // A fact one report does not record cannot be shown to agree: refused, fail closed.
        XCTAssertTrue(refusal([part("a.json", report([Row("glibc")])), part("b.json", report([Row("slab")], conditions: nil))])
            .contains("build release (a.json) vs not recorded (b.json)"))
    }

    func testAKernelReleaseIsAWarningUnlessStrictAndTheHostOnlyANote() throws {
        var elsewhere = GateFixtures.environment
        elsewhere.kernel = "6.2.0-test"
        elsewhere.hostname = "runner-7"
        var here = GateFixtures.environment
        here.hostname = "runner-1"
        let parts = [part("a.json", report([Row("glibc")], environment: here)), part("b.json", report([Row("slab")], environment: elsewhere))]
        let merged = try ReportMerge.merge(parts)
        XCTAssertTrue(merged.notes.contains { $0.hasPrefix("warning: kernel_release 6.1.0 (a.json) vs 6.2.0 (b.json)") }, "\(merged.notes)")
        XCTAssertTrue(merged.notes.contains { $0.hasPrefix("hostname runner-1 (a.json) vs runner-7 (b.json): describes the machine only") },
                      "\(merged.notes)")
        XCTAssertEqual(merged.report.environment, here, "the first report's environment")
        XCTAssertTrue(refusal(parts, strictEnvironment: true).contains("different kernel releases"))
    }

    func testDifferentSettingsAreRefused() {
        var allTouched = report([Row("slab")])
        allTouched.settings.touch = .all
        XCTAssertEqual(refusal([part("a.json", report([Row("glibc")])), part("b.json", allTouched)]),
                       "a.json and b.json were run with different settings: touch pages (a.json) vs all (b.json)")
    }

    func testATraceOfOneNameButOtherContentsIsRefused() {
        XCTAssertTrue(refusal([part("a.json", report([Row("glibc")])), part("b.json", report([Row("slab")], ops: 6))])
            .hasPrefix("trace 'djb' is not the same trace in a.json and b.json (ops 5 vs 6"))
    }

    func testShardsComeBackInPlanOrderAndAMissingShardIsAWarning() throws {
        let plan = Shard(index: 1, count: 3, traces: ["djb"], allocators: ["glibc", "bss-arena", "slab"])
        func shard(_ index: Int) -> Shard { var shard = plan; shard.index = index; return shard }
        let parts = [part("3.json", report([Row("slab")], shard: shard(3))), part("1.json", report([Row("glibc")], shard: shard(1)))]
        let merged = try ReportMerge.merge(parts)
        XCTAssertEqual(merged.report.runs[0].results.map(\.allocator), ["glibc", "slab"])
        XCTAssertTrue(merged.notes.contains("warning: shard 2/3 not given: the merged result lacks their pairs"), "\(merged.notes)")

        XCTAssertEqual(refusal([part("1.json", report([], shard: shard(1))), part("again.json", report([], shard: shard(1)))]),
                       "shard 1/3 is in both 1.json and again.json")
        var otherPlan = shard(2)
        otherPlan.allocators = ["glibc", "slab"]
        XCTAssertTrue(refusal([part("1.json", report([Row("glibc")], shard: shard(1))), part("2.json", report([Row("slab")], shard: otherPlan))])
            .contains("are shards of different runs"))
    }

    func testShardNumbersAreStableAndParsingIsStrict() {
        // The hash of "trace/allocator" alone: pinned, so a change of it (which would move pairs
        // between the shards of a running CI matrix) is deliberate.
        XCTAssertEqual(FNV1a64.digest("".utf8), 0xcbf2_9ce4_8422_2325)
        XCTAssertEqual(FNV1a64.digest("a".utf8), 0xaf63_dc4c_8601_ec8c)
        let pairs = ["djb", "sort"].flatMap { trace in ["glibc", "slab", "jemalloc"].map { (trace, $0) } }
        for count in 1...5 {
            for (trace, allocator) in pairs {
                let owners = (1...count).filter { Shard(index: $0, count: count).contains(trace: trace, allocator: allocator) }
                XCTAssertEqual(owners.count, 1, "\(trace)/\(allocator) among \(count) shards")
            }
        }
        XCTAssertEqual(try Shard.parse("2/3").get(), Shard(index: 2, count: 3))
        for bad in ["0/3", "4/3", "1/0", "3", "a/b", "1/3/5", "-1/3", ""] {
            if case .success(let shard) = Shard.parse(bad) { XCTFail("\(bad) parsed as \(shard)") }
        }
    }
}
