import AllocBenchHarness
import ArgumentParser
import Foundation

struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a command and record its heap operations as an Android record_allocs trace.",
        discussion: """
            The command runs with liballocbench-recorder.so preloaded (LD_PRELOAD), which records \
            malloc, free, calloc, realloc, reallocarray, memalign, posix_memalign, aligned_alloc, \
            valloc and pvalloc with the thread id of the caller. posix_memalign, aligned_alloc, \
            valloc and pvalloc are recorded as memalign (valloc and pvalloc with the page size as \
            alignment, pvalloc with the size rounded up to pages); reallocarray as realloc. A failed \
            allocation is recorded with the pointer 0x0, which replay counts and skips. A thread \
            that exits writes `thread_done`.

            Files: FILE holds the command's trace. With --follow all, every process it forks \
            writes FILE.<pid>, which starts with one allocation per block live in its parent at \
            the fork (the heap it inherited, so that it replays without --lenient). A process \
            that execs keeps its file for the new program: FILE (or \
            FILE.<pid>) holds the last program a process ran, and the programs before an exec are \
            kept as FILE.<pid>.<image>, image 0 first. Every line is in the page cache as soon as \
            the call returns, so exit, _exit, exec, a crash or SIGKILL lose nothing recorded; a \
            line cut short by a dying thread is dropped and counted.

            The trace of a single-threaded program replays without --lenient. Lines of different \
            threads are ordered by when each call returned (frees: when it began), so a \
            multi-threaded trace may need --lenient for reallocs that race with other threads. \
            Programs that are statically linked, setuid, or that clear LD_PRELOAD are not recorded.

            Exit status: the command's own (128+N when signal N killed it); 127 command not found; \
            126 not executable; 66 the recorder library is missing or the trace cannot be written; \
            71 operating-system error or nothing recorded.
            """)

    @Option(name: [.short, .customLong("output")], help: "The trace file of the command.")
    var output: String

    @Option(name: .long, help: "all: also record every process the command forks (FILE.<pid>); none: only the command.")
    var follow: String = "all"

    @Flag(name: .long, help: "Append <start_ns> <end_ns> (CLOCK_MONOTONIC) to every line, and <end_ns> to thread_done.")
    var timestamps = false

    @Argument(parsing: .captureForPassthrough, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        guard ["all", "none"].contains(follow) else { throw ValidationError("--follow must be all or none") }
        guard !commandLine.isEmpty else { throw ValidationError("give the command to record after --, e.g. `allocbench record -o trace.txt -- ls -l`") }
    }

    /// The command, without the `--` that separates it.
    private var commandLine: [String] { command.first == "--" ? Array(command.dropFirst()) : command }

    func run() throws {
        let request = RecordRequest(
            command: commandLine, outputPath: output, libraryPath: Recorder.defaultLibraryPath(),
            followChildren: follow == "all", timestamps: timestamps)
        let outcome: RecordOutcome
        do {
            outcome = try Recorder.record(request)
        } catch {
            fail(CommandFailure(error.kind, error.description))
        }
        if case .signaled(let signal) = outcome.termination {
            Diagnostics.error("\(commandLine[0]) was killed by signal \(signal) (\(String(cString: strsignal(signal))))")
        }
        guard outcome.commandTrace != nil else {
            fail(CommandFailure(ExitStatus.systemError, "\(commandLine[0]) was not recorded: it did not load the recorder (statically linked, setuid, or clears LD_PRELOAD)"))
        }
        report(outcome)
        throw ExitCode(outcome.forwardedExitStatus)
    }

    /// One line per trace on stderr (the command owns stdout), or a count when there are many.
    private func report(_ outcome: RecordOutcome) {
        for trace in outcome.traces {
            if trace.tornLinesDropped > 0 {
                Diagnostics.error("\(trace.path): dropped \(trace.tornLinesDropped) line(s) that a dying thread left unfinished")
            }
            if let error = trace.recorderError {
                Diagnostics.error("\(trace.path): incomplete, the recorder stopped: \(error)")
            }
        }
        let shown = outcome.traces.count <= 8 ? outcome.traces : outcome.traces.filter { $0.role == .command }
        for trace in shown {
            let what: String
            switch trace.role {
            case .command: what = "the command"
            case .child: what = "child process \(trace.pid)"
            case .replacedByExec: what = "process \(trace.pid) before exec"
            }
            Diagnostics.error("recorded \(trace.lineCount) lines (\(what)) in \(trace.path)")
        }
        if shown.count < outcome.traces.count {
            Diagnostics.error("recorded \(outcome.traces.count - shown.count) more processes and images in \(output).*")
        }
    }
}

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert another tool's allocation log into an Android record_allocs trace.",
        discussion: """
            --from mtrace reads glibc's mtrace log, written by a program that calls mtrace() and \
            runs with MALLOC_TRACE=FILE (and, since glibc 2.34, \
            LD_PRELOAD=libc_malloc_debug.so.0). mtrace records no thread ids and no function \
            names: every line gets tid 1 and every allocation becomes malloc (calloc, memalign \
            and aligned allocations included). Frees of blocks allocated before tracing began are \
            dropped and reallocs of them become mallocs, so the trace replays without --lenient.

            Exit status: 0 converted; 65 malformed log (the message names file and line); 66 \
            missing input or unwritable output; 71 operating-system error. The output is written \
            whole or not at all.
            """)

    @Option(name: .long, help: "The input format: mtrace.")
    var from: String

    @Argument(help: "The log to convert (text, .gz, or a .zip holding one file).")
    var input: String

    @Option(name: [.short, .customLong("output")], help: "The trace to write. Default: stdout.")
    var output: String?

    func validate() throws {
        guard from == "mtrace" else { throw ValidationError("--from must be mtrace") }
    }

    func run() throws {
        let converted: (text: [UInt8], summary: MtraceConverter.Summary)
        do {
            converted = try MtraceConverter.convert(inputPath: input, outputPath: output)
        } catch {
            if case .system(let system) = error, let output {
                fail(CommandFailure(ExitStatus.missingInput, "\(output): cannot write (\(system))"))
            }
            fail(CommandFailure(error))
        }
        if output == nil { FileHandle.standardOutput.write(Data(converted.text)) }
        let summary = converted.summary
        var notes = ["\(summary.operations) operations from \(summary.inputLines) lines"]
        if summary.freesOfUntracedBlocks > 0 { notes.append("\(summary.freesOfUntracedBlocks) frees of blocks allocated before tracing dropped") }
        if summary.reallocsOfUntracedBlocks > 0 { notes.append("\(summary.reallocsOfUntracedBlocks) reallocs of such blocks written as malloc") }
        if summary.failedAllocations > 0 { notes.append("\(summary.failedAllocations) failed allocations") }
        Diagnostics.error("converted " + notes.joined(separator: ", "))
        if summary.pointersReturnedWhileLive > 0 {
            Diagnostics.error("\(summary.pointersReturnedWhileLive) allocations returned a block that was still live (a multi-threaded program's interleaved log): replay with --lenient")
        }
    }
}
