/*
 * transport.h - what rotor's transports share, and the one list of them.
 *
 * A transport carries client sessions (client.h) over one kind of
 * connection: WebSocket, HTTP-streaming, SSE, SockJS, the unidirectional
 * ones. Each is a file of its own in src/transport/ that implements struct
 * transport_ops (client.h) for its sessions and a struct transport_kind
 * (below) for the worker: its routes and settings, and its part of the
 * flush point. Nothing outside src/transport/ names a transport: the
 * worker calls transport_init, transport_reconfigure and transport_flush,
 * which walk the list in transport.c; client.c sees only transport_ops.
 *
 * The rest of this header is what several transports need and is written
 * once: admission of a new connection (client.allowed_origins,
 * client.connection_limit), CORS headers, routes that follow their config
 * key across reloads, query-string lookups.
 */
#ifndef ROTOR_TRANSPORT_H
#define ROTOR_TRANSPORT_H

#include "rotor.h"
#include "http.h"
#include "json.h"
#include "proto.h"
#include <stdbool.h>
#include <stdint.h>

struct worker;
struct conf;

/* One transport, as the worker sees it. Every callback may be NULL. */
struct transport_kind {
	const char *name;
	/* Once per worker, after http_init and client_init: routes, settings. */
	void (*init)(struct worker *w);
	/* After a reload applied in place: routes move, settings change, open
	 * connections keep going. */
	void (*reconfigure)(struct worker *w);
	/* At the flush point, before conn_flush: frame what sessions queued
	 * during this loop iteration and run the close callbacks that are due. */
	void (*flush)(struct worker *w);
	/* Graceful stop, after every connection got its on_drain: sessions
	 * that hold no connection of their own end too (3001). */
	void (*drain)(struct worker *w);
};

void transport_init(struct worker *w);
void transport_reconfigure(struct worker *w);
void transport_flush(struct worker *w);
void transport_drain(struct worker *w);

/* Another node's /emulation POST for SESSION, here (the Redis engine's
 * broker, from a centrifuge_emulation survey): DATA goes to the session's
 * worker over the bus; DONE answers once, at once or later, with a
 * NODE_EMU_* outcome (TAKEN, NO_SESSION, FAILED). */
void emulation_forwarded(struct pstr session, struct pstr data, void (*done)(void *arg, int outcome),
			 void *arg);

/* ---- admission -------------------------------------------------------- */

/* client.allowed_origins (server-api.md §8): a request without Origin
 * passes; an empty list lets nothing else pass; "*" lets everything pass;
 * otherwise ORIGIN must match one of the patterns (case-insensitive glob,
 * '*' any run, '?' one byte). */
bool transport_origin_ok(const struct conf *k, const char *origin);

/* Whether a new connection of any transport may open: 0 when it may, else
 * the HTTP status to refuse it with, already logged: 403 when CHECK_ORIGIN
 * and its Origin is not allowed, 503 when client.connection_limit is
 * reached. */
int transport_admit(const struct http_req *req, bool check_origin);

/* Answers REQ with STATUS, a one-line text body and EXTRA header lines
 * (may be NULL); WHY goes to the debug log. */
void transport_refuse(struct http_req *req, int status, const char *extra, const char *why);

/* Answers REQ with STATUS, an empty body, the CORS headers
 * (transport_cors) and EXTRA (complete header lines, or NULL). */
void transport_answer(struct http_req *req, int status, const char *extra);

/* Answers the CORS preflight (OPTIONS) of a POST endpoint, as Centrifugo's
 * streaming handlers do: 204 with "Access-Control-Max-Age: 300" and
 * "Access-Control-Allow-Methods: POST, OPTIONS". */
void transport_preflight(struct http_req *req);

/* The request-body limit in integer key KEY of config K (a transport's
 * max_request_body_size): its value when positive, else 65536. */
size_t transport_body_limit(const struct conf *k, const char *key);

/* ---- CORS (Centrifugo's middleware) ----------------------------------- */

/* Appends to OUT the CORS header lines for REQ: when its Origin passes
 * client.allowed_origins, "Access-Control-Allow-Origin: <origin>",
 * "Access-Control-Allow-Credentials: true" and the echoed
 * Access-Control-Request-Headers (unless empty or "null"); nothing for a
 * request without Origin or with one that is not allowed (the browser then
 * refuses the response). */
void transport_cors(const struct http_req *req, struct jw *out);
/* transport_cors, and for a request without Origin the headers that let
 * any page read the response: "Access-Control-Allow-Origin: *" and the
 * echoed Access-Control-Request-Headers, no credentials (SockJS). */
void transport_cors_any(const struct http_req *req, struct jw *out);

/* ---- routes ----------------------------------------------------------- */

/* A route that follows a config key: the path currently registered. */
struct transport_route {
	char *path;
};

/* Registers WANT (NULL or "": none) for METHODS with FN/ARG, moving R from
 * the path it had; a path another handler holds is logged (naming KEY) and
 * left alone. Open connections are not touched. */
void transport_route_set(struct transport_route *r, const char *key, const char *want, unsigned flags,
			 uint64_t methods, http_handler_fn fn, void *arg);

/* ---- query strings (query.c: pure, for fuzz targets) ------------------ */

/* The first value of KEY in QUERY, form-decoded (%XX, '+' is a space) as
 * Go's url.Query().Get reads it (pairs that do not decode are skipped),
 * appended to OUT. Returns whether KEY was there. */
bool transport_query_get(const char *query, const char *key, struct jw *out);
/* Whether the first value of KEY in QUERY equals VAL. */
bool transport_query_is(const char *query, const char *key, const char *val);

#endif
