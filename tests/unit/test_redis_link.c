/*
 * test_redis_link.c - the Redis link against a real redis-server: address
 * parsing (every accepted and refused form), commands and pipelining,
 * binary-safe arguments, EVALSHA with the NOSCRIPT fallback, AUTH (right,
 * wrong, ACL user), SELECT and CLIENT SETNAME, READONLY from a replica, a
 * killed server (requests fail, both links come back, the subscriber
 * resubscribes), a stopped server (requests time out, the loop never
 * blocks), rlink_free with requests in flight (also from inside a
 * callback), 2000 subscriptions sent in batches, and host names looked up
 * at connect time (one that does not resolve is a failed attempt).
 */
#include "config.h"
#include "redis_link.h"
#include "redis_server.h"
#include "log.h"
#include "dns.h"
#include "../tap.h"
#include "loop_wait.h"

#include <ev.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

static struct ev_loop *loop;

/* ---- the loop ------------------------------------------------------------- */

/* A 10 ms timer that always runs: it bounds every ev_run(EVRUN_ONCE) and
 * measures the longest gap between two of its calls (the loop never
 * blocks). */
static ev_timer tick_w;
static double last_tick, max_gap;

static void tick_cb(struct ev_loop *lp, ev_timer *w, int revents)
{
	double now = ev_time();

	if (last_tick > 0 && now - last_tick > max_gap)
		max_gap = now - last_tick;
	last_tick = now;
}

static void gap_reset(void)
{
	last_tick = 0;
	max_gap = 0;
}

/* Runs the loop until COND holds or SECS pass; the value of COND. */
#define WAIT(cond, secs) LOOP_WAIT(loop, cond, secs)

static void spin(double secs)
{
	redis_loop_spin(loop, secs);
}

/* ---- replies -------------------------------------------------------------- */

static bool in_call; /* set around rlink_cmd/rlink_eval: no callback may run then */

struct got {
	int calls;
	bool sync;
	int type;          /* REDIS_REPLY_*, or -1 with err */
	long long integer;
	char str[16384];
	size_t len;
	char err[64];
};

static void got_cb(void *arg, redisReply *r, const char *err)
{
	struct got *g = arg;

	g->calls++;
	if (in_call)
		g->sync = true;
	if (r == NULL) {
		g->type = -1;
		snprintf(g->err, sizeof(g->err), "%s", err ? err : "(null)");
		return;
	}
	g->type = r->type;
	g->integer = r->integer;
	g->len = 0;
	if (r->str) {
		g->len = r->len < sizeof(g->str) - 1 ? r->len : sizeof(g->str) - 1;
		memcpy(g->str, r->str, g->len);
	}
	g->str[g->len] = '\0';
}

/* Sends the NULL-terminated text arguments as one command. */
static void cmd(struct rlink *l, struct got *g, ...)
{
	const char *argv[16];
	size_t lens[16];
	int argc = 0;
	va_list ap;

	memset(g, 0, sizeof(*g));
	va_start(ap, g);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 16; argc++) {
		argv[argc] = a;
		lens[argc] = strlen(a);
	}
	va_end(ap);
	in_call = true;
	rlink_cmd(l, argc, argv, lens, got_cb, g);
	in_call = false;
}

/* Sends a command and waits (3 s at most) for its reply. */
#define CMD_WAIT(l, g, ...) do { cmd(l, g, __VA_ARGS__, (const char *)NULL); WAIT((g)->calls > 0, 3.0); } while (0)

/* ---- links ---------------------------------------------------------------- */

struct st {
	int ups, downs;
	bool up;
	int subscribed;
	int messages;
	char last_ch[64], last_msg[64];
	size_t last_chlen, last_len;
	unsigned char *seen;  /* per channel index, for the 2000-channel test */
	struct rlink *free_me; /* freed from inside the next on_state(false) or on_message */
};

static void free_from_callback(struct st *s)
{
	struct rlink *l = s->free_me;

	s->free_me = NULL;
	rlink_free(l);
}

static void on_state(void *arg, bool up)
{
	struct st *s = arg;

	s->up = up;
	if (up)
		s->ups++;
	else
		s->downs++;
	if (!up && s->free_me)
		free_from_callback(s);
}

static void on_subscribed(void *arg, const char *ch, size_t chlen)
{
	struct st *s = arg;
	s->subscribed++;
}

static void on_message(void *arg, const char *ch, size_t chlen, const char *msg, size_t len)
{
	struct st *s = arg;

	s->messages++;
	s->last_chlen = chlen < sizeof(s->last_ch) ? chlen : sizeof(s->last_ch);
	memcpy(s->last_ch, ch, s->last_chlen);
	s->last_len = len < sizeof(s->last_msg) ? len : sizeof(s->last_msg);
	memcpy(s->last_msg, msg, s->last_len);
	if (s->seen && chlen > 5 && memcmp(ch, "chan.", 5) == 0) {
		int i = atoi(ch + 5);
		char want[32];
		snprintf(want, sizeof(want), "m%d", i);
		if (i >= 0 && i < 2000 && len == strlen(want) && memcmp(msg, want, len) == 0)
			s->seen[i]++;
	}
	if (s->free_me)
		free_from_callback(s);
}

