import AllocBenchReplay

// A replay child for the harness's own tests: allocators whose page behaviour is known exactly,
// and allocators that fail in each way a row must report. Never part of `allocbench list` (the
// catalog only looks at allocbench-replay*).
ReplayChild.main(CommandLine.argc, CommandLine.unsafeArgv) { offer in
    _ = true
        && offer(RegisteredAllocator(GroundTruth.self, executeOp: { executeOnThread(GroundTruth.self, $0, $1) }))
        && offer(RegisteredAllocator(LazyFreeGroundTruth.self, executeOp: { executeOnThread(LazyFreeGroundTruth.self, $0, $1) }))
        && offer(RegisteredAllocator(CrashingAllocator.self, executeOp: { executeOnThread(CrashingAllocator.self, $0, $1) }))
        && offer(RegisteredAllocator(ExitingAllocator.self, executeOp: { executeOnThread(ExitingAllocator.self, $0, $1) }))
        && offer(RegisteredAllocator(HangingAllocator.self, executeOp: { executeOnThread(HangingAllocator.self, $0, $1) }))
        && offer(RegisteredAllocator(OutOfMemoryAllocator.self, executeOp: { executeOnThread(OutOfMemoryAllocator.self, $0, $1) }))
        && offer(RegisteredAllocator(MisalignedAllocator.self, executeOp: { executeOnThread(MisalignedAllocator.self, $0, $1) }))
        && offer(RegisteredAllocator(MallocCallingAllocator.self, executeOp: { executeOnThread(MallocCallingAllocator.self, $0, $1) }))
        && offer(RegisteredAllocator(ThreadedAllocator.self, executeOp: { executeOnThread(ThreadedAllocator.self, $0, $1) }))
        && offer(RegisteredAllocator(ChattyAllocator.self, executeOp: { executeOnThread(ChattyAllocator.self, $0, $1) }))
        && offer(RegisteredAllocator(ThreadCheckingAllocator.self, executeOp: { executeOnThread(ThreadCheckingAllocator.self, $0, $1) }))
}
