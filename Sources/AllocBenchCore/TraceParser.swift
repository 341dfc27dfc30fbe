import CAllocBench
#if canImport(Glibc)
import Glibc
#endif

/// A malformed or inconsistent trace line. `description` is `LINE: what is wrong`; the caller
/// prefixes the file name. Line 0 means the whole trace (e.g. it holds no allocation).
public struct TraceError: Error, Sendable, Equatable, CustomStringConvertible {
    public var line: Int
    public var message: String

    public init(line: Int, message: String) {
        self.line = line
        self.message = message
    }

    public var description: String { "\(line): \(message)" }
}

/// What a lenient parse skipped: the anomalies that multi-threaded recordings contain because
/// their lines from different threads interleave out of order.
public struct TraceAnomalies: Sendable, Equatable {
    /// `free` of a pointer that is not live (skipped).
    public var freesOfUnknownPointers = 0
    /// `realloc` whose old pointer is not live (replayed as a fresh allocation).
    public var reallocsOfUnknownPointers = 0
    /// An allocation returning a pointer that is already live (skipped).
    public var pointersReturnedWhileLive = 0

    public init() {}

    public var total: Int { freesOfUnknownPointers + reallocsOfUnknownPointers + pointersReturnedWhileLive }
}

/// How a trace's threads overlap and share blocks, counted by the parser on the way.
public struct ThreadStatistics: Sendable, Equatable {
    /// The most thread lifetimes alive at once. A lifetime runs from a thread id's first line to its
    /// `thread_done`, or to its last line when it has none; a line of the same id after its
    /// `thread_done` starts a new lifetime (the kernel reuses thread ids).
    public var peakAlive = 0
    /// Frees on another thread than the one that allocated (or last reallocated) the block. Threads
    /// are told apart by id here: a block freed by a later thread that reuses its allocator's id
    /// does not count.
    public var crossThreadFrees = 0
    /// The bytes those frees released.
    public var crossThreadFreedBytes: UInt64 = 0
    /// Reallocs on another thread than the one that allocated (or last reallocated) the block; the
    /// realloc's thread owns the block from then on.
    public var crossThreadReallocs = 0
    /// The sizes the blocks had before those reallocs.
    public var crossThreadReallocatedBytes: UInt64 = 0

    public init() {}
}

/// What the parser learned about a trace besides its ops: everything allocbench keeps of it once
/// the ops are in the op stream.
public struct TraceFacts: Sendable {
    public var opCount = 0
    /// The most blocks live at once: the size of a child's slot table.
    public var slotCount = 0
    /// The largest sum of requested bytes live at once: the ideal's numerator.
    public var peakLiveBytes: UInt64 = 0
    public var finalLiveBytes: UInt64 = 0
    /// Thread ids in first-seen order; `ab_op.thread` indexes this.
    public var threadIDs: [UInt32] = []
    public var lineCount = 0
    public var anomalies = TraceAnomalies()
    /// Allocations recorded as failed (a null result), which replay cannot reproduce.
    public var failedAllocationsSkipped = 0
    public var threadsDone = 0
    public var threads = ThreadStatistics()

    public init() {}

    /// ceil(peak live bytes / page size).
    public func idealPages(pageSize: Int) -> Int {
        Int((peakLiveBytes + UInt64(pageSize) - 1) / UInt64(pageSize))
    }
}

/// A trace parsed in memory, its op stream included: for tests, the benchmark and the fuzzer.
/// allocbench itself hands the ops to the op-stream file as they are produced (`TraceParser.drainOps`)
/// and keeps only the facts. The facts read as the trace's own properties (`trace.slotCount`).
@dynamicMemberLookup
public struct ParsedTrace: Sendable {
    public var facts: TraceFacts
    public var ops: [ab_op]

    public init(facts: TraceFacts, ops: [ab_op]) {
        self.facts = facts
        self.ops = ops
    }

    public subscript<Value>(dynamicMember keyPath: KeyPath<TraceFacts, Value>) -> Value {
        facts[keyPath: keyPath]
    }
}

/// Parses Android malloc_debug `record_allocs` text (see docs/trace-format.md) into an op stream.
///
/// Works on bytes: one pass, no `String` per line, and a pointer table with open addressing.
public struct TraceParser: ~Copyable {
    public struct Options: Sendable {
        public var lenient: Bool
        public init(lenient: Bool = false) { self.lenient = lenient }
    }

    private var facts = TraceFacts()
    private var live: LiveSet
    private var opStream = OpStreamRecorder()
    private var lifetimes = ThreadLifetimes()
    /// Recently seen threads, direct-mapped by the tid's low bits: `tid << 32 | (index + 1)`, or 0
    /// when empty. Recordings interleave hundreds of threads, and hashing every line's tid into the
    /// dictionary costs more than parsing its pointer.
    private var recentThreads = InlineArray<64, UInt64>(repeating: 0)
    private var threadIndexByTid: [UInt32: UInt32] = [:]
    private var line = 0
    /// The bytes of a line that the last chunk ended inside of (at most `maximumLineLength`).
    private let pending: UnsafeMutablePointer<UInt8>
    private var pendingCount = 0
    /// The lines `parseAll` has read ahead, a ring of `lookaheadDepth`.
    private let lookahead: UnsafeMutablePointer<ReadLine>

    /// The longest line a trace may have. record_allocs writes at most about 120 bytes a line (a
    /// realloc with its two timestamps); a longer one is not a trace, and refusing it at once
    /// keeps a file of zeros or a binary from being read whole before its first line fails.
    public static let maximumLineLength = 4096

    /// A parser fed in chunks (`feed`, then `finish`). The ops it produces wait in a buffer until
    /// `drainOps` hands them over, or `takeOps` returns them all.
    public init(options: Options = Options()) {
        live = LiveSet(lenient: options.lenient)
        pending = .allocate(capacity: Self.maximumLineLength)
        lookahead = .allocate(capacity: Self.lookaheadDepth)
    }

    deinit {
        pending.deallocate()
        lookahead.deallocate()
    }

    /// Bytes the parser holds: the ops not yet drained and the live set's tables. Each grows by
    /// doubling, and a growth holds the old and the new at once: a caller with a memory limit
    /// checks that twice this still fits before feeding more (Swift ends a process whose
    /// allocation fails).
    public var reservedBytes: Int {
        opStream.reservedBytes + live.reservedBytes + lifetimes.reservedBytes + Self.maximumLineLength
    }

