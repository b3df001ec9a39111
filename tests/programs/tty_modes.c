/*
 * tty_modes WORK
 *
 * A program that puts its terminal (fd 0) in raw mode, as an editor, a pager or readline
 * does: no canonical line editing, no echo, no signal characters, no CR-to-NL or XON/XOFF,
 * VMIN 0 / VTIME 3 and ^X as its interrupt character. While it computes (WORK steps) it
 * checks, every 1/64 of the way, that the terminal still has those modes; at the end it
 * gives the terminal its old modes back and prints its result. A resume on a new terminal
 * (cooked, echoing) without the saved modes makes it stop with status 3.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <termios.h>
#include <unistd.h>

static struct termios want;

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
        if (i % every == 0)
            check(i);
    }
    TL_CHECK(tcsetattr(0, TCSANOW, &old) == 0, "tcsetattr");
    printf("modes kept to the end, h=%016llx\n", (unsigned long long)h);
    return 0;
}
