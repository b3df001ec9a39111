/*
 * The program of `zhuque demo`: computes the digits of e with a spigot algorithm
 * (A. H. J. Sale, 1968) and prints its progress.
 *
 *     demo [DIGITS]
 *
 * e - 2 = 1/2! + 1/3! + ... is held as a mixed-radix fraction with one heap-allocated
 * cell per term; every output digit multiplies the whole fraction by 10, from the last cell to
 * the first. All of the program's state is ordinary memory (the cells, the counters, stdio's
 * buffer), so under zhuque it survives a power failure without the program doing anything.
 *
 * stdout: the digits and progress lines, identical in every run whatever the failures.
 * stderr: one line at the start and one after each resume (through zhuque_on_recovery, a weak
 * symbol: without the runtime it is NULL and never called), for the demo's timings.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>

__attribute__((weak)) int zhuque_on_recovery(void (*fn)(void *arg), void *arg);

#define PER_LINE 2000 /* digits per progress line */

/* Runs inside the resume, before the program continues: only async-signal-safe calls. */
static void on_recovery(void *arg)
{
    static const char msg[] = "zhuque-demo: recovered\n";
    (void)arg;
    (void)!write(2, msg, sizeof msg - 1);
}

/* The number of terms n with log10(n!) > digits + 10: enough for every requested digit. */
static size_t terms_for(long digits)
{
    double log10_fact = 0;
    size_t n = 1;
    while (log10_fact <= (double)digits + 10)
        log10_fact += log10((double)++n);
    return n;
}

int main(int argc, char **argv)
{
    long digits = argc > 1 ? atol(argv[1]) : 60000;
    if (digits < 50)
        digits = 50;
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (zhuque_on_recovery)
        zhuque_on_recovery(on_recovery, NULL);
    static const char started[] = "zhuque-demo: started\n";
    (void)!write(2, started, sizeof started - 1);

    size_t n = terms_for(digits);
    unsigned *cell = malloc(n * sizeof *cell);
    if (!cell) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        cell[i] = 1;

    char first[51], tail[21];
    unsigned long sum = 0, hash = 2166136261u;
    printf("computing %ld digits of e (%zu terms, %zu KiB of state)\n", digits, n,
           n * sizeof *cell / 1024);
    for (long d = 1; d <= digits; d++) {
        unsigned carry = 0;
        for (size_t i = n; i-- > 0;) {
            unsigned x = cell[i] * 10 + carry;
            cell[i] = x % (unsigned)(i + 2);
            carry = x / (unsigned)(i + 2);
        }
        char c = (char)('0' + carry);
        sum += carry;
        hash = (hash ^ (unsigned char)c) * 16777619u;
        if (d <= 50)
            first[d - 1] = c;
        memmove(tail, tail + 1, 19);
        tail[19] = c;
        if (d == 50) {
            first[50] = 0;
            printf("e = 2.%.10s %.10s %.10s %.10s %.10s ...\n", first, first + 10, first + 20,
                   first + 30, first + 40);
        }
        if (d % PER_LINE == 0 || d == digits) {
            tail[20] = 0;
            printf("digits %6ld..%-6ld ...%s   digit sum %7lu   fnv %08lx\n",
                   (d - 1) / PER_LINE * PER_LINE + 1, d, tail, sum, hash & 0xffffffffUL);
        }
    }
    printf("done: %ld digits of e, digit sum %lu, fnv %08lx\n", digits, sum,
           hash & 0xffffffffUL);
    free(cell);
    return 0;
}
