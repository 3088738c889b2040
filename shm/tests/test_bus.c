/*
 * test_bus.c - the bus ring: append and read, order, wrap-around, records of
 * every size, the size limit, laps with their exact loss, fills that see
 * their seq, the robust lock taken over from a writer killed at each step
 * of an append, the sleep/wake protocol between two processes, header
 * validation on attach, and a ring damaged by a stray write.
 */
#include "bus.h"
#include "../../tests/tap.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/rotor-test-bus-XXXXXX";

/* The payload of records of types 0..3: byte i of record SEQ. */
static unsigned char pat(uint64_t seq, size_t i)
{
	return (unsigned char)(seq * 131 + i * 7 + 1);
}

static void fill_pat(void *dst, size_t len, uint64_t seq, void *arg)
{
	unsigned char *d = dst;
	for (size_t i = 0; i < len; i++)
		d[i] = pat(seq, i);
}

/* What a reader saw. */
struct seen {
	uint64_t seq[20000];
	unsigned type[20000];
	size_t len[20000];
	unsigned n;
	unsigned bad;           /* payloads that did not match pat() */
	unsigned stop_after;    /* return 1 once n reaches it */
	struct bus *append_to;  /* append this many records on the first one */
	unsigned append_n;
};

static int collect(void *arg, uint64_t seq, unsigned type, const void *data, size_t len)
{
	struct seen *s = arg;
	const unsigned char *d = data;
	for (size_t i = 0; type <= 3 && i < len; i++) /* types 0..3 carry pat() */
		if (d[i] != pat(seq, i)) {
			s->bad++;
			break;
		}
	if (s->n < 20000) {
		s->seq[s->n] = seq;
		s->type[s->n] = type;
		s->len[s->n] = len;
	}
	s->n++;
	if (s->append_to != NULL) {
		struct bus *b = s->append_to;
		s->append_to = NULL;
		for (unsigned i = 0; i < s->append_n; i++)
			bus_append_fn(b, 1, 64, fill_pat, NULL, NULL);
	}
	return s->stop_after != 0 && s->n >= s->stop_after;
}

static struct seen S, T; /* T: what the second reader saw, unchecked */

static void seen_reset(void)
{
	memset(&S, 0, sizeof(S));
}

/* Seqs seen are contiguous from FIRST. */
static bool seen_contiguous(uint64_t first)
{
	for (unsigned i = 0; i < S.n; i++)
		if (S.seq[i] != first + i)
			return false;
	return true;
}

/* Reads everything R has into SEEN, summing losses into *LOST. */
static unsigned drain_into(struct bus_reader *r, struct seen *seen, uint64_t *lost)
{
	unsigned total = 0;
	uint64_t l;
	int n;
	*lost = 0;
	while ((n = bus_read(r, collect, seen, 0, &l)) > 0 || l > 0) {
		total += (unsigned)n;
		*lost += l;
	}
	return total;
}

static unsigned drain(struct bus_reader *r, uint64_t *lost)
{
	return drain_into(r, &S, lost);
}

static void drain2(struct bus_reader *r)
{
	uint64_t lost;
	memset(&T, 0, sizeof(T));
	drain_into(r, &T, &lost);
}

/* ---- robust lock: children that die holding the lock ------------------- */

static int die_pipe[2];

static void fill_and_exit(void *dst, size_t len, uint64_t seq, void *arg)
{
	memset(dst, 0xee, len / 2); /* a half-written record */
	_exit(0);
}

static void fill_and_hang(void *dst, size_t len, uint64_t seq, void *arg)
{
	memset(dst, 0xee, len / 2);
	if (write(die_pipe[1], "x", 1) != 1)
		_exit(1);
	for (;;)
		pause();
}

/* Writes the whole record, moves tail, then dies before tail_seq says the
 * record is complete. */
static void fill_and_die_completing(void *dst, size_t len, uint64_t seq, void *arg)
{
	struct bus *b = arg;
	fill_pat(dst, len, seq, NULL);
	b->h->tail = b->h->w_end;
	_exit(0);
}

/* Writes the whole record, completes it, then dies in the middle of
 * publishing it: pub_ver odd, head_seq stored, head not. */
