/*
 * fuzz_endpoints.c - a libFuzzer target for the HTTP request path of every
 * client endpoint but SockJS's (fuzz_handoff covers those): raw bytes on a
 * fresh connection through the real HTTP layer into /connection/websocket,
 * /connection/http_stream, /connection/sse, /emulation,
 * /connection/uni_websocket, /connection/uni_sse and
 * /connection/uni_http_stream (websocket.c, emulation.c, uni.c, ws.c,
 * stream.c, transport.c, query.c) with small body limits, so that upgrades,
 * query strings (cf_connect), preflights, body limits, EmulationRequest
 * and ConnectRequest decoding, streaming heads and the framing of what a
 * session sends are all on the path.
 *
 * The client session (client.c) and the node (node.c) are not linked: a
 * small stand-in session below answers through the transport's ops as the
 * real one would (a connect reply or push carrying the session id, a reply
 * per command, a disconnect for what does not decode), so every transport
 * frames real replies; the node gives a fixed id and takes emulation
 * records for other workers without a bus. tests/fuzz/run.sh builds and
 * runs it briefly in make check; by hand, for a long run (in-tree build):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_GNU_SOURCE -I. -Isrc -Isrc/transport -Ishm -I/usr/share/include/llhttp \
 *       tests/fuzz/fuzz_endpoints.c <SOURCES below> <LIBS below> -o /tmp/fuzz_endpoints
 *   /tmp/fuzz_endpoints -max_total_time=1800 -max_len=4096 tests/fuzz/corpus/fuzz_endpoints
 *
 * SOURCES: src/http.c src/conn.c src/transport/tls.c src/transport/tls13.c src/conf.c src/admin_conf.c src/conf_keys.c src/json.c src/proto.c src/util.c src/log.c src/wheel.c src/smap.c src/b64.c src/token.c src/transport/transport.c src/transport/query.c src/transport/websocket.c src/transport/emulation.c src/transport/uni.c src/transport/stream.c src/transport/fcache.c src/transport/ws.c src/transport/ws_deflate.c src/transport/sockjs_frame.c shm/siphash.c src/pb.c src/engine/engine.c src/engine/redis_conf.c src/engine/redis_link.c src/engine/redis_wire.c src/proxy/proxy_conf.c src/jwks.c src/upstream.c src/dns.c
 * LIBS: @BUILD@/src/libllhttp.a @LLHTTP_LIBS@ -lhiredis -lev -ljwt -ljansson -lssl -lcrypto -luring -lz -lm
 *
 * The first input byte says how the rest is cut into writes (1 byte at a
 * time, or pieces of 1 + 64k bytes); the rest is what the client sends.
 * Invariants: those of fuzz_http.h, and the stand-in session's: every
 * session the transports open is closed exactly once by its transport.
 */
#include "config.h"
#include "fuzz_http.h"
#include "client.h"
#include "node.h"
#include "proto.h"

/* ---- what the transports' other members, the client and the node would be ---- */

/* transport.c names every transport; SockJS is fuzz_handoff's. */
const struct transport_kind transport_sockjs = { .name = "sockjs" };

struct client {
	const struct transport_ops *ops;
	void *t;
	enum proto_fmt fmt;
	unsigned flags;
	bool closed;      /* the session asked its transport to close */
	struct pstr session;
};

static size_t nsessions; /* open: client_new minus client_transport_closed */
static struct jw out;

static void reply(struct client *c)
{
	if (!c->closed && out.len)
		c->ops->send_copy(c->t, out.buf, out.len);
	out.len = 0;
}

static void disconnect(struct client *c, uint32_t code, const char *reason)
{
	if (c->closed)
		return;
	c->closed = true;
	c->ops->close(c->t, code, reason);
}

struct client *client_new(struct worker *w, const struct transport_ops *ops, void *t, const struct client_opts *o)
{
	struct client *c = calloc(1, sizeof(*c));

	CHECK(c != NULL);
	c->ops = ops;
	c->t = t;
	c->fmt = o->fmt;
	c->flags = o->flags;
	c->session = o->session; /* the transport's own bytes, alive as long as it is */
	nsessions++;
	return c;
}

static void connect_result(struct client *c, struct connect_result *r)
{
	*r = (struct connect_result){ .client = PSTR("00000000-0000-4000-8000-000000000000"),
				      .version = PSTR("0"), .ping = 25, .session = c->session,
				      .node = PSTR("11111111-1111-4111-8111-111111111111") };
}

