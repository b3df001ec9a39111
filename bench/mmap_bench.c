/*
 * mmap_bench [ROUNDS] [PAGES]
 *
 * Mapping-call micro-benchmark: each round maps PAGES anonymous pages, touches each page
 * once, and unmaps them; every 8th round also grows the mapping with mremap and changes its
 * protection. Prints a checksum only; the runner times whole processes.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
    unsigned long rounds = argc > 1 ? strtoul(argv[1], 0, 10) : 200000;
    size_t pages = argc > 2 ? strtoul(argv[2], 0, 10) : 4;
    size_t len = pages * 4096;
    uint64_t sum = 0;
    for (unsigned long r = 0; r < rounds; r++) {
        unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 1;
        for (size_t i = 0; i < len; i += 4096)
            p[i] = (unsigned char)(r + i);
        size_t cur = len;
        if (r % 8 == 0) {
            unsigned char *q = mremap(p, len, 2 * len, MREMAP_MAYMOVE);
            if (q == MAP_FAILED)
                return 2;
            p = q;
            cur = 2 * len;
            p[cur - 1] = 1;
            if (mprotect(p, cur, PROT_READ) != 0)
                return 3;
        }
        for (size_t i = 0; i < len; i += 4096)
            sum += p[i];
        if (munmap(p, cur) != 0)
            return 4;
    }
    printf("checksum %llu\n", (unsigned long long)sum);
    return 0;
}
