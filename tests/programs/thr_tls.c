/*
 * thr_tls ROUNDS [LIBRARY] [FAIL_POINTS]
 *
 * Thread-local storage and thread-specific data across failures. THREADS (8) threads each
 * keep state in four places: static __thread variables of the executable (initialised and
 * zero-initialised), __thread variables of LIBRARY (loaded with dlopen: dynamic TLS, when
 * given), 40 pthread keys (the first 32 live in the thread descriptor, the rest in blocks
 * glibc allocates), and a stack array. Every round each thread updates all of them the same
 * way and checks they still agree with each other. The main thread calls zhuque_fail_now()
 * at FAIL_POINTS (2) moments while every thread is running, and prints the round checksums.
 * At the end the threads exit: the key destructors must run once per key and thread.
 */
#include "thrlib.h"
#include "zhuque.h"

#include <dlfcn.h>

#define THREADS 8
#define KEYS 40

static __thread uint64_t tls_counter = 12345;
static __thread unsigned char tls_bytes[1024];
static pthread_key_t keys[KEYS];
static uint64_t (*lib_bump)(uint64_t);
static uint64_t (*lib_digest)(void);
static unsigned long rounds;
static int round_done[THREADS], go_round;
static uint64_t results[THREADS];
static unsigned long destructor_calls;
static pthread_mutex_t dlock = PTHREAD_MUTEX_INITIALIZER;

static void destroy(void *p)
{
    TL_CHECK(p != NULL, "destructor with NULL");
    free(p);
    TL_OK(pthread_mutex_lock(&dlock));
    destructor_calls++;
    TL_OK(pthread_mutex_unlock(&dlock));
}

static void *run(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    uint64_t mirror = 12345, lib_mirror = 0;
    unsigned char stack_bytes[1024] = {0};
    TL_CHECK(tls_counter == 12345, "initial __thread value");
    for (int k = 0; k < KEYS; k++) {
        uint64_t *v = malloc(sizeof *v);
        TL_CHECK(v != NULL, "malloc");
        *v = t * 1000 + (unsigned)k;
        TL_OK(pthread_setspecific(keys[k], v));
    }
    uint64_t h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        tl_wait_flag(&go_round, (int)r);
        uint64_t seed = r * 64 + t;
        for (int i = 0; i < 2000; i++) {
            uint64_t v = tl_next(&seed);
            tls_counter += v & 0xffff;
            mirror += v & 0xffff;
            tls_bytes[v % sizeof tls_bytes] ^= (unsigned char)v;
            stack_bytes[v % sizeof stack_bytes] ^= (unsigned char)v;
            if (lib_bump) {
                lib_mirror += v & 0xff;
                TL_CHECK(lib_bump(v & 0xff) == lib_mirror, "library TLS diverged");
            }
            uint64_t *s = pthread_getspecific(keys[v % KEYS]);
            TL_CHECK(s != NULL, "key value lost");
            *s += KEYS * 1000;
        }
        TL_CHECK(tls_counter == mirror, "static TLS diverged: %llu vs %llu",
                 (unsigned long long)tls_counter, (unsigned long long)mirror);
        TL_CHECK(memcmp(tls_bytes, stack_bytes, sizeof tls_bytes) == 0, "TLS bytes diverged");
        for (int k = 0; k < KEYS; k++) {
            uint64_t *s = pthread_getspecific(keys[k]);
            TL_CHECK(s != NULL && *s % (KEYS * 1000) == t * 1000 + (unsigned)k,
                     "thread %u key %d holds a wrong value", t, k);
            h = tl_mix(h, *s);
        }
        h = tl_mix(h, tls_counter);
        h = tl_hash(h, tls_bytes, sizeof tls_bytes);
        if (lib_digest)
            h = tl_mix(h, lib_digest());
        results[t] = h;
        __atomic_store_n(&round_done[t], (int)r, __ATOMIC_RELEASE);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    rounds = tl_arg(argc, argv, 1, 600);
    const char *lib = argc > 2 ? argv[2] : NULL;
    unsigned long fail_points = tl_arg(argc, argv, 3, 2);
    if (lib && *lib) {
        void *h = dlopen(lib, RTLD_NOW);
        TL_CHECK(h != NULL, "dlopen: %s", dlerror());
        lib_bump = (uint64_t(*)(uint64_t))dlsym(h, "lib_bump");
        lib_digest = (uint64_t(*)(void))dlsym(h, "lib_digest");
        TL_CHECK(lib_bump && lib_digest, "dlsym");
    }
    for (int k = 0; k < KEYS; k++)
        TL_OK(pthread_key_create(&keys[k], destroy));
    printf("thr_tls rounds=%lu dynamic_tls=%s\n", rounds, lib_bump ? "yes" : "no");
    pthread_t th[THREADS];
    for (unsigned t = 0; t < THREADS; t++)
        TL_OK(pthread_create(&th[t], NULL, run, (void *)(uintptr_t)t));
    unsigned long every = fail_points ? rounds / (fail_points + 1) : 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        __atomic_store_n(&go_round, (int)r, __ATOMIC_RELEASE);
        if (every && r % every == 0 && r / every <= fail_points) {
            printf("round %lu: failing while the threads run\n", r);
            zq_fail_now();
        }
        uint64_t h = TL_HASH_INIT;
        for (unsigned t = 0; t < THREADS; t++) {
            tl_wait_flag(&round_done[t], (int)r);
            h = tl_mix(h, results[t]);
        }
        printf("round %lu checksum %016llx\n", r, (unsigned long long)h);
    }
    for (unsigned t = 0; t < THREADS; t++)
        TL_OK(pthread_join(th[t], NULL));
    TL_CHECK(destructor_calls == THREADS * KEYS, "%lu destructor calls", destructor_calls);
    printf("destructors: %lu\n", destructor_calls);
    uint64_t h = TL_HASH_INIT;
    for (unsigned t = 0; t < THREADS; t++)
        h = tl_mix(h, results[t]);
    printf("checksum %016llx\n", (unsigned long long)h);
    return 0;
}
