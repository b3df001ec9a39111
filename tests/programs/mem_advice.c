/*
 * mem_advice ROUNDS FAIL_POINTS
 *
 * Lasting madvise advice across failures (issue 12: smaps VmFlags such as dc, dd, hg, nh, rr
 * and sr came back cleared). Anonymous regions get MADV_DONTFORK, MADV_DONTDUMP,
 * MADV_HUGEPAGE, MADV_NOHUGEPAGE, MADV_MERGEABLE and MADV_WIPEONFORK, a private file mapping
 * MADV_RANDOM and another MADV_SEQUENTIAL (posix_madvise); a region's advice is changed
 * half-way (DONTFORK undone with DOFORK). What the kernel then reports for each region (its
 * VmFlags among those names) is the baseline: every few rounds each region must report it
 * again, and its memory must hold what was written. (Whether the kernel accepts an advice
 * for a region, e.g. KSM on shared memory, is not this test's business: only that what it
 * accepted stays.) Every 100 rounds a fork child checks that the regions with MADV_DONTFORK
 * are not in its address space and the others are (zhuque's fork remaps the parent's memory:
 * the advice must survive that too). FAIL_POINTS rounds call zhuque_fail_now().
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static const char *NAMES[] = {"dc", "dd", "hg", "nh", "mg", "wf", "rr", "sr"};
#define NNAMES (sizeof NAMES / sizeof NAMES[0])

struct region {
    const char *what;
    char *addr;
    size_t len;
    unsigned baseline;
};

/* The advice names smaps reports for the mapping that starts at `addr`, as bits of NAMES. */
static unsigned vm_flags(const char *addr)
{
    char *buf;
    FILE *f = tl_proc_open("/proc/self/smaps", &buf);
    CHECK(f, "smaps: %s", strerror(errno));
    char line[1024];
    int in = 0;
    unsigned bits = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long start, end;
        if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = start == (unsigned long)addr;
            continue;
        }
        if (in && !strncmp(line, "VmFlags:", 8)) {
            for (unsigned k = 0; k < NNAMES; k++) {
                char name[8];
                snprintf(name, sizeof name, " %s", NAMES[k]);
                if (strstr(line + 8, name))
                    bits |= 1u << k;
            }
            break;
        }
    }
    tl_proc_close(f, buf);
    return bits;
}

/* In a fork child: whether the page at `addr` is mapped (mincore fails with ENOMEM if not). */
static int mapped(const char *addr)
{
    unsigned char v;
    return mincore((void *)addr, 4096, &v) == 0;
}

static char *anon(size_t len)
{
    char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
    for (size_t i = 0; i < len; i += 4096)
        p[i] = (char)(i / 4096 + 1);
    return p;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* A file of 16 pages to map privately. */
    char path[] = "mem_advice.dat";
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    char page[4096];
    for (int i = 0; i < 16; i++) {
        memset(page, 'a' + i, sizeof page);
        CHECK(write(fd, page, sizeof page) == sizeof page, "write");
    }
    struct region r[] = {
        {"dontfork", anon(8 * 4096), 8 * 4096, 0},
        {"dontdump", anon(8 * 4096), 8 * 4096, 0},
        {"hugepage", anon(4 << 20), 4 << 20, 0},
        {"nohugepage", anon(8 * 4096), 8 * 4096, 0},
        {"mergeable", anon(8 * 4096), 8 * 4096, 0},
        {"wipeonfork", anon(8 * 4096), 8 * 4096, 0},
        {"random", NULL, 16 * 4096, 0},
        {"sequential", NULL, 16 * 4096, 0},
        {"changed", anon(8 * 4096), 8 * 4096, 0},
    };
    enum { NR = sizeof r / sizeof r[0] };
    for (int k = 6; k <= 7; k++) {
        r[k].addr = mmap(NULL, r[k].len, PROT_READ, MAP_PRIVATE, fd, 0);
        CHECK(r[k].addr != MAP_FAILED, "mmap file: %s", strerror(errno));
    }
    /* The advice; what the kernel refuses is the kernel's business (see above). */
    (void)madvise(r[0].addr, r[0].len, MADV_DONTFORK);
    (void)madvise(r[1].addr, r[1].len, MADV_DONTDUMP);
    (void)madvise(r[2].addr, r[2].len, MADV_HUGEPAGE);
    (void)madvise(r[3].addr, r[3].len, MADV_NOHUGEPAGE);
    (void)madvise(r[4].addr, r[4].len, MADV_MERGEABLE);
    (void)madvise(r[5].addr, r[5].len, MADV_WIPEONFORK);
    (void)posix_madvise(r[6].addr, r[6].len, POSIX_MADV_RANDOM);
    (void)posix_madvise(r[7].addr, r[7].len, POSIX_MADV_SEQUENTIAL);
    (void)madvise(r[8].addr, r[8].len, MADV_DONTFORK);
    for (int k = 0; k < NR; k++)
        r[k].baseline = vm_flags(r[k].addr);
    CHECK(r[0].baseline & 1, "MADV_DONTFORK not reported at all");

    unsigned long every = rounds / (points + 1);
    for (unsigned long i = 1; i <= rounds; i++) {
        if (i == rounds / 2) {
            CHECK(madvise(r[8].addr, r[8].len, MADV_DOFORK) == 0, "MADV_DOFORK");
            r[8].baseline = vm_flags(r[8].addr);
            CHECK(!(r[8].baseline & 1), "MADV_DOFORK left dc");
        }
        if (i % 50 == 0)
            for (int k = 0; k < NR; k++) {
                unsigned now = vm_flags(r[k].addr);
                CHECK(now == r[k].baseline, "round %lu: %s region: VmFlags %#x, not %#x", i,
                      r[k].what, now, r[k].baseline);
                for (size_t off = 0; off < r[k].len; off += 4096) {
                    char want = k >= 6 && k <= 7 ? (char)('a' + off / 4096)
                                                 : (char)(off / 4096 + 1);
                    CHECK(r[k].addr[off] == want, "round %lu: %s region: contents", i,
                          r[k].what);
                }
            }
        if (i % 100 == 0) {
            pid_t c = fork();
            CHECK(c >= 0, "fork: %s", strerror(errno));
            if (c == 0) {
                for (int k = 0; k < NR; k++)
                    if (mapped(r[k].addr) == !!(r[k].baseline & 1))
                        _exit(10 + k);
                _exit(0);
            }
            int st;
            CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st), "round %lu: fork child", i);
            CHECK(WEXITSTATUS(st) == 0, "round %lu: the fork child has region %s %s", i,
                  r[WEXITSTATUS(st) >= 10 ? WEXITSTATUS(st) - 10 : 0].what,
                  WEXITSTATUS(st) >= 10 && (r[WEXITSTATUS(st) - 10].baseline & 1)
                      ? "(MADV_DONTFORK)"
                      : "missing");
        }
        if (every && i % every == 0 && i / every <= points)
            zq_fail_now();
        if (i % 500 == 0)
            printf("round %lu: every region keeps its advice\n", i);
        usleep(100);
    }
    unlink(path);
    printf("done\n");
    return 0;
}
