/*
 * conn.c - client connections of one worker: input, batched output, close.
 *
 * Model:
 *  - Input: when the socket is readable, a CONN_BUF_SIZE buffer is taken from
 *    a small per-worker pool, filled by one read(2) and handed to
 *    ops->on_read. Bytes the layer leaves unconsumed are held in that buffer
 *    (c->in); otherwise it goes straight back to the pool, so an idle conn
 *    holds no input memory. One read per readiness event keeps one busy peer
 *    from starving the others (the watcher is level-triggered).
 *  - Output: conn_queue appends (rbuf, off, len) segments to c->out and puts
 *    the conn on w->dirty: at the front when it answers input read since
 *    the last flush, else at the back. conn_flush, run once per loop
 *    iteration before the loop sleeps, writes each dirty conn's segments
 *    with one send, in list order, until its time budget is spent; the rest
 *    keep their places. A send is a sendmsg(MSG_NOSIGNAL) of up to IOV_MAX
 *    iovecs, or for a short queue one of a batch through io_uring (see
 *    "batched sends"). Only if the kernel does not take everything is
 *    EV_WRITE added to the conn's watcher; the write callback then
 *    continues, and the watcher drops EV_WRITE once drained.
 *    When the queue is empty c->out is freed: an idle conn holds no output
 *    memory either.
 *  - Timers: one wheel timer per conn, armed at the earlier of the layer's
 *    deadline and the write deadline (set when output first blocks).
 *  - Close: conn_close releases everything at once but leaves the struct on
 *    w->dirty with CONN_CLOSED set; conn_flush frees it. Code that still
 *    holds the pointer inside the current callback can test the flag, and no
 *    watcher or timer can reach a closed conn (both are stopped).
 *
 *  - TLS: a conn started with conn_start_tls sends records instead of its
 *    queue (see "TLS" below); the layer above sees plaintext either way.
 *
 * Invariants: CONN_DIRTY <=> the conn is on w->dirty; CONN_WANT_WRITE =>
 * tx_pending; c->out == NULL <=> out_bytes == 0; a closed conn has no
 * buffers, no fd, no TLS state, no active watcher, no pending timer.
 */
#include "config.h"
#include "conn.h"
#include "worker.h"
#include "tls13.h"
#include "log.h"
#include "util.h"
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
	CONN_CLOSED = 0x01,      /* conn_close ran; freed by conn_flush */
	CONN_DIRTY = 0x02,       /* on w->dirty */
	CONN_PAUSED = 0x04,      /* conn_read_pause: no input delivered */
	CONN_WANT_WRITE = 0x08,  /* output blocked: EV_WRITE armed */
	CONN_SHUTDOWN = 0x10,    /* conn_shutdown: close once written */
	CONN_LINGER = 0x20,      /* written, write side shut, draining input */
	CONN_OVER_LIMIT = 0x40,  /* on_over_limit told; reset when drained */
	CONN_EOF = 0x80,         /* the peer closed its side */
	CONN_IN_READ = 0x100,    /* inside on_read: c->in must stay put */
	CONN_FRONT = 0x200,      /* put at the front of w->dirty */
};

#define FLUSH_CHECK 32 /* conn_flush reads the clock every this many conns */
#define RBUF_PRIVATE 0x1 /* a conn_queue_copy buffer: may grow in place */
#define COPY_BUF_MIN 2048

struct conn_seg {
	struct rbuf *b;
	size_t off, len;
};

/* Segments seg[head..n) are queued; seg[head] may be partly written. */
struct conn_out {
	size_t head, n, cap;
	struct conn_seg seg[];
};

/* ---- rbuf -------------------------------------------------------------- */

static struct rbuf *rbuf_alloc(size_t cap)
{
	struct rbuf *b = xmalloc(sizeof(*b) + cap);

	b->refs = 1;
	b->flags = 0;
	b->len = 0;
	b->cap = cap;
	return b;
}

struct rbuf *rbuf_new(size_t len)
{
	struct rbuf *b = rbuf_alloc(len);

	b->len = len;
	return b;
}

struct rbuf *rbuf_copy(const void *p, size_t n)
{
	struct rbuf *b = rbuf_new(n);

	if (n) /* an empty jw's buf is NULL */
		memcpy(b->data, p, n);
	return b;
}

struct rbuf *rbuf_ref(struct rbuf *b)
{
	assert(b->refs > 0 && b->refs < UINT32_MAX);
	b->refs++;
	return b;
}

void rbuf_unref(struct rbuf *b)
{
	if (!b)
		return;
	assert(b->refs > 0);
	if (--b->refs == 0)
		free(b);
}

/* Room for one more entry at the end of *L. */
static struct rseg *rlist_slot(struct rlist **l)
{
	struct rlist *p = *l;

	if (!p || p->n == p->cap) {
		uint32_t cap = p ? 2 * p->cap : 4;

		p = xrealloc(p, sizeof(*p) + cap * sizeof(p->v[0]));
		if (!*l)
			p->n = 0;
		p->cap = cap;
		*l = p;
	}
	return &p->v[p->n++];
}

void rlist_push(struct rlist **l, struct rbuf *b, size_t off, size_t len)
{
	*rlist_slot(l) = (struct rseg){ rbuf_ref(b), off, len };
}

void rlist_mark(struct rlist **l)
{
	*rlist_slot(l) = (struct rseg){ NULL, 0, 0 };
}

size_t rseg_len(const struct rseg *v, size_t n)
{
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		len += v[i].len;
	return len;
}

size_t rlist_push_parts(struct rlist **l, const struct rseg *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].len)
			rlist_push(l, v[i].b, v[i].off, v[i].len);
	rlist_mark(l);
	return rseg_len(v, n);
}

void rlist_free(struct rlist **l)
{
	struct rlist *p = *l;

	if (!p)
		return;
	for (uint32_t i = 0; i < p->n; i++)
		rbuf_unref(p->v[i].b);
	free(p);
	*l = NULL;
}

/* ---- input buffer pool ------------------------------------------------- */

/* A worker is a process, so the pool is this process's. Free buffers are
 * chained through their first bytes; a few are kept for the next reads, the
 * rest go back to malloc. */
#define POOL_KEEP 64

static struct {
	void *free;
	size_t nfree;
} pool;

static char *pool_get(void)
{
	void *p = pool.free;

	if (!p)
		return xmalloc(CONN_BUF_SIZE);
	memcpy(&pool.free, p, sizeof(void *));
	pool.nfree--;
	return p;
}

static void pool_put(char *p)
{
	if (pool.nfree >= POOL_KEEP) {
		free(p);
		return;
	}
	memcpy(p, &pool.free, sizeof(void *));
	pool.free = p;
	pool.nfree++;
}

