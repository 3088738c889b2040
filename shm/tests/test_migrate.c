/*
 * test_migrate.c - a cold open of a layout-1 channel table migrates it to
 * the current layout. The layout-1 files are written here from chan_v1.h by
 * a writer of our own (its own CRC32C, record check and geometry), as the
 * releases before layout 2 laid them out: streams with records of one and
 * of several blocks, ttls and times. Checked: every stream keeps its epoch,
 * top and exact records (hist_read), ttls still apply, versions start at 0;
 * smaller configured sizes keep the most recent streams and records and
 * say how many were dropped; a stream that fails validation gets a new
 * epoch; a commit or a delete a dead holder left in the journal is ended in
 * the migrated table; an unclean stop under another boot keeps nothing; a
 * file that does not validate as layout 1 is set aside; no room for the new
 * file fails the open and leaves the old one as it was. The torture part
 * kills the migrating process (SIGKILL) at random points a few hundred
 * times: every time the directory holds either the untouched layout-1 file
 * or a complete migrated table, and the next open gives the same history.
 */
#include "chan.h"
#include "chan_v1.h"
#include "siphash.h"
#include "../../tests/tap.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

static char dir[] = "/tmp/rotor-test-migrate-XXXXXX";
static char seg_path[300], pristine[300], aside[320];
static const char BOOT[24] = "test-boot-0123456789ab"; /* zero-padded, as read_boot_id keeps it */

#define diag(...) (printf("# " __VA_ARGS__), printf("\n"))

/* ---- the layout-1 writer ------------------------------------------------ */

