/*
 * uni.c - Centrifugo's unidirectional transports (client-protocol.md §8.7):
 * uni_websocket, uni_sse and uni_http_stream, for clients without an SDK.
 * The client sends one bare ConnectRequest and then only listens: its
 * session (CLIENT_UNI, JSON) is connected with that request, and everything
 * the session sends afterwards leaves as a bare Push, the ping {} included:
 * on uni_websocket one push per text frame (uni_websocket.join_push_messages:
 * '\n'-joined), on uni_sse "data: <push>\n\n" after a first "\r\n", on
 * uni_http_stream each push followed by "\n".
 *
 * Bare pushes from shared bytes: the session and the fan-out (hub.c) encode
 * a push once as Reply{push}, {"push":{...}}, and queue the same rbuf on
 * every subscriber. This file queues that same rbuf, narrowed to the Push
 * inside (8 bytes in, one byte shorter at the end): no copy, no encoding
 * per subscriber. Any other message (the ping {}) passes as it is.
 *
 * Connecting: the request is checked first (Centrifugo's 400 and 413), so
 * that a malformed one never makes a session. On the HTTP ones the session
 * is connected before the response starts, so that
 * <transport>.connect_code_to_http_response can answer a refused connect
 * with a status of its own (internal/tools/code_translate.go); what the
 * session sends meanwhile (the connect push, or the disconnect push) waits
 * in the early list of its struct uni and goes first on the stream. Without
 * that option a refused connect streams its disconnect push and ends (the
 * session maps connect errors to disconnect codes itself:
 * client.connect_code_to_unidirectional_disconnect).
 *
 * A disconnect is the bare disconnect push, then the end of the response
 * (the connection kept alive for a next request, as Go's server does) or,
 * on uni_websocket, a close frame with the code and reason
 * (uni_websocket.disable_disconnect_push leaves out the push,
 * disable_closing_handshake the close frame). uni_websocket sends ping
 * frames at client.ping_interval (25 s when pings are off) besides the {}
 * pings, as Centrifugo does, and ignores every message after the first.
 *
 * Each connection owns one struct uni: its session and its WebSocket or
 * stream; it is freed when the WebSocket or the stream is gone, whoever
 * ended it, or at once when the connect is answered with a status.
 */
#include "config.h"
#include "client.h"
#include "conf.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "proto.h"
#include "stream.h"
#include "transport.h"
#include "util.h"
#include "worker.h"
#include "ws.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum uni_kind { UNI_WS, UNI_SSE, UNI_HTTP_STREAM, UNI_KINDS };

static const char *const names[UNI_KINDS] = { "uni_websocket", "uni_sse", "uni_http_stream" };

struct uni {
	struct client *c;
	struct ws *ws;              /* uni_websocket */
	struct hs *hs;              /* uni_sse, uni_http_stream: NULL while connecting */
	struct rlist *early;        /* bare pushes the session sent while connecting */
	uint8_t kind;               /* enum uni_kind */
	bool asked;                 /* uni_websocket: the ConnectRequest came */
	bool ended;                 /* the session ended while connecting */
};

static struct {
	struct transport_route route[UNI_KINDS];
	struct ws_limits ws_limits; /* uni_websocket.*: its connections follow it */
	bool ws_no_push;            /* uni_websocket.disable_disconnect_push */
	bool ws_no_handshake;       /* uni_websocket.disable_closing_handshake */
	struct jw buf;              /* scratch */
} U;

/* ---- the session's transport ------------------------------------------------ */

#define PUSH_OPEN "{\"push\":"

/* Narrows [*OFF, *OFF + *LEN) of P from a Reply{push} to the Push inside;
 * other messages (the ping {}) are left as they are. */
static void bare(const char *p, size_t *off, size_t *len)
{
	const size_t n = sizeof(PUSH_OPEN) - 1;

	if (*len > n && memcmp(p + *off, PUSH_OPEN, n) == 0 && p[*off + *len - 1] == '}') {
		*off += n;
		*len -= n + 1;
	}
}

