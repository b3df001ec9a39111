/*
 * sig_thread_timers ROUNDS FAIL_POINTS
 *
 * POSIX timers that notify by starting a thread (SIGEV_THREAD). glibc runs those from a helper
 * thread of its own that blocks every signal for good (a save could never stop it); under
 * zhuque the runtime runs them instead, and they must behave exactly as glibc's:
 * - a periodic timer (2 ms) whose callback counts;
 * - a chain: a one-shot timer whose callback re-arms it (1 ms) until ROUNDS callbacks ran;
 * - two chains of SIGEV_SIGNAL timers: a process-directed one (SIGUSR1, re-armed by its
 *   handler) and one aimed at a worker thread (SIGEV_THREAD_ID, SIGUSR2, taken with
 *   sigwaitinfo and re-armed by the worker), ROUNDS expiries each;
 * - churn: main creates a SIGEV_THREAD timer carrying its round number, arms it one-shot
 *   (0.5 ms), waits on a semaphore for its callback and deletes it, ROUNDS times; every round
 *   also creates and deletes a timer that never fires, and every 8th round one that is armed
 *   but deleted before it expires;
 * - every callback checks its value, that it runs detached, with glibc's signal mask for such
 *   threads (everything blocked, SIGRTMAX included as far as it can tell) and, for the churn
 *   timers, on a stack of the size asked for in sigev_notify_attributes (256 KiB);
 * - in FAIL_POINTS churn rounds spread over the run, the callback calls zhuque_fail_now(): a
 *   failure while a notification thread runs and the other timers keep firing.
 * A lost timer stops its callbacks: every wait has a 10 s watchdog. Output: a line every
 * ROUNDS/8 churn rounds and the totals that do not depend on timing.
 */
#define _GNU_SOURCE
#include "thrlib.h"
#include "zhuque.h"

#include <semaphore.h>
#include <signal.h>
#include <time.h>

#define CHURN_STACK (256 * 1024)

static unsigned long rounds, fail_every;
static timer_t periodic, chain;
static volatile unsigned long periodic_calls, chain_calls, churn_calls, bad_calls;
static sem_t churn_done, chain_done;
static timer_t sigchain, tidchain;
static volatile unsigned long sigchain_calls, tidchain_calls;
static volatile int sigchain_bad;

/* What every notification thread must find. */
static void check_thread(int want_stack)
{
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    TL_CHECK(sigismember(&now, SIGUSR1) && sigismember(&now, SIGRTMAX) &&
                 sigismember(&now, SIGALRM),
             "a notification thread runs with signals unblocked");
    pthread_attr_t a;
    TL_OK(pthread_getattr_np(pthread_self(), &a));
    int detached;
    size_t size;
    TL_OK(pthread_attr_getdetachstate(&a, &detached));
    TL_OK(pthread_attr_getstacksize(&a, &size));
    TL_OK(pthread_attr_destroy(&a));
    TL_CHECK(detached == PTHREAD_CREATE_DETACHED, "notification thread is joinable");
    TL_CHECK(!want_stack || size >= CHURN_STACK, "stack of %zu bytes", size);
}

static void on_periodic(union sigval v)
{
    TL_CHECK(v.sival_int == 1, "periodic value %d", v.sival_int);
    check_thread(0);
    __atomic_add_fetch(&periodic_calls, 1, __ATOMIC_RELAXED);
}

static void arm(timer_t t, long ns, long interval_ns)
{
    struct itimerspec its = {{0, interval_ns}, {0, ns}};
    TL_CHECK(timer_settime(t, 0, &its, NULL) == 0, "timer_settime: %s", strerror(errno));
}

static void on_chain(union sigval v)
{
    TL_CHECK(v.sival_ptr == &chain, "chain value");
    check_thread(0);
    unsigned long n = __atomic_add_fetch(&chain_calls, 1, __ATOMIC_RELAXED);
    if (n < rounds)
        arm(chain, 1000000, 0);
    else
        sem_post(&chain_done);
}

static void on_churn(union sigval v)
{
    unsigned long round = (unsigned long)v.sival_int;
    check_thread(1);
    if (round != __atomic_load_n(&churn_calls, __ATOMIC_RELAXED)) {
        __atomic_add_fetch(&bad_calls, 1, __ATOMIC_RELAXED);
        return;
    }
    if (fail_every && round % fail_every == fail_every / 2)
        zq_fail_now();
    __atomic_add_fetch(&churn_calls, 1, __ATOMIC_RELEASE);
    sem_post(&churn_done);
}

static void on_never(union sigval v)
{
    (void)v;
    __atomic_add_fetch(&bad_calls, 1, __ATOMIC_RELAXED);
}

static void on_sigchain(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    /* A signal pending at a failure comes back with its siginfo (process-directed). */
    if (sig != SIGUSR1 || si->si_code != SI_TIMER || si->si_value.sival_int != 5)
        sigchain_bad = 1;
    if (++sigchain_calls < rounds) {
        struct itimerspec its = {{0, 0}, {0, 1000000}};
        timer_settime(sigchain, 0, &its, NULL);
    }
}

/* Takes the expiries of the timer aimed at this thread and re-arms it. */
static pid_t worker_tid_seen;

static void *tidchain_worker(void *arg)
{
    (void)arg;
    __atomic_store_n(&worker_tid_seen, tl_gettid(), __ATOMIC_RELEASE);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR2);
    while (tidchain_calls < rounds) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig < 0) {
            TL_CHECK(errno == EINTR, "sigwaitinfo: %s", strerror(errno));
            continue;
        }
        /* A signal pending for this thread at a failure comes back with its siginfo. */
        TL_CHECK(sig == SIGUSR2 && si.si_code == SI_TIMER && si.si_value.sival_int == 6,
                 "tid chain: signal %d code %d value %d", sig, si.si_code, si.si_value.sival_int);
        if (++tidchain_calls < rounds)
            arm(tidchain, 1000000, 0);
    }
    return NULL;
}

