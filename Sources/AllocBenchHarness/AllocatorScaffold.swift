import AllocBenchModel
import Foundation

/// Writes a new allocator module: `Allocators/<Name>/<Name>.swift` and its registry line in
/// Package.swift. The skeleton compiles and is registered, so `make test` runs the conformance
/// suite against it at once — and fails until the allocator is written, because `allocate`
/// answers nil (out of memory).
public enum AllocatorScaffold {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        /// A bad name is a usage error, a package that cannot take the module missing input, a file
        /// that cannot be written an output that cannot be created.
        public var kind: FailureKind
    }

    /// What was written, for the command to report.
    public struct Outcome: Sendable {
        public var sourceFile: String
        public var allocatorName: String
    }

    static let registryOpening = "let allocatorRegistry: [AllocatorModule] = ["

    /// "MyAlloc" → "my-alloc": the name users select it by.
    public static func allocatorName(forModule module: String) -> String {
        var name = ""
        for (index, character) in module.enumerated() {
            if character.isUppercase && index > 0 { name += "-" }
            name += character.lowercased()
        }
        return name
    }

    public static func validate(moduleName: String) throws(Failure) {
        let isIdentifier = moduleName.first.map { $0.isUppercase && $0.isASCII } == true
            && moduleName.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber) }
        guard isIdentifier else {
            throw Failure(description: "'\(moduleName)' is not an UpperCamelCase Swift name (letters and digits, starting with a capital)",
                          kind: .usage)
        }
        guard !["Glibc", "Foundation", "Swift", "Allocator", "AllocBenchCore", "CAllocBench"].contains(moduleName) else {
            throw Failure(description: "'\(moduleName)' would shadow a module or type allocbench uses", kind: .usage)
        }
    }

    /// Creates the module in the package at `packagePath`.
    public static func create(moduleName: String, packagePath: String) throws(Failure) -> Outcome {
        try validate(moduleName: moduleName)
        let manifestPath = packagePath + "/Package.swift"
        guard let manifest = try? String(contentsOfFile: manifestPath, encoding: .utf8) else {
            throw Failure(description: "\(manifestPath): no package manifest here (use --package-path)", kind: .missingInput)
        }
        let folder = packagePath + "/Allocators/" + moduleName
        guard !FileManager.default.fileExists(atPath: folder) else {
            throw Failure(description: "\(folder) already exists", kind: .usage)
        }
        let updated = try manifestAddingRegistryLine(manifest, moduleName: moduleName, path: manifestPath)
        let sourceFile = folder + "/" + moduleName + ".swift"
        do {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try Data(skeleton(moduleName: moduleName).utf8).write(to: URL(fileURLWithPath: sourceFile), options: .atomic)
            try Data(updated.utf8).write(to: URL(fileURLWithPath: manifestPath), options: .atomic)
        } catch {
            try? FileManager.default.removeItem(atPath: folder)
            throw Failure(description: "cannot write the module: \(error.localizedDescription)", kind: .cannotCreateOutput)
        }
        return Outcome(sourceFile: sourceFile, allocatorName: allocatorName(forModule: moduleName))
    }

    /// The manifest with `.module("Name"),` as the last entry of the registry array.
    static func manifestAddingRegistryLine(_ manifest: String, moduleName: String, path: String) throws(Failure) -> String {
        var lines = manifest.components(separatedBy: "\n")
        guard let opening = lines.firstIndex(where: { $0.hasPrefix(registryOpening) }),
              let closing = lines[opening...].firstIndex(where: { $0.hasPrefix("]") })
        else {
            throw Failure(description: "\(path): no '\(registryOpening)' … ']' registry to add the module to", kind: .missingInput)
        }
        if lines[opening..<closing].contains(where: { $0.contains("\"\(moduleName)\"") }) {
            throw Failure(description: "\(path): the registry already lists \(moduleName)", kind: .usage)
        }
        lines.insert("    .module(\"\(moduleName)\"),", at: closing)
        return lines.joined(separator: "\n")
    }

    static func skeleton(moduleName: String) -> String {
        """
        import AllocBenchCore
        // The C library comes through the C shim, never `import Glibc`: the allocator is also
        // compiled as Embedded Swift into the lean replay children, which have no Glibc module.
        import CAllocBench

        /// \(moduleName): describe in one sentence what this allocator is for.
        ///
        /// Map of structures: say where each structure lives (memory from mmap, or static storage;
        /// never the process malloc, never Swift classes or arrays: the replay child checks).
        ///
        /// Invariants, as equations, checked by assertions in debug builds
        /// (for example: live bytes + free bytes = bytes mapped).
        ///
        /// Fast path: state what an allocation costs (for example: one branch and one pointer pop).
        ///
        /// Single-threaded: allocbench replays a trace on one thread.
        public struct \(moduleName): Allocator {
            public static let name = "\(allocatorName(forModule: moduleName))"
            public static let summary = "\(moduleName): not written yet."

            public init() {}

            /// Returns a block of at least `byteCount` bytes aligned as `guaranteedAlignment`
            /// requires, or nil when out of memory. Until it is written, every allocation is "out of
            /// memory": the conformance suite and every replay of this allocator fail.
            public mutating func allocate(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
                nil
            }

            /// Takes back a block with the size and alignment it was allocated with.
            public mutating func deallocate(_ block: UnsafeMutableRawPointer, byteCount: Int, alignment: Int) {
            }
        }

        """
    }
}
