/*
 * sockjs_session.c - SockJS sessions (sockjs_session.h).
 *
 * Model. A session (struct sjs) buffers what its application sends, by
 * reference, in one list (out), allocated only while non-empty, and is put
 * on a dirty list. At the flush point (sjs_flush, before the WebSocket and
 * stream layers frame onto connections) every dirty session with a
 * receiver turns its whole buffer into one frame, a["m1","m2"] (one
 * SockJS message each) or, for Centrifugo, a["m1\nm2"] (one message, the
 * replies joined by '\n', as Centrifugo v5's WriteMany), wraps it for the
 * receiver's transport and hands it over as one chunk (hs_send_chunk) or
 * one WebSocket message (ws_send_parts). A polling receiver then ends; a
 * streaming one ends once the wrapped bytes it carried reach the service's
 * response limit. The close frame follows the last messages; every later
 * receiver gets it again.
 *
 * Sharing a publication: a message is quoted into the frame (sockjs.md
 * §4.2) and wrapped for the transport. Both transform it character by
 * character (sjf_wrap_piece), so a frame is the transport's fixed head,
 * the pieces, separators and tail: shared rbufs made once per worker,
 * except the quoted messages. A message whose rbuf others hold too (a
 * publication queued on several sessions) is quoted and wrapped once per
 * flush and transport encoding, in a small cache keyed by the source rbuf
 * (fcache.h),
 * and every frame refers to those bytes; one that only this session holds
 * (a reply) is quoted into the frame's own copy.
 *
 * Receivers: one at a time (a second one gets c[2010,...] and ends). An
 * HTTP receiver is a stream (stream.c) whose response carries the frames;
 * the session is attached to it until it ends (polling: after one frame;
 * streaming: at the response limit or at the close), and the connection
 * then goes back to HTTP keep-alive. A receiver that goes away while
 * attached (the client closed it, a write timed out) closes the session
 * with 1002 "Connection interrupted" at once, as both reference servers
 * do. A WebSocket session's receiver is its socket, for its whole life.
 *
 * Time: one wheel timer per session: without a receiver, the session ends
 * after SJS_DISCONNECT_DELAY_MS (its application is told, like a dropped
 * WebSocket); with one, a heartbeat frame "h" every heartbeat interval of
 * quiet, when heartbeats are on.
 *
 * Applications are called back only from the event loop or the flush
 * point, never from inside sjs_send/sjs_close: sjs_close defers gone() to
 * the flush point. Invariants: SJS_DIRTY <=> on the dirty list; s->recv
 * == r <=> r->s == s; an HTTP session is in its service's registry until
 * it is freed; a session with a receiver has no disconnect timer.
 */
#include "config.h"
#include "sockjs_session.h"
#include "conf.h"
#include "conn.h"
#include "fcache.h"
#include "http.h"
#include "log.h"
#include "stream.h"
#include "transport.h"
#include "util.h"
#include "wheel.h"
#include "worker.h"
#include "ws.h"

#include <stdlib.h>
#include <string.h>

enum {
	SJS_DIRTY = 0x01,      /* on the dirty list */
	SJS_CLOSED = 0x02,     /* closed: the close frame is what receivers get */
	SJS_GONE_DUE = 0x04,   /* the application's gone() is due at the flush point */
	SJS_WS = 0x08,         /* a WebSocket session: the socket is its receiver */
	SJS_RAW = 0x10,        /* ... without SockJS framing */
	SJS_CLOSE_SENT = 0x20, /* WebSocket: the close is out */
	SJS_DEAD = 0x40,       /* over: freed when the flush point reaches it */
};

/* A receiving request, or a WebSocket session's socket. */
struct sjs_recv {
	struct sjs *s;             /* the session attached to it, or NULL */
	struct hs *hs;             /* HTTP */
	struct ws *ws;             /* WebSocket */
	uint64_t sent;             /* wrapped frame bytes sent on it */
	uint8_t t;                 /* enum sjf_transport */
	uint8_t cbn;
	char cb[SJF_CALLBACK_MAX + 1];
};

