/*
 * fd_pipes MESSAGES
 *
 * Two threads talking through the kernel: the main thread sends MESSAGES variable-sized
 * messages (length-prefixed, up to 6000 bytes, so they straddle pipe buffer boundaries) to a
 * worker over a pipe whose write end is non-blocking (the sender polls when it is full); the
 * worker answers each with its hash over a stream socketpair, and every 16th message also with
 * a datagram on a SOCK_SEQPACKET socketpair. At the end the sender writes a last message and
 * closes its end of the pipe and shuts its end of the socketpair down for writing; the worker
 * reads to end of file on both, so data written before a close must survive a failure too.
 * A third pipe is kept half-full for the whole run (64 KiB written at the start, read back at
 * the end) and must come back intact. Only the main thread prints, from what it has verified.
 *
 * Every answer also goes over a TCP connection between the two threads (loopback): a
 * connection with both ends in the process must survive with the bytes in flight.
 *
 * Before all that, at a deterministic failure point (zhuque_fail_now, a no-op without the
 * runtime), a pipe and a socketpair each hold data whose writer has already closed its end,
 * and a FIFO holds data written through its read-write fd, and a loopback TCP connection holds
 * 100 KiB one way and a message and a half-close the other, and a TCP client has connected to
 * the program's own listener and sent a message before being accepted: after the resume the
 * data must be read back, followed by end of file, and the connection accepted.
 *
 * Once the worker runs, the main thread keeps its /proc/self/task/<tid> directory and `comm`
 * file open (the latter at two numbers, one close-on-exec, as glibc's pthread_getname_np
 * holds one for a moment): they must come back as the worker's entries, not fail.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int data_pipe[2], stream[2], packets[2], tcp_main, tcp_worker;
static unsigned long messages;
static _Atomic pid_t worker_tid;

static void full_write(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && (errno == EINTR))
            continue;
        if (w < 0 && errno == EAGAIN) {
            struct pollfd pf = {fd, POLLOUT, 0};
            int r = poll(&pf, 1, -1);
            TL_CHECK(r >= 0 || errno == EINTR, "poll: %s", strerror(errno));
            continue;
        }
        TL_CHECK(w > 0, "write fd %d: %s", fd, strerror(errno));
        c += w;
        n -= (size_t)w;
    }
}

/* Reads exactly n bytes; returns 0 at end of file before any byte. */
static int full_read(int fd, void *p, size_t n)
{
    char *c = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, c + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        TL_CHECK(r >= 0, "read fd %d: %s", fd, strerror(errno));
        if (r == 0) {
            TL_CHECK(got == 0, "end of file inside a message");
            return 0;
        }
        got += (size_t)r;
    }
    return 1;
}

static void *worker(void *arg)
{
    (void)arg;
    TL_CHECK(pthread_setname_np(pthread_self(), "zq-worker") == 0, "setname");
    worker_tid = (pid_t)syscall(SYS_gettid);
    static unsigned char buf[8192];
    unsigned long seen = 0;
    for (;;) {
        uint32_t len;
        if (!full_read(data_pipe[0], &len, sizeof len))
            break;
        TL_CHECK(len <= sizeof buf, "bad length %u", len);
        TL_CHECK(full_read(data_pipe[0], buf, len), "short message");
        uint64_t h = tl_hash(TL_HASH_INIT, buf, len);
        seen++;
        full_write(stream[1], &h, sizeof h);
        full_write(tcp_worker, &h, sizeof h);
        if (seen % 16 == 0) {
            uint64_t pkt[2] = {seen, h};
            while (send(packets[1], pkt, sizeof pkt, 0) < 0)
                TL_CHECK(errno == EINTR, "send: %s", strerror(errno));
        }
    }
    /* The sender shut its stream down for writing: read to end of file. */
    char c;
    ssize_t r;
    while ((r = read(stream[1], &c, 1)) < 0 && errno == EINTR)
        ;
    TL_CHECK(r == 0, "stream not at end of file: %zd", r);
    uint64_t done = ~seen;
    full_write(stream[1], &done, sizeof done);
    close(stream[1]);
    return NULL;
}

