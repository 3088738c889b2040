/*
 * proto.c - Centrifugo's client protocol on the wire: decoding the commands
 * of a frame and encoding replies and pushes, in JSON and in protobuf.
 *
 * Decoding is driven by one table per request message (struct fdesc): the
 * protobuf field number, the JSON name, the kind of value and where it goes
 * in struct cmd. One walker per format reads any message through its table,
 * so the two formats cannot disagree about a field. Rules the walkers share
 * with the reference decoders (easyjson for JSON, vtprotobuf for protobuf):
 *   - unknown fields are skipped; in protobuf of every wire type, groups
 *     included; a known field with the wrong JSON type or wire type, a
 *     truncated or over-long varint, or a length past the end is refused;
 *   - a JSON null counts as absent, whatever the field;
 *   - a field given twice: the last value wins, nested messages merge, map
 *     entries accumulate (and for one key the last wins);
 *   - the command's type is the first request field present in the order
 *     connect, subscribe, unsubscribe, publish, presence, presence_stats,
 *     history, rpc, send, refresh, sub_refresh; the others are still
 *     decoded (into scratch space) so a malformed one refuses the command,
 *     as it would in the reference server.
 * Strings are spans into the frame unless a JSON escape made a copy
 * necessary; copies and ConnectRequest.subs live in the batch's arena.
 *
 * Encoding goes through one small emitter (struct enc) that writes either
 * format: messages are opened and closed, fields are given with both their
 * number and their JSON name. JSON member order is therefore the field
 * order of the .proto, which is what the reference's easyjson code writes;
 * protobuf leaves default values out and writes map entries' key and value
 * always, as vtprotobuf does. A nested protobuf message gets a one-byte
 * length placeholder that is widened (memmove) in the rare case its body
 * reaches 128 bytes.
 */
#include "config.h"
#include "proto.h"
#include "pb.h"
#include "utf8.h"
#include "util.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- the batch arena ---------------------------------------------------- */

struct arena_blk {
	struct arena_blk *next;
	size_t used, cap;
	char data[];            /* 8-aligned: the header is three words */
};

/* N bytes, 8-aligned, that live until proto_batch_free. */
static void *arena_alloc(struct cmd_batch *b, size_t n)
{
	struct arena_blk *a = b->arena;
	void *p;

	n = (n + 7) & ~(size_t)7;
	if (a == NULL || a->cap - a->used < n) {
		size_t cap = n > 4000 ? n : 4000;
		struct arena_blk *nb = xmalloc(sizeof(*nb) + cap);
		nb->next = a;
		nb->used = 0;
		nb->cap = cap;
		b->arena = a = nb;
	}
	p = a->data + a->used;
	a->used += n;
	return p;
}

void proto_batch_free(struct cmd_batch *b)
{
	struct arena_blk *a = b->arena, *next;

	for (; a; a = next) {
		next = a->next;
		free(a);
	}
	free(b->v);
	b->v = NULL;
	b->n = 0;
	b->arena = NULL;
}

/* ---- request tables ----------------------------------------------------- */

enum fkind {
	FK_STR = 1,     /* string: a span, unescaped for JSON */
	FK_BYTES,       /* bytes: raw JSON value / raw protobuf bytes */
	FK_BOOL,
	FK_U64,
	FK_I64,
	FK_I32,
	FK_MSG,         /* nested message: OFF is its `present` flag; SUB are its
			 * fields, stored relative to the same base */
	FK_SUBS,        /* ConnectRequest.subs: the base is a struct connect_req */
	FK_HDRS,        /* ConnectRequest.headers: the base is a struct connect_req */
};

struct fdesc {
	uint8_t num;            /* protobuf field number */
	uint8_t kind;           /* enum fkind */
	uint8_t nlen;
	uint8_t nsub;
	uint16_t off;           /* where the value goes, from the request's start */
	const char *name;       /* JSON name */
	const struct fdesc *sub;
};

#define RQ(m) __typeof__(((struct cmd *)0)->m)
#define FLD(n, k, T, f, nm) { .num = n, .kind = k, .nlen = sizeof(nm) - 1, .off = offsetof(T, f), .name = nm }
#define MSG(n, T, flag, nm, s, ns) { .num = n, .kind = FK_MSG, .nlen = sizeof(nm) - 1, .nsub = ns, \
	.off = offsetof(T, flag), .name = nm, .sub = s }

static const struct fdesc sub_fields[] = {
	FLD(1, FK_STR, struct sub_req, channel, "channel"),
	FLD(2, FK_STR, struct sub_req, token, "token"),
	FLD(3, FK_BOOL, struct sub_req, recover, "recover"),
	FLD(6, FK_STR, struct sub_req, epoch, "epoch"),
	FLD(7, FK_U64, struct sub_req, offset, "offset"),
	FLD(8, FK_BYTES, struct sub_req, data, "data"),
	FLD(9, FK_BOOL, struct sub_req, positioned, "positioned"),
	FLD(10, FK_BOOL, struct sub_req, recoverable, "recoverable"),
	FLD(11, FK_BOOL, struct sub_req, join_leave, "join_leave"),
	FLD(12, FK_STR, struct sub_req, delta, "delta"),
	MSG(13, struct sub_req, has_tf, "tf", NULL, 0),
	FLD(14, FK_I64, struct sub_req, flag, "flag"),
	FLD(15, FK_I32, struct sub_req, type, "type"),
};

static const struct fdesc connect_fields[] = {
	FLD(1, FK_STR, struct connect_req, token, "token"),
	FLD(2, FK_BYTES, struct connect_req, data, "data"),
	{ .num = 3, .kind = FK_SUBS, .nlen = 4, .name = "subs",
	  .sub = sub_fields, .nsub = ROTOR_ARRAY_LEN(sub_fields) },
	FLD(4, FK_STR, struct connect_req, name, "name"),
	FLD(5, FK_STR, struct connect_req, version, "version"),
	{ .num = 6, .kind = FK_HDRS, .nlen = 7, .name = "headers" },
};

/* unsubscribe, presence and presence_stats share one anonymous struct. */
static const struct fdesc channel_fields[] = {
	FLD(1, FK_STR, RQ(unsubscribe), channel, "channel"),
};

static const struct fdesc publish_fields[] = {
	FLD(1, FK_STR, RQ(publish), channel, "channel"),
	FLD(2, FK_BYTES, RQ(publish), data, "data"),
	FLD(3, FK_I32, RQ(publish), type, "type"),
};

static const struct fdesc since_fields[] = {
	FLD(1, FK_U64, RQ(history), since_offset, "offset"),
	FLD(2, FK_STR, RQ(history), since_epoch, "epoch"),
};

static const struct fdesc history_fields[] = {
	FLD(1, FK_STR, RQ(history), channel, "channel"),
	FLD(7, FK_I32, RQ(history), limit, "limit"),
	MSG(8, RQ(history), has_since, "since", since_fields, ROTOR_ARRAY_LEN(since_fields)),
	FLD(9, FK_BOOL, RQ(history), reverse, "reverse"),
};

