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
};

/* Writes into buf (cap bytes) one frame's payload with command 1 connect
 * (with token when not NULL) and command 2 subscribe to channel, and
 * returns its length, or 0 if it does not fit. */
size_t cfp_connect_subscribe(uint8_t *buf, size_t cap, bool protobuf,
			     const char *token, const char *channel);

/* The pong payload: "{}" (text) or the single byte 0 (binary). */
const char *cfp_pong(bool protobuf, size_t *len);

/* Splits one WebSocket message into protocol messages (newline-joined JSON
 * or varint-delimited protobuf) and calls fn on each, stopping early when
 * fn returns non-zero. Returns 0, or -1 when the framing is broken (after
 * calling fn with CFP_BAD). */
int cfp_each(bool protobuf, const uint8_t *p, size_t n,
	     int (*fn)(void *arg, const struct cfp_msg *m), void *arg);

/* An HS256 JWT {"sub":user,"exp":exp} signed with secret, into out (cap
 * bytes, NUL-terminated). Returns its length, or 0 if it does not fit. */
size_t cfp_token(const char *secret, const char *user, long long exp, char *out, size_t cap);

#endif
