// The child side of the C shim: what a replay child calls, compiled into every replay child —
// the Swift ones by SwiftPM, the lean ones (Sources/LeanChild) by gcc or musl-gcc against the
// C library each is linked with. It uses only system calls and the C library's common core;
// what only glibc has (mallinfo2, dladdr, gnu_get_libc_version) is behind __GLIBC__.
#include "CAllocBench.h"

#include <elf.h>
#include <errno.h>
#include <linux/audit.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#ifdef __GLIBC__
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#endif

// Defined below; the replay's clock finds the control block through it.
extern ab_child_record ab_replay_child_record;

// The dynamic section of a dynamically linked executable; weak, so null in a static one.
extern const char _DYNAMIC[] __attribute__((weak));

#if defined(__x86_64__)
#define AB_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AB_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#error "allocbench's syscall filter knows x86-64 and aarch64"
#endif

#define AB_TRACE_AS(kind) BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE | (kind))
#define AB_IF_SYSCALL(nr, kind) \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), AB_TRACE_AS(kind)

int ab_install_mm_syscall_filter(void) {
    struct sock_filter program[] = {
        // A foreign ABI (i386's int 0x80, x32) could map memory past the filter: refuse it.
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AB_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
#if defined(__x86_64__)
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000 /* __X32_SYSCALL_BIT */, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
#endif
        AB_IF_SYSCALL(__NR_mmap, AB_STOP_MMAP),
        AB_IF_SYSCALL(__NR_munmap, AB_STOP_MUNMAP),
        AB_IF_SYSCALL(__NR_brk, AB_STOP_BRK),
        AB_IF_SYSCALL(__NR_madvise, AB_STOP_MADVISE),
        AB_IF_SYSCALL(__NR_mremap, AB_STOP_MREMAP),
        AB_IF_SYSCALL(__NR_shmat, AB_STOP_OTHER),
        AB_IF_SYSCALL(__NR_shmdt, AB_STOP_OTHER),
        AB_IF_SYSCALL(__NR_process_madvise, AB_STOP_OTHER),
        AB_IF_SYSCALL(AB_MARKER_SYSCALL, AB_STOP_MARKER),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog filter = {
        .len = (unsigned short)(sizeof(program) / sizeof(program[0])),
        .filter = program,
    };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    return (int)syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filter);
}

void ab_mark(int mark) {
    // The filter stops here while traced; the kernel then answers ENOSYS, which is expected.
    int saved = errno;
    (void)syscall(AB_MARKER_SYSCALL, (long)mark);
    errno = saved;
}

int ab_die_with_parent(pid_t parent) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return -1;
    // The parent may have died before the prctl: then we were reparented already.
    return getppid() == parent ? 0 : -1;
}

// MARK: - The replay's clock

typedef int (*ab_clock_function)(clockid_t, struct timespec *);

// x86-64 and aarch64 (AB_AUDIT_ARCH) are 64-bit: their vDSO is an ELF64 image. (<link.h>'s ElfW
// would also redeclare _DYNAMIC.)
#define AB_ELF(type) Elf64_##type

/// The vDSO's clock_gettime, found in the vDSO's own symbol table (the kernel's ELF image mapped
/// into every process, AT_SYSINFO_EHDR): the real clock without a system call, in a static child
/// as in a dynamic one, under musl as under glibc. Null if the vDSO has none (the system call
/// then answers).
static ab_clock_function ab_vdso_clock(void) {
    uintptr_t base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (base == 0) return NULL;
    const AB_ELF(Ehdr) *header = (const AB_ELF(Ehdr) *)base;
    const AB_ELF(Phdr) *segments = (const AB_ELF(Phdr) *)(base + header->e_phoff);
    const AB_ELF(Dyn) *dynamic = NULL;
    uintptr_t load_offset = 0;
    int loaded = 0;
    for (int index = 0; index < header->e_phnum; index++) {
        if (segments[index].p_type == PT_LOAD && !loaded) {
            load_offset = base + segments[index].p_offset - segments[index].p_vaddr;
            loaded = 1;
        } else if (segments[index].p_type == PT_DYNAMIC) {
            dynamic = (const AB_ELF(Dyn) *)(base + segments[index].p_offset);
        }
    }
    if (dynamic == NULL || !loaded) return NULL;
    const AB_ELF(Sym) *symbols = NULL;
    const char *names = NULL;
    const AB_ELF(Word) *hash = NULL;
    for (; dynamic->d_tag != DT_NULL; dynamic++) {
        if (dynamic->d_tag == DT_SYMTAB) symbols = (const AB_ELF(Sym) *)(dynamic->d_un.d_ptr + load_offset);
        else if (dynamic->d_tag == DT_STRTAB) names = (const char *)(dynamic->d_un.d_ptr + load_offset);
        else if (dynamic->d_tag == DT_HASH) hash = (const AB_ELF(Word) *)(dynamic->d_un.d_ptr + load_offset);
    }
    if (symbols == NULL || names == NULL || hash == NULL) return NULL;
#if defined(__x86_64__)
    const char *wanted = "__vdso_clock_gettime";
#else
    const char *wanted = "__kernel_clock_gettime";
#endif
    for (AB_ELF(Word) index = 0; index < hash[1]; index++) {  // hash[1]: the number of symbols
        const AB_ELF(Sym) *symbol = &symbols[index];
        if (ELF64_ST_TYPE(symbol->st_info) == STT_FUNC && symbol->st_shndx != SHN_UNDEF
            && strcmp(names + symbol->st_name, wanted) == 0)
            return (ab_clock_function)(symbol->st_value + load_offset);
    }
    return NULL;
}