    /// Parses a whole trace held in memory.
    public static func parse(_ bytes: UnsafeRawBufferPointer, options: Options = Options()) throws(TraceError) -> ParsedTrace {
        var parser = TraceParser(options: options)
        parser.opStream.ops.reserveCapacity(min(bytes.count, 1 << 30) / 24)
        try parser.feed(bytes)
        let facts = try parser.finish()
        return ParsedTrace(facts: facts, ops: parser.takeOps())
    }

    /// Hands the ops produced since the last drain to `body`, then forgets them: a caller that
    /// drains after every chunk holds one chunk's ops at a time.
    public mutating func drainOps<Failure: Error>(_ body: (UnsafeBufferPointer<ab_op>) throws(Failure) -> Void) throws(Failure) {
        try opStream.ops.withUnsafeBufferPointer { ops throws(Failure) in try body(ops) }
        opStream.ops.removeAll(keepingCapacity: true)
    }

    /// The ops produced since the last drain.
    public mutating func takeOps() -> [ab_op] {
        defer { opStream.ops = [] }
        return opStream.ops
    }

    /// Parses every line `chunk` completes; the bytes after its last line break wait for the next
    /// chunk (or `finish`). Chunks may split a line anywhere, so a trace read in pieces parses
    /// exactly as it would whole.
    public mutating func feed(_ chunk: UnsafeRawBufferPointer) throws(TraceError) {
        let bytes = chunk.bindMemory(to: UInt8.self)
        var start = 0
        if pendingCount > 0 {
            guard let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) else {
                try keepPending(bytes[...])
                return
            }
            try keepPending(bytes[..<newline])
            try parsePending()
            start = newline + 1
        }
        // Everything up to the chunk's last line break is whole lines; the rest waits.
        var last = bytes.count
        while last > start && bytes[last - 1] != UInt8(ascii: "\n") { last -= 1 }
        if last > start {
            try parseAll(UnsafeRawBufferPointer(rebasing: chunk[start..<last]))
        }
        try keepPending(bytes[last...])
    }

    private mutating func keepPending(_ bytes: Slice<UnsafeBufferPointer<UInt8>>) throws(TraceError) {
        guard !bytes.isEmpty else { return }
        guard pendingCount + bytes.count <= Self.maximumLineLength else {
            throw TraceError(line: line + 1, message: "a line longer than \(Self.maximumLineLength) bytes: not a record_allocs trace")
        }
        (pending + pendingCount).update(from: bytes.base.baseAddress! + bytes.startIndex, count: bytes.count)
        pendingCount += bytes.count
    }

    private mutating func parsePending() throws(TraceError) {
        let count = pendingCount
        pendingCount = 0
        try parseAll(UnsafeRawBufferPointer(start: pending, count: count))
    }

    /// Parses a trace held in a byte array (tests, small inputs).
    public static func parse(_ bytes: [UInt8], options: Options = Options()) throws(TraceError) -> ParsedTrace {
        var outcome: Result<ParsedTrace, TraceError> = .success(ParsedTrace(facts: TraceFacts(), ops: []))
        bytes.withUnsafeBytes { buffer in
            do throws(TraceError) {
                outcome = .success(try parse(buffer, options: options))
            } catch {
                outcome = .failure(error)
            }
        }
        return try outcome.get()
    }

    /// Parses the last line if it had no line break, and returns the trace's facts. The ops of
    /// that line wait to be drained like any other.
    public mutating func finish() throws(TraceError) -> TraceFacts {
        if pendingCount > 0 { try parsePending() }
        if opStream.opCount == 0 {
            throw TraceError(line: 0, message: "no allocation to replay: none of its \(line) line\(line == 1 ? "" : "s") is a malloc, calloc, memalign or realloc")
        }
        facts.opCount = opStream.opCount
        facts.slotCount = live.slotCount
        facts.peakLiveBytes = live.peakLiveBytes
        facts.finalLiveBytes = live.liveBytes
        facts.anomalies = live.anomalies
        facts.failedAllocationsSkipped = live.failedAllocationsSkipped
        facts.lineCount = line
        facts.threads = live.threadStatistics
        facts.threads.peakAlive = lifetimes.peakAlive()
        return facts
    }

    // MARK: - Lines

    /// A line read and not yet applied.
    private struct ReadLine {
        var operation: TraceOperation
        var line: Int
    }

    /// How many lines are read ahead of the one applied: enough that the prefetch of a line's
    /// table bucket has arrived by the time the line is applied.
    private static let lookaheadDepth = 16

    /// Reads each line, prefetches the table buckets it will need, and applies it `lookaheadDepth`
    /// lines later, in order. Errors stay in line order: a line that cannot be read is reported
    /// only after the lines before it are applied, since one of those may fail first.
    private mutating func parseAll(_ bytes: UnsafeRawBufferPointer) throws(TraceError) {
        let mask = Self.lookaheadDepth - 1
        var read = 0
        var applied = 0
        try ByteCursor.forEachLine(in: bytes) { text throws(TraceError) in
            line += 1
            let operation: TraceOperation?
            do throws(TraceError) {
                guard text.end - text.position <= Self.maximumLineLength else {
                    throw TraceError(line: line, message: "a line longer than \(Self.maximumLineLength) bytes: not a record_allocs trace")
                }
                operation = try TraceOperation(reading: text, lineNumber: line)
            } catch {
                while applied < read {
                    try apply(lookahead[applied & mask])
                    applied += 1
                }
                throw error
            }
            guard let operation else { return }
            live.prefetch(for: operation)
            if read - applied == Self.lookaheadDepth {
                // Halfway through the lookahead, the bucket has arrived: the slot record next.
                live.prefetchSlotRecord(for: lookahead[(applied + Self.lookaheadDepth / 2) & mask].operation)
                try apply(lookahead[applied & mask])
                applied += 1
            }
            lookahead[read & mask] = ReadLine(operation: operation, line: line)
            read += 1
        }
        while applied < read {
            try apply(lookahead[applied & mask])
            applied += 1
        }
    }

    @inline(__always)
    private mutating func apply(_ read: ReadLine) throws(TraceError) {
        let operation = read.operation
        let thread = threadIndex(operation.tid)
        opStream.thread = thread
        try live.apply(operation, line: read.line, observer: &opStream)
        if operation.action == .threadDone {
            facts.threadsDone += 1
            lifetimes.ended(thread: thread, line: read.line)
        } else {
            lifetimes.saw(thread: thread, line: read.line)
        }
    }

    /// The thread's dense index: the order in which its id first appeared. A trace has at most
    /// 2^32 thread ids, so the index always fits `ab_op.thread`.
    @inline(__always)
    private mutating func threadIndex(_ tid: UInt32) -> UInt32 {
        let way = Int(tid & 63)
        let recent = recentThreads[way]
        if recent >> 32 == UInt64(tid) && UInt32(truncatingIfNeeded: recent) != 0 {
            return UInt32(truncatingIfNeeded: recent) - 1
        }
        let index: UInt32
        if let known = threadIndexByTid[tid] {
            index = known
        } else {
            index = UInt32(facts.threadIDs.count)
            threadIndexByTid[tid] = index
            facts.threadIDs.append(tid)
        }
        // The 2^32nd thread id's index + 1 wraps to 0, "empty": it is looked up every time instead.
        recentThreads[way] = UInt64(tid) << 32 | UInt64(index &+ 1)
        return index
    }
}

