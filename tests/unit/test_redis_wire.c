/*
 * test_redis_wire.c - Centrifugo's Redis layout (src/engine/redis_wire.c)
 * against ref/redis-engine.md: names, shard hash vectors, the byte
 * examples, protobuf and frame round trips, controlpb, and the Lua scripts
 * run on a real redis-server (skipped when it is not installed), checked
 * with plain Redis commands.
 */
#include "config.h"
#include "redis_wire.h"
#include "pb.h"
#include "redis_server.h"
#include "../tap.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define P "centrifugo"

static struct pstr S(const char *s) { return pstr_c(s); }

static bool span_is(struct pstr s, const void *want, size_t n)
{
	return s.n == n && (n == 0 || memcmp(s.p, want, n) == 0);
}
#define span_str(s, w) span_is((s), (w), strlen(w))

/* ---- names ---- */

static void name_is(enum rw_name k, bool cluster, const char *ch, const char *key, const char *want)
{
	struct jw w = { 0 };

	rw_name(&w, P, cluster, k, S(ch), S(key));
	ok(w.len == strlen(want) && memcmp(w.buf, want, w.len) == 0, "name %s", want);
	jw_free(&w);
}

static void test_names(void)
{
	static const struct {
		enum rw_name k;
		const char *plain, *cluster;
	} t[] = {
		{ RW_CLIENT, P ".client.news", P ".client.{news}" },
		{ RW_STREAM, P ".stream.news", P ".stream.{news}" },
		{ RW_STREAM_META, P ".stream.meta.news", P ".stream.meta.{news}" },
		{ RW_RESULT, P ".result.news.k1", P ".result.{news}.k1" },
		{ RW_PRES_DATA, P ".presence.data.news", P ".presence.data.{news}" },
		{ RW_PRES_EXPIRE, P ".presence.expire.news", P ".presence.expire.{news}" },
		{ RW_PRES_USER_CLIENTS, P ".presence.user.clients.news", P ".presence.user.clients.{news}" },
		{ RW_PRES_USER_EXPIRE, P ".presence.user.expire.news", P ".presence.user.expire.{news}" },
	};
	struct jw w = { 0 };
	struct pstr ch;

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(t); i++) {
		name_is(t[i].k, false, "news", "k1", t[i].plain);
		name_is(t[i].k, true, "news", "k1", t[i].cluster);
	}
	name_is(RW_CLIENT, false, "chat:a}b", "", P ".client.chat:a}b");
	name_is(RW_STREAM, true, "personal:#42", "", P ".stream.{personal:#42}");

	rw_control(&w, P);
	ok(w.len == strlen(P ".control") && !memcmp(w.buf, P ".control", w.len), "control channel");
	w.len = 0;
	rw_node(&w, P, S("6f1d-uid"));
	ok(w.len == strlen(P ".node.6f1d-uid") && !memcmp(w.buf, P ".node.6f1d-uid", w.len), "node channel");
	w.len = 0;
	rw_shard(&w, P, 0);
	ok(w.len == strlen(P ".shard.0") && !memcmp(w.buf, P ".shard.0", w.len), "shard channel 0");
	w.len = 0;
	rw_shard(&w, P, 12);
	ok(w.len == strlen(P ".shard.12") && !memcmp(w.buf, P ".shard.12", w.len), "shard channel 12");
	jw_free(&w);

	ok(rw_client_channel(S(P ".client.news"), P, false, &ch) && span_str(ch, "news"), "client channel, plain");
	ok(rw_client_channel(S(P ".client.{news}"), P, true, &ch) && span_str(ch, "news"), "client channel, cluster");
	ok(rw_client_channel(S(P ".client.{}"), P, true, &ch) && ch.n == 0, "client channel, cluster, empty");
	ok(!rw_client_channel(S(P ".client.news"), P, true, &ch), "cluster refuses a channel without braces");
	ok(!rw_client_channel(S(P ".client.{news"), P, true, &ch), "cluster refuses an open brace");
	ok(!rw_client_channel(S(P ".stream.news"), P, false, &ch), "not a client channel");
	ok(!rw_client_channel(S("centrifuge.client.news"), P, false, &ch), "another prefix");
}

/* ---- sharding ---- */

static void test_shards(void)
{
	static const struct {
		const char *ch;
		uint64_t h;
		unsigned s[6];
	} t[] = {
		{ "news", 0xe5495bbaa03a6526ULL, { 1, 2, 3, 3, 3, 3 } },
		{ "chat:index", 0x4e648ca6baf3d6b9ULL, { 0, 0, 0, 0, 0, 0 } },
		{ "personal:#42", 0x3cc57fb6f4e9d6d0ULL, { 1, 1, 3, 3, 3, 3 } },
		{ "test", 0xf9e6e6ef197c2b25ULL, { 1, 1, 1, 1, 1, 10 } },
		{ "a", 0xaf63dc4c8601ec8cULL, { 1, 2, 2, 2, 2, 12 } },
	};
	static const unsigned ns[6] = { 2, 3, 4, 5, 8, 16 };

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(t); i++) {
		ok(rw_fnv1a64(t[i].ch, strlen(t[i].ch)) == t[i].h, "fnv1a64(%s)", t[i].ch);
		for (size_t k = 0; k < 6; k++)
			is_int(rw_shard_of(S(t[i].ch), ns[k]), t[i].s[k], "shard of %s among %u", t[i].ch, ns[k]);
		is_int(rw_shard_of(S(t[i].ch), 1), 0, "one shard: %s on 0", t[i].ch);
	}
	is_int(rw_jump(0, 1), 0, "jump over one bucket");
}

/* ---- protobuf and frames ---- */

static void test_examples(void)
{
	static const uint8_t p1[] = {
		0x5f, 0x5f, 0x70, 0x31, 0x3a, 0x33, 0x3a, 0x48, 0x71, 0x7a, 0x44, 0x62, 0x57, 0x4b, 0x73, 0x5f, 0x5f,
		0x22, 0x07, 0x7b, 0x22, 0x78, 0x22, 0x3a, 0x31, 0x7d,
		0x48, 0x80, 0xd0, 0x95, 0xff, 0xbc, 0x31,
	};
	static const uint8_t join[] = { 0x5f, 0x5f, 0x6a, 0x5f, 0x5f, 0x0a, 0x02, 0x34, 0x32, 0x12, 0x02, 0x63, 0x31 };
	struct publication pub = { .data = S("{\"x\":1}"), .time = 1700000000000 };
	struct client_info ci = { .user = S("42"), .client = S("c1") };
	struct jw w = { 0 };
	struct rw_frame f;

	jw_lit(&w, "__p1:3:HqzDbWKs__");
	rw_pub_encode(&w, &pub, false);
	ok(w.len == sizeof(p1) && memcmp(w.buf, p1, w.len) == 0, "§3.2 p1 example byte for byte");
	ok(rw_frame_parse(w.buf, w.len, &f) == 0 && f.type == RW_F_PUB && f.offset == 3 &&
	   span_str(f.epoch, "HqzDbWKs") && span_is(f.body, p1 + 17, sizeof(p1) - 17) && !f.delta_frame,
	   "§3.2 p1 example parses");
	w.len = 0;
	rw_join_leave(&w, true, &ci);
	ok(w.len == sizeof(join) && memcmp(w.buf, join, w.len) == 0, "§3.2 join example byte for byte");
	jw_free(&w);
}

