// The C reference loop: what a replay child's timed run does (Sources/AllocBenchReplay/Replay.swift
// `replayOps` over the process malloc with `--touch pages`, set up as ReplayChild.swift sets it up),
// written as plain C, so that `compare.py` can say what the Swift replay costs per op above it.
// Built once per malloc the lean children are linked with (Makefile, `bench-replay-loop`).
//
//     reference OP_STREAM   prints "<ns per op> <ops>" for one timed run
//
// OP_STREAM is a file in the children's op-stream format (`parse-benchmark TRACE --write-op-stream
// FILE` writes one with allocbench's own parser); its layout is the shared header's, never a copy.
#include "CAllocBench.h"

#include <fcntl.h>
#include <stdbool.h>
#include <time.h>

/// One entry of the slot table: Replay.swift's `Slot`.
typedef struct reference_slot {
    void *block;
    size_t byte_count;
} reference_slot;

/// ReplayChild.swift's `stackSlotTableBytes`: a slot table this small lives on the stack.
enum { STACK_SLOT_TABLE_BYTES = 1024 };
/// What malloc, calloc and realloc align to (CMallocAPI.swift's `cMallocAlignment`).
enum { C_MALLOC_ALIGNMENT = 16 };

static _Noreturn void fail(const char *message) {
    fprintf(stderr, "reference: %s\n", message);
    exit(1);
}

static uint64_t monotonic_nanoseconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

/// The alignment a block of `byte_count` must have (Allocator.swift's `guaranteedAlignment`): what
/// was asked above malloc's, else no more than the largest power of two not above the size.
static size_t guaranteed_alignment(size_t alignment, size_t byte_count) {
    if (alignment > C_MALLOC_ALIGNMENT) return alignment;
    size_t fitting = byte_count <= 1 ? 1 : (size_t)1 << (63 - __builtin_clzll(byte_count));
    return alignment < fitting ? alignment : fitting;
}

/// CMallocAPI.swift's `allocate`: malloc, or posix_memalign above malloc's alignment.
static inline void *allocate(size_t byte_count, size_t alignment) {
    if (alignment <= C_MALLOC_ALIGNMENT) return malloc(byte_count);
    void *block = NULL;
    return posix_memalign(&block, alignment, byte_count) == 0 ? block : NULL;
}

/// Replay.swift's `touchBlock` in mode pages: the first byte, one byte in every later page, the last.
/// The stores are volatile so that no compiler drops a store into a block it can see freed later.
static inline void touch_pages(volatile unsigned char *block, size_t byte_count) {
    if (byte_count == 0) return;
    block[0] = 0xA5;
    uintptr_t address = (uintptr_t)block;
    uintptr_t end = address + byte_count;
    for (uintptr_t page = (address | (AB_PAGE_SIZE - 1)) + 1; page < end; page += AB_PAGE_SIZE) {
        *(volatile unsigned char *)page = 0xA5;
    }
    block[byte_count - 1] = 0xA5;
}

/// Replay.swift's `replayOps`: every op, its page touches, the alignment check and the progress
/// counter the child stores after each op (into the control block, a shared page: `progress` here).
/// Returns an AB_FAILURE_* code.
static uint32_t replay_ops(const ab_op *ops, uint64_t op_count, reference_slot *slots, volatile uint64_t *progress) {
    uint64_t completed = 0;
    for (const ab_op *op = ops; op < ops + op_count; op++) {
        size_t alignment = (size_t)1 << op->align_log2;
        reference_slot *slot = &slots[op->slot];
        size_t byte_count = (size_t)op->size;
        if (op->kind == AB_OP_FREE) {
            free(slot->block);
            slot->block = NULL;
        } else if (op->kind >= AB_OP_MALLOC && op->kind <= AB_OP_REALLOC) {
            void *block;
            if (op->kind == AB_OP_CALLOC) {
                if (alignment <= C_MALLOC_ALIGNMENT) {
                    block = calloc(1, byte_count);
                } else if ((block = allocate(byte_count, alignment)) != NULL) {
                    memset(block, 0, byte_count);
                }
            } else if (op->kind == AB_OP_REALLOC) {
                if (alignment <= C_MALLOC_ALIGNMENT) {
                    block = realloc(slot->block, byte_count);
                } else if ((block = allocate(byte_count, alignment)) != NULL) {
                    memcpy(block, slot->block, slot->byte_count < byte_count ? slot->byte_count : byte_count);
                    free(slot->block);
                }
            } else {
                block = allocate(byte_count, alignment);
            }
            if (block == NULL) return AB_FAILURE_OUT_OF_MEMORY;
            if ((uintptr_t)block & (guaranteed_alignment(alignment, byte_count) - 1)) return AB_FAILURE_MISALIGNED;
            slot->block = block;
            slot->byte_count = byte_count;
            touch_pages(block, byte_count);
        }
        completed++;
        *progress = completed;
    }
    return AB_FAILURE_NONE;
}

