import AllocBenchCore
import AllocBenchHarness
import Foundation

// Parse throughput and replay speed targets live here, never in timed unit tests.
//
//     swift run -c release parse-benchmark [TRACE ...] [--iterations N]
//     parse-benchmark TRACE --write-op-stream FILE
//
// For each trace: decompress once, then parse the in-memory text N times, fed and drained in 1 MiB
// chunks as allocbench feeds its reader's chunks and drains the ops into the op stream, and report
// the best and median MB/s (bytes of text per second) and ops/s. Target: ≥ 300 MB/s at any live-set size
// (issue 17). The machine's speed changes from minute to minute, so each parse is paired with a
// run of `awk '{n[$2]++}'` over the same text, and the ratio of the two medians is what compares
// across runs and machines: above 1, the parser is faster than awk's plain field split.
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

func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// Seconds `awk '{n[$2]++}' path` takes (the action counted per line: a field split and a hash).
func awkSeconds(_ path: String) throws -> Double {
    let awk = Process()
    awk.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    awk.arguments = ["awk", "{n[$2]++}", path]
    let start = now()
    try awk.run()
    awk.waitUntilExit()
    guard awk.terminationStatus == 0 else { throw CocoaError(.executableLoad) }
    return Double(now() - start) / 1e9
}

/// `path` itself when it is plain text, else its decompressed text in a temporary file (awk reads
/// text only), which `cleanup` removes.
func plainTextFile(_ path: String, text: UnsafeRawBufferPointer) throws -> (path: String, cleanup: () -> Void) {
    guard path.hasSuffix(".gz") || path.hasSuffix(".zip") else { return (path, {}) }
    let temporary = NSTemporaryDirectory() + "parse-benchmark-\(getpid()).txt"
    try Data(text).write(to: URL(fileURLWithPath: temporary))
    return (temporary, { try? FileManager.default.removeItem(atPath: temporary) })
}

/// Parses `text` as allocbench does; returns the op count.
func parseInChunks(_ text: UnsafeRawBufferPointer) throws(TraceError) -> Int {
    let chunkSize = 1 << 20
    var parser = TraceParser()
    var offset = 0
    while offset < text.count {
        try parser.feed(UnsafeRawBufferPointer(rebasing: text[offset..<min(offset + chunkSize, text.count)]))
        parser.drainOps { _ in }
        offset += chunkSize
    }
    return try parser.finish().opCount
}

if let opStreamPath {
    guard paths.count == 1 else {
        FileHandle.standardError.write(Data("parse-benchmark: --write-op-stream takes exactly one trace\n".utf8))
        exit(64)
    }
    do {
        let (_, stream) = try OpStreamFile.parse(path: paths[0], options: TraceParser.Options(lenient: false))
        try stream.copy(toFileAt: opStreamPath)
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
            let awkInput: (path: String, cleanup: () -> Void)
            do {
                awkInput = try plainTextFile(path, text: text)
            } catch {
                throw InputError.missing(path: path, reason: "cannot write its text for awk: \(error)")
            }
            defer { awkInput.cleanup() }
            var parseSeconds: [Double] = []
            var awkRuns: [Double] = []
            var ops = 0
            for _ in 0..<iterations {
                let start = now()
                do throws(TraceError) {
                    ops = try parseInChunks(text)
                } catch {
                    throw InputError.badTrace(path: path, line: error.line, message: error.message)
                }
                parseSeconds.append(Double(now() - start) / 1e9)
                do {
                    awkRuns.append(try awkSeconds(awkInput.path))
                } catch {
                    throw InputError.missing(path: "awk", reason: "cannot run: \(error)")
                }
            }
            let megabytes = Double(text.count) / 1e6
            let best = megabytes / parseSeconds.min()!
            let parseMedian = megabytes / median(parseSeconds)
            let awkMedian = megabytes / median(awkRuns)
            print(String(format: "%@: %.1f MB, %d ops: parse %.0f MB/s best, %.0f MB/s median (%.1f M ops/s); "
                            + "awk '{n[$2]++}' %.0f MB/s median; parse/awk %.2f× over %d interleaved runs",
                         path, megabytes, ops, best, parseMedian, Double(ops) / median(parseSeconds) / 1e6,
                         awkMedian, parseMedian / awkMedian, iterations))
        }
    } catch {
        FileHandle.standardError.write(Data("parse-benchmark: \(error)\n".utf8))
        failed = true
    }
}
exit(failed ? 1 : 0)
