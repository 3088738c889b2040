/*
 * redis_wire.c - Centrifugo's Redis layout, byte for byte (redis_wire.h;
 * ref/redis-engine.md §2-§7). Pure functions: names, the shard hash, the
 * protobuf messages, the frames on {p}.client.CH, the Lua scripts, epochs.
 *
 * Encoders append to a struct jw and write protobuf the way vtprotobuf
 * does: fields in ascending number, proto3 defaults left out, a sub-message
 * written whenever it is present (even empty), map entries with key and
 * value always. Decoders return views into their input; they skip unknown
 * fields of every wire type and refuse a known field of the wrong wire type,
 * a truncated value or a length past the end.
 *
 * The Lua scripts are this file's own text; they have the effects of
 * centrifuge's internal/redis_lua scripts at 84d40cc4 (same KEYS, ARGV,
 * writes, PUBLISH payloads and replies), each operation one script so that
 * it is atomic. The hash-field-TTL branches (ARGV "use hash field TTL" = 1,
 * HEXPIRE, Redis ≥ 7.4) are kept but untested here (Redis 7.0).
 */
#include "config.h"
#include "redis_wire.h"
#include "pb.h"
#include "rotor.h"
#include "util.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ---- */

static const char *const name_part[] = {
	[RW_CLIENT] = ".client.",
	[RW_STREAM] = ".stream.",
	[RW_STREAM_META] = ".stream.meta.",
	[RW_RESULT] = ".result.",
	[RW_PRES_DATA] = ".presence.data.",
	[RW_PRES_EXPIRE] = ".presence.expire.",
	[RW_PRES_USER_CLIENTS] = ".presence.user.clients.",
	[RW_PRES_USER_EXPIRE] = ".presence.user.expire.",
};

void rw_name(struct jw *out, const char *prefix, bool cluster, enum rw_name kind, struct pstr ch,
	     struct pstr key)
{
	assert((size_t)kind < ROTOR_ARRAY_LEN(name_part));
	jw_lit(out, prefix);
	jw_lit(out, name_part[kind]);
	if (cluster)
		jw_raw(out, "{", 1);
	jw_raw(out, ch.p, ch.n);
	if (cluster)
		jw_raw(out, "}", 1);
	if (kind == RW_RESULT) {
		jw_raw(out, ".", 1);
		jw_raw(out, key.p, key.n);
	}
}

void rw_control(struct jw *out, const char *prefix)
{
	jw_lit(out, prefix);
	jw_lit(out, ".control");
}

void rw_node(struct jw *out, const char *prefix, struct pstr uid)
{
	jw_lit(out, prefix);
	jw_lit(out, ".node.");
	jw_raw(out, uid.p, uid.n);
}

void rw_shard(struct jw *out, const char *prefix, unsigned i)
{
	jw_lit(out, prefix);
	jw_lit(out, ".shard.");
	jw_u64(out, i);
}

bool rw_client_channel(struct pstr name, const char *prefix, bool cluster, struct pstr *ch)
{
	size_t pl = strlen(prefix), cl = sizeof(".client.") - 1;

	if (name.n < pl + cl || memcmp(name.p, prefix, pl) != 0 || memcmp(name.p + pl, ".client.", cl) != 0)
		return false;
	ch->p = name.p + pl + cl;
	ch->n = name.n - pl - cl;
	if (!cluster)
		return true;
	if (ch->n < 2 || ch->p[0] != '{' || ch->p[ch->n - 1] != '}')
		return false;
	ch->p++;
	ch->n -= 2;
	return true;
}

/* ---- sharding ---- */

