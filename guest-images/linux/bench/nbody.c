/*
 * Float kernel: five bodies under Newtonian gravity (G = 1), velocity Verlet
 * style leapfrog in double precision, 200k steps; prints the total energy
 * before and after (the same IEEE operations in the same order everywhere, so
 * the printed digits must match exactly).
 */
#include <math.h>
#include <stdio.h>

#include "cbench.h"

#define N 5
#define STEPS 200000
#define DT 0.001

struct body {
	double x, y, z, vx, vy, vz, m;
};

static double energy(const struct body *b)
{
	double e = 0;
	int i, j;

	for (i = 0; i < N; i++) {
		e += 0.5 * b[i].m * (b[i].vx * b[i].vx + b[i].vy * b[i].vy + b[i].vz * b[i].vz);
		for (j = i + 1; j < N; j++) {
			double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
			e -= b[i].m * b[j].m / sqrt(dx * dx + dy * dy + dz * dz);
		}
	}
	return e;
}

static void step(struct body *b)
{
	int i, j;

	for (i = 0; i < N; i++) {
		for (j = i + 1; j < N; j++) {
			double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
			double d2 = dx * dx + dy * dy + dz * dz;
			double f = DT / (d2 * sqrt(d2));
			b[i].vx -= dx * b[j].m * f;
			b[i].vy -= dy * b[j].m * f;
			b[i].vz -= dz * b[j].m * f;
			b[j].vx += dx * b[i].m * f;
			b[j].vy += dy * b[i].m * f;
			b[j].vz += dz * b[i].m * f;
		}
	}
	for (i = 0; i < N; i++) {
		b[i].x += DT * b[i].vx;
		b[i].y += DT * b[i].vy;
		b[i].z += DT * b[i].vz;
	}
}

int bench_nbody(int argc, char **argv)
{
	/* A heavy central body and four lighter ones on roughly circular,
	 * mutually inclined orbits. */
	struct body b[N] = {
		{ 0, 0, 0, 0, 0, 0, 100 },
		{ 1, 0, 0, 0, 10, 0, 0.01 },
		{ 0, 2, 0.1, -7.07, 0, 0.2, 0.02 },
		{ -3, 0, -0.2, 0, -5.77, 0.1, 0.005 },
		{ 0, -4.5, 0.3, 4.71, 0, -0.3, 0.03 },
	};
	double e0;
	int s;

	(void)argc;
	(void)argv;
	e0 = energy(b);
	for (s = 0; s < STEPS; s++)
		step(b);
	printf("nbody: steps=%d e0=%.12f e1=%.12f x1=%.12f\n", STEPS, e0, energy(b), b[1].x);
	return 0;
}
