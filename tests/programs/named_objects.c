/*
 * named_objects NAME
 *
 * Named objects of /dev/shm across a resume that follows their loss (issue 10: what a
 * reboot does to tmpfs while an image on disk survives): a named POSIX semaphore (/NAME-sem,
 * created with 3 and taken once) and a small shm_open object (/NAME-obj, 8 KiB, a pattern
 * written through a shared mapping). zhuque_fail_now() saves the program; the test removes
 * both files, then resumes it. After it: the semaphore's value is 2 through the old handle
 * and by name, the object's bytes are there through the old mapping and through a new
 * shm_open of the name, and a post through one handle shows through the other.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define SIZE 8192

int main(int argc, char **argv)
{
    CHECK(argc > 1, "usage: named_objects NAME");
    char sem_name[128], obj_name[128];
    snprintf(sem_name, sizeof sem_name, "/%s-sem", argv[1]);
    snprintf(obj_name, sizeof obj_name, "/%s-obj", argv[1]);
    sem_unlink(sem_name);
    shm_unlink(obj_name);
    sem_t *s = sem_open(sem_name, O_CREAT | O_EXCL, 0600, 3);
    CHECK(s != SEM_FAILED, "sem_open: %s", strerror(errno));
    CHECK(sem_wait(s) == 0, "sem_wait: %s", strerror(errno));
    int fd = shm_open(obj_name, O_RDWR | O_CREAT | O_EXCL, 0640);
    CHECK(fd >= 0 && ftruncate(fd, SIZE) == 0, "shm_open: %s", strerror(errno));
    unsigned char *m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
    close(fd);
    for (int i = 0; i < SIZE; i++)
        m[i] = (unsigned char)(i * 7);

    zq_fail_now();

    int v = -1;
    CHECK(sem_getvalue(s, &v) == 0 && v == 2, "semaphore value %d", v);
    sem_t *again = sem_open(sem_name, 0);
    CHECK(again != SEM_FAILED, "sem_open by name: %s", strerror(errno));
    CHECK(sem_getvalue(again, &v) == 0 && v == 2, "by name: value %d", v);
    CHECK(sem_post(again) == 0 && sem_getvalue(s, &v) == 0 && v == 3,
          "a post by name does not show through the first handle (%d)", v);
    for (int i = 0; i < SIZE; i++)
        CHECK(m[i] == (unsigned char)(i * 7), "object byte %d through the old mapping", i);
    fd = shm_open(obj_name, O_RDWR, 0);
    CHECK(fd >= 0, "shm_open by name: %s", strerror(errno));
    unsigned char *n = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    CHECK(n != MAP_FAILED, "mmap: %s", strerror(errno));
    for (int i = 0; i < SIZE; i++)
        CHECK(n[i] == (unsigned char)(i * 7), "object byte %d by name", i);
    n[5] = 0xee;
    CHECK(m[5] == 0xee, "a store by name does not show through the old mapping");
    sem_unlink(sem_name);
    shm_unlink(obj_name);
    printf("named_objects: semaphore 3, object shared; done\n");
    return 0;
}
