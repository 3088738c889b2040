/*
 * redis_link.c - one connection to one Redis server on a libev loop (see
 * redis_link.h): hiredis 0.14.1's async context does the I/O and the RESP
 * parsing; this file adds what 0.14 lacks (timeouts, PING, reconnection)
 * and keeps hiredis's callbacks away from freed memory.
 *
 * Model. A link (struct rlink) lives until rlink_free. Each connection
 * attempt is a struct rconn that owns one redisAsyncContext; the link
 * points at its current rconn and the rconn back at its link. Dropping a
 * connection "detaches" it: both pointers are cleared before anything else
 * happens, so a hiredis callback that arrives later for that context (hiredis
 * runs every pending callback with a NULL reply when it frees a context, and
 * defers the free while one of its callbacks runs) finds rconn->l == NULL and
 * only releases memory. The rconn itself is freed exactly where hiredis is
 * done with the context: in the disconnect callback (connected contexts), in
 * the connect callback on failure, or right after our own redisAsyncFree of
 * a context that never connected (then hiredis calls nothing). rconn->gen is
 * the link's connection generation, for logs and asserts.
 *
 * States: DOWN (the back-off timer runs) -> LOOKUP (a host name's lookup,
 * dns.c, under connect_timeout; numeric addresses and "localhost" skip it;
 * hiredis is always given a numeric address, so it never resolves, which
 * would block) -> CONNECTING (TCP, under connect_timeout) -> HANDSHAKE
 * (AUTH, SELECT, CLIENT SETNAME, or a PING when there is nothing to say;
 * still under connect_timeout) -> UP. Any
 * error, timeout or lost connection goes back to DOWN and fails everything
 * in flight. Requests are accepted in UP only.
 *
 * Requests (struct rreq): every request has its place on one of two lists
 * of the link: inflight (sent, oldest first: the io timer looks at the head
 * only) or later (to be answered from a zero timer, never from inside the
 * call that made it). A request handed to hiredis (rreq.hiredis) is freed in
 * its hiredis callback, which comes exactly once; the link may answer it
 * earlier (timeout, drop, free) and only unlinks it then. Internal requests
 * (handshake, PING, a SUB link's SUBSCRIBE/UNSUBSCRIBE batches, whose .subs
 * counts the acknowledgements still due) share the lists and the deadline.
 *
 * User callbacks may call anything, rlink_free of this link included: every
 * path that calls out holds l->depth, and rlink_free under depth only
 * marks the link; it is destroyed when the outermost caller leaves.
 *
 * Calling redisAsyncFree is safe from our timers and from inside a reply
 * callback (hiredis defers it), never from the connect or disconnect
 * callbacks; this file never does the latter: a handshake is always sent so
 * that a link comes up from a reply callback.
 */
#include "config.h"
#include "redis_link.h"
#include "conf.h"
#include "dns.h"
#include "log.h"
#include "smap.h"
#include "util.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ev.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <hiredis/adapters/libev.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#define RLINK_BACKOFF_MIN_MS 250
#define RLINK_BACKOFF_MAX_MS 5000
#define RLINK_PING_S 1.0
#define RLINK_SUB_BATCH 512
#define RLINK_DEF_CONNECT_MS 1000
#define RLINK_DEF_IO_MS 4000
#define RLINK_SENTINEL_CHECK_S 5.0
#define RLINK_SENTINEL_BACKOFF_MAX_MS 1000

/* ---- addresses ------------------------------------------------------------ */

static void addr_defaults(struct redis_addr *a)
{
	memset(a, 0, sizeof(*a));
	a->connect_timeout_ms = RLINK_DEF_CONNECT_MS;
	a->io_timeout_ms = RLINK_DEF_IO_MS;
}

/* Percent-decodes N bytes at S into OUT (SIZE bytes, NUL-terminated).
 * -1 on a bad escape or when it does not fit. */
static int pct_decode(const char *s, size_t n, char *out, size_t size)
{
	long o;

	if (n >= size || (o = util_unescape(s, n, out, false)) < 0)
		return -1;
	out[o] = '\0';
	return 0;
}

/* Whether NAME can be a host name (or a numeric IPv4 address): labels of
 * letters, digits, '-' and '_' (as in Docker service names) separated by
 * dots, a final dot allowed. Syntax only: names are looked up at connect
 * time (dns.c), never here. */
static bool host_name_ok(const char *name)
{
	size_t n = strlen(name), label = 0;

	if (n == 0 || n > 253)
		return false;
	for (const char *p = name; *p; p++) {
		if (*p == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
			   *p == '-' || *p == '_') {
			if (++label > 63 || (label == 1 && *p == '-'))
				return false;
		} else {
			return false;
		}
	}
	return true;
}

/* "host[:port]" or "[v6][:port]", N bytes at S, into HOST (HOSTSIZE
 * bytes) and PORT (DFLT_PORT when left out); HOST is a numeric address
 * or a name (checked for syntax, not looked up). */
static int parse_hostport(const char *s, size_t n, char *hostbuf, size_t hostsize, int *portp, int dflt_port,
			  char *err, size_t errlen)
{
	const char *host = s, *port = NULL;
	size_t hlen = n, plen = 0;
	const char *colon;

	if (n > 0 && s[0] == '[') {
		const char *rb = memchr(s, ']', n);
		if (rb == NULL) {
			snprintf(err, errlen, "unclosed '[' in the IPv6 address");
			return -1;
		}
		host = s + 1;
		hlen = (size_t)(rb - host);
		if (rb + 1 < s + n) {
			if (rb[1] != ':') {
				snprintf(err, errlen, "garbage after the IPv6 address");
				return -1;
			}
			port = rb + 2;
			plen = (size_t)(s + n - port);
		}
	} else if ((colon = memchr(s, ':', n)) != NULL) {
		if (memchr(colon + 1, ':', (size_t)(s + n - colon - 1)) != NULL) {
			snprintf(err, errlen, "an IPv6 address must be written in brackets, as [::1]:6379");
			return -1;
		}
		hlen = (size_t)(colon - s);
		port = colon + 1;
		plen = (size_t)(s + n - port);
	}
	if (hlen == 0) {
		snprintf(err, errlen, "no host");
		return -1;
	}
	if (hlen >= hostsize) {
		snprintf(err, errlen, "host too long");
		return -1;
	}
	memcpy(hostbuf, host, hlen);
	hostbuf[hlen] = '\0';

	unsigned char bin[16];
	if (host != s && inet_pton(AF_INET6, hostbuf, bin) != 1) {
		snprintf(err, errlen, "\"%s\" in brackets is not an IPv6 address", hostbuf);
		return -1;
	}
	if (host == s && !host_name_ok(hostbuf)) {
		snprintf(err, errlen, "host \"%s\" is neither an IP address nor a host name", hostbuf);
		return -1;
	}
	*portp = dflt_port;
	if (port) {
		char buf[8];
		long long v;
		if (plen == 0 || plen >= sizeof(buf)) {
			snprintf(err, errlen, "bad port \"%.*s\"", (int)(plen < 16 ? plen : 16), port);
			return -1;
		}
		memcpy(buf, port, plen);
		buf[plen] = '\0';
		if (util_parse_int(buf, 1, 65535, &v) != RT_OK) {
			snprintf(err, errlen, "bad port \"%s\" (1 to 65535)", buf);
			return -1;
		}
		*portp = (int)v;
	}
	return 0;
}

/* "user[:password]" (N bytes, percent-encoded) into A. */
static int parse_userinfo(const char *s, size_t n, struct redis_addr *a, char *err, size_t errlen)
{
	const char *colon = memchr(s, ':', n);
	size_t ulen = colon ? (size_t)(colon - s) : n;
	char user[sizeof(a->user)];

	if (pct_decode(s, ulen, user, sizeof(user)) != 0) {
		snprintf(err, errlen, "bad user name (percent-encoding or length)");
		return -1;
	}
	if (user[0])
		memcpy(a->user, user, sizeof(user));
	if (colon && pct_decode(colon + 1, (size_t)(s + n - colon - 1), a->password, sizeof(a->password)) != 0) {
		snprintf(err, errlen, "bad password (percent-encoding or length)");
		return -1;
	}
	return 0;
}

static int parse_timeout(const char *name, const char *v, uint64_t *out, char *err, size_t errlen)
{
	long long ms;

	if (conf_duration_ms(v, &ms) != RT_OK || ms <= 0) {
		snprintf(err, errlen, "bad %s \"%s\" (a positive Go duration such as 500ms, 1s or 1m30s)", name, v);
		return -1;
	}
	*out = (uint64_t)ms;
	return 0;
}

/* Copies option KEY's value VAL into DST (SIZE bytes). */
static int set_opt(char *dst, size_t size, const char *key, const char *val, char *err, size_t errlen)
{
	if (strlen(val) >= size) {
		snprintf(err, errlen, "%s too long", key);
		return -1;
	}
	strcpy(dst, val);
	return 0;
}

/* Appends "host[:port]" (N bytes at S, DEFPORT when left out) to the
 * list V of *COUNT entries, at most MAX (WHAT names them in the error). */
static int add_host(const char *s, size_t n, struct redis_sentinel *v, int *count, int max, int defport,
		    const char *what, char *err, size_t errlen)
{
	if (*count == max) {
		snprintf(err, errlen, "more than %d %s in one shard", max, what);
		return -1;
	}
	if (parse_hostport(s, n, v[*count].host, sizeof(v[*count].host), &v[*count].port, defport, err, errlen) != 0)
		return -1;
	++*count;
	return 0;
}

/* Adds the sentinel "host[:port]" (N bytes at S) to A. */
static int add_sentinel(const char *s, size_t n, struct redis_addr *a, char *err, size_t errlen)
{
	return add_host(s, n, a->sentinel, &a->nsentinels, REDIS_SENTINELS_MAX, 26379, "sentinels", err, errlen);
}

/* Adds the cluster seed "host[:port]" (N bytes at S) to A; the first is
 * also A's host and port. */
static int add_seed(const char *s, size_t n, struct redis_addr *a, char *err, size_t errlen)
{
	if (add_host(s, n, a->seed, &a->nseeds, REDIS_SEEDS_MAX, 6379, "seed nodes", err, errlen) != 0)
		return -1;
	if (a->nseeds == 1) {
		strcpy(a->host, a->seed[0].host); /* 64 bytes into 256 */
		a->port = a->seed[0].port;
	}
	return 0;
}

enum url_kind { URL_PLAIN, URL_SENTINEL, URL_CLUSTER };

/* The query string (after '?', N bytes): only the options rotor serves;
 * the sentinel ones only in a redis+sentinel:// URL, addr in that and in
 * a redis+cluster:// URL (KIND). */
