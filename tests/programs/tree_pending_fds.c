/*
 * tree_pending_fds ROUNDS FAIL_POINTS [forkserver|queued]
 *
 * Fds in flight on a Unix connection not accepted yet (python's forkserver start method asks
 * for a worker so): a child listens on a Unix socket; every round the parent connects, sends
 * a request with the write end of a new pipe in flight (SCM_RIGHTS), closes its own copy of
 * that end, and only then tells the child to accept (FAIL_POINTS rounds call
 * zhuque_fail_now() just before, with the connection and its fd waiting in the listener's
 * queue; random failures besides). The child accepts, takes the request and the fd, and
 * writes its answer into that pipe, whose read end the parent reads. Before, the fds in
 * flight on a connection not yet accepted were dropped at a save, with a warning: the parent
 * read end-of-file from the pipe.
 *
 * `forkserver`: as python's forkserver start method asks for a worker: the parent writes the
 * request into a pipe, sends that pipe's read end and the write end of a second pipe, and
 * closes its connection and both ends at once; the child reads the request from the first
 * pipe and answers into the second, whose read end the parent holds. Each pipe then has one
 * end in the parent and the other in flight on a connection whose client is gone, in the
 * child's listener. Before, both were dropped or came back apart from their other ends.
 *
 * `queued`: the other way round, on one connection for the whole run: the parent listens and
 * accepts once, the child connects; every round the child sends two messages, the first with
 * the read end of a pipe holding the request, the second with the write end of the answer
 * pipe, closes both ends (it keeps the answer pipe's read end), and the parent reads the two
 * messages only when told. At the fail points both messages wait in the parent's accepted
 * connection, which the parent saves: the pipe end in the second one has its other end in
 * the child. Before, that end came back apart from it (only the first message queued on a
 * connection was looked at), and the child read end-of-file instead of the answer.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

/* Sends `len` bytes of `buf` on `s` with the `n` fds of `fds` in flight on them. */
static void send_with_fds(int s, const char *buf, int len, const int *fds, int n, unsigned long r)
{
    struct iovec io = {(void *)buf, (size_t)len};
    char control[CMSG_SPACE(2 * sizeof(int))];
    memset(control, 0, sizeof control);
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = control,
                       .msg_controllen = CMSG_SPACE(n * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(n * sizeof(int));
    memcpy(CMSG_DATA(c), fds, n * sizeof(int));
    CHECK(sendmsg(s, &m, 0) == len, "round %lu: sendmsg: %s", r, strerror(errno));
}

/* Reads up to `cap` bytes from `s`; the fds in flight on them, if any, go to `fds` (two at
 * most), their number to `*n`. */
static ssize_t recv_with_fds(int s, char *buf, size_t cap, int *fds, int *n)
{
    struct iovec io = {buf, cap};
    char control[CMSG_SPACE(2 * sizeof(int))];
    struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = control,
                       .msg_controllen = sizeof control};
    ssize_t k = recvmsg(s, &m, MSG_CMSG_CLOEXEC);
    struct cmsghdr *c = k > 0 ? CMSG_FIRSTHDR(&m) : NULL;
    if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        *n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        memcpy(fds, CMSG_DATA(c), *n * sizeof(int));
    }
    return k;
}

/* Reads exactly `len` bytes from `fd` (fewer at end-of-file). */
static ssize_t read_all(int fd, char *buf, size_t len)
{
    size_t k = 0;
    ssize_t got;
    while (k < len && (got = read(fd, buf + k, len - k)) > 0)
        k += got;
    return k;
}

static void server(int l, int go, unsigned long rounds, int forkserver)
{
    for (unsigned long r = 1; r <= rounds; r++) {
        char x;
        CHECK(read(go, &x, 1) == 1, "round %lu: go", r);
        int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        CHECK(a >= 0, "round %lu: accept: %s", r, strerror(errno));
        char req[32], got[32], ans[32];
        int n = snprintf(req, sizeof req, "request %06lu", r);
        int fds[2] = {-1, -1}, nfds = 0;
        int want = forkserver ? 1 : n;
        ssize_t k = 0, got_n;
        while (k < want && (got_n = recv_with_fds(a, got + k, sizeof got - k, fds, &nfds)) > 0)
            k += got_n;
        CHECK(k == want, "round %lu: message (%zd bytes)", r, k);
        CHECK(nfds == (forkserver ? 2 : 1), "round %lu: %d fds came with the message", r, nfds);
        int answer = fds[nfds - 1];
        if (forkserver) {
            CHECK(read(a, &x, 1) == 0, "round %lu: the client had closed", r);
            k = read_all(fds[0], got, n);
            close(fds[0]);
        }
        CHECK(k == n && !memcmp(got, req, n), "round %lu: request (%zd bytes)", r, k);
        int m = snprintf(ans, sizeof ans, "piped %06lu", r);
        CHECK(write(answer, ans, m) == m, "round %lu: answer: %s", r, strerror(errno));
        close(answer);
        close(a);
    }
    _exit(0);
}

