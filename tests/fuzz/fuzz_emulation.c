/*
 * fuzz_emulation.c - a libFuzzer target for what a client sends before it
 * has a session, or from outside one: the body of an /emulation POST
 * (proto_decode_emulation, JSON and protobuf EmulationRequest) and a bare
 * ConnectRequest (proto_decode_connect, the unidirectional transports).
 * tests/fuzz/run.sh builds and runs it briefly in make check; by hand,
 * for a long run:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. -Isrc \
 *       tests/fuzz/fuzz_emulation.c src/proto.c src/json.c src/util.c src/log.c \
 *       -o /tmp/fuzz_emulation
 *   /tmp/fuzz_emulation -max_total_time=1200 -max_len=4096 /tmp/corpus-emu
 *
 * (Debian's clang needs libclang-rt-14-dev for -fsanitize=fuzzer.)
 *
 * SOURCES: src/proto.c src/json.c src/util.c src/log.c src/pb.c
 *
 * The first input byte picks what is exercised; the rest is the input:
 *   0: proto_decode_emulation(JSON): every span is read; node, session
 *      and data written back as a JSON object (jw_str) must decode to the
 *      same bytes; data is then decoded as the frame of commands it is;
 *   1: the same with protobuf: spans point into the input, the request
 *      encoded again must decode to the same bytes;
 *   2: proto_decode_connect(JSON): one CMD_CONNECT with id 0, spans read,
 *      data valid JSON, subs sorted and distinct; wrapped as a Command
 *      ({"id":1,"connect":...}) it must decode through proto_decode with
 *      the same token, name and version;
 *   3: the same with protobuf (Command field 4).
 * Invariants are checked with __builtin_trap, so a violation is a crash.
 */
#include "config.h"
#include "fuzz.h"
#include "proto.h"
#include "json.h"

#include <stdlib.h>
#include <string.h>

static bool inside(struct pstr s, const char *p, size_t n)
{
	return s.n == 0 || (s.p >= p && s.n <= n && s.p - p <= (ptrdiff_t)(n - s.n));
}

static void pb_varint(struct jw *w, uint64_t v)
{
	char b[10];
	size_t k = 0;

	while (v >= 0x80) {
		b[k++] = (char)(v | 0x80);
		v >>= 7;
	}
	b[k++] = (char)v;
	jw_raw(w, b, k);
}

static void pb_bytes(struct jw *w, unsigned num, struct pstr s)
{
	if (s.n == 0)
		return;
	pb_varint(w, (uint64_t)num << 3 | 2);
	pb_varint(w, s.n);
	jw_raw(w, s.p, s.n);
}

/* The commands of an emulation request, as the session would read them. */
static void decode_frame(enum proto_fmt f, struct pstr data)
{
	struct cmd_batch b;

	if (data.n == 0)
		return; /* the emulation handler feeds no empty frame */

	if (proto_decode(f, data.p, data.n, 64, &b) == RT_OK) {
		CHECK(b.n > 0 && b.n <= 64);
		for (size_t i = 0; i < b.n; i++)
			CHECK(b.v[i].type <= CMD_SUB_REFRESH);
	}
	proto_batch_free(&b);
}

static void fuzz_emulation(enum proto_fmt f, const char *s, size_t n)
{
	struct emu_req r, r2;
	struct cmd_batch b, b2;
	struct jw w = { 0 };

	if (proto_decode_emulation(f, s, n, &r, &b) == RT_OK) {
		touch(r.node);
		touch(r.session);
		touch(r.data);
		if (f == PROTO_PB) /* bytes need no unescaping */
			CHECK(inside(r.node, s, n) && inside(r.session, s, n) && inside(r.data, s, n));
		/* Written back, it decodes to the same request. */
		if (f == PROTO_JSON) {
			jw_lit(&w, "{\"node\":");
			jw_str(&w, r.node.p, r.node.n);
			jw_lit(&w, ",\"session\":");
			jw_str(&w, r.session.p, r.session.n);
			jw_lit(&w, ",\"data\":");
			jw_str(&w, r.data.p, r.data.n);
			jw_lit(&w, "}");
			CHECK(js_valid(w.buf, w.len));
		} else {
			pb_bytes(&w, 1, r.node);
			pb_bytes(&w, 2, r.session);
			pb_bytes(&w, 3, r.data);
		}
		CHECK(proto_decode_emulation(f, w.buf ? w.buf : "", w.len, &r2, &b2) == RT_OK);
		CHECK(same(r.node, r2.node) && same(r.session, r2.session) && same(r.data, r2.data));
		proto_batch_free(&b2);
		decode_frame(f, r.data);
	}
	proto_batch_free(&b);
	jw_free(&w);
}

static void fuzz_connect(enum proto_fmt f, const char *s, size_t n)
{
	struct cmd_batch b, b2;
	struct jw w = { 0 };

	if (proto_decode_connect(f, s, n, &b) == RT_OK) {
		const struct connect_req *c = &b.v[0].connect;

		CHECK(b.n == 1 && b.v[0].type == CMD_CONNECT && b.v[0].id == 0);
		touch(c->token);
		touch(c->data);
		touch(c->name);
		touch(c->version);
		if (f == PROTO_JSON && c->data.n)
			CHECK(js_valid(c->data.p, c->data.n));
		for (size_t k = 0; k < c->nsubs; k++) {
			touch(c->subs[k].channel);
			touch(c->subs[k].req.epoch);
			if (k) /* sorted and distinct */
				CHECK(!same(c->subs[k - 1].channel, c->subs[k].channel));
		}
		/* As the connect of a Command, it reads the same. A JSON frame
		 * is split at newlines, so only one-line requests qualify; an
		 * empty one is no Command at all, and neither is a JSON null
		 * (an empty bare request, but an absent field in a Command). */
		bool wrap = n > 0;
		if (f == PROTO_JSON) {
			struct js_doc d = { 0 };
			wrap = wrap && !memchr(s, '\n', n) && !memchr(s, '\r', n) && js_scan(&d, s, n, 0) == RT_OK &&
			       js_type(&d, 0) != JS_NULL;
			js_free(&d);
			jw_lit(&w, "{\"id\":1,\"connect\":");
			jw_raw(&w, s, n);
			jw_lit(&w, "}");
		} else {
			struct jw cmd = { 0 };
			jw_raw(&cmd, "\x08\x01", 2);
			pb_bytes(&cmd, 4, (struct pstr){ s, n });
			pb_varint(&w, cmd.len);
			jw_raw(&w, cmd.buf, cmd.len);
			jw_free(&cmd);
		}
		if (wrap) {
			CHECK(proto_decode(f, w.buf, w.len, 64, &b2) == RT_OK);
			CHECK(b2.n == 1 && b2.v[0].type == CMD_CONNECT && b2.v[0].id == 1);
			CHECK(same(c->token, b2.v[0].connect.token) && same(c->name, b2.v[0].connect.name) &&
			      same(c->version, b2.v[0].connect.version) && c->nsubs == b2.v[0].connect.nsubs);
			proto_batch_free(&b2);
		}
	}
	proto_batch_free(&b);
	jw_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data + 1;

	if (size == 0)
		return 0;
	switch (data[0] % 4) {
	case 0:
		fuzz_emulation(PROTO_JSON, s, size - 1);
		break;
	case 1:
		fuzz_emulation(PROTO_PB, s, size - 1);
		break;
	case 2:
		fuzz_connect(PROTO_JSON, s, size - 1);
		break;
	default:
		fuzz_connect(PROTO_PB, s, size - 1);
	}
	return 0;
}
