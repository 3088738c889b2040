/*
 * sockjs.c - the SockJS transport (sockjs.md): Centrifugo v5's
 * /connection/sockjs, carrying the JSON client protocol as v5 did, so that
 * centrifuge-js 5 with sockjs-client works with transport 'sockjs'; and,
 * for the SockJS protocol test suite only, its four echo services
 * (sockjs.test_services_prefix), driven by the same code with an echo
 * application instead of a client session.
 *
 * This file answers the HTTP requests of each service's prefix: the
 * greeting, /info, the iframe page, every URL and method error, CORS,
 * caching and JSESSIONID headers (sockjs.md §1-§3), payload and callback
 * errors, and it decides where a session request is served. The sessions
 * themselves (receivers, buffering, framing, timeouts) are
 * sockjs_session.c's; the bytes of the protocol are sockjs_frame.c's.
 *
 * Where: a session's state lives in one worker, but its requests (polls,
 * streams reopened at the response limit, sends) come on any connection,
 * accepted by any worker. Each session request is handed to the worker
 * that owns the session id (handoff.h: a hash of the id over the workers
 * of the serving generation) unless this is it, or the request was handed
 * here already. When the owner is not running (it died and is being
 * replaced) or cannot be reached, the request is served here: a send then
 * finds no session (404) and a receiver opens a fresh one, which
 * sockjs-client takes for a lost session and reconnects from. WebSocket
 * sessions are their connection and stay where they were accepted.
 *
 * Applications: the client protocol (Centrifugo's JSON protocol: one
 * SockJS message from the client is one frame of newline-joined commands,
 * everything a flush sends is one SockJS message joined by '\n', a
 * disconnect is the close frame c[code,"reason"], no disconnect push, no
 * SockJS heartbeats unless sockjs.heartbeat_delay), or the suite's echo
 * and close services.
 */
#include "config.h"
#include "client.h"
#include "conf.h"
#include "conn.h"
#include "handoff.h"
#include "http.h"
#include "log.h"
#include "sockjs_frame.h"
#include "sockjs_session.h"
#include "transport.h"
#include "util.h"
#include "worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RESPONSE_LIMIT (128 * 1024)   /* streaming responses, as Centrifugo v5 */
#define TEST_RESPONSE_LIMIT 4096      /* the suite's services */
#define SEND_LIMIT_DEFAULT 65536      /* without websocket.message_size_limit */
#define YEAR_S 31536000

#define NO_CACHE "Cache-Control: no-store, no-cache, no-transform, must-revalidate, max-age=0\r\n"

/* One service: its sessions and settings, and the route of its prefix. */
struct service {
	struct sjs_service s;
	struct transport_route route;
};

enum { T_ECHO, T_CLOSE, T_WSOFF, T_COOKIE, T_COUNT };

static const char *const test_paths[T_COUNT] = {
	"/echo", "/close", "/disabled_websocket_echo", "/cookie_needed_echo",
};

static struct {
	struct worker *w;
	struct service main;          /* sockjs.handler_prefix */
	struct service test[T_COUNT]; /* sockjs.test_services_prefix */
	char *url;                    /* sockjs.url the page was made for */
	struct jw page;               /* the iframe page */
	char etag[SJF_ETAG_LEN + 1];
	struct jw hdr, body, d;       /* scratch */
	struct sjf_msgs msgs;
} X;

/* ---- the applications -------------------------------------------------------- */

/* The client protocol. */
static int c_send(void *t, struct rbuf *b, size_t off, size_t len)
{
	return sjs_send(t, b, off, len);
}

static int c_send_copy(void *t, const void *p, size_t n)
{
	return sjs_send_copy(t, p, n);
}

static void c_close(void *t, uint32_t code, const char *reason)
{
	sjs_close(t, code, reason);
}

/* answering: not wired; a SockJS session's late answers leave in the
 * order the flush meets its connection. */
static const struct transport_ops client_ops = { "sockjs", c_send, c_send_copy, c_close, NULL };

static void *c_open(struct sjs *s, const struct http_req *req)
{
	struct client_opts o = { .fmt = PROTO_JSON, .req = req };

	return client_new(req->conn->w, &client_ops, s, &o);
}

static void c_message(void *app, const char *p, size_t n)
{
	client_frame(app, p, n);
}

static void c_drain(void *app)
{
	client_shutdown(app);
}

static void c_gone(void *app)
{
	client_transport_closed(app);
}

static const struct sjs_app client_app = { c_open, c_message, c_drain, c_gone };

/* The suite's echo service (the state is the session) and its close
 * service (closes every session as it opens). */
