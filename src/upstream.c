/*
 * upstream.c - the worker's non-blocking HTTP/1.1 client (see upstream.h).
 *
 * Model. An upstream (struct upstream) is one origin on one loop, found
 * again by upstream_get through a list keyed by loop, URL origin and
 * options. It owns its connections (struct uconn, at most
 * UPSTREAM_CONNS_MAX) and a FIFO queue of requests that wait for one.
 * A request (struct upstream_req) is in exactly one place: the queue, a
 * connection (uconn.req, from the moment that connection is opened for it
 * or taken from the idle pool until the response is complete), or "later"
 * (its answer is due from a zero timer: failures found inside
 * upstream_request and when opening a connection).
 *
 * Connection states: CONNECTING (non-blocking connect) -> HANDSHAKE (TLS)
 * -> BUSY (writing the request, reading the response through llhttp in
 * response mode) -> IDLE (in the pool: a readable idle socket means the
 * server closed it or sent garbage; it is closed) -> BUSY ... A connection
 * is put back in the pool only after a whole response with keep-alive
 * (HTTP/1.1 without "Connection: close": llhttp_should_keep_alive) and no
 * byte past its end; any error, timeout or cancel mid-exchange closes it.
 *
 * Retry. A request sent on a pooled connection that turns out closed by
 * the server (EOF, reset or EPIPE before a single byte of the response) is
 * sent once more on a fresh connection: this is the race between the
 * server's keep-alive timeout and our reuse. Caveat: the server may have
 * read the request before it closed, so a request that is not idempotent
 * may be processed twice; rotor's callers (proxies, JWKS) accept that, as
 * Go's net/http does for requests it retries.
 *
 * Addresses. A host name's addresses come from dns.c when pump needs a
 * new connection and they are missing or stale (UP_DNS_TTL_S, or every
 * address failed to connect since the lookup): requests stay queued until
 * the answer; idle pooled connections are used meanwhile.
 *
 * Bodies are kept up to the request's max_body and no further: an
 * announced Content-Length over it fails at the headers, a chunked or
 * read-to-EOF body as soon as it passes it.
 *
 * Callbacks. A done callback may call anything of this file (new requests,
 * cancels of other requests). Every path answers a request only after the
 * connection it used is settled (pooled or closed) and never touches that
 * connection afterwards.
 */
#include "config.h"
#include "upstream.h"
#include "dns.h"
#include "log.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <llhttp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#define UP_IDLE_DEF_MS 60000
#define UP_DNS_TTL_S 30.0          /* a name's addresses are looked up again after this */
#define UP_DNS_RETRY_S 5.0         /* after a failed lookup, the previous addresses serve this long */
#define UP_DNS_TIMEOUT_MS 5000
#define UP_DNS_LOG_S 10.0          /* a failing lookup is logged at most this often */
#define UP_READ_CHUNK 16384

enum uconn_state { C_CONNECTING, C_HANDSHAKE, C_BUSY, C_IDLE };

struct uconn {
	TAILQ_ENTRY(uconn) all;        /* upstream.conns */
	TAILQ_ENTRY(uconn) idle_link;  /* upstream.idle, when C_IDLE */
	struct upstream *u;
	int fd;
	SSL *ssl;
	enum uconn_state state;
	ev_io io;
	ev_timer idle_w;
	struct upstream_req *req;      /* the request it serves (not C_IDLE) */
	unsigned served;               /* responses completed on it */
	llhttp_t parser;
	size_t rx;                     /* bytes of the current response read */
	bool complete;                 /* on_message_complete for req */
	bool toobig;
};

struct upstream_req {
	TAILQ_ENTRY(upstream_req) q;   /* upstream.queue or upstream.later */
	struct upstream *u;
	struct uconn *c;
	bool queued, retried, later;
	char *out;                     /* the request's bytes */
	size_t outlen, outoff;
	bool head;                     /* a HEAD request: no response body */
	size_t max_body;
	char *body;                    /* NUL-terminated for convenience */
	size_t blen, bcap;
	int status;
	enum upstream_err err;         /* the answer "later" gives */
	ev_timer deadline_w;
	ev_timer later_w;
	upstream_done_fn *done;
	void *arg;
};

