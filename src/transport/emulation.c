/*
 * emulation.c - Centrifugo's bidirectional emulation (client-protocol.md
 * §8.2-8.4): a session whose server-to-client half is a streaming HTTP
 * response, /connection/http_stream (POST; JSON lines or varint-delimited
 * protobuf) or /connection/sse (EventSource; JSON only), and whose
 * client-to-server half is POST /emulation, one request per batch of
 * commands, on any connection, to any worker.
 *
 * Routing an /emulation POST: the session id names its owner. It is
 * "<bus slot, 4 hex><random, 16 hex><MAC, 16 hex>", the MAC a SipHash of
 * the first 20 characters under the master's secret (the same in every
 * worker). A POST whose session does not verify is for no session at all:
 * it is answered 204, as Centrifugo answers an unknown session, and costs
 * nothing further (a flood of made-up ids never reaches the bus, let alone
 * a session). A verified one is delivered at once when this worker owns
 * it, else appended to the shared-memory bus as one record addressed to
 * the owner's slot (node_emulate), which keeps one POST's commands together
 * and in order. The POST's `node` must be this node's id: another one is
 * 404 (centrifuge-js then reconnects), as with an unknown node in a
 * Centrifugo cluster, unless the engine knows that node (Redis): then the
 * POST goes to it (node_emulate_remote, a survey Centrifugo nodes answer
 * too) and is answered as that node's worker answered.
 *
 * What a status promises: 204 means the session took the POST's commands
 * as one frame, exactly as a WebSocket frame is read: they were handled in
 * order and their replies are queued on the stream ahead of anything the
 * session sends later, its disconnect included. So the POST is answered
 * only once the owner has delivered: at once on the owner, else when the
 * owner's acknowledgement comes back over the bus (REC_EMU_ACK, matched by
 * a per-worker tag; the request waits meanwhile, as it does in Centrifugo,
 * whose survey answers after the commands ran). A session that has ended,
 * or whose stream is ending, takes nothing; the POST is still answered 204,
 * as Centrifugo answers a session it does not know (and centrifuge-js
 * expects: the client learns from its stream), but with the header
 * NO_SESSION_HEADER, so that a 204 without it always means the commands
 * ran. An owner that does not answer within EMU_ACK_TIMEOUT_MS (it died,
 * or this worker lost the ack when the bus lapped it) leaves the outcome
 * unknown: 504. A POST whose client goes away meanwhile is forgotten.
 * Hence no command is dropped behind a plain 204, whatever ends the
 * session meanwhile.
 *
 * Each session owns one struct emu: its stream (stream.c), its client
 * session and its id in the worker's table; it is freed when the stream
 * ends, whoever ends it.
 */
#include "config.h"
#include "client.h"
#include "conf.h"
#include "conn.h"
#include "http.h"
#include "log.h"
#include "node.h"
#include "proto.h"
#include "siphash.h"
#include "smap.h"
#include "stream.h"
#include "transport.h"
#include "util.h"
#include "worker.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SESSION_LEN 36
/* On a 204 for commands no live session took: a session id this node
 * never issued, or one whose session has ended or is ending. */
#define NO_SESSION_HEADER "X-Rotor-Emulation: no-session\r\n"
/* How long a POST routed to another worker waits for its acknowledgement:
 * a live worker answers within a loop iteration. */
#define EMU_ACK_TIMEOUT_MS 2000

enum emu_kind { EMU_HTTP_STREAM, EMU_SSE };

struct emu {
	struct hs *hs;
	struct client *c;
	uint8_t fmt;
	char session[SESSION_LEN + 1];
};

/* An /emulation POST waiting for the owner's acknowledgement: from a
 * client (REQ), or from another node (DONE, ARG: emulation_forwarded). */
struct emu_wait {
	uint64_t tag;
	struct http_req *req;
	void (*done)(void *arg, int outcome);
	void *arg;
	struct wheel_timer timer;
};

