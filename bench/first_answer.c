/*
 * first_answer PORT COMMAND...
 *
 * Starts COMMAND and prints, in microseconds, how long until a memcached at 127.0.0.1:PORT
 * answers `get k7` with its value: for `zhuque run` of a saved memcached, the whole resume
 * (the CLI, the tree's init, the memory coming back) up to a served request. Connects again
 * every 0.2 ms until an answer comes; exits 1 when the answer lacks the value.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec * 1e-3;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: first_answer PORT COMMAND...\n");
        return 2;
    }
    double t0 = now_us();
    if (fork() == 0) {
        /* Not our stdout: a caller reading it to its end would wait for the server. */
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execvp(argv[2], argv + 2);
        _exit(127);
    }
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
    a.sin_addr.s_addr = htonl(0x7f000001);
    for (;;) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (connect(s, (struct sockaddr *)&a, sizeof a) == 0 && write(s, "get k7\r\n", 8) == 8) {
            char b[8192];
            size_t n = 0;
            ssize_t r;
            while (n < sizeof b - 1 && (r = read(s, b + n, sizeof b - 1 - n)) > 0) {
                n += (size_t)r;
                b[n] = 0;
                if (strstr(b, "END\r\n"))
                    break;
            }
            if (n > 0) {
                printf("%.0f\n", now_us() - t0);
                return strstr(b, "VALUE k7") ? 0 : 1;
            }
        }
        close(s);
        usleep(200);
    }
}
