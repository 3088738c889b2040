/*
 * redis_link.h - one connection to one Redis server on a libev loop, for
 * the Redis engine (ref/redis-engine.md §10): hiredis 0.14's async context
 * with its libev adapter, and what that version lacks done here with
 * ev_timers: a connect timeout, a deadline for every request (io_timeout),
 * PING on an idle command link, reconnection for ever with a growing,
 * jittered back-off (250 ms doubling up to 5 s, each wait up to a fifth
 * longer at random).
 *
 * A link never blocks its loop: a host name is looked up at every
 * connection attempt through dns.c (a failed lookup is a failed attempt,
 * with the same back-off; numeric addresses and "localhost" need none),
 * and every request is answered through its
 * callback, exactly once: with the reply, or with an error text when the
 * link is down, the request timed out, or the link was freed.
 *
 * Make links after fork, in the process that uses them (§10.3.11).
 */
#ifndef ROTOR_REDIS_LINK_H
#define ROTOR_REDIS_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ev_loop;
struct redisReply;

#define REDIS_SENTINELS_MAX 8
#define REDIS_SEEDS_MAX 8

/* One shard entry of engine.redis.address, .sentinel_address or
 * .cluster_address (§7.3), with the connection block's settings that apply
 * to it. A shard is one server (host and port, or path), a Sentinel group
 * (master_name set: then host, port and path are unused and the link asks
 * the sentinels where the master is; user, password, db and client_name
 * are the master's), or a Redis Cluster (cluster set: seed[] are the nodes
 * asked for the slot map, host and port repeat the first; user, password
 * and client_name are every node's, db is 0). A plain server found to be a
 * cluster node is served as a cluster with itself as the seed. */
struct redis_addr {
	char host[256];            /* numeric IPv4/IPv6 or a host name; "" with a socket path */
	int port;
	char path[108];            /* unix://… socket path, else "" */
	char user[128], password[256];
	int db;
	uint64_t connect_timeout_ms, io_timeout_ms;
	char client_name[128];     /* CLIENT SETNAME after connect when not "" */
	/* Sentinel: */
	char master_name[128];     /* "" for a plain server */
	int nsentinels;
	struct redis_sentinel {
		char host[64];     /* numeric or a host name */
		int port;
	} sentinel[REDIS_SENTINELS_MAX];
	char sentinel_user[128], sentinel_password[256], sentinel_client_name[128];
	/* Cluster: */
	bool cluster;
	int nseeds;
	struct redis_sentinel seed[REDIS_SEEDS_MAX];
};

/* Parses one address entry S: "host:port", "redis://[user[:pass]@]host:port[/db][?opts]",
 * "tcp://…", "unix://[user:pass@]/path",
 * "redis+sentinel://[user[:pass]@]host:port[/db]?sentinel_master_name=M&addr=h2:p2…",
 * "redis+cluster://[user[:pass]@]host:port[?addr=h2:p2…]".
 * DEFAULTS (user, password, db, timeouts, client_name, and the sentinel_*
 * settings: the config block's) are copied first; the URL's user, password,
 * db and the query options connect_timeout and io_timeout (Go durations)
 * override them (a URL user only when not empty; a URL password whenever
 * the URL has one). A redis+sentinel:// URL names the sentinels (its host
 * and every addr option, port 26379 by default) and takes the options
 * sentinel_master_name, sentinel_user and sentinel_password; its user,
 * password and db are the master's. A redis+cluster:// URL names the seeds
 * (its host and every addr option) and takes no db but 0. Without a port,
 * 6379. Forms rotor does not serve (rediss:// and every TLS form, tls_enabled,
 * sentinel_tls_enabled, replica_client_enabled, unknown options), sentinel
 * options outside redis+sentinel://, and hosts that are neither an IP
 * address nor a well-formed host name are refused. Names are checked for
 * syntax only, never looked up here. 0, or -1 with a message in ERR
 * naming the problem (never the password). */
int redis_addr_parse(const char *s, const struct redis_addr *defaults, struct redis_addr *out,
		     char *err, size_t errlen);

/* Parses one entry of sentinel_address: "host:port[,host:port…]", the
 * sentinels of one shard (port 26379 when left out; addresses or host
 * names). DEFAULTS must carry the master name (the config's
 * sentinel_master_name) and the rest of the connection block, copied as by
 * redis_addr_parse. 0, or -1 with a message in ERR. */
int redis_addr_parse_sentinels(const char *s, const struct redis_addr *defaults, struct redis_addr *out,
			       char *err, size_t errlen);

/* Parses one entry of cluster_address: "host:port[,host:port…]", the seed
 * nodes of one Redis Cluster (port 6379 when left out; addresses or host
 * names), with DEFAULTS as redis_addr_parse. 0, or -1 with a
 * message in ERR. */
int redis_addr_parse_cluster(const char *s, const struct redis_addr *defaults, struct redis_addr *out,
			     char *err, size_t errlen);

/* "host:port" ("[v6]:port"), the socket path, "sentinel master M
 * (host:port,…)" or "cluster (host:port,…)", for logs: in one of four
 * static buffers used in turn. */
const char *redis_addr_str(const struct redis_addr *a);

/* R is the reply (owned by hiredis, valid during the call only; an error
 * reply is passed as a reply of type REDIS_REPLY_ERROR, with ERR NULL), or
 * NULL with ERR saying why there is none ("not connected", "timeout",
 * "connection lost", "closed"). */
typedef void rlink_reply_fn(void *arg, struct redisReply *r, const char *err);

