#!/usr/bin/env bash
# The pool on huge pages: the memory paths, the first pass after a resume and the save and
# resume latency again, with the images (and so the pools) on a tmpfs mounted with
# `huge=within_size`, which maps pool memory with 2 MiB pages. /dev/shm gives none unless the
# machine enables them (docs/benchmarks.md, "Huge pages"; README, "Huge pages").
# Needs root (it mounts the tmpfs in a temporary directory and unmounts it at the end).
#
#   bench/huge_pages.sh [RUNS]         (after `cargo build --release`; default 3 runs)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-3}
[ "$(id -u)" = 0 ] || { echo "bench/huge_pages.sh mounts a tmpfs: run it as root" >&2; exit 1; }
mnt=$(mktemp -d)
trap 'umount "$mnt" 2> /dev/null; rmdir "$mnt"' EXIT
mount -t tmpfs -o size=8g,huge=within_size zhuque-bench-huge "$mnt"
export BENCH_IMAGES=$mnt

echo "Images on a tmpfs mounted with \`huge=within_size\`."
echo
echo "Memory paths (bench/memory.sh $runs):"
echo
bench/memory.sh "$runs"
echo
echo "The first pass over memory after a resume (bench/resume_pass.sh $runs):"
echo
bench/resume_pass.sh "$runs"
echo
echo "Save and resume by heap size (HEAP_SIZES=\"64 1024\" bench/heap_save.sh $runs):"
echo
HEAP_SIZES="64 1024" bench/heap_save.sh "$runs"
