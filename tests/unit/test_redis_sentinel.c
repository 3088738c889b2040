/*
 * test_redis_sentinel.c - Redis links whose shard is a Sentinel group,
 * against real processes on loopback: a master, two replicas and three
 * sentinels (ref/redis-engine.md §11, topology 3). The address forms; the
 * master found through the sentinels (a dead one listed first); a master
 * name nobody knows; sentinel AUTH (password and ACL user); a server named
 * master that is a replica (ROLE), READONLY on a demoted master, and the
 * link following the sentinel's new answer; SENTINEL FAILOVER (command and
 * subscriber links move to the new master, commands work again); the
 * master killed with SIGKILL (the same, after Sentinel's own failover).
 * Every process is stopped by its pid, also when the test dies.
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
#include <stdlib.h>
#include <unistd.h>

static struct ev_loop *loop;

/* Every process started, for the cleanup. */
enum { P_MASTER, P_R1, P_R2, P_S1, P_S2, P_S3, P_SAUTH, P_A, P_B, P_SRO, P_N };
static struct redis_server proc[P_N];

static void stop_all(void)
{
	for (int i = 0; i < P_N; i++)
		redis_server_stop(&proc[i], true);
}

/* A test that dies (assert, watchdog) takes its servers with it: only
 * kill(2), which is async-signal-safe. */
static void on_fatal(int sig)
{
	for (int i = 0; i < P_N; i++)
		if (proc[i].pid > 0) {
			kill(proc[i].pid, SIGCONT);
			kill(proc[i].pid, SIGKILL);
		}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* ---- the loop ------------------------------------------------------------- */

#define WAIT(cond, secs) LOOP_WAIT(loop, cond, secs)

static void spin(double secs)
{
	redis_loop_spin(loop, secs);
}

/* Polls COND (no loop to run: servers only) every 50 ms for SECS. */
#define POLL(cond, secs) __extension__({ \
	double t0_ = ev_time(); \
	while (!(cond) && ev_time() - t0_ < (secs)) \
		usleep(50000); \
	(cond); })

/* ---- replies and links ------------------------------------------------------ */

struct got {
	int calls;
	int type;          /* REDIS_REPLY_*, or -1 with err */
	char str[256];
	int port;          /* CONFIG GET port */
	long long integer; /* an integer reply */
	char err[64];
};

static void got_cb(void *arg, redisReply *r, const char *err)
{
	struct got *g = arg;

	g->calls++;
	g->str[0] = '\0';
	g->port = 0;
	if (r == NULL) {
		g->type = -1;
		snprintf(g->err, sizeof(g->err), "%s", err ? err : "(null)");
		return;
	}
	g->type = r->type;
	g->integer = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
	if (r->str)
		snprintf(g->str, sizeof(g->str), "%.*s", (int)r->len, r->str);
	if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->str)
		g->port = atoi(r->element[1]->str);
}

static void cmd(struct rlink *l, struct got *g, ...)
{
	const char *argv[8];
	int argc = 0;
	va_list ap;

	memset(g, 0, sizeof(*g));
	va_start(ap, g);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && argc < 8; argc++)
		argv[argc] = a;
	va_end(ap);
	rlink_cmd(l, argc, argv, NULL, got_cb, g);
}

#define CMD_WAIT(l, g, ...) do { cmd(l, g, __VA_ARGS__, (const char *)NULL); WAIT((g)->calls > 0, 6.0); } while (0)

/* The port of the server L is connected to, 0 when it does not answer. */
static int link_port(struct rlink *l)
{
	struct got g;

	CMD_WAIT(l, &g, "CONFIG", "GET", "port");
	return g.type == REDIS_REPLY_ARRAY ? g.port : 0;
}

struct st {
	int ups, downs;
	bool up;
	int messages;
};

static void on_state(void *arg, bool up)
{
	struct st *s = arg;

	s->up = up;
	if (up)
		s->ups++;
	else
		s->downs++;
}

static void on_message(void *arg, const char *ch, size_t chlen, const char *msg, size_t len)
{
	struct st *s = arg;
	s->messages++;
}

