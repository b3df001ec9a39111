#!/usr/bin/env bash
# A shell running external commands: bash loops of 1000 iterations, natively (`bash -c`) and
# crash-resistant (`zhuque run -- bash -c`, every command a crash-resistant process of the
# tree), alternating, in one run. Prints the median total seconds of RUNS runs per loop (the
# wall time of the whole command, `zhuque run`'s start and end included) and the ratio
# zhuque / native. A zhuque run that fails or hangs is not counted; what happened is printed
# after the table.
#
#   bench/tree_shell.sh [RUNS] [ITERATIONS]        (after `cargo build --release`)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
iterations=${2:-1000}
# Tree mode is switched on by this variable until it is the default (harmless afterwards).
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
image=$BENCH_IMAGES/zhuque-bench-tree-shell
trap 'rm -rf "$work" "$image"' EXIT

printf '#!/bin/sh\n:\n' > "$work/noop.sh"
chmod +x "$work/noop.sh"
loops=(
    "for i in \$(seq $iterations); do /bin/true; done"
    "for i in \$(seq $iterations); do echo \$i | tr a-z A-Z >/dev/null; done"
    "cd /usr/bin && for i in \$(seq $iterations); do ./true; done"
    "for i in \$(seq $iterations); do $work/noop.sh; done"
)

now_ns() { date +%s%N; }

load_start=$(loadavg)
for _ in $(seq "$runs"); do
    for l in "${!loops[@]}"; do
        t0=$(now_ns)
        timeout 600 /bin/bash -c "${loops[$l]}"
        t1=$(now_ns)
        printf 'native\t%d\t%d\n' "$l" $((t1 - t0)) >> "$work/all"

        rm -rf "$image"
        t0=$(now_ns)
        status=0
        timeout 600 "$zq" run --image "$image" --fresh -- /bin/bash -c "${loops[$l]}" 2> "$work/err" || status=$?
        t1=$(now_ns)
        if [ "$status" = 0 ]; then
            printf 'zhuque\t%d\t%d\n' "$l" $((t1 - t0)) >> "$work/all"
        else
            { printf '%s: zhuque run ended with %s%s\n' "${loops[$l]}" "$status" \
                "$([ "$status" = 124 ] && echo ' (timeout: killed after 600 s)')"
              sed 's/^/    /' "$work/err"; } >> "$work/failures"
        fi
        rm -rf "$image"
    done
done

printf 'load average at the start: %s, at the end: %s\n\n' "$load_start" "$(loadavg)"
echo "| loop, $iterations iterations (median of $runs runs) | native s | zhuque s | ratio |"
echo "|---|--:|--:|--:|"
for l in "${!loops[@]}"; do
    cell=${loops[$l]//|/\\|} # a | in a table cell is escaped
    n=$(awk -F'\t' -v l="$l" '$1 == "native" && $2 == l {print $3}' "$work/all" | median)
    z=$(awk -F'\t' -v l="$l" '$1 == "zhuque" && $2 == l {print $3}' "$work/all" | median)
    ok=$(awk -F'\t' -v l="$l" '$1 == "zhuque" && $2 == l' "$work/all" | wc -l)
    note=$([ "$ok" = "$runs" ] || echo " ($ok of $runs zhuque runs succeeded)")
    if [ -n "$z" ]; then
        awk -v op="$cell" -v n="$n" -v z="$z" -v note="$note" \
            'BEGIN { printf "| `%s`%s | %.3f | %.3f | %.2fx |\n", op, note, n / 1e9, z / 1e9, z / n }'
    else
        awk -v op="$cell" -v n="$n" 'BEGIN { printf "| `%s` | %.3f | not measurable | - |\n", op, n / 1e9 }'
    fi
done
if [ -s "$work/failures" ]; then
    printf '\nzhuque runs that failed:\n'
    cat "$work/failures"
fi
