/*
 * mem_private_file ROUNDS [FILE [ro-first]]
 *
 * A writable MAP_PRIVATE mapping of a file, as the kernel keeps it: pages the program wrote
 * are its own copies, the others are the file's. Each round writes some pages (copy-on-write),
 * writes the file itself with pwrite (visible in the mapping only where the program has not
 * written), drops some of its copies with MADV_DONTNEED (those pages show the file again),
 * and makes a page range read-only and writable again. Every page is checked against what it
 * must hold; /proc/self/smaps must count exactly the pages written as the mapping's anonymous
 * memory, and the mapping must keep its path, offset and permissions. Failures come at random
 * moments; the output must be the native run's. Ends with a checksum line.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define PAGES 96
#define OFFSET_PAGES 2 /* the mapping starts this far into the file */

static unsigned char *map;
static int fd;
static uint64_t own[PAGES];  /* 0: the file's page; else the seed the program wrote */
static uint64_t file[PAGES]; /* generation of the file's page as last pwritten */

static unsigned char byte_of(uint64_t seed, size_t i)
{
    return (unsigned char)((seed >> (i % 56)) + i * 31);
}

static void write_file_page(size_t pg, uint64_t gen)
{
    unsigned char buf[PAGE];
    for (size_t i = 0; i < PAGE; i++)
        buf[i] = byte_of(gen * 977 + pg, i);
    TL_CHECK(pwrite(fd, buf, PAGE, (pg + OFFSET_PAGES) * PAGE) == (ssize_t)PAGE, "pwrite: %s",
             strerror(errno));
    file[pg] = gen;
}

static uint64_t check_page(size_t pg)
{
    const unsigned char *p = map + pg * PAGE;
    uint64_t seed = own[pg] ? own[pg] : file[pg] * 977 + pg;
    for (size_t i = 0; i < PAGE; i += 13)
        TL_CHECK(p[i] == byte_of(seed, i), "page %zu byte %zu: %s page wrong", pg, i,
                 own[pg] ? "written" : "file");
    return tl_mix(pg, seed);
}

/* Checks the mapping's entry in /proc/self/smaps: one entry, with its permissions, offset
 * and path, counting exactly the pages written as Anonymous. Returns NULL when it holds, else
 * what is wrong (in `why`). */
static const char *smaps_wrong(const char *path, unsigned long written, char *why, size_t n)
{
    char *buf;
    FILE *f = tl_proc_open("/proc/self/smaps", &buf);
    TL_CHECK(f != NULL, "smaps");
    char line[512], perms[8] = "";
    unsigned long start, end, off = 0, anon = ~0UL;
    int in = 0;
    snprintf(why, n, "no smaps entry at %p", (void *)map);
    while (fgets(line, sizeof line, f)) {
        char name[256] = "";
        if (sscanf(line, "%lx-%lx %7s %lx %*s %*s %255s", &start, &end, perms, &off, name) >= 4
            && strchr(line, '-') == line + strspn(line, "0123456789abcdef")) {
            in = start == (unsigned long)map;
            if (in && !(end == (unsigned long)map + PAGES * PAGE && !strcmp(perms, "rw-p")
                        && off == OFFSET_PAGES * PAGE && strstr(line, path))) {
                snprintf(why, n, "maps line changed: %s", line);
                break;
            }
        } else if (in && sscanf(line, "Anonymous: %lu kB", &anon) == 1) {
            if (anon == written * 4)
                why = NULL;
            else
                snprintf(why, n, "smaps Anonymous %lu kB, %lu pages written", anon, written);
            break;
        }
    }
    tl_proc_close(f, buf);
    return why;
}

