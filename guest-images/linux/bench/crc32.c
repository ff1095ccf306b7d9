/*
 * Integer kernel: CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) with a
 * 256-entry table, one byte per step, over 32 passes of a 1 MiB buffer; each
 * pass starts from the previous pass's CRC. About 8 instructions per byte.
 */
#include <stdio.h>
#include <stdlib.h>

#include "cbench.h"

#define BYTES (1UL << 20)
#define PASSES 32

int bench_crc32(int argc, char **argv)
{
	unsigned char *buf = malloc(BYTES);
	uint32_t table[256], crc = 0;
	uint64_t s = 0x2545f4914f6cdd1dULL;
	unsigned long i;
	int k;

	(void)argc;
	(void)argv;
	if (!buf) {
		fprintf(stderr, "crc32: out of memory\n");
		return 1;
	}
	for (i = 0; i < 256; i++) {
		uint32_t c = (uint32_t)i;
		for (k = 0; k < 8; k++)
			c = c & 1 ? 0xedb88320U ^ (c >> 1) : c >> 1;
		table[i] = c;
	}
	for (i = 0; i < BYTES; i++)
		buf[i] = (unsigned char)(cb_next(&s) >> 32);
	for (k = 0; k < PASSES; k++) {
		uint32_t c = ~crc;
		for (i = 0; i < BYTES; i++)
			c = table[(c ^ buf[i]) & 0xff] ^ (c >> 8);
		crc = ~c;
	}
	printf("crc32: bytes=%lu crc=%08x\n", BYTES * PASSES, crc);
	free(buf);
	return 0;
}