struct sjs {
	struct sjs_service *svc;
	void *app;                 /* NULL until open() returned, and once gone() ran */
	struct sjs_recv *recv;     /* the attached receiver, or NULL */
	struct rlist *out;         /* messages not yet framed */
	size_t out_bytes;
	struct wheel_timer timer;
	struct sjs *dirty_next;
	struct sjs *next, *prev;   /* every session of the worker */
	int64_t last_ms;           /* a frame went out, or the receiver left */
	uint32_t flags;
	unsigned code;             /* close code and reason, once SJS_CLOSED */
	char *reason;
	size_t idn;
	char id[];                 /* HTTP sessions: the registry key */
};

/* The fixed pieces of an a[...] frame: the frame itself is A_HEAD, the
 * quoted messages separated by A_JOIN (one SockJS message: "\n" inside the
 * JSON string) or A_LIST (one each), then A_TAIL. */
#define A_HEAD "a[\""
#define A_JOIN "\\n"
#define A_LIST "\",\""
#define A_TAIL "\"]"

enum { F_HEAD, F_JOIN, F_LIST, F_TAIL, F_COUNT };

/* Encodings of a piece: websocket, xhr and xhr_streaming take pieces as
 * they are; the others each transform them their own way. */
enum { V_PLAIN, V_EVENTSOURCE, V_HTMLFILE, V_JSONP, V_COUNT };

#define CACHE_BITS 8 /* 256 entries; a flush rarely frames more distinct shared messages */

static struct {
	struct worker *w;
	struct sjs *dirty;
	struct sjs *all;
	int64_t heartbeat_ms;
	/* The fixed pieces, wrapped for each receiving transport (the jsonp
	 * head holds the callback: built per frame, F_HEAD is NULL). */
	struct rbuf *fixed[SJF_T_COUNT][F_COUNT];
	struct fcache cache;       /* shared messages quoted and wrapped, tag: the encoding */
	struct jw frame;           /* the copied bytes of the frame being assembled */
	struct jw piece, tmp;      /* scratch */
	struct rseg *seg;          /* the frame being assembled */
	size_t nseg, segcap;
	struct sjf_msgs msgs;      /* decoded WebSocket messages */
} S;

static void flush_one(struct sjs *s);

/* ---- helpers --------------------------------------------------------------- */

static int variant(enum sjf_transport t)
{
	switch (t) {
	case SJF_T_EVENTSOURCE: return V_EVENTSOURCE;
	case SJF_T_HTMLFILE: return V_HTMLFILE;
	case SJF_T_JSONP: return V_JSONP;
	default: return V_PLAIN;
	}
}

static bool streaming(const struct sjs_recv *r)
{
	return r->ws || (sjf_transport_flags((enum sjf_transport)r->t) & SJF_TF_STREAMING);
}

static size_t queue_max(void)
{
	return S.w->conf->queue_max_size > 0 ? (size_t)S.w->conf->queue_max_size : 0;
}

static void mark_dirty(struct sjs *s)
{
	if (s->flags & SJS_DIRTY)
		return;
	s->flags |= SJS_DIRTY;
	s->dirty_next = S.dirty;
	S.dirty = s;
}

static struct sjs *lookup(struct sjs_service *svc, const char *id, size_t idn)
{
	return (struct sjs *)(uintptr_t)smap_get(&svc->sessions, id, idn);
}

/* ---- the application ----------------------------------------------------- */

static void app_open(struct sjs *s, const struct http_req *req)
{
	void *app = s->svc->app->open(s, req);

	/* open() may have closed it: gone() is then due at the flush point,
	 * which needs the state. */
	s->app = app;
}

static void app_message(struct sjs *s, const char *p, size_t n)
{
	if (s->app && !(s->flags & SJS_CLOSED))
		s->svc->app->message(s->app, p, n);
}

static void app_gone(struct sjs *s)
{
	void *app = s->app;

	s->flags &= ~SJS_GONE_DUE;
	if (!app)
		return;
	s->app = NULL;
	s->svc->app->gone(app);
}

/* ---- timers -------------------------------------------------------------- */

/* Arms S's timer for what is due next: the heartbeat while a receiver
 * waits (heartbeats on, not closed), else the end of an HTTP session
 * without a receiver. */
static void timer_update(struct sjs *s)
{
	struct wheel *wh = &S.w->wheel;

	if (s->recv || (s->flags & SJS_WS)) {
		if (S.heartbeat_ms > 0 && !(s->flags & (SJS_CLOSED | SJS_RAW)))
			wheel_add(wh, &s->timer, s->last_ms + S.heartbeat_ms);
		else
			wheel_cancel(wh, &s->timer);
		return;
	}
	wheel_add(wh, &s->timer, s->last_ms + SJS_DISCONNECT_DELAY_MS);
}

