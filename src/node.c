/*
 * node.c - operations on the whole node, carried by the shared-memory bus.
 *
 * Every publication, join, leave and server-side action is appended once to
 * the bus; every worker (the one that appended included) reads every record
 * in bus order and applies it to its own clients: the hub fans
 * publications out, client.c applies actions. Hence one order for all: per
 * channel, every worker delivers in the order the records were appended.
 *
 * Records are this file's business. Their payload is a flat binary layout,
 * little-endian, each variable field prefixed by its length:
 *
 *   PUB      str16 channel | str32 data | info | u16 ntags (str16 k, str16 v)*
 *            | u64 offset | str8 epoch | i64 time
 *   JOIN/LEAVE  str16 channel | info
 *   CONTROL  u8 op | target (str16 user, str16 client, str16 session) | op fields
 *   info     u8 present | str16 user | str16 client | str32 conn_info | str32 chan_info
 *
 * A worker that was lapped lost records: it logs how many; subscriptions
 * that track stream positions treat that as insufficient state (history
 * comes with the channel table).
 */
#include "config.h"
#include "node.h"
#include "client.h"
#include "hub.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "worker.h"
#include "bus.h"
#include "stats.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	REC_PUB = 1,
	REC_JOIN = 2,
	REC_LEAVE = 3,
	REC_CONTROL = 4,
};

enum {
	OP_DISCONNECT = 1,
	OP_UNSUBSCRIBE = 2,
	OP_SUBSCRIBE = 3,
	OP_REFRESH = 4,
};

static struct jw rec;  /* the record being built */

/* ---- writing records -------------------------------------------------- */

static void put_u8(uint8_t v) { jw_raw(&rec, &v, 1); }
static void put_u16(uint16_t v) { jw_raw(&rec, &v, 2); }
static void put_u32(uint32_t v) { jw_raw(&rec, &v, 4); }
static void put_u64(uint64_t v) { jw_raw(&rec, &v, 8); }

/* Strings longer than their length field are cut, never wrapped. */
static void put_str16(struct pstr s)
{
	size_t n = s.n > UINT16_MAX ? UINT16_MAX : s.n;
	put_u16((uint16_t)n);
	jw_raw(&rec, s.p, n);
}

static void put_str32(struct pstr s)
{
	put_u32((uint32_t)s.n);
	jw_raw(&rec, s.p, s.n);
}

static void put_info(const struct client_info *ci)
{
	put_u8(ci != NULL);
	if (ci == NULL)
		return;
	put_str16(ci->user);
	put_str16(ci->client);
	put_str32(ci->conn_info);
	put_str32(ci->chan_info);
}

static void put_target(const struct node_target *t)
{
	put_str16(t->user);
	put_str16(t->client);
	put_str16(t->session);
}

/* Appends the record built in REC as TYPE. */
static int append(struct worker *w, unsigned type)
{
	if (bus_append(w->bus, type, rec.buf, rec.len, NULL) < 0) {
		if (errno == EMSGSIZE)
			log_warn("bus: a %zu-byte record is over the bus's limit of %zu bytes (shm.bus_size)",
				 rec.len, bus_max_record(w->bus));
		else
			log_syscall("bus_append(type %u, %zu bytes)", type, rec.len);
		return RT_ERR;
	}
	return RT_OK;
}

/* ---- reading records ---------------------------------------------------- */

struct rd {
	const unsigned char *p, *end;
	bool bad;
};

static const void *take(struct rd *r, size_t n)
{
	if (r->bad || (size_t)(r->end - r->p) < n) {
		r->bad = true;
		return NULL;
	}
	const void *v = r->p;
	r->p += n;
	return v;
}

#define GET(r, type) ({ type v_ = 0; const void *p_ = take((r), sizeof(type)); \
	if (p_ != NULL) { memcpy(&v_, p_, sizeof(type)); } v_; })

static struct pstr get_str(struct rd *r, size_t lenbytes)
{
	size_t n = lenbytes == 1 ? GET(r, uint8_t) : lenbytes == 2 ? GET(r, uint16_t) : GET(r, uint32_t);
	struct pstr s = { take(r, n), n };
	if (s.p == NULL)
		s.n = 0;
	return s;
}

