#!/usr/bin/env python3
"""The replay loop against a plain C loop, per process-malloc row, interleaved.

For each trace, allocbench's own parser writes the op stream the replay children map
(`parse-benchmark TRACE --write-op-stream FILE`). Then, round after round, every process-malloc row
of `allocbench list` is timed twice on that stream: by the C reference loop (reference.c) linked
with the same malloc as the row's lean child (or under the row's LD_PRELOAD), and by the real
replay, the row's lean child in a timed run (time-child.c starts it as allocbench does and reads
the child's own clock: the figure behind allocbench's ns/op). With --cli the real replay is
`allocbench --trace T --allocators ROW --repeat 1 --format json` instead (its ns_per_op.median;
slower: each invocation parses the trace and makes a traced run first).

The rows and the C loop alternate within each round, and the order flips every round, so a burst
of noise on the machine hits both sides alike. Only ratios measured in one run mean anything.

Address layout moves both sides by more than the 5 % being measured (the C loop alone ran 19–26
ns/op on one stream across ASLR layouts; the size of the environment shifts the stack the same
way): with --aslr every run of either side gets a layout of its own, and the rounds compare the
two loops over many layouts rather than allocbench's one fixed layout with the C loop's.

    compare.py --bin .build/release --loops .build/replay-loop [--rounds N] [--cli] [--aslr] [TRACE ...]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

# The goal (#17): the replay costs at most this much per op over the C loop.
GOAL_RATIO = 1.05
# A trace this short is timed but not judged, as `allocbench check` gates time only from 10,000 ops
# (--min-ops-for-time): a replay of a few thousand ops lasts microseconds, and its ns/op is noise.
MIN_OPS_TO_JUDGE = 10_000
LEAN_CHILD_PREFIX = "allocbench-lean-"


class Row:
    """A process-malloc row of `allocbench list`: where it runs, and the library it preloads."""

    def __init__(self, name, lean_child, child_allocator, preload):
        self.name = name
        self.lean_child = lean_child
        self.child_allocator = child_allocator
        self.preload = preload

    def reference_loop(self, loops):
        """The C loop linked as this row's lean child is: reference-glibc for allocbench-lean-glibc."""
        return os.path.join(loops, "reference-" + self.lean_child[len(LEAN_CHILD_PREFIX):])


def run(command, environment=None):
    result = subprocess.run(command, capture_output=True, text=True, env=environment)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def process_malloc_of(child_path):
    """The allocator a lean child offers as its process malloc (`describe`: name, kind, ...)."""
    for line in run([child_path, "describe"]).splitlines():
        fields = line.split("\t")
        if len(fields) > 1 and fields[1] == "process-malloc":
            return fields[0]
    raise RuntimeError(f"{child_path} offers no process malloc")


def process_malloc_rows(binaries):
    """Every available process-malloc and preload row, as `allocbench list` describes it."""
    rows, entry = [], None
    for line in run([os.path.join(binaries, "allocbench"), "list"]).splitlines():
        if line and not line[0].isspace():
            name, _, state = line.partition("  ")
            kind, _, availability = state.strip().partition(", ")
            entry = (name, kind) if availability == "available" and kind in ("process-malloc", "preload") else None
        elif entry and line.strip().startswith("runs in "):
            name, kind = entry
            lean_child = line.strip()[len("runs in "):].split()[0].rstrip(";")
            library = line.rpartition("malloc from ")[2].strip()
            child_path = os.path.join(binaries, lean_child)
            if kind == "preload":
                rows.append(Row(name, lean_child, process_malloc_of(child_path), library))
            else:
                rows.append(Row(name, lean_child, name, None))
            entry = None
    return rows


def loop_environment(row):
    """The C loop's environment: nothing inherited that tunes an allocator, the row's preload."""
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if row.preload:
        environment["LD_PRELOAD"] = row.preload
    return environment


def time_reference(row, loops, stream, randomize):
    """The C loop's ns/op and the stream's op count (it prints both)."""
    # No address randomization, as allocbench runs its children (setarch -R), unless --aslr.
    command = [row.reference_loop(loops), stream]
    if not randomize and shutil.which("setarch"):
        command = ["setarch", os.uname().machine, "-R"] + command
    nanoseconds, ops = run(command, loop_environment(row)).split()[:2]
    return float(nanoseconds), int(ops)


def time_lean_child(row, binaries, loops, stream, randomize):
    command = [os.path.join(loops, "time-child")] + (["--aslr"] if randomize else []) + \
        [stream, os.path.join(binaries, row.lean_child), row.child_allocator]
    if row.preload:
        command.append(row.preload)
    return float(run(command, {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}).split()[0])


