/*
 * fd_unkeepable MODE [ARG]
 *
 * Kernel objects the runtime cannot make again (issue 12; README, limits): an io_uring
 * instance, a userfaultfd, a perf event counter, a BPF map. A program holding one cannot be
 * saved: the save fails naming it and the program is stopped unsaved (exit 125), never
 * resumed with an fd that silently became something else. Making one prints one warning per
 * kind when the program makes it.
 *
 *   probe ROUNDS    makes one object of each kind and closes it at once (as libuv and
 *                   feature probes do), checking each was what it should be, then computes
 *                   ROUNDS rounds: failures after the probe save and resume like any other.
 *   hold KIND       makes an object of KIND and keeps it, prints "holding KIND" and waits
 *                   (100 s): a failure must end the program unsaved. KIND: io_uring,
 *                   userfaultfd, perf_event, bpf_map, io_uring_mapped (the rings stay mapped,
 *                   the fd is closed), child_io_uring (a forked child holds the ring for
 *                   1.5 s; the parent waits for it and prints how it ended: a failure
 *                   meanwhile leaves the child out of the save, and after the resume the
 *                   parent sees it killed by SIGKILL).
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static int make_io_uring(struct io_uring_params *p)
{
    memset(p, 0, sizeof *p);
    int fd = (int)syscall(__NR_io_uring_setup, 4, p);
    CHECK(fd >= 0, "io_uring_setup: %s (kernel.io_uring_disabled?)", strerror(errno));
    return fd;
}

static int make(const char *kind)
{
    if (!strcmp(kind, "io_uring")) {
        struct io_uring_params p;
        return make_io_uring(&p);
    }
    if (!strcmp(kind, "userfaultfd")) {
        int fd = (int)syscall(__NR_userfaultfd, O_CLOEXEC | O_NONBLOCK);
        CHECK(fd >= 0, "userfaultfd: %s", strerror(errno));
        return fd;
    }
    if (!strcmp(kind, "perf_event")) {
        struct perf_event_attr a = {0};
        a.size = sizeof a;
        a.type = PERF_TYPE_SOFTWARE;
        a.config = PERF_COUNT_SW_TASK_CLOCK;
        a.exclude_kernel = 1;
        int fd = (int)syscall(__NR_perf_event_open, &a, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
        CHECK(fd >= 0, "perf_event_open: %s (kernel.perf_event_paranoid?)", strerror(errno));
        return fd;
    }
    if (!strcmp(kind, "bpf_map")) {
        union bpf_attr a;
        memset(&a, 0, sizeof a);
        a.map_type = BPF_MAP_TYPE_ARRAY;
        a.key_size = 4;
        a.value_size = 8;
        a.max_entries = 4;
        int fd = (int)syscall(__NR_bpf, BPF_MAP_CREATE, &a, sizeof a);
        CHECK(fd >= 0, "bpf(BPF_MAP_CREATE): %s", strerror(errno));
        return fd;
    }
    CHECK(0, "unknown kind %s", kind);
    return -1;
}

/* What /proc/self/fd says fd `fd` is. */
static void check_link(int fd, const char *want)
{
    char path[64], link[256];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(path, link, sizeof link - 1);
    CHECK(len > 0, "readlink fd %d: %s", fd, strerror(errno));
    link[len] = '\0';
    CHECK(!strcmp(link, want), "fd %d is %s, not %s", fd, link, want);
}

static int probe(unsigned long rounds)
{
    static const char *kinds[][2] = {
        {"io_uring", "anon_inode:[io_uring]"},
        {"userfaultfd", "anon_inode:[userfaultfd]"},
        {"perf_event", "anon_inode:[perf_event]"},
        {"bpf_map", "anon_inode:bpf-map"},
    };
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        int fd = make(kinds[k][0]);
        check_link(fd, kinds[k][1]);
        close(fd);
        printf("probed %s\n", kinds[k][0]);
    }
    uint64_t h = TL_HASH_INIT;
    static uint64_t block[8192];
    for (unsigned long r = 1; r <= rounds; r++) {
        for (size_t i = 0; i < sizeof block / sizeof block[0]; i++)
            block[i] = tl_mix(block[i], r ^ i);
        h = tl_hash(h, block, sizeof block);
        if (r % (rounds / 10 ? rounds / 10 : 1) == 0)
            printf("round %lu: %016llx\n", r, (unsigned long long)h);
    }
    return 0;
}

static void wait_here(const char *kind)
{
    printf("holding %s\n", kind);
    fflush(stdout);
    for (int i = 0; i < 1000; i++)
        usleep(100 * 1000);
}

static int hold(const char *kind)
{
    if (!strcmp(kind, "io_uring_mapped")) {
        struct io_uring_params p;
        int fd = make_io_uring(&p);
        size_t size = p.sq_off.array + p.sq_entries * sizeof(unsigned);
        void *ring = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                          IORING_OFF_SQ_RING);
        CHECK(ring != MAP_FAILED, "mmap of the io_uring: %s", strerror(errno));
        close(fd);
        wait_here(kind);
        return 0;
    }
    if (!strcmp(kind, "child_io_uring")) {
        pid_t child = fork();
        CHECK(child >= 0, "fork: %s", strerror(errno));
        if (child == 0) {
            make("io_uring");
            printf("holding %s\n", kind);
            fflush(stdout);
            usleep(1500 * 1000);
            _exit(0);
        }
        int status;
        while (waitpid(child, &status, 0) != child)
            CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
        if (WIFSIGNALED(status))
            printf("child killed by signal %d\n", WTERMSIG(status));
        else
            printf("child exited %d\n", WEXITSTATUS(status));
        return 0;
    }
    make(kind);
    wait_here(kind);
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK(argc >= 2, "usage: fd_unkeepable probe ROUNDS | hold KIND");
    if (!strcmp(argv[1], "probe"))
        return probe(tl_arg(argc, argv, 2, 20000));
    CHECK(argc >= 3 && !strcmp(argv[1], "hold"), "usage: fd_unkeepable hold KIND");
    return hold(argv[2]);
}
