import Glibc

/// Page counts from /proc's kB figures. /proc reports whole pages in kB, so the division is exact.
@inlinable
public func pages(kilobytes: Int, pageSize: Int) -> Int {
    kilobytes * 1024 / pageSize
}

/// Facts about this machine and process that several parts of the harness report.
enum SystemFacts {
    /// uname(2): (release, machine), e.g. ("6.18.44", "x86_64").
    static var unameFields: (release: String, machine: String) {
        var names = utsname()
        uname(&names)
        func text<Field>(_ field: inout Field) -> String {
            withUnsafeBytes(of: &field) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        return (text(&names.release), text(&names.machine))
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
    static func executablePath(of process: String) -> String? {
        var target = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/\(process)/exe", &target, target.count - 1)
        guard length > 0 else { return nil }
        return String(decoding: target[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
