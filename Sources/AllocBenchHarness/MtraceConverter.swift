import AllocBenchCore
import Glibc

/// Converts glibc's mtrace log (MALLOC_TRACE) into Android record_allocs text.
///
/// glibc 2.36 writes (malloc/mtrace-impl.c), each line optionally preceded by the caller,
/// `@ <file>:(<symbol>+<offset>)[<address>] ` or `@ [<address>] `:
///
///     = Start                     tracing began (mtrace())
///     + <ptr> <size>              malloc, calloc (size = nmemb·size), memalign, realloc(NULL, size);
///                                 <ptr> is (nil) when it failed
///     - <ptr>                     free, realloc(ptr, 0); free(NULL) is not logged
///     < <old>                     realloc that succeeded, always followed by
///     > <new> <size>              its result
///     ! <old> <size>              realloc that failed (the old block stays)
///     = End                       tracing stopped (muntrace())
///
/// Pointers print as %p (0x…), sizes as %#lx (0x…, or 0). mtrace has no thread ids (everything
/// becomes tid 1) and does not say which function allocated or with what alignment (everything
/// becomes malloc). Tracing usually starts after the program has allocated: frees of blocks never
/// seen are dropped and a realloc of one becomes a malloc, so that the result replays strictly.
public enum MtraceConverter {
    public struct Summary: Sendable, Equatable {
        public var inputLines = 0
        public var operations = 0
        /// `-` of a block allocated before tracing started (dropped).
        public var freesOfUntracedBlocks = 0
        /// `<`/`>` of a block allocated before tracing started (written as malloc).
        public var reallocsOfUntracedBlocks = 0
        /// `+ (nil)` and `!` lines (written as failed allocations, which replay skips).
        public var failedAllocations = 0
        /// An allocation returning a block that is still live: only a multi-threaded program's log
        /// has these (its lines interleave); the trace then needs --lenient.
        public var pointersReturnedWhileLive = 0

        public init() {}
    }

    /// Converts the file at `inputPath` (text, .gz or .zip, as traces) and writes the trace to
    /// `outputPath` atomically, or returns it when `outputPath` is nil.
    public static func convert(inputPath: String, outputPath: String?) throws(InputError) -> (text: [UInt8], summary: Summary) {
        let converted = try TraceInput.withText(of: inputPath) { bytes throws(InputError) in
            do throws(TraceError) {
                return try convert(bytes, sourceName: basename(inputPath))
            } catch {
                throw InputError.badTrace(path: inputPath, line: error.line, message: error.message)
            }
        }
        if let outputPath {
            do {
                try AtomicFileWriter.write(converted.text, to: outputPath)
            } catch {
                throw InputError.system(error)
            }
        }
        return converted
    }

    /// Converts a whole log held in memory.
    public static func convert(_ bytes: UnsafeRawBufferPointer, sourceName: String = "mtrace log") throws(TraceError) -> (text: [UInt8], summary: Summary) {
        var converter = Converter()
        converter.output.reserveCapacity(bytes.count)
        converter.output.append(contentsOf: "# allocbench convert --from mtrace \(sourceName): tid 1, every allocation as malloc\n".utf8)
        try converter.run(bytes)
        return (converter.output, converter.summary)
    }

    private static func basename(_ path: String) -> String {
        path.lastIndex(of: "/").map { String(path[path.index(after: $0)...]) } ?? path
    }
}

private struct Converter {
    var output: [UInt8] = []
    var summary = MtraceConverter.Summary()
    private var live = Set<UInt64>()
    /// The `<` line waiting for its `>`: (old pointer, line number).
    private var pendingRealloc: (old: UInt64, line: Int)?
    private var line = 0
    /// The line being converted, quoted by error messages.
    private var lineBytes = UnsafeBufferPointer<UInt8>(start: nil, count: 0)

    mutating func run(_ bytes: UnsafeRawBufferPointer) throws(TraceError) {
        try ByteCursor.forEachLine(in: bytes) { cursor throws(TraceError) in
            line += 1
            lineBytes = UnsafeBufferPointer(start: cursor.position, count: cursor.end - cursor.position)
            try convertLine(cursor)
        }
        summary.inputLines = line
        if let pending = pendingRealloc {
            throw TraceError(line: pending.line, message: "'< \(hexPointerText(pending.old))' (realloc) is not followed by its '> <new> <size>' line")
        }
    }

