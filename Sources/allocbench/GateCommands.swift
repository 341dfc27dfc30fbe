import AllocBenchGate
import AllocBenchHarness
import AllocBenchModel
import ArgumentParser
import Foundation

/// `--help` text shared by check and compare.
private let gateDiscussion = """
    Exit codes (when several apply, the one listed first wins):
      1   a replay failed, crashed or timed out (on either side)
      5   fail closed: a (trace, allocator) pair or a gated metric is on one
          side only (no baseline for it, or in the baseline but not the run)
      3   the baseline was taken where something that can change page counts
          differs, for the rows it can change: page size, architecture,
          build (debug/release), ASLR, allocbench version, huge-page mode
          (every row); the row's own allocator library (glibc, jemalloc, a
          preload's file). See --allow-env-change. A new kernel release is a
          warning (exit 3 with --strict-env); the kernel's build string,
          host, CPU and core count are notes only.
      2   regression: a metric got worse beyond its tolerance
      4   improvement beyond tolerance: refresh the baseline
          (allocbench baseline update)
      0   every metric within tolerance
    Before comparing: 64 usage (including a bad tolerance), 65 bad trace or
    malformed baseline/report file, 66 missing input, 71 OS error.

    Metrics (lower is better for all) and default tolerances:
    \(metricHelp)
    "A or B" tolerates the larger of the two. ns_per_op_vs_glibc is the
    allocator's median ns/op over glibc's in the same run, gated on traces
    of at least --min-ops-for-time ops only.

    Tolerances, later ones winning: the defaults, <baseline>/tolerances.txt,
    --tolerances FILE, then each --tolerance. One per line in files:
      [ALLOCATOR:]METRIC=off
      [ALLOCATOR:]METRIC=PART[,PART...]     PART = [+|-]NUMBER[%]
    % is relative to the baseline, else absolute in the metric's unit; +
    sets the allowance for increases, - for decreases, no sign both. E.g.
    touched_peak=0  minor_faults=5%,4  ns_per_op_vs_glibc=+25%
    jemalloc:touched_peak=4. See docs/gating.md.
    """

/// The gated metrics grouped by default tolerance, one line each, from the metric table.
private let metricHelp: String = {
    var groups: [(tolerance: String, keys: [String])] = []
    for metric in Metric.gated {
        let tolerance = metric.defaultTolerance.description + (metric.unit == .ratio ? "" : " " + metric.unit.rawValue)
        if let index = groups.firstIndex(where: { $0.tolerance == tolerance }) {
            groups[index].keys.append(metric.key)
        } else {
            groups.append((tolerance, [metric.key]))
        }
    }
    var lines: [String] = []
    for group in groups {
        var line = "  "
        for key in group.keys {
            if line.count + key.count + 1 > 60 && line != "  " {
                lines.append(line)
                line = "  "
            }
            line += (line == "  " ? "" : " ") + key
        }
        lines.append(line.padding(toLength: max(line.count, 60), withPad: " ", startingAt: 0) + group.tolerance)
    }
    return lines.joined(separator: "\n")
}()

/// Options shared by check and compare.
struct GateOptionGroup: ParsableArguments {
    @Option(name: .customLong("tolerance"),
            help: "Override a tolerance, e.g. touched_peak=0 or ns_per_op_vs_glibc=+25% (repeatable; syntax above).")
    var toleranceOverrides: [String] = []

    @Option(name: .customLong("tolerances"), help: "A file of tolerances, one per line (# comments).")
    var toleranceFile: String?

    @Flag(name: .customLong("allow-env-change"),
          help: "Report a baseline taken in another environment, but compare anyway instead of exiting 3.")
    var allowEnvironmentChange = false

    @Flag(name: .customLong("strict-env"),
          help: "Fail (exit 3) on a baseline taken on another kernel release too, instead of warning.")
    var strictEnvironment = false

    @Option(name: .customLong("min-ops-for-time"), help: "Gate ns_per_op_vs_glibc only on traces with at least this many ops.")
    var minimumOpsForTiming: Int = GateOptions.defaultMinimumOpsForTiming

    @Option(name: .long, help: "Output format: markdown for a pull-request comment or $GITHUB_STEP_SUMMARY.")
    var format: GateFormat = .text

