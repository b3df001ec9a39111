#!/usr/bin/env bash
# The first pass over a heap after a resume, against a warm pass (issue 14's target: at most
# twice). For each heap size, RUNS rounds: bench/resume_pass natively (both passes warm), and
# under `zhuque run` (the first launch saves itself with zq_fail_now and exits 75; the second
# resumes it and times a first and a second pass over every page). Prints the median ms of
# each pass and the ratio of the resumed first pass to the warm one.
#
#   bench/resume_pass.sh [RUNS]          (HEAP_SIZES="256 1024" MiB; after cargo build --release)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
work=$(mktemp -d)
image=$BENCH_IMAGES/zhuque-bench-resume-pass
trap 'rm -rf "$work" "$image"' EXIT
cc -O2 -Iinclude -o "$work/resume_pass" bench/resume_pass.c

load_start=$(loadavg)
for mib in ${HEAP_SIZES:-256 1024}; do
    for _ in $(seq "$runs"); do
        "$work/resume_pass" "$mib" | sed "s/^/native\t$mib\t/" >> "$work/all"
        rm -rf "$image"
        status=0
        "$zq" run --image "$image" --fresh -- "$work/resume_pass" "$mib" 2> "$work/err" || status=$?
        if [ "$status" != 75 ]; then
            { echo "$mib MiB: the first launch ended with $status (expected 75)"; cat "$work/err"; } >> "$work/failures"
            continue
        fi
        "$zq" run --image "$image" -- "$work/resume_pass" "$mib" 2> "$work/err" \
            | sed "s/^/zhuque\t$mib\t/" >> "$work/all" \
            || { echo "$mib MiB: the resume failed"; cat "$work/err"; } >> "$work/failures"
        rm -rf "$image"
    done
done
printf '| heap | native pass (ms) | zhuque first pass after a resume (ms) | zhuque warm pass (ms) | first / warm |\n'
printf '|--:|--:|--:|--:|--:|\n'
for mib in ${HEAP_SIZES:-256 1024}; do
    get() { awk -F'\t' -v s="$1" -v m="$mib" -v k="$2" '$1 == s && $2 == m && $3 == k {print $4}' "$work/all" | median; }
    n=$(get native warm) f=$(get zhuque first) w=$(get zhuque warm)
    awk -v m="$mib" -v n="$n" -v f="$f" -v w="$w" \
        'BEGIN { printf "| %d MiB | %.2f | %.2f | %.2f | %.1fx |\n", m, n, f, w, (w > 0 ? f / w : 0) }'
done
printf '\nload average at the start: %s, at the end: %s\n' "$load_start" "$(loadavg)"
if [ -s "$work/failures" ]; then
    printf '\nruns that failed:\n'
    cat "$work/failures"
fi
