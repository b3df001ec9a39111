/*
 * fd_protect ROUNDS
 *
 * A program that treats every fd number as its own, as daemons do: it closes everything above
 * 2 (closefrom, close_range, and close() of every fd /proc/self/fd lists), then puts a file of
 * its own on the 100 highest numbers its RLIMIT_NOFILE allows and on the 100 below 8192 with
 * dup2/dup3 (where the runtime keeps its own fds: at the top of the limit, or under 8192 when
 * the limit is higher, sys::RUNTIME_FD_CEILING), and works on them: each round writes a record
 * through one of them and checks that every one of them still is its file. The runtime must
 * keep working (failures are saved and resumed) without the program ever seeing a foreign fd or
 * losing one of its own.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define HIGH 100
/* The runtime's fds stay below this when the limit is higher (sys::RUNTIME_FD_CEILING). */
#define CEILING 8192

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 30000);
    struct rlimit l;
    TL_CHECK(getrlimit(RLIMIT_NOFILE, &l) == 0, "getrlimit");
    int top = l.rlim_cur > 1 << 20 ? 1 << 20 : (int)l.rlim_cur;
    /* The numbers the program takes: the top HIGH of its limit, and the HIGH under CEILING. */
    int nums[2 * HIGH], n_nums = 0;
    for (int n = top - HIGH; n < top; n++)
        nums[n_nums++] = n;
    int low_top = top < CEILING ? top : CEILING;
    for (int n = low_top - HIGH; n < low_top && low_top != top; n++)
        if (n < top - HIGH)
            nums[n_nums++] = n;

    closefrom(3);
    close_range(3, ~0U, 0);
    DIR *d = opendir("/proc/self/fd");
    TL_CHECK(d != NULL, "opendir");
    int fds[4096], nfds = 0;
    struct dirent *e;
    while ((e = readdir(d)) && nfds < 4096) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd > 2 && fd != dirfd(d))
            fds[nfds++] = fd;
    }
    closedir(d);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);

    int f = open("records.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    TL_CHECK(f == 3, "the lowest free fd is %d, not 3", f);
    struct stat want;
    TL_CHECK(fstat(f, &want) == 0, "fstat");
    for (int i = 0; i < n_nums; i++) {
        int n = nums[i];
        int r = n % 2 ? dup2(f, n) : dup3(f, n, O_CLOEXEC);
        TL_CHECK(r == n, "dup onto %d: %s", n, strerror(errno));
    }
    int g = open("other.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    TL_CHECK(g == 4, "the next fd is %d, not 4", g);
    printf("fds: records on 3 and %d high numbers, other on 4\n", n_nums);

    uint64_t rng = 5, h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        int n = nums[tl_below(&rng, (uint64_t)n_nums)];
        uint64_t rec[2] = {r, tl_next(&rng)};
        TL_CHECK(write(n, rec, sizeof rec) == sizeof rec, "write fd %d: %s", n, strerror(errno));
        TL_CHECK(pwrite(g, rec, sizeof rec, (off_t)((r % 512) * sizeof rec)) == sizeof rec,
                 "pwrite");
        h = tl_mix(h, rec[1]);
        if (r % 256 == 0 || r == rounds) {
            for (int i = 0; i < n_nums; i++) {
                int k = nums[i];
                struct stat st;
                TL_CHECK(fstat(k, &st) == 0 && st.st_ino == want.st_ino && st.st_dev == want.st_dev,
                         "fd %d is no longer records.dat", k);
                TL_CHECK(fcntl(k, F_GETFD) == (k % 2 ? 0 : FD_CLOEXEC), "fd %d flags", k);
            }
            TL_CHECK(lseek(3, 0, SEEK_CUR) == (off_t)(r * sizeof rec), "shared offset");
            int probe = open("/dev/null", O_RDONLY);
            TL_CHECK(probe == 5, "a new fd is %d, not 5", probe);
            close(probe);
        }
        if (r % (rounds / 30 ? rounds / 30 : 1) == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    return 0;
}
