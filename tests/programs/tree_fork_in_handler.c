/*
 * tree_fork_in_handler ROUNDS
 *
 * Forks from a signal handler whose mask blocks every signal, as PostgreSQL's postmaster
 * starts its children. Each round raises SIGUSR1; the handler (sa_mask full) forks a child
 * that computes a little and ends with a status of its own, and waits for it. Right after
 * a child ends, the runtime settles its pool with every thread stopped: a fork that waited
 * for it unable to stop (the stop signal blocked by the handler's mask) made the save fail
 * ("thread(s) N keep sleeping with every signal blocked") or hang.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static volatile unsigned long round_no;
static volatile int last_status;
static volatile sig_atomic_t handled;
static unsigned long sums[64];

static void start_child(int sig)
{
    (void)sig;
    sigset_t now;
    sigprocmask(SIG_BLOCK, NULL, &now);
    CHECK(sigismember(&now, SIGUSR2) && sigismember(&now, SIGTERM), "mask not full in handler");
    pid_t pid = fork();
    if (pid == 0) {
        unsigned long x = round_no;
        for (int i = 0; i < 20000 + (int)(round_no % 7) * 5000; i++)
            x = x * 6364136223846793005ul + 1442695040888963407ul;
        sums[round_no % 64] = x; /* the child's own copy */
        _exit((int)(x % 101));
    }
    CHECK(pid > 0, "fork: %s", strerror(errno));
    int st;
    pid_t w;
    while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    CHECK(w == pid && WIFEXITED(st), "child %d: %#x", (int)pid, st);
    last_status = WEXITSTATUS(st);
    handled++;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 400);
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa = {.sa_handler = start_child};
    sigfillset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    unsigned long total = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        round_no = r;
        sig_atomic_t before = handled;
        CHECK(raise(SIGUSR1) == 0, "raise");
        CHECK(handled == before + 1, "round %lu: handler did not run", r);
        total += (unsigned long)last_status;
        if (r % 50 == 0)
            printf("round %lu: statuses add up to %lu\n", r, total);
    }
    for (int i = 0; i < 64; i++)
        CHECK(sums[i] == 0, "a child's store reached the parent");
    printf("done\n");
    return 0;
}
