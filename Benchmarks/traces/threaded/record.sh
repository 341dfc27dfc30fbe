#!/bin/sh
# Records the multi-threaded traces of Benchmarks/traces/threaded/ with allocbench record, for the
# fidelity table (docs/metrics.md, "Threads"): serial against per-thread against concurrent replay.
# They are not in the page gate (make gate replays Benchmarks/traces/*.txt*): jemalloc's wall-clock
# decay moves its per-thread page counts by more than the gate's allowance for it.
#
#   Benchmarks/traces/threaded/record.sh [ALLOCBENCH]     (default: .build/release/allocbench)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
allocbench=${1:-$root/.build/release/allocbench}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM
export LC_ALL=C TZ=UTC HOME="$work"
unset LD_PRELOAD

# record NAME COMMAND...: the trace of COMMAND (its own process) as NAME.txt.gz.
. "$here/../record-common.sh"

# The input: 600,000 generated lines (12 MB), the same on every run.
seq 1 600000 | awk '{ printf "%07d %s-%d lorem ipsum %d\n", ($1 * 7919) % 1000003, substr("abcdefghijklmnopqrstuvwxyz", 1 + $1 % 26), $1 % 101, $1 * 31 % 977 }' >"$work/input.txt"

# xz on two threads: a compression job split into blocks, each compressed on a worker thread.
record xz-threads xz -T2 --block-size=1MiB -6 -c "$work/input.txt"

# zstd on two worker threads with long-distance matching.
record zstd-threads zstd -T2 -q -c --long=24 "$work/input.txt"

# A server-style workload: a pool of 8 worker threads answering 100 requests, each building a
# JSON response from a dict of 50 records; Python's own small-object allocator is off
# (PYTHONMALLOC=malloc), so every object is a malloc of the thread that makes it, and responses
# are freed by the thread that sends them.
cat >"$work/server.py" <<'PY'
import json, queue, threading
requests, responses = queue.Queue(), queue.Queue()
def worker():
    while True:
        number = requests.get()
        if number is None:
            return
        body = {"request": number, "items": [{"id": i, "name": "item-%d" % (number * 50 + i), "tags": ["a", "b", str(i % 7)]} for i in range(50)]}
        responses.put(json.dumps(body))
threads = [threading.Thread(target=worker) for _ in range(8)]
for thread in threads: thread.start()
for number in range(100): requests.put(number)
sent = 0
for _ in range(100): sent += len(responses.get())
for _ in threads: requests.put(None)
for thread in threads: thread.join()
print(sent)
PY
PYTHONMALLOC=malloc PYTHONHASHSEED=0 record python3-threaded-server python3 "$work/server.py"
