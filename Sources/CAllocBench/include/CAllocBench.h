// The C side of allocbench: the binary layouts that the parent and the replay child share, and thin
// wrappers for the system calls Swift cannot reach (variadic ptrace, seccomp BPF, linker symbols).
// Every name is prefixed `ab_`. Layouts are C so that both processes agree on them byte for byte.
#ifndef CALLOCBENCH_H
#define CALLOCBENCH_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>
// The C library calls the replay code and the module allocators make (mmap, munmap, madvise,
// memcpy, malloc, write, getenv, strtoull, …). Swift code that must also compile as Embedded
// Swift (the lean replay children: no Glibc module there) imports them from here, never from Glibc.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// MARK: - The op stream (written by the parser in the parent, mapped read-only by every child)

enum {
    AB_OP_MALLOC = 1,    // slot := allocate(size, 16)
    AB_OP_CALLOC = 2,    // slot := allocateZeroed(size, 16); size is nmemb * size, checked for overflow
    AB_OP_MEMALIGN = 3,  // slot := allocate(size, 1 << align_log2)
    AB_OP_REALLOC = 4,   // slot := reallocate(slot, size); the new block takes over the old block's slot
    AB_OP_FREE = 5,      // deallocate(slot)
};

/// One replayed operation. Pointers are replaced by dense slot indices so that a child needs only a
/// table of `slot_count` entries, and a slot is reused once its block is freed. The size takes 48
/// bits (the parser refuses sizes of 2^48 or more) so that the thread index has 32 and the op stays
/// 16 bytes.
typedef struct ab_op {
    uint32_t slot;       // the block's slot
    uint32_t thread;     // dense thread index: ParsedTrace.threadIDs maps it back to the tid
    uint8_t kind;        // AB_OP_*
    uint8_t align_log2;  // log2 of the block's alignment (4 for malloc, calloc and realloc)
    uint64_t size : 48;  // requested bytes (free: unused); Swift: read `op.size`, never `\.size` (a key path
                         // to an imported bit-field crashes swiftc 6.3 in debug builds)
} ab_op;

_Static_assert(sizeof(ab_op) == 16, "ab_op is 16 bytes: four ops per cache line");
_Static_assert(offsetof(ab_op, kind) == 8, "ab_op layout");

#define AB_STREAM_MAGIC 0x314D525453424Aull  /* "JBSTRM1" */
#define AB_STREAM_VERSION 2u  /* 2: 32-bit thread index, 48-bit size */
/// The page size the replay children and the module allocators are built for: their size classes
/// and page arithmetic are compile-time constants (Swift: `Page.size`, `Page.shift`). A replay child
/// refuses to start on a kernel whose page size differs.
#define AB_PAGE_SIZE 4096
#define AB_PAGE_SHIFT 12
/// The shared control block's mapping: one page, written by the child, read by the parent.
#define AB_CONTROL_BLOCK_SIZE 4096

#define AB_STREAM_HEADER_BYTES 4096u

typedef struct ab_stream_header {
    uint64_t magic;
    uint32_t version;
    uint32_t header_bytes;     // ops start here
    uint64_t op_count;
    uint64_t slot_count;       // the largest number of blocks live at once
} ab_stream_header;

_Static_assert(sizeof(ab_stream_header) <= AB_STREAM_HEADER_BYTES, "stream header fits its page");

// MARK: - The control block (shared read-write between the parent and one child)

enum {
    AB_STATE_STARTING = 0,
    AB_STATE_REPLAYING = 1,
    AB_STATE_DONE = 2,
    AB_STATE_FAILED = 3,
};

enum {
    AB_FAILURE_NONE = 0,
    AB_FAILURE_OUT_OF_MEMORY = 1,  // the allocator returned nil
    AB_FAILURE_MISALIGNED = 2,     // the block did not honour the requested alignment
    AB_FAILURE_SETUP = 3,          // the child could not map its inputs; see its stderr
};

