/*
 * fuzz_handoff.c - a libFuzzer target for what reaches a worker beyond the
 * SockJS codec: handed-over connection records (handoff.c) and requests on
 * SockJS paths through the real HTTP layer (llhttp in strict mode, http.c,
 * conn.c) into the SockJS transport (sockjs.c, sockjs_session.c, stream.c,
 * ws.c), with the protocol suite's services mounted at /t (echo, close,
 * disabled_websocket_echo, cookie_needed_echo: the same session code as
 * /connection/sockjs, with the echo application instead of a client
 * session, which is not linked here). tests/fuzz/run.sh builds and runs it
 * briefly in make check; by hand, for a long run (in-tree build):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_GNU_SOURCE -I. -Isrc -Isrc/transport -Ishm -I/usr/share/include/llhttp \
 *       tests/fuzz/fuzz_handoff.c <SOURCES below> <LIBS below> -o /tmp/fuzz_handoff
 *   /tmp/fuzz_handoff -max_total_time=1800 -max_len=4096 tests/fuzz/corpus/fuzz_handoff
 *
 * SOURCES: src/handoff.c src/http.c src/conn.c src/transport/tls.c src/transport/tls13.c src/conf.c src/admin_conf.c src/conf_keys.c src/json.c src/util.c src/log.c src/wheel.c src/smap.c src/b64.c src/token.c src/transport/transport.c src/transport/query.c src/transport/sockjs.c src/transport/sockjs_session.c src/transport/sockjs_frame.c src/transport/stream.c src/transport/fcache.c src/transport/ws.c src/transport/ws_deflate.c shm/siphash.c src/engine/engine.c src/engine/redis_conf.c src/engine/redis_link.c src/engine/redis_wire.c src/pb.c src/proxy/proxy_conf.c src/jwks.c src/upstream.c src/dns.c
 * LIBS: @BUILD@/src/libllhttp.a @LLHTTP_LIBS@ -lhiredis -lev -ljwt -ljansson -lssl -lcrypto -luring -lz -lm
 *
 * The first input byte picks the mode (low bit) and how the bytes are cut
 * (the rest); the other bytes are the input:
 *   0: a handoff record as read from a worker's handoff socket (header and
 *      request bytes, one descriptor): handoff_parse decides; an accepted
 *      record is served as a handed connection (http_accept_handed), its
 *      first request marked handed, then whatever follows;
 *   1: bytes a client sends on a fresh connection (http_accept), written
 *      in pieces (1-byte pieces when the cut bits say so), each followed by
 *      a loop iteration and a flush point, as the worker runs.
 * The client's end then closes, the loop runs until the connection is
 * gone, and the clock jumps past the SockJS disconnect delay so that
 * every session of the run ends.
 *
 * Invariants (__builtin_trap): handoff_parse accepts exactly the records
 * with one descriptor, the magic and a matching length; whatever the
 * server writes first on a connection is an HTTP/1.1 status line; after
 * the close every connection is gone (none held, no timer left behind).
 */
#include "config.h"
#include "fuzz_http.h"
#include "client.h"
#include "handoff.h"
#include "sockjs_session.h"

/* ---- what the transports' other members and the client would be ------------------- */

/* transport.c names every transport; only SockJS and its layers run here. */
const struct transport_kind transport_websocket = { .name = "websocket" };
const struct transport_kind transport_emulation = { .name = "emulation" };
const struct transport_kind transport_uni = { .name = "uni" };

/* The client protocol is not linked: /connection/sockjs is not mounted, so
 * nothing may reach these. */
struct client *client_new(struct worker *w, const struct transport_ops *ops, void *t, const struct client_opts *o)
{
	__builtin_trap();
}
void client_frame(struct client *c, const char *data, size_t len) { __builtin_trap(); }
void client_shutdown(struct client *c) { __builtin_trap(); }
void client_transport_closed(struct client *c) { __builtin_trap(); }
/* client.connection_limit is 0: transport_admit never counts. */
uint64_t node_clients(struct worker *w) { __builtin_trap(); }
/* /health asks the engine; none here: it serves. */
bool node_health(struct worker *w, char *why, size_t n) { (void)w, (void)why, (void)n; return true; }

static const char *const keys[] = {
	"sockjs.test_services_prefix", "/t",
	"websocket.message_size_limit", "2048",
	"client.queue_max_size", "65536",
	NULL,
};

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static bool ready;

	if (!ready) {
		fuzz_http_setup(keys);
		handoff_init(&FW);
		ready = true;
	}
	if (n < 1)
		return 0;
	if ((d[0] & 1) == 0) {
		const char *data;
		size_t len;
		int rc = handoff_parse((const char *)d + 1, n - 1, 1, 0, &data, &len);
		struct handoff_hdr h;
		bool seen = false;
		int sv[2];

		/* The oracle: exactly the well-formed records. */
		if (n - 1 > sizeof(h)) {
			memcpy(&h, d + 1, sizeof(h));
			CHECK((rc == RT_OK) == (h.magic == HANDOFF_MAGIC && h.len == n - 1 - sizeof(h)));
		} else {
			CHECK(rc != RT_OK);
		}
		CHECK(handoff_parse((const char *)d + 1, n - 1, 2, 0, &data, &len) != RT_OK);
		CHECK(handoff_parse((const char *)d + 1, n - 1, 1, 1, &data, &len) != RT_OK);
		if (rc != RT_OK)
			return 0;
		CHECK(data == (const char *)d + 1 + sizeof(h) && len == h.len);
		fuzz_http_pair(sv);
		http_accept_handed(&FW, sv[0], data, len);
		fuzz_http_pump(sv[1], &seen);
		fuzz_http_leave(sv[1], &seen);
	} else {
		fuzz_http_client(d + 1, n - 1, (d[0] >> 1) & 1 ? 1 : 1 + (size_t)(d[0] >> 2) * 64);
	}
	/* Sessions without a receiver end after the disconnect delay. */
	FW.now_ms += SJS_DISCONNECT_DELAY_MS + 1000;
	fuzz_http_step();
	return 0;
}
