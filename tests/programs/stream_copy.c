/*
 * stream_copy CHUNKS_WORK [OUT]
 *
 * A filter: copies standard input to standard output 997 bytes at a time (read(2) on fd 0,
 * write(2) on fd 1, no stdio buffering), each chunk transformed (every byte xor'ed with a
 * hash of everything before it) after CHUNKS_WORK rounds of busy work, and ends with a line
 * holding the byte count and a hash of the input. The output depends on reading every input
 * byte exactly once, in order, so input read twice after a resume, or output written over
 * or lost, changes it.
 *
 * With OUT, the program puts that file on fd 1 itself (open, dup2) before copying, as
 * `sort -o` does: its output must go there after a resume too, never to the launch's stdout.
 */
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

static volatile uint64_t sink;

static void write_all(const unsigned char *p, size_t n)
{
    while (n) {
        ssize_t w = write(1, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        TL_CHECK(w > 0, "write: %s", strerror(errno));
        p += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv)
{
    TL_CHECK(argc == 2 || argc == 3, "usage: stream_copy CHUNKS_WORK [OUT]");
    unsigned long work = strtoul(argv[1], NULL, 10);
    if (argc == 3) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        TL_CHECK(fd >= 0, "open %s: %s", argv[2], strerror(errno));
        TL_CHECK(dup2(fd, 1) == 1, "dup2: %s", strerror(errno));
        close(fd);
    }
    static unsigned char buf[997];
    uint64_t hash = TL_HASH_INIT, total = 0;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        TL_CHECK(n >= 0, "read: %s", strerror(errno));
        if (n == 0)
            break;
        uint64_t spin = hash;
        for (unsigned long i = 0; i < work; i++)
            spin = tl_mix(spin, i);
        for (ssize_t i = 0; i < n; i++) {
            unsigned char c = buf[i];
            buf[i] = c ^ (unsigned char)(hash >> 13);
            hash = tl_hash(hash, &c, 1);
        }
        sink = spin;
        total += (uint64_t)n;
        write_all(buf, (size_t)n);
    }
    char line[96];
    int len = snprintf(line, sizeof line, "\ncopied %llu bytes, hash %016llx\n",
                       (unsigned long long)total, (unsigned long long)hash);
    write_all((const unsigned char *)line, (size_t)len);
    return 0;
}
