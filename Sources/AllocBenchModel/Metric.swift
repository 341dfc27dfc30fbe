import Foundation

/// One number of a row, declared once: its key (baseline files, CSV, `--tolerance`), its title
/// (table, Markdown, HTML), unit, polarity, default tolerance, where the terminal table shows it,
/// and how it is read from a row. Every output and the gate iterate `Metric.all`, so a new metric
/// is one entry here plus the code that measures it (ordo-one/package-benchmark's `BenchmarkMetric`
/// is the model: one enum drives thresholds, output and exit codes).
public struct Metric: Sendable {
    public enum Unit: String, Sendable {
        case pages, faults, calls, ratio = "×", nanoseconds = "ns"
        case kilobytes = "kB"
    }

    /// Where the terminal table (and Markdown and HTML, which share its cells) shows a metric.
    public enum TableColumn: Sendable, Equatable {
        /// A column of its own, titled with the metric's title.
        case own
        /// A shared column: its cell lists "label value" for every metric of the group whose value
        /// is not zero ("mmap 9, munmap 2"), or "none".
        case listed(column: String, label: String)
        /// A shared column whose cell is "final/peak" of the two metrics that name it.
        case finalPeak(column: String)
    }

    /// Which table shows a metric: the whole process's (first, the seed's question) or the
    /// allocator's begin→end deltas.
    public enum Section: Sendable, Equatable {
        case wholeProcess
        case allocator
    }

    public var key: String
    public var title: String
    public var unit: Unit
    public var section: Section
    public var polarity: Polarity
    public var defaultTolerance: Tolerance
    /// Whether `check` and `compare` compare it. Absolute time, the ideal and the overhead are
    /// shown but not gated: time measures the machine, the others follow from gated metrics.
    public var isGated: Bool
    /// Compared only on traces with enough ops for time to mean anything.
    public var isTiming: Bool
    /// In the gate's Markdown summary table (every moved metric is in the table below it anyway).
    public var isHeadline: Bool
    /// A metric of one replay mode: the tables leave its column out of a trace run where no row
    /// has it (CSV keeps the key, empty).
    public var isShownOnlyWhereMeasured: Bool
    public var column: TableColumn
    /// Decimal places in text outputs (CSV keeps more).
    public var decimals: Int
    /// The value of a successful row, in the context of its run.
    public let read: @Sendable (_ row: AllocatorResult, _ context: Context) -> Double?

    /// What a metric may need besides its row: the other rows of its trace run (a ratio to
    /// glibc's time) and the page size (counters are in kB).
    public struct Context: Sendable {
        public var run: TraceRun?
        public var pageSize: Int

        public init(run: TraceRun?, pageSize: Int) {
            self.run = run
            self.pageSize = pageSize
        }
    }

    public init(key: String, title: String, unit: Unit, polarity: Polarity = .lowerIsBetter, defaultTolerance: Tolerance = .exact,
                isGated: Bool = true, isTiming: Bool = false, isHeadline: Bool = false, isShownOnlyWhereMeasured: Bool = false,
                column: TableColumn = .own, decimals: Int = 0, section: Section = .allocator,
                read: @escaping @Sendable (_ row: AllocatorResult, _ context: Context) -> Double?) {
        self.key = key
        self.title = title
        self.unit = unit
        self.section = section
        self.polarity = polarity
        self.defaultTolerance = defaultTolerance
        self.isGated = isGated
        self.isTiming = isTiming
        self.isHeadline = isHeadline
        self.isShownOnlyWhereMeasured = isShownOnlyWhereMeasured
        self.column = column
        self.decimals = decimals
        self.read = read
    }

    /// Whether `value` can be this metric's: a count (pages, faults, calls, kB) is a whole number
    /// from 0 to 2^53, where every integer is exact in a Double; a ratio or a time is finite and ≥ 0.
    public func admits(_ value: Double) -> Bool {
        guard value.isFinite, value >= 0 else { return false }
        switch unit {
        case .ratio, .nanoseconds: return true
        case .pages, .faults, .calls, .kilobytes: return value == value.rounded() && value <= 9_007_199_254_740_992
        }
    }

