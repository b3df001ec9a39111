/*
 * fd_in_flight ROUNDS [DIR]
 *
 * File descriptors in flight across failures (issue 12: fds sent with SCM_RIGHTS and not yet
 * received were closed at a save, and the reader found its message without them). Three
 * socketpairs (stream, datagram, seqpacket) always hold the messages of the round before,
 * each with fds of every kind: a pipe with unread data whose write end is closed, a regular
 * file at an offset (in DIR, default the working directory), a memfd, an eventfd with a count, a second fd of a file the
 * program keeps open (one description: a shared offset), and one end of a socketpair with
 * a message queued on it. The stream carries a message without fds between two with fds,
 * read back with exact lengths: the fds must come with the same byte. Every fd received is
 * checked with the kernel's view (fstat, offsets, contents, counts, the shared offset).
 * A fourth channel is no pair: a datagram socket bound to one abstract name sends to one
 * bound to another, which checks each message's sender address (the queue comes back from
 * the recreated sender). A fifth is the same with the receiver connected to its sender, so
 * that it takes datagrams from that peer only (its queue with fds was lost before: the
 * resume connected it first and then could not send to it), and checks its peer. A sixth is
 * a stream connection whose sender sends its round and closes its end at once, as a server
 * handing out an fd does (python's multiprocessing resource sharer): the reader takes the
 * round's messages with their fds, then end-of-file (the fds were lost before: the resume
 * kept only the bytes of a connection whose peer was gone). A seventh is the same with a
 * datagram socketpair, whose messages were lost with their fds (it has no name to send them
 * to again).
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <stddef.h>
#include <sys/un.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

enum { KINDS = 6 };
static int keep_fd;       /* the file whose second fd travels */
static int kept_end[14]; /* the kept end of each socketpair whose other end travels, by slot */
static const char *dir;

/* Sends to `to` (NULL: the socket's peer). */
static void send_fds(int sock, const struct sockaddr_un *to, const void *data, size_t len,
                     const int *fds, int n)
{
    char control[CMSG_SPACE(sizeof(int) * KINDS)];
    struct iovec iov = {.iov_base = (void *)data, .iov_len = len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (to) {
        m.msg_name = (void *)to;
        m.msg_namelen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
                                    strlen(to->sun_path + 1));
    }
    if (n) {
        memset(control, 0, sizeof control);
        m.msg_control = control;
        m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * n);
        memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    }
    CHECK(sendmsg(sock, &m, MSG_DONTWAIT) == (ssize_t)len, "sendmsg: %s", strerror(errno));
}

/* The sender address the bound channel's messages must come from (none: not checked). */
static struct sockaddr_un *expect_from;

/* Receives exactly `len` bytes into `data` and the fds that came with them. */
static int recv_fds(int sock, char *data, size_t len, int *fds)
{
    char control[CMSG_SPACE(sizeof(int) * KINDS)];
    struct iovec iov = {.iov_base = data, .iov_len = len};
    struct sockaddr_un from;
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                       .msg_controllen = sizeof control, .msg_name = &from,
                       .msg_namelen = sizeof from};
    ssize_t got = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    CHECK(got == (ssize_t)len, "recvmsg: %zd bytes, not %zu (%s)", got, len, strerror(errno));
    if (expect_from) {
        size_t want = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(expect_from->sun_path + 1);
        CHECK(m.msg_namelen == want && !memcmp(&from, expect_from, want),
              "a message came from another sender (%u bytes of address)", (unsigned)m.msg_namelen);
    }
    CHECK(!(m.msg_flags & MSG_CTRUNC), "control data truncated");
    int n = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
        CHECK(c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS, "control type %d",
              c->cmsg_type);
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        memcpy(fds + n, CMSG_DATA(c), sizeof(int) * k);
        n += k;
    }
    return n;
}

/* One fd of kind `kind` for round `r` (socketpair slot `slot`), made to be sent and closed
 * here. */
