/*
 * tree_save_prog PROCESSES MODE MIB
 *
 * The program the tree save/resume benchmark fails: a tree of PROCESSES processes (this one
 * and PROCESSES-1 forked children), each with MIB MiB of its own heap, every page written.
 * Each process writes "ready\n" to fd 1 once its memory is touched, then:
 *   idle  blocks: the children in pause(), the root in wait() for its children (in pause()
 *         when it has none);
 *   busy  computes: stores into its heap, page after page, forever.
 * A recovery handler registered before the forks writes "resumed\n" to fd 1 in every process
 * after each resume (before its threads continue), so a reader of fd 1 sees when every
 * process of the tree is back. Lines are written with write(2), one call each.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zhuque.h"

static void say(const char *s)
{
    ssize_t r = write(1, s, strlen(s));
    (void)r;
}

static void on_recovery(void *arg)
{
    (void)arg;
    say("resumed\n");
}

static volatile char *heap;
static size_t bytes;

static void touch(unsigned round)
{
    for (size_t off = 0; off < bytes; off += 4096)
        heap[off] = (char)(off >> 12) + (char)round;
}

static void live(int root, int busy)
{
    heap = malloc(bytes);
    if (!heap) {
        perror("malloc");
        exit(1);
    }
    touch(0);
    say("ready\n");
    if (busy)
        for (unsigned round = 1;; round++)
            touch(round);
    while (root && !(wait(NULL) < 0 && errno == ECHILD))
        ;
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: tree_save_prog PROCESSES idle|busy MIB\n");
        return 2;
    }
    int n = atoi(argv[1]);
    int busy = strcmp(argv[2], "busy") == 0;
    bytes = (size_t)atol(argv[3]) << 20;
    if (zq_active() && zq_on_recovery(on_recovery, NULL) != 0) {
        fprintf(stderr, "tree_save_prog: cannot register the recovery handler\n");
        return 1;
    }
    for (int i = 1; i < n; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0)
            live(0, busy);
    }
    live(1, busy);
}
