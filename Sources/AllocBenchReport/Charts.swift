import AllocBenchModel
import Foundation

/// The charts of one trace. Each is an `<svg>` element, inlined in the page or written alone.
public enum Charts {
    /// What a timeline chart plots: RssAnon or VmSize, relative to the baseline.
    public enum Measure: String, Sendable, CaseIterable {
        case touched, mapped

        func kilobytes(_ sample: MemorySample) -> Int {
            switch self {
            case .touched: sample.rssAnonKilobytes
            case .mapped: sample.vmSizeKilobytes
            }
        }

        func totals(_ result: AllocatorResult) -> FinalAndPeak? {
            switch self {
            case .touched: result.touchedPages
            case .mapped: result.mappedPages
            }
        }
    }

    static let width = 1060.0

    /// An allocator's timeline in pages relative to its baseline: (ops completed, pages).
    static func series(_ result: AllocatorResult, _ measure: Measure, pageSize: Int) -> [(ops: Double, pages: Double)]? {
        guard let timeline = result.timeline, let baseline = result.baseline, !timeline.isEmpty else { return nil }
        let base = measure.kilobytes(baseline)
        return timeline.map { (Double($0.opsCompleted), Double(measure.kilobytes($0.sample) - base) * 1024 / Double(pageSize)) }
    }

    /// The ideal line: requested bytes live, in whole pages.
    static func idealSeries(_ run: TraceRun, pageSize: Int) -> [(ops: Double, pages: Double)]? {
        guard let live = run.liveBytes, !live.isEmpty else { return nil }
        return live.map { (Double($0.opsCompleted), (Double($0.liveBytes) / Double(pageSize)).rounded(.up)) }
    }

    // MARK: - Pages over time

    /// Touched (or mapped) pages against ops replayed, one line per allocator, over the ideal.
    public static func timeline(_ run: TraceRun, measure: Measure, pageSize: Int, palette: Palette) -> Element {
        let name = run.trace.name
        let pageUnit = "pages (\(pageSize / 1024) KiB)"
        let title: String
        let subtitle: String
        switch measure {
        case .touched:
            title = "Touched pages over time — \(name)"
            subtitle = "RssAnon − baseline at every mm syscall and at evenly spaced ops; grey: ideal = live bytes ÷ page size"
        case .mapped:
            title = "Mapped pages over time — \(name)"
            subtitle = "VmSize − baseline (address space) at every mm syscall and at evenly spaced ops; grey: ideal"
        }
        let ideal = idealSeries(run, pageSize: pageSize)
        let lines = run.results.map { ($0, series($0, measure, pageSize: pageSize)) }

        var legend: [LegendEntry] = []
        if let ideal {
            legend.append(LegendEntry(swatch: .area(fill: Palette.idealFill, stroke: Palette.idealStroke),
                                      label: "ideal", detail: "peak " + Format.pages(Int(ideal.map(\.pages).max() ?? 0))))
        }
        for (result, points) in lines {
            let style = palette.style(allocator: result.allocator)
            if points != nil, let totals = measure.totals(result) {
                legend.append(LegendEntry(swatch: .line(color: style.color, dash: style.dash), label: result.allocator,
                                          detail: "peak \(Format.count(totals.peak)) · end \(Format.count(totals.final))"))
            } else {
                legend.append(LegendEntry(swatch: .line(color: Palette.axis, dash: "2 3"), label: result.allocator,
                                          detail: result.isOK ? "no timeline recorded" : result.status.rawValue + ": no line"))
            }
        }
        let legendWidth = min(300, max(150, SVG.legendWidth(legend)))
        let height = max(460, 90 + SVG.legendHeight(legend))
        let plot = Box(left: 84, top: 72, right: width - legendWidth - 28, bottom: height - 62)

        let everyValue = (ideal ?? []).map(\.pages) + lines.flatMap { $0.1 ?? [] }.map(\.pages)
        let everyOps = (ideal ?? []).map(\.ops) + lines.flatMap { $0.1 ?? [] }.map(\.ops)
        let yTicks = Ticks(covering: min(0, everyValue.min() ?? 0), max(everyValue.max() ?? 1, 1), count: 6, integers: true)
        let lastOp = max(Double(run.trace.ops), everyOps.max() ?? 0, 1)
        let xTicks = Ticks(covering: 0, lastOp, count: 8, integers: true)
        let x = LinearScale(domain: (0, lastOp), range: (plot.left, plot.right))
        let y = LinearScale(domain: (yTicks.lower, yTicks.upper), range: (plot.bottom, plot.top))

        var chart = SVG.chart(kind: measure.rawValue, width: width, height: height, title: title, subtitle: subtitle)
        chart.setAttribute("data-y-max", Format.trimmed(yTicks.upper, decimals: 6))
        chart.append(contentsOf: SVG.yAxis(yTicks, scale: y, plot: plot, title: pageUnit))
        chart.append(contentsOf: SVG.xAxis(xTicks, scale: x, plot: plot, title: "ops replayed", onlyUpTo: lastOp))
        if let ideal {
            let outline = ideal.map { (x: x($0.ops), y: y($0.pages)) }
            let area = [(x: outline.first!.x, y: y(0))] + outline + [(x: outline.last!.x, y: y(0))]
            chart.append(Element("polygon", ["points": SVG.points(area), "fill": Palette.idealFill,
                                             "stroke": Palette.idealStroke, "stroke-width": "1",
                                             "class": "ideal", "data-points": String(ideal.count)]))
        }
        for (result, points) in lines {
            guard let points else { continue }
            let style = palette.style(allocator: result.allocator)
            var line = Element("polyline", [
                "points": SVG.points(points.map { (x: x($0.ops), y: y($0.pages)) }), "fill": "none",
                "stroke": style.color, "stroke-width": "2.2", "stroke-linejoin": "round", "stroke-opacity": "0.9",
                "class": "series", "data-allocator": result.allocator, "data-measure": measure.rawValue,
            ])
            if let dash = style.dash { line.setAttribute("stroke-dasharray", dash) }
            line.append(SVG.tooltip(result.allocator))
            chart.append(line)
        }
        for (result, points) in lines {
            guard let points, let highest = points.max(by: { $0.pages < $1.pages }) else { continue }
            var marker = Element("circle", ["cx": Format.coordinate(x(highest.ops)), "cy": Format.coordinate(y(highest.pages)),
                                            "r": "4", "fill": "#FFFFFF", "stroke": palette.style(allocator: result.allocator).color,
                                            "stroke-width": "2"])
            marker.append(SVG.tooltip("\(result.allocator): peak \(Format.pages(Int(highest.pages))) after op \(Format.count(Int(highest.ops)))"))
            chart.append(marker)
        }
        chart.append(SVG.legend(legend, x: plot.right + 24, y: plot.top))
        return chart
    }

