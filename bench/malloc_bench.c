/*
 * malloc_bench [OPS] [SLOTS] [MAX_SIZE]
 *
 * Allocator micro-benchmark: OPS random operations on SLOTS live pointers, each replacing a
 * random slot with a new block of 1..MAX_SIZE bytes (80% small <= 256 B, like most programs),
 * touching the first and last byte. Prints a checksum (so the work cannot be optimised out)
 * and nothing timing-related: the runner times whole processes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

int main(int argc, char **argv)
{
    unsigned long ops = argc > 1 ? strtoul(argv[1], 0, 10) : 20000000;
    size_t slots = argc > 2 ? strtoul(argv[2], 0, 10) : 50000;
    size_t max = argc > 3 ? strtoul(argv[3], 0, 10) : 8192;
    unsigned char **p = calloc(slots, sizeof *p);
    size_t *len = calloc(slots, sizeof *len);
    uint64_t s = 88172645463325252ULL, sum = 0;
    for (unsigned long i = 0; i < ops; i++) {
        size_t k = next(&s) % slots;
        if (p[k]) {
            sum += p[k][0] + p[k][len[k] - 1];
            free(p[k]);
        }
        uint64_t r = next(&s);
        len[k] = (r % 10 < 8) ? 1 + r % 256 : 1 + r % max;
        p[k] = malloc(len[k]);
        p[k][0] = (unsigned char)i;
        p[k][len[k] - 1] = (unsigned char)(i >> 8);
    }
    for (size_t k = 0; k < slots; k++)
        free(p[k]);
    printf("checksum %llu\n", (unsigned long long)sum);
    return 0;
}
