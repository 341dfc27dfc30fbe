import AllocBenchCore
import CAllocBenchZlib
import AllocBenchModel
import Foundation
import Glibc
import ZIPFoundation

/// Why allocbench stopped before measuring anything. Each case is a kind of failure with its
/// documented exit code.
public enum InputError: Error, Sendable, CustomStringConvertible {
    /// A file that does not exist or cannot be read (exit 66).
    case missing(path: String, reason: String)
    /// A trace that is malformed: `path:line: message`, or `path: message` when no line applies (exit 65).
    case badTrace(path: String, line: Int?, message: String)
    /// An operating-system failure outside the trace (exit 71).
    case system(SystemError)
    /// The parsed trace would outgrow the address-space limit (exit 71): reported before the
    /// allocation that would fail, since Swift ends a process whose allocation fails.
    case outOfMemory(path: String, heldBytes: Int, limitBytes: Int)

    public var description: String {
        switch self {
        case .missing(let path, let reason): "\(printable(path)): \(reason)"
        case .badTrace(let path, let line?, let message): "\(printable(path)):\(line): \(message)"
        case .badTrace(let path, nil, let message): "\(printable(path)): \(message)"
        case .system(let error): error.description
        case .outOfMemory(let path, let held, let limit):
            "\(printable(path)): out of memory: the parsed trace holds \(held >> 20) MiB and its next growth would pass "
                + "the address-space limit of \(limit >> 20) MiB (ulimit -v)"
        }
    }

    /// A file name as a one-line message can show it: control characters (a newline in a name
    /// would split the message) as \xNN.
    func printable(_ path: String) -> String {
        var text = ""
        for scalar in path.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                text += "\\x" + (scalar.value < 16 ? "0" : "") + String(scalar.value, radix: 16)
            } else {
                text.unicodeScalars.append(scalar)
            }
        }
        return text
    }

    public var kind: FailureKind {
        switch self {
        case .missing: .missingInput
        case .badTrace: .badInput
        case .system, .outOfMemory: .system
        }
    }
}

/// A trace file's text, decompressed when its name ends in `.gz` or `.zip`, read in chunks: the
/// parser takes each as it comes, so no file is held, mapped or decompressed whole, a file that
/// is not a trace fails at its first line, and a file that changes while it is read is an error
/// naming it (a mapping of it would have died of SIGBUS).
public enum TraceInput {
    /// How much is read, or decompressed, at a time.
    static let chunkSize = 1 << 20

    /// Reads and parses `path` (`.txt` or anything else as text, `.gz`, or a `.zip` with one entry).
    public static func parse(path: String, options: TraceParser.Options) throws(InputError) -> ParsedTrace {
        let size = try readableSize(path)
        var parser = TraceParser(options: options, byteCountHint: path.hasSuffix(".gz") || path.hasSuffix(".zip") ? size * 4 : size)
        func failed(_ error: TraceError) -> InputError {
            InputError.badTrace(path: path, line: error.line > 0 ? error.line : nil, message: error.message)
        }
        let limit = addressSpaceLimit()
        try forEachChunk(of: path, size: size) { chunk throws(InputError) in
            do throws(TraceError) {
                try parser.feed(chunk)
            } catch {
                throw failed(error)
            }
            if let limit, let mapped = mappedBytes(), mapped + 2 * parser.reservedBytes > limit {
                throw InputError.outOfMemory(path: path, heldBytes: parser.reservedBytes, limitBytes: limit)
            }
        }
        do throws(TraceError) {
            return try parser.finish()
        } catch {
            throw failed(error)
        }
    }

    /// Calls `body` with the file's whole decompressed text (the mtrace converter's input).
    public static func withText<Result>(
        of path: String, _ body: (UnsafeRawBufferPointer) throws(InputError) -> Result
    ) throws(InputError) -> Result {
        let size = try readableSize(path)
        var text: [UInt8] = []
        text.reserveCapacity(size)
        try forEachChunk(of: path, size: size) { chunk throws(InputError) in text.append(contentsOf: chunk) }
        return try text.withUnsafeBytes { buffer in Swift.Result { () throws(InputError) in try body(buffer) } }.get()
    }

