/*
 * thr_sleeps ROUNDS
 *
 * Naive sleepers: threads that sleep in a loop and treat any early return as an error, as
 * many programs do (`usleep(2000)`, `nanosleep` without a loop, relative and absolute
 * `clock_nanosleep`, `sleep(1)`). A failure must not cut their sleeps short: each call must
 * return 0 (exit 99 otherwise), while the program's own signal still interrupts a sleep
 * (a thread sends one to main in the middle of a long nanosleep: EINTR with time left).
 * Output: each thread's count of sleeps, then the interruption, then a checksum.
 */
#define _GNU_SOURCE
#include "thrlib.h"

#include <signal.h>
#include <time.h>

static unsigned long rounds;
static pthread_t main_thread;
static volatile int main_asleep;

static void *usleeper(void *arg)
{
    (void)arg;
    for (unsigned long i = 0; i < rounds; i++)
        TL_CHECK(usleep(2000) == 0, "usleep returned early: %s", strerror(errno));
    return NULL;
}

static void *nanosleeper(void *arg)
{
    (void)arg;
    for (unsigned long i = 0; i < rounds; i++) {
        struct timespec t = {0, 3000000};
        TL_CHECK(nanosleep(&t, NULL) == 0, "nanosleep returned early: %s", strerror(errno));
    }
    return NULL;
}

static void *clocksleeper(void *arg)
{
    (void)arg;
    for (unsigned long i = 0; i < rounds; i++) {
        struct timespec t = {0, 1000000}, rem;
        int e = clock_nanosleep(CLOCK_MONOTONIC, 0, &t, &rem);
        TL_CHECK(e == 0, "clock_nanosleep returned %d", e);
        struct timespec at;
        clock_gettime(CLOCK_MONOTONIC, &at);
        at.tv_nsec += 1000000;
        if (at.tv_nsec >= 1000000000) {
            at.tv_sec++;
            at.tv_nsec -= 1000000000;
        }
        e = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL);
        TL_CHECK(e == 0, "absolute clock_nanosleep returned %d", e);
    }
    return NULL;
}

static void *interrupter(void *arg)
{
    (void)arg;
    tl_wait_flag(&main_asleep, 1);
    struct timespec t = {0, 50000000};
    TL_CHECK(nanosleep(&t, NULL) == 0, "nanosleep returned early");
    TL_OK(pthread_kill(main_thread, SIGUSR1));
    return NULL;
}

static void on_usr1(int sig)
{
    (void)sig;
}

int main(int argc, char **argv)
{
    rounds = tl_arg(argc, argv, 1, 300);
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    TL_CHECK(sigaction(SIGUSR1, &sa, NULL) == 0, "sigaction");
    main_thread = pthread_self();
    pthread_t t[3];
    TL_OK(pthread_create(&t[0], NULL, usleeper, NULL));
    TL_OK(pthread_create(&t[1], NULL, nanosleeper, NULL));
    TL_OK(pthread_create(&t[2], NULL, clocksleeper, NULL));
    unsigned long naps = rounds / 300 ? rounds / 300 : 1;
    for (unsigned long i = 0; i < naps; i++)
        TL_CHECK(sleep(1) == 0, "sleep returned early");
    for (int i = 0; i < 3; i++)
        TL_OK(pthread_join(t[i], NULL));
    printf("%lu usleeps, %lu nanosleeps, %lu clock sleeps, %lu sleeps: all complete\n", rounds,
           rounds, 2 * rounds, naps);

    pthread_t k;
    TL_OK(pthread_create(&k, NULL, interrupter, NULL));
    struct timespec t10 = {10, 0}, rem = {0, 0};
    __atomic_store_n(&main_asleep, 1, __ATOMIC_RELEASE);
    int r = nanosleep(&t10, &rem);
    TL_CHECK(r == -1 && errno == EINTR && rem.tv_sec >= 5,
             "the program's own signal did not interrupt nanosleep (%d, %ld s left)", r,
             (long)rem.tv_sec);
    TL_OK(pthread_join(k, NULL));
    printf("the program's signal interrupts a sleep: yes\n");
    printf("checksum %016llx\n", (unsigned long long)tl_mix(TL_HASH_INIT, rounds));
    return 0;
}