static struct rlink *link_to(const struct redis_addr *a, enum rlink_kind kind, struct st *s)
{
	memset(s, 0, sizeof(*s));
	struct rlink_opts o = { .loop = loop, .addr = a, .kind = kind, .on_state = on_state,
				.on_message = on_message, .arg = s };
	return rlink_new(&o);
}

/* A Sentinel group address: master NAME, the sentinels at PORTS (0-ended). */
static struct redis_addr group(const char *name, const int *ports)
{
	struct redis_addr d = { .connect_timeout_ms = 500, .io_timeout_ms = 1000 }, a;
	char list[256] = "", err[256];

	snprintf(d.master_name, sizeof(d.master_name), "%s", name);
	for (int i = 0; ports[i]; i++)
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s127.0.0.1:%d", i ? "," : "", ports[i]);
	if (redis_addr_parse_sentinels(list, &d, &a, err, sizeof(err)) != 0) {
		printf("# %s: %s\n", list, err);
		abort();
	}
	return a;
}

/* The master's port according to the sentinel on PORT, 0 if it says none. */
static int sentinel_says(int port, const char *name)
{
	const char *s = redis_server_str(port, "SENTINEL get-master-addr-by-name %s", name);
	const char *sp = strchr(s, ' ');
	return sp ? atoi(sp + 1) : 0;
}

/* ---- address forms ------------------------------------------------------------ */

static void test_parse(void)
{
	struct redis_addr a, d = { 0 };
	char err[256];

	ok(redis_addr_parse("redis+sentinel://u:p%40ss@127.0.0.1:26381/2?sentinel_master_name=m1"
			    "&addr=127.0.0.1:26382&addr=[::1]&sentinel_user=su&sentinel_password=s%26p&io_timeout=2s",
			    NULL, &a, err, sizeof(err)) == 0, "redis+sentinel:// URL: %s", err);
	is_str(a.master_name, "m1", "master name");
	is_int(a.nsentinels, 3, "the URL's host and each addr are sentinels");
	ok(a.sentinel[0].port == 26381 && a.sentinel[1].port == 26382 && strcmp(a.sentinel[2].host, "::1") == 0 &&
	   a.sentinel[2].port == 26379, "their addresses (26379 when no port is given)");
	ok(strcmp(a.user, "u") == 0 && strcmp(a.password, "p@ss") == 0 && a.db == 2,
	   "the URL's user, password and db are the master's");
	ok(strcmp(a.sentinel_user, "su") == 0 && strcmp(a.sentinel_password, "s&p") == 0,
	   "sentinel_user and sentinel_password");
	is_int(a.io_timeout_ms, 2000, "io_timeout");
	is_str(redis_addr_str(&a), "sentinel master m1 (127.0.0.1:26381,127.0.0.1:26382,[::1]:26379)",
	       "redis_addr_str");

	snprintf(d.master_name, sizeof(d.master_name), "cfg");
	ok(redis_addr_parse("redis+sentinel://127.0.0.1", &d, &a, err, sizeof(err)) == 0 &&
	   strcmp(a.master_name, "cfg") == 0, "the config's sentinel_master_name is the default");
	ok(redis_addr_parse("redis://127.0.0.1:6379", &d, &a, err, sizeof(err)) == 0 && a.master_name[0] == '\0',
	   "a plain address is a plain server even with a master name configured");
	ok(redis_addr_parse_sentinels(" 127.0.0.1:1 , localhost", &d, &a, err, sizeof(err)) == 0 &&
	   a.nsentinels == 2 && a.sentinel[1].port == 26379 && strcmp(a.sentinel[1].host, "localhost") == 0,
	   "a sentinel_address entry: spaces, localhost, default port");

	static const struct {
		const char *s, *why;
	} bad[] = {
		{ "redis+sentinel://127.0.0.1:26379", "needs a master name" },
		{ "rediss+sentinel://127.0.0.1:26379?sentinel_master_name=m", "TLS" },
		{ "redis+sentinel://127.0.0.1?sentinel_master_name=m&sentinel_tls_enabled=true", "TLS" },
		{ "redis+sentinel://127.0.0.1?sentinel_master_name=m&addr=sentinel!example:1",
		  "neither an IP address nor a host name" },
		{ "redis+sentinel://127.0.0.1?sentinel_master_name=m&addr=[::1]:1&addr=[::1]:2&addr=[::1]:3&addr=[::1]:4"
		  "&addr=[::1]:5&addr=[::1]:6&addr=[::1]:7&addr=[::1]:8", "more than 8 sentinels" },
		{ "redis://127.0.0.1?addr=127.0.0.1:2", "only in a redis+sentinel:// or redis+cluster:// URL" },
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(bad); i++) {
		err[0] = '\0';
		ok(redis_addr_parse(bad[i].s, NULL, &a, err, sizeof(err)) == -1 && strstr(err, bad[i].why),
		   "refused %s: %s", bad[i].s, err);
	}
	static const char *const bad_lists[] = { "", "127.0.0.1:1,", "redis://127.0.0.1:1", "host!example:1",
						 "127.0.0.1:99999" };
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(bad_lists); i++) {
		err[0] = '\0';
		ok(redis_addr_parse_sentinels(bad_lists[i], &d, &a, err, sizeof(err)) == -1 && err[0],
		   "refused sentinel list \"%s\": %s", bad_lists[i], err);
	}
	d.master_name[0] = '\0';
	ok(redis_addr_parse_sentinels("127.0.0.1:1", &d, &a, err, sizeof(err)) == -1, "no master name, no group");
}

