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
