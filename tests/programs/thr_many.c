/*
 * thr_many THREADS [PHASES] [WORK]
 *
 * THREADS (256) threads alive at once for the whole run. They are created first; then, in
 * each of PHASES phases, every thread computes WORK steps on its own state and meets the
 * others (and the main thread) at a barrier; the main thread prints the phase's combined
 * checksum. Every thread also checks, in every phase, that getpid() and its gettid() are
 * the ones it recorded when it started (they are kept across failures), and that its
 * pthread_self() and its thread-local variable are still its own.
 */
#include "thrlib.h"

#define MAXT 1024

struct worker {
    struct tl_ids ids;
    pthread_t self;
    uint64_t state;
    uint64_t out;
} __attribute__((aligned(64)));

static struct worker w[MAXT];
static pthread_barrier_t start_line, done_line;
static unsigned long phases, work;
static __thread unsigned my_index;

static void *run(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    struct worker *me = &w[i];
    my_index = i;
    tl_record_ids(&me->ids);
    me->self = pthread_self();
    me->state = i * 0x9e3779b97f4a7c15ULL + 1;
    for (unsigned long p = 0; p < phases; p++) {
        int rc = pthread_barrier_wait(&start_line);
        TL_CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier");
        uint64_t h = me->state;
        for (unsigned long k = 0; k < work; k++)
            h = tl_mix(h, tl_next(&me->state));
        me->out = h;
        tl_check_ids(&me->ids, "worker");
        TL_CHECK(pthread_equal(pthread_self(), me->self), "pthread_self changed");
        TL_CHECK(my_index == i, "thread-local variable changed");
        rc = pthread_barrier_wait(&done_line);
        TL_CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier");
    }
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned n = (unsigned)tl_arg(argc, argv, 1, 256);
    phases = tl_arg(argc, argv, 2, 150);
    work = tl_arg(argc, argv, 3, 6000);
    TL_CHECK(n >= 1 && n <= MAXT, "threads");
    struct tl_ids main_ids;
    tl_record_ids(&main_ids);
    TL_OK(pthread_barrier_init(&start_line, NULL, n + 1));
    TL_OK(pthread_barrier_init(&done_line, NULL, n + 1));
    static pthread_t t[MAXT];
    printf("thr_many threads=%u phases=%lu work=%lu\n", n, phases, work);
    for (unsigned i = 0; i < n; i++)
        TL_OK(pthread_create(&t[i], NULL, run, (void *)(uintptr_t)i));
    uint64_t sum = TL_HASH_INIT;
    for (unsigned long p = 1; p <= phases; p++) {
        int rc = pthread_barrier_wait(&start_line);
        TL_CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier");
        rc = pthread_barrier_wait(&done_line);
        TL_CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier");
        uint64_t h = TL_HASH_INIT;
        for (unsigned i = 0; i < n; i++)
            h = tl_mix(h, w[i].out);
        sum = tl_mix(sum, h);
        tl_check_ids(&main_ids, "main");
        printf("phase %lu of %lu: %u threads, checksum %016llx\n", p, phases, n,
               (unsigned long long)h);
    }
    for (unsigned i = 0; i < n; i++)
        TL_OK(pthread_join(t[i], NULL));
    printf("ids unchanged: yes\n");
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
