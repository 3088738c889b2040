/*
 * test_proto.c - the client protocol codec: the test vectors of
 * client-protocol.md §11 byte for byte, decoding of every command in both
 * formats, encoding of every reply and push in both formats, malformed
 * frames, payloads that cannot be written as JSON, and round trips.
 *
 * The protobuf vectors marked "SDK" were produced with the protobuf codec of
 * the official centrifuge-js SDK (the `centrifuge` npm package, 5.x,
 * build/protobuf: Command/Reply encodeDelimited), given only non-default
 * values so that its output is what Go's vtprotobuf writes too.
 */
#include "config.h"
#include "proto.h"
#include "../tap.h"
#include "util.h"

#include <stdlib.h>

/* ---- helpers ------------------------------------------------------------ */

static size_t unhex(const char *hex, char *out)
{
	size_t n = 0;

	for (; hex[0] && hex[1]; hex += 2) {
		unsigned v;
		sscanf(hex, "%2x", &v);
		out[n++] = (char)v;
	}
	return n;
}

static char *tohex(const char *p, size_t n)
{
	static char buf[8192];
	size_t i;

	for (i = 0; i < n && i * 2 + 2 < sizeof(buf); i++)
		sprintf(buf + i * 2, "%02x", (unsigned char)p[i]);
	buf[i * 2] = '\0';
	return buf;
}

static struct jw out;

/* Output equals the string WANT (JSON) exactly. */
#define JSON_IS(want, ...) do { out.len = 0; int rc_ = (__VA_ARGS__); \
	bool ok_ = rc_ == RT_OK && out.len == strlen(want) && memcmp(out.buf, want, out.len) == 0; \
	if (!ok(ok_, "json: %s", want)) printf("#   rc %d, got %.*s\n", rc_, (int)out.len, out.buf); } while (0)

/* Output equals the hex string WANT (protobuf) exactly. */
#define PB_IS(name, want, ...) do { out.len = 0; int rc_ = (__VA_ARGS__); char b_[4096]; \
	size_t n_ = unhex(want, b_); \
	bool ok_ = rc_ == RT_OK && out.len == n_ && memcmp(out.buf, b_, n_) == 0; \
	if (!ok(ok_, "protobuf: %s", name)) printf("#   rc %d, got %s\n#   want    %s\n", rc_, \
		tohex(out.buf, out.len), want); } while (0)

static bool span_eq(struct pstr s, const char *want)
{
	return s.n == strlen(want) && (s.n == 0 || memcmp(s.p, want, s.n) == 0);
}

#define SPAN_IS(s, want, name) do { struct pstr s_ = (s); \
	if (!ok(span_eq(s_, want), "%s = %s", name, want)) printf("#   got \"%.*s\"\n", (int)s_.n, s_.p ? s_.p : ""); } while (0)

static int decode_json(const char *frame, struct cmd_batch *b)
{
	return proto_decode(PROTO_JSON, frame, strlen(frame), 0, b);
}

/* Decodes the protobuf frame given in hex; the bytes stay valid until the
 * next call. */
static int decode_pb(const char *hex, struct cmd_batch *b)
{
	static char buf[4096];
	size_t n = unhex(hex, buf);
	return proto_decode(PROTO_PB, buf, n, 0, b);
}

/* ---- §11 vectors, JSON ------------------------------------------------ */

static const struct client_info alice = { PSTR("42"), PSTR("c5a1…"), PSTR("{\"name\":\"Alice\"}"), { 0 } };
static const struct client_info anon = { { 0 }, PSTR("9b0e…"), { 0 }, { 0 } };

