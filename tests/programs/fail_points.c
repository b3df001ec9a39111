/*
 * fail_points POINTS [WORK]
 *
 * Fails POINTS times in one run, at deterministic points: between POINTS+1 segments of
 * WORK compute steps it calls zhuque_fail_now() (a no-op without the runtime), right after
 * printing a line that is still in the stdio buffer. Under zhuque each call ends the process
 * with status 75; each resume continues after the call.
 *
 * Two recovery handlers are registered at the start (A, then B). Each writes one line to
 * stderr with write(2):
 *     zhuque-test: recovery handler=A call=N failures=F arg=ok
 * and checks, in persistent memory, that it runs once per failure with the failure count
 * zhuque_failures() reports. The program's stdout ends with
 *     recovery handlers consistent: yes
 * in a native run (no handler ever runs, no failure) as in any correct crash-resistant run.
 */
#include "testlib.h"
#include "zhuque.h"

#include <unistd.h>

struct handler_state {
    char name;
    unsigned long calls;
    int bad; /* set when a call saw a wrong argument or failure count */
};

static struct handler_state state_a = {'A', 0, 0}, state_b = {'B', 0, 0};
static int registered;

/* Appends the decimal form of v to *p (async-signal-safe). */
static void put_num(char **p, unsigned long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *(*p)++ = tmp[--n];
}

static void put_str(char **p, const char *s)
{
    while (*s)
        *(*p)++ = *s++;
}

static void on_recovery(void *arg)
{
    struct handler_state *st = arg;
    int ok = st == &state_a || st == &state_b;
    unsigned long failures = zq_failures();
    char line[128], *p = line;

    if (ok) {
        st->calls++;
        if (st->calls != failures)
            st->bad = 1;
    }
    put_str(&p, "zhuque-test: recovery handler=");
    *p++ = ok ? st->name : '?';
    put_str(&p, " call=");
    put_num(&p, ok ? st->calls : 0);
    put_str(&p, " failures=");
    put_num(&p, failures);
    put_str(&p, ok ? " arg=ok\n" : " arg=bad\n");
    ssize_t w = write(2, line, (size_t)(p - line));
    (void)w;
}

int main(int argc, char **argv)
{
    unsigned long points = tl_arg(argc, argv, 1, 5);
    unsigned long work = tl_arg(argc, argv, 2, 20000000);
    unsigned long every = work * (points + 1) / 600 ? work * (points + 1) / 600 : 1;
    uint64_t rng = 3, h = TL_HASH_INIT;
    double acc = 1.0;

    if (zq_active()) {
        TL_CHECK(zq_on_recovery(on_recovery, &state_a) == 0, "register A");
        TL_CHECK(zq_on_recovery(on_recovery, &state_b) == 0, "register B");
        registered = 1;
    }
    printf("fail_points points=%lu work=%lu\n", points, work);
    for (unsigned long seg = 0; seg <= points; seg++) {
        for (unsigned long i = 1; i <= work; i++) {
            uint64_t r = tl_next(&rng);
            h = tl_mix(h, r);
            acc = acc * 0.999 + (double)(r & 0xffff) * 1e-6;
            if (i % every == 0)
                printf("segment %lu step %lu h=%016llx acc=%.9f\n", seg, i,
                       (unsigned long long)h, acc);
        }
        if (seg < points) {
            printf("before fail point %lu\n", seg + 1);
            zq_fail_now();
            printf("after fail point %lu\n", seg + 1);
        }
    }

    unsigned long failures = zq_failures();
    int consistent = !state_a.bad && !state_b.bad && state_a.calls == failures &&
                     state_b.calls == failures && (registered || failures == 0);
    printf("recovery handlers consistent: %s\n", consistent ? "yes" : "no");
    printf("checksum %016llx\n", (unsigned long long)h);
    return 0;
}
