import AllocBenchReplay

// A replay child for the harness's own tests: allocators whose page behaviour is known exactly,
// and allocators that fail in each way a row must report. Never part of `allocbench list` (the
// catalog only looks at allocbench-replay*).
ReplayChild.main([
    RegisteredAllocator(GroundTruth.self),
    RegisteredAllocator(LazyFreeGroundTruth.self),
    RegisteredAllocator(CrashingAllocator.self),
    RegisteredAllocator(ExitingAllocator.self),
    RegisteredAllocator(HangingAllocator.self),
    RegisteredAllocator(OutOfMemoryAllocator.self),
    RegisteredAllocator(MisalignedAllocator.self),
    RegisteredAllocator(MallocCallingAllocator.self),
    RegisteredAllocator(ThreadedAllocator.self),
    RegisteredAllocator(ChattyAllocator.self),
])