static struct {
	struct worker *w;
	struct smap sessions;           /* session id -> struct emu * */
	struct smap waits;              /* tag -> struct emu_wait * */
	uint64_t next_tag;
	struct transport_route stream, sse, emu;
	struct jw buf;                  /* scratch */
} E;

/* ---- session ids ----------------------------------------------------------- */

static uint64_t mac(const char *id)
{
	return siphash24(E.w->secret, id, 20);
}

static void make_session(char out[SESSION_LEN + 1])
{
	uint64_t r;

	if (util_random(&r, sizeof(r)) != RT_OK)
		abort(); /* nothing unguessable to hand out */
	snprintf(out, 21, "%04x%016llx", E.w->bus_slot & 0xffff, (unsigned long long)r);
	snprintf(out + 20, SESSION_LEN + 1 - 20, "%016llx", (unsigned long long)mac(out));
}

/* The owner's bus slot of session S, or -1 when S is not an id this node
 * made. */
static long session_slot(struct pstr s)
{
	char id[SESSION_LEN + 1], *end;
	unsigned long long m;
	long slot;

	if (s.n != SESSION_LEN)
		return -1;
	memcpy(id, s.p, SESSION_LEN);
	id[SESSION_LEN] = '\0';
	for (size_t i = 0; i < SESSION_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return -1;
	m = strtoull(id + 20, &end, 16);
	if (m != mac(id))
		return -1;
	id[4] = '\0';
	slot = strtol(id, &end, 16);
	return slot;
}

/* ---- the session's transport ----------------------------------------------- */

/* The session's transport handle is its stream itself, so that a
 * delivery touches the stream and its connection, not a struct emu too. */
static int t_send(void *t, struct rbuf *b, size_t off, size_t len)
{
	return hs_send(t, b, off, len);
}

static int t_send_copy(void *t, const void *p, size_t n)
{
	return hs_send_copy(t, p, n);
}

/* A disconnect is a disconnect push, then the end of the response. */
static void t_close(void *t, uint32_t code, const char *reason)
{
	struct emu *e = hs_ud(t);

	if (code != 3000) {
		E.buf.len = 0;
		if (proto_push_disconnect(&E.buf, (enum proto_fmt)e->fmt, code, reason) == RT_OK)
			hs_send_copy(e->hs, E.buf.buf, E.buf.len);
	}
	hs_end(e->hs, false);
}

static void t_answering(void *t)
{
	hs_answering(t);
}

static const struct transport_ops http_stream_ops = { "http_stream", t_send, t_send_copy, t_close, t_answering };
static const struct transport_ops sse_ops = { "sse", t_send, t_send_copy, t_close, t_answering };

static void s_drain(struct hs *s, void *ud)
{
	struct emu *e = ud;

	client_shutdown(e->c);
}

static void s_slow(struct hs *s, void *ud)
{
	struct emu *e = ud;

	client_disconnect(e->c, 3008, "slow");
}

static void s_close(struct hs *s, void *ud)
{
	struct emu *e = ud;

	smap_set(&E.sessions, e->session, SESSION_LEN, 0);
	client_transport_closed(e->c);
	free(e);
}

static const struct hs_ops stream_json = { hs_frame_lines, s_drain, s_slow, s_close };
static const struct hs_ops stream_pb = { hs_frame_raw, s_drain, s_slow, s_close };
static const struct hs_ops stream_sse = { hs_frame_sse, s_drain, s_slow, s_close };

/* ---- requests ------------------------------------------------------------------ */

static bool is_protobuf(const struct http_req *req)
{
	const char *ct = http_req_header(req, "content-type");

	return ct && strcmp(ct, "application/octet-stream") == 0;
}

/* Starts a session of KIND on REQ with the commands in DATA. */
static void open_session(struct http_req *req, enum emu_kind kind, enum proto_fmt fmt, const char *data,
			 size_t len)
{
	struct emu *e = xcalloc(1, sizeof(*e));
	const struct hs_ops *ho = kind == EMU_SSE ? &stream_sse : fmt == PROTO_PB ? &stream_pb : &stream_json;
	struct client_opts o = { .fmt = fmt, .req = req };
	const char *ctype = kind == EMU_SSE ? "text/event-stream; charset=utf-8" :
			    fmt == PROTO_PB ? "application/octet-stream" : "text/plain; charset=utf-8";

	e->fmt = (uint8_t)fmt;
	make_session(e->session);
	o.session = (struct pstr){ e->session, SESSION_LEN };
	E.buf.len = 0;
	hs_headers(req, &E.buf);
	jw_raw(&E.buf, "", 1);
	e->hs = hs_start(req, ctype, E.buf.buf, kind == EMU_SSE ? "\r\n" : NULL, kind == EMU_SSE ? 2 : 0,
			 (size_t)E.w->conf->queue_max_size, ho, e);
	e->c = client_new(E.w, kind == EMU_SSE ? &sse_ops : &http_stream_ops, e->hs, &o);
	smap_set(&E.sessions, e->session, SESSION_LEN, (uint64_t)(uintptr_t)e);
	log_debug("%s: session %s opened", kind == EMU_SSE ? "sse" : "http_stream", e->session);
	client_frame(e->c, data, len);
}

static void http_stream_handler(struct http_req *req, void *arg)
{
	int status;

	if (req->method == HTTP_OPTIONS) {
		transport_preflight(req);
		return;
	}
	if (req->body_len > transport_body_limit(E.w->conf, "http_stream.max_request_body_size")) {
		transport_answer(req, 413, NULL);
		return;
	}
	if ((status = transport_admit(req, false)) != 0) {
		transport_answer(req, status, NULL);
		return;
	}
	open_session(req, EMU_HTTP_STREAM, is_protobuf(req) ? PROTO_PB : PROTO_JSON, req->body, req->body_len);
}

static void sse_handler(struct http_req *req, void *arg)
{
	struct jw connect = { 0 };
	int status;

	if (req->method == HTTP_GET) {
		if (!transport_query_get(req->query, "cf_connect", &connect) || connect.len == 0) {
			jw_free(&connect);
			log_debug("sse: no cf_connect in the query");
			transport_answer(req, 400, NULL);
			return;
		}
	} else if (req->body_len > transport_body_limit(E.w->conf, "sse.max_request_body_size")) {
		transport_answer(req, 413, NULL);
		return;
	} else {
		jw_raw(&connect, req->body, req->body_len);
	}
	if ((status = transport_admit(req, false)) != 0) {
		jw_free(&connect);
		transport_answer(req, status, NULL);
		return;
	}
	open_session(req, EMU_SSE, PROTO_JSON, connect.buf ? connect.buf : "", connect.len);
	jw_free(&connect);
}

/* Feeds DATA to this worker's session SESSION. Returns whether the session
 * took it: false when there is no such session (any more) or its stream is
 * ending, and then nothing of DATA was handled. */
static bool deliver(struct pstr session, struct pstr data)
{
	struct emu *e = (struct emu *)(uintptr_t)smap_get(&E.sessions, session.p, session.n);

	if (!e || hs_closing(e->hs)) {
		log_debug("emulation: session %.*s is gone; commands refused", (int)session.n, session.p);
		return false;
	}
	if (data.n)
		client_frame(e->c, data.p, data.n);
	return true;
}

static void wait_free(struct emu_wait *wt)
{
	smap_set(&E.waits, (const char *)&wt->tag, sizeof(wt->tag), 0);
	wheel_cancel(&E.w->wheel, &wt->timer);
	free(wt);
}

/* The owner answered the POST tagged TAG (if it is still waiting). */
static void on_ack(uint64_t tag, bool taken)
{
	struct emu_wait *wt = (struct emu_wait *)(uintptr_t)smap_get(&E.waits, (const char *)&tag, sizeof(tag));

	if (!wt)
		return;
	if (wt->done) {
		wt->done(wt->arg, taken ? NODE_EMU_TAKEN : NODE_EMU_NO_SESSION);
	} else {
		http_req_on_abort(wt->req, NULL, NULL);
		transport_answer(wt->req, 204, taken ? NULL : NO_SESSION_HEADER);
	}
	wait_free(wt);
}

static void on_wait_timeout(struct wheel_timer *t)
{
	struct emu_wait *wt = (struct emu_wait *)((char *)t - offsetof(struct emu_wait, timer));

	log_info("emulation: no answer from the session's worker in %d ms; 504", EMU_ACK_TIMEOUT_MS);
	if (wt->done) {
		wt->done(wt->arg, NODE_EMU_FAILED);
	} else {
		http_req_on_abort(wt->req, NULL, NULL);
		transport_answer(wt->req, 504, NULL);
	}
	wait_free(wt);
}

/* The client of a waiting POST went away. */
static void on_wait_abort(void *arg)
{
	wait_free(arg);
}

/* Routes DATA to SESSION, owned by the worker in bus SLOT, and leaves WT
 * waiting for the answer; false when the bus did not take it (WT is
 * then the caller's). */
static bool route(struct emu_wait *wt, unsigned slot, struct pstr session, struct pstr data)
{
	wt->tag = ++E.next_tag;
	if (node_emulate(E.w, slot, session, data, wt->tag) != RT_OK)
		return false;
	smap_set(&E.waits, (const char *)&wt->tag, sizeof(wt->tag), (uint64_t)(uintptr_t)wt);
	wheel_timer_init(&wt->timer, on_wait_timeout);
	wheel_add(&E.w->wheel, &wt->timer, E.w->now_ms + EMU_ACK_TIMEOUT_MS);
	return true;
}

static void route_req(struct http_req *req, unsigned slot, struct pstr session, struct pstr data)
{
	struct emu_wait *wt = xcalloc(1, sizeof(*wt));

	wt->req = req;
	if (!route(wt, slot, session, data)) {
		free(wt);
		transport_answer(req, 500, NULL);
		return;
	}
	http_req_on_abort(req, on_wait_abort, wt);
}

void emulation_forwarded(struct pstr session, struct pstr data, void (*done)(void *arg, int outcome),
			 void *arg)
{
	long slot = session_slot(session);
	struct emu_wait *wt;

	if (slot < 0) {
		done(arg, NODE_EMU_NO_SESSION);
		return;
	}
	if (slot == (long)E.w->bus_slot || data.n == 0) { /* the broker owns none */
		done(arg, data.n == 0 || deliver(session, data) ? NODE_EMU_TAKEN : NODE_EMU_NO_SESSION);
		return;
	}
	wt = xcalloc(1, sizeof(*wt));
	wt->done = done;
	wt->arg = arg;
	if (!route(wt, (unsigned)slot, session, data)) {
		free(wt);
		done(arg, NODE_EMU_FAILED);
	}
}

/* A POST for a session of another node waits for that node (REQ goes NULL
 * when its client goes away meanwhile). */
struct remote_wait {
	struct http_req *req;
};

static void remote_abort(void *arg)
{
	struct remote_wait *rw = arg;
	rw->req = NULL;
}

static void remote_done(void *arg, int outcome)
{
	struct remote_wait *rw = arg;

	if (rw->req) {
		http_req_on_abort(rw->req, NULL, NULL);
		switch (outcome) {
		case NODE_EMU_TAKEN: transport_answer(rw->req, 204, NULL); break;
		case NODE_EMU_NO_SESSION: transport_answer(rw->req, 204, NO_SESSION_HEADER); break;
		case NODE_EMU_NO_NODE: transport_answer(rw->req, 404, NULL); break;
		default: transport_answer(rw->req, 504, NULL); break;
		}
	}
	free(rw);
}

static void emulation_handler(struct http_req *req, void *arg)
{
	struct cmd_batch b;
	struct emu_req r;
	long slot;

	if (req->method == HTTP_OPTIONS) {
		transport_preflight(req);
		return;
	}
	if (req->body_len > transport_body_limit(E.w->conf, "emulation.max_request_body_size")) {
		transport_answer(req, 413, NULL);
		return;
	}
	if (proto_decode_emulation(is_protobuf(req) ? PROTO_PB : PROTO_JSON, req->body, req->body_len, &r, &b) !=
	    RT_OK) {
		proto_batch_free(&b);
		log_debug("emulation: malformed request");
		transport_answer(req, 400, NULL);
		return;
	}
	if (r.node.n != SESSION_LEN || memcmp(r.node.p, node_uid(E.w), SESSION_LEN) != 0) {
		struct remote_wait *rw = xcalloc(1, sizeof(*rw));
		rw->req = req;
		http_req_on_abort(req, remote_abort, rw);
		node_emulate_remote(E.w, r.node, r.session, r.data, remote_done, rw);
		proto_batch_free(&b);
		return;
	}
	slot = session_slot(r.session);
	if (slot < 0) /* the id is the client's text: not logged */
		log_debug("emulation: %zu bytes for no session this node made", r.data.n);
	else
		log_debug("emulation: %zu bytes for session %.*s taken on bus slot %u: %s", r.data.n,
			  (int)r.session.n, r.session.p, E.w->bus_slot,
			  slot == (long)E.w->bus_slot ? "its own" : "routed to its owner");
	if (slot < 0)
		transport_answer(req, 204, NO_SESSION_HEADER);
	else if (r.data.n == 0)
		transport_answer(req, 204, NULL); /* nothing to take */
	else if (slot == (long)E.w->bus_slot)
		transport_answer(req, 204, deliver(r.session, r.data) ? NULL : NO_SESSION_HEADER);
	else
		route_req(req, (unsigned)slot, r.session, r.data);
	proto_batch_free(&b);
}

/* ---- set-up ----------------------------------------------------------------- */

static void configure(struct worker *w)
{
	const struct conf *k = w->conf;
	bool stream = json_is_true(conf_get(k, "http_stream.enabled"));
	bool sse = json_is_true(conf_get(k, "sse.enabled"));
	const uint64_t post = HTTP_METHOD_BIT(HTTP_POST) | HTTP_METHOD_BIT(HTTP_OPTIONS);

	transport_route_set(&E.stream, "http_stream.handler_prefix",
			    stream ? json_string_value(conf_get(k, "http_stream.handler_prefix")) : NULL,
			    HTTP_ROUTE_EXACT, post, http_stream_handler, NULL);
	transport_route_set(&E.sse, "sse.handler_prefix",
			    sse ? json_string_value(conf_get(k, "sse.handler_prefix")) : NULL, HTTP_ROUTE_EXACT,
			    HTTP_METHOD_BIT(HTTP_GET) | HTTP_METHOD_BIT(HTTP_POST), sse_handler, NULL);
	transport_route_set(&E.emu, "emulation.handler_prefix",
			    stream || sse ? json_string_value(conf_get(k, "emulation.handler_prefix")) : NULL,
			    HTTP_ROUTE_EXACT, post, emulation_handler, NULL);
}

static void init(struct worker *w)
{
	E.w = w;
	free(E.stream.path);
	free(E.sse.path);
	free(E.emu.path);
	E.stream.path = E.sse.path = E.emu.path = NULL;
	node_on_emulation(deliver, on_ack);
	configure(w);
}

const struct transport_kind transport_emulation = {
	.name = "emulation",
	.init = init,
	.reconfigure = configure,
};