void client_frame(struct client *c, const char *data, size_t len)
{
	struct cmd_batch b;

	if (c->closed)
		return;
	if (proto_decode(c->fmt, data, len, 1024, &b) != RT_OK) {
		proto_batch_free(&b);
		disconnect(c, 3501, "bad request");
		return;
	}
	for (size_t i = 0; i < b.n && !c->closed; i++) {
		struct connect_result r;

		out.len = 0;
		if (b.v[i].type == CMD_CONNECT) {
			connect_result(c, &r);
			proto_reply_connect(&out, c->fmt, b.v[i].id, &r);
		} else if (b.v[i].type == CMD_PUBLISH) {
			struct publication p = { .data = b.v[i].publish.data, .offset = b.v[i].id };
			/* a fan-out push: shared bytes in every transport's framing */
			if (proto_push_pub(&out, c->fmt, b.v[i].publish.channel, &p) != RT_OK)
				disconnect(c, 3506, "inappropriate protocol");
		} else if (b.v[i].id) {
			proto_reply_error(&out, c->fmt, b.v[i].id, 108, "not available", false);
		}
		reply(c);
	}
	proto_batch_free(&b);
}

uint32_t client_uni_connect(struct client *c, const char *data, size_t len, const char **reason)
{
	struct cmd_batch b;
	struct connect_result r;

	if (proto_decode_connect(c->fmt, data, len, &b) != RT_OK) {
		proto_batch_free(&b);
		if (reason)
			*reason = "bad request";
		disconnect(c, 3501, "bad request");
		return 3501;
	}
	proto_batch_free(&b);
	connect_result(c, &r);
	out.len = 0;
	proto_push_connect(&out, c->fmt, &r);
	reply(c);
	out.len = 0;
	proto_ping(&out, c->fmt);
	reply(c);
	return 0;
}

void client_disconnect(struct client *c, uint32_t code, const char *reason)
{
	disconnect(c, code, reason);
}

void client_shutdown(struct client *c)
{
	disconnect(c, 3001, "shutdown");
}

void client_transport_closed(struct client *c)
{
	CHECK(nsessions > 0);
	nsessions--;
	free(c);
}

/* client.connection_limit is 0: transport_admit never counts. */
uint64_t node_clients(struct worker *w) { __builtin_trap(); }
/* /health asks the engine; none here: it serves. */
bool node_health(struct worker *w, char *why, size_t n) { (void)w, (void)why, (void)n; return true; }

const char *node_uid(struct worker *w)
{
	return "11111111-1111-4111-8111-111111111111";
}

/* No bus: a POST for a session of another worker cannot be routed (and
 * the fuzzer cannot make a session id that verifies anyway). */
void node_on_emulation(node_emulation_fn *deliver, node_emulation_ack_fn *ack) {}
int node_emulate(struct worker *w, unsigned slot, struct pstr session, struct pstr data, uint64_t tag)
{
	return RT_ERR; /* the POST is answered 500 */
}
/* A node of its own only: another node's POST is a 404, as with the
 * shared-memory engine. */
void node_emulate_remote(struct worker *w, struct pstr node, struct pstr session, struct pstr data,
			 node_emu_fn *done, void *arg)
{
	done(arg, NODE_EMU_NO_NODE);
}

/* ---- the target ------------------------------------------------------------- */

static const char *const keys[] = {
	"http_stream.enabled", "true",
	"sse.enabled", "true",
	"uni_websocket.enabled", "true",
	"uni_sse.enabled", "true",
	"uni_http_stream.enabled", "true",
	"http_stream.max_request_body_size", "1024",
	"sse.max_request_body_size", "1024",
	"emulation.max_request_body_size", "1024",
	"uni_sse.max_request_body_size", "1024",
	"uni_http_stream.max_request_body_size", "1024",
	"websocket.message_size_limit", "2048",
	"uni_websocket.message_size_limit", "2048",
	"client.queue_max_size", "65536",
	"client.allowed_origins", "https://*.example.com",
	NULL,
};

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static bool ready;

	if (!ready) {
		fuzz_http_setup(keys);
		ready = true;
	}
	if (n < 1)
		return 0;
	fuzz_http_client(d + 1, n - 1, (d[0] & 1) ? 1 : 1 + (size_t)(d[0] >> 1) * 64);
	CHECK(nsessions == 0); /* every session's transport closed it */
	return 0;
}