static bool get_info(struct rd *r, struct client_info *ci)
{
	if (GET(r, uint8_t) == 0)
		return false;
	ci->user = get_str(r, 2);
	ci->client = get_str(r, 2);
	ci->conn_info = get_str(r, 4);
	ci->chan_info = get_str(r, 4);
	return true;
}

static void get_target(struct rd *r, struct node_target *t)
{
	t->user = get_str(r, 2);
	t->client = get_str(r, 2);
	t->session = get_str(r, 2);
}

/* ---- node operations -------------------------------------------------- */

int node_publish(struct worker *w, const struct node_pub *p, struct node_pub_result *res)
{
	rec.len = 0;
	put_str16(p->channel);
	put_str32(p->data);
	put_info(p->info);
	put_u16((uint16_t)p->ntags);
	for (size_t i = 0; i < p->ntags; i++) {
		put_str16(p->tags[i].key);
		put_str16(p->tags[i].value);
	}
	put_u64(0);           /* offset: history comes with the channel table */
	put_str16((struct pstr){ NULL, 0 });
	put_u64(0);           /* time */
	memset(res, 0, sizeof(*res));
	return append(w, REC_PUB);
}

int node_join_leave(struct worker *w, struct pstr channel, const struct client_info *ci, bool join)
{
	rec.len = 0;
	put_str16(channel);
	put_info(ci);
	return append(w, join ? REC_JOIN : REC_LEAVE);
}

int node_disconnect(struct worker *w, const struct node_target *t, const struct pstr *whitelist,
		    size_t nwhitelist, uint32_t code, struct pstr reason)
{
	rec.len = 0;
	put_u8(OP_DISCONNECT);
	put_target(t);
	put_u32(code);
	put_str16(reason);
	put_u32((uint32_t)nwhitelist);
	for (size_t i = 0; i < nwhitelist; i++)
		put_str16(whitelist[i]);
	return append(w, REC_CONTROL);
}

int node_unsubscribe(struct worker *w, const struct node_target *t, struct pstr channel)
{
	rec.len = 0;
	put_u8(OP_UNSUBSCRIBE);
	put_target(t);
	put_str16(channel);
	return append(w, REC_CONTROL);
}

int node_subscribe(struct worker *w, const struct node_target *t, const struct node_sub *s)
{
	rec.len = 0;
	put_u8(OP_SUBSCRIBE);
	put_target(t);
	put_str16(s->channel);
	put_str32(s->info);
	put_str32(s->data);
	put_u64((uint64_t)s->expire_at);
	put_u8(s->has_since);
	put_u64(s->since_offset);
	put_str16(s->since_epoch);
	put_u8((uint8_t)s->override.presence);
	put_u8((uint8_t)s->override.join_leave);
	put_u8((uint8_t)s->override.force_push_join_leave);
	put_u8((uint8_t)s->override.force_recovery);
	put_u8((uint8_t)s->override.force_positioning);
	return append(w, REC_CONTROL);
}

int node_refresh(struct worker *w, const struct node_target *t, bool expired, int64_t expire_at,
		 struct pstr info)
{
	rec.len = 0;
	put_u8(OP_REFRESH);
	put_target(t);
	put_u8(expired);
	put_u64((uint64_t)expire_at);
	put_str32(info);
	return append(w, REC_CONTROL);
}

/* ---- applying records ----------------------------------------------------- */

static void apply_pub(struct rd *r)
{
	struct client_info ci;
	struct publication p = { 0 };
	struct tag tags[64];
	struct pstr channel = get_str(r, 2);

	p.data = get_str(r, 4);
	if (get_info(r, &ci))
		p.info = &ci;
	uint16_t ntags = GET(r, uint16_t);
	for (uint16_t i = 0; i < ntags && !r->bad; i++) {
		struct tag t = { get_str(r, 2), get_str(r, 2) };
		if (i < ROTOR_ARRAY_LEN(tags))
			tags[p.ntags++] = t;
	}
	p.tags = tags;
	p.offset = GET(r, uint64_t);
	(void)get_str(r, 2); /* epoch */
	p.time = GET(r, int64_t);
	if (!r->bad)
		hub_publication(channel, &p);
}