static int t_send(void *t, struct rbuf *b, size_t off, size_t len)
{
	struct uni *u = t;

	bare(b->data, &off, &len);
	if (u->ws)
		return ws_send(u->ws, b, off, len);
	if (u->hs)
		return hs_send(u->hs, b, off, len);
	if (u->ended)
		return RT_CLOSED;
	if (len)
		rlist_push(&u->early, b, off, len);
	return RT_OK;
}

static int t_send_copy(void *t, const void *p, size_t n)
{
	struct rbuf *b = rbuf_copy(p, n);
	int rc = t_send(t, b, 0, n);

	rbuf_unref(b);
	return rc;
}

/* A disconnect: the disconnect push (not for 3000, the transport's own
 * end), then the end of the response, or the close frame. */
static void t_close(void *t, uint32_t code, const char *reason)
{
	struct uni *u = t;

	if (code != 3000 && !(u->ws && U.ws_no_push)) {
		U.buf.len = 0;
		if (proto_push_disconnect(&U.buf, PROTO_JSON, code, reason) == RT_OK)
			t_send_copy(u, U.buf.buf, U.buf.len);
	}
	if (u->ws) {
		if (code == 3000 || U.ws_no_handshake)
			ws_end(u->ws);
		else
			ws_close(u->ws, code, reason);
	} else if (u->hs) {
		hs_end(u->hs, true);
	} else {
		u->ended = true; /* the stream, if any, ends as soon as it starts */
	}
}

static const struct transport_ops ops[UNI_KINDS] = {
	{ "uni_websocket", t_send, t_send_copy, t_close, NULL }, /* no commands to answer */
	{ "uni_sse", t_send, t_send_copy, t_close, NULL },
	{ "uni_http_stream", t_send, t_send_copy, t_close, NULL },
};

static struct uni *uni_new(struct worker *w, enum uni_kind kind, const struct http_req *req)
{
	struct uni *u = xcalloc(1, sizeof(*u));
	struct client_opts o = { .fmt = PROTO_JSON, .flags = CLIENT_UNI, .req = req };

	u->kind = (uint8_t)kind;
	u->c = client_new(w, &ops[kind], u, &o);
	return u;
}

/* The transport is gone: the session ends, U is freed. */
static void uni_free(struct uni *u)
{
	client_transport_closed(u->c);
	rlist_free(&u->early);
	free(u);
}

/* ---- connect requests --------------------------------------------------------- */

/* Whether P[0..N) is a ConnectRequest as Centrifugo's JSON parser takes
 * one: an object (unknown fields ignored) or null; not blank. */
static bool request_ok(const char *p, size_t n)
{
	struct cmd_batch b;
	size_t i = 0;
	bool ok;

	while (i < n && p[i] && strchr(" \t\r\n", p[i]))
		i++;
	if (i == n)
		return false; /* Go's parser: unexpected end of input */
	ok = proto_decode_connect(PROTO_JSON, p, n, &b) == RT_OK;
	proto_batch_free(&b);
	return ok;
}

/* ---- uni_websocket ------------------------------------------------------------- */

static void ws_message(struct ws *ws, void *ud, const char *data, size_t len)
{
	struct uni *u = ud;

	if (u->asked)
		return; /* unidirectional: nothing after the request counts */
	u->asked = true;
	if (!request_ok(data, len)) {
		/* As Centrifugo: a close frame, no disconnect push. */
		log_debug("uni_websocket: malformed connect request");
		if (U.ws_no_handshake)
			ws_end(ws);
		else
			ws_close(ws, 3501, "bad request");
		return;
	}
	client_uni_connect(u->c, data, len, NULL);
}

static void ws_drain(struct ws *ws, void *ud)
{
	struct uni *u = ud;

	client_shutdown(u->c);
}

static void ws_slow(struct ws *ws, void *ud)
{
	struct uni *u = ud;

	client_disconnect(u->c, 3008, "slow");
}

static void ws_gone(struct ws *ws, void *ud)
{
	uni_free(ud);
}

static const struct ws_handler ws_handler = {
	.on_message = ws_message, .on_drain = ws_drain, .on_slow = ws_slow, .on_close = ws_gone,
};

