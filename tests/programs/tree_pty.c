/*
 * tree_pty ROUNDS FAIL_POINTS
 *
 * A terminal session between two processes (issue 12), as `script`, `expect` or python's
 * pty.fork() make one: the parent forkpty()s; the child leads a new session whose
 * controlling terminal is the pseudo-terminal's slave (its stdin, stdout and stderr), with
 * echo off. Every round the parent types a request line; every 10th round it first types
 * ^C (the child's foreground group gets SIGINT), every 25th it first changes the window size
 * (SIGWINCH). The child answers each line with what it sees: the count of each signal, the
 * window's rows, and whether /dev/tty opens and its group has the terminal's foreground. The
 * parent checks every answer against its own account. FAIL_POINTS rounds call
 * zhuque_fail_now() in the parent while the request is queued. Before, the master was lost
 * (an EBADF placeholder) and the child had no controlling terminal after a resume.
 *
 * tree_pty ROUNDS FAIL_POINTS nofd: the child keeps no fd of its terminal (0-2 are /dev/null)
 * and opens /dev/tty for each request, as daemons that still have a controlling terminal do.
 * Before, its session came back without a controlling terminal (/dev/tty failed with ENXIO).
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define CHILD_LOG "tree_pty_child.log"

static volatile sig_atomic_t ints, winches;

static void on_int(int s)
{
    (void)s;
    ints++;
}

static void on_winch(int s)
{
    (void)s;
    winches++;
}

/* The child's terminal for one request: fd 0 (its stdin, the slave), or, in "nofd" mode,
 * /dev/tty opened for the moment (non-blocking: -1 until a line waits). */
static int open_terminal(int nofd)
{
    if (!nofd)
        return 0;
    for (;;) {
        int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
        CHECK(fd >= 0, "child: /dev/tty: %s", strerror(errno));
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 0) == 1)
            return fd;
        close(fd);
        usleep(1000); /* holding no fd of the terminal, most of the time */
    }
}

static void child(int nofd)
{
    struct sigaction sa = {.sa_handler = on_int, .sa_flags = SA_RESTART};
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = on_winch;
    sigaction(SIGWINCH, &sa, NULL);
    struct termios t;
    CHECK(tcgetattr(0, &t) == 0, "child: tcgetattr: %s", strerror(errno));
    t.c_lflag &= ~(tcflag_t)ECHO;
    CHECK(tcsetattr(0, TCSANOW, &t) == 0, "child: tcsetattr: %s", strerror(errno));
    CHECK(write(1, "ready\n", 6) == 6, "child: ready");
    if (nofd) {
        /* A session leader that keeps no fd of its terminal (it is still its controlling
         * terminal: /dev/tty reaches it). Its stderr (its own failures, its runtime's
         * warnings) goes to a file the parent shows when the child stops answering. */
        int null = open("/dev/null", O_RDWR);
        int log = open(CHILD_LOG, O_WRONLY | O_CREAT | O_APPEND, 0644);
        CHECK(null > 2 && log > 2 && dup2(null, 0) == 0 && dup2(null, 1) == 1 &&
                  dup2(log, 2) == 2,
              "child: /dev/null");
        close(null);
        close(log);
    }
    char line[128];
    for (;;) {
        int term = open_terminal(nofd);
        ssize_t n = read(term, line, sizeof line - 1);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) {
            if (nofd)
                close(term);
            continue;
        }
        CHECK(n > 0, "child: read: %s", n < 0 ? strerror(errno) : "end of file");
        line[n] = 0;
        if (!strcmp(line, "end\n"))
            _exit(0);
        unsigned long r = strtoul(line + 2, NULL, 10);
        int tty = open("/dev/tty", O_RDWR | O_NOCTTY);
        int has_tty = tty >= 0;
        if (tty >= 0)
            close(tty);
        struct winsize ws = {0};
        ioctl(term, TIOCGWINSZ, &ws);
        char ans[160];
        int m = snprintf(ans, sizeof ans, "a %lu ints=%d winch=%d rows=%d tty=%d fg=%d sid=%d\n",
                         r, (int)ints, (int)winches, ws.ws_row, has_tty,
                         tcgetpgrp(term) == getpgrp(), getsid(0) == getpid());
        CHECK(write(nofd ? term : 1, ans, (size_t)m) == m, "child: answer: %s", strerror(errno));
        if (nofd)
            close(term);
    }
}

