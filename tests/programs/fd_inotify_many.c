/*
 * fd_inotify_many N ROUNDS FAIL_POINTS
 *
 * One inotify instance with N watches (more than the 4096 the runtime's shadow table once
 * held), one per directory of a fresh temporary tree, with descriptors 1..N. Each round
 * creates a file in a directory chosen by a PRNG and reads the IN_CREATE event, which must
 * carry that directory's descriptor and the file's name. FAIL_POINTS rounds spread over the
 * run call zhuque_fail_now(). An event queued at a failure is lost (a documented limit): a
 * round that sees no event and a failure since its create makes another file.
 * Output: a line every ROUNDS/8 rounds and a checksum of the names and descriptors seen.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

static char base[64];

static void path_of(char *buf, size_t len, unsigned long dir, const char *file)
{
    if (file)
        snprintf(buf, len, "%s/d%lu/%s", base, dir, file);
    else
        snprintf(buf, len, "%s/d%lu", base, dir);
}

/* The next IN_CREATE event within `ms`, through EINTR; 0 when none came. */
static int next_event(int in, int *wd, char *name, size_t len, int ms)
{
    char buf[4096] __attribute__((aligned(8)));
    struct pollfd p = {.fd = in, .events = POLLIN};
    int r = poll(&p, 1, ms);
    if (r < 0 && errno == EINTR)
        r = poll(&p, 1, ms);
    if (r <= 0)
        return 0;
    ssize_t n = read(in, buf, sizeof buf);
    /* A failure between the poll and the read loses the event poll saw (queued events are
     * not kept): no event, as for a poll that saw none. */
    if (n < 0 && errno == EAGAIN)
        return 0;
    TL_CHECK(n > 0, "read inotify: %s", strerror(errno));
    struct inotify_event *e = (struct inotify_event *)buf;
    TL_CHECK(n == (ssize_t)(sizeof *e + e->len), "one event per read expected, got %zd bytes", n);
    *wd = e->wd;
    size_t k = strnlen(e->name, e->len);
    if (k >= len)
        k = len - 1;
    memcpy(name, e->name, k);
    name[k] = '\0';
    return 1;
}

static void make_file(unsigned long dir, const char *name)
{
    char p[256];
    path_of(p, sizeof p, dir, name);
    int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    TL_CHECK(fd >= 0, "create %s: %s", p, strerror(errno));
    close(fd);
}

int main(int argc, char **argv)
{
    unsigned long n = tl_arg(argc, argv, 1, 5000);
    unsigned long rounds = tl_arg(argc, argv, 2, 400);
    unsigned long points = tl_arg(argc, argv, 3, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);

    snprintf(base, sizeof base, "/dev/shm/zq-inotify-XXXXXX");
    TL_CHECK(mkdtemp(base) != NULL, "mkdtemp: %s", strerror(errno));
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    TL_CHECK(in >= 0, "inotify_init1: %s", strerror(errno));
    for (unsigned long i = 0; i < n; i++) {
        char p[256];
        path_of(p, sizeof p, i, NULL);
        TL_CHECK(mkdir(p, 0700) == 0, "mkdir %s: %s", p, strerror(errno));
        int wd = inotify_add_watch(in, p, IN_CREATE);
        TL_CHECK(wd == (int)(i + 1), "watch %lu got descriptor %d: %s", i, wd, strerror(errno));
    }
    printf("fd_inotify_many: %lu watches, %lu rounds, %lu fail points\n", n, rounds, points);

    unsigned long *used = calloc(rounds, sizeof *used);
    TL_CHECK(used != NULL, "calloc");
    uint64_t s = 42, h = TL_HASH_INIT;
    unsigned long every = points ? rounds / (points + 1) : 0, failed = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        if (every && r % every == 0 && failed < points) {
            failed++;
            zq_fail_now();
        }
        unsigned long dir = tl_below(&s, n);
        used[r - 1] = dir;
        char want[32], got[64];
        snprintf(want, sizeof want, "f%lu", r);
        int wd = 0, tries = 0;
        for (;;) {
            unsigned long before = zq_failures();
            make_file(dir, want);
            if (next_event(in, &wd, got, sizeof got, 5000))
                break;
            /* The event was queued when a failure came: lost. Make it again. */
            TL_CHECK(zq_failures() != before && ++tries < 5, "no event for round %lu (dir %lu)", r,
                     dir);
            char p[256];
            path_of(p, sizeof p, dir, want);
            unlink(p);
        }
        TL_CHECK(wd == (int)(dir + 1) && !strcmp(got, want),
                 "round %lu: event wd %d name %s, expected wd %lu name %s", r, wd, got, dir + 1,
                 want);
        h = tl_mix(tl_hash(h, got, strlen(got)), (uint64_t)wd);
        if (r % (rounds / 8 ? rounds / 8 : 1) == 0)
            printf("round %lu: %016llx\n", r, (unsigned long long)h);
    }
    printf("checksum %016llx\n", (unsigned long long)h);
    for (unsigned long r = 1; r <= rounds; r++) {
        char f[32], q[256];
        snprintf(f, sizeof f, "f%lu", r);
        path_of(q, sizeof q, used[r - 1], f);
        unlink(q);
    }
    for (unsigned long i = 0; i < n; i++) {
        char p[256];
        path_of(p, sizeof p, i, NULL);
        rmdir(p);
    }
    free(used);
    rmdir(base);
    return 0;
}
