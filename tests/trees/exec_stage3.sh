#!/bin/bash
# exec_stage3.sh PID
#
# Stage 3 of `tree_exec chain` (tests/programs/tree_exec.c), started by execv() of this
# file: the kernel runs it through its #!/bin/bash line in the same process. Checks the pid
# (PID, the first stage's), writes to the inherited fd 5 (exec.log), runs external commands
# for a while (so that failures land in the shell and in its children), then execs stage 4,
# a `#!/usr/bin/env python3` script, in the same process again. Deterministic output.
set -e
export LC_ALL=C
echo "stage 3: bash, same pid as stage 1: $([ "$$" = "$1" ] && echo yes || echo no)"
echo "stage 3" >&5
acc=0
for i in $(seq 1 60); do
    v=$(echo "$i" | awk '{ x = $1; for (k = 0; k < 200; k++) x = (x * 69069 + 1) % 65536; print x }')
    acc=$(((acc * 31 + v) % 1000000007))
    if [ $((i % 15)) -eq 0 ]; then echo "stage 3 $((i / 15))/4: $acc"; fi
done
echo "stage 3: exec the python script"
here=$(dirname "$0")
exec "$here/exec_stage4.py" "$1"
