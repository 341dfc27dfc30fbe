import Foundation

/// Which direction of change is a regression.
public enum Polarity: String, Codable, Sendable {
    /// Fewer pages, faults, calls or nanoseconds is better: an increase is a regression.
    case lowerIsBetter = "lower_is_better"
    /// More is better: a decrease is a regression.
    case higherIsBetter = "higher_is_better"

    /// Whether moving from `baseline` to `current` made things worse.
    public func isWorse(_ current: Double, than baseline: Double) -> Bool {
        switch self {
        case .lowerIsBetter: current > baseline
        case .higherIsBetter: current < baseline
        }
    }
}

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

    public static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(format: "%g", value)
    }
}
