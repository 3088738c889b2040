/*
 * fuzz_uni_connect.c - a libFuzzer target for what the unidirectional
 * transports (src/transport/uni.c) make of a client's ConnectRequest: the
 * query string of uni_sse / uni_websocket (?cf_connect=, form-decoded as
 * Go's url.Query().Get does, transport_query_get in query.c) or a request
 * body / first WebSocket message, decoded as a bare ConnectRequest
 * (proto_decode_connect), and the connect push built from what was decoded,
 * which uni.c narrows from {"push":{...}} to the bare Push.
 * tests/fuzz/run.sh builds and runs it briefly in make check; by hand, for
 * a long run (clang 14 and Debian's libclang-rt-14-dev):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_GNU_SOURCE -I. -Isrc -Isrc/transport -I/usr/share/include/llhttp \
 *       tests/fuzz/fuzz_uni_connect.c src/transport/query.c src/proto.c src/json.c \
 *       src/util.c src/log.c -o /tmp/fuzz_uni_connect
 *   /tmp/fuzz_uni_connect -max_total_time=1200 -max_len=4096 /tmp/corpus_uni
 *
 * SOURCES: src/transport/query.c src/proto.c src/json.c src/util.c src/log.c src/pb.c
 *
 * The whole input is the query string (it is NUL-terminated first, as
 * llhttp hands it over) and also, as it is, a request body. Invariants are
 * checked with __builtin_trap, and undefined behaviour is fatal
 * (-fno-sanitize-recover), so either is a crash:
 *   - transport_query_get finds cf_connect exactly when transport_query_is
 *     agrees with the value it found (values without a NUL byte);
 *   - a decoded request is one connect command whose spans are readable,
 *     whose subs are sorted and distinct, and which decodes the same again
 *     when decoded twice;
 *   - the connect push built from it is {"push":<valid JSON object>}, so
 *     that the bytes uni.c sends (8 in, one short at the end) are JSON.
 */
#include "config.h"
#include "fuzz.h"
#include "proto.h"
#include "json.h"
#include "transport.h"

#include <stdlib.h>
#include <string.h>

/* The connect push a session would send for request R: its subs echoed as
 * recovered subscriptions. Checks the envelope uni.c strips. */
static void push_connect(const struct connect_req *r)
{
	struct connect_sub_result *subs = calloc(r->nsubs + 1, sizeof(*subs));
	struct connect_result res = { 0 };
	struct jw w = { 0 };
	const size_t open = sizeof("{\"push\":") - 1;

	for (size_t i = 0; i < r->nsubs; i++) {
		subs[i].channel = r->subs[i].channel;
		subs[i].res.recoverable = true;
		subs[i].res.recovered = r->subs[i].req.recover;
		subs[i].res.epoch = r->subs[i].req.epoch;
		subs[i].res.offset = r->subs[i].req.offset;
	}
	res.client = PSTR("00000000-0000-0000-0000-000000000000");
	res.version = r->version;
	res.data = r->data;
	res.ping = 25;
	res.subs = subs;
	res.nsubs = r->nsubs;
	if (proto_push_connect(&w, PROTO_JSON, &res) == RT_OK) {
		CHECK(w.len > open + 1 && memcmp(w.buf, "{\"push\":", open) == 0 && w.buf[w.len - 1] == '}');
		CHECK(js_valid(w.buf, w.len));
		CHECK(js_valid(w.buf + open, w.len - open - 1));
		CHECK(w.buf[open] == '{' && !memchr(w.buf, '\n', w.len));
	} else {
		CHECK(r->data.n > 0); /* only raw data can make it fail */
	}
	jw_free(&w);
	free(subs);
}

/* Decodes P[0..N) as a bare ConnectRequest and checks what came out. */
static void decode(const char *p, size_t n)
{
	struct cmd_batch a, b;
	int rc = proto_decode_connect(PROTO_JSON, p, n, &a);

	if (rc == RT_OK) {
		const struct connect_req *r = &a.v[0].connect;

		CHECK(a.n == 1 && a.v[0].type == CMD_CONNECT && a.v[0].id == 0);
		touch(r->token);
		touch(r->data);
		touch(r->name);
		touch(r->version);
		if (r->data.n)
			CHECK(js_valid(r->data.p, r->data.n));
		for (size_t k = 0; k < r->nsubs; k++) {
			touch(r->subs[k].channel);
			touch(r->subs[k].req.epoch);
			if (k)
				CHECK(!same(r->subs[k - 1].channel, r->subs[k].channel));
		}
		/* Deterministic: the same input decodes the same. */
		CHECK(proto_decode_connect(PROTO_JSON, p, n, &b) == RT_OK);
		CHECK(same(b.v[0].connect.token, r->token) && b.v[0].connect.nsubs == r->nsubs);
		proto_batch_free(&b);
		push_connect(r);
	}
	proto_batch_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *q = malloc(size + 1);
	struct jw v = { 0 };

	memcpy(q, data, size);
	q[size] = '\0';
	if (transport_query_get(q, "cf_connect", &v)) {
		jw_raw(&v, "", 1); /* NUL-terminated for transport_query_is */
		if (strlen(v.buf) == v.len - 1)
			CHECK(transport_query_is(q, "cf_connect", v.buf));
		if (v.len > 1)
			decode(v.buf, v.len - 1);
	} else {
		CHECK(!transport_query_is(q, "cf_connect", ""));
	}
	decode((const char *)data, size);
	jw_free(&v);
	free(q);
	return 0;
}
