import AllocBenchHarness
import ArgumentParser
import Foundation

struct NewAllocator: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new-allocator",
        abstract: "Write a new allocator module in Allocators/<Name>/ and register it.",
        discussion: """
            The skeleton compiles and is registered at once, so `make test` runs the conformance suite
            against it — and fails until the allocator is written. See docs/adding-an-allocator.md.
            """)

    @Argument(help: "The module's UpperCamelCase name, e.g. MyAlloc (selected as 'my-alloc').")
    var name: String

    @Option(name: .long, help: "The allocbench package to add it to.")
    var packagePath: String = "."

    func validate() throws {
        do {
            try AllocatorScaffold.validate(moduleName: name)
        } catch {
            throw ValidationError(error.description)
        }
    }

    func run() throws {
        do {
            let outcome = try AllocatorScaffold.create(moduleName: name, packagePath: packagePath)
            print("""
                created \(outcome.sourceFile)
                registered .module("\(name)") in \(packagePath)/Package.swift

                next:
                  swift build && .build/debug/allocbench list          # '\(outcome.allocatorName)' is there
                  .build/debug/allocbench conformance --allocators \(outcome.allocatorName)   # fails until it is written
                  .build/debug/allocbench --trace Benchmarks/traces/djb.txt --allocators glibc,\(outcome.allocatorName)
                """)
        } catch {
            fail(CommandFailure(error.kind, error.description))
        }
    }
}