static void session_free(struct sjs *s)
{
	wheel_cancel(&S.w->wheel, &s->timer);
	if (s->prev)
		s->prev->next = s->next;
	else
		S.all = s->next;
	if (s->next)
		s->next->prev = s->prev;
	rlist_free(&s->out);
	free(s->reason);
	free(s);
}

/* S is over: the application is told, the registry forgets it; the memory
 * goes now, or at the flush point if S is on the dirty list. */
static void session_end(struct sjs *s)
{
	app_gone(s);
	if (!(s->flags & SJS_WS))
		smap_set(&s->svc->sessions, s->id, s->idn, 0);
	wheel_cancel(&S.w->wheel, &s->timer);
	if (s->flags & SJS_DIRTY)
		s->flags |= SJS_DEAD;
	else
		session_free(s);
}

static struct sjs *session_new(struct sjs_service *svc, const char *id, size_t idn, uint32_t flags);
static void emit_frame(struct sjs_recv *r, const char *frame, size_t n);
static void detach(struct sjs *s);

static void on_timer(struct wheel_timer *t)
{
	struct sjs *s = (struct sjs *)((char *)t - offsetof(struct sjs, timer));

	if (!s->recv && !(s->flags & SJS_WS)) {
		log_debug("sockjs %s: session %.*s timed out without a receiver", s->svc->name,
			  (int)s->idn, s->id);
		session_end(s);
		return;
	}
	if (S.heartbeat_ms > 0 && s->recv && !(s->flags & (SJS_CLOSED | SJS_RAW))) {
		emit_frame(s->recv, "h", 1);
		if (!streaming(s->recv)) {
			detach(s);
			return;
		}
	}
	timer_update(s);
}

/* ---- sending frames -------------------------------------------------------- */

/* Hands the assembled frame S.seg[0..nseg) to R. */
static int recv_send(struct sjs_recv *r)
{
	size_t len = rseg_len(S.seg, S.nseg);
	int rc;

	rc = r->ws ? ws_send_parts(r->ws, S.seg, S.nseg) : hs_send_chunk(r->hs, S.seg, S.nseg);
	if (rc == RT_OK) {
		r->sent += len;
		if (r->s)
			r->s->last_ms = S.w->now_ms;
	}
	S.nseg = 0;
	return rc;
}

static void seg_add(struct rbuf *b, size_t off, size_t len)
{
	if (S.nseg == S.segcap) {
		S.segcap = S.segcap ? 2 * S.segcap : 32;
		S.seg = xrealloc(S.seg, S.segcap * sizeof(*S.seg));
	}
	S.seg[S.nseg++] = (struct rseg){ b, off, len };
}

/* Sends FRAME[0..N) ("o", "h", "c[...]") to R, wrapped for its transport. */
static void emit_frame(struct sjs_recv *r, const char *frame, size_t n)
{
	struct rbuf *b;

	S.tmp.len = 0;
	sjf_wrap(&S.tmp, (enum sjf_transport)r->t, r->cb, r->cbn, frame, n);
	b = rbuf_copy(S.tmp.buf, S.tmp.len);
	seg_add(b, 0, b->len);
	recv_send(r);
	rbuf_unref(b);
}

static void emit_close(struct sjs_recv *r, unsigned code, const char *reason)
{
	struct jw f = { 0 };

	sjf_frame_close(&f, code, reason, strlen(reason));
	emit_frame(r, f.buf, f.len);
	jw_free(&f);
}

/* Appends message M quoted and wrapped in encoding V of transport T to
 * OUT. */
static void quote_piece(struct jw *out, enum sjf_transport t, int v, const struct rseg *m)
{
	if (v == V_PLAIN) {
		sjf_quote_ex(out, m->b->data + m->off, m->len, SJF_Q_BARE);
		return;
	}
	S.tmp.len = 0;
	sjf_quote_ex(&S.tmp, m->b->data + m->off, m->len, SJF_Q_BARE);
	sjf_wrap_piece(out, t, S.tmp.buf, S.tmp.len);
}

/* The shared bytes of message M for transport T: quoted and wrapped once
 * per flush, or NULL when the cache is full around its place. */
