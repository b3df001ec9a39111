/*
 * fd_async ROUNDS FAIL_POINTS
 *
 * I/O signals across failures (issue 12: O_ASYNC, F_SETOWN and F_SETSIG were lost, and a
 * program waiting for SIGIO waited for ever). A pipe's read end signals the process with
 * SIGIO (F_SETOWN); a socketpair end signals the main thread with SIGRTMIN+3
 * (F_SETOWN_EX F_OWNER_TID, F_SETSIG), whose handler checks si_fd and si_code; a third
 * description only has a signal chosen, without O_ASYNC or an owner. Every round checks what
 * the kernel reports of each (F_GETFL, F_GETOWN, F_GETOWN_EX, F_GETSIG), then makes each
 * readable and requires exactly one signal from it. FAIL_POINTS rounds call
 * zhuque_fail_now().
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static volatile sig_atomic_t sigio_count, rt_count, rt_bad;
static int sock_fd;

static void on_sigio(int sig)
{
    (void)sig;
    sigio_count++;
}

static void on_rt(int sig, siginfo_t *si, void *ctx)
{
    (void)sig;
    (void)ctx;
    if (si->si_fd != sock_fd || si->si_code != POLL_IN)
        rt_bad++;
    rt_count++;
}

static void check_settings(unsigned long r, int fd, int async, int owner_type, int owner,
                           int sig)
{
    int fl = fcntl(fd, F_GETFL);
    CHECK(fl >= 0 && !!(fl & O_ASYNC) == async, "round %lu: fd %d O_ASYNC %d", r, fd,
          !!(fl & O_ASYNC));
    struct f_owner_ex o;
    CHECK(fcntl(fd, F_GETOWN_EX, &o) == 0, "round %lu: F_GETOWN_EX: %s", r, strerror(errno));
    CHECK((int)o.type == owner_type && o.pid == owner, "round %lu: fd %d owner %d/%d, not %d/%d", r,
          fd, (int)o.type, o.pid, owner_type, owner);
    CHECK(fcntl(fd, F_GETSIG) == sig, "round %lu: fd %d F_GETSIG %d, not %d", r, fd,
          fcntl(fd, F_GETSIG), sig);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 3000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {.sa_handler = on_sigio};
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGIO, &sa, NULL) == 0, "sigaction SIGIO");
    struct sigaction rt = {.sa_sigaction = on_rt, .sa_flags = SA_SIGINFO};
    sigemptyset(&rt.sa_mask);
    CHECK(sigaction(SIGRTMIN + 3, &rt, NULL) == 0, "sigaction RT");

    int p[2], sv[2], quiet[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe");
    CHECK(fcntl(p[0], F_SETOWN, getpid()) == 0, "F_SETOWN");
    CHECK(fcntl(p[0], F_SETFL, O_ASYNC | O_NONBLOCK) == 0, "F_SETFL pipe");

    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    sock_fd = sv[0];
    struct f_owner_ex me = {.type = F_OWNER_TID, .pid = gettid()};
    CHECK(fcntl(sv[0], F_SETOWN_EX, &me) == 0, "F_SETOWN_EX");
    CHECK(fcntl(sv[0], F_SETSIG, SIGRTMIN + 3) == 0, "F_SETSIG");
    CHECK(fcntl(sv[0], F_SETFL, O_ASYNC | O_NONBLOCK) == 0, "F_SETFL socket");

    CHECK(pipe2(quiet, O_CLOEXEC) == 0, "pipe");
    CHECK(fcntl(quiet[0], F_SETSIG, SIGUSR2) == 0, "F_SETSIG quiet");

    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        check_settings(r, p[0], 1, F_OWNER_PID, getpid(), 0);
        check_settings(r, sv[0], 1, F_OWNER_TID, gettid(), SIGRTMIN + 3);
        check_settings(r, quiet[0], 0, F_OWNER_TID, 0, SIGUSR2);
        char c = (char)r, got;
        /* A failure between a write and its signal would see the signal taken by the save's
         * stop: count the signal each readable fd brings after the resume, measured again
         * then. */
        unsigned long f;
        int ok;
        do {
            f = zq_failures();
            sig_atomic_t before = sigio_count;
            CHECK(write(p[1], &c, 1) == 1, "write pipe");
            ok = sigio_count == before + 1;
            CHECK(read(p[0], &got, 1) == 1 && got == c, "round %lu: pipe read", r);
        } while (!ok && zq_failures() != f);
        CHECK(ok, "round %lu: no SIGIO from the pipe", r);
        do {
            f = zq_failures();
            sig_atomic_t before = rt_count;
            CHECK(write(sv[1], &c, 1) == 1, "write socket");
            ok = rt_count == before + 1;
            CHECK(read(sv[0], &got, 1) == 1 && got == c, "round %lu: socket read", r);
        } while (!ok && zq_failures() != f);
        CHECK(ok && !rt_bad, "round %lu: no signal, or a wrong one, from the socket", r);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % 500 == 0)
            printf("round %lu: every I/O signal came\n", r);
    }
    printf("done\n");
    return 0;
}