    private mutating func convertLine(_ lineCursor: ByteCursor) throws(TraceError) {
        var cursor = lineCursor
        if cursor.atEnd { return }
        if cursor.peek == UInt8(ascii: "=") { return }  // = Start, = End
        if cursor.peek == UInt8(ascii: "@") {
            guard cursor.skipCaller() else {
                throw fail("expected '@ <caller> <op> ...' with <op> one of + - < > !, found '\(lineText)'")
            }
        }
        let operation = cursor.peek
        cursor.position += 1
        guard cursor.consume(UInt8(ascii: " ")) || cursor.atEnd else { throw unknownOperation() }
        if let pending = pendingRealloc, operation != UInt8(ascii: ">") {
            throw TraceError(line: pending.line, message: "'< \(hexPointerText(pending.old))' (realloc) is followed by '\(lineText)' at line \(line), not by '> <new> <size>'")
        }
        switch operation {
        case UInt8(ascii: "+"):
            let pointer = try field(&cursor, pointer: true, "+ <pointer> <size>")
            let size = try field(&cursor, pointer: false, "+ <pointer> <size>")
            try expectEnd(cursor, "+ <pointer> <size>")
            if pointer == 0 { summary.failedAllocations += 1 } else { noteAllocated(pointer) }
            emit("malloc", pointer, size: size)
        case UInt8(ascii: "-"):
            let pointer = try field(&cursor, pointer: true, "- <pointer>")
            try expectEnd(cursor, "- <pointer>")
            if pointer == 0 { return }
            if live.remove(pointer) == nil {
                summary.freesOfUntracedBlocks += 1
                return
            }
            emit("free", pointer)
        case UInt8(ascii: "<"):
            let old = try field(&cursor, pointer: true, "< <old pointer>")
            try expectEnd(cursor, "< <old pointer>")
            guard old != 0 else { throw fail("'<' (realloc) of a null pointer") }
            pendingRealloc = (old, line)
        case UInt8(ascii: ">"):
            guard let pending = pendingRealloc else { throw fail("'>' (realloc result) without the '< <old pointer>' line before it") }
            pendingRealloc = nil
            let new = try field(&cursor, pointer: true, "> <new pointer> <size>")
            let size = try field(&cursor, pointer: false, "> <new pointer> <size>")
            try expectEnd(cursor, "> <new pointer> <size>")
            guard new != 0 else { throw fail("'>' (realloc result) of a null pointer") }
            if live.remove(pending.old) == nil {
                summary.reallocsOfUntracedBlocks += 1
                noteAllocated(new)
                emit("malloc", new, size: size)
            } else {
                noteAllocated(new)
                emit("realloc", new, pending.old, size: size)
            }
        case UInt8(ascii: "!"):
            let old = try field(&cursor, pointer: true, "! <old pointer> <size>")
            let size = try field(&cursor, pointer: false, "! <old pointer> <size>")
            try expectEnd(cursor, "! <old pointer> <size>")
            summary.failedAllocations += 1
            // The old block stays live; a failed realloc of an untraced block changes nothing.
            if live.contains(old) { emit("realloc", 0, old, size: size) }
        default:
            throw unknownOperation()
        }
    }

    private mutating func noteAllocated(_ pointer: UInt64) {
        if !live.insert(pointer).inserted { summary.pointersReturnedWhileLive += 1 }
    }

    private func unknownOperation() -> TraceError {
        fail("expected an mtrace line ('= ', '@ ', or one of + - < > ! and a space), found '\(lineText)'")
    }

    private func fail(_ message: String) -> TraceError {
        TraceError(line: line, message: message)
    }

    /// The whole line, cut to a readable length, for error messages. Decoded as UTF-8 rather than
    /// escaped like the parser's quotes: a caller's file name is text the user wrote.
    private var lineText: String {
        let text = String(decoding: lineBytes.prefix(80), as: UTF8.self)
        return lineBytes.count > 80 ? text + "…" : text
    }

