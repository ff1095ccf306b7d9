/*
 * gen BYTES: writes BYTES of deterministic, text-like data to stdout: lines of
 * words drawn from a small vocabulary and decimal numbers by xorshift64. It
 * compresses about 3:1 with gzip, unlike zeros (trivial) or random bytes
 * (incompressible), so gzip does real matching and Huffman work on it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbench.h"

static const char *const words[] = {
	"guest", "host", "block", "page", "table", "cache", "kernel", "busybox",
	"translate", "compile", "interrupt", "timer", "serial", "console", "memory",
	"register", "flags", "segment", "descriptor", "vector", "exception", "fault",
	"syscall", "return", "branch", "chain", "exit", "entry", "decode", "rewrite",
	"lower", "emit",
};

int bench_gen(int argc, char **argv)
{
	static char buf[1 << 16];
	unsigned long want, done = 0;
	uint64_t s = 0x853c49e6748fea9bULL;
	size_t n = 0;

	if (argc != 2 || (want = strtoul(argv[1], NULL, 0)) == 0) {
		fprintf(stderr, "usage: cbench gen BYTES\n");
		return 2;
	}
	while (done < want) {
		uint64_t r = cb_next(&s);
		char word[48];
		int len;

		if (r % 7 == 0)
			len = snprintf(word, sizeof word, "%lu ", (unsigned long)(r >> 40));
		else
			len = snprintf(word, sizeof word, "%s%s",
				       words[(r >> 8) % (sizeof words / sizeof words[0])],
				       (r >> 20) % 11 == 0 ? "\n" : " ");
		if ((unsigned long)len > want - done)
			len = (int)(want - done);
		if (n + (size_t)len > sizeof buf) {
			if (fwrite(buf, 1, n, stdout) != n)
				return 1;
			n = 0;
		}
		memcpy(buf + n, word, (size_t)len);
		n += (size_t)len;
		done += (unsigned long)len;
	}
	if (fwrite(buf, 1, n, stdout) != n || fflush(stdout))
		return 1;
	return 0;
}
