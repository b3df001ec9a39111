/*
 * fd_server PORT REQUESTS
 *
 * An epoll event loop over a listening TCP socket (127.0.0.1:PORT, non-blocking, SO_REUSEADDR),
 * an eventfd and a timerfd, serving a line protocol to clients:
 *     client: HELLO <connection id>      (once, first)
 *     client: REQ                        server: OK <n> <hash of n>     (n counts every REQ)
 *     ...                                server: BYE <n>               (when n reaches REQUESTS)
 * Every 10th request the server signals itself through the eventfd; the timerfd ticks every
 * 10 ms. After answering REQUESTS requests it says BYE, prints its totals and exits. Its stdout
 * is deterministic whatever the client does (n counts requests the server answered).
 *
 * On stderr (for the test, never compared): after a resume, a recovery handler lists the
 * client connections that were open at the failure,
 *     server: recovered with open connections: <id> <id>...
 * and every connection the server drops because it failed says so:
 *     server: dropped connection <id>: <reason>
 * A connection to a client outside the process cannot survive the failure: the test checks that
 * each recovered connection is dropped on first use and that the server goes on serving.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define MAX_FD 1024
#define TAG_LISTEN (1ULL << 40)
#define TAG_EVENT (2ULL << 40)
#define TAG_TIMER (3ULL << 40)

struct conn {
    int open;
    unsigned long id;
    char buf[256];
    size_t len;
};

static struct conn conns[MAX_FD];

static void put_str(char **p, const char *s)
{
    while (*s)
        *(*p)++ = *s++;
}

static void put_num(char **p, unsigned long v)
{
    char t[24];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *(*p)++ = t[--n];
}

/* Runs after a resume, before the server continues: async-signal-safe (write only). */
static void on_recovery(void *arg)
{
    (void)arg;
    char line[4096], *p = line;
    put_str(&p, "server: recovered with open connections:");
    for (int fd = 0; fd < MAX_FD && p < line + sizeof line - 32; fd++) {
        if (!conns[fd].open)
            continue;
        *p++ = ' ';
        if (conns[fd].id)
            put_num(&p, conns[fd].id);
        else
            *p++ = '?';
    }
    *p++ = '\n';
    ssize_t w = write(2, line, (size_t)(p - line));
    (void)w;
}

static void drop(int epfd, int fd, const char *why)
{
    fprintf(stderr, "server: dropped connection %lu: %s\n", conns[fd].id, why);
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    conns[fd].open = 0;
}

/* Sends a whole reply; returns 0 (and the reason) when the connection failed. */
static int reply(int fd, const char *s, size_t n, const char **why)
{
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            *why = strerror(errno);
            return 0;
        }
        s += w;
        n -= (size_t)w;
    }
    return 1;
}

