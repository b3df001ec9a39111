/*
 * proc_attrs ROUNDS
 *
 * Process attributes the kernel reports, set once and checked every round against the
 * kernel's own view (issue 12, "process attributes lost"): the file mode creation mask
 * (/proc/self/status Umask), the working directory, no_new_privs (prctl and NoNewPrivs), child
 * subreaper, transparent huge pages disabled (prctl and THP_enabled where the kernel shows
 * it), the parent death signal, the OOM score adjustment (/proc/self/oom_score_adj), the
 * membarrier registration for private expedited barriers (which a barrier needs: EPERM
 * without it), 64 KiB locked with mlock (VmLck), the main thread's name (/proc/self/comm) and
 * the audit login uid (/proc/self/loginuid, set to 4321: needs CAP_AUDIT_CONTROL, which CI's
 * root has; without it the program says so and the check is off in the oracle and the
 * crash runs alike). Between checks, a little arithmetic whose hash is printed now and then.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <linux/membarrier.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static char expected_cwd[4096];
static int check_loginuid;

/* The value of "Key:" in /proc/self/status, or -1 when the kernel does not show it. */
static long status_field(const char *key, int base)
{
    FILE *f = fopen("/proc/self/status", "r");
    TL_CHECK(f != NULL, "open /proc/self/status");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, base);
            break;
        }
    fclose(f);
    return v;
}

static long file_number(const char *path)
{
    FILE *f = fopen(path, "r");
    TL_CHECK(f != NULL, "open %s", path);
    long v = 0;
    TL_CHECK(fscanf(f, "%ld", &v) == 1, "read %s", path);
    fclose(f);
    return v;
}

static void check(unsigned long round)
{
    TL_CHECK(status_field("Umask", 8) == 027, "round %lu: umask %lo", round,
             status_field("Umask", 8));
    char cwd[4096];
    TL_CHECK(getcwd(cwd, sizeof cwd) && strcmp(cwd, expected_cwd) == 0, "round %lu: cwd %s",
             round, cwd);
    TL_CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "round %lu: no_new_privs", round);
    TL_CHECK(status_field("NoNewPrivs", 10) == 1, "round %lu: NoNewPrivs", round);
    int subreaper = 0;
    TL_CHECK(prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0) == 0 && subreaper == 1,
             "round %lu: child subreaper %d", round, subreaper);
    TL_CHECK(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "round %lu: THP disable", round);
    long thp = status_field("THP_enabled", 10);
    TL_CHECK(thp == -1 || thp == 0, "round %lu: THP_enabled %ld", round, thp);
    int death = 0;
    TL_CHECK(prctl(PR_GET_PDEATHSIG, &death, 0, 0, 0) == 0 && death == SIGUSR2,
             "round %lu: parent death signal %d", round, death);
    TL_CHECK(file_number("/proc/self/oom_score_adj") == 250, "round %lu: oom_score_adj %ld",
             round, file_number("/proc/self/oom_score_adj"));
    TL_CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0,
             "round %lu: private expedited membarrier: %s", round, strerror(errno));
    TL_CHECK(status_field("VmLck", 10) == 64, "round %lu: VmLck %ld kB", round,
             status_field("VmLck", 10));
    char comm[32] = "";
    FILE *f = fopen("/proc/self/comm", "r");
    TL_CHECK(f && fgets(comm, sizeof comm, f), "read comm");
    fclose(f);
    TL_CHECK(strcmp(comm, "zq-attrs\n") == 0, "round %lu: comm %s", round, comm);
    if (check_loginuid)
        TL_CHECK(file_number("/proc/self/loginuid") == 4321, "round %lu: loginuid %ld", round,
                 file_number("/proc/self/loginuid"));
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    umask(027);
    TL_CHECK(mkdir("attrs-dir", 0755) == 0 || errno == EEXIST, "mkdir");
    TL_CHECK(chdir("attrs-dir") == 0, "chdir");
    TL_CHECK(getcwd(expected_cwd, sizeof expected_cwd) != NULL, "getcwd");
    TL_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "no_new_privs");
    TL_CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0, "subreaper");
    TL_CHECK(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0, "THP disable");
    TL_CHECK(prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0) == 0, "pdeathsig");
    TL_CHECK(prctl(PR_SET_NAME, "zq-attrs", 0, 0, 0) == 0, "name");
    TL_CHECK(syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0,
             "membarrier register: %s", strerror(errno));
    char *locked = mmap(NULL, 64 << 10, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TL_CHECK(locked != MAP_FAILED && mlock(locked, 64 << 10) == 0, "mlock: %s", strerror(errno));
    FILE *f = fopen("/proc/self/oom_score_adj", "w");
    TL_CHECK(f && fprintf(f, "250\n") > 0 && fclose(f) == 0, "oom_score_adj");
    f = fopen("/proc/self/loginuid", "w");
    check_loginuid = f && fprintf(f, "4321") > 0 && fclose(f) == 0;
    if (!check_loginuid)
        printf("loginuid cannot be set here: not checked\n");

    uint64_t h = TL_HASH_INIT, x = 1;
    for (unsigned long r = 1; r <= rounds; r++) {
        check(r);
        for (int i = 0; i < 300000; i++)
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        h = tl_mix(h, x);
        if (r % 100 == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
