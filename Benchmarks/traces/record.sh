#!/bin/sh
# Records the bundled real-program traces, Benchmarks/traces/<name>.txt.gz, with allocbench record.
# Every input is generated here or is a file anyone can fetch; README.md says what each one is.
#
#   Benchmarks/traces/record.sh [ALLOCBENCH]          (default: .build/release/allocbench)
#
# GIT_REPO (default /opt/swift-packages/apple/swift-argument-parser.git) is a bare clone of
# https://github.com/apple/swift-argument-parser holding commit $git_commit, e.g.
#   git init --bare r.git && git -C r.git fetch --depth 1 https://github.com/apple/swift-argument-parser $git_commit
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
allocbench=${1:-$root/.build/release/allocbench}
git_repo=${GIT_REPO:-/opt/swift-packages/apple/swift-argument-parser.git}
git_commit=436bde4bb9489201ca6662f5cf94ec45fa8e244e
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

# The same operations on every run (the pointer values differ: address-space randomization): no
# locale, no user configuration, fixed hash seeds.
export LC_ALL=C TZ=UTC HOME="$work" GIT_CONFIG_NOSYSTEM=1 PYTHONHASHSEED=0 PERL_HASH_SEED=0 PERL_PERTURB_KEYS=0
unset PYTHONPATH PYTHONSTARTUP PYTHONMALLOC PERL5LIB PERL5OPT GCC_EXEC_PREFIX COMPILER_PATH LD_PRELOAD

# record NAME COMMAND...: the trace of COMMAND (its own process) as NAME.txt.gz.
. "$here/record-common.sh"

# sort: 200,000 generated lines, one thread, a 256 KiB buffer (so it merges temporary files).
seq 1 200000 | awk '{ printf "%07d %s-%d\n", ($1 * 7919) % 1000003, substr("abcdefghijklmnopqrstuvwxyz", 1 + $1 % 26), $1 % 101 }' >"$work/sort-input.txt"
TMPDIR="$work" record sort sort --parallel=1 -S 256K -k2,2 -k1,1n -o "$work/sorted.txt" "$work/sort-input.txt"

# git: the diffstat of every file of one commit of swift-argument-parser.
record git-log-stat git --git-dir="$git_repo" log --stat "$git_commit"

# python3: build 20,000 records, round-trip them through JSON (pymalloc on, as Python normally runs).
record python3-json /usr/bin/python3 -s -c '
import json
records = [{"id": i, "name": "item-%d" % i, "tags": ["t%d" % (i % 7), "u%d" % (i % 11)],
            "price": i * 0.25, "nested": {"a": [i, i + 1, i + 2], "b": None}} for i in range(20000)]
text = json.dumps(records, sort_keys=True)
assert json.loads(text) == records
print(len(text))
'

# gcc -O2 -c on a generated C file (loops, switches, a struct; 8 functions). gcc runs cc1 and as;
# the bundled trace is cc1's, the largest of the three processes.
awk -v functions=8 'BEGIN {
    print "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n"
    print "struct point { double x, y; int tag; };\n"
    for (f = 0; f < functions; f++) {
        printf "static int work%d(const int *a, int n, struct point *p) {\n    int s = %d;\n", f, f
        printf "    for (int i = 0; i < n; i++) {\n"
        printf "        if (a[i] %% %d == 0) s += a[i] * %d; else s ^= a[i] << (i %% 7);\n", f + 3, f + 1
        printf "        p[i %% 4].x += s * 0.5; p[i %% 4].tag = s & %d;\n    }\n    switch (s & 7) {\n", f + 15
        for (c = 0; c < 8; c++) printf "    case %d: s = s * %d + p[%d].tag; break;\n", c, c + f + 2, c % 4
        printf "    }\n    return s;\n}\n\n"
    }
    print "int main(int argc, char **argv) {\n    int a[64];\n    struct point p[4];\n    memset(p, 0, sizeof p);"
    print "    for (int i = 0; i < 64; i++) a[i] = i * argc;\n    long total = 0;"
    for (f = 0; f < functions; f++) printf "    total += work%d(a, 64, p);\n", f
    print "    printf(\"%ld %s\\n\", total, argv[0]);\n    return 0;\n}"
}' >"$work/generated.c"
"$allocbench" record -o "$work/gcc.txt" -- gcc -O2 -c -o "$work/generated.o" "$work/generated.c" >/dev/null
gzip -9n <"$(ls -S "$work"/gcc.txt* | head -n 1)" >"$here/gcc-O2-cc1.txt.gz"

# perl: count 200,000 generated words in a hash, sort the counts.
record perl-wordcount perl -e '
my %count;
for my $i (1 .. 200000) { $count{"w" . (($i * 7919) % 5003)}++ }
my @top = (sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count)[0 .. 9];
print "@top\n";
'

# sqlite3: an in-memory table of 50,000 rows, an index, grouped queries.
record sqlite3 sqlite3 :memory: "
CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, grp INTEGER, val REAL);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 50000)
INSERT INTO t SELECT x, 'name-' || x, x % 97, x * 0.5 FROM c;
CREATE INDEX t_grp ON t(grp);
SELECT grp, count(*), sum(val) FROM t GROUP BY grp ORDER BY 3 DESC LIMIT 5;
SELECT count(*) FROM t WHERE name LIKE 'name-1%';
"

ls -l "$here"/*.txt.gz