static int make(int kind, unsigned long r, int slot)
{
    char text[64];
    int len = snprintf(text, sizeof text, "kind %d round %lu", kind, r);
    switch (kind) {
    case 0: { /* a pipe's read end with unread data, its write end closed */
        int p[2];
        CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe");
        CHECK(write(p[1], text, len) == len, "write pipe");
        close(p[1]);
        return p[0];
    }
    case 1: { /* a regular file at an offset */
        char path[512];
        snprintf(path, sizeof path, "%s/file-%lu", dir, r % 3);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
        CHECK(write(fd, text, len) == len, "write file");
        CHECK(lseek(fd, (off_t)(r % 7), SEEK_SET) == (off_t)(r % 7), "lseek");
        return fd;
    }
    case 2: { /* a memfd */
        int fd = memfd_create("in-flight", MFD_CLOEXEC);
        CHECK(fd >= 0 && write(fd, text, len) == len, "memfd");
        return fd;
    }
    case 3: /* an eventfd with a count */
        return eventfd((unsigned)r + 1, EFD_CLOEXEC);
    case 4: /* a second fd of a file the program keeps open */
        return fcntl(keep_fd, F_DUPFD_CLOEXEC, 0);
    default: { /* one end of a socketpair, with a message queued on it */
        int sv[2];
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
        CHECK(write(sv[0], text, len) == len, "write socketpair");
        kept_end[slot] = sv[0];
        return sv[1];
    }
    }
}

/* Checks fd `fd` received as kind `kind` of round `r` (socketpair slot `slot`), and closes
 * it. */
static void check(int fd, int kind, unsigned long r, int slot)
{
    char want[64], got[64];
    int len = snprintf(want, sizeof want, "kind %d round %lu", kind, r);
    struct stat st;
    CHECK(fstat(fd, &st) == 0, "fstat: %s", strerror(errno));
    switch (kind) {
    case 0:
        CHECK(S_ISFIFO(st.st_mode), "round %lu: kind 0 is not a pipe", r);
        CHECK(read(fd, got, sizeof got) == len && !memcmp(got, want, len),
              "round %lu: pipe data", r);
        CHECK(read(fd, got, sizeof got) == 0, "round %lu: pipe not at end-of-file", r);
        break;
    case 1:
        CHECK(S_ISREG(st.st_mode) && st.st_nlink == 1, "round %lu: kind 1 is not the file", r);
        CHECK(lseek(fd, 0, SEEK_CUR) == (off_t)(r % 7), "round %lu: file offset %ld", r,
              (long)lseek(fd, 0, SEEK_CUR));
        CHECK(pread(fd, got, sizeof got, 0) == len && !memcmp(got, want, len),
              "round %lu: file data", r);
        break;
    case 2:
        CHECK(S_ISREG(st.st_mode) && st.st_size == len, "round %lu: memfd size", r);
        CHECK(pread(fd, got, sizeof got, 0) == len && !memcmp(got, want, len),
              "round %lu: memfd data", r);
        break;
    case 3: {
        uint64_t v = 0;
        CHECK(read(fd, &v, 8) == 8 && v == r + 1, "round %lu: eventfd count %llu", r,
              (unsigned long long)v);
        break;
    }
    case 4: {
        /* One description with keep_fd: moving one moves the other. */
        off_t at = (off_t)(r % 11);
        CHECK(lseek(fd, at, SEEK_SET) == at && lseek(keep_fd, 0, SEEK_CUR) == at,
              "round %lu: not the kept file's description", r);
        break;
    }
    default: {
        CHECK(S_ISSOCK(st.st_mode), "round %lu: kind 5 is not a socket", r);
        CHECK(read(fd, got, sizeof got) == len && !memcmp(got, want, len),
              "round %lu: socketpair message", r);
        int peer = kept_end[slot];
        CHECK(peer > 0 && write(fd, "x", 1) == 1 && read(peer, got, 1) == 1 && got[0] == 'x',
              "round %lu: the socketpair's other end", r);
        close(peer);
        break;
    }
    }
    close(fd);
}

struct pair {
    const char *name;
    int type, index, sv[2];
    /* Not a pair: sv[0], bound to `from`, sends to sv[1], bound to `to`. */
    struct sockaddr_un *to, *from;
    /* A new connection every round, its sender closed once the round is sent; rx[r % 2]
     * is round r's reading end. */
    int closed, rx[2];
};

