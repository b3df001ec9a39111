/*
 * fd_dgram_queue ROUNDS
 *
 * Datagrams waiting in the receive queue of a bound datagram socket at a failure (issue 12:
 * they were lost, and a reader waiting for them blocked for ever). Five receivers: a UDP
 * socket, a UDP socket connected to one sender, a Unix datagram socket bound to a path, a UDP
 * socket connected to itself (below), and a Unix datagram socket connected to one sender
 * made after it (which must still name that peer after a resume: it came back unconnected,
 * its connect refused because the sender did not exist yet).
 * Their senders are of every kind: UDP sockets that stay bound and ones that sent one datagram
 * and were closed; Unix sockets bound to a path, to an abstract name, and unnamed; and a UDP
 * socket connected to its own address, sending to itself (as PostgreSQL's statistics
 * collector did). Each round
 * sends a few datagrams (zero-length ones too) to each receiver, leaves some queued across the
 * next round, and checks every message read: length, content, order, and the sender address
 * `recvfrom` reports (a reply must go where it went).
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct addr {
    struct sockaddr_storage a;
    socklen_t len;
};

struct msg {
    struct addr from;
    size_t len;
    uint64_t id;
};

#define RING 16

struct queue {
    const char *name;
    int fd;
    struct addr at;
    uint64_t sent, got;
    struct msg m[RING];
};

static void name_of(int fd, struct addr *a)
{
    a->len = sizeof a->a;
    TL_CHECK(getsockname(fd, (struct sockaddr *)&a->a, &a->len) == 0, "getsockname");
}

static void fill(char *buf, uint64_t id, size_t len)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + (id + i) % 26);
}

static void put(struct queue *q, int from, uint64_t *seed)
{
    struct msg *m = &q->m[q->sent % RING];
    m->len = tl_below(seed, 4) == 0 ? 0 : 1 + tl_below(seed, 200);
    m->id = q->sent;
    name_of(from, &m->from);
    if (m->from.len <= sizeof(sa_family_t))
        m->from.len = 0; /* an unnamed Unix socket: recvfrom reports no address */
    char buf[256];
    fill(buf, m->id, m->len);
    TL_CHECK(sendto(from, buf, m->len, 0, (struct sockaddr *)&q->at.a, q->at.len) ==
                 (ssize_t)m->len,
             "%s: sendto", q->name);
    q->sent++;
}

static void get(struct queue *q, uint64_t *h)
{
    struct msg *m = &q->m[q->got % RING];
    char buf[256], want[256];
    struct addr a = {.len = sizeof a.a};
    ssize_t n = recvfrom(q->fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&a.a, &a.len);
    TL_CHECK(n == (ssize_t)m->len, "%s: message %llu: %zd bytes, not %zu (errno %d)", q->name,
             (unsigned long long)m->id, n, m->len, errno);
    fill(want, m->id, m->len);
    TL_CHECK(memcmp(buf, want, m->len) == 0, "%s: message %llu: wrong bytes", q->name,
             (unsigned long long)m->id);
    TL_CHECK(a.len == m->from.len && memcmp(&a.a, &m->from.a, a.len) == 0,
             "%s: message %llu: from another sender (address of %u bytes, not %u)", q->name,
             (unsigned long long)m->id, (unsigned)a.len, (unsigned)m->from.len);
    *h = tl_hash(*h, buf, (size_t)n);
    q->got++;
}

static int udp_socket(void)
{
    struct sockaddr_in lo = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    TL_CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&lo, sizeof lo) == 0, "UDP socket");
    return fd;
}