/* ---- the topology ------------------------------------------------------------ */

static int sport[4]; /* the three sentinels, 0-ended */

static bool topology_start(void)
{
	char rof[32];
	const char *replica[] = { "--replicaof", "127.0.0.1", rof, NULL };

	if (redis_server_start(&proc[P_MASTER], 0, NULL) != 0)
		return false;
	snprintf(rof, sizeof(rof), "%d", proc[P_MASTER].port);
	if (redis_server_start(&proc[P_R1], 0, replica) != 0 || redis_server_start(&proc[P_R2], 0, replica) != 0)
		return false;
	for (int i = 0; i < 3; i++) {
		if (redis_sentinel_start(&proc[P_S1 + i], 0, "m1", proc[P_MASTER].port, 2, 1000, NULL) != 0)
			return false;
		sport[i] = proc[P_S1 + i].port;
	}
	/* ready for a failover: each sentinel knows both replicas and the
	 * two other sentinels */
	for (int i = 0; i < 3; i++) {
		bool ready = POLL(strncmp(redis_server_str(sport[i], "SENTINEL ckquorum m1"), "OK 3 usable", 11) == 0 &&
				  strstr(redis_server_str(proc[P_R1].port, "ROLE"), "connected") &&
				  strstr(redis_server_str(proc[P_R2].port, "ROLE"), "connected"), 20.0);
		if (!ready) {
			printf("# sentinel %d: %s\n", sport[i], redis_server_str(sport[i], "SENTINEL ckquorum m1"));
			return false;
		}
	}
	return true;
}

/* Waits until every sentinel has replicas for m1 that it considers good
 * (so that SENTINEL FAILOVER finds one). */
static bool replicas_known(int n)
{
	redisReply *r = redis_server_cmd(sport[0], NULL, "SENTINEL replicas m1");
	int good = 0;

	if (r && r->type == REDIS_REPLY_ARRAY)
		for (size_t i = 0; i < r->elements; i++) {
			const redisReply *e = r->element[i];
			for (size_t j = 0; e->type == REDIS_REPLY_ARRAY && j + 1 < e->elements; j += 2)
				if (strcmp(e->element[j]->str, "flags") == 0 && strcmp(e->element[j + 1]->str, "slave") == 0)
					good++;
		}
	if (r)
		freeReplyObject(r);
	return good >= n;
}

/* ---- the tests ---------------------------------------------------------------- */