static struct rbuf *cached_piece(enum sjf_transport t, const struct rseg *m)
{
	int v = variant(t);
	struct fcache_entry *e = fcache_get(&S.cache, m, (uintptr_t)v);

	if (e && !e->out) {
		S.piece.len = 0;
		quote_piece(&S.piece, t, v, m);
		e->out = rbuf_copy(S.piece.buf, S.piece.len);
	}
	return e ? e->out : NULL;
}

/* Shared message M as a whole a[...] frame for transport T (its fixed head,
 * the quoted piece, its tail) in one buffer, made once per flush, so that
 * a lone publication costs a receiver one segment as on WebSocket. NULL:
 * not cached (a JSONP head holds the receiver's callback). */
#define WHOLE_FRAME 0x100 /* fcache tag: beside the pieces' encodings */
static struct rbuf *cached_frame(enum sjf_transport t, const struct rseg *m)
{
	struct rbuf *const *fx = S.fixed[t];
	struct fcache_entry *e;
	struct rbuf *p;

	if (!fx[F_HEAD] || !(p = cached_piece(t, m)) || !(e = fcache_get(&S.cache, m, WHOLE_FRAME | (uintptr_t)t)))
		return NULL;
	if (!e->out) {
		e->out = rbuf_new(fx[F_HEAD]->len + p->len + fx[F_TAIL]->len);
		memcpy(e->out->data, fx[F_HEAD]->data, fx[F_HEAD]->len);
		memcpy(e->out->data + fx[F_HEAD]->len, p->data, p->len);
		memcpy(e->out->data + fx[F_HEAD]->len + p->len, fx[F_TAIL]->data, fx[F_TAIL]->len);
	}
	return e->out;
}

/* Frames S's buffered messages for R: one a[...] frame made of the shared
 * fixed pieces, the cached pieces of shared messages, and one copy holding
 * the rest (the jsonp head, unshared messages). */
static int emit_messages(struct sjs *s, struct sjs_recv *r)
{
	enum sjf_transport t = (enum sjf_transport)r->t;
	struct rbuf *const *fx = S.fixed[t];
	struct rbuf *copy = NULL;
	size_t first = 0;
	int rc;

	S.nseg = 0;
	S.frame.len = 0;
	if (s->out->n == 1 && s->out->v[0].b->refs > 1) {
		struct rbuf *whole = cached_frame(t, &s->out->v[0]);

		if (whole) {
			seg_add(whole, 0, whole->len);
			return recv_send(r);
		}
	}
	/* Pieces of the copy are noted with b == NULL and resolved at the end. */
	if (fx[F_HEAD]) {
		seg_add(fx[F_HEAD], 0, fx[F_HEAD]->len);
	} else {
		sjf_wrap_head(&S.frame, t, r->cb, r->cbn);
		sjf_wrap_piece(&S.frame, t, A_HEAD, sizeof(A_HEAD) - 1);
		seg_add(NULL, 0, S.frame.len);
	}
	for (uint32_t i = 0; i < s->out->n; i++) {
		const struct rseg *m = &s->out->v[i];
		struct rbuf *p = NULL;

		if (i > 0) {
			struct rbuf *sep = fx[s->svc->join ? F_JOIN : F_LIST];
			seg_add(sep, 0, sep->len);
		}
		if (m->b->refs > 1)
			p = cached_piece(t, m);
		if (p) {
			seg_add(p, 0, p->len);
		} else {
			first = S.frame.len;
			quote_piece(&S.frame, t, variant(t), m);
			seg_add(NULL, first, S.frame.len - first);
		}
	}
	seg_add(fx[F_TAIL], 0, fx[F_TAIL]->len);
	if (S.frame.len)
		copy = rbuf_copy(S.frame.buf, S.frame.len);
	for (size_t i = 0; i < S.nseg; i++)
		if (!S.seg[i].b)
			S.seg[i].b = copy;
	rc = recv_send(r);
	rbuf_unref(copy);
	return rc;
}

/* Raw WebSocket: each message a WebSocket message of its own. */
static int emit_raw(struct sjs *s, struct sjs_recv *r)
{
	for (uint32_t i = 0; i < s->out->n; i++) {
		int rc;

		seg_add(s->out->v[i].b, s->out->v[i].off, s->out->v[i].len);
		if ((rc = recv_send(r)) != RT_OK)
			return rc;
	}
	return RT_OK;
}

