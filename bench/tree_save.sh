#!/usr/bin/env bash
# Save and resume latency of a process tree: bench/tree_save_prog PROCESSES MODE MIB (the root
# and PROCESSES-1 forked children, MIB MiB of touched heap each, all idle or all busy) under
# `zhuque run`, for 1, 4 and 16 processes. One round of a row:
#   start   `zhuque run --fresh` until every process has written "ready" (its heap touched),
#           and the same program natively (then killed), for comparison;
#   save    from SIGPWR to the zhuque init (what `zhuque fail DIR` sends) to the rename of the
#           tree's SAVED `meta` (bench/save_timer, inotify): the instant the save exists;
#   resume  from the start of `zhuque run` (same command: it resumes the SAVED tree) until every
#           process has written "resumed" from its recovery handler, which runs after the whole
#           tree is back and before the process's own threads continue;
# then `zhuque fail DIR`, `zhuque rm DIR`. Prints the median and the worst of RUNS rounds per
# row, in milliseconds. A round that fails or hangs is not counted; what happened is printed
# after the table.
#
#   bench/tree_save.sh [RUNS]        (after `cargo build --release`)
#   PROCESS_COUNTS="1 4 16" MODES="idle busy" MIB=4 choose the rows.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-7}
mib=${MIB:-4}
# Tree mode is switched on by this variable until it is the default (harmless afterwards).
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
image=$BENCH_IMAGES/zhuque-bench-tree-save
timer_pid=

# Kills a process and all its descendants, children first (by pid only).
kill_tree() {
    local c
    for c in $(pgrep -P "$1" || true); do kill_tree "$c"; done
    kill -KILL "$1" 2>/dev/null || true
}
cleanup() {
    if [ -n "$timer_pid" ]; then kill_tree "$timer_pid"; wait "$timer_pid" 2>/dev/null || true; fi
    timer_pid=
    rm -rf "$image"
}
trap 'cleanup; rm -rf "$work"' EXIT
cc -O2 -Iinclude -o "$work/tree_save_prog" bench/tree_save_prog.c
cc -O2 -o "$work/tree_timer" bench/tree_timer.c
cc -O2 -o "$work/save_timer" bench/save_timer.c


# Waits (up to 120 s) for tree_timer's line in FILE; prints its microseconds.
await() {
    local i=0
    until [ -s "$1" ]; do
        kill -0 "$timer_pid" 2>/dev/null || { [ -s "$1" ] && break; return 1; }
        sleep 0.005
        i=$((i + 1))
        [ $i -lt 24000 ] || return 1
    done
    cut -f2 "$1"
}

# Waits (up to 120 s) for the timer (and so its command) to end; sets status.
finish() {
    local i=0
    while kill -0 "$timer_pid" 2>/dev/null; do
        sleep 0.01
        i=$((i + 1))
        [ $i -lt 12000 ] || { status="still running after 120 s"; return; }
    done
    status=0
    wait "$timer_pid" || status=$?
    timer_pid=
}

# A failed round: one line for the report, the rest cleaned up.
failed() { # row what
    printf '%s: %s\n' "$1" "$2" >> "$work/failures"
    sed 's/^/    /' "$work/err" >> "$work/failures" 2>/dev/null || true
    cleanup
}

native_start() { # processes mode -> microseconds
    : > "$work/out"
    "$work/tree_timer" "$1" ready "$work/tree_save_prog" "$1" "$2" "$mib" > "$work/out" 2> "$work/err" &
    timer_pid=$!
    local us
    us=$(await "$work/out") || us=
    cleanup
    echo "$us"
}

round() { # processes mode; appends to $work/{start,save,resume,native}.$1.$2
    local row="$1 processes, $2" prog=("$work/tree_save_prog" "$1" "$2" "$mib") us init
    rm -rf "$image"
    native_start "$1" "$2" >> "$work/native.$1.$2"

    : > "$work/out"
    timeout 300 "$work/tree_timer" "$1" ready "$zq" run --image "$image" --fresh -- "${prog[@]}" \
        > "$work/out" 2> "$work/err" &
    timer_pid=$!
    us=$(await "$work/out") || { failed "$row" "the fresh start did not reach $1 \"ready\" lines"; return; }
    local run_pid
    run_pid=$(cut -f1 "$work/out")
    # zhuque run -> zhuque init (pid 1 of the tree's namespace) -> the root
    init=$(pgrep -P "$run_pid") || { failed "$row" "no zhuque init under zhuque run"; return; }
    local save
    save=$(timeout 60 "$work/save_timer" "$image" "$init") || { failed "$row" "the save did not finish (save_timer)"; return; }
    finish
    [ "$status" = 75 ] || { failed "$row" "zhuque run ended with $status after SIGPWR (expected 75)"; return; }
    echo "$us" >> "$work/start.$1.$2"
    echo "$save" >> "$work/save.$1.$2"

    : > "$work/out"
    timeout 300 "$work/tree_timer" "$1" resumed "$zq" run --image "$image" -- "${prog[@]}" \
        > "$work/out" 2> "$work/err" &
    timer_pid=$!
    us=$(await "$work/out") || { failed "$row" "the resume did not reach $1 \"resumed\" lines"; return; }
    echo "$us" >> "$work/resume.$1.$2"
    timeout 60 "$zq" fail "$image" > /dev/null 2>> "$work/err" || { failed "$row" "zhuque fail after the resume failed"; return; }
    finish
    [ "$status" = 75 ] || { failed "$row" "zhuque run (resumed) ended with $status after zhuque fail (expected 75)"; return; }
    timeout 60 "$zq" rm "$image" > /dev/null 2>> "$work/err" || { failed "$row" "zhuque rm failed"; return; }
}

load_start=$(loadavg)
printf '| processes | mode | save median (ms) | save worst | resume median (ms) | resume worst | zhuque start (ms) | native start (ms) |\n'
printf '|--:|:--|--:|--:|--:|--:|--:|--:|\n'
for mode in ${MODES:-idle busy}; do
    for n in ${PROCESS_COUNTS:-1 4 16}; do
        for _ in $(seq "$runs"); do round "$n" "$mode"; done
        for f in start save resume native; do touch "$work/$f.$n.$mode"; done
        ok=$(wc -l < "$work/save.$n.$mode")
        printf '| %d | %s | %s | %s | %s | %s | %s | %s |%s\n' "$n" "$mode" \
            "$(median < "$work/save.$n.$mode" | ms)" "$(worst < "$work/save.$n.$mode" | ms)" \
            "$(median < "$work/resume.$n.$mode" | ms)" "$(worst < "$work/resume.$n.$mode" | ms)" \
            "$(median < "$work/start.$n.$mode" | ms)" "$(median < "$work/native.$n.$mode" | ms)" \
            "$([ "$ok" = "$runs" ] || echo " $ok of $runs rounds")"
    done
done
printf '\nload average at the start: %s, at the end: %s\n' "$load_start" "$(loadavg)"
if [ -s "$work/failures" ]; then
    printf '\nrounds that failed:\n'
    cat "$work/failures"
fi
