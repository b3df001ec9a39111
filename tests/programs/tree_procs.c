/*
 * tree_procs WORK POINTS
 *
 * Process-tree semantics that a resume must bring back exactly (issue 9), in five phases,
 * each with compute segments of WORK steps (so that random failures land while the tree is
 * in the state the phase sets up) and with zhuque_fail_now() points (a no-op without the
 * runtime) at the worst moments; POINTS (0-3) of the three points are active:
 *
 * 1. Sessions and process groups: a child S calls setsid() and forks G, which moves to a
 *    group of its own in S's session; two more children P2 and P3 share a group that the
 *    root sets up with setpgid() from both sides. The relations are checked by the processes
 *    themselves and by the root from outside, before and after fail point 1; then kill() of
 *    the group ends P2 and P3 with SIGTERM.
 * 2. A zombie and a blocked reader: Z exits with status 7 and stays unreaped (waitid
 *    WNOWAIT, /proc state Z) across fail point 2 and across messages to a child C that is
 *    blocked in read() on a pipe from the root (the root writes after a delay, C echoes
 *    each message back upper-cased on another pipe). waitid(WNOHANG) reports nothing for the
 *    blocked C, then Z's status without reaping it; waitpid() then reaps Z with status 7, and
 *    a WNOHANG polling loop sees C exit with status 6 once its pipe is closed.
 * 3. SIGCHLD: with a counting handler, eight children end one after another (each awaited
 *    with sigsuspend() before the next starts, so no delivery can merge with another); the
 *    count must equal the number of children, and each status its own. Each child's first
 *    POSIX timer is its timer 0 and its only one (as natively: a new process numbers its
 *    timers from 0).
 * 4. Orphans: a grandchild whose parent exits is reparented to init or to a subreaper above
 *    the root (as natively: whatever its new parent, it is not the dead parent and it is 1 or
 *    an ancestor of the root); then, with the root a child subreaper (PR_SET_CHILD_SUBREAPER),
 *    an orphan is adopted by the root, stays so across fail point 3, and the root reaps it.
 * 5. daemon(): a child calls daemon(1, 0); the daemon (a session leader, stdio on /dev/null)
 *    computes, writes daemon.out in the working directory and exits; the root waits for the
 *    end of a pipe the daemon holds, then prints the file.
 *
 * Children report over a pipe to the root, which prints their lines (sorted where several
 * write at once), so stdout is deterministic: no pids, only relations ("yes"/"no"). Every
 * blocking call is retried on EINTR (a resumed call may be interrupted). Ends with a checksum
 * line and status 0.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static unsigned long work_steps, points, point_no;
static uint64_t checksum = TL_HASH_INIT;
static pid_t root;
static int res[2]; /* children's report lines -> root */

static const char *yes(int c)
{
    return c ? "yes" : "no";
}

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    checksum = tl_hash(checksum, line, strlen(line));
    printf("%s\n", line);
}

/* A compute segment: `steps` rounds of hashing, a line every quarter. */
static void work(const char *what, unsigned long steps)
{
    uint64_t s = checksum ^ steps, h = TL_HASH_INIT;
    for (unsigned long i = 1; i <= steps; i++) {
        h = tl_mix(h, tl_next(&s));
        if (i % (steps / 4 ? steps / 4 : 1) == 0)
            out("work %s %lu/4: %016llx", what, i / (steps / 4 ? steps / 4 : 1),
                (unsigned long long)h);
    }
}

static void fail_point(const char *what)
{
    point_no++;
    out("fail point %lu: %s", point_no, what);
    if (point_no <= points)
        zq_fail_now();
}

static void full_write(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        TL_CHECK(w > 0, "write fd %d: %s", fd, strerror(errno));
        c += w;
        n -= (size_t)w;
    }
}

/* Reads one '\n'-terminated line (without it) into buf; returns 0 at end of file. */
static int read_line(int fd, char *buf, size_t size)
{
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        TL_CHECK(r >= 0, "read fd %d: %s", fd, strerror(errno));
        if (r == 0) {
            TL_CHECK(n == 0, "end of file inside a line");
            return 0;
        }
        if (c == '\n')
            break;
        TL_CHECK(n + 1 < size, "line too long");
        buf[n++] = c;
    }
    buf[n] = '\0';
    return 1;
}