static void *e_open(struct sjs *s, const struct http_req *req)
{
	return s;
}

static void e_message(void *app, const char *p, size_t n)
{
	sjs_send_copy(app, p, n);
}

static void e_drain(void *app)
{
	sjs_close(app, 3001, "shutdown");
}

static void e_gone(void *app)
{
}

static void *x_open(struct sjs *s, const struct http_req *req)
{
	sjs_close(s, 3000, "Go away!");
	return s;
}

static const struct sjs_app echo_app = { e_open, e_message, e_drain, e_gone };
static const struct sjs_app close_app = { x_open, e_message, e_drain, e_gone };

/* ---- headers ----------------------------------------------------------------- */

/* "Cache for a year" (sockjs.md §2.2). */
static void h_year(struct jw *h)
{
	char date[64];
	time_t t = time(NULL) + YEAR_S;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
	jw_lit(h, "Cache-Control: public, max-age=31536000\r\nExpires: ");
	jw_lit(h, date);
	jw_lit(h, "\r\n");
}

/* CORS for SockJS (§2.3): any Origin that client.allowed_origins lets
 * through gets itself back with credentials, a request without one gets
 * "*"; the response varies with it. */
static void h_cors(const struct http_req *req, struct jw *h)
{
	jw_lit(h, "Vary: Origin\r\n");
	transport_cors_any(req, h);
}

/* The request's own JSESSIONID cookie, else "dummy" (§2.4). */
static void h_cookie(const struct http_req *req, struct jw *h)
{
	const char *c = http_req_header(req, "cookie"), *v = NULL;
	size_t vn = 0;

	while (c && *c && !v) {
		c += strspn(c, " \t;");
		if (strncmp(c, "JSESSIONID=", 11) == 0) {
			v = c + 11;
			vn = strcspn(v, "; \t,\"\\");
		}
		c += strcspn(c, ";");
	}
	jw_lit(h, "Set-Cookie: JSESSIONID=");
	if (vn)
		jw_raw(h, v, vn);
	else
		jw_lit(h, "dummy");
	jw_lit(h, "; path=/\r\n");
}

/* Ends the header lines in X.hdr (a C string for http.c and stream.c). */
static const char *hdr_done(void)
{
	jw_raw(&X.hdr, "", 1);
	return X.hdr.buf;
}

/* Answers with STATUS, the headers in X.hdr and a text BODY (NULL: none). */
static void answer(struct http_req *req, int status, const char *ctype, const char *body, size_t n)
{
	http_respond_hdrs(req, status, ctype, hdr_done(), body, n);
}

/* 500 with one of the protocol's phrases. */
static void fail(struct http_req *req, const char *phrase)
{
	X.body.len = 0;
	jw_lit(&X.body, phrase);
	jw_lit(&X.body, "\n");
	answer(req, 500, SJF_CTYPE_TEXT, X.body.buf, X.body.len);
}

/* An OPTIONS preflight for a URL answering METHODS (§2.3). */
static void preflight(struct http_req *req, uint64_t methods, bool cookie)
{
	char allow[512];

	http_allow_header(methods, allow, sizeof(allow));
	X.hdr.len = 0;
	h_year(&X.hdr);
	jw_lit(&X.hdr, "Access-Control-Max-Age: 31536000\r\nAccess-Control-Allow-Methods: ");
	jw_lit(&X.hdr, allow + strlen("Allow: ")); /* the same list, ending in CRLF */
	h_cors(req, &X.hdr);
	if (cookie)
		h_cookie(req, &X.hdr);
	answer(req, 204, NULL, NULL, 0);
}

/* ---- the static pages ----------------------------------------------------------- */

static void info(struct http_req *req, struct service *sv)
{
	uint32_t entropy = 0;

	if (req->method == HTTP_OPTIONS) {
		preflight(req, HTTP_METHOD_BIT(HTTP_GET) | HTTP_METHOD_BIT(HTTP_OPTIONS), false);
		return;
	}
	if (util_random(&entropy, sizeof(entropy)) != RT_OK)
		entropy = (uint32_t)util_mono_ms();
	X.hdr.len = 0;
	jw_lit(&X.hdr, NO_CACHE);
	h_cors(req, &X.hdr);
	X.body.len = 0;
	sjf_info_json(&X.body, sv->s.websocket, sv->s.cookie, entropy);
	answer(req, 200, "application/json; charset=UTF-8", X.body.buf, X.body.len);
}

