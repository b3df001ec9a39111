/*
 * fd_removed_dev ROUNDS FAIL_POINTS
 *
 * fds of device nodes removed while open (issue 12; needs CAP_MKNOD): the program makes two
 * nodes in /dev (of /dev/null's and /dev/zero's devices), opens them and removes them, as
 * udev and container tools do. Every round checks what the kernel reports: a character
 * device with no links and its device number, its permission bits, a /proc/self/fd link
 * ending in " (deleted)", and that it still is that device (writes vanish into null, zero
 * reads zeros). FAIL_POINTS rounds call zhuque_fail_now(). With the old runtime both were
 * EBADF placeholders.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static int make(const char *what, int minor, int flags)
{
    char path[128];
    snprintf(path, sizeof path, "/dev/zq-test-%d-%s", (int)getpid(), what);
    unlink(path);
    CHECK(mknod(path, S_IFCHR | 0620, makedev(1, minor)) == 0, "mknod %s (needs CAP_MKNOD): %s",
          path, strerror(errno));
    int fd = open(path, flags | O_CLOEXEC);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    CHECK(unlink(path) == 0, "unlink: %s", strerror(errno));
    return fd;
}

static void check(int fd, int minor, unsigned long r)
{
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "round %lu: fstat: %s", r, strerror(errno));
    CHECK(S_ISCHR(st.st_mode) && st.st_nlink == 0 && st.st_rdev == makedev(1, minor) &&
              (st.st_mode & 07777) == 0620,
          "round %lu: mode %o, rdev %lx, %lu links", r, st.st_mode, (unsigned long)st.st_rdev,
          (unsigned long)st.st_nlink);
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, target, sizeof target - 1);
    CHECK(len > 10, "round %lu: readlink: %s", r, strerror(errno));
    target[len] = 0;
    CHECK(!strcmp(target + len - 10, " (deleted)"), "round %lu: link %s", r, target);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    umask(0);
    int null = make("null", 3, O_WRONLY);
    int zero = make("zero", 5, O_RDONLY);
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        check(null, 3, r);
        check(zero, 5, r);
        char buf[64];
        memset(buf, 0x77, sizeof buf);
        CHECK(write(null, buf, sizeof buf) == sizeof buf, "round %lu: write: %s", r,
              strerror(errno));
        CHECK(read(zero, buf, sizeof buf) == sizeof buf, "round %lu: read: %s", r,
              strerror(errno));
        for (unsigned i = 0; i < sizeof buf; i++)
            CHECK(buf[i] == 0, "round %lu: zero gave %d", r, buf[i]);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % 100 == 0)
            usleep(1000);
        if (r % 125 == 0)
            printf("round %lu: both removed device nodes as they were\n", r);
    }
    printf("fd_removed_dev: done\n");
    return 0;
}
