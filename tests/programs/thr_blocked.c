/*
 * thr_blocked ROUNDS [FAIL_POINTS]
 *
 * Threads blocked in system calls when the failure hits. In every round five threads block:
 * one in nanosleep (restarted with the remaining time after EINTR), one in read on a pipe,
 * one in pthread_cond_timedwait (CLOCK_MONOTONIC condvar, a deadline far away), one in poll
 * on a second pipe, and one in epoll_pwait on a third pipe with every signal blocked during
 * the wait. The main thread waits until they are all blocked, then (in FAIL_POINTS (2) of the
 * rounds) calls zhuque_fail_now(), then wakes each in turn: it writes to the pipes and
 * signals the condition. Each thread checks that getpid() and its gettid()
 * did not change, and what it received. A system call interrupted by a failure restarts or
 * returns EINTR, as after any signal; the threads handle EINTR as POSIX allows.
 */
#include "thrlib.h"
#include "zhuque.h"

#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <time.h>

static int pipe_a[2], pipe_b[2], pipe_c[2], ep;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t c;
static int ready, cond_go;
static volatile int blocked;
static unsigned long rounds;
static unsigned long eintr_seen; /* not printed: depends on timing */

static void *sleeper(void *arg)
{
    struct tl_ids ids;
    tl_record_ids(&ids);
    __atomic_add_fetch(&blocked, 1, __ATOMIC_ACQ_REL);
    struct timespec req = {0, 30 * 1000 * 1000}, rem;
    while (nanosleep(&req, &rem) == -1) {
        TL_CHECK(errno == EINTR, "nanosleep: %s", strerror(errno));
        __atomic_add_fetch(&eintr_seen, 1, __ATOMIC_RELAXED);
        req = rem;
    }
    tl_check_ids(&ids, "sleeper");
    return arg;
}