/* Copies the child's log ("nofd" mode) to stderr: what it said before it stopped answering. */
static void show_child_log(void)
{
    int fd = open(CHILD_LOG, O_RDONLY);
    char b[4096];
    ssize_t n;
    while (fd >= 0 && (n = read(fd, b, sizeof b)) > 0)
        if (write(2, b, (size_t)n) != n)
            break;
}

/* Reads one line (up to "\r\n") from the master. */
static void read_line(int m, char *buf, size_t cap, unsigned long r)
{
    size_t got = 0;
    int waited = 0;
    while (got + 1 < cap) {
        struct pollfd p = {m, POLLIN, 0};
        int k = poll(&p, 1, 10000);
        if (k < 0 && errno == EINTR)
            continue;
        if (k != 1)
            show_child_log();
        CHECK(k == 1, "round %lu: no answer (%zu bytes so far)", r, got);
        ssize_t n = read(m, buf + got, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EIO && waited++ < 10000) {
            usleep(500); /* "nofd": no slave is open until the child opens /dev/tty again */
            continue;
        }
        if (n != 1)
            show_child_log();
        CHECK(n == 1, "round %lu: read master: %s", r, strerror(errno));
        got++;
        if (got >= 2 && buf[got - 2] == '\r' && buf[got - 1] == '\n')
            break;
    }
    buf[got] = 0;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 600);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    int nofd = argc > 3 && !strcmp(argv[3], "nofd");
    setvbuf(stdout, NULL, _IOLBF, 0);
    unlink(CHILD_LOG);
    int m;
    struct winsize ws = {.ws_row = 24, .ws_col = 80};
    pid_t pid = forkpty(&m, NULL, NULL, &ws);
    CHECK(pid >= 0, "forkpty: %s", strerror(errno));
    if (pid == 0)
        child(nofd);
    char buf[256], want[256];
    read_line(m, buf, sizeof buf, 0);
    CHECK(!strcmp(buf, "ready\r\n"), "child said \"%s\"", buf);
    int ints_sent = 0, winches_sent = 0, rows = 24;
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        if (r % 10 == 0) {
            CHECK(write(m, "\003", 1) == 1, "round %lu: ^C", r);
            ints_sent++;
        }
        if (r % 25 == 0) {
            rows = rows == 24 ? 50 : 24;
            ws.ws_row = (unsigned short)rows;
            CHECK(ioctl(m, TIOCSWINSZ, &ws) == 0, "round %lu: TIOCSWINSZ: %s", r,
                  strerror(errno));
            winches_sent++;
        }
        int n = snprintf(buf, sizeof buf, "q %lu\n", r);
        CHECK(write(m, buf, (size_t)n) == n, "round %lu: request: %s", r, strerror(errno));
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now(); /* the request waits in the child's line discipline */
        read_line(m, buf, sizeof buf, r);
        snprintf(want, sizeof want, "a %lu ints=%d winch=%d rows=%d tty=1 fg=1 sid=1\r\n", r,
                 ints_sent, winches_sent, rows);
        CHECK(!strcmp(buf, want), "round %lu: the child answered \"%s\", not \"%s\"", r, buf,
              want);
        if (r % 100 == 0)
            printf("round %lu: %d interrupts, %d window changes seen\n", r, ints_sent,
                   winches_sent);
    }
    CHECK(write(m, "end\n", 4) == 4, "end");
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x", st);
    printf("done\n");
    return 0;
}
