/*
 * http.h - the worker's HTTP/1.1 server (llhttp, strict mode): keep-alive,
 * pipelining, limits and timeouts from the config, and a route table that
 * the server API, the WebSocket upgrade and /metrics plug into.
 */
#ifndef ROTOR_HTTP_H
#define ROTOR_HTTP_H

#include "rotor.h"
#include <llhttp.h> /* enum llhttp_method: HTTP_GET, HTTP_POST... */
#include <stdbool.h>
#include <stdint.h>

struct worker;
struct conn;
struct conn_ops;
struct jw;

/* Graceful stop: how long an idle keep-alive connection stays open for one
 * last request (answered with Connection: close) before it is closed. */
#define HTTP_DRAIN_IDLE_MS 1000
/* And how long one that has not carried a request yet waits for its first. */
#define HTTP_DRAIN_NEW_MS 5000

struct http_header {
	const char *name;  /* as sent; NUL-terminated */
	const char *value; /* surrounding whitespace removed; NUL-terminated */
};

/* A complete request, as a handler sees it. Everything it points to lives
 * until the handler responds (or hijacks) or the connection closes. */
struct http_req {
	struct conn *conn;
	int method;                /* llhttp's enum llhttp_method (HTTP_GET...) */
	const char *method_name;   /* "GET" */
	int version_minor;         /* HTTP/1.<minor>: 0 or 1 */
	const char *target;        /* the request-target as sent */
	const char *path;          /* its path: no query, no scheme://authority */
	const char *query;         /* after '?', or "" */
	const struct http_header *headers;
	size_t nheaders;
	const char *body;          /* the whole body (chunked is decoded), NUL-terminated */
	size_t body_len;
	bool upgrade;              /* Connection: upgrade with Upgrade: (or CONNECT) */
	bool handed;               /* another worker read it and handed the connection
	                            * to this one (handoff.c): serve it here */
	void *arg;                 /* the route's ARG */
};

/* A handler answers with http_respond*() before returning or later (the
 * connection then waits, reading no further requests), or takes the
 * connection over with http_hijack. */
typedef void (*http_handler_fn)(struct http_req *req, void *arg);

/* Route flags. */
#define HTTP_ROUTE_EXACT 0x0  /* the path equals PATH */
#define HTTP_ROUTE_PREFIX 0x1 /* the path starts with PATH (longest wins; exact first) */
/* An internal endpoint (the server API, /health): served only by the
 * internal listener when there is one (conf_internal_listener), which
 * serves nothing else; with one listener, every route is on it. */
#define HTTP_ROUTE_INTERNAL 0x2

/* Method masks, bits of llhttp's method numbers (HTTP_GET...). */
#define HTTP_METHOD_BIT(m) (UINT64_C(1) << (m))
#define HTTP_METHODS_ANY UINT64_MAX

/* Sets up the route table from W's config (health.enabled ->
 * health.handler_prefix answers 200 {} to any method). Once per worker. */
void http_init(struct worker *w);
/* Re-reads the routes that http.c itself owns from W's (new) config; limits
 * and timeouts are read from w->conf as requests arrive, so open connections
 * pick them up. */
void http_reconfigure(struct worker *w);

/* Adds a route; PATH is copied. Returns RT_OK, or RT_INVAL if the same path
 * and flags are taken. A request for a known path with a method outside
 * METHODS gets 405 with Allow; an unknown path 404. */
int http_route_add(const char *path, unsigned flags, uint64_t methods,
		   http_handler_fn fn, void *arg);
/* Removes the route with PATH and FLAGS if there is one. */
void http_route_remove(const char *path, unsigned flags);
/* Drops every route (worker exit, tests). */
void http_routes_free(void);

/* Serves a new client socket FD (connected, nonblocking, close-on-exec),
 * accepted on the internal listener when INTERNAL; the fd belongs to the
 * HTTP layer from now on. TLS when the listener has it (tls.h). */
void http_accept(struct worker *w, int fd, bool internal);

/* Serves a client socket FD that another worker read DATA[0..LEN) from and
 * handed over (handoff.c): DATA, the request it parsed as
 * http_req_serialize wrote it and the bytes that followed it, is parsed
 * first, as if just read, with that request marked handed. */
void http_accept_handed(struct worker *w, int fd, const char *data, size_t len);

/* Takes a connection that another layer hijacked back, as kept alive
 * after a response: it waits for the client's next request (idle
 * timeout). Bytes the conn holds unread are parsed as that request. */
void http_adopt(struct conn *c);

/* Graceful stop: idle keep-alive connections close now, requests in flight
 * get their response with Connection: close, then their connection closes
 * (other layers' connections get their on_drain). */
void http_drain(struct worker *w);

/* The value of the first header named NAME (case-insensitive), or NULL. */
const char *http_req_header(const struct http_req *req, const char *name);

/* The credentials of Authorization value H for SCHEME, as Centrifugo
 * reads "apikey KEY" and "token T": exactly two whitespace-separated
 * fields, the first SCHEME in any case. Sets *CRED (pointing into H) and
 * *LEN and returns true, or returns false. */
bool http_auth_credentials(const char *h, const char *scheme, const char **cred, size_t *len);

/* Answers REQ: status line, Content-Type (if CTYPE), Content-Length,
 * Connection, then EXTRA (NULL, or complete "Name: value\r\n" lines) and
 * the body (left out for HEAD). The bytes are queued and go out at the
 * flush point. REQ is gone afterwards. Returns RT_OK, or RT_CLOSED if the
 * connection is gone (the response is dropped). */
int http_respond(struct http_req *req, int status, const char *ctype,
		 const void *body, size_t len);
int http_respond_hdrs(struct http_req *req, int status, const char *ctype,
		      const char *extra, const void *body, size_t len);

/* Tells a handler that answers later that REQ's connection closed before it
 * answered: FN(ARG) runs from conn_close, after which REQ is gone. */
void http_req_on_abort(struct http_req *req, void (*fn)(void *arg), void *arg);

/* Appends REQ to OUT as a complete HTTP/1.x request that parses back to the
 * same method, target, version, headers and body: the request line, the
 * header fields as received except Content-Length, Transfer-Encoding and
 * Expect (the body is complete and is sent with a Content-Length of its
 * decoded size), then the body. */
void http_req_serialize(const struct http_req *req, struct jw *out);

/* The bytes the client sent after REQ that this worker has already read
 * (pipelined requests), *LEN of them; valid until the handler returns. */
const char *http_req_rest(const struct http_req *req, size_t *len);

/* For a handler that must not act while REQ's connection still has
 * answers to earlier pipelined requests to write (handing the connection
 * to another process): if output is queued, arranges for the route's
 * handler to run again with REQ once it is written and returns true (the
 * handler then returns without answering); else returns false. */
bool http_req_defer_until_flushed(struct http_req *req);

/* Takes the connection over (WebSocket upgrade, streaming transports): from
 * now on it belongs to OPS/UD, without deadlines, and bytes the client sent
 * after this request go to OPS->on_read. REQ stays readable until the
 * handler returns; nothing has been answered (queue a 101 yourself). */
struct conn *http_hijack(struct http_req *req, const struct conn_ops *ops, void *ud);

/* "Allow: GET, POST\r\n" for a mask of HTTP_METHOD_BIT()s, into BUF (cut
 * short if SIZE is too small; 512 holds every method). */
void http_allow_header(uint64_t methods, char *buf, size_t size);

/* The reason phrase of STATUS ("Not Found"), "Unknown" if unknown. */
const char *http_reason(int status);

#endif
