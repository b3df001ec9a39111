/*
 * fd_netlink ROUNDS FAIL_POINTS
 *
 * Netlink sockets across failures (issue 12): a NETLINK_ROUTE socket bound to the port the
 * kernel gave it and to the link group, that joined the IPv4 and IPv6 address groups with
 * NETLINK_ADD_MEMBERSHIP and set NETLINK_EXT_ACK and NETLINK_GET_STRICT_CHK; and an unbound
 * NETLINK_GENERIC one. Each round asks for a dump of the links (RTM_GETLINK) and reads it to
 * NLMSG_DONE, and checks every property the kernel reports: the socket's protocol and type,
 * its port id (getsockname), its memberships (NETLINK_LIST_MEMBERSHIPS), its options; the
 * generic socket resolves the "nlctrl" family. FAIL_POINTS rounds call zhuque_fail_now()
 * between dumps. A failure that lands in the middle of a dump loses the kernel's queued
 * replies (said at the save): a dump that gets no answer for 2 s is asked again, which
 * nothing else in the output shows.
 */
#define _GNU_SOURCE
#include "testlib.h"
#include "zhuque.h"

#include <errno.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CHECK(c, ...) TL_CHECK(c, __VA_ARGS__)

static int int_opt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    CHECK(getsockopt(fd, level, name, &v, &len) == 0, "getsockopt %d/%d: %s", level, name,
          strerror(errno));
    return v;
}

static unsigned port_of(int fd)
{
    struct sockaddr_nl a;
    socklen_t len = sizeof a;
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0, "getsockname: %s", strerror(errno));
    return a.nl_pid;
}

/* Sends a dump request and counts the messages of the answer; -1 when none came in 2 s. */
static int dump_links(int fd, unsigned seq)
{
    struct {
        struct nlmsghdr h;
        struct ifinfomsg i;
    } req = {.h = {.nlmsg_len = sizeof req,
                   .nlmsg_type = RTM_GETLINK,
                   .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP,
                   .nlmsg_seq = seq},
             .i = {.ifi_family = AF_UNSPEC}};
    struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
    while (sendto(fd, &req, sizeof req, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0)
        CHECK(errno == EINTR, "sendto: %s", strerror(errno));
    static char buf[1 << 16];
    int links = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -1;
        CHECK(n > 0, "recv: %s", strerror(errno));
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_seq != seq)
                continue; /* a notification of the groups, or an earlier dump's rest */
            if (h->nlmsg_type == NLMSG_DONE)
                return links;
            CHECK(h->nlmsg_type == RTM_NEWLINK, "message type %u", h->nlmsg_type);
            links++;
        }
    }
}

