/*
 * cred_threads ROUNDS WORK
 *
 * Credentials per thread, as a daemon leaves them when it drops its privileges (run as root):
 * - the main thread keeps supplementary groups {4, 27}, drops to gid 65534 and to uid 65534
 *   with a saved set-user-id of 0 (so it may become root again), keeping CAP_NET_BIND_SERVICE
 *   in its permitted and effective sets (PR_SET_KEEPCAPS across the change of ids);
 * - a worker thread takes other ids of its own (uid 1000/1001/1002, gid 2000, groups {5}).
 * Both use raw system calls, which change the calling thread only (glibc's setuid family
 * would make every thread alike): the kernel keeps credentials per thread.
 * Both compute for ROUNDS rounds of WORK steps; every 10 rounds each checks its own
 * credentials with the kernel (getresuid, getresgid, getgroups, capget: exit 99 otherwise);
 * main prints its own, and the worker's number of checks at the end. At the
 * end main becomes root again through its saved set-user-id (seteuid(0)): only a process that
 * got its saved ids back can. A resume that came back as root, or as anyone else, fails.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static unsigned long rounds, steps;

struct want {
    uid_t uid[3];
    gid_t gid[3];
    int ngroups;
    gid_t groups[4];
    unsigned long long cap_effective, cap_permitted;
};

/* Checks the calling thread's credentials; prints them when `who` is set. */
static void check(const char *who, const struct want *w, unsigned long round)
{
    uid_t r, e, s;
    gid_t gr, ge, gs;
    TL_CHECK(syscall(SYS_getresuid, &r, &e, &s) == 0, "getresuid");
    TL_CHECK(r == w->uid[0] && e == w->uid[1] && s == w->uid[2], "user ids changed");
    TL_CHECK(syscall(SYS_getresgid, &gr, &ge, &gs) == 0, "getresgid");
    TL_CHECK(gr == w->gid[0] && ge == w->gid[1] && gs == w->gid[2], "group ids changed");
    gid_t groups[16];
    int n = (int)syscall(SYS_getgroups, 16, groups);
    TL_CHECK(n == w->ngroups, "number of groups changed");
    for (int i = 0; i < n; i++)
        TL_CHECK(groups[i] == w->groups[i], "groups changed");
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    TL_CHECK(syscall(SYS_capget, &h, d) == 0, "capget");
    unsigned long long eff = d[0].effective | (unsigned long long)d[1].effective << 32;
    unsigned long long prm = d[0].permitted | (unsigned long long)d[1].permitted << 32;
    TL_CHECK(eff == w->cap_effective && prm == w->cap_permitted, "capabilities changed");
    if (who) {
        printf("%s round %lu: uid %u/%u/%u gid %u/%u/%u groups %d caps %llx/%llx\n", who,
               round, r, e, s, gr, ge, gs, n, eff, prm);
        fflush(stdout);
    }
}

static uint64_t work(uint64_t h, unsigned long i)
{
    for (unsigned long k = 0; k < steps; k++)
        h = tl_mix(h, i * 131 + k);
    return h;
}

static unsigned long worker_checks;
static pthread_barrier_t ready;

static void *worker(void *arg)
{
    (void)arg;
    gid_t g = 5;
    TL_CHECK(syscall(SYS_setgroups, 1, &g) == 0, "worker setgroups");
    TL_CHECK(syscall(SYS_setresgid, 2000, 2000, 2000) == 0, "worker setresgid");
    TL_CHECK(syscall(SYS_setresuid, 1000, 1001, 1002) == 0, "worker setresuid");
    struct want w = {{1000, 1001, 1002}, {2000, 2000, 2000}, 1, {5}, 0, 0};
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&ready);
    uint64_t h = TL_HASH_INIT;
    for (unsigned long i = 1; i <= rounds; i++) {
        h = work(h, i);
        if (i % 10 == 0) {
            check(NULL, &w, i);
            worker_checks++;
        }
    }
    return (void *)(uintptr_t)(h & 0xff);
}

int main(int argc, char **argv)
{
    rounds = tl_arg(argc, argv, 1, 200);
    steps = tl_arg(argc, argv, 2, 200000);
    TL_CHECK(getuid() == 0, "run as root");
    pthread_barrier_init(&ready, NULL, 2);
    pthread_t t;
    TL_CHECK(pthread_create(&t, NULL, worker, NULL) == 0, "pthread_create");
    /* The worker has its own ids now; main changes its own. */
    pthread_barrier_wait(&ready);
    gid_t groups[2] = {4, 27};
    TL_CHECK(syscall(SYS_setgroups, 2, groups) == 0, "setgroups");
    TL_CHECK(prctl(PR_SET_KEEPCAPS, 1) == 0, "PR_SET_KEEPCAPS");
    TL_CHECK(syscall(SYS_setresgid, 65534, 65534, 65534) == 0, "setresgid");
    TL_CHECK(syscall(SYS_setresuid, 65534, 65534, 0) == 0, "setresuid");
    TL_CHECK(prctl(PR_SET_KEEPCAPS, 0) == 0, "PR_SET_KEEPCAPS off");
    unsigned long long bind = 1ULL << CAP_NET_BIND_SERVICE;
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {{(unsigned)bind, (unsigned)bind, 0}, {0, 0, 0}};
    TL_CHECK(syscall(SYS_capset, &h, d) == 0, "capset");
    struct want w = {{65534, 65534, 0}, {65534, 65534, 65534}, 2, {4, 27}, bind, bind};
    pthread_barrier_wait(&ready);
    uint64_t hash = TL_HASH_INIT;
    for (unsigned long i = 1; i <= rounds; i++) {
        hash = work(hash, i + 7);
        if (i % 10 == 0)
            check("main", &w, i);
    }
    void *r;
    pthread_join(t, &r);
    /* Only the saved set-user-id 0 allows this. */
    TL_CHECK(syscall(SYS_setresuid, -1, 0, -1) == 0, "seteuid(0) through the saved set-user-id");
    printf("worker: %lu checks of uid 1000/1001/1002 gid 2000 groups {5}\n", worker_checks);
    printf("root again: euid %u; done %llx %lx\n", geteuid(), (unsigned long long)hash,
           (unsigned long)(uintptr_t)r);
    return 0;
}
