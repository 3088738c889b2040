/*
 * chan.c - the channel table and its history streams (see chan.h for the
 * layout).
 *
 * One robust process-shared mutex guards everything; every function named
 * _locked runs with it held. Appends are short: hash the name, find the
 * entry, take blocks from the bitmap, copy the record, commit, free what was
 * trimmed. Reads copy the records they return under the lock and check and
 * decode them after it.
 *
 * Crash safety. What is authoritative is the bucket chains and each entry's
 * meta; the bitmaps of entries and blocks in use, and their counts, are
 * derived. Every change is one operation announced in the journal before it
 * touches anything shared, so that whoever next takes the lock after its
 * holder died ends it in O(1) (repair_locked):
 *   - ALLOC: a record's blocks, chained while still free, then marked in
 *     use; the record is written into them. Undone: the chain is given back.
 *   - COMMIT: a stream's new meta, at most one record link (the old tail's
 *     `newer`) and the records the new meta no longer holds, to be freed.
 *     Armed once filled in; finished: meta and link applied (idempotent),
 *     the records freed (idempotent: freed blocks are not reused before the
 *     operation ends). Arming it supersedes an ALLOC: the meta takes the
 *     chain.
 *   - INSERT: an entry marked in use, filled, linked into its chain (one
 *     store). Finished if linked, else undone.
 *   - DELETE: an entry unlinked (one store), unmarked, its records freed.
 *     Finished.
 *   - WALK: the maps being rebuilt from the chains. Walked again.
 * Then the counts are recounted from the maps. So a holder killed at any
 * instruction leaves its whole change or no trace of it, and the repair
 * costs microseconds, not a walk of the table.
 *
 * Validation. The walk (every chain, every record's blocks, links, offsets,
 * checks and CRCs) runs at each cold open and in ctab_verify; a read checks
 * what it copies. A stream whose meta or records do not validate (a stray
 * write, or pages lost to a machine crash) gets a new epoch and loses its
 * records: clients learn their position is gone instead of receiving a gap.
 *
 * Room. When the data is full, an append trims the oldest record of the
 * stream whose oldest record is oldest among 16 sampled streams with
 * records (Redis-style sampled eviction; approximately "oldest records
 * first", in O(1)), again until its record fits; each trim is a missing
 * head that recovery reports as not recovered. When the table is full, a
 * new stream evicts the least recently touched (append or read) of 16
 * sampled streams, or an expired one: its next use gets a new epoch, so its
 * subscribers are told their position is gone. Neither ever fails an
 * append: a publish always succeeds, at the cost of older history.
 *
 * Expiry: history_ttl drops all of a stream's records together, ttl after
 * its last append (Centrifugo's memory and Redis engines do the same); the
 * meta ttl forgets the stream ttl after its last append or read. Both are
 * applied lazily on access and by ctab_sweep.
 *
 * Migration. A cold open that finds a layout-1 table (chan_v1.h, before
 * hist_meta had versions) validates it read-only by layout 1's rules and
 * writes what validates into a new file renamed over it (migrate_v1), so a
 * package upgrade's restart keeps every epoch and record.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* F_OFD_SETLK */
#endif
#include "chan.h"
#include "chan_v1.h"
#include "rlock.h"
#include "siphash.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "segment files are little-endian");

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define COUNT(p, v) STORE((p), LOAD(p) + (v)) /* counters: the lock holder writes */

#define NONE UINT32_MAX
#define FIRST_DATA 16u                /* payload bytes in a record's first block */
#define CONT_DATA (HIST_BLOCK - 4u)   /* ... and in each further block */
#define SAMPLE 16                     /* streams an eviction compares */
#define META_SEED 0x6d657461u         /* "meta": where a meta's check starts, in every layout */

/* A record as hist_read copies it out; the payload follows, padded to 8. */
struct copied {
	uint64_t offset;
	int64_t time_ms;
	uint32_t len;
	uint32_t crc;
};

/* ---- small helpers ------------------------------------------------------ */

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* NOW + D, saturating. */
static int64_t later(int64_t now, uint64_t d)
{
	return d > (uint64_t)(INT64_MAX - now) ? INT64_MAX : now + (int64_t)d;
}

static size_t round_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

/* CRC32C (Castagnoli), slice-by-8. */
static uint32_t crc_tab[8][256];

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc_tab[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int k = 1; k < 8; k++)
			crc_tab[k][i] = (crc_tab[k - 1][i] >> 8) ^ crc_tab[0][crc_tab[k - 1][i] & 0xff];
}

