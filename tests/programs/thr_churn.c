/*
 * thr_churn ROUNDS [PER_ROUND]
 *
 * Continuous thread creation and exit: every round the main thread starts PER_ROUND (8)
 * threads with different attributes: default; a 64 KiB stack without guard; a detached
 * 256 KiB stack with a 3-page guard; a default one that main detaches after creating it.
 * Every other thread starts and joins a child of its own. Each thread checks what
 * pthread_getattr_np reports about its own stack (size, guard, and that its locals lie in
 * it), computes a little, and hands a result back through pthread_join or, when detached,
 * through a counter under a mutex. Failures land while threads are being created, are
 * running, are exiting, or have exited without being joined yet.
 *
 * At the end the number of lines of /proc/self/maps must not have grown by more than a
 * bound: stacks of exited threads are reclaimed (natively by glibc, under zhuque by the
 * runtime).
 */
#include "thrlib.h"

#define MAXPER 64

struct task {
    unsigned long round;
    unsigned idx;
    size_t stack, guard; /* requested; 0 = defaults */
    int detached;
    uint64_t result;
};

static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static unsigned detached_done;
static size_t default_stack, default_guard;

static uint64_t work(uint64_t seed, int n)
{
    uint64_t h = seed;
    for (int i = 0; i < n; i++)
        h = tl_mix(h, tl_next(&seed));
    return h;
}

static void check_own_stack(const struct task *t)
{
    pthread_attr_t a;
    void *addr;
    size_t size, guard;
    int local;
    TL_OK(pthread_getattr_np(pthread_self(), &a));
    TL_OK(pthread_attr_getstack(&a, &addr, &size));
    TL_OK(pthread_attr_getguardsize(&a, &guard));
    TL_OK(pthread_attr_destroy(&a));
    size_t want = t->stack ? t->stack : default_stack;
    size_t want_guard = t->stack ? t->guard : default_guard;
    TL_CHECK(size == want, "stack size %zu, wanted %zu", size, want);
    TL_CHECK(guard == want_guard, "guard %zu, wanted %zu", guard, want_guard);
    TL_CHECK((char *)&local > (char *)addr && (char *)&local < (char *)addr + size,
             "a local is outside the reported stack");
}

static void *child(void *arg)
{
    return (void *)(uintptr_t)work((uintptr_t)arg, 50);
}

static void *run(void *arg)
{
    struct task *t = arg;
    check_own_stack(t);
    uint64_t r = work(t->round * 131 + t->idx, 200);
    if (t->idx % 2 == 0) {
        pthread_t c;
        void *ret;
        TL_OK(pthread_create(&c, NULL, child, (void *)(uintptr_t)r));
        TL_OK(pthread_join(c, &ret));
        r = tl_mix(r, (uintptr_t)ret);
    }
    if (t->detached) {
        TL_OK(pthread_mutex_lock(&done_lock));
        t->result = r;
        detached_done++;
        TL_OK(pthread_cond_signal(&done_cond));
        TL_OK(pthread_mutex_unlock(&done_lock));
        return NULL;
    }
    return (void *)(uintptr_t)r;
}

static int maps_lines(void)
{
    char *buf;
    FILE *f = tl_proc_open("/proc/self/maps", &buf);
    TL_CHECK(f != NULL, "open /proc/self/maps");
    int n = 0, c;
    while ((c = getc(f)) != EOF)
        n += c == '\n';
    tl_proc_close(f, buf);
    return n;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 400);
    unsigned per = (unsigned)tl_arg(argc, argv, 2, 8);
    TL_CHECK(per >= 1 && per <= MAXPER, "per round");
    pthread_attr_t def;
    TL_OK(pthread_getattr_default_np(&def));
    TL_OK(pthread_attr_getstacksize(&def, &default_stack));
    TL_OK(pthread_attr_getguardsize(&def, &default_guard));
    TL_OK(pthread_attr_destroy(&def));

    static struct task tasks[MAXPER];
    pthread_t th[MAXPER];
    uint64_t sum = TL_HASH_INIT;
    int maps_before = 0;
    printf("thr_churn rounds=%lu per_round=%u\n", rounds, per);
    for (unsigned long r = 1; r <= rounds; r++) {
        unsigned expect_detached = 0;
        TL_OK(pthread_mutex_lock(&done_lock));
        detached_done = 0;
        TL_OK(pthread_mutex_unlock(&done_lock));
        for (unsigned i = 0; i < per; i++) {
            struct task *t = &tasks[i];
            memset(t, 0, sizeof *t);
            t->round = r;
            t->idx = i;
            pthread_attr_t a;
            TL_OK(pthread_attr_init(&a));
            switch (i % 4) {
            case 1:
                t->stack = 64 << 10;
                t->guard = 0;
                break;
            case 2:
                t->stack = 256 << 10;
                t->guard = 3 * 4096;
                t->detached = 1;
                TL_OK(pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED));
                break;
            case 3:
                t->detached = 1;
                break;
            }
            if (t->stack) {
                TL_OK(pthread_attr_setstacksize(&a, t->stack));
                TL_OK(pthread_attr_setguardsize(&a, t->guard));
            }
            expect_detached += t->detached;
            TL_OK(pthread_create(&th[i], &a, run, t));
            TL_OK(pthread_attr_destroy(&a));
            if (i % 4 == 3)
                TL_OK(pthread_detach(th[i]));
        }
        for (unsigned i = 0; i < per; i++) {
            if (tasks[i].detached)
                continue;
            void *ret;
            TL_OK(pthread_join(th[i], &ret));
            tasks[i].result = (uintptr_t)ret;
        }
        TL_OK(pthread_mutex_lock(&done_lock));
        while (detached_done < expect_detached)
            TL_OK(pthread_cond_wait(&done_cond, &done_lock));
        TL_OK(pthread_mutex_unlock(&done_lock));
        for (unsigned i = 0; i < per; i++)
            sum = tl_mix(sum, tasks[i].result);
        if (r % 10 == 0)
            printf("round %lu threads %lu checksum %016llx\n", r, r * per + r * ((per + 1) / 2),
                   (unsigned long long)sum);
        if (r == 20)
            maps_before = maps_lines();
    }
    int growth = maps_lines() - maps_before;
    printf("maps bounded: %s\n", growth < 200 ? "yes" : "no");
    if (growth >= 200)
        fprintf(stderr, "thr_churn: /proc/self/maps grew by %d lines\n", growth);
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