/* A message on a subscribed channel (a SUB link). */
typedef void rlink_message_fn(void *arg, const char *channel, size_t chlen, const char *msg, size_t len);

/* The link came up (after AUTH, SELECT, CLIENT SETNAME and, on a SUB
 * link, after the subscriptions wanted were sent again) or went down.
 * Called on changes only: failed attempts while down are not reported. */
typedef void rlink_state_fn(void *arg, bool up);

/* A SUB link's SUBSCRIBE of CHANNEL was acknowledged by the server. */
typedef void rlink_subscribed_fn(void *arg, const char *channel, size_t chlen);

enum rlink_kind {
	RLINK_CMD,   /* commands and scripts, pipelined */
	RLINK_SUB,   /* PUB/SUB: SUBSCRIBE/UNSUBSCRIBE only, messages to on_message */
};

struct rlink_opts {
	struct ev_loop *loop;
	const struct redis_addr *addr;   /* copied */
	enum rlink_kind kind;
	rlink_state_fn *on_state;        /* may be NULL */
	rlink_message_fn *on_message;    /* SUB links */
	rlink_subscribed_fn *on_subscribed; /* SUB links, may be NULL */
	void *arg;                       /* for the three callbacks */
};

struct rlink;

/* A link that starts connecting at once and keeps reconnecting until freed. */
struct rlink *rlink_new(const struct rlink_opts *o);

/* Fails every request in flight with "closed" and answers those already
 * failed but waiting for the loop ("not connected"), all before this
 * returns, and closes the connection. Safe from inside any of the link's
 * callbacks (the memory goes when the outermost one returns). Calls
 * rlink_free's callbacks make on this link are answered at once, "closed". */
void rlink_free(struct rlink *l);

bool rlink_up(const struct rlink *l);

/* A link to a Sentinel group's master: how many replicas the sentinels
 * last said the master has that are neither down nor disconnected (asked
 * with every master lookup, so every few seconds). -1 for other links and
 * until a sentinel answered. */
int rlink_replicas(const struct rlink *l);

/* The last connection error, "" when up (for /health and logs). */
const char *rlink_error(const struct rlink *l);

/* Sends a command of ARGC binary-safe arguments (LENS gives their lengths)
 * on a CMD link; never (P)SUBSCRIBE, (P)UNSUBSCRIBE or MONITOR, which
 * hiredis would turn the connection over to (refused: "not allowed on a
 * command link"). CB is always called exactly once, later (never from
 * inside this call): with "not connected" when the link is down. On a
 * cluster link the command goes to any master (PUBLISH: it reaches the
 * whole cluster); rlink_cmd_key sends it to the master of argument KEY's
 * hash slot (KEY < 0: any master), following MOVED and ASK. */
void rlink_cmd(struct rlink *l, int argc, const char *const *argv, const size_t *lens,
	       rlink_reply_fn *cb, void *arg);
void rlink_cmd_key(struct rlink *l, int key, int argc, const char *const *argv, const size_t *lens,
		   rlink_reply_fn *cb, void *arg);

/* Whether L serves a Redis Cluster: configured so, or a plain server that
 * said cluster_enabled:1 when the link connected. Keys and channel names
 * then take the {CH} hash tag (§2.2). Known once the link was up
 * (rlink_mode_known); false before. */
bool rlink_cluster(const struct rlink *l);
bool rlink_mode_known(const struct rlink *l);

/* The hash slot of a key (CRC16-XMODEM of the key, or of its first
 * non-empty {…} tag, modulo 16384), as Redis Cluster computes it. */
unsigned rlink_slot(const char *key, size_t n);

/* A Lua script: its text and, computed on first use, its SHA-1. It must
 * outlive every request made with it (scripts are static). */
struct rscript {
	const char *text;
	char sha[41];
};

/* EVALSHA S with NKEYS of the ARGC arguments as keys; on NOSCRIPT (a
 * restarted or failed-over server) the same call is repeated with EVAL,
 * transparently. CB as rlink_cmd's. On a cluster link the script goes to
 * the master of the first key's slot (all its keys must share the slot). */
void rlink_eval(struct rlink *l, struct rscript *s, int nkeys, int argc, const char *const *argv,
		const size_t *lens, rlink_reply_fn *cb, void *arg);

/* SUB links: the set of channels wanted. On a cluster shard a SUB link
 * sits on one seed (the next one after each failed attempt): classic
 * PUBLISH reaches every node of a cluster. SUBSCRIBE is sent at once when the
 * link is up (and again for the whole set after every reconnect, in batches
 * of at most 512 channels); on_subscribed reports each acknowledgement.
 * UNSUBSCRIBE removes the channel from the set. Idempotent. on_subscribed
 * and on_message report channels still in the set only. An acknowledgement
 * missing for io_timeout drops the link; an idle SUB link is not PINGed
 * (hiredis 0.14 loses the reply): a silent subscriber is the caller's to
 * detect (publish to itself) and to end with rlink_reconnect. */
void rlink_subscribe(struct rlink *l, const char *channel, size_t chlen);
void rlink_unsubscribe(struct rlink *l, const char *channel, size_t chlen);
bool rlink_subscribed(const struct rlink *l, const char *channel, size_t chlen);

/* Drops the connection and reconnects after the back-off: for a caller
 * that found the link useless (a READONLY reply, a silent subscriber).
 * Pending requests fail with "connection lost". */
void rlink_reconnect(struct rlink *l, const char *why);

#endif
