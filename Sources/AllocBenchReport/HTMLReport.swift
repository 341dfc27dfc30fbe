import AllocBenchModel
import Foundation

/// One self-contained HTML page for a run: per trace, the header, the table, the charts inline as
/// SVG, where the pages went, and the cost of ten thousand such processes. No scripts, no fonts,
/// nothing fetched: the file reads the same offline and years from now.
public enum HTMLReport {
    /// `fleets`: measured fleets (`allocbench fleet --format json`) of the report's traces; each
    /// shows in its trace's "Ten thousand small processes" section beside the estimate.
    public static func render(_ report: RunReport, fleets: [FleetReport] = []) -> String {
        let palette = Palette(report)
        let stems = Charts.uniqueStems(report.runs.map(\.trace.name))
        let names = report.runs.map(\.trace.name)

        var head = Element("head")
        head.append(Element("meta", ["charset": "utf-8"]))
        head.append(Element("meta", ["name": "viewport", "content": "width=device-width, initial-scale=1"]))
        head.append(Element("title", text: "allocbench report — " + names.joined(separator: ", ")))
        head.append(Element("style", [:], [.raw(stylesheet)]))

        var main = Element("main")
        var header = Element("header")
        header.append(Element("h1", text: "Where the pages go"))
        header.append(Element("p", ["class": "lede"], text:
            "allocbench \(report.environment.allocbenchVersion) replayed \(names.count == 1 ? "one trace" : "\(names.count) traces") "
            + "through each allocator in a fresh child process and read the kernel's counters at every mm syscall. "
            + "Pages are \(report.environment.pageSize / 1024) KiB; touched = RssAnon (private resident anonymous memory), "
            + "mapped = VmSize (address space), both relative to the child's baseline."))
        if report.runs.count > 1 {
            var list = Element("ul", ["class": "contents"])
            for (name, stem) in zip(names, stems) {
                list.append(Element("li", [:], [.element(Element("a", ["href": "#trace-" + stem], text: name))]))
            }
            header.append(Element("nav", [:], [.element(list)]))
        }
        main.append(header)
        for (run, stem) in zip(report.runs, stems) {
            main.append(section(run, id: "trace-" + stem, report: report, palette: palette, fleets: fleets))
        }
        main.append(Element("footer", [:], text:
            "Made by allocbench \(report.environment.allocbenchVersion) (schema \(report.schema)). "
            + "Measurement: docs/metrics.md; this page: docs/report.md."))

        let html = Element("html", ["lang": "en"], [.element(head), .element(Element("body", [:], [.element(main)]))])
        return "<!DOCTYPE html>\n" + html.rendered() + "\n"
    }

    // MARK: - One trace

    static func section(_ run: TraceRun, id: String, report: RunReport, palette: Palette, fleets: [FleetReport] = []) -> Element {
        let pageSize = report.environment.pageSize
        let trace = run.trace
        var section = Element("section", ["class": "trace", "id": id])
        section.append(Element("h2", text: trace.name))
        for line in ReportFormatter.header(report, run) {
            section.append(Element("p", ["class": "meta"], text: line))
        }
        section.append(facts([
            (Format.count(trace.ops), "ops replayed"),
            (Format.kibibytes(Int((Double(trace.peakLiveBytes) / 1024).rounded(.up))), "peak live (\(Format.count(Int(trace.peakLiveBytes))) bytes)"),
            (Format.pages(trace.idealPages), "ideal: live bytes at the peak ÷ page size"),
            (Format.count(trace.threads), trace.threads == 1 ? "thread" : "threads"),
        ]))
        if run.results.contains(where: { $0.processEndSample != nil }) {
            section.append(Element("h3", text: "The whole process"))
            section.append(Element("p", text:
                "Each replay child from its exec to the end of the replay, in kB (end/peak): its stack, its data page, the C "
                + "library's start-up and the allocator, as a program of this trace would pay them. The last column is how many "
                + "of its anonymous pages the allocator added (touched final/peak)."))
            section.append(resultsTable(run, pageSize: pageSize, palette: palette, columns: ReportFormatter.wholeProcessColumns))
            section.append(Element("h3", text: "The allocator"))
        }
        section.append(resultsTable(run, pageSize: pageSize, palette: palette))

        section.append(Element("h3", text: "Pages over time"))
        section.append(Element("p", text:
            "Each line is one allocator's pages relative to its baseline after each op; the grey area is the ideal, "
            + "the pages the requested bytes live at that moment need. A circle marks each allocator's peak. "
            + "The counters are read at every mm syscall, so every peak is on the line; between syscalls touched pages only grow."))
        section.append(figure(Charts.timeline(run, measure: .touched, pageSize: pageSize, palette: palette)))
        section.append(figure(Charts.timeline(run, measure: .mapped, pageSize: pageSize, palette: palette)))

        section.append(Element("h3", text: "Overhead"))
        section.append(figure(Charts.overhead(run, pageSize: pageSize, palette: palette)))

        section.append(Element("h3", text: "Where the pages went"))
        section.append(Element("p", text:
            "Touched and mapped pages by region, relative to the baseline: the brk heap, anonymous mmaps, the data and bss "
            + "of the executable and of libraries, the stack. A negative number is memory that existed at the baseline and was given back."))
        section.append(figure(Charts.breakdown(run, pageSize: pageSize, palette: palette)))
        section.append(regionTables(run, palette: palette))

        section.append(Element("h3", text: "Ten thousand small processes"))
        section.append(contentsOf: processCosts(run, pageSize: pageSize, palette: palette))
        for fleet in fleets where fleet.trace.name == run.trace.name {
            section.append(contentsOf: measuredFleet(fleet, palette: palette))
        }

        let notes = ReportFormatter.notes(run, pageSize: pageSize)
        if !notes.isEmpty {
            section.append(Element("h3", text: "Notes"))
            var list = Element("ul", ["class": "notes"])
            for note in notes { list.append(Element("li", text: note)) }
            section.append(list)
        }
        return section
    }

