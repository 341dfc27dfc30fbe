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
        // argv is read as C strings, never as `CommandLine.arguments`: that array copies every
        // argument, argv[0] (the child's path) included, into the heap before the baseline, so
        // glibc's heap layout — and, through it, the pages a trace costs — would depend on where
        // the package was cloned.
        let arguments = ChildArguments()
        guard arguments.count >= 2 else { usage() }
        if arguments.count == 2 && arguments.matches(1, "describe") {
            for entry in registry {
                let note = entry.buildNote() ?? ""
                print("\(entry.name)\t\(entry.isProcessMalloc ? "process-malloc" : "module")\t\(entry.summary)\t\(note)")
            }
            exit(ExitCode.ok.rawValue)
        } else if arguments.count == 2 && arguments.matches(1, "malloc-provider") {
            // Which file `malloc` resolves into here: how the harness verifies an LD_PRELOAD.
            var provider = [CChar](repeating: 0, count: 4096)
            ab_malloc_provider(&provider, provider.count)
            print(String(decoding: provider.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
            exit(ExitCode.ok.rawValue)
        } else if arguments.count == 3 && arguments.matches(1, "conformance") {
            let entry = find(arguments, 2, in: registry)
            let failures = entry.conformanceEntry()
            for failure in failures { printError("\(entry.name): \(failure)") }
            print("\(entry.name): \(failures.isEmpty ? "conformant" : "\(failures.count) failures")")
            exit(failures.isEmpty ? ExitCode.ok.rawValue : ExitCode.conformanceFailed.rawValue)
        } else if arguments.count >= 3 && arguments.matches(1, "run") {
            let entry = find(arguments, 2, in: registry)
            run(entry, parseRunOptions(arguments, from: 3))
        }
        usage()
    }

    struct RunOptions {
        var touch = TouchMode.pages
        var traced = false
        var deadlineMilliseconds: UInt64 = 0
        var samples = 0
    }

    /// Parses the options of `run` in place: nothing of argv is copied into the heap.
    static func parseRunOptions(_ arguments: ChildArguments, from first: Int) -> RunOptions {
        var options = RunOptions()
        var index = first
        func value() -> Int {
            index += 1
            guard index < arguments.count else { usage() }
            return index
        }
        while index < arguments.count {
            if arguments.matches(index, "--traced") {
                options.traced = true
            } else if arguments.matches(index, "--timed") {
                options.traced = false
            } else if arguments.matches(index, "--touch") {
                let modeIndex = value()
                guard let mode = TouchMode.allCases.first(where: { arguments.matches(modeIndex, $0.rawValue) }) else { usage() }
                options.touch = mode
            } else if arguments.matches(index, "--deadline-ms") {
                guard let milliseconds = arguments.unsignedInteger(value()) else { usage() }
                options.deadlineMilliseconds = milliseconds
            } else if arguments.matches(index, "--samples") {
                guard let samples = arguments.unsignedInteger(value()), samples <= UInt64(Int.max) else { usage() }
                options.samples = Int(samples)
            } else {
                usage()
            }
            index += 1
        }
        return options
    }

    static func run(_ entry: RegisteredAllocator, _ options: RunOptions) -> Never {
        // A replay must not outlive the harness that measures it.
        guard let variable = getenv("ALLOCBENCH_PARENT"), let parent = Int32(String(cString: variable)),
              ab_die_with_parent(parent) == 0 else {
            setupFailure("the harness that started this replay is gone (or ALLOCBENCH_PARENT is not set)")
        }
        guard sysconf(Int32(_SC_PAGESIZE)) == Page.size else {
            setupFailure("this kernel's pages are \(sysconf(Int32(_SC_PAGESIZE))) bytes; the replay children are built for \(Page.size)")
        }
        guard let controlAddress = mmap(nil, Int(AB_CONTROL_BLOCK_SIZE), PROT_READ | PROT_WRITE, MAP_SHARED, controlDescriptor, 0),
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

    static func find(_ arguments: ChildArguments, _ index: Int, in registry: [RegisteredAllocator]) -> RegisteredAllocator {
        guard let entry = registry.first(where: { arguments.matches(index, $0.name) }) else {
            let name = String(cString: arguments[index])
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

/// The child's argv as the C runtime passed it; reading it allocates nothing.
struct ChildArguments {
    let count = Int(CommandLine.argc)
    private let vector = CommandLine.unsafeArgv

    subscript(index: Int) -> UnsafeMutablePointer<CChar> { vector[index]! }

    /// Whether argument `index` is exactly `text` (a literal or a registry name, both small).
    func matches(_ index: Int, _ text: String) -> Bool {
        text.withCString { strcmp($0, self[index]) == 0 }
    }

    /// Argument `index` as a decimal number, or nil if it is anything else.
    func unsignedInteger(_ index: Int) -> UInt64? {
        let text = self[index]
        guard text.pointee >= 0x30, text.pointee <= 0x39 else { return nil }
        errno = 0
        var end: UnsafeMutablePointer<CChar>?
        let value = strtoull(text, &end, 10)
        guard errno == 0, let end, end.pointee == 0 else { return nil }
        return UInt64(value)
    }
}
