/*
 * own_ipc_ns
 *
 * A process of a tree that makes an IPC namespace of its own (unshare(CLONE_NEWIPC)) and a
 * System V segment in it, saved by zhuque_fail_now(): the tree's init keeps only the
 * tree's namespace, so the segment's memory must come back as shared memory of the image
 * (with one warning), not be attached by an id that names nothing at the resume.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <sched.h>
#include <sys/shm.h>

int main(void)
{
    TL_CHECK(unshare(CLONE_NEWIPC) == 0, "unshare (needs CAP_SYS_ADMIN): %s", strerror(errno));
    int id = shmget(IPC_PRIVATE, 8192, 0600);
    TL_CHECK(id >= 0, "shmget: %s", strerror(errno));
    char *p = shmat(id, NULL, 0);
    TL_CHECK(p != (void *)-1, "shmat: %s", strerror(errno));
    strcpy(p, "kept through the failure");
    strcpy(p + 4096, "second page too");
    zq_fail_now();
    printf("%s, %s\n", p, p + 4096);
    return 0;
}
