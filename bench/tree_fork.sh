#!/usr/bin/env bash
# fork from a large process: bench/tree_fork.c (a process with HEAP MiB of touched heap times
# fork+exec+wait of /bin/true and fork+wait, and what a fork costs a parent that then writes
# its heap) natively and crash-resistant under `zhuque run` (tree mode: every child is a
# crash-resistant process of the tree), alternating, in one run, for 10 MiB and 1 GiB. Prints
# the median ms per iteration of RUNS runs and the ratio zhuque / native. A zhuque run that
# fails or hangs is not counted; what happened is printed after the table.
#
#   bench/tree_fork.sh [RUNS]        (after `cargo build --release`)
#   SIZES="MIB:ITERS:WRITE_ITERS ..." chooses the rows (default "10:200:50 1024:10:3").
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
# Tree mode is switched on by this variable until it is the default (harmless afterwards).
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
image=$BENCH_IMAGES/zhuque-bench-tree-fork
trap 'rm -rf "$work" "$image"' EXIT
cc -O2 -o "$work/tree_fork" bench/tree_fork.c
sizes=${SIZES:-10:200:50 1024:10:3}

label() { if [ "$1" -ge 1024 ] && [ $(($1 % 1024)) = 0 ]; then echo "$(($1 / 1024)) GiB"; else echo "$1 MiB"; fi; }

load_start=$(loadavg)
for _ in $(seq "$runs"); do
    for s in $sizes; do
        IFS=: read -r mib iters witers <<< "$s"
        heap=$(label "$mib")
        timeout 600 "$work/tree_fork" "$mib" "$iters" "$witers" | sed "s/^/native\t$heap\t/" >> "$work/all"

        rm -rf "$image"
        status=0
        timeout 600 "$zq" run --image "$image" --fresh -- "$work/tree_fork" "$mib" "$iters" "$witers" \
            > "$work/out" 2> "$work/err" || status=$?
        if [ "$status" = 0 ]; then
            sed "s/^/zhuque\t$heap\t/" "$work/out" >> "$work/all"
        else
            { printf '%s heap: zhuque run ended with %s%s after:\n' "$heap" "$status" \
                "$([ "$status" = 124 ] && echo ' (timeout: killed after 600 s)')"
              sed 's/^/    /' "$work/out"
              echo "  stderr:"
              sed 's/^/    /' "$work/err"; } >> "$work/failures"
        fi
        rm -rf "$image"
    done
done

printf 'load average at the start: %s, at the end: %s\n\n' "$load_start" "$(loadavg)"
echo "| heap | operation (median of $runs runs) | native ms | zhuque ms | ratio |"
echo "|---|---|--:|--:|--:|"
cut -f2,3 "$work/all" | awk '!seen[$0]++' | while IFS=$'\t' read -r heap op; do
    n=$(awk -F'\t' -v h="$heap" -v op="$op" '$1 == "native" && $2 == h && $3 == op {print $4}' "$work/all" | median)
    z=$(awk -F'\t' -v h="$heap" -v op="$op" '$1 == "zhuque" && $2 == h && $3 == op {print $4}' "$work/all" | median)
    ok=$(awk -F'\t' -v h="$heap" -v op="$op" '$1 == "zhuque" && $2 == h && $3 == op' "$work/all" | wc -l)
    note=$([ "$ok" = "$runs" ] || echo " ($ok of $runs zhuque runs succeeded)")
    if [ -n "$z" ]; then
        awk -v h="$heap" -v op="$op" -v n="$n" -v z="$z" -v note="$note" \
            'BEGIN { printf "| %s | %s%s | %.2f | %.2f | %.2fx |\n", h, op, note, n, z, z / n }'
    else
        awk -v h="$heap" -v op="$op" -v n="$n" 'BEGIN { printf "| %s | %s | %.2f | not measurable | - |\n", h, op, n }'
    fi
done
if [ -s "$work/failures" ]; then
    printf '\nzhuque runs that failed:\n'
    cat "$work/failures"
fi