#ifdef AB_LEAN_CHILD
/// The clock as the kernel keeps it, for the child's own timing.
static int ab_real_clock(clockid_t clock, struct timespec *now) {
    ab_control *control = (ab_control *)(uintptr_t)ab_replay_child_record.control_address;
    ab_clock_function vdso = control != NULL ? (ab_clock_function)(uintptr_t)control->real_clock : NULL;
    return vdso != NULL ? vdso(clock, now) : (int)syscall(SYS_clock_gettime, clock, now);
}

/// Which slot of `clock_start` answers `clock`, or -1 (CPU-time clocks, a process's or thread's
/// clock by descriptor: the real clock answers them).
static int ab_replay_clock_slot(clockid_t clock) {
    return clock >= 0 && clock < AB_REPLAY_CLOCKS && clock != CLOCK_PROCESS_CPUTIME_ID && clock != CLOCK_THREAD_CPUTIME_ID
        && clock != 10 ? (int)clock : -1;
}

/// Every clock_gettime of a lean child — the allocator's, its C library's when it calls the
/// public symbol (static links resolve to this definition; dynamic ones find it first, the
/// executable exporting it: Sources/LeanChild/build.sh) — comes here.
int clock_gettime(clockid_t clock, struct timespec *now) {
    ab_control *control = (ab_control *)(uintptr_t)ab_replay_child_record.control_address;
    int slot = ab_replay_clock_slot(clock);
    if (control == NULL || slot < 0 || !__atomic_load_n(&control->clock_running, __ATOMIC_ACQUIRE)) return ab_real_clock(clock, now);
    uint64_t calls = __atomic_add_fetch(&control->clock_calls, 1, __ATOMIC_RELAXED);
    uint64_t nanoseconds = (uint64_t)control->clock_start[slot].nanoseconds + calls;
    now->tv_sec = (time_t)(control->clock_start[slot].seconds + (int64_t)(nanoseconds / 1000000000u));
    now->tv_nsec = (long)(nanoseconds % 1000000000u);
    return 0;
}
#else
static int ab_real_clock(clockid_t clock, struct timespec *now) {
    return clock_gettime(clock, now);
}
#endif

void ab_replay_clock_start(ab_control *control) {
    control->real_clock = (uint64_t)(uintptr_t)ab_vdso_clock();
    for (int clock = 0; clock < AB_REPLAY_CLOCKS; clock++) {
        struct timespec now = {0, 0};
        (void)ab_real_clock(clock, &now);  // EINVAL for an unused id: never read
        control->clock_start[clock] = (ab_clock_reading){now.tv_sec, now.tv_nsec};
    }
    control->clock_calls = 0;
    __atomic_store_n(&control->clock_running, 1, __ATOMIC_RELEASE);
}

void ab_replay_clock_stop(ab_control *control) {
    __atomic_store_n(&control->clock_running, 0, __ATOMIC_RELEASE);
}

