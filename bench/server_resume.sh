#!/usr/bin/env bash
# Resume of a server holding a large heap (issue 14's target: <= 10 ms for memcached holding
# 512 MiB): memcached under `zhuque run` is filled with MIB of 1000-byte values, saved
# (`zhuque fail`), then RUNS times resumed by `zhuque run` of the same command and saved again;
# each resume is timed from the start of `zhuque run` to the first `get` answered with its value
# (bench/first_answer.c). Prints the median and the worst in ms, and the server's RSS.
#
#   bench/server_resume.sh [RUNS]        (MIB=512; needs memcached and python3)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
runs=${1:-7}
mib=${MIB:-512}
port=${PORT:-22199}
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v memcached > /dev/null || { echo "memcached is missing (apt-get install memcached)" >&2; exit 1; }
work=$(mktemp -d)
image=$BENCH_IMAGES/zhuque-bench-server-resume
cleanup() {
    "$zq" fail "$image" > /dev/null 2>&1 || true
    rm -rf "$work" "$image"
}
trap cleanup EXIT
rm -rf "$image"
cc -O2 -o "$work/first_answer" bench/first_answer.c
server=("$zq" run --image "$image" -- "$(command -v memcached)" -u root -m $((mib * 2)) -p "$port" -U 0 -t 2)

"${server[@]}" > /dev/null 2> "$work/err" &
python3 - "$port" "$mib" <<'PY'
import socket, sys, time
port, mib = int(sys.argv[1]), int(sys.argv[2])
for _ in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", port)); break
    except OSError:
        time.sleep(0.05)
value = b"x" * 1000
batch = []
for i in range(mib * 1024 * 1024 // 1100):
    batch.append(b"set k%d 0 0 %d noreply\r\n%s\r\n" % (i, len(value), value))
    if len(batch) == 2000:
        s.sendall(b"".join(batch)); batch = []
s.sendall(b"".join(batch) + b"get k7\r\n")
got = b""
while not got.endswith(b"END\r\n"):
    got += s.recv(65536)
PY
rss=$(awk '/VmRSS/ {printf "%.0f MiB", $2 / 1024}' "/proc/$(pgrep -x -n memcached)/status")
"$zq" fail "$image" > /dev/null
wait || true

load_start=$(loadavg)
for _ in $(seq "$runs"); do
    if us=$("$work/first_answer" "$port" "${server[@]}" 2>> "$work/err"); then
        echo "$us" >> "$work/resume"
    else
        echo "a resume answered without the value" >> "$work/failures"
    fi
    "$zq" fail "$image" > /dev/null
    wait || true
done
printf '| memcached holding | resume to the first answer, median (ms) | worst (ms) |\n|--:|--:|--:|\n'
printf '| %s of %d MiB of values (RSS %s) | %s | %s |\n' "$(wc -l < "$work/resume") resumes" "$mib" "$rss" \
    "$(median < "$work/resume" | ms)" "$(worst < "$work/resume" | ms)"
printf '\nload average at the start: %s, at the end: %s\n' "$load_start" "$(loadavg)"
if [ -s "$work/failures" ]; then
    printf '\nruns that failed:\n'
    cat "$work/failures"
fi
