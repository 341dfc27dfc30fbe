@testable import AllocBenchHarness
import AllocBenchModel
@testable import AllocBenchReport
import Foundation
import FoundationXML
import XCTest

/// The elements of a parsed document, in document order, with the text directly inside each.
final class ParsedMarkup: NSObject, XMLParserDelegate {
    struct Node {
        var name: String
        var attributes: [String: String]
        var text = ""
    }

    private(set) var nodes: [Node] = []
    private var open: [Int] = []

    /// Parses `text` as XML; fails the test with the parser's message when it is not well formed.
    static func parse(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> ParsedMarkup? {
        let markup = ParsedMarkup()
        let parser = XMLParser(data: Data(text.utf8))
        parser.delegate = markup
        guard parser.parse() else {
            XCTFail("not well formed at line \(parser.lineNumber), column \(parser.columnNumber): "
                    + "\(parser.parserError.map { "\($0)" } ?? "unknown error")", file: file, line: line)
            return nil
        }
        return markup
    }

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
                qualifiedName: String?, attributes: [String: String] = [:]) {
        open.append(nodes.count)
        nodes.append(Node(name: elementName, attributes: attributes))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if let current = open.last { nodes[current].text += string }
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        open.removeLast()
    }

    func elements(_ name: String, _ attributes: [String: String] = [:]) -> [Node] {
        nodes.filter { node in node.name == name && attributes.allSatisfy { node.attributes[$0.key] == $0.value } }
    }
}

/// Each `<svg …>…</svg>` of a page, as text.
func svgParts(_ html: String) -> [String] {
    var parts: [String] = []
    var rest = html[...]
    while let start = rest.range(of: "<svg "), let end = rest.range(of: "</svg>", range: start.upperBound..<rest.endIndex) {
        parts.append(String(rest[start.lowerBound..<end.upperBound]))
        rest = rest[end.upperBound...]
    }
    return parts
}

/// The chart of one kind inside a parsed page: the nodes from its <svg> to the next <svg>.
func chart(_ markup: ParsedMarkup, _ kind: String, occurrence: Int = 0) -> [ParsedMarkup.Node] {
    let starts = markup.nodes.indices.filter { markup.nodes[$0].name == "svg" }
    let mine = starts.filter { markup.nodes[$0].attributes["data-chart"] == kind }
    guard occurrence < mine.count else { return [] }
    let start = mine[occurrence]
    let end = starts.first { $0 > start } ?? markup.nodes.count
    return Array(markup.nodes[start..<end])
}

/// No reference outside the file: nothing fetched, no script, only the SVG namespace URI.
func assertSelfContained(_ html: String, file: StaticString = #filePath, line: UInt = #line) {
    let withoutNamespace = html.replacingOccurrences(of: "\"http://www.w3.org/2000/svg\"", with: "\"\"")
    XCTAssertFalse(withoutNamespace.contains("http://"), "an external http reference", file: file, line: line)
    XCTAssertFalse(withoutNamespace.contains("https://"), "an external https reference", file: file, line: line)
    for forbidden in ["<script", "<link", "@import", "url(", "<img", "<iframe", "<object"] {
        XCTAssertFalse(html.contains(forbidden), "the page contains \(forbidden)", file: file, line: line)
    }
}

/// Reports built by hand: every number known in advance.
enum ReportFixture {
    static let pageSize = 4096
    static let ops = 1000
    static let peakLiveBytes: UInt64 = 400_000
    static var idealPages: Int { Int((peakLiveBytes + UInt64(pageSize) - 1) / UInt64(pageSize)) }

    static func trace(_ name: String) -> TraceSummary {
        TraceSummary(path: "traces/\(name).txt", name: name, lines: ops, ops: ops, threads: 1, slots: 300,
                     peakLiveBytes: peakLiveBytes, finalLiveBytes: 100_000, idealPages: idealPages,
                     anomaliesSkipped: 0, failedAllocationsSkipped: 0)
    }