static uint32_t crc32c_bitwise(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	crc = ~crc;
	while (len-- > 0) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

static uint32_t v1_meta_check(const struct hist_meta_v1 *m)
{
	return crc32c_bitwise(0x6d657461u, m, offsetof(struct hist_meta_v1, check));
}

static uint32_t v1_rec_check(const struct hist_blk *r)
{
	uint64_t x = r->offset * UINT64_C(0x9e3779b97f4a7c15) ^ (uint64_t)r->time_ms;
	x ^= ((uint64_t)r->stream << 32 | r->len) * UINT64_C(0xc2b2ae3d27d4eb4f);
	x ^= ((uint64_t)r->crc << 32 | r->sgen) * UINT64_C(0x165667b19e3779f9);
	x ^= x >> 31;
	x *= UINT64_C(0xbf58476d1ce4e5b9);
	x ^= x >> 29;
	return (uint32_t)(x >> 32);
}

static uint64_t up64(uint64_t n)
{
	return (n + 63) / 64 * 64;
}

/* A layout-1 file being written. */
struct v1w {
	unsigned char *base;
	size_t size;
	struct ctab_hdr_v1 *h;
	uint32_t *buckets;
	uint64_t *emap, *bmap;
	unsigned char *streams, *blocks;
	uint32_t nextblk;          /* next free block (0-based) */
};

/* What a test stream holds. */
#define MAXREC 64
struct sspec {
	char name[64];
	char epoch[9];
	uint64_t top;
	uint32_t nrec;             /* records: offsets top - nrec + 1 .. top */
	char data[MAXREC][200];
	int64_t time[MAXREC];
	int64_t touch, expire, meta_expire;
	uint32_t entry;            /* its entry in the file */
	uint32_t head, tail;       /* its first blocks + 1 */
};

static void v1_begin(struct v1w *w, const char *path, uint32_t nstreams, uint32_t nblocks, uint32_t name_max)
{
	uint32_t nbuckets = 1;
	while (nbuckets < nstreams)
		nbuckets <<= 1;
	uint32_t stride = (uint32_t)up64(sizeof(struct ctab_stream_v1) + name_max);
	uint64_t most = 16 + (uint64_t)(nblocks / 8 - 1) * 60;
	uint64_t buckets_off = sizeof(struct ctab_hdr_v1), streams_off = up64(buckets_off + 4ull * nbuckets);
	uint64_t emap_off = streams_off + (uint64_t)stride * nstreams;
	uint64_t bmap_off = up64(emap_off + 8 * ((nstreams + 63ull) / 64));
	uint64_t blocks_off = up64(bmap_off + 8 * ((nblocks + 63ull) / 64));
	size_t size = sizeof(struct seg_hdr) + blocks_off + 64ull * nblocks;

	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
		abort();
	w->base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (w->base == MAP_FAILED)
		abort();
	w->size = size;
	struct seg_hdr *sh = (struct seg_hdr *)w->base;
	sh->magic = SEG_MAGIC;
	sh->kind = SEG_KIND_CTAB;
	sh->version = 1;
	sh->size = size;
	sh->creator = 1;
	sh->hdr_size = sizeof(*sh);
	sh->gen = 1;
	struct ctab_hdr_v1 *h = w->h = (struct ctab_hdr_v1 *)(w->base + sizeof(*sh));
	h->magic = CTAB_MAGIC;
	h->version = 1;
	h->hdr_size = sizeof(*h);
	h->nstreams = nstreams;
	h->nbuckets = nbuckets;
	h->nblocks = nblocks;
	h->stride = stride;
	h->name_max = name_max;
	h->max_record = most < (16u << 20) ? (uint32_t)most : 16u << 20;
	h->block_size = 64;
	h->entry_size = sizeof(struct ctab_stream_v1);
	h->meta_size = sizeof(struct hist_meta_v1);
	h->journal_size = sizeof(struct ctab_journal_v1);
	h->buckets_off = buckets_off;
	h->streams_off = streams_off;
	h->emap_off = emap_off;
	h->bmap_off = bmap_off;
	h->blocks_off = blocks_off;
	h->key[0] = UINT64_C(0x0123456789abcdef);
	h->key[1] = UINT64_C(0xfedcba9876543210);
	h->next_gen = 100;
	h->nfree = nblocks;
	h->clean = CTAB_CLEAN;
	memcpy(h->boot_id, BOOT, 24);
	unsigned char *b = (unsigned char *)h;
	w->buckets = (uint32_t *)(b + buckets_off);
	w->streams = b + streams_off;
	w->emap = (uint64_t *)(b + emap_off);
	w->bmap = (uint64_t *)(b + bmap_off);
	w->blocks = b + blocks_off;
	w->nextblk = 0;
}

static struct hist_blk *v1_blk(struct v1w *w, uint32_t b1)
{
	return (struct hist_blk *)(w->blocks + (size_t)(b1 - 1) * 64);
}

static struct ctab_stream_v1 *v1_ent(struct v1w *w, uint32_t i)
{
	return (struct ctab_stream_v1 *)(w->streams + (size_t)i * w->h->stride);
}

/* Writes the payload of record REC for entry SI (gen GEN) at offset OFF;
 * returns its first block + 1. */
static uint32_t v1_record(struct v1w *w, uint32_t si, uint64_t gen, uint64_t off, int64_t time,
			  const struct hist_rec *rec, uint32_t older, uint32_t *nblk)
{
	uint32_t k = rec->len <= 16 ? 1 : 1 + (uint32_t)((rec->len - 16 + 59) / 60);
	uint32_t first = w->nextblk + 1;
	for (uint32_t i = 0; i < k; i++) {
		uint32_t b = w->nextblk++;
		if (b >= w->h->nblocks)
			abort();
		w->bmap[b >> 6] |= UINT64_C(1) << (b & 63);
		*(uint32_t *)(w->blocks + (size_t)b * 64) = i + 1 < k ? b + 2 : 0;
	}
	struct hist_blk *r = v1_blk(w, first);
	r->older = older;
	r->stream = si;
	r->len = (uint32_t)rec->len;
	r->crc = rec->crc;
	r->sgen = (uint32_t)gen;
	r->offset = off;
	r->time_ms = time;
	r->check = v1_rec_check(r);
	size_t n = rec->len < 16 ? rec->len : 16, done = n;
	memcpy(r->data, rec->buf, n);
	for (uint32_t c = r->next; done < rec->len; c = v1_blk(w, c)->next) {
		n = rec->len - done < 60 ? rec->len - done : 60;
		memcpy((unsigned char *)v1_blk(w, c) + 4, rec->buf + done, n);
		done += n;
	}
	w->h->nfree -= k;
	*nblk = k;
	return first;
}

/* The layout-1 meta of S as the writer laid it out (check filled in). */
static struct hist_meta_v1 v1_meta(const struct sspec *s, uint64_t gen, uint32_t blocks)
{
	struct hist_meta_v1 m;
	memset(&m, 0, sizeof(m));
	m.top = s->top;
	m.gen = gen;
	m.head = s->nrec ? s->head : 0;
	m.tail = s->nrec ? s->tail : 0;
	m.count = s->nrec;
	m.blocks = blocks;
	m.touch_ms = s->touch;
	m.expire_ms = s->expire;
	m.meta_expire_ms = s->meta_expire;
	m.head_ms = s->nrec ? s->time[0] : 0;
	memcpy(m.epoch, s->epoch, 8);
	m.size = 100;
	m.check = v1_meta_check(&m);
	return m;
}

/* Adds stream S as entry SI. */
static void v1_stream(struct v1w *w, uint32_t si, struct sspec *s)
{
	struct ctab_stream_v1 *e = v1_ent(w, si);
	struct hist_rec rec;
	uint64_t gen = 1000 + si;
	uint32_t prev = 0, blocks = 0, k;

	hist_rec_init(&rec);
	for (uint32_t i = 0; i < s->nrec; i++) {
		struct hist_pub p = { .data = s->data[i], .data_len = strlen(s->data[i]), .time_ms = s->time[i] };
		if (hist_encode(&rec, &p) < 0)
			abort();
		uint32_t b = v1_record(w, si, gen, s->top - s->nrec + 1 + i, s->time[i], &rec, prev, &k);
		if (prev != 0)
			v1_blk(w, prev)->newer = b;
		else
			s->head = b;
		s->tail = b;
		blocks += k;
		prev = b;
	}
	hist_rec_free(&rec);
	s->entry = si;
	e->name_len = (uint32_t)strlen(s->name);
	memcpy(e + 1, s->name, e->name_len);
	e->hash = siphash24(w->h->key, s->name, e->name_len);
	e->m = v1_meta(s, gen, blocks);
	uint32_t b = (uint32_t)e->hash & (w->h->nbuckets - 1);
	e->next = w->buckets[b];
	w->buckets[b] = si + 1;
	w->emap[si >> 6] |= UINT64_C(1) << (si & 63);
	w->h->nused++;
}

static void v1_end(struct v1w *w)
{
	msync(w->base, w->size, MS_SYNC);
	munmap(w->base, w->size);
}

/* ---- test data ---------------------------------------------------------- */

#define NS 40
static struct sspec specs[NS];

/* Stream I: records of one block (short) and of several (long), times
 * increasing with I so that touch order and record age are known. */
static void make_specs(unsigned nrec_each)
{
	memset(specs, 0, sizeof(specs));
	for (unsigned i = 0; i < NS; i++) {
		struct sspec *s = &specs[i];
		snprintf(s->name, sizeof(s->name), "ns:chan-%u", i);
		for (int k = 0; k < 8; k++)
			s->epoch[k] = (char)((k & 1 ? 'A' : 'a') + (i * 7 + (unsigned)k * 3) % 26);
		s->nrec = i % 5 == 4 ? 0 : nrec_each;
		s->top = 10 * i + s->nrec + (i % 3);
		for (unsigned r = 0; r < s->nrec; r++) {
			uint64_t off = s->top - s->nrec + 1 + r;
			if (r % 3 == 0)
				snprintf(s->data[r], sizeof(s->data[r]), "d%llu", (unsigned long long)off);
			else
				snprintf(s->data[r], sizeof(s->data[r]),
					 "d%llu-a-longer-payload-of-several-blocks-%0*u", (unsigned long long)off,
					 (int)(20 + 40 * (r % 3)), i);
			s->time[r] = 100000 + 1000 * (int64_t)r + i;
		}
		s->touch = 200000 + i;
		s->expire = INT64_MAX / 2;
		s->meta_expire = i == 7 ? 500000 : 0;
	}
}

/* Writes the streams FROM .. TO of specs as a layout-1 file at PATH. */
static void write_v1(const char *path, uint32_t nstreams, uint32_t nblocks, unsigned from, unsigned to)
{
	struct v1w w;
	v1_begin(&w, path, nstreams, nblocks, 255);
	for (unsigned i = from; i < to; i++)
		v1_stream(&w, (i * 13 + 5) % nstreams, &specs[i]);
	v1_end(&w);
}

/* ---- checking ----------------------------------------------------------- */

struct got {
	unsigned n;
	uint64_t off[MAXREC];
	char data[MAXREC][200];
	int64_t time[MAXREC];
};

static int collect(void *arg, const struct hist_pub *p)
{
	struct got *g = arg;
	if (g->n < MAXREC) {
		g->off[g->n] = p->offset;
		size_t n = p->data_len < 199 ? p->data_len : 199;
		memcpy(g->data[g->n], p->data, n);
		g->data[g->n][n] = '\0';
		g->time[g->n] = p->time_ms;
	}
	g->n++;
	return 0;
}

/* Whether stream S reads back from T with its epoch, top and its records
 * from index CUT on, exactly. */
static bool stream_is(struct ctab *t, const struct sspec *s, unsigned cut, int64_t now)
{
	struct hist_query q = { .limit = -1 };
	struct hist_result res;
	static struct got g;
	memset(&g, 0, sizeof(g));
	if (hist_read(t, s->name, strlen(s->name), &q, now, collect, &g, &res) < 0)
		return false;
	if (strcmp(res.top.epoch, s->epoch) != 0 || res.top.offset != s->top || g.n != s->nrec - cut)
		return false;
	for (unsigned i = 0; i < g.n; i++)
		if (g.off[i] != s->top - s->nrec + 1 + cut + i || strcmp(g.data[i], s->data[cut + i]) != 0 ||
		    g.time[i] != s->time[cut + i])
			return false;
	return true;
}

/* Whether nothing a migration leaves while it runs is in the directory. */
static bool no_leftovers(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	bool clean = true;
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, ".migrating") != NULL || strstr(de->d_name, ".v1") != NULL)
			clean = false;
	closedir(d);
	return clean;
}

