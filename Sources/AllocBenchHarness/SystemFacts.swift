import Foundation
import Glibc

/// Facts about this machine and process that several parts of the harness report.
enum SystemFacts {
    /// uname(2): (release, machine, host name), e.g. ("6.18.44-fc-v782", "x86_64", "vm").
    static var unameFields: (release: String, machine: String, nodename: String) {
        var names = utsname()
        uname(&names)
        func text<Field>(_ field: inout Field) -> String {
            withUnsafeBytes(of: &field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return (text(&names.release), text(&names.machine), text(&names.nodename))
    }

    /// The transparent-huge-page mode, the bracketed word of /sys/kernel/mm/transparent_hugepage/enabled
    /// ("always [madvise] never" → "madvise"); "unsupported" without the file.
    static var transparentHugePages: String {
        guard let text = try? String(contentsOfFile: "/sys/kernel/mm/transparent_hugepage/enabled", encoding: .utf8),
              let open = text.firstIndex(of: "["), let close = text[open...].firstIndex(of: "]") else { return "unsupported" }
        return String(text[text.index(after: open)..<close])
    }

    /// The first "model name" of /proc/cpuinfo, if any.
    static var cpuModel: String? {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
        let line = text.split(separator: "\n").first { $0.hasPrefix("model name") }
        return line?.split(separator: ":", maxSplits: 1).last?.trimmingCharacters(in: .whitespaces)
    }

    /// Online CPUs, sysconf(_SC_NPROCESSORS_ONLN).
    static var onlineCores: Int { Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))) }

    /// Which code a shared library holds: the file name it resolves to after symbolic links (Debian's
    /// carry the version, libtcmalloc_minimal.so.4.5.10) and a 64-bit FNV-1a digest of its bytes, so
    /// two builds of one version are told apart too. nil when the file cannot be read.
    static func libraryIdentity(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        let file = String(cString: resolved)
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        var digest: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in data {
            digest = (digest ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
        }
        let hex = String(digest, radix: 16)
        return "\((file as NSString).lastPathComponent) (fnv1a64 \(String(repeating: "0", count: 16 - hex.count) + hex))"
    }

    /// This process's environment, `NAME=value` entries in order.
    static var environment: [String] {
        var entries: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            entries.append(String(cString: pointer))
            entry += 1
        }
        return entries
    }

    /// Calls `body` with `strings` as a NULL-terminated C array (argv, envp), freed afterwards.
    static func withCStringArray<Result>(_ strings: [String], _ body: (inout [UnsafeMutablePointer<CChar>?]) -> Result) -> Result {
        var array = strings.map { strdup($0) } + [nil]
        defer { array.forEach { free($0) } }
        return body(&array)
    }

    /// readlink(2) of /proc/PROCESS/exe: the executable a process runs ("self" for this one).
    /// The paths matching a shell pattern (glob(3)), or none.
    static func glob(_ pattern: String) -> [String] {
        var matches = glob_t()
        defer { globfree(&matches) }
        guard Glibc.glob(pattern, 0, nil, &matches) == 0 else { return [] }
        return (0..<Int(matches.gl_pathc)).compactMap { matches.gl_pathv[$0].map { String(cString: $0) } }
    }

    static func executablePath(of process: String) -> String? {
        var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/\(process)/exe", &target, target.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
