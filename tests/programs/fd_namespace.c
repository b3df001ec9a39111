/*
 * fd_namespace ROUNDS FAIL_POINTS
 *
 * Namespace fds across failures (issue 12): fds of the process's own namespaces opened from
 * /proc/self/ns (cgroup, ipc, mnt, net, pid, pid_for_children, user, uts; net also O_PATH).
 * Every round checks what the kernel reports of each: the same namespace as the process's
 * own of that kind (fstat against stat of /proc/self/ns/KIND), its link text, its type
 * (ioctl NS_GET_NSTYPE); and that setns into the UTS one works. FAIL_POINTS rounds call
 * zhuque_fail_now(). With the old runtime each was an EBADF placeholder.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static const struct {
    const char *file, *kind;
    int type;
} NS[] = {
    {"cgroup", "cgroup", CLONE_NEWCGROUP}, {"ipc", "ipc", CLONE_NEWIPC},
    {"mnt", "mnt", CLONE_NEWNS},           {"net", "net", CLONE_NEWNET},
    {"pid", "pid", CLONE_NEWPID},          {"pid_for_children", "pid", CLONE_NEWPID},
    {"user", "user", CLONE_NEWUSER},       {"uts", "uts", CLONE_NEWUTS},
};
#define COUNT (sizeof NS / sizeof NS[0])

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fds[COUNT], path_fd;
    char p[128];
    for (unsigned i = 0; i < COUNT; i++) {
        snprintf(p, sizeof p, "/proc/self/ns/%s", NS[i].file);
        fds[i] = open(p, O_RDONLY | O_CLOEXEC);
        CHECK(fds[i] >= 0, "open %s: %s", p, strerror(errno));
    }
    path_fd = open("/proc/self/ns/net", O_PATH | O_CLOEXEC);
    CHECK(path_fd >= 0, "open O_PATH: %s", strerror(errno));

    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        for (unsigned i = 0; i <= COUNT; i++) {
            int fd = i < COUNT ? fds[i] : path_fd;
            unsigned k = i < COUNT ? i : 3; /* net */
            struct stat own, got;
            snprintf(p, sizeof p, "/proc/self/ns/%s", NS[k].file);
            /* A tree's pid and IPC namespaces are new at each resume: a failure between the
             * two stats would compare namespaces of two launches, so measure again then. */
            unsigned long failures;
            do {
                failures = zq_failures();
                CHECK(stat(p, &own) == 0 && fstat(fd, &got) == 0, "round %lu: stat %s: %s", r, p,
                      strerror(errno));
            } while (zq_failures() != failures);
            CHECK(own.st_ino == got.st_ino && own.st_dev == got.st_dev,
                  "round %lu: fd %d is not the process's %s namespace", r, fd, NS[k].file);
            char link[64], text[64];
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(link, text, sizeof text - 1);
            CHECK(n > 0, "round %lu: readlink: %s", r, strerror(errno));
            text[n] = 0;
            CHECK(!strncmp(text, NS[k].kind, strlen(NS[k].kind)) && text[strlen(NS[k].kind)] == ':',
                  "round %lu: link %s", r, text);
            if (i < COUNT)
                CHECK(ioctl(fd, NS_GET_NSTYPE) == NS[k].type, "round %lu: NS_GET_NSTYPE %s", r,
                      NS[k].file);
        }
        CHECK(setns(fds[7], CLONE_NEWUTS) == 0, "round %lu: setns uts: %s", r, strerror(errno));
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % 100 == 0)
            usleep(1000);
        if (r % 100 == 0)
            printf("round %lu: every namespace fd is the process's own\n", r);
    }
    printf("fd_namespace: done\n");
    return 0;
}
