/*
 * thr_lifecycle WORK [FAIL_POINTS]
 *
 * The ends of a thread's life across failures, in three acts, each with a zhuque_fail_now()
 * point (with FAIL_POINTS = 1, the default 3 otherwise) at the worst moment:
 *  1. A joinable thread returns a value and a detached thread ends; both are gone when the
 *     failure hits. Afterwards pthread_join collects the first one's value.
 *  2. Three threads are cancelled after the failure: one blocked in pthread_cond_wait (its
 *     cleanup handler unlocks the mutex), one in nanosleep, one busy with asynchronous
 *     cancellation. pthread_join reports PTHREAD_CANCELED for each.
 *  3. main calls pthread_exit while four workers compute: the process lives on without its
 *     initial thread. The first worker waits until the initial thread is a zombie, fails
 *     (the saved process has no leader to restore), and the last worker to finish prints the
 *     result; the process ends with status 0 when it returns.
 * Random failures land anywhere on top, including after main has gone.
 */
#include "thrlib.h"
#include "zhuque.h"

#include <time.h>

static volatile int t1_done, t2_done, in_wait, in_sleep, in_spin;
static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int cleanup_ran;
static unsigned long work, fail_points;
static int workers_left = 4;
static uint64_t worker_out[4];

static void *returns_value(void *arg)
{
    (void)arg;
    __atomic_store_n(&t1_done, 1, __ATOMIC_RELEASE);
    return (void *)(uintptr_t)42;
}

static void *detached_end(void *arg)
{
    (void)arg;
    __atomic_store_n(&t2_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void unlock_cleanup(void *arg)
{
    cleanup_ran = 1;
    pthread_mutex_unlock(arg);
}

static void *waits_forever(void *arg)
{
    (void)arg;
    TL_OK(pthread_mutex_lock(&m));
    pthread_cleanup_push(unlock_cleanup, &m);
    __atomic_store_n(&in_wait, 1, __ATOMIC_RELEASE);
    for (;;)
        pthread_cond_wait(&never, &m);
    pthread_cleanup_pop(1);
    return NULL;
}

static void *sleeps_forever(void *arg)
{
    (void)arg;
    __atomic_store_n(&in_sleep, 1, __ATOMIC_RELEASE);
    for (;;) {
        struct timespec ts = {1000, 0};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static void *spins_forever(void *arg)
{
    (void)arg;
    TL_OK(pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL));
    __atomic_store_n(&in_spin, 1, __ATOMIC_RELEASE);
    volatile uint64_t x = 1;
    for (;;)
        x = x * 3 + 1;
    return NULL;
}

static int leader_gone(void)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)getpid());
    FILE *f = fopen(path, "r");
    if (!f)
        return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *close = strrchr(buf, ')');
    return close && (close[2] == 'Z' || close[2] == 'X');
}

static void *worker(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    uint64_t seed = 77 + i, h = TL_HASH_INIT;
    if (i == 0 && fail_points >= 3) {
        while (!leader_gone())
            usleep(1000);
        zq_fail_now();
    }
    for (unsigned long k = 1; k <= work; k++) {
        h = tl_mix(h, tl_next(&seed));
        if (i == 0 && k % (work / 100) == 0)
            printf("worker 0: %lu%%\n", k / (work / 100));
    }
    worker_out[i] = h;
    if (__atomic_sub_fetch(&workers_left, 1, __ATOMIC_ACQ_REL) == 0) {
        uint64_t all = TL_HASH_INIT;
        for (int w = 0; w < 4; w++)
            all = tl_mix(all, worker_out[w]);
        printf("all workers done without main\n");
        printf("checksum %016llx\n", (unsigned long long)all);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    work = tl_arg(argc, argv, 1, 60000000);
    fail_points = tl_arg(argc, argv, 2, 3);
    printf("thr_lifecycle work=%lu fail_points=%lu\n", work, fail_points);

    /* Act 1: threads that ended before the failure. */
    pthread_t t1, t2;
    pthread_attr_t det;
    TL_OK(pthread_attr_init(&det));
    TL_OK(pthread_attr_setdetachstate(&det, PTHREAD_CREATE_DETACHED));
    TL_OK(pthread_create(&t1, NULL, returns_value, NULL));
    TL_OK(pthread_create(&t2, &det, detached_end, NULL));
    tl_wait_flag(&t1_done, 1);
    tl_wait_flag(&t2_done, 1);
    usleep(20000); /* both have left the kernel by now */
    printf("act 1: two threads ended\n");
    if (fail_points >= 1)
        zq_fail_now();
    void *ret;
    TL_OK(pthread_join(t1, &ret));
    printf("act 1: joined the ended thread: %lu\n", (unsigned long)(uintptr_t)ret);

    /* Act 2: cancellation of blocked and busy threads. */
    pthread_t c1, c2, c3;
    TL_OK(pthread_create(&c1, NULL, waits_forever, NULL));
    TL_OK(pthread_create(&c2, NULL, sleeps_forever, NULL));
    TL_OK(pthread_create(&c3, NULL, spins_forever, NULL));
    tl_wait_flag(&in_wait, 1);
    tl_wait_flag(&in_sleep, 1);
    tl_wait_flag(&in_spin, 1);
    usleep(20000);
    printf("act 2: three threads waiting, sleeping, spinning\n");
    if (fail_points >= 2)
        zq_fail_now();
    TL_OK(pthread_cancel(c1));
    TL_OK(pthread_cancel(c2));
    TL_OK(pthread_cancel(c3));
    TL_OK(pthread_join(c1, &ret));
    TL_CHECK(ret == PTHREAD_CANCELED && cleanup_ran, "cond_wait thread not cancelled cleanly");
    TL_OK(pthread_join(c2, &ret));
    TL_CHECK(ret == PTHREAD_CANCELED, "sleeping thread not cancelled");
    TL_OK(pthread_join(c3, &ret));
    TL_CHECK(ret == PTHREAD_CANCELED, "spinning thread not cancelled");
    TL_OK(pthread_mutex_lock(&m));
    TL_OK(pthread_mutex_unlock(&m));
    printf("act 2: all three cancelled\n");

    /* Act 3: main leaves, the workers finish the program. */
    for (unsigned i = 0; i < 4; i++) {
        pthread_t w;
        TL_OK(pthread_create(&w, &det, worker, (void *)(uintptr_t)i));
    }
    printf("act 3: main exits\n");
    pthread_exit(NULL);
}
