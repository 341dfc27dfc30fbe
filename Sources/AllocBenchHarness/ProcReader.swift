import AllocBenchModel
import CAllocBench
import Glibc

/// Reads /proc/PID/status and /proc/PID/stat through descriptors opened once, into a fixed buffer:
/// a read at every traced syscall must be cheap.
final class ProcReader {
    private let status: FileDescriptor
    private let stat: FileDescriptor
    private var smapsRollup: FileDescriptor?
    private let buffer: UnsafeMutableRawBufferPointer

    private let pid: pid_t

    init(pid: pid_t) throws(SystemError) {
        self.pid = pid
        status = try FileDescriptor.open("/proc/\(pid)/status", O_RDONLY)
        stat = try FileDescriptor.open("/proc/\(pid)/stat", O_RDONLY)
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8192, alignment: 16)
    }

    deinit { buffer.deallocate() }

    /// /proc/PID/status, and with `lazyFree` /proc/PID/smaps_rollup too: the kernel walks every
    /// mapping for that one, so it is read only where LazyFree can have moved.
    func sample(lazyFree: Bool = false) throws(SystemError) -> MemorySample {
        var sample = MemorySample()
        let count = try status.read(into: buffer, at: 0)
        ProcReader.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), into: &sample)
        if lazyFree {
            // Pages MADV_FREE queued on a CPU's batch are not lazily free yet: drain them first.
            _ = ab_drain_page_batches(pid)
            if smapsRollup == nil { smapsRollup = try FileDescriptor.open("/proc/\(pid)/smaps_rollup", O_RDONLY) }
            if let smapsRollup {
                let count = try smapsRollup.read(into: buffer, at: 0)
                ProcReader.parse(UnsafeRawBufferPointer(rebasing: buffer[0..<count]), into: &sample)
            }
        }
        return sample
    }

    /// /proc/PID/smaps, whole (it is generated as it is read, so it is read in one pass).
    func smaps() throws(SystemError) -> [Mapping] {
        let file = try FileDescriptor.open("/proc/\(pid)/smaps", O_RDONLY)
        var text: [UInt8] = []
        var offset = 0
        while true {
            let count = try file.read(into: buffer, at: offset)
            if count == 0 { break }
            text.append(contentsOf: buffer[0..<count])
            offset += count
        }
        return MemoryMap.parse(String(decoding: text, as: UTF8.self))
    }

    /// The executable the process runs (/proc/PID/exe).
    func executablePath() -> String {
        SystemFacts.executablePath(of: String(pid)) ?? ""
    }

    /// Field 10 of /proc/PID/stat: minor faults.
    func minorFaults() throws(SystemError) -> Int {
        let count = try stat.read(into: buffer, at: 0)
        return ProcReader.parseMinorFaults(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) ?? 0
    }

    /// The counters of /proc/PID/status or smaps_rollup text that a sample holds.
    static func parse(_ text: UnsafeRawBufferPointer, into sample: inout MemorySample) {
        var lineStart = 0
        while lineStart < text.count {
            var lineEnd = lineStart
            while lineEnd < text.count && text[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            let line = UnsafeRawBufferPointer(rebasing: text[lineStart..<lineEnd])
            if let value = field(line, "RssAnon:") { sample.rssAnonKilobytes = value }
            else if let value = field(line, "VmSize:") { sample.vmSizeKilobytes = value }
            else if let value = field(line, "VmPTE:") { sample.pageTablesKilobytes = value }
            else if let value = field(line, "RssFile:") { sample.rssFileKilobytes = value }
            else if let value = field(line, "VmStk:") { sample.stackKilobytes = value }
            else if let value = field(line, "LazyFree:") { sample.lazyFreeKilobytes = value }
            lineStart = lineEnd + 1
        }
    }

    private static func field(_ line: UnsafeRawBufferPointer, _ name: StaticString) -> Int? {
        let matches = name.withUTF8Buffer { prefix in
            line.count >= prefix.count && zip(prefix, line).allSatisfy { $0 == $1 }
        }
        guard matches else { return nil }
        var value = 0
        var sawDigit = false
        for byte in line.dropFirst(name.utf8CodeUnitCount) {
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
                sawDigit = true
            } else if sawDigit {
                break
            }
        }
        return sawDigit ? value : nil
    }

    static func parseMinorFaults(_ text: UnsafeRawBufferPointer) -> Int? {
        // The command name may contain spaces and parentheses; fields resume after the last ')'.
        guard let close = text.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        var field = 2
        var value = 0
        var index = close + 1
        while index < text.count {
            let byte = text[index]
            if byte == UInt8(ascii: " ") {
                if field == 10 { return value }
                field += 1
                value = 0
            } else if field == 10 {
                value = value * 10 + Int(byte &- UInt8(ascii: "0"))
            }
            index += 1
        }
        return nil
    }
}