static struct ctab_config config(uint32_t streams, uint64_t data)
{
	struct ctab_config c = { .dir = dir, .streams = streams, .data_bytes = data, .now_ms = 300000,
				 .boot_id = BOOT };
	return c;
}

static uint64_t total_records(unsigned from, unsigned to)
{
	uint64_t n = 0;
	for (unsigned i = from; i < to; i++)
		n += specs[i].nrec;
	return n;
}

/* ---- tests -------------------------------------------------------------- */

static void test_migrate_all(void)
{
	struct ctab t;
	struct ctab_report rep;
	struct ctab_config c = config(64, 256 << 10);
	bool all = true;

	make_specs(12);
	write_v1(seg_path, 64, (256 << 10) / 64, 0, NS);
	ok(ctab_open(&t, &c, &rep) == 0, "a cold open of a layout-1 table succeeds");
	ok(rep.migrated && rep.migrated_from == 1 && !rep.created && !rep.set_aside,
	   "it is migrated, not made anew or set aside");
	is_int(rep.streams_kept, NS, "every stream is kept");
	is_int(rep.records_kept, total_records(0, NS), "every record is kept");
	ok(rep.streams_reset == 0 && rep.streams_dropped == 0 && rep.records_dropped == 0, "nothing reset or dropped");
	struct seg_hdr sh;
	ok(seg_peek(seg_path, &sh) == 0 && sh.version == CTAB_VERSION, "the file now has layout %u", CTAB_VERSION);
	ok(no_leftovers(), "no temporary file and nothing set aside");
	uint64_t n = 0;
	int vrc = ctab_verify(&t, true, &n);
	ok(vrc == 0 && n == total_records(0, NS), "the migrated table verifies (%llu records)", (unsigned long long)n);
	for (unsigned i = 0; i < NS; i++)
		if (!stream_is(&t, &specs[i], 0, 300000)) {
			diag("stream %s differs", specs[i].name);
			all = false;
		}
	ok(all, "every stream keeps its epoch, top and exact records (one and several blocks)");

	/* the meta ttl came along: stream 7 is forgotten at 500000 */
	struct hist_pos pos;
	ok(hist_top(&t, specs[7].name, strlen(specs[7].name), 0, 499999, &pos) == 0 &&
	       strcmp(pos.epoch, specs[7].epoch) == 0,
	   "a stream's meta ttl is kept: known before it");
	ok(hist_top(&t, specs[7].name, strlen(specs[7].name), 0, 500000, &pos) == 0 &&
	       strcmp(pos.epoch, specs[7].epoch) != 0 && pos.offset == 0,
	   "and forgotten at it");

	/* versions start at 0: any version appends */
	struct hist_rec rec;
	hist_rec_init(&rec);
	struct hist_pub p = { .data = "v", .data_len = 1 };
	struct hist_opts o = { .size = 100, .ttl_ms = 1000000, .version = 1 };
	ok(hist_encode(&rec, &p) == 0 &&
	       hist_append(&t, specs[3].name, strlen(specs[3].name), &o, &rec, 300001, &pos) == 0 &&
	       pos.offset == specs[3].top + 1 && strcmp(pos.epoch, specs[3].epoch) == 0,
	   "a stream's next append continues its offsets, version 1 accepted (versions start at 0)");
	ok(hist_append(&t, specs[3].name, strlen(specs[3].name), &o, &rec, 300002, &pos) == 1,
	   "and the version is kept from then on");
	hist_rec_free(&rec);
	ok(ctab_shutdown(&t) == 0, "shut down");
	ctab_close(&t);

	ok(ctab_open(&t, &c, &rep) == 0 && !rep.migrated && !rep.created && rep.streams_kept == NS,
	   "the next cold open finds the migrated table as its own");
	ok(stream_is(&t, &specs[0], 0, 300000), "with the same history");
	ctab_close(&t);
}

