/*
 * tree_fork HEAP_MIB ITERS [WRITE_ITERS]
 *
 * The fork benchmark's program: allocates HEAP_MIB MiB with malloc and writes every page of
 * it (touched heap), then times ITERS iterations of each operation after two untimed ones:
 *   fork+exec+wait  fork(); the child execs /bin/true; the parent waitpid()s it;
 *   fork+wait       fork(); the child _exit(0)s at once; the parent waitpid()s it;
 * and WRITE_ITERS iterations (default ITERS) of two more, which show what a fork costs a
 * parent that goes on using its memory (a fork may defer work to the parent's next stores):
 *   write heap            one byte stored into every page of the heap, no fork;
 *   fork+wait+write heap  fork+wait, then the same stores.
 * Prints one line per operation, "OPERATION<TAB>ms per iteration".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void once(int exec)
{
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid == 0) {
        if (exec) {
            execl("/bin/true", "true", (char *)NULL);
            _exit(127);
        }
        _exit(0);
    }
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "tree_fork: child %d ended with status %#x\n", pid, status);
        exit(1);
    }
}

static char *heap;
static size_t bytes;
static long page;

static void write_heap(int round)
{
    for (size_t off = 0; off < bytes; off += page)
        heap[off] = (char)(off + round) | 1;
}

/* mode: 0 fork+wait, 1 fork+exec+wait, 2 write heap, 3 fork+wait+write heap */
static void step(int mode, int round)
{
    if (mode != 2)
        once(mode == 1);
    if (mode >= 2)
        write_heap(round);
}

static void timed(const char *name, int mode, long iters)
{
    step(mode, 0);
    step(mode, 1);
    double t0 = now_ms();
    for (long i = 0; i < iters; i++)
        step(mode, (int)i);
    printf("%s\t%.3f\n", name, (now_ms() - t0) / iters);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: tree_fork HEAP_MIB ITERS [WRITE_ITERS]\n");
        return 2;
    }
    bytes = (size_t)atol(argv[1]) << 20;
    long iters = atol(argv[2]);
    long write_iters = argc == 4 ? atol(argv[3]) : iters;
    heap = malloc(bytes);
    if (!heap) {
        perror("malloc");
        return 1;
    }
    page = sysconf(_SC_PAGESIZE);
    write_heap(0);
    timed("fork+exec+wait", 1, iters);
    timed("fork+wait", 0, iters);
    if (write_iters > 0) {
        timed("write heap", 2, write_iters);
        timed("fork+wait+write heap", 3, write_iters);
    }
    /* Keep the heap alive (and used) until the end. */
    unsigned sum = 0;
    for (size_t off = 0; off < bytes; off += page)
        sum += (unsigned char)heap[off];
    return sum == 0xffffffffu;
}
