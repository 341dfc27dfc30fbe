import AllocBenchCore
import CAllocBench

/// The allocators of one replay child, offered one at a time to `offer` until it returns false: a
/// function rather than an array, so that a lean child keeps nothing of its own on the heap (an
/// array's storage would come from the process malloc, before the baseline).
public typealias AllocatorRegistry = (_ offer: (RegisteredAllocator) -> Bool) -> Void

/// The replay child: a small executable whose `main` is `ReplayChild.main(argc, argv, registry)`.
/// The same code runs in the Swift children (`allocbench-replay`: describe, conformance) and, as
/// Embedded Swift, in the lean children that measure every row (`Sources/LeanChild`): it imports
/// nothing but the C shim, and allocates nothing on the heap on its way to the end marker.
///
/// Usage (the harness spawns it; people rarely do):
///
///     allocbench-replay describe
///     allocbench-replay malloc-provider
///     allocbench-replay conformance NAME
///     allocbench-replay run NAME --touch none|pages|all --traced|--timed [--deadline-ms N] [--samples N] [--park]
///                            [--threads serial|per-thread|concurrent]
///
/// `run` expects the op stream on descriptor 3, the control block on 4 and, when traced or
/// parked, the go pipe on 5 (the harness maps them there), and ALLOCBENCH_PARENT set to the
/// harness's pid, so that the child dies with it. With `--park` (a fleet) the child blocks
/// reading the go pipe after its replay, holding its end state, until the harness closes it.
public enum ReplayChild {
    public static let streamDescriptor: Int32 = 3
    public static let controlDescriptor: Int32 = 4
    public static let goDescriptor: Int32 = 5

    /// Exit codes of the child.
    public enum ExitCode: Int32 {
        case ok = 0
        case replayFailed = 3
        case conformanceFailed = 4
        case usage = 64
        case setupFailed = 71
    }

