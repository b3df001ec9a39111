/*
 * Helpers shared by the crash-test programs: a deterministic PRNG, a checksum and argument
 * parsing. Every program's stdout must be the same in every run (no addresses, times or
 * pids), so that a run interrupted by failures can be compared with an uninterrupted one.
 */
#ifndef ZHUQUE_TESTLIB_H
#define ZHUQUE_TESTLIB_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "zhuque.h"

/* splitmix64: tiny, good enough, and the state is one word. */
static inline uint64_t tl_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform-ish value in [0, n). */
static inline uint64_t tl_below(uint64_t *state, uint64_t n)
{
    return n ? tl_next(state) % n : 0;
}

/* FNV-1a over bytes, chained through `h`. */
static inline uint64_t tl_hash(uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#define TL_HASH_INIT 0xcbf29ce484222325ULL

/* Mixes one word into `h`. */
static inline uint64_t tl_mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    return h;
}

/* argv[i] as an unsigned number, `dflt` when absent; exits 2 on garbage. */
static inline unsigned long tl_arg(int argc, char **argv, int i, unsigned long dflt)
{
    if (argc <= i)
        return dflt;
    char *end;
    unsigned long v = strtoul(argv[i], &end, 0);
    if (*argv[i] == '\0' || *end != '\0') {
        fprintf(stderr, "%s: bad argument %d: %s\n", argv[0], i, argv[i]);
        exit(2);
    }
    return v;
}

/*
 * Opens a /proc file for reading as a stream over its whole text, read while no failure
 * came.
 *
 * The kernel generates such a file as it is read, a page of records per read(), and keeps
 * its place by record. A resume reopens the file at the same *byte* offset of text generated
 * afresh for the resumed process (README, limits): after a failure between two reads, the
 * next read may start inside another line than the one the last read ended in. A text read
 * across a failure (zhuque_failures() changed) is read again. Close with tl_proc_close().
 */
static inline FILE *tl_proc_open(const char *path, char **buf)
{
    for (;;) {
        unsigned long failures = zq_failures();
        FILE *f = fopen(path, "r");
        if (!f)
            return NULL;
        size_t size = 1 << 16, used = 0;
        *buf = malloc(size);
        ssize_t n = 0;
        while (*buf && (n = read(fileno(f), *buf + used, size - used)) > 0) {
            used += (size_t)n;
            if (used == size) {
                char *bigger = realloc(*buf, size *= 2);
                if (!bigger)
                    free(*buf);
                *buf = bigger;
            }
        }
        fclose(f);
        if (!*buf || n < 0) {
            free(*buf);
            return NULL;
        }
        if (zq_failures() != failures) {
            free(*buf);
            continue;
        }
        if (used == 0) {
            free(*buf);
            *buf = NULL;
            return fopen("/dev/null", "r");
        }
        return fmemopen(*buf, used, "r");
    }
}

static inline void tl_proc_close(FILE *f, char *buf)
{
    fclose(f);
    free(buf);
}

/* Reports a broken invariant and exits 99: a wrong result must never look like success. */
#define TL_CHECK(cond, ...)                                                              \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fflush(stdout);                                                              \
            fprintf(stderr, "CHECK FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond);       \
            fprintf(stderr, __VA_ARGS__);                                                \
            fprintf(stderr, "\n");                                                       \
            exit(99);                                                                    \
        }                                                                                \
    } while (0)

/* `a` set to the abstract Unix socket address `name`; returns its length. */
static inline socklen_t tl_abstract_address(struct sockaddr_un *a, const char *name)
{
    memset(a, 0, sizeof *a);
    a->sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(a->sun_path + 1, name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
}

/* A Unix datagram socket bound to `a` (ends the program if it cannot be). */
static inline int tl_bound_datagram_socket(const struct sockaddr_un *a, socklen_t len)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    TL_CHECK(fd >= 0 && bind(fd, (const struct sockaddr *)a, len) == 0, "bind: %s",
             strerror(errno));
    return fd;
}

#endif
