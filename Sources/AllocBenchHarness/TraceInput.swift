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

    public var description: String {
        switch self {
        case .missing(let path, let reason): "\(path): \(reason)"
        case .badTrace(let path, let line?, let message): "\(path):\(line): \(message)"
        case .badTrace(let path, nil, let message): "\(path): \(message)"
        case .system(let error): error.description
        }
    }

    public var kind: FailureKind {
        switch self {
        case .missing: .missingInput
        case .badTrace: .badInput
        case .system: .system
        }
    }
}

/// A trace file's text, decompressed when its name ends in `.gz` or `.zip`.
public enum TraceInput {
    /// Reads and parses `path` (`.txt` or anything else as text, `.gz`, or a `.zip` with one entry).
    public static func parse(path: String, options: TraceParser.Options) throws(InputError) -> ParsedTrace {
        try withText(of: path) { bytes throws(InputError) in
            do throws(TraceError) {
                return try TraceParser.parse(bytes, options: options)
            } catch {
                throw InputError.badTrace(path: path, line: error.line > 0 ? error.line : nil, message: error.message)
            }
        }
    }

    /// Calls `body` with the file's decompressed bytes.
    public static func withText<Result>(
        of path: String, _ body: (UnsafeRawBufferPointer) throws(InputError) -> Result
    ) throws(InputError) -> Result {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw InputError.missing(path: path, reason: String(cString: strerror(errno)).lowercased())
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw InputError.missing(path: path, reason: "not a regular file") }
        guard access(path, R_OK) == 0 else {
            throw InputError.missing(path: path, reason: String(cString: strerror(errno)).lowercased())
        }
        if path.hasSuffix(".gz") {
            let bytes = try gunzip(path)
            return try bytes.withUnsafeBytes { buffer in Swift.Result { () throws(InputError) in try body(buffer) } }.get()
        }
        if path.hasSuffix(".zip") {
            let bytes = try unzipSingleEntry(path)
            return try bytes.withUnsafeBytes { buffer in Swift.Result { () throws(InputError) in try body(buffer) } }.get()
        }
        return try withMappedFile(path, size: Int(status.st_size), body)
    }

    private static func withMappedFile<Result>(
        _ path: String, size: Int, _ body: (UnsafeRawBufferPointer) throws(InputError) -> Result
    ) throws(InputError) -> Result {
        if size == 0 { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.open(path, O_RDONLY)
        } catch {
            throw InputError.missing(path: path, reason: String(cString: strerror(error.errno)).lowercased())
        }
        guard let address = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, descriptor.rawValue, 0),
              address != MAP_FAILED else {
            throw InputError.system(SystemError("mmap \(path)", errno: errno))
        }
        defer { munmap(address, size) }
        madvise(address, size, MADV_SEQUENTIAL)
        return try body(UnsafeRawBufferPointer(start: address, count: size))
    }

    /// zlib's gzread, which also reads concatenated members and plain text.
    static func gunzip(_ path: String) throws(InputError) -> [UInt8] {
        guard let file = gzopen(path, "rb") else {
            throw InputError.missing(path: path, reason: "cannot open")
        }
        defer { gzclose(file) }
        _ = gzbuffer(file, 1 << 20)
        var output: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let count = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32($0.count)) }
            if count < 0 {
                var code: Int32 = 0
                let message = gzerror(file, &code).map { String(cString: $0) } ?? "unknown error"
                throw InputError.badTrace(path: path, line: nil, message: "not a valid gzip stream (\(message))")
            }
            if count == 0 { break }
            output.append(contentsOf: chunk[0..<Int(count)])
        }
        // gzread also answers 0 when the stream ends early; only gzerror tells the two apart.
        var code: Int32 = 0
        _ = gzerror(file, &code)
        guard code == Z_OK else {
            throw InputError.badTrace(path: path, line: nil, message: "truncated or corrupt gzip stream (zlib error \(code))")
        }
        return output
    }

    static func unzipSingleEntry(_ path: String) throws(InputError) -> [UInt8] {
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
        var output: [UInt8] = []
        // The declared size is the archive's claim, not a fact: reserve no more than deflate can
        // produce from the file (at most 1032:1).
        let fileSize = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        output.reserveCapacity(Int(clamping: min(UInt64(clamping: entry.uncompressedSize), UInt64(fileSize) * 1032)))
        do {
            _ = try archive.extract(entry, skipCRC32: false) { chunk in output.append(contentsOf: chunk) }
        } catch {
            throw InputError.badTrace(path: path, line: nil, message: "cannot extract \(entry.path) (\(error))")
        }
        return output
    }
}