uint64_t ab_monotonic_nanoseconds(void) {
    struct timespec now;
    ab_real_clock(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}

int ab_arm_deadline(uint64_t milliseconds) {
    struct itimerval timer = {
        .it_interval = {0, 0},
        .it_value = {(time_t)(milliseconds / 1000), (suseconds_t)((milliseconds % 1000) * 1000)},
    };
    return setitimer(ITIMER_REAL, &timer, NULL);
}

// AB_MALLOC_REPLACED: a child linked statically with a malloc of its own (jemalloc-static) must
// not name mallinfo2, or the linker pulls glibc's malloc.o in beside it (duplicate malloc).
#if defined(__GLIBC__) && !defined(AB_MALLOC_REPLACED)
#define AB_HAS_MALLINFO2 1
#endif

ab_malloc_info ab_glibc_malloc_info(void) {
#ifdef AB_HAS_MALLINFO2
    struct mallinfo2 info = mallinfo2();
    return (ab_malloc_info){info.arena, info.hblkhd, info.uordblks, info.fordblks, info.keepcost};
#else
    return (ab_malloc_info){0, 0, 0, 0, 0};
#endif
}

int ab_process_malloc_in_use(uint64_t *bytes) {
#ifdef AB_HAS_MALLINFO2
    ab_malloc_info info = ab_glibc_malloc_info();
    *bytes = info.in_use + info.mmapped;
    return 1;
#else
    // musl's mallocng keeps no such count: the harness sees the process malloc's pages anyway
    // (an idle malloc maps nothing), and the row says the check was not made.
    *bytes = 0;
    return 0;
#endif
}

void *ab_mremap(void *old_address, size_t old_length, size_t new_length, int may_move) {
    void *resized = mremap(old_address, old_length, new_length, may_move ? MREMAP_MAYMOVE : 0);
    return resized == MAP_FAILED ? NULL : resized;
}

void ab_malloc_provider(char *buffer, size_t capacity) {
    const char *name = NULL;
#ifdef __GLIBC__
    Dl_info info;
    void *symbol = dlsym(RTLD_DEFAULT, "malloc");
    if (symbol && dladdr(symbol, &info) && info.dli_fname) name = info.dli_fname;
#endif
    if (name == NULL && !ab_is_dynamically_linked()) {
        // A static executable: malloc is the one linked into it. Its path, marked static, is what
        // proves it (the harness knows which C library each lean child is linked with).
        ssize_t length = readlink("/proc/self/exe", buffer, capacity > 10 ? capacity - 10 : 0);
        if (length > 0) {
            memcpy(buffer + length, " (static)", 10);
            return;
        }
    }
    if (name == NULL) name = "unknown";
    strncpy(buffer, name, capacity - 1);
    buffer[capacity - 1] = 0;
}

// External and `used`, so that neither the compiler nor --gc-sections drops a record nothing reads.
#ifdef AB_LEAN_CHILD
// A lean child's whole writable data fits in one page, the record last: `_end` falls after it,
// and the rest of that page — the one the process has anyway, like the seed program's — is the
// bss tail (Sources/LeanChild/build.sh links the record last).
__attribute__((section(".lbss"), aligned(64), used, retain)) ab_child_record ab_replay_child_record;
#else
__attribute__((section(".lbss"), aligned(AB_PAGE_SIZE), used, retain)) ab_child_record ab_replay_child_record;
#endif

void ab_record_child_setup(const ab_child_record *record) {
    ab_replay_child_record = *record;
}

extern char _end[];

uintptr_t ab_end_of_bss(void) {
    return (uintptr_t)_end;
}

static int ab_bss_tail_claimed;

uintptr_t ab_claim_bss_tail(size_t *length) {
    *length = 0;
    if (__atomic_exchange_n(&ab_bss_tail_claimed, 1, __ATOMIC_ACQ_REL)) return 0;
    uintptr_t end = (uintptr_t)_end;
    *length = ((end + AB_PAGE_SIZE - 1) & ~(uintptr_t)(AB_PAGE_SIZE - 1)) - end;
    return end;
}

const char *ab_glibc_version(void) {
#ifdef __GLIBC__
    return gnu_get_libc_version();
#else
    return "";
#endif
}

#ifndef __GLIBC__
#include <sys/random.h>
/// The Swift standard library seeds its hashing with arc4random_buf, which glibc has and musl
/// does not (only validation code hashes: Set and Dictionary in the allocators' tiered checks).
void arc4random_buf(void *buffer, size_t length) {
    char *bytes = buffer;
    while (length > 0) {
        ssize_t got = getrandom(bytes, length, 0);
        if (got <= 0) continue;
        bytes += got;
        length -= (size_t)got;
    }
}
#endif

#ifdef AB_MMAP_MALLOC
// The process malloc of the lean child of the module allocators (Sources/LeanChild/build.sh):
// nothing in that child may allocate on its way to the end marker, and the module allocators take
// their memory from the kernel, so its malloc exists only for what runs outside the measurement
// (`describe`, an error message). Each block is a mapping of its own, so a call during a replay
// would show as an mmap in the row — and musl's mallocng, whose state is 928 bytes of bss, would
// fill the data page whose tail the bss allocators pack into.
typedef struct { size_t length; size_t offset; } ab_mapped_block;

static void *ab_map_block(size_t size, size_t alignment) {
    if (alignment < 16) alignment = 16;
    size_t header = (sizeof(ab_mapped_block) + alignment - 1) & ~(alignment - 1);
    if (size > SIZE_MAX - header - AB_PAGE_SIZE) return NULL;
    size_t length = (header + size + alignment + AB_PAGE_SIZE - 1) & ~(size_t)(AB_PAGE_SIZE - 1);
    char *base = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    uintptr_t start = ((uintptr_t)base + header + alignment - 1) & ~(uintptr_t)(alignment - 1);
    ab_mapped_block *block = (ab_mapped_block *)start - 1;
    block->length = length;
    block->offset = start - (uintptr_t)base;
    return (void *)start;
}

void *malloc(size_t size) { return ab_map_block(size, 16); }
void *calloc(size_t count, size_t size) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    return ab_map_block(count * size, 16);  // fresh mappings are zero
}
void free(void *pointer) {
    if (pointer == NULL) return;
    ab_mapped_block *block = (ab_mapped_block *)pointer - 1;
    munmap((char *)pointer - block->offset, block->length);
}
void *realloc(void *pointer, size_t size) {
    if (pointer == NULL) return malloc(size);
    ab_mapped_block *block = (ab_mapped_block *)pointer - 1;
    size_t old = block->length - block->offset;
    void *moved = malloc(size);
    if (moved == NULL) return NULL;
    memcpy(moved, pointer, old < size ? old : size);
    free(pointer);
    return moved;
}
int posix_memalign(void **result, size_t alignment, size_t size) {
    void *block = ab_map_block(size, alignment);
    if (block == NULL) return ENOMEM;
    *result = block;
    return 0;
}
void *aligned_alloc(size_t alignment, size_t size) { return ab_map_block(size, alignment); }
#endif

