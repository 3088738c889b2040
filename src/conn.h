/*
 * conn.h - a client connection owned by one worker: its socket, its input
 * (read from a per-worker buffer pool only while there is data), its output
 * queue of shared reference-counted buffers, written once per loop iteration
 * by conn_flush_all, and one wheel timer for its deadlines.
 *
 * A protocol layer (HTTP, then WebSocket after an upgrade) plugs in through a
 * struct conn_ops and the conn's `ud` pointer, and may hand the connection to
 * another layer with conn_set_ops.
 */
#ifndef ROTOR_CONN_H
#define ROTOR_CONN_H

#include "rotor.h"
#include "wheel.h"
#include <ev.h>
#include <stdbool.h>

struct worker;
struct conn;

/* An immutable byte buffer shared by reference count: a message encoded once
 * and queued on many connections. Fill data[0..len) after rbuf_new, then
 * never change it once queued or shared. */
struct rbuf {
	uint32_t refs;
	uint32_t flags;  /* conn.c's own (private, growable copy buffers) */
	size_t len;
	size_t cap;
	char data[];
};

/* A buffer of LEN bytes (contents undefined) holding one reference. Aborts
 * on allocation failure like xmalloc. */
struct rbuf *rbuf_new(size_t len);
/* A new buffer holding a copy of the N bytes at P (one reference). */
struct rbuf *rbuf_copy(const void *p, size_t n);
/* Takes one more reference; returns B. */
struct rbuf *rbuf_ref(struct rbuf *b);
/* Drops one reference; the last frees B. NULL is ignored. */
void rbuf_unref(struct rbuf *b);

/* A list of messages queued above the conn layer (a transport's, until
 * its flush point frames them): segments of shared buffers, each holding a
 * reference. Allocated only while non-empty, so an idle connection holds a
 * NULL pointer. */
struct rseg {
	struct rbuf *b;
	size_t off, len;
};
struct rlist {
	uint32_t n, cap;
	struct rseg v[];
};

/* Appends LEN bytes of B from OFF to *L, taking a reference; *L is
 * allocated or grown as needed (aborts on allocation failure). */
void rlist_push(struct rlist **l, struct rbuf *b, size_t off, size_t len);
/* Appends a boundary: an entry with b == NULL and len 0, which ends a
 * message made of several segments (for layers that keep such messages in
 * one list: ws_send_parts, hs_send_chunk). */
void rlist_mark(struct rlist **l);
/* Appends the segments V[0..N) that hold bytes, then a boundary: one
 * message made of those parts. Returns its length. */
size_t rlist_push_parts(struct rlist **l, const struct rseg *v, size_t n);
/* The bytes of the segments V[0..N). */
size_t rseg_len(const struct rseg *v, size_t n);
/* Drops every reference and frees *L; *L is NULL afterwards. */
void rlist_free(struct rlist **l);

/*
 * What a protocol layer implements. Only on_read is required; every callback
 * may call conn_close on its conn. After conn_close (or conn_shutdown) no
 * callback runs any more except on_close.
 */
struct conn_ops {
	const char *name; /* in log lines: "http", "ws" */

	/* Bytes arrived. Returns how many it consumed. Consuming less than LEN
	 * keeps the rest for the next call, appended to by later reads (up to
	 * CONN_BUF_SIZE in all, beyond which the conn is closed); with
	 * conn_read_pause the rest waits until conn_read_resume. If the
	 * callback switched the ops (conn_set_ops), the rest goes at once to
	 * the new on_read. */
	size_t (*on_read)(struct conn *c, const char *data, size_t len);
	/* The peer closed its side. NULL: conn_close. */
	void (*on_eof)(struct conn *c);
	/* The deadline set with conn_set_deadline passed (it is then cleared).
	 * NULL: conn_close. */
	void (*on_timeout)(struct conn *c);
	/* The output queue has just been written completely. May be NULL. */
	void (*on_flushed)(struct conn *c);
	/* Output stayed blocked longer than the write timeout. NULL: conn_close. */
	void (*on_write_timeout)(struct conn *c);
	/* conn_queue refused data beyond the queue limit (once until the queue
	 * drains): the peer is too slow. NULL: conn_close. */
	void (*on_over_limit)(struct conn *c);
	/* The worker stops gracefully (conn_drain_all): finish what is in
	 * flight, then close. NULL: conn_shutdown. */
	void (*on_drain)(struct conn *c);
	/* The conn is closed: free what ud holds. The conn's memory lives until
	 * the end of the current flush, but it is no longer usable. May be NULL. */
	void (*on_close)(struct conn *c);
};

/* Input is read in pool buffers of this size. */
#define CONN_BUF_SIZE 16384
/* After conn_shutdown has written everything: how long the half-closed
 * socket is drained of what the peer still sends before closing, so that
 * the peer's unread bytes do not turn our last response into a reset. */
#define CONN_LINGER_MS 2000
/* "no deadline" */
#define CONN_NEVER INT64_MAX

struct conn_out; /* the output queue (conn.c) */
struct conn_tls; /* a TLS connection's state (conn.c) */
struct ssl_ctx_st; /* OpenSSL's SSL_CTX */
struct ssl_st;     /* OpenSSL's SSL */

/* Fields are conn.c's; other files may read w, fd, in, in_len and
 * out_bytes, and own ud. */