static void test_vectors_json(void)
{
	struct cmd_batch b;
	struct cmd *c;

	/* V1 */
	ok(decode_json("{\"connect\":{\"token\":\"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiJ9.xxx\","
		       "\"name\":\"js\"},\"id\":1}\n{\"subscribe\":{\"channel\":\"news\",\"flag\":1},\"id\":2}", &b)
	   == RT_OK, "V1: decode");
	is_int(b.n, 2, "V1: two commands");
	c = &b.v[0];
	ok(c->type == CMD_CONNECT && c->id == 1, "V1: connect id 1");
	SPAN_IS(c->connect.token, "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiJ9.xxx", "V1: token");
	SPAN_IS(c->connect.name, "js", "V1: name");
	ok(c->connect.nsubs == 0 && c->connect.data.n == 0, "V1: no subs, no data");
	c = &b.v[1];
	ok(c->type == CMD_SUBSCRIBE && c->id == 2 && c->subscribe.flag == 1, "V1: subscribe id 2 flag 1");
	SPAN_IS(c->subscribe.channel, "news", "V1: channel");
	proto_batch_free(&b);

	struct connect_result cr = { .client = PSTR("c5a1…"), .version = PSTR("6.9.1"), .ping = 25, .pong = true };
	JSON_IS("{\"id\":1,\"connect\":{\"client\":\"c5a1…\",\"version\":\"6.9.1\",\"ping\":25,\"pong\":true}}",
		proto_reply_connect(&out, PROTO_JSON, 1, &cr));
	struct sub_result empty = { 0 };
	JSON_IS("{\"id\":2,\"subscribe\":{}}", proto_reply_subscribe(&out, PROTO_JSON, 2, &empty));

	/* V2 */
	cr.expires = true;
	cr.ttl = 600;
	JSON_IS("{\"id\":1,\"connect\":{\"client\":\"c5a1…\",\"version\":\"6.9.1\",\"expires\":true,\"ttl\":600,"
		"\"ping\":25,\"pong\":true}}", proto_reply_connect(&out, PROTO_JSON, 1, &cr));
	ok(decode_json("{\"refresh\":{\"token\":\"eyJ…new…\"},\"id\":9}", &b) == RT_OK &&
	   b.v[0].type == CMD_REFRESH && b.v[0].id == 9, "V2: refresh decoded");
	SPAN_IS(b.v[0].refresh.token, "eyJ…new…", "V2: token");
	proto_batch_free(&b);
	JSON_IS("{\"id\":9,\"refresh\":{\"expires\":true,\"ttl\":600}}",
		proto_reply_refresh(&out, PROTO_JSON, 9, CMD_REFRESH, true, 600));

	/* V3 */
	JSON_IS("{}", proto_ping(&out, PROTO_JSON));
	ok(decode_json("{}", &b) == RT_OK && b.n == 1 && b.v[0].type == CMD_EMPTY && b.v[0].id == 0,
	   "V3: {} is a pong");
	proto_batch_free(&b);

	/* V4 */
	ok(decode_json("{\"subscribe\":{\"channel\":\"chat\",\"flag\":1},\"id\":3}", &b) == RT_OK &&
	   b.v[0].type == CMD_SUBSCRIBE && b.v[0].id == 3, "V4: subscribe");
	proto_batch_free(&b);
	struct sub_result sr = { .recoverable = true, .epoch = PSTR("FmHkdJbV"), .offset = 10, .positioned = true };
	JSON_IS("{\"id\":3,\"subscribe\":{\"recoverable\":true,\"epoch\":\"FmHkdJbV\",\"offset\":10,\"positioned\":true}}",
		proto_reply_subscribe(&out, PROTO_JSON, 3, &sr));
	struct client_info pubinfo = { PSTR("42"), PSTR("c5a1…"), { 0 }, { 0 } };
	struct publication pub = { .data = PSTR("{\"text\":\"hi\"}"), .info = &pubinfo, .offset = 11 };
	JSON_IS("{\"push\":{\"channel\":\"chat\",\"pub\":{\"data\":{\"text\":\"hi\"},\"info\":{\"user\":\"42\","
		"\"client\":\"c5a1…\"},\"offset\":11}}}", proto_push_pub(&out, PROTO_JSON, PSTR("chat"), &pub));

	/* V5 */
	ok(decode_json("{\"subscribe\":{\"channel\":\"chat\",\"flag\":1,\"recover\":true,\"offset\":11,"
		       "\"epoch\":\"FmHkdJbV\"},\"id\":2}", &b) == RT_OK, "V5: decode");
	c = &b.v[0];
	ok(c->type == CMD_SUBSCRIBE && c->subscribe.recover && c->subscribe.offset == 11 &&
	   c->subscribe.flag == 1, "V5: recover from 11");
	SPAN_IS(c->subscribe.epoch, "FmHkdJbV", "V5: epoch");
	proto_batch_free(&b);
	struct publication rec[2] = {
		{ .data = PSTR("{\"text\":\"a\"}"), .offset = 12 },
		{ .data = PSTR("{\"text\":\"b\"}"), .offset = 13 },
	};
	struct sub_result v5 = { .recoverable = true, .epoch = PSTR("FmHkdJbV"), .pubs = rec, .npubs = 2,
				 .recovered = true, .offset = 11, .positioned = true, .was_recovering = true };
	JSON_IS("{\"id\":2,\"subscribe\":{\"recoverable\":true,\"epoch\":\"FmHkdJbV\",\"publications\":"
		"[{\"data\":{\"text\":\"a\"},\"offset\":12},{\"data\":{\"text\":\"b\"},\"offset\":13}],"
		"\"recovered\":true,\"offset\":11,\"positioned\":true,\"was_recovering\":true}}",
		proto_reply_subscribe(&out, PROTO_JSON, 2, &v5));
	struct sub_result v5f = { .recoverable = true, .epoch = PSTR("QpZtWmAa"), .offset = 57, .positioned = true,
				  .was_recovering = true };
	JSON_IS("{\"id\":2,\"subscribe\":{\"recoverable\":true,\"epoch\":\"QpZtWmAa\",\"offset\":57,"
		"\"positioned\":true,\"was_recovering\":true}}", proto_reply_subscribe(&out, PROTO_JSON, 2, &v5f));

	/* V6 */
	ok(decode_json("{\"presence\":{\"channel\":\"chat\"},\"id\":4}\n{\"presence_stats\":{\"channel\":\"chat\"},\"id\":5}",
		       &b) == RT_OK && b.n == 2, "V6: decode");
	ok(b.v[0].type == CMD_PRESENCE && b.v[0].id == 4 && span_eq(b.v[0].presence.channel, "chat"), "V6: presence");
	ok(b.v[1].type == CMD_PRESENCE_STATS && b.v[1].id == 5 && span_eq(b.v[1].presence_stats.channel, "chat"),
	   "V6: presence_stats");
	proto_batch_free(&b);
	struct client_info pres[2] = { alice, anon };
	JSON_IS("{\"id\":4,\"presence\":{\"presence\":{\"c5a1…\":{\"user\":\"42\",\"client\":\"c5a1…\",\"conn_info\":"
		"{\"name\":\"Alice\"}},\"9b0e…\":{\"user\":\"\",\"client\":\"9b0e…\"}}}}",
		proto_reply_presence(&out, PROTO_JSON, 4, pres, 2));
	JSON_IS("{\"id\":4,\"presence\":{\"presence\":{}}}", proto_reply_presence(&out, PROTO_JSON, 4, NULL, 0));
	JSON_IS("{\"id\":5,\"presence_stats\":{\"num_clients\":2,\"num_users\":2}}",
		proto_reply_presence_stats(&out, PROTO_JSON, 5, 2, 2));
	JSON_IS("{\"id\":5,\"presence_stats\":{\"num_clients\":0,\"num_users\":0}}",
		proto_reply_presence_stats(&out, PROTO_JSON, 5, 0, 0));

	/* V7 */
	ok(decode_json("{\"history\":{\"channel\":\"chat\",\"limit\":2,\"reverse\":true},\"id\":6}\n"
		       "{\"history\":{\"channel\":\"chat\"},\"id\":7}\n"
		       "{\"history\":{\"channel\":\"chat\",\"since\":{\"offset\":3,\"epoch\":\"old\"},\"limit\":10},\"id\":8}",
		       &b) == RT_OK && b.n == 3, "V7: decode");
	ok(b.v[0].type == CMD_HISTORY && b.v[0].history.limit == 2 && b.v[0].history.reverse &&
	   !b.v[0].history.has_since, "V7: limit 2 reverse");
	ok(b.v[1].history.limit == 0 && !b.v[1].history.reverse && !b.v[1].history.has_since, "V7: defaults");
	ok(b.v[2].history.limit == 10 && b.v[2].history.has_since && b.v[2].history.since_offset == 3 &&
	   span_eq(b.v[2].history.since_epoch, "old"), "V7: since 3/old");
	proto_batch_free(&b);
	struct publication hist[2] = {
		{ .data = PSTR("{\"text\":\"b\"}"), .offset = 13 },
		{ .data = PSTR("{\"text\":\"a\"}"), .offset = 12 },
	};
	JSON_IS("{\"id\":6,\"history\":{\"publications\":[{\"data\":{\"text\":\"b\"},\"offset\":13},{\"data\":"
		"{\"text\":\"a\"},\"offset\":12}],\"epoch\":\"FmHkdJbV\",\"offset\":13}}",
		proto_reply_history(&out, PROTO_JSON, 6, hist, 2, PSTR("FmHkdJbV"), 13));
	JSON_IS("{\"id\":7,\"history\":{\"publications\":[],\"epoch\":\"FmHkdJbV\",\"offset\":13}}",
		proto_reply_history(&out, PROTO_JSON, 7, NULL, 0, PSTR("FmHkdJbV"), 13));
	JSON_IS("{\"id\":7,\"history\":{\"publications\":[],\"epoch\":\"\",\"offset\":0}}",
		proto_reply_history(&out, PROTO_JSON, 7, NULL, 0, (struct pstr){ 0 }, 0));
	JSON_IS("{\"id\":8,\"error\":{\"code\":112,\"message\":\"unrecoverable position\"}}",
		proto_reply_error(&out, PROTO_JSON, 8, 112, proto_error_text(112), proto_error_temporary(112)));

	/* V8 */
	ok(decode_json("{\"publish\":{\"channel\":\"chat\",\"data\":{\"text\":\"c\"}},\"id\":10}\n"
		       "{\"rpc\":{\"method\":\"method\",\"data\":{\"my\":\"data\"}},\"id\":11}\n"
		       "{\"send\":{\"data\":{\"hello\":1}}}\n"
		       "{\"subscribe\":{\"channel\":\"private:x\"},\"id\":12}", &b) == RT_OK && b.n == 4, "V8: decode");
	ok(b.v[0].type == CMD_PUBLISH && b.v[0].id == 10 && span_eq(b.v[0].publish.channel, "chat") &&
	   span_eq(b.v[0].publish.data, "{\"text\":\"c\"}"), "V8: publish with raw data");
	ok(b.v[1].type == CMD_RPC && b.v[1].id == 11 && span_eq(b.v[1].rpc.method, "method") &&
	   span_eq(b.v[1].rpc.data, "{\"my\":\"data\"}"), "V8: rpc");
	ok(b.v[2].type == CMD_SEND && b.v[2].id == 0 && span_eq(b.v[2].send.data, "{\"hello\":1}"), "V8: send, id 0");
	ok(b.v[3].type == CMD_SUBSCRIBE && b.v[3].id == 12 && span_eq(b.v[3].subscribe.channel, "private:x"),
	   "V8: subscribe");
	proto_batch_free(&b);
	JSON_IS("{\"id\":10,\"publish\":{}}", proto_reply_empty(&out, PROTO_JSON, 10, CMD_PUBLISH));
	JSON_IS("{\"id\":11,\"error\":{\"code\":108,\"message\":\"not available\"}}",
		proto_reply_error(&out, PROTO_JSON, 11, 108, proto_error_text(108), proto_error_temporary(108)));
	JSON_IS("{\"id\":12,\"error\":{\"code\":103,\"message\":\"permission denied\"}}",
		proto_reply_error(&out, PROTO_JSON, 12, 103, proto_error_text(103), false));

	/* V9 */
	struct client_info joiner = { PSTR("7"), PSTR("d3f2…"), { 0 }, { 0 } };
	JSON_IS("{\"push\":{\"channel\":\"chat\",\"join\":{\"info\":{\"user\":\"7\",\"client\":\"d3f2…\"}}}}",
		proto_push_join(&out, PROTO_JSON, PSTR("chat"), &joiner));
	JSON_IS("{\"push\":{\"channel\":\"chat\",\"unsubscribe\":{\"code\":2500,\"reason\":\"insufficient state\"}}}",
		proto_push_unsubscribe(&out, PROTO_JSON, PSTR("chat"), 2500, proto_unsubscribe_text(2500)));
	JSON_IS("{\"push\":{\"message\":{\"data\":{\"note\":\"hello\"}}}}",
		proto_push_message(&out, PROTO_JSON, PSTR("{\"note\":\"hello\"}")));
	struct sub_result v9 = { .recoverable = true, .epoch = PSTR("xq1P"), .offset = 3, .positioned = true };
	JSON_IS("{\"push\":{\"channel\":\"personal#42\",\"subscribe\":{\"recoverable\":true,\"epoch\":\"xq1P\","
		"\"offset\":3,\"positioned\":true}}}", proto_push_subscribe(&out, PROTO_JSON, PSTR("personal#42"), &v9));
	JSON_IS("{\"push\":{\"disconnect\":{\"code\":3001,\"reason\":\"shutdown\"}}}",
		proto_push_disconnect(&out, PROTO_JSON, 3001, proto_disconnect_text(3001)));
	is_str(proto_disconnect_text(3501), "bad request", "V9: 3501 bad request");

	/* V10: the SSE connect reply, and the command carried in /emulation's
	 * JSON string. */
	struct connect_result v10 = { .client = PSTR("c5a1…"), .version = PSTR("6.9.1"), .ping = 25, .pong = true,
				      .session = PSTR("8e77…"), .node = PSTR("0f3c…") };
	JSON_IS("{\"id\":1,\"connect\":{\"client\":\"c5a1…\",\"version\":\"6.9.1\",\"ping\":25,\"pong\":true,"
		"\"session\":\"8e77…\",\"node\":\"0f3c…\"}}", proto_reply_connect(&out, PROTO_JSON, 1, &v10));
	{
		struct js_doc d = { 0 };
		const char *emu = "{\"session\":\"8e77…\",\"node\":\"0f3c…\",\"data\":"
				  "\"{\\\"subscribe\\\":{\\\"channel\\\":\\\"news\\\",\\\"flag\\\":1},\\\"id\\\":2}\"}";
		char cmdbuf[256];
		int64_t i, n;
		ok(js_scan(&d, emu, strlen(emu), 0) == RT_OK && (i = js_get(&d, 0, "data", false)) > 0 &&
		   (n = js_str(&d, (uint32_t)i, cmdbuf, sizeof(cmdbuf))) > 0, "V10: emulation body");
		ok(proto_decode(PROTO_JSON, cmdbuf, strlen(cmdbuf), 0, &b) == RT_OK && b.v[0].type == CMD_SUBSCRIBE &&
		   b.v[0].id == 2 && span_eq(b.v[0].subscribe.channel, "news"), "V10: emulated subscribe");
		proto_batch_free(&b);
		js_free(&d);
	}
	JSON_IS("{\"id\":2,\"subscribe\":{}}", proto_reply_subscribe(&out, PROTO_JSON, 2, &empty));
}

