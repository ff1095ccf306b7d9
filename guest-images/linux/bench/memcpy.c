/*
 * memcpy bandwidth: 64 copies of 4 MiB (256 MiB in all) back and forth
 * between two buffers, one byte changed between copies so no copy is dead.
 * glibc picks its memcpy by CPUID, so the guest and the host may run
 * different variants; the checksum does not depend on which.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbench.h"

#define BYTES (4UL << 20)
#define COPIES 64

int bench_memcpy(int argc, char **argv)
{
	unsigned char *a = malloc(BYTES), *b = malloc(BYTES);
	uint64_t s = 0x9e3779b97f4a7c15ULL, sum = 0, w;
	unsigned long i;
	int c;

	(void)argc;
	(void)argv;
	if (!a || !b) {
		fprintf(stderr, "memcpy: out of memory\n");
		return 1;
	}
	for (i = 0; i < BYTES; i += 8) {
		w = cb_next(&s);
		memcpy(a + i, &w, 8);
	}
	for (c = 0; c < COPIES; c++) {
		unsigned char *src = c & 1 ? b : a, *dst = c & 1 ? a : b;
		memcpy(dst, src, BYTES);
		dst[(c * 65537UL) % BYTES] ^= (unsigned char)c;
	}
	for (i = 0; i < BYTES; i += 4096) {
		memcpy(&w, a + i, 8);
		sum = sum * 31 + w;
	}
	printf("memcpy: bytes=%lu sum=%016llx\n", BYTES * COPIES, (unsigned long long)sum);
	free(a);
	free(b);
	return 0;
}
