import CAllocBench
import Glibc

/// A child process, and the one way allocbench and its tests start one.
///
/// * It dies with allocbench however allocbench ends (SIGINT, SIGTERM, SIGKILL, a crash):
///   `ab_spawn` sets PR_SET_PDEATHSIG between its vfork and its exec, so even a child that hangs
///   before its `main` (a preloaded malloc that never returns) goes with it.
/// * Its stdout and stderr can be captured through pipes that the wait drains as they fill, both at
///   once, so that neither can block the child; nothing is written to /tmp.
/// * It has a deadline: past it the child is killed (SIGKILL) and reaped, and the caller gets
///   `Termination.timedOut`.
/// * Waiting is poll(2) on a pidfd (readable once the child has exited) and the pipes: no timer,
///   no sleep, and `waitid(P_PIDFD)` reaps exactly this child.
public struct Subprocess {
    /// Where the child's stdout or stderr goes.
    public enum Stream: Sendable {
        /// The parent's own.
        case inherited
        /// A pipe the wait drains: `Completion.output` and `Completion.errors`.
        case captured
        /// The parent's stderr: a replay child's stdout, as allocbench's stdout is the user's data.
        case standardError
    }

    public struct Options: Sendable {
        /// The child's whole environment, `NAME=value` entries.
        public var environment: [String]
        /// Descriptors of the parent that become 3, 4, ... in the child.
        public var descriptors: [Int32]
        public var standardOutput: Stream
        public var standardError: Stream
        /// A fresh start (`ab_spawn_options.isolate`): no other descriptor, default signal
        /// dispositions, an empty mask and the 8 MiB stack limit. Off, the child inherits what a
        /// shell's would (a recorded command).
        public var isolated: Bool
        /// Off: personality ADDR_NO_RANDOMIZE, so that a replay's layout repeats.
        public var addressRandomization: Bool
        /// Look `arguments[0]` up in PATH (execvpe).
        public var searchesPath: Bool
        public var workingDirectory: String?
        /// Traced from its first instruction (`ab_spawn_options.trace_from_exec`): the child stops
        /// with SIGTRAP at its exec, under the mm-syscall filter, and the caller is its tracer.
        public var tracedFromExec: Bool
        /// The executable to run instead of the file `arguments[0]` names (`ab_spawn_options.exec_descriptor`).
        var executable: FileDescriptor?

        public init(environment: [String], descriptors: [Int32] = [], standardOutput: Stream = .captured,
                    standardError: Stream = .captured, isolated: Bool = true, addressRandomization: Bool = true,
                    searchesPath: Bool = false, workingDirectory: String? = nil, tracedFromExec: Bool = false) {
            self.environment = environment
            self.descriptors = descriptors
            self.standardOutput = standardOutput
            self.standardError = standardError
            self.isolated = isolated
            self.addressRandomization = addressRandomization
            self.searchesPath = searchesPath
            self.workingDirectory = workingDirectory
            self.tracedFromExec = tracedFromExec
        }
    }