#define AB_CONTROL_MAGIC 0x314C5254434241ull  /* "ABCTRL1" */
#define AB_MAX_STATISTICS 40   /* the conformance suite fails an allocator that reports more */
#define AB_MAX_BASELINE_STATISTICS 8
#define AB_STATISTIC_NAME_BYTES 56

typedef struct ab_statistic {
    char name[AB_STATISTIC_NAME_BYTES];
    int64_t value;
} ab_statistic;

/// The clocks the replay's clock answers: CLOCK_REALTIME (0) to CLOCK_TAI (11), but the CPU-time
/// clocks (2, 3) and the unused 10.
#define AB_REPLAY_CLOCKS 12

typedef struct ab_clock_reading {
    int64_t seconds;
    int64_t nanoseconds;
} ab_clock_reading;

typedef struct ab_control {
    uint64_t magic;
    uint32_t state;                 // AB_STATE_*
    uint32_t failure;               // AB_FAILURE_*
    uint64_t ops_completed;         // progress, stored after every op so a crash names its op
    uint64_t replay_nanoseconds;    // CLOCK_MONOTONIC from the first op to the last
    int64_t runtime_malloc_delta;   // bytes the process malloc gained during replay (0 unless the allocator is malloc)
    uint32_t runtime_malloc_checked;
    uint32_t statistic_count;
    uint32_t baseline_statistic_count;
    ab_statistic statistics[AB_MAX_STATISTICS];            // after the replay
    ab_statistic baseline_statistics[AB_MAX_BASELINE_STATISTICS];  // before the baseline snapshot
    char malloc_provider[256];      // the file that `malloc` resolves into in the child
    uint32_t replay_threads;        // how the ops ran: AB_REPLAY_SERIAL, _PER_THREAD or _CONCURRENT
    uint32_t reserved;
    // Per-thread replay: how many times the turn passed from one OS thread to another, and the
    // CLOCK_MONOTONIC time from each pass's FUTEX_WAKE to the receiver's return from FUTEX_WAIT,
    // summed (part of replay_nanoseconds; ns/op leaves it out).
    uint64_t hand_overs;
    uint64_t hand_over_nanoseconds;
    // The replay's clock (ab_replay_clock_start): while `clock_running`, a lean child's
    // clock_gettime answers the clocks of time (not CPU time) with their reading at the start plus
    // 1 ns per call made since (`clock_calls`). `real_clock` is the vDSO's clock_gettime (or null:
    // the system call), which the child's own timing uses. Here, not in the child's bss, whose
    // tail is an allocator's.
    uint32_t clock_running;
    uint32_t clock_reserved;
    uint64_t clock_calls;
    uint64_t real_clock;
    ab_clock_reading clock_start[AB_REPLAY_CLOCKS];
} ab_control;

enum {
    AB_REPLAY_SERIAL = 0,      // every op on one thread, in file order
    AB_REPLAY_PER_THREAD = 1,  // every op on its recorded thread, one at a time, in file order
    AB_REPLAY_CONCURRENT = 2,  // every recorded thread at once, ordered only per slot
};

_Static_assert(sizeof(ab_control) <= AB_CONTROL_BLOCK_SIZE, "the control block fits its mapping");
_Static_assert(AB_CONTROL_BLOCK_SIZE == AB_PAGE_SIZE, "the control block is one page");

/// Starts the replay's clock: from now until ab_replay_clock_stop, what the allocator reads from
/// clock_gettime in a lean replay child advances by 1 ns a call instead of with the wall, so its
/// timers (jemalloc's decay, mimalloc's delays, scudo's release interval) fire at the same op in
/// every run, however fast the machine runs it (docs/metrics.md, "The replay's clock").
void ab_replay_clock_start(ab_control *control);
void ab_replay_clock_stop(ab_control *control);

/// The progress counter's address. (A Swift key path to it would be a heap object in debug builds,
/// allocated between the snapshots.)
static inline uint64_t *ab_control_progress(ab_control *control) { return &control->ops_completed; }

// MARK: - Syscall markers and the mm-syscall filter