/* ---- §11 V12 and the SDK vectors, protobuf ------------------------------ */

static void test_vectors_pb(void)
{
	struct cmd_batch b;
	struct cmd *c;

	/* V12 */
	ok(decode_pb("08080122042202" "6a73", &b) == RT_OK && b.n == 1, "V12: connect decodes");
	c = &b.v[0];
	ok(c->type == CMD_CONNECT && c->id == 1 && span_eq(c->connect.name, "js"), "V12: {id:1, connect:{name:js}}");
	proto_batch_free(&b);
	struct connect_result cr = { .client = PSTR("abc"), .ping = 25, .pong = true };
	PB_IS("V12 connect reply", "0d08012a090a036162633819" "4001", proto_reply_connect(&out, PROTO_PB, 1, &cr));
	struct publication pub = { .data = PSTR("{}"), .offset = 1 };
	PB_IS("V12 publication push", "10220e12046e657773220622027b7d3001",
	      proto_push_pub(&out, PROTO_PB, PSTR("news"), &pub));
	PB_IS("V12 ping", "00", proto_ping(&out, PROTO_PB));
	ok(decode_pb("00", &b) == RT_OK && b.n == 1 && b.v[0].type == CMD_EMPTY && b.v[0].id == 0, "V12: pong 00");
	proto_batch_free(&b);

	/* SDK: every command. */
	ok(decode_pb("2d080122290a03746f6b12077b2261223a317d1a100a046e6577731208180132026570380522026a732a03312e30",
		     &b) == RT_OK, "SDK connect");
	c = &b.v[0];
	ok(c->type == CMD_CONNECT && c->id == 1, "connect id 1");
	SPAN_IS(c->connect.token, "tok", "connect token");
	SPAN_IS(c->connect.data, "{\"a\":1}", "connect data");
	SPAN_IS(c->connect.name, "js", "connect name");
	SPAN_IS(c->connect.version, "1.0", "connect version");
	ok(c->connect.nsubs == 1 && span_eq(c->connect.subs[0].channel, "news") && c->connect.subs[0].req.recover &&
	   c->connect.subs[0].req.offset == 5 && span_eq(c->connect.subs[0].req.epoch, "ep"), "connect subs");
	proto_batch_free(&b);

	/* ConnectRequest.headers (field 6, map<string,string>): entries in
	 * the order sent, an empty value kept. */
	ok(decode_pb("14080122103207" "0a0161120262633205" "0a01781200", &b) == RT_OK, "connect headers (pb)");
	c = &b.v[0];
	ok(c->type == CMD_CONNECT && c->connect.nhdrs == 2, "two headers");
	if (c->connect.nhdrs == 2) {
		SPAN_IS(c->connect.hdrs[0].name, "a", "header name");
		SPAN_IS(c->connect.hdrs[0].value, "bc", "header value");
		SPAN_IS(c->connect.hdrs[1].name, "x", "second header name");
		SPAN_IS(c->connect.hdrs[1].value, "", "empty value");
	}
	proto_batch_free(&b);
	ok(decode_json("{\"id\":1,\"connect\":{\"headers\":{\"X-A\":\"v\\r\\n\",\"b\":\"\"}}}", &b) == RT_OK,
	   "connect headers (JSON)");
	c = &b.v[0];
	ok(c->connect.nhdrs == 2, "two JSON headers");
	if (c->connect.nhdrs == 2) {
		SPAN_IS(c->connect.hdrs[0].name, "X-A", "JSON header name");
		SPAN_IS(c->connect.hdrs[0].value, "v\r\n", "JSON header value, unescaped (checked when kept)");
	}
	proto_batch_free(&b);
	ok(decode_json("{\"id\":1,\"connect\":{\"headers\":{\"a\":1}}}", &b) == RT_INVAL,
	   "a header value that is not a string is refused");
	proto_batch_free(&b);

	ok(decode_pb("2808022a240a04636861741201741801320145380b42027b7d4801500158016206666f7373696c7003", &b) == RT_OK,
	   "SDK subscribe");
	c = &b.v[0];
	ok(c->type == CMD_SUBSCRIBE && c->id == 2 && span_eq(c->subscribe.channel, "chat") &&
	   span_eq(c->subscribe.token, "t") && c->subscribe.recover && span_eq(c->subscribe.epoch, "E") &&
	   c->subscribe.offset == 11 && span_eq(c->subscribe.data, "{}") && c->subscribe.positioned &&
	   c->subscribe.recoverable && c->subscribe.join_leave && span_eq(c->subscribe.delta, "fossil") &&
	   c->subscribe.flag == 3 && !c->subscribe.has_tf && c->subscribe.type == 0, "subscribe: every field");
	proto_batch_free(&b);

	static const struct { const char *hex; enum cmd_type t; uint32_t id; } simple[] = {
		{ "0a080332060a0463686174", CMD_UNSUBSCRIBE, 3 },
		{ "0a080542060a0463686174", CMD_PRESENCE, 5 },
		{ "0a08064a060a0463686174", CMD_PRESENCE_STATS, 6 },
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(simple); i++) {
		ok(decode_pb(simple[i].hex, &b) == RT_OK && b.v[0].type == simple[i].t && b.v[0].id == simple[i].id &&
		   span_eq(b.v[0].unsubscribe.channel, "chat"), "SDK type %d: channel chat", simple[i].t);
		proto_batch_free(&b);
	}
	ok(decode_pb("1808043a140a0463686174120c7b2274657874223a2263227d", &b) == RT_OK && b.v[0].type == CMD_PUBLISH &&
	   b.v[0].id == 4 && span_eq(b.v[0].publish.channel, "chat") &&
	   span_eq(b.v[0].publish.data, "{\"text\":\"c\"}"), "SDK publish");
	proto_batch_free(&b);
	ok(decode_pb("200807521c0a046368617438ffffffffffffffffff014207080312036f6c644801", &b) == RT_OK, "SDK history");
	c = &b.v[0];
	ok(c->type == CMD_HISTORY && c->id == 7 && span_eq(c->history.channel, "chat") && c->history.limit == -1 &&
	   c->history.has_since && c->history.since_offset == 3 && span_eq(c->history.since_epoch, "old") &&
	   c->history.reverse, "history: limit -1 (10-byte varint), since, reverse");
	proto_batch_free(&b);
	ok(decode_pb("1608086a120a0d7b226d79223a2264617461227d12016d", &b) == RT_OK && b.v[0].type == CMD_RPC &&
	   b.v[0].id == 8 && span_eq(b.v[0].rpc.method, "m") && span_eq(b.v[0].rpc.data, "{\"my\":\"data\"}"),
	   "SDK rpc");
	proto_batch_free(&b);
	ok(decode_pb("0f620d0a0b7b2268656c6c6f223a317d", &b) == RT_OK && b.v[0].type == CMD_SEND && b.v[0].id == 0 &&
	   span_eq(b.v[0].send.data, "{\"hello\":1}"), "SDK send");
	proto_batch_free(&b);
	ok(decode_pb("09080972050a036e6577", &b) == RT_OK && b.v[0].type == CMD_REFRESH && b.v[0].id == 9 &&
	   span_eq(b.v[0].refresh.token, "new"), "SDK refresh");
	proto_batch_free(&b);
	ok(decode_pb("0e080a7a0a0a046368617412027374", &b) == RT_OK && b.v[0].type == CMD_SUB_REFRESH &&
	   b.v[0].id == 10 && span_eq(b.v[0].sub_refresh.channel, "chat") && span_eq(b.v[0].sub_refresh.token, "st"),
	   "SDK sub_refresh");
	proto_batch_free(&b);
	ok(decode_pb("0b08ffffffff0f42030a0163", &b) == RT_OK && b.v[0].id == UINT32_MAX, "SDK id 2^32-1");
	proto_batch_free(&b);
	/* All of them in one frame, as the SDK batches them. */
	ok(decode_pb("0a080332060a0463686174" "00" "0f620d0a0b7b2268656c6c6f223a317d" "09080972050a036e6577", &b)
	   == RT_OK && b.n == 4 && b.v[0].type == CMD_UNSUBSCRIBE && b.v[1].type == CMD_EMPTY &&
	   b.v[2].type == CMD_SEND && b.v[3].type == CMD_REFRESH, "several commands in one frame");
	proto_batch_free(&b);

	/* SDK: every reply and push. */
	PB_IS("error", "1e0808121a08701216756e7265636f76657261626c6520706f736974696f6e",
	      proto_reply_error(&out, PROTO_PB, 8, 112, proto_error_text(112), false));
	PB_IS("temporary error", "1f0803121b08641215696e7465726e616c20736572766572206572726f721801",
	      proto_reply_error(&out, PROTO_PB, 3, 100, proto_error_text(100), proto_error_temporary(100)));
	struct connect_sub_result csr = { PSTR("#42"), { .recoverable = true, .epoch = PSTR("e"), .offset = 3,
							 .positioned = true } };
	struct connect_result full = { .client = PSTR("c"), .version = PSTR("6.9.1"), .expires = true, .ttl = 600,
				       .data = PSTR("{}"), .subs = &csr, .nsubs = 1, .ping = 25, .pong = true,
				       .session = PSTR("s"), .node = PSTR("n"), .time = 1700000000000 };
	PB_IS("connect, every field", "3a08012a360a01631205362e392e31180120d8042a027b7d32100a032334321209180132016548"
	      "035001381940014a017352016e5880d095ffbc31", proto_reply_connect(&out, PROTO_PB, 1, &full));
	struct publication rec[2] = {
		{ .data = PSTR("{\"text\":\"a\"}"), .offset = 12 },
		{ .data = PSTR("{\"text\":\"b\"}"), .offset = 13 },
	};
	struct sub_result v5 = { .recoverable = true, .epoch = PSTR("FmHkdJbV"), .pubs = rec, .npubs = 2,
				 .recovered = true, .offset = 11, .positioned = true, .was_recovering = true };
	PB_IS("subscribe V5", "3c0802323818013208466d486b644a62563a10220c7b2274657874223a2261227d300c3a10220c7b2274"
	      "657874223a2262227d300d4001480b50016001", proto_reply_subscribe(&out, PROTO_PB, 2, &v5));
	struct sub_result empty = { 0 };
	PB_IS("subscribe empty", "0408023200", proto_reply_subscribe(&out, PROTO_PB, 2, &empty));
	PB_IS("presence", "2608044a220a200a026331121a0a023432120263311a107b226e616d65223a22416c696365227d",
	      proto_reply_presence(&out, PROTO_PB, 4, &(struct client_info){ PSTR("42"), PSTR("c1"),
		      PSTR("{\"name\":\"Alice\"}"), { 0 } }, 1));
	PB_IS("presence, anonymous", "1008044a0c0a0a0a026332120412026332",
	      proto_reply_presence(&out, PROTO_PB, 4, &(struct client_info){ { 0 }, PSTR("c2"), { 0 }, { 0 } }, 1));
	PB_IS("presence, nobody", "0408044a00", proto_reply_presence(&out, PROTO_PB, 4, NULL, 0));
	PB_IS("presence_stats", "080805520408021002", proto_reply_presence_stats(&out, PROTO_PB, 5, 2, 2));
	PB_IS("presence_stats zero", "0408055200", proto_reply_presence_stats(&out, PROTO_PB, 5, 0, 0));
	struct publication hist[2] = { rec[1], rec[0] };
	PB_IS("history", "3408065a300a10220c7b2274657874223a2262227d300d0a10220c7b2274657874223a2261227d300c1208466d48"
	      "6b644a6256180d", proto_reply_history(&out, PROTO_PB, 6, hist, 2, PSTR("FmHkdJbV"), 13));
	PB_IS("history empty", "1008075a0c1208466d486b644a6256180d",
	      proto_reply_history(&out, PROTO_PB, 7, NULL, 0, PSTR("FmHkdJbV"), 13));
	PB_IS("rpc", "0d080b6a090a077b2261223a317d", proto_reply_rpc(&out, PROTO_PB, 11, PSTR("{\"a\":1}")));
	PB_IS("refresh", "0908097205180120d804", proto_reply_refresh(&out, PROTO_PB, 9, CMD_REFRESH, true, 600));
	PB_IS("sub_refresh", "08080a7a040801103c", proto_reply_refresh(&out, PROTO_PB, 10, CMD_SUB_REFRESH, true, 60));
	PB_IS("unsubscribe", "0408033a00", proto_reply_empty(&out, PROTO_PB, 3, CMD_UNSUBSCRIBE));
	PB_IS("publish", "04080a4200", proto_reply_empty(&out, PROTO_PB, 10, CMD_PUBLISH));
	struct client_info d7 = { PSTR("7"), PSTR("d"), { 0 }, { 0 } };
	struct client_info d7c = { PSTR("7"), PSTR("d"), { 0 }, PSTR("[1]") };
	PB_IS("join push", "1222101204636861742a080a060a0137120164", proto_push_join(&out, PROTO_PB, PSTR("chat"), &d7));
	PB_IS("leave push", "172215120463686174320d0a0b0a013712016422035b315d",
	      proto_push_leave(&out, PROTO_PB, PSTR("chat"), &d7c));
	PB_IS("unsubscribe push", "21221f1204636861743a1710c4131a12696e73756666696369656e74207374617465",
	      proto_push_unsubscribe(&out, PROTO_PB, PSTR("chat"), 2500, "insufficient state"));
	PB_IS("message push", "16221442120a107b226e6f7465223a2268656c6c6f227d",
	      proto_push_message(&out, PROTO_PB, PSTR("{\"note\":\"hello\"}")));
	struct sub_result v9 = { .recoverable = true, .epoch = PSTR("xq1P"), .offset = 3, .positioned = true };
	PB_IS("subscribe push", "1d221b120b706572736f6e616c2334324a0c080122047871315028033001",
	      proto_push_subscribe(&out, PROTO_PB, PSTR("personal#42"), &v9));
	PB_IS("disconnect push", "11220f5a0d08b917120873687574646f776e",
	      proto_push_disconnect(&out, PROTO_PB, 3001, "shutdown"));
	PB_IS("refresh push", "08220662040801100a", proto_push_refresh(&out, PROTO_PB, true, 10));
	struct client_info uc = { PSTR("u"), PSTR("c"), { 0 }, { 0 } };
	struct tag kv = { PSTR("k"), PSTR("v") };
	struct publication pf = { .data = PSTR("{\"x\":1}"), .info = &uc, .offset = 300, .tags = &kv, .ntags = 1,
				  .time = 1700000000000 };
	PB_IS("pub push, every field", "2a2228120163222322077b2278223a317d2a060a017512016330ac023a060a016b1201764880d095"
	      "ffbc31", proto_push_pub(&out, PROTO_PB, PSTR("c"), &pf));
	/* Bodies of 128 bytes and more get a two-byte length at every level. */
	char big[203];
	big[0] = '"';
	memset(big + 1, 'a', 200);
	big[201] = '"';
	big[202] = '\0';
	struct publication pb_big = { .data = { big, 202 }, .offset = 1 };
	char want[1024];
	strcpy(want, "d80122d50112016322cf0122ca0122");
	for (int i = 0; i < 200; i++)
		strcat(want, "61");
	strcat(want, "223001");
	PB_IS("pub push, 200-byte payload", want, proto_push_pub(&out, PROTO_PB, PSTR("c"), &pb_big));

	/* The same messages in JSON. */
	JSON_IS("{\"id\":1,\"connect\":{\"client\":\"c\",\"version\":\"6.9.1\",\"expires\":true,\"ttl\":600,\"data\":{},"
		"\"subs\":{\"#42\":{\"recoverable\":true,\"epoch\":\"e\",\"offset\":3,\"positioned\":true}},\"ping\":25,"
		"\"pong\":true,\"session\":\"s\",\"node\":\"n\",\"time\":1700000000000}}",
		proto_reply_connect(&out, PROTO_JSON, 1, &full));
	JSON_IS("{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{\"x\":1},\"info\":{\"user\":\"u\",\"client\":\"c\"},"
		"\"offset\":300,\"tags\":{\"k\":\"v\"},\"time\":1700000000000}}}",
		proto_push_pub(&out, PROTO_JSON, PSTR("c"), &pf));

	/* Delta (client-protocol.md 6.6): to a subscriber that negotiated it,
	 * data is a JSON string in JSON, whole (newlines kept) or a delta. */
	struct publication dw = { .data = PSTR("{\"x\":\n\"\u00e9\"}"), .offset = 2, .data_string = true };
	JSON_IS("{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":\"{\\\"x\\\":\\n\\\"\u00e9\\\"}\",\"offset\":2}}}",
		proto_push_pub(&out, PROTO_JSON, PSTR("c"), &dw));
	struct publication dd = { .data = PSTR("9\n2@0,2:ab7;"), .offset = 3, .delta = true, .data_string = true };
	JSON_IS("{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":\"9\\n2@0,2:ab7;\",\"offset\":3,\"delta\":true}}}",
		proto_push_pub(&out, PROTO_JSON, PSTR("c"), &dd));
	struct publication dbad = { .data = PSTR("not json"), .offset = 2, .data_string = true };
	out.len = 0;
	ok(proto_push_pub(&out, PROTO_JSON, PSTR("c"), &dbad) == RT_INVAL && out.len == 0,
	   "a whole payload that is not JSON cannot go as a string either");
	struct publication dpb = { .data = PSTR("ab"), .offset = 2, .delta = true, .data_string = true };
	PB_IS("delta publication: field 8", "0f220d1201632208220261623002" "4001",
	      proto_push_pub(&out, PROTO_PB, PSTR("c"), &dpb));
	struct sub_result sdelta = { .delta = true };
	JSON_IS("{\"id\":2,\"subscribe\":{\"delta\":true}}", proto_reply_subscribe(&out, PROTO_JSON, 2, &sdelta));
	PB_IS("subscribe result delta: field 13", "0608023202" "6801", proto_reply_subscribe(&out, PROTO_PB, 2, &sdelta));
	JSON_IS("{\"push\":{\"channel\":\"chat\",\"leave\":{\"info\":{\"user\":\"7\",\"client\":\"d\",\"chan_info\":[1]}}}}",
		proto_push_leave(&out, PROTO_JSON, PSTR("chat"), &d7c));
	JSON_IS("{\"push\":{\"refresh\":{\"expires\":true,\"ttl\":10}}}", proto_push_refresh(&out, PROTO_JSON, true, 10));
	JSON_IS("{\"id\":10,\"sub_refresh\":{\"expires\":true,\"ttl\":60}}",
		proto_reply_refresh(&out, PROTO_JSON, 10, CMD_SUB_REFRESH, true, 60));
	JSON_IS("{\"id\":9,\"refresh\":{}}", proto_reply_refresh(&out, PROTO_JSON, 9, CMD_REFRESH, false, 0));
	JSON_IS("{\"id\":11,\"rpc\":{\"data\":{\"a\":1}}}", proto_reply_rpc(&out, PROTO_JSON, 11, PSTR("{\"a\":1}")));
	JSON_IS("{\"id\":11,\"rpc\":{}}", proto_reply_rpc(&out, PROTO_JSON, 11, (struct pstr){ 0 }));
	JSON_IS("{\"id\":3,\"error\":{\"code\":100,\"message\":\"internal server error\",\"temporary\":true}}",
		proto_reply_error(&out, PROTO_JSON, 3, 100, proto_error_text(100), true));
	JSON_IS("{\"id\":4,\"unsubscribe\":{}}", proto_reply_empty(&out, PROTO_JSON, 4, CMD_UNSUBSCRIBE));
}