    @Option(name: .long, help: "Write the report to this file instead of stdout (written whole or not at all); the verdict still goes to stderr.")
    var output: String?

    func validate() throws {
        guard minimumOpsForTiming >= 0 else { throw ValidationError("--min-ops-for-time must be 0 or more") }
    }

    /// The defaults, `<baselineDirectory>/tolerances.txt` if present, --tolerances, --tolerance.
    func toleranceTable(baselineDirectory: String?) throws(CommandFailure) -> ToleranceTable {
        var table = ToleranceTable()
        var files: [String] = []
        if let baselineDirectory {
            let implicit = (baselineDirectory as NSString).appendingPathComponent(gateTolerancesFileName)
            if FileManager.default.fileExists(atPath: implicit) { files.append(implicit) }
        }
        if let toleranceFile { files.append(toleranceFile) }
        var texts: [(path: String, text: String)] = []
        for path in files { texts.append((path, try readText(path))) }
        do throws(ToleranceError) {
            for (path, text) in texts {
                for override in try ToleranceTable.parseFile(text, path: path) { table.add(override, source: path) }
            }
            for text in toleranceOverrides {
                table.add(try ToleranceOverride.parse(text), source: "--tolerance")
            }
        } catch {
            throw CommandFailure(ExitStatus.usage, error.description)
        }
        return table
    }

    var options: GateOptions {
        GateOptions(allowEnvironmentChange: allowEnvironmentChange, strictEnvironment: strictEnvironment,
                    minimumOpsForTiming: minimumOpsForTiming)
    }

    /// Prints or writes the report, says the verdict on stderr when the report went to a file, and
    /// exits with the verdict's code.
    func finish(_ report: GateReport) throws(CommandFailure) -> Never {
        try emitReport(to: output) { try GateRenderer().render(report, as: format) }
        if output != nil { Diagnostics.error(GateRenderer.summary(report)) }
        Foundation.exit(report.exitCode)
    }
}

let gateTolerancesFileName = "tolerances.txt"

/// Reads a whole file, or fails with exit 66 naming it.
func readData(_ path: String) throws(CommandFailure) -> Data {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw CommandFailure(ExitStatus.missingInput, "\(path): cannot read (missing or unreadable)")
    }
    return data
}

func readText(_ path: String) throws(CommandFailure) -> String {
    String(decoding: try readData(path), as: UTF8.self)
}

func isDirectory(_ path: String) -> Bool {
    var directory: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
}

/// A run report, a baseline file, or a directory of them, as one side of a comparison. Malformed
/// files exit 65.
func loadSnapshot(_ path: String) throws(CommandFailure) -> GateSnapshot {
    var paths = [path]
    if isDirectory(path) {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).filter { $0.hasSuffix(".json") }.sorted()
        guard !names.isEmpty else { throw CommandFailure(ExitStatus.missingInput, "\(path): no .json baseline or report files in this directory") }
        paths = names.map { (path as NSString).appendingPathComponent($0) }
    }
    var traces: [GateSnapshot.Trace] = []
    for file in paths {
        let data = try readData(file)
        do throws(GateInputError) {
            switch try GateSnapshot.decode(data, source: file) {
            case .run(let report): traces += GateSnapshot(report: report, conditions: report.conditions, source: file).traces
            case .baseline(let baseline): traces += GateSnapshot(baselines: [baseline], source: file).traces
            }
        } catch {
            throw CommandFailure(ExitStatus.badInput, error.description)
        }
    }
    return GateSnapshot(source: path, traces: traces)
}

/// A run report (`allocbench --format json`, or `allocbench merge`'s output), or exit 65 naming the file.
func loadRunReport(_ path: String) throws(CommandFailure) -> RunReport {
    let data = try readData(path)
    do throws(GateInputError) {
        guard case .run(let report) = try GateSnapshot.decode(data, source: path) else {
            throw GateInputError("\(path): a baseline file, not a run report (allocbench --format json)")
        }
        return report
    } catch {
        throw CommandFailure(ExitStatus.badInput, error.description)
    }
}

