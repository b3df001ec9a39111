/*
 * fd_seqpacket ROUNDS
 *
 * A SOCK_SEQPACKET socketpair (issue 12: a program holding one could not be saved at all, the
 * save spinning on a queue that reads 0 for ever). One end has shut down its sending side
 * from the start, so the other reads end-of-file whenever its queue is empty; through it go
 * messages of varying length, zero-length ones included, several queued at a time. Each
 * round sends a few, leaves some queued across the next round, and checks every message
 * (length, content, order) and the end-of-file after the last.
 */
#define _GNU_SOURCE
#include "testlib.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

static void put(int fd, uint64_t id, size_t len)
{
    char m[64];
    for (size_t i = 0; i < len; i++)
        m[i] = (char)('a' + (id + i) % 26);
    TL_CHECK(send(fd, m, len, 0) == (ssize_t)len, "send %zu", len);
}

static void get(int fd, uint64_t id, size_t len, uint64_t *h)
{
    char m[64];
    ssize_t n = recv(fd, m, sizeof m, MSG_DONTWAIT);
    TL_CHECK(n == (ssize_t)len, "message %llu: %zd bytes, not %zu", (unsigned long long)id, n,
             len);
    for (size_t i = 0; i < len; i++)
        TL_CHECK(m[i] == (char)('a' + (id + i) % 26), "message %llu byte %zu",
                 (unsigned long long)id, i);
    *h = tl_hash(*h, m, len);
}

int main(int argc, char **argv)
{
    unsigned long rounds = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    int sv[2];
    TL_CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0, "socketpair");
    /* sv[1] sends nothing from now on: sv[0] reads EOF once its queue is empty. */
    TL_CHECK(shutdown(sv[1], SHUT_WR) == 0, "shutdown");
    uint64_t seed = 7, h = TL_HASH_INIT, sent = 0, got = 0;
    size_t lens[8];
    for (unsigned long r = 1; r <= rounds; r++) {
        int k = 1 + (int)tl_below(&seed, 4);
        for (int i = 0; i < k; i++) {
            size_t len = tl_below(&seed, 4) == 0 ? 0 : tl_below(&seed, 64);
            lens[sent % 8] = len;
            put(sv[0], sent++, len);
        }
        /* Leave up to three messages queued for the next round. */
        uint64_t keep = tl_below(&seed, 4);
        while (sent - got > keep) {
            get(sv[1], got, lens[got % 8], &h);
            got++;
        }
        char x;
        ssize_t n = recv(sv[0], &x, 1, MSG_DONTWAIT);
        TL_CHECK(n == 0, "round %lu: sv[0] reads %zd, not end-of-file (errno %d)", r, n, errno);
        if (r % 5000 == 0)
            printf("round %lu sent %llu got %llu h=%016llx\n", r, (unsigned long long)sent,
                   (unsigned long long)got, (unsigned long long)h);
    }
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
