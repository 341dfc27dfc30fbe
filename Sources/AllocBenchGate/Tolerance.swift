import AllocBenchModel
import Foundation

/// A tolerance that is not a number, a metric that does not exist: exit 64.
public struct ToleranceError: Error, Sendable, CustomStringConvertible, Equatable {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}

/// One `--tolerance` argument or one line of a tolerances file:
///
///     [ALLOCATOR:]METRIC=off
///     [ALLOCATOR:]METRIC=PART[,PART...]
///     PART = [+|-|±]NUMBER[%]      NUMBER = decimal ≥ 0, or inf
///
/// `%` makes a part relative to the baseline, otherwise it is absolute in the metric's unit. `+`
/// sets the allowance for increases, `-` for decreases, no sign (or ±) for both. A direction the
/// parts do not mention keeps the tolerance it had, so `ns_per_op_vs_glibc=+25%` tightens increases
/// and leaves decreases at their default.
public struct ToleranceOverride: Sendable, Equatable {
    public enum Change: Sendable, Equatable {
        case off
        case set(increase: Tolerance.Allowance?, decrease: Tolerance.Allowance?)
    }

    /// Applies to this allocator only; nil for every allocator.
    public var allocator: String?
    /// The canonical metric name.
    public var metric: String
    public var change: Change
    /// As written, for the report.
    public var text: String

    public func applied(to tolerance: Tolerance) -> Tolerance {
        var result = tolerance
        switch change {
        case .off:
            result.isGated = false
        case .set(let increase, let decrease):
            result.isGated = true
            if let increase { result.increase = increase }
            if let decrease { result.decrease = decrease }
        }
        return result
    }

    public static func parse(_ rawText: String, metrics: [Metric] = Metric.gated) throws(ToleranceError) -> ToleranceOverride {
        let text = rawText.trimmingCharacters(in: .whitespacesAndNewlines)
        let example = "expected [ALLOCATOR:]METRIC=TOLERANCE, e.g. touched_peak=0, minor_faults=5%,4 or jemalloc:ns_per_op_vs_glibc=+25%"
        guard let equals = text.firstIndex(of: "=") else {
            throw ToleranceError("tolerance '\(text)': \(example)")
        }
        var key = text[..<equals].trimmingCharacters(in: .whitespaces)
        let value = text[text.index(after: equals)...].trimmingCharacters(in: .whitespaces)
        var allocator: String?
        if let colon = key.firstIndex(of: ":") {
            allocator = key[..<colon].trimmingCharacters(in: .whitespaces)
            key = key[key.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            guard allocator?.isEmpty == false else { throw ToleranceError("tolerance '\(text)': empty allocator name before ':'") }
        }
        guard let metric = Metric.named(key, in: metrics) else {
            throw ToleranceError("tolerance '\(text)': unknown metric '\(key)' (metrics: \(metrics.map(\.key).joined(separator: ", ")))")
        }
        guard !value.isEmpty else { throw ToleranceError("tolerance '\(text)': no tolerance after '='; \(example)") }
        if value == "off" {
            return ToleranceOverride(allocator: allocator, metric: metric.key, change: .off, text: text)
        }

        var increase: Tolerance.Allowance?
        var decrease: Tolerance.Allowance?
        for rawPart in value.split(separator: ",", omittingEmptySubsequences: false) {
            var part = Substring(rawPart.trimmingCharacters(in: .whitespaces))
            var directions: (increase: Bool, decrease: Bool) = (true, true)
            switch part.first {
            case "+": directions = (true, false); part.removeFirst()
            case "-", "−": directions = (false, true); part.removeFirst()
            case "±": part.removeFirst()
            default: break
            }
            let isRelative = part.hasSuffix("%")
            if isRelative { part.removeLast() }
            guard let number = parseNumber(part) else {
                throw ToleranceError("tolerance '\(text)': '\(rawPart.trimmingCharacters(in: .whitespaces))' is not a tolerance; "
                    + "a part is [+|-]NUMBER or [+|-]NUMBER% with NUMBER ≥ 0 (or inf), or the whole value is off")
            }
            func set(_ allowance: inout Tolerance.Allowance?, _ direction: String) throws(ToleranceError) {
                var updated = allowance ?? .zero
                let kind = isRelative ? "relative" : "absolute"
                if isRelative ? updated.relative != nil : updated.absolute != nil {
                    throw ToleranceError("tolerance '\(text)': the \(kind) tolerance for \(direction) is given twice")
                }
                if isRelative { updated.relative = number / 100 } else { updated.absolute = number }
                allowance = updated
            }
            if directions.increase { try set(&increase, "increases") }
            if directions.decrease { try set(&decrease, "decreases") }
        }
        return ToleranceOverride(allocator: allocator, metric: metric.key,
                                 change: .set(increase: increase, decrease: decrease), text: text)
    }

    /// A non-negative decimal without exponent or sign ("0", "2.5", ".5"), or "inf".
    static func parseNumber(_ text: Substring) -> Double? {
        if text == "inf" { return .infinity }
        guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              text.contains(where: \.isNumber), let number = Double(text) else { return nil }
        return number
    }
}

/// The defaults in code, then every override in the order given: later overrides win, and an
/// allocator-scoped override applies to that allocator only.
public struct ToleranceTable: Sendable {
    public private(set) var overrides: [ToleranceOverride] = []
    /// Where the overrides came from, for the report: a file path or "--tolerance".
    public private(set) var sources: [String] = []

    public init() {}

    public mutating func add(_ override: ToleranceOverride, source: String) {
        overrides.append(override)
        if !sources.contains(source) { sources.append(source) }
    }

    public func tolerance(for metric: Metric, allocator: String) -> Tolerance {
        overrides.reduce(metric.defaultTolerance) { tolerance, override in
            override.metric == metric.key && (override.allocator == nil || override.allocator == allocator)
                ? override.applied(to: tolerance) : tolerance
        }
    }

    /// The allocators named by overrides, to warn about ones that match nothing.
    public var scopedAllocators: Set<String> { Set(overrides.compactMap(\.allocator)) }

    /// A tolerances file: one override per line, `#` starts a comment. Errors name the line.
    public static func parseFile(_ text: String, path: String, metrics: [Metric] = Metric.gated) throws(ToleranceError) -> [ToleranceOverride] {
        var overrides: [ToleranceOverride] = []
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = rawLine.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
            do {
                overrides.append(try ToleranceOverride.parse(line, metrics: metrics))
            } catch {
                throw ToleranceError("\(path):\(index + 1): \(error.description)")
            }
        }
        return overrides
    }
}
