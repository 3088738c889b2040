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
 * Invariants: CONN_DIRTY <=> the conn is on w->dirty; CONN_WANT_WRITE =>
 * c->out != NULL; c->out == NULL <=> out_bytes == 0; a closed conn has no
 * buffers, no fd, no active watcher, no pending timer.
 */
#include "config.h"
#include "conn.h"
#include "worker.h"
#include "log.h"
#include "util.h"
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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

static void out_free(struct conn *c)
{
	struct conn_out *o = c->out;
	size_t i;

	if (!o)
		return;
	for (i = o->head; i < o->n; i++)
		rbuf_unref(o->seg[i].b);
	free(o);
	c->out = NULL;
	c->out_bytes = 0;
}

/* Room for one more segment at the end. */
static struct conn_seg *out_push(struct conn *c)
{
	struct conn_out *o = c->out;

	if (!o) {
		o = xmalloc(sizeof(*o) + 8 * sizeof(o->seg[0]));
		o->head = o->n = 0;
		o->cap = 8;
		c->out = o;
	} else if (o->n == o->cap) {
		if (o->head > o->cap / 2) {
			memmove(o->seg, o->seg + o->head, (o->n - o->head) * sizeof(o->seg[0]));
			o->n -= o->head;
			o->head = 0;
		} else {
			o->cap *= 2;
			o = xrealloc(o, sizeof(*o) + o->cap * sizeof(o->seg[0]));
			c->out = o;
		}
	}
	return &o->seg[o->n++];
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

int conn_queue(struct conn *c, struct rbuf *b, size_t off, size_t len)
{
	struct conn_seg *s;
	int rc;

	assert(off <= b->len && len <= b->len - off);
	if ((rc = queue_check(c, len)) != RT_OK || len == 0)
		return rc;
	s = out_push(c);
	s->b = rbuf_ref(b);
	s->off = off;
	s->len = len;
	queued(c, len);
	return RT_OK;
}

int conn_queue_copy(struct conn *c, const void *data, size_t len)
{
	struct conn_seg *s = NULL;
	struct rbuf *b;
	int rc;

	if ((rc = queue_check(c, len)) != RT_OK || len == 0)
		return rc;
	/* Append to our own copy buffer at the tail when it has room, so that
	 * many small writes make few segments. */
	if (c->out && c->out->n > c->out->head) {
		s = &c->out->seg[c->out->n - 1];
		b = s->b;
		if (!(b->flags & RBUF_PRIVATE) || b->refs != 1 ||
		    s->off + s->len != b->len || b->cap - b->len < len)
			s = NULL;
	}
	if (!s) {
		b = rbuf_alloc(len > COPY_BUF_MIN ? len : COPY_BUF_MIN);
		b->flags |= RBUF_PRIVATE;
		s = out_push(c);
		s->b = b;
		s->off = 0;
		s->len = 0;
	}
	b = s->b;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	s->len += len;
	queued(c, len);
	return RT_OK;
}

/* Drops N written bytes from the front of the queue. */
static void out_consume(struct conn *c, size_t n)
{
	struct conn_out *o = c->out;

	assert(n <= c->out_bytes);
	c->out_bytes -= n;
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
		c->out = NULL;
	}
}

static void linger_start(struct conn *c);

/* Fills IOV (up to MAX entries) from the front of C's queue; returns the
 * bytes and sets *N to the entries. */
static size_t fill_iov(const struct conn *c, struct iovec *iov, size_t max, size_t *n)
{
	const struct conn_out *o = c->out;
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
	out_consume(c, (size_t)res);
	/* Short: the socket buffer is full, wait for EV_WRITE. */
	return (size_t)res == want && c->out != NULL;
}

/* After sending: wait for EV_WRITE if output is left, else tell the layer
 * it is drained. */
static void write_done(struct conn *c)
{
	if (c->flags & CONN_CLOSED)
		return;
	if (c->out) {
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
	else if (c->ops->on_flushed)
		c->ops->on_flushed(c);
}

/* Writes as much of C's queue as the kernel takes, one sendmsg at a time. */
static void conn_write(struct conn *c)
{
	struct iovec iov[IOV_MAX];

	while (c->out) {
		struct msghdr mh = { .msg_iov = iov };
		size_t want = fill_iov(c, iov, IOV_MAX, &mh.msg_iovlen);
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

	/* A conn with several messages queued makes one send for them all:
	 * the system call is paid once anyway, and io_uring copies a long
	 * iovec array on the slow path. */
	if (!b || c->out->n - c->out->head > SEND_IOV)
		return false;
	struct msghdr *mh = &b->e[b->n].mh;
	*mh = (struct msghdr){ .msg_iov = b->e[b->n].iov };
	b->e[b->n].c = c;
	b->e[b->n].want = fill_iov(c, b->e[b->n].iov, SEND_IOV, &mh->msg_iovlen);
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
		n = read(c->fd, c->in + c->in_len, CONN_BUF_SIZE - c->in_len);
	while (n < 0 && errno == EINTR);
	if (n > 0 && (c->flags & CONN_LINGER)) {
		in_release(c); /* discarded: the response is out */
		return;
	}
	if (n > 0) {
		c->in_len += (size_t)n;
		deliver(c);
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
	if (c->in_len && !(c->flags & (CONN_CLOSED | CONN_SHUTDOWN)))
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
	if (!c->out)
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
		else if (c->out && !(c->flags & CONN_WANT_WRITE) && !batch_add(w, c))
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
