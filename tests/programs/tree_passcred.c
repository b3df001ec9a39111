/*
 * tree_passcred ROUNDS FAIL_POINTS [SIBLING]
 *
 * Queued datagrams keep the credentials they were sent with (issue 12, SCM_CREDENTIALS), as a
 * log daemon (syslog, journald) sees them: a parent binds a Unix datagram socket to an
 * abstract name with SO_PASSCRED on; its child, bound to a name of its own, sends it three
 * datagrams every round and waits for the parent's go-ahead on a pipe; the parent reads two
 * of them and leaves the rest queued, so failures land with datagrams waiting. Every datagram
 * read is checked: its text, its sender's address, and its credentials: the child's pid, uid
 * and gid. FAIL_POINTS rounds call zhuque_fail_now() in the parent with datagrams queued.
 * Before, the resume sent the queue again from a socket of its own, and the parent read
 * its own pid as the sender's.
 *
 * With SIBLING 1 the reader is the parent's first child and the sender, which sends from an
 * unnamed socket, the child of its second (the reader's nephew): at a resume the reader
 * restores its fds while its sibling is still laying its memory back before recreating the
 * sender, whose credentials the reader's queue carries (sent again in the sender's name once
 * every process of the tree is back; before, the sender often did not exist yet and the
 * datagrams came with the reader's own pid). The reader reads, checks, and takes the fail
 * points; the others only wait.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define PER_ROUND 3

static void child(int go, const struct sockaddr_un *to, socklen_t to_len,
                  const struct sockaddr_un *me, socklen_t me_len, unsigned long rounds)
{
    int fd;
    if (me_len) {
        fd = tl_bound_datagram_socket(me, me_len);
    } else {
        fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0, "socket: %s", strerror(errno));
    }
    unsigned long k = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        char token;
        ssize_t n;
        while ((n = read(go, &token, 1)) < 0 && errno == EINTR)
            ;
        CHECK(n == 1, "child: round %lu: no go-ahead", r);
        for (int i = 0; i < PER_ROUND; i++, k++) {
            char text[32];
            int len = snprintf(text, sizeof text, "datagram %06lu", k);
            CHECK(sendto(fd, text, (size_t)len, 0, (const struct sockaddr *)to, to_len) == len,
                  "child: sendto: %s", strerror(errno));
        }
    }
    _exit(0);
}

/* Reads datagram k and checks its text, sender and credentials. */
static void take(int fd, unsigned long k, pid_t sender, const struct sockaddr_un *from,
                 socklen_t from_len)
{
    char text[64], want[32], control[CMSG_SPACE(sizeof(struct ucred))];
    struct sockaddr_un a;
    struct iovec iov = {.iov_base = text, .iov_len = sizeof text};
    struct msghdr m = {.msg_name = &a, .msg_namelen = sizeof a, .msg_iov = &iov,
                       .msg_iovlen = 1, .msg_control = control,
                       .msg_controllen = sizeof control};
    ssize_t n;
    while ((n = recvmsg(fd, &m, 0)) < 0 && errno == EINTR)
        ;
    int len = snprintf(want, sizeof want, "datagram %06lu", k);
    CHECK(n == len && !memcmp(text, want, (size_t)len), "datagram %lu: %zd bytes", k, n);
    CHECK(m.msg_namelen == from_len && (!from_len || !memcmp(&a, from, from_len)),
          "datagram %lu: from another address (%u bytes, not %u)", k, (unsigned)m.msg_namelen,
          (unsigned)from_len);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    CHECK(c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS,
          "datagram %lu: no credentials", k);
    struct ucred u;
    memcpy(&u, CMSG_DATA(c), sizeof u);
    CHECK(u.pid == sender && u.uid == getuid() && u.gid == getgid(),
          "datagram %lu: from pid %d uid %u gid %u, not pid %d uid %u gid %u", k, (int)u.pid,
          (unsigned)u.uid, (unsigned)u.gid, (int)sender, (unsigned)getuid(),
          (unsigned)getgid());
}

