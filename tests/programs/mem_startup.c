/*
 * Memory a program starts with, written from main's first instruction: its .data and .bss,
 * static TLS, libc's stdio state. The runtime moves that memory into the pool late (before
 * the first change to the address space, a second thread, a fork, an mlock or a save:
 * memory::startup), so failures in the first milliseconds of a run land while it is still
 * where ld.so put it; every write must survive them. A sixth of the way (about
 * 5 ms in) the program locks pages of its .bss and protects one of its .data read-only and
 * back (each moves the memory first), and checks the lock holds after any resume.
 *
 *   mem_startup [ROUNDS]
 */
#include <errno.h>
#include <sys/mman.h>

#include "testlib.h"

#define PAGE 4096

static unsigned long bss_words[8192];                         /* 64 KiB of .bss */
static unsigned long data_words[1024] = {1, 2, 3, 4, 5, 6, 7}; /* .data */
static __thread unsigned long tls_words[64];                   /* static TLS */
static char lockable[3 * PAGE] __attribute__((aligned(PAGE)));
static char protectable[PAGE] __attribute__((aligned(PAGE))) = {42};

/* kB locked by this process (VmLck), read whole (testlib's /proc rule). */
static unsigned long locked_kb(void)
{
    char *buf;
    FILE *f = tl_proc_open("/proc/self/status", &buf);
    TL_CHECK(f != NULL, "status: %s", strerror(errno));
    char line[256];
    unsigned long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmLck: %lu kB", &kb) == 1)
            break;
    tl_proc_close(f, buf);
    return kb;
}

static uint64_t digest(void)
{
    uint64_t h = TL_HASH_INIT;
    h = tl_hash(h, bss_words, sizeof bss_words);
    h = tl_hash(h, data_words, sizeof data_words);
    h = tl_hash(h, tls_words, sizeof tls_words);
    h = tl_hash(h, lockable, sizeof lockable);
    return tl_hash(h, protectable, sizeof protectable);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 6000);
    uint64_t rng = 7, spin = 0;
    int locked = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        bss_words[tl_below(&rng, 8192)] += r;
        data_words[tl_below(&rng, 1024)] ^= tl_next(&rng);
        tls_words[r % 64] += r * 3;
        lockable[tl_below(&rng, sizeof lockable)]++;
        protectable[r % PAGE] = (char)r;
        for (int i = 0; i < 2000; i++) /* time passes: a few microseconds */
            spin = tl_mix(spin, (uint64_t)i);
        if (r == rounds / 6) {
            TL_CHECK(mlock(lockable, sizeof lockable) == 0, "mlock: %s", strerror(errno));
            TL_CHECK(mprotect(protectable, PAGE, PROT_READ) == 0, "mprotect: %s", strerror(errno));
            TL_CHECK(mprotect(protectable, PAGE, PROT_READ | PROT_WRITE) == 0, "mprotect back: %s",
                     strerror(errno));
            locked = 1;
        }
        if (locked)
            TL_CHECK(locked_kb() >= sizeof lockable / 1024, "VmLck %lu kB after round %lu",
                     locked_kb(), r);
        if (r % 20 == 0)
            printf("round %lu digest %016llx\n", r, (unsigned long long)digest());
    }
    printf("checksum %016llx\n", (unsigned long long)tl_mix(digest(), spin));
    return 0;
}
