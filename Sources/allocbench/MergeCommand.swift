import AllocBenchGate
import AllocBenchModel
import AllocBenchReport
import ArgumentParser

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Merge run reports — the shards of a --shard K/N run, or runs of other pairs — into one run report.",
        discussion: """
            Refuses, with exit 65 and one line naming the files: a (trace,
            allocator) pair in two reports; a trace that differs between them;
            different settings; shards of different runs, or one shard twice;
            reports measured where page counts can differ, by the gate's rules:
            page size, architecture, build, ASLR, allocbench version, huge-page
            mode, glibc, jemalloc, a preload's library. A new kernel release is
            a warning (refused with --strict-env); host, CPU and cores are notes.

            The result keeps the first report's environment and, for shards,
            the unsharded order. check --results, compare and merge --report
            read it. Exit 1 when a row of the result failed, as for a run.
            See docs/sharding.md.
            """)

    @Argument(help: "Run reports (allocbench --format json).")
    var reports: [String] = []

    @Option(name: [.short, .customLong("output")], help: "Write the merged report to this file (written whole or not at all) instead of stdout.")
    var output: String?

    @Option(name: .long, help: "Output format; json can be merged, checked and compared again.")
    var format: ReportFormat = .json

    @Flag(name: .customLong("strict-env"), help: "Refuse reports taken on different kernel releases too, instead of warning.")
    var strictEnvironment = false

    @Option(name: .customLong("report"), help: "Also write the self-contained HTML report of the merged result to this file (charts need shards run with --timeline --breakdown).")
    var reportPath: String?

    @Option(name: .customLong("svg"), help: "Also write the report's charts as standalone .svg files into this existing directory.")
    var svgDirectory: String?

    var reportFiles: ReportFiles { ReportFiles(htmlPath: reportPath, svgDirectory: svgDirectory) }

    func validate() throws {
        guard !reports.isEmpty else { throw ValidationError("give the run reports to merge") }
        if let problem = reportFiles.problem() { fail(problem) }
        if output?.isEmpty == true { throw ValidationError("--output needs a file name, not an empty string") }
    }

    func run() throws {
        let merged: RunReport
        do throws(CommandFailure) {
            var parts: [RunReport.MergePart] = []
            for path in reports {
                parts.append(RunReport.MergePart(source: path, report: try loadRunReport(path)))
            }
            let result: RunReport.Merged
            do {
                result = try ReportMerge.merge(parts, strictEnvironment: strictEnvironment)
            } catch {
                throw CommandFailure(ExitStatus.badInput, error.description)
            }
            merged = result.report
            for note in result.notes { Diagnostics.error(note) }
            try reportFiles.write(merged)
            try emitReport(to: output) {
                try ReportFormatter(useColor: output == nil && Diagnostics.stdoutWantsColor).render(merged, as: format)
            }
        } catch {
            fail(error)
        }
        if !merged.allSucceeded { throw ExitCode(ExitStatus.allocatorFailed.rawValue) }
    }
}
