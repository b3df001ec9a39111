/*
 * tty_modes WORK
 *
 * A program that puts its terminal (fd 0) in raw mode, as an editor, a pager or readline
 * does: no canonical line editing, no echo, no signal characters, no CR-to-NL or XON/XOFF,
 * VMIN 0 / VTIME 3 and ^X as its interrupt character. While it computes (WORK steps) it
 * checks, every 1/64 of the way, that the terminal still has those modes; at the end it
 * gives the terminal its old modes back and prints its result. A resume on a new terminal
 * (cooked, echoing) without the saved modes makes it stop with status 3.
 *
 * It also sets its terminal's window size (33x101, which tells it with SIGWINCH) and counts
 * SIGWINCH. Whenever a check finds another size than the last one seen (a resume on a new
 * terminal), a SIGWINCH must come, as it would for a resize: else it stops with status 4.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <signal.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static struct termios want;
static atomic_int winches;
static struct winsize last_size;
static int winches_seen;

static void on_winch(int sig)
{
    (void)sig;
    atomic_fetch_add(&winches, 1);
}

/* Waits up to 3 s for SIGWINCH number `n`; whether it came. */
static int winch_comes(int n)
{
    for (int i = 0; i < 300 && atomic_load(&winches) < n; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&winches) >= n;
}

static void check_size(unsigned long step)
{
    struct winsize now;
    TL_CHECK(ioctl(0, TIOCGWINSZ, &now) == 0, "TIOCGWINSZ");
    if (now.ws_row == last_size.ws_row && now.ws_col == last_size.ws_col)
        return;
    if (!winch_comes(winches_seen + 1)) {
        fprintf(stderr, "tty_modes: the window size became %ux%u by step %lu without SIGWINCH\n",
                now.ws_row, now.ws_col, step);
        exit(4);
    }
    winches_seen = atomic_load(&winches);
    last_size = now;
}

static void check(unsigned long step)
{
    struct termios now;
    TL_CHECK(tcgetattr(0, &now) == 0, "tcgetattr");
    tcflag_t lmask = ICANON | ECHO | ISIG | IEXTEN, imask = ICRNL | IXON;
    if ((now.c_lflag & lmask) != (want.c_lflag & lmask) ||
        (now.c_iflag & imask) != (want.c_iflag & imask) || now.c_cc[VMIN] != want.c_cc[VMIN] ||
        now.c_cc[VTIME] != want.c_cc[VTIME] || now.c_cc[VINTR] != want.c_cc[VINTR]) {
        fprintf(stderr, "tty_modes: the terminal lost its modes by step %lu (lflag %#x)\n", step,
                (unsigned)now.c_lflag);
        exit(3);
    }
}

int main(int argc, char **argv)
{
    unsigned long work = tl_arg(argc, argv, 1, 100000000);
    TL_CHECK(isatty(0), "fd 0 is not a terminal");
    struct sigaction sa = {.sa_handler = on_winch};
    TL_CHECK(sigaction(SIGWINCH, &sa, NULL) == 0, "sigaction");
    last_size = (struct winsize){.ws_row = 33, .ws_col = 101};
    TL_CHECK(ioctl(0, TIOCSWINSZ, &last_size) == 0, "TIOCSWINSZ");
    /* The kernel tells the terminal's foreground group (this program) of its own resize. */
    TL_CHECK(winch_comes(1), "no SIGWINCH for the program's own resize");
    winches_seen = atomic_load(&winches);
    struct termios old;
    TL_CHECK(tcgetattr(0, &old) == 0, "tcgetattr");
    want = old;
    want.c_lflag &= ~(tcflag_t)(ICANON | ECHO | ISIG | IEXTEN);
    want.c_iflag &= ~(tcflag_t)(ICRNL | IXON);
    want.c_cc[VMIN] = 0;
    want.c_cc[VTIME] = 3;
    want.c_cc[VINTR] = 0x18;
    TL_CHECK(tcsetattr(0, TCSANOW, &want) == 0, "tcsetattr");
    uint64_t s = 1, h = TL_HASH_INIT;
    unsigned long every = work / 64 ? work / 64 : 1;
    for (unsigned long i = 1; i <= work; i++) {
        h = tl_mix(h, tl_next(&s));
        if (i % every == 0) {
            check(i);
            check_size(i);
        }
    }
    TL_CHECK(tcsetattr(0, TCSANOW, &old) == 0, "tcsetattr");
    printf("modes kept to the end, h=%016llx\n", (unsigned long long)h);
    return 0;
}
