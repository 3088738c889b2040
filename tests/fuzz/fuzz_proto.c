/*
 * fuzz_proto.c - a libFuzzer target for the client protocol codec and the
 * JSON scanner. tests/fuzz/run.sh builds and runs it briefly in make check;
 * by hand, for a long run:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -I. -Isrc \
 *       tests/fuzz/fuzz_proto.c src/proto.c src/json.c src/util.c src/log.c \
 *       -o /tmp/fuzz_proto
 *   /tmp/fuzz_proto -max_total_time=300 -max_len=4096 /tmp/corpus
 *
 * SOURCES: src/proto.c src/json.c src/util.c src/log.c src/pb.c
 *
 * The first input byte picks what is exercised; the rest is the input:
 *   0: proto_decode(JSON), then every decoded span is read and fed back
 *      through the JSON encoders, whose output must be valid JSON;
 *   1: proto_decode(protobuf), the same, with the protobuf encoders too;
 *   2: js_scan must agree with js_valid, every token must be well formed
 *      and every string must unescape to valid JSON through jw_str.
 * Invariants are checked with __builtin_trap, so a violation is a crash.
 */
#include "config.h"
#include "fuzz.h"
#include "proto.h"
#include "json.h"

#include <stdlib.h>
#include <string.h>

/* Encodes replies from what was decoded; JSON output must stay valid. */
static void reencode(enum proto_fmt f, const struct cmd *c)
{
	struct jw w = { 0 };
	struct client_info ci = { c->subscribe.channel, c->subscribe.token, c->subscribe.data, { 0 } };
	struct publication p = { .data = c->publish.data, .info = &ci, .offset = c->id };
	struct sub_result sr = { .epoch = c->subscribe.epoch, .data = c->subscribe.data, .offset = c->subscribe.offset,
				 .pubs = &p, .npubs = 1, .recoverable = true };
	int rc;

	rc = proto_push_pub(&w, f, c->publish.channel, &p);
	if (f == PROTO_JSON && rc == RT_OK)
		CHECK(js_valid(w.buf, w.len) && !memchr(w.buf, '\n', w.len));
	w.len = 0;
	rc = proto_reply_subscribe(&w, f, c->id, &sr);
	if (f == PROTO_JSON && rc == RT_OK)
		CHECK(js_valid(w.buf, w.len));
	w.len = 0;
	rc = proto_reply_presence(&w, f, c->id, &ci, 1);
	if (f == PROTO_JSON && rc == RT_OK)
		CHECK(js_valid(w.buf, w.len));
	if (f == PROTO_PB)
		CHECK(rc == RT_OK);
	jw_free(&w);
}

static void fuzz_decode(enum proto_fmt f, const char *s, size_t n)
{
	struct cmd_batch b;

	if (proto_decode(f, s, n, 64, &b) == RT_OK) {
		CHECK(b.n > 0 && b.n <= 64);
		for (size_t i = 0; i < b.n; i++) {
			const struct cmd *c = &b.v[i];
			CHECK(c->type <= CMD_SUB_REFRESH);
			switch (c->type) {
			case CMD_CONNECT:
				touch(c->connect.token);
				touch(c->connect.data);
				touch(c->connect.name);
				touch(c->connect.version);
				for (size_t k = 0; k < c->connect.nsubs; k++) {
					touch(c->connect.subs[k].channel);
					touch(c->connect.subs[k].req.epoch);
					if (k)   /* sorted and distinct */
						CHECK(c->connect.subs[k - 1].channel.n != c->connect.subs[k].channel.n ||
						      memcmp(c->connect.subs[k - 1].channel.p, c->connect.subs[k].channel.p,
							     c->connect.subs[k].channel.n) != 0);
				}
				break;
			case CMD_SUBSCRIBE:
				touch(c->subscribe.channel);
				touch(c->subscribe.token);
				touch(c->subscribe.epoch);
				touch(c->subscribe.delta);
				touch(c->subscribe.data);
				if (f == PROTO_JSON && c->subscribe.data.n)
					CHECK(js_valid(c->subscribe.data.p, c->subscribe.data.n));
				break;
			case CMD_PUBLISH:
				touch(c->publish.channel);
				touch(c->publish.data);
				if (f == PROTO_JSON && c->publish.data.n)
					CHECK(js_valid(c->publish.data.p, c->publish.data.n));
				break;
			case CMD_HISTORY:
				touch(c->history.channel);
				touch(c->history.since_epoch);
				break;
			default:
				touch(c->rpc.method);
				touch(c->rpc.data);
			}
			if (c->type == CMD_SUBSCRIBE || c->type == CMD_PUBLISH) {
				reencode(PROTO_JSON, c);
				reencode(PROTO_PB, c);
			}
		}
	}
	proto_batch_free(&b);
}

static void fuzz_scan(const char *s, size_t n)
{
	static struct js_doc d;
	struct jw w = { 0 };
	int rc;

	d.depth_limit = JS_DEPTH_MAX;
	rc = js_scan(&d, s, n, 0);
	CHECK((rc == RT_OK) == js_valid(s, n));
	if (rc != RT_OK)
		return;
	CHECK(d.ntok > 0 && d.t[0].next == d.ntok);
	for (uint32_t i = 0; i < d.ntok; i++) {
		const struct js_tok *t = &d.t[i];
		CHECK(t->next > i && t->next <= d.ntok);
		CHECK((size_t)t->start + t->len <= n);
		CHECK(js_valid(js_raw(&d, i), js_rawlen(&d, i)) || t->type == JS_STRING);
		if (t->type == JS_STRING) {
			char *u = malloc(t->len);
			int64_t un = js_str(&d, i, u, t->len);
			CHECK(un >= 0 && un <= (int64_t)t->len - 2);
			w.len = 0;
			jw_str(&w, u, (size_t)un);
			CHECK(js_valid(w.buf, w.len));
			if (strlen(u) == (size_t)un)    /* no embedded NUL */
				CHECK(js_str_eq(&d, i, u));
			free(u);
		} else if (t->type == JS_NUMBER) {
			int64_t v;
			uint64_t uv;
			(void)js_int64(&d, i, &v);
			(void)js_uint64(&d, i, &uv);
		}
	}
	if (d.t[0].type == JS_OBJECT) {
		uint32_t it = 0, k, v, cnt = 0;
		while (js_next_member(&d, 0, &it, &k, &v))
			cnt++;
		CHECK(cnt == d.t[0].size);
		(void)js_get(&d, 0, "channel", true);
	}
	jw_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
		fuzz_decode(PROTO_JSON, (const char *)data + 1, size - 1);
		break;
	case 1:
		fuzz_decode(PROTO_PB, (const char *)data + 1, size - 1);
		break;
	default:
		fuzz_scan((const char *)data + 1, size - 1);
	}
	return 0;
}