/* Waits until fd reaches end of file (every writer gone). */
static void wait_eof(int fd)
{
    char buf[64];
    for (;;) {
        ssize_t r = read(fd, buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        TL_CHECK(r >= 0, "read: %s", strerror(errno));
        TL_CHECK(r == 0, "unexpected data on an end-of-file pipe");
        return;
    }
}

/* A report line from a child (one write: atomic below PIPE_BUF). */
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    line[n++] = '\n';
    full_write(res[1], line, (size_t)n);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads n report lines, prints them sorted (their writers run concurrently). */
static void collect(int n)
{
    char *lines[16];
    TL_CHECK(n <= 16, "too many lines");
    for (int i = 0; i < n; i++) {
        char buf[256];
        TL_CHECK(read_line(res[0], buf, sizeof buf), "reports ended after %d of %d lines", i, n);
        lines[i] = strdup(buf);
    }
    qsort(lines, (size_t)n, sizeof lines[0], cmp_str);
    for (int i = 0; i < n; i++) {
        out("  %s", lines[i]);
        free(lines[i]);
    }
}

static pid_t xfork(void)
{
    fflush(stdout); /* nothing buffered may be duplicated into the child */
    pid_t p = fork();
    TL_CHECK(p >= 0, "fork: %s", strerror(errno));
    return p;
}

static int xwaitpid(pid_t pid, int flags)
{
    int st;
    pid_t r;
    do
        r = waitpid(pid, &st, flags);
    while (r < 0 && errno == EINTR);
    TL_CHECK(r == pid || (pid == -1 && r > 0), "waitpid(%d): %s", (int)pid, strerror(errno));
    return st;
}

static const char *status_text(int st)
{
    static char buf[64];
    if (WIFEXITED(st))
        snprintf(buf, sizeof buf, "exited %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, sizeof buf, "killed by %s", sigabbrev_np(WTERMSIG(st)));
    else
        snprintf(buf, sizeof buf, "status %#x", st);
    return buf;
}

/* The parent of `pid` from /proc (0 when it cannot be read). */
static pid_t parent_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    int ppid = 0;
    char state;
    if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2)
        return 0;
    return ppid;
}

/* The state letter of `pid` in /proc ('?' when it cannot be read). */
static char state_of(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    char state = '?';
    if (!p || sscanf(p + 1, " %c", &state) != 1)
        return '?';
    return state;
}

/* Whether `pid` is the root or one of its ancestors. */
static int root_or_ancestor(pid_t pid)
{
    for (pid_t p = root; p > 0; p = parent_of(p))
        if (p == pid)
            return 1;
    return 0;
}

/* In a child: blocks until fd reaches end of file (the root closes its end). */
static void hold(int fd)
{
    wait_eof(fd);
}

static void pipe_or_die(int p[2])
{
    TL_CHECK(pipe2(p, O_CLOEXEC) == 0, "pipe: %s", strerror(errno));
}

