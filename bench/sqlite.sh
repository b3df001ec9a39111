#!/usr/bin/env bash
# SQLite's own benchmark, speedtest1 (its ~30 tests of inserts, selects, updates, deletes,
# joins and index work), natively and crash-resistant under `zhuque run`, alternating, on an
# in-memory database (the heap's speed) and on a database file (with its journal and fsyncs).
# speedtest1.c comes from the Debian source of the installed sqlite3 (downloaded once from
# deb.debian.org into target/bench-cache) and is linked with the system's libsqlite3.
# Prints the median TOTAL of RUNS runs and the ratio zhuque / native.
#
#   bench/sqlite.sh [RUNS] [SIZE]        (after `cargo build --release`; needs libsqlite3-dev)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-5}
size=${2:-100}
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
[ -f /usr/include/sqlite3.h ] || { echo "libsqlite3-dev is missing: apt-get install libsqlite3-dev" >&2; exit 1; }
work=$(mktemp -d)
image=$BENCH_IMAGES/zhuque-bench-sqlite
trap 'rm -rf "$work" "$image"' EXIT
load_start=$(loadavg)

# The upstream version of the installed library: "3.40.1-2+deb12u2" -> "3.40.1".
version=$(dpkg-query -W -f='${Version}' libsqlite3-dev | sed 's/-.*//')
cache=target/bench-cache
tarball=$cache/sqlite3_$version.orig.tar.xz
if [ ! -f "$tarball" ]; then
    mkdir -p "$cache"
    curl -sSf -o "$tarball.tmp" "http://deb.debian.org/debian/pool/main/s/sqlite3/sqlite3_$version.orig.tar.xz"
    mv "$tarball.tmp" "$tarball"
fi
tar -xJf "$tarball" -C "$work" "sqlite3-$version/test/speedtest1.c"
cc -O2 -o "$work/speedtest1" "$work/sqlite3-$version/test/speedtest1.c" -lsqlite3

total() { # speedtest1 output on stdin -> TOTAL in seconds ("  TOTAL.......   1.063s")
    awk '/TOTAL/ && match($0, /[0-9]+[.][0-9]+s$/) { v = substr($0, RSTART, RLENGTH - 1) }
         END { if (v == "") exit 1; print v }'
}

run() { # mode database -> seconds
    local db=$2
    rm -f "$work/test.db" "$work/test.db-journal"
    if [ "$1" = native ]; then
        "$work/speedtest1" --size "$size" $db > "$work/out" 2>&1
    else
        "$zq" run --image "$image" --fresh -- "$work/speedtest1" --size "$size" $db > "$work/out" 2>&1
    fi || { echo "speedtest1 failed ($1):" >&2; cat "$work/out" >&2; exit 1; }
    total < "$work/out"
}

for _ in $(seq "$runs"); do
    for mode in native zhuque; do
        printf '%s\tin memory (--memdb)\t%s\n' "$mode" "$(run "$mode" --memdb)" >> "$work/all"
        printf '%s\tdatabase file\t%s\n' "$mode" "$(run "$mode" "$work/test.db")" >> "$work/all"
    done
done

printf 'load average at the start: %s, at the end: %s\n\n' "$load_start" "$(loadavg)"
echo "| speedtest1 --size $size (median of $runs runs) | native s | zhuque s | ratio |"
echo "|---|--:|--:|--:|"
ratio_rows "$work/all" '%.3f'