/* The worker's /proc/self/task/<tid> directory and `comm` file, opened at the first call. */
static void check_worker_entries(void)
{
    static int dir = -1, comm = -1, comm_copy = -1;
    if (dir < 0) {
        char path[64];
        snprintf(path, sizeof path, "/proc/self/task/%d", (int)worker_tid);
        dir = open(path, O_RDONLY | O_DIRECTORY);
        TL_CHECK(dir >= 0, "open %s: %s", path, strerror(errno));
        comm = openat(dir, "comm", O_RDONLY);
        TL_CHECK(comm >= 0, "open comm: %s", strerror(errno));
        comm_copy = fcntl(comm, F_DUPFD_CLOEXEC, 100);
        TL_CHECK(comm_copy >= 0, "dup comm: %s", strerror(errno));
    }
    const int fds[2] = {comm, comm_copy};
    for (int i = 0; i < 2; i++) {
        char name[32] = {0};
        ssize_t n = pread(fds[i], name, sizeof name - 1, 0);
        TL_CHECK(n == 10 && strcmp(name, "zq-worker\n") == 0, "fd %d: worker comm %zd '%s' %s",
                 fds[i], n, n > 0 ? name : "", n < 0 ? strerror(errno) : "");
    }
    TL_CHECK(fcntl(comm_copy, F_GETFD) == FD_CLOEXEC && fcntl(comm, F_GETFD) == 0,
             "close-on-exec flags of the comm fds");
    int again = openat(dir, "comm", O_RDONLY);
    TL_CHECK(again >= 0, "comm through the task directory: %s", strerror(errno));
    close(again);
}