static struct rlink *link_to(const char *address, enum rlink_kind kind, struct st *s,
			     const struct redis_addr *defaults)
{
	struct redis_addr a;
	char err[256];

	if (redis_addr_parse(address, defaults, &a, err, sizeof(err)) != 0) {
		printf("# %s: %s\n", address, err);
		abort();
	}
	memset(s, 0, sizeof(*s));
	struct rlink_opts o = { .loop = loop, .addr = &a, .kind = kind, .on_state = on_state,
				.on_message = on_message, .on_subscribed = on_subscribed, .arg = s };
	return rlink_new(&o);
}

static char addrbuf[128];

static const char *at(int port, const char *extra)
{
	snprintf(addrbuf, sizeof(addrbuf), "redis://127.0.0.1:%d%s", port, extra ? extra : "");
	return addrbuf;
}

/* ---- address parsing ------------------------------------------------------ */

static void test_addr_good(void)
{
	struct redis_addr a, d;
	char err[256];

	ok(redis_addr_parse("127.0.0.1:6380", NULL, &a, err, sizeof(err)) == 0, "host:port");
	is_str(a.host, "127.0.0.1", "host:port: host");
	is_int(a.port, 6380, "host:port: port");
	is_int(a.connect_timeout_ms, 1000, "default connect_timeout 1 s");
	is_int(a.io_timeout_ms, 4000, "default io_timeout 4 s");
	is_str(redis_addr_str(&a), "127.0.0.1:6380", "redis_addr_str");

	ok(redis_addr_parse("localhost:7000", NULL, &a, err, sizeof(err)) == 0, "localhost:port");
	is_str(a.host, "localhost", "localhost kept");
	ok(redis_addr_parse("redis:6379", NULL, &a, err, sizeof(err)) == 0, "a host name (docker-compose's redis)");
	is_str(a.host, "redis", "the name kept, not looked up");
	ok(redis_addr_parse("redis://cache-1.nonexistent.invalid.:6390/2", NULL, &a, err, sizeof(err)) == 0 &&
	   strcmp(a.host, "cache-1.nonexistent.invalid.") == 0 && a.port == 6390 && a.db == 2,
	   "a fully qualified name in a URL");

	ok(redis_addr_parse("[::1]:6381", NULL, &a, err, sizeof(err)) == 0, "[::1]:port");
	is_str(a.host, "::1", "IPv6 host without brackets");
	is_int(a.port, 6381, "IPv6 port");
	is_str(redis_addr_str(&a), "[::1]:6381", "redis_addr_str of IPv6");

	ok(redis_addr_parse("redis://us%65r:p%40ss%3Aword@127.0.0.1:6379/3?connect_timeout=500ms&io_timeout=1m30s",
			    NULL, &a, err, sizeof(err)) == 0, "full redis:// URL");
	is_str(a.user, "user", "URL user percent-decoded");
	is_str(a.password, "p@ss:word", "URL password percent-decoded");
	is_int(a.db, 3, "URL db");
	is_int(a.connect_timeout_ms, 500, "connect_timeout=500ms");
	is_int(a.io_timeout_ms, 90000, "io_timeout=1m30s");

	ok(redis_addr_parse("redis://:secret@127.0.0.1", NULL, &a, err, sizeof(err)) == 0, "password only, no port");
	is_str(a.user, "", "no user");
	is_str(a.password, "secret", "password");
	is_int(a.port, 6379, "default port 6379");

	ok(redis_addr_parse("tcp://127.0.0.1:6390/0?force_resp2=true", NULL, &a, err, sizeof(err)) == 0,
	   "tcp:// with force_resp2 (always RESP2)");
	is_int(a.port, 6390, "tcp:// port");

	ok(redis_addr_parse("redis://[::1]:6379/1", NULL, &a, err, sizeof(err)) == 0, "redis://[::1]:port/db");
	is_str(a.host, "::1", "redis:// IPv6 host");
	is_int(a.db, 1, "redis:// IPv6 db");

	ok(redis_addr_parse("unix:///run/redis/redis.sock", NULL, &a, err, sizeof(err)) == 0, "unix://");
	is_str(a.path, "/run/redis/redis.sock", "unix path");
	is_str(a.host, "", "unix: no host");
	is_str(redis_addr_str(&a), "/run/redis/redis.sock", "redis_addr_str of a socket");

	ok(redis_addr_parse("unix://bob:pw@/tmp/r.sock?io_timeout=2s", NULL, &a, err, sizeof(err)) == 0,
	   "unix:// with user and options");
	is_str(a.user, "bob", "unix user");
	is_str(a.password, "pw", "unix password");
	is_str(a.path, "/tmp/r.sock", "unix path after user");
	is_int(a.io_timeout_ms, 2000, "unix io_timeout");

	memset(&d, 0, sizeof(d));
	snprintf(d.user, sizeof(d.user), "cfguser");
	snprintf(d.password, sizeof(d.password), "cfgpass");
	snprintf(d.client_name, sizeof(d.client_name), "rotor");
	d.db = 2;
	d.connect_timeout_ms = 700;
	d.io_timeout_ms = 3000;
	ok(redis_addr_parse("127.0.0.1:1", &d, &a, err, sizeof(err)) == 0, "defaults");
	ok(strcmp(a.user, "cfguser") == 0 && strcmp(a.password, "cfgpass") == 0 && a.db == 2 &&
	   strcmp(a.client_name, "rotor") == 0 && a.connect_timeout_ms == 700 && a.io_timeout_ms == 3000,
	   "the config block's settings are copied");
	ok(redis_addr_parse("redis://:urlpass@127.0.0.1:1/4", &d, &a, err, sizeof(err)) == 0, "URL over defaults");
	ok(strcmp(a.user, "cfguser") == 0 && strcmp(a.password, "urlpass") == 0 && a.db == 4,
	   "the URL's password and db override, an empty URL user does not");

	ok(redis_addr_parse("redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001&addr=[::1]:7002", NULL, &a, err,
			    sizeof(err)) == 0, "redis+cluster://");
	ok(a.cluster && a.nseeds == 3 && strcmp(a.host, "127.0.0.1") == 0 && a.port == 7000 &&
	   strcmp(a.seed[2].host, "::1") == 0 && a.seed[2].port == 7002, "its seeds, the first as host and port");
	is_str(redis_addr_str(&a), "cluster (127.0.0.1:7000,127.0.0.1:7001,[::1]:7002)", "redis_addr_str of a cluster");
	memset(&d, 0, sizeof(d));
	ok(redis_addr_parse_cluster("127.0.0.1:7000, localhost", &d, &a, err, sizeof(err)) == 0,
	   "a cluster_address entry");
	ok(a.cluster && a.nseeds == 2 && a.seed[1].port == 6379 && strcmp(a.seed[1].host, "localhost") == 0,
	   "its seeds, 6379 by default");
	ok(redis_addr_parse_cluster("127.0.0.1:7000,", &d, &a, err, sizeof(err)) == -1 && strstr(err, "empty"),
	   "an empty seed is refused: %s", err);
	d.db = 1;
	ok(redis_addr_parse_cluster("127.0.0.1:7000", &d, &a, err, sizeof(err)) == -1 && strstr(err, "database 0"),
	   "a db other than 0 is refused: %s", err);
	ok(redis_addr_parse("127.0.0.1:7000", NULL, &a, err, sizeof(err)) == 0 && !a.cluster,
	   "a plain address is no cluster (until the server says so)");
}

