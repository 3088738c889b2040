/*
 * ws.h - the WebSocket layer (RFC 6455) that the WebSocket-based transports
 * share (websocket.c, the unidirectional one, SockJS's): the upgrade, frames
 * in both directions, ping/pong, the close handshake, and batched output:
 * the messages a transport queues during one loop iteration leave as one
 * frame per connection at the flush point.
 *
 * The transport sees whole messages in, and queues encoded messages out
 * (for the client protocol: JSON objects, or varint-prefixed protobuf
 * messages); framing, the '\n' between text messages, masking and close
 * codes are this layer's. Its settings are client.queue_max_size and, per
 * connection, a struct ws_limits: websocket.message_size_limit and
 * websocket.write_timeout unless the transport brings its own
 * (uni_websocket.*).
 */
#ifndef ROTOR_WS_H
#define ROTOR_WS_H

#include "rotor.h"
#include "proto.h" /* enum proto_fmt */
#include <stdbool.h>
#include <stdint.h>

struct worker;
struct rbuf;
struct http_req;
struct ws;

/* Close codes this layer sends itself. */
#define WS_CLOSE_NORMAL 1000
#define WS_CLOSE_PROTOCOL 1002      /* a frame breaks RFC 6455 (or RFC 7692's use of RSV1) */
#define WS_CLOSE_INVALID_DATA 1007  /* invalid UTF-8 in a text message or close reason,
                                     * or a compressed message that does not inflate */
#define WS_CLOSE_TOO_BIG 1009       /* message over websocket.message_size_limit,
                                     * compressed or once inflated */
#define WS_CLOSE_INTERNAL 1011
#define WS_CLOSE_SHUTDOWN 3001      /* graceful worker stop */
#define WS_CLOSE_SLOW 3008          /* output queue over client.queue_max_size */
#define WS_CLOSE_NO_PONG 3012       /* frame ping/pong mode: no pong in time */

/* Timing (ms). */
#define WS_CLOSE_WAIT_MS 5000       /* after our close frame, for the client's */
#define WS_PING_INTERVAL_MS 25000   /* ?cf_ws_frame_ping_pong=true: ping frames */
#define WS_PONG_TIMEOUT_MS 10000    /* ... and the time a pong may take */

/* One outgoing data frame holds at most this many messages, and at most
 * this many payload bytes unless a single message is larger. */
#define WS_FRAME_MAX_MSGS 64
#define WS_FRAME_MAX_BYTES 65536

/* The settings a transport gives its connections. The struct stays the
 * transport's (static, changed in place on reload): open connections
 * follow it. */
struct ws_limits {
	size_t msg_limit;        /* largest message accepted (1009 above it) */
	int64_t write_timeout;   /* ms blocked output may take; 0: no limit */
	int64_t ping_interval;   /* frame ping mode: ms between ping frames */
	int64_t pong_timeout;    /* ... and ms a pong may take (else 3012) */
	bool one_per_frame;      /* every message in a data frame of its own */
	bool compression;        /* SECTION.compression: permessage-deflate where
	                          * the upgrade allows it (struct ws_upgrade) */
	size_t compression_min_size; /* frames of at most this many payload bytes
	                          * go uncompressed */
	int compression_level;   /* 1..9 */
};

/* Reads SECTION.message_size_limit (0: 65536), SECTION.write_timeout and
 * SECTION.compression* of config K into L ("websocket", "uni_websocket");
 * the other fields are left as they are. */
struct conf;
void ws_limits_read(struct ws_limits *l, const struct conf *k, const char *section);

/* What an upgrade negotiated. */
struct ws_open_info {
	enum proto_fmt fmt;          /* subprotocol centrifuge-protobuf, or ?format= /
	                              * ?cf_protocol=protobuf: PROTO_PB; else PROTO_JSON */
	bool frame_ping_pong;        /* ?cf_ws_frame_ping_pong=true: this layer sends
	                              * ping frames and enforces pongs (3012); the
	                              * session must send no protocol pings */
	const struct http_req *req;  /* the upgrade request (headers, query):
	                              * valid until the route's handler returns */
};

/*
 * The session's callbacks. None of them is ever called from inside another
 * ws_* call the session makes, so a session may call any ws_* function from
 * any callback.
 */
struct ws_handler {
	/* One complete data message (text or binary, fragments reassembled,
	 * text already checked to be UTF-8). DATA lives until the callback
	 * returns. Not called any more once ws_close was called. */
	void (*on_message)(struct ws *ws, void *ud, const char *data, size_t len);
	/* The worker stops gracefully. NULL: ws_close(WS_CLOSE_SHUTDOWN,
	 * "shutdown"); a session that sets it should end up calling ws_close. */
	void (*on_drain)(struct ws *ws, void *ud);
	/* Queued bytes would pass client.queue_max_size (ws_send): what was
	 * not framed yet is dropped; the session ends (3008) and should end
	 * up calling ws_close. NULL, or if it does not: ws_close(3008,
	 * "slow"). */
	void (*on_slow)(struct ws *ws, void *ud);
	/* The connection is gone, whatever the reason (close handshake, error,
	 * timeout, peer vanished): free UD. Called exactly once, from the flush
	 * point or the event loop; WS is freed when it returns. */
	void (*on_close)(struct ws *ws, void *ud);
};