static void test_find_master(void)
{
	int dead = 0;
	struct redis_server tmp;

	/* a port where nothing listens: the first sentinel listed is dead */
	if (redis_server_start(&tmp, 0, NULL) == 0) {
		dead = tmp.port;
		redis_server_stop(&tmp, true);
	}
	int ports[] = { dead, sport[0], sport[1], sport[2], 0 };
	struct redis_addr a = group("m1", ports);
	struct st s, ss;
	struct got g;
	struct rlink *l = link_to(&a, RLINK_CMD, &s);
	struct rlink *sub = link_to(&a, RLINK_SUB, &ss);

	rlink_subscribe(sub, "news", 4);
	ok(!rlink_up(l), "a new Sentinel link is not up yet");
	ok(WAIT(s.up && ss.up, 8.0), "it comes up through the second sentinel (the first is dead)");
	is_str(rlink_error(l), "", "rlink_error empty");
	is_int(link_port(l), proc[P_MASTER].port, "connected to the master");
	CMD_WAIT(l, &g, "SET", "k", "v");
	is_str(g.str, "OK", "SET works");
	CMD_WAIT(l, &g, "GET", "k");
	is_str(g.str, "v", "GET works");
	ok(WAIT(strcmp(redis_server_str(proc[P_MASTER].port, "PUBSUB NUMSUB news"), "news 1") == 0, 3.0),
	   "the subscriber is subscribed on the master");
	ok(WAIT(rlink_replicas(l) == 2, 3.0), "rlink_replicas: the sentinels' two healthy replicas (%d)",
	   rlink_replicas(l));
	CMD_WAIT(l, &g, "WAIT", "2", "2000");
	is_int(g.integer, 2, "... which WAIT finds: both have the SET");
	spin(6.0); /* one periodic check: the master did not move */
	ok(rlink_up(l) && s.downs == 0 && ss.downs == 0, "the periodic sentinel check leaves an unmoved link alone");
	rlink_free(sub);
	rlink_free(l);
}

/* Sentinels named by host name: one that does not resolve is skipped like
 * a dead one; the machine's own name (127.0.0.1) is looked up at connect
 * time. */
static void test_sentinel_names(void)
{
	struct redis_addr d = { .connect_timeout_ms = 500, .io_timeout_ms = 1000 }, a;
	char host[128], list[300], err[256];
	struct st s;
	struct got g;

	gethostname(host, sizeof(host));
	snprintf(d.master_name, sizeof(d.master_name), "m1");
	snprintf(list, sizeof(list), "nonexistent.invalid:26379,%s:%d", host, sport[0]);
	ok(redis_addr_parse_sentinels(list, &d, &a, err, sizeof(err)) == 0, "sentinels by name: %s", list);
	struct rlink *l = link_to(&a, RLINK_CMD, &s);
	ok(WAIT(s.up, 8.0), "it comes up through the sentinel named %s (the first does not resolve)", host);
	is_int(link_port(l), proc[P_MASTER].port, "connected to the master");
	CMD_WAIT(l, &g, "PING");
	is_str(g.str, "PONG", "and it answers");
	rlink_free(l);
}

static void test_unknown_master(void)
{
	int ports[] = { sport[0], sport[1], 0 };
	struct redis_addr a = group("nosuchmaster", ports);
	struct st s;
	struct got g;
	struct rlink *l = link_to(&a, RLINK_CMD, &s);

	ok(WAIT(strstr(rlink_error(l), "unknown") != NULL, 5.0), "a master name nobody knows: %s", rlink_error(l));
	is_str(rlink_error(l), "sentinel: master nosuchmaster unknown to all 2 sentinels", "rlink_error says so");
	CMD_WAIT(l, &g, "PING");
	ok(g.type == -1 && strcmp(g.err, "not connected") == 0, "requests: \"not connected\"");
	spin(1.5);
	ok(!s.up && s.ups == 0, "it stays down (and asks again after its back-off)");
	rlink_free(l);
}

