/*
 * fd_pty ROUNDS FAIL_POINTS
 *
 * Pseudo-terminals the program opened itself (issue 12):
 *  - A: openpty(), canonical mode with echo, a 33x101 window: every round the master types
 *    a line ended by an end of file (^D; every 5th round after an empty one), a line and half
 *    of the next; the slave reads the end-of-file line (one read, without its end; the empty
 *    one reads 0 bytes) and the line (one read, one line) and writes a line of output; then
 *    the master types the rest, the slave reads it whole (one read), and the master reads the
 *    echo and the output, byte for byte. FAIL_POINTS rounds call zhuque_fail_now(): the odd
 *    ones with all of that queued, the even ones with half a line, its echo and the output
 *    queued. Before, an end of file came back as a NUL byte inside the next line.
 *  - B: posix_openpt() in packet mode, its slave raw, exclusive, 10x20: bytes each way with
 *    the packet byte in front of what the master reads.
 *  - C: posix_openpt() never unlocked: its slave stays locked (opening it fails with EIO).
 *  - D: a master whose slave wrote "bye" and was closed: "bye", then EIO (hung up).
 *  - E: a master whose slave was never opened: it waits (no event), not hung up.
 * Every round checks what the kernel reports: the settings (termios flags and control
 * characters as set), window sizes, packet, exclusive and lock modes, and that ptsname()
 * leads to the slave fd's own device. Before, a master came back as an EBADF placeholder.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static struct termios want_a, want_b;

static void put(int fd, const char *s, unsigned long r)
{
    size_t n = strlen(s);
    CHECK(write(fd, s, n) == (ssize_t)n, "round %lu: write %d: %s", r, fd, strerror(errno));
}

/* Reads exactly n bytes from fd into buf (NUL-terminated). */
static void get(int fd, char *buf, size_t n, unsigned long r)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd p = {fd, POLLIN, 0};
        int k = poll(&p, 1, 10000);
        CHECK(k == 1, "round %lu: fd %d: nothing to read after %zu of %zu bytes", r, fd, got, n);
        ssize_t m = read(fd, buf + got, n - got);
        if (m < 0 && errno == EINTR)
            continue;
        CHECK(m > 0, "round %lu: read %d: %s", r, fd, strerror(errno));
        got += (size_t)m;
    }
    buf[got] = 0;
}

static void expect(int fd, const char *want, unsigned long r)
{
    char buf[256];
    get(fd, buf, strlen(want), r);
    CHECK(!strcmp(buf, want), "round %lu: fd %d read \"%s\", not \"%s\"", r, fd, buf, want);
}

/* Reads from the master of A the echo of `line` and `half` typed in one write and of " rest"
 * typed after, with the slave's `out` somewhere after the echo of the line and before that of
 * " rest" (see the caller): "line N\r\n" + a head of half + "out N\r\n" + the rest of half +
 * " rest\r\n", NLs as CR NL. */
static void expect_echo_and_output(int fd, const char *before, const char *line, const char *half,
                                   const char *out, unsigned long r)
{
    char buf[256], echo_line[96], echo_out[64], want[256];
    size_t n = strlen(line), m = strlen(out);
    snprintf(echo_line, sizeof echo_line, "%s%.*s\r\n", before, (int)(n - 1), line);
    snprintf(echo_out, sizeof echo_out, "%.*s\r\n", (int)(m - 1), out);
    size_t total = strlen(echo_line) + strlen(half) + strlen(echo_out) + strlen(" rest\r\n");
    get(fd, buf, total, r);
    for (size_t k = 0; k <= strlen(half); k++) {
        snprintf(want, sizeof want, "%s%.*s%s%s rest\r\n", echo_line, (int)k, half, echo_out,
                 half + k);
        if (!strcmp(buf, want))
            return;
    }
    CHECK(0, "round %lu: fd %d read \"%s\", not the echo of \"%s%s rest\" with \"%s\" after its "
             "first line", r, fd, buf, line, half, out);
}

/* What one read of a canonical slave returns once it has something (NUL-terminated in buf,
 * which holds 256 bytes): a line, or 0 bytes for an end of file on an empty line. */
static ssize_t read_once(int fd, char *buf, const char *what, unsigned long r)
{
    struct pollfd p = {fd, POLLIN, 0};
    CHECK(poll(&p, 1, 10000) == 1, "round %lu: no %s on fd %d", r, what, fd);
    ssize_t n;
    while ((n = read(fd, buf, 255)) < 0 && errno == EINTR)
        ;
    CHECK(n >= 0, "round %lu: read %d: %s", r, fd, strerror(errno));
    buf[n] = 0;
    return n;
}

