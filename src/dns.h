/*
 * dns.h - host name lookups that never block a libev loop: for the links a
 * worker or the broker opens to other servers (Redis, HTTP upstreams).
 *
 * A numeric IPv4/IPv6 address and "localhost" (127.0.0.1) are answered
 * without any lookup. Any other name is looked up by glibc's getaddrinfo_a
 * (its own threads do the blocking part) and the loop polls for the answer
 * with a timer; a lookup that outlives its deadline is answered
 * DNS_ETIMEDOUT. Nothing is cached here: callers decide how long an answer
 * stays good.
 *
 * Use it after fork, in the process whose loop polls (getaddrinfo_a starts
 * threads).
 */
#ifndef ROTOR_DNS_H
#define ROTOR_DNS_H

#include <stdint.h>
#include <sys/socket.h>

struct ev_loop;
struct dns_req;

#define DNS_ADDRS_MAX 4

/* Not an EAI_* code (those are negative): the deadline passed. */
#define DNS_ETIMEDOUT 1

/* An answer: ERR is 0 and N (1..DNS_ADDRS_MAX) addresses, in the order
 * getaddrinfo gave them, with the port asked for set; or ERR is an EAI_*
 * code or DNS_ETIMEDOUT and N is 0. */
struct dns_result {
	int err;
	unsigned n;
	struct dns_addr {
		struct sockaddr_storage sa;
		socklen_t len;
	} addr[DNS_ADDRS_MAX];
};

typedef void dns_done_fn(void *arg, const struct dns_result *r);

/* Fills OUT with HOST (a numeric address, with or without brackets for
 * IPv6, or "localhost") at PORT, without any lookup: 0; -1 when HOST is a
 * name that needs one (OUT untouched). */
int dns_numeric(const char *host, int port, struct dns_result *out);

/* Looks HOST up (TCP addresses for PORT) on LOOP and calls DONE(ARG,
 * result) exactly once, always from LOOP and never from within this call,
 * within TIMEOUT_MS (0: 5 s), unless dns_cancel comes first. The result
 * is valid during the callback only; the request is freed once DONE
 * returns. Returns the handle for dns_cancel. */
struct dns_req *dns_lookup(struct ev_loop *loop, const char *host, int port, uint64_t timeout_ms,
			   dns_done_fn *done, void *arg);

/* Forgets REQ (not answered yet): DONE is never called. A lookup that
 * glibc cannot stop is left to finish in the background and its answer
 * thrown away. */
void dns_cancel(struct dns_req *req);

/* How many requests of this process glibc still holds (orphans
 * included): for tests and metrics. */
unsigned dns_inflight(void);

/* What ERR of a dns_result means ("Name or service not known",
 * "timed out"). */
const char *dns_strerror(int err);

#endif