static void test_auth(void)
{
	const char *extra[] = { "requirepass s3cret", "user sen on >senpw +@all", NULL };

	if (redis_sentinel_start(&proc[P_SAUTH], 0, "m2", proc[P_MASTER].port, 1, 60000, extra) != 0) {
		ok(0, "start a sentinel with a password");
		return;
	}
	int ports[] = { proc[P_SAUTH].port, 0 };
	struct redis_addr a = group("m2", ports);
	struct st s;
	struct rlink *l;

	snprintf(a.sentinel_password, sizeof(a.sentinel_password), "s3cret");
	snprintf(a.sentinel_client_name, sizeof(a.sentinel_client_name), "rotor-sentinel-test");
	l = link_to(&a, RLINK_CMD, &s);
	ok(WAIT(s.up, 5.0), "sentinel_password: up (%s)", rlink_error(l));
	is_int(link_port(l), proc[P_MASTER].port, "on the master");
	redisReply *r = redis_server_cmd(proc[P_SAUTH].port, "s3cret", "CLIENT LIST");
	ok(r && r->str && strstr(r->str, "name=rotor-sentinel-test"), "sentinel_client_name was set");
	if (r)
		freeReplyObject(r);
	rlink_free(l);

	snprintf(a.sentinel_user, sizeof(a.sentinel_user), "sen");
	snprintf(a.sentinel_password, sizeof(a.sentinel_password), "senpw");
	l = link_to(&a, RLINK_CMD, &s);
	ok(WAIT(s.up, 5.0), "sentinel_user and sentinel_password (ACL): up (%s)", rlink_error(l));
	rlink_free(l);

	a.sentinel_user[0] = '\0';
	snprintf(a.sentinel_password, sizeof(a.sentinel_password), "wrong");
	l = link_to(&a, RLINK_CMD, &s);
	ok(WAIT(strstr(rlink_error(l), "sentinel: no sentinel answered") != NULL, 5.0),
	   "a wrong sentinel password: %s", rlink_error(l));
	ok(strstr(rlink_error(l), "AUTH failed") != NULL && strstr(rlink_error(l), "wrong") == NULL,
	   "the error says AUTH failed (and not the password)");
	ok(!s.up, "and the link stays down");
	rlink_free(l);

	a.sentinel_password[0] = '\0';
	l = link_to(&a, RLINK_CMD, &s);
	ok(WAIT(strstr(rlink_error(l), "NOAUTH") != NULL, 5.0), "no sentinel password: %s", rlink_error(l));
	rlink_free(l);
	redis_server_stop(&proc[P_SAUTH], true); /* it must not take part in m1's failovers */
}

/* A sentinel names a server that is not a master: ROLE refuses it; READONLY
 * on a master demoted under the link makes it ask again; it follows the
 * sentinel's next answer. A group of its own (a single sentinel that
 * would not fail over for a minute), so that m1 is not disturbed. */
static void test_role_readonly(void)
{
	char bport[16];

	if (redis_server_start(&proc[P_A], 0, NULL) != 0 || redis_server_start(&proc[P_B], 0, NULL) != 0 ||
	    redis_sentinel_start(&proc[P_SRO], 0, "m3", proc[P_A].port, 1, 60000, NULL) != 0) {
		ok(0, "start the m3 group");
		return;
	}
	snprintf(bport, sizeof(bport), "%d", proc[P_B].port);
	int ports[] = { proc[P_SRO].port, 0 };
	struct redis_addr a = group("m3", ports);
	struct st s;
	struct got g;
	struct rlink *l = link_to(&a, RLINK_CMD, &s);

	ok(WAIT(s.up, 5.0), "m3: up on A");
	is_int(link_port(l), proc[P_A].port, "m3: on A");
	/* A becomes a replica of B behind Sentinel's back */
	ok(strcmp(redis_server_str(proc[P_A].port, "REPLICAOF 127.0.0.1 %s", bport), "OK") == 0, "A: REPLICAOF B");
	CMD_WAIT(l, &g, "SET", "k", "v");
	ok(g.type == REDIS_REPLY_ERROR && strncmp(g.str, "READONLY", 8) == 0, "a write: READONLY, to the caller");
	ok(WAIT(!rlink_up(l), 1.0), "READONLY drops the link");
	ok(WAIT(strstr(rlink_error(l), "is not a master") != NULL, 5.0),
	   "the sentinel still names A; ROLE refuses it: %s", rlink_error(l));
	ok(!s.up, "the link stays down");
	/* the sentinel learns of B */
	ok(strcmp(redis_server_str(proc[P_SRO].port, "SENTINEL REMOVE m3"), "OK") == 0 &&
	   strcmp(redis_server_str(proc[P_SRO].port, "SENTINEL MONITOR m3 127.0.0.1 %s 1", bport), "OK") == 0,
	   "the sentinel now monitors B as m3");
	ok(WAIT(s.up, 10.0), "the link follows: up (%s)", rlink_error(l));
	is_int(link_port(l), proc[P_B].port, "on B");
	CMD_WAIT(l, &g, "SET", "k", "v");
	is_str(g.str, "OK", "writes work");
	rlink_free(l);
	redis_server_stop(&proc[P_SRO], true);
	redis_server_stop(&proc[P_A], true);
	redis_server_stop(&proc[P_B], true);
}

