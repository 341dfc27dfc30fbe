import AllocBenchModel
import Foundation
import Glibc

/// What `allocbench record` runs, and how.
public struct RecordRequest: Sendable {
    /// The command and its arguments; the command is looked up in PATH.
    public var command: [String]
    /// The trace of the command. Other processes write beside it (see `RecordedTrace.Role`).
    public var outputPath: String
    /// liballocbench-recorder.so, which is preloaded into the command.
    public var libraryPath: String
    /// Whether the processes the command forks are recorded too.
    public var followChildren: Bool
    /// Whether lines carry `<start_ns> <end_ns>` (CLOCK_MONOTONIC).
    public var timestamps: Bool

    public init(command: [String], outputPath: String, libraryPath: String, followChildren: Bool = true, timestamps: Bool = false) {
        self.command = command
        self.outputPath = outputPath
        self.libraryPath = libraryPath
        self.followChildren = followChildren
        self.timestamps = timestamps
    }
}

/// One trace file that a recording wrote.
public struct RecordedTrace: Sendable, Equatable {
    /// Which file a program's trace goes to. A process's file holds the last program it ran; the
    /// programs it ran before an exec keep their traces under their image number.
    public enum Role: Sendable, Equatable {
        /// The last program of the process `record` started: `<output>`.
        case command
        /// The last program of any other process: `<output>.<pid>`.
        case child
        /// A program that a process replaced by exec: `<output>.<pid>.<image>` (image 0 first).
        case replacedByExec
    }

    public var path: String
    public var pid: Int32
    /// 0 for the first program a process ran, N for the one after its Nth exec.
    public var image: Int
    public var role: Role
    public var lineCount: Int
    /// Lines a thread was killed in the middle of writing (the process died at that instant).
    public var tornLinesDropped: Int
    /// Why the recorder stopped recording this program early, if it did.
    public var recorderError: String?
}

/// How the command ended and what was recorded.
public struct RecordOutcome: Sendable {
    public var pid: Int32
    public var termination: Subprocess.Termination
    /// The command's trace first, then the other processes by pid, each process's images in order.
    public var traces: [RecordedTrace]

    public var commandTrace: RecordedTrace? { traces.first { $0.role == .command } }

    /// The command's exit status, or 128 + N when signal N killed it (as shells report it).
    public var forwardedExitStatus: Int32 {
        switch termination {
        case .exited(let status): status
        case .signaled(let signal): 128 + signal
        case .timedOut: 128 + SIGKILL
        }
    }
}

/// Why a recording could not start or finish.
public enum RecordError: Error, Sendable, CustomStringConvertible {
    case libraryMissing(path: String)
    case libraryPathUnusable(path: String)
    case commandNotFound(String)
    case commandNotExecutable(String, errno: Int32)
    case output(path: String, SystemError)
    case system(SystemError)

    public var description: String {
        switch self {
        case .libraryMissing(let path):
            "\(path): the recorder library is missing; build the package first (swift build)"
        case .libraryPathUnusable(let path):
            "\(path): LD_PRELOAD cannot hold a path with a space or a colon; move the build directory"
        case .commandNotFound(let command):
            "\(command): command not found"
        case .commandNotExecutable(let command, let errno):
            "\(command): cannot execute (\(String(cString: strerror(errno))))"
        case .output(let path, let error):
            "\(path): cannot write the trace (\(error))"
        case .system(let error):
            error.description
        }
    }

    /// As `env` and the shells for a command that cannot run; else sysexits.h.
    public var kind: FailureKind {
        switch self {
        case .libraryMissing, .libraryPathUnusable, .output: .missingInput
        case .commandNotFound: .commandNotFound
        case .commandNotExecutable: .commandNotExecutable
        case .system: .system
        }
    }
}

/// Runs a command with liballocbench-recorder.so preloaded, waits for it, and turns the spool files
/// the recorder wrote into trace files.
///
/// The recorder writes one spool file per program image, `<spool>/<pid>.<image>`: the trace text
/// written straight into the page cache through a shared mapping, then zero bytes up to the file's
/// length (see Sources/CAllocBenchRecorder/recorder.c). The spool directory lives beside the output
/// so that a recording of a large program does not fill /tmp; it is removed afterwards.
public enum Recorder {
    public static let libraryFileName = "liballocbench-recorder.so"