static timer_t make(void (*fn)(union sigval), union sigval value, pthread_attr_t *attr)
{
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD;
    ev.sigev_notify_function = fn;
    ev.sigev_value = value;
    ev.sigev_notify_attributes = attr;
    timer_t t;
    TL_CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0, "timer_create: %s", strerror(errno));
    return t;
}

/* sem_wait with a watchdog: a lost timer must fail the program, not hang it. */
static void wait_for(sem_t *s, const char *what)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 10;
    for (;;) {
        if (sem_timedwait(s, &deadline) == 0)
            return;
        TL_CHECK(errno == EINTR, "no %s notification within 10 s: %s", what, strerror(errno));
    }
}

int main(int argc, char **argv)
{
    rounds = tl_arg(argc, argv, 1, 400);
    unsigned long fail_points = tl_arg(argc, argv, 2, 0);
    fail_every = fail_points ? rounds / fail_points : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    TL_CHECK(sem_init(&churn_done, 0, 0) == 0, "sem_init");
    TL_CHECK(sem_init(&chain_done, 0, 0) == 0, "sem_init");

    periodic = make(on_periodic, (union sigval){.sival_int = 1}, NULL);
    arm(periodic, 2000000, 2000000);
    chain = make(on_chain, (union sigval){.sival_ptr = &chain}, NULL);
    arm(chain, 1000000, 0);

    /* SIGUSR2 is taken with sigwaitinfo by the worker only. */
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    TL_OK(pthread_sigmask(SIG_BLOCK, &usr2, NULL));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigchain;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    TL_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    ev.sigev_value.sival_int = 5;
    TL_CHECK(timer_create(CLOCK_MONOTONIC, &ev, &sigchain) == 0, "timer_create");
    arm(sigchain, 1000000, 0);
    pthread_t worker;
    TL_OK(pthread_create(&worker, NULL, tidchain_worker, NULL));
    /* The worker's tid, as the kernel knows it: SIGEV_THREAD_ID takes a tid. */
    pid_t worker_tid;
    while ((worker_tid = __atomic_load_n(&worker_tid_seen, __ATOMIC_ACQUIRE)) == 0)
        sched_yield();
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD_ID;
    ev.sigev_signo = SIGUSR2;
    ev.sigev_value.sival_int = 6;
    ev._sigev_un._tid = worker_tid;
    TL_CHECK(timer_create(CLOCK_MONOTONIC, &ev, &tidchain) == 0, "timer_create: %s",
             strerror(errno));
    arm(tidchain, 1000000, 0);

    pthread_attr_t attr;
    TL_OK(pthread_attr_init(&attr));
    TL_OK(pthread_attr_setstacksize(&attr, CHURN_STACK));
    uint64_t h = TL_HASH_INIT;
    for (unsigned long r = 0; r < rounds; r++) {
        timer_t never = make(on_never, (union sigval){.sival_int = -1}, NULL);
        timer_t t = make(on_churn, (union sigval){.sival_int = (int)r}, &attr);
        if (r % 8 == 3) {
            arm(never, 200000000, 0); /* deleted long before it expires */
        }
        arm(t, 500000, 0);
        wait_for(&churn_done, "churn");
        struct itimerspec left;
        TL_CHECK(timer_gettime(t, &left) == 0 && left.it_value.tv_sec == 0 &&
                     left.it_value.tv_nsec == 0,
                 "an expired one-shot timer is still armed");
        TL_CHECK(timer_getoverrun(t) >= 0, "timer_getoverrun: %s", strerror(errno));
        TL_CHECK(timer_delete(t) == 0, "timer_delete: %s", strerror(errno));
        TL_CHECK(timer_delete(never) == 0, "timer_delete: %s", strerror(errno));
        h = tl_mix(h, r * 2654435761u);
        if ((r + 1) % (rounds / 8 ? rounds / 8 : 1) == 0)
            printf("round %lu: %lu churn notifications\n", r + 1,
                   __atomic_load_n(&churn_calls, __ATOMIC_ACQUIRE));
    }
    TL_OK(pthread_attr_destroy(&attr));
    wait_for(&chain_done, "chain");
    TL_OK(pthread_join(worker, NULL));
    for (int i = 0; sigchain_calls < rounds; i++) {
        TL_CHECK(i < 10000, "the signal chain stopped at %lu", (unsigned long)sigchain_calls);
        usleep(1000);
    }
    TL_CHECK(!sigchain_bad, "the signal chain's handler got a wrong siginfo");
    TL_CHECK(timer_delete(sigchain) == 0 && timer_delete(tidchain) == 0, "timer_delete");
    TL_CHECK(timer_delete(chain) == 0, "timer_delete: %s", strerror(errno));
    unsigned long ticks = __atomic_load_n(&periodic_calls, __ATOMIC_RELAXED);
    TL_CHECK(timer_delete(periodic) == 0, "timer_delete: %s", strerror(errno));
    TL_CHECK(ticks >= 10, "the periodic timer ran only %lu times", ticks);
    TL_CHECK(bad_calls == 0, "%lu notifications of deleted or wrong timers", bad_calls);
    printf("chain %lu, churn %lu, signal chain %lu, thread chain %lu, periodic ran: yes\n",
           (unsigned long)chain_calls, (unsigned long)churn_calls,
           (unsigned long)sigchain_calls, (unsigned long)tidchain_calls);
    printf("checksum %016llx\n", (unsigned long long)h);
    return 0;
}
