/*
 * sig_ticker TICKS
 *
 * A program driven by its own signal handlers and timers:
 * - SIGALRM from setitimer(ITIMER_REAL, 1 ms) with an SA_SIGINFO | SA_RESTART | SA_ONSTACK
 *   handler running on a sigaltstack, with SIGUSR1 in its sa_mask;
 * - SIGVTALRM from setitimer(ITIMER_VIRTUAL, 2 ms of CPU time) with a plain handler;
 * - SIGUSR2 from a POSIX timer (timer_create, CLOCK_MONOTONIC, 3 ms, sigev_value 77);
 * - SIGHUP ignored; handlers asked for SIGPWR and SIGRTMAX (the runtime keeps these two for
 *   itself: the program must still see its own settings when it asks).
 * The main loop computes until TICKS SIGALRM ticks have been counted, printing a line every 50
 * ticks. Every handler checks what it is given (signal, code, value, the alternate stack, the
 * blocked mask) and main checks every disposition, the timers and the alternate stack with the
 * kernel every 25 ticks. A lost disposition kills the program (SIGALRM's default action), a lost
 * timer stops the ticks (a watchdog fails the program after 10 s), anything else fails a check.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define ALTSTACK_SIZE (64 * 1024)

static volatile sig_atomic_t ticks, vticks, pticks, bad;
static char *altstack;
static timer_t timer;

static void on_alarm(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    char here;
    if (sig != SIGALRM || si->si_signo != SIGALRM || si->si_code != SI_KERNEL)
        bad |= 1;
    if (&here < altstack || &here >= altstack + ALTSTACK_SIZE)
        bad |= 2;
    sigset_t now;
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    if (!sigismember(&now, SIGUSR1) || !sigismember(&now, SIGALRM))
        bad |= 4;
    ticks++;
}

static void on_vtalrm(int sig)
{
    if (sig != SIGVTALRM)
        bad |= 8;
    vticks++;
}

static void on_timer(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (sig != SIGUSR2 || si->si_code != SI_TIMER || si->si_value.sival_int != 77)
        bad |= 16;
    pticks++;
}

static void never(int sig)
{
    (void)sig;
    bad |= 32;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void check_dispositions(void)
{
    struct sigaction a;
    TL_CHECK(sigaction(SIGALRM, NULL, &a) == 0, "sigaction");
    TL_CHECK(a.sa_sigaction == on_alarm, "SIGALRM handler lost");
    TL_CHECK((a.sa_flags & (SA_SIGINFO | SA_RESTART | SA_ONSTACK)) ==
                 (SA_SIGINFO | SA_RESTART | SA_ONSTACK),
             "SIGALRM flags %x", a.sa_flags);
    TL_CHECK(sigismember(&a.sa_mask, SIGUSR1) && !sigismember(&a.sa_mask, SIGUSR2),
             "SIGALRM mask");
    TL_CHECK(sigaction(SIGVTALRM, NULL, &a) == 0 && a.sa_handler == on_vtalrm, "SIGVTALRM");
    TL_CHECK(sigaction(SIGUSR2, NULL, &a) == 0 && a.sa_sigaction == on_timer, "SIGUSR2");
    TL_CHECK(sigaction(SIGHUP, NULL, &a) == 0 && a.sa_handler == SIG_IGN, "SIGHUP not ignored");
    TL_CHECK(sigaction(SIGPWR, NULL, &a) == 0 && a.sa_handler == never, "SIGPWR as seen");
    TL_CHECK(sigaction(SIGRTMAX, NULL, &a) == 0 && a.sa_handler == never &&
                 (a.sa_flags & SA_NODEFER),
             "SIGRTMAX as seen");
    stack_t ss;
    TL_CHECK(sigaltstack(NULL, &ss) == 0 && ss.ss_sp == altstack &&
                 ss.ss_size == ALTSTACK_SIZE && !(ss.ss_flags & SS_DISABLE),
             "alternate stack lost");
    struct itimerval it;
    TL_CHECK(getitimer(ITIMER_REAL, &it) == 0 && it.it_interval.tv_usec == 1000,
             "ITIMER_REAL interval %ld", (long)it.it_interval.tv_usec);
    TL_CHECK(getitimer(ITIMER_VIRTUAL, &it) == 0 && it.it_interval.tv_usec == 2000,
             "ITIMER_VIRTUAL interval");
    struct itimerspec ts;
    TL_CHECK(timer_gettime(timer, &ts) == 0, "timer_gettime: %s", strerror(errno));
    TL_CHECK(ts.it_interval.tv_nsec == 3000000, "POSIX timer interval");
}

int main(int argc, char **argv)
{
    unsigned long want = tl_arg(argc, argv, 1, 600);

    altstack = malloc(ALTSTACK_SIZE);
    stack_t ss = {.ss_sp = altstack, .ss_size = ALTSTACK_SIZE, .ss_flags = 0};
    TL_CHECK(sigaltstack(&ss, NULL) == 0, "sigaltstack");

    struct sigaction a = {0};
    a.sa_sigaction = on_alarm;
    a.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&a.sa_mask);
    sigaddset(&a.sa_mask, SIGUSR1);
    TL_CHECK(sigaction(SIGALRM, &a, NULL) == 0, "sigaction SIGALRM");
    TL_CHECK(signal(SIGVTALRM, on_vtalrm) != SIG_ERR, "signal SIGVTALRM");
    a.sa_sigaction = on_timer;
    a.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&a.sa_mask);
    TL_CHECK(sigaction(SIGUSR2, &a, NULL) == 0, "sigaction SIGUSR2");
    TL_CHECK(signal(SIGHUP, SIG_IGN) != SIG_ERR, "ignore SIGHUP");
    TL_CHECK(signal(SIGPWR, never) != SIG_ERR, "signal SIGPWR");
    a.sa_handler = never;
    a.sa_flags = SA_NODEFER;
    TL_CHECK(sigaction(SIGRTMAX, &a, NULL) == 0, "sigaction SIGRTMAX");

    struct sigevent sev = {0};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR2;
    sev.sigev_value.sival_int = 77;
    TL_CHECK(timer_create(CLOCK_MONOTONIC, &sev, &timer) == 0, "timer_create");
    struct itimerspec ts = {{0, 3000000}, {0, 3000000}};
    TL_CHECK(timer_settime(timer, 0, &ts, NULL) == 0, "timer_settime");
    struct itimerval it = {{0, 1000}, {0, 1000}};
    TL_CHECK(setitimer(ITIMER_REAL, &it, NULL) == 0, "setitimer REAL");
    it.it_interval.tv_usec = it.it_value.tv_usec = 2000;
    TL_CHECK(setitimer(ITIMER_VIRTUAL, &it, NULL) == 0, "setitimer VIRTUAL");
    printf("timers armed\n");

    uint64_t x = 1;
    unsigned long next = 25, seen = 0;
    double last_tick = now();
    while (ticks < (sig_atomic_t)want) {
        for (int i = 0; i < 1000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        if ((unsigned long)ticks != seen) {
            seen = (unsigned long)ticks;
            last_tick = now();
        }
        TL_CHECK(now() - last_tick < 10.0, "no SIGALRM for 10 s (ticks %lu)", seen);
        TL_CHECK(!bad, "a handler saw something wrong: %d", (int)bad);
        if ((unsigned long)ticks >= next) {
            check_dispositions();
            if (next % 50 == 0)
                printf("ticks >= %lu\n", next);
            next += 25;
        }
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_REAL, &off, NULL);
    setitimer(ITIMER_VIRTUAL, &off, NULL);
    timer_delete(timer);
    TL_CHECK(!bad, "a handler saw something wrong: %d", (int)bad);
    printf("done: virtual timer %s, POSIX timer %s, work %s\n", vticks > 0 ? "ticked" : "silent",
           pticks > 0 ? "ticked" : "silent", x ? "done" : "zero");
    return 0;
}
