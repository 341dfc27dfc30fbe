// libFuzzer target for the trace parser (`make fuzz`; docs/architecture.md, "Fuzzing").
//
// Every input is parsed four ways in memory: whole and fed in two chunks split at a point the
// input chooses, each strict and lenient. A chunked parse must equal the whole one (the parser
// promises that chunks may split a line anywhere). An input that starts like a gzip or zip file
// is also written to a temporary `.gz` or `.zip` file and read through `TraceInput`, as
// `allocbench --trace` reads it. Errors are expected; crashes, hangs and leaks are bugs.
import AllocBenchCore
import AllocBenchHarness
import CAllocBench
import Glibc

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTraceParser(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let input = UnsafeRawBufferPointer(start: count > 0 ? start : nil, count: count)
    for lenient in [false, true] {
        let options = TraceParser.Options(lenient: lenient)
        let whole = Outcome(catching: { () throws(TraceError) in try TraceParser.parse(input, options: options) })
        // The split point: the input's last two bytes, so the mutator can move it.
        let split = count < 2 ? count / 2 : (Int(input[count - 1]) << 8 | Int(input[count - 2])) % (count + 1)
        let chunked = Outcome(catching: { () throws(TraceError) in
            // The first chunk's ops are drained as allocbench drains them into the op stream.
            var parser = TraceParser(options: options)
            var ops: [ab_op] = []
            try parser.feed(UnsafeRawBufferPointer(rebasing: input[..<split]))
            parser.drainOps { ops.append(contentsOf: $0) }
            try parser.feed(UnsafeRawBufferPointer(rebasing: input[split...]))
            let facts = try parser.finish()
            return ParsedTrace(facts: facts, ops: ops + parser.takeOps())
        })
        if whole != chunked {
            fatalError("split at \(split) of \(count) bytes (lenient \(lenient)): whole \(whole), chunked \(chunked)")
        }
    }
    if let suffix = compressedSuffix(input) {
        for lenient in [false, true] {
            _ = try? TraceInput.parse(path: temporaryFile(suffix, contents: input), options: TraceParser.Options(lenient: lenient))
        }
    }
    return 0
}

/// What a parse came to, in the parts that must not depend on how the input was chunked.
enum Outcome: Equatable, CustomStringConvertible {
    case parsed(ops: [UInt8], slots: Int, peak: UInt64, final: UInt64, threads: [UInt32], lines: Int,
                anomalies: TraceAnomalies, failedSkipped: Int, threadsDone: Int, threadActivity: ThreadStatistics)
    case failed(TraceError)

    init(catching parse: () throws(TraceError) -> ParsedTrace) {
        do throws(TraceError) {
            let trace = try parse()
            let ops = trace.ops.withUnsafeBytes { Array($0) }
            self = .parsed(ops: ops, slots: trace.slotCount, peak: trace.peakLiveBytes, final: trace.finalLiveBytes,
                           threads: trace.threadIDs, lines: trace.lineCount, anomalies: trace.anomalies,
                           failedSkipped: trace.failedAllocationsSkipped, threadsDone: trace.threadsDone,
                           threadActivity: trace.threads)
        } catch {
            self = .failed(error)
        }
    }

    var description: String {
        switch self {
        case .parsed(let ops, _, let peak, _, _, let lines, _, _, _, _): "\(ops.count / 16) ops, peak \(peak), \(lines) lines"
        case .failed(let error): "error \(error)"
        }
    }
}

/// `.gz` for gzip's magic, `.zip` for a zip local header; plain text stays in memory.
func compressedSuffix(_ input: UnsafeRawBufferPointer) -> String? {
    guard input.count >= 2 else { return nil }
    if input[0] == 0x1F && input[1] == 0x8B { return ".gz" }
    if input[0] == 0x50 && input[1] == 0x4B { return ".zip" }
    return nil
}

/// One file per process and suffix, rewritten for every input and removed at exit.
func temporaryPath(_ suffix: String) -> String {
    let directory = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
    return "\(directory)/allocbench-fuzz-\(getpid())\(suffix)"
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    atexit { for suffix in [".gz", ".zip"] { unlink(temporaryPath(suffix)) } }
    return 0
}

func temporaryFile(_ suffix: String, contents: UnsafeRawBufferPointer) -> String {
    let path = temporaryPath(suffix)
    let descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard descriptor >= 0 else { fatalError("cannot create \(path): errno \(errno)") }
    defer { close(descriptor) }
    var offset = 0
    while offset < contents.count {
        let written = write(descriptor, contents.baseAddress! + offset, contents.count - offset)
        guard written > 0 else { fatalError("cannot write \(path): errno \(errno)") }
        offset += written
    }
    return path
}
