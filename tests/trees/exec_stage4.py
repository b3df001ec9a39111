#!/usr/bin/env python3
"""exec_stage4.py PID

Stage 4, the last, of `tree_exec chain` (tests/programs/tree_exec.c): exec'd by the bash
script of stage 3 through this file's `#!/usr/bin/env python3` line (the kernel runs env,
which finds python3 on PATH and execs it), in the same process as every stage before.
Checks the pid, writes to the inherited fd 5 (exec.log), computes for a while printing
progress, and ends the process with status 3. Deterministic output.

Under zhuque the stage fails once by itself (zhuque_fail_now() of the C API, reached through
ctypes; absent natively), so every run has a failure in python whatever the random delays
of the crash test: a resumed launch is often too short for its own random failure to land.
"""

import ctypes
import hashlib
import os
import sys


def fail_now():
    """Power fails here under zhuque; natively the runtime's symbol is absent: no-op."""
    try:
        fail = ctypes.CDLL(None).zhuque_fail_now
    except AttributeError:
        return
    fail()


print("stage 4: python3, same pid as stage 1: %s" % ("yes" if os.getpid() == int(sys.argv[1]) else "no"), flush=True)
os.write(5, b"stage 4\n")
h = b"stage 4"
for i in range(1, 9):
    for _ in range(25000):
        h = hashlib.sha256(h).digest()
    print("stage 4 %d/8: %s" % (i, h.hex()[:16]), flush=True)
    if i == 3:
        fail_now()
os.write(5, b"stage 4 done\n")
print("stage 4: done, exit status 3")
sys.exit(3)
