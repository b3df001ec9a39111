/*
 * sock_raw ROUNDS FAIL_POINTS
 *
 * Raw and packet sockets across failures (issue 12; needs CAP_NET_RAW): an ICMP raw socket
 * with an ICMP_FILTER that lets only echo replies through pings 127.0.0.1 every round and
 * must get its own reply (its identifier and sequence; a ping lost to a failure landing
 * between request and reply is sent again after 1 s, which the output does not show); a
 * packet socket bound to the loopback interface for IPv4 with PACKET_AUXDATA set. Every
 * round checks what the kernel reports: type and protocol, the filter, the packet socket's
 * interface and protocol (getsockname) and option. Two more packet sockets on lo share the
 * loopback traffic in one PACKET_FANOUT group (hash, with rollover), whose id, type and
 * flags each must report every round; the first packet socket has a locked classic BPF
 * filter (ICMP only, tcpdump's kind), which SO_GET_FILTER must give back every round (it
 * came back without a filter before) (lost before: the new sockets were in no group). FAIL_POINTS
 * rounds call zhuque_fail_now(). With the old runtime both were EBADF placeholders.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <net/if.h> /* before the linux headers, which then leave its definitions alone */

#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/icmp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/ip.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
/* The fanout group's id: groups are the network namespace's, this one is the test's own. */
#define FANOUT_ID 0x5a17

static unsigned short checksum(const void *data, size_t len)
{
    const unsigned short *p = data;
    unsigned long sum = 0;
    for (; len > 1; len -= 2)
        sum += *p++;
    if (len)
        sum += *(const unsigned char *)p;
    sum = (sum >> 16) + (sum & 0xffff);
    sum += sum >> 16;
    return (unsigned short)~sum;
}

/* Pings 127.0.0.1 with (id, seq); 1 when the reply came, 0 after 1 s without it. */
static int ping(int fd, unsigned short id, unsigned short seq)
{
    struct icmphdr req = {.type = ICMP_ECHO};
    req.un.echo.id = htons(id);
    req.un.echo.sequence = htons(seq);
    req.checksum = checksum(&req, sizeof req);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    while (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&to, sizeof to) < 0)
        CHECK(errno == EINTR, "sendto: %s", strerror(errno));
    for (;;) {
        unsigned char buf[256];
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        CHECK(n > 0, "recv: %s", strerror(errno));
        struct iphdr *ip = (struct iphdr *)buf;
        struct icmphdr *icmp = (struct icmphdr *)(buf + ip->ihl * 4);
        CHECK(icmp->type == ICMP_ECHOREPLY, "the filter let type %d through", icmp->type);
        if (ntohs(icmp->un.echo.id) == id && ntohs(icmp->un.echo.sequence) == seq)
            return 1;
    }
}