struct conn {
	struct worker *w;
	const struct conn_ops *ops;
	void *ud;                   /* the protocol layer's state */
	struct conn *next, *prev;   /* w->conns */
	struct conn *dirty_next;    /* w->dirty (also: closed, waiting to be freed) */
	ev_io io;                   /* one watcher: EV_READ and/or EV_WRITE */
	int fd;
	uint32_t flags;
	uint32_t read_iter;         /* w->iter when input last came */
	struct wheel_timer timer;   /* at min(deadline, wdeadline) */
	int64_t deadline;           /* the protocol layer's (or lingering) */
	int64_t wdeadline;          /* blocked output must drain by then */
	int64_t write_timeout_ms;   /* 0: none */
	char *in;                   /* pool buffer, only while input is held */
	size_t in_len;
	struct conn_out *out;       /* NULL while nothing is queued */
	size_t out_bytes;           /* queued and not yet written */
	size_t out_limit;           /* 0: unbounded */
	struct conn_tls *tls;       /* NULL: plaintext */
};

/* Sets up W's connection lists. Call once at worker start. */
void conn_init(struct worker *w);

/* Takes over FD (a connected, nonblocking socket): a new conn on W with
 * OPS/UD, reading. Never fails (allocation failure aborts). */
struct conn *conn_new(struct worker *w, int fd, const struct conn_ops *ops, void *ud);

/* Makes C, fresh from conn_new, a TLS server connection with context CTX
 * (the conn takes a reference): the handshake runs on C's events, then
 * the layer reads and queues plaintext as on any conn. Queued output is
 * sealed into records at the flush point, as many as fit in one send. The
 * layer's deadline bounds the handshake too (http.c's header timeout). */
void conn_start_tls(struct conn *c, struct ssl_ctx_st *ctx);

/* OpenSSL's key-log callback for the contexts of conn_start_tls (tls.c sets
 * it): keeps a connection's TLS 1.3 traffic secrets, so that conn.c can
 * seal and open its records itself once the handshake is done. */
void conn_tls_keylog(const struct ssl_st *ssl, const char *line);

/* For a connection another worker read from and handed over (handoff.c):
 * gives the LEN bytes it had read to C's layer at once, as if just read,
 * before anything read from the socket later. C must be fresh (no input
 * held). What the layer leaves unconsumed is held as after a read (at most
 * CONN_BUF_SIZE, else C is closed). C may be closed when this returns. */
void conn_feed(struct conn *c, const char *data, size_t len);

/* Hands C to another protocol layer. Deadline, write timeout and queue limit
 * stay as they are until the new layer sets its own. */
void conn_set_ops(struct conn *c, const struct conn_ops *ops, void *ud);

/* Queues LEN bytes of B from OFF (the queue takes its own reference), or a
 * copy of DATA. Nothing is written now: conn_flush_all writes all of a
 * conn's output in one writev. Returns RT_OK; RT_CLOSED after conn_close or
 * conn_shutdown (nothing queued); RT_AGAIN when the queue limit would be
 * exceeded (nothing queued; on_over_limit was called). */
int conn_queue(struct conn *c, struct rbuf *b, size_t off, size_t len);
int conn_queue_copy(struct conn *c, const void *data, size_t len);

/* What C queues next answers its input, though the input came in an
 * earlier iteration (a request the engine completed later): it goes to the
 * front of the flush, as an answer in the iteration of its input does,
 * not behind a fan-out. */
void conn_answering(struct conn *c);

/* Whether C is closed or shutting down (conn_shutdown): nothing more can be
 * queued on it. */
bool conn_closing(const struct conn *c);

/* Whether output is waiting for the socket to become writable (a layer may
 * then stop reading new requests until on_flushed). */
bool conn_write_blocked(const struct conn *c);

/* Bounds the queued bytes; 0 = unbounded. */
void conn_set_queue_limit(struct conn *c, size_t max_bytes);
/* Output that cannot be written at once must be written completely within
 * MS of first blocking (0 = no limit), else on_write_timeout. */
void conn_set_write_timeout(struct conn *c, int64_t ms);
/* Calls on_timeout at WHEN_MS (absolute, w->now_ms clock); CONN_NEVER
 * clears it. */
void conn_set_deadline(struct conn *c, int64_t when_ms);

/* Stops delivering input (and reading the socket) / starts again; input
 * held back is delivered from the event loop, not from inside resume. */
void conn_read_pause(struct conn *c);
void conn_read_resume(struct conn *c);

/* Closes gracefully: no more input is delivered and nothing more may be
 * queued; once the queue is written, the write side is shut down and the
 * socket drained for up to CONN_LINGER_MS, then closed. */
void conn_shutdown(struct conn *c);

/* Closes now: drops queued output, closes the fd, calls on_close. Safe from
 * any callback, also twice; the memory is freed in conn_flush_all. */
void conn_close(struct conn *c);

/* Every conn of W: on_drain (graceful stop) / conn_close (fast stop). */
void conn_drain_all(struct worker *w);
void conn_close_all(struct worker *w);

/* THE flush point, from the worker's ev_prepare: writes the output of the
 * conns that queued some (one send each, short ones batched through
 * io_uring; a write watcher only on EAGAIN)
 * and frees closed conns; nearly free when nothing is dirty. Conns that
 * answer input read since the last flush come first, then the rest in the
 * order they queued. Stops once BUDGET_NS (> 0) has passed and returns
 * true if conns are left: they keep their place (only new answers go
 * before them) and write whatever they queue meanwhile in the same call. */
bool conn_flush(struct worker *w, int64_t budget_ns);
/* conn_flush without a budget. */
void conn_flush_all(struct worker *w);

#endif