/// A syscall number no kernel implements. The child calls it to mark the replay's start and end;
/// the seccomp filter turns it into a tracer stop, and the kernel then fails it with ENOSYS.
#define AB_MARKER_SYSCALL 0x4A42

enum {
    AB_STOP_MMAP = 1,
    AB_STOP_MUNMAP = 2,
    AB_STOP_BRK = 3,
    AB_STOP_MADVISE = 4,
    AB_STOP_MREMAP = 5,
    AB_STOP_OTHER = 6,   // shmat, shmdt, process_madvise: they change the counters too
    AB_STOP_MARKER = 15,
};

enum {
    AB_MARK_BEGIN = 1,  // the baseline: inputs mapped, slot table and stack faulted in
    AB_MARK_END = 2,    // the last op has returned
    AB_MARK_SAMPLE = 3, // an evenly spaced timeline point (only with --samples)
};

/// Installs a seccomp filter that reports mmap, munmap, brk, madvise, mremap, shmat, shmdt,
/// process_madvise and the marker syscall to the tracer (SECCOMP_RET_TRACE with the AB_STOP_* kind
/// as data), refuses syscalls of a foreign ABI (which could map memory unseen), and allows the rest. Only call it while traced: untraced, a RET_TRACE syscall fails with ENOSYS.
/// Returns 0, or -1 with errno set (prctl(PR_SET_NO_NEW_PRIVS), seccomp(SECCOMP_SET_MODE_FILTER)).
int ab_install_mm_syscall_filter(void);

/// Calls the marker syscall with `mark` (AB_MARK_*) as its first argument.
void ab_mark(int mark);

// MARK: - ptrace (variadic in glibc, so wrapped)

/// ptrace(PTRACE_SETOPTIONS) with PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL | PTRACE_O_TRACECLONE,
/// for a child traced from its exec (ab_spawn_options.trace_from_exec) and stopped there: threads
/// the child starts (an allocator's background thread) are traced too, or their filtered syscalls
/// would fail with ENOSYS for want of a tracer.
int ab_ptrace_set_options(pid_t pid);
/// ptrace(PTRACE_CONT, pid, 0, signal).
int ab_ptrace_continue(pid_t pid, int signal);
/// ptrace(PTRACE_GETEVENTMSG): for a seccomp stop, the filter's data (an AB_STOP_* kind).
int ab_ptrace_event_message(pid_t pid, unsigned long *message);
/// Syscall argument `index` (0…5) of a tracee stopped at a syscall's entry (PTRACE_GETREGS): the
/// marker's AB_MARK_*, madvise's advice.
int ab_ptrace_argument(pid_t pid, int index, uint64_t *argument);
/// move_pages(pid, 0 pages): moving nothing, the kernel still drains every CPU's page batches
/// (lru_cache_disable), among them the pages madvise(MADV_FREE) has queued but not yet marked
/// lazily free. After it, /proc/PID/smaps_rollup's LazyFree counts every such page; before, it
/// misses up to a batch per CPU. Returns 0, or -1 with errno (ENOSYS without NUMA support).
int ab_drain_page_batches(pid_t pid);
/// Whether a waitpid status is the seccomp event stop.
int ab_is_seccomp_stop(int status);
/// Whether a waitpid status is a ptrace event stop other than seccomp's (a new thread, a group
/// stop under SEIZE): continued without a signal.
int ab_is_event_stop(int status);
/// The signal of a signal-delivery stop (WSTOPSIG), to be passed on when the tracee is continued;
/// 0 for any other status.
int ab_delivery_stop_signal(int status);

// MARK: - Process helpers

/// The soft RLIMIT_STACK of every spawned child, in bytes: Linux's default, 8 MiB.
#define AB_CHILD_STACK_LIMIT 8388608

/// How ab_spawn connects and places a child.
/// The most descriptors ab_spawn places at 3, 4, ...
#define AB_SPAWN_MAX_KEEP 8

