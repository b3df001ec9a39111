/*
 * tree_tids ROUNDS FAIL_POINTS
 *
 * Thread ids through a tree's resume: the root starts 12 threads first (their tids come
 * right after its pid), then two children, each of which forks and reaps a short-lived
 * grandchild every round. Every thread and process checks, every round, that `gettid()` is
 * still what it was when it started. A resume recreates every process and thread with its
 * saved id (`clone3` `set_tid`); before, a process recreated its threads only once the tree
 * ran on, so a child that ran on first (its coordinator, its next fork) could take an id the
 * root's threads still needed: the root's threads came back with new ids (a mutex that
 * records its owner's tid, error-checking, recursive, robust or PI, would then be held by no
 * one), said in a `zhuque:` line. The first thread calls zhuque_fail_now() FAIL_POINTS times,
 * evenly spread (random failures besides).
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <unistd.h>

#define THREADS 12

static unsigned long rounds, points;
static atomic_ulong done_threads;

static void check_tid(pid_t want, const char *who, unsigned long r)
{
    pid_t now = gettid();
    TL_CHECK(now == want, "round %lu: %s: tid %d, was %d", r, who, (int)now, (int)want);
}

static void *worker(void *arg)
{
    int first = arg != NULL;
    pid_t me = gettid();
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        check_tid(me, "root thread", r);
        if (first && every && r % every == 0 && r / every <= points)
            zq_fail_now();
        usleep(1000);
    }
    atomic_fetch_add(&done_threads, 1);
    return NULL;
}

static void child(int which)
{
    pid_t me = gettid();
    for (unsigned long r = 1; r <= rounds; r++) {
        check_tid(me, "child", r);
        pid_t g = fork();
        TL_CHECK(g >= 0, "fork");
        if (g == 0)
            _exit(r % 7);
        int st;
        TL_CHECK(waitpid(g, &st, 0) == g && WIFEXITED(st) && WEXITSTATUS(st) == (int)(r % 7),
                 "round %lu: grandchild status %#x", r, st);
        usleep(1000);
    }
    _exit(which);
}

int main(int argc, char **argv)
{
    rounds = tl_arg(argc, argv, 1, 2000);
    points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        TL_CHECK(pthread_create(&t[i], NULL, worker, i == 0 ? &t[i] : NULL) == 0,
                 "pthread_create");
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        TL_CHECK(kids[i] >= 0, "fork");
        if (kids[i] == 0)
            child(i);
    }
    for (int i = 0; i < 2; i++) {
        int st;
        TL_CHECK(waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == i,
                 "child %d: status %#x", i, st);
        printf("child %d: %lu rounds, same tid throughout\n", i, rounds);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    printf("root: %d threads, %lu rounds each, same tids throughout\n",
           (int)atomic_load(&done_threads), rounds);
    return 0;
}