static void test_migrate_smaller(void)
{
	struct ctab t;
	struct ctab_report rep;
	/* 40 streams, 60 records of 1-3 blocks each: about 4300 blocks in
	 * layout 1; the new table has 16 entries and 1024 blocks. */
	struct ctab_config c = config(16, 64 << 10);

	make_specs(60);
	write_v1(seg_path, 64, (1024 << 10) / 64, 0, NS);
	ok(ctab_open(&t, &c, &rep) == 0 && rep.migrated && !rep.created, "a layout-1 table larger than the "
									  "configured one is migrated");
	is_int(rep.streams_kept, 16, "the table keeps as many streams as it has entries");
	is_int(rep.streams_dropped, NS - 16, "and says how many it dropped");
	is_int(rep.records_kept + rep.records_dropped, total_records(0, NS),
	       "every record is either kept or counted as dropped");
	ok(rep.records_dropped > total_records(0, NS - 16), "records were dropped for room too (%llu)",
	   (unsigned long long)rep.records_dropped);
	ok(ctab_verify(&t, true, NULL) == 0, "the migrated table verifies");

	/* the 16 kept are the most recently touched: NS-16 .. NS-1 */
	bool kept_recent = true, suffix = true;
	int64_t oldest_kept = INT64_MAX;
	unsigned kept = 0;
	struct hist_peek pk;
	for (unsigned i = 0; i < NS - 16; i++)
		if (hist_peek(&t, specs[i].name, strlen(specs[i].name), 300000, &pk) == 0)
			kept_recent = false;
	for (unsigned i = NS - 16; i < NS; i++) {
		struct sspec *s = &specs[i];
		if (hist_peek(&t, s->name, strlen(s->name), 300000, &pk) != 0 || strncmp(pk.epoch, s->epoch, 8) != 0 ||
		    pk.top != s->top) {
			kept_recent = false;
			continue;
		}
		unsigned cut = s->nrec - pk.count;
		if (!stream_is(&t, s, cut, 300000))
			suffix = false;
		if (pk.count > 0 && s->time[cut] < oldest_kept)
			oldest_kept = s->time[cut];
		kept += pk.count;
	}
	ok(kept_recent, "the streams kept are the 16 most recently touched, with their epochs and tops");
	ok(suffix, "each keeps its newest records, exactly");
	is_int(kept, rep.records_kept, "the records kept are as reported");
	bool oldest_first = true;
	for (unsigned i = NS - 16; i < NS; i++) {
		struct sspec *s = &specs[i];
		hist_peek(&t, s->name, strlen(s->name), 300000, &pk);
		unsigned cut = s->nrec - pk.count;
		if (cut > 0 && s->time[cut - 1] > oldest_kept)
			oldest_first = false;
	}
	ok(oldest_first, "no record dropped is newer than one kept");
	ctab_close(&t);
}

