/*
 * sig_pause
 *
 * pause() and sigsuspend() return when the program's own signal comes, not before: without a
 * failure the runtime never signals a program it started for reasons of its own (start-up
 * memory moves without stopping the program, memory::startup). Each waits for a SIGALRM
 * 50 ms away and prints how many came.
 */
#include <signal.h>
#include <sys/time.h>

#include "testlib.h"

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
    (void)sig;
    alarms++;
}

static void alarm_in_50_ms(void)
{
    struct itimerval it = {{0, 0}, {0, 50000}};
    TL_CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer");
}

int main(void)
{
    TL_CHECK(signal(SIGALRM, on_alarm) != SIG_ERR, "signal");
    alarm_in_50_ms();
    pause();
    printf("pause: %d alarm(s)\n", (int)alarms);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGALRM);
    TL_CHECK(sigprocmask(SIG_BLOCK, &block, &old) == 0, "sigprocmask");
    alarm_in_50_ms();
    sigsuspend(&old);
    printf("sigsuspend: %d alarm(s)\n", (int)alarms);
    return 0;
}