static void test_addr_refused(void)
{
	static const struct {
		const char *s, *why;
	} bad[] = {
		{ "rediss://127.0.0.1:6379", "TLS" },
		{ "rediss+sentinel://127.0.0.1:26379?sentinel_master_name=m", "TLS" },
		{ "redis+sentinel://127.0.0.1:26379", "needs a master name" },
		{ "rediss+cluster://127.0.0.1:7000", "TLS" },
		{ "redis+cluster://127.0.0.1:7000/2", "database 0 only" },
		{ "redis+cluster://127.0.0.1:7000?sentinel_master_name=m", "only in a redis+sentinel:// URL" },
		{ "redis+cluster://127.0.0.1:7000?addr=node/example:7001", "neither an IP address nor a host name" },
		{ "redis://127.0.0.1:6379?tls_enabled=true", "TLS" },
		{ "redis://127.0.0.1:6379?sentinel_master_name=m", "only in a redis+sentinel:// URL" },
		{ "redis://127.0.0.1:6379?sentinel_password=x", "sentinel_password" },
		{ "redis://127.0.0.1:6379?addr=127.0.0.1:6380", "addr" },
		{ "redis://127.0.0.1:6379?replica_client_enabled=true", "replica" },
		{ "redis://127.0.0.1:6379?frobnicate=1", "unknown option \"frobnicate\"" },
		{ "redis://127.0.0.1:6379?connect_timeout=5", "bad connect_timeout" },
		{ "redis://127.0.0.1:6379?io_timeout=0s", "bad io_timeout" },
		{ "redis://127.0.0.1:6379?io_timeout=fast", "bad io_timeout" },
		{ "redis example:6379", "neither an IP address nor a host name" },
		{ "redis://cache..internal:6379", "neither an IP address nor a host name" },
		{ "redis://-cache:6379", "neither an IP address nor a host name" },
		{ "[redis]:6379", "in brackets is not an IPv6 address" },
		{ "127.0.0.1:0", "bad port" },
		{ "127.0.0.1:65536", "bad port" },
		{ "127.0.0.1:http", "bad port" },
		{ "127.0.0.1:", "bad port" },
		{ "::1:6379", "brackets" },
		{ "[::1:6379", "unclosed" },
		{ "redis://127.0.0.1:6379/x", "bad db" },
		{ "redis://127.0.0.1:6379/-1", "bad db" },
		{ "redis://u:%zz@127.0.0.1:6379", "bad password" },
		{ "redis://%4@127.0.0.1:6379", "bad user" },
		{ "http://127.0.0.1:80", "unknown scheme" },
		{ "unix://relative.sock", "absolute" },
		{ "redis://:6379", "no host" },
		{ "user@127.0.0.1:6379", "redis://" },
	};
	struct redis_addr a;
	char err[256];

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(bad); i++) {
		err[0] = '\0';
		int rc = redis_addr_parse(bad[i].s, NULL, &a, err, sizeof(err));
		ok(rc == -1 && strstr(err, bad[i].why) != NULL, "refused %s: %s", bad[i].s, err);
	}
	err[0] = '\0';
	redis_addr_parse("redis://u:topsecret@cache.internal:6379", NULL, &a, err, sizeof(err));
	ok(strstr(err, "topsecret") == NULL, "a refusal does not quote the password");
}

/* ---- commands ------------------------------------------------------------- */

static int incr_seen, incr_bad;

