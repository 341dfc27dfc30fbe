#!/usr/bin/env python3
"""Writes a synthetic Android record_allocs trace (format: ../shared/traces/android/FORMAT.txt).

    synthetic_trace.py --live 100000 --ops 2000000 [--threads 8] [--seed 1] OUTPUT

The trace first allocates until `--live` blocks are live, then keeps about that many live: each
later op frees a random live block (47.5 %), allocates (47.5 %), or reallocs a random live block
(5 %), on a random one of `--threads` threads (so most frees cross threads). It ends with one
thread_done per thread.
Addresses come from a simulated allocator that reuses the most recently freed address of the
same size class first, so the live set's pointers are spread over a heap as large as its bytes,
the way real recordings look, and a pointer value is returned again after it has been freed.
It exists to measure the parser at a live-set size chosen at will (`make bench`); it is
generated at bench time into .build/, never committed.
"""
import argparse
import random
import sys


def main():
    arguments = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_argument("--live", type=int, required=True, help="blocks live once the trace has ramped up")
    arguments.add_argument("--ops", type=int, required=True, help="lines written (thread_done lines excluded)")
    arguments.add_argument("--threads", type=int, default=8)
    arguments.add_argument("--seed", type=int, default=1)
    arguments.add_argument("output")
    options = arguments.parse_args()

    generator = random.Random(options.seed)
    tids = [1000 + index for index in range(options.threads)]
    size_choices = [8, 16, 24, 32, 48, 64, 80, 96, 128, 160, 256, 384, 512, 1024, 4096]
    size_weights = [8, 14, 12, 12, 10, 10, 6, 6, 6, 4, 4, 3, 2, 2, 1]
    # A block of size s takes the 16-byte-rounded class of s; freed addresses of a class are
    # reused last-in first-out, as a thread cache would.
    free_by_class = {}
    next_address = 0x7A00_0000_0000
    live_addresses = []  # random removal by swapping with the last
    live_classes = []

    def take(size):
        nonlocal next_address
        size_class = max(16, (size + 15) & ~15)
        reusable = free_by_class.get(size_class)
        if reusable:
            return reusable.pop(), size_class
        address = next_address
        next_address += size_class
        return address, size_class

    def release(index):
        address = live_addresses[index]
        size_class = live_classes[index]
        live_addresses[index] = live_addresses[-1]
        live_classes[index] = live_classes[-1]
        live_addresses.pop()
        live_classes.pop()
        free_by_class.setdefault(size_class, []).append(address)
        return address

    sizes = generator.choices(size_choices, weights=size_weights, k=4096)
    lines = []
    with open(options.output, "w") as out:
        for op in range(options.ops):
            tid = tids[generator.randrange(options.threads)]
            size = sizes[op & 4095]
            # Ramping up: allocations only. Then allocations and frees are equally likely, so the
            # live set stays near its size.
            choice = 0.0 if len(live_addresses) < options.live else generator.random()
            if choice < 0.475:
                address, size_class = take(size)
                live_addresses.append(address)
                live_classes.append(size_class)
                if op % 97 == 0:
                    lines.append(f"{tid}: calloc {address:#x} {size // 8 or 1} 8\n" if size >= 8 else f"{tid}: malloc {address:#x} {size}\n")
                else:
                    lines.append(f"{tid}: malloc {address:#x} {size}\n")
            elif choice < 0.95:
                index = generator.randrange(len(live_addresses))
                lines.append(f"{tid}: free {release(index):#x}\n")
            else:
                index = generator.randrange(len(live_addresses))
                old = release(index)
                address, size_class = take(size)
                live_addresses.append(address)
                live_classes.append(size_class)
                lines.append(f"{tid}: realloc {address:#x} {old:#x} {size}\n")
            if len(lines) >= 65536:
                out.writelines(lines)
                lines.clear()
        for tid in tids:
            lines.append(f"{tid}: thread_done 0x0\n")
        out.writelines(lines)


if __name__ == "__main__":
    sys.exit(main())
