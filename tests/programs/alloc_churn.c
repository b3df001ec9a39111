/*
 * alloc_churn OPS [SEED]
 *
 * Heavy malloc/calloc/realloc/free churn: a chained hash table whose bucket array grows with
 * realloc, values that are reallocated on every update, 32 linked lists of variable-size
 * nodes, and occasional large (mmap-threshold) calloc/realloc blocks. Every value is
 * verified when it is read, so a lost or corrupted allocation is reported (exit 99) instead
 * of changing a checksum silently. stdout goes through a 16 KiB malloc'd stdio buffer.
 * Ends with a checksum of the whole structure, then frees everything.
 */
#include "testlib.h"

struct entry {
    uint64_t key;
    uint32_t version;
    uint32_t len;
    unsigned char *val;
    struct entry *next;
};

struct node {
    struct node *next;
    uint64_t v;
    uint32_t len;
    unsigned char payload[];
};

static struct entry **buckets;
static size_t nbuckets, nentries;
static struct node *lists[32];
static size_t list_len[32];

static unsigned char byte_of(uint64_t seed, uint32_t i)
{
    return (unsigned char)((seed * 0x9e3779b97f4a7c15ULL + i * 0x2545f491ULL) >> 56);
}

static uint32_t val_len(uint64_t key, uint32_t version)
{
    uint64_t s = key ^ ((uint64_t)version << 40);
    return 1 + (uint32_t)(tl_next(&s) % 600);
}

static void fill(unsigned char *p, uint32_t len, uint64_t seed)
{
    for (uint32_t i = 0; i < len; i++)
        p[i] = byte_of(seed, i);
}

static void verify(const unsigned char *p, uint32_t len, uint64_t seed, const char *what)
{
    for (uint32_t i = 0; i < len; i++)
        TL_CHECK(p[i] == byte_of(seed, i), "%s corrupt at byte %u of %u", what, i, len);
}

static uint64_t entry_seed(const struct entry *e)
{
    return e->key * 31 + e->version;
}

static size_t bucket_of(uint64_t key, size_t n)
{
    uint64_t s = key;
    return tl_next(&s) & (n - 1);
}

/* Doubles the bucket array in place with realloc, splitting each chain. */
static void grow(void)
{
    size_t old = nbuckets;
    struct entry **b = realloc(buckets, 2 * old * sizeof *b);
    TL_CHECK(b != NULL, "realloc buckets");
    memset(b + old, 0, old * sizeof *b);
    buckets = b;
    nbuckets = 2 * old;
    for (size_t i = 0; i < old; i++) {
        struct entry *e = buckets[i], *stay = NULL, *move = NULL;
        while (e) {
            struct entry *next = e->next;
            if (bucket_of(e->key, nbuckets) == i) {
                e->next = stay;
                stay = e;
            } else {
                TL_CHECK(bucket_of(e->key, nbuckets) == i + old, "rehash");
                e->next = move;
                move = e;
            }
            e = next;
        }
        buckets[i] = stay;
        buckets[i + old] = move;
    }
}

static struct entry *find(uint64_t key, struct entry ***link)
{
    struct entry **l = &buckets[bucket_of(key, nbuckets)];
    while (*l && (*l)->key != key)
        l = &(*l)->next;
    if (link)
        *link = l;
    return *l;
}

/* Inserts or updates `key`; returns a value folded into the running checksum. */
static uint64_t put(uint64_t key)
{
    struct entry *e = find(key, NULL);
    if (e) {
        verify(e->val, e->len, entry_seed(e), "value");
        e->version++;
        e->len = val_len(key, e->version);
        e->val = realloc(e->val, e->len);
        TL_CHECK(e->val != NULL, "realloc value");
        fill(e->val, e->len, entry_seed(e));
        return tl_mix(key, e->version);
    }
    e = malloc(sizeof *e);
    TL_CHECK(e != NULL, "malloc entry");
    e->key = key;
    e->version = 0;
    e->len = val_len(key, 0);
    e->val = malloc(e->len);
    TL_CHECK(e->val != NULL, "malloc value");
    fill(e->val, e->len, entry_seed(e));
    size_t b = bucket_of(key, nbuckets);
    e->next = buckets[b];
    buckets[b] = e;
    if (++nentries * 4 > nbuckets * 3)
        grow();
    return tl_mix(key, 1);
}

static uint64_t del(uint64_t key)
{
    struct entry **link;
    struct entry *e = find(key, &link);
    if (!e)
        return 7;
    verify(e->val, e->len, entry_seed(e), "value");
    *link = e->next;
    uint64_t r = tl_mix(key, e->version + 100);
    free(e->val);
    free(e);
    nentries--;
    return r;
}

static uint64_t list_push(uint64_t *rng)
{
    unsigned l = (unsigned)tl_below(rng, 32);
    uint32_t len = (uint32_t)tl_below(rng, 200);
    struct node *n = malloc(sizeof *n + len);
    TL_CHECK(n != NULL, "malloc node");
    n->v = tl_next(rng);
    n->len = len;
    fill(n->payload, len, n->v);
    n->next = lists[l];
    lists[l] = n;
    list_len[l]++;
    return n->v;
}

