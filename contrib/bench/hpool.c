/*
 * hpool.c - the pool of POST connections of hpool.h.
 *
 * Each pooled connection keeps, in the order it wrote them, which request
 * each POST in flight was for (hcli answers in order); a cancelled one
 * leaves a hole there, so its answer is dropped. Requests that find no
 * connection with room wait in one FIFO; every answer and every new
 * connection pumps it. A request that gathered more while its POST was
 * out goes back in the FIFO when that POST succeeds. A request goes to the open connection with the
 * fewest in flight, up to P.depth each; when none has room, one closed
 * connection is opened. A pooled connection that ends loses its requests
 * (done with status 0); one that could not even connect, with no other
 * connection up, fails the whole queue, so that a dead server ends the
 * client connections waiting on it instead of leaving them waiting.
 */
#include "hpool.h"

#include <stdlib.h>
#include <string.h>

enum { RQ_IDLE, RQ_QUEUED, RQ_FLIGHT };

struct pconn {
	struct hcli h;          /* first */
	struct hpool_req **fifo;        /* depth entries, a ring from head */
	uint32_t head;
	bool up;                /* on_ready came since the last connect */
};

static struct {
	struct pconn *c;
	int n;
	uint32_t depth;
	unsigned k0;
	struct hpool_req *qh, *qt;
	bool pumping;
} P;

static const struct hcli_ops pool_ops;

static void enqueue(struct hpool_req *r)
{
	r->state = RQ_QUEUED;
	r->next = NULL;
	r->prev = P.qt;
	if (P.qt)
		P.qt->next = r;
	else
		P.qh = r;
	P.qt = r;
}

static void unqueue(struct hpool_req *r)
{
	if (r->prev)
		r->prev->next = r->next;
	else
		P.qh = r->next;
	if (r->next)
		r->next->prev = r->prev;
	else
		P.qt = r->prev;
	r->prev = r->next = NULL;
	r->state = RQ_IDLE;
}

static void pump(void);

/* r's POST is over with status (0: lost). */
static void done(struct hpool_req *r, int status)
{
	r->state = RQ_IDLE;
	if (status >= 200 && status < 300) {
		if (r->len) {           /* what came meanwhile */
			enqueue(r);
			pump();
		}
	} else if (r->sending) {
		r->lost = status + 1;   /* hpool_send reports it */
	} else {
		r->ops->failed(r, status);
	}
}

/* Every request in c's FIFO is lost (c ended). */
static void lose(struct pconn *c, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint32_t slot = (c->head + i) % P.depth;
		struct hpool_req *r = c->fifo[slot];
		c->fifo[slot] = NULL;
		if (r)
			done(r, 0);
	}
	c->head = 0;
}

/* Fails every queued request: no connection can be made. */
static void fail_queue(void)
{
	struct hpool_req *r = P.qh;
	P.qh = P.qt = NULL;
	while (r) {
		struct hpool_req *next = r->next;
		r->prev = r->next = NULL;
		done(r, 0);
		r = next;
	}
}

static bool any_open(void)
{
	for (int i = 0; i < P.n; i++)
		if (sock_open(&P.c[i].h.s))
			return true;
	return false;
}

/* Posts queued requests while connections have room, opening one if none
 * has. Callbacks it runs may call it again: those calls return at once. */
static void pump(void)
{
	if (P.pumping)
		return;
	P.pumping = true;
	while (P.qh) {
		struct pconn *best = NULL;
		bool opening = false;
		for (int i = 0; i < P.n; i++) {
			struct pconn *c = &P.c[i];
			if (sock_open(&c->h.s) && !hcli_ready(&c->h))
				opening = true;
			if (hcli_ready(&c->h) && c->h.inflight < P.depth &&
			    (best == NULL || c->h.inflight < best->h.inflight))
				best = c;
		}
		if (best == NULL) {
			for (int i = 0; i < P.n && !opening; i++) {
				struct pconn *c = &P.c[i];
				if (sock_open(&c->h.s))
					continue;
				c->up = false;
				c->head = 0;
				opening = hcli_connect(&c->h, P.k0 + (unsigned)i, false, &pool_ops) == 0;
			}
			if (!opening && !any_open())
				fail_queue();
			break;
		}
		struct hpool_req *r = P.qh;
		unqueue(r);
		uint32_t slot = (best->head + best->h.inflight) % P.depth;
		uint32_t before = best->h.inflight;
		r->state = RQ_FLIGHT;
		best->fifo[slot] = r;
		int err = r->ops->post(r, &best->h);
		hpool_clear(r);
		if (err != 0) {
			/* hcli closed it: r and what was in flight are lost */
			best->fifo[slot] = NULL;
			lose(best, before);
			done(r, 0);
		}
	}
	P.pumping = false;
}

