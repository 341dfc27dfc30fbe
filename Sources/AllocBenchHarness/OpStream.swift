import AllocBenchCore
import CAllocBench
import Glibc

/// The parsed trace in a memfd: a one-page header followed by the ops. Every child maps the same
/// file read-only, so the stream is written once per trace and its pages are shared memory, never
/// part of a child's anonymous (measured) memory.
public final class OpStreamFile: Sendable {
    let descriptor: FileDescriptor
    public let opCount: Int
    public let slotCount: Int

    public init(_ trace: ParsedTrace) throws(SystemError) {
        descriptor = try FileDescriptor.memory(named: "allocbench-ops")
        opCount = trace.ops.count
        slotCount = trace.slotCount
        try OpStreamFile.write(trace, to: descriptor)
    }

    /// The same stream in a regular file, for a program outside allocbench that replays exactly
    /// what the children replay (the C reference loop of Benchmarks/ReplayLoop).
    public static func write(_ trace: ParsedTrace, toFileAt path: String) throws(SystemError) {
        try write(trace, to: FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC))
    }

    static func write(_ trace: ParsedTrace, to file: FileDescriptor) throws(SystemError) {
        var header = ab_stream_header()
        header.magic = AB_STREAM_MAGIC
        header.version = AB_STREAM_VERSION
        header.header_bytes = AB_STREAM_HEADER_BYTES
        header.op_count = UInt64(trace.ops.count)
        header.slot_count = UInt64(trace.slotCount)
        var page = [UInt8](repeating: 0, count: Int(AB_STREAM_HEADER_BYTES))
        page.withUnsafeMutableBytes { $0.storeBytes(of: header, as: ab_stream_header.self) }
        try file.truncate(to: Int(AB_STREAM_HEADER_BYTES) + trace.ops.count * MemoryLayout<ab_op>.stride)
        try page.withUnsafeBytes { bytes in Result { () throws(SystemError) in try file.writeAll(bytes) } }.get()
        try trace.ops.withUnsafeBytes { bytes in Result { () throws(SystemError) in try file.writeAll(bytes) } }.get()
    }
}