/// When each thread lived, for the most threads alive at once (`ThreadStatistics.peakAlive`).
private struct ThreadLifetimes: ~Copyable {
    struct Current {
        /// The line the thread's current lifetime began at, or 0 when it has none (it ended with
        /// `thread_done` and has not appeared since).
        var start: Int
        /// Its latest line.
        var last: Int
    }

    /// By thread index; every line writes its thread's, so a raw column rather than an array.
    private var current = SlotColumn<Current>()
    private var threadCount = 0
    /// Lifetimes that ended with `thread_done`: first line, last line.
    private var ended: [(start: Int, end: Int)] = []

    var reservedBytes: Int { current.reservedBytes + ended.capacity * 16 }

    /// A line of `thread` other than its `thread_done`; threads appear in index order.
    @inline(__always)
    mutating func saw(thread: UInt32, line: Int) {
        if Int(thread) == threadCount {
            threadCount += 1
            current[thread] = Current(start: line, last: line)
            return
        }
        let start = current[thread].start
        current[thread] = Current(start: start == 0 ? line : start, last: line)
    }

    /// `thread`'s `thread_done`, at `line`: its lifetime ends there.
    mutating func ended(thread: UInt32, line: Int) {
        saw(thread: thread, line: line)
        ended.append((current[thread].start, line))
        current[thread].start = 0
    }

    /// The most lifetimes that share a line: lifetimes are whole lines [start, end], and two
    /// lifetimes never start or end on the same line, so a sweep over the sorted starts and ends
    /// counts them.
    func peakAlive() -> Int {
        var starts = ended.map(\.start)
        var ends = ended.map(\.end)
        for thread in 0..<threadCount where current[UInt32(thread)].start != 0 {
            starts.append(current[UInt32(thread)].start)
            ends.append(current[UInt32(thread)].last)
        }
        starts.sort()
        ends.sort()
        var alive = 0
        var peak = 0
        var endIndex = 0
        for begin in starts {
            while endIndex < ends.count && ends[endIndex] < begin {
                alive -= 1
                endIndex += 1
            }
            alive += 1
            peak = max(peak, alive)
        }
        return peak
    }
}

/// The op stream replay children map: one op per change of the live set, on the line's thread.
private struct OpStreamRecorder: LiveSetObserver {
    var ops: [ab_op] = []
    /// Ops produced, drained or not.
    private(set) var opCount = 0
    /// The thread index of the line being applied.
    var thread: UInt32 = 0

    var reservedBytes: Int { ops.capacity * MemoryLayout<ab_op>.stride }

    @inline(__always)
    mutating func allocated(_ block: LiveBlock, kind: AllocationKind) {
        let opKind = switch kind {
        case .malloc: AB_OP_MALLOC
        case .calloc: AB_OP_CALLOC
        case .memalign: AB_OP_MEMALIGN
        }
        append(block, kind: opKind)
    }

    @inline(__always)
    mutating func freed(_ block: LiveBlock) {
        append(block, kind: AB_OP_FREE)
    }

    @inline(__always)
    mutating func reallocated(_ block: LiveBlock, oldSize: UInt64) {
        append(block, kind: AB_OP_REALLOC)
    }

    @inline(__always)
    private mutating func append(_ block: LiveBlock, kind: Int) {
        ops.append(ab_op(slot: block.slot, thread: thread, kind: UInt8(kind), align_log2: block.alignLog2, size: block.size))
        opCount += 1
    }
}

/// How record_allocs text writes a pointer, and error messages quote one: `0x` and lowercase hex
/// digits, what `ByteCursor.hexPointer()` reads.
public func hexPointerText(_ pointer: UInt64) -> String { "0x" + String(pointer, radix: 16) }