def time_through_cli(row, binaries, trace, randomize):
    # Serial, as the C loop runs: a multi-threaded trace would otherwise replay per thread.
    report = json.loads(run([os.path.join(binaries, "allocbench"), "--trace", trace, "--allocators", row.name,
                             "--threads", "serial", "--repeat", "1", "--format", "json"]
                            + (["--aslr"] if randomize else [])))
    return report["runs"][0]["results"][0]["ns_per_op"]["median"]


def spread(values, digits=1):
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def compare(trace, rows, arguments, scratch):
    """Each row's C loop and replay ns/op, round by round, and the trace's op count."""
    stream = os.path.join(scratch, os.path.basename(trace) + ".ops")
    run([os.path.join(arguments.bin, "parse-benchmark"), trace, "--write-op-stream", stream])
    samples = {row.name: ([], []) for row in rows}
    ops = 0
    for round_index in range(arguments.rounds):
        for row in rows:
            def reference():
                nonlocal ops
                nanoseconds, ops = time_reference(row, arguments.loops, stream, arguments.aslr)
                return nanoseconds

            def replay():
                if arguments.cli:
                    return time_through_cli(row, arguments.bin, trace, arguments.aslr)
                return time_lean_child(row, arguments.bin, arguments.loops, stream, arguments.aslr)

            if round_index % 2 == 0:
                c_loop, replayed = reference(), replay()
            else:
                replayed, c_loop = replay(), reference()
            samples[row.name][0].append(c_loop)
            samples[row.name][1].append(replayed)
    return samples, ops


def print_table(trace, rows, samples, ops, arguments):
    replay_label = "allocbench ns/op" if arguments.cli else "replay ns/op"
    print(f"\n{trace}: {arguments.rounds} interleaved rounds; ratio = replay median / C median (range of the "
          f"per-round ratios); paired = the median of the per-round ratios (each round's two runs are adjacent in "
          f"time, so a drift of the machine's speed cancels in it: the verdict); of minima = replay min / C min, "
          f"the least disturbed runs; goal ≤ {GOAL_RATIO}" +
          (f"; {ops} ops: too few to judge (from {MIN_OPS_TO_JUDGE:,})" if ops < MIN_OPS_TO_JUDGE else ""))
    header = ["row", "C loop ns/op", replay_label, "ratio", "paired", "of minima", ""]
    table = [header]
    for row in rows:
        c_loop, replayed = samples[row.name]
        ratio = statistics.median(replayed) / statistics.median(c_loop)
        per_round = [replay / reference for replay, reference in zip(replayed, c_loop)]
        paired = statistics.median(per_round)
        verdict = "ok" if paired <= GOAL_RATIO else "over"
        if ops < MIN_OPS_TO_JUDGE:
            verdict = "not judged"
        table.append([row.name, spread(c_loop), spread(replayed),
                      f"{ratio:.3f} ({min(per_round):.2f}–{max(per_round):.2f})", f"{paired:.3f}",
                      f"{min(replayed) / min(c_loop):.3f}", verdict])
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    for line in table:
        print("  ".join(cell.rjust(width) if column else cell.ljust(width)
                        for column, (cell, width) in enumerate(zip(line, widths))).rstrip())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True, help="the directory of allocbench, parse-benchmark and the lean children")
    parser.add_argument("--loops", required=True, help="the directory of the reference-* loops and time-child")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds per trace (default 10)")
    parser.add_argument("--cli", action="store_true", help="time the replay through `allocbench --format json`")
    parser.add_argument("--aslr", action="store_true",
                        help="keep address randomization on both sides: every run a layout of its own, so that the "
                             "rounds compare the loops over many layouts, not one fixed layout with another")
    parser.add_argument("traces", nargs="+")
    arguments = parser.parse_args()
    if arguments.rounds < 1:
        parser.error("--rounds must be at least 1")

    rows = []
    for row in process_malloc_rows(arguments.bin):
        if os.access(row.reference_loop(arguments.loops), os.X_OK):
            rows.append(row)
        else:
            print(f"compare.py: {row.name}: no C loop {row.reference_loop(arguments.loops)}; row left out", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="allocbench-replay-loop-") as scratch:
        for trace in arguments.traces:
            print_table(trace, rows, *compare(trace, rows, arguments, scratch), arguments)
            sys.stdout.flush()


if __name__ == "__main__":
    main()
