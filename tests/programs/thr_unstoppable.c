/*
 * thr_unstoppable
 *
 * A program that cannot be saved at its second failure: it goes through one failure point
 * (zhuque_fail_now()), then starts a thread that blocks every signal behind libc's back (a raw
 * rt_sigprocmask system call, which the runtime cannot filter) and sleeps, and fails again.
 * The runtime cannot stop that thread: the save must fail with one clear zhuque: line and exit
 * status 125, and the image must then say it cannot be resumed (the resumed program ran on
 * pool memory since the first failure, so that save point is gone). Natively (or without a
 * second failure) it prints three lines and exits 0.
 */
#define _GNU_SOURCE
#include "thrlib.h"
#include "zhuque.h"

#include <signal.h>
#include <time.h>

static volatile int blocked;

static void *sleeper(void *arg)
{
    (void)arg;
    uint64_t all = ~0ULL;
    TL_CHECK(syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, NULL, 8) == 0, "rt_sigprocmask");
    __atomic_store_n(&blocked, 1, __ATOMIC_RELEASE);
    for (;;) {
        struct timespec t = {3600, 0};
        syscall(SYS_nanosleep, &t, NULL);
    }
    return NULL;
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("before the first failure\n");
    zq_fail_now();
    printf("after the first failure\n");
    pthread_t t;
    TL_OK(pthread_create(&t, NULL, sleeper, NULL));
    tl_wait_flag(&blocked, 1);
    zq_fail_now();
    printf("no second failure\n");
    return 0;
}