static void test_migrate_damaged(void)
{
	struct ctab t;
	struct ctab_report rep;
	struct ctab_config c = config(64, 256 << 10);
	struct v1w w;

	make_specs(6);
	v1_begin(&w, seg_path, 64, (256 << 10) / 64, 255);
	for (unsigned i = 0; i < 10; i++)
		v1_stream(&w, i, &specs[i]);
	/* stream 2: a payload byte of its newest record flipped (the CRC fails) */
	v1_blk(&w, specs[2].tail)->data[3] ^= 0x20;
	/* stream 5: its meta's check wrong */
	v1_ent(&w, 5)->m.check ^= 1;
	/* stream 6: a commit of one more record armed, neither applied nor linked */
	struct hist_rec rec;
	hist_rec_init(&rec);
	struct hist_pub p = { .data = "committed", .data_len = 9, .time_ms = 190000 };
	uint32_t k, old_tail = specs[6].tail;
	hist_encode(&rec, &p);
	uint32_t nb = v1_record(&w, 6, 1006, specs[6].top + 1, 190000, &rec, old_tail, &k);
	hist_rec_free(&rec);
	struct sspec s6 = specs[6];
	s6.top++;
	strcpy(s6.data[s6.nrec], "committed");
	s6.time[s6.nrec] = 190000;
	s6.nrec++;
	s6.tail = nb;
	uint32_t blocks6 = v1_ent(&w, 6)->m.blocks + k;
	w.h->j.meta = v1_meta(&s6, 1006, blocks6);
	w.h->j.stream = 6;
	w.h->j.link_blk = old_tail;
	w.h->j.link_val = nb;
	w.h->j.state = CTAB_J_COMMIT;
	w.h->clean = 0; /* a holder died: not clean, same boot */
	v1_end(&w);

	ok(ctab_open(&t, &c, &rep) == 0 && rep.migrated, "a layout-1 table with damage and a pending commit migrates");
	is_int(rep.streams_reset, 2, "the two streams that fail layout-1 validation are counted as reset");
	is_int(rep.streams_kept, 8, "the others are kept");
	ok(ctab_verify(&t, true, NULL) == 0, "the migrated table verifies");
	struct hist_pos pos;
	ok(hist_top(&t, specs[2].name, strlen(specs[2].name), 0, 300000, &pos) == 0 &&
	       strcmp(pos.epoch, specs[2].epoch) != 0 && pos.offset == 0,
	   "a stream with a damaged record gets a new epoch");
	ok(hist_top(&t, specs[5].name, strlen(specs[5].name), 0, 300000, &pos) == 0 &&
	       strcmp(pos.epoch, specs[5].epoch) != 0 && pos.offset == 0,
	   "so does one whose meta is damaged");
	ok(stream_is(&t, &s6, 0, 300000), "the pending commit is ended: its record is in the migrated stream");
	bool others = true;
	for (unsigned i = 0; i < 10; i++)
		if (i != 2 && i != 5 && i != 6 && !stream_is(&t, &specs[i], 0, 300000))
			others = false;
	ok(others, "the other streams are intact");
	ctab_close(&t);

	/* a delete a holder died in: the stream is gone */
	make_specs(3);
	v1_begin(&w, seg_path, 64, (256 << 10) / 64, 255);
	for (unsigned i = 0; i < 4; i++)
		v1_stream(&w, i, &specs[i]);
	w.h->j.stream = 1;
	w.h->j.state = CTAB_J_DELETE;
	w.h->clean = 0;
	v1_end(&w);
	ok(ctab_open(&t, &c, &rep) == 0 && rep.migrated && rep.streams_kept == 3,
	   "a delete left in the journal is ended: three of four streams kept");
	ok(hist_peek(&t, specs[1].name, strlen(specs[1].name), 300000, &(struct hist_peek){ 0 }) < 0,
	   "the deleted stream is absent");
	ok(stream_is(&t, &specs[0], 0, 300000) && stream_is(&t, &specs[3], 0, 300000), "the others intact");
	ctab_close(&t);

	/* an unclean stop under another boot: nothing can be proven */
	make_specs(3);
	v1_begin(&w, seg_path, 64, (256 << 10) / 64, 255);
	for (unsigned i = 0; i < 4; i++)
		v1_stream(&w, i, &specs[i]);
	w.h->clean = 0;
	memcpy(w.h->boot_id, "another-boot-0000000000", 24);
	v1_end(&w);
	ok(ctab_open(&t, &c, &rep) == 0 && rep.migrated && rep.streams_kept == 0 && rep.streams_reset == 4,
	   "after an unclean stop under another boot every stream gets a new epoch, as layout 1 would give");
	ctab_close(&t);

	/* a file that says layout 1 and does not validate as one: set aside */
	make_specs(3);
	v1_begin(&w, seg_path, 64, (256 << 10) / 64, 255);
	for (unsigned i = 0; i < 4; i++)
		v1_stream(&w, i, &specs[i]);
	w.h->stride += 64;
	v1_end(&w);
	ok(ctab_open(&t, &c, &rep) == 0 && !rep.migrated && rep.created && rep.set_aside,
	   "a layout-1 file whose header does not validate is set aside, as before");
	struct seg_hdr sh;
	ok(seg_peek(aside, &sh) == 0 && sh.version == 1, "and kept as %s", aside);
	ctab_close(&t);
	unlink(aside);
}

