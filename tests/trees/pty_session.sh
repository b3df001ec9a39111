#!/bin/bash
# pty_session.sh ROUNDS — run under `script` (tests/crash_tree.rs): a shell whose stdin,
# stdout and controlling terminal are a pseudo-terminal that `script` (another process of
# the tree) holds the master of. Settings made with stty at the start (no echo, 40x100) must
# hold in every round, the terminal must stay the controlling one (`tty`, `[ -t ]`), and
# every line of output reaches `script`, which copies it to its stdout.
set -e
n=${1:-100}
stty -echo rows 40 cols 100
for i in $(seq "$n"); do
    [ -t 0 ] && [ -t 1 ] || { echo "round $i: not a terminal"; exit 1; }
    size=$(stty size)
    [ "$size" = "40 100" ] || { echo "round $i: size $size"; exit 1; }
    stty -a | grep -q -- ' -echo ' || { echo "round $i: echo is back"; exit 1; }
    tty > /dev/null || { echo "round $i: no controlling terminal"; exit 1; }
    echo "round $i: $(echo "$i" | tr 0-9 a-j) $((i * i))"
done
echo done
