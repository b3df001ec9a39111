/*
 * thr_atomics ROUNDS [THREADS] [OPS]
 *
 * Lock-free counters: in each of ROUNDS rounds, THREADS (8) threads each make OPS operations
 * on shared state with atomic instructions only: a fetch_add counter, a compare-and-swap
 * maximum, and a Treiber stack of nodes (pop a node, bump its value, push it back; the head
 * carries a tag against ABA). Threads wait for the next round by spinning (with sched_yield)
 * on an atomic round number: there are no locks or futexes anywhere, so a failure finds
 * threads in the middle of read-modify-write loops. The main thread checks the totals after
 * each round and prints them.
 */
#include "thrlib.h"

#define MAXT 32
#define NODES 64

struct node {
    uint64_t value;
    uint32_t next; /* index + 1, 0 = none */
};

static struct node nodes[NODES];
static uint64_t head;                   /* tag << 32 | (index + 1) */
static uint64_t counter, max_seen;
static int round_no, finished[MAXT];
static unsigned long rounds, ops;
static unsigned nthreads;

static uint32_t pop(void)
{
    uint64_t h = __atomic_load_n(&head, __ATOMIC_ACQUIRE);
    for (;;) {
        uint32_t top = (uint32_t)h;
        if (top == 0)
            return 0;
        uint32_t next = __atomic_load_n(&nodes[top - 1].next, __ATOMIC_RELAXED);
        uint64_t nh = ((h >> 32) + 1) << 32 | next;
        if (__atomic_compare_exchange_n(&head, &h, nh, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return top;
    }
}

static void push(uint32_t idx)
{
    uint64_t h = __atomic_load_n(&head, __ATOMIC_ACQUIRE);
    for (;;) {
        __atomic_store_n(&nodes[idx - 1].next, (uint32_t)h, __ATOMIC_RELAXED);
        uint64_t nh = ((h >> 32) + 1) << 32 | idx;
        if (__atomic_compare_exchange_n(&head, &h, nh, 1, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return;
    }
}

static void *worker(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    for (unsigned long r = 1; r <= rounds; r++) {
        tl_wait_flag(&round_no, (int)r);
        uint64_t rng = r * 1000 + t;
        for (unsigned long k = 0; k < ops; k++) {
            uint64_t v = tl_next(&rng);
            __atomic_fetch_add(&counter, v & 0xff, __ATOMIC_RELAXED);
            uint64_t m = __atomic_load_n(&max_seen, __ATOMIC_RELAXED);
            while (v > m && !__atomic_compare_exchange_n(&max_seen, &m, v, 1, __ATOMIC_RELAXED,
                                                         __ATOMIC_RELAXED))
                ;
            uint32_t n = pop();
            if (n) {
                __atomic_fetch_add(&nodes[n - 1].value, 1, __ATOMIC_RELAXED);
                push(n);
            } else {
                sched_yield();
                k--; /* the stack was momentarily empty: retry the whole operation */
                __atomic_fetch_sub(&counter, v & 0xff, __ATOMIC_RELAXED);
            }
        }
        __atomic_store_n(&finished[t], (int)r, __ATOMIC_RELEASE);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    rounds = tl_arg(argc, argv, 1, 60);
    nthreads = (unsigned)tl_arg(argc, argv, 2, 8);
    ops = tl_arg(argc, argv, 3, 20000);
    TL_CHECK(nthreads >= 1 && nthreads <= MAXT, "threads");
    for (uint32_t i = 1; i <= NODES; i++)
        push(i);
    printf("thr_atomics rounds=%lu threads=%u ops=%lu\n", rounds, nthreads, ops);
    pthread_t th[MAXT];
    for (unsigned i = 0; i < nthreads; i++)
        TL_OK(pthread_create(&th[i], NULL, worker, (void *)(uintptr_t)i));
    uint64_t want = 0, want_max = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        __atomic_store_n(&round_no, (int)r, __ATOMIC_RELEASE);
        for (unsigned t = 0; t < nthreads; t++) {
            uint64_t rng = r * 1000 + t;
            for (unsigned long k = 0; k < ops; k++) {
                uint64_t v = tl_next(&rng);
                want += v & 0xff;
                if (v > want_max)
                    want_max = v;
            }
        }
        for (unsigned t = 0; t < nthreads; t++)
            tl_wait_flag(&finished[t], (int)r);
        uint64_t sum = 0;
        unsigned count = 0;
        for (uint32_t i = pop(); i; i = pop()) {
            sum += nodes[i - 1].value;
            count++;
            nodes[i - 1].next = 0;
        }
        TL_CHECK(count == NODES, "round %lu: %u nodes on the stack", r, count);
        for (uint32_t i = 1; i <= NODES; i++)
            push(i);
        TL_CHECK(sum == r * nthreads * ops, "round %lu: node total %llu", r,
                 (unsigned long long)sum);
        TL_CHECK(counter == want && max_seen == want_max, "round %lu: counters", r);
        printf("round %lu counter %016llx max %016llx nodes %llu\n", r,
               (unsigned long long)counter, (unsigned long long)max_seen,
               (unsigned long long)sum);
    }
    for (unsigned i = 0; i < nthreads; i++)
        TL_OK(pthread_join(th[i], NULL));
    printf("checksum %016llx\n", (unsigned long long)tl_mix(counter, max_seen));
    return 0;
}
