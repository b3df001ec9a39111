/*
 * tree_ipc ROUNDS FAIL_POINTS
 *
 * System V IPC and POSIX message queues between two processes of a tree across failures
 * (issue 10). Each failure ends the tree's IPC namespace, as a reboot ends the machine's IPC
 * state: every object must come back with its id, key, mode and contents.
 *
 * The root creates a keyed segment (0640), a private segment it marks removed while attached
 * (IPC_RMID: it lives on as long as someone has it attached), a set of two semaphores, a
 * System V message queue and a POSIX message queue, then forks a child. Each round the root
 * writes a word into the segment and posts semaphore 0; the child waits on it, checks the
 * word and the removed segment's pattern, answers with a System V message and a POSIX one
 * and posts semaphore 1; the root waits on it and checks both messages. FAIL_POINTS rounds
 * spread over the run call zhuque_fail_now() in the root while a semaphore value and both
 * queues hold something. At the end, with messages left in both queues, the root checks
 * every property the kernel reports (key, id, mode, size, attachments, removed flag, queue
 * lengths, semaphore values) and removes everything.
 *
 * Blocking System V calls are never restarted after a signal: semop and msgrcv retry on
 * EINTR, which a failure landing in them returns after the resume (README limit).
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <mqueue.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define WORDS 16384 /* 64 KiB of unsigned */
#define B_SIZE 8192

struct text_msg {
    long type;
    char text[32];
};

static int semid, msqid;
static mqd_t mq;
static unsigned *a;
static unsigned char *b;

static void sem_add(int which, int delta)
{
    struct sembuf op = {.sem_num = which, .sem_op = delta, .sem_flg = 0};
    while (semop(semid, &op, 1) != 0)
        CHECK(errno == EINTR, "semop: %s", strerror(errno));
}

static unsigned char pattern(unsigned long i)
{
    return (unsigned char)(i * 13 + 5);
}

static int child(unsigned long rounds)
{
    for (unsigned long i = 0; i < rounds; i++) {
        sem_add(0, -1);
        CHECK(a[i % WORDS] == i * 7 + 1, "child: word %lu is %u", i, a[i % WORDS]);
        CHECK(b[i % B_SIZE] == pattern(i % B_SIZE), "child: removed segment byte %lu", i);
        struct text_msg m = {.type = 1 + (long)(i % 3)};
        snprintf(m.text, sizeof m.text, "r%lu", i);
        while (msgsnd(msqid, &m, sizeof m.text, 0) != 0)
            CHECK(errno == EINTR, "msgsnd: %s", strerror(errno));
        char t[16];
        snprintf(t, sizeof t, "c%lu", i);
        while (mq_send(mq, t, sizeof t, (unsigned)(i % 5)) != 0)
            CHECK(errno == EINTR, "mq_send: %s", strerror(errno));
        sem_add(1, 1);
    }
    sem_add(0, -1); /* the root's last word: it has checked everything with us attached */
    return 0;
}

