/*
 * fd_pidfd ROUNDS
 *
 * pidfds (issue 12: they came back as placeholders): a blocking and a non-blocking pidfd of a
 * child waiting on a pipe, one of the process itself, and the child's pidfd in an epoll set,
 * as Python's asyncio keeps them. Every round checks the kernel's view (fdinfo Pid, poll:
 * not readable while the child lives, pidfd_send_signal with signal 0, the flags); at the end
 * the child is let go and the pidfd reports its exit: readable, in epoll_wait, and waitid
 * (P_PIDFD) returns its status.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int pidfd_open(pid_t pid, unsigned flags)
{
    return (int)syscall(SYS_pidfd_open, pid, flags);
}

static long fdinfo_pid(int fd)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "r");
    TL_CHECK(f != NULL, "open %s", path);
    long pid = 0;
    while (fgets(buf, sizeof buf, f))
        if (strncmp(buf, "Pid:", 4) == 0)
            pid = strtol(buf + 4, NULL, 10);
    fclose(f);
    return pid;
}

static short readiness(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int n;
    /* A failure that lands inside poll makes it return EINTR after the resume (README). */
    while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
        ;
    TL_CHECK(n >= 0, "poll");
    return p.revents;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 3000);
    int go[2];
    TL_CHECK(pipe(go) == 0, "pipe");
    pid_t child = fork();
    TL_CHECK(child >= 0, "fork");
    if (child == 0) {
        char c;
        close(go[1]);
        while (read(go[0], &c, 1) < 0 && errno == EINTR)
            ;
        _exit(7);
    }
    close(go[0]);
    int pfd = pidfd_open(child, 0);
    int nonblock = pidfd_open(child, O_NONBLOCK); /* PIDFD_NONBLOCK */
    int self = pidfd_open(getpid(), 0);
    TL_CHECK(pfd >= 0 && nonblock >= 0 && self >= 0, "pidfd_open: %s", strerror(errno));
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0x7e57};
    TL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, pfd, &ev) == 0, "epoll_ctl");

    uint64_t h = TL_HASH_INIT, x = 1;
    for (unsigned long r = 1; r <= rounds; r++) {
        TL_CHECK(fdinfo_pid(pfd) == child, "round %lu: pidfd refers to %ld, not %d", r,
                 fdinfo_pid(pfd), child);
        TL_CHECK(fdinfo_pid(nonblock) == child, "round %lu: non-blocking pidfd", r);
        TL_CHECK(fdinfo_pid(self) == getpid(), "round %lu: own pidfd", r);
        TL_CHECK(readiness(pfd) == 0, "round %lu: the child looks ended", r);
        TL_CHECK(syscall(SYS_pidfd_send_signal, pfd, 0, NULL, 0) == 0,
                 "round %lu: pidfd_send_signal: %s", r, strerror(errno));
        TL_CHECK(fcntl(nonblock, F_GETFL) & O_NONBLOCK, "round %lu: lost PIDFD_NONBLOCK", r);
        TL_CHECK(!(fcntl(pfd, F_GETFL) & O_NONBLOCK), "round %lu: gained O_NONBLOCK", r);
        struct epoll_event got;
        int ready;
        while ((ready = epoll_wait(ep, &got, 1, 0)) < 0 && errno == EINTR)
            ;
        TL_CHECK(ready == 0, "round %lu: epoll reports the child", r);
        for (int i = 0; i < 100000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        h = tl_mix(h, x);
        if (r % 300 == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    TL_CHECK(write(go[1], "x", 1) == 1, "let the child go");
    struct pollfd p = {.fd = pfd, .events = POLLIN};
    int n;
    while ((n = poll(&p, 1, 10000)) < 0 && errno == EINTR)
        ;
    TL_CHECK(n == 1 && (p.revents & POLLIN), "the child's exit not seen");
    struct epoll_event got;
    while ((n = epoll_wait(ep, &got, 1, 10000)) < 0 && errno == EINTR)
        ;
    TL_CHECK(n == 1 && got.data.u64 == 0x7e57, "epoll_wait");
    siginfo_t si = {0};
    while ((n = waitid(P_PIDFD, (id_t)pfd, &si, WEXITED)) < 0 && errno == EINTR)
        ;
    TL_CHECK(n == 0, "waitid: %s", strerror(errno));
    printf("child exited with %d\n", si.si_status);
    TL_CHECK(waitid(P_PIDFD, (id_t)nonblock, &si, WEXITED | WNOHANG) < 0 && errno == ECHILD,
             "reaped twice");
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
