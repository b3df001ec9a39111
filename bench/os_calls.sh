#!/usr/bin/env bash
# Thread and OS-state call overhead: bench/os_calls.c natively and crash-resistant under
# `zhuque run`, alternating, in one run. Prints the median ns per operation of RUNS runs and
# the ratio zhuque / native.
#
#   bench/os_calls.sh [RUNS] [SCALE]        (after `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
scale=${2:-1}
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
image=$BENCH_IMAGES/zhuque-bench-os
trap 'rm -rf "$work" "$image"' EXIT
cc -O2 -pthread -o "$work/os_calls" bench/os_calls.c

for i in $(seq "$runs"); do
    "$work/os_calls" "$scale" | sed "s/^/native\t/" >> "$work/all"
    "$zq" run --image "$image" --fresh -- "$work/os_calls" "$scale" | sed "s/^/zhuque\t/" >> "$work/all"
done

echo "| operation (median of $runs runs) | native ns | zhuque ns | ratio |"
echo "|---|--:|--:|--:|"
ratio_rows "$work/all" '%d'
