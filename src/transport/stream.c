/*
 * stream.c - the HTTP stream writer (stream.h).
 *
 * Output follows ws.c: hs_send appends (rbuf, off, len) to the stream's
 * pending list (allocated only while non-empty) and puts the stream on a
 * file-static dirty list; the flush (transport_stream.flush, at the worker's
 * flush point before conn_flush) hands each pending list to the transport's
 * frame function, which appends the batch's segments to one scratch list;
 * the batch then goes onto the conn as a chunk: a size line (an rbuf shared
 * across streams while the bytes match, which they do for a broadcast), the
 * segments by reference, and a shared "\r\n". A message framed by one of
 * the shared framings (hs_frame_lines, _raw, _sse) is wrapped instead: its
 * framed bytes - with the size line and CRLF when it is the batch's only
 * message - are copied once per flush (fcache.h) into an rbuf that every stream
 * carrying it queues as one segment, so a broadcast costs each connection
 * one iovec, as little as a WebSocket frame. hs_send_chunk's segments
 * skip the frame function and end with a boundary (rlist_mark): the batch
 * then holds cuts, and each stretch between cuts is a chunk of its own.
 *
 * Life cycle: OPEN -> ENDING (hs_end: the rest is framed, the last chunk
 * queued, the conn shut down or handed back to HTTP) -> GONE (the conn
 * closed or left us: on_close due). on_close runs from the flush point if
 * the conn closed inside an hs_* call or a transport callback (S.nest > 0),
 * else at once; the struct is freed after it.
 *
 * Invariants: HS_DIRTY <=> on the dirty list; pend != NULL => HS_DIRTY;
 * c == NULL <=> HS_GONE.
 */
#include "config.h"
#include "stream.h"
#include "conn.h"
#include "fcache.h"
#include "http.h"
#include "log.h"
#include "transport.h"
#include "util.h"
#include "worker.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	HS_CHUNKED = 0x01,   /* HTTP/1.1: chunked body */
	HS_DIRTY = 0x02,     /* on the dirty list */
	HS_ENDING = 0x04,    /* hs_end: nothing more accepted */
	HS_KEEP = 0x08,      /* ... and the conn goes back to HTTP */
	HS_GONE = 0x10,      /* the conn closed or left; on_close due */
	HS_ENDED = 0x20,     /* the last chunk is queued */
	HS_SLOW = 0x40,      /* on_slow ran: the queue limit no longer applies */
};

struct hs {
	struct conn *c;             /* NULL once gone */
	const struct hs_ops *ops;
	void *ud;
	struct hs *dirty_next;
	struct rlist *pend;         /* messages not yet framed */
	size_t pend_bytes;
	size_t queue_max;           /* 0: none */
	uint64_t body;              /* bytes framed so far */
	uint32_t flags;
};

/* One batch being framed: segments into a scratch list reused by every
 * stream of the worker. */
struct hs_batch {
	struct hs_seg {
		struct rbuf *b;     /* referenced; NULL: copy[] bytes [off, off+len) */
		size_t off, len;
	} *v;
	size_t n, cap, bytes;
	struct jw copy;             /* the copied bytes of the batch */
};

static struct {
	struct hs *dirty;
	int nest;                   /* > 0 inside hs code or a transport callback */
	struct rbuf *crlf;          /* "\r\n", shared */
	struct rbuf *nl;            /* "\n" */
	struct rbuf *data;          /* "data: " */
	struct rbuf *nlnl;          /* "\n\n" */
	struct rbuf *hdr;           /* the last chunk size line, shared while it matches */
	struct hs_batch batch;
	struct hs_batch one;        /* scratch for wrapping one message */
	struct fcache wrapped;      /* messages wrapped in this flush (entry aux: framed bytes) */
	const struct fcache_entry **found; /* one batch's wrapped messages (frame_wrapped) */
	size_t found_cap;
} S;

/* Wrapped messages are cached under their framing and whether they are a
 * whole chunk: the tag is the function's address doubled, plus one for a
 * chunk. */
#define WRAP_BITS 10

static const struct conn_ops hs_conn_ops;

/* ---- batches ------------------------------------------------------------- */

