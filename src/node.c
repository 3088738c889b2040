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
 *            | u64 offset | str8 epoch | i64 time | u8 flags (PUB_DELTA;
 *            absent in records of rotord before it: 0)
 *            (a publish with an idempotency key seen before, or with a
 *            version its stream has passed, appends no record: that is
 *            decided under the bus lock, see publish_locked)
 *   JOIN/LEAVE  str16 channel | info
 *   CONTROL  u8 op | target (str16 user, str16 client, str16 session) | op fields
 *   EMU      u32 bus slot of the owner | str16 session | str32 commands
 *            | u32 bus slot of the sender | u64 tag
 *   EMU_ACK  u32 bus slot of the sender | u64 tag | u8 taken
 *   LISTEN   u32 bus slot of the sender | u64 tag | str16 channel
 *            (Redis engine: to the broker, which subscribes the node)
 *   LISTEN_ACK  u32 bus slot of the sender | u64 tag | u8 ok
 *   LOST     (nothing: the broker's link to Redis was down; every
 *            positioned subscription may have missed publications)
 *   SURVEY   u32 bus slot of the asker | u64 survey id | u32 code | str32 data
 *            (Redis engine: another node's answer, from the broker)
 *   info     u8 present | str16 user | str16 client | str32 conn_info | str32 chan_info
 *
 * A worker that was lapped lost records: it logs how many; subscriptions
 * that track stream positions treat that as insufficient state (history
 * comes with the channel table).
 */
#include "config.h"
#include "node.h"
#include "engine.h"
#include "smap.h"
#include "client.h"
#include "hub.h"
#include "json.h"
#include "log.h"
#include "util.h"
#include "worker.h"
#include "bus.h"
#include "chan.h"
#include "idem.h"
#include "pres.h"
#include "snap.h"
#include "stats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum {
	REC_PUB = 1,
	REC_JOIN = 2,
	REC_LEAVE = 3,
	REC_CONTROL = 4,
	REC_EMU = 5,
	REC_EMU_ACK = 6,
	REC_LISTEN = 7,
	REC_LISTEN_ACK = 8,
	REC_LOST = 9,
	REC_SURVEY = 10,
};

/* PUB flags. */
#define PUB_DELTA 0x01  /* the publisher asked for delta delivery */

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

/* Counts one message of TYPE (enum stats_node_msg) that this node sent
 * to its engine (SENT) or that came onto its bus, Centrifugo's
 * node_messages_sent_count and _received_count. With the memory engine
 * the bus is the broker: each publication counts once either way. */
static void count_msg(struct worker *w, unsigned type, bool sent)
{
	if (w->ctr == NULL)
		return;
	if (sent)
		STATS_BUMP(w->ctr, n.node_sent[type], 1);
	else
		STATS_BUMP(w->ctr, n.node_recv[type], 1);
}

/* The stats_node_msg of a bus record TYPE; STATS_MSGS for the others. */
static unsigned msg_type(unsigned type)
{
	switch (type) {
	case REC_PUB: return STATS_MSG_PUBLICATION;
	case REC_JOIN: return STATS_MSG_JOIN;
	case REC_LEAVE: return STATS_MSG_LEAVE;
	case REC_CONTROL: return STATS_MSG_CONTROL;
	default: return STATS_MSGS;
	}
}

/* Logs why appending the record built in REC as TYPE failed (errno). */
static void log_append_failed(struct worker *w, unsigned type)
{
	if (errno == EMSGSIZE)
		log_warn("bus: a %zu-byte record is over the bus's limit of %zu bytes (shm.bus_size)", rec.len,
			 bus_max_record(w->bus));
	else
		log_syscall("bus_append(type %u, %zu bytes)", type, rec.len);
}

