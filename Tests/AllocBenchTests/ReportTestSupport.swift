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