static void iframe(struct http_req *req)
{
	const char *inm = http_req_header(req, "if-none-match");

	X.hdr.len = 0;
	h_year(&X.hdr);
	jw_lit(&X.hdr, "ETag: ");
	jw_lit(&X.hdr, X.etag);
	jw_lit(&X.hdr, "\r\n");
	if (inm && strcmp(inm, X.etag) == 0)
		answer(req, 304, NULL, NULL, 0);
	else
		answer(req, 200, "text/html; charset=UTF-8", X.page.buf, X.page.len);
}

/* ---- session requests ------------------------------------------------------------ */

static size_t send_limit(void)
{
	long long n = json_integer_value(conf_get(X.w->conf, "websocket.message_size_limit"));

	return n > 0 ? (size_t)n : SEND_LIMIT_DEFAULT;
}

/* Decodes the messages of a send (xhr_send, jsonp_send) into X.msgs;
 * answers 413/500 itself and returns false when they are not acceptable. */
static bool decode_send(struct http_req *req, enum sjf_transport t)
{
	const char *p = req->body, *ct = http_req_header(req, "content-type");
	size_t n = req->body_len;
	enum sjf_decode_rc rc;

	if (n > send_limit()) {
		answer(req, 413, SJF_CTYPE_TEXT, "Payload too large.\n", 19);
		return false;
	}
	if (t == SJF_T_JSONP_SEND && ct && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0) {
		X.d.len = 0;
		if (sjf_form_d(p, n, &X.d) != SJF_FORM_OK) {
			fail(req, SJF_ERR_PAYLOAD);
			return false;
		}
		p = X.d.buf;
		n = X.d.len;
	}
	rc = sjf_decode(p, n, 0, &X.msgs);
	if (rc != SJF_DEC_OK) {
		fail(req, sjf_decode_error(rc));
		return false;
	}
	return true;
}

static void session(struct http_req *req, struct service *sv, const struct sjf_route *r)
{
	enum sjf_transport t = r->transport;
	unsigned fl = sjf_transport_flags(t);
	struct worker *w = req->conn->w;
	char cb[SJF_CALLBACK_MAX + 1];
	size_t cbn = 0;
	unsigned slot;
	int status;

	if (t == SJF_T_WEBSOCKET) {
		sjs_websocket(req, &sv->s, false);
		return;
	}
	if (req->method == HTTP_OPTIONS) {
		preflight(req, sjf_methods(r), sv->s.cookie);
		return;
	}
	X.hdr.len = 0;
	jw_lit(&X.hdr, NO_CACHE);
	if (fl & SJF_TF_CORS)
		h_cors(req, &X.hdr);
	if (sv->s.cookie)
		h_cookie(req, &X.hdr);
	if (t == SJF_T_JSONP)
		jw_lit(&X.hdr, "X-Content-Type-Options: nosniff\r\n");
	if (fl & SJF_TF_CALLBACK) {
		switch (sjf_query_callback(req->query, strlen(req->query), cb, &cbn)) {
		case SJF_CB_MISSING:
			fail(req, SJF_ERR_CALLBACK_REQUIRED);
			return;
		case SJF_CB_INVALID:
			fail(req, SJF_ERR_CALLBACK_INVALID);
			return;
		case SJF_CB_OK:
			break;
		}
	}
	if ((fl & SJF_TF_SEND) && !decode_send(req, t))
		return;
	/* The owner serves it; here only if this is the owner, or the
	 * request came from another worker already, or the owner is out of
	 * reach (then as if it had lost the session). */
	if (!req->handed && handoff_owner(w, r->session, r->session_len, &slot) == RT_OK &&
	    slot != w->bus_slot) {
		int rc = handoff_request(req, slot);

		if (rc == RT_OK || rc == RT_AGAIN)
			return;
		log_debug("sockjs %s: session %.*s served here: its owner (bus slot %u) is out of reach",
			  sv->s.name, (int)r->session_len, r->session, slot);
	}
	if (fl & SJF_TF_SEND) {
		if (sjs_deliver(&sv->s, r->session, r->session_len, &X.msgs) != RT_OK)
			answer(req, 404, SJF_CTYPE_TEXT, "Not Found\n", 10);
		else if (t == SJF_T_JSONP_SEND)
			answer(req, 200, SJF_CTYPE_TEXT, "ok", 2);
		else
			answer(req, 204, SJF_CTYPE_TEXT, NULL, 0);
		return;
	}
	status = sjs_receive(req, &sv->s, r->session, r->session_len, t, cb, cbn, hdr_done());
	if (status)
		answer(req, status, SJF_CTYPE_TEXT, http_reason(status), strlen(http_reason(status)));
}

