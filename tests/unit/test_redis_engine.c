/*
 * test_redis_engine.c - the Redis engine's worker side (src/engine/redis.c)
 * against a real redis-server on a loopback port: every operation of
 * engine.h through its callbacks on a real libev loop, and what it left in
 * Redis read back with plain commands, so the layout is Centrifugo's
 * (ref/redis-engine.md §2-§4): stream ids = offsets with the field d,
 * meta e/s, idempotency, the frames published, presence hash and zset, a
 * 10-digit epoch written by an older Centrifugo, and a Redis that is gone.
 */
#include "config.h"
#include "engine.h"
#include "redis_wire.h"
#include "conf.h"
#include "log.h"
#include "util.h"
#include "worker.h"
#include "chan.h"
#include "redis_server.h"
#include "../tap.h"
#include "loop_wait.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

static struct worker w;
static struct conf k;
static struct redis_server srv;
static redisContext *rdb;

/* ---- running the loop until an answer comes --------------------------------- */

static int answers;

static void on_deadline(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)t, (void)revents;
	ev_break(loop, EVBREAK_ALL);
}

static void on_check(struct ev_loop *loop, ev_prepare *p, int revents)
{
	int *want = p->data;
	(void)revents;
	if (answers >= *want)
		ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until WANT answers came in all (at most MS). */
static bool wait_answers(int want, int ms)
{
	ev_timer t;
	ev_prepare p;
	ev_timer_init(&t, on_deadline, ms / 1000.0, 0);
	ev_prepare_init(&p, on_check);
	p.data = &want;
	ev_timer_start(w.loop, &t);
	ev_prepare_start(w.loop, &p);
	if (answers < want)
		ev_run(w.loop, 0);
	ev_timer_stop(w.loop, &t);
	ev_prepare_stop(w.loop, &p);
	return answers >= want;
}

static void spin_ms(int ms)
{
	ev_timer t;
	ev_timer_init(&t, on_deadline, ms / 1000.0, 0);
	ev_timer_start(w.loop, &t);
	ev_run(w.loop, 0);
}

static bool wait_up(int ms)
{
	char why[256];
	for (int i = 0; i < ms / 20; i++) {
		if (engine_redis.health(&w, why, sizeof(why)))
			return true;
		spin_ms(20);
	}
	printf("# not up: %s\n", why);
	return false;
}

/* ---- the answers ------------------------------------------------------------ */

static struct {
	int rc;
	struct node_pub_result pub;
	uint64_t top;
	char epoch[64];
	size_t n;
	uint64_t offsets[16];
	char data[16][64];
	bool mismatch;
	uint32_t nc, nu;
	char clients[8][64];
} A;

static void on_pub(void *arg, int rc, const struct node_pub_result *r)
{
	(void)arg;
	A.rc = rc;
	A.pub = *r;
	answers++;
}

static void on_hist(void *arg, int rc, const struct node_history *h)
{
	(void)arg;
	A.rc = rc;
	A.top = h->top;
	snprintf(A.epoch, sizeof(A.epoch), "%s", h->epoch);
	A.n = h->n;
	A.mismatch = h->epoch_mismatch;
	for (size_t i = 0; i < h->n && i < 16; i++) {
		A.offsets[i] = h->v[i].offset;
		snprintf(A.data[i], sizeof(A.data[i]), "%.*s", (int)h->v[i].data.n, h->v[i].data.p);
	}
	answers++;
}

static void on_top(void *arg, int rc, uint64_t offset, struct pstr epoch)
{
	(void)arg;
	A.rc = rc;
	A.top = offset;
	snprintf(A.epoch, sizeof(A.epoch), "%.*s", (int)epoch.n, epoch.p);
	answers++;
}

static void on_done(void *arg, int rc)
{
	(void)arg;
	A.rc = rc;
	answers++;
}

static void on_pres(void *arg, int rc, const struct node_presence *p)
{
	(void)arg;
	A.rc = rc;
	A.n = p->n;
	for (size_t i = 0; i < p->n && i < 8; i++)
		snprintf(A.clients[i], sizeof(A.clients[i]), "%.*s/%.*s", (int)p->v[i].client.n, p->v[i].client.p,
			 (int)p->v[i].user.n, p->v[i].user.p);
	answers++;
}

static void on_stats(void *arg, int rc, uint32_t nc, uint32_t nu)
{
	(void)arg;
	A.rc = rc;
	A.nc = nc;
	A.nu = nu;
	answers++;
}

/* ---- helpers ------------------------------------------------------------------ */

static int publish(const char *ch, const char *data, const char *idem, bool history)
{
	struct node_pub p = {
		.channel = pstr_c(ch), .data = pstr_c(data), .idempotency_key = pstr_c(idem ? idem : ""),
		.history_size = history ? 3 : 0, .history_ttl_ms = history ? 60000 : 0,
		.history_meta_ttl_ms = 3600000,
	};
	int before = answers;
	engine_redis.publish(&w, &p, on_pub, NULL);
	return wait_answers(before + 1, 6000) ? A.rc : -100;
}

static int history(const char *ch, int32_t limit, bool reverse, bool has_since, uint64_t since, const char *epoch)
{
	struct hist_query q = { .limit = limit, .reverse = reverse, .has_since = has_since, .since_offset = since,
				.since_epoch = epoch, .meta_ttl_ms = 3600000 };
	int before = answers;
	engine_redis.history(&w, pstr_c(ch), &q, on_hist, NULL);
	return wait_answers(before + 1, 6000) ? A.rc : -100;
}

static redisReply *cmd(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	redisReply *r = redisvCommand(rdb, fmt, ap);
	va_end(ap);
	return r;
}

static long long cmd_int(const char *fmt, const char *arg)
{
	redisReply *r = cmd(fmt, arg);
	long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
	freeReplyObject(r);
	return v;
}

static bool is_epoch8(const char *e)
{
	if (strlen(e) != 8)
		return false;
	for (int i = 0; i < 8; i++)
		if (!((e[i] >= 'a' && e[i] <= 'z') || (e[i] >= 'A' && e[i] <= 'Z')))
			return false;
	return true;
}

/* ---- the cases ------------------------------------------------------------------ */

static void test_publish_history(void)
{
	is_int(publish("news", "{\"x\":1}", NULL, true), RT_OK, "a publication with history is stored");
	is_int(A.pub.offset, 1, "... at offset 1");
	ok(is_epoch8(A.pub.epoch), "... in a new epoch of 8 letters (%s)", A.pub.epoch);
	char epoch[64];
	snprintf(epoch, sizeof(epoch), "%s", A.pub.epoch);
	publish("news", "{\"x\":2}", NULL, true);
	is_int(A.pub.offset, 2, "the next one at offset 2");
	is_str(A.pub.epoch, epoch, "... in the same epoch");

	redisReply *r = cmd("XRANGE centrifugo.stream.news - +");
	ok(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2, "the stream centrifugo.stream.news holds 2 entries");
	if (r && r->elements == 2) {
		is_str(r->element[0]->element[0]->str, "1-0", "ids are the offsets: 1-0");
		is_str(r->element[1]->element[0]->str, "2-0", "... and 2-0");
		redisReply *f = r->element[0]->element[1];
		ok(f->elements == 2 && strcmp(f->element[0]->str, "d") == 0, "one field, d");
		struct publication p;
		struct client_info ci;
		struct tag tags[4];
		bool delta;
		ok(rw_pub_decode(f->element[1]->str, f->element[1]->len, &p, &ci, tags, 4, &delta) == 0 &&
		   p.data.n == 7 && memcmp(p.data.p, "{\"x\":1}", 7) == 0 && p.time > 0,
		   "d is a Publication protobuf: the data byte for byte, and the time");
	}
	freeReplyObject(r);
	r = cmd("HGETALL centrifugo.stream.meta.news");
	ok(r && r->type == REDIS_REPLY_ARRAY && r->elements == 4, "the meta hash has e and s");
	freeReplyObject(r);
	ok(cmd_int("TTL %s", "centrifugo.stream.news") > 50, "the stream lives history_ttl");
	long long mttl = cmd_int("TTL %s", "centrifugo.stream.meta.news");
	ok(mttl > 3500 && mttl <= 3600, "the meta lives history_meta_ttl (%lld s)", mttl);

	publish("news", "{\"x\":3}", NULL, true);
	publish("news", "{\"x\":4}", NULL, true);
	is_int(cmd_int("XLEN %s", "centrifugo.stream.news"), 3, "history_size is an exact MAXLEN");

	is_int(history("news", -1, false, true, 0, NULL), RT_OK, "history from the start");
	is_int(A.n, 3, "... the 3 kept");
	is_int(A.offsets[0], 2, "... from offset 2");
	is_str(A.data[2], "{\"x\":4}", "... to the last, byte for byte");
	is_int(A.top, 4, "... with the top");
	is_str(A.epoch, epoch, "... and the epoch");
	history("news", 1, true, false, 0, NULL);
	ok(A.n == 1 && A.offsets[0] == 4, "reverse with limit 1: the latest");
	history("news", -1, false, true, 2, epoch);
	ok(A.n == 2 && A.offsets[0] == 3 && !A.mismatch, "since offset 2 in the epoch: 3 and 4");
	history("news", -1, false, true, 2, "Otherthg");
	ok(A.mismatch && A.n == 0, "since another epoch: a mismatch, no publications");
	history("news", 0, false, false, 0, NULL);
	ok(A.n == 0 && A.top == 4, "limit 0: the position only");
	int before = answers;
	engine_redis.history_top(&w, pstr_c("fresh"), 3600000, on_top, NULL);
	wait_answers(before + 1, 6000);
	ok(A.rc == RT_OK && A.top == 0 && is_epoch8(A.epoch), "the top of a new stream: 0, and an epoch is made");

	before = answers;
	engine_redis.history_remove(&w, pstr_c("news"), on_done, NULL);
	wait_answers(before + 1, 6000);
	is_int(A.rc, RT_OK, "history_remove");
	is_int(cmd_int("EXISTS %s", "centrifugo.stream.news"), 0, "... deletes the stream");
	history("news", 0, false, false, 0, NULL);
	is_int(A.top, 4, "... and keeps the position");
}

static void test_idempotency(void)
{
	publish("idem", "a", "k1", true);
	uint64_t first = A.pub.offset;
	ok(A.rc == RT_OK && first == 1 && !A.pub.suppressed, "a publication with an idempotency key");
	publish("idem", "a", "k1", true);
	ok(A.rc == RT_OK && A.pub.offset == first && A.pub.suppressed, "the same key again: the same offset, suppressed");
	is_int(cmd_int("XLEN %s", "centrifugo.stream.idem"), 1, "... one stream entry");
	long long ttl = cmd_int("TTL %s", "centrifugo.result.idem.k1");
	ok(ttl > 290 && ttl <= 300, "the result key lives 300 s (%lld)", ttl);
}

/* A publish with VERSION and version epoch VE to CH (history kept). */
static int publish_v(const char *ch, uint64_t version, const char *ve)
{
	struct node_pub p = {
		.channel = pstr_c(ch), .data = pstr_c("{}"), .history_size = 3, .history_ttl_ms = 60000,
		.history_meta_ttl_ms = 3600000, .version = version, .version_epoch = pstr_c(ve),
	};
	int before = answers;
	engine_redis.publish(&w, &p, on_pub, NULL);
	return wait_answers(before + 1, 6000) ? A.rc : -100;
}

static void meta_field(const char *ch, const char *field, char *out, size_t n)
{
	redisReply *r = cmd("HGET centrifugo.stream.meta.%s %s", ch, field);
	snprintf(out, n, "%s", r && r->type == REDIS_REPLY_STRING ? r->str : "(nil)");
	freeReplyObject(r);
}

/* ARGV 10-11 (redis-engine.md §4.1): versions as Centrifugo 6.7+ passes
 * them, the meta fields v and ve, and the Publication's field 16. */
static void test_versions(void)
{
	char v[32], ve[32];

	ok(publish_v("ver", 5, "") == RT_OK && A.pub.offset == 1 && !A.pub.suppressed, "version 5: published");
	meta_field("ver", "v", v, sizeof(v));
	meta_field("ver", "ve", ve, sizeof(ve));
	ok(strcmp(v, "5") == 0 && strcmp(ve, "") == 0, "meta v = 5, ve = \"\" (%s, %s)", v, ve);
	ok(publish_v("ver", 5, "") == RT_OK && A.pub.offset == 1 && A.pub.suppressed,
	   "version 5 again: suppressed, answered with the top");
	ok(publish_v("ver", 4, "") == RT_OK && A.pub.offset == 1 && A.pub.suppressed, "version 4: suppressed");
	ok(publish_v("ver", 4, "e2") == RT_OK && A.pub.offset == 2 && !A.pub.suppressed,
	   "version 4 with another version epoch: published");
	meta_field("ver", "ve", ve, sizeof(ve));
	is_str(ve, "e2", "meta ve = e2");
	is_int(cmd_int("XLEN %s", "centrifugo.stream.ver"), 2, "two stream entries");

	redisReply *r = cmd("XRANGE centrifugo.stream.ver - +");
	uint64_t got = 0;
	struct publication pub;
	if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
		const redisReply *kv = r->element[1]->element[1];
		rw_pub_decode_v(kv->element[1]->str, kv->element[1]->len, &pub, NULL, NULL, 0, NULL, &got);
	}
	freeReplyObject(r);
	is_int(got, 4, "the stored Publication carries version 4 (field 16)");

	/* Go's strconv.Itoa(int(v)): above 2^63 - 1 the version goes negative. */
	ok(publish_v("ver2", UINT64_C(18446744073709551615), "") == RT_OK && A.pub.offset == 1, "version 2^64 - 1");
	meta_field("ver2", "v", v, sizeof(v));
	is_str(v, "-1", "passed as Centrifugo passes it: -1");
}

