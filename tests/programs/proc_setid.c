/*
 * proc_setid MODE ROUNDS
 *
 * A process that drops its privileges at once, as nginx's workers do (root -> nobody), then
 * works. The runtime's coordinator, which writes the image (root's), starts on demand; it must
 * start before the credentials change, or it would have the new ones. MODE says how they
 * change:
 * - "glibc":   setgroups, setresgid, setresuid (glibc's functions);
 * - "syscall": the same three calls through syscall();
 * - "child":   the root stays root and forks a child that drops them with setgid and setuid,
 *              works, and exits; the root waits for it and prints its status;
 * - "raw":     setresuid with an inline syscall instruction, which the runtime does not see:
 *              a failure then cannot save the process (it says so when its coordinator
 *              starts, and the save fails).
 * Every round: a hash over a buffer, printed every 10 rounds with the ids, and a 2 ms sleep.
 * Must run as root.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define NOBODY 65534

static long raw_setresuid(long r, long e, long s)
{
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"((long)SYS_setresuid), "D"(r), "S"(e), "d"(s)
                     : "rcx", "r11", "memory");
    return ret;
}

static void drop(const char *mode)
{
    gid_t none[1] = {NOBODY};
    if (strcmp(mode, "glibc") == 0) {
        CHECK(setgroups(1, none) == 0, "setgroups: %s", strerror(errno));
        CHECK(setresgid(NOBODY, NOBODY, NOBODY) == 0, "setresgid: %s", strerror(errno));
        CHECK(setresuid(NOBODY, NOBODY, NOBODY) == 0, "setresuid: %s", strerror(errno));
    } else if (strcmp(mode, "syscall") == 0) {
        CHECK(syscall(SYS_setgroups, 1, none) == 0, "setgroups: %s", strerror(errno));
        CHECK(syscall(SYS_setresgid, NOBODY, NOBODY, NOBODY) == 0, "setresgid: %s",
              strerror(errno));
        CHECK(syscall(SYS_setresuid, NOBODY, NOBODY, NOBODY) == 0, "setresuid: %s",
              strerror(errno));
    } else if (strcmp(mode, "child") == 0) {
        CHECK(setgid(NOBODY) == 0, "setgid: %s", strerror(errno));
        CHECK(setuid(NOBODY) == 0, "setuid: %s", strerror(errno));
    } else {
        CHECK(raw_setresuid(NOBODY, NOBODY, NOBODY) == 0, "raw setresuid");
    }
}

static void work(const char *who, unsigned long rounds)
{
    static unsigned char buf[1 << 16];
    uint64_t h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        for (size_t i = 0; i < sizeof buf; i += 64)
            buf[i] = (unsigned char)(buf[i] * 31 + r + i);
        h = tl_hash(h, buf, sizeof buf);
        if (r % 10 == 0)
            printf("%s round %lu: uid %d euid %d gid %d hash %016llx\n", who, r, (int)getuid(),
                   (int)geteuid(), (int)getgid(), (unsigned long long)h);
        fflush(stdout);
        struct timespec ts = {0, 2000000};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
        }
    }
}

int main(int argc, char **argv)
{
    CHECK(argc == 3, "usage: proc_setid glibc|syscall|child|raw ROUNDS");
    const char *mode = argv[1];
    unsigned long rounds = tl_arg(argc, argv, 2, 150);
    CHECK(geteuid() == 0, "must run as root");
    if (strcmp(mode, "child") != 0) {
        drop(mode);
        printf("dropped (%s)\n", mode);
        work("process", rounds);
        return 0;
    }
    fflush(stdout);
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        drop(mode);
        printf("child dropped\n");
        work("child", rounds);
        _exit(7);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
    printf("child: %s %d; parent uid %d\n", WIFEXITED(st) ? "exit" : "signal",
           WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), (int)getuid());
    return 0;
}
