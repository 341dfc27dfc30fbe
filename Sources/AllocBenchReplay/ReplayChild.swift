import AllocBenchCore
import CAllocBench
#if canImport(Glibc)
import Glibc
#endif

/// The replay child: a small executable whose `main` is `ReplayChild.main(registeredAllocators)`.
///
/// Usage (the harness spawns it; people rarely do):
///
///     allocbench-replay describe
///     allocbench-replay malloc-provider
///     allocbench-replay conformance NAME
///     allocbench-replay run NAME --touch none|pages|all --traced|--timed [--deadline-ms N] [--samples N]
///
/// `run` expects the op stream on descriptor 3, the control block on 4 and, when traced, the
/// go pipe on 5 (the harness maps them there), and ALLOCBENCH_PARENT set to the harness's pid, so
/// that the child dies with it.
public enum ReplayChild {
    public static let streamDescriptor: Int32 = 3
    public static let controlDescriptor: Int32 = 4
    public static let goDescriptor: Int32 = 5
    /// Stack that is faulted in before the baseline, so that allocator call chains do not count.
    public static let prefaultedStackBytes = 256 * 1024

    /// Exit codes of the child.
    public enum ExitCode: Int32 {
        case ok = 0
        case replayFailed = 3
        case conformanceFailed = 4
        case usage = 64
        case setupFailed = 71
    }