    // MARK: - Touched peak / ideal

    /// One horizontal bar per allocator: touched peak ÷ ideal, with the ideal (1.00) marked.
    public static func overhead(_ run: TraceRun, pageSize: Int, palette: Palette) -> Element {
        let results = run.results
        let nameWidth = results.map { SVG.textWidth($0.allocator, size: SVG.labelSize, bold: true) }.max() ?? 60
        let labels = results.map(overheadLabel)
        let labelWidth = min(380, max(160, labels.map { SVG.textWidth($0, size: SVG.tickSize) }.max() ?? 0))
        let rowHeight = 26.0, rowGap = 14.0
        let plotTop = 88.0
        let plotHeight = Double(max(results.count, 1)) * (rowHeight + rowGap) + rowGap
        let height = plotTop + plotHeight + 62
        let plot = Box(left: 24 + nameWidth + 14, top: plotTop, right: width - labelWidth - 28, bottom: plotTop + plotHeight)

        let highest = results.compactMap(\.overhead).max() ?? 1
        let ticks = Ticks(covering: 0, max(highest, 1), count: 6)
        let x = LinearScale(domain: (0, ticks.upper), range: (plot.left, plot.right))
        var chart = SVG.chart(kind: "overhead", width: width, height: height,
                              title: "Touched peak ÷ ideal — \(run.trace.name)",
                              subtitle: "Pages touched at the peak for every page the live bytes needed (ideal \(Format.pages(run.trace.idealPages))); solid: the overhead past the ideal")
        chart.append(contentsOf: SVG.xAxis(ticks, scale: x, plot: plot, title: "touched peak ÷ ideal pages (1 = perfect packing)"))
        chart.append(SVG.line(x(1), plot.top - 14, x(1), plot.bottom, stroke: Palette.text, width: 1.5, dash: "5 4"))
        chart.append(SVG.text("ideal", x: x(1), y: plot.top - 18, size: SVG.tickSize, anchor: "middle", weight: "bold"))

        for (index, result) in results.enumerated() {
            let top = plot.top + rowGap + Double(index) * (rowHeight + rowGap)
            let style = palette.style(allocator: result.allocator)
            chart.append(SVG.text(result.allocator, x: plot.left - 12, y: top + rowHeight / 2 + 5, anchor: "end", weight: "bold"))
            var end = plot.left
            if let overhead = result.overhead {
                end = x(overhead)
                // The part past the ideal line is the overhead: drawn solid, the rest pale.
                let withinIdeal = SVG.rect(Box(left: plot.left, top: top, right: x(min(overhead, 1)), bottom: top + rowHeight), fill: style.color)
                var pale = withinIdeal
                pale.setAttribute("fill-opacity", "0.35")
                chart.append(pale)
                if overhead > 1 {
                    chart.append(SVG.rect(Box(left: x(1), top: top, right: end, bottom: top + rowHeight), fill: style.color))
                }
                var bar = SVG.rect(Box(left: plot.left, top: top, right: end, bottom: top + rowHeight), fill: "none")
                bar.setAttribute("stroke", style.color)
                bar.setAttribute("stroke-width", "1.5")
                if let dash = style.dash { bar.setAttribute("stroke-dasharray", dash) }
                bar.setAttribute("class", "bar")
                bar.setAttribute("data-allocator", result.allocator)
                bar.setAttribute("data-value", Format.trimmed(overhead, decimals: 4))
                bar.append(SVG.tooltip("\(result.allocator): \(labels[index])"))
                chart.append(bar)
            }
            chart.append(SVG.text(labels[index], x: result.overhead == nil ? plot.left + 8 : max(end, x(1)) + 8, y: top + rowHeight / 2 + 4, size: SVG.tickSize,
                                  fill: result.isOK ? Palette.text : Palette.mutedText))
        }
        return chart
    }

