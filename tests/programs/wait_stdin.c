/*
 * wait_stdin [KIB]
 *
 * Fills KIB KiB of heap with a pattern, prints "ready" (flushed), then blocks reading stdin
 * until end of file, and prints what it read and a checksum of the heap. While it waits its
 * image is RUNNING and nothing in it changes: tests use it to check that a second launch on
 * the same image is refused without touching the image.
 */
#include "testlib.h"

#include <errno.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    size_t kib = tl_arg(argc, argv, 1, 1024);
    unsigned char *heap = malloc(kib * 1024 + 1);
    TL_CHECK(heap != NULL, "malloc");
    uint64_t rng = 11;
    for (size_t i = 0; i < kib * 1024; i += 8) {
        uint64_t v = tl_next(&rng);
        memcpy(heap + i, &v, 8);
    }
    printf("ready\n");
    fflush(stdout);

    size_t total = 0;
    uint64_t in = TL_HASH_INIT;
    for (;;) {
        char buf[4096];
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        TL_CHECK(n >= 0, "read stdin: %s", strerror(errno));
        if (n == 0)
            break;
        in = tl_hash(in, buf, (size_t)n);
        total += (size_t)n;
    }
    printf("stdin bytes=%zu hash=%016llx\n", total, (unsigned long long)in);
    printf("checksum %016llx\n", (unsigned long long)tl_hash(TL_HASH_INIT, heap, kib * 1024));
    return 0;
}
