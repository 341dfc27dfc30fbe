import AllocBenchCore
import AllocBenchHarness
import Foundation

// Parse throughput and replay speed targets live here, never in timed unit tests.
//
//     swift run -c release parse-benchmark [TRACE ...] [--iterations N]
//     parse-benchmark TRACE --write-op-stream FILE
//
// For each trace: decompress once, then parse the in-memory text N times and report the best and
// median MB/s (bytes of text per second) and ops/s. Target: ≥ 150 MB/s on systemui.txt.
//
// With --write-op-stream, the trace is parsed once, as `allocbench` parses it, and its op stream —
// the exact bytes every replay child maps on descriptor 3 — is written to FILE instead, for the C
// reference loop of Benchmarks/ReplayLoop (which must replay what the children replay).

var paths: [String] = []
var iterations = 7
var opStreamPath: String?
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    if argument == "--iterations", let value = arguments.popFirst().flatMap(Int.init), value > 0 {
        iterations = value
    } else if argument == "--write-op-stream", let path = arguments.popFirst() {
        opStreamPath = path
    } else {
        paths.append(argument)
    }
}
if paths.isEmpty { paths = ["../shared/traces/android/systemui.zip"] }

if let opStreamPath {
    guard paths.count == 1 else {
        FileHandle.standardError.write(Data("parse-benchmark: --write-op-stream takes exactly one trace\n".utf8))
        exit(64)
    }
    do {
        let trace = try TraceInput.parse(path: paths[0], options: TraceParser.Options(lenient: false))
        try OpStreamFile.write(trace, toFileAt: opStreamPath)
        exit(0)
    } catch {
        FileHandle.standardError.write(Data("parse-benchmark: \(error)\n".utf8))
        exit(1)
    }
}

var failed = false
for path in paths {
    do {
        try TraceInput.withText(of: path) { text throws(InputError) in
            var seconds: [Double] = []
            var ops = 0
            for _ in 0..<iterations {
                let start = DispatchTime.now().uptimeNanoseconds
                do throws(TraceError) {
                    ops = try TraceParser.parse(text, options: .init(lenient: false)).ops.count
                } catch {
                    throw InputError.badTrace(path: path, line: error.line, message: error.message)
                }
                seconds.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            seconds.sort()
            let megabytes = Double(text.count) / 1e6
            let best = megabytes / seconds[0]
            let median = megabytes / seconds[seconds.count / 2]
            print(String(format: "%@: %.1f MB, %d ops: parse %.0f MB/s best, %.0f MB/s median (%.1f M ops/s) over %d runs",
                         path, megabytes, ops, best, median, Double(ops) / seconds[seconds.count / 2] / 1e6, iterations))
        }
    } catch {
        FileHandle.standardError.write(Data("parse-benchmark: \(error)\n".utf8))
        failed = true
    }
}
exit(failed ? 1 : 0)
