/*
 * fd_mqueue ROUNDS FAIL_POINTS
 *
 * POSIX message queues across failures. Two queues, named after the working directory's
 * inode (unique per test run, the same in every launch of one run):
 * - on the first, each round main sends four messages with different priorities through a
 *   write-only descriptor and receives them through a second, read-only non-blocking one: they
 *   must come in priority order, and mq_getattr must count them;
 * - on the second, a worker thread blocks in mq_receive for a message main sends every 16th
 *   round and keeps a running sum of them, printed at the end (a thread blocked in
 *   mq_receive at a failure must get its message afterwards).
 * In FAIL_POINTS rounds spread over the run main calls zhuque_fail_now() with the round's
 * messages still queued. Output: a line every ROUNDS/8 rounds and a checksum.
 */
#define _GNU_SOURCE
#include "thrlib.h"
#include "zhuque.h"

#include <fcntl.h>
#include <mqueue.h>
#include <sys/stat.h>

static char name1[64], name2[64];
static mqd_t to_worker;
static volatile unsigned long worker_sum, worker_got;
static unsigned long batches;

static void *worker(void *arg)
{
    (void)arg;
    mqd_t q = mq_open(name2, O_RDONLY);
    TL_CHECK(q != (mqd_t)-1, "mq_open %s: %s", name2, strerror(errno));
    for (unsigned long i = 0; i < batches; i++) {
        unsigned long v;
        ssize_t n;
        while ((n = mq_receive(q, (char *)&v, sizeof v, NULL)) < 0 && errno == EINTR)
            ;
        TL_CHECK(n == (ssize_t)sizeof v, "worker mq_receive: %s", strerror(errno));
        __atomic_add_fetch(&worker_sum, v, __ATOMIC_RELAXED);
        __atomic_add_fetch(&worker_got, 1, __ATOMIC_RELEASE);
    }
    mq_close(q);
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 20000);
    unsigned long fail_points = tl_arg(argc, argv, 2, 0);
    unsigned long fail_every = fail_points ? rounds / fail_points : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct stat st;
    TL_CHECK(stat(".", &st) == 0, "stat .");
    snprintf(name1, sizeof name1, "/zq-mq-%lu-a", (unsigned long)st.st_ino);
    snprintf(name2, sizeof name2, "/zq-mq-%lu-b", (unsigned long)st.st_ino);
    mq_unlink(name1);
    mq_unlink(name2);
    struct mq_attr a1 = {.mq_maxmsg = 8, .mq_msgsize = 32};
    struct mq_attr a2 = {.mq_maxmsg = 4, .mq_msgsize = sizeof(unsigned long)};
    mqd_t out = mq_open(name1, O_WRONLY | O_CREAT | O_EXCL, 0600, &a1);
    TL_CHECK(out != (mqd_t)-1, "mq_open %s: %s", name1, strerror(errno));
    mqd_t in = mq_open(name1, O_RDONLY | O_NONBLOCK);
    TL_CHECK(in != (mqd_t)-1, "mq_open: %s", strerror(errno));
    to_worker = mq_open(name2, O_WRONLY | O_CREAT | O_EXCL, 0600, &a2);
    TL_CHECK(to_worker != (mqd_t)-1, "mq_open %s: %s", name2, strerror(errno));
    batches = rounds / 16;
    pthread_t t;
    TL_OK(pthread_create(&t, NULL, worker, NULL));

    uint64_t h = TL_HASH_INIT, seed = 7;
    unsigned long sent_to_worker = 0;
    for (unsigned long r = 0; r < rounds; r++) {
        unsigned prios[4] = {1, 7, 3, 5};
        char msg[32];
        for (int k = 0; k < 4; k++) {
            int len = snprintf(msg, sizeof msg, "r%lu p%u %llu", r, prios[k],
                               (unsigned long long)tl_below(&seed, 1000000));
            TL_CHECK(mq_send(out, msg, (size_t)len + 1, prios[k]) == 0, "mq_send: %s",
                     strerror(errno));
        }
        struct mq_attr now;
        TL_CHECK(mq_getattr(in, &now) == 0 && now.mq_curmsgs == 4 &&
                     (now.mq_flags & O_NONBLOCK),
                 "mq_getattr: %ld messages, flags %lx", (long)now.mq_curmsgs,
                 (long)now.mq_flags);
        if (fail_every && r % fail_every == fail_every / 2)
            zq_fail_now();
        unsigned last = 99;
        for (int k = 0; k < 4; k++) {
            unsigned prio;
            ssize_t n = mq_receive(in, msg, sizeof msg, &prio);
            TL_CHECK(n > 0, "mq_receive: %s", strerror(errno));
            TL_CHECK(prio < last, "priority %u after %u", prio, last);
            last = prio;
            h = tl_hash(h, msg, (size_t)n);
        }
        char spare[32];
        TL_CHECK(mq_receive(in, spare, sizeof spare, NULL) < 0 && errno == EAGAIN,
                 "an empty non-blocking queue did not say EAGAIN");
        if (r % 16 == 15 && sent_to_worker < batches) {
            unsigned long v = r * 2654435761u % 1000003;
            TL_CHECK(mq_send(to_worker, (char *)&v, sizeof v, 0) == 0, "mq_send: %s",
                     strerror(errno));
            h = tl_mix(h, v);
            sent_to_worker++;
        }
        if ((r + 1) % (rounds / 8 ? rounds / 8 : 1) == 0)
            printf("round %lu h=%016llx\n", r + 1, (unsigned long long)h);
    }
    TL_OK(pthread_join(t, NULL));
    TL_CHECK(worker_got == batches, "the worker got %lu of %lu", (unsigned long)worker_got,
             batches);
    printf("worker sum %lu\n", (unsigned long)worker_sum);
    mq_close(in);
    mq_close(out);
    mq_close(to_worker);
    mq_unlink(name1);
    mq_unlink(name2);
    printf("checksum %016llx\n", (unsigned long long)h);
    return 0;
}