static void incr_cb(void *arg, redisReply *r, const char *err)
{
	if (in_call || r == NULL || r->type != REDIS_REPLY_INTEGER || r->integer != ++incr_seen)
		incr_bad++;
}

static void test_commands(int port)
{
	struct st s;
	struct got g;
	struct rlink *l = link_to(at(port, NULL), RLINK_CMD, &s, NULL);

	ok(!rlink_up(l), "a new link is not up yet");
	cmd(l, &g, "PING", (const char *)NULL);
	ok(g.calls == 0, "a request on a link not up is not answered from inside rlink_cmd");
	ok(WAIT(g.calls == 1, 1.0) && g.type == -1 && strcmp(g.err, "not connected") == 0 && !g.sync,
	   "... but from the loop, with \"not connected\"");
	ok(WAIT(s.up, 3.0), "the link comes up");
	is_int(s.ups, 1, "on_state(true) once");
	is_str(rlink_error(l), "", "rlink_error is empty when up");

	CMD_WAIT(l, &g, "SET", "k1", "v1");
	ok(g.calls == 1 && !g.sync && g.type == REDIS_REPLY_STATUS && strcmp(g.str, "OK") == 0, "SET: +OK, later");
	CMD_WAIT(l, &g, "GET", "k1");
	ok(g.type == REDIS_REPLY_STRING && strcmp(g.str, "v1") == 0, "GET: the value");
	CMD_WAIT(l, &g, "NOSUCHCOMMAND");
	ok(g.type == REDIS_REPLY_ERROR && strncmp(g.str, "ERR", 3) == 0, "an error reply is passed as a reply");
	ok(rlink_up(l), "... and the link stays up");
	CMD_WAIT(l, &g, "subscribe", "x");
	ok(g.calls == 1 && !g.sync && g.type == -1 && strcmp(g.err, "not allowed on a command link") == 0,
	   "SUBSCRIBE on a command link is refused");
	CMD_WAIT(l, &g, "PING");
	is_str(g.str, "PONG", "... and the link still answers");

	/* 10,000 INCR in flight at once, replies in order */
	const char *argv[] = { "INCR", "counter" };
	const size_t lens[] = { 4, 7 };
	incr_seen = incr_bad = 0;
	in_call = true;
	for (int i = 0; i < 10000; i++)
		rlink_cmd(l, 2, argv, lens, incr_cb, NULL);
	in_call = false;
	ok(WAIT(incr_seen >= 10000 || incr_bad, 10.0) && incr_seen == 10000 && incr_bad == 0,
	   "10,000 pipelined INCR answered in order (%d seen, %d bad)", incr_seen, incr_bad);

	/* binary-safe arguments */
	static const char key[] = "bin\0key", val[] = "a\0b\r\n$3\r\n\xff\x00z";
	const char *sv[] = { "SET", key, val }, *gv[] = { "GET", key };
	const size_t sl[] = { 3, sizeof(key) - 1, sizeof(val) - 1 }, gl[] = { 3, sizeof(key) - 1 };
	memset(&g, 0, sizeof(g));
	rlink_cmd(l, 3, sv, sl, got_cb, &g);
	WAIT(g.calls, 3.0);
	memset(&g, 0, sizeof(g));
	rlink_cmd(l, 2, gv, gl, got_cb, &g);
	ok(WAIT(g.calls, 3.0) && g.type == REDIS_REPLY_STRING && g.len == sizeof(val) - 1 &&
	   memcmp(g.str, val, g.len) == 0, "binary key and value round-trip (NUL, CRLF, 0xff)");

	/* idle PINGs keep an idle link up and do not disturb it */
	spin(2.3);
	ok(rlink_up(l) && s.downs == 0, "an idle link stays up across its PINGs");
	rlink_free(l);
}

/* Host names: the machine's own name (127.0.0.1 through /etc/hosts) is
 * looked up at connect time without blocking the loop, and hiredis
 * connects to the address; a name that does not resolve is a failed
 * attempt, retried with the back-off, with an error naming the host and
 * the lookup's error; a link freed during its lookup calls nothing back. */
static void test_names(int port)
{
	char host[200], addr[300];
	struct st s, s2, s3;
	struct got g;
	struct rlink *l;

	if (gethostname(host, sizeof(host)) != 0) {
		ok(0, "gethostname");
		return;
	}
	snprintf(addr, sizeof(addr), "redis://%s:%d", host, port);
	gap_reset();
	l = link_to(addr, RLINK_CMD, &s, NULL);
	ok(WAIT(s.up, 5.0), "a link to %s comes up", addr);
	CMD_WAIT(l, &g, "SET", "by-name", "yes");
	CMD_WAIT(l, &g, "GET", "by-name");
	is_str(g.str, "yes", "commands over a link made by name");
	ok(max_gap < 0.2, "the loop never blocked (longest gap %.3f s)", max_gap);
	rlink_free(l);

	struct rlink *sub = link_to(addr, RLINK_SUB, &s3, NULL);
	ok(WAIT(s3.up, 5.0), "a subscriber link by name comes up");
	rlink_free(sub);

	l = link_to("redis://nonexistent.invalid:6379", RLINK_CMD, &s, NULL);
	ok(WAIT(strstr(rlink_error(l), "cannot resolve") != NULL, 5.0), "a name that does not resolve: %s",
	   rlink_error(l));
	ok(strstr(rlink_error(l), "cannot resolve nonexistent.invalid: ") != NULL &&
	   strlen(rlink_error(l)) > strlen("cannot resolve nonexistent.invalid: "),
	   "the error names the host and the lookup's error");
	spin(1.2);
	ok(!s.up && s.ups == 0, "never up; retried with the back-off");
	cmd(l, &g, "PING", (const char *)NULL);
	ok(WAIT(g.calls == 1, 1.0) && strcmp(g.err, "not connected") == 0, "requests fail as on any link down");
	rlink_free(l);

	l = link_to(addr, RLINK_CMD, &s2, NULL);
	rlink_free(l); /* its lookup in flight */
	spin(0.3);
	ok(s2.ups == 0 && s2.downs == 0, "a link freed during its lookup calls nothing back");
	ok(WAIT(dns_inflight() == 0, 5.0), "and its lookup is let go");
}

