/*
 * test_chan.c - the channel table and its history streams: offsets and
 * epochs, size trimming, ttl and meta ttl with a fake clock, the history
 * read semantics of client-protocol.md 6.5, hist_remove, sweeping, the
 * table-full and data-full policies, records' encoding, reopening after a
 * clean and an unclean stop (same boot, another boot), a damaged record,
 * meta, name or header on reopen, a record damaged in memory, a writer
 * killed at every step of a change, a derived count found wrong and
 * rebuilt (and the rebuilder killed), a warm open by another process, a
 * full disk, and the single-process rates and repair cost.
 */
#include "chan.h"
#include "../../tests/tap.h"
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/rotor-test-chan-XXXXXX";
static char seg_path[300];

static struct ctab_config config(uint32_t streams, uint64_t data)
{
	struct ctab_config c = { .dir = dir, .streams = streams, .data_bytes = data, .now_ms = 1 };
	return c;
}

static const struct hist_opts OPTS = { .size = 100, .ttl_ms = 1000000, .meta_ttl_ms = 0 };

static struct hist_rec rec;

/* Appends the text DATA to channel CH at NOW; returns the offset (0 on error). */
static uint64_t put(struct ctab *t, const char *ch, const struct hist_opts *o, const char *data, int64_t now,
		    char *epoch)
{
	struct hist_pub p = { .data = data, .data_len = strlen(data), .time_ms = now };
	struct hist_pos pos;
	if (hist_encode(&rec, &p) < 0 || hist_append(t, ch, strlen(ch), o, &rec, now, &pos) < 0)
		return 0;
	if (epoch != NULL)
		strcpy(epoch, pos.epoch);
	return pos.offset;
}

/* What a read returned. */
struct got {
	unsigned n, stop_at;
	uint64_t off[512];
	char data[512][32];
	bool bad;
};

static int collect(void *arg, const struct hist_pub *p)
{
	struct got *g = arg;
	if (g->n < 512) {
		g->off[g->n] = p->offset;
		size_t n = p->data_len < 31 ? p->data_len : 31;
		memcpy(g->data[g->n], p->data, n);
		g->data[g->n][n] = '\0';
		/* every test record's data is "d<offset>" or text starting with a letter */
	}
	g->n++;
	return g->stop_at != 0 && g->n >= g->stop_at;
}

/* Reads CH and renders the offsets returned as "1,2,3" into OUT. */
static int rd(struct ctab *t, const char *ch, struct hist_query q, int64_t now, struct hist_result *res,
	      char *out, size_t outsz)
{
	static struct got g;
	memset(&g, 0, sizeof(g));
	int rc = hist_read(t, ch, strlen(ch), &q, now, collect, &g, res);
	size_t used = 0;
	out[0] = '\0';
	for (unsigned i = 0; i < g.n && i < 512 && used + 24 < outsz; i++)
		used += (size_t)snprintf(out + used, outsz - used, "%s%llu", i ? "," : "",
					 (unsigned long long)g.off[i]);
	return rc;
}

static bool epoch_letters(const char *e)
{
	if (strlen(e) != HIST_EPOCH_LEN)
		return false;
	for (int i = 0; i < HIST_EPOCH_LEN; i++)
		if (!((e[i] >= 'a' && e[i] <= 'z') || (e[i] >= 'A' && e[i] <= 'Z')))
			return false;
	return true;
}

/* File offset of P, a pointer into T's mapping. */
static off_t file_off(const struct ctab *t, const void *p)
{
	return (off_t)((const unsigned char *)p - (const unsigned char *)t->seg.hdr);
}

/* The entry of channel CH, by walking the table (tests only). */
static struct ctab_stream *entry(const struct ctab *t, const char *ch)
{
	for (uint32_t i = 0; i < t->nstreams; i++) {
		if (!(t->emap[i / 64] >> (i % 64) & 1))
			continue;
		struct ctab_stream *s = (struct ctab_stream *)(t->streams + (size_t)i * t->stride);
		if (s->name_len == strlen(ch) && memcmp(s + 1, ch, s->name_len) == 0)
			return s;
	}
	return NULL;
}

static struct hist_blk *block(const struct ctab *t, uint32_t b)
{
	return (struct hist_blk *)(t->blocks + (size_t)(b - 1) * HIST_BLOCK);
}

static int reopen(struct ctab *t, struct ctab_config c, struct ctab_report *rep)
{
	ctab_close(t);
	return ctab_open(t, &c, rep);
}

static void clear_dir(void)
{
	char p[400];
	snprintf(p, sizeof(p), "%s/%s", dir, CTAB_SEG_NAME);
	unlink(p);
}

/* ---- encoding ----------------------------------------------------------- */

static void test_encoding(void)
{
	struct hist_info in = { .user = "u42", .user_len = 3, .client = "c-1", .client_len = 3,
				.conn_info = "{\"a\":1}", .conn_info_len = 7, .chan_info = "[]", .chan_info_len = 2 };
	struct hist_tag tags[2] = { { "k1", 2, "v1", 2 }, { "key", 3, "", 0 } };
	struct hist_pub p = { .data = "{\"x\":\"\\u0000\"}", .data_len = 14, .info = &in, .tags = tags, .ntags = 2,
			      .time_ms = 1700000000123 }, q;
	struct hist_dec d;

	hist_dec_init(&d);
	int rc = hist_encode(&rec, &p);
	ok(rc == 0 && rec.len > 0, "a publication encodes (%zu bytes)", rec.len);
	ok(hist_decode(&d, rec.buf, rec.len, &q) == 0, "and decodes");
	ok(q.data_len == 14 && memcmp(q.data, p.data, 14) == 0, "data round-trips byte for byte");
	ok(q.time_ms == p.time_ms, "time round-trips");
	ok(q.info != NULL && q.info->user_len == 3 && memcmp(q.info->user, "u42", 3) == 0 &&
	   q.info->client_len == 3 && memcmp(q.info->client, "c-1", 3) == 0 && q.info->conn_info_len == 7 &&
	   memcmp(q.info->conn_info, "{\"a\":1}", 7) == 0 && q.info->chan_info_len == 2,
	   "info round-trips: user, client, conn_info, chan_info");
	ok(q.ntags == 2 && q.tags[0].key_len == 2 && memcmp(q.tags[0].key, "k1", 2) == 0 &&
	   q.tags[1].val_len == 0, "tags round-trip, an empty value too");

	struct hist_pub bare = { .data = NULL, .data_len = 0 };
	ok(hist_encode(&rec, &bare) == 0 && hist_decode(&d, rec.buf, rec.len, &q) == 0 && q.data_len == 0 &&
	   q.info == NULL && q.ntags == 0 && q.time_ms == 0, "an empty publication round-trips");

	/* A later version's record: a key this one does not know is skipped. */
	unsigned char later[] = { 0x82, 0x02, 0xc4, 0x02, 'h', 'i', 0x09, 0xa3, 'n', 'e', 'w' };
	ok(hist_decode(&d, later, sizeof(later), &q) == 0 && q.data_len == 2 && memcmp(q.data, "hi", 2) == 0,
	   "unknown keys are skipped, so the format can grow");
	unsigned char junk[] = { 0x93, 0x01, 0x02, 0x03 };
	ok(hist_decode(&d, junk, sizeof(junk), &q) == -1 && errno == EBADMSG, "a non-record is EBADMSG");
	ok(hist_decode(&d, later, sizeof(later) - 2, &q) == -1 && errno == EBADMSG, "a truncated record is EBADMSG");
	hist_dec_free(&d);
}