/* Gives the input buffer back, unless on_read is still looking at it (then
 * deliver gives it back when on_read returns). */
static void in_release(struct conn *c)
{
	if (c->flags & CONN_IN_READ)
		return;
	if (c->in) {
		pool_put(c->in);
		c->in = NULL;
	}
	c->in_len = 0;
}

/* ---- watcher and timer ----------------------------------------------- */

/* Sets the watcher's events from the flags: EV_READ unless paused or
 * waiting to close, EV_WRITE while output is blocked. */
static void io_update(struct conn *c)
{
	int ev = 0;

	if (c->flags & CONN_CLOSED)
		return;
	if (!(c->flags & CONN_PAUSED) && (!(c->flags & CONN_SHUTDOWN) || (c->flags & CONN_LINGER)))
		ev |= EV_READ;
	if (c->flags & CONN_WANT_WRITE)
		ev |= EV_WRITE;
	if (ev == (c->io.events & (EV_READ | EV_WRITE)) && ev_is_active(&c->io))
		return;
	ev_io_stop(c->w->loop, &c->io);
	ev_io_set(&c->io, c->fd, ev);
	if (ev)
		ev_io_start(c->w->loop, &c->io);
}

static void timer_arm(struct conn *c)
{
	int64_t when = c->deadline < c->wdeadline ? c->deadline : c->wdeadline;

	if (when == CONN_NEVER)
		wheel_cancel(&c->w->wheel, &c->timer);
	else if (!wheel_pending(&c->timer) || c->timer.when != when)
		wheel_add(&c->w->wheel, &c->timer, when);
}

/* Conns answering input of this loop iteration go to the front of the
 * dirty list, everything else (fan-out, pings) to the back. */
static void mark_dirty(struct conn *c)
{
	struct worker *w = c->w;

	if (c->flags & CONN_DIRTY)
		return;
	c->flags |= CONN_DIRTY;
	if (c->read_iter == w->iter || !w->dirty) {
		if (c->read_iter == w->iter)
			c->flags |= CONN_FRONT;
		c->dirty_next = w->dirty;
		w->dirty = c;
		if (!c->dirty_next)
			w->dirty_tail = c;
	} else {
		c->dirty_next = NULL;
		w->dirty_tail->dirty_next = c;
		w->dirty_tail = c;
	}
}

/* ---- output ------------------------------------------------------------ */

/* Drops every segment of *Q and frees it. */
static void q_free(struct conn_out **q)
{
	struct conn_out *o = *q;

	if (!o)
		return;
	for (size_t i = o->head; i < o->n; i++)
		rbuf_unref(o->seg[i].b);
	free(o);
	*q = NULL;
}

/* Room for one more segment at the end of *Q. */
static struct conn_seg *q_push(struct conn_out **q)
{
	struct conn_out *o = *q;

	if (!o) {
		o = xmalloc(sizeof(*o) + 8 * sizeof(o->seg[0]));
		o->head = o->n = 0;
		o->cap = 8;
		*q = o;
	} else if (o->n == o->cap) {
		if (o->head > o->cap / 2) {
			memmove(o->seg, o->seg + o->head, (o->n - o->head) * sizeof(o->seg[0]));
			o->n -= o->head;
			o->head = 0;
		} else {
			o->cap *= 2;
			o = xrealloc(o, sizeof(*o) + o->cap * sizeof(o->seg[0]));
			*q = o;
		}
	}
	return &o->seg[o->n++];
}

/* Drops N bytes from the front of *Q (freed when empty). */
static void q_consume(struct conn_out **q, size_t n)
{
	struct conn_out *o = *q;

	while (n > 0) {
		struct conn_seg *s = &o->seg[o->head];

		if (n < s->len) {
			s->off += n;
			s->len -= n;
			return;
		}
		n -= s->len;
		rbuf_unref(s->b);
		o->head++;
	}
	if (o->head == o->n) {
		free(o);
		*q = NULL;
	}
}

/* Appends LEN bytes to *Q, into the last segment's buffer when it is
 * private to *Q and has room, else into a new buffer of at least MIN_CAP
 * bytes. */
static void q_append(struct conn_out **q, const void *data, size_t len, size_t min_cap)
{
	struct conn_seg *s = NULL;
	struct rbuf *b;

	if (*q && (*q)->n > (*q)->head) {
		s = &(*q)->seg[(*q)->n - 1];
		b = s->b;
		if (!(b->flags & RBUF_PRIVATE) || b->refs != 1 ||
		    s->off + s->len != b->len || b->cap - b->len < len)
			s = NULL;
	}
	if (!s) {
		b = rbuf_alloc(len > min_cap ? len : min_cap);
		b->flags |= RBUF_PRIVATE;
		s = q_push(q);
		s->b = b;
		s->off = 0;
		s->len = 0;
	}
	b = s->b;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	s->len += len;
}

static void out_free(struct conn *c)
{
	q_free(&c->out);
	c->out_bytes = 0;
}

/* Whether LEN more bytes may be queued; tells the layer once if not. */
static int queue_check(struct conn *c, size_t len)
{
	if (c->flags & (CONN_CLOSED | CONN_SHUTDOWN))
		return RT_CLOSED;
	if (c->out_limit && c->out_bytes + len > c->out_limit) {
		if (!(c->flags & CONN_OVER_LIMIT)) {
			c->flags |= CONN_OVER_LIMIT;
			log_debug("conn fd %d (%s): output queue over %zu bytes", c->fd,
				  c->ops->name, c->out_limit);
			if (c->ops->on_over_limit)
				c->ops->on_over_limit(c);
			else
				conn_close(c);
		}
		return RT_AGAIN;
	}
	return RT_OK;
}

/* Queued output goes out at the flush point, or by the write watcher when
 * the socket is blocked. */
static void queued(struct conn *c, size_t len)
{
	c->out_bytes += len;
	if (!(c->flags & CONN_WANT_WRITE))
		mark_dirty(c);
}

void conn_answering(struct conn *c)
{
	c->read_iter = c->w->iter;
}

int conn_queue(struct conn *c, struct rbuf *b, size_t off, size_t len)
{
	struct conn_seg *s;
	int rc;

	assert(off <= b->len && len <= b->len - off);
	if ((rc = queue_check(c, len)) != RT_OK || len == 0)
		return rc;
	s = q_push(&c->out);
	s->b = rbuf_ref(b);
	s->off = off;
	s->len = len;
	queued(c, len);
	return RT_OK;
}