static void ws_open(struct http_req *req, void *arg)
{
	static const struct ws_upgrade up = { .admit = true, .frame_ping = true, .deflate = true,
					       .limits = &U.ws_limits };
	struct jw connect = { 0 };
	struct ws_open_info info;
	struct uni *u;
	struct ws *ws;
	int status;

	/* Centrifugo's order: the connection limit, the request, the upgrade. */
	if ((status = transport_admit(req, false)) != 0) {
		transport_refuse(req, status, NULL, "connection limit reached");
		return;
	}
	if (transport_query_get(req->query, "cf_connect", &connect) && connect.len > 0 &&
	    !request_ok(connect.buf, connect.len)) {
		jw_free(&connect);
		U.buf.len = 0;
		transport_cors(req, &U.buf);
		jw_lit(&U.buf, "X-Content-Type-Options: nosniff\r\n");
		jw_raw(&U.buf, "", 1);
		log_debug("uni_websocket: malformed cf_connect");
		http_respond_hdrs(req, 400, "text/plain; charset=utf-8", U.buf.buf, "invalid connect request\n", 24);
		return;
	}
	if (!(ws = ws_upgrade(req, &up, &info))) {
		jw_free(&connect);
		return;
	}
	u = uni_new(req->conn->w, UNI_WS, req);
	u->ws = ws;
	ws_set_handler(ws, &ws_handler, u);
	if (connect.len > 0) {
		u->asked = true;
		client_uni_connect(u->c, connect.buf, connect.len, NULL);
	}
	jw_free(&connect);
}

/* ---- uni_sse, uni_http_stream -------------------------------------------------- */

static void s_drain(struct hs *s, void *ud)
{
	struct uni *u = ud;

	client_shutdown(u->c);
}

static void s_slow(struct hs *s, void *ud)
{
	struct uni *u = ud;

	client_disconnect(u->c, 3008, "slow");
}

static void s_gone(struct hs *s, void *ud)
{
	uni_free(ud);
}

static const struct hs_ops stream_ops[UNI_KINDS] = {
	[UNI_SSE] = { hs_frame_sse, s_drain, s_slow, s_gone },
	[UNI_HTTP_STREAM] = { hs_frame_lines, s_drain, s_slow, s_gone },
};

/* The value of SECTION.NAME in K. */
static const json_t *conf_of(const struct conf *k, const char *section, const char *name)
{
	char key[96];

	snprintf(key, sizeof(key), "%s.%s", section, name);
	return conf_get(k, key);
}

/* Answers a connect refused with CODE (REASON: its text) as SECTION's
 * connect_code_to_http_response says: the status and body of the first
 * transform for CODE (an empty body: REASON), else 500 "Internal Server
 * Error", like internal/tools/code_translate.go. */
static void answer_code(struct http_req *req, const struct conf *k, const char *section, uint32_t code,
			const char *reason)
{
	const json_t *list = conf_of(k, section, "connect_code_to_http_response.transforms"), *t;
	int status = 500;
	const char *body = http_reason(500);
	size_t i;

	json_array_foreach(list, i, t) {
		const json_t *to = json_object_get(t, "to");
		const char *b = json_string_value(json_object_get(to, "body"));

		if (json_integer_value(json_object_get(t, "code")) != (json_int_t)code)
			continue;
		status = (int)json_integer_value(json_object_get(to, "status_code"));
		body = b && *b ? b : reason ? reason : "";
		break;
	}
	log_debug("%s: connect refused with %u; answered %d", section, code, status);
	U.buf.len = 0;
	transport_cors(req, &U.buf);
	jw_raw(&U.buf, "", 1);
	http_respond_hdrs(req, status, *body ? "text/plain; charset=utf-8" : NULL, U.buf.buf, body, strlen(body));
}