static void apply_join_leave(struct rd *r, bool join)
{
	struct client_info ci;
	struct pstr channel = get_str(r, 2);
	if (get_info(r, &ci) && !r->bad)
		hub_join_leave(channel, &ci, join);
}

static void apply_control(struct rd *r)
{
	struct node_target t;
	uint8_t op = GET(r, uint8_t);

	get_target(r, &t);
	switch (op) {
	case OP_DISCONNECT: {
		uint32_t code = GET(r, uint32_t);
		struct pstr reason = get_str(r, 2);
		uint32_t n = GET(r, uint32_t);
		struct pstr wl[256];
		size_t nwl = 0;
		for (uint32_t i = 0; i < n && !r->bad; i++) {
			struct pstr s = get_str(r, 2);
			if (nwl < ROTOR_ARRAY_LEN(wl))
				wl[nwl++] = s;
		}
		if (!r->bad)
			client_apply_disconnect(&t, wl, nwl, code, reason);
		break;
	}
	case OP_UNSUBSCRIBE: {
		struct pstr channel = get_str(r, 2);
		if (!r->bad)
			client_apply_unsubscribe(&t, channel);
		break;
	}
	case OP_SUBSCRIBE: {
		struct node_sub s;
		s.channel = get_str(r, 2);
		s.info = get_str(r, 4);
		s.data = get_str(r, 4);
		s.expire_at = (int64_t)GET(r, uint64_t);
		s.has_since = GET(r, uint8_t);
		s.since_offset = GET(r, uint64_t);
		s.since_epoch = get_str(r, 2);
		s.override.presence = (int8_t)GET(r, uint8_t);
		s.override.join_leave = (int8_t)GET(r, uint8_t);
		s.override.force_push_join_leave = (int8_t)GET(r, uint8_t);
		s.override.force_recovery = (int8_t)GET(r, uint8_t);
		s.override.force_positioning = (int8_t)GET(r, uint8_t);
		if (!r->bad)
			client_apply_subscribe(&t, &s);
		break;
	}
	case OP_REFRESH: {
		bool expired = GET(r, uint8_t);
		int64_t expire_at = (int64_t)GET(r, uint64_t);
		struct pstr info = get_str(r, 4);
		if (!r->bad)
			client_apply_refresh(&t, expired, expire_at, info);
		break;
	}
	default:
		r->bad = true;
	}
}

static int on_record(void *arg, uint64_t seq, unsigned type, const void *data, size_t len)
{
	struct rd r = { data, (const unsigned char *)data + len, false };

	switch (type) {
	case REC_PUB: apply_pub(&r); break;
	case REC_JOIN: apply_join_leave(&r, true); break;
	case REC_LEAVE: apply_join_leave(&r, false); break;
	case REC_CONTROL: apply_control(&r); break;
	default: r.bad = true;
	}
	if (r.bad)
		log_error("bus: record %llu of type %u (%zu bytes) is malformed; skipped",
			  (unsigned long long)seq, type, len);
	return 0;
}

bool node_poll(struct worker *w)
{
	uint64_t lost = 0;
	bool any = false;

	for (;;) {
		int n = bus_read(&w->reader, on_record, w, 0, &lost);
		if (n > 0)
			any = true;
		if (lost > 0) {
			log_warn("bus: this worker fell behind and lost %llu record(s)",
				 (unsigned long long)lost);
			if (w->ctr)
				STATS_ADD(w->ctr, bus_lost, lost);
			continue;
		}
		if (n <= 0)
			return any;
	}
}

/* ---- survey-free statistics --------------------------------------------------- */

int node_channels(struct worker *w, node_channel_fn fn, void *arg)
{
	(void)w;
	(void)fn;
	(void)arg;
	return RT_ERR;
}

int node_info(struct worker *w, struct node_info *out)
{
	(void)w;
	(void)out;
	return RT_ERR;
}
