import AllocBenchCore
import AllocBenchHarness
import Foundation

// Parse throughput and replay speed targets live here, never in timed unit tests.
//
//     swift run -c release parse-benchmark [TRACE ...] [--iterations N]
//
// For each trace: decompress once, then parse the in-memory text N times and report the best and
// median MB/s (bytes of text per second) and ops/s. Target: ≥ 150 MB/s on systemui.txt.

var paths: [String] = []
var iterations = 7
var arguments = CommandLine.arguments.dropFirst()
while let argument = arguments.popFirst() {
    if argument == "--iterations", let value = arguments.popFirst().flatMap(Int.init), value > 0 {
        iterations = value
    } else {
        paths.append(argument)
    }
}
if paths.isEmpty { paths = ["../shared/traces/android/systemui.zip"] }

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
