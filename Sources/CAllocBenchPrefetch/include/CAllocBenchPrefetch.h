// What Swift cannot say: a software prefetch. The trace parser reads each line a few lines before
// it applies it and prefetches the live-pointer table's bucket for it, so the table's cache misses
// (one per op once the live set outgrows the caches) overlap instead of stalling one after another.
#ifndef CALLOCBENCH_PREFETCH_H
#define CALLOCBENCH_PREFETCH_H

/// A hint to load the cache line holding `address` for reading; never faults, whatever `address` is.
static inline __attribute__((always_inline)) void ab_prefetch(const void *address) {
    __builtin_prefetch(address, 0, 3);
}

#endif
