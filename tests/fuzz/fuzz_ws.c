/*
 * fuzz_ws.c - a libFuzzer target for the WebSocket layer (src/transport/ws.c)
 * and its permessage-deflate (src/transport/ws_deflate.c): client frames of
 * any kind after an upgrade through the real HTTP layer, into an echo
 * session, so that the frame parser, fragmentation, control frames between
 * fragments, the size limits, the inflate path (RSV1, fragmented compressed
 * messages, bombs, corrupt streams) and the deflated output are all on the
 * path. tests/fuzz/run.sh builds and runs it briefly in make check; by
 * hand, for a long run (in-tree build):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_GNU_SOURCE -I. -Isrc -Isrc/transport -Ishm -I/usr/share/include/llhttp \
 *       tests/fuzz/fuzz_ws.c <SOURCES below> <LIBS below> -o /tmp/fuzz_ws
 *   /tmp/fuzz_ws -max_total_time=1200 -max_len=4096 /tmp/corpus_ws tests/fuzz/corpus/fuzz_ws
 *
 * SOURCES: src/http.c src/conn.c src/transport/tls.c src/transport/tls13.c src/conf.c src/admin_conf.c src/conf_keys.c src/json.c src/util.c src/log.c src/wheel.c src/smap.c src/b64.c src/token.c src/transport/transport.c src/transport/query.c src/transport/fcache.c src/transport/ws.c src/transport/ws_deflate.c src/transport/sockjs_frame.c shm/siphash.c src/engine/engine.c src/engine/redis_conf.c src/engine/redis_link.c src/engine/redis_wire.c src/pb.c src/proxy/proxy_conf.c src/jwks.c src/upstream.c src/dns.c
 * LIBS: @BUILD@/src/libllhttp.a @LLHTTP_LIBS@ -lhiredis -lev -ljwt -ljansson -lssl -lcrypto -luring -lz -lm
 *
 * The first input byte chooses: bit 0, whether the upgrade offers
 * permessage-deflate (websocket.compression is on, at level 5); bit 1, whether the rest is raw bytes or records that
 * this file frames (below); bit 2, whether the bytes go out one at a time
 * or in pieces of 1 + (first byte >> 4) * 64. A record is
 *   B0 (FIN, RSV, opcode as sent), FL, LEN (one byte), LEN payload bytes:
 * masked and length-encoded correctly; FL bit 0 deflates the payload first
 * (raw, sync flush, tail cut, as a client would), bit 1 repeats the payload
 * 4096 times before deflating it (a bomb), bit 2 cuts the deflated bytes in
 * half (a corrupt stream).
 *
 * The session echoes every message twice through one shared buffer (so a
 * deflated message is found in the per-flush cache). Invariants: no
 * message handed to the session is over the 2048-byte limit; what the
 * server sends after its 101 is a sequence of unmasked frames whose data
 * frames, inflated where RSV1 is set (only when negotiated), joined by
 * '\n', are exactly the echoed messages joined by '\n'; every frame with
 * RSV1 inflates; the session is closed exactly once; no connection is
 * left when the client has gone.
 */
#include "config.h"
#include "fuzz_http.h"
#include "node.h"
#include "ws.h"

#include <zlib.h>

#define LIMIT 2048

/* transport.c names every transport; only the WebSocket layer is here. */
const struct transport_kind transport_websocket = { .name = "websocket" };
const struct transport_kind transport_emulation = { .name = "emulation" };
const struct transport_kind transport_uni = { .name = "uni" };
const struct transport_kind transport_sockjs = { .name = "sockjs" };
const struct transport_kind transport_stream = { .name = "stream" };

/* client.connection_limit is 0: transport_admit never counts. */
uint64_t node_clients(struct worker *w) { __builtin_trap(); }
/* /health asks the engine; none here: it serves. */
bool node_health(struct worker *w, char *why, size_t n) { (void)w, (void)why, (void)n; return true; }

/* A growable byte buffer. */
struct buf {
	uint8_t *p;
	size_t n, cap;
};

static void put(struct buf *b, const void *p, size_t n)
{
	if (b->n + n > b->cap) {
		b->cap = (b->n + n) * 2;
		b->p = realloc(b->p, b->cap);
		CHECK(b->p != NULL);
	}
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
}

static struct buf echoed; /* the echoed messages joined by '\n' */
static struct buf in;     /* what the client sends */
static struct buf out;    /* what the server sent */
static size_t nsessions;

