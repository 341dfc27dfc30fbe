#!/usr/bin/env python3
"""The issues' speed and page targets, measured in one go (`make targets`).

Targets belong to benchmarks, never to timed unit tests: this replays the real traces in
../shared/traces with every allocator through the release build, and prints each target with the
figure that decides it. It reports; it does not gate (exit 0 unless the measurement itself fails).
"""
import glob
import json
import math
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, ".build", "release")
SHARED = os.environ.get("SHARED", os.path.join(ROOT, "..", "shared"))
PAIRED_RUNS = 5


def run(arguments):
    result = subprocess.run(arguments, cwd=ROOT, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"targets: {' '.join(arguments)} exited {result.returncode}: {result.stderr.strip()}")
    return result.stdout


def geomean(values):
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else float("nan")


def main():
    traces = sorted(glob.glob(os.path.join(SHARED, "traces", "real", "*.txt")))
    systemui = os.path.join(SHARED, "traces", "android", "systemui.zip")
    if not traces or not os.path.exists(systemui):
        sys.exit(f"targets: the real traces are not in {SHARED}/traces (set SHARED=...)")
    seed = os.path.join(ROOT, "Benchmarks", "traces", "djb.txt")
    report = json.loads(run([os.path.join(BIN, "allocbench"), "--trace", *traces, systemui, seed,
                             "--repeat", "3", "--format", "json"]))
    rows = {(run_["trace"]["name"], row["allocator"]): row
            for run_ in report["runs"] for row in run_["results"] if row["status"] == "ok"}
    names = [run_["trace"]["name"] for run_ in report["runs"] if run_["trace"]["name"] != "djb"]

    def overhead(allocator):
        return [rows[(name, allocator)]["overhead"] for name in names if (name, allocator) in rows]

    def ns(name, allocator):
        return rows[(name, allocator)]["ns_per_op"]["median"]

    verdicts = []

    def target(issue, what, holds, figure):
        verdicts.append((issue, what, "holds" if holds else "MISSED", figure))

    parse = run([os.path.join(BIN, "parse-benchmark"), systemui, "--iterations", "9"]).strip()
    median = float(parse.split("MB/s best, ")[1].split(" MB/s median")[0])
    target("#2", "parse ≥ 150 MB/s on systemui (median)", median >= 150, parse.split(": ", 1)[1])

    arena = rows[("djb", "bss-arena")]
    target("#3", "bss-arena: djb.txt in 0 new touched and 0 new mapped pages",
           arena["touched_pages"]["peak"] == 0 and arena["mapped_pages"]["peak"] == 0,
           f"touched {arena['touched_pages']['peak']}, mapped {arena['mapped_pages']['peak']}")
    ratio = ns("systemui", "bss-arena") / ns("systemui", "glibc")
    target("#3", "bss-arena: systemui within 3× glibc's time", ratio <= 3, f"{ratio:.2f}×")

    slab = rows[("djb", "slab")]
    target("#4", "slab: djb.txt in 1 touched page", slab["touched_pages"]["peak"] <= 1,
           f"{slab['touched_pages']['peak']} pages")
    mean = geomean(overhead("slab"))
    target("#4", "slab: geomean touched-peak/ideal ≤ 1.08 (real/*.txt + systemui)", mean <= 1.08,
           f"{mean:.3f} (glibc {geomean(overhead('glibc')):.3f}, jemalloc {geomean(overhead('jemalloc')):.3f})")
    worse = [f"{name} {rows[(name, 'slab')]['overhead']:.2f} vs {rows[(name, 'glibc')]['overhead']:.2f}"
             for name in names if rows[(name, "slab")]["overhead"] > rows[(name, "glibc")]["overhead"] * 1.05]
    target("#4", "slab: no trace worse than glibc's ratio by more than 5 %", not worse,
           "; ".join(worse) or "none")
    # One run's ns/op moves by ±20 % with the VM's speed, more than slab and jemalloc differ on
    # several traces; so the verdict takes the median of slab/jemalloc over paired runs.
    ratios = {name: [ns(name, "slab") / ns(name, "jemalloc")] for name in names}
    for _ in range(PAIRED_RUNS - 1):
        paired = json.loads(run([os.path.join(BIN, "allocbench"), "--trace", *traces, systemui,
                                 "--allocators", "slab,jemalloc", "--repeat", "3", "--format", "json"]))
        for run_ in paired["runs"]:
            times = {row["allocator"]: row["ns_per_op"]["median"] for row in run_["results"] if row["status"] == "ok"}
            ratios[run_["trace"]["name"]].append(times["slab"] / times["jemalloc"])
    medians = {name: statistics.median(values) for name, values in ratios.items()}
    slower = [f"{name} ×{medians[name]:.2f} ({min(ratios[name]):.2f}–{max(ratios[name]):.2f})"
              for name in names if medians[name] > 1]
    target("#4", f"slab: ns/op ≤ jemalloc's (median slab/jemalloc of {PAIRED_RUNS} paired runs)", not slower,
           "; ".join(slower) or "none")

    threads_targets(target)

    width = max(len(what) for _, what, _, _ in verdicts)
    for issue, what, verdict, figure in verdicts:
        print(f"{issue}  {what.ljust(width)}  {verdict:<6}  {figure}")