int main(int argc, char **argv)
{
    messages = tl_arg(argc, argv, 1, 30000);
    uint64_t rng = 7;
    static int keep[2];
    TL_CHECK(pipe(data_pipe) == 0 && pipe(keep) == 0, "pipe");
    TL_CHECK(fcntl(data_pipe[1], F_SETFL, O_NONBLOCK) == 0, "nonblock");
    TL_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, stream) == 0, "socketpair");
    TL_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, packets) == 0, "socketpair seqpacket");
    printf("fds pipe %d %d keep %d %d stream %d %d packets %d %d\n", data_pipe[0],
           data_pipe[1], keep[0], keep[1], stream[0], stream[1], packets[0], packets[1]);

    static unsigned char kept[65536];
    for (size_t i = 0; i < sizeof kept; i++)
        kept[i] = (unsigned char)(i * 31 + 7);
    full_write(keep[1], kept, sizeof kept); /* fills the pipe exactly */

    /* A TCP connection inside the process: 127.0.0.1, an ephemeral port. */
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    TL_CHECK(bind(ls, (void *)&sa, sizeof sa) == 0 && listen(ls, 4) == 0 &&
                 getsockname(ls, (void *)&sa, &sl) == 0,
             "tcp listen: %s", strerror(errno));
    int ta = socket(AF_INET, SOCK_STREAM, 0);
    TL_CHECK(connect(ta, (void *)&sa, sizeof sa) == 0, "tcp connect: %s", strerror(errno));
    int tb = accept(ls, NULL, NULL);
    tcp_main = socket(AF_INET, SOCK_STREAM, 0);
    TL_CHECK(connect(tcp_main, (void *)&sa, sizeof sa) == 0, "tcp connect 2");
    tcp_worker = accept(ls, NULL, NULL);
    TL_CHECK(tb >= 0 && tcp_worker >= 0, "accept: %s", strerror(errno));
    int one = 1;
    setsockopt(tcp_worker, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int tc = socket(AF_INET, SOCK_STREAM, 0); /* connected, not accepted at the failure */
    TL_CHECK(connect(tc, (void *)&sa, sizeof sa) == 0, "tcp connect 3");

    /* Data whose writer is gone, and a FIFO, across a failure. */
    int late[2], pair[2];
    TL_CHECK(pipe(late) == 0, "pipe");
    TL_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0, "socketpair");
    TL_CHECK(mkfifo("fifo", 0600) == 0, "mkfifo: %s", strerror(errno));
    int fifo = open("fifo", O_RDWR);
    TL_CHECK(fifo >= 0, "open fifo");
    full_write(late[1], "pipe-data", 9);
    full_write(pair[1], "pair-data", 9);
    full_write(fifo, "fifo-data", 9);
    close(late[1]);
    close(pair[1]);
    static unsigned char bulk[100 * 1024];
    for (size_t i = 0; i < sizeof bulk; i++)
        bulk[i] = (unsigned char)(i * 131 + 17);
    full_write(tb, bulk, sizeof bulk);
    full_write(ta, "tcp-data", 8);
    TL_CHECK(shutdown(ta, SHUT_WR) == 0, "tcp shutdown");
    full_write(tc, "waiting", 7);
    zq_fail_now();
    char small[16];
    TL_CHECK(full_read(late[0], small, 9) && memcmp(small, "pipe-data", 9) == 0, "late pipe");
    TL_CHECK(read(late[0], small, 1) == 0, "late pipe: no end of file");
    TL_CHECK(full_read(pair[0], small, 9) && memcmp(small, "pair-data", 9) == 0, "late pair");
    TL_CHECK(read(pair[0], small, 1) == 0, "late pair: no end of file");
    TL_CHECK(full_read(fifo, small, 9) && memcmp(small, "fifo-data", 9) == 0, "fifo");
    TL_CHECK(full_read(tb, small, 8) && memcmp(small, "tcp-data", 8) == 0, "tcp data");
    TL_CHECK(read(tb, small, 1) == 0, "tcp: no end of file after the half-close");
    static unsigned char bulk_back[sizeof bulk];
    TL_CHECK(full_read(ta, bulk_back, sizeof bulk_back) &&
                 memcmp(bulk, bulk_back, sizeof bulk) == 0,
             "tcp bulk data");
    full_write(tb, "back", 4);
    TL_CHECK(full_read(ta, small, 4) && memcmp(small, "back", 4) == 0, "tcp after half-close");
    close(ta);
    close(tb);
    int td = accept(ls, NULL, NULL);
    TL_CHECK(td >= 0, "accept after the failure: %s", strerror(errno));
    TL_CHECK(full_read(td, small, 7) && memcmp(small, "waiting", 7) == 0, "pending tcp data");
    full_write(td, "ok", 2);
    TL_CHECK(full_read(tc, small, 2) && memcmp(small, "ok", 2) == 0, "pending tcp reply");
    close(td);
    close(tc);
    close(ls);
    close(late[0]);
    close(pair[0]);
    close(fifo);
    printf("late data ok\n");

    TL_CHECK(prctl(PR_SET_NAME, "zq-main") == 0, "PR_SET_NAME");
    pthread_t t;
    TL_CHECK(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create");
    uint64_t total = TL_HASH_INIT;
    unsigned long acked = 0, packets_seen = 0;
    static unsigned char buf[8192];
    for (unsigned long m = 1; m <= messages; m++) {
        uint32_t len = 1 + (uint32_t)tl_below(&rng, 6000);
        for (uint32_t i = 0; i < len; i++)
            buf[i] = (unsigned char)tl_next(&rng);
        uint64_t want = tl_hash(TL_HASH_INIT, buf, len);
        full_write(data_pipe[1], &len, sizeof len);
        full_write(data_pipe[1], buf, len);
        uint64_t got;
        TL_CHECK(full_read(stream[0], &got, sizeof got), "stream ended");
        TL_CHECK(got == want, "message %lu: hash %016llx != %016llx", m,
                 (unsigned long long)got, (unsigned long long)want);
        uint64_t via_tcp;
        TL_CHECK(full_read(tcp_main, &via_tcp, sizeof via_tcp), "tcp ended");
        TL_CHECK(via_tcp == want, "message %lu: tcp hash differs", m);
        acked++;
        total = tl_mix(total, got);
        if (m % 16 == 0) {
            uint64_t pkt[2];
            ssize_t r;
            while ((r = recv(packets[0], pkt, sizeof pkt, 0)) < 0 && errno == EINTR)
                ;
            TL_CHECK(r == sizeof pkt && pkt[0] == m && pkt[1] == want, "packet %lu", m);
            packets_seen++;
        }
        if (m % (messages / 30 ? messages / 30 : 1) == 0) {
            printf("message %lu total %016llx\n", m, (unsigned long long)total);
            char name[16];
            TL_CHECK(pthread_getname_np(pthread_self(), name, sizeof name) == 0 &&
                         strcmp(name, "zq-main") == 0,
                     "main thread name %s", name);
            if (m > 1000) { /* the worker has named itself by now */
                TL_CHECK(pthread_getname_np(t, name, sizeof name) == 0 &&
                             strcmp(name, "zq-worker") == 0,
                         "worker thread name %s", name);
                check_worker_entries();
            }
        }
    }
    /* Last words, then hang up: the worker must still see them before end of file. */
    uint32_t len = 5;
    full_write(data_pipe[1], &len, sizeof len);
    full_write(data_pipe[1], "bye!!", 5);
    close(data_pipe[1]);
    TL_CHECK(shutdown(stream[0], SHUT_WR) == 0, "shutdown");
    uint64_t last, done;
    TL_CHECK(full_read(stream[0], &last, sizeof last), "no hash of the last message");
    uint64_t last_tcp;
    TL_CHECK(full_read(tcp_main, &last_tcp, sizeof last_tcp) && last_tcp == last, "tcp last");
    TL_CHECK(last == tl_hash(TL_HASH_INIT, "bye!!", 5), "last message");
    TL_CHECK(full_read(stream[0], &done, sizeof done), "no end marker");
    TL_CHECK(done == ~(uint64_t)(messages + 1), "worker saw %llu messages",
             (unsigned long long)~done);
    TL_CHECK(pthread_join(t, NULL) == 0, "join");
    char c;
    TL_CHECK(read(stream[0], &c, 1) == 0, "stream not closed");

    static unsigned char back[65536];
    TL_CHECK(full_read(keep[0], back, sizeof back), "kept pipe empty");
    TL_CHECK(memcmp(back, kept, sizeof kept) == 0, "kept pipe contents changed");
    printf("acked %lu packets %lu total %016llx\n", acked, packets_seen,
           (unsigned long long)total);
    return 0;
}