/// Bytes for a one-line error message: control bytes and non-ASCII shown as \xNN, cut at `limit`.
private func printable(_ bytes: UnsafeBufferPointer<UInt8>, limit: Int) -> String {
    var text = ""
    for byte in bytes.prefix(limit) {
        if byte >= 0x20 && byte < 0x7F {
            text.unicodeScalars.append(Unicode.Scalar(byte))
        } else {
            text += "\\x" + (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }
    }
    return bytes.count > limit ? text + "…" : text
}

// MARK: - Operations

/// What one line of record_allocs text says a thread did. The parser reads every line through
/// this, and so does the recorder's fork bookkeeping: one reading of the format.
public struct TraceOperation: Sendable {
    public var tid: UInt32
    public var action: TraceAction
    /// The pointers, sizes and alignment in the line's order, 0 past the action's last; the
    /// timestamps are checked and dropped.
    public var fields: (UInt64, UInt64, UInt64)

    /// Reads `line`, its line break excluded; nil when it is blank or a comment. `lineNumber` is
    /// the error's.
    @inline(__always)
    public init?(reading line: ByteCursor, lineNumber: Int) throws(TraceError) {
        func fail(_ message: String) -> TraceError { TraceError(line: lineNumber, message: message) }
        let start = line.position
        var cursor = line
        cursor.skipBlanks()
        if cursor.atEnd || cursor.peek == UInt8(ascii: "#") { return nil }

        guard let tidValue = cursor.decimal(), tidValue <= UInt64(UInt32.max) else {
            throw fail("expected '<tid>: <action> <pointer> ...', found '\(cursor.lineText(from: start))'")
        }
        guard cursor.consume(UInt8(ascii: ":")) else {
            throw fail("expected ':' after thread id \(tidValue)")
        }
        cursor.skipBlanks()
        let action = cursor.word()
        guard let kind = TraceAction(action) else {
            if action.isEmpty { throw fail("missing action after thread id \(tidValue)") }
            throw fail("unknown action '\(printable(action, limit: 40))'")
        }
        // Three named values, not an array or a tuple written through its bytes: those live on the
        // stack, and reading back what was just stored there stalled the parser.
        var first: UInt64 = 0, second: UInt64 = 0, third: UInt64 = 0
        var count = 0
        while true {
            cursor.skipBlanks()
            if cursor.atEnd { break }
            if count == 6 { throw fail("too many fields for \(kind.name)") }
            // The pointer fields are hex; sizes, alignments and timestamps are decimal.
            let value: UInt64?
            if count < kind.hexFieldCount {
                value = cursor.hexPointer()
            } else {
                value = cursor.decimal()
            }
            guard let value, cursor.atEnd || cursor.atBlank else {
                let what = count < kind.hexFieldCount ? "a 0x pointer" : "a decimal number"
                throw fail("\(kind.name): field \(count + 1) is not \(what): '\(cursor.lineText(from: start))'")
            }
            switch count {
            case 0: first = value
            case 1: second = value
            case 2: third = value
            default: break  // timestamps
            }
            count += 1
        }
        guard count == kind.fieldCount || count == kind.fieldCount + kind.timestampCount else {
            throw fail("\(kind.name) takes \(kind.usage), found \(count) field\(count == 1 ? "" : "s")")
        }
        // record_allocs writes 0x0 there; anything else is not its output.
        if kind == .threadDone && first != 0 {
            throw fail("thread_done takes 0x0, found \(hexPointerText(first))")
        }
        tid = UInt32(tidValue)
        self.action = kind
        fields = (first, second, third)
    }
}

// MARK: - Live set

/// A block allocated and not yet freed.
public struct LiveBlock: Sendable {
    public var pointer: UInt64
    /// The bytes asked for (calloc's product); a realloc changes it.
    public var size: UInt64
    /// Names the block while it is live and is given to the next block once it is freed, so that
    /// there are only as many slots as blocks live at once: the replay child's table is indexed by
    /// it, and an observer can index its own by it.
    public var slot: UInt32
    /// log2 of the alignment asked for: 4 except for memalign. A realloc keeps it.
    public var alignLog2: UInt8
}

/// How a block was allocated: what replay calls to allocate it again.
public enum AllocationKind: Sendable, Equatable {
    case malloc
    /// The block's size is `count` × `elementSize`.
    case calloc(count: UInt64, elementSize: UInt64)
    /// The alignment is the block's `1 << alignLog2`.
    case memalign
}

/// Told of every change `LiveSet` makes, in trace order.
public protocol LiveSetObserver {
    /// `block` became live.
    mutating func allocated(_ block: LiveBlock, kind: AllocationKind)
    /// `block`, as it was, is no longer live.
    mutating func freed(_ block: LiveBlock)
    /// A realloc moved or resized the block in `block.slot`: `block` has its new pointer and size,
    /// `oldSize` the size it had.
    mutating func reallocated(_ block: LiveBlock, oldSize: UInt64)
}

/// The blocks a trace holds live, and the one statement of what each action does to them: the
/// parser turns the changes into ops, and the recorder's fork bookkeeping keeps the blocks a
/// forked child inherits. That both follow these rules is what lets a child's trace, which starts
/// with the inherited blocks, replay strictly.
///
/// In lenient mode an operation that throws leaves the blocks as they were, so that a caller may
/// skip it and go on.
public struct LiveSet: ~Copyable {
    private let lenient: Bool
    /// Pointer → slot and size: the one lookup of every op, so each entry is 16 bytes.
    private var table = LivePointerTable()
    /// The exact size and alignment of the blocks whose table entry cannot hold them (a size of
    /// 2^32 − 1 or more, or an alignment other than 16): few in any real trace.
    private var outsized: [UInt32: OutsizedBlock] = [:]
    /// By slot: what the table entry has no room for (see `SlotRecord`).
    private var slotRecords = SlotColumn<SlotRecord>()
    /// Cross-thread frees and reallocs so far (`peakAlive` is the parser's).
    public private(set) var threadStatistics = ThreadStatistics()
    /// The slots of freed blocks, a stack (the last freed is reused first), `freeSlotCount` deep:
    /// a column indexed by depth, which never exceeds the slots handed out, rather than an array,
    /// whose push and pop were calls with a uniqueness check on every op.
    private var freeSlots = SlotColumn<UInt32>()
    private var freeSlotCount: UInt32 = 0
    private var nextSlot: UInt32 = 0
    public private(set) var liveBytes: UInt64 = 0
    /// The largest `liveBytes` so far.
    public private(set) var peakLiveBytes: UInt64 = 0
    public private(set) var anomalies = TraceAnomalies()
    /// Allocations recorded as failed (a null result): nothing became live.
    public private(set) var failedAllocationsSkipped = 0
    /// The line being applied, for error messages, and its thread id.
    private var line = 0
    private var tid: UInt32 = 0

    struct OutsizedBlock {
        var size: UInt64
        var alignLog2: UInt8
    }

    /// Of the block in a slot: the line that allocated or last reallocated it (for error messages)
    /// and the thread id of that line (its owner, for the cross-thread counts). Kept out of the
    /// table so that its entries stay dense.
    struct SlotRecord {
        var line: UInt32
        var owner: UInt32
    }

    /// `lenient`: count and skip the anomalies of interleaved multi-threaded recordings (see
    /// `TraceAnomalies`) rather than throw.
    public init(lenient: Bool) {
        self.lenient = lenient
    }

    /// The blocks live now.
    public var count: Int { table.count }

    /// Bytes its tables hold now; their next growth takes as much again while the old is alive.
    public var reservedBytes: Int {
        table.reservedBytes + slotRecords.reservedBytes + freeSlots.reservedBytes
            + outsized.capacity * (MemoryLayout<UInt32>.stride + MemoryLayout<OutsizedBlock>.stride)
    }

    /// The most blocks live at once: how many slots were handed out.
    public var slotCount: Int { Int(nextSlot) }

    /// Calls `body` with every live block, in no particular order.
    public func forEachBlock(_ body: (LiveBlock) -> Void) {
        table.forEachEntry { body(block($0)) }
    }

    /// A size of 2^48 or more cannot be real (no address space holds it), and the op stream keeps
    /// sizes in 48 bits.
    public static let maximumSize: UInt64 = 1 << 48
    private static let maximumAlignment: UInt64 = 1 << 40
    /// No process holds 2^60 bytes; a trace that claims to is corrupt, and capping the sum keeps
    /// every later computation on it (ideal pages, the live-bytes timeline) free of overflow.
    private static let maximumLiveBytes: UInt64 = 1 << 60
    private static let defaultAlignLog2: UInt8 = 4

    /// Starts loading the table buckets that applying `operation` will look up: the parser calls
    /// this a few lines ahead, so that the cache misses of a large live set overlap.
    @inline(__always)
    public func prefetch(for operation: TraceOperation) {
        table.prefetch(operation.fields.0)
        if operation.action == .realloc { table.prefetch(operation.fields.1) }
    }

    /// Starts loading the slot record of the block that `operation` frees or reallocs, once its
    /// table bucket has arrived (the parser calls this halfway between `prefetch(for:)` and
    /// `apply`): the record is found through the bucket, so its miss would otherwise come after
    /// the bucket's instead of beside it.
    @inline(__always)
    public func prefetchSlotRecord(for operation: TraceOperation) {
        let pointer: UInt64
        switch operation.action {
        case .free: pointer = operation.fields.0
        case .realloc: pointer = operation.fields.1
        default: return
        }
        if pointer != 0, let index = table.find(pointer) { slotRecords.prefetch(table[index].slot) }
    }

    /// Applies `operation`, read at `line`, and tells `observer` what changed.
    @inline(__always)
    public mutating func apply<Observer: LiveSetObserver>(_ operation: TraceOperation, line: Int,
                                                          observer: inout Observer) throws(TraceError) {
        self.line = line
        self.tid = operation.tid
        let fields = operation.fields
        switch operation.action {
        case .malloc:
            try allocate(pointer: fields.0, size: fields.1, alignLog2: Self.defaultAlignLog2, kind: .malloc, observer: &observer)
        case .calloc:
            let (total, overflow) = fields.1.multipliedReportingOverflow(by: fields.2)
            // A calloc that failed because the product overflows is recorded with a null result.
            if overflow && fields.0 != 0 { throw fail("calloc size overflows: \(fields.1) * \(fields.2)") }
            try allocate(pointer: fields.0, size: total, alignLog2: Self.defaultAlignLog2,
                         kind: .calloc(count: fields.1, elementSize: fields.2), observer: &observer)
        case .memalign:
            let alignment = fields.1
            guard alignment != 0, alignment & (alignment - 1) == 0 else {
                throw fail("memalign alignment \(alignment) is not a power of two")
            }
            guard alignment <= Self.maximumAlignment else {
                throw fail("memalign alignment \(alignment) is larger than 2^40")
            }
            try allocate(pointer: fields.0, size: fields.2, alignLog2: UInt8(alignment.trailingZeroBitCount),
                         kind: .memalign, observer: &observer)
        case .realloc:
            try reallocate(new: fields.0, old: fields.1, size: fields.2, observer: &observer)
        case .free:
            try free(pointer: fields.0, observer: &observer)
        case .threadDone:
            break  // a thread's end frees nothing
        }
    }

    private func fail(_ message: String) -> TraceError {
        TraceError(line: line, message: message)
    }

    private func sizeTooLarge(_ size: UInt64) -> TraceError {
        fail("size \(size) is 2^48 or more: no allocation can be that large")
    }

    /// The whole block that `entry` names.
    @inline(__always)
    private func block(_ entry: LivePointerTable.Entry) -> LiveBlock {
        if entry.compactSize != LivePointerTable.Entry.outsized {
            return LiveBlock(pointer: entry.pointer, size: UInt64(entry.compactSize), slot: entry.slot, alignLog2: Self.defaultAlignLog2)
        }
        let outsized = outsized[entry.slot]!
        return LiveBlock(pointer: entry.pointer, size: outsized.size, slot: entry.slot, alignLog2: outsized.alignLog2)
    }

    /// The size field of `block`'s table entry; records the outsized ones beside the table.
    @inline(__always)
    private mutating func compactSize(of block: LiveBlock) -> UInt32 {
        if block.size < UInt64(LivePointerTable.Entry.outsized) && block.alignLog2 == Self.defaultAlignLog2 {
            return UInt32(block.size)
        }
        outsized[block.slot] = OutsizedBlock(size: block.size, alignLog2: block.alignLog2)
        return LivePointerTable.Entry.outsized
    }

    private mutating func forgetOutsized(_ entry: LivePointerTable.Entry) {
        if entry.compactSize == LivePointerTable.Entry.outsized { outsized[entry.slot] = nil }
    }

    private mutating func allocate<Observer: LiveSetObserver>(pointer: UInt64, size: UInt64, alignLog2: UInt8, kind: AllocationKind,
                                                              observer: inout Observer) throws(TraceError) {
        // Failed first: programs probe with absurd sizes, and those fail.
        if pointer == 0 {
            failedAllocationsSkipped += 1
            return
        }
        guard size < Self.maximumSize else { throw sizeTooLarge(size) }
        let (index, inserted) = table.insertIfAbsent(pointer)
        guard inserted else {
            if lenient {
                anomalies.pointersReturnedWhileLive += 1
                return
            }
            throw fail("pointer \(hexPointerText(pointer)) returned while already live (allocated at line \(slotRecords[table[index].slot].line))")
        }
        guard fitsLiveBytes(liveBytes + size) else {
            table.remove(at: index)
            throw liveBytesExceeded()
        }
        let block = LiveBlock(pointer: pointer, size: size, slot: takeSlot(), alignLog2: alignLog2)
        table[index].slot = block.slot
        table[index].compactSize = compactSize(of: block)
        slotRecords[block.slot] = SlotRecord(line: UInt32(truncatingIfNeeded: line), owner: tid)
        addLive(size)
        observer.allocated(block, kind: kind)
    }

    private mutating func free<Observer: LiveSetObserver>(pointer: UInt64, observer: inout Observer) throws(TraceError) {
        if pointer == 0 { return }
        guard let index = table.find(pointer) else {
            if lenient {
                anomalies.freesOfUnknownPointers += 1
                return
            }
            throw fail("free of \(hexPointerText(pointer)), which is not live")
        }
        let entry = table[index]
        let block = block(entry)
        if slotRecords[block.slot].owner != tid {
            threadStatistics.crossThreadFrees += 1
            threadStatistics.crossThreadFreedBytes += block.size
        }
        table.remove(at: index)
        forgetOutsized(entry)
        freeSlots[freeSlotCount] = block.slot
        freeSlotCount += 1
        liveBytes -= block.size
        observer.freed(block)
    }

    private mutating func reallocate<Observer: LiveSetObserver>(new: UInt64, old: UInt64, size: UInt64,
                                                                observer: inout Observer) throws(TraceError) {
        if old == 0 {
            return try allocate(pointer: new, size: size, alignLog2: Self.defaultAlignLog2, kind: .malloc, observer: &observer)
        }
        guard let oldIndex = table.find(old) else {
            if lenient {
                anomalies.reallocsOfUnknownPointers += 1
                return try allocate(pointer: new, size: size, alignLog2: Self.defaultAlignLog2, kind: .malloc, observer: &observer)
            }
            throw fail("realloc of \(hexPointerText(old)), which is not live")
        }
        if size == 0 {
            try free(pointer: old, observer: &observer)
            if new != 0 { try allocate(pointer: new, size: 0, alignLog2: Self.defaultAlignLog2, kind: .malloc, observer: &observer) }
            return
        }
        if new == 0 {
            // A failed realloc leaves the old block live and unchanged.
            failedAllocationsSkipped += 1
            return
        }
        guard size < Self.maximumSize else { throw sizeTooLarge(size) }
        if new != old, let existing = table.find(new) {
            if lenient {
                anomalies.pointersReturnedWhileLive += 1
                return
            }
            throw fail("realloc returned \(hexPointerText(new)) while it is already live (allocated at line \(slotRecords[table[existing].slot].line))")
        }
        let oldEntry = table[oldIndex]
        var block = block(oldEntry)
        let oldSize = block.size
        guard fitsLiveBytes(liveBytes - block.size + size) else { throw liveBytesExceeded() }
        liveBytes -= block.size
        addLive(size)
        forgetOutsized(oldEntry)
        block.size = size
        block.pointer = new
        let compact = compactSize(of: block)
        if slotRecords[block.slot].owner != tid {
            threadStatistics.crossThreadReallocs += 1
            threadStatistics.crossThreadReallocatedBytes += oldSize
        }
        slotRecords[block.slot] = SlotRecord(line: UInt32(truncatingIfNeeded: line), owner: tid)
        if new == old {
            table[oldIndex].compactSize = compact
        } else {
            table.remove(at: oldIndex)
            let (index, _) = table.insertIfAbsent(new)  // absent: checked above
            table[index].slot = block.slot
            table[index].compactSize = compact
        }
        observer.reallocated(block, oldSize: oldSize)
    }

    /// Checked before anything changes, so that a lenient caller can skip the operation.
    @inline(__always)
    private func fitsLiveBytes(_ total: UInt64) -> Bool {
        total < Self.maximumLiveBytes  // both terms are below 2^60, so the sum cannot overflow
    }

    private func liveBytesExceeded() -> TraceError {
        fail("live bytes exceed 2^60: the sizes cannot be real")
    }

    @inline(__always)
    private mutating func addLive(_ size: UInt64) {
        liveBytes += size
        if liveBytes > peakLiveBytes { peakLiveBytes = liveBytes }
    }

    @inline(__always)
    private mutating func takeSlot() -> UInt32 {
        if freeSlotCount > 0 {
            freeSlotCount -= 1
            return freeSlots[freeSlotCount]
        }
        defer { nextSlot += 1 }
        return nextSlot
    }
}

/// One value per slot, grown as slots are handed out: a raw allocation, since an array's
/// uniqueness and bounds checks on every op cost the parser more than the store itself.
struct SlotColumn<Element: BitwiseCopyable>: ~Copyable {
    private var values = TableMemory.allocate(Element.self, capacity: 1024)
    private var capacity = 1024

    var reservedBytes: Int { TableMemory.mappedBytes(capacity * MemoryLayout<Element>.stride) }

    deinit { TableMemory.deallocate(values) }

    /// Only slots that have been set.
    subscript(slot: UInt32) -> Element {
        @inline(__always) get { values[Int(slot)] }
        @inline(__always) set {
            if Int(slot) >= capacity { grow(toHold: Int(slot)) }
            values[Int(slot)] = newValue
        }
    }

    @inline(__always)
    func prefetch(_ slot: UInt32) {
        if Int(slot) < capacity { ab_prefetch(values + Int(slot)) }
    }

    private mutating func grow(toHold slot: Int) {
        var newCapacity = capacity
        while newCapacity <= slot { newCapacity *= 2 }
        let grown = TableMemory.allocate(Element.self, capacity: newCapacity)
        grown.moveInitialize(from: values, count: capacity)
        TableMemory.deallocate(values)
        values = grown
        capacity = newCapacity
    }
}

/// The memory of the live set's tables (`LivePointerTable`, `SlotColumn`): a table of 2 MiB or
/// more is put in huge pages where the kernel allows it (transparent huge pages in `madvise` mode).
/// At a million live blocks the pointer table spans 32 MiB, 8192 small pages, so that every op's
/// probe missed the TLB as well as the caches, and the bucket prefetches stalled on their page
/// walks; 16 huge pages stay in the TLB (1M-live parse about 7 % faster).
enum TableMemory {
    private static let hugePageSize = 2 << 20
    private static let cacheLineSize = 64

    /// The address space that `allocate` takes for `bytes`: a huge-page table is aligned by
    /// asking for a huge page more, whose unused part stays mapped (never touched, so never resident).
    static func mappedBytes(_ bytes: Int) -> Int {
        bytes >= hugePageSize ? bytes + hugePageSize : bytes
    }

    /// Uninitialized memory for `capacity` values.
    static func allocate<Element>(_: Element.Type, capacity: Int) -> UnsafeMutablePointer<Element> {
        let bytes = capacity * MemoryLayout<Element>.stride
        // At least a cache line, so that a line holds whole table entries (see `LivePointerTable.prefetch`).
        let alignment = bytes >= hugePageSize ? hugePageSize : max(cacheLineSize, MemoryLayout<Element>.alignment)
        var memory: UnsafeMutableRawPointer?
        // Traps when out of memory, as Swift's own allocation does.
        guard posix_memalign(&memory, alignment, bytes) == 0, let memory else {
            fatalError("cannot allocate \(bytes) bytes for the trace parser's tables")
        }
        // Only a hint: without it (or where the kernel refuses) the table works the same, slower.
        if alignment == hugePageSize { _ = madvise(memory, bytes, MADV_HUGEPAGE) }
        return memory.bindMemory(to: Element.self, capacity: capacity)
    }

    static func deallocate<Element>(_ values: UnsafeMutablePointer<Element>) {
        free(values)
    }
}

// MARK: - Actions

/// The actions of a record_allocs line.
public enum TraceAction: Sendable {
    case malloc, calloc, memalign, realloc, free, threadDone

    /// Compares whole words of the name at once, not byte by byte: this runs on every line. The
    /// constants are the names' bytes read as little-endian integers ("free" is 0x65_65_72_66).
    @inline(__always)
    public init?(_ word: UnsafeBufferPointer<UInt8>) {
        guard let start = word.baseAddress else { return nil }
        let bytes = UnsafeRawPointer(start)
        func bytes16(at offset: Int) -> UInt16 { UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }
        func bytes32(at offset: Int) -> UInt32 { UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
        func bytes64(at offset: Int) -> UInt64 { UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self)) }
        switch word.count {
        case 4 where bytes32(at: 0) == 0x6565_7266: self = .free  // "free"
        case 6 where bytes32(at: 2) == 0x636F_6C6C:  // "lloc"
            switch bytes16(at: 0) {
            case 0x616D: self = .malloc  // "ma"
            case 0x6163: self = .calloc  // "ca"
            default: return nil
            }
        case 7 where bytes32(at: 0) == 0x6C61_6572 && bytes32(at: 3) == 0x636F_6C6C: self = .realloc  // "real", "lloc"
        case 8 where bytes64(at: 0) == 0x6E67_696C_616D_656D: self = .memalign  // "memalign"
        case 11 where bytes64(at: 0) == 0x645F_6461_6572_6874 && bytes32(at: 7) == 0x656E_6F64: self = .threadDone  // "thread_d", "done"
        default: return nil
        }
    }

    public var name: String {
        switch self {
        case .malloc: "malloc"
        case .calloc: "calloc"
        case .memalign: "memalign"
        case .realloc: "realloc"
        case .free: "free"
        case .threadDone: "thread_done"
        }
    }

    /// Fields after the action, without timestamps.
    var fieldCount: Int {
        switch self {
        case .free, .threadDone: 1
        case .malloc: 2
        case .calloc, .memalign, .realloc: 3
        }
    }

    /// The newer format appends start and end times; thread_done has only an end time.
    var timestampCount: Int { self == .threadDone ? 1 : 2 }

    var hexFieldCount: Int { self == .realloc ? 2 : 1 }

    var usage: String {
        let base: String
        switch self {
        case .malloc: base = "<pointer> <size>"
        case .calloc: base = "<pointer> <nmemb> <size>"
        case .memalign: base = "<pointer> <alignment> <size>"
        case .realloc: base = "<new pointer> <old pointer> <size>"
        case .free: base = "<pointer>"
        case .threadDone: return "0x0 [<end_ns>]"
        }
        return base + " [<start_ns> <end_ns>]"
    }
}

