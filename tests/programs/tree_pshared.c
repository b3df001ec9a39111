/*
 * tree_pshared ROUNDS FAIL_POINTS
 *
 * Process-shared synchronization in shared anonymous memory, with waiters in several
 * processes across failures (issue 10): a robust mutex, a condition variable, a barrier and
 * an unnamed semaphore, all PTHREAD_PROCESS_SHARED, used by the root and two forked children.
 * Each round all three meet at the barrier; each adds to a counter under the mutex; child 1
 * waits on the condition variable until the root has published the round, child 2 posts the
 * semaphore that the root waits on. FAIL_POINTS rounds call zhuque_fail_now() in the root while
 * the children wait (one at the condition variable, one at the barrier or semaphore).
 *
 * A memfd is mapped by all three and its fd kept: each round the root writes a word through
 * the fd that child 2 reads through its mapping, and child 2 writes one through its mapping
 * that the root reads through the fd (one object, not an fd's copy and a mapping's).
 *
 * Then a shared object's storage is its own: the root truncates a second shared anonymous
 * mapping through its /proc/self/map_files fd to one page and checks that only that object
 * changed (its size, its first page intact; the synchronization memory and the heap untouched).
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

struct shared {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    pthread_barrier_t barrier;
    sem_t sem;
    unsigned long published; /* the round the root published, under the mutex */
    unsigned long counter;   /* 3 per round */
    unsigned long child_sum[2];
};

static struct shared *sh;
static int mfd;                 /* the memfd, kept open by every process */
static unsigned long *mapped;   /* its mapping: 1024 words */

static void lock(void)
{
    int r = pthread_mutex_lock(&sh->mutex);
    CHECK(r == 0, "pthread_mutex_lock: %s", strerror(r));
}

static void unlock(void)
{
    int r = pthread_mutex_unlock(&sh->mutex);
    CHECK(r == 0, "pthread_mutex_unlock: %s", strerror(r));
}

static void meet(void)
{
    int r = pthread_barrier_wait(&sh->barrier);
    CHECK(r == 0 || r == PTHREAD_BARRIER_SERIAL_THREAD, "pthread_barrier_wait: %s", strerror(r));
}

/* A child that fails ends the run at once (the others would wait at the barrier forever). */
static void on_child(int sig)
{
    (void)sig;
    siginfo_t info = {0};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid &&
        (info.si_code != CLD_EXITED || info.si_status != 0)) {
        static const char m[] = "tree_pshared: a child failed\n";
        (void)!write(2, m, sizeof m - 1);
        _exit(1);
    }
}