static int parse_query(const char *s, size_t n, enum url_kind kind, struct redis_addr *a, char *err,
		       size_t errlen)
{
	bool sentinel = kind == URL_SENTINEL;

	const char *end = s + n;

	while (s < end) {
		const char *amp = memchr(s, '&', (size_t)(end - s));
		const char *e = amp ? amp : end;
		const char *eq = memchr(s, '=', (size_t)(e - s));
		char key[64], val[300];
		size_t klen = eq ? (size_t)(eq - s) : (size_t)(e - s);

		if (klen == 0 && e == s) {
			s = e + 1;
			continue;
		}
		if (klen >= sizeof(key)) {
			snprintf(err, errlen, "unknown option \"%.*s…\"", 32, s);
			return -1;
		}
		memcpy(key, s, klen);
		key[klen] = '\0';
		if (pct_decode(eq ? eq + 1 : e, eq ? (size_t)(e - eq - 1) : 0, val, sizeof(val)) != 0) {
			snprintf(err, errlen, "bad value of option %s", key);
			return -1;
		}
		if (strcmp(key, "connect_timeout") == 0) {
			if (parse_timeout(key, val, &a->connect_timeout_ms, err, errlen) != 0)
				return -1;
		} else if (strcmp(key, "io_timeout") == 0) {
			if (parse_timeout(key, val, &a->io_timeout_ms, err, errlen) != 0)
				return -1;
		} else if (strcmp(key, "force_resp2") == 0) {
			/* rotor always speaks RESP2 (hiredis 0.14 knows no RESP3) */
		} else if (strcmp(key, "tls_enabled") == 0 || strcmp(key, "sentinel_tls_enabled") == 0) {
			snprintf(err, errlen, "option %s: TLS to Redis is not supported (hiredis 0.14 has no TLS)", key);
			return -1;
		} else if (kind == URL_PLAIN && strcmp(key, "addr") == 0) {
			snprintf(err, errlen, "option addr: only in a redis+sentinel:// or redis+cluster:// URL");
			return -1;
		} else if (!sentinel && strncmp(key, "sentinel_", 9) == 0) {
			snprintf(err, errlen, "option %s: only in a redis+sentinel:// URL",
				 key);
			return -1;
		} else if (strcmp(key, "addr") == 0 && kind == URL_CLUSTER) {
			if (add_seed(val, strlen(val), a, err, errlen) != 0)
				return -1;
		} else if (strcmp(key, "addr") == 0) {
			if (add_sentinel(val, strlen(val), a, err, errlen) != 0)
				return -1;
		} else if (strcmp(key, "sentinel_master_name") == 0) {
			if (set_opt(a->master_name, sizeof(a->master_name), key, val, err, errlen) != 0)
				return -1;
		} else if (strcmp(key, "sentinel_user") == 0) {
			if (set_opt(a->sentinel_user, sizeof(a->sentinel_user), key, val, err, errlen) != 0)
				return -1;
		} else if (strcmp(key, "sentinel_password") == 0) {
			if (set_opt(a->sentinel_password, sizeof(a->sentinel_password), key, val, err, errlen) != 0)
				return -1;
		} else if (strcmp(key, "replica_client_enabled") == 0) {
			snprintf(err, errlen, "option replica_client_enabled: replica clients are not supported");
			return -1;
		} else {
			snprintf(err, errlen, "unknown option \"%s\"", key);
			return -1;
		}
		s = e + (amp != NULL);
	}
	return 0;
}

int redis_addr_parse(const char *s, const struct redis_addr *defaults, struct redis_addr *out, char *err,
		     size_t errlen)
{
	struct redis_addr a;
	const char *sep = strstr(s, "://");

	if (defaults)
		a = *defaults;
	else
		addr_defaults(&a);
	a.host[0] = a.path[0] = '\0';
	a.port = 0;
	a.nsentinels = 0;
	a.cluster = false;
	a.nseeds = 0;
	if (errlen)
		err[0] = '\0';

	if (sep == NULL) {
		if (strchr(s, '@') || strchr(s, '/') || strchr(s, '?')) {
			snprintf(err, errlen, "\"host:port\" takes no user, path or options: use redis://");
			return -1;
		}
		if (parse_hostport(s, strlen(s), a.host, sizeof(a.host), &a.port, 6379, err, errlen) != 0)
			return -1;
		a.master_name[0] = '\0';
		*out = a;
		return 0;
	}

	size_t slen = (size_t)(sep - s);
	bool unix_sock = false, sentinel = false, cluster = false;
#define SCHEME(lit) (slen == sizeof(lit) - 1 && strncasecmp(s, lit, slen) == 0)
	if (SCHEME("redis") || SCHEME("tcp")) {
		unix_sock = false;
	} else if (SCHEME("unix")) {
		unix_sock = true;
	} else if (SCHEME("rediss") || SCHEME("rediss+sentinel") || SCHEME("rediss+cluster")) {
		snprintf(err, errlen, "%.*s://: TLS to Redis is not supported (hiredis 0.14 has no TLS)", (int)slen, s);
		return -1;
	} else if (SCHEME("redis+sentinel")) {
		sentinel = true;
	} else if (SCHEME("redis+cluster")) {
		cluster = true;
	} else {
		snprintf(err, errlen, "unknown scheme \"%.*s://\" (redis://, tcp://, unix:// or host:port)",
			 (int)(slen < 32 ? slen : 32), s);
		return -1;
	}
#undef SCHEME

	const char *p = sep + 3;
	const char *q = strchr(p, '?');
	const char *end = q ? q : p + strlen(p);

	if (unix_sock) {
		/* unix://[user:pass@]/path: the user part ends at the last '@'
		 * before the path's first '/'. */
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *at = NULL;
		for (const char *c = p; c < (slash ? slash : end); c++)
			if (*c == '@')
				at = c;
		if (at) {
			if (parse_userinfo(p, (size_t)(at - p), &a, err, errlen) != 0)
				return -1;
			p = at + 1;
		}
		if (p >= end || *p != '/') {
			snprintf(err, errlen, "unix:// needs an absolute socket path, as unix:///run/redis.sock");
			return -1;
		}
		if ((size_t)(end - p) >= sizeof(a.path)) {
			snprintf(err, errlen, "socket path longer than %zu bytes", sizeof(a.path) - 1);
			return -1;
		}
		memcpy(a.path, p, (size_t)(end - p));
		a.path[end - p] = '\0';
	} else {
		const char *slash = memchr(p, '/', (size_t)(end - p));
		const char *hend = slash ? slash : end;
		const char *at = NULL;
		for (const char *c = p; c < hend; c++)
			if (*c == '@')
				at = c;
		if (at) {
			if (parse_userinfo(p, (size_t)(at - p), &a, err, errlen) != 0)
				return -1;
			p = at + 1;
		}
		if (sentinel) {
			if (add_sentinel(p, (size_t)(hend - p), &a, err, errlen) != 0)
				return -1;
		} else if (cluster) {
			if (add_seed(p, (size_t)(hend - p), &a, err, errlen) != 0)
				return -1;
		} else if (parse_hostport(p, (size_t)(hend - p), a.host, sizeof(a.host), &a.port, 6379, err,
					  errlen) != 0) {
			return -1;
		}
		if (slash && slash + 1 < end) {
			char buf[16];
			long long db;
			size_t dlen = (size_t)(end - slash - 1);
			if (dlen >= sizeof(buf)) {
				snprintf(err, errlen, "bad db \"%.*s\"", 16, slash + 1);
				return -1;
			}
			memcpy(buf, slash + 1, dlen);
			buf[dlen] = '\0';
			if (util_parse_int(buf, 0, 1000000, &db) != RT_OK) {
				snprintf(err, errlen, "bad db \"%s\" (a number, as redis://127.0.0.1:6379/2)", buf);
				return -1;
			}
			a.db = (int)db;
		}
	}
	if (!sentinel)
		a.master_name[0] = '\0';
	if (q && parse_query(q + 1, strlen(q + 1), sentinel ? URL_SENTINEL : cluster ? URL_CLUSTER : URL_PLAIN, &a,
			     err, errlen) != 0)
		return -1;
	if (cluster && a.db != 0) {
		snprintf(err, errlen, "redis+cluster://: a Redis Cluster has database 0 only");
		return -1;
	}
	a.cluster = cluster;
	if (sentinel && a.master_name[0] == '\0') {
		snprintf(err, errlen, "redis+sentinel:// needs a master name (option sentinel_master_name, or "
			 "the config's sentinel_master_name)");
		return -1;
	}
	*out = a;
	return 0;
}

/* Adds each entry of the list S, "host:port,host:port" (spaces around
 * entries allowed), to A with ADD; MANY and ONE name the entries in
 * errors. */
static int parse_hosts(const char *s, const char *many, const char *one,
		       int (*add)(const char *, size_t, struct redis_addr *, char *, size_t), struct redis_addr *a,
		       char *err, size_t errlen)
{
	if (strpbrk(s, "/@?")) {
		snprintf(err, errlen, "\"%s\": a list of %s \"host:port,host:port\" (no URL)", s, many);
		return -1;
	}
	while (*s) {
		const char *comma = strchr(s, ',');
		size_t n = comma ? (size_t)(comma - s) : strlen(s);
		while (n > 0 && *s == ' ')
			s++, n--;
		while (n > 0 && s[n - 1] == ' ')
			n--;
		if (n == 0 || (comma && comma[1] == '\0')) {
			snprintf(err, errlen, "an empty %s address", one);
			return -1;
		}
		if (add(s, n, a, err, errlen) != 0)
			return -1;
		s = comma ? comma + 1 : s + strlen(s);
	}
	return 0;
}

int redis_addr_parse_sentinels(const char *s, const struct redis_addr *defaults, struct redis_addr *out,
			       char *err, size_t errlen)
{
	struct redis_addr a = *defaults;

	a.host[0] = a.path[0] = '\0';
	a.port = 0;
	a.nsentinels = 0;
	if (errlen)
		err[0] = '\0';
	if (a.master_name[0] == '\0') {
		snprintf(err, errlen, "no master name");
		return -1;
	}
	if (parse_hosts(s, "sentinels", "sentinel", add_sentinel, &a, err, errlen) != 0)
		return -1;
	if (a.nsentinels == 0) {
		snprintf(err, errlen, "no sentinel address");
		return -1;
	}
	*out = a;
	return 0;
}

int redis_addr_parse_cluster(const char *s, const struct redis_addr *defaults, struct redis_addr *out,
			     char *err, size_t errlen)
{
	struct redis_addr a = *defaults;

	a.host[0] = a.path[0] = a.master_name[0] = '\0';
	a.port = 0;
	a.nsentinels = a.nseeds = 0;
	a.cluster = true;
	if (errlen)
		err[0] = '\0';
	if (a.db != 0) {
		snprintf(err, errlen, "a Redis Cluster has database 0 only (engine.redis.db is %d)", a.db);
		return -1;
	}
	if (parse_hosts(s, "cluster nodes", "cluster node", add_seed, &a, err, errlen) != 0)
		return -1;
	if (a.nseeds == 0) {
		snprintf(err, errlen, "no cluster node address");
		return -1;
	}
	*out = a;
	return 0;
}

