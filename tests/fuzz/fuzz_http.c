/*
 * fuzz_http.c - a libFuzzer target for the HTTP/1.1 server alone (http.c
 * and conn.c on llhttp in strict mode), with an oracle: how the bytes of a
 * connection are cut into reads must not change what the server answers.
 *
 * fuzz_endpoints drives the same layer, but through the transports'
 * routes, cut into equal pieces, and only checks that nothing crashes.
 * Here the routes are the server's own and an echo route that answers
 * with everything the parser gave the handler (method, target, path,
 * query, version, each header, the decoded body's length and hash, the
 * upgrade flag), so that the request line, header fields, Content-Length
 * and chunked bodies, trailers, pipelining, keep-alive, Expect, and every
 * refusal (400, 404, 405, 413, 417, 431, 505) are on the path with small
 * limits (1 KiB of header section, 8 fields, 1 KiB of body).
 *
 * Each input is sent three times, on a fresh connection each: in one
 * write, one byte per write (a read ends at every byte boundary), and in
 * pieces of pseudo-random sizes; a loop iteration and a flush point follow
 * every write. Invariants: those of fuzz_http.h, and the server writes the
 * same bytes all three times.
 *
 * tests/fuzz/run.sh builds and runs it briefly in make check; by hand, for
 * a long run (in-tree build):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_GNU_SOURCE -I. -Isrc -Isrc/transport -Ishm -I/usr/share/include/llhttp \
 *       tests/fuzz/fuzz_http.c <SOURCES below> <LIBS below> -o /tmp/fuzz_http
 *   /tmp/fuzz_http -max_total_time=1800 -max_len=4096 tests/fuzz/corpus/fuzz_http
 *
 * SOURCES: src/http.c src/conn.c src/transport/tls.c src/transport/tls13.c src/conf.c src/admin_conf.c src/conf_keys.c src/json.c src/util.c src/log.c src/wheel.c src/token.c src/b64.c src/transport/sockjs_frame.c src/engine/engine.c src/engine/redis_conf.c src/engine/redis_link.c src/engine/redis_wire.c src/pb.c src/smap.c shm/siphash.c src/proxy/proxy_conf.c src/jwks.c src/upstream.c src/dns.c
 * LIBS: @BUILD@/src/libllhttp.a @LLHTTP_LIBS@ -lhiredis -lev -ljwt -ljansson -lssl -lcrypto -luring -lm
 *
 * The first input byte seeds the random pieces; the rest is what the
 * client sends.
 */
#include "config.h"
#define FUZZ_HTTP_BARE 1 /* the HTTP layer alone */
#include "fuzz_http.h"

#include <stdio.h>

/* /health asks the engine; none here: it serves. */
bool node_health(struct worker *w, char *why, size_t n) { (void)w, (void)why, (void)n; return true; }

/* FNV-1a of D[0..N). */
static uint64_t fnv(const char *d, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)d[i]) * 0x100000001b3ULL;
	return h;
}

/* Answers 200 with what the parser made of REQ, one item per line. */
static void echo(struct http_req *req, void *arg)
{
	struct jw b = { 0 };
	char num[64];

	jw_lit(&b, req->method_name);
	jw_lit(&b, " ");
	jw_lit(&b, req->target);
	snprintf(num, sizeof(num), " 1.%d\n", req->version_minor);
	jw_lit(&b, num);
	jw_lit(&b, req->path);
	jw_lit(&b, "\n?");
	jw_lit(&b, req->query);
	jw_lit(&b, "\n");
	for (size_t i = 0; i < req->nheaders; i++) {
		jw_lit(&b, req->headers[i].name);
		jw_lit(&b, ": ");
		jw_lit(&b, req->headers[i].value);
		jw_lit(&b, "\n");
	}
	touch((struct pstr){ req->body, req->body_len });
	CHECK(req->body[req->body_len] == '\0');
	snprintf(num, sizeof(num), "body %zu %016llx%s\n", req->body_len,
		 (unsigned long long)fnv(req->body, req->body_len), req->upgrade ? " upgrade" : "");
	jw_lit(&b, num);
	http_respond(req, 200, "text/plain", b.buf, b.len);
	jw_free(&b);
}

static const char *const keys[] = {
	"http_server.max_header_size", "1024",
	"http_server.max_header_count", "8",
	"http_server.max_request_body_size", "1024",
	"health.enabled", "true",
	NULL,
};

/* The server's answer to D[0..N) sent on a fresh connection in pieces:
 * PIECE(&STATE) bytes at a time, appended to OUT. */
static void exchange(const uint8_t *d, size_t n, size_t (*piece)(uint32_t *), uint32_t state,
		     struct jw *out)
{
	bool seen = false;
	int sv[2];

	out->len = 0;
	fuzz_http_capture = out;
	fuzz_http_pair(sv);
	http_accept(&FW, sv[0], false);
	for (size_t off = 0; off < n;) {
		size_t m = piece(&state);

		if (m > n - off)
			m = n - off;
		if (send(sv[1], d + off, m, MSG_NOSIGNAL) != (ssize_t)m)
			break; /* the server closed, or stopped reading */
		off += m;
		fuzz_http_pump(sv[1], &seen);
	}
	fuzz_http_leave(sv[1], &seen);
	fuzz_http_capture = NULL;
}

static size_t whole(uint32_t *s) { return SIZE_MAX; }
static size_t bytewise(uint32_t *s) { return 1; }

/* 1 to 64 bytes, from an xorshift on *S. */
static size_t random_piece(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return 1 + *s % 64;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
	static bool ready;
	static struct jw a, b;

	if (!ready) {
		fuzz_http_setup(keys);
		CHECK(http_route_add("/echo", HTTP_ROUTE_EXACT, HTTP_METHODS_ANY, echo, NULL) == RT_OK);
		CHECK(http_route_add("/p/", HTTP_ROUTE_PREFIX,
				     HTTP_METHOD_BIT(HTTP_GET) | HTTP_METHOD_BIT(HTTP_POST), echo, NULL) == RT_OK);
		ready = true;
	}
	if (n < 1)
		return 0;
	exchange(d + 1, n - 1, whole, 0, &a);
	exchange(d + 1, n - 1, bytewise, 0, &b);
	CHECK(same((struct pstr){ a.buf, a.len }, (struct pstr){ b.buf, b.len }));
	exchange(d + 1, n - 1, random_piece, 0x9e3779b9u ^ d[0], &b);
	CHECK(same((struct pstr){ a.buf, a.len }, (struct pstr){ b.buf, b.len }));
	return 0;
}