static void receive_round(unsigned long i)
{
    struct text_msg m;
    ssize_t n;
    while ((n = msgrcv(msqid, &m, sizeof m.text, 0, 0)) < 0)
        CHECK(errno == EINTR, "msgrcv: %s", strerror(errno));
    char want[32];
    snprintf(want, sizeof want, "r%lu", i);
    CHECK(n == sizeof m.text && m.type == 1 + (long)(i % 3) && !strcmp(m.text, want),
          "round %lu: System V message '%s' of type %ld", i, m.text, m.type);
    char t[16];
    unsigned prio;
    while ((n = mq_receive(mq, t, sizeof t, &prio)) < 0)
        CHECK(errno == EINTR, "mq_receive: %s", strerror(errno));
    snprintf(want, sizeof want, "c%lu", i);
    CHECK(n == sizeof t && prio == i % 5 && !strcmp(t, want), "round %lu: POSIX message '%s'",
          i, t);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 200);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);

    char cwd[4096];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd: %s", strerror(errno));
    unsigned long long h = tl_hash(TL_HASH_INIT, cwd, strlen(cwd));
    key_t key = (key_t)((h & 0x3fff0000) | 0x100); /* one per working directory */
    char mq_name[64];
    snprintf(mq_name, sizeof mq_name, "/zq-tree-ipc-%016llx", h);

    int shm_a = shmget(key, WORDS * sizeof(unsigned), IPC_CREAT | IPC_EXCL | 0640);
    CHECK(shm_a >= 0, "shmget: %s", strerror(errno));
    a = shmat(shm_a, NULL, 0);
    CHECK(a != (void *)-1, "shmat: %s", strerror(errno));
    int shm_b = shmget(IPC_PRIVATE, B_SIZE, 0600);
    CHECK(shm_b >= 0, "shmget private: %s", strerror(errno));
    b = shmat(shm_b, NULL, 0);
    CHECK(b != (void *)-1, "shmat private: %s", strerror(errno));
    for (int i = 0; i < B_SIZE; i++)
        b[i] = pattern((unsigned long)i);
    CHECK(shmctl(shm_b, IPC_RMID, NULL) == 0, "IPC_RMID: %s", strerror(errno));
    semid = semget(key + 1, 2, IPC_CREAT | IPC_EXCL | 0600);
    CHECK(semid >= 0, "semget: %s", strerror(errno));
    msqid = msgget(key + 2, IPC_CREAT | IPC_EXCL | 0620);
    CHECK(msqid >= 0, "msgget: %s", strerror(errno));
    struct mq_attr attr = {.mq_maxmsg = 8, .mq_msgsize = 16};
    mq_unlink(mq_name);
    mq = mq_open(mq_name, O_RDWR | O_CREAT | O_EXCL, 0640, &attr);
    CHECK(mq != (mqd_t)-1, "mq_open: %s", strerror(errno));

    pid_t pid = fork();
    CHECK(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0)
        _exit(child(rounds));

    unsigned long every = rounds / (points + 1);
    for (unsigned long i = 0; i < rounds; i++) {
        a[i % WORDS] = (unsigned)(i * 7 + 1);
        sem_add(0, 1);
        if (every && i % every == every / 2 && i / every < points) {
            /* The child may be anywhere in the round: semaphore 0 posted, messages queued. */
            zq_fail_now();
        }
        sem_add(1, -1);
        receive_round(i);
        if (i % 8 == 0)
            usleep(1000);
        if (i % 50 == 0)
            printf("round %lu ok\n", i);
    }

    /* Things left in every object, checked after one more failure. */
    for (int i = 0; i < 3; i++) {
        struct text_msg m = {.type = 9 + i};
        snprintf(m.text, sizeof m.text, "left %d", i);
        CHECK(msgsnd(msqid, &m, sizeof m.text, 0) == 0, "msgsnd: %s", strerror(errno));
    }
    CHECK(mq_send(mq, "left-a", 7, 1) == 0 && mq_send(mq, "left-b", 7, 3) == 0, "mq_send: %s",
          strerror(errno));
    struct sembuf up = {.sem_num = 1, .sem_op = 5, .sem_flg = 0};
    CHECK(semop(semid, &up, 1) == 0, "semop: %s", strerror(errno));
    zq_fail_now();

    struct shmid_ds sa, sb;
    CHECK(shmctl(shm_a, IPC_STAT, &sa) == 0, "IPC_STAT a: %s", strerror(errno));
    CHECK(shmctl(shm_b, IPC_STAT, &sb) == 0, "IPC_STAT b: %s", strerror(errno));
    CHECK(shmget(key, 0, 0) == shm_a, "the keyed segment has another id now");
    printf("segment: key ok, size %zu, mode %o, attached %lu\n", sa.shm_segsz,
           sa.shm_perm.mode & 0777, (unsigned long)sa.shm_nattch);
    printf("removed segment: key %d, removed %d, size %zu, attached %lu\n", sb.shm_perm.__key,
           !!(sb.shm_perm.mode & SHM_DEST), sb.shm_segsz, (unsigned long)sb.shm_nattch);
    for (int i = 0; i < B_SIZE; i++)
        CHECK(b[i] == pattern((unsigned long)i), "removed segment byte %d", i);
    struct semid_ds ss;
    union {
        struct semid_ds *buf;
    } arg = {.buf = &ss};
    CHECK(semctl(semid, 0, IPC_STAT, arg) == 0, "semctl: %s", strerror(errno));
    printf("semaphores: %lu, values %d %d, mode %o\n", (unsigned long)ss.sem_nsems,
           semctl(semid, 0, GETVAL), semctl(semid, 1, GETVAL), ss.sem_perm.mode & 0777);
    struct msqid_ds ms;
    CHECK(msgctl(msqid, IPC_STAT, &ms) == 0, "msgctl: %s", strerror(errno));
    printf("message queue: %lu messages, %lu bytes, mode %o\n", (unsigned long)ms.msg_qnum,
           (unsigned long)ms.__msg_cbytes, ms.msg_perm.mode & 0777);
    for (int i = 0; i < 3; i++) {
        struct text_msg m;
        CHECK(msgrcv(msqid, &m, sizeof m.text, 0, IPC_NOWAIT) == sizeof m.text, "msgrcv: %s",
              strerror(errno));
        printf("  type %ld: %s\n", m.type, m.text);
    }
    struct mq_attr now;
    CHECK(mq_getattr(mq, &now) == 0, "mq_getattr: %s", strerror(errno));
    printf("POSIX queue: %ld messages of at most %ld bytes (capacity %ld)\n", now.mq_curmsgs,
           now.mq_msgsize, now.mq_maxmsg);
    for (int i = 0; i < 2; i++) {
        char t[16];
        unsigned prio;
        CHECK(mq_receive(mq, t, sizeof t, &prio) == 7, "mq_receive: %s", strerror(errno));
        printf("  priority %u: %s\n", prio, t);
    }

    sem_add(0, 1);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid, "waitpid: %s", strerror(errno));
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
    CHECK(shmctl(shm_a, IPC_RMID, NULL) == 0 && semctl(semid, 0, IPC_RMID) == 0 &&
              msgctl(msqid, IPC_RMID, NULL) == 0 && mq_unlink(mq_name) == 0,
          "cleanup: %s", strerror(errno));
    printf("tree_ipc: done\n");
    return 0;
}