struct upstream {
	struct upstream *next;         /* the list upstream_get searches */
	struct ev_loop *loop;
	char *key;
	bool tls;
	char host[256];                /* without brackets */
	char hosthdr[300];             /* the Host header's value */
	int port;
	struct dns_result addrs;       /* the host's addresses (addrs.n 0: none yet) */
	ev_tstamp addrs_until;         /* they are looked up again after this; 0: never (numeric) */
	unsigned next_addr;            /* the address the next new connection takes */
	unsigned addr_fails;           /* connects failed since the lookup */
	struct dns_req *dns;           /* the lookup in flight, if any */
	ev_tstamp dns_logged;          /* when a failed lookup was last logged */
	bool host_is_ip;
	SSL_CTX *ctx;
	bool tls_insecure;
	uint32_t idle_ms;
	TAILQ_HEAD(, uconn) conns;
	TAILQ_HEAD(, uconn) idle;
	TAILQ_HEAD(, upstream_req) queue;
	TAILQ_HEAD(, upstream_req) later; /* answers due from their zero timer */
	unsigned nconns, nqueued;
};

static struct upstream *ups;
static llhttp_settings_t settings;
static bool settings_ready;

static void pump(struct upstream *u);
static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);

/* ---- requests ------------------------------------------------------------ */

static void req_free(struct upstream_req *r)
{
	ev_timer_stop(r->u->loop, &r->deadline_w);
	ev_timer_stop(r->u->loop, &r->later_w);
	free(r->out);
	free(r->body);
	free(r);
}

/* Takes R off the queue or its connection (which the caller settles). */
static void req_unlink(struct upstream_req *r)
{
	if (r->queued) {
		TAILQ_REMOVE(&r->u->queue, r, q);
		r->u->nqueued--;
		r->queued = false;
	}
	if (r->c != NULL) {
		r->c->req = NULL;
		r->c = NULL;
	}
}

/* Answers R with ERR (and its status and body when UPSTREAM_OK), then frees
 * it. R must be unlinked. */
static void req_answer(struct upstream_req *r, enum upstream_err err)
{
	struct upstream_resp resp = { .err = err };

	if (r->later) {
		TAILQ_REMOVE(&r->u->later, r, q);
		r->later = false;
	}
	if (err == UPSTREAM_OK) {
		resp.status = r->status;
		resp.body = r->body ? r->body : "";
		resp.len = r->blen;
	}
	ev_timer_stop(r->u->loop, &r->deadline_w);
	ev_timer_stop(r->u->loop, &r->later_w);
	r->done(r->arg, &resp);
	req_free(r);
}

static void later_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct upstream_req *r = w->data;

	(void)loop, (void)revents;
	req_answer(r, r->err);
}

/* Answers R with ERR from a zero timer: R is in no queue and on no
 * connection meanwhile. */
static void req_answer_later(struct upstream_req *r, enum upstream_err err)
{
	req_unlink(r);
	ev_timer_stop(r->u->loop, &r->deadline_w);
	TAILQ_INSERT_TAIL(&r->u->later, r, q);
	r->later = true;
	r->err = err;
	ev_timer_set(&r->later_w, 0., 0.);
	ev_timer_start(r->u->loop, &r->later_w);
}

/* ---- connections --------------------------------------------------------- */

static void conn_want(struct uconn *c, int events)
{
	if (c->io.events == events && ev_is_active(&c->io))
		return;
	ev_io_stop(c->u->loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	ev_io_start(c->u->loop, &c->io);
}

/* Closes C and frees it; its request (if any) is the caller's. */
static void conn_close(struct uconn *c)
{
	struct upstream *u = c->u;

	if (c->req != NULL) {
		c->req->c = NULL;
		c->req = NULL;
	}
	ev_io_stop(u->loop, &c->io);
	ev_timer_stop(u->loop, &c->idle_w);
	if (c->state == C_IDLE)
		TAILQ_REMOVE(&u->idle, c, idle_link);
	if (c->ssl != NULL) {
		if (c->state == C_IDLE)
			(void)SSL_shutdown(c->ssl); /* best effort close_notify */
		SSL_free(c->ssl);
	}
	close(c->fd);
	TAILQ_REMOVE(&u->conns, c, all);
	u->nconns--;
	free(c);
}

static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct uconn *c = w->data;

	(void)loop, (void)revents;
	conn_close(c);
}

