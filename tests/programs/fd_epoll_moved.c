/*
 * fd_epoll_moved ROUNDS
 *
 * epoll entries whose fd number no longer holds the watched file (issue 12): the kernel keys
 * an entry by (file, fd number at EPOLL_CTL_ADD) and keeps it while the file is open under
 * any number. Three pipes are watched, then their read ends move: one to another number
 * with its old number closed, one to another number with its old number reused by another
 * file (/dev/null), and one whose old number now holds a fourth pipe, watched too: two
 * entries under one number, which the kernel tells apart only by their rank (the save once
 * took the second for the first; nginx makes such pairs whenever it closes a connection
 * while a save begins). Each round writes a byte into one pipe, and epoll_wait must report
 * it with the entry's data; the byte is read through the new number. A resume that dropped
 * or confused those entries would make epoll_wait time out or report the wrong data
 * (natively it never does).
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    unsigned long rounds = argc > 1 ? strtoul(argv[1], NULL, 10) : 20000;
    int a[2], b[2], c[2], d[2];
    TL_CHECK(pipe(a) == 0 && pipe(b) == 0 && pipe(c) == 0 && pipe(d) == 0, "pipes");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN, .data.u64 = 0xA11CE};
    TL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, a[0], &e) == 0, "add a");
    e.data.u64 = 0xB0B;
    TL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, b[0], &e) == 0, "add b");
    /* b's read end moves to a high number; its old number now holds /dev/null. */
    int b_now = fcntl(b[0], F_DUPFD, 200);
    int b_old = b[0];
    TL_CHECK(b_now >= 200 && close(b_old) == 0, "move b");
    int null = open("/dev/null", O_RDONLY);
    TL_CHECK(null == b_old, "/dev/null took %d, not %d", null, b_old);
    /* a's read end moves too; its old number is left closed. */
    int a_now = fcntl(a[0], F_DUPFD, 100);
    int a_old = a[0];
    TL_CHECK(a_now >= 100 && close(a_old) == 0, "move a");
    e.data.u64 = 0xC0C;
    TL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c[0], &e) == 0, "add c");
    /* c's read end moves; d's read end takes its old number and is watched there too. */
    int c_now = fcntl(c[0], F_DUPFD, 300);
    int c_old = c[0];
    TL_CHECK(c_now >= 300 && dup2(d[0], c_old) == c_old && close(d[0]) == 0, "move c");
    e.data.u64 = 0xD0D;
    TL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, c_old, &e) == 0, "add d under c's old number");
    printf("moved: a %d -> %d (closed), b %d -> %d (/dev/null there now), c %d -> %d (d there "
           "now, watched too)\n",
           a_old, a_now, b_old, b_now, c_old, c_now);
    int writers[4] = {a[1], b[1], c[1], d[1]};
    int readers[4] = {a_now, b_now, c_now, c_old};
    uint64_t datas[4] = {0xA11CE, 0xB0B, 0xC0C, 0xD0D};

    uint64_t seed = 42, h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        int which = (int)tl_below(&seed, 4);
        char ch = (char)('a' + r % 26);
        TL_CHECK(write(writers[which], &ch, 1) == 1, "write");
        struct epoll_event got[4];
        int n;
        do
            n = epoll_wait(ep, got, 4, 5000);
        while (n < 0 && errno == EINTR);
        TL_CHECK(n == 1, "round %lu: epoll_wait gave %d events (the entry is gone?)", r, n);
        TL_CHECK(got[0].data.u64 == datas[which], "round %lu: data %llx, not %llx", r,
                 (unsigned long long)got[0].data.u64, (unsigned long long)datas[which]);
        char back;
        TL_CHECK(read(readers[which], &back, 1) == 1 && back == ch, "read");
        h = tl_hash(h, &ch, 1);
        if (r % 2000 == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    /* /dev/null is still where it was put. */
    char x;
    TL_CHECK(read(null, &x, 1) == 0, "/dev/null");
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
