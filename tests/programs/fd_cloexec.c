/*
 * fd_cloexec ROUNDS FAIL_POINTS
 *
 * Close-on-exec is a property of each fd, not of its open file description: an fd opened
 * with O_CLOEXEC, a dup2 of it onto 7 (not close-on-exec), another O_CLOEXEC open whose flag
 * was cleared with F_SETFD, a plain open given FD_CLOEXEC with F_SETFD, and a pseudo-terminal
 * slave opened with TIOCGPTPEER and O_CLOEXEC dup2'd onto 20 (the kernel then keeps O_CLOEXEC
 * in the description's flags, which fdinfo shows for every fd of it). Every round checks
 * F_GETFD of each; every 50th round execs this program, which must find exactly the fds that
 * are not close-on-exec. FAIL_POINTS rounds call zhuque_fail_now(). Before, the save took the
 * flag from fdinfo, which shows O_CLOEXEC for every fd of a description opened with it: after
 * a resume the dup2'd and F_SETFD-cleared fds were closed by the next exec.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <sys/ioctl.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static int is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

static int cloexec(int fd)
{
    int f = fcntl(fd, F_GETFD);
    CHECK(f >= 0, "F_GETFD %d: %s", fd, strerror(errno));
    return (f & FD_CLOEXEC) != 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && !strcmp(argv[1], "exec")) {
        CHECK(is_open(20), "fd 20 (a pseudo-terminal slave) was closed by the exec");
        /* After the exec: a, d gone; 7 and c kept. */
        int a = atoi(argv[2]), seven = atoi(argv[3]), c = atoi(argv[4]), d = atoi(argv[5]);
        CHECK(!is_open(a) && !is_open(d), "close-on-exec fds %d %d survived the exec", a, d);
        CHECK(is_open(seven) && is_open(c), "fds %d %d were closed by the exec", seven, c);
        return 0;
    }
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int a = open("f", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    CHECK(a >= 0 && dup2(a, 7) == 7, "open/dup2: %s", strerror(errno));
    int c = open("f", O_RDONLY | O_CLOEXEC);
    CHECK(c >= 0 && fcntl(c, F_SETFD, 0) == 0, "c: %s", strerror(errno));
    int d = open("f", O_RDONLY);
    CHECK(d >= 0 && fcntl(d, F_SETFD, FD_CLOEXEC) == 0, "d: %s", strerror(errno));
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(m >= 0 && unlockpt(m) == 0, "posix_openpt: %s", strerror(errno));
    int peer = ioctl(m, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(peer >= 0 && dup2(peer, 20) == 20 && close(peer) == 0, "peer: %s", strerror(errno));
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        CHECK(cloexec(a) && !cloexec(7) && !cloexec(c) && cloexec(d) && !cloexec(20),
              "round %lu: close-on-exec a %d 7 %d c %d d %d 20 %d", r, cloexec(a), cloexec(7),
              cloexec(c), cloexec(d), cloexec(20));
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % 50 == 0) {
            char sa[16], sc[16], sd[16];
            snprintf(sa, sizeof sa, "%d", a);
            snprintf(sc, sizeof sc, "%d", c);
            snprintf(sd, sizeof sd, "%d", d);
            pid_t pid = fork();
            CHECK(pid >= 0, "fork");
            if (pid == 0) {
                execl("/proc/self/exe", "fd_cloexec", "exec", sa, "7", sc, sd, (char *)NULL);
                _exit(99);
            }
            int st;
            CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "round %lu: the exec'd program found other fds (%#x)", r, st);
        }
        if (r % 500 == 0)
            printf("round %lu: close-on-exec as set\n", r);
    }
    printf("done\n");
    return 0;
}