static uint64_t check_smaps(const char *path)
{
    unsigned long written = 0;
    for (size_t pg = 0; pg < PAGES; pg++)
        written += own[pg] != 0;
    /* A failure that lands between two reads of smaps resumes the reading at the same offset
     * of another process's smaps (procfs offsets cannot be kept): what it then reads is torn.
     * A wrong answer is asked again; natively, and when something is really wrong, every
     * answer is the same. */
    char why[600];
    const char *wrong = NULL;
    for (int attempt = 0; attempt < 3; attempt++)
        if (!(wrong = smaps_wrong(path, written, why, sizeof why)))
            break;
    if (wrong) {
        fflush(stdout);
        FILE *m = fopen("/proc/self/maps", "r");
        char line[512];
        while (m && fgets(line, sizeof line, m))
            fprintf(stderr, "  %s", line);
        if (m)
            fclose(m);
    }
    TL_CHECK(!wrong, "%s", wrong);
    return written;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 3000);
    const char *path = argc > 2 ? argv[2] : "mem_private_file.dat";
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    TL_CHECK(fd >= 0, "create %s: %s", path, strerror(errno));
    TL_CHECK(ftruncate(fd, (PAGES + OFFSET_PAGES) * PAGE) == 0, "ftruncate");
    for (size_t pg = 0; pg < PAGES; pg++)
        write_file_page(pg, 1);
    /* "ro-first": mapped read-only, then made writable with mprotect, as a loader would. */
    int ro_first = argc > 3 && !strcmp(argv[3], "ro-first");
    map = mmap(NULL, PAGES * PAGE, ro_first ? PROT_READ : PROT_READ | PROT_WRITE, MAP_PRIVATE,
               fd, OFFSET_PAGES * PAGE);
    TL_CHECK(map != MAP_FAILED, "mmap: %s", strerror(errno));
    if (ro_first)
        TL_CHECK(mprotect(map, PAGES * PAGE, PROT_READ | PROT_WRITE) == 0, "mprotect: %s",
                 strerror(errno));

    uint64_t rng = 7, sum = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        size_t pg = tl_below(&rng, PAGES);
        switch (tl_below(&rng, 8)) {
        case 0: case 1: case 2: { /* the program writes a page: its own copy */
            uint64_t seed = tl_next(&rng) | 1;
            for (size_t i = 0; i < PAGE; i++)
                map[pg * PAGE + i] = byte_of(seed, i);
            own[pg] = seed;
            break;
        }
        case 3: /* the file changes underneath */
            write_file_page(pg, r + 1);
            break;
        case 4: { /* drop copies: those pages are the file's again */
            size_t n = 1 + tl_below(&rng, 4);
            n = pg + n > PAGES ? PAGES - pg : n;
            TL_CHECK(madvise(map + pg * PAGE, n * PAGE, MADV_DONTNEED) == 0, "madvise");
            for (size_t i = pg; i < pg + n; i++)
                own[i] = 0;
            break;
        }
        case 5: { /* read-only for a while, then writable again */
            size_t n = 1 + tl_below(&rng, 8);
            n = pg + n > PAGES ? PAGES - pg : n;
            TL_CHECK(mprotect(map + pg * PAGE, n * PAGE, PROT_READ) == 0, "mprotect ro");
            for (size_t i = pg; i < pg + n; i++)
                sum = tl_mix(sum, check_page(i));
            TL_CHECK(mprotect(map + pg * PAGE, n * PAGE, PROT_READ | PROT_WRITE) == 0, "mprotect rw");
            break;
        }
        default:
            sum = tl_mix(sum, check_page(pg));
        }
        if (r % 10 == 0) {
            for (size_t i = 0; i < PAGES; i++)
                sum = tl_mix(sum, check_page(i));
            unsigned long written = check_smaps(path);
            printf("round %lu written %lu sum %016llx\n", r, written, (unsigned long long)sum);
        }
    }
    /* The file never saw the program's writes: only its own pwrites. */
    unsigned char buf[PAGE];
    for (size_t pg = 0; pg < PAGES; pg++) {
        TL_CHECK(pread(fd, buf, PAGE, (pg + OFFSET_PAGES) * PAGE) == (ssize_t)PAGE, "pread");
        for (size_t i = 0; i < PAGE; i += 13)
            TL_CHECK(buf[i] == byte_of(file[pg] * 977 + pg, i), "file page %zu changed", pg);
    }
    close(fd);
    unlink(path);
    printf("checksum %016llx\n", (unsigned long long)sum);
    return 0;
}
