/*
 * fd_events ROUNDS
 *
 * Kernel objects whose state is mostly in /proc/self/fdinfo, each exercised every round and
 * checked against what the program knows:
 * - inotify: watches on two directories with descriptors 1 and 3 (2 was removed: a gap the
 *   resume must keep); each round makes a file in one directory, and the event must come with
 *   the right descriptor, mask and name;
 * - epoll: an instance watching the inotify fd (level-triggered), an eventfd (edge-triggered),
 *   a pipe through an EPOLLONESHOT entry that fired once and must stay disabled, and a second
 *   epoll instance nested inside it;
 * - eventfd in semaphore mode: 3 written, read back as three 1s;
 * - timerfd: one that expired once and was never read (its expiration must still be there),
 *   one armed for an hour (relative), one for an absolute time an hour ahead (CLOCK_REALTIME),
 *   and a periodic one (every millisecond) read only now and then: it is nearly always
 *   expired and unread at a failure, when the kernel shows no time left until it is asked;
 *   it must come back periodic, with its interval, and keep expiring;
 * - UDP: two bound sockets connected to each other, a datagram each way per round;
 * - Unix stream listeners, one on a path (its socket file chmod'ed to 0640, a mode the
 *   resume must give back) and one in the abstract namespace, accepting a connection per
 *   round and exchanging a message over it.
 * Every 1000 rounds the program fails on purpose (zhuque_fail_now, a no-op without the
 * runtime) while a connection it made to its own listener waits to be accepted: after the
 * resume the listener must still have it, with the message. Messages in flight at a failure
 * are lost for datagrams and queued inotify events (the kernel cannot be given them back):
 * like real programs, this one retransmits after a timeout, so its output stays deterministic.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int wait_readable(int fd, int ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    int n;
    while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    TL_CHECK(n >= 0, "poll: %s", strerror(errno));
    return n == 1;
}

/* One inotify round: a new file in dir a, whose IN_CREATE event must arrive on wd 1. */
static void inotify_round(int in, int wd_a, unsigned long r)
{
    char name[64];
    for (int attempt = 0;; attempt++) {
        TL_CHECK(attempt < 50, "no inotify event for round %lu", r);
        snprintf(name, sizeof name, "a/f%lu.%d", r, attempt);
        int f = open(name, O_WRONLY | O_CREAT | O_EXCL, 0600);
        TL_CHECK(f >= 0, "create %s: %s", name, strerror(errno));
        close(f);
        if (!wait_readable(in, 100))
            continue; /* the event was queued at a failure: lost */
        char buf[4096] __attribute__((aligned(8)));
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            continue; /* lost at a failure after poll saw it */
        TL_CHECK(n > 0, "read inotify: %s", strerror(errno));
        int found = 0;
        for (char *p = buf; p < buf + n;) {
            struct inotify_event *e = (struct inotify_event *)p;
            TL_CHECK(e->wd == wd_a && (e->mask & IN_CREATE), "event wd %d mask %x", e->wd,
                     e->mask);
            if (strcmp(e->name, name + 2) == 0)
                found = 1;
            p += sizeof *e + e->len;
        }
        if (found)
            return;
    }
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 3000);
    uint64_t h = TL_HASH_INIT;

    /* inotify: descriptors 1 and 3. */
    TL_CHECK(mkdir("a", 0700) == 0 && mkdir("b", 0700) == 0 && mkdir("c", 0700) == 0, "mkdir");
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    int wd_a = inotify_add_watch(in, "a", IN_CREATE);
    int wd_b = inotify_add_watch(in, "b", IN_DELETE);
    int wd_c = inotify_add_watch(in, "c", IN_MODIFY | IN_ATTRIB);
    TL_CHECK(wd_a == 1 && wd_b == 2 && wd_c == 3, "wds %d %d %d", wd_a, wd_b, wd_c);
    TL_CHECK(inotify_rm_watch(in, wd_b) == 0, "rm_watch");
    char ig[256];
    TL_CHECK(read(in, ig, sizeof ig) > 0, "IN_IGNORED"); /* the removal's event */

    /* eventfds, a pipe, epolls. */
    int sem = eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK);
    int ev = eventfd(0, EFD_NONBLOCK);
    int pp[2];
    TL_CHECK(pipe2(pp, O_NONBLOCK) == 0, "pipe");
    int inner = epoll_create1(0);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {EPOLLIN, {.u64 = 0xA1}};
    TL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, in, &e) == 0, "epoll inotify");
    e = (struct epoll_event){EPOLLIN | EPOLLET, {.u64 = 0xB2}};
    TL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e) == 0, "epoll eventfd");
    e = (struct epoll_event){EPOLLIN | EPOLLONESHOT, {.u64 = 0xC3}};
    TL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &e) == 0, "epoll pipe");
    e = (struct epoll_event){EPOLLIN, {.u64 = 0xD4}};
    TL_CHECK(epoll_ctl(ep, EPOLL_CTL_ADD, inner, &e) == 0, "epoll nested");
    e = (struct epoll_event){EPOLLIN, {.u64 = 0xE5}};
    TL_CHECK(epoll_ctl(inner, EPOLL_CTL_ADD, sem, &e) == 0, "inner epoll");
    TL_CHECK(write(pp[1], "x", 1) == 1, "pipe write");
    struct epoll_event got[8];
    int n;
    while ((n = epoll_wait(ep, got, 8, 1000)) < 0 && errno == EINTR)
        ;
    TL_CHECK(n == 1 && got[0].data.u64 == 0xC3, "oneshot fired %d", n);
    /* The pipe stays readable, but its oneshot entry is disabled from now on. */

    /* timerfds. */
    int t_done = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec its = {{0, 0}, {0, 1000000}};
    TL_CHECK(timerfd_settime(t_done, 0, &its, NULL) == 0, "arm");
    TL_CHECK(wait_readable(t_done, 5000), "timer did not expire");
    int t_rel = timerfd_create(CLOCK_MONOTONIC, 0);
    its = (struct itimerspec){{0, 0}, {3600, 0}};
    TL_CHECK(timerfd_settime(t_rel, 0, &its, NULL) == 0, "arm rel");
    int t_abs = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    time_t abs_at = now.tv_sec + 3600;
    its = (struct itimerspec){{60, 0}, {abs_at, 0}};
    TL_CHECK(timerfd_settime(t_abs, TFD_TIMER_ABSTIME, &its, NULL) == 0, "arm abs");
    int t_per = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    its = (struct itimerspec){{0, 1000000}, {0, 1000000}};
    TL_CHECK(timerfd_settime(t_per, 0, &its, NULL) == 0, "arm periodic");

    /* UDP pair. */
    int u1 = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int u2 = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a1 = {.sin_family = AF_INET}, a2 = {.sin_family = AF_INET};
    a1.sin_addr.s_addr = a2.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a1;
    TL_CHECK(bind(u1, (void *)&a1, sizeof a1) == 0 && bind(u2, (void *)&a2, sizeof a2) == 0,
             "udp bind");
    TL_CHECK(getsockname(u1, (void *)&a1, &al) == 0 && getsockname(u2, (void *)&a2, &al) == 0,
             "getsockname");
    TL_CHECK(connect(u1, (void *)&a2, sizeof a2) == 0 && connect(u2, (void *)&a1, sizeof a1) == 0,
             "udp connect");

    /* Unix listeners. */
    int lp = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int la = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_un up = {.sun_family = AF_UNIX}, ua = {.sun_family = AF_UNIX};
    strcpy(up.sun_path, "listener.sock");
    struct stat here; /* the run's own directory makes the abstract name unique */
    TL_CHECK(stat(".", &here) == 0, "stat .");
    snprintf(ua.sun_path + 1, sizeof ua.sun_path - 1, "zhuque-test-%llu",
             (unsigned long long)here.st_ino);
    socklen_t ua_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                                   strlen(ua.sun_path + 1));
    TL_CHECK(bind(lp, (void *)&up, sizeof up) == 0 && listen(lp, 4) == 0, "unix path listen");
    /* Its socket file's mode, set after the bind (the resume re-binds under another umask). */
    TL_CHECK(chmod("listener.sock", 0640) == 0, "chmod listener.sock");
    TL_CHECK(bind(la, (void *)&ua, ua_len) == 0 && listen(la, 4) == 0, "unix abstract listen");
    printf("fds inotify=%d sem=%d ev=%d pipe=%d,%d epoll=%d,%d timers=%d,%d,%d udp=%d,%d "
           "unix=%d,%d\n",
           in, sem, ev, pp[0], pp[1], inner, ep, t_done, t_rel, t_abs, u1, u2, lp, la);

    for (unsigned long r = 1; r <= rounds; r++) {
        inotify_round(in, wd_a, r);

        /* eventfds through epoll: the edge-triggered one reports once per write. */
        uint64_t three = 3, one = 1, v;
        TL_CHECK(write(sem, &three, 8) == 8 && write(ev, &one, 8) == 8, "eventfd write");
        n = epoll_wait(ep, got, 8, 5000);
        int saw_ev = 0, saw_inner = 0;
        for (int i = 0; i < n; i++) {
            TL_CHECK(got[i].data.u64 != 0xC3, "disabled oneshot entry fired");
            TL_CHECK(got[i].data.u64 != 0xA1, "inotify readable with nothing queued");
            saw_ev |= got[i].data.u64 == 0xB2;
            saw_inner |= got[i].data.u64 == 0xD4;
        }
        TL_CHECK(saw_inner, "nested epoll not ready (round %lu)", r);
        if (saw_ev)
            TL_CHECK(read(ev, &v, 8) == 8, "eventfd read");
        else
            TL_CHECK(read(ev, &v, 8) == 8 || errno == EAGAIN, "eventfd read");
        struct epoll_event ig2[2];
        TL_CHECK(epoll_wait(inner, ig2, 2, 0) == 1 && ig2[0].data.u64 == 0xE5, "inner ready");
        for (int k = 0; k < 3; k++)
            TL_CHECK(read(sem, &v, 8) == 8 && v == 1, "semaphore read %d", k);
        TL_CHECK(read(sem, &v, 8) < 0 && errno == EAGAIN, "semaphore not empty");

        /* UDP: a datagram each way, retransmitted after a timeout. */
        for (int dir = 0; dir < 2; dir++) {
            int from = dir ? u2 : u1, to = dir ? u1 : u2;
            uint64_t msg[2] = {r, (uint64_t)dir}, back[2];
            for (int attempt = 0;; attempt++) {
                TL_CHECK(attempt < 50, "udp round %lu lost", r);
                TL_CHECK(send(from, msg, sizeof msg, 0) == sizeof msg, "udp send: %s",
                         strerror(errno));
                if (!wait_readable(to, 100))
                    continue;
                ssize_t k = recv(to, back, sizeof back, MSG_DONTWAIT);
                if (k < 0 && (errno == EAGAIN || errno == EINTR))
                    continue; /* lost at a failure after poll saw it */
                TL_CHECK(k == sizeof back, "udp recv: %s", strerror(errno));
                if (back[0] == r && back[1] == (uint64_t)dir)
                    break;
            }
        }

        /* Unix listeners: connect, accept, ping/pong. A connection whose client has gone (a
         * retry's) shows end of file and is skipped. */
        int lst = r % 2 ? lp : la;
        for (int attempt = 0;; attempt++) {
            TL_CHECK(attempt < 50, "unix round %lu: no connection", r);
            int c = socket(AF_UNIX, SOCK_STREAM, 0);
            int cr = r % 2 ? connect(c, (void *)&up, sizeof up) : connect(c, (void *)&ua, ua_len);
            TL_CHECK(cr == 0, "unix connect: %s", strerror(errno));
            char pbuf[32];
            int len = snprintf(pbuf, sizeof pbuf, "ping %lu", r);
            TL_CHECK(write(c, pbuf, (size_t)len) == len, "ping");
            if (r % 1000 == 0 && attempt == 0)
                zq_fail_now(); /* with a connection the listener has not accepted yet */
            int ok = 0;
            while (!ok && wait_readable(lst, 100)) {
                int s = accept4(lst, NULL, NULL, SOCK_CLOEXEC);
                if (s < 0 && (errno == EAGAIN || errno == EINTR))
                    break; /* lost at a failure after poll saw it */
                TL_CHECK(s >= 0, "accept: %s", strerror(errno));
                char got2[32] = {0};
                ssize_t k = read(s, got2, sizeof got2 - 1);
                TL_CHECK(k >= 0, "read: %s", strerror(errno));
                ok = k == len && strcmp(got2, pbuf) == 0;
                close(s);
            }
            close(c);
            TL_CHECK(ok || r % 1000 != 0 || attempt != 0,
                     "round %lu: the connection waiting at the failure was lost", r);
            if (ok)
                break;
        }

        if (r % 50 == 0 || r == rounds) {
            uint64_t ticks;
            TL_CHECK(read(t_done, &ticks, 8) == 8 && ticks == 1, "the unread expiration");
            its = (struct itimerspec){{0, 0}, {0, 1000000}};
            TL_CHECK(timerfd_settime(t_done, 0, &its, NULL) == 0, "re-arm");
            TL_CHECK(wait_readable(t_done, 5000), "timer did not expire again");
            struct itimerspec left;
            TL_CHECK(timerfd_gettime(t_rel, &left) == 0 && left.it_value.tv_sec < 3600 &&
                         left.it_value.tv_sec > 3000,
                     "relative timer left %ld s", (long)left.it_value.tv_sec);
            TL_CHECK(timerfd_gettime(t_abs, &left) == 0 && left.it_interval.tv_sec == 60,
                     "absolute timer interval");
            clock_gettime(CLOCK_REALTIME, &now);
            long expect = (long)(abs_at - now.tv_sec);
            TL_CHECK(left.it_value.tv_sec >= expect - 2 && left.it_value.tv_sec <= expect + 1,
                     "absolute timer left %ld s, expected about %ld", (long)left.it_value.tv_sec,
                     expect);
            TL_CHECK(timerfd_gettime(t_per, &left) == 0 && left.it_interval.tv_sec == 0 &&
                         left.it_interval.tv_nsec == 1000000,
                     "periodic timer interval %ld ns", (long)left.it_interval.tv_nsec);
            TL_CHECK(wait_readable(t_per, 5000), "the periodic timer stopped");
            struct stat sock_file;
            TL_CHECK(stat("listener.sock", &sock_file) == 0 && S_ISSOCK(sock_file.st_mode) &&
                         (sock_file.st_mode & 07777) == 0640,
                     "listener.sock mode %o", (unsigned)(sock_file.st_mode & 07777));
            TL_CHECK(read(t_per, &ticks, 8) == 8 && ticks >= 1, "periodic ticks");
            struct sockaddr_in now1;
            al = sizeof now1;
            TL_CHECK(getsockname(u1, (void *)&now1, &al) == 0 && now1.sin_port == a1.sin_port,
                     "udp port changed");
            TL_CHECK(getpeername(u1, (void *)&now1, &al) == 0 && now1.sin_port == a2.sin_port,
                     "udp peer changed");
            TL_CHECK(fcntl(lp, F_GETFL) & O_NONBLOCK, "listener lost O_NONBLOCK");
            char c;
            TL_CHECK(read(pp[0], &c, 1) == 1 && c == 'x', "pipe data");
            TL_CHECK(write(pp[1], "x", 1) == 1, "pipe write");
            h = tl_mix(h, r);
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
        }
    }
    return 0;
}
