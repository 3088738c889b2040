/*
 * torture_chan.c - the channel table under fire, bounded in time: writer
 * processes append to 16 channels in tight loops and are SIGKILLed every
 * few milliseconds (often holding the lock, at any instruction) and
 * respawned; reader processes read histories with every kind of query and
 * are killed now and then too; and every couple of seconds the whole
 * "daemon" is killed and the table reopened cold, as after a crash.
 *
 * Each writer incarnation has a unique id. Every payload carries its
 * incarnation, channel, that incarnation's counter on that channel, its
 * length and a checksum. Before an append a writer notes the counter it is
 * attempting; after it, it logs the offset it was given (an ack) in a log
 * shared with the master.
 *
 * What must hold, and is checked:
 *   - every record read is intact (CRC and payload checksum) and on its
 *     channel; a read's offsets are consecutive, in its direction, within
 *     [first, top], strictly after (before) since;
 *   - the epochs never change: no eviction, no expiry, no damage here, and
 *     a kill or a reopen in the same boot must keep them;
 *   - offsets never repeat within an epoch: no two acks share a channel's
 *     offset, no ack is beyond its channel's top, and every acked offset
 *     still retained holds the acked record;
 *   - history is contiguous; a killed writer's append either committed
 *     (its record is there, maybe without an ack: then it is that
 *     incarnation's last attempt) or left no trace (its offset was never
 *     given): no record exists that no writer attempted, and each
 *     incarnation's retained records on a channel have consecutive
 *     counters (trims only take the oldest);
 *   - on the versioned channels (appended to with publish versions, some
 *     late or stale, so that the table drops them), the records kept have
 *     strictly increasing versions in offset order.
 *
 * Half the channels are appended to as the daemon will: hist_append inside
 * the fill of a bus record (bus lock, then table lock), the offset written
 * into the bus record. A bus reader checks that per channel the offsets it
 * receives strictly increase and are in the channel's epoch, and that every
 * offset missing between two it received is explained by a void record (a
 * writer killed in its fill after its offset was committed): gaps <= voids.
 *
 * Usage: torture_chan [seconds] (default 8, at most 18).
 */
#include "bus.h"
#include "chan.h"
#include "../../tests/tap.h"
#include "testutil.h"

#include <errno.h>
#include <stdarg.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NW 4                   /* writers */
#define NR 2                   /* readers */
#define NCH 16                 /* channels */
#define MAX_INC 20000          /* writer incarnations */
#define LOG_MAX (4u << 20)     /* acks */
#define DATA ((uint64_t)256 << 10)
#define MAGIC 0x70ab1e5u
#define BUS_CH (NCH / 2)       /* channels 0 .. BUS_CH-1 go through the bus */
/* Channels appended to with publish versions (outside the bus). */
#define VERSIONED(c) ((c) >= BUS_CH && (c) % 4 == 1)

struct payload {
	uint32_t magic;
	uint32_t inc;
	uint16_t ch;
	uint16_t len;          /* whole payload, checksum included */
	uint32_t counter;
	uint64_t version;      /* versioned channels: the publish version, else 0 */
	/* filler, then a uint64_t checksum of everything before it */
};

struct ack {
	uint32_t valid;        /* stored last */
	uint16_t ch;
	uint16_t pad;
	uint32_t inc;
	uint32_t counter;
	uint64_t offset;
};

/* A bus record: what a publication's bus record will carry. */
struct busrec {
	uint16_t ch;
	uint16_t pad;
	uint32_t inc;
	uint32_t counter;
	uint32_t pad2;
	uint64_t offset;           /* 0 if the append failed */
	char epoch[HIST_EPOCH_LEN];
};

struct shared {
	char epoch[NCH][HIST_EPOCH_LEN + 1];
	uint64_t bus_delivered, bus_gaps, bus_voids, bus_lost;
	uint64_t vnext[NCH];               /* versioned channels: the last version handed out */
	uint64_t dropped, versioned;       /* appends dropped by their version; records read with one */
	uint32_t attempted[MAX_INC][NCH];  /* last counter each incarnation attempted */
	uint64_t log_n;
	uint64_t reads, read_records;
	uint64_t violations;
	uint32_t first_claimed;
	char first[256];
	struct ack log[LOG_MAX];
};

