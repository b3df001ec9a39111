/*
 * map_shared_file ROUNDS
 *
 * Shared file mappings and their write permission (issue 12: "a shared file mapping's write
 * permission comes back read-only underneath, mprotect(PROT_WRITE) gives EACCES"). The
 * program creates map_shared_file.dat (16 pages) and maps it three times:
 *   A: opened O_RDWR, mapped MAP_SHARED|PROT_READ: made writable with mprotect for each
 *      write, read-only again after it;
 *   B: the same file mapped MAP_SHARED|PROT_READ|PROT_WRITE;
 *   C: opened O_RDONLY, mapped MAP_SHARED|PROT_READ: mprotect(PROT_WRITE) must fail with
 *      EACCES, after a resume as natively.
 * Each round writes one word through B (and every 50th round one through A, made writable
 * for it) and checks that A, B, C and pread all see them. Ends with a checksum of the file,
 * which it removes.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL
#define PAGES 16UL
#define SIZE (PAGE * PAGES)

static int rw, ro;
static unsigned char *a, *b, *c;

static void check_word(size_t at, uint64_t want, unsigned long r)
{
    uint64_t va, vb, vc, vf;
    memcpy(&va, a + at, 8);
    memcpy(&vb, b + at, 8);
    memcpy(&vc, c + at, 8);
    TL_CHECK(pread(rw, &vf, 8, (off_t)at) == 8, "pread");
    TL_CHECK(va == want && vb == want && vc == want && vf == want,
             "round %lu: offset %zu: A %llx B %llx C %llx file %llx, not %llx", r, at,
             (unsigned long long)va, (unsigned long long)vb, (unsigned long long)vc,
             (unsigned long long)vf, (unsigned long long)want);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 200000);
    const char *path = "map_shared_file.dat";
    rw = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    TL_CHECK(rw >= 0 && ftruncate(rw, SIZE) == 0, "create %s", path);
    ro = open(path, O_RDONLY | O_CLOEXEC);
    TL_CHECK(ro >= 0, "open read-only");
    a = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, rw, 0);
    b = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, rw, 0);
    c = mmap(NULL, SIZE, PROT_READ, MAP_SHARED, ro, 0);
    TL_CHECK(a != MAP_FAILED && b != MAP_FAILED && c != MAP_FAILED, "mmap");

    uint64_t seed = 99, h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        size_t at_a = (size_t)tl_below(&seed, SIZE / 8) * 8;
        size_t at_b = (size_t)tl_below(&seed, SIZE / 8) * 8;
        uint64_t va = tl_next(&seed), vb = tl_next(&seed);
        if (r % 50 == 0) {
            unsigned char *page = a + (at_a & ~(PAGE - 1));
            TL_CHECK(mprotect(page, PAGE, PROT_READ | PROT_WRITE) == 0,
                     "round %lu: mprotect(PROT_WRITE) of the read-only view: %s", r,
                     strerror(errno));
            memcpy(a + at_a, &va, 8);
            TL_CHECK(mprotect(page, PAGE, PROT_READ) == 0, "mprotect back");
        } else {
            memcpy(b + at_a, &va, 8);
        }
        if (at_b != at_a)
            memcpy(b + at_b, &vb, 8);
        else
            vb = va;
        check_word(at_a, at_b == at_a ? vb : va, r);
        check_word(at_b, vb, r);
        if (r % 1000 == 0) {
            TL_CHECK(mprotect(c, PAGE, PROT_READ | PROT_WRITE) == -1 && errno == EACCES,
                     "round %lu: the read-only file's mapping became writable", r);
        }
        h = tl_mix(h, va ^ vb);
        if (r % (rounds / 8 ? rounds / 8 : 1) == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    uint64_t fh = TL_HASH_INIT;
    static unsigned char buf[SIZE];
    TL_CHECK(pread(rw, buf, SIZE, 0) == (ssize_t)SIZE, "read back");
    fh = tl_hash(fh, buf, SIZE);
    TL_CHECK(unlink(path) == 0, "unlink");
    printf("done h=%016llx file=%016llx\n", (unsigned long long)h, (unsigned long long)fh);
    return 0;
}