/* ---- 1. sessions and groups ---- */
static void sessions_and_groups(void)
{
    int holdp[2], pids[2];
    pipe_or_die(holdp);
    pipe_or_die(pids);
    out("== sessions and groups");
    pid_t s = xfork();
    if (s == 0) {
        close(holdp[1]);
        close(pids[0]);
        pid_t me = getpid();
        TL_CHECK(setsid() == me, "setsid: %s", strerror(errno));
        say("S: setsid made it leader of a session and a group: %s",
            yes(getsid(0) == me && getpgid(0) == me));
        say("S: its parent is the root: %s", yes(getppid() == root));
        pid_t g = fork();
        TL_CHECK(g >= 0, "fork: %s", strerror(errno));
        if (g == 0) {
            pid_t gme = getpid();
            say("G: born in S's session and group: %s", yes(getsid(0) == me && getpgid(0) == me));
            TL_CHECK(setpgid(0, 0) == 0, "setpgid: %s", strerror(errno));
            say("G: leads its own group in S's session: %s",
                yes(getpgid(0) == gme && getsid(0) == me && getppid() == me));
            full_write(pids[1], &gme, sizeof gme);
            hold(holdp[0]);
            _exit(0);
        }
        close(pids[1]);
        int st = xwaitpid(g, 0);
        say("S: reaped G: %s", status_text(st));
        _exit(4);
    }
    close(pids[1]);
    pid_t g;
    ssize_t r;
    do
        r = read(pids[0], &g, sizeof g);
    while (r < 0 && errno == EINTR);
    TL_CHECK(r == sizeof g, "reading G's pid: %zd", r);
    close(pids[0]);
    collect(4);

    pid_t p2 = xfork();
    if (p2 == 0) {
        close(holdp[1]);
        setpgid(0, 0);
        hold(holdp[0]);
        _exit(0);
    }
    setpgid(p2, p2);
    pid_t p3 = xfork();
    if (p3 == 0) {
        close(holdp[1]);
        setpgid(0, p2);
        hold(holdp[0]);
        _exit(0);
    }
    setpgid(p3, p2);

    for (int pass = 0; pass < 2; pass++) {
        const char *when = pass ? "after" : "before";
        out("%s: S leads its session and group: %s", when,
            yes(getsid(s) == s && getpgid(s) == s));
        out("%s: G leads its own group in S's session: %s", when,
            yes(getsid(g) == s && getpgid(g) == g));
        out("%s: S is the root's child, G is S's: %s", when,
            yes(parent_of(s) == root && parent_of(g) == s));
        out("%s: P2 leads a group that P3 is in: %s", when,
            yes(getpgid(p2) == p2 && getpgid(p3) == p2));
        out("%s: P2 and P3 are in the root's session: %s", when,
            yes(getsid(p2) == getsid(0) && getsid(p3) == getsid(0)));
        out("%s: the root is in neither group: %s", when,
            yes(getpgid(0) != p2 && getpgid(0) != s && getpgid(0) != g));
        if (!pass) {
            work("groups", work_steps);
            fail_point("children in other sessions and process groups");
            work("groups-after", work_steps / 2);
        }
    }
    TL_CHECK(kill(-p2, SIGTERM) == 0, "kill(-P2): %s", strerror(errno));
    int st2 = xwaitpid(p2, 0), st3 = xwaitpid(p3, 0);
    out("kill of P2's group: P2 %s, P3 %s", status_text(st2), status_text(st3));
    close(holdp[1]);
    close(holdp[0]);
    int st = xwaitpid(s, 0);
    collect(1);
    out("S: %s", status_text(st));
}

/* ---- 2. a zombie and a child blocked in read ---- */
static void zombie_and_reader(void)
{
    int to[2], from[2];
    pipe_or_die(to);
    pipe_or_die(from);
    out("== a zombie and a blocked reader");
    pid_t c = xfork();
    if (c == 0) {
        close(to[1]);
        close(from[0]);
        char buf[128];
        while (read_line(to[0], buf, sizeof buf)) {
            char reply[256];
            for (char *p = buf; *p; p++)
                if (*p >= 'a' && *p <= 'z')
                    *p = (char)(*p - 'a' + 'A');
            int n = snprintf(reply, sizeof reply, "echo %s (parent is the root: %s)\n", buf,
                             yes(getppid() == root));
            full_write(from[1], reply, (size_t)n);
        }
        _exit(6);
    }
    close(to[0]);
    close(from[1]);
    pid_t z = xfork();
    if (z == 0)
        _exit(7);

    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r;
    do
        r = waitid(P_PID, (id_t)z, &si, WEXITED | WNOWAIT);
    while (r < 0 && errno == EINTR);
    TL_CHECK(r == 0, "waitid: %s", strerror(errno));
    out("Z ended, not reaped: code %s, status %d", si.si_code == CLD_EXITED ? "CLD_EXITED" : "?",
        si.si_status);
    out("Z is a zombie in /proc: %s", yes(state_of(z) == 'Z'));
    memset(&si, 0, sizeof si);
    do
        r = waitid(P_PID, (id_t)c, &si, WEXITED | WNOHANG);
    while (r < 0 && errno == EINTR);
    TL_CHECK(r == 0, "waitid: %s", strerror(errno));
    out("waitid WNOHANG on the blocked reader: %s", si.si_pid == 0 ? "nothing yet" : "ENDED");

    work("zombie", work_steps);
    fail_point("a zombie and a child blocked in read");
    for (int i = 1; i <= 5; i++) {
        work("reader", work_steps / 4);
        char msg[64], buf[256];
        int n = snprintf(msg, sizeof msg, "message %d for the reader\n", i);
        full_write(to[1], msg, (size_t)n);
        TL_CHECK(read_line(from[0], buf, sizeof buf), "the reader's answer ended");
        out("%s", buf);
    }
    out("Z is still a zombie: %s", yes(state_of(z) == 'Z'));
    memset(&si, 0, sizeof si);
    do
        r = waitid(P_PID, (id_t)z, &si, WEXITED | WNOHANG | WNOWAIT);
    while (r < 0 && errno == EINTR);
    TL_CHECK(r == 0, "waitid: %s", strerror(errno));
    out("waitid WNOHANG|WNOWAIT on Z: %s, status %d",
        si.si_pid == z && si.si_code == CLD_EXITED ? "CLD_EXITED" : "WRONG", si.si_status);
    int st = xwaitpid(z, 0);
    out("Z reaped: %s", status_text(st));

    close(to[1]);
    int polls = 0;
    for (;;) {
        memset(&si, 0, sizeof si);
        do
            r = waitid(P_PID, (id_t)c, &si, WEXITED | WNOHANG);
        while (r < 0 && errno == EINTR);
        TL_CHECK(r == 0, "waitid: %s", strerror(errno));
        if (si.si_pid == c)
            break;
        TL_CHECK(++polls < 20000, "the reader did not end");
        usleep(500);
    }
    out("waitid WNOHANG saw the reader end: %s, status %d",
        si.si_code == CLD_EXITED ? "CLD_EXITED" : "?", si.si_status);
    close(from[0]);
    errno = 0;
    out("no child left: %s", yes(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD));
}