/* `queued` mode's server: the two messages of each round on connection `a`. */
static void serve_queued(int a, int go, unsigned long rounds)
{
    for (unsigned long r = 1; r <= rounds; r++) {
        char x, got[32], ans[32], want[32];
        CHECK(read(go, &x, 1) == 1, "round %lu: go", r);
        int req = -1, answer = -1, n1 = 0, n2 = 0;
        CHECK(recv_with_fds(a, got, 1, &req, &n1) == 1 && n1 == 1 && got[0] == 'a',
              "round %lu: first message (%d fds)", r, n1);
        CHECK(recv_with_fds(a, got, 1, &answer, &n2) == 1 && n2 == 1 && got[0] == 'b',
              "round %lu: second message (%d fds)", r, n2);
        int n = snprintf(want, sizeof want, "request %06lu", r);
        ssize_t k = read_all(req, got, n);
        CHECK(k == n && !memcmp(got, want, n), "round %lu: request (%zd bytes)", r, k);
        close(req);
        int m = snprintf(ans, sizeof ans, "piped %06lu", r);
        CHECK(write(answer, ans, m) == m, "round %lu: answer: %s", r, strerror(errno));
        close(answer);
    }
}

/* `queued` mode's client: sends each round's two messages on connection `c`. */
static void ask_queued(int c, int go, unsigned long rounds, unsigned long points)
{
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        char req[32], ans[32], got[32];
        int n = snprintf(req, sizeof req, "request %06lu", r);
        int q[2], req_pipe[2];
        CHECK(pipe2(q, O_CLOEXEC) == 0 && pipe2(req_pipe, O_CLOEXEC) == 0, "round %lu: pipe", r);
        CHECK(write(req_pipe[1], req, n) == n, "round %lu: request", r);
        close(req_pipe[1]);
        send_with_fds(c, "a", 1, &req_pipe[0], 1, r);
        send_with_fds(c, "b", 1, &q[1], 1, r);
        close(req_pipe[0]);
        close(q[1]);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now(); /* both messages wait in the server's connection */
        CHECK(write(go, "g", 1) == 1, "round %lu: go", r);
        int m = snprintf(ans, sizeof ans, "piped %06lu", r);
        ssize_t k = read_all(q[0], got, m);
        CHECK(k == m && !memcmp(got, ans, m), "round %lu: answer (%zd bytes)", r, k);
        close(q[0]);
        if (r % 250 == 0)
            printf("round %lu: the answer came through the pipe in flight\n", r);
    }
}

/* The end of a run: the child ended well, the socket's name is gone. */
static int finish(pid_t pid, const struct sockaddr_un *addr)
{
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x", st);
    unlink(addr->sun_path);
    printf("done\n");
    return 0;
}

/* `queued` mode: the parent serves, its child asks. */
static int run_queued(int l, struct sockaddr_un *addr, unsigned long rounds, unsigned long points)
{
    int go[2];
    CHECK(pipe2(go, O_CLOEXEC) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(go[0]);
        close(l);
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(c >= 0 && connect(c, (struct sockaddr *)addr, sizeof *addr) == 0,
              "connect: %s", strerror(errno));
        ask_queued(c, go[1], rounds, points);
        _exit(0);
    }
    close(go[1]);
    int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    CHECK(a >= 0, "accept: %s", strerror(errno));
    close(l);
    serve_queued(a, go[0], rounds);
    return finish(pid, addr);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 1000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    int forkserver = argc > 3 && !strcmp(argv[3], "forkserver");
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "srv.sock");
    unlink(addr.sun_path);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(l >= 0 && bind(l, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(l, 16) == 0,
          "listen: %s", strerror(errno));
    if (argc > 3 && !strcmp(argv[3], "queued"))
        return run_queued(l, &addr, rounds, points);
    int go[2];
    CHECK(pipe2(go, O_CLOEXEC) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(go[1]);
        server(l, go[0], rounds, forkserver);
    }
    close(go[0]);
    close(l);
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(c >= 0 && connect(c, (struct sockaddr *)&addr, sizeof addr) == 0,
              "round %lu: connect: %s", r, strerror(errno));
        char req[32], ans[32], got[32];
        int n = snprintf(req, sizeof req, "request %06lu", r);
        int q[2], req_pipe[2];
        CHECK(pipe2(q, O_CLOEXEC) == 0 && pipe2(req_pipe, O_CLOEXEC) == 0, "round %lu: pipe", r);
        if (forkserver) {
            /* The request goes through a pipe; the connection carries the ends alone. */
            CHECK(write(req_pipe[1], req, n) == n, "round %lu: request", r);
            close(req_pipe[1]);
            int fds[2] = {req_pipe[0], q[1]};
            send_with_fds(c, "x", 1, fds, 2, r);
            close(c);
            close(req_pipe[0]);
        } else {
            close(req_pipe[0]);
            close(req_pipe[1]);
            send_with_fds(c, req, n, &q[1], 1, r);
        }
        close(q[1]);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now(); /* the connection and its fds wait in the listener's queue */
        CHECK(write(go[1], "g", 1) == 1, "round %lu: go", r);
        int m = snprintf(ans, sizeof ans, "piped %06lu", r);
        ssize_t k = read_all(q[0], got, m);
        CHECK(k == m && !memcmp(got, ans, m), "round %lu: answer (%zd bytes)", r, k);
        close(q[0]);
        if (!forkserver)
            close(c);
        if (r % 250 == 0)
            printf("round %lu: the answer came through the pipe in flight\n", r);
    }
    return finish(pid, &addr);
}