/* ---- receivers ----------------------------------------------------------- */

static void attach(struct sjs *s, struct sjs_recv *r)
{
	s->recv = r;
	r->s = s;
	s->last_ms = S.w->now_ms;
	timer_update(s);
}

/* S's receiver is done: its response ends, its connection goes back to
 * HTTP keep-alive, and S waits for the next one. */
static void detach(struct sjs *s)
{
	struct sjs_recv *r = s->recv;

	s->recv = NULL;
	r->s = NULL;
	hs_end(r->hs, true);
	s->last_ms = S.w->now_ms;
	timer_update(s);
}

static void r_drain(struct hs *hs, void *ud)
{
	struct sjs_recv *r = ud;

	/* An attached one ends with its session (sjs_drain); a request that
	 * only carries a close frame is ending anyway. */
	if (!r->s)
		hs_end(hs, false);
}

/* The receiver's client reads too slowly: its session closes (3008). */
static void r_slow(struct hs *hs, void *ud)
{
	struct sjs_recv *r = ud;
	struct sjs *s = r->s;

	if (s) {
		rlist_free(&s->out);
		s->out_bytes = 0;
		sjs_close(s, 3008, "slow");
		s->recv = NULL;
		r->s = NULL;
		s->last_ms = S.w->now_ms;
		timer_update(s);
	}
	hs_close_now(hs);
}

static void r_close(struct hs *hs, void *ud)
{
	struct sjs_recv *r = ud;
	struct sjs *s = r->s;

	if (s) {
		/* Gone while attached: the client aborted it, or it could not
		 * be written. */
		log_debug("sockjs %s: the receiver of session %.*s went away", s->svc->name, (int)s->idn, s->id);
		s->recv = NULL;
		r->s = NULL;
		rlist_free(&s->out);
		s->out_bytes = 0;
		if (!(s->flags & SJS_CLOSED))
			sjs_close(s, 1002, "Connection interrupted");
		app_gone(s);
		s->last_ms = S.w->now_ms;
		timer_update(s);
	}
	free(r);
}

static const struct hs_ops recv_ops = { hs_frame_raw, r_drain, r_slow, r_close };

int sjs_receive(struct http_req *req, struct sjs_service *svc, const char *id, size_t idn,
		enum sjf_transport t, const char *cb, size_t cbn, const char *extra)
{
	struct sjs *s = lookup(svc, id, idn);
	struct sjf_route route = { .kind = SJF_SESSION, .transport = t };
	struct sjs_recv *r;
	int status;

	if (!s && (status = transport_admit(req, false)) != 0)
		return status;
	r = xcalloc(1, sizeof(*r));
	r->t = (uint8_t)t;
	if (cbn > SJF_CALLBACK_MAX)
		cbn = SJF_CALLBACK_MAX;
	memcpy(r->cb, cb, cbn);
	r->cbn = (uint8_t)cbn;
	S.frame.len = 0;
	sjf_prelude(&S.frame, t, r->cb, r->cbn);
	r->hs = hs_start(req, sjf_content_type(&route), extra, S.frame.buf, S.frame.len, queue_max(),
			 &recv_ops, r);
	if (!s) {
		s = session_new(svc, id, idn, 0);
		log_debug("sockjs %s: session %.*s opened (%s)", svc->name, (int)idn, id, sjf_transport_name(t));
		attach(s, r);
		emit_frame(r, "o", 1);
		if (!streaming(r))
			detach(s);
		app_open(s, req);
	} else if (s->flags & SJS_CLOSED) {
		emit_close(r, s->code, s->reason);
		hs_end(r->hs, true);
	} else if (s->recv) {
		emit_close(r, 2010, "Another connection still open");
		hs_end(r->hs, true);
	} else {
		attach(s, r);
		if (s->out)
			mark_dirty(s);
	}
	return 0;
}

int sjs_deliver(struct sjs_service *svc, const char *id, size_t idn, const struct sjf_msgs *m)
{
	struct sjs *s = lookup(svc, id, idn);

	if (!s || (s->flags & SJS_CLOSED))
		return RT_CLOSED;
	for (size_t i = 0; i < m->n; i++) {
		size_t len;
		const char *p = sjf_msg(m, i, &len);

		app_message(s, p, len);
	}
	return RT_OK;
}

