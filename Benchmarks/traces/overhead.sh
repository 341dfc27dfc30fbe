#!/bin/sh
# The cost of recording: wall and CPU time of real programs run plainly and under `allocbench
# record` (the runner's start and its work of turning spool files into traces included), the
# fastest of RUNS runs each (the fastest, not the median: on a shared machine it is the least
# disturbed). Needs GNU time (/usr/bin/time).
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

# fastest COMMAND...: "<wall ms> <cpu ms>", each the smallest of RUNS runs (cpu = user + system,
# the command's and its children's, from GNU time, in steps of 10 ms).
fastest() {
    i=0
    while [ "$i" -lt "$runs" ]; do
        start=$(date +%s%N)
        /usr/bin/time -f "%U %S" -o "$work/time" "$@" >/dev/null 2>&1
        wall=$(( ($(date +%s%N) - start) / 1000000 ))
        awk -v wall="$wall" '{ printf "%d %d\n", wall, ($1 + $2) * 1000 }' "$work/time"
        i=$((i + 1))
    done | awk 'NR == 1 || $1 < wall { wall = $1 } NR == 1 || $2 < cpu { cpu = $2 } END { print wall, cpu }'
}

# measure NAME COMMAND...: one row; the lines are those of one recording, all processes.
measure() {
    name=$1
    shift
    plain=$(fastest "$@")
    recorded=$(fastest "$allocbench" record -o "$work/$name.txt" -- "$@")
    rm -f "$work/$name".txt*
    "$allocbench" record -o "$work/$name.txt" -- "$@" >/dev/null 2>&1
    lines=$(cat "$work/$name".txt* | wc -l)
    echo "$plain $recorded" | awk -v name="$name" -v lines="$lines" '{
        printf "%-14s %7d %7d %6.2fx   %7d %7d %6.2fx %10d", name, $1, $3, ($1 > 0 ? $3 / $1 : 0), $2, $4, ($2 > 0 ? $4 / $2 : 0), lines
        if (lines > 0) printf "  %6.0f ns\n", ($4 - $2) * 1e6 / lines; else printf "        -\n"
    }'
}

printf "%-14s %-25s   %-25s %10s  %s\n" "" "wall ms (fastest)" "cpu ms (fastest)" "" "extra cpu"
printf "%-14s %7s %7s %7s   %7s %7s %7s %10s  %s\n" program plain record ratio plain record ratio lines "per line"
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
