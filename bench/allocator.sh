#!/usr/bin/env bash
# Allocator benchmark: the same programs natively (glibc malloc), with libzhuque.so preloaded
# but inert (mimalloc on ordinary memory), and crash-resistant under `zhuque run` (mimalloc on
# the persistent pool), side by side in one run. Prints median wall times and ratios.
#
#   bench/allocator.sh [RUNS]        (after `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
zq=target/release/zhuque
lib=$PWD/target/release/libzhuque.so
[ -x "$zq" ] && [ -f "$lib" ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"; rm -rf "$BENCH_IMAGES/zhuque-bench"' EXIT
cc -O2 -o "$work/malloc_bench" bench/malloc_bench.c
cc -O2 -I include -o "$work/alloc_churn" tests/programs/alloc_churn.c

seconds() { local t0 t1; t0=$(date +%s%N); "$@" > /dev/null; t1=$(date +%s%N); echo "$(( (t1 - t0) / 1000 ))"; }

bench() {
    local name=$1; shift
    local native=() inert=() zhuque=()
    for _ in $(seq "$runs"); do
        native+=("$(seconds "$@")")
        inert+=("$(seconds env LD_PRELOAD="$lib" "$@")")
        zhuque+=("$(seconds "$zq" run --image "$BENCH_IMAGES/zhuque-bench" --fresh -- "$@")")
    done
    local n i z
    n=$(printf '%s\n' "${native[@]}" | median)
    i=$(printf '%s\n' "${inert[@]}" | median)
    z=$(printf '%s\n' "${zhuque[@]}" | median)
    awk -v name="$name" -v n="$n" -v i="$i" -v z="$z" 'BEGIN {
        printf "| %-34s | %8.3f | %8.3f (%.2fx) | %8.3f (%.2fx) |\n", name, n/1e6, i/1e6, i/n, z/1e6, z/n }'
}

echo "| program (median of $runs) | native s | mimalloc, inert s | zhuque (persistent) s |"
echo "|---|---|---|---|"
bench "malloc_bench 20M ops, 50k live" "$work/malloc_bench" 20000000 50000 8192
bench "malloc_bench 5M ops, 1M live" "$work/malloc_bench" 5000000 1000000 1024
bench "alloc_churn 500k ops (tests)" "$work/alloc_churn" 500000
