/*
 * sock_shutdown ROUNDS
 *
 * Shutdown states of sockets that are not one end of a pair (issue 12: lost at a resume):
 * UDP sockets shut down for writing, for reading and both ways, Unix datagram sockets shut
 * down for reading (bound) and for writing (unbound, and connected to another socket of the
 * program), beside sockets that were not shut down at all; a TCP connection inside the
 * program that both ends shut down for writing (one with unread data: it reads ENOTCONN or
 * EBADF after a resume before), and two SO_REUSEPORT listeners on one port. Every round
 * checks what the kernel reports: poll's POLLRDHUP/POLLHUP, a read that returns 0 instead of
 * EAGAIN, a send that fails with EPIPE, that the untouched sockets still carry datagrams, and
 * that both listeners listen on the port.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int udp(void)
{
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    TL_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&lo, sizeof lo) == 0, "UDP socket");
    return fd;
}

static int unix_dgram(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    TL_CHECK(fd >= 0, "Unix socket");
    if (path) {
        struct sockaddr_un un = {.sun_family = AF_UNIX};
        snprintf(un.sun_path, sizeof un.sun_path, "%s", path);
        unlink(path);
        TL_CHECK(bind(fd, (struct sockaddr *)&un, sizeof un) == 0, "bind %s", path);
    }
    return fd;
}

static short events(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    int n;
    /* A failure that lands inside poll makes it return EINTR after the resume (README). */
    while ((n = poll(&p, 1, 0)) < 0 && errno == EINTR)
        ;
    TL_CHECK(n >= 0, "poll");
    return p.revents;
}

static void to(int from, int at, int want_errno, const char *what, unsigned long r)
{
    struct sockaddr_storage a;
    socklen_t len = sizeof a;
    TL_CHECK(getsockname(at, (struct sockaddr *)&a, &len) == 0, "getsockname");
    ssize_t n = sendto(from, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&a, len);
    if (want_errno)
        TL_CHECK(n < 0 && errno == want_errno, "round %lu: %s: sendto %zd errno %d", r, what, n,
                 errno);
    else
        TL_CHECK(n == 1, "round %lu: %s: sendto errno %d", r, what, errno);
}

static void reads_eof(int fd, const char *what, unsigned long r)
{
    TL_CHECK(events(fd) & POLLRDHUP, "round %lu: %s: no POLLRDHUP", r, what);
    /* A blocking read (a non-blocking one on UDP says EAGAIN): it returns at once. */
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    TL_CHECK(n == 0, "round %lu: %s: recv %zd errno %d, not end of file", r, what, n, errno);
}

static void carries(int from, int at, const char *what, unsigned long r)
{
    to(from, at, 0, what, r);
    char c;
    TL_CHECK(recv(at, &c, 1, MSG_DONTWAIT) == 1 && c == 'x', "round %lu: %s: recv", r, what);
    TL_CHECK(!(events(at) & (POLLRDHUP | POLLHUP)), "round %lu: %s: hung up", r, what);
}

static int tcp_listener(int reuseport, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    TL_CHECK(fd >= 0, "TCP socket");
    if (reuseport)
        TL_CHECK(setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) == 0, "REUSEPORT");
    TL_CHECK(bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 8) == 0, "listen");
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    TL_CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0, "getsockname");
    return ntohs(a.sin_port);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 3000);
    /* A TCP connection both ends shut down, "hello" left unread on one side. */
    int l = tcp_listener(0, 0);
    struct sockaddr_in la = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                             .sin_port = htons((uint16_t)port_of(l))};
    int t_c = socket(AF_INET, SOCK_STREAM, 0);
    TL_CHECK(connect(t_c, (struct sockaddr *)&la, sizeof la) == 0, "connect");
    int t_s = accept(l, NULL, NULL);
    TL_CHECK(t_s >= 0 && send(t_s, "hello", 5, 0) == 5, "accept/send");
    TL_CHECK(shutdown(t_c, SHUT_WR) == 0 && shutdown(t_s, SHUT_WR) == 0, "TCP shutdowns");
    for (int i = 0; i < 1000 && !(events(t_c) & POLLRDHUP); i++)
        usleep(1000);
    int rp1 = tcp_listener(1, 0), rp2 = tcp_listener(1, port_of(rp1));
    int u_wr = udp(), u_rd = udp(), u_both = udp(), u_plain = udp(), u_other = udp();
    shutdown(u_wr, SHUT_WR); /* unconnected: ENOTCONN, yet the socket is shut down */
    shutdown(u_rd, SHUT_RD);
    shutdown(u_both, SHUT_RDWR);
    int x_rd = unix_dgram("dgram-shut-rd"), x_plain = unix_dgram("dgram-plain");
    int x_wr = unix_dgram(NULL), x_conn = unix_dgram(NULL);
    TL_CHECK(shutdown(x_rd, SHUT_RD) == 0, "shutdown x_rd");
    TL_CHECK(shutdown(x_wr, SHUT_WR) == 0, "shutdown x_wr");
    struct sockaddr_un plain = {.sun_family = AF_UNIX, .sun_path = "dgram-plain"};
    TL_CHECK(connect(x_conn, (struct sockaddr *)&plain, sizeof plain) == 0, "connect");
    TL_CHECK(shutdown(x_conn, SHUT_WR) == 0, "shutdown x_conn");

    uint64_t h = TL_HASH_INIT, x = 1;
    for (unsigned long r = 1; r <= rounds; r++) {
        to(u_wr, u_plain, EPIPE, "UDP SHUT_WR", r);
        reads_eof(u_rd, "UDP SHUT_RD", r);
        reads_eof(u_both, "UDP SHUT_RDWR", r);
        TL_CHECK(events(u_both) & POLLHUP, "round %lu: UDP SHUT_RDWR: no POLLHUP", r);
        to(u_both, u_plain, EPIPE, "UDP SHUT_RDWR", r);
        carries(u_other, u_plain, "UDP", r);
        char peek[8];
        TL_CHECK(recv(t_c, peek, sizeof peek, MSG_PEEK) == 5 && memcmp(peek, "hello", 5) == 0,
                 "round %lu: TCP unread data", r);
        reads_eof(t_s, "TCP ended", r);
        TL_CHECK(send(t_c, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE, "round %lu: TCP send", r);
        int on = 0;
        socklen_t len = sizeof on;
        TL_CHECK(port_of(rp1) == port_of(rp2) &&
                     getsockopt(rp2, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on,
                 "round %lu: second SO_REUSEPORT listener", r);
        reads_eof(x_rd, "Unix SHUT_RD", r);
        to(x_wr, x_plain, EPIPE, "Unix SHUT_WR", r);
        TL_CHECK(send(x_conn, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno == EPIPE,
                 "round %lu: connected Unix SHUT_WR: errno %d", r, errno);
        for (int i = 0; i < 100000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        h = tl_mix(h, x);
        if (r % 300 == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    char all[8];
    TL_CHECK(recv(t_c, all, sizeof all, 0) == 5 && recv(t_c, all, sizeof all, 0) == 0,
             "TCP data then end of file");
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
