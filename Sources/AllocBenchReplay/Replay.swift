import AllocBenchCore
import CAllocBench

/// One entry of the child's slot table: the live block a trace pointer stands for.
@usableFromInline
struct Slot {
    @usableFromInline var block: UnsafeMutableRawPointer?
    @usableFromInline var byteCount: Int

    @usableFromInline
    init(block: UnsafeMutableRawPointer?, byteCount: Int) {
        self.block = block
        self.byteCount = byteCount
    }
}

/// Everything one replay needs, mapped and faulted in before the baseline.
@usableFromInline
struct ReplaySession {
    @usableFromInline let ops: UnsafeBufferPointer<ab_op>
    @usableFromInline let slots: UnsafeMutablePointer<Slot>
    @usableFromInline let control: UnsafeMutablePointer<ab_control>
    @usableFromInline let touch: TouchMode
    @usableFromInline let traced: Bool
    /// Ops between two sample marks (traced runs with --samples), or 0 for none.
    @usableFromInline let sampleInterval: Int
    /// Per-thread replay (`--threads per-thread`): every op on an OS thread of its recorded thread.
    /// nil: every op on this thread, in file order (`--threads serial`).
    @usableFromInline let threadPlan: UnsafeMutablePointer<ab_thread_plan>?
    /// The allocator's op executor for per-thread replay (`RegisteredAllocator.executeOp`).
    @usableFromInline let executeOp: ab_execute_op?

    init(ops: UnsafeBufferPointer<ab_op>, slots: UnsafeMutablePointer<Slot>,
         control: UnsafeMutablePointer<ab_control>, touch: TouchMode, traced: Bool, sampleInterval: Int,
         threadPlan: UnsafeMutablePointer<ab_thread_plan>?, executeOp: ab_execute_op? = nil) {
        self.executeOp = executeOp
        self.ops = ops
        self.slots = slots
        self.control = control
        self.touch = touch
        self.traced = traced
        self.sampleInterval = sampleInterval
        self.threadPlan = threadPlan
    }
}

/// Creates the allocator, replays every op, and records the outcome in the control block.
///
/// Between the begin and end marks nothing but the allocator allocates: the allocator lives on this
/// stack frame, the slot table and op stream were mapped before, and failures are recorded as
/// integers.
@inlinable
func replay<A: Allocator>(_: A.Type, _ session: ReplaySession) {
    ControlBlock.record(baselineStatistics: A.statisticsBeforeReplay(), in: session.control)
    var mallocBefore: UInt64 = 0
    let mallocCounted = !A.isProcessMalloc && ab_process_malloc_in_use(&mallocBefore) != 0
    // From here to the end the allocator's clock_gettime counts calls, not time (a lean child's:
    // docs/metrics.md, "The replay's clock").
    ab_replay_clock_start(session.control)
    let start: UInt64
    if session.traced {
        ab_mark(Int32(AB_MARK_BEGIN))
        start = 0
    } else {
        start = ab_monotonic_nanoseconds()
    }
    session.control.pointee.state = UInt32(AB_STATE_REPLAYING)

    var allocator = A()
    let failure = session.threadPlan.map { replayOnThreads(&allocator, session, plan: $0) } ?? replayOps(&allocator, session)
    // Recorded before anything else runs: an allocator that returned nil may keep returning nil,
    // and whatever calls malloc next (the statistics, the runtime on its way out) may crash on it.
    if failure != UInt32(AB_FAILURE_NONE) {
        session.control.pointee.failure = failure
        session.control.pointee.state = UInt32(AB_STATE_FAILED)
    }

    if session.traced {
        ab_mark(Int32(AB_MARK_END))
    } else {
        session.control.pointee.replay_nanoseconds = ab_monotonic_nanoseconds() - start
    }
    ab_replay_clock_stop(session.control)
    var mallocAfter: UInt64 = 0
    if mallocCounted && ab_process_malloc_in_use(&mallocAfter) != 0 {
        session.control.pointee.runtime_malloc_checked = 1
        session.control.pointee.runtime_malloc_delta = Int64(bitPattern: mallocAfter &- mallocBefore)
    }
    ControlBlock.record(statistics: allocator.statistics(), in: session.control)
    if failure == UInt32(AB_FAILURE_NONE) {
        session.control.pointee.state = UInt32(AB_STATE_DONE)
    }
}

