/*
 * client.c - one client session: Centrifugo's client protocol state machine.
 *
 * Model: a session is created by a transport after its handshake, is fed
 * whole frames (client_frame), and answers through the transport's ops: it
 * never touches a socket. Commands of a frame are handled in order, each to
 * completion, so a connect pipelined with subscribes in one frame is done
 * before they are. States:
 *
 *   NEW --connect ok--> CONNECTED --disconnect--> CLOSED
 *    \--connect error (109, 110)--> FAILED (any further command: 3501)
 *
 * Timers: one wheel timer per session, armed at the earliest of its
 * deadlines (stale before connect; next ping, pong due, expiry after). Time
 * is the worker's cached monotonic now_ms; token times are wall-clock
 * seconds.
 *
 * Ownership: the session owns its subscriptions (csub, linked into the hub),
 * its user, info and id. It is freed only when the transport reports that it
 * is gone (client_transport_closed); client_disconnect just asks the
 * transport to close and makes the session deaf.
 */
#include "config.h"
#include "client.h"
#include "b64.h"
#include "chan.h"
#include "channel.h"
#include "conn.h"
#include "hub.h"
#include "json.h"
#include "jwks.h"
#include "log.h"
#include "node.h"
#include "proxy.h"
#include "smap.h"
#include "stats.h"
#include "token.h"
#include "util.h"
#include "worker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CMDS_PER_FRAME 1024

enum { CS_NEW, CS_CONNECTED, CS_FAILED, CS_CLOSED };

struct client {
	struct client *next, *prev;   /* the worker's sessions */
	const struct transport_ops *tops;
	void *t;
	uint8_t fmt;                  /* enum proto_fmt */
	uint8_t state;
	uint8_t flags;                /* CLIENT_* */
	bool ping_sent;               /* a ping went out and no pong came back yet */
	bool closed_by_transport;
	uint8_t tidx;                 /* enum stats_transport */
	const char *fail_reason;
	char id[37];
	struct pstr session;          /* emulation transports; owned */
	char *user;                   /* "" for anonymous */
	struct pstr info;             /* conn_info, owned */
	int64_t expire_at;            /* unix seconds; 0: never */
	struct wheel_timer timer;
	int64_t stale_at, ping_at, pong_at, expire_close_at; /* monotonic ms; 0: none */
	struct csub **subs;
	uint16_t nsubs, capsubs;
	uint32_t fail_code;           /* a failed connect's own error or disconnect code;
				       * beside nsubs, where it fills what would be padding */
	struct stall *stall;          /* waiting for the engine, see below */
	struct client_backend *be;    /* what the proxies keep; NULL until one needs it */
};

/* A session's state that only the proxies need, apart so that a session
 * that never meets one pays a pointer. Owned by its client. */
struct client_backend {
	struct proxy_headers *hdrs;   /* the HTTP headers proxies pass on; owned */
	struct pstr meta;             /* connection meta from the connect proxy; owned */
	struct proxy_call *refreshing; /* the refresh proxy call in flight */
	struct subref *subrefs;       /* sub_refresh proxy calls in flight */
};

/* C's proxy state, made on first use. */
static struct client_backend *backend_of(struct client *c)
{
	if (c->be == NULL)
		c->be = xcalloc(1, sizeof(*c->be));
	return c->be;
}

static struct {
	struct worker *w;
	struct client *all;
	size_t n;                     /* sessions that completed connect */
	uint64_t version;             /* bumped when a session connects or ends */
	struct smap users;            /* user -> connected sessions on this worker */
	struct jw out;                /* scratch encoder for replies */
	struct tok_keys conn_keys;
	struct tok_keys sub_keys;
	bool sub_keys_own;            /* client.subscription_token.enabled */
	struct chan_cfg *chans;
	struct proxy_set *proxies;
	struct uni_code {             /* client.connect_code_to_unidirectional_disconnect */
		uint32_t code, to;
		char reason[128];
	} *uni;
	size_t nuni;
	unsigned char rnd[4096];      /* random bytes for client ids */
	size_t rnd_used;
} S;

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_s(void)
{
	return util_wall_ms() / 1000;
}

static bool pstr_eq(struct pstr a, const char *s)
{
	size_t n = strlen(s);
	return a.n == n && (n == 0 || memcmp(a.p, s, n) == 0); /* an empty A's p may be NULL */
}

/* A version 4 UUID in text form, from a pool of kernel randomness. */
static void make_uuid(char out[37])
{
	if (S.rnd_used == 0 || S.rnd_used + 16 > sizeof(S.rnd)) {
		if (util_random(S.rnd, sizeof(S.rnd)) != RT_OK)
			abort(); /* no randomness: nothing safe to hand out */
		S.rnd_used = 0;
	}
	util_uuid4(S.rnd + S.rnd_used, out);
	S.rnd_used += 16;
	out[36] = '\0';
}

enum proto_fmt client_fmt(const struct client *c)
{
	return (enum proto_fmt)c->fmt;
}

static struct client_info my_info(const struct client *c)
{
	struct client_info ci = { pstr_c(c->user), { c->id, 36 }, c->info, { NULL, 0 } };
	return ci;
}

/* ---- output ----------------------------------------------------------- */

/* This worker's stats block (a private one when it has none: unit tests). */
static struct stats_block *ctr(void)
{
	static struct stats_block none;
	return S.w != NULL && S.w->ctr != NULL ? S.w->ctr : &none;
}

/* Sends what the scratch encoder holds, then empties it. */
static void send_out(struct client *c)
{
	if (c->state != CS_CLOSED && S.out.len > 0) {
		STATS_BUMP(ctr(), n.t_sent[c->tidx], 1);
		STATS_BUMP(ctr(), n.t_sent_bytes[c->tidx], S.out.len);
		c->tops->send_copy(c->t, S.out.buf, S.out.len);
	}
	S.out.len = 0;
}

/* Answers command ID of type METHOD (CMD_*) with error CODE, and counts it. */
/* Replies to command METHOD/ID with error CODE, MESSAGE and TEMPORARY
 * (a backend's own error), counted in the stats. */
static void reply_error_as(struct client *c, enum cmd_type method, uint32_t id, uint32_t code,
			   const char *message, bool temporary)
{
	unsigned k = code >= 100 && code < 100 + STATS_CODE_OTHER ? code - 100 : STATS_CODE_OTHER;
	STATS_BUMP(ctr(), n.reply_err[method - CMD_CONNECT][k], 1);
	S.out.len = 0;
	proto_reply_error(&S.out, c->fmt, id, code, message, temporary);
	send_out(c);
}

static void reply_error(struct client *c, enum cmd_type method, uint32_t id, uint32_t code)
{
	reply_error_as(c, method, id, code, proto_error_text(code), proto_error_temporary(code));
}

/* Fan-out counts, by transport: kept here and added to the worker's block
 * once per loop iteration (client_count_flush), not once per delivery. */
static uint64_t pushed[STATS_TRANSPORTS], pushed_bytes[STATS_TRANSPORTS];

void client_push(struct client *c, struct rbuf *b, size_t off, size_t len)
{
	if (c->state == CS_CONNECTED) {
		pushed[c->tidx]++;
		pushed_bytes[c->tidx] += len;
		c->tops->send(c->t, b, off, len);
	}
}

void client_count_flush(struct worker *w)
{
	(void)w;
	for (unsigned t = 0; t < STATS_TRANSPORTS; t++) {
		if (pushed[t] == 0)
			continue;
		STATS_BUMP(ctr(), n.t_sent[t], pushed[t]);
		STATS_BUMP(ctr(), n.t_sent_bytes[t], pushed_bytes[t]);
		pushed[t] = pushed_bytes[t] = 0;
	}
}

/* ---- timers -------------------------------------------------------------- */

static void arm(struct client *c)
{
	int64_t at = 0;
	const int64_t d[] = { c->stale_at, c->ping_at, c->pong_at, c->expire_close_at };
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(d); i++)
		if (d[i] && (at == 0 || d[i] < at))
			at = d[i];
	for (uint16_t i = 0; i < c->nsubs; i++)
		if (c->subs[i]->close_at && (at == 0 || c->subs[i]->close_at < at))
			at = c->subs[i]->close_at;
	if (at)
		wheel_add(&S.w->wheel, &c->timer, at);
	else
		wheel_cancel(&S.w->wheel, &c->timer);
}

static void send_ping(struct client *c)
{
	const struct conf *k = S.w->conf;
	S.out.len = 0;
	proto_ping(&S.out, c->fmt);
	send_out(c);
	c->ping_at = S.w->now_ms + k->ping_interval_ms;
	if (c->flags & CLIENT_UNI)
		return; /* nothing can come back */
	c->ping_sent = true;
	if (k->pong_timeout_ms > 0)
		c->pong_at = S.w->now_ms + k->pong_timeout_ms;
}

static void drop_sub(struct client *c, struct csub *s);

/* Ends subscription S for a server-side reason: a client-side one with an
 * unsubscribe push of UNSUB_CODE, a server-side one (which a client cannot
 * resubscribe) with the whole connection, DISC_CODE. REASON serves both.
 * Returns false when the connection ended. */
static bool end_sub(struct client *c, struct csub *s, uint32_t unsub_code, uint32_t disc_code,
		    const char *reason)
{
	if (s->flags & CSUB_SERVER_SIDE) {
		client_disconnect(c, disc_code, reason);
		return false;
	}
	struct pstr name = { s->ch->name, s->ch->len };
	S.out.len = 0;
	proto_push_unsubscribe(&S.out, c->fmt, name, unsub_code, reason);
	send_out(c);
	drop_sub(c, s);
	return true;
}

static struct proxy_req px_req(struct client *c);
static void presence_add(struct client *c, struct csub *s);

/* A sub_refresh proxy call in flight for subscription S of C. */
struct subref {
	struct subref *next;
	struct client *c;
	struct csub *s;
	struct proxy_call *call;
};

static void subref_unlink(struct subref *r)
{
	for (struct subref **p = &r->c->be->subrefs; *p; p = &(*p)->next)
		if (*p == r) {
			*p = r->next;
			return;
		}
}

/* Cancels the sub_refresh call of S (every one of C's when S is NULL). */
static void subref_cancel(struct client *c, const struct csub *s)
{
	if (c->be == NULL)
		return;
	for (struct subref **p = &c->be->subrefs; *p;) {
		struct subref *r = *p;
		if (s != NULL && r->s != s) {
			p = &r->next;
			continue;
		}
		*p = r->next;
		proxy_cancel(r->call);
		free(r);
	}
}

/* When a subscription refreshed by the sub_refresh proxy is refreshed
 * again: at EXPIRE_AT itself (no client-side refresh, so no delay). */
static int64_t sub_refresh_at(int64_t expire_at)
{
	if (expire_at <= 0)
		return 0;
	int64_t left_ms = (expire_at - now_s()) * 1000;
	int64_t at = S.w->now_ms + (left_ms > 0 ? left_ms : 0);
	return at > 0 ? at : 1;
}

/* The sub_refresh proxy answered (Centrifugo's rules): a failed call gives
 * the subscription another minute; a result not expired extends it (0:
 * for ever) with its info; anything else ends it (2501). */
static void on_sub_refreshed(void *arg, struct proxy_answer *a)
{
	struct subref *r = arg;
	struct client *c = r->c;
	struct csub *s = r->s;
	int64_t now = now_s();

	subref_unlink(r);
	free(r);
	if (c->state != CS_CONNECTED) {
		proxy_answer_free(a);
		return;
	}
	if (a->outcome == PROXY_FAILED) {
		s->expire_at = now + 60;
	} else if (a->outcome == PROXY_RESULT && !a->expired && (a->expire_at <= 0 || a->expire_at >= now)) {
		if (a->has_info) {
			pstr_free(&s->chan_info);
			s->chan_info = pstr_dup(a->info);
			if (s->flags & CSUB_PRESENCE)
				presence_add(c, s);
		}
		s->expire_at = a->expire_at > 0 ? a->expire_at : 0;
	} else {
		proxy_answer_free(a);
		end_sub(c, s, 2501, 3006, "subscription expired");
		return;
	}
	proxy_answer_free(a);
	s->close_at = sub_refresh_at(s->expire_at);
	arm(c);
}

/* The sub_refresh proxy for subscription S, or NULL when its namespace
 * does not refresh through one. */
static const struct proxy *sub_refresh_proxy(const struct csub *s)
{
	const struct chan_opts *o = chan_lookup(S.chans, (struct pstr){ s->ch->name, s->ch->len }, NULL);
	return o && o->sub_refresh_proxy ? proxy_find(S.proxies, PROXY_SUB_REFRESH, o->sub_refresh_proxy_name) : NULL;
}

/* Ends the subscriptions whose expiry passed without a refresh (2501, or
 * 3006 for a server-side one), or asks the sub_refresh proxy about them. */
