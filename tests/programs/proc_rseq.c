/*
 * proc_rseq ROUNDS
 *
 * The program's own rseq registrations (issue 12), run with
 * GLIBC_TUNABLES=glibc.pthread.rseq=0 so that glibc registers none (checked: __rseq_size is
 * 0) and the program registers its own area per thread with syscall(SYS_rseq, ...), as
 * tcmalloc and librseq do. The main thread and a worker each register a thread-local struct
 * rseq (32 bytes, aligned 32, signature 0x53053053); the worker moves to a second area half
 * way through (unregister, register). Every round each thread checks its registration with
 * the kernel's own view:
 * - registering the same area again with the same length and signature fails with EBUSY,
 *   which the kernel answers exactly when that registration is alive;
 * - after cpu_id is set to -1, delivering a signal to the thread (raise) makes the kernel
 *   write the current CPU number back into it (< the number of CPUs).
 * Half way through, a fork child (a copy of the main thread, whose registration the kernel
 * keeps) checks the same for 200 rounds. Between checks, a little arithmetic whose hash is
 * printed now and then.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/rseq.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIG 0x53053053
#define FLAG_UNREGISTER 1

static __thread struct rseq area;
static __thread struct rseq other_area;
static unsigned long rounds;
static long cpus;

static void on_usr1(int sig)
{
    (void)sig;
}

static long rseq_call(struct rseq *a, int flags)
{
    return syscall(SYS_rseq, a, sizeof *a, flags, SIG);
}

/* The registration of `a` is alive, as the kernel sees it. */
static void check(const char *who, struct rseq *a, unsigned long round)
{
    errno = 0;
    long r = rseq_call(a, 0);
    TL_CHECK(r == -1 && errno == EBUSY,
             "%s round %lu: registering the area again: %ld (%s), not EBUSY: it was not "
             "registered", who, round, r, strerror(errno));
    volatile uint32_t *cpu = &a->cpu_id;
    *cpu = (uint32_t)-1;
    TL_CHECK(raise(SIGUSR1) == 0, "raise");
    uint32_t now = *cpu;
    TL_CHECK(now < (uint32_t)cpus,
             "%s round %lu: cpu_id %d after a signal: the kernel no longer updates the area",
             who, round, (int)now);
}

static uint64_t work(uint64_t *x)
{
    for (int i = 0; i < 200000; i++)
        *x = *x * 6364136223846793005ULL + 1442695040888963407ULL;
    return *x;
}

static void *worker(void *arg)
{
    (void)arg;
    TL_CHECK(rseq_call(&area, 0) == 0, "worker: register: %s", strerror(errno));
    struct rseq *mine = &area;
    uint64_t h = TL_HASH_INIT, x = 7;
    for (unsigned long r = 1; r <= rounds; r++) {
        if (r == rounds / 2) {
            TL_CHECK(rseq_call(&area, FLAG_UNREGISTER) == 0, "worker: unregister: %s",
                     strerror(errno));
            TL_CHECK(rseq_call(&other_area, 0) == 0, "worker: register the second area: %s",
                     strerror(errno));
            mine = &other_area;
        }
        check("worker", mine, r);
        h = tl_mix(h, work(&x));
    }
    uint64_t *out = malloc(sizeof *out);
    TL_CHECK(out != NULL, "malloc");
    *out = h;
    return out;
}

static void fork_child(unsigned long round)
{
    fflush(stdout);
    pid_t pid = fork();
    TL_CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        uint64_t x = round;
        for (unsigned long r = 1; r <= 200; r++) {
            check("fork child", &area, r);
            work(&x);
        }
        _exit(0);
    }
    int status = 0;
    TL_CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    TL_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child ended with %#x",
             status);
    printf("fork child at round %lu: registration kept\n", round);
}

int main(int argc, char **argv)
{
    rounds = tl_arg(argc, argv, 1, 2000);
    if (__rseq_size != 0) {
        printf("glibc registered its own rseq area: run with "
               "GLIBC_TUNABLES=glibc.pthread.rseq=0\n");
        return 98;
    }
    cpus = sysconf(_SC_NPROCESSORS_CONF);
    TL_CHECK(cpus > 0, "cpus");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    TL_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    TL_CHECK(rseq_call(&area, 0) == 0, "main: register: %s", strerror(errno));
    pthread_t t;
    TL_CHECK(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create");

    uint64_t h = TL_HASH_INIT, x = 1;
    for (unsigned long r = 1; r <= rounds; r++) {
        check("main", &area, r);
        h = tl_mix(h, work(&x));
        if (r == rounds / 2)
            fork_child(r);
        if (r % 100 == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    void *res = NULL;
    TL_CHECK(pthread_join(t, &res) == 0, "pthread_join");
    printf("worker h=%016llx\n", (unsigned long long)*(uint64_t *)res);
    free(res);
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