static void test_pub(void)
{
	static const char bin[] = { 0, 1, '_', '_', ':', (char)0xff, 0x0a, 0 };
	struct tag tags[3] = { { S("k1"), S("v1") }, { S("empty"), S("") }, { S("k3"), S("a:b") } };
	struct client_info ci = { S("u1"), S("c-1"), { bin, sizeof(bin) }, S("{\"a\":1}") }, ci2;
	struct publication pub = { .data = { bin, sizeof(bin) }, .info = &ci, .tags = tags, .ntags = 3,
				   .time = 1700000000123 }, got;
	struct tag gt[4];
	struct jw w = { 0 };
	bool delta;
	uint64_t version;

	rw_pub_encode_v(&w, &pub, true, 7);
	ok(rw_pub_decode_v(w.buf, w.len, &got, &ci2, gt, 4, &delta, &version) == 0, "Publication decodes");
	ok(span_is(got.data, bin, sizeof(bin)) && got.time == pub.time && got.offset == 0 && delta && version == 7,
	   "data, time, delta, version");
	ok(got.info == &ci2 && span_str(ci2.user, "u1") && span_str(ci2.client, "c-1") &&
	   span_is(ci2.conn_info, bin, sizeof(bin)) && span_str(ci2.chan_info, "{\"a\":1}"), "info");
	ok(got.ntags == 3 && span_str(gt[0].key, "k1") && span_str(gt[0].value, "v1") &&
	   span_str(gt[1].key, "empty") && gt[1].value.n == 0 && span_str(gt[2].value, "a:b"), "tags");
	ok(rw_pub_decode(w.buf, w.len, &got, &ci2, gt, 1, &delta) == 0 && got.ntags == 1, "tags beyond MAXTAGS skipped");
	ok(rw_pub_decode(w.buf, w.len, &got, NULL, NULL, 0, NULL) == 0 && got.info == NULL && got.ntags == 0 &&
	   span_is(got.data, bin, sizeof(bin)), "info and tags may be left out");

	/* Field 6 offset, and unknown fields of every wire type, are read past. */
	pb_tag(&w, 6, 0);
	pb_varint(&w, 99);
	pb_tag(&w, 10, 2);
	pb_varint(&w, 2);
	jw_raw(&w, "ch", 2);
	pb_tag(&w, 13, 1);
	jw_raw(&w, "12345678", 8);
	pb_tag(&w, 20, 5);
	jw_raw(&w, "1234", 4);
	pb_tag(&w, 21, 0);
	pb_varint(&w, 300);
	ok(rw_pub_decode(w.buf, w.len, &got, &ci2, gt, 4, &delta) == 0 && got.offset == 99 && got.ntags == 3 &&
	   span_is(got.data, bin, sizeof(bin)), "offset read, unknown fields skipped");
	ok(rw_pub_decode(w.buf, w.len - 1, &got, &ci2, gt, 4, &delta) != 0, "truncated Publication refused");
	w.len = 0;
	pb_tag(&w, 4, 0);
	pb_varint(&w, 1);
	ok(rw_pub_decode(w.buf, w.len, &got, &ci2, gt, 4, &delta) != 0, "data with a varint wire type refused");

	w.len = 0;
	pub = (struct publication){ 0 };
	rw_pub_encode(&w, &pub, false);
	ok(w.len == 0, "an empty Publication is empty");
	w.len = 0;
	pub.time = -1;
	rw_pub_encode(&w, &pub, false);
	ok(rw_pub_decode(w.buf, w.len, &got, &ci2, gt, 4, &delta) == 0 && got.time == -1 && !delta &&
	   got.info == NULL, "negative time round trip");

	w.len = 0;
	ci = (struct client_info){ S("42"), S("c1"), S(""), S("x") };
	rw_info_encode(&w, &ci);
	ok(rw_info_decode(w.buf, w.len, &ci2) == 0 && span_str(ci2.user, "42") && span_str(ci2.client, "c1") &&
	   ci2.conn_info.n == 0 && span_str(ci2.chan_info, "x"), "ClientInfo round trip");
	jw_free(&w);
}

static void test_frames(void)
{
	static const char prev[] = { 'a', ':', '_', '_', 0, ':' }, cur[] = { '_', '_', 'p', '1', ':', 0, 'z' };
	struct rw_frame f;
	struct jw w = { 0 };

	jw_lit(&w, "__p1:17:AbCdEfGh__");
	jw_raw(&w, cur, sizeof(cur));
	ok(rw_frame_parse(w.buf, w.len, &f) == 0 && f.offset == 17 && span_str(f.epoch, "AbCdEfGh") &&
	   span_is(f.body, cur, sizeof(cur)), "p1, 8-letter epoch, body holding __");
	w.len = 0;
	jw_lit(&w, "__p1:18446744073709551615:1700000000__x");
	ok(rw_frame_parse(w.buf, w.len, &f) == 0 && f.offset == UINT64_MAX && span_str(f.epoch, "1700000000") &&
	   span_str(f.body, "x"), "p1, 10-digit epoch, largest offset");
	w.len = 0;
	jw_lit(&w, "__d1:5:1700000000:6:");
	jw_raw(&w, prev, sizeof(prev));
	jw_lit(&w, ":7:");
	jw_raw(&w, cur, sizeof(cur));
	ok(rw_frame_parse(w.buf, w.len, &f) == 0 && f.delta_frame && f.type == RW_F_PUB && f.offset == 5 &&
	   span_str(f.epoch, "1700000000") && span_is(f.prev, prev, sizeof(prev)) &&
	   span_is(f.body, cur, sizeof(cur)), "d1 with ':' and '__' in both payloads");
	w.len = 0;
	jw_lit(&w, "__d1:1:AbCdEfGh:0::3:abc");
	ok(rw_frame_parse(w.buf, w.len, &f) == 0 && f.prev.n == 0 && span_str(f.body, "abc"), "d1 with empty prev");
	ok(rw_frame_parse("\"\x07{}", 4, &f) == 0 && f.type == RW_F_PUB && f.offset == 0 && f.epoch.n == 0 &&
	   f.body.n == 4 && !f.delta_frame, "raw publication");
	ok(rw_frame_parse("", 0, &f) == 0 && f.type == RW_F_PUB && f.body.n == 0, "empty raw publication");
	ok(rw_frame_parse("__j__\x0a\x01u", 8, &f) == 0 && f.type == RW_F_JOIN && f.body.n == 3, "join");
	ok(rw_frame_parse("__l__", 5, &f) == 0 && f.type == RW_F_LEAVE && f.body.n == 0, "leave");

	static const char *const bad[] = {
		"__", "__x__", "__p1:", "__p1:3:abc", "__p1::abc__x", "__p1:3x:abc__", "__p1:18446744073709551616:e__",
		"__p2:3:e__", "__d1:3:e:1:a:1:", "__d1:3:e:5:a:1:b", "__d1:3:e:1:ab:1:b", "__d1:3:e:1:a:2:b",
		"__d1:3:e:1:a:1:bc", "__d1:3:e", "__d1:x:e:0::0:", "__j_",
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(bad); i++)
		ok(rw_frame_parse(bad[i], strlen(bad[i]), &f) != 0, "malformed frame refused: %s", bad[i]);
	jw_free(&w);
}

