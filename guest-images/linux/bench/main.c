/* cbench NAME [ARGS]: runs one micro-benchmark (see cbench.h). */
#include <stdio.h>
#include <string.h>

#include "cbench.h"

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *about;
} benches[] = {
	{ "syscall", bench_syscall, "1M getppid() system calls through syscall()" },
	{ "page-fault", bench_pagefault, "4 x (mmap 64 MiB anonymous, write each 4 KiB page, munmap)" },
	{ "pipe", bench_pipe, "50k one-byte round trips between two processes over two pipes" },
	{ "memcpy", bench_memcpy, "256 MiB copied as 64 memcpy calls of 4 MiB" },
	{ "crc32", bench_crc32, "table-driven CRC-32 over 32 passes of a 1 MiB buffer" },
	{ "nbody", bench_nbody, "5-body gravity simulation in double, 200k steps" },
	{ "gen", bench_gen, "gen BYTES: deterministic text on stdout (input of the gzip workload)" },
};

int main(int argc, char **argv)
{
	size_t i;

	if (argc >= 2) {
		for (i = 0; i < sizeof benches / sizeof benches[0]; i++)
			if (strcmp(argv[1], benches[i].name) == 0)
				return benches[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "usage: cbench NAME [ARGS]\n");
	for (i = 0; i < sizeof benches / sizeof benches[0]; i++)
		fprintf(stderr, "  %-10s %s\n", benches[i].name, benches[i].about);
	return 2;
}
