/*
 * mem_huge_pages ROUNDS
 *
 * Memory mapped the ways programs and allocators map it stays on huge pages when the pool's
 * filesystem gives them (a tmpfs mounted with huge=within_size, or huge=advise for memory
 * advised MADV_HUGEPAGE, as every region here is): a 2 MiB page is mapped with
 * one page-table entry only where the pool file's offset agrees with the address on it, so
 * the runtime must choose offsets that agree with addresses the program chose (a hint, a
 * MAP_FIXED address, the brk top, the new place of an mremap), and a resume must keep them
 * and the advice.
 *
 * Regions: kernel-chosen, hinted at a 2 MiB boundary (mimalloc asks so), MAP_FIXED at an
 * address 4 KiB past a boundary, malloc, grown with mremap in place, moved by mremap, sbrk;
 * and one mapped (and advised) at the start but touched 2 MiB more each round, so that memory
 * first touched after a resume must be on huge pages too (on huge=advise, only if the advice
 * came back).
 * Each round writes every page of every region, checks the previous round's bytes and
 * prints one checksum line. Under zhuque, each region must also show huge pages in smaps
 * (ShmemPmdMapped, every round: before and after failures); a region that does not prints
 * a line the native oracle never prints. Natively nothing is checked (anonymous memory
 * gets huge pages only where the machine's THP setting says so).
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <sys/mman.h>
#include <time.h>

#define MiB (1UL << 20)
#define HUGE (2 * MiB)

struct region {
    const char *name;
    unsigned char *at;
    size_t len;
};

static struct region regions[7];
static int nregions;
/* Touched one 2 MiB chunk more each round. */
static struct region late;

static void *must(void *p, const char *what)
{
    if (p == MAP_FAILED || p == NULL) {
        perror(what);
        exit(1);
    }
    return p;
}

/* Each region is advised MADV_HUGEPAGE (its page-aligned part): a tmpfs mounted huge=advise
 * gives huge pages only to advised memory, and the advice must outlive failures. */
static void add(const char *name, void *at, size_t len)
{
    regions[nregions++] = (struct region){name, at, len};
    uintptr_t lo = ((uintptr_t)at + 4095) & ~4095UL, hi = ((uintptr_t)at + len) & ~4095UL;
    if (madvise((void *)lo, hi - lo, MADV_HUGEPAGE) != 0) {
        perror("madvise");
        exit(1);
    }
}

static unsigned long smaps_huge_kib(const struct region *r);

static void map_regions(void)
{
    const int rw = PROT_READ | PROT_WRITE, anon = MAP_PRIVATE | MAP_ANONYMOUS;
    add("kernel-chosen", must(mmap(NULL, 8 * MiB, rw, anon, -1, 0), "mmap"), 8 * MiB);

    /* A hint at a 2 MiB boundary of a free part of the address space. */
    unsigned char *probe = must(mmap(NULL, 24 * MiB, PROT_NONE, anon, -1, 0), "probe");
    munmap(probe, 24 * MiB);
    unsigned char *hint = (unsigned char *)(((uintptr_t)probe + HUGE) & ~(HUGE - 1));
    add("hinted", must(mmap(hint, 8 * MiB, rw, anon, -1, 0), "mmap hint"), 8 * MiB);

    unsigned char *room = must(mmap(NULL, 16 * MiB, PROT_NONE, anon, -1, 0), "reserve");
    unsigned char *fixed = (unsigned char *)((((uintptr_t)room + HUGE) & ~(HUGE - 1)) + 4096);
    add("fixed", must(mmap(fixed, 10 * MiB, rw, anon | MAP_FIXED, -1, 0), "mmap fixed"),
        10 * MiB);

    add("malloc", must(malloc(32 * MiB), "malloc"), 32 * MiB);

    /* Grown in place: the addresses after it are free (a reservation released). */
    unsigned char *g = must(mmap(NULL, 16 * MiB, PROT_NONE, anon, -1, 0), "reserve");
    munmap(g + 4 * MiB, 12 * MiB);
    must(mmap(g, 4 * MiB, rw, anon | MAP_FIXED, -1, 0), "mmap grow");
    add("grown", must(mremap(g, 4 * MiB, 12 * MiB, 0), "mremap in place"), 12 * MiB);

    /* Moved: a guard page right after it keeps it from growing in place. */
    unsigned char *m = must(mmap(NULL, 4 * MiB + 4096, rw, anon, -1, 0), "mmap move");
    mprotect(m + 4 * MiB, 4096, PROT_NONE);
    memset(m, 0x5a, 4 * MiB);
    unsigned char *moved = must(mremap(m, 4 * MiB, 12 * MiB, MREMAP_MAYMOVE), "mremap move");
    for (size_t i = 0; i < 4 * MiB; i += 4096)
        if (moved[i] != 0x5a) {
            printf("moved: lost its contents\n");
            exit(1);
        }
    add("moved", moved, 12 * MiB);

    add("brk", must(sbrk(8 * MiB), "sbrk"), 8 * MiB);
}

