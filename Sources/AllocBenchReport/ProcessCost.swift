import AllocBenchModel

/// "Ten thousand small processes": what one process replaying this trace holds privately at its
/// peak, and what a fleet of such processes would hold.
public struct ProcessCost: Sendable, Equatable {
    public static let fleetSize = 10_000

    public var allocator: String
    /// RssAnon of the replay child at the baseline: what the process held before its first
    /// replayed allocation.
    public var baselineKilobytes: Int
    /// The allocator's own share: touched peak.
    public var allocatorKilobytes: Int
    public var pageSize: Int

    public init(allocator: String, baselineKilobytes: Int, allocatorKilobytes: Int, pageSize: Int) {
        self.allocator = allocator
        self.baselineKilobytes = baselineKilobytes
        self.allocatorKilobytes = allocatorKilobytes
        self.pageSize = pageSize
    }

    /// The process's page tables at its peak (VmPTE), when the row has whole-process figures.
    public var pageTablesKilobytes = 0

    /// nil for a row that has no measurement (failed, crashed, timed out).
    public init?(_ result: AllocatorResult, pageSize: Int) {
        guard result.isOK, let baseline = result.baseline, let touched = result.touchedPages else { return nil }
        self.init(allocator: result.allocator, baselineKilobytes: baseline.rssAnonKilobytes,
                  allocatorKilobytes: touched.peak * pageSize / 1024, pageSize: pageSize)
        if let peak = result.processPeakSample {
            // The whole process from its exec: its own part is everything but the allocator's.
            baselineKilobytes = peak.rssAnonKilobytes - allocatorKilobytes
            pageTablesKilobytes = peak.pageTablesKilobytes
        }
    }

    /// The process's private memory at its peak: RssAnon (its own part + the allocator's) and its
    /// page tables.
    public var perProcessKilobytes: Int { baselineKilobytes + allocatorKilobytes + pageTablesKilobytes }
    public var fleetKilobytes: Int { perProcessKilobytes * ProcessCost.fleetSize }
    public var allocatorFleetKilobytes: Int { allocatorKilobytes * ProcessCost.fleetSize }

    public func pages(_ kilobytes: Int) -> Int { AllocBenchModel.pages(kilobytes: kilobytes, pageSize: pageSize) }
}