    /// Touched pages after op 20·k: climbing 3 a step to 120 + 5·index, then staying; mapped twice that.
    static func touched(_ step: Int, index: Int) -> Int { min(step * 3, 120 + 5 * index) }

    static func result(_ name: String, index: Int, points: Int = 50, baselineKilobytes: Int = 1016) -> AllocatorResult {
        let baseline = MemorySample(rssAnonKilobytes: baselineKilobytes, vmSizeKilobytes: 16_920, pageTablesKilobytes: 72)
        let timeline = (0..<points).map { step in
            TimelinePoint(opsCompleted: step * ops / (points - 1),
                          sample: MemorySample(rssAnonKilobytes: baselineKilobytes + touched(step, index: index) * 4,
                                               vmSizeKilobytes: 16_920 + touched(step, index: index) * 8, pageTablesKilobytes: 72))
        }
        let peak = (0..<points).map { touched($0, index: index) }.max()!
        let last = touched(points - 1, index: index)
        return AllocatorResult(
            allocator: name, status: .ok, detail: nil,
            touchedPages: FinalAndPeak(final: last, peak: peak), mappedPages: FinalAndPeak(final: 2 * last, peak: 2 * peak),
            idealPages: idealPages, overhead: Double(peak) / Double(idealPages), minorFaults: peak,
            pageTablesKilobytes: FinalAndPeak(final: 4, peak: 4), mmSyscalls: ["mmap": 3, "munmap": 0, "brk": 1, "madvise": 0, "mremap": 0],
            nsPerOp: nil, baseline: baseline, selfReported: [:], selfReportedBaseline: nil, mallocProvider: "libc.so.6",
            runtimeMallocDeltaBytes: 0, timeline: timeline,
            breakdown: MemoryBreakdown(
                peak: [RegionUsage(region: "anonymous mmaps", touchedPages: peak - 10, mappedPages: 2 * peak - 10),
                       RegionUsage(region: "heap (brk)", touchedPages: 12, mappedPages: 12),
                       RegionUsage(region: "libc.so.6 data/bss", touchedPages: -2, mappedPages: -2)],
                end: [RegionUsage(region: "anonymous mmaps", touchedPages: last - 10, mappedPages: 2 * last - 10),
                      RegionUsage(region: "heap (brk)", touchedPages: 10, mappedPages: 12)],
                newMappingsAtEnd: [NewMapping(start: "0x7f0000000000", mappedPages: 2 * last, touchedPages: last)]))
    }

    static func crashed(_ name: String) -> AllocatorResult {
        AllocatorResult(allocator: name, status: .crashed, detail: "SIGSEGV after op 12", touchedPages: nil, mappedPages: nil,
                        idealPages: idealPages, overhead: nil, minorFaults: nil, pageTablesKilobytes: nil, mmSyscalls: nil,
                        nsPerOp: nil, baseline: nil, selfReported: [:], selfReportedBaseline: nil, mallocProvider: "",
                        runtimeMallocDeltaBytes: nil, timeline: nil, breakdown: nil)
    }

    static func liveBytes(points: Int = 40) -> [LiveBytesPoint] {
        (0..<points).map { step in
            LiveBytesPoint(opsCompleted: step * ops / (points - 1),
                           liveBytes: step == points / 2 ? peakLiveBytes : UInt64(step) * 5_000)
        }
    }

    static func run(_ traceName: String = "fixture", allocators: [String] = ["glibc", "jemalloc"], crashedToo: Bool = false) -> TraceRun {
        var results = allocators.enumerated().map { result($0.element, index: $0.offset) }
        if crashedToo { results.append(crashed("broken")) }
        return TraceRun(trace: trace(traceName), results: results, liveBytes: liveBytes())
    }