    /// The value as text outputs print it: "2309", "1.02", "413.4".
    public func text(_ value: Double) -> String {
        decimals == 0 ? String(Int(value.rounded())) : String(format: "%.\(decimals)f", value)
    }
}

extension Metric {
    /// Pages are counted exactly by the kernel (RssAnon, VmSize) and the replay is deterministic, so
    /// any change is real (docs/gating.md has the one measured exception, jemalloc's layout).
    public static let touchedFinal = Metric(key: "touched_final", title: "touched final", unit: .pages, isHeadline: true) {
        row, _ in row.touchedPages.map { Double($0.final) }
    }
    public static let touchedPeak = Metric(key: "touched_peak", title: "touched peak", unit: .pages, isHeadline: true) {
        row, _ in row.touchedPages.map { Double($0.peak) }
    }
    public static let mappedFinal = Metric(key: "mapped_final", title: "mapped final", unit: .pages) {
        row, _ in row.mappedPages.map { Double($0.final) }
    }
    public static let mappedPeak = Metric(key: "mapped_peak", title: "mapped peak", unit: .pages, isHeadline: true) {
        row, _ in row.mappedPages.map { Double($0.peak) }
    }
    /// The trace's peak live bytes in whole pages: what an allocator with no overhead would touch.
    public static let ideal = Metric(key: "ideal_pages", title: "ideal", unit: .pages, isGated: false) {
        row, _ in Double(row.idealPages)
    }
    /// Touched peak / ideal.
    public static let overhead = Metric(key: "overhead", title: "overhead", unit: .ratio, isGated: false, decimals: 2) {
        row, _ in row.overhead
    }
    /// Minor faults include faults on file-backed pages (the allocator's own code and data), which
    /// depend on the page cache and fault-around; 5% of the baseline, and never less than 4 faults.
    public static let minorFaults = Metric(
        key: "minor_faults", title: "faults", unit: .faults,
        defaultTolerance: .both(Tolerance.Allowance(relative: 0.05, absolute: 4)), isHeadline: true
    ) { row, _ in row.minorFaults.map(Double.init) }
    /// Page tables grow in 4 kB pages, one per 2 MiB of address space touched, so mapping addresses
    /// move them by a page or three: 10%, and never less than 12 kB.
    public static let pageTablesFinal = Metric(
        key: "page_tables_kb_final", title: "page tables final", unit: .kilobytes,
        defaultTolerance: .both(Tolerance.Allowance(relative: 0.10, absolute: 12)), column: .finalPeak(column: "page tables kB")
    ) { row, _ in row.pageTablesKilobytes.map { Double($0.final) } }
    public static let pageTablesPeak = Metric(
        key: "page_tables_kb_peak", title: "page tables peak", unit: .kilobytes,
        defaultTolerance: .both(Tolerance.Allowance(relative: 0.10, absolute: 12)), column: .finalPeak(column: "page tables kB")
    ) { row, _ in row.pageTablesKilobytes.map { Double($0.peak) } }

    /// A replay of a fixed trace makes the same memory-management calls every time.
    static func calls(_ syscall: MemorySyscall) -> Metric {
        Metric(key: syscall.rawValue + "_calls", title: syscall.rawValue + " calls", unit: .calls,
               column: .listed(column: "mm syscalls", label: syscall.rawValue)) { row, _ in
            row.mmSyscalls.map { Double($0[syscall.rawValue] ?? 0) }
        }
    }
    public static let mmapCalls = calls(.mmap)
    public static let munmapCalls = calls(.munmap)
    public static let brkCalls = calls(.brk)
    public static let madviseCalls = calls(.madvise)
    public static let mremapCalls = calls(.mremap)
    /// shmat, shmdt, process_madvise.
    public static let otherCalls = calls(.other)