static void test_eval(int port)
{
	struct st s;
	struct got g, sha;
	struct rscript sc = { .text = "return KEYS[1] .. ':' .. ARGV[1]" };
	struct rlink *l = link_to(at(port, NULL), RLINK_CMD, &s, NULL);
	const char *argv[] = { "key\0x", "arg" };
	const size_t lens[] = { 5, 3 };

	ok(WAIT(s.up, 3.0), "eval: link up");
	CMD_WAIT(l, &sha, "SCRIPT", "LOAD", sc.text);
	CMD_WAIT(l, &g, "SCRIPT", "FLUSH");

	for (int round = 0; round < 3; round++) {
		memset(&g, 0, sizeof(g));
		in_call = true;
		rlink_eval(l, &sc, 1, 2, argv, lens, got_cb, &g);
		in_call = false;
		ok(WAIT(g.calls, 3.0) && !g.sync && g.type == REDIS_REPLY_STRING && g.len == 9 &&
		   memcmp(g.str, "key\0x:arg", 9) == 0, "eval round %d: the script's result", round);
		if (round == 0) {
			is_str(sc.sha, sha.str, "rscript.sha is the SHA-1 SCRIPT LOAD gives");
			CMD_WAIT(l, &g, "SCRIPT", "EXISTS", sc.sha);
			ok(g.type == REDIS_REPLY_ARRAY || g.calls == 1, "SCRIPT EXISTS answered");
		}
		if (round == 1) {
			/* that one went by EVALSHA: count EVALs, flush, expect one more */
			CMD_WAIT(l, &g, "INFO", "commandstats");
			const char *e = strstr(g.str, "cmdstat_eval:calls=");
			ok(e && atoi(e + 19) == 1, "one EVAL so far (the NOSCRIPT fallback of round 0)");
			CMD_WAIT(l, &g, "SCRIPT", "FLUSH");
		}
	}
	CMD_WAIT(l, &g, "INFO", "commandstats");
	const char *e = strstr(g.str, "cmdstat_eval:calls=");
	ok(e && atoi(e + 19) == 2, "after SCRIPT FLUSH, NOSCRIPT fell back to EVAL once more");
	rlink_free(l);
}

static void test_auth_select(void)
{
	struct redis_server srv;
	struct st s1, s2, s3, s4;
	struct got g;
	char a[160];

	/* the fixture's readiness PING would meet -NOAUTH with --requirepass
	 * on the command line: set the password once the server runs */
	if (redis_server_start(&srv, 0, NULL) != 0) {
		ok(0, "start a server");
		return;
	}
	struct rlink *setup = link_to(at(srv.port, NULL), RLINK_CMD, &s1, NULL);
	WAIT(s1.up, 3.0);
	CMD_WAIT(setup, &g, "CONFIG", "SET", "requirepass", "sekret");
	ok(g.type == REDIS_REPLY_STATUS, "requirepass set");
	rlink_free(setup);
	snprintf(a, sizeof(a), "redis://:sekret@127.0.0.1:%d/5", srv.port);
	struct redis_addr d = { .connect_timeout_ms = 1000, .io_timeout_ms = 4000 };
	snprintf(d.client_name, sizeof(d.client_name), "rotor-test");
	struct rlink *good = link_to(a, RLINK_CMD, &s1, &d);
	snprintf(a, sizeof(a), "redis://:wrong@127.0.0.1:%d", srv.port);
	struct rlink *bad = link_to(a, RLINK_CMD, &s2, NULL);

	ok(WAIT(s1.up, 3.0), "AUTH with the right password: up");
	CMD_WAIT(good, &g, "CLIENT", "GETNAME");
	is_str(g.str, "rotor-test", "CLIENT SETNAME was sent");
	CMD_WAIT(good, &g, "SET", "in5", "yes");
	CMD_WAIT(good, &g, "SELECT", "0");
	CMD_WAIT(good, &g, "EXISTS", "in5");
	ok(g.type == REDIS_REPLY_INTEGER && g.integer == 0, "SELECT 5 was sent: the key is not in db 0");
	CMD_WAIT(good, &g, "SELECT", "5");
	CMD_WAIT(good, &g, "EXISTS", "in5");
	ok(g.type == REDIS_REPLY_INTEGER && g.integer == 1, "... but in db 5");

	spin(1.0);
	ok(!rlink_up(bad) && s2.ups == 0, "AUTH with a wrong password: stays down");
	ok(strstr(rlink_error(bad), "AUTH failed") != NULL, "rlink_error says why: %s", rlink_error(bad));
	cmd(bad, &g, "PING", (const char *)NULL);
	ok(WAIT(g.calls, 1.0) && strcmp(g.err, "not connected") == 0, "requests on it: \"not connected\"");

	/* the wrong password becomes the right one: the link that kept
	 * retrying comes up */
	CMD_WAIT(good, &g, "CONFIG", "SET", "requirepass", "wrong");
	ok(g.type == REDIS_REPLY_STATUS, "CONFIG SET requirepass");
	ok(WAIT(s2.up, 6.0), "the link with the old wrong password kept retrying and came up");

	/* ACL user and password */
	CMD_WAIT(good, &g, "ACL", "SETUSER", "alice", "on", ">pw%d", "~*", "+@all");
	snprintf(a, sizeof(a), "redis://alice:pw%%25d@127.0.0.1:%d", srv.port);
	struct rlink *alice = link_to(a, RLINK_CMD, &s3, NULL);
	ok(WAIT(s3.up, 3.0), "AUTH user password (percent-decoded): up");
	CMD_WAIT(alice, &g, "ACL", "WHOAMI");
	is_str(g.str, "alice", "ACL WHOAMI is the URL's user");
	snprintf(a, sizeof(a), "redis://alice:nope@127.0.0.1:%d", srv.port);
	struct rlink *nope = link_to(a, RLINK_CMD, &s4, NULL);
	spin(0.5);
	ok(!rlink_up(nope) && strstr(rlink_error(nope), "WRONGPASS"), "a wrong ACL password: %s", rlink_error(nope));

	rlink_free(nope);
	rlink_free(alice);
	rlink_free(bad);
	rlink_free(good);
	redis_server_stop(&srv, true);
}