    /// RLIMIT_AS's soft limit in bytes; nil when unlimited.
    static func addressSpaceLimit() -> Int? {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_AS.rawValue), &limit) == 0, limit.rlim_cur != rlim_t.max else { return nil }  // RLIM_INFINITY
        return Int(clamping: limit.rlim_cur)
    }

    /// This process's address space (VmSize), from the first field of /proc/self/statm.
    static func mappedBytes() -> Int? {
        let descriptor = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var text = [UInt8](repeating: 0, count: 64)
        let count = read(descriptor, &text, text.count)
        guard count > 0, let pages = Int(String(decoding: text[0..<count].prefix { $0 != UInt8(ascii: " ") }, as: UTF8.self)) else { return nil }
        return pages * Benchmark.pageSize
    }

    /// The size of a readable regular file, or why it cannot be read.
    static func readableSize(_ path: String) throws(InputError) -> Int {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw InputError.missing(path: path, reason: String(cString: strerror(errno)).lowercased())
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw InputError.missing(path: path, reason: "not a regular file") }
        guard access(path, R_OK) == 0 else {
            throw InputError.missing(path: path, reason: String(cString: strerror(errno)).lowercased())
        }
        return Int(status.st_size)
    }

    /// Calls `body` with the file's decompressed bytes, a chunk at a time, in order.
    static func forEachChunk(of path: String, size: Int, _ body: (UnsafeRawBufferPointer) throws(InputError) -> Void) throws(InputError) {
        if path.hasSuffix(".gz") {
            try gunzip(path, body)
        } else if path.hasSuffix(".zip") {
            try unzipSingleEntry(path, body)
        } else {
            try readPlain(path, size: size, body)
        }
    }

    /// read(2) in chunks; a file that ends before or after the size it had when it was opened
    /// changed underneath: an error, not a parse of half of it.
    static func readPlain(_ path: String, size: Int, _ body: (UnsafeRawBufferPointer) throws(InputError) -> Void) throws(InputError) {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(path, O_RDONLY)
        } catch {
            throw InputError.missing(path: path, reason: String(cString: strerror(error.errno)).lowercased())
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { buffer.deallocate() }
        var offset = 0
        while true {
            let count: Int
            do {
                count = try descriptor.read(into: buffer, at: offset)
            } catch {
                throw InputError.system(error)
            }
            if count == 0 { break }
            offset += count
            try body(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        guard offset == size else {
            throw InputError.badTrace(path: path, line: nil, message: "the file changed while it was read (\(size) bytes when opened, \(offset) read)")
        }
    }

    /// zlib's gzread, which also reads concatenated members and plain text.
    static func gunzip(_ path: String, _ body: (UnsafeRawBufferPointer) throws(InputError) -> Void) throws(InputError) {
        guard let file = gzopen(path, "rb") else {
            throw InputError.missing(path: path, reason: "cannot open")
        }
        defer { gzclose(file) }
        _ = gzbuffer(file, UInt32(chunkSize))
        let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { chunk.deallocate() }
        while true {
            let count = gzread(file, chunk.baseAddress, UInt32(chunk.count))
            if count < 0 {
                var code: Int32 = 0
                let message = gzerror(file, &code).map { String(cString: $0) } ?? "unknown error"
                throw InputError.badTrace(path: path, line: nil, message: "not a valid gzip stream (\(message))")
            }
            if count == 0 { break }
            try body(UnsafeRawBufferPointer(rebasing: chunk[0..<Int(count)]))
        }
        // gzread also answers 0 when the stream ends early; only gzerror tells the two apart.
        var code: Int32 = 0
        _ = gzerror(file, &code)
        guard code == Z_OK else {
            throw InputError.badTrace(path: path, line: nil, message: "truncated or corrupt gzip stream (zlib error \(code))")
        }
    }

    static func unzipSingleEntry(_ path: String, _ body: (UnsafeRawBufferPointer) throws(InputError) -> Void) throws(InputError) {
        let archive: Archive
        do {
            archive = try Archive(url: URL(fileURLWithPath: path), accessMode: .read)
        } catch {
            throw InputError.badTrace(path: path, line: nil, message: "not a readable zip archive (\(error))")
        }
        let files = archive.filter { $0.type == .file }
        guard files.count == 1, let entry = files.first else {
            throw InputError.badTrace(path: path, line: nil,
                                      message: "a zip trace holds exactly one file; this one holds \(files.count)")
        }
        // The consumer may only throw untyped errors: the body's is carried out beside it.
        var bodyError: InputError?
        struct Stopped: Error {}
        do {
            _ = try archive.extract(entry, bufferSize: chunkSize, skipCRC32: false) { data in
                do throws(InputError) {
                    try data.withUnsafeBytes { bytes in Swift.Result { () throws(InputError) in try body(bytes) } }.get()
                } catch {
                    bodyError = error
                    throw Stopped()
                }
            }
        } catch {
            if let bodyError { throw bodyError }
            throw InputError.badTrace(path: path, line: nil, message: "cannot extract \(entry.path) (\(error))")
        }
    }
}