static uint64_t list_pop(uint64_t *rng)
{
    unsigned l = (unsigned)tl_below(rng, 32);
    struct node *n = lists[l];
    if (!n)
        return 11;
    verify(n->payload, n->len, n->v, "node");
    lists[l] = n->next;
    list_len[l]--;
    uint64_t r = n->v ^ n->len;
    free(n);
    return r;
}

/* Frees a whole list, checking every node. */
static uint64_t list_clear(unsigned l)
{
    uint64_t h = 13;
    while (lists[l]) {
        struct node *n = lists[l];
        verify(n->payload, n->len, n->v, "node");
        h = tl_mix(h, n->v);
        lists[l] = n->next;
        free(n);
    }
    list_len[l] = 0;
    return h;
}

/* A large block: calloc (must be zeroed), written, resized with realloc, checked, freed. */
static uint64_t big_block(uint64_t *rng)
{
    size_t n = (size_t)(64 + tl_below(rng, 4096)) * 1024;
    unsigned char *p = calloc(1, n);
    TL_CHECK(p != NULL, "calloc big");
    for (size_t i = 0; i < n; i += 4096)
        TL_CHECK(p[i] == 0 && p[n - 1 - i] == 0, "calloc not zeroed");
    uint64_t seed = tl_next(rng);
    for (size_t i = 0; i < n; i += 512)
        p[i] = byte_of(seed, (uint32_t)(i / 512));
    size_t m = tl_below(rng, 2) ? n * 2 : n / 3;
    p = realloc(p, m);
    TL_CHECK(p != NULL, "realloc big");
    uint64_t h = seed;
    for (size_t i = 0; i < (m < n ? m : n); i += 512) {
        TL_CHECK(p[i] == byte_of(seed, (uint32_t)(i / 512)), "big block corrupt at %zu", i);
        h = tl_mix(h, p[i]);
    }
    free(p);
    return h;
}

static uint64_t table_checksum(void)
{
    uint64_t sum = 0;
    size_t count = 0;
    for (size_t b = 0; b < nbuckets; b++)
        for (struct entry *e = buckets[b]; e; e = e->next) {
            verify(e->val, e->len, entry_seed(e), "value");
            sum += tl_hash(tl_mix(TL_HASH_INIT, e->key), e->val, e->len);
            count++;
        }
    TL_CHECK(count == nentries, "entry count %zu != %zu", count, nentries);
    return sum;
}

int main(int argc, char **argv)
{
    unsigned long ops = tl_arg(argc, argv, 1, 500000);
    uint64_t rng = tl_arg(argc, argv, 2, 7);
    unsigned long every = ops / 400 ? ops / 400 : 1;
    uint64_t keyspace = ops / 3 + 16;

    char *buf = malloc(16384);
    TL_CHECK(buf != NULL && setvbuf(stdout, buf, _IOFBF, 16384) == 0, "setvbuf");

    nbuckets = 16;
    buckets = calloc(nbuckets, sizeof *buckets);
    TL_CHECK(buckets != NULL, "calloc buckets");

    printf("alloc_churn ops=%lu seed=%llu\n", ops, (unsigned long long)rng);
    uint64_t h = TL_HASH_INIT;
    for (unsigned long i = 1; i <= ops; i++) {
        uint64_t op = tl_below(&rng, 1000);
        uint64_t r;
        if (op < 450)
            r = put(tl_below(&rng, keyspace));
        else if (op < 650)
            r = del(tl_below(&rng, keyspace));
        else if (op < 850)
            r = list_push(&rng);
        else if (op < 990)
            r = list_pop(&rng);
        else if (op < 998)
            r = list_clear((unsigned)tl_below(&rng, 32));
        else
            r = big_block(&rng);
        h = tl_mix(h, r);
        if (i % every == 0) {
            size_t nodes = 0;
            for (int l = 0; l < 32; l++)
                nodes += list_len[l];
            printf("op %lu entries=%zu buckets=%zu nodes=%zu h=%016llx\n", i, nentries,
                   nbuckets, nodes, (unsigned long long)h);
        }
    }

    uint64_t sum = table_checksum();
    printf("table entries=%zu sum=%016llx\n", nentries, (unsigned long long)sum);
    uint64_t lists_sum = 0;
    for (unsigned l = 0; l < 32; l++)
        lists_sum = tl_mix(lists_sum, list_clear(l));
    for (size_t b = 0; b < nbuckets; b++)
        while (buckets[b])
            del(buckets[b]->key);
    TL_CHECK(nentries == 0, "table not empty");
    free(buckets);
    printf("checksum %016llx\n", (unsigned long long)tl_mix(tl_mix(h, sum), lists_sum));
    return 0;
}