/* ---- streams ------------------------------------------------------------ */

static void test_offsets(void)
{
	struct ctab t;
	struct ctab_report rep;
	struct ctab_config c = config(64, 256 << 10);
	char e1[16], e2[16], e3[16];
	struct hist_pos pos;
	bool inc = true;

	ok(ctab_open(&t, &c, &rep) == 0 && rep.cold && rep.created, "a new table is created cold");
	for (uint64_t i = 1; i <= 20; i++) {
		char d[16], e[16];
		snprintf(d, sizeof(d), "d%llu", (unsigned long long)i);
		if (put(&t, "news", &OPTS, d, 1000, e) != i || (i > 1 && strcmp(e, e1) != 0))
			inc = false;
		if (i == 1)
			strcpy(e1, e);
	}
	ok(inc, "offsets go 1, 2, ... 20 in one epoch");
	ok(epoch_letters(e1), "the epoch is 8 letters [a-zA-Z]: %s", e1);
	ok(put(&t, "sport", &OPTS, "x", 1000, e2) == 1 && strcmp(e1, e2) != 0, "another channel: its own offsets, its own epoch");
	ok(hist_top(&t, "idle", 4, 0, 1000, &pos) == 0 && pos.offset == 0 && epoch_letters(pos.epoch),
	   "the top of a channel never published: offset 0, a new epoch");
	strcpy(e3, pos.epoch);
	ok(put(&t, "idle", &OPTS, "x", 1000, e2) == 1 && strcmp(e2, e3) == 0, "which its first publication keeps");
	ok(hist_top(&t, "news", 4, 0, 1000, &pos) == 0 && pos.offset == 20 && strcmp(pos.epoch, e1) == 0,
	   "hist_top gives the top and epoch");

	/* Names are bytes. */
	char bin[3] = { 'a', 0, 'b' };
	struct hist_pub p = { .data = "z", .data_len = 1 };
	hist_encode(&rec, &p);
	ok(hist_append(&t, bin, 3, &OPTS, &rec, 1000, &pos) == 0 && pos.offset == 1 &&
	   hist_append(&t, bin, 1, &OPTS, &rec, 1000, &pos) == 0 && pos.offset == 1,
	   "names are byte strings: \"a\\0b\" and \"a\" are two channels");

	/* Refusals. */
	struct hist_opts zero = OPTS;
	zero.size = 0;
	ok(hist_append(&t, "x", 1, &zero, &rec, 1000, &pos) == -1 && errno == EINVAL, "history_size 0 is EINVAL");
	ok(hist_append(&t, "", 0, &OPTS, &rec, 1000, &pos) == -1 && errno == EINVAL, "an empty name is EINVAL");
	char longname[300];
	memset(longname, 'n', sizeof(longname));
	ok(hist_append(&t, longname, 256, &OPTS, &rec, 1000, &pos) == -1 && errno == ENAMETOOLONG,
	   "a name over name_max (255) is ENAMETOOLONG");
	ok(hist_append(&t, longname, 255, &OPTS, &rec, 1000, &pos) == 0, "one of 255 bytes is fine");
	ok(hist_append_check(&t, 5, &OPTS, &rec) == 0, "hist_append_check agrees with what appends");
	ctab_close(&t);
}