int conn_queue_copy(struct conn *c, const void *data, size_t len)
{
	int rc;

	if ((rc = queue_check(c, len)) != RT_OK || len == 0)
		return rc;
	/* Appended to our own copy buffer at the tail when it has room, so
	 * that many small writes make few segments. */
	q_append(&c->out, data, len, COPY_BUF_MIN);
	queued(c, len);
	return RT_OK;
}

/* Drops N written bytes from the front of the plaintext queue. */
static void out_consume(struct conn *c, size_t n)
{
	assert(n <= c->out_bytes);
	c->out_bytes -= n;
	q_consume(&c->out, n);
}

/* ---- TLS ------------------------------------------------------------------ */

/* A TLS conn's life: its first record (the ClientHello) is collected here
 * (tls_hello), then OpenSSL makes the handshake, reading the socket
 * (OpenSSL's socket BIO) but never writing to it: its write BIO appends
 * every record - handshake, alerts, sealed output - to CT, in the order
 * OpenSSL makes them, and CT goes to the socket by the same sends
 * (sendmsg, io_uring batches, EV_WRITE) as a plaintext conn's output.
 * After a TLS 1.3 handshake with an AEAD suite the SSL is freed and this
 * file seals and opens the records itself (TLS_OWN, tls13.h: own_seal,
 * own_read); TLS 1.2 stays with OpenSSL, with read-ahead.
 * Sealing takes queued plaintext only when CT is empty, at most SEAL_MAX
 * at a time, copying small messages together into records of up to
 * TLS_RECORD bytes (one send and few records for many messages); what the
 * socket does not take stays plaintext in c->out, where the queue limit
 * sees it. */
#define TLS_RECORD 16384
#define TLS_SLACK 64 /* record header, tag, type, padding: at most */
#define SEAL_MAX (4 * TLS_RECORD)

enum {
	TLS_READY = 0x1,   /* handshake done: plaintext flows */
	TLS_NOTIFY = 0x2,  /* close_notify made */
	TLS_FAILED = 0x4,  /* no more OpenSSL calls (a fatal error) */
	TLS_OWN = 0x8,     /* TLS 1.3 records sealed and opened here (tls13.h) */
};

struct conn_tls {
	SSL_CTX *ctx;         /* until the first record is whole: then SSL */
	char *hello;          /* the first record's bytes so far */
	size_t hello_len;
	SSL *ssl;             /* until TLS_OWN */
	struct tls13 *k13;    /* the TLS 1.3 keys (from the handshake on) */
	uint8_t *raw;         /* TLS_OWN: records read, not yet delivered */
	size_t raw_len;       /* bytes in raw */
	size_t rec_len;       /* the opened record at the front (0: none) */
	size_t pt_off, pt_len; /* its content not yet delivered */
	struct conn_out *ct;  /* records not yet sent */
	size_t reserve;       /* while sealing: room for the records to come */
	uint32_t flags;
};

static BIO_METHOD *bio_method;

/* Appends a record (or records) to CT, in a buffer with room for what the
 * seal under way will add. */
static void ct_append(struct conn *c, const void *data, size_t len)
{
	q_append(&c->tls->ct, data, len, c->tls->reserve > COPY_BUF_MIN ? c->tls->reserve : COPY_BUF_MIN);
}

static int bio_write(BIO *b, const char *data, int len)
{
	if (len > 0)
		ct_append(BIO_get_data(b), data, (size_t)len);
	return len;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void tls_init(void)
{
	if (bio_method)
		return;
	bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "rotor conn");
	if (!bio_method || !BIO_meth_set_write(bio_method, bio_write) ||
	    !BIO_meth_set_ctrl(bio_method, bio_ctrl) || !BIO_meth_set_create(bio_method, bio_create)) {
		log_error("tls: cannot create the BIO method");
		abort();
	}
}

/* Records made outside the flush (handshake, alerts) go out at the next. */
static void tls_kick(struct conn *c)
{
	if (c->tls->ct && !(c->flags & (CONN_WANT_WRITE | CONN_CLOSED)))
		mark_dirty(c);
}

/* OpenSSL's state of a connection costs about 7.6 KB from SSL_new on, and
 * tens of KB while a handshake is under way; so the first record (the
 * ClientHello) is collected here, growing with the bytes that came, and
 * the SSL is made only once it is whole. A client that connects and
 * sends nothing, or stalls halfway through its hello, costs its conn and
 * what it sent, until the header timeout. */
void conn_start_tls(struct conn *c, struct ssl_ctx_st *ctx)
{
	c->tls = xcalloc(1, sizeof(*c->tls));
	SSL_CTX_up_ref(ctx);
	c->tls->ctx = ctx;
}

#define TLS_HEADER 5
#define TLS_HELLO_MAX (TLS_HEADER + TLS_RECORD) /* a handshake record at most */

/* The answer Go's server gives to plain HTTP on a TLS port. */
static const char plain_http_answer[] =
	"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
	"Client sent an HTTP request to an HTTPS server.\n";

/* The first bytes are not a TLS handshake record: plain HTTP (its method
 * in the 5 bytes) gets Go's 400 in plain text, anything else a close. */
static void not_tls(struct conn *c, const char *head)
{
	static const char *const methods[] = { "GET /", "POST ", "HEAD ", "PUT /", "OPTIO", "DELET", "PATCH",
					       "CONNE", "TRACE" };

	c->tls->flags |= TLS_FAILED;
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(methods); i++) {
		if (memcmp(head, methods[i], TLS_HEADER) == 0) {
			log_debug("conn fd %d: plain HTTP on the TLS port", c->fd);
			q_append(&c->tls->ct, plain_http_answer, sizeof(plain_http_answer) - 1, 0);
			tls_kick(c);
			conn_shutdown(c);
			return;
		}
	}
	log_debug("conn fd %d: not a TLS handshake; closing", c->fd);
	conn_close(c);
}

/* Reads what the first record still lacks; true once it is whole (C may
 * be closed or shut down when false). */
static bool tls_hello(struct conn *c)
{
	struct conn_tls *t = c->tls;
	size_t want = TLS_HEADER;
	ssize_t n;

	if (t->hello_len >= TLS_HEADER) {
		const unsigned char *h = (const unsigned char *)t->hello;

		want = TLS_HEADER + ((size_t)h[3] << 8 | h[4]);
	}
	if (!t->hello)
		t->hello = xmalloc(TLS_HEADER);
	else if (t->hello_len == TLS_HEADER)
		t->hello = xrealloc(t->hello, want);
	do
		n = read(c->fd, t->hello + t->hello_len, want - t->hello_len);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
			conn_close(c); /* gone before a whole hello: nothing to say */
		return false;
	}
	t->hello_len += (size_t)n;
	if (t->hello_len == TLS_HEADER) {
		const unsigned char *h = (const unsigned char *)t->hello;
		size_t len = (size_t)h[3] << 8 | h[4];

		if (h[0] != 0x16 || h[1] != 3 || len == 0 || TLS_HEADER + len > TLS_HELLO_MAX)
			not_tls(c, t->hello);
		return false; /* the body next (the next readiness, or now if it is there) */
	}
	return t->hello_len == want;
}