static void on_message(struct ws *ws, void *ud, const char *data, size_t len)
{
	struct rbuf *b;

	CHECK(len <= LIMIT);
	if (!len)
		return;
	b = rbuf_copy(data, len);
	for (int i = 0; i < 2; i++) {
		if (ws_send(ws, b, 0, len) != RT_OK)
			break;
		if (echoed.n)
			put(&echoed, "\n", 1);
		put(&echoed, data, len);
	}
	rbuf_unref(b);
}

static void on_close(struct ws *ws, void *ud)
{
	CHECK(nsessions == 1);
	nsessions--;
}

static const struct ws_handler handler = { .on_message = on_message, .on_close = on_close };

static void upgrade(struct http_req *req, void *arg)
{
	static const struct ws_upgrade u = { .deflate = true };
	struct ws_open_info info;
	struct ws *ws = ws_upgrade(req, &u, &info);

	if (!ws)
		return;
	nsessions++;
	ws_set_handler(ws, &handler, NULL);
}

/* Raw deflate of P (N bytes) as a client sends it: sync flush, the
 * trailing 00 00 ff ff cut. */
static void client_deflate(struct buf *dst, const uint8_t *p, size_t n)
{
	static z_stream z;
	static bool ready;
	uint8_t tmp[8192];

	if (!ready) {
		CHECK(deflateInit2(&z, 1, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
		ready = true;
	}
	deflateReset(&z);
	z.next_in = (Bytef *)(uintptr_t)p;
	z.avail_in = (uInt)n;
	do {
		z.next_out = tmp;
		z.avail_out = sizeof(tmp);
		CHECK(deflate(&z, Z_SYNC_FLUSH) == Z_OK);
		put(dst, tmp, sizeof(tmp) - z.avail_out);
	} while (z.avail_out == 0);
	CHECK(dst->n >= 4);
	dst->n -= 4;
}

/* A masked client frame: B0, then PAYLOAD. */
static void client_frame(uint8_t b0, const uint8_t *p, size_t n)
{
	static const uint8_t mask[4] = { 0x12, 0x34, 0x56, 0x78 };
	uint8_t h[14];
	size_t hl = 2;

	h[0] = b0;
	if (n < 126) {
		h[1] = (uint8_t)(0x80 | n);
	} else if (n <= 0xFFFF) {
		h[1] = 0x80 | 126;
		h[2] = (uint8_t)(n >> 8);
		h[3] = (uint8_t)n;
		hl = 4;
	} else {
		h[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	memcpy(h + hl, mask, 4);
	put(&in, h, hl + 4);
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i] ^ mask[i & 3];
		put(&in, &c, 1);
	}
}

/* Frames the records of D (see the header). */
static void records(const uint8_t *d, size_t n)
{
	struct buf pl = { 0 }, rep = { 0 };

	while (n >= 3) {
		uint8_t b0 = d[0], fl = d[1];
		size_t len = d[2] < n - 3 ? d[2] : n - 3;
		const uint8_t *p = d + 3;

		pl.n = rep.n = 0;
		if (fl & 1) {
			if (fl & 2) {
				for (int i = 0; i < 4096; i++)
					put(&rep, p, len);
				client_deflate(&pl, rep.p, rep.n);
			} else {
				client_deflate(&pl, p, len);
			}
			if (fl & 4)
				pl.n /= 2;
			client_frame(b0, pl.p, pl.n);
		} else {
			client_frame(b0, p, len);
		}
		d += 3 + len;
		n -= 3 + len;
	}
	free(pl.p);
	free(rep.p);
}

/* Inflates a server frame's payload P (N bytes) whole into DST. */
static bool server_inflate(struct buf *dst, const uint8_t *p, size_t n)
{
	static z_stream z;
	static bool ready;
	static const uint8_t tail[4] = { 0, 0, 0xff, 0xff };
	uint8_t tmp[8192];
	struct buf src = { 0 };
	int rc;

	if (!ready) {
		CHECK(inflateInit2(&z, -15) == Z_OK);
		ready = true;
	}
	inflateReset(&z); /* server_no_context_takeover */
	put(&src, p, n);
	put(&src, tail, 4);
	z.next_in = src.p;
	z.avail_in = (uInt)src.n;
	do {
		z.next_out = tmp;
		z.avail_out = sizeof(tmp);
		rc = inflate(&z, Z_SYNC_FLUSH);
		put(dst, tmp, sizeof(tmp) - z.avail_out);
	} while (rc == Z_OK && (z.avail_in || z.avail_out == 0));
	free(src.p);
	return (rc == Z_OK || rc == Z_BUF_ERROR) && z.avail_in == 0;
}

/* What the server sent, checked against what was echoed. */
static void check_output(bool negotiated)
{
	const uint8_t *p = out.p, *end = out.p + out.n;
	struct buf got = { 0 };
	bool first = true;
	void *h;

	if (!out.n)
		return;
	CHECK(out.n >= 9 && memcmp(out.p, "HTTP/1.1 ", 9) == 0);
	h = memmem(out.p, out.n, "\r\n\r\n", 4);
	if (!h || memcmp(out.p, "HTTP/1.1 101 ", 13) != 0) {
		CHECK(echoed.n == 0);
		return;
	}
	CHECK(!negotiated == !memmem(out.p, (size_t)((uint8_t *)h - out.p), "permessage-deflate", 18));
	p = (const uint8_t *)h + 4;
	while (end - p >= 2) {
		uint8_t b0 = p[0], op = b0 & 0x0F;
		uint64_t len = p[1] & 0x7F;
		size_t hl = 2;

		CHECK(!(p[1] & 0x80)); /* never masked */
		CHECK(b0 & 0x80);      /* never fragmented */
		CHECK(!(b0 & 0x30));
		if (len == 126) {
			CHECK(end - p >= 4);
			len = (uint64_t)p[2] << 8 | p[3];
			hl = 4;
		} else if (len == 127) {
			CHECK(end - p >= 10);
			len = 0;
			for (int i = 0; i < 8; i++)
				len = len << 8 | p[2 + i];
			hl = 10;
		}
		CHECK((uint64_t)(end - p) >= hl + len); /* whole frames only */
		if (op == 0x1 || op == 0x2) {
			if (!first)
				put(&got, "\n", 1);
			first = false;
			if (b0 & 0x40) {
				CHECK(negotiated);
				CHECK(server_inflate(&got, p + hl, (size_t)len));
			} else {
				put(&got, p + hl, (size_t)len);
			}
		} else {
			CHECK(!(b0 & 0x40));
			CHECK(op == 0x8 || op == 0x9 || op == 0xA);
		}
		p += hl + len;
	}
	CHECK(p == end);
	CHECK(got.n == echoed.n && (!got.n || memcmp(got.p, echoed.p, got.n) == 0));
	free(got.p);
}

/* One pump: a step, then what the server wrote goes to OUT. */
static void pump(int peer)
{
	uint8_t b[65536];
	ssize_t k;

	fuzz_http_step();
	while ((k = read(peer, b, sizeof(b))) > 0)
		put(&out, b, (size_t)k);
}

static const char *const keys_deflate[] = {
	"websocket.message_size_limit", "2048",
	"client.queue_max_size", "1048576",
	"websocket.compression", "true",
	"websocket.compression_level", "5",
	NULL,
};

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static bool ready;
	static const char *hs = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
	bool deflate;
	size_t piece;
	int sv[2];

	if (!ready) {
		/* compression on: a handshake without the offer tests the plain path */
		fuzz_http_setup(keys_deflate);
		CHECK(http_route_add("/ws", 0, HTTP_METHOD_BIT(HTTP_GET), upgrade, NULL) == RT_OK);
		ready = true;
	}
	if (n < 1)
		return 0;
	deflate = d[0] & 1;
	piece = (d[0] & 4) ? 1 : 1 + (size_t)(d[0] >> 4) * 64;
	in.n = out.n = echoed.n = 0;
	put(&in, hs, strlen(hs));
	if (deflate)
		put(&in, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n", 70);
	put(&in, "\r\n", 2);
	if (d[0] & 2)
		records(d + 1, n - 1);
	else
		put(&in, d + 1, n - 1);

	fuzz_http_pair(sv);
	http_accept(&FW, sv[0], false);
	for (size_t off = 0; off < in.n; off += piece) {
		size_t m = in.n - off < piece ? in.n - off : piece;

		if (write(sv[1], in.p + off, m) != (ssize_t)m)
			break; /* the server stopped reading */
		pump(sv[1]);
	}
	for (int i = 0; i < 4; i++)
		pump(sv[1]);
	shutdown(sv[1], SHUT_WR);
	pump(sv[1]);
	for (int i = 0; i < 8 && FW.nconns; i++) {
		FW.now_ms += 3000;
		pump(sv[1]);
	}
	close(sv[1]);
	CHECK(FW.nconns == 0);
	CHECK(nsessions == 0);
	check_output(deflate);
	return 0;
}
