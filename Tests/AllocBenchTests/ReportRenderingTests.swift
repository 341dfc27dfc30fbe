@testable import AllocBenchHarness
import AllocBenchModel
@testable import AllocBenchReport
import Foundation
import FoundationXML
import XCTest

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
        XCTAssertTrue(page.elements("p").contains { $0.text.contains("The process's own part is what its lean replay child holds") })

        // With whole-process figures: its own part is RssAnon at its peak less the allocator's, and
        // its page tables count too.
        var whole = run.results[0]
        whole.processPeakSample = MemorySample(rssAnonKilobytes: 600, pageTablesKilobytes: 28)
        let wholeCost = try XCTUnwrap(ProcessCost(whole, pageSize: 4096))
        XCTAssertEqual(wholeCost.baselineKilobytes, 600 - 480)
        XCTAssertEqual(wholeCost.perProcessKilobytes, 600 + 28)
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