// MARK: - Byte cursor

/// Reads the fields of one line of text in place: the trace parser's, and every other reader of
/// trace text (the recorder's fork bookkeeping, the mtrace converter).
public struct ByteCursor {
    public var position: UnsafePointer<UInt8>
    public let end: UnsafePointer<UInt8>

    public init(position: UnsafePointer<UInt8>, end: UnsafePointer<UInt8>) {
        self.position = position
        self.end = end
    }

    /// Calls `body` with a cursor over each line of `text`, without its `\n` or `\r\n`.
    @inline(__always)
    public static func forEachLine<Failure: Error>(in text: UnsafeRawBufferPointer,
                                                   _ body: (ByteCursor) throws(Failure) -> Void) throws(Failure) {
        guard let base = text.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let end = base + text.count
        var start = base
        while start < end {
            let lineEnd = findNewline(from: start, to: end)
            var content = lineEnd
            if content > start && content[-1] == UInt8(ascii: "\r") { content -= 1 }
            try body(ByteCursor(position: start, end: content))
            start = lineEnd + 1
        }
    }

    /// memchr: the C library's vectorised scan (a pure function, not a system call).
    @inline(__always)
    private static func findNewline(from start: UnsafePointer<UInt8>, to end: UnsafePointer<UInt8>) -> UnsafePointer<UInt8> {
        guard let found = memchr(start, Int32(UInt8(ascii: "\n")), end - start) else { return end }
        return UnsafePointer(found.assumingMemoryBound(to: UInt8.self))
    }

