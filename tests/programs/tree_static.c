/*
 * tree_static ROUND
 *
 * The statically linked child of `tree_exec static` (compiled with `cc -static` by the test):
 * a program the zhuque runtime cannot be preloaded into. It computes for a while (a few
 * hundred milliseconds), then writes its result to static.out (through a temporary file and
 * a rename, so a run killed half-way leaves no partial file) and exits 0. Prints nothing on
 * stdout: the parent prints the result.
 */
#include "testlib.h"

#include <unistd.h>

int main(int argc, char **argv)
{
    unsigned long round = tl_arg(argc, argv, 1, 1);
    unsigned long steps = tl_arg(argc, argv, 2, 150000000);
    uint64_t s = round, h = TL_HASH_INIT;
    for (unsigned long i = 0; i < steps; i++)
        h = tl_mix(h, tl_next(&s));
    FILE *f = fopen("static.out.tmp", "w");
    TL_CHECK(f != NULL, "static.out.tmp");
    fprintf(f, "round %lu result %016llx\n", round, (unsigned long long)h);
    TL_CHECK(fclose(f) == 0, "fclose");
    TL_CHECK(rename("static.out.tmp", "static.out") == 0, "rename");
    return 0;
}
