/*
 * mmap_ops ROUNDS [FILE] [FILE_PAGES]
 *
 * Exercises the mapping calls on anonymous memory and on a private writable file mapping:
 * mmap, munmap (whole and partial, splitting a mapping in two), mremap (grow with
 * MREMAP_MAYMOVE, shrink), mprotect (read-only and back). FILE (default mmap_ops.dat,
 * relative to the working directory) is created at the start with known contents and mapped
 * MAP_PRIVATE|PROT_WRITE: the program's writes are copy-on-write and must never reach the
 * file, while a fresh mapping must show the file's contents again. Every byte of every live
 * mapping is described by a (seed, generation) rule and verified on the way, so a mapping
 * that is lost, stale or shared by mistake is reported (exit 99). The file is removed at the
 * end. Ends with a checksum line.
 */
#define _GNU_SOURCE /* mremap */
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define SLOTS 24

/* One live anonymous mapping: pages [0, pages) hold pattern(seed, page index). */
struct slot {
    unsigned char *addr;
    size_t pages;
    uint64_t seed;
    int readonly;
};

static struct slot slots[SLOTS];
static unsigned char *fmap;      /* the private file mapping */
static size_t fpages;            /* its length in pages */
static uint64_t *fdirty;         /* per page: 0 = file contents, else the seed written */
static const char *fpath;

static uint64_t page_word(uint64_t seed, size_t page, size_t word)
{
    uint64_t s = seed ^ (page * 0x100000001b3ULL) ^ (word << 32);
    return tl_next(&s);
}

/* Writes the pattern into a few words per page (all pages are touched). */
static void fill_pages(unsigned char *p, size_t first, size_t count, uint64_t seed)
{
    for (size_t pg = first; pg < first + count; pg++) {
        uint64_t *w = (uint64_t *)(p + pg * PAGE);
        for (size_t k = 0; k < PAGE / 8; k += 37)
            w[k] = page_word(seed, pg, k);
    }
}

static uint64_t check_pages(const unsigned char *p, size_t first, size_t count, uint64_t seed,
                            const char *what)
{
    uint64_t h = seed;
    for (size_t pg = first; pg < first + count; pg++) {
        const uint64_t *w = (const uint64_t *)(p + pg * PAGE);
        for (size_t k = 0; k < PAGE / 8; k += 37) {
            TL_CHECK(w[k] == page_word(seed, pg, k), "%s: page %zu word %zu", what, pg, k);
            h = tl_mix(h, w[k]);
        }
        /* Words between the pattern words are zero in anonymous memory. */
        TL_CHECK(w[1] == 0 && w[PAGE / 8 - 1] == 0, "%s: page %zu not zero between", what, pg);
    }
    return h;
}

/* File page contents as written at creation. */
static unsigned char file_byte(size_t off)
{
    return (unsigned char)(off * 7 + (off >> 12) * 13 + 1);
}

static uint64_t check_file_page(size_t pg, const char *what)
{
    const unsigned char *p = fmap + pg * PAGE;
    if (fdirty[pg])
        return check_pages(fmap, pg, 1, fdirty[pg], what);
    uint64_t h = pg;
    for (size_t i = 0; i < PAGE; i += 61) {
        TL_CHECK(p[i] == file_byte(pg * PAGE + i), "%s: file page %zu byte %zu", what, pg, i);
        h = tl_mix(h, p[i]);
    }
    return h;
}

