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

var targets: [Target] = [
    .target(
        name: "CAllocBench",
        path: "Sources/CAllocBench",
        cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-Wall", "-Wextra", "-Werror"])]
    ),
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
        swiftSettings: strictSwift
    ),
    .target(
        name: "AllocBenchHarness",
        dependencies: [
            "AllocBenchCore", "CAllocBench", "CAllocBenchZlib",
            .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        ],
        swiftSettings: strictSwift
    ),
    .executableTarget(
        name: "allocbench",
        dependencies: [
            "AllocBenchHarness", "AllocBenchCore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ],
        swiftSettings: strictSwift
    ),
    .executableTarget(
        name: "allocbench-replay",
        dependencies: ["AllocBenchReplay"]
            + allocatorRegistry.filter { !$0.ownProcess }.map { .target(name: $0.moduleName) },
        swiftSettings: strictSwift,
        plugins: ["AllocatorRegistryPlugin"]
    ),
    .plugin(name: "AllocatorRegistryPlugin", capability: .buildTool(), path: "Plugins/AllocatorRegistryPlugin"),
    .executableTarget(
        name: "parse-benchmark",
        dependencies: ["AllocBenchHarness", "AllocBenchCore"],
        path: "Benchmarks/ParseBenchmark",
        swiftSettings: strictSwift
    ),
    .testTarget(
        name: "AllocBenchTests",
        dependencies: ["AllocBenchCore", "AllocBenchHarness", "AllocBenchReplay", "CAllocBench"]
            + allocatorRegistry.filter { !$0.ownProcess }.map { .target(name: $0.moduleName) },
        swiftSettings: strictSwift
    ),
]

var products: [Product] = [
    .executable(name: "allocbench", targets: ["allocbench"]),
    .executable(name: "allocbench-replay", targets: ["allocbench-replay"]),
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
        swiftSettings: strictSwift
    ))
    if allocator.ownProcess {
        targets.append(.executableTarget(
            name: allocator.childExecutable,
            dependencies: ["AllocBenchReplay", .target(name: allocator.moduleName)],
            path: "Allocators/\(allocator.folder)/Child",
            swiftSettings: strictSwift,
            plugins: ["AllocatorRegistryPlugin"]
        ))
        products.append(.executable(name: allocator.childExecutable, targets: [allocator.childExecutable]))
    }
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