static const struct fdesc rpc_fields[] = {
	FLD(1, FK_BYTES, RQ(rpc), data, "data"),
	FLD(2, FK_STR, RQ(rpc), method, "method"),
};

static const struct fdesc send_fields[] = {
	FLD(1, FK_BYTES, RQ(send), data, "data"),
};

static const struct fdesc refresh_fields[] = {
	FLD(1, FK_STR, RQ(refresh), token, "token"),
};

static const struct fdesc sub_refresh_fields[] = {
	FLD(1, FK_STR, RQ(sub_refresh), channel, "channel"),
	FLD(2, FK_STR, RQ(sub_refresh), token, "token"),
	FLD(3, FK_I32, RQ(sub_refresh), type, "type"),
};

/* The request fields of Command, indexed by the type they give. */
static const struct reqdesc {
	const char *name;
	uint8_t nlen, num, nf;
	const struct fdesc *f;
} reqs[] = {
#define REQ(t, nm, n, tbl) [t] = { nm, sizeof(nm) - 1, n, ROTOR_ARRAY_LEN(tbl), tbl }
	REQ(CMD_CONNECT, "connect", 4, connect_fields),
	REQ(CMD_SUBSCRIBE, "subscribe", 5, sub_fields),
	REQ(CMD_UNSUBSCRIBE, "unsubscribe", 6, channel_fields),
	REQ(CMD_PUBLISH, "publish", 7, publish_fields),
	REQ(CMD_PRESENCE, "presence", 8, channel_fields),
	REQ(CMD_PRESENCE_STATS, "presence_stats", 9, channel_fields),
	REQ(CMD_HISTORY, "history", 10, history_fields),
	REQ(CMD_RPC, "rpc", 13, rpc_fields),
	REQ(CMD_SEND, "send", 12, send_fields),
	REQ(CMD_REFRESH, "refresh", 14, refresh_fields),
	REQ(CMD_SUB_REFRESH, "sub_refresh", 15, sub_refresh_fields),
#undef REQ
};

/* Command.ping (11 / "ping"): a PingRequest, which the server ignores. */
#define CMD_PING_NUM 11

#define AT(base, off, T) ((T *)(void *)((char *)(base) + (off)))

static bool span_is(struct pstr k, const char *name, size_t nlen)
{
	return k.n == nlen && memcmp(k.p, name, nlen) == 0;
}

static const struct fdesc *find_name(const struct fdesc *f, size_t nf, struct pstr k)
{
	for (size_t i = 0; i < nf; i++)
		if (span_is(k, f[i].name, f[i].nlen))
			return &f[i];
	return NULL;
}

static const struct fdesc *find_num(const struct fdesc *f, size_t nf, uint64_t num)
{
	for (size_t i = 0; i < nf; i++)
		if (f[i].num == num)
			return &f[i];
	return NULL;
}

/* The request type named K, or CMD_EMPTY. */
static enum cmd_type req_by_name(struct pstr k)
{
	for (int t = CMD_CONNECT; t <= CMD_SUB_REFRESH; t++)
		if (span_is(k, reqs[t].name, reqs[t].nlen))
			return (enum cmd_type)t;
	return CMD_EMPTY;
}

static enum cmd_type req_by_num(uint64_t num)
{
	for (int t = CMD_CONNECT; t <= CMD_SUB_REFRESH; t++)
		if (reqs[t].num == num)
			return (enum cmd_type)t;
	return CMD_EMPTY;
}

/* Appends E to R->subs. The array's capacity is implicit: 4, then the next
 * power of two, so a full array is one whose length is 0 or such a power. */
static void subs_push(struct cmd_batch *b, struct connect_req *r, const struct connect_sub *e)
{
	size_t n = r->nsubs;

	if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
		struct connect_sub *v = arena_alloc(b, (n < 4 ? 4 : n * 2) * sizeof(*v));
		if (n)
			memcpy(v, r->subs, n * sizeof(*v));
		r->subs = v;
	}
	r->subs[r->nsubs++] = *e;
}

/* Appends header NAME: VALUE to R->hdrs (capacity as subs_push). */
static void hdrs_push(struct cmd_batch *b, struct connect_req *r, struct pstr name, struct pstr value)
{
	size_t n = r->nhdrs;

	if (n == 0 || (n >= 4 && (n & (n - 1)) == 0)) {
		struct connect_hdr *v = arena_alloc(b, (n < 4 ? 4 : n * 2) * sizeof(*v));
		if (n)
			memcpy(v, r->hdrs, n * sizeof(*v));
		r->hdrs = v;
	}
	r->hdrs[r->nhdrs++] = (struct connect_hdr){ name, value };
}

static int cmp_sub(const void *a, const void *b)
{
	const struct connect_sub *x = *(const struct connect_sub *const *)a;
	const struct connect_sub *y = *(const struct connect_sub *const *)b;
	size_t n = x->channel.n < y->channel.n ? x->channel.n : y->channel.n;
	int c = n ? memcmp(x->channel.p, y->channel.p, n) : 0;

	if (c == 0 && x->channel.n != y->channel.n)
		c = x->channel.n < y->channel.n ? -1 : 1;
	if (c == 0)     /* keep the order they came in */
		c = x < y ? -1 : x > y;
	return c;
}

/* Map semantics for ConnectRequest.subs: one entry per channel, the last one
 * sent wins. The result is sorted by channel. */
static void subs_dedupe(struct cmd_batch *b, struct connect_req *r)
{
	const struct connect_sub **ptr;
	struct connect_sub *v;
	size_t n = 0;

	if (r->nsubs < 2)
		return;
	ptr = xmalloc(r->nsubs * sizeof(*ptr));
	for (size_t i = 0; i < r->nsubs; i++)
		ptr[i] = &r->subs[i];
	qsort(ptr, r->nsubs, sizeof(*ptr), cmp_sub);
	v = arena_alloc(b, r->nsubs * sizeof(*v));
	for (size_t i = 0; i < r->nsubs; i++) {
		if (i + 1 < r->nsubs && ptr[i]->channel.n == ptr[i + 1]->channel.n &&
		    (ptr[i]->channel.n == 0 ||
		     memcmp(ptr[i]->channel.p, ptr[i + 1]->channel.p, ptr[i]->channel.n) == 0))
			continue;
		v[n++] = *ptr[i];
	}
	free(ptr);
	r->subs = v;
	r->nsubs = n;
}

/* ---- JSON decoding ------------------------------------------------------ */

/* The key of member token K: a span into the text, or unescaped into BUF.
 * A key too long for BUF cannot be a field name: out->p is then NULL. */