// MARK: - Per-thread replay

/// Where the plan's memory goes when that range is free: a fixed address, so that the replay
/// threads' stacks and TLS (allocators seed layouts with TLS addresses) are the same every time.
#define AB_THREAD_PLAN_ADDRESS 0x200000000000ull

/// The plan's recorded threads: how many, each one's first and last op, and how many are alive at
/// once, in an array mapped at the plan's fixed address (where free). Returns 0, or -1 with errno.
static int ab_thread_plan_count(ab_thread_plan *plan, const ab_op *ops, uint64_t op_count) {
    memset(plan, 0, sizeof *plan);
    plan->ops = ops;
    plan->op_count = op_count;
    uint64_t thread_count = 0;
    for (uint64_t index = 0; index < op_count; index++)
        if ((uint64_t)ops[index].thread + 1 > thread_count) thread_count = (uint64_t)ops[index].thread + 1;
    plan->thread_count = thread_count;
    size_t threads_bytes = ((thread_count * sizeof(ab_recorded_thread)) + AB_PAGE_SIZE - 1) & ~(size_t)(AB_PAGE_SIZE - 1);
    // A first pass in the threads' own entries: first and last ops.
    size_t provisional = threads_bytes > 0 ? threads_bytes : AB_PAGE_SIZE;
    char *base = mmap((void *)AB_THREAD_PLAN_ADDRESS, provisional, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (base == MAP_FAILED) base = mmap(NULL, provisional, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return -1;
    ab_recorded_thread *threads = (ab_recorded_thread *)base;
    for (uint64_t thread = 0; thread < thread_count; thread++) {
        threads[thread].first_op = UINT64_MAX;
        threads[thread].stack_slot = -1;
    }
    for (uint64_t index = 0; index < op_count; index++) {
        ab_recorded_thread *thread = &threads[ops[index].thread];
        if (thread->first_op == UINT64_MAX) thread->first_op = index;
        thread->last_op = index;
    }
    // Alive at once: +1 at a first op, -1 after a last op.
    uint64_t alive = 0, peak = 0;
    for (uint64_t index = 0; index < op_count; index++) {
        const ab_recorded_thread *thread = &threads[ops[index].thread];
        if (thread->first_op == index && ++alive > peak) peak = alive;
        if (thread->last_op == index) alive--;
    }
    plan->threads = threads;
    plan->peak_alive = peak;
    plan->mapped_bytes = provisional;
    return 0;
}

/// Writes the top AB_THREAD_STACK_TOUCHED_BYTES of each of `count` stacks, before the baseline.
static void ab_touch_stack_tops(char *stacks, uint64_t count) {
    for (uint64_t stack = 0; stack < count; stack++) {
        char *top = stacks + (stack + 1) * AB_THREAD_STACK_BYTES;
        for (size_t offset = AB_PAGE_SIZE; offset <= AB_THREAD_STACK_TOUCHED_BYTES; offset += AB_PAGE_SIZE)
            *(volatile char *)(top - offset) = 0;
    }
}

int ab_thread_plan_prepare(ab_thread_plan *plan, const ab_op *ops, uint64_t op_count) {
    if (ab_thread_plan_count(plan, ops, op_count) != 0) return -1;
    // The pool of stacks, the most alive at once, right after the threads' array.
    uint64_t peak = plan->peak_alive;
    size_t provisional = plan->mapped_bytes;
    char *base = (char *)plan->threads;
    size_t slots_bytes = ((peak * sizeof(int32_t)) + AB_PAGE_SIZE - 1) & ~(size_t)(AB_PAGE_SIZE - 1);
    size_t stacks_bytes = peak * AB_THREAD_STACK_BYTES;
    char *rest = mmap(base + provisional, stacks_bytes + slots_bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | MAP_STACK, -1, 0);
    if (rest == MAP_FAILED) rest = mmap(NULL, stacks_bytes + slots_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (rest == MAP_FAILED) return -1;
    plan->stacks = rest;
    plan->free_slots = (int32_t *)(rest + stacks_bytes);
    ab_touch_stack_tops(plan->stacks, peak);
    for (uint64_t slot = 0; slot < peak; slot++) plan->free_slots[peak - 1 - slot] = (int32_t)slot;  // slot 0 taken first
    plan->free_slot_count = peak;
    plan->mapped_bytes = provisional + stacks_bytes + slots_bytes;
    return 0;
}

// A turn word is 0 (not this thread's turn), 1 (its turn) or 2 (not its turn, and it sleeps in
// FUTEX_WAIT): only a sleeper needs FUTEX_WAKE. No spinning: the replay threads share one CPU
// (ab_replay_on_threads), where a spinning waiter would only delay the thread it waits for.
static void ab_turn_wait(uint32_t *word) {
    for (;;) {
        uint32_t expected = 0;
        if (__atomic_compare_exchange_n(word, &expected, 2, 0, __ATOMIC_ACQUIRE, __ATOMIC_ACQUIRE) || expected == 2)
            syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
        else if (expected == 1)
            break;
    }
    __atomic_store_n(word, 0, __ATOMIC_RELAXED);
}

static void ab_turn_give(uint32_t *word) {
    if (__atomic_exchange_n(word, 1, __ATOMIC_RELEASE) == 2)
        syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/// The shared state of one per-thread replay. `next` is the op to run; whoever holds the turn
/// (one recorded thread, or the coordinator) is the only one that reads or writes it.
typedef struct ab_threaded_run {
    ab_thread_plan *plan;
    ab_execute_op execute;
    void *context;
    uint64_t next;
    uint32_t failure;
    uint32_t stopping;
    uint32_t coordinator_turn;   // futex word of the thread that started the replay
    uint64_t exited;             // the recorded thread that handed the turn over on its way out, or UINT64_MAX
    uint64_t given_at;           // CLOCK_MONOTONIC when the turn was last handed over
    uint64_t hand_overs;
    uint64_t hand_over_nanoseconds;
} ab_threaded_run;

/// Hands the turn to the thread sleeping on `word`, noting when: the switch is the replay's cost,
/// not the allocator's, and the receiver (ab_take_turn) adds it to the hand-overs' time, which
/// per-thread ns/op leaves out. Everything else stays in the time: the ops, and the threads' start
/// (pthread_create) and exit work (TSD destructors, the allocator's cache teardown).
static void ab_hand_over(ab_threaded_run *run, uint32_t *word) {
    run->given_at = ab_monotonic_nanoseconds();
    ab_turn_give(word);  // release: the receiver sees given_at
}

static void ab_take_turn(ab_threaded_run *run, uint32_t *word) {
    ab_turn_wait(word);
    run->hand_over_nanoseconds += ab_monotonic_nanoseconds() - run->given_at;
    run->hand_overs++;
}

/// The plan of the replay running now, for its threads' start routine: the one pointer the
/// threaded replays keep in the child's bss (everything else is in the plan, on the replay's stack).
static ab_thread_plan *ab_current_plan;

static void *ab_replay_thread(void *argument) {
    ab_threaded_run *run = ab_current_plan->run;
    uint64_t me = (uint64_t)(uintptr_t)argument;
    ab_recorded_thread *self = &run->plan->threads[me];
    const ab_op *ops = run->plan->ops;
    for (;;) {
        ab_take_turn(run, &self->turn);
        if (run->stopping) return NULL;
        // Run this thread's ops until the next one is another thread's.
        for (;;) {
            uint64_t index = run->next;
            uint32_t failure = run->execute(run->context, index);
            run->next = index + 1;
            if (failure != 0 || run->next == run->plan->op_count) {
                run->failure = failure;
                run->stopping = 1;
                run->exited = index == self->last_op ? me : UINT64_MAX;
                ab_hand_over(run, &run->coordinator_turn);
                return NULL;
            }
            if (index == self->last_op) {
                // Ends here: the coordinator joins this thread (its exit work done) and goes on.
                run->exited = me;
                ab_hand_over(run, &run->coordinator_turn);
                return NULL;
            }
            ab_recorded_thread *following = &run->plan->threads[ops[run->next].thread];
            if (following == self) continue;
            if (following->stack_slot < 0) {
                // Not started yet: the coordinator starts it.
                run->exited = UINT64_MAX;
                ab_hand_over(run, &run->coordinator_turn);
            } else {
                ab_hand_over(run, &following->turn);
            }
            break;
        }
    }
}

static int ab_start_thread(ab_threaded_run *run, uint64_t thread) {
    ab_thread_plan *plan = run->plan;
    ab_recorded_thread *recorded = &plan->threads[thread];
    if (plan->free_slot_count == 0) return EAGAIN;
    int32_t slot = plan->free_slots[--plan->free_slot_count];
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setstack(&attributes, plan->stacks + (size_t)slot * AB_THREAD_STACK_BYTES, AB_THREAD_STACK_BYTES);
    pthread_t handle;
    int error = pthread_create(&handle, &attributes, ab_replay_thread, (void *)(uintptr_t)thread);
    pthread_attr_destroy(&attributes);
    if (error != 0) {
        plan->free_slots[plan->free_slot_count++] = slot;
        return error;
    }
    recorded->stack_slot = slot;
    recorded->handle = (uint64_t)handle;
    return 0;
}

static void ab_join_thread(ab_threaded_run *run, uint64_t thread) {
    ab_recorded_thread *recorded = &run->plan->threads[thread];
    if (recorded->stack_slot < 0) return;
    pthread_join((pthread_t)recorded->handle, NULL);
    run->plan->free_slots[run->plan->free_slot_count++] = recorded->stack_slot;
    recorded->stack_slot = -1;
}

uint32_t ab_replay_on_threads(ab_thread_plan *plan, ab_execute_op execute, void *context, uint64_t *completed,
                              uint64_t *hand_overs, uint64_t *hand_over_nanoseconds) {
    // One thread runs at a time: on one CPU, a hand-over is a switch on that CPU instead of a
    // wake-up sent to another (several times slower in a virtual machine). The threads inherit it.
    cpu_set_t one;
    CPU_ZERO(&one);
    int cpu = sched_getcpu();
    CPU_SET(cpu >= 0 ? cpu : 0, &one);
    sched_setaffinity(0, sizeof one, &one);
    ab_threaded_run run = {.plan = plan, .execute = execute, .context = context, .exited = UINT64_MAX};
    plan->run = &run;
    ab_current_plan = plan;
    while (run.next < plan->op_count && !run.stopping) {
        // The coordinator holds the turn: start the thread of the next op, hand it the turn,
        // and wait for it back (a thread ended, or the next op's thread is not started yet).
        uint64_t thread = plan->ops[run.next].thread;
        if (plan->threads[thread].stack_slot < 0 && ab_start_thread(&run, thread) != 0) {
            run.failure = AB_FAILURE_SETUP;
            break;
        }
        ab_hand_over(&run, &plan->threads[thread].turn);
        ab_take_turn(&run, &run.coordinator_turn);
        if (run.exited != UINT64_MAX) ab_join_thread(&run, run.exited);
        run.exited = UINT64_MAX;
    }
    // Every thread still started is waiting for a turn: let each stop, and join it.
    run.stopping = 1;
    for (uint64_t thread = 0; thread < plan->thread_count; thread++) {
        if (plan->threads[thread].stack_slot < 0) continue;
        ab_hand_over(&run, &plan->threads[thread].turn);
        ab_join_thread(&run, thread);
    }
    *completed = run.next;
    *hand_overs = run.hand_overs;
    *hand_over_nanoseconds = run.hand_over_nanoseconds;
    ab_current_plan = NULL;
    return run.failure;
}

// MARK: - Concurrent replay

static void ab_wake_all(uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, INT32_MAX, NULL, NULL, 0);
}

/// Waits until `progress` reaches `turn` (1), or the replay stops (0).
static int ab_chain_wait(ab_thread_plan *plan, uint32_t *progress, uint32_t turn) {
    // No polling first: the op it waits for is usually on a thread that is not running (a few
    // hundred recorded threads share two CPUs); on systemui 256 polls before each sleep made the
    // replay 1.1x slower, 2048 2x.
    for (;;) {
        uint32_t seen = __atomic_load_n(progress, __ATOMIC_ACQUIRE);
        if ((seen & AB_CHAIN_TURN_MASK) == turn) return 1;
        if (!(seen & AB_CHAIN_SLEEPERS)) {
            if (!__atomic_compare_exchange_n(progress, &seen, seen | AB_CHAIN_SLEEPERS, 0, __ATOMIC_SEQ_CST, __ATOMIC_ACQUIRE))
                continue;
            seen |= AB_CHAIN_SLEEPERS;
        }
        // After the sleepers bit: a failing thread sets `stopping` and then wakes every chain
        // with sleepers, so either it sees the bit or this load sees the stop.
        if (__atomic_load_n(&plan->stopping, __ATOMIC_SEQ_CST)) return 0;
        // Sleeps only while the word is still `seen`: a publish in between is not missed.
        syscall(SYS_futex, progress, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
    }
}

static void ab_chain_publish(uint32_t *progress, uint32_t turn) {
    if (__atomic_exchange_n(progress, turn, __ATOMIC_SEQ_CST) & AB_CHAIN_SLEEPERS) ab_wake_all(progress);
}

/// Waits for this thread's turn to start (1), or for the replay to stop (0).
static int ab_concurrent_thread_wait_for_start(ab_thread_plan *plan, uint64_t me) {
    ab_turn_wait(&plan->threads[me].turn);
    return !__atomic_load_n(&plan->stopping, __ATOMIC_SEQ_CST);
}

static void *ab_concurrent_thread(void *argument) {
    uint64_t me = (uint64_t)(uintptr_t)argument;
    ab_thread_plan *plan = ab_current_plan;
    uint64_t first = plan->thread_op_start[me], end = plan->thread_op_start[me + 1], index = first;
    uint64_t next_start = plan->thread_start_start[me];  // the next thread this one starts
    // A recorded thread starts once the op before its first op in the file has returned (the
    // first thread when the replay starts): the threads live as they did in the recording
    // (systemui: at most 23 at once, not all 393).
    if (first < end && !ab_concurrent_thread_wait_for_start(plan, me)) end = first;
    for (; index < end; index++) {
        uint32_t turn = plan->chain_turn[index];
        uint32_t *progress = &plan->chain_progress[plan->chain_ops[index].slot];
        if ((turn & AB_CHAIN_WAITS) && !ab_chain_wait(plan, progress, turn & AB_CHAIN_TURN_MASK)) break;
        uint32_t failure = plan->execute(plan->context, index);
        if (plan->progress != NULL) {
            uint64_t returned = __atomic_add_fetch(plan->progress, 1, __ATOMIC_RELAXED);
            if (plan->sample_interval > 0 && returned % plan->sample_interval == 0) ab_mark(AB_MARK_SAMPLE);
        }
        if (turn & AB_CHAIN_STARTS_THREAD) ab_turn_give(&plan->threads[plan->thread_starts[next_start++]].turn);
        if (turn & AB_CHAIN_PUBLISHES) ab_chain_publish(progress, ((turn & AB_CHAIN_TURN_MASK) + 1) & AB_CHAIN_TURN_MASK);
        if (failure != 0) {
            index++;  // it returned
            uint32_t none = 0;
            __atomic_compare_exchange_n(&plan->failure, &none, failure, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
            __atomic_store_n(&plan->stopping, 1, __ATOMIC_SEQ_CST);
            // Every sleeper wakes, sees the stop and leaves; so does every thread not started.
            for (uint64_t chain = 0; chain < plan->chain_count; chain++)
                if (__atomic_load_n(&plan->chain_progress[chain], __ATOMIC_SEQ_CST) & AB_CHAIN_SLEEPERS)
                    ab_wake_all(&plan->chain_progress[chain]);
            for (uint64_t thread = 0; thread < plan->thread_count; thread++) ab_turn_give(&plan->threads[thread].turn);
            break;
        }
    }
    // One shared write a thread, not one an op: a counter that every op wrote would bounce its
    // cache line between the CPUs on every op.
    __atomic_add_fetch(&plan->completed, index - first, __ATOMIC_RELAXED);
    return NULL;
}

/// A trace slot's block as the concurrent plan is built: its chain, and its chain's last op so far.
typedef struct ab_chain_cursor {
    uint32_t chain;
    uint32_t thread;
    uint32_t turn;
    uint32_t unused;
    uint64_t position;  // in chain_ops
} ab_chain_cursor;

int ab_thread_plan_prepare_concurrent(ab_thread_plan *plan, const ab_op *ops, uint64_t op_count, uint64_t slot_count) {
    // No pool: every recorded thread gets a stack of its own below.
    if (ab_thread_plan_count(plan, ops, op_count) != 0) return -1;
    uint64_t thread_count = plan->thread_count;
    if (thread_count > AB_CONCURRENT_THREADS_MAX) {
        errno = E2BIG;
        return -1;
    }
    uint64_t chain_count = 0;
    for (uint64_t index = 0; index < op_count; index++) {
        uint8_t kind = ops[index].kind;
        if (kind == AB_OP_MALLOC || kind == AB_OP_CALLOC || kind == AB_OP_MEMALIGN) chain_count++;
    }
    size_t stacks_bytes = thread_count * AB_THREAD_STACK_BYTES;
    size_t ops_bytes = op_count * sizeof(ab_op);
    size_t turn_bytes = (op_count * sizeof(uint32_t) + 15) & ~(size_t)15;
    size_t chain_slot_bytes = (chain_count + 1) * 16;
    size_t progress_bytes = ((chain_count + 1) * sizeof(uint32_t) + 15) & ~(size_t)15;
    size_t thread_start_bytes = (thread_count + 1) * sizeof(uint64_t);
    size_t chain_next_bytes = (thread_count + 1) * sizeof(uint64_t);
    size_t starts_bytes = (thread_count + 1) * sizeof(uint64_t) + ((thread_count * sizeof(uint32_t) + 7) & ~(size_t)7);
    size_t cursor_bytes = (slot_count + 1) * sizeof(ab_chain_cursor);
    size_t bytes = (stacks_bytes + ops_bytes + turn_bytes + chain_slot_bytes + progress_bytes + thread_start_bytes
                    + chain_next_bytes + starts_bytes + cursor_bytes + AB_PAGE_SIZE - 1) & ~(size_t)(AB_PAGE_SIZE - 1);
    char *memory = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (memory == MAP_FAILED) return -1;
    char *cursor = memory;
    plan->stacks = cursor; cursor += stacks_bytes;
    plan->chain_ops = (ab_op *)(void *)cursor; cursor += ops_bytes;
    plan->chain_turn = (uint32_t *)(void *)cursor; cursor += turn_bytes;
    plan->chain_slots = cursor; cursor += chain_slot_bytes;
    plan->chain_progress = (uint32_t *)(void *)cursor; cursor += progress_bytes;
    plan->thread_op_start = (uint64_t *)(void *)cursor; cursor += thread_start_bytes;
    uint64_t *chain_next = (uint64_t *)(void *)cursor; cursor += chain_next_bytes;  // per thread: its next chain number
    plan->thread_start_start = (uint64_t *)(void *)cursor; cursor += (thread_count + 1) * sizeof(uint64_t);
    plan->thread_starts = (uint32_t *)(void *)cursor; cursor += starts_bytes - (thread_count + 1) * sizeof(uint64_t);
    ab_chain_cursor *blocks = (ab_chain_cursor *)(void *)cursor;                   // per trace slot
    plan->chain_count = chain_count + 1;
    plan->mapped_bytes += bytes;
    plan->concurrent = 1;
    // Each thread's range of ops, of chain numbers and of the threads it starts (those whose
    // first op follows one of its ops in the file): counts, then running sums.
    for (uint64_t index = 0; index < op_count; index++) {
        ab_op op = ops[index];
        plan->thread_op_start[op.thread + 1]++;
        if (op.kind == AB_OP_MALLOC || op.kind == AB_OP_CALLOC || op.kind == AB_OP_MEMALIGN) chain_next[op.thread + 1]++;
        if (index + 1 < op_count && plan->threads[ops[index + 1].thread].first_op == index + 1) plan->thread_start_start[op.thread + 1]++;
    }
    for (uint64_t thread = 0; thread < thread_count; thread++) {
        plan->thread_op_start[thread + 1] += plan->thread_op_start[thread];
        chain_next[thread + 1] += chain_next[thread];
        plan->thread_start_start[thread + 1] += plan->thread_start_start[thread];
        plan->threads[thread].handle = plan->thread_op_start[thread];  // its next position, until it starts
    }
    // In file order: each op to its thread's next position, its slot to its block's chain, and its
    // turn in the chain; where the chain's op before it was another thread's, that op publishes
    // and this one waits.
    for (uint64_t index = 0; index < op_count; index++) {
        ab_op op = ops[index];
        uint64_t position = plan->threads[op.thread].handle++;
        ab_chain_cursor *block = &blocks[op.slot];
        uint32_t turn = 0;
        if (op.kind == AB_OP_MALLOC || op.kind == AB_OP_CALLOC || op.kind == AB_OP_MEMALIGN) {
            block->chain = (uint32_t)chain_next[op.thread]++;
        } else {
            if (block->turn == AB_CHAIN_TURN_MASK) {
                munmap(memory, bytes);
                errno = E2BIG;
                return -1;
            }
            turn = block->turn + 1;
            if (block->thread != op.thread) {
                plan->chain_turn[block->position] |= AB_CHAIN_PUBLISHES;
                turn |= AB_CHAIN_WAITS;
            }
        }
        block->thread = op.thread;
        block->turn = turn & AB_CHAIN_TURN_MASK;
        block->position = position;
        plan->chain_turn[position] = turn;
        op.slot = block->chain;
        plan->chain_ops[position] = op;
        if (index + 1 < op_count && plan->threads[ops[index + 1].thread].first_op == index + 1) {
            plan->chain_turn[position] |= AB_CHAIN_STARTS_THREAD;
            plan->thread_starts[plan->thread_start_start[op.thread]++] = ops[index + 1].thread;
        }
    }
    // The fill moved each thread's start to the next one's: back by one.
    for (uint64_t thread = thread_count; thread > 0; thread--) plan->thread_start_start[thread] = plan->thread_start_start[thread - 1];
    plan->thread_start_start[0] = 0;
    // Touch each stack's top now, then create every thread: each waits for its turn to start.
    ab_current_plan = plan;
    ab_touch_stack_tops(plan->stacks, thread_count);
    for (uint64_t thread = 0; thread < thread_count; thread++) {
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setstack(&attributes, plan->stacks + thread * AB_THREAD_STACK_BYTES, AB_THREAD_STACK_BYTES);
        pthread_t handle;
        int error = pthread_create(&handle, &attributes, ab_concurrent_thread, (void *)(uintptr_t)thread);
        pthread_attr_destroy(&attributes);
        if (error != 0) {
            errno = error;
            return -1;
        }
        plan->threads[thread].handle = (uint64_t)handle;
    }
    return 0;
}

uint32_t ab_replay_concurrently(ab_thread_plan *plan, ab_execute_op execute, void *context, uint64_t *progress,
                                uint64_t sample_interval, uint64_t *completed) {
    plan->execute = execute;
    plan->context = context;
    plan->progress = progress;
    plan->sample_interval = sample_interval;
    if (plan->op_count > 0) ab_turn_give(&plan->threads[plan->ops[0].thread].turn);
    for (uint64_t thread = 0; thread < plan->thread_count; thread++) pthread_join((pthread_t)plan->threads[thread].handle, NULL);
    *completed = plan->completed;
    ab_current_plan = NULL;
    return plan->failure;
}

int ab_gettid(void) {
    return (int)syscall(SYS_gettid);
}

int ab_errno(void) {
    return errno;
}

void ab_set_errno(int value) {
    errno = value;
}

int ab_mm_syscall_filter_installed(void) {
    return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == 2 /* SECCOMP_MODE_FILTER */;
}

int ab_is_dynamically_linked(void) {
    return _DYNAMIC != NULL;
}