/// The hot loop. Returns an AB_FAILURE_* code; `ops_completed` says how far it got.
@inlinable
func replayOps<A: Allocator>(_ allocator: inout A, _ session: ReplaySession) -> UInt32 {
    let slots = session.slots
    let touch = session.touch
    let progress = ab_control_progress(session.control)!
    var completed: UInt64 = 0
    // Untimed runs only: the compare is never true in a timed run and predicts perfectly.
    let sampleInterval = UInt64(session.traced ? session.sampleInterval : 0)
    var nextSample = sampleInterval > 0 ? sampleInterval : UInt64.max
    for op in session.ops {
        let failure = execute(op, &allocator, slots, touch)
        guard failure == UInt32(AB_FAILURE_NONE) else { return failure }
        completed &+= 1
        progress.pointee = completed
        if completed == nextSample {
            ab_mark(Int32(AB_MARK_SAMPLE))
            nextSample &+= sampleInterval
        }
    }
    return UInt32(AB_FAILURE_NONE)
}

/// The same ops, each on an OS thread of its recorded thread, one at a time in file order
/// (`ab_replay_on_threads`: the futex hand-over orders every op after the one before it, so an
/// allocator that is not thread-safe sees one op at a time too). The C scheduler calls
/// `executeOnThread` for each op through the registry's C function for `A` (a closure here
/// would be a heap object, allocated through the process malloc during the replay).
@inlinable
func replayOnThreads<A: Allocator>(_ allocator: inout A, _ session: ReplaySession, plan: UnsafeMutablePointer<ab_thread_plan>) -> UInt32 {
    guard let executeOp = session.executeOp else { return UInt32(AB_FAILURE_SETUP) }
    // A concurrent replay runs the ops rewritten to chains, with a slot per chain (ab_thread_plan).
    let concurrent = plan.pointee.concurrent != 0
    let ops = concurrent ? UnsafeBufferPointer(start: plan.pointee.chain_ops, count: session.ops.count) : session.ops
    let slots = concurrent ? plan.pointee.chain_slots.assumingMemoryBound(to: Slot.self) : session.slots
    let progress = ab_control_progress(session.control)!
    let sampleInterval = UInt64(session.traced ? session.sampleInterval : 0)
    return withUnsafeMutablePointer(to: &allocator) { allocator in
        // A concurrent replay's ops return out of order, on two CPUs: the C loop counts them, and
        // only in a traced run (one progress word written by every op would bounce between the
        // CPUs on every op of a timed one).
        var context = ThreadedReplayContext(
            allocator: allocator, ops: ops, slots: slots, touch: session.touch,
            progress: concurrent ? nil : progress, sampleInterval: sampleInterval)
        var completed: UInt64 = 0
        if concurrent {
            let failure = ab_replay_concurrently(plan, executeOp, &context, session.traced ? progress : nil, sampleInterval, &completed)
            progress.pointee = completed
            return failure
        }
        // Straight into the control block: its page was mapped and written before the baseline.
        let control = session.control
        return ab_replay_on_threads(plan, executeOp, &context, &completed, &control.pointee.hand_overs,
                                    &control.pointee.hand_over_nanoseconds)
    }
}

/// What `executeOnThread` needs, on the stack of the thread that starts the replay.
@usableFromInline
struct ThreadedReplayContext<A: Allocator> {
    @usableFromInline let allocator: UnsafeMutablePointer<A>
    @usableFromInline let ops: UnsafeBufferPointer<ab_op>
    @usableFromInline let slots: UnsafeMutablePointer<Slot>
    @usableFromInline let touch: TouchMode
    @usableFromInline let progress: UnsafeMutablePointer<UInt64>?  // nil: not written per op
    @usableFromInline let sampleInterval: UInt64

    @usableFromInline
    init(allocator: UnsafeMutablePointer<A>, ops: UnsafeBufferPointer<ab_op>, slots: UnsafeMutablePointer<Slot>, touch: TouchMode,
         progress: UnsafeMutablePointer<UInt64>?, sampleInterval: UInt64) {
        self.allocator = allocator
        self.ops = ops
        self.slots = slots
        self.touch = touch
        self.progress = progress
        self.sampleInterval = sampleInterval
    }
}

/// Op `index` of a per-thread replay of `A`, on the calling thread: the body of the C function
/// each registry gives its allocator (`RegisteredAllocator.executeOp`, generated with the registry).
@inlinable
public func executeOnThread<A: Allocator>(_: A.Type, _ context: UnsafeMutableRawPointer?, _ index: UInt64) -> UInt32 {
    let replay = context.unsafelyUnwrapped.assumingMemoryBound(to: ThreadedReplayContext<A>.self)
    let failure = execute(replay.pointee.ops[Int(index)], &replay.pointee.allocator.pointee, replay.pointee.slots, replay.pointee.touch)
    if failure == UInt32(AB_FAILURE_NONE), let progress = replay.pointee.progress {
        progress.pointee = index &+ 1
        let interval = replay.pointee.sampleInterval
        if interval > 0 && (index &+ 1) % interval == 0 { ab_mark(Int32(AB_MARK_SAMPLE)) }
    }
    return failure
}

