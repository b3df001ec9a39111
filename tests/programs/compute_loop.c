/*
 * compute_loop ITERS [REPORT_EVERY]
 *
 * A long compute loop mixing integer and floating-point (vectorisable) work, printing a
 * progress line every REPORT_EVERY iterations through stdio. Writing to a pipe, stdout is
 * fully buffered: most progress lines sit in the stdio buffer (memory) for a while, so a
 * failure at a random moment catches unflushed output that must survive the resume.
 * Ends with a checksum line and exit status 3 (to check that statuses propagate).
 */
#include "testlib.h"

#define LANES 64

static double lanes[LANES];

/* One step: a bit of integer hashing and a small float loop the compiler vectorises. */
static uint64_t step(uint64_t *rng, uint64_t h)
{
    uint64_t r = tl_next(rng);
    double x = (double)(r >> 11) * (1.0 / 9007199254740992.0);
    for (int i = 0; i < LANES; i++)
        lanes[i] = lanes[i] * 0.9990234375 + x * (double)(i + 1);
    return tl_mix(h, r);
}

int main(int argc, char **argv)
{
    unsigned long iters = tl_arg(argc, argv, 1, 30000000);
    unsigned long every = tl_arg(argc, argv, 2, iters / 400 ? iters / 400 : 1);
    uint64_t rng = 42, h = TL_HASH_INIT;

    printf("compute_loop iters=%lu every=%lu\n", iters, every);
    for (unsigned long i = 1; i <= iters; i++) {
        h = step(&rng, h);
        if (i % every == 0) {
            double sum = 0;
            for (int k = 0; k < LANES; k++)
                sum += lanes[k];
            printf("progress %lu/%lu h=%016llx sum=%.9e\n", i, iters, (unsigned long long)h, sum);
        }
    }
    double sum = 0;
    for (int k = 0; k < LANES; k++)
        sum += lanes[k];
    uint64_t bits;
    memcpy(&bits, &sum, sizeof bits);
    printf("checksum %016llx\n", (unsigned long long)tl_mix(h, bits));
    return 3;
}