/* Resets C's parser and starts sending R on it. */
static void conn_attach(struct uconn *c, struct upstream_req *r)
{
	c->req = r;
	r->c = c;
	c->rx = 0;
	c->complete = false;
	c->toobig = false;
	llhttp_init(&c->parser, HTTP_RESPONSE, &settings);
	c->parser.data = c;
	if (c->state == C_IDLE) {
		TAILQ_REMOVE(&c->u->idle, c, idle_link);
		ev_timer_stop(c->u->loop, &c->idle_w);
		c->state = C_BUSY;
	}
	if (c->state == C_BUSY)
		conn_want(c, EV_READ | EV_WRITE);
}

/* A connect to the current address failed: the next connection takes the
 * next one; once each of a name's addresses failed, the name is looked up
 * again before the next connection. */
static void addr_failed(struct upstream *u)
{
	u->next_addr++;
	if (u->addrs_until > 0 && ++u->addr_fails >= u->addrs.n)
		u->addrs_until = ev_now(u->loop);
}

/* Opens a new connection for R (already counted against the bound by the
 * caller's check) to U's addresses (known). A failure is answered later. */
static void conn_open(struct upstream *u, struct upstream_req *r)
{
	struct uconn *c;
	unsigned i = u->next_addr % u->addrs.n;
	const struct sockaddr *sa = (const struct sockaddr *)&u->addrs.addr[i].sa;
	int fd, one = 1;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("upstream %s: socket() failed: %s", u->key, strerror(errno));
		req_answer_later(r, UPSTREAM_ECONNECT);
		return;
	}
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, sa, u->addrs.addr[i].len) < 0 && errno != EINPROGRESS) {
		log_debug("upstream %s: connect() failed: %s", u->key, strerror(errno));
		close(fd);
		addr_failed(u);
		req_answer_later(r, UPSTREAM_ECONNECT);
		return;
	}
	c = xcalloc(1, sizeof(*c));
	c->u = u;
	c->fd = fd;
	c->state = C_CONNECTING;
	ev_io_init(&c->io, conn_io_cb, fd, EV_WRITE);
	c->io.data = c;
	ev_timer_init(&c->idle_w, idle_cb, 0., 0.);
	c->idle_w.data = c;
	TAILQ_INSERT_TAIL(&u->conns, c, all);
	u->nconns++;
	ev_io_start(u->loop, &c->io);
	conn_attach(c, r);
}

/* C failed with ERR: closes it and answers its request, or sends that
 * request again on a fresh connection when the pooled connection it was
 * sent on was found closed before any byte of the response. */
static void conn_fail(struct uconn *c, enum upstream_err err)
{
	struct upstream *u = c->u;
	struct upstream_req *r = c->req;
	bool retry = r != NULL && err == UPSTREAM_ECLOSED && c->served > 0 && c->rx == 0 && !r->retried;

	if (c->state == C_CONNECTING)
		addr_failed(u);
	conn_close(c);
	if (r != NULL && retry) {
		r->retried = true;
		r->outoff = 0;
		conn_open(u, r);
	}
	pump(u);
	if (r != NULL && !retry)
		req_answer(r, err);
}

/* Puts C (its response complete) back in the pool. */
static void conn_pool(struct uconn *c)
{
	struct upstream *u = c->u;

	c->state = C_IDLE;
	c->served++;
	TAILQ_INSERT_TAIL(&u->idle, c, idle_link);
	conn_want(c, EV_READ);
	ev_timer_set(&c->idle_w, u->idle_ms / 1000., 0.);
	ev_timer_start(u->loop, &c->idle_w);
}

/* ---- TLS ------------------------------------------------------------------ */

