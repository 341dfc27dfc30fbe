import AllocBenchCore
import CAllocBench
import XCTest

final class TraceParserTests: XCTestCase {
    private func parse(_ text: String, lenient: Bool = false) throws -> ParsedTrace {
        try TraceParser.parse(Array(text.utf8), options: .init(lenient: lenient))
    }

    private func assertError(_ text: String, line: Int, contains fragment: String,
                             file: StaticString = #filePath, sourceLine: UInt = #line) {
        XCTAssertThrowsError(try parse(text), file: file, line: sourceLine) { error in
            guard let error = error as? TraceError else { return XCTFail("not a TraceError: \(error)", file: file, line: sourceLine) }
            XCTAssertEqual(error.line, line, "\(error)", file: file, line: sourceLine)
            XCTAssertTrue(error.message.contains(fragment), "'\(error.message)' lacks '\(fragment)'", file: file, line: sourceLine)
        }
    }

    func testEveryOperationBecomesOneOp() throws {
        let trace = try parse("""
            100: malloc 0xb48390a0 48
            200: calloc 0xb48c1100 32 8
            300: realloc 0x96b90920 0xb48390a0 150
            400: memalign 0xae42d080 64 104
            500: free 0xb48c1100
            600: thread_done 0x0
            """)
        XCTAssertEqual(trace.ops.map(\.kind), [AB_OP_MALLOC, AB_OP_CALLOC, AB_OP_REALLOC, AB_OP_MEMALIGN, AB_OP_FREE].map { UInt8($0) })
        XCTAssertEqual(trace.ops.map { $0.size }, [48, 256, 150, 104, 256])
        XCTAssertEqual(trace.ops[2].slot, trace.ops[0].slot, "realloc keeps the old block's slot")
        XCTAssertEqual(trace.ops[3].align_log2, 6)
        XCTAssertEqual(trace.ops[0].align_log2, 4)
        XCTAssertEqual(trace.ops[4].slot, trace.ops[1].slot)
        XCTAssertEqual(trace.threadIDs, [100, 200, 300, 400, 500, 600])
        XCTAssertEqual(trace.ops.map(\.thread), [0, 1, 2, 3, 4])
        XCTAssertEqual(trace.threadsDone, 1)
        XCTAssertEqual(trace.lineCount, 6)
        // live: 48 → 48+256 → 150+256 → +104 = 510 → free 256 = 254
        XCTAssertEqual(trace.peakLiveBytes, 510)
        XCTAssertEqual(trace.finalLiveBytes, 254)
        XCTAssertEqual(trace.facts.idealPages(pageSize: 4096), 1)
    }

    func testTimestampFormAndCommentsAndBlankLinesAndCRLF() throws {
        let trace = try parse("# recorded on a phone\r\n\r\n   \n1: malloc 0x10 20 100 200\r\n1: realloc 0x20 0x10 40 300 400\n1: free 0x20 500 600\n1: thread_done 0x0 700\n")
        XCTAssertEqual(trace.ops.count, 3)
        XCTAssertEqual(trace.lineCount, 7)
        XCTAssertEqual(trace.peakLiveBytes, 40)
    }

    func testPointersAreIdentitiesAndSlotsAreReused() throws {
        let trace = try parse("""
            1: malloc 0x10 8
            1: free 0x10
            1: malloc 0x10 16
            1: malloc 0x20 16
            1: free 0x10
            1: free 0x20
            """)
        XCTAssertEqual(trace.slotCount, 2, "at most two blocks were live at once")
        XCTAssertEqual(trace.ops.map(\.slot), [0, 0, 0, 1, 0, 1])
    }

    func testNullSemantics() throws {
        let trace = try parse("""
            1: free 0x0
            1: realloc 0x10 0x0 32
            1: realloc 0x0 0x10 0
            1: malloc 0x0 100
            1: malloc 0x30 8
            1: realloc 0x0 0x30 64
            """)
        // free(NULL) is nothing; realloc(NULL, n) is malloc; realloc(p, 0) frees; a NULL result is a
        // failed allocation (skipped) and a failed realloc leaves the block alone.
        XCTAssertEqual(trace.ops.map(\.kind), [AB_OP_MALLOC, AB_OP_FREE, AB_OP_MALLOC].map { UInt8($0) })
        XCTAssertEqual(trace.failedAllocationsSkipped, 2)
        XCTAssertEqual(trace.finalLiveBytes, 8)
    }