static struct hs_seg *batch_push(struct hs_batch *o)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? 2 * o->cap : 64;
		o->v = xrealloc(o->v, o->cap * sizeof(*o->v));
	}
	return &o->v[o->n++];
}

/* Ends the chunk being built: what follows goes in another one. */
static void batch_cut(struct hs_batch *o)
{
	*batch_push(o) = (struct hs_seg){ NULL, 0, 0 }; /* len 0: a cut */
}

void hs_batch_ref(struct hs_batch *o, struct rbuf *b, size_t off, size_t len)
{
	if (len == 0)
		return;
	*batch_push(o) = (struct hs_seg){ b, off, len };
	o->bytes += len;
}

void hs_batch_copy(struct hs_batch *o, const void *p, size_t n)
{
	if (n == 0)
		return;
	*batch_push(o) = (struct hs_seg){ NULL, o->copy.len, n };
	jw_raw(&o->copy, p, n);
	o->bytes += n;
}

void hs_frame_lines(struct hs_batch *out, const struct rseg *m, size_t n, void *ud)
{
	for (size_t i = 0; i < n; i++) {
		hs_batch_ref(out, m[i].b, m[i].off, m[i].len);
		hs_batch_ref(out, S.nl, 0, 1);
	}
}

void hs_frame_raw(struct hs_batch *out, const struct rseg *m, size_t n, void *ud)
{
	for (size_t i = 0; i < n; i++)
		hs_batch_ref(out, m[i].b, m[i].off, m[i].len);
}

void hs_frame_sse(struct hs_batch *out, const struct rseg *m, size_t n, void *ud)
{
	for (size_t i = 0; i < n; i++) {
		hs_batch_ref(out, S.data, 0, 6);
		hs_batch_ref(out, m[i].b, m[i].off, m[i].len);
		hs_batch_ref(out, S.nlnl, 0, 2);
	}
}

/* Queues the chunk size line for N bytes on C, sharing the last one made. */
static void queue_chunk_size(struct conn *c, size_t n)
{
	char line[24];
	int k = snprintf(line, sizeof(line), "%zx\r\n", n);

	if (!S.hdr || S.hdr->len != (size_t)k || memcmp(S.hdr->data, line, (size_t)k) != 0) {
		rbuf_unref(S.hdr);
		S.hdr = rbuf_copy(line, (size_t)k);
	}
	conn_queue(c, S.hdr, 0, (size_t)k);
}

static bool shared_framing(hs_frame_fn *fn)
{
	return fn == hs_frame_lines || fn == hs_frame_raw || fn == hs_frame_sse;
}

/* Message M framed by FN (a shared framing, which never looks at its ud),
 * as a whole chunk if CHUNK, from the cache if it is shared; its OUT holds
 * the bytes, AUX how many of them the framing's. NULL: not cached (the
 * message is this stream's alone, or there is no room). */
static const struct fcache_entry *wrap(hs_frame_fn *fn, const struct rseg *m, bool chunk)
{
	struct fcache_entry *e;
	struct hs_batch *o = &S.one;
	char line[24];
	int k = 0;
	size_t at;

	if (m->b->refs < 2 || !(e = fcache_get(&S.wrapped, m, (uintptr_t)fn * 2 + chunk)))
		return NULL;
	if (e->out)
		return e;
	fn(o, m, 1, NULL);
	if (chunk)
		k = snprintf(line, sizeof(line), "%zx\r\n", o->bytes);
	e->out = rbuf_new((size_t)k + o->bytes + (chunk ? 2 : 0));
	e->aux = o->bytes;
	memcpy(e->out->data, line, (size_t)k);
	at = (size_t)k;
	for (size_t i = 0; i < o->n; i++) {
		const struct hs_seg *g = &o->v[i];

		memcpy(e->out->data + at, (g->b ? g->b->data : o->copy.buf) + g->off, g->len);
		at += g->len;
	}
	if (chunk)
		memcpy(e->out->data + at, "\r\n", 2);
	o->n = o->bytes = 0;
	o->copy.len = 0;
	return e;
}

/* Frames messages M[0..N) of S by its shared framing when every one is
 * wrapped: a lone one as a whole chunk in one segment, more as one chunk
 * of a segment each. False, nothing queued: frame them the usual way. */