/* Continues CRC (0 to start) over LEN bytes at BUF. */
static uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const unsigned char *p = buf;

	pthread_once(&once, crc_init);
	crc = ~crc;
	while (len > 0 && ((uintptr_t)p & 7) != 0) {
		crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= crc;
		crc = crc_tab[7][w & 0xff] ^ crc_tab[6][(w >> 8) & 0xff] ^ crc_tab[5][(w >> 16) & 0xff] ^
		      crc_tab[4][(w >> 24) & 0xff] ^ crc_tab[3][(w >> 32) & 0xff] ^
		      crc_tab[2][(w >> 40) & 0xff] ^ crc_tab[1][(w >> 48) & 0xff] ^ crc_tab[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len-- > 0)
		crc = crc_tab[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* N random bytes: the kernel's, or (if it has none to give) a mix of the
 * clock, the pid and a counter, good enough for epochs. */
static void random_bytes(void *buf, size_t n)
{
	static uint64_t fallback;
	unsigned char *p = buf;

	while (n > 0) {
		ssize_t k = getrandom(p, n, GRND_NONBLOCK);
		if (k > 0) {
			p += k;
			n -= (size_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t x = fallback++ ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^
			     ((uint64_t)getpid() << 17);
		x = (x ^ (x >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
		x = (x ^ (x >> 27)) * UINT64_C(0x94d049bb133111eb);
		x ^= x >> 31;
		size_t c = n < 8 ? n : 8;
		memcpy(p, &x, c);
		p += c;
		n -= c;
	}
}

static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/* A new epoch: 8 letters drawn uniformly from [a-zA-Z], never AVOID (the
 * epoch it replaces, may be NULL). */
static void new_epoch(char out[HIST_EPOCH_LEN], const char *avoid)
{
	do {
		unsigned char r[32];
		unsigned n = 0;
		random_bytes(r, sizeof(r));
		for (unsigned i = 0; i < sizeof(r) && n < HIST_EPOCH_LEN; i++)
			if (r[i] < 208) /* 4 * 52: no bias */
				out[n++] = letters[r[i] % 52];
		while (n < HIST_EPOCH_LEN) /* 32 draws all rejected: 2^-76 */
			out[n++] = 'a';
	} while (avoid != NULL && memcmp(out, avoid, HIST_EPOCH_LEN) == 0);
}

static bool epoch_ok(const char *e)
{
	for (int i = 0; i < HIST_EPOCH_LEN; i++)
		if (!((e[i] >= 'a' && e[i] <= 'z') || (e[i] >= 'A' && e[i] <= 'Z')))
			return false;
	return true;
}

/* ---- bitmaps ------------------------------------------------------------ */

static bool bit_test(const uint64_t *m, uint32_t i)
{
	return (m[i >> 6] >> (i & 63)) & 1;
}

static void bit_set(uint64_t *m, uint32_t i)
{
	m[i >> 6] |= UINT64_C(1) << (i & 63);
}

static void bit_clear(uint64_t *m, uint32_t i)
{
	m[i >> 6] &= ~(UINT64_C(1) << (i & 63));
}

static size_t map_words(uint32_t n)
{
	return ((size_t)n + 63) / 64;
}

/* The first clear bit of M in [LO, HI), or HI. */
static uint32_t find_clear_range(const uint64_t *m, uint32_t lo, uint32_t hi)
{
	while (lo < hi) {
		uint32_t w = lo >> 6;
		uint64_t x = ~m[w] & (~UINT64_C(0) << (lo & 63));
		if (x != 0) {
			uint32_t i = (w << 6) + (uint32_t)__builtin_ctzll(x);
			return i < hi ? i : hi;
		}
		lo = (w + 1) << 6;
	}
	return hi;
}

/* The first clear bit of the N in M at or after FROM, wrapping; N if none. */
static uint32_t find_clear(const uint64_t *m, uint32_t n, uint32_t from)
{
	if (from >= n)
		from = 0;
	uint32_t i = find_clear_range(m, from, n);
	if (i < n)
		return i;
	i = find_clear_range(m, 0, from);
	return i < from ? i : n;
}

/* Bits set among the N of M (those past N are always clear). */
static uint32_t count_set(const uint64_t *m, uint32_t n)
{
	uint64_t c = 0;
	for (size_t w = 0; w < map_words(n); w++)
		c += (uint64_t)__builtin_popcountll(m[w]);
	return (uint32_t)c;
}

/* The first set bit of the N in M at or after FROM, not wrapping; N if none. */
static uint32_t find_set(const uint64_t *m, uint32_t n, uint32_t from)
{
	size_t words = map_words(n), w;
	uint64_t x;

	if (from >= n)
		return n;
	w = from >> 6;
	x = m[w] & (~UINT64_C(0) << (from & 63));
	for (;;) {
		if (x != 0) {
			uint32_t i = (uint32_t)(w << 6) + (uint32_t)__builtin_ctzll(x);
			return i < n ? i : n;
		}
		if (++w >= words)
			return n;
		x = m[w];
	}
}

/* An iterator over the entries in use, starting anywhere and visiting each
 * position at most once. */
struct cursor {
	uint32_t pos, left;
};

/* The next entry in use from C, or NONE when C has been all the way round. */
static uint32_t next_used(const struct ctab *t, struct cursor *c)
{
	while (c->left > 0) {
		uint32_t j = find_set(t->emap, t->nstreams, c->pos);
		if (j >= t->nstreams) {
			uint32_t adv = t->nstreams - c->pos;
			c->left = adv >= c->left ? 0 : c->left - adv;
			c->pos = 0;
			continue;
		}
		uint32_t adv = j - c->pos + 1;
		if (adv > c->left) {
			c->left = 0;
			break;
		}
		c->left -= adv;
		c->pos = j + 1 == t->nstreams ? 0 : j + 1;
		return j;
	}
	return NONE;
}

static struct cursor cursor_at(const struct ctab *t, uint32_t pos)
{
	struct cursor c = { .pos = pos < t->nstreams ? pos : 0, .left = t->nstreams };
	return c;
}

/* ---- layout ------------------------------------------------------------- */

struct geo {
	uint32_t nstreams, nbuckets, nblocks, stride, name_max, max_record;
	uint64_t buckets_off, streams_off, emap_off, bmap_off, blocks_off, size;
};

static uint32_t blocks_for(uint32_t len)
{
	return len <= FIRST_DATA ? 1 : 1 + (len - FIRST_DATA + CONT_DATA - 1) / CONT_DATA;
}

/* The geometry for NSTREAMS entries of ENTRY bytes (a struct ctab_stream
 * of this layout or another), DATA bytes of blocks and names up to
 * NAME_MAX. Returns 0, or -1 if out of range. */
static int geometry(uint64_t nstreams, uint64_t data, uint32_t name_max, size_t entry, struct geo *g)
{
	if (name_max == 0)
		name_max = CTAB_NAME_MAX_DEFAULT;
	if (nstreams < CTAB_STREAMS_MIN || nstreams > CTAB_STREAMS_MAX || data < CTAB_DATA_MIN ||
	    data > CTAB_DATA_MAX || name_max > CTAB_NAME_MAX_LIMIT)
		return -1;
	memset(g, 0, sizeof(*g));
	g->nstreams = (uint32_t)nstreams;
	g->nbuckets = 1;
	while (g->nbuckets < g->nstreams)
		g->nbuckets <<= 1;
	g->nblocks = (uint32_t)(data / HIST_BLOCK);
	g->name_max = name_max;
	g->stride = (uint32_t)round_up(entry + name_max, 64);
	uint64_t most = FIRST_DATA + (uint64_t)(g->nblocks / 8 - 1) * CONT_DATA;
	g->max_record = most < HIST_RECORD_MAX ? (uint32_t)most : HIST_RECORD_MAX;
	g->buckets_off = sizeof(struct ctab_hdr);
	g->streams_off = round_up(g->buckets_off + 4 * (uint64_t)g->nbuckets, 64);
	g->emap_off = g->streams_off + (uint64_t)g->stride * g->nstreams;
	g->bmap_off = round_up(g->emap_off + 8 * map_words(g->nstreams), 64);
	g->blocks_off = round_up(g->bmap_off + 8 * map_words(g->nblocks), 64);
	g->size = sizeof(struct seg_hdr) + g->blocks_off + (uint64_t)HIST_BLOCK * g->nblocks;
	return 0;
}

size_t ctab_seg_size(const struct ctab_config *cfg)
{
	struct geo g;
	return geometry(cfg->streams, cfg->data_bytes, cfg->name_max, sizeof(struct ctab_stream), &g) < 0 ? 0 : (size_t)g.size;
}

/* Whether H, of a segment of SIZE bytes, describes a channel table of
 * layout VERSION whose entry, meta and journal have those sizes (the
 * header's identity lines are the same in every layout). */
static bool hdr_ok_as(const struct ctab_hdr *h, size_t size, uint32_t version, size_t entry, size_t meta,
		      size_t journal)
{
	struct geo g;

	if (__atomic_load_n(&h->magic, __ATOMIC_ACQUIRE) != CTAB_MAGIC || h->version != version ||
	    h->hdr_size != sizeof(struct ctab_hdr) || h->block_size != HIST_BLOCK || h->entry_size != entry ||
	    h->meta_size != meta || h->journal_size != journal ||
	    geometry(h->nstreams, (uint64_t)h->nblocks * HIST_BLOCK, h->name_max, entry, &g) < 0)
		return false;
	return h->nbuckets == g.nbuckets && h->nblocks == g.nblocks && h->stride == g.stride &&
	       h->max_record == g.max_record && h->buckets_off == g.buckets_off &&
	       h->streams_off == g.streams_off && h->emap_off == g.emap_off && h->bmap_off == g.bmap_off &&
	       h->blocks_off == g.blocks_off && size == g.size;
}

/* Whether H, of a segment of SIZE bytes, describes a channel table of this
 * layout. */
static bool hdr_ok(const struct ctab_hdr *h, size_t size)
{
	return hdr_ok_as(h, size, CTAB_VERSION, sizeof(struct ctab_stream), sizeof(struct hist_meta),
			 sizeof(struct ctab_journal));
}

static void map(struct ctab *t)
{
	struct ctab_hdr *h = seg_payload(&t->seg);
	unsigned char *base = (unsigned char *)h;

	t->h = h;
	t->buckets = (uint32_t *)(base + h->buckets_off);
	t->streams = base + h->streams_off;
	t->emap = (uint64_t *)(base + h->emap_off);
	t->bmap = (uint64_t *)(base + h->bmap_off);
	t->blocks = base + h->blocks_off;
	t->nstreams = h->nstreams;
	t->nbuckets = h->nbuckets;
	t->nblocks = h->nblocks;
	t->stride = h->stride;
	t->name_max = h->name_max;
	t->max_record = h->max_record;
}

static struct ctab_stream *ent(const struct ctab *t, uint32_t i)
{
	return (struct ctab_stream *)(t->streams + (size_t)i * t->stride);
}

static char *name_of(struct ctab_stream *s)
{
	return (char *)(s + 1);
}

/* Block B (1-based: 0 is "none"). */
static struct hist_blk *blk(const struct ctab *t, uint32_t b)
{
	return (struct hist_blk *)(t->blocks + (size_t)(b - 1) * HIST_BLOCK);
}

static bool blk_ok(const struct ctab *t, uint32_t b)
{
	return b != 0 && b <= t->nblocks;
}

static uint32_t bucket_of(const struct ctab *t, uint64_t hash)
{
	return (uint32_t)hash & (t->nbuckets - 1);
}

static void step(struct ctab *t, int s)
{
	if (t->hook != NULL)
		t->hook(t, s);
}

/* ---- checks ------------------------------------------------------------- */

static uint32_t meta_check(const struct hist_meta *m)
{
	return crc32c(META_SEED, m, offsetof(struct hist_meta, check));
}

static uint32_t rec_check(const struct hist_blk *r)
{
	uint64_t x = r->offset * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)r->time_ms;
	x ^= ((uint64_t)r->stream << 32 | r->len) * UINT64_C(0xc2b2ae3d27d4eb4f);
	x ^= ((uint64_t)r->crc << 32 | r->sgen) * UINT64_C(0x165667b19e3779f9);
	x ^= x >> 31;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 29;
	return (uint32_t)(x >> 32);
}

/* Whether M could be a stream's meta in T. */
static bool meta_ok(const struct ctab *t, const struct hist_meta *m)
{
	if (m->check != meta_check(m) || !epoch_ok(m->epoch) || m->gen == 0 || m->count > m->top ||
	    m->head > t->nblocks || m->tail > t->nblocks || m->blocks < m->count ||
	    m->blocks > t->nblocks)
		return false;
	return m->count == 0 ? m->head == 0 && m->tail == 0 && m->blocks == 0
			     : m->head != 0 && m->tail != 0;
}

/* Whether entry I holds a valid name filed under BUCKET. */
static bool entry_ok(const struct ctab *t, uint32_t i, uint32_t bucket)
{
	struct ctab_stream *s = ent(t, i);
	return s->name_len >= 1 && s->name_len <= t->name_max &&
	       siphash24(t->h->key, name_of(s), s->name_len) == s->hash && bucket_of(t, s->hash) == bucket;
}

/* ---- blocks ------------------------------------------------------------- */

/* Chains K free blocks without taking them (only free blocks are written);
 * returns the first + 1, or 0 if fewer than K are free (the count was
 * wrong: the caller rebuilds). */
static uint32_t chain_free_locked(struct ctab *t, uint32_t k)
{
	uint32_t start = t->h->bcursor < t->nblocks ? t->h->bcursor : 0, pos = start;
	uint32_t first = 0, prev = 0;
	bool wrapped = false;

	for (uint32_t n = 0; n < k;) {
		uint32_t end = wrapped ? start : t->nblocks, i = find_clear_range(t->bmap, pos, end);
		if (i >= end) {
			if (wrapped)
				return 0;
			wrapped = true;
			pos = 0;
			continue;
		}
		if (prev != 0)
			blk(t, prev)->next = i + 1;
		else
			first = i + 1;
		prev = i + 1;
		pos = i + 1;
		n++;
	}
	blk(t, prev)->next = 0;
	t->h->bcursor = pos;
	return first;
}

/* Frees the blocks of the record starting at block B. */
static void free_chain_locked(struct ctab *t, uint32_t b)
{
	uint32_t most = blocks_for(t->max_record);

	for (uint32_t n = 0; blk_ok(t, b) && n < most; n++) {
		uint32_t next = blk(t, b)->next;
		if (bit_test(t->bmap, b - 1)) {
			bit_clear(t->bmap, b - 1);
			t->h->nfree++;
		}
		b = next;
	}
}

/* Frees COUNT records from B on, following newer links: records no meta
 * refers to any more. Idempotent while no block is taken meanwhile. */
static void free_records_locked(struct ctab *t, uint32_t b, uint32_t count)
{
	for (uint32_t i = 0; i < count && blk_ok(t, b); i++) {
		uint32_t newer = blk(t, b)->newer;
		free_chain_locked(t, b);
		if (count >= 2 && i == count / 2)
			step(t, CTAB_STEP_FREEING);
		b = newer;
	}
}

/* Writes REC as the record at offset OFF of stream SI (generation GEN) in
 * the chain starting at block FIRST, after record OLDER. */
static void write_record_locked(struct ctab *t, uint32_t first, uint32_t si, uint64_t gen, uint64_t off,
				int64_t now, const struct hist_rec *rec, uint32_t older)
{
	struct hist_blk *r = blk(t, first);
	size_t left = rec->len, n = left < FIRST_DATA ? left : FIRST_DATA;
	const unsigned char *p = rec->buf;

	r->newer = 0;
	r->older = older;
	r->stream = si;
	r->len = (uint32_t)rec->len;
	r->crc = rec->crc;
	r->sgen = (uint32_t)gen;
	r->offset = off;
	r->time_ms = now;
	r->check = rec_check(r);
	memcpy(r->data, p, n);
	p += n;
	left -= n;
	for (uint32_t c = r->next; left > 0; c = blk(t, c)->next) {
		n = left < CONT_DATA ? left : CONT_DATA;
		memcpy((unsigned char *)blk(t, c) + 4, p, n);
		p += n;
		left -= n;
	}
}

/* ---- the journal -------------------------------------------------------- */

static void disarm(struct ctab *t)
{
	STORE_REL(&t->h->j.state, 0);
}

/* Takes the chain FIRST of K blocks for a record of stream SI, announced
 * first: a holder killed before the record is committed has them given
 * back. */
static void take_chain_locked(struct ctab *t, uint32_t si, uint32_t first, uint32_t k)
{
	struct ctab_journal *j = &t->h->j;

	j->stream = si;
	j->alloc_first = first;
	j->alloc_count = k;
	STORE_REL(&j->state, CTAB_J_ALLOC);
	for (uint32_t c = first, n = 0; n < k; c = blk(t, c)->next, n++)
		bit_set(t->bmap, c - 1);
	t->h->nfree -= k;
}

static void apply_commit_locked(struct ctab *t)
{
	struct ctab_journal *j = &t->h->j;
	ent(t, j->stream)->m = j->meta;
	step(t, CTAB_STEP_APPLIED);
	if (j->link_blk != 0)
		blk(t, j->link_blk)->newer = j->link_val;
}

/* Makes NM stream SI's meta, with LINK_BLK sets that record's newer link to
 * LINK_VAL, then frees FREE_COUNT records from block FREE_FIRST on (those
 * NM no longer holds): all as one. */
static void commit_locked(struct ctab *t, uint32_t si, struct hist_meta *nm, uint32_t link_blk,
			  uint32_t link_val, uint32_t free_first, uint32_t free_count)
{
	struct ctab_journal *j = &t->h->j;

	nm->check = meta_check(nm);
	j->stream = si;
	j->link_blk = link_blk;
	j->link_val = link_val;
	j->free_first = free_first;
	j->free_count = free_count;
	j->meta = *nm;
	step(t, CTAB_STEP_JOURNAL);
	STORE_REL(&j->state, CTAB_J_COMMIT);
	step(t, CTAB_STEP_ARMED);
	apply_commit_locked(t);
	step(t, CTAB_STEP_COMMITTED);
	free_records_locked(t, free_first, free_count);
	disarm(t);
}

/* The link (bucket or entry's next) that points to entry SI, or NULL. */
static uint32_t *link_to(const struct ctab *t, uint32_t si)
{
	uint32_t *link = &t->buckets[bucket_of(t, ent(t, si)->hash)];

	for (uint32_t n = 0; *link != 0 && *link <= t->nstreams && n < t->nstreams; n++) {
		if (*link == si + 1)
			return link;
		link = &ent(t, *link - 1)->next;
	}
	return NULL;
}

/* Ends the operation a dead holder was in (see the top of this file).
 * Returns whether the maps must be rebuilt by a walk instead. */
static bool redo_journal_locked(struct ctab *t)
{
	struct ctab_journal *j = &t->h->j;
	uint32_t *link;

	switch (LOAD(&j->state)) {
	case 0:
		return false;
	case CTAB_J_ALLOC:
		for (uint32_t c = j->alloc_first, n = 0; n < j->alloc_count && blk_ok(t, c); c = blk(t, c)->next, n++)
			bit_clear(t->bmap, c - 1);
		return false;
	case CTAB_J_COMMIT:
		if (j->stream >= t->nstreams || j->link_blk > t->nblocks || !meta_ok(t, &j->meta))
			return true; /* torn: only a machine crash does that */
		apply_commit_locked(t);
		free_records_locked(t, j->free_first, j->free_count);
		return false;
	case CTAB_J_INSERT:
		if (j->stream < t->nstreams && link_to(t, j->stream) == NULL)
			bit_clear(t->emap, j->stream);
		return false;
	case CTAB_J_DELETE:
		if (j->stream >= t->nstreams)
			return true;
		if ((link = link_to(t, j->stream)) != NULL)
			STORE_REL(link, ent(t, j->stream)->next);
		bit_clear(t->emap, j->stream);
		free_records_locked(t, j->free_first, j->free_count);
		return false;
	default: /* CTAB_J_WALK, or torn */
		return true;
	}
}

/* ---- streams ------------------------------------------------------------ */

/* Drops every record of stream SI; keeps its epoch and top. */
static void drop_records_locked(struct ctab *t, uint32_t si)
{
	struct hist_meta m = ent(t, si)->m, nm = m;

	if (m.count == 0)
		return;
	nm.head = nm.tail = 0;
	nm.count = nm.blocks = 0;
	nm.head_ms = 0;
	commit_locked(t, si, &nm, 0, 0, m.head, m.count);
}

/* Gives stream SI a new epoch: top 0, no records. */
static void reset_stream_locked(struct ctab *t, uint32_t si, int64_t now)
{
	struct hist_meta m = ent(t, si)->m, nm;

	memset(&nm, 0, sizeof(nm));
	nm.gen = t->h->next_gen++;
	new_epoch(nm.epoch, m.epoch);
	nm.touch_ms = now;
	nm.size = m.size;
	commit_locked(t, si, &nm, 0, 0, m.head, m.count);
	COUNT(&t->h->streams_created, 1);
}

/* Drops the oldest record of stream SI (which has one). */
static void trim_head_locked(struct ctab *t, uint32_t si)
{
	struct hist_meta m = ent(t, si)->m, nm = m;
	struct hist_blk *r = blk(t, m.head);

	if (m.count == 1) {
		nm.head = nm.tail = 0;
		nm.count = nm.blocks = 0;
		nm.head_ms = 0;
	} else {
		nm.head = r->newer;
		nm.count--;
		nm.blocks -= blocks_for(r->len);
		nm.head_ms = blk(t, nm.head)->time_ms;
	}
	commit_locked(t, si, &nm, 0, 0, m.head, 1);
}

/* The entry of NAME, or NONE. */
static uint32_t find_locked(const struct ctab *t, const char *name, size_t len, uint64_t hash)
{
	uint32_t e = t->buckets[bucket_of(t, hash)];

	for (uint32_t n = 0; e != 0 && e <= t->nstreams && n < t->nstreams; n++) {
		struct ctab_stream *s = ent(t, e - 1);
		if (s->hash == hash && s->name_len == len && memcmp(name_of(s), name, len) == 0)
			return e - 1;
		e = s->next;
	}
	return NONE;
}

/* Removes entry SI from the table with its records. */
static void delete_locked(struct ctab *t, uint32_t si)
{
	struct ctab_journal *j = &t->h->j;
	struct ctab_stream *s = ent(t, si);
	struct hist_meta m = s->m;
	uint32_t *link;

	j->stream = si;
	j->free_first = m.head;
	j->free_count = m.count;
	STORE_REL(&j->state, CTAB_J_DELETE);
	if ((link = link_to(t, si)) != NULL)
		STORE_REL(link, s->next);
	step(t, CTAB_STEP_UNLINKED);
	bit_clear(t->emap, si);
	t->h->nused--;
	free_records_locked(t, m.head, m.count);
	disarm(t);
}

/* Whether stream M's meta has expired at NOW. */
static bool meta_expired(const struct hist_meta *m, int64_t now)
{
	return m->meta_expire_ms != 0 && now >= m->meta_expire_ms;
}

enum { FOR_SPACE, FOR_TABLE };

/* The best victim among SAMPLE streams from the eviction hand: FOR_SPACE,
 * the one (with records) whose oldest record is oldest, the larger on a
 * tie; FOR_TABLE, an expired one or the least recently touched. NONE when
 * there is no candidate at all. */
static uint32_t sample_locked(struct ctab *t, int why, int64_t now)
{
	struct cursor c = cursor_at(t, t->h->evict_hand);
	uint32_t best = NONE, j, cands = 0;
	int64_t best_score = 0;
	uint32_t best_blocks = 0;

	while (cands < SAMPLE && (j = next_used(t, &c)) != NONE) {
		const struct hist_meta *m = &ent(t, j)->m;
		int64_t score;
		if (why == FOR_SPACE) {
			if (m->count == 0)
				continue;
			score = m->head_ms;
		} else {
			score = meta_expired(m, now) ? INT64_MIN : m->touch_ms;
		}
		cands++;
		if (best == NONE || score < best_score || (score == best_score && m->blocks > best_blocks)) {
			best = j;
			best_score = score;
			best_blocks = m->blocks;
		}
	}
	t->h->evict_hand = c.pos;
	return best;
}

static void walk_repair_locked(struct ctab *t, int64_t now);

/* Makes room for a new entry. */
static void evict_entry_locked(struct ctab *t, int64_t now)
{
	uint32_t v = sample_locked(t, FOR_TABLE, now);
	if (v == NONE)
		return;
	COUNT(meta_expired(&ent(t, v)->m, now) ? &t->h->expired_meta : &t->h->evictions, 1);
	delete_locked(t, v);
}

/* Adds NAME to the table with a new epoch; returns its entry, or NONE if
 * the entry map is wrong even after a rebuild. */
static uint32_t insert_locked(struct ctab *t, const char *name, size_t len, uint64_t hash, int64_t now)
{
	struct ctab_hdr *h = t->h;
	uint32_t i = NONE;

	for (int tries = 0; tries < 2; tries++) {
		if (h->nused >= t->nstreams)
			evict_entry_locked(t, now);
		i = find_clear(t->emap, t->nstreams, h->ecursor);
		if (i < t->nstreams)
			break;
		walk_repair_locked(t, now); /* nused was wrong */
	}
	if (i >= t->nstreams)
		return NONE;
	h->j.stream = i;
	STORE_REL(&h->j.state, CTAB_J_INSERT);
	bit_set(t->emap, i);
	h->ecursor = i + 1;

	struct ctab_stream *s = ent(t, i);
	struct hist_meta m;
	memset(&m, 0, sizeof(m));
	m.gen = h->next_gen++;
	new_epoch(m.epoch, NULL);
	m.touch_ms = now;
	m.check = meta_check(&m);
	s->name_len = (uint32_t)len;
	s->hash = hash;
	memcpy(name_of(s), name, len);
	s->m = m;
	uint32_t b = bucket_of(t, hash);
	s->next = t->buckets[b];
	step(t, CTAB_STEP_INSERT);
	STORE_REL(&t->buckets[b], i + 1); /* the commit */
	step(t, CTAB_STEP_LINKED);
	h->nused++;
	disarm(t);
	COUNT(&h->streams_created, 1);
	return i;
}

/* The entry of NAME after lazy expiry: a stream whose meta expired is
 * forgotten (its next use gets a new epoch), one whose records expired
 * loses them. With CREATE, a stream absent or forgotten is created. Returns
 * NONE if absent (or if it cannot be created). */
static uint32_t get_stream_locked(struct ctab *t, const char *name, size_t len, uint64_t hash, int64_t now,
				  bool create)
{
	uint32_t si = find_locked(t, name, len, hash);

	if (si != NONE) {
		const struct hist_meta *m = &ent(t, si)->m;
		if (meta_expired(m, now)) {
			COUNT(&t->h->expired_meta, 1);
			delete_locked(t, si);
			si = NONE;
		} else if (m->count > 0 && now >= m->expire_ms) {
			COUNT(&t->h->expired_records, m->count);
			drop_records_locked(t, si);
		}
	}
	if (si == NONE && create)
		si = insert_locked(t, name, len, hash, now);
	return si;
}

/* ---- the lock and the walk ---------------------------------------------- */

enum walk_mode {
	WALK_CHECK,      /* change nothing, count problems */
	WALK_REPAIR,     /* after a dead holder: structure */
	WALK_COLD,       /* at a cold open: structure and every CRC */
	WALK_RESET_ALL,  /* at a cold open when nothing can be proven */
};

struct walk {
	enum walk_mode mode;
	bool crc;
	int64_t now;
	uint64_t *emap, *bmap;  /* where to mark: T's own, or private copies */
	uint32_t entries, kept, reset, dropped, problems;
	uint64_t records, blocks, max_gen;
	uint32_t link_blk, link_val;  /* a layout-1 commit not applied: block + 1 whose newer is link_val */
};

/* The record after record B (R) as W sees the table. */
static uint32_t newer_of(const struct walk *w, uint32_t b, const struct hist_blk *r)
{
	return w->link_blk != 0 && b == w->link_blk ? w->link_val : r->newer;
}

/* Clears the first MARKED blocks the walk marked along stream M's records. */
static void unmark(const struct ctab *t, struct walk *w, const struct hist_meta *m, uint64_t marked)
{
	for (uint32_t b = m->head; marked > 0;) {
		const struct hist_blk *r = blk(t, b);
		uint32_t c = b;
		for (uint32_t j = 0, k = blocks_for(r->len); j < k && marked > 0; j++, marked--) {
			bit_clear(w->bmap, c - 1);
			c = blk(t, c)->next;
		}
		b = newer_of(w, b, r);
	}
}

/* Validates the records of stream SI whose meta is M and marks their
 * blocks: every link in range and unshared, offsets top - count + 1 .. top
 * in order, each record's owner, generation and check (and CRC with
 * W->crc), count and blocks as the meta says. On failure nothing stays
 * marked. */
static bool records_ok(const struct ctab *t, struct walk *w, uint32_t si, const struct hist_meta *m)
{
	uint64_t marked = 0, nblk = 0, off = m->top - m->count + 1;
	uint32_t b = m->head, prev = 0;
	bool ok = true;

	for (uint32_t i = 0; ok && i < m->count; i++, off++) {
		if (!blk_ok(t, b)) {
			ok = false;
			break;
		}
		const struct hist_blk *r = blk(t, b);
		if (r->stream != si || r->sgen != (uint32_t)m->gen || r->offset != off ||
		    r->check != rec_check(r) || r->len == 0 || r->len > t->max_record ||
		    (i > 0 && r->older != prev) || (i + 1 == m->count && b != m->tail)) {
			ok = false;
			break;
		}
		uint32_t k = blocks_for(r->len), c = b, crc = 0;
		size_t left = r->len;
		for (uint32_t j = 0; j < k; j++) {
			if (!blk_ok(t, c) || bit_test(w->bmap, c - 1)) {
				ok = false;
				break;
			}
			bit_set(w->bmap, c - 1);
			marked++;
			if (w->crc) {
				const unsigned char *p = j == 0 ? r->data : (const unsigned char *)blk(t, c) + 4;
				size_t n = j == 0 ? FIRST_DATA : CONT_DATA;
				n = left < n ? left : n;
				crc = crc32c(crc, p, n);
				left -= n;
			}
			c = blk(t, c)->next;
		}
		if (ok && (c != 0 || (w->crc && crc != r->crc)))
			ok = false;
		nblk += k;
		prev = b;
		b = newer_of(w, b, r);
	}
	if (ok && nblk != m->blocks)
		ok = false;
	if (!ok)
		unmark(t, w, m, marked);
	return ok;
}

/* Gives stream SI found broken by the walk a new epoch; its blocks are not
 * marked, so they are free. Not a commit: the walk's own journal state
 * covers it. */
static void walk_reset(struct ctab *t, struct walk *w, uint32_t si)
{
	struct hist_meta m = ent(t, si)->m, nm;

	memset(&nm, 0, sizeof(nm));
	nm.gen = t->h->next_gen++;
	new_epoch(nm.epoch, epoch_ok(m.epoch) ? m.epoch : NULL);
	nm.touch_ms = w->now;
	nm.check = meta_check(&nm);
	ent(t, si)->m = nm; /* the journal says WALK: a torn meta is walked again */
	COUNT(&t->h->streams_created, 1);
	COUNT(&t->h->resets, 1);
	w->reset++;
}

/* Walks every chain and every stream's records (see enum walk_mode). In the
 * fixing modes a chain is cut at an entry that does not validate (it and
 * those after it are forgotten), a stream that does not validate gets a new
 * epoch, and the bitmaps and counts are rebuilt. */
static void walk_locked(struct ctab *t, struct walk *w)
{
	struct ctab_hdr *h = t->h;
	bool fix = w->mode != WALK_CHECK;

	if (fix) {
		redo_journal_locked(t);
		STORE_REL(&h->j.state, CTAB_J_WALK);
	} else if (LOAD(&h->j.state) != 0) {
		w->problems++;
	}
	memset(w->emap, 0, 8 * map_words(t->nstreams));
	memset(w->bmap, 0, 8 * map_words(t->nblocks));
	for (uint32_t b = 0; b < t->nbuckets; b++) {
		if (b == t->nbuckets / 2)
			step(t, CTAB_STEP_WALK);
		uint32_t *link = &t->buckets[b];
		for (;;) {
			uint32_t e = LOAD(link);
			if (e == 0)
				break;
			if (e > t->nstreams || bit_test(w->emap, e - 1) || !entry_ok(t, e - 1, b)) {
				w->problems++;
				w->dropped++;
				if (fix)
					STORE_REL(link, 0);
				break;
			}
			uint32_t si = e - 1;
			struct ctab_stream *s = ent(t, si);
			bit_set(w->emap, si);
			w->entries++;
			if (w->mode == WALK_RESET_ALL) {
				walk_reset(t, w, si);
			} else if (!meta_ok(t, &s->m) || !records_ok(t, w, si, &s->m)) {
				w->problems++;
				if (fix)
					walk_reset(t, w, si);
			} else {
				w->kept++;
				w->records += s->m.count;
				w->blocks += s->m.blocks;
				if (s->m.gen > w->max_gen)
					w->max_gen = s->m.gen;
			}
			link = &s->next;
		}
	}
	if (fix) {
		h->nused = w->entries;
		h->nfree = (uint32_t)(t->nblocks - w->blocks);
		if (h->next_gen <= w->max_gen)
			h->next_gen = w->max_gen + 1;
		disarm(t);
		return;
	}
	if (h->nused != w->entries || h->nfree != t->nblocks - w->blocks ||
	    memcmp(w->emap, t->emap, 8 * map_words(t->nstreams)) != 0 ||
	    memcmp(w->bmap, t->bmap, 8 * map_words(t->nblocks)) != 0 || h->next_gen <= w->max_gen)
		w->problems++;
}

/* Rebuilds the maps when a derived count proved wrong, or after a holder
 * died in a rebuild. */
static void walk_repair_locked(struct ctab *t, int64_t now)
{
	struct walk w = { .mode = WALK_REPAIR, .now = now, .emap = t->emap, .bmap = t->bmap };
	walk_locked(t, &w);
}

/* Brings the table back after its last holder died holding the lock. */
static void repair_locked(struct ctab *t)
{
	struct ctab_hdr *h = t->h;

	COUNT(&h->repairs, 1);
	STORE(&h->owner, 0);
	if (redo_journal_locked(t)) {
		walk_repair_locked(t, wall_ms());
		return;
	}
	disarm(t);
	h->nused = count_set(t->emap, t->nstreams);
	h->nfree = t->nblocks - count_set(t->bmap, t->nblocks);
}

/* Flushes the header's page to disk. */
static void sync_header(struct ctab *t)
{
	msync(t->seg.hdr, 4096, MS_SYNC);
}

/* The repair rlock_lock runs after a dead holder, with the lock held. */
static void repair(void *t)
{
	repair_locked(t);
}

/* Takes the lock; after a dead holder, repairs first. 0, or -1 with errno. */
static int lock(struct ctab *t)
{
	struct ctab_hdr *h = t->h;

	if (rlock_lock(&h->lock, &h->owner, repair, t) < 0)
		return -1;
	if (LOAD(&h->clean) != 0) {
		/* Changed after a clean shutdown: on disk first, before any
		 * change can reach it. */
		STORE(&h->clean, 0);
		sync_header(t);
	}
	return 0;
}

static void unlock(struct ctab *t)
{
	rlock_unlock(&t->h->lock, &t->h->owner);
}

/* ---- opening ------------------------------------------------------------ */

static void read_boot_id(const struct ctab_config *cfg, char out[24])
{
	memset(out, 0, 24);
	if (cfg->boot_id != NULL) {
		size_t n = strlen(cfg->boot_id);
		memcpy(out, cfg->boot_id, n < 24 ? n : 24);
		return;
	}
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, out, 24);
	if (fd >= 0)
		close(fd);
	if (n < 16) /* unknown: never "the same boot" */
		random_bytes(out, 24);
}

/* Creates the segment file PATH anew with geometry G. */
static int create(struct ctab *t, const char *path, const struct geo *g, const struct ctab_config *cfg)
{
	int err;

	if (seg_create(&t->seg, path, SEG_KIND_CTAB, CTAB_VERSION, (size_t)g->size) < 0)
		return -1;
	struct ctab_hdr *h = seg_payload(&t->seg);
	h->version = CTAB_VERSION;
	h->hdr_size = sizeof(struct ctab_hdr);
	h->nstreams = g->nstreams;
	h->nbuckets = g->nbuckets;
	h->nblocks = g->nblocks;
	h->stride = g->stride;
	h->name_max = g->name_max;
	h->max_record = g->max_record;
	h->block_size = HIST_BLOCK;
	h->entry_size = sizeof(struct ctab_stream);
	h->meta_size = sizeof(struct hist_meta);
	h->journal_size = sizeof(struct ctab_journal);
	h->buckets_off = g->buckets_off;
	h->streams_off = g->streams_off;
	h->emap_off = g->emap_off;
	h->bmap_off = g->bmap_off;
	h->blocks_off = g->blocks_off;
	random_bytes(h->key, sizeof(h->key));
	h->nfree = g->nblocks;
	h->next_gen = 1;
	read_boot_id(cfg, h->boot_id);
	if ((err = rlock_init(&h->lock)) != 0) {
		seg_unlink(&t->seg);
		seg_detach(&t->seg);
		errno = err;
		return -1;
	}
	/* The magic last: a header with a magic is complete. */
	__atomic_store_n(&h->magic, CTAB_MAGIC, __ATOMIC_RELEASE);
	map(t);
	return 0;
}

/* Allocates every block of the existing file PATH, so that a full disk is
 * an error now rather than a SIGBUS on a page written later. Returns 0 (also
 * when there is no file), or -1 with errno. */
static int allocate_existing(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDWR | O_CLOEXEC), err = 0;

	if (fd < 0)
		return errno == ENOENT ? 0 : -1;
	if (fstat(fd, &st) < 0)
		err = errno;
	else if (st.st_size > 0)
		err = posix_fallocate(fd, 0, st.st_size);
	close(fd);
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}

/* The cold open: nobody else has the file. */
/* A cold open found PATH with a header it cannot attach. Another layout
 * version of the channel table is never discarded silently: it is renamed
 * to PATH.v<version> (replacing an older copy aside) for a migration or a
 * downgrade (*MOVED says whether it was). Returns why the segment is made
 * anew, or NULL with errno when the rename failed. */
static const char *set_aside(const char *path, bool *moved)
{
	static char why[PATH_MAX + 128];
	char aside[PATH_MAX];
	struct seg_hdr h;

	if (seg_peek(path, &h) < 0 || h.kind != SEG_KIND_CTAB || h.version == CTAB_VERSION)
		return "its segment header does not validate";
	snprintf(aside, sizeof(aside), "%s.v%u", path, h.version);
	if (rename(path, aside) < 0)
		return NULL;
	*moved = true;
	snprintf(why, sizeof(why), "it has layout version %u, this binary %u: moved aside to %s", h.version,
		 CTAB_VERSION, aside);
	return why;
}

/* ---- migration from layout 1 -------------------------------------------- */

/* A layout-1 segment, mapped read-only; t sees its blocks, for meta_ok and
 * records_ok. */
struct v1_view {
	struct seg seg;
	const struct ctab_hdr_v1 *h;
	struct ctab t;             /* blocks, nblocks, max_record: for records_ok */
	const unsigned char *streams;
	const uint32_t *buckets;
	uint32_t stride, name_max;
};

/* A stream of the layout-1 file that validated. */
struct v1_stream {
	uint32_t entry;
	uint32_t cut;              /* records dropped from its head */
	struct hist_meta m;        /* its meta in layout 2 (version 0) */
	uint32_t first;            /* its records in the migration's array */
};

/* A record of a stream kept. */
struct v1_rec {
	uint32_t blk;              /* first block + 1 */
	uint32_t stream;           /* index in the kept streams */
	uint32_t idx;              /* position in its stream, 0 the oldest */
	uint32_t nblk;
	int64_t order_ms;          /* append time, never below an older record's */
};

static const struct ctab_stream_v1 *ent_v1(const struct v1_view *v, uint32_t i)
{
	return (const struct ctab_stream_v1 *)(v->streams + (size_t)i * v->stride);
}

static uint32_t meta_check_v1(const struct hist_meta_v1 *m)
{
	return crc32c(META_SEED, m, offsetof(struct hist_meta_v1, check));
}

/* M1 as a layout-2 meta (no version yet), checked anew. */
static struct hist_meta meta_from_v1(const struct hist_meta_v1 *m1)
{
	struct hist_meta m;

	memset(&m, 0, sizeof(m));
	m.top = m1->top;
	m.gen = m1->gen;
	m.head = m1->head;
	m.tail = m1->tail;
	m.count = m1->count;
	m.blocks = m1->blocks;
	m.touch_ms = m1->touch_ms;
	m.expire_ms = m1->expire_ms;
	m.meta_expire_ms = m1->meta_expire_ms;
	m.head_ms = m1->head_ms;
	memcpy(m.epoch, m1->epoch, HIST_EPOCH_LEN);
	m.size = m1->size;
	m.check = meta_check(&m);
	return m;
}

/* Maps PATH read-only if it is a layout-1 channel table whose header
 * validates (the rules of layout 1: identity, sizes, geometry). Returns 0,
 * 1 (not one: unusable), or -1 with errno. */
static int v1_attach(struct v1_view *v, const char *path)
{
	memset(v, 0, sizeof(*v));
	if (seg_attach(&v->seg, path, SEG_KIND_CTAB, CTAB_V1_VERSION, true) < 0)
		return errno == EPROTO ? 1 : -1;
	const struct ctab_hdr_v1 *h = seg_payload(&v->seg);
	if (!hdr_ok_as(seg_payload(&v->seg), v->seg.size, CTAB_V1_VERSION, sizeof(struct ctab_stream_v1),
		       sizeof(struct hist_meta_v1), sizeof(struct ctab_journal_v1))) {
		seg_detach(&v->seg);
		return 1;
	}
	const unsigned char *base = (const unsigned char *)h;
	v->h = h;
	v->buckets = (const uint32_t *)(base + h->buckets_off);
	v->streams = base + h->streams_off;
	v->stride = h->stride;
	v->name_max = h->name_max;
	v->t.blocks = (unsigned char *)(base + h->blocks_off);
	v->t.nblocks = h->nblocks;
	v->t.nstreams = h->nstreams;
	v->t.max_record = h->max_record;
	return 0;
}

/* The layout-1 walk, changing nothing in the file: every chain and every
 * stream's meta and records, as a cold open of layout 1 checks them, with
 * the operation a dead holder left in the journal ended in the view only
 * (a commit's meta and link taken as applied, a deleted entry skipped).
 * Streams that validate go to *OUT (*NOUT), the others count in REP. After
 * an unclean stop under another boot none is kept, as layout 1 would have
 * kept none. Returns 0 or -1 with errno ENOMEM. */
static int v1_walk(struct v1_view *v, const struct ctab_config *cfg, struct walk *w, struct v1_stream **out,
		   uint32_t *nout, struct ctab_report *rep)
{
	const struct ctab_hdr_v1 *h = v->h;
	const struct ctab_journal_v1 *j = &h->j;
	uint32_t commit_si = NONE, deleted = NONE, n = 0, cap = 0;
	struct hist_meta commit_m = { 0 };
	char boot[24];
	bool trust;

	read_boot_id(cfg, boot);
	trust = LOAD(&h->clean) == CTAB_CLEAN || memcmp(boot, h->boot_id, 24) == 0;
	if (j->state == CTAB_J_COMMIT && j->stream < h->nstreams && j->link_blk <= h->nblocks &&
	    j->meta.check == meta_check_v1(&j->meta)) {
		commit_si = j->stream;
		commit_m = meta_from_v1(&j->meta);
		w->link_blk = j->link_blk;
		w->link_val = j->link_val;
	} else if (j->state == CTAB_J_DELETE) {
		deleted = j->stream;
	}
	*out = NULL;
	w->emap = calloc(map_words(h->nstreams), 8);
	w->bmap = calloc(map_words(h->nblocks), 8);
	if (w->emap == NULL || w->bmap == NULL)
		return -1;
	for (uint32_t b = 0; b < h->nbuckets; b++) {
		uint32_t e = LOAD(&v->buckets[b]);
		for (uint32_t hops = 0; e != 0 && hops < h->nstreams; hops++) {
			const struct ctab_stream_v1 *s = e <= h->nstreams ? ent_v1(v, e - 1) : NULL;
			if (s == NULL || bit_test(w->emap, e - 1) || s->name_len < 1 || s->name_len > v->name_max ||
			    siphash24(h->key, s + 1, s->name_len) != s->hash ||
			    ((uint32_t)s->hash & (h->nbuckets - 1)) != b) {
				rep->entries_dropped++;
				break;
			}
			uint32_t si = e - 1;
			bit_set(w->emap, si);
			e = s->next;
			if (si == deleted)
				continue;
			struct hist_meta m = si == commit_si ? commit_m : meta_from_v1(&s->m);
			bool ok = (si == commit_si || s->m.check == meta_check_v1(&s->m)) && meta_ok(&v->t, &m) &&
				  records_ok(&v->t, w, si, &m);
			if (!trust || !ok) {
				rep->streams_reset++;
				continue;
			}
			if (n == cap) {
				cap = cap ? 2 * cap : 1024;
				struct v1_stream *more = realloc(*out, cap * sizeof(**out));
				if (more == NULL)
					return -1;
				*out = more;
			}
			memset(&(*out)[n], 0, sizeof(**out));
			(*out)[n].entry = si;
			(*out)[n].m = m;
			n++;
		}
	}
	*nout = n;
	return 0;
}

static int by_touch_desc(const void *a, const void *b)
{
	const struct v1_stream *x = a, *y = b;
	return x->m.touch_ms > y->m.touch_ms ? -1 : x->m.touch_ms < y->m.touch_ms ? 1 : 0;
}

static int by_age(const void *a, const void *b)
{
	const struct v1_rec *x = a, *y = b;
	if (x->order_ms != y->order_ms)
		return x->order_ms < y->order_ms ? -1 : 1;
	if (x->stream != y->stream)
		return x->stream < y->stream ? -1 : 1;
	return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Chooses what fits geometry G from the NS streams at S: the most recently
 * touched streams whose names fit, then in them the newest records that
 * fit (a record longer than G allows drops it and those before it; when
 * the blocks are short, the oldest records go first, as space eviction
 * does). Sets *NS to the streams kept, each one's cut, and *RECS (*NRECS)
 * to their records. Returns 0 or -1 with errno ENOMEM. */
static int v1_select(const struct v1_view *v, const struct walk *w, const struct geo *g, struct v1_stream *s,
		     uint32_t *ns, struct v1_rec **recs, uint64_t *nrecs, struct ctab_report *rep)
{
	uint32_t k = 0;
	uint64_t total = 0, blocks = 0;

	for (uint32_t i = 0; i < *ns; i++) {
		if (ent_v1(v, s[i].entry)->name_len > g->name_max) {
			rep->streams_dropped++;
			rep->records_dropped += s[i].m.count;
		} else {
			s[k++] = s[i];
		}
	}
	if (k > 1)          /* s may be NULL when there are none (qsort wants a pointer) */
		qsort(s, k, sizeof(*s), by_touch_desc);
	for (uint32_t i = g->nstreams; i < k; i++) {
		rep->streams_dropped++;
		rep->records_dropped += s[i].m.count;
	}
	*ns = k < g->nstreams ? k : g->nstreams;
	for (uint32_t i = 0; i < *ns; i++)
		total += s[i].m.count;
	*recs = calloc(total ? total : 1, sizeof(**recs));
	if (*recs == NULL)
		return -1;
	*nrecs = total;
	for (uint32_t i = 0, r = 0; i < *ns; i++) {
		s[i].first = r;
		int64_t order = INT64_MIN;
		for (uint32_t b = s[i].m.head, x = 0; x < s[i].m.count; x++, r++) {
			const struct hist_blk *hb = blk(&v->t, b);
			struct v1_rec *rc = &(*recs)[r];
			order = hb->time_ms > order ? hb->time_ms : order;
			*rc = (struct v1_rec){ .blk = b, .stream = i, .idx = x, .nblk = blocks_for(hb->len),
					       .order_ms = order };
			if (hb->len > g->max_record)
				s[i].cut = x + 1;
			b = newer_of(w, b, hb);
		}
		for (uint32_t x = 0; x < s[i].m.count; x++)
			if (x >= s[i].cut)
				blocks += (*recs)[s[i].first + x].nblk;
	}
	if (blocks > g->nblocks) {
		struct v1_rec *sorted = malloc((total ? total : 1) * sizeof(*sorted));
		if (sorted == NULL)
			return -1;
		memcpy(sorted, *recs, total * sizeof(*sorted));
		qsort(sorted, total, sizeof(*sorted), by_age);
		for (uint64_t r = 0; r < total && blocks > g->nblocks; r++) {
			struct v1_stream *st = &s[sorted[r].stream];
			if (sorted[r].idx < st->cut)
				continue;
			st->cut = sorted[r].idx + 1; /* its head: older ones are cut already */
			blocks -= sorted[r].nblk;
		}
		free(sorted);
	}
	for (uint32_t i = 0; i < *ns; i++)
		rep->records_dropped += s[i].cut;
	return 0;
}

/* Writes stream S of V, with its records past the cut, as entry SI of the
 * new table T (not yet shared with anyone: no journal). */
static int v1_copy_stream(struct ctab *t, uint32_t si, const struct v1_view *v, const struct v1_stream *s,
			  const struct v1_rec *recs, struct hist_rec *buf)
{
	const struct ctab_stream_v1 *s1 = ent_v1(v, s->entry);
	struct ctab_stream *e = ent(t, si);
	struct hist_meta m = s->m;
	uint32_t prev = 0;

	m.head = m.tail = m.count = m.blocks = 0;
	m.head_ms = 0;
	for (uint32_t x = s->cut; x < s->m.count; x++) {
		const struct v1_rec *rc = &recs[s->first + x];
		const struct hist_blk *hb = blk(&v->t, rc->blk);
		if (buf->cap < hb->len) {
			unsigned char *nb = realloc(buf->buf, hb->len);
			if (nb == NULL)
				return -1;
			buf->buf = nb;
			buf->cap = hb->len;
		}
		size_t left = hb->len, n = left < FIRST_DATA ? left : FIRST_DATA;
		memcpy(buf->buf, hb->data, n);
		for (uint32_t c = hb->next; left > n; c = blk(&v->t, c)->next) {
			size_t k = left - n < CONT_DATA ? left - n : CONT_DATA;
			memcpy(buf->buf + n, (const unsigned char *)blk(&v->t, c) + 4, k);
			n += k;
		}
		buf->len = hb->len;
		buf->crc = hb->crc;
		uint32_t first = chain_free_locked(t, rc->nblk);
		if (first == 0) {
			errno = EPROTO; /* counted wrong: never */
			return -1;
		}
		for (uint32_t c = first, k = 0; k < rc->nblk; c = blk(t, c)->next, k++)
			bit_set(t->bmap, c - 1);
		t->h->nfree -= rc->nblk;
		write_record_locked(t, first, si, m.gen, hb->offset, hb->time_ms, buf, prev);
		if (prev != 0)
			blk(t, prev)->newer = first;
		else
			m.head = first, m.head_ms = hb->time_ms;
		m.tail = first;
		m.count++;
		m.blocks += rc->nblk;
		prev = first;
	}
	m.check = meta_check(&m);
	e->name_len = s1->name_len;
	memcpy(name_of(e), s1 + 1, s1->name_len);
	e->hash = siphash24(t->h->key, name_of(e), e->name_len);
	e->m = m;
	uint32_t b = bucket_of(t, e->hash);
	e->next = t->buckets[b];
	t->buckets[b] = si + 1;
	bit_set(t->emap, si);
	t->h->nused++;
	if (t->h->next_gen <= m.gen)
		t->h->next_gen = m.gen + 1;
	return 0;
}

/* Removes what a migration killed before its end left in DIR: the new
 * file and seg_create's temporary files (CTAB_SEG_NAME ".migrating*"). */
static void v1_clean_tmp(const char *dir)
{
	static const char prefix[] = CTAB_SEG_NAME ".migrating";
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, prefix, sizeof(prefix) - 1) == 0)
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

/* fsync of PATH (a file or a directory). */
static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), err = 0;
	if (fd < 0)
		return -1;
	if (fsync(fd) < 0)
		err = errno;
	close(fd);
	errno = err;
	return err == 0 ? 0 : -1;
}

/* Migrates the layout-1 table at PATH to layout 2 with geometry G (the
 * configured one), crash-safe: the new table is built in PATH.migrating,
 * checked by a walk, flushed, marked clean and renamed over PATH, then the
 * directory flushed. The layout-1 file is only read; a process killed at
 * any instruction leaves it intact (the next cold open migrates again,
 * removing what was left) or the complete new table. Every stream that
 * validates keeps its name, epoch, top, records, ttls and times (version
 * 0); one that does not is left out (its next use gives it a new epoch);
 * what G has no room for is dropped, oldest first. Fills REP's migration
 * fields. Needs room for both files and memory for the streams and
 * records kept (some 24 bytes each). Returns 0, 1 (not a layout-1 table
 * that validates, or the table made from it did not verify: nothing done,
 * the caller sets it aside), or -1 with errno (ENOSPC, ENOMEM, ...:
 * nothing changed, the next cold open tries again). */
static int migrate_v1(const char *path, const struct ctab_config *cfg, const struct geo *g,
		      struct ctab_report *rep)
{
	char tmp[PATH_MAX];
	struct v1_view v;
	struct walk w = { .mode = WALK_CHECK, .crc = true };
	struct v1_stream *s = NULL;
	struct v1_rec *recs = NULL;
	struct hist_rec buf;
	struct ctab t;
	uint32_t ns = 0;
	uint64_t nrecs = 0;
	int rc, err = 0;

	if ((rc = v1_attach(&v, path)) != 0)
		return rc;
	hist_rec_init(&buf);
	memset(&t, 0, sizeof(t));
	struct ctab_report r = *rep;
	snprintf(tmp, sizeof(tmp), "%s.migrating", path);
	v1_clean_tmp(cfg->dir);
	if (v1_walk(&v, cfg, &w, &s, &ns, &r) < 0 || v1_select(&v, &w, g, s, &ns, &recs, &nrecs, &r) < 0 ||
	    create(&t, tmp, g, cfg) < 0) {
		err = errno;
		goto out;
	}
	t.h->next_gen = v.h->next_gen > 1 ? v.h->next_gen : 1;
	for (uint32_t i = 0; i < ns && err == 0; i++)
		if (v1_copy_stream(&t, i, &v, &s[i], recs, &buf) < 0)
			err = errno;
	if (err == 0) {
		struct walk chk = { .mode = WALK_CHECK, .crc = true };
		chk.emap = calloc(map_words(t.nstreams), 8);
		chk.bmap = calloc(map_words(t.nblocks), 8);
		if (chk.emap == NULL || chk.bmap == NULL)
			err = ENOMEM;
		else
			walk_locked(&t, &chk);
		if (err == 0 && chk.problems != 0)
			err = EPROTO; /* a bug of ours: set aside as unusable */
		free(chk.emap);
		free(chk.bmap);
	}
	if (err == 0) {
		STORE(&t.h->clean, CTAB_CLEAN);
		if (msync(t.seg.hdr, t.seg.size, MS_SYNC) < 0 || fsync_path(tmp) < 0 || rename(tmp, path) < 0 ||
		    fsync_path(cfg->dir) < 0)
			err = errno;
	}
	if (t.seg.hdr != NULL)
		seg_detach(&t.seg);
	if (err != 0)
		unlink(tmp);
out:
	free(s);
	free(recs);
	free(w.emap);
	free(w.bmap);
	hist_rec_free(&buf);
	seg_detach(&v.seg);
	if (err == EPROTO)
		return 1;
	if (err != 0) {
		errno = err;
		return -1;
	}
	*rep = r;
	rep->migrated = true;
	rep->migrated_from = CTAB_V1_VERSION;
	return 0;
}

static int open_cold(struct ctab *t, const struct ctab_config *cfg, const struct geo *g, const char *path,
		     struct ctab_report *rep)
{
	const char *why = "no segment yet";
	int err, missing = ENOENT, rc;

	if (allocate_existing(path) < 0)
		return -1;
again:
	if (seg_attach(&t->seg, path, SEG_KIND_CTAB, CTAB_VERSION, false) == 0) {
		struct ctab_hdr *h = seg_payload(&t->seg);
		bool other = h->nstreams != g->nstreams || h->nblocks != g->nblocks || h->name_max != g->name_max;
		missing = EPROTO;
		if (!hdr_ok(h, t->seg.size)) {
			why = "its header does not validate";
		} else if (other && !cfg->attach_only) {
			why = "its sizes are not the configured ones";
		} else {
			why = NULL;
			rep->sizes_differ = other;
		}
		if (why != NULL)
			seg_detach(&t->seg);
	} else if (errno == EPROTO) {
		why = "its segment header does not validate";
		missing = EPROTO;
		if (!cfg->attach_only && !rep->migrated) {
			if ((rc = migrate_v1(path, cfg, g, rep)) < 0)
				return -1;
			if (rc == 0)
				goto again;
			if ((why = set_aside(path, &rep->set_aside)) == NULL)
				return -1;
		}
	} else if (errno != ENOENT) {
		return -1;
	}
	if (why != NULL && cfg->attach_only) {
		errno = missing;
		return -1;
	}
	if (why != NULL) {
		if (create(t, path, g, cfg) < 0)
			return -1;
		rep->created = true;
		rep->why = why;
		return 0;
	}

	/* Ours alone: whatever the lock's state, it is stale. */
	map(t);
	struct ctab_hdr *h = t->h;
	if ((err = rlock_init(&h->lock)) != 0) {
		seg_detach(&t->seg);
		errno = err;
		return -1;
	}
	char boot[24];
	read_boot_id(cfg, boot);
	bool clean = LOAD(&h->clean) == CTAB_CLEAN, same_boot = memcmp(boot, h->boot_id, 24) == 0;
	if (lock(t) < 0) {
		seg_detach(&t->seg);
		return -1;
	}
	/* lock() cleared the clean mark on disk; now the boot it is for. */
	memcpy(h->boot_id, boot, 24);
	sync_header(t);

	uint64_t *emap = t->emap, *bmap = t->bmap;
	struct walk w = { .mode = WALK_COLD, .crc = true, .emap = emap, .bmap = bmap };
	w.now = cfg->now_ms != 0 ? cfg->now_ms : wall_ms();
	if (!clean && !same_boot) {
		w.mode = WALK_RESET_ALL;
		rep->why = "stopped uncleanly before the machine restarted: no stream can be proven intact";
	}
	walk_locked(t, &w);
	COUNT(&h->cold_opens, 1);
	unlock(t);
	rep->streams_kept = w.kept;
	rep->streams_reset += w.reset;   /* a migration's come first */
	rep->entries_dropped += w.dropped;
	rep->records_kept = w.records;
	if (rep->why == NULL && (rep->streams_reset > 0 || rep->entries_dropped > 0))
		rep->why = "streams failed validation";
	return 0;
}

/* A warm open: others have the file. */
static int open_warm(struct ctab *t, const struct geo *g, const char *path, struct ctab_report *rep)
{
	if (seg_attach(&t->seg, path, SEG_KIND_CTAB, CTAB_VERSION, false) < 0)
		return -1;
	struct ctab_hdr *h = seg_payload(&t->seg);
	if (!hdr_ok(h, t->seg.size)) {
		seg_detach(&t->seg);
		errno = EPROTO;
		return -1;
	}
	map(t);
	rep->sizes_differ = h->nstreams != g->nstreams || h->nblocks != g->nblocks || h->name_max != g->name_max;
	return 0;
}

/* An open-file-description lock on the whole file: held by every process
 * that has the table open, forked children included (they share the
 * description); converting it is atomic. */
static int ofd_lock(int fd, short type, bool wait)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
	int rc;
	while ((rc = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl)) < 0 && errno == EINTR)
		;
	return rc;
}