static int unix_socket(const char *path, int abstract)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
    TL_CHECK(fd >= 0, "Unix socket");
    if (!path)
        return fd;
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    memcpy(un.sun_path + (abstract ? 1 : 0), path, n);
    if (!abstract)
        unlink(path);
    /* A path with its NUL; an abstract name after its leading NUL. */
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    TL_CHECK(bind(fd, (struct sockaddr *)&un, len) == 0, "bind %s", path);
    return fd;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 20000);
    char cwd[3000], path[3100];
    TL_CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");

    /* Receivers first: they come before their senders in fd order. */
    struct queue udp = {.name = "udp", .fd = udp_socket()};
    struct queue conn = {.name = "connected udp", .fd = udp_socket()};
    snprintf(path, sizeof path, "%s/dgram-receiver", cwd);
    struct queue unx = {.name = "unix", .fd = unix_socket(path, 0)};
    struct queue self = {.name = "udp to itself", .fd = udp_socket()};
    snprintf(path, sizeof path, "%s/dgram-connected-receiver", cwd);
    struct queue cunx = {.name = "connected unix", .fd = unix_socket(path, 0)};
    int udp_sender = udp_socket();
    snprintf(path, sizeof path, "%s/dgram-sender", cwd);
    int path_sender = unix_socket(path, 0);
    char abstract[64];
    snprintf(abstract, sizeof abstract, "zhuque-dgram-%016llx",
             (unsigned long long)tl_hash(TL_HASH_INIT, cwd, strlen(cwd)));
    int abstract_sender = unix_socket(abstract, 1);
    int unnamed_sender = unix_socket(NULL, 0);
    snprintf(path, sizeof path, "%s/dgram-connected-sender", cwd);
    int unix_peer = unix_socket(path, 0);
    struct queue *queues[] = {&udp, &conn, &unx, &self, &cunx};
    enum { QUEUES = sizeof queues / sizeof queues[0] };
    for (int i = 0; i < QUEUES; i++)
        name_of(queues[i]->fd, &queues[i]->at);
    struct addr peer;
    name_of(unix_peer, &peer);
    TL_CHECK(connect(cunx.fd, (struct sockaddr *)&peer.a, peer.len) == 0, "connect unix");
    struct addr s;
    name_of(udp_sender, &s);
    TL_CHECK(connect(conn.fd, (struct sockaddr *)&s.a, s.len) == 0, "connect");
    TL_CHECK(connect(self.fd, (struct sockaddr *)&self.at.a, self.at.len) == 0, "connect self");

    uint64_t seed = 11, h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        struct addr got = {.len = sizeof got.a};
        TL_CHECK(getpeername(cunx.fd, (struct sockaddr *)&got.a, &got.len) == 0 &&
                     got.len == peer.len && memcmp(&got.a, &peer.a, got.len) == 0,
                 "round %lu: the connected Unix receiver's peer (errno %d)", r, errno);
        for (int qi = 0; qi < QUEUES; qi++) {
            struct queue *q = queues[qi];
            int k = 1 + (int)tl_below(&seed, 3);
            for (int i = 0; i < k; i++) {
                uint64_t who = tl_below(&seed, 3);
                if (q == &conn) {
                    put(q, udp_sender, &seed);
                } else if (q == &cunx) {
                    put(q, unix_peer, &seed);
                } else if (q == &self) {
                    put(q, self.fd, &seed);
                } else if (q == &udp && who == 0) {
                    int gone = udp_socket();
                    put(q, gone, &seed);
                    close(gone);
                } else if (q == &udp) {
                    put(q, udp_sender, &seed);
                } else {
                    int from[] = {path_sender, abstract_sender, unnamed_sender};
                    put(q, from[who], &seed);
                }
            }
            /* Leave up to three messages queued for the next round. */
            uint64_t keep = tl_below(&seed, 4);
            while (q->sent - q->got > keep)
                get(q, &h);
        }
        if (r % 2000 == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    for (int qi = 0; qi < QUEUES; qi++) {
        while (queues[qi]->got < queues[qi]->sent)
            get(queues[qi], &h);
        char x;
        TL_CHECK(recv(queues[qi]->fd, &x, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN,
                 "%s: a message more than was sent", queues[qi]->name);
    }
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