static void test_readonly(int master_port)
{
	struct redis_server rep;
	char mport[16];
	struct st s;
	struct got g;

	snprintf(mport, sizeof(mport), "%d", master_port);
	const char *extra[] = { "--replicaof", "127.0.0.1", mport, NULL };
	if (redis_server_start(&rep, 0, extra) != 0) {
		ok(0, "start a replica");
		return;
	}
	struct rlink *l = link_to(at(rep.port, NULL), RLINK_CMD, &s, NULL);
	ok(WAIT(s.up, 3.0), "link to a replica up");
	CMD_WAIT(l, &g, "SET", "x", "1");
	ok(g.type == REDIS_REPLY_ERROR && strncmp(g.str, "READONLY", 8) == 0, "READONLY is passed to the caller");
	is_int(s.downs, 1, "... and the link reconnects at once");
	ok(WAIT(s.ups == 2, 3.0), "... and comes back");
	rlink_free(l);
	redis_server_stop(&rep, true);
}

static void test_unix(void)
{
	struct redis_server srv;
	char path[64], a[96];
	struct st s, s2;
	struct got g;

	snprintf(path, sizeof(path), "/tmp/rotor-rlink-%d.sock", (int)getpid());
	const char *extra[] = { "--unixsocket", path, NULL };
	if (redis_server_start(&srv, 0, extra) != 0) {
		ok(0, "start a server with a unix socket");
		return;
	}
	snprintf(a, sizeof(a), "unix://%s", path);
	struct rlink *l = link_to(a, RLINK_CMD, &s, NULL);
	ok(WAIT(s.up, 3.0), "unix:// link up");
	CMD_WAIT(l, &g, "PING");
	is_str(g.str, "PONG", "unix:// link answers");
	snprintf(a, sizeof(a), "unix://%s.missing", path);
	struct rlink *m = link_to(a, RLINK_CMD, &s2, NULL);
	spin(0.3);
	ok(!rlink_up(m) && strstr(rlink_error(m), "No such file"), "a missing socket: %s", rlink_error(m));
	rlink_free(m);
	rlink_free(l);
	redis_server_stop(&srv, true);
	unlink(path);
}

/* ---- faults --------------------------------------------------------------- */