static bool frame_wrapped(struct hs *s, const struct rseg *m, size_t n)
{
	bool chunked = s->flags & HS_CHUNKED;
	bool whole = chunked && n == 1;
	size_t bytes = 0;

	if (n > S.found_cap) {
		S.found_cap = n;
		S.found = xrealloc(S.found, n * sizeof(*S.found));
	}
	for (size_t i = 0; i < n; i++) {
		if (!(S.found[i] = wrap(s->ops->frame, &m[i], whole)))
			return false;
		bytes += S.found[i]->aux;
	}
	if (chunked && !whole)
		queue_chunk_size(s->c, bytes);
	for (size_t i = 0; i < n; i++)
		conn_queue(s->c, S.found[i]->out, 0, S.found[i]->out->len);
	if (chunked && !whole)
		conn_queue(s->c, S.crlf, 0, 2);
	s->body += bytes;
	return true;
}

/* Moves batch O onto S's conn (one chunk per stretch between cuts) and
 * empties O. */
static void batch_queue(struct hs *s, struct hs_batch *o)
{
	struct conn *c = s->c;
	struct rbuf *copy = NULL;

	if (o->copy.len)
		copy = rbuf_copy(o->copy.buf, o->copy.len);
	for (size_t i = 0, j; i < o->n; i = j + 1) {
		size_t bytes = 0;

		for (j = i; j < o->n && o->v[j].len; j++)
			bytes += o->v[j].len;
		if (bytes == 0)
			continue;
		if (s->flags & HS_CHUNKED)
			queue_chunk_size(c, bytes);
		for (size_t k = i; k < j; k++)
			conn_queue(c, o->v[k].b ? o->v[k].b : copy, o->v[k].off, o->v[k].len);
		if (s->flags & HS_CHUNKED)
			conn_queue(c, S.crlf, 0, 2);
	}
	s->body += o->bytes;
	rbuf_unref(copy);
	o->n = o->bytes = 0;
	o->copy.len = 0;
}

/* ---- output --------------------------------------------------------------- */

static void pend_free(struct hs *s)
{
	rlist_free(&s->pend);
	s->pend_bytes = 0;
}

static void mark_dirty(struct hs *s)
{
	if (s->flags & HS_DIRTY)
		return;
	s->flags |= HS_DIRTY;
	s->dirty_next = S.dirty;
	S.dirty = s;
}

/* Frames S's pending messages onto its conn: hs_send's through the frame
 * function, hs_send_chunk's (each ending at a boundary) as they are. */
static void frame_pending(struct hs *s)
{
	const struct rseg *v;
	size_t i = 0, j, n;

	if (!s->pend)
		return;
	if (!s->c || conn_closing(s->c)) {
		pend_free(s);
		return;
	}
	v = s->pend->v;
	n = s->pend->n;
	if (shared_framing(s->ops->frame)) {
		for (j = 0; j < n && v[j].b; j++)
			;
		if (j == n && frame_wrapped(s, v, n)) { /* hs_send's messages only */
			pend_free(s);
			return;
		}
	}
	S.nest++;
	while (i < n) {
		for (j = i; j < n && v[j].b; j++)
			;
		if (j == n) {
			s->ops->frame(&S.batch, v + i, j - i, s->ud);
		} else {
			for (size_t k = i; k < j; k++)
				hs_batch_ref(&S.batch, v[k].b, v[k].off, v[k].len);
			batch_cut(&S.batch);
		}
		i = j + 1;
	}
	S.nest--;
	batch_queue(s, &S.batch);
	pend_free(s);
}

/* After hs_end: the last chunk, then the conn closes or goes back to HTTP. */
static void finish(struct hs *s)
{
	struct conn *c = s->c;

	if ((s->flags & HS_ENDED) || !c)
		return;
	s->flags |= HS_ENDED;
	if (conn_closing(c))
		return;
	if (s->flags & HS_CHUNKED)
		conn_queue_copy(c, "0\r\n\r\n", 5);
	if ((s->flags & HS_KEEP) && (s->flags & HS_CHUNKED) && !c->w->draining) {
		s->c = NULL;
		s->flags |= HS_GONE;
		mark_dirty(s);
		http_adopt(c);
		return;
	}
	conn_shutdown(c);
}

