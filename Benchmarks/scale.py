#!/usr/bin/env python3
"""The harness at scale (issue 17): the parent's own peak memory and wall time against trace length.

    scale.py [--allocbench PATH] [--ops 1000000,10000000] [--directory .build] [--allocators glibc]

For each op count it generates a synthetic trace (Benchmarks/synthetic_trace.py: 100 k live
blocks, 8 threads) into --directory, once, as text and as .gz, replays each with
`allocbench run --threads serial --repeat 1 --harness-usage` (one traced and one timed replay per
allocator) and prints a table: the input's size, the invocation's wall time, and the parent's max
RSS (getrusage RUSAGE_SELF in allocbench itself: the replay children, which map the op stream, are
not the parent) in MiB and per million ops. Memory bounded in the trace's length shows as a max RSS
that stays put while the ops grow tenfold; wall time linear in ops as a constant wall per million.
"""
import argparse
import os
import re
import subprocess
import sys
import time

USAGE = re.compile(r"harness: max RSS [0-9.]+ MiB \((\d+) kB\) for (\d+) ops")


def generate(directory, ops):
    text = os.path.join(directory, f"scale-{ops}.txt")
    gz = text + ".gz"
    if not os.path.exists(text):
        here = os.path.dirname(os.path.abspath(__file__))
        subprocess.run([sys.executable, os.path.join(here, "synthetic_trace.py"), "--live", "100000", "--ops", str(ops), text + ".partial"],
                       check=True)
        os.replace(text + ".partial", text)
    if not os.path.exists(gz):
        with open(gz + ".partial", "wb") as out:
            subprocess.run(["gzip", "-1", "-c", text], stdout=out, check=True)
        os.replace(gz + ".partial", gz)
    return [text, gz]


def measure(allocbench, trace, allocators):
    started = time.monotonic()
    # Serial: the synthetic trace's ops change threads at random (nearly every op would be a
    # hand-over per thread), and what is measured here is the parent, which is the same in every mode.
    completed = subprocess.run([allocbench, "--trace", trace, "--allocators", allocators, "--threads", "serial", "--repeat", "1", "--harness-usage",
                                "--output", os.devnull], capture_output=True, text=True)
    wall = time.monotonic() - started
    match = USAGE.search(completed.stderr)
    if completed.returncode != 0 or match is None:
        sys.exit(f"scale: allocbench on {trace} exited with {completed.returncode}: {completed.stderr.strip()}")
    return wall, int(match.group(1)), int(match.group(2))


def main():
    arguments = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    arguments.add_argument("--allocbench", default=".build/release/allocbench")
    arguments.add_argument("--ops", default="1000000,10000000", help="comma-separated op counts")
    arguments.add_argument("--directory", default=".build")
    arguments.add_argument("--allocators", default="glibc")
    options = arguments.parse_args()

    os.makedirs(options.directory, exist_ok=True)
    print(f"harness at scale ({options.allocators}, one traced and one timed replay each; parent = allocbench itself):")
    print(f"{'ops':>11}  {'input':<5} {'size MB':>8} {'wall s':>7} {'wall s/M ops':>12} {'parent max RSS MiB':>18} {'MiB per M ops':>13}")
    for ops in (int(count) for count in options.ops.split(",")):
        for trace in generate(options.directory, ops):
            wall, kilobytes, replayed = measure(options.allocbench, trace, options.allocators)
            millions = replayed / 1e6
            kind = "gz" if trace.endswith(".gz") else "text"
            print(f"{replayed:>11}  {kind:<5} {os.path.getsize(trace) / 1e6:>8.1f} {wall:>7.2f} {wall / millions:>12.3f} "
                  f"{kilobytes / 1024:>18.1f} {kilobytes / 1024 / millions:>13.2f}", flush=True)


if __name__ == "__main__":
    main()