    static func report(_ runs: [TraceRun]) -> RunReport {
        RunReport(environment: RunEnvironment(kernel: "6.18", glibc: "2.36", jemalloc: "5.3.0", pageSize: pageSize,
                                              machine: "x86_64", allocbenchVersion: "test"),
                  settings: RunSettings(touch: .pages, timedRuns: 0, timeoutSeconds: 60, lenient: false),
                  runs: runs)
    }
}

final class ReportRenderingTests: XCTestCase {
    func testThePageIsWellFormedAndSelfContained() throws {
        let report = ReportFixture.report([ReportFixture.run(crashedToo: true), ReportFixture.run("second")])
        let html = HTMLReport.render(report)
        XCTAssertTrue(html.hasPrefix("<!DOCTYPE html>\n<html"))
        assertSelfContained(html)
        let page = try XCTUnwrap(ParsedMarkup.parse(html))
        XCTAssertEqual(page.elements("section", ["class": "trace"]).map { $0.attributes["id"] }, ["trace-fixture", "trace-second"])
        XCTAssertEqual(page.elements("a").compactMap { $0.attributes["href"] }, ["#trace-fixture", "#trace-second"])
        let parts = svgParts(html)
        XCTAssertEqual(parts.count, 8, "four charts per trace")
        for part in parts {
            let svg = try XCTUnwrap(ParsedMarkup.parse(part))
            XCTAssertEqual(svg.nodes.first?.attributes["xmlns"], "http://www.w3.org/2000/svg")
            XCTAssertFalse(svg.elements("title").isEmpty, "every chart has a title")
        }
    }

    func testEveryAllocatorIsInTheTableTheLegendsTheChartsAndTheCosts() throws {
        let report = ReportFixture.report([ReportFixture.run(allocators: ["glibc", "jemalloc", "slab"], crashedToo: true)])
        let page = try XCTUnwrap(ParsedMarkup.parse(HTMLReport.render(report)))
        let tableNames = page.elements("td").filter { $0.attributes["class"] == "text name" }.map(\.text)
        XCTAssertEqual(tableNames, ["glibc", "jemalloc", "slab", "broken"] + ["glibc", "jemalloc", "slab", "broken"],
                       "the results table and the cost table list every allocator")
        let touched = chart(page, "touched")
        let legend = touched.filter { $0.name == "text" && $0.attributes["font-weight"] == "bold" }.map(\.text)
        XCTAssertEqual(legend.suffix(5), ["ideal", "glibc", "jemalloc", "slab", "broken"])
        for name in ["glibc", "jemalloc", "slab"] {
            XCTAssertEqual(touched.filter { $0.name == "polyline" && $0.attributes["data-allocator"] == name }.count, 1, name)
            XCTAssertEqual(chart(page, "overhead").filter { $0.attributes["class"] == "bar" && $0.attributes["data-allocator"] == name }.count, 1, name)
        }
        XCTAssertTrue(touched.filter { $0.name == "polyline" && $0.attributes["data-allocator"] == "broken" }.isEmpty,
                      "a crashed allocator has no line")
        XCTAssertTrue(page.elements("td").contains { $0.text == "crashed: SIGSEGV after op 12" }, "the table says why")
        let colors = touched.filter { $0.name == "polyline" }.compactMap { $0.attributes["stroke"] }
        XCTAssertEqual(Set(colors).count, 3, "each allocator has its own color")
    }

