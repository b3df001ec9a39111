/*
 * inspect_me
 *
 * One process tree holding one of each thing `zhuque inspect` must show of a saved image, with
 * values a test can check: a file opened for append at byte 1234 (`inspect_me.txt` in the
 * working directory), a pipe with 5 unread bytes, a SIGUSR1 handler and SIGPIPE ignored,
 * ITIMER_REAL armed for an hour, 8 MiB of heap written (so the image holds at least that on
 * disk), a packet socket with a mapped receive ring of 2 blocks of 4096 bytes (4 frames of
 * 2048), a pseudo-terminal's master, and a forked child that keeps the pipe's read end and
 * SIGUSR1 handler and leads a session whose controlling terminal is that pseudo-terminal,
 * holding no fd of it. Prints "started" once all of it exists; never ends by itself.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_usr1(int sig)
{
    (void)sig;
}

int main(void)
{
    int fd = open("inspect_me.txt", O_CREAT | O_TRUNC | O_WRONLY | O_APPEND, 0644);
    char block[1234];
    memset(block, 'z', sizeof block);
    if (fd < 0 || write(fd, block, sizeof block) != (ssize_t)sizeof block)
        return 1;
    int p[2];
    if (pipe(p) != 0 || write(p[1], "hello", 5) != 5)
        return 1;
    struct sigaction sa = {.sa_handler = on_usr1};
    sigaction(SIGUSR1, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct itimerval hour = {.it_value = {.tv_sec = 3600}};
    setitimer(ITIMER_REAL, &hour, NULL);
    size_t heap_bytes = 8u << 20;
    char *heap = malloc(heap_bytes);
    if (!heap)
        return 1;
    memset(heap, 1, heap_bytes);

    int packet = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    struct tpacket_req req = {
        .tp_block_size = 4096, .tp_block_nr = 2, .tp_frame_size = 2048, .tp_frame_nr = 4};
    if (packet < 0 || setsockopt(packet, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) != 0)
        return 1;
    if (mmap(NULL, 2 * 4096, PROT_READ | PROT_WRITE, MAP_SHARED, packet, 0) == MAP_FAILED)
        return 1;
    int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0)
        return 1;

    int ready[2];
    if (pipe(ready) != 0)
        return 1;
    pid_t child = fork();
    if (child == 0) {
        close(ready[0]);
        close(p[1]);
        close(fd);
        close(packet);
        /* A session leader's first terminal opened without O_NOCTTY becomes its
         * controlling terminal, and stays so once the fd is closed. */
        int slave = setsid() < 0 ? -1 : open(ptsname(master), O_RDWR | O_CLOEXEC);
        close(master);
        if (slave < 0 || close(slave) != 0 || write(ready[1], "r", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    char c;
    if (child < 0 || read(ready[0], &c, 1) != 1)
        return 1;
    close(ready[0]);
    close(ready[1]);
    printf("started\n");
    fflush(stdout);
    for (;;)
        pause();
}
