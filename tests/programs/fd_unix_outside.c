/*
 * fd_unix_outside PATH ROUNDS
 *
 * A Unix stream connection to a server outside the program (issue 12): every round the
 * program connects to the server at PATH (a thread of the test, outside zhuque), which writes
 * PAYLOAD bytes and closes its end at once. The program waits until the server has closed
 * (POLLRDHUP: everything is queued), then reads it slowly, a few KiB at a time, so that
 * failures land with unread data queued, and checks every byte, the end of file after the
 * last one, and that a write then fails with EPIPE. A failure before the server's bytes are
 * all queued may leave a connection with less (the outside peer is gone for the resumed
 * program, as for any program that loses a connection): such a round is counted and done
 * again on a new connection, and the output does not show it.
 *
 * Checked after a failure: the unread data comes back, then end of file, then EPIPE, as the
 * kernel gives them for a connection whose peer has closed (docs/os-state.md, "Unix stream
 * connection to the outside").
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define PAYLOAD 65536

static unsigned char expected(size_t i)
{
    return (unsigned char)(i * 7 + 3);
}

/* One round on a new connection: 1 when the whole payload came, then end of file and EPIPE;
 * 0 when the connection ended short (a failure cut it off before the server's bytes were all
 * queued). */
static int round_trip(const char *path, unsigned long r)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0, "socket: %s", strerror(errno));
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    while (connect(fd, (struct sockaddr *)&a, sizeof a) < 0)
        CHECK(errno == EINTR, "round %lu: connect: %s", r, strerror(errno));
    for (;;) {
        struct pollfd p = {fd, POLLRDHUP, 0};
        int k = poll(&p, 1, 10000);
        if (k < 0 && errno == EINTR)
            continue;
        CHECK(k == 1, "round %lu: the server did not close", r);
        break;
    }
    size_t got = 0;
    unsigned char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK(n >= 0, "round %lu: read: %s", r, strerror(errno));
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            CHECK(buf[i] == expected(got + (size_t)i), "round %lu: byte %zu", r,
                  got + (size_t)i);
        got += (size_t)n;
        CHECK(got <= PAYLOAD, "round %lu: %zu bytes, more than sent", r, got);
        usleep(100);
    }
    if (got < PAYLOAD) {
        close(fd);
        return 0;
    }
    ssize_t w;
    while ((w = write(fd, "x", 1)) < 0 && errno == EINTR)
        ;
    CHECK(w < 0 && errno == EPIPE, "round %lu: a write after the end: %zd (%s)", r, w,
          strerror(errno));
    close(fd);
    return 1;
}

int main(int argc, char **argv)
{
    CHECK(argc > 1, "usage: fd_unix_outside PATH [ROUNDS]");
    unsigned long rounds = tl_arg(argc, argv, 2, 200);
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    unsigned long cut = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        while (!round_trip(argv[1], r))
            cut++;
        if (r % 50 == 0)
            printf("round %lu: %d bytes, end of file, then EPIPE\n", r, PAYLOAD);
    }
    fprintf(stderr, "fd_unix_outside: %lu connection(s) cut short by a failure\n", cut);
    printf("done\n");
    return 0;
}
