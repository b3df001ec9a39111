/*
 * fd_fanotify ROUNDS FAIL_POINTS
 *
 * fanotify groups (issue 12; needs CAP_SYS_ADMIN, as fanotify does):
 *  - A: an inode mark on the file watched/log (FAN_MODIFY | FAN_CLOSE_WRITE), events with fds;
 *  - B: FAN_REPORT_FID, an inode mark on the directory watched (FAN_CREATE | FAN_DELETE |
 *    FAN_ONDIR);
 *  - C: a mount mark on the working directory's mount (FAN_CLOSE_WRITE) with an ignored mask
 *    on watched/quiet.
 * Every round writes log and quiet and creates and removes a file in watched; A must report
 * log's modification and close, B the creation and removal, C the close of log (events of
 * other processes on the mount are skipped) and never one of quiet. Each group's fdinfo
 * (init flags, each mark's flags and masks) must stay as set up. FAIL_POINTS rounds call
 * zhuque_fail_now(). Events queued at a failure are lost (the kernel takes none back): a
 * round in which a failure happened does not require them. Before, every group came back as
 * an EBADF placeholder.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/fanotify.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static char cwd[PATH_MAX];
static char fdinfo_at_start[3][4096];

/* The flags line and every mark's mflags, mask and ignored_mask of group fd. */
static void fdinfo_summary(int fd, char *out, size_t cap)
{
    char path[64], text[8192];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(f >= 0, "open %s: %s", path, strerror(errno));
    ssize_t n = read(f, text, sizeof text - 1);
    close(f);
    CHECK(n > 0, "read %s", path);
    text[n] = 0;
    out[0] = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        if (strncmp(line, "fanotify ", 9))
            continue;
        const char *keys[] = {" flags:", " event-flags:", " mflags:", " mask:", " ignored_mask:"};
        for (unsigned k = 0; k < sizeof keys / sizeof *keys; k++) {
            char *at = strstr(line, keys[k]);
            if (!at)
                continue;
            size_t len = strcspn(at + 1, " ");
            strncat(out, at, len + 1 < cap - strlen(out) - 1 ? len + 1 : 0);
        }
        strncat(out, "|", cap - strlen(out) - 1);
    }
}

static int wait_event(int fd)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 200) == 1; /* events are queued by the call that causes them */
}

/* Reads group fd's events until `want` bits were seen for a file under our directory;
 * returns the bits seen. Events with fds get checked against `must_not` (quiet). */
static unsigned long long collect(int fd, unsigned long long want, const char *must_not,
                                  int with_fds, unsigned long r)
{
    unsigned long long seen = 0;
    char buf[16384] __attribute__((aligned(8)));
    while ((seen & want) != want && wait_event(fd)) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        CHECK(n > 0, "round %lu: read fanotify: %s", r, strerror(errno));
        struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
        for (; FAN_EVENT_OK(m, n); m = FAN_EVENT_NEXT(m, n)) {
            if (m->mask & FAN_Q_OVERFLOW)
                continue;
            if (!with_fds) {
                seen |= m->mask;
                continue;
            }
            if (m->fd < 0)
                continue;
            char link[64], target[PATH_MAX];
            snprintf(link, sizeof link, "/proc/self/fd/%d", m->fd);
            ssize_t len = readlink(link, target, sizeof target - 1);
            close(m->fd);
            if (len <= 0)
                continue;
            target[len] = 0;
            if (strncmp(target, cwd, strlen(cwd)))
                continue; /* another process's file on the mount */
            CHECK(!must_not || strcmp(target + strlen(target) - strlen(must_not), must_not),
                  "round %lu: an event %#llx on %s, which is ignored", r,
                  (unsigned long long)m->mask, target);
            seen |= m->mask;
        }
    }
    return seen;
}

static void write_file(const char *name, unsigned long r)
{
    int f = open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(f >= 0 && write(f, &r, sizeof r) == sizeof r && close(f) == 0, "write %s: %s", name,
          strerror(errno));
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 400);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK(getcwd(cwd, sizeof cwd), "getcwd");
    CHECK(mkdir("watched", 0700) == 0, "mkdir: %s", strerror(errno));
    write_file("watched/log", 0);
    write_file("watched/quiet", 0);
    int base = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK;
    int a = fanotify_init(base, O_RDONLY | O_CLOEXEC);
    int b = fanotify_init(base | FAN_REPORT_FID, O_RDONLY);
    int c = fanotify_init(base, O_RDONLY | O_CLOEXEC);
    CHECK(a >= 0 && b >= 0 && c >= 0, "fanotify_init: %s (needs CAP_SYS_ADMIN)",
          strerror(errno));
    CHECK(fanotify_mark(a, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD,
                        "watched/log") == 0,
          "mark a: %s", strerror(errno));
    CHECK(fanotify_mark(b, FAN_MARK_ADD, FAN_CREATE | FAN_DELETE | FAN_ONDIR, AT_FDCWD,
                        "watched") == 0,
          "mark b: %s", strerror(errno));
    CHECK(fanotify_mark(c, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_CLOSE_WRITE, AT_FDCWD, ".") == 0,
          "mark c: %s", strerror(errno));
    CHECK(fanotify_mark(c, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
                        FAN_CLOSE_WRITE, AT_FDCWD, "watched/quiet") == 0,
          "ignore quiet: %s", strerror(errno));
    int groups[3] = {a, b, c};
    for (int g = 0; g < 3; g++)
        fdinfo_summary(groups[g], fdinfo_at_start[g], sizeof fdinfo_at_start[g]);

    unsigned long every = rounds / (points + 1), complete = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        for (int g = 0; g < 3; g++) {
            char now[4096];
            fdinfo_summary(groups[g], now, sizeof now);
            CHECK(!strcmp(now, fdinfo_at_start[g]), "round %lu: group %c is now %s, was %s", r,
                  'A' + g, now, fdinfo_at_start[g]);
        }
        unsigned long failures = zq_failures();
        write_file("watched/quiet", r);
        write_file("watched/log", r);
        char name[64];
        snprintf(name, sizeof name, "watched/f%lu", r);
        write_file(name, r);
        CHECK(unlink(name) == 0, "unlink");
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now(); /* events queued on all three */
        unsigned long long sa = collect(a, FAN_MODIFY | FAN_CLOSE_WRITE, NULL, 1, r);
        unsigned long long sb = collect(b, FAN_CREATE | FAN_DELETE, NULL, 0, r);
        unsigned long long sc = collect(c, FAN_CLOSE_WRITE, "/quiet", 1, r);
        int all = (sa & (FAN_MODIFY | FAN_CLOSE_WRITE)) == (FAN_MODIFY | FAN_CLOSE_WRITE) &&
                  (sb & (FAN_CREATE | FAN_DELETE)) == (FAN_CREATE | FAN_DELETE) &&
                  (sc & FAN_CLOSE_WRITE);
        CHECK(all || zq_failures() != failures,
              "round %lu: events missing without a failure: A %#llx B %#llx C %#llx", r, sa, sb,
              sc);
        complete += all;
        if (r % 100 == 0)
            printf("round %lu: marks unchanged\n", r);
    }
    CHECK(complete >= rounds / 2, "only %lu of %lu rounds saw every event", complete, rounds);
    printf("done\n");
    return 0;
}
