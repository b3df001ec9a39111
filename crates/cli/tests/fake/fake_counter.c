/*
 * fake_counter LINES DELAY_US — the program the harness's self-test persists with
 * zhuque-fake (a stand-in for the real zhuque, which is not involved here).
 *
 * Prints "line I" for I in [start, LINES), flushing each line, sleeping DELAY_US between
 * lines, then "done" and exits 3. With FAKE_STATE set, start is read from that file, and on
 * SIGTERM the program writes the next line number there and exits 75: a line boundary is
 * all the "state" it has, so a stop and a restart lose and repeat nothing.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    long lines = argc > 1 ? atol(argv[1]) : 50;
    long delay = argc > 2 ? atol(argv[2]) : 10000;
    const char *state = getenv("FAKE_STATE");
    long start = 0;
    if (state) {
        FILE *f = fopen(state, "r");
        if (f) {
            if (fscanf(f, "%ld", &start) != 1)
                return 124;
            fclose(f);
        }
        signal(SIGTERM, on_term);
    }
    for (long i = start; i < lines; i++) {
        if (stop) {
            FILE *f = fopen(state, "w");
            if (!f || fprintf(f, "%ld\n", i) < 0 || fclose(f) != 0)
                return 124;
            return 75;
        }
        printf("line %ld\n", i);
        fflush(stdout);
        usleep((useconds_t)delay);
    }
    printf("done\n");
    return 3;
}
