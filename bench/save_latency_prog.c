/*
 * save_latency_prog THREADS MODE [FDS]
 *
 * The program the save-latency benchmark fails: THREADS threads besides main, all alive,
 * FDS more open fds (half of them the ends of pipes, half of Unix socketpairs, all idle),
 * then "ready" on stdout (flushed) and nothing more until it is failed. MODE:
 *   idle  every thread blocked in pthread_cond_wait;
 *   busy  every thread computing (runnable: a stop must wait for the scheduler to run it);
 *   mixed half idle, a quarter busy, a quarter in nanosleep.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t never = PTHREAD_COND_INITIALIZER;
static int started;
static volatile uint64_t sink;

static void *idle(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&m);
    started++;
    for (;;)
        pthread_cond_wait(&never, &m);
    return NULL;
}

static void *busy(void *arg)
{
    uint64_t x = (uintptr_t)arg;
    __atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
    for (;;) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        sink = x;
    }
    return NULL;
}

static void *sleeper(void *arg)
{
    (void)arg;
    __atomic_add_fetch(&started, 1, __ATOMIC_RELAXED);
    for (;;) {
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? atoi(argv[1]) : 16;
    const char *mode = argc > 2 ? argv[2] : "idle";
    int fds = argc > 3 ? atoi(argv[3]) : 0;
    for (int i = 0; i < fds / 2; i++) {
        int pair[2];
        if ((i % 2 ? pipe(pair) : socketpair(AF_UNIX, SOCK_STREAM, 0, pair)) != 0) {
            perror("pipe/socketpair");
            return 1;
        }
    }
    for (int i = 0; i < n; i++) {
        void *(*f)(void *) = idle;
        if (!strcmp(mode, "busy") || (!strcmp(mode, "mixed") && i % 4 == 1))
            f = busy;
        else if (!strcmp(mode, "mixed") && i % 4 == 3)
            f = sleeper;
        pthread_t t;
        if (pthread_create(&t, NULL, f, (void *)(uintptr_t)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    while (__atomic_load_n(&started, __ATOMIC_RELAXED) < n) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
}
