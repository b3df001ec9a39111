/*
 * sock_packet_ring ROUNDS FAIL_POINTS
 *
 * A packet socket's mapped receive ring across failures (issue 12; needs CAP_NET_RAW), read
 * the way libpcap reads a TPACKET_V3 ring: a packet socket for IPv4 bound to lo with an RX
 * ring of 8 blocks of 64 KiB (frames of 2048, blocks retired after 5 ms) mapped once. Every
 * round pings 127.0.0.1 (an ICMP raw socket that takes in nothing) with the round as its
 * sequence number, then walks the ring's blocks in order (wait with poll() for the current
 * block to be TP_STATUS_USER, read its packets, give it back with TP_STATUS_KERNEL) until it
 * has seen its own echo request; it must within 5 s of waiting with no failure in between
 * (the ping is sent again every second: one sent just before a failure may be lost with the
 * kernel's part of the ring). Every round also checks the kernel's view: /proc/self/maps
 * shows the ring at the same address as a mapping of socket:[INO], INO being the socket's
 * own inode (fstat), and PACKET_VERSION is TPACKET_V3. FAIL_POINTS rounds call
 * zhuque_fail_now(). With the old runtime the mapping came back as a plain copy the kernel
 * no longer wrote: the first round after a resume waited for a block that never came.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <net/if.h> /* before the linux headers, which then leave its definitions alone */

#include <arpa/inet.h>
#include <errno.h>
#include <linux/icmp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <netinet/ip.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)
#define BLOCK_SIZE (1 << 16)
#define BLOCKS 8
#define FRAME_SIZE 2048

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

static void ping(int fd, unsigned short id, unsigned short seq)
{
    struct icmphdr req = {.type = ICMP_ECHO};
    req.un.echo.id = htons(id);
    req.un.echo.sequence = htons(seq);
    req.checksum = checksum(&req, sizeof req);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    while (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&to, sizeof to) < 0)
        CHECK(errno == EINTR, "sendto: %s", strerror(errno));
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int int_opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    CHECK(getsockopt(fd, level, name, &v, &len) == 0, "getsockopt %d/%d: %s", level, name,
          strerror(errno));
    return v;
}

/* Whether block `b` of `ring` (TP_STATUS_USER: given to the program) holds our echo request
 * (id, seq). Bounds are checked: a block is the kernel's layout, trusted no further. */
static int block_has(const unsigned char *blk, unsigned short id, unsigned short seq)
{
    const struct tpacket_block_desc *bd = (const void *)blk;
    unsigned n = bd->hdr.bh1.num_pkts;
    size_t at = bd->hdr.bh1.offset_to_first_pkt;
    int found = 0;
    for (unsigned i = 0; i < n; i++) {
        if (at < sizeof *bd || at + sizeof(struct tpacket3_hdr) > BLOCK_SIZE)
            break;
        const struct tpacket3_hdr *h = (const void *)(blk + at);
        size_t net = at + h->tp_net;
        if (h->tp_snaplen >= 20 + 8 && net + 28 <= BLOCK_SIZE) {
            const struct iphdr *ip = (const void *)(blk + net);
            const struct icmphdr *icmp = (const void *)(blk + net + ip->ihl * 4);
            if (ip->protocol == IPPROTO_ICMP && net + ip->ihl * 4 + 8 <= BLOCK_SIZE &&
                icmp->type == ICMP_ECHO && ntohs(icmp->un.echo.id) == id &&
                ntohs(icmp->un.echo.sequence) == seq)
                found = 1;
        }
        if (!h->tp_next_offset)
            break;
        at += h->tp_next_offset;
    }
    return found;
}