static void test_trim_and_read(void)
{
	struct ctab t;
	struct ctab_config c = config(64, 256 << 10);
	struct hist_result res;
	char out[2048], ep[16];
	struct hist_opts small = OPTS;

	ok(ctab_open(&t, &c, NULL) == 0, "open for reads");
	for (int i = 1; i <= 10; i++)
		put(&t, "s", &OPTS, "d", 1000, ep);
	small.size = 3;
	for (int i = 1; i <= 10; i++)
		put(&t, "trim", &small, "d", 1000, NULL);

#define Q(...) ((struct hist_query){ __VA_ARGS__ })
	rd(&t, "s", Q(.limit = 0), 1000, &res, out, sizeof(out));
	ok(res.count == 0 && res.top.offset == 10 && strcmp(res.top.epoch, ep) == 0 && res.first == 1,
	   "limit 0: no publications, only the position (top 10)");
	rd(&t, "s", Q(.limit = -1), 1000, &res, out, sizeof(out));
	is_str(out, "1,2,3,4,5,6,7,8,9,10", "limit -1: everything, oldest first");
	rd(&t, "s", Q(.limit = 3), 1000, &res, out, sizeof(out));
	is_str(out, "1,2,3", "limit 3: the three oldest");
	rd(&t, "s", Q(.limit = -1, .reverse = true), 1000, &res, out, sizeof(out));
	is_str(out, "10,9,8,7,6,5,4,3,2,1", "reverse: newest first");
	rd(&t, "s", Q(.limit = 2, .reverse = true), 1000, &res, out, sizeof(out));
	is_str(out, "10,9", "reverse, limit 2: the two newest");
	rd(&t, "s", Q(.limit = -1, .has_since = true, .since_offset = 4, .since_epoch = ep), 1000, &res, out,
	   sizeof(out));
	is_str(out, "5,6,7,8,9,10", "since 4: strictly after it");
	ok(!res.epoch_mismatch, "same epoch: no mismatch");
	rd(&t, "s", Q(.limit = 2, .has_since = true, .since_offset = 4), 1000, &res, out, sizeof(out));
	is_str(out, "5,6", "since 4, limit 2");
	rd(&t, "s", Q(.limit = -1, .has_since = true, .since_offset = 10, .since_epoch = ep), 1000, &res, out,
	   sizeof(out));
	ok(res.count == 0 && res.top.offset == 10, "since the top, same epoch: empty, top given");
	rd(&t, "s", Q(.limit = -1, .has_since = true, .since_offset = 0), 1000, &res, out, sizeof(out));
	is_str(out, "1,2,3,4,5,6,7,8,9,10", "since 0 forward: everything");
	rd(&t, "s", Q(.limit = -1, .has_since = true, .since_offset = 25), 1000, &res, out, sizeof(out));
	ok(res.count == 0, "since past the top: empty");
	rd(&t, "s", Q(.limit = -1, .reverse = true, .has_since = true, .since_offset = 4), 1000, &res, out,
	   sizeof(out));
	is_str(out, "3,2,1", "reverse since 4: strictly before it, newest first");
	rd(&t, "s", Q(.limit = 2, .reverse = true, .has_since = true, .since_offset = 4), 1000, &res, out,
	   sizeof(out));
	is_str(out, "3,2", "reverse since 4, limit 2");
	rd(&t, "s", Q(.limit = -1, .reverse = true, .has_since = true, .since_offset = 1), 1000, &res, out,
	   sizeof(out));
	ok(res.count == 0, "reverse since 1: empty");
	rd(&t, "s", Q(.limit = -1, .reverse = true, .has_since = true, .since_offset = 11), 1000, &res, out,
	   sizeof(out));
	is_str(out, "10,9,8,7,6,5,4,3,2,1", "reverse since top + 1: from the top");
	ok(rd(&t, "s", Q(.limit = -1, .reverse = true, .has_since = true, .since_offset = 0), 1000, &res, out,
	      sizeof(out)) == -1 && errno == EINVAL, "reverse since offset 0: EINVAL (the caller's 107)");
	rd(&t, "s", Q(.limit = -1, .has_since = true, .since_offset = 4, .since_epoch = "abcdefgh"), 1000, &res,
	   out, sizeof(out));
	ok(res.epoch_mismatch && res.count == 0 && res.top.offset == 10 && strcmp(res.top.epoch, ep) == 0,
	   "another epoch: the 112 condition, no publications, the current position");
	rd(&t, "s", Q(.limit = -1, .has_since = true, .since_offset = 4, .since_epoch = ""), 1000, &res, out,
	   sizeof(out));
	ok(!res.epoch_mismatch && res.count == 6, "an empty since epoch matches any");
	static struct got g;
	memset(&g, 0, sizeof(g));
	g.stop_at = 2;
	struct hist_query q = Q(.limit = -1);
	hist_read(&t, "s", 1, &q, 1000, collect, &g, &res);
	ok(g.n == 2 && res.count == 2, "a callback that returns nonzero stops the read");

	rd(&t, "trim", Q(.limit = -1), 1000, &res, out, sizeof(out));
	is_str(out, "8,9,10", "history_size 3: the last three kept");
	ok(res.first == 8 && res.top.offset == 10, "first retained 8, top 10");
	rd(&t, "trim", Q(.limit = -1, .has_since = true, .since_offset = 2), 1000, &res, out, sizeof(out));
	is_str(out, "8,9,10", "since a trimmed offset: from the oldest retained (the hole shows)");
	rd(&t, "trim", Q(.limit = -1, .reverse = true, .has_since = true, .since_offset = 8), 1000, &res, out,
	   sizeof(out));
	ok(res.count == 0, "reverse since the oldest retained: empty");
	small.size = 1;
	put(&t, "trim", &small, "d", 1000, NULL);
	rd(&t, "trim", Q(.limit = -1), 1000, &res, out, sizeof(out));
	is_str(out, "11", "history_size lowered to 1: the next append trims to one");

	/* Records of every size up to the largest, round-tripped. */
	bool sizes_ok = true;
	char *big = malloc(t.max_record + 64);
	for (size_t len = 0; len <= 2000 && sizes_ok; len += 37) {
		memset(big, 'a' + (int)(len % 26), len);
		struct hist_pub p = { .data = big, .data_len = len };
		struct hist_pos pos;
		if (hist_encode(&rec, &p) < 0 || hist_append(&t, "sizes", 5, &OPTS, &rec, 1000, &pos) < 0)
			sizes_ok = false;
	}
	ok(sizes_ok, "records of 0 to 2000 bytes append");
	struct hist_pub p = { .data = big, .data_len = 0 };
	hist_encode(&rec, &p);
	size_t over = t.max_record - rec.len + 1; /* data that makes the record one byte too big */
	p.data_len = over + 5;
	memset(big, 'q', t.max_record);
	hist_encode(&rec, &p);
	struct hist_pos pos;
	ok(rec.len > t.max_record && hist_append(&t, "big", 3, &OPTS, &rec, 1000, &pos) == -1 && errno == EMSGSIZE,
	   "a record over max_record (%u) is EMSGSIZE", t.max_record);
	p.data_len = t.max_record - 8;
	hist_encode(&rec, &p);
	while (rec.len > t.max_record) {
		p.data_len--;
		hist_encode(&rec, &p);
	}
	ok(hist_append(&t, "big", 3, &OPTS, &rec, 1000, &pos) == 0, "a record of exactly max_record appends");
	free(big);
	ok(ctab_verify(&t, true, NULL) == 0, "the table verifies");
	ctab_close(&t);
}

static void test_expiry(void)
{
	struct ctab t;
	struct ctab_config c = config(64, 256 << 10);
	struct hist_result res;
	struct hist_pos pos;
	char out[512], ep[16], ep2[16];
	struct hist_opts o = { .size = 10, .ttl_ms = 5000, .meta_ttl_ms = 60000 };

	ok(ctab_open(&t, &c, NULL) == 0, "open for expiry");
	put(&t, "e", &o, "d", 1000, ep);
	put(&t, "e", &o, "d", 2000, NULL);
	rd(&t, "e", Q(.limit = -1), 6999, &res, out, sizeof(out));
	is_str(out, "1,2", "history_ttl 5 s: kept until 5 s after the last append");
	rd(&t, "e", Q(.limit = -1), 7000, &res, out, sizeof(out));
	ok(res.count == 0 && res.top.offset == 2 && strcmp(res.top.epoch, ep) == 0,
	   "at last append + ttl every record goes together; epoch and top stay");
	ok(put(&t, "e", &o, "d", 8000, ep2) == 3 && strcmp(ep, ep2) == 0, "the next append continues the offsets: 3");

	/* Meta ttl: forgotten 60 s after the last append or read. */
	ok(hist_top(&t, "e", 1, 60000, 60000, &pos) == 0 && strcmp(pos.epoch, ep) == 0,
	   "a read refreshes the meta ttl (to 120 s)");
	ok(hist_top(&t, "e", 1, 0, 119999, &pos) == 0 && pos.offset == 3 && strcmp(pos.epoch, ep) == 0,
	   "still there just before it");
	ok(hist_top(&t, "e", 1, 0, 120000, &pos) == 0 && pos.offset == 0 && strcmp(pos.epoch, ep) != 0,
	   "past the meta ttl the stream is forgotten: top 0, a new epoch (%s)", pos.epoch);
	strcpy(ep2, pos.epoch);
	ok(put(&t, "e", &o, "d", 120001, ep) == 1 && strcmp(ep, ep2) == 0, "offsets restart at 1 in the new epoch");

	/* Expired on access, and by the sweep. */
	struct ctab_stats st;
	for (int i = 0; i < 10; i++) {
		char ch[16];
		snprintf(ch, sizeof(ch), "w%d", i);
		put(&t, ch, &o, "d", 200000, NULL);
	}
	ctab_stats(&t, &st);
	uint32_t before = st.nused;
	int n1 = ctab_sweep(&t, 206000, 1000);
	ctab_stats(&t, &st);
	/* ("e" is forgotten too: its meta ttl ran out at 180001.) */
	ok(n1 == 11 && st.nused == before - 1, "a sweep past the ttl drops records (%d streams) and keeps the metas", n1);
	int n2 = ctab_sweep(&t, 300000, 1000);
	ctab_stats(&t, &st);
	ok(n2 >= 10 && st.nused <= before - 10, "a sweep past the meta ttl forgets the streams (%d)", n2);
	ok(ctab_verify(&t, true, NULL) == 0, "the table verifies after sweeping");
	ctab_close(&t);
}