static void expire_subs(struct client *c, int64_t now)
{
	for (uint16_t i = c->nsubs; i-- > 0;) {
		struct csub *s = c->subs[i];
		if (!s->close_at || now < s->close_at)
			continue;
		const struct proxy *p = sub_refresh_proxy(s);
		if (p != NULL) {
			struct subref *r = xcalloc(1, sizeof(*r));
			struct proxy_req q = px_req(c);
			q.channel = (struct pstr){ s->ch->name, s->ch->len };
			r->c = c;
			r->s = s;
			r->next = backend_of(c)->subrefs;
			c->be->subrefs = r;
			s->close_at = 0;
			r->call = proxy_call(p, PROXY_SUB_REFRESH, &q, on_sub_refreshed, r);
			continue;
		}
		if (!end_sub(c, s, 2501, 3006, "subscription expired"))
			return;
	}
}

static void set_expiry(struct client *c, int64_t expire_at);

/* The refresh proxy answered for C (server-side refresh, Centrifugo's
 * rules): a failed call gives the connection another minute; a result that
 * is not expired and moves expire_at into the future extends it (with its
 * info and meta); anything else ends it with 3005. */
static void on_refreshed(void *arg, struct proxy_answer *a)
{
	struct client *c = arg;
	int64_t now = now_s();

	c->be->refreshing = NULL;
	if (c->state != CS_CONNECTED) {
		proxy_answer_free(a);
		return;
	}
	if (a->outcome == PROXY_FAILED) {
		set_expiry(c, now + 60);
	} else if (a->outcome == PROXY_RESULT && !a->expired && a->expire_at > now) {
		if (a->has_info) {
			pstr_free(&c->info);
			c->info = pstr_dup(a->info);
			for (uint16_t i = 0; i < c->nsubs; i++)
				if (c->subs[i]->flags & CSUB_PRESENCE)
					presence_add(c, c->subs[i]);
		}
		if (a->has_meta) {
			pstr_free(&c->be->meta);
			c->be->meta = pstr_dup(a->meta);
		}
		set_expiry(c, a->expire_at);
	} else {
		proxy_answer_free(a);
		client_disconnect(c, 3005, "connection expired");
		return;
	}
	proxy_answer_free(a);
	arm(c);
}

/* C's connection expired and the refresh proxy decides (no client-side
 * refresh): asks it, unless a call is in flight. */
static void refresh_proxy(struct client *c)
{
	if (c->be && c->be->refreshing)
		return;
	struct proxy_req q = px_req(c);
	backend_of(c)->refreshing = proxy_call(proxy_find(S.proxies, PROXY_REFRESH, NULL), PROXY_REFRESH, &q, on_refreshed, c);
}

static void on_timer(struct wheel_timer *t)
{
	struct client *c = (struct client *)((char *)t - offsetof(struct client, timer));
	int64_t now = S.w->now_ms;

	if (c->state == CS_CLOSED)
		return;
	if (c->stale_at && now >= c->stale_at) {
		client_disconnect(c, 3502, "stale");
		return;
	}
	if (c->pong_at && now >= c->pong_at) {
		client_disconnect(c, 3012, "no pong");
		return;
	}
	if (c->expire_close_at && now >= c->expire_close_at) {
		if (!proxy_enabled(S.proxies, PROXY_REFRESH)) {
			client_disconnect(c, 3005, "connection expired");
			return;
		}
		c->expire_close_at = 0;
		refresh_proxy(c);
	}
	if (c->ping_at && now >= c->ping_at)
		send_ping(c);
	expire_subs(c, now);
	if (c->state == CS_CLOSED)
		return;
	arm(c);
}

/* Schedules the first ping at a random moment in [interval/2, interval), so
 * that a reconnect storm does not ping in lockstep. */
static void start_pings(struct client *c)
{
	long long iv = S.w->conf->ping_interval_ms;
	if ((c->flags & CLIENT_NATIVE_PING) || iv <= 0)
		return;
	uint32_t r;
	memcpy(&r, c->id, sizeof(r)); /* hex digits of a random id: random enough */
	c->ping_at = S.w->now_ms + iv / 2 + (int64_t)(r % (uint32_t)(iv / 2 + 1));
}

/* Sets when an expiring connection is closed unless refreshed. */
static void set_expiry(struct client *c, int64_t expire_at)
{
	c->expire_at = expire_at;
	c->expire_close_at = 0;
	if (expire_at > 0) {
		int64_t left_ms = (expire_at - now_s()) * 1000;
		/* With the refresh proxy, the server refreshes at expiry itself. */
		int64_t delay = proxy_enabled(S.proxies, PROXY_REFRESH) ? 0 : S.w->conf->expired_close_delay_ms;
		c->expire_close_at = S.w->now_ms + (left_ms > 0 ? left_ms : 0) + delay;
		if (c->expire_close_at == 0)
			c->expire_close_at = 1;
	}
}

/* ---- waiting for the engine ----------------------------------------------
 *
 * The engine (node.h) answers at once or later. A command whose answer
 * comes later stalls its session: the commands after it, in the same frame
 * and in frames that arrive meanwhile, wait, so a client's commands are
 * still handled in the order it sent them. Two kinds of commands wait:
 *
 * - publish, history, presence: their callback writes the reply, and the
 *   session goes on with the next command;
 * - subscribe and connect, whose position reads (eng_top, eng_history)
 *   happen before anything else changes: the command gives up when a read
 *   is pending and is handled again from the start (replayed) once every
 *   read it asked for is answered, finding the answers in the cache.
 *
 * A session that ends while it waits detaches its stall (st->c = NULL);
 * the engine's callbacks then only free what is theirs. */

enum { ER_LISTEN, ER_TOP, ER_HISTORY, ER_PROXY };

/* A position read for the command being handled, and its answer. */
struct eng_res {
	struct eng_res *next;
	struct stall *st;             /* to tell when it is answered; NULL when at once */
	uint8_t kind;
	bool done;
	int rc;
	struct pstr channel;          /* owned */
	uint64_t top;
	char epoch[NODE_EPOCH_MAX + 1];
	struct node_history h;        /* ER_HISTORY: owned copies */
	struct proxy_answer *px;      /* ER_PROXY: owned */
};

/* What came for a stalled session: a frame, or a server-side subscribe. */
struct backlog {
	struct backlog *next;
	struct node_sub *ssub;        /* a deep copy, or NULL for a frame */
	size_t len;
	char data[];
};

enum { RP_FRAME, RP_UNI, RP_SERVER_SUB };

struct stall {
	struct client *c;             /* NULL once the session ended */
	unsigned pending;             /* answers still awaited */
	bool replay;                  /* handle command INDEX again (else go on after it) */
	bool saved;                   /* what to go on with is saved below */
	uint8_t what;                 /* RP_* */
	char *frame;                  /* RP_FRAME, RP_UNI: a copy */
	size_t len, index;
	struct node_sub *ssub;        /* RP_SERVER_SUB: a deep copy */
	struct eng_res *cache;        /* the reads of the command to replay */
	struct backlog *backlog, **tail;
	struct pxwait *px;            /* proxy calls in flight, cancelled if the session ends */
};

static void client_run(struct client *c, const char *data, size_t len, size_t from);
static void replay_server_sub(struct client *c, const struct node_sub *ns);

static struct eng_res *S_cache;   /* the reads of the command being handled */
static void cache_drop(void);

#define ENG_PENDING (-2)

static void eng_res_free(struct eng_res *e)
{
	while (e) {
		struct eng_res *next = e->next;
		pstr_free(&e->channel);
		proxy_answer_free(e->px);
		for (size_t i = 0; i < e->h.n; i++)
			free(e->h.blocks[i]);
		free(e->h.blocks);
		free(e->h.v);
		free(e);
		e = next;
	}
}

static struct stall *stall_of(struct client *c)
{
	if (c->stall == NULL) {
		c->stall = xcalloc(1, sizeof(*c->stall));
		c->stall->c = c;
		c->stall->tail = &c->stall->backlog;
	}
	return c->stall;
}

static struct node_sub *ssub_copy(const struct node_sub *ns)
{
	struct node_sub *copy = xmalloc(sizeof(*copy));
	*copy = *ns;
	copy->channel = pstr_dup(ns->channel);
	copy->info = pstr_dup(ns->info);
	copy->data = pstr_dup(ns->data);
	copy->since_epoch = pstr_dup(ns->since_epoch);
	return copy;
}

static void ssub_free(struct node_sub *ns)
{
	if (ns == NULL)
		return;
	pstr_free(&ns->channel);
	pstr_free(&ns->info);
	pstr_free(&ns->data);
	pstr_free(&ns->since_epoch);
	free(ns);
}

static void backlog_add(struct stall *st, struct node_sub *ssub, const char *data, size_t len)
{
	struct backlog *b = xmalloc(sizeof(*b) + len);
	b->next = NULL;
	b->ssub = ssub;
	b->len = len;
	if (len)
		memcpy(b->data, data, len);
	*st->tail = b;
	st->tail = &b->next;
}

static void stall_free(struct stall *st)
{
	for (struct backlog *b = st->backlog, *next; b; b = next) {
		next = b->next;
		ssub_free(b->ssub);
		free(b);
	}
	ssub_free(st->ssub);
	eng_res_free(st->cache);
	free(st->frame);
	free(st);
}

/* Everything ST waited for is answered: go on where the session stopped,
 * then with the frames that came meanwhile. */
static void stall_resume(struct stall *st)
{
	struct client *c = st->c;

	if (c == NULL) {
		stall_free(st);
		return;
	}
	c->stall = NULL;
	if (c->state != CS_CLOSED) {
		struct eng_res *saved = S_cache;
		if (c->tops->answering)
			c->tops->answering(c->t); /* the replies of the commands it goes on with */
		S_cache = st->replay ? st->cache : NULL;
		st->cache = NULL;
		if (st->what == RP_SERVER_SUB) {
			replay_server_sub(c, st->ssub);
		} else if (st->what == RP_UNI) {
			client_uni_connect(c, st->frame, st->len, NULL);
		} else {
			client_run(c, st->frame, st->len, st->replay ? st->index : st->index + 1);
		}
		S_cache = saved;
	}
	/* The frames that came meanwhile, in order (into the new stall's
	 * backlog if the session stalled again). */
	for (struct backlog *b = st->backlog, *next; b; b = next) {
		next = b->next;
		if (c->state == CS_CLOSED)
			;
		else if (c->stall != NULL)
			backlog_add(c->stall, b->ssub, b->data, b->len), b->ssub = NULL;
		else if (b->ssub)
			replay_server_sub(c, b->ssub);
		else
			client_frame(c, b->data, b->len);
		ssub_free(b->ssub);
		free(b);
	}
	st->backlog = NULL;
	stall_free(st);
}

/* One answer fewer to wait for. */
static void stall_answered(struct stall *st)
{
	if (--st->pending == 0 && st->saved)
		stall_resume(st);
}

/* After handling a command: when it left answers pending, the session
 * stalls on it; REPLAY/INDEX say where it goes on. False when nothing is
 * pending (the engine answered at once). */
static bool stall_save(struct client *c, uint8_t what, const char *data, size_t len, size_t index)
{
	struct stall *st = c->stall;
	if (st == NULL) {
		cache_drop();
		return false;
	}
	if (st->saved)
		return true;
	if (st->pending == 0 && !st->replay) {
		c->stall = NULL;
		stall_free(st);
		cache_drop();
		return false;
	}
	st->saved = true;
	st->what = what;
	st->frame = xmalloc(len + 1);
	if (len)
		memcpy(st->frame, data, len);
	st->len = len;
	st->index = index;
	if (st->replay)
		st->cache = S_cache;
	else
		eng_res_free(S_cache);
	S_cache = NULL;
	if (st->pending == 0)
		stall_resume(st);
	return true;
}

/* After handling a command that did not stall: its reads are done with. */
static void cache_drop(void)
{
	eng_res_free(S_cache);
	S_cache = NULL;
}

/* The cached answer of a read of KIND for CHANNEL, if any. */
static struct eng_res *cache_find(uint8_t kind, struct pstr ch)
{
	for (struct eng_res *e = S_cache; e; e = e->next)
		if (e->kind == kind && e->channel.n == ch.n && memcmp(e->channel.p, ch.p, ch.n) == 0)
			return e;
	return NULL;
}

static struct eng_res *cache_add(struct client *c, uint8_t kind, struct pstr ch)
{
	struct eng_res *e = xcalloc(1, sizeof(*e));
	e->kind = kind;
	e->channel = pstr_dup(ch);
	e->st = stall_of(c);
	e->st->pending++;
	e->next = S_cache;
	S_cache = e;
	return e;
}

/* An answer came: when later, the command will be replayed. */
static void cache_done(struct eng_res *e)
{
	e->done = true;
	struct stall *st = e->st;
	e->st = NULL;
	stall_answered(st);
}

/* After asking: the answer, or ENG_PENDING (the command must give up
 * without changing anything; it is replayed when the answer is in). */
static int cache_result(struct client *c, struct eng_res *e)
{
	if (!e->done) {
		stall_of(c)->replay = true;
		return ENG_PENDING;
	}
	return e->rc == RT_OK ? 0 : e->rc == RT_INVAL ? 107 : 100;
}

