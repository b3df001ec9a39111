/*
 * The library thr_tls loads with dlopen: its thread-local variables live in dynamic TLS
 * (blocks glibc allocates for each thread on its first access, not in the static TLS block
 * at the top of the thread's stack).
 */
#include <stdint.h>

__thread uint64_t lib_counter;
__thread unsigned char lib_bytes[512] = {1, 2, 3};

uint64_t lib_bump(uint64_t v)
{
    lib_counter += v;
    lib_bytes[v % sizeof lib_bytes] += (unsigned char)v;
    return lib_counter;
}

uint64_t lib_digest(void)
{
    uint64_t h = lib_counter;
    for (unsigned i = 0; i < sizeof lib_bytes; i++)
        h = h * 31 + lib_bytes[i];
    return h;
}