uint64_t rw_fnv1a64(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* Lamping & Veach, in the order and precision of centrifuge's
 * consistentIndex: every quotient is a double. */
unsigned rw_jump(uint64_t key, unsigned n)
{
	int64_t b = -1, j = 0;

	while (j < (int64_t)n) {
		b = j;
		key = key * 2862933555777941757ULL + 1;
		j = (int64_t)((double)(b + 1) * ((double)(INT64_C(1) << 31) / (double)((key >> 33) + 1)));
	}
	return b < 0 ? 0 : (unsigned)b;
}

unsigned rw_shard_of(struct pstr ch, unsigned n)
{
	if (n <= 1)
		return 0;
	return rw_jump(rw_fnv1a64(ch.p, ch.n), n);
}

/* ---- protobuf: Publication, ClientInfo ---- */

void rw_info_encode(struct jw *out, const struct client_info *ci)
{
	pb_optfield(out, 1, ci->user);
	pb_optfield(out, 2, ci->client);
	pb_optfield(out, 3, ci->conn_info);
	pb_optfield(out, 4, ci->chan_info);
}

void rw_pub_encode_v(struct jw *out, const struct publication *p, bool delta, uint64_t version)
{
	size_t at;

	pb_optfield(out, 4, p->data);
	if (p->info) {
		pb_tag(out, 5, 2);
		at = pb_hold(out);
		rw_info_encode(out, p->info);
		pb_fix(out, at);
	}
	for (size_t i = 0; i < p->ntags; i++) {
		pb_tag(out, 7, 2);
		at = pb_hold(out);
		pb_lenfield(out, 1, p->tags[i].key.p, p->tags[i].key.n);
		pb_lenfield(out, 2, p->tags[i].value.p, p->tags[i].value.n);
		pb_fix(out, at);
	}
	pb_varfield(out, 8, delta);
	pb_varfield(out, 9, (uint64_t)p->time);
	pb_varfield(out, 16, version);
}

void rw_pub_encode(struct jw *out, const struct publication *p, bool delta)
{
	rw_pub_encode_v(out, p, delta, 0);
}

/* The next field of R: its number, and its value as a span (wire type 2)
 * or a varint (wire type 0); other wire types are skipped and reported as
 * number 0 so that callers ignore them. */
struct field {
	uint64_t num, v;
	unsigned wt;
	struct pstr s;
};

static int next_field(struct pbr *r, struct field *f)
{
	if (pbr_tag(r, &f->num, &f->wt) != RT_OK)
		return RT_INVAL;
	if (f->wt == 0)
		return pbr_varint(r, &f->v);
	if (f->wt == 2)
		return pbr_span(r, &f->s);
	if (pbr_skip(r, f->wt) != RT_OK)
		return RT_INVAL;
	f->num = 0;
	return RT_OK;
}

int rw_info_decode(const char *b, size_t n, struct client_info *ci)
{
	struct pbr r = pbr_of(b, n);
	struct field f;

	memset(ci, 0, sizeof(*ci));
	while (r.p < r.end) {
		if (next_field(&r, &f) != RT_OK)
			return -1;
		if (f.num < 1 || f.num > 4)
			continue;
		if (f.wt != 2)
			return -1;
		(f.num == 1 ? &ci->user : f.num == 2 ? &ci->client : f.num == 3 ? &ci->conn_info : &ci->chan_info)[0] = f.s;
	}
	return 0;
}

/* A map<string,string> entry {1 key, 2 value}. */
static int tag_decode(struct pstr msg, struct tag *t)
{
	struct pbr r = pbr_of(msg.p, msg.n);
	struct field f;

	memset(t, 0, sizeof(*t));
	while (r.p < r.end) {
		if (next_field(&r, &f) != RT_OK)
			return -1;
		if (f.num != 1 && f.num != 2)
			continue;
		if (f.wt != 2)
			return -1;
		*(f.num == 1 ? &t->key : &t->value) = f.s;
	}
	return 0;
}

int rw_pub_decode_v(const char *b, size_t n, struct publication *p, struct client_info *ci,
		    struct tag *tags, size_t maxtags, bool *delta, uint64_t *version)
{
	struct pbr r = pbr_of(b, n);
	struct field f;
	struct tag t;
	struct client_info ignored;

	memset(p, 0, sizeof(*p));
	p->tags = tags;
	if (delta)
		*delta = false;
	if (version)
		*version = 0;
	while (r.p < r.end) {
		if (next_field(&r, &f) != RT_OK)
			return -1;
		switch (f.num) {
		case 4: case 5: case 7:
			if (f.wt != 2)
				return -1;
			break;
		case 6: case 8: case 9: case 16:
			if (f.wt != 0)
				return -1;
			break;
		default:
			continue;
		}
		switch (f.num) {
		case 4:
			p->data = f.s;
			break;
		case 5:
			if (rw_info_decode(f.s.p, f.s.n, ci ? ci : &ignored) != 0)
				return -1;
			p->info = ci;
			break;
		case 6:
			p->offset = f.v;
			break;
		case 7:
			if (tag_decode(f.s, &t) != 0)
				return -1;
			if (p->ntags < maxtags)
				tags[p->ntags++] = t;
			break;
		case 8:
			if (delta)
				*delta = f.v != 0;
			break;
		case 9:
			p->time = (int64_t)f.v;
			break;
		case 16:
			if (version)
				*version = f.v;
			break;
		}
	}
	return 0;
}

int rw_pub_decode(const char *b, size_t n, struct publication *p, struct client_info *ci,
		  struct tag *tags, size_t maxtags, bool *delta)
{
	return rw_pub_decode_v(b, n, p, ci, tags, maxtags, delta, NULL);
}

/* ---- frames ---- */

/* A decimal number of at least one digit at *P (before END), stopping at
 * STOP which must follow it; *P moves past STOP. */
static bool dec_until(const char **p, const char *end, char stop, uint64_t *v)
{
	const char *q = *p;
	uint64_t x = 0;

	if (q == end || *q < '0' || *q > '9')
		return false;
	for (; q < end && *q >= '0' && *q <= '9'; q++) {
		if (x > (UINT64_MAX - (uint64_t)(*q - '0')) / 10)
			return false;
		x = x * 10 + (uint64_t)(*q - '0');
	}
	if (q == end || *q != stop)
		return false;
	*p = q + 1;
	*v = x;
	return true;
}

/* __p1:<offset>:<epoch>__<Publication>: the epoch ends at the first "__". */
static int frame_p1(const char *p, const char *end, struct rw_frame *f)
{
	const char *e;

	if (!dec_until(&p, end, ':', &f->offset))
		return -1;
	for (e = p; e + 1 < end && !(e[0] == '_' && e[1] == '_'); e++)
		;
	if (e + 1 >= end)
		return -1;
	f->epoch = (struct pstr){ p, (size_t)(e - p) };
	f->body = (struct pstr){ e + 2, (size_t)(end - e - 2) };
	return 0;
}

/* __d1:<offset>:<epoch>:<prevlen>:<prev>:<curlen>:<cur>, read by lengths;
 * nothing may follow <cur>. */
static int frame_d1(const char *p, const char *end, struct rw_frame *f)
{
	const char *e;
	uint64_t len;

	if (!dec_until(&p, end, ':', &f->offset))
		return -1;
	if ((e = memchr(p, ':', (size_t)(end - p))) == NULL)
		return -1;
	f->epoch = (struct pstr){ p, (size_t)(e - p) };
	p = e + 1;
	if (!dec_until(&p, end, ':', &len) || len >= (uint64_t)(end - p) || p[len] != ':')
		return -1;
	f->prev = (struct pstr){ p, (size_t)len };
	p += len + 1;
	if (!dec_until(&p, end, ':', &len) || len != (uint64_t)(end - p))
		return -1;
	f->body = (struct pstr){ p, (size_t)len };
	f->delta_frame = true;
	return 0;
}

int rw_frame_parse(const char *b, size_t n, struct rw_frame *f)
{
	const char *end = b + n;

	memset(f, 0, sizeof(*f));
	f->type = RW_F_PUB;
	if (n < 2 || b[0] != '_' || b[1] != '_') {
		f->body = (struct pstr){ b, n };
		return 0;
	}
	if (n >= 5 && (memcmp(b, "__j__", 5) == 0 || memcmp(b, "__l__", 5) == 0)) {
		f->type = b[2] == 'j' ? RW_F_JOIN : RW_F_LEAVE;
		f->body = (struct pstr){ b + 5, n - 5 };
		return 0;
	}
	if (n >= 5 && memcmp(b, "__p1:", 5) == 0)
		return frame_p1(b + 5, end, f);
	if (n >= 5 && memcmp(b, "__d1:", 5) == 0)
		return frame_d1(b + 5, end, f);
	return -1;
}

void rw_join_leave(struct jw *out, bool join, const struct client_info *ci)
{
	jw_raw(out, join ? "__j__" : "__l__", 5);
	rw_info_encode(out, ci);
}

/* ---- controlpb.Command ---- */

/* The flat fields of each sub-message, in field order, as offsets into
 * struct rw_cmd. Two fields are special: Disconnect.whitelist (repeated)
 * and Subscribe.recover_since (a StreamPosition). */
enum fkind { F_STR, F_U32, F_U64, F_I64, F_BOOL, F_WHITELIST, F_SINCE };

struct fdesc {
	uint8_t num, kind;
	uint16_t off;
};

#define FD(n, k, m) { n, k, offsetof(struct rw_cmd, m) }

static const struct fdesc fd_node[] = {
	FD(1, F_STR, node.uid), FD(2, F_STR, node.name), FD(3, F_STR, node.version),
	FD(4, F_U32, node.num_clients), FD(5, F_U32, node.num_users), FD(6, F_U32, node.num_channels),
	FD(7, F_U32, node.uptime), FD(10, F_U32, node.num_subs),
};
static const struct fdesc fd_unsub[] = {
	FD(1, F_STR, unsubscribe.channel), FD(2, F_STR, unsubscribe.user), FD(3, F_STR, unsubscribe.client),
	FD(4, F_STR, unsubscribe.session), FD(5, F_U32, unsubscribe.code), FD(6, F_STR, unsubscribe.reason),
	FD(8, F_BOOL, unsubscribe.all_users),
};
static const struct fdesc fd_disc[] = {
	FD(1, F_STR, disconnect.user), FD(2, F_WHITELIST, disconnect.whitelist), FD(3, F_U32, disconnect.code),
	FD(4, F_STR, disconnect.reason), FD(6, F_STR, disconnect.client), FD(7, F_STR, disconnect.session),
	FD(9, F_BOOL, disconnect.all_users),
};
static const struct fdesc fd_sub[] = {
	FD(1, F_STR, subscribe.user), FD(2, F_STR, subscribe.channel), FD(3, F_BOOL, subscribe.emit_presence),
	FD(4, F_BOOL, subscribe.emit_join_leave), FD(5, F_I64, subscribe.expire_at),
	FD(6, F_BOOL, subscribe.position), FD(7, F_BOOL, subscribe.recover),
	FD(8, F_STR, subscribe.channel_info), FD(9, F_STR, subscribe.client), FD(10, F_STR, subscribe.data),
	FD(11, F_SINCE, subscribe), FD(12, F_STR, subscribe.session), FD(13, F_BOOL, subscribe.push_join_leave),
	FD(16, F_BOOL, subscribe.all_users),
};
static const struct fdesc fd_refresh[] = {
	FD(1, F_STR, refresh.user), FD(2, F_STR, refresh.client), FD(3, F_BOOL, refresh.expired),
	FD(4, F_I64, refresh.expire_at), FD(5, F_STR, refresh.info), FD(6, F_STR, refresh.session),
	FD(8, F_BOOL, refresh.all_users),
};
static const struct fdesc fd_sreq[] = {
	FD(1, F_U64, survey_request.id), FD(2, F_STR, survey_request.op), FD(3, F_STR, survey_request.data),
};
static const struct fdesc fd_sresp[] = {
	FD(1, F_U64, survey_response.id), FD(2, F_U32, survey_response.code), FD(3, F_STR, survey_response.data),
};
static const struct fdesc fd_notif[] = {
	FD(1, F_STR, notification.op), FD(2, F_STR, notification.data),
};

static const struct {
	const struct fdesc *f;
	size_t n;
} cmd_msgs[] = {
	[RW_CMD_NODE] = { fd_node, ROTOR_ARRAY_LEN(fd_node) },
	[RW_CMD_UNSUBSCRIBE] = { fd_unsub, ROTOR_ARRAY_LEN(fd_unsub) },
	[RW_CMD_DISCONNECT] = { fd_disc, ROTOR_ARRAY_LEN(fd_disc) },
	[RW_CMD_SHUTDOWN] = { NULL, 0 },
	[RW_CMD_SURVEY_REQUEST] = { fd_sreq, ROTOR_ARRAY_LEN(fd_sreq) },
	[RW_CMD_SURVEY_RESPONSE] = { fd_sresp, ROTOR_ARRAY_LEN(fd_sresp) },
	[RW_CMD_SUBSCRIBE] = { fd_sub, ROTOR_ARRAY_LEN(fd_sub) },
	[RW_CMD_NOTIFICATION] = { fd_notif, ROTOR_ARRAY_LEN(fd_notif) },
	[RW_CMD_REFRESH] = { fd_refresh, ROTOR_ARRAY_LEN(fd_refresh) },
};

static void enc_fields(struct jw *w, const struct rw_cmd *c, const struct fdesc *f, size_t nf)
{
	const char *base = (const char *)c;

	for (size_t i = 0; i < nf; i++) {
		const void *m = base + f[i].off;
		switch (f[i].kind) {
		case F_STR:
			pb_optfield(w, f[i].num, *(const struct pstr *)m);
			break;
		case F_U32:
			pb_varfield(w, f[i].num, *(const uint32_t *)m);
			break;
		case F_U64:
			pb_varfield(w, f[i].num, *(const uint64_t *)m);
			break;
		case F_I64:
			pb_varfield(w, f[i].num, (uint64_t)*(const int64_t *)m);   /* int64: two's complement, 10 bytes when negative */
			break;
		case F_BOOL:
			pb_varfield(w, f[i].num, *(const bool *)m);
			break;
		case F_WHITELIST: {
			struct pstr wl = *(const struct pstr *)m, s;
			while (rw_next_string(&wl, &s))
				pb_lenfield(w, f[i].num, s.p, s.n);
			break;
		}
		case F_SINCE:
			if (c->subscribe.has_since) {
				size_t at;
				pb_tag(w, f[i].num, 2);
				at = pb_hold(w);
				pb_varfield(w, 1, c->subscribe.since_offset);
				pb_optfield(w, 2, c->subscribe.since_epoch);
				pb_fix(w, at);
			}
			break;
		}
	}
}

void rw_cmd_encode(struct jw *out, const struct rw_cmd *c)
{
	size_t at;

	pb_optfield(out, 1, c->uid);
	if (c->type == RW_CMD_NONE)
		return;
	assert((size_t)c->type < ROTOR_ARRAY_LEN(cmd_msgs) && (c->type == RW_CMD_SHUTDOWN || cmd_msgs[c->type].f));
	pb_tag(out, c->type, 2);
	at = pb_hold(out);
	enc_fields(out, c, cmd_msgs[c->type].f, cmd_msgs[c->type].n);
	pb_fix(out, at);
}

static int dec_since(struct pstr msg, struct rw_cmd *c)
{
	struct pbr r = pbr_of(msg.p, msg.n);
	struct field f;

	c->subscribe.has_since = true;
	while (r.p < r.end) {
		if (next_field(&r, &f) != RT_OK)
			return -1;
		if (f.num == 1 && f.wt == 0)
			c->subscribe.since_offset = f.v;
		else if (f.num == 2 && f.wt == 2)
			c->subscribe.since_epoch = f.s;
		else if (f.num == 1 || f.num == 2)
			return -1;
	}
	return 0;
}

/* Decodes sub-message MSG through table F into C. The whitelist is MSG
 * itself: rw_next_string picks field 2 out of it. */
static int dec_fields(struct pstr msg, struct rw_cmd *c, const struct fdesc *fd, size_t nf)
{
	struct pbr r = pbr_of(msg.p, msg.n);
	char *base = (char *)c;
	struct field f;
	size_t i;

	while (r.p < r.end) {
		if (next_field(&r, &f) != RT_OK)
			return -1;
		for (i = 0; i < nf && fd[i].num != f.num; i++)
			;
		if (i == nf)
			continue;
		void *m = base + fd[i].off;
		bool wt2 = fd[i].kind == F_STR || fd[i].kind == F_WHITELIST || fd[i].kind == F_SINCE;
		if (f.wt != (wt2 ? 2u : 0u))
			return -1;
		switch (fd[i].kind) {
		case F_STR:
			*(struct pstr *)m = f.s;
			break;
		case F_U32:
			*(uint32_t *)m = (uint32_t)f.v;
			break;
		case F_U64:
			*(uint64_t *)m = f.v;
			break;
		case F_I64:
			*(int64_t *)m = (int64_t)f.v;
			break;
		case F_BOOL:
			*(bool *)m = f.v != 0;
			break;
		case F_WHITELIST:
			*(struct pstr *)m = msg;
			break;
		case F_SINCE:
			if (dec_since(f.s, c) != 0)
				return -1;
			break;
		}
	}
	return 0;
}

/* When a sender set several sub-messages (Centrifugo never does), the one
 * centrifuge's handleControl looks at first wins: node, shutdown,
 * unsubscribe, subscribe, disconnect, survey request, survey response,
 * notification, refresh. The others must still decode, as the whole
 * Command would fail to unmarshal in Go otherwise. */
int rw_cmd_decode(const char *b, size_t n, struct rw_cmd *c)
{
	static const enum rw_cmd_type order[] = {
		RW_CMD_NODE, RW_CMD_SHUTDOWN, RW_CMD_UNSUBSCRIBE, RW_CMD_SUBSCRIBE, RW_CMD_DISCONNECT,
		RW_CMD_SURVEY_REQUEST, RW_CMD_SURVEY_RESPONSE, RW_CMD_NOTIFICATION, RW_CMD_REFRESH,
	};
	struct pbr r = pbr_of(b, n);
	struct field f;
	struct pstr uid = { 0 }, sub[RW_CMD_REFRESH + 1];
	bool has[RW_CMD_REFRESH + 1] = { false };
	enum rw_cmd_type type = RW_CMD_NONE;

	memset(c, 0, sizeof(*c));
	while (r.p < r.end) {
		if (next_field(&r, &f) != RT_OK)
			return -1;
		if (f.num != 1 && (f.num < RW_CMD_NODE || f.num > RW_CMD_REFRESH))
			continue;
		if (f.wt != 2)
			return -1;
		if (f.num == 1) {
			uid = f.s;
			continue;
		}
		has[f.num] = true;
		sub[f.num] = f.s;
	}
	for (size_t i = ROTOR_ARRAY_LEN(order); i-- > 0;) {
		enum rw_cmd_type t = order[i];
		if (!has[t])
			continue;
		memset(c, 0, sizeof(*c));
		if (dec_fields(sub[t], c, cmd_msgs[t].f, cmd_msgs[t].n) != 0) {
			memset(c, 0, sizeof(*c));
			return -1;
		}
		type = t;
	}
	c->uid = uid;
	c->type = type;
	return 0;
}

bool rw_next_string(struct pstr *wl, struct pstr *out)
{
	struct pbr r = pbr_of(wl->p, wl->n);
	struct field f;

	while (r.p < r.end) {
		if (next_field(&r, &f) != RT_OK)
			break;
		if (f.num == 2 && f.wt == 2) {
			*out = f.s;
			wl->n -= (size_t)((const char *)r.p - wl->p);
			wl->p = (const char *)r.p;
			return true;
		}
	}
	wl->p += wl->n;
	wl->n = 0;
	return false;
}

void rw_cmd_set_whitelist(struct jw *scratch, const struct pstr *v, size_t n, struct rw_cmd *c)
{
	size_t start = scratch->len;

	for (size_t i = 0; i < n; i++)
		pb_lenfield(scratch, 2, v[i].p, v[i].n);
	c->disconnect.whitelist = (struct pstr){ scratch->buf + start, scratch->len - start };
}

/* ---- survey "channels" ---- */

void rw_channels_request(struct jw *out, struct pstr pattern)
{
	pb_optfield(out, 1, pattern);
}

int rw_channels_request_decode(const char *b, size_t n, struct pstr *pattern)
{
	struct pbr r = pbr_of(b, n);
	struct field f;

	*pattern = (struct pstr){ 0 };
	while (r.p < r.end) {
		if (next_field(&r, &f) != RT_OK)
			return -1;
		if (f.num == 1) {
			if (f.wt != 2)
				return -1;
			*pattern = f.s;
		}
	}
	return 0;
}

void rw_channels_result_add(struct jw *out, struct pstr channel, uint32_t num_clients)
{
	size_t entry, info;

	pb_tag(out, 1, 2);
	entry = pb_hold(out);
	pb_lenfield(out, 1, channel.p, channel.n);
	pb_tag(out, 2, 2);
	info = pb_hold(out);
	pb_varfield(out, 1, num_clients);
	pb_fix(out, info);
	pb_fix(out, entry);
}

/* One map entry {1 channel, 2 ChannelInfo{1 num_clients}}. */
static int channel_entry(struct pstr msg, struct pstr *ch, uint32_t *num)
{
	struct pbr r = pbr_of(msg.p, msg.n), ri;
	struct field f, g;

	*ch = (struct pstr){ 0 };
	*num = 0;
	while (r.p < r.end) {
		if (next_field(&r, &f) != RT_OK)
			return -1;
		if (f.num != 1 && f.num != 2)
			continue;
		if (f.wt != 2)
			return -1;
		if (f.num == 1) {
			*ch = f.s;
			continue;
		}
		ri = pbr_of(f.s.p, f.s.n);
		while (ri.p < ri.end) {
			if (next_field(&ri, &g) != RT_OK)
				return -1;
			if (g.num == 1 && g.wt != 0)
				return -1;
			if (g.num == 1)
				*num = (uint32_t)g.v;
		}
	}
	return 0;
}

int rw_channels_result_decode(const char *b, size_t n, rw_channel_fn *fn, void *arg)
{
	struct pbr r = pbr_of(b, n);
	struct field f;
	struct pstr ch;
	uint32_t num;

	while (r.p < r.end) {
		if (next_field(&r, &f) != RT_OK)
			return -1;
		if (f.num != 1)
			continue;
		if (f.wt != 2 || channel_entry(f.s, &ch, &num) != 0)
			return -1;
		fn(arg, ch, num);
	}
	return 0;
}

/* ---- scripts ---- */

/* §4.1. KEYS stream, meta, result. ARGV 1 publication, 2 MAXLEN, 3 stream
 * TTL, 4 PUB/SUB channel ("" = none), 5 meta TTL ("0" = none), 6 epoch
 * for a new stream, 7 publish command, 8 result TTL ("" = no idempotency),
 * 9 "1" = delta, 10 version ("0" = none), 11 version epoch.
 * Reply {offset, epoch, from_cache, suppressed}. */
const char rw_script_publish_stream[] =
	"local stream, meta, result = KEYS[1], KEYS[2], KEYS[3]\n"
	"local pub, channel, delta = ARGV[1], ARGV[4], ARGV[9] == '1'\n"
	"local idem = ARGV[8] ~= ''\n"
	"if idem then\n"
	"  local seen = redis.call('hmget', result, 'e', 's')\n"
	"  if seen[1] then return {seen[2], seen[1], '1', '0'} end\n"
	"end\n"
	"local epoch = redis.call('hget', meta, 'e')\n"
	"if not epoch then\n"
	"  epoch = ARGV[6]\n"
	"  redis.call('hset', meta, 'e', epoch)\n"
	"end\n"
	"if ARGV[10] ~= '0' then\n"
	"  local m = redis.call('hmget', meta, 'v', 've', 's')\n"
	"  if m[1] and (ARGV[11] == '' or ARGV[11] == m[2]) and tonumber(m[1]) >= tonumber(ARGV[10]) then\n"
	"    local top = 0\n"
	"    if m[3] then top = tonumber(m[3]) end\n"
	"    return {top, epoch, '0', '1'}\n"
	"  end\n"
	"  redis.call('hset', meta, 'v', ARGV[10], 've', ARGV[11])\n"
	"end\n"
	"local offset = redis.call('hincrby', meta, 's', 1)\n"
	"if ARGV[5] ~= '0' then redis.call('expire', meta, ARGV[5]) end\n"
	"local prev = ''\n"
	"if offset == 1 then\n"
	"  redis.call('del', stream)\n"
	"elseif delta then\n"
	"  local last = redis.call('xrevrange', stream, '+', '-', 'COUNT', 1)\n"
	"  if #last > 0 then\n"
	"    local kv = last[1][2]\n"
	"    for i = 1, #kv, 2 do\n"
	"      if kv[i] == 'd' then prev = kv[i + 1] break end\n"
	"    end\n"
	"  end\n"
	"end\n"
	"redis.call('xadd', stream, 'MAXLEN', ARGV[2], offset, 'd', pub)\n"
	"redis.call('expire', stream, ARGV[3])\n"
	"if channel ~= '' then\n"
	"  local frame\n"
	"  if delta then\n"
	"    frame = '__d1:' .. offset .. ':' .. epoch .. ':' .. #prev .. ':' .. prev .. ':' .. #pub .. ':' .. pub\n"
	"  else\n"
	"    frame = '__p1:' .. offset .. ':' .. epoch .. '__' .. pub\n"
	"  end\n"
	"  redis.call(ARGV[7], channel, frame)\n"
	"end\n"
	"if idem then\n"
	"  redis.call('hset', result, 'e', epoch, 's', offset)\n"
	"  redis.call('expire', result, ARGV[8])\n"
	"end\n"
	"return {offset, epoch, '0', '0'}\n";

/* §4.3. KEYS result. ARGV 1 payload, 2 channel, 3 publish command, 4 result
 * TTL. Reply: the cached {s, e} (s nil), or PUBLISH's receiver count. */
const char rw_script_publish_idempotent[] =
	"local result, ttl = KEYS[1], ARGV[4]\n"
	"if ttl ~= '' then\n"
	"  local seen = redis.call('hmget', result, 'e', 's')\n"
	"  if seen[1] then return {seen[2], seen[1]} end\n"
	"end\n"
	"local receivers\n"
	"if ARGV[2] ~= '' then receivers = redis.call(ARGV[3], ARGV[2], ARGV[1]) end\n"
	"if ttl ~= '' then\n"
	"  redis.call('hset', result, 'e', '')\n"
	"  redis.call('expire', result, ttl)\n"
	"end\n"
	"return receivers\n";

/* §4.4. KEYS stream, meta. ARGV 1 include publications ("0"/"1"), 2 start
 * id, 3 limit ("0" = all), 4 reverse ("0"/"1"), 5 meta TTL, 6 epoch for a
 * new stream. Reply {top, epoch, entries or absent}. */
const char rw_script_history_stream[] =
	"local stream, meta = KEYS[1], KEYS[2]\n"
	"local m = redis.call('hmget', meta, 'e', 's')\n"
	"local epoch, top = m[1], m[2]\n"
	"if not epoch then\n"
	"  epoch, top = ARGV[6], 0\n"
	"  redis.call('hset', meta, 'e', epoch)\n"
	"end\n"
	"if not top then top = 0 end\n"
	"if ARGV[5] ~= '0' then redis.call('expire', meta, ARGV[5]) end\n"
	"local entries = nil\n"
	"if ARGV[1] ~= '0' then\n"
	"  local cmd\n"
	"  if ARGV[4] == '0' then\n"
	"    cmd = {'xrange', stream, ARGV[2], '+'}\n"
	"  else\n"
	"    local from = top\n"
	"    if ARGV[2] ~= '0' then from = ARGV[2] end\n"
	"    cmd = {'xrevrange', stream, from, '-'}\n"
	"  end\n"
	"  if ARGV[3] ~= '0' then\n"
	"    cmd[5] = 'COUNT'\n"
	"    cmd[6] = ARGV[3]\n"
	"  end\n"
	"  entries = redis.call(unpack(cmd))\n"
	"end\n"
	"return {top, epoch, entries}\n";

/* §4.7. KEYS 1 client ZSET, 2 client HASH, 3 user ZSET, 4 user HASH.
 * ARGV 1 TTL s, 2 expire-at s, 3 client, 4 ClientInfo, 5 user,
 * 6 user mapping ("0"/"1"), 7 hash field TTL ("0"/"1"). */
const char rw_script_presence_add[] =
	"local ttl, at, client, user = ARGV[1], ARGV[2], ARGV[3], ARGV[5]\n"
	"local mapping, fieldttl = ARGV[6] ~= '0', ARGV[7] ~= '0'\n"
	"local new = false\n"
	"if mapping then new = redis.call('hexists', KEYS[2], client) == 0 end\n"
	"redis.call('hset', KEYS[2], client, ARGV[4])\n"
	"redis.call('expire', KEYS[2], ttl)\n"
	"if fieldttl then\n"
	"  redis.call('hexpire', KEYS[2], ttl, 'FIELDS', '1', client)\n"
	"else\n"
	"  redis.call('zadd', KEYS[1], at, client)\n"
	"  redis.call('expire', KEYS[1], ttl)\n"
	"end\n"
	"if mapping then\n"
	"  if new then redis.call('hincrby', KEYS[4], user, 1) end\n"
	"  redis.call('expire', KEYS[4], ttl)\n"
	"  if fieldttl then\n"
	"    redis.call('hexpire', KEYS[4], ttl, 'FIELDS', '1', user)\n"
	"  else\n"
	"    redis.call('zadd', KEYS[3], at, user)\n"
	"    redis.call('expire', KEYS[3], ttl)\n"
	"  end\n"
	"end\n";

/* KEYS as for add. ARGV 1 client, 2 user, 3 user mapping, 4 hash field TTL. */
const char rw_script_presence_rem[] =
	"local client, user = ARGV[1], ARGV[2]\n"
	"local mapping, fieldttl = ARGV[3] ~= '0', ARGV[4] ~= '0'\n"
	"local existed = false\n"
	"if mapping then existed = redis.call('hexists', KEYS[2], client) == 1 end\n"
	"redis.call('hdel', KEYS[2], client)\n"
	"if not fieldttl then redis.call('zrem', KEYS[1], client) end\n"
	"if existed then\n"
	"  if redis.call('hincrby', KEYS[4], user, -1) <= 0 then\n"
	"    if not fieldttl then redis.call('zrem', KEYS[3], user) end\n"
	"    redis.call('hdel', KEYS[4], user)\n"
	"  end\n"
	"end\n";

/* Drops the members of ZSET KEYS[z] whose expire-at is ≤ ARGV[1] from it
 * and their fields from HASH KEYS[h]; shared by get and stats. */
#define RW_LUA_EXPIRE_FN \
	"local function expire(z, h)\n" \
	"  local gone = redis.call('zrangebyscore', KEYS[z], '0', ARGV[1])\n" \
	"  if #gone > 0 then\n" \
	"    for i = 1, #gone do redis.call('hdel', KEYS[h], gone[i]) end\n" \
	"    redis.call('zremrangebyscore', KEYS[z], '0', ARGV[1])\n" \
	"  end\n" \
	"end\n"

/* KEYS 1 client ZSET, 2 client HASH. ARGV 1 now s, 2 hash field TTL.
 * Reply: HGETALL of the client HASH. */
const char rw_script_presence_get[] =
	RW_LUA_EXPIRE_FN
	"if ARGV[2] == '0' then expire(1, 2) end\n"
	"return redis.call('hgetall', KEYS[2])\n";

/* KEYS as for add. ARGV 1 now s, 2 hash field TTL. Reply {clients, users}. */
const char rw_script_presence_stats[] =
	RW_LUA_EXPIRE_FN
	"if ARGV[2] == '0' then\n"
	"  expire(1, 2)\n"
	"  expire(3, 4)\n"
	"end\n"
	"return {redis.call('hlen', KEYS[2]), redis.call('hlen', KEYS[4])}\n";

/* ---- epochs ---- */

void rw_epoch_new(char out[9])
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	uint8_t buf[16];
	int k = 0;

	/* 208 = 4 * 52: bytes at or above it are dropped, so every letter is
	 * equally likely (Go's b % 52 favours a-z slightly). getrandom does not
	 * fail on Linux ≥ 3.17 once seeded; util_random logged it if it did. */
	while (k < 8) {
		if (util_random(buf, sizeof(buf)) != RT_OK)
			abort();
		for (size_t i = 0; i < sizeof(buf) && k < 8; i++)
			if (buf[i] < 208)
				out[k++] = letters[buf[i] % 52];
	}
	out[8] = '\0';
}

uint64_t rw_secs(uint64_t ms)
{
	return ms / 1000;
}