    /// The environment protocol of Sources/CAllocBenchRecorder/include/CAllocBenchRecorder.h.
    enum Variable {
        static let directory = "ALLOCBENCH_RECORD_DIR"
        static let timestamps = "ALLOCBENCH_RECORD_TIMESTAMPS"
        static let follow = "ALLOCBENCH_RECORD_FOLLOW"
        static let parent = "ALLOCBENCH_RECORD_PARENT"
        static let all = [directory, timestamps, follow, parent]
    }

    /// The library beside the running executable, where SwiftPM builds it.
    public static func defaultLibraryPath() -> String {
        AllocatorCatalog.executableDirectory() + "/" + libraryFileName
    }

    public static func record(_ request: RecordRequest) throws(RecordError) -> RecordOutcome {
        guard !request.command.isEmpty else { throw RecordError.commandNotFound("") }
        let library = absolute(request.libraryPath)
        guard access(library, R_OK) == 0 else { throw RecordError.libraryMissing(path: library) }
        guard !library.contains(" "), !library.contains(":") else { throw RecordError.libraryPathUnusable(path: library) }
        let output = absolute(request.outputPath)
        let spool = try makeSpoolDirectory(beside: output)
        let spoolCleanup = CleanupOnSignal.directory(spool)
        defer {
            removeSpoolDirectory(spool)
            spoolCleanup.release()
        }

        let command = try spawn(request.command, environment: environment(for: request, library: library, spool: spool))
        let commandCleanup = CleanupOnSignal.process(command.pid)
        let termination: Subprocess.Termination
        do {
            termination = try waitIgnoringInterrupts(command)
            commandCleanup.release()
        } catch {
            commandCleanup.release()
            throw error
        }
        let traces = try finish(spool: spool, output: output, commandPID: command.pid)
        return RecordOutcome(pid: command.pid, termination: termination, traces: traces)
    }

    // MARK: - Running the command

    private static func environment(for request: RecordRequest, library: String, spool: String) -> [String] {
        var environment: [String] = []
        var preload = library
        for text in SystemFacts.environment {
            let name = text.prefix { $0 != "=" }
            if name == "LD_PRELOAD" {
                let existing = text.dropFirst("LD_PRELOAD=".count)
                if !existing.isEmpty { preload += ":" + existing }
                continue
            }
            if Variable.all.contains(String(name)) { continue }
            environment.append(text)
        }
        environment.append("LD_PRELOAD=" + preload)
        environment.append(Variable.directory + "=" + spool)
        environment.append(Variable.follow + "=" + (request.followChildren ? "all" : "none"))
        environment.append(Variable.parent + "=" + String(getpid()))
        if request.timestamps { environment.append(Variable.timestamps + "=1") }
        return environment
    }

    /// Runs the command as a shell would (PATH searched, stdio, descriptors and ignored signals
    /// inherited), except that it dies with allocbench.
    private static func spawn(_ command: [String], environment: [String]) throws(RecordError) -> Subprocess {
        do {
            return try Subprocess(command, options: Subprocess.Options(
                environment: environment, standardOutput: .inherited, standardError: .inherited,
                isolated: false, searchesPath: true))
        } catch {
            switch error.errno {
            case ENOENT: throw RecordError.commandNotFound(command[0])
            case EACCES, ENOEXEC, EISDIR, EPERM: throw RecordError.commandNotExecutable(command[0], errno: error.errno)
            default: throw RecordError.system(error)
            }
        }
    }

    /// Waits for the command as a shell waits for a foreground job: ^C and ^\ go to the command
    /// (the whole process group gets them), and `record` stays to write what was recorded.
    private static func waitIgnoringInterrupts(_ command: Subprocess) throws(RecordError) -> Subprocess.Termination {
        let previousInterrupt = signal(SIGINT, SIG_IGN)
        let previousQuit = signal(SIGQUIT, SIG_IGN)
        defer {
            signal(SIGINT, previousInterrupt)
            signal(SIGQUIT, previousQuit)
        }
        do {
            return try command.wait().termination
        } catch {
            throw RecordError.system(error)
        }
    }

    // MARK: - Spool files to traces