/* What an upgrade negotiates besides RFC 6455 itself. */
struct ws_upgrade {
	bool admit;        /* check client.allowed_origins (403) and
	                    * client.connection_limit (503) first */
	bool centrifuge;   /* offer the subprotocols centrifuge-json and
	                    * centrifuge-protobuf, and read ?format=,
	                    * ?cf_protocol= and ?cf_ws_frame_ping_pong= */
	bool frame_ping;   /* ping frames always (every ping_interval, pong
	                    * within pong_timeout, else 3012) */
	bool deflate;      /* negotiate permessage-deflate (RFC 7692) when the
	                    * limits' compression is on */
	const struct ws_limits *limits; /* NULL: websocket.*, frame pings every
	                    * WS_PING_INTERVAL_MS within WS_PONG_TIMEOUT_MS,
	                    * messages batched into frames */
};

/* Answers REQ (a GET routed to a WebSocket endpoint) with 101 and takes its
 * connection over, or refuses it (400 not an upgrade, 426 version, and as U
 * says 403/503) and returns NULL. INFO gets what was negotiated. The caller
 * must attach a handler (ws_set_handler) before it returns to the loop. */
struct ws *ws_upgrade(struct http_req *req, const struct ws_upgrade *u, struct ws_open_info *info);

/* Attaches the session: H (static, not copied) and UD. */
void ws_set_handler(struct ws *ws, const struct ws_handler *h, void *ud);

/*
 * Queues one encoded message: LEN bytes of B from OFF, by reference (the
 * same rbuf may be queued on any number of connections; it must not change
 * any more). Nothing is written now: at the flush point (ws_flush_all) the
 * messages queued since the last one leave in as few frames as possible
 * (JSON: one text frame, messages joined by '\n'; protobuf: one binary
 * frame, messages concatenated; with the limits' one_per_frame, one frame
 * per message), after anything queued before.
 *
 * Returns RT_OK; RT_CLOSED when the connection is closing or closed, or when
 * this message would take the connection's queued bytes (not yet framed plus
 * not yet written) over client.queue_max_size: the connection is then being
 * closed with 3008 "slow" (what was not yet framed is dropped) and on_close
 * follows in due course. Nothing is queued in either case. An empty message
 * is ignored.
 */
int ws_send(struct ws *ws, struct rbuf *b, size_t off, size_t len);
/* Same with a copy of DATA (for small one-off replies). */
int ws_send_copy(struct ws *ws, const void *data, size_t len);
/* What WS sends next answers a message of an earlier loop iteration (the
 * engine answered late): it leaves ahead of fan-out (conn_answering). */
void ws_answering(struct ws *ws);
/* Queues one text message of its own made of the N segments V (conn.h's:
 * LEN bytes of B from OFF each, by reference): for protocols that frame
 * their messages themselves (SockJS: "o", "a[...]", "c[...]" each one
 * WebSocket message), so no '\n' joins it to others. A connection uses
 * either this or ws_send/ws_send_copy. Same returns as ws_send; the limit
 * counts the N segments together; an empty message is sent as such. */
struct rseg;
int ws_send_parts(struct ws *ws, const struct rseg *v, size_t n);

/*
 * Closes gracefully: messages already queued go out, then a close frame
 * with CODE and REASON (cut to 123 bytes at a UTF-8 boundary; NULL for
 * none). A CODE no peer may receive (below 1000, 1004-1006, 1015-2999,
 * 5000 and up: an application's disconnect code) gives a close frame
 * without a status instead. No message is delivered or accepted for
 * sending afterwards. The client's close frame is awaited for
 * WS_CLOSE_WAIT_MS, then TCP is closed; on_close follows. Does nothing when
 * the connection is already closing.
 */
void ws_close(struct ws *ws, uint32_t code, const char *reason);
/* Ends the connection without the close handshake: messages already
 * queued go out, then TCP is closed; on_close follows. Does nothing when
 * the connection is already closing. */
void ws_end(struct ws *ws);
/* Closes the TCP connection now, dropping queued output; on_close follows
 * (from the flush point, not from inside this call). */
void ws_close_now(struct ws *ws);

/* Whether ws_send would refuse (the connection is closing or closed). */
bool ws_closing(const struct ws *ws);
/* The close code sent or received in the close handshake (1006 when the
 * connection ended without one; 0 while open). Meant for on_close. */
uint16_t ws_close_code(const struct ws *ws);

/* THE WebSocket part of the flush point: frames the messages every
 * connection queued this iteration and hands them to the conn layer, and
 * runs the on_close of connections that ended. The worker's flush point
 * calls it (transport_flush) right before conn_flush. */
void ws_flush_all(struct worker *w);

/* Sec-WebSocket-Accept for KEY (as sent, 24 base64 characters): writes 28
 * characters and a NUL into OUT. (Exported for tests.) */
void ws_accept_key(const char *key, char out[29]);

#endif