/* Where round r's socketpair end sent on pair p is remembered (two rounds are in flight). */
static int slot(const struct pair *p, unsigned long r)
{
    return (int)(r % 2) * 7 + p->index;
}

/* Round r's messages on each pair: see the file's header. */
static void send_round(struct pair *p, unsigned long r)
{
    int fds[KINDS];
    char text[64];
    if (p->closed) {
        CHECK(socketpair(AF_UNIX, p->type | SOCK_CLOEXEC, 0, p->sv) == 0, "socketpair: %s",
              strerror(errno));
        p->rx[r % 2] = p->sv[1];
    }
    if (p->type == SOCK_STREAM) {
        int s = slot(p, r);
        int a[2] = {make(0, r, s), make(1, r, s)};
        int b[4] = {make(2, r, s), make(3, r, s), make(4, r, s), make(5, r, s)};
        int n = snprintf(text, sizeof text, "head %06lu|", r);
        send_fds(p->sv[0], NULL, text, n, a, 2);
        send_fds(p->sv[0], NULL, "plain|", 6, NULL, 0);
        n = snprintf(text, sizeof text, "tail %06lu|", r);
        send_fds(p->sv[0], NULL, text, n, b, 4);
        for (int i = 0; i < 2; i++)
            close(a[i]);
        for (int i = 0; i < 4; i++)
            close(b[i]);
        if (p->closed)
            close(p->sv[0]);
        return;
    }
    for (int k = 0; k < KINDS; k++)
        fds[k] = make(k, r, slot(p, r));
    int n = snprintf(text, sizeof text, "%s %06lu", p->name, r);
    send_fds(p->sv[0], p->to, text, n, fds, 3);
    send_fds(p->sv[0], p->to, "", 0, fds + 3, 3); /* a zero-length message with fds */
    for (int k = 0; k < KINDS; k++)
        close(fds[k]);
    if (p->closed)
        close(p->sv[0]);
}

static uint64_t receive_round(struct pair *p, unsigned long r, uint64_t h)
{
    int fds[KINDS];
    char text[64], got[64];
    if (p->closed)
        p->sv[1] = p->rx[r % 2];
    if (p->type == SOCK_STREAM) {
        int n = snprintf(text, sizeof text, "head %06lu|", r);
        CHECK(recv_fds(p->sv[1], got, n, fds) == 2 && !memcmp(got, text, n),
              "round %lu: stream head", r);
        check(fds[0], 0, r, slot(p, r));
        check(fds[1], 1, r, slot(p, r));
        CHECK(recv_fds(p->sv[1], got, 6, fds) == 0 && !memcmp(got, "plain|", 6),
              "round %lu: the plain message came with fds", r);
        n = snprintf(text, sizeof text, "tail %06lu|", r);
        CHECK(recv_fds(p->sv[1], got, n, fds) == 4 && !memcmp(got, text, n),
              "round %lu: stream tail", r);
        for (int k = 0; k < 4; k++)
            check(fds[k], 2 + k, r, slot(p, r));
        if (p->closed) {
            CHECK(recv(p->sv[1], got, 1, MSG_DONTWAIT) == 0,
                  "round %lu: the closed connection did not end after its messages", r);
            close(p->sv[1]);
        }
        return tl_hash(h, got, n);
    }
    int n = snprintf(text, sizeof text, "%s %06lu", p->name, r);
    expect_from = p->from;
    CHECK(recv_fds(p->sv[1], got, n, fds) == 3 && !memcmp(got, text, n), "round %lu: %s message",
          r, p->name);
    CHECK(recv_fds(p->sv[1], got, 0, fds + 3) == 3, "round %lu: %s empty message", r, p->name);
    expect_from = NULL;
    for (int k = 0; k < KINDS; k++)
        check(fds[k], k, r, slot(p, r));
    if (p->closed)
        close(p->sv[1]);
    return tl_hash(h, text, n);
}