    func testEachLineHasOnePointPerTimelinePointAndTheIdealOnePerLiveBytesPoint() throws {
        var run = ReportFixture.run()
        run.results[1] = ReportFixture.result("jemalloc", index: 1, points: 137)
        let page = try XCTUnwrap(ParsedMarkup.parse(HTMLReport.render(ReportFixture.report([run]))))
        for measure in ["touched", "mapped"] {
            let nodes = chart(page, measure)
            for result in run.results {
                let line = try XCTUnwrap(nodes.first { $0.name == "polyline" && $0.attributes["data-allocator"] == result.allocator })
                let points = try XCTUnwrap(line.attributes["points"]).split(separator: " ")
                XCTAssertEqual(points.count, result.timeline?.count, "\(measure) \(result.allocator)")
                XCTAssertTrue(points.allSatisfy { $0.split(separator: ",").count == 2 && $0.split(separator: ",").allSatisfy { Double($0) != nil } })
            }
            let ideal = try XCTUnwrap(nodes.first { $0.name == "polygon" && $0.attributes["class"] == "ideal" })
            XCTAssertEqual(ideal.attributes["points"]?.split(separator: " ").count, run.liveBytes!.count + 2, "the outline plus two corners on zero")
        }
    }

    func testTheYAxisCoversThePeakWithOneStepToSpare() throws {
        let run = ReportFixture.run(allocators: ["a", "b", "c"])
        let page = try XCTUnwrap(ParsedMarkup.parse(HTMLReport.render(ReportFixture.report([run]))))
        for measure in [Charts.Measure.touched, .mapped] {
            let ticks = chart(page, measure.rawValue).filter { $0.attributes["class"] == "tick y" }.compactMap { $0.attributes["data-value"].flatMap(Double.init) }
            let highest = Double(run.results.compactMap { measure.totals($0)?.peak }.max()!)
            let top = try XCTUnwrap(ticks.max())
            let step = ticks[1] - ticks[0]
            XCTAssertGreaterThanOrEqual(top, highest, measure.rawValue)
            XCTAssertGreaterThanOrEqual(top, Double(ReportFixture.idealPages), measure.rawValue)
            XCTAssertLessThan(top - step, max(highest, Double(ReportFixture.idealPages)), "\(measure.rawValue): no empty step on top")
            XCTAssertEqual(chart(page, measure.rawValue).first?.attributes["data-y-max"].flatMap(Double.init), top)
        }
        // touched: a 130, b 135, c 140 pages at the peak, ideal 98.
        XCTAssertEqual(chart(page, "touched").filter { $0.attributes["class"] == "tick y" }.map(\.text),
                       ["0", "20", "40", "60", "80", "100", "120", "140"])
    }

