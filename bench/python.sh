#!/usr/bin/env bash
# The pyperformance suite (every benchmark of its default list, or BENCHMARKS="a,b,..."),
# natively and with each benchmark's python processes crash-resistant under `zhuque run`
# (pyperformance and its pyperf workers run as one process tree under zhuque). The two
# alternate in chunks of CHUNK benchmarks, so that a change of machine load shows on both.
# pyperformance 1.14.0 and its benchmarks' venv are installed once (PyPI) under
# target/bench-cache. Prints each benchmark's mean time, the ratio zhuque / native, and the
# geometric mean.
#
#   bench/python.sh [MODE]        (MODE: --fast (default), --rigorous or --debug-single-value)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
mode=${1:---fast}
chunk=${CHUNK:-8}
zq=$PWD/target/release/zhuque
[ -x "$zq" ] && [ -f target/release/libzhuque.so ] || { echo "build first: cargo build --release" >&2; exit 1; }
cache=$PWD/target/bench-cache
tool=$cache/pyperformance-tool
runs=$cache/pyperformance-runs
image=$BENCH_IMAGES/zhuque-bench-python
work=$(mktemp -d)
trap 'rm -rf "$work" "$image"' EXIT
load_start=$(loadavg)

if [ ! -x "$tool/bin/pyperformance" ]; then
    python3 -m venv "$tool"
    "$tool/bin/pip" install -q pyperformance==1.14.0
fi
# The benchmarks' own venv (their dependencies), made where `pyperformance run` looks: in
# the working directory.
mkdir -p "$runs"
cd "$runs"
if ! "$tool/bin/pyperformance" venv show 2> /dev/null | grep -q "already created"; then
    "$tool/bin/pyperformance" venv create > "$work/venv.log" 2>&1 \
        || { echo "pyperformance venv create failed:" >&2; cat "$work/venv.log" >&2; exit 1; }
fi

if [ -n "${BENCHMARKS:-}" ]; then
    list=$(tr ',' '\n' <<< "$BENCHMARKS")
else
    list=$("$tool/bin/pyperformance" list | sed -n 's/^- //p')
fi
mapfile -t names <<< "$list"
# pyperformance goes on after a benchmark that fails and lists it at the end: the table says
# which are missing on either side, and the failures are printed after it.
: > "$work/failures"
for ((i = 0; i < ${#names[@]}; i += chunk)); do
    part=$(IFS=,; echo "${names[*]:i:chunk}")
    "$tool/bin/pyperformance" run "$mode" -b "$part" --append "$work/native.json" > "$work/native.log" 2>&1 \
        || { echo "native, $part:"; grep -i -A3 "error\|failed" "$work/native.log" | tail -15; } >> "$work/failures"
    "$zq" run --image "$image" --fresh -- "$tool/bin/pyperformance" run "$mode" -b "$part" \
        --append "$work/zhuque.json" > "$work/zhuque.log" 2>&1 \
        || { echo "zhuque, $part:"; grep -i -A3 "error\|failed" "$work/zhuque.log" | tail -15; } >> "$work/failures"
    rm -rf "$image"
done

printf 'load average at the start: %s, at the end: %s\n\n' "$load_start" "$(loadavg)"
# pyperf (installed with pyperformance) reads both result files.
"$tool/bin/python" - "$work/native.json" "$work/zhuque.json" "$mode" << 'EOF'
import math, sys
import pyperf

def load(path):
    try:
        return {b.get_name(): b for b in pyperf.BenchmarkSuite.load(path).get_benchmarks()}
    except FileNotFoundError:
        return {}

native, zhuque = load(sys.argv[1]), load(sys.argv[2])

def fmt(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.2f} {unit}"
    return f"{seconds * 1e9:.0f} ns"

print(f"| pyperformance 1.14.0 benchmark ({sys.argv[3]}, mean) | native | zhuque | ratio |")
print("|---|--:|--:|--:|")
ratios = []
for name in sorted(set(native) | set(zhuque)):
    if name not in zhuque or name not in native:
        n = fmt(native[name].mean()) if name in native else "failed"
        z = fmt(zhuque[name].mean()) if name in zhuque else "failed"
        print(f"| {name} | {n} | {z} | - |")
        continue
    n, z = native[name].mean(), zhuque[name].mean()
    ratios.append(z / n)
    print(f"| {name} | {fmt(n)} | {fmt(z)} | {z / n:.2f}x |")
if not ratios:
    sys.exit("no benchmark ran on both sides")
geomean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
print(f"| **geometric mean of {len(ratios)}** | | | {geomean:.2f}x |")
print()
print(f"Worst: {', '.join(f'{n} {r:.2f}x' for r, n in sorted(((zhuque[n].mean() / native[n].mean(), n) for n in native if n in zhuque), reverse=True)[:5])}; "
      f"{sum(r > 1.03 for r in ratios)} of {len(ratios)} above 1.03x.")
EOF
if [ -s "$work/failures" ]; then
    printf '\nBenchmarks that failed (the end of their output):\n\n```\n'
    cat "$work/failures"
    printf '```\n'
fi