typedef struct ab_spawn_options {
    /// Descriptors duplicated onto 3, 4, ... in the child.
    const int *keep;
    int keep_count;
    /// Descriptors that become the child's stdout and stderr (dup2 onto 1, then 2); -1 leaves
    /// the parent's.
    int standard_output;
    int standard_error;
    /// A replay child's fresh start: every descriptor above 2 + keep_count closed, every signal
    /// at its default disposition with an empty mask (the deadline is a SIGALRM that must kill, a
    /// crash must not be ignored), and the soft stack limit AB_CHILD_STACK_LIMIT, which places
    /// its mappings. Otherwise (a recorded command) the child inherits what a shell's would:
    /// open descriptors, ignored signals, the signal mask and the limits.
    int isolate;
    /// Personality ADDR_NO_RANDOMIZE: the child's address layout, and the page counts that depend
    /// on it, repeat from run to run.
    int no_aslr;
    /// Look `path` up in PATH (execvpe) instead of running it as it is (execve).
    int search_path;
    /// chdir(2) here before the exec; NULL keeps the parent's directory.
    const char *directory;
    /// Traced from its first instruction: ptrace(PTRACE_TRACEME) and the mm-syscall filter
    /// (ab_install_mm_syscall_filter) right before the exec, so the exec stops the child with
    /// SIGTRAP before it runs anything and every mm syscall from then on stops it too. The
    /// caller waits for that stop and sets the tracer's options (ab_ptrace_set_options).
    int trace_from_exec;
    /// -1, or a descriptor of the executable to run instead of `path` (execveat with
    /// AT_EMPTY_PATH): it is placed at 3 + keep_count, close-on-exec, so the program sees
    /// "/dev/fd/N" as its path (AT_EXECFN) and, for a memfd, "/memfd:NAME" as /proc/self/exe —
    /// the same wherever the package was cloned (a static glibc copies its directory into the heap).
    int exec_descriptor;
} ab_spawn_options;

/// Starts `path` with argv and envp, placed and connected as `options` say, as a child that dies
/// with the calling thread: vfork(2), then in the child prctl(PR_SET_PDEATHSIG, SIGKILL) *before*
/// the exec, so that even a child that hangs or loops before its `main` (a preloaded malloc that
/// never returns) is killed when allocbench ends, however it ends. posix_spawn(3) cannot set that
/// between its fork and its exec. Every signal is blocked in the parent around the vfork, so no
/// handler of the parent ever runs on the memory the child borrows. Returns 0 or an errno (of the
/// vfork, the child's setup or its exec, which the child leaves in the parent's memory).
int ab_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
             const ab_spawn_options *options);

/// pidfd_open(2): a descriptor (close-on-exec) that poll(2) reports readable once the child has
/// exited, so a deadline needs no timer and no sleep; -1 with errno on failure.
int ab_pidfd_open(pid_t pid);

/// pidfd_send_signal(2): a signal to exactly the process of `pidfd`, never to a later process
/// that reused its pid; -1 with errno on failure.
int ab_pidfd_send_signal(int pidfd, int signal);

/// waitid(P_PIDFD, pidfd, WEXITED): reaps exactly the process of `pidfd` (never another child that
/// reused its pid) and stores its end as a waitpid(2) status word; -1 with errno on failure.
int ab_pidfd_wait(int pidfd, int *status);

/// fcntl(F_SETFL, O_NONBLOCK) on a pipe's read end: draining it never blocks the parent.
int ab_set_nonblocking(int descriptor);

/// pipe2(O_CLOEXEC): the read end in *read_end, the write end in *write_end.
int ab_pipe_cloexec(int *read_end, int *write_end);

/// prctl(PR_SET_PDEATHSIG, SIGKILL): the child dies with the parent that spawned it. Returns -1 when
/// that parent is already gone.
int ab_die_with_parent(pid_t parent);

/// memfd_create(name, MFD_CLOEXEC); -1 with errno on failure.
int ab_memfd_create(const char *name);

/// CLOCK_MONOTONIC in nanoseconds.
uint64_t ab_monotonic_nanoseconds(void);

/// setitimer(ITIMER_REAL): SIGALRM ends the process after `milliseconds` (0 disarms).
int ab_arm_deadline(uint64_t milliseconds);

