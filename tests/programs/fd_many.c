/*
 * fd_many ROUNDS N FAIL_POINTS
 *
 * Thousands of fds (the reference system stops at 1024): N pipes, each holding unread data of
 * its own, and N/2 descriptions of one file, each at its own offset and each dup'ed once (two
 * fds sharing an offset), about 3N fds in all. Once they are open the program lowers its soft
 * RLIMIT_NOFILE below its highest fd (the fds stay valid; a resume must still recreate them,
 * and give the program its lowered limit back). Each round moves data through a few pipes
 * (a write, then a read of the oldest byte) and reads a byte through one fd of a file pair,
 * checking that its dup moved along; FAIL_POINTS rounds spread over the run call
 * zhuque_fail_now(), and so does the start, before any fd is opened (when FAIL_POINTS > 0).
 * At the end every pipe's contents and every offset are checked.
 * Output: a line every ROUNDS/8 rounds and a checksum.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#define DATA 16

struct pipe_state {
    int r, w;
    unsigned char fifo[DATA * 4]; /* what the pipe holds, oldest first */
    int len;
};

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 20000);
    long n = (long)tl_arg(argc, argv, 2, 1500);
    unsigned long fail_points = tl_arg(argc, argv, 3, 0);
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct rlimit rl;
    TL_CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0, "getrlimit");
    rlim_t need = (rlim_t)(3 * n + 64);
    TL_CHECK(rl.rlim_max >= need, "the hard RLIMIT_NOFILE (%lu) is below the %lu fds needed",
             (unsigned long)rl.rlim_max, (unsigned long)need);
    rl.rlim_cur = need;
    TL_CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit: %s", strerror(errno));
    /* A failure before any fd of its own, the limit just set to what it will use: the
     * resumed process must leave every number below the limit to the program (a runtime fd
     * there once shifted every fd opened after it). */
    if (fail_points)
        zq_fail_now();

    struct pipe_state *p = calloc((size_t)n, sizeof *p);
    long nf = n / 2;
    int (*f)[2] = calloc((size_t)nf, sizeof *f);
    long *off = calloc((size_t)nf, sizeof *off);
    TL_CHECK(p && f && off, "calloc");
    uint64_t seed = 42;
    for (long i = 0; i < n; i++) {
        int fd[2];
        TL_CHECK(pipe(fd) == 0, "pipe %ld: %s", i, strerror(errno));
        p[i].r = fd[0];
        p[i].w = fd[1];
        p[i].len = DATA;
        for (int k = 0; k < DATA; k++)
            p[i].fifo[k] = (unsigned char)tl_below(&seed, 256);
        TL_CHECK(write(p[i].w, p[i].fifo, DATA) == DATA, "write");
    }
    char name[] = "fd_many_data";
    int tmp = open(name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    TL_CHECK(tmp >= 0, "open %s: %s", name, strerror(errno));
    unsigned char block[4096];
    for (size_t k = 0; k < sizeof block; k++)
        block[k] = (unsigned char)(k * 7 + 3);
    TL_CHECK(write(tmp, block, sizeof block) == (ssize_t)sizeof block, "write");
    close(tmp);
    for (long i = 0; i < nf; i++) {
        f[i][0] = open(name, O_RDONLY);
        TL_CHECK(f[i][0] >= 0, "open: %s", strerror(errno));
        f[i][1] = dup(f[i][0]);
        TL_CHECK(f[i][1] >= 0, "dup: %s", strerror(errno));
        off[i] = (long)tl_below(&seed, 1024);
        TL_CHECK(lseek(f[i][0], off[i], SEEK_SET) == off[i], "lseek");
    }
    /* The soft limit now lies below the highest fd. */
    int highest = f[nf - 1][1];
    rl.rlim_cur = (rlim_t)(highest - n / 4);
    TL_CHECK(setrlimit(RLIMIT_NOFILE, &rl) == 0, "setrlimit: %s", strerror(errno));
    printf("%ld pipes, %ld file pairs, highest fd %d, soft limit below it\n", n, nf, highest);

    uint64_t h = TL_HASH_INIT;
    unsigned long fail_every = fail_points ? rounds / fail_points : 0;
    for (unsigned long r = 0; r < rounds; r++) {
        for (int k = 0; k < 3; k++) {
            struct pipe_state *q = &p[tl_below(&seed, (uint64_t)n)];
            unsigned char b = (unsigned char)tl_below(&seed, 256), got;
            TL_CHECK(write(q->w, &b, 1) == 1, "pipe write: %s", strerror(errno));
            q->fifo[q->len++] = b;
            TL_CHECK(read(q->r, &got, 1) == 1, "pipe read: %s", strerror(errno));
            TL_CHECK(got == q->fifo[0], "a pipe lost or reordered its data (round %lu)", r);
            memmove(q->fifo, q->fifo + 1, (size_t)--q->len);
            h = tl_mix(h, got);
        }
        long i = (long)tl_below(&seed, (uint64_t)nf);
        int via = (int)tl_below(&seed, 2);
        unsigned char c;
        if (off[i] >= (long)sizeof block) {
            off[i] = 0;
            TL_CHECK(lseek(f[i][via], 0, SEEK_SET) == 0, "lseek");
        }
        TL_CHECK(read(f[i][via], &c, 1) == 1 && c == block[off[i]], "file read (round %lu)", r);
        off[i]++;
        TL_CHECK(lseek(f[i][!via], 0, SEEK_CUR) == off[i], "a dup no longer shares its offset");
        h = tl_mix(h, c);
        if (fail_every && r % fail_every == fail_every / 2)
            zq_fail_now();
        if ((r + 1) % (rounds / 8 ? rounds / 8 : 1) == 0)
            printf("round %lu h=%016llx\n", r + 1, (unsigned long long)h);
    }
    struct rlimit now;
    TL_CHECK(getrlimit(RLIMIT_NOFILE, &now) == 0 && now.rlim_cur == rl.rlim_cur,
             "the lowered soft limit did not come back");
    for (long i = 0; i < n; i++) {
        unsigned char buf[DATA * 4];
        TL_CHECK(fcntl(p[i].r, F_SETFL, O_NONBLOCK) == 0, "fcntl");
        ssize_t got = read(p[i].r, buf, sizeof buf);
        TL_CHECK(got == p[i].len && memcmp(buf, p[i].fifo, (size_t)got) == 0,
                 "pipe %ld holds %zd bytes, expected %d", i, got, p[i].len);
    }
    for (long i = 0; i < nf; i++)
        TL_CHECK(lseek(f[i][0], 0, SEEK_CUR) == off[i], "file pair %ld: offset", i);
    unlink(name);
    printf("checksum %016llx\n", (unsigned long long)h);
    return 0;
}
