/*
 * torture_bus.c - the bus under fire, bounded in time and count: writer
 * processes append in tight loops and are SIGKILLed every few milliseconds,
 * often while holding the lock, and respawned; reader processes check every
 * record they get while one of them is stopped again and again so that it
 * is lapped.
 *
 * Writers append alone, in batches whose wakes are deferred, and in batches
 * under one lock.
 *
 * Every payload carries its writer, that writer's counter, the seq its fill
 * was given, its length and a checksum. A reader fails on a record that is
 * torn or corrupt, on a seq that is not exactly the last one plus the
 * records it was told it lost plus the voids it skipped (so a lap that goes
 * unreported, a repeated seq or a seq out of order all fail), and on a
 * writer's counter that does not increase.
 *
 * Usage: torture_bus [seconds] (default 4; the whole run takes about that).
 */
#include "bus.h"
#include "../../tests/tap.h"
#include "testutil.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NW 3              /* writers */
#define NR 3              /* readers; the last one is stopped now and then */
#define RING (64 << 10)   /* small, so that laps come quickly */
#define MAX_KILLS 3000
#define PAYLOAD_MAGIC 0x7e57b05u

struct payload {
	uint32_t magic;
	uint32_t writer;
	uint64_t counter;
	uint64_t seq;       /* as given to the fill */
	uint32_t len;       /* whole payload, checksum included */
	uint32_t pad;
	/* filler, then a uint64_t checksum of everything before it */
};

/* What the processes share besides the bus. */
struct shared {
	uint64_t counter[NW];        /* each writer's last counter, kept across respawns */
	volatile int phase;          /* 0 running, 1 writers gone: drain and exit */
	uint64_t final_head_seq;
	struct rstat {
		uint64_t delivered, laps, lost, voids, corrupt, sleeps, idle_timeouts, end_seq;
		uint64_t violations;
		char first[200];
	} r[NR];
};

static struct shared *sh;
static struct bus bus;
static int efd[NR + NW];

static void wake(unsigned slot, void *arg)
{
	uint64_t one = 1;
	if (write(efd[slot], &one, sizeof(one)) < 0 && errno != EAGAIN)
		abort();
}

/* ---- writers ------------------------------------------------------------ */

struct wfill {
	unsigned id;
};

static void fill(void *dst, size_t len, uint64_t seq, void *arg)
{
	struct wfill *w = arg;
	struct payload *p = dst;
	uint64_t c = sh->counter[w->id] + 1, s = c * 0x9e3779b97f4a7c15u ^ seq;

	p->magic = PAYLOAD_MAGIC;
	p->writer = w->id;
	p->counter = c;
	p->seq = seq;
	p->len = (uint32_t)len;
	p->pad = 0;
	for (size_t i = sizeof(*p); i + 8 < len; i += 8) {
		uint64_t v = xs(&s);
		memcpy((char *)dst + i, &v, 8);
	}
	uint64_t sum = sum64(dst, len - 8);
	memcpy((char *)dst + len - 8, &sum, 8);
	__atomic_store_n(&sh->counter[w->id], c, __ATOMIC_RELAXED);
}

static void writer(unsigned id)
{
	struct wfill w = { .id = id };
	uint64_t rs = now_ns() ^ ((uint64_t)getpid() << 32) ^ id;

	bus_set_waker(&bus, wake, NULL);
	for (;;) {
		/* Single appends; batches with wakes deferred to their end; and
		 * batches under one lock, published at its release. */
		unsigned kind = (unsigned)(xs(&rs) % 4);
		unsigned batch = kind >= 2 ? 1 + (unsigned)(xs(&rs) % 16) : 1;
		if (kind == 2)
			bus_wake_defer(&bus);
		if (kind == 3 && bus_lock(&bus) < 0)
			_exit(10);
		for (unsigned i = 0; i < batch; i++) {
			/* Multiples of 8, 40 bytes to about 1.5 KB, a few large ones. */
			size_t len = 40 + 8 * (xs(&rs) % (xs(&rs) % 64 == 0 ? 1000 : 180));
			int rc = kind == 3 ? bus_append_locked(&bus, 1 + id, len, fill, &w, NULL)
					   : bus_append_fn(&bus, 1 + id, len, fill, &w, NULL);
			if (rc < 0)
				_exit(10);
		}
		if (kind == 3)
			bus_unlock(&bus);
		if (kind == 2)
			bus_wake_flush(&bus);
	}
}

/* ---- readers ------------------------------------------------------------ */

struct rctx {
	struct bus_reader r;
	struct rstat *st;
	uint64_t last_seq, last_lost, last_voids;
	uint64_t last_counter[NW];
};

static void violation(struct rctx *c, const char *what, uint64_t seq)
{
	if (c->st->violations++ == 0)
		snprintf(c->st->first, sizeof(c->st->first), "%s at seq %llu (last %llu)", what,
			 (unsigned long long)seq, (unsigned long long)c->last_seq);
}