static int int_opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    CHECK(getsockopt(fd, level, name, &v, &len) == 0, "getsockopt %d/%d: %s", level, name,
          strerror(errno));
    return v;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 300);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);

    int icmp = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    CHECK(icmp >= 0, "raw socket (needs CAP_NET_RAW): %s", strerror(errno));
    struct icmp_filter only_replies = {.data = ~(1U << ICMP_ECHOREPLY)};
    CHECK(setsockopt(icmp, SOL_RAW, ICMP_FILTER, &only_replies, sizeof only_replies) == 0,
          "ICMP_FILTER: %s", strerror(errno));
    struct timeval one_s = {1, 0};
    CHECK(setsockopt(icmp, SOL_SOCKET, SO_RCVTIMEO, &one_s, sizeof one_s) == 0, "SO_RCVTIMEO");

    int lo = (int)if_nametoindex("lo");
    CHECK(lo > 0, "no lo interface");
    int pkt = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_IP));
    CHECK(pkt >= 0, "packet socket: %s", strerror(errno));
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                             .sll_ifindex = lo};
    CHECK(bind(pkt, (struct sockaddr *)&ll, sizeof ll) == 0, "bind lo: %s", strerror(errno));
    int one = 1;
    CHECK(setsockopt(pkt, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one) == 0,
          "PACKET_AUXDATA: %s", strerror(errno));
    /* A classic BPF filter, tcpdump's way ("icmp": the IP protocol byte is 1), locked. */
    struct sock_filter only_icmp[] = {
        BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 9),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ICMP, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, 0xffff),
        BPF_STMT(BPF_RET | BPF_K, 0),
    };
    struct sock_fprog prog = {.len = 4, .filter = only_icmp};
    CHECK(setsockopt(pkt, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) == 0,
          "SO_ATTACH_FILTER: %s", strerror(errno));
    CHECK(setsockopt(pkt, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof one) == 0,
          "SO_LOCK_FILTER: %s", strerror(errno));
    /* Two more packet sockets on lo, one fanout group sharing the traffic between them. */
    int fan[2];
    const int fanout = FANOUT_ID | (PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_ROLLOVER) << 16;
    for (int i = 0; i < 2; i++) {
        fan[i] = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_IP));
        CHECK(fan[i] >= 0, "packet socket: %s", strerror(errno));
        CHECK(bind(fan[i], (struct sockaddr *)&ll, sizeof ll) == 0, "bind lo: %s",
              strerror(errno));
        CHECK(setsockopt(fan[i], SOL_PACKET, PACKET_FANOUT, &fanout, sizeof fanout) == 0,
              "PACKET_FANOUT: %s", strerror(errno));
    }

    unsigned short id = (unsigned short)(getpid() ^ 0x5a5a);
    unsigned long every = rounds / (points + 1);
    for (unsigned long r = 1; r <= rounds; r++) {
        while (!ping(icmp, id, (unsigned short)r))
            ;
        CHECK(int_opt(icmp, SOL_SOCKET, SO_TYPE) == SOCK_RAW &&
                  int_opt(icmp, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_ICMP,
              "round %lu: raw socket type or protocol", r);
        struct icmp_filter f;
        socklen_t flen = sizeof f;
        CHECK(getsockopt(icmp, SOL_RAW, ICMP_FILTER, &f, &flen) == 0 && f.data == only_replies.data,
              "round %lu: ICMP_FILTER", r);
        struct sockaddr_ll got;
        socklen_t glen = sizeof got;
        CHECK(getsockname(pkt, (struct sockaddr *)&got, &glen) == 0 && got.sll_ifindex == lo &&
                  got.sll_protocol == htons(ETH_P_IP),
              "round %lu: packet socket on interface %d", r, got.sll_ifindex);
        CHECK(int_opt(pkt, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM &&
                  int_opt(pkt, SOL_PACKET, PACKET_AUXDATA) == 1,
              "round %lu: packet socket type or PACKET_AUXDATA", r);
        struct sock_filter got_filter[8];
        socklen_t nf = 8; /* counted in instructions */
        CHECK(getsockopt(pkt, SOL_SOCKET, SO_GET_FILTER, got_filter, &nf) == 0 && nf == 4 &&
                  !memcmp(got_filter, only_icmp, sizeof only_icmp) &&
                  int_opt(pkt, SOL_SOCKET, SO_LOCK_FILTER) == 1,
              "round %lu: the packet socket's filter (%u instructions)", r, (unsigned)nf);
        for (int i = 0; i < 2; i++)
            CHECK(int_opt(fan[i], SOL_PACKET, PACKET_FANOUT) == fanout,
                  "round %lu: fanout socket %d: PACKET_FANOUT %#x, not %#x", r, i,
                  int_opt(fan[i], SOL_PACKET, PACKET_FANOUT), fanout);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % 100 == 0)
            printf("round %lu: ping answered, packet socket on lo\n", r);
    }
    /* The packet socket sees loopback IPv4 traffic: this round's ping at least. */
    while (!ping(icmp, id, 0))
        ;
    unsigned char buf[2048];
    ssize_t n;
    while ((n = recv(pkt, buf, sizeof buf, MSG_DONTWAIT)) < 0 && errno == EINTR)
        ;
    CHECK(n > 0, "the packet socket saw nothing: %s", strerror(errno));
    printf("sock_raw: done\n");
    return 0;
}
