import CAllocBench
import Glibc

/// An errno value with the call that produced it.
public struct SystemError: Error, Sendable, CustomStringConvertible {
    public var call: String
    public var errno: Int32

    public init(_ call: String, errno: Int32) {
        self.call = call
        self.errno = errno
    }

    public var description: String { "\(call): \(String(cString: strerror(errno)))" }
}

/// A raw errno value.
struct Errno: Error {
    var rawValue: Int32
}

/// The layers, as in swift-system: a raw call returns -1 and sets errno; `valueOrErrno` turns that
/// into a `Result`, retrying EINTR in this one place; `check` throws.
enum SystemCall {
    @inline(__always)
    static func valueOrErrno<Value: BinaryInteger>(_ call: () -> Value) -> Result<Value, Errno> {
        while true {
            let value = call()
            if value != -1 { return .success(value) }
            if Glibc.errno != EINTR { return .failure(Errno(rawValue: Glibc.errno)) }
        }
    }

    @inline(__always)
    @discardableResult
    static func check<Value: BinaryInteger>(_ name: String, _ call: () -> Value) throws(SystemError) -> Value {
        switch valueOrErrno(call) {
        case .success(let value): return value
        case .failure(let code): throw SystemError(name, errno: code.rawValue)
        }
    }
}

/// An owned file descriptor, closed when released.
final class FileDescriptor: @unchecked Sendable {
    let rawValue: Int32

    init(_ rawValue: Int32) { self.rawValue = rawValue }

    deinit { close(rawValue) }

    /// open(2) with O_CLOEXEC.
    static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(SystemError) -> FileDescriptor {
        FileDescriptor(try SystemCall.check("open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) })
    }

    /// memfd_create(2) with MFD_CLOEXEC: an anonymous file that lives in memory (counted as shmem,
    /// never as the child's anonymous memory).
    static func memory(named name: String) throws(SystemError) -> FileDescriptor {
        FileDescriptor(try SystemCall.check("memfd_create") { ab_memfd_create(name) })
    }

    /// pipe2(2) with O_CLOEXEC: (read end, write end).
    static func pipe() throws(SystemError) -> (FileDescriptor, FileDescriptor) {
        var ends: (Int32, Int32) = (0, 0)
        try SystemCall.check("pipe2") { ab_pipe_cloexec(&ends.0, &ends.1) }
        return (FileDescriptor(ends.0), FileDescriptor(ends.1))
    }

    /// write(2) until every byte is written.
    func writeAll(_ bytes: UnsafeRawBufferPointer) throws(SystemError) {
        try writeAll(bytes, name: "write") { start, count, _ in Glibc.write(rawValue, start, count) }
    }

    /// pwrite(2) at `offset` until every byte is written.
    func writeAll(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(SystemError) {
        try writeAll(bytes, name: "pwrite") { start, count, done in pwrite(rawValue, start, count, off_t(offset + done)) }
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer, name: String,
                          _ write: (UnsafeRawPointer, Int, Int) -> Int) throws(SystemError) {
        var done = 0
        while done < bytes.count {
            done += try SystemCall.check(name) { write(bytes.baseAddress! + done, bytes.count - done, done) }
        }
    }

    /// pread(2) from `offset` into `buffer`; returns the byte count read.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int) throws(SystemError) -> Int {
        try SystemCall.check("pread") { pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)) }
    }

    /// ftruncate(2).
    func truncate(to size: Int) throws(SystemError) {
        try SystemCall.check("ftruncate") { ftruncate(rawValue, off_t(size)) }
    }

    /// fstat(2)'s size.
    func size() throws(SystemError) -> Int {
        var status = stat()
        try SystemCall.check("fstat") { fstat(rawValue, &status) }
        return Int(status.st_size)
    }
}

/// A shared, writable mapping of a whole memfd, unmapped when released.
final class SharedMapping: @unchecked Sendable {
    let address: UnsafeMutableRawPointer
    let size: Int

    /// mmap(2) with MAP_SHARED.
    init(_ descriptor: FileDescriptor, size: Int, writable: Bool) throws(SystemError) {
        let protection = writable ? PROT_READ | PROT_WRITE : PROT_READ
        guard let address = mmap(nil, size, protection, MAP_SHARED, descriptor.rawValue, 0), address != MAP_FAILED else {
            throw SystemError("mmap", errno: Glibc.errno)
        }
        self.address = address
        self.size = size
    }

    deinit { munmap(address, size) }
}

/// This process's own resource usage, its children's excluded: getrusage(2) with RUSAGE_SELF.
/// What `allocbench run --harness-usage` prints, so that the harness's memory per million ops
/// can be read from any run (`make bench` does).
public struct HarnessUsage: Sendable {
    /// ru_maxrss: the most resident memory the harness had at once, in kB.
    public var maxResidentKilobytes: Int
    public var userSeconds: Double
    public var systemSeconds: Double

    public static func current() -> HarnessUsage {
        var usage = rusage()
        // RUSAGE_SELF cannot fail with a valid pointer.
        _ = getrusage(RUSAGE_SELF.rawValue, &usage)
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1_000_000 }
        return HarnessUsage(maxResidentKilobytes: usage.ru_maxrss, userSeconds: seconds(usage.ru_utime), systemSeconds: seconds(usage.ru_stime))
    }
}