/* ---- JSON command decoding beyond the vectors --------------------------- */

static void test_decode_json(void)
{
	struct cmd_batch b;
	struct cmd *c;

	/* Every field of a subscribe, escapes, unknown keys, nulls. */
	ok(decode_json("{\"id\":7,\"x\":{\"y\":[1,{\"z\":null}]},\"subscribe\":{\"channel\":\"ch\\u0061t\\n\","
		       "\"token\":\"t\",\"recover\":true,\"epoch\":\"E\",\"offset\":18446744073709551615,"
		       "\"data\":{\"a\": 1.10 },\"positioned\":true,\"recoverable\":true,\"join_leave\":true,"
		       "\"delta\":\"fossil\",\"tf\":{\"op\":\"and\",\"nodes\":[]},\"flag\":-3,\"type\":2,"
		       "\"phase\":1,\"cursor\":\"c\",\"limit\":5,\"asc\":true,\"unknown\":[{}],\"token2\":null}}", &b)
	   == RT_OK, "subscribe with every field");
	c = &b.v[0];
	ok(c->type == CMD_SUBSCRIBE && c->id == 7, "subscribe id 7");
	SPAN_IS(c->subscribe.channel, "chat\n", "unescaped channel");
	SPAN_IS(c->subscribe.data, "{\"a\": 1.10 }", "raw data span, exact bytes");
	ok(c->subscribe.offset == UINT64_MAX && c->subscribe.flag == -3 && c->subscribe.type == 2 &&
	   c->subscribe.has_tf && c->subscribe.recover && c->subscribe.positioned && c->subscribe.recoverable &&
	   c->subscribe.join_leave && span_eq(c->subscribe.delta, "fossil") && span_eq(c->subscribe.token, "t"),
	   "subscribe: every field");
	proto_batch_free(&b);

	/* null counts as absent, for requests and fields. */
	ok(decode_json("{\"id\":1,\"connect\":null,\"subscribe\":{\"channel\":null,\"data\":null,\"offset\":null}}", &b)
	   == RT_OK && b.v[0].type == CMD_SUBSCRIBE && b.v[0].subscribe.channel.n == 0 &&
	   b.v[0].subscribe.data.n == 0, "nulls are absent");
	proto_batch_free(&b);
	ok(decode_json("{\"id\":null}", &b) == RT_OK && b.v[0].id == 0 && b.v[0].type == CMD_EMPTY, "id null");
	proto_batch_free(&b);

	/* Connect with subs (map), headers ignored, duplicates: the last wins. */
	ok(decode_json("{\"id\":1,\"connect\":{\"token\":\"t\",\"data\":\"str\",\"headers\":{\"a\":\"b\"},"
		       "\"subs\":{\"b\":{\"recover\":true,\"offset\":1},\"a\":{},\"b\":{\"offset\":2},\"\\u0063\":null},"
		       "\"name\":\"js\",\"version\":\"5.7.1\",\"flag\":1}}", &b) == RT_OK, "connect with subs");
	c = &b.v[0];
	ok(c->type == CMD_CONNECT && span_eq(c->connect.data, "\"str\"") && span_eq(c->connect.version, "5.7.1"),
	   "connect fields");
	is_int(c->connect.nsubs, 3, "three distinct channels");
	if (c->connect.nsubs == 3) {
		ok(span_eq(c->connect.subs[0].channel, "a") && span_eq(c->connect.subs[1].channel, "b") &&
		   span_eq(c->connect.subs[2].channel, "c"), "subs sorted by channel, escaped key unescaped");
		ok(c->connect.subs[1].req.offset == 2 && !c->connect.subs[1].req.recover, "duplicate: the last wins");
	}
	proto_batch_free(&b);

	/* Many subs: the arena grows. */
	{
		struct jw f = { 0 };
		jw_lit(&f, "{\"id\":1,\"connect\":{\"subs\":{");
		for (int i = 0; i < 300; i++) {
			char k[64];
			snprintf(k, sizeof(k), "%s\"ch\\u0061n%03d\":{\"epoch\":\"e\\u0078%d\"}", i ? "," : "", i, i);
			jw_lit(&f, k);
		}
		jw_lit(&f, "}}}");
		ok(proto_decode(PROTO_JSON, f.buf, f.len, 0, &b) == RT_OK && b.v[0].connect.nsubs == 300,
		   "300 subs");
		int good = 0;
		for (size_t i = 0; i < b.v[0].connect.nsubs; i++) {
			char ch[32], ep[32];
			snprintf(ch, sizeof(ch), "chan%03d", (int)i);
			snprintf(ep, sizeof(ep), "ex%d", (int)i);
			good += span_eq(b.v[0].connect.subs[i].channel, ch) && span_eq(b.v[0].connect.subs[i].req.epoch, ep);
		}
		is_int(good, 300, "300 subs unescaped and in order");
		proto_batch_free(&b);
		jw_free(&f);
	}

	/* Which request decides the type. */
	ok(decode_json("{\"subscribe\":{\"channel\":\"s\"},\"connect\":{\"name\":\"n\"},\"id\":1}", &b) == RT_OK &&
	   b.v[0].type == CMD_CONNECT && span_eq(b.v[0].connect.name, "n"), "connect before subscribe");
	proto_batch_free(&b);
	ok(decode_json("{\"sub_refresh\":{\"channel\":\"s\"},\"send\":{},\"rpc\":{\"method\":\"m\"},\"id\":1}", &b) == RT_OK &&
	   b.v[0].type == CMD_RPC && span_eq(b.v[0].rpc.method, "m"), "rpc before send before sub_refresh");
	proto_batch_free(&b);
	ok(decode_json("{\"publish\":{\"channel\":\"a\"},\"publish\":{\"data\":[1]},\"id\":1}", &b) == RT_OK &&
	   span_eq(b.v[0].publish.channel, "a") && span_eq(b.v[0].publish.data, "[1]"), "a request given twice merges");
	proto_batch_free(&b);
	ok(decode_json("{\"connect\":{},\"subscribe\":{\"channel\":5},\"id\":1}", &b) == RT_INVAL,
	   "a malformed request that does not win still refuses the command");
	proto_batch_free(&b);

	/* Pongs and pings. */
	ok(decode_json("{\"ping\":{},\"id\":5}", &b) == RT_OK && b.v[0].type == CMD_EMPTY && b.v[0].id == 5,
	   "ping alone with an id: CMD_EMPTY (the session answers 3501)");
	proto_batch_free(&b);
	ok(decode_json("{\"ping\":1}", &b) == RT_INVAL, "ping that is not an object");
	proto_batch_free(&b);
	ok(decode_json("{\"unknown\":{}}", &b) == RT_OK && b.v[0].type == CMD_EMPTY && b.v[0].id == 0,
	   "only unknown keys: CMD_EMPTY");
	proto_batch_free(&b);

	/* Framing. */
	ok(decode_json("{}\n", &b) == RT_OK && b.n == 1, "a trailing newline");
	proto_batch_free(&b);
	ok(decode_json("\n{}\n\n \r\n{\"id\":1,\"presence\":{\"channel\":\"x\"}}\r\n", &b) == RT_OK && b.n == 2 &&
	   b.v[1].type == CMD_PRESENCE, "blank lines skipped, \\r\\n tolerated");
	proto_batch_free(&b);
	ok(proto_decode(PROTO_JSON, "{}\n{}\n{}", 8, 3, &b) == RT_OK && b.n == 3, "3 commands within max 3");
	proto_batch_free(&b);
	ok(proto_decode(PROTO_JSON, "{}\n{}\n{}\n{}", 11, 3, &b) == RT_INVAL, "4 commands over max 3");
	proto_batch_free(&b);

	/* Integers and types. */
	static const char *bad[] = {
		"", "\n", " \n \r\n", "[]", "null", "1", "\"x\"", "{\"id\":1,}", "{\"id\":1}x",
		"{\"id\":1.0}", "{\"id\":1e2}", "{\"id\":-1}", "{\"id\":4294967296}", "{\"id\":\"1\"}", "{\"id\":true}",
		"{}\n{\"id\":1,\"connect\":}\n{}", "{}\n[\n{}",
		"{\"subscribe\":[]}", "{\"subscribe\":\"x\"}", "{\"subscribe\":{\"channel\":1}}",
		"{\"subscribe\":{\"recover\":1}}", "{\"subscribe\":{\"recover\":\"true\"}}",
		"{\"subscribe\":{\"offset\":-1}}", "{\"subscribe\":{\"offset\":1.5}}",
		"{\"subscribe\":{\"offset\":18446744073709551616}}", "{\"subscribe\":{\"flag\":9223372036854775808}}",
		"{\"subscribe\":{\"type\":2147483648}}", "{\"subscribe\":{\"type\":-2147483649}}",
		"{\"subscribe\":{\"tf\":[]}}", "{\"history\":{\"since\":3}}", "{\"history\":{\"since\":{\"offset\":\"3\"}}}",
		"{\"history\":{\"limit\":\"1\"}}", "{\"connect\":{\"subs\":[]}}", "{\"connect\":{\"subs\":{\"a\":1}}}",
		"{\"connect\":{\"subs\":{\"a\":{\"channel\":[]}}}}", "{\"connect\":{\"token\":{}}}",
		"{\"publish\":{\"channel\":\"a\xff\"}}", "{\"send\":{\"data\":{]}}",
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(bad); i++) {
		ok(decode_json(bad[i], &b) == RT_INVAL, "refused: bad #%zu", i);
		proto_batch_free(&b);
	}
	ok(decode_json("{\"subscribe\":{\"type\":-2147483648,\"flag\":-9223372036854775808}}", &b) == RT_OK &&
	   b.v[0].subscribe.type == INT32_MIN && b.v[0].subscribe.flag == INT64_MIN, "int32/int64 minimums");
	proto_batch_free(&b);
	ok(decode_json("{\"id\":4294967295}", &b) == RT_OK && b.v[0].id == UINT32_MAX, "id 2^32-1");
	proto_batch_free(&b);

	/* Deep data inside a command is fine up to JS_DEPTH_MAX. */
	{
		struct jw f = { 0 };
		jw_lit(&f, "{\"publish\":{\"channel\":\"c\",\"data\":");
		for (int i = 0; i < 500; i++)
			jw_lit(&f, "[");
		for (int i = 0; i < 500; i++)
			jw_lit(&f, "]");
		jw_lit(&f, "},\"id\":1}");
		ok(proto_decode(PROTO_JSON, f.buf, f.len, 0, &b) == RT_OK && b.v[0].publish.data.n == 1000,
		   "500-deep data");
		proto_batch_free(&b);
		jw_free(&f);
	}
}