const char *redis_addr_str(const struct redis_addr *a)
{
	static char bufs[4][300];
	static unsigned next;
	char *b = bufs[next++ % 4];

	if (a->master_name[0]) {
		int n = snprintf(b, sizeof(bufs[0]), "sentinel master %.100s (", a->master_name);
		for (int i = 0; i < a->nsentinels && n > 0 && (size_t)n < sizeof(bufs[0]); i++)
			n += snprintf(b + n, sizeof(bufs[0]) - (size_t)n, strchr(a->sentinel[i].host, ':') ?
				      "%s[%s]:%d" : "%s%s:%d", i ? "," : "", a->sentinel[i].host, a->sentinel[i].port);
		if (n > 0 && (size_t)n < sizeof(bufs[0]) - 1)
			strcat(b, ")");
	} else if (a->cluster) {
		int n = snprintf(b, sizeof(bufs[0]), "cluster (");
		for (int i = 0; i < a->nseeds && n > 0 && (size_t)n < sizeof(bufs[0]); i++)
			n += snprintf(b + n, sizeof(bufs[0]) - (size_t)n, strchr(a->seed[i].host, ':') ?
				      "%s[%s]:%d" : "%s%s:%d", i ? "," : "", a->seed[i].host, a->seed[i].port);
		if (n > 0 && (size_t)n < sizeof(bufs[0]) - 1)
			strcat(b, ")");
	} else if (a->path[0])
		snprintf(b, sizeof(bufs[0]), "%s", a->path);
	else if (strchr(a->host, ':'))
		snprintf(b, sizeof(bufs[0]), "[%s]:%d", a->host, a->port);
	else
		snprintf(b, sizeof(bufs[0]), "%s:%d", a->host, a->port);
	return b;
}

/* ---- links ---------------------------------------------------------------- */

enum rlink_state { ST_DOWN, ST_RESOLVING, ST_LOOKUP, ST_CONNECTING, ST_HANDSHAKE, ST_UP };

struct rreq {
	TAILQ_ENTRY(rreq) q;
	rlink_reply_fn *cb;      /* NULL: internal, nobody to answer */
	void *arg;
	const char *err;         /* on the later list: what to answer */
	ev_tstamp sent;
	bool queued;             /* on l->inflight or l->later */
	bool hiredis;            /* hiredis will call on_reply for it once */
	bool retried;            /* the EVAL after a NOSCRIPT was sent */
	uint32_t subs;           /* SUB batch: acknowledgements still due */
	struct rscript *script;  /* rlink_eval: */
	char *cmd;               /* the EVALSHA command as sent */
	size_t cmdlen, tail;     /* its length; where its NKEYS argument starts */
};

TAILQ_HEAD(rreq_list, rreq);

struct rconn {
	struct rlink *l;         /* NULL once detached */
	redisAsyncContext *ac;
	uint64_t gen;
};

struct rlink {
	struct ev_loop *loop;
	struct redis_addr addr;
	enum rlink_kind kind;
	rlink_state_fn *on_state;
	rlink_message_fn *on_message;
	rlink_subscribed_fn *on_subscribed;
	void *arg;

	enum rlink_state st;
	struct rconn *conn;
	struct dns_req *dns;     /* ST_LOOKUP: the host name's lookup */
	unsigned addr_turn;      /* which of a name's addresses the next attempt takes */
	uint64_t gen;
	unsigned backoff_ms;
	int hs_left, hs_total;
	const char *hs_names[5];

	ev_timer conn_w;         /* DOWN: the back-off; CONNECTING, HANDSHAKE: connect_timeout */
	ev_timer io_w;           /* the oldest request's deadline; idle PING */
	ev_timer later_w;        /* answers l->later */
	ev_tstamp last_rx;

	struct rreq_list inflight, later;
	struct smap wanted;      /* SUB: channel -> 1 */
	struct smap loaded;      /* CMD: scripts sent as EVAL on connection GEN -> GEN */

	int depth;               /* calls out in progress */
	bool freeing;
	char err[256];           /* why not up */
	char logged[256];        /* the last error logged, so a retry loop logs once */

	/* Sentinel (addr.master_name set; see "Sentinel" below): */
	struct rlink *sen;       /* a command link to addr.sentinel[sen_idx] */
	struct rlink *owner;     /* on such a sentinel link: the link it serves */
	int sen_idx;
	int sen_tried, sen_unknown; /* this round: sentinels given up on, of which said "unknown master" */
	bool sen_query;          /* a SENTINEL get-master-addr-by-name in flight on sen */
	int sen_replicas;        /* healthy replicas of the master, as a sentinel last said; -1: unknown */
	bool sen_said_unknown;   /* the current sentinel does not know the master */
	char sen_why[256];       /* why the current sentinel failed us, "" if it did not */
	struct redis_addr master; /* where the master was said to be; host "" before any answer */
	ev_timer check_w;        /* asks the sentinel again every RLINK_SENTINEL_CHECK_S */

	/* Cluster (addr.cluster set; see "Cluster" below): */
	struct rlink *clu;       /* on a node link: the cluster link it serves */
	int seed_idx;            /* a cluster SUB link: the seed of the next attempt */
	bool detected;           /* the handshake's INFO said cluster_enabled:1 */
	bool mode_known;         /* plain or cluster: known since the link was first up */
	struct clu_node *nodes;  /* CLU_NODES_MAX, in use: nnodes */
	int nnodes;
	uint16_t *slots;         /* CLU_SLOTS entries: master's node index + 1; 0: none */
	bool map_known, refreshing, refresh_wanted;
	int refresh_node;        /* where the CLUSTER SLOTS in flight went */
	unsigned rr;
	ev_timer refresh_w;
};

#define SENTINEL(l) ((l)->addr.master_name[0] != '\0')
#define CLUSTER(l) ((l)->addr.cluster)

/* For log lines: which of the links to one server. */
#define KIND(l) ((l)->owner ? " (sentinel)" : (l)->clu ? " (cluster node)" : \
		 (l)->kind == RLINK_SUB ? " (pub/sub)" : "")

/* A plain server's command link asks whether it is a cluster node. */
#define DETECTS(l) ((l)->kind == RLINK_CMD && !(l)->owner && !(l)->clu && !SENTINEL(l) && !CLUSTER(l) && \
		    (l)->addr.path[0] == '\0')

static void connect_start(struct rlink *l);
static void clu_start(struct rlink *l);
static void clu_stop(struct rlink *l);
static void clu_cmd(struct rlink *l, struct rscript *s, int nkeys, int key, int argc, const char *const *argv,
		    const size_t *lens, rlink_reply_fn *cb, void *arg);
static void drop(struct rlink *l, const char *why, const char *reqerr, bool ac_dying);
static void sen_fail(struct rlink *l, const char *why, bool unknown);

static void link_enter(struct rlink *l)
{
	l->depth++;
}

static void link_destroy(struct rlink *l)
{
	smap_clear(&l->wanted);
	smap_clear(&l->loaded);
	free(l->nodes);
	free(l->slots);
	free(l);
}

/* False when L was destroyed. */
static bool link_leave(struct rlink *l)
{
	assert(l->depth > 0);
	if (--l->depth == 0 && l->freeing) {
		link_destroy(l);
		return false;
	}
	return true;
}

static struct rreq *req_new(rlink_reply_fn *cb, void *arg)
{
	struct rreq *q = xcalloc(1, sizeof(*q));
	q->cb = cb;
	q->arg = arg;
	return q;
}

static void req_free(struct rreq *q)
{
	free(q->cmd);
	free(q);
}

/* Takes Q off the list LIST it is on. */
static void req_unlink(struct rreq_list *list, struct rreq *q)
{
	TAILQ_REMOVE(list, q, q);
	q->queued = false;
}

/* Frees Q once it is on no list and hiredis does not hold it. */
static void req_release(struct rreq *q)
{
	if (!q->hiredis && !q->queued)
		req_free(q);
}

/* Answers every request on L's inflight list with ERR (user callbacks run;
 * L stays allocated: callers hold depth). */
static void fail_inflight(struct rlink *l, const char *err)
{
	struct rreq *q;

	while ((q = TAILQ_FIRST(&l->inflight)) != NULL) {
		req_unlink(&l->inflight, q);
		if (q->cb)
			q->cb(q->arg, NULL, err);
		req_release(q);
	}
}

static void later_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rlink *l = w->data;
	struct rreq_list now = TAILQ_HEAD_INITIALIZER(now);
	struct rreq *q;

	TAILQ_CONCAT(&now, &l->later, q);
	link_enter(l);
	while ((q = TAILQ_FIRST(&now)) != NULL) {
		req_unlink(&now, q);
		q->cb(q->arg, NULL, q->err);
		req_free(q);
	}
	link_leave(l);
}

/* Answers CB with ERR from the loop, soon. */
static void later_push(struct rlink *l, rlink_reply_fn *cb, void *arg, const char *err)
{
	struct rreq *q = req_new(cb, arg);

	q->err = err;
	q->queued = true;
	TAILQ_INSERT_TAIL(&l->later, q, q);
	if (!ev_is_active(&l->later_w)) {
		ev_timer_set(&l->later_w, 0., 0.);
		ev_timer_start(l->loop, &l->later_w);
	}
}

/* Records WHY as the link's error and logs it unless it was the last
 * thing logged. On a Sentinel link, an error of the master's connection
 * says which master it was. */
static void note_error(struct rlink *l, const char *why)
{
	if (SENTINEL(l) && strncmp(why, "sentinel:", 9) != 0 && l->master.host[0])
		snprintf(l->err, sizeof(l->err), "master %.100s at %s: %.100s", l->addr.master_name,
			 redis_addr_str(&l->master), why);
	else
		snprintf(l->err, sizeof(l->err), "%s", why);
	if (strcmp(l->logged, l->err) != 0) {
		log_warn("redis %s%s: %s", redis_addr_str(&l->addr), KIND(l), l->err);
		snprintf(l->logged, sizeof(l->logged), "%s", l->err);
	}
}

/* Arms the back-off timer for the next attempt: 250 ms doubling to 5 s
 * (1 s on a Sentinel link: the master it failed to reach is replaced once
 * the sentinels finish a failover, and the link should learn it soon),
 * plus up to a fifth more at random so that many links spread out. */
static void schedule_retry(struct rlink *l)
{
	uint32_t r = 0;
	double ms = l->backoff_ms;
	unsigned max = SENTINEL(l) ? RLINK_SENTINEL_BACKOFF_MAX_MS : RLINK_BACKOFF_MAX_MS;

	util_random(&r, sizeof(r));
	ms += ms * 0.2 * (r / 4294967296.0);
	l->backoff_ms = l->backoff_ms * 2 > max ? max : l->backoff_ms * 2;
	ev_timer_stop(l->loop, &l->conn_w);
	ev_timer_set(&l->conn_w, ms / 1000., 0.);
	ev_timer_start(l->loop, &l->conn_w);
	if (l->owner)
		sen_fail(l->owner, l->err, false);
}

/* (Re)arms the io timer for the oldest request's deadline and, on an UP
 * command link, for the next idle PING; stops it when there is neither. */
static void io_arm(struct rlink *l)
{
	struct rreq *q = TAILQ_FIRST(&l->inflight);
	bool ping = l->kind == RLINK_CMD && l->st == ST_UP;
	ev_tstamp t = RLINK_PING_S;

	ev_timer_stop(l->loop, &l->io_w);
	if (q) {
		ev_tstamp due = q->sent + l->addr.io_timeout_ms / 1000. - ev_now(l->loop);
		if (!ping || due < t)
			t = due;
	} else if (!ping) {
		return;
	}
	ev_timer_set(&l->io_w, t > 0 ? t : 0., 0.);
	ev_timer_start(l->loop, &l->io_w);
}