/* Every request under a service's prefix. */
static void handle(struct http_req *req, void *arg)
{
	struct service *sv = arg;
	size_t plen = sv->route.path ? strlen(sv->route.path) : 0;
	struct sjf_route r;
	uint64_t methods;

	X.hdr.len = 0;
	if (!plen || strncmp(req->path, sv->route.path, plen) != 0 ||
	    sjf_route(req->path + plen, strlen(req->path + plen), &r) == SJF_NOT_FOUND ||
	    (r.kind == SJF_RAW_WEBSOCKET && !sv->s.raw_websocket) ||
	    (r.transport == SJF_T_WEBSOCKET && !sv->s.websocket)) {
		answer(req, 404, SJF_CTYPE_TEXT, "Not Found\n", 10);
		return;
	}
	methods = sjf_methods(&r);
	if (!(methods & HTTP_METHOD_BIT(req->method))) {
		char allow[512];

		/* 405 with Allow, no Content-Type, no body (§1). */
		http_allow_header(methods, allow, sizeof(allow));
		http_respond_hdrs(req, 405, NULL, allow, NULL, 0);
		return;
	}
	switch (r.kind) {
	case SJF_GREETING:
		answer(req, 200, SJF_CTYPE_TEXT, SJF_GREETING_BODY, sizeof(SJF_GREETING_BODY) - 1);
		break;
	case SJF_INFO:
		info(req, sv);
		break;
	case SJF_IFRAME:
		iframe(req);
		break;
	case SJF_RAW_WEBSOCKET:
		sjs_websocket(req, &sv->s, true);
		break;
	case SJF_SESSION:
		session(req, sv, &r);
		break;
	default:
		answer(req, 404, SJF_CTYPE_TEXT, "Not Found\n", 10);
		break;
	}
}

/* ---- set-up ------------------------------------------------------------------------ */

/* The iframe page and its ETag for URL, made again only when it changes. */
static void make_page(const char *url)
{
	if (X.url && strcmp(X.url, url) == 0)
		return;
	free(X.url);
	X.url = xstrdup(url);
	X.page.len = 0;
	sjf_iframe_page(&X.page, url, strlen(url));
	if (sjf_etag(X.page.buf, X.page.len, X.etag) != RT_OK)
		snprintf(X.etag, sizeof(X.etag), "\"%08x\"", (unsigned)X.page.len);
}

static void configure(struct worker *w)
{
	const struct conf *k = w->conf;
	bool on = json_is_true(conf_get(k, "sockjs.enabled"));
	const char *prefix = json_string_value(conf_get(k, "sockjs.handler_prefix"));
	const char *tp = json_string_value(conf_get(k, "sockjs.test_services_prefix"));
	const json_t *hb = conf_get(k, "sockjs.heartbeat_delay");
	long long ms = 0;

	X.w = w;
	transport_route_set(&X.main.route, "sockjs.handler_prefix", on ? prefix : NULL, HTTP_ROUTE_PREFIX,
			    HTTP_METHODS_ANY, handle, &X.main);
	for (int i = 0; i < T_COUNT; i++) {
		char *path = tp && *tp ? xasprintf("%s%s", tp, test_paths[i]) : NULL;

		transport_route_set(&X.test[i].route, "sockjs.test_services_prefix", path, HTTP_ROUTE_PREFIX,
				    HTTP_METHODS_ANY, handle, &X.test[i]);
		free(path);
	}
	make_page(json_string_value(conf_get(k, "sockjs.url")));
	if (json_is_string(hb) && conf_duration_ms(json_string_value(hb), &ms) != RT_OK)
		ms = 0;
	sjs_set_heartbeat(ms);
}

static void init(struct worker *w)
{
	X.main.s = (struct sjs_service){
		.name = "sockjs", .app = &client_app, .response_limit = RESPONSE_LIMIT, .join = true,
		.websocket = true,
	};
	for (int i = 0; i < T_COUNT; i++) {
		X.test[i].s = (struct sjs_service){
			.name = test_paths[i] + 1, .app = i == T_CLOSE ? &close_app : &echo_app,
			.response_limit = TEST_RESPONSE_LIMIT, .websocket = i != T_WSOFF,
			.raw_websocket = i != T_WSOFF, .cookie = i == T_COOKIE,
		};
		free(X.test[i].route.path); /* a new route table (tests) */
		X.test[i].route.path = NULL;
	}
	free(X.main.route.path);
	X.main.route.path = NULL;
	sjs_init(w);
	configure(w);
}

static void flush(struct worker *w)
{
	sjs_flush(w);
}

static void drain(struct worker *w)
{
	sjs_drain();
}

const struct transport_kind transport_sockjs = {
	.name = "sockjs",
	.init = init,
	.reconfigure = configure,
	.flush = flush,
	.drain = drain,
};
