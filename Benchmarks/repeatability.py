#!/usr/bin/env python3
"""How far apart whole invocations' timings fall (issue 17: the median ns/op of 5 repeated
invocations within ±5 % of each other on a quiet machine).

    repeatability.py [--allocbench PATH] [--invocations 5] [--allocators a,b] TRACE

Runs `allocbench --trace TRACE --threads serial --format json` that many times back to back and
prints, per allocator, each invocation's median ns/op and their spread: the largest distance from
the mean of the medians, in percent (±), and the largest over the smallest. The machine's load
average before and after is printed with it: on a shared machine the spread is the machine's as
much as allocbench's.
"""
import argparse
import json
import os
import subprocess
import sys


def main():
    arguments = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_argument("--allocbench", default=".build/release/allocbench")
    arguments.add_argument("--invocations", type=int, default=5)
    arguments.add_argument("--allocators")
    arguments.add_argument("--repeat", type=int, default=3, help="timed runs per allocator in each invocation (allocbench --repeat)")
    arguments.add_argument("trace")
    options = arguments.parse_args()

    load_before = os.getloadavg()[0]
    medians = {}
    for _ in range(options.invocations):
        command = [options.allocbench, "--trace", options.trace, "--threads", "serial", "--repeat", str(options.repeat), "--format", "json"]
        if options.allocators:
            command += ["--allocators", options.allocators]
        completed = subprocess.run(command, capture_output=True, text=True)
        if completed.returncode != 0:
            sys.exit(f"repeatability: allocbench exited with {completed.returncode}: {completed.stderr.strip()}")
        for result in json.loads(completed.stdout)["runs"][0]["results"]:
            if result.get("status") == "ok" and result.get("ns_per_op"):
                medians.setdefault(result["allocator"], []).append(result["ns_per_op"]["median"])
    load_after = os.getloadavg()[0]

    name = os.path.basename(options.trace)
    print(f"median ns/op of {options.invocations} invocations on {name} (load average {load_before:.2f} before, {load_after:.2f} after):")
    print(f"{'allocator':<16} {'medians':<44} {'± from mean':>11} {'max/min':>8}")
    for allocator, values in medians.items():
        mean = sum(values) / len(values)
        deviation = max(abs(value - mean) for value in values) / mean * 100
        print(f"{allocator:<16} {' '.join(f'{value:.1f}' for value in values):<44} {deviation:>10.1f}% {max(values) / min(values):>8.3f}")


if __name__ == "__main__":
    main()
