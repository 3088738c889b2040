/*
 * bus.c - the broadcast ring in shared memory (see bus.h for the layout).
 *
 * Writers: a robust process-shared mutex serialises them. Under it a writer
 * takes the record's place at tail (after a wrap pad if needed); if that
 * runs past resv, it first moves lo past what the next R/64 bytes will
 * overwrite and pushes resv that much further (release). It marks the
 * record as being written (w_pos, w_end, then w_seq = tail_seq), writes pad,
 * header and payload in place, then moves tail and tail_seq. At unlock it
 * publishes (head, head_seq) = (tail, tail_seq) inside the pub_ver seqlock,
 * then takes the sleepers' bits and wakes them (after a full fence: a
 * sleeper announces, fences, then looks at head, so one of the two always
 * sees the other). Readers' line is thus written once per publication and
 * once per R/64 bytes, not once per record.
 *
 * Readers never lock and never write the ring. They load head (acquire),
 * copy a chunk of published records into private memory, fence, and load
 * resv: if resv has gone more than a ring past the chunk's start, a writer
 * may have overwritten what was copied and the chunk is discarded; the
 * reader was lapped. It resumes a quarter of a ring past lo, the oldest
 * intact record, so that it is not where the writers overwrite next, and
 * counts the seqs in between as lost. Only a validated copy reaches a
 * callback.
 *
 * A holder killed at any instruction: the next locker gets EOWNERDEAD and
 * repairs. An interrupted publication is finished (what it published was
 * complete); a record being written is kept if it was complete, else
 * turned into a void record carrying the seq it took; then the ring is
 * walked and, if it does not verify (which only a stray write can cause),
 * reset so that every reader sees a lap. Repair is idempotent, so a
 * repairer may die too.
 *
 * The ring's payload bytes are read by memcpy while a lapping writer may be
 * writing them, as seqlocks do; the copy is never trusted before the check.
 */
#include "bus.h"
#include "rlock.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define LOAD_ACQ(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
#define BUMP(p, v) STORE((p), LOAD(p) + (v)) /* single writer (the lock holder or the slot owner) */

#define REC ((uint64_t)sizeof(struct bus_rec))
#define CHUNK ((size_t)64 << 10) /* bytes a reader copies before checking */

/* A record as copied out by a reader: where the next one starts, the header,
 * then the payload padded to 8 bytes. */
struct copied {
	uint64_t next;
	struct bus_rec rec;
};
_Static_assert(sizeof(struct copied) == 24, "copied entries keep payloads 8-aligned");

/* ---- small helpers ------------------------------------------------------ */

static uint64_t span_of(uint64_t len)
{
	return REC + ((len + BUS_ALIGN - 1) & ~(uint64_t)(BUS_ALIGN - 1));
}

static uint16_t rec_check(uint64_t seq, uint32_t len, uint16_t type)
{
	uint64_t x = seq * UINT64_C(0x9e3779b97f4a7c15) ^ ((uint64_t)len << 16 | type);
	x ^= x >> 31;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 29;
	return (uint16_t)(x >> 48);
}

static uint64_t ring_bytes(const struct bus *b)
{
	return b->mask + 1;
}

static void *at(const struct bus *b, uint64_t pos)
{
	return b->ring + (pos & b->mask);
}

static void put_rec(struct bus *b, uint64_t pos, uint64_t seq, uint32_t len, uint16_t type)
{
	struct bus_rec r = { .seq = seq, .len = len, .type = type, .check = rec_check(seq, len, type) };
	memcpy(at(b, pos), &r, sizeof(r));
}

static void get_rec(const struct bus *b, uint64_t pos, struct bus_rec *r)
{
	memcpy(r, at(b, pos), sizeof(*r));
}

/* The bytes R spans at POS, or 0 if R cannot be a record there: a bad check,
 * a pad that does not end at the ring's end, a record too big or crossing
 * it. */
static uint64_t rec_span(const struct bus *b, uint64_t pos, const struct bus_rec *r)
{
	uint64_t off = pos & b->mask;
	if (r->check != rec_check(r->seq, r->len, r->type))
		return 0;
	if (r->type == BUS_T_PAD)
		return r->len == ring_bytes(b) - off ? r->len : 0;
	if (r->len > b->max_record || off + span_of(r->len) > ring_bytes(b))
		return 0;
	if (r->type >= BUS_TYPE_MAX && r->type != BUS_T_VOID)
		return 0;
	return span_of(r->len);
}

