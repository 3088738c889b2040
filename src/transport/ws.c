/*
 * ws.c - the WebSocket transport: handshake, frame parser, batched output,
 * ping/pong and the close handshake, on top of conn.c.
 *
 * Why not wslay: wslay_event defaults to a 2 GiB message limit and checks
 * close reasons per received chunk (wrongly); its frame API
 * (wslay_frame_context) costs about 4.9 KB per connection (a 4 KiB input
 * buffer inside) and pulls bytes through a recv callback, while conn.c
 * pushes them to us. RFC 6455 framing is small, so it is done here, with
 * every check written out and tested.
 *
 * Input: on_read gets what one read(2) brought (at most CONN_BUF_SIZE: that
 * is the per-callback bound that keeps one flooding client from holding
 * the worker; conn.c reads once per readiness event). A frame header, or a
 * whole control frame (at most 139 bytes), that is not complete yet is left
 * unconsumed in conn's buffer until more arrives, so a connection holds no
 * memory of its own for them. A data frame whose payload is all there and
 * which is a whole message is unmasked into one static scratch buffer and
 * delivered; anything else streams into a per-connection reassembly buffer
 * that grows with the bytes that actually arrived and is freed when the
 * message is delivered. UTF-8 of text messages is checked as bytes arrive
 * (fail fast, across fragments and reads); limits are checked on frame
 * headers, before anything is allocated.
 *
 * Output: ws_send appends (rbuf, off, len) to the connection's pending list
 * (allocated only while non-empty) and puts it on a file-static dirty
 * list. ws_flush_all turns each pending list into frames: a small header
 * rbuf (shared across connections when the bytes match, which they do for
 * a broadcast), then the messages by reference, with a shared "\n" rbuf
 * between JSON messages; conn_flush_all then writes it all with one
 * sendmsg. Control frames (pong, ping, close) are copied into conn's queue
 * directly; they never split a data frame because data frames are only
 * queued whole. ws_send_parts's messages are segments ending with a
 * boundary (rlist_mark), each stretch one text frame of its own.
 *
 * Compression (permessage-deflate, RFC 7692; ws_deflate.c has the model):
 * negotiated at the upgrade when the transport allows it and its
 * compression setting is on. A message with RSV1 is reassembled compressed
 * (its wire size checked against message_size_limit as any other) and
 * inflated whole by the worker's one inflater, its inflated size bounded by
 * message_size_limit too; UTF-8 is checked on what inflated. Out, a frame
 * over compression_min_size is made of each message's deflated chunk, found
 * in a per-flush cache (fcache) keyed by the message's bytes and the
 * deflate parameters, so a publication is compressed once per flush for
 * every connection that carries it, and of the cached chunk of the '\n'
 * between JSON messages; the last chunk's 00 00 ff ff is left out.
 *
 * Settings: each connection points at a struct ws_limits, its transport's
 * (uni_websocket.*) or this file's (websocket.*), which reloads change in
 * place; the queue limit (client.queue_max_size) is the same for all.
 *
 * Life cycle: OPEN -> CLOSING (we sent close; reading on, data discarded,
 * waiting WS_CLOSE_WAIT_MS for the peer's close) -> CLOSED (handshake done
 * or failed, or ws_end: conn_shutdown writes what is queued, then closes).
 * When the conn closes, the session's on_close runs from ws_flush_all if
 * the close happened inside any ws code or session callback (W.nest > 0),
 * else at once; the struct ws is freed after it. So a session callback
 * never runs inside a ws_* call the session made.
 *
 * Invariants: WS_DIRTY <=> on the dirty list; pend != NULL => WS_DIRTY;
 * c == NULL <=> WS_GONE; state OPEN => c != NULL.
 */
#include "config.h"
#include "ws.h"
#include "b64.h"
#include "conf.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "transport.h"
#include "util.h"
#include "worker.h"
#include "fcache.h"
#include "ws_deflate.h"
#include <assert.h>
#include <ctype.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MSG_LIMIT_DEFAULT 65536

enum { OP_CONT = 0x0, OP_TEXT = 0x1, OP_BINARY = 0x2, OP_CLOSE = 0x8, OP_PING = 0x9, OP_PONG = 0xA };

enum ws_state { WS_OPEN, WS_CLOSING, WS_CLOSED };

#define WS_RSV1 0x40  /* frame header: a compressed message (RFC 7692) */
#define MSG_Z 0x80    /* msg_op: the message being assembled is compressed */

enum {
	WS_PB = 0x01,         /* protobuf: binary frames out */
	WS_FRAME_PING = 0x02, /* ?cf_ws_frame_ping_pong=true */
	WS_AWAIT_PONG = 0x04, /* a ping frame is out, no pong yet */
	WS_FIN = 0x08,        /* the frame being streamed ends its message */
	WS_DISCARD = 0x10,    /* the frame being streamed is skipped */
	WS_DIRTY = 0x20,      /* on the dirty list */
	WS_GONE = 0x40,       /* the conn closed; on_close still due */
	WS_PARTS = 0x80,      /* ws_send_parts: pending messages end at boundaries */
};

struct ws {
	struct conn *c;             /* NULL once the conn closed */
	const struct ws_handler *h;
	void *ud;
	struct ws *dirty_next;
	const struct ws_limits *lim; /* the transport's settings (or W.def) */
	struct rlist *pend;         /* messages not yet framed */
	size_t pend_bytes;
	char *msg;                  /* reassembly buffer, only mid-message */
	size_t msg_len, msg_cap;
	uint64_t remain;            /* payload bytes of the current data frame still to come */
	int64_t ping_at;            /* frame ping mode: last ping sent (awaiting) or next ping due */
	uint8_t mask[4];
	uint8_t mask_pos;           /* 0..3: where in the mask the next byte is */
	uint8_t state;              /* enum ws_state */
	uint8_t msg_op;             /* opcode of the message being assembled, 0 if none;
	                             * | MSG_Z when it is compressed */
	uint8_t utf8;               /* UTF-8 checker state of that message */
	uint8_t flags;
	uint8_t zbits;              /* permessage-deflate negotiated: our window
	                             * bits (9..15); 0: not negotiated */
	uint16_t code;              /* close code sent or received */
};

