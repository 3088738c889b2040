/*
 * proto.h - Centrifugo's client protocol (the "v2" {"id":N,"<method>":{...}}
 * form), JSON and protobuf: decoding the commands of one transport frame and
 * encoding replies and pushes. Field names, numbers and omit-when-empty
 * rules are those of ../shared/ref/client-protocol.md §2-3, byte for byte.
 *
 * Decoded strings and byte fields are spans (struct pstr): into the frame for
 * protobuf and for raw JSON values (`data`, `info`), into the batch's arena
 * for JSON strings that had to be unescaped. Everything lives as long as the
 * frame and the batch.
 *
 * Encoders append one complete message to a struct jw: for protobuf with its
 * varint length prefix (so messages simply concatenate into a frame), for
 * JSON without any separator (the transport joins messages with '\n').
 */
#ifndef ROTOR_PROTO_H
#define ROTOR_PROTO_H

#include "rotor.h"
#include "json.h"
#include <stdbool.h>
#include <stdint.h>

enum proto_fmt { PROTO_JSON = 0, PROTO_PB = 1 };

/* A span of bytes; for strings not NUL-terminated. n == 0 means absent/empty. */
struct pstr {
	const char *p;
	size_t n;
};

#define PSTR(s) ((struct pstr){ (s), sizeof(s) - 1 })
static inline struct pstr pstr_c(const char *s) { struct pstr r = { s, s ? __builtin_strlen(s) : 0 }; return r; }
/* S into BUF (SIZE bytes) as a NUL-terminated string; false, BUF left as
 * it was, when it does not fit. An empty S, whose p may be NULL, gives "". */
static inline bool pstr_copy(char *buf, size_t size, struct pstr s)
{
	if (s.n >= size)
		return false;
	if (s.n)
		__builtin_memcpy(buf, s.p, s.n); /* memcpy from NULL is undefined, even of 0 bytes */
	buf[s.n] = '\0';
	return true;
}

enum cmd_type {
	CMD_EMPTY = 0,   /* no request field: with id 0 a pong, with id > 0 a violation (3501) */
	CMD_CONNECT,
	CMD_SUBSCRIBE,
	CMD_UNSUBSCRIBE,
	CMD_PUBLISH,
	CMD_PRESENCE,
	CMD_PRESENCE_STATS,
	CMD_HISTORY,
	CMD_RPC,
	CMD_SEND,
	CMD_REFRESH,
	CMD_SUB_REFRESH,
};

struct sub_req {
	struct pstr channel, token, epoch, delta, data;
	uint64_t offset;
	bool recover, positioned, recoverable, join_leave;
	bool has_tf;      /* a tags filter was sent (rotor answers 107) */
	int64_t flag;     /* bit 1 compaction (ignored), bit 2 reject unrecovered */
	int32_t type;     /* 0 = stream; anything else is answered 108 */
};

struct connect_sub {      /* one entry of ConnectRequest.subs */
	struct pstr channel;
	struct sub_req req;
};

struct connect_hdr {      /* one entry of ConnectRequest.headers (headers emulation) */
	struct pstr name, value;
};

struct connect_req {
	struct pstr token, data, name, version;
	struct connect_sub *subs;  /* in the batch's arena */
	size_t nsubs;
	struct connect_hdr *hdrs;  /* in the batch's arena, in the order sent (a repeat: the last wins) */
	size_t nhdrs;
};

struct cmd {
	uint32_t id;
	enum cmd_type type;
	union {
		struct connect_req connect;
		struct sub_req subscribe;
		struct { struct pstr channel; } unsubscribe, presence, presence_stats;
		struct { struct pstr channel, data; int32_t type; } publish;
		struct {
			struct pstr channel;
			int32_t limit;
			bool has_since, reverse;
			uint64_t since_offset;
			struct pstr since_epoch;
		} history;
		struct { struct pstr method, data; } rpc;
		struct { struct pstr data; } send;
		struct { struct pstr token; } refresh;
		struct { struct pstr channel, token; int32_t type; } sub_refresh;
	};
};

/* The commands of one frame, in order. */
struct cmd_batch {
	struct cmd *v;
	size_t n;
	void *arena;          /* owned: unescaped strings, subs arrays */
};

/* Decodes every command of FRAME (JSON: lines joined by '\n', a final line
 * without '\n' allowed, empty lines skipped; protobuf: varint-delimited).
 * Returns RT_OK, or RT_INVAL when anything is undecodable, the frame holds
 * no command, or it holds more than MAX commands (the caller disconnects
 * with 3501). Unknown fields are ignored. B must be freed with
 * proto_batch_free whatever the result. */
int proto_decode(enum proto_fmt f, const char *frame, size_t len, size_t max, struct cmd_batch *b);
void proto_batch_free(struct cmd_batch *b);

/* A bare ConnectRequest (the unidirectional transports send one instead of
 * a Command), decoded into a batch of one CMD_CONNECT command with id 0.
 * Empty input (JSON: blank, or null as Go decodes it into a pointer) is an
 * empty request. RT_OK or RT_INVAL; B must
 * be freed with proto_batch_free whatever the result. */
int proto_decode_connect(enum proto_fmt f, const char *msg, size_t n, struct cmd_batch *b);

/* The body of an /emulation POST: EmulationRequest{node = 1, session = 2,
 * data = 3}. In JSON `data` is a string holding the newline-joined
 * commands; in protobuf, bytes holding varint-delimited commands. Spans
 * point into MSG or into B's arena (free B with proto_batch_free whatever
 * the result). RT_OK or RT_INVAL (not an object, a field of the wrong
 * type, undecodable). */