/* Starts or continues C's TLS handshake; false when C was closed. */
static bool conn_handshake(struct uconn *c)
{
	int rc, e;

	if (c->ssl == NULL) {
		c->ssl = SSL_new(c->u->ctx);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
			goto fail;
		if (!c->u->host_is_ip && SSL_set_tlsext_host_name(c->ssl, c->u->host) != 1)
			goto fail;
		if (!c->u->tls_insecure) {
			if (c->u->host_is_ip) {
				X509_VERIFY_PARAM *p = SSL_get0_param(c->ssl);
				if (X509_VERIFY_PARAM_set1_ip_asc(p, c->u->host) != 1)
					goto fail;
			} else if (SSL_set1_host(c->ssl, c->u->host) != 1) {
				goto fail;
			}
		}
		SSL_set_connect_state(c->ssl);
		c->state = C_HANDSHAKE;
	}
	ERR_clear_error();
	rc = SSL_do_handshake(c->ssl);
	if (rc == 1) {
		c->state = C_BUSY;
		conn_want(c, EV_READ | EV_WRITE);
		return true;
	}
	e = SSL_get_error(c->ssl, rc);
	if (e == SSL_ERROR_WANT_READ) {
		conn_want(c, EV_READ);
		return false;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		conn_want(c, EV_WRITE);
		return false;
	}
fail:
	if (c->ssl != NULL && SSL_get_verify_result(c->ssl) != X509_V_OK)
		log_warn("upstream %s: certificate: %s", c->u->key,
			 X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
	else
		log_warn("upstream %s: TLS handshake failed: %s", c->u->key,
			 ERR_reason_error_string(ERR_peek_last_error()) ?: "connection closed");
	ERR_clear_error();
	conn_fail(c, UPSTREAM_ETLS);
	return false;
}

/* Reads (WRITE false) or writes up to N bytes on C: > 0 bytes, 0 at EOF,
 * -1 with errno EAGAIN (not now) or another errno (the connection is
 * broken). */
static ssize_t conn_io(struct uconn *c, char *buf, size_t n, bool write)
{
	ssize_t k;
	int rc, e;

	if (c->ssl == NULL) {
		do
			k = write ? send(c->fd, buf, n, MSG_NOSIGNAL) : read(c->fd, buf, n);
		while (k < 0 && errno == EINTR);
		return k;
	}
	ERR_clear_error();
	rc = write ? SSL_write(c->ssl, buf, (int)n) : SSL_read(c->ssl, buf, (int)n);
	if (rc > 0)
		return rc;
	e = SSL_get_error(c->ssl, rc);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		errno = EAGAIN;
		return -1;
	}
	ERR_clear_error();
	if (!write && e == SSL_ERROR_ZERO_RETURN)
		return 0;
	errno = write ? EPIPE : ECONNRESET; /* unclean EOF, or a TLS error: broken */
	return -1;
}

/* ---- the response --------------------------------------------------------- */

static int on_headers_complete(llhttp_t *p)
{
	struct uconn *c = p->data;
	struct upstream_req *r = c->req;

	r->status = p->status_code;
	if (p->status_code >= 100 && p->status_code < 200)
		return 0; /* an interim response: the real one follows */
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > r->max_body) {
		c->toobig = true;
		return HPE_USER;
	}
	return r->head ? 1 : 0; /* 1: no body follows */
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
	struct uconn *c = p->data;
	struct upstream_req *r = c->req;
	size_t cap;

	if (len > r->max_body - r->blen) {
		c->toobig = true;
		return HPE_USER;
	}
	if (r->blen + len + 1 > r->bcap) {
		cap = r->bcap ? r->bcap * 2 : 1024;
		while (cap < r->blen + len + 1)
			cap *= 2;
		if (cap > r->max_body + 1)
			cap = r->max_body + 1;
		r->body = xrealloc(r->body, cap);
		r->bcap = cap;
	}
	memcpy(r->body + r->blen, at, len);
	r->blen += len;
	r->body[r->blen] = '\0';
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	struct uconn *c = p->data;
	struct upstream_req *r = c->req;

	if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) {
		r->blen = 0; /* 100 Continue and friends: wait for the response */
		return 0;
	}
	c->complete = true;
	return HPE_PAUSED;
}

/* The response on C is complete; KEEP says whether C may be pooled. */
static void conn_done(struct uconn *c, bool keep)
{
	struct upstream *u = c->u;
	struct upstream_req *r = c->req;

	req_unlink(r);
	if (keep)
		conn_pool(c);
	else
		conn_close(c);
	pump(u);
	req_answer(r, UPSTREAM_OK);
}

/* Feeds N bytes read on C to the parser; false when C was closed or
 * settled (the caller stops reading). */
