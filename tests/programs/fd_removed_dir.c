/*
 * fd_removed_dir ROUNDS FAIL_POINTS
 *
 * fds of directories removed while open (issue 12): one opened for reading (mode 0750) and
 * one O_PATH, both removed with rmdir. Every round checks what the kernel reports of them: a
 * directory with no links and its permission bits, ENOENT for listing it (getdents64) and
 * for a file created in it, a /proc/self/fd link ending in " (deleted)".
 * FAIL_POINTS rounds call zhuque_fail_now(). With the old runtime both came back as EBADF
 * placeholders.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static void check(int fd, unsigned mode, int listable, unsigned long r)
{
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "round %lu: fstat: %s", r, strerror(errno));
    CHECK(S_ISDIR(st.st_mode) && st.st_nlink == 0 && (st.st_mode & 07777) == mode,
          "round %lu: mode %o, %lu links", r, st.st_mode, (unsigned long)st.st_nlink);
    if (listable) {
        char buf[4096];
        CHECK(lseek(fd, 0, SEEK_SET) == 0, "round %lu: lseek: %s", r, strerror(errno));
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        CHECK(n < 0 && errno == ENOENT, "round %lu: getdents64 gave %ld (%s)", r, n,
              strerror(errno));
    }
    int made = openat(fd, "new", O_CREAT | O_WRONLY, 0600);
    CHECK(made < 0 && errno == ENOENT, "round %lu: creating in it gave %d (%s)", r, made,
          strerror(errno));
    char link[64], target[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, target, sizeof target - 1);
    CHECK(len > 10, "round %lu: readlink: %s", r, strerror(errno));
    target[len] = 0;
    CHECK(!strcmp(target + len - 10, " (deleted)"), "round %lu: link %s", r, target);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 3000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    umask(0);
    CHECK(mkdir("gone", 0750) == 0 && mkdir("gone-too", 0700) == 0, "mkdir: %s",
          strerror(errno));
    int fd = open("gone", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int path = open("gone-too", O_PATH | O_DIRECTORY | O_CLOEXEC);
    CHECK(fd >= 0 && path >= 0, "open: %s", strerror(errno));
    CHECK(rmdir("gone") == 0 && rmdir("gone-too") == 0, "rmdir: %s", strerror(errno));
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        check(fd, 0750, 1, r);
        check(path, 0700, 0, r);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % 100 == 0)
            usleep(1000);
        if (r % 250 == 0)
            printf("round %lu: both removed directories as they were\n", r);
    }
    printf("fd_removed_dir: done\n");
    return 0;
}
