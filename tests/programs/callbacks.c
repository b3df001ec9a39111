/*
 * callbacks ROUNDS [N]
 *
 * Uses, after any resume, state that glibc protects with per-process secrets held in the
 * thread control block: jmp_bufs (setjmp/sigsetjmp mangle the stack pointer and return
 * address with the pointer guard), atexit registrations (function pointers mangled the same
 * way) and the stack-protector canary (compile with -fstack-protector-strong: every
 * function with a local array checks it on return, including functions entered before a
 * failure and returning after it). A resumed process with a different pointer guard or
 * canary crashes or aborts here instead of printing the oracle's output.
 *
 * Each round sorts N records with qsort and one of several comparators called through a
 * function-pointer table, checks the order, looks records up with bsearch, and every few
 * rounds leaves a deep recursion with longjmp/siglongjmp to a jmp_buf set up before the
 * loop. Ends with exit(5) from main: the atexit handlers print the last lines (through
 * stdout's buffer, flushed by exit).
 */
#include "testlib.h"

#include <setjmp.h>
#include <signal.h>

struct rec {
    uint64_t key;
    uint32_t group;
    char name[12];
};

typedef int (*cmp_fn)(const void *, const void *);

static int by_key(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key;
}

static int by_key_desc(const void *a, const void *b)
{
    return by_key(b, a);
}

static int by_group_name(const void *a, const void *b)
{
    const struct rec *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    int c = strcmp(x->name, y->name);
    return c ? c : by_key(a, b);
}

static const struct {
    const char *name;
    cmp_fn cmp;
} comparators[] = {
    {"key", by_key},
    {"key_desc", by_key_desc},
    {"group_name", by_group_name},
};

static jmp_buf restart;
static sigjmp_buf sig_restart;
static volatile unsigned long jumps, sig_jumps;
static uint64_t total = TL_HASH_INIT;

static void at_exit_first(void)
{
    printf("atexit first-registered: total=%016llx\n", (unsigned long long)total);
}

static void at_exit_second(void)
{
    printf("atexit second-registered: jumps=%lu sig_jumps=%lu\n", jumps, sig_jumps);
}

/* Recursion with a protected local array in every frame; leaves through longjmp. */
static uint64_t dive(unsigned depth, uint64_t seed, int use_sig)
{
    char buf[64];
    snprintf(buf, sizeof buf, "depth %u seed %llu", depth, (unsigned long long)seed);
    uint64_t h = tl_hash(seed, buf, strlen(buf));
    if (depth == 0) {
        total = tl_mix(total, h);
        if (use_sig)
            siglongjmp(sig_restart, 1);
        longjmp(restart, 1);
    }
    return dive(depth - 1, h, use_sig) ^ (uint64_t)buf[0];
}

/* One round: fill, sort with a comparator from the table, verify, look up. */
static uint64_t round_work(struct rec *recs, size_t n, uint64_t *rng, unsigned long r)
{
    char label[32];
    for (size_t i = 0; i < n; i++) {
        recs[i].key = tl_next(rng);
        recs[i].group = (uint32_t)tl_below(rng, 16);
        snprintf(recs[i].name, sizeof recs[i].name, "n%08llx",
                 (unsigned long long)tl_below(rng, 1u << 30));
    }
    size_t which = r % (sizeof comparators / sizeof comparators[0]);
    cmp_fn cmp = comparators[which].cmp;
    qsort(recs, n, sizeof *recs, cmp);
    uint64_t h = tl_hash(TL_HASH_INIT, comparators[which].name, strlen(comparators[which].name));
    for (size_t i = 1; i < n; i++)
        TL_CHECK(cmp(&recs[i - 1], &recs[i]) <= 0, "round %lu not sorted at %zu", r, i);
    for (size_t i = 0; i < n; i += 97) {
        struct rec *found = bsearch(&recs[i], recs, n, sizeof *recs, cmp);
        TL_CHECK(found && cmp(found, &recs[i]) == 0, "bsearch round %lu", r);
        h = tl_mix(h, found->key);
    }
    snprintf(label, sizeof label, "round %lu", r);
    return tl_hash(h, label, strlen(label));
}

/* The loop lives in its own frame (with a protected array) that is entered before any
 * failure and returns after the last one. */
static uint64_t run(unsigned long rounds, size_t n)
{
    char tag[16] = "callbacks";
    static struct rec *recs;
    static uint64_t rng = 5;
    static unsigned long r;

    recs = malloc(n * sizeof *recs);
    TL_CHECK(recs != NULL, "malloc");
    r = 0;
    if (setjmp(restart))
        printf("longjmp back at round %lu (jumps=%lu)\n", r, ++jumps);
    if (sigsetjmp(sig_restart, 1))
        printf("siglongjmp back at round %lu (sig_jumps=%lu)\n", r, ++sig_jumps);
    while (++r <= rounds) {
        total = tl_mix(total, round_work(recs, n, &rng, r));
        printf("round %lu total=%016llx\n", r, (unsigned long long)total);
        if (r % 7 == 0)
            dive(20 + (unsigned)(r % 13), total, (r / 7) % 2);
    }
    free(recs);
    return tl_hash(total, tag, strlen(tag));
}

int main(int argc, char **argv)
{
    char banner[48];
    unsigned long rounds = tl_arg(argc, argv, 1, 400);
    size_t n = tl_arg(argc, argv, 2, 5000);

    TL_CHECK(atexit(at_exit_first) == 0 && atexit(at_exit_second) == 0, "atexit");
    snprintf(banner, sizeof banner, "callbacks rounds=%lu n=%zu", rounds, n);
    puts(banner);
    uint64_t h = run(rounds, n);
    printf("checksum %016llx\n", (unsigned long long)h);
    printf("%s done\n", banner);
    exit(5);
}