    private func field(_ cursor: inout ByteCursor, pointer: Bool, _ usage: String) throws(TraceError) -> UInt64 {
        cursor.skipBlanks()
        if cursor.atEnd { throw fail("expected '\(usage)', found '\(lineText)'") }
        if pointer, cursor.consume("(nil)") { return 0 }
        // %#lx prints zero as a bare 0.
        if !pointer, cursor.peek == UInt8(ascii: "0"), cursor.position + 1 == cursor.end || cursor.position[1] == UInt8(ascii: " ") {
            cursor.position += 1
            return 0
        }
        // The trace's pointer reader: 0x and 1 to 16 hex digits, which must end the field here.
        guard let value = cursor.hexPointer(), cursor.atEnd || cursor.atBlank else {
            throw fail("expected '\(usage)' with \(pointer ? "a 0x pointer or (nil)" : "a 0x size"), found '\(lineText)'")
        }
        return value
    }

    private func expectEnd(_ cursor: ByteCursor, _ usage: String) throws(TraceError) {
        var rest = cursor
        rest.skipBlanks()
        if !rest.atEnd { throw fail("expected '\(usage)' and nothing after it, found '\(lineText)'") }
    }

    /// `1: <action> 0x<pointer>[ 0x<second>][ <size>]`
    private mutating func emit(_ action: StaticString, _ pointer: UInt64, _ second: UInt64? = nil, size: UInt64? = nil) {
        output.append(contentsOf: "1: ".utf8)
        action.withUTF8Buffer { output.append(contentsOf: $0) }
        output.append(contentsOf: " 0x".utf8)
        appendHex(pointer)
        if let second {
            output.append(contentsOf: " 0x".utf8)
            appendHex(second)
        }
        if let size {
            output.append(UInt8(ascii: " "))
            appendDecimal(size)
        }
        output.append(UInt8(ascii: "\n"))
        summary.operations += 1
    }

    private mutating func appendHex(_ value: UInt64) {
        var shift = 60
        while shift > 0 && (value >> UInt64(shift)) & 0xf == 0 { shift -= 4 }
        while shift >= 0 {
            let digit = UInt8((value >> UInt64(shift)) & 0xf)
            output.append(digit < 10 ? UInt8(ascii: "0") + digit : UInt8(ascii: "a") + digit - 10)
            shift -= 4
        }
    }

    private mutating func appendDecimal(_ value: UInt64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes: enough for 20 digits
        let count = withUnsafeMutableBytes(of: &digits) { buffer -> Int in
            var remaining = value
            var index = 0
            repeat {
                buffer[index] = UInt8(ascii: "0") + UInt8(remaining % 10)
                remaining /= 10
                index += 1
            } while remaining > 0
            return index
        }
        withUnsafeBytes(of: &digits) { buffer in
            for index in stride(from: count - 1, through: 0, by: -1) { output.append(buffer[index]) }
        }
    }
}

/// What only mtrace lines need of the trace parser's cursor.
extension ByteCursor {
    fileprivate mutating func consume(_ literal: StaticString) -> Bool {
        let count = literal.utf8CodeUnitCount
        guard end - position >= count else { return false }
        for index in 0..<count where position[index] != literal.utf8Start[index] { return false }
        position += count
        return true
    }

    /// Skips `@ <caller> `. The caller always ends in `[0x<address>] ` (glibc prints it only for a
    /// non-null return address) and the operation and a space (or the line's end) follow; file
    /// names may contain anything, so nothing else is assumed of it.
    fileprivate mutating func skipCaller() -> Bool {
        var scan = position + 1
        while end - scan >= 3 {
            if scan[0] == UInt8(ascii: "]") && scan[1] == UInt8(ascii: " ") && isOperation(scan[2])
                && (end - scan == 3 || scan[3] == UInt8(ascii: " ")) && endsAddress(scan) {
                position = scan + 2
                return true
            }
            scan += 1
        }
        return false
    }

    /// Whether `[0x<hex digits>` ends just before `bracket`.
    private func endsAddress(_ bracket: UnsafePointer<UInt8>) -> Bool {
        var scan = bracket
        while scan > position && isHexDigit(scan[-1]) { scan -= 1 }
        return scan < bracket && scan - position >= 3 && scan[-1] == UInt8(ascii: "x") && scan[-2] == UInt8(ascii: "0")
            && scan[-3] == UInt8(ascii: "[")
    }

    private func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")) || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
    }

    private func isOperation(_ byte: UInt8) -> Bool {
        byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "<")
            || byte == UInt8(ascii: ">") || byte == UInt8(ascii: "!")
    }
}