_Static_assert(sizeof(struct ws) <= 112, "struct ws is per connection: keep it small");

/* This process's WebSocket settings (one worker per process). */
static struct {
	struct ws_limits def;    /* websocket.*: connections without limits of their own */
	size_t queue_max;        /* client.queue_max_size; 0 = unbounded */
	struct rbuf *nl;         /* "\n", shared by every JSON frame */
	struct rbuf *hdr;        /* the last frame header made, shared while it matches */
	struct fcache zc;        /* deflated messages, per flush (allocated on first use) */
	struct ws *dirty;        /* connections with messages to frame, or on_close due */
	int nest;                /* > 0 inside ws code or a session callback */
} W;

static char scratch[CONN_BUF_SIZE]; /* unmasked whole messages on the fast path */

static const struct conn_ops ws_ops;

static void ws_fail(struct ws *ws, uint16_t code, const char *why);

/* ---- config ------------------------------------------------------------ */

static long long conf_int(const struct conf *k, const char *key, long long def)
{
	const json_t *v = conf_get(k, key);

	return json_is_integer(v) ? json_integer_value(v) : def;
}

static long long conf_ms(const struct conf *k, const char *key, long long def)
{
	const json_t *v = conf_get(k, key);
	long long ms;

	if (json_is_string(v) && conf_duration_ms(json_string_value(v), &ms) == RT_OK)
		return ms;
	return def;
}

void ws_limits_read(struct ws_limits *l, const struct conf *k, const char *section)
{
	char key[64];
	long long lim;

	snprintf(key, sizeof(key), "%s.message_size_limit", section);
	lim = conf_int(k, key, MSG_LIMIT_DEFAULT);
	/* 0 would mean "no limit" to Go's websocket; here it means the default:
	 * a message is reassembled in memory. */
	l->msg_limit = lim > 0 ? (size_t)lim : MSG_LIMIT_DEFAULT;
	snprintf(key, sizeof(key), "%s.write_timeout", section);
	l->write_timeout = conf_ms(k, key, 1000);
	snprintf(key, sizeof(key), "%s.compression", section);
	l->compression = json_is_true(conf_get(k, key));
	snprintf(key, sizeof(key), "%s.compression_min_size", section);
	l->compression_min_size = (size_t)conf_int(k, key, 0);
	snprintf(key, sizeof(key), "%s.compression_level", section);
	l->compression_level = (int)conf_int(k, key, 1);
}

static void read_settings(const struct conf *k)
{
	ws_limits_read(&W.def, k, "websocket");
	W.def.ping_interval = WS_PING_INTERVAL_MS;
	W.def.pong_timeout = WS_PONG_TIMEOUT_MS;
	W.queue_max = (size_t)conf_int(k, "client.queue_max_size", 1048576);
}

/* ---- UTF-8 -------------------------------------------------------------- */

/* A byte-at-a-time UTF-8 checker (RFC 3629: no overlongs, no surrogates,
 * nothing above U+10FFFF). State 0 is "between characters". */
enum { U8_OK = 0, U8_REJECT = 8 };

static unsigned utf8_step(unsigned s, uint8_t b)
{
	switch (s) {
	case 0:
		if (b < 0x80) return 0;
		if (b >= 0xC2 && b <= 0xDF) return 1;
		if (b == 0xE0) return 4;
		if (b == 0xED) return 5;
		if (b >= 0xE1 && b <= 0xEF) return 2;
		if (b == 0xF0) return 6;
		if (b >= 0xF1 && b <= 0xF3) return 3;
		if (b == 0xF4) return 7;
		return U8_REJECT;
	case 1: return (b & 0xC0) == 0x80 ? 0 : U8_REJECT;
	case 2: return (b & 0xC0) == 0x80 ? 1 : U8_REJECT;
	case 3: return (b & 0xC0) == 0x80 ? 2 : U8_REJECT;
	case 4: return b >= 0xA0 && b <= 0xBF ? 1 : U8_REJECT; /* E0: no overlong */
	case 5: return b >= 0x80 && b <= 0x9F ? 1 : U8_REJECT; /* ED: no surrogate */
	case 6: return b >= 0x90 && b <= 0xBF ? 2 : U8_REJECT; /* F0: no overlong */
	case 7: return b >= 0x80 && b <= 0x8F ? 2 : U8_REJECT; /* F4: <= U+10FFFF */
	default: return U8_REJECT;
	}
}

/* Runs the checker from state S over N bytes; returns the new state
 * (U8_REJECT as soon as a byte is wrong). */
static unsigned utf8_check(unsigned s, const uint8_t *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (s == 0) {
			uint64_t v;

			/* ASCII runs, 8 bytes at a time */
			while (i + 8 <= n) {
				memcpy(&v, p + i, 8);
				if (v & UINT64_C(0x8080808080808080))
					break;
				i += 8;
			}
			if (i == n)
				break;
		}
		s = utf8_step(s, p[i++]);
		if (s == U8_REJECT)
			break;
	}
	return s;
}

/* ---- frames out --------------------------------------------------------- */

/* Writes an unmasked server frame header (FIN set; OP may carry WS_RSV1)
 * into H; returns its size. */
