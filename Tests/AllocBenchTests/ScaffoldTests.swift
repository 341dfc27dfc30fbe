@testable import AllocBenchHarness
import AllocBenchModel
import Foundation
import XCTest

final class ScaffoldTests: XCTestCase {
    func testNamesAndRegistryLine() throws {
        XCTAssertEqual(AllocatorScaffold.allocatorName(forModule: "MyAlloc"), "my-alloc")
        XCTAssertEqual(AllocatorScaffold.allocatorName(forModule: "Bump"), "bump")
        XCTAssertThrowsError(try AllocatorScaffold.validate(moduleName: "my_alloc"))
        XCTAssertThrowsError(try AllocatorScaffold.validate(moduleName: "lower"))
        XCTAssertThrowsError(try AllocatorScaffold.validate(moduleName: "Glibc"))
        XCTAssertNoThrow(try AllocatorScaffold.validate(moduleName: "Slab2"))

        let manifest = try String(contentsOfFile: TestPaths.packageRoot + "/Package.swift", encoding: .utf8)
        let updated = try AllocatorScaffold.manifestAddingRegistryLine(manifest, moduleName: "Bump", path: "Package.swift")
        let added = updated.components(separatedBy: "\n").filter { !manifest.components(separatedBy: "\n").contains($0) }
        XCTAssertEqual(added, ["    .module(\"Bump\"),"], "exactly one line is added")
        XCTAssertThrowsError(try AllocatorScaffold.manifestAddingRegistryLine(updated, moduleName: "Bump", path: "Package.swift"))
        XCTAssertThrowsError(try AllocatorScaffold.manifestAddingRegistryLine("let package = 1", moduleName: "Bump", path: "Package.swift"))
    }

    /// The walk-through of docs/adding-an-allocator.md, for real: in a copy of the package, the
    /// scaffold builds and fails the conformance suite; the page's bump allocator builds, conforms
    /// and replays.
    func testScaffoldAndTheDocumentedBumpAllocator() throws {
        let copy = try TestPaths.temporaryDirectory() + "/allocbench"
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        let tar = "tar -C '\(TestPaths.packageRoot)' --exclude='./.build*' --exclude='./.swiftpm' -cf - . | tar -C '\(copy)' -xf -"
        XCTAssertEqual(try runCommand("/bin/sh", ["-c", tar]).status, 0)
        defer { try? FileManager.default.removeItem(atPath: copy) }

        let scaffold = try runCommand(TestPaths.cli, ["new-allocator", "Bump", "--package-path", copy])
        XCTAssertEqual(scaffold.status, 0, scaffold.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: copy + "/Allocators/Bump/Bump.swift"))
        let again = try runCommand(TestPaths.cli, ["new-allocator", "Bump", "--package-path", copy])
        XCTAssertEqual(again.status, 64, "a second scaffold of the same name is refused")

        let child = copy + "/.build/debug/allocbench-replay"
        try build(copy)
        XCTAssertTrue(try runCommand(child, ["describe"]).stdout.contains("bump\tmodule\tBump: not written yet."))
        let failing = try runCommand(child, ["conformance", "bump"])
        XCTAssertEqual(failing.status, 4, "the skeleton fails the suite until it is written")
        XCTAssertTrue(failing.stderr.contains("returned nil"), failing.stderr)

        let page = try String(contentsOfFile: TestPaths.packageRoot + "/docs/adding-an-allocator.md", encoding: .utf8)
        let code = try XCTUnwrap(Self.codeBlock(after: "<!-- file: Allocators/Bump/Bump.swift -->", in: page))
        try code.write(toFile: copy + "/Allocators/Bump/Bump.swift", atomically: true, encoding: .utf8)
        try build(copy)
        let passing = try runCommand(child, ["conformance", "bump"])
        XCTAssertEqual(passing.status, 0, passing.stderr)
        XCTAssertEqual(passing.stdout, "bump: conformant\n")

        // Measured in the lean child: the same source, compiled as Embedded Swift and linked with musl.
        let lean = try runCommand(copy + "/Sources/LeanChild/build.sh", [copy + "/.build/debug"], timeout: .seconds(300))
        XCTAssertEqual(lean.status, 0, lean.stderr)
        let entry = CatalogEntry(name: "bump", kind: .module, summary: "", note: "", executable: copy + "/.build/debug/allocbench-lean-bump",
                                 childAllocator: "bump", environment: [], unavailableReason: nil)
        let benchmark = Benchmark(settings: RunSettings(touch: .pages, timedRuns: 1, timeoutSeconds: 60, lenient: false))
        let run = try benchmark.run(tracePath: TestPaths.bundledTraces + "/djb.txt", allocators: [entry])
        let row = try XCTUnwrap(run.results.first)
        XCTAssertEqual(row.status, .ok, row.detail ?? "")
        // The lean module child's malloc maps each block (child.c, AB_MMAP_MALLOC): a malloc in the
        // replay would be a second mmap.
        XCTAssertEqual(row.mmSyscalls?["mmap"], 1, "the bump allocator's one chunk, and nothing else")
        XCTAssertEqual(row.mappedPages, FinalAndPeak(final: 256, peak: 256), "one 1 MiB chunk")
        XCTAssertEqual(row.touchedPages, FinalAndPeak(final: 1, peak: 1), "1076 bytes in one page")
    }

    private func build(_ package: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let result = try runCommand("/usr/bin/env", ["swift", "build", "--package-path", package, "--product", "allocbench-replay"])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr, file: file, line: line)
    }

    /// The fenced code block that follows `marker` in a Markdown text.
    static func codeBlock(after marker: String, in text: String) -> String? {
        guard let markerRange = text.range(of: marker),
              let open = text.range(of: "```swift\n", range: markerRange.upperBound..<text.endIndex),
              let close = text.range(of: "\n```", range: open.upperBound..<text.endIndex) else { return nil }
        return String(text[open.upperBound..<close.lowerBound]) + "\n"
    }
}
