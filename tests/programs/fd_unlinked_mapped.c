/*
 * fd_unlinked_mapped ROUNDS FAIL_POINTS
 *
 * An unlinked file used as shared memory, the way programs did before memfd (issue 12): a
 * temporary file is created, unlinked, kept open and mapped MAP_SHARED. Every round writes
 * through the fd (pwrite) and reads the byte back through the mapping, writes through the
 * mapping and reads back through the fd, and grows the file with ftruncate now and then
 * (within the mapping); FAIL_POINTS rounds call zhuque_fail_now(). The fd and the mapping
 * must stay one file: before, they came back as two copies that silently diverged.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define MAPPED (256 * 1024)

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 20000);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fd = open("arena", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    CHECK(fd >= 0 && unlink("arena") == 0, "arena: %s", strerror(errno));
    off_t size = 64 * 1024;
    CHECK(ftruncate(fd, size) == 0, "ftruncate: %s", strerror(errno));
    unsigned char *m = mmap(NULL, MAPPED, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
    unsigned long seed = 7, sum = 0;
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        seed = seed * 6364136223846793005ul + 1442695040888963407ul;
        off_t at = (off_t)((seed >> 20) % (unsigned long)size);
        unsigned char v = (unsigned char)(seed >> 8), got = 0;
        CHECK(pwrite(fd, &v, 1, at) == 1, "round %lu: pwrite: %s", r, strerror(errno));
        CHECK(m[at] == v, "round %lu: the mapping has %#x at %ld, the fd wrote %#x", r, m[at],
              (long)at, v);
        off_t at2 = (off_t)((seed >> 36) % (unsigned long)size);
        m[at2] = (unsigned char)(v ^ 0x5a);
        CHECK(pread(fd, &got, 1, at2) == 1 && got == (unsigned char)(v ^ 0x5a),
              "round %lu: the fd reads %#x at %ld, the mapping wrote %#x", r, got, (long)at2,
              v ^ 0x5a);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % 5000 == 0 && size < MAPPED) {
            size += 32 * 1024;
            CHECK(ftruncate(fd, size) == 0, "round %lu: grow: %s", r, strerror(errno));
        }
        struct stat st;
        CHECK(fstat(fd, &st) == 0 && st.st_size == size, "round %lu: size %ld, not %ld", r,
              (long)st.st_size, (long)size);
        sum += m[(seed >> 12) % (unsigned long)size];
        if (r % 5000 == 0)
            printf("round %lu: size %ld, sum %lu\n", r, (long)size, sum);
    }
    printf("done\n");
    return 0;
}
