import AllocBenchGate
import AllocBenchModel
import XCTest

final class GateToleranceTests: XCTestCase {
    typealias Allowance = Tolerance.Allowance

    func testParsesAbsoluteRelativeDirectionalScopedAndOff() throws {
        XCTAssertEqual(try ToleranceOverride.parse("touched_peak=0").change, .set(increase: .zero.with(absolute: 0), decrease: .zero.with(absolute: 0)))
        XCTAssertEqual(try ToleranceOverride.parse(" minor_faults = 5% , 4 ").change,
                       .set(increase: Allowance(relative: 0.05, absolute: 4), decrease: Allowance(relative: 0.05, absolute: 4)))
        XCTAssertEqual(try ToleranceOverride.parse("ns_per_op_vs_glibc=+25%").change,
                       .set(increase: Allowance(relative: 0.25, absolute: nil), decrease: nil))
        XCTAssertEqual(try ToleranceOverride.parse("mapped_peak=+10%,-2").change,
                       .set(increase: Allowance(relative: 0.10, absolute: nil), decrease: Allowance(relative: nil, absolute: 2)))
        XCTAssertEqual(try ToleranceOverride.parse("mapped_peak=±1.5").change,
                       .set(increase: Allowance(relative: nil, absolute: 1.5), decrease: Allowance(relative: nil, absolute: 1.5)))
        XCTAssertEqual(try ToleranceOverride.parse("mapped_peak=-inf").change, .set(increase: nil, decrease: Allowance(relative: nil, absolute: .infinity)))
        XCTAssertEqual(try ToleranceOverride.parse("brk_calls=off").change, .off)

        let scoped = try ToleranceOverride.parse("bss-arena:touched_final=4")
        XCTAssertEqual(scoped.allocator, "bss-arena")
        XCTAssertEqual(scoped.metric, "touched_final")
        XCTAssertEqual(try ToleranceOverride.parse("ns_per_op=+25%").metric, "ns_per_op_vs_glibc", "the issue's spelling means the ratio")
    }

    func testRejectsMalformedTolerancesWithAMessageNamingThem() {
        let cases: [(String, String)] = [
            ("touched_peak", "tolerance 'touched_peak': expected [ALLOCATOR:]METRIC=TOLERANCE"),
            ("touched_pages=1", "unknown metric 'touched_pages' (metrics: process_rss_anon_kb_end, process_rss_anon_kb_peak, "),
            ("ns_per_op_absolute=+25%", "unknown metric 'ns_per_op_absolute'"),
            ("touched_peak=", "no tolerance after '='"),
            ("touched_peak=lots", "'lots' is not a tolerance"),
            ("touched_peak=-", "'-' is not a tolerance"),
            ("touched_peak=%", "'%' is not a tolerance"),
            ("touched_peak=1e3", "'1e3' is not a tolerance"),
            ("touched_peak=nan", "'nan' is not a tolerance"),
            ("touched_peak=5,", "'' is not a tolerance"),
            ("touched_peak=5%,10%", "the relative tolerance for increases is given twice"),
            ("touched_peak=-1,2", "the absolute tolerance for decreases is given twice"),
            (":touched_peak=1", "empty allocator name"),
        ]
        for (text, expected) in cases {
            do {
                let parsed = try ToleranceOverride.parse(text)
                XCTFail("'\(text)' parsed as \(parsed)")
            } catch {
                XCTAssertTrue(error.description.contains(expected), "'\(text)': \(error.description)")
            }
        }
    }