/* ---- controlpb ---- */

/* Encodes C, decodes it into GOT (whose spans point into KEEP's bytes) and
 * checks that encoding GOT again gives the same bytes. */
static bool cmd_trip(const struct rw_cmd *c, struct rw_cmd *got, struct jw *keep)
{
	struct jw again = { 0 };
	bool same;

	keep->len = 0;
	rw_cmd_encode(keep, c);
	if (rw_cmd_decode(keep->buf, keep->len, got) != 0)
		return false;
	rw_cmd_encode(&again, got);
	same = again.len == keep->len && memcmp(again.buf, keep->buf, keep->len) == 0;
	jw_free(&again);
	return same && got->type == c->type && span_is(got->uid, c->uid.p, c->uid.n);
}

static void test_cmd(void)
{
	struct rw_cmd c, g;
	struct jw scratch = { 0 }, w = { 0 }, k = { 0 };
	struct pstr wl, s;
	static const struct pstr spare[3] = { { "c-1", 3 }, { "", 0 }, { "c-3", 3 } };

	c = (struct rw_cmd){ .uid = S("n1"), .type = RW_CMD_NODE,
		.node = { S("n1"), S("rotor_8000"), S("6.9.1 OSS"), 10, 5, 300, 3600, 12 } };
	ok(cmd_trip(&c, &g, &k) && span_str(g.node.uid, "n1") && span_str(g.node.name, "rotor_8000") &&
	   span_str(g.node.version, "6.9.1 OSS") && g.node.num_clients == 10 && g.node.num_users == 5 &&
	   g.node.num_channels == 300 && g.node.uptime == 3600 && g.node.num_subs == 12, "Node round trip");

	c = (struct rw_cmd){ .uid = S("n1"), .type = RW_CMD_UNSUBSCRIBE,
		.unsubscribe = { S("news"), S("u"), S("c"), S("s"), S("bye"), 2000, true } };
	ok(cmd_trip(&c, &g, &k) && span_str(g.unsubscribe.channel, "news") && span_str(g.unsubscribe.user, "u") &&
	   span_str(g.unsubscribe.client, "c") && span_str(g.unsubscribe.session, "s") &&
	   span_str(g.unsubscribe.reason, "bye") && g.unsubscribe.code == 2000 && g.unsubscribe.all_users,
	   "Unsubscribe round trip");

	c = (struct rw_cmd){ .uid = S("n1"), .type = RW_CMD_DISCONNECT,
		.disconnect = { S("u"), S("c"), S("s"), S("go away"), 3001, { 0 }, false } };
	rw_cmd_set_whitelist(&scratch, spare, 3, &c);
	ok(cmd_trip(&c, &g, &k) && span_str(g.disconnect.user, "u") && span_str(g.disconnect.client, "c") &&
	   span_str(g.disconnect.session, "s") && span_str(g.disconnect.reason, "go away") &&
	   g.disconnect.code == 3001 && !g.disconnect.all_users, "Disconnect round trip");
	wl = g.disconnect.whitelist;
	ok(rw_next_string(&wl, &s) && span_str(s, "c-1") && rw_next_string(&wl, &s) && s.n == 0 &&
	   rw_next_string(&wl, &s) && span_str(s, "c-3") && !rw_next_string(&wl, &s), "whitelist of three, one empty");
	c.disconnect.whitelist = (struct pstr){ 0 };
	c.disconnect.all_users = true;
	ok(cmd_trip(&c, &g, &k) && g.disconnect.all_users && (wl = g.disconnect.whitelist, !rw_next_string(&wl, &s)),
	   "Disconnect without whitelist");

	c = (struct rw_cmd){ .uid = S("n1"), .type = RW_CMD_SHUTDOWN };
	rw_cmd_encode(&w, &c);
	ok(w.len == 6 && memcmp(w.buf, "\x0a\x02n1\x3a\x00", 6) == 0, "Shutdown is an empty field 7");
	ok(cmd_trip(&c, &g, &k), "Shutdown round trip");

	c = (struct rw_cmd){ .uid = S("n1"), .type = RW_CMD_SURVEY_REQUEST,
		.survey_request = { UINT64_MAX, S("channels"), { "\x0a\x01*", 3 } } };
	ok(cmd_trip(&c, &g, &k) && g.survey_request.id == UINT64_MAX && span_str(g.survey_request.op, "channels") &&
	   span_is(g.survey_request.data, "\x0a\x01*", 3), "SurveyRequest round trip");

	c = (struct rw_cmd){ .uid = S("n2"), .type = RW_CMD_SURVEY_RESPONSE,
		.survey_response = { 42, 3, { "\0\1", 2 } } };
	ok(cmd_trip(&c, &g, &k) && g.survey_response.id == 42 && g.survey_response.code == 3 &&
	   span_is(g.survey_response.data, "\0\1", 2), "SurveyResponse round trip");

	c = (struct rw_cmd){ .uid = S("n1"), .type = RW_CMD_SUBSCRIBE,
		.subscribe = { S("u"), S("news"), S("{\"i\":1}"), S("c"), S("{}"), S("s"), S("AbCdEfGh"),
			       true, true, true, true, true, true, true, -5, 77 } };
	ok(cmd_trip(&c, &g, &k) && span_str(g.subscribe.user, "u") && span_str(g.subscribe.channel, "news") &&
	   span_str(g.subscribe.channel_info, "{\"i\":1}") && span_str(g.subscribe.client, "c") &&
	   span_str(g.subscribe.data, "{}") && span_str(g.subscribe.session, "s") &&
	   span_str(g.subscribe.since_epoch, "AbCdEfGh") && g.subscribe.emit_presence &&
	   g.subscribe.emit_join_leave && g.subscribe.push_join_leave && g.subscribe.position &&
	   g.subscribe.recover && g.subscribe.has_since && g.subscribe.all_users &&
	   g.subscribe.expire_at == -5 && g.subscribe.since_offset == 77, "Subscribe round trip");
	c.subscribe = (struct rw_cmd){ 0 }.subscribe;
	c.subscribe.channel = S("x");
	ok(cmd_trip(&c, &g, &k) && !g.subscribe.has_since && !g.subscribe.recover, "Subscribe without recover_since");

	c = (struct rw_cmd){ .uid = S("n1"), .type = RW_CMD_NOTIFICATION,
		.notification = { S("usage_stats.last_sent_at"), S("123") } };
	ok(cmd_trip(&c, &g, &k) && span_str(g.notification.op, "usage_stats.last_sent_at") &&
	   span_str(g.notification.data, "123"), "Notification round trip");

	c = (struct rw_cmd){ .uid = S("n1"), .type = RW_CMD_REFRESH,
		.refresh = { S("u"), S("c"), S("s"), S("{}"), true, true, 1700000000 } };
	ok(cmd_trip(&c, &g, &k) && span_str(g.refresh.user, "u") && span_str(g.refresh.client, "c") &&
	   span_str(g.refresh.session, "s") && span_str(g.refresh.info, "{}") && g.refresh.expired &&
	   g.refresh.all_users && g.refresh.expire_at == 1700000000, "Refresh round trip");

	/* Unknown fields in Command and in a sub-message; label_filter,
	 * metrics, data and source are read past. */
	w.len = 0;
	pb_lenfield(&w, 1, "n9", 2);
	pb_lenfield(&w, 3, "old", 3);
	pb_tag(&w, 4, 2);
	size_t at = pb_hold(&w);
	pb_lenfield(&w, 1, "n9", 2);
	pb_tag(&w, 8, 2);
	size_t at2 = pb_hold(&w);
	pb_tag(&w, 1, 1);
	jw_raw(&w, "\0\0\0\0\0\0\x24\x40", 8);
	pb_fix(&w, at2);
	pb_lenfield(&w, 9, "xx", 2);
	pb_tag(&w, 10, 0);
	pb_varint(&w, 4);
	pb_tag(&w, 99, 5);
	jw_raw(&w, "abcd", 4);
	pb_fix(&w, at);
	ok(rw_cmd_decode(w.buf, w.len, &g) == 0 && g.type == RW_CMD_NODE && span_str(g.uid, "n9") &&
	   span_str(g.node.uid, "n9") && g.node.num_subs == 4, "unknown and unmodelled fields skipped");
	ok(rw_cmd_decode(w.buf, w.len - 2, &g) != 0, "truncated Command refused");
	w.len = 0;
	pb_lenfield(&w, 1, "n9", 2);
	ok(rw_cmd_decode(w.buf, w.len, &g) == 0 && g.type == RW_CMD_NONE, "no sub-message: RW_CMD_NONE");
	w.len = 0;
	pb_tag(&w, 5, 0);
	pb_varint(&w, 1);
	ok(rw_cmd_decode(w.buf, w.len, &g) != 0, "a sub-message with a varint wire type refused");

	/* Two sub-messages: centrifuge's handleControl order decides (shutdown
	 * before unsubscribe, though 7 > 5); a broken one refuses the whole. */
	w.len = 0;
	pb_lenfield(&w, 1, "n1", 2);
	pb_lenfield(&w, 5, "\x0a\x01x", 3);
	pb_lenfield(&w, 7, "", 0);
	ok(rw_cmd_decode(w.buf, w.len, &g) == 0 && g.type == RW_CMD_SHUTDOWN && span_str(g.uid, "n1"),
	   "shutdown wins over unsubscribe");
	pb_lenfield(&w, 12, "\x0a\x05x", 3);
	ok(rw_cmd_decode(w.buf, w.len, &g) != 0, "a malformed refresh beside them refuses the Command");
	jw_free(&w);
	jw_free(&k);
	jw_free(&scratch);
}