/* ---- 3. SIGCHLD ---- */
static volatile sig_atomic_t sigchld_count;

static void on_sigchld(int sig)
{
    (void)sig;
    sigchld_count++;
}

/* A new process's first POSIX timer is its timer 0, and its only one: no timer of the
 * runtime's may show (or shift the numbering). Exits 99 otherwise. */
static void first_timer_is_timer_0(void)
{
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_NONE;
    timer_t t;
    TL_CHECK(timer_create(CLOCK_MONOTONIC, &sev, &t) == 0, "timer_create: %s", strerror(errno));
    TL_CHECK((intptr_t)t == 0, "first timer id %ld", (long)(intptr_t)t);
    char *buf;
    FILE *f = tl_proc_open("/proc/self/timers", &buf);
    TL_CHECK(f != NULL, "/proc/self/timers: %s", strerror(errno));
    char line[256];
    int timers = 0;
    while (fgets(line, sizeof line, f))
        timers += strncmp(line, "ID:", 3) == 0;
    tl_proc_close(f, buf);
    TL_CHECK(timers == 1, "%d timers in /proc/self/timers", timers);
}

static void sigchld_handler(void)
{
    out("== SIGCHLD");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigchld;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    TL_CHECK(sigaction(SIGCHLD, &sa, NULL) == 0, "sigaction");
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGCHLD);
    sigprocmask(SIG_BLOCK, &block, &old);
    sigset_t wait_mask = old;
    sigdelset(&wait_mask, SIGCHLD);
    int sum = 0;
    for (int i = 1; i <= 8; i++) {
        pid_t c = xfork();
        if (c == 0) {
            first_timer_is_timer_0();
            uint64_t s = (uint64_t)i, h = 0;
            for (unsigned long k = 0; k < work_steps / 8; k++)
                h = tl_mix(h, tl_next(&s));
            volatile uint64_t sink = h;
            (void)sink;
            _exit(10 + i);
        }
        if (i % 3 == 0)
            work("sigchld", work_steps / 4);
        while (sigchld_count < i)
            sigsuspend(&wait_mask);
        int st = xwaitpid(c, 0);
        TL_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 10 + i, "child %d: %s", i, status_text(st));
        sum += WEXITSTATUS(st);
    }
    out("SIGCHLD deliveries: %d for 8 children; statuses add up to %d", (int)sigchld_count, sum);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
}