static void on_ready(struct hcli *h)
{
	((struct pconn *)h)->up = true;
	pump();
}

static void on_response(struct hcli *h, int status, const uint8_t *body, size_t n, uint64_t now)
{
	(void)body, (void)n, (void)now;
	struct pconn *c = (struct pconn *)h;
	struct hpool_req *r = c->fifo[c->head];
	c->fifo[c->head] = NULL;
	c->head = (c->head + 1) % P.depth;
	if (r)
		done(r, status);
	pump();
}

static void on_end(struct hcli *h, int err, unsigned lost)
{
	(void)err;
	struct pconn *c = (struct pconn *)h;
	bool was_up = c->up;
	c->up = false;
	lose(c, lost);
	if (was_up)
		pump();         /* reopens it if requests wait */
	else if (!any_open())
		fail_queue();   /* could not connect, and no other one is up */
}

static const struct hcli_ops pool_ops = { on_ready, on_response, on_end };

void hpool_setup(int conns, int depth, unsigned k0)
{
	P.n = conns;
	P.depth = (uint32_t)(depth > 0 ? depth : 1);
	P.k0 = k0;
	P.c = calloc((size_t)(conns > 0 ? conns : 1), sizeof(*P.c));
	if (P.c == NULL)
		abort();
	for (int i = 0; i < conns; i++)
		if ((P.c[i].fifo = calloc(P.depth, sizeof(*P.c[i].fifo))) == NULL)
			abort();
}

void hpool_add(struct hpool_req *r, const uint8_t *p, size_t n, bool nl)
{
	size_t need = (size_t)r->len + n + 1;
	if (need > r->cap) {
		size_t cap = r->cap ? r->cap : 256;
		while (cap < need)
			cap *= 2;
		r->buf = realloc(r->buf, cap);
		if (r->buf == NULL)
			abort();
		r->cap = (uint32_t)cap;
	}
	if (r->len && nl)
		r->buf[r->len++] = '\n';
	memcpy(r->buf + r->len, p, n);
	r->len += (uint32_t)n;
}

void hpool_clear(struct hpool_req *r)
{
	free(r->buf);           /* an idle connection holds nothing */
	r->buf = NULL;
	r->len = r->cap = 0;
}

int hpool_send(struct hpool_req *r, const struct hpool_req_ops *ops)
{
	r->ops = ops;
	if (r->state != RQ_IDLE || r->len == 0)
		return 0;
	r->sending = true;
	r->lost = 0;
	enqueue(r);
	pump();
	r->sending = false;
	return r->lost ? -1 : 0;
}

void hpool_cancel(struct hpool_req *r)
{
	if (r->state == RQ_QUEUED) {
		unqueue(r);
	} else if (r->state == RQ_FLIGHT) {
		for (int i = 0; i < P.n; i++)
			for (uint32_t k = 0; k < P.depth; k++)
				if (P.c[i].fifo[k] == r)
					P.c[i].fifo[k] = NULL;
		r->state = RQ_IDLE;
	}
	hpool_clear(r);
}

void hpool_close(void)
{
	for (int i = 0; i < P.n; i++) {
		hcli_close(&P.c[i].h);
		free(P.c[i].fifo);
	}
	free(P.c);
	P.c = NULL;
	P.n = 0;
	P.qh = P.qt = NULL;
}
