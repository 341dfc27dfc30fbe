import AllocBenchCore
import AllocBenchHarness
import AllocBenchModel
import AllocBenchReport
import ArgumentParser
import Foundation

struct FleetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fleet",
        abstract: "Start N real processes per allocator that each replay a trace and park; measure them together at rest.",
        discussion: """
            For each allocator: one traced replay gives the single process's whole-process \
            figures; then N lean children replay the trace and park at their end state, \
            and the fleet is measured at rest (the sum of RssAnon and VmPTE over the \
            processes, the drop in MemAvailable, a memory cgroup's usage) and compared with \
            N × the single process; then they are all ended. The limits (pid_max, \
            RLIMIT_NPROC, RLIMIT_NOFILE, memory) are checked before the first process \
            starts: exit 64 when N cannot fit them, 71 when the memory is not there. \
            docs/fleet.md says what each figure includes.
            """)

    @Option(name: .long, help: "Processes per allocator.")
    var processes: Int

    @Option(name: .long, help: "The trace each process replays. Default: Benchmarks/traces/djb.txt.")
    var trace: String?

    @Option(name: .long, help: "Comma-separated allocator names (see `allocbench list`). Default: every available one.")
    var allocators: String?

    @OptionGroup var preloads: PreloadOptions

    @Option(name: .long, help: "What the replay writes into each block: none, pages (one byte per page), all.")
    var touch: TouchMode = .pages

    @Option(name: .long, help: "Seconds a fleet may take to be at rest, and any one replay to finish.")
    var timeout: Double = 300

    @Flag(name: .long, help: "Keep address-space randomization in the processes.")
    var aslr = false

    @Option(name: .customLong("hold"), help: "Seconds each fleet stays at rest after it is measured, to look at it with other tools.")
    var holdSeconds: Double = 0

    @Option(name: .long, help: "Output format.")
    var format: FleetFormat = .table

    @Option(name: .long, help: "Write the output to this file instead of stdout (written whole or not at all).")
    var output: String?

    func validate() throws {
        guard processes >= 1 else { throw ValidationError("--processes must be 1 or more") }
        guard holdSeconds.isFinite, holdSeconds >= 0, holdSeconds <= 86400 else { throw ValidationError("--hold must be between 0 and 86400 seconds") }
        guard timeout.isFinite, timeout >= 0.001, timeout <= 1_000_000 else {
            throw ValidationError("--timeout must be between 0.001 and 1000000 seconds")
        }
        if let trace, trace.isEmpty { throw ValidationError("--trace needs a file name, not an empty string") }
        if let allocators, allocatorNameList(allocators).isEmpty { throw ValidationError("--allocators needs at least one name") }
        if let output {
            guard !output.isEmpty else { throw ValidationError("--output needs a file name, not an empty string") }
            if let trace, AllocatorCatalog.sameFile(trace, output) {
                throw ValidationError("--output \(output) is the trace \(trace): it would be overwritten")
            }
        }
    }

    func run() throws {
        let report: FleetReport
        do throws(CommandFailure) {
            report = try measure()
            try emitReport(to: output) { try FleetTable.render(report, as: format) }
        } catch {
            fail(error)
        }
        if !report.allSucceeded { throw ExitCode(ExitStatus.allocatorFailed.rawValue) }
    }

    var settings: RunSettings {
        RunSettings(touch: touch, timedRuns: 0, timeoutSeconds: timeout, lenient: false, addressRandomization: aslr)
    }

    /// The limits first, then every allocator's single process, then the memory every fleet needs,
    /// and only then the fleets, one allocator at a time: whatever can refuse does so before the
    /// first fleet starts.
    func measure() throws(CommandFailure) -> FleetReport {
        do throws(FleetRefusal) {
            try FleetLimits.checkProcessLimits(processes: processes)
        } catch {
            throw CommandFailure(error.kind, error.description)
        }
        let path = if let trace { trace } else { try ReplayOptions.seedTracePath() }
        let timeoutDuration = Duration.milliseconds(settings.timeoutMilliseconds)
        let catalog = try preloads.catalog(timeout: timeoutDuration)
        let selected: [CatalogEntry]
        do {
            selected = try catalog.select(allocators.map(allocatorNameList) ?? [], timeout: timeoutDuration)
        } catch {
            throw CommandFailure(error)
        }
        let benchmark = Benchmark(settings: settings, progress: { Diagnostics.progress($0) })
        let prepared: Benchmark.PreparedTrace
        do {
            prepared = try benchmark.prepare(tracePath: path)
        } catch {
            Diagnostics.clearProgress()
            throw CommandFailure(error)
        }
        let singles = benchmark.run(prepared, allocators: selected).results
        for (entry, single) in zip(selected, singles) {
            guard let sample = single.processEndSample else { continue }
            do throws(FleetRefusal) {
                try FleetLimits.checkMemory(processes: processes, perProcessKilobytes: FleetResult.privateKilobytes(sample),
                                            allocator: entry.name)
            } catch {
                Diagnostics.clearProgress()
                throw CommandFailure(error.kind, error.description)
            }
        }
        var fleet = Fleet(processes: processes, settings: settings, progress: { Diagnostics.progress($0) })
        fleet.holdSeconds = holdSeconds
        var results: [FleetResult] = []
        for (entry, single) in zip(selected, singles) {
            guard single.isOK, let sample = single.processEndSample else {
                results.append(FleetResult(allocator: entry.name, status: .failed,
                                           detail: "the single process failed: \(single.detail ?? single.status.rawValue)", processes: processes))
                continue
            }
            do throws(Fleet.Interrupted) {
                results.append(try fleet.run(entry, trace: prepared, single: sample))
            } catch {
                Diagnostics.clearProgress()
                error.resend()
            }
        }
        Diagnostics.clearProgress()
        return FleetReport(environment: Benchmark.environment(catalog: catalog), trace: prepared.summary,
                           processes: processes, touch: touch, results: results)
    }
}