static void jd_key(const struct js_doc *d, uint32_t k, char *buf, size_t cap, struct pstr *out)
{
	int64_t n;

	out->p = js_raw(d, k) + 1;
	out->n = js_rawlen(d, k) - 2;
	if (!d->t[k].escaped)
		return;
	n = js_str(d, k, buf, cap);
	out->p = n < 0 ? NULL : buf;
	out->n = n < 0 ? 0 : (size_t)n;
}

/* String token I as a span, unescaped into the arena if need be. */
static int jd_string(struct cmd_batch *b, const struct js_doc *d, uint32_t i, struct pstr *out)
{
	const struct js_tok *t = &d->t[i];
	char *buf;

	if (t->type != JS_STRING)
		return RT_INVAL;
	if (!t->escaped) {
		out->p = d->s + t->start + 1;
		out->n = t->len - 2;
		return RT_OK;
	}
	buf = arena_alloc(b, t->len - 1);
	out->n = (size_t)js_str(d, i, buf, t->len - 1);
	out->p = buf;
	return RT_OK;
}

static int jd_fields(struct cmd_batch *b, const struct js_doc *d, uint32_t obj,
		     const struct fdesc *f, size_t nf, void *base);

static int jd_subs(struct cmd_batch *b, const struct js_doc *d, uint32_t obj, struct connect_req *r)
{
	uint32_t it = 0, k, v;

	if (js_type(d, obj) != JS_OBJECT)
		return RT_INVAL;
	while (js_next_member(d, obj, &it, &k, &v)) {
		struct connect_sub e = { 0 };
		if (jd_string(b, d, k, &e.channel) != RT_OK)
			return RT_INVAL;
		if (js_type(d, v) != JS_NULL &&
		    jd_fields(b, d, v, sub_fields, ROTOR_ARRAY_LEN(sub_fields), &e.req) != RT_OK)
			return RT_INVAL;
		subs_push(b, r, &e);
	}
	return RT_OK;
}

/* ConnectRequest.headers: an object of strings (map<string,string>). */
static int jd_hdrs(struct cmd_batch *b, const struct js_doc *d, uint32_t obj, struct connect_req *r)
{
	uint32_t it = 0, k, v;

	if (js_type(d, obj) != JS_OBJECT)
		return RT_INVAL;
	while (js_next_member(d, obj, &it, &k, &v)) {
		struct pstr name, value;
		if (jd_string(b, d, k, &name) != RT_OK || jd_string(b, d, v, &value) != RT_OK)
			return RT_INVAL;
		hdrs_push(b, r, name, value);
	}
	return RT_OK;
}

static int jd_field(struct cmd_batch *b, const struct js_doc *d, uint32_t v,
		    const struct fdesc *fd, void *base)
{
	int64_t i;

	switch (fd->kind) {
	case FK_STR:
		return jd_string(b, d, v, AT(base, fd->off, struct pstr));
	case FK_BYTES:
		AT(base, fd->off, struct pstr)->p = js_raw(d, v);
		AT(base, fd->off, struct pstr)->n = js_rawlen(d, v);
		return RT_OK;
	case FK_BOOL:
		return js_bool(d, v, AT(base, fd->off, bool));
	case FK_U64:
		return js_uint64(d, v, AT(base, fd->off, uint64_t));
	case FK_I64:
		return js_int64(d, v, AT(base, fd->off, int64_t));
	case FK_I32:
		if (js_int64(d, v, &i) != RT_OK || i < INT32_MIN || i > INT32_MAX)
			return RT_INVAL;
		*AT(base, fd->off, int32_t) = (int32_t)i;
		return RT_OK;
	case FK_MSG:
		*AT(base, fd->off, bool) = true;
		return jd_fields(b, d, v, fd->sub, fd->nsub, base);
	case FK_SUBS:
		return jd_subs(b, d, v, base);
	case FK_HDRS:
		return jd_hdrs(b, d, v, base);
	}
	return RT_INVAL;
}

/* Decodes object OBJ through table F into BASE. */
static int jd_fields(struct cmd_batch *b, const struct js_doc *d, uint32_t obj,
		     const struct fdesc *f, size_t nf, void *base)
{
	uint32_t it = 0, k, v;
	char buf[32];

	if (js_type(d, obj) != JS_OBJECT)
		return RT_INVAL;
	while (js_next_member(d, obj, &it, &k, &v)) {
		struct pstr key;
		const struct fdesc *fd;

		if (js_type(d, v) == JS_NULL)
			continue;
		jd_key(d, k, buf, sizeof(buf), &key);
		if ((fd = find_name(f, nf, key)) != NULL && jd_field(b, d, v, fd, base) != RT_OK)
			return RT_INVAL;
	}
	return RT_OK;
}

/* One JSON command, already scanned into D. */
static int jd_command(struct cmd_batch *b, const struct js_doc *d, struct cmd *c)
{
	uint32_t it = 0, k, v;
	char buf[32];
	enum cmd_type best = CMD_EMPTY;

	if (js_type(d, 0) != JS_OBJECT)
		return RT_INVAL;
	while (js_next_member(d, 0, &it, &k, &v)) {
		struct pstr key;
		enum cmd_type t;
		uint64_t id;

		if (js_type(d, v) == JS_NULL)
			continue;
		jd_key(d, k, buf, sizeof(buf), &key);
		if (span_is(key, "id", 2)) {
			if (js_uint64(d, v, &id) != RT_OK || id > UINT32_MAX)
				return RT_INVAL;
			c->id = (uint32_t)id;
		} else if ((t = req_by_name(key)) != CMD_EMPTY) {
			if (best == CMD_EMPTY || t < best)
				best = t;
		} else if (span_is(key, "ping", 4) && js_type(d, v) != JS_OBJECT) {
			return RT_INVAL;
		}
	}
	c->type = best;
	if (best == CMD_EMPTY)
		return RT_OK;
	it = 0;
	while (js_next_member(d, 0, &it, &k, &v)) {
		struct pstr key;
		enum cmd_type t;
		struct cmd scratch, *into = c;

		if (js_type(d, v) == JS_NULL)
			continue;
		jd_key(d, k, buf, sizeof(buf), &key);
		if ((t = req_by_name(key)) == CMD_EMPTY)
			continue;
		if (t != best) {
			memset(&scratch, 0, sizeof(scratch));
			into = &scratch;
		}
		if (jd_fields(b, d, v, reqs[t].f, reqs[t].nf, &into->connect) != RT_OK)
			return RT_INVAL;
	}
	if (best == CMD_CONNECT)
		subs_dedupe(b, &c->connect);
	return RT_OK;
}

/* ---- protobuf decoding -------------------------------------------------- */

static int pd_fields(struct cmd_batch *b, struct pstr msg, const struct fdesc *f, size_t nf, void *base);

/* A protobuf map entry MSG, {key = 1; value = 2} with both length-delimited:
 * their spans into KV[0] and KV[1] (left as they were when absent). */