static void test_old_epoch(void)
{
	/* A stream Centrifugo <= 6.7 started: epoch in unix seconds. */
	freeReplyObject(cmd("HSET centrifugo.stream.meta.old e 1700000000 s 5"));
	publish("old", "x", NULL, true);
	ok(A.rc == RT_OK && A.pub.offset == 6 && strcmp(A.pub.epoch, "1700000000") == 0,
	   "a 10-digit epoch written by an older Centrifugo is kept (offset %llu, epoch %s)",
	   (unsigned long long)A.pub.offset, A.pub.epoch);
	history("old", -1, false, true, 5, "1700000000");
	ok(A.rc == RT_OK && A.n == 1 && A.offsets[0] == 6 && !A.mismatch, "... and read back");
}

static void test_frames(void)
{
	redisContext *sub = redisConnect("127.0.0.1", srv.port);
	redisReply *r = redisCommand(sub, "SUBSCRIBE centrifugo.client.frames");
	freeReplyObject(r);
	struct client_info ci = { pstr_c("42"), pstr_c("c1"), { NULL, 0 }, { NULL, 0 } };
	engine_redis.join_leave(&w, pstr_c("frames"), &ci, true);
	publish("frames", "{}", NULL, false);
	publish("frames", "{\"h\":1}", NULL, true);
	spin_ms(50);
	static const char join[] = "__j__\x0a\x02" "42" "\x12\x02" "c1";
	ok(redisGetReply(sub, (void **)&r) == REDIS_OK && r->elements == 3 && r->element[2]->len == sizeof(join) - 1 &&
	   memcmp(r->element[2]->str, join, sizeof(join) - 1) == 0, "a join is published as __j__<ClientInfo>");
	freeReplyObject(r);
	ok(redisGetReply(sub, (void **)&r) == REDIS_OK && r->element[2]->len > 0 && r->element[2]->str[0] == '"',
	   "a publication without history: a bare Publication (field 4 first)");
	freeReplyObject(r);
	ok(redisGetReply(sub, (void **)&r) == REDIS_OK && strncmp(r->element[2]->str, "__p1:1:", 7) == 0,
	   "with history: __p1:<offset>:<epoch>__<Publication>");
	struct rw_frame f;
	ok(rw_frame_parse(r->element[2]->str, r->element[2]->len, &f) == 0 && f.offset == 1 && f.epoch.n == 8,
	   "... which parses back to offset 1 and the epoch");
	freeReplyObject(r);
	redisFree(sub);
}