    func testNamesWithMarkupCharactersAreEscapedAndSurviveTheRoundTrip() throws {
        let allocator = "a<b&c>\"d'"
        let traceName = "t<&>'"
        let html = HTMLReport.render(ReportFixture.report([ReportFixture.run(traceName, allocators: [allocator, "glibc"])]))
        XCTAssertFalse(html.contains(allocator))
        XCTAssertFalse(html.contains(traceName))
        XCTAssertTrue(html.contains("a&lt;b&amp;c&gt;&quot;d&#39;"))
        let page = try XCTUnwrap(ParsedMarkup.parse(html))
        XCTAssertEqual(page.elements("h2").map(\.text), [traceName])
        XCTAssertEqual(chart(page, "touched").first { $0.name == "polyline" }?.attributes["data-allocator"], allocator)
        XCTAssertTrue(page.elements("title").contains { $0.text == "Touched pages over time — \(traceName)" })
        for part in svgParts(html) { XCTAssertNotNil(ParsedMarkup.parse(part)) }
        XCTAssertEqual(Markup.escape(#"<&>"'"#), "&lt;&amp;&gt;&quot;&#39;")
        XCTAssertEqual(Markup.escape("plain — text"), "plain — text")
    }

    func testTheCostOfTenThousandProcesses() throws {
        // gcc-hello through glibc: baseline RssAnon 1016 kB, touched peak 2308 pages.
        let cost = ProcessCost(allocator: "glibc", baselineKilobytes: 1016, allocatorKilobytes: 2308 * 4, pageSize: 4096)
        XCTAssertEqual(cost.perProcessKilobytes, 10_248)
        XCTAssertEqual(cost.pages(cost.perProcessKilobytes), 2562)
        XCTAssertEqual(cost.fleetKilobytes, 102_480_000)
        XCTAssertEqual(Format.kibibytes(cost.fleetKilobytes), "97.73 GiB")
        XCTAssertEqual(Format.kibibytes(cost.allocatorFleetKilobytes), "88.04 GiB")
        XCTAssertEqual(Format.kibibytes(cost.perProcessKilobytes), "10.0 MiB")
        XCTAssertEqual(Format.kibibytes(1016), "1,016 KiB")

        let run = ReportFixture.run(allocators: ["glibc"], crashedToo: true)
        XCTAssertNil(ProcessCost(run.results[1], pageSize: 4096), "a crashed row has no cost")
        let fromRow = try XCTUnwrap(ProcessCost(run.results[0], pageSize: 4096))
        XCTAssertEqual(fromRow.allocatorKilobytes, 120 * 4)
        XCTAssertEqual(fromRow.perProcessKilobytes, 1016 + 480)
        let page = try XCTUnwrap(ParsedMarkup.parse(HTMLReport.render(ReportFixture.report([run]))))
        let fleet = try XCTUnwrap(page.elements("td", ["class": "fleet", "data-allocator": "glibc"]).first)
        XCTAssertEqual(fleet.attributes["data-kib"], String((1016 + 480) * 10_000))
        XCTAssertEqual(fleet.text, "14.27 GiB")
        XCTAssertTrue(page.elements("p").contains { $0.text.contains("The baseline is what the replay child already holds") })
    }

    func testTheBreakdownStacksRegionsAndPutsGivenBackPagesLeftOfZero() throws {
        let run = ReportFixture.run(allocators: ["glibc"])
        let page = try XCTUnwrap(ParsedMarkup.parse(HTMLReport.render(ReportFixture.report([run]))))
        let segments = chart(page, "breakdown").filter { $0.attributes["class"] == "segment" }
        XCTAssertEqual(segments.map { $0.attributes["data-region"]! }, ["heap (brk)", "anonymous mmaps", "libc.so.6 data/bss", "heap (brk)", "anonymous mmaps"])
        let zero = try XCTUnwrap(segments.first).attributes["x"].flatMap(Double.init)!
        let givenBack = try XCTUnwrap(segments.first { $0.attributes["data-pages"] == "-2" })
        XCTAssertLessThan(Double(givenBack.attributes["x"]!)!, zero)
        XCTAssertEqual(Double(givenBack.attributes["x"]!)! + Double(givenBack.attributes["width"]!)!, zero, accuracy: 0.11)
        let totals = page.elements("tr", ["class": "total"])
        XCTAssertEqual(totals.count, 1)
    }

    func testStandaloneChartFiles() throws {
        let report = ReportFixture.report([ReportFixture.run("x"), ReportFixture.run("x"), ReportFixture.run("x-2")])
        let files = Charts.files(report)
        XCTAssertEqual(files.map(\.name), ["x", "x-2", "x-2-2"].flatMap { stem in ["touched", "mapped", "overhead", "breakdown"].map { "\(stem)-\($0).svg" } })
        for file in files {
            XCTAssertTrue(file.contents.hasPrefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\""), file.name)
            XCTAssertNotNil(ParsedMarkup.parse(file.contents), file.name)
        }
    }
}

final class ReportTicksTests: XCTestCase {
    func testStepsAreOneTwoOrFiveTimesAPowerOfTenAndCoverTheData() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let lower = Bool.random(using: &generator) ? 0 : -Double.random(in: 0...5000, using: &generator)
            let upper = Double.random(in: 0.001...5_000_000, using: &generator)
            let ticks = Ticks(covering: lower, upper, count: 6)
            let mantissa = ticks.step / pow(10, log10(ticks.step).rounded(.down))
            XCTAssertTrue([1, 2, 5].contains { abs(mantissa - $0) < 1e-9 }, "step \(ticks.step) for \(lower)...\(upper)")
            XCTAssertLessThanOrEqual(ticks.lower, lower)
            XCTAssertGreaterThanOrEqual(ticks.upper, upper)
            XCTAssertLessThan(ticks.upper - ticks.step, upper, "no empty step on top")
            XCTAssertGreaterThan(ticks.lower + ticks.step, lower, "no empty step below")
            XCTAssertTrue((3...16).contains(ticks.values.count), "\(ticks.values.count) ticks for \(lower)...\(upper)")
        }
    }

    func testKnownRanges() {
        XCTAssertEqual(Ticks(covering: 0, 2308, count: 6, integers: true).values, [0, 500, 1000, 1500, 2000, 2500])
        XCTAssertEqual(Ticks(covering: 0, 1.07, count: 6).values, [0, 0.2, 0.4, 0.6, 0.8, 1, 1.2])
        XCTAssertEqual(Ticks(covering: 0, 3, count: 6, integers: true).values, [0, 1, 2, 3], "no half pages")
        XCTAssertEqual(Ticks(covering: 0, 0, count: 6, integers: true).values, [0, 1], "an empty range still has an axis")
        XCTAssertEqual(Ticks(covering: -3, 17, count: 5, integers: true).values, [-5, 0, 5, 10, 15, 20])
    }

    func testLabels() {
        let ops = Ticks(covering: 0, 1_234_567, count: 8)
        XCTAssertEqual(ops.step, 200_000)
        XCTAssertEqual(ops.values.map(ops.label), ["0", "200k", "400k", "600k", "800k", "1M", "1.2M", "1.4M"])
        let gccHello = Ticks(covering: 0, 17_775, count: 8, integers: true)
        XCTAssertEqual(gccHello.values.map(gccHello.label), ["0", "2k", "4k", "6k", "8k", "10k", "12k", "14k", "16k", "18k"],
                       "one axis never mixes 8,000 and 10k")
        let pages = Ticks(covering: 0, 2308, count: 6)
        XCTAssertEqual(pages.values.map(pages.label), ["0", "500", "1,000", "1,500", "2,000", "2,500"])
        let ratio = Ticks(covering: 0, 1.07, count: 6)
        XCTAssertEqual(ratio.label(0.6), "0.6")
        XCTAssertEqual(Format.count(-1234), "−1,234")
    }
}

