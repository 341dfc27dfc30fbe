import Foundation

/// How far a metric may move from its baseline before the gate calls it a regression or an
/// improvement, separately for increases and decreases.
///
/// Within one direction, a change is tolerated when it is no larger than the absolute allowance OR
/// the relative allowance times the baseline, whichever is larger: the absolute part is a floor for
/// small baselines (4 faults out of 3), the relative part scales with big ones (5% of 30 000).
/// (package-benchmark flags a change that exceeds either; with a floor, small traces would flake.)
public struct Tolerance: Sendable, Equatable {
    public struct Allowance: Sendable, Equatable {
        /// A fraction of the baseline: 0.25 allows 25%.
        public var relative: Double?
        /// In the metric's unit.
        public var absolute: Double?

        public init(relative: Double?, absolute: Double?) {
            self.relative = relative
            self.absolute = absolute
        }

        /// No change at all.
        public static let zero = Allowance(relative: nil, absolute: nil)

        /// The largest change tolerated away from `baseline`.
        public func limit(from baseline: Double) -> Double {
            let relativeLimit: Double = switch relative {
            case nil: 0
            case .some(let fraction) where fraction.isInfinite: .infinity
            case .some(let fraction): fraction * abs(baseline)
            }
            return max(absolute ?? 0, relativeLimit)
        }

        /// "0", "4", "5%", "5% or 4", "any".
        public var description: String {
            var parts: [String] = []
            if let relative { parts.append(relative.isInfinite ? "any" : Tolerance.format(relative * 100) + "%") }
            if let absolute { parts.append(absolute.isInfinite ? "any" : Tolerance.format(absolute)) }
            return parts.isEmpty ? "0" : parts.joined(separator: " or ")
        }
    }

    public var increase: Allowance
    public var decrease: Allowance
    /// false: the metric is neither compared nor required on both sides (`METRIC=off`).
    public var isGated: Bool

    public init(increase: Allowance, decrease: Allowance, isGated: Bool = true) {
        self.increase = increase
        self.decrease = decrease
        self.isGated = isGated
    }

    public static let exact = Tolerance(increase: .zero, decrease: .zero)

    public static func both(_ allowance: Allowance) -> Tolerance {
        Tolerance(increase: allowance, decrease: allowance)
    }

    /// Whether `current` is close enough to `baseline`.
    public func permits(from baseline: Double, to current: Double) -> Bool {
        let change = current - baseline
        let limit = (change > 0 ? increase : decrease).limit(from: baseline)
        // Ratios are stored rounded; an epsilon keeps 1.25 → 1.5 at +20% from failing on the last bit.
        return abs(change) <= limit + 1e-9 * max(1, abs(baseline))
    }

    /// "±0", "±5% or 4", "+50% / −33%", "off".
    public var description: String {
        guard isGated else { return "off" }
        if increase == decrease { return "±" + increase.description }
        return "+" + increase.description + " / −" + decrease.description
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(format: "%g", value)
    }
}

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

    public static func parse(_ rawText: String, metrics: [GateMetric] = GateMetric.all) throws(ToleranceError) -> ToleranceOverride {
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
        guard let metric = GateMetric.named(key, in: metrics) else {
            throw ToleranceError("tolerance '\(text)': unknown metric '\(key)' (metrics: \(metrics.map(\.name).joined(separator: ", ")))")
        }
        guard !value.isEmpty else { throw ToleranceError("tolerance '\(text)': no tolerance after '='; \(example)") }
        if value == "off" {
            return ToleranceOverride(allocator: allocator, metric: metric.name, change: .off, text: text)
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
        return ToleranceOverride(allocator: allocator, metric: metric.name,
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

    public func tolerance(for metric: GateMetric, allocator: String) -> Tolerance {
        overrides.reduce(metric.defaultTolerance) { tolerance, override in
            override.metric == metric.name && (override.allocator == nil || override.allocator == allocator)
                ? override.applied(to: tolerance) : tolerance
        }
    }

    /// The allocators named by overrides, to warn about ones that match nothing.
    public var scopedAllocators: Set<String> { Set(overrides.compactMap(\.allocator)) }

    /// A tolerances file: one override per line, `#` starts a comment. Errors name the line.
    public static func parseFile(_ text: String, path: String, metrics: [GateMetric] = GateMetric.all) throws(ToleranceError) -> [ToleranceOverride] {
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
