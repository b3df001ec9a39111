/*
 * fd_unix_unlinked ROUNDS
 *
 * Unix sockets bound to a path whose socket file is gone (issue 12: "a bound Unix socket
 * whose path was unlinked cannot come back"):
 *   gone:   a listener bound to gone.sock, whose file the program unlinked: it keeps its
 *           address, and nobody can reach it by path;
 *   dgram:  a datagram socket bound to dgram.sock, unlinked the same way;
 *   old:    a listener bound to taken.sock, unlinked, after which another listener of the
 *           program (new) was bound to taken.sock: a connection to taken.sock reaches new.
 *   indir:  a listener bound to gonedir/in.sock, whose file and directory were removed
 *           (python's forkserver listens in a temporary directory, which its parent may
 *           remove first), with a client of its own pending: the resume used to fail to bind
 *           it (ENOENT), and the listener came back closed.
 * A client connected to gone before the unlink, with "hello" sent, is never accepted until
 * the end: each round gone must show a pending connection (poll), and at the end accepting
 * it gives the client's bytes (a resume used to reconnect it by path, which is gone).
 * Each round checks every address (getsockname), that gone.sock and dgram.sock do not
 * exist, and that a connection to taken.sock is accepted by new (never by old, whose
 * accept stays empty); the resume used to bind them all again (making gone.sock and
 * dgram.sock exist, and unlinking new's taken.sock for old).
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int bound_to(const char *path, int type)
{
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, path);
    TL_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind %s", path);
    if (type == SOCK_STREAM)
        TL_CHECK(listen(fd, 8) == 0, "listen");
    return fd;
}

/* A client connected to the listener at `path` that sent `bytes`, never accepted. */
static int pending_client(const char *path, const char *bytes)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strcpy(a.sun_path, path);
    TL_CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                 write(fd, bytes, strlen(bytes)) == (ssize_t)strlen(bytes),
             "connect to %s: %s", path, strerror(errno));
    return fd;
}

static void check_name(int fd, const char *path, unsigned long r)
{
    struct sockaddr_un a;
    socklen_t len = sizeof a;
    TL_CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0, "getsockname");
    TL_CHECK(a.sun_family == AF_UNIX && !strcmp(a.sun_path, path),
             "round %lu: bound to '%s', not %s", r, a.sun_path, path);
}

static void check_absent(const char *path, unsigned long r)
{
    struct stat st;
    TL_CHECK(lstat(path, &st) == -1 && errno == ENOENT, "round %lu: %s exists", r, path);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 20000);
    unlink("gone.sock");
    unlink("dgram.sock");
    unlink("taken.sock");
    unlink("gonedir/in.sock");
    rmdir("gonedir");
    TL_CHECK(mkdir("gonedir", 0700) == 0, "mkdir gonedir: %s", strerror(errno));
    int indir = bound_to("gonedir/in.sock", SOCK_STREAM);
    pending_client("gonedir/in.sock", "there");
    TL_CHECK(unlink("gonedir/in.sock") == 0 && rmdir("gonedir") == 0, "rmdir gonedir");
    int gone = bound_to("gone.sock", SOCK_STREAM);
    int dgram = bound_to("dgram.sock", SOCK_DGRAM);
    int old = bound_to("taken.sock", SOCK_STREAM);
    int pend = pending_client("gone.sock", "hello");
    TL_CHECK(unlink("gone.sock") == 0 && unlink("dgram.sock") == 0 && unlink("taken.sock") == 0,
             "unlink");
    int new = bound_to("taken.sock", SOCK_STREAM);

    uint64_t seed = 3, h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        check_name(gone, "gone.sock", r);
        check_name(dgram, "dgram.sock", r);
        check_name(old, "taken.sock", r);
        check_name(new, "taken.sock", r);
        check_absent("gone.sock", r);
        check_absent("dgram.sock", r);
        check_name(indir, "gonedir/in.sock", r);
        check_absent("gonedir", r);
        struct pollfd pf[2] = {{.fd = gone, .events = POLLIN}, {.fd = indir, .events = POLLIN}};
        TL_CHECK(poll(pf, 2, 0) == 2, "round %lu: no connection pending on gone.sock or in.sock", r);
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = {.sun_family = AF_UNIX, .sun_path = "taken.sock"};
        TL_CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0, "round %lu: connect: %s", r,
                 strerror(errno));
        TL_CHECK(accept(old, NULL, NULL) == -1 && errno == EAGAIN,
                 "round %lu: the unlinked listener got the connection", r);
        int s = accept4(new, NULL, NULL, SOCK_CLOEXEC);
        TL_CHECK(s >= 0, "round %lu: accept on taken.sock: %s", r, strerror(errno));
        close(s);
        close(c);
        for (int i = 0; i < 2000; i++)
            h = tl_mix(h, tl_next(&seed));
        if (r % (rounds / 8 ? rounds / 8 : 1) == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    int s = accept4(gone, NULL, NULL, SOCK_CLOEXEC);
    TL_CHECK(s >= 0, "accept on gone.sock: %s", strerror(errno));
    char got[8] = {0};
    TL_CHECK(read(s, got, sizeof got) == 5 && !memcmp(got, "hello", 5),
             "the pending connection's bytes: '%s'", got);
    TL_CHECK(write(pend, "!", 1) == 1 && read(s, got, 1) == 1 && got[0] == '!',
             "the pending client is not connected to its listener");
    s = accept4(indir, NULL, NULL, SOCK_CLOEXEC);
    TL_CHECK(s >= 0 && read(s, got, sizeof got) == 5 && !memcmp(got, "there", 5),
             "the pending connection to gonedir/in.sock: %s", strerror(errno));
    unlink("taken.sock");
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