static int check(void *arg, uint64_t seq, unsigned type, const void *data, size_t len)
{
	struct rctx *c = arg;
	struct payload p;

	/* Exactly one more than the last, plus what we were told we lost and
	 * the voids skipped since: a gap nobody reported fails here. */
	uint64_t want = c->last_seq + 1 + (c->r.lost - c->last_lost) + (c->r.voids - c->last_voids);
	if (seq != want)
		violation(c, seq > want ? "unexplained gap" : "seq repeated or backwards", seq);
	c->last_seq = seq;
	c->last_lost = c->r.lost;
	c->last_voids = c->r.voids;

	if (len < sizeof(p) + 8 || len % 8 != 0) {
		violation(c, "bad length", seq);
		return 0;
	}
	memcpy(&p, data, sizeof(p));
	uint64_t sum;
	memcpy(&sum, (const char *)data + len - 8, 8);
	if (p.magic != PAYLOAD_MAGIC || p.len != len || sum != sum64(data, len - 8)) {
		violation(c, "torn or corrupt payload", seq);
		return 0;
	}
	if (p.seq != seq)
		violation(c, "payload's seq is not the record's", seq);
	if (p.writer >= NW || type != 1 + p.writer) {
		violation(c, "bad writer", seq);
		return 0;
	}
	if (p.counter <= c->last_counter[p.writer])
		violation(c, "writer counter did not increase", seq);
	c->last_counter[p.writer] = p.counter;
	return 0;
}

static void reader(unsigned slot)
{
	struct rctx c;
	uint64_t lost;

	memset(&c, 0, sizeof(c));
	c.st = &sh->r[slot];
	if (bus_reader_init(&c.r, &bus, slot) < 0)
		_exit(20);
	c.last_seq = c.r.seq - 1;
	for (;;) {
		int n = bus_read(&c.r, check, &c, 256, &lost);
		if (n > 0 || lost > 0 || bus_reader_pending(&c.r))
			continue;
		if (__atomic_load_n(&sh->phase, __ATOMIC_ACQUIRE) == 1)
			break;
		if (!bus_reader_sleep(&c.r))
			continue;
		struct pollfd pf = { .fd = efd[slot], .events = POLLIN };
		if (poll(&pf, 1, 200) == 0 && bus_reader_pending(&c.r))
			c.st->idle_timeouts++; /* slept through data: a wake went missing */
		uint64_t v;
		if (read(efd[slot], &v, sizeof(v)) < 0 && errno != EAGAIN)
			_exit(21);
		bus_reader_wake_cancel(&c.r);
	}
	c.st->delivered = c.r.delivered;
	c.st->laps = c.r.laps;
	c.st->lost = c.r.lost;
	c.st->voids = c.r.voids;
	c.st->corrupt = c.r.corrupt;
	c.st->sleeps = bus.slots[slot].sleeps;
	c.st->end_seq = c.r.seq;
	_exit(0);
}

/* ---- the master --------------------------------------------------------- */