/* After a request was added: a deadline later than any armed one needs no
 * re-arming, the timer looks again when it fires. */
static void io_kick(struct rlink *l)
{
	if (!ev_is_active(&l->io_w))
		io_arm(l);
}

static void inflight_push(struct rlink *l, struct rreq *q)
{
	q->sent = ev_now(l->loop);
	q->queued = true;
	TAILQ_INSERT_TAIL(&l->inflight, q, q);
	io_kick(l);
}

/* ---- replies ---------------------------------------------------------------- */

/* An error reply that says this server is the wrong one to talk to now. */
static bool error_means_reconnect(const redisReply *r)
{
	return r && r->type == REDIS_REPLY_ERROR && r->str &&
	       (strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "LOADING", 7) == 0 ||
		strncmp(r->str, "MASTERDOWN", 10) == 0);
}

static bool resend_as_eval(struct rlink *l, struct rreq *q);

/* The hiredis callback of every request. */
static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rreq *q = privdata;
	struct rconn *c = ac->data;
	struct rlink *l = c->l;
	redisReply *r = reply;

	if (!q->queued) {         /* answered already, or detached */
		req_free(q);
		return;
	}
	assert(l != NULL && l->conn == c && c->gen == l->gen);
	link_enter(l);
	if (r == NULL) {
		/* hiredis is tearing the context down after an error: the
		 * first such callback drops the link, which answers the rest */
		drop(l, ac->c.errstr[0] ? ac->c.errstr : "connection lost", "connection lost", true);
		req_free(q);
		link_leave(l);
		return;
	}
	l->last_rx = ev_now(l->loop);
	if (q->script && !q->retried && r->type == REDIS_REPLY_ERROR && r->str &&
	    strncmp(r->str, "NOSCRIPT", 8) == 0 && resend_as_eval(l, q)) {
		link_leave(l);
		return;
	}
	req_unlink(&l->inflight, q);
	if (q->cb)
		q->cb(q->arg, r, NULL);
	if (!l->freeing && l->conn == c && error_means_reconnect(r)) {
		char why[200];
		snprintf(why, sizeof(why), "the server answered %.150s", r->str);
		drop(l, why, "connection lost", false);
	}
	req_free(q);
	link_leave(l);
}

/* ---- connecting --------------------------------------------------------------- */

static void link_up(struct rlink *l);

/* The handshake's replies, in the order sent. */
static void hs_reply(void *arg, redisReply *r, const char *err)
{
	struct rlink *l = arg;

	if (err)
		return; /* the link is being dropped */
	const char *name = l->hs_names[l->hs_total - l->hs_left];
	if (strcmp(name, "INFO") == 0) {
		/* an error (an ACL without INFO): taken as a plain server */
		l->detected = r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_enabled:1") != NULL;
		if (--l->hs_left == 0)
			link_up(l);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		char why[300];
		snprintf(why, sizeof(why), "%s failed: %.200s", name, r->str ? r->str : "");
		drop(l, why, "connection lost", false);
		return;
	}
	if (strcmp(name, "ROLE") == 0 && !(r->type == REDIS_REPLY_ARRAY && r->elements > 0 &&
					   r->element[0]->type == REDIS_REPLY_STRING &&
					   strcmp(r->element[0]->str, "master") == 0)) {
		char why[300];
		snprintf(why, sizeof(why), "sentinel: %s, named master %.100s, is not a master (ROLE %.20s)",
			 redis_addr_str(&l->master), l->addr.master_name,
			 r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0]->str ?
			 r->element[0]->str : "?");
		drop(l, why, "connection lost", false);
		return;
	}
	if (--l->hs_left == 0)
		link_up(l);
}

static void hs_send(struct rlink *l, const char *name, int argc, const char **argv)
{
	struct rreq *q = req_new(hs_reply, l);

	l->hs_names[l->hs_total++] = name;
	l->hs_left++;
	if (redisAsyncCommandArgv(l->conn->ac, on_reply, q, argc, argv, NULL) != REDIS_OK) {
		/* cannot happen on a fresh context; the connect timeout cleans up */
		log_error("redis %s%s: could not queue %s", redis_addr_str(&l->addr), KIND(l), name);
		req_free(q);
		return;
	}
	q->hiredis = true;
	inflight_push(l, q);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct rconn *c = ac->data;
	struct rlink *l = c->l;

	if (l == NULL) {
		if (status != REDIS_OK)
			free(c);
		return;
	}
	assert(l->conn == c && l->st == ST_CONNECTING);
	if (status != REDIS_OK) {
		/* hiredis frees the context when this returns, and calls no
		 * disconnect callback: nothing to answer, no user callback */
		l->conn = NULL;
		free(c);
		l->st = ST_DOWN;
		note_error(l, ac->c.errstr[0] ? ac->c.errstr : "connect failed");
		schedule_retry(l);
		return;
	}
	l->st = ST_HANDSHAKE;
	l->hs_left = l->hs_total = 0;
	if (l->addr.password[0]) {
		const char *av[] = { "AUTH", l->addr.user, l->addr.password };
		if (l->addr.user[0])
			hs_send(l, "AUTH", 3, av);
		else
			hs_send(l, "AUTH", 2, (const char *[]){ "AUTH", l->addr.password });
	}
	if (l->addr.db) {
		char db[16];
		snprintf(db, sizeof(db), "%d", l->addr.db);
		hs_send(l, "SELECT", 2, (const char *[]){ "SELECT", db });
	}
	if (l->addr.client_name[0])
		hs_send(l, "CLIENT SETNAME", 3, (const char *[]){ "CLIENT", "SETNAME", l->addr.client_name });
	if (SENTINEL(l)) /* the sentinel's answer may be stale: a demoted master is a replica now */
		hs_send(l, "ROLE", 1, (const char *[]){ "ROLE" });
	if (DETECTS(l)) /* a cluster node given as a plain address (§2.2) */
		hs_send(l, "INFO", 2, (const char *[]){ "INFO", "cluster" });
	if (l->hs_total == 0)
		hs_send(l, "PING", 1, (const char *[]){ "PING" });
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	struct rconn *c = ac->data;
	struct rlink *l = c->l;

	if (l) {
		link_enter(l);
		drop(l, ac->c.errstr[0] ? ac->c.errstr : "the server closed the connection", "connection lost",
		     true);
		link_leave(l);
	}
	free(c);
}

static void resolve_start(struct rlink *l);

/* Opens hiredis's connection to HOST (numeric: hiredis never looks a name
 * up, which would block) at PORT, or to A's socket path. */
static void connect_hiredis(struct rlink *l, const struct redis_addr *a, const char *host, int port)
{
	redisAsyncContext *ac;

	if (a->path[0])
		ac = redisAsyncConnectUnix(a->path);
	else
		ac = redisAsyncConnect(host, port);
	if (ac == NULL) {
		note_error(l, "out of memory");
		schedule_retry(l);
		return;
	}
	if (ac->err) {
		note_error(l, ac->c.errstr[0] ? ac->c.errstr : "connect failed");
		redisAsyncFree(ac); /* never connected: frees at once, calls nothing */
		schedule_retry(l);
		return;
	}
	struct rconn *c = xcalloc(1, sizeof(*c));
	c->l = l;
	c->ac = ac;
	c->gen = ++l->gen;
	ac->data = c;
	l->conn = c;
	l->st = ST_CONNECTING;
	redisLibevAttach(l->loop, ac);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	ev_timer_stop(l->loop, &l->conn_w);
	ev_timer_set(&l->conn_w, a->connect_timeout_ms / 1000., 0.);
	ev_timer_start(l->loop, &l->conn_w);
}

/* The server's host and port (for a Sentinel link: where the sentinel
 * said the master is; for a cluster SUB link: the next seed). */
static const struct redis_addr *server_of(struct rlink *l, const char **host, int *port)
{
	const struct redis_addr *a = SENTINEL(l) ? &l->master : &l->addr;

	*host = a->host;
	*port = a->port;
	if (CLUSTER(l)) { /* a SUB link: any node hears every PUBLISH */
		const struct redis_sentinel *x = &a->seed[l->seed_idx % a->nseeds];
		*host = x->host;
		*port = x->port;
	}
	return a;
}

/* Connects to the numeric address R gave for the server: a name's
 * addresses are taken in turn, one per attempt. */
static void connect_resolved(struct rlink *l, const struct dns_result *r)
{
	const char *host;
	int port;
	const struct redis_addr *a = server_of(l, &host, &port);
	const struct sockaddr *sa = (const struct sockaddr *)&r->addr[l->addr_turn++ % r->n].sa;
	char ip[INET6_ADDRSTRLEN];

	if (CLUSTER(l))
		l->seed_idx++;
	if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, ip, sizeof(ip));
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, ip, sizeof(ip));
	connect_hiredis(l, a, ip, port);
}

static void on_lookup(void *arg, const struct dns_result *r)
{
	struct rlink *l = arg;
	const char *host;
	int port;
	char why[sizeof(l->err)];

	l->dns = NULL;
	assert(l->st == ST_LOOKUP);
	l->st = ST_DOWN;
	if (r->err != 0) {
		server_of(l, &host, &port);
		if (CLUSTER(l))
			l->seed_idx++;
		snprintf(why, sizeof(why), "cannot resolve %.200s: %s", host, dns_strerror(r->err));
		note_error(l, why);
		schedule_retry(l);
		return;
	}
	link_enter(l);
	connect_resolved(l, r);
	link_leave(l);
}

/* Opens a connection to the server: at once to a numeric address (or
 * "localhost"), after a lookup (under connect_timeout) to a name. */
static void connect_server(struct rlink *l)
{
	const char *host;
	int port;
	const struct redis_addr *a = server_of(l, &host, &port);
	struct dns_result r;

	if (a->path[0]) {
		connect_hiredis(l, a, NULL, 0);
	} else if (dns_numeric(host, port, &r) == 0) {
		connect_resolved(l, &r);
	} else {
		l->st = ST_LOOKUP;
		ev_timer_stop(l->loop, &l->conn_w);
		l->dns = dns_lookup(l->loop, host, port, a->connect_timeout_ms, on_lookup, l);
	}
}

/* The next connection attempt: a Sentinel link asks where the master is
 * first. */
static void connect_start(struct rlink *l)
{
	if (SENTINEL(l))
		resolve_start(l);
	else
		connect_server(l);
}

/* Detaches L's connection and answers what was in flight with REQERR. The
 * context is freed here unless AC_DYING (hiredis is freeing it already).
 * L must be held (depth). */
static void detach(struct rlink *l, const char *reqerr, bool ac_dying)
{
	struct rconn *c = l->conn;

	l->st = ST_DOWN;
	ev_timer_stop(l->loop, &l->io_w);
	ev_timer_stop(l->loop, &l->conn_w);
	dns_cancel(l->dns);
	l->dns = NULL;
	if (c) {
		c->l = NULL;
		l->conn = NULL;
	}
	fail_inflight(l, reqerr);
	if (c && !ac_dying) {
		redisAsyncContext *ac = c->ac;
		bool connected = (ac->c.flags & REDIS_CONNECTED) != 0;
		/* connected: the disconnect callback frees C (now, or after the
		 * hiredis callback we are in); else hiredis calls nothing */
		redisAsyncFree(ac);
		if (!connected)
			free(c);
	}
}