static void stream_open(struct http_req *req, void *arg)
{
	enum uni_kind kind = (enum uni_kind)(uintptr_t)arg;
	const char *section = names[kind];
	struct worker *w = req->conn->w;
	const struct conf *k = w->conf;
	struct jw query = { 0 }, head = { 0 };
	const char *data = "", *reason = NULL;
	size_t len = 0;
	uint32_t code;
	struct uni *u;
	int status;

	/* Centrifugo's order: the connection limit, the method, the request. */
	if ((status = transport_admit(req, false)) != 0) {
		transport_answer(req, status, NULL);
		return;
	}
	if (req->method == HTTP_OPTIONS) {
		transport_preflight(req);
		return;
	}
	if (req->method == HTTP_GET) {
		/* absent or empty: an empty request */
		if (transport_query_get(req->query, "cf_connect", &query) && query.len > 0) {
			data = query.buf;
			len = query.len;
			status = request_ok(data, len) ? 0 : 400;
		}
	} else {
		data = req->body;
		len = req->body_len;
		char key[64];

		snprintf(key, sizeof(key), "%s.max_request_body_size", section);
		status = len > transport_body_limit(k, key) ? 413 : request_ok(data, len) ? 0 : 400;
	}
	if (status) {
		log_debug("%s: %s connect request; answered %d", section, status == 413 ? "too large a" : "malformed",
			  status);
		jw_free(&query);
		transport_answer(req, status, NULL);
		return;
	}

	u = uni_new(w, kind, req);
	code = client_uni_connect(u->c, data, len, &reason);
	jw_free(&query);
	if (code && json_is_true(conf_of(k, section, "connect_code_to_http_response.enabled"))) {
		answer_code(req, k, section, code, reason);
		uni_free(u);
		return;
	}
	hs_headers(req, &head);
	jw_raw(&head, "", 1);
	u->hs = hs_start(req, kind == UNI_SSE ? "text/event-stream; charset=utf-8" : "text/plain; charset=utf-8",
			 head.buf, kind == UNI_SSE ? "\r\n" : NULL, kind == UNI_SSE ? 2 : 0, (size_t)k->queue_max_size,
			 &stream_ops[kind], u);
	jw_free(&head);
	/* What the session sent while connecting goes first (hs_send may end
	 * the stream as slow: then the rest is refused). */
	if (u->early) {
		struct rlist *early = u->early;

		u->early = NULL;
		for (uint32_t i = 0; i < early->n; i++)
			hs_send(u->hs, early->v[i].b, early->v[i].off, early->v[i].len);
		rlist_free(&early);
	}
	if (u->ended)
		hs_end(u->hs, true);
}

/* ---- set-up --------------------------------------------------------------------- */

static void route(const struct conf *k, enum uni_kind kind, uint64_t methods, http_handler_fn fn)
{
	char key[64];
	const char *want = NULL;

	snprintf(key, sizeof(key), "%s.handler_prefix", names[kind]);
	if (json_is_true(conf_of(k, names[kind], "enabled")))
		want = json_string_value(conf_get(k, key));
	transport_route_set(&U.route[kind], key, want, HTTP_ROUTE_EXACT, methods, fn, (void *)(uintptr_t)kind);
}

static void configure(struct worker *w)
{
	const struct conf *k = w->conf;
	struct ws_limits *l = &U.ws_limits;

	route(k, UNI_WS, HTTP_METHOD_BIT(HTTP_GET), ws_open);
	route(k, UNI_SSE, HTTP_METHOD_BIT(HTTP_GET) | HTTP_METHOD_BIT(HTTP_POST), stream_open);
	route(k, UNI_HTTP_STREAM, HTTP_METHOD_BIT(HTTP_POST) | HTTP_METHOD_BIT(HTTP_OPTIONS), stream_open);
	ws_limits_read(l, k, "uni_websocket");
	/* Centrifugo: ping frames at the protocol's ping interval, pongs within
	 * its pong timeout; 25 s and 10 s when those are off. */
	l->ping_interval = k->ping_interval_ms > 0 ? k->ping_interval_ms : WS_PING_INTERVAL_MS;
	l->pong_timeout = k->pong_timeout_ms > 0 ? k->pong_timeout_ms : WS_PONG_TIMEOUT_MS;
	l->one_per_frame = !json_is_true(conf_get(k, "uni_websocket.join_push_messages"));
	U.ws_no_push = json_is_true(conf_get(k, "uni_websocket.disable_disconnect_push"));
	U.ws_no_handshake = json_is_true(conf_get(k, "uni_websocket.disable_closing_handshake"));
}

static void init(struct worker *w)
{
	for (int i = 0; i < UNI_KINDS; i++) { /* a new route table (tests) */
		free(U.route[i].path);
		U.route[i].path = NULL;
	}
	configure(w);
}

const struct transport_kind transport_uni = {
	.name = "uni",
	.init = init,
	.reconfigure = configure,
};