extension MeasurementConditions {
    /// This build's configuration (the replay children are built with it) and whether the replays
    /// ran with address-space randomization (only with --aslr, and only if the kernel has it on).
    static func current(for settings: RunSettings) -> MeasurementConditions {
        #if DEBUG
        let build = "debug"
        #else
        let build = "release"
        #endif
        let addressNoRandomize: UInt32 = 0x0040000
        let systemWide = (try? String(contentsOfFile: "/proc/sys/kernel/randomize_va_space", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "2"
        let personality = (try? String(contentsOfFile: "/proc/self/personality", encoding: .utf8))
            .flatMap { UInt32($0.trimmingCharacters(in: .whitespacesAndNewlines), radix: 16) } ?? 0
        let randomized = settings.addressRandomization && systemWide != "0" && personality & addressNoRandomize == 0
        return MeasurementConditions(build: build, addressRandomization: randomized)
    }
}

/// The trace names of `paths`, which name the baseline files and the pairs of a shard; two traces
/// with one name would share a file, and a pair.
func uniqueTraceNames(_ paths: [String]) throws(CommandFailure) -> [String] {
    var seen: [String: String] = [:]
    for path in paths {
        let name = Benchmark.traceName(path)
        if let other = seen[name], other != path {
            throw CommandFailure(ExitStatus.usage, "\(other) and \(path) are both trace '\(name)'; their baselines would share "
                + "\(name).json and their shards the pairs \(name)/…")
        }
        seen[name] = path
    }
    return paths.map(Benchmark.traceName)
}

struct Baseline: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record the baselines that `allocbench check` gates on.",
        subcommands: [Update.self])