static void on_top(void *arg, int rc, uint64_t offset, struct pstr epoch)
{
	struct eng_res *e = arg;
	e->rc = rc;
	e->top = offset;
	if (rc == RT_OK && !pstr_copy(e->epoch, sizeof(e->epoch), epoch)) {
		log_warn("history: a %zu-byte epoch in %.*s is longer than any rotor knows", epoch.n,
			 (int)e->channel.n, e->channel.p);
		e->rc = RT_ERR;
	}
	cache_done(e);
}

/* The stream position of CH: 0 with *TOP and EPOCH (valid while the
 * command is handled), 100, or ENG_PENDING. */
static int eng_top(struct client *c, struct pstr ch, uint64_t meta_ttl_ms, uint64_t *top, const char **epoch)
{
	struct eng_res *e = cache_find(ER_TOP, ch);
	if (e == NULL) {
		e = cache_add(c, ER_TOP, ch);
		node_history_top(S.w, ch, meta_ttl_ms, on_top, e);
	}
	int rc = cache_result(c, e);
	*top = e->top;
	*epoch = e->epoch;
	return rc;
}

static void on_listen(void *arg, int rc)
{
	struct eng_res *e = arg;
	e->rc = rc;
	cache_done(e);
}

/* Has the node receive CH before the subscription reads its position:
 * 0, 100, or ENG_PENDING. */
static int eng_listen(struct client *c, struct pstr ch)
{
	struct eng_res *e = cache_find(ER_LISTEN, ch);
	if (e == NULL) {
		e = cache_add(c, ER_LISTEN, ch);
		node_listen(S.w, ch, on_listen, e);
	}
	return cache_result(c, e);
}

/* Deep copy of what a history read answered, for a replay. */
struct hist_block {
	struct publication p;
	struct client_info ci;
	struct tag tags[];
};

static void copy_history(struct node_history *dst, const struct node_history *h)
{
	*dst = *h;
	dst->blocks = xcalloc(h->n + 1, sizeof(*dst->blocks));
	dst->v = xcalloc(h->n + 1, sizeof(*dst->v));
	for (size_t i = 0; i < h->n; i++) {
		const struct publication *p = &h->v[i];
		size_t bytes = p->data.n;
		if (p->info)
			bytes += p->info->user.n + p->info->client.n + p->info->conn_info.n + p->info->chan_info.n;
		for (size_t t = 0; t < p->ntags; t++)
			bytes += p->tags[t].key.n + p->tags[t].value.n;
		struct hist_block *b = xmalloc(sizeof(*b) + p->ntags * sizeof(struct tag) + bytes);
		char *at = (char *)&b->tags[p->ntags];
#define COPY(d, src) do { if ((src).n) memcpy(at, (src).p, (src).n); (d) = (struct pstr){ at, (src).n }; at += (src).n; } while (0)
		b->p = *p;
		COPY(b->p.data, p->data);
		if (p->info) {
			COPY(b->ci.user, p->info->user);
			COPY(b->ci.client, p->info->client);
			COPY(b->ci.conn_info, p->info->conn_info);
			COPY(b->ci.chan_info, p->info->chan_info);
			b->p.info = &b->ci;
		}
		for (size_t t = 0; t < p->ntags; t++) {
			COPY(b->tags[t].key, p->tags[t].key);
			COPY(b->tags[t].value, p->tags[t].value);
		}
#undef COPY
		b->p.tags = b->tags;
		dst->blocks[i] = b;
		dst->v[i] = b->p;
	}
}

static void on_history(void *arg, int rc, const struct node_history *h)
{
	struct eng_res *e = arg;
	e->rc = rc;
	if (rc == RT_OK)
		copy_history(&e->h, h);
	cache_done(e);
}

/* A history read of CH: 0 with *H (valid while the command is handled),
 * 107, 100, or ENG_PENDING. */
static int eng_history(struct client *c, struct pstr ch, const struct hist_query *q, const struct node_history **h)
{
	struct eng_res *e = cache_find(ER_HISTORY, ch);
	if (e == NULL) {
		e = cache_add(c, ER_HISTORY, ch);
		node_history(S.w, ch, q, on_history, e);
	}
	*h = &e->h;
	return cache_result(c, e);
}

/* A publish, history or presence call waiting for its answer. */
struct op {
	struct stall *st;
	uint32_t id;
};

static struct op *op_new(struct client *c, uint32_t id)
{
	struct op *o = xmalloc(sizeof(*o));
	o->st = stall_of(c);
	o->st->pending++;
	o->id = id;
	return o;
}

/* The session to answer, NULL when it ended meanwhile; its transport is
 * told that an answer comes (ahead of fan-out). */
static struct client *op_client(struct op *o)
{
	struct client *c = o->st->c;
	if (c == NULL || c->state == CS_CLOSED)
		return NULL;
	if (c->tops->answering)
		c->tops->answering(c->t);
	return c;
}

static void op_done(struct op *o)
{
	struct stall *st = o->st;
	free(o);
	stall_answered(st);
}

/* ---- waiting for a proxy --------------------------------------------------
 *
 * A command that asks the backend (src/proxy/) stalls its session like an
 * engine call. connect and subscribe are replayed with the answer at hand
 * (an ER_PROXY entry of the cache, keyed by kind and channel); publish and
 * rpc are answered from the callback (an op). The stall lists its calls in
 * flight so that a session that ends cancels them (client_transport_closed). */

struct pxwait {
	struct pxwait *next;
	struct stall *st;
	struct proxy_call *call;
	struct eng_res *e;            /* replayed: the answer goes here */
	void (*answer)(struct client *c, struct pxwait *w, struct proxy_answer *a); /* else this */
	uint32_t id;
	struct pstr channel;          /* publish: owned */
	struct pstr data;             /* publish: owned */
};

