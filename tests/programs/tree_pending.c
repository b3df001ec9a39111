/*
 * tree_pending ROUNDS FAIL_POINTS
 *
 * Unix connections between two processes of a tree (issue 12): a parent listens on a Unix
 * socket; its child connects every round, sends a request and tells the parent over a pipe;
 * the parent accepts only then (so a failure often lands while the connection waits in the
 * listener's queue: FAIL_POINTS rounds call zhuque_fail_now() exactly then), reads the
 * request and answers on the accepted socket, which the child reads. Before, a connection
 * between two processes came back closed, and one not yet accepted was lost: the child read
 * end-of-file and the parent blocked in accept().
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

static struct sockaddr_un addr;

static void child(int notify, unsigned long rounds)
{
    for (unsigned long r = 1; r <= rounds; r++) {
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(c >= 0 && connect(c, (struct sockaddr *)&addr, sizeof addr) == 0,
              "round %lu: connect: %s", r, strerror(errno));
        char req[32], ans[32], got[32];
        int n = snprintf(req, sizeof req, "request %06lu", r);
        CHECK(write(c, req, n) == n, "round %lu: request", r);
        CHECK(write(notify, "c", 1) == 1, "notify");
        int m = snprintf(ans, sizeof ans, "answer %06lu", r);
        ssize_t k = 0, got_n;
        while (k < m && (got_n = read(c, got + k, sizeof got - k)) > 0)
            k += got_n;
        CHECK(k == m && !memcmp(got, ans, m), "round %lu: answer (%zd bytes)", r, k);
        close(c);
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    addr.sun_family = AF_UNIX;
    snprintf(addr.sun_path, sizeof addr.sun_path, "srv.sock");
    unlink(addr.sun_path);
    int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(l >= 0 && bind(l, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(l, 16) == 0,
          "listen: %s", strerror(errno));
    int p[2];
    CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe");
    pid_t pid = fork();
    CHECK(pid >= 0, "fork");
    if (pid == 0) {
        close(p[0]);
        close(l);
        child(p[1], rounds);
    }
    close(p[1]);
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        char x;
        CHECK(read(p[0], &x, 1) == 1, "round %lu: notify", r);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now(); /* the connection waits in the listener's queue */
        int a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        CHECK(a >= 0, "round %lu: accept: %s", r, strerror(errno));
        char req[32], got[32], ans[32];
        int n = snprintf(req, sizeof req, "request %06lu", r);
        ssize_t k = 0, got_n;
        while (k < n && (got_n = read(a, got + k, sizeof got - k)) > 0)
            k += got_n;
        CHECK(k == n && !memcmp(got, req, n), "round %lu: request (%zd bytes)", r, k);
        int m = snprintf(ans, sizeof ans, "answer %06lu", r);
        CHECK(write(a, ans, m) == m, "round %lu: answer", r);
        close(a);
        if (r % 250 == 0)
            printf("round %lu: request and answer crossed\n", r);
    }
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x", st);
    unlink(addr.sun_path);
    printf("done\n");
    return 0;
}
