/*
 * tree_dgram_shutdown ROUNDS FAIL_POINTS
 *
 * Datagrams queued from a socket that has shut down its sending side since (`SHUT_WR`) are
 * kept. Every round a child binds a Unix datagram socket to an abstract name of its own,
 * sends its parent's socket three datagrams, shuts its sending side down, says so on a pipe
 * and waits to be let go; the parent reads the three (FAIL_POINTS rounds fail first, with all
 * three queued) and prints them. A resume sends a queue again from each message's sender's
 * socket when a process of the tree holds it, and that socket no longer sends: the messages
 * then come from an unnamed socket (their sender's address is lost, said in one warning) —
 * before, they were lost. Only the texts are printed: natively each also comes from the
 * child's address, which the program checks when it ran without a failure in between.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define PER_ROUND 3

static void wait_byte(int fd, const char *what)
{
    char b;
    ssize_t n;
    while ((n = read(fd, &b, 1)) < 0 && errno == EINTR)
        ;
    CHECK(n == 1, "%s: %s", what, n < 0 ? strerror(errno) : "end of file");
}

/* Sends this round's datagrams, shuts the sending side down, says so, waits to be let go. */
static void child(unsigned long r, const struct sockaddr_un *to, socklen_t to_len,
                  const struct sockaddr_un *me, socklen_t me_len, int sent, int go)
{
    int fd = tl_bound_datagram_socket(me, me_len);
    for (int i = 0; i < PER_ROUND; i++) {
        char text[32];
        int len = snprintf(text, sizeof text, "round %lu datagram %d", r, i);
        CHECK(sendto(fd, text, (size_t)len, 0, (const struct sockaddr *)to, to_len) == len,
              "child: sendto: %s", strerror(errno));
    }
    CHECK(shutdown(fd, SHUT_WR) == 0, "child: shutdown: %s", strerror(errno));
    CHECK(write(sent, "s", 1) == 1, "child: sent: %s", strerror(errno));
    wait_byte(go, "child: go");
    _exit(0);
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 200);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* Abstract names belong to the network namespace, which other trees share. */
    unsigned long nonce = 0;
    CHECK(getrandom(&nonce, sizeof nonce, 0) == sizeof nonce, "getrandom: %s", strerror(errno));
    char name[64];
    struct sockaddr_un me, them;
    snprintf(name, sizeof name, "zq-shutwr-parent-%lx", nonce);
    socklen_t me_len = tl_abstract_address(&me, name);
    int fd = tl_bound_datagram_socket(&me, me_len);
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        snprintf(name, sizeof name, "zq-shutwr-child-%lx-%lu", nonce, r);
        socklen_t them_len = tl_abstract_address(&them, name);
        /* Failures before the child sent: a resume after that may change its address. */
        unsigned long failures = zq_failures();
        int sent[2], go[2];
        CHECK(pipe2(sent, O_CLOEXEC) == 0 && pipe2(go, O_CLOEXEC) == 0, "pipe: %s",
              strerror(errno));
        pid_t pid = fork();
        CHECK(pid >= 0, "fork: %s", strerror(errno));
        if (pid == 0) {
            close(sent[0]);
            close(go[1]);
            child(r, &me, me_len, &them, them_len, sent[1], go[0]);
        }
        close(sent[1]);
        close(go[0]);
        wait_byte(sent[0], "sent");
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now(); /* all three wait, their sender shut down */
        for (int i = 0; i < PER_ROUND; i++) {
            char text[64];
            struct sockaddr_un a;
            socklen_t a_len = sizeof a;
            ssize_t n;
            while ((n = recvfrom(fd, text, sizeof text - 1, 0, (struct sockaddr *)&a, &a_len)) <
                       0 &&
                   errno == EINTR)
                ;
            CHECK(n >= 0, "recvfrom: %s", strerror(errno));
            text[n] = 0;
            /* Without a resume since the child sent it, it comes from the child's address. */
            CHECK(zq_failures() != failures || (a_len == them_len && !memcmp(&a, &them, them_len)),
                  "round %lu: \"%s\" from another address", r, text);
            printf("%s\n", text);
        }
        CHECK(write(go[1], "g", 1) == 1, "go: %s", strerror(errno));
        int st;
        CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %#x",
              st);
        close(sent[0]);
        close(go[1]);
    }
    printf("done\n");
    return 0;
}
