/*
 * hsr.h - one HTTP/1.1 request at a time whose response is a stream, over
 * sock.h: the reader behind http_stream, SSE and SockJS XHR streaming
 * (tp_emulation.c, tp_sockjs.c). The response head is checked (200) and
 * its body handed up as it comes, chunked transfer coding removed, so the
 * layer above sees only the body's bytes; or, without chunking, everything
 * up to the end of the connection.
 */
#ifndef HSR_H
#define HSR_H

#include "sock.h"

#include <stdbool.h>

enum hsr_end {
	HSR_END_CONNECT,        /* TCP connect failed (detail: errno) */
	HSR_END_STATUS,         /* the response is not a 200 (detail: its status, 0 if
				 * the connection ended before one) */
	HSR_END_EOF,            /* the connection ended (detail: errno or 0) */
	HSR_END_PROTO,          /* the response broke HTTP's framing, or ended inside
				 * a message of the layer above */
};

struct hsr;

struct hsr_ops {
	/* Connected: send the request (hsr_request). */
	void (*on_connect)(struct hsr *r);
	/* n body bytes at p: the ones this call left unconsumed last time,
	 * then what arrived since. Returns how many it consumed (whole
	 * messages); the rest comes again, in front of the next bytes. p is
	 * writable and valid during the call. */
	size_t (*on_body)(struct hsr *r, uint8_t *p, size_t n, uint64_t now);
	/* The response ended (last chunk) with the connection kept: another
	 * request may follow on it. */
	void (*on_done)(struct hsr *r);
	/* The connection is over and closed (never after hsr_close). */
	void (*on_end)(struct hsr *r, enum hsr_end why, int detail);
};

struct hsr {
	struct sock s;          /* first: a struct sock * is a struct hsr * */
	const struct hsr_ops *ops;
	uint32_t left;          /* payload bytes still due in the current chunk */
	uint32_t pre;           /* body bytes carried over in front of raw ones */
	uint8_t state;
};

/* Opens r from source address k. Returns 0 (then on_connect or on_end
 * follow) or an errno value if the socket could not be started. */
int hsr_connect(struct hsr *r, const struct sockaddr_in *dst, unsigned k, const struct hsr_ops *ops);

/* Writes a whole request (head and body, n bytes) whose response is read
 * next. Only when connected and no response is being read. Returns 0, or
 * an errno value after which r is closed (on_end is not called). */
int hsr_request(struct hsr *r, const void *req, size_t n);

/* 1 between a request and the end of its response. */
bool hsr_busy(const struct hsr *r);

/* Closes r at once; on_end is not called. Safe inside callbacks and on a
 * closed hsr. */
void hsr_close(struct hsr *r);

#endif
