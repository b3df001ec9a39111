# Helpers the benchmark scripts share (sourced by them, after `cd` to the workspace root).

# The median of the numbers on stdin (one per line); nothing when there are none.
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]}'; }

# The largest of the numbers on stdin.
worst() { sort -n | tail -1; }

# Microseconds on stdin as milliseconds with two decimals; "-" when there is no number.
ms() { awk 'NR == 1 {v = $1} END {if (v == "" || v == "-") print "-"; else printf "%.2f", v / 1000}'; }

# The 1, 5 and 15 minute load averages, printed with each table (a benchmark on a busy
# machine says so).
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# One table row per thing measured in FILE, in the order things first appear there: lines
# "native|zhuque<TAB>thing<TAB>value" become "| thing | native median | zhuque median | ratio |",
# the medians printed with printf FORMAT. The ratio is zhuque / native (times), or
# native / zhuque when KIND is "throughput" (higher is better there).
ratio_rows() { # FILE FORMAT [KIND]
    local file=$1 format=$2 kind=${3:-time} what n z
    cut -f2 "$file" | awk '!seen[$0]++' | while IFS= read -r what; do
        n=$(awk -F'\t' -v w="$what" '$1 == "native" && $2 == w {print $3}' "$file" | median)
        z=$(awk -F'\t' -v w="$what" '$1 == "zhuque" && $2 == w {print $3}' "$file" | median)
        awk -v w="$what" -v n="$n" -v z="$z" -v f="$format" -v k="$kind" 'BEGIN {
            printf "| %s | " f " | " f " | %.2fx |\n", w, n, z, (k == "throughput" ? n / z : z / n) }'
    done
}

# Where the benchmarks put their images (and so the pools): /dev/shm unless BENCH_IMAGES names
# another directory, e.g. a tmpfs mounted with `huge=within_size` to measure the pool on huge
# pages (docs/benchmarks.md, "Huge pages").
BENCH_IMAGES=${BENCH_IMAGES:-/dev/shm}