struct chans {
	char got[256];
	size_t len;
	unsigned n;
};

static void on_channel(void *arg, struct pstr ch, uint32_t num)
{
	struct chans *c = arg;

	c->len += (size_t)snprintf(c->got + c->len, sizeof(c->got) - c->len, "%.*s=%u;", (int)ch.n, ch.p, num);
	c->n++;
}

static void test_channels(void)
{
	struct jw w = { 0 };
	struct pstr pat;
	struct chans c = { 0 };

	rw_channels_request(&w, S("chat:*"));
	ok(w.len == 8 && memcmp(w.buf, "\x0a\x06" "chat:*", 8) == 0, "ChannelsRequest bytes");
	ok(rw_channels_request_decode(w.buf, w.len, &pat) == 0 && span_str(pat, "chat:*"), "ChannelsRequest decodes");
	w.len = 0;
	rw_channels_result_add(&w, S("a"), 1);
	rw_channels_result_add(&w, S("chat:index"), 300);
	rw_channels_result_add(&w, S("x"), 70000);
	ok(w.len > 7 && memcmp(w.buf, "\x0a\x07\x0a\x01" "a\x12\x02\x08\x01", 9) == 0, "ChannelsResult entry bytes");
	ok(rw_channels_result_decode(w.buf, w.len, on_channel, &c) == 0 && c.n == 3 &&
	   strcmp(c.got, "a=1;chat:index=300;x=70000;") == 0, "ChannelsResult with three channels");
	ok(rw_channels_result_decode(w.buf, w.len - 1, on_channel, &c) != 0, "truncated ChannelsResult refused");
	jw_free(&w);
}

static void test_epoch(void)
{
	char e[9], e2[9];
	bool shape = true;
	unsigned seen_lower = 0, seen_upper = 0;

	for (int i = 0; i < 200; i++) {
		rw_epoch_new(e);
		shape = shape && strlen(e) == 8;
		for (int k = 0; k < 8; k++) {
			shape = shape && ((e[k] >= 'a' && e[k] <= 'z') || (e[k] >= 'A' && e[k] <= 'Z'));
			seen_lower += e[k] >= 'a' && e[k] <= 'z';
			seen_upper += e[k] >= 'A' && e[k] <= 'Z';
		}
	}
	ok(shape, "epochs are 8 letters [a-zA-Z]");
	ok(seen_lower > 400 && seen_upper > 400, "both cases appear (%u lower, %u upper of 1600)", seen_lower, seen_upper);
	rw_epoch_new(e2);
	ok(strcmp(e, e2) != 0, "two epochs differ");
	is_int(rw_secs(500), 0, "500 ms is 0 s");
	is_int(rw_secs(60999), 60, "60999 ms is 60 s");
}

