// liballocbench-recorder.so — records every heap operation of a program as Android malloc_debug
// `record_allocs` text (docs: include/CAllocBenchRecorder.h, Benchmarks/traces/README.md).
//
// Structures
//   ab_rec (process-wide)   next_offset: bytes of the spool file handed out so far (atomic);
//                           windows[i]: a MAP_SHARED mapping of file bytes [i·W, (i+1)·W), W = 32 MiB,
//                           mapped on first use; file_bytes: the file's length (under window_lock).
//   ab_rec_self (per thread, initial-exec TLS)  depth: wrappers entered; tid: gettid() cached;
//                           bookkeeping: inside the recorder's own calls into libc; registered.
//   bootstrap arena         1 MiB of bss serving allocations that must not reach the real allocator.
//
// Invariants
//   A line is written by: offset = fetch_add(next_offset, length); copy bytes [0, length-1) to
//   [offset, offset+length-1); then store '\n' at offset+length-1 with release order. Hence
//     (1) every line whose wrapper has returned is complete in the page cache — nothing is buffered
//         in the process, so exit, _exit, exec, a fatal signal or SIGKILL lose nothing finished;
//     (2) a line cut short (its thread killed mid-copy) never has its '\n', so it contains at least
//         one zero byte, and the reader (Recorder.swift) drops exactly the torn lines;
//     (3) file order = reservation order. free reserves BEFORE calling the real free, allocations
//         reserve AFTER the real call returns, so for malloc/calloc/memalign/free a pointer's free
//         precedes its next allocation in the file even across threads. realloc reserves after the
//         call: another thread may reuse the old block first (multi-threaded traces may need
//         --lenient, as Android's do).
//   A forked child's spool starts with `# forked from <parent spool> at <parent's next_offset>`: its
//   inherited heap is what the parent's first <offset> bytes leave live (the runner prepends it).
//   depth > 0 ⇒ nested calls are not recorded (they come from the allocator or from the recorder).
//   bookkeeping ⇒ nested calls are served from the bootstrap arena, which is never given to the real
//   allocator and whose blocks free() ignores: nothing the recorder allocates for itself can appear
//   as a free of an unknown pointer.
//
// Cost per recorded operation: one TLS access, formatting about 40 bytes, one relaxed fetch_add on a
// shared counter, a memcpy into the page cache (a page fault per 4 KiB of trace), plus two vDSO
// clock_gettime calls with timestamps on.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "CAllocBenchRecorder.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define AB_REC_TLS __thread __attribute__((tls_model("initial-exec")))
#define AB_REC_EXPORT __attribute__((visibility("default")))

#define AB_REC_WINDOW_SHIFT 25
#define AB_REC_WINDOW_BYTES ((uint64_t)1 << AB_REC_WINDOW_SHIFT)
#define AB_REC_WINDOW_COUNT 32768u
#define AB_REC_LINE_MAX 128u
#define AB_REC_BOOTSTRAP_BYTES ((size_t)1 << 20)
#define AB_REC_MAX_IMAGES 10000

_Static_assert(AB_REC_WINDOW_COUNT * AB_REC_WINDOW_BYTES == (uint64_t)1 << 40,
               "a program image may record 1 TiB of trace");
// "<tid>: memalign 0x<16 hex> <alignment> <size> <start_ns> <end_ns>\n", every number at its widest.
_Static_assert(AB_REC_LINE_MAX >= 10 + 2 + 8 + 1 + 18 + 1 + 20 + 1 + 20 + 1 + 20 + 1 + 20 + 1,
               "the longest line fits the line buffer");

// MARK: - State

typedef struct ab_rec_next_functions {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*reallocarray)(void *, size_t, size_t);
    void *(*memalign)(size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
} ab_rec_next_functions;

/// The allocator behind this one (RTLD_NEXT): glibc, or another preloaded malloc. Written once by
/// ab_rec_initialize; read after ab_rec_ready (acquire) or by the thread that initialized.
static ab_rec_next_functions ab_rec_next;
static pthread_once_t ab_rec_once = PTHREAD_ONCE_INIT;
static atomic_bool ab_rec_ready;