static int pd_map_entry(struct pstr msg, struct pstr kv[2])
{
	struct pbr rd = { (const uint8_t *)msg.p, (const uint8_t *)msg.p + msg.n };
	uint64_t num;
	unsigned wt;
	struct pstr s;

	while (rd.p < rd.end) {
		if (pbr_tag(&rd, &num, &wt) != RT_OK)
			return RT_INVAL;
		if (num != 1 && num != 2) {
			if (pbr_skip(&rd, wt) != RT_OK)
				return RT_INVAL;
			continue;
		}
		if (wt != 2 || pbr_span(&rd, &s) != RT_OK)
			return RT_INVAL;
		kv[num - 1] = s;
	}
	return RT_OK;
}

/* One ConnectRequest.subs entry: channel => SubscribeRequest. */
static int pd_sub_entry(struct cmd_batch *b, struct pstr msg, struct connect_req *r)
{
	struct connect_sub e = { 0 };
	struct pstr kv[2] = { { NULL, 0 }, { NULL, 0 } };

	if (pd_map_entry(msg, kv) != RT_OK)
		return RT_INVAL;
	e.channel = kv[0];
	if (kv[1].p != NULL && pd_fields(b, kv[1], sub_fields, ROTOR_ARRAY_LEN(sub_fields), &e.req) != RT_OK)
		return RT_INVAL;
	subs_push(b, r, &e);
	return RT_OK;
}

/* One ConnectRequest.headers entry: name => value, both strings. */
static int pd_hdr_entry(struct cmd_batch *b, struct pstr msg, struct connect_req *r)
{
	struct pstr kv[2] = { { "", 0 }, { "", 0 } };

	if (pd_map_entry(msg, kv) != RT_OK)
		return RT_INVAL;
	hdrs_push(b, r, kv[0], kv[1]);
	return RT_OK;
}

/* Decodes message MSG through table F into BASE. */
static int pd_fields(struct cmd_batch *b, struct pstr msg, const struct fdesc *f, size_t nf, void *base)
{
	struct pbr r = { (const uint8_t *)msg.p, (const uint8_t *)msg.p + msg.n };
	uint64_t num, v;
	unsigned wt;
	struct pstr s;

	while (r.p < r.end) {
		const struct fdesc *fd;

		if (pbr_tag(&r, &num, &wt) != RT_OK)
			return RT_INVAL;
		if ((fd = find_num(f, nf, num)) == NULL) {
			if (pbr_skip(&r, wt) != RT_OK)
				return RT_INVAL;
			continue;
		}
		switch (fd->kind) {
		case FK_BOOL: case FK_U64: case FK_I64: case FK_I32:
			if (wt != 0 || pbr_varint(&r, &v) != RT_OK)
				return RT_INVAL;
			if (fd->kind == FK_BOOL)
				*AT(base, fd->off, bool) = v != 0;
			else if (fd->kind == FK_U64)
				*AT(base, fd->off, uint64_t) = v;
			else if (fd->kind == FK_I64)
				*AT(base, fd->off, int64_t) = (int64_t)v;
			else
				*AT(base, fd->off, int32_t) = (int32_t)(uint32_t)v;
			break;
		default:
			if (wt != 2 || pbr_span(&r, &s) != RT_OK)
				return RT_INVAL;
			if (fd->kind == FK_STR || fd->kind == FK_BYTES) {
				*AT(base, fd->off, struct pstr) = s;
			} else if (fd->kind == FK_MSG) {
				*AT(base, fd->off, bool) = true;
				if (pd_fields(b, s, fd->sub, fd->nsub, base) != RT_OK)
					return RT_INVAL;
			} else if (fd->kind == FK_HDRS) {
				if (pd_hdr_entry(b, s, base) != RT_OK)
					return RT_INVAL;
			} else if (pd_sub_entry(b, s, base) != RT_OK) {
				return RT_INVAL;
			}
		}
	}
	return RT_OK;
}

/* One protobuf Command (without its length prefix). */
static int pd_command(struct cmd_batch *b, struct pstr msg, struct cmd *c)
{
	struct pbr r = { (const uint8_t *)msg.p, (const uint8_t *)msg.p + msg.n };
	enum cmd_type best = CMD_EMPTY, t;
	uint64_t num, v;
	unsigned wt;
	struct pstr s;

	while (r.p < r.end) {
		if (pbr_tag(&r, &num, &wt) != RT_OK)
			return RT_INVAL;
		if (num == 1) {
			if (wt != 0 || pbr_varint(&r, &v) != RT_OK)
				return RT_INVAL;
			c->id = (uint32_t)v;
		} else if (num >= 4 && num <= 15) {
			if (wt != 2 || pbr_span(&r, &s) != RT_OK)
				return RT_INVAL;
			if (num == CMD_PING_NUM) {
				if (pd_fields(b, s, NULL, 0, NULL) != RT_OK)
					return RT_INVAL;
			} else if ((t = req_by_num(num)) != CMD_EMPTY && (best == CMD_EMPTY || t < best)) {
				best = t;
			}
		} else if (pbr_skip(&r, wt) != RT_OK) {
			return RT_INVAL;
		}
	}
	c->type = best;
	if (best == CMD_EMPTY)
		return RT_OK;
	r.p = (const uint8_t *)msg.p;
	while (r.p < r.end) {
		struct cmd scratch, *into = c;

		pbr_tag(&r, &num, &wt);         /* all checked by the first pass */
		if (num < 4 || num > 15 || num == CMD_PING_NUM) {
			pbr_skip(&r, wt);
			continue;
		}
		pbr_span(&r, &s);
		t = req_by_num(num);
		if (t != best) {
			memset(&scratch, 0, sizeof(scratch));
			into = &scratch;
		}
		if (pd_fields(b, s, reqs[t].f, reqs[t].nf, &into->connect) != RT_OK)
			return RT_INVAL;
	}
	if (best == CMD_CONNECT)
		subs_dedupe(b, &c->connect);
	return RT_OK;
}

/* ---- frames ------------------------------------------------------------- */

/* A new zeroed command at the end of B, or NULL when B already has MAX. */
static struct cmd *batch_add(struct cmd_batch *b, size_t *cap, size_t max)
{
	if (max && b->n >= max)
		return NULL;
	if (b->n == *cap) {
		*cap = *cap ? *cap * 2 : 4;
		b->v = xrealloc(b->v, *cap * sizeof(*b->v));
	}
	memset(&b->v[b->n], 0, sizeof(b->v[0]));
	return &b->v[b->n++];
}