static void fill_and_die_publishing(void *dst, size_t len, uint64_t seq, void *arg)
{
	struct bus *b = arg;
	fill_pat(dst, len, seq, NULL);
	b->h->tail = b->h->w_end;
	b->h->tail_seq = seq + 1;
	b->h->pub_ver++;
	b->h->head_seq = seq + 1;
	_exit(0);
}

/* Forks a child that appends LEN bytes with FILL (ARG) and dies; when HANG,
 * waits until it is inside the fill and SIGKILLs it. Returns its status. */
static int child_dies_appending(struct bus *b, size_t len, bus_fill_fn *fill, void *arg, bool hang)
{
	char c;
	int st;
	if (pipe(die_pipe) < 0)
		abort();
	pid_t pid = fork();
	if (pid == 0) {
		bus_append_fn(b, 3, len, fill, arg, NULL);
		_exit(2); /* not reached */
	}
	close(die_pipe[1]);
	if (hang) {
		if (read(die_pipe[0], &c, 1) != 1)
			abort();
		kill(pid, SIGKILL);
	}
	waitpid(pid, &st, 0);
	close(die_pipe[0]);
	return st;
}

static struct bus *fill_bus;

static void fill_appends(void *dst, size_t len, uint64_t seq, void *arg)
{
	int *err = arg;
	memset(dst, 0, len);
	if (bus_append(fill_bus, 5, "x", 1, NULL) < 0)
		*err = errno;
}

/* ---- wake-ups ----------------------------------------------------------- */

static void wake_efd(unsigned slot, void *arg)
{
	int *efd = arg;
	uint64_t one = 1;
	if (write(efd[slot], &one, sizeof(one)) != sizeof(one))
		abort();
}

static bool readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, ms) == 1;
}

static int count_only(void *arg, uint64_t seq, unsigned type, const void *data, size_t len)
{
	(*(uint64_t *)arg)++;
	return 0;
}

/* The reader process of the wake test: acknowledges each record, and
 * blocks (up to 5 s: a lost wake-up) whenever bus_reader_sleep says so. */
static void wake_reader(struct bus *b, int efd, int ack, unsigned rounds)
{
	struct bus_reader r;
	uint64_t got = 0, lost;
	if (bus_reader_init(&r, b, 0) < 0)
		_exit(3);
	if (write(ack, "r", 1) != 1)
		_exit(3);
	while (got < rounds) {
		uint64_t before = got;
		bus_read(&r, count_only, &got, 0, &lost);
		if (lost)
			_exit(4);
		for (; before < got; before++)
			if (write(ack, "a", 1) != 1)
				_exit(3);
		if (got >= rounds || !bus_reader_sleep(&r))
			continue;
		if (!readable(efd, 5000))
			_exit(5); /* announced, not woken: a lost wake-up */
		uint64_t v;
		if (read(efd, &v, sizeof(v)) != sizeof(v))
			_exit(3);
		bus_reader_wake_cancel(&r);
	}
	_exit(0);
}

static uint64_t rnd_state = 88172645463325252ull;

static uint64_t rnd(void)
{
	return xs(&rnd_state);
}

static void test_wake_processes(const char *p)
{
	struct bus b;
	int efd[1], ack[2];
	const unsigned rounds = 20000;
	unsigned acked = 0, slow = 0;
	char c;
	int st;

	ok(bus_create(&b, p, 1 << 16, 1) == 0, "create a bus for the wake test");
	efd[0] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (efd[0] < 0 || pipe(ack) < 0)
		abort();
	bus_set_waker(&b, wake_efd, efd);
	pid_t pid = fork();
	if (pid == 0) {
		close(ack[0]);
		wake_reader(&b, efd[0], ack[1], rounds);
	}
	close(ack[1]);
	if (read(ack[0], &c, 1) != 1)
		abort();
	for (unsigned i = 0; i < rounds; i++) {
		/* Land the append anywhere in the reader's sleep sequence. */
		for (volatile unsigned spin = (unsigned)(rnd() % 3000); spin > 0; spin--)
			;
		if (bus_append(&b, 1, &i, sizeof(i), NULL) < 0)
			break;
		if (!readable(ack[0], 5000)) {
			slow++;
			break;
		}
		if (read(ack[0], &c, 1) != 1)
			break;
		acked++;
	}
	waitpid(pid, &st, 0);
	struct bus_stats bs;
	bus_stats(&b, &bs);
	is_int(acked, rounds, "every one of %u ping-pong records was read", rounds);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the reader never stayed asleep with data waiting (status %d)", st);
	ok(slow == 0, "no round waited on a sleeping reader");
	uint64_t sleeps = b.slots[0].sleeps;
	printf("# %u rounds: reader slept %llu times, %llu wakes sent\n", rounds,
	       (unsigned long long)sleeps, (unsigned long long)bs.wakes);
	ok(sleeps > 0 && bs.wakes > 0, "both sides of the race were exercised");
	close(ack[0]);
	close(efd[0]);
	bus_unlink(&b);
	bus_detach(&b);
}