/* Lets the sender go round by round, reads and checks what it sent, fails at the points. */
static unsigned long read_rounds(int fd, int go, pid_t sender, const struct sockaddr_un *from,
                                 socklen_t from_len, unsigned long rounds,
                                 unsigned long points)
{
    unsigned long got = 0, every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        CHECK(write(go, "g", 1) == 1, "round %lu: go-ahead: %s", r, strerror(errno));
        /* Two of this round's three (and whatever earlier ones waited) are read now. */
        while (got < r * PER_ROUND - 1)
            take(fd, got++, sender, from, from_len);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now(); /* the round's last datagram waits, or is on its way */
        if (r % 200 == 0)
            printf("round %lu: %lu datagrams from the child, each with its credentials\n", r,
                   got);
    }
    while (got < rounds * PER_ROUND)
        take(fd, got++, sender, from, from_len);
    return got;
}

static void wait_ok(pid_t pid, const char *who)
{
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s %#x", who,
          st);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    int sibling = (int)tl_arg(argc, argv, 3, 0);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Abstract names belong to the network namespace, which other trees (with their own pid
     * namespaces, and so the same pids) share: a random part keeps them apart. */
    char name[64];
    unsigned long nonce = 0;
    CHECK(getrandom(&nonce, sizeof nonce, 0) == sizeof nonce, "getrandom: %s", strerror(errno));
    struct sockaddr_un daemon_addr, client_addr;
    snprintf(name, sizeof name, "zq-passcred-daemon-%d-%lx", (int)getpid(), nonce);
    socklen_t daemon_len = tl_abstract_address(&daemon_addr, name);
    snprintf(name, sizeof name, "zq-passcred-client-%d-%lx", (int)getpid(), nonce);
    socklen_t client_len = tl_abstract_address(&client_addr, name);
    int fd = tl_bound_datagram_socket(&daemon_addr, daemon_len);
    int one = 1;
    CHECK(setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) == 0, "SO_PASSCRED: %s",
          strerror(errno));
    int go[2];
    CHECK(pipe2(go, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
    if (sibling) {
        /* The reader first, told the sender's pid once that exists. */
        int tell[2];
        CHECK(pipe2(tell, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
        pid_t reader = fork();
        CHECK(reader >= 0, "fork: %s", strerror(errno));
        if (reader == 0) {
            close(go[0]);
            close(tell[1]);
            pid_t sender;
            CHECK(read(tell[0], &sender, sizeof sender) == sizeof sender, "reader: no pid");
            unsigned long got = read_rounds(fd, go[1], sender, NULL, 0, rounds, points);
            printf("done: %lu datagrams from another branch of the tree\n", got);
            _exit(0);
        }
        close(fd);
        close(tell[0]);
        close(go[1]);
        pid_t middle = fork();
        CHECK(middle >= 0, "fork: %s", strerror(errno));
        if (middle == 0) {
            pid_t sender = fork();
            CHECK(sender >= 0, "fork: %s", strerror(errno));
            if (sender == 0)
                child(go[0], &daemon_addr, daemon_len, NULL, 0, rounds);
            close(go[0]);
            CHECK(write(tell[1], &sender, sizeof sender) == sizeof sender, "tell: %s",
                  strerror(errno));
            close(tell[1]);
            wait_ok(sender, "sender");
            _exit(0);
        }
        close(go[0]);
        close(tell[1]);
        wait_ok(reader, "reader");
        wait_ok(middle, "sender's parent");
        return 0;
    }
    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        close(go[1]);
        child(go[0], &daemon_addr, daemon_len, &client_addr, client_len, rounds);
    }
    close(go[0]);
    unsigned long got = read_rounds(fd, go[1], pid, &client_addr, client_len, rounds, points);
    wait_ok(pid, "child");
    printf("done: %lu datagrams\n", got);
    return 0;
}
