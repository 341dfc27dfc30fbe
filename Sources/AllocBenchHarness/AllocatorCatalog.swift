import AllocBenchModel
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
    /// For a preload: the library `malloc` must resolve into in the child, or the row is refused.
    public var expectedMallocProvider: String?
    /// Why a selected allocator cannot be measured: its child hung, crashed or failed before it
    /// could say where malloc resolves. Its row reads `failed: <this>`; the others still run.
    public var failure: String?
    /// The file `malloc` resolves into in its child (`describe`), or the preloaded library.
    public var mallocProvider = ""
    /// Why its page counts differ from run to run, for an allocator that randomizes its layout;
    /// nil for every allocator whose counts repeat exactly (DeterminismTests).
    public var randomization: String?

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
        self.expectedMallocProvider = nil
        self.failure = nil
        self.randomization = nil
    }

    /// A malloc-replacing shared library, run by LD_PRELOAD in the glibc child.
    public static func preload(name: String, library: String, summary: String, glibcChild: String,
                               unavailableReason: String? = nil) -> CatalogEntry {
        var entry = CatalogEntry(name: name, kind: .preload, summary: summary, note: library,
                                 executable: glibcChild, childAllocator: "glibc",
                                 environment: ["LD_PRELOAD=" + library], unavailableReason: unavailableReason)
        entry.expectedMallocProvider = library
        entry.mallocProvider = library
        return entry
    }

    public var isAvailable: Bool { unavailableReason == nil }
}

/// Why a catalog could not be assembled or an allocator not selected (exit 64 or 66).
public enum CatalogError: Error, Sendable, CustomStringConvertible {
    case noReplayChild(directory: String, prefix: String)
    case childFailed(executable: String, errand: String, detail: String)
    case unknownAllocator(name: String, known: [String])
    case unavailable(name: String, reason: String)
    /// A `--preload` that is not NAME=PATH, or whose name is taken or cannot be selected.
    case badPreload(String)
    case preloadMissing(name: String, path: String)
    /// Nothing to replay: no allocator of the children is available here.
    case nothingAvailable
    case preloadDoesNotReplaceMalloc(name: String, library: String, provider: String)

    public var description: String {
        switch self {
        case .noReplayChild(let directory, let prefix):
            "no \(prefix) executable beside allocbench in \(directory); build the package first (make build, or swift build and Sources/LeanChild/build.sh)"
        case .childFailed(let executable, let errand, let detail):
            "\(executable) \(errand) failed: \(detail)"
        case .unknownAllocator(let name, let known):
            "unknown allocator '\(name)' (known: \(known.joined(separator: ", ")))"
        case .unavailable(let name, let reason):
            "allocator '\(name)' is not available: \(reason)"
        case .badPreload(let message):
            message
        case .preloadMissing(let name, let path):
            "--preload \(name)=\(path): no such readable file"
        case .nothingAvailable:
            "no allocator is available here (allocbench list says why)"
        case .preloadDoesNotReplaceMalloc(let name, let library, let provider):
            "--preload \(name)=\(library): with it preloaded, malloc still resolves into \(provider); is it a malloc replacement?"
        }
    }

