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

    init(ops: UnsafeBufferPointer<ab_op>, slots: UnsafeMutablePointer<Slot>,
         control: UnsafeMutablePointer<ab_control>, touch: TouchMode, traced: Bool, sampleInterval: Int) {
        self.ops = ops
        self.slots = slots
        self.control = control
        self.touch = touch
        self.traced = traced
        self.sampleInterval = sampleInterval
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
    let start: UInt64
    if session.traced {
        ab_mark(Int32(AB_MARK_BEGIN))
        start = 0
    } else {
        start = ab_monotonic_nanoseconds()
    }
    session.control.pointee.state = UInt32(AB_STATE_REPLAYING)

    var allocator = A()
    let failure = replayOps(&allocator, session)
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
        let alignment = 1 &<< Int(op.align_log2)
        let slot = slots + Int(op.slot)
        let byteCount = Int(truncatingIfNeeded: op.size)
        switch Int(op.kind) {
        case AB_OP_FREE:
            allocator.deallocate(slot.pointee.block.unsafelyUnwrapped, byteCount: slot.pointee.byteCount, alignment: alignment)
            slot.pointee.block = nil
        case AB_OP_MALLOC, AB_OP_MEMALIGN, AB_OP_CALLOC, AB_OP_REALLOC:
            let result: UnsafeMutableRawPointer?
            switch Int(op.kind) {
            case AB_OP_CALLOC:
                result = allocator.allocateZeroed(byteCount: byteCount, alignment: alignment)
            case AB_OP_REALLOC:
                result = allocator.reallocate(slot.pointee.block.unsafelyUnwrapped, from: slot.pointee.byteCount,
                                              to: byteCount, alignment: alignment)
            default:
                result = allocator.allocate(byteCount: byteCount, alignment: alignment)
            }
            guard let block = result else { return UInt32(AB_FAILURE_OUT_OF_MEMORY) }
            let required = guaranteedAlignment(requested: alignment, byteCount: byteCount)
            guard UInt(bitPattern: block) & UInt(required &- 1) == 0 else { return UInt32(AB_FAILURE_MISALIGNED) }
            slot.pointee = Slot(block: block, byteCount: byteCount)
            touchBlock(block, byteCount: byteCount, mode: touch)
        default:
            break
        }
        completed &+= 1
        progress.pointee = completed
        if completed == nextSample {
            ab_mark(Int32(AB_MARK_SAMPLE))
            nextSample &+= sampleInterval
        }
    }
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
