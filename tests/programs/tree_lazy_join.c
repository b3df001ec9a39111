/* A fork child that sleeps past its grace period joins the tree by itself: its image
 * directory gets a `meta` without any save to wake it (a save of a tree of sleeping
 * children must not have to make every child join first), and what the runtime uses for it
 * leaves the child's own first POSIX timer id 0, as natively.
 *
 *   tree_lazy_join [IMAGE]     without IMAGE (natively) the join is not looked for
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_TIMER_CREATE_RESTORE_IDS
#define PR_TIMER_CREATE_RESTORE_IDS 77
#endif
#define PR_TIMER_CREATE_RESTORE_IDS_GET 2

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The child does nothing that would make it join on its own (no allocation, no mapping, no
 * timer) until its parent has looked: it waits in a blocking `read`. */
static void child(int ready, int go) {
    char x;
    if (write(ready, "x", 1) != 1 || read(go, &x, 1) != 1)
        _exit(1);
    timer_t t;
    struct sigevent sev = {.sigev_notify = SIGEV_NONE};
    if (timer_create(CLOCK_MONOTONIC, &sev, &t) != 0) {
        perror("timer_create");
        _exit(1);
    }
    /* A kernel that cannot let a process choose its timer ids (before 6.17) gives the
     * runtime's grace timer the child's first id. */
    if (prctl(PR_TIMER_CREATE_RESTORE_IDS, PR_TIMER_CREATE_RESTORE_IDS_GET, 0, 0, 0) < 0)
        printf("child: first timer id not checked (this kernel cannot keep it)\n");
    else
        printf("child: first timer id %ld\n", (long)(intptr_t)t);
    fflush(stdout);
    if (write(ready, "y", 1) != 1)
        _exit(1);
    for (;;)
        pause();
}

int main(int argc, char **argv) {
    int ready[2], go[2];
    if (pipe(ready) != 0 || pipe(go) != 0) {
        perror("pipe");
        return 1;
    }
    fflush(stdout);
    pid_t c = fork();
    if (c < 0) {
        perror("fork");
        return 1;
    }
    if (c == 0) {
        close(ready[0]);
        close(go[1]);
        child(ready[1], go[0]);
    }
    close(ready[1]);
    close(go[0]);
    char x;
    if (read(ready[0], &x, 1) != 1) {
        fprintf(stderr, "tree_lazy_join: the child did not start\n");
        return 1;
    }
    if (argc > 1) {
        char meta[4096];
        snprintf(meta, sizeof meta, "%s/p/%d/meta", argv[1], (int)c);
        struct stat st;
        int waited = 0;
        while (stat(meta, &st) != 0 && waited < 20000) {
            sleep_ms(10);
            waited += 10;
        }
        if (stat(meta, &st) == 0)
            printf("the sleeping child joined the tree\n");
        else
            printf("the sleeping child did not join the tree within 20 s (%s)\n", meta);
        fflush(stdout);
    }
    if (write(go[1], "x", 1) != 1 || read(ready[0], &x, 1) != 1) {
        fprintf(stderr, "tree_lazy_join: the child did not answer\n");
        return 1;
    }
    kill(c, SIGTERM);
    int status;
    if (waitpid(c, &status, 0) != c) {
        perror("waitpid");
        return 1;
    }
    if (WIFSIGNALED(status))
        printf("child: killed by signal %d\n", WTERMSIG(status));
    else
        printf("child: exited %d\n", WEXITSTATUS(status));
    return 0;
}