/* The SSL of C, made now and given the whole first record; false (C
 * closed) when OpenSSL cannot. */
static bool tls_make(struct conn *c)
{
	struct conn_tls *t = c->tls;
	SSL *ssl = SSL_new(t->ctx);
	BIO *hello = BIO_new_mem_buf(t->hello, (int)t->hello_len), *wb = BIO_new(bio_method);

	SSL_CTX_free(t->ctx);
	t->ctx = NULL;
	if (!ssl || !hello || !wb) {
		SSL_free(ssl);
		BIO_free(hello);
		BIO_free(wb);
		log_warn("conn fd %d: out of memory for TLS", c->fd);
		conn_close(c);
		return false;
	}
	BIO_set_mem_eof_return(hello, -1); /* empty: "retry", not EOF */
	BIO_set_data(wb, c);
	SSL_set_app_data(ssl, c); /* for conn_tls_keylog */
	SSL_set_bio(ssl, hello, wb);
	SSL_set_accept_state(ssl);
	t->ssl = ssl;
	return true;
}

/* After OpenSSL took the first record from memory: the socket from now on. */
static bool tls_to_socket(struct conn *c)
{
	struct conn_tls *t = c->tls;
	BIO *rb;

	if (!t->hello)
		return true;
	if ((rb = BIO_new_socket(c->fd, BIO_NOCLOSE)) == NULL) {
		log_warn("conn fd %d: out of memory for TLS", c->fd);
		conn_close(c);
		return false;
	}
	SSL_set0_rbio(t->ssl, rb); /* frees the memory BIO */
	free(t->hello);
	t->hello = NULL;
	t->hello_len = 0;
	return true;
}

static void tls_free(struct conn *c)
{
	if (!c->tls)
		return;
	q_free(&c->tls->ct);
	SSL_free(c->tls->ssl);
	SSL_CTX_free(c->tls->ctx);
	free(c->tls->hello);
	tls13_free(c->tls->k13);
	free(c->tls->raw);
	free(c->tls);
	c->tls = NULL;
}

/* Copies up to MAX bytes from the front of C's plaintext queue. */
static size_t gather(const struct conn *c, char *buf, size_t max)
{
	const struct conn_out *o = c->out;
	size_t n = 0;

	for (size_t i = o->head; i < o->n && n < max; i++) {
		size_t k = o->seg[i].len < max - n ? o->seg[i].len : max - n;

		memcpy(buf + n, o->seg[i].b->data + o->seg[i].off, k);
		n += k;
	}
	return n;
}

/* Seals N bytes of content TYPE at P into a TLS 1.3 record at the end of
 * CT, updating the write key when it is due; false if the cipher failed. */
static bool own_seal(struct conn *c, uint8_t type, const void *p, size_t n)
{
	static uint8_t rec[TLS13_PLAIN_MAX + TLS13_OVERHEAD];
	static const uint8_t key_update[] = { 24, 0, 0, 1, 0 }; /* update_not_requested */
	struct conn_tls *t = c->tls;
	size_t len = tls13_seal(t->k13, type, p, n, rec);

	if (len == 0)
		return false;
	ct_append(c, rec, len);
	if (tls13_update_due(t->k13)) {
		if ((len = tls13_seal(t->k13, TLS13_HANDSHAKE, key_update, sizeof(key_update), rec)) == 0)
			return false;
		ct_append(c, rec, len);
		tls13_update(t->k13, true);
	}
	return true;
}

/* Seals up to SEAL_MAX bytes of queued plaintext into CT. */
static void tls_seal(struct conn *c)
{
	static char scratch[TLS_RECORD];
	struct conn_tls *t = c->tls;
	size_t want = c->out_bytes < SEAL_MAX ? c->out_bytes : SEAL_MAX;

	t->reserve = want + (want / TLS_RECORD + 1) * TLS_SLACK;
	while (want > 0) {
		const struct conn_seg *s = &c->out->seg[c->out->head];
		size_t n = want < TLS_RECORD ? want : TLS_RECORD, wrote = n;
		const char *p;

		/* A message as large as the record is sealed where it is. */
		if (s->len >= n)
			p = s->b->data + s->off;
		else
			p = scratch, n = gather(c, scratch, n), wrote = n;
		if ((t->flags & TLS_OWN) ? !own_seal(c, TLS13_DATA, p, n)
					 : SSL_write_ex(t->ssl, p, n, &wrote) != 1 || wrote != n) {
			log_debug("conn fd %d (%s): TLS write failed: %s", c->fd, c->ops->name,
				  ERR_reason_error_string(ERR_get_error()));
			ERR_clear_error();
			t->flags |= TLS_FAILED;
			conn_close(c);
			return;
		}
		out_consume(c, n);
		want -= n;
	}
	t->reserve = 0;
}

/* The queue that goes to the socket next: the plaintext queue, or a TLS
 * conn's records (sealing queued plaintext when none are left). NULL:
 * nothing to send. */
static struct conn_out *tx_queue(struct conn *c)
{
	if (!c->tls)
		return c->out;
	if (!c->tls->ct && c->out && (c->tls->flags & TLS_READY))
		tls_seal(c);
	return c->tls ? c->tls->ct : NULL;
}

/* Whether C has bytes for the socket, sealed or to seal. */
static bool tx_pending(const struct conn *c)
{
	if (!c->tls)
		return c->out != NULL;
	return c->tls->ct || (c->out && (c->tls->flags & TLS_READY));
}

/* N bytes of the queue tx_queue gave went out. */
static void tx_consume(struct conn *c, size_t n)
{
	if (c->tls)
		q_consume(&c->tls->ct, n);
	else
		out_consume(c, n);
}

/* Whether OpenSSL, or C's own record buffer, holds read bytes that no
 * readiness event will report. */
static bool tls_pending(const struct conn *c)
{
	const struct conn_tls *t = c->tls;

	if (!t || (t->flags & (TLS_READY | TLS_FAILED)) != TLS_READY)
		return false;
	if (t->flags & TLS_OWN) {
		long len = t->raw_len ? tls13_record_len(t->raw, t->raw_len) : 0;

		return t->pt_len > 0 || (len > 0 && (size_t)len <= t->raw_len) || len < 0;
	}
	return SSL_has_pending(t->ssl);
}

