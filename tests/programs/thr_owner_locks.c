/*
 * thr_owner_locks ROUNDS [FAIL_POINTS] [WORK]
 *
 * Locks that record their owner's thread id, held across failures. In every round a holder
 * thread takes an error-checking mutex, a recursive mutex (twice), a robust mutex, a
 * priority-inheritance mutex (the kernel reads the owner's tid from its word) and the write
 * side of an rwlock, then computes for a while with all of them held; a second thread takes
 * another robust mutex and ends without releasing it. Two waiter threads block on the held
 * error-checking and PI mutexes. Meanwhile the main thread checks that every held lock is
 * busy for it.
 *
 * In FAIL_POINTS (2) rounds, spread over the run, the main thread calls zhuque_fail_now()
 * while everything is held and the waiters are blocked, so a failure lands there in every
 * run (random failures land anywhere on top). Afterwards the holder checks that getpid()
 * and gettid() are unchanged, that relocking its error-checking mutex reports EDEADLK (it
 * is still the recognised owner), unlocks everything (the recursive mutex exactly twice: a
 * third unlock is EPERM), and the main thread finds the dead owner's robust mutex
 * EOWNERDEAD (the kernel's robust list was re-registered), makes it consistent, and
 * verifies that every lock works normally again.
 */
#include "thrlib.h"
#include "zhuque.h"

static pthread_mutex_t errchk, recur, robust, pi, robust_dead;
static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static volatile int holding, release_holder, dead_ready, waiters_in;
static unsigned long work;
static uint64_t total = TL_HASH_INIT;

static void init_mutex(pthread_mutex_t *m, int type, int robust_, int protocol)
{
    pthread_mutexattr_t a;
    TL_OK(pthread_mutexattr_init(&a));
    TL_OK(pthread_mutexattr_settype(&a, type));
    if (robust_)
        TL_OK(pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST));
    TL_OK(pthread_mutexattr_setprotocol(&a, protocol));
    TL_OK(pthread_mutex_init(m, &a));
    TL_OK(pthread_mutexattr_destroy(&a));
}

static void *holder(void *arg)
{
    uint64_t seed = (uintptr_t)arg;
    struct tl_ids ids;
    tl_record_ids(&ids);
    TL_OK(pthread_mutex_lock(&errchk));
    TL_OK(pthread_mutex_lock(&recur));
    TL_OK(pthread_mutex_lock(&recur));
    TL_OK(pthread_mutex_lock(&robust));
    TL_OK(pthread_mutex_lock(&pi));
    TL_OK(pthread_rwlock_wrlock(&rw));
    __atomic_store_n(&holding, 1, __ATOMIC_RELEASE);
    uint64_t h = seed;
    for (unsigned long k = 0; k < work; k++)
        h = tl_mix(h, tl_next(&seed));
    tl_wait_flag(&release_holder, 1);
    tl_check_ids(&ids, "holder");
    TL_CHECK(pthread_mutex_lock(&errchk) == EDEADLK, "error-checking relock is not EDEADLK");
    TL_OK(pthread_rwlock_unlock(&rw));
    TL_OK(pthread_mutex_unlock(&pi));
    TL_OK(pthread_mutex_unlock(&robust));
    TL_OK(pthread_mutex_unlock(&recur));
    TL_OK(pthread_mutex_unlock(&recur));
    TL_CHECK(pthread_mutex_unlock(&recur) == EPERM, "third recursive unlock");
    TL_OK(pthread_mutex_unlock(&errchk));
    TL_CHECK(pthread_mutex_unlock(&errchk) == EPERM, "second error-checking unlock");
    return (void *)(uintptr_t)h;
}

static void *dies_holding(void *arg)
{
    (void)arg;
    TL_OK(pthread_mutex_lock(&robust_dead));
    __atomic_store_n(&dead_ready, 1, __ATOMIC_RELEASE);
    tl_wait_flag(&release_holder, 1);
    return NULL; /* still holding robust_dead */
}