/* ---- protobuf command decoding beyond the vectors ----------------------- */

static void test_decode_pb(void)
{
	struct cmd_batch b;

	/* Unknown fields of every wire type, at the top and nested:
	 * field 20 varint, 21 fixed64, 22 bytes, 23 group holding a varint, a
	 * nested group and bytes, 24 fixed32; then id and subscribe{channel,
	 * unknown 30 fixed64, tf{...}}. */
	const char *unk = "a001ff01" "a9010102030405060708" "b20103616263"
			  "bb01" "0801" "1b" "2001" "1c" "120100" "bc01" "c50101020304"
			  "0805" "2a14" "0a0163" "f1010102030405060708" "6a05" "0a036f7071";
	char hex[256];
	snprintf(hex, sizeof(hex), "%02zx%s", strlen(unk) / 2, unk);
	ok(decode_pb(hex, &b) == RT_OK && b.v[0].type == CMD_SUBSCRIBE && b.v[0].id == 5 &&
	   span_eq(b.v[0].subscribe.channel, "c") && b.v[0].subscribe.has_tf, "unknown fields of every wire type skipped");
	proto_batch_free(&b);

	/* Which request decides the type; ping alone. */
	ok(decode_pb("0a" "2a030a0173" "2203220163", &b) == RT_OK && b.v[0].type == CMD_CONNECT &&
	   span_eq(b.v[0].connect.name, "c"), "connect wins over an earlier subscribe");
	proto_batch_free(&b);
	ok(decode_pb("04" "08095a00", &b) == RT_OK && b.v[0].type == CMD_EMPTY && b.v[0].id == 9, "ping alone");
	proto_batch_free(&b);
	ok(decode_pb("0a" "2a030a0173" "2a030a0174", &b) == RT_OK && span_eq(b.v[0].subscribe.channel, "t"),
	   "a request given twice merges, the last value wins");
	proto_batch_free(&b);
	/* Connect subs map: entries accumulate; an entry without key or value;
	 * duplicates resolved to the last. */
	ok(decode_pb("1a" "2218" "1a050a01611200" "1a00" "1a070a016112023802" "1a0412023803", &b) == RT_OK,
	   "connect subs entries");
	{
		struct connect_req *cr = &b.v[0].connect;
		ok(cr->nsubs == 2 && span_eq(cr->subs[0].channel, "") && cr->subs[0].req.offset == 3 &&
		   span_eq(cr->subs[1].channel, "a") && cr->subs[1].req.offset == 2,
		   "map semantics: \"\" (last: offset 3) and a (last: offset 2)");
	}
	proto_batch_free(&b);
	/* Merged nested message fields: since given twice. */
	ok(decode_pb("0b" "5209" "42020803" "4203120178", &b) == RT_OK && b.v[0].history.since_offset == 3 &&
	   span_eq(b.v[0].history.since_epoch, "x"), "nested messages merge");
	proto_batch_free(&b);
	/* Scalars: bool from any non-zero varint, uint32 id truncated. */
	ok(decode_pb("0b" "0881808080f0ffffffff01" "", &b) == RT_OK && b.v[0].id == 1, "id truncated to 32 bits");
	proto_batch_free(&b);
	ok(decode_pb("04" "2a02" "1802", &b) == RT_OK && b.v[0].subscribe.recover, "bool 2 is true");
	proto_batch_free(&b);
	/* A 10-byte varint is fine, 11 bytes are not. */
	ok(decode_pb("0b" "08ffffffffffffffffff01", &b) == RT_OK, "10-byte varint");
	proto_batch_free(&b);

	static const char *bad[] = {
		"",                             /* empty frame */
		"80",                           /* truncated length prefix */
		"ffffffffffffffffff7f",         /* huge length prefix */
		"05080101",                     /* length past the end of the frame */
		"0c08ffffffffffffffffffff01",   /* 11-byte varint */
		"020880",                       /* varint truncated by the message end */
		"0180",                         /* tag truncated */
		"06808080808001",               /* tag beyond 32 bits */
		"020000",                       /* field number 0 */
		"02a401",                       /* end group without a start */
		"02a601",                       /* wire type 6 */
		"02a701",                       /* wire type 7 */
		"031b0801",                     /* group never ended */
		"020b0c",                       /* id (varint) sent as a group */
		"020a00",                       /* id sent as bytes */
		"022000",                       /* connect sent as a varint */
		"032a0500",                     /* nested length past the message */
		"042a020801",                   /* channel (string) sent as a varint */
		"042a021a00",                   /* recover (bool) sent as bytes */
		"052a036a0100",                 /* tf holding field number 0 */
		"032a0180",                     /* nested tag truncated */
		"0722051a030a0561",             /* map entry key past the entry */
		"0622041a021000",               /* map entry value sent as a varint */
		"055a030b1c00",                 /* ping: an empty group, then field 0 */
		"0708012a030a0173030801",       /* a good command, then a truncated one */
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(bad); i++) {
		ok(decode_pb(bad[i], &b) == RT_INVAL, "refused: pb #%zu (%s)", i, bad[i]);
		proto_batch_free(&b);
	}
	static const char *fine[] = {
		"052a030a0100",                 /* a channel holding a NUL byte */
		"02080100",                     /* a command, then a pong */
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(fine); i++) {
		ok(decode_pb(fine[i], &b) == RT_OK, "accepted: pb %s", fine[i]);
		proto_batch_free(&b);
	}
	ok(proto_decode(PROTO_PB, "\0\0\0", 3, 2, &b) == RT_INVAL, "3 pongs over max 2");
	proto_batch_free(&b);
	ok(proto_decode(PROTO_PB, "\0\0", 2, 2, &b) == RT_OK && b.n == 2, "2 pongs within max 2");
	proto_batch_free(&b);
}

