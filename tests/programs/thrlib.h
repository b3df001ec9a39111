/*
 * Helpers for the multithreaded crash-test programs (on top of testlib.h): checked pthread
 * calls, thread ids, and the identity check (getpid() and gettid() unchanged across failures).
 */
#ifndef ZHUQUE_THRLIB_H
#define ZHUQUE_THRLIB_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "testlib.h"

#include <errno.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A pthread call that must succeed (they return an error number). */
#define TL_OK(call)                                                                      \
    do {                                                                                 \
        int tl_rc_ = (call);                                                             \
        TL_CHECK(tl_rc_ == 0, "%s", strerror(tl_rc_));                                   \
    } while (0)

static inline pid_t tl_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* The ids a thread had when it recorded them; tl_same_ids() checks they still hold. */
struct tl_ids {
    pid_t pid, tid;
};

static inline void tl_record_ids(struct tl_ids *ids)
{
    ids->pid = getpid();
    ids->tid = tl_gettid();
}

static inline void tl_check_ids(const struct tl_ids *ids, const char *who)
{
    pid_t pid = getpid(), tid = tl_gettid();
    TL_CHECK(pid == ids->pid && tid == ids->tid, "%s: ids changed: pid %d -> %d, tid %d -> %d",
             who, (int)ids->pid, (int)pid, (int)ids->tid, (int)tid);
}

/* Spins (yielding) until *flag == want: for the programs' own handshakes. */
static inline void tl_wait_flag(volatile int *flag, int want)
{
    while (__atomic_load_n(flag, __ATOMIC_ACQUIRE) != want)
        sched_yield();
}

#endif
