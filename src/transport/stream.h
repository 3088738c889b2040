/*
 * stream.h - the HTTP stream writer that the streaming transports share: a
 * response whose body carries protocol messages for as long as the session
 * lives (HTTP-streaming, SSE, the unidirectional ones, SockJS's streaming
 * receivers).
 *
 * The transport starts a stream from a request (hs_start): the response
 * head goes out once, then every message the session queues is kept by
 * reference and, at the flush point, the messages queued during the loop
 * iteration are framed by the transport's frame function into one batch,
 * which leaves as one HTTP/1.1 chunk (HTTP/1.0: bytes as they are, and the
 * connection closes at the end) and one write with everything else queued
 * on the connection. A publication encoded once is therefore queued on
 * every stream by reference, as on WebSocket.
 *
 * The stream watches its connection: the client closing it (bytes it sends
 * meanwhile are held, unparsed, for the HTTP layer should the response end
 * with keep-alive: a pipelined request), a write that stays blocked for
 * STREAM_WRITE_TIMEOUT_MS, and bytes queued over the stream's limit (the
 * transport's on_slow). Whatever ends it, on_close runs exactly once,
 * never from inside an hs_* call the transport made.
 */
#ifndef ROTOR_STREAM_H
#define ROTOR_STREAM_H

#include "rotor.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rbuf;
struct rseg;
struct http_req;
struct hs;
struct hs_batch;

/* A write blocked this long ends the stream (Centrifugo: one second per
 * streaming write). */
#define STREAM_WRITE_TIMEOUT_MS 1000

/* Frames messages M[0..N) (conn.h's segments: LEN bytes of B from OFF)
 * as one batch by appending its bytes to OUT with hs_batch_ref /
 * hs_batch_copy. UD is the stream's. */
typedef void hs_frame_fn(struct hs_batch *out, const struct rseg *m, size_t n, void *ud);

/* Appends LEN bytes of B from OFF by reference (B must not change any
 * more), or a copy of P. */
void hs_batch_ref(struct hs_batch *out, struct rbuf *b, size_t off, size_t len);
void hs_batch_copy(struct hs_batch *out, const void *p, size_t n);

/* Framings the transports share: each message followed by '\n' (JSON
 * streams), the messages as they are (varint-delimited protobuf), and
 * "data: <message>\n\n" per message (SSE). */
hs_frame_fn hs_frame_lines, hs_frame_raw, hs_frame_sse;

/* Appends to OUT the header lines of every streaming response besides its
 * Content-Type: Centrifugo's no-cache headers, "Connection: keep-alive" for
 * HTTP/1.1, and REQ's CORS headers (transport_cors). */
struct jw;
void hs_headers(const struct http_req *req, struct jw *out);

struct hs_ops {
	hs_frame_fn *frame;
	/* The worker stops gracefully: the transport should end the session
	 * (3001) and then the stream. NULL: hs_end. */
	void (*on_drain)(struct hs *s, void *ud);
	/* Queued bytes would pass the queue limit: the stream drops what is
	 * not framed yet; the transport ends the session (3008) and the
	 * stream (hs_end), after queuing its last message if it has one: the
	 * limit no longer applies. NULL: the stream closes at once. */
	void (*on_slow)(struct hs *s, void *ud);
	/* The stream is gone, whatever the reason: free UD. Exactly once. */
	void (*on_close)(struct hs *s, void *ud);
};

/*
 * Takes REQ's connection over and starts a 200 response on it: the head
 * with Content-Type CTYPE (NULL: none) and EXTRA (complete header lines, or
 * NULL), "Transfer-Encoding: chunked" for HTTP/1.1 (HTTP/1.0: no length, the
 * connection closes at the end), then PRELUDE (LEN bytes, may be 0) as the
 * first chunk. QUEUE_MAX bounds the bytes queued and not yet written (0:
 * none). Never fails: the stream exists until on_close.
 */
struct hs *hs_start(struct http_req *req, const char *ctype, const char *extra, const void *prelude,
		    size_t len, size_t queue_max, const struct hs_ops *ops, void *ud);

/* Queues one message by reference / a copy of it. Returns RT_OK; RT_CLOSED
 * when the stream is ending or gone, or when the message would pass the
 * queue limit (on_slow was called; nothing queued). An empty message is
 * ignored. */
int hs_send(struct hs *s, struct rbuf *b, size_t off, size_t len);
int hs_send_copy(struct hs *s, const void *p, size_t n);
/* What S sends next answers a command of an earlier loop iteration: ahead
 * of fan-out (conn_answering). */
void hs_answering(struct hs *s);

/* Queues one chunk of its own made of the N segments V (conn.h's: LEN
 * bytes of B from OFF each, by reference), written as they are: the frame
 * function does not see them. For protocols whose every frame must arrive
 * in a chunk of its own (SockJS). A stream uses either this or hs_send.
 * Same returns as hs_send; the limit counts the N segments together. */
int hs_send_chunk(struct hs *s, const struct rseg *v, size_t n);

/* The UD that hs_start was given. */
void *hs_ud(const struct hs *s);

/* Bytes framed onto the connection so far (response body, prelude
 * excluded), for transports that end a response at a size limit. */
uint64_t hs_body_bytes(const struct hs *s);

/* Ends the response: what is queued is framed and written, then the last
 * chunk; the connection is then closed, or with KEEP_ALIVE (HTTP/1.1 only)
 * handed back to the HTTP layer for the client's next request. Nothing
 * can be sent afterwards; on_close follows. Does nothing when ending. */
void hs_end(struct hs *s, bool keep_alive);

/* Closes the connection now, dropping what is queued; on_close follows. */
void hs_close_now(struct hs *s);

/* Whether hs_send would refuse (ending or gone). */
bool hs_closing(const struct hs *s);

#endif
