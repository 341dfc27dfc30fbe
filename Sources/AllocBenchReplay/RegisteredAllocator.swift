import AllocBenchCore

/// An allocator as a replay child knows it: its description, plus its replay and conformance
/// entry points specialised for its concrete type (the generic code is inlined at the registry,
/// so the hot loop calls the allocator directly, without witness tables).
public struct RegisteredAllocator: Sendable {
    public let name: String
    public let summary: String
    public let isProcessMalloc: Bool
    @usableFromInline let buildNote: @Sendable () -> String?
    @usableFromInline let replayEntry: @Sendable (ReplaySession) -> Void
    @usableFromInline let conformanceEntry: @Sendable () -> [String]

    @inlinable
    public init<A: Allocator>(_ type: A.Type) {
        name = A.name
        summary = A.summary
        isProcessMalloc = A.isProcessMalloc
        buildNote = { A.buildNote() }
        replayEntry = { session in replay(A.self, session) }
        conformanceEntry = { ConformanceSuite.run(A.self) }
    }
}
