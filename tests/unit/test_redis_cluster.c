/*
 * test_redis_cluster.c - the Redis link's cluster mode against a real
 * three-master Redis Cluster (ref/redis-engine.md §11, topology 4): hash
 * slots (known vectors, and every test key against CLUSTER KEYSLOT), the
 * slot map, commands and scripts routed to the slot's master with no
 * redirection, MOVED after a slot moved behind the link's back, ASK while
 * a slot migrates, PUBLISH from any node heard by a SUB link on a seed, a
 * plain address found to be a cluster node, and requests failing cleanly
 * when a master is gone.
 */
#include "config.h"
#include "redis_link.h"
#include "redis_server.h"
#include "log.h"
#include "../tap.h"
#include "loop_wait.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NSRV 3

static struct ev_loop *loop;
static struct redis_server srv[NSRV];

#define WAIT(cond, secs) LOOP_WAIT(loop, cond, secs)

struct got {
	int calls;
	int type;          /* REDIS_REPLY_*, or -1 with err */
	long long integer;
	char str[256];
	char err[64];
};

static void got_cb(void *arg, redisReply *r, const char *err)
{
	struct got *g = arg;

	g->calls++;
	if (r == NULL) {
		g->type = -1;
		snprintf(g->err, sizeof(g->err), "%s", err ? err : "(null)");
		return;
	}
	g->type = r->type;
	g->integer = r->integer;
	snprintf(g->str, sizeof(g->str), "%s", r->str ? r->str : "");
}

/* Sends the NULL-terminated arguments, the one at KEY routing it, and
 * waits (5 s at most) for the reply. */
static void kcmd(struct rlink *l, struct got *g, int key, ...)
{
	const char *argv[16];
	int argc = 0;
	va_list ap;

	memset(g, 0, sizeof(*g));
	va_start(ap, key);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 16; argc++)
		argv[argc] = a;
	va_end(ap);
	rlink_cmd_key(l, key, argc, argv, NULL, got_cb, g);
	WAIT(g->calls > 0, 5.0);
}

struct st {
	int ups, downs, messages;
	bool up;
	char last_msg[64];
};

static void on_state(void *arg, bool up)
{
	struct st *s = arg;
	s->up = up;
	up ? s->ups++ : s->downs++;
}

static void on_message(void *arg, const char *ch, size_t chlen, const char *msg, size_t len)
{
	struct st *s = arg;
	s->messages++;
	snprintf(s->last_msg, sizeof(s->last_msg), "%.*s", (int)len, msg);
}

static struct rlink *link_new(const struct redis_addr *a, enum rlink_kind kind, struct st *s)
{
	memset(s, 0, sizeof(*s));
	struct rlink_opts o = { .loop = loop, .addr = a, .kind = kind, .on_state = on_state,
				.on_message = on_message, .arg = s };
	return rlink_new(&o);
}

/* The server (index into srv) that serves KEY's slot, as the servers say. */
static int owner_of(const char *key)
{
	for (int i = 0; i < NSRV; i++) {
		redisReply *r = redis_server_cmd(srv[i].port, NULL, "GET %s", key);
		bool moved = r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "MOVED", 5) == 0;
		if (r)
			freeReplyObject(r);
		if (r && !moved)
			return i;
	}
	return -1;
}

/* The "rejected_calls" of command NAME on server I (MOVED and ASK answers
 * count there). */
static long rejected(int i, const char *name)
{
	redisReply *r = redis_server_cmd(srv[i].port, NULL, "INFO commandstats");
	char pat[64];
	long v = -1;

	snprintf(pat, sizeof(pat), "cmdstat_%s:", name);
	if (r && r->type == REDIS_REPLY_STRING) {
		const char *p = strstr(r->str, pat);
		if (p == NULL)
			v = 0;
		else if ((p = strstr(p, "rejected_calls=")) != NULL)
			v = atol(p + 15);
	}
	if (r)
		freeReplyObject(r);
	return v;
}