static struct shared *sh;
static struct bus bus;
static struct ctab tab;
static struct ctab_config cfg;

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void violation(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void violation(const char *fmt, ...)
{
	__atomic_fetch_add(&sh->violations, 1, __ATOMIC_RELAXED);
	if (__atomic_exchange_n(&sh->first_claimed, 1, __ATOMIC_ACQ_REL) == 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(sh->first, sizeof(sh->first), fmt, ap);
		va_end(ap);
	}
}

static void channel_name(unsigned c, char *buf, size_t n)
{
	snprintf(buf, n, "torture:%02u", c);
}

static struct hist_opts opts_of(unsigned c)
{
	struct hist_opts o = { .size = 8 + 8 * c, .ttl_ms = 1000000000, .meta_ttl_ms = 0 };
	return o;
}

/* Checks payload P of LEN bytes: returns false (after reporting) if torn. */
static bool payload_ok(const void *p, size_t len, unsigned ch, struct payload *out)
{
	uint64_t sum;
	if (len < sizeof(*out) + 8 || len % 8 != 0) {
		violation("ch %u: payload of %zu bytes", ch, len);
		return false;
	}
	memcpy(out, p, sizeof(*out));
	memcpy(&sum, (const char *)p + len - 8, 8);
	if (out->magic != MAGIC || out->len != len || out->ch != ch || sum != sum64(p, len - 8) ||
	    out->inc >= MAX_INC) {
		violation("ch %u: torn or foreign payload (inc %u, ch %u)", ch, out->inc, out->ch);
		return false;
	}
	return true;
}

/* ---- writers ------------------------------------------------------------ */

struct bfill {
	const char *name;
	struct hist_opts o;
	const struct hist_rec *rec;
	uint32_t inc, counter;
	unsigned ch;
	int rc;
	struct hist_pos pos;
};

/* The bus fill: runs under the bus lock, takes the table's inside it. */
static void bus_fill(void *dst, size_t len, uint64_t seq, void *arg)
{
	struct bfill *f = arg;
	struct busrec b = { .ch = (uint16_t)f->ch, .inc = f->inc, .counter = f->counter };

	f->rc = hist_append(&tab, f->name, strlen(f->name), &f->o, f->rec, wall_ms(), &f->pos);
	if (f->rc == 0) {
		b.offset = f->pos.offset;
		memcpy(b.epoch, f->pos.epoch, HIST_EPOCH_LEN);
	}
	memcpy(dst, &b, sizeof(b));
}

static void writer(uint32_t inc)
{
	uint64_t rs = now_ns() ^ ((uint64_t)inc << 32) ^ (uint64_t)getpid();
	uint32_t counter[NCH] = { 0 };
	unsigned char buf[1024];
	struct hist_rec rec;
	char name[32];

	hist_rec_init(&rec);
	for (;;) {
		unsigned c = (unsigned)(xs(&rs) % NCH);
		size_t len = 32 + 8 * (xs(&rs) % (xs(&rs) % 16 == 0 ? 120 : 40));
		struct payload p = { .magic = MAGIC, .inc = inc, .ch = (uint16_t)c, .len = (uint16_t)len,
				     .counter = ++counter[c] };
		/* Versions: the next one of the channel, handed to racing
		 * writers (so some arrive late), or now and then a stale one. */
		if (VERSIONED(c)) {
			p.version = __atomic_add_fetch(&sh->vnext[c], 1, __ATOMIC_RELAXED);
			if (xs(&rs) % 8 == 0 && p.version > 5)
				p.version -= 5;
		}
		uint64_t s = p.counter * UINT64_C(0x9e3779b97f4a7c15) ^ inc;
		memcpy(buf, &p, sizeof(p));
		for (size_t i = sizeof(p); i + 8 < len; i += 8) {
			uint64_t v = xs(&s);
			memcpy(buf + i, &v, 8);
		}
		uint64_t sum = sum64(buf, len - 8);
		memcpy(buf + len - 8, &sum, 8);

		char user[16];
		struct hist_info info = { .user = user, .user_len = (size_t)snprintf(user, sizeof(user), "w%u", inc),
					  .client = "c", .client_len = 1 };
		struct hist_tag tag = { "k", 1, "v", 1 };
		struct hist_pub pub = { .data = buf, .data_len = len, .time_ms = wall_ms(),
					.info = counter[c] % 3 == 0 ? &info : NULL,
					.tags = &tag, .ntags = counter[c] % 5 == 0 };
		if (hist_encode(&rec, &pub) < 0)
			_exit(10);
		channel_name(c, name, sizeof(name));
		struct hist_opts o = opts_of(c);
		struct hist_pos pos;
		int rc = 0;
		o.version = p.version;
		uint64_t slot = __atomic_load_n(&sh->log_n, __ATOMIC_RELAXED);
		if (slot >= LOG_MAX) { /* the log is full: stop appending */
			pause();
			continue;
		}
		__atomic_store_n(&sh->attempted[inc][c], p.counter, __ATOMIC_RELEASE);
		if (c < BUS_CH) {
			struct bfill f = { .name = name, .o = o, .rec = &rec, .inc = inc, .counter = p.counter, .ch = c };
			if (bus_append_fn(&bus, 1, sizeof(struct busrec), bus_fill, &f, NULL) < 0 || f.rc < 0)
				_exit(12);
			pos = f.pos;
		} else if ((rc = hist_append(&tab, name, strlen(name), &o, &rec, wall_ms(), &pos)) < 0) {
			_exit(11);
		}
		if (rc == 1) { /* dropped: its counter is used again */
			counter[c]--;
			__atomic_fetch_add(&sh->dropped, 1, __ATOMIC_RELAXED);
			continue;
		}
		if (strcmp(pos.epoch, sh->epoch[c]) != 0)
			violation("ch %u: append got epoch %s, not %s", c, pos.epoch, sh->epoch[c]);
		slot = __atomic_fetch_add(&sh->log_n, 1, __ATOMIC_RELAXED);
		if (slot >= LOG_MAX)
			continue;
		struct ack *a = &sh->log[slot];
		a->ch = (uint16_t)c;
		a->inc = inc;
		a->counter = p.counter;
		a->offset = pos.offset;
		__atomic_store_n(&a->valid, 1, __ATOMIC_RELEASE);
	}
}

/* ---- readers ------------------------------------------------------------ */

struct rctx {
	unsigned ch;
	bool reverse;
	uint64_t prev_off;
	unsigned n;
	uint64_t prev_version;     /* versioned channels: of the record before */
	uint32_t last_inc[8];      /* a few incarnations' last counters seen in this read */
	uint32_t last_cnt[8];
};

static int check(void *arg, const struct hist_pub *p)
{
	struct rctx *r = arg;
	struct payload pl;

	if (r->n > 0 && p->offset != (r->reverse ? r->prev_off - 1 : r->prev_off + 1))
		violation("ch %u: read offsets %llu then %llu", r->ch, (unsigned long long)r->prev_off,
			  (unsigned long long)p->offset);
	r->prev_off = p->offset;
	r->n++;
	if (!payload_ok(p->data, p->data_len, r->ch, &pl))
		return 1;
	if (VERSIONED(r->ch)) {
		/* A version is kept only above the one before it. */
		if (pl.version == 0 || (r->n > 1 && (r->reverse ? pl.version >= r->prev_version
							      : pl.version <= r->prev_version)))
			violation("ch %u: versions %llu then %llu", r->ch, (unsigned long long)r->prev_version,
				  (unsigned long long)pl.version);
		r->prev_version = pl.version;
		__atomic_fetch_add(&sh->versioned, 1, __ATOMIC_RELAXED);
	} else if (pl.version != 0) {
		violation("ch %u: a version on an unversioned channel", r->ch);
	}
	for (int i = 0; i < 8; i++) {
		if (r->last_inc[i] == pl.inc && r->last_cnt[i] != 0) {
			uint32_t want = r->reverse ? r->last_cnt[i] - 1 : r->last_cnt[i] + 1;
			if (pl.counter != want)
				violation("ch %u: incarnation %u's counters %u then %u", r->ch, pl.inc,
					  r->last_cnt[i], pl.counter);
			r->last_cnt[i] = pl.counter;
			return 0;
		}
	}
	unsigned slot = pl.inc % 8;
	r->last_inc[slot] = pl.inc;
	r->last_cnt[slot] = pl.counter;
	return 0;
}

static void reader(unsigned id)
{
	uint64_t rs = now_ns() ^ ((uint64_t)id << 40) ^ (uint64_t)getpid();
	char name[32];

	for (;;) {
		unsigned c = (unsigned)(xs(&rs) % NCH);
		struct hist_pos top;
		struct hist_result res;
		channel_name(c, name, sizeof(name));
		if (hist_top(&tab, name, strlen(name), 0, wall_ms(), &top) < 0)
			_exit(20);
		struct hist_query q = { .limit = -1 };
		switch (xs(&rs) % 4) {
		case 0:
			break;
		case 1:
			q.reverse = true;
			q.limit = 10;
			break;
		case 2:
			q.has_since = true;
			q.since_offset = top.offset > 0 ? xs(&rs) % (top.offset + 1) : 0;
			q.since_epoch = sh->epoch[c];
			q.limit = 50;
			break;
		default:
			q.reverse = true;
			q.has_since = true;
			q.since_offset = 1 + (top.offset > 0 ? xs(&rs) % (top.offset + 1) : 0);
			q.since_epoch = sh->epoch[c];
			q.limit = 20;
			break;
		}
		struct rctx r = { .ch = c, .reverse = q.reverse };
		if (hist_read(&tab, name, strlen(name), &q, wall_ms(), check, &r, &res) < 0)
			_exit(21);
		if (strcmp(res.top.epoch, sh->epoch[c]) != 0 || res.epoch_mismatch)
			violation("ch %u: read epoch %s, not %s", c, res.top.epoch, sh->epoch[c]);
		if (res.top.offset < top.offset)
			violation("ch %u: top went back from %llu to %llu", c, (unsigned long long)top.offset,
				  (unsigned long long)res.top.offset);
		if (r.n > 0) {
			uint64_t lo = r.reverse ? r.prev_off : r.prev_off - (r.n - 1);
			uint64_t hi = r.reverse ? r.prev_off + (r.n - 1) : r.prev_off;
			if (lo < res.first || hi > res.top.offset || (q.has_since && !q.reverse && lo <= q.since_offset) ||
			    (q.has_since && q.reverse && hi >= q.since_offset))
				violation("ch %u: read [%llu, %llu] outside the stream or its since", c,
					  (unsigned long long)lo, (unsigned long long)hi);
		}
		__atomic_fetch_add(&sh->reads, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&sh->read_records, r.n, __ATOMIC_RELAXED);
	}
}

/* ---- the bus reader ----------------------------------------------------- */

struct bctx {
	uint64_t last[BUS_CH];     /* last offset received per channel, 0 none yet */
	uint64_t gaps, delivered;
};

static int on_bus(void *arg, uint64_t seq, unsigned type, const void *data, size_t len)
{
	struct bctx *b = arg;
	struct busrec r;

	if (len != sizeof(r)) {
		violation("bus record of %zu bytes", len);
		return 0;
	}
	memcpy(&r, data, sizeof(r));
	b->delivered++;
	if (r.ch >= BUS_CH || r.offset == 0 || memcmp(r.epoch, sh->epoch[r.ch], HIST_EPOCH_LEN) != 0) {
		violation("bus: ch %u offset %llu epoch %.8s", r.ch, (unsigned long long)r.offset, r.epoch);
		return 0;
	}
	uint64_t last = b->last[r.ch];
	if (last != 0 && r.offset <= last)
		violation("bus: ch %u offset %llu after %llu: out of order", r.ch, (unsigned long long)r.offset,
			  (unsigned long long)last);
	else if (last != 0)
		b->gaps += r.offset - last - 1;
	b->last[r.ch] = r.offset;
	return 0;
}

static void bus_reader_fn(uint32_t unused)
{
	struct bus_reader r;
	struct bctx b;
	uint64_t lost, voids = 0;

	memset(&b, 0, sizeof(b));
	if (bus_reader_init(&r, &bus, BUS_NO_SLOT) < 0)
		_exit(30);
	for (;;) {
		uint64_t gaps = b.gaps, delivered = b.delivered;
		int n = bus_read(&r, on_bus, &b, 1024, &lost);
		if (lost > 0) {
			/* Lapped: what it missed cannot be told from voids. */
			memset(b.last, 0, sizeof(b.last));
			__atomic_fetch_add(&sh->bus_lost, lost, __ATOMIC_RELAXED);
		}
		if (b.gaps > r.voids)
			violation("bus: %llu offsets missing, only %llu void records to explain them",
				  (unsigned long long)b.gaps, (unsigned long long)r.voids);
		__atomic_fetch_add(&sh->bus_gaps, b.gaps - gaps, __ATOMIC_RELAXED);
		__atomic_fetch_add(&sh->bus_voids, r.voids - voids, __ATOMIC_RELAXED);
		__atomic_fetch_add(&sh->bus_delivered, b.delivered - delivered, __ATOMIC_RELAXED);
		voids = r.voids;
		if (n == 0 && lost == 0) {
			struct timespec ts = { 0, 200000 };
			nanosleep(&ts, NULL);
		}
	}
}

/* ---- the master --------------------------------------------------------- */

static void reader_fn(uint32_t id)
{
	reader(id);
}

struct rec_id {
	uint32_t inc, counter;
	bool acked;
};

/* Everything a channel retains, read by the master alone. */
struct chan_view {
	unsigned ch;
	uint64_t first, top;
	unsigned n;
	struct rec_id *recs;    /* recs[i]: offset first + i */
};

static int collect(void *arg, const struct hist_pub *p)
{
	struct chan_view *v = arg;
	struct payload pl;
	if (v->n >= 4096)
		return 1;
	if (!payload_ok(p->data, p->data_len, v->ch, &pl))
		pl.inc = UINT32_MAX;
	v->recs[v->n].inc = pl.inc;
	v->recs[v->n].counter = pl.counter;
	v->recs[v->n].acked = false;
	v->n++;
	return 0;
}

struct totals {
	uint64_t records, unacked_committed, acks;
};

/* With every other process dead: the checks of the file's comment against
 * the whole ack log. Returns the violations found. */
static uint64_t verify_all(uint32_t incs, struct totals *tot)
{
	static struct chan_view v[NCH];
	static struct rec_id recs[NCH][4096];
	uint64_t before = sh->violations;
	char name[32];

	memset(tot, 0, sizeof(*tot));
	for (unsigned c = 0; c < NCH; c++) {
		struct hist_query q = { .limit = -1 };
		struct hist_result res;
		memset(&v[c], 0, sizeof(v[c]));
		v[c].recs = recs[c];
		v[c].ch = c;
		channel_name(c, name, sizeof(name));
		if (hist_read(&tab, name, strlen(name), &q, wall_ms(), collect, &v[c], &res) < 0) {
			violation("ch %u: read failed: %s", c, strerror(errno));
			continue;
		}
		v[c].first = res.first;
		v[c].top = res.top.offset;
		if (strcmp(res.top.epoch, sh->epoch[c]) != 0)
			violation("ch %u: epoch %s after a restart, not %s", c, res.top.epoch, sh->epoch[c]);
		if (v[c].n != (res.first ? res.top.offset - res.first + 1 : 0))
			violation("ch %u: %u records for [%llu, %llu]", c, v[c].n, (unsigned long long)res.first,
				  (unsigned long long)res.top.offset);
		for (unsigned i = 0; i < v[c].n; i++) {
			struct rec_id *r = &v[c].recs[i];
			if (r->inc != UINT32_MAX && r->inc >= incs)
				violation("ch %u: a record of incarnation %u, never started", c, r->inc);
		}
		tot->records += v[c].n;
	}

	/* Acks against what is retained; each offset acked once. */
	static uint8_t *seen[NCH];
	static uint64_t seen_cap[NCH];
	for (unsigned c = 0; c < NCH; c++) {
		if (seen_cap[c] < v[c].top + 1) {
			free(seen[c]);
			seen_cap[c] = v[c].top + 1 + 100000;
			seen[c] = calloc(seen_cap[c], 1);
		} else {
			memset(seen[c], 0, seen_cap[c]);
		}
	}
	uint64_t n = sh->log_n < LOG_MAX ? sh->log_n : LOG_MAX;
	for (uint64_t i = 0; i < n; i++) {
		const struct ack *a = &sh->log[i];
		if (!__atomic_load_n(&a->valid, __ATOMIC_ACQUIRE))
			continue;
		unsigned c = a->ch;
		tot->acks++;
		if (c >= NCH || a->offset == 0 || a->offset > v[c].top) {
			violation("ch %u: offset %llu acked, top is %llu: an offset went back", c,
				  (unsigned long long)a->offset, (unsigned long long)v[c].top);
			continue;
		}
		if (seen[c][a->offset]++)
			violation("ch %u: offset %llu acked twice", c, (unsigned long long)a->offset);
		if (v[c].first != 0 && a->offset >= v[c].first) {
			struct rec_id *r = &v[c].recs[a->offset - v[c].first];
			if (r->inc != a->inc || r->counter != a->counter)
				violation("ch %u: offset %llu holds %u/%u, acked as %u/%u", c,
					  (unsigned long long)a->offset, r->inc, r->counter, a->inc, a->counter);
			r->acked = true;
		}
	}

	/* Unacked records are their incarnation's last attempt; each
	 * incarnation's counters are consecutive. */
	static uint32_t last[MAX_INC];
	for (unsigned c = 0; c < NCH; c++) {
		memset(last, 0, sizeof(uint32_t) * incs);
		for (unsigned i = 0; i < v[c].n; i++) {
			struct rec_id *r = &v[c].recs[i];
			if (r->inc >= incs)
				continue;
			if (!r->acked) {
				if (r->counter != sh->attempted[r->inc][c])
					violation("ch %u: offset %llu (%u/%u) never acked, yet not its writer's last attempt (%u)",
						  c, (unsigned long long)(v[c].first + i), r->inc, r->counter,
						  sh->attempted[r->inc][c]);
				tot->unacked_committed++;
			}
			if (last[r->inc] != 0 && r->counter != last[r->inc] + 1)
				violation("ch %u: incarnation %u's counters %u then %u: a record vanished", c, r->inc,
					  last[r->inc], r->counter);
			last[r->inc] = r->counter;
		}
	}
	return sh->violations - before;
}

static void writer_fn(uint32_t inc)
{
	writer(inc);
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/rotor-torture-chan-XXXXXX", path[300];
	double seconds = argc > 1 ? atof(argv[1]) : 8.0;
	pid_t wpid[NW], rpid[NR], bpid;
	uint32_t winc[NW], incs = 0;
	uint64_t rs = now_ns(), kills = 0, kills_in_lock = 0, reader_kills = 0, restarts = 0;
	uint64_t verified_records = 0, unacked = 0, acks = 0, restart_bad = 0, live_verify_bad = 0;
	struct ctab_report rep;
	struct totals tot;
	int st;

	if (seconds <= 0 || seconds > 18)
		seconds = 8.0;
	alarm((unsigned)seconds + 40); /* a hang fails the test rather than the CI */
	if (mkdtemp(dir) == NULL)
		return 99;
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 99;
	snprintf(path, sizeof(path), "%s/bus.seg", dir);
	if (bus_create(&bus, path, 1 << 20, 1) < 0)
		return 99;
	cfg = (struct ctab_config){ .dir = dir, .streams = 64, .data_bytes = DATA };
	ok(ctab_open(&tab, &cfg, &rep) == 0 && rep.created, "create a table: 64 streams, %llu KiB of data",
	   (unsigned long long)(DATA >> 10));
	for (unsigned c = 0; c < NCH; c++) {
		struct hist_pos pos;
		char name[32];
		channel_name(c, name, sizeof(name));
		if (hist_top(&tab, name, strlen(name), 0, wall_ms(), &pos) < 0)
			return 99;
		strcpy(sh->epoch[c], pos.epoch);
	}

	for (unsigned i = 0; i < NR; i++)
		rpid[i] = spawn(reader_fn, i);
	bpid = spawn(bus_reader_fn, 0);
	for (unsigned i = 0; i < NW; i++)
		wpid[i] = spawn(writer_fn, winc[i] = incs++);

	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
	uint64_t next_restart = t0 + 1500000000, next_verify = t0 + 500000000;
	while (now_ns() < end && incs < MAX_INC - NW) {
		sleep_us(300 + (long)(xs(&rs) % 2700));
		unsigned w = (unsigned)(xs(&rs) % NW);
		kill(wpid[w], SIGKILL);
		waitpid(wpid[w], &st, 0);
		kills++;
		if (__atomic_load_n(&tab.h->owner, __ATOMIC_RELAXED) == wpid[w])
			kills_in_lock++;
		wpid[w] = spawn(writer_fn, winc[w] = incs++);
		if (kills % 16 == 0) {
			unsigned r = (unsigned)(xs(&rs) % NR);
			kill(rpid[r], SIGKILL);
			waitpid(rpid[r], &st, 0);
			reader_kills++;
			rpid[r] = spawn(reader_fn, r);
		}

		uint64_t t = now_ns();
		if (t >= next_verify) {
			/* Live: the master takes the lock among the killings. */
			if (ctab_verify(&tab, true, NULL) < 0)
				live_verify_bad++;
			next_verify = t + 500000000;
		}
		if (t < next_restart)
			continue;
		/* A crash of everything: every process killed, the table
		 * reopened cold, as a new master would. */
		for (unsigned i = 0; i < NW; i++) {
			kill(wpid[i], SIGKILL);
			waitpid(wpid[i], &st, 0);
		}
		for (unsigned i = 0; i < NR; i++) {
			kill(rpid[i], SIGKILL);
			waitpid(rpid[i], &st, 0);
		}
		kill(bpid, SIGKILL);
		waitpid(bpid, &st, 0);
		ctab_close(&tab);
		restarts++;
		if (ctab_open(&tab, &cfg, &rep) < 0 || !rep.cold || rep.created || rep.streams_reset != 0 ||
		    rep.entries_dropped != 0 || rep.streams_kept < NCH) {
			restart_bad++;
			violation("restart %llu: cold %d created %d reset %u dropped %u kept %u (%s)",
				  (unsigned long long)restarts, rep.cold, rep.created, rep.streams_reset,
				  rep.entries_dropped, rep.streams_kept, rep.why ? rep.why : "");
		}
		if (ctab_verify(&tab, true, NULL) < 0)
			restart_bad++;
		verify_all(incs, &tot);
		verified_records += tot.records;
		for (unsigned i = 0; i < NR; i++)
			rpid[i] = spawn(reader_fn, i);
		bpid = spawn(bus_reader_fn, 0);
		for (unsigned i = 0; i < NW; i++)
			wpid[i] = spawn(writer_fn, winc[i] = incs++);
		next_restart = now_ns() + 1500000000;
	}

	/* The end: everyone killed, one last cold reopen and full check. */
	for (unsigned i = 0; i < NW; i++) {
		kill(wpid[i], SIGKILL);
		waitpid(wpid[i], &st, 0);
	}
	for (unsigned i = 0; i < NR; i++) {
		kill(rpid[i], SIGKILL);
		waitpid(rpid[i], &st, 0);
	}
	sleep_us(50000); /* let the bus reader drain */
	kill(bpid, SIGKILL);
	waitpid(bpid, &st, 0);
	struct ctab_stats cs;
	ctab_stats(&tab, &cs); /* the counters before the reopen */
	ctab_close(&tab);
	restarts++;
	int orc = ctab_open(&tab, &cfg, &rep);
	ok(orc == 0 && rep.cold && !rep.created && rep.streams_reset == 0 && rep.streams_kept >= NCH,
	   "the final cold reopen keeps every stream (%u kept, %u reset, %llu records)", rep.streams_kept,
	   rep.streams_reset, (unsigned long long)rep.records_kept);
	ok(ctab_verify(&tab, true, NULL) == 0, "the table verifies, every CRC included");
	verify_all(incs, &tot);
	verified_records += tot.records;
	unacked = tot.unacked_committed;
	acks = tot.acks;
	double secs = (double)(now_ns() - t0) / 1e9;

	printf("# %.1f s: %llu appends (%.0f/s), %llu acks logged%s\n", secs, (unsigned long long)cs.appends,
	       cs.appends / secs, (unsigned long long)acks, sh->log_n >= LOG_MAX ? " (log full)" : "");
	printf("# %llu writer kills (%llu seen holding the lock when reaped); %llu reader kills; %llu repairs\n",
	       (unsigned long long)kills, (unsigned long long)kills_in_lock, (unsigned long long)reader_kills,
	       (unsigned long long)cs.repairs);
	printf("# %llu reads checking %llu records; %llu records checked after %llu cold reopens\n",
	       (unsigned long long)sh->reads, (unsigned long long)sh->read_records,
	       (unsigned long long)verified_records, (unsigned long long)restarts);
	printf("# trims: %llu by history_size, %llu for room; %llu committed records never acked "
	       "(writer killed between commit and ack)\n",
	       (unsigned long long)cs.trims_size, (unsigned long long)cs.trims_space, (unsigned long long)unacked);
	ok(kills >= 100, "writers were killed %llu times", (unsigned long long)kills);
	ok(sh->dropped > 0 && sh->versioned > 100,
	   "versioned channels: %llu appends dropped by their version, %llu records read in version order",
	   (unsigned long long)sh->dropped, (unsigned long long)sh->versioned);
	ok(cs.repairs > 0, "kills landed inside the lock: %llu repairs (%llu writers seen holding it when reaped)",
	   (unsigned long long)cs.repairs, (unsigned long long)kills_in_lock);
	ok(restarts >= 2 && restart_bad == 0, "%llu cold reopens after killing everything: every epoch kept, "
	   "nothing reset, the table verified", (unsigned long long)restarts);
	ok(live_verify_bad == 0, "the table verified live among the kills");
	ok(sh->reads > 100 && sh->read_records > 1000, "readers checked %llu records in %llu reads",
	   (unsigned long long)sh->read_records, (unsigned long long)sh->reads);
	ok(cs.trims_space > 0 && cs.trims_size > 0, "both trims happened (size %llu, room %llu)",
	   (unsigned long long)cs.trims_size, (unsigned long long)cs.trims_space);
	printf("# bus: %llu records received in offset order, %llu offsets missing, %llu void records, "
	       "%llu lost to laps\n", (unsigned long long)sh->bus_delivered, (unsigned long long)sh->bus_gaps,
	       (unsigned long long)sh->bus_voids, (unsigned long long)sh->bus_lost);
	ok(sh->bus_delivered > 1000 && sh->bus_gaps <= sh->bus_voids,
	   "appends inside bus fills: per channel, offsets reach the bus reader in order; every gap is a void");
	ok(sh->violations == 0, "no violation: records intact, epochs kept, offsets never reused, no record lost%s%s",
	   sh->violations ? ": " : "", sh->violations ? sh->first : "");
	if (sh->violations)
		printf("# %llu violations\n", (unsigned long long)sh->violations);
	ctab_close(&tab);
	bus_unlink(&bus);
	bus_detach(&bus);
	snprintf(path, sizeof(path), "%s/%s", dir, CTAB_SEG_NAME);
	unlink(path);
	snprintf(path, sizeof(path), "%s/%s", dir, CTAB_LOCK_NAME);
	unlink(path);
	rmdir(dir);
	return tap_done();
}
