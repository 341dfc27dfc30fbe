import AllocBenchCore
import CAllocBench

/// An allocator as a replay child knows it: its description, plus its replay and conformance
/// entry points specialised for its concrete type (the generic code is inlined at the registry,
/// so the hot loop calls the allocator directly, without witness tables).
public struct RegisteredAllocator: Sendable {
    public let name: String
    public let summary: String
    public let isProcessMalloc: Bool
    public let isThreadSafe: Bool
    @usableFromInline let buildNote: @Sendable () -> String?
    @usableFromInline let replayEntry: @Sendable (ReplaySession) -> Void
    /// Runs one op of a per-thread replay: `{ executeOnThread(Type.self, $0, $1) }`, written by the
    /// generated registry for the concrete type (a C function cannot be made in generic code).
    /// nil: this child replays the allocator on one thread only.
    public let executeOp: ab_execute_op?
    #if !hasFeature(Embedded)
    @usableFromInline let conformanceEntry: @Sendable () -> [String]
    #endif

    /// `name` and `summary` replace the allocator's own where one type is offered under another
    /// row name: the process malloc of a lean child is glibc in one, musl or static glibc in others.
    @inlinable
    public init<A: Allocator>(_ type: A.Type, name: String? = nil, summary: String? = nil, executeOp: ab_execute_op? = nil) {
        self.executeOp = executeOp
        self.name = name ?? A.name
        self.summary = summary ?? A.summary
        isProcessMalloc = A.isProcessMalloc
        isThreadSafe = A.isThreadSafe
        buildNote = { A.buildNote() }
        replayEntry = { session in replay(A.self, session) }
        #if !hasFeature(Embedded)
        conformanceEntry = { ConformanceSuite.run(A.self) }
        #endif
    }
}