    static func figure(_ chart: Element) -> Element {
        Element("figure", [:], [.element(chart)])
    }

    static func facts(_ items: [(value: String, label: String)]) -> Element {
        var strip = Element("div", ["class": "facts"])
        for item in items {
            strip.append(Element("div", ["class": "fact"], [
                .element(Element("span", ["class": "value"], text: item.value)),
                .element(Element("span", ["class": "label"], text: item.label)),
            ]))
        }
        return strip
    }

    static func swatch(_ color: String) -> Element {
        Element("span", ["class": "swatch", "style": "background:" + color])
    }

    static func row(_ cells: [Element]) -> Element {
        Element("tr", [:], cells.map(Element.Node.element))
    }

    static func scrolling(_ table: Element) -> Element {
        Element("div", ["class": "scroll"], [.element(table)])
    }

    // MARK: - The table

    /// The terminal table's columns and cells: the allocator's table, or with `columns` the whole
    /// process's (ReportFormatter.wholeProcessColumns).
    static func resultsTable(_ run: TraceRun, pageSize: Int, palette: Palette,
                             columns: [ReportFormatter.Column] = ReportFormatter.columns) -> Element {
        let columns = ReportFormatter.columns(columns, shownIn: run, context: Metric.Context(run: run, pageSize: pageSize))
        var table = Element("table", ["class": "results"])
        table.append(Element("thead", [:], [.element(row(columns.map { column in
            Element("th", column.isText ? ["class": "text"] : [:], text: column.title)
        }))]))
        var body = Element("tbody")
        for result in run.results {
            let cells = ReportFormatter.cells(result, in: Metric.Context(run: run, pageSize: pageSize), columns: columns)
            var name = Element("td", ["class": "text name"], [.element(swatch(palette.style(allocator: result.allocator).color))])
            name.append(text: result.allocator)
            if result.isOK {
                body.append(row([name] + cells.indices.dropFirst().map { index in
                    Element("td", columns[index].isText ? ["class": "text wraps"] : [:], text: cells[index])
                }))
            } else {
                body.append(row([name, Element("td", ["class": "text failure", "colspan": String(columns.count - 1)], text: cells[1])]))
            }
        }
        table.append(body)
        return scrolling(table)
    }

    // MARK: - Regions