    /// Pages handed back with madvise(MADV_FREE) that RssAnon still counts (the kernel reclaims
    /// them only under memory pressure), at the end and at the instant of the touched peak; and
    /// touched pages without them, what the allocator holds once the kernel needs the memory.
    public static let lazyFreeFinal = sampled(key: "lazy_free_final", title: "lazy free final", at: .end,
                                              column: .finalPeak(column: "lazy free")) { $0.lazyFreeKilobytes }
    public static let lazyFreeAtPeak = sampled(key: "lazy_free_at_peak", title: "lazy free at peak", at: .touchedPeak,
                                               column: .finalPeak(column: "lazy free")) { $0.lazyFreeKilobytes }
    public static let touchedNotLazyFinal = sampled(key: "touched_not_lazy_final", title: "touched − lazy free final", at: .end,
                                                    gated: false, column: .finalPeak(column: "touched − lazy free")) {
        $0.rssAnonKilobytes - $0.lazyFreeKilobytes
    }
    public static let touchedNotLazyPeak = sampled(key: "touched_not_lazy_peak", title: "touched − lazy free at peak", at: .touchedPeak,
                                                   gated: false, column: .finalPeak(column: "touched − lazy free")) {
        $0.rssAnonKilobytes - $0.lazyFreeKilobytes
    }

    /// Median ns/op over the timed runs: shown, never gated (it measures the machine). A per-thread
    /// replay's leaves out its hand-overs between threads (the next metric).
    public static let nanosecondsPerOp = Metric(key: "ns_per_op", title: "ns/op", unit: .nanoseconds, isGated: false, decimals: 1) {
        row, _ in row.nsPerOp?.median
    }
    /// Median ns/op of the allocator divided by glibc's median in the same run: a slower machine
    /// moves both. Even the ratio moves by tens of percent on a shared machine, hence ±50%. Left
    /// out for glibc itself and when either side was not timed.
    public static let nanosecondsPerOpVersusGlibc = Metric(
        key: "ns_per_op_vs_glibc", title: "vs glibc", unit: .ratio,
        defaultTolerance: .both(Tolerance.Allowance(relative: 0.50, absolute: nil)), isTiming: true, isHeadline: true, decimals: 3
    ) { row, context in
        guard row.allocator != glibcName, let time = row.nsPerOp?.median,
              let glibc = context.run?.results.first(where: { $0.allocator == glibcName && $0.isOK })?.nsPerOp?.median, glibc > 0
        else { return nil }
        return (time / glibc * ratioDecimals).rounded() / ratioDecimals
    }

    /// A per-thread replay's hand-overs between OS threads, per op of the trace (median over the
    /// timed runs): each a futex wake and a context switch, the replay's cost and not the
    /// allocator's, so ns/op leaves them out; ns/op plus this is the replay's wall time per op.
    public static let handOverNanosecondsPerOp = Metric(
        key: "hand_over_ns_per_op", title: "hand-over ns/op", unit: .nanoseconds, isGated: false, isShownOnlyWhereMeasured: true,
        decimals: 1
    ) { row, _ in row.handOvers?.nsPerOp.median }

    /// The instants a counter metric can be read at.
    public enum Instant: Sendable {
        /// The end marker.
        case end
        /// The first instant RssAnon reached its peak.
        case touchedPeak
    }

    /// A counter of the row's samples as a delta from the baseline, in pages, at `instant`: a new
    /// /proc counter is a field of `MemorySample`, the code that reads it, and these declarations.
    public static func sampled(key: String, title: String, at instant: Instant, gated: Bool = true, column: TableColumn = .own,
                               _ counter: @escaping @Sendable (MemorySample) -> Int) -> Metric {
        Metric(key: key, title: title, unit: .pages, isGated: gated, column: column) { row, context in
            guard let base = row.baseline,
                  let sample = instant == .end ? row.endSample : row.touchedPeakSample else { return nil }
            return Double(pages(kilobytes: counter(sample) - counter(base), pageSize: context.pageSize))
        }
    }

