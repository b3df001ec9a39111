/*
 * zhuque.h — the C API of the zhuque runtime (libzhuque.so).
 *
 * A program started with `zhuque run PROG` (or with CRASH_RESISTANT=... and
 * LD_PRELOAD=.../libzhuque.so) keeps its whole memory in a persistent pool: after an
 * (emulated) power failure, `zhuque run` with the same command resumes it at the exact
 * instruction it was interrupted at. Programs need no change to be crash-resistant; this
 * header is only for programs that want to know about it.
 *
 * Every function is declared weak, so a program that uses them links and runs without the
 * runtime too: the symbol is then NULL. Call the functions only through the `zq_*` inline
 * helpers below, which check for NULL and behave as "no runtime, no failures" without it.
 * (With the runtime preloaded, the dynamic linker binds the weak references to it.)
 */
#ifndef ZHUQUE_H
#define ZHUQUE_H

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Non-zero when this process runs crash-resistant (the runtime is loaded and active), zero
 * when the runtime is loaded but inert (CRASH_RESISTANT not set).
 */
__attribute__((weak)) int zhuque_active(void);

/*
 * Number of failures this process has been through: 0 in the first launch, incremented at
 * every save, so it equals the number of resumes so far.
 */
__attribute__((weak)) unsigned long zhuque_failures(void);

/*
 * Registers fn(arg) to run after every resume, after memory, threads and files are back and
 * before any application thread continues. Each handler runs once per resume. Handlers must
 * not wait for application threads (they are still stopped) and should use only
 * async-signal-safe calls (write(2), not printf: stdio's locks and buffers belong to the
 * stopped threads). Registrations are persistent: a handler registered before a failure runs
 * at every later resume. Returns 0 on success, non-zero when the handler could not be
 * registered.
 */
__attribute__((weak)) int zhuque_on_recovery(void (*fn)(void *arg), void *arg);

/*
 * Emulates a power failure right now: the process is saved and ends with exit status 75
 * (no atexit handlers, no stdio flush). When the image is resumed, this call returns, and
 * the program continues after it. Without an active runtime it returns immediately.
 */
__attribute__((weak)) void zhuque_fail_now(void);

/* Like zhuque_active(), 0 without the runtime. */
static inline int zq_active(void)
{
    return zhuque_active ? zhuque_active() : 0;
}

/* Like zhuque_failures(), 0 without the runtime. */
static inline unsigned long zq_failures(void)
{
    return zhuque_failures ? zhuque_failures() : 0;
}

/* Like zhuque_on_recovery(), -1 without the runtime (the handler never runs then). */
static inline int zq_on_recovery(void (*fn)(void *arg), void *arg)
{
    return zhuque_on_recovery ? zhuque_on_recovery(fn, arg) : -1;
}

/* Like zhuque_fail_now(), a no-op without the runtime. */
static inline void zq_fail_now(void)
{
    if (zhuque_fail_now)
        zhuque_fail_now();
}

#ifdef __cplusplus
}
#endif

#endif /* ZHUQUE_H */