/* ---- payloads that cannot be JSON --------------------------------------- */

static void test_inappropriate(void)
{
	const struct pstr bin = { "\x00\x01\xff", 3 };
	const struct pstr bad = PSTR("{\"a\":");
	struct client_info ci = { PSTR("u"), PSTR("c"), bin, { 0 } };
	struct client_info ci2 = { PSTR("u"), PSTR("c"), { 0 }, bad };
	struct publication p = { .data = bin, .offset = 1 };
	struct publication p2 = { .data = PSTR("{}"), .info = &ci };
	struct sub_result sr = { .data = bin };
	struct connect_result cr = { .client = PSTR("c"), .data = bad };
	struct connect_sub_result csr = { PSTR("x"), { .pubs = &p, .npubs = 1 } };
	struct connect_result cr2 = { .client = PSTR("c"), .subs = &csr, .nsubs = 1 };
	int n = 0, unchanged = 0, pb_ok = 0;

	for (int f = 0; f < 2; f++) {
		enum proto_fmt fmt = f ? PROTO_PB : PROTO_JSON;
		int rcs[10];
		out.len = 0;
		jw_lit(&out, "prefix");
		size_t before = out.len;
		rcs[0] = proto_push_pub(&out, fmt, PSTR("c"), &p);
		rcs[1] = proto_push_pub(&out, fmt, PSTR("c"), &p2);
		rcs[2] = proto_push_message(&out, fmt, bad);
		rcs[3] = proto_reply_rpc(&out, fmt, 1, bin);
		rcs[4] = proto_reply_subscribe(&out, fmt, 1, &sr);
		rcs[5] = proto_push_subscribe(&out, fmt, PSTR("c"), &sr);
		rcs[6] = proto_reply_connect(&out, fmt, 1, &cr);
		rcs[7] = proto_reply_connect(&out, fmt, 1, &cr2);
		rcs[8] = proto_push_join(&out, fmt, PSTR("c"), &ci2);
		rcs[9] = proto_reply_presence(&out, fmt, 1, &ci, 1);
		for (int i = 0; i < 10; i++) {
			if (f == 0)
				n += rcs[i] == RT_INVAL;
			else
				pb_ok += rcs[i] == RT_OK;
		}
		if (f == 0)
			unchanged = out.len == before && memcmp(out.buf, "prefix", 6) == 0;
	}
	is_int(n, 10, "JSON: every non-JSON payload refused with RT_INVAL");
	ok(unchanged, "JSON: the output is left as it was");
	is_int(pb_ok, 10, "protobuf: the same payloads are fine");

	/* Newlines inside raw JSON are removed in JSON, kept in protobuf. */
	struct publication nl = { .data = PSTR("{\n\"a\":\n1}\n") };
	JSON_IS("{\"push\":{\"channel\":\"c\",\"pub\":{\"data\":{\"a\":1}}}}", proto_push_pub(&out, PROTO_JSON, PSTR("c"), &nl));
	out.len = 0;
	ok(proto_push_pub(&out, PROTO_PB, PSTR("c"), &nl) == RT_OK && memmem(out.buf, out.len, "{\n\"a\":\n1}\n", 10),
	   "protobuf keeps the payload's bytes");
	/* Strings are escaped like the reference writer. */
	struct client_info esc = { PSTR("<u>&\"\n"), PSTR("c\xff"), { 0 }, { 0 } };
	JSON_IS("{\"push\":{\"channel\":\"a\\u0026b\",\"join\":{\"info\":{\"user\":\"\\u003cu\\u003e\\u0026\\\"\\n\","
		"\"client\":\"c\\ufffd\"}}}}", proto_push_join(&out, PROTO_JSON, PSTR("a&b"), &esc));
}