static void pxwait_unlink(struct pxwait *w)
{
	for (struct pxwait **p = &w->st->px; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
}

static void on_proxy(void *arg, struct proxy_answer *a)
{
	struct pxwait *w = arg;
	struct stall *st = w->st;

	pxwait_unlink(w);
	if (w->e) {
		struct eng_res *e = w->e;
		e->px = a;
		free(w);
		cache_done(e);
		return;
	}
	struct client *c = st->c;
	if (c != NULL && c->state != CS_CLOSED) {
		if (c->tops->answering)
			c->tops->answering(c->t);
		w->answer(c, w, a);
	}
	proxy_answer_free(a);
	pstr_free(&w->channel);
	pstr_free(&w->data);
	free(w);
	stall_answered(st);
}

/* The common request fields of C. */
static struct proxy_req px_req(struct client *c)
{
	struct proxy_req q = { 0 };
	q.client = c->id;
	q.transport = c->tops->name;
	q.fmt = (enum proto_fmt)c->fmt;
	q.user = c->user ? c->user : "";
	q.meta = c->be ? c->be->meta : (struct pstr){ 0 };
	q.headers = c->be ? c->be->hdrs : NULL;
	return q;
}

/* Starts call Q to P for C's stalled command; W is filled by the caller
 * (e or answer). */
static struct pxwait *px_start(struct client *c, const struct proxy *p, enum proxy_kind kind,
			       const struct proxy_req *q, struct eng_res *e)
{
	struct pxwait *w = xcalloc(1, sizeof(*w));
	struct stall *st = stall_of(c);
	w->st = st;
	w->e = e;
	if (e == NULL)
		st->pending++; /* cache_add counted a replayed one */
	w->next = st->px;
	st->px = w;
	w->call = proxy_call(p, kind, q, on_proxy, w);
	return w;
}

/* The answer of proxy call KIND for KEY of the command being handled: NULL
 * after starting it (the command gives up; it is replayed once answered). */
static struct proxy_answer *px_replayed(struct client *c, const struct proxy *p, enum proxy_kind kind,
					struct pstr key, const struct proxy_req *q)
{
	struct eng_res *e = cache_find(ER_PROXY, key);
	if (e == NULL) {
		e = cache_add(c, ER_PROXY, key);
		px_start(c, p, kind, q, e);
	}
	if (!e->done) {
		stall_of(c)->replay = true;
		return NULL;
	}
	return e->px;
}

/* The session ends: its proxy calls are forgotten. */
static void px_cancel_all(struct stall *st)
{
	while (st->px) {
		struct pxwait *w = st->px;
		st->px = w->next;
		proxy_cancel(w->call);
		if (w->e) {
			w->e->done = true;
			w->e->st = NULL;
		}
		pstr_free(&w->channel);
		pstr_free(&w->data);
		free(w);
		st->pending--;
	}
}

/* An error or disconnect answer A of a proxy for command TYPE/ID: replies
 * (or disconnects) as Centrifugo does; a failed call is error 100. */
static void px_refuse(struct client *c, enum cmd_type type, uint32_t id, const struct proxy_answer *a)
{
	static char reason[128];
	if (a->outcome == PROXY_DISCONNECT) {
		snprintf(reason, sizeof reason, "%s", a->message);
		client_disconnect(c, a->code, reason);
		return;
	}
	if (a->outcome != PROXY_ERROR) {
		reply_error(c, type, id, 100);
		return;
	}
	reply_error_as(c, type, id, a->code, a->message, a->temporary); /* as the backend said */
}

/* A token's JWKS key is being fetched (TOK_PENDING): the command is
 * replayed once the fetch is over, and verifies the token again. */
static void on_jwks(void *arg)
{
	stall_answered(arg);
}

static void jwks_stall(struct client *c)
{
	struct stall *st = stall_of(c);
	st->pending++;
	st->replay = true;
	tok_jwks_wait(on_jwks, st);
}

/* ---- subscriptions ----------------------------------------------------- */

/* When a subscription expiring at EXPIRE_AT (unix seconds) ends unless
 * refreshed: client.expired_sub_close_delay after it. */
static int64_t sub_close_at(int64_t expire_at)
{
	if (expire_at <= 0)
		return 0;
	int64_t left_ms = (expire_at - now_s()) * 1000;
	return S.w->now_ms + (left_ms > 0 ? left_ms : 0) + S.w->conf->expired_sub_close_delay_ms;
}

static struct csub *find_sub(const struct client *c, struct pstr ch)
{
	for (uint16_t i = 0; i < c->nsubs; i++) {
		struct hub_chan *hc = c->subs[i]->ch;
		if (hc->len == ch.n && memcmp(hc->name, ch.p, ch.n) == 0)
			return c->subs[i];
	}
	return NULL;
}

/* Puts S's client into the presence of its channel (CSUB_PRESENCE). */
static void presence_add(struct client *c, struct csub *s)
{
	struct client_info ci = my_info(c);
	ci.chan_info = s->chan_info;
	node_presence_add(S.w, (struct pstr){ s->ch->name, s->ch->len }, &ci);
}

/* Publishes S's client joining or leaving its channel (CSUB_EMIT_JOIN). */
static void join_leave(struct client *c, struct csub *s, bool join)
{
	struct client_info ci = my_info(c);
	ci.chan_info = s->chan_info;
	node_join_leave(S.w, (struct pstr){ s->ch->name, s->ch->len }, &ci, join);
}

static struct csub *add_sub(struct client *c, struct pstr ch, uint8_t flags, int64_t expire_at,
			    struct pstr chan_info)
{
	struct csub *s = xcalloc(1, sizeof(*s));
	s->c = c;
	s->flags = flags;
	s->expire_at = expire_at;
	s->close_at = sub_close_at(expire_at);
	s->chan_info = pstr_dup(chan_info);
	if (c->nsubs == c->capsubs) {
		c->capsubs = c->capsubs ? (uint16_t)(c->capsubs * 2) : 2;
		c->subs = xrealloc(c->subs, c->capsubs * sizeof(*c->subs));
	}
	c->subs[c->nsubs++] = s;
	hub_link(s, ch.p, ch.n, c->fmt);
	if (flags & CSUB_PRESENCE)
		presence_add(c, s);
	if (flags & CSUB_EMIT_JOIN)
		join_leave(c, s, true);
	return s;
}

static void drop_sub(struct client *c, struct csub *s)
{
	subref_cancel(c, s);
	for (uint16_t i = 0; i < c->nsubs; i++) {
		if (c->subs[i] == s) {
			c->subs[i] = c->subs[--c->nsubs];
			break;
		}
	}
	if (s->flags & CSUB_PRESENCE) {
		struct client_info ci = my_info(c);
		node_presence_remove(S.w, (struct pstr){ s->ch->name, s->ch->len }, &ci);
	}
	if (s->flags & CSUB_EMIT_JOIN)
		join_leave(c, s, false);
	hub_unlink(s, c->fmt);
	pstr_free(&s->chan_info);
	free(s);
}

void client_presence_lease(struct worker *w, bool first)
{
	long long iv = w->conf->presence_interval_ms > 0 ? w->conf->presence_interval_ms : 27000;
	if (!first && w->now_ms - w->pres_touch_ms < iv)
		return;
	w->pres_touch_ms = w->now_ms;
	if (node_presence_refresh(w, first)) {
		for (struct client *c = S.all; c; c = c->next)
			for (uint16_t i = 0; i < c->nsubs; i++)
				if (c->subs[i]->flags & CSUB_PRESENCE)
					presence_add(c, c->subs[i]);
	}
}

static void drop_all_subs(struct client *c)
{
	while (c->nsubs > 0)
		drop_sub(c, c->subs[c->nsubs - 1]);
	free(c->subs);
	c->subs = NULL;
	c->capsubs = 0;
}

/* ---- tokens ------------------------------------------------------------ */

/* The raw bytes of the claim at PATH (DEPTH object keys from the top) in a
 * verified TOKEN (so `info`, `data` pass through byte for byte; jansson
 * would re-serialise them), or an empty span. The result points into *BUF,
 * which the caller frees. */
static struct pstr claim_raw(struct pstr token, const char *const *path, size_t depth, char **buf)
{
	struct pstr r = { NULL, 0 };
	const char *p1 = memchr(token.p, '.', token.n);
	const char *p2 = p1 ? memchr(p1 + 1, '.', token.n - (size_t)(p1 + 1 - token.p)) : NULL;
	size_t outlen;
	struct js_doc d = { 0 };

	*buf = NULL;
	if (p2 == NULL)
		return r;
	size_t n = (size_t)(p2 - (p1 + 1));
	*buf = xmalloc(b64_decoded_max(n) + 1);
	if (b64_decode(*buf, &outlen, p1 + 1, n, B64_URL) != RT_OK)
		return r;
	if (js_scan(&d, *buf, outlen, 0) == RT_OK) {
		int64_t v = 0;
		for (size_t i = 0; i < depth && v >= 0; i++)
			v = js_get(&d, (uint32_t)v, path[i], false);
		if (v >= 0 && js_type(&d, (uint32_t)v) != JS_NULL) {
			r.p = js_raw(&d, (uint32_t)v);
			r.n = js_rawlen(&d, (uint32_t)v);
		}
	}
	js_free(&d);
	return r;
}

/* The value of `info`/`b64info` (or `data`/`b64data`) of CLAIMS as an owned
 * span: the base64 form wins when non-empty. */
static struct pstr claim_bytes(const json_t *claims, struct pstr token, const char *raw_name,
			       const char *b64_name)
{
	struct pstr r = { NULL, 0 };
	const char *b64 = json_string_value(json_object_get(claims, b64_name));
	if (b64 && *b64) {
		size_t n = strlen(b64), outlen;
		char *p = xmalloc(b64_decoded_max(n) + 1);
		if (b64_decode(p, &outlen, b64, n, B64_STD) == RT_OK && outlen > 0) {
			r.p = p;
			r.n = outlen;
			return r;
		}
		free(p);
		return r;
	}
	char *buf;
	const char *path[] = { raw_name };
	struct pstr raw = claim_raw(token, path, 1, &buf);
	r = pstr_dup(raw);
	free(buf);
	return r;
}

/* Centrifugo's expiry rule: expire_at present and > 0 wins; present and 0
 * means never; absent means exp. */
static int64_t claim_expire_at(const json_t *claims)
{
	const json_t *ea = json_object_get(claims, "expire_at");
	if (json_is_integer(ea))
		return json_integer_value(ea) > 0 ? json_integer_value(ea) : 0;
	if (json_is_real(ea))
		return json_real_value(ea) > 0 ? (int64_t)json_real_value(ea) : 0;
	return tok_claim_exp(claims);
}

/* ---- stream positions and recovery ---------------------------------------- */

/* Where a new subscription stands in its stream, for its result and for
 * tracking: TOP/EPOCH. */
struct sub_pos {
	uint64_t top;
	char epoch[NODE_EPOCH_MAX + 1];
};

static bool pstr_is(struct pstr a, const char *s)
{
	return a.n == strlen(s) && (a.n == 0 || memcmp(a.p, s, a.n) == 0); /* as pstr_eq */
}

/* Fills R's position for a subscription to CH (options O, granted SO),
 * recovering from the position in RQ when it asks to (client-protocol.md
 * 6.3; cache mode reads the latest publication only). Recovered
 * publications stay in the command's read cache, valid while the command
 * is handled. Returns 0; 112 when recovery failed and RQ rejects
 * unrecovered positions; 107 when CH is too long to have a stream; 100
 * when the history could not be read; ENG_PENDING when the read is under
 * way (the command gives up and is replayed). */
static int position(struct client *c, struct pstr ch, const struct chan_opts *o,
		    const struct chan_sub_opts *so, const struct sub_req *rq, struct sub_result *r,
		    struct sub_pos *pos)
{
	bool recover = rq && rq->recover;
	r->was_recovering = recover;
	memset(pos, 0, sizeof(*pos));
	int rc = eng_listen(c, ch);
	if (rc != 0)
		return rc;
	if (!so->positioning && !so->recovery)
		return 0;
	if (!node_history_fits(S.w, ch))
		return 107;
	if (!recover || !so->recovery) {
		const char *epoch;
		rc = eng_top(c, ch, (uint64_t)o->history_meta_ttl_ms, &pos->top, &epoch);
		if (rc != 0)
			return rc;
		memcpy(pos->epoch, epoch, sizeof(pos->epoch));
		r->offset = pos->top;
		r->epoch = pstr_c(pos->epoch);
		return 0;
	}
	bool cache = so->recovery_mode == CHAN_RECOVERY_CACHE;
	long long lim = S.w->conf->recovery_max_limit;
	struct hist_query q = {
		.limit = cache ? 1 : (lim > 0 ? (int32_t)lim : -1),
		.reverse = cache,
		.has_since = !cache,
		.since_offset = rq->offset,
		.since_epoch = NULL,
		.meta_ttl_ms = (uint64_t)o->history_meta_ttl_ms,
	};
	char want_epoch[64] = "";
	if (rq->epoch.n && pstr_copy(want_epoch, sizeof(want_epoch), rq->epoch))
		q.since_epoch = want_epoch;
	const struct node_history *h;
	rc = eng_history(c, ch, &q, &h);
	if (rc != 0)
		return rc == 107 ? 100 : rc;
	pos->top = h->top;
	memcpy(pos->epoch, h->epoch, sizeof(pos->epoch));
	bool epoch_ok = !h->epoch_mismatch && (rq->epoch.n == 0 || pstr_is(rq->epoch, h->epoch));
	bool recovered;
	size_t n = h->n;
	if (cache) {
		/* Only the latest publication: nothing to send when the client
		 * holds the top, else the latest if it is the top. */
		recovered = epoch_ok && (rq->offset == h->top || (h->n == 1 && h->v[0].offset == h->top));
		if (rq->offset == h->top)
			n = 0;
	} else {
		recovered = epoch_ok && ((h->n == 0 && h->top == rq->offset) ||
					 (h->n > 0 && h->v[0].offset == rq->offset + 1 &&
					  h->v[h->n - 1].offset == h->top));
	}
	r->epoch = pstr_c(pos->epoch);
	if (!recovered) {
		if (rq->flag & 2)
			return 112;
		r->offset = h->top;
		return 0;
	}
	r->recovered = true;
	r->offset = cache && n ? h->top : rq->offset;
	r->pubs = h->v;
	r->npubs = n;
	return 0;
}

/* ---- server-side subscriptions ------------------------------------------ */

/* What a subscription granted SO does, as CSUB_* flags. */
static uint8_t csub_flags(const struct chan_sub_opts *so)
{
	uint8_t flags = 0;

	if (so->push_join_leave)
		flags |= CSUB_JOIN_LEAVE;
	if (so->emit_join_leave)
		flags |= CSUB_EMIT_JOIN;
	if (so->emit_presence)
		flags |= CSUB_PRESENCE;
	if (so->positioning || so->recovery)
		flags |= CSUB_POSITIONED;
	if (so->recovery)
		flags |= CSUB_RECOVERABLE;
	return flags;
}

/* Subscribes C to CH server-side with options O (already resolved) and the
 * per-channel override OV; fills R for the connect result or push. */
static struct csub *subscribe_server_side(struct client *c, struct pstr ch, const struct chan_opts *o,
					  const struct chan_override *ov, struct pstr chan_info,
					  int64_t expire_at, const struct sub_req *rq, struct sub_result *r)
{
	struct chan_sub_opts so;
	struct sub_pos pos;
	uint8_t flags;

	chan_grant(S.chans, o, ov, NULL, pstr_c(c->user), &so);
	flags = CSUB_SERVER_SIDE | csub_flags(&so);
	memset(r, 0, sizeof(*r));
	r->positioned = (flags & CSUB_POSITIONED) != 0;
	r->recoverable = (flags & CSUB_RECOVERABLE) != 0;
	/* A server-side subscription cannot be refused: recovery that fails
	 * leaves it at the top, unrecovered. */
	struct sub_req plain;
	if (rq && (rq->flag & 2)) {
		plain = *rq;
		plain.flag &= ~2;
		rq = &plain;
	}
	if (position(c, ch, o, &so, rq, r, &pos) == ENG_PENDING)
		return NULL; /* the caller gives up and is replayed */
	struct csub *s = add_sub(c, ch, flags, expire_at, chan_info);
	s->offset = pos.top;
	memcpy(s->epoch, pos.epoch, sizeof(s->epoch));
	/* R is encoded after we return: its epoch must not point into POS. */
	if (r->epoch.n)
		r->epoch = pstr_c(s->epoch);
	return s;
}

/* Asks for the position reads a server-side subscription of C to CH
 * will need; true when one is under way (answered later). */
static bool prefetch_position(struct client *c, const char *user, struct pstr ch, const struct chan_opts *o,
			      const struct chan_override *ov, const struct sub_req *rq)
{
	struct chan_sub_opts so;
	struct sub_result r = { 0 };
	struct sub_pos pos;
	struct sub_req plain;

	chan_grant(S.chans, o, ov, NULL, pstr_c(user), &so);
	if (rq && (rq->flag & 2)) {
		plain = *rq;
		plain.flag &= ~2;
		rq = &plain;
	}
	return position(c, ch, o, &so, rq, &r, &pos) == ENG_PENDING;
}

/* Reads a token override object ({"presence":{"value":true},...}). */
static struct chan_override parse_override(const json_t *ov)
{
	struct chan_override r = CHAN_OVERRIDE_NONE;
	static const char *const names[] = { "presence", "join_leave", "force_push_join_leave",
					     "force_recovery", "force_positioning" };
	int8_t *fields[] = { &r.presence, &r.join_leave, &r.force_push_join_leave, &r.force_recovery,
			     &r.force_positioning };
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(names); i++) {
		const json_t *v = json_object_get(json_object_get(ov, names[i]), "value");
		if (json_is_boolean(v))
			*fields[i] = json_is_true(v) ? 1 : 0;
	}
	return r;
}

/* ---- connect ------------------------------------------------------------- */

/* The position the client sent for server-side channel CH in its connect
 * request (ConnectRequest.subs), if any. */
static const struct sub_req *connect_sub_req(const struct connect_req *r, struct pstr ch)
{
	for (size_t i = 0; i < r->nsubs; i++)
		if (r->subs[i].channel.n == ch.n && memcmp(r->subs[i].channel.p, ch.p, ch.n) == 0)
			return &r->subs[i].req;
	return NULL;
}

struct pending_sub {
	char *channel;
	struct pstr info;            /* owned */
	struct pstr data;            /* owned: subs[ch].data of the token or the connect proxy, sent in its result */
	struct chan_override ov;
};

static void free_pending(struct pending_sub *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].channel);
		pstr_free(&v[i].info);
		pstr_free(&v[i].data);
	}
	free(v);
}

/* Member RAW_NAME (raw, byte for byte, like the connection's info) or
 * B64_NAME (base64, which wins) of the token's subs[NAME] object ITEM;
 * empty when neither is there or the base64 is bad. */
static struct pstr sub_claim_bytes(const json_t *item, struct pstr token, const char *name, const char *raw_name,
				   const char *b64_name)
{
	struct pstr r = { NULL, 0 };
	const char *b64 = json_string_value(json_object_get(item, b64_name));
	const json_t *raw = json_object_get(item, raw_name);

	if (b64 && *b64) {
		size_t len = strlen(b64), outlen;
		char *p = xmalloc(b64_decoded_max(len) + 1);
		if (b64_decode(p, &outlen, b64, len, B64_STD) == RT_OK) {
			r.p = p;
			r.n = outlen;
		} else {
			free(p);
		}
	} else if (raw != NULL && !json_is_null(raw)) {
		const char *path[] = { "subs", name, raw_name };
		char *buf;
		r = pstr_dup(claim_raw(token, path, 3, &buf));
		free(buf);
	}
	return r;
}

/* Collects the server-side channels of a connection token: `subs` (with
 * per-channel info, data and override) wins over `channels`. A channel named ""
 * in either is left out, as Centrifugo does. */