static bool conn_parse(struct uconn *c, const char *buf, size_t n)
{
	llhttp_errno_t e;
	bool keep;

	c->rx += n;
	e = llhttp_execute(&c->parser, buf, n);
	if (e == HPE_OK)
		return true;
	if (e == HPE_PAUSED && c->complete) {
		const char *end = llhttp_get_error_pos(&c->parser);
		/* Bytes past the response, or the request not yet all sent:
		 * the connection is in no state to be reused. */
		keep = llhttp_should_keep_alive(&c->parser) && end == buf + n &&
		       c->req->outoff == c->req->outlen;
		conn_done(c, keep);
		return false;
	}
	if (c->toobig) {
		conn_fail(c, UPSTREAM_ETOOBIG);
		return false;
	}
	log_debug("upstream %s: bad response: %s: %s", c->u->key, llhttp_errno_name(e),
		  llhttp_get_error_reason(&c->parser));
	conn_fail(c, UPSTREAM_EPROTO);
	return false;
}

/* EOF on C while a response is due. */
static void conn_eof(struct uconn *c)
{
	llhttp_errno_t e = c->rx > 0 ? llhttp_finish(&c->parser) : HPE_OK;

	if (c->complete && (e == HPE_OK || e == HPE_PAUSED)) {
		conn_done(c, false); /* a body delimited by the close */
		return;
	}
	if (c->toobig) {
		conn_fail(c, UPSTREAM_ETOOBIG);
		return;
	}
	conn_fail(c, UPSTREAM_ECLOSED);
}

/* ---- I/O ------------------------------------------------------------------ */

/* C is BUSY: sends what is left of the request, then reads. */
static void conn_busy(struct uconn *c, int revents)
{
	struct upstream_req *r = c->req;
	char buf[UP_READ_CHUNK];
	ssize_t k;

	if (r->outoff < r->outlen && (revents & EV_WRITE)) {
		while (r->outoff < r->outlen) {
			k = conn_io(c, r->out + r->outoff, r->outlen - r->outoff, true);
			if (k < 0 && errno == EAGAIN)
				break;
			if (k < 0) {
				conn_fail(c, UPSTREAM_ECLOSED);
				return;
			}
			r->outoff += (size_t)k;
		}
		if (r->outoff == r->outlen)
			conn_want(c, EV_READ);
	}
	if (!(revents & EV_READ) && !(c->ssl && SSL_pending(c->ssl) > 0))
		return;
	for (;;) {
		k = conn_io(c, buf, sizeof(buf), false);
		if (k > 0) {
			if (!conn_parse(c, buf, (size_t)k))
				return;
			continue;
		}
		if (k < 0 && errno == EAGAIN)
			return;
		if (k < 0)
			conn_fail(c, UPSTREAM_ECLOSED);
		else
			conn_eof(c);
		return;
	}
}

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct uconn *c = w->data;
	int soerr = 0;
	socklen_t sl = sizeof(soerr);
	char b;

	(void)loop;
	switch (c->state) {
	case C_CONNECTING:
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
			soerr = errno;
		if (soerr != 0) {
			log_debug("upstream %s: connect: %s", c->u->key, strerror(soerr));
			conn_fail(c, UPSTREAM_ECONNECT);
			return;
		}
		if (c->u->tls) {
			(void)conn_handshake(c);
			return;
		}
		c->state = C_BUSY;
		conn_busy(c, EV_WRITE);
		return;
	case C_HANDSHAKE:
		if (conn_handshake(c))
			conn_busy(c, EV_WRITE);
		return;
	case C_BUSY:
		conn_busy(c, revents);
		return;
	case C_IDLE:
		/* Nothing is due on an idle connection: EOF or garbage
		 * (a TLS record that carries no data, e.g. a session ticket,
		 * reads as EAGAIN). */
		if (c->ssl == NULL ? recv(c->fd, &b, 1, MSG_PEEK) < 0 && errno == EAGAIN
				   : conn_io(c, &b, 1, false) < 0 && errno == EAGAIN)
			return;
		conn_close(c);
		return;
	}
}

/* ---- the queue ------------------------------------------------------------ */

static void lookup_done(void *arg, const struct dns_result *res);

/* Whether U's addresses are known and fresh; if not, starts their lookup
 * (one at a time). */