/* The connection failed or was found useless: drop it, answer what was in
 * flight with REQERR, retry after the back-off. */
static void drop(struct rlink *l, const char *why, const char *reqerr, bool ac_dying)
{
	bool was_up = l->st == ST_UP;
	char reason[sizeof(l->err)];

	snprintf(reason, sizeof(reason), "%s", why); /* WHY may die with the context or a callback */
	link_enter(l);
	detach(l, reqerr, ac_dying);
	if (!l->freeing) {
		note_error(l, reason);
		schedule_retry(l);
		if (was_up && l->on_state)
			l->on_state(l->arg, false);
	}
	link_leave(l);
}

static void sentinel_next(struct rlink *l);

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rlink *l = w->data;

	if (l->st == ST_DOWN) {
		connect_start(l);
		return;
	}
	if (l->st == ST_RESOLVING) {
		sentinel_next(l);
		return;
	}
	char why[96];
	snprintf(why, sizeof(why), "%s in %llu ms",
		 l->st == ST_CONNECTING ? "could not connect" : "no answer to the handshake",
		 (unsigned long long)l->addr.connect_timeout_ms);
	drop(l, why, "connection lost", false);
}

static void send_ping(struct rlink *l)
{
	struct rreq *q = req_new(NULL, NULL);

	if (redisAsyncCommand(l->conn->ac, on_reply, q, "PING") != REDIS_OK) {
		req_free(q);
		return;
	}
	q->hiredis = true;
	inflight_push(l, q);
}

static void io_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rlink *l = w->data;
	struct rreq *q = TAILQ_FIRST(&l->inflight);
	ev_tstamp now = ev_now(loop);

	if (l->conn == NULL)
		return;
	if (q && now - q->sent >= l->addr.io_timeout_ms / 1000. - 1e-3) {
		char why[96];
		snprintf(why, sizeof(why), "timeout: no reply in %llu ms", (unsigned long long)l->addr.io_timeout_ms);
		drop(l, why, "timeout", false);
		return;
	}
	if (q == NULL && l->kind == RLINK_CMD && l->st == ST_UP && now - l->last_rx >= RLINK_PING_S - 0.05)
		send_ping(l);
	io_arm(l);
}

/* ---- subscriptions ------------------------------------------------------------ */

struct sub_batch {
	struct rlink *l;
	const char *cmd;
	int n;
	const char *argv[RLINK_SUB_BATCH + 1];
	size_t lens[RLINK_SUB_BATCH + 1];
};

static void on_sub(redisAsyncContext *ac, void *reply, void *privdata);

/* Sends (UN)SUBSCRIBE ARGV[0] of the ARGC - 1 channels after it, and puts
 * on the inflight list the acknowledgements due. */
static void sub_cmd(struct rlink *l, int argc, const char **argv, const size_t *lens)
{
	/* hiredis refuses UNSUBSCRIBE on a context that is subscribed to
	 * nothing: then nothing is due either */
	if (redisAsyncCommandArgv(l->conn->ac, on_sub, l->conn, argc, argv, lens) == REDIS_OK) {
		struct rreq *q = req_new(NULL, NULL);
		q->subs = (uint32_t)(argc - 1);
		inflight_push(l, q);
	}
}

static void batch_flush(struct sub_batch *b)
{
	if (b->n == 0)
		return;
	b->argv[0] = b->cmd;
	b->lens[0] = strlen(b->cmd);
	sub_cmd(b->l, b->n + 1, b->argv, b->lens);
	b->n = 0;
}

static void batch_add(void *arg, const char *key, size_t n, uint64_t count)
{
	struct sub_batch *b = arg;

	b->argv[b->n + 1] = key;
	b->lens[b->n + 1] = n;
	if (++b->n == RLINK_SUB_BATCH)
		batch_flush(b);
}

/* Sends (UN)SUBSCRIBE of one channel. */
static void sub_send(struct rlink *l, const char *cmd, const char *ch, size_t chlen)
{
	const char *argv[] = { cmd, ch };
	const size_t lens[] = { strlen(cmd), chlen };

	sub_cmd(l, 2, argv, lens);
}

/* The one hiredis callback of a SUB link's subscribe traffic: hiredis 0.14
 * files it under every channel of a SUBSCRIBE and calls it for the
 * acknowledgements of SUBSCRIBE and UNSUBSCRIBE and for every message
 * (then once per channel with a NULL reply when it frees the context).
 *
 * 0.14's redisProcessCallbacks keeps the callback it last ran in a variable
 * that a pub/sub reply for a channel it has no entry for does not overwrite:
 * such a reply would go to the previous callback, whatever it was. Every
 * channel we hear about has an entry (we UNSUBSCRIBE only what this context
 * subscribed, once), and the only other callbacks of a SUB link are the
 * handshake's, all answered before the first SUBSCRIBE is sent. */
static void on_sub(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct rconn *c = privdata;
	struct rlink *l = c->l;
	redisReply *r = reply;

	if (l == NULL || r == NULL)
		return; /* detached, or hiredis freeing the context (the disconnect callback drops) */
	assert(l->conn == c && c->gen == l->gen);
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING)
		return;
	const char *kind = r->element[0]->str;
	const redisReply *ch = r->element[1];

	link_enter(l);
	l->last_rx = ev_now(l->loop);
	if (strcmp(kind, "message") == 0) {
		const redisReply *m = r->element[2];
		if (m->type == REDIS_REPLY_STRING && l->on_message && smap_get(&l->wanted, ch->str, ch->len))
			l->on_message(l->arg, ch->str, ch->len, m->str, m->len);
	} else if (strcmp(kind, "subscribe") == 0 || strcmp(kind, "unsubscribe") == 0) {
		struct rreq *q = TAILQ_FIRST(&l->inflight);
		if (q && q->subs && --q->subs == 0) {
			req_unlink(&l->inflight, q);
			req_free(q);
		}
		if (kind[0] == 's' && l->on_subscribed && smap_get(&l->wanted, ch->str, ch->len))
			l->on_subscribed(l->arg, ch->str, ch->len);
	}
	link_leave(l);
}

static void resubscribe(struct rlink *l)
{
	struct sub_batch *b;

	if (l->wanted.n == 0)
		return;
	b = xmalloc(sizeof(*b));
	b->l = l;
	b->cmd = "SUBSCRIBE";
	b->n = 0;
	smap_each(&l->wanted, batch_add, b);
	batch_flush(b);
	free(b);
}

static void link_up(struct rlink *l)
{
	if (l->detected && DETECTS(l)) {
		/* A cluster node: the shard is the cluster it belongs to,
		 * served through its slot map from now on. */
		log_info("redis %s: a Redis Cluster node (cluster_enabled:1): serving the shard as a cluster",
			 redis_addr_str(&l->addr));
		detach(l, "connection lost", false);
		l->addr.cluster = true;
		l->addr.nseeds = 1;
		snprintf(l->addr.seed[0].host, sizeof(l->addr.seed[0].host), "%s", l->addr.host);
		l->addr.seed[0].port = l->addr.port;
		l->addr.db = 0;
		clu_start(l);
		return;
	}
	l->mode_known = true;
	l->st = ST_UP;
	ev_timer_stop(l->loop, &l->conn_w);
	l->backoff_ms = RLINK_BACKOFF_MIN_MS;
	l->sen_tried = l->sen_unknown = 0;
	l->err[0] = '\0';
	l->last_rx = ev_now(l->loop);
	if (l->logged[0]) {
		log_info("redis %s%s: connected again", redis_addr_str(&l->addr), KIND(l));
		l->logged[0] = '\0';
	} else {
		log_debug("redis %s%s: connected (connection %llu)", redis_addr_str(&l->addr), KIND(l),
			  (unsigned long long)l->gen);
	}
	if (l->kind == RLINK_SUB)
		resubscribe(l);
	io_arm(l);
	if (l->on_state) {
		link_enter(l);
		l->on_state(l->arg, true);
		link_leave(l);
	}
}

/* ---- Sentinel ----------------------------------------------------------------- */

/* A link whose shard is a Sentinel group keeps a command link (l->sen) to
 * one of its sentinels, and asks it SENTINEL get-master-addr-by-name
 * before every connection attempt (ST_RESOLVING, under connect_timeout +
 * io_timeout for each sentinel) and every RLINK_SENTINEL_CHECK_S while up:
 * a failover announced by +switch-master can be missed (centrifugo#1201).
 * A sentinel that cannot be reached, times out, answers an error or
 * something that is not an address, or does not know the master, is
 * replaced by the next one at once (a host name it answers, with
 * announce-hostnames, is looked up as the link connects); when the whole round
 * failed, the link waits its back-off and starts again. The master's
 * handshake ends with ROLE, which must say "master". A master that moved
 * ends the connection; so do READONLY, LOADING and MASTERDOWN (on_reply).
 *
 * Every way the current sentinel fails (its link's failed attempts, a
 * failed query) goes through sen_fail, which records why and, while
 * resolving, lets conn_w fire at once to move on: a sentinel link is only
 * ever freed from the owner's own timers or from rlink_free, never from
 * inside the sentinel link's callbacks. */

static const char *sen_str(const struct rlink *l)
{
	static char buf[96];
	const struct redis_sentinel *x = &l->addr.sentinel[l->sen_idx];

	snprintf(buf, sizeof(buf), strchr(x->host, ':') ? "sentinel [%s]:%d" : "sentinel %s:%d", x->host, x->port);
	return buf;
}

static struct rlink *link_make(const struct rlink_opts *o, struct rlink *owner);

static void sen_on_state(void *arg, bool up);

/* Opens l->sen to the sentinel at l->sen_idx. */
static void sen_open(struct rlink *l)
{
	const struct redis_sentinel *x = &l->addr.sentinel[l->sen_idx];
	struct redis_addr a;

	addr_defaults(&a);
	snprintf(a.host, sizeof(a.host), "%s", x->host);
	a.port = x->port;
	snprintf(a.user, sizeof(a.user), "%s", l->addr.sentinel_user);
	snprintf(a.password, sizeof(a.password), "%s", l->addr.sentinel_password);
	snprintf(a.client_name, sizeof(a.client_name), "%s", l->addr.sentinel_client_name);
	a.connect_timeout_ms = l->addr.connect_timeout_ms;
	a.io_timeout_ms = l->addr.io_timeout_ms;
	l->sen_why[0] = '\0';
	l->sen_said_unknown = false;
	struct rlink_opts o = { .loop = l->loop, .addr = &a, .kind = RLINK_CMD, .on_state = sen_on_state, .arg = l };
	l->sen = link_make(&o, l);
}

/* Replaces l->sen by a link to the next sentinel. */
static void sen_switch(struct rlink *l)
{
	struct rlink *old = l->sen;

	l->sen = NULL;
	l->sen_query = false; /* the query old answers "closed" now is nobody's */
	l->sen_idx = (l->sen_idx + 1) % l->addr.nsentinels;
	rlink_free(old);
	sen_open(l);
}

