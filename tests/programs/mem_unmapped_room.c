/*
 * mem_unmapped_room MIB...
 *
 * Maps, writes whole and unmaps anonymous mappings of the given sizes one after the other,
 * each nearly as large as the pool's small filesystem: natively every one fits, since the
 * previous one's memory is free once it is unmapped. Under zhuque the storage of unmapped
 * memory is kept for reuse or punched out later, and must make room when a new mapping
 * needs it. Prints one line per mapping; exits 1 at the first that fails.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        size_t len = (size_t)atol(argv[i]) << 20;
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            printf("%s MiB: out of memory\n", argv[i]);
            return 1;
        }
        memset(p, i, len);
        for (size_t o = 0; o < len; o += 4096)
            if (p[o] != (char)i)
                return 3;
        printf("%s MiB: written\n", argv[i]);
        fflush(stdout);
        munmap(p, len);
    }
    return 0;
}