    public var atEnd: Bool { position >= end }
    /// The byte at `position`; only when not `atEnd`.
    public var peek: UInt8 { position.pointee }
    public var atBlank: Bool { position < end && (position.pointee == UInt8(ascii: " ") || position.pointee == UInt8(ascii: "\t")) }

    public mutating func skipBlanks() {
        while atBlank { position += 1 }
    }

    public mutating func consume(_ byte: UInt8) -> Bool {
        guard position < end, position.pointee == byte else { return false }
        position += 1
        return true
    }

    /// Letters and underscores: an action name.
    public mutating func word() -> UnsafeBufferPointer<UInt8> {
        let start = position
        while position < end {
            let byte = position.pointee
            let isWordByte = (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) || byte == UInt8(ascii: "_")
                || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z"))
            if !isWordByte { break }
            position += 1
        }
        return UnsafeBufferPointer(start: start, count: position - start)
    }

    /// Decimal digits; nil when there are none or the value does not fit 64 bits.
    @inline(__always)
    public mutating func decimal() -> UInt64? {
        let start = position
        var value: UInt64 = 0
        while position < end {
            let digit = position.pointee &- UInt8(ascii: "0")
            if digit > 9 { break }
            if position - start >= 19 {
                let (scaled, overflow1) = value.multipliedReportingOverflow(by: 10)
                let (sum, overflow2) = scaled.addingReportingOverflow(UInt64(digit))
                if overflow1 || overflow2 { return nil }
                value = sum
            } else {
                value = value &* 10 &+ UInt64(digit)
            }
            position += 1
        }
        return position > start ? value : nil
    }

