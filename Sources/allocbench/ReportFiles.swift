import AllocBenchHarness
import AllocBenchModel
import AllocBenchReport
import Foundation

/// `--report FILE` and `--svg DIR`: the HTML report and the standalone charts.
struct ReportFiles {
    var htmlPath: String?
    var svgDirectory: String?
    /// Measured fleets (`allocbench fleet --format json`) the HTML report shows beside its estimate.
    var fleetResults: [String] = []

    var isRequested: Bool { htmlPath != nil || svgDirectory != nil }

    /// The charts need the timeline and the breakdown.
    var detail: Benchmark.Detail { isRequested ? [.timeline, .breakdown] : [] }

    /// Checked before any replay, so a long run does not end in an unwritable path.
    func problem() -> CommandFailure? {
        let files = FileManager.default
        var isDirectory: ObjCBool = false
        if let svgDirectory {
            guard files.fileExists(atPath: svgDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
                return CommandFailure(ExitStatus.missingInput, "\(svgDirectory): --svg needs an existing directory")
            }
            guard files.isWritableFile(atPath: svgDirectory) else {
                return CommandFailure(ExitStatus.missingInput, "\(svgDirectory): the --svg directory is not writable")
            }
        }
        for path in fleetResults where !files.isReadableFile(atPath: path) {
            return CommandFailure(ExitStatus.missingInput, "\(path): no such fleet result (--fleet-results)")
        }
        if !fleetResults.isEmpty && htmlPath == nil {
            return CommandFailure(ExitStatus.usage, "--fleet-results is shown in the HTML report: give --report FILE too")
        }
        if let htmlPath {
            if files.fileExists(atPath: htmlPath, isDirectory: &isDirectory), isDirectory.boolValue {
                return CommandFailure(ExitStatus.missingInput, "\(htmlPath): --report needs a file name, this is a directory")
            }
            let parent = (htmlPath as NSString).deletingLastPathComponent
            let directory = parent.isEmpty ? "." : parent
            guard files.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
                return CommandFailure(ExitStatus.missingInput, "\(htmlPath): no such directory \(directory)")
            }
        }
        return nil
    }

    /// Renders everything first, then writes each file atomically.
    func write(_ report: RunReport) throws(CommandFailure) {
        var fleets: [FleetReport] = []
        for path in fleetResults {
            do {
                fleets.append(try FleetReport.decode(try Data(contentsOf: URL(fileURLWithPath: path))))
            } catch {
                throw CommandFailure(ExitStatus.badInput, "\(path): not a fleet result (allocbench fleet --format json): \(error)")
            }
        }
        let html = htmlPath.map { ($0, HTMLReport.render(report, fleets: fleets)) }
        let charts = svgDirectory.map { directory in
            Charts.files(report).map { ((directory as NSString).appendingPathComponent($0.name), $0.contents) }
        } ?? []
        if let (path, text) = html { try emit(text, to: path) }
        for (path, text) in charts { try emit(text, to: path) }
    }

    /// The report as printed: the detail recorded only for the files is left out, so adding
    /// `--report` does not change what stdout shows.
    static func printable(_ report: RunReport, keeping detail: Benchmark.Detail) -> RunReport {
        var printed = report
        for runIndex in printed.runs.indices {
            if !detail.contains(.timeline) { printed.runs[runIndex].liveBytes = nil }
            for resultIndex in printed.runs[runIndex].results.indices {
                if !detail.contains(.timeline) { printed.runs[runIndex].results[resultIndex].timeline = nil }
                if !detail.contains(.breakdown) { printed.runs[runIndex].results[resultIndex].breakdown = nil }
            }
        }
        return printed
    }
}