/// Bytes the process malloc currently holds for live blocks (glibc's mallinfo2: uordblks + hblkhd)
/// in *bytes; returns 1, or 0 where the C library keeps no such count (musl).
int ab_process_malloc_in_use(uint64_t *bytes);

/// glibc's mallinfo2(), whose header Swift's Glibc module does not include.
typedef struct ab_malloc_info {
    uint64_t arena;      // bytes obtained with brk
    uint64_t mmapped;    // bytes in mmapped chunks (hblkhd)
    uint64_t in_use;     // bytes in use (uordblks)
    uint64_t free;       // bytes in free chunks (fordblks)
    uint64_t top_pad;    // releasable top (keepcost)
} ab_malloc_info;
ab_malloc_info ab_glibc_malloc_info(void);

/// mremap(old, old_length, new_length, may_move ? MREMAP_MAYMOVE : 0), which Swift's Glibc module
/// does not export. Growing, the kernel extends the mapping in place when the pages behind it are
/// free, else (with may_move) moves its page-table entries: nothing is copied and no page is ever
/// resident twice. NULL on failure (errno set).
void *ab_mremap(void *old_address, size_t old_length, size_t new_length, int may_move);

/// Writes the path of the object that `malloc` resolves into (dladdr) to `buffer`.
void ab_malloc_provider(char *buffer, size_t capacity);

/// The linker's end of the executable's bss (`_end`).
uintptr_t ab_end_of_bss(void);

/// Hands the executable's bss tail — the bytes from `_end` to the end of its page — to the first
/// caller in the process and returns `_end`, with the tail's length in `*length`; every later call
/// returns 0. Allocators that pack into the tail (bss-arena, slab) claim it here, so that two of
/// them in one process (a test binary) never share it.
uintptr_t ab_claim_bss_tail(size_t *length);

/// What a replay child set up, kept where a debugger or a core dump finds it. It is also the last
/// object of the executable's writable data: it sits alone at the start of a page (a large-data
/// section, which lld places after .bss), so `_end` falls 64 bytes into that page and the page
/// the child writes this record into — resident before the baseline, like the few variables of
/// the seed program — has 4032 free bytes after it for an allocator that packs into the bss tail.
/// A replay child is linked with lld for this (see Package.swift).
typedef struct ab_child_record {
    uint64_t stream_address;
    uint64_t op_count;
    uint64_t slot_table_address;
    uint64_t slot_count;
    uint64_t control_address;
    uint32_t touch_mode;
    uint32_t traced;
    uint64_t reserved[2];
} ab_child_record;

_Static_assert(sizeof(ab_child_record) == 64, "the record is one cache line");

/// Stores the child's record (the write that makes its page resident).
void ab_record_child_setup(const ab_child_record *record);

// MARK: - Per-thread replay (the child)

/// Runs one op of the replay (its index in the op stream); returns an AB_FAILURE_* code.
typedef uint32_t (*ab_execute_op)(void *context, uint64_t index);

/// One recorded thread of a per-thread replay.
typedef struct ab_recorded_thread {
    uint32_t turn;        // futex word: 1 when this thread may run the op at `next`
    int32_t stack_slot;   // its slot in the stack pool while its OS thread exists, else -1
    uint64_t first_op;    // its first and last op: its OS thread exists from the first to the last
    uint64_t last_op;
    uint64_t handle;      // its pthread_t
} ab_recorded_thread;

_Static_assert(sizeof(ab_recorded_thread) == 32, "two recorded threads per cache line");