static size_t token_channels(const json_t *claims, struct pstr token, struct pending_sub **out)
{
	const json_t *subs = json_object_get(claims, "subs");
	const json_t *chans = json_object_get(claims, "channels");
	struct pending_sub *v = NULL;
	size_t n = 0;

	if (json_is_object(subs) && json_object_size(subs) > 0) {
		const char *name;
		const json_t *item;
		v = xcalloc(json_object_size(subs), sizeof(*v));
		json_object_foreach((json_t *)subs, name, item) {
			if (*name == '\0')
				continue; /* as Centrifugo: no channel "", like in channels */
			v[n].channel = xstrdup(name);
			v[n].ov = parse_override(json_object_get(item, "override"));
			v[n].info = sub_claim_bytes(item, token, name, "info", "b64info");
			v[n].data = sub_claim_bytes(item, token, name, "data", "b64data");
			n++;
		}
	} else if (json_is_array(chans)) {
		size_t i;
		const json_t *ch;
		v = xcalloc(json_array_size(chans) + 1, sizeof(*v));
		json_array_foreach((json_t *)chans, i, ch) {
			if (json_is_string(ch) && json_string_length(ch) > 0) {
				v[n].channel = xstrdup(json_string_value(ch));
				v[n].ov = CHAN_OVERRIDE_NONE;
				n++;
			}
		}
	}
	*out = v;
	return n;
}

/* A connect refused with disconnect CODE: the session ends. */
static void connect_refused(struct client *c, uint32_t code, const char *reason)
{
	c->fail_code = code;
	c->fail_reason = reason;
	client_disconnect(c, code, reason);
}

/* The disconnect a unidirectional session gets for connect error CODE:
 * client.connect_code_to_unidirectional_disconnect when it says, else
 * Centrifugo's defaults. */
static void uni_disconnect(struct client *c, uint32_t code)
{
	for (size_t i = 0; i < S.nuni; i++) {
		if (S.uni[i].code == code) {
			client_disconnect(c, S.uni[i].to, S.uni[i].reason);
			return;
		}
	}
	uint32_t to = code == 109 || code == 110 ? 3005 : code == 111 ? 3013 : code == 103 ? 3507 : 3004;
	client_disconnect(c, to, proto_disconnect_text(to));
}

/* A connect that failed with error CODE: the error reply, after which the
 * session accepts nothing (CS_FAILED); a unidirectional session, which
 * cannot read replies, is disconnected instead. */
static void connect_error(struct client *c, uint32_t id, uint32_t code)
{
	c->fail_code = code;
	c->fail_reason = proto_error_text(code);
	if (c->flags & CLIENT_UNI) {
		uni_disconnect(c, code);
		return;
	}
	reply_error(c, CMD_CONNECT, id, code);
	c->state = CS_FAILED;
}

/* Asks the connect proxy about C's connect R (no token): 0 with what it
 * grants in the out-parameters (*USER NULL: no credentials), ENG_PENDING
 * while it is asked, -1 after an error reply or a disconnect. */
static int connect_proxy(struct client *c, const struct cmd *cmd, char **user, struct pstr *info,
			 struct pstr *data, int64_t *expire_at, struct pending_sub **ps, size_t *nps)
{
	const struct connect_req *r = &cmd->connect;
	struct proxy_req q = px_req(c);
	q.data = r->data;
	q.has_data = r->data.n > 0;
	q.name = r->name;
	q.version = r->version;
	/* The channels of the request's subs (centrifuge's ConnectEvent.Channels). */
	struct pstr *chans = xcalloc(r->nsubs + 1, sizeof(*chans));
	for (size_t i = 0; i < r->nsubs; i++)
		chans[i] = r->subs[i].channel;
	q.channels = chans;
	q.nchannels = r->nsubs;
	struct proxy_answer *a = px_replayed(c, proxy_find(S.proxies, PROXY_CONNECT, NULL), PROXY_CONNECT,
					     PSTR("connect"), &q);
	free(chans);
	if (a == NULL)
		return ENG_PENDING;
	if (a->outcome == PROXY_DISCONNECT) {
		static char reason[128];
		snprintf(reason, sizeof reason, "%s", a->message);
		connect_refused(c, a->code, reason);
		return -1;
	}
	if (a->outcome == PROXY_ERROR || a->outcome == PROXY_FAILED) {
		uint32_t code = a->outcome == PROXY_ERROR ? a->code : 100;
		c->fail_code = code;
		c->fail_reason = proto_error_text(code);
		if (c->flags & CLIENT_UNI) {
			uni_disconnect(c, code);
		} else {
			px_refuse(c, CMD_CONNECT, cmd->id, a);
			c->state = CS_FAILED;
		}
		return -1;
	}
	if (a->outcome == PROXY_NO_RESULT)
		return 0;
	*user = xstrdup(a->user ? a->user : "");
	*info = pstr_dup(a->info);
	*data = pstr_dup(a->data);
	*expire_at = a->expire_at > 0 ? a->expire_at : 0;
	if (a->has_meta) {
		pstr_free(&backend_of(c)->meta);
		c->be->meta = pstr_dup(a->meta);
	}
	*ps = xcalloc(a->nsubs + 1, sizeof(**ps));
	*nps = 0;
	for (size_t i = 0; i < a->nsubs; i++) {
		size_t j;
		for (j = 0; j < *nps && strcmp((*ps)[j].channel, a->subs[i].channel) != 0; j++)
			;
		if (j == *nps)
			(*nps)++;
		else
			free((*ps)[j].channel), pstr_free(&(*ps)[j].info), pstr_free(&(*ps)[j].data);
		(*ps)[j].channel = xstrdup(a->subs[i].channel);
		(*ps)[j].info = pstr_dup(a->subs[i].info);
		(*ps)[j].data = pstr_dup(a->subs[i].data);
		(*ps)[j].ov = a->subs[i].ov;
	}
	return 0;
}

static void cmd_connect(struct client *c, const struct cmd *cmd)
{
	const struct connect_req *r = &cmd->connect;
	const struct conf *k = S.w->conf;
	json_t *claims = NULL;
	struct pending_sub *ps = NULL;
	size_t nps = 0;
	int64_t expire_at = 0;
	char *user = NULL;
	struct pstr info = { NULL, 0 }, pdata = { NULL, 0 };

	/* Headers emulation: what the proxies may pass on joins the kept
	 * HTTP headers, for the connect proxy and every later call. */
	if (r->nhdrs > 0 && proxy_headers_emulate(S.proxies, &backend_of(c)->hdrs, r->hdrs, r->nhdrs) > 0)
		log_debug("client %s: connect: emulated headers that cannot be sent dropped", c->id);
	if (r->token.n == 0 && proxy_enabled(S.proxies, PROXY_CONNECT)) {
		if (connect_proxy(c, cmd, &user, &info, &pdata, &expire_at, &ps, &nps) != 0)
			return;
	}
	if (user != NULL) {
		; /* the connect proxy gave credentials */
	} else if (r->token.n > 0) {
		const char *why;
		int rc = tok_verify_connect(&S.conn_keys, r->token.p, r->token.n, now_s(), &claims, &why);
		if (rc == TOK_PENDING) {
			jwks_stall(c);
			return;
		}
		if (rc == TOK_EXPIRED) {
			connect_error(c, cmd->id, 109);
			return;
		}
		if (rc != TOK_OK) {
			log_debug("client %s: connect: %s", c->id, why);
			connect_refused(c, 3500, "invalid token");
			return;
		}
		user = tok_claim_sub(&S.conn_keys, claims);
		if (user[0] == '\0' && k->disallow_anonymous_tokens) {
			free(user);
			json_decref(claims);
			connect_refused(c, 3507, "permission denied");
			return;
		}
		info = claim_bytes(claims, r->token, "info", "b64info");
		if (!k->client_insecure)
			expire_at = claim_expire_at(claims);
		nps = token_channels(claims, r->token, &ps);
		json_decref(claims);
	} else if (k->client_insecure || k->allow_anonymous_connect) {
		user = xstrdup("");
	} else {
		connect_refused(c, 3501, "bad request");
		return;
	}
	if (expire_at > 0 && expire_at <= now_s()) {
		free(user);
		pstr_free(&info);
		pstr_free(&pdata);
		free_pending(ps, nps);
		connect_error(c, cmd->id, 110);
		return;
	}
	if (k->user_connection_limit > 0 && user[0] != '\0') {
		size_t ulen = strlen(user);
		uint64_t n = smap_get(&S.users, user, ulen) + node_user_connections(S.w, user, ulen);
		if (n >= (uint64_t)k->user_connection_limit) {
			free(user);
			pstr_free(&info);
			pstr_free(&pdata);
			free_pending(ps, nps);
			connect_refused(c, 3504, "connection limit");
			return;
		}
	}

	/* Server-side channels: from the token, the personal channel, and the
	 * recoverable ones the client lists in its request. */
	char *personal = chan_personal(S.chans, pstr_c(user));
	size_t total = nps + (personal != NULL) + r->nsubs;
	const struct chan_opts **opts = xcalloc(total + 1, sizeof(*opts));
	struct connect_sub_result *subres = xcalloc(total + 1, sizeof(*subres));
	size_t nsub = 0;
	uint32_t fail = 0;

	if (personal != NULL) {
		ps = xrealloc(ps, (nps + 1) * sizeof(*ps));
		memset(&ps[nps], 0, sizeof(*ps));
		ps[nps].channel = personal;
		ps[nps].ov = CHAN_OVERRIDE_NONE;
		nps++;
	}
	for (size_t i = 0; i < nps && !fail; i++) {
		opts[i] = chan_lookup(S.chans, pstr_c(ps[i].channel), NULL);
		if (opts[i] == NULL)
			fail = 102;
	}
	if (fail) {
		connect_error(c, cmd->id, fail);
		goto done;
	}
	/* Channels the client lists in its request: an unknown namespace there
	 * is a protocol violation; not permitted ones are skipped. */
	const struct chan_opts **ropts = opts + nps;
	for (size_t i = 0; i < r->nsubs; i++) {
		if (chan_check_connect_sub(S.chans, r->subs[i].channel, pstr_c(user), &ropts[i]) ==
		    CHAN_ERR_UNKNOWN_CHANNEL) {
			connect_refused(c, 3501, "bad request");
			goto done;
		}
	}
	if (k->channel_limit > 0 && (long long)nps > k->channel_limit) {
		connect_refused(c, 3505, "channel limit");
		goto done;
	}

	/* The positions of the server-side subscriptions are read before
	 * anything changes: when the engine answers later, the connect is
	 * handled again, with the answers at hand. */
	bool pending = false;
	for (size_t i = 0; i < nps; i++)
		pending |= prefetch_position(c, user, pstr_c(ps[i].channel), opts[i], &ps[i].ov, connect_sub_req(r, pstr_c(ps[i].channel)));
	for (size_t i = 0; i < r->nsubs; i++) {
		struct chan_override none = CHAN_OVERRIDE_NONE;
		if (r->subs[i].channel.n > 0 &&
		    chan_check_connect_sub(S.chans, r->subs[i].channel, pstr_c(user), &ropts[i]) == CHAN_OK)
			pending |= prefetch_position(c, user, r->subs[i].channel, ropts[i], &none, &r->subs[i].req);
	}
	if (pending)
		goto done;

	/* The session is on: from here nothing fails. */
	c->user = user;
	user = NULL;
	c->info = info;
	info.p = NULL;
	info.n = 0;
	c->state = CS_CONNECTED;
	c->stale_at = 0;
	S.n++;
	S.version++;
	smap_add(&S.users, c->user, strlen(c->user), 1);
	for (size_t i = 0; i < nps; i++) {
		struct pstr ch = pstr_c(ps[i].channel);
		if (find_sub(c, ch))
			continue;
		subres[nsub].channel = pstr_dup(ch);
		subscribe_server_side(c, ch, opts[i], &ps[i].ov, ps[i].info, 0, connect_sub_req(r, ch),
				      &subres[nsub].res);
		subres[nsub].res.data = ps[i].data; /* centrifuge: SubscribeOptions.Data into the result */
		nsub++;
	}
	for (size_t i = 0; i < r->nsubs; i++) {
		struct pstr ch = r->subs[i].channel;
		if (ch.n == 0 || find_sub(c, ch) ||
		    chan_check_connect_sub(S.chans, ch, pstr_c(c->user), &ropts[i]) != CHAN_OK)
			continue;
		if (k->channel_limit > 0 && c->nsubs >= k->channel_limit)
			break;
		subres[nsub].channel = pstr_dup(ch);
		struct chan_override none = CHAN_OVERRIDE_NONE;
		subscribe_server_side(c, ch, ropts[i], &none, (struct pstr){ NULL, 0 }, 0, &r->subs[i].req,
				      &subres[nsub].res);
		nsub++;
	}

	set_expiry(c, expire_at);
	start_pings(c);
	arm(c);

	struct connect_result res = { 0 };
	res.client = (struct pstr){ c->id, 36 };
	res.version = PSTR(PACKAGE_VERSION);
	res.data = pdata;
	if (expire_at > 0 && !proxy_enabled(S.proxies, PROXY_REFRESH)) {
		int64_t ttl = expire_at - now_s();
		res.expires = true;
		res.ttl = ttl > 0 ? (uint32_t)ttl : 0;
	}
	if (!(c->flags & CLIENT_NATIVE_PING) && k->ping_interval_ms > 0) {
		res.ping = (uint32_t)(k->ping_interval_ms / 1000);
		res.pong = k->pong_timeout_ms > 0 && !(c->flags & CLIENT_UNI);
	}
	if (c->session.n) {
		res.session = c->session;
		res.node = pstr_c(node_uid(S.w));
	}
	if (k->include_server_time)
		res.time = util_wall_ms();
	res.subs = subres;
	res.nsubs = nsub;
	S.out.len = 0;
	if (c->flags & CLIENT_UNI)
		proto_push_connect(&S.out, c->fmt, &res);
	else
		proto_reply_connect(&S.out, c->fmt, cmd->id, &res);
	send_out(c);
	log_debug("client %s connected as user \"%s\" with %zu server-side channel(s)", c->id, c->user, nsub);
done:
	for (size_t i = 0; i < nsub; i++)
		free((void *)subres[i].channel.p);
	free(subres);
	free(opts);
	free(user);
	pstr_free(&info);
	pstr_free(&pdata);
	free_pending(ps, nps);
}