static void test_slots(void)
{
	static const char *const keys[] = {
		"123456789", "foo", "{user1000}.following", "{user1000}.followers", "foo{}{bar}", "foo{{bar}}zap",
		"foo{bar}{zap}", "{}", "{", "a}b{c", "centrifugo.stream.{news}", "centrifugo.client.{news}", "",
	};

	is_int(rlink_slot("123456789", 9), 0x31C3 & 16383, "CRC16-XMODEM of 123456789 is 0x31C3 (slot 12739)");
	is_int(rlink_slot("{user1000}.following", 20), rlink_slot("{user1000}.followers", 20),
	       "one tag, one slot");
	is_int(rlink_slot("{user1000}.following", 20), rlink_slot("user1000", 8), "the tag alone is hashed");
	ok(rlink_slot("foo{}{bar}", 10) != rlink_slot("bar", 3), "an empty first tag hashes the whole key");
	is_int(rlink_slot("foo{{bar}}zap", 13), rlink_slot("{bar", 4), "foo{{bar}}zap hashes \"{bar\"");
	is_int(rlink_slot("centrifugo.stream.meta.{news}", 29), rlink_slot("centrifugo.client.{news}", 24),
	       "a channel's keys and PUB/SUB name share a slot");
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		redisReply *r = redis_server_cmd(srv[0].port, NULL, "CLUSTER KEYSLOT %b", keys[i], strlen(keys[i]));
		ok(r && r->type == REDIS_REPLY_INTEGER && r->integer == rlink_slot(keys[i], strlen(keys[i])),
		   "\"%s\": slot %u, as CLUSTER KEYSLOT says", keys[i], rlink_slot(keys[i], strlen(keys[i])));
		if (r)
			freeReplyObject(r);
	}
}

static struct rscript incr_script = { "return redis.call('INCRBY', KEYS[1], ARGV[1])", "" };

static void test_routing(struct rlink *l)
{
	char key[32];
	int on[NSRV] = { 0 };
	bool all = true;
	struct got g;

	for (int i = 0; i < 30; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		kcmd(l, &g, 1, "SET", key, "v", (const char *)NULL);
		all &= g.type == REDIS_REPLY_STATUS && strcmp(g.str, "OK") == 0;
		int o = owner_of(key);
		if (o >= 0)
			on[o]++;
	}
	ok(all, "30 SETs answered OK");
	ok(on[0] > 0 && on[1] > 0 && on[2] > 0 && on[0] + on[1] + on[2] == 30,
	   "the keys are on all three masters (%d, %d, %d)", on[0], on[1], on[2]);
	long rej = 0;
	for (int i = 0; i < NSRV; i++)
		rej += rejected(i, "set");
	is_int(rej, 0, "no SET was sent to a wrong node (no MOVED)");

	/* a script: by its first key, with NOSCRIPT handled per node */
	all = true;
	for (int i = 0; i < 12; i++) {
		const char *argv[] = { key, "5" };
		snprintf(key, sizeof(key), "{s%d}.n", i);
		memset(&g, 0, sizeof(g));
		rlink_eval(l, &incr_script, 1, 2, argv, (size_t[]){ strlen(key), 1 }, got_cb, &g);
		WAIT(g.calls > 0, 5.0);
		all &= g.type == REDIS_REPLY_INTEGER && g.integer == 5;
		memset(&g, 0, sizeof(g));
		rlink_eval(l, &incr_script, 1, 2, argv, (size_t[]){ strlen(key), 1 }, got_cb, &g);
		WAIT(g.calls > 0, 5.0);
		all &= g.type == REDIS_REPLY_INTEGER && g.integer == 10;
	}
	ok(all, "scripts on 12 keys ran where their keys are (5, then 10)");
	rej = 0;
	for (int i = 0; i < NSRV; i++)
		rej += rejected(i, "eval") + rejected(i, "evalsha");
	is_int(rej, 0, "no script was sent to a wrong node");

	/* a command without a key: any master */
	kcmd(l, &g, -1, "PUBLISH", "nobody", "x", (const char *)NULL);
	ok(g.type == REDIS_REPLY_INTEGER && g.integer == 0, "PUBLISH without a key: 0 receivers");
}

/* The node ID of server I. */
static const char *id_of(int i)
{
	static char ids[NSRV][64];
	snprintf(ids[i], sizeof(ids[i]), "%s", redis_server_str(srv[i].port, "CLUSTER MYID"));
	return ids[i];
}

