// What one hand-over of a per-thread replay costs on this machine, with no allocator in it: the
// floor under a per-thread replay's wall time (docs/metrics.md, "Threads").
//
//     handover [OPS]   (default 200000)
//
// 1. The replay's own hand-over: `ab_replay_on_threads` (the child's code, linked in) over OPS
//    no-op ops of two recorded threads taking turns op by op, so that every op is followed by a
//    hand-over. Prints the hand-overs it counted, their time by its own clock (what a row's
//    hand-over ns/op sums) and the whole replay's wall time per hand-over.
// 2. The kernel's floor: two threads on one CPU passing a futex word back and forth (a wake, a
//    wait, a context switch), the least any hand-over between OS threads can cost.
//
// A per-thread replay of a trace with H hand-overs takes at least H times (2) longer than a serial
// one, whatever the allocator: systemui has 36,884 changes of thread.
#include "CAllocBench.h"

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static uint32_t no_op(void *context, uint64_t index) {
    (void)context;
    (void)index;
    return AB_FAILURE_NONE;
}

/// The replay's hand-over, as a per-thread replay child runs it.
static void replay_hand_overs(uint64_t op_count) {
    ab_op *ops = calloc(op_count, sizeof *ops);
    if (ops == NULL) exit(1);
    for (uint64_t index = 0; index < op_count; index++) {
        ops[index].thread = (uint32_t)(index % 2);
        ops[index].kind = AB_OP_FREE;
    }
    ab_thread_plan plan = {0};
    if (ab_thread_plan_prepare(&plan, ops, op_count) != 0) {
        perror("handover: ab_thread_plan_prepare");
        exit(1);
    }
    uint64_t completed = 0, hand_overs = 0, hand_over_nanoseconds = 0;
    uint64_t started = ab_monotonic_nanoseconds();
    uint32_t failure = ab_replay_on_threads(&plan, no_op, NULL, &completed, &hand_overs, &hand_over_nanoseconds);
    uint64_t wall = ab_monotonic_nanoseconds() - started;
    if (failure != AB_FAILURE_NONE || completed != op_count) {
        fprintf(stderr, "handover: the replay failed (%u) after %llu ops\n", failure, (unsigned long long)completed);
        exit(1);
    }
    printf("per-thread replay, no-op ops, 2 threads taking turns: %llu hand-overs, %.0f ns each by its own clock, "
           "%.0f ns of wall time each\n",
           (unsigned long long)hand_overs, (double)hand_over_nanoseconds / (double)hand_overs, (double)wall / (double)hand_overs);
    free(ops);
}

static uint32_t words[2];
static uint64_t rounds;

/// Waits until the word is 1, sleeping in FUTEX_WAIT; then takes it back to 0.
static void take(uint32_t *word) {
    while (__atomic_exchange_n(word, 0, __ATOMIC_ACQUIRE) != 1)
        syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
}

static void give(uint32_t *word) {
    __atomic_store_n(word, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *ping_pong(void *argument) {
    uintptr_t me = (uintptr_t)argument;
    for (uint64_t round = 0; round < rounds; round++) {
        take(&words[me]);
        give(&words[1 - me]);
    }
    return NULL;
}

/// The kernel's floor: a futex ping-pong between two threads on one CPU.
static void bare_hand_overs(uint64_t count) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu() >= 0 ? sched_getcpu() : 0, &one);
    sched_setaffinity(0, sizeof one, &one);  // the threads inherit it
    rounds = count / 2;
    pthread_t threads[2];
    uint64_t started = ab_monotonic_nanoseconds();
    for (uintptr_t thread = 0; thread < 2; thread++) pthread_create(&threads[thread], NULL, ping_pong, (void *)thread);
    give(&words[0]);
    for (int thread = 0; thread < 2; thread++) pthread_join(threads[thread], NULL);
    uint64_t wall = ab_monotonic_nanoseconds() - started;
    printf("bare futex ping-pong between 2 threads on one CPU: %llu hand-overs, %.0f ns each\n",
           (unsigned long long)(2 * rounds), (double)wall / (double)(2 * rounds));
}

int main(int argc, char **argv) {
    uint64_t ops = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    if (ops < 2) {
        fprintf(stderr, "usage: handover [OPS ≥ 2]\n");
        return 64;
    }
    replay_hand_overs(ops);
    bare_hand_overs(ops);
    return 0;
}
