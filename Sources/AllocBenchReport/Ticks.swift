import Foundation

/// Axis ticks at a "nice" step (1, 2 or 5 times a power of ten) that cover a range of data.
public struct Ticks: Sendable, Equatable {
    public var step: Double
    /// Evenly spaced, from a multiple of `step` at or below the data's lowest value to one at or
    /// above its highest.
    public var values: [Double]

    public var lower: Double { values.first ?? 0 }
    public var upper: Double { values.last ?? 0 }

    /// About `count` intervals covering `lower...upper`. With `integers`, the step is at least 1
    /// (page counts have no fractions). An empty range is widened to one step above it.
    public init(covering lower: Double, _ upper: Double, count: Int = 5, integers: Bool = false) {
        precondition(lower <= upper && lower.isFinite && upper.isFinite, "ticks need a finite range")
        let span = upper > lower ? upper - lower : max(abs(upper), 1)
        var step = Ticks.niceStep(span / Double(max(count, 1)))
        if integers { step = max(step, 1) }
        let first = (lower / step).rounded(.down)
        var last = (upper / step).rounded(.up)
        if last <= first { last = first + 1 }
        self.step = step
        values = (0...Int(last - first)).map { Ticks.clean((first + Double($0)) * step, step: step) }
    }

    /// 1, 2, 5 or 10 times a power of ten, whichever is nearest to `rough` (Heckbert's "nice
    /// numbers"), so the axis gets about as many ticks as asked for, never far fewer.
    static func niceStep(_ rough: Double) -> Double {
        let magnitude = pow(10, (log10(rough)).rounded(.down))
        let residual = rough / magnitude
        let nice: Double = residual < 1.5 ? 1 : residual < 3 ? 2 : residual < 7 ? 5 : 10
        return nice * magnitude
    }

    /// Removes the binary noise of `k * step` (0.30000000000000004 → 0.3).
    private static func clean(_ value: Double, step: Double) -> Double {
        let decimals = max(0, -Int((log10(step)).rounded(.down)))
        let scale = pow(10, Double(decimals))
        return (value * scale).rounded() / scale
    }

    /// A tick label. An axis reaching 10,000 in steps of 1,000 or more labels every tick with k or
    /// M, as d3's "~s" does ("0, 2k, 4k … 18k", "800k, 1M, 1.2M"), so one axis never mixes "8,000"
    /// and "10k"; shorter axes group digits in thousands ("2,500") with the decimals the step needs.
    public func label(_ value: Double) -> String {
        if upper >= 10_000 && step >= 1_000 {
            if abs(value) >= 1_000_000 { return Format.trimmed(value / 1_000_000, decimals: 3) + "M" }
            if abs(value) >= 1_000 { return Format.trimmed(value / 1_000, decimals: 3) + "k" }
        }
        let decimals = max(0, -Int((log10(step)).rounded(.down)))
        return decimals == 0 ? Format.count(Int(value.rounded())) : String(format: "%.\(decimals)f", value)
    }
}

/// Number formats shared by the charts and the page.
public enum Format {
    /// 1234567 → "1,234,567".
    public static func count(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var grouped = ""
        for (index, digit) in digits.enumerated() {
            if index > 0 && (digits.count - index) % 3 == 0 { grouped += "," }
            grouped.append(digit)
        }
        return (value < 0 ? "−" : "") + grouped
    }

    /// A number with at most `decimals` decimals and no trailing zeros: 2.50 → "2.5", 3.0 → "3".
    public static func trimmed(_ value: Double, decimals: Int) -> String {
        var text = String(format: "%.\(decimals)f", value)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return text == "-0" ? "0" : text
    }

    /// Kibibytes in the largest binary unit that keeps the number at least 1: "812 KiB",
    /// "9.8 MiB", "97.66 GiB".
    public static func kibibytes(_ kibibytes: Int) -> String {
        let value = Double(kibibytes)
        switch kibibytes.magnitude {
        case ..<1024: return count(kibibytes) + " KiB"
        case ..<(1024 * 1024): return String(format: "%.1f MiB", value / 1024)
        case ..<(1024 * 1024 * 1024): return String(format: "%.2f GiB", value / (1024 * 1024))
        default: return String(format: "%.2f TiB", value / (1024 * 1024 * 1024))
        }
    }

    /// "2,308 pages", "1 page".
    public static func pages(_ pages: Int) -> String {
        count(pages) + (pages == 1 ? " page" : " pages")
    }

    /// A number for an SVG attribute: one decimal at most.
    static func coordinate(_ value: Double) -> String {
        let tenths = (value * 10).rounded()
        if tenths.truncatingRemainder(dividingBy: 10) == 0 { return String(Int(tenths / 10)) }
        return String(format: "%.1f", tenths / 10)
    }
}
