import Foundation
import Glibc

/// An allocator that a replay child offers, and how to start it.
public struct CatalogEntry: Sendable, Equatable {
    public enum Kind: String, Sendable {
        /// A Swift module in Allocators/, linked into a replay child.
        case module
        /// The process malloc of its child (glibc, jemalloc).
        case processMalloc = "process-malloc"
        /// A malloc-replacing shared library run with LD_PRELOAD in the glibc child.
        case preload
    }

    public var name: String
    public var kind: Kind
    public var summary: String
    /// Extra facts for `allocbench list` (the bss tail, a library version, a path).
    public var note: String
    /// The replay child that runs it.
    public var executable: String
    /// The allocator name the child is asked for (differs from `name` for preloads).
    public var childAllocator: String
    /// Environment entries the child needs (LD_PRELOAD=...).
    public var environment: [String]
    /// Why it cannot run here, if it cannot.
    public var unavailableReason: String?

    public init(name: String, kind: Kind, summary: String, note: String, executable: String,
                childAllocator: String, environment: [String], unavailableReason: String?) {
        self.name = name
        self.kind = kind
        self.summary = summary
        self.note = note
        self.executable = executable
        self.childAllocator = childAllocator
        self.environment = environment
        self.unavailableReason = unavailableReason
    }

    public var isAvailable: Bool { unavailableReason == nil }
}

/// Why a catalog could not be assembled or an allocator not selected (exit 64 or 66).
public enum CatalogError: Error, Sendable, CustomStringConvertible {
    case noReplayChild(directory: String)
    case childFailed(executable: String, detail: String)
    case unknownAllocator(name: String, known: [String])
    case unavailable(name: String, reason: String)

    public var description: String {
        switch self {
        case .noReplayChild(let directory):
            "no allocbench-replay executable beside allocbench in \(directory); build the package first (swift build)"
        case .childFailed(let executable, let detail):
            "\(executable) describe failed: \(detail)"
        case .unknownAllocator(let name, let known):
            "unknown allocator '\(name)' (known: \(known.joined(separator: ", ")))"
        case .unavailable(let name, let reason):
            "allocator '\(name)' is not available: \(reason)"
        }
    }

    public var exitCode: Int32 {
        switch self {
        case .unknownAllocator: 64
        case .noReplayChild, .childFailed, .unavailable: 66
        }
    }
}

/// Every allocator the replay children next to this executable offer, in registry order, glibc's
/// child first.
public struct AllocatorCatalog: Sendable {
    public var entries: [CatalogEntry]

    public init(entries: [CatalogEntry]) {
        self.entries = entries
    }

    /// Asks each `allocbench-replay*` executable in `directory` to describe itself.
    public static func discover(in directory: String = AllocatorCatalog.executableDirectory()) throws(CatalogError) -> AllocatorCatalog {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0 == "allocbench-replay" || $0.hasPrefix("allocbench-replay-") }
            .filter { !$0.contains(".") }
            .sorted { ($0 == "allocbench-replay" ? "" : $0) < ($1 == "allocbench-replay" ? "" : $1) }
        guard !names.isEmpty else { throw CatalogError.noReplayChild(directory: directory) }
        var entries: [CatalogEntry] = []
        for name in names {
            let executable = directory + "/" + name
            guard access(executable, X_OK) == 0 else { continue }
            let output: String
            do {
                output = try ChildProcess.output(of: [executable, "describe"])
            } catch {
                throw CatalogError.childFailed(executable: executable, detail: error.message)
            }
            for line in output.split(separator: "\n") {
                let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                guard fields.count >= 3 else { continue }
                entries.append(CatalogEntry(
                    name: fields[0],
                    kind: fields[1] == "process-malloc" ? .processMalloc : .module,
                    summary: fields[2],
                    note: fields.count > 3 ? fields[3] : "",
                    executable: executable,
                    childAllocator: fields[0],
                    environment: [],
                    unavailableReason: nil))
            }
        }
        return AllocatorCatalog(entries: entries)
    }

    /// The directory of the running executable (/proc/self/exe), where SwiftPM puts the children.
    public static func executableDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { return "." }
        let path = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return (path as NSString).deletingLastPathComponent
    }

    public func entry(named name: String) -> CatalogEntry? {
        entries.first { $0.name == name }
    }

    /// The entries for a comma-separated selection, or every available one when `names` is empty.
    public func select(_ names: [String]) throws(CatalogError) -> [CatalogEntry] {
        if names.isEmpty { return entries.filter(\.isAvailable) }
        var selected: [CatalogEntry] = []
        for name in names {
            guard let entry = entry(named: name) else {
                throw CatalogError.unknownAllocator(name: name, known: entries.map(\.name))
            }
            if let reason = entry.unavailableReason { throw CatalogError.unavailable(name: name, reason: reason) }
            if !selected.contains(entry) { selected.append(entry) }
        }
        return selected
    }
}

struct ChildProcessError: Error {
    var message: String
}

/// Runs a short-lived helper process and returns its standard output.
enum ChildProcess {
    static func output(of arguments: [String], environment: [String: String]? = nil) throws(ChildProcessError) -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        if let environment { process.environment = environment }
        let pipe = Pipe()
        process.standardOutput = pipe
        do {
            try process.run()
        } catch {
            throw ChildProcessError(message: "cannot start: \(error.localizedDescription)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ChildProcessError(message: "exited with status \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