static void map_late(unsigned long rounds)
{
    size_t len = rounds * HUGE;
    late = (struct region){"late", must(mmap(NULL, len, PROT_READ | PROT_WRITE,
                                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), "mmap late"),
                           len};
    if (madvise(late.at, len, MADV_HUGEPAGE) != 0) {
        perror("madvise");
        exit(1);
    }
}

/* Kilobytes of region `r` mapped with huge pages of the pool (ShmemPmdMapped of every mapping
 * overlapping it), after reading a byte of each 2 MiB of its first `touched` bytes: a resume
 * maps the pool again with no page mapped, and a failure may come between the round's writes
 * and this look. */
static unsigned long huge_kib(const struct region *r, size_t touched)
{
    unsigned long failures, kib;
    do {
        failures = zq_failures();
        for (size_t p = 0; p < touched; p += HUGE)
            (void)*(volatile unsigned char *)(r->at + p);
        kib = smaps_huge_kib(r);
    } while (zq_failures() != failures);
    return kib;
}

static unsigned long smaps_huge_kib(const struct region *r)
{
    char *buf;
    FILE *f = tl_proc_open("/proc/self/smaps", &buf);
    if (!f)
        return 0;
    char line[512];
    uintptr_t lo = (uintptr_t)r->at, hi = lo + r->len, s = 0, e = 0;
    unsigned long kib = 0, v;
    while (fgets(line, sizeof line, f)) {
        uintptr_t a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            s = a;
            e = b;
        } else if (sscanf(line, "ShmemPmdMapped: %lu kB", &v) == 1 && s < hi && lo < e) {
            kib += v;
        }
    }
    tl_proc_close(f, buf);
    return kib;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 40);
    map_regions();
    map_late(rounds);
    uint64_t total = TL_HASH_INIT;
    for (unsigned long round = 1; round <= rounds; round++) {
        uint64_t h = TL_HASH_INIT;
        for (int i = 0; i < nregions; i++) {
            struct region *r = &regions[i];
            for (size_t p = 0; p < r->len; p += 4096) {
                if (round > 1 && r->at[p] != (unsigned char)(round - 1 + i + p / 4096)) {
                    printf("round %lu: %s lost the previous round's bytes at page %zu\n", round,
                           r->name, p / 4096);
                    return 1;
                }
                r->at[p] = (unsigned char)(round + i + p / 4096);
                r->at[p + 4095] = (unsigned char)round;
            }
            h = tl_hash(h, r->at + r->len / 2, 64);
            if (zq_active() && huge_kib(r, r->len) < HUGE / 1024)
                printf("round %lu: %s is not on huge pages\n", round, r->name);
        }
        unsigned char *chunk = late.at + (round - 1) * HUGE;
        for (size_t p = 0; p < HUGE; p += 4096)
            chunk[p] = (unsigned char)(round + p / 4096);
        h = tl_hash(h, chunk + HUGE / 2, 64);
        if (zq_active() && huge_kib(&late, round * HUGE) < round * (HUGE / 1024))
            printf("round %lu: late is not on huge pages\n", round);
        printf("round %lu %016llx\n", round, (unsigned long long)h);
        fflush(stdout);
        total = tl_mix(total, h);
        struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    printf("total %016llx\n", (unsigned long long)total);
    return 0;
}