    private static func makeSpoolDirectory(beside output: String) throws(RecordError) -> String {
        let slash = output.lastIndex(of: "/")!
        let directory = String(output[..<slash])
        let name = String(output[output.index(after: slash)...])
        var template = (directory + "/." + name + ".spool-XXXXXX").utf8CString
        guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else {
            throw RecordError.output(path: output, SystemError("mkdtemp in \(directory.isEmpty ? "/" : directory)", errno: errno))
        }
        return template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
    }

    private static func removeSpoolDirectory(_ spool: String) {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: spool)) ?? [] {
            unlink(spool + "/" + name)
        }
        rmdir(spool)
    }

    private struct SpoolName: Comparable {
        var pid: Int32
        var image: Int

        static func < (a: SpoolName, b: SpoolName) -> Bool { (a.pid, a.image) < (b.pid, b.image) }
    }

    private static func finish(spool: String, output: String, commandPID: pid_t) throws(RecordError) -> [RecordedTrace] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: spool)) ?? []
        let spools = names.compactMap { name -> SpoolName? in
            let parts = name.split(separator: ".")
            guard parts.count == 2, let pid = Int32(parts[0]), let image = Int(parts[1]) else { return nil }
            return SpoolName(pid: pid, image: image)
        }.sorted { a, b in
            // The command's own spool files last: they may move into place (below), and the
            // children's inherited heaps are read from them first.
            if (a.pid == commandPID) != (b.pid == commandPID) { return b.pid == commandPID }
            return a < b
        }
        var lastImage: [Int32: Int] = [:]
        for name in spools { lastImage[name.pid] = max(lastImage[name.pid] ?? 0, name.image) }

        var traces: [RecordedTrace] = []
        for name in spools {
            let role: RecordedTrace.Role
            let path: String
            if name.image != lastImage[name.pid] {
                role = .replacedByExec
                path = "\(output).\(name.pid).\(name.image)"
            } else if name.pid == commandPID {
                role = .command
                path = output
            } else {
                role = .child
                path = "\(output).\(name.pid)"
            }
            let spoolPath = "\(spool)/\(name.pid).\(name.image)"
            var lines: RecordSpool.CompleteLines
            do throws(SystemError) {
                // The command has exited, so nothing writes its spool files any more (a child may
                // still be running and writing its own): when whole, they become the traces as
                // they are, without a copy.
                if name.pid == commandPID, let moved = try RecordSpool.moveIfWhole(spoolPath, to: path) {
                    traces.append(RecordedTrace(path: path, pid: name.pid, image: name.image, role: role,
                                                lineCount: moved.lineCount, tornLinesDropped: 0,
                                                recorderError: recorderError(spoolPath)))
                    continue
                }
                lines = try RecordSpool.read(spoolPath)
                if let header = ForkHeader(lines.text) {
                    let heap = try heapWhenForked(header, spool: spool, depth: 0)
                    let inherited = heap.allocationLines(tid: name.pid)
                    lines.text = Array(lines.text[..<header.length])
                        + Array("# inherited \(heap.blockCount) blocks live in process \(header.parent.pid) when it forked\n".utf8)
                        + inherited + Array(lines.text[header.length...])
                    lines.lineCount += heap.blockCount + 1
                }
                try AtomicFileWriter.write(lines.text, to: path)
            } catch {
                throw RecordError.output(path: path, error)
            }
            traces.append(RecordedTrace(
                path: path, pid: name.pid, image: name.image, role: role, lineCount: lines.lineCount,
                tornLinesDropped: lines.tornLineCount, recorderError: recorderError(spoolPath)))
        }
        return traces.sorted { a, b in
            if (a.pid == commandPID) != (b.pid == commandPID) { return a.pid == commandPID }
            return (a.pid, a.image) < (b.pid, b.image)
        }
    }

    private static func recorderError(_ spoolPath: String) -> String? {
        (try? String(contentsOfFile: spoolPath + ".error", encoding: .utf8))
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// The first line of a forked child's spool: `# forked from <pid>.<image> at <offset>`.
    private struct ForkHeader {
        var parent: SpoolName
        /// The parent's spool bytes written (reserved) before the fork.
        var offset: Int
        /// The header line's length, its newline included.
        var length: Int

        init?(_ text: [UInt8]) {
            let prefix = Array("# forked from ".utf8)
            guard text.starts(with: prefix), let newline = text.firstIndex(of: UInt8(ascii: "\n")) else { return nil }
            let fields = String(decoding: text[prefix.count..<newline], as: UTF8.self).split(separator: " ")
            guard fields.count == 3, fields[1] == "at", let offset = Int(fields[2]) else { return nil }
            let name = fields[0].split(separator: ".")
            guard name.count == 2, let pid = Int32(name[0]), let image = Int(name[1]) else { return nil }
            parent = SpoolName(pid: pid, image: image)
            self.offset = offset
            length = newline + 1
        }
    }

    /// The blocks live in the parent when it forked: those its own fork inherited, plus the effect
    /// of its spool's first `offset` bytes.
    private static func heapWhenForked(_ header: ForkHeader, spool: String, depth: Int) throws(SystemError) -> InheritedHeap {
        let path = "\(spool)/\(header.parent.pid).\(header.parent.image)"
        guard depth < 1000, access(path, R_OK) == 0 else { return InheritedHeap() }
        let prefix = try RecordSpool.read(path, upTo: header.offset)
        var heap = InheritedHeap()
        if let grandparent = ForkHeader(prefix.text) {
            heap = try heapWhenForked(grandparent, spool: spool, depth: depth + 1)
        }
        prefix.text.withUnsafeBytes { heap.apply($0) }
        return heap
    }

    private static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        return FileManager.default.currentDirectoryPath + "/" + path
    }
}

