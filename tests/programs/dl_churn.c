/*
 * dl_churn ROUNDS LIBRARY [FAIL_ROUND [INIT_FAIL_EVERY]]
 *
 * Libraries loaded and unloaded while failures land: every round dlopen()s LIBRARY
 * (RTLD_NOW, so ld.so maps, relocates and write-protects RELRO inside the call), calls its
 * dl_digest(), and dlclose()s it, so most of the program's time is spent inside ld.so. A
 * failure that lands inside dlopen must resume with the library's relocations intact, and
 * the pages of every unloaded copy must not pile up in the pool. Prints a checksum every
 * 256 rounds; calls zhuque_fail_now() after round FAIL_ROUND when given (0: never). Every
 * INIT_FAIL_EVERY rounds the library's constructor fails inside dlopen (a fresh copy of the
 * library is mapped where the last one was, relocated, not yet seen by the runtime).
 */
#include "testlib.h"
#include "zhuque.h"

#include <dlfcn.h>

int main(int argc, char **argv)
{
    TL_CHECK(argc >= 3 && argc <= 5,
             "usage: dl_churn ROUNDS LIBRARY [FAIL_ROUND [INIT_FAIL_EVERY]]");
    unsigned long rounds = strtoul(argv[1], NULL, 10);
    unsigned long fail_round = argc >= 4 ? strtoul(argv[3], NULL, 10) : 0;
    unsigned long init_fail_every = argc == 5 ? strtoul(argv[4], NULL, 10) : 0;
    uint64_t h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        int fail_inside = init_fail_every && r % init_fail_every == 0;
        if (fail_inside)
            setenv("DL_CHURN_FAIL_IN_INIT", "1", 1);
        void *lib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
        TL_CHECK(lib != NULL, "dlopen: %s", dlerror());
        if (fail_inside)
            unsetenv("DL_CHURN_FAIL_IN_INIT");
        uint64_t (*digest)(uint64_t) = (uint64_t (*)(uint64_t))dlsym(lib, "dl_digest");
        TL_CHECK(digest != NULL, "dlsym: %s", dlerror());
        h = tl_mix(h, digest(r));
        TL_CHECK(dlclose(lib) == 0, "dlclose: %s", dlerror());
        if (r % 256 == 0)
            printf("round %lu: %016llx\n", r, (unsigned long long)h);
        if (r == fail_round) {
            fflush(stdout);
            zq_fail_now();
        }
    }
    printf("checksum %016llx\n", (unsigned long long)h);
    return 0;
}