/* Moves KEY's slot from server A to B, as redis-cli --cluster reshard
 * does; with FINISH false it stays half-way (migrating / importing). */
static bool migrate(const char *key, int a, int b, bool finish)
{
	unsigned slot = rlink_slot(key, strlen(key));
	char s[16];
	bool good = true;

	snprintf(s, sizeof(s), "%u", slot);
	good &= strcmp(redis_server_str(srv[b].port, "CLUSTER SETSLOT %s IMPORTING %s", s, id_of(a)), "OK") == 0;
	good &= strcmp(redis_server_str(srv[a].port, "CLUSTER SETSLOT %s MIGRATING %s", s, id_of(b)), "OK") == 0;
	good &= strcmp(redis_server_str(srv[a].port, "MIGRATE 127.0.0.1 %d %s 0 5000", srv[b].port, key), "OK") == 0;
	if (finish)
		for (int i = 0; i < NSRV; i++)
			good &= strcmp(redis_server_str(srv[i].port, "CLUSTER SETSLOT %s NODE %s", s, id_of(b)), "OK") == 0;
	return good;
}

static void test_redirects(struct rlink *l)
{
	struct got g;
	const char *key = "moving";

	kcmd(l, &g, 1, "SET", key, "here", (const char *)NULL);
	int a = owner_of(key), b = (a + 1) % NSRV;
	ok(a >= 0 && g.type == REDIS_REPLY_STATUS, "a key to move, on server %d", a);

	/* MOVED: the slot moves while the loop does not run, so the link's
	 * map is stale when the GET is routed */
	long before = rejected(a, "get");
	ok(migrate(key, a, b, true), "its slot moved to server %d", b);
	kcmd(l, &g, 1, "GET", key, (const char *)NULL);
	ok(g.type == REDIS_REPLY_STRING && strcmp(g.str, "here") == 0, "GET after the move: the value (%s%s)", g.str,
	   g.err);
	is_int(rejected(a, "get") - before, 1, "the old master answered MOVED once, and the link followed it");
	redis_loop_spin(loop, 0.5); /* the map is asked for again soon after a MOVED */
	kcmd(l, &g, 1, "GET", key, (const char *)NULL);
	ok(g.type == REDIS_REPLY_STRING && strcmp(g.str, "here") == 0, "GET again");
	is_int(rejected(a, "get") - before, 1, "then straight to the new master (the map was refreshed)");

	/* ASK: half-way through a migration back, the key is on the target
	 * while the map still names the source */
	long ask_before = rejected(b, "get");
	ok(migrate(key, b, a, false), "its slot half-way back to server %d", a);
	kcmd(l, &g, 1, "GET", key, (const char *)NULL);
	ok(g.type == REDIS_REPLY_STRING && strcmp(g.str, "here") == 0, "GET during the migration: the value (%s%s)",
	   g.str, g.err);
	is_int(rejected(b, "get") - ask_before, 1, "the source answered ASK, the link asked the target");
	char s[16];
	snprintf(s, sizeof(s), "%u", rlink_slot(key, strlen(key)));
	for (int i = 0; i < NSRV; i++)
		redis_server_str(srv[i].port, "CLUSTER SETSLOT %s NODE %s", s, id_of(a));
	kcmd(l, &g, 1, "GET", key, (const char *)NULL);
	ok(g.type == REDIS_REPLY_STRING && strcmp(g.str, "here") == 0, "GET after the migration finished");
}

static void test_pubsub(struct rlink *c, const struct redis_addr *ca)
{
	struct st ss;
	struct rlink *sub = link_new(ca, RLINK_SUB, &ss);
	struct got g;

	ok(WAIT(ss.up, 10.0), "a SUB link on a cluster seed comes up");
	rlink_subscribe(sub, "centrifugo.client.{news}", 24);
	bool heard = false;
	for (int i = 0; i < 50 && !heard; i++) { /* until the SUBSCRIBE was acknowledged */
		kcmd(c, &g, 1, "PUBLISH", "centrifugo.client.{news}", "hello", (const char *)NULL);
		heard = WAIT(ss.messages > 0, 0.1);
	}
	ok(heard && strcmp(ss.last_msg, "hello") == 0, "a PUBLISH routed by its channel reaches it");
	rlink_free(sub);
}

