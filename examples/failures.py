"""How many power failures has this Python program been through? (zhuque's C API through
ctypes; docs/api.md). Runs the same without zhuque: the functions are then missing and the
answers are "not crash-resistant" and 0.

    zhuque run -- python3 examples/failures.py 3000000
"""
import ctypes
import sys

# With zhuque, libzhuque.so is preloaded: its functions are in the process's global scope.
_scope = ctypes.CDLL(None)


def _function(name, restype):
    try:
        f = getattr(_scope, name)
    except AttributeError:
        return None
    f.restype = restype
    f.argtypes = []
    return f


_active = _function("zhuque_active", ctypes.c_int)
_failures = _function("zhuque_failures", ctypes.c_ulong)


def active():
    """Whether this process runs crash-resistant."""
    return bool(_active and _active())


def failures():
    """Failures this process has been through (every resume adds one)."""
    return _failures() if _failures else 0


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    h, seen = 0xCBF29CE484222325, failures()
    for r in range(1, rounds + 1):
        h = ((h ^ r) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
        # Polling is the way to notice a resume from Python: a recovery handler runs while
        # every thread is stopped, so it could never take the interpreter lock.
        if r % 100 == 0 and failures() != seen:
            seen = failures()
        if r % (rounds // 10 or 1) == 0:
            print(f"round {r}: {h:016x}", flush=True)
    print(f"active {active()} failures {failures()} noticed {seen}")
