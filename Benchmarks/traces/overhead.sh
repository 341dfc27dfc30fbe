#!/bin/sh
# The cost of recording: wall time of real programs run plainly and under `allocbench record`
# (the runner's start and its work of turning spool files into traces included), the fastest of
# RUNS runs each (the fastest, not the median: on a shared machine it is the least disturbed).
#
#   Benchmarks/traces/overhead.sh [ALLOCBENCH]        (default: .build/release/allocbench; RUNS=9)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
allocbench=${1:-$root/.build/release/allocbench}
runs=${RUNS:-9}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
export LC_ALL=C HOME="$work"

now() { date +%s%N; }

# fastest_ms COMMAND...: the shortest wall time of RUNS runs, in milliseconds.
fastest_ms() {
    i=0
    while [ "$i" -lt "$runs" ]; do
        start=$(now)
        "$@" >/dev/null 2>&1
        echo $(( ($(now) - start) / 1000000 ))
        i=$((i + 1))
    done | sort -n | head -n 1
}

# measure NAME COMMAND...
measure() {
    name=$1
    shift
    plain=$(fastest_ms "$@")
    recorded=$(fastest_ms "$allocbench" record -o "$work/$name.txt" -- "$@")
    rm -f "$work/$name".txt*
    "$allocbench" record -o "$work/$name.txt" -- "$@" >/dev/null 2>&1
    lines=$(cat "$work/$name".txt* | wc -l)
    awk -v n="$name" -v p="$plain" -v r="$recorded" -v l="$lines" 'BEGIN {
        printf "%-14s %8d ms %8d ms %6.2fx %10d lines  ", n, p, r, (p > 0 ? r / p : 0), l
        if (l > 0) printf "%6.0f ns/line\n", (r - p) * 1e6 / l; else printf "     -\n" }'
}

printf "%-14s %11s %11s %7s %16s  %s\n" program plain recorded ratio "lines (all processes)" "extra per line"
measure true /bin/true
measure sqlite3 sqlite3 :memory: "
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 300000)
INSERT INTO t SELECT x, 'name-' || x, x % 97, x * 0.5 FROM c;
CREATE INDEX t_grp ON t(grp);
SELECT grp, count(*), sum(val) FROM t GROUP BY grp ORDER BY 3 DESC LIMIT 5;"
measure gcc-O2 gcc -O2 -c -I"$root/Sources/CAllocBenchRecorder/include" -o "$work/recorder.o" \
    "$root/Sources/CAllocBenchRecorder/recorder.c"
measure git-log-stat git --git-dir="${GIT_REPO:-/opt/swift-packages/apple/swift-argument-parser.git}" log --stat