/// Reads the recorder's spool files.
public enum RecordSpool {
    public struct CompleteLines: Sendable {
        public var text: [UInt8]
        public var lineCount: Int
        public var tornLineCount: Int
    }

    /// The complete lines of a spool file (or of its first `limit` bytes), which holds text up to
    /// its last data block and zero bytes after.
    public static func read(_ path: String, upTo limit: Int = .max) throws(SystemError) -> CompleteLines {
        let descriptor = try FileDescriptor.open(path, O_RDONLY)
        let end = min(dataEnd(descriptor), limit)
        if end == 0 { return CompleteLines(text: [], lineCount: 0, tornLineCount: 0) }
        guard let address = mmap(nil, end, PROT_READ, MAP_PRIVATE, descriptor.rawValue, 0), address != MAP_FAILED else {
            throw SystemError("mmap \(path)", errno: errno)
        }
        defer { munmap(address, end) }
        madvise(address, end, MADV_SEQUENTIAL)
        return completeLines(in: UnsafeRawBufferPointer(start: address, count: end))
    }

    /// When the spool file holds only complete lines (nothing torn), cuts it to its text and
    /// renames it to `path`; nil otherwise. Only for a spool file no process writes any more.
    public static func moveIfWhole(_ spoolPath: String, to path: String) throws(SystemError) -> (lineCount: Int, byteCount: Int)? {
        let descriptor = try FileDescriptor.open(spoolPath, O_RDWR)
        let end = dataEnd(descriptor)
        var scan = (endOfText: 0, lineCount: 0, whole: true)
        if end > 0 {
            guard let address = mmap(nil, end, PROT_READ, MAP_SHARED, descriptor.rawValue, 0), address != MAP_FAILED else {
                throw SystemError("mmap \(spoolPath)", errno: errno)
            }
            madvise(address, end, MADV_SEQUENTIAL)
            scan = wholeText(UnsafeRawBufferPointer(start: address, count: end))
            munmap(address, end)
        }
        guard scan.whole else { return nil }
        try descriptor.truncate(to: scan.endOfText)
        try SystemCall.check("fchmod \(spoolPath)") { fchmod(descriptor.rawValue, 0o644) }
        try SystemCall.check("rename \(spoolPath) to \(path)") { rename(spoolPath, path) }
        return (scan.lineCount, scan.endOfText)
    }

    /// Where the text ends (after its last newline), how many lines it has, and whether it is whole:
    /// no zero byte before its end, and none but zero bytes after it.
    private static func wholeText(_ bytes: UnsafeRawBufferPointer) -> (endOfText: Int, lineCount: Int, whole: Bool) {
        let base = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let endOfText = (lastIndex(of: UInt8(ascii: "\n"), in: base, 0..<bytes.count) ?? -1) + 1
        let tailIsZero = UnsafeBufferPointer(start: base + endOfText, count: bytes.count - endOfText).allSatisfy { $0 == 0 }
        let whole = tailIsZero && memchr(base, 0, endOfText) == nil
        return (endOfText, whole ? newlineCount(base, endOfText) : 0, whole)
    }

