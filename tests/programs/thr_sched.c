/*
 * thr_sched ROUNDS
 *
 * Each thread's scheduling, set once and checked by each thread itself every round against
 * the kernel's view (issue 12): policy and flags (sched_getattr), nice value (getpriority of
 * the thread), real-time priority, CPU affinity (sched_getaffinity) and timer slack
 * (PR_GET_TIMERSLACK). The kernel keeps them per thread; before, every thread came back with
 * the resuming process's.
 *   main:     SCHED_OTHER, nice 3, SCHED_FLAG_RESET_ON_FORK, CPU 0, slack 123456 ns
 *   batch:    SCHED_BATCH, nice 7, the last CPU, slack 200000 ns
 *   idle:     SCHED_IDLE, CPU 0, slack 1 ns
 *   realtime: SCHED_RR priority 3 (root only; it sleeps between checks), every CPU
 * Between checks, a little arithmetic whose hash main prints now and then.
 */
#define _GNU_SOURCE
#include "thrlib.h"

#include <sched.h>
#include <stdatomic.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <time.h>

struct attr {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
    uint32_t util_min, util_max;
};

struct want {
    const char *name;
    uint32_t policy;
    uint64_t flags;
    int nice;
    uint32_t priority;
    int cpu; /* -1: every CPU */
    unsigned long slack; /* NO_SLACK: left alone (a real-time thread's is 0 on recent kernels) */
};

#define NO_SLACK (~0UL)

static int ncpus;
static atomic_int stop;

static void set_own(const struct want *w)
{
    struct attr a = {.size = sizeof a, .policy = w->policy, .flags = w->flags, .nice = w->nice,
                     .priority = w->priority};
    TL_CHECK(syscall(SYS_sched_setattr, 0, &a, 0) == 0, "%s: sched_setattr: %s", w->name,
             strerror(errno));
    cpu_set_t set;
    CPU_ZERO(&set);
    for (int c = 0; c < ncpus; c++)
        if (w->cpu < 0 || c == w->cpu)
            CPU_SET(c, &set);
    TL_CHECK(sched_setaffinity(0, sizeof set, &set) == 0, "%s: affinity", w->name);
    if (w->slack != NO_SLACK)
        TL_CHECK(prctl(PR_SET_TIMERSLACK, w->slack) == 0, "%s: timer slack", w->name);
}

static void check_own(const struct want *w, unsigned long round)
{
    struct attr a;
    memset(&a, 0, sizeof a);
    TL_CHECK(syscall(SYS_sched_getattr, 0, &a, sizeof a, 0) == 0, "sched_getattr");
    TL_CHECK(a.policy == w->policy, "round %lu: %s: policy %u, not %u", round, w->name, a.policy,
             w->policy);
    TL_CHECK((a.flags & 1) == w->flags, "round %lu: %s: flags %#llx", round, w->name,
             (unsigned long long)a.flags);
    TL_CHECK(a.priority == w->priority, "round %lu: %s: priority %u", round, w->name, a.priority);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)tl_gettid());
    TL_CHECK(errno == 0 && nice == w->nice && a.nice == w->nice, "round %lu: %s: nice %d/%d, not %d",
             round, w->name, nice, a.nice, w->nice);
    cpu_set_t set;
    TL_CHECK(sched_getaffinity(0, sizeof set, &set) == 0, "affinity");
    for (int c = 0; c < ncpus; c++)
        TL_CHECK(!!CPU_ISSET(c, &set) == (w->cpu < 0 || c == w->cpu),
                 "round %lu: %s: CPU %d %s", round, w->name, c,
                 CPU_ISSET(c, &set) ? "allowed" : "not allowed");
    long slack = prctl(PR_GET_TIMERSLACK);
    TL_CHECK(w->slack == NO_SLACK || slack == (long)w->slack, "round %lu: %s: timer slack %ld, not %lu", round, w->name,
             slack, w->slack);
}

static void nap(void)
{
    struct timespec ts = {0, 200000};
    nanosleep(&ts, NULL);
}

static void *worker(void *arg)
{
    const struct want *w = arg;
    set_own(w);
    for (unsigned long r = 1; !atomic_load(&stop); r++) {
        check_own(w, r);
        nap();
    }
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    ncpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpus > CPU_SETSIZE)
        ncpus = CPU_SETSIZE;
    static const struct want main_w = {"main", SCHED_OTHER, 1, 3, 0, 0, 123456};
    struct want batch = {"batch", SCHED_BATCH, 0, 7, 0, 0, 200000};
    batch.cpu = ncpus - 1;
    static const struct want idle = {"idle", SCHED_IDLE, 0, 0, 0, 0, 1};
    static const struct want rt = {"realtime", SCHED_RR, 0, 0, 3, -1, NO_SLACK};
    int root = geteuid() == 0;
    pthread_t t[3];
    TL_OK(pthread_create(&t[0], NULL, worker, &batch));
    TL_OK(pthread_create(&t[1], NULL, worker, (void *)&idle));
    if (root)
        TL_OK(pthread_create(&t[2], NULL, worker, (void *)&rt));
    set_own(&main_w);

    uint64_t seed = 7, h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        check_own(&main_w, r);
        for (int i = 0; i < 100000; i++)
            h = tl_mix(h, tl_next(&seed));
        if (r % 200 == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    atomic_store(&stop, 1);
    TL_OK(pthread_join(t[0], NULL));
    TL_OK(pthread_join(t[1], NULL));
    if (root)
        TL_OK(pthread_join(t[2], NULL));
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