int main(void)
{
	struct bus b, ro;
	struct bus_reader r, r2;
	struct bus_stats bs;
	uint64_t seq, lost, n;
	char p[256];

	if (mkdtemp(dir) == NULL)
		return 99;
	path_of(p, sizeof(p), dir, "bus.seg");

	/* ---- creation and parameters ---- */
	ok(bus_create(&b, p, 5000, 4) == -1 && errno == EINVAL, "a ring that is not a power of two is refused");
	ok(bus_create(&b, p, 2048, 4) == -1 && errno == EINVAL, "a ring under BUS_RING_MIN is refused");
	ok(bus_create(&b, p, 4096, 0) == -1 && errno == EINVAL, "zero slots are refused");
	ok(bus_create(&b, p, 4096, BUS_SLOTS_MAX + 1) == -1 && errno == EINVAL, "too many slots are refused");
	ok(bus_create(&b, p, 4096, 4) == 0, "create a 4 KiB ring with 4 slots");
	is_int(b.seg.size, 64 + 384 + 4 * 64 + 4096, "segment size is header, slots and ring");
	is_int(bus_max_record(&b), 4096 / 8 - 16, "the largest record is an eighth of the ring");
	ok(b.h->magic == BUS_MAGIC && b.seg.hdr->kind == SEG_KIND_BUS, "magics of segment and bus are set");

	/* ---- append and read, in order ---- */
	fill_bus = &b;
	ok(bus_reader_init(&r, &b, 0) == 0, "a reader in slot 0");
	is_int(b.slots[0].pid, getpid(), "the slot names its process");
	ok(!bus_reader_pending(&r), "nothing pending on an empty bus");
	ok(bus_append(&b, 7, "hello", 5, &seq) == 0 && seq == 1, "first record gets seq 1");
	ok(bus_append_fn(&b, 8, 100, fill_pat, NULL, &seq) == 0 && seq == 2, "second gets seq 2");
	ok(bus_append(&b, 9, NULL, 0, &seq) == 0 && seq == 3, "an empty record gets seq 3");
	ok(bus_reader_pending(&r), "the reader has records pending");
	seen_reset();
	ok(bus_read(&r, collect, &S, 1, &lost) == 1 && lost == 0, "max 1 delivers one record");
	ok(bus_read(&r, collect, &S, 0, &lost) == 2 && lost == 0, "the rest come on the next read");
	ok(S.seq[0] == 1 && S.type[0] == 7 && S.len[0] == 5, "first record: seq, type, length");
	ok(S.seq[1] == 2 && S.type[1] == 8 && S.len[1] == 100 && S.bad == 0, "second record: a fill's bytes");
	ok(S.seq[2] == 3 && S.type[2] == 9 && S.len[2] == 0, "third record: empty");
	ok(bus_read(&r, collect, &S, 0, &lost) == 0 && lost == 0, "then nothing");
	ok(bus_reader_init(&r2, &b, 1) == 0 && bus_read(&r2, collect, &S, 0, &lost) == 0,
	   "a reader starts at the head: it does not see older records");

	/* ---- slot claims (two masters share a bus during an upgrade) ---- */
	ok(bus_slot_claim(&b, 2, 4242) == 0, "a free slot is claimed");
	is_int(b.slots[2].pid, 4242, "the claim names the claiming master");
	ok(bus_slot_claim(&b, 2, 4343) == -1 && errno == EBUSY, "a claimed slot cannot be claimed again (EBUSY)");
	ok(bus_slot_claim(&b, 0, 4343) == -1 && errno == EBUSY, "nor one a reader holds");
	ok(bus_slot_claim(&b, 4, 4242) == -1 && errno == EINVAL, "a slot out of range is refused (EINVAL)");
	ok(bus_slot_release(&b, 2) == 0 && b.slots[2].pid == 0, "release frees the claim");
	ok(bus_slot_claim(&b, 2, 4343) == 0 && bus_slot_release(&b, 2) == 0, "and the slot can be claimed again");

	/* ---- limits ---- */
	ok(bus_append_fn(&b, 1, bus_max_record(&b) + 1, fill_pat, NULL, NULL) == -1 && errno == EMSGSIZE,
	   "a record over the limit is refused (EMSGSIZE)");
	ok(bus_append_fn(&b, BUS_TYPE_MAX, 1, fill_pat, NULL, NULL) == -1 && errno == EINVAL,
	   "a type in the bus's own range is refused (EINVAL)");
	ok(bus_append_fn(&b, 1, bus_max_record(&b), fill_pat, NULL, &seq) == 0, "a record at the limit is taken");
	seen_reset();
	ok(drain(&r, &lost) == 1 && S.len[0] == bus_max_record(&b) && S.bad == 0 && lost == 0,
	   "and read back whole");
	drain2(&r2);

	/* ---- a callback that stops ---- */
	for (int i = 0; i < 10; i++)
		bus_append_fn(&b, 1, 10, fill_pat, NULL, NULL);
	seen_reset();
	S.stop_after = 2;
	ok(bus_read(&r, collect, &S, 0, &lost) == 2, "a callback returning non-zero stops the read");
	S.stop_after = 0;
	ok(drain(&r, &lost) == 8 && seen_contiguous(S.seq[0]), "the next read resumes after it, in order");
	drain2(&r2);

	/* ---- wrap-around with records of every size ---- */
	{
		uint64_t first = 0, want = 0, head0 = b.h->head;
		unsigned bad_len = 0, order = 0;
		seen_reset();
		for (unsigned i = 0; i < 4000; i++) {
			size_t len = (i * 37) % (bus_max_record(&b) + 1);
			bus_append_fn(&b, 2, len, fill_pat, NULL, &seq);
			if (first == 0)
				first = seq;
			if (i % 3 == 2) { /* read every few appends, well within a ring */
				unsigned before = S.n;
				drain(&r, &lost);
				for (unsigned k = before; k < S.n; k++) {
					if (S.seq[k] != first + want)
						order++;
					if (S.len[k] != (want * 37) % (bus_max_record(&b) + 1))
						bad_len++;
					want++;
				}
			}
			if (i % 5 == 0)
				drain2(&r2);
		}
		drain(&r, &lost);
		for (; want < S.n; want++)
			if (S.seq[want] != first + want)
				order++;
		is_int(S.n, 4000, "4000 records of sizes 0..%zu read back", bus_max_record(&b));
		ok(S.bad == 0 && bad_len == 0, "every payload and length intact across wraps");
		ok(order == 0 && lost == 0, "seqs contiguous, no loss");
		ok(b.h->head - head0 > 100 * 4096, "the ring wrapped over a hundred times");
		int vrc = bus_verify(&b, &n);
		ok(vrc == 0 && n > 0, "the ring verifies (%llu records in it)", (unsigned long long)n);
	}

	/* ---- laps ---- */
	{
		drain2(&r2);
		uint64_t at = r.seq;
		for (int i = 0; i < 200; i++)
			bus_append_fn(&b, 1, 64, fill_pat, NULL, NULL);
		seen_reset();
		uint64_t l, lo_seq = ((struct bus_rec *)(b.ring + (b.h->lo & b.mask)))->seq;
		int got = bus_read(&r, collect, &S, 0, &l);
		ok(got == 0 && l > 0, "a reader 200 records (16 KB) behind on a 4 KB ring is lapped (lost %llu)",
		   (unsigned long long)l);
		lost = l;
		unsigned rest = drain(&r, &l);
		is_int(rest + lost, 200, "records read plus records lost is exactly what was appended");
		ok(S.seq[0] == at + lost && seen_contiguous(at + lost) && S.bad == 0,
		   "it resumed at seq %llu and read on in order", (unsigned long long)S.seq[0]);
		ok(S.seq[0] > lo_seq && (S.seq[0] - lo_seq) * 80 >= 4096 / 4 && (S.seq[0] - lo_seq) * 80 < 4096 / 4 + 80,
		   "a quarter of a ring past the oldest intact record (seq %llu), out of the writers' way",
		   (unsigned long long)lo_seq);
		ok(rest >= 4096 / 80 / 2, "at least half a ring of records was left to read (%u)", rest);
		is_int(r.laps, 1, "the reader counts the lap");
		bus_stats(&b, &bs);
		ok(bs.laps >= 1 && bs.lost >= lost, "and so does the bus header");

		/* Lapped in the middle of a read: records copied before the lap
		 * are delivered, the loss ends the call. */
		drain2(&r2);
		for (int i = 0; i < 5; i++)
			bus_append_fn(&b, 1, 64, fill_pat, NULL, NULL);
		seen_reset();
		S.append_to = &b;
		S.append_n = 100;
		at = r2.seq;
		uint64_t lost0 = r2.lost;
		got = bus_read(&r2, collect, &S, 0, &l);
		ok(got == 5 && l > 0 && seen_contiguous(at) && S.bad == 0,
		   "a lap during delivery: the five copied records arrive intact, then the loss");
		is_int(r2.lost - lost0, l, "the reader's count agrees");
		rest = drain(&r2, &lost);
		is_int(S.seq[5], at + 5 + l, "after the gap, seqs go on from the oldest intact record");
		is_int(5 + l + rest, 105, "read plus lost equals appended");
	}

	/* ---- fill sees its seq ---- */
	{
		uint64_t s0;
		drain(&r, &lost);
		drain2(&r2);
		bus_append_fn(&b, 1, 24, fill_pat, NULL, &s0);
		seen_reset();
		ok(drain(&r, &lost) == 1 && S.seq[0] == s0 && S.bad == 0,
		   "a fill writes bytes from the seq it is given, and it is the record's");
	}

	/* ---- the robust lock ---- */
	{
		int st;
		uint64_t s0, s1, v0 = b.h->voids;
		drain2(&r2);
		bus_append_fn(&b, 1, 40, fill_pat, NULL, &s0);
		st = child_dies_appending(&b, 200, fill_and_exit, NULL, false);
		ok(WIFEXITED(st), "a child exits in the middle of a fill, holding the lock");
		ok(b.h->w_seq == b.h->tail_seq && b.h->tail < b.h->w_end, "it left a record half written");
		ok(bus_append_fn(&b, 1, 40, fill_pat, NULL, &s1) == 0, "the next append succeeds");
		is_int(b.h->repairs, 1, "the repair is counted");
		is_int(b.h->voids, v0 + 1, "the dead reservation became a void record");
		is_int(s1, s0 + 2, "the dead writer's seq is never reused");
		seen_reset();
		ok(drain(&r, &lost) == 2 && S.seq[0] == s0 && S.seq[1] == s1 && S.bad == 0 && lost == 0,
		   "readers get the records on both sides and never the half-written one");
		is_int(r.voids, 1, "the reader skipped one void");

		st = child_dies_appending(&b, 100, fill_and_hang, NULL, true);
		ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "a child is SIGKILLed inside a fill");
		ok(bus_append_fn(&b, 1, 40, fill_pat, NULL, &s1) == 0 && b.h->repairs == 2,
		   "the next append repairs and succeeds");
		ok(bus_verify(&b, &n) == 0, "the ring verifies");

		/* Death between a complete record and its mark: kept. */
		st = child_dies_appending(&b, 56, fill_and_die_completing, &b, false);
		ok(WIFEXITED(st) && b.h->tail == b.h->w_end && b.h->w_seq == b.h->tail_seq,
		   "a child dies with its record written but not marked complete");
		ok(bus_append_fn(&b, 1, 40, fill_pat, NULL, &seq) == 0 && b.h->repairs == 3 && seq == s1 + 2,
		   "the next append keeps that record and goes on");
		seen_reset();
		ok(drain(&r, &lost) == 3 && S.seq[1] == s1 + 1 && S.len[1] == 56 && S.bad == 0 && seen_contiguous(s1),
		   "the complete record is delivered, intact, not voided");
		s1 = seq;

		/* Death in the middle of a publication: the record was whole. */
		st = child_dies_appending(&b, 48, fill_and_die_publishing, &b, false);
		ok(WIFEXITED(st) && (b.h->pub_ver & 1), "a child dies halfway through publishing");
		struct bus_reader r3;
		ok(bus_reader_init(&r3, &b, 2) == 0 && r3.seq == s1 + 2 && r3.pos == b.h->tail,
		   "a reader starting meanwhile starts after the record being published");
		ok(bus_append_fn(&b, 1, 40, fill_pat, NULL, &seq) == 0 && b.h->repairs == 4 && seq == s1 + 2,
		   "the next append finishes that publication and goes on");
		seen_reset();
		ok(drain(&r, &lost) == 2 && S.seq[0] == s1 + 1 && S.len[0] == 48 && S.bad == 0 &&
		   S.seq[1] == s1 + 2, "the record whose publication was interrupted is delivered, intact");
		seen_reset();
		ok(drain(&r3, &lost) == 1 && S.seq[0] == s1 + 2, "the late reader sees only what follows");
		bus_reader_free(&r3);
		bus_slot_release(&b, 2);

		/* Death with a reservation that started with a wrap pad. */
		uint64_t room;
		while ((room = 4096 - (b.h->head & 4095)) < 300 || room > 400)
			bus_append_fn(&b, 1, 0, fill_pat, NULL, NULL);
		drain(&r, &lost);
		st = child_dies_appending(&b, 400, fill_and_hang, NULL, true);
		ok(b.h->w_pos != b.h->tail, "a child dies in a fill after padding to the ring's end");
		ok(bus_append(&b, 5, "x", 1, &seq) == 0 && bus_verify(&b, &n) == 0,
		   "the repair writes the pad and the void, and the ring verifies");
		seen_reset();
		ok(drain(&r, &lost) == 1 && S.seq[0] == seq && lost == 0, "readers walk over both");

		/* A child that ends normally leaves nothing to repair. */
		pid_t pid = fork();
		if (pid == 0)
			_exit(bus_append(&b, 5, "y", 1, NULL) == 0 ? 0 : 1);
		waitpid(pid, &st, 0);
		ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 && bus_append(&b, 5, "z", 1, NULL) == 0 &&
		   b.h->repairs == 5, "a writer that exits between appends needs no repair");
		drain(&r, &lost);
		drain2(&r2);
	}

	/* ---- batches: one lock, one publication ---- */
	{
		uint64_t s0, s2;
		drain(&r, &lost);
		drain2(&r2);
		ok(bus_lock(&b) == 0, "take the lock for a batch");
		ok(bus_lock(&b) == -1 && errno == EDEADLK, "taking it twice is EDEADLK");
		bus_append_locked(&b, 1, 30, fill_pat, NULL, &s0);
		bus_append_locked(&b, 2, 31, fill_pat, NULL, NULL);
		ok(bus_append_locked(&b, 3, 32, fill_pat, NULL, &s2) == 0 && s2 == s0 + 2, "three records appended");
		ok(bus_append_locked(&b, 3, bus_max_record(&b) + 1, fill_pat, NULL, NULL) == -1 && errno == EMSGSIZE,
		   "the limit holds in a batch");
		ok(!bus_reader_pending(&r), "readers see nothing of a batch before the unlock");
		bus_unlock(&b);
		seen_reset();
		ok(drain(&r, &lost) == 3 && seen_contiguous(s0) && S.bad == 0, "then all of it, in order");

		/* A batch longer than a quarter of the ring is published as it goes. */
		bus_lock(&b);
		for (int i = 0; i < 20; i++)
			bus_append_locked(&b, 1, 64, fill_pat, NULL, NULL);
		ok(bus_reader_pending(&r), "a batch over a quarter of the ring is published before it ends");
		bus_unlock(&b);
		seen_reset();
		ok(drain(&r, &lost) == 20 && lost == 0 && S.bad == 0, "and read whole");

		/* Death in the middle of a batch: the complete records stay. */
		pid_t pid = fork();
		if (pid == 0) {
			bus_lock(&b);
			bus_append_locked(&b, 1, 30, fill_pat, NULL, NULL);
			bus_append_locked(&b, 1, 30, fill_pat, NULL, NULL);
			bus_append_locked(&b, 1, 30, fill_and_exit, NULL, NULL);
			_exit(2);
		}
		int st;
		waitpid(pid, &st, 0);
		uint64_t v0 = b.h->voids, rv0 = r.voids, s3;
		ok(bus_append(&b, 5, "after", 5, &s3) == 0 && b.h->voids == v0 + 1, "a writer dies in its batch's third record");
		seen_reset();
		ok(drain(&r, &lost) == 3 && S.seq[0] == s2 + 21 && S.seq[1] == s2 + 22 && S.seq[2] == s3 &&
		   s3 == s2 + 24 && S.bad == 0 && r.voids == rv0 + 1,
		   "its two complete records are published, the third is void, seqs go on");
		drain2(&r2);
	}

	/* ---- a fill may not append: EDEADLK, not a hang ---- */
	{
		int err = 0;
		ok(bus_append_fn(&b, 1, 8, fill_appends, &err, NULL) == 0 && err == EDEADLK,
		   "an append from inside a fill fails with EDEADLK");
		drain(&r, &lost);
	}

	/* ---- deferred wakes, wake_all, slot release: one process ---- */
	{
		int efd[4];
		uint64_t v;
		for (int i = 0; i < 4; i++)
			efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		bus_set_waker(&b, wake_efd, efd);
		ok(bus_reader_sleep(&r), "an idle reader may sleep");
		ok(b.h->sleepers[0] & 1, "its announcement is up");
		bus_wake_defer(&b);
		bus_append(&b, 5, "a", 1, NULL);
		bus_append(&b, 5, "b", 1, NULL);
		ok(!readable(efd[0], 0), "deferred appends do not wake it");
		bus_wake_flush(&b);
		ok(readable(efd[0], 0) && read(efd[0], &v, 8) == 8 && v == 1, "the flush wakes it exactly once");
		ok((b.h->sleepers[0] & 1) == 0, "the writer took the announcement");
		bus_reader_wake_cancel(&r);
		ok(!bus_reader_sleep(&r), "a reader with records pending may not sleep");
		ok((b.h->sleepers[0] & 1) == 0, "and its announcement is withdrawn");
		drain(&r, &lost);
		drain2(&r2);
		bus_append(&b, 5, "c", 1, NULL);
		ok(!readable(efd[0], 0), "a reader that did not announce is not woken");
		drain(&r, &lost);
		drain2(&r2);

		bus_set_waker(&b, NULL, NULL);
		ok(bus_reader_sleep(&r), "slot 0 announces");
		bus_wake_all(&b);
		ok(b.h->sleepers[0] & 1, "bus_wake_all without a waker leaves announcements up (it could not wake them)");
		bus_set_waker(&b, wake_efd, efd);
		bus_wake_all(&b);
		ok((b.h->sleepers[0] & 1) == 0 && readable(efd[0], 0) && read(efd[0], &v, 8) == 8 &&
		   readable(efd[1], 0) && read(efd[1], &v, 8) == 8, "with one, it takes them and wakes every live slot");
		bus_reader_wake_cancel(&r);

		ok(bus_reader_sleep(&r2), "slot 1 announces");
		ok(bus_slot_release(&b, 1) == 0 && b.slots[1].pid == 0 && (b.h->sleepers[0] & 2) == 0,
		   "releasing a dead worker's slot clears its pid and announcement");
		ok(readable(efd[0], 0) && !readable(efd[1], 0), "and wakes every live slot, not the released one");
		if (read(efd[0], &v, 8) != 8)
			abort();
		bus_reader_free(&r2);
		bus_set_waker(&b, NULL, NULL);
		for (int i = 0; i < 4; i++)
			close(efd[i]);
	}

	/* ---- a read-only attacher (rotorctl) ---- */
	{
		ok(bus_attach(&ro, p, true) == 0, "attach read-only");
		struct bus_reader rr;
		ok(bus_reader_init(&rr, &ro, 0) == -1 && errno == EINVAL, "a read-only mapping has no slot");
		ok(bus_reader_init(&rr, &ro, BUS_NO_SLOT) == 0, "but can read without one");
		bus_append(&b, 4, "ro", 2, &seq);
		seen_reset();
		ok(drain(&rr, &lost) == 1 && S.seq[0] == seq && S.type[0] == 4, "and sees what is appended");
		ok(bus_append(&ro, 5, "x", 1, NULL) == -1 && errno == EROFS, "appending read-only is EROFS");
		bus_stats(&ro, &bs);
		ok(bs.head_seq == seq + 1 && bs.readers == 1 && bs.repairs == 6, "stats through the read-only mapping");
		bus_reader_free(&rr);
		bus_detach(&ro);
		drain(&r, &lost);
	}

	/* ---- a ring damaged by a stray write ---- */
	{
		uint64_t s0 = 0, c0 = b.h->corrupt, at = 0;
		for (int i = 0; i < 10; i++) {
			bus_append_fn(&b, 1, 32, fill_pat, NULL, i == 4 ? &s0 : NULL);
			if (i == 5)
				at = b.h->w_pos; /* where the record of seq s0 + 1 is */
		}
		struct bus_rec *rec = (struct bus_rec *)(b.ring + (at & b.mask));
		ok(rec->seq == s0 + 1, "find a record in the ring");
		rec->len ^= 0x40;
		ok(bus_verify(&b, &n) == -1 && errno == EPROTO, "bus_verify notices the damaged record");
		seen_reset();
		at = r.seq;
		unsigned got = drain(&r, &lost);
		ok(got == 5 && lost == 5 && S.bad == 0 && seen_contiguous(at),
		   "a reader delivers up to it and skips to the head: nothing damaged reaches it");
		is_int(r.corrupt, 1, "the reader counts the damaged record");
		for (int i = 0; i < 100; i++)
			bus_append_fn(&b, 1, 32, fill_pat, NULL, NULL);
		ok(b.h->corrupt == c0 + 1, "a writer that meets the damage resets the ring");
		ok(bus_verify(&b, &n) == 0, "after which it verifies");
		seen_reset();
		at = r.seq;
		got = drain(&r, &lost);
		ok(lost > 0 && S.bad == 0 && got + lost == 100 && seen_contiguous(at + lost),
		   "readers see the reset as a lap and go on");
	}

	/* ---- header validation on attach ---- */
	bus_reader_free(&r);
	bus_detach(&b);
	{
		struct bus x;
		uint64_t bad64;
		uint32_t bad32;
		const off_t H = 64;
		ok(bus_attach(&x, p, false) == 0, "the segment attaches while intact");
		bus_detach(&x);

		struct { const char *what; off_t off; size_t len; uint64_t val; } cases[] = {
			{ "bus magic", H + 0, 8, 0x1234 },
			{ "layout version", H + 8, 4, 99 },
			{ "header size", H + 12, 4, 64 },
			{ "ring size not a power of two", H + 16, 8, 5000 },
			{ "ring size against the file", H + 16, 8, 8192 },
			{ "ring offset", H + 24, 8, 4096 },
			{ "slot count", H + 40, 4, 1000 },
			{ "record limit", H + 44, 4, 4096 },
			{ "slot size", H + 48, 4, 32 },
			{ "lo past head", H + 128 + 32, 8, UINT64_C(1) << 40 },
			{ "head not aligned", H + 128 + 8, 8, 12345 },
		};
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
			unsigned char save[8];
			int fd = open(p, O_RDONLY);
			if (fd < 0 || pread(fd, save, cases[i].len, cases[i].off) != (ssize_t)cases[i].len)
				abort();
			close(fd);
			bad64 = cases[i].val;
			bad32 = (uint32_t)cases[i].val;
			poke(p, cases[i].off, cases[i].len == 8 ? (void *)&bad64 : (void *)&bad32, cases[i].len);
			ok(bus_attach(&x, p, true) == -1 && errno == EPROTO, "a bad %s is refused (EPROTO)",
			   cases[i].what);
			poke(p, cases[i].off, save, cases[i].len);
		}
		ok(bus_attach(&x, p, true) == 0, "restored, it attaches again");
		bus_detach(&x);
		ok(truncate(p, 64 + 384 + 4 * 64 + 2048) == 0 && bus_attach(&x, p, true) == -1 && errno == EPROTO,
		   "a truncated segment is refused");
		unlink(p);
	}

	/* ---- the wake protocol across processes ---- */
	path_of(p, sizeof(p), dir, "wake.seg");
	test_wake_processes(p);

	rmdir(dir);
	return tap_done();
}