/* A failed handshake or record: closes C. */
static void tls_fail(struct conn *c, int err)
{
	unsigned long e = ERR_peek_last_error();
	const char *why = e ? ERR_reason_error_string(e) : NULL;

	c->tls->flags |= TLS_FAILED;
	ERR_clear_error();
	log_debug("conn fd %d (%s): TLS %s failed: %s", c->fd, c->ops->name,
		  c->tls->flags & TLS_READY ? "read" : "handshake",
		  why ? why : err == SSL_ERROR_SYSCALL ? strerror(errno) : "error");
	/* An alert OpenSSL made goes out before the close, if it can. */
	if (c->tls->ct) {
		tls_kick(c);
		conn_shutdown(c);
	} else
		conn_close(c);
}

/* A handshake message of the client after the handshake: KeyUpdate
 * (answered with ours when it asks) or the end (anything else). */
static bool own_handshake(struct conn *c, const uint8_t *p, size_t n)
{
	static const uint8_t key_update[] = { 24, 0, 0, 1, 0 };
	struct conn_tls *t = c->tls;

	while (n >= 4) {
		size_t len = (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];

		if (p[0] != 24 || len != 1 || n < 5 || p[4] > 1)
			return false;
		tls13_update(t->k13, false);
		if (p[4] == 1) { /* update_requested: ours, then our new key */
			if (!own_seal(c, TLS13_HANDSHAKE, key_update, sizeof(key_update)))
				return false;
			tls13_update(t->k13, true);
			tls_kick(c);
		}
		p += 5;
		n -= 5;
	}
	return n == 0;
}

/* Drops the record at the front of RAW (delivered or handled). */
static void own_drop(struct conn_tls *t)
{
	t->raw_len -= t->rec_len;
	memmove(t->raw, t->raw + t->rec_len, t->raw_len);
	t->rec_len = t->pt_len = 0;
	if (t->raw_len == 0) {
		free(t->raw);
		t->raw = NULL;
	}
}

/* tls_read after TLS_OWN: delivers the content of the records read, one
 * read(2) per call (each record opened in place in RAW, which holds at
 * most one record and the start of the next, and only while it does). */
static ssize_t own_read(struct conn *c, char *buf, size_t n)
{
	struct conn_tls *t = c->tls;
	bool have_read = false;

	for (;;) {
		if (t->pt_len) {
			size_t k = t->pt_len < n ? t->pt_len : n;

			memcpy(buf, t->raw + t->pt_off, k);
			t->pt_off += k;
			t->pt_len -= k;
			if (t->pt_len == 0)
				own_drop(t);
			return (ssize_t)k;
		}
		long len = t->raw_len ? tls13_record_len(t->raw, t->raw_len) : 0;
		if (len < 0)
			goto bad;
		if (len > 0 && (size_t)len <= t->raw_len) {
			uint8_t *content, type;
			size_t clen;

			if (!tls13_open(t->k13, t->raw, (size_t)len, &content, &clen, &type))
				goto bad;
			t->rec_len = (size_t)len;
			if (type == TLS13_DATA) {
				t->pt_off = (size_t)(content - t->raw);
				t->pt_len = clen;
				if (clen == 0)
					own_drop(t);
				continue;
			}
			if (type == TLS13_ALERT && clen == 2 && content[1] == 0)
				return 0; /* close_notify */
			if (type != TLS13_HANDSHAKE || !own_handshake(c, content, clen))
				goto bad;
			own_drop(t);
			continue;
		}
		if (have_read)
			break; /* one read per readiness event */
		if (!t->raw)
			t->raw = xmalloc(TLS13_HEADER + TLS13_CIPHER_MAX);
		ssize_t k = read(c->fd, t->raw + t->raw_len, TLS13_HEADER + TLS13_CIPHER_MAX - t->raw_len);
		if (k <= 0) {
			if (t->raw_len == 0) {
				free(t->raw);
				t->raw = NULL;
			}
			return k; /* EOF (without close_notify, as browsers do), or errno */
		}
		t->raw_len += (size_t)k;
		have_read = true;
	}
	errno = EAGAIN;
	return -1;
bad:
	log_debug("conn fd %d (%s): bad TLS record", c->fd, c->ops->name);
	t->flags |= TLS_FAILED;
	conn_close(c);
	errno = EAGAIN;
	return -1;
}

/* After OpenSSL's handshake: TLS 1.3 with an AEAD suite goes on without
 * OpenSSL's state (tls13.h), anything else with it (and read-ahead). */
static void tls_established(struct conn_tls *t)
{
	if (tls13_start(t->k13, t->ssl) && !SSL_has_pending(t->ssl)) {
		SSL_free(t->ssl);
		t->ssl = NULL;
		t->flags |= TLS_OWN;
		return;
	}
	tls13_free(t->k13);
	t->k13 = NULL;
	SSL_set_read_ahead(t->ssl, 1);
}

void conn_tls_keylog(const struct ssl_st *ssl, const char *line)
{
	struct conn *c = SSL_get_app_data(ssl);

	if (c && c->tls)
		tls13_keylog(&c->tls->k13, line);
}

/* As read(2) for a TLS conn: runs the handshake until it is done, then
 * reads plaintext. -1 with errno EAGAIN when there is nothing yet (or C
 * was closed or shut down here). */
static ssize_t tls_read(struct conn *c, char *buf, size_t n)
{
	struct conn_tls *t = c->tls;
	size_t got = 0;
	int rc, err;

	if (t->flags & TLS_OWN)
		return own_read(c, buf, n);
	if (!t->ssl && (!tls_hello(c) || !tls_make(c))) {
		errno = EAGAIN;
		return -1;
	}
	if (!(t->flags & TLS_READY)) {
		ERR_clear_error();
		rc = SSL_do_handshake(t->ssl);
		tls_kick(c);
		err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, rc);
		if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) {
			tls_fail(c, err);
			errno = EAGAIN;
			return -1;
		}
		if (!tls_to_socket(c) || err != SSL_ERROR_NONE) {
			errno = EAGAIN;
			return -1;
		}
		t->flags |= TLS_READY;
		tls_established(t);
		if (t->flags & TLS_OWN)
			return own_read(c, buf, n);
	}
	ERR_clear_error();
	rc = SSL_read_ex(t->ssl, buf, n, &got);
	tls_kick(c); /* a key update, a ticket, an alert */
	if (rc == 1)
		return (ssize_t)got;
	err = SSL_get_error(t->ssl, rc);
	if (err == SSL_ERROR_ZERO_RETURN)
		return 0;
	if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE)
		tls_fail(c, err);
	errno = EAGAIN;
	return -1;
}

/* Before the write side is shut: a close_notify, once (false: none to
 * send, go on). */