static void sen_reply(void *arg, redisReply *r, const char *err);

/* The answer to SENTINEL REPLICAS: one array of field, value pairs per
 * replica; those whose flags say neither down nor disconnected count. */
static void sen_replicas_reply(void *arg, redisReply *r, const char *err)
{
	struct rlink *l = arg;
	int n = 0;

	(void)err;
	if (l->freeing || r == NULL || r->type != REDIS_REPLY_ARRAY)
		return;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];
		bool healthy = false;
		for (size_t k = 0; e->type == REDIS_REPLY_ARRAY && k + 1 < e->elements; k += 2) {
			const redisReply *f = e->element[k], *v = e->element[k + 1];
			if (f->type == REDIS_REPLY_STRING && strcmp(f->str, "flags") == 0 && v->type == REDIS_REPLY_STRING)
				healthy = !strstr(v->str, "s_down") && !strstr(v->str, "o_down") &&
					  !strstr(v->str, "disconnected");
		}
		n += healthy;
	}
	l->sen_replicas = n;
}

/* Where the master is; and, for rlink_replicas, how many replicas it has. */
static void sen_ask(struct rlink *l)
{
	const char *argv[] = { "SENTINEL", "get-master-addr-by-name", l->addr.master_name };
	const char *rargv[] = { "SENTINEL", "replicas", l->addr.master_name };

	l->sen_query = true;
	rlink_cmd(l->sen, 3, argv, NULL, sen_reply, l);
	rlink_cmd(l->sen, 3, rargv, NULL, sen_replicas_reply, l);
}

/* The current sentinel failed us (WHY; UNKNOWN: it does not know the
 * master). The first reason is kept until the next sentinel is tried. */
static void sen_fail(struct rlink *l, const char *why, bool unknown)
{
	if (l->freeing)
		return;
	if (l->sen_why[0] == '\0') {
		snprintf(l->sen_why, sizeof(l->sen_why), "%.90s: %.150s", sen_str(l), why);
		l->sen_said_unknown = unknown;
	}
	if (l->st == ST_RESOLVING) {
		ev_timer_stop(l->loop, &l->conn_w);
		ev_timer_set(&l->conn_w, 0., 0.);
		ev_timer_start(l->loop, &l->conn_w);
	}
}

static void resolve_start(struct rlink *l)
{
	l->st = ST_RESOLVING;
	ev_timer_stop(l->loop, &l->conn_w);
	if (l->sen_why[0])
		ev_timer_set(&l->conn_w, 0., 0.);
	else
		ev_timer_set(&l->conn_w, (l->addr.connect_timeout_ms + l->addr.io_timeout_ms) / 1000., 0.);
	ev_timer_start(l->loop, &l->conn_w);
	if (!l->sen_why[0] && !l->sen_query && rlink_up(l->sen))
		sen_ask(l);
}

/* The current sentinel did not give a usable answer in time: the next
 * one, or, after a whole round, the back-off. */
static void sentinel_next(struct rlink *l)
{
	char e[sizeof(l->err)];

	if (l->sen_why[0] == '\0')
		snprintf(l->sen_why, sizeof(l->sen_why), "%s: no answer in %llu ms", sen_str(l),
			 (unsigned long long)(l->addr.connect_timeout_ms + l->addr.io_timeout_ms));
	l->sen_tried++;
	l->sen_unknown += l->sen_said_unknown;
	if (l->sen_tried < l->addr.nsentinels) {
		log_debug("redis %s: %s; asking the next sentinel", redis_addr_str(&l->addr), l->sen_why);
		sen_switch(l);
		resolve_start(l);
		return;
	}
	if (l->sen_unknown == l->sen_tried)
		snprintf(e, sizeof(e), "sentinel: master %.100s unknown to all %d sentinels", l->addr.master_name,
			 l->sen_tried);
	else
		snprintf(e, sizeof(e), "sentinel: no sentinel answered where master %.40s is (last: %.140s)",
			 l->addr.master_name, l->sen_why);
	l->sen_tried = l->sen_unknown = 0;
	sen_switch(l);
	l->st = ST_DOWN;
	note_error(l, e);
	schedule_retry(l);
}

/* A sentinel's answer (R, or ERR) to get-master-addr-by-name into M (the
 * master's settings with the host and port named). 0; 1 when the sentinel
 * does not know the master; -1 otherwise; WHY says why not. */
static int sen_answer(struct rlink *l, redisReply *r, const char *err, struct redis_addr *m, char *why,
		      size_t whylen)
{
	char hp[128];

	if (r == NULL) {
		snprintf(why, whylen, "%s", err);
		return -1;
	}
	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(why, whylen, "answered %.150s", r->str ? r->str : "");
		return -1;
	}
	if (r->type == REDIS_REPLY_NIL) {
		snprintf(why, whylen, "master %.100s unknown", l->addr.master_name);
		return 1;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING || r->element[0]->len > 64 || r->element[1]->len > 8) {
		snprintf(why, whylen, "answered something that is not an address");
		return -1;
	}
	snprintf(hp, sizeof(hp), strchr(r->element[0]->str, ':') ? "[%s]:%s" : "%s:%s", r->element[0]->str,
		 r->element[1]->str);
	*m = l->addr;
	m->master_name[0] = '\0';
	m->nsentinels = 0;
	if (parse_hostport(hp, strlen(hp), m->host, sizeof(m->host), &m->port, 6379, why, whylen) != 0)
		return -1;
	return 0;
}

static bool same_server(const struct redis_addr *a, const struct redis_addr *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/* The answer of l->sen to sen_ask: while resolving, where to connect;
 * while up, whether the master moved. */
static void sen_reply(void *arg, redisReply *r, const char *err)
{
	struct rlink *l = arg;
	struct redis_addr m;
	char why[200];
	int rc;

	if (l->freeing || !l->sen_query)
		return; /* a sentinel link being replaced, or the link being freed */
	l->sen_query = false;
	rc = sen_answer(l, r, err, &m, why, sizeof(why));
	if (l->st == ST_UP) {
		if (rc != 0) {
			log_debug("redis %s: %s: %s", redis_addr_str(&l->addr), sen_str(l), why);
			return;
		}
		if (same_server(&m, &l->master))
			return;
		snprintf(why, sizeof(why), "sentinel: master %.60s moved to %s", l->addr.master_name,
			 redis_addr_str(&m));
		drop(l, why, "connection lost", false);
		return;
	}
	if (l->st != ST_RESOLVING)
		return;
	if (rc != 0) {
		sen_fail(l, why, rc == 1);
		return;
	}
	if (!same_server(&m, &l->master))
		log_info("redis %s: the master is at %s (said %s)", redis_addr_str(&l->addr), redis_addr_str(&m),
			 sen_str(l));
	l->master = m;
	ev_timer_stop(l->loop, &l->conn_w);
	l->st = ST_DOWN;
	connect_server(l);
}

static void sen_on_state(void *arg, bool up)
{
	struct rlink *l = arg;

	if (!up || l->freeing)
		return;
	l->sen_why[0] = '\0';
	if (l->st == ST_RESOLVING && !l->sen_query)
		sen_ask(l);
}

/* Every RLINK_SENTINEL_CHECK_S: while up, whether the master moved; a
 * sentinel that is not reachable now is replaced for the next time. */
static void check_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rlink *l = w->data;

	if (l->st != ST_UP || l->sen_query)
		return;
	if (!rlink_up(l->sen))
		sen_switch(l);
	else
		sen_ask(l);
}

/* ---- Cluster ------------------------------------------------------------------ */

/* A command link whose shard is a Redis Cluster has no connection of its
 * own: it keeps a command link per node (nodes[], made as they are first
 * named: the seeds, the masters of CLUSTER SLOTS, the targets of
 * redirections; a node is never dropped while the cluster link lives, so
 * an index stays valid) and a table from each of the 16384 hash slots to
 * its master's node. A request (struct creq, owning a copy of its
 * arguments) goes to the master of its key's slot, or to any master when
 * it has no key; MOVED updates the slot, asks for a fresh map soon and
 * sends the request again to the node named, ASK sends ASKING and the
 * request to the node named, both at most CLU_REDIRECTS times. The map is
 * asked for (CLUSTER SLOTS, from the nodes in turn) when a node link comes
 * up while none is known, soon after a redirection, an error that says the
 * cluster changed, or a failed request, and every CLU_REFRESH_S anyway.
 * Node links report to the cluster link through their callbacks only; the
 * cluster link is UP while it has a map that covers every slot and the
 * links to all its masters are up. Requests are accepted once a map is
 * known: those for a slot whose master is unreachable fail as any request
 * on a link that is down. Host names in the map are looked up by the
 * node links as they connect (dns.c); an entry that does not parse leaves
 * its slots without a master, said once in the log. */

#define CLU_SLOTS 16384
#define CLU_NODES_MAX 64
#define CLU_REDIRECTS 5
#define CLU_REFRESH_S 5.0
#define CLU_SOON_S 0.1

struct clu_node {
	char host[64];
	int port;
	bool master;             /* named by the current map */
	struct rlink *link;
};

struct creq {
	struct rlink *l;
	rlink_reply_fn *cb;
	void *arg;
	struct rscript *script;  /* NULL: a command */
	int nkeys, key, argc, redirects;
	const char **argv;       /* in the same block as the arguments */
	size_t *lens;
};