/// Everything a per-thread replay needs, prepared before the baseline (ab_thread_plan_prepare)
/// in memory mapped and written then: none of it is the allocator's.
typedef struct ab_thread_plan {
    const ab_op *ops;
    uint64_t op_count;
    uint64_t thread_count;          // recorded threads (largest thread index + 1)
    uint64_t peak_alive;            // recorded threads alive at once: the OS threads that exist at most
    ab_recorded_thread *threads;    // thread_count entries
    char *stacks;                   // peak_alive stacks of AB_THREAD_STACK_BYTES, the top
                                    // AB_THREAD_STACK_TOUCHED_BYTES of each written
    int32_t *free_slots;            // a stack of free stack slots
    uint64_t free_slot_count;
    size_t mapped_bytes;            // of threads, stacks and free_slots together
    // Concurrent replay only (ab_thread_plan_prepare_concurrent): every recorded thread has its OS
    // thread from before the baseline; it runs from the return of the op before its first op in
    // the file, and an op waits only for the op before it on its own block.
    // The ops as the concurrent replay runs them: grouped by thread (thread t's ops, in file order,
    // at [thread_op_start[t], thread_op_start[t + 1])), so that each thread reads its own ops in
    // sequence, and each slot number replaced by the block's chain (an allocation and the reallocs
    // and free that follow it), so that a new block never waits for the free of the block that had
    // its slot before. A thread's chains are numbered together: their slots share no cache line
    // with another thread's, except where two threads' ranges meet.
    ab_op *chain_ops;
    uint32_t *chain_turn;           // per op: its place in its chain (AB_CHAIN_TURN_MASK), and
                                    // AB_CHAIN_WAITS / AB_CHAIN_PUBLISHES when the op before / after
                                    // it in its chain is another thread's: only those synchronise
    uint64_t *thread_op_start;      // thread_count + 1 entries
    void *chain_slots;              // one replay slot (16 bytes) per chain
    uint32_t *chain_progress;       // per chain: the turn of its next op once a thread published it,
                                    // AB_CHAIN_SLEEPERS while a thread sleeps on it (a futex word)
    uint64_t chain_count;
    uint32_t *thread_starts;        // the recorded threads each thread starts, in its own op order:
    uint64_t *thread_start_start;   // thread t's at [thread_start_start[t], thread_start_start[t + 1])
    uint32_t concurrent;
    // The running replay's state, here rather than in the child's bss: the bss tail after it is
    // an allocator's (a few bytes more of bss move the slab's pages).
    void *run;                      // the per-thread replay's hand-over state
    ab_execute_op execute;          // the concurrent replay's op, context, progress and outcome
    void *context;
    uint64_t *progress;
    uint64_t sample_interval;
    uint32_t failure;
    uint32_t stopping;
    uint64_t completed;
} ab_thread_plan;

/// The bits of a concurrent plan's chain_turn and chain_progress words.
#define AB_CHAIN_TURN_MASK 0x1fffffffu
#define AB_CHAIN_WAITS 0x80000000u       // chain_turn: wait until the chain's progress is this turn
#define AB_CHAIN_PUBLISHES 0x40000000u   // chain_turn: publish the next turn once this op returns
#define AB_CHAIN_STARTS_THREAD 0x20000000u  // chain_turn: start the recorded thread whose first op is next in the file
#define AB_CHAIN_SLEEPERS 0x80000000u    // chain_progress: a thread sleeps on it

/// The most recorded threads a concurrent replay starts (each at once, with its own stack).
#define AB_CONCURRENT_THREADS_MAX 4096
_Static_assert(AB_CONCURRENT_THREADS_MAX == 4096, "ReplayChild.swift's setup failure message says 4096");

/// The stack of each replay thread: 256 KiB mapped, its top 32 KiB written before the baseline
/// (an allocator's call chain in a new thread costs no stack page unless it is deeper).
#define AB_THREAD_STACK_BYTES (256 * 1024)
#define AB_THREAD_STACK_TOUCHED_BYTES (32 * 1024)

/// Counts the recorded threads, their first and last ops and how many are alive at once, and
/// maps and writes the plan's memory (at a fixed address where free: thread stacks and TLS at the
/// same addresses in every replay). Returns 0, or -1 with errno.
int ab_thread_plan_prepare(ab_thread_plan *plan, const ab_op *ops, uint64_t op_count);

