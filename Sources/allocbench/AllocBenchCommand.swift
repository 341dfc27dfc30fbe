import AllocBenchCore
import AllocBenchHarness
import AllocBenchModel
import ArgumentParser
import Foundation

/// Every exit code of the command line, as documented in `--help` and the README: the one map
/// from what happened to a number (`check` and `compare` exit with their verdict's, 1–5).
enum ExitStatus: Int32 {
    case ok = 0
    case allocatorFailed = 1
    case usage = 64
    /// A bad trace, a malformed baseline or report file, or reports that cannot be merged.
    case badInput = 65
    case missingInput = 66
    case systemError = 71
    case cannotCreateOutput = 73
    case commandNotExecutable = 126
    case commandNotFound = 127

    init(_ kind: FailureKind) {
        self = switch kind {
        case .usage: .usage
        case .badInput: .badInput
        case .missingInput: .missingInput
        case .system: .systemError
        case .cannotCreateOutput: .cannotCreateOutput
        case .commandNotExecutable: .commandNotExecutable
        case .commandNotFound: .commandNotFound
        }
    }
}

struct AllocBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "allocbench",
        abstract: "Where does the DRAM go, allocator by allocator? Replays allocation traces in child processes and measures pages touched and mapped.",
        discussion: """
            Exit codes:
              0   every replay succeeded
              1   an allocator failed, crashed or timed out (its row says so)
              2-5 check and compare: regression, environment changed,
                  improvement beyond tolerance, baseline missing
              64  usage error; fleet: --processes beyond a limit
              65  bad trace (the message names file and line), a malformed
                  baseline or report, reports that merge cannot merge
              66  missing input: trace, replay child, allocator, --preload
              71  operating-system error; fleet: not enough memory
              73  an output cannot be written
            """,
        version: allocbenchVersion,
        subcommands: [Run.self, List.self, Conformance.self, NewAllocator.self, Baseline.self, Check.self, Compare.self,
                      Merge.self, Record.self, Convert.self, FleetCommand.self],
        defaultSubcommand: Run.self
    )
}

/// Options shared by every command that replays traces.
struct ReplayOptions: ParsableArguments {
    @Option(name: .long, parsing: .upToNextOption,
            help: "Trace files (.txt, .gz, or a .zip holding one file). Default: Benchmarks/traces/djb.txt.")
    var trace: [String] = []

    @Option(name: .long, help: "Comma-separated allocator names (see `allocbench list`). Default: every available one.")
    var allocators: String?

    @OptionGroup var preloads: PreloadOptions

    @Option(name: .long, help: "Timed runs per allocator for ns/op (each in a fresh child).")
    var `repeat`: Int = 3

    @Option(name: .long, help: "What the replay writes into each block: none, pages (one byte per page), all.")
    var touch: TouchMode = .pages

    @Option(name: .long, help: "Seconds a single replay may take before its row reads 'timed out'.")
    var timeout: Double = 300

    @Flag(name: .long, help: "Skip frees of pointers that are not live and pointers returned while live, and count them, instead of failing.")
    var lenient = false

    @Option(name: .long, help: "Which threads replay a trace: serial (every op on one thread), per-thread (every op on an OS thread of its recorded thread, one at a time in file order), concurrent (every recorded thread at once, ordered only where a block passes between threads: for time; page counts not exact), or auto (per-thread when the trace has more than one thread).")
    var threads: ThreadMode = .auto

    /// The gate compares exact page counts, which a concurrent replay does not give.
    func refuseConcurrentReplay() throws {
        if threads == .concurrent {
            throw ValidationError("--threads concurrent is for time: its page counts are not exact, so baselines and checks take serial or per-thread")
        }
    }

    @Flag(name: .long, help: "Keep address-space randomization in the replay children. By default it is off, so that page counts repeat exactly from run to run.")
    var aslr = false

    @Option(name: .customLong("shard"),
            help: ArgumentHelp("Replay only shard K of N (1 ≤ K ≤ N): the (trace, allocator) pairs whose stable hash falls in it. "
                               + "Run all N, then `allocbench merge` the results (docs/sharding.md).", valueName: "K/N"))
    var shardText: String?

    func validate() throws {
        guard `repeat` >= 0 else { throw ValidationError("--repeat must be 0 or more") }
        guard timeout.isFinite, timeout >= 0.001, timeout <= 1_000_000 else {
            throw ValidationError("--timeout must be between 0.001 and 1000000 seconds")
        }
        if trace.contains(where: \.isEmpty) { throw ValidationError("--trace needs a file name, not an empty string") }
        if let allocators, allocatorNameList(allocators).isEmpty {
            throw ValidationError("--allocators needs at least one name")
        }
        do throws(CommandFailure) {
            _ = try shard()
        } catch {
            fail(error)  // one line, not ArgumentParser's usage block
        }
    }

    /// The --shard to replay, without its plan; nil for the whole run.
    func shard() throws(CommandFailure) -> Shard? {
        guard let shardText else { return nil }
        switch Shard.parse(shardText) {
        case .success(let shard): return shard
        case .failure(let error): throw CommandFailure(ExitStatus.usage, error.description)
        }
    }