static bool tls_notify(struct conn *c)
{
	struct conn_tls *t = c->tls;

	if (t->ct) {
		tls_kick(c); /* the last records first */
		return true;
	}
	if ((t->flags & (TLS_READY | TLS_NOTIFY | TLS_FAILED)) != TLS_READY)
		return false;
	t->flags |= TLS_NOTIFY;
	if (t->flags & TLS_OWN) {
		static const uint8_t close_notify[] = { 1, 0 };

		(void)own_seal(c, TLS13_ALERT, close_notify, sizeof(close_notify));
	} else {
		ERR_clear_error();
		(void)SSL_shutdown(t->ssl);
		ERR_clear_error();
	}
	tls_kick(c);
	return t->ct != NULL;
}

static void linger_start(struct conn *c);

/* Fills IOV (up to MAX entries) from the front of queue O; returns the
 * bytes and sets *N to the entries. */
static size_t fill_iov(const struct conn_out *o, struct iovec *iov, size_t max, size_t *n)
{
	size_t i, want = 0;

	*n = 0;
	for (i = o->head; i < o->n && *n < max; i++) {
		iov[*n].iov_base = o->seg[i].b->data + o->seg[i].off;
		iov[*n].iov_len = o->seg[i].len;
		want += o->seg[i].len;
		(*n)++;
	}
	return want;
}

/* Applies the result RES (bytes, or -errno) of sending WANT bytes of C's
 * queue. Returns true when the caller should send more now. */
static bool sent(struct conn *c, ssize_t res, size_t want)
{
	if (res < 0) {
		if (res == -EINTR)
			return true;
		if (res == -EAGAIN || res == -EWOULDBLOCK)
			return false;
		if (res == -EPIPE || res == -ECONNRESET)
			log_debug("conn fd %d (%s): peer gone while writing", c->fd, c->ops->name);
		else
			log_warn("sendmsg(fd %d) failed: %s", c->fd, strerror((int)-res));
		conn_close(c);
		return false;
	}
	tx_consume(c, (size_t)res);
	/* Short: the socket buffer is full, wait for EV_WRITE. */
	return (size_t)res == want && tx_pending(c);
}

/* After sending: wait for EV_WRITE if output is left, else tell the layer
 * it is drained. */
static void write_done(struct conn *c)
{
	if (c->flags & CONN_CLOSED)
		return;
	if (tx_pending(c)) {
		if (!(c->flags & CONN_WANT_WRITE)) {
			c->flags |= CONN_WANT_WRITE;
			if (c->write_timeout_ms > 0 && c->wdeadline == CONN_NEVER) {
				c->wdeadline = c->w->now_ms + c->write_timeout_ms;
				timer_arm(c);
			}
			io_update(c);
		}
		return;
	}
	c->flags &= ~(CONN_OVER_LIMIT | CONN_WANT_WRITE);
	if (c->wdeadline != CONN_NEVER) {
		c->wdeadline = CONN_NEVER;
		timer_arm(c);
	}
	io_update(c);
	if (c->flags & CONN_SHUTDOWN)
		linger_start(c);
	else if (c->ops->on_flushed && (!c->tls || (c->tls->flags & TLS_READY)))
		c->ops->on_flushed(c);
}

/* Writes as much of C's queue as the kernel takes, one sendmsg at a time. */
static void conn_write(struct conn *c)
{
	struct iovec iov[IOV_MAX];
	struct conn_out *o;

	while ((o = tx_queue(c)) != NULL) {
		struct msghdr mh = { .msg_iov = iov };
		size_t want = fill_iov(o, iov, IOV_MAX, &mh.msg_iovlen);
		ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);

		if (!sent(c, n < 0 ? -errno : n, want))
			break;
	}
	write_done(c);
}

/* ---- batched sends ------------------------------------------------------ */

/* The flush point hands the kernel up to SEND_BATCH sends in one
 * io_uring_enter instead of one sendmsg each: on this project's machine a
 * send to a loopback socket costs ~8 us through sendmsg and ~5.6 us in
 * batches, the system call being a large part of it. Synchronous all the
 * same: conn_flush waits for every completion before it goes on, so the
 * queued buffers stay put and no conn changes meanwhile. Without io_uring
 * (an old kernel, a sandbox that forbids it) sendmsg does it all. */
#define SEND_BATCH FLUSH_CHECK
#define SEND_IOV 8 /* UIO_FASTIOV: more segments go by sendmsg */

struct conn_batch {
	struct io_uring ring;
	struct {
		struct conn *c;
		struct msghdr mh;
		struct iovec iov[SEND_IOV];
		size_t want;
	} e[SEND_BATCH];
	unsigned n;
};

static void batch_init(struct worker *w)
{
	struct conn_batch *b = xcalloc(1, sizeof(*b));
	int rc = io_uring_queue_init(SEND_BATCH, &b->ring, 0);

	if (rc < 0) {
		log_info("io_uring unavailable (%s): one sendmsg per connection", strerror(-rc));
		free(b);
		b = NULL;
	}
	w->batch = b;
}

/* Gives the ring up: one sendmsg per conn from now on. */
static void conn_batch_off(struct worker *w)
{
	if (w->batch) {
		io_uring_queue_exit(&w->batch->ring);
		free(w->batch);
		w->batch = NULL;
	}
}

/* Sends every queued entry of W's batch and applies the results in
 * order; a failed submission gives the ring up (W's batch is gone after). */
static void batch_send(struct worker *w)
{
	struct conn_batch *b = w->batch;
	struct io_uring_cqe *cqe;
	ssize_t res[SEND_BATCH];
	unsigned i, got = 0, head;
	bool failed = false;
	int rc;

	if (b->n == 0)
		return;
	for (i = 0; i < b->n; i++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);

		io_uring_prep_sendmsg(sqe, b->e[i].c->fd, &b->e[i].mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		io_uring_sqe_set_data64(sqe, i);
		res[i] = -EINTR; /* not completed: sendmsg below */
	}
	do
		rc = io_uring_submit_and_wait(&b->ring, b->n);
	while (rc == -EINTR);
	if (rc < 0 || (unsigned)rc < b->n) {
		/* Sends the kernel did not take stay in the ring, where the next
		 * submission would find them: collect what was taken, send the
		 * rest by sendmsg and give the ring up. */
		log_warn("io_uring took %d of %u sends (%s); using sendmsg from now on", rc, b->n,
			 rc < 0 ? strerror(-rc) : "short submission");
		if (rc > 0)
			(void)io_uring_wait_cqe_nr(&b->ring, &cqe, (unsigned)rc);
		failed = true;
	}
	io_uring_for_each_cqe(&b->ring, head, cqe) {
		if (cqe->user_data < b->n)
			res[cqe->user_data] = cqe->res;
		got++;
	}
	io_uring_cq_advance(&b->ring, got);
	/* Results are applied only now: a callback of one conn may touch
	 * another of the batch (queue to it, close it). */
	for (i = 0; i < b->n; i++) {
		struct conn *c = b->e[i].c;

		if (c->flags & CONN_CLOSED)
			continue;
		if (res[i] == -EINTR || sent(c, res[i], b->e[i].want))
			conn_write(c); /* the rest, or what was not sent */
		else
			write_done(c);
	}
	b->n = 0;
	if (failed)
		conn_batch_off(w);
}

