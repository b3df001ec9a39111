"""A parent and a worker process talk over multiprocessing.Pipe(duplex=True), a Unix
socketpair whose two ends the two processes hold (issue 12): each request and each answer
crosses the pair, some of them while a failure lands, and a connection object (with its fd)
is sent over the pair itself. With the fork start method the worker is a fork child, with
spawn a new python3 that received its end at its start. Before, the ends of a socketpair
between two processes came back unconnected and the worker died with EOFError.

    duplex_pipe.py fork|spawn ROUNDS
"""
import multiprocessing as mp
import sys
import time


def worker(conn):
    extra = None
    while True:
        m = conn.recv()
        if m is None:
            break
        if isinstance(m, tuple):  # a connection sent over the pair: answer on it
            extra = m[1]
            extra.send(("hello over the passed end", m[0]))
            continue
        conn.send(m * 2)
    if extra is not None:
        extra.close()


def main():
    mode, rounds = sys.argv[1], int(sys.argv[2])
    mp.set_start_method(mode)
    a, b = mp.Pipe(duplex=True)
    p = mp.Process(target=worker, args=(b,))
    p.start()
    b.close()
    total = 0
    for i in range(rounds):
        a.send(i)
        total += a.recv()
        if i == rounds // 2:
            x, y = mp.Pipe(duplex=True)
            a.send((i, y))
            print("passed end answers:", x.recv(), flush=True)
            y.close()
            x.close()
        if i % (rounds // 6) == 0:
            print("round", i, "total", total, flush=True)
            time.sleep(0.02)
    a.send(None)
    p.join()
    print("total", total, "worker exit", p.exitcode, flush=True)


if __name__ == "__main__":
    main()
