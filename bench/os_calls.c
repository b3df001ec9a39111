/*
 * os_calls [SCALE]
 *
 * The calls the runtime interposes on the thread and OS-state paths, timed in a loop:
 * thread creation, fd creation and closing, signal masks and dispositions, POSIX timers
 * (SIGEV_SIGNAL and SIGEV_THREAD, which the runtime implements itself) and the round trip of
 * a SIGEV_THREAD notification. Prints "name<TAB>ns per operation" lines. Run natively and
 * under zhuque by bench/os_calls.sh.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

#define TIME(name, n, body)                                                                \
    do {                                                                                   \
        double t0_ = now_ns();                                                             \
        for (long i_ = 0; i_ < (n); i_++) {                                                \
            body;                                                                          \
        }                                                                                  \
        printf("%s\t%.0f\n", name, (now_ns() - t0_) / (n));                                \
    } while (0)

#define CHECK(c)                                                                           \
    do {                                                                                   \
        if (!(c)) {                                                                        \
            fprintf(stderr, "os_calls: %s failed\n", #c);                                  \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static sem_t done;

static void *nothing(void *a)
{
    return a;
}

static void *post(void *a)
{
    sem_post(&done);
    return a;
}

static void notified(union sigval v)
{
    (void)v;
    sem_post(&done);
}

int main(int argc, char **argv)
{
    long scale = argc > 1 ? atol(argv[1]) : 1;
    CHECK(sem_init(&done, 0, 0) == 0);
    setvbuf(stdout, NULL, _IOLBF, 0);

    TIME("pthread_create+join", 5000 * scale, {
        pthread_t t;
        CHECK(pthread_create(&t, NULL, nothing, NULL) == 0);
        CHECK(pthread_join(t, NULL) == 0);
    });
    pthread_attr_t detached;
    pthread_attr_init(&detached);
    pthread_attr_setdetachstate(&detached, PTHREAD_CREATE_DETACHED);
    TIME("pthread_create detached", 5000 * scale, {
        pthread_t t;
        CHECK(pthread_create(&t, &detached, post, NULL) == 0);
        sem_wait(&done);
    });
    TIME("open+close", 50000 * scale, {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        CHECK(fd >= 0);
        close(fd);
    });
    TIME("pipe2+close", 50000 * scale, {
        int p[2];
        CHECK(pipe2(p, O_CLOEXEC) == 0);
        close(p[0]);
        close(p[1]);
    });
    TIME("socket+close", 50000 * scale, {
        int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(s >= 0);
        close(s);
    });
    int base = open("/dev/null", O_RDONLY);
    TIME("dup2+close", 50000 * scale, {
        CHECK(dup2(base, 100) == 100);
        close(100);
    });
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    TIME("pthread_sigmask block+unblock", 100000 * scale, {
        pthread_sigmask(SIG_BLOCK, &usr1, NULL);
        pthread_sigmask(SIG_UNBLOCK, &usr1, NULL);
    });
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    TIME("sigaction", 100000 * scale, { CHECK(sigaction(SIGUSR1, &sa, NULL) == 0); });
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = SIGUSR1;
    TIME("timer_create+delete (signal)", 50000 * scale, {
        timer_t t;
        CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0);
        timer_delete(t);
    });
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_THREAD;
    ev.sigev_notify_function = notified;
    TIME("timer_create+delete (thread)", 50000 * scale, {
        timer_t t;
        CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0);
        timer_delete(t);
    });
    timer_t t;
    CHECK(timer_create(CLOCK_MONOTONIC, &ev, &t) == 0);
    struct itimerspec soon = {{0, 0}, {0, 1}};
    TIME("SIGEV_THREAD expiry to callback", 5000 * scale, {
        CHECK(timer_settime(t, 0, &soon, NULL) == 0);
        sem_wait(&done);
    });
    timer_delete(t);
    return 0;
}