/// Times one replay (ReplaySession's timed run: the clock around the whole loop) and prints it.
static void replay_and_report(const ab_op *ops, uint64_t op_count, reference_slot *slots, volatile uint64_t *progress) {
    uint64_t start = monotonic_nanoseconds();
    uint32_t failure = replay_ops(ops, op_count, slots, progress);
    uint64_t elapsed = monotonic_nanoseconds() - start;
    if (failure != AB_FAILURE_NONE) {
        fprintf(stderr, "reference: op %llu failed (%s)\n", (unsigned long long)*progress,
                failure == AB_FAILURE_OUT_OF_MEMORY ? "out of memory" : "misaligned block");
        exit(3);
    }
    printf("%.3f %llu\n", (double)elapsed / (double)(op_count > 0 ? op_count : 1), (unsigned long long)op_count);
    exit(0);
}

int main(int argc, char **argv) {
    if (argc != 2) fail("usage: reference OP_STREAM");
    int stream = open(argv[1], O_RDONLY | O_CLOEXEC);
    if (stream < 0) fail("cannot open the op stream");
    off_t stream_bytes = lseek(stream, 0, SEEK_END);
    if (stream_bytes < (off_t)AB_STREAM_HEADER_BYTES) fail("not an op stream");
    // Mapped as the children map descriptor 3: shared, read-only, faulted in before the clock starts.
    const unsigned char *base = mmap(NULL, (size_t)stream_bytes, PROT_READ, MAP_SHARED | MAP_POPULATE, stream, 0);
    if (base == MAP_FAILED) fail("cannot map the op stream");
    const ab_stream_header *header = (const ab_stream_header *)base;
    if (header->magic != AB_STREAM_MAGIC || header->version != AB_STREAM_VERSION ||
        header->header_bytes + header->op_count * sizeof(ab_op) > (uint64_t)stream_bytes) {
        fail("the op stream's header does not match this program's CAllocBench.h");
    }
    const ab_op *ops = (const ab_op *)(base + header->header_bytes);

    // The control block's progress counter lives in a shared page in the child.
    uint64_t *progress = mmap(NULL, AB_CONTROL_BLOCK_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (progress == MAP_FAILED) fail("cannot map the progress page");
    *progress = 0;

    size_t slot_count = header->slot_count > 0 ? (size_t)header->slot_count : 1;
    size_t slot_bytes = slot_count * sizeof(reference_slot);
    if (slot_bytes <= STACK_SLOT_TABLE_BYTES) {
        reference_slot slots[STACK_SLOT_TABLE_BYTES / sizeof(reference_slot)] = {{0}};
        replay_and_report(ops, header->op_count, slots, progress);
    }
    // A larger table is anonymous memory, every page faulted in before the clock starts.
    reference_slot *slots = mmap(NULL, slot_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (slots == MAP_FAILED) fail("cannot map the slot table");
    memset(slots, 0, slot_bytes);
    replay_and_report(ops, header->op_count, slots, progress);
}