/* Appends the record built in REC as TYPE. */
static int append(struct worker *w, unsigned type)
{
	if (msg_type(type) < STATS_MSGS)
		count_msg(w, msg_type(type), false);
	if (bus_append(w->bus, type, rec.buf, rec.len, NULL) < 0) {
		log_append_failed(w, type);
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

/* What the bus fill needs to put a publication into history as its record
 * is appended: the record's bytes (built outside the lock), where its
 * offset and epoch go, and the history record (NULL: none). */
struct pub_fill {
	struct worker *w;
	const struct node_pub *p;
	const struct hist_rec *hrec;
	size_t off_pos, epoch_pos;  /* in the bus record */
	struct hist_pos pos;
	int err;                    /* errno of a failed hist_append */
};

/* P's history options and version, as hist_append takes them. */
static struct hist_opts hist_opts_of(const struct node_pub *p)
{
	return (struct hist_opts){ p->history_size, p->history_ttl_ms, p->history_meta_ttl_ms, p->version,
				   p->version_epoch.p, p->version_epoch.n };
}

/* Encodes P's history record into HREC, outside any lock. RT_OK, RT_INVAL
 * (the caller's bad request: !node_history_fits) or RT_ERR (logged). */
static int encode_history(struct worker *w, const struct node_pub *p, struct hist_rec *hrec)
{
	struct hist_info hi;
	struct hist_tag tags[64];
	struct hist_pub hp = { .time_ms = util_wall_ms(), .data = p->data.p, .data_len = p->data.n };
	if (p->info) {
		hi = (struct hist_info){ p->info->user.p, p->info->user.n, p->info->client.p, p->info->client.n,
					 p->info->conn_info.p, p->info->conn_info.n, p->info->chan_info.p,
					 p->info->chan_info.n };
		hp.info = &hi;
	}
	for (size_t i = 0; i < p->ntags && i < ROTOR_ARRAY_LEN(tags); i++)
		tags[hp.ntags++] = (struct hist_tag){ p->tags[i].key.p, p->tags[i].key.n, p->tags[i].value.p,
						      p->tags[i].value.n };
	hp.tags = tags;
	struct hist_opts o = hist_opts_of(p);
	int err = hist_encode(hrec, &hp) < 0 ? ENOMEM : hist_append_check(w->ctab, p->channel.n, &o, hrec);
	if (err == ENAMETOOLONG)
		return RT_INVAL; /* the caller's bad request: !node_history_fits */
	if (err != 0) {
		log_warn("history: cannot keep a %zu-byte publication to a %zu-byte channel name: %s",
			 p->data.n, p->channel.n, strerror(err));
		return RT_ERR;
	}
	return RT_OK;
}

/* Runs under the bus lock: assigns the offset (taking the history lock,
 * after the bus one) and writes the record with it. */
static void fill_pub(void *dst, size_t len, uint64_t seq, void *arg)
{
	struct pub_fill *f = arg;
	const struct node_pub *p = f->p;
	struct hist_opts o = hist_opts_of(p);

	(void)seq;
	memcpy(dst, rec.buf, len);
	if (f->hrec == NULL)
		return;
	int rc = hist_append(f->w->ctab, p->channel.p, p->channel.n, &o, f->hrec, util_wall_ms(), &f->pos);
	if (rc != 0) {
		/* 1 cannot be: hist_version_check said it would append, and
		 * nothing else appends outside the bus lock. */
		f->err = rc < 0 ? errno : EALREADY;
		memset(&f->pos, 0, sizeof(f->pos));
		return; /* offset 0: subscribers tracking positions resynchronise */
	}
	memcpy((char *)dst + f->off_pos, &f->pos.offset, sizeof(f->pos.offset));
	memcpy((char *)dst + f->epoch_pos, f->pos.epoch, HIST_EPOCH_LEN);
}

static void result_of(struct node_pub_result *res, uint64_t offset, const char *epoch, bool suppressed)
{
	res->offset = offset;
	snprintf(res->epoch, sizeof(res->epoch), "%s", epoch);
	res->suppressed = suppressed;
}

_Static_assert(HIST_EPOCH_LEN <= IDEM_EPOCH_MAX, "a stream's epoch fits an idempotency result");

/* The steps of a publication that must be one across every process, with
 * the bus lock held: an idempotency key seen within IDEM_TTL_MS answers
 * its first result; a version the stream has passed answers the stream's
 * top; else the bus record with the history append in its fill, and the
 * key's result remembered. A process killed between the record and the
 * result being remembered leaves the key unknown: a retry publishes again
 * (at least once, as when Centrifugo's memory engine restarts). */
static int publish_locked(struct pub_fill *f, struct node_pub_result *res)
{
	struct worker *w = f->w;
	const struct node_pub *p = f->p;
	int64_t now = util_wall_ms();
	struct idem_result ir;
	struct hist_pos top;
	int found = 0;

	if (p->idempotency_key.n > 0 &&
	    (found = idem_get(w->idem, p->channel.p, p->channel.n, p->idempotency_key.p, p->idempotency_key.n,
			      now, &ir)) < 0) {
		/* Not knowing whether it was published: an error, not a risk of twice. */
		log_syscall("idem_get(%.*s)", (int)p->channel.n, p->channel.p);
		return RT_ERR;
	}
	if (found > 0) {
		result_of(res, ir.offset, ir.epoch, true);
		return RT_OK;
	}
	if (f->hrec != NULL && p->version != 0) {
		struct hist_opts o = hist_opts_of(p);
		int rc = hist_version_check(w->ctab, p->channel.p, p->channel.n, &o, now, &top);
		if (rc < 0) {
			log_syscall("hist_version_check(%.*s)", (int)p->channel.n, p->channel.p);
			return RT_ERR;
		}
		if (rc == 1) {
			result_of(res, top.offset, top.epoch, true);
			return RT_OK;
		}
	}
	count_msg(w, STATS_MSG_PUBLICATION, false);
	if (bus_append_locked(w->bus, REC_PUB, rec.len, fill_pub, f, NULL) < 0) {
		log_append_failed(w, REC_PUB);
		return RT_ERR;
	}
	if (f->err) {
		errno = f->err;
		log_syscall("hist_append(%.*s)", (int)p->channel.n, p->channel.p);
		return RT_ERR;
	}
	result_of(res, f->pos.offset, f->pos.offset ? f->pos.epoch : "", false);
	if (p->idempotency_key.n > 0) {
		ir.offset = res->offset;
		memcpy(ir.epoch, res->epoch, sizeof(ir.epoch)); /* "" or HIST_EPOCH_LEN letters */
		ir.epoch[IDEM_EPOCH_MAX] = '\0';
		if (idem_put(w->idem, p->channel.p, p->channel.n, p->idempotency_key.p, p->idempotency_key.n, &ir,
			     now, IDEM_TTL_MS) < 0)
			log_syscall("idem_put(%.*s)", (int)p->channel.n, p->channel.p);
	}
	return RT_OK;
}

int node_bus_publish(struct worker *w, const struct node_pub *p, struct node_pub_result *res)
{
	static struct hist_rec hrec;
	bool history = p->history_size > 0 && p->history_ttl_ms > 0 && !p->skip_history;
	struct pub_fill f = { .w = w, .p = p, .hrec = history ? &hrec : NULL };
	int rc;

	memset(res, 0, sizeof(*res));
	rec.len = 0;
	put_str16(p->channel);
	put_str32(p->data);
	put_info(p->info);
	put_u16((uint16_t)p->ntags);
	for (size_t i = 0; i < p->ntags; i++) {
		put_str16(p->tags[i].key);
		put_str16(p->tags[i].value);
	}
	f.off_pos = rec.len;
	put_u64(0);           /* offset, set under the lock */
	f.epoch_pos = rec.len + 2;
	put_str16(history ? (struct pstr){ "\0\0\0\0\0\0\0\0", HIST_EPOCH_LEN } : (struct pstr){ NULL, 0 });
	put_u64(0);           /* time */
	put_u8(p->delta ? PUB_DELTA : 0);
	if (!history && p->idempotency_key.n == 0)
		return append(w, REC_PUB);

	if (history && (rc = encode_history(w, p, &hrec)) != RT_OK)
		return rc;
	if (bus_lock(w->bus) < 0) {
		log_syscall("bus_lock(publication to %.*s)", (int)p->channel.n, p->channel.p);
		return RT_ERR;
	}
	rc = publish_locked(&f, res);
	bus_unlock(w->bus);
	return rc;
}

/* ---- the engine's operations ---------------------------------------------- */

void node_publish(struct worker *w, const struct node_pub *p, node_pub_fn *done, void *arg)
{
	count_msg(w, STATS_MSG_PUBLICATION, true);
	w->engine->publish(w, p, done, arg);
}

void node_history(struct worker *w, struct pstr channel, const struct hist_query *q,
		  node_history_fn *done, void *arg)
{
	w->engine->history(w, channel, q, done, arg);
}

void node_history_top(struct worker *w, struct pstr channel, uint64_t meta_ttl_ms, node_top_fn *done,
		      void *arg)
{
	w->engine->history_top(w, channel, meta_ttl_ms, done, arg);
}

void node_history_remove(struct worker *w, struct pstr channel, node_done_fn *done, void *arg)
{
	w->engine->history_remove(w, channel, done, arg);
}

void node_presence(struct worker *w, struct pstr channel, node_presence_fn *done, void *arg)
{
	w->engine->presence(w, channel, done, arg);
}

void node_presence_stats(struct worker *w, struct pstr channel, node_stats_fn *done, void *arg)
{
	w->engine->presence_stats(w, channel, done, arg);
}

void node_presence_add(struct worker *w, struct pstr channel, const struct client_info *ci)
{
	w->engine->presence_add(w, channel, ci);
}

void node_presence_remove(struct worker *w, struct pstr channel, const struct client_info *ci)
{
	w->engine->presence_remove(w, channel, ci);
}

void node_listen(struct worker *w, struct pstr channel, node_done_fn *done, void *arg)
{
	w->engine->listen(w, channel, done, arg);
}

bool node_presence_refresh(struct worker *w, bool first)
{
	return w->engine->presence_refresh(w, first);
}

bool node_history_fits(const struct worker *w, struct pstr channel)
{
	return channel.n <= w->ctab->name_max;
}

int node_join_leave(struct worker *w, struct pstr channel, const struct client_info *ci, bool join)
{
	count_msg(w, join ? STATS_MSG_JOIN : STATS_MSG_LEAVE, true);
	return w->engine->join_leave(w, channel, ci, join);
}

int node_bus_join_leave(struct worker *w, struct pstr channel, const struct client_info *ci, bool join)
{
	rec.len = 0;
	put_str16(channel);
	put_info(ci);
	return append(w, join ? REC_JOIN : REC_LEAVE);
}

int node_disconnect(struct worker *w, const struct node_target *t, const struct pstr *whitelist,
		    size_t nwhitelist, uint32_t code, struct pstr reason)
{
	count_msg(w, STATS_MSG_CONTROL, true);
	rec.len = 0;
	put_u8(OP_DISCONNECT);
	put_target(t);
	put_u32(code);
	put_str16(reason);
	put_u32((uint32_t)nwhitelist);
	for (size_t i = 0; i < nwhitelist; i++)
		put_str16(whitelist[i]);
	if (w->engine->disconnect)
		w->engine->disconnect(w, t, whitelist, nwhitelist, code, reason);
	return append(w, REC_CONTROL);
}

int node_unsubscribe(struct worker *w, const struct node_target *t, struct pstr channel)
{
	count_msg(w, STATS_MSG_CONTROL, true);
	rec.len = 0;
	put_u8(OP_UNSUBSCRIBE);
	put_target(t);
	put_str16(channel);
	if (w->engine->unsubscribe)
		w->engine->unsubscribe(w, t, channel);
	return append(w, REC_CONTROL);
}

int node_subscribe(struct worker *w, const struct node_target *t, const struct node_sub *s)
{
	count_msg(w, STATS_MSG_CONTROL, true);
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
	if (w->engine->subscribe)
		w->engine->subscribe(w, t, s);
	return append(w, REC_CONTROL);
}

int node_refresh(struct worker *w, const struct node_target *t, bool expired, int64_t expire_at,
		 struct pstr info)
{
	count_msg(w, STATS_MSG_CONTROL, true);
	rec.len = 0;
	put_u8(OP_REFRESH);
	put_target(t);
	put_u8(expired);
	put_u64((uint64_t)expire_at);
	put_str32(info);
	if (w->engine->refresh)
		w->engine->refresh(w, t, expired, expire_at, info);
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
	struct pstr epoch = get_str(r, 2);
	p.time = GET(r, int64_t);
	uint8_t flags = r->p < r->end ? GET(r, uint8_t) : 0;
	if (!r->bad)
		hub_publication(channel, &p, epoch, (flags & PUB_DELTA) != 0);
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

/* ---- emulation --------------------------------------------------------- */

static node_emulation_fn *emu_deliver;
static node_emulation_ack_fn *emu_ack;

void node_on_emulation(node_emulation_fn *deliver, node_emulation_ack_fn *ack)
{
	emu_deliver = deliver;
	emu_ack = ack;
}

int node_emulate(struct worker *w, unsigned slot, struct pstr session, struct pstr data, uint64_t tag)
{
	rec.len = 0;
	put_u32(slot);
	put_str16(session);
	put_str32(data);
	put_u32(w->bus_slot);
	put_u64(tag);
	return append(w, REC_EMU);
}

/* An EMU record: only its owner reads past the slot, delivers, and
 * answers the sender (an ack that cannot be appended leaves the sender's
 * POST to its timeout). */
static void apply_emu(struct worker *w, struct rd *r)
{
	uint32_t slot = GET(r, uint32_t);
	if (r->bad || slot != w->bus_slot)
		return;
	struct pstr session = get_str(r, 2);
	struct pstr data = get_str(r, 4);
	uint32_t from = GET(r, uint32_t);
	uint64_t tag = GET(r, uint64_t);
	if (r->bad || !emu_deliver)
		return;
	bool taken = emu_deliver(session, data);
	rec.len = 0;
	put_u32(from);
	put_u64(tag);
	put_u8(taken);
	append(w, REC_EMU_ACK);
}

static void apply_emu_ack(struct worker *w, struct rd *r)
{
	uint32_t slot = GET(r, uint32_t);
	if (r->bad || slot != w->bus_slot)
		return;
	uint64_t tag = GET(r, uint64_t);
	bool taken = GET(r, uint8_t);
	if (!r->bad && emu_ack)
		emu_ack(tag, taken);
}

static node_listen_fn *on_listen;
static node_listen_ack_fn *on_listen_ack;

void node_on_listen(node_listen_fn *listen, node_listen_ack_fn *ack)
{
	on_listen = listen;
	on_listen_ack = ack;
}

static void apply_listen(struct worker *w, struct rd *r)
{
	uint32_t slot = GET(r, uint32_t);
	uint64_t tag = GET(r, uint64_t);
	struct pstr ch = get_str(r, 2);
	if (!r->bad && on_listen)
		on_listen(w, slot, tag, ch);
}

static void apply_listen_ack(struct worker *w, struct rd *r)
{
	uint32_t slot = GET(r, uint32_t);
	uint64_t tag = GET(r, uint64_t);
	bool ok = GET(r, uint8_t);
	if (!r->bad && slot == w->bus_slot && on_listen_ack)
		on_listen_ack(w, tag, ok);
}

int node_bus_listen(struct worker *w, uint64_t tag, struct pstr channel)
{
	rec.len = 0;
	put_u32(w->bus_slot);
	put_u64(tag);
	put_str16(channel);
	return append(w, REC_LISTEN);
}

int node_bus_listen_ack(struct worker *w, unsigned slot, uint64_t tag, bool ok)
{
	rec.len = 0;
	put_u32(slot);
	put_u64(tag);
	put_u8(ok);
	return append(w, REC_LISTEN_ACK);
}

int node_bus_lost(struct worker *w)
{
	rec.len = 0;
	return append(w, REC_LOST);
}

static node_survey_fn *on_survey;

void node_on_survey(node_survey_fn *fn)
{
	on_survey = fn;
}

static void apply_survey(struct worker *w, struct rd *r)
{
	uint32_t slot = GET(r, uint32_t);
	if (r->bad || slot != w->bus_slot)
		return;
	uint64_t id = GET(r, uint64_t);
	uint32_t code = GET(r, uint32_t);
	struct pstr data = get_str(r, 4);
	if (!r->bad && on_survey)
		on_survey(w, id, code, data);
}

int node_bus_survey(struct worker *w, unsigned slot, uint64_t id, uint32_t code, struct pstr data)
{
	rec.len = 0;
	put_u32(slot);
	put_u64(id);
	put_u32(code);
	put_str32(data);
	return append(w, REC_SURVEY);
}

int node_bus_deliver(struct worker *w, struct pstr channel, const struct publication *p, struct pstr epoch,
		     bool delta)
{
	rec.len = 0;
	put_str16(channel);
	put_str32(p->data);
	put_info(p->info);
	put_u16((uint16_t)p->ntags);
	for (size_t i = 0; i < p->ntags; i++) {
		put_str16(p->tags[i].key);
		put_str16(p->tags[i].value);
	}
	put_u64(p->offset);
	put_str16(epoch);
	put_u64((uint64_t)p->time);
	put_u8(delta ? PUB_DELTA : 0);
	return append(w, REC_PUB);
}

/* Record bytes applied in this node_poll, and where it stops (0: never). */
static size_t poll_bytes, poll_budget;

static int on_record(void *arg, uint64_t seq, unsigned type, const void *data, size_t len)
{
	struct rd r = { data, (const unsigned char *)data + len, false };

	switch (type) {
	case REC_EMU: apply_emu(arg, &r); break;
	case REC_EMU_ACK: apply_emu_ack(arg, &r); break;
	case REC_PUB: apply_pub(&r); break;
	case REC_JOIN: apply_join_leave(&r, true); break;
	case REC_LEAVE: apply_join_leave(&r, false); break;
	case REC_CONTROL: apply_control(&r); break;
	case REC_LISTEN: apply_listen(arg, &r); break;
	case REC_LISTEN_ACK: apply_listen_ack(arg, &r); break;
	case REC_LOST: client_lost_state(); break;
	case REC_SURVEY: apply_survey(arg, &r); break;
	default: r.bad = true;
	}
	if (r.bad)
		log_error("bus: record %llu of type %u (%zu bytes) is malformed; skipped",
			  (unsigned long long)seq, type, len);
	poll_bytes += len;
	return poll_budget && poll_bytes >= poll_budget;
}

bool node_record_publication(unsigned type, const void *data, size_t len, struct pstr *channel)
{
	struct rd r = { data, (const unsigned char *)data + len, false };

	if (type != REC_PUB)
		return false;
	*channel = get_str(&r, 2);
	return !r.bad;
}

bool node_poll(struct worker *w)
{
	uint64_t lost = 0;
	bool any = false;

	/* A backlog applied in one go would queue all of it on a subscriber
	 * before the flush point writes any, and close a client that reads
	 * well as slow (3008). So a call applies about a quarter of
	 * client.queue_max_size, the flush point writes, and comes back. */
	poll_budget = w->conf->queue_max_size > 0 ? (size_t)w->conf->queue_max_size / 4 : 0;
	poll_bytes = 0;
	for (;;) {
		uint64_t voids = w->reader.voids;
		int n = bus_read(&w->reader, on_record, w, 0, &lost);
		if (n > 0)
			any = true;
		if (w->reader.voids != voids) {
			/* A worker died writing them: a publication among them may
			 * be in history with an offset no subscriber will see. */
			log_warn("bus: skipped %llu record(s) a dead worker was writing",
				 (unsigned long long)(w->reader.voids - voids));
			client_lost_state();
		}
		if (lost > 0) {
			log_warn("bus: this worker fell behind and lost %llu record(s)",
				 (unsigned long long)lost);
			if (w->ctr)
				STATS_ADD(w->ctr, bus_lost, lost);
			client_lost_state();
			continue;
		}
		if (n <= 0 || (poll_budget && poll_bytes >= poll_budget))
			return any;
	}
}

/* ---- snapshots: info and channels ---------------------------------------------- */

static struct {
	struct seg seg;           /* this worker's snapshot */
	uint64_t written_ver;     /* hub and client versions it shows */
	int64_t written_ms;
	struct seg peers[BUS_SLOTS_MAX]; /* other workers' snapshots, mapped on demand */
	struct smap others;       /* users of the other workers, with counts */
	int64_t others_ms;        /* when OTHERS was merged */
} N;

static char *snap_path(const struct worker *w, unsigned slot)
{
	return xasprintf("%s/rotor-%lld.snap.%u", w->conf->shm_dir, w->conf->port, slot);
}

int node_snapshot_init(struct worker *w)
{
	char *path = snap_path(w, w->bus_slot);
	int rc = seg_create(&N.seg, path, SEG_KIND_SNAP, SNAP_VERSION, SNAP_SEG_SIZE);
	if (rc < 0)
		log_syscall("creating the snapshot segment %s", path);
	free(path);
	N.written_ver = UINT64_MAX;
	return rc < 0 ? RT_ERR : RT_OK;
}

static void put_snap_chan(void *arg, const struct hub_chan *ch)
{
	(void)arg;
	put_str16((struct pstr){ ch->name, ch->len });
	put_u32(hub_chan_nsubs(ch));
}

static void put_snap_user(void *arg, const char *user, size_t len, uint64_t count)
{
	size_t *n = arg;
	put_str16((struct pstr){ user, len });
	put_u32((uint32_t)count);
	(*n)++;
}

/* Rewrites this worker's snapshot when what it shows changed, at most every
 * SNAP_EVERY_MS. Called from the worker's tick. */
#define SNAP_EVERY_MS 200
void node_snapshot(struct worker *w)
{
	uint64_t ver = hub_version() + client_version();
	if (N.seg.hdr == NULL || ver == N.written_ver || w->now_ms - N.written_ms < SNAP_EVERY_MS)
		return;
	rec.len = 0;
	hub_each(put_snap_chan, NULL);
	size_t nchan = hub_nchannels(), nusers = 0;
	client_each_user(put_snap_user, &nusers);

	struct snap_hdr *h = seg_payload(&N.seg);
	char *data = (char *)(h + 1);
	uint32_t len = rec.len <= SNAP_DATA_MAX ? (uint32_t)rec.len : 0;
	__atomic_store_n(&h->seq, h->seq + 1, __ATOMIC_RELAXED);  /* odd: writing */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	h->pid = (int32_t)getpid();
	if (len) /* with nothing to show rec.buf may still be NULL */
		memcpy(data, rec.buf, len);
	h->len = len;
	h->truncated = len != rec.len;
	h->nchannels = len ? (uint32_t)nchan : 0;
	h->nusers = len ? (uint32_t)nusers : 0;
	h->nclients = (uint32_t)client_count();
	h->nsubs = (uint32_t)hub_nsubs();
	__atomic_store_n(&h->seq, h->seq + 1, __ATOMIC_RELEASE); /* even: done */
	if (len != rec.len)
		log_warn("snapshot: %zu bytes of channels and users do not fit in %u; info and channels "
			 "show counts only", rec.len, SNAP_DATA_MAX);
	N.written_ver = ver;
	N.written_ms = w->now_ms;
}

/* Copies the snapshot of the live worker in bus slot SLOT (pid PID) into
 * OUT (its data) and *HDR. Returns false when it cannot be read whole. */
static bool read_snap(struct worker *w, unsigned slot, int32_t pid, struct jw *out, struct snap_hdr *hdr)
{
	struct seg *s = slot == w->bus_slot ? &N.seg : &N.peers[slot];
	if (s->hdr == NULL || s->hdr->creator != pid) {
		char *path = snap_path(w, slot);
		if (s != &N.seg)
			seg_detach(s);
		int rc = seg_attach(s, path, SEG_KIND_SNAP, SNAP_VERSION, true);
		free(path);
		if (rc < 0)
			return false;
	}
	const struct snap_hdr *h = seg_payload(s);
	for (int tries = 0; tries < 100; tries++) {
		uint64_t seq = __atomic_load_n(&h->seq, __ATOMIC_ACQUIRE);
		if (seq & 1)
			continue;
		memcpy(hdr, h, sizeof(*hdr));
		uint32_t len = hdr->len <= SNAP_DATA_MAX ? hdr->len : 0;
		out->len = 0;
		jw_raw(out, h + 1, len);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&h->seq, __ATOMIC_RELAXED) == seq)
			return hdr->pid == pid;
	}
	return false;
}

/* The live workers' snapshots merged: channels and users with their
 * node-wide counts, and the summed client and subscription counts. */
struct merged {
	struct smap chans, users;
	uint32_t nclients, nsubs;
};

/* Merges the snapshots of every live worker (but this one when
 * WITHOUT_SELF) into M. */
static void merge_all(struct worker *w, struct merged *m, bool without_self)
{
	struct stats_block *b = stats_blocks(seg_payload(w->stats_seg));
	struct jw buf = { 0 };
	for (unsigned i = 0; i < BUS_SLOTS_MAX && i < STATS_SLOTS; i++) {
		int32_t pid = __atomic_load_n(&b[i].pid, __ATOMIC_RELAXED);
		struct snap_hdr h;
		if (pid <= 0 || (without_self && i == w->bus_slot))
			continue;
		if (i == w->bus_slot)
			node_snapshot_now(w);
		if (!read_snap(w, i, pid, &buf, &h))
			continue;
		m->nclients += h.nclients;
		m->nsubs += h.nsubs;
		if (buf.len == 0)
			continue; /* no names (and buf.buf may be NULL: no NULL + 0 below) */
		struct rd r = { (const unsigned char *)buf.buf, (const unsigned char *)buf.buf + buf.len, false };
		for (uint32_t k = 0; k < h.nchannels && !r.bad; k++) {
			struct pstr name = get_str(&r, 2);
			uint32_t count = GET(&r, uint32_t);
			if (!r.bad)
				smap_add(&m->chans, name.p, name.n, count);
		}
		for (uint32_t k = 0; k < h.nusers && !r.bad; k++) {
			struct pstr name = get_str(&r, 2);
			uint32_t count = GET(&r, uint32_t);
			if (!r.bad)
				smap_add(&m->users, name.p, name.n, count);
		}
	}
	jw_free(&buf);
}

static void merged_free(struct merged *m)
{
	smap_clear(&m->chans);
	smap_clear(&m->users);
}

uint64_t node_user_connections(struct worker *w, const char *user, size_t n)
{
	if (w->now_ms - N.others_ms >= SNAP_EVERY_MS || N.others_ms == 0) {
		struct merged m = { 0 };
		merge_all(w, &m, true);
		smap_clear(&m.chans);
		smap_clear(&N.others);
		N.others = m.users;
		N.others_ms = w->now_ms;
	}
	return smap_get(&N.others, user, n);
}

/* This worker's own snapshot, brought up to date at once (the caller reads
 * it right away: a subscription made a moment ago must show). */
void node_snapshot_now(struct worker *w)
{
	N.written_ms = INT64_MIN / 2;
	node_snapshot(w);
}

uint64_t node_clients(struct worker *w)
{
	const struct stats_block *b = stats_blocks(seg_payload(w->stats_seg));
	uint64_t n = client_count();
	for (unsigned i = 0; i < STATS_SLOTS; i++)
		if (i != w->bus_slot && __atomic_load_n(&b[i].pid, __ATOMIC_RELAXED) > 0)
			n += __atomic_load_n(&b[i].clients, __ATOMIC_RELAXED);
	return n;
}

struct chan_cb {
	node_channel_fn fn;
	void *arg;
};

static void each_channel(void *arg, const char *name, size_t n, uint64_t count)
{
	struct chan_cb *cb = arg;
	cb->fn(cb->arg, (struct pstr){ name, n }, (uint32_t)count);
}

int node_channels(struct worker *w, node_channel_fn fn, void *arg)
{
	struct merged m = { 0 };
	struct chan_cb cb = { fn, arg };
	merge_all(w, &m, false);
	smap_each(&m.chans, each_channel, &cb);
	merged_free(&m);
	return RT_OK;
}

void node_channels_others(struct worker *w, struct pstr pattern, node_channel_fn fn, node_done_fn *done,
			  void *arg)
{
	if (w->engine->channels)
		w->engine->channels(w, pattern, fn, done, arg);
	else
		done(arg, RT_OK);
}

void node_emulate_remote(struct worker *w, struct pstr node, struct pstr session, struct pstr data,
			 node_emu_fn *done, void *arg)
{
	if (w->engine->emulate)
		w->engine->emulate(w, node, session, data, done, arg);
	else
		done(arg, NODE_EMU_NO_NODE);
}

/* This process's own answer: the broker's links, or its engine's. */
static bool own_health(struct worker *w, char *why, size_t n)
{
	if (w->broker)
		return broker_health(why, n);
	return w->engine == NULL || w->engine->health == NULL || w->engine->health(w, why, n);
}

void node_health_report(struct worker *w)
{
	char why[256];
	if (w->ctr != NULL)
		__atomic_store_n(&w->ctr->engine, own_health(w, why, sizeof(why)) ? STATS_ENGINE_UP : STATS_ENGINE_DOWN,
				 __ATOMIC_RELAXED);
}

/* A load balancer asks one worker for the whole node: a client it sends
 * here may land on any worker, and its subscriptions go through the
 * broker. So the others' last reports count too (stale by a tick at most). */
bool node_health(struct worker *w, char *why, size_t n)
{
	if (!own_health(w, why, n))
		return false;
	if (w->stats_seg == NULL)
		return true;
	const struct stats_hdr *h = seg_payload(w->stats_seg);
	uint32_t gen = STATS_ROUTE_GEN(__atomic_load_n(&h->route, __ATOMIC_ACQUIRE));
	const struct stats_block *b = stats_blocks(seg_payload(w->stats_seg));
	struct engine_plan p;
	bool broker = w->broker || engine_plan(w->conf, &p, NULL) != RT_OK || !p.broker_redis;
	for (unsigned i = 0; i < STATS_SLOTS && i < BUS_SLOTS_MAX; i++) {
		int32_t slot = __atomic_load_n(&b[i].slot, __ATOMIC_RELAXED);
		bool is_broker = slot == STATS_SLOT_BROKER;
		if (i == w->bus_slot || __atomic_load_n(&b[i].pid, __ATOMIC_RELAXED) <= 0 ||
		    __atomic_load_n(&b[i].state, __ATOMIC_RELAXED) != 1 ||
		    (!is_broker && __atomic_load_n(&b[i].gen, __ATOMIC_RELAXED) != gen))
			continue;
		/* One that has not reported yet accepts nobody yet either (the
		 * report comes before its loop runs). */
		broker |= is_broker;
		if (__atomic_load_n(&b[i].engine, __ATOMIC_RELAXED) == STATS_ENGINE_DOWN) {
			if (is_broker)
				snprintf(why, n, "broker: its Redis links are not all up");
			else
				snprintf(why, n, "worker %d: its Redis links are not all up", slot);
			return false;
		}
	}
	if (!broker) {
		snprintf(why, n, "broker: not running");
		return false;
	}
	return true;
}

void node_peers(struct worker *w, void (*fn)(void *arg, const struct node_info *ni), void *arg)
{
	/* The broker's registry: one line per node, tab-separated (broker.c). */
	char *path = xasprintf("%s/rotor-%lld.nodes", w->conf->shm_dir, w->conf->port);
	FILE *f = fopen(path, "r");
	char line[1024];
	free(path);
	if (f == NULL)
		return;
	while (fgets(line, sizeof(line), f)) {
		struct node_info ni = { 0 };
		char *save, *uid = strtok_r(line, "\t", &save);
		unsigned long long v[5] = { 0 };
		int k = 0;
		for (char *t; k < 5 && (t = strtok_r(NULL, "\t", &save)) != NULL; k++)
			v[k] = strtoull(t, NULL, 10);
		char *version = strtok_r(NULL, "\t", &save), *name = strtok_r(NULL, "\n", &save);
		if (uid == NULL || k < 5 || version == NULL)
			continue;
		snprintf(ni.uid, sizeof(ni.uid), "%s", uid);
		ni.num_clients = (uint32_t)v[0];
		ni.num_users = (uint32_t)v[1];
		ni.num_channels = (uint32_t)v[2];
		ni.num_subs = (uint32_t)v[3];
		ni.uptime = (int64_t)v[4];
		ni.version = version;
		ni.name = name ? name : "";
		fn(arg, &ni);
	}
	fclose(f);
}

const char *node_uid(struct worker *w)
{
	static char uid[37];

	if (uid[0] == '\0') {
		const struct stats_hdr *sh = seg_payload(w->stats_seg);
		memcpy(uid, sh->uid, 36);
	}
	return uid;
}

int node_info(struct worker *w, struct node_info *out)
{
	static char name[300];
	const struct stats_hdr *sh = seg_payload(w->stats_seg);
	struct merged m = { 0 };

	merge_all(w, &m, false);
	memset(out, 0, sizeof(*out));
	memcpy(out->uid, sh->uid, 36);
	out->uid[36] = '\0';
	if (w->conf->node_name[0] != '\0') {
		snprintf(name, sizeof(name), "%s", w->conf->node_name);
	} else {
		char host[256] = "localhost";
		gethostname(host, sizeof(host) - 1);
		snprintf(name, sizeof(name), "%s_%lld", host, w->conf->port);
	}
	out->name = name;
	out->version = PACKAGE_VERSION;
	out->num_clients = m.nclients;
	out->num_users = (uint32_t)m.users.n;
	out->num_channels = (uint32_t)m.chans.n;
	out->num_subs = m.nsubs;
	out->uptime = (util_wall_ms() - sh->master_start_ms) / 1000;
	merged_free(&m);
	return RT_OK;
}