/// `allocbench --report` and `--svg` end to end, on the seed trace and a real one.
final class ReportCLITests: XCTestCase {
    func testReportAndChartsForTheSeedAndARealTrace() throws {
        guard let real = TestPaths.sharedTrace("real/gcc-hello.txt") else { return }
        let seed = TestPaths.bundledTraces + "/djb.txt"
        let directory = try TestPaths.temporaryDirectory()
        let charts = directory + "/charts"
        try FileManager.default.createDirectory(atPath: charts, withIntermediateDirectories: false)
        let html = directory + "/report.html"
        let plain = try runCommand(TestPaths.cli, ["--trace", seed, real, "--repeat", "0"])
        let result = try runCommand(TestPaths.cli, ["--trace", seed, real, "--repeat", "0", "--report", html, "--svg", charts])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stderr, "")
        XCTAssertFalse(result.stdout.contains("where the pages went"), "stdout is the table as without --report")
        XCTAssertEqual(result.stdout.split(separator: "\n").count, plain.stdout.split(separator: "\n").count)

        let allocators = Set(try AllocatorCatalog.discover(in: TestPaths.products).entries.filter(\.isAvailable).map(\.name))
        let text = try String(contentsOfFile: html, encoding: .utf8)
        let page = try XCTUnwrap(ParsedMarkup.parse(text))
        assertSelfContained(text)
        XCTAssertEqual(page.elements("section", ["class": "trace"]).map { $0.attributes["id"] }, ["trace-djb", "trace-gcc-hello"])
        for (index, trace) in ["djb", "gcc-hello"].enumerated() {
            let touched = chart(page, "touched", occurrence: index)
            let lines = touched.filter { $0.name == "polyline" }
            XCTAssertEqual(Set(lines.compactMap { $0.attributes["data-allocator"] }), allocators, trace)
            for line in lines {
                XCTAssertGreaterThanOrEqual(line.attributes["points"]?.split(separator: " ").count ?? 0, 2, trace)
            }
            XCTAssertFalse(chart(page, "breakdown", occurrence: index).isEmpty, trace)
        }
        XCTAssertTrue(page.elements("p").contains { $0.text.hasPrefix("trace \(real): 17775 ops") })
        XCTAssertEqual(page.elements("td", ["class": "fleet"]).count, 2 * allocators.count, "a cost for each allocator and trace")

