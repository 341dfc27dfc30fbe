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
        var cursor = FieldCursor(position: base, end: base + text.count)
        while !cursor.atEnd {
            let lineEnd = cursor.endOfLine()
            var line = FieldCursor(position: cursor.position, end: lineEnd)
            cursor.position = lineEnd < cursor.end ? lineEnd + 1 : lineEnd
            guard line.decimal() != nil, line.consume(UInt8(ascii: ":")) else { continue }
            apply(action: line.word(), fields: &line)
        }
    }

    private mutating func apply(action: UnsafeBufferPointer<UInt8>, fields: inout FieldCursor) {
        switch Action(action) {
        case .malloc:
            guard let pointer = fields.hex(), let size = fields.decimal() else { return }
            insert(pointer, Block(sequence: 0, kind: .malloc, parameter: 0, size: size))
        case .calloc:
            guard let pointer = fields.hex(), let count = fields.decimal(), let size = fields.decimal() else { return }
            insert(pointer, Block(sequence: 0, kind: .calloc, parameter: count, size: size))
        case .memalign:
            guard let pointer = fields.hex(), let alignment = fields.decimal(), let size = fields.decimal() else { return }
            insert(pointer, Block(sequence: 0, kind: .memalign, parameter: alignment, size: size))
        case .realloc:
            guard let new = fields.hex(), let old = fields.hex(), let size = fields.decimal() else { return }
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
            guard let pointer = fields.hex() else { return }
            blocks.removeValue(forKey: pointer)
        case nil:
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

private enum Action {
    case malloc, calloc, memalign, realloc, free

    init?(_ word: UnsafeBufferPointer<UInt8>) {
        let candidates: [(StaticString, Action)] = [("malloc", .malloc), ("free", .free), ("realloc", .realloc),
                                                    ("calloc", .calloc), ("memalign", .memalign)]
        for (name, action) in candidates where name.utf8CodeUnitCount == word.count {
            if (0..<word.count).allSatisfy({ name.utf8Start[$0] == word[$0] }) {
                self = action
                return
            }
        }
        return nil
    }
}

/// Fields of one recorded line.
private struct FieldCursor {
    var position: UnsafePointer<UInt8>
    let end: UnsafePointer<UInt8>

    var atEnd: Bool { position >= end }

    func endOfLine() -> UnsafePointer<UInt8> {
        var scan = position
        while scan < end && scan.pointee != UInt8(ascii: "\n") { scan += 1 }
        return scan
    }

    mutating func skipBlanks() {
        while position < end && position.pointee == UInt8(ascii: " ") { position += 1 }
    }

    mutating func consume(_ byte: UInt8) -> Bool {
        guard position < end, position.pointee == byte else { return false }
        position += 1
        return true
    }

    mutating func word() -> UnsafeBufferPointer<UInt8> {
        skipBlanks()
        let start = position
        while position < end && position.pointee != UInt8(ascii: " ") { position += 1 }
        return UnsafeBufferPointer(start: start, count: position - start)
    }

    mutating func decimal() -> UInt64? {
        skipBlanks()
        let start = position
        var value: UInt64 = 0
        while position < end, position.pointee >= UInt8(ascii: "0"), position.pointee <= UInt8(ascii: "9") {
            value = value &* 10 &+ UInt64(position.pointee - UInt8(ascii: "0"))
            position += 1
        }
        return position > start ? value : nil
    }

    mutating func hex() -> UInt64? {
        skipBlanks()
        guard end - position >= 3, position[0] == UInt8(ascii: "0"), position[1] == UInt8(ascii: "x") else { return nil }
        position += 2
        let start = position
        var value: UInt64 = 0
        while position < end {
            let byte = position.pointee
            let digit: UInt8
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
            default: return position > start ? value : nil
            }
            value = value << 4 | UInt64(digit)
            position += 1
        }
        return position > start ? value : nil
    }
}