/* ---- round trips and structure ------------------------------------------ */

/* Walks a protobuf message checking every length-delimited field that is
 * itself a well-formed message is consistent; returns the number of bytes
 * consumed or -1. Only used to check framing of large outputs. */
static long pb_walk(const unsigned char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		uint64_t tag = 0, v = 0;
		int s = 0;
		do {
			if (i >= n)
				return -1;
			tag |= (uint64_t)(p[i] & 0x7f) << s;
			s += 7;
		} while (p[i++] & 0x80);
		if ((tag & 7) == 0) {
			do {
				if (i >= n)
					return -1;
			} while (p[i++] & 0x80);
		} else if ((tag & 7) == 2) {
			s = 0;
			do {
				if (i >= n)
					return -1;
				v |= (uint64_t)(p[i] & 0x7f) << s;
				s += 7;
			} while (p[i++] & 0x80);
			if (v > n - i)
				return -1;
			i += v;
		} else {
			return -1;
		}
	}
	return (long)i;
}

static void test_round_trips(void)
{
	struct cmd_batch b;
	struct jw f = { 0 };

	/* A large history reply: lengths of two and three bytes. */
	enum { NP = 300 };
	struct publication *v = xcalloc(NP, sizeof(*v));
	char data[120];
	memset(data, 'x', sizeof(data));
	data[0] = '"';
	data[sizeof(data) - 1] = '"';
	struct client_info ci = { PSTR("user"), PSTR("client"), PSTR("{\"k\":[1,2,3]}"), { 0 } };
	for (int i = 0; i < NP; i++) {
		v[i].data = (struct pstr){ data, sizeof(data) };
		v[i].offset = (uint64_t)i + 1;
		v[i].info = i % 2 ? &ci : NULL;
	}
	out.len = 0;
	ok(proto_reply_history(&out, PROTO_PB, 77, v, NP, PSTR("ep"), NP) == RT_OK, "big history, protobuf");
	{
		const unsigned char *p = (const unsigned char *)out.buf;
		uint64_t len = 0;
		int s = 0;
		size_t i = 0;
		do {
			len |= (uint64_t)(p[i] & 0x7f) << s;
			s += 7;
		} while (p[i++] & 0x80);
		ok(i == 3 && len == out.len - 3, "three-byte length prefix matches the body");
		ok(pb_walk(p + i, len) == (long)len, "the body's fields are consistently framed");
	}
	out.len = 0;
	ok(proto_reply_history(&out, PROTO_JSON, 77, v, NP, PSTR("ep"), NP) == RT_OK && js_valid(out.buf, out.len) &&
	   !memchr(out.buf, '\n', out.len), "big history, JSON: valid, one line");
	free(v);

	/* JSON commands written by jw from random fields decode back. */
	unsigned seed = 99;
	int good = 0;
	for (int round = 0; round < 500; round++) {
		char ch[32], ep[32];
		seed = seed * 1103515245 + 12345;
		uint64_t off = (uint64_t)seed * seed;
		uint32_t id = seed >> 3;
		snprintf(ch, sizeof(ch), "ch\"%u\\\n<%u>", seed % 1000, round);
		snprintf(ep, sizeof(ep), "é%u", seed % 77);
		f.len = 0;
		jw_lit(&f, "{\"subscribe\":{\"channel\":");
		jw_str(&f, ch, strlen(ch));
		jw_lit(&f, ",\"epoch\":");
		jw_str(&f, ep, strlen(ep));
		jw_lit(&f, ",\"offset\":");
		jw_u64(&f, off);
		jw_lit(&f, ",\"recover\":");
		jw_lit(&f, seed & 1 ? "true" : "false");
		jw_lit(&f, "},\"id\":");
		jw_u64(&f, id);
		jw_lit(&f, "}");
		if (proto_decode(PROTO_JSON, f.buf, f.len, 0, &b) == RT_OK && b.n == 1 && b.v[0].id == id &&
		    span_eq(b.v[0].subscribe.channel, ch) && span_eq(b.v[0].subscribe.epoch, ep) &&
		    b.v[0].subscribe.offset == off && b.v[0].subscribe.recover == (seed & 1))
			good++;
		proto_batch_free(&b);
	}
	is_int(good, 500, "JSON subscribe commands round trip");

	/* Protobuf: Commands assembled by hand, with channel lengths on both
	 * sides of the one-byte/two-byte varint boundary at every level,
	 * decode back. */
	good = 0;
	for (int len = 0; len < 300; len += 7) {
		char ch[300];
		memset(ch, 'a' + len % 26, (size_t)len);
		f.len = 0;
		/* Command{id=len+1, subscribe{channel, offset=len}} */
		char body[400];
		size_t n = 0;
		body[n++] = 0x0a;   /* channel */
		if (len >= 128) {
			body[n++] = (char)(0x80 | (len & 0x7f));
			body[n++] = (char)(len >> 7);
		} else {
			body[n++] = (char)len;
		}
		memcpy(body + n, ch, (size_t)len);
		n += (size_t)len;
		body[n++] = 0x38;   /* offset */
		body[n++] = (char)(len & 0x7f);
		char cmd[420];
		size_t m = 0;
		cmd[m++] = 0x08;
		cmd[m++] = (char)((len + 1) & 0x7f);
		if (len + 1 >= 128)
			cmd[m - 1] = (char)(cmd[m - 1] | 0x80), cmd[m++] = (char)((len + 1) >> 7);
		cmd[m++] = 0x2a;
		if (n >= 128) {
			cmd[m++] = (char)(0x80 | (n & 0x7f));
			cmd[m++] = (char)(n >> 7);
		} else {
			cmd[m++] = (char)n;
		}
		memcpy(cmd + m, body, n);
		m += n;
		char frame[440];
		size_t k = 0;
		if (m >= 128) {
			frame[k++] = (char)(0x80 | (m & 0x7f));
			frame[k++] = (char)(m >> 7);
		} else {
			frame[k++] = (char)m;
		}
		memcpy(frame + k, cmd, m);
		k += m;
		if (proto_decode(PROTO_PB, frame, k, 0, &b) == RT_OK && b.v[0].id == (uint32_t)len + 1 &&
		    b.v[0].subscribe.channel.n == (size_t)len && b.v[0].subscribe.offset == (uint64_t)(len & 0x7f))
			good++;
		proto_batch_free(&b);
	}
	is_int(good, 43, "protobuf subscribe commands of every length class decode");
	jw_free(&f);
}

