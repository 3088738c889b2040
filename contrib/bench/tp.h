/*
 * tp.h - client transports: how a generator connection's Centrifugo
 * frames travel to rotord and back. The scenarios (gen.c) name this
 * interface only; each member is a struct tp_kind in its own file:
 *
 *   websocket             tp_ws.c         /connection/websocket, JSON or protobuf
 *   http_stream, sse      tp_emulation.c  a streaming response, commands through
 *                                         POST /emulation (client-protocol.md §8.2-8.4)
 *   sockjs-websocket,     tp_sockjs.c     SockJS (sockjs.md), JSON only
 *   sockjs-xhr-streaming
 *
 * A connection is opened with its first frame of commands (connect, then
 * the subscriptions), which each transport sends as centrifuge-js does:
 * WebSocket and SockJS in one message once open; the emulation transports
 * put the connect in the opening request and post the rest once the
 * connect reply has named the session. Whatever arrives is handed up as
 * protocol messages (newline-joined JSON or varint-delimited protobuf,
 * cfp_each's input), all the messages of one read at a time where the
 * framing allows.
 */
#ifndef TP_H
#define TP_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum tp_end {
	TP_END_CONNECT,         /* TCP connect failed (detail: errno) */
	TP_END_HANDSHAKE,       /* the opening exchange failed (detail: HTTP status, or 0) */
	TP_END_CLOSE,           /* the server closed it with a code (detail: the code) */
	TP_END_EOF,             /* the connection or its stream ended (detail: errno or 0) */
	TP_END_PROTO,           /* the server broke the transport's framing */
	TP_END_SEND,            /* a POST carrying commands failed (detail: its status,
				 * 0 when its connection was lost) */
};

struct tp_conn;

/* What a transport calls back. */
struct tp_ops {
	/* Protocol messages; p is valid during the call. */
	void (*on_message)(struct tp_conn *c, const uint8_t *p, size_t n, uint64_t now);
	/* The connection is over and closed (never after tp_close). */
	void (*on_end)(struct tp_conn *c, enum tp_end why, int detail);
};

/* The head of every member's connection struct. */
struct tp_conn {
	const struct tp_kind *kind;
	const struct tp_ops *ops;
	void *ud;               /* the caller's */
	bool protobuf;
};

/* Where rotord is, for every connection of the process. */
struct tp_env {
	struct sockaddr_in dst;
	const char *host;       /* Host header */
	int post_conns;         /* connections of the POST pool (hpool.h) */
	int post_depth;         /* POSTs in flight on each */
	unsigned k0;            /* the pool's first source address */
	bool deflate;           /* websocket: negotiate permessage-deflate */
};

struct tp_kind {
	const char *name;
	bool protobuf;          /* can carry --format protobuf */
	bool emulation;         /* commands go through POST /emulation */
	bool posts;             /* uses the POST pool */
	const char *rotord_conf; /* the config keys rotord needs for it (JSON members) */
	size_t size;            /* of its connection struct */
	void (*setup)(const struct tp_env *env);
	void (*teardown)(void);         /* NULL: nothing to do */
	/* Opens c from source address k with its first frame [first, n),
	 * copied. Returns 0 (then messages, or on_end) or an errno value. */
	int (*open)(struct tp_conn *c, unsigned k, const uint8_t *first, size_t n);
	/* Sends one frame of commands. Returns 0, or an errno value after
	 * which c is closed (on_end is not called). */
	int (*send)(struct tp_conn *c, const uint8_t *p, size_t n);
	void (*close)(struct tp_conn *c);
};

/* The transport called name, or NULL. */
const struct tp_kind *tp_find(const char *name);

/* Every transport's name, comma-separated. */
const char *tp_names(void);

/* Sets up transport k for this process: once, after sock_setup and
 * hcli_setup. */
void tp_setup(const struct tp_kind *k, const struct tp_env *env);

/* Closes what transport k holds for the process (the POST pool), once
 * every connection is closed. */
void tp_teardown(const struct tp_kind *k);

/* A closed connection of transport k, zeroed, or aborts. */
struct tp_conn *tp_new(const struct tp_kind *k, const struct tp_ops *ops, void *ud);

/* Opens c (closed) with the first frame; see tp_kind.open. */
int tp_open(struct tp_conn *c, unsigned k, bool protobuf, const uint8_t *first, size_t n);

/* See tp_kind.send. */
int tp_send(struct tp_conn *c, const uint8_t *p, size_t n);

/* Closes c at once and frees what it holds but itself; on_end is not
 * called. Safe inside callbacks and on a closed connection. */
void tp_close(struct tp_conn *c);

/* Closes and frees c. */
void tp_free(struct tp_conn *c);

/* For the members: the tp_end of a wsc.h or hsr.h ending. */
enum tp_end tp_end_of_wsc(int why);
enum tp_end tp_end_of_hsr(int why);

#endif