static void test_remove(void)
{
	struct ctab t;
	struct ctab_config c = config(64, 256 << 10);
	struct hist_result res;
	struct ctab_stats st;
	char out[512], ep[16], ep2[16];

	ok(ctab_open(&t, &c, NULL) == 0, "open for remove");
	for (int i = 0; i < 5; i++)
		put(&t, "r", &OPTS, "d", 1000, ep);
	ok(hist_remove(&t, "r", 1, 1000) == 0, "hist_remove");
	rd(&t, "r", Q(.limit = -1), 1000, &res, out, sizeof(out));
	ok(res.count == 0 && res.top.offset == 5 && strcmp(res.top.epoch, ep) == 0,
	   "the publications are gone, the epoch and the top (5) kept");
	ok(put(&t, "r", &OPTS, "d", 1000, ep2) == 6 && strcmp(ep, ep2) == 0, "the next publication is 6");
	ctab_stats(&t, &st);
	uint32_t n = st.nused;
	ok(hist_remove(&t, "nothing", 7, 1000) == 0, "removing an unknown channel succeeds");
	ctab_stats(&t, &st);
	ok(st.nused == n, "and creates nothing");
	ctab_close(&t);
}

/* Appends DATA to CH with VERSION and version epoch VE: hist_append's
 * result, the position in *POS. */
static int put_v(struct ctab *t, const char *ch, uint64_t version, const char *ve, int64_t now,
		 struct hist_pos *pos)
{
	struct hist_opts o = OPTS;
	struct hist_pub p = { .data = "v", .data_len = 1, .time_ms = now };
	o.version = version;
	o.version_epoch = ve;
	o.version_epoch_len = strlen(ve);
	if (hist_encode(&rec, &p) < 0)
		return -1;
	return hist_append(t, ch, strlen(ch), &o, &rec, now, pos);
}

/* The publish API's version and version_epoch, as Centrifugo's memory
 * broker: older or equal versions dropped, a new version epoch resets. */
static void test_versions(void)
{
	struct ctab t;
	struct ctab_config c = config(64, 256 << 10);
	struct hist_pos pos;
	uint64_t n;

	ok(ctab_open(&t, &c, NULL) == 0, "open for versions");
	ok(put_v(&t, "v", 5, "", 1000, &pos) == 0 && pos.offset == 1, "version 5 on a new stream: offset 1");
	ok(put_v(&t, "v", 6, "", 1000, &pos) == 0 && pos.offset == 2, "version 6: offset 2");
	struct hist_opts six = OPTS, seven = OPTS;
	six.version = 6;
	seven.version = 7;
	memset(&pos, 0, sizeof(pos));
	ok(hist_version_check(&t, "v", 1, &six, 1000, &pos) == 1 && pos.offset == 2,
	   "hist_version_check: version 6 would be dropped, the top (2)");
	ok(hist_version_check(&t, "v", 1, &seven, 1000, &pos) == 0, "hist_version_check: version 7 would not");
	ok(hist_version_check(&t, "nothing", 7, &six, 1000, &pos) == 0, "nor any on a stream not there");
	ok(put_v(&t, "v", 6, "", 1000, &pos) == 1 && pos.offset == 2, "version 6 again: dropped, the top (2)");
	ok(put_v(&t, "v", 3, "", 1000, &pos) == 1 && pos.offset == 2, "version 3: dropped");
	ok(put_v(&t, "v", 7, "a", 1000, &pos) == 0 && pos.offset == 3, "version 7 epoch a: offset 3");
	ok(put_v(&t, "v", 2, "a", 1000, &pos) == 1 && pos.offset == 3, "version 2 epoch a: dropped");
	ok(put_v(&t, "v", 2, "", 1000, &pos) == 1, "version 2 without an epoch: compared, dropped");
	ok(put_v(&t, "v", 2, "b", 1000, &pos) == 0 && pos.offset == 4, "version 2 epoch b: a new epoch resets");
	ok(put_v(&t, "v", 1, "b", 1000, &pos) == 1, "version 1 epoch b: dropped");
	ok(put_v(&t, "v", 0, "", 1000, &pos) == 0 && pos.offset == 5, "no version: always appended");
	ok(put_v(&t, "v", 1, "b", 1000, &pos) == 0 && pos.offset == 6,
	   "and it is the stream's last (version 0): version 1 passes");
	struct hist_result res;
	char out[128];
	ok(rd(&t, "v", Q(.limit = -1), 1000, &res, out, sizeof(out)) == 0 && strcmp(out, "1,2,3,4,5,6") == 0,
	   "six records kept, the dropped ones nowhere");
	ok(ctab_verify(&t, true, &n) == 0, "the table verifies");
	ok(hist_remove(&t, "v", 1, 1000) == 0 && put_v(&t, "v", 1, "b", 1000, &pos) == 1,
	   "history_remove keeps the version (1 still dropped)");
	ok(put_v(&t, "w", 9, "", 1000, &pos) == 0 && put_v(&t, "w", 9, "", 1000 + 2000000, &pos) == 1,
	   "records expired by history_ttl: the version is kept with the meta");
	ok(hist_encode(&rec, &(struct hist_pub){ .data = "m", .data_len = 1 }) == 0 &&
	   hist_append(&t, "m", 1, &(struct hist_opts){ .size = 10, .ttl_ms = 5, .meta_ttl_ms = 10,
							  .version = 4 }, &rec, 1000, &pos) == 0,
	   "version 4 on a stream whose meta lives 10 ms");
	ok(put_v(&t, "m", 4, "", 1011, &pos) == 0 && pos.offset == 1,
	   "after the meta expired, version 4 passes on a new epoch");
	ok(ctab_verify(&t, true, NULL) == 0, "the table verifies");
	ctab_close(&t);
}

/* A segment of another layout version is moved aside, not discarded. */
static void test_other_layout(void)
{
	struct ctab t;
	struct ctab_config c = config(64, 256 << 10);
	struct ctab_report rep = { 0 };
	char aside[400], ep[16];
	uint32_t old = CTAB_VERSION - 1;

	snprintf(aside, sizeof(aside), "%s.v%u", seg_path, old);
	unlink(aside);
	ok(ctab_open(&t, &c, NULL) == 0 && put(&t, "keep", &OPTS, "d", 1000, ep) != 0, "a table with a stream");
	ctab_close(&t);
	poke(seg_path, offsetof(struct seg_hdr, version), &old, sizeof(old));
	ok(ctab_open(&t, &c, &rep) == 0 && rep.created && rep.set_aside && !rep.migrated,
	   "a cold open of a file that says layout %u and does not validate as one makes a new table", old);
	ok(rep.why != NULL && strstr(rep.why, "layout version") != NULL && strstr(rep.why, aside) != NULL,
	   "saying why and where the old one went (%s)", rep.why ? rep.why : "");
	struct seg_hdr h;
	ok(seg_peek(aside, &h) == 0 && h.kind == SEG_KIND_CTAB && h.version == old, "the old segment is kept aside");
	ok(put(&t, "keep", &OPTS, "d", 1000, ep) == 1, "the new table starts the stream anew");
	ctab_close(&t);
	unlink(aside);
}