    /// `0x` followed by 1 to 16 hex digits, or `(nil)`, which is how glibc's printf("%p") writes
    /// a null pointer (bionic writes `0x0`).
    @inline(__always)
    public mutating func hexPointer() -> UInt64? {
        if end - position >= 5 && position[0] == UInt8(ascii: "(") && position[1] == UInt8(ascii: "n")
            && position[2] == UInt8(ascii: "i") && position[3] == UInt8(ascii: "l") && position[4] == UInt8(ascii: ")") {
            position += 5
            return 0
        }
        guard end - position >= 3, position[0] == UInt8(ascii: "0"),
              position[1] == UInt8(ascii: "x") || position[1] == UInt8(ascii: "X") else { return nil }
        position += 2
        let start = position
        var value: UInt64 = 0
        while position < end {
            let digit = ab_hex_digit_value(position.pointee)
            if digit > 15 { break }
            value = value &<< 4 | UInt64(digit)
            position += 1
        }
        return position > start && position - start <= 16 ? value : nil
    }

    /// The line as text for an error message, cut to a readable length.
    func lineText(from start: UnsafePointer<UInt8>) -> String {
        printable(UnsafeBufferPointer(start: start, count: end - start), limit: 80)
    }
}

// MARK: - Live pointer table

/// Open addressing with linear probing and backward-shift deletion, keyed by pointer value.
/// Pointer 0 marks an empty bucket (a live block never has address 0). The buckets are one raw
/// allocation: every op probes this table, and an array's uniqueness and bounds checks cost the
/// parser more than the probe itself does. Once the live set outgrows the caches every probe is a
/// cache miss, so an entry is 16 bytes (four to a cache line) and the parser prefetches buckets
/// a few lines ahead (`prefetch`).
struct LivePointerTable: ~Copyable {
    struct Entry {
        var pointer: UInt64
        var slot: UInt32
        /// The block's size, or `outsized` when `LiveSet` keeps its size and alignment beside the
        /// table (a size this field cannot hold, or an alignment other than the default).
        var compactSize: UInt32