/* ---- scripts on a real Redis ---- */

struct av {
	const char *v[24];
	size_t l[24];
	int n;
};

static void av_b(struct av *a, const void *p, size_t n)
{
	a->v[a->n] = p;
	a->l[a->n++] = n;
}
static void av_s(struct av *a, const char *s) { av_b(a, s, strlen(s)); }

static redisReply *run(redisContext *c, struct av *a)
{
	return redisCommandArgv(c, a->n, a->v, a->l);
}

static redisReply *rcmd(redisContext *c, const char *fmt, ...)
{
	va_list ap;
	redisReply *r;

	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	return r;
}

static long long rint_(redisContext *c, const char *fmt, const char *arg)
{
	redisReply *r = rcmd(c, fmt, arg);
	long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
	freeReplyObject(r);
	return v;
}

static bool str_is(const redisReply *r, const char *want)
{
	return r && r->type == REDIS_REPLY_STRING && r->len == strlen(want) && memcmp(r->str, want, r->len) == 0;
}

static bool bin_is(const redisReply *r, const void *p, size_t n)
{
	return r && r->type == REDIS_REPLY_STRING && r->len == n && memcmp(r->str, p, n) == 0;
}

/* Reply element 0 as a number, integer or bulk string. */
static long long num_of(const redisReply *r)
{
	if (r->type == REDIS_REPLY_INTEGER)
		return r->integer;
	if (r->type == REDIS_REPLY_STRING)
		return atoll(r->str);
	return -1;
}

/* The publish script; VERSION "0" for none, RESULT_TTL "" for none. */
static redisReply *publish(redisContext *c, const char *ch, const struct jw *pub, const char *size,
			   const char *epoch, const char *result_ttl, const char *delta, const char *version,
			   const char *vepoch, const char *key)
{
	struct av a = { .n = 0 };
	char stream[128], meta[128], result[128], chan[128];

	snprintf(stream, sizeof(stream), P ".stream.%s", ch);
	snprintf(meta, sizeof(meta), P ".stream.meta.%s", ch);
	snprintf(result, sizeof(result), P ".result.%s.%s", ch, key);
	snprintf(chan, sizeof(chan), P ".client.%s", ch);
	av_s(&a, "EVAL");
	av_s(&a, rw_script_publish_stream);
	av_s(&a, "3");
	av_s(&a, stream);
	av_s(&a, meta);
	av_s(&a, result);
	av_b(&a, pub->buf, pub->len);
	av_s(&a, size);
	av_s(&a, "100");
	av_s(&a, chan);
	av_s(&a, "200");
	av_s(&a, epoch);
	av_s(&a, "publish");
	av_s(&a, result_ttl);
	av_s(&a, delta);
	av_s(&a, version);
	av_s(&a, vepoch);
	return run(c, &a);
}

/* The next PUB/SUB message's payload on SUB (NULL after 2 s). */
static redisReply *next_message(redisContext *sub)
{
	void *r = NULL;

	if (redisGetReply(sub, &r) != REDIS_OK)
		return NULL;
	return r;
}

static bool message_is(redisContext *sub, const void *want, size_t n)
{
	redisReply *r = next_message(sub);
	bool yes = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3 && str_is(r->element[0], "message") &&
		   bin_is(r->element[2], want, n);
	if (!yes && r && r->type == REDIS_REPLY_ARRAY && r->elements == 3)
		printf("#   message of %zu bytes: %.*s\n", r->element[2]->len, (int)r->element[2]->len, r->element[2]->str);
	freeReplyObject(r);
	return yes;
}

static bool publish_ok(redisReply *r, long long off, const char *epoch, const char *cached, const char *supp)
{
	bool yes = r && r->type == REDIS_REPLY_ARRAY && r->elements == 4 && num_of(r->element[0]) == off &&
		   str_is(r->element[1], epoch) && str_is(r->element[2], cached) && str_is(r->element[3], supp);
	if (!yes && r && r->type == REDIS_REPLY_ERROR)
		printf("#   %s\n", r->str);
	freeReplyObject(r);
	return yes;
}

static void pub_bytes(struct jw *w, const char *data)
{
	struct publication p = { .data = S(data), .time = 1700000000000 };

	w->len = 0;
	rw_pub_encode(w, &p, false);
}

