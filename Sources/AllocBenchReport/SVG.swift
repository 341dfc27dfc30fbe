import Foundation

/// A rectangle in SVG user units.
struct Box {
    var left: Double
    var top: Double
    var right: Double
    var bottom: Double

    var width: Double { right - left }
    var height: Double { bottom - top }
}

/// Maps a data interval linearly onto a pixel interval (which may run backwards, as a y axis does).
struct LinearScale {
    var domain: (lower: Double, upper: Double)
    var range: (from: Double, to: Double)

    func callAsFunction(_ value: Double) -> Double {
        let span = domain.upper - domain.lower
        let fraction = span == 0 ? 0 : (value - domain.lower) / span
        return range.from + fraction * (range.to - range.from)
    }
}

/// One line of a chart legend: a swatch and a label, with an optional smaller second line.
struct LegendEntry {
    enum Swatch {
        case line(color: String, dash: String?)
        case area(fill: String, stroke: String)
        case box(color: String)
    }

    var swatch: Swatch
    var label: String
    var detail: String?
}

/// Building blocks of the charts: every element carries its own presentation attributes, so a
/// chart looks the same inline in the page and as a standalone file.
enum SVG {
    static let namespace = "http://www.w3.org/2000/svg"
    static let fontFamily = "system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, Helvetica, Arial, sans-serif"
    static let titleSize = 17.0
    static let subtitleSize = 12.5
    static let labelSize = 13.0
    static let tickSize = 12.0

    /// An empty chart: white background, title and subtitle at the top left.
    static func chart(kind: String, width: Double, height: Double, title: String, subtitle: String) -> Element {
        var root = Element("svg", [
            "xmlns": namespace, "width": Format.coordinate(width), "height": Format.coordinate(height),
            "viewBox": "0 0 \(Format.coordinate(width)) \(Format.coordinate(height))", "role": "img",
            "font-family": fontFamily, "class": "chart", "data-chart": kind,
        ])
        root.append(Element("title", text: title))
        root.append(Element("rect", ["x": "0", "y": "0", "width": "100%", "height": "100%", "fill": "#FFFFFF"]))
        root.append(text(title, x: 16, y: 28, size: titleSize, weight: "bold"))
        root.append(text(subtitle, x: 16, y: 48, size: subtitleSize, fill: Palette.mutedText))
        return root
    }