    /// glibc's printf("%p") writes a null pointer as (nil): the same trace with (nil) for 0x0.
    func testThreadDoneTakesOnlyTheNullPointer() throws {
        XCTAssertEqual(try parse("7: malloc 0x10 8\n7: thread_done 0x0\n").threadsDone, 1)
        assertError("7: malloc 0x10 8\n7: thread_done 0x1234\n", line: 2, contains: "thread_done takes 0x0, found 0x1234")
    }

    func testNilIsTheNullPointer() throws {
        let bionic = try parse("1: free 0x0\n1: realloc 0x10 0x0 32\n1: malloc 0x0 100\n1: realloc 0x55f9aae60560 0x10 1600\n")
        let glibc = try parse("1: free (nil)\n1: realloc 0x10 (nil) 32\n1: malloc (nil) 100\n1: realloc 0x55f9aae60560 0x10 1600\n")
        XCTAssertEqual(glibc.ops.map(\.kind), bionic.ops.map(\.kind))
        XCTAssertEqual(glibc.ops.map { $0.size }, bionic.ops.map { $0.size })
        XCTAssertEqual(glibc.failedAllocationsSkipped, 1)
        assertError("1: malloc (nill) 8\n", line: 1, contains: "field 1 is not a 0x pointer")
        assertError("1: malloc (nil)x 8\n", line: 1, contains: "field 1 is not a 0x pointer")
    }

    func testReallocInPlaceUpdatesSize() throws {
        let trace = try parse("1: malloc 0x10 100\n1: realloc 0x10 0x10 1000\n1: realloc 0x10 0x10 10\n")
        XCTAssertEqual(trace.peakLiveBytes, 1000)
        XCTAssertEqual(trace.finalLiveBytes, 10)
        XCTAssertEqual(Set(trace.ops.map(\.slot)), [0])
    }

    func testMalformedLinesNameTheirLine() {
        assertError("1: malloc 0x10 8\nnot a trace line\n", line: 2, contains: "expected '<tid>: <action>")
        assertError("1 malloc 0x10 8\n", line: 1, contains: "expected ':'")
        assertError("1: mallocate 0x10 8\n", line: 1, contains: "unknown action 'mallocate'")
        assertError("1:\n", line: 1, contains: "missing action")
        assertError("1: malloc 0x10\n", line: 1, contains: "malloc takes <pointer> <size>")
        assertError("1: malloc 0x10 8 9\n", line: 1, contains: "found 3 fields")
        assertError("1: malloc 16 8\n", line: 1, contains: "not a 0x pointer")
        assertError("1: malloc 0x10 8k\n", line: 1, contains: "not a decimal number")
        assertError("1: malloc 0x10 99999999999999999999\n", line: 1, contains: "not a decimal number")
        assertError("1: malloc 0x10000000000000000 8\n", line: 1, contains: "not a 0x pointer")
        assertError("1: free 0x10 1 2 3 4 5 6\n", line: 1, contains: "too many fields")
        assertError("1: calloc 0x10 4294967296 4294967296\n", line: 1, contains: "calloc size overflows")
        assertError("1: memalign 0x10 24 8\n", line: 1, contains: "alignment 24 is not a power of two")
        assertError("1: memalign 0x10 0 8\n", line: 1, contains: "alignment 0 is not a power of two")
        assertError("1: malloc 0x10 281474976710656\n", line: 1, contains: "size 281474976710656 is 2^48 or more")
        assertError("99999999999: malloc 0x10 8\n", line: 1, contains: "expected '<tid>: <action>")
    }