    /// Per allocator: each region's touched and mapped pages at the peak and at the end.
    static func regionTables(_ run: TraceRun, palette: Palette) -> Element {
        var grid = Element("div", ["class": "regions"])
        for result in run.results {
            guard let breakdown = result.breakdown else { continue }
            var table = Element("table", ["class": "breakdown"])
            var caption = Element("caption", [:], [.element(swatch(palette.style(allocator: result.allocator).color))])
            caption.append(text: result.allocator)
            table.append(caption)
            table.append(Element("thead", [:], [.element(row([
                Element("th", ["class": "text"], text: "region"),
                Element("th", text: "touched at peak"), Element("th", text: "mapped at peak"),
                Element("th", text: "touched at end"), Element("th", text: "mapped at end"),
            ]))]))
            var body = Element("tbody")
            let present = Set((breakdown.peak + breakdown.end).map(\.region))
            for region in palette.regionOrder where present.contains(region) {
                let peak = breakdown.peak.first { $0.region == region }
                let end = breakdown.end.first { $0.region == region }
                var name = Element("td", ["class": "text"], [.element(swatch(palette.color(region: region)))])
                name.append(text: region)
                body.append(row([name] + [peak?.touchedPages, peak?.mappedPages, end?.touchedPages, end?.mappedPages].map {
                    Element("td", text: Format.count($0 ?? 0))
                }))
            }
            func sum(_ usage: [RegionUsage], _ pages: KeyPath<RegionUsage, Int>) -> String {
                Format.count(usage.map { $0[keyPath: pages] }.reduce(0, +))
            }
            body.append(Element("tr", ["class": "total"], [
                .element(Element("td", ["class": "text"], text: "total")),
                .element(Element("td", text: sum(breakdown.peak, \.touchedPages))), .element(Element("td", text: sum(breakdown.peak, \.mappedPages))),
                .element(Element("td", text: sum(breakdown.end, \.touchedPages))), .element(Element("td", text: sum(breakdown.end, \.mappedPages))),
            ]))
            table.append(body)
            var cell = Element("div", ["class": "region-table"], [.element(scrolling(table))])
            let own = breakdown.newMappingsAtEnd
            if !own.isEmpty {
                let touched = own.map(\.touchedPages).reduce(0, +), mapped = own.map(\.mappedPages).reduce(0, +)
                cell.append(Element("p", ["class": "small"], text:
                    "\(own.count) anonymous mapping\(own.count == 1 ? "" : "s") of its own at the end: "
                    + "\(Format.count(touched)) touched / \(Format.count(mapped)) mapped pages."))
            }
            grid.append(cell)
        }
        if grid.children.isEmpty {
            grid.append(Element("p", text: "No breakdown was recorded."))
        }
        return grid
    }

    // MARK: - Ten thousand small processes

    static let baselineExplanation =
        "The process's own part is what its lean replay child holds privately besides the allocator's pages, from its exec "
        + "to the end of the replay: its stack, its data page, the loader's and the C library's start-up (a static glibc "
        + "mallocs at start-up), and the replay's slot table when the trace needs a mapped one; its page tables are counted too."

    /// A fleet that was run (`allocbench fleet`): the processes measured together at rest.
    static func measuredFleet(_ fleet: FleetReport, palette: Palette) -> [Element] {
        let count = Format.count(fleet.processes)
        var elements = [Element("p", text:
            "Measured: \(count) real processes per allocator (allocbench fleet), each replaying this trace and parked at its end "
            + "state, summed at rest from /proc, against \(count) × the single process; the drop in MemAvailable and a memory "
            + "cgroup's usage add what the kernel spends per process (kernel stack, task and mm structures).")]
        var table = Element("table", ["class": "costs"])
        table.append(Element("thead", [:], [.element(row([
            Element("th", ["class": "text"], text: "allocator"), Element("th", text: "processes"),
            Element("th", text: "Σ RssAnon + VmPTE"), Element("th", text: "\(count) × single"), Element("th", text: "ratio"),
            Element("th", text: "MemAvailable drop per process"), Element("th", text: "cgroup per process"),
            Element("th", text: "seconds to start"),
        ]))]))
        var body = Element("tbody")
        for result in fleet.results {
            var name = Element("td", ["class": "text name"], [.element(swatch(palette.style(allocator: result.allocator).color))])
            name.append(text: result.allocator)
            guard result.isOK, let total = result.total, let expected = result.expectedKilobytes, let ratio = result.ratio else {
                body.append(row([name, Element("td", ["class": "text failure", "colspan": "7"], text: "failed: " + (result.detail ?? ""))]))
                continue
            }
            let perProcess = result.netDropPerProcessKilobytes.map { String(format: "%.1f KiB", $0) } ?? "-"
            let cgroup = result.cgroup.map { usage in
                String(format: "%.1f KiB", Double(usage.usageKilobytes - (result.harnessKilobytes ?? 0)) / Double(max(1, result.processes)))
            } ?? (result.cgroupUnavailable.map { "none: " + $0 } ?? "-")
            body.append(row([name, Element("td", text: Format.count(result.processes)),
                             Element("td", text: Format.kibibytes(FleetResult.privateKilobytes(total))),
                             Element("td", text: Format.kibibytes(expected)), Element("td", text: String(format: "%.3f", ratio)),
                             Element("td", text: perProcess), Element("td", text: cgroup),
                             Element("td", text: result.startSeconds.map { String(format: "%.1f", $0) } ?? "-")]))
        }
        table.append(body)
        elements.append(scrolling(table))
        return elements
    }

