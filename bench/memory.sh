#!/usr/bin/env bash
# Memory paths (issue 14): bench/mem_paths.c and bench/py_churn.py natively and under
# `zhuque run`, alternating, in one run. Each case is timed inside the process (start and exit
# of the runtime do not count). Prints a markdown table of medians of RUNS runs and the ratio
# zhuque / native, with the load average before and after.
#
#   bench/memory.sh [RUNS]           (after `cargo build --release`; default 5 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
image=$BENCH_IMAGES/zhuque-bench-memory
trap 'rm -rf "$work" "$image"' EXIT
cc -O2 -o "$work/mem_paths" bench/mem_paths.c

cases=(
    "cycle 1 20000"
    "cycle 16 5000"
    "cycle 64 2000"
    "cycle 256 500"
    "touch 256"
    "free 2048"
    "private 64 $work/private.dat"
    "python3 bench/py_churn.py"
)

run_case() { # MODE LABEL ARGS...: appends "LABEL<TAB>NAME<TAB>NS" lines to $work/all
    local mode=$1; shift
    local cmd
    if [ "${1%% *}" = python3 ]; then read -r -a cmd <<< "$1"; else read -r -a cmd <<< "$work/mem_paths $1"; fi
    if [ "$mode" = native ]; then
        "${cmd[@]}" > "$work/out"
    else
        rm -rf "$image"
        "$zq" run --image "$image" --fresh -- "${cmd[@]}" > "$work/out" 2> "$work/err" \
            || { echo "zhuque run of '$1' failed:" >&2; cat "$work/err" >&2; exit 1; }
    fi
    sed "s/^/$mode\t/" "$work/out" >> "$work/all"
}

load_start=$(loadavg)
for _ in $(seq "$runs"); do
    for c in "${cases[@]}"; do
        run_case native "$c"
        run_case zhuque "$c"
    done
done

echo "| memory path (median of $runs, per op) | native | zhuque | ratio |"
echo "|---|---|---|---|"
cut -f2 "$work/all" | awk '!seen[$0]++' | while IFS= read -r name; do
    n=$(awk -F'\t' -v k="$name" '$1 == "native" && $2 == k {print $3}' "$work/all" | median)
    z=$(awk -F'\t' -v k="$name" '$1 == "zhuque" && $2 == k {print $3}' "$work/all" | median)
    awk -v name="$name" -v n="$n" -v z="$z" 'function t(v) {
            if (v >= 1e9) return sprintf("%.2f s", v / 1e9)
            if (v >= 1e6) return sprintf("%.2f ms", v / 1e6)
            if (v >= 1e3) return sprintf("%.2f µs", v / 1e3)
            return sprintf("%.0f ns", v) }
        BEGIN { printf "| %s | %s | %s | %.2fx |\n", name, t(n), t(z), z / n }'
done
echo
echo "load average before: $load_start; after: $(loadavg)"
