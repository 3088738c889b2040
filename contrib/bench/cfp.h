/*
 * cfp.h - the slice of Centrifugo's client protocol a load generator needs:
 * the connect + subscribe commands, pongs, and sorting what the server
 * sends into replies, errors, publications and pings, in JSON and protobuf
 * (client-protocol.md sections 2-4); and HS256 connection tokens.
 */
#ifndef CFP_H
#define CFP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cfp_kind {
	CFP_PING,       /* empty reply: answer with cfp_pong */
	CFP_REPLY,      /* reply to command `id` */
	CFP_ERROR,      /* error reply to command `id`, code in `code` */
	CFP_PUB,        /* publication push; data/dlen: its data bytes */
	CFP_UNSUB,      /* the server ended a subscription (code) */
	CFP_DISCONNECT, /* disconnect push (code) */
	CFP_OTHER,      /* any other push */
	CFP_BAD,        /* not parseable */
};

struct cfp_msg {
	enum cfp_kind kind;
	uint32_t id, code;
	const uint8_t *data;
	size_t dlen;
	bool delta;             /* CFP_PUB: data is a fossil delta */
	const uint8_t *raw;     /* the whole message (without its delimiter) */
	size_t rawlen;
};

/* Writes into buf (cap bytes) one frame's payload with command 1 connect
 * (with token when not NULL) and command 2 subscribe to channel (asking
 * for fossil deltas with delta), and returns its length, or 0 if it does
 * not fit. */
size_t cfp_connect_subscribe(uint8_t *buf, size_t cap, bool protobuf,
			     const char *token, const char *channel, bool delta);

/* Writes into buf (cap bytes) one frame's payload with command `id`
 * presence_stats on channel, and returns its length, or 0 if it does not
 * fit. */
size_t cfp_presence_stats(uint8_t *buf, size_t cap, bool protobuf, uint32_t id, const char *channel);

/* Writes into buf (cap bytes) one frame's payload with command `id` rpc
 * calling method (JSON data {}; protobuf none), and returns its length, or
 * 0 if it does not fit. */
size_t cfp_rpc(uint8_t *buf, size_t cap, bool protobuf, uint32_t id, const char *method);

/* Splits a frame of commands [p, p+n) after its first command: returns the
 * first one's length (JSON: up to its newline; protobuf: with its length
 * prefix, as the http_stream request body wants it) and sets *rest to
 * where the others start (n if none). */
size_t cfp_first(bool protobuf, const uint8_t *p, size_t n, size_t *rest);

/* How many bytes at the start of [p, p+n) are whole protocol messages of
 * a stream (http_stream's body): JSON up to and with the last newline,
 * protobuf whole varint-delimited messages. */
size_t cfp_complete(bool protobuf, const uint8_t *p, size_t n);

/* Copies the session and node of a connect reply (one message, as
 * cfp_msg.raw) into session and node (cap bytes each, NUL-terminated).
 * Returns 0, or -1 when the reply has no session. */
int cfp_session(bool protobuf, const uint8_t *p, size_t n, char *session, char *node, size_t cap);

/* Writes into buf (cap bytes) the body of a POST /emulation carrying the
 * frame of commands [data, data+n) to session on node: JSON (the frame as
 * a string) or a protobuf EmulationRequest (client-protocol.md §8.4).
 * Returns its length, or 0 if it does not fit: cap >= CFP_EMULATION_MAX(n)
 * always does. */
#define CFP_EMULATION_MAX(n) (6 * (n) + 160)
size_t cfp_emulation(uint8_t *buf, size_t cap, bool protobuf, const char *node, const char *session,
		     const uint8_t *data, size_t n);

/* The pong payload: "{}" (text) or the single byte 0 (binary). */
const char *cfp_pong(bool protobuf, size_t *len);

/* Splits one transport message into protocol messages (newline-joined JSON
 * or varint-delimited protobuf) and calls fn on each, stopping early when
 * fn returns non-zero. Returns 0, or -1 when the framing is broken (after
 * calling fn with CFP_BAD). */
int cfp_each(bool protobuf, const uint8_t *p, size_t n,
	     int (*fn)(void *arg, const struct cfp_msg *m), void *arg);

/* An HS256 JWT {"sub":user,"exp":exp} signed with secret, into out (cap
 * bytes, NUL-terminated). Returns its length, or 0 if it does not fit. */
size_t cfp_token(const char *secret, const char *user, long long exp, char *out, size_t cap);

#endif