static void test_publish_stream(redisContext *c, redisContext *sub)
{
	struct jw pub[4] = { { 0 } }, frame = { 0 };
	redisReply *r;
	struct timeval tv = { 2, 0 };

	freeReplyObject(rcmd(sub, "SUBSCRIBE %s", P ".client.s1"));
	redisSetTimeout(sub, tv);
	for (int i = 0; i < 4; i++) {
		char d[16];
		snprintf(d, sizeof(d), "{\"n\":%d}", i + 1);
		pub_bytes(&pub[i], d);
	}
	ok(publish_ok(publish(c, "s1", &pub[0], "10", "EpOcHaaa", "", "", "0", "", ""), 1, "EpOcHaaa", "0", "0"),
	   "first publish: offset 1, the candidate epoch");
	ok(publish_ok(publish(c, "s1", &pub[1], "10", "Zzzzzzzz", "", "", "0", "", ""), 2, "EpOcHaaa", "0", "0"),
	   "second publish: offset 2, the stored epoch");
	ok(publish_ok(publish(c, "s1", &pub[2], "10", "Zzzzzzzz", "", "", "0", "", ""), 3, "EpOcHaaa", "0", "0"),
	   "third publish: offset 3");
	for (int i = 0; i < 3; i++) {
		char h[64];
		frame.len = 0;
		snprintf(h, sizeof(h), "__p1:%d:EpOcHaaa__", i + 1);
		jw_lit(&frame, h);
		jw_raw(&frame, pub[i].buf, pub[i].len);
		ok(message_is(sub, frame.buf, frame.len), "p1 frame %d published byte for byte", i + 1);
	}

	r = rcmd(c, "XRANGE %s - +", P ".stream.s1");
	bool shape = r && r->type == REDIS_REPLY_ARRAY && r->elements == 3;
	for (size_t i = 0; shape && i < 3; i++) {
		char id[16];
		redisReply *e = r->element[i];
		snprintf(id, sizeof(id), "%zu-0", i + 1);
		shape = e->elements == 2 && str_is(e->element[0], id) && e->element[1]->elements == 2 &&
			str_is(e->element[1]->element[0], "d") &&
			bin_is(e->element[1]->element[1], pub[i].buf, pub[i].len);
	}
	ok(shape, "XRANGE: ids 1-0..3-0, one field d holding the Publication");
	freeReplyObject(r);
	r = rcmd(c, "HMGET %s e s", P ".stream.meta.s1");
	ok(r && r->elements == 2 && str_is(r->element[0], "EpOcHaaa") && str_is(r->element[1], "3"), "meta e and s");
	freeReplyObject(r);
	long long ttl = rint_(c, "TTL %s", P ".stream.s1"), mttl = rint_(c, "PTTL %s", P ".stream.meta.s1");
	ok(ttl > 95 && ttl <= 100, "stream TTL = history_ttl (%lld)", ttl);
	ok(mttl > 195000 && mttl <= 200000, "meta PTTL = meta ttl (%lld)", mttl);

	/* Exact MAXLEN. */
	for (int i = 0; i < 5; i++)
		freeReplyObject(publish(c, "s2", &pub[0], "3", "EpOcHbbb", "", "", "0", "", ""));
	r = rcmd(c, "XRANGE %s - +", P ".stream.s2");
	ok(r && r->elements == 3 && str_is(r->element[0]->element[0], "3-0") &&
	   str_is(r->element[2]->element[0], "5-0"), "MAXLEN 3 is exact: 3-0..5-0 kept");
	freeReplyObject(r);

	/* Idempotency. */
	ok(publish_ok(publish(c, "s1", &pub[3], "10", "Zzzzzzzz", "300", "", "0", "", "key1"), 4, "EpOcHaaa", "0", "0"),
	   "publish with an idempotency key: offset 4");
	frame.len = 0;
	jw_lit(&frame, "__p1:4:EpOcHaaa__");
	jw_raw(&frame, pub[3].buf, pub[3].len);
	ok(message_is(sub, frame.buf, frame.len), "p1 frame 4 published");
	ok(publish_ok(publish(c, "s1", &pub[3], "10", "Zzzzzzzz", "300", "", "0", "", "key1"), 4, "EpOcHaaa", "1", "0"),
	   "same key again: offset 4 from the cache");
	is_int(rint_(c, "XLEN %s", P ".stream.s1"), 4, "one stream entry for the two calls");
	r = rcmd(c, "HMGET %s e s", P ".result.s1.key1");
	ok(r && r->elements == 2 && str_is(r->element[0], "EpOcHaaa") && str_is(r->element[1], "4"), "result hash e, s");
	freeReplyObject(r);
	ttl = rint_(c, "TTL %s", P ".result.s1.key1");
	ok(ttl > 295 && ttl <= 300, "result TTL 300 (%lld)", ttl);

	/* Version gate. */
	ok(publish_ok(publish(c, "s1", &pub[0], "10", "Zzzzzzzz", "", "", "5", "", ""), 5, "EpOcHaaa", "0", "0"),
	   "version 5 accepted: offset 5");
	freeReplyObject(next_message(sub));   /* its frame, checked above for others */
	ok(publish_ok(publish(c, "s1", &pub[0], "10", "Zzzzzzzz", "", "", "5", "", ""), 5, "EpOcHaaa", "0", "1"),
	   "version 5 again suppressed, offset stays 5");
	ok(publish_ok(publish(c, "s1", &pub[0], "10", "Zzzzzzzz", "", "", "4", "", ""), 5, "EpOcHaaa", "0", "1"),
	   "version 4 suppressed");
	ok(publish_ok(publish(c, "s1", &pub[0], "10", "Zzzzzzzz", "", "", "3", "ve2", ""), 6, "EpOcHaaa", "0", "0"),
	   "version 3 of another version epoch accepted: offset 6");
	r = rcmd(c, "HMGET %s v ve", P ".stream.meta.s1");
	ok(r && r->elements == 2 && str_is(r->element[0], "3") && str_is(r->element[1], "ve2"), "meta v, ve");
	freeReplyObject(r);
	freeReplyObject(next_message(sub));   /* its frame, checked above for others */
	is_int(rint_(c, "XLEN %s", P ".stream.s1"), 6, "suppressed publishes added nothing");

	/* Delta: d1 with the previous entry's d. */
	ok(publish_ok(publish(c, "s1", &pub[1], "10", "Zzzzzzzz", "", "1", "0", "", ""), 7, "EpOcHaaa", "0", "0"),
	   "delta publish: offset 7");
	r = next_message(sub);
	struct rw_frame f;
	ok(r && r->elements == 3 && rw_frame_parse(r->element[2]->str, r->element[2]->len, &f) == 0 &&
	   f.delta_frame && f.offset == 7 && span_str(f.epoch, "EpOcHaaa") &&
	   span_is(f.prev, pub[0].buf, pub[0].len) && span_is(f.body, pub[1].buf, pub[1].len),
	   "d1 frame: prev = the last entry's d, cur = the new Publication");
	freeReplyObject(r);

	/* A new epoch when meta is gone: offset 1, old stream deleted. */
	freeReplyObject(rcmd(c, "DEL %s", P ".stream.meta.s1"));
	ok(publish_ok(publish(c, "s1", &pub[2], "10", "NewEpoch", "", "1", "0", "", ""), 1, "NewEpoch", "0", "0"),
	   "after DEL meta: offset 1 in a new epoch");
	is_int(rint_(c, "XLEN %s", P ".stream.s1"), 1, "old stream deleted");
	r = next_message(sub);
	frame.len = 0;
	jw_lit(&frame, "__d1:1:NewEpoch:0::");
	jw_u64(&frame, pub[2].len);
	jw_raw(&frame, ":", 1);
	jw_raw(&frame, pub[2].buf, pub[2].len);
	ok(r && r->elements == 3 && bin_is(r->element[2], frame.buf, frame.len), "d1 of a new epoch has no prev");
	freeReplyObject(r);

	freeReplyObject(rcmd(sub, "UNSUBSCRIBE"));
	for (int i = 0; i < 4; i++)
		jw_free(&pub[i]);
	jw_free(&frame);
}

static redisReply *history(redisContext *c, const char *ch, const char *incl, const char *start, const char *limit,
			   const char *reverse, const char *epoch)
{
	struct av a = { .n = 0 };
	char stream[128], meta[128];

	snprintf(stream, sizeof(stream), P ".stream.%s", ch);
	snprintf(meta, sizeof(meta), P ".stream.meta.%s", ch);
	av_s(&a, "EVAL");
	av_s(&a, rw_script_history_stream);
	av_s(&a, "2");
	av_s(&a, stream);
	av_s(&a, meta);
	av_s(&a, incl);
	av_s(&a, start);
	av_s(&a, limit);
	av_s(&a, reverse);
	av_s(&a, "500");
	av_s(&a, epoch);
	return run(c, &a);
}

/* Whether history reply R has top TOP, epoch EPOCH and the entry ids IDS
 * ("1-0,2-0"; NULL for no entries array). */