/* Reads the pair (head, head_seq) as one. While a publication is in flight
 * (pub_ver odd) the pair it publishes is (tail, tail_seq): stable until it
 * ends, and the one a repair would finish it with, so a reader need not
 * wait for a writer that died there. */
static void read_head(const struct bus_hdr *h, uint64_t *pos, uint64_t *seq)
{
	for (;;) {
		uint64_t v = LOAD_ACQ(&h->pub_ver), p, s;
		if (v & 1) {
			p = LOAD(&h->tail);
			s = LOAD(&h->tail_seq);
		} else {
			p = LOAD(&h->head);
			s = LOAD(&h->head_seq);
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (LOAD(&h->pub_ver) == v) {
			*pos = p;
			*seq = s;
			return;
		}
	}
}

/* ---- layout ------------------------------------------------------------- */

static uint64_t slot_off(void)
{
	return sizeof(struct bus_hdr);
}

static uint64_t ring_off(unsigned nslots)
{
	return slot_off() + (uint64_t)nslots * sizeof(struct bus_slot);
}

size_t bus_seg_size(size_t ring, unsigned nslots)
{
	return sizeof(struct seg_hdr) + ring_off(nslots) + ring;
}

static bool ring_ok(uint64_t ring)
{
	return ring >= BUS_RING_MIN && ring <= BUS_RING_MAX && (ring & (ring - 1)) == 0;
}

static void map(struct bus *b)
{
	struct bus_hdr *h = seg_payload(&b->seg);
	b->h = h;
	b->slots = (struct bus_slot *)((char *)h + h->slot_off);
	b->ring = (unsigned char *)h + h->ring_off;
	b->mask = h->ring_bytes - 1;
	b->max_record = h->max_record;
	b->nslots = h->nslots;
	b->readonly = b->seg.readonly;
	b->defer = false;
	b->wake_due = false;
	b->wake = NULL;
	b->wake_arg = NULL;
}

int bus_create(struct bus *b, const char *path, size_t ring, unsigned nslots)
{
	int err;

	memset(b, 0, sizeof(*b));
	if (!ring_ok(ring) || nslots < 1 || nslots > BUS_SLOTS_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (seg_create(&b->seg, path, SEG_KIND_BUS, BUS_VERSION, bus_seg_size(ring, nslots)) < 0)
		return -1;

	struct bus_hdr *h = seg_payload(&b->seg);
	h->version = BUS_VERSION;
	h->hdr_size = sizeof(struct bus_hdr);
	h->ring_bytes = ring;
	h->ring_off = ring_off(nslots);
	h->slot_off = slot_off();
	h->nslots = nslots;
	h->max_record = (uint32_t)(ring / 8 - REC);
	h->slot_size = sizeof(struct bus_slot);
	h->rec_size = sizeof(struct bus_rec);
	h->head_seq = 1;
	h->tail_seq = 1;

	if ((err = rlock_init(&h->lock)) != 0) {
		seg_unlink(&b->seg);
		seg_detach(&b->seg);
		errno = err;
		return -1;
	}
	/* The magic last: a bus header with a magic is complete. */
	STORE_REL(&h->magic, BUS_MAGIC);
	map(b);
	return 0;
}

/* Whether the header H of a segment of SIZE bytes describes a bus. Positions
 * are loaded lo, head, tail, resv: each only grows, so the order keeps the
 * checks true under live writers. */
static bool hdr_ok(const void *payload, size_t size)
{
	const struct bus_hdr *h = payload;
	if (LOAD_ACQ(&h->magic) != BUS_MAGIC || h->version != BUS_VERSION ||
	    h->hdr_size != sizeof(struct bus_hdr) || h->slot_size != sizeof(struct bus_slot) ||
	    h->rec_size != sizeof(struct bus_rec) || !ring_ok(h->ring_bytes) || h->nslots < 1 ||
	    h->nslots > BUS_SLOTS_MAX || h->slot_off != slot_off() || h->ring_off != ring_off(h->nslots) ||
	    h->max_record != h->ring_bytes / 8 - REC || size != bus_seg_size(h->ring_bytes, h->nslots))
		return false;
	uint64_t lo = LOAD_ACQ(&h->lo), head = LOAD_ACQ(&h->head), tail = LOAD_ACQ(&h->tail);
	uint64_t resv = LOAD_ACQ(&h->resv);
	return lo <= head && head <= tail && tail <= resv &&
	       ((lo | head | tail | resv) & (BUS_ALIGN - 1)) == 0 && LOAD(&h->head_seq) >= 1;
}

int bus_attach(struct bus *b, const char *path, bool readonly)
{
	memset(b, 0, sizeof(*b));
	if (seg_attach_checked(&b->seg, path, SEG_KIND_BUS, BUS_VERSION, readonly, hdr_ok) < 0)
		return -1;
	map(b);
	return 0;
}

void bus_detach(struct bus *b)
{
	seg_detach(&b->seg);
	b->h = NULL;
}

int bus_unlink(struct bus *b)
{
	return seg_unlink(&b->seg);
}

void bus_set_waker(struct bus *b, bus_wake_fn *fn, void *arg)
{
	b->wake = fn;
	b->wake_arg = arg;
}

/* ---- writers: everything _locked runs with the bus lock held ------------ */

/* Ends a publication its writer died in: it was publishing (tail, tail_seq),
 * complete records, and readers meanwhile took that pair. */
static void finish_publish_locked(struct bus *b)
{
	struct bus_hdr *h = b->h;
	uint64_t v = LOAD(&h->pub_ver);
	if ((v & 1) == 0)
		return;
	STORE(&h->head_seq, LOAD(&h->tail_seq));
	STORE_REL(&h->head, LOAD(&h->tail));
	STORE_REL(&h->pub_ver, v + 1);
}

/* Publishes the complete records [head, tail) to readers, with their seqs,
 * as one pair. */
static void publish_locked(struct bus *b)
{
	struct bus_hdr *h = b->h;
	uint64_t tail = LOAD(&h->tail), v = LOAD(&h->pub_ver);

	if (LOAD(&h->head) == tail)
		return;
	STORE(&h->pub_ver, v + 1);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	STORE(&h->head_seq, LOAD(&h->tail_seq));
	STORE_REL(&h->head, tail);
	STORE_REL(&h->pub_ver, v + 2);
}

/* Walks the complete records from lo to tail. Stores their count in *N.
 * Returns 0, or -1 at the first thing that is not as bus.h says. */
static int verify_locked(const struct bus *b, uint64_t *n)
{
	const struct bus_hdr *h = b->h;
	uint64_t R = ring_bytes(b), lo = LOAD(&h->lo), head = LOAD(&h->head), tail = LOAD(&h->tail);
	uint64_t resv = LOAD(&h->resv), next = 0, count = 0, p = lo;
	bool head_seen = false;
	struct bus_rec r;

	if (!(lo <= head && head <= tail && tail <= resv) || tail - lo > R || resv - tail >= R / 2 ||
	    ((lo | head | tail | resv) & (BUS_ALIGN - 1)) != 0 || (LOAD(&h->pub_ver) & 1) ||
	    LOAD(&h->w_seq) >= LOAD(&h->tail_seq))
		return -1;
	for (;;) {
		if (p == head) {
			head_seen = true;
			if (next != 0 && next != LOAD(&h->head_seq))
				return -1;
		}
		if (p >= tail)
			break;
		get_rec(b, p, &r);
		uint64_t sp = rec_span(b, p, &r);
		if (sp == 0 || sp > tail - p || (r.type == BUS_T_PAD && p == lo))
			return -1; /* lo is never a pad */
		if (r.type != BUS_T_PAD) {
			if (next != 0 && r.seq != next)
				return -1;
			next = r.seq + 1;
			count++;
		}
		p += sp;
	}
	if (!head_seen || (next != 0 && next != LOAD(&h->tail_seq)) ||
	    (head == tail && LOAD(&h->head_seq) != LOAD(&h->tail_seq)))
		return -1;
	*n = count;
	return 0;
}

/* Throws the ring's contents away when they cannot be trusted: moves every
 * position more than a ring past anything a reader can hold, so every reader
 * finds itself lapped and resumes at the new, empty head. Seqs go on. */
static void reset_locked(struct bus *b)
{
	struct bus_hdr *h = b->h;
	uint64_t R = ring_bytes(b), resv = LOAD(&h->resv);
	uint64_t p = ((resv + R) & ~b->mask) + R; /* > resv + R, at a ring start */
	uint64_t seq = LOAD(&h->tail_seq);

	finish_publish_locked(b);
	if (LOAD(&h->w_seq) >= seq)
		seq = LOAD(&h->w_seq) + 1; /* never reuse a seq a writer took */
	if (LOAD(&h->head_seq) > seq)
		seq = LOAD(&h->head_seq);
	STORE(&h->w_pos, p);
	STORE(&h->w_end, p);
	STORE(&h->w_seq, seq - 1);
	STORE_REL(&h->resv, p);
	STORE_REL(&h->lo, p);
	STORE_REL(&h->tail, p);
	STORE_REL(&h->tail_seq, seq);
	publish_locked(b);
	ADD(&h->corrupt, 1);
}

/* Brings the structure back after its last holder died holding the lock. */
static void repair_locked(struct bus *b)
{
	struct bus_hdr *h = b->h;
	uint64_t R = ring_bytes(b), n;

	ADD(&h->repairs, 1);
	STORE(&h->owner, 0);
	finish_publish_locked(b);
	uint64_t tail = LOAD(&h->tail), seq = LOAD(&h->w_seq);
	if (seq == LOAD(&h->tail_seq)) {
		/* It died writing the record [pos, end). */
		uint64_t pos = LOAD(&h->w_pos), end = LOAD(&h->w_end), off = tail & b->mask;
		if (tail != end) {
			bool sane = pos >= tail && end > pos && end - pos >= REC &&
				    end - pos <= span_of(b->max_record) && end <= LOAD(&h->resv) &&
				    ((pos | end) & (BUS_ALIGN - 1)) == 0 &&
				    (pos == tail || pos - tail == R - off) &&
				    (pos & b->mask) + (end - pos) <= R;
			if (!sane) {
				reset_locked(b);
				return;
			}
			/* Unfinished: void it, keeping its seq taken. */
			if (pos != tail)
				put_rec(b, tail, seq, (uint32_t)(pos - tail), BUS_T_PAD);
			put_rec(b, pos, seq, (uint32_t)(end - pos - REC), BUS_T_VOID);
			STORE_REL(&h->tail, end);
			ADD(&h->voids, 1);
		}
		/* (tail == end: it was complete, only tail_seq was missing.) */
		STORE_REL(&h->tail_seq, seq + 1);
	}
	publish_locked(b);
	if (verify_locked(b, &n) < 0)
		reset_locked(b);
}

/* The repair rlock_lock runs after a dead holder, with the lock held. */
static void repair(void *b)
{
	repair_locked(b);
}

/* Takes the bus lock, repairing after a dead holder. 0, or -1 with errno. */
static int lock(struct bus *b)
{
	return rlock_lock(&b->h->lock, &b->h->owner, repair, b);
}

static void unlock(struct bus *b)
{
	rlock_unlock(&b->h->lock, &b->h->owner);
}

/* Moves lo past every record that writing up to END will overwrite (and past
 * a pad it would then stand on). Returns 0, or -1 if a record on the way
 * does not check (the ring is damaged). */
static int advance_lo_locked(struct bus *b, uint64_t end)
{
	struct bus_hdr *h = b->h;
	uint64_t R = ring_bytes(b), lo = LOAD(&h->lo), tail = LOAD(&h->tail);
	struct bus_rec r;

	if (end - lo <= R)
		return 0;
	while (lo < tail) {
		get_rec(b, lo, &r);
		uint64_t sp = rec_span(b, lo, &r);
		if (sp == 0 || sp > tail - lo)
			return -1;
		if (end - lo <= R && r.type != BUS_T_PAD)
			break;
		lo += sp;
	}
	STORE_REL(&h->lo, lo);
	return 0;
}

/* Writes one record at tail. Returns its seq. */
static uint64_t append_locked(struct bus *b, uint16_t type, size_t len, bus_fill_fn *fill, void *arg)
{
	struct bus_hdr *h = b->h;
	uint64_t R = ring_bytes(b), need = span_of(len);
	uint64_t start, pos, end, seq, off;

	for (;;) {
		start = LOAD(&h->tail);
		seq = LOAD(&h->tail_seq);
		off = start & b->mask;
		pos = off + need > R ? start + (R - off) : start;
		end = pos + need;
		if (end <= LOAD(&h->resv))
			break;
		/* Reserve the next R/64 bytes too: readers' line is written
		 * once for them. */
		uint64_t resv = end + (R / 64 > BUS_ALIGN ? R / 64 : BUS_ALIGN);
		if (advance_lo_locked(b, resv) == 0) {
			/* From here readers must assume [tail, resv) is written. */
			STORE_REL(&h->resv, resv);
			__atomic_thread_fence(__ATOMIC_RELEASE);
			break;
		}
		reset_locked(b);
	}
	STORE(&h->w_pos, pos);
	STORE(&h->w_end, end);
	STORE_REL(&h->w_seq, seq); /* the mark: [pos, end) is being written */
	if (pos != start)
		put_rec(b, start, seq, (uint32_t)(pos - start), BUS_T_PAD);
	put_rec(b, pos, seq, (uint32_t)len, type);
	unsigned char *dst = (unsigned char *)at(b, pos) + REC;
	fill(dst, len, seq, arg);
	memset(dst + len, 0, need - REC - len);
	STORE_REL(&h->tail, end);
	STORE_REL(&h->tail_seq, seq + 1); /* the record is complete */
	BUMP(&h->appends, 1);
	BUMP(&h->bytes, len);
	if (end - LOAD(&h->head) > R / 4)
		publish_locked(b); /* a long batch: let readers have it */
	return seq;
}

/* Takes the announcements of sleeping readers and wakes them. The full fence
 * pairs with the one in bus_reader_sleep: either the reader sees the new
 * head, or this sees its bit. */
static void wake_sleepers(struct bus *b)
{
	struct bus_hdr *h = b->h;
	unsigned words = (b->nslots + 63) / 64;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < words; i++) {
		if (LOAD(&h->sleepers[i]) == 0)
			continue;
		uint64_t m = __atomic_exchange_n(&h->sleepers[i], 0, __ATOMIC_ACQ_REL);
		while (m != 0) {
			unsigned bit = (unsigned)__builtin_ctzll(m);
			m &= m - 1;
			b->wake(i * 64 + bit, b->wake_arg);
			ADD(&h->wakes, 1);
		}
	}
}

/* Refuses what no append may do: 0, or -1 with errno. */
static int append_ok(const struct bus *b, unsigned type, size_t len)
{
	if (b->readonly) {
		errno = EROFS;
		return -1;
	}
	if (type >= BUS_TYPE_MAX) {
		errno = EINVAL;
		return -1;
	}
	if (len > b->max_record) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

int bus_lock(struct bus *b)
{
	if (b->readonly) {
		errno = EROFS;
		return -1;
	}
	return lock(b);
}

int bus_append_locked(struct bus *b, unsigned type, size_t len, bus_fill_fn *fill, void *arg,
		      uint64_t *seqp)
{
	if (append_ok(b, type, len) < 0)
		return -1;
	uint64_t seq = append_locked(b, (uint16_t)type, len, fill, arg);
	if (seqp != NULL)
		*seqp = seq;
	return 0;
}

void bus_unlock(struct bus *b)
{
	publish_locked(b);
	unlock(b);
	if (b->wake == NULL)
		return;
	if (b->defer)
		b->wake_due = true;
	else
		wake_sleepers(b);
}

int bus_append_fn(struct bus *b, unsigned type, size_t len, bus_fill_fn *fill, void *arg,
		  uint64_t *seqp)
{
	if (append_ok(b, type, len) < 0 || lock(b) < 0)
		return -1;
	uint64_t seq = append_locked(b, (uint16_t)type, len, fill, arg);
	bus_unlock(b);
	if (seqp != NULL)
		*seqp = seq;
	return 0;
}

static void copy_fill(void *dst, size_t len, uint64_t seq, void *arg)
{
	if (len > 0) /* DATA may be NULL for an empty record */
		memcpy(dst, arg, len);
}

int bus_append(struct bus *b, unsigned type, const void *data, size_t len, uint64_t *seq)
{
	return bus_append_fn(b, type, len, copy_fill, (void *)data, seq);
}

void bus_wake_defer(struct bus *b)
{
	b->defer = true;
}

void bus_wake_flush(struct bus *b)
{
	b->defer = false;
	if (b->wake_due && b->wake != NULL)
		wake_sleepers(b);
	b->wake_due = false;
}

void bus_wake_all(struct bus *b)
{
	struct bus_hdr *h = b->h;

	/* Without a waker, taking the announcements would lose them. */
	if (b->readonly || b->wake == NULL)
		return;
	for (unsigned i = 0; i < (b->nslots + 63) / 64; i++)
		__atomic_exchange_n(&h->sleepers[i], 0, __ATOMIC_ACQ_REL);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < b->nslots; i++)
		if (LOAD(&b->slots[i].pid) != 0)
			b->wake(i, b->wake_arg);
}

int bus_slot_claim(struct bus *b, unsigned slot, int32_t pid)
{
	int32_t free_pid = 0;

	if (b->readonly) {
		errno = EROFS;
		return -1;
	}
	if (slot >= b->nslots || pid <= 0) {
		errno = EINVAL;
		return -1;
	}
	if (!__atomic_compare_exchange_n(&b->slots[slot].pid, &free_pid, pid, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_RELAXED)) {
		errno = EBUSY;
		return -1;
	}
	return 0;
}

int bus_slot_release(struct bus *b, unsigned slot)
{
	struct bus_hdr *h = b->h;
	struct bus_slot *s;
	int err;

	if (b->readonly) {
		errno = EROFS;
		return -1;
	}
	if (slot >= b->nslots) {
		errno = EINVAL;
		return -1;
	}
	s = &b->slots[slot];
	__atomic_fetch_and(&h->sleepers[slot / 64], ~(UINT64_C(1) << (slot % 64)), __ATOMIC_RELAXED);
	STORE(&s->pos, 0);
	STORE(&s->seq, 0);
	STORE(&s->delivered, 0);
	STORE(&s->laps, 0);
	STORE(&s->lost, 0);
	STORE(&s->voids, 0);
	STORE(&s->sleeps, 0);
	STORE_REL(&s->pid, 0);

	/* A dead holder makes trylock answer EOWNERDEAD; EBUSY is a live one. */
	err = pthread_mutex_trylock(&h->lock);
	if (err == EOWNERDEAD) {
		repair_locked(b);
		pthread_mutex_consistent(&h->lock);
	}
	if (err == 0 || err == EOWNERDEAD)
		pthread_mutex_unlock(&h->lock);
	bus_wake_all(b);
	return 0;
}

/* ---- readers ------------------------------------------------------------ */

int bus_reader_init(struct bus_reader *r, struct bus *b, unsigned slot)
{
	memset(r, 0, sizeof(*r));
	if (slot != BUS_NO_SLOT && (slot >= b->nslots || b->readonly)) {
		errno = EINVAL;
		return -1;
	}
	r->bufsz = sizeof(struct copied) + ((b->max_record + 7) & ~(size_t)7);
	if (r->bufsz < CHUNK)
		r->bufsz = CHUNK;
	r->buf = malloc(r->bufsz);
	if (r->buf == NULL) {
		errno = ENOMEM;
		return -1;
	}
	r->bus = b;
	r->slot = slot;
	read_head(b->h, &r->pos, &r->seq);
	if (slot != BUS_NO_SLOT) {
		struct bus_slot *s = &b->slots[slot];
		__atomic_fetch_and(&b->h->sleepers[slot / 64], ~(UINT64_C(1) << (slot % 64)),
				   __ATOMIC_RELAXED);
		STORE(&s->pos, r->pos);
		STORE(&s->seq, r->seq);
		STORE(&s->delivered, 0);
		STORE(&s->laps, 0);
		STORE(&s->lost, 0);
		STORE(&s->voids, 0);
		STORE(&s->sleeps, 0);
		STORE_REL(&s->pid, (int32_t)rlock_pid());
	}
	return 0;
}

void bus_reader_free(struct bus_reader *r)
{
	free(r->buf);
	r->buf = NULL;
}

/* Moves R, which lost its place, to the first record a quarter of a ring
 * past lo (or to the head if the writers keep lapping it, or the ring was
 * reset). Landing on lo itself would leave R where the writers overwrite
 * next: lapped again before it copied a chunk, for ever (a lap storm). The
 * walk checks each header against resv as it goes, and outruns the writers.
 * Returns how many seqs R skipped, at least 1. */
static uint64_t resync(struct bus_reader *r, bool at_head)
{
	const struct bus *b = r->bus;
	const struct bus_hdr *h = b->h;
	uint64_t R = ring_bytes(b), pos, seq, lost;
	struct bus_rec rec;

	for (int tries = 0; !at_head && tries < 8; tries++) {
		uint64_t lo = LOAD_ACQ(&h->lo), head = LOAD_ACQ(&h->head);
		uint64_t target = lo + R / 4 < head ? lo + R / 4 : head, p = lo, next = 0;
		if (lo <= r->pos || lo >= head)
			break;
		while (p < target) {
			get_rec(b, p, &rec);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			if (LOAD_ACQ(&h->resv) - p > R)
				break; /* overtaken: start again from the new lo */
			uint64_t sp = rec_span(b, p, &rec);
			if (sp == 0 || sp > head - p || (rec.type != BUS_T_PAD && next != 0 && rec.seq != next)) {
				at_head = true; /* intact yet wrong: a stray write */
				break;
			}
			if (rec.type != BUS_T_PAD)
				next = rec.seq + 1;
			p += sp;
		}
		if (p < target || at_head)
			continue;
		if (next <= r->seq)
			break; /* cannot be: we were behind lo */
		/* The record at p (or head) is the one after the last walked. */
		lost = next - r->seq;
		r->pos = p;
		r->seq = next;
		return lost;
	}
	read_head(h, &pos, &seq);
	lost = seq > r->seq ? seq - r->seq : 1;
	r->pos = pos;
	r->seq = seq;
	return lost;
}

/* Records R's loss of LOST records in R, its slot and the bus counters. */
static void note_loss(struct bus_reader *r, uint64_t lost, bool corrupt)
{
	struct bus_hdr *h = r->bus->h;

	r->lost += lost;
	if (corrupt) {
		r->corrupt++;
	} else {
		r->laps++;
		if (!r->bus->readonly)
			ADD(&h->laps, 1);
	}
	if (!r->bus->readonly)
		ADD(&h->lost, lost);
}

static void update_slot(struct bus_reader *r)
{
	if (r->slot == BUS_NO_SLOT)
		return;
	struct bus_slot *s = &r->bus->slots[r->slot];
	STORE(&s->pos, r->pos);
	STORE(&s->seq, r->seq);
	STORE(&s->delivered, r->delivered);
	STORE(&s->laps, r->laps);
	STORE(&s->lost, r->lost);
	STORE(&s->voids, r->voids);
}

int bus_read(struct bus_reader *r, bus_record_fn *fn, void *arg, unsigned max, uint64_t *lostp)
{
	const struct bus *b = r->bus;
	const struct bus_hdr *h = b->h;
	const uint64_t R = ring_bytes(b);
	unsigned n = 0;
	uint64_t lost = 0;

	if (max == 0)
		max = UINT_MAX;
	while (n < max) {
		uint64_t head = LOAD_ACQ(&h->head), start = r->pos, p = start, seq = r->seq;
		size_t used = 0;
		unsigned cnt = 0;
		bool bad = false;

		if ((int64_t)(head - start) <= 0)
			break;
		if (LOAD_ACQ(&h->resv) - start > R) {
			lost = resync(r, false);
			note_loss(r, lost, false);
			break;
		}
		/* Copy a chunk out; nothing of it is trusted before the check. */
		while (p < head && cnt < max - n) {
			struct bus_rec rec;
			get_rec(b, p, &rec);
			uint64_t sp = rec_span(b, p, &rec);
			if (sp == 0 || sp > head - p || (rec.type != BUS_T_PAD && rec.seq != seq)) {
				bad = true;
				break;
			}
			if (rec.type == BUS_T_PAD) {
				p += sp;
				continue;
			}
			size_t len = rec.type == BUS_T_VOID ? 0 : rec.len;
			size_t esz = sizeof(struct copied) + ((len + 7) & ~(size_t)7);
			if (used + esz > r->bufsz || (used > 0 && used + esz > CHUNK))
				break;
			struct copied *c = (struct copied *)(r->buf + used);
			p += sp;
			c->next = p;
			c->rec = rec;
			memcpy(c + 1, (unsigned char *)at(b, p - sp) + REC, len);
			used += esz;
			seq++;
			cnt++;
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (LOAD_ACQ(&h->resv) - start > R) {
			lost = resync(r, false);
			note_loss(r, lost, false);
			break;
		}
		if (bad && cnt == 0) {
			/* A record that fails its check yet was not overwritten:
			 * a stray write. Skip to the head rather than guess. */
			lost = resync(r, true);
			note_loss(r, lost, true);
			break;
		}
		/* The copy is intact: deliver it. */
		for (size_t off = 0; off < used;) {
			struct copied *c = (struct copied *)(r->buf + off);
			size_t len = c->rec.type == BUS_T_VOID ? 0 : c->rec.len;
			off += sizeof(struct copied) + ((len + 7) & ~(size_t)7);
			r->pos = c->next;
			r->seq = c->rec.seq + 1;
			if (c->rec.type == BUS_T_VOID) {
				r->voids++;
				continue;
			}
			n++;
			r->delivered++;
			if (fn(arg, c->rec.seq, c->rec.type, c + 1, len) != 0)
				goto out;
		}
		if (!bad) {
			r->pos = p; /* past trailing pads too */
			r->seq = seq;
		}
	}
out:
	update_slot(r);
	*lostp = lost;
	return (int)n;
}

bool bus_reader_pending(const struct bus_reader *r)
{
	return (int64_t)(LOAD_ACQ(&r->bus->h->head) - r->pos) > 0;
}

bool bus_reader_sleep(struct bus_reader *r)
{
	struct bus_hdr *h = r->bus->h;
	uint64_t bit = UINT64_C(1) << (r->slot % 64), *w;

	if (r->slot == BUS_NO_SLOT)
		return !bus_reader_pending(r);
	w = &h->sleepers[r->slot / 64];
	__atomic_fetch_or(w, bit, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (bus_reader_pending(r)) {
		__atomic_fetch_and(w, ~bit, __ATOMIC_RELAXED);
		return false;
	}
	BUMP(&r->bus->slots[r->slot].sleeps, 1);
	return true;
}

void bus_reader_wake_cancel(struct bus_reader *r)
{
	uint64_t bit = UINT64_C(1) << (r->slot % 64), *w;

	if (r->slot == BUS_NO_SLOT)
		return;
	w = &r->bus->h->sleepers[r->slot / 64];
	if (LOAD(w) & bit)
		__atomic_fetch_and(w, ~bit, __ATOMIC_RELAXED);
}

/* ---- monitoring ---------------------------------------------------------- */

void bus_stats(const struct bus *b, struct bus_stats *st)
{
	const struct bus_hdr *h = b->h;

	memset(st, 0, sizeof(*st));
	st->ring_bytes = h->ring_bytes;
	st->lo = LOAD(&h->lo);
	read_head(h, &st->head, &st->head_seq);
	st->appends = LOAD(&h->appends);
	st->bytes = LOAD(&h->bytes);
	st->repairs = LOAD(&h->repairs);
	st->voids = LOAD(&h->voids);
	st->laps = LOAD(&h->laps);
	st->lost = LOAD(&h->lost);
	st->wakes = LOAD(&h->wakes);
	st->corrupt = LOAD(&h->corrupt);
	st->lock_owner = LOAD(&h->owner);
	st->nslots = b->nslots;
	for (unsigned i = 0; i < b->nslots; i++)
		if (LOAD(&b->slots[i].pid) != 0)
			st->readers++;
}

int bus_verify(struct bus *b, uint64_t *nrecords)
{
	uint64_t n = 0;
	int rc;

	if (b->readonly) {
		errno = EROFS;
		return -1;
	}
	if (lock(b) < 0)
		return -1;
	rc = verify_locked(b, &n);
	unlock(b);
	if (nrecords != NULL)
		*nrecords = n;
	if (rc < 0)
		errno = EPROTO;
	return rc;
}
