/*
 * tree_in_flight ROUNDS FAIL_POINTS
 *
 * File descriptors in flight between two processes of a tree (issue 12): a parent sends its
 * child, over a stream socketpair, a pipe's read end with data (its write end closed), a
 * memfd, and a socket end with a message queued; the child takes them a moment later, so the
 * failures land while they are in flight, checks each (contents, end-of-file, the socket's
 * other end, which the parent keeps), and answers. Every round's answer is checked.
 * FAIL_POINTS rounds call zhuque_fail_now() in the parent while the fds are in flight.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static void send_fds(int sock, const char *text, const int *fds, int n)
{
    char control[CMSG_SPACE(sizeof(int) * 3)];
    struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                       .msg_controllen = CMSG_SPACE(sizeof(int) * n)};
    memset(control, 0, sizeof control);
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * n);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
    CHECK(sendmsg(sock, &m, 0) == (ssize_t)strlen(text), "sendmsg: %s", strerror(errno));
}

static void child(int sock, unsigned long rounds)
{
    for (unsigned long r = 1; r <= rounds; r++) {
        usleep(2000); /* the fds stay in flight meanwhile */
        char want[64], got[64], control[CMSG_SPACE(sizeof(int) * 3)];
        int len = snprintf(want, sizeof want, "round %06lu", r);
        struct iovec iov = {.iov_base = got, .iov_len = (size_t)len};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                           .msg_controllen = sizeof control};
        ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
        CHECK(n == len && !memcmp(got, want, len), "round %lu: message (%zd bytes)", r, n);
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        CHECK(c && c->cmsg_type == SCM_RIGHTS && c->cmsg_len == CMSG_LEN(sizeof(int) * 3),
              "round %lu: the message came without its fds", r);
        int fds[3];
        memcpy(fds, CMSG_DATA(c), sizeof fds);
        CHECK(read(fds[0], got, sizeof got) == len && !memcmp(got, want, len) &&
                  read(fds[0], got, 1) == 0,
              "round %lu: pipe", r);
        CHECK(pread(fds[1], got, sizeof got, 0) == len && !memcmp(got, want, len),
              "round %lu: memfd", r);
        CHECK(read(fds[2], got, sizeof got) == len && !memcmp(got, want, len),
              "round %lu: socket message", r);
        CHECK(write(fds[2], "ok", 2) == 2, "round %lu: answer", r);
        for (int i = 0; i < 3; i++)
            close(fds[i]);
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 1000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    unsigned long every = rounds / (points + 1);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0, "socketpair");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(sv[0]);
        child(sv[1], rounds);
    }
    close(sv[1]);
    for (unsigned long r = 1; r <= rounds; r++) {
        char text[64], got[8];
        int len = snprintf(text, sizeof text, "round %06lu", r);
        int p[2], s[2];
        CHECK(pipe2(p, O_CLOEXEC) == 0 && write(p[1], text, len) == len, "pipe");
        close(p[1]);
        int mfd = memfd_create("in-flight", MFD_CLOEXEC);
        CHECK(mfd >= 0 && write(mfd, text, len) == len, "memfd");
        CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) == 0, "socketpair");
        CHECK(write(s[0], text, len) == len, "socket message");
        int fds[3] = {p[0], mfd, s[1]};
        send_fds(sv[0], text, fds, 3);
        close(p[0]);
        close(mfd);
        close(s[1]);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        /* The child answers on the socket end it was sent. */
        CHECK(read(s[0], got, 2) == 2 && !memcmp(got, "ok", 2), "round %lu: no answer", r);
        close(s[0]);
        if (r % 100 == 0)
            printf("round %lu: the child got every fd\n", r);
    }
    int status;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "child status %#x", status);
    printf("done\n");
    return 0;
}
