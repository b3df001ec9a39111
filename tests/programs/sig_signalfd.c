/*
 * sig_signalfd ROUNDS
 *
 * A signalfd consumer. SIGUSR1, SIGUSR2, SIGRTMIN+3 and +4 are blocked and read through a
 * non-blocking signalfd (a second signalfd, blocking, watches SIGUSR1 only). Each round the
 * program queues signals to itself and does some work before reading them back:
 *   - sigqueue(SIGRTMIN+3) three times with values r, r+1, r+2 (real-time: all three queue,
 *     in order, each with its value),
 *   - kill(getpid(), SIGUSR1) (process-directed, with the sender's pid),
 *   - raise(SIGUSR2) (aimed at the thread itself),
 *   - pthread_sigqueue(SIGRTMIN+4) twice with values 10r, 10r+1 (aimed at the thread itself:
 *     only the thread can dequeue them, and both must come back with their values),
 * then polls the signalfd and reads everything, checking signals, values, order and counts.
 * Every 4000 rounds it calls zhuque_fail_now() with the signals still pending (a no-op without
 * the runtime), so pending signals must survive a failure, with their siginfo where the kernel
 * queues one (the sender's pid and code included). Random failures land anywhere else.
 * Output: progress hashes of what was read.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 20000);
    int rt = SIGRTMIN + 3, rt2 = SIGRTMIN + 4;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, rt);
    sigaddset(&set, rt2);
    TL_CHECK(sigprocmask(SIG_BLOCK, &set, NULL) == 0, "sigprocmask");
    int sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR1);
    int sfd1 = signalfd(-1, &one, 0);
    TL_CHECK(sfd >= 0 && sfd1 >= 0, "signalfd: %s", strerror(errno));
    printf("signalfds %d %d\n", sfd, sfd1);

    uint64_t h = TL_HASH_INIT, x = 1;
    /* getpid() each time, not once: started by hand, without zhuque run's pid namespace, the
     * program gets a new pid at every resume (signals it sent itself then name the new one). */
    for (unsigned long r = 1; r <= rounds; r++) {
        for (int k = 0; k < 3; k++) {
            union sigval v = {.sival_int = (int)(r + (unsigned long)k)};
            TL_CHECK(sigqueue(getpid(), rt, v) == 0, "sigqueue: %s", strerror(errno));
        }
        TL_CHECK(kill(getpid(), SIGUSR1) == 0, "kill");
        TL_CHECK(raise(SIGUSR2) == 0, "raise");
        for (int k = 0; k < 2; k++) {
            union sigval v = {.sival_int = (int)(10 * r + (unsigned long)k)};
            int e = pthread_sigqueue(pthread_self(), rt2, v);
            TL_CHECK(e == 0, "pthread_sigqueue: %s", strerror(e));
        }
        if (r % 4000 == 0)
            zq_fail_now();
        for (int i = 0; i < 2000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;

        struct pollfd p = {sfd, POLLIN, 0};
        int n;
        while ((n = poll(&p, 1, 10000)) < 0 && errno == EINTR)
            ;
        TL_CHECK(n == 1, "signalfd not readable (round %lu)", r);
        int got_usr1 = 0, got_usr2 = 0, got_rt = 0, got_rt2 = 0;
        for (;;) {
            struct signalfd_siginfo si[8];
            ssize_t len = read(sfd, si, sizeof si);
            if (len < 0 && errno == EINTR)
                continue;
            if (len < 0 && errno == EAGAIN)
                break;
            TL_CHECK(len > 0 && len % sizeof si[0] == 0, "read: %s", strerror(errno));
            for (size_t i = 0; i < (size_t)len / sizeof si[0]; i++) {
                int sig = (int)si[i].ssi_signo;
                if (sig == SIGUSR1) {
                    TL_CHECK(si[i].ssi_code == SI_USER && (pid_t)si[i].ssi_pid == getpid(),
                             "SIGUSR1 siginfo code %d pid %u", si[i].ssi_code, si[i].ssi_pid);
                    got_usr1++;
                } else if (sig == SIGUSR2) {
                    TL_CHECK(si[i].ssi_code == SI_TKILL && (pid_t)si[i].ssi_pid == getpid(),
                             "SIGUSR2 siginfo code %d pid %u", si[i].ssi_code, si[i].ssi_pid);
                    got_usr2++;
                } else if (sig == rt2) {
                    TL_CHECK(si[i].ssi_code == SI_QUEUE && (pid_t)si[i].ssi_pid == getpid(),
                             "rt2 code %d", si[i].ssi_code);
                    TL_CHECK(si[i].ssi_int == (int)(10 * r + (unsigned long)got_rt2),
                             "round %lu: rt2 value %d, expected %lu", r, si[i].ssi_int,
                             10 * r + (unsigned long)got_rt2);
                    got_rt2++;
                } else if (sig == rt) {
                    TL_CHECK(si[i].ssi_code == SI_QUEUE, "rt code %d", si[i].ssi_code);
                    TL_CHECK(si[i].ssi_int == (int)(r + (unsigned long)got_rt),
                             "round %lu: rt value %d, expected %lu", r, si[i].ssi_int,
                             r + (unsigned long)got_rt);
                    got_rt++;
                } else {
                    TL_CHECK(0, "unexpected signal %d", sig);
                }
                h = tl_mix(h, (uint64_t)sig * 1000003u + (uint64_t)si[i].ssi_int);
            }
        }
        /* SIGUSR2 was raised for this thread: it may only become readable once delivered. */
        if (!got_usr2) {
            struct signalfd_siginfo si;
            struct pollfd q = {sfd, POLLIN, 0};
            int n;
            while ((n = poll(&q, 1, 10000)) < 0 && errno == EINTR)
                ;
            TL_CHECK(n == 1 && read(sfd, &si, sizeof si) == sizeof si &&
                         si.ssi_signo == SIGUSR2,
                     "SIGUSR2 lost (round %lu)", r);
            got_usr2 = 1;
            h = tl_mix(h, (uint64_t)SIGUSR2 * 1000003u + (uint64_t)si.ssi_int);
        }
        TL_CHECK(got_usr1 == 1 && got_usr2 == 1 && got_rt == 3 && got_rt2 == 2,
                 "round %lu: usr1 %d usr2 %d rt %d rt2 %d", r, got_usr1, got_usr2, got_rt,
                 got_rt2);
        if (r % (rounds / 40 ? rounds / 40 : 1) == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    /* The blocking signalfd for SIGUSR1 alone. */
    TL_CHECK(kill(getpid(), SIGUSR1) == 0, "kill");
    struct signalfd_siginfo si;
    TL_CHECK(read(sfd1, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1, "sfd1");
    printf("done %s\n", x ? "ok" : "zero");
    return 0;
}
