/*
 * thr_sigmask ROUNDS [WORK] [FAIL_POINTS]
 *
 * Threads that block signals. Every round:
 *  - a worker blocks every signal (pthread_sigmask with a full set) and computes;
 *  - a thread blocks every signal and waits in sigwait() for SIGUSR1;
 *  - a thread blocks SIGUSR2 and waits for it in sigsuspend() with a mask of everything
 *    else blocked;
 *  - a thread polls with sigtimedwait() on a full set (10 ms timeouts) until told to stop.
 * The runtime's stop signal is among "every signal": it must still stop these threads at a
 * failure (FAIL_POINTS (2) rounds fail while they all wait; random failures land anywhere).
 * The masks the program reads back must be the ones it set: after blocking everything,
 * SIGRTMAX is reported blocked; after restoring, not.
 */
#include "thrlib.h"
#include "zhuque.h"

#include <signal.h>
#include <time.h>

static volatile int ready, stop_polling;
static volatile sig_atomic_t usr2_seen;
static unsigned long work;

static void on_usr2(int sig)
{
    (void)sig;
    usr2_seen = 1;
}

static void block_all(sigset_t *old)
{
    sigset_t all, now;
    sigfillset(&all);
    TL_OK(pthread_sigmask(SIG_BLOCK, &all, old));
    TL_OK(pthread_sigmask(SIG_SETMASK, NULL, &now));
    TL_CHECK(sigismember(&now, SIGRTMAX) == 1 && sigismember(&now, SIGUSR1) == 1,
             "a full mask does not read back full");
}

static void *masked_worker(void *arg)
{
    sigset_t old;
    block_all(&old);
    TL_CHECK(sigismember(&old, SIGRTMAX) == 0, "SIGRTMAX blocked from the start");
    __atomic_add_fetch(&ready, 1, __ATOMIC_ACQ_REL);
    uint64_t seed = (uintptr_t)arg, h = TL_HASH_INIT;
    for (unsigned long k = 0; k < work; k++)
        h = tl_mix(h, tl_next(&seed));
    sigset_t back;
    TL_OK(pthread_sigmask(SIG_SETMASK, &old, &back));
    TL_CHECK(sigismember(&back, SIGRTMAX) == 1, "the full mask lost SIGRTMAX");
    TL_OK(pthread_sigmask(SIG_SETMASK, NULL, &back));
    TL_CHECK(sigismember(&back, SIGRTMAX) == 0, "SIGRTMAX still blocked after restoring");
    return (void *)(uintptr_t)h;
}

static void *sigwaiter(void *arg)
{
    (void)arg;
    sigset_t all;
    block_all(NULL);
    sigfillset(&all);
    __atomic_add_fetch(&ready, 1, __ATOMIC_ACQ_REL);
    int sig = 0;
    TL_OK(sigwait(&all, &sig));
    TL_CHECK(sig == SIGUSR1, "sigwait returned signal %d", sig);
    return (void *)(uintptr_t)sig;
}

static void *suspender(void *arg)
{
    (void)arg;
    sigset_t usr2, wait_mask;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    TL_OK(pthread_sigmask(SIG_BLOCK, &usr2, NULL));
    sigfillset(&wait_mask);
    sigdelset(&wait_mask, SIGUSR2);
    __atomic_add_fetch(&ready, 1, __ATOMIC_ACQ_REL);
    while (!usr2_seen) {
        int rc = sigsuspend(&wait_mask);
        TL_CHECK(rc == -1 && errno == EINTR, "sigsuspend");
    }
    usr2_seen = 0;
    return (void *)(uintptr_t)SIGUSR2;
}

static void *poller(void *arg)
{
    (void)arg;
    sigset_t all;
    block_all(NULL);
    sigfillset(&all);
    __atomic_add_fetch(&ready, 1, __ATOMIC_ACQ_REL);
    unsigned long timeouts = 0;
    while (!__atomic_load_n(&stop_polling, __ATOMIC_ACQUIRE)) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        int rc = sigtimedwait(&all, NULL, &ts);
        TL_CHECK(rc == -1 && (errno == EAGAIN || errno == EINTR), "sigtimedwait: %d", rc);
        timeouts++;
    }
    return (void *)(uintptr_t)(timeouts > 0);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 30);
    work = tl_arg(argc, argv, 2, 4000000);
    unsigned long fail_points = tl_arg(argc, argv, 3, 2);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr2;
    TL_CHECK(sigaction(SIGUSR2, &sa, NULL) == 0, "sigaction");
    /* The main thread keeps SIGUSR1 blocked, so only the sigwait thread takes it. */
    sigset_t usr1, old;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    TL_OK(pthread_sigmask(SIG_BLOCK, &usr1, NULL));
    sigset_t all;
    sigfillset(&all);
    TL_CHECK(sigprocmask(SIG_BLOCK, &all, &old) == 0, "sigprocmask");
    TL_CHECK(sigismember(&old, SIGRTMAX) == 0, "main: SIGRTMAX blocked at start");
    TL_CHECK(sigprocmask(SIG_SETMASK, &old, &all) == 0, "sigprocmask");
    TL_CHECK(sigismember(&all, SIGRTMAX) == 1, "main: full mask lost SIGRTMAX");

    printf("thr_sigmask rounds=%lu work=%lu fail_points=%lu\n", rounds, work, fail_points);
    unsigned long every = fail_points ? rounds / fail_points : 0;
    uint64_t sum = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        ready = 0;
        stop_polling = 0;
        pthread_t t[4];
        TL_OK(pthread_create(&t[0], NULL, masked_worker, (void *)(uintptr_t)r));
        TL_OK(pthread_create(&t[1], NULL, sigwaiter, NULL));
        TL_OK(pthread_create(&t[2], NULL, suspender, NULL));
        TL_OK(pthread_create(&t[3], NULL, poller, NULL));
        tl_wait_flag(&ready, 4);
        usleep(5000);
        if (every && r % every == 0 && r / every <= fail_points) {
            printf("round %lu: failing with every signal blocked\n", r);
            zq_fail_now();
        }
        TL_OK(pthread_kill(t[1], SIGUSR1));
        TL_OK(pthread_kill(t[2], SIGUSR2));
        __atomic_store_n(&stop_polling, 1, __ATOMIC_RELEASE);
        void *ret[4];
        for (int i = 0; i < 4; i++)
            TL_OK(pthread_join(t[i], &ret[i]));
        TL_CHECK((uintptr_t)ret[1] == SIGUSR1 && (uintptr_t)ret[2] == SIGUSR2, "signals");
        TL_CHECK((uintptr_t)ret[3] == 1, "the poller never timed out");
        sum = tl_mix(sum, (uintptr_t)ret[0]);
        printf("round %lu: masked work %016llx, sigwait got SIGUSR1, sigsuspend got SIGUSR2\n",
               r, (unsigned long long)(uintptr_t)ret[0]);
    }
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
