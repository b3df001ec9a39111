/*
 * thr_prodcons ITEMS [PRODUCERS] [CONSUMERS]
 *
 * A bounded queue (16 slots) guarded by one mutex and two condition variables, between
 * PRODUCERS (4) producer threads and CONSUMERS (4) consumer threads: 8 threads that spend
 * their time blocked in pthread_cond_wait, in pthread_mutex_lock or running. Each producer
 * puts ITEMS numbered items; each consumer checks that it sees every producer's items in
 * increasing order (the queue is FIFO) and adds them up. The main thread waits on a third
 * condition variable for milestones of consumed items and prints each one (through stdio:
 * lines are in the stdout buffer at the failure). Totals at the end are order-independent.
 */
#include "thrlib.h"

#define QCAP 16
#define MAXT 16

struct item {
    uint32_t producer;
    uint32_t seq;
    uint64_t value;
};

static struct {
    pthread_mutex_t lock;
    pthread_cond_t not_full, not_empty, progress;
    struct item q[QCAP];
    unsigned head, count;
    unsigned long consumed;
    unsigned producers_done;
} Q = {.lock = PTHREAD_MUTEX_INITIALIZER,
       .not_full = PTHREAD_COND_INITIALIZER,
       .not_empty = PTHREAD_COND_INITIALIZER,
       .progress = PTHREAD_COND_INITIALIZER};

static unsigned long items;
static unsigned nprod, ncons;

struct consumer {
    uint64_t sum, xor;
    unsigned long taken;
    uint32_t last[MAXT];
};
static struct consumer cons[MAXT];

static uint64_t item_value(uint32_t p, uint32_t s)
{
    uint64_t st = ((uint64_t)p << 32) | s;
    return tl_next(&st);
}

static void *producer(void *arg)
{
    uint32_t p = (uint32_t)(uintptr_t)arg;
    for (uint32_t s = 1; s <= items; s++) {
        struct item it = {p, s, item_value(p, s)};
        TL_OK(pthread_mutex_lock(&Q.lock));
        while (Q.count == QCAP)
            TL_OK(pthread_cond_wait(&Q.not_full, &Q.lock));
        Q.q[(Q.head + Q.count) % QCAP] = it;
        Q.count++;
        TL_OK(pthread_cond_signal(&Q.not_empty));
        TL_OK(pthread_mutex_unlock(&Q.lock));
    }
    TL_OK(pthread_mutex_lock(&Q.lock));
    Q.producers_done++;
    TL_OK(pthread_cond_broadcast(&Q.not_empty));
    TL_OK(pthread_mutex_unlock(&Q.lock));
    return NULL;
}

static void *consumer(void *arg)
{
    struct consumer *c = &cons[(uintptr_t)arg];
    for (;;) {
        TL_OK(pthread_mutex_lock(&Q.lock));
        while (Q.count == 0 && Q.producers_done < nprod)
            TL_OK(pthread_cond_wait(&Q.not_empty, &Q.lock));
        if (Q.count == 0) {
            TL_OK(pthread_mutex_unlock(&Q.lock));
            return NULL;
        }
        struct item it = Q.q[Q.head];
        Q.head = (Q.head + 1) % QCAP;
        Q.count--;
        Q.consumed++;
        TL_OK(pthread_cond_signal(&Q.not_full));
        if (Q.consumed % 2000 == 0 || Q.consumed == items * nprod)
            TL_OK(pthread_cond_signal(&Q.progress));
        TL_OK(pthread_mutex_unlock(&Q.lock));

        TL_CHECK(it.value == item_value(it.producer, it.seq), "corrupted item");
        TL_CHECK(it.seq > c->last[it.producer], "producer %u: seq %u after %u", it.producer,
                 it.seq, c->last[it.producer]);
        c->last[it.producer] = it.seq;
        c->sum += it.value;
        c->xor ^= it.value;
        c->taken++;
    }
}

int main(int argc, char **argv)
{
    items = tl_arg(argc, argv, 1, 100000);
    nprod = (unsigned)tl_arg(argc, argv, 2, 4);
    ncons = (unsigned)tl_arg(argc, argv, 3, 4);
    TL_CHECK(nprod <= MAXT && ncons <= MAXT, "too many threads");
    pthread_t tp[MAXT], tc[MAXT];

    printf("thr_prodcons items=%lu producers=%u consumers=%u\n", items, nprod, ncons);
    for (unsigned i = 0; i < ncons; i++)
        TL_OK(pthread_create(&tc[i], NULL, consumer, (void *)(uintptr_t)i));
    for (unsigned i = 0; i < nprod; i++)
        TL_OK(pthread_create(&tp[i], NULL, producer, (void *)(uintptr_t)i));

    unsigned long total = items * nprod, next = 2000;
    TL_OK(pthread_mutex_lock(&Q.lock));
    while (next <= total) {
        while (Q.consumed < next)
            TL_OK(pthread_cond_wait(&Q.progress, &Q.lock));
        while (next <= Q.consumed) {
            printf("consumed %lu of %lu\n", next, total);
            next += 2000;
        }
    }
    TL_OK(pthread_mutex_unlock(&Q.lock));

    for (unsigned i = 0; i < nprod; i++)
        TL_OK(pthread_join(tp[i], NULL));
    for (unsigned i = 0; i < ncons; i++)
        TL_OK(pthread_join(tc[i], NULL));

    uint64_t sum = 0, x = 0;
    unsigned long taken = 0;
    for (unsigned i = 0; i < ncons; i++) {
        sum += cons[i].sum;
        x ^= cons[i].xor;
        taken += cons[i].taken;
    }
    uint64_t want_sum = 0, want_xor = 0;
    for (uint32_t p = 0; p < nprod; p++)
        for (uint32_t s = 1; s <= items; s++) {
            want_sum += item_value(p, s);
            want_xor ^= item_value(p, s);
        }
    TL_CHECK(taken == total && sum == want_sum && x == want_xor, "lost or duplicated items");
    printf("taken %lu sum %016llx xor %016llx\n", taken, (unsigned long long)sum,
           (unsigned long long)x);
    printf("checksum %016llx\n", (unsigned long long)tl_mix(sum, x));
    return 0;
}
