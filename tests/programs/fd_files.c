/*
 * fd_files ROUNDS
 *
 * A file copier and logger whose state lives in the kernel: file offsets, shared open file
 * descriptions, O_APPEND, close-on-exec, the working directory, the umask and resource limits.
 *
 * It makes a source file, then copies it ROUNDS chunks at a time (wrapping at its end) through
 * two fds that share one offset (dup / F_DUPFD_CLOEXEC) into a destination written through two
 * fds sharing another, keeps a side file of per-round hashes with pwrite/pread at scattered
 * offsets, and appends a line per round to an O_APPEND log opened twice (two descriptions).
 * Every 64 rounds it checks what the kernel says (offsets, flags, fd numbers, limits, cwd)
 * against what it expects, so a resume that loses any of it fails a TL_CHECK (exit 99). The
 * output is deterministic: progress hashes and, at the end, hashes of every file.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <unistd.h>

#define SRC_SIZE (256 * 1024 + 77)
#define SIDE_SLOTS 1024
#define DST_WRAP (1024 * 1024)

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        TL_CHECK(w > 0, "write fd %d: %s", fd, strerror(errno));
        c += w;
        n -= (size_t)w;
    }
}

/* Whether two fds share one open file description, as the kernel tells (kcmp): 1, 0, or -1
 * when it cannot tell (no kcmp). */
static int same_description(int a, int b)
{
    long r = syscall(SYS_kcmp, (long)getpid(), (long)getpid(), KCMP_FILE, (long)a, (long)b);
    return r < 0 ? -1 : r == 0;
}

/* Whether /proc/self/fdinfo/FD lists a lock line containing `what`. */
static int holds_lock(int fd, const char *what)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
    int f = open(path, O_RDONLY | O_CLOEXEC);
    TL_CHECK(f >= 0, "open %s", path);
    ssize_t n = read(f, buf, sizeof buf - 1);
    close(f);
    TL_CHECK(n > 0, "read %s", path);
    buf[n] = '\0';
    for (char *line = strstr(buf, "lock:"); line; line = strstr(line + 1, "lock:")) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        int found = strstr(line, what) != NULL;
        if (end)
            *end = '\n';
        if (found)
            return 1;
    }
    return 0;
}