static size_t frame_header(uint8_t *h, unsigned op, uint64_t len)
{
	h[0] = (uint8_t)(0x80 | op);
	if (len < 126) {
		h[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xFFFF) {
		h[1] = 126;
		h[2] = (uint8_t)(len >> 8);
		h[3] = (uint8_t)len;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (uint8_t)(len >> (56 - 8 * i));
	return 10;
}

/* Queues a data frame header on C, reusing the last header rbuf when the
 * bytes are the same (a broadcast: the same message to many connections). */
static void queue_data_header(struct conn *c, unsigned op, uint64_t len)
{
	uint8_t h[10];
	size_t n = frame_header(h, op, len);

	if (!W.hdr || W.hdr->len != n || memcmp(W.hdr->data, h, n) != 0) {
		rbuf_unref(W.hdr);
		W.hdr = rbuf_new(n);
		memcpy(W.hdr->data, h, n);
	}
	conn_queue(c, W.hdr, 0, n);
}

/* Queues a control frame with a copy of its payload (at most 125 bytes). */
static void queue_control(struct conn *c, unsigned op, const void *payload, size_t len)
{
	uint8_t f[2 + 125];

	assert(len <= 125);
	f[0] = (uint8_t)(0x80 | op);
	f[1] = (uint8_t)len;
	if (len)
		memcpy(f + 2, payload, len);
	conn_queue_copy(c, f, 2 + len);
}

/* Valid in a close frame, ours or a peer's: 1000-1003, 1007-1014 (IANA registry;
 * 1004-1006 and 1015 must never be sent), 3000-4999. */
static bool close_code_ok(unsigned code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	       (code >= 3000 && code <= 4999);
}

/* Queues a close frame with CODE and REASON cut to 123 bytes, not inside a
 * UTF-8 sequence; a CODE a peer may not receive gives a close frame without
 * a status. */
static void queue_close(struct conn *c, uint32_t code, const char *reason)
{
	uint8_t p[125];
	size_t n = reason ? strlen(reason) : 0;

	if (!close_code_ok(code)) {
		queue_control(c, OP_CLOSE, NULL, 0);
		return;
	}
	if (n > 123) {
		n = 123;
		while (n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80)
			n--;
	}
	p[0] = (uint8_t)(code >> 8);
	p[1] = (uint8_t)code;
	if (n)
		memcpy(p + 2, reason, n);
	queue_control(c, OP_CLOSE, p, 2 + n);
}

static void pend_free(struct ws *ws)
{
	rlist_free(&ws->pend);
	ws->pend_bytes = 0;
}

/* The deflated chunk of message M for WS's deflate parameters: the
 * cache's, or, when the cache has no room near its place, a new one whose
 * reference goes to *OWN. */
static struct rbuf *deflated(const struct ws *ws, const struct rseg *m, struct rbuf **own)
{
	int level = ws->lim->compression_level;
	struct fcache_entry *e;
	struct rbuf *z;

	if (!W.zc.v)
		fcache_init(&W.zc, 12); /* a worker that never compresses never pays for it */
	e = fcache_get(&W.zc, m, (uintptr_t)(level << 4 | ws->zbits));
	if (e && e->out)
		return e->out;
	z = wsd_deflate(m->b->data + m->off, m->len, level, ws->zbits);
	if (e)
		e->out = z;
	else
		*own = z;
	return z;
}

/* Queues messages V[0..N) as one compressed data frame (OP) on WS's conn,
 * TEXT: '\n' between them. */
static void frame_deflated(struct ws *ws, unsigned op, const struct rseg *v, uint32_t n, bool text)
{
	struct rseg z[2 * WS_FRAME_MAX_MSGS];
	struct rbuf *own[2 * WS_FRAME_MAX_MSGS];
	struct rseg nl = { W.nl, 0, 1 };
	uint32_t k = 0;
	uint64_t payload = 0;

	assert(n <= WS_FRAME_MAX_MSGS);
	for (uint32_t m = 0; m < n; m++) {
		if (text && m > 0) {
			own[k] = NULL;
			z[k].b = deflated(ws, &nl, &own[k]);
			k++;
		}
		own[k] = NULL;
		z[k].b = deflated(ws, &v[m], &own[k]);
		k++;
	}
	for (uint32_t m = 0; m < k; m++) {
		z[m].off = 0;
		z[m].len = z[m].b->len - (m + 1 == k ? 4 : 0); /* the last 00 00 ff ff is implied */
		payload += z[m].len;
	}
	queue_data_header(ws->c, op | WS_RSV1, payload);
	for (uint32_t m = 0; m < k; m++) {
		conn_queue(ws->c, z[m].b, z[m].off, z[m].len);
		rbuf_unref(own[m]);
	}
}

/* Turns WS's pending messages into frames on its conn (each message's
 * reference moves from the pending list to conn's queue). */
static void frame_pending(struct ws *ws)
{
	struct rlist *p = ws->pend;
	struct conn *c = ws->c;
	bool text = !(ws->flags & WS_PB);
	uint32_t i = 0, max_msgs = ws->lim->one_per_frame ? 1 : WS_FRAME_MAX_MSGS;

	if (!p)
		return;
	if (!c || conn_closing(c)) {
		pend_free(ws);
		return;
	}
	conn_set_write_timeout(c, ws->lim->write_timeout); /* follows reloads */
	while ((ws->flags & WS_PARTS) && i < p->n) {
		uint32_t j;
		uint64_t payload = 0;

		for (j = i; j < p->n && p->v[j].b; j++)
			payload += p->v[j].len;
		queue_data_header(c, OP_TEXT, payload);
		for (uint32_t m = i; m < j; m++)
			conn_queue(c, p->v[m].b, p->v[m].off, p->v[m].len);
		i = j + 1;
	}
	while (i < p->n) {
		uint32_t j = i;
		uint64_t payload = 0;

		while (j < p->n && j - i < max_msgs) {
			uint64_t add = p->v[j].len + (text && j > i);

			if (j > i && payload + add > WS_FRAME_MAX_BYTES)
				break;
			payload += add;
			j++;
		}
		if (ws->zbits && ws->lim->compression && payload > ws->lim->compression_min_size) {
			frame_deflated(ws, text ? OP_TEXT : OP_BINARY, &p->v[i], j - i, text);
			i = j;
			continue;
		}
		queue_data_header(c, text ? OP_TEXT : OP_BINARY, payload);
		for (uint32_t m = i; m < j; m++) {
			if (text && m > i)
				conn_queue(c, W.nl, 0, 1);
			conn_queue(c, p->v[m].b, p->v[m].off, p->v[m].len);
		}
		i = j;
	}
	pend_free(ws);
}

static void mark_dirty(struct ws *ws)
{
	if (ws->flags & WS_DIRTY)
		return;
	ws->flags |= WS_DIRTY;
	ws->dirty_next = W.dirty;
	W.dirty = ws;
}

/* ---- closing ----------------------------------------------------------- */

/* Drops the message being assembled; the rest of the current frame, if
 * any, is skipped. */
static void msg_drop(struct ws *ws)
{
	free(ws->msg);
	ws->msg = NULL;
	ws->msg_len = ws->msg_cap = 0;
	ws->msg_op = 0;
	if (ws->remain)
		ws->flags |= WS_DISCARD;
}

/* Ends the connection after a close handshake (or a failure): what is
 * queued is written, then TCP is closed. */
static void ws_finish(struct ws *ws)
{
	ws->state = WS_CLOSED;
	msg_drop(ws);
	if (ws->c)
		conn_shutdown(ws->c);
}

/* Fails the connection (RFC 6455 7.1.7): a close frame with CODE unless one
 * was sent already, then TCP is closed. */
static void ws_fail(struct ws *ws, uint16_t code, const char *why)
{
	if (!ws->c || ws->state == WS_CLOSED)
		return;
	log_debug("ws fd %d: %s; closing with %u", ws->c->fd, why, code);
	if (ws->state == WS_OPEN) {
		frame_pending(ws);
		queue_close(ws->c, code, why);
		ws->code = code;
	}
	ws_finish(ws);
}

void ws_close(struct ws *ws, uint32_t code, const char *reason)
{
	if (!ws->c || ws->state != WS_OPEN)
		return;
	W.nest++;
	frame_pending(ws);
	queue_close(ws->c, code, reason);
	ws->code = close_code_ok(code) ? (uint16_t)code : 1005;
	ws->state = WS_CLOSING;
	ws->flags &= ~WS_AWAIT_PONG;
	msg_drop(ws);
	conn_set_deadline(ws->c, ws->c->w->now_ms + WS_CLOSE_WAIT_MS);
	W.nest--;
}

void ws_end(struct ws *ws)
{
	if (!ws->c || ws->state != WS_OPEN)
		return;
	W.nest++;
	frame_pending(ws);
	ws_finish(ws);
	W.nest--;
}

void ws_close_now(struct ws *ws)
{
	if (!ws->c)
		return;
	W.nest++;
	conn_close(ws->c);
	W.nest--;
}

bool ws_closing(const struct ws *ws)
{
	return !ws->c || ws->state != WS_OPEN || conn_closing(ws->c);
}

uint16_t ws_close_code(const struct ws *ws)
{
	return ws->code;
}

/* ---- sending ------------------------------------------------------------ */

/* Closes WS as slow: what is not framed yet is dropped; the session is
 * told (on_slow) so that it ends now, not when the connection is gone; the
 * close frame follows what conn already holds. */
static void ws_slow(struct ws *ws)
{
	log_debug("ws fd %d: %zu bytes queued, over client.queue_max_size %zu; closing as slow",
		  ws->c->fd, ws->pend_bytes + ws->c->out_bytes, W.queue_max);
	pend_free(ws);
	if (ws->h && ws->h->on_slow)
		ws->h->on_slow(ws, ws->ud);
	ws_close(ws, WS_CLOSE_SLOW, "slow"); /* nothing when on_slow closed it */
}

/* Whether LEN more bytes fit under the queue limit. */
static bool room_for(const struct ws *ws, size_t len)
{
	return !W.queue_max || ws->pend_bytes + ws->c->out_bytes + len <= W.queue_max;
}

int ws_send(struct ws *ws, struct rbuf *b, size_t off, size_t len)
{
	assert(off <= b->len && len <= b->len - off);
	if (ws_closing(ws))
		return RT_CLOSED;
	if (len == 0)
		return RT_OK;
	if (!room_for(ws, len)) {
		W.nest++;
		ws_slow(ws);
		W.nest--;
		return RT_CLOSED;
	}
	rlist_push(&ws->pend, b, off, len);
	ws->pend_bytes += len;
	mark_dirty(ws);
	return RT_OK;
}

int ws_send_parts(struct ws *ws, const struct rseg *v, size_t n)
{
	if (ws_closing(ws))
		return RT_CLOSED;
	if (!room_for(ws, rseg_len(v, n))) {
		W.nest++;
		ws_slow(ws);
		W.nest--;
		return RT_CLOSED;
	}
	ws->pend_bytes += rlist_push_parts(&ws->pend, v, n);
	ws->flags |= WS_PARTS;
	mark_dirty(ws);
	return RT_OK;
}

void ws_answering(struct ws *ws)
{
	if (ws->c)
		conn_answering(ws->c);
}

int ws_send_copy(struct ws *ws, const void *data, size_t len)
{
	struct rbuf *b;
	int rc;

	if (ws_closing(ws))
		return RT_CLOSED;
	b = rbuf_copy(data, len);
	rc = ws_send(ws, b, 0, len);
	rbuf_unref(b);
	return rc;
}

/* The session's on_close, then WS is freed. */
static void ws_free(struct ws *ws)
{
	if (ws->h && ws->h->on_close) {
		W.nest++;
		ws->h->on_close(ws, ws->ud);
		W.nest--;
	}
	pend_free(ws);
	free(ws->msg);
	free(ws);
}

void ws_flush_all(struct worker *w)
{
	struct ws *ws;

	W.nest++;
	/* Connections dirtied by callbacks run from here join the list and are
	 * handled before it is empty. */
	while ((ws = W.dirty) != NULL) {
		W.dirty = ws->dirty_next;
		ws->dirty_next = NULL;
		ws->flags &= ~WS_DIRTY;
		if (ws->flags & WS_GONE) {
			ws_free(ws);
			continue;
		}
		if (!ws->h && ws->state == WS_OPEN) {
			log_error("ws fd %d: no handler attached after the upgrade; closing", ws->c->fd);
			ws_close(ws, WS_CLOSE_INTERNAL, "internal server error");
		}
		frame_pending(ws);
	}
	fcache_clear(&W.zc);
	W.nest--;
}

/* ---- frames in ---------------------------------------------------------- */

/* Unmasks N bytes from SRC into DST, the mask starting at byte PHASE. */
static void unmask(uint8_t *dst, const uint8_t *src, size_t n, const uint8_t mask[4], unsigned phase)
{
	uint8_t m[8];
	uint64_t m64, v;
	size_t i = 0;

	for (int k = 0; k < 8; k++)
		m[k] = mask[(phase + (unsigned)k) & 3];
	memcpy(&m64, m, 8);
	for (; i + 8 <= n; i += 8) {
		memcpy(&v, src + i, 8);
		v ^= m64;
		memcpy(dst + i, &v, 8);
	}
	for (; i < n; i++)
		dst[i] = src[i] ^ m[i & 7];
}

/* Hands one complete message to the session (while it may still have it). */
static void deliver(struct ws *ws, const char *data, size_t len)
{
	if (ws->state != WS_OPEN || !ws->h || !ws->h->on_message)
		return;
	ws->h->on_message(ws, ws->ud, data, len);
}

static void on_close_frame(struct ws *ws, const uint8_t *p, size_t n)
{
	unsigned code = 0;

	if (n == 1) {
		ws_fail(ws, WS_CLOSE_PROTOCOL, "close frame with a 1-byte payload");
		return;
	}
	if (n >= 2) {
		code = (unsigned)p[0] << 8 | p[1];
		if (!close_code_ok(code)) {
			ws_fail(ws, WS_CLOSE_PROTOCOL, "invalid close code");
			return;
		}
		if (utf8_check(0, p + 2, n - 2) != U8_OK) {
			ws_fail(ws, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
			return;
		}
	}
	if (ws->state == WS_OPEN) {
		/* The client closes: echo its code, after what is queued. */
		ws->code = code ? (uint16_t)code : 1005;
		frame_pending(ws);
		queue_close(ws->c, code ? (uint16_t)code : WS_CLOSE_NORMAL, NULL);
	}
	ws_finish(ws);
}

static void on_control(struct ws *ws, unsigned op, const uint8_t *p, size_t n)
{
	struct conn *c = ws->c;

	switch (op) {
	case OP_CLOSE:
		on_close_frame(ws, p, n);
		break;
	case OP_PING:
		if (ws->state != WS_OPEN)
			break; /* our close is out: nothing more may follow it */
		if (!room_for(ws, 2 + n)) {
			ws_slow(ws);
			break;
		}
		queue_control(c, OP_PONG, p, n);
		break;
	case OP_PONG:
		if ((ws->flags & WS_AWAIT_PONG) && ws->state == WS_OPEN) {
			ws->flags &= ~WS_AWAIT_PONG;
			ws->ping_at += ws->lim->ping_interval;
			conn_set_deadline(c, ws->ping_at);
		}
		break;
	}
}

/* Makes room for N more bytes of the message being assembled: the buffer
 * grows with what arrived, not with what a header announced. */
static void msg_reserve(struct ws *ws, size_t n)
{
	size_t need = ws->msg_len + n, cap = ws->msg_cap ? ws->msg_cap : 256;

	if (need <= ws->msg_cap)
		return;
	while (cap < need)
		cap *= 2;
	if (cap > ws->lim->msg_limit && need <= ws->lim->msg_limit)
		cap = ws->lim->msg_limit;
	ws->msg = xrealloc(ws->msg, cap);
	ws->msg_cap = cap;
}

/* Inflates the compressed message Z (N bytes, unmasked) of opcode OP and
 * delivers it, or fails the connection: 1009 when it inflates past the
 * message size limit, 1007 when it does not inflate (RFC 7692 names no
 * code; 1007 is RFC 6455's for payload inconsistent with the message's
 * type, while 1002 would blame the framing, which was fine) or is text
 * that is not UTF-8. */
static void deliver_deflated(struct ws *ws, unsigned op, const uint8_t *z, size_t n)
{
	const char *m;
	size_t len;

	switch (wsd_inflate(z, n, ws->lim->msg_limit, &m, &len)) {
	case RT_OK:
		break;
	case RT_AGAIN:
		ws_fail(ws, WS_CLOSE_TOO_BIG, "message too big once inflated");
		return;
	default:
		ws_fail(ws, WS_CLOSE_INVALID_DATA, "compressed message does not inflate");
		return;
	}
	if (op == OP_TEXT && utf8_check(0, (const uint8_t *)m, len) != U8_OK) {
		ws_fail(ws, WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
		return;
	}
	deliver(ws, m, len);
}

/* The message being assembled is complete. */
static void msg_done(struct ws *ws)
{
	char *m = ws->msg;
	size_t len = ws->msg_len;
	unsigned op = ws->msg_op;

	if (op == OP_TEXT && ws->utf8 != U8_OK) {
		ws_fail(ws, WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
		return;
	}
	ws->msg = NULL;
	ws->msg_len = ws->msg_cap = 0;
	ws->msg_op = 0;
	if (op & MSG_Z)
		deliver_deflated(ws, op & ~MSG_Z, (const uint8_t *)m, len);
	else
		deliver(ws, m ? m : "", len);
	free(m);
}

/* Takes payload bytes of the data frame being streamed from P (N > 0
 * available). Returns how many it took. */
static size_t frame_payload(struct ws *ws, const uint8_t *p, size_t n)
{
	size_t k = ws->remain < n ? (size_t)ws->remain : n;

	ws->remain -= k;
	if (ws->flags & WS_DISCARD) {
		if (!ws->remain)
			ws->flags &= ~WS_DISCARD;
		return k;
	}
	msg_reserve(ws, k);
	unmask((uint8_t *)ws->msg + ws->msg_len, p, k, ws->mask, ws->mask_pos);
	ws->mask_pos = (uint8_t)((ws->mask_pos + k) & 3);
	if (ws->msg_op == OP_TEXT) {
		ws->utf8 = (uint8_t)utf8_check(ws->utf8, (uint8_t *)ws->msg + ws->msg_len, k);
		if (ws->utf8 == U8_REJECT) {
			ws_fail(ws, WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
			return k;
		}
	}
	ws->msg_len += k;
	if (!ws->remain && (ws->flags & WS_FIN))
		msg_done(ws);
	return k;
}

/* Reads one frame header at P (N bytes available) and handles what can be
 * handled with the bytes there: a control frame whole, a data frame's
 * payload on the fast path. Returns the bytes consumed, 0 when more are
 * needed first. After a failure it returns N (the conn stops reading). */
static size_t frame_start(struct ws *ws, const uint8_t *p, size_t n)
{
	unsigned fin, op, l7, rsv1;
	size_t hlen;
	uint64_t plen;
	const uint8_t *mask;

	if (n < 2)
		return 0;
	fin = p[0] & 0x80;
	op = p[0] & 0x0F;
	l7 = p[1] & 0x7F;
	rsv1 = p[0] & WS_RSV1;
	/* What the first two bytes tell is checked at once: garbage fails
	 * without waiting for more. RSV1 means "compressed" where
	 * permessage-deflate was negotiated, and only on a message's first
	 * frame (RFC 7692 6). */
	if ((p[0] & 0x30) || (rsv1 && !ws->zbits))
		return ws_fail(ws, WS_CLOSE_PROTOCOL, "reserved bits set"), n;
	if (rsv1 && op != OP_TEXT && op != OP_BINARY)
		return ws_fail(ws, WS_CLOSE_PROTOCOL, "RSV1 on a control or continuation frame"), n;
	if (op != OP_CONT && op != OP_TEXT && op != OP_BINARY && op != OP_CLOSE &&
	    op != OP_PING && op != OP_PONG)
		return ws_fail(ws, WS_CLOSE_PROTOCOL, "unknown opcode"), n;
	if ((op & 0x8) && !fin)
		return ws_fail(ws, WS_CLOSE_PROTOCOL, "fragmented control frame"), n;
	if ((op & 0x8) && l7 > 125)
		return ws_fail(ws, WS_CLOSE_PROTOCOL, "control frame over 125 bytes"), n;
	if (!(p[1] & 0x80))
		return ws_fail(ws, WS_CLOSE_PROTOCOL, "unmasked client frame"), n;
	hlen = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + 4;
	if (n < hlen)
		return 0;
	if (l7 == 126) {
		plen = (uint64_t)p[2] << 8 | p[3];
		if (plen < 126)
			return ws_fail(ws, WS_CLOSE_PROTOCOL, "length not minimally encoded"), n;
	} else if (l7 == 127) {
		plen = 0;
		for (int i = 0; i < 8; i++)
			plen = plen << 8 | p[2 + i];
		if (plen >> 63)
			return ws_fail(ws, WS_CLOSE_PROTOCOL, "64-bit length with the top bit set"), n;
		if (plen <= 0xFFFF)
			return ws_fail(ws, WS_CLOSE_PROTOCOL, "length not minimally encoded"), n;
	} else {
		plen = l7;
	}
	mask = p + hlen - 4;

	if (op & 0x8) {
		uint8_t pl[125];

		if (n - hlen < plen)
			return 0; /* wait for the whole control frame (<= 139 bytes) */
		unmask(pl, p + hlen, (size_t)plen, mask, 0);
		on_control(ws, op, pl, (size_t)plen);
		return hlen + (size_t)plen;
	}

	if (ws->state != WS_OPEN) {
		/* Closing: data is skipped, only frame boundaries matter. */
		ws->remain = plen;
		if (plen)
			ws->flags |= WS_DISCARD;
		return hlen;
	}
	if (op == OP_CONT && !ws->msg_op)
		return ws_fail(ws, WS_CLOSE_PROTOCOL, "continuation frame without a message"), n;
	if (op != OP_CONT && ws->msg_op)
		return ws_fail(ws, WS_CLOSE_PROTOCOL, "new message inside a fragmented one"), n;
	/* (msg_len may exceed a limit lowered by a reload meanwhile) */
	if (ws->msg_len > ws->lim->msg_limit || plen > ws->lim->msg_limit - ws->msg_len)
		return ws_fail(ws, WS_CLOSE_TOO_BIG, "message too big"), n;

	if (op != OP_CONT) {
		ws->msg_op = (uint8_t)(op | (rsv1 ? MSG_Z : 0));
		ws->utf8 = U8_OK;
		if (fin && plen <= n - hlen) {
			/* A whole message in hand: unmask it into the scratch
			 * buffer and deliver it, no allocation. */
			size_t len = (size_t)plen;

			assert(len <= sizeof(scratch));
			unmask((uint8_t *)scratch, p + hlen, len, mask, 0);
			ws->msg_op = 0;
			if (rsv1) {
				deliver_deflated(ws, op, (const uint8_t *)scratch, len);
				return hlen + len;
			}
			if (op == OP_TEXT && utf8_check(0, (uint8_t *)scratch, len) != U8_OK)
				return ws_fail(ws, WS_CLOSE_INVALID_DATA, "text message is not UTF-8"), n;
			deliver(ws, scratch, len);
			return hlen + len;
		}
	}
	ws->remain = plen;
	memcpy(ws->mask, mask, 4);
	ws->mask_pos = 0;
	ws->flags = (uint8_t)((ws->flags & ~(WS_FIN | WS_DISCARD)) | (fin ? WS_FIN : 0));
	if (!plen && fin)
		msg_done(ws);
	return hlen;
}

/* Whether input is still wanted. */
static bool ws_reading(const struct ws *ws)
{
	return ws->c && !conn_closing(ws->c) && ws->state != WS_CLOSED;
}

static size_t ws_on_read(struct conn *c, const char *data, size_t len)
{
	struct ws *ws = c->ud;
	const uint8_t *p = (const uint8_t *)data, *end = p + len;

	W.nest++;
	while (p < end && ws_reading(ws)) {
		size_t used;

		if (ws->remain) {
			p += frame_payload(ws, p, (size_t)(end - p));
			continue;
		}
		used = frame_start(ws, p, (size_t)(end - p));
		if (!used)
			break;
		p += used;
	}
	W.nest--;
	return (size_t)(p - (const uint8_t *)data);
}

/* ---- connection callbacks ---------------------------------------------- */

static void ws_on_eof(struct conn *c)
{
	struct ws *ws = c->ud;

	log_debug("ws fd %d: peer closed without a close frame", c->fd);
	W.nest++;
	if (ws->state == WS_OPEN)
		frame_pending(ws); /* it may still read */
	ws_finish(ws);
	W.nest--;
}

/* The one conn deadline: the close wait, or the ping frame schedule. */
static void ws_on_timeout(struct conn *c)
{
	struct ws *ws = c->ud;
	int64_t now = c->w->now_ms;

	W.nest++;
	if (ws->state != WS_OPEN) {
		log_debug("ws fd %d: no close frame from the client in time", c->fd);
		conn_close(c);
	} else if (ws->flags & WS_AWAIT_PONG) {
		ws_close(ws, WS_CLOSE_NO_PONG, "no pong");
	} else if (ws->flags & WS_FRAME_PING) {
		queue_control(c, OP_PING, NULL, 0);
		ws->flags |= WS_AWAIT_PONG;
		ws->ping_at = now;
		conn_set_deadline(c, now + ws->lim->pong_timeout);
	}
	W.nest--;
}

static void ws_on_write_timeout(struct conn *c)
{
	log_debug("ws fd %d: write timeout", c->fd);
	W.nest++;
	conn_close(c);
	W.nest--;
}

static void ws_on_drain(struct conn *c)
{
	struct ws *ws = c->ud;

	if (ws->state != WS_OPEN)
		return;
	W.nest++;
	if (ws->h && ws->h->on_drain)
		ws->h->on_drain(ws, ws->ud);
	else
		ws_close(ws, WS_CLOSE_SHUTDOWN, "shutdown");
	W.nest--;
}

static void ws_on_conn_close(struct conn *c)
{
	struct ws *ws = c->ud;

	ws->c = NULL;
	ws->state = WS_CLOSED;
	if (!ws->code)
		ws->code = 1006;
	pend_free(ws);
	free(ws->msg);
	ws->msg = NULL;
	ws->msg_len = ws->msg_cap = 0;
	ws->remain = 0;
	ws->flags |= WS_GONE;
	if (W.nest > 0 || (ws->flags & WS_DIRTY))
		mark_dirty(ws); /* on_close from ws_flush_all */
	else
		ws_free(ws);
}

static const struct conn_ops ws_ops = {
	.name = "ws",
	.on_read = ws_on_read,
	.on_eof = ws_on_eof,
	.on_timeout = ws_on_timeout,
	.on_write_timeout = ws_on_write_timeout,
	.on_drain = ws_on_drain,
	.on_close = ws_on_conn_close,
};

void ws_set_handler(struct ws *ws, const struct ws_handler *h, void *ud)
{
	ws->h = h;
	ws->ud = ud;
}

/* ---- handshake ---------------------------------------------------------- */

void ws_accept_key(const char *key, char out[29])
{
	unsigned char md[SHA_DIGEST_LENGTH];
	char buf[64];
	size_t n = strlen(key);

	assert(n + sizeof(WS_GUID) <= sizeof(buf));
	memcpy(buf, key, n);
	memcpy(buf + n, WS_GUID, sizeof(WS_GUID) - 1);
	SHA1((const unsigned char *)buf, n + sizeof(WS_GUID) - 1, md);
	b64_encode(out, md, sizeof(md), B64_STD);
}

/* Calls FN(token, len, arg) for each comma-separated token (surrounding
 * whitespace removed, empty ones skipped) of every header named NAME, in
 * order, until FN returns true. Returns whether one did. */
static bool each_token(const struct http_req *req, const char *name,
		       bool (*fn)(const char *t, size_t n, void *arg), void *arg)
{
	for (size_t i = 0; i < req->nheaders; i++) {
		const char *s;

		if (strcasecmp(req->headers[i].name, name) != 0)
			continue;
		for (s = req->headers[i].value; *s;) {
			size_t n = strcspn(s, ",");
			const char *t = s, *e = s + n;

			while (t < e && (*t == ' ' || *t == '\t'))
				t++;
			while (e > t && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			if (e > t && fn(t, (size_t)(e - t), arg))
				return true;
			s += n;
			if (*s == ',')
				s++;
		}
	}
	return false;
}

static bool token_is_ci(const char *t, size_t n, void *arg)
{
	const char *want = arg;

	return strlen(want) == n && strncasecmp(t, want, n) == 0;
}

/* The first subprotocol the client lists that we speak (gorilla's rule:
 * the client's order decides). */
static bool pick_subprotocol(const char *t, size_t n, void *arg)
{
	const char **out = arg;

	if (n == 15 && memcmp(t, "centrifuge-json", 15) == 0)
		*out = "centrifuge-json";
	else if (n == 19 && memcmp(t, "centrifuge-protobuf", 19) == 0)
		*out = "centrifuge-protobuf";
	return *out != NULL;
}

struct ws *ws_upgrade(struct http_req *req, const struct ws_upgrade *u, struct ws_open_info *info)
{
	const char *key = http_req_header(req, "sec-websocket-key");
	const char *version = http_req_header(req, "sec-websocket-version");
	const char *subproto = NULL;
	const struct ws_limits *lim = u->limits ? u->limits : &W.def;
	char accept[29], resp[384], keybuf[24], ext[WSD_RESPONSE_MAX] = "";
	uint8_t zbits = 0;
	size_t keylen, nkeys = 0;
	struct ws *ws;
	struct conn *c;
	int n, status;

	memset(info, 0, sizeof(*info));
	info->fmt = PROTO_JSON;
	info->req = req;
	/* The routes admit GET only (405 from http.c). */
	if (req->version_minor < 1) {
		transport_refuse(req, 400, NULL, "HTTP/1.0");
		return NULL;
	}
	if (!each_token(req, "upgrade", token_is_ci, "websocket")) {
		transport_refuse(req, 400, NULL, "no Upgrade: websocket");
		return NULL;
	}
	if (!each_token(req, "connection", token_is_ci, "upgrade")) {
		transport_refuse(req, 400, NULL, "no Connection: upgrade");
		return NULL;
	}
	if (!version || strcmp(version, "13") != 0) {
		transport_refuse(req, 426, "Sec-WebSocket-Version: 13\r\n", "unsupported version");
		return NULL;
	}
	for (size_t i = 0; i < req->nheaders; i++)
		nkeys += strcasecmp(req->headers[i].name, "sec-websocket-key") == 0;
	if (!key || nkeys != 1 || strlen(key) != 24 ||
	    b64_decode(keybuf, &keylen, key, 24, B64_STD) != RT_OK || keylen != 16) {
		transport_refuse(req, 400, NULL, "bad Sec-WebSocket-Key");
		return NULL;
	}
	if (u->admit && (status = transport_admit(req, true)) != 0) {
		transport_refuse(req, status, NULL, status == 403 ? "origin not allowed" : "connection limit reached");
		return NULL;
	}

	if (u->centrifuge) {
		each_token(req, "sec-websocket-protocol", pick_subprotocol, &subproto);
		if ((subproto && strcmp(subproto, "centrifuge-protobuf") == 0) ||
		    transport_query_is(req->query, "format", "protobuf") ||
		    transport_query_is(req->query, "cf_protocol", "protobuf"))
			info->fmt = PROTO_PB;
		info->frame_ping_pong = transport_query_is(req->query, "cf_ws_frame_ping_pong", "true");
	}
	if (u->frame_ping)
		info->frame_ping_pong = true;
	for (size_t i = 0; u->deflate && lim->compression && !zbits && i < req->nheaders; i++)
		if (strcasecmp(req->headers[i].name, "sec-websocket-extensions") == 0)
			wsd_accept(req->headers[i].value, ext, &zbits);

	ws_accept_key(key, accept);
	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		     "Sec-WebSocket-Accept: %s\r\n%s%s%s%s%s%s\r\n", accept,
		     subproto ? "Sec-WebSocket-Protocol: " : "", subproto ? subproto : "",
		     subproto ? "\r\n" : "", zbits ? "Sec-WebSocket-Extensions: " : "", ext,
		     zbits ? "\r\n" : "");
	assert(n > 0 && (size_t)n < sizeof(resp));

	ws = xcalloc(1, sizeof(*ws));
	ws->lim = lim;
	ws->zbits = zbits;
	ws->state = WS_OPEN;
	ws->flags = (uint8_t)((info->fmt == PROTO_PB ? WS_PB : 0) | (info->frame_ping_pong ? WS_FRAME_PING : 0));
	c = http_hijack(req, &ws_ops, ws);
	ws->c = c;
	conn_set_queue_limit(c, 0);             /* ws counts its own (client.queue_max_size) */
	conn_set_write_timeout(c, ws->lim->write_timeout);
	conn_queue_copy(c, resp, (size_t)n);
	if (info->frame_ping_pong) {
		ws->ping_at = c->w->now_ms + ws->lim->ping_interval;
		conn_set_deadline(c, ws->ping_at);
	}
	log_debug("ws fd %d: open on %s (%s%s%s)", c->fd, req->path, info->fmt == PROTO_PB ? "protobuf" : "json",
		  info->frame_ping_pong ? ", frame ping/pong" : "", zbits ? ", permessage-deflate" : "");
	mark_dirty(ws); /* the flush point checks that a handler was attached */
	return ws;
}

/* ---- set-up ------------------------------------------------------------- */

static void ws_init(struct worker *w)
{
	if (!W.nl) {
		W.nl = rbuf_new(1);
		W.nl->data[0] = '\n';
	}
	read_settings(w->conf);
}

static void ws_reconfigure(struct worker *w)
{
	read_settings(w->conf);
}

const struct transport_kind transport_ws = {
	.name = "ws",
	.init = ws_init,
	.reconfigure = ws_reconfigure,
	.flush = ws_flush_all,
};