        static let outsized = UInt32.max
    }

    private var buckets: UnsafeMutablePointer<Entry>
    private var mask: Int
    /// 64 − log2(capacity): Fibonacci hashing keeps the product's top bits.
    private var shift: UInt64
    private(set) var count = 0

    /// The address space the buckets take.
    var reservedBytes: Int { TableMemory.mappedBytes((mask + 1) * MemoryLayout<Entry>.stride) }

    init() {
        (buckets, mask, shift) = Self.emptyBuckets(log2Capacity: 10)
    }

    deinit { TableMemory.deallocate(buckets) }

    private static func emptyBuckets(log2Capacity: Int) -> (UnsafeMutablePointer<Entry>, Int, UInt64) {
        let capacity = 1 << log2Capacity
        let buckets = TableMemory.allocate(Entry.self, capacity: capacity)
        buckets.initialize(repeating: Entry(pointer: 0, slot: 0, compactSize: 0), count: capacity)
        return (buckets, capacity - 1, UInt64(64 - log2Capacity))
    }

    subscript(index: Int) -> Entry {
        @inline(__always) get { buckets[index] }
        @inline(__always) _modify { yield &buckets[index] }
    }

    func forEachEntry(_ body: (Entry) -> Void) {
        for index in 0...mask where buckets[index].pointer != 0 { body(buckets[index]) }
    }

    @inline(__always)
    private func home(_ pointer: UInt64) -> Int {
        Int(truncatingIfNeeded: (pointer &* 0x9E37_79B9_7F4A_7C15) >> shift)
    }

    /// Starts loading `pointer`'s home bucket into the cache, and the cache line after it: a probe
    /// that runs past the end of the home bucket's line, and a removal's backward shift, which reads
    /// on to the next empty bucket, otherwise missed there (`remove` was a tenth of the 1M-live parse,
    /// nearly all of it that load).
    @inline(__always)
    func prefetch(_ pointer: UInt64) {
        let home = home(pointer)
        ab_prefetch(buckets + home)
        // Entries are 16 bytes, four to a line: (home | 3) is the last of the home bucket's line.
        // Past the last bucket, the address is outside the table, which a prefetch may be.
        ab_prefetch(buckets + (home | 3) + 1)
    }

    @inline(__always)
    func find(_ pointer: UInt64) -> Int? {
        let probe = probe(pointer)
        return probe.isPresent ? probe.index : nil
    }

    /// Where `pointer` is, or the empty bucket where it would go.
    @inline(__always)
    private func probe(_ pointer: UInt64) -> (index: Int, isPresent: Bool) {
        var index = home(pointer)
        while true {
            let key = buckets[index].pointer
            if key == pointer { return (index, true) }
            if key == 0 { return (index, false) }
            index = (index + 1) & mask
        }
    }

    /// Inserts `pointer` (slot and size to be set by the caller) unless it is live already; either
    /// way returns the pointer's bucket. One probe serves both the check and the insertion.
    @inline(__always)
    mutating func insertIfAbsent(_ pointer: UInt64) -> (index: Int, inserted: Bool) {
        // At most 5/8 full: short probe sequences, and the buckets still twice as dense as before.
        if (count + 1) * 8 > (mask + 1) * 5 { grow() }
        let probe = probe(pointer)
        if probe.isPresent { return (probe.index, false) }
        buckets[probe.index].pointer = pointer
        count += 1
        return (probe.index, true)
    }

    mutating func remove(at removed: Int) {
        var hole = removed
        var index = (removed + 1) & mask
        while buckets[index].pointer != 0 {
            let wanted = home(buckets[index].pointer)
            // Move the entry back into the hole unless its home lies cyclically in (hole, index].
            let distanceToEntry = (index - wanted) & mask
            let distanceToHole = (index - hole) & mask
            if distanceToEntry >= distanceToHole {
                buckets[hole] = buckets[index]
                hole = index
            }
            index = (index + 1) & mask
        }
        buckets[hole].pointer = 0
        count -= 1
    }

    private mutating func grow() {
        let old = buckets
        let oldCapacity = mask + 1
        (buckets, mask, shift) = Self.emptyBuckets(log2Capacity: (oldCapacity * 2).trailingZeroBitCount)
        for index in 0..<oldCapacity where old[index].pointer != 0 {
            var bucket = home(old[index].pointer)
            while buckets[bucket].pointer != 0 { bucket = (bucket + 1) & mask }
            buckets[bucket] = old[index]
        }
        TableMemory.deallocate(old)
    }
}
