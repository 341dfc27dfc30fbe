@testable import AllocBenchHarness
import AllocBenchModel
import CAllocBench
import XCTest

/// The whole-process figures against a process whose every anonymous page is known: a program with
/// no C library at all (`-nostdlib -static`, raw system calls) that speaks the replay child's
/// protocol. From its exec to its end marker it has its one stack page (its arguments, environment
/// and frames all fit in it) and the pages it writes of a mapping of its own; nothing else of it is
/// anonymous (it writes no global; the control block is a shared mapping).
final class WholeProcessGroundTruthTests: XCTestCase {
    /// Maps MAPPED pages after the begin marker, writes the first WRITTEN, unmaps the last UNMAPPED
    /// (which include written ones when WRITTEN > MAPPED - UNMAPPED), then ends: the values are
    /// compiled in (-D), so the program reads nothing.
    static let source = """
        #include <stddef.h>
        #include <sys/syscall.h>
        static long call(long number, long a, long b, long c, long d, long e, long f) {
        #if defined(__x86_64__)
            long result;
            register long r10 __asm__("r10") = d;
            register long r8 __asm__("r8") = e;
            register long r9 __asm__("r9") = f;
            __asm__ volatile("syscall" : "=a"(result) : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                             : "rcx", "r11", "memory");
            return result;
        #elif defined(__aarch64__)
            register long x8 __asm__("x8") = number;
            register long x0 __asm__("x0") = a;
            register long x1 __asm__("x1") = b;
            register long x2 __asm__("x2") = c;
            register long x3 __asm__("x3") = d;
            register long x4 __asm__("x4") = e;
            register long x5 __asm__("x5") = f;
            __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
            return x0;
        #else
        #error "the fixture knows x86-64 and aarch64"
        #endif
        }
        void _start(void) {
            char go;
            call(SYS_read, 5, (long)&go, 1, 0, 0, 0);
            volatile unsigned *control = (unsigned *)call(SYS_mmap, 0, 4096, 3 /* PROT_READ|PROT_WRITE */, 1 /* MAP_SHARED */, 4, 0);
            call(MARKER, 1 /* AB_MARK_BEGIN */, 0, 0, 0, 0, 0);
            char *region = (char *)call(SYS_mmap, 0, MAPPED * 4096L, 3, 0x22 /* MAP_PRIVATE|MAP_ANONYMOUS */, -1, 0);
            for (long page = 0; page < WRITTEN; page++) region[page * 4096] = 1;
            if (UNMAPPED > 0) call(SYS_munmap, (long)(region + (MAPPED - UNMAPPED) * 4096L), UNMAPPED * 4096L, 0, 0, 0, 0);
            call(MARKER, 2 /* AB_MARK_END */, 0, 0, 0, 0, 0);
            control[2] = 2; /* ab_control.state = AB_STATE_DONE */
            call(SYS_exit_group, 0, 0, 0, 0, 0, 0);
        }
        """

    private func measure(mapped: Int, written: Int, unmapped: Int) throws -> AllocatorResult {
        let directory = try TestPaths.temporaryDirectory()
        try Self.source.write(toFile: directory + "/process.c", atomically: true, encoding: .utf8)
        let executable = directory + "/whole-process-\(mapped)-\(written)-\(unmapped)"
        let built = try runCommand("/usr/bin/cc", [
            "-nostdlib", "-static", "-fno-pie", "-no-pie", "-O1", "-fno-stack-protector",
            "-DMARKER=\(AB_MARKER_SYSCALL)", "-DMAPPED=\(mapped)L", "-DWRITTEN=\(written)L", "-DUNMAPPED=\(unmapped)L",
            "-o", executable, directory + "/process.c",
        ], timeout: .seconds(120))
        XCTAssertEqual(built.status, 0, built.stderr)
        let entry = CatalogEntry(name: "raw", kind: .module, summary: "", note: "", executable: executable,
                                 childAllocator: "raw", environment: [], unavailableReason: nil)
        let benchmark = Benchmark(settings: RunSettings(touch: .none, timedRuns: 0, timeoutSeconds: 60, lenient: false))
        let run = try benchmark.run(tracePath: try writeTrace(GroundTruthTests.trace), allocators: [entry])
        return try XCTUnwrap(run.results.first)
    }

    func testExactWholeProcessPagesForSeveralShapes() throws {
        for (mapped, written, unmapped) in [(1, 0, 0), (1, 1, 0), (10, 6, 2), (10, 6, 6), (64, 64, 64), (300, 120, 50)] {
            let label = "N=\(mapped) M=\(written) K=\(unmapped)"
            let result = try measure(mapped: mapped, written: written, unmapped: unmapped)
            XCTAssertEqual(result.status, .ok, "\(label): \(result.detail ?? "")")
            let writtenAmongUnmapped = max(0, written - (mapped - unmapped))
            let end = try XCTUnwrap(result.processEndSample, label)
            let peak = try XCTUnwrap(result.processPeakSample, label)
            // One stack page, and the written pages still mapped (end) or all of them (peak).
            XCTAssertEqual(end.rssAnonKilobytes, 4 * (1 + written - writtenAmongUnmapped), label)
            XCTAssertEqual(peak.rssAnonKilobytes, 4 * (1 + written), label)
            // The mapping's whole length appears in VmSize at the peak, and leaves as it is unmapped.
            XCTAssertEqual(peak.vmSizeKilobytes - end.vmSizeKilobytes, 4 * unmapped, label)
            XCTAssertEqual(peak.vmSizeKilobytes - (result.baseline?.vmSizeKilobytes ?? 0), 4 * mapped, label)
            // The program's own pages: its text, read from the image (no page of it is anonymous).
            XCTAssertGreaterThan(end.rssFileKilobytes, 0, label)
            XCTAssertEqual(result.touchedPages, FinalAndPeak(final: written - writtenAmongUnmapped, peak: written), label)
        }
    }
}
