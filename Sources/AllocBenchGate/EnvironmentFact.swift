import AllocBenchModel

/// One fact about where a number was taken, and what the gate does when a baseline's differs from
/// the run's. The one table of them is `EnvironmentFact.all`; docs/gating.md gives the evidence for
/// each row.
///
/// The rule: a fact that can change a row's page counts fails closed (exit 3), but only for the rows
/// it can change, so a new mimalloc does not stop the slab's rows from being compared; a fact that
/// only describes the machine is a note. The kernel release sits between: the kernel does the
/// counting, so a new release is a warning that names the ground-truth test to run on it, and a
/// failure with `--strict-env`.
public struct EnvironmentFact: Sendable, Equatable {
    public enum Effect: String, Codable, Sendable {
        /// Can change the counts of every row.
        case countsEveryRow = "counts_every_row"
        /// Can change the counts of one allocator's rows only: the code of that allocator.
        case countsOwnRow = "counts_own_row"
        /// The kernel release: a warning, exit 3 with --strict-env.
        case kernelRelease = "kernel_release"
        /// Describes the machine: a note, never a failure.
        case describes
    }

    /// The key in the gate's environment fields and reports.
    public var name: String
    /// How the environment line shows it ("page size 4096").
    public var label: String
    public var effect: Effect
    /// For `countsOwnRow`: the allocator whose rows it affects; nil for a library fact, which
    /// names its allocator in its key (`library:mimalloc`).
    public var allocator: String?

    init(_ name: String, label: String? = nil, _ effect: Effect, allocator: String? = nil) {
        self.name = name
        self.label = label ?? name
        self.effect = effect
        self.allocator = allocator
    }

    /// The ground-truth test a new kernel release should pass before its numbers are trusted.
    public static let groundTruthTest = "swift test --filter GroundTruthTests"

    /// Key prefix of a preload row's library, `library:NAME`.
    static let libraryPrefix = "library:"

    /// Every fact, in the order reports show them. Library facts (`library:NAME`) follow, by name.
    public static let all: [EnvironmentFact] = [
        EnvironmentFact("page_size", label: "page size", .countsEveryRow),
        EnvironmentFact("machine", .countsEveryRow),
        EnvironmentFact("build", .countsEveryRow),
        EnvironmentFact("address_randomization", label: "ASLR", .countsEveryRow),
        EnvironmentFact("allocbench_version", label: "allocbench", .countsEveryRow),
        EnvironmentFact("transparent_hugepages", label: "THP", .countsEveryRow),
        EnvironmentFact("glibc", .countsOwnRow, allocator: "glibc"),
        EnvironmentFact("jemalloc", .countsOwnRow, allocator: "jemalloc"),
        EnvironmentFact("kernel_release", label: "kernel release", .kernelRelease),
        EnvironmentFact("kernel", .describes),
        EnvironmentFact("hostname", label: "host", .describes),
        EnvironmentFact("cpu", .describes),
        EnvironmentFact("cores", .describes),
    ]

    /// The fact a key names: one of `all`, or a library fact.
    public static func named(_ key: String) -> EnvironmentFact? {
        if key.hasPrefix(libraryPrefix) {
            let allocator = String(key.dropFirst(libraryPrefix.count))
            return EnvironmentFact(key, label: allocator, .countsOwnRow, allocator: allocator)
        }
        return all.first { $0.name == key }
    }

    /// `keys` in report order: the table's, then library facts by name, then anything unknown.
    public static func ordered(_ keys: some Sequence<String>) -> [String] {
        let present = Set(keys)
        let known = all.map(\.name).filter(present.contains)
        return known + present.subtracting(known).sorted()
    }

    /// "6.18.44" of "6.18.44-fc-v782": the leading dotted numbers of a uname release; the rest is
    /// the build (a local version, Debian's ABI number and flavour), which describes the machine.
    public static func kernelRelease(_ uname: String) -> String {
        let release = uname.prefix { $0.isASCII && ($0.isNumber || $0 == ".") }
        return release.isEmpty ? uname : String(release.reversed().drop { $0 == "." }.reversed())
    }

    /// The fields of one environment, keyed by fact name. `conditions` when known (a baseline, or a
    /// run this process just made); a run report read from a file has none, and a field a side does
    /// not know is not compared.
    static func fields(_ environment: RunEnvironment, _ conditions: MeasurementConditions?) -> [String: String] {
        var fields = [
            "kernel": environment.kernel,
            "kernel_release": kernelRelease(environment.kernel),
            "glibc": environment.glibc,
            "jemalloc": environment.jemalloc ?? "not built",
            "page_size": String(environment.pageSize),
            "machine": environment.machine,
            "allocbench_version": environment.allocbenchVersion,
        ]
        fields["transparent_hugepages"] = environment.transparentHugePages
        fields["hostname"] = environment.hostname
        fields["cpu"] = environment.cpuModel
        fields["cores"] = environment.cores.map(String.init)
        for (allocator, library) in environment.allocatorLibraries ?? [:] {
            fields[libraryPrefix + allocator] = library
        }
        if let conditions {
            fields["build"] = conditions.build
            fields["address_randomization"] = conditions.addressRandomization ? "on" : "off"
        }
        return fields
    }
}