    /// Fed in pieces split anywhere, a trace parses exactly as it does whole.
    func testChunksSplitAnywhereParseAsTheWhole() throws {
        let text = (1...200).map { index in
            index % 3 == 0 ? "\(index % 7): free 0x\(String(index - 1, radix: 16))0" : "\(index % 7): malloc 0x\(String(index, radix: 16))0 \(index * 8)"
        }.joined(separator: "\r\n") + "\n# a comment\n1: malloc 0xfff0 24"
        let whole = try parse(text)
        // A buffer of its own: the parser is noncopyable, and fed outside any closure.
        let utf8 = Array(text.utf8)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: utf8.count, alignment: 1)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: utf8)
        for chunkSize in [1, 2, 7, 64, 4095, buffer.count] {
            var parser = TraceParser()
            var start = 0
            while start < buffer.count {
                let end = min(start + chunkSize, buffer.count)
                try parser.feed(UnsafeRawBufferPointer(rebasing: buffer[start..<end]))
                start = end
            }
            let pieces = ParsedTrace(facts: try parser.finish(), ops: parser.takeOps())
            XCTAssertEqual(pieces.ops.map { $0.size }, whole.ops.map { $0.size }, "chunks of \(chunkSize)")
            XCTAssertEqual(pieces.ops.map(\.slot), whole.ops.map(\.slot), "chunks of \(chunkSize)")
            XCTAssertEqual(pieces.ops.map(\.thread), whole.ops.map(\.thread), "chunks of \(chunkSize)")
            XCTAssertEqual(pieces.lineCount, whole.lineCount, "chunks of \(chunkSize)")
        }
        // A line longer than the limit fails as soon as the limit is passed, wherever it is split.
        var parser = TraceParser()
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: 3000, alignment: 1)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        try parser.feed(UnsafeRawBufferPointer(zeros))
        do {
            try parser.feed(UnsafeRawBufferPointer(zeros))
            XCTFail("6000 bytes without a line break were accepted")
        } catch {
            XCTAssertEqual(error.line, 1)
        }
    }

    /// A pointer of every length, in either case, at the line's end or followed by a field, by a
    /// byte next to a digit's range or by one above 0x7F, reads as `UInt64(_:radix:)` reads it, and
    /// the cursor stops at its last digit.
    func testHexPointersOfEveryLengthAndEnding() {
        let digits = Array("0123456789abcdefABCDEF".utf8)
        var generator = SystemRandomNumberGenerator()
        for length in 0...18 {
            for suffix in ["", " 48", " 1024 77 88", " ", "g", "\u{7F}x", "\u{E9}", ":", "@`", "/G"] {
                for _ in 0..<20 {
                    let pointerDigits = (0..<length).map { _ in digits.randomElement(using: &generator)! }
                    let line = Array("0x".utf8) + pointerDigits + Array(suffix.utf8)
                    let expected: UInt64? = (1...16).contains(length) ? UInt64(String(decoding: pointerDigits, as: UTF8.self), radix: 16) : nil
                    line.withUnsafeBufferPointer { bytes in
                        var cursor = ByteCursor(position: bytes.baseAddress!, end: bytes.baseAddress! + bytes.count)
                        let value = cursor.hexPointer()
                        let text = String(decoding: line, as: UTF8.self)
                        XCTAssertEqual(value, expected, text)
                        // "0x" alone is not taken for the start of a pointer.
                        XCTAssertEqual(cursor.position - bytes.baseAddress!, line.count == 2 ? 0 : 2 + length, text)
                    }
                }
            }
        }
    }

    func testHostileNumbersAreErrorsNotCrashes() {
        // 4096 blocks of 2^48 − 1 bytes are just below 2^60 live bytes; the next passes it.
        let huge = (1...5000).map { "1: malloc 0x\(String($0, radix: 16)) 281474976710655" }.joined(separator: "\n")
        assertError(huge, line: 4097, contains: "live bytes exceed 2^60")
        assertError("1: memalign 0x10 9223372036854775808 16\n", line: 1, contains: "larger than 2^40")
        assertError("1: malloc 0x\u{1B}[31m 5\n", line: 1, contains: "'1: malloc 0x\\x1b[31m 5'")
        assertError("1: " + String(repeating: "a", count: 100_000) + " 0x1\n", line: 1, contains: "a line longer than 4096 bytes")
        XCTAssertThrowsError(try parse("1: " + String(repeating: "a", count: 100_000) + " 0x1\n")) { error in
            XCTAssertLessThan("\(error)".count, 200, "the message stays one short line")
        }
    }

    func testATraceWithNothingToReplayIsAnError() {
        for text in ["", "# only a comment\n\n", "1: free 0x0\n1: thread_done 0x0\n"] {
            XCTAssertThrowsError(try parse(text)) { error in
                XCTAssertEqual((error as? TraceError)?.line, 0)
                XCTAssertTrue("\(error)".contains("no allocation to replay"), "\(error)")
            }
        }
    }

    func testSemanticAnomaliesAreErrorsByDefault() {
        assertError("1: malloc 0x10 8\n1: free 0x20\n", line: 2, contains: "free of 0x20, which is not live")
        assertError("1: malloc 0x10 8\n\n1: malloc 0x10 8\n", line: 3, contains: "0x10 returned while already live (allocated at line 1)")
        assertError("1: realloc 0x30 0x20 8\n", line: 1, contains: "realloc of 0x20, which is not live")
        assertError("1: malloc 0x10 8\n1: malloc 0x20 8\n1: realloc 0x20 0x10 16\n", line: 3, contains: "realloc returned 0x20 while it is already live")
    }

    func testLenientSkipsAndCountsAnomalies() throws {
        let trace = try parse("""
            1: malloc 0x10 8
            2: free 0x20
            1: malloc 0x10 8
            3: realloc 0x40 0x30 24
            1: free 0x10
            1: free 0x40
            """, lenient: true)
        XCTAssertEqual(trace.anomalies.freesOfUnknownPointers, 1)
        XCTAssertEqual(trace.anomalies.pointersReturnedWhileLive, 1)
        XCTAssertEqual(trace.anomalies.reallocsOfUnknownPointers, 1)
        XCTAssertEqual(trace.anomalies.total, 3)
        XCTAssertEqual(trace.ops.map(\.kind), [AB_OP_MALLOC, AB_OP_MALLOC, AB_OP_FREE, AB_OP_FREE].map { UInt8($0) })
        XCTAssertEqual(trace.finalLiveBytes, 0)
    }

    func testLivePointerTableSurvivesGrowthAndChurn() throws {
        // Enough live pointers to grow the table several times, freed in an order that exercises
        // backward-shift deletion, then reused.
        var lines: [String] = []
        let count = 5000
        for index in 0..<count { lines.append("1: malloc 0x\(String(index * 4096 + 16, radix: 16)) \(index % 97 + 1)") }
        for index in stride(from: 0, to: count, by: 2) { lines.append("1: free 0x\(String(index * 4096 + 16, radix: 16))") }
        for index in stride(from: 0, to: count, by: 2) { lines.append("1: malloc 0x\(String(index * 4096 + 16, radix: 16)) 8") }
        for index in 0..<count { lines.append("1: free 0x\(String(index * 4096 + 16, radix: 16))") }
        let trace = try parse(lines.joined(separator: "\n"))
        XCTAssertEqual(trace.slotCount, count)
        XCTAssertEqual(trace.finalLiveBytes, 0)
        XCTAssertEqual(trace.ops.count, count * 3)
    }

    func testThreadsWhoseIdsShareLowBitsKeepTheirOwnIndex() throws {
        // 5, 69 and 133 fall in the same slot of the parser's recent-thread cache.
        let trace = try parse("""
            5: malloc 0x10 8
            69: malloc 0x20 8
            5: free 0x10
            133: malloc 0x30 8
            69: free 0x20
            133: free 0x30
            5: malloc 0x40 8
            """)
        XCTAssertEqual(trace.threadIDs, [5, 69, 133])
        XCTAssertEqual(trace.ops.map(\.thread), [0, 1, 0, 2, 1, 2, 0])
    }

    func testOpLayoutMatchesTheChild() {
        XCTAssertEqual(MemoryLayout<ab_op>.size, 16)
        XCTAssertEqual(MemoryLayout<ab_op>.stride, 16)
    }

    func testGuaranteedAlignmentFollowsCMalloc() {
        XCTAssertEqual(guaranteedAlignment(requested: 16, byteCount: 0), 1)
        XCTAssertEqual(guaranteedAlignment(requested: 16, byteCount: 1), 1)
        XCTAssertEqual(guaranteedAlignment(requested: 16, byteCount: 8), 8)
        XCTAssertEqual(guaranteedAlignment(requested: 16, byteCount: 12), 8)
        XCTAssertEqual(guaranteedAlignment(requested: 16, byteCount: 100), 16)
        XCTAssertEqual(guaranteedAlignment(requested: 64, byteCount: 1), 64)
        XCTAssertEqual(guaranteedAlignment(requested: 4, byteCount: 100), 4)
    }

    /// Issue 15 item 6: thread ids are indexed in 32 bits, so a trace of more than 65,536 threads
    /// (a long-running server's) parses, each op keeping its own thread's index.
    func testSeventyThousandThreadIDsParse() throws {
        let text = (1...70_000).map { "\($0): malloc 0x\(String($0 * 16, radix: 16)) 8\n" }.joined()
        let trace = try parse(text)
        XCTAssertEqual(trace.threadIDs.count, 70_000)
        XCTAssertEqual(trace.threadIDs.last, 70_000)
        XCTAssertEqual(trace.ops.map(\.thread), (0..<70_000).map { UInt32($0) })
        XCTAssertEqual(trace.threads.peakAlive, 1, "without a thread_done, a thread lives to its last line: here its only one")
    }

    /// Cross-thread frees and reallocs are counted against the thread that allocated the block or
    /// last reallocated it; a thread lives from its first line to its thread_done or, without one,
    /// to its last line; a thread id seen again after its thread_done starts a new lifetime.
    func testThreadStatistics() throws {
        let trace = try parse("""
            1: malloc 0x10 100
            2: malloc 0x20 200
            2: free 0x10
            1: realloc 0x30 0x20 50
            1: free 0x30
            2: thread_done 0x0
            3: malloc 0x40 8
            4: malloc 0x50 8
            3: free 0x40
            4: free 0x50
            2: malloc 0x60 8
            """)
        XCTAssertEqual(trace.threadIDs, [1, 2, 3, 4])
        var expected = ThreadStatistics()
        expected.crossThreadFrees = 1          // line 3: thread 2 frees thread 1's block
        expected.crossThreadFreedBytes = 100
        expected.crossThreadReallocs = 1       // line 4: thread 1 reallocs thread 2's block, then owns it (line 5)
        expected.crossThreadReallocatedBytes = 200
        // Lines 2–5: threads 1 and 2; lines 8–9: threads 3 and 4. Thread 1 has no thread_done and
        // ends at line 5, or 1, 3 and 4 would be alive at line 8.
        expected.peakAlive = 2
        XCTAssertEqual(trace.threads, expected)
    }

    func testOneThreadHasNoCrossThreadTraffic() throws {
        let trace = try parse("7: malloc 0x10 8\n7: realloc 0x20 0x10 16\n7: free 0x20\n7: thread_done 0x0\n")
        var expected = ThreadStatistics()
        expected.peakAlive = 1
        XCTAssertEqual(trace.threads, expected)
    }

    /// allocbench drains the ops chunk by chunk into the op stream; drained and taken together they
    /// are the ops of a whole parse.
    func testDrainedOpsAreTheWholeParse() throws {
        let text = Array((1...500).map { $0 % 4 == 0 ? "2: free 0x\(String(($0 - 1) * 16, radix: 16))\n" : "1: malloc 0x\(String($0 * 16, radix: 16)) \($0)\n" }.joined().utf8)
        let whole = try TraceParser.parse(text)
        // A buffer of its own: the parser is noncopyable, and fed outside any closure.
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: text.count, alignment: 1)
        defer { buffer.deallocate() }
        buffer.copyBytes(from: text)
        var parser = TraceParser()
        var drained: [ab_op] = []
        for start in stride(from: 0, to: buffer.count, by: 777) {
            try parser.feed(UnsafeRawBufferPointer(rebasing: buffer[start..<min(start + 777, buffer.count)]))
            parser.drainOps { drained.append(contentsOf: $0) }
        }
        let facts = try parser.finish()
        drained += parser.takeOps()
        XCTAssertEqual(drained.map { $0.size }, whole.ops.map { $0.size })
        XCTAssertEqual(drained.map(\.slot), whole.ops.map(\.slot))
        XCTAssertEqual(drained.map(\.thread), whole.ops.map(\.thread))
        XCTAssertEqual(facts.opCount, whole.ops.count)
        XCTAssertEqual(facts.threads, whole.threads)
    }

    /// Sizes and alignments the table entry cannot hold are kept beside it, exactly.
    func testOutsizedBlocksKeepTheirSizeAndAlignment() throws {
        let trace = try parse("""
            1: malloc 0x10 5000000000
            1: memalign 0x20 4096 24
            1: realloc 0x30 0x20 6000000000
            1: free 0x10
            1: realloc 0x40 0x30 8
            1: free 0x40
            """)
        XCTAssertEqual(trace.ops.map { $0.size }, [5_000_000_000, 24, 6_000_000_000, 5_000_000_000, 8, 8])
        XCTAssertEqual(trace.ops.map(\.align_log2), [4, 12, 12, 4, 12, 12])
        XCTAssertEqual(trace.peakLiveBytes, 11_000_000_000)
        XCTAssertEqual(trace.finalLiveBytes, 0)
    }
}