        let files = try FileManager.default.contentsOfDirectory(atPath: charts).sorted()
        XCTAssertEqual(files, ["djb", "gcc-hello"].flatMap { stem in
            ["breakdown", "mapped", "overhead", "touched"].map { "\(stem)-\($0).svg" }
        })
        for file in files {
            XCTAssertNotNil(ParsedMarkup.parse(try String(contentsOfFile: charts + "/" + file, encoding: .utf8)), file)
        }
    }

    func testTheChartsDrawEveryTimelinePointOfTheJSON() throws {
        guard let real = TestPaths.sharedTrace("real/gcc-hello.txt") else { return }
        let directory = try TestPaths.temporaryDirectory()
        let html = directory + "/report.html", json = directory + "/report.json"
        let result = try runCommand(TestPaths.cli, ["--trace", real, "--repeat", "0", "--allocators", "glibc",
                                                    "--timeline", "--format", "json", "--output", json, "--report", html])
        XCTAssertEqual(result.status, 0, result.stderr)
        let report = try RunReport.decode(try Data(contentsOf: URL(fileURLWithPath: json)))
        let row = try XCTUnwrap(report.runs.first?.results.first)
        let timeline = try XCTUnwrap(row.timeline)
        let page = try XCTUnwrap(ParsedMarkup.parse(try String(contentsOfFile: html, encoding: .utf8)))
        let line = try XCTUnwrap(chart(page, "touched").first { $0.name == "polyline" })
        XCTAssertEqual(line.attributes["points"]?.split(separator: " ").count, timeline.count)
        let top = try XCTUnwrap(chart(page, "touched").first?.attributes["data-y-max"].flatMap(Double.init))
        XCTAssertGreaterThanOrEqual(top, Double(try XCTUnwrap(row.touchedPages).peak))
        XCTAssertNil(row.breakdown, "--report does not add the breakdown to the JSON unless asked")
    }

    func testBadOutputPathsExit66BeforeReplayingAndWriteNothing() throws {
        let directory = try TestPaths.temporaryDirectory()
        let file = directory + "/plain-file"
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        let html = directory + "/report.html"
        let seed = TestPaths.bundledTraces + "/djb.txt"
        let cases: [([String], String)] = [
            (["--svg", directory + "/missing"], "\(directory)/missing: --svg needs an existing directory"),
            (["--svg", file], "\(file): --svg needs an existing directory"),
            (["--report", directory + "/missing/report.html"], "\(directory)/missing/report.html: no such directory \(directory)/missing"),
            (["--report", directory], "\(directory): --report needs a file name, this is a directory"),
        ]
        for (arguments, message) in cases {
            let result = try runCommand(TestPaths.cli, ["--trace", seed, "--repeat", "0", "--report", html] + arguments)
            XCTAssertEqual(result.status, 66, "\(arguments): \(result.stderr)")
            XCTAssertEqual(result.stderr, "allocbench: \(message)\n", "\(arguments)")
            XCTAssertEqual(result.stdout, "", "\(arguments): nothing replayed")
            XCTAssertFalse(FileManager.default.fileExists(atPath: html), "\(arguments)")
        }
    }
}