static void *reader(void *arg)
{
    struct tl_ids ids;
    tl_record_ids(&ids);
    char buf[64];
    __atomic_add_fetch(&blocked, 1, __ATOMIC_ACQ_REL);
    ssize_t n;
    do
        n = read(pipe_a[0], buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    TL_CHECK(n > 0, "read: %zd %s", n, strerror(errno));
    tl_check_ids(&ids, "reader");
    return (void *)(uintptr_t)tl_hash(TL_HASH_INIT + (uintptr_t)arg, buf, (size_t)n);
}

static void *cond_waiter(void *arg)
{
    struct tl_ids ids;
    tl_record_ids(&ids);
    TL_OK(pthread_mutex_lock(&m));
    __atomic_add_fetch(&blocked, 1, __ATOMIC_ACQ_REL);
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += 3600;
    while (!cond_go) {
        int rc = pthread_cond_timedwait(&c, &m, &deadline);
        TL_CHECK(rc == 0, "pthread_cond_timedwait: %s", strerror(rc));
    }
    cond_go = 0;
    TL_OK(pthread_mutex_unlock(&m));
    tl_check_ids(&ids, "cond_waiter");
    return arg;
}

static void *poller(void *arg)
{
    (void)arg;
    struct tl_ids ids;
    tl_record_ids(&ids);
    struct pollfd p = {pipe_b[0], POLLIN, 0};
    __atomic_add_fetch(&blocked, 1, __ATOMIC_ACQ_REL);
    int rc;
    while ((rc = poll(&p, 1, -1)) < 0) {
        TL_CHECK(errno == EINTR, "poll: %s", strerror(errno));
        __atomic_add_fetch(&eintr_seen, 1, __ATOMIC_RELAXED);
    }
    TL_CHECK(rc == 1 && (p.revents & POLLIN), "poll result");
    char b;
    TL_CHECK(read(pipe_b[0], &b, 1) == 1, "read pipe b");
    tl_check_ids(&ids, "poller");
    return (void *)(uintptr_t)(unsigned char)b;
}

static void *epoller(void *arg)
{
    (void)arg;
    struct tl_ids ids;
    tl_record_ids(&ids);
    sigset_t all;
    sigfillset(&all);
    struct epoll_event ev;
    __atomic_add_fetch(&blocked, 1, __ATOMIC_ACQ_REL);
    int rc;
    while ((rc = epoll_pwait(ep, &ev, 1, -1, &all)) < 0) {
        TL_CHECK(errno == EINTR, "epoll_pwait: %s", strerror(errno));
        __atomic_add_fetch(&eintr_seen, 1, __ATOMIC_RELAXED);
    }
    TL_CHECK(rc == 1 && ev.data.fd == pipe_c[0], "epoll result");
    char b;
    TL_CHECK(read(pipe_c[0], &b, 1) == 1, "read pipe c");
    tl_check_ids(&ids, "epoller");
    return (void *)(uintptr_t)(unsigned char)b;
}

static void put(int fd, const void *p, size_t n)
{
    TL_CHECK(write(fd, p, n) == (ssize_t)n, "write: %s", strerror(errno));
}

int main(int argc, char **argv)
{
    rounds = tl_arg(argc, argv, 1, 40);
    unsigned long fail_points = tl_arg(argc, argv, 2, 2);
    TL_CHECK(pipe(pipe_a) == 0 && pipe(pipe_b) == 0 && pipe(pipe_c) == 0, "pipe");
    ep = epoll_create1(EPOLL_CLOEXEC);
    TL_CHECK(ep >= 0, "epoll_create1");
    struct epoll_event want = {.events = EPOLLIN, .data.fd = pipe_c[0]};
    TL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, pipe_c[0], &want) == 0, "epoll_ctl");
    pthread_condattr_t ca;
    TL_OK(pthread_condattr_init(&ca));
    TL_OK(pthread_condattr_setclock(&ca, CLOCK_MONOTONIC));
    TL_OK(pthread_cond_init(&c, &ca));
    struct tl_ids ids;
    tl_record_ids(&ids);
    (void)ready;

    printf("thr_blocked rounds=%lu fail_points=%lu\n", rounds, fail_points);
    unsigned long every = fail_points ? rounds / fail_points : 0;
    uint64_t sum = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        blocked = 0;
        pthread_t t[5];
        TL_OK(pthread_create(&t[0], NULL, sleeper, (void *)(uintptr_t)r));
        TL_OK(pthread_create(&t[1], NULL, reader, (void *)(uintptr_t)r));
        TL_OK(pthread_create(&t[2], NULL, cond_waiter, (void *)(uintptr_t)r));
        TL_OK(pthread_create(&t[3], NULL, poller, (void *)(uintptr_t)r));
        TL_OK(pthread_create(&t[4], NULL, epoller, NULL));
        tl_wait_flag(&blocked, 5);
        usleep(10000); /* into their system calls */
        if (every && r % every == 0 && r / every <= fail_points) {
            printf("round %lu: failing with five threads blocked\n", r);
            zq_fail_now();
            tl_check_ids(&ids, "main");
        }
        char msg[32];
        int len = snprintf(msg, sizeof msg, "message %lu", r);
        put(pipe_a[1], msg, (size_t)len);
        TL_OK(pthread_mutex_lock(&m));
        cond_go = 1;
        TL_OK(pthread_cond_signal(&c));
        TL_OK(pthread_mutex_unlock(&m));
        char b = (char)('a' + r % 26);
        put(pipe_b[1], &b, 1);
        char e = (char)('A' + r % 26);
        put(pipe_c[1], &e, 1);
        void *ret[5];
        for (int i = 0; i < 5; i++)
            TL_OK(pthread_join(t[i], &ret[i]));
        TL_CHECK((uintptr_t)ret[0] == r && (uintptr_t)ret[2] == r, "return values");
        TL_CHECK((uintptr_t)ret[3] == (unsigned char)b, "poller byte");
        TL_CHECK((uintptr_t)ret[4] == (unsigned char)e, "epoller byte");
        sum = tl_mix(sum, (uintptr_t)ret[1]);
        printf("round %lu: slept, read \"%s\" (%016llx), woken, polled '%c', epolled '%c'\n",
               r, msg, (unsigned long long)(uintptr_t)ret[1], b, e);
    }
    printf("ids unchanged: yes\n");
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
