"""pools.py MODE TASKS ROUNDS

Worker pools of python3's standard library, for the process-tree crash test (issue 9):

    fork      multiprocessing.Pool(2) with the "fork" start method; workers are replaced
              every 4 tasks (maxtasksperchild), so processes are forked all along the run
    spawn     multiprocessing.Pool(2) with the "spawn" start method (each worker is a new
              python3 started by fork+exec, talking to the parent over pipes); workers are
              replaced every 6 tasks
    forkserver  multiprocessing.Pool(2) with the "forkserver" start method (python 3.14's
              default): a server process forks each worker when the parent asks over a
              Unix socket, sending the worker's pipe ends with it; workers are replaced every
              4 tasks, so workers are asked for all along the run
    executor  concurrent.futures.ProcessPoolExecutor(2), results collected with map() and
              with as_completed() (sorted, so the output is deterministic)

Each task hashes its number ROUNDS times with sha256 (a deterministic computation of a few
tens of milliseconds); results are printed in task order, each line flushed as it comes, and
a final line sums them up. Exit status 0, or 3 when a result is wrong (checked against the
same computation in the parent for a few tasks).
"""

import concurrent.futures
import hashlib
import multiprocessing
import sys


def work(args):
    n, rounds = args
    h = hashlib.sha256(b"task %d" % n).digest()
    acc = 0
    for i in range(rounds):
        h = hashlib.sha256(h).digest()
        acc = (acc * 31 + h[i % 32]) % 1000000007
    return n, h.hex()[:16], acc


def report(results, tasks):
    total = 0
    for n, digest, acc in results:
        print("task %3d: %s %9d" % (n, digest, acc), flush=True)
        total = (total + acc) % 1000000007
    print("all %d tasks: %d" % (tasks, total), flush=True)
    return total


def main():
    mode = sys.argv[1]
    tasks = int(sys.argv[2])
    rounds = int(sys.argv[3])
    jobs = [(n, rounds) for n in range(tasks)]
    print("mode %s: %d tasks of %d rounds" % (mode, tasks, rounds), flush=True)
    if mode in ("fork", "spawn", "forkserver"):
        ctx = multiprocessing.get_context(mode)
        per_child = 6 if mode == "spawn" else 4
        with ctx.Pool(2, maxtasksperchild=per_child) as pool:
            results = list(pool.imap(work, jobs, chunksize=1))
            report(results, tasks)
            # A second, smaller batch through map_async on the same (renewed) workers. With
            # its chunk size given: map_async divides by len(pool._pool) to choose one, and
            # the pool's handler thread empties that list for a moment while it replaces
            # workers that ended (maxtasksperchild), a CPython race that raised
            # ZeroDivisionError here (natively too, rarely; more often where forks are slower).
            again = pool.map_async(work, jobs[: tasks // 4], chunksize=1).get()
            print("again: %s" % ("same" if again == results[: tasks // 4] else "DIFFERENT"))
    elif mode == "executor":
        with concurrent.futures.ProcessPoolExecutor(max_workers=2) as ex:
            results = list(ex.map(work, jobs))
            report(results, tasks)
            futures = [ex.submit(work, j) for j in jobs[: tasks // 4]]
            done = sorted(f.result() for f in concurrent.futures.as_completed(futures))
            print("as_completed: %s" % ("same" if done == results[: tasks // 4] else "DIFFERENT"))
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
    bad = [r for r in results[:3] if r != work(jobs[r[0]])]
    print("checked in the parent: %s" % ("ok" if not bad else "WRONG"))
    sys.exit(3 if bad else 0)


if __name__ == "__main__":
    main()