/* ---- room --------------------------------------------------------------- */

static void test_table_full(void)
{
	struct ctab t;
	struct ctab_config c = config(16, 256 << 10);
	struct ctab_stats st;
	struct hist_pos pos;
	char ep0[16], ep1[16], ch[16];

	clear_dir();
	ok(ctab_open(&t, &c, NULL) == 0, "a table of 16 streams");
	for (int i = 0; i < 16; i++) {
		snprintf(ch, sizeof(ch), "c%d", i);
		put(&t, ch, &OPTS, "d", 1000 + i, i == 0 ? ep0 : i == 1 ? ep1 : NULL);
	}
	hist_top(&t, "c0", 2, 0, 5000, &pos); /* c0 read late: c1 is now the least recent */
	ctab_stats(&t, &st);
	ok(st.nused == 16 && st.evictions == 0, "full, nothing evicted yet");
	ok(put(&t, "new", &OPTS, "d", 6000, NULL) == 1, "a 17th stream is still accepted");
	ctab_stats(&t, &st);
	ok(st.nused == 16 && st.evictions == 1, "by evicting one");
	ok(hist_top(&t, "c0", 2, 0, 7000, &pos) == 0 && pos.offset == 1 && strcmp(pos.epoch, ep0) == 0,
	   "the recently read one kept its position");
	/* That read evicted another one to bring c1 back. */
	ok(hist_top(&t, "c1", 2, 0, 7000, &pos) == 0 && pos.offset == 0 && strcmp(pos.epoch, ep1) != 0,
	   "the least recently touched was evicted: back with top 0 and a new epoch");
	ok(ctab_verify(&t, true, NULL) == 0, "the table verifies");
	ctab_close(&t);
}

static void test_data_full(void)
{
	struct ctab t;
	struct ctab_config c = config(64, 64 << 10); /* 1024 blocks */
	struct ctab_stats st;
	struct hist_result res;
	struct hist_opts big = { .size = 100000, .ttl_ms = 10000000 };
	char out[8192], epa[16], epb[16], d[200];
	bool contiguous = true;

	clear_dir();
	ok(ctab_open(&t, &c, NULL) == 0, "a table with 64 KiB of data");
	memset(d, 'x', sizeof(d) - 1);
	d[sizeof(d) - 1] = '\0';
	/* "old" fills half the data at times 1000..; "hot" then appends at later times. */
	for (int i = 1; i <= 80; i++)
		put(&t, "old", &big, d, 1000 + i, epa);
	ctab_stats(&t, &st);
	ok(st.trims_space == 0, "no trims while it fits (%llu blocks free)", (unsigned long long)st.nfree);
	for (uint64_t i = 1; i <= 200; i++)
		if (put(&t, "hot", &big, d, 100000 + (int64_t)i, epb) != i)
			contiguous = false;
	ctab_stats(&t, &st);
	ok(contiguous, "appends never fail when the data is full, offsets contiguous");
	ok(st.trims_space > 0, "records were trimmed for room (%llu)", (unsigned long long)st.trims_space);
	rd(&t, "old", Q(.limit = 0), 200000, &res, out, sizeof(out));
	ok(res.top.offset == 80 && strcmp(res.top.epoch, epa) == 0 && (res.first > 1 || res.first == 0),
	   "the stream with the oldest records lost its head first (first now %llu), epoch and top kept",
	   (unsigned long long)res.first);
	rd(&t, "hot", Q(.limit = -1), 200000, &res, out, sizeof(out));
	ok(res.top.offset == 200 && res.count > 0, "the hot stream keeps its newest records (%u of them)", res.count);
	uint64_t hot_first = res.first;
	/* Recovery from offset 1 of "old": the hole is visible. */
	rd(&t, "old", Q(.limit = -1, .has_since = true, .since_offset = 1, .since_epoch = epa), 200000, &res, out,
	   sizeof(out));
	ok(res.count == 0 || res.first > 2, "a client at offset 1 finds the head missing: not recovered");
	/* Now "old" is empty or nearly: the hot stream's own head goes next. */
	for (uint64_t i = 201; i <= 400; i++)
		put(&t, "hot", &big, d, 100000 + (int64_t)i, NULL);
	rd(&t, "hot", Q(.limit = 0), 300000, &res, out, sizeof(out));
	ok(res.first > hot_first && res.top.offset == 400, "with nothing older left, a stream trims its own head");
	ctab_stats(&t, &st);
	ok(st.nfree < 64, "the data stays full, not emptied (%llu blocks free)", (unsigned long long)st.nfree);
	ok(ctab_verify(&t, true, NULL) == 0, "the table verifies");
	ctab_close(&t);
}

/* ---- reopening ---------------------------------------------------------- */

/* Three channels with 5 records each; their epochs into EP. */
static void three(struct ctab *t, char ep[3][16])
{
	for (int i = 0; i < 3; i++) {
		char ch[16];
		snprintf(ch, sizeof(ch), "k%d", i);
		for (int j = 0; j < 5; j++)
			put(t, ch, &OPTS, "payload", 1000, ep[i]);
	}
}

/* Whether channel CH (k0..k2) still has epoch EP and its 5 records. */
static bool kept(struct ctab *t, const char *ch, const char *ep)
{
	struct hist_result res;
	char out[256];
	rd(t, ch, Q(.limit = -1), 2000, &res, out, sizeof(out));
	return strcmp(res.top.epoch, ep) == 0 && res.top.offset == 5 && strcmp(out, "1,2,3,4,5") == 0;
}

static bool renewed(struct ctab *t, const char *ch, const char *ep)
{
	struct hist_result res;
	char out[256];
	rd(t, ch, Q(.limit = -1), 2000, &res, out, sizeof(out));
	return strcmp(res.top.epoch, ep) != 0 && res.top.offset == 0 && res.count == 0;
}

