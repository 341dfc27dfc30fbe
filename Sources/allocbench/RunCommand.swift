import AllocBenchHarness
import AllocBenchModel
import AllocBenchReport
import ArgumentParser
import Foundation

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay traces through allocators and print pages touched, mapped and time per op.")

    @OptionGroup var replay: ReplayOptions

    @Option(name: .long, help: "Output format.")
    var format: ReportFormat = .table

    @Option(name: .long, help: "Write the output to this file instead of stdout (written whole or not at all).")
    var output: String?

    @Flag(name: .long, help: "Keep the counters at every mm syscall and at evenly spaced ops in the JSON output.")
    var timeline = false

    @Flag(name: .long, help: "Show where the pages went: touched and mapped pages by region (heap, mmaps, bss, libraries) at the peak and at the end.")
    var breakdown = false

    @Option(name: .customLong("report"), help: "Also write a self-contained HTML report (table, charts of pages over time, overhead, where the pages went, the cost of 10,000 processes) to this file.")
    var reportPath: String?

    @Option(name: .customLong("svg"), help: "Also write the report's charts as standalone .svg files into this existing directory.")
    var svgDirectory: String?

    @Option(name: .customLong("fleet-results"), parsing: .upToNextOption,
            help: "Measured fleets (allocbench fleet --format json) for the HTML report's ten-thousand-processes section.")
    var fleetResults: [String] = []

    @Flag(name: .long, help: "After the run, print the harness's own peak RSS and CPU time (getrusage RUSAGE_SELF: the replay children excluded) to stderr.")
    var harnessUsage = false

    var reportFiles: ReportFiles { ReportFiles(htmlPath: reportPath, svgDirectory: svgDirectory, fleetResults: fleetResults) }

    func validate() throws {
        if let problem = reportFiles.problem() { fail(problem) }
        if let output {
            guard !output.isEmpty else { throw ValidationError("--output needs a file name, not an empty string") }
            if let input = replay.trace.first(where: { AllocatorCatalog.sameFile($0, output) }) {
                throw ValidationError("--output \(output) is the trace \(input): it would be overwritten")
            }
        }
    }

    func run() throws {
        let report: RunReport
        do throws(CommandFailure) {
            var detail: Benchmark.Detail = []
            if timeline { detail.insert(.timeline) }
            if breakdown { detail.insert(.breakdown) }
            report = try Run.measure(replay, detail: detail.union(reportFiles.detail))
            try reportFiles.write(report)
            try emitReport(to: output) {
                try ReportFormatter(useColor: output == nil && Diagnostics.stdoutWantsColor)
                    .render(ReportFiles.printable(report, keeping: detail), as: format)
            }
        } catch {
            fail(error)
        }
        if harnessUsage {
            let usage = HarnessUsage.current()
            let ops = report.runs.reduce(0) { $0 + $1.trace.ops }
            // Per million ops only from a million on: below, the fixed part (the runtime, the tables) is all it shows.
            let perMillion = ops >= 1_000_000 ? String(format: ", %.2f MiB per million ops", Double(usage.maxResidentKilobytes) / 1024 / (Double(ops) / 1e6)) : ""
            Diagnostics.note(String(format: "harness: max RSS %.1f MiB (%ld kB) for %ld ops%@; user %.2f s, system %.2f s",
                              Double(usage.maxResidentKilobytes) / 1024, usage.maxResidentKilobytes, ops, perMillion,
                              usage.userSeconds, usage.systemSeconds))
        }
        if !report.allSucceeded { throw ExitCode(ExitStatus.allocatorFailed.rawValue) }
    }

    /// Discovers the allocators, replays every trace (or, with --shard, the shard's pairs), and
    /// returns the report.
    static func measure(_ options: ReplayOptions, detail: Benchmark.Detail) throws(CommandFailure) -> RunReport {
        var paths = try options.tracePaths()
        // Every child of the run, the errands included, gets the run's --timeout.
        let timeout = Duration.milliseconds(options.settings.timeoutMilliseconds)
        let catalog = try options.preloads.catalog(timeout: timeout)
        let selected: [CatalogEntry]
        do {
            selected = try catalog.select(options.selectedAllocators, timeout: timeout)
        } catch {
            throw CommandFailure(error)
        }
        var shard = try options.shard()
        if shard != nil {
            // Shards tell traces apart by name, as baselines do.
            shard?.traces = try uniqueTraceNames(paths)
            shard?.allocators = selected.map(\.name)
        }
        func allocators(of traceName: String) -> [CatalogEntry] {
            selected.filter { shard?.contains(trace: traceName, allocator: $0.name) ?? true }
        }
        // A trace with no pair in this shard is not even parsed: parsing a large one takes seconds.
        paths = paths.filter { !allocators(of: Benchmark.traceName($0)).isEmpty }
        if let shard, paths.isEmpty {
            Diagnostics.error("note: shard \(shard) has no (trace, allocator) pair of the \(shard.traces.count) traces "
                + "and \(shard.allocators.count) allocators; its result is empty")
        }
        let benchmark = Benchmark(settings: options.settings, detail: detail,
                                  progress: { Diagnostics.progress($0) })
        // Every trace is parsed before the first replay: a bad trace fails the command at once.
        var prepared: [Benchmark.PreparedTrace] = []
        for path in paths {
            do {
                prepared.append(try benchmark.prepare(tracePath: path))
            } catch {
                Diagnostics.clearProgress()
                throw CommandFailure(error)
            }
        }
        let runs = prepared.map { benchmark.run($0, allocators: allocators(of: $0.summary.name)) }
        Diagnostics.clearProgress()
        return RunReport(environment: Benchmark.environment(catalog: catalog), conditions: .current(for: options.settings),
                         settings: options.settings, shard: shard, runs: runs)
    }
}

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List the allocators, what each is, and whether it is available.")

    @OptionGroup var preloads: PreloadOptions

    func run() throws {
        let catalog: AllocatorCatalog
        do throws(CommandFailure) {
            catalog = try preloads.catalog()
        } catch {
            fail(error)
        }
        let nameWidth = catalog.entries.map(\.name.count).max() ?? 0
        for entry in catalog.entries {
            let availability = entry.unavailableReason.map { "unavailable: \($0)" } ?? "available"
            var line = entry.name.padding(toLength: nameWidth, withPad: " ", startingAt: 0)
                + "  \(entry.kind.rawValue), \(availability)\n"
                + String(repeating: " ", count: nameWidth + 2) + entry.summary
            let indent = "\n" + String(repeating: " ", count: nameWidth + 2)
            if !entry.note.isEmpty { line += indent + entry.note }
            let child = (entry.executable as NSString).lastPathComponent
            switch entry.kind {
            case .module: line += indent + "runs in \(child) (its own malloc is never called)"
            case .processMalloc: line += indent + "runs in \(child); malloc from \(entry.mallocProvider)"
            case .preload: line += indent + "runs in \(child) with LD_PRELOAD; malloc from \(entry.mallocProvider)"
            }
            print(line)
        }
    }
}

struct Conformance: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the conformance suite against allocators, each inside its own replay child.")

    @Option(name: .long, help: "Comma-separated allocator names. Default: every available one.")
    var allocators: String?

    @OptionGroup var preloads: PreloadOptions

    func run() throws {
        let selected: [CatalogEntry]
        do throws(CommandFailure) {
            let catalog = try preloads.catalog(children: .conformance)
            do {
                selected = try catalog.select(allocators.map(allocatorNameList) ?? [])
            } catch {
                throw CommandFailure(error)
            }
        } catch {
            fail(error)
        }
        var failed = false
        for entry in selected {
            let outcome = ConformanceRunner.run(entry)
            print(outcome.summary)
            failed = failed || !outcome.passed
        }
        if failed { throw ExitCode(ExitStatus.allocatorFailed.rawValue) }
    }
}

func allocatorNameList(_ list: String) -> [String] {
    list.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
}