/* ---- refresh --------------------------------------------------------------- */

static void cmd_refresh(struct client *c, const struct cmd *cmd)
{
	json_t *claims = NULL;
	const char *why;

	if (cmd->refresh.token.n == 0) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	int rc = tok_verify_connect(&S.conn_keys, cmd->refresh.token.p, cmd->refresh.token.n, now_s(),
				    &claims, &why);
	if (rc == TOK_PENDING) {
		jwks_stall(c);
		return;
	}
	if (rc == TOK_EXPIRED) {
		client_disconnect(c, 3005, "connection expired");
		return;
	}
	if (rc != TOK_OK) {
		client_disconnect(c, 3500, "invalid token");
		return;
	}
	char *user = tok_claim_sub(&S.conn_keys, claims);
	if (strcmp(user, c->user) != 0) {
		free(user);
		json_decref(claims);
		client_disconnect(c, 3500, "invalid token");
		return;
	}
	free(user);
	int64_t expire_at = S.w->conf->client_insecure ? 0 : claim_expire_at(claims);
	struct pstr info = claim_bytes(claims, cmd->refresh.token, "info", "b64info");
	if (info.n > 0) {
		pstr_free(&c->info);
		c->info = info;
		for (uint16_t i = 0; i < c->nsubs; i++)
			if (c->subs[i]->flags & CSUB_PRESENCE)
				presence_add(c, c->subs[i]);
	}
	json_decref(claims);
	if (expire_at > 0 && expire_at <= now_s()) {
		client_disconnect(c, 3005, "connection expired");
		return;
	}
	set_expiry(c, expire_at);
	arm(c);
	int64_t ttl = expire_at > 0 ? expire_at - now_s() : 0;
	S.out.len = 0;
	proto_reply_refresh(&S.out, c->fmt, cmd->id, CMD_REFRESH, expire_at > 0, (uint32_t)(ttl > 0 ? ttl : 0));
	send_out(c);
}

/* ---- subscribe, unsubscribe, sub_refresh --------------------------------------- */

/* Verifies a subscription token for channel CH; on success fills the
 * subscription's info, data for the result, expiry and override. Returns
 * 0, an error code to reply with, or -1 after a disconnect or when the
 * command waits for a JWKS key (it is replayed). */
static int sub_token(struct client *c, struct pstr ch, struct pstr token, struct pstr *info,
		     struct pstr *data, int64_t *expire_at, struct chan_override *ov, bool refresh)
{
	const struct tok_keys *keys = S.sub_keys_own ? &S.sub_keys : &S.conn_keys;
	json_t *claims = NULL;
	const char *why;
	int rc = tok_verify_subscribe(keys, token.p, token.n, now_s(), &claims, &why);

	if (rc == TOK_PENDING) {
		jwks_stall(c);
		return -1;
	}
	if (rc == TOK_EXPIRED)
		return refresh ? 110 : 109;
	if (rc != TOK_OK) {
		log_debug("client %s: subscription token: %s", c->id, why);
		if (refresh) {
			client_disconnect(c, 3500, "invalid token");
			return -1;
		}
		return 103;
	}
	const char *claim_ch = json_string_value(json_object_get(claims, "channel"));
	const char *claim_client = json_string_value(json_object_get(claims, "client"));
	char *user = tok_claim_sub(keys, claims);
	bool ok = claim_ch && strlen(claim_ch) == ch.n && memcmp(claim_ch, ch.p, ch.n) == 0 &&
		  strcmp(user, c->user) == 0 && (claim_client == NULL || *claim_client == '\0' ||
						   strcmp(claim_client, c->id) == 0);
	free(user);
	if (!ok) {
		json_decref(claims);
		client_disconnect(c, 3500, "invalid token");
		return -1;
	}
	*info = claim_bytes(claims, token, "info", "b64info");
	if (data)
		*data = claim_bytes(claims, token, "data", "b64data");
	*expire_at = claim_expire_at(claims);
	if (ov)
		*ov = parse_override(json_object_get(claims, "override"));
	json_decref(claims);
	if (*expire_at > 0 && *expire_at <= now_s()) {
		pstr_free(info);
		if (data)
			pstr_free(data);
		return refresh ? 110 : 109;
	}
	return 0;
}

/* Asks the subscribe proxy of namespace O about subscribe CMD: CHAN_OK
 * with the result's info, data, expiry and override, an error code to
 * reply with, or -1 (asked: the command is replayed; or disconnected,
 * or answered with the backend's own error). */
static int subscribe_proxy(struct client *c, const struct cmd *cmd, const struct chan_opts *o,
			   struct pstr *info, struct pstr *data, int64_t *expire_at, struct chan_override *ov)
{
	const struct sub_req *r = &cmd->subscribe;
	const struct proxy *p = proxy_find(S.proxies, PROXY_SUBSCRIBE, o->subscribe_proxy_name);
	if (p == NULL)
		return CHAN_ERR_NOT_AVAILABLE;
	struct proxy_req q = px_req(c);
	q.channel = r->channel;
	q.token = r->token;
	q.data = r->data;
	q.has_data = r->data.n > 0;
	struct proxy_answer *a = px_replayed(c, p, PROXY_SUBSCRIBE, r->channel, &q);
	if (a == NULL)
		return -1;
	if (a->outcome == PROXY_ERROR || a->outcome == PROXY_FAILED || a->outcome == PROXY_DISCONNECT) {
		px_refuse(c, CMD_SUBSCRIBE, cmd->id, a);
		return -1;
	}
	if (a->outcome == PROXY_RESULT) {
		*info = pstr_dup(a->info);
		*data = pstr_dup(a->data);
		*expire_at = a->expire_at > 0 ? a->expire_at : 0;
		*ov = a->ov;
	}
	return CHAN_OK;
}

static void cmd_subscribe(struct client *c, const struct cmd *cmd)
{
	const struct sub_req *r = &cmd->subscribe;
	const struct chan_opts *o = NULL;
	struct pstr info = { NULL, 0 }, data = { NULL, 0 };
	struct chan_override ov = CHAN_OVERRIDE_NONE;
	int64_t expire_at = 0;
	struct publication *chain = NULL;  /* recovered publications as deltas */
	struct jw chain_buf = { 0 };

	if (r->channel.n == 0 || (r->delta.n > 0 && !pstr_eq(r->delta, "fossil"))) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	if (r->type != 0) {
		reply_error(c, CMD_SUBSCRIBE, cmd->id, 108);
		return;
	}
	if (r->has_tf) {
		reply_error(c, CMD_SUBSCRIBE, cmd->id, 107);
		return;
	}
	struct chan_sub_req q = { pstr_c(c->user), r->token.n > 0, find_sub(c, r->channel) != NULL, c->nsubs };
	int rc = chan_check_subscribe(S.chans, r->channel, &q, &o);
	if (rc == CHAN_PROXY) {
		rc = subscribe_proxy(c, cmd, o, &info, &data, &expire_at, &ov);
		if (rc < 0)
			return;
	}
	if (rc == CHAN_NEED_TOKEN) {
		rc = sub_token(c, r->channel, r->token, &info, &data, &expire_at, &ov, false);
		if (rc < 0)
			return;
	}
	if (rc != CHAN_OK) {
		reply_error(c, CMD_SUBSCRIBE, cmd->id, (uint32_t)rc);
		return;
	}

	struct chan_sub_opts so;
	struct chan_ask ask = { r->positioned, r->recoverable, r->join_leave };
	chan_grant(S.chans, o, &ov, &ask, pstr_c(c->user), &so);
	uint8_t flags = csub_flags(&so);
	/* As Centrifugo: a channel that does not allow delta leaves it out
	 * of the result, no error. Granted, deltas go to the subscription
	 * only when it is positioned (hub.c); else whole payloads. */
	if (r->delta.n > 0 && so.delta_fossil)
		flags |= CSUB_DELTA;

	struct sub_result res = { 0 };
	struct sub_pos pos;
	res.positioned = (flags & CSUB_POSITIONED) != 0;
	res.recoverable = (flags & CSUB_RECOVERABLE) != 0;
	res.delta = (flags & CSUB_DELTA) != 0;
	res.data = data;
	if (expire_at > 0 && !o->sub_refresh_proxy) {
		int64_t ttl = expire_at - now_s();
		res.expires = true;
		res.ttl = ttl > 0 ? (uint32_t)ttl : 0;
	}
	rc = position(c, r->channel, o, &so, r, &res, &pos);
	if (rc == ENG_PENDING)
		goto out; /* replayed with the answer */
	if (rc != 0) {
		reply_error(c, CMD_SUBSCRIBE, cmd->id, (uint32_t)rc);
		goto out;
	}
	/* Recovered publications go as a chain of deltas, the last of them
	 * the base of the next live one. */
	const struct publication *last = res.npubs ? &res.pubs[res.npubs - 1] : NULL;
	if ((flags & CSUB_DELTA) && res.npubs > 0) {
		chain = xcalloc(res.npubs, sizeof(*chain));
		hub_delta_chain(res.pubs, res.npubs, c->fmt == PROTO_JSON, chain, &chain_buf);
		res.pubs = chain;
	}
	/* The reply (recovered publications inside) goes out before the
	 * subscription joins the hub, so no publication can overtake it; those
	 * the bus still holds for us with offsets up to the top are skipped by
	 * the position the subscription starts from. */
	S.out.len = 0;
	if (proto_reply_subscribe(&S.out, c->fmt, cmd->id, &res) != RT_OK) {
		client_disconnect(c, 3506, "inappropriate protocol");
		goto out;
	}
	send_out(c);
	struct csub *s = add_sub(c, r->channel, flags, expire_at, info);
	if (o->sub_refresh_proxy)
		s->close_at = sub_refresh_at(expire_at); /* the server refreshes it */
	s->offset = pos.top;
	memcpy(s->epoch, pos.epoch, sizeof(s->epoch));
	if ((flags & CSUB_DELTA) && (flags & CSUB_POSITIONED) && last && last->offset == pos.top) {
		s->flags |= CSUB_DELTA_BASE;
		hub_delta_base(s->ch, last, pstr_c(pos.epoch));
	}
	if (expire_at > 0)
		arm(c);
out:
	free(chain);
	jw_free(&chain_buf);
	pstr_free(&info);
	pstr_free(&data);
}

static void cmd_unsubscribe(struct client *c, const struct cmd *cmd)
{
	struct pstr ch = cmd->unsubscribe.channel;
	if (ch.n == 0) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	struct csub *s = find_sub(c, ch);
	if (s != NULL && !(s->flags & CSUB_SERVER_SIDE))
		drop_sub(c, s);
	S.out.len = 0;
	proto_reply_empty(&S.out, c->fmt, cmd->id, CMD_UNSUBSCRIBE);
	send_out(c);
}

static void cmd_sub_refresh(struct client *c, const struct cmd *cmd)
{
	struct pstr ch = cmd->sub_refresh.channel, info = { NULL, 0 };
	int64_t expire_at = 0;

	if (ch.n == 0) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	if (cmd->sub_refresh.type != 0) {
		reply_error(c, CMD_SUB_REFRESH, cmd->id, 108);
		return;
	}
	struct csub *s = find_sub(c, ch);
	if (s == NULL) {
		reply_error(c, CMD_SUB_REFRESH, cmd->id, 103);
		return;
	}
	if (s->expire_at == 0 || (s->flags & CSUB_SERVER_SIDE)) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	if (cmd->sub_refresh.token.n == 0) {
		reply_error(c, CMD_SUB_REFRESH, cmd->id, 107);
		return;
	}
	int rc = sub_token(c, ch, cmd->sub_refresh.token, &info, NULL, &expire_at, NULL, true);
	if (rc < 0)
		return;
	if (rc != 0) {
		reply_error(c, CMD_SUB_REFRESH, cmd->id, (uint32_t)rc);
		return;
	}
	if (info.n > 0) {
		pstr_free(&s->chan_info);
		s->chan_info = info;
	} else {
		pstr_free(&info);
	}
	s->expire_at = expire_at;
	s->close_at = sub_close_at(expire_at);
	arm(c);
	int64_t ttl = expire_at > 0 ? expire_at - now_s() : 0;
	S.out.len = 0;
	proto_reply_refresh(&S.out, c->fmt, cmd->id, CMD_SUB_REFRESH, expire_at > 0,
			    (uint32_t)(ttl > 0 ? ttl : 0));
	send_out(c);
}

