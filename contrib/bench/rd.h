/*
 * rd.h - a rotord of our own for one benchmark run: a temporary directory
 * with a generated config (a free loopback port, the API key, client.insecure
 * or an HMAC token secret, with TLS a test certificate), shm.dir in a temporary directory of /dev/shm
 * (segments in files on a disk would add writeback to every measurement),
 * the daemon started pinned to the given CPUs, waited for, and stopped by
 * its pid.
 */
#ifndef RD_H
#define RD_H

#include <stdbool.h>
#include <sys/types.h>

struct rd {
	pid_t pid;              /* the master, 0 when not running */
	int port;
	bool tls;               /* http_server.tls is on */
	char dir[128];          /* config, log, pid file */
	char shm[128];          /* shm.dir: under /dev/shm when there is one */
};

/* Starts `path` with `workers` workers pinned to cpus[0..ncpus) (none:
 * unpinned) and waits until /health answers and every worker runs. With
 * token_secret the config holds client.token.hmac_secret_key and lets
 * clients subscribe without namespaces; with proxy_port > 0, the connect
 * and RPC proxies go to http://127.0.0.1:proxy_port/connect and /rpc and
 * clients subscribe without namespaces; without either, client.insecure. `extra`
 * is more top-level members of the config (a transport's keys: "" for
 * none); `chan_opts` more members of channel.without_namespace (NULL or
 * "" for none). With tls, a self-signed ECDSA P-256
 * certificate (tlsc.h) in the directory and http_server.tls on, and the
 * health check over TLS. Returns 0 or -1 with a message on stderr (the
 * daemon stopped again). */
int rd_start(struct rd *r, const char *path, int workers, const int *cpus, int ncpus,
	     const char *api_key, const char *token_secret, int proxy_port, const char *extra,
	     const char *chan_opts, bool tls);

/* 0 while the daemon runs; -1 once it has exited by itself (then reaped,
 * its log's end printed, r->pid 0). */
int rd_check(struct rd *r);

/* Stops the daemon (SIGTERM, SIGKILL to the whole tree after 10 s) and
 * removes the directory. Prints the log's last lines when the daemon had
 * died on its own. Safe to call twice. */
void rd_stop(struct rd *r);

#endif