/* Whether LEN more bytes fit under S's limit; if not, S is slow: what is
 * pending is dropped, the transport told, and the stream ends after what
 * the transport queues then (its last message: the limit no longer
 * applies). */
static bool room_for(struct hs *s, size_t len)
{
	if (!s->queue_max || (s->flags & HS_SLOW) || s->pend_bytes + s->c->out_bytes + len <= s->queue_max)
		return true;
	log_debug("stream fd %d: %zu bytes queued, over the limit %zu; slow", s->c->fd,
		  s->pend_bytes + s->c->out_bytes, s->queue_max);
	pend_free(s);
	s->flags |= HS_SLOW; /* so that the transport's last message fits */
	S.nest++;
	if (s->ops->on_slow)
		s->ops->on_slow(s, s->ud);
	else
		conn_close(s->c);
	hs_end(s, false); /* whatever the transport did */
	S.nest--;
	return false;
}

/* Whether LEN more bytes may be queued on S: RT_OK, else RT_CLOSED (S is
 * ending, or slow: the transport was told). */
static int queue_check(struct hs *s, size_t len)
{
	if (hs_closing(s))
		return RT_CLOSED;
	return len == 0 || room_for(s, len) ? RT_OK : RT_CLOSED;
}

static void queued(struct hs *s, size_t len)
{
	s->pend_bytes += len;
	mark_dirty(s);
}

int hs_send_chunk(struct hs *s, const struct rseg *v, size_t n)
{
	size_t len = rseg_len(v, n);
	int rc;

	if ((rc = queue_check(s, len)) != RT_OK || len == 0)
		return rc;
	queued(s, rlist_push_parts(&s->pend, v, n));
	return RT_OK;
}

int hs_send(struct hs *s, struct rbuf *b, size_t off, size_t len)
{
	int rc;

	assert(off <= b->len && len <= b->len - off);
	if ((rc = queue_check(s, len)) != RT_OK || len == 0)
		return rc;
	rlist_push(&s->pend, b, off, len);
	queued(s, len);
	return RT_OK;
}

void hs_answering(struct hs *s)
{
	if (s->c)
		conn_answering(s->c);
}

int hs_send_copy(struct hs *s, const void *p, size_t n)
{
	struct rbuf *b;
	int rc;

	if (hs_closing(s))
		return RT_CLOSED;
	b = rbuf_copy(p, n);
	rc = hs_send(s, b, 0, n);
	rbuf_unref(b);
	return rc;
}

void *hs_ud(const struct hs *s)
{
	return s->ud;
}

uint64_t hs_body_bytes(const struct hs *s)
{
	return s->body;
}

bool hs_closing(const struct hs *s)
{
	return !s->c || (s->flags & HS_ENDING) || conn_closing(s->c);
}

void hs_end(struct hs *s, bool keep_alive)
{
	if (!s->c || (s->flags & HS_ENDING))
		return;
	s->flags |= HS_ENDING | (keep_alive ? HS_KEEP : 0);
	mark_dirty(s);
}

void hs_close_now(struct hs *s)
{
	if (!s->c)
		return;
	S.nest++;
	conn_close(s->c);
	S.nest--;
}

/* ---- start ---------------------------------------------------------------- */

void hs_headers(const struct http_req *req, struct jw *out)
{
	jw_lit(out, "Cache-Control: private, no-cache, no-store, must-revalidate, max-age=0\r\n"
		    "Pragma: no-cache\r\nExpire: 0\r\nX-Accel-Buffering: no\r\n");
	if (req->version_minor >= 1)
		jw_lit(out, "Connection: keep-alive\r\n");
	transport_cors(req, out);
}

