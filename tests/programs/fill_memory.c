/* Allocates and touches MiB after MiB of heap (argv[1] MiB in all), as a program filling a
 * cache would; reports a failed allocation the way such a program does.
 *
 *   fill_memory MIB            exits 1 at the first failed allocation, 0 if all succeeded;
 *   fill_memory MIB again      then frees everything, fails (zq_fail_now: a save on the
 *                              filesystem it just filled), allocates and checks 16 MiB after
 *                              the resume, and exits 1 if the first round ran out;
 *   fill_memory MIB late FILE  allocates all MiB first, then fills FILE's filesystem with
 *                              FILE (as another program would), then touches the memory:
 *                              memory allocated while there was room, touched when there is
 *                              none (a SIGBUS under zhuque, as natively an OOM kill). */
#include "zhuque.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIB (1L << 20)

static void fill_file(const char *path)
{
    FILE *f = fopen(path, "w");
    static char block[MIB];
    if (!f) {
        perror(path);
        exit(2);
    }
    while (fwrite(block, 1, sizeof block, f) == sizeof block && fflush(f) == 0)
        ;
    fclose(f);
}

int main(int argc, char **argv)
{
    long want = argc > 1 ? atol(argv[1]) : 200;
    const char *mode = argc > 2 ? argv[2] : "";
    char **blocks = calloc(want, sizeof *blocks);
    long got = 0;
    for (; got < want; got++) {
        blocks[got] = malloc(MIB);
        if (!blocks[got])
            break;
        if (strcmp(mode, "late") != 0)
            memset(blocks[got], (int)got, MIB);
    }
    int ran_out = got < want;
    /* The count depends on what else the filesystem holds: say only whether it ran out. */
    printf(ran_out ? "out of memory\n" : "allocated %ld MiB\n", want);
    fflush(stdout);
    if (strcmp(mode, "late") == 0) {
        fill_file(argv[3]);
        for (long i = 0; i < got; i++)
            memset(blocks[i], (int)i, MIB);
        printf("touched %ld MiB\n", got);
        return 0;
    }
    if (strcmp(mode, "again") == 0) {
        for (long i = 0; i < got; i++)
            free(blocks[i]);
        printf("freed\n");
        fflush(stdout);
        zq_fail_now();
        char *p = malloc(16 * MIB);
        if (!p) {
            printf("still out of memory after the resume\n");
            return 2;
        }
        memset(p, 7, 16 * MIB);
        for (long i = 0; i < 16 * MIB; i += 4096)
            if (p[i] != 7)
                return 3;
        printf("16 MiB again\n");
    }
    return ran_out ? 1 : 0;
}