struct emu_req {
	struct pstr node, session, data;
};
int proto_decode_emulation(enum proto_fmt f, const char *msg, size_t n, struct emu_req *r, struct cmd_batch *b);

/* ---- what replies and pushes carry -------------------------------------- */

struct client_info {
	struct pstr user, client, conn_info, chan_info;  /* user and client always written */
};

struct tag { struct pstr key, value; };

struct publication {
	struct pstr data;
	const struct client_info *info;  /* NULL: none */
	uint64_t offset;                 /* 0: omitted */
	const struct tag *tags;
	size_t ntags;
	int64_t time;                    /* 0: omitted */
	bool delta;                      /* data is a fossil delta of the previous one */
	bool data_string;                /* JSON: data goes as a JSON string of its bytes
					  * (a subscriber that negotiated delta) */
};

struct sub_result {
	bool expires, recoverable, recovered, positioned, was_recovering, delta;
	uint32_t ttl;
	struct pstr epoch, data;
	uint64_t offset;
	const struct publication *pubs;  /* recovered publications */
	size_t npubs;
};

struct connect_sub_result {
	struct pstr channel;
	struct sub_result res;
};

struct connect_result {
	struct pstr client, version, data, session, node;
	bool expires, pong;
	uint32_t ttl, ping;
	int64_t time;
	const struct connect_sub_result *subs;
	size_t nsubs;
};

/* Encoders. Each appends one message to OUT and returns RT_OK, or RT_INVAL
 * when a raw payload cannot be written in FMT (bytes that are not valid JSON
 * in a JSON message: the caller disconnects that client with 3506); OUT is
 * then unchanged. */
int proto_reply_error(struct jw *out, enum proto_fmt f, uint32_t id, uint32_t code,
		      const char *message, bool temporary);
/* Empty results: unsubscribe, publish ({"id":N,"<type>":{}}). */
int proto_reply_empty(struct jw *out, enum proto_fmt f, uint32_t id, enum cmd_type type);
int proto_reply_connect(struct jw *out, enum proto_fmt f, uint32_t id, const struct connect_result *r);
int proto_reply_subscribe(struct jw *out, enum proto_fmt f, uint32_t id, const struct sub_result *r);
int proto_reply_presence(struct jw *out, enum proto_fmt f, uint32_t id,
			 const struct client_info *v, size_t n);
int proto_reply_presence_stats(struct jw *out, enum proto_fmt f, uint32_t id,
			       uint32_t num_clients, uint32_t num_users);
int proto_reply_history(struct jw *out, enum proto_fmt f, uint32_t id,
			const struct publication *v, size_t n, struct pstr epoch, uint64_t offset);
/* The bare PresenceResult JSON object {"presence":{"<client>":{...}}}, the
 * server API's presence result. */
int proto_presence_result(struct jw *out, const struct client_info *v, size_t n);
/* The bare HistoryResult JSON object {"publications":[...],"epoch":..,
 * "offset":N}: the server API's history result has the same shape. */
int proto_history_result(struct jw *out, const struct publication *v, size_t n, struct pstr epoch,
			 uint64_t offset);
int proto_reply_rpc(struct jw *out, enum proto_fmt f, uint32_t id, struct pstr data);
/* refresh and sub_refresh results: {"expires":true,"ttl":N} or {}. */
int proto_reply_refresh(struct jw *out, enum proto_fmt f, uint32_t id, enum cmd_type type,
			bool expires, uint32_t ttl);

/* Pushes ({"push":{...}} / Reply{push}). */
int proto_push_pub(struct jw *out, enum proto_fmt f, struct pstr channel, const struct publication *p);
int proto_push_join(struct jw *out, enum proto_fmt f, struct pstr channel, const struct client_info *ci);
int proto_push_leave(struct jw *out, enum proto_fmt f, struct pstr channel, const struct client_info *ci);
int proto_push_unsubscribe(struct jw *out, enum proto_fmt f, struct pstr channel, uint32_t code,
			   const char *reason);
int proto_push_subscribe(struct jw *out, enum proto_fmt f, struct pstr channel, const struct sub_result *r);
int proto_push_message(struct jw *out, enum proto_fmt f, struct pstr data);
int proto_push_disconnect(struct jw *out, enum proto_fmt f, uint32_t code, const char *reason);
int proto_push_refresh(struct jw *out, enum proto_fmt f, bool expires, uint32_t ttl);
/* The first message of a unidirectional session: Push{connect: Connect}
 * (its own field numbers; R's fields as for proto_reply_connect). */
int proto_push_connect(struct jw *out, enum proto_fmt f, const struct connect_result *r);
/* A server ping: {} / the single byte 0x00. */
int proto_ping(struct jw *out, enum proto_fmt f);

/* The text of client protocol error CODE ("permission denied"), and whether
 * it is temporary, per client-protocol.md §5.1. */
const char *proto_error_text(uint32_t code);
bool proto_error_temporary(uint32_t code);
/* The reason text of disconnect CODE ("bad request"), §5.3. */
const char *proto_disconnect_text(uint32_t code);

/* ---- additions -------------------------------------------------------- */

/* The reason text of unsubscribe push CODE ("insufficient state"), §5.2.
 * This and the three functions above answer NULL for a code the protocol
 * does not define (application codes bring their own text); encoders omit
 * a NULL message or reason. */
const char *proto_unsubscribe_text(uint32_t code);

#endif