static bool addrs_ready(struct upstream *u)
{
	if (u->addrs.n > 0 && (u->addrs_until == 0 || ev_now(u->loop) < u->addrs_until))
		return true;
	if (u->dns == NULL)
		u->dns = dns_lookup(u->loop, u->host, u->port, UP_DNS_TIMEOUT_MS, lookup_done, u);
	return false;
}

/* The host's lookup answered: new connections use the addresses. A
 * failed lookup keeps the previous addresses, if any, UP_DNS_RETRY_S more
 * (a resolver that is down does not take a working backend away); with
 * none, the requests waiting for a new connection fail with
 * UPSTREAM_ECONNECT and the next request looks the name up again. */
static void lookup_done(void *arg, const struct dns_result *res)
{
	struct upstream *u = arg;
	struct upstream_req *r;

	u->dns = NULL;
	if (res->err == 0) {
		u->addrs = *res;
		u->addrs_until = ev_now(u->loop) + UP_DNS_TTL_S;
		u->next_addr = u->addr_fails = 0;
		pump(u);
		return;
	}
	if (ev_now(u->loop) - u->dns_logged >= UP_DNS_LOG_S) {
		log_warn("upstream %s: cannot resolve %s: %s%s", u->key, u->host, dns_strerror(res->err),
			 u->addrs.n > 0 ? " (the previous addresses are used meanwhile)" : "");
		u->dns_logged = ev_now(u->loop);
	}
	if (u->addrs.n > 0) {
		u->addrs_until = ev_now(u->loop) + UP_DNS_RETRY_S;
		pump(u);
		return;
	}
	while ((r = TAILQ_FIRST(&u->queue)) != NULL)
		req_answer_later(r, UPSTREAM_ECONNECT);
}

/* Gives queued requests connections: idle ones first, then new ones while
 * the pool is below its bound and the host's addresses are known (else
 * they wait for its lookup). */
static void pump(struct upstream *u)
{
	struct upstream_req *r;
	struct uconn *c;

	while ((r = TAILQ_FIRST(&u->queue)) != NULL) {
		if ((c = TAILQ_FIRST(&u->idle)) == NULL && (u->nconns >= UPSTREAM_CONNS_MAX || !addrs_ready(u)))
			return;
		TAILQ_REMOVE(&u->queue, r, q);
		u->nqueued--;
		r->queued = false;
		if (c != NULL)
			conn_attach(c, r);
		else
			conn_open(u, r);
	}
}

static void deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct upstream_req *r = w->data;
	struct upstream *u = r->u;
	struct uconn *c = r->c;

	(void)loop, (void)revents;
	req_unlink(r);
	if (c != NULL) {
		conn_close(c);
		pump(u);
	}
	req_answer(r, UPSTREAM_ETIMEDOUT);
}

/* ---- the interface ---------------------------------------------------------- */

const char *upstream_url_target(const char *url)
{
	const char *p = strstr(url, "://");

	p = p ? p + 3 : url;
	p += strcspn(p, "/?#");
	return *p == '/' || *p == '?' ? p : "/";
}

