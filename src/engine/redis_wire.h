/*
 * redis_wire.h - Centrifugo's Redis layout, byte for byte
 * (ref/redis-engine.md §2, §3, §4, §6, §7): key and channel names, the
 * channel→shard hash, the frames on {p}.client.CH, the protobuf messages
 * stored and published (Publication, ClientInfo, controlpb.Command and what
 * it carries), the Lua scripts, new epochs. No I/O: pure functions, so that
 * the tests check every byte against the reference.
 *
 * Decoders return views into the input (no copies): valid while it is.
 */
#ifndef ROTOR_REDIS_WIRE_H
#define ROTOR_REDIS_WIRE_H

#include "proto.h"
#include "json.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- names (§2) ---- */

enum rw_name {
	RW_CLIENT,            /* {p}.client.CH            PUB/SUB */
	RW_STREAM,            /* {p}.stream.CH */
	RW_STREAM_META,       /* {p}.stream.meta.CH */
	RW_RESULT,            /* {p}.result.CH.<KEY>      idempotency */
	RW_PRES_DATA,         /* {p}.presence.data.CH */
	RW_PRES_EXPIRE,       /* {p}.presence.expire.CH */
	RW_PRES_USER_CLIENTS, /* {p}.presence.user.clients.CH */
	RW_PRES_USER_EXPIRE,  /* {p}.presence.user.expire.CH */
};

/* Appends name KIND of channel CH to OUT (not NUL-terminated; OUT->len
 * grows), with CH as a hash tag {CH} when CLUSTER. KEY is RW_RESULT's
 * idempotency key, ignored otherwise. */
void rw_name(struct jw *out, const char *prefix, bool cluster, enum rw_name kind, struct pstr ch,
	     struct pstr key);

/* The node-level channels: {p}.control, {p}.node.<uid>, {p}.shard.<i>. */
void rw_control(struct jw *out, const char *prefix);
void rw_node(struct jw *out, const char *prefix, struct pstr uid);
void rw_shard(struct jw *out, const char *prefix, unsigned i);

/* The channel a {p}.client.… PUB/SUB name is for (without the prefix part,
 * and without the braces when CLUSTER); false when NAME is not one. */
bool rw_client_channel(struct pstr name, const char *prefix, bool cluster, struct pstr *ch);

/* ---- sharding (§7.1) ---- */

uint64_t rw_fnv1a64(const void *p, size_t n);
/* Jump consistent hash of KEY over N buckets, Go's double arithmetic. */
unsigned rw_jump(uint64_t key, unsigned n);
/* Channel CH's shard among N: rw_jump(rw_fnv1a64(CH), N); 0 when N <= 1. */
unsigned rw_shard_of(struct pstr ch, unsigned n);

/* ---- protobuf (§3.1) ---- */

/* Publication as a Centrifugo broker stores and publishes it: data, info
 * (when P->info), tags, time (ms); no offset, no epoch. DELTA sets field 8. */
void rw_pub_encode(struct jw *out, const struct publication *p, bool delta);

/* A decoded Publication: P's pointers go into the input, into CI (when
 * info is present; with CI NULL the info is checked but not kept) and
 * into TAGS (up to MAXTAGS kept; more are skipped). OFFSET field 6 when
 * present, DELTA field 8 (DELTA may be NULL). Unknown fields are skipped.
 * 0, or -1 when malformed. */
int rw_pub_decode(const char *b, size_t n, struct publication *p, struct client_info *ci,
		  struct tag *tags, size_t maxtags, bool *delta);

/* The same with field 16 version (0 = none), which struct publication does
 * not carry: an API publish with a version writes it, a receiver may read
 * it. VERSION may be NULL when decoding. */
void rw_pub_encode_v(struct jw *out, const struct publication *p, bool delta, uint64_t version);
int rw_pub_decode_v(const char *b, size_t n, struct publication *p, struct client_info *ci,
		    struct tag *tags, size_t maxtags, bool *delta, uint64_t *version);

void rw_info_encode(struct jw *out, const struct client_info *ci);
int rw_info_decode(const char *b, size_t n, struct client_info *ci);

/* ---- frames on {p}.client.CH (§3.2) ---- */

enum rw_frame_type { RW_F_PUB, RW_F_JOIN, RW_F_LEAVE };

struct rw_frame {
	enum rw_frame_type type;
	uint64_t offset;       /* p1/d1: the header's; raw: 0 */
	struct pstr epoch;     /* p1/d1: the header's, any length; raw: empty */
	struct pstr body;      /* the Publication (cur for d1) or ClientInfo protobuf */
	struct pstr prev;      /* d1: the previous Publication, maybe empty */
	bool delta_frame;      /* d1 */
};

/* Parses a message received on {p}.client.CH: raw, __p1:…__, __d1:…,
 * __j__, __l__. 0, or -1 for an unknown or malformed frame. */
int rw_frame_parse(const char *b, size_t n, struct rw_frame *f);