/* Queues C's next send for batch_send; false if there is no batch. */
static bool batch_add(struct worker *w, struct conn *c)
{
	struct conn_batch *b = w->batch;
	struct conn_out *o;

	/* A conn with several messages queued makes one send for them all:
	 * the system call is paid once anyway, and io_uring copies a long
	 * iovec array on the slow path. */
	if (!b || (o = tx_queue(c)) == NULL || o->n - o->head > SEND_IOV)
		return false;
	struct msghdr *mh = &b->e[b->n].mh;
	*mh = (struct msghdr){ .msg_iov = b->e[b->n].iov };
	b->e[b->n].c = c;
	b->e[b->n].want = fill_iov(o, b->e[b->n].iov, SEND_IOV, &mh->msg_iovlen);
	if (++b->n == SEND_BATCH)
		batch_send(w);
	return true;
}

/* ---- input ------------------------------------------------------------- */

/* Hands held input to the layer until it is consumed, the layer pauses or
 * waits for more, or the conn closes. */
static void deliver(struct conn *c)
{
	while (c->in_len && !(c->flags & (CONN_CLOSED | CONN_PAUSED | CONN_SHUTDOWN))) {
		const struct conn_ops *ops = c->ops;
		size_t used;

		c->flags |= CONN_IN_READ;
		used = ops->on_read(c, c->in, c->in_len);
		c->flags &= ~CONN_IN_READ;
		if (c->flags & (CONN_CLOSED | CONN_SHUTDOWN))
			break;
		assert(used <= c->in_len);
		c->in_len -= used;
		if (c->in_len && used)
			memmove(c->in, c->in + used, c->in_len);
		if (c->ops == ops)
			break; /* same layer: it has what it can use for now */
	}
	if (c->flags & (CONN_SHUTDOWN | CONN_CLOSED))
		c->in_len = 0; /* no one will read it any more */
	if (c->in_len == 0) {
		in_release(c);
	} else if (c->in_len == CONN_BUF_SIZE && !(c->flags & CONN_PAUSED)) {
		log_warn("conn fd %d (%s): %d bytes of input held unconsumed; closing",
			 c->fd, c->ops->name, CONN_BUF_SIZE);
		conn_close(c);
	}
}

void conn_feed(struct conn *c, const char *data, size_t len)
{
	const char *p = data, *end = data + len;

	assert(!c->in && !c->in_len);
	c->read_iter = c->w->iter; /* an answer to input: the front of the flush */
	/* As deliver, over the caller's bytes: the layer parses what it can,
	 * switching layers on the way (an upgrade), until it pauses (a request
	 * answered later) or stops taking bytes. */
	while (p < end && !(c->flags & (CONN_CLOSED | CONN_PAUSED | CONN_SHUTDOWN))) {
		const struct conn_ops *ops = c->ops;
		size_t used = ops->on_read(c, p, (size_t)(end - p));

		if (c->flags & (CONN_CLOSED | CONN_SHUTDOWN))
			return;
		assert(used <= (size_t)(end - p));
		p += used;
		if (c->ops == ops && !used)
			break;
	}
	if (p == end || (c->flags & (CONN_CLOSED | CONN_SHUTDOWN)))
		return;
	if ((size_t)(end - p) > CONN_BUF_SIZE) {
		log_warn("conn fd %d (%s): %zu bytes of handed-over input left unconsumed; closing",
			 c->fd, c->ops->name, (size_t)(end - p));
		conn_close(c);
		return;
	}
	c->in = pool_get();
	c->in_len = (size_t)(end - p);
	memcpy(c->in, p, c->in_len);
}

static void on_eof(struct conn *c)
{
	c->flags |= CONN_EOF;
	if (c->flags & (CONN_SHUTDOWN | CONN_LINGER))
		conn_close(c); /* nothing more to wait for from the peer */
	else if (c->ops->on_eof)
		c->ops->on_eof(c);
	else
		conn_close(c);
}

static void conn_read(struct conn *c)
{
	ssize_t n;

	c->read_iter = c->w->iter;
	/* A fed event can arrive after a pause, or after a shutdown. */
	if ((c->flags & CONN_PAUSED) || (c->flags & (CONN_SHUTDOWN | CONN_LINGER)) == CONN_SHUTDOWN)
		return;
	if (c->in_len) {
		deliver(c); /* held input first (after conn_read_resume) */
		if (c->flags & (CONN_CLOSED | CONN_PAUSED))
			return;
	}
	if (!c->in)
		c->in = pool_get();
	do
		if (c->tls && !(c->flags & CONN_LINGER))
			n = tls_read(c, c->in + c->in_len, CONN_BUF_SIZE - c->in_len);
		else
			n = read(c->fd, c->in + c->in_len, CONN_BUF_SIZE - c->in_len);
	while (n < 0 && errno == EINTR);
	if (n > 0 && (c->flags & CONN_LINGER)) {
		in_release(c); /* discarded: the response is out */
		return;
	}
	if (n > 0) {
		c->in_len += (size_t)n;
		deliver(c);
		/* Records OpenSSL read ahead: no readiness event will come. */
		if (tls_pending(c) && !(c->flags & CONN_CLOSED))
			ev_feed_event(c->w->loop, &c->io, EV_READ);
		return;
	}
	if (c->in_len == 0)
		in_release(c);
	if (n == 0) {
		on_eof(c);
	} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
		if (errno == ECONNRESET)
			log_debug("conn fd %d (%s): reset by peer", c->fd, c->ops->name);
		else
			log_syscall("read(fd %d)", c->fd);
		conn_close(c);
	}
}

static void io_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	struct conn *c = io->data;

	if ((revents & EV_WRITE) && (c->flags & CONN_WANT_WRITE))
		conn_write(c);
	if ((revents & EV_READ) && !(c->flags & CONN_CLOSED))
		conn_read(c);
}

/* ---- deadlines ---------------------------------------------------------- */

