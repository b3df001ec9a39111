/* Allocates and touches MiB after MiB of heap (argv[1] MiB in all), as a program filling a
 * cache would; reports a failed allocation the way such a program does, and exits 1. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    long want = argc > 1 ? atol(argv[1]) : 200;
    for (long i = 0; i < want; i++) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("out of memory after %ld MiB\n", i);
            return 1;
        }
        memset(p, (int)i, 1 << 20);
    }
    printf("allocated %ld MiB\n", want);
    return 0;
}