/* ---- publish, presence, history, rpc, send --------------------------------- */

static void on_published(void *arg, int rc, const struct node_pub_result *r)
{
	struct op *o = arg;
	struct client *c = op_client(o);
	(void)r;
	if (c != NULL && rc != RT_OK) {
		reply_error(c, CMD_PUBLISH, o->id, rc == RT_INVAL ? 107 : 100);
	} else if (c != NULL) {
		S.out.len = 0;
		proto_reply_empty(&S.out, c->fmt, o->id, CMD_PUBLISH);
		send_out(c);
	}
	op_done(o);
}

/* The publish proxy answered publish W: a result publishes (its data, if
 * any, replacing the client's; skip_history honoured), as does no result. */
static void publish_answered(struct client *c, struct pxwait *w, struct proxy_answer *a)
{
	const struct chan_opts *o = chan_lookup(S.chans, w->channel, NULL);
	if (a->outcome == PROXY_ERROR || a->outcome == PROXY_FAILED || a->outcome == PROXY_DISCONNECT) {
		px_refuse(c, CMD_PUBLISH, w->id, a);
		return;
	}
	if (o == NULL) { /* the namespace went away in a reload */
		reply_error(c, CMD_PUBLISH, w->id, 102);
		return;
	}
	struct client_info ci = my_info(c);
	struct csub *s = find_sub(c, w->channel);
	if (s)
		ci.chan_info = s->chan_info;
	struct node_pub p = { .channel = w->channel, .data = a->has_data ? a->data : w->data, .info = &ci };
	chan_pub_history(o, &p);
	if (a->outcome == PROXY_RESULT) {
		p.skip_history = a->skip_history;
		p.tags = a->tags;
		p.ntags = a->ntags;
		p.idempotency_key = a->idempotency_key;
	}
	node_publish(S.w, &p, on_published, op_new(c, w->id));
}

/* The RPC proxy answered: its result's data is the reply. */
static void rpc_answered(struct client *c, struct pxwait *w, struct proxy_answer *a)
{
	if (a->outcome == PROXY_ERROR || a->outcome == PROXY_FAILED || a->outcome == PROXY_DISCONNECT) {
		px_refuse(c, CMD_RPC, w->id, a);
		return;
	}
	S.out.len = 0;
	if (proto_reply_rpc(&S.out, c->fmt, w->id, a->data) != RT_OK) {
		client_disconnect(c, 3506, "inappropriate protocol");
		return;
	}
	send_out(c);
}

/* RPC: to the proxy of the method's namespace (rpc.namespaces, else
 * rpc.without_namespace). With no RPC proxy configured at all there is no
 * handler (108); with one, a method no proxy takes is not found (104). */
static void cmd_rpc(struct client *c, const struct cmd *cmd)
{
	const struct proxy *p = proxy_for_rpc(S.proxies, cmd->rpc.method);
	if (p == NULL) {
		reply_error(c, CMD_RPC, cmd->id, proxy_rpc_configured(S.proxies) ? 104 : 108);
		return;
	}
	struct proxy_req q = px_req(c);
	q.method = cmd->rpc.method;
	q.data = cmd->rpc.data;
	q.has_data = cmd->rpc.data.n > 0;
	struct pxwait *w = px_start(c, p, PROXY_RPC, &q, NULL);
	w->answer = rpc_answered;
	w->id = cmd->id;
}

static void cmd_publish(struct client *c, const struct cmd *cmd)
{
	const struct chan_opts *o;
	struct pstr ch = cmd->publish.channel;

	if (ch.n == 0) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	if (cmd->publish.type != 0) {
		reply_error(c, CMD_PUBLISH, cmd->id, 108);
		return;
	}
	int rc = chan_check_publish(S.chans, ch, pstr_c(c->user), find_sub(c, ch) != NULL, &o);
	if (rc == CHAN_PROXY) {
		const struct proxy *p = proxy_find(S.proxies, PROXY_PUBLISH, o->publish_proxy_name);
		if (p == NULL) {
			reply_error(c, CMD_PUBLISH, cmd->id, 108);
			return;
		}
		struct proxy_req q = px_req(c);
		q.channel = ch;
		q.data = cmd->publish.data;
		q.has_data = true;
		struct pxwait *w = px_start(c, p, PROXY_PUBLISH, &q, NULL);
		w->answer = publish_answered;
		w->id = cmd->id;
		w->channel = pstr_dup(ch);
		w->data = pstr_dup(cmd->publish.data);
		return;
	}
	if (rc != CHAN_OK) {
		reply_error(c, CMD_PUBLISH, cmd->id, (uint32_t)rc);
		return;
	}
	struct client_info ci = my_info(c);
	struct csub *s = find_sub(c, ch);
	if (s)
		ci.chan_info = s->chan_info;
	struct node_pub p = { .channel = ch, .data = cmd->publish.data, .info = &ci };
	chan_pub_history(o, &p);
	node_publish(S.w, &p, on_published, op_new(c, cmd->id));
}

static void on_history_read(void *arg, int rc, const struct node_history *h)
{
	struct op *o = arg;
	struct client *c = op_client(o);
	if (c == NULL)
		;
	else if (rc == RT_INVAL)
		reply_error(c, CMD_HISTORY, o->id, 107);
	else if (rc != RT_OK)
		reply_error(c, CMD_HISTORY, o->id, 100);
	else if (h->epoch_mismatch)
		reply_error(c, CMD_HISTORY, o->id, 112);
	else {
		S.out.len = 0;
		if (proto_reply_history(&S.out, c->fmt, o->id, h->v, h->n, pstr_c(h->epoch), h->top) != RT_OK)
			client_disconnect(c, 3506, "inappropriate protocol");
		else
			send_out(c);
	}
	op_done(o);
}

/* history: client-protocol.md 6.5, capped by
 * client.history_max_publication_limit. */
static void cmd_history(struct client *c, const struct cmd *cmd)
{
	const struct chan_opts *o;
	struct pstr ch = cmd->history.channel;
	char epoch[64] = "";

	if (ch.n == 0) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	int rc = chan_check_history(S.chans, ch, pstr_c(c->user), find_sub(c, ch) != NULL, &o);
	if (rc == CHAN_OK && !node_history_fits(S.w, ch))
		rc = 107;
	if (rc != CHAN_OK) {
		reply_error(c, CMD_HISTORY, cmd->id, (uint32_t)rc);
		return;
	}
	long long cap = S.w->conf->history_max_limit;
	int32_t limit = cmd->history.limit;
	if (cap > 0 && (limit < 0 || limit > cap))
		limit = (int32_t)cap;
	if (!pstr_copy(epoch, sizeof(epoch), cmd->history.since_epoch)) {
		reply_error(c, CMD_HISTORY, cmd->id, 112); /* no epoch is that long */
		return;
	}
	struct hist_query q = {
		.limit = limit, .reverse = cmd->history.reverse, .has_since = cmd->history.has_since,
		.since_offset = cmd->history.since_offset, .since_epoch = epoch,
		.meta_ttl_ms = (uint64_t)o->history_meta_ttl_ms,
	};
	node_history(S.w, ch, &q, on_history_read, op_new(c, cmd->id));
}

static void on_presence(void *arg, int rc, const struct node_presence *p)
{
	struct op *o = arg;
	struct client *c = op_client(o);
	S.out.len = 0;
	if (c == NULL)
		;
	else if (rc != RT_OK)
		reply_error(c, CMD_PRESENCE, o->id, 100);
	else if (proto_reply_presence(&S.out, c->fmt, o->id, p->v, p->n) != RT_OK)
		client_disconnect(c, 3506, "inappropriate protocol");
	else
		send_out(c);
	op_done(o);
}

static void on_presence_stats(void *arg, int rc, uint32_t nc, uint32_t nu)
{
	struct op *o = arg;
	struct client *c = op_client(o);
	if (c != NULL && rc != RT_OK) {
		reply_error(c, CMD_PRESENCE_STATS, o->id, 100);
	} else if (c != NULL) {
		S.out.len = 0;
		proto_reply_presence_stats(&S.out, c->fmt, o->id, nc, nu);
		send_out(c);
	}
	op_done(o);
}

/* presence and presence_stats: who is subscribed to a channel with
 * presence, from the node-wide presence table. */
static void cmd_presence(struct client *c, const struct cmd *cmd, struct pstr ch, bool stats)
{
	const struct chan_opts *o;
	if (ch.n == 0) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	int rc = chan_check_presence(S.chans, ch, pstr_c(c->user), find_sub(c, ch) != NULL, &o);
	if (rc != CHAN_OK) {
		reply_error(c, stats ? CMD_PRESENCE_STATS : CMD_PRESENCE, cmd->id, (uint32_t)rc);
		return;
	}
	if (stats)
		node_presence_stats(S.w, ch, on_presence_stats, op_new(c, cmd->id));
	else
		node_presence(S.w, ch, on_presence, op_new(c, cmd->id));
}

/* ---- dispatch ------------------------------------------------------------- */

static void handle(struct client *c, const struct cmd *cmd)
{
	if (cmd->type == CMD_EMPTY) {
		/* id 0 and nothing else: a pong, valid only after a ping. */
		if (cmd->id != 0 || c->state != CS_CONNECTED || !c->ping_sent) {
			client_disconnect(c, 3501, "bad request");
			return;
		}
		c->ping_sent = false;
		c->pong_at = 0;
		arm(c);
		return;
	}
	if (c->state == CS_NEW && cmd->type != CMD_CONNECT) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	if (c->state == CS_FAILED || (c->state == CS_CONNECTED && cmd->type == CMD_CONNECT)) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	if (cmd->id == 0 && cmd->type != CMD_SEND) {
		client_disconnect(c, 3501, "bad request");
		return;
	}
	int64_t t0 = util_mono_ns();
	STATS_BUMP(ctr(), n.t_recv[c->tidx], 1);
	switch (cmd->type) {
	case CMD_CONNECT: cmd_connect(c, cmd); break;
	case CMD_SUBSCRIBE: cmd_subscribe(c, cmd); break;
	case CMD_UNSUBSCRIBE: cmd_unsubscribe(c, cmd); break;
	case CMD_PUBLISH: cmd_publish(c, cmd); break;
	case CMD_PRESENCE: cmd_presence(c, cmd, cmd->presence.channel, false); break;
	case CMD_PRESENCE_STATS: cmd_presence(c, cmd, cmd->presence_stats.channel, true); break;
	case CMD_HISTORY: cmd_history(c, cmd); break;
	case CMD_RPC: cmd_rpc(c, cmd); break;
	case CMD_SEND: client_disconnect(c, 3508, "not available"); break; /* no message handler */
	case CMD_REFRESH: cmd_refresh(c, cmd); break;
	case CMD_SUB_REFRESH: cmd_sub_refresh(c, cmd); break;
	case CMD_EMPTY: break;
	}
	/* Until the command's answer or its hand-over to the engine (whose
	 * answer may come in a later iteration, with Redis). */
	stats_observe(&ctr()->n.cmd[cmd->type - CMD_CONNECT], (uint64_t)(util_mono_ns() - t0));
}

/* Handles the commands of frame DATA from the FROM-th on, until one
 * stalls the session (which then keeps a copy of the frame). */
static void client_run(struct client *c, const char *data, size_t len, size_t from)
{
	struct cmd_batch b = { 0 };

	if (proto_decode(c->fmt, data, len, MAX_CMDS_PER_FRAME, &b) != RT_OK) {
		proto_batch_free(&b);
		client_disconnect(c, 3501, "bad request");
		return;
	}
	for (size_t i = from; i < b.n && c->state != CS_CLOSED; i++) {
		handle(c, &b.v[i]);
		if (stall_save(c, RP_FRAME, data, len, i))
			break;
	}
	proto_batch_free(&b);
}

void client_frame(struct client *c, const char *data, size_t len)
{
	if (c->state == CS_CLOSED)
		return;
	if (c->stall != NULL) {
		backlog_add(c->stall, NULL, data, len); /* waiting for the engine: this comes after */
		return;
	}
	STATS_BUMP(ctr(), n.t_recv_bytes[c->tidx], len);
	client_run(c, data, len, 0);
}

/* ---- lifecycle ------------------------------------------------------------- */

/* The transports the stats count apart (transport_ops.name), by enum
 * stats_transport. */
static const char *const transport_names[STATS_TRANSPORTS] = {
	[STATS_T_WEBSOCKET] = "websocket", [STATS_T_HTTP_STREAM] = "http_stream",
	[STATS_T_SSE] = "sse", [STATS_T_SOCKJS] = "sockjs",
	[STATS_T_UNI_WEBSOCKET] = "uni_websocket", [STATS_T_UNI_SSE] = "uni_sse",
	[STATS_T_UNI_HTTP_STREAM] = "uni_http_stream", [STATS_T_OTHER] = "other",
};

unsigned client_transport_index(const char *name)
{
	for (unsigned i = 0; i < STATS_T_OTHER; i++)
		if (strcmp(name, transport_names[i]) == 0)
			return i;
	return STATS_T_OTHER;
}