    public static func main(_ registry: [RegisteredAllocator]) -> Never {
        let arguments = CommandLine.arguments
        guard arguments.count >= 2 else { usage() }
        switch arguments[1] {
        case "describe":
            for entry in registry {
                let note = entry.buildNote() ?? ""
                print("\(entry.name)\t\(entry.isProcessMalloc ? "process-malloc" : "module")\t\(entry.summary)\t\(note)")
            }
            exit(ExitCode.ok.rawValue)
        case "malloc-provider":
            // Which file `malloc` resolves into here: how the harness verifies an LD_PRELOAD.
            var provider = [CChar](repeating: 0, count: 4096)
            ab_malloc_provider(&provider, provider.count)
            print(String(decoding: provider.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            exit(ExitCode.ok.rawValue)
        case "conformance" where arguments.count == 3:
            let entry = find(arguments[2], in: registry)
            let failures = entry.conformanceEntry()
            for failure in failures { printError("\(entry.name): \(failure)") }
            print("\(entry.name): \(failures.isEmpty ? "conformant" : "\(failures.count) failures")")
            exit(failures.isEmpty ? ExitCode.ok.rawValue : ExitCode.conformanceFailed.rawValue)
        case "run" where arguments.count >= 3:
            let entry = find(arguments[2], in: registry)
            let options = parseRunOptions(Array(arguments.dropFirst(3)))
            run(entry, options)
        default:
            usage()
        }
    }

    struct RunOptions {
        var touch = TouchMode.pages
        var traced = false
        var deadlineMilliseconds: UInt64 = 0
        var samples = 0
    }

    static func parseRunOptions(_ arguments: [String]) -> RunOptions {
        var options = RunOptions()
        var remaining = arguments[...]
        while let argument = remaining.popFirst() {
            switch argument {
            case "--traced": options.traced = true
            case "--timed": options.traced = false
            case "--touch":
                guard let value = remaining.popFirst(), let mode = TouchMode(rawValue: value) else { usage() }
                options.touch = mode
            case "--deadline-ms":
                guard let value = remaining.popFirst(), let milliseconds = UInt64(value) else { usage() }
                options.deadlineMilliseconds = milliseconds
            case "--samples":
                guard let value = remaining.popFirst(), let samples = Int(value), samples >= 0 else { usage() }
                options.samples = samples
            default:
                usage()
            }
        }
        return options
    }

    static func run(_ entry: RegisteredAllocator, _ options: RunOptions) -> Never {
        // A replay must not outlive the harness that measures it.
        guard let variable = getenv("ALLOCBENCH_PARENT"), let parent = Int32(String(cString: variable)),
              ab_die_with_parent(parent) == 0 else {
            setupFailure("the harness that started this replay is gone (or ALLOCBENCH_PARENT is not set)")
        }
        guard let controlAddress = mmap(nil, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, controlDescriptor, 0),
              controlAddress != MAP_FAILED else { setupFailure("cannot map the control block (descriptor 4)") }
        let control = controlAddress.assumingMemoryBound(to: ab_control.self)
        guard control.pointee.magic == AB_CONTROL_MAGIC else { setupFailure("descriptor 4 is not a control block") }

        var status = stat()
        guard fstat(streamDescriptor, &status) == 0, status.st_size >= Int(AB_STREAM_HEADER_BYTES) else {
            setupFailure("descriptor 3 is not an op stream", control)
        }
        guard let streamAddress = mmap(nil, Int(status.st_size), PROT_READ, MAP_SHARED | MAP_POPULATE, streamDescriptor, 0),
              streamAddress != MAP_FAILED else { setupFailure("cannot map the op stream", control) }
        let header = streamAddress.assumingMemoryBound(to: ab_stream_header.self).pointee
        guard header.magic == AB_STREAM_MAGIC, header.version == AB_STREAM_VERSION,
              Int(header.header_bytes) + Int(header.op_count) * MemoryLayout<ab_op>.stride <= Int(status.st_size)
        else { setupFailure("the op stream's header does not match this child", control) }
        let ops = UnsafeBufferPointer(
            start: (streamAddress + Int(header.header_bytes)).assumingMemoryBound(to: ab_op.self),
            count: Int(header.op_count))

        // The slot table is anonymous memory: fault every page in now so that the baseline holds it.
        let slotBytes = max(Int(header.slot_count), 1) * MemoryLayout<Slot>.stride
        guard let slotAddress = mmap(nil, slotBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              slotAddress != MAP_FAILED else { setupFailure("cannot map the slot table (\(slotBytes) bytes)", control) }
        slotAddress.initializeMemory(as: UInt8.self, repeating: 0, count: slotBytes)
        let slots = slotAddress.bindMemory(to: Slot.self, capacity: max(Int(header.slot_count), 1))

        var record = ab_child_record(
            stream_address: UInt64(UInt(bitPattern: streamAddress)), op_count: UInt64(ops.count),
            slot_table_address: UInt64(UInt(bitPattern: slotAddress)), slot_count: header.slot_count,
            control_address: UInt64(UInt(bitPattern: controlAddress)),
            touch_mode: UInt32(TouchMode.allCases.firstIndex(of: options.touch) ?? 0),
            traced: options.traced ? 1 : 0, reserved: (0, 0))
        ab_record_child_setup(&record)
        withUnsafeMutableBytes(of: &control.pointee.malloc_provider) { raw in
            ab_malloc_provider(raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
        }
        ab_prefault_stack(prefaultedStackBytes)

        if options.traced {
            var go: UInt8 = 0
            guard read(goDescriptor, &go, 1) == 1 else { setupFailure("the harness did not start the replay", control) }
            guard ab_install_mm_syscall_filter() == 0 else {
                setupFailure("cannot install the mm-syscall filter: \(String(cString: strerror(errno)))", control)
            }
        }
        if options.deadlineMilliseconds > 0 { _ = ab_arm_deadline(options.deadlineMilliseconds) }

        let sampleInterval = options.samples > 0 ? max(1, ops.count / options.samples) : 0
        entry.replayEntry(ReplaySession(ops: ops, slots: slots, control: control, touch: options.touch,
                                        traced: options.traced, sampleInterval: sampleInterval))

        _ = ab_arm_deadline(0)
        let succeeded = control.pointee.state == UInt32(AB_STATE_DONE)
        _exit(succeeded ? ExitCode.ok.rawValue : ExitCode.replayFailed.rawValue)
    }

    static func find(_ name: String, in registry: [RegisteredAllocator]) -> RegisteredAllocator {
        guard let entry = registry.first(where: { $0.name == name }) else {
            printError("allocbench-replay: no allocator named '\(name)' in this child (it has: \(registry.map(\.name).joined(separator: ", ")))")
            exit(ExitCode.usage.rawValue)
        }
        return entry
    }

    static func setupFailure(_ message: String, _ control: UnsafeMutablePointer<ab_control>? = nil) -> Never {
        if let control {
            control.pointee.failure = UInt32(AB_FAILURE_SETUP)
            control.pointee.state = UInt32(AB_STATE_FAILED)
        }
        printError("allocbench-replay: \(message)")
        _exit(ExitCode.setupFailed.rawValue)
    }

    static func usage() -> Never {
        printError("usage: allocbench-replay describe | malloc-provider | conformance NAME | run NAME [--touch none|pages|all] [--traced|--timed] [--deadline-ms N] [--samples N]")
        exit(ExitCode.usage.rawValue)
    }

    static func printError(_ message: String) {
        let line = message + "\n"
        _ = line.utf8.withContiguousStorageIfAvailable { bytes in write(2, bytes.baseAddress, bytes.count) }
    }
}
