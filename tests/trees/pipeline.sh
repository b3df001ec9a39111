#!/bin/bash
# pipeline.sh ROUNDS
#
# A shell script of the everyday kind, for the process-tree crash test (issue 9): hundreds of
# external commands (awk, sort, uniq, head, cut, sha256sum, tr, wc, seq, ...) joined by
# pipelines, command substitution, subshells, background jobs collected with `wait`, a
# `while read` loop over an external command's output (both through a pipeline and through a
# process substitution), and files written in the working directory along the way (out/),
# which the test compares with a native run's. Runs under `set -e`; the last command fails on
# purpose, so the exit status (1, through `set -e`) is part of what is compared, and the EXIT
# trap prints the status it saw.
#
# Deterministic: no pids, times or paths are printed; data comes from an LCG in awk; sorting
# is in the C locale.
set -e
export LC_ALL=C
rounds=${1:-30}
trap 'echo "exit trap: status $?"' EXIT

mkdir -p out

# ROUNDS lines of "word value" pairs from a linear congruential generator seeded with $1.
gen() {
    awk -v seed="$1" -v n="$2" 'BEGIN {
        x = seed
        for (i = 0; i < n; i++) {
            x = (x * 69069 + 1) % 4294967296
            printf "w%02d %d\n", int(x / 65536) % 53, int(x / 256) % 1000
        }
    }'
}

echo "start: $rounds rounds"
total=0
for round in $(seq 1 "$rounds"); do
    gen "$round" 3000 >"out/data.$round"
    # The three most frequent words: a four-stage pipeline whose head ends early.
    top=$(cut -d' ' -f1 "out/data.$round" | sort | uniq -c | sort -rn | head -3 |
        awk '{ printf "%s:%s ", $2, $1 }')
    digest=$(sha256sum <"out/data.$round" | cut -c1-16)
    sum=$(awk '{ s += $2 } END { print s }' "out/data.$round")
    total=$((total + sum))
    # A subshell that changes directory and its own variables, with a pipeline inside.
    lines=$(cd out && wc -l <"data.$round" | tr -d ' ')
    echo "round $round: lines $lines sum $sum sha $digest top $top"
    if [ $((round % 5)) -eq 0 ]; then
        # Background jobs, each a small pipeline writing a file; one ends with status 3.
        pids=()
        for job in 1 2 3; do
            (
                seq $((round * job)) $((round * job + 400)) | awk '{ s += $1 * $1 } END { print s }' \
                    >"out/job.$round.$job"
                if [ "$job" -eq 2 ]; then exit 3; fi
            ) &
            pids+=("$!")
        done
        job=0
        for p in "${pids[@]}"; do
            job=$((job + 1))
            if wait "$p"; then st=0; else st=$?; fi
            echo "  job $job: status $st, result $(cat "out/job.$round.$job")"
        done
    fi
done

# A while-read loop fed by an external pipeline (the loop runs in a subshell of its own) ...
seq 1 40 | awk '{ print $1, ($1 * 7919) % 1009 }' | while read -r n v; do
    if [ $((v % 3)) -eq 0 ]; then
        echo "$n $v" >>out/div3.txt
    fi
done
echo "div3: $(wc -l <out/div3.txt | tr -d ' ') lines, sha $(sha256sum <out/div3.txt | cut -c1-16)"

# ... and one fed through a process substitution (the loop runs in this shell).
count=0
while read -r word n; do
    count=$((count + n))
    printf '%s=%s\n' "$word" "$n" >>out/words.txt
done < <(cat out/data.* | cut -d' ' -f1 | sort | uniq -c | awk '{ print $2, $1 }')
echo "words: $(wc -l <out/words.txt | tr -d ' ') distinct, $count in all"

# Command substitution nested in command substitution, and a generated stream hashed.
echo "nested: $(echo "sum of 1..100 is $(seq 1 100 | paste -sd+ | awk -F+ '{ for (i = 1; i <= NF; i++) s += $i } END { print s }')")"
yes "line of text" | head -n 20000 | tr 'a-z' 'A-Z' | sha256sum | cut -c1-16 >out/yes.sha
echo "yes: $(cat out/yes.sha)"

# `set -e` does not stop at a failing command in a condition or a failing subshell that is
# tested, and grep's status 1 is handled.
if ! grep -q zzz out/data.1; then echo "no zzz in data.1"; fi
(false) || echo "subshell failed as expected"
matches=$(grep -c '^w07 ' out/data.1 || true)
echo "w07 in data.1: $matches"

# (Listed before the listing file is created: `ls out | sort >out/listing.txt` would race
# with its own redirection.)
listing=$(ls out | sort)
printf '%s\n' "$listing" >out/listing.txt
echo "files: $(wc -l <out/listing.txt | tr -d ' '), total $total"
echo "summary $(cat out/listing.txt out/yes.sha | sha256sum | cut -c1-16)" | tee out/summary.txt

# The last command fails: `set -e` ends the script with its status (1).
test -e out/never-written
echo "not reached"