    /// A standalone .svg file.
    static func document(_ chart: Element) -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n" + chart.rendered() + "\n"
    }

    static func text(_ content: String, x: Double, y: Double, size: Double = labelSize, anchor: String = "start",
                     weight: String? = nil, fill: String = Palette.text) -> Element {
        var element = Element("text", ["x": Format.coordinate(x), "y": Format.coordinate(y),
                                       "font-size": Format.coordinate(size), "fill": fill], text: content)
        if anchor != "start" { element.setAttribute("text-anchor", anchor) }
        if let weight { element.setAttribute("font-weight", weight) }
        return element
    }

    static func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String,
                     width: Double = 1, dash: String? = nil) -> Element {
        var element = Element("line", ["x1": Format.coordinate(x1), "y1": Format.coordinate(y1),
                                       "x2": Format.coordinate(x2), "y2": Format.coordinate(y2),
                                       "stroke": stroke, "stroke-width": Format.coordinate(width)])
        if let dash { element.setAttribute("stroke-dasharray", dash) }
        return element
    }

    static func rect(_ box: Box, fill: String) -> Element {
        Element("rect", ["x": Format.coordinate(box.left), "y": Format.coordinate(box.top),
                         "width": Format.coordinate(max(0, box.width)), "height": Format.coordinate(max(0, box.height)),
                         "fill": fill])
    }

    static func points(_ points: [(x: Double, y: Double)]) -> String {
        points.map { Format.coordinate($0.x) + "," + Format.coordinate($0.y) }.joined(separator: " ")
    }

    /// A tooltip: browsers show an element's <title> child on hover.
    static func tooltip(_ text: String) -> Element { Element("title", text: text) }

    /// An estimate of a label's width: the charts have no font metrics. The factors are those of
    /// DejaVu Sans, the widest common sans-serif, so labels fit in any of the fonts listed.
    static func textWidth(_ text: String, size: Double, bold: Bool = false) -> Double {
        Double(text.count) * size * (bold ? 0.68 : 0.6)
    }

    /// Vertical grid lines and tick labels under the plot, and the axis title below them.
    static func xAxis(_ ticks: Ticks, scale: LinearScale, plot: Box, title: String, onlyUpTo limit: Double? = nil) -> [Element] {
        var elements: [Element] = []
        for value in ticks.values where value <= (limit ?? .infinity) {
            let x = scale(value)
            elements.append(line(x, plot.top, x, plot.bottom, stroke: Palette.grid))
            var label = text(ticks.label(value), x: x, y: plot.bottom + 18, size: tickSize, anchor: "middle", fill: Palette.mutedText)
            label.setAttribute("class", "tick x")
            label.setAttribute("data-value", Format.trimmed(value, decimals: 6))
            elements.append(label)
        }
        elements.append(line(plot.left, plot.bottom, plot.right, plot.bottom, stroke: Palette.axis))
        elements.append(text(title, x: (plot.left + plot.right) / 2, y: plot.bottom + 40, size: labelSize, anchor: "middle"))
        return elements
    }

    /// Horizontal grid lines and tick labels left of the plot, and the axis title turned upright.
    static func yAxis(_ ticks: Ticks, scale: LinearScale, plot: Box, title: String) -> [Element] {
        var elements: [Element] = []
        for value in ticks.values {
            let y = scale(value)
            elements.append(line(plot.left, y, plot.right, y, stroke: value == 0 ? Palette.axis : Palette.grid))
            var label = text(ticks.label(value), x: plot.left - 8, y: y + 4, size: tickSize, anchor: "end", fill: Palette.mutedText)
            label.setAttribute("class", "tick y")
            label.setAttribute("data-value", Format.trimmed(value, decimals: 6))
            elements.append(label)
        }
        elements.append(line(plot.left, plot.top, plot.left, plot.bottom, stroke: Palette.axis))
        var axisTitle = text(title, x: 0, y: 0, size: labelSize, anchor: "middle")
        axisTitle.setAttribute("transform", "translate(18 \(Format.coordinate((plot.top + plot.bottom) / 2))) rotate(-90)")
        elements.append(axisTitle)
        return elements
    }

    /// The width a legend of these entries needs.
    static func legendWidth(_ entries: [LegendEntry]) -> Double {
        let widest = entries.map { entry in
            max(textWidth(entry.label, size: labelSize, bold: true), textWidth(entry.detail ?? "", size: tickSize))
        }.max() ?? 0
        return 34 + widest
    }

    /// A column of legend entries starting at (x, y).
    static func legend(_ entries: [LegendEntry], x: Double, y: Double) -> Element {
        var group = Element("g", ["class": "legend"])
        var top = y
        for entry in entries {
            switch entry.swatch {
            case .line(let color, let dash):
                group.append(line(x, top + 5, x + 24, top + 5, stroke: color, width: 3, dash: dash))
            case .area(let fill, let stroke):
                var swatch = rect(Box(left: x, top: top - 2, right: x + 24, bottom: top + 12), fill: fill)
                swatch.setAttribute("stroke", stroke)
                group.append(swatch)
            case .box(let color):
                group.append(rect(Box(left: x + 4, top: top - 2, right: x + 20, bottom: top + 12), fill: color))
            }
            group.append(text(entry.label, x: x + 32, y: top + 10, size: labelSize, weight: "bold"))
            top += 18
            if let detail = entry.detail {
                group.append(text(detail, x: x + 32, y: top + 8, size: tickSize, fill: Palette.mutedText))
                top += 17
            }
            top += 8
        }
        return group
    }

    /// The height `legend` takes for these entries.
    static func legendHeight(_ entries: [LegendEntry]) -> Double {
        entries.reduce(0) { $0 + 26 + ($1.detail == nil ? 0 : 17) }
    }
}