static void test_presence(void)
{
	struct client_info a = { pstr_c("u1"), pstr_c("c-a"), pstr_c("{\"n\":1}"), { NULL, 0 } };
	struct client_info b = { pstr_c("u2"), pstr_c("c-b"), { NULL, 0 }, pstr_c("ci") };
	struct client_info c = { pstr_c("u1"), pstr_c("c-c"), { NULL, 0 }, { NULL, 0 } };
	engine_redis.presence_add(&w, pstr_c("room"), &a);
	engine_redis.presence_add(&w, pstr_c("room"), &b);
	engine_redis.presence_add(&w, pstr_c("room"), &c);
	int before = answers;
	engine_redis.presence(&w, pstr_c("room"), on_pres, NULL);
	wait_answers(before + 1, 6000);
	ok(A.rc == RT_OK && A.n == 3, "presence: the 3 entries (%zu)", A.n);
	is_int(cmd_int("HLEN %s", "centrifugo.presence.data.room"), 3, "... in the hash centrifugo.presence.data.room");
	is_int(cmd_int("ZCARD %s", "centrifugo.presence.expire.room"), 3, "... with expiry in the zset");
	long long ttl = cmd_int("TTL %s", "centrifugo.presence.data.room");
	ok(ttl > 50 && ttl <= 60, "... living presence_ttl (%lld)", ttl);
	before = answers;
	engine_redis.presence_stats(&w, pstr_c("room"), on_stats, NULL);
	wait_answers(before + 1, 6000);
	ok(A.rc == RT_OK && A.nc == 3 && A.nu == 2, "presence_stats: 3 clients, 2 users");
	engine_redis.presence_remove(&w, pstr_c("room"), &b);
	before = answers;
	engine_redis.presence(&w, pstr_c("room"), on_pres, NULL);
	wait_answers(before + 1, 6000);
	ok(A.rc == RT_OK && A.n == 2, "after a remove: 2");
	/* An entry whose expiry passed is not listed (and is cleaned). */
	freeReplyObject(cmd("ZADD centrifugo.presence.expire.room 1 c-a"));
	before = answers;
	engine_redis.presence(&w, pstr_c("room"), on_pres, NULL);
	wait_answers(before + 1, 6000);
	ok(A.rc == RT_OK && A.n == 1 && strcmp(A.clients[0], "c-c/u1") == 0, "an expired entry is gone");
}

