#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (make fuzz-corpus; docs/architecture.md, "Fuzzing").

usage: make_corpus.py OUTDIR [SHARED] [ALLOCBENCH]

OUTDIR/parser gets small slices (the first lines, and lines from the middle) of every trace in
SHARED/traces/real, SHARED/traces/android/*.zip and Benchmarks/traces, as text, and some of them
gzipped and zipped the way `allocbench --trace` reads .gz and .zip files. OUTDIR/baseline gets the
committed Benchmarks/baselines (the JSON files and tolerances.txt) and, when an allocbench binary is
given, a run report of the bundled djb trace. The shared traces are only read here, at corpus time:
nothing of them is committed.
"""
import glob
import gzip
import io
import os
import shutil
import subprocess
import sys
import zipfile

LINES = 60          # lines per slice: a few KB, well under libFuzzer's -max_len
MAX_BYTES = 4096


def lines_of(path):
    """The trace's text lines (decompressing .gz, and the single entry of a .zip), at most the first 200000."""
    if path.endswith(".gz"):
        stream = io.TextIOWrapper(gzip.open(path), encoding="latin-1", newline="")
    elif path.endswith(".zip"):
        archive = zipfile.ZipFile(path)
        stream = io.TextIOWrapper(archive.open(archive.namelist()[0]), encoding="latin-1", newline="")
    else:
        stream = open(path, encoding="latin-1", newline="")
    with stream:
        lines = []
        for line in stream:
            lines.append(line)
            if len(lines) >= 200000:
                break
        return lines


def clip(lines):
    return "".join(lines).encode("latin-1")[:MAX_BYTES]


def main():
    out = sys.argv[1]
    shared = sys.argv[2] if len(sys.argv) > 2 else "../shared"
    allocbench = sys.argv[3] if len(sys.argv) > 3 else ""
    parser_dir, gate_dir = os.path.join(out, "parser"), os.path.join(out, "baseline")
    for directory in (parser_dir, gate_dir):
        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory)

    traces = sorted(glob.glob(os.path.join(shared, "traces/real/*.txt")))
    traces += sorted(glob.glob(os.path.join(shared, "traces/android/*.zip")))
    traces += sorted(glob.glob("Benchmarks/traces/*.txt") + glob.glob("Benchmarks/traces/*.txt.gz"))
    if not glob.glob(os.path.join(shared, "traces/real/*.txt")):
        print(f"make_corpus: no traces in {shared}/traces/real; seeding from the bundled traces only", file=sys.stderr)
    count = 0
    for index, path in enumerate(traces):
        name = os.path.basename(path).split(".")[0]
        lines = lines_of(path)
        head = clip(lines[:LINES])
        middle = clip(lines[len(lines) // 2:len(lines) // 2 + LINES])
        slices = {f"{name}-head.txt": head}
        if len(lines) > LINES:
            slices[f"{name}-middle.txt"] = middle
        # Every other trace also as a .gz and a single-entry .zip (the parser target reads those
        # through a temporary file of that suffix); one gzip of two members, as gzread reads them.
        if index % 2 == 0:
            slices[f"{name}-head.gz"] = gzip.compress(head, mtime=0)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                archive.writestr(f"{name}.txt", head)
            slices[f"{name}-head.zip"] = buffer.getvalue()
        if index == 0 and len(lines) > LINES:
            slices[f"{name}-two-members.gz"] = gzip.compress(head, mtime=0) + gzip.compress(middle, mtime=0)
        for file, data in slices.items():
            with open(os.path.join(parser_dir, file), "wb") as handle:
                handle.write(data)
            count += 1

    gate = sorted(glob.glob("Benchmarks/baselines/*.json")) + ["Benchmarks/baselines/tolerances.txt"]
    for path in gate:
        shutil.copy(path, gate_dir)
    if allocbench and os.access(allocbench, os.X_OK):
        report = subprocess.run([allocbench, "--trace", "Benchmarks/traces/djb.txt", "--allocators", "glibc",
                                 "--repeat", "1", "--format", "json"], capture_output=True, check=True).stdout
        with open(os.path.join(gate_dir, "djb-run-report.json"), "wb") as handle:
            handle.write(report)
        gate.append("a run report")
    else:
        print("make_corpus: no allocbench binary given; the baseline corpus has no run report", file=sys.stderr)
    print(f"make_corpus: {count} parser seeds in {parser_dir}, {len(gate)} gate seeds in {gate_dir}")


main()
