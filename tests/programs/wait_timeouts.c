/*
 * wait_timeouts ROUNDS
 *
 * Waits that time out: each round waits 2 ms on an empty pipe with poll, epoll_wait and
 * select in turn, and with ppoll, epoll_pwait, epoll_pwait2 and pselect without a signal mask,
 * and 0 ms with poll, and requires each to time out (return 0); then 2 ms
 * on a System V semaphore (semtimedop: EAGAIN) and on a POSIX one (sem_timedwait:
 * ETIMEDOUT). Nothing
 * signals the program, so natively none ever returns EINTR; a failure landing inside a wait
 * made it return EINTR after the resume. Prints its progress now and then.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <poll.h>
#include <sys/epoll.h>
#include <semaphore.h>
#include <sys/ipc.h>
#include <sys/select.h>
#include <sys/sem.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 300);
    int p[2];
    TL_CHECK(pipe(p) == 0, "pipe");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {.events = EPOLLIN};
    TL_CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, p[0], &e) == 0, "epoll");
    int semid = semget(IPC_PRIVATE, 1, 0600);
    TL_CHECK(semid >= 0, "semget: %s", strerror(errno));
    sem_t sem;
    TL_CHECK(sem_init(&sem, 0, 0) == 0, "sem_init");
    uint64_t h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        int n = poll(&pf, 1, 2);
        TL_CHECK(n == 0, "round %lu: poll gave %d (%s)", r, n, strerror(errno));
        n = poll(&pf, 1, 0);
        TL_CHECK(n == 0, "round %lu: poll(0) gave %d (%s)", r, n, strerror(errno));
        struct epoll_event got;
        n = epoll_wait(ep, &got, 1, 2);
        TL_CHECK(n == 0, "round %lu: epoll_wait gave %d (%s)", r, n, strerror(errno));
        fd_set set;
        FD_ZERO(&set);
        FD_SET(p[0], &set);
        struct timeval tv = {0, 2000};
        n = select(p[0] + 1, &set, NULL, NULL, &tv);
        TL_CHECK(n == 0, "round %lu: select gave %d (%s)", r, n, strerror(errno));
        struct timespec ts = {0, 2000000};
        n = ppoll(&pf, 1, &ts, NULL);
        TL_CHECK(n == 0, "round %lu: ppoll gave %d (%s)", r, n, strerror(errno));
        n = epoll_pwait(ep, &got, 1, 2, NULL);
        TL_CHECK(n == 0, "round %lu: epoll_pwait gave %d (%s)", r, n, strerror(errno));
        n = epoll_pwait2(ep, &got, 1, &ts, NULL);
        TL_CHECK(n == 0, "round %lu: epoll_pwait2 gave %d (%s)", r, n, strerror(errno));
        FD_ZERO(&set);
        FD_SET(p[0], &set);
        n = pselect(p[0] + 1, &set, NULL, NULL, &ts, NULL);
        TL_CHECK(n == 0, "round %lu: pselect gave %d (%s)", r, n, strerror(errno));
        struct sembuf down = {.sem_num = 0, .sem_op = -1, .sem_flg = 0};
        struct timespec two_ms = {0, 2000000};
        n = semtimedop(semid, &down, 1, &two_ms);
        TL_CHECK(n < 0 && errno == EAGAIN, "round %lu: semtimedop gave %d (%s)", r, n,
                 strerror(errno));
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 2000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        n = sem_timedwait(&sem, &until);
        TL_CHECK(n < 0 && errno == ETIMEDOUT, "round %lu: sem_timedwait gave %d (%s)", r, n,
                 strerror(errno));
        h = tl_mix(h, r);
        if (r % (rounds / 8 ? rounds / 8 : 1) == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    semctl(semid, 0, IPC_RMID);
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
