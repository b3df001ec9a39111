/*
 * mem_big MIB [fork]
 *
 * Writes MIB MiB of heap, calls zhuque_fail_now() (a no-op natively), and checks and prints
 * what it wrote: memory beyond the soft file size limit (RLIMIT_FSIZE) the tests set, which
 * natively does not count against it, must not count under zhuque either (the pool is a file).
 * With `fork`, first a child outlives its grace period (under zhuque it then copies the
 * memory into a pool of its own) and checks the heap, while the parent rewrites it (its
 * writes are written back into its pool once it settles, 20 ms after the fork).
 */
#include <sys/wait.h>
#include <time.h>

#include "testlib.h"
#include "zhuque.h"

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&t, &t) != 0)
        ;
}

static uint64_t digest(const unsigned char *p, size_t len)
{
    uint64_t h = TL_HASH_INIT;
    for (size_t i = 0; i < len; i += 4096)
        h = tl_mix(h, p[i]);
    return h;
}

/* A child checks the heap after its grace period; the parent rewrites it meanwhile, waits,
 * and gives its pool time to settle; every page is as it was again afterwards. */
static void fork_round(unsigned char *p, size_t len)
{
    uint64_t before = digest(p, len);
    fflush(stdout);
    pid_t c = fork();
    TL_CHECK(c >= 0, "fork");
    if (c == 0) {
        sleep_ms(30);
        printf("child sees %s heap\n", digest(p, len) == before ? "the same" : "ANOTHER");
        exit(0);
    }
    for (size_t i = 0; i < len; i += 4096)
        p[i] ^= 1;
    int st;
    TL_CHECK(waitpid(c, &st, 0) == c, "waitpid");
    TL_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
    sleep_ms(60);
    for (size_t i = 0; i < len; i += 4096)
        p[i] ^= 1;
    printf("parent after the fork: %s heap\n", digest(p, len) == before ? "the same" : "ANOTHER");
}

int main(int argc, char **argv)
{
    size_t mib = (size_t)tl_arg(argc, argv, 1, 100);
    size_t len = mib << 20;
    unsigned char *p = malloc(len);
    TL_CHECK(p != NULL, "malloc of %zu MiB failed", mib);
    for (size_t i = 0; i < len; i += 4096)
        p[i] = (unsigned char)(i >> 12);
    if (argc > 2 && strcmp(argv[2], "fork") == 0)
        fork_round(p, len);
    zq_fail_now();
    uint64_t h = TL_HASH_INIT;
    for (size_t i = 0; i < len; i += 4096) {
        TL_CHECK(p[i] == (unsigned char)(i >> 12), "page %zu lost", i >> 12);
        h = tl_mix(h, p[i]);
    }
    printf("%zu MiB checksum %016llx\n", mib, (unsigned long long)h);
    return 0;
}
