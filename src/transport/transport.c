/*
 * transport.c - the list of transports and what they share (transport.h).
 *
 * The list is the one place that names every transport; the worker walks
 * it through transport_init, transport_reconfigure and transport_flush.
 * Order matters only at the flush point: transports that feed the shared
 * HTTP stream writer (stream.c) frame into it before it frames onto the
 * connections, so "stream" comes after them.
 */
#include "config.h"
#include "transport.h"
#include "conf.h"
#include "conn.h"
#include "log.h"
#include "node.h"
#include "util.h"
#include "worker.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct transport_kind transport_ws, transport_stream;
extern const struct transport_kind transport_websocket, transport_emulation, transport_uni, transport_sockjs;

/* The layers first (their settings are read before a transport opens a
 * connection), and at the flush point after the transports that feed them. */
static const struct transport_kind *const kinds[] = {
	&transport_websocket,
	&transport_emulation,
	&transport_uni,
	&transport_sockjs,
	&transport_ws,
	&transport_stream,
};

void transport_init(struct worker *w)
{
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(kinds); i++)
		if (kinds[i]->init)
			kinds[i]->init(w);
}

void transport_reconfigure(struct worker *w)
{
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(kinds); i++)
		if (kinds[i]->reconfigure)
			kinds[i]->reconfigure(w);
}

void transport_flush(struct worker *w)
{
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(kinds); i++)
		if (kinds[i]->flush)
			kinds[i]->flush(w);
}

void transport_drain(struct worker *w)
{
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(kinds); i++)
		if (kinds[i]->drain)
			kinds[i]->drain(w);
}

/* ---- admission ---------------------------------------------------------- */

/* Case-insensitive glob: '*' any run, '?' any one byte. */
static bool glob_match(const char *pat, const char *s)
{
	const char *star = NULL, *resume = NULL;

	while (*s) {
		if (*pat == '*') {
			star = pat++;
			resume = s;
		} else if (*pat && (*pat == '?' || tolower((unsigned char)*pat) == tolower((unsigned char)*s))) {
			pat++;
			s++;
		} else if (star) {
			pat = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

bool transport_origin_ok(const struct conf *k, const char *origin)
{
	const json_t *list = conf_get(k, "client.allowed_origins"), *v;
	size_t i;

	if (!origin)
		return true;
	json_array_foreach(list, i, v) {
		const char *pat = json_string_value(v);

		if (pat && glob_match(pat, origin))
			return true;
	}
	return false;
}

int transport_admit(const struct http_req *req, bool check_origin)
{
	const struct conf *k = req->conn->w->conf;
	const char *origin = http_req_header(req, "origin");

	if (check_origin && !transport_origin_ok(k, origin)) {
		log_info("%s: request Origin %s is not in client.allowed_origins; refused", req->path, origin);
		return 403;
	}
	if (k->connection_limit > 0 && node_clients(req->conn->w) >= (uint64_t)k->connection_limit) {
		static int64_t warned_ms;
		int64_t now = req->conn->w->now_ms;
		if (now - warned_ms >= 3000) {
			log_warn("client.connection_limit (%lld) reached; refusing connections with 503",
				 k->connection_limit);
			warned_ms = now;
		}
		return 503;
	}
	return 0;
}

void transport_refuse(struct http_req *req, int status, const char *extra, const char *why)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%s\n", http_reason(status));

	log_debug("%s fd %d: refused (%d): %s", req->path, req->conn->fd, status, why);
	http_respond_hdrs(req, status, "text/plain; charset=utf-8", extra, body, (size_t)n);
}

void transport_answer(struct http_req *req, int status, const char *extra)
{
	struct jw h = { 0 };

	transport_cors(req, &h);
	if (extra)
		jw_lit(&h, extra);
	jw_raw(&h, "", 1);
	http_respond_hdrs(req, status, NULL, h.buf, NULL, 0);
	jw_free(&h);
}

void transport_preflight(struct http_req *req)
{
	transport_answer(req, 204, "Access-Control-Max-Age: 300\r\nAccess-Control-Allow-Methods: POST, OPTIONS\r\n");
}

size_t transport_body_limit(const struct conf *k, const char *key)
{
	long long n = json_integer_value(conf_get(k, key));

	return n > 0 ? (size_t)n : 65536;
}

/* ---- CORS ------------------------------------------------------------------ */

/* Origin ORIGIN ("*": any, without credentials) may read the response. */
static void cors_allow(const struct http_req *req, const char *origin, struct jw *out)
{
	const char *hdrs = http_req_header(req, "access-control-request-headers");

	jw_lit(out, "Access-Control-Allow-Origin: ");
	jw_lit(out, origin);
	jw_lit(out, "\r\n");
	if (hdrs && *hdrs && strcmp(hdrs, "null") != 0) {
		jw_lit(out, "Access-Control-Allow-Headers: ");
		jw_lit(out, hdrs);
		jw_lit(out, "\r\n");
	}
	if (strcmp(origin, "*") != 0)
		jw_lit(out, "Access-Control-Allow-Credentials: true\r\n");
}

void transport_cors(const struct http_req *req, struct jw *out)
{
	const char *origin = http_req_header(req, "origin");

	if (origin && transport_origin_ok(req->conn->w->conf, origin))
		cors_allow(req, origin, out);
}

void transport_cors_any(const struct http_req *req, struct jw *out)
{
	if (http_req_header(req, "origin"))
		transport_cors(req, out);
	else
		cors_allow(req, "*", out);
}

/* ---- routes ---------------------------------------------------------------- */

void transport_route_set(struct transport_route *r, const char *key, const char *want, unsigned flags,
			 uint64_t methods, http_handler_fn fn, void *arg)
{
	if (want && !*want)
		want = NULL;
	if (r->path && (!want || strcmp(r->path, want) != 0)) {
		http_route_remove(r->path, flags);
		free(r->path);
		r->path = NULL;
	}
	if (want && !r->path) {
		if (http_route_add(want, flags, methods, fn, arg) == RT_OK)
			r->path = xstrdup(want);
		else
			log_warn("%s %s: path already taken by another handler", key, want);
	}
}
