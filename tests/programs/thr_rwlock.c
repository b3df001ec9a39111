/*
 * thr_rwlock WRITES [READERS] [WRITERS]
 *
 * Readers and writers on one pthread_rwlock. WRITERS (2) threads each make WRITES updates
 * under the write lock: they move amounts between cells of a table (its total never changes)
 * and spend a little time computing while they hold the lock, so that failures land while a
 * writer owns it (glibc records the writer's tid in the lock: unlocking after a resume works
 * only if the tid is the same). READERS (6) threads take the read lock and check the total
 * until the writers are done. Writer 0 prints its progress. Additions commute, so the final
 * table is the same whatever the interleaving.
 */
#include "thrlib.h"

#define CELLS 1024
#define MAXT 32
#define TOTAL (CELLS * 1000ULL)

static pthread_rwlock_t lock;
static uint64_t table[CELLS];
static unsigned long writes, version;
static int writers_done, nwriters;
static unsigned long reads[MAXT];

static void *writer(void *arg)
{
    unsigned w = (unsigned)(uintptr_t)arg;
    uint64_t rng = 1000 + w;
    for (unsigned long k = 1; k <= writes; k++) {
        uint64_t r = tl_next(&rng);
        unsigned from = (unsigned)(r % CELLS), to = (unsigned)((r >> 20) % CELLS);
        uint64_t amount = (r >> 40) % 7;
        TL_OK(pthread_rwlock_wrlock(&lock));
        table[from] -= amount; /* modulo 2^64: the updates commute, the total holds */
        table[to] += amount;
        volatile uint64_t spin = r;
        for (int i = 0; i < 200; i++)
            spin = spin * 6364136223846793005ULL + 1;
        version++;
        TL_OK(pthread_rwlock_unlock(&lock));
        if (w == 0 && k % 2000 == 0)
            printf("writer 0: %lu writes\n", k);
    }
    __atomic_add_fetch(&writers_done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void *reader(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    while (__atomic_load_n(&writers_done, __ATOMIC_ACQUIRE) < nwriters) {
        TL_OK(pthread_rwlock_rdlock(&lock));
        uint64_t sum = 0;
        for (int c = 0; c < CELLS; c++)
            sum += table[c];
        unsigned long v = version;
        TL_OK(pthread_rwlock_unlock(&lock));
        TL_CHECK(sum == TOTAL, "reader %u: total %llu at version %lu", i,
                 (unsigned long long)sum, v);
        reads[i]++;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    writes = tl_arg(argc, argv, 1, 400000);
    unsigned nreaders = (unsigned)tl_arg(argc, argv, 2, 6);
    nwriters = (int)tl_arg(argc, argv, 3, 2);
    TL_CHECK(nreaders <= MAXT && nwriters <= MAXT, "threads");
    for (int c = 0; c < CELLS; c++)
        table[c] = 1000;
    /* Writers first, or six readers keep the lock read-held for good. */
    pthread_rwlockattr_t a;
    TL_OK(pthread_rwlockattr_init(&a));
    TL_OK(pthread_rwlockattr_setkind_np(&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP));
    TL_OK(pthread_rwlock_init(&lock, &a));
    TL_OK(pthread_rwlockattr_destroy(&a));
    printf("thr_rwlock writes=%lu readers=%u writers=%d\n", writes, nreaders, nwriters);
    pthread_t r[MAXT], w[MAXT];
    for (unsigned i = 0; i < nreaders; i++)
        TL_OK(pthread_create(&r[i], NULL, reader, (void *)(uintptr_t)i));
    for (int i = 0; i < nwriters; i++)
        TL_OK(pthread_create(&w[i], NULL, writer, (void *)(uintptr_t)i));
    for (int i = 0; i < nwriters; i++)
        TL_OK(pthread_join(w[i], NULL));
    for (unsigned i = 0; i < nreaders; i++)
        TL_OK(pthread_join(r[i], NULL));
    uint64_t sum = 0;
    for (int c = 0; c < CELLS; c++)
        sum += table[c];
    TL_CHECK(sum == TOTAL, "final total %llu", (unsigned long long)sum);
    TL_CHECK(version == writes * (unsigned long)nwriters, "version %lu", version);
    printf("version %lu\n", version);
    printf("checksum %016llx\n", (unsigned long long)tl_hash(TL_HASH_INIT, table, sizeof table));
    return 0;
}
