/*
 * fd_unlinked ROUNDS
 *
 * Files that only an fd reaches: a temporary file unlinked right after it was opened, an
 * O_TMPFILE file, and a memfd (sealed halfway through against shrinking and growing). Each
 * round writes a random chunk at a random offset of each (pwrite, or lseek+write for the temp
 * file, so its offset matters too) and the same bytes into a mirror in memory; every 128 rounds
 * the files are read back and compared with the mirrors. After a resume the files must still
 * be unlinked, hold exactly the mirrored contents and keep their offsets, flags and seals.
 * A fourth unlinked file, written once, keeps its mode, owner (daemon:daemon when the program
 * runs as root) and modification time, checked with fstat every 128 rounds.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define SIZE (192 * 1024)

struct file {
    const char *name;
    int fd;
    unsigned char *mirror;
};

static void check_same(struct file *f)
{
    static unsigned char buf[SIZE];
    size_t got = 0;
    while (got < SIZE) {
        ssize_t n = pread(f->fd, buf + got, SIZE - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        TL_CHECK(n > 0, "pread %s: %s", f->name, n < 0 ? strerror(errno) : "eof");
        got += (size_t)n;
    }
    TL_CHECK(memcmp(buf, f->mirror, SIZE) == 0, "%s differs from its mirror", f->name);
    struct stat st;
    TL_CHECK(fstat(f->fd, &st) == 0, "fstat");
    TL_CHECK(st.st_nlink == 0, "%s has %lu links", f->name, (unsigned long)st.st_nlink);
    TL_CHECK(st.st_size == SIZE, "%s size %lld", f->name, (long long)st.st_size);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 40000);
    uint64_t rng = 99;
    struct file files[3] = {{"temp", -1, NULL}, {"tmpfile", -1, NULL}, {"memfd", -1, NULL}};

    files[0].fd = open("scratch.tmp", O_RDWR | O_CREAT | O_EXCL, 0600);
    TL_CHECK(files[0].fd >= 0, "open: %s", strerror(errno));
    TL_CHECK(unlink("scratch.tmp") == 0, "unlink");
    files[1].fd = open(".", O_TMPFILE | O_RDWR, 0600);
    TL_CHECK(files[1].fd >= 0, "O_TMPFILE: %s", strerror(errno));
    files[2].fd = memfd_create("zhuque-test", MFD_ALLOW_SEALING);
    TL_CHECK(files[2].fd >= 0, "memfd_create: %s", strerror(errno));
    int ro = open("/proc/self/fd/4", O_RDONLY); /* a read-only description of the O_TMPFILE */
    TL_CHECK(ro >= 0, "reopen: %s", strerror(errno));
    for (int i = 0; i < 3; i++) {
        files[i].mirror = calloc(1, SIZE);
        TL_CHECK(files[i].mirror && ftruncate(files[i].fd, SIZE) == 0, "setup %d", i);
    }
    printf("fds %d %d %d ro %d\n", files[0].fd, files[1].fd, files[2].fd, ro);
    /* At a high number, so the numbers above stay what they were. */
    int kept = open("kept.tmp", O_RDWR | O_CREAT | O_EXCL, 0600);
    TL_CHECK(kept >= 0 && dup2(kept, 60) == 60 && close(kept) == 0, "kept.tmp");
    TL_CHECK(write(60, "kept", 4) == 4 && fchmod(60, 0640) == 0 && unlink("kept.tmp") == 0,
             "kept.tmp setup");
    uid_t kept_uid = geteuid() == 0 ? 1 : geteuid();
    gid_t kept_gid = geteuid() == 0 ? 1 : getegid();
    TL_CHECK(fchown(60, kept_uid, kept_gid) == 0, "fchown: %s", strerror(errno));
    struct timespec kept_times[2] = {{0, UTIME_OMIT}, {1234567890, 123456789}};
    TL_CHECK(futimens(60, kept_times) == 0, "futimens");

    off_t temp_pos = 0;
    uint64_t h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        for (int i = 0; i < 3; i++) {
            struct file *f = &files[i];
            size_t len = 1 + (size_t)tl_below(&rng, 512);
            off_t at = (off_t)tl_below(&rng, SIZE - len);
            unsigned char chunk[512];
            for (size_t k = 0; k < len; k++)
                chunk[k] = (unsigned char)tl_next(&rng);
            if (i == 0) { /* through the file offset */
                TL_CHECK(lseek(f->fd, 0, SEEK_CUR) == temp_pos, "temp offset %lld != %lld",
                         (long long)lseek(f->fd, 0, SEEK_CUR), (long long)temp_pos);
                TL_CHECK(lseek(f->fd, at, SEEK_SET) == at, "lseek");
                TL_CHECK(write(f->fd, chunk, len) == (ssize_t)len, "write");
                temp_pos = at + (off_t)len;
            } else {
                TL_CHECK(pwrite(f->fd, chunk, len, at) == (ssize_t)len, "pwrite %s: %s",
                         f->name, strerror(errno));
            }
            memcpy(f->mirror + at, chunk, len);
            h = tl_hash(h, chunk, len);
        }
        if (r == rounds / 2) {
            TL_CHECK(fcntl(files[2].fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0,
                     "seal: %s", strerror(errno));
            printf("sealed\n");
        }
        if (r % 128 == 0 || r == rounds) {
            for (int i = 0; i < 3; i++)
                check_same(&files[i]);
            unsigned char b;
            TL_CHECK(pread(ro, &b, 1, 7) == 1 && b == files[1].mirror[7], "ro view");
            TL_CHECK((fcntl(ro, F_GETFL) & O_ACCMODE) == O_RDONLY, "ro access mode");
            TL_CHECK(write(ro, "x", 1) < 0 && errno == EBADF, "ro is writable");
            int seals = fcntl(files[2].fd, F_GET_SEALS);
            int want = r >= rounds / 2 ? F_SEAL_SHRINK | F_SEAL_GROW : 0;
            TL_CHECK(seals == want, "seals %x != %x", seals, want);
            if (want)
                TL_CHECK(ftruncate(files[2].fd, SIZE * 2) < 0 && errno == EPERM,
                         "seal not enforced");
            TL_CHECK(access("scratch.tmp", F_OK) != 0, "the temp file came back by name");
            struct stat ks;
            TL_CHECK(fstat(60, &ks) == 0 && (ks.st_mode & 07777) == 0640 && ks.st_nlink == 0,
                     "kept.tmp mode %o", ks.st_mode);
            TL_CHECK(ks.st_uid == kept_uid && ks.st_gid == kept_gid, "kept.tmp owner %u:%u",
                     (unsigned)ks.st_uid, (unsigned)ks.st_gid);
            TL_CHECK(ks.st_mtim.tv_sec == 1234567890 && ks.st_mtim.tv_nsec == 123456789,
                     "kept.tmp mtime %lld.%09ld", (long long)ks.st_mtim.tv_sec,
                     ks.st_mtim.tv_nsec);
            char k[4];
            TL_CHECK(pread(60, k, 4, 0) == 4 && memcmp(k, "kept", 4) == 0, "kept.tmp contents");
        }
        if (r % (rounds / 40 ? rounds / 40 : 1) == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    for (int i = 0; i < 3; i++)
        printf("%s %016llx\n", files[i].name,
               (unsigned long long)tl_hash(TL_HASH_INIT, files[i].mirror, SIZE));
    return 0;
}
