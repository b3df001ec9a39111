/*
 * The library dl_churn loads and unloads over and over: made to give ld.so a lot of
 * relocation work that lands in RELRO (a table of 4096 pointers in .data.rel.ro and a table
 * of function pointers), writable data with relocations (.data), bss, and calls into libc
 * through the GOT. dl_digest() reads all of it, so a relocation lost at a resume is seen.
 * With DL_CHURN_FAIL_IN_INIT set, its constructor fails (zhuque_fail_now) inside dlopen:
 * relocated and RELRO-protected, before dlopen returns.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "zhuque.h"

#define S1(n) "s" #n
#define P4(n) S1(n##0), S1(n##1), S1(n##2), S1(n##3)
#define P16(n) P4(n##0), P4(n##1), P4(n##2), P4(n##3)
#define P64(n) P16(n##0), P16(n##1), P16(n##2), P16(n##3)
#define P256(n) P64(n##0), P64(n##1), P64(n##2), P64(n##3)
#define P1024(n) P256(n##0), P256(n##1), P256(n##2), P256(n##3)

/* 4096 relocated pointers, read-only after relocation (RELRO). */
static const char *const names[] = {P1024(0), P1024(1), P1024(2), P1024(3)};

static uint64_t f0(uint64_t x) { return x * 3 + 1; }
static uint64_t f1(uint64_t x) { return x ^ (x >> 7); }
static uint64_t f2(uint64_t x) { return x + 0x9e3779b97f4a7c15ULL; }
static uint64_t f3(uint64_t x) { return (x << 13) | (x >> 51); }
static uint64_t (*const ops[])(uint64_t) = {f0, f1, f2, f3};

/* Writable data holding relocated pointers, and bss. */
static const char *current = "start";
static uint64_t calls;

uint64_t dl_digest(uint64_t seed)
{
    uint64_t h = seed;
    calls++;
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        h = ops[i & 3](h) + strlen(names[i]) + (unsigned char)names[i][1];
        current = names[i];
    }
    return h + calls + (unsigned char)current[0];
}

__attribute__((constructor)) static void fail_inside_dlopen(void)
{
    if (getenv("DL_CHURN_FAIL_IN_INIT"))
        zq_fail_now();
}