    /// A counter of the whole process, in kB as /proc prints it, at the end marker or at its own
    /// peak from the exec to the end marker (docs/metrics.md, "Whole process").
    public static func wholeProcess(_ field: String, _ title: String, peak: Bool, tolerance: Tolerance = .exact,
                                    _ counter: @escaping @Sendable (MemorySample) -> Int) -> Metric {
        Metric(key: "process_\(field)_kb_\(peak ? "peak" : "end")", title: "process \(title) \(peak ? "peak" : "end")", unit: .kilobytes,
               defaultTolerance: tolerance, column: .finalPeak(column: title + " kB"), section: .wholeProcess) { row, _ in
            (peak ? row.processPeakSample : row.processEndSample).map { Double(counter($0)) }
        }
    }
    /// File pages come in through fault-around, which maps the neighbours of a faulting page that
    /// happen to be in the page cache: a few pages either way, by what else ran. 10%, at least 64 kB.
    static let residentFileTolerance = Tolerance.both(Tolerance.Allowance(relative: 0.10, absolute: 64))
    /// Page tables: as the allocator's page tables (a page or three with the addresses).
    static let pageTableTolerance = Tolerance.both(Tolerance.Allowance(relative: 0.10, absolute: 12))
    public static let processRssAnonEnd = wholeProcess("rss_anon", "RssAnon", peak: false) { $0.rssAnonKilobytes }
    public static let processRssAnonPeak = wholeProcess("rss_anon", "RssAnon", peak: true) { $0.rssAnonKilobytes }
    public static let processRssFileEnd = wholeProcess("rss_file", "RssFile", peak: false, tolerance: residentFileTolerance) { $0.rssFileKilobytes }
    public static let processRssFilePeak = wholeProcess("rss_file", "RssFile", peak: true, tolerance: residentFileTolerance) { $0.rssFileKilobytes }
    public static let processVmSizeEnd = wholeProcess("vm_size", "VmSize", peak: false) { $0.vmSizeKilobytes }
    public static let processVmSizePeak = wholeProcess("vm_size", "VmSize", peak: true) { $0.vmSizeKilobytes }
    public static let processVmPTEEnd = wholeProcess("vm_pte", "VmPTE", peak: false, tolerance: pageTableTolerance) { $0.pageTablesKilobytes }
    public static let processVmPTEPeak = wholeProcess("vm_pte", "VmPTE", peak: true, tolerance: pageTableTolerance) { $0.pageTablesKilobytes }
    public static let processVmStkEnd = wholeProcess("vm_stk", "VmStk", peak: false) { $0.stackKilobytes }
    public static let processVmStkPeak = wholeProcess("vm_stk", "VmStk", peak: true) { $0.stackKilobytes }

    /// Every metric, in the order every output shows them.
    public static let all: [Metric] = [
        processRssAnonEnd, processRssAnonPeak, processRssFileEnd, processRssFilePeak, processVmSizeEnd, processVmSizePeak,
        processVmPTEEnd, processVmPTEPeak, processVmStkEnd, processVmStkPeak,
        touchedFinal, touchedPeak, lazyFreeFinal, lazyFreeAtPeak, touchedNotLazyFinal, touchedNotLazyPeak,
        mappedFinal, mappedPeak, ideal, overhead, minorFaults, pageTablesFinal, pageTablesPeak,
        mmapCalls, munmapCalls, brkCalls, madviseCalls, mremapCalls, otherCalls, nanosecondsPerOp, nanosecondsPerOpVersusGlibc,
        handOverNanosecondsPerOp,
    ]

    /// The metrics `check` and `compare` compare and baselines record.
    public static let gated = all.filter(\.isGated)

    /// Other spellings accepted in `--tolerance`: the issue that asked for the gate wrote
    /// `ns_per_op=+25%`, and absolute time is never gated, so it can only mean the ratio.
    static let aliases = ["ns_per_op": nanosecondsPerOpVersusGlibc.key]

    /// The metric called `name` (or one of its aliases) among `metrics`.
    public static func named(_ name: String, in metrics: [Metric] = gated) -> Metric? {
        let canonical = aliases[name] ?? name
        return metrics.first { $0.key == canonical }
    }

    /// Decimal places kept for the time ratio, so baseline files change only when the ratio does.
    static let ratioDecimals = 1000.0

    /// The allocator every time is measured against.
    public static let glibcName = "glibc"

    /// Every value of `metrics` one successful row has, by key.
    public static func values(of row: AllocatorResult, in context: Context, metrics: [Metric] = gated) -> [String: Double] {
        var values: [String: Double] = [:]
        for metric in metrics {
            if let value = metric.read(row, context) { values[metric.key] = value }
        }
        return values
    }
}
