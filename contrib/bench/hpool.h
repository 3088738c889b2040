/*
 * hpool.h - the POSTs the HTTP client transports make on behalf of their
 * connections (/emulation for http_stream and SSE, xhr_send for SockJS)
 * over a few keep-alive connections per process, shared by every client
 * connection, as a load balancer in front of rotor pools its upstream
 * connections. A client connection never has two POSTs queued or in
 * flight: what it sends meanwhile gathers in its buffer and goes with the
 * next one, so its commands stay in order.
 */
#ifndef HPOOL_H
#define HPOOL_H

#include "hcli.h"

#include <stdbool.h>
#include <stdint.h>

struct hpool_req;

struct hpool_req_ops {
	/* A pooled connection takes r's POST now: write exactly one request
	 * carrying r->buf[0, r->len) with hcli_post(h, ...) and return its
	 * result. The buffer is emptied afterwards. */
	int (*post)(struct hpool_req *r, struct hcli *h);
	/* r's POST was answered with a status other than 2xx, or lost
	 * (status 0: its connection ended or could not be made). */
	void (*failed)(struct hpool_req *r, int status);
};

/* One client connection's place in the pool, embedded in its transport.
 * Zeroed is idle and empty. */
struct hpool_req {
	const struct hpool_req_ops *ops;
	struct hpool_req *prev, *next;  /* in the queue */
	uint8_t *buf;                   /* what the next POST carries */
	uint32_t len, cap;
	uint8_t state;
	bool sending;                   /* inside hpool_send */
	int lost;                       /* inside hpool_send: a failure's status + 1 */
};

/* The pool of this process: `conns` connections from source addresses
 * k0, k0 + 1, ..., each with at most `depth` POSTs in flight (1: no
 * pipelining); hcli_setup must have run. Connections are opened when
 * first needed and again after they end. */
void hpool_setup(int conns, int depth, unsigned k0);

/* Adds [p, p+n) to what r's next POST carries, after a newline when `nl`
 * and r holds something already. */
void hpool_add(struct hpool_req *r, const uint8_t *p, size_t n, bool nl);

/* Frees r's buffer (what it held is dropped). */
void hpool_clear(struct hpool_req *r);

/* Posts what r holds: at once if a connection has room, else when one
 * has; when r is queued or in flight already, the POST after its current
 * one does, once that one succeeded. Returns 0, or -1 when r's POST failed
 * at once (then ops->failed is not called). */
int hpool_send(struct hpool_req *r, const struct hpool_req_ops *ops);

/* r's connection goes away: post and failed are not called for r any
 * more, and its buffer is freed. Safe on an idle r. */
void hpool_cancel(struct hpool_req *r);

/* Closes every connection of the pool (the end of the run). */
void hpool_close(void);

#endif