/* One read of a canonical slave returns the line `want` ended by an end of file, without its
 * end ("" for an end of file on an empty line: the read returns 0). */
static void expect_eof_line(int fd, const char *want, unsigned long r)
{
    char buf[256];
    ssize_t n = read_once(fd, buf, "end of file", r);
    CHECK((size_t)n == strlen(want) && !memcmp(buf, want, (size_t)n),
          "round %lu: fd %d read \"%s\" (%zd bytes) at the end of file, not \"%s\"", r, fd, buf,
          n, want);
}

/* One read of a canonical slave returns one whole line, as natively. */
static void expect_line(int fd, const char *want, unsigned long r)
{
    char buf[256];
    ssize_t n = read_once(fd, buf, "line", r);
    CHECK(n > 0, "round %lu: fd %d read nothing, not the line \"%s\"", r, fd, want);
    CHECK(!strcmp(buf, want), "round %lu: fd %d read the line \"%s\", not \"%s\"", r, fd, buf,
          want);
}

static void same_settings(int fd, const struct termios *w, const char *what, unsigned long r)
{
    struct termios t;
    CHECK(tcgetattr(fd, &t) == 0, "round %lu: tcgetattr %s: %s", r, what, strerror(errno));
    CHECK(t.c_iflag == w->c_iflag && t.c_oflag == w->c_oflag && t.c_cflag == w->c_cflag &&
              t.c_lflag == w->c_lflag && !memcmp(t.c_cc, w->c_cc, sizeof t.c_cc),
          "round %lu: %s settings changed: iflag %o/%o oflag %o/%o lflag %o/%o", r, what,
          t.c_iflag, w->c_iflag, t.c_oflag, w->c_oflag, t.c_lflag, w->c_lflag);
}

static void same_window(int fd, int rows, int cols, const char *what, unsigned long r)
{
    struct winsize ws;
    CHECK(ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row == rows && ws.ws_col == cols,
          "round %lu: %s window %dx%d", r, what, ws.ws_row, ws.ws_col);
}

/* ptsname(master) names the device the slave fd is. */
static void named_right(int master, int slave, const char *what, unsigned long r)
{
    char *name = ptsname(master);
    struct stat a, b;
    CHECK(name && stat(name, &a) == 0 && fstat(slave, &b) == 0 && a.st_rdev == b.st_rdev,
          "round %lu: %s: ptsname %s is not the slave", r, what, name ? name : "(none)");
}