/// One op: the allocator's call, the alignment check, the slot, the page touches.
@inlinable @inline(__always)
func execute<A: Allocator>(_ op: ab_op, _ allocator: inout A, _ slots: UnsafeMutablePointer<Slot>, _ touch: TouchMode) -> UInt32 {
    let alignment = 1 &<< Int(op.align_log2)
    let slot = slots + Int(op.slot)
    let byteCount = Int(truncatingIfNeeded: op.size)
    // Branches in the order of the C reference loop (Benchmarks/ReplayLoop/reference.c), not a
    // switch: a switch over the kind compiled to one indirect jump per op, whose target follows
    // the trace's mix of mallocs and frees.
    if op.kind == UInt8(AB_OP_FREE) {
        allocator.deallocate(slot.pointee.block.unsafelyUnwrapped, byteCount: slot.pointee.byteCount, alignment: alignment)
        slot.pointee.block = nil
        return UInt32(AB_FAILURE_NONE)
    }
    guard op.kind >= UInt8(AB_OP_MALLOC) && op.kind <= UInt8(AB_OP_REALLOC) else { return UInt32(AB_FAILURE_NONE) }
    let result: UnsafeMutableRawPointer?
    if op.kind == UInt8(AB_OP_CALLOC) {
        result = allocator.allocateZeroed(byteCount: byteCount, alignment: alignment)
    } else if op.kind == UInt8(AB_OP_REALLOC) {
        result = allocator.reallocate(slot.pointee.block.unsafelyUnwrapped, from: slot.pointee.byteCount,
                                      to: byteCount, alignment: alignment)
    } else {
        result = allocator.allocate(byteCount: byteCount, alignment: alignment)
    }
    guard let block = result else { return UInt32(AB_FAILURE_OUT_OF_MEMORY) }
    let required = guaranteedAlignment(requested: alignment, byteCount: byteCount)
    guard UInt(bitPattern: block) & UInt(required &- 1) == 0 else { return UInt32(AB_FAILURE_MISALIGNED) }
    slot.pointee = Slot(block: block, byteCount: byteCount)
    touchBlock(block, byteCount: byteCount, mode: touch)
    return UInt32(AB_FAILURE_NONE)
}

@inlinable @inline(__always)
func touchBlock(_ block: UnsafeMutableRawPointer, byteCount: Int, mode: TouchMode) {
    guard byteCount > 0 else { return }
    switch mode {
    case .none:
        return
    case .all:
        block.initializeMemory(as: UInt8.self, repeating: 0xA5, count: byteCount)
    case .pages:
        let pageSize = Page.size
        block.storeBytes(of: 0xA5, as: UInt8.self)
        let address = UInt(bitPattern: block)
        var page = (address | UInt(pageSize - 1)) &+ 1
        let end = address &+ UInt(byteCount)
        while page < end {
            UnsafeMutableRawPointer(bitPattern: page).unsafelyUnwrapped.storeBytes(of: 0xA5, as: UInt8.self)
            page &+= UInt(pageSize)
        }
        (block + (byteCount - 1)).storeBytes(of: 0xA5, as: UInt8.self)
    }
}

@usableFromInline
enum ControlBlock {
    /// Copies up to AB_MAX_STATISTICS statistics into the control block's fixed slots.
    @usableFromInline
    static func record(statistics: [AllocatorStatistic], in control: UnsafeMutablePointer<ab_control>) {
        control.pointee.statistic_count = UInt32(copy(statistics, into: &control.pointee.statistics))
    }

    @usableFromInline
    static func record(baselineStatistics: [AllocatorStatistic], in control: UnsafeMutablePointer<ab_control>) {
        control.pointee.baseline_statistic_count = UInt32(copy(baselineStatistics, into: &control.pointee.baseline_statistics))
    }

    /// Copies as many statistics as the fixed C array holds; returns how many.
    private static func copy<Storage>(_ statistics: [AllocatorStatistic], into storage: inout Storage) -> Int {
        withUnsafeMutableBytes(of: &storage) { raw in
            let slots = raw.bindMemory(to: ab_statistic.self)
            let count = min(statistics.count, slots.count)
            for index in 0..<count {
                slots[index].value = statistics[index].value
                copyCString(statistics[index].name, into: &slots[index].name)
            }
            return count
        }
    }
}

/// Copies `text` into a fixed C char array, truncating and always terminating it.
func copyCString<Storage>(_ text: String, into storage: inout Storage) {
    withUnsafeMutableBytes(of: &storage) { raw in
        let capacity = raw.count - 1
        var written = 0
        for byte in text.utf8 where written < capacity {
            raw[written] = byte
            written += 1
        }
        raw[written] = 0
    }
}
