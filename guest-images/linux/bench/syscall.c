/* System call round trip: getppid() through syscall(), so libc cannot cache it. */
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cbench.h"

#define CALLS 1000000L

int bench_syscall(int argc, char **argv)
{
	long first = syscall(SYS_getppid), same = 0, i;

	(void)argc;
	(void)argv;
	for (i = 0; i < CALLS; i++)
		same += syscall(SYS_getppid) == first;
	printf("syscall: getppid calls=%ld same=%ld\n", CALLS, same);
	return same == CALLS ? 0 : 1;
}