static bool blank(const char *p, const char *end)
{
	for (; p < end; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			return false;
	return true;
}

/* Whether [P, END) is the JSON literal null, whitespace around it allowed. */
static bool is_null(const char *p, const char *end)
{
	while (p < end && blank(p, p + 1))
		p++;
	while (end > p && blank(end - 1, end))
		end--;
	return end - p == 4 && memcmp(p, "null", 4) == 0;
}

/* The token array JSON lines are scanned into, kept between frames (a
 * worker decodes one frame at a time) unless a frame made it large. */
static __thread struct js_doc line_doc;
#define LINE_DOC_KEEP 4096

/*
 * MAX == 0 means no limit on the number of commands. B is overwritten (it
 * must not hold a batch that was not freed).
 */
int proto_decode(enum proto_fmt f, const char *frame, size_t len, size_t max, struct cmd_batch *b)
{
	const char *p = frame, *end = frame + len;
	size_t cap = 0;
	int rc = RT_OK;
	struct cmd *c;

	b->v = NULL;
	b->n = 0;
	b->arena = NULL;
	if (f == PROTO_JSON) {
		line_doc.depth_limit = JS_DEPTH_MAX;
		while (p < end && rc == RT_OK) {
			const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end;
			if (!blank(p, le)) {
				if ((c = batch_add(b, &cap, max)) == NULL ||
				    js_scan(&line_doc, p, (size_t)(le - p), 0) != RT_OK ||
				    jd_command(b, &line_doc, c) != RT_OK)
					rc = RT_INVAL;
			}
			p = nl ? nl + 1 : end;
		}
		if (line_doc.cap > LINE_DOC_KEEP)
			js_free(&line_doc);
	} else {
		struct pbr r = { (const uint8_t *)p, (const uint8_t *)end };
		struct pstr msg;
		while (r.p < r.end && rc == RT_OK) {
			if (pbr_span(&r, &msg) != RT_OK || (c = batch_add(b, &cap, max)) == NULL ||
			    pd_command(b, msg, c) != RT_OK)
				rc = RT_INVAL;
		}
	}
	if (rc == RT_OK && b->n == 0)
		rc = RT_INVAL;
	return rc;
}

/* ---- bare requests -------------------------------------------------------- */

/* The table of EmulationRequest; `data` is a JSON string in JSON (the
 * newline-joined commands), bytes in protobuf. */
static const struct fdesc emu_fields[] = {
	FLD(1, FK_STR, struct emu_req, node, "node"),
	FLD(2, FK_STR, struct emu_req, session, "session"),
	FLD(3, FK_STR, struct emu_req, data, "data"),
};

/* Decodes one bare message MSG of F through table T into BASE; B holds
 * what had to be unescaped. */
static int decode_bare(enum proto_fmt f, const char *msg, size_t n, const struct fdesc *t, size_t nt,
		       void *base, struct cmd_batch *b)
{
	int rc;

	if (f == PROTO_PB)
		return pd_fields(b, (struct pstr){ msg, n }, t, nt, base);
	line_doc.depth_limit = JS_DEPTH_MAX;
	rc = js_scan(&line_doc, msg, n, 0) == RT_OK ? jd_fields(b, &line_doc, 0, t, nt, base) : RT_INVAL;
	if (line_doc.cap > LINE_DOC_KEEP)
		js_free(&line_doc);
	return rc;
}

int proto_decode_connect(enum proto_fmt f, const char *msg, size_t n, struct cmd_batch *b)
{
	size_t cap = 0;
	struct cmd *c;

	b->v = NULL;
	b->n = 0;
	b->arena = NULL;
	c = batch_add(b, &cap, 1);
	c->type = CMD_CONNECT;
	if (n == 0 || (f == PROTO_JSON && (blank(msg, msg + n) || is_null(msg, msg + n))))
		return RT_OK;
	if (decode_bare(f, msg, n, connect_fields, ROTOR_ARRAY_LEN(connect_fields), &c->connect, b) != RT_OK)
		return RT_INVAL;
	subs_dedupe(b, &c->connect);
	return RT_OK;
}

int proto_decode_emulation(enum proto_fmt f, const char *msg, size_t n, struct emu_req *r, struct cmd_batch *b)
{
	memset(r, 0, sizeof(*r));
	b->v = NULL;
	b->n = 0;
	b->arena = NULL;
	return decode_bare(f, msg, n, emu_fields, ROTOR_ARRAY_LEN(emu_fields), r, b);
}

/* ---- the emitter -------------------------------------------------------- */

#define ENC_DEPTH 12

struct enc {
	struct jw *w;
	bool json;
	int err;                /* RT_INVAL once a payload could not be written */
	size_t mark;            /* w->len before this message: restored on error */
	int depth;
	struct {
		size_t pos, pos2;   /* protobuf: where the bodies whose lengths are
				     * pending start (0: none) */
		bool first;         /* JSON: no member written yet */
		char close;         /* JSON: the closing bracket */
	} lv[ENC_DEPTH];
};

static void enc_init(struct enc *e, struct jw *w, enum proto_fmt f)
{
	e->w = w;
	e->json = f == PROTO_JSON;
	e->err = RT_OK;
	e->mark = w->len;
	e->depth = 0;
}

static void enc_push(struct enc *e, size_t pos, size_t pos2, char close)
{
	assert(e->depth < ENC_DEPTH);
	e->lv[e->depth].pos = pos;
	e->lv[e->depth].pos2 = pos2;
	e->lv[e->depth].first = true;
	e->lv[e->depth].close = close;
	e->depth++;
}

/* JSON: the separator before a member or element, and the member's key when
 * NAME is given. */
static void jkey(struct enc *e, const char *name)
{
	struct jw *w = e->w;

	if (e->depth > 0) {
		if (!e->lv[e->depth - 1].first)
			jw_raw(w, ",", 1);
		e->lv[e->depth - 1].first = false;
	}
	if (name) {
		size_t n = strlen(name);
		jw_reserve(w, n + 3);
		w->buf[w->len++] = '"';
		memcpy(w->buf + w->len, name, n);
		w->len += n;
		w->buf[w->len++] = '"';
		w->buf[w->len++] = ':';
	}
}

/* Opens a message: field NUM / member NAME of the current one; NUM 0 and
 * NAME NULL for the top-level message (its protobuf length prefix) or, with
 * NUM set, for an element of a repeated field. */
static void enc_open(struct enc *e, unsigned num, const char *name)
{
	if (e->json) {
		jkey(e, name);
		jw_raw(e->w, "{", 1);
		enc_push(e, 0, 0, '}');
	} else {
		if (num)
			pb_tag(e->w, num, 2);
		enc_push(e, pb_hold(e->w), 0, 0);
	}
}

/* Closes whatever was opened last: message, array, map or map entry. */
static void enc_close(struct enc *e)
{
	assert(e->depth > 0);
	e->depth--;
	if (e->json) {
		jw_raw(e->w, &e->lv[e->depth].close, 1);
	} else {
		if (e->lv[e->depth].pos)
			pb_fix(e->w, e->lv[e->depth].pos);
		if (e->lv[e->depth].pos2)
			pb_fix(e->w, e->lv[e->depth].pos2);
	}
}

/* A repeated message field: JSON array; in protobuf each element is its own
 * field (enc_open(e, num, NULL)). */
static void enc_array(struct enc *e, const char *name)
{
	if (e->json) {
		jkey(e, name);
		jw_raw(e->w, "[", 1);
	}
	enc_push(e, 0, 0, ']');
}

/* A map field: JSON object; in protobuf a repeated entry message. */
static void enc_map(struct enc *e, const char *name)
{
	if (e->json) {
		jkey(e, name);
		jw_raw(e->w, "{", 1);
	}
	enc_push(e, 0, 0, '}');
}

/* Opens the message value of map entry KEY (map field NUM). */
static void enc_entry(struct enc *e, unsigned num, struct pstr key)
{
	if (e->json) {
		jkey(e, NULL);
		jw_str(e->w, key.p, key.n);
		jw_raw(e->w, ":{", 2);
		enc_push(e, 0, 0, '}');
	} else {
		size_t entry;
		pb_tag(e->w, num, 2);
		entry = pb_hold(e->w);
		pb_lenfield(e->w, 1, key.p, key.n);
		pb_tag(e->w, 2, 2);
		enc_push(e, pb_hold(e->w), entry, 0);
	}
}

/* A map<string,string> entry. */
static void enc_entry_str(struct enc *e, unsigned num, struct pstr key, struct pstr val)
{
	if (e->json) {
		jkey(e, NULL);
		jw_str(e->w, key.p, key.n);
		jw_raw(e->w, ":", 1);
		jw_str(e->w, val.p, val.n);
	} else {
		size_t entry;
		pb_tag(e->w, num, 2);
		entry = pb_hold(e->w);
		pb_lenfield(e->w, 1, key.p, key.n);
		pb_lenfield(e->w, 2, val.p, val.n);
		pb_fix(e->w, entry);
	}
}

/* A string field; ALWAYS: written in JSON even when empty. */
static void enc_str(struct enc *e, unsigned num, const char *name, struct pstr s, bool always)
{
	if (e->json) {
		if (s.n == 0 && !always)
			return;
		jkey(e, name);
		jw_str(e->w, s.p, s.n);
	} else if (s.n) {
		pb_lenfield(e->w, num, s.p, s.n);
	}
}

/* A bytes field: raw JSON in JSON (refused unless valid), bytes in
 * protobuf. */
static void enc_bytes(struct enc *e, unsigned num, const char *name, struct pstr s)
{
	if (s.n == 0)
		return;
	if (e->json) {
		if (!js_valid(s.p, s.n)) {
			e->err = RT_INVAL;
			return;
		}
		jkey(e, name);
		jw_json(e->w, s.p, s.n);
	} else {
		pb_lenfield(e->w, num, s.p, s.n);
	}
}

/* Publication.data to a subscriber that negotiated delta: in JSON a JSON
 * string of the bytes (client-protocol.md 6.6), refused unless they are
 * UTF-8 and, when they are a whole payload (not DELTA), valid JSON for the
 * client to parse; in protobuf the bytes. */
static void enc_bytes_str(struct enc *e, unsigned num, const char *name, struct pstr s, bool delta)
{
	if (s.n == 0)
		return;
	if (e->json) {
		if (delta ? !utf8_valid((const unsigned char *)s.p, s.n) : !js_valid(s.p, s.n)) {
			e->err = RT_INVAL;
			return;
		}
		jkey(e, name);
		jw_str(e->w, s.p, s.n);
	} else {
		pb_lenfield(e->w, num, s.p, s.n);
	}
}

static void enc_u64(struct enc *e, unsigned num, const char *name, uint64_t v, bool always)
{
	if (e->json) {
		if (v == 0 && !always)
			return;
		jkey(e, name);
		jw_u64(e->w, v);
	} else if (v) {
		pb_tag(e->w, num, 0);
		pb_varint(e->w, v);
	}
}

static void enc_i64(struct enc *e, unsigned num, const char *name, int64_t v)
{
	if (v == 0)
		return;
	if (e->json) {
		jkey(e, name);
		jw_i64(e->w, v);
	} else {
		pb_tag(e->w, num, 0);
		pb_varint(e->w, (uint64_t)v);
	}
}

static void enc_bool(struct enc *e, unsigned num, const char *name, bool v)
{
	if (!v)
		return;
	if (e->json) {
		jkey(e, name);
		jw_raw(e->w, "true", 4);
	} else {
		pb_tag(e->w, num, 0);
		jw_raw(e->w, "\x01", 1);
	}
}

/* Ends a message: RT_OK, or RT_INVAL with the output rolled back. */
static int enc_done(struct enc *e)
{
	assert(e->depth == 0);
	if (e->err != RT_OK)
		e->w->len = e->mark;
	return e->err;
}

/* ---- messages ----------------------------------------------------------- */

static void client_info_body(struct enc *e, const struct client_info *ci)
{
	enc_str(e, 1, "user", ci->user, true);
	enc_str(e, 2, "client", ci->client, true);
	enc_bytes(e, 3, "conn_info", ci->conn_info);
	enc_bytes(e, 4, "chan_info", ci->chan_info);
}

static void enc_client_info(struct enc *e, unsigned num, const char *name, const struct client_info *ci)
{
	enc_open(e, num, name);
	client_info_body(e, ci);
	enc_close(e);
}

static void publication_body(struct enc *e, const struct publication *p)
{
	if (p->data_string)
		enc_bytes_str(e, 4, "data", p->data, p->delta);
	else
		enc_bytes(e, 4, "data", p->data);
	if (p->info)
		enc_client_info(e, 5, "info", p->info);
	enc_u64(e, 6, "offset", p->offset, false);
	if (p->ntags) {
		enc_map(e, "tags");
		for (size_t i = 0; i < p->ntags; i++)
			enc_entry_str(e, 7, p->tags[i].key, p->tags[i].value);
		enc_close(e);
	}
	enc_bool(e, 8, "delta", p->delta);
	enc_i64(e, 9, "time", p->time);
}

/* Repeated Publication field NUM / NAME; ALWAYS: "[]" in JSON when empty. */
static void enc_publications(struct enc *e, unsigned num, const char *name,
			     const struct publication *v, size_t n, bool always)
{
	if (n == 0 && !always)
		return;
	enc_array(e, name);
	for (size_t i = 0; i < n; i++) {
		enc_open(e, num, NULL);
		publication_body(e, &v[i]);
		enc_close(e);
	}
	enc_close(e);
}

static void sub_result_body(struct enc *e, const struct sub_result *r)
{
	enc_bool(e, 1, "expires", r->expires);
	enc_u64(e, 2, "ttl", r->ttl, false);
	enc_bool(e, 3, "recoverable", r->recoverable);
	enc_str(e, 6, "epoch", r->epoch, false);
	enc_publications(e, 7, "publications", r->pubs, r->npubs, false);
	enc_bool(e, 8, "recovered", r->recovered);
	enc_u64(e, 9, "offset", r->offset, false);
	enc_bool(e, 10, "positioned", r->positioned);
	enc_bytes(e, 11, "data", r->data);
	enc_bool(e, 12, "was_recovering", r->was_recovering);
	enc_bool(e, 13, "delta", r->delta);
}

/* Reply's result fields, by the command they answer. */
static const struct { unsigned num; const char *name; } results[] = {
	[CMD_CONNECT] = { 5, "connect" },
	[CMD_SUBSCRIBE] = { 6, "subscribe" },
	[CMD_UNSUBSCRIBE] = { 7, "unsubscribe" },
	[CMD_PUBLISH] = { 8, "publish" },
	[CMD_PRESENCE] = { 9, "presence" },
	[CMD_PRESENCE_STATS] = { 10, "presence_stats" },
	[CMD_HISTORY] = { 11, "history" },
	[CMD_RPC] = { 13, "rpc" },
	[CMD_REFRESH] = { 14, "refresh" },
	[CMD_SUB_REFRESH] = { 15, "sub_refresh" },
};

/* Opens Reply{id, <result of TYPE>: {...}}. */
static void reply_open(struct enc *e, struct jw *w, enum proto_fmt f, uint32_t id, enum cmd_type type)
{
	enc_init(e, w, f);
	enc_open(e, 0, NULL);
	enc_u64(e, 1, "id", id, false);
	enc_open(e, results[type].num, results[type].name);
}

static int reply_close(struct enc *e)
{
	enc_close(e);
	enc_close(e);
	return enc_done(e);
}

static bool has_result(enum cmd_type type)
{
	return (size_t)type < ROTOR_ARRAY_LEN(results) && results[type].num != 0;
}

int proto_reply_error(struct jw *out, enum proto_fmt f, uint32_t id, uint32_t code,
		      const char *message, bool temporary)
{
	struct enc e;

	enc_init(&e, out, f);
	enc_open(&e, 0, NULL);
	enc_u64(&e, 1, "id", id, false);
	enc_open(&e, 2, "error");
	enc_u64(&e, 1, "code", code, false);
	enc_str(&e, 2, "message", pstr_c(message), false);
	enc_bool(&e, 3, "temporary", temporary);
	enc_close(&e);
	enc_close(&e);
	return enc_done(&e);
}

int proto_reply_empty(struct jw *out, enum proto_fmt f, uint32_t id, enum cmd_type type)
{
	struct enc e;

	if (!has_result(type))
		return RT_INVAL;
	reply_open(&e, out, f, id, type);
	return reply_close(&e);
}

int proto_reply_connect(struct jw *out, enum proto_fmt f, uint32_t id, const struct connect_result *r)
{
	struct enc e;

	reply_open(&e, out, f, id, CMD_CONNECT);
	enc_str(&e, 1, "client", r->client, false);
	enc_str(&e, 2, "version", r->version, false);
	enc_bool(&e, 3, "expires", r->expires);
	enc_u64(&e, 4, "ttl", r->ttl, false);
	enc_bytes(&e, 5, "data", r->data);
	if (r->nsubs) {
		enc_map(&e, "subs");
		for (size_t i = 0; i < r->nsubs; i++) {
			enc_entry(&e, 6, r->subs[i].channel);
			sub_result_body(&e, &r->subs[i].res);
			enc_close(&e);
		}
		enc_close(&e);
	}
	enc_u64(&e, 7, "ping", r->ping, false);
	enc_bool(&e, 8, "pong", r->pong);
	enc_str(&e, 9, "session", r->session, false);
	enc_str(&e, 10, "node", r->node, false);
	enc_i64(&e, 11, "time", r->time);
	return reply_close(&e);
}

int proto_reply_subscribe(struct jw *out, enum proto_fmt f, uint32_t id, const struct sub_result *r)
{
	struct enc e;

	reply_open(&e, out, f, id, CMD_SUBSCRIBE);
	sub_result_body(&e, r);
	return reply_close(&e);
}

/* PresenceResult's map, into the object E has open. */
static void enc_presence(struct enc *e, const struct client_info *v, size_t n)
{
	enc_map(e, "presence");
	for (size_t i = 0; i < n; i++) {
		enc_entry(e, 1, v[i].client);
		client_info_body(e, &v[i]);
		enc_close(e);
	}
	enc_close(e);
}

int proto_reply_presence(struct jw *out, enum proto_fmt f, uint32_t id,
			 const struct client_info *v, size_t n)
{
	struct enc e;

	reply_open(&e, out, f, id, CMD_PRESENCE);
	enc_presence(&e, v, n);
	return reply_close(&e);
}

int proto_reply_presence_stats(struct jw *out, enum proto_fmt f, uint32_t id,
			       uint32_t num_clients, uint32_t num_users)
{
	struct enc e;

	reply_open(&e, out, f, id, CMD_PRESENCE_STATS);
	enc_u64(&e, 1, "num_clients", num_clients, true);
	enc_u64(&e, 2, "num_users", num_users, true);
	return reply_close(&e);
}

/* HistoryResult's fields, into the object E has open. */
static void enc_history(struct enc *e, const struct publication *v, size_t n, struct pstr epoch,
			uint64_t offset)
{
	enc_publications(e, 1, "publications", v, n, true);
	enc_str(e, 2, "epoch", epoch, true);
	enc_u64(e, 3, "offset", offset, true);
}

int proto_reply_history(struct jw *out, enum proto_fmt f, uint32_t id,
			const struct publication *v, size_t n, struct pstr epoch, uint64_t offset)
{
	struct enc e;

	reply_open(&e, out, f, id, CMD_HISTORY);
	enc_history(&e, v, n, epoch, offset);
	return reply_close(&e);
}

int proto_presence_result(struct jw *out, const struct client_info *v, size_t n)
{
	struct enc e;

	enc_init(&e, out, PROTO_JSON);
	enc_open(&e, 0, NULL);
	enc_presence(&e, v, n);
	enc_close(&e);
	return enc_done(&e);
}

int proto_history_result(struct jw *out, const struct publication *v, size_t n, struct pstr epoch,
			 uint64_t offset)
{
	struct enc e;

	enc_init(&e, out, PROTO_JSON);
	enc_open(&e, 0, NULL);
	enc_history(&e, v, n, epoch, offset);
	enc_close(&e);
	return enc_done(&e);
}

int proto_reply_rpc(struct jw *out, enum proto_fmt f, uint32_t id, struct pstr data)
{
	struct enc e;

	reply_open(&e, out, f, id, CMD_RPC);
	enc_bytes(&e, 1, "data", data);
	return reply_close(&e);
}

/* RefreshResult numbers expires/ttl 3/4 (after client, version);
 * SubRefreshResult 1/2. */
int proto_reply_refresh(struct jw *out, enum proto_fmt f, uint32_t id, enum cmd_type type,
			bool expires, uint32_t ttl)
{
	struct enc e;
	unsigned base = type == CMD_REFRESH ? 3 : 1;

	if (type != CMD_REFRESH && type != CMD_SUB_REFRESH)
		return RT_INVAL;
	reply_open(&e, out, f, id, type);
	enc_bool(&e, base, "expires", expires);
	enc_u64(&e, base + 1, "ttl", ttl, false);
	return reply_close(&e);
}

/* Opens Reply{push: Push{channel, <NAME> (field NUM): {...}}}. */
static void push_open(struct enc *e, struct jw *w, enum proto_fmt f, struct pstr channel,
		      unsigned num, const char *name)
{
	enc_init(e, w, f);
	enc_open(e, 0, NULL);
	enc_open(e, 4, "push");
	enc_str(e, 2, "channel", channel, false);
	enc_open(e, num, name);
}

static int push_close(struct enc *e)
{
	enc_close(e);
	enc_close(e);
	enc_close(e);
	return enc_done(e);
}

/* Push.connect (field 10) numbers its fields unlike ConnectResult: client 1,
 * version 2, data 3, subs 4, expires 5, ttl 6, ping 7, pong 8, session 9,
 * node 10, time 11. */
int proto_push_connect(struct jw *out, enum proto_fmt f, const struct connect_result *r)
{
	struct enc e;

	push_open(&e, out, f, (struct pstr){ NULL, 0 }, 10, "connect");
	enc_str(&e, 1, "client", r->client, false);
	enc_str(&e, 2, "version", r->version, false);
	enc_bytes(&e, 3, "data", r->data);
	if (r->nsubs) {
		enc_map(&e, "subs");
		for (size_t i = 0; i < r->nsubs; i++) {
			enc_entry(&e, 4, r->subs[i].channel);
			sub_result_body(&e, &r->subs[i].res);
			enc_close(&e);
		}
		enc_close(&e);
	}
	enc_bool(&e, 5, "expires", r->expires);
	enc_u64(&e, 6, "ttl", r->ttl, false);
	enc_u64(&e, 7, "ping", r->ping, false);
	enc_bool(&e, 8, "pong", r->pong);
	enc_str(&e, 9, "session", r->session, false);
	enc_str(&e, 10, "node", r->node, false);
	enc_i64(&e, 11, "time", r->time);
	return push_close(&e);
}

int proto_push_pub(struct jw *out, enum proto_fmt f, struct pstr channel, const struct publication *p)
{
	struct enc e;

	push_open(&e, out, f, channel, 4, "pub");
	publication_body(&e, p);
	return push_close(&e);
}

int proto_push_join(struct jw *out, enum proto_fmt f, struct pstr channel, const struct client_info *ci)
{
	struct enc e;

	push_open(&e, out, f, channel, 5, "join");
	enc_client_info(&e, 1, "info", ci);
	return push_close(&e);
}

int proto_push_leave(struct jw *out, enum proto_fmt f, struct pstr channel, const struct client_info *ci)
{
	struct enc e;

	push_open(&e, out, f, channel, 6, "leave");
	enc_client_info(&e, 1, "info", ci);
	return push_close(&e);
}

int proto_push_unsubscribe(struct jw *out, enum proto_fmt f, struct pstr channel, uint32_t code,
			   const char *reason)
{
	struct enc e;

	push_open(&e, out, f, channel, 7, "unsubscribe");
	enc_u64(&e, 2, "code", code, false);
	enc_str(&e, 3, "reason", pstr_c(reason), false);
	return push_close(&e);
}

int proto_push_subscribe(struct jw *out, enum proto_fmt f, struct pstr channel, const struct sub_result *r)
{
	struct enc e;

	push_open(&e, out, f, channel, 9, "subscribe");
	enc_bool(&e, 1, "recoverable", r->recoverable);
	enc_str(&e, 4, "epoch", r->epoch, false);
	enc_u64(&e, 5, "offset", r->offset, false);
	enc_bool(&e, 6, "positioned", r->positioned);
	enc_bytes(&e, 7, "data", r->data);
	return push_close(&e);
}

int proto_push_message(struct jw *out, enum proto_fmt f, struct pstr data)
{
	struct enc e;

	push_open(&e, out, f, (struct pstr){ NULL, 0 }, 8, "message");
	enc_bytes(&e, 1, "data", data);
	return push_close(&e);
}

int proto_push_disconnect(struct jw *out, enum proto_fmt f, uint32_t code, const char *reason)
{
	struct enc e;

	push_open(&e, out, f, (struct pstr){ NULL, 0 }, 11, "disconnect");
	enc_u64(&e, 1, "code", code, false);
	enc_str(&e, 2, "reason", pstr_c(reason), false);
	return push_close(&e);
}

int proto_push_refresh(struct jw *out, enum proto_fmt f, bool expires, uint32_t ttl)
{
	struct enc e;

	push_open(&e, out, f, (struct pstr){ NULL, 0 }, 12, "refresh");
	enc_bool(&e, 1, "expires", expires);
	enc_u64(&e, 2, "ttl", ttl, false);
	return push_close(&e);
}

int proto_ping(struct jw *out, enum proto_fmt f)
{
	struct enc e;

	enc_init(&e, out, f);
	enc_open(&e, 0, NULL);
	enc_close(&e);
	return enc_done(&e);
}

/* ---- codes -------------------------------------------------------------- */

/* NULL for a code the protocol does not define (application codes carry
 * their own text). */
const char *proto_error_text(uint32_t code)
{
	switch (code) {
	case 100: return "internal server error";
	case 101: return "unauthorized";
	case 102: return "unknown channel";
	case 103: return "permission denied";
	case 104: return "method not found";
	case 105: return "already subscribed";
	case 106: return "limit exceeded";
	case 107: return "bad request";
	case 108: return "not available";
	case 109: return "token expired";
	case 110: return "expired";
	case 111: return "too many requests";
	case 112: return "unrecoverable position";
	case 113: return "concurrent pagination";
	}
	return NULL;
}

bool proto_error_temporary(uint32_t code)
{
	return code == 100 || code == 111 || code == 113;
}

const char *proto_disconnect_text(uint32_t code)
{
	switch (code) {
	case 3000: return "connection closed";
	case 3001: return "shutdown";
	case 3004: return "internal server error";
	case 3005: return "connection expired";
	case 3006: return "subscription expired";
	case 3008: return "slow";
	case 3009: return "write error";
	case 3010: return "insufficient state";
	case 3011: return "force reconnect";
	case 3012: return "no pong";
	case 3013: return "too many requests";
	case 3014: return "state invalidated";
	case 3500: return "invalid token";
	case 3501: return "bad request";
	case 3502: return "stale";
	case 3503: return "force disconnect";
	case 3504: return "connection limit";
	case 3505: return "channel limit";
	case 3506: return "inappropriate protocol";
	case 3507: return "permission denied";
	case 3508: return "not available";
	case 3509: return "too many errors";
	}
	return NULL;
}

const char *proto_unsubscribe_text(uint32_t code)
{
	switch (code) {
	case 2000: return "server unsubscribe";
	case 2500: return "insufficient state";
	case 2501: return "subscription expired";
	case 2502: return "state invalidated";
	}
	return NULL;
}
