/*
 * Pipe ping-pong: the parent sends a byte down one pipe, the child answers
 * with the byte plus one on another; 50k round trips, four system calls and
 * two context switches each.
 */
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cbench.h"

#define TRIPS 50000L

int bench_pipe(int argc, char **argv)
{
	int down[2], up[2], status;
	unsigned long sum = 0;
	unsigned char b;
	pid_t pid;
	long i;

	(void)argc;
	(void)argv;
	if (pipe(down) || pipe(up)) {
		perror("pipe: pipe");
		return 1;
	}
	pid = fork();
	if (pid < 0) {
		perror("pipe: fork");
		return 1;
	}
	if (pid == 0) {
		close(down[1]);
		close(up[0]);
		while (read(down[0], &b, 1) == 1) {
			b++;
			if (write(up[1], &b, 1) != 1)
				_exit(1);
		}
		_exit(0);
	}
	close(down[0]);
	close(up[1]);
	for (i = 0; i < TRIPS; i++) {
		b = (unsigned char)i;
		if (write(down[1], &b, 1) != 1 || read(up[0], &b, 1) != 1) {
			perror("pipe: round trip");
			return 1;
		}
		sum += b;
	}
	close(down[1]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "pipe: the child failed\n");
		return 1;
	}
	printf("pipe: round-trips=%ld sum=%lu\n", TRIPS, sum);
	return 0;
}