static void test_down(void)
{
	redis_server_stop(&srv, true);
	ok(publish("news", "late", NULL, true) == RT_ERR, "Redis gone: a publish answers an error, never ok");
	int before = answers;
	engine_redis.presence(&w, pstr_c("room"), on_pres, NULL);
	ok(wait_answers(before + 1, 6000) && A.rc == RT_ERR, "... and so does presence");
	char why[256];
	ok(!engine_redis.health(&w, why, sizeof(why)) && strstr(why, "redis shard") != NULL, "down, and why: %s", why);
	int port = srv.port;
	ok(redis_server_start(&srv, port, NULL) == 0, "Redis back on its port");
	ok(wait_up(8000), "the link comes back by itself");
	is_int(publish("news", "again", NULL, true), RT_OK, "and publishes work again");
	ok(is_epoch8(A.pub.epoch) && A.pub.offset == 1, "a new Redis: a new epoch from offset 1");
}

/* broker.* and presence_manager.* on two servers (engine.c's plan): the
 * stream goes to the broker's, the presence hash and zset to presence's,
 * and nothing of either to the other. Then broker redis, presence memory:
 * the table engine_of gives runs the shared-memory presence. */
static void test_split(void)
{
	struct redis_server srv2;
	struct conf_report rep = { 0 };
	char a1[64], a2[64];
	if (redis_server_start(&srv2, 0, NULL) != 0) {
		ok(0, "a second redis-server starts");
		engine_redis.stop(&w);
		return;
	}
	engine_redis.stop(&w);
	conf_free(&k);
	conf_init(&k);
	snprintf(a1, sizeof(a1), "redis://127.0.0.1:%d", srv.port);
	snprintf(a2, sizeof(a2), "redis://127.0.0.1:%d", srv2.port);
	conf_set(&k, "broker.enabled", "true", &rep);
	conf_set(&k, "broker.type", "redis", &rep);
	conf_set(&k, "broker.redis.address", a1, &rep);
	conf_set(&k, "presence_manager.enabled", "true", &rep);
	conf_set(&k, "presence_manager.type", "redis", &rep);
	conf_set(&k, "presence_manager.redis.address", a2, &rep);
	conf_set(&k, "engine.redis.address", "redis://127.0.0.1:1", &rep); /* ignored: both sections are on */
	is_int(rep.nerrors, 0, "the split config sets");
	ok(engine_of(&k) == &engine_redis, "broker and presence both in Redis: the Redis engine's table");
	ok(engine_redis.start(&w) == RT_OK, "the engine starts on two blocks");
	ok(wait_up(5000), "both sides' links are up");
	is_int(publish("split", "{\"s\":1}", NULL, true), RT_OK, "a publish with history");
	struct client_info ci = { pstr_c("u1"), pstr_c("c-s"), { NULL, 0 }, { NULL, 0 } };
	engine_redis.presence_add(&w, pstr_c("split"), &ci);
	int before = answers;
	engine_redis.presence(&w, pstr_c("split"), on_pres, NULL);
	wait_answers(before + 1, 6000);
	ok(A.rc == RT_OK && A.n == 1, "presence answers from the presence shards (%zu)", A.n);
	is_str(redis_server_str(srv.port, "EXISTS centrifugo.stream.split"), "1", "the stream is on the broker's Redis");
	is_str(redis_server_str(srv2.port, "EXISTS centrifugo.stream.split"), "0", "... not on presence's");
	is_str(redis_server_str(srv2.port, "HLEN centrifugo.presence.data.split"), "1",
	       "the presence hash is on presence's Redis");
	is_str(redis_server_str(srv2.port, "ZCARD centrifugo.presence.expire.split"), "1", "... with its zset");
	is_str(redis_server_str(srv.port, "EXISTS centrifugo.presence.data.split centrifugo.presence.expire.split"),
	       "0", "... and neither is on the broker's");
	redis_server_stop(&srv2, true);
	char why[256];
	ok(LOOP_WAIT(w.loop, !engine_redis.health(&w, why, sizeof(why)), 6.0) &&
	   strstr(why, "redis presence shard") != NULL, "presence's Redis gone: unhealthy, and why: %s", why);
	engine_redis.stop(&w);

	conf_set(&k, "presence_manager.type", "memory", &rep);
	const struct engine *e = engine_of(&k);
	ok(e != &engine_redis && e != &engine_memory && e->publish == engine_redis.publish &&
	   e->join_leave == engine_redis.join_leave && e->presence == engine_memory.presence &&
	   e->presence_add == engine_memory.presence_add && e->presence_refresh == engine_memory.presence_refresh,
	   "broker redis, presence memory: Redis's broker side, shared memory's presence (%s)", e->name);
	conf_set(&k, "broker.type", "memory", &rep);
	conf_set(&k, "presence_manager.type", "redis", &rep);
	e = engine_of(&k);
	ok(e->publish == engine_memory.publish && e->listen == engine_memory.listen && e->channels == NULL &&
	   e->presence == engine_redis.presence && e->start == engine_redis.start,
	   "broker memory, presence redis: the other way round (%s)", e->name);
	conf_set(&k, "presence_manager.enabled", "false", &rep);
	ok(engine_of(&k) == &engine_memory, "presence_manager off: engine.type memory for presence");
	conf_report_free(&rep);
}