int main(int argc, char **argv)
{
    unsigned long port = tl_arg(argc, argv, 1, 0);
    unsigned long requests = tl_arg(argc, argv, 2, 20000);
    TL_CHECK(port > 0 && port < 65536, "usage: fd_server PORT REQUESTS");
    zq_on_recovery(on_recovery, NULL);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    TL_CHECK(setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0, "SO_REUSEADDR");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    TL_CHECK(bind(ls, (struct sockaddr *)&a, sizeof a) == 0, "bind: %s", strerror(errno));
    TL_CHECK(listen(ls, 16) == 0, "listen");
    int ev = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int tm = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct itimerspec its = {{0, 10000000}, {0, 10000000}};
    TL_CHECK(ev >= 0 && tm >= 0 && timerfd_settime(tm, 0, &its, NULL) == 0, "eventfd/timerfd");
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event e = {EPOLLIN, {.u64 = TAG_LISTEN}};
    TL_CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, ls, &e) == 0, "epoll listen");
    e.data.u64 = TAG_EVENT;
    TL_CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, ev, &e) == 0, "epoll eventfd");
    e.data.u64 = TAG_TIMER;
    TL_CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, tm, &e) == 0, "epoll timerfd");
    printf("listening: fds listen=%d eventfd=%d timerfd=%d epoll=%d\n", ls, ev, tm, epfd);
    fflush(stdout);

    unsigned long served = 0, events = 0, ticks = 0;
    uint64_t hsum = TL_HASH_INIT;
    int done = 0;
    while (!done) {
        struct epoll_event got[16];
        int n = epoll_wait(epfd, got, 16, -1);
        if (n < 0 && errno == EINTR)
            continue;
        TL_CHECK(n >= 0, "epoll_wait: %s", strerror(errno));
        for (int i = 0; i < n && !done; i++) {
            uint64_t tag = got[i].data.u64;
            if (tag == TAG_LISTEN) {
                for (;;) {
                    int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) {
                        TL_CHECK(errno == EAGAIN || errno == EINTR || errno == ECONNABORTED,
                                 "accept: %s", strerror(errno));
                        break;
                    }
                    TL_CHECK(c < MAX_FD, "fd %d", c);
                    conns[c] = (struct conn){.open = 1};
                    struct epoll_event ce = {EPOLLIN | EPOLLRDHUP, {.u64 = (uint64_t)c}};
                    TL_CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, c, &ce) == 0, "epoll add");
                }
            } else if (tag == TAG_EVENT) {
                uint64_t v;
                if (read(ev, &v, sizeof v) == sizeof v)
                    events += v;
            } else if (tag == TAG_TIMER) {
                uint64_t v;
                if (read(tm, &v, sizeof v) == sizeof v)
                    ticks += v;
            } else {
                int fd = (int)tag;
                struct conn *c = &conns[fd];
                ssize_t r = read(fd, c->buf + c->len, sizeof c->buf - 1 - c->len);
                if (r < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                if (r <= 0) {
                    drop(epfd, fd, r == 0 ? "end of file" : strerror(errno));
                    continue;
                }
                c->len += (size_t)r;
                char *nl;
                while (!done && (nl = memchr(c->buf, '\n', c->len))) {
                    *nl = '\0';
                    const char *why = NULL;
                    int ok = 1;
                    if (strncmp(c->buf, "HELLO ", 6) == 0) {
                        c->id = strtoul(c->buf + 6, NULL, 10);
                    } else if (strcmp(c->buf, "REQ") == 0) {
                        served++;
                        uint64_t h = tl_mix(TL_HASH_INIT, served);
                        hsum = tl_mix(hsum, h);
                        char out[64];
                        int len;
                        if (served >= requests) {
                            len = snprintf(out, sizeof out, "BYE %lu\n", served);
                            done = 1;
                        } else {
                            len = snprintf(out, sizeof out, "OK %lu %016llx\n", served,
                                           (unsigned long long)h);
                        }
                        ok = reply(fd, out, (size_t)len, &why);
                        if (served % 10 == 0) {
                            uint64_t one64 = 1;
                            TL_CHECK(write(ev, &one64, 8) == 8, "eventfd write");
                        }
                        if (served % (requests / 20 ? requests / 20 : 1) == 0)
                            printf("served %lu hsum %016llx\n", served,
                                   (unsigned long long)hsum);
                    } else {
                        why = "protocol error";
                        ok = 0;
                    }
                    if (!ok) {
                        drop(epfd, fd, why);
                        break;
                    }
                    size_t used = (size_t)(nl - c->buf) + 1;
                    memmove(c->buf, c->buf + used, c->len - used);
                    c->len -= used;
                }
            }
        }
    }
    uint64_t v;
    if (read(ev, &v, sizeof v) == sizeof v)
        events += v;
    for (int fd = 0; fd < MAX_FD; fd++)
        if (conns[fd].open)
            close(fd);
    printf("served %lu requests, eventfd total %lu, timer ticked: %s, hsum %016llx\n", served,
           events, ticks > 0 ? "yes" : "no", (unsigned long long)hsum);
    return 0;
}