static bool history_is(redisReply *r, long long top, const char *epoch, const char *ids)
{
	char got[128] = "";
	size_t len = 0;
	bool yes = r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && num_of(r->element[0]) == top &&
		   str_is(r->element[1], epoch);

	if (yes && ids == NULL)
		yes = r->elements == 2;
	else if (yes) {
		yes = r->elements == 3 && r->element[2]->type == REDIS_REPLY_ARRAY;
		for (size_t i = 0; yes && i < r->element[2]->elements; i++)
			len += (size_t)snprintf(got + len, sizeof(got) - len, "%s%s", i ? "," : "",
						r->element[2]->element[i]->element[0]->str);
		yes = yes && strcmp(got, ids) == 0;
		if (!yes)
			printf("#   ids %s\n", got);
	}
	if (!yes && r && r->type == REDIS_REPLY_ERROR)
		printf("#   %s\n", r->str);
	freeReplyObject(r);
	return yes;
}

static void test_history(redisContext *c)
{
	struct jw pub = { 0 };

	pub_bytes(&pub, "h");
	for (int i = 0; i < 5; i++)
		freeReplyObject(publish(c, "h1", &pub, "10", "HistEpch", "", "", "0", "", ""));
	ok(history_is(history(c, "h1", "1", "0", "0", "0", "Zzzzzzzz"), 5, "HistEpch", "1-0,2-0,3-0,4-0,5-0"),
	   "forward, all");
	ok(history_is(history(c, "h1", "1", "3", "2", "0", "Zzzzzzzz"), 5, "HistEpch", "3-0,4-0"),
	   "forward from 3, limit 2");
	ok(history_is(history(c, "h1", "1", "0", "2", "1", "Zzzzzzzz"), 5, "HistEpch", "5-0,4-0"),
	   "reverse from the top, limit 2");
	ok(history_is(history(c, "h1", "1", "3", "0", "1", "Zzzzzzzz"), 5, "HistEpch", "3-0,2-0,1-0"),
	   "reverse from 3, all");
	freeReplyObject(rcmd(c, "PERSIST %s", P ".stream.meta.h1"));
	ok(history_is(history(c, "h1", "0", "0", "0", "0", "Zzzzzzzz"), 5, "HistEpch", NULL),
	   "position only: top and epoch, no entries");
	long long ttl = rint_(c, "TTL %s", P ".stream.meta.h1");
	ok(ttl > 495 && ttl <= 500, "a read refreshes the meta TTL (%lld)", ttl);

	ok(history_is(history(c, "fresh", "0", "0", "0", "0", "ReadEpch"), 0, "ReadEpch", NULL),
	   "a read of a new channel creates its epoch, top 0");
	redisReply *r = rcmd(c, "HGETALL %s", P ".stream.meta.fresh");
	ok(r && r->elements == 2 && str_is(r->element[0], "e") && str_is(r->element[1], "ReadEpch"),
	   "the new meta holds only e");
	freeReplyObject(r);
	ok(history_is(history(c, "fresh", "1", "0", "0", "0", "Other123"), 0, "ReadEpch", ""),
	   "the second read keeps that epoch; no entries");
	jw_free(&pub);
}

static void test_publish_idempotent(redisContext *c, redisContext *sub)
{
	struct av a;
	redisReply *r;
	static const char raw[] = "\x22\x02hi";

	freeReplyObject(rcmd(sub, "SUBSCRIBE %s", P ".client.raw"));
	for (int round = 0; round < 2; round++) {
		a = (struct av){ .n = 0 };
		av_s(&a, "EVAL");
		av_s(&a, rw_script_publish_idempotent);
		av_s(&a, "1");
		av_s(&a, P ".result.raw.k");
		av_b(&a, raw, 4);
		av_s(&a, P ".client.raw");
		av_s(&a, "publish");
		av_s(&a, "300");
		r = run(c, &a);
		if (round == 0)
			ok(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1, "idempotent publish: one receiver");
		else
			ok(r && r->type == REDIS_REPLY_ARRAY, "the same key again: the cached result, no publish");
		freeReplyObject(r);
	}
	freeReplyObject(rcmd(c, "PUBLISH %s marker", P ".client.raw"));
	ok(message_is(sub, raw, 4), "the raw Publication was published once");
	ok(message_is(sub, "marker", 6), "then nothing until the marker");
	r = rcmd(c, "HGETALL %s", P ".result.raw.k");
	ok(r && r->elements == 2 && str_is(r->element[0], "e") && str_is(r->element[1], ""), "result hash e = \"\"");
	freeReplyObject(r);
	long long ttl = rint_(c, "TTL %s", P ".result.raw.k");
	ok(ttl > 295 && ttl <= 300, "result TTL 300");
	freeReplyObject(rcmd(sub, "UNSUBSCRIBE"));
}

static redisReply *presence(redisContext *c, const char *script, int nkeys, const char *ch, const char *const *argv)
{
	struct av a = { .n = 0 };
	char k[4][128];

	snprintf(k[0], sizeof(k[0]), P ".presence.expire.%s", ch);
	snprintf(k[1], sizeof(k[1]), P ".presence.data.%s", ch);
	snprintf(k[2], sizeof(k[2]), P ".presence.user.expire.%s", ch);
	snprintf(k[3], sizeof(k[3]), P ".presence.user.clients.%s", ch);
	av_s(&a, "EVAL");
	av_s(&a, script);
	av_s(&a, nkeys == 4 ? "4" : "2");
	for (int i = 0; i < nkeys; i++)
		av_s(&a, k[i]);
	for (; *argv; argv++)
		av_s(&a, *argv);
	return run(c, &a);
}

static void pres_add(redisContext *c, const char *ch, const char *client, const char *user, const char *mapping,
		     long long at)
{
	struct client_info ci = { S(user), S(client), S(""), S("") };
	struct jw info = { 0 };
	char ats[32];

	rw_info_encode(&info, &ci);
	jw_raw(&info, "", 1);   /* NUL-terminate for av_s; ClientInfo holds no NUL here */
	snprintf(ats, sizeof(ats), "%lld", at);
	const char *argv[] = { "60", ats, client, info.buf, user, mapping, "0", NULL };
	redisReply *r = presence(c, rw_script_presence_add, 4, ch, argv);
	if (r && r->type == REDIS_REPLY_ERROR)
		printf("#   %s\n", r->str);
	freeReplyObject(r);
	jw_free(&info);
}

static void pres_rem(redisContext *c, const char *ch, const char *client, const char *user, const char *mapping)
{
	const char *argv[] = { client, user, mapping, "0", NULL };
	freeReplyObject(presence(c, rw_script_presence_rem, 4, ch, argv));
}

/* The clients of presence_get, sorted, as "c1=u1,c2=u2" (ClientInfo
 * decoded). */