/* __j__<ClientInfo> or __l__<ClientInfo>. */
void rw_join_leave(struct jw *out, bool join, const struct client_info *ci);

/* ---- controlpb.Command (§6.2) ---- */

enum rw_cmd_type {
	RW_CMD_NONE = 0,
	RW_CMD_NODE = 4,
	RW_CMD_UNSUBSCRIBE = 5,
	RW_CMD_DISCONNECT = 6,
	RW_CMD_SHUTDOWN = 7,
	RW_CMD_SURVEY_REQUEST = 8,
	RW_CMD_SURVEY_RESPONSE = 9,
	RW_CMD_SUBSCRIBE = 10,
	RW_CMD_NOTIFICATION = 11,
	RW_CMD_REFRESH = 12,
};

struct rw_node_info {
	struct pstr uid, name, version;
	uint32_t num_clients, num_users, num_channels, uptime, num_subs;
};

struct rw_cmd {
	struct pstr uid;               /* the sender */
	enum rw_cmd_type type;
	union {
		struct rw_node_info node;
		struct {
			struct pstr channel, user, client, session, reason;
			uint32_t code;
			bool all_users;
		} unsubscribe;
		struct {
			struct pstr user, client, session, reason;
			uint32_t code;
			struct pstr whitelist;   /* protobuf holding field 2 entries (and maybe others): iterate with rw_next_string */
			bool all_users;
		} disconnect;
		struct {
			struct pstr user, channel, channel_info, client, data, session, since_epoch;
			bool emit_presence, emit_join_leave, push_join_leave, position, recover, has_since, all_users;
			int64_t expire_at;
			uint64_t since_offset;
		} subscribe;
		struct {
			struct pstr user, client, session, info;
			bool expired, all_users;
			int64_t expire_at;
		} refresh;
		struct {
			uint64_t id;
			struct pstr op, data;
		} survey_request;
		struct {
			uint64_t id;
			uint32_t code;
			struct pstr data;
		} survey_response;
		struct {
			struct pstr op, data;
		} notification;
	};
};

/* Fields of control.proto that struct rw_cmd does not hold (Node.metrics
 * and data, Subscribe.source, every label_filter, Disconnect.reconnect)
 * are never written and are skipped when read. */
void rw_cmd_encode(struct jw *out, const struct rw_cmd *c);
/* 0; -1 malformed (any sub-message). An unknown or absent sub-message
 * gives RW_CMD_NONE; of several, the first in centrifuge's handleControl
 * order (node, shutdown, unsubscribe, subscribe, disconnect, survey
 * request, survey response, notification, refresh) is decoded. */
int rw_cmd_decode(const char *b, size_t n, struct rw_cmd *c);

/* Disconnect's whitelist: the next client id (field 2) from the bytes that
 * rw_cmd_decode left in WL, which are the whole Disconnect message, or that
 * rw_cmd_set_whitelist wrote; other fields are stepped over. WL advances;
 * false at the end. The encoder takes the whitelist as an array, written
 * into SCRATCH: C points into it until SCRATCH is written again. */
bool rw_next_string(struct pstr *wl, struct pstr *out);
void rw_cmd_set_whitelist(struct jw *scratch, const struct pstr *v, size_t n, struct rw_cmd *c);

/* Survey op "channels" (§6.4): ChannelsRequest{1 pattern},
 * ChannelsResult{1 map<string, ChannelInfo{1 num_clients}>}. */
void rw_channels_request(struct jw *out, struct pstr pattern);
int rw_channels_request_decode(const char *b, size_t n, struct pstr *pattern);
void rw_channels_result_add(struct jw *out, struct pstr channel, uint32_t num_clients);
typedef void rw_channel_fn(void *arg, struct pstr channel, uint32_t num_clients);
int rw_channels_result_decode(const char *b, size_t n, rw_channel_fn *fn, void *arg);

/* ---- scripts (§4); KEYS and ARGV exactly as there ---- */

extern const char rw_script_publish_stream[];      /* §4.1, 3 keys, 11 args */
extern const char rw_script_publish_idempotent[];  /* §4.3, 1 key, 4 args */
extern const char rw_script_history_stream[];      /* §4.4, 2 keys, 6 args */
extern const char rw_script_presence_add[];        /* §4.7, 4 keys, 7 args */
extern const char rw_script_presence_rem[];        /* §4.7, 4 keys, 4 args */
extern const char rw_script_presence_get[];        /* §4.7, 2 keys, 2 args */
extern const char rw_script_presence_stats[];      /* §4.7, 4 keys, 2 args */

/* ---- epochs (§5) ---- */

/* A new epoch as Centrifugo ≥ 6.8 makes them: 8 random ASCII letters from
 * a CSPRNG, NUL-terminated. */
void rw_epoch_new(char out[9]);

/* Whole seconds of a duration in ms, truncated as Go's int(d.Seconds()). */
uint64_t rw_secs(uint64_t ms);

#endif
