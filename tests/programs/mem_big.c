/*
 * mem_big MIB
 *
 * Writes MIB MiB of heap, calls zhuque_fail_now() (a no-op natively), and checks and prints
 * what it wrote: memory beyond the soft file size limit (RLIMIT_FSIZE) the tests set, which
 * natively does not count against it, must not count under zhuque either (the pool is a file).
 */
#include "testlib.h"
#include "zhuque.h"

int main(int argc, char **argv)
{
    size_t mib = (size_t)tl_arg(argc, argv, 1, 100);
    size_t len = mib << 20;
    unsigned char *p = malloc(len);
    TL_CHECK(p != NULL, "malloc of %zu MiB failed", mib);
    for (size_t i = 0; i < len; i += 4096)
        p[i] = (unsigned char)(i >> 12);
    zq_fail_now();
    uint64_t h = TL_HASH_INIT;
    for (size_t i = 0; i < len; i += 4096) {
        TL_CHECK(p[i] == (unsigned char)(i >> 12), "page %zu lost", i >> 12);
        h = tl_mix(h, p[i]);
    }
    printf("%zu MiB checksum %016llx\n", mib, (unsigned long long)h);
    return 0;
}