static void *waiter(void *arg)
{
    pthread_mutex_t *m = arg;
    __atomic_add_fetch(&waiters_in, 1, __ATOMIC_ACQ_REL);
    TL_OK(pthread_mutex_lock(m)); /* blocks until the holder lets go */
    TL_CHECK(__atomic_load_n(&release_holder, __ATOMIC_ACQUIRE) == 1, "lock taken too early");
    TL_OK(pthread_mutex_unlock(m));
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 150);
    unsigned long fail_points = tl_arg(argc, argv, 2, 2);
    work = tl_arg(argc, argv, 3, 1500000);
    init_mutex(&errchk, PTHREAD_MUTEX_ERRORCHECK, 0, PTHREAD_PRIO_NONE);
    init_mutex(&recur, PTHREAD_MUTEX_RECURSIVE, 0, PTHREAD_PRIO_NONE);
    init_mutex(&robust, PTHREAD_MUTEX_ERRORCHECK, 1, PTHREAD_PRIO_NONE);
    init_mutex(&pi, PTHREAD_MUTEX_ERRORCHECK, 0, PTHREAD_PRIO_INHERIT);
    init_mutex(&robust_dead, PTHREAD_MUTEX_NORMAL, 1, PTHREAD_PRIO_NONE);
    struct tl_ids ids;
    tl_record_ids(&ids);

    printf("thr_owner_locks rounds=%lu fail_points=%lu work=%lu\n", rounds, fail_points, work);
    for (unsigned long r = 1; r <= rounds; r++) {
        int fail_here = fail_points && r % (rounds / fail_points ? rounds / fail_points : 1) == 0 &&
                        r / (rounds / fail_points ? rounds / fail_points : 1) <= fail_points;
        holding = release_holder = dead_ready = waiters_in = 0;
        pthread_t h, d, w1, w2;
        TL_OK(pthread_create(&h, NULL, holder, (void *)(uintptr_t)r));
        TL_OK(pthread_create(&d, NULL, dies_holding, NULL));
        tl_wait_flag(&holding, 1);
        tl_wait_flag(&dead_ready, 1);
        TL_OK(pthread_create(&w1, NULL, waiter, &errchk));
        TL_OK(pthread_create(&w2, NULL, waiter, &pi));
        tl_wait_flag(&waiters_in, 2);
        TL_CHECK(pthread_mutex_trylock(&errchk) == EBUSY, "error-checking mutex not busy");
        TL_CHECK(pthread_mutex_trylock(&recur) == EBUSY, "recursive mutex not busy");
        TL_CHECK(pthread_mutex_trylock(&robust) == EBUSY, "robust mutex not busy");
        TL_CHECK(pthread_mutex_trylock(&pi) == EBUSY, "PI mutex not busy");
        TL_CHECK(pthread_rwlock_tryrdlock(&rw) == EBUSY, "rwlock not busy");
        if (fail_here) {
            printf("round %lu: failing with every lock held\n", r);
            usleep(2000); /* let the waiters reach their futex waits */
            zq_fail_now();
            tl_check_ids(&ids, "main");
            printf("round %lu: back\n", r);
        }
        __atomic_store_n(&release_holder, 1, __ATOMIC_RELEASE);
        void *ret;
        TL_OK(pthread_join(h, &ret));
        TL_OK(pthread_join(d, NULL));
        TL_OK(pthread_join(w1, NULL));
        TL_OK(pthread_join(w2, NULL));
        total = tl_mix(total, (uintptr_t)ret);

        TL_CHECK(pthread_mutex_lock(&robust_dead) == EOWNERDEAD, "robust owner death unseen");
        TL_OK(pthread_mutex_consistent(&robust_dead));
        TL_OK(pthread_mutex_unlock(&robust_dead));
        TL_OK(pthread_mutex_lock(&errchk));
        TL_CHECK(pthread_mutex_lock(&errchk) == EDEADLK, "main: relock");
        TL_OK(pthread_mutex_unlock(&errchk));
        TL_OK(pthread_mutex_lock(&recur));
        TL_OK(pthread_mutex_lock(&recur));
        TL_OK(pthread_mutex_unlock(&recur));
        TL_OK(pthread_mutex_unlock(&recur));
        TL_OK(pthread_mutex_lock(&robust));
        TL_OK(pthread_mutex_unlock(&robust));
        TL_OK(pthread_mutex_lock(&pi));
        TL_OK(pthread_mutex_unlock(&pi));
        TL_OK(pthread_rwlock_wrlock(&rw));
        TL_OK(pthread_rwlock_unlock(&rw));
        printf("round %lu: every lock released and usable, result %016llx\n", r,
               (unsigned long long)(uintptr_t)ret);
    }
    printf("ids unchanged: yes\n");
    printf("checksum %016llx\n", (unsigned long long)total);
    return 0;
}