/* Splits URL into scheme, host and port. -1 with a message in ERR. */
static int parse_url(const char *url, bool *tls, char *host, size_t hostsize, int *port, char *err, size_t n)
{
	const char *p, *end, *hs, *he, *colon;
	long v;

	if (strncasecmp(url, "http://", 7) == 0) {
		*tls = false;
		p = url + 7;
	} else if (strncasecmp(url, "https://", 8) == 0) {
		*tls = true;
		p = url + 8;
	} else {
		snprintf(err, n, "not an http:// or https:// URL: %s", url);
		return -1;
	}
	end = p + strcspn(p, "/?#");
	if (memchr(p, '@', (size_t)(end - p)) != NULL) {
		snprintf(err, n, "user information in the URL is not supported: %s", url);
		return -1;
	}
	*port = *tls ? 443 : 80;
	if (*p == '[') {
		hs = p + 1;
		he = memchr(hs, ']', (size_t)(end - hs));
		if (he == NULL) {
			snprintf(err, n, "unclosed '[' in the URL: %s", url);
			return -1;
		}
		colon = he + 1 < end ? he + 1 : NULL;
		if (colon != NULL && *colon != ':') {
			snprintf(err, n, "garbage after the IPv6 address in the URL: %s", url);
			return -1;
		}
	} else {
		hs = p;
		colon = memchr(p, ':', (size_t)(end - p));
		he = colon ? colon : end;
	}
	if (he == hs || (size_t)(he - hs) >= hostsize) {
		snprintf(err, n, "no host (or one too long) in the URL: %s", url);
		return -1;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	if (strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:%") != strlen(host)) {
		snprintf(err, n, "bad host in the URL: %s", url);
		return -1;
	}
	if (colon != NULL) {
		char *e;
		if (colon + 1 == end) {
			snprintf(err, n, "empty port in the URL: %s", url);
			return -1;
		}
		errno = 0;
		v = strtol(colon + 1, &e, 10);
		if (e != end || v < 1 || v > 65535 || colon[1] == '+' || colon[1] == '-') {
			snprintf(err, n, "bad port in the URL: %s", url);
			return -1;
		}
		*port = (int)v;
	}
	return 0;
}

static SSL_CTX *client_ctx(const struct upstream_opts *o, char *err, size_t n)
{
	static const unsigned char alpn[] = "\x08http/1.1";
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (ctx == NULL)
		goto fail;
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1)
		goto fail;
	if (o->tls_insecure) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		if (o->ca_file != NULL && *o->ca_file != '\0') {
			if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1) {
				snprintf(err, n, "cannot load CA file %s: %s", o->ca_file,
					 ERR_reason_error_string(ERR_peek_last_error()) ?: "?");
				ERR_clear_error();
				SSL_CTX_free(ctx);
				return NULL;
			}
		} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			goto fail;
		}
	}
	if (SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1) != 0)
		goto fail;
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
fail:
	snprintf(err, n, "TLS client context: %s", ERR_reason_error_string(ERR_peek_last_error()) ?: "?");
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

struct upstream *upstream_get(struct ev_loop *loop, const char *url, const struct upstream_opts *o,
			      char *err, size_t n)
{
	static const struct upstream_opts none;
	struct upstream *u;
	char host[256], *key;
	bool tls;
	int port;

	if (o == NULL)
		o = &none;
	if (parse_url(url, &tls, host, sizeof(host), &port, err, n) < 0)
		return NULL;
	key = xasprintf("%s://%s:%d %d %s %u", tls ? "https" : "http", host, port, o->tls_insecure,
			o->ca_file ? o->ca_file : "", o->idle_ms);
	for (u = ups; u != NULL; u = u->next)
		if (u->loop == loop && strcmp(u->key, key) == 0) {
			free(key);
			return u;
		}
	if (!settings_ready) {
		llhttp_settings_init(&settings);
		settings.on_headers_complete = on_headers_complete;
		settings.on_body = on_body;
		settings.on_message_complete = on_message_complete;
		settings_ready = true;
	}
	u = xcalloc(1, sizeof(*u));
	u->loop = loop;
	u->key = key;
	u->tls = tls;
	u->port = port;
	u->tls_insecure = o->tls_insecure;
	u->idle_ms = o->idle_ms ? o->idle_ms : UP_IDLE_DEF_MS;
	snprintf(u->host, sizeof(u->host), "%s", host);
	if (strchr(host, ':') != NULL)
		snprintf(u->hosthdr, sizeof(u->hosthdr), "[%s]", host);
	else
		snprintf(u->hosthdr, sizeof(u->hosthdr), "%s", host);
	if (port != (tls ? 443 : 80))
		snprintf(u->hosthdr + strlen(u->hosthdr), sizeof(u->hosthdr) - strlen(u->hosthdr), ":%d", port);
	TAILQ_INIT(&u->conns);
	TAILQ_INIT(&u->idle);
	TAILQ_INIT(&u->queue);
	TAILQ_INIT(&u->later);
	if (dns_numeric(host, port, &u->addrs) == 0) /* never looked up, never stale */
		u->host_is_ip = strcasecmp(host, "localhost") != 0;
	if (tls && (u->ctx = client_ctx(o, err, n)) == NULL) {
		free(u->key);
		free(u);
		return NULL;
	}
	u->next = ups;
	ups = u;
	return u;
}

