/*
 * tree_timer COUNT LINE CMD [ARGS...]
 *
 * Starts CMD with its stdout on a pipe and prints "PID<TAB>MICROSECONDS" (PID: CMD's) once
 * COUNT lines equal to LINE have come through the pipe: the time from just before CMD was
 * started. For the tree benchmark: the processes of a tree each write one "ready" line when
 * they run, or one "resumed" line from their recovery handler after a resume. Then it reads
 * the pipe to its end (so that writers never get SIGPIPE), waits for CMD, and exits with CMD's
 * status (128+N when killed by signal N). When the pipe ends first, it says so on stderr and
 * prints nothing on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: tree_timer COUNT LINE CMD [ARGS...]\n");
        return 2;
    }
    int want = atoi(argv[1]);
    const char *line = argv[2];
    size_t line_len = strlen(line);
    int p[2];
    if (pipe(p) != 0) {
        perror("pipe");
        return 1;
    }
    long long t0 = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        execvp(argv[3], argv + 3);
        perror(argv[3]);
        _exit(127);
    }
    close(p[1]);
    char buf[4096], cur[256];
    size_t cur_len = 0;
    int seen = 0, done = 0;
    for (;;) {
        ssize_t n = read(p[0], buf, sizeof buf);
        if (n <= 0)
            break;
        if (done)
            continue;
        for (ssize_t i = 0; i < n && !done; i++) {
            if (buf[i] != '\n') {
                if (cur_len < sizeof cur)
                    cur[cur_len] = buf[i];
                cur_len++;
                continue;
            }
            if (cur_len == line_len && memcmp(cur, line, line_len) == 0 && ++seen == want) {
                printf("%d\t%lld\n", pid, (now_ns() - t0) / 1000);
                fflush(stdout);
                done = 1;
            }
            cur_len = 0;
        }
    }
    if (!done)
        fprintf(stderr, "tree_timer: the output ended after %d of %d \"%s\" lines\n", seen, want,
                line);
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