static void map_file(void)
{
    int fd = open(fpath, O_RDONLY);
    TL_CHECK(fd >= 0, "open %s: %s", fpath, strerror(errno));
    fmap = mmap(NULL, fpages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    TL_CHECK(fmap != MAP_FAILED, "mmap file: %s", strerror(errno));
    close(fd);
    memset(fdirty, 0, fpages * sizeof *fdirty);
}

static void create_file(void)
{
    int fd = open(fpath, O_RDWR | O_CREAT | O_TRUNC, 0600);
    TL_CHECK(fd >= 0, "create %s: %s", fpath, strerror(errno));
    unsigned char page[PAGE];
    for (size_t pg = 0; pg < fpages; pg++) {
        for (size_t i = 0; i < PAGE; i++)
            page[i] = file_byte(pg * PAGE + i);
        TL_CHECK(write(fd, page, PAGE) == (ssize_t)PAGE, "write file");
    }
    close(fd);
}

/* Reads the file back with read(2): private mappings must never have changed it. */
static uint64_t verify_file_on_disk(void)
{
    int fd = open(fpath, O_RDONLY);
    TL_CHECK(fd >= 0, "reopen %s: %s", fpath, strerror(errno));
    unsigned char page[PAGE];
    uint64_t h = TL_HASH_INIT;
    for (size_t pg = 0; pg < fpages; pg++) {
        TL_CHECK(read(fd, page, PAGE) == (ssize_t)PAGE, "read file");
        for (size_t i = 0; i < PAGE; i++)
            TL_CHECK(page[i] == file_byte(pg * PAGE + i), "file changed at %zu", pg * PAGE + i);
        h = tl_hash(h, page, PAGE);
    }
    close(fd);
    return h;
}

static uint64_t check_slot(struct slot *s)
{
    return check_pages(s->addr, 0, s->pages, s->seed, "anon");
}

static void new_slot(struct slot *s, uint64_t *rng)
{
    s->pages = 1 + tl_below(rng, 48);
    s->addr = mmap(NULL, s->pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    TL_CHECK(s->addr != MAP_FAILED, "mmap anon: %s", strerror(errno));
    s->seed = tl_next(rng);
    s->readonly = 0;
    fill_pages(s->addr, 0, s->pages, s->seed);
}

static void drop_slot(struct slot *s)
{
    TL_CHECK(munmap(s->addr, s->pages * PAGE) == 0, "munmap: %s", strerror(errno));
    s->addr = NULL;
}

static void make_writable(struct slot *s)
{
    if (s->readonly) {
        TL_CHECK(mprotect(s->addr, s->pages * PAGE, PROT_READ | PROT_WRITE) == 0, "mprotect rw");
        s->readonly = 0;
    }
}

/* One random operation on one slot; returns a value for the running checksum. */
static uint64_t slot_op(struct slot *s, uint64_t *rng)
{
    if (!s->addr) {
        new_slot(s, rng);
        return s->seed;
    }
    uint64_t h = check_slot(s);
    switch (tl_below(rng, 6)) {
    case 0: /* unmap the whole mapping */
        drop_slot(s);
        break;
    case 1: { /* grow with mremap (may move), pattern continues on the new pages */
        make_writable(s);
        size_t more = 1 + tl_below(rng, 32);
        void *p = mremap(s->addr, s->pages * PAGE, (s->pages + more) * PAGE, MREMAP_MAYMOVE);
        TL_CHECK(p != MAP_FAILED, "mremap grow: %s", strerror(errno));
        s->addr = p;
        fill_pages(s->addr, s->pages, more, s->seed);
        s->pages += more;
        break;
    }
    case 2: /* shrink with mremap */
        if (s->pages > 1) {
            size_t keep = 1 + tl_below(rng, s->pages - 1);
            void *p = mremap(s->addr, s->pages * PAGE, keep * PAGE, 0);
            TL_CHECK(p == s->addr, "mremap shrink: %s", strerror(errno));
            s->pages = keep;
        }
        break;
    case 3: /* unmap a middle page range: the tail becomes a mapping of its own elsewhere */
        if (s->pages >= 3) {
            size_t cut = 1 + tl_below(rng, s->pages - 2);
            size_t len = 1 + tl_below(rng, s->pages - cut - 1);
            TL_CHECK(munmap(s->addr + cut * PAGE, len * PAGE) == 0, "munmap middle");
            /* Keep the tail by moving it into a fresh mapping, then unmap it. */
            size_t tail = s->pages - cut - len;
            unsigned char *t = s->addr + (cut + len) * PAGE;
            unsigned char *copy = mmap(NULL, tail * PAGE, PROT_READ | PROT_WRITE,
                                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            TL_CHECK(copy != MAP_FAILED, "mmap copy");
            fill_pages(copy, 0, tail, s->seed ^ 1);
            h = tl_mix(h, check_pages(s->addr, cut + len, tail, s->seed, "tail"));
            TL_CHECK(munmap(t, tail * PAGE) == 0, "munmap tail");
            TL_CHECK(munmap(copy, tail * PAGE) == 0, "munmap copy");
            s->pages = cut;
        }
        break;
    case 4: /* read-only (later operations see it so), checked */
        TL_CHECK(mprotect(s->addr, s->pages * PAGE, PROT_READ) == 0, "mprotect ro");
        s->readonly = 1;
        h = tl_mix(h, check_slot(s));
        break;
    case 5: /* rewrite with a new seed */
        make_writable(s);
        s->seed = tl_next(rng);
        for (size_t pg = 0; pg < s->pages; pg++)
            memset(s->addr + pg * PAGE, 0, PAGE);
        fill_pages(s->addr, 0, s->pages, s->seed);
        break;
    }
    return h;
}

/* One random operation on the private file mapping. */
static uint64_t file_op(uint64_t *rng)
{
    size_t pg = tl_below(rng, fpages);
    uint64_t h = check_file_page(pg, "file map");
    switch (tl_below(rng, 8)) {
    case 0: /* remap: the program's private changes are gone, the file shows again */
        TL_CHECK(munmap(fmap, fpages * PAGE) == 0, "munmap file");
        map_file();
        break;
    case 1: /* read-only for a while, then writable again */
        TL_CHECK(mprotect(fmap + pg * PAGE, PAGE, PROT_READ) == 0, "mprotect file ro");
        h = tl_mix(h, check_file_page(pg, "file ro"));
        TL_CHECK(mprotect(fmap + pg * PAGE, PAGE, PROT_READ | PROT_WRITE) == 0, "mprotect rw");
        break;
    default: /* private write (copy-on-write) */
        fdirty[pg] = tl_next(rng) | 1;
        memset(fmap + pg * PAGE, 0, PAGE);
        fill_pages(fmap, pg, 1, fdirty[pg]);
        break;
    }
    return h;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 3000);
    fpath = argc > 2 ? argv[2] : "mmap_ops.dat";
    fpages = tl_arg(argc, argv, 3, 64);
    unsigned long every = rounds / 400 ? rounds / 400 : 1;
    uint64_t rng = 99, h = TL_HASH_INIT;

    fdirty = calloc(fpages, sizeof *fdirty);
    TL_CHECK(fdirty != NULL && fpages > 0, "calloc");
    create_file();
    map_file();
    printf("mmap_ops rounds=%lu file_pages=%zu\n", rounds, fpages);

    for (unsigned long r = 1; r <= rounds; r++) {
        for (int k = 0; k < 4; k++)
            h = tl_mix(h, slot_op(&slots[tl_below(&rng, SLOTS)], &rng));
        h = tl_mix(h, file_op(&rng));
        if (r % every == 0) {
            size_t live = 0, pages = 0, dirty = 0;
            for (int i = 0; i < SLOTS; i++)
                if (slots[i].addr) {
                    live++;
                    pages += slots[i].pages;
                }
            for (size_t pg = 0; pg < fpages; pg++)
                dirty += fdirty[pg] != 0;
            printf("round %lu maps=%zu pages=%zu file_dirty=%zu h=%016llx\n", r, live, pages,
                   dirty, (unsigned long long)h);
        }
    }

    uint64_t all = 0;
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].addr) {
            all = tl_mix(all, check_slot(&slots[i]));
            drop_slot(&slots[i]);
        }
    for (size_t pg = 0; pg < fpages; pg++)
        all = tl_mix(all, check_file_page(pg, "file final"));
    TL_CHECK(munmap(fmap, fpages * PAGE) == 0, "munmap file");
    uint64_t disk = verify_file_on_disk();
    TL_CHECK(unlink(fpath) == 0, "unlink %s: %s", fpath, strerror(errno));
    printf("file %016llx\n", (unsigned long long)disk);
    printf("checksum %016llx\n", (unsigned long long)tl_mix(h, all));
    return 0;
}