    static func overheadLabel(_ result: AllocatorResult) -> String {
        guard result.isOK, let touched = result.touchedPages else {
            return result.status.rawValue + (result.detail.map { ": " + $0 } ?? "")
        }
        guard let overhead = result.overhead else { return "\(Format.pages(touched.peak)); no ideal (nothing live)" }
        return String(format: "%.2f×", overhead) + " · \(Format.pages(touched.peak)) at peak"
    }

    // MARK: - Where the pages went

    /// Two stacked bars per allocator (at the touched peak, at the end): touched pages by region.
    /// Regions that shrank below the baseline stack to the left of zero.
    public static func breakdown(_ run: TraceRun, pageSize: Int, palette: Palette) -> Element {
        let results = run.results
        let regions = palette.regionOrder.filter { region in
            results.contains { ($0.breakdown?.peak ?? []).contains { $0.region == region } || ($0.breakdown?.end ?? []).contains { $0.region == region } }
        }
        let legend = regions.map { LegendEntry(swatch: .box(color: palette.color(region: $0)), label: $0, detail: nil) }
        let legendWidth = min(300, max(150, SVG.legendWidth(legend)))
        let nameWidth = results.map { SVG.textWidth($0.allocator, size: SVG.labelSize, bold: true) }.max() ?? 60
        let rowHeight = 22.0, pairGap = 6.0, groupGap = 22.0
        let groupHeight = 2 * rowHeight + pairGap
        let plotTop = 76.0
        let plotHeight = Double(max(results.count, 1)) * (groupHeight + groupGap) + groupGap - 8
        let height = max(plotTop + plotHeight + 62, plotTop + SVG.legendHeight(legend) + 20)
        let totalLabelWidth = 96.0
        let plot = Box(left: 24 + nameWidth + 12 + 56, top: plotTop, right: width - legendWidth - totalLabelWidth - 24,
                       bottom: plotTop + plotHeight)

        func extent(_ usage: [RegionUsage]) -> (negative: Int, positive: Int) {
            (usage.map(\.touchedPages).filter { $0 < 0 }.reduce(0, +), usage.map(\.touchedPages).filter { $0 > 0 }.reduce(0, +))
        }
        let extents = results.compactMap(\.breakdown).flatMap { [extent($0.peak), extent($0.end)] }
        let ticks = Ticks(covering: Double(extents.map(\.negative).min() ?? 0), Double(max(extents.map(\.positive).max() ?? 1, 1)),
                          count: 6, integers: true)
        let x = LinearScale(domain: (ticks.lower, ticks.upper), range: (plot.left, plot.right))

        var chart = SVG.chart(kind: "breakdown", width: width, height: height,
                              title: "Where the touched pages went — \(run.trace.name)",
                              subtitle: "Touched pages (RssAnon) by region relative to the baseline, at the touched peak and at the end")
        chart.append(contentsOf: SVG.xAxis(ticks, scale: x, plot: plot, title: "touched pages (\(pageSize / 1024) KiB)"))
        if ticks.lower < 0 { chart.append(SVG.line(x(0), plot.top, x(0), plot.bottom, stroke: Palette.axis)) }

        for (index, result) in results.enumerated() {
            let groupTop = plot.top + groupGap - 8 + Double(index) * (groupHeight + groupGap)
            chart.append(SVG.text(result.allocator, x: 24, y: groupTop + rowHeight / 2 + 5, weight: "bold"))
            guard let breakdown = result.breakdown else {
                chart.append(SVG.text(result.isOK ? "no breakdown recorded" : result.status.rawValue + ": no breakdown",
                                      x: plot.left + 8, y: groupTop + rowHeight / 2 + 5, size: SVG.tickSize, fill: Palette.mutedText))
                continue
            }
            for (row, (label, usage)) in [("at peak", breakdown.peak), ("at end", breakdown.end)].enumerated() {
                let top = groupTop + Double(row) * (rowHeight + pairGap)
                chart.append(SVG.text(label, x: plot.left - 8, y: top + rowHeight / 2 + 4, size: SVG.tickSize,
                                      anchor: "end", fill: Palette.mutedText))
                var positive = 0, negative = 0
                for region in regions {
                    guard let part = usage.first(where: { $0.region == region }), part.touchedPages != 0 else { continue }
                    let from: Int, to: Int
                    if part.touchedPages > 0 {
                        (from, to) = (positive, positive + part.touchedPages)
                        positive = to
                    } else {
                        (from, to) = (negative + part.touchedPages, negative)
                        negative = from
                    }
                    let box = Box(left: x(Double(from)), top: top, right: x(Double(to)), bottom: top + rowHeight)
                    let color = palette.color(region: region)
                    var segment = SVG.rect(box, fill: color)
                    segment.setAttribute("stroke", "#FFFFFF")
                    segment.setAttribute("stroke-width", "0.75")
                    segment.setAttribute("class", "segment")
                    segment.setAttribute("data-allocator", result.allocator)
                    segment.setAttribute("data-region", region)
                    segment.setAttribute("data-pages", String(part.touchedPages))
                    segment.append(SVG.tooltip("\(result.allocator) \(label): \(region) \(Format.count(part.touchedPages)) touched / \(Format.count(part.mappedPages)) mapped pages"))
                    chart.append(segment)
                    let number = Format.count(part.touchedPages)
                    if box.width >= SVG.textWidth(number, size: SVG.tickSize) + 10 {
                        chart.append(SVG.text(number, x: (box.left + box.right) / 2, y: top + rowHeight / 2 + 4, size: SVG.tickSize,
                                              anchor: "middle", fill: Palette.textColor(on: color)))
                    }
                }
                let total = usage.map(\.touchedPages).reduce(0, +)
                chart.append(SVG.text("= " + Format.count(total), x: x(Double(positive)) + 8, y: top + rowHeight / 2 + 4,
                                      size: SVG.tickSize, weight: "bold"))
            }
        }
        chart.append(SVG.legend(legend, x: plot.right + totalLabelWidth + 8, y: plot.top + 6))
        return chart
    }