static void test_reopen(void)
{
	struct ctab t;
	struct ctab_report rep;
	struct ctab_config c = config(64, 256 << 10), other = c;
	char ep[3][16];

	clear_dir();
	other.boot_id = "another-boot-of-this-box";
	ok(ctab_open(&t, &c, NULL) == 0, "open for reopening");
	three(&t, ep);
	ok(ctab_shutdown(&t) == 0 && t.h->clean == CTAB_CLEAN, "a clean shutdown marks it clean");
	int rc = reopen(&t, c, &rep);
	ok(rc == 0 && rep.cold && !rep.created && rep.streams_kept == 3 && rep.streams_reset == 0,
	   "reopened cold after a clean stop: 3 streams kept");
	ok(t.h->clean == 0, "and no longer marked clean");
	ok(kept(&t, "k0", ep[0]) && kept(&t, "k1", ep[1]) && kept(&t, "k2", ep[2]),
	   "every epoch and record survived");

	/* Unclean (nobody called ctab_shutdown), same boot: the processes
	 * died, the page cache did not. */
	rc = reopen(&t, c, &rep);
	ok(rc == 0 && rep.streams_kept == 3 && rep.streams_reset == 0,
	   "after an unclean stop in the same boot: kept (%s)", rep.why ? rep.why : "validated");
	ok(kept(&t, "k0", ep[0]) && kept(&t, "k2", ep[2]), "epochs and records intact");

	/* Clean, then another boot: kept. */
	ctab_shutdown(&t);
	rc = reopen(&t, other, &rep);
	ok(rc == 0 && rep.streams_kept == 3 && rep.streams_reset == 0, "after a clean stop and a reboot: kept");
	ok(kept(&t, "k1", ep[1]), "epochs and records intact");

	/* Unclean, then another boot: pages may have reached the disk in any
	 * order; nothing can be proven. */
	rc = reopen(&t, c, &rep);
	ok(rc == 0 && rep.streams_reset == 3 && rep.streams_kept == 0,
	   "after an unclean stop and a reboot: every stream gets a new epoch (%s)", rep.why ? rep.why : "?");
	ok(renewed(&t, "k0", ep[0]) && renewed(&t, "k1", ep[1]) && renewed(&t, "k2", ep[2]),
	   "each with top 0 and no records");
	ok(ctab_verify(&t, true, NULL) == 0, "the table verifies");
	ctab_close(&t);
}

static void test_damage(void)
{
	struct ctab t;
	struct ctab_report rep;
	struct ctab_config c = config(64, 256 << 10);
	char ep[3][16];
	unsigned char x;

	clear_dir();
	ok(ctab_open(&t, &c, NULL) == 0, "open for damage");
	three(&t, ep);
	/* A payload byte of k1's third record. */
	struct ctab_stream *s = entry(&t, "k1");
	uint32_t b = s->m.head;
	for (int i = 0; i < 2; i++)
		b = block(&t, b)->newer;
	off_t at = file_off(&t, block(&t, b)->data + 3);
	ctab_close(&t);
	peek(seg_path, at, &x, 1);
	x ^= 0x20;
	poke(seg_path, at, &x, 1);
	int rc = ctab_open(&t, &c, &rep);
	ok(rc == 0 && rep.streams_reset == 1 && rep.streams_kept == 2 && !rep.created,
	   "a damaged record on reopen: that stream alone reset (%s)", rep.why ? rep.why : "?");
	ok(renewed(&t, "k1", ep[1]), "it has a new epoch and no records");
	ok(kept(&t, "k0", ep[0]) && kept(&t, "k2", ep[2]), "the others kept theirs");
	for (int i = 0; i < 5; i++)
		put(&t, "k1", &OPTS, "payload", 1000, ep[1]); /* k1 back to 5 in its new epoch */

	/* A meta byte (the top) of k2. */
	s = entry(&t, "k2");
	at = file_off(&t, &s->m.top);
	ctab_close(&t);
	peek(seg_path, at, &x, 1);
	x ^= 1;
	poke(seg_path, at, &x, 1);
	rc = ctab_open(&t, &c, &rep);
	ok(rc == 0 && rep.streams_reset == 1 && rep.streams_kept == 2, "a damaged stream meta on reopen: that stream alone reset");
	ok(renewed(&t, "k2", ep[2]) && kept(&t, "k0", ep[0]) && kept(&t, "k1", ep[1]), "k2 renewed, k0 and k1 kept");

	/* A name byte: the entry cannot be trusted; it is forgotten. */
	s = entry(&t, "k0");
	at = file_off(&t, (char *)(s + 1));
	ctab_close(&t);
	peek(seg_path, at, &x, 1);
	x ^= 4;
	poke(seg_path, at, &x, 1);
	rc = ctab_open(&t, &c, &rep);
	ok(rc == 0 && rep.entries_dropped >= 1 && !rep.created, "a damaged name: its entry is dropped (%u)",
	   rep.entries_dropped);
	ok(renewed(&t, "k0", ep[0]), "so k0 comes back with a new epoch");
	ok(ctab_verify(&t, true, NULL) == 0, "the table verifies");

	/* A record damaged in memory, found by a read. */
	for (int i = 0; i < 5; i++)
		put(&t, "k0", &OPTS, "payload", 1000, ep[0]);
	s = entry(&t, "k0");
	block(&t, block(&t, s->m.head)->newer)->data[2] ^= 1;
	struct hist_result res;
	char out[256];
	ok(rd(&t, "k0", Q(.limit = -1), 2000, &res, out, sizeof(out)) == 0 && res.count == 0 &&
	   res.top.offset == 0 && strcmp(res.top.epoch, ep[0]) != 0,
	   "a read meeting a damaged record resets its stream and answers from the new epoch");
	struct ctab_stats st;
	ctab_stats(&t, &st);
	ok(st.resets >= 1, "counted as a reset");
	ok(ctab_verify(&t, true, NULL) == 0, "the table verifies");

	/* The header: recreated whole. */
	three(&t, ep);
	ctab_close(&t);
	uint32_t bad = 99;
	poke(seg_path, 64 + offsetof(struct ctab_hdr, version), &bad, 4);
	rc = ctab_open(&t, &c, &rep);
	ok(rc == 0 && rep.created && rep.why != NULL, "a damaged header: recreated (%s)", rep.why ? rep.why : "?");
	ok(renewed(&t, "k0", ep[0]) && renewed(&t, "k2", ep[2]), "every stream has a new epoch");
	three(&t, ep);
	ctab_close(&t);
	uint64_t nblocks = 12345;
	poke(seg_path, 64 + offsetof(struct ctab_hdr, nblocks), &nblocks, 4);
	ok(ctab_open(&t, &c, &rep) == 0 && rep.created, "a header whose geometry does not add up: recreated");
	three(&t, ep);
	ctab_close(&t);
	struct ctab_config bigger = config(128, 256 << 10);
	rc = ctab_open(&t, &bigger, &rep);
	ok(rc == 0 && rep.created, "other configured sizes: recreated (%s)", rep.why ? rep.why : "?");
	ok(renewed(&t, "k1", ep[1]), "with new epochs");
	ctab_close(&t);
	clear_dir();
}

/* ---- processes ---------------------------------------------------------- */

static int die_at;

static void die_hook(struct ctab *t, int s)
{
	if (s == die_at)
		raise(SIGKILL);
}

static const char *step_name(int s)
{
	static const char *names[] = { "", "blocks taken", "record written", "commit filled in", "commit armed",
				       "meta applied, link not", "committed, nothing freed", "half freed",
				       "entry filled", "entry linked", "entry unlinked", "half walked" };
	return s > 0 && s < CTAB_STEP_MAX ? names[s] : "?";
}

/* A child that does OP on T with the hook set to die at STEP. Returns
 * whether it died by SIGKILL (i.e. it reached the step). */