static void test_codes(void)
{
	is_str(proto_error_text(100), "internal server error", "100");
	is_str(proto_error_text(109), "token expired", "109");
	is_str(proto_error_text(113), "concurrent pagination", "113");
	ok(proto_error_text(99) == NULL && proto_error_text(114) == NULL && proto_error_text(400) == NULL,
	   "unknown error codes: NULL");
	ok(proto_error_temporary(100) && proto_error_temporary(111) && proto_error_temporary(113), "temporary codes");
	ok(!proto_error_temporary(109) && !proto_error_temporary(103) && !proto_error_temporary(112), "permanent codes");
	is_str(proto_disconnect_text(3012), "no pong", "3012");
	is_str(proto_disconnect_text(3506), "inappropriate protocol", "3506");
	is_str(proto_disconnect_text(3509), "too many errors", "3509");
	ok(proto_disconnect_text(3002) == NULL && proto_disconnect_text(3003) == NULL &&
	   proto_disconnect_text(3007) == NULL, "retired codes 3002, 3003, 3007: NULL");
	is_str(proto_unsubscribe_text(2501), "subscription expired", "2501");
	ok(proto_unsubscribe_text(0) == NULL, "unsubscribe 0 is never sent");

	/* A NULL message or reason is simply omitted. */
	JSON_IS("{\"id\":1,\"error\":{\"code\":400}}", proto_reply_error(&out, PROTO_JSON, 1, 400, NULL, false));
	JSON_IS("{\"push\":{\"disconnect\":{\"code\":4000}}}", proto_push_disconnect(&out, PROTO_JSON, 4000, NULL));
	out.len = 0;
	ok(proto_reply_empty(&out, PROTO_JSON, 1, CMD_SEND) == RT_INVAL && out.len == 0, "send has no result");
	ok(proto_reply_empty(&out, PROTO_JSON, 1, CMD_EMPTY) == RT_INVAL && out.len == 0, "nor has a pong");
	ok(proto_reply_refresh(&out, PROTO_JSON, 1, CMD_PUBLISH, true, 1) == RT_INVAL && out.len == 0,
	   "refresh results only for refresh and sub_refresh");
	/* Messages concatenate into a frame. */
	out.len = 0;
	proto_ping(&out, PROTO_PB);
	proto_reply_empty(&out, PROTO_PB, 3, CMD_UNSUBSCRIBE);
	ok(out.len == 6 && memcmp(out.buf, "\x00\x04\x08\x03\x3a\x00", 6) == 0, "protobuf messages concatenate");
}

/* A bare ConnectRequest (the unidirectional transports'). */
static void test_decode_connect(void)
{
	const char *req = "{\"token\":\"t\",\"subs\":{\"a\":{\"recover\":true,\"offset\":3,\"epoch\":\"e\"}},\"x\":[1]}";
	struct cmd_batch b;

	ok(proto_decode_connect(PROTO_JSON, req, strlen(req), &b) == RT_OK && b.n == 1 &&
	   b.v[0].type == CMD_CONNECT && span_eq(b.v[0].connect.token, "t") && b.v[0].connect.nsubs == 1 &&
	   b.v[0].connect.subs[0].req.recover && b.v[0].connect.subs[0].req.offset == 3, "a request with subs");
	proto_batch_free(&b);
	ok(proto_decode_connect(PROTO_JSON, "", 0, &b) == RT_OK && b.v[0].connect.token.n == 0, "empty: empty request");
	proto_batch_free(&b);
	ok(proto_decode_connect(PROTO_JSON, " null\n", 6, &b) == RT_OK && b.v[0].type == CMD_CONNECT &&
	   b.v[0].connect.nsubs == 0, "null (Go: a nil pointer): an empty request");
	proto_batch_free(&b);
	ok(proto_decode_connect(PROTO_JSON, "nul", 3, &b) == RT_INVAL, "nul: malformed");
	proto_batch_free(&b);
	ok(proto_decode_connect(PROTO_JSON, "null null", 9, &b) == RT_INVAL, "two values: malformed");
	proto_batch_free(&b);
	ok(proto_decode_connect(PROTO_JSON, "[]", 2, &b) == RT_INVAL, "an array: malformed");
	proto_batch_free(&b);
	ok(proto_decode_connect(PROTO_JSON, "{\"token\":1}", 11, &b) == RT_INVAL, "a token that is no string");
	proto_batch_free(&b);
}

int main(void)
{
	test_vectors_json();
	test_decode_connect();
	test_vectors_pb();
	test_decode_json();
	test_decode_pb();
	test_inappropriate();
	test_round_trips();
	test_codes();
	jw_free(&out);
	return tap_done();
}
