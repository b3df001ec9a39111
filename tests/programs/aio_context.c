/*
 * aio_context ROUNDS FAIL_POINTS
 *
 * A kernel AIO context (io_setup, issue 12). Every round submits three requests on a file
 * (two writes of a round-stamped block, one read of a block written in an earlier round) and
 * takes only two completions, so one completed event is left in the ring each round; every
 * eighth round takes them all. The ring therefore always holds events nobody has taken yet,
 * and its head and tail go round it many times (a failure lands with the tail behind the head
 * too). After every round: the context still has the same ring (address, number of slots),
 * every event comes in submission order with the right result, object and user data, and
 * every read brought the bytes written. Buffered file I/O completes inside io_submit, so no
 * request is ever in flight at a failure and the output is the same with failures. FAIL_POINTS
 * rounds call zhuque_fail_now() right after submitting. Before, the ring came back as a plain
 * copy: the first io_submit after a resume failed with EINVAL.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define BLOCK 64
#define BLOCKS 16
#define PENDING_MAX 64

struct ring {
    unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
    struct io_event events[];
};

static struct iocb iocbs[PENDING_MAX];
static char bufs[PENDING_MAX][BLOCK];
/* Submitted and not taken yet, oldest first: the index of its iocb. */
static int pending[PENDING_MAX];
static int npending;
static int next_slot;

static void fill_block(char *b, unsigned long round, int k)
{
    for (int i = 0; i < BLOCK; i++)
        b[i] = (char)('a' + (round * 7 + k * 3 + i) % 26);
}

static void submit(aio_context_t ctx, int fd, int opcode, unsigned long round, int k, long at)
{
    int slot = next_slot++ % PENDING_MAX;
    struct iocb *cb = &iocbs[slot];
    memset(cb, 0, sizeof *cb);
    cb->aio_data = round * 10 + k;
    cb->aio_lio_opcode = opcode;
    cb->aio_fildes = fd;
    cb->aio_buf = (uint64_t)(uintptr_t)bufs[slot];
    cb->aio_nbytes = BLOCK;
    cb->aio_offset = at;
    if (opcode == IOCB_CMD_PWRITE)
        fill_block(bufs[slot], round, k);
    else
        memset(bufs[slot], 0, BLOCK);
    struct iocb *list[1] = {cb};
    long n = syscall(SYS_io_submit, ctx, 1, list);
    CHECK(n == 1, "round %lu: io_submit: %ld %s", round, n, strerror(errno));
    CHECK(npending < PENDING_MAX, "too many pending");
    pending[npending++] = slot;
}

/* Takes `want` events and checks each against the oldest pending request. */
static void take(aio_context_t ctx, int want, unsigned long round)
{
    struct io_event ev[PENDING_MAX];
    int got = 0;
    while (got < want) {
        long n = syscall(SYS_io_getevents, ctx, want - got, want - got, ev + got, NULL);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK(n > 0, "round %lu: io_getevents: %ld %s", round, n, strerror(errno));
        got += n;
    }
    for (int i = 0; i < got; i++) {
        int slot = pending[i];
        struct iocb *cb = &iocbs[slot];
        CHECK(ev[i].obj == (uint64_t)(uintptr_t)cb && ev[i].data == cb->aio_data,
              "round %lu: event %d is for %llu, expected %llu", round, i,
              (unsigned long long)ev[i].data, (unsigned long long)cb->aio_data);
        CHECK(ev[i].res == BLOCK, "round %lu: request %llu: res %lld", round,
              (unsigned long long)cb->aio_data, (long long)ev[i].res);
        if (cb->aio_lio_opcode == IOCB_CMD_PREAD) {
            /* The block at that offset was last written by its round's second write. */
            unsigned long wrote = (unsigned long)(cb->aio_offset / BLOCK);
            char expect[BLOCK];
            unsigned long r = cb->aio_data / 10 - 1;
            while (r > 0 && r % BLOCKS != wrote)
                r--;
            fill_block(expect, r, 1);
            CHECK(r == 0 || !memcmp(bufs[slot], expect, BLOCK),
                  "round %lu: read of block %lu brought other bytes", round, wrote);
        }
    }
    memmove(pending, pending + got, (npending - got) * sizeof *pending);
    npending -= got;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 600);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    int fd = open("aio-data", O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0, "open: %s", strerror(errno));
    CHECK(ftruncate(fd, BLOCK * BLOCKS) == 0, "ftruncate");
    aio_context_t ctx = 0;
    CHECK(syscall(SYS_io_setup, 32, &ctx) == 0, "io_setup: %s", strerror(errno));
    const struct ring *ring = (const struct ring *)ctx;
    const aio_context_t ctx_at_start = ctx;
    const unsigned nr = ring->nr;
    CHECK(ring->magic == 0xa10a10a1, "not an AIO ring at %#lx", (unsigned long)ctx);

    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        submit(ctx, fd, IOCB_CMD_PWRITE, r, 0, (long)((r + 5) % BLOCKS) * BLOCK);
        submit(ctx, fd, IOCB_CMD_PWRITE, r, 1, (long)(r % BLOCKS) * BLOCK);
        submit(ctx, fd, IOCB_CMD_PREAD, r, 2, (long)((r + BLOCKS - 3) % BLOCKS) * BLOCK);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now(); /* with events in the ring nobody has taken */
        CHECK(ctx == ctx_at_start && ring->nr == nr && ring->magic == 0xa10a10a1,
              "round %lu: the ring changed: ctx %#lx nr %u", r, (unsigned long)ctx, ring->nr);
        take(ctx, r % 8 == 0 ? npending : 2, r);
        if (r % 50 == 0)
            printf("round %lu: %d events waiting, head %u tail %u of %u\n", r, npending,
                   ring->head, ring->tail, ring->nr);
    }
    take(ctx, npending, rounds + 1);
    CHECK(syscall(SYS_io_destroy, ctx) == 0, "io_destroy: %s", strerror(errno));
    printf("done\n");
    return 0;
}
