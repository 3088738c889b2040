/*
 * backend.h - the application backend of the proxy benchmarks (--proxy): a
 * child process on a libev loop that answers rotord's HTTP/1.1 proxy
 * requests over keep-alive connections as fast as it can, so that what is
 * measured is rotord's side of the proxy, not a web framework's.
 *
 * POST .../connect answers {"result":{"user":"u<N>"}} (N counts the
 * requests), POST .../rpc answers {"result":{"data":{"ok":true}}},
 * anything else 404. It counts the TCP connections it accepted and the
 * requests it answered, and hands both back when stopped: the proxy's
 * connection pool must stay bounded however many clients connect.
 */
#ifndef BACKEND_H
#define BACKEND_H

#include <stdint.h>
#include <sys/types.h>

struct backend {
	pid_t pid;              /* the child, 0 when not running */
	int port;               /* where it listens on 127.0.0.1 */
	int res_fd;             /* read end of the pipe its counts come back on */
};

struct backend_counts {
	uint64_t accepted;      /* TCP connections accepted */
	uint64_t requests;      /* requests answered */
	uint64_t max_open;      /* most connections open at once */
};

/* Starts the backend pinned to cpus[0..ncpus) (none: unpinned) on a free
 * loopback port. Returns 0, or -1 with a message on stderr. */
int backend_start(struct backend *b, const int *cpus, int ncpus);

/* Stops it (SIGTERM) and reads its counts into *c (zeros if it died).
 * Safe to call twice. */
void backend_stop(struct backend *b, struct backend_counts *c);

#endif
