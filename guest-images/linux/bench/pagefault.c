/*
 * Page-fault cost: map 64 MiB of anonymous memory, write one byte in every
 * 4 KiB page (one fault each: transparent huge pages are refused with
 * madvise), read them back, unmap; four rounds.
 */
#include <stdio.h>
#include <sys/mman.h>

#include "cbench.h"

#define BYTES (64UL << 20)
#define PAGE 4096UL
#define ROUNDS 4

int bench_pagefault(int argc, char **argv)
{
	unsigned long faults = 0, sum = 0, i;
	int r;

	(void)argc;
	(void)argv;
	for (r = 0; r < ROUNDS; r++) {
		unsigned char *p = mmap(NULL, BYTES, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) {
			perror("page-fault: mmap");
			return 1;
		}
		madvise(p, BYTES, MADV_NOHUGEPAGE);
		for (i = 0; i < BYTES / PAGE; i++)
			p[i * PAGE + (i & 0xff)] = (unsigned char)(i * 7 + r);
		for (i = 0; i < BYTES / PAGE; i++)
			sum += p[i * PAGE + (i & 0xff)];
		faults += BYTES / PAGE;
		munmap(p, BYTES);
	}
	printf("page-fault: pages=%lu sum=%lu\n", faults, sum);
	return 0;
}
