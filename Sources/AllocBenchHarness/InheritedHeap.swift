import AllocBenchCore
import Glibc

/// The blocks live at some point of a recorded trace, so that the trace of a forked child can start
/// with the heap it inherited: the child frees and reallocs its parent's blocks, and its trace would
/// otherwise only replay with --lenient.
///
/// The input is the recorder's own output, so a line this does not understand is skipped rather
/// than reported: the trace parser reports it when the trace is replayed.
struct InheritedHeap {
    enum Kind {
        case malloc, calloc, memalign
    }

    struct Block {
        /// When the block was first allocated: inherited blocks are allocated again in this order.
        var sequence: Int
        var kind: Kind
        /// calloc: the element count; memalign: the alignment.
        var parameter: UInt64
        var size: UInt64
    }

    private(set) var blocks: [UInt64: Block] = [:]
    private var nextSequence = 0

    /// Applies the operations of `text`, a recorded trace.
    mutating func apply(_ text: UnsafeRawBufferPointer) {
        guard let base = text.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        let end = base + text.count
        var lineStart = base
        while lineStart < end {
            let newline = memchr(lineStart, Int32(UInt8(ascii: "\n")), end - lineStart)
            let lineEnd = newline.map { UnsafePointer($0.assumingMemoryBound(to: UInt8.self)) } ?? end
            var line = ByteCursor(position: lineStart, end: lineEnd)
            lineStart = lineEnd < end ? lineEnd + 1 : lineEnd
            guard line.decimal() != nil, line.consume(UInt8(ascii: ":")) else { continue }
            line.skipBlanks()
            apply(action: line.word(), fields: &line)
        }
    }

    private mutating func apply(action: UnsafeBufferPointer<UInt8>, fields: inout ByteCursor) {
        switch TraceAction(action) {
        case .malloc:
            guard let pointer = fields.nextPointer(), let size = fields.nextDecimal() else { return }
            insert(pointer, Block(sequence: 0, kind: .malloc, parameter: 0, size: size))
        case .calloc:
            guard let pointer = fields.nextPointer(), let count = fields.nextDecimal(), let size = fields.nextDecimal() else { return }
            insert(pointer, Block(sequence: 0, kind: .calloc, parameter: count, size: size))
        case .memalign:
            guard let pointer = fields.nextPointer(), let alignment = fields.nextDecimal(), let size = fields.nextDecimal() else { return }
            insert(pointer, Block(sequence: 0, kind: .memalign, parameter: alignment, size: size))
        case .realloc:
            guard let new = fields.nextPointer(), let old = fields.nextPointer(), let size = fields.nextDecimal() else { return }
            if old == 0 {
                insert(new, Block(sequence: 0, kind: .malloc, parameter: 0, size: size))
            } else if new != 0 || size == 0 {
                // realloc(p, 0) that returned null freed p; a null result otherwise is a failure.
                guard var block = blocks.removeValue(forKey: old) else { return }
                guard new != 0 else { return }
                if block.kind == .calloc { block = Block(sequence: block.sequence, kind: .malloc, parameter: 0, size: size) }
                block.size = size
                blocks[new] = block
            }
        case .free:
            guard let pointer = fields.nextPointer() else { return }
            blocks.removeValue(forKey: pointer)
        case .threadDone, nil:
            return
        }
    }

    private mutating func insert(_ pointer: UInt64, _ block: Block) {
        guard pointer != 0 else { return }
        var block = block
        block.sequence = nextSequence
        nextSequence += 1
        blocks[pointer] = block
    }

    /// One allocation line per live block, on thread `tid`, oldest first.
    func allocationLines(tid: Int32) -> [UInt8] {
        var text = ""
        for (pointer, block) in blocks.sorted(by: { $0.value.sequence < $1.value.sequence }) {
            let address = "0x" + String(pointer, radix: 16)
            switch block.kind {
            case .malloc: text += "\(tid): malloc \(address) \(block.size)\n"
            case .calloc: text += "\(tid): calloc \(address) \(block.parameter) \(block.size)\n"
            case .memalign: text += "\(tid): memalign \(address) \(block.parameter) \(block.size)\n"
            }
        }
        return Array(text.utf8)
    }
}

extension ByteCursor {
    /// The next blank-separated field as a 0x pointer.
    fileprivate mutating func nextPointer() -> UInt64? {
        skipBlanks()
        return hexPointer()
    }

    /// The next blank-separated field as a decimal number.
    fileprivate mutating func nextDecimal() -> UInt64? {
        skipBlanks()
        return decimal()
    }
}