/* ---- 4. orphans ---- */
static void orphans(void)
{
    out("== orphans");
    int alive[2];
    pipe_or_die(alive);
    pid_t o1 = xfork();
    if (o1 == 0) {
        pid_t dead = getpid();
        pid_t o2 = fork();
        TL_CHECK(o2 >= 0, "fork: %s", strerror(errno));
        if (o2 == 0) {
            close(alive[0]);
            int polls = 0;
            while (getppid() == dead) {
                TL_CHECK(++polls < 20000, "never reparented");
                usleep(500);
            }
            pid_t np = getppid();
            say("orphan: reparented away from its dead parent: %s", yes(np != dead));
            say("orphan: new parent is init or a subreaper above the root: %s",
                yes(np == 1 || (np != root && root_or_ancestor(np))));
            uint64_t s = 5, h = 0;
            for (unsigned long k = 0; k < work_steps / 2; k++)
                h = tl_mix(h, tl_next(&s));
            say("orphan: computed %016llx", (unsigned long long)h);
            _exit(0);
        }
        _exit(0);
    }
    close(alive[1]);
    out("the orphan's parent: %s", status_text(xwaitpid(o1, 0)));
    collect(2);
    work("orphan", work_steps / 2);
    wait_eof(alive[0]);
    close(alive[0]);
    collect(1);

    TL_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0, "PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
    int holdp[2];
    pipe_or_die(holdp);
    o1 = xfork();
    if (o1 == 0) {
        pid_t dead = getpid();
        pid_t o2 = fork();
        TL_CHECK(o2 >= 0, "fork: %s", strerror(errno));
        if (o2 == 0) {
            close(holdp[1]);
            int polls = 0;
            while (getppid() == dead) {
                TL_CHECK(++polls < 20000, "never reparented");
                usleep(500);
            }
            say("adopted orphan: its new parent is the subreaper root: %s",
                yes(getppid() == root));
            hold(holdp[0]);
            say("adopted orphan: still the root's child at the end: %s", yes(getppid() == root));
            _exit(5);
        }
        _exit(0);
    }
    close(holdp[0]);
    out("the adopted orphan's parent: %s", status_text(xwaitpid(o1, 0)));
    collect(1);
    work("subreaper", work_steps);
    fail_point("an orphan adopted by the subreaper root");
    int is = -1;
    TL_CHECK(prctl(PR_GET_CHILD_SUBREAPER, &is) == 0, "PR_GET_CHILD_SUBREAPER");
    out("the root is still a subreaper: %s", yes(is == 1));
    close(holdp[1]);
    collect(1);
    out("the adopted orphan, reaped by the root: %s", status_text(xwaitpid(-1, 0)));
    prctl(PR_SET_CHILD_SUBREAPER, 0);
}

/* ---- 5. daemon() ---- */
static void daemonized(void)
{
    out("== daemon()");
    unlink("daemon.out");
    int alive[2];
    pipe_or_die(alive);
    pid_t a = xfork();
    if (a == 0) {
        close(alive[0]);
        /* daemon() forks; its first half exits 0 in here. */
        TL_CHECK(daemon(1, 0) == 0, "daemon: %s", strerror(errno));
        pid_t me = getpid();
        int leader = getsid(0) == me && getpgid(0) == me;
        int null_out = 0;
        struct stat sa, sb;
        if (fstat(1, &sa) == 0 && stat("/dev/null", &sb) == 0)
            null_out = sa.st_rdev == sb.st_rdev;
        uint64_t s = 9, h = 0;
        for (unsigned long k = 0; k < work_steps * 2; k++)
            h = tl_mix(h, tl_next(&s));
        char text[256];
        int n = snprintf(text, sizeof text,
                         "daemon: session leader: %s\ndaemon: stdout on /dev/null: %s\n"
                         "daemon: computed %016llx\n",
                         yes(leader), yes(null_out), (unsigned long long)h);
        int fd = open("daemon.out.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        TL_CHECK(fd >= 0, "open: %s", strerror(errno));
        full_write(fd, text, (size_t)n);
        close(fd);
        TL_CHECK(rename("daemon.out.tmp", "daemon.out") == 0, "rename: %s", strerror(errno));
        _exit(0);
    }
    close(alive[1]);
    out("daemon()'s first half: %s", status_text(xwaitpid(a, 0)));
    work("daemon", work_steps / 2);
    wait_eof(alive[0]);
    close(alive[0]);
    char buf[512];
    int fd = open("daemon.out", O_RDONLY | O_CLOEXEC);
    TL_CHECK(fd >= 0, "daemon.out: %s", strerror(errno));
    ssize_t n = read(fd, buf, sizeof buf - 1);
    TL_CHECK(n > 0, "daemon.out empty");
    close(fd);
    buf[n] = '\0';
    for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n"))
        out("%s", line);
}

int main(int argc, char **argv)
{
    work_steps = tl_arg(argc, argv, 1, 2000000);
    points = tl_arg(argc, argv, 2, 3);
    root = getpid();
    pipe_or_die(res);
    out("tree_procs: %lu steps, %lu fail points", work_steps, points);
    sessions_and_groups();
    zombie_and_reader();
    sigchld_handler();
    orphans();
    daemonized();
    out("checksum %016llx", (unsigned long long)checksum);
    return 0;
}