int main(int argc, char **argv)
{
	char dir[] = "/tmp/rotor-torture-bus-XXXXXX", path[256];
	double seconds = argc > 1 ? atof(argv[1]) : 4.0;
	pid_t wpid[NW], rpid[NR];
	uint64_t rs = now_ns(), kills = 0, kills_in_lock = 0, kills_mid_record = 0, stops = 0;
	int st;

	if (seconds <= 0 || seconds > 15)
		seconds = 4.0;
	alarm((unsigned)seconds + 30); /* a hang fails the test rather than the CI */
	if (mkdtemp(dir) == NULL)
		return 99;
	snprintf(path, sizeof(path), "%s/bus.seg", dir);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 99;
	memset(sh, 0, sizeof(*sh));
	ok(bus_create(&bus, path, RING, NR + NW) == 0, "create a %d KiB ring, %d slots", RING >> 10, NR + NW);
	for (int i = 0; i < NR + NW; i++)
		if ((efd[i] = eventfd(0, EFD_NONBLOCK)) < 0)
			return 99;
	bus_set_waker(&bus, wake, NULL);

	for (unsigned i = 0; i < NR; i++) {
		if ((rpid[i] = fork()) == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			reader(i);
		}
	}
	sleep_us(20000); /* let the readers take their slots */
	for (unsigned i = 0; i < NW; i++)
		wpid[i] = spawn(writer, i);

	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9), next_stop = t0 + 100000000;
	bool stopped = false;
	while (now_ns() < end && kills < MAX_KILLS) {
		sleep_us(200 + (long)(xs(&rs) % 2800));
		unsigned w = (unsigned)(xs(&rs) % NW);
		kill(wpid[w], SIGKILL);
		waitpid(wpid[w], &st, 0);
		kills++;
		/* Did it die holding the lock (and with a record half made)? */
		if (__atomic_load_n(&bus.h->owner, __ATOMIC_RELAXED) == wpid[w]) {
			kills_in_lock++;
			if (__atomic_load_n(&bus.h->w_seq, __ATOMIC_RELAXED) ==
			    __atomic_load_n(&bus.h->tail_seq, __ATOMIC_RELAXED))
				kills_mid_record++;
		}
		/* As the master does: its writer slot, a repair, a wake for all. */
		if (kills % 2 == 0)
			bus_slot_release(&bus, NR + w);
		wpid[w] = spawn(writer, w);

		/* Stop the last reader for 50-250 ms now and then: it must be lapped. */
		uint64_t t = now_ns();
		if (!stopped && t >= next_stop) {
			kill(rpid[NR - 1], SIGSTOP);
			stops++;
			stopped = true;
			next_stop = t + 50000000 + xs(&rs) % 200000000;
		} else if (stopped && t >= next_stop) {
			kill(rpid[NR - 1], SIGCONT);
			stopped = false;
			next_stop = t + 100000000 + xs(&rs) % 200000000;
		}
	}
	if (stopped)
		kill(rpid[NR - 1], SIGCONT);

	/* The writers go the same way, then the readers drain and report. */
	for (unsigned i = 0; i < NW; i++) {
		kill(wpid[i], SIGKILL);
		waitpid(wpid[i], &st, 0);
		kills++;
		bus_slot_release(&bus, NR + i);
	}
	uint64_t nrec = 0;
	int vrc = bus_verify(&bus, &nrec); /* also repairs a lock left by the last kill */
	struct bus_stats bs;
	bus_stats(&bus, &bs);
	__atomic_store_n(&sh->phase, 1, __ATOMIC_RELEASE);
	bus_wake_all(&bus);
	bool readers_ok = true;
	for (unsigned i = 0; i < NR; i++) {
		waitpid(rpid[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			readers_ok = false;
	}
	double secs = (double)(now_ns() - t0) / 1e9;

	ok(readers_ok, "every reader ran to the end");
	ok(vrc == 0, "the ring verifies after the last kill (%llu records in it)", (unsigned long long)nrec);
	printf("# %.1f s: %llu appends (%.0f/s), %llu kills, %llu while holding the lock, %llu of them mid-record\n",
	       secs, (unsigned long long)bs.appends, bs.appends / secs, (unsigned long long)kills,
	       (unsigned long long)kills_in_lock, (unsigned long long)kills_mid_record);
	printf("# repairs %llu, voids %llu, laps %llu, records lost to laps %llu, wakes %llu, reader stops %llu\n",
	       (unsigned long long)bs.repairs, (unsigned long long)bs.voids, (unsigned long long)bs.laps,
	       (unsigned long long)bs.lost, (unsigned long long)bs.wakes, (unsigned long long)stops);
	ok(kills >= 100, "writers were killed %llu times", (unsigned long long)kills);
	ok(bs.repairs > 0 && bs.voids > 0, "kills landed inside appends: %llu repairs, %llu voided reservations",
	   (unsigned long long)bs.repairs, (unsigned long long)bs.voids);
	/* The counters are monitoring: a kill between a commit and its count
	 * may leave one uncounted. The seqs themselves are exact (readers). */
	uint64_t counted = bs.appends + bs.voids, seqs = bs.head_seq - 1;
	ok(counted <= seqs && seqs - counted <= bs.repairs,
	   "seqs handed out (%llu) = appends + voids counted (%llu), give or take a kill per repair",
	   (unsigned long long)seqs, (unsigned long long)counted);
	for (unsigned i = 0; i < NR; i++) {
		struct rstat *r = &sh->r[i];
		printf("# reader %u%s: %llu records verified, %llu laps, %llu lost, %llu voids, %llu sleeps, "
		       "%llu idle timeouts with data waiting\n",
		       i, i == NR - 1 ? " (stopped now and then)" : "", (unsigned long long)r->delivered,
		       (unsigned long long)r->laps, (unsigned long long)r->lost, (unsigned long long)r->voids,
		       (unsigned long long)r->sleeps, (unsigned long long)r->idle_timeouts);
		ok(r->violations == 0, "reader %u: no torn record, seqs exact, counters increasing%s%s", i,
		   r->violations ? ": " : "", r->violations ? r->first : "");
		ok(r->delivered > 1000, "reader %u verified %llu records", i, (unsigned long long)r->delivered);
		ok(r->end_seq == bs.head_seq, "reader %u accounted for every seq up to the end", i);
		ok(r->corrupt == 0, "reader %u met no record failing its check", i);
	}
	ok(sh->r[NR - 1].laps > 0, "the stopped reader was lapped, and said so (%llu times)",
	   (unsigned long long)sh->r[NR - 1].laps);
	ok(bs.corrupt == 0, "no ring reset was ever needed");
	bus_unlink(&bus);
	bus_detach(&bus);
	rmdir(dir);
	return tap_done();
}