static bool child_dies(struct ctab *t, int step, void (*op)(struct ctab *))
{
	int st;
	pid_t pid = fork();
	if (pid == 0) {
		die_at = step;
		t->hook = die_hook;
		op(t);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
}

/* 6 records at size 6, then one at size 3: it commits, and frees 4. */
static void op_append_trim(struct ctab *t)
{
	struct hist_opts o = OPTS;
	o.size = 3;
	put(t, "kill", &o, "d7", 5000, NULL);
}

static void op_new_stream(struct ctab *t)
{
	put(t, "fresh", &OPTS, "d1", 5000, NULL);
}

static void op_expire(struct ctab *t)
{
	struct hist_pos pos;
	hist_top(t, "mortal", 6, 0, 1000000, &pos);
}

static void test_kills(void)
{
	struct ctab t;
	struct ctab_config c = config(64, 256 << 10);
	struct ctab_stats st;
	struct hist_result res;
	char out[256], ep[16];
	struct hist_opts six = OPTS, mortal = OPTS;
	six.size = 6;
	mortal.meta_ttl_ms = 100;

	clear_dir();
	ok(ctab_open(&t, &c, NULL) == 0, "open for kills");
	for (int s = CTAB_STEP_ALLOC; s <= CTAB_STEP_FREEING; s++) {
		hist_remove(&t, "kill", 4, 5000);
		for (int i = 0; i < 6; i++)
			put(&t, "kill", &six, "dx", 5000, ep);
		uint64_t top0 = 0;
		rd(&t, "kill", Q(.limit = 0), 5000, &res, out, sizeof(out));
		top0 = res.top.offset;
		ctab_stats(&t, &st);
		uint64_t repairs = st.repairs;
		bool died = child_dies(&t, s, op_append_trim);
		ctab_stats(&t, &st);
		bool held = st.lock_owner != 0;
		ok(died && held, "a writer killed holding the lock: %s", step_name(s));
		ok(ctab_verify(&t, true, NULL) == 0, "  the next locker repairs it; the table verifies");
		ctab_stats(&t, &st);
		ok(st.repairs == repairs + 1, "  one repair");
		rd(&t, "kill", Q(.limit = -1), 5000, &res, out, sizeof(out));
		bool committed = s >= CTAB_STEP_ARMED;
		char want[128];
		if (committed)
			snprintf(want, sizeof(want), "%llu,%llu,%llu", (unsigned long long)top0 - 1,
				 (unsigned long long)top0, (unsigned long long)top0 + 1);
		else
			snprintf(want, sizeof(want), "%llu,%llu,%llu,%llu,%llu,%llu", (unsigned long long)top0 - 5,
				 (unsigned long long)top0 - 4, (unsigned long long)top0 - 3,
				 (unsigned long long)top0 - 2, (unsigned long long)top0 - 1,
				 (unsigned long long)top0);
		ok(strcmp(out, want) == 0 && strcmp(res.top.epoch, ep) == 0,
		   "  %s: %s (got %s)", committed ? "the whole record, trimmed to 3" : "no trace of it", want, out);
		ok(put(&t, "kill", &six, "dy", 5000, NULL) == res.top.offset + 1, "  the next append follows on");
	}

	for (int s = CTAB_STEP_INSERT; s <= CTAB_STEP_LINKED; s++) {
		ctab_stats(&t, &st);
		uint32_t used = st.nused;
		bool died = child_dies(&t, s, op_new_stream);
		ok(died && ctab_verify(&t, true, NULL) == 0, "killed creating a stream: %s; repaired, verifies",
		   step_name(s));
		ctab_stats(&t, &st);
		ok(st.nused == used + (s == CTAB_STEP_LINKED), "  the entry is %s", s == CTAB_STEP_LINKED ? "there" : "not");
		struct hist_pos pos;
		ok(put(&t, "fresh", &OPTS, "d", 5000, NULL) == 1 && hist_top(&t, "fresh", 5, 0, 5000, &pos) == 0 &&
		   pos.offset == 1, "  and works: offset 1");
		/* Forget it for the next round: its meta expires, a sweep drops it. */
		struct hist_opts gone = OPTS;
		gone.meta_ttl_ms = 1;
		put(&t, "fresh", &gone, "d", 5000, NULL);
		ctab_sweep(&t, 6000, 1000);
	}

	put(&t, "mortal", &mortal, "d", 1000, ep);
	ok(child_dies(&t, CTAB_STEP_UNLINKED, op_expire) && ctab_verify(&t, true, NULL) == 0,
	   "killed forgetting an expired stream, after unlinking it: repaired, verifies");
	struct hist_pos pos;
	ok(hist_top(&t, "mortal", 6, 0, 1000000, &pos) == 0 && pos.offset == 0 && strcmp(pos.epoch, ep) != 0,
	   "  the stream is gone: a new epoch");

	/* A reader killed holding the lock. */
	ok(child_dies(&t, CTAB_STEP_APPLIED, op_expire) && ctab_verify(&t, true, NULL) == 0,
	   "a reader killed in its meta refresh: repaired, verifies");
	ctab_close(&t);
}

static char big3k[3000];

static void op_append_big(struct ctab *t)
{
	struct hist_pub p = { .data = big3k, .data_len = sizeof(big3k) };
	struct hist_pos pos;
	hist_encode(&rec, &p);
	for (int i = 0; i < 10; i++)
		hist_append(t, "full", 4, &OPTS, &rec, 9000, &pos);
}

static void test_rebuild(void)
{
	struct ctab t;
	struct ctab_config c = config(64, 64 << 10);
	struct ctab_stats st;

	clear_dir();
	memset(big3k, 'b', sizeof(big3k));
	ok(ctab_open(&t, &c, NULL) == 0, "open for rebuilds");
	for (int i = 0; i < 3; i++)
		op_append_big(&t);
	ctab_stats(&t, &st);
	ok(st.trims_space > 0 && ctab_verify(&t, true, NULL) == 0, "the data is full of 3 KB records");

	/* A derived count that lies (never, but a stray write could): every
	 * block claimed free. The first allocation that cannot be satisfied
	 * rebuilds the maps from the chains. */
	t.h->nfree = t.nblocks;
	op_append_big(&t);
	ok(ctab_verify(&t, true, NULL) == 0, "a wrong free count is found out and rebuilt; the table verifies");

	/* The same, with the rebuilder killed half way: the next holder
	 * walks again. */
	t.h->nfree = t.nblocks;
	ctab_stats(&t, &st);
	uint64_t repairs = st.repairs;
	ok(child_dies(&t, CTAB_STEP_WALK, op_append_big), "a holder killed half way through a rebuild");
	ok(t.h->j.state == CTAB_J_WALK, "  its journal says so");
	ok(ctab_verify(&t, true, NULL) == 0, "  the next holder walks again; the table verifies");
	ctab_stats(&t, &st);
	ok(st.repairs == repairs + 1 && t.h->j.state == 0, "  one repair, the journal idle");
	ctab_close(&t);
}

static void test_warm(void)
{
	struct ctab t;
	struct ctab_config c = config(64, 256 << 10);
	int st;

	clear_dir();
	ok(ctab_open(&t, &c, NULL) == 0, "open for a warm attach");
	put(&t, "w", &OPTS, "d", 1000, NULL);
	pid_t pid = fork();
	if (pid == 0) {
		struct ctab u;
		struct ctab_report rep;
		struct ctab_config other = config(128, 512 << 10); /* sizes differ: the segment's win */
		ctab_close(&t); /* a process of its own, like rotorctl */
		if (ctab_open(&u, &other, &rep) < 0 || rep.cold || rep.created || !rep.sizes_differ)
			_exit(1);
		struct hist_pos pos;
		if (hist_top(&u, "w", 1, 0, 1000, &pos) < 0 || pos.offset != 1)
			_exit(2);
		if (put(&u, "w", &OPTS, "d", 1000, NULL) != 2)
			_exit(3);
		ctab_close(&u);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "another process opens it warm, as it is, and appends (status %d)", st);
	ok(put(&t, "w", &OPTS, "d", 1000, NULL) == 3, "this one sees its append");
	ctab_close(&t);
}

static void test_disk_full(void)
{
	char sub[400];
	int st;
	snprintf(sub, sizeof(sub), "%s/full", dir);
	mkdir(sub, 0700);
	pid_t pid = fork();
	if (pid == 0) {
		struct rlimit rl = { .rlim_cur = 1 << 20, .rlim_max = 1 << 20 };
		struct ctab t;
		struct ctab_config c = config(64, 4 << 20);
		signal(SIGXFSZ, SIG_IGN);
		setrlimit(RLIMIT_FSIZE, &rl);
		c.dir = sub;
		if (ctab_open(&t, &c, NULL) == 0)
			_exit(1);
		_exit(errno == EFBIG || errno == ENOSPC ? 0 : 2);
	}
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	   "no room for the file (RLIMIT_FSIZE): an error from ctab_open, not a SIGBUS later (status %d)", st);
	char p[500];
	snprintf(p, sizeof(p), "%s/%s", sub, CTAB_LOCK_NAME);
	unlink(p);
	rmdir(sub);
	struct ctab t;
	struct ctab_config c = config(64, 256 << 10);
	c.dir = "/nonexistent/rotor";
	ok(ctab_open(&t, &c, NULL) == -1 && errno == ENOENT, "a missing directory is ENOENT");
	c = config(64, 256 << 10);
	c.attach_only = true;
	clear_dir();
	ok(ctab_open(&t, &c, NULL) == -1 && errno == ENOENT && access(seg_path, F_OK) < 0,
	   "attach_only without a segment: ENOENT, nothing created");
	struct ctab_report rep;
	c.attach_only = false;
	ctab_open(&t, &c, NULL);
	put(&t, "keep", &OPTS, "d", 1000, NULL);
	ctab_close(&t);
	c = config(128, 512 << 10);
	c.attach_only = true;
	int rc = ctab_open(&t, &c, &rep);
	ok(rc == 0 && rep.cold && !rep.created && rep.sizes_differ && t.nstreams == 64,
	   "attach_only with other sizes: the segment is taken as it is");
	struct hist_pos pos;
	ok(hist_top(&t, "keep", 4, 0, 1000, &pos) == 0 && pos.offset == 1, "with its streams");
	ctab_close(&t);
	uint32_t bad = 7;
	poke(seg_path, 64 + offsetof(struct ctab_hdr, version), &bad, 4);
	ok(ctab_open(&t, &c, &rep) == -1 && errno == EPROTO, "attach_only with a damaged header: EPROTO, not recreated");
	clear_dir();
	c = config(4, 256 << 10);
	ok(ctab_open(&t, &c, NULL) == -1 && errno == EINVAL, "too few streams is EINVAL");
	c = config(64, 1000);
	ok(ctab_open(&t, &c, NULL) == -1 && errno == EINVAL, "too little data is EINVAL");
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_rate(void)
{
	struct ctab t;
	struct ctab_config c = config(4096, 64 << 20);
	struct hist_pos pos;
	char data[120], names[1000][24];
	const int N = 300000;

	clear_dir();
	ok(ctab_open(&t, &c, NULL) == 0, "a table of 4096 streams, 64 MiB");
	memset(data, 'p', sizeof(data));
	struct hist_pub p = { .data = data, .data_len = 100, .time_ms = 1 };
	hist_encode(&rec, &p);
	for (int i = 0; i < 1000; i++)
		snprintf(names[i], sizeof(names[i]), "chat:room%d", i);
	int fails = 0;
	double t0 = now_s();
	for (int i = 0; i < N; i++) {
		const char *n = names[i % 1000];
		if (hist_append(&t, n, strlen(n), &OPTS, &rec, 1000, &pos) < 0)
			fails++;
	}
	double dt = now_s() - t0;
	printf("# %d appends of %zu-byte records to 1000 channels (history_size 100): %.0f/s, %.2f us each\n", N,
	       rec.len, N / dt, dt / N * 1e6);
	ok(fails == 0, "no append failed");
	struct hist_query q = { .limit = 100 };
	struct hist_result res;
	static struct got g;
	t0 = now_s();
	for (int i = 0; i < 20000; i++) {
		g.n = 0;
		hist_read(&t, names[i % 1000], strlen(names[i % 1000]), &q, 1000, collect, &g, &res);
	}
	dt = now_s() - t0;
	printf("# 20000 reads of 100 publications: %.0f/s, %.1f us each\n", 20000 / dt, dt / 20000 * 1e6);
	uint64_t nrec;
	t0 = now_s();
	ok(ctab_verify(&t, false, &nrec) == 0, "the table verifies (%llu records)", (unsigned long long)nrec);
	printf("# a walk of the whole table (ctab_verify; a cold open adds the CRCs): %.1f ms\n", (now_s() - t0) * 1e3);
	ok(child_dies(&t, CTAB_STEP_WRITTEN, op_new_stream), "a writer killed holding the lock");
	t0 = now_s();
	ok(hist_append(&t, "chat:room1", 10, &OPTS, &rec, 1000, &pos) == 0, "the next append repairs and appends");
	printf("# that append, repair included: %.1f us\n", (now_s() - t0) * 1e6);
	ctab_close(&t);
}

int main(void)
{
	if (mkdtemp(dir) == NULL)
		return 99;
	snprintf(seg_path, sizeof(seg_path), "%s/%s", dir, CTAB_SEG_NAME);
	hist_rec_init(&rec);
	test_encoding();
	test_offsets();
	test_trim_and_read();
	test_expiry();
	test_remove();
	test_versions();
	test_other_layout();
	test_table_full();
	test_data_full();
	test_reopen();
	test_damage();
	test_kills();
	test_rebuild();
	test_warm();
	test_disk_full();
	test_rate();
	hist_rec_free(&rec);
	clear_dir();
	char p[400];
	snprintf(p, sizeof(p), "%s/%s", dir, CTAB_LOCK_NAME);
	unlink(p);
	rmdir(dir);
	return tap_done();
}
