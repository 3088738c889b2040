/*
 * redis_server.h - a real redis-server for the unit tests of the Redis
 * engine: started on a free loopback port in a temporary directory, with no
 * persistence, and stopped by its pid. Tests skip (TAP "skip") when
 * redis-server is not installed; the README's test command installs it.
 */
#ifndef ROTOR_REDIS_SERVER_H
#define ROTOR_REDIS_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

struct redis_server {
	pid_t pid;
	int port;
	char dir[64];
};

/* Whether redis-server can be run. */
bool redis_server_available(void);

/* Starts a server (extra arguments EXTRA, NULL-terminated, may be NULL) and
 * waits until it answers PING (at most 5 s). PORT 0 picks a free one.
 * 0, or -1 (reported on stderr). */
int redis_server_start(struct redis_server *s, int port, const char *const *extra);

/* SIGKILL (HARD) or SIGTERM, then waits for it; removes its directory. */
void redis_server_stop(struct redis_server *s, bool hard);

/* SIGSTOP / SIGCONT. */
void redis_server_pause(struct redis_server *s, bool pause);

/* Starts redis-sentinel (stopped with redis_server_stop) from a config file
 * of its own in its directory (Sentinel rewrites it): PORT (0: a free
 * one), monitoring MASTER_NAME at 127.0.0.1:MASTER_PORT with QUORUM,
 * down-after-milliseconds DOWN_MS, failover-timeout 3000, plus the config
 * lines EXTRA (NULL-terminated, may be NULL). Waits until it answers PING
 * (at most 5 s). 0, or -1 (reported on stderr). */
int redis_sentinel_start(struct redis_server *s, int port, const char *master_name, int master_port, int quorum,
			 int down_ms, const char *const *extra);

/* Topology 4 of ref/redis-engine.md §11: N (at most 8) cluster-enabled
 * servers on free ports, joined by redis-cli --cluster create with no
 * replicas, waited for until every one says cluster_state:ok (at most
 * 20 s). Stopped with redis_server_stop each. 0, or -1 (reported on
 * stderr, everything started stopped again). */
int redis_cluster_start(struct redis_server *s, int n);

struct ev_loop;
/* Runs LP for SECS. */
void redis_loop_spin(struct ev_loop *lp, double secs);

struct redisReply;
/* One command (hiredis format) to 127.0.0.1:PORT, after AUTH PASSWORD when
 * not NULL, over a blocking connection (tests only: never in the loop
 * under test), 2 s at most. The reply (freeReplyObject), or NULL. */
struct redisReply *redis_server_cmd(int port, const char *password, const char *fmt, ...);

/* The same for a reply expected to be an integer, a status or a string:
 * its text in a static buffer ("" on failure; "(nil)" for nil; an array
 * as its elements joined by spaces). */
const char *redis_server_str(int port, const char *fmt, ...);

#endif