/* ---- WebSocket sessions ---------------------------------------------------- */

static void w_message(struct ws *ws, void *ud, const char *data, size_t len)
{
	struct sjs *s = ud;
	enum sjf_decode_rc rc;

	if (s->flags & SJS_RAW) {
		app_message(s, data, len);
		return;
	}
	rc = sjf_decode(data, len, SJF_D_STRING, &S.msgs);
	if (rc == SJF_DEC_EMPTY)
		return; /* an empty message is ignored */
	if (rc != SJF_DEC_OK) {
		log_debug("sockjs %s: a WebSocket message is not a JSON array of strings; closing",
			  s->svc->name);
		ws_close(ws, 3000, "Broken framing.");
		return;
	}
	for (size_t i = 0; i < S.msgs.n; i++) {
		size_t n;
		const char *p = sjf_msg(&S.msgs, i, &n);

		app_message(s, p, n);
	}
}

static void w_drain(struct ws *ws, void *ud)
{
	struct sjs *s = ud;

	if (s->app && !(s->flags & SJS_CLOSED))
		s->svc->app->drain(s->app);
}

static void w_close(struct ws *ws, void *ud)
{
	struct sjs *s = ud;

	free(s->recv);
	s->recv = NULL;
	session_end(s);
}

/* Over client.queue_max_size: the session ends with 3008, its close frame
 * queued whatever the limit (what was not framed yet is dropped). */
static void w_slow(struct ws *ws, void *ud)
{
	struct sjs *s = ud;

	rlist_free(&s->out);
	s->out_bytes = 0;
	sjs_close(s, 3008, "slow");
}

static const struct ws_handler ws_handler = {
	.on_message = w_message, .on_drain = w_drain, .on_slow = w_slow, .on_close = w_close,
};

void sjs_websocket(struct http_req *req, struct sjs_service *svc, bool raw)
{
	static const struct ws_upgrade u = { .admit = true };
	struct ws_open_info info;
	struct ws *ws = ws_upgrade(req, &u, &info);
	struct sjs_recv *r;
	struct sjs *s;

	if (!ws)
		return;
	s = session_new(svc, NULL, 0, SJS_WS | (raw ? SJS_RAW : 0));
	r = xcalloc(1, sizeof(*r));
	r->t = SJF_T_WEBSOCKET;
	r->ws = ws;
	ws_set_handler(ws, &ws_handler, s);
	attach(s, r);
	if (!raw)
		emit_frame(r, "o", 1);
	app_open(s, req);
}

/* ---- the application's side --------------------------------------------------- */

static struct sjs *session_new(struct sjs_service *svc, const char *id, size_t idn, uint32_t flags)
{
	struct sjs *s = xcalloc(1, sizeof(*s) + idn + 1);

	s->svc = svc;
	s->flags = flags;
	s->idn = idn;
	memcpy(s->id, id ? id : "", idn);
	wheel_timer_init(&s->timer, on_timer);
	s->next = S.all;
	if (s->next)
		s->next->prev = s;
	S.all = s;
	if (!(flags & SJS_WS))
		smap_set(&svc->sessions, s->id, idn, (uint64_t)(uintptr_t)s);
	return s;
}

int sjs_send(struct sjs *s, struct rbuf *b, size_t off, size_t len)
{
	size_t max = queue_max();

	if (s->flags & SJS_CLOSED)
		return RT_CLOSED;
	if (len == 0)
		return RT_OK;
	if (max && s->out_bytes + len > max) {
		log_debug("sockjs %s: %zu bytes buffered, over client.queue_max_size %zu; slow", s->svc->name,
			  s->out_bytes + len, max);
		rlist_free(&s->out);
		s->out_bytes = 0;
		sjs_close(s, 3008, "slow");
		return RT_CLOSED;
	}
	rlist_push(&s->out, b, off, len);
	s->out_bytes += len;
	mark_dirty(s);
	return RT_OK;
}

int sjs_send_copy(struct sjs *s, const void *p, size_t n)
{
	struct rbuf *b;
	int rc;

	if (s->flags & SJS_CLOSED)
		return RT_CLOSED;
	b = rbuf_copy(p, n);
	rc = sjs_send(s, b, 0, n);
	rbuf_unref(b);
	return rc;
}