    static func processCosts(_ run: TraceRun, pageSize: Int, palette: Palette) -> [Element] {
        let fleet = Format.count(ProcessCost.fleetSize)
        var elements = [Element("p", text:
            "What one process replaying this trace holds privately at its peak — its own part and the allocator's pages "
            + "(RssAnon), and its page tables — and what \(fleet) such processes would hold. The allocator's own share is the "
            + "touched peak alone. " + baselineExplanation)]
        var table = Element("table", ["class": "costs"])
        table.append(Element("thead", [:], [.element(row([
            Element("th", ["class": "text"], text: "allocator"),
            Element("th", text: "the process's own part"), Element("th", text: "allocator's share (touched peak)"),
            Element("th", text: "per process"), Element("th", text: "× \(fleet) processes"),
            Element("th", text: "allocator's share × \(fleet)"),
        ]))]))
        var body = Element("tbody")
        for result in run.results {
            var name = Element("td", ["class": "text name"], [.element(swatch(palette.style(allocator: result.allocator).color))])
            name.append(text: result.allocator)
            guard let cost = ProcessCost(result, pageSize: pageSize) else {
                body.append(row([name, Element("td", ["class": "text failure", "colspan": "5"], text: result.status.rawValue + ": no measurement")]))
                continue
            }
            func amount(_ kilobytes: Int) -> Element {
                Element("td", [:], [
                    .text(Format.kibibytes(kilobytes)),
                    .element(Element("span", ["class": "pages"], text: Format.pages(cost.pages(kilobytes)))),
                ])
            }
            var fleetCell = Element("td", ["class": "fleet", "data-kib": String(cost.fleetKilobytes)], text: Format.kibibytes(cost.fleetKilobytes))
            fleetCell.attributes.append((name: "data-allocator", value: result.allocator))
            body.append(row([name, amount(cost.baselineKilobytes), amount(cost.allocatorKilobytes), amount(cost.perProcessKilobytes),
                             fleetCell, Element("td", text: Format.kibibytes(cost.allocatorFleetKilobytes))]))
        }
        table.append(body)
        elements.append(scrolling(table))
        elements.append(Element("p", ["class": "small"], text:
            "Per process: the process's own part + the allocator's share + its page tables (VmPTE). Not counted: shared or "
            + "file-backed pages such as program text, which such processes share, and the kernel's own per-process memory "
            + "(a measured fleet shows it)."))
        return elements
    }

    // MARK: - Style

    /// No `<` or `&` here: a style element's text is not escaped.
    static let stylesheet = """
        :root { color-scheme: light; }
        body { margin: 0; background: #F4F4F2; color: #222222; font: 15px/1.5 system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, Helvetica, Arial, sans-serif; }
        main { max-width: 1160px; margin: 0 auto; padding: 24px 20px 48px; }
        h1 { font-size: 28px; margin: 8px 0 4px; }
        h2 { font-size: 22px; margin: 0 0 6px; }
        h3 { font-size: 17px; margin: 28px 0 6px; border-top: 1px solid #E4E4E4; padding-top: 16px; }
        .lede { max-width: 800px; color: #444444; }
        .contents { display: flex; flex-wrap: wrap; gap: 8px 20px; padding: 0; list-style: none; }
        section.trace { background: #FFFFFF; border: 1px solid #DDDDDD; border-radius: 8px; padding: 20px 24px 24px; margin: 20px 0; }
        p.meta { margin: 0; color: #555555; font-size: 13.5px; overflow-wrap: anywhere; }
        .facts { display: flex; flex-wrap: wrap; gap: 12px; margin: 14px 0 18px; }
        .fact { border: 1px solid #E4E4E4; border-radius: 6px; padding: 8px 14px; min-width: 140px; }
        .fact .value { display: block; font-size: 20px; font-weight: 600; font-variant-numeric: tabular-nums; }
        .fact .label { display: block; font-size: 12.5px; color: #5C5C5C; }
        .scroll { overflow-x: auto; }
        table { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; }
        caption { text-align: left; font-weight: 600; padding: 4px 0; }
        th, td { padding: 4px 8px; text-align: right; white-space: nowrap; border-bottom: 1px solid #E8E8E8; }
        td.wraps { white-space: normal; min-width: 120px; }
        th { font-weight: 600; background: #F6F6F6; border-bottom: 1px solid #CCCCCC; white-space: normal; vertical-align: bottom; }
        th.text, td.text { text-align: left; }
        td.name { font-weight: 600; }
        td.failure { color: #A0361A; }
        td .pages { display: block; font-size: 12px; color: #5C5C5C; }
        td.fleet { font-weight: 600; }
        tr.total td { font-weight: 600; border-top: 1px solid #CCCCCC; }
        .swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 7px; vertical-align: -1px; }
        figure { margin: 14px 0; }
        svg.chart { display: block; max-width: 100%; height: auto; border: 1px solid #ECECEC; border-radius: 6px; }
        .regions { display: flex; flex-wrap: wrap; gap: 16px 32px; }
        .small { font-size: 13px; color: #555555; margin: 6px 0; }
        ul.notes { font-size: 13.5px; }
        footer { font-size: 12.5px; color: #666666; margin-top: 24px; }
        """
}