static void timer_cb(struct wheel_timer *t)
{
	struct conn *c = (struct conn *)((char *)t - offsetof(struct conn, timer));
	int64_t now = c->w->now_ms;

	if (now >= c->wdeadline) {
		c->wdeadline = CONN_NEVER;
		log_debug("conn fd %d (%s): write timeout", c->fd, c->ops->name);
		if (c->ops->on_write_timeout && !(c->flags & CONN_SHUTDOWN))
			c->ops->on_write_timeout(c);
		else
			conn_close(c);
	} else if (now >= c->deadline) {
		c->deadline = CONN_NEVER;
		if (c->flags & CONN_SHUTDOWN)
			conn_close(c); /* lingered, or never drained */
		else if (c->ops->on_timeout)
			c->ops->on_timeout(c);
		else
			conn_close(c);
	}
	if (!(c->flags & CONN_CLOSED))
		timer_arm(c);
}

void conn_set_deadline(struct conn *c, int64_t when_ms)
{
	if (c->flags & (CONN_CLOSED | CONN_SHUTDOWN))
		return;
	c->deadline = when_ms;
	timer_arm(c);
}

void conn_set_write_timeout(struct conn *c, int64_t ms)
{
	c->write_timeout_ms = ms > 0 ? ms : 0;
}

void conn_set_queue_limit(struct conn *c, size_t max_bytes)
{
	c->out_limit = max_bytes;
}

/* ---- life cycle ------------------------------------------------------- */

void conn_init(struct worker *w)
{
	w->conns = NULL;
	w->dirty = w->dirty_tail = NULL;
	w->iter = 1;
	w->nconns = 0;
	batch_init(w);
	tls_init();
}

struct conn *conn_new(struct worker *w, int fd, const struct conn_ops *ops, void *ud)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	int one = 1;

	c->w = w;
	c->fd = fd;
	c->ops = ops;
	c->ud = ud;
	c->deadline = c->wdeadline = CONN_NEVER;
	wheel_timer_init(&c->timer, timer_cb);
	/* Output is batched by the flush point; Nagle would only add latency.
	 * Fails harmlessly on non-TCP sockets. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	ev_io_init(&c->io, io_cb, fd, EV_READ);
	c->io.data = c;
	ev_io_start(w->loop, &c->io);

	c->next = w->conns;
	if (c->next)
		c->next->prev = c;
	w->conns = c;
	w->nconns++;
	return c;
}

bool conn_closing(const struct conn *c)
{
	return (c->flags & (CONN_CLOSED | CONN_SHUTDOWN)) != 0;
}

bool conn_write_blocked(const struct conn *c)
{
	return (c->flags & CONN_WANT_WRITE) != 0;
}

void conn_set_ops(struct conn *c, const struct conn_ops *ops, void *ud)
{
	c->ops = ops;
	c->ud = ud;
}

void conn_read_pause(struct conn *c)
{
	if (c->flags & CONN_PAUSED)
		return;
	c->flags |= CONN_PAUSED;
	io_update(c);
}

void conn_read_resume(struct conn *c)
{
	if (!(c->flags & CONN_PAUSED))
		return;
	c->flags &= ~CONN_PAUSED;
	io_update(c);
	if ((c->in_len || tls_pending(c)) && !(c->flags & (CONN_CLOSED | CONN_SHUTDOWN)))
		ev_feed_event(c->w->loop, &c->io, EV_READ);
}

/* Everything is written: shut the write side and drain what the peer still
 * sends, for a short while. */
static void linger_start(struct conn *c)
{
	if (c->flags & CONN_EOF) {
		conn_close(c);
		return;
	}
	if (c->tls && tls_notify(c))
		return; /* back here once it is written */
	if (shutdown(c->fd, SHUT_WR) < 0) {
		conn_close(c); /* ENOTCONN: the peer is gone already */
		return;
	}
	c->flags |= CONN_LINGER;
	c->flags &= ~CONN_PAUSED;
	c->deadline = c->w->now_ms + CONN_LINGER_MS;
	timer_arm(c);
	io_update(c);
}

void conn_shutdown(struct conn *c)
{
	if (c->flags & (CONN_CLOSED | CONN_SHUTDOWN))
		return;
	c->flags |= CONN_SHUTDOWN;
	in_release(c);
	/* Bound the wait for a blocked queue even without a write timeout. */
	c->deadline = c->write_timeout_ms ? CONN_NEVER : c->w->now_ms + 10 * CONN_LINGER_MS;
	timer_arm(c);
	if (!tx_pending(c))
		linger_start(c);
	else
		io_update(c);
}

void conn_close(struct conn *c)
{
	struct worker *w = c->w;

	if (c->flags & CONN_CLOSED)
		return;
	c->flags |= CONN_CLOSED;
	ev_io_stop(w->loop, &c->io);
	wheel_cancel(&w->wheel, &c->timer);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
	assert(w->nconns > 0);
	w->nconns--;
	out_free(c);
	in_release(c);
	tls_free(c);
	if (close(c->fd) < 0)
		log_debug("close(fd %d) failed: %s", c->fd, strerror(errno));
	if (c->ops->on_close)
		c->ops->on_close(c);
	c->ud = NULL;
	c->fd = -1;
	mark_dirty(c); /* freed by conn_flush */
}

void conn_drain_all(struct worker *w)
{
	struct conn *c, *next;

	/* A callback closes at most its own conn, which leaves NEXT valid. */
	for (c = w->conns; c; c = next) {
		next = c->next;
		if (c->ops->on_drain)
			c->ops->on_drain(c);
		else
			conn_shutdown(c);
	}
}

void conn_close_all(struct worker *w)
{
	while (w->conns)
		conn_close(w->conns);
}

bool conn_flush(struct worker *w, int64_t budget_ns)
{
	struct conn *c;
	int64_t until = budget_ns > 0 ? util_mono_ns() + budget_ns : 0;
	unsigned back = 0;

	/* Conns dirtied or closed by callbacks run from here join the list
	 * and are handled before it is empty, unless the budget runs out. The
	 * clock is read every FLUSH_CHECK conns from the back, so answers at
	 * the front cannot starve them: each slice writes some. */
	while ((c = w->dirty) != NULL) {
		bool front = c->flags & CONN_FRONT;

		w->dirty = c->dirty_next;
		c->dirty_next = NULL;
		c->flags &= ~(CONN_DIRTY | CONN_FRONT);
		if (c->flags & CONN_CLOSED)
			free(c);
		else if (tx_pending(c) && !(c->flags & CONN_WANT_WRITE) && !batch_add(w, c))
			conn_write(c);
		if (until && !front && ++back % FLUSH_CHECK == 0 && util_mono_ns() >= until)
			break;
	}
	if (w->batch)
		batch_send(w);
	w->iter++;
	return w->dirty != NULL;
}

void conn_flush_all(struct worker *w)
{
	(void)conn_flush(w, 0);
}
