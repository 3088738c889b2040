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
 * SOURCES: src/handoff.c src/http.c src/conn.c src/conf.c src/conf_keys.c src/json.c src/util.c src/log.c src/wheel.c src/smap.c src/b64.c src/token.c src/transport/transport.c src/transport/query.c src/transport/sockjs.c src/transport/sockjs_session.c src/transport/sockjs_frame.c src/transport/stream.c src/transport/ws.c shm/siphash.c
 * LIBS: @BUILD@/src/libllhttp.a @LLHTTP_LIBS@ -lev -ljwt -ljansson -lcrypto -luring -lm
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
#include "fuzz.h"
#include "client.h"
#include "conf.h"
#include "conn.h"
#include "handoff.h"
#include "http.h"
#include "log.h"
#include "sockjs_session.h"
#include "transport.h"
#include "util.h"
#include "wheel.h"
#include "worker.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

struct worker *worker_self;

static struct worker W;
static struct conf C;

static void setup(void)
{
	struct conf_report rep = { 0 };

	log_set_level(LOG_NONE);
	conf_init(&C);
	conf_set(&C, "sockjs.test_services_prefix", "/t", &rep);
	conf_set(&C, "websocket.message_size_limit", "2048", &rep);
	conf_set(&C, "client.queue_max_size", "65536", &rep);
	CHECK(conf_check(&C, &rep) == RT_OK);
	conf_report_free(&rep);
	W.conf = &C;
	W.loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
	W.now_ms = 1000;
	W.handoff_fd = -1;
	for (int i = 0; i < BUS_SLOTS_MAX; i++)
		W.handoff_fds[i] = W.wake_fds[i] = -1;
	worker_self = &W;
	wheel_init(&W.wheel, W.now_ms, 100);
	conn_init(&W);
	http_init(&W);
	transport_init(&W);
	handoff_init(&W);
}

/* One loop iteration without blocking and the flush point, then whatever
 * the server wrote is read from PEER: the first bytes must be a status
 * line. */
static void pump(int peer, bool *seen)
{
	char buf[65536];
	ssize_t k;

	ev_run(W.loop, EVRUN_NOWAIT);
	wheel_advance(&W.wheel, W.now_ms);
	transport_flush(&W);
	conn_flush_all(&W);
	while ((k = read(peer, buf, sizeof(buf))) > 0) {
		if (!*seen)
			CHECK(k >= 9 && memcmp(buf, "HTTP/1.1 ", 9) == 0);
		*seen = true;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static bool ready;
	bool seen = false;
	int sv[2];

	if (!ready) {
		setup();
		ready = true;
	}
	if (n < 1)
		return 0;
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
	if ((d[0] & 1) == 0) {
		const char *data;
		size_t len;
		int rc = handoff_parse((const char *)d + 1, n - 1, 1, 0, &data, &len);
		struct handoff_hdr h;

		/* The oracle: exactly the well-formed records. */
		if (n - 1 > sizeof(h)) {
			memcpy(&h, d + 1, sizeof(h));
			CHECK((rc == RT_OK) == (h.magic == HANDOFF_MAGIC && h.len == n - 1 - sizeof(h)));
		} else {
			CHECK(rc != RT_OK);
		}
		CHECK(handoff_parse((const char *)d + 1, n - 1, 2, 0, &data, &len) != RT_OK);
		CHECK(handoff_parse((const char *)d + 1, n - 1, 1, 1, &data, &len) != RT_OK);
		if (rc != RT_OK) {
			close(sv[0]);
			close(sv[1]);
			return 0;
		}
		CHECK(data == (const char *)d + 1 + sizeof(h) && len == h.len);
		http_accept_handed(&W, sv[0], data, len);
		pump(sv[1], &seen);
	} else {
		size_t piece = (d[0] >> 1) & 1 ? 1 : 1 + (d[0] >> 2) * 64;

		http_accept(&W, sv[0]);
		for (size_t off = 1; off < n; off += piece) {
			size_t m = n - off < piece ? n - off : piece;

			if (write(sv[1], d + off, m) != (ssize_t)m)
				break; /* the server stopped reading: its buffer is full */
			pump(sv[1], &seen);
		}
	}
	/* A little time for what answers later, then the client leaves. */
	for (int i = 0; i < 4; i++)
		pump(sv[1], &seen);
	shutdown(sv[1], SHUT_WR);
	pump(sv[1], &seen);
	close(sv[1]);
	for (int i = 0; i < 8 && W.nconns; i++) {
		W.now_ms += 3000; /* past lingering, close waits, disconnect delays */
		ev_run(W.loop, EVRUN_NOWAIT);
		wheel_advance(&W.wheel, W.now_ms);
		transport_flush(&W);
		conn_flush_all(&W);
	}
	CHECK(W.nconns == 0);
	/* Sessions without a receiver end after the disconnect delay. */
	W.now_ms += SJS_DISCONNECT_DELAY_MS + 1000;
	wheel_advance(&W.wheel, W.now_ms);
	transport_flush(&W);
	conn_flush_all(&W);
	return 0;
}