static int flag(int fd, unsigned long req)
{
    int v = -1;
    CHECK(ioctl(fd, req, &v) == 0, "ioctl %#lx: %s", req, strerror(errno));
    return v;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 1000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);

    int ma, sa;
    struct winsize wa = {.ws_row = 33, .ws_col = 101};
    CHECK(openpty(&ma, &sa, NULL, NULL, &wa) == 0, "openpty: %s", strerror(errno));
    CHECK(tcgetattr(sa, &want_a) == 0, "tcgetattr");
    want_a.c_lflag |= ICANON | ECHO;
    want_a.c_cc[VINTR] = 7;
    CHECK(tcsetattr(sa, TCSANOW, &want_a) == 0, "tcsetattr A");
    CHECK(tcgetattr(sa, &want_a) == 0, "tcgetattr A");

    int mb = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(mb >= 0 && grantpt(mb) == 0 && unlockpt(mb) == 0, "posix_openpt B: %s",
          strerror(errno));
    int sb = open(ptsname(mb), O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(sb >= 0, "open slave B: %s", strerror(errno));
    CHECK(tcgetattr(sb, &want_b) == 0, "tcgetattr B");
    cfmakeraw(&want_b);
    want_b.c_cc[VMIN] = 1;
    CHECK(tcsetattr(sb, TCSANOW, &want_b) == 0 && tcgetattr(sb, &want_b) == 0, "raw B");
    struct winsize wb = {.ws_row = 10, .ws_col = 20};
    int one = 1;
    CHECK(ioctl(mb, TIOCSWINSZ, &wb) == 0 && ioctl(mb, TIOCPKT, &one) == 0 &&
              ioctl(sb, TIOCEXCL) == 0,
          "B modes: %s", strerror(errno));

    int mc = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(mc >= 0, "posix_openpt C: %s", strerror(errno));

    int md = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(md >= 0 && unlockpt(md) == 0, "posix_openpt D: %s", strerror(errno));
    int sd = open(ptsname(md), O_RDWR | O_NOCTTY);
    CHECK(sd >= 0 && write(sd, "bye", 3) == 3 && close(sd) == 0, "slave D: %s", strerror(errno));
    int me = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    CHECK(me >= 0 && unlockpt(me) == 0, "posix_openpt E: %s", strerror(errno));

    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        same_settings(sa, &want_a, "A", r);
        same_settings(mb, &want_b, "B (through the master)", r);
        same_window(sa, 33, 101, "A", r);
        same_window(sb, 10, 20, "B", r);
        named_right(ma, sa, "A", r);
        named_right(mb, sb, "B", r);
        CHECK(flag(mb, TIOCGPKT) == 1, "round %lu: B left packet mode", r);
        CHECK(flag(sb, TIOCGEXCL) == 1, "round %lu: B left exclusive mode", r);
        CHECK(flag(mc, TIOCGPTLCK) == 1, "round %lu: C was unlocked", r);
        int c = open(ptsname(mc), O_RDWR | O_NOCTTY);
        CHECK(c < 0 && errno == EIO, "round %lu: C's slave opened (%d, %s)", r, c,
              strerror(errno));
        struct pollfd pd = {md, POLLIN, 0}, pe = {me, POLLIN, 0};
        CHECK(poll(&pd, 1, 0) == 1 && (pd.revents & POLLHUP), "round %lu: D not hung up (%#x)",
              r, pd.revents);
        CHECK(poll(&pe, 1, 0) == 0, "round %lu: E has events %#x", r, pe.revents);
        if (r == 1) {
            char bye[8];
            get(md, bye, 3, r);
            CHECK(!strcmp(bye, "bye"), "round 1: D read \"%s\"", bye);
        }
        char x;
        CHECK(read(md, &x, 1) < 0 && errno == EIO, "round %lu: D's master did not read EIO", r);

        char eof[64], line[64], half[64], out[64], in_b[64], out_b[64], want[320];
        snprintf(eof, sizeof eof, "eof %lu", r);
        snprintf(line, sizeof line, "line %lu\n", r);
        snprintf(half, sizeof half, "half %lu", r);
        snprintf(out, sizeof out, "out %lu\n", r);
        snprintf(in_b, sizeof in_b, "in-%lu", r);
        snprintf(out_b, sizeof out_b, "back-%lu", r);
        /* One write: the line discipline takes (and echoes) it at once, so the echo comes
         * before the output the slave writes once it has read the line. */
        snprintf(want, sizeof want, "%s%s\x04%s%s", r % 5 ? "" : "\x04", eof, line, half);
        put(ma, want, r);
        put(mb, in_b, r);
        put(sb, out_b, r);
        int point = every && r % every == 0 && r / every <= points ? (int)(r / every) : 0;
        if (point % 2 == 1)
            zq_fail_now(); /* ends of file, a line and a half and their echo queued; bytes both
                              ways on B */
        if (r % 5 == 0)
            expect_eof_line(sa, "", r);
        expect_eof_line(sa, eof, r);
        expect_line(sa, line, r);
        put(sa, out, r);
        if (point && point % 2 == 0)
            zq_fail_now(); /* half a line, its echo and output queued */
        put(ma, " rest\n", r);
        snprintf(want, sizeof want, "%s rest\n", half);
        expect_line(sa, want, r);
        /* The master sees the echo of what it typed (NL as CR NL) and the output, which comes
         * after the echo of the line and before that of " rest". Where in the echo of the half
         * line it lands is the kernel's choice, natively too: the line discipline takes a
         * write in the chunks of its input buffer and echoes each chunk before it wakes the
         * reader, so when "line N\nhalf N" straddles two chunks the slave may read the line
         * and write its output before the rest of the half line is echoed (seen once in
         * CI: "half 182", the output, "1"). */
        expect_echo_and_output(ma, eof, line, half, out, r);
        expect(sb, in_b, r);
        char pkt[64];
        get(mb, pkt, 1 + strlen(out_b), r);
        CHECK(pkt[0] == TIOCPKT_DATA && !strcmp(pkt + 1, out_b),
              "round %lu: B's master read %#x \"%s\"", r, pkt[0], pkt + 1);
        if (r % 100 == 0)
            printf("round %lu: lines, echo and packets crossed\n", r);
    }
    printf("done\n");
    return 0;
}
