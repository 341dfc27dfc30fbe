# Shared by the recording scripts (record.sh here, threaded/record.sh): sourced, not run.
# They set $allocbench (the binary), $work (a scratch directory) and $here (where traces go).

# record NAME COMMAND...: the trace of COMMAND (its own process) as $here/NAME.txt.gz.
record() {
    name=$1
    shift
    "$allocbench" record --follow none -o "$work/$name.txt" -- "$@" >/dev/null
    gzip -9n <"$work/$name.txt" >"$here/$name.txt.gz"
}