    /// The '\n' bytes among `count`, eight at a time: a byte of `word ^ 0x0a…0a` is zero exactly
    /// where the word holds a newline, and the expression below sets the top bit of exactly those.
    public static func newlineCount(_ base: UnsafePointer<UInt8>, _ count: Int) -> Int {
        let low7: UInt64 = 0x7f7f_7f7f_7f7f_7f7f
        let newlines: UInt64 = 0x0a0a_0a0a_0a0a_0a0a
        var total = 0
        var index = 0
        let raw = UnsafeRawPointer(base)
        while index + 8 <= count {
            let x = raw.loadUnaligned(fromByteOffset: index, as: UInt64.self) ^ newlines
            total &+= (~(((x & low7) &+ low7) | x | low7)).nonzeroBitCount
            index += 8
        }
        while index < count {
            if base[index] == UInt8(ascii: "\n") { total += 1 }
            index += 1
        }
        return total
    }

    /// lseek(2) whences from <linux/fs.h>, which Swift's Glibc module does not export (GNU).
    private static let seekData: Int32 = 3
    private static let seekHole: Int32 = 4

    /// The end of the last data region: the recorder lengthens the file 32 MiB at a time but writes
    /// from the start, so everything after is a hole that need not be read.
    private static func dataEnd(_ descriptor: FileDescriptor) -> Int {
        var end: off_t = 0
        var position: off_t = 0
        while true {
            let data = lseek(descriptor.rawValue, position, seekData)
            if data < 0 { break }
            let hole = lseek(descriptor.rawValue, data, seekHole)
            if hole <= data { break }
            end = hole
            position = hole
        }
        return Int(end)
    }

    /// Keeps every line that ends in '\n' and drops the torn ones.
    ///
    /// The recorder stores a line's '\n' last, so a line whose thread died while copying it never
    /// has its '\n' and still holds at least one zero byte (its unwritten end). A zero byte before
    /// a '\n' therefore means: everything up to the last zero belongs to torn lines, and the bytes
    /// after it are one complete line. Zero bytes after the last '\n' are unused space, unless some
    /// text is among them (a torn last line).
    public static func completeLines(in bytes: UnsafeRawBufferPointer) -> CompleteLines {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), bytes.count > 0 else {
            return CompleteLines(text: [], lineCount: 0, tornLineCount: 0)
        }
        var text: [UInt8] = []
        var lineCount = 0
        var tornLineCount = 0
        let endOfText = (lastIndex(of: UInt8(ascii: "\n"), in: base, 0..<bytes.count) ?? -1) + 1
        let tail = UnsafeBufferPointer(start: base + endOfText, count: bytes.count - endOfText)
        if tail.contains(where: { $0 != 0 }) { tornLineCount += 1 }

        if memchr(base, 0, endOfText) == nil {
            text = Array(UnsafeBufferPointer(start: base, count: endOfText))
            lineCount = newlineCount(base, endOfText)
            return CompleteLines(text: text, lineCount: lineCount, tornLineCount: tornLineCount)
        }
        text.reserveCapacity(endOfText)
        var start = 0
        while start < endOfText {
            let newline = UnsafeRawPointer(memchr(base + start, Int32(UInt8(ascii: "\n")), endOfText - start)!)
                - UnsafeRawPointer(base)
            var lineStart = start
            if let zero = lastIndex(of: 0, in: base, start..<newline) {
                tornLineCount += 1
                lineStart = zero + 1
            }
            if lineStart < newline {
                text.append(contentsOf: UnsafeBufferPointer(start: base + lineStart, count: newline + 1 - lineStart))
                lineCount += 1
            }
            start = newline + 1
        }
        return CompleteLines(text: text, lineCount: lineCount, tornLineCount: tornLineCount)
    }

    /// memrchr, which Swift's Glibc module does not export (GNU).
    private static func lastIndex(of byte: UInt8, in base: UnsafePointer<UInt8>, _ range: Range<Int>) -> Int? {
        var index = range.upperBound
        while index > range.lowerBound {
            index -= 1
            if base[index] == byte { return index }
        }
        return nil
    }
}