int ctab_open(struct ctab *t, const struct ctab_config *cfg, struct ctab_report *rep)
{
	struct ctab_report dummy;
	char path[512], lpath[512];
	struct geo g;
	int fd, err;

	if (rep == NULL)
		rep = &dummy;
	memset(rep, 0, sizeof(*rep));
	memset(t, 0, sizeof(*t));
	t->lock_fd = -1;
	if (cfg->dir == NULL || geometry(cfg->streams, cfg->data_bytes, cfg->name_max, sizeof(struct ctab_stream), &g) < 0) {
		errno = EINVAL;
		return -1;
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", cfg->dir, CTAB_SEG_NAME) >= sizeof(path) ||
	    (size_t)snprintf(lpath, sizeof(lpath), "%s/%s", cfg->dir, CTAB_LOCK_NAME) >= sizeof(lpath)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	fd = open(lpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	if (ofd_lock(fd, F_WRLCK, false) == 0) {
		rep->cold = true;
	} else if (errno != EAGAIN && errno != EACCES) {
		goto fail;
	} else if (ofd_lock(fd, F_RDLCK, true) < 0) {
		goto fail;
	}
	t->lock_fd = fd;
	if ((rep->cold ? open_cold(t, cfg, &g, path, rep) : open_warm(t, &g, path, rep)) < 0)
		goto fail;
	if (rep->cold && ofd_lock(fd, F_RDLCK, false) < 0) {
		seg_detach(&t->seg);
		goto fail;
	}
	hist_dec_init(&t->dec);
	return 0;
fail:
	err = errno;
	close(fd);
	t->lock_fd = -1;
	t->h = NULL;
	errno = err;
	return -1;
}

void ctab_close(struct ctab *t)
{
	free(t->rbuf);
	t->rbuf = NULL;
	t->rbuf_cap = 0;
	hist_dec_free(&t->dec);
	seg_detach(&t->seg);
	t->h = NULL;
	if (t->lock_fd >= 0)
		close(t->lock_fd);
	t->lock_fd = -1;
}

int ctab_shutdown(struct ctab *t)
{
	int err = 0;

	if (lock(t) < 0)
		return -1;
	if (msync(t->seg.hdr, t->seg.size, MS_SYNC) < 0) {
		err = errno;
	} else {
		STORE(&t->h->clean, CTAB_CLEAN);
		if (msync(t->seg.hdr, 4096, MS_SYNC) < 0)
			err = errno;
	}
	unlock(t);
	if (err != 0) {
		errno = err;
		return -1;
	}
	return 0;
}

/* ---- records: encoding -------------------------------------------------- */

void hist_rec_init(struct hist_rec *r)
{
	memset(r, 0, sizeof(*r));
}

void hist_rec_free(struct hist_rec *r)
{
	free(r->buf);
	hist_rec_init(r);
}

static int rec_write(void *data, const char *buf, size_t len)
{
	struct hist_rec *r = data;

	if (len == 0)
		return 0;
	if (r->len + len > r->cap) {
		size_t cap = r->cap ? r->cap : 256;
		while (cap < r->len + len)
			cap *= 2;
		unsigned char *p = realloc(r->buf, cap);
		if (p == NULL)
			return -1;
		r->buf = p;
		r->cap = cap;
	}
	memcpy(r->buf + r->len, buf, len);
	r->len += len;
	return 0;
}

static int pack_str(msgpack_packer *pk, const char *s, size_t n)
{
	return msgpack_pack_str(pk, n) || msgpack_pack_str_body(pk, s, n);
}

static int pack_bin(msgpack_packer *pk, const void *p, size_t n)
{
	return msgpack_pack_bin(pk, n) || msgpack_pack_bin_body(pk, p, n);
}

int hist_encode(struct hist_rec *r, const struct hist_pub *p)
{
	msgpack_packer pk;
	const struct hist_info *in = p->info;
	int bad;

	msgpack_packer_init(&pk, r, rec_write);
	r->len = 0;
	bad = msgpack_pack_map(&pk, 1 + (p->time_ms != 0) + (in != NULL) + (p->ntags > 0));
	if (p->time_ms != 0)
		bad = bad || msgpack_pack_uint8(&pk, 1) || msgpack_pack_int64(&pk, p->time_ms);
	bad = bad || msgpack_pack_uint8(&pk, 2) || pack_bin(&pk, p->data, p->data_len);
	if (in != NULL) {
		bad = bad || msgpack_pack_uint8(&pk, 3) ||
		      msgpack_pack_map(&pk, 2 + (in->conn_info_len > 0) + (in->chan_info_len > 0)) ||
		      msgpack_pack_uint8(&pk, 1) || pack_str(&pk, in->user, in->user_len) ||
		      msgpack_pack_uint8(&pk, 2) || pack_str(&pk, in->client, in->client_len);
		if (in->conn_info_len > 0)
			bad = bad || msgpack_pack_uint8(&pk, 3) || pack_bin(&pk, in->conn_info, in->conn_info_len);
		if (in->chan_info_len > 0)
			bad = bad || msgpack_pack_uint8(&pk, 4) || pack_bin(&pk, in->chan_info, in->chan_info_len);
	}
	if (p->ntags > 0) {
		bad = bad || msgpack_pack_uint8(&pk, 4) || msgpack_pack_map(&pk, p->ntags);
		for (size_t i = 0; !bad && i < p->ntags; i++)
			bad = pack_str(&pk, p->tags[i].key, p->tags[i].key_len) ||
			      pack_str(&pk, p->tags[i].val, p->tags[i].val_len);
	}
	if (bad) {
		errno = ENOMEM;
		return -1;
	}
	r->crc = crc32c(0, r->buf, r->len);
	return 0;
}

/* ---- records: decoding -------------------------------------------------- */

void hist_dec_init(struct hist_dec *d)
{
	memset(d, 0, sizeof(*d));
	msgpack_unpacked_init(&d->up);
}

void hist_dec_free(struct hist_dec *d)
{
	msgpack_unpacked_destroy(&d->up);
	free(d->tags);
	d->tags = NULL;
	d->tags_cap = 0;
}

/* The bytes of O if it is a str or bin. */
static bool bytes_of(const msgpack_object *o, const char **p, size_t *n)
{
	if (o->type == MSGPACK_OBJECT_STR) {
		*p = o->via.str.ptr;
		*n = o->via.str.size;
	} else if (o->type == MSGPACK_OBJECT_BIN) {
		*p = o->via.bin.ptr;
		*n = o->via.bin.size;
	} else {
		return false;
	}
	return true;
}

static bool small_key(const msgpack_object *o, uint64_t *k)
{
	if (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return false;
	*k = o->via.u64;
	return true;
}

static bool decode_info(struct hist_info *in, const msgpack_object *o)
{
	memset(in, 0, sizeof(*in));
	if (o->type != MSGPACK_OBJECT_MAP)
		return false;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		const char *p;
		size_t n;
		uint64_t k;
		if (!small_key(&kv->key, &k))
			return false;
		if (k < 1 || k > 4)
			continue; /* a later field */
		if (!bytes_of(&kv->val, &p, &n))
			return false;
		switch (k) {
		case 1: in->user = p; in->user_len = n; break;
		case 2: in->client = p; in->client_len = n; break;
		case 3: in->conn_info = p; in->conn_info_len = n; break;
		default: in->chan_info = p; in->chan_info_len = n; break;
		}
	}
	return true;
}

static bool decode_tags(struct hist_dec *d, const msgpack_object *o, struct hist_pub *pub)
{
	if (o->type != MSGPACK_OBJECT_MAP)
		return false;
	uint32_t n = o->via.map.size;
	if (n > d->tags_cap) {
		struct hist_tag *p = realloc(d->tags, n * sizeof(*p));
		if (p == NULL)
			return false;
		d->tags = p;
		d->tags_cap = n;
	}
	for (uint32_t i = 0; i < n; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		if (!bytes_of(&kv->key, &d->tags[i].key, &d->tags[i].key_len) ||
		    !bytes_of(&kv->val, &d->tags[i].val, &d->tags[i].val_len))
			return false;
	}
	pub->tags = d->tags;
	pub->ntags = n;
	return true;
}

int hist_decode(struct hist_dec *d, const void *buf, size_t len, struct hist_pub *pub)
{
	size_t off = 0;
	msgpack_unpack_return rc;

	memset(pub, 0, sizeof(*pub));
	rc = msgpack_unpack_next(&d->up, buf, len, &off);
	if (rc == MSGPACK_UNPACK_NOMEM_ERROR) {
		errno = ENOMEM;
		return -1;
	}
	const msgpack_object *o = &d->up.data;
	if (rc != MSGPACK_UNPACK_SUCCESS || off != len || o->type != MSGPACK_OBJECT_MAP)
		goto bad;
	for (uint32_t i = 0; i < o->via.map.size; i++) {
		const msgpack_object_kv *kv = &o->via.map.ptr[i];
		const char *p;
		size_t n;
		uint64_t k;
		if (!small_key(&kv->key, &k))
			goto bad;
		switch (k) {
		case 1:
			if (kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER && kv->val.via.u64 <= INT64_MAX)
				pub->time_ms = (int64_t)kv->val.via.u64;
			else if (kv->val.type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
				pub->time_ms = kv->val.via.i64;
			else
				goto bad;
			break;
		case 2:
			if (!bytes_of(&kv->val, &p, &n))
				goto bad;
			pub->data = p;
			pub->data_len = n;
			break;
		case 3:
			if (!decode_info(&d->info, &kv->val))
				goto bad;
			pub->info = &d->info;
			break;
		case 4:
			if (!decode_tags(d, &kv->val, pub))
				goto bad;
			break;
		default:
			break; /* a later field */
		}
	}
	return 0;
bad:
	memset(pub, 0, sizeof(*pub));
	errno = EBADMSG;
	return -1;
}

/* ---- history ------------------------------------------------------------ */

static int name_check(const struct ctab *t, size_t len)
{
	if (len == 0)
		return EINVAL;
	if (len > t->name_max)
		return ENAMETOOLONG;
	return 0;
}

static void pos_of(const struct hist_meta *m, struct hist_pos *pos)
{
	pos->offset = m->top;
	memcpy(pos->epoch, m->epoch, HIST_EPOCH_LEN);
	pos->epoch[HIST_EPOCH_LEN] = '\0';
}

/* The keyed hash of O's version_epoch, as the meta keeps it. */
static uint64_t version_epoch_hash(const struct ctab *t, const struct hist_opts *o)
{
	uint64_t key[2] = { t->h->key[0] ^ UINT64_C(0x7665706f6368), t->h->key[1] };
	return siphash24(key, o->version_epoch_len ? o->version_epoch : "", o->version_epoch_len);
}

/* Whether a publication with O's version must be dropped from stream M:
 * Centrifugo's memory broker compares when the publication has a version,
 * with an empty version_epoch or the stream's last one. A stream just
 * created has version 0, under which no version is. */
static bool version_stale(const struct ctab *t, const struct hist_meta *m, const struct hist_opts *o)
{
	if (o->version == 0 || o->version > m->version)
		return false;
	return o->version_epoch_len == 0 || version_epoch_hash(t, o) == m->version_epoch;
}

int hist_append_check(const struct ctab *t, size_t name_len, const struct hist_opts *o,
		      const struct hist_rec *rec)
{
	int err = name_check(t, name_len);
	if (err != 0)
		return err;
	if (o == NULL || o->size == 0 || o->ttl_ms == 0 || rec == NULL || rec->len == 0)
		return EINVAL;
	if (rec->len > t->max_record)
		return EMSGSIZE;
	return 0;
}

/* Appends REC to stream SI. Returns 0, or -1 with errno ENOSPC if no room
 * can be found (the derived counts are wrong even after a rebuild). */
static int append_locked(struct ctab *t, uint32_t si, const struct hist_opts *o, const struct hist_rec *rec,
			 int64_t now, struct hist_pos *pos)
{
	struct ctab_hdr *h = t->h;
	uint32_t k = blocks_for((uint32_t)rec->len), first = 0;

	for (int tries = 0; tries < 2 && first == 0; tries++) {
		while (h->nfree < k) {
			uint32_t v = sample_locked(t, FOR_SPACE, now);
			if (v == NONE)
				break;
			COUNT(&h->trims_space, 1);
			trim_head_locked(t, v);
		}
		if (h->nfree >= k)
			first = chain_free_locked(t, k);
		if (first == 0)
			walk_repair_locked(t, now);
	}
	if (first == 0) {
		errno = ENOSPC;
		return -1;
	}
	take_chain_locked(t, si, first, k);
	step(t, CTAB_STEP_ALLOC);

	struct hist_meta m = ent(t, si)->m, nm = m;
	uint64_t off = m.top + 1;
	nm.version = o->version;
	nm.version_epoch = version_epoch_hash(t, o);
	write_record_locked(t, first, si, m.gen, off, now, rec, m.tail);
	step(t, CTAB_STEP_WRITTEN);
	nm.top = off;
	nm.tail = first;
	nm.count++;
	nm.blocks += k;
	if (m.head == 0) {
		nm.head = first;
		nm.head_ms = now;
	}
	nm.touch_ms = now;
	nm.expire_ms = later(now, o->ttl_ms);
	if (o->meta_ttl_ms != 0)
		nm.meta_expire_ms = later(now, o->meta_ttl_ms);
	nm.size = o->size;
	/* Trim to size; the old tail's newer link is only set by the commit. */
	uint32_t drop = nm.head, ndrop = 0;
	while (nm.count > o->size) {
		const struct hist_blk *r = blk(t, nm.head);
		nm.head = nm.head == m.tail ? first : r->newer;
		nm.count--;
		nm.blocks -= blocks_for(r->len);
		ndrop++;
	}
	if (ndrop > 0)
		nm.head_ms = nm.head == first ? now : blk(t, nm.head)->time_ms;
	commit_locked(t, si, &nm, m.tail, first, drop, ndrop);
	COUNT(&h->trims_size, ndrop);
	COUNT(&h->appends, 1);
	pos_of(&nm, pos);
	return 0;
}

int hist_append(struct ctab *t, const char *name, size_t name_len, const struct hist_opts *o,
		const struct hist_rec *rec, int64_t now, struct hist_pos *pos)
{
	int err = hist_append_check(t, name_len, o, rec), rc = -1;
	if (err != 0) {
		errno = err;
		return -1;
	}
	uint64_t hash = siphash24(t->h->key, name, name_len);
	if (lock(t) < 0)
		return -1;
	uint32_t si = get_stream_locked(t, name, name_len, hash, now, true);
	if (si == NONE) {
		errno = ENOSPC;
	} else if (version_stale(t, &ent(t, si)->m, o)) {
		pos_of(&ent(t, si)->m, pos);
		rc = 1;
	} else {
		rc = append_locked(t, si, o, rec, now, pos);
	}
	err = errno;
	unlock(t);
	errno = err;
	return rc;
}

int hist_version_check(struct ctab *t, const char *name, size_t name_len, const struct hist_opts *o, int64_t now,
		       struct hist_pos *pos)
{
	int err = name_check(t, name_len), rc = 0;
	if (err != 0) {
		errno = err;
		return -1;
	}
	if (o->version == 0)
		return 0;
	uint64_t hash = siphash24(t->h->key, name, name_len);
	if (lock(t) < 0)
		return -1;
	uint32_t si = get_stream_locked(t, name, name_len, hash, now, false);
	if (si != NONE && version_stale(t, &ent(t, si)->m, o)) {
		pos_of(&ent(t, si)->m, pos);
		rc = 1;
	}
	unlock(t);
	return rc;
}

/* Copies the record at block B, which must be offset OFF of stream M, to
 * t->rbuf at *USED. Returns 0, EIO (it is not that record) or ENOMEM. */
static int copy_record_locked(struct ctab *t, uint32_t si, const struct hist_meta *m, uint32_t b, uint64_t off,
			      size_t *used)
{
	if (!blk_ok(t, b))
		return EIO;
	const struct hist_blk *r = blk(t, b);
	if (r->offset != off || r->stream != si || r->sgen != (uint32_t)m->gen || r->check != rec_check(r) ||
	    r->len == 0 || r->len > t->max_record)
		return EIO;
	size_t need = sizeof(struct copied) + round_up(r->len, 8);
	if (*used + need > t->rbuf_cap) {
		size_t cap = t->rbuf_cap ? t->rbuf_cap : 4096;
		while (cap < *used + need)
			cap *= 2;
		unsigned char *p = realloc(t->rbuf, cap);
		if (p == NULL)
			return ENOMEM;
		t->rbuf = p;
		t->rbuf_cap = cap;
	}
	struct copied *c = (struct copied *)(t->rbuf + *used);
	unsigned char *dst = (unsigned char *)(c + 1);
	size_t left = r->len, n = left < FIRST_DATA ? left : FIRST_DATA;
	c->offset = off;
	c->time_ms = r->time_ms;
	c->len = r->len;
	c->crc = r->crc;
	memcpy(dst, r->data, n);
	dst += n;
	left -= n;
	for (uint32_t x = r->next, k = 1; left > 0; x = blk(t, x)->next, k++) {
		if (!blk_ok(t, x) || k >= blocks_for(r->len))
			return EIO;
		n = left < CONT_DATA ? left : CONT_DATA;
		memcpy(dst, (unsigned char *)blk(t, x) + 4, n);
		dst += n;
		left -= n;
	}
	*used += need;
	return 0;
}

/* The first block of the record at offset OFF of stream M (which retains
 * it), walking from whichever end is nearer; 0 if a link is broken. */
static uint32_t locate_locked(const struct ctab *t, const struct hist_meta *m, uint64_t off)
{
	uint64_t first = m->top - m->count + 1, at;
	uint32_t b;

	if (off - first <= m->top - off) {
		for (b = m->head, at = first; at < off && blk_ok(t, b); at++)
			b = blk(t, b)->newer;
	} else {
		for (b = m->tail, at = m->top; at > off && blk_ok(t, b); at--)
			b = blk(t, b)->older;
	}
	return blk_ok(t, b) ? b : 0;
}

/* Copies the records query Q selects from stream SI to t->rbuf: stores
 * the bytes used in *USED. Returns 0, EIO (a broken link or record) or
 * ENOMEM. */
static int select_locked(struct ctab *t, uint32_t si, const struct hist_query *q, size_t *used)
{
	const struct hist_meta m = ent(t, si)->m;
	uint64_t first = m.top - m.count + 1, off;
	int64_t n = 0, limit = q->limit < 0 ? INT64_MAX : q->limit;
	int err;

	*used = 0;
	if (m.count == 0 || limit == 0)
		return 0;
	if (!q->reverse) {
		if (q->has_since && q->since_offset >= m.top)
			return 0;
		off = q->has_since && q->since_offset + 1 > first ? q->since_offset + 1 : first;
	} else {
		off = q->has_since && q->since_offset - 1 < m.top ? q->since_offset - 1 : m.top;
		if (off < first)
			return 0;
	}
	uint32_t b = locate_locked(t, &m, off);
	for (;;) {
		if ((err = copy_record_locked(t, si, &m, b, off, used)) != 0)
			return err;
		if (++n == limit || off == (q->reverse ? first : m.top))
			return 0;
		b = q->reverse ? blk(t, b)->older : blk(t, b)->newer;
		off = q->reverse ? off - 1 : off + 1;
	}
}

/* Gives NAME's stream a new epoch if it is still generation GEN: one of its
 * records failed its check outside the lock. */
static int poison(struct ctab *t, const char *name, size_t len, uint64_t hash, uint64_t gen, int64_t now)
{
	if (lock(t) < 0)
		return -1;
	uint32_t si = find_locked(t, name, len, hash);
	if (si != NONE && ent(t, si)->m.gen == gen) {
		COUNT(&t->h->resets, 1);
		reset_stream_locked(t, si, now);
	}
	unlock(t);
	return 0;
}

int hist_read(struct ctab *t, const char *name, size_t name_len, const struct hist_query *q, int64_t now,
	      hist_pub_fn *fn, void *arg, struct hist_result *res)
{
	int err = name_check(t, name_len);
	uint64_t hash;

	memset(res, 0, sizeof(*res));
	if (err == 0 && q->reverse && q->has_since && q->since_offset == 0)
		err = EINVAL;
	if (err != 0) {
		errno = err;
		return -1;
	}
	hash = siphash24(t->h->key, name, name_len);
	for (int attempt = 0;; attempt++) {
		size_t used = 0;
		if (lock(t) < 0)
			return -1;
		uint32_t si = get_stream_locked(t, name, name_len, hash, now, true);
		if (si == NONE) {
			unlock(t);
			errno = ENOSPC;
			return -1;
		}
		struct hist_meta nm = ent(t, si)->m;
		nm.touch_ms = now;
		if (q->meta_ttl_ms != 0)
			nm.meta_expire_ms = later(now, q->meta_ttl_ms);
		commit_locked(t, si, &nm, 0, 0, 0, 0);
		COUNT(&t->h->reads, 1);
		pos_of(&nm, &res->top);
		res->first = nm.count > 0 ? nm.top - nm.count + 1 : 0;
		res->epoch_mismatch = q->has_since && q->since_epoch != NULL && q->since_epoch[0] != '\0' &&
				      strcmp(q->since_epoch, res->top.epoch) != 0;
		err = res->epoch_mismatch || fn == NULL ? 0 : select_locked(t, si, q, &used);
		unlock(t);
		if (err == ENOMEM) {
			errno = ENOMEM;
			return -1;
		}
		/* Check every copy before handing any out. */
		for (size_t at = 0; err == 0 && at < used;) {
			const struct copied *c = (const struct copied *)(t->rbuf + at);
			if (crc32c(0, c + 1, c->len) != c->crc)
				err = EIO;
			at += sizeof(*c) + round_up(c->len, 8);
		}
		if (err == 0) {
			for (size_t at = 0; at < used;) {
				const struct copied *c = (const struct copied *)(t->rbuf + at);
				struct hist_pub pub;
				at += sizeof(*c) + round_up(c->len, 8);
				if (hist_decode(&t->dec, c + 1, c->len, &pub) < 0)
					return -1; /* intact yet unreadable: a format this build does not know */
				pub.offset = c->offset;
				res->count++;
				if (fn(arg, &pub) != 0)
					break;
			}
			return 0;
		}
		if (attempt > 0 || poison(t, name, name_len, hash, nm.gen, now) < 0) {
			errno = EIO;
			return -1;
		}
		memset(res, 0, sizeof(*res));
	}
}

int hist_top(struct ctab *t, const char *name, size_t name_len, uint64_t meta_ttl_ms, int64_t now,
	     struct hist_pos *pos)
{
	struct hist_query q = { .limit = 0, .meta_ttl_ms = meta_ttl_ms };
	struct hist_result res;

	if (hist_read(t, name, name_len, &q, now, NULL, NULL, &res) < 0)
		return -1;
	*pos = res.top;
	return 0;
}

int hist_remove(struct ctab *t, const char *name, size_t name_len, int64_t now)
{
	int err = name_check(t, name_len);
	if (err != 0) {
		errno = err;
		return -1;
	}
	uint64_t hash = siphash24(t->h->key, name, name_len);
	if (lock(t) < 0)
		return -1;
	uint32_t si = get_stream_locked(t, name, name_len, hash, now, false);
	if (si != NONE && ent(t, si)->m.count > 0) {
		COUNT(&t->h->removes, 1);
		drop_records_locked(t, si);
	}
	unlock(t);
	return 0;
}

/* ---- upkeep and monitoring --------------------------------------------- */

int ctab_sweep(struct ctab *t, int64_t now, unsigned budget)
{
	struct ctab_hdr *h;
	uint32_t j;
	int expired = 0;

	if (lock(t) < 0)
		return -1;
	h = t->h;
	struct cursor c = cursor_at(t, h->sweep_hand);
	for (unsigned n = 0; n < budget && (j = next_used(t, &c)) != NONE; n++) {
		const struct hist_meta *m = &ent(t, j)->m;
		if (meta_expired(m, now)) {
			COUNT(&h->expired_meta, 1);
			delete_locked(t, j);
			expired++;
		} else if (m->count > 0 && now >= m->expire_ms) {
			COUNT(&h->expired_records, m->count);
			drop_records_locked(t, j);
			expired++;
		}
	}
	h->sweep_hand = c.pos;
	unlock(t);
	return expired;
}

void ctab_stats(const struct ctab *t, struct ctab_stats *st)
{
	const struct ctab_hdr *h = t->h;

	memset(st, 0, sizeof(*st));
	st->nstreams = t->nstreams;
	st->nused = LOAD(&h->nused);
	st->name_max = t->name_max;
	st->max_record = t->max_record;
	st->nblocks = t->nblocks;
	st->nfree = LOAD(&h->nfree);
	st->data_bytes = (uint64_t)t->nblocks * HIST_BLOCK;
	st->appends = LOAD(&h->appends);
	st->reads = LOAD(&h->reads);
	st->streams_created = LOAD(&h->streams_created);
	st->trims_size = LOAD(&h->trims_size);
	st->trims_space = LOAD(&h->trims_space);
	st->expired_records = LOAD(&h->expired_records);
	st->expired_meta = LOAD(&h->expired_meta);
	st->evictions = LOAD(&h->evictions);
	st->removes = LOAD(&h->removes);
	st->repairs = LOAD(&h->repairs);
	st->resets = LOAD(&h->resets);
	st->cold_opens = LOAD(&h->cold_opens);
	st->lock_owner = LOAD(&h->owner);
}

int hist_peek(const struct ctab *t, const char *name, size_t name_len, int64_t now_ms, struct hist_peek *out)
{
	memset(out, 0, sizeof(*out));
	if (name_len == 0 || name_len > t->name_max)
		return -1;
	/* find_locked without the lock: bounded by nstreams steps, and what it
	 * reads may be half of a change, which a monitor can live with. */
	uint32_t e = find_locked(t, name, name_len, siphash24(t->h->key, name, name_len));
	if (e == NONE)
		return -1;
	const struct hist_meta *m = &ent(t, e)->m;
	int64_t meta_expire = LOAD(&m->meta_expire_ms), expire = LOAD(&m->expire_ms);
	if (meta_expire != 0 && now_ms >= meta_expire)
		return -1;
	out->top = LOAD(&m->top);
	out->count = now_ms >= expire ? 0 : LOAD(&m->count);
	for (int i = 0; i < HIST_EPOCH_LEN; i++)
		out->epoch[i] = LOAD(&m->epoch[i]);
	out->epoch[HIST_EPOCH_LEN] = '\0';
	return 0;
}

int ctab_verify(struct ctab *t, bool deep, uint64_t *nrecords)
{
	struct walk w = { .mode = WALK_CHECK, .crc = deep };

	w.emap = calloc(map_words(t->nstreams), 8);
	w.bmap = calloc(map_words(t->nblocks), 8);
	if (w.emap == NULL || w.bmap == NULL) {
		free(w.emap);
		free(w.bmap);
		errno = ENOMEM;
		return -1;
	}
	if (lock(t) < 0) {
		free(w.emap);
		free(w.bmap);
		return -1;
	}
	walk_locked(t, &w);
	unlock(t);
	free(w.emap);
	free(w.bmap);
	if (nrecords != NULL)
		*nrecords = w.records;
	if (w.problems != 0) {
		errno = EPROTO;
		return -1;
	}
	return 0;
}
