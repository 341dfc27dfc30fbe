import AllocBenchModel

/// Fixed, colorblind-friendly colors. An allocator keeps its color in every chart and every trace
/// section of one report: colors follow the order in which allocators first appear.
public struct Palette: Sendable {
    /// Okabe & Ito's palette without its yellow, which is too light on white.
    static let allocatorColors = ["#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7", "#56B4E9", "#000000"]
    /// Paul Tol's "muted" scheme, for regions (kept apart from the allocator colors: a region is
    /// not an allocator).
    static let regionColors = ["#CC6677", "#332288", "#DDCC77", "#117733", "#88CCEE", "#882255", "#44AA99", "#999933", "#AA4499"]
    /// Regions the harness names, in the order their colors are given; other regions (a library's
    /// data/bss) take the remaining colors in alphabetical order.
    static let knownRegions = ["heap (brk)", "anonymous mmaps", "executable data/bss", "stack", "allocbench inputs", "other"]

    /// The ideal: live bytes / page size.
    static let idealFill = "#E3E3E3"
    static let idealStroke = "#7A7A7A"
    static let text = "#222222"
    static let mutedText = "#5C5C5C"
    static let grid = "#E6E6E6"
    static let axis = "#8A8A8A"

    private var allocators: [String] = []
    private var regions: [String] = []

    public init(_ report: RunReport) {
        for run in report.runs {
            for result in run.results where !allocators.contains(result.allocator) {
                allocators.append(result.allocator)
            }
        }
        var found = Set<String>()
        for run in report.runs {
            for result in run.results {
                for usage in (result.breakdown?.peak ?? []) + (result.breakdown?.end ?? []) { found.insert(usage.region) }
            }
        }
        regions = Palette.knownRegions.filter(found.contains) + found.subtracting(Palette.knownRegions).sorted()
    }

    /// The stroke of an allocator's lines and bars, and a dash pattern once the colors run out.
    public func style(allocator: String) -> (color: String, dash: String?) {
        let index = allocators.firstIndex(of: allocator) ?? allocators.count
        let colors = Palette.allocatorColors
        let dashes: [String?] = [nil, "7 4", "2 3"]
        return (colors[index % colors.count], dashes[(index / colors.count) % dashes.count])
    }

    public func color(region: String) -> String {
        let index = regions.firstIndex(of: region) ?? regions.count
        return Palette.regionColors[index % Palette.regionColors.count]
    }

    /// Every region of the report, in legend order.
    public var regionOrder: [String] { regions }

    /// Dark or light text, whichever reads better on `background` ("#RRGGBB").
    static func textColor(on background: String) -> String {
        let hex = background.dropFirst()
        guard hex.count == 6, let value = Int(hex, radix: 16) else { return text }
        let red = Double((value >> 16) & 0xFF), green = Double((value >> 8) & 0xFF), blue = Double(value & 0xFF)
        let luminance = (0.299 * red + 0.587 * green + 0.114 * blue) / 255
        return luminance > 0.55 ? text : "#FFFFFF"
    }
}