static struct {
    _Atomic uint64_t next_offset;
    char *_Atomic windows[AB_REC_WINDOW_COUNT];
    pthread_mutex_t window_lock;
    uint64_t file_bytes;
    atomic_bool recording;
    atomic_bool failed;
    bool timestamps;
    bool follow_children;
    pid_t parent;
    size_t page_size;
    pthread_key_t thread_key;
    char directory[PATH_MAX];
    char path[PATH_MAX];
} ab_rec = {.window_lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct ab_rec_thread {
    uint32_t depth;
    uint32_t tid;
    bool bookkeeping;
    bool registered;
} ab_rec_thread;

static AB_REC_TLS ab_rec_thread ab_rec_self;

static _Alignas(64) unsigned char ab_rec_bootstrap[AB_REC_BOOTSTRAP_BYTES];
static atomic_size_t ab_rec_bootstrap_used;

/// Bootstrap blocks carry their size just before the block, for realloc.
typedef struct ab_rec_bootstrap_header {
    size_t size;
    size_t padding;
} ab_rec_bootstrap_header;
_Static_assert(sizeof(ab_rec_bootstrap_header) == 16, "bootstrap blocks stay 16-byte aligned");

// MARK: - Bootstrap arena

static bool ab_rec_is_bootstrap(const void *pointer) {
    const unsigned char *address = pointer;
    return address >= ab_rec_bootstrap && address < ab_rec_bootstrap + AB_REC_BOOTSTRAP_BYTES;
}

/// Zeroed memory that is never reused (the arena only grows), so calloc needs nothing more.
static void *ab_rec_bootstrap_allocate(size_t size, size_t alignment) {
    if (alignment < 16) alignment = 16;
    if (size > AB_REC_BOOTSTRAP_BYTES || alignment > AB_REC_BOOTSTRAP_BYTES / 2) return NULL;
    size_t used = atomic_load_explicit(&ab_rec_bootstrap_used, memory_order_relaxed);
    while (true) {
        uintptr_t base = (uintptr_t)ab_rec_bootstrap + used + sizeof(ab_rec_bootstrap_header);
        uintptr_t block = (base + alignment - 1) & ~(uintptr_t)(alignment - 1);
        size_t end = (size_t)(block - (uintptr_t)ab_rec_bootstrap) + ((size + 15) & ~(size_t)15);
        if (end > AB_REC_BOOTSTRAP_BYTES) return NULL;
        if (atomic_compare_exchange_weak_explicit(&ab_rec_bootstrap_used, &used, end,
                                                  memory_order_relaxed, memory_order_relaxed)) {
            ((ab_rec_bootstrap_header *)block)[-1].size = size;
            return (void *)block;
        }
    }
}

static size_t ab_rec_bootstrap_size(const void *pointer) {
    return ((const ab_rec_bootstrap_header *)pointer)[-1].size;
}

// MARK: - Formatting

typedef struct ab_rec_line {
    char text[AB_REC_LINE_MAX];
    uint32_t length;
} ab_rec_line;

/// Inlined, so that for the constant strings it is mostly given, strlen folds and memcpy is a move.
static inline __attribute__((always_inline)) void ab_rec_put_text(ab_rec_line *line, const char *text) {
    size_t length = strlen(text);
    memcpy(line->text + line->length, text, length);
    line->length += (uint32_t)length;
}

static const uint64_t ab_rec_powers_of_ten[20] = {
    1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull, 100000000ull,
    1000000000ull, 10000000000ull, 100000000000ull, 1000000000000ull, 10000000000000ull,
    100000000000000ull, 1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
    1000000000000000000ull, 10000000000000000000ull,
};

static uint32_t ab_rec_decimal_digits(uint64_t value) {
    if (value < 10) return 1;
    // log10(2) ≈ 1233/4096: a first guess from the bit length, corrected by one comparison.
    uint32_t guess = ((uint32_t)(64 - __builtin_clzll(value | 1)) * 1233) >> 12;
    return guess + (value >= ab_rec_powers_of_ten[guess]);
}

/// Writes `value` right-aligned in exactly `width` characters (the caller sized it), two digits
/// at a time.
static void ab_rec_put_decimal_width(char *at, uint64_t value, uint32_t width) {
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
        "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
        "8081828384858687888990919293949596979899";
    uint32_t index = width;
    while (index >= 2) {
        uint32_t pair = (uint32_t)(value % 100) * 2;
        value /= 100;
        at[--index] = pairs[pair + 1];
        at[--index] = pairs[pair];
    }
    if (index == 1) at[0] = (char)('0' + value % 10);
}

static void ab_rec_put_decimal(ab_rec_line *line, uint64_t value) {
    uint32_t width = ab_rec_decimal_digits(value);
    ab_rec_put_decimal_width(line->text + line->length, value, width);
    line->length += width;
}

static void ab_rec_put_hex(ab_rec_line *line, uint64_t value) {
    static const char digits[] = "0123456789abcdef";
    uint32_t width = (uint32_t)(67 - __builtin_clzll(value | 1)) / 4;
    char *at = line->text + line->length;
    at[0] = '0';
    at[1] = 'x';
    for (uint32_t index = width; index > 0; index--) {
        at[1 + index] = digits[value & 0xf];
        value >>= 4;
    }
    line->length += 2 + width;
}

// MARK: - Failure reporting

/// Stops recording this image and leaves the reason beside its spool file for the runner to report.
/// Uses only system calls: it may run inside malloc.
static void ab_rec_fail(const char *what, int error) {
    if (atomic_exchange(&ab_rec.failed, true)) return;
    atomic_store(&ab_rec.recording, false);
    char path[PATH_MAX + 8];
    size_t length = strlen(ab_rec.path);
    if (length == 0 || length + 7 > sizeof(path)) return;
    memcpy(path, ab_rec.path, length);
    memcpy(path + length, ".error", 7);
    int descriptor = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (descriptor < 0) return;
    ab_rec_line message = {.length = 0};
    ab_rec_put_text(&message, what);
    if (error != 0) {
        const char *name = strerrorname_np(error);
        ab_rec_put_text(&message, " (");
        ab_rec_put_text(&message, name ? name : "unknown errno");
        ab_rec_put_text(&message, ")");
    }
    message.text[message.length++] = '\n';
    ssize_t written = write(descriptor, message.text, message.length);
    (void)written;
    close(descriptor);
}

// MARK: - The spool file

/// The mapping of window `index`, created (and the file lengthened) on first use; NULL once
/// recording has failed.
static char *ab_rec_window(uint64_t index) {
    if (index >= AB_REC_WINDOW_COUNT) {
        ab_rec_fail("the trace of this program image passed 1 TiB; recording stopped", 0);
        return NULL;
    }
    char *window = atomic_load_explicit(&ab_rec.windows[index], memory_order_acquire);
    if (window) return window;
    pthread_mutex_lock(&ab_rec.window_lock);
    window = atomic_load_explicit(&ab_rec.windows[index], memory_order_relaxed);
    if (!window && !atomic_load(&ab_rec.failed)) {
        // The file is reopened by path for each window rather than kept open: a program that closes
        // every descriptor it does not know (daemons, shells) can then never close ours, or have us
        // truncate a file that reused our descriptor number.
        int descriptor = open(ab_rec.path, O_RDWR | O_CLOEXEC);
        uint64_t needed = (index + 1) << AB_REC_WINDOW_SHIFT;
        if (descriptor < 0) {
            ab_rec_fail("cannot reopen the spool file", errno);
        } else if (ab_rec.file_bytes < needed && ftruncate(descriptor, (off_t)needed) != 0) {
            ab_rec_fail("cannot lengthen the spool file", errno);
        } else {
            if (ab_rec.file_bytes < needed) ab_rec.file_bytes = needed;
            void *mapping = mmap(NULL, AB_REC_WINDOW_BYTES, PROT_READ | PROT_WRITE, MAP_SHARED,
                                 descriptor, (off_t)(index << AB_REC_WINDOW_SHIFT));
            if (mapping == MAP_FAILED) {
                ab_rec_fail("cannot map the spool file", errno);
            } else {
                window = mapping;
                atomic_store_explicit(&ab_rec.windows[index], window, memory_order_release);
            }
        }
        if (descriptor >= 0) close(descriptor);
    }
    pthread_mutex_unlock(&ab_rec.window_lock);
    return window;
}

static uint64_t ab_rec_reserve(uint32_t length) {
    return atomic_fetch_add_explicit(&ab_rec.next_offset, length, memory_order_relaxed);
}

/// Copies a reserved line into the file, its final '\n' last (invariant 2).
static void ab_rec_store(uint64_t offset, const ab_rec_line *line) {
    uint64_t body = line->length - 1;
    uint64_t done = 0;
    while (done < body) {
        uint64_t at = offset + done;
        char *window = ab_rec_window(at >> AB_REC_WINDOW_SHIFT);
        if (!window) return;
        uint64_t within = at & (AB_REC_WINDOW_BYTES - 1);
        uint64_t count = body - done;
        if (count > AB_REC_WINDOW_BYTES - within) count = AB_REC_WINDOW_BYTES - within;
        memcpy(window + within, line->text + done, count);
        done += count;
    }
    uint64_t at = offset + body;
    char *window = ab_rec_window(at >> AB_REC_WINDOW_SHIFT);
    if (!window) return;
    __atomic_store_n(window + (at & (AB_REC_WINDOW_BYTES - 1)), '\n', __ATOMIC_RELEASE);
}

/// Creates this image's spool file `<directory>/<pid>.<image>`, the first image number not taken
/// (a process that execs creates the next one).
static void ab_rec_begin_image(void) {
    ab_rec_line name = {.length = 0};
    ab_rec_put_decimal(&name, (uint64_t)getpid());
    name.text[name.length++] = '.';
    size_t directory_length = strlen(ab_rec.directory);
    if (directory_length + 1 + name.length + 12 > sizeof(ab_rec.path)) return;
    for (uint64_t image = 0; image < AB_REC_MAX_IMAGES; image++) {
        ab_rec_line suffix = name;
        ab_rec_put_decimal(&suffix, image);
        memcpy(ab_rec.path, ab_rec.directory, directory_length);
        ab_rec.path[directory_length] = '/';
        memcpy(ab_rec.path + directory_length + 1, suffix.text, suffix.length);
        ab_rec.path[directory_length + 1 + suffix.length] = '\0';
        int descriptor = open(ab_rec.path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (descriptor >= 0) {
            close(descriptor);
            atomic_store(&ab_rec.recording, true);
            return;
        }
        if (errno != EEXIST) break;
    }
    // Nothing is recorded for this image; say why, since there is no spool file to leave it in.
    int error = errno;
    static const char message[] = "allocbench-recorder: cannot create a spool file in ";
    ssize_t written = write(STDERR_FILENO, message, sizeof(message) - 1);
    written = write(STDERR_FILENO, ab_rec.directory, directory_length);
    const char *reason = strerrorname_np(error);
    written = write(STDERR_FILENO, " (", 2);
    written = write(STDERR_FILENO, reason ? reason : "?", reason ? strlen(reason) : 1);
    written = write(STDERR_FILENO, ")\n", 2);
    (void)written;
    ab_rec.path[0] = '\0';
}

// MARK: - Lines

static uint64_t ab_rec_clock(void) {
    if (!ab_rec.timestamps) return 0;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static uint32_t ab_rec_tid(ab_rec_thread *self) {
    if (self->tid == 0) self->tid = (uint32_t)gettid();
    return self->tid;
}

/// Asks for thread_done at this thread's exit (a pthread key destructor runs only for a thread that
/// set a non-null value).
static void ab_rec_register_thread(ab_rec_thread *self) {
    if (self->registered) return;
    self->registered = true;
    bool outer = self->bookkeeping;
    self->bookkeeping = true;
    pthread_setspecific(ab_rec.thread_key, &ab_rec);
    self->bookkeeping = outer;
}

/// `<tid>: <action> <hex>... <decimal>...[ <start_ns> <end_ns>]\n`
static inline __attribute__((always_inline)) void ab_rec_format(ab_rec_line *line, ab_rec_thread *self, const char *action,
                          const uint64_t *hex, int hex_count, const uint64_t *decimal, int decimal_count,
                          uint64_t start, uint64_t end) {
    line->length = 0;
    ab_rec_put_decimal(line, ab_rec_tid(self));
    ab_rec_put_text(line, ": ");
    ab_rec_put_text(line, action);
    for (int index = 0; index < hex_count; index++) {
        line->text[line->length++] = ' ';
        ab_rec_put_hex(line, hex[index]);
    }
    for (int index = 0; index < decimal_count; index++) {
        line->text[line->length++] = ' ';
        ab_rec_put_decimal(line, decimal[index]);
    }
    if (ab_rec.timestamps) {
        line->text[line->length++] = ' ';
        ab_rec_put_decimal(line, start);
        line->text[line->length++] = ' ';
        ab_rec_put_decimal(line, end);
    }
    line->text[line->length++] = '\n';
}

/// Records an allocation-side operation after the real call returned (invariant 3).
static inline __attribute__((always_inline)) void ab_rec_write(ab_rec_thread *self, const char *action, const uint64_t *hex, int hex_count,
                         const uint64_t *decimal, int decimal_count, uint64_t start) {
    uint64_t end = ab_rec_clock();
    ab_rec_register_thread(self);
    ab_rec_line line;
    ab_rec_format(&line, self, action, hex, hex_count, decimal, decimal_count, start, end);
    ab_rec_store(ab_rec_reserve(line.length), &line);
}

static bool ab_rec_recording(void) {
    return atomic_load_explicit(&ab_rec.recording, memory_order_relaxed);
}

// MARK: - Initialization, fork, thread exit

static void ab_rec_thread_exit(void *value) {
    (void)value;
    if (!ab_rec_recording()) return;
    ab_rec_thread *self = &ab_rec_self;
    self->depth++;
    uint64_t zero = 0;
    ab_rec_line line;
    ab_rec_format(&line, self, "thread_done", &zero, 1, NULL, 0, 0, 0);
    if (ab_rec.timestamps) {
        // thread_done carries only its end time: "<tid>: thread_done 0x0 <end_ns>".
        line.length = 0;
        ab_rec_put_decimal(&line, ab_rec_tid(self));
        ab_rec_put_text(&line, ": thread_done 0x0 ");
        ab_rec_put_decimal(&line, ab_rec_clock());
        line.text[line.length++] = '\n';
    }
    ab_rec_store(ab_rec_reserve(line.length), &line);
    self->depth--;
}

static void ab_rec_before_fork(void) {
    pthread_mutex_lock(&ab_rec.window_lock);
}

static void ab_rec_after_fork_in_parent(void) {
    pthread_mutex_unlock(&ab_rec.window_lock);
}

/// The child starts a trace of its own: it forgets the parent's windows (its copies of the parent's
/// mappings; the parent keeps writing through its own) and its tid, and opens `<pid>.0`. Its first
/// line, `# forked from <parent spool> at <offset>`, tells the runner which of the parent's blocks
/// it inherited: those live in the first <offset> bytes of the parent's spool file.
static void ab_rec_after_fork_in_child(void) {
    ab_rec_thread *self = &ab_rec_self;
    self->depth++;
    self->bookkeeping = true;
    pthread_mutex_unlock(&ab_rec.window_lock);
    self->tid = 0;
    bool parent_recorded = atomic_exchange(&ab_rec.recording, false);
    uint64_t parent_offset = atomic_load(&ab_rec.next_offset);
    ab_rec_line header = {.length = 0};
    ab_rec_put_text(&header, "# forked from ");
    const char *parent_name = strrchr(ab_rec.path, '/');
    if (parent_name && strlen(parent_name + 1) < 32) ab_rec_put_text(&header, parent_name + 1);
    else parent_recorded = false;
    ab_rec_put_text(&header, " at ");
    ab_rec_put_decimal(&header, parent_offset);
    header.text[header.length++] = '\n';
    for (uint32_t index = 0; index < AB_REC_WINDOW_COUNT; index++) {
        char *window = atomic_load_explicit(&ab_rec.windows[index], memory_order_relaxed);
        if (!window) continue;
        munmap(window, AB_REC_WINDOW_BYTES);
        atomic_store_explicit(&ab_rec.windows[index], NULL, memory_order_relaxed);
    }
    atomic_store(&ab_rec.next_offset, 0);
    ab_rec.file_bytes = 0;
    if (ab_rec.follow_children && !atomic_load(&ab_rec.failed)) ab_rec_begin_image();
    if (ab_rec_recording() && parent_recorded) ab_rec_store(ab_rec_reserve(header.length), &header);
    self->bookkeeping = false;
    self->depth--;
}

static void *ab_rec_resolve(const char *name, bool required) {
    void *function = dlsym(RTLD_NEXT, name);
    if (!function && required) {
        static const char message[] = "allocbench-recorder: the next malloc in the link chain has no ";
        ssize_t written = write(STDERR_FILENO, message, sizeof(message) - 1);
        written = write(STDERR_FILENO, name, strlen(name));
        written = write(STDERR_FILENO, "\n", 1);
        (void)written;
        abort();
    }
    return function;
}

static uint64_t ab_rec_parse_decimal(const char *text) {
    uint64_t value = 0;
    for (; text && *text >= '0' && *text <= '9'; text++) value = value * 10 + (uint64_t)(*text - '0');
    return value;
}

static bool ab_rec_equals(const char *text, const char *expected) {
    return text && strcmp(text, expected) == 0;
}

static void ab_rec_initialize(void) {
    ab_rec_thread *self = &ab_rec_self;
    bool outer = self->bookkeeping;
    self->bookkeeping = true;
    ab_rec_next.malloc = (void *(*)(size_t))ab_rec_resolve("malloc", true);
    ab_rec_next.free = (void (*)(void *))ab_rec_resolve("free", true);
    ab_rec_next.calloc = (void *(*)(size_t, size_t))ab_rec_resolve("calloc", true);
    ab_rec_next.realloc = (void *(*)(void *, size_t))ab_rec_resolve("realloc", true);
    ab_rec_next.reallocarray = (void *(*)(void *, size_t, size_t))ab_rec_resolve("reallocarray", false);
    ab_rec_next.memalign = (void *(*)(size_t, size_t))ab_rec_resolve("memalign", true);
    ab_rec_next.posix_memalign = (int (*)(void **, size_t, size_t))ab_rec_resolve("posix_memalign", true);
    ab_rec_next.aligned_alloc = (void *(*)(size_t, size_t))ab_rec_resolve("aligned_alloc", true);
    ab_rec_next.valloc = (void *(*)(size_t))ab_rec_resolve("valloc", true);
    ab_rec_next.pvalloc = (void *(*)(size_t))ab_rec_resolve("pvalloc", true);
    long page_size = sysconf(_SC_PAGESIZE);
    ab_rec.page_size = page_size > 0 ? (size_t)page_size : 4096;

    const char *directory = getenv(AB_RECORD_ENV_DIRECTORY);
    if (directory && directory[0] == '/' && strlen(directory) < sizeof(ab_rec.directory) - 32) {
        strcpy(ab_rec.directory, directory);
        ab_rec.timestamps = ab_rec_equals(getenv(AB_RECORD_ENV_TIMESTAMPS), "1");
        ab_rec.follow_children = !ab_rec_equals(getenv(AB_RECORD_ENV_FOLLOW), "none");
        ab_rec.parent = (pid_t)ab_rec_parse_decimal(getenv(AB_RECORD_ENV_PARENT));
        if (ab_rec.follow_children || getppid() == ab_rec.parent) {
            if (pthread_key_create(&ab_rec.thread_key, ab_rec_thread_exit) == 0
                && pthread_atfork(ab_rec_before_fork, ab_rec_after_fork_in_parent, ab_rec_after_fork_in_child) == 0) {
                ab_rec_begin_image();
            }
        }
    }
    self->bookkeeping = outer;
    atomic_store_explicit(&ab_rec_ready, true, memory_order_release);
}

static void ab_rec_ensure_ready(void) {
    if (atomic_load_explicit(&ab_rec_ready, memory_order_acquire)) return;
    pthread_once(&ab_rec_once, ab_rec_initialize);
}

/// Runs before main (and usually before anything allocates); the first allocation would otherwise
/// initialize.
__attribute__((constructor)) static void ab_rec_constructor(void) {
    ab_rec_thread *self = &ab_rec_self;
    self->depth++;
    ab_rec_ensure_ready();
    self->depth--;
}

// MARK: - Nested calls

static void *ab_rec_nested_allocate(ab_rec_thread *self, size_t size, size_t alignment) {
    if (self->bookkeeping || !ab_rec_next.malloc) {
        void *block = ab_rec_bootstrap_allocate(size, alignment);
        if (block || !ab_rec_next.malloc) return block;
    }
    return alignment <= 16 ? ab_rec_next.malloc(size) : ab_rec_next.memalign(alignment, size);
}

static size_t ab_rec_normalized_alignment(size_t alignment) {
    if (alignment <= 1) return 1;
    if ((alignment & (alignment - 1)) == 0) return alignment;
    if (alignment > ((size_t)1 << 62)) return (size_t)1 << 63;
    return (size_t)1 << (64 - __builtin_clzll((unsigned long long)(alignment - 1)));
}

// MARK: - The interposed functions

AB_REC_EXPORT void *malloc(size_t size) {
    ab_rec_thread *self = &ab_rec_self;
    if (self->depth) return ab_rec_nested_allocate(self, size, 16);
    self->depth++;
    ab_rec_ensure_ready();
    uint64_t start = ab_rec_clock();
    void *block = ab_rec_next.malloc(size);
    if (ab_rec_recording()) {
        int saved = errno;
        uint64_t pointer = (uintptr_t)block, requested = size;
        ab_rec_write(self, "malloc", &pointer, 1, &requested, 1, start);
        errno = saved;
    }
    self->depth--;
    return block;
}

AB_REC_EXPORT void free(void *block) {
    if (ab_rec_is_bootstrap(block)) return;
    ab_rec_thread *self = &ab_rec_self;
    if (self->depth) {
        if (ab_rec_next.free) ab_rec_next.free(block);
        return;
    }
    self->depth++;
    ab_rec_ensure_ready();
    if (!ab_rec_recording()) {
        ab_rec_next.free(block);
        self->depth--;
        return;
    }
    int saved = errno;
    // Reserve the line before the block can be reused (invariant 3). With timestamps the end time is
    // patched in afterwards, at the width the start time has (a monotonic clock only gains a digit
    // at 10^k ns; then the end reads 10^k - 1, a few ns early).
    uint64_t start = ab_rec_clock();
    uint64_t pointer = (uintptr_t)block;
    ab_rec_register_thread(self);
    ab_rec_line line;
    ab_rec_format(&line, self, "free", &pointer, 1, NULL, 0, start, start);
    uint64_t offset = ab_rec_reserve(line.length);
    ab_rec_next.free(block);
    if (ab_rec.timestamps) {
        uint64_t end = ab_rec_clock();
        uint32_t width = ab_rec_decimal_digits(start);
        if (ab_rec_decimal_digits(end) != width) {
            end = 0;
            for (uint32_t digit = 0; digit < width; digit++) end = end * 10 + 9;
        }
        ab_rec_put_decimal_width(line.text + line.length - 1 - width, end, width);
    }
    ab_rec_store(offset, &line);
    errno = saved;
    self->depth--;
}

AB_REC_EXPORT void *calloc(size_t count, size_t size) {
    ab_rec_thread *self = &ab_rec_self;
    if (self->depth) {
        size_t total;
        if (__builtin_mul_overflow(count, size, &total)) return NULL;
        if (self->bookkeeping || !ab_rec_next.calloc) {
            void *block = ab_rec_bootstrap_allocate(total, 16);
            if (block || !ab_rec_next.calloc) return block;
        }
        return ab_rec_next.calloc(count, size);
    }
    self->depth++;
    ab_rec_ensure_ready();
    uint64_t start = ab_rec_clock();
    void *block = ab_rec_next.calloc(count, size);
    if (ab_rec_recording()) {
        int saved = errno;
        uint64_t pointer = (uintptr_t)block, fields[2] = {count, size};
        ab_rec_write(self, "calloc", &pointer, 1, fields, 2, start);
        errno = saved;
    }
    self->depth--;
    return block;
}

/// realloc of a bootstrap block: move it to the real allocator (the arena never frees).
static void *ab_rec_move_from_bootstrap(void *block, size_t size) {
    void *moved = ab_rec_next.malloc(size);
    if (moved) {
        size_t old_size = ab_rec_bootstrap_size(block);
        memcpy(moved, block, old_size < size ? old_size : size);
    }
    return moved;
}

static void *ab_rec_reallocate(void *block, size_t size) {
    ab_rec_thread *self = &ab_rec_self;
    if (self->depth) {
        if (!block) return ab_rec_nested_allocate(self, size, 16);
        if (!ab_rec_is_bootstrap(block)) return ab_rec_next.realloc(block, size);
        // A bootstrap block moves to wherever a nested allocation would come from now.
        size_t old_size = ab_rec_bootstrap_size(block);
        void *moved = ab_rec_nested_allocate(self, size, 16);
        if (moved) memcpy(moved, block, old_size < size ? old_size : size);
        return moved;
    }
    self->depth++;
    ab_rec_ensure_ready();
    uint64_t start = ab_rec_clock();
    void *moved;
    uint64_t old = (uintptr_t)block;
    if (ab_rec_is_bootstrap(block)) {
        // Never recorded as allocated, so the new block is, to the trace, a fresh allocation.
        moved = ab_rec_move_from_bootstrap(block, size);
        old = 0;
    } else {
        moved = ab_rec_next.realloc(block, size);
    }
    if (ab_rec_recording()) {
        int saved = errno;
        uint64_t pointers[2] = {(uintptr_t)moved, old}, requested = size;
        ab_rec_write(self, "realloc", pointers, 2, &requested, 1, start);
        errno = saved;
    }
    self->depth--;
    return moved;
}

AB_REC_EXPORT void *realloc(void *block, size_t size) {
    return ab_rec_reallocate(block, size);
}

/// glibc's reallocarray calls realloc, but another allocator's may not: record it as the realloc it
/// is. One whose size overflows fails without touching the block and is not recorded.
AB_REC_EXPORT void *reallocarray(void *block, size_t count, size_t size) {
    size_t total;
    if (__builtin_mul_overflow(count, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return ab_rec_reallocate(block, total);
}

typedef enum ab_rec_aligned_kind {
    AB_REC_MEMALIGN,
    AB_REC_ALIGNED_ALLOC,
    AB_REC_VALLOC,
    AB_REC_PVALLOC,
} ab_rec_aligned_kind;

/// memalign, aligned_alloc, valloc and pvalloc, all recorded as `memalign` lines with the alignment
/// rounded up to a power of two (as glibc's memalign does; 0 and 1 read 1).
static void *ab_rec_aligned(ab_rec_aligned_kind kind, size_t alignment, size_t size) {
    ab_rec_thread *self = &ab_rec_self;
    if (self->depth) {
        size_t effective = kind == AB_REC_VALLOC || kind == AB_REC_PVALLOC ? (ab_rec.page_size ? ab_rec.page_size : 4096) : alignment;
        if (self->bookkeeping || !ab_rec_next.memalign) {
            void *block = ab_rec_bootstrap_allocate(size, ab_rec_normalized_alignment(effective));
            if (block || !ab_rec_next.memalign) return block;
        }
        switch (kind) {
        case AB_REC_MEMALIGN: return ab_rec_next.memalign(alignment, size);
        case AB_REC_ALIGNED_ALLOC: return ab_rec_next.aligned_alloc(alignment, size);
        case AB_REC_VALLOC: return ab_rec_next.valloc(size);
        case AB_REC_PVALLOC: return ab_rec_next.pvalloc(size);
        }
        return NULL;
    }
    self->depth++;
    ab_rec_ensure_ready();
    uint64_t start = ab_rec_clock();
    void *block = NULL;
    size_t recorded_alignment = alignment, recorded_size = size;
    switch (kind) {
    case AB_REC_MEMALIGN:
        block = ab_rec_next.memalign(alignment, size);
        break;
    case AB_REC_ALIGNED_ALLOC:
        block = ab_rec_next.aligned_alloc(alignment, size);
        break;
    case AB_REC_VALLOC:
        block = ab_rec_next.valloc(size);
        recorded_alignment = ab_rec.page_size;
        break;
    case AB_REC_PVALLOC:
        block = ab_rec_next.pvalloc(size);
        recorded_alignment = ab_rec.page_size;
        if (size <= SIZE_MAX - (ab_rec.page_size - 1))
            recorded_size = (size + ab_rec.page_size - 1) & ~(ab_rec.page_size - 1);
        break;
    }
    if (ab_rec_recording()) {
        int saved = errno;
        uint64_t pointer = (uintptr_t)block, fields[2] = {ab_rec_normalized_alignment(recorded_alignment), recorded_size};
        ab_rec_write(self, "memalign", &pointer, 1, fields, 2, start);
        errno = saved;
    }
    self->depth--;
    return block;
}

AB_REC_EXPORT void *memalign(size_t alignment, size_t size) {
    return ab_rec_aligned(AB_REC_MEMALIGN, alignment, size);
}

AB_REC_EXPORT void *aligned_alloc(size_t alignment, size_t size) {
    return ab_rec_aligned(AB_REC_ALIGNED_ALLOC, alignment, size);
}

AB_REC_EXPORT void *valloc(size_t size) {
    return ab_rec_aligned(AB_REC_VALLOC, 0, size);
}

AB_REC_EXPORT void *pvalloc(size_t size) {
    return ab_rec_aligned(AB_REC_PVALLOC, 0, size);
}

AB_REC_EXPORT int posix_memalign(void **result, size_t alignment, size_t size) {
    ab_rec_thread *self = &ab_rec_self;
    if (self->depth) {
        if (self->bookkeeping || !ab_rec_next.posix_memalign) {
            void *block = ab_rec_bootstrap_allocate(size, ab_rec_normalized_alignment(alignment));
            if (block || !ab_rec_next.posix_memalign) {
                if (!block) return ENOMEM;
                *result = block;
                return 0;
            }
        }
        return ab_rec_next.posix_memalign(result, alignment, size);
    }
    self->depth++;
    ab_rec_ensure_ready();
    uint64_t start = ab_rec_clock();
    int status = ab_rec_next.posix_memalign(result, alignment, size);
    if (ab_rec_recording()) {
        int saved = errno;
        uint64_t pointer = status == 0 ? (uintptr_t)*result : 0;
        uint64_t fields[2] = {ab_rec_normalized_alignment(alignment), size};
        ab_rec_write(self, "memalign", &pointer, 1, fields, 2, start);
        errno = saved;
    }
    self->depth--;
    return status;
}
