/*
 * fd_unsupported ROUNDS FAIL_POINTS
 *
 * Kernel objects the runtime cannot recreate — an io_uring instance, a userfaultfd, a perf
 * event counter — must never come back silently as something else (issue 12; README,
 * limits): after a resume each fd number is still open, but is an fd that fails I/O with
 * EBADF (an O_PATH fd of "/"), and the resume says so, one warning per object (the test
 * reads them on stderr). Before any failure each is what it is: the ring takes an
 * io_uring_enter, the counter reads, /proc/self/fd names each kind. Every round checks the
 * state that goes with the failures so far; FAIL_POINTS rounds call zhuque_fail_now().
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static void link_of(int fd, char *out, size_t n)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(path, out, n - 1);
    CHECK(len > 0, "readlink fd %d: %s", fd, strerror(errno));
    out[len] = '\0';
}

/* What fd `fd` must be: the object of kind `name` until a failure after its creation
 * (`born`: the failures when it was made), a placeholder after. What it is, and the failures
 * so far, are read again when a failure came in between. */
static void check(int fd, const char *name, unsigned long born, unsigned long r)
{
    char link[256];
    unsigned long failures;
    int flags, rd, rd_errno;
    do {
        failures = zq_failures();
        link_of(fd, link, sizeof link);
        flags = fcntl(fd, F_GETFD);
        char b[8];
        rd = failures != born ? (int)read(fd, b, sizeof b) : 0;
        rd_errno = errno;
    } while (zq_failures() != failures);
    CHECK(flags == FD_CLOEXEC, "round %lu: fd %d (%s) is not open close-on-exec", r, fd, name);
    if (failures == born) {
        char want[64];
        snprintf(want, sizeof want, "anon_inode:[%s]", name);
        CHECK(!strcmp(link, want), "round %lu: fd %d is %s, not %s", r, fd, link, want);
        return;
    }
    CHECK(!strcmp(link, "/"), "round %lu: the %s fd %d came back as %s, not a placeholder", r,
          name, fd, link);
    CHECK(rd == -1 && rd_errno == EBADF, "round %lu: read of the %s placeholder: %s", r, name,
          strerror(rd_errno));
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 300);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* Each object with the failures before its creation; made again when a failure came
     * while it was made (then whether the save had it is not known). */
    int ring, uffd, counter;
    unsigned long ring_born, uffd_born, counter_born;
    do {
        ring_born = zq_failures();
        struct io_uring_params p = {0};
        ring = (int)syscall(__NR_io_uring_setup, 4, &p);
        CHECK(ring >= 0, "io_uring_setup: %s (kernel.io_uring_disabled?)", strerror(errno));
        CHECK(fcntl(ring, F_SETFD, FD_CLOEXEC) == 0, "cloexec");
        if (zq_failures() != ring_born)
            close(ring);
    } while (zq_failures() != ring_born);
    do {
        uffd_born = zq_failures();
        uffd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
        CHECK(uffd >= 0, "userfaultfd: %s", strerror(errno));
        if (zq_failures() != uffd_born)
            close(uffd);
    } while (zq_failures() != uffd_born);
    do {
        counter_born = zq_failures();
        struct perf_event_attr a = {0};
        a.size = sizeof a;
        a.type = PERF_TYPE_SOFTWARE;
        a.config = PERF_COUNT_SW_TASK_CLOCK;
        a.exclude_kernel = 1;
        counter = (int)syscall(__NR_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
        CHECK(counter >= 0, "perf_event_open: %s (kernel.perf_event_paranoid?)", strerror(errno));
        if (zq_failures() != counter_born)
            close(counter);
    } while (zq_failures() != counter_born);

    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        check(ring, "io_uring", ring_born, r);
        check(uffd, "userfaultfd", uffd_born, r);
        check(counter, "perf_event", counter_born, r);
        /* The objects work until the first failure (a failure during the calls makes them
         * fail: then the failure count has changed). */
        unsigned long failures = zq_failures();
        if (failures == ring_born && failures == counter_born) {
            long entered = syscall(__NR_io_uring_enter, ring, 0, 0, 0, NULL, 0);
            int e = errno;
            unsigned long long v;
            ssize_t got = read(counter, &v, sizeof v);
            int e2 = errno;
            if (zq_failures() == failures) {
                CHECK(entered == 0, "io_uring_enter: %s", strerror(e));
                CHECK(got == sizeof v, "read counter: %s", strerror(e2));
            }
        }
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % (rounds / 4 ? rounds / 4 : 1) == 0)
            printf("round %lu: io_uring, userfaultfd and perf_event fds as expected\n", r);
    }
    printf("done\n");
    return 0;
}
