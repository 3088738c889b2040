/*
 * wsc.h - WebSocket client connections (RFC 6455, client side) over sock.h:
 * the opening handshake with a verified Sec-WebSocket-Accept, masked frames
 * out, unmasked frames in (several per read, fragments reassembled), pings
 * answered with pongs and a close frame answered and reported; optionally
 * permessage-deflate (RFC 7692) on what arrives.
 */
#ifndef WSC_H
#define WSC_H

#include "sock.h"

#include <stdbool.h>

enum wsc_end {
	WSC_END_CONNECT,        /* TCP connect failed (detail: errno) */
	WSC_END_HANDSHAKE,      /* no 101 with the right accept (detail: HTTP status, or
				 * errno if the connection ended first) */
	WSC_END_CLOSE,          /* the server sent a close frame (detail: its code, 1005 if none) */
	WSC_END_EOF,            /* the connection ended without a close frame (detail: errno or 0) */
	WSC_END_PROTO,          /* the server broke the framing rules */
};

struct wsc;

struct wsc_ops {
	/* The handshake succeeded: messages may be sent. */
	void (*on_open)(struct wsc *w);
	/* One whole data message (text or binary). p is valid during the call. */
	void (*on_message)(struct wsc *w, const uint8_t *p, size_t n, uint64_t now);
	/* The connection is over and closed (never after wsc_close). */
	void (*on_end)(struct wsc *w, enum wsc_end why, int detail);
};

struct wsc {
	struct sock s;          /* first: a struct sock * is a struct wsc * */
	const struct wsc_ops *ops;
	uint8_t *frag;          /* a fragmented message being reassembled */
	uint32_t frag_len;
	uint8_t state;
	bool frag_z;            /* that message is compressed (RSV1) */
	bool protobuf;          /* asked for subprotocol centrifuge-protobuf */
	uint8_t nonce[16];      /* Sec-WebSocket-Key, kept until the reply */
	const char *path;       /* the caller's, until the request is written */
};

/* Target and Host header for every connection of the process, and whether
 * they offer permessage-deflate: then a handshake must accept it with
 * server_no_context_takeover (one inflater per process serves every
 * connection) and compressed messages are inflated before on_message.
 * What we send goes uncompressed. Call once, after sock_setup. */
void wsc_setup(const struct sockaddr_in *dst, const char *host, bool deflate);

/* Opens w to path (which must stay valid until on_open or on_end) from
 * source address k. Returns 0 (then on_open or on_end follow) or an errno
 * value if the socket could not be started. */
int wsc_connect(struct wsc *w, unsigned k, const char *path, bool protobuf, const struct wsc_ops *ops);

/* Sends one data message, binary or text, in one masked frame. Returns 0 or
 * an errno value after which w is closed (on_end is not called). */
int wsc_send(struct wsc *w, bool binary, const void *p, size_t n);

/* 1 while w is open for messages (handshake done, not closed). */
bool wsc_is_open(const struct wsc *w);

/* Closes w at once (no close handshake) and frees its buffers; on_end is not
 * called. Safe inside callbacks and on a closed wsc. */
void wsc_close(struct wsc *w);

#endif
