/*
 * testutil.h - helpers shared by the shm test and torture programs
 * (shm/tests/): clocks, a pseudo-random generator, a payload checksum,
 * paths in a test's directory, reading and overwriting bytes of a file,
 * and forking a child.
 * Everything is static inline, so a program that uses a part gets no
 * warning about the rest.
 */
#ifndef ROTOR_SHM_TESTUTIL_H
#define ROTOR_SHM_TESTUTIL_H

#include <fcntl.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---- time --------------------------------------------------------------- */

/* CLOCK_MONOTONIC, in nanoseconds. */
static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void sleep_us(long us)
{
	struct timespec ts = { .tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000 };
	nanosleep(&ts, NULL);
}

/* ---- random numbers and checksums --------------------------------------- */

/* xorshift64: the next number of the state *S (never 0). */
static inline uint64_t xs(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* Checksum of the LEN bytes at P (LEN a multiple of 8). */
static inline uint64_t sum64(const void *p, size_t len)
{
	const unsigned char *c = p;
	uint64_t h = UINT64_C(0xcbf29ce484222325), w;
	for (size_t i = 0; i < len; i += 8) {
		memcpy(&w, c + i, 8);
		h = (h ^ w) * UINT64_C(0x100000001b3);
		h ^= h >> 29;
	}
	return h;
}

/* ---- files -------------------------------------------------------------- */

/* "DIR/NAME" into BUF of N bytes. */
static inline void path_of(char *buf, size_t n, const char *dir, const char *name)
{
	snprintf(buf, n, "%s/%s", dir, name);
}

/* Overwrites LEN bytes at OFF of file PATH with BYTES; aborts on failure. */
static inline void poke(const char *path, off_t off, const void *bytes, size_t len)
{
	int fd = open(path, O_WRONLY);
	if (fd < 0 || pwrite(fd, bytes, len, off) != (ssize_t)len)
		abort();
	close(fd);
}

/* Reads LEN bytes at OFF of file PATH into BYTES; aborts on failure. */
static inline void peek(const char *path, off_t off, void *bytes, size_t len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0 || pread(fd, bytes, len, off) != (ssize_t)len)
		abort();
	close(fd);
}

/* ---- processes ---------------------------------------------------------- */

/* Forks a child that dies with its parent, runs FN(ARG) and exits; returns
 * its pid. */
static inline pid_t spawn(void (*fn)(unsigned), unsigned arg)
{
	pid_t pid = fork();
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		fn(arg);
		_exit(0);
	}
	return pid;
}

#endif
