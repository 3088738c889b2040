/*
 * client.h - one client session: Centrifugo's client protocol state machine,
 * the same for every transport and encoding. A transport (src/transport/)
 * hands the session whole frames and sends what the session queues; the
 * session never touches a socket and names no transport.
 */
#ifndef ROTOR_CLIENT_H
#define ROTOR_CLIENT_H

#include "rotor.h"
#include "proto.h"
#include <stdbool.h>

struct worker;
struct rbuf;
struct client;
struct http_req;

/* What the session needs from its transport. */
struct transport_ops {
	const char *name;  /* "websocket", "http_stream"...: for logs and proxies */
	/* Queues one encoded message by reference (the rbuf is shared). Returns
	 * RT_OK, or RT_CLOSED when the transport is closing (nothing queued).
	 * Over its queue limit the transport ends the connection with 3008
	 * itself and later calls client_transport_closed. */
	int (*send)(void *t, struct rbuf *b, size_t off, size_t len);
	/* Queues a copy of one encoded message. Same returns. */
	int (*send_copy)(void *t, const void *p, size_t n);
	/* Ends the connection with a disconnect CODE and REASON; the transport
	 * calls client_transport_closed when it is gone. */
	void (*close)(void *t, uint32_t code, const char *reason);
	/* Optional: what is sent next answers a command of an earlier loop
	 * iteration (the engine answered late), so it goes ahead of fan-out. */
	void (*answering)(void *t);
};

/* How a session behaves on its transport. */
enum {
	CLIENT_NATIVE_PING = 0x01, /* the transport checks liveness itself (WebSocket
	                            * ping frames): no protocol pings */
	CLIENT_UNI = 0x02,         /* unidirectional: one bare ConnectRequest in
	                            * (client_uni_connect), bare pushes out (the
	                            * transport unwraps Reply{push}), connect errors
	                            * become disconnects, pings expect no pong */
};

struct client_opts {
	enum proto_fmt fmt;
	unsigned flags;            /* CLIENT_* */
	struct pstr session;       /* emulation transports: ConnectResult.session
	                            * (with .node), matched by the API's session
	                            * filters; copied */
	const struct http_req *req; /* the HTTP request that opened the session, for the
	                            * headers proxies pass on (read in client_new); may be NULL */
};

/* Starts a session on a transport that completed its handshake. */
struct client *client_new(struct worker *w, const struct transport_ops *ops, void *t,
			  const struct client_opts *o);

/* Connects a CLIENT_UNI session with its bare ConnectRequest DATA (JSON or
 * protobuf, as the session's format; empty: an empty request). Returns 0
 * once connected; else the connect's own error or disconnect code (103,
 * 3500...; REASON, if not NULL, gets its text), after the session asked its
 * transport to close with the disconnect that maps it (3501 for a request
 * that does not decode). Transports that answer a failed connect with an
 * HTTP status instead (connect_code_to_http_response) use the code. */
uint32_t client_uni_connect(struct client *c, const char *data, size_t len, const char **reason);

/* One frame from the client: one or several commands. */
void client_frame(struct client *c, const char *data, size_t len);

/* The transport is gone (any reason): the session ends and is freed. */
void client_transport_closed(struct client *c);

/* The worker stops gracefully: ends the session with 3001 "shutdown". */
void client_shutdown(struct client *c);

/* Ends the session with a disconnect CODE and REASON. Safe to call more than
 * once and from fan-out; the session is freed later, by the transport. */
void client_disconnect(struct client *c, uint32_t code, const char *reason);

/* Queues a shared push (fan-out). */
void client_push(struct client *c, struct rbuf *b, size_t off, size_t len);

/* Adds the fan-out counts client_push kept since the last call to W's
 * stats block (its transport_messages_sent). Once per loop iteration. */
void client_count_flush(struct worker *w);

/* The enum stats_transport of a transport named NAME (transport_ops.name),
 * and the name of enum stats_transport I ("other" for the others). */
unsigned client_transport_index(const char *name);
const char *client_transport_name(unsigned i);

enum proto_fmt client_fmt(const struct client *c);

/* Keeps this worker's presence entries alive: extends its lease every
 * client.presence_update_interval (FIRST: at start, at once), and puts the
 * entries back if the lease had run out. */
void client_presence_lease(struct worker *w, bool first);

/* Per-worker set-up, and rebuilding what depends on the config (token keys,
 * channel rules) after a reload. */
void client_init(struct worker *w);
void client_reconfigure(struct worker *w);

/* Applies a server-side action (from the API, through the bus) to every
 * matching local session. */
struct node_target;
struct node_sub;
void client_apply_disconnect(const struct node_target *t, const struct pstr *whitelist, size_t n,
			     uint32_t code, struct pstr reason);
void client_apply_unsubscribe(const struct node_target *t, struct pstr channel);
void client_apply_subscribe(const struct node_target *t, const struct node_sub *s);
void client_apply_refresh(const struct node_target *t, bool expired, int64_t expire_at,
			  struct pstr info);

/* Checks a publication at OFFSET in EPOCH against positioned subscription
 * S: 1 when it is the next one (S advances) or carries no offset (a channel
 * without history), 0 when S had it already, -1 when it shows a gap or
 * another epoch: S is then ended (2500, or 3010 for a server-side one),
 * never fed across the gap. */
struct csub;
int client_position(struct csub *s, uint64_t offset, struct pstr epoch);

/* This worker lost bus records (it was lapped): every positioned
 * subscription may have missed publications. Client-side ones get the
 * unsubscribe push 2500 (the client resubscribes and recovers); a
 * server-side one ends its connection with 3010. Never a silent gap. */
void client_lost_state(void);

/* Local counts for info: sessions that completed connect, and distinct users
 * among them. */
size_t client_count(void);
/* A number that changes whenever a session connects or ends. */
uint64_t client_version(void);
/* Calls FN once per distinct user of the connected sessions ("" for
 * anonymous ones) with the number of its sessions on this worker. */
void client_each_user(void (*fn)(void *arg, const char *user, size_t n, uint64_t count), void *arg);

#endif