    /// The --allocators list, plus every --preload it does not name: whoever passes a preload wants
    /// its row. Empty: every available allocator.
    var selectedAllocators: [String] {
        guard let allocators else { return [] }
        let named = allocatorNameList(allocators)
        let preloaded = preloads.libraries.compactMap { $0.split(separator: "=", maxSplits: 1).first.map(String.init) }
        return named + preloaded.filter { !named.contains($0) }
    }

    var settings: RunSettings {
        RunSettings(touch: touch, timedRuns: `repeat`, timeoutSeconds: timeout, lenient: lenient, addressRandomization: aslr,
                    threads: threads)
    }

    /// The traces to replay: the given ones, or the bundled seed trace.
    func tracePaths() throws(CommandFailure) -> [String] {
        if !trace.isEmpty { return trace }
        return [try Self.seedTracePath()]
    }

    /// The bundled seed trace, from the working directory or the package the executable was built in.
    static func seedTracePath() throws(CommandFailure) -> String {
        let relative = "Benchmarks/traces/djb.txt"
        let packageRoot = URL(fileURLWithPath: AllocatorCatalog.executableDirectory())
            .deletingLastPathComponent().deletingLastPathComponent().path
        for candidate in [relative, packageRoot + "/" + relative] where FileManager.default.fileExists(atPath: candidate) {
            return candidate
        }
        throw CommandFailure(ExitStatus.missingInput, "\(relative): the bundled seed trace was not found (run from the package root or pass --trace)")
    }
}

/// Malloc-replacing libraries to run with no code (repeatable).
struct PreloadOptions: ParsableArguments {
    @Option(name: .customLong("preload"),
            help: ArgumentHelp("Run a malloc-replacing shared library as an allocator through LD_PRELOAD (repeatable).",
                               valueName: "name=path"))
    var libraries: [String] = []

    /// The catalog of the children beside this executable, with these preloads added; each child's
    /// `describe` may take `timeout`.
    func catalog(timeout: Duration = ReplayRunner.defaultErrandTimeout,
                 children: AllocatorCatalog.Children = .measured) throws(CommandFailure) -> AllocatorCatalog {
        do {
            return try AllocatorCatalog.discover(preloads: libraries, timeout: timeout, children: children)
        } catch {
            throw CommandFailure(error)
        }
    }
}

/// An error that ends the command with a one-line message and an exit code.
struct CommandFailure: Error {
    var status: ExitStatus
    var message: String

    init(_ status: ExitStatus, _ message: String) {
        self.status = status
        self.message = message
    }

    init(_ kind: FailureKind, _ message: String) { self.init(ExitStatus(kind), message) }
    init(_ error: InputError) { self.init(error.kind, error.description) }
    init(_ error: CatalogError) { self.init(error.kind, error.description) }
}

/// Prints `allocbench: message` on stderr and exits with the failure's code.
func fail(_ failure: CommandFailure) -> Never {
    Diagnostics.error(failure.message)
    Foundation.exit(failure.status.rawValue)
}

enum Diagnostics {
    static let isTerminal = isatty(STDERR_FILENO) == 1

    static func error(_ message: String) {
        note(message)
    }

    /// A line for the user on stderr that is not an error (stdout is the report's).
    static func note(_ message: String) {
        write("allocbench: " + message + "\n")
    }

    /// A progress line that overwrites itself, shown only when stderr is a terminal.
    static func progress(_ message: String) {
        guard isTerminal else { return }
        write("\r\u{1B}[K" + message)
    }

    static func clearProgress() {
        guard isTerminal else { return }
        write("\r\u{1B}[K")
    }

    /// write(2) to stderr, all of it, retrying EINTR; a stderr that is closed, full or gone loses
    /// the message but never the exit code the command meant (FileHandle raised, and the process
    /// died of SIGILL instead).
    private static func write(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
            if written > 0 {
                bytes = bytes.dropFirst(written)
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }

    /// Color only on a terminal, and never when NO_COLOR is set (https://no-color.org).
    static var stdoutWantsColor: Bool {
        isatty(STDOUT_FILENO) == 1 && ProcessInfo.processInfo.environment["NO_COLOR"].map(\.isEmpty) ?? true
    }
}

/// Renders a report and writes it as `emit` does; a report that cannot be encoded is an
/// operating-system error (71), the same for every command that prints one.
func emitReport(to path: String?, _ render: () throws -> String) throws(CommandFailure) {
    let rendered: String
    do {
        rendered = try render()
    } catch {
        throw CommandFailure(ExitStatus.systemError, "cannot encode the report: \(error)")
    }
    try emit(rendered, to: path)
}

/// Writes `text` to `path` atomically (a temporary file renamed into place), or to stdout.
func emit(_ text: String, to path: String?) throws(CommandFailure) {
    if path == nil && standardOutputWasClosed {
        throw CommandFailure(ExitStatus.cannotCreateOutput, "standard output is closed; write to a file with --output")
    }
    do {
        if let path {
            try AtomicFileWriter.write(Array(text.utf8), to: path)
        } else {
            try AtomicFileWriter.writeToStandardOutput(Array(text.utf8))
        }
    } catch {
        throw CommandFailure(ExitStatus.cannotCreateOutput, "\(path ?? "standard output"): \(error)")
    }
}
