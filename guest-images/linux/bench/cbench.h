/*
 * crane86 guest micro-benchmarks: one static binary, `cbench NAME`, built by
 * build.sh with `gcc -static -O2` and run both inside the amd64 guest (under
 * crane86 and under QEMU TCG) and natively on the host.
 *
 * Every benchmark prints one result line "NAME: ..." whose value depends only
 * on a correct CPU and kernel ABI, never on timing or on the machine, so the
 * three runs must print the same line. Timing is done by the caller.
 */
#ifndef CBENCH_H
#define CBENCH_H

#include <stdint.h>

/* xorshift64: the deterministic data source of every benchmark. */
static inline uint64_t cb_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return x;
}

int bench_syscall(int argc, char **argv);
int bench_pagefault(int argc, char **argv);
int bench_pipe(int argc, char **argv);
int bench_memcpy(int argc, char **argv);
int bench_crc32(int argc, char **argv);
int bench_nbody(int argc, char **argv);
int bench_gen(int argc, char **argv);

#endif