void sjs_close(struct sjs *s, unsigned code, const char *reason)
{
	if (s->flags & SJS_CLOSED)
		return;
	log_debug("sockjs %s: session %.*s closed: %u %s", s->svc->name, (int)s->idn, s->id, code, reason);
	s->flags |= SJS_CLOSED | SJS_GONE_DUE;
	s->code = code;
	s->reason = xstrdup(reason ? reason : "");
	mark_dirty(s);
}

/* ---- the flush point -------------------------------------------------------------- */

/* Closes S's WebSocket after its last frames: c[code,"reason"] and a close
 * frame with the same code when a peer may receive it (else 1000). */
static void ws_finish(struct sjs *s, struct sjs_recv *r)
{
	unsigned code = s->code >= 3000 && s->code <= 4999 ? s->code : 1000;

	if (s->flags & SJS_CLOSE_SENT)
		return;
	s->flags |= SJS_CLOSE_SENT;
	if (!(s->flags & SJS_RAW))
		emit_close(r, s->code, s->reason);
	ws_close(r->ws, (uint16_t)code, s->flags & SJS_RAW ? s->reason : NULL);
}

static void flush_one(struct sjs *s)
{
	struct sjs_recv *r = s->recv;

	if (!r)
		goto done;
	if (s->out) {
		int rc = (s->flags & SJS_RAW) ? emit_raw(s, r) : emit_messages(s, r);

		rlist_free(&s->out);
		s->out_bytes = 0;
		if (rc != RT_OK || s->recv != r)
			goto done; /* the receiver is being dealt with (slow, closing) */
		if (!streaming(r)) {
			detach(s);
			goto done; /* a poll carries one frame; the close waits for the next */
		}
	}
	if (s->flags & SJS_CLOSED) {
		if (s->flags & SJS_WS) {
			ws_finish(s, r);
		} else {
			emit_close(r, s->code, s->reason);
			if (s->recv == r)
				detach(s);
		}
	} else if (!(s->flags & SJS_WS) && r->sent >= s->svc->response_limit) {
		detach(s); /* the client opens the next one at once */
	}
done:
	if (s->flags & SJS_GONE_DUE)
		app_gone(s);
}

void sjs_flush(struct worker *w)
{
	struct sjs *s;

	while ((s = S.dirty) != NULL) {
		S.dirty = s->dirty_next;
		s->dirty_next = NULL;
		s->flags &= ~SJS_DIRTY;
		if (s->flags & SJS_DEAD)
			session_free(s);
		else
			flush_one(s);
	}
	fcache_clear(&S.cache);
}

void sjs_drain(void)
{
	for (struct sjs *s = S.all; s; s = s->next)
		if (s->app && !(s->flags & SJS_CLOSED))
			s->svc->app->drain(s->app);
}

/* ---- set-up ------------------------------------------------------------------ */

static struct rbuf *wrapped(enum sjf_transport t, const char *piece, bool head, bool tail)
{
	S.tmp.len = 0;
	if (head)
		sjf_wrap_head(&S.tmp, t, NULL, 0);
	sjf_wrap_piece(&S.tmp, t, piece, strlen(piece));
	if (tail)
		sjf_wrap_tail(&S.tmp, t);
	return rbuf_copy(S.tmp.buf, S.tmp.len);
}

void sjs_init(struct worker *w)
{
	S.w = w;
	if (S.fixed[SJF_T_XHR][F_TAIL])
		return;
	fcache_init(&S.cache, CACHE_BITS);
	for (int t = 0; t < SJF_T_COUNT; t++) {
		if (!(sjf_transport_flags((enum sjf_transport)t) & SJF_TF_RECEIVE))
			continue;
		if (t != SJF_T_JSONP)
			S.fixed[t][F_HEAD] = wrapped((enum sjf_transport)t, A_HEAD, true, false);
		S.fixed[t][F_JOIN] = wrapped((enum sjf_transport)t, A_JOIN, false, false);
		S.fixed[t][F_LIST] = wrapped((enum sjf_transport)t, A_LIST, false, false);
		S.fixed[t][F_TAIL] = wrapped((enum sjf_transport)t, A_TAIL, false, true);
	}
}

void sjs_set_heartbeat(int64_t ms)
{
	S.heartbeat_ms = ms > 0 ? ms : 0;
}
