/*
 * thr_flags ROUNDS
 *
 * The flags the kernel keeps per thread, set once by each thread for itself and checked by it
 * every round against the kernel's view (issue 12, "per-thread no_new_privs and parent death
 * signal"): no_new_privs (prctl and NoNewPrivs in /proc/thread-self/status) and the parent
 * death signal (PR_GET_PDEATHSIG). Before, the main thread's values were given to every
 * thread at a resume.
 *   main:   no_new_privs off, parent death signal SIGUSR1
 *   strict: no_new_privs on,  parent death signal SIGUSR2
 *   plain:  no_new_privs off, no parent death signal
 * The workers are made before any thread sets anything (a new thread inherits both). Between
 * checks, a little arithmetic whose hash main prints now and then.
 */
#define _GNU_SOURCE
#include "thrlib.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

struct want {
    const char *name;
    int no_new_privs;
    int death_signal;
};

static atomic_int stop;
static atomic_int ready;

static long own_status_field(const char *key)
{
    FILE *f = fopen("/proc/thread-self/status", "r");
    TL_CHECK(f != NULL, "open /proc/thread-self/status");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, n) == 0 && line[n] == ':') {
            v = strtol(line + n + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static void set_own(const struct want *w)
{
    if (w->no_new_privs)
        TL_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0, "%s: no_new_privs", w->name);
    TL_CHECK(prctl(PR_SET_PDEATHSIG, w->death_signal, 0, 0, 0) == 0, "%s: pdeathsig", w->name);
}

static void check_own(const struct want *w, unsigned long round)
{
    int nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
    TL_CHECK(nnp == w->no_new_privs, "round %lu: %s: no_new_privs %d, not %d", round, w->name,
             nnp, w->no_new_privs);
    long shown = own_status_field("NoNewPrivs");
    TL_CHECK(shown == w->no_new_privs, "round %lu: %s: NoNewPrivs %ld", round, w->name, shown);
    int death = -1;
    TL_CHECK(prctl(PR_GET_PDEATHSIG, &death, 0, 0, 0) == 0 && death == w->death_signal,
             "round %lu: %s: parent death signal %d, not %d", round, w->name, death,
             w->death_signal);
}

static void *worker(void *arg)
{
    const struct want *w = arg;
    while (atomic_load(&ready) == 0) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    set_own(w);
    for (unsigned long r = 1; !atomic_load(&stop); r++) {
        check_own(w, r);
        struct timespec ts = {0, 300000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    unsigned long rounds = tl_arg(argc, argv, 1, 2000);
    static const struct want main_w = {"main", 0, SIGUSR1};
    static const struct want strict = {"strict", 1, SIGUSR2};
    static const struct want plain = {"plain", 0, 0};
    pthread_t t[2];
    TL_OK(pthread_create(&t[0], NULL, worker, (void *)&strict));
    TL_OK(pthread_create(&t[1], NULL, worker, (void *)&plain));
    set_own(&main_w);
    atomic_store(&ready, 1);

    uint64_t seed = 11, h = TL_HASH_INIT;
    for (unsigned long r = 1; r <= rounds; r++) {
        check_own(&main_w, r);
        for (int i = 0; i < 100000; i++)
            h = tl_mix(h, tl_next(&seed));
        if (r % 200 == 0)
            printf("round %lu h=%016llx\n", r, (unsigned long long)h);
    }
    atomic_store(&stop, 1);
    TL_OK(pthread_join(t[0], NULL));
    TL_OK(pthread_join(t[1], NULL));
    printf("done h=%016llx\n", (unsigned long long)h);
    return 0;
}
