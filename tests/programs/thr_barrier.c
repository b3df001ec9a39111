/*
 * thr_barrier PHASES [THREADS] [CELLS]
 *
 * A phased computation: THREADS (6) threads step a 1-D cellular automaton of CELLS (8192)
 * doubles, each thread its own slice, double-buffered; after every phase all threads meet at
 * a pthread_barrier, and the thread that gets PTHREAD_BARRIER_SERIAL_THREAD folds the new
 * state into a running checksum and, every 10 phases, prints it (the others are already
 * computing the next phase, which writes only the other buffer; a second barrier closes the
 * phase). A failure finds threads computing, waiting at a barrier, or printing.
 */
#include "thrlib.h"

#define MAXT 32

static unsigned long phases;
static unsigned nthreads;
static size_t cells;
static double *buf[2];
static pthread_barrier_t step, fold;
static uint64_t checksum = TL_HASH_INIT;

static void *worker(void *arg)
{
    unsigned t = (unsigned)(uintptr_t)arg;
    size_t lo = cells * t / nthreads, hi = cells * (t + 1) / nthreads;
    for (unsigned long p = 0; p < phases; p++) {
        const double *src = buf[p & 1];
        double *dst = buf[(p + 1) & 1];
        for (size_t i = lo; i < hi; i++) {
            double l = src[(i + cells - 1) % cells], r = src[(i + 1) % cells];
            double v = 0.25 * l + 0.5 * src[i] + 0.25 * r + 1e-3 * (double)((i * 7 + p) % 13);
            dst[i] = v - (double)(long)v; /* keep it in [0, 1) */
        }
        int rc = pthread_barrier_wait(&step);
        TL_CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier: %d", rc);
        if (rc == PTHREAD_BARRIER_SERIAL_THREAD) {
            checksum = tl_hash(checksum, dst, cells * sizeof(double));
            if ((p + 1) % 10 == 0)
                printf("phase %lu checksum %016llx cell0 %.12f\n", p + 1,
                       (unsigned long long)checksum, dst[0]);
        }
        rc = pthread_barrier_wait(&fold);
        TL_CHECK(rc == 0 || rc == PTHREAD_BARRIER_SERIAL_THREAD, "barrier: %d", rc);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    phases = tl_arg(argc, argv, 1, 3000);
    nthreads = (unsigned)tl_arg(argc, argv, 2, 6);
    cells = tl_arg(argc, argv, 3, 8192);
    TL_CHECK(nthreads >= 1 && nthreads <= MAXT, "threads");
    for (int b = 0; b < 2; b++) {
        buf[b] = malloc(cells * sizeof(double));
        TL_CHECK(buf[b] != NULL, "malloc");
    }
    uint64_t rng = 7;
    for (size_t i = 0; i < cells; i++)
        buf[0][i] = (double)(tl_next(&rng) >> 11) * (1.0 / 9007199254740992.0);
    TL_OK(pthread_barrier_init(&step, NULL, nthreads));
    TL_OK(pthread_barrier_init(&fold, NULL, nthreads));

    printf("thr_barrier phases=%lu threads=%u cells=%zu\n", phases, nthreads, cells);
    pthread_t t[MAXT];
    for (unsigned i = 0; i < nthreads; i++)
        TL_OK(pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)i));
    for (unsigned i = 0; i < nthreads; i++)
        TL_OK(pthread_join(t[i], NULL));
    TL_OK(pthread_barrier_destroy(&step));
    TL_OK(pthread_barrier_destroy(&fold));
    printf("checksum %016llx\n", (unsigned long long)checksum);
    return 0;
}
