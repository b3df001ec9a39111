/*
 * mem_recycle ROUNDS
 *
 * Storage of unmapped memory is taken back by later mappings (the pool's pending list): a new
 * mapping must read zeros on every byte, whatever the old storage held, and before, during
 * and after failures. Each round maps a few anonymous mappings of sizes around the runtime's
 * thresholds (one page, the 64 KiB zeroing chunk, 1 MiB arenas, 3 MiB), checks that every word
 * of each is zero, writes a pattern to some of its pages (none, a sparse few or all, so the
 * old storage has data and holes), keeps some mappings for later rounds and unmaps the rest,
 * sometimes only part of one. Live mappings are verified against their pattern on the way.
 * Prints the running sum every 8 rounds and a checksum at the end.
 */
#include "testlib.h"

#include <errno.h>
#include <sys/mman.h>

#define PAGE 4096UL
#define LIVE 16

struct live {
    uint64_t *addr;
    size_t pages;
    uint64_t seed;
    unsigned char *written; /* per page: 1 when the pattern was written */
};

static struct live live[LIVE];
static const size_t sizes[] = {1, 2, 15, 16, 17, 64, 255, 256, 257, 768};

static uint64_t word(uint64_t seed, size_t page, size_t w)
{
    uint64_t s = seed ^ (page << 20) ^ w;
    return tl_next(&s) | 1;
}

static void check_zero(const uint64_t *p, size_t pages)
{
    for (size_t i = 0; i < pages * PAGE / 8; i++)
        TL_CHECK(p[i] == 0, "fresh mapping of %zu pages: word %zu is %llx", pages, i,
                 (unsigned long long)p[i]);
}

static uint64_t verify(const struct live *l)
{
    uint64_t h = l->seed;
    for (size_t pg = 0; pg < l->pages; pg++) {
        const uint64_t *w = l->addr + pg * PAGE / 8;
        for (size_t k = 0; k < PAGE / 8; k += 61) {
            uint64_t want = l->written[pg] ? word(l->seed, pg, k) : 0;
            TL_CHECK(w[k] == want, "live mapping page %zu word %zu", pg, k);
            h = tl_mix(h, w[k]);
        }
    }
    return h;
}

static void fill(struct live *l, uint64_t *rng)
{
    unsigned mode = (unsigned)tl_below(rng, 3);
    for (size_t pg = 0; pg < l->pages; pg++) {
        int write = mode == 2 || (mode == 1 && tl_below(rng, 8) == 0);
        l->written[pg] = (unsigned char)write;
        if (write)
            for (size_t k = 0; k < PAGE / 8; k++)
                l->addr[pg * PAGE / 8 + k] = word(l->seed, pg, k);
    }
}

static void unmap(struct live *l)
{
    TL_CHECK(munmap(l->addr, l->pages * PAGE) == 0, "munmap: %s", strerror(errno));
    free(l->written);
    l->addr = NULL;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    uint64_t rng = 42, sum = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        if (r % 8 == 0)
            printf("round %lu sum %016llx\n", r, (unsigned long long)sum);
        struct live *l = &live[tl_below(&rng, LIVE)];
        if (l->addr) {
            sum = tl_mix(sum, verify(l));
            if (l->pages > 2 && tl_below(&rng, 4) == 0) {
                /* Unmap the tail: its storage goes pending while the head stays mapped. */
                size_t keep = 1 + tl_below(&rng, l->pages - 1);
                TL_CHECK(munmap(l->addr + keep * PAGE / 8, (l->pages - keep) * PAGE) == 0,
                         "munmap tail: %s", strerror(errno));
                l->pages = keep;
            } else {
                unmap(l);
            }
            continue;
        }
        l->pages = sizes[tl_below(&rng, sizeof sizes / sizeof *sizes)];
        l->addr = mmap(NULL, l->pages * PAGE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        TL_CHECK(l->addr != MAP_FAILED, "mmap: %s", strerror(errno));
        check_zero(l->addr, l->pages);
        l->seed = tl_next(&rng);
        l->written = calloc(l->pages, 1);
        TL_CHECK(l->written != NULL, "calloc");
        fill(l, &rng);
        sum = tl_mix(sum, l->pages);
    }
    for (size_t i = 0; i < LIVE; i++)
        if (live[i].addr)
            sum = tl_mix(sum, verify(&live[i]));
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