    /// The child's entry: `argc` and `argv` as the C runtime passed them (argv is read as C
    /// strings, never as `CommandLine.arguments`: that array copies every argument, argv[0] — the
    /// child's path — included, into the heap before the baseline, so glibc's heap layout, and
    /// through it the pages a trace costs, would depend on where the package was cloned).
    public static func main(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>,
                            _ registry: AllocatorRegistry) -> Never {
        let arguments = ChildArguments(count: Int(argc), vector: argv)
        guard arguments.count >= 2 else { usage() }
        if arguments.count == 2 && arguments.matches(1, "describe") {
            // Fields: name, kind, summary, build note, and the file this child's malloc is in.
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: 4096) { provider in
                ab_malloc_provider(provider.baseAddress!, provider.count)
                registry { entry in
                    writeLine(entry.name, "\t", entry.isProcessMalloc ? "process-malloc" : "module", "\t", entry.summary, "\t",
                              entry.buildNote() ?? "", "\t", String(cString: provider.baseAddress!))
                    return true
                }
            }
            exit(ExitCode.ok.rawValue)
        } else if arguments.count == 2 && arguments.matches(1, "malloc-provider") {
            // Which file `malloc` resolves into here: how the harness verifies an LD_PRELOAD.
            withUnsafeTemporaryAllocation(of: CChar.self, capacity: 4096) { buffer in
                ab_malloc_provider(buffer.baseAddress!, buffer.count)
                _ = write(1, buffer.baseAddress, strlen(buffer.baseAddress!))
                _ = write(1, "\n", 1)
            }
            exit(ExitCode.ok.rawValue)
        } else if arguments.count == 3 && arguments.matches(1, "conformance") {
            #if hasFeature(Embedded)
            printError("this lean child has no conformance suite; allocbench-replay runs it")
            exit(ExitCode.usage.rawValue)
            #else
            let entry = find(arguments, 2, in: registry)
            let failures = entry.conformanceEntry()
            for failure in failures { writeLine(entry.name, ": ", failure, to: 2) }
            print("\(entry.name): \(failures.isEmpty ? "conformant" : "\(failures.count) failures")")
            exit(failures.isEmpty ? ExitCode.ok.rawValue : ExitCode.conformanceFailed.rawValue)
            #endif
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
        var park = false
        /// Every op on an OS thread of its recorded thread (`--threads per-thread`).
        var perThread = false
        /// Every recorded thread at once (`--threads concurrent`), for an allocator that is
        /// thread-safe; the others run per thread.
        var concurrent = false
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
            } else if arguments.matches(index, "--park") {
                options.park = true
            } else if arguments.matches(index, "--threads") {
                let modeIndex = value()
                if arguments.matches(modeIndex, "serial") { options.perThread = false }
                else if arguments.matches(modeIndex, "per-thread") { options.perThread = true }
                else if arguments.matches(modeIndex, "concurrent") { (options.perThread, options.concurrent) = (true, true) }
                else { usage() }
            } else if arguments.matches(index, "--touch") {
                let modeIndex = value()
                if arguments.matches(modeIndex, "none") { options.touch = .none }
                else if arguments.matches(modeIndex, "pages") { options.touch = .pages }
                else if arguments.matches(modeIndex, "all") { options.touch = .all }
                else { usage() }
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
        guard let variable = getenv("ALLOCBENCH_PARENT"), let parent = ChildArguments.unsignedInteger(variable),
              parent <= UInt64(Int32.max), ab_die_with_parent(pid_t(parent)) == 0 else {
            setupFailure("the harness that started this replay is gone (or ALLOCBENCH_PARENT is not set)")
        }
        guard getpagesize() == Page.size else {
            setupFailure("this kernel's page size is not the one the replay children are built for (AB_PAGE_SIZE)")
        }
        guard let controlAddress = mmap(nil, Int(AB_CONTROL_BLOCK_SIZE), PROT_READ | PROT_WRITE, MAP_SHARED, controlDescriptor, 0),
              controlAddress != ab_map_failed() else { setupFailure("cannot map the control block (descriptor 4)") }
        let control = controlAddress.assumingMemoryBound(to: ab_control.self)
        guard control.pointee.magic == AB_CONTROL_MAGIC else { setupFailure("descriptor 4 is not a control block") }

        // lseek rather than fstat: `struct stat` is laid out by the C library's headers, and the
        // lean children are Swift compiled against glibc's headers but linked with musl.
        let streamBytes = Int(lseek(streamDescriptor, 0, SEEK_END))
        guard streamBytes >= Int(AB_STREAM_HEADER_BYTES) else {
            setupFailure("descriptor 3 is not an op stream", control)
        }
        guard let streamAddress = mmap(nil, streamBytes, PROT_READ, MAP_SHARED | MAP_POPULATE, streamDescriptor, 0),
              streamAddress != ab_map_failed() else { setupFailure("cannot map the op stream", control) }
        let header = streamAddress.assumingMemoryBound(to: ab_stream_header.self).pointee
        guard header.magic == AB_STREAM_MAGIC, header.version == AB_STREAM_VERSION,
              Int(header.header_bytes) + Int(header.op_count) * MemoryLayout<ab_op>.stride <= streamBytes
        else { setupFailure("the op stream's header does not match this child", control) }
        let ops = UnsafeBufferPointer(
            start: (streamAddress + Int(header.header_bytes)).assumingMemoryBound(to: ab_op.self),
            count: Int(header.op_count))

        // The slot table: the replay's pointers, as a program keeps its own in locals and arrays.
        // A small one is on this stack frame, like the seed program's five pointers; a larger one
        // is anonymous memory, every page faulted in now so that the baseline holds it.
        let slotCount = max(Int(header.slot_count), 1)
        let slotBytes = slotCount * MemoryLayout<Slot>.stride
        if slotBytes <= stackSlotTableBytes {
            withUnsafeTemporaryAllocation(of: Slot.self, capacity: slotCount) { slots in
                slots.initialize(repeating: Slot(block: nil, byteCount: 0))
                replay(entry, options, control: control, ops: ops, slots: slots.baseAddress!, slotCount: slotCount, streamAddress: streamAddress)
            }
        }
        guard let slotAddress = mmap(nil, slotBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              slotAddress != ab_map_failed() else { setupFailure("cannot map the slot table", control) }
        slotAddress.initializeMemory(as: UInt8.self, repeating: 0, count: slotBytes)
        replay(entry, options, control: control, ops: ops, slots: slotAddress.bindMemory(to: Slot.self, capacity: slotCount),
               slotCount: slotCount, streamAddress: streamAddress)
    }

    /// The largest slot table kept on the stack: 64 live blocks, 1 KiB.
    static let stackSlotTableBytes = 1024

    static func replay(_ entry: RegisteredAllocator, _ options: RunOptions, control: UnsafeMutablePointer<ab_control>,
                       ops: UnsafeBufferPointer<ab_op>, slots: UnsafeMutablePointer<Slot>, slotCount: Int,
                       streamAddress: UnsafeRawPointer) -> Never {
        var record = ab_child_record(
            stream_address: UInt64(UInt(bitPattern: streamAddress)), op_count: UInt64(ops.count),
            slot_table_address: UInt64(UInt(bitPattern: slots)), slot_count: UInt64(slotCount),
            control_address: UInt64(UInt(bitPattern: control)),
            touch_mode: options.touch.ordinal,
            traced: options.traced ? 1 : 0, reserved: (0, 0))
        ab_record_child_setup(&record)
        withUnsafeMutableBytes(of: &control.pointee.malloc_provider) { raw in
            ab_malloc_provider(raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
        }

        if options.traced {
            var go: UInt8 = 0
            guard read(goDescriptor, &go, 1) == 1 else { setupFailure("the harness did not start the replay", control) }
            // A child traced from its exec runs under the filter already (ab_spawn_options).
            guard ab_mm_syscall_filter_installed() != 0 || ab_install_mm_syscall_filter() == 0 else {
                setupFailure("cannot install the mm-syscall filter", control)
            }
        }
        // The thread plan and the threads' stacks are mapped and written now, before the baseline.
        var plan = ab_thread_plan()
        if options.perThread && entry.executeOp == nil {
            setupFailure("this child replays its allocators on one thread only (its registry gives no executeOp)", control)
        }
        let concurrent = options.concurrent && entry.isThreadSafe
        if concurrent {
            guard ab_thread_plan_prepare_concurrent(&plan, ops.baseAddress, UInt64(ops.count), UInt64(slotCount)) == 0 else {
                setupFailure(ab_errno() == E2BIG ? "a concurrent replay runs at most 4096 recorded threads (AB_CONCURRENT_THREADS_MAX)"
                                                 : "cannot map the concurrent replay's plan or start its threads", control)
            }
        } else if options.perThread && ab_thread_plan_prepare(&plan, ops.baseAddress, UInt64(ops.count)) != 0 {
            setupFailure("cannot map the per-thread replay's plan and stacks", control)
        }
        control.pointee.replay_threads = UInt32(concurrent ? AB_REPLAY_CONCURRENT : options.perThread ? AB_REPLAY_PER_THREAD : AB_REPLAY_SERIAL)
        if options.deadlineMilliseconds > 0 { _ = ab_arm_deadline(options.deadlineMilliseconds) }

        let sampleInterval = options.samples > 0 ? max(1, ops.count / options.samples) : 0
        withUnsafeMutablePointer(to: &plan) { plan in
            entry.replayEntry(ReplaySession(ops: ops, slots: slots, control: control, touch: options.touch,
                                            traced: options.traced, sampleInterval: sampleInterval,
                                            threadPlan: options.perThread ? plan : nil, executeOp: entry.executeOp))
        }

        _ = ab_arm_deadline(0)
        let succeeded = control.pointee.state == UInt32(AB_STATE_DONE)
        if options.park {
            // A fleet member: hold the end state, blocked, until the harness closes the pipe.
            var byte: UInt8 = 0
            while read(goDescriptor, &byte, 1) > 0 {}
        }
        _exit(succeeded ? ExitCode.ok.rawValue : ExitCode.replayFailed.rawValue)
    }

    static func find(_ arguments: ChildArguments, _ index: Int, in registry: AllocatorRegistry) -> RegisteredAllocator {
        var found: RegisteredAllocator?
        registry { entry in
            if arguments.matches(index, entry.name) { found = entry }
            return found == nil
        }
        guard let found else {
            writeLine("allocbench-replay: no allocator named '", String(cString: arguments[index]), "' in this child (`describe` lists them)",
                      to: 2)
            exit(ExitCode.usage.rawValue)
        }
        return found
    }

    static func setupFailure(_ message: StaticString, _ control: UnsafeMutablePointer<ab_control>? = nil) -> Never {
        if let control {
            control.pointee.failure = UInt32(AB_FAILURE_SETUP)
            control.pointee.state = UInt32(AB_STATE_FAILED)
        }
        printError(message)
        _exit(ExitCode.setupFailed.rawValue)
    }

    static func usage() -> Never {
        printError("usage: allocbench-replay describe | malloc-provider | conformance NAME | run NAME [--touch none|pages|all] [--traced|--timed] [--deadline-ms N] [--samples N] [--park] [--threads serial|per-thread|concurrent]")
        exit(ExitCode.usage.rawValue)
    }

    /// A fixed message on stderr with write(2): nothing allocated, nothing buffered.
    static func printError(_ message: StaticString) {
        _ = write(2, "allocbench-replay: ", 19)
        _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
        _ = write(2, "\n", 1)
    }

    /// Strings written one after another, then a newline, with write(2) on `descriptor`.
    static func writeLine(_ parts: String..., to descriptor: Int32 = 1) {
        for var part in parts + ["\n"] {
            part.withUTF8 { bytes in _ = write(descriptor, bytes.baseAddress, bytes.count) }
        }
    }
}

/// The child's argv as the C runtime passed it; reading it allocates nothing.
struct ChildArguments {
    let count: Int
    let vector: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>

    subscript(index: Int) -> UnsafeMutablePointer<CChar> { vector[index]! }

    /// Whether argument `index` is exactly `text` (a literal or a registry name, both small).
    func matches(_ index: Int, _ text: String) -> Bool {
        var text = text
        return text.withUTF8 { bytes in
            strlen(self[index]) == bytes.count && (bytes.isEmpty || memcmp(bytes.baseAddress!, self[index], bytes.count) == 0)
        }
    }

    /// Argument `index` as a decimal number, or nil if it is anything else.
    func unsignedInteger(_ index: Int) -> UInt64? {
        Self.unsignedInteger(self[index])
    }

    /// A C string as a decimal number, or nil if it is anything else.
    static func unsignedInteger(_ text: UnsafePointer<CChar>) -> UInt64? {
        guard text.pointee >= 0x30, text.pointee <= 0x39 else { return nil }
        ab_set_errno(0)
        var end: UnsafeMutablePointer<CChar>?
        let value = strtoull(text, &end, 10)
        guard ab_errno() == 0, let end, end.pointee == 0 else { return nil }
        return UInt64(value)
    }
}