static void pres_get(redisContext *c, const char *ch, long long now, char *out, size_t size)
{
	char nows[32];
	const char *argv[] = { nows, "0", NULL };
	redisReply *r;
	size_t len = 0;

	snprintf(nows, sizeof(nows), "%lld", now);
	r = presence(c, rw_script_presence_get, 2, ch, argv);
	out[0] = '\0';
	for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		struct client_info ci;
		if (rw_info_decode(r->element[i + 1]->str, r->element[i + 1]->len, &ci) != 0 ||
		    !span_is(ci.client, r->element[i]->str, r->element[i]->len)) {
			snprintf(out, size, "undecodable");
			break;
		}
		len += (size_t)snprintf(out + len, size - len, "%s%.*s=%.*s", i ? "," : "", (int)ci.client.n,
					ci.client.p, (int)ci.user.n, ci.user.p);
	}
	freeReplyObject(r);
}

static bool pres_stats(redisContext *c, const char *ch, long long now, long long clients, long long users)
{
	char nows[32];
	const char *argv[] = { nows, "0", NULL };
	redisReply *r;
	bool yes;

	snprintf(nows, sizeof(nows), "%lld", now);
	r = presence(c, rw_script_presence_stats, 4, ch, argv);
	yes = r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->integer == clients &&
	      r->element[1]->integer == users;
	if (!yes && r && r->type == REDIS_REPLY_ARRAY && r->elements == 2)
		printf("#   stats %lld %lld\n", r->element[0]->integer, r->element[1]->integer);
	freeReplyObject(r);
	return yes;
}

static void test_presence(redisContext *c)
{
	long long now = (long long)time(NULL);
	char got[256];
	redisReply *r;

	/* With user mapping. */
	pres_add(c, "p1", "c1", "u1", "1", now + 60);
	pres_add(c, "p1", "c2", "u1", "1", now + 60);
	pres_add(c, "p1", "c3", "u2", "1", now + 60);
	pres_add(c, "p1", "c3", "u2", "1", now + 60);   /* a refresh does not count twice */
	pres_get(c, "p1", now, got, sizeof(got));
	ok(strstr(got, "c1=u1") && strstr(got, "c2=u1") && strstr(got, "c3=u2") && strlen(got) == 17,
	   "presence get: three clients (%s)", got);
	ok(pres_stats(c, "p1", now, 3, 2), "stats: 3 clients, 2 users");
	r = rcmd(c, "HGET %s u1", P ".presence.user.clients.p1");
	ok(str_is(r, "2"), "user hash counts u1's two connections");
	freeReplyObject(r);
	r = rcmd(c, "ZSCORE %s c1", P ".presence.expire.p1");
	ok(r && r->type == REDIS_REPLY_STRING && atoll(r->str) == now + 60, "client ZSET score = expire-at");
	freeReplyObject(r);
	r = rcmd(c, "ZSCORE %s u2", P ".presence.user.expire.p1");
	ok(r && r->type == REDIS_REPLY_STRING && atoll(r->str) == now + 60, "user ZSET score = expire-at");
	freeReplyObject(r);
	static const char *const keys[] = { P ".presence.expire.p1", P ".presence.data.p1",
					    P ".presence.user.expire.p1", P ".presence.user.clients.p1" };
	bool ttls = true;
	for (int i = 0; i < 4; i++) {
		long long t = rint_(c, "TTL %s", keys[i]);
		ttls = ttls && t > 55 && t <= 60;
	}
	ok(ttls, "all four presence keys expire in presence_ttl");

	pres_rem(c, "p1", "c1", "u1", "1");
	ok(pres_stats(c, "p1", now, 2, 2), "c1 removed: 2 clients, 2 users");
	pres_rem(c, "p1", "c1", "u1", "1");
	ok(pres_stats(c, "p1", now, 2, 2), "removing c1 again changes nothing");
	pres_rem(c, "p1", "c2", "u1", "1");
	ok(pres_stats(c, "p1", now, 1, 1), "u1's last connection gone: 1 client, 1 user");
	is_int(rint_(c, "HEXISTS %s u1", P ".presence.user.clients.p1"), 0, "u1 left the user hash");
	r = rcmd(c, "ZSCORE %s u1", P ".presence.user.expire.p1");
	ok(r && r->type == REDIS_REPLY_NIL, "u1 left the user ZSET");
	freeReplyObject(r);

	/* Expiry: an entry whose expire-at has passed. */
	pres_add(c, "p1", "old", "u9", "1", now - 10);
	ok(pres_stats(c, "p1", now, 1, 1), "stats drop an expired client and user");
	is_int(rint_(c, "HEXISTS %s old", P ".presence.data.p1"), 0, "expired client gone from the hash");
	is_int(rint_(c, "HEXISTS %s u9", P ".presence.user.clients.p1"), 0, "expired user gone from the user hash");

	/* Without user mapping. */
	pres_add(c, "p2", "a", "ua", "0", now + 60);
	pres_add(c, "p2", "b", "", "0", now + 60);
	pres_add(c, "p2", "gone", "ug", "0", now - 1);
	is_int(rint_(c, "EXISTS %s", P ".presence.user.clients.p2"), 0, "no user hash without mapping");
	pres_get(c, "p2", now, got, sizeof(got));
	ok(strstr(got, "a=ua") && strstr(got, "b=") && !strstr(got, "gone") && strlen(got) == 7,
	   "get without mapping drops the expired one (%s)", got);
	is_int(rint_(c, "ZCARD %s", P ".presence.expire.p2"), 2, "expired member left the ZSET");
	pres_rem(c, "p2", "a", "ua", "0");
	pres_get(c, "p2", now, got, sizeof(got));
	ok(strcmp(got, "b=") == 0, "rem without mapping (%s)", got);
	is_int(rint_(c, "ZCARD %s", P ".presence.expire.p2"), 1, "rem left the ZSET");
}

static void test_scripts(void)
{
	struct redis_server srv;
	redisContext *c, *sub;

	if (!redis_server_available()) {
		ok(1, "# SKIP redis-server is not installed");
		return;
	}
	if (redis_server_start(&srv, 0, NULL) != 0) {
		ok(0, "redis-server starts");
		return;
	}
	c = redisConnect("127.0.0.1", srv.port);
	sub = redisConnect("127.0.0.1", srv.port);
	if (c && !c->err && sub && !sub->err) {
		test_publish_stream(c, sub);
		test_history(c);
		test_publish_idempotent(c, sub);
		test_presence(c);
	} else {
		ok(0, "connect to redis-server");
	}
	if (c)
		redisFree(c);
	if (sub)
		redisFree(sub);
	redis_server_stop(&srv, false);
}

int main(void)
{
	test_names();
	test_shards();
	test_examples();
	test_pub();
	test_frames();
	test_cmd();
	test_channels();
	test_epoch();
	test_scripts();
	return tap_done();
}