/* ---- no room for the new file ------------------------------------------- */

static uint64_t file_sum(const char *path);

static void test_migrate_no_room(void)
{
	int st;

	make_specs(6);
	write_v1(seg_path, 64, (256 << 10) / 64, 0, 10);
	uint64_t want = file_sum(seg_path);
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit rl = { .rlim_cur = 1 << 20, .rlim_max = 1 << 20 };
		struct ctab t;
		struct ctab_config c = config(64, 4 << 20);
		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &rl);
		if (ctab_open(&t, &c, NULL) == 0)
			_exit(1);
		_exit(errno == EFBIG || errno == ENOSPC ? 0 : 2);
	}
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "no room for the migrated file: ctab_open fails (status %d)", st);
	ok(file_sum(seg_path) == want && no_leftovers(), "the layout-1 file is untouched, nothing left beside it");
	struct ctab t;
	struct ctab_report rep;
	struct ctab_config c = config(64, 4 << 20);
	ok(ctab_open(&t, &c, &rep) == 0 && rep.migrated && rep.streams_kept == 10 && stream_is(&t, &specs[1], 0, 300000),
	   "with room, the next start migrates it");
	ctab_close(&t);
}

/* ---- torture: kill the migration anywhere -------------------------------- */

#define TNS 32

static int copy_file(const char *from, const char *to)
{
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	char buf[1 << 16];
	ssize_t n;
	if (in < 0 || out < 0)
		abort();
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(out, buf, (size_t)n) != n)
			abort();
	close(in);
	close(out);
	return 0;
}

