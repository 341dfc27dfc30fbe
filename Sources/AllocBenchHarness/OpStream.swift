import AllocBenchCore
import CAllocBench
import Glibc

/// The parsed trace in a memfd: a one-page header followed by the ops. Every child maps the same
/// file read-only, so the stream is written once per trace and its pages are shared memory, never
/// part of a child's anonymous (measured) memory.
///
/// The parser's ops go into the file as they are produced (`parse(path:options:)`), and nothing
/// else keeps them: the parent holds the live set's tables and one chunk of ops, whatever the
/// trace's length. The header, which needs the counts, is written last.
public final class OpStreamFile: Sendable {
    let descriptor: FileDescriptor
    public let opCount: Int
    public let slotCount: Int

    private init(descriptor: FileDescriptor, facts: TraceFacts) {
        self.descriptor = descriptor
        opCount = facts.opCount
        slotCount = facts.slotCount
    }

    /// Parses the trace at `path` into a new op stream; returns the trace's facts beside it.
    public static func parse(path: String, options: TraceParser.Options) throws(InputError) -> (facts: TraceFacts, stream: OpStreamFile) {
        let descriptor: FileDescriptor
        do {
            descriptor = try FileDescriptor.memory(named: "allocbench-ops")
            // The header's page, zero until the counts are known.
            try descriptor.truncate(to: headerBytes)
        } catch {
            throw InputError.system(error)
        }
        var offset = headerBytes
        let facts = try TraceInput.parse(path: path, options: options) { ops throws(InputError) in
            do throws(SystemError) {
                try descriptor.writeAll(UnsafeRawBufferPointer(ops), at: offset)
            } catch {
                throw InputError.system(error)
            }
            offset += ops.count * MemoryLayout<ab_op>.stride
        }
        var header = ab_stream_header()
        header.magic = AB_STREAM_MAGIC
        header.version = AB_STREAM_VERSION
        header.header_bytes = AB_STREAM_HEADER_BYTES
        header.op_count = UInt64(facts.opCount)
        header.slot_count = UInt64(facts.slotCount)
        do {
            try withUnsafeBytes(of: &header) { bytes in Result { () throws(SystemError) in try descriptor.writeAll(bytes, at: 0) } }.get()
        } catch {
            throw InputError.system(error)
        }
        return (facts, OpStreamFile(descriptor: descriptor, facts: facts))
    }

    private static let headerBytes = Int(AB_STREAM_HEADER_BYTES)

    /// The same stream in a regular file, for a program outside allocbench that replays exactly
    /// what the children replay (the C reference loop of Benchmarks/ReplayLoop).
    public func copy(toFileAt path: String) throws(SystemError) {
        let file = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC)
        let size = try descriptor.size()
        var offset: off_t = 0
        while offset < off_t(size) {
            let count = try SystemCall.check("sendfile \(path)") { sendfile(file.rawValue, descriptor.rawValue, &offset, size - Int(offset)) }
            if count == 0 { throw SystemError("sendfile \(path): the op stream ended early", errno: EIO) }
        }
    }

    /// Calls `body` with every op in order, read a chunk at a time (the parent never maps the
    /// stream: its pages would count in its resident memory).
    func forEachOp(_ body: (ab_op) -> Void) throws(SystemError) {
        let chunkOps = 1 << 16
        let buffer = UnsafeMutableBufferPointer<ab_op>.allocate(capacity: chunkOps)
        defer { buffer.deallocate() }
        var done = 0
        while done < opCount {
            let wanted = min(chunkOps, opCount - done)
            let bytes = UnsafeMutableRawBufferPointer(start: buffer.baseAddress, count: wanted * MemoryLayout<ab_op>.stride)
            var filled = 0
            while filled < bytes.count {
                let count = try descriptor.read(into: UnsafeMutableRawBufferPointer(rebasing: bytes[filled...]),
                                                at: Self.headerBytes + done * MemoryLayout<ab_op>.stride + filled)
                guard count > 0 else { throw SystemError("pread", errno: EIO) }
                filled += count
            }
            for op in buffer[0..<wanted] { body(op) }
            done += wanted
        }
    }
}