const char *client_transport_name(unsigned i)
{
	return i < STATS_TRANSPORTS ? transport_names[i] : "other";
}

struct client *client_new(struct worker *w, const struct transport_ops *ops, void *t,
			  const struct client_opts *o)
{
	struct client *c = xcalloc(1, sizeof(*c));
	c->tops = ops;
	c->t = t;
	c->fmt = (uint8_t)o->fmt;
	c->flags = (uint8_t)o->flags;
	c->session = pstr_dup(o->session);
	struct proxy_headers *kept = proxy_headers_keep(S.proxies, o->req);
	if (kept)
		backend_of(c)->hdrs = kept;
	c->state = CS_NEW;
	c->tidx = (uint8_t)client_transport_index(ops->name);
	STATS_BUMP(ctr(), n.sessions[c->tidx], 1);
	STATS_BUMP(ctr(), inflight[c->tidx], 1);
	make_uuid(c->id);
	wheel_timer_init(&c->timer, on_timer);
	c->stale_at = w->now_ms + (w->conf->stale_close_delay_ms > 0 ? w->conf->stale_close_delay_ms : 1);
	c->next = S.all;
	if (S.all)
		S.all->prev = c;
	S.all = c;
	arm(c);
	return c;
}

uint32_t client_uni_connect(struct client *c, const char *data, size_t len, const char **reason)
{
	struct cmd_batch b = { 0 };

	if (c->state != CS_NEW)
		return 0;
	if (proto_decode_connect(c->fmt, data, len, &b) != RT_OK)
		connect_refused(c, 3501, "bad request");
	else
		cmd_connect(c, &b.v[0]);
	proto_batch_free(&b);
	if (stall_save(c, RP_UNI, data, len, 0))
		return 0; /* connecting: its result (or disconnect) follows */
	if (reason)
		*reason = c->fail_reason;
	return c->state == CS_CONNECTED ? 0 : c->fail_code;
}

/* Makes C deaf: no more commands, pushes or timers; subscriptions end. */
static void deafen(struct client *c)
{
	if (c->state == CS_CONNECTED) {
		S.n--;
		S.version++;
		smap_add(&S.users, c->user, strlen(c->user), -1);
	}
	c->state = CS_CLOSED;
	wheel_cancel(&S.w->wheel, &c->timer);
	drop_all_subs(c);
}

void client_disconnect(struct client *c, uint32_t code, const char *reason)
{
	if (c->state == CS_CLOSED)
		return;
	log_debug("client %s: disconnect %u %s", c->id, code, reason);
	deafen(c);
	if (!c->closed_by_transport)
		c->tops->close(c->t, code, reason);
}

void client_shutdown(struct client *c)
{
	client_disconnect(c, 3001, "shutdown");
}

void client_transport_closed(struct client *c)
{
	c->closed_by_transport = true;
	STATS_SUB(ctr(), inflight[c->tidx], 1);
	deafen(c);
	if (c->be && c->be->refreshing) {
		proxy_cancel(c->be->refreshing);
		c->be->refreshing = NULL;
	}
	if (c->stall != NULL) {
		px_cancel_all(c->stall);
		/* The answers still awaited free it (a stall not saved yet
		 * belongs to a command on the stack: stall_save frees it). */
		c->stall->c = NULL;
		if (c->stall->saved && c->stall->pending == 0)
			stall_free(c->stall);
		c->stall = NULL;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		S.all = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c->user);
	pstr_free(&c->info);
	pstr_free(&c->session);
	if (c->be) {
		pstr_free(&c->be->meta);
		proxy_headers_free(c->be->hdrs);
		free(c->be);
	}
	free(c);
}

int client_position(struct csub *s, uint64_t offset, struct pstr epoch)
{
	struct client *c = s->c;
	/* A channel without history gives no offsets: nothing to check (a
	 * lapped bus still ends the subscription, see client_lost_state). */
	if (offset == 0)
		return 1;
	bool same_epoch = s->epoch[0] == '\0' ||
			  (epoch.n == strlen(s->epoch) && memcmp(epoch.p, s->epoch, epoch.n) == 0);
	if (same_epoch && offset != 0 && offset <= s->offset)
		return 0;
	if (same_epoch && offset == s->offset + 1) {
		s->offset = offset;
		if (s->epoch[0] == '\0')
			pstr_copy(s->epoch, sizeof(s->epoch), epoch); /* unless it does not fit */
		return 1;
	}
	end_sub(c, s, 2500, 3010, "insufficient state");
	return -1;
}

void client_lost_state(void)
{
	for (struct client *c = S.all, *next; c; c = next) {
		next = c->next;
		for (uint16_t i = c->nsubs; i-- > 0 && c->state == CS_CONNECTED;) {
			struct csub *s = c->subs[i];
			if ((s->flags & CSUB_POSITIONED) && !end_sub(c, s, 2500, 3010, "insufficient state"))
				break;
		}
	}
}

size_t client_count(void)
{
	return S.n;
}

uint64_t client_version(void)
{
	return S.version;
}

void client_each_user(void (*fn)(void *arg, const char *user, size_t n, uint64_t count), void *arg)
{
	smap_each(&S.users, fn, arg);
}

/* ---- per-worker set-up -------------------------------------------------------- */

static void build_keys(struct worker *w)
{
	struct conf_report rep = { 0 };
	tok_keys_free(&S.conn_keys);
	tok_keys_free(&S.sub_keys);
	memset(&S.conn_keys, 0, sizeof(S.conn_keys));
	memset(&S.sub_keys, 0, sizeof(S.sub_keys));
	/* The master validated both with conf_check: no error expected here. */
	tok_keys_from_conf(&S.conn_keys, w->conf, "client.token", &rep);
	S.sub_keys_own = json_is_true(conf_get(w->conf, "client.subscription_token.enabled"));
	if (S.sub_keys_own)
		tok_keys_from_conf(&S.sub_keys, w->conf, "client.subscription_token", &rep);
	for (size_t i = 0; i < rep.nerrors; i++)
		log_error("token keys: %s", rep.errors[i]);
	conf_report_free(&rep);
}

/* client.connect_code_to_unidirectional_disconnect into S.uni (the master
 * checked its shape: a code and a disconnect code in each item). */
static void build_uni(struct worker *w)
{
	const json_t *list = conf_get(w->conf, "client.connect_code_to_unidirectional_disconnect.transforms"), *t;
	size_t i;

	free(S.uni);
	S.uni = NULL;
	S.nuni = 0;
	if (!json_is_true(conf_get(w->conf, "client.connect_code_to_unidirectional_disconnect.enabled")))
		return;
	S.uni = xcalloc(json_array_size(list) + 1, sizeof(*S.uni));
	json_array_foreach(list, i, t) {
		const json_t *to = json_object_get(t, "to");
		const char *reason = json_string_value(json_object_get(to, "reason"));
		struct uni_code *u = &S.uni[S.nuni++];

		u->code = (uint32_t)json_integer_value(json_object_get(t, "code"));
		u->to = (uint32_t)json_integer_value(json_object_get(to, "code"));
		snprintf(u->reason, sizeof(u->reason), "%s", reason ? reason : "");
	}
}

void client_init(struct worker *w)
{
	S.w = w;
	jwks_init(w->loop); /* the JWKS keys of build_keys' verifiers */
	build_keys(w);
	build_uni(w);
	S.chans = chan_cfg_new(w->conf);
	S.proxies = proxy_set_new(w->loop, w->conf, w->ctr);
}

void client_reconfigure(struct worker *w)
{
	build_keys(w);
	build_uni(w);
	chan_cfg_free(S.chans);
	S.chans = chan_cfg_new(w->conf);
	proxy_set_free(S.proxies);
	S.proxies = proxy_set_new(w->loop, w->conf, w->ctr);
}

/* ---- server-side actions ------------------------------------------------------ */

static bool target_match(const struct client *c, const struct node_target *t)
{
	if (c->state != CS_CONNECTED)
		return false;
	if (t->user.n && !pstr_eq(t->user, c->user))
		return false;
	if (t->client.n && !(t->client.n == 36 && memcmp(t->client.p, c->id, 36) == 0))
		return false;
	/* Only emulation transports have sessions: a session filter matches
	 * no other connection. */
	if (t->session.n && !(t->session.n == c->session.n && memcmp(t->session.p, c->session.p, c->session.n) == 0))
		return false;
	return true;
}

void client_apply_disconnect(const struct node_target *t, const struct pstr *whitelist, size_t n,
			     uint32_t code, struct pstr reason)
{
	char why[128];
	size_t len = reason.n < sizeof(why) - 1 ? reason.n : sizeof(why) - 1;
	if (len) /* an empty reason off the bus has p NULL */
		memcpy(why, reason.p, len);
	why[len] = '\0';
	for (struct client *c = S.all, *next; c; c = next) {
		next = c->next;
		if (!target_match(c, t))
			continue;
		bool spared = false;
		for (size_t i = 0; i < n && !spared; i++)
			spared = whitelist[i].n == 36 && memcmp(whitelist[i].p, c->id, 36) == 0;
		if (!spared)
			client_disconnect(c, code, why);
	}
}

void client_apply_unsubscribe(const struct node_target *t, struct pstr channel)
{
	for (struct client *c = S.all; c; c = c->next) {
		if (!target_match(c, t))
			continue;
		for (uint16_t i = c->nsubs; i-- > 0;) {
			struct csub *s = c->subs[i];
			struct pstr name = { s->ch->name, s->ch->len };
			if (channel.n && !(name.n == channel.n && memcmp(name.p, channel.p, channel.n) == 0))
				continue;
			S.out.len = 0;
			proto_push_unsubscribe(&S.out, c->fmt, name, 2000, "server unsubscribe");
			send_out(c);
			drop_sub(c, s);
		}
	}
}

/* Subscribes C server-side as NS says (one of client_apply_subscribe's
 * matches). When the position is read later, C stalls with a copy of NS
 * and this runs again with the answer. */
static void server_sub(struct client *c, const struct chan_opts *o, const struct node_sub *ns)
{
	struct sub_result r;
	struct sub_req since = { .recover = ns->has_since, .offset = ns->since_offset, .epoch = ns->since_epoch };
	if (subscribe_server_side(c, ns->channel, o, &ns->override, ns->info, ns->expire_at, &since, &r) == NULL) {
		stall_of(c)->ssub = ssub_copy(ns);
		stall_save(c, RP_SERVER_SUB, NULL, 0, 0);
		return;
	}
	if (ns->expire_at > 0)
		arm(c);
	r.data = ns->data;
	S.out.len = 0;
	proto_push_subscribe(&S.out, c->fmt, ns->channel, &r);
	send_out(c);
	/* The Subscribe push has no place for publications: recovered ones
	 * follow it as pushes, in order. */
	for (size_t i = 0; i < r.npubs; i++) {
		S.out.len = 0;
		if (proto_push_pub(&S.out, c->fmt, ns->channel, &r.pubs[i]) == RT_OK)
			send_out(c);
	}
	cache_drop();
}

static void replay_server_sub(struct client *c, const struct node_sub *ns)
{
	const struct chan_opts *o = chan_lookup(S.chans, ns->channel, NULL);
	if (o != NULL && !find_sub(c, ns->channel))
		server_sub(c, o, ns);
	else
		cache_drop();
}

void client_apply_subscribe(const struct node_target *t, const struct node_sub *ns)
{
	const struct chan_opts *o = chan_lookup(S.chans, ns->channel, NULL);
	if (o == NULL)
		return; /* the API checked the namespace; a reload may have removed it */
	for (struct client *c = S.all; c; c = c->next) {
		if (!target_match(c, t) || find_sub(c, ns->channel))
			continue;
		if (c->stall != NULL) {
			backlog_add(c->stall, ssub_copy(ns), NULL, 0); /* after what it waits for */
			continue;
		}
		if (S.w->conf->channel_limit > 0 && c->nsubs >= S.w->conf->channel_limit) {
			client_disconnect(c, 3505, "channel limit");
			continue;
		}
		server_sub(c, o, ns);
	}
}

void client_apply_refresh(const struct node_target *t, bool expired, int64_t expire_at, struct pstr info)
{
	for (struct client *c = S.all, *next; c; c = next) {
		next = c->next;
		if (!target_match(c, t))
			continue;
		/* As centrifuge's Client.Refresh: an expiry already passed closes
		 * at once; 0 means the connection no longer expires; the client
		 * hears of the new expiry in a refresh push. */
		int64_t ttl = expire_at - now_s();
		if (expired || (expire_at > 0 && ttl <= 0)) {
			client_disconnect(c, 3005, "connection expired");
			continue;
		}
		if (info.n > 0) {
			pstr_free(&c->info);
			c->info = pstr_dup(info);
			for (uint16_t i = 0; i < c->nsubs; i++)
				if (c->subs[i]->flags & CSUB_PRESENCE)
					presence_add(c, c->subs[i]);
		}
		set_expiry(c, expire_at);
		arm(c);
		S.out.len = 0;
		proto_push_refresh(&S.out, c->fmt, expire_at > 0, expire_at > 0 ? (uint32_t)ttl : 0);
		send_out(c);
	}
}