/* The links of m1 follow a failover: command and subscriber links end up on
 * the new master, and commands work there. */
static void follow(const char *how, struct rlink *l, struct st *s, struct rlink *sub, struct st *ss, int old)
{
	int now = 0;
	struct got g;

	ok(WAIT((now = sentinel_says(sport[0], "m1")) != old && now != 0, 30.0), "%s: the sentinels name a new "
	   "master (%d -> %d)", how, old, now);
	double t0 = ev_time();
	ok(WAIT(rlink_up(l) && link_port(l) == now, 15.0), "%s: the command link is on the new master after %.1f s "
	   "(%s)", how, ev_time() - t0, rlink_error(l));
	CMD_WAIT(l, &g, "INCR", "after-failover");
	ok(g.type == REDIS_REPLY_INTEGER, "%s: a write works (%s)", how, g.type == REDIS_REPLY_ERROR ? g.str : g.err);
	ok(WAIT(strcmp(redis_server_str(now, "PUBSUB NUMSUB news"), "news 1") == 0, 15.0),
	   "%s: the subscriber is subscribed on the new master", how);
	int before = ss->messages;
	redis_server_str(now, "PUBLISH news hello");
	ok(WAIT(ss->messages > before, 3.0), "%s: and receives what is published there", how);
}

static void test_failover(void)
{
	struct st s, ss;
	struct rlink *l, *sub;
	struct redis_addr a = group("m1", sport);

	ok(POLL(replicas_known(2), 15.0), "the sentinels know two good replicas");
	l = link_to(&a, RLINK_CMD, &s);
	sub = link_to(&a, RLINK_SUB, &ss);
	rlink_subscribe(sub, "news", 4);
	ok(WAIT(s.up && ss.up, 8.0), "links up");
	int old = sentinel_says(sport[0], "m1");
	is_int(link_port(l), old, "on the master the sentinels name");

	/* a failover with the old master alive: it is demoted */
	const char *r = redis_server_str(sport[0], "SENTINEL FAILOVER m1");
	ok(strcmp(r, "OK") == 0, "SENTINEL FAILOVER m1: %s", r);
	follow("SENTINEL FAILOVER", l, &s, sub, &ss, old);

	/* the new master killed: Sentinel's own failover after
	 * down-after-milliseconds (a failover of m1 again only after
	 * 2 x failover-timeout) */
	old = sentinel_says(sport[0], "m1");
	ok(WAIT(replicas_known(2), 20.0), "the sentinels know two good replicas again");
	for (int i = 0; i < P_N; i++)
		if (proc[i].pid > 0 && proc[i].port == old) {
			redis_server_stop(&proc[i], true);
			break;
		}
	follow("SIGKILL of the master", l, &s, sub, &ss, old);
	rlink_free(sub);
	rlink_free(l);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	signal(SIGABRT, on_fatal);
	signal(SIGSEGV, on_fatal);
	signal(SIGTERM, on_fatal);
	signal(SIGINT, on_fatal);
	signal(SIGALRM, on_fatal);
	log_set_level(getenv("RLINK_LOG") ? LOG_DEBUG : LOG_ERROR);
	test_parse();
	if (!redis_server_available() || system("command -v redis-sentinel >/dev/null 2>&1") != 0) {
		printf("# SKIP redis-server or redis-sentinel is not installed\n");
		return tap_done();
	}
	alarm(240);
	loop = ev_default_loop(0);
	loop_tick(loop, 0.01);
	if (!ok(topology_start(), "a master, two replicas and three sentinels")) {
		stop_all();
		return tap_done();
	}
	test_find_master();
	test_sentinel_names();
	test_unknown_master();
	test_auth();
	test_role_readonly();
	test_failover();
	stop_all();
	return tap_done();
}