static void test_killed(void)
{
	struct redis_server srv;
	struct st sc, ss;
	struct got g, blocked, pub;
	const char ch[] = "news\0bin";

	if (redis_server_start(&srv, 0, NULL) != 0) {
		ok(0, "start a server");
		return;
	}
	int port = srv.port;
	struct rlink *c = link_to(at(port, NULL), RLINK_CMD, &sc, NULL);
	struct rlink *sub = link_to(at(port, NULL), RLINK_SUB, &ss, NULL);
	struct st s3;
	struct rlink *doomed = link_to(at(port, NULL), RLINK_CMD, &s3, NULL);
	rlink_subscribe(sub, ch, sizeof(ch) - 1);
	rlink_subscribe(sub, ch, sizeof(ch) - 1);
	ok(rlink_subscribed(sub, ch, sizeof(ch) - 1), "rlink_subscribed (binary name)");
	ok(WAIT(sc.up && ss.up && ss.subscribed == 1, 3.0), "command and subscriber links up, subscribed once");

	const char *pv[] = { "PUBLISH", ch, "hello" };
	const size_t pl[] = { 7, sizeof(ch) - 1, 5 };
	memset(&pub, 0, sizeof(pub));
	rlink_cmd(c, 3, pv, pl, got_cb, &pub);
	ok(WAIT(ss.messages == 1, 3.0) && ss.last_chlen == sizeof(ch) - 1 &&
	   memcmp(ss.last_ch, ch, ss.last_chlen) == 0 && ss.last_len == 5 && memcmp(ss.last_msg, "hello", 5) == 0,
	   "a message arrives, channel and payload binary-safe");
	is_int(pub.integer, 1, "PUBLISH reached one subscriber");

	WAIT(s3.up, 3.0);
	s3.free_me = doomed;
	cmd(c, &blocked, "BLPOP", "nothing", "3", (const char *)NULL);
	spin(0.1);
	redis_server_stop(&srv, true);
	ok(WAIT(blocked.calls, 2.0) && blocked.type == -1 && strcmp(blocked.err, "connection lost") == 0,
	   "a request in flight when the server dies: \"connection lost\" (%s)", blocked.err);
	ok(WAIT(sc.downs == 1 && ss.downs == 1, 2.0), "both links report down");
	ok(s3.downs == 1 && s3.free_me == NULL, "a link freed from inside its on_state(false)");
	ok(rlink_error(c)[0] != '\0', "rlink_error: %s", rlink_error(c));
	cmd(c, &g, "PING", (const char *)NULL);
	ok(WAIT(g.calls, 1.0) && strcmp(g.err, "not connected") == 0 && !g.sync, "while down: \"not connected\"");
	spin(1.5); /* a few refused attempts */
	ok(sc.downs == 1 && !sc.up, "refused attempts are no state changes");

	if (redis_server_start(&srv, port, NULL) != 0) {
		ok(0, "restart the server on port %d", port);
		return;
	}
	ok(WAIT(sc.up && ss.up && ss.subscribed == 2, 7.0), "both links reconnect, the channel is subscribed again");
	memset(&pub, 0, sizeof(pub));
	rlink_cmd(c, 3, pv, pl, got_cb, &pub);
	ok(WAIT(ss.messages == 2, 3.0) && pub.integer == 1, "messages flow again");

	rlink_free(sub);
	rlink_free(c);
	redis_server_stop(&srv, true);
}

static void test_stopped(void)
{
	struct redis_server srv;
	struct st s;
	struct got g;

	if (redis_server_start(&srv, 0, NULL) != 0) {
		ok(0, "start a server");
		return;
	}
	struct rlink *l = link_to(at(srv.port, "?io_timeout=1s&connect_timeout=300ms"), RLINK_CMD, &s, NULL);
	ok(WAIT(s.up, 3.0), "stopped: link up");
	redis_server_pause(&srv, true);
	gap_reset();
	double t0 = ev_time();
	cmd(l, &g, "GET", "k", (const char *)NULL);
	ok(WAIT(g.calls, 3.0) && strcmp(g.err, "timeout") == 0, "a request to a stopped server: \"timeout\"");
	double took = ev_time() - t0;
	ok(took <= 2.0, "within io_timeout + 1 s (%.2f s)", took);
	ok(WAIT(s.downs == 1, 1.0), "the link went down");
	spin(1.5); /* reconnects reach the backlog, the handshake times out */
	ok(!rlink_up(l), "still down while the server is stopped: %s", rlink_error(l));
	ok(max_gap < 0.25, "the loop never blocked: longest gap between 10 ms ticks %.3f s", max_gap);
	redis_server_pause(&srv, false);
	ok(WAIT(s.up, 7.0), "up again after SIGCONT");
	CMD_WAIT(l, &g, "PING");
	is_str(g.str, "PONG", "and answers");
	rlink_free(l);
	redis_server_stop(&srv, true);
}

/* ---- rlink_free ----------------------------------------------------------- */

static int closed_calls, closed_other;
static struct rlink *free_me;

static void closed_cb(void *arg, redisReply *r, const char *err)
{
	int *n = arg;
	(*n)++;
	if (r == NULL && strcmp(err, "closed") == 0)
		closed_calls++;
	else
		closed_other++;
}

static void free_inside_cb(void *arg, redisReply *r, const char *err)
{
	int *n = arg;
	(*n)++;
	rlink_free(free_me);
}

static void test_free(int port)
{
	struct st s;
	static int counts[1001];
	struct rlink *l = link_to(at(port, NULL), RLINK_CMD, &s, NULL);
	const char *argv[] = { "INCR", "freecount" };
	const size_t lens[] = { 4, 9 };

	ok(WAIT(s.up, 3.0), "free: link up");
	memset(counts, 0, sizeof(counts));
	closed_calls = closed_other = 0;
	for (int i = 0; i < 1000; i++)
		rlink_cmd(l, 2, argv, lens, closed_cb, &counts[i]);
	rlink_free(l);
	ok(closed_calls == 1000 && closed_other == 0, "rlink_free: 1000 requests in flight answered \"closed\" (%d, %d)",
	   closed_calls, closed_other);
	spin(0.2);
	int once = 1;
	for (int i = 0; i < 1000; i++)
		once &= counts[i] == 1;
	ok(once, "each exactly once");

	/* a not-yet-connected link with a request waiting for the loop */
	struct got g;
	l = link_to(at(port, NULL), RLINK_CMD, &s, NULL);
	cmd(l, &g, "PING", (const char *)NULL);
	rlink_free(l);
	ok(g.calls == 1 && !g.sync, "rlink_free of a link still connecting answers its waiting request (%s)", g.err);
	spin(0.1);
	is_int(g.calls, 1, "once");

	/* rlink_free from inside a reply callback, with more in flight */
	free_me = l = link_to(at(port, NULL), RLINK_CMD, &s, NULL);
	ok(WAIT(s.up, 3.0), "free inside: link up");
	memset(counts, 0, sizeof(counts));
	closed_calls = closed_other = 0;
	rlink_cmd(l, 2, argv, lens, free_inside_cb, &counts[1000]);
	for (int i = 0; i < 100; i++)
		rlink_cmd(l, 2, argv, lens, closed_cb, &counts[i]);
	ok(WAIT(counts[1000] == 1, 3.0), "the first reply's callback frees the link");
	ok(closed_calls == 100 && closed_other == 0, "the other 100 were answered \"closed\" at once");
	spin(0.2);
	once = counts[1000] == 1;
	for (int i = 0; i < 100; i++)
		once &= counts[i] == 1;
	ok(once, "each exactly once");
}