    /// How a child ended.
    public enum Termination: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)
        /// Still running at its deadline, `after` it was spawned: killed with SIGKILL and reaped.
        case timedOut(after: Duration)

        /// A waitpid(2) status word's end; nil for a stop (a traced child).
        public init?(status: Int32) {
            let signal = status & 0x7f
            if signal == 0 {
                self = .exited((status >> 8) & 0xff)
            } else if signal != 0x7f {
                self = .signaled(signal)
            } else {
                return nil
            }
        }

        /// "exited with status 3", "was killed by SIGSEGV", "timed out after 5 s".
        public var description: String {
            switch self {
            case .exited(let status): "exited with status \(status)"
            case .signaled(let signal): "was killed by \(signalName(signal))"
            case .timedOut(let after): "timed out after \(Subprocess.seconds(after)) s"
            }
        }
    }

    /// How a waited-for child ended and what it printed on the captured streams.
    public struct Completion: Sendable {
        public var termination: Termination
        public var output: String
        public var errors: String

        public var succeeded: Bool { termination == .exited(0) }

        /// Why it did not succeed, with the last line it printed on stderr; nil when it did.
        public var failure: String? {
            guard !succeeded else { return nil }
            let said = errors.split(separator: "\n").last.map { ": " + $0 } ?? ""
            return termination.description + said
        }
    }

    public let pid: pid_t
    private let process: FileDescriptor
    private let outputPipe: FileDescriptor?
    private let errorPipe: FileDescriptor?
    private let started: UInt64

    /// Starts `arguments[0]` with `arguments` (ab_spawn, then pidfd_open(2)). The error is the
    /// exec's own errno when the program cannot be run (ENOENT, EACCES, ENOEXEC ...).
    public init(_ arguments: [String], options: Options) throws(SystemError) {
        var pipes: [(read: FileDescriptor, write: FileDescriptor)?] = []
        for stream in [options.standardOutput, options.standardError] {
            if stream == .captured {
                let (read, write) = try FileDescriptor.pipe()
                pipes.append((read, write))
            } else {
                pipes.append(nil)
            }
        }
        func target(_ stream: Stream, _ pipe: (read: FileDescriptor, write: FileDescriptor)?) -> Int32 {
            switch stream {
            case .inherited: -1
            case .captured: pipe!.write.rawValue
            case .standardError: STDERR_FILENO
            }
        }
        var pid: pid_t = 0
        let error = SystemFacts.withCStringArray(arguments) { cArguments in
            SystemFacts.withCStringArray(options.environment) { cEnvironment in
                options.descriptors.withUnsafeBufferPointer { descriptors in
                    withOptionalCString(options.workingDirectory) { directory in
                        var spawn = ab_spawn_options(
                            keep: descriptors.baseAddress, keep_count: Int32(descriptors.count),
                            standard_output: target(options.standardOutput, pipes[0]),
                            standard_error: target(options.standardError, pipes[1]),
                            isolate: options.isolated ? 1 : 0, no_aslr: options.addressRandomization ? 0 : 1,
                            search_path: options.searchesPath ? 1 : 0, directory: directory,
                            trace_from_exec: options.tracedFromExec ? 1 : 0,
                            exec_descriptor: options.executable?.rawValue ?? -1)
                        return withExtendedLifetime(options.executable) {
                            ab_spawn(&pid, arguments[0], &cArguments, &cEnvironment, &spawn)
                        }
                    }
                }
            }
        }
        guard error == 0 else { throw SystemError("exec \(arguments[0])", errno: error) }
        self.pid = pid
        self.started = ab_monotonic_nanoseconds()
        do {
            process = FileDescriptor(try SystemCall.check("pidfd_open") { ab_pidfd_open(pid) })
        } catch {
            Glibc.kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = SystemCall.valueOrErrno { waitpid(pid, &status, 0) }
            throw error
        }
        // The write ends close here, with `pipes`: the child holds the only ones, so its exit is
        // the pipes' end of file.
        for pipe in pipes.compactMap({ $0 }) {
            try SystemCall.check("fcntl(O_NONBLOCK)") { ab_set_nonblocking(pipe.read.rawValue) }
        }
        outputPipe = pipes[0]?.read
        errorPipe = pipes[1]?.read
    }

    /// Runs `arguments` to completion (or to its deadline).
    public static func run(_ arguments: [String], options: Options, timeout: Duration?) throws(SystemError) -> Completion {
        try Subprocess(arguments, options: options).wait(timeout: timeout)
    }

    /// Sends SIGKILL to this very child (pidfd_send_signal(2)); an exited one is left as it is.
    public func kill() {
        _ = ab_pidfd_send_signal(process.rawValue, SIGKILL)
    }

    /// The first of `candidates` (indices into `children`) that has exited — its pidfd readable —
    /// waiting up to `milliseconds` for one; nil when none has. Reaps nothing: `wait` still must.
    public static func firstExited(of children: [Subprocess], among candidates: [Int], waitingUpTo milliseconds: Int32)
        throws(SystemError) -> Int?
    {
        var descriptors = candidates.map { pollfd(fd: children[$0].process.rawValue, events: Int16(POLLIN), revents: 0) }
        try SystemCall.check("poll") { poll(&descriptors, nfds_t(descriptors.count), milliseconds) }
        return descriptors.firstIndex { $0.revents != 0 }.map { candidates[$0] }
    }

    /// Waits for the child to exit, draining the captured streams meanwhile; once `timeout` has
    /// passed since the spawn, kills it and reaps it. Call it once, and only for a child that is
    /// not traced (a tracer's stops are not exits).
    public func wait(timeout: Duration? = nil) throws(SystemError) -> Completion {
        let deadline = timeout.map { started + Self.nanoseconds($0) }
        var streams = [outputPipe, errorPipe].map { $0.map { Captured(descriptor: $0) } }
        var timedOut = false
        while true {
            var descriptors = [pollfd(fd: process.rawValue, events: Int16(POLLIN), revents: 0)]
                + streams.map { pollfd(fd: $0.flatMap { $0.isOpen ? $0.descriptor.rawValue : nil } ?? -1,
                                       events: Int16(POLLIN), revents: 0) }
            var milliseconds: Int32 = -1
            if let deadline {
                let now = ab_monotonic_nanoseconds()
                guard now < deadline else {
                    kill()
                    timedOut = true
                    break
                }
                milliseconds = Int32(clamping: (deadline - now + 999_999) / 1_000_000)
            }
            try SystemCall.check("poll") { poll(&descriptors, nfds_t(descriptors.count), milliseconds) }
            for index in streams.indices where descriptors[index + 1].revents != 0 {
                try streams[index]?.drain()
            }
            if descriptors[0].revents != 0 { break }
        }
        var status: Int32 = 0
        try SystemCall.check("waitid(P_PIDFD)") { ab_pidfd_wait(process.rawValue, &status) }
        // What the child wrote before it ended; a grandchild that still holds a pipe is not waited for.
        for index in streams.indices { try streams[index]?.drain() }
        let termination: Termination
        if timedOut {
            termination = .timedOut(after: timeout ?? .zero)
        } else {
            // waitid(WEXITED) reports exits only.
            termination = Termination(status: status) ?? .signaled(SIGKILL)
        }
        return Completion(termination: termination, output: streams[0]?.text ?? "", errors: streams[1]?.text ?? "")
    }

    /// A captured stream's read end (non-blocking) and what came through it.
    private struct Captured {
        let descriptor: FileDescriptor
        var bytes: [UInt8] = []
        var isOpen = true

        var text: String { String(decoding: bytes, as: UTF8.self) }

        /// read(2) until the pipe is empty (EAGAIN) or at its end.
        mutating func drain() throws(SystemError) {
            var chunk = [UInt8](repeating: 0, count: 65536)
            while isOpen {
                let result = chunk.withUnsafeMutableBytes { buffer in
                    SystemCall.valueOrErrno { Glibc.read(descriptor.rawValue, buffer.baseAddress, buffer.count) }
                }
                switch result {
                case .success(0): isOpen = false
                case .success(let count): bytes += chunk[0..<count]
                case .failure(let error) where error.rawValue == EAGAIN: return
                case .failure(let error): throw SystemError("read", errno: error.rawValue)
                }
            }
        }
    }

    static func nanoseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        return UInt64(max(seconds, 0)) * 1_000_000_000 + UInt64(max(attoseconds, 0) / 1_000_000_000)
    }

    /// "5" for 5 s, "0.25" for 250 ms.
    static func seconds(_ duration: Duration) -> String {
        let value = Double(nanoseconds(duration)) / 1e9
        return value == value.rounded() ? String(Int(value)) : String(value)
    }
}

/// `body` with a C string of `string`, or with NULL.
private func withOptionalCString<Result>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> Result) -> Result {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}