def threads_targets(target):
    """Issue #15's goals on systemui, every allocator, with the floor a per-thread replay cannot go
    under on this machine: its hand-overs times one futex hand-over between two threads on one CPU
    (Benchmarks/HandOver/handover.c, built by `make bench-handover`)."""
    systemui = os.path.join(SHARED, "traces", "android", "systemui.zip")
    allocbench = os.path.join(BIN, "allocbench")

    ops = {}

    def rows(mode, repeat):
        report = json.loads(run([allocbench, "--trace", systemui, "--threads", mode, "--repeat", str(repeat), "--format", "json"]))
        ops["systemui"] = report["runs"][0]["trace"]["ops"]
        return {row["allocator"]: row for row in report["runs"][0]["results"] if row["status"] == "ok"}

    pages = [rows("per-thread", 0) for _ in range(5)]
    moved = [f"{name} touched peak {sorted({run_[name]['touched_pages']['peak'] for run_ in pages})}"
             for name in pages[0] if any(run_.get(name, {}).get("touched_pages") != pages[0][name]["touched_pages"]
                                         or run_.get(name, {}).get("mapped_pages") != pages[0][name]["mapped_pages"]
                                         for run_ in pages[1:])]
    target("#15", "per-thread: systemui's page counts identical over 5 runs", not moved, "; ".join(moved) or "all identical")

    serial, per_thread, concurrent = rows("serial", 3), rows("per-thread", 3), rows("concurrent", 3)
    # "bare futex ping-pong between 2 threads on one CPU: 100000 hand-overs, 2109 ns each"
    handover = run([os.path.join(ROOT, ".build", "replay-loop", "handover"), "100000"])
    floor_ns = float(handover.strip().rsplit(": ", 1)[1].split()[2])

    def wall(row):
        return row["ns_per_op"]["median"] + (row.get("hand_overs") or {}).get("ns_per_op", {}).get("median", 0)

    ratios = {name: wall(per_thread[name]) / serial[name]["ns_per_op"]["median"] for name in serial if name in per_thread}
    floors = {name: 1 + per_thread[name]["hand_overs"]["count"] * floor_ns / ops["systemui"] / serial[name]["ns_per_op"]["median"]
              for name in ratios if per_thread[name].get("hand_overs")}
    target("#15", "per-thread: systemui's wall time per op within 2× serial (every allocator)", max(ratios.values()) <= 2,
           ", ".join(f"{name} {ratio:.1f}×" + (f" (floor {floors[name]:.1f}×)" if name in floors else "") for name, ratio in ratios.items())
           + f"; floor: hand-overs × {floor_ns:.0f} ns (a bare futex hand-over on one CPU)")
    ratios = {name: row["ns_per_op"]["median"] / serial[name]["ns_per_op"]["median"]
              for name, row in concurrent.items() if name in serial and row.get("thread_mode") == "concurrent"}
    target("#15", "concurrent: systemui's ns/op within 1.3× serial (thread-safe allocators)", max(ratios.values()) <= 1.3,
           ", ".join(f"{name} {ratio:.1f}×" for name, ratio in ratios.items()))


if __name__ == "__main__":
    main()