    func testAChangeIsToleratedUpToTheLargerOfTheAbsoluteAndRelativeAllowance() {
        let tolerance = Tolerance.both(Allowance(relative: 0.05, absolute: 4))
        XCTAssertTrue(tolerance.permits(from: 3, to: 7))
        XCTAssertFalse(tolerance.permits(from: 3, to: 8))
        XCTAssertTrue(tolerance.permits(from: 1000, to: 950))
        XCTAssertFalse(tolerance.permits(from: 1000, to: 949))
        XCTAssertTrue(Tolerance.exact.permits(from: 5, to: 5))
        XCTAssertFalse(Tolerance.exact.permits(from: 5, to: 6))
        XCTAssertFalse(Tolerance.both(Allowance(relative: 0.5, absolute: nil)).permits(from: 0, to: 1), "nothing is 50% of 0")
        XCTAssertTrue(Tolerance.both(Allowance(relative: .infinity, absolute: nil)).permits(from: 0, to: 1e9))
        XCTAssertTrue(Tolerance.both(Allowance(relative: 0.25, absolute: nil)).permits(from: 1.2, to: 1.5), "exactly at the limit, despite rounding")
    }

    func testDirectionsAreToleratedSeparately() throws {
        let table = try table(["ns_per_op_vs_glibc=+20%"])
        let tolerance = table.tolerance(for: .nanosecondsPerOpVersusGlibc, allocator: "jemalloc")
        XCTAssertEqual(tolerance.increase, Allowance(relative: 0.20, absolute: nil))
        XCTAssertEqual(tolerance.decrease, Metric.nanosecondsPerOpVersusGlibc.defaultTolerance.decrease, "decreases keep the default")
        XCTAssertFalse(tolerance.permits(from: 1, to: 1.25))
        XCTAssertTrue(tolerance.permits(from: 1, to: 0.6))
        XCTAssertEqual(tolerance.description, "+20% / −50%")
    }

    func testLaterOverridesWinAndAnAllocatorScopeStaysWithItsAllocator() throws {
        let table = try table(["jemalloc:touched_peak=4", "touched_final=2", "touched_final=off", "jemalloc:touched_final=1"])
        XCTAssertEqual(table.tolerance(for: .touchedPeak, allocator: "jemalloc").description, "±4")
        XCTAssertEqual(table.tolerance(for: .touchedPeak, allocator: "glibc").description, "±0")
        XCTAssertFalse(table.tolerance(for: .touchedFinal, allocator: "glibc").isGated)
        XCTAssertEqual(table.tolerance(for: .touchedFinal, allocator: "jemalloc").description, "±1", "a later value switches it back on")
        XCTAssertEqual(table.tolerance(for: .minorFaults, allocator: "glibc").description, "±5% or 4", "the default")
        XCTAssertEqual(table.scopedAllocators, ["jemalloc"])
    }

    func testToleranceFilesSkipCommentsAndNameTheBadLine() throws {
        let text = """
            # jemalloc's layout depends on ASLR
            jemalloc:touched_peak=4   # a few pages either way

            minor_faults=10%,8
            """
        let overrides = try ToleranceTable.parseFile(text, path: "t.txt")
        XCTAssertEqual(overrides.map(\.text), ["jemalloc:touched_peak=4", "minor_faults=10%,8"])
        XCTAssertThrowsError(try ToleranceTable.parseFile("touched_peak=0\n\ntouched_peak=x\n", path: "Benchmarks/t.txt")) { error in
            XCTAssertEqual((error as? ToleranceError)?.description.hasPrefix("Benchmarks/t.txt:3: tolerance 'touched_peak=x'"), true, "\(error)")
        }
    }

    func testDescriptions() {
        XCTAssertEqual(Tolerance.exact.description, "±0")
        XCTAssertEqual(Metric.minorFaults.defaultTolerance.description, "±5% or 4")
        XCTAssertEqual(Tolerance(increase: .zero, decrease: Allowance(relative: nil, absolute: .infinity)).description, "+0 / −any")
        XCTAssertEqual(Tolerance(increase: .zero, decrease: .zero, isGated: false).description, "off")
    }

    private func table(_ texts: [String]) throws -> ToleranceTable {
        var table = ToleranceTable()
        for text in texts { table.add(try ToleranceOverride.parse(text), source: "--tolerance") }
        return table
    }
}

extension Tolerance.Allowance {
    func with(absolute: Double) -> Tolerance.Allowance {
        Tolerance.Allowance(relative: relative, absolute: absolute)
    }
}
