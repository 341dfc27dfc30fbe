import AllocBenchCore

/// The blocks live at some point of a recorded trace, so that the trace of a forked child can start
/// with the heap it inherited: the child frees and reallocs its parent's blocks, and its trace would
/// otherwise only replay with --lenient.
///
/// What each line does to the blocks is the trace parser's own rule (`LiveSet`, lenient as for an
/// interleaved multi-threaded recording), so the inherited blocks are exactly those that replaying
/// the parent's trace holds live. The input is the recorder's own output, so a line the parser
/// rejects is skipped rather than reported: the trace parser reports it when the trace is replayed.
struct InheritedHeap: ~Copyable {
    private var live = LiveSet(lenient: true)
    private var allocations = Allocations()

    var blockCount: Int { live.count }

    /// Applies the operations of `text`, a recorded trace.
    mutating func apply(_ text: UnsafeRawBufferPointer) {
        var lineNumber = 0
        ByteCursor.forEachLine(in: text) { line in
            lineNumber += 1
            guard let operation = try? TraceOperation(reading: line, lineNumber: lineNumber) else { return }
            try? live.apply(operation, line: lineNumber, observer: &allocations)
        }
    }

    /// One allocation line per live block, on thread `tid`, oldest first.
    func allocationLines(tid: Int32) -> [UInt8] {
        var blocks: [(block: LiveBlock, allocation: Allocations.Allocation)] = []
        blocks.reserveCapacity(live.count)
        live.forEachBlock { blocks.append(($0, allocations.bySlot[Int($0.slot)])) }
        blocks.sort { $0.allocation.sequence < $1.allocation.sequence }
        var text = ""
        for (block, allocation) in blocks {
            let address = hexPointerText(block.pointer)
            switch allocation.kind {
            case .malloc: text += "\(tid): malloc \(address) \(block.size)\n"
            case .calloc(let count, let elementSize): text += "\(tid): calloc \(address) \(count) \(elementSize)\n"
            case .memalign: text += "\(tid): memalign \(address) \(UInt64(1) << block.alignLog2) \(block.size)\n"
            }
        }
        return Array(text.utf8)
    }
}

/// How the block in each slot was allocated, and when: what `LiveSet` does not keep.
private struct Allocations: LiveSetObserver {
    struct Allocation {
        /// When the block was first allocated: inherited blocks are allocated again in this order.
        var sequence: Int
        var kind: AllocationKind
    }

    private(set) var bySlot: [Allocation] = []
    private var nextSequence = 0

    mutating func allocated(_ block: LiveBlock, kind: AllocationKind) {
        let allocation = Allocation(sequence: nextSequence, kind: kind)
        nextSequence += 1
        // Slots are handed out in order: a slot not seen before is the next one.
        if Int(block.slot) < bySlot.count {
            bySlot[Int(block.slot)] = allocation
        } else {
            bySlot.append(allocation)
        }
    }

    mutating func freed(_ block: LiveBlock) {}

    /// A realloc keeps the block's place in the order and its alignment; a calloc block's new
    /// bytes are not zeroed, so it is allocated again as malloc of its new size.
    mutating func reallocated(_ block: LiveBlock, oldSize: UInt64) {
        if case .calloc = bySlot[Int(block.slot)].kind { bySlot[Int(block.slot)].kind = .malloc }
    }
}
