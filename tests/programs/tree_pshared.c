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
#include <sys/mman.h>
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

static int child(int which, unsigned long rounds)
{
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

    pid_t kids[2];
    for (int k = 0; k < 2; k++) {
        kids[k] = fork();
        CHECK(kids[k] >= 0, "fork: %s", strerror(errno));
        if (kids[k] == 0)
            _exit(child(k, rounds));
    }

    unsigned long every = rounds / (points + 1);
    for (unsigned long i = 1; i <= rounds; i++) {
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
