#!/usr/bin/env python3
"""Prints the fidelity table of docs/metrics.md ("Threads") for one trace: every allocator's touched
peak, mapped peak, faults and median ns/op in serial, per-thread and concurrent replay.

    fidelity_table.py [--allocbench PATH] [--repeat N] TRACE

It runs `allocbench --format json --threads MODE` once per mode (the three runs back to back, in
one window of this machine's speed) and prints a Markdown table, each cell "serial · per-thread ·
concurrent". A dagger marks a concurrent cell of an allocator that is not thread-safe (it ran per
thread). A per-thread replay's ns/op leaves out its hand-overs between threads; the last column
gives their time per op (per-thread · the dagger's concurrent), so that ns/op plus it is the
replay's wall time per op. The wall time of each invocation is printed under the table.
"""
import argparse
import json
import subprocess
import sys
import time

MODES = ["serial", "per-thread", "concurrent"]


def run(allocbench, trace, mode, repeat):
    started = time.monotonic()
    completed = subprocess.run([allocbench, "--trace", trace, "--threads", mode, "--repeat", str(repeat), "--format", "json"],
                               capture_output=True, text=True)
    wall = time.monotonic() - started
    # Exit 1: a row failed; the report still has every row, the failed ones with their detail.
    if completed.returncode not in (0, 1):
        sys.exit(f"fidelity_table: allocbench --threads {mode} exited with {completed.returncode}: {completed.stderr.strip()}")
    report = json.loads(completed.stdout)
    for result in report["runs"][0]["results"]:
        if result["status"] != "ok":
            print(f"fidelity_table: --threads {mode}: {result['allocator']} {result['status']}: {result.get('detail')}", file=sys.stderr)
    return report["runs"][0], wall


def main():
    arguments = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_argument("--allocbench", default=".build/release/allocbench")
    arguments.add_argument("--repeat", type=int, default=3)
    arguments.add_argument("trace")
    options = arguments.parse_args()

    runs, walls = {}, {}
    for mode in MODES:
        runs[mode], walls[mode] = run(options.allocbench, options.trace, mode, options.repeat)
    trace = runs["serial"]["trace"]
    activity = trace.get("thread_activity", {})
    print(f"**{trace['name']}** ({trace['ops']} ops, {trace['threads']} threads, at most {activity.get('peak_alive', 1)} alive, "
          f"{activity.get('cross_thread_frees', 0)} frees across threads): serial · per-thread · concurrent")
    print()
    print("| allocator | touched peak | mapped peak | faults | ns/op (median) | hand-over ns/op |")
    print("| --- | --- | --- | --- | --- | --- |")
    rows = {mode: {result["allocator"]: result for result in runs[mode]["results"]} for mode in MODES}
    for name in rows["serial"]:
        cells = []
        for field in ("touched_pages", "mapped_pages", "minor_faults", "ns_per_op"):
            values = []
            for mode in MODES:
                result = rows[mode].get(name)
                if result is None or result.get("status") != "ok":
                    values.append("failed" if result else "—")
                    continue
                value = result.get(field)
                text = str(value["peak"]) if field in ("touched_pages", "mapped_pages") else \
                    f"{value['median']:.1f}" if field == "ns_per_op" else str(value)
                if mode == "concurrent" and field == "ns_per_op" and result.get("thread_mode") != "concurrent":
                    text += "†"
                values.append(text)
            cells.append(" · ".join(values))
        hand_overs = [f"{result['hand_overs']['ns_per_op']['median']:.1f}" for mode in MODES[1:]
                      if (result := rows[mode].get(name)) and result.get("status") == "ok" and result.get("hand_overs")]
        cells.append(" · ".join(hand_overs) or "—")
        print(f"| {name} | " + " | ".join(cells) + " |")
    print()
    print("† not thread-safe: replayed per thread. Wall time of each invocation: " +
          ", ".join(f"{mode} {walls[mode]:.2f} s" for mode in MODES))


if __name__ == "__main__":
    main()
