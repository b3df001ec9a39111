/*
 * fd_unlinked_private ROUNDS FAIL_POINTS
 *
 * Private mappings of files only an fd reaches (issue 12): an unlinked temporary file kept
 * open and mapped MAP_PRIVATE writable, and a memfd mapped MAP_PRIVATE read-only. Natively a
 * private mapping shows the file's bytes in every page the program has not written through
 * it (a pwrite() to the file shows there), and its own copy of each page it wrote (a later
 * pwrite() does not). Every round writes through the fd or through the mapping and checks
 * both against shadow copies; every 1000 rounds the whole mapping is compared, and the
 * kernel's view is checked: /proc/self/smaps shows the mappings on the fds' files (same
 * inode), split where mprotect split them, with exactly the pages written through the
 * mapping as anonymous memory. FAIL_POINTS rounds call zhuque_fail_now().
 *
 * Before, such a mapping came back as a copy of its pages at the save: the fd's later writes
 * no longer showed in it, and smaps showed anonymous memory instead of the file.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define PAGE 4096ul
#define PAGES 64ul
#define SIZE (PAGES * PAGE)
/* The first pages of the unlinked file's mapping are written, then made read-only. */
#define FROZEN 4ul

struct object {
    const char *what;
    int fd;
    unsigned char *map;
    unsigned char file[SIZE]; /* what the file holds */
    unsigned char seen[SIZE]; /* what the mapping shows */
    unsigned char own[PAGES]; /* pages the mapping has its own copy of */
};

static struct object tmp = {.what = "unlinked file"}, mem = {.what = "memfd"};

static void write_fd(struct object *o, unsigned long at, unsigned char v, unsigned long r)
{
    CHECK(pwrite(o->fd, &v, 1, (off_t)at) == 1, "round %lu: %s: pwrite: %s", r, o->what,
          strerror(errno));
    o->file[at] = v;
    if (!o->own[at / PAGE])
        o->seen[at] = v;
}

static void write_map(struct object *o, unsigned long at, unsigned char v)
{
    o->map[at] = v;
    o->own[at / PAGE] = 1;
    o->seen[at] = v;
}

static void check_byte(struct object *o, unsigned long at, unsigned long r)
{
    unsigned char got = 0;
    CHECK(o->map[at] == o->seen[at], "round %lu: %s: the mapping has %#x at %lu, not %#x", r,
          o->what, o->map[at], at, o->seen[at]);
    CHECK(pread(o->fd, &got, 1, (off_t)at) == 1 && got == o->file[at],
          "round %lu: %s: the fd reads %#x at %lu, not %#x", r, o->what, got, at, o->file[at]);
}

/* The mapping's VMAs in smaps: how many, whether each is on the fd's inode, anonymous kB.
 * The fd and smaps are read in one process: a failure between the two (a resume makes the
 * file again, with another inode) makes it read both again. */
static void check_kernel_view(struct object *o, unsigned long r, int parts)
{
    struct stat st;
    char *buf;
    FILE *f;
    for (;;) {
        unsigned long failures = zq_failures();
        CHECK(fstat(o->fd, &st) == 0, "%s: fstat: %s", o->what, strerror(errno));
        f = tl_proc_open("/proc/self/smaps", &buf);
        CHECK(f, "smaps: %s", strerror(errno));
        if (zq_failures() == failures)
            break;
        tl_proc_close(f, buf);
    }
    char line[512];
    unsigned long start, end, ino, anon_kb = 0;
    int in = 0, vmas = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long kb;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s %*x %*x:%*x %lu", &start, &end, perms, &ino) == 4) {
            in = start >= (unsigned long)o->map && end <= (unsigned long)o->map + SIZE;
            if (in) {
                vmas++;
                CHECK(ino == (unsigned long)st.st_ino,
                      "round %lu: %s: the mapping at %lx is inode %lu, the fd's is %lu", r,
                      o->what, start, ino, (unsigned long)st.st_ino);
                CHECK(perms[3] == 'p', "round %lu: %s: the mapping is not private", r,
                      o->what);
            }
        } else if (in && sscanf(line, "Anonymous: %lu kB", &kb) == 1) {
            anon_kb += kb;
        }
    }
    tl_proc_close(f, buf);
    unsigned long own = 0;
    for (unsigned long p = 0; p < PAGES; p++)
        own += o->own[p];
    CHECK(vmas == parts, "round %lu: %s: %d mappings, not %d", r, o->what, vmas, parts);
    CHECK(anon_kb == own * 4, "round %lu: %s: %lu kB anonymous, %lu pages written", r,
          o->what, anon_kb, own);
}

static void setup(struct object *o, int fd, int prot)
{
    o->fd = fd;
    CHECK(ftruncate(fd, SIZE) == 0, "%s: ftruncate: %s", o->what, strerror(errno));
    o->map = mmap(NULL, SIZE, prot, MAP_PRIVATE, fd, 0);
    CHECK(o->map != MAP_FAILED, "%s: mmap: %s", o->what, strerror(errno));
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 40000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fd = open(".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        fd = open("private-arena", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        CHECK(fd >= 0 && unlink("private-arena") == 0, "arena: %s", strerror(errno));
    }
    setup(&tmp, fd, PROT_READ | PROT_WRITE);
    setup(&mem, memfd_create("zq-private", MFD_CLOEXEC), PROT_READ);
    for (unsigned long p = 0; p < FROZEN; p++)
        write_map(&tmp, p * PAGE + p, (unsigned char)(0xa0 + p));
    CHECK(mprotect(tmp.map, FROZEN * PAGE, PROT_READ) == 0, "mprotect: %s", strerror(errno));

    uint64_t seed = 11, sum = 0;
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        unsigned long at = tl_below(&seed, SIZE);
        unsigned char v = (unsigned char)tl_next(&seed);
        /* Mostly through the fd, so most pages stay the file's; now and then a page is written
         * through the (writable part of the) mapping and becomes the mapping's own. */
        if (at / PAGE >= FROZEN && tl_below(&seed, 64) == 0)
            write_map(&tmp, at, v);
        else
            write_fd(&tmp, at, v, r);
        write_fd(&mem, tl_below(&seed, SIZE), v, r);
        check_byte(&tmp, tl_below(&seed, SIZE), r);
        check_byte(&mem, tl_below(&seed, SIZE), r);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % 1000 == 0) {
            CHECK(memcmp(tmp.map, tmp.seen, SIZE) == 0, "round %lu: unlinked file's mapping", r);
            CHECK(memcmp(mem.map, mem.seen, SIZE) == 0, "round %lu: memfd's mapping", r);
            check_kernel_view(&tmp, r, 2);
            check_kernel_view(&mem, r, 1);
            sum = tl_hash(sum, tmp.map, SIZE);
            sum = tl_hash(sum, mem.map, SIZE);
        }
        if (r % 10000 == 0)
            printf("round %lu: hash %016llx\n", r, (unsigned long long)sum);
    }
    printf("done\n");
    return 0;
}
