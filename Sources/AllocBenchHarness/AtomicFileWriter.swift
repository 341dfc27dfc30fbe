import Glibc

/// Writes a file whole or not at all: the bytes go to a temporary file in the destination's
/// directory, which is renamed over the destination only once everything is written. A reader
/// never sees a half-written trace, and a failure leaves an existing file untouched.
///
/// A destination that exists and is not a regular file (a device such as /dev/null, a FIFO, a
/// symbolic link) is written through instead: renaming over it would replace it.
public enum AtomicFileWriter {
    public static func write(_ bytes: [UInt8], to path: String) throws(SystemError) {
        var status = stat()
        if lstat(path, &status) == 0 && (status.st_mode & S_IFMT) != S_IFREG {
            let descriptor = try FileDescriptor.open(path, O_WRONLY | O_TRUNC)
            try bytes.withUnsafeBytes { buffer in Result { () throws(SystemError) in try descriptor.writeAll(buffer) } }.get()
            return
        }
        try write(to: path) { descriptor throws(SystemError) in
            try bytes.withUnsafeBytes { buffer in Result { () throws(SystemError) in try descriptor.writeAll(buffer) } }.get()
        }
    }

    /// Writes everything to standard output.
    public static func writeToStandardOutput(_ bytes: [UInt8]) throws(SystemError) {
        let output = FileDescriptor(dup(STDOUT_FILENO))
        try bytes.withUnsafeBytes { buffer in Result { () throws(SystemError) in try output.writeAll(buffer) } }.get()
    }

    /// Calls `fill` with the temporary file, then renames it to `path`.
    static func write(to path: String, _ fill: (FileDescriptor) throws(SystemError) -> Void) throws(SystemError) {
        let slash = path.lastIndex(of: "/")
        let directory = slash.map { String(path[..<$0]) } ?? "."
        let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
        var template = (directory + "/." + name + ".tmp-XXXXXX").utf8CString
        let raw = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard raw >= 0 else { throw SystemError("create a temporary file beside \(path)", errno: errno) }
        let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let cleanup = CleanupOnSignal.file(temporary)
        defer { cleanup.release() }
        let descriptor = FileDescriptor(raw)
        _ = fcntl(raw, F_SETFD, FD_CLOEXEC)
        do throws(SystemError) {
            try fill(descriptor)
            // mkstemp creates 0600. A file that is replaced keeps its mode (a 0600 report stays
            // private); a new one gets the mode any new file would (0666 less the umask). Its
            // other hard links, if any, keep the old contents: the rename replaces this name only.
            var existing = stat()
            let mode: mode_t
            if stat(path, &existing) == 0 {
                mode = existing.st_mode & 0o7777
            } else {
                let mask = umask(0)
                umask(mask)
                mode = 0o666 & ~mask
            }
            try SystemCall.check("fchmod \(temporary)") { fchmod(descriptor.rawValue, mode) }
            try SystemCall.check("rename \(temporary) to \(path)") { rename(temporary, path) }
        } catch {
            unlink(temporary)
            throw error
        }
    }
}