struct hs *hs_start(struct http_req *req, const char *ctype, const char *extra, const void *prelude,
		    size_t len, size_t queue_max, const struct hs_ops *ops, void *ud)
{
	struct hs *s = xcalloc(1, sizeof(*s));
	bool chunked = req->version_minor >= 1;
	struct jw head = { 0 };

	s->ops = ops;
	s->ud = ud;
	s->queue_max = queue_max;
	s->flags = chunked ? HS_CHUNKED : 0;
	jw_lit(&head, "HTTP/1.1 200 OK\r\n");
	if (ctype) {
		jw_lit(&head, "Content-Type: ");
		jw_lit(&head, ctype);
		jw_lit(&head, "\r\n");
	}
	if (extra)
		jw_lit(&head, extra);
	jw_lit(&head, chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Connection: close\r\n\r\n");
	s->c = http_hijack(req, &hs_conn_ops, s);
	conn_set_queue_limit(s->c, 0); /* the stream counts its own */
	conn_set_write_timeout(s->c, STREAM_WRITE_TIMEOUT_MS);
	conn_queue_copy(s->c, head.buf, head.len);
	jw_free(&head);
	if (len) {
		if (chunked) {
			char line[24];
			int k = snprintf(line, sizeof(line), "%zx\r\n", len);
			conn_queue_copy(s->c, line, (size_t)k);
		}
		conn_queue_copy(s->c, prelude, len);
		if (chunked)
			conn_queue(s->c, S.crlf, 0, 2);
	}
	return s;
}

/* ---- the connection's callbacks ------------------------------------------- */

/* A client sends nothing more while its response streams, except a
 * pipelined next request: it is kept unconsumed in the conn, for the HTTP
 * layer when the response ends with keep-alive (a SockJS poll), else
 * dropped with the connection. Reading on is how the client's close is
 * noticed; one that sends more than conn.c holds is closed. */
static size_t hs_on_read(struct conn *c, const char *data, size_t len)
{
	return 0;
}

static void hs_on_eof(struct conn *c)
{
	log_debug("stream fd %d: the client closed the connection", c->fd);
	S.nest++;
	conn_close(c);
	S.nest--;
}

static void hs_on_write_timeout(struct conn *c)
{
	log_debug("stream fd %d: write blocked for %d ms; closing", c->fd, STREAM_WRITE_TIMEOUT_MS);
	S.nest++;
	conn_close(c);
	S.nest--;
}

static void hs_on_drain(struct conn *c)
{
	struct hs *s = c->ud;

	if (s->flags & HS_ENDING)
		return;
	S.nest++;
	if (s->ops->on_drain)
		s->ops->on_drain(s, s->ud);
	else
		hs_end(s, false);
	S.nest--;
}

static void hs_free(struct hs *s)
{
	if (s->ops->on_close) {
		S.nest++;
		s->ops->on_close(s, s->ud);
		S.nest--;
	}
	pend_free(s);
	free(s);
}

static void hs_on_close(struct conn *c)
{
	struct hs *s = c->ud;

	s->c = NULL;
	pend_free(s);
	s->flags |= HS_GONE;
	if (S.nest > 0 || (s->flags & HS_DIRTY))
		mark_dirty(s);
	else
		hs_free(s);
}

static const struct conn_ops hs_conn_ops = {
	.name = "stream",
	.on_read = hs_on_read,
	.on_eof = hs_on_eof,
	.on_write_timeout = hs_on_write_timeout,
	.on_drain = hs_on_drain,
	.on_close = hs_on_close,
};

/* ---- the flush point -------------------------------------------------------- */

static void stream_flush(struct worker *w)
{
	struct hs *s;

	S.nest++;
	while ((s = S.dirty) != NULL) {
		S.dirty = s->dirty_next;
		s->dirty_next = NULL;
		s->flags &= ~HS_DIRTY;
		if (s->flags & HS_GONE) {
			hs_free(s);
			continue;
		}
		frame_pending(s);
		if (s->flags & HS_ENDING)
			finish(s);
	}
	fcache_clear(&S.wrapped);
	S.nest--;
}

static void stream_init(struct worker *w)
{
	if (S.crlf)
		return;
	fcache_init(&S.wrapped, WRAP_BITS);
	S.crlf = rbuf_copy("\r\n", 2);
	S.nl = rbuf_copy("\n", 1);
	S.data = rbuf_copy("data: ", 6);
	S.nlnl = rbuf_copy("\n\n", 2);
}

const struct transport_kind transport_stream = {
	.name = "stream",
	.init = stream_init,
	.flush = stream_flush,
};
