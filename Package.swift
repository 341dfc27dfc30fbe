// swift-tools-version: 6.1
import PackageDescription

// MARK: - The allocator registry
//
// One line per allocator module. Each module lives in `Allocators/<Folder>/`, is built as the
// Swift module `<Folder>Allocator`, and declares one public type named `<Folder>` that conforms
// to `AllocBenchCore.Allocator`. The registry plugin turns this list into the replay child's
// table of allocators, so adding an allocator is: copy a folder, add one line here.
//
// `.ownProcess` modules replace the process-wide malloc when linked (jemalloc does), so they get
// an executable of their own, `allocbench-replay-<folder lowercased>`, built from
// `Allocators/<Folder>/Child/`; everything else runs inside the shared `allocbench-replay`.
let allocatorRegistry: [AllocatorModule] = [
    .module("SystemMalloc"),
    .module("BssArena"),
    .module("Slab"),
    .module("Jemalloc", ownProcess: true, systemLibrary: .init(name: "CJemalloc", pkgConfig: "jemalloc", apt: "libjemalloc-dev")),
]

// MARK: - Targets

struct AllocatorModule {
    /// A C library the module links, declared by `Allocators/<Folder>/<name>/module.modulemap`.
    struct SystemLibrary {
        var name: String
        var pkgConfig: String
        var apt: String
    }

    var folder: String
    var ownProcess: Bool
    var systemLibrary: SystemLibrary?

    static func module(_ folder: String, ownProcess: Bool = false, systemLibrary: SystemLibrary? = nil) -> AllocatorModule {
        AllocatorModule(folder: folder, ownProcess: ownProcess, systemLibrary: systemLibrary)
    }

    var moduleName: String { folder + "Allocator" }
    var childExecutable: String { "allocbench-replay-" + folder.lowercased() }
}

let strictSwift: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .unsafeFlags(["-warnings-as-errors"]),
]

/// Code that runs inside a replay child is always optimised, in debug builds too: unspecialised
/// generic code instantiates runtime metadata on first use, which writes a fresh page of the Swift
/// runtime's bss between the two snapshots and would be charged to the allocator. (Debug
/// assertions stay on: DEBUG is still defined in debug builds.)
let replayChildSwift: [SwiftSetting] = strictSwift + [.unsafeFlags(["-O"])]

