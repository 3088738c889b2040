/*
 * upstream.h - a non-blocking HTTP/1.1 client on a worker's libev loop, for
 * what rotord asks of other servers: the backend proxies (src/proxy/) and
 * JWKS key sets (jwks.c).
 *
 * An upstream is one origin (scheme, host, port) with a pool of keep-alive
 * connections, plain TCP or TLS through OpenSSL (https, with certificate and
 * host name verification unless the caller turns it off). A request is sent
 * on an idle pooled connection, or on a new one while the pool is below its
 * bound, or waits in the upstream's queue for one to come free: the number
 * of connections to an origin never exceeds UPSTREAM_CONNS_MAX per worker.
 *
 * Every request is answered through its callback exactly once: with the
 * response (any status), or with an error (timeout, refused, reset, closed
 * before the whole response, a body over the caller's limit, a malformed
 * response), unless the caller cancels it first, after which the callback is
 * never called. The deadline covers queueing, connecting, the TLS handshake,
 * sending and the whole response. A connection whose request timed out or
 * was cancelled mid-response is closed, never reused. A request sent on a
 * pooled connection that the server had closed (EOF, reset or EPIPE before
 * any byte of the response) is sent once more on a fresh connection: the
 * server may have read it, so a non-idempotent request may be processed
 * twice (as with Go's net/http).
 *
 * Nothing blocks the loop: a host name is looked up through dns.c when a
 * new connection needs its addresses, and the answer is kept 30 s, or until
 * each of its addresses failed to connect; one lookup per upstream at a
 * time, the requests that need it wait in the queue (under their
 * deadline); a failed lookup fails them with UPSTREAM_ECONNECT, unless an
 * earlier answer is at hand: that one is used a few seconds more.
 * Numeric addresses and "localhost" (127.0.0.1) are never looked up. A
 * failed connect moves on to the next address.
 *
 * Upstreams live for the worker's lifetime and are shared: asking twice for
 * the same origin gives the same pool. Make them after fork.
 */
#ifndef ROTOR_UPSTREAM_H
#define ROTOR_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct upstream;
struct upstream_req;

#define UPSTREAM_CONNS_MAX 64

enum upstream_err {
	UPSTREAM_OK = 0,       /* a response came: see status */
	UPSTREAM_ETIMEDOUT,    /* the deadline passed */
	UPSTREAM_ECONNECT,     /* could not connect (refused, unreachable, lookup failed) */
	UPSTREAM_ETLS,         /* the TLS handshake or certificate check failed */
	UPSTREAM_ECLOSED,      /* the connection closed or reset before the whole response */
	UPSTREAM_ETOOBIG,      /* the body was over the request's max_body */
	UPSTREAM_EPROTO,       /* not a well-formed HTTP/1.x response */
	UPSTREAM_ESHUTDOWN,    /* the worker is stopping */
};

struct upstream_resp {
	enum upstream_err err;
	int status;            /* HTTP status when err is UPSTREAM_OK, else 0 */
	const char *body;      /* the whole body (dechunked); valid only during the callback */
	size_t len;
};

typedef void upstream_done_fn(void *arg, const struct upstream_resp *r);

/* One header to send: name and value without CR or LF (the caller checks
 * values that come from clients; upstream_request refuses the request with
 * UPSTREAM_EPROTO if one has CR, LF or NUL). */
struct upstream_header {
	const char *name, *value;
	size_t value_len;
};

/* Where and how to connect: from a URL "http://host[:port]" or
 * "https://host[:port]" (a path, query or fragment is ignored here and
 * given to each request instead). */
struct upstream_opts {
	bool tls_insecure;     /* https without verifying the certificate */
	const char *ca_file;   /* PEM roots for https; NULL: the system's */
	uint32_t idle_ms;      /* close a pooled connection idle this long; 0: 60 s */
};

/* Make (or find) the upstream for URL's origin on LOOP; nothing is looked
 * up here. Returns NULL and a message in ERR (N bytes) when the URL is not
 * http(s)://host[:port]/... or the TLS context cannot be made. */
struct upstream *upstream_get(struct ev_loop *loop, const char *url, const struct upstream_opts *o,
			      char *err, size_t n);

/* Send METHOD ("GET", "POST") for TARGET (the path and query, e.g. from
 * upstream_url_target) with NH headers and BODY (LEN bytes; NULL/0 for
 * none). Host, Content-Length and Connection are added; Content-Type is the
 * caller's. The response body may be at most MAX_BODY bytes. TIMEOUT_MS
 * bounds the whole exchange. DONE(ARG, response) is called exactly once,
 * never from within this call. Returns a handle for upstream_cancel. */
struct upstream_req *upstream_request(struct upstream *u, const char *method, const char *target,
				      const struct upstream_header *h, size_t nh,
				      const void *body, size_t len, size_t max_body,
				      uint64_t timeout_ms, upstream_done_fn *done, void *arg);

/* Forget REQ: its callback will not be called, and everything it held is
 * freed (its connection closed if it was mid-exchange). REQ must not have
 * been answered yet. */
void upstream_cancel(struct upstream_req *req);

/* The path-and-query part of URL ("/" when it has none); a pointer into
 * URL. */
const char *upstream_url_target(const char *url);

/* How many connections UP holds (busy and idle), and how many requests
 * wait for one: for tests and metrics. */
void upstream_counts(const struct upstream *u, unsigned *conns, unsigned *queued);

/* Close every upstream's connections and fail their requests with
 * UPSTREAM_ESHUTDOWN (a worker that stops), then free them. */
void upstream_shutdown(void);

#endif
