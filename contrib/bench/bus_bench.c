/*
 * bus_bench.c - how fast the bus carries records from one producer process
 * to one consumer process (a benchmark, not a test: it never fails on a
 * number). 64-byte records by default, a 16 MiB ring, the producer pinned to
 * the first CPU and the consumer to the second when there are two.
 *
 * Modes:
 *   spin    the consumer polls bus_read; the producer's appends check for
 *           sleepers after each record (the default path)
 *   defer   the same, with the producer's wakes deferred per 64 records
 *   batch   the producer appends 64 records per bus_lock/bus_unlock (one
 *           publication per batch), the consumer polls
 *   sleep   the consumer sleeps on an eventfd whenever it has caught up
 *           (bus_reader_sleep), as a worker's loop does
 *
 * Build: gcc -std=gnu11 -O2 -D_GNU_SOURCE -Ishm shm/seg.c shm/bus.c \
 *            contrib/bench/bus_bench.c -lpthread -o bus_bench
 * Usage: bus_bench [seconds per mode] [record bytes]
 */
#include "bus.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { SPIN, DEFER, BATCH, SLEEP };
static const char *mode_name[] = { "spin", "defer", "batch", "sleep" };

struct shared {
	volatile int go, done;
	uint64_t last_seq;              /* the producer's last record */
	uint64_t got, lost, sum, sleeps;
	double consumer_secs;
};

static struct shared *sh;
static int efd;

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
	cpu_set_t set;
	if (sysconf(_SC_NPROCESSORS_ONLN) < 2)
		return;
	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	sched_setaffinity(0, sizeof(set), &set);
}

static void wake(unsigned slot, void *arg)
{
	uint64_t one = 1;
	if (write(efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		abort();
}

static int consume(void *arg, uint64_t seq, unsigned type, const void *data, size_t len)
{
	uint64_t first;
	memcpy(&first, data, sizeof(first)); /* touch the record, as a hub would */
	sh->sum += first;
	return 0;
}

static void consumer(struct bus *b, int mode)
{
	struct bus_reader r;
	uint64_t lost;

	pin(1);
	if (bus_reader_init(&r, b, 0) < 0)
		_exit(1);
	__atomic_store_n(&sh->go, 1, __ATOMIC_RELEASE);
	double t0 = now();
	for (;;) {
		int n = bus_read(&r, consume, NULL, 0, &lost);
		if (n > 0 || lost > 0)
			continue;
		if (__atomic_load_n(&sh->done, __ATOMIC_ACQUIRE) && r.seq > sh->last_seq)
			break;
		if (mode != SLEEP || !bus_reader_sleep(&r))
			continue;
		struct pollfd p = { .fd = efd, .events = POLLIN };
		poll(&p, 1, 100);
		uint64_t v;
		if (read(efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
			_exit(1);
		bus_reader_wake_cancel(&r);
		sh->sleeps++;
	}
	sh->consumer_secs = now() - t0;
	sh->got = r.delivered;
	sh->lost = r.lost;
	_exit(0);
}

static void fill(void *dst, size_t len, uint64_t seq, void *arg)
{
	memcpy(dst, arg, len);
}

static void run(const char *path, int mode, double secs, size_t len)
{
	struct bus b;
	unsigned char rec[4096];
	uint64_t n = 0, seq = 0;
	int st;

	memset(sh, 0, sizeof(*sh));
	memset(rec, 0x5a, sizeof(rec));
	if (bus_create(&b, path, BUS_RING_DEFAULT, 1) < 0) {
		perror("bus_create");
		exit(1);
	}
	bus_set_waker(&b, wake, NULL);
	pid_t pid = fork();
	if (pid == 0)
		consumer(&b, mode);
	pin(0);
	while (!__atomic_load_n(&sh->go, __ATOMIC_ACQUIRE))
		sched_yield();

	double t0 = now(), t1;
	for (;;) {
		if (mode == DEFER)
			bus_wake_defer(&b);
		if (mode == BATCH && bus_lock(&b) < 0) {
			perror("bus_lock");
			exit(1);
		}
		for (int i = 0; i < 64; i++) {
			memcpy(rec, &n, sizeof(n));
			int rc = mode == BATCH ? bus_append_locked(&b, 1, len, fill, rec, &seq)
					       : bus_append(&b, 1, rec, len, &seq);
			if (rc < 0) {
				perror("bus_append");
				exit(1);
			}
			n++;
		}
		if (mode == BATCH)
			bus_unlock(&b);
		if (mode == DEFER)
			bus_wake_flush(&b);
		if ((n & 4095) == 0 && (t1 = now()) - t0 >= secs)
			break;
	}
	sh->last_seq = seq;
	__atomic_store_n(&sh->done, 1, __ATOMIC_RELEASE);
	bus_wake_all(&b);
	waitpid(pid, &st, 0);

	struct bus_stats bs;
	bus_stats(&b, &bs);
	printf("%-6s %4zu B: produced %6.2f M rec/s; consumer got %6.2f M rec/s, lost %llu (%llu laps)",
	       mode_name[mode], len, (double)n / (t1 - t0) / 1e6,
	       (double)sh->got / sh->consumer_secs / 1e6, (unsigned long long)sh->lost,
	       (unsigned long long)bs.laps);
	if (mode == SLEEP)
		printf(", %llu sleeps, %llu wakes", (unsigned long long)sh->sleeps, (unsigned long long)bs.wakes);
	printf("\n");
	bus_unlink(&b);
	bus_detach(&b);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/rotor-bus-bench-XXXXXX", path[256];
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	size_t len = argc > 2 ? (size_t)atol(argv[2]) : 64;

	if (secs <= 0)
		secs = 1.0;
	if (len < 8 || len > 4096)
		len = 64;
	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(path, sizeof(path), "%s/bus.seg", dir);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	efd = eventfd(0, EFD_NONBLOCK);
	if (sh == MAP_FAILED || efd < 0)
		return 1;
	for (int m = SPIN; m <= SLEEP; m++)
		run(path, m, secs, len);
	rmdir(dir);
	return 0;
}