static uint64_t hash_file(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    TL_CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    uint64_t h = TL_HASH_INIT;
    char buf[8192];
    off_t at = 0;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf, at);
        if (n < 0 && errno == EINTR)
            continue;
        TL_CHECK(n >= 0, "pread %s: %s", path, strerror(errno));
        if (n == 0)
            break;
        h = tl_hash(h, buf, (size_t)n);
        at += n;
    }
    close(fd);
    return h;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 60000);
    uint64_t rng = 12345;

    /* Process attributes: limits lowered (allowed without privilege), a new cwd, a umask. */
    struct rlimit nofile, core = {0, 0};
    TL_CHECK(getrlimit(RLIMIT_NOFILE, &nofile) == 0, "getrlimit");
    if (nofile.rlim_cur > 900)
        nofile.rlim_cur = 900;
    TL_CHECK(setrlimit(RLIMIT_NOFILE, &nofile) == 0, "setrlimit NOFILE");
    TL_CHECK(setrlimit(RLIMIT_CORE, &core) == 0, "setrlimit CORE");
    TL_CHECK(mkdir("work", 0755) == 0 || errno == EEXIST, "mkdir");
    TL_CHECK(chdir("work") == 0, "chdir");
    umask(027);

    /* The source, written through its own offset. */
    int src = open("src.dat", O_RDWR | O_CREAT | O_TRUNC, 0644);
    TL_CHECK(src == 3, "src fd %d", src);
    for (size_t at = 0; at < SRC_SIZE;) {
        unsigned char block[4096];
        size_t n = SRC_SIZE - at < sizeof block ? SRC_SIZE - at : sizeof block;
        for (size_t i = 0; i < n; i++)
            block[i] = (unsigned char)tl_next(&rng);
        write_all(src, block, n);
        at += n;
    }
    TL_CHECK(lseek(src, 0, SEEK_SET) == 0, "rewind");
    int src2 = fcntl(src, F_DUPFD_CLOEXEC, 40); /* same description, close-on-exec */
    int dst = open("dst.dat", O_WRONLY | O_CREAT | O_TRUNC, 0640);
    int dst2 = dup(dst);
    int log = open("log.txt", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    int log2 = open("log.txt", O_WRONLY | O_APPEND | O_CLOEXEC); /* its own description */
    int side = open("side.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int devnull = open("/dev/null", O_WRONLY);
    TL_CHECK(dup2(dst, 50) == 50 && dup3(src, 51, O_CLOEXEC) == 51, "dup2/dup3");
    int out = dup(1); /* the launch's stdout, whichever launch that is */
    TL_CHECK(out > 2, "dup(1): %s", strerror(errno));
    printf("fds src=%d src2=%d dst=%d dst2=%d log=%d log2=%d side=%d dir=%d null=%d\n", src,
           src2, dst, dst2, log, log2, side, dir, devnull);
    TL_CHECK(ftruncate(side, SIDE_SLOTS * 8) == 0, "ftruncate side");
    /* O_PATH fds: of a symbolic link itself (O_NOFOLLOW) at 60, of a regular file at 61. */
    TL_CHECK(symlink("src.dat", "link") == 0 || errno == EEXIST, "symlink");
    int opath = open("link", O_PATH | O_NOFOLLOW);
    TL_CHECK(opath >= 0 && dup2(opath, 60) == 60 && close(opath) == 0, "O_PATH link");
    opath = open("src.dat", O_PATH);
    TL_CHECK(opath >= 0 && dup2(opath, 61) == 61 && close(opath) == 0, "O_PATH file");
    /* Locks: a POSIX write lock on part of dst, flock on the log, an OFD read lock on side. */
    struct flock pl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 100, .l_len = 50};
    TL_CHECK(fcntl(dst, F_SETLK, &pl) == 0, "F_SETLK: %s", strerror(errno));
    TL_CHECK(flock(log, LOCK_EX | LOCK_NB) == 0, "flock: %s", strerror(errno));
    struct flock ol = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    TL_CHECK(fcntl(side, F_OFD_SETLK, &ol) == 0, "F_OFD_SETLK: %s", strerror(errno));

    uint64_t copied = 0, dst_pos = 0, logged = 0, hsum = TL_HASH_INIT;
    off_t src_pos = 0;
    unsigned char buf[4096];
    for (unsigned long r = 1; r <= rounds; r++) {
        size_t want = 1 + (size_t)tl_below(&rng, sizeof buf);
        int from = r % 2 ? src : src2;
        ssize_t n = read(from, buf, want);
        TL_CHECK(n >= 0, "read: %s", strerror(errno));
        if (n == 0) { /* wrap */
            TL_CHECK(src_pos == SRC_SIZE, "eof at %lld", (long long)src_pos);
            TL_CHECK(lseek(src2, 0, SEEK_SET) == 0, "lseek");
            src_pos = 0;
            n = read(from, buf, want);
            TL_CHECK(n > 0, "read after rewind");
        }
        src_pos += n;
        if (dst_pos + (uint64_t)n > DST_WRAP) { /* the destination is a ring: rewind */
            TL_CHECK(lseek(dst2, 0, SEEK_SET) == 0, "rewind dst");
            dst_pos = 0;
        }
        write_all(r % 3 ? dst : dst2, buf, (size_t)n);
        copied += (uint64_t)n;
        dst_pos += (uint64_t)n;

        uint64_t h = tl_hash(TL_HASH_INIT, buf, (size_t)n);
        off_t slot = (off_t)((r * 7919) % SIDE_SLOTS) * 8;
        uint64_t old;
        TL_CHECK(pread(side, &old, 8, slot) == 8, "pread side");
        uint64_t v = tl_mix(old, h);
        TL_CHECK(pwrite(side, &v, 8, slot) == 8, "pwrite side");
        hsum = tl_mix(hsum, v);

        char line[96];
        int len = snprintf(line, sizeof line, "round %lu n=%zd h=%016llx\n", r, n,
                           (unsigned long long)h);
        write_all(r % 5 ? log : log2, line, (size_t)len);
        logged += (uint64_t)len;

        if (r % 64 == 0 || r == rounds) {
            TL_CHECK(lseek(src, 0, SEEK_CUR) == src_pos, "src offset %lld != %lld",
                     (long long)lseek(src, 0, SEEK_CUR), (long long)src_pos);
            TL_CHECK(lseek(src2, 0, SEEK_CUR) == src_pos, "src2 offset");
            TL_CHECK(lseek(dst, 0, SEEK_CUR) == (off_t)dst_pos, "dst offset %lld != %llu",
                     (long long)lseek(dst, 0, SEEK_CUR), (unsigned long long)dst_pos);
            TL_CHECK(lseek(dst2, 0, SEEK_CUR) == (off_t)dst_pos, "dst2 offset");
            TL_CHECK(lseek(log, 0, SEEK_END) == (off_t)logged, "log size");
            TL_CHECK(fcntl(log, F_GETFL) & O_APPEND, "log lost O_APPEND");
            TL_CHECK(fcntl(log2, F_GETFL) & O_APPEND, "log2 lost O_APPEND");
            TL_CHECK((fcntl(dst, F_GETFL) & O_ACCMODE) == O_WRONLY, "dst access mode");
            TL_CHECK(fcntl(src2, F_GETFD) == FD_CLOEXEC, "src2 lost FD_CLOEXEC");
            TL_CHECK(fcntl(log2, F_GETFD) == FD_CLOEXEC, "log2 lost FD_CLOEXEC");
            TL_CHECK(fcntl(src, F_GETFD) == 0, "src gained FD_CLOEXEC");
            TL_CHECK(fcntl(devnull, F_GETFD) == 0, "devnull flags");
            TL_CHECK(fcntl(51, F_GETFD) == FD_CLOEXEC && fcntl(50, F_GETFD) == 0, "dup3 flags");
            TL_CHECK(lseek(50, 0, SEEK_CUR) == (off_t)dst_pos, "fd 50 offset");
            TL_CHECK(lseek(51, 0, SEEK_CUR) == src_pos, "fd 51 offset");
            if (same_description(src, dst) >= 0) {
                TL_CHECK(same_description(src, src2) == 1 && same_description(src, 51) == 1,
                         "src descriptions split");
                TL_CHECK(same_description(dst, dst2) == 1 && same_description(dst, 50) == 1,
                         "dst descriptions split");
                TL_CHECK(same_description(log, log2) == 0, "log descriptions merged");
                TL_CHECK(same_description(src, dst) == 0, "src and dst merged");
            }
            struct rlimit l;
            TL_CHECK(getrlimit(RLIMIT_NOFILE, &l) == 0 && l.rlim_cur == nofile.rlim_cur,
                     "RLIMIT_NOFILE changed to %llu", (unsigned long long)l.rlim_cur);
            TL_CHECK(getrlimit(RLIMIT_CORE, &l) == 0 && l.rlim_cur == 0 && l.rlim_max == 0,
                     "RLIMIT_CORE changed");
            mode_t m = umask(027);
            TL_CHECK(m == 027, "umask %o", m);
            struct stat a, b;
            TL_CHECK(fstat(dir, &a) == 0 && stat(".", &b) == 0 && a.st_ino == b.st_ino,
                     "cwd or dir fd moved");
            TL_CHECK(write(devnull, "x", 1) == 1, "/dev/null");
            struct stat ps;
            char target[16];
            TL_CHECK(fstat(60, &ps) == 0 && S_ISLNK(ps.st_mode), "O_PATH fd left its link");
            TL_CHECK(readlinkat(60, "", target, sizeof target) == 7 &&
                         memcmp(target, "src.dat", 7) == 0,
                     "O_PATH link target");
            TL_CHECK(fstat(61, &ps) == 0 && S_ISREG(ps.st_mode) && (fcntl(61, F_GETFL) & O_PATH),
                     "O_PATH file");
            TL_CHECK(holds_lock(dst, "POSIX  ADVISORY  WRITE") && holds_lock(dst, " 100 149"),
                     "POSIX lock lost");
            TL_CHECK(holds_lock(log, "FLOCK  ADVISORY  WRITE"), "flock lost");
            TL_CHECK(holds_lock(side, "OFDLCK ADVISORY  READ"), "OFD lock lost");
        }
        if (r % (rounds / 40 ? rounds / 40 : 1) == 0)
            printf("round %lu copied=%llu hsum=%016llx\n", r, (unsigned long long)copied,
                   (unsigned long long)hsum);
    }
    printf("src %016llx\n", (unsigned long long)hash_file("src.dat"));
    printf("dst %016llx copied %llu\n", (unsigned long long)hash_file("dst.dat"),
           (unsigned long long)copied);
    printf("side %016llx\n", (unsigned long long)hash_file("side.dat"));
    printf("log %016llx size %llu\n", (unsigned long long)hash_file("log.txt"),
           (unsigned long long)logged);
    struct stat st;
    TL_CHECK(stat("dst.dat", &st) == 0, "stat");
    printf("dst mode %o\n", st.st_mode & 0777);
    fflush(stdout);
    const char *last = "written through a duplicate of stdout\n";
    TL_CHECK(write(out, last, strlen(last)) == (ssize_t)strlen(last), "write dup(1): %s",
             strerror(errno));
    return 0;
}