static uint64_t file_sum(const char *path)
{
	struct stat st;
	int fd = open(path, O_RDONLY);
	if (fd < 0 || fstat(fd, &st) < 0)
		return 0;
	void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	uint64_t s = sum64(p, (size_t)st.st_size & ~(size_t)7) ^ (uint64_t)st.st_size;
	munmap(p, (size_t)st.st_size);
	return s;
}

static void migrate_child(unsigned unused)
{
	(void)unused;
	struct ctab t;
	struct ctab_config c = config(64, 4 << 20);
	if (ctab_open(&t, &c, NULL) < 0)
		_exit(1);
	_exit(0);
}

static void test_torture(void)
{
	/* a layout-1 file of 8 MB of data migrated to 4 MB (all records fit) */
	make_specs(40);
	write_v1(pristine, 64, (8u << 20) / 64, 0, TNS);
	uint64_t want = file_sum(pristine);

	struct ctab t;
	struct ctab_report rep;
	struct ctab_config c = config(64, 4 << 20);
	copy_file(pristine, seg_path);
	uint64_t t0 = now_ns();
	pid_t pid = spawn(migrate_child, 0);
	int st;
	waitpid(pid, &st, 0);
	uint64_t dur_us = (now_ns() - t0) / 1000;
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "an uninterrupted migration takes %llu us",
	   (unsigned long long)dur_us);
	ok(ctab_open(&t, &c, &rep) == 0 && !rep.migrated, "its result opens");
	unsigned want_count[TNS];
	uint64_t want_records = rep.records_kept;
	for (unsigned i = 0; i < TNS; i++) {
		struct hist_peek pk = { 0 };
		hist_peek(&t, specs[i].name, strlen(specs[i].name), 300000, &pk);
		want_count[i] = pk.count;
	}
	ctab_close(&t);

	unsigned runs = 300, before = 0, after = 0, bad = 0;
	uint64_t seed = 0x9e3779b97f4a7c15u ^ (uint64_t)getpid();
	for (unsigned r = 0; r < runs; r++) {
		copy_file(pristine, seg_path);
		pid = spawn(migrate_child, 0);
		sleep_us((long)(xs(&seed) % (dur_us + dur_us / 4 + 1)));
		kill(pid, SIGKILL);
		waitpid(pid, &st, 0);
		struct seg_hdr sh;
		if (seg_peek(seg_path, &sh) == 0 && sh.version == 1) {
			if (file_sum(seg_path) != want) {
				diag("run %u: the layout-1 file changed", r);
				bad++;
			}
			before++;
		} else if (seg_peek(seg_path, &sh) == 0 && sh.version == CTAB_VERSION) {
			after++;
		} else {
			diag("run %u: neither layout 1 nor a migrated table", r);
			bad++;
			continue;
		}
		memset(&rep, 0, sizeof(rep));
		if (ctab_open(&t, &c, &rep) < 0 || rep.created || rep.set_aside || rep.records_kept != want_records) {
			diag("run %u: open after the kill: created %d, kept %llu", r, rep.created,
			     (unsigned long long)rep.records_kept);
			bad++;
			if (t.h != NULL)
				ctab_close(&t);
			continue;
		}
		bool same = ctab_verify(&t, true, NULL) == 0;
		for (unsigned i = 0; i < TNS && same; i++)
			if (!stream_is(&t, &specs[i], specs[i].nrec - want_count[i], 300000))
				same = false;
		if (!same || !no_leftovers()) {
			diag("run %u: the history differs or a temporary file is left", r);
			bad++;
		}
		ctab_close(&t);
	}
	is_int(bad, 0, "%u kills during a migration: the layout-1 file untouched (%u) or a complete migrated "
		       "table (%u), the same history after the next open",
	       runs, before, after);
	ok(before > 0 && after > 0, "kills landed both before and after the migration's rename");
	unlink(pristine);
}

int main(void)
{
	if (mkdtemp(dir) == NULL)
		return 99;
	snprintf(seg_path, sizeof(seg_path), "%s/%s", dir, CTAB_SEG_NAME);
	snprintf(pristine, sizeof(pristine), "%s/pristine", dir);
	snprintf(aside, sizeof(aside), "%s.v1", seg_path);
	test_migrate_all();
	test_migrate_smaller();
	test_migrate_damaged();
	test_migrate_no_room();
	test_torture();
	char p[400];
	snprintf(p, sizeof(p), "%s/%s", dir, CTAB_LOCK_NAME);
	unlink(p);
	unlink(seg_path);
	rmdir(dir);
	return tap_done();
}
