/*
 * mem_paths: the memory paths issue 14 measures, each timed inside the process (so the
 * runtime's start and exit do not count) and printed as "NAME\tNS_PER_OP".
 *
 *   mem_paths cycle PAGES ROUNDS   map PAGES anonymous pages, write each once, unmap; per round
 *   mem_paths touch MIB            first write of every page of a fresh MIB mapping; per page
 *   mem_paths free MIB             munmap of MIB written anonymous memory; per call
 *   mem_paths private MIB FILE     a writable MAP_PRIVATE mapping of a MIB file (created
 *                                  first): map + write one page (per call), then reading
 *                                  every page of a fresh such mapping (per page)
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

static uint64_t now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void *map_anon(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

static void report(const char *name, uint64_t ns, uint64_t ops)
{
    printf("%s\t%.1f\n", name, (double)ns / (double)ops);
}

static int cycle(size_t pages, unsigned long rounds)
{
    size_t len = pages * PAGE;
    volatile uint64_t sum = 0;
    uint64_t t0 = now();
    for (unsigned long r = 0; r < rounds; r++) {
        unsigned char *p = map_anon(len);
        for (size_t i = 0; i < len; i += PAGE)
            p[i] = (unsigned char)(r + i);
        sum += p[len - PAGE];
        munmap(p, len);
    }
    char name[64];
    snprintf(name, sizeof name, "cycle %zu KiB", len / 1024);
    report(name, now() - t0, rounds);
    return sum == 12345 ? 2 : 0;
}

static int touch(size_t mib)
{
    size_t len = mib << 20;
    unsigned char *p = map_anon(len);
    uint64_t t0 = now();
    for (size_t i = 0; i < len; i += PAGE)
        p[i] = 1;
    report("first touch", now() - t0, len / PAGE);
    return 0;
}

static int free_memory(size_t mib)
{
    size_t len = mib << 20;
    unsigned char *p = map_anon(len);
    for (size_t i = 0; i < len; i += PAGE)
        p[i] = 1;
    uint64_t t0 = now();
    munmap(p, len);
    report("free", now() - t0, 1);
    return 0;
}

static unsigned char *map_private(const char *path, size_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        exit(1);
    }
    unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
        perror("mmap file");
        exit(1);
    }
    close(fd);
    return p;
}

static int private_file(size_t mib, const char *path)
{
    size_t len = mib << 20;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    static unsigned char buf[1 << 20];
    memset(buf, 7, sizeof buf);
    for (size_t i = 0; i < mib; i++)
        if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) {
            perror(path);
            return 1;
        }
    close(fd);
    uint64_t t0 = 0;
    enum { MAPS = 20 };
    /* One untimed round first: the steady state is measured, not what the first large munmap
     * sets going once (under zhuque, the start of the coordinator thread, which punches the
     * pool's holes: counted in the 20 calls, it added ~45 µs to each). */
    for (int i = -1; i < MAPS; i++) {
        if (i == 0)
            t0 = now();
        unsigned char *p = map_private(path, len);
        p[len / 2] = 1;
        munmap(p, len);
    }
    report("private file: map + write one page", now() - t0, MAPS);
    unsigned char *p = map_private(path, len);
    volatile uint64_t sum = 0;
    t0 = now();
    for (size_t i = 0; i < len; i += PAGE)
        sum += p[i];
    report("private file: read every page", now() - t0, len / PAGE);
    munmap(p, len);
    unlink(path);
    return sum == 1 ? 2 : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && !strcmp(argv[1], "cycle"))
        return cycle(strtoul(argv[2], 0, 10), strtoul(argv[3], 0, 10));
    if (argc >= 3 && !strcmp(argv[1], "touch"))
        return touch(strtoul(argv[2], 0, 10));
    if (argc >= 3 && !strcmp(argv[1], "free"))
        return free_memory(strtoul(argv[2], 0, 10));
    if (argc >= 4 && !strcmp(argv[1], "private"))
        return private_file(strtoul(argv[2], 0, 10), argv[3]);
    fprintf(stderr, "usage: mem_paths cycle PAGES ROUNDS | touch MIB | free MIB | private MIB FILE\n");
    return 2;
}