static void test_detect(void)
{
	struct redis_addr a;
	struct st s;
	char err[256], addr[32];
	struct got g;

	snprintf(addr, sizeof(addr), "127.0.0.1:%d", srv[1].port);
	redis_addr_parse(addr, NULL, &a, err, sizeof(err));
	struct rlink *l = link_new(&a, RLINK_CMD, &s);
	ok(!rlink_mode_known(l), "a plain address: the mode is not known before it connects");
	ok(WAIT(s.up, 10.0), "a plain address of a cluster node comes up");
	ok(rlink_cluster(l) && rlink_mode_known(l), "found to be a cluster (cluster_enabled:1)");
	is_int(s.ups, 1, "up once (as a cluster, never as a plain server)");
	bool all = true;
	for (int i = 0; i < 20; i++) {
		char key[16];
		snprintf(key, sizeof(key), "d%d", i);
		kcmd(l, &g, 1, "SET", key, "v", (const char *)NULL);
		all &= g.type == REDIS_REPLY_STATUS;
	}
	ok(all, "and routes keys to every master");
	rlink_free(l);

	/* a plain server stays plain */
	struct redis_server plain;
	if (redis_server_start(&plain, 0, NULL) == 0) {
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", plain.port);
		redis_addr_parse(addr, NULL, &a, err, sizeof(err));
		l = link_new(&a, RLINK_CMD, &s);
		ok(WAIT(s.up, 10.0) && !rlink_cluster(l) && rlink_mode_known(l), "a plain server is no cluster");
		rlink_free(l);
		redis_server_stop(&plain, true);
	} else {
		ok(0, "start a plain redis-server");
	}
}

static void test_master_gone(struct rlink *l, struct st *s)
{
	struct got g;
	char key[16];
	int k;

	for (k = 0; k < 100; k++) {
		snprintf(key, sizeof(key), "g%d", k);
		if (owner_of(key) == 2)
			break;
	}
	redis_server_stop(&srv[2], true);
	ok(WAIT(!s->up, 10.0), "a master killed: the cluster link is down");
	kcmd(l, &g, 1, "GET", key, (const char *)NULL);
	ok(g.calls == 1 && (g.type == -1 || g.type == REDIS_REPLY_ERROR), "a request for its slot fails cleanly (%s%s)",
	   g.err, g.str);
	ok(rlink_error(l)[0] != '\0', "and the link says why: %s", rlink_error(l));
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_set_level(getenv("RLINK_LOG") ? LOG_DEBUG : LOG_ERROR);
	if (!redis_server_available() || system("command -v redis-cli >/dev/null 2>&1") != 0) {
		printf("1..0 # SKIP redis-server or redis-cli is not installed\n");
		return 0;
	}
	loop = ev_default_loop(0);
	loop_tick(loop, 0.01);
	if (redis_cluster_start(srv, NSRV) != 0) {
		ok(0, "start a three-master Redis Cluster");
		return tap_done();
	}
	test_slots();

	struct redis_addr a;
	char err[256], seeds[64];
	struct st s;
	snprintf(seeds, sizeof(seeds), "127.0.0.1:%d,127.0.0.1:%d", srv[0].port, srv[1].port);
	ok(redis_addr_parse_cluster(seeds, &(struct redis_addr){ .connect_timeout_ms = 1000, .io_timeout_ms = 4000 },
				    &a, err, sizeof(err)) == 0, "cluster seeds %s", seeds);
	struct rlink *l = link_new(&a, RLINK_CMD, &s);
	ok(rlink_cluster(l) && rlink_mode_known(l), "a configured cluster");
	ok(WAIT(s.up, 10.0), "the cluster link is up (slot map known, all masters connected)");

	test_routing(l);
	test_redirects(l);
	test_pubsub(l, &a);
	test_detect();
	test_master_gone(l, &s);
	rlink_free(l);
	for (int i = 0; i < NSRV; i++)
		redis_server_stop(&srv[i], true);
	return tap_done();
}