unsigned rlink_slot(const char *key, size_t n)
{
	const char *open = memchr(key, '{', n);

	if (open) {
		const char *close = memchr(open + 1, '}', n - (size_t)(open + 1 - key));
		if (close && close > open + 1) {
			key = open + 1;
			n = (size_t)(close - key);
		}
	}
	uint16_t crc = 0;
	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)((unsigned char)key[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = crc & 0x8000 ? (uint16_t)(crc << 1 ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc & (CLU_SLOTS - 1);
}

static void clu_node_state(void *arg, bool up);

/* The index of node HOST:PORT, made (and its link opened) if new; -1 when
 * there are CLU_NODES_MAX already. */
static int clu_node(struct rlink *l, const char *host, int port)
{
	for (int i = 0; i < l->nnodes; i++)
		if (l->nodes[i].port == port && strcmp(l->nodes[i].host, host) == 0)
			return i;
	if (l->nnodes == CLU_NODES_MAX)
		return -1;
	struct clu_node *n = &l->nodes[l->nnodes];
	struct redis_addr a = l->addr;
	snprintf(n->host, sizeof(n->host), "%s", host);
	n->port = port;
	snprintf(a.host, sizeof(a.host), "%s", host);
	a.port = port;
	a.cluster = false;
	a.nseeds = 0;
	a.db = 0;
	struct rlink_opts o = { .loop = l->loop, .addr = &a, .kind = RLINK_CMD, .on_state = clu_node_state,
				.arg = l };
	n->link = link_make(&o, NULL);
	n->link->clu = l;
	return l->nnodes++;
}

/* UP while the map covers every slot and all masters are reachable; the
 * owner hears of changes. L must be held. */
static void clu_update(struct rlink *l)
{
	bool up = l->map_known;
	const char *why = "no slot map yet";

	for (int i = 0; up && i < l->nnodes; i++)
		if (l->nodes[i].master && !rlink_up(l->nodes[i].link)) {
			up = false;
			why = NULL;
			snprintf(l->err, sizeof(l->err), "master %.80s: %.150s", redis_addr_str(&l->nodes[i].link->addr),
				 rlink_error(l->nodes[i].link));
		}
	for (int s = 0; up && s < CLU_SLOTS; s++)
		if (l->slots[s] == 0) {
			up = false;
			why = "some hash slots have no master";
		}
	if (why && !up)
		snprintf(l->err, sizeof(l->err), "%s", why);
	if (up == (l->st == ST_UP))
		return;
	l->st = up ? ST_UP : ST_DOWN;
	if (up) {
		l->err[0] = '\0';
		log_info("redis %s: cluster ready", redis_addr_str(&l->addr));
	} else {
		log_warn("redis %s: %s", redis_addr_str(&l->addr), l->err);
	}
	if (l->on_state)
		l->on_state(l->arg, up);
}

static void clu_refresh(struct rlink *l);

/* A fresh map soon (not later than CLU_SOON_S from now). */
static void clu_refresh_soon(struct rlink *l)
{
	if (ev_timer_remaining(l->loop, &l->refresh_w) <= CLU_SOON_S)
		return;
	ev_timer_stop(l->loop, &l->refresh_w);
	ev_timer_set(&l->refresh_w, CLU_SOON_S, CLU_REFRESH_S);
	ev_timer_start(l->loop, &l->refresh_w);
}

static void clu_node_state(void *arg, bool up)
{
	struct rlink *l = arg;

	link_enter(l);
	if (!l->freeing) {
		if (up && (l->refresh_wanted || !l->map_known))
			clu_refresh(l);
		if (!up)
			clu_refresh_soon(l);
		clu_update(l);
	}
	link_leave(l);
}

/* CLUSTER SLOTS: [[start, end, [host, port, id…], replicas…]…]. */
static void clu_slots_reply(void *arg, redisReply *r, const char *err)
{
	struct rlink *l = arg;
	char why[300];

	link_enter(l);
	if (l->freeing || !l->refreshing)
		goto out;
	l->refreshing = false;
	struct clu_node *asked = &l->nodes[l->refresh_node];
	if (r == NULL || r->type != REDIS_REPLY_ARRAY) {
		snprintf(why, sizeof(why), "CLUSTER SLOTS to %s:%d: %.200s", asked->host, asked->port,
			 r && r->type == REDIS_REPLY_ERROR ? r->str : err ? err : "an answer that is not a slot map");
		l->refresh_wanted = true;
		l->rr++;                 /* the next node next time */
		if (!l->map_known)
			note_error(l, why);
		else
			log_warn("redis %s: %s", redis_addr_str(&l->addr), why);
		clu_refresh_soon(l);
		goto out;
	}
	uint16_t *map = xcalloc(CLU_SLOTS, sizeof(*map));
	bool master[CLU_NODES_MAX] = { false };
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i], *m;
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER || (m = e->element[2])->type != REDIS_REPLY_ARRAY ||
		    m->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING ||
		    m->element[1]->type != REDIS_REPLY_INTEGER)
			continue;
		long long lo = e->element[0]->integer, hi = e->element[1]->integer;
		const char *host = m->element[0]->len ? m->element[0]->str : asked->host; /* "": the node asked */
		char hp[128], h[64];
		int port, idx;
		snprintf(hp, sizeof(hp), strchr(host, ':') ? "[%.60s]:%lld" : "%.60s:%lld", host,
			 m->element[1]->integer);
		if (lo < 0 || hi >= CLU_SLOTS || lo > hi)
			continue;
		if (parse_hostport(hp, strlen(hp), h, sizeof(h), &port, 6379, why, sizeof(why)) != 0) {
			char e2[sizeof(l->err)];
			snprintf(e2, sizeof(e2), "slots %lld-%lld skipped: master %.150s", lo, hi, why);
			if (strcmp(l->logged, e2) != 0) {
				log_warn("redis %s: %s", redis_addr_str(&l->addr), e2);
				snprintf(l->logged, sizeof(l->logged), "%s", e2);
			}
			continue;
		}
		if ((idx = clu_node(l, h, port)) < 0)
			continue;
		master[idx] = true;
		for (long long s = lo; s <= hi; s++)
			map[s] = (uint16_t)(idx + 1);
	}
	memcpy(l->slots, map, CLU_SLOTS * sizeof(*map));
	free(map);
	for (int i = 0; i < l->nnodes; i++)
		l->nodes[i].master = master[i];
	if (!l->map_known)
		log_debug("redis %s: slot map from %s:%d", redis_addr_str(&l->addr), asked->host, asked->port);
	l->map_known = l->mode_known = true;
	l->refresh_wanted = false;
	clu_update(l);
out:
	link_leave(l);
}

/* Asks a node that is up (the next in turn) for the slot map; with none
 * up, the first node link to come up asks. */
static void clu_refresh(struct rlink *l)
{
	if (l->refreshing)
		return;
	for (int k = 0; k < l->nnodes; k++) {
		int i = (int)((l->rr + (unsigned)k) % (unsigned)l->nnodes);
		if (rlink_up(l->nodes[i].link)) {
			l->refreshing = true;
			l->refresh_node = i;
			rlink_cmd(l->nodes[i].link, 2, (const char *[]){ "CLUSTER", "SLOTS" }, NULL, clu_slots_reply, l);
			return;
		}
	}
	l->refresh_wanted = true;
}

static void refresh_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct rlink *l = w->data;

	clu_refresh(l);
}

static void clu_start(struct rlink *l)
{
	l->nodes = xcalloc(CLU_NODES_MAX, sizeof(*l->nodes));
	l->slots = xcalloc(CLU_SLOTS, sizeof(*l->slots));
	l->st = ST_DOWN;
	snprintf(l->err, sizeof(l->err), "no slot map yet");
	ev_timer_init(&l->refresh_w, refresh_cb, CLU_REFRESH_S, CLU_REFRESH_S);
	l->refresh_w.data = l;
	ev_timer_start(l->loop, &l->refresh_w);
	for (int i = 0; i < l->addr.nseeds; i++)
		clu_node(l, l->addr.seed[i].host, l->addr.seed[i].port);
}

/* Frees the node links: what was in flight on them is answered "closed". */
static void clu_stop(struct rlink *l)
{
	if (l->nodes == NULL)
		return;
	ev_timer_stop(l->loop, &l->refresh_w);
	for (int i = 0; i < l->nnodes; i++) {
		rlink_free(l->nodes[i].link);
		l->nodes[i].link = NULL;
	}
}

static void creq_reply(void *arg, redisReply *r, const char *err);

static void clu_ignore(void *arg, redisReply *r, const char *err)
{
}

/* Sends C to node I, after ASKING when ASK. */
static void clu_send(struct creq *c, int i, bool ask)
{
	struct rlink *n = c->l->nodes[i].link;

	if (ask)
		rlink_cmd(n, 1, (const char *[]){ "ASKING" }, NULL, clu_ignore, NULL);
	if (c->script)
		rlink_eval(n, c->script, c->nkeys, c->argc, c->argv, c->lens, creq_reply, c);
	else
		rlink_cmd(n, c->argc, c->argv, c->lens, creq_reply, c);
}

/* "MOVED 3999 127.0.0.1:6381" (or ASK): the slot and the node, made if
 * new. False when it does not parse. */
static bool parse_redirect(struct rlink *l, const char *s, unsigned *slot, int *node)
{
	const char *sp = strchr(s, ' '), *sp2;
	char h[64], why[128];
	int port;
	long v;

	if (sp == NULL || (sp2 = strchr(sp + 1, ' ')) == NULL)
		return false;
	v = strtol(sp + 1, NULL, 10);
	if (v < 0 || v >= CLU_SLOTS)
		return false;
	if (parse_hostport(sp2 + 1, strlen(sp2 + 1), h, sizeof(h), &port, 6379, why, sizeof(why)) != 0)
		return false;
	*slot = (unsigned)v;
	return (*node = clu_node(l, h, port)) >= 0;
}

static void creq_free(struct creq *c)
{
	free(c);
}

static void creq_reply(void *arg, redisReply *r, const char *err)
{
	struct creq *c = arg;
	struct rlink *l = c->l;

	link_enter(l);
	if (!l->freeing && r && r->type == REDIS_REPLY_ERROR && r->str && c->redirects < CLU_REDIRECTS) {
		bool moved = strncmp(r->str, "MOVED ", 6) == 0, ask = strncmp(r->str, "ASK ", 4) == 0;
		unsigned slot;
		int node;
		if ((moved || ask) && parse_redirect(l, r->str, &slot, &node)) {
			c->redirects++;
			if (moved) {
				l->slots[slot] = (uint16_t)(node + 1);
				clu_refresh_soon(l);
			}
			clu_send(c, node, ask);
			link_leave(l);
			return;
		}
	}
	if (!l->freeing && (err || (r && r->type == REDIS_REPLY_ERROR && r->str &&
				    (strncmp(r->str, "CLUSTERDOWN", 11) == 0 || strncmp(r->str, "TRYAGAIN", 8) == 0 ||
				     strncmp(r->str, "READONLY", 8) == 0 || strncmp(r->str, "MOVED", 5) == 0 ||
				     strncmp(r->str, "ASK", 3) == 0))))
		clu_refresh_soon(l);
	c->cb(c->arg, r, err);
	creq_free(c);
	link_leave(l);
}

/* A request on cluster link L (see rlink_cmd_key and rlink_eval). */
static void clu_cmd(struct rlink *l, struct rscript *s, int nkeys, int key, int argc, const char *const *argv,
		    const size_t *lens, rlink_reply_fn *cb, void *arg)
{
	size_t size = sizeof(struct creq) + (size_t)argc * (sizeof(char *) + sizeof(size_t));
	int node = -1;

	if (l->freeing) {
		cb(arg, NULL, "closed");
		return;
	}
	if (!l->map_known) {
		later_push(l, cb, arg, "not connected");
		return;
	}
	if (key >= 0) {
		int m = l->slots[rlink_slot(argv[key], lens ? lens[key] : strlen(argv[key]))];
		if (m == 0) {
			later_push(l, cb, arg, "no master serves the key's hash slot");
			return;
		}
		node = m - 1;
	} else {
		for (int k = 0; k < l->nnodes && node < 0; k++) {
			int i = (int)(l->rr++ % (unsigned)l->nnodes);
			if (l->nodes[i].master && rlink_up(l->nodes[i].link))
				node = i;
		}
		if (node < 0) {
			later_push(l, cb, arg, "no cluster master is reachable");
			return;
		}
	}
	for (int i = 0; i < argc; i++)
		size += (lens ? lens[i] : strlen(argv[i])) + 1;
	struct creq *c = xcalloc(1, size);
	c->l = l;
	c->cb = cb;
	c->arg = arg;
	c->script = s;
	c->nkeys = nkeys;
	c->key = key;
	c->argc = argc;
	c->argv = (const char **)(c + 1);
	c->lens = (size_t *)(c->argv + argc);
	char *p = (char *)(c->lens + argc);
	for (int i = 0; i < argc; i++) {
		size_t n = lens ? lens[i] : strlen(argv[i]);
		memcpy(p, argv[i], n);
		p[n] = '\0';
		c->argv[i] = p;
		c->lens[i] = n;
		p += n + 1;
	}
	clu_send(c, node, false);
}