int main(void)
{
	if (!redis_server_available()) {
		printf("1..0 # SKIP redis-server is not installed\n");
		return 0;
	}
	log_set_level(LOG_ERROR);
	if (redis_server_start(&srv, 0, NULL) != 0) {
		ok(0, "redis-server starts");
		return tap_done();
	}
	char addr[64];
	struct conf_report rep = { 0 };
	conf_init(&k);
	snprintf(addr, sizeof(addr), "redis://127.0.0.1:%d", srv.port);
	conf_set(&k, "engine.type", "redis", &rep);
	conf_set(&k, "engine.redis.address", addr, &rep);
	conf_set(&k, "engine.redis.io_timeout", "2s", &rep);
	w.loop = ev_default_loop(0);
	w.conf = &k;
	ok(engine_redis.start(&w) == RT_OK, "the engine starts");
	w.engine = &engine_redis;
	rdb = redisConnect("127.0.0.1", srv.port);
	ok(wait_up(5000), "its link is up");
	test_publish_history();
	test_idempotency();
	test_versions();
	test_old_epoch();
	test_frames();
	test_presence();
	redisFree(rdb);
	test_down();
	test_split();
	redis_server_stop(&srv, true);
	conf_free(&k);
	conf_report_free(&rep);
	return tap_done();
}