    struct Update: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Replay traces and write one baseline file per trace, <output>/<trace name>.json.",
            discussion: """
                Each file (schema allocbench.baseline/1) holds every gated metric of every allocator on
                that trace, and the environment, build and replay settings it was taken with. Files are
                rewritten whole; nothing is written if any replay fails (exit 1). Commit them.
                """)

        @OptionGroup var replay: ReplayOptions

        @Option(name: .long, help: "Directory for the baseline files (created if missing).")
        var output = "Benchmarks/baselines"

        func run() throws {
            let failures: [String]
            do throws(CommandFailure) {
                failures = try record()
            } catch {
                fail(error)
            }
            guard failures.isEmpty else {
                for failure in failures { Diagnostics.error(failure) }
                Diagnostics.error("no baseline written: a failed replay is not a baseline")
                throw ExitCode(ExitStatus.allocatorFailed.rawValue)
            }
        }

        func validate() throws {
            try replay.refuseConcurrentReplay()
            if replay.shardText != nil {
                throw ValidationError("--shard: a baseline file holds every allocator of its trace; replay the shards with "
                    + "`allocbench --shard K/N --format json`, merge them, and gate with `check --results`")
            }
        }

        /// Writes every baseline, or none and returns the rows that failed.
        func record() throws(CommandFailure) -> [String] {
            _ = try uniqueTraceNames(try replay.tracePaths())
            let report = try Run.measure(replay, detail: [])
            var files: [(path: String, baseline: BaselineFile)] = []
            var failures: [String] = []
            for run in report.runs {
                switch BaselineFile.record(run, environment: report.environment, settings: report.settings, conditions: .current(for: report.settings)) {
                case .success(let baseline):
                    files.append(((output as NSString).appendingPathComponent(run.trace.name + ".json"), baseline))
                case .failure(let failed):
                    failures += failed.rows.map { "\(failed.trace)/\($0.allocator): \($0.status.rawValue): \($0.detail ?? "")" }
                }
            }
            guard failures.isEmpty else { return failures }
            do {
                try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
            } catch {
                throw CommandFailure(ExitStatus.missingInput, "\(output): cannot create directory (\(error.localizedDescription))")
            }
            for file in files {
                let data: Data
                do {
                    data = try file.baseline.encoded()
                } catch {
                    throw CommandFailure(ExitStatus.systemError, "cannot encode \(file.path): \(error)")
                }
                try emit(String(decoding: data, as: UTF8.self), to: file.path)
                print("wrote \(file.path) (\(file.baseline.allocators.keys.sorted().joined(separator: ", ")))")
            }
            return []
        }
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay traces and compare every (trace, allocator) pair with its committed baseline.",
        discussion: gateDiscussion)

    @OptionGroup var replay: ReplayOptions

    @Option(name: .long, help: "Directory of baseline files (<trace name>.json) and an optional tolerances.txt.")
    var baseline = "Benchmarks/baselines"

    @Option(name: .long, help: "Gate this run report (allocbench --format json, or the output of allocbench merge) instead of replaying: its traces are the ones checked.")
    var results: String?

    @OptionGroup var gate: GateOptionGroup

    func validate() throws {
        try replay.refuseConcurrentReplay()
        if results != nil && (!replay.trace.isEmpty || replay.shardText != nil) {
            throw ValidationError("--results is checked as it is: it takes no --trace or --shard")
        }
    }

    func run() throws {
        do throws(CommandFailure) {
            let tolerances = try gate.toleranceTable(baselineDirectory: baseline)
            guard isDirectory(baseline) else {
                throw CommandFailure(ExitStatus.missingInput, "\(baseline): no such baseline directory (record one with `allocbench baseline update --output \(baseline)`)")
            }
            var given: RunReport?
            if let results { given = try loadRunReport(results) }
            let names = if let given { given.runs.map(\.trace.name) } else { try uniqueTraceNames(try replay.tracePaths()) }
            var baselines: [BaselineFile] = []
            for name in names {
                let path = (baseline as NSString).appendingPathComponent(name + ".json")
                guard FileManager.default.fileExists(atPath: path) else { continue }
                let data = try readData(path)
                do throws(GateInputError) {
                    guard case .baseline(let file) = try GateSnapshot.decode(data, source: path) else {
                        throw GateInputError("\(path): a run report, not a baseline; record baselines with `allocbench baseline update`")
                    }
                    baselines.append(file)
                } catch {
                    throw CommandFailure(ExitStatus.badInput, error.description)
                }
            }
            let report = if let given { given } else { try Run.measure(replay, detail: []) }
            var notes: [String] = []
            if let shard = report.shard {
                // A shard is gated on its own pairs; the other shards gate theirs.
                var skipped = 0
                for index in baselines.indices {
                    let trace = baselines[index].trace.name
                    let others = baselines[index].allocators.keys.filter { !shard.contains(trace: trace, allocator: $0) }
                    skipped += others.count
                    for allocator in others { baselines[index].allocators[allocator] = nil }
                }
                notes.append("shard \(shard): \(skipped) baseline pairs of the other shards not checked here")
            }
            var options = gate.options
            if replay.allocators != nil { options.selectedAllocators = Set(replay.selectedAllocators) }
            var gateReport = Gate.compare(
                baseline: GateSnapshot(baselines: baselines, source: baseline),
                current: GateSnapshot(report: report, conditions: report.conditions, source: results ?? "this run"),
                tolerances: tolerances, options: options, command: "check")
            gateReport.notes += notes
            let unchecked = ((try? FileManager.default.contentsOfDirectory(atPath: baseline)) ?? [])
                .filter { $0.hasSuffix(".json") && !names.contains(String($0.dropLast(".json".count))) }.sorted()
            if !unchecked.isEmpty {
                gateReport.notes.append("not checked (\(results.map { "not in \($0)" } ?? "no --trace for them")): "
                    + unchecked.joined(separator: ", "))
            }
            try gate.finish(gateReport)
        } catch {
            fail(error)
        }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two runs with the gate's tolerances: OLD is the baseline, NEW the candidate.",
        discussion: "OLD and NEW are each a run report (allocbench --format json), a baseline file, or a "
            + "directory of either; a baseline directory's tolerances.txt applies when it is OLD.\n\n" + gateDiscussion)

    @Argument(help: "The baseline side.")
    var old: String

    @Argument(help: "The side judged against it.")
    var new: String

    @OptionGroup var gate: GateOptionGroup

    func run() throws {
        do throws(CommandFailure) {
            let tolerances = try gate.toleranceTable(baselineDirectory: isDirectory(old) ? old : nil)
            let report = Gate.compare(baseline: try loadSnapshot(old), current: try loadSnapshot(new),
                                      tolerances: tolerances, options: gate.options, command: "compare")
            try gate.finish(report)
        } catch {
            fail(error)
        }
    }
}
