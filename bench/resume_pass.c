/*
 * resume_pass MIB
 *
 * The first pass over memory after a resume against a warm one (issue 14: the first pass
 * should cost at most twice a warm one). Writes every page of a MIB heap; under zhuque, the
 * first launch then fails itself (zq_fail_now: saved, exit 75) and the resumed process goes
 * on. Then it reads one byte of every page twice and prints both times in ms:
 *   first<TAB>MS
 *   warm<TAB>MS
 * After a resume the heap is the pool file mapped again with no page mapped: the first pass
 * faults it in. Natively (or without a failure) both passes are warm.
 */
#include "zhuque.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec * 1e-6;
}

static unsigned long pass(const volatile unsigned char *p, size_t n)
{
    unsigned long s = 0;
    for (size_t i = 0; i < n; i += 4096)
        s += p[i];
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: resume_pass MIB\n");
        return 2;
    }
    size_t n = (size_t)atol(argv[1]) << 20;
    unsigned char *p = malloc(n);
    if (!p) {
        perror("malloc");
        return 1;
    }
    memset(p, 1, n);
    if (zq_active() && zq_failures() == 0)
        zq_fail_now();
    double t0 = now_ms();
    unsigned long a = pass(p, n);
    double t1 = now_ms();
    unsigned long b = pass(p, n);
    double t2 = now_ms();
    if (a != b || a != n / 4096) {
        fprintf(stderr, "resume_pass: the heap changed (%lu, %lu)\n", a, b);
        return 1;
    }
    printf("first\t%.3f\nwarm\t%.3f\n", t1 - t0, t2 - t1);
    return 0;
}
