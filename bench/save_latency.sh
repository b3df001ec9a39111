#!/usr/bin/env bash
# Save latency: time from the failure signal (SIGPWR to the program) to its image being
# SAVED (the runtime renames the new `meta` into place), for programs with 1, 16, 64, 256, 1024
# threads besides main, idle (blocked in pthread_cond_wait), busy (computing) or mixed.
# Prints the median and the worst of RUNS runs per row, in milliseconds (THREAD_COUNTS="..."
# chooses the rows). A second table: main alone with FD_COUNTS="200 2000" more open fds (half
# pipe ends, half Unix socketpair ends, all idle; FD_COUNTS="" for none).
#
#   bench/save_latency.sh [RUNS]        (after `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-7}
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
image=$BENCH_IMAGES/zhuque-bench-save
trap 'rm -rf "$work" "$image"; [ -n "${run_pid:-}" ] && kill "$run_pid" 2>/dev/null; true' EXIT
cc -O2 -pthread -o "$work/save_latency_prog" bench/save_latency_prog.c
cc -O2 -o "$work/save_timer" bench/save_timer.c


one() { # threads mode [fds] -> microseconds
    rm -rf "$image" "$work/out"
    "$zq" run --image "$image" --fresh -- "$work/save_latency_prog" "$1" "$2" "${3:-0}" > "$work/out" 2> "$work/err" &
    run_pid=$!
    # This runs in a $(...) subshell: never leave the program behind, whatever happens.
    trap 'kill "$run_pid" 2>/dev/null; true' EXIT
    local i=0
    until grep -q ready "$work/out" 2>/dev/null; do
        sleep 0.01
        i=$((i + 1))
        [ $i -lt 3000 ] || { echo "program did not start: $(cat "$work/err")" >&2; exit 1; }
    done
    # zhuque run -> zhuque init (pid 1 of the program's namespace) -> the program
    local init pid
    until init=$(pgrep -P "$run_pid") && pid=$(pgrep -P "$init"); do sleep 0.01; done
    timeout 60 "$work/save_timer" "$image" "$pid"
    local status=0
    wait "$run_pid" || status=$?
    run_pid=
    [ "$status" = 75 ] || { echo "zhuque run ended with $status: $(cat "$work/err")" >&2; exit 1; }
}

printf '| threads | mode  | median (ms) | worst (ms) |\n|--:|:--|--:|--:|\n'
for mode in ${MODES:-idle busy mixed}; do
    for n in ${THREAD_COUNTS:-1 16 64 256 1024}; do
        samples=()
        for _ in $(seq "$runs"); do samples+=("$(one "$n" "$mode")"); done
        printf '| %d | %s | %s | %s |\n' "$n" "$mode" \
            "$(printf '%s\n' "${samples[@]}" | median | ms)" \
            "$(printf '%s\n' "${samples[@]}" | worst | ms)"
    done
done

if [ -n "${FD_COUNTS-200 2000}" ]; then
    printf '\n| open fds (main alone, idle) | median (ms) | worst (ms) |\n|--:|--:|--:|\n'
    for f in ${FD_COUNTS-200 2000}; do
        samples=()
        for _ in $(seq "$runs"); do samples+=("$(one 0 idle "$f")"); done
        printf '| %d | %s | %s |\n' "$f" \
            "$(printf '%s\n' "${samples[@]}" | median | ms)" \
            "$(printf '%s\n' "${samples[@]}" | worst | ms)"
    done
fi
