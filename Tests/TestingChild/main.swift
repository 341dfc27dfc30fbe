import AllocBenchReplay

// A replay child for the harness's own tests: allocators whose page behaviour is known exactly,
// and allocators that fail in each way a row must report. Never part of `allocbench list` (the
// catalog only looks at allocbench-replay*).
ReplayChild.main(CommandLine.argc, CommandLine.unsafeArgv) { offer in
    _ = true
        && offer(RegisteredAllocator(GroundTruth.self))
        && offer(RegisteredAllocator(LazyFreeGroundTruth.self))
        && offer(RegisteredAllocator(CrashingAllocator.self))
        && offer(RegisteredAllocator(ExitingAllocator.self))
        && offer(RegisteredAllocator(HangingAllocator.self))
        && offer(RegisteredAllocator(OutOfMemoryAllocator.self))
        && offer(RegisteredAllocator(MisalignedAllocator.self))
        && offer(RegisteredAllocator(MallocCallingAllocator.self))
        && offer(RegisteredAllocator(ThreadedAllocator.self))
        && offer(RegisteredAllocator(ChattyAllocator.self))
}
