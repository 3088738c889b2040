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

#endif
