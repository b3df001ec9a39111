#!/usr/bin/env bash
# Save and resume latency against heap size: one process (bench/tree_save_prog 1 idle MIB, every
# page of MIB MiB of heap written) saved with SIGPWR and resumed, for each size in HEAP_SIZES,
# through bench/tree_save.sh (see there for what each column measures). Issue 14's target: both
# flat in the heap size (memory is the pool already: a save writes no page of it, a resume maps
# it back without reading it).
#
#   bench/heap_save.sh [RUNS]          (after `cargo build --release`)
#   HEAP_SIZES="64 1024 4096" (MiB) chooses the rows.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
load_start=$(loadavg)
failures=$(mktemp)
trap 'rm -f "$failures"' EXIT
printf '| heap of one idle process | save median (ms) | save worst | resume median (ms) | resume worst | zhuque start (ms) | native start (ms) |\n'
printf '|--:|--:|--:|--:|--:|--:|--:|\n'
for mib in ${HEAP_SIZES:-64 1024 4096}; do
    out=$(PROCESS_COUNTS=1 MODES=idle MIB=$mib bench/tree_save.sh "$runs") || true
    row=$(grep '^| 1 | idle |' <<< "$out" || true)
    if [ -z "$row" ]; then
        printf '| %s MiB | - | - | - | - | - | - | no result\n' "$mib"
    else
        printf '| %s MiB |%s\n' "$mib" "${row#| 1 | idle |}"
    fi
    # The rounds that failed, if any, with the size they were run at.
    sed -n '/^rounds that failed:/,$p' <<< "$out" | sed "s/^/[$mib MiB] /" >> "$failures"
done
printf '\nload average at the start: %s, at the end: %s\n' "$load_start" "$(loadavg)"
if [ -s "$failures" ]; then
    printf '\n'
    cat "$failures"
    exit 1
fi
