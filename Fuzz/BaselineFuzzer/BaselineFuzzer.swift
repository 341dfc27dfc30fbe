// libFuzzer target for what the gate reads (`make fuzz`; docs/architecture.md, "Fuzzing").
//
// Every input is decoded as `check` and `compare` decode a --baseline or report file
// (`GateSnapshot.decode`: a baseline, a run report, or an error), and parsed as a tolerances
// file. What decodes is then gated against itself and against nothing, under the tolerances the
// input parsed to, and the report rendered in every format. Errors are expected; crashes, hangs
// and leaks are bugs.
import AllocBenchGate
import AllocBenchModel
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzGateInput(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: count > 0 ? start : nil, count: count)
    var tolerances = ToleranceTable()
    if let overrides = try? ToleranceTable.parseFile(String(decoding: input, as: UTF8.self), path: "fuzz.txt") {
        for override in overrides { tolerances.add(override, source: "fuzz.txt") }
    }
    let snapshot: GateSnapshot
    switch try? GateSnapshot.decode(Data(input), source: "fuzz.json") {
    case .run(let report)?: snapshot = GateSnapshot(report: report, conditions: nil, source: "fuzz.json")
    case .baseline(let baseline)?: snapshot = GateSnapshot(baselines: [baseline], source: "fuzz.json")
    case nil: return 0
    }
    let empty = GateSnapshot(source: "none", traces: [])
    for (baseline, current) in [(snapshot, snapshot), (snapshot, empty), (empty, snapshot)] {
        let report = Gate.compare(baseline: baseline, current: current, tolerances: tolerances, command: "fuzz")
        for format in GateFormat.allCases { _ = try? GateRenderer().render(report, as: format) }
    }
    return 0
}