/* The ring mapping's line in /proc/self/maps: its inode, 0 when there is none at `ring`. */
static unsigned long mapped_socket(void *ring)
{
    char *buf;
    FILE *f = tl_proc_open("/proc/self/maps", &buf);
    CHECK(f, "/proc/self/maps: %s", strerror(errno));
    char line[512];
    unsigned long ino = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long start, end;
        if (sscanf(line, "%lx-%lx", &start, &end) != 2 || start != (unsigned long)ring)
            continue;
        char *name = strstr(line, "socket:[");
        if (name && end - start == (unsigned long)BLOCK_SIZE * BLOCKS)
            ino = strtoul(name + 8, NULL, 10);
        break;
    }
    tl_proc_close(f, buf);
    return ino;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 300);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);

    int icmp = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP);
    CHECK(icmp >= 0, "raw socket (needs CAP_NET_RAW): %s", strerror(errno));
    struct icmp_filter nothing = {.data = ~0U};
    CHECK(setsockopt(icmp, SOL_RAW, ICMP_FILTER, &nothing, sizeof nothing) == 0,
          "ICMP_FILTER: %s", strerror(errno));

    int lo = (int)if_nametoindex("lo");
    CHECK(lo > 0, "no lo interface");
    int pkt = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_IP));
    CHECK(pkt >= 0, "packet socket: %s", strerror(errno));
    int v3 = TPACKET_V3;
    CHECK(setsockopt(pkt, SOL_PACKET, PACKET_VERSION, &v3, sizeof v3) == 0, "PACKET_VERSION: %s",
          strerror(errno));
    struct tpacket_req3 req = {
        .tp_block_size = BLOCK_SIZE,
        .tp_block_nr = BLOCKS,
        .tp_frame_size = FRAME_SIZE,
        .tp_frame_nr = BLOCK_SIZE / FRAME_SIZE * BLOCKS,
        .tp_retire_blk_tov = 5,
    };
    CHECK(setsockopt(pkt, SOL_PACKET, PACKET_RX_RING, &req, sizeof req) == 0,
          "PACKET_RX_RING: %s", strerror(errno));
    unsigned char *ring =
        mmap(NULL, (size_t)BLOCK_SIZE * BLOCKS, PROT_READ | PROT_WRITE, MAP_SHARED, pkt, 0);
    CHECK(ring != MAP_FAILED, "mmap ring: %s", strerror(errno));
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP),
                             .sll_ifindex = lo};
    CHECK(bind(pkt, (struct sockaddr *)&ll, sizeof ll) == 0, "bind lo: %s", strerror(errno));

    unsigned short id = (unsigned short)(getpid() ^ 0x2b2b);
    unsigned long every = rounds / (points + 1);
    unsigned blk = 0; /* the block the reader is at, in ring order */
    unsigned long blocks_read = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        unsigned short seq = (unsigned short)r;
        ping(icmp, id, seq);
        unsigned long failures = zq_failures();
        double start = now(), sent = start;
        int seen = 0;
        while (!seen) {
            /* The deadline and the ping again every second whether the ring is idle or busy
             * (other tests' loopback traffic can keep every block coming full of packets
             * that are not ours). */
            if (zq_failures() != failures) {
                /* A failure: the wait starts again, and so may the ping. */
                failures = zq_failures();
                start = sent = 0;
            }
            double t = now();
            if (start == 0)
                start = t;
            CHECK(t - start < 5.0, "round %lu: echo request %u not in the ring after 5 s (block %u)",
                  r, seq, blk);
            if (t - sent >= 1.0) {
                ping(icmp, id, seq);
                sent = t;
            }
            struct tpacket_block_desc *bd = (void *)(ring + (size_t)blk * BLOCK_SIZE);
            if (!(__atomic_load_n(&bd->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER)) {
                struct pollfd p = {.fd = pkt, .events = POLLIN | POLLERR};
                int n = poll(&p, 1, 10);
                CHECK(n >= 0 || errno == EINTR, "poll: %s", strerror(errno));
                continue;
            }
            seen = block_has((unsigned char *)bd, id, seq);
            __atomic_store_n(&bd->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
            blk = (blk + 1) % BLOCKS;
            blocks_read++;
        }
        /* The kernel's view of the socket and its ring. */
        struct stat st;
        CHECK(fstat(pkt, &st) == 0, "fstat: %s", strerror(errno));
        unsigned long ino = mapped_socket(ring);
        CHECK(ino == (unsigned long)st.st_ino,
              "round %lu: the ring at %p is mapped from socket:[%lu], the socket is %lu", r,
              (void *)ring, ino, (unsigned long)st.st_ino);
        CHECK(int_opt(pkt, SOL_PACKET, PACKET_VERSION) == TPACKET_V3,
              "round %lu: PACKET_VERSION %d", r, int_opt(pkt, SOL_PACKET, PACKET_VERSION));
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % 100 == 0)
            printf("round %lu: echo request seen in the ring, ring mapped from the socket\n", r);
    }
    CHECK(blocks_read >= rounds, "%lu blocks read in %lu rounds", blocks_read, rounds);
    printf("sock_packet_ring: done\n");
    return 0;
}
