/*
 * fd_epoll_moved ROUNDS
 *
 * epoll entries whose fd number no longer holds the watched file (issue 12): the kernel keys
 * an entry by (file, fd number at EPOLL_CTL_ADD) and keeps it while the file is open under
 * any number. Two pipes are watched, then their read ends move: one to another number with
 * its old number closed, one to another number with its old number reused by another file
 * (/dev/null). Each round writes a byte into one pipe, and epoll_wait must report it with
 * the entry's data; the byte is read through the new number. A resume that dropped those
 * entries would make epoll_wait time out (natively it never does).
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
    int a[2], b[2];
    TL_CHECK(pipe(a) == 0 && pipe(b) == 0, "pipes");
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
    printf("moved: a %d -> %d (closed), b %d -> %d (/dev/null there now)\n", a_old, a_now, b_old,
           b_now);

    uint64_t seed = 42, h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        int which = (int)tl_below(&seed, 2);
        char c = (char)('a' + r % 26);
        TL_CHECK(write(which ? b[1] : a[1], &c, 1) == 1, "write");
        struct epoll_event got[2];
        int n;
        do
            n = epoll_wait(ep, got, 2, 5000);
        while (n < 0 && errno == EINTR);
        TL_CHECK(n == 1, "round %lu: epoll_wait gave %d events (the entry is gone?)", r, n);
        TL_CHECK(got[0].data.u64 == (which ? 0xB0Bu : 0xA11CEu), "round %lu: data %llx", r,
                 (unsigned long long)got[0].data.u64);
        char back;
        TL_CHECK(read(which ? b_now : a_now, &back, 1) == 1 && back == c, "read");
        h = tl_hash(h, &c, 1);
        if (r % 2000 == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    /* /dev/null is still where it was put. */
    char x;
    TL_CHECK(read(null, &x, 1) == 0, "/dev/null");
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