var targets: [Target] = [
    .target(
        name: "CAllocBench",
        path: "Sources/CAllocBench",
        cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-Wall", "-Wextra", "-Werror"])]
    ),
    // The LD_PRELOAD interposer of `allocbench record`, built as liballocbench-recorder.so beside the CLI.
    .target(
        name: "CAllocBenchRecorder",
        path: "Sources/CAllocBenchRecorder",
        exclude: ["link"],
        cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"])],
        // Only libc may load into recorded programs: no Swift startup object, no runtime libraries
        // (link/ld-as-needed says why it takes a linker wrapper).
        linkerSettings: [.unsafeFlags([
            "-nostartfiles", "-Xclang-linker", "--ld-path=\(Context.packageDirectory)/Sources/CAllocBenchRecorder/link/ld-as-needed",
        ])]
    ),
    // The parent's signal cleanup (temporary files, spools, a recorded command); never in a child.
    .target(
        name: "CAllocBenchCleanup",
        path: "Sources/CAllocBenchCleanup",
        cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-Wall", "-Wextra", "-Werror"])]
    ),
    // The trace parser's software prefetch (a header-only inline function).
    .systemLibrary(
        name: "CAllocBenchZlib",
        path: "Sources/CAllocBenchZlib",
        pkgConfig: "zlib",
        providers: [.apt(["zlib1g-dev"])]
    ),
    .target(
        name: "AllocBenchCore",
        dependencies: ["CAllocBench"],
        swiftSettings: strictSwift
    ),
    .target(
        name: "AllocBenchReplay",
        dependencies: ["AllocBenchCore", "CAllocBench"],
        swiftSettings: replayChildSwift
    ),
    // The result model: the run, its rows and samples, and the one metric table. No syscalls,
    // no spawning; the harness produces it, the gate, the reports and the text formats read it.
    .target(
        name: "AllocBenchModel",
        dependencies: ["AllocBenchCore"],
        swiftSettings: strictSwift
    ),
    .target(
        name: "AllocBenchHarness",
        dependencies: [
            "AllocBenchCore", "AllocBenchModel", "CAllocBench", "CAllocBenchCleanup", "CAllocBenchZlib",
            .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ],
        swiftSettings: strictSwift
    ),
    .target(
        name: "AllocBenchGate",
        dependencies: ["AllocBenchModel"],
        swiftSettings: strictSwift
    ),
    .target(
        name: "AllocBenchReport",
        dependencies: ["AllocBenchModel"],
        swiftSettings: strictSwift
    ),
    .executableTarget(
        name: "allocbench",
        dependencies: [
            "AllocBenchHarness", "AllocBenchCore", "AllocBenchModel", "AllocBenchGate", "AllocBenchReport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ],
        swiftSettings: strictSwift
    ),
    .executableTarget(
        name: "allocbench-replay",
        dependencies: ["AllocBenchReplay"]
            + allocatorRegistry.filter { !$0.ownProcess }.map { .target(name: $0.moduleName) },
        swiftSettings: replayChildSwift,
        // lld puts the child's record (a large-data section) after .bss and ends `_end` there, so
        // the bss tail is the rest of the record's page; gold would end `_end` before it.
        linkerSettings: [.unsafeFlags(["-use-ld=lld"])],
        plugins: ["AllocatorRegistryPlugin"]
    ),
    .plugin(name: "AllocatorRegistryPlugin", capability: .buildTool(), path: "Plugins/AllocatorRegistryPlugin"),
    .executableTarget(
        name: "parse-benchmark",
        dependencies: ["AllocBenchHarness", "AllocBenchCore"],
        path: "Benchmarks/ParseBenchmark",
        swiftSettings: strictSwift
    ),
    .executableTarget(
        name: "allocbench-testing-child",
        dependencies: ["AllocBenchReplay", "AllocBenchCore", "CAllocBench"],
        path: "Tests/TestingChild",
        swiftSettings: replayChildSwift
    ),
    // Pure logic (the parser, the gate, the metric table, the text formats): no child process,
    // seconds to run. `swift test --filter AllocBenchUnitTests` runs these alone.
    .testTarget(
        name: "AllocBenchUnitTests",
        dependencies: ["AllocBenchCore", "AllocBenchModel", "AllocBenchHarness", "AllocBenchGate", "AllocBenchReport", "CAllocBench"],
        swiftSettings: strictSwift
    ),
    // Everything that spawns replay children, the CLI, the recorder or a compiler.
    .testTarget(
        name: "AllocBenchTests",
        dependencies: ["AllocBenchCore", "AllocBenchModel", "AllocBenchHarness", "AllocBenchReplay", "CAllocBench", "AllocBenchGate",
                       "AllocBenchReport",
                       "allocbench", "allocbench-replay", "allocbench-testing-child",
                       .product(name: "ZIPFoundation", package: "ZIPFoundation")]
            + allocatorRegistry.map { .target(name: $0.ownProcess ? $0.childExecutable : $0.moduleName) },
        swiftSettings: strictSwift
    ),
]

var products: [Product] = [
    .executable(name: "allocbench", targets: ["allocbench"]),
    .executable(name: "allocbench-replay", targets: ["allocbench-replay"]),
    .library(name: "allocbench-recorder", type: .dynamic, targets: ["CAllocBenchRecorder"]),
]

for allocator in allocatorRegistry {
    var dependencies: [Target.Dependency] = ["AllocBenchCore", "CAllocBench"]
    var excluded: [String] = allocator.ownProcess ? ["Child"] : []
    if let library = allocator.systemLibrary {
        targets.append(.systemLibrary(
            name: library.name,
            path: "Allocators/\(allocator.folder)/\(library.name)",
            pkgConfig: library.pkgConfig,
            providers: [.apt([library.apt])]
        ))
        dependencies.append(.target(name: library.name))
        excluded.append(library.name)
    }
    targets.append(.target(
        name: allocator.moduleName,
        dependencies: dependencies,
        path: "Allocators/\(allocator.folder)",
        exclude: excluded,
        swiftSettings: replayChildSwift
    ))
    if allocator.ownProcess {
        targets.append(.executableTarget(
            name: allocator.childExecutable,
            dependencies: ["AllocBenchReplay", .target(name: allocator.moduleName)],
            path: "Allocators/\(allocator.folder)/Child",
            swiftSettings: replayChildSwift,
            plugins: ["AllocatorRegistryPlugin"]
        ))
        products.append(.executable(name: allocator.childExecutable, targets: [allocator.childExecutable]))
    }
}

// MARK: - Fuzz targets
//
// libFuzzer executables (`make fuzz`, docs/architecture.md "Fuzzing"). They define
// LLVMFuzzerTestOneInput and no `main` (libFuzzer's is linked by `-sanitize=fuzzer`), so they
// cannot link in an ordinary build: they exist only when ALLOCBENCH_FUZZ=1, which the Makefile
// sets together with the sanitizer flags.
if Context.environment["ALLOCBENCH_FUZZ"] == "1" {
    targets += [
        .executableTarget(
            name: "ParserFuzzer",
            dependencies: ["AllocBenchCore", "AllocBenchHarness"],
            path: "Fuzz/ParserFuzzer",
            swiftSettings: strictSwift
        ),
        .executableTarget(
            name: "BaselineFuzzer",
            dependencies: ["AllocBenchGate", "AllocBenchModel"],
            path: "Fuzz/BaselineFuzzer",
            swiftSettings: strictSwift
        ),
    ]
}

let package = Package(
    name: "allocbench",
    platforms: [.macOS(.v13)],
    products: products,
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
    ],
    targets: targets
)