    // MARK: - Files

    /// The charts of every trace as standalone .svg files: `<trace>-touched.svg`, `-mapped`,
    /// `-overhead`, `-breakdown`. Traces with the same name get `-2`, `-3`… after the name.
    public static func files(_ report: RunReport) -> [(name: String, contents: String)] {
        let palette = Palette(report)
        let pageSize = report.environment.pageSize
        var files: [(name: String, contents: String)] = []
        for (run, stem) in zip(report.runs, uniqueStems(report.runs.map(\.trace.name))) {
            files.append((stem + "-touched.svg", SVG.document(timeline(run, measure: .touched, pageSize: pageSize, palette: palette))))
            files.append((stem + "-mapped.svg", SVG.document(timeline(run, measure: .mapped, pageSize: pageSize, palette: palette))))
            files.append((stem + "-overhead.svg", SVG.document(overhead(run, pageSize: pageSize, palette: palette))))
            files.append((stem + "-breakdown.svg", SVG.document(breakdown(run, pageSize: pageSize, palette: palette))))
        }
        return files
    }

    /// File-name stems: the names made safe for a path component, repeats numbered.
    static func uniqueStems(_ names: [String]) -> [String] {
        var used = Set<String>()
        return names.map { name in
            var base = String(name.map { $0 == "/" || $0 == "\0" ? "_" : $0 })
            if base.isEmpty || base.hasPrefix(".") { base = "trace" + base }
            var stem = base
            var number = 1
            while used.contains(stem) {
                number += 1
                stem = "\(base)-\(number)"
            }
            used.insert(stem)
            return stem
        }
    }
}
