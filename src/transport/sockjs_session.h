/*
 * sockjs_session.h - SockJS sessions (sockjs.md §5, §6): the session
 * registry of a SockJS service, receivers, buffering, framing, timeouts and
 * closing. Prefix sjs_. sockjs.c owns the services and answers the HTTP
 * requests; this file keeps what outlives a request.
 *
 * A session runs an application (struct sjs_app): Centrifugo's client
 * protocol, or the protocol suite's echo. The application sends messages
 * with sjs_send (by reference: a publication's rbuf is shared) and ends
 * the session with sjs_close; it learns of messages from the client, of a
 * graceful stop and of the session's end through its callbacks.
 *
 * HTTP sessions are found by their id in their service's registry; their
 * receivers come and go (one at a time). WebSocket sessions are their
 * socket: not in any registry, no timeouts.
 */
#ifndef ROTOR_SOCKJS_SESSION_H
#define ROTOR_SOCKJS_SESSION_H

#include "rotor.h"
#include "smap.h"
#include "sockjs_frame.h"
#include <stdbool.h>
#include <stdint.h>

struct worker;
struct rbuf;
struct http_req;
struct sjs;

/* What runs on a session. Callbacks are never called from inside an sjs_*
 * call the application made, so the application may call any sjs_*
 * function from any of them. */
struct sjs_app {
	/* The session opened; REQ is the request that opened it (readable
	 * during the call). Returns the application's state for the other
	 * callbacks. May send and close. */
	void *(*open)(struct sjs *s, const struct http_req *req);
	/* One message from the client, P[0..N) (valid during the call). */
	void (*message)(void *app, const char *p, size_t n);
	/* The worker stops gracefully: the application should end the session
	 * (sjs_close with 3001). */
	void (*drain)(void *app);
	/* The session is over for the application: it closed it, it timed out
	 * without a receiver, its receiver or socket went away. Free APP.
	 * Exactly once. */
	void (*gone)(void *app);
};

/* A SockJS service: one prefix and what it serves. sockjs.c fills it and
 * keeps it for the life of the worker (settings change in place). */
struct sjs_service {
	const char *name;             /* for logs */
	const struct sjs_app *app;
	size_t response_limit;        /* streaming responses end past this many bytes */
	bool join;                    /* one SockJS message per flush, the
	                               * application's messages joined by '\n'
	                               * (Centrifugo); else one each (echo) */
	bool websocket;               /* /<s>/<id>/websocket */
	bool raw_websocket;           /* <prefix>/websocket */
	bool cookie;                  /* JSESSIONID (sockjs.md §2.4) */
	struct smap sessions;         /* id -> struct sjs * (HTTP sessions) */
};

/* How long a session lives without a receiver (sockjs.md §5). */
#define SJS_DISCONNECT_DELAY_MS 5000

/* ---- the application's side ------------------------------------------------ */

/* Queues one message, LEN bytes of B from OFF, by reference (B must not
 * change any more), or a copy of P[0..N). Returns RT_OK; RT_CLOSED when
 * the session is closed, or when the message would take the session's
 * buffered bytes over client.queue_max_size: the session is then closed
 * with 3008 "slow" (what was buffered is dropped) and gone() follows. */
int sjs_send(struct sjs *s, struct rbuf *b, size_t off, size_t len);
int sjs_send_copy(struct sjs *s, const void *p, size_t n);

/* Closes the session with CODE and REASON: what is buffered is still
 * delivered, then the close frame c[CODE,"REASON"]; every later receiver
 * gets that frame until the session times out; nothing is accepted
 * afterwards. gone() follows (from the flush point). Does nothing when
 * closed already. */
void sjs_close(struct sjs *s, unsigned code, const char *reason);

/* ---- the endpoint's side ------------------------------------------------------- */

/* Answers REQ, a receiving request (xhr, xhr_streaming, eventsource,
 * htmlfile, jsonp: T) for session ID[0..IDN) of SVC, CB[0..CBN) the
 * checked callback of htmlfile and jsonp: opens the session if it is
 * unknown (after transport_admit: its refusal status is returned, nothing
 * answered), attaches REQ as its receiver, or answers with the close frame
 * (session closed) or c[2010,"Another connection still open"]. EXTRA are
 * the response's header lines (CORS, caching, cookie). Returns 0 once REQ
 * is answered (its connection now streams). */
int sjs_receive(struct http_req *req, struct sjs_service *svc, const char *id, size_t idn,
		enum sjf_transport t, const char *cb, size_t cbn, const char *extra);

/* Hands the messages M to session ID[0..IDN) of SVC, in order. Returns
 * RT_OK, or RT_CLOSED when there is no such session or it is closed
 * (404). */
int sjs_deliver(struct sjs_service *svc, const char *id, size_t idn, const struct sjf_msgs *m);

/* Upgrades REQ to a WebSocket session of SVC (websocket.c's admission:
 * origin and connection limit): SockJS framing, or with RAW none at all
 * (<prefix>/websocket). REQ is answered in every case. */
void sjs_websocket(struct http_req *req, struct sjs_service *svc, bool raw);

/* Every session of the worker: end gracefully (the application's drain). */
void sjs_drain(void);

/* The flush point: frames what sessions buffered this iteration for their
 * receivers, sends close frames, ends polls and full streams, tells
 * applications of closes they asked for. Before the WebSocket and stream
 * layers' flush. */
void sjs_flush(struct worker *w);

/* Per worker: W's wheel drives session timers. HEARTBEAT_MS (0: off) may
 * change on reload (sjs_set_heartbeat). */
void sjs_init(struct worker *w);
void sjs_set_heartbeat(int64_t ms);

#endif