/* The length of an abstract socket name. */
static socklen_t name_len(const struct sockaddr_un *a)
{
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1));
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    dir = argc > 2 ? argv[2] : ".";
    setvbuf(stdout, NULL, _IOLBF, 0);
    char path[512];
    snprintf(path, sizeof path, "%s/kept", dir);
    keep_fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(keep_fd >= 0, "open %s: %s", path, strerror(errno));
    struct sockaddr_un bound = {.sun_family = AF_UNIX}, sender = {.sun_family = AF_UNIX};
    snprintf(bound.sun_path + 1, sizeof bound.sun_path - 1, "zq-fd-in-flight-%d", (int)getpid());
    snprintf(sender.sun_path + 1, sizeof sender.sun_path - 1, "zq-fd-in-flight-sender-%d",
             (int)getpid());
    struct sockaddr_un conn = {.sun_family = AF_UNIX}, conn_sender = {.sun_family = AF_UNIX};
    snprintf(conn.sun_path + 1, sizeof conn.sun_path - 1, "zq-fd-in-flight-conn-%d",
             (int)getpid());
    snprintf(conn_sender.sun_path + 1, sizeof conn_sender.sun_path - 1,
             "zq-fd-in-flight-conn-sender-%d", (int)getpid());
    struct pair pairs[] = {
        {"stream", SOCK_STREAM, 0, {0}, NULL, NULL},
        {"datagram", SOCK_DGRAM, 1, {0}, NULL, NULL},
        {"seqpacket", SOCK_SEQPACKET, 2, {0}, NULL, NULL},
        {"bound datagram", SOCK_DGRAM, 3, {0}, &bound, &sender},
        {"connected datagram", SOCK_DGRAM, 4, {0}, &conn, &conn_sender},
        {"closed stream", SOCK_STREAM, 5, {0}, NULL, NULL, 1, {0}},
        {"closed datagram", SOCK_DGRAM, 6, {0}, NULL, NULL, 1, {0}},
    };
    enum { CHANNELS = sizeof pairs / sizeof pairs[0] };
    for (int i = 0; i < 3; i++)
        CHECK(socketpair(AF_UNIX, pairs[i].type | SOCK_CLOEXEC, 0, pairs[i].sv) == 0,
              "socketpair");
    for (int i = 3; i < 5; i++) {
        for (int k = 0; k < 2; k++) {
            pairs[i].sv[k] = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
            CHECK(pairs[i].sv[k] >= 0, "socket: %s", strerror(errno));
        }
        CHECK(bind(pairs[i].sv[1], (struct sockaddr *)pairs[i].to, name_len(pairs[i].to)) == 0,
              "bind: %s", strerror(errno));
        CHECK(bind(pairs[i].sv[0], (struct sockaddr *)pairs[i].from,
                   name_len(pairs[i].from)) == 0,
              "bind: %s", strerror(errno));
    }
    CHECK(connect(pairs[4].sv[1], (struct sockaddr *)&conn_sender, name_len(&conn_sender)) == 0,
          "connect: %s", strerror(errno));
    uint64_t h = TL_HASH_INIT;
    for (int i = 0; i < CHANNELS; i++)
        send_round(&pairs[i], 1);
    for (unsigned long r = 2; r <= rounds + 1; r++) {
        /* Round r goes out before round r-1 comes in: fds are always in flight. */
        for (int i = 0; i < CHANNELS; i++) {
            if (r <= rounds)
                send_round(&pairs[i], r);
            h = receive_round(&pairs[i], r - 1, h);
        }
        struct sockaddr_un peer;
        socklen_t peer_len = sizeof peer;
        CHECK(getpeername(pairs[4].sv[1], (struct sockaddr *)&peer, &peer_len) == 0 &&
                  peer_len == name_len(&conn_sender) &&
                  !memcmp(peer.sun_path, conn_sender.sun_path, peer_len - sizeof(sa_family_t)),
              "round %lu: the connected datagram socket's peer", r);
        if ((r - 1) % 200 == 0)
            printf("round %lu: every fd came back with its message h=%016llx\n", r - 1,
                   (unsigned long long)h);
    }
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
