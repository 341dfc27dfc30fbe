@testable import AllocBenchHarness
import AllocBenchModel
@testable import AllocBenchReport
import Foundation
import FoundationXML
import XCTest

final class ReportTicksTests: XCTestCase {
    func testStepsAreOneTwoOrFiveTimesAPowerOfTenAndCoverTheData() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            let lower = Bool.random(using: &generator) ? 0 : -Double.random(in: 0...5000, using: &generator)
            let upper = Double.random(in: 0.001...5_000_000, using: &generator)
            let ticks = Ticks(covering: lower, upper, count: 6)
            let mantissa = ticks.step / pow(10, log10(ticks.step).rounded(.down))
            XCTAssertTrue([1, 2, 5].contains { abs(mantissa - $0) < 1e-9 }, "step \(ticks.step) for \(lower)...\(upper)")
            XCTAssertLessThanOrEqual(ticks.lower, lower)
            XCTAssertGreaterThanOrEqual(ticks.upper, upper)
            XCTAssertLessThan(ticks.upper - ticks.step, upper, "no empty step on top")
            XCTAssertGreaterThan(ticks.lower + ticks.step, lower, "no empty step below")
            XCTAssertTrue((3...16).contains(ticks.values.count), "\(ticks.values.count) ticks for \(lower)...\(upper)")
        }
    }

    func testKnownRanges() {
        XCTAssertEqual(Ticks(covering: 0, 2308, count: 6, integers: true).values, [0, 500, 1000, 1500, 2000, 2500])
        XCTAssertEqual(Ticks(covering: 0, 1.07, count: 6).values, [0, 0.2, 0.4, 0.6, 0.8, 1, 1.2])
        XCTAssertEqual(Ticks(covering: 0, 3, count: 6, integers: true).values, [0, 1, 2, 3], "no half pages")
        XCTAssertEqual(Ticks(covering: 0, 0, count: 6, integers: true).values, [0, 1], "an empty range still has an axis")
        XCTAssertEqual(Ticks(covering: -3, 17, count: 5, integers: true).values, [-5, 0, 5, 10, 15, 20])
    }

    func testLabels() {
        let ops = Ticks(covering: 0, 1_234_567, count: 8)
        XCTAssertEqual(ops.step, 200_000)
        XCTAssertEqual(ops.values.map(ops.label), ["0", "200k", "400k", "600k", "800k", "1M", "1.2M", "1.4M"])
        let gccHello = Ticks(covering: 0, 17_775, count: 8, integers: true)
        XCTAssertEqual(gccHello.values.map(gccHello.label), ["0", "2k", "4k", "6k", "8k", "10k", "12k", "14k", "16k", "18k"],
                       "one axis never mixes 8,000 and 10k")
        let pages = Ticks(covering: 0, 2308, count: 6)
        XCTAssertEqual(pages.values.map(pages.label), ["0", "500", "1,000", "1,500", "2,000", "2,500"])
        let ratio = Ticks(covering: 0, 1.07, count: 6)
        XCTAssertEqual(ratio.label(0.6), "0.6")
        XCTAssertEqual(Format.count(-1234), "−1,234")
    }
}