/// The plan of a concurrent replay: the recorded threads as ab_thread_plan_prepare counts them (but
/// a stack for each, no pool), plus the ops grouped by thread and rewritten to chains, and each
/// op's turn in its chain (20 bytes an op, 20 a chain, 24 a trace slot); every recorded thread's OS
/// thread is created here, before the baseline, and waits for its turn to start. Returns 0, or
/// -1 with errno (E2BIG: more than AB_CONCURRENT_THREADS_MAX recorded threads, or a block with more
/// than AB_CHAIN_TURN_MASK reallocs).
int ab_thread_plan_prepare_concurrent(ab_thread_plan *plan, const ab_op *ops, uint64_t op_count, uint64_t slot_count);

/// Lets every recorded thread run its own ops in file order, all at once. A thread starts when the
/// op before its first op in the file has returned (the first thread at once); an op whose block
/// was allocated or last reallocated on another thread first waits until that op has returned (the
/// ownership hand-over of glibc's trace2wl); no other op synchronises with anything. The execute
/// function is called with an index into plan->chain_ops (not the file order). A traced replay
/// passes `progress` (NULL: a timed one), which counts the ops returned as they return, with an
/// AB_MARK_SAMPLE every `sample_interval` of them (0: none). Returns the first failure (0: none);
/// *completed is how many ops returned.
uint32_t ab_replay_concurrently(ab_thread_plan *plan, ab_execute_op execute, void *context, uint64_t *progress,
                                uint64_t sample_interval, uint64_t *completed);

/// Runs every op on an OS thread of its own recorded thread, one at a time in file order: the
/// thread of op i runs it, then hands over to the thread of op i+1 (futex, no spinning). A
/// recorded thread's OS thread starts at its first op and ends after its last (its C library's and
/// allocator's thread-exit work — TSD destructors, cache teardown — runs then, before the next op).
/// Returns the first failure (0: none); *completed is how many ops returned, *hand_overs how many
/// times the turn passed between OS threads, and *hand_over_nanoseconds the time those passes took
/// (from the giver's FUTEX_WAKE to the receiver's return from FUTEX_WAIT: the switch, no op).
uint32_t ab_replay_on_threads(ab_thread_plan *plan, ab_execute_op execute, void *context, uint64_t *completed,
                              uint64_t *hand_overs, uint64_t *hand_over_nanoseconds);

/// gnu_get_libc_version(), or "" when the C library is not glibc.
const char *ab_glibc_version(void);

/// A hint to load the cache line holding `address` for reading; never faults, whatever `address`
/// is. What Swift cannot say: the trace parser reads each line a few lines before it applies it and
/// prefetches the live-pointer table's bucket for it, so the table's cache misses (one per op once
/// the live set outgrows the caches) overlap instead of stalling one after another.
static inline __attribute__((always_inline)) void ab_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

/// 0 to 15 for a hex digit ('0'-'9', 'a'-'f', 'A'-'F'), above 15 for any other byte. A table, not
/// comparisons: in a pointer the digits and letters alternate at random, and the trace parser's
/// branch between them mispredicted about every other letter.
static inline __attribute__((always_inline)) unsigned ab_hex_digit_value(unsigned char byte) {
    static const unsigned char plusOne[256] = {
        ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8, ['8'] = 9, ['9'] = 10,
        ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
        ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
    };
    return (unsigned)plusOne[byte] - 1;  // a byte that is no digit wraps to UINT_MAX
}

/// gettid(2): the calling OS thread.
int ab_gettid(void);

/// errno, and setting it: Swift's Glibc module wraps them, but Embedded Swift has no Glibc module.
int ab_errno(void);
void ab_set_errno(int value);

/// MAP_FAILED, a macro Swift cannot import.
static inline void *ab_map_failed(void) { return MAP_FAILED; }

/// Whether this process already runs under a seccomp filter (prctl(PR_GET_SECCOMP) == 2): a child
/// whose tracer installed the mm-syscall filter before its exec does not stack a second one.
int ab_mm_syscall_filter_installed(void);

/// Whether this executable was linked dynamically (it has a _DYNAMIC section).
int ab_is_dynamically_linked(void);

#endif