static bool header_ok(const struct upstream_header *h, size_t vlen)
{
	const char *s;

	if (h->name == NULL || *h->name == '\0')
		return false;
	for (s = h->name; *s; s++)
		if (*s <= ' ' || *s == ':' || *s == 0x7f)
			return false;
	return h->value == NULL || (memchr(h->value, '\r', vlen) == NULL && memchr(h->value, '\n', vlen) == NULL &&
				    memchr(h->value, '\0', vlen) == NULL);
}

struct upstream_req *upstream_request(struct upstream *u, const char *method, const char *target,
				      const struct upstream_header *h, size_t nh,
				      const void *body, size_t len, size_t max_body,
				      uint64_t timeout_ms, upstream_done_fn *done, void *arg)
{
	struct upstream_req *r = xcalloc(1, sizeof(*r));
	size_t i, cap, vlen;
	bool bad = false;
	char *o;

	r->u = u;
	r->max_body = max_body;
	r->done = done;
	r->arg = arg;
	r->head = strcmp(method, "HEAD") == 0;
	ev_timer_init(&r->deadline_w, deadline_cb, timeout_ms / 1000., 0.);
	r->deadline_w.data = r;
	ev_timer_init(&r->later_w, later_cb, 0., 0.);
	r->later_w.data = r;

	if (strpbrk(method, " \r\n") != NULL || *method == '\0' || strpbrk(target, " \r\n") != NULL)
		bad = true;
	cap = strlen(method) + strlen(target) + strlen(u->hosthdr) + 96 + len;
	for (i = 0; i < nh; i++)
		cap += strlen(h[i].name ? h[i].name : "") + h[i].value_len + 4;
	r->out = o = xmalloc(cap);
	o += sprintf(o, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, u->hosthdr);
	for (i = 0; i < nh && !bad; i++) {
		vlen = h[i].value != NULL ? h[i].value_len : 0;
		if (!header_ok(&h[i], vlen)) {
			bad = true;
			break;
		}
		o += sprintf(o, "%s: ", h[i].name);
		if (vlen > 0)
			memcpy(o, h[i].value, vlen);
		o += vlen;
		*o++ = '\r';
		*o++ = '\n';
	}
	if (len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0)
		o += sprintf(o, "Content-Length: %zu\r\n", len);
	o += sprintf(o, "Connection: keep-alive\r\n\r\n");
	if (len > 0)
		memcpy(o, body, len);
	o += len;
	r->outlen = (size_t)(o - r->out);

	if (bad) {
		log_warn("upstream %s: request refused: CR, LF or NUL in a header, method or target", u->key);
		req_answer_later(r, UPSTREAM_EPROTO);
		return r;
	}
	ev_timer_start(u->loop, &r->deadline_w);
	TAILQ_INSERT_TAIL(&u->queue, r, q);
	u->nqueued++;
	r->queued = true;
	pump(u);
	return r;
}

void upstream_cancel(struct upstream_req *r)
{
	struct upstream *u = r->u;
	struct uconn *c = r->c;

	req_unlink(r);
	if (r->later)
		TAILQ_REMOVE(&u->later, r, q);
	if (c != NULL) {
		conn_close(c); /* mid-exchange: never reused */
		pump(u);
	}
	req_free(r);
}

void upstream_counts(const struct upstream *u, unsigned *conns, unsigned *queued)
{
	if (conns != NULL)
		*conns = u->nconns;
	if (queued != NULL)
		*queued = u->nqueued;
}

void upstream_shutdown(void)
{
	struct upstream *u;
	struct upstream_req *r;
	struct uconn *c;

	while ((u = ups) != NULL) {
		ups = u->next;
		while ((c = TAILQ_FIRST(&u->conns)) != NULL) {
			r = c->req;
			if (r != NULL)
				req_unlink(r);
			conn_close(c);
			if (r != NULL)
				req_answer(r, UPSTREAM_ESHUTDOWN);
		}
		while ((r = TAILQ_FIRST(&u->queue)) != NULL) {
			req_unlink(r);
			req_answer(r, UPSTREAM_ESHUTDOWN);
		}
		while ((r = TAILQ_FIRST(&u->later)) != NULL)
			req_answer(r, r->err);
		dns_cancel(u->dns);
		SSL_CTX_free(u->ctx);
		free(u->key);
		free(u);
	}
}
