@testable import AllocBenchHarness
import AllocBenchModel
@testable import AllocBenchReport
import Foundation
import FoundationXML
import XCTest

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