/* Resolves the generic netlink family "nlctrl" (its id is GENL_ID_CTRL). */
static int nlctrl_id(int fd, unsigned seq)
{
    struct {
        struct nlmsghdr h;
        struct genlmsghdr g;
        char attrs[32];
    } req = {0};
    req.h.nlmsg_type = GENL_ID_CTRL;
    req.h.nlmsg_flags = NLM_F_REQUEST;
    req.h.nlmsg_seq = seq;
    req.g.cmd = CTRL_CMD_GETFAMILY;
    req.g.version = 1;
    struct nlattr *a = (struct nlattr *)req.attrs;
    a->nla_type = CTRL_ATTR_FAMILY_NAME;
    a->nla_len = NLA_HDRLEN + sizeof "nlctrl";
    memcpy((char *)a + NLA_HDRLEN, "nlctrl", sizeof "nlctrl");
    req.h.nlmsg_len = NLMSG_LENGTH(GENL_HDRLEN) + NLA_ALIGN(a->nla_len);
    while (send(fd, &req, req.h.nlmsg_len, 0) < 0)
        CHECK(errno == EINTR, "send: %s", strerror(errno));
    static char buf[1 << 14];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return -1;
        CHECK(n > 0, "recv genl: %s", strerror(errno));
        struct nlmsghdr *h = (struct nlmsghdr *)buf;
        if (h->nlmsg_seq != seq)
            continue;
        CHECK(h->nlmsg_type == GENL_ID_CTRL, "genl answer type %u", h->nlmsg_type);
        struct genlmsghdr *g = NLMSG_DATA(h);
        int left = h->nlmsg_len - NLMSG_LENGTH(GENL_HDRLEN);
        for (struct nlattr *x = (struct nlattr *)((char *)g + GENL_HDRLEN); left >= NLA_HDRLEN;
             left -= NLA_ALIGN(x->nla_len), x = (struct nlattr *)((char *)x + NLA_ALIGN(x->nla_len)))
            if (x->nla_type == CTRL_ATTR_FAMILY_ID)
                return *(unsigned short *)((char *)x + NLA_HDRLEN);
        return -2;
    }
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 200);
    unsigned long points = tl_arg(argc, argv, 2, 2);
    setvbuf(stdout, NULL, _IOLBF, 0);

    int rt = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    CHECK(rt >= 0, "socket: %s", strerror(errno));
    struct sockaddr_nl me = {.nl_family = AF_NETLINK, .nl_groups = RTMGRP_LINK};
    CHECK(bind(rt, (struct sockaddr *)&me, sizeof me) == 0, "bind: %s", strerror(errno));
    int groups[] = {RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR};
    for (int i = 0; i < 2; i++)
        CHECK(setsockopt(rt, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &groups[i], sizeof groups[i]) ==
                  0,
              "NETLINK_ADD_MEMBERSHIP: %s", strerror(errno));
    int one = 1;
    CHECK(setsockopt(rt, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one) == 0 &&
              setsockopt(rt, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one) == 0,
          "setsockopt: %s", strerror(errno));
    struct timeval two_s = {2, 0};
    CHECK(setsockopt(rt, SOL_SOCKET, SO_RCVTIMEO, &two_s, sizeof two_s) == 0, "SO_RCVTIMEO");
    unsigned port = port_of(rt);
    CHECK(port != 0, "no port id");
    unsigned char want_groups[16];
    socklen_t glen = sizeof want_groups;
    CHECK(getsockopt(rt, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, want_groups, &glen) == 0,
          "NETLINK_LIST_MEMBERSHIPS: %s", strerror(errno));

    int gen = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_GENERIC);
    CHECK(gen >= 0, "socket genl: %s", strerror(errno));
    CHECK(setsockopt(gen, SOL_SOCKET, SO_RCVTIMEO, &two_s, sizeof two_s) == 0, "SO_RCVTIMEO");

    int first = -1;
    unsigned long every = rounds / (points + 1), asked_again = 0;
    for (unsigned long r = 1; r <= rounds; r++) {
        int links;
        while ((links = dump_links(rt, (unsigned)r * 2)) < 0)
            asked_again++;
        if (first < 0)
            first = links;
        CHECK(links == first, "round %lu: %d links, %d before", r, links, first);
        int id;
        while ((id = nlctrl_id(gen, (unsigned)r * 2 + 1)) == -1)
            asked_again++;
        CHECK(id == GENL_ID_CTRL, "round %lu: nlctrl has id %d", r, id);
        CHECK(port_of(rt) == port, "round %lu: port %u, was %u", r, port_of(rt), port);
        CHECK(int_opt(rt, SOL_SOCKET, SO_PROTOCOL) == NETLINK_ROUTE &&
                  int_opt(rt, SOL_SOCKET, SO_TYPE) == SOCK_RAW &&
                  int_opt(gen, SOL_SOCKET, SO_PROTOCOL) == NETLINK_GENERIC &&
                  int_opt(gen, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM,
              "round %lu: protocol or type", r);
        CHECK(int_opt(rt, SOL_NETLINK, NETLINK_EXT_ACK) == 1 &&
                  int_opt(rt, SOL_NETLINK, NETLINK_GET_STRICT_CHK) == 1 &&
                  int_opt(rt, SOL_NETLINK, NETLINK_NO_ENOBUFS) == 0,
              "round %lu: netlink options", r);
        unsigned char got[16];
        socklen_t len = sizeof got;
        CHECK(getsockopt(rt, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, got, &len) == 0 &&
                  len == glen && !memcmp(got, want_groups, glen),
              "round %lu: memberships differ", r);
        if (every && r % every == 0 && r / every <= points)
            zq_fail_now();
        if (r % 4 == 0)
            usleep(1000);
        if (r % 50 == 0)
            printf("round %lu: %d links, nlctrl %d\n", r, links, id);
    }
    (void)asked_again;
    printf("fd_netlink: done\n");
    return 0;
}
