// liballocbench-recorder.so: an LD_PRELOAD interposer that records every heap operation of a program
// (and of the processes it forks and execs) as Android malloc_debug `record_allocs` text.
//
// It exports malloc, free, calloc, realloc, reallocarray, memalign, posix_memalign, aligned_alloc,
// valloc and pvalloc, and nothing else that a program can call. `allocbench record` drives it through
// the environment below; the recorder does nothing (every call passes straight through) when
// AB_RECORD_ENV_DIRECTORY is not set. The Swift runner (Sources/AllocBenchHarness/Recorder.swift)
// repeats these names; RecordTests check that the two agree.
#ifndef CALLOCBENCHRECORDER_H
#define CALLOCBENCHRECORDER_H

/// An existing directory. Each program image writes the spool file `<directory>/<pid>.<image>`,
/// where image 0 is the first program the process ran and image N the one after its Nth exec.
/// When recording fails part way, the reason is written to `<directory>/<pid>.<image>.error`.
/// A spool file is trace text followed by zero bytes; a forked child's begins with the line
/// `# forked from <parent pid>.<parent image> at <bytes of the parent's spool written before fork>`.
#define AB_RECORD_ENV_DIRECTORY "ALLOCBENCH_RECORD_DIR"
/// "1": append `<start_ns> <end_ns>` (CLOCK_MONOTONIC) to every line, and `<end_ns>` to thread_done.
#define AB_RECORD_ENV_TIMESTAMPS "ALLOCBENCH_RECORD_TIMESTAMPS"
/// "none": record only the process whose parent is AB_RECORD_ENV_PARENT (the command itself, across
/// its execs), not the processes it forks. Anything else: record every process.
#define AB_RECORD_ENV_FOLLOW "ALLOCBENCH_RECORD_FOLLOW"
/// The pid of the process that started the recorded command (allocbench record).
#define AB_RECORD_ENV_PARENT "ALLOCBENCH_RECORD_PARENT"

#endif