/* ---- many channels -------------------------------------------------------- */

static int pub_ok, pub_zero, pub_bad;

static void pub_cb(void *arg, redisReply *r, const char *err)
{
	if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1)
		pub_ok++;
	else if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 0)
		pub_zero++;
	else
		pub_bad++;
}

static void publish_all(struct rlink *c)
{
	pub_ok = pub_zero = pub_bad = 0;
	for (int i = 0; i < 2000; i++) {
		char ch[32], m[32];
		snprintf(ch, sizeof(ch), "chan.%d", i);
		snprintf(m, sizeof(m), "m%d", i);
		const char *argv[] = { "PUBLISH", ch, m };
		const size_t lens[] = { 7, strlen(ch), strlen(m) };
		rlink_cmd(c, 3, argv, lens, pub_cb, NULL);
	}
	WAIT(pub_ok + pub_zero + pub_bad == 2000, 5.0);
}

static void test_many(int port)
{
	struct st sc, ss;
	static unsigned char seen[2000];
	struct rlink *c = link_to(at(port, NULL), RLINK_CMD, &sc, NULL);
	struct rlink *sub = link_to(at(port, NULL), RLINK_SUB, &ss, NULL);
	char ch[32];

	ss.seen = seen;
	memset(seen, 0, sizeof(seen));
	for (int i = 0; i < 2000; i++) {
		snprintf(ch, sizeof(ch), "chan.%d", i);
		rlink_subscribe(sub, ch, strlen(ch));
	}
	WAIT(sc.up && ss.subscribed == 2000, 5.0);
	is_int(ss.subscribed, 2000, "2000 channels wanted before the link was up: 2000 acknowledged");
	publish_all(c);
	is_int(pub_ok, 2000, "each PUBLISH reached the subscriber");
	ok(WAIT(ss.messages == 2000, 5.0), "2000 messages received");
	int each = 1;
	for (int i = 0; i < 2000; i++)
		each &= seen[i] == 1;
	ok(each, "one on each channel, with its payload");

	for (int i = 0; i < 2000; i += 2) {
		snprintf(ch, sizeof(ch), "chan.%d", i);
		rlink_unsubscribe(sub, ch, strlen(ch));
	}
	ok(!rlink_subscribed(sub, "chan.0", 6) && rlink_subscribed(sub, "chan.1", 6), "rlink_unsubscribe drops from the set");
	spin(0.3);
	ss.messages = 0;
	publish_all(c);
	ok(pub_ok == 1000 && pub_zero == 1000, "after UNSUBSCRIBE of half, half the channels have no subscriber (%d/%d)",
	   pub_ok, pub_zero);
	ok(WAIT(ss.messages == 1000, 3.0), "1000 messages received");

	/* reconnect: the remaining 1000 are subscribed again in batches */
	ss.subscribed = 0;
	rlink_reconnect(sub, "test");
	ok(!rlink_up(sub) && ss.downs == 1, "rlink_reconnect drops the link");
	WAIT(ss.up && ss.subscribed == 1000, 5.0);
	is_int(ss.subscribed, 1000, "after rlink_reconnect, 1000 channels subscribed again");

	/* freed from inside on_message, with 1000 subscriptions on the context */
	struct got g;
	ss.free_me = sub;
	CMD_WAIT(c, &g, "PUBLISH", "chan.1", "bye");
	ok(WAIT(ss.free_me == NULL, 3.0), "a subscriber freed from inside its on_message");
	spin(0.1);
	rlink_free(c);
}

int main(void)
{
	struct redis_server srv;

	signal(SIGPIPE, SIG_IGN);
	log_set_level(getenv("RLINK_LOG") ? LOG_DEBUG : LOG_ERROR);
	if (!redis_server_available()) {
		printf("1..0 # SKIP redis-server is not installed\n");
		return 0;
	}
	test_addr_good();
	test_addr_refused();

	loop = ev_default_loop(0);
	ev_timer_init(&tick_w, tick_cb, 0.01, 0.01); /* its own tick: it measures the gaps */
	ev_timer_start(loop, &tick_w);
	if (redis_server_start(&srv, 0, NULL) != 0) {
		ok(0, "start redis-server");
		return tap_done();
	}
	test_commands(srv.port);
	test_names(srv.port);
	test_eval(srv.port);
	test_free(srv.port);
	test_many(srv.port);
	test_readonly(srv.port);
	test_auth_select();
	test_unix();
	test_killed();
	test_stopped();
	redis_server_stop(&srv, true);
	return tap_done();
}