static int child(int which, unsigned long rounds)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (unsigned long i = 1; i <= rounds; i++) {
        meet();
        lock();
        sh->counter++;
        if (which == 0) {
            while (sh->published < i)
                pthread_cond_wait(&sh->cond, &sh->mutex);
            sh->child_sum[0] += sh->published;
        } else {
            sh->child_sum[1] += i;
        }
        unlock();
        if (which == 1) {
            CHECK(mapped[i % 512] == i * 3, "child: memfd word %lu is %lu through the mapping",
                  i, mapped[i % 512]);
            mapped[512 + i % 512] = i * 5;
        }
        if (which == 1)
            while (sem_post(&sh->sem) != 0)
                CHECK(errno == EINTR, "sem_post: %s", strerror(errno));
    }
    return 0;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 300);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);

    sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(sh != MAP_FAILED, "mmap: %s", strerror(errno));
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    CHECK(pthread_mutex_init(&sh->mutex, &ma) == 0, "pthread_mutex_init");
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
    CHECK(pthread_cond_init(&sh->cond, &ca) == 0, "pthread_cond_init");
    pthread_barrierattr_t ba;
    pthread_barrierattr_init(&ba);
    pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
    CHECK(pthread_barrier_init(&sh->barrier, &ba, 3) == 0, "pthread_barrier_init");
    CHECK(sem_init(&sh->sem, 1, 0) == 0, "sem_init: %s", strerror(errno));

    mfd = memfd_create("zq-pshared", MFD_CLOEXEC);
    CHECK(mfd >= 0 && ftruncate(mfd, 1024 * sizeof(unsigned long)) == 0, "memfd: %s",
          strerror(errno));
    mapped = mmap(NULL, 1024 * sizeof(unsigned long), PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    CHECK(mapped != MAP_FAILED, "mmap memfd: %s", strerror(errno));

    struct sigaction sa = {.sa_handler = on_child, .sa_flags = SA_RESTART};
    sigaction(SIGCHLD, &sa, NULL);
    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        CHECK(kids[k] >= 0, "fork: %s", strerror(errno));
        if (kids[k] == 0)
            _exit(child(k, rounds));
    }

    unsigned long every = rounds / (points + 1);
    for (unsigned long i = 1; i <= rounds; i++) {
        unsigned long w = i * 3;
        CHECK(pwrite(mfd, &w, sizeof w, (off_t)(i % 512) * sizeof w) == sizeof w, "pwrite: %s",
              strerror(errno));
        meet();
        lock();
        sh->counter++;
        sh->published = i;
        pthread_cond_broadcast(&sh->cond);
        unlock();
        if (every && i % every == every / 2 && i / every < points + 1)
            zq_fail_now(); /* child 1 at the mutex or done, child 2 at the semaphore or barrier */
        while (sem_wait(&sh->sem) != 0)
            CHECK(errno == EINTR, "sem_wait: %s", strerror(errno));
        CHECK(pread(mfd, &w, sizeof w, (off_t)(512 + i % 512) * sizeof w) == sizeof w &&
                  w == i * 5,
              "round %lu: the memfd holds %lu where child 2 mapped its word", i, w);
        if (i % 8 == 0)
            usleep(500);
        if (i % 100 == 0)
            printf("round %lu\n", i);
    }
    for (int k = 0; k < 2; k++) {
        int status;
        CHECK(waitpid(kids[k], &status, 0) == kids[k], "waitpid: %s", strerror(errno));
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child %d status %#x", k, status);
    }
    unsigned long want = rounds * (rounds + 1) / 2;
    CHECK(sh->counter == 3 * rounds, "counter %lu", sh->counter);
    CHECK(sh->child_sum[0] >= want && sh->child_sum[1] == want, "child sums %lu %lu",
          sh->child_sum[0], sh->child_sum[1]);
    printf("synchronization: counter %lu, sums ok\n", sh->counter);

    /* A second shared object, truncated through its map_files fd. */
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *t = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
                            -1, 0);
    CHECK(t != MAP_FAILED, "mmap: %s", strerror(errno));
    memset(t, 0x5a, 2 * page);
    char *heap = malloc(1 << 20);
    memset(heap, 0x33, 1 << 20);
    zq_fail_now();
    char path[128];
    snprintf(path, sizeof path, "/proc/self/map_files/%lx-%lx", (unsigned long)t,
             (unsigned long)(t + 2 * page));
    int fd = open(path, O_RDWR);
    CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
    CHECK(ftruncate(fd, page) == 0, "ftruncate: %s", strerror(errno));
    struct stat st;
    CHECK(fstat(fd, &st) == 0 && st.st_size == page, "the object is %lld bytes",
          (long long)st.st_size);
    for (long i = 0; i < page; i++)
        CHECK(t[i] == 0x5a, "truncated object byte %ld", i);
    for (int i = 0; i < 1 << 20; i++)
        CHECK(heap[i] == 0x33, "heap byte %d", i);
    lock();
    sh->counter++;
    unlock();
    close(fd);
    printf("map_files truncation: one page left of the object, counter %lu, heap intact\n",
           sh->counter);
    printf("tree_pshared: done\n");
    return 0;
}
