/*
 * tree_sem ROUNDS FAIL_POINTS
 *
 * Named POSIX semaphores between processes of a tree across failures (issue 9). The root
 * creates two named semaphores, "ping" and "pong" (glibc's sem_open maps a new semaphore
 * through a temporary file it then links to the name and unlinks, so the creator's mapping
 * looks deleted to the kernel), then every round spawns a child (posix_spawn of this program
 * in "child" mode) that opens both by name, waits for the root's post on "ping" and posts
 * "pong"; the root waits for "pong". Each wait has a 20 s timeout: a semaphore that stopped
 * being shared (the root's copy no longer the named file) is reported instead of hanging.
 * FAIL_POINTS rounds spread over the run call zhuque_fail_now() in the root, between the
 * creation and the next child, the case that once lost the sharing. The first lost post ends
 * the run (status 1).
 * The names come from the working directory (one per test run), not from pids.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

/* "/zq-tree-sem-<hash of cwd>-<what>". */
static void sem_name(char *buf, size_t len, const char *what)
{
    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd: %s", strerror(errno));
    unsigned long long h = tl_hash(TL_HASH_INIT, cwd, strlen(cwd));
    snprintf(buf, len, "/zq-tree-sem-%016llx-%s", h, what);
}

/* sem_wait with a 20 s timeout, through EINTR (a resume interrupts it). */
static int wait_20s(sem_t *s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    for (;;) {
        if (sem_timedwait(s, &until) == 0)
            return 0;
        if (errno != EINTR)
            return -1;
    }
}

static int child(void)
{
    char ping_name[128], pong_name[128];
    sem_name(ping_name, sizeof ping_name, "ping");
    sem_name(pong_name, sizeof pong_name, "pong");
    sem_t *ping = sem_open(ping_name, 0);
    sem_t *pong = sem_open(pong_name, 0);
    CHECK(ping != SEM_FAILED && pong != SEM_FAILED, "child: sem_open: %s", strerror(errno));
    if (wait_20s(ping) != 0)
        return 3; /* the root's post never came */
    CHECK(sem_post(pong) == 0, "child: sem_post: %s", strerror(errno));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "child"))
        return child();
    unsigned long rounds = tl_arg(argc, argv, 1, 40);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    CHECK(argv[0][0] == '/', "run tree_sem by its absolute path");

    char ping_name[128], pong_name[128];
    sem_name(ping_name, sizeof ping_name, "ping");
    sem_name(pong_name, sizeof pong_name, "pong");
    sem_unlink(ping_name);
    sem_unlink(pong_name);
    sem_t *ping = sem_open(ping_name, O_CREAT | O_EXCL, 0600, 0);
    sem_t *pong = sem_open(pong_name, O_CREAT | O_EXCL, 0600, 0);
    CHECK(ping != SEM_FAILED && pong != SEM_FAILED, "sem_open: %s", strerror(errno));
    printf("tree_sem: %lu rounds, %lu fail points\n", rounds, points);

    unsigned long every = points ? rounds / (points + 1) : 0;
    unsigned long failed = 0, lost = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        if (every && r % every == 0 && failed < points) {
            failed++;
            zq_fail_now();
        }
        char *args[] = {argv[0], "child", NULL};
        pid_t pid;
        int e = posix_spawn(&pid, argv[0], NULL, NULL, args, environ);
        CHECK(e == 0, "posix_spawn: %s", strerror(e));
        CHECK(sem_post(ping) == 0, "sem_post: %s", strerror(errno));
        int pong_ok = wait_20s(pong) == 0;
        int st;
        while (waitpid(pid, &st, 0) < 0)
            CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
        int child_ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
        if (!pong_ok || !child_ok) {
            lost++;
            printf("round %lu: %s\n", r,
                   !pong_ok ? "the child's post never reached the root"
                            : "the root's post never reached the child");
            break;
        }
        if (r % 10 == 0)
            printf("round %lu: every post arrived\n", r);
    }
    sem_close(ping);
    sem_close(pong);
    sem_unlink(ping_name);
    sem_unlink(pong_name);
    printf("tree_sem: %s\n", lost ? "a semaphore was not shared" : "done");
    return lost ? 1 : 0;
}