    public var kind: FailureKind {
        switch self {
        case .unknownAllocator, .badPreload: .usage
        case .noReplayChild, .childFailed, .unavailable, .preloadMissing, .nothingAvailable, .preloadDoesNotReplaceMalloc: .missingInput
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

    /// A malloc replacement that Debian packages and allocbench runs through LD_PRELOAD when it
    /// is installed.
    public struct KnownPreload: Sendable {
        public var name: String
        public var library: String
        public var package: String
        public var summary: String
        /// Why its page counts differ from run to run, if they do (scudo shuffles its free lists
        /// and regions with a seed from getrandom(2), a hardening it has no option to turn off).
        public var randomization: String? = nil
    }

    public static let knownPreloads = [
        KnownPreload(name: "mimalloc", library: "libmimalloc.so.2", package: "libmimalloc-dev",
                     summary: "Microsoft mimalloc (Debian libmimalloc-dev) as the process malloc, through LD_PRELOAD."),
        KnownPreload(name: "tcmalloc", library: "libtcmalloc_minimal.so.4", package: "libtcmalloc-minimal4",
                     summary: "gperftools tcmalloc, minimal (Debian libtcmalloc-minimal4) as the process malloc, through LD_PRELOAD."),
        // LLVM installs its runtimes per version, under /usr/lib/llvm-N/lib/clang/N…/lib/linux.
        KnownPreload(name: "scudo", library: "libclang_rt.scudo_standalone-\(SystemFacts.unameFields.machine).so", package: "libclang-rt-14-dev",
                     summary: "LLVM's scudo, the allocator of current Android (Debian libclang-rt-*-dev), as the process malloc, through LD_PRELOAD.",
                     randomization: "scudo shuffles its free lists and regions with a seed from getrandom(2), a hardening with no run-time switch"),
        KnownPreload(name: "tbbmalloc", library: "libtbbmalloc_proxy.so.2", package: "libtbbmalloc2",
                     summary: "oneTBB's scalable allocator through its malloc-replacing proxy (Debian libtbbmalloc2), through LD_PRELOAD."),
    ]

    /// Where Debian installs shared libraries on this machine, newest LLVM runtimes first.
    static var libraryDirectories: [String] {
        let machine = SystemFacts.unameFields.machine
        let multiarch = machine == "aarch64" ? "aarch64-linux-gnu" : machine + "-linux-gnu"
        let llvmRuntimes = SystemFacts.glob("/usr/lib/llvm-*/lib/clang/*/lib/linux").sorted {
            $0.compare($1, options: .numeric) == .orderedDescending
        }
        return ["/usr/lib/" + multiarch, "/lib/" + multiarch, "/usr/local/lib", "/usr/lib"] + llvmRuntimes
    }

    /// Which replay children a catalog is made of.
    public enum Children: Sendable {
        /// The lean children (`allocbench-lean*`, Sources/LeanChild): every measured row runs in one.
        case measured
        /// The Swift children (`allocbench-replay*`): the conformance suite needs the full runtime.
        case conformance

        var prefix: String {
            switch self {
            case .measured: "allocbench-lean"
            case .conformance: "allocbench-replay"
            }
        }
    }

    /// The catalog: every allocator the children next to this executable offer, then the known
    /// preload libraries (available when installed), then the user's `--preload NAME=PATH`s. Each
    /// child's `describe` may take `timeout`.
    public static func discover(in directory: String = AllocatorCatalog.executableDirectory(), preloads: [String] = [],
                                timeout: Duration = ReplayRunner.defaultErrandTimeout,
                                children: Children = .measured) throws(CatalogError) -> AllocatorCatalog {
        var catalog = try discoverChildren(in: directory, prefix: children.prefix, timeout: timeout)
        guard let glibcChild = catalog.entry(named: "glibc")?.executable else { return catalog }
        for known in knownPreloads {
            let found = libraryDirectories.map { $0 + "/" + known.library }.first { FileManager.default.fileExists(atPath: $0) }
            var entry = CatalogEntry.preload(
                name: known.name, library: found ?? known.library, summary: known.summary, glibcChild: glibcChild,
                unavailableReason: found == nil ? "\(known.library) not found; apt-get install \(known.package)" : nil)
            entry.randomization = known.randomization
            catalog.entries.append(entry)
        }
        for request in preloads {
            let parts = request.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw CatalogError.badPreload("--preload takes NAME=PATH, not '\(request)'")
            }
            // A name --allocators could not select (it splits at commas) or a row title could not show.
            guard parts[0].allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }) else {
                throw CatalogError.badPreload("--preload \(parts[0]): a name is letters, digits, '-', '_' and '.'")
            }
            guard FileManager.default.isReadableFile(atPath: parts[1]) else {
                throw CatalogError.preloadMissing(name: parts[0], path: parts[1])
            }
            let entry = CatalogEntry.preload(name: parts[0], library: parts[1],
                                             summary: "\(parts[1]) as the process malloc, through LD_PRELOAD.",
                                             glibcChild: glibcChild)
            if let index = catalog.entries.firstIndex(where: { $0.name == parts[0] }) {
                guard catalog.entries[index].kind == .preload else {
                    throw CatalogError.badPreload("--preload \(parts[0]): that name is a built-in allocator")
                }
                catalog.entries[index] = entry
            } else {
                catalog.entries.append(entry)
            }
        }
        return catalog
    }

    /// Asks each `PREFIX` and `PREFIX-*` executable in `directory` to describe itself.
    static func discoverChildren(in directory: String, prefix: String, timeout: Duration) throws(CatalogError) -> AllocatorCatalog {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0 == prefix || $0.hasPrefix(prefix + "-") }
            .filter { !$0.contains(".") }
            .sorted { Self.childOrder($0, prefix: prefix) < Self.childOrder($1, prefix: prefix) }
        guard !names.isEmpty else { throw CatalogError.noReplayChild(directory: directory, prefix: prefix) }
        var entries: [CatalogEntry] = []
        for name in names {
            let executable = directory + "/" + name
            guard access(executable, X_OK) == 0 else { continue }
            let described: Subprocess.Completion
            do {
                described = try ReplayRunner.errand([executable, "describe"], timeout: timeout)
            } catch {
                throw CatalogError.childFailed(executable: executable, errand: "describe", detail: error.description)
            }
            if let failure = described.failure {
                throw CatalogError.childFailed(executable: executable, errand: "describe", detail: failure)
            }
            for line in described.output.split(separator: "\n") {
                let fields = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
                guard fields.count >= 3 else { continue }
                var entry = CatalogEntry(
                    name: fields[0],
                    kind: fields[1] == "process-malloc" ? .processMalloc : .module,
                    summary: fields[2],
                    note: fields.count > 3 ? fields[3] : "",
                    executable: executable,
                    childAllocator: fields[0],
                    environment: [],
                    unavailableReason: nil)
                entry.mallocProvider = fields.count > 4 ? fields[4] : ""
                entries.append(entry)
            }
        }
        return AllocatorCatalog(entries: entries)
    }

    /// Children sort by name, but the glibc child first: its row is every ratio's reference.
    static func childOrder(_ name: String, prefix: String) -> String {
        name == prefix || name == prefix + "-glibc" ? "" : name
    }

    /// The directory of the running executable (/proc/self/exe), where SwiftPM puts the children.
    public static func executableDirectory() -> String {
        guard let path = SystemFacts.executablePath(of: "self") else { return "." }
        return (path as NSString).deletingLastPathComponent
    }

    public func entry(named name: String) -> CatalogEntry? {
        entries.first { $0.name == name }
    }

    /// The entries for a selection, or every available one when `names` is empty. Preloads are
    /// verified, each check within `timeout`: their child must report that malloc resolves into
    /// the library.
    public func select(_ names: [String], timeout: Duration = ReplayRunner.defaultErrandTimeout) throws(CatalogError) -> [CatalogEntry] {
        var selected: [CatalogEntry] = []
        if names.isEmpty {
            selected = entries.filter(\.isAvailable)
        } else {
            for name in names {
                guard let entry = entry(named: name) else {
                    throw CatalogError.unknownAllocator(name: name, known: entries.map(\.name))
                }
                if let reason = entry.unavailableReason { throw CatalogError.unavailable(name: name, reason: reason) }
                if !selected.contains(entry) { selected.append(entry) }
            }
        }
        guard !selected.isEmpty else { throw CatalogError.nothingAvailable }
        for index in selected.indices where selected[index].kind == .preload {
            try Self.verifyPreload(&selected[index], timeout: timeout)
        }
        return selected
    }

    /// Runs the entry's child with its LD_PRELOAD and checks where malloc resolves. A child that
    /// says it resolves elsewhere is a library that does not replace malloc (a usage error); one
    /// that hangs, crashes or fails first is a malloc that does not work, and only its row fails
    /// (`failure`).
    public static func verifyPreload(_ entry: inout CatalogEntry, timeout: Duration) throws(CatalogError) {
        guard let library = entry.expectedMallocProvider else { return }
        let checked: Subprocess.Completion
        do {
            checked = try ReplayRunner.errand([entry.executable, "malloc-provider"], adding: entry.environment, timeout: timeout)
        } catch {
            throw CatalogError.childFailed(executable: entry.executable, errand: "malloc-provider", detail: error.description)
        }
        if let failure = checked.failure {
            entry.failure = "its malloc-provider check \(failure)"
            return
        }
        let provider = checked.output.trimmingCharacters(in: .whitespacesAndNewlines)
        guard sameFile(provider, library) else {
            throw CatalogError.preloadDoesNotReplaceMalloc(name: entry.name, library: library, provider: provider)
        }
    }

    /// Whether two paths name the same file (after symbolic links).
    public static func sameFile(_ a: String, _ b: String) -> Bool {
        var first = stat()
        var second = stat()
        guard stat(a, &first) == 0, stat(b, &second) == 0 else { return false }
        return first.st_dev == second.st_dev && first.st_ino == second.st_ino
    }
}