/* ---- the interface ------------------------------------------------------------ */

struct rlink *rlink_new(const struct rlink_opts *o)
{
	return link_make(o, NULL);
}

/* A link; OWNER is the link a sentinel link serves, else NULL. */
static struct rlink *link_make(const struct rlink_opts *o, struct rlink *owner)
{
	struct rlink *l = xcalloc(1, sizeof(*l));

	l->loop = o->loop;
	l->addr = *o->addr;
	if (l->addr.connect_timeout_ms == 0)
		l->addr.connect_timeout_ms = RLINK_DEF_CONNECT_MS;
	if (l->addr.io_timeout_ms == 0)
		l->addr.io_timeout_ms = RLINK_DEF_IO_MS;
	l->kind = o->kind;
	l->on_state = o->on_state;
	l->on_message = o->on_message;
	l->on_subscribed = o->on_subscribed;
	l->arg = o->arg;
	l->st = ST_DOWN;
	l->backoff_ms = RLINK_BACKOFF_MIN_MS;
	snprintf(l->err, sizeof(l->err), "not connected yet");
	TAILQ_INIT(&l->inflight);
	TAILQ_INIT(&l->later);
	ev_timer_init(&l->conn_w, conn_timer_cb, 0., 0.);
	ev_timer_init(&l->io_w, io_timer_cb, 0., 0.);
	ev_timer_init(&l->later_w, later_cb, 0., 0.);
	l->conn_w.data = l->io_w.data = l->later_w.data = l;
	l->owner = owner;
	l->sen_replicas = -1;
	if (SENTINEL(l)) {
		assert(l->addr.nsentinels > 0);
		ev_timer_init(&l->check_w, check_cb, RLINK_SENTINEL_CHECK_S, RLINK_SENTINEL_CHECK_S);
		l->check_w.data = l;
		ev_timer_start(l->loop, &l->check_w);
		sen_open(l);
	}
	if (CLUSTER(l) && l->kind == RLINK_CMD)
		clu_start(l);
	else
		connect_start(l);
	return l;
}

void rlink_free(struct rlink *l)
{
	struct rreq *q;

	if (l == NULL || l->freeing)
		return;
	link_enter(l);
	l->freeing = true;
	ev_timer_stop(l->loop, &l->later_w);
	if (SENTINEL(l)) {
		ev_timer_stop(l->loop, &l->check_w);
		rlink_free(l->sen);
		l->sen = NULL;
	}
	clu_stop(l);
	detach(l, "closed", false);
	while ((q = TAILQ_FIRST(&l->later)) != NULL) {
		req_unlink(&l->later, q);
		q->cb(q->arg, NULL, q->err);
		req_free(q);
	}
	ev_timer_stop(l->loop, &l->conn_w);
	ev_timer_stop(l->loop, &l->io_w);
	link_leave(l);
}

int rlink_replicas(const struct rlink *l)
{
	return SENTINEL(l) ? l->sen_replicas : -1;
}

bool rlink_up(const struct rlink *l)
{
	return l->st == ST_UP;
}

bool rlink_cluster(const struct rlink *l)
{
	return CLUSTER(l);
}

bool rlink_mode_known(const struct rlink *l)
{
	return CLUSTER(l) || l->mode_known;
}

const char *rlink_error(const struct rlink *l)
{
	return l->st == ST_UP ? "" : l->err;
}

/* Whether a request can be sent now; if not, CB is answered (later, or at
 * once on a link being freed). */
static bool can_send(struct rlink *l, rlink_reply_fn *cb, void *arg)
{
	if (l->freeing) {
		cb(arg, NULL, "closed");
		return false;
	}
	if (l->st != ST_UP) {
		later_push(l, cb, arg, "not connected");
		return false;
	}
	return true;
}

/* Whether hiredis 0.14 would put the context into pub/sub or monitor mode
 * for this command: its replies would then go astray. */
static bool switches_mode(const char *name, size_t n)
{
	static const char *const names[] = { "subscribe", "psubscribe", "unsubscribe", "punsubscribe", "monitor" };

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(names); i++)
		if (n == strlen(names[i]) && strncasecmp(name, names[i], n) == 0)
			return true;
	return false;
}

void rlink_cmd(struct rlink *l, int argc, const char *const *argv, const size_t *lens, rlink_reply_fn *cb,
	       void *arg)
{
	rlink_cmd_key(l, -1, argc, argv, lens, cb, arg);
}

void rlink_cmd_key(struct rlink *l, int key, int argc, const char *const *argv, const size_t *lens,
		   rlink_reply_fn *cb, void *arg)
{
	assert(l->kind == RLINK_CMD && argc > 0 && key < argc);
	if (!l->freeing && switches_mode(argv[0], lens ? lens[0] : strlen(argv[0]))) {
		later_push(l, cb, arg, "not allowed on a command link");
		return;
	}
	if (CLUSTER(l)) {
		clu_cmd(l, NULL, 0, key, argc, argv, lens, cb, arg);
		return;
	}
	if (!can_send(l, cb, arg))
		return;
	struct rreq *q = req_new(cb, arg);
	if (redisAsyncCommandArgv(l->conn->ac, on_reply, q, argc, (const char **)argv, lens) != REDIS_OK) {
		req_free(q);
		later_push(l, cb, arg, "connection lost");
		return;
	}
	q->hiredis = true;
	inflight_push(l, q);
}

/* ---- scripts ------------------------------------------------------------------- */

static size_t bulk_size(size_t n)
{
	char d[24];
	return 1 + (size_t)snprintf(d, sizeof(d), "%zu", n) + 2 + n + 2;
}

static char *bulk_put(char *p, const char *s, size_t n)
{
	p += sprintf(p, "$%zu\r\n", n);
	memcpy(p, s, n);
	p += n;
	*p++ = '\r';
	*p++ = '\n';
	return p;
}

static void script_sha(struct rscript *s)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	static const char hex[] = "0123456789abcdef";

	if (s->sha[0])
		return;
	if (EVP_Digest(s->text, strlen(s->text), md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20)
		abort(); /* SHA-1 is always there in OpenSSL 3's default provider */
	for (unsigned i = 0; i < 20; i++) {
		s->sha[2 * i] = hex[md[i] >> 4];
		s->sha[2 * i + 1] = hex[md[i] & 15];
	}
	s->sha[40] = '\0';
}

/* On NOSCRIPT: the same call as EVAL with the script's text. False when it
 * could not be queued (then on_reply answers the error as it came). */
static bool resend_as_eval(struct rlink *l, struct rreq *q)
{
	size_t tlen = strlen(q->script->text), taillen = q->cmdlen - q->tail;
	int argc = 0;
	char *buf, *p;

	sscanf(q->cmd, "*%d", &argc);
	buf = xmalloc(32 + 10 + bulk_size(tlen) + taillen);
	p = buf + sprintf(buf, "*%d\r\n$4\r\nEVAL\r\n", argc);
	p = bulk_put(p, q->script->text, tlen);
	memcpy(p, q->cmd + q->tail, taillen);
	p += taillen;
	int rc = redisAsyncFormattedCommand(l->conn->ac, on_reply, q, buf, (size_t)(p - buf));
	free(buf);
	if (rc != REDIS_OK)
		return false;
	q->hiredis = true;
	q->retried = true;
	req_unlink(&l->inflight, q);
	inflight_push(l, q);
	return true;
}

void rlink_eval(struct rlink *l, struct rscript *s, int nkeys, int argc, const char *const *argv,
		const size_t *lens, rlink_reply_fn *cb, void *arg)
{
	char nk[16];
	size_t size, nklen;
	char *p;

	assert(l->kind == RLINK_CMD && nkeys >= 0 && nkeys <= argc);
	if (CLUSTER(l)) {
		clu_cmd(l, s, nkeys, nkeys > 0 ? 0 : -1, argc, argv, lens, cb, arg);
		return;
	}
	if (!can_send(l, cb, arg))
		return;
	script_sha(s);
	nklen = (size_t)snprintf(nk, sizeof(nk), "%d", nkeys);
	size = 32 + bulk_size(7) + bulk_size(40) + bulk_size(nklen);
	for (int i = 0; i < argc; i++)
		size += bulk_size(lens[i]);

	/* The first use of S on this connection sends its text (EVAL, which
	 * also loads it): an EVALSHA answered NOSCRIPT would be sent again
	 * after the requests behind it, and a pipeline must keep its order
	 * (a presence removal overtaken by the read after it). */
	bool text = smap_get(&l->loaded, (const char *)&s, sizeof(s)) != l->gen;
	size_t tlen = text ? strlen(s->text) : 0;
	size += bulk_size(tlen);
	struct rreq *q = req_new(cb, arg);
	q->script = s;
	q->cmd = xmalloc(size);
	p = q->cmd + sprintf(q->cmd, "*%d\r\n", argc + 3);
	if (text) {
		p = bulk_put(p, "EVAL", 4);
		p = bulk_put(p, s->text, tlen);
		smap_set(&l->loaded, (const char *)&s, sizeof(s), l->gen);
	} else {
		p = bulk_put(p, "EVALSHA", 7);
		p = bulk_put(p, s->sha, 40);
	}
	q->tail = (size_t)(p - q->cmd);
	p = bulk_put(p, nk, nklen);
	for (int i = 0; i < argc; i++)
		p = bulk_put(p, argv[i], lens[i]);
	q->cmdlen = (size_t)(p - q->cmd);
	assert(q->cmdlen <= size);
	if (redisAsyncFormattedCommand(l->conn->ac, on_reply, q, q->cmd, q->cmdlen) != REDIS_OK) {
		req_free(q);
		later_push(l, cb, arg, "connection lost");
		return;
	}
	q->hiredis = true;
	inflight_push(l, q);
}

/* ---- the subscriber's interface ---------------------------------------------------- */

void rlink_subscribe(struct rlink *l, const char *channel, size_t chlen)
{
	assert(l->kind == RLINK_SUB);
	if (l->freeing || smap_get(&l->wanted, channel, chlen))
		return;
	smap_set(&l->wanted, channel, chlen, 1);
	if (l->st == ST_UP)
		sub_send(l, "SUBSCRIBE", channel, chlen);
}

void rlink_unsubscribe(struct rlink *l, const char *channel, size_t chlen)
{
	assert(l->kind == RLINK_SUB);
	if (l->freeing || !smap_get(&l->wanted, channel, chlen))
		return;
	smap_set(&l->wanted, channel, chlen, 0);
	if (l->st == ST_UP)
		sub_send(l, "UNSUBSCRIBE", channel, chlen);
}

bool rlink_subscribed(const struct rlink *l, const char *channel, size_t chlen)
{
	return smap_get(&l->wanted, channel, chlen) != 0;
}

void rlink_reconnect(struct rlink *l, const char *why)
{
	if (l->freeing || l->conn == NULL)
		return; /* down already: the back-off timer runs */
	drop(l, why, "connection lost", false);
}
