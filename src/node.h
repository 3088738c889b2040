/*
 * node.h - operations on the whole node: every worker of this rotord, not
 * just the calling one. The server API and client sessions use these; they
 * travel to the other workers through the shared-memory bus, so a
 * publication accepted by any worker reaches every subscriber on every
 * worker, and a disconnect of user X reaches X wherever it is connected.
 *
 * The caller validates names and permissions first (channel.h); these
 * functions only fail for node-level reasons (RT_ERR: the caller answers
 * 100 internal server error).
 */
#ifndef ROTOR_NODE_H
#define ROTOR_NODE_H

#include "rotor.h"
#include "proto.h"
#include <stdint.h>

struct worker;

/* Who a server-side action is for. Empty fields match everything; at least
 * one of user and client is set by the API. */
struct node_target {
	struct pstr user, client, session;
};

/* Per-subscription overrides of channel options (token `subs[].override`,
 * API subscribe `override`): -1 = take the namespace's, 0 = off, 1 = on. */
struct chan_override {
	int8_t presence, join_leave, force_push_join_leave, force_recovery, force_positioning;
};
#define CHAN_OVERRIDE_NONE ((struct chan_override){ -1, -1, -1, -1, -1 })

struct node_pub {
	struct pstr channel;
	struct pstr data;                /* raw JSON (or binary from protobuf/b64data) */
	const struct client_info *info;  /* publisher, for client publishes; NULL from the API */
	const struct tag *tags;
	size_t ntags;
	bool skip_history;
	/* The publish API's idempotency_key (empty: none): a repeat within
	 * Centrifugo's 300 s answers the first result and publishes nothing.
	 * Its version (0: none) and version_epoch: with history, a version
	 * the stream has passed is dropped and answers the stream's top. */
	struct pstr idempotency_key;
	uint64_t version;
	struct pstr version_epoch;
	bool delta;                      /* fossil deltas to the subscribers that negotiated
					  * them (API `delta`, namespace delta_publish) */
	/* The channel's history options (the caller resolved the namespace):
	 * history is kept when size and ttl are both set and not skip_history. */
	uint32_t history_size;
	uint64_t history_ttl_ms, history_meta_ttl_ms;
};

/* Epochs are opaque strings: rotor's own are 8 letters, Centrifugo wrote
 * 10-digit unix times before v6.8 into a Redis both may share
 * (redis-engine.md §10.5). Longer ones are refused as unknown. */
#define NODE_EPOCH_MAX 32

struct node_pub_result {
	uint64_t offset;   /* 0 when the channel keeps no history */
	char epoch[NODE_EPOCH_MAX + 1];  /* "" when the channel keeps no history */
	bool suppressed;   /* an idempotency key seen before, or a version passed:
	                    * nothing new was published */
};

/* The operations that the engine serves (the shared-memory one, or Redis
 * with several nodes) complete through a callback, called exactly once:
 * before the call returns when the engine has the answer at hand, or later
 * from the worker's loop. RC is RT_OK, RT_INVAL (the caller's bad
 * request, as documented per call) or RT_ERR (logged: the caller answers
 * 100 internal, or 100 temporary for a client). What the callback is given
 * is valid during the call only. A caller whose object may end before the
 * answer (a client, an HTTP request) keeps ARG alive or detaches it. */
typedef void node_pub_fn(void *arg, int rc, const struct node_pub_result *r);

/* Publishes P to every subscriber on the node (every node, with Redis),
 * keeping it in the channel's history when it has one: its offset is
 * assigned by the engine in the order the subscribers receive it. The
 * result carries the offset and epoch (none without history). RT_INVAL
 * when the channel keeps history and its name does not fit
 * (node_history_fits). P is read during the call only. */
void node_publish(struct worker *w, const struct node_pub *p, node_pub_fn *done, void *arg);

/* A history read (hist_read in shm/chan.h): the publications, owned, and
 * the stream's position. */
struct hist_query;
struct node_history {
	struct publication *v;
	size_t n;
	uint64_t top, first;
	char epoch[NODE_EPOCH_MAX + 1];
	bool epoch_mismatch;       /* the client's 112 */
	void **blocks;             /* owned copies, one per publication */
};

/* Whether CHANNEL's name fits the history streams (shm's limit: the larger
 * of channel.max_length and 255 bytes). A longer name can have no stream:
 * its history, history_remove, or a publication to keep in history, is a
 * bad request (107), not an internal error. */
bool node_history_fits(const struct worker *w, struct pstr channel);

/* Reads CHANNEL's history as Q says; H (the publications, the position)
 * is the engine's and valid during DONE only. RT_INVAL for a reverse read
 * with since offset 0 (client 107, API 100). */
typedef void node_history_fn(void *arg, int rc, const struct node_history *h);
void node_history(struct worker *w, struct pstr channel, const struct hist_query *q,
		  node_history_fn *done, void *arg);

/* The stream position of CHANNEL, creating its epoch if needed, refreshing
 * its meta ttl. */
typedef void node_top_fn(void *arg, int rc, uint64_t offset, struct pstr epoch);
void node_history_top(struct worker *w, struct pstr channel, uint64_t meta_ttl_ms, node_top_fn *done,
		      void *arg);

/* history_remove: drops CHANNEL's publications, keeps its position. */
typedef void node_done_fn(void *arg, int rc);
void node_history_remove(struct worker *w, struct pstr channel, node_done_fn *done, void *arg);

/* Who is in CHANNEL (presence): live entries. */
struct node_presence {
	struct client_info *v;
	size_t n, cap;
};
typedef void node_presence_fn(void *arg, int rc, const struct node_presence *p);
void node_presence(struct worker *w, struct pstr channel, node_presence_fn *done, void *arg);
typedef void node_stats_fn(void *arg, int rc, uint32_t num_clients, uint32_t num_users);
void node_presence_stats(struct worker *w, struct pstr channel, node_stats_fn *done, void *arg);

/* Has the node receive CHANNEL's publications; DONE answers RT_OK once
 * it does (RT_ERR: it could not, the client gets a temporary error). A
 * subscription asks before it reads its position, so that nothing
 * published after the read can pass it by. */
void node_listen(struct worker *w, struct pstr channel, node_done_fn *done, void *arg);

/* CI enters (or is put back into) CHANNEL's presence, or leaves it: fire
 * and forget, a failure is logged. */
void node_presence_add(struct worker *w, struct pstr channel, const struct client_info *ci);
void node_presence_remove(struct worker *w, struct pstr channel, const struct client_info *ci);

/* Keeps this worker's presence entries alive; called every
 * client.presence_update_interval (FIRST: at start). True when the caller
 * must add every entry again (they were lost). */
bool node_presence_refresh(struct worker *w, bool first);

/* Disconnects the matching connections except those whose client id is in
 * WHITELIST, with CODE and REASON (close frame / disconnect push). */
int node_disconnect(struct worker *w, const struct node_target *t, const struct pstr *whitelist,
		    size_t nwhitelist, uint32_t code, struct pstr reason);

/* Unsubscribes the matching connections from CHANNEL (all channels when
 * empty) with the server unsubscribe push (code 2000). */
int node_unsubscribe(struct worker *w, const struct node_target *t, struct pstr channel);

struct node_sub {
	struct pstr channel, info, data;
	int64_t expire_at;              /* unix seconds; 0 = no expiry */
	bool has_since;
	uint64_t since_offset;
	struct pstr since_epoch;
	struct chan_override override;
};

/* Subscribes the matching connections to a channel server-side (a
 * `subscribe` push reaches each of them). */
int node_subscribe(struct worker *w, const struct node_target *t, const struct node_sub *s);

/* Refreshes the matching connections: EXPIRED closes them with 3005;
 * EXPIRE_AT (unix seconds, 0 = none) moves their expiry; INFO replaces
 * their connection info when non-empty. */
int node_refresh(struct worker *w, const struct node_target *t, bool expired, int64_t expire_at,
		 struct pstr info);

/* Calls FN for every channel with at least one subscriber on any worker,
 * with the node-wide number of subscribed connections. */
typedef void (*node_channel_fn)(void *arg, struct pstr channel, uint32_t num_clients);
int node_channels(struct worker *w, node_channel_fn fn, void *arg);

/* The same from every other node (the Redis engine asks them: a survey
 * with op "channels"): FN once for each channel matching PATTERN (a
 * channels API pattern; empty: all) on each node that answers, so a
 * channel several nodes hold comes once from each; then DONE once: RT_OK
 * when every node known answered, RT_ERR when one did not in time or
 * failed. Without other nodes DONE answers RT_OK at once. */
void node_channels_others(struct worker *w, struct pstr pattern, node_channel_fn fn, node_done_fn *done,
			  void *arg);

struct node_info {
	char uid[37];          /* this rotord's UUID, fixed for its lifetime */
	const char *name;      /* node.name, or <hostname>_<port> */
	const char *version;   /* "<version> OSS"-like: "0.1.0 rotor" */
	uint32_t num_clients, num_users, num_channels, num_subs;
	int64_t uptime;        /* seconds */
};
int node_info(struct worker *w, struct node_info *out);

/* Whether the node can serve: W's engine (with Redis: every shard's link
 * is up), and what every other running worker and the broker last
 * reported; else WHY says what is wrong. */
bool node_health(struct worker *w, char *why, size_t n);
/* W's own answer, into its stats block for the others (every tick). */
void node_health_report(struct worker *w);

/* Calls FN for every other node this one knows of (the Redis engine's
 * registry of announcements; none with the shared-memory engine). NI is
 * valid during the call only. */
void node_peers(struct worker *w, void (*fn)(void *arg, const struct node_info *ni), void *arg);

/* This rotord's node id (info's uid, ConnectResult.node of emulation
 * sessions): 36 characters and a NUL, fixed for the master's lifetime. */
const char *node_uid(struct worker *w);

/* Connected clients on the whole node: this worker's exact count plus the
 * others' as their last loop iteration left it. For client.connection_limit. */
uint64_t node_clients(struct worker *w);

/* Sessions of USER on the other workers of the node, from their snapshots
 * (merged at most every 200 ms). For client.user_connection_limit, with
 * this worker's exact count added by the caller. */
uint64_t node_user_connections(struct worker *w, const char *user, size_t n);

/* Hands DATA, the commands of an /emulation POST, to emulation session
 * SESSION on the worker that reads the bus in slot SLOT (this one too), in
 * bus order. That worker answers with an acknowledgement carrying TAG to
 * this worker (node_on_emulation's ACK). RT_OK, or RT_ERR (logged: the
 * caller answers 500). */
int node_emulate(struct worker *w, unsigned slot, struct pstr session, struct pstr data, uint64_t tag);

/* The emulation transport's side of those records: DELIVER feeds DATA to
 * this worker's SESSION and returns whether the session took it (false:
 * no such session, or it is ending); ACK receives the answer to a record
 * this worker sent, with its TAG. */
typedef bool node_emulation_fn(struct pstr session, struct pstr data);
typedef void node_emulation_ack_fn(uint64_t tag, bool taken);
void node_on_emulation(node_emulation_fn *deliver, node_emulation_ack_fn *ack);

/* Hands DATA, an /emulation POST's commands for SESSION, to another node,
 * NODE (the Redis engine asks it with a survey, op centrifuge_emulation,
 * as Centrifugo does). DONE answers once, at once or later, with one of
 * NODE_EMU_*: NO_NODE when NODE is not a node this one knows of (always
 * without other nodes), FAILED when it did not answer in time. DATA is
 * copied before this returns. */
enum { NODE_EMU_TAKEN, NODE_EMU_NO_SESSION, NODE_EMU_NO_NODE, NODE_EMU_FAILED };
typedef void node_emu_fn(void *arg, int outcome);
void node_emulate_remote(struct worker *w, struct pstr node, struct pstr session, struct pstr data,
			 node_emu_fn *done, void *arg);

/* Publishes a join (JOIN true) or leave of CI in CHANNEL to its subscribers
 * that receive join/leave pushes. */
int node_join_leave(struct worker *w, struct pstr channel, const struct client_info *ci, bool join);

/* The worker's side of the bus: applies the records appended since the last
 * call (publications to the hub, actions to the sessions), about a quarter
 * of client.queue_max_size of them at most, so that the flush point writes
 * before more is queued; the caller comes back while records remain.
 * Returns whether there was any. Called at the worker's flush point. */
bool node_poll(struct worker *w);

/* When bus record TYPE (DATA, LEN bytes) is a publication: true, and its
 * channel in *CHANNEL (pointing into DATA). For readers of the bus outside
 * the workers (rotorctl top); the record layout stays node.c's. */
bool node_record_publication(unsigned type, const void *data, size_t len, struct pstr *channel);

/* This worker's snapshot for info and channels (shm/snap.h): created at
 * start, rewritten from the worker's tick when it changed (at most every
 * 200 ms), and at once before this worker answers info or channels. */
int node_snapshot_init(struct worker *w);
void node_snapshot(struct worker *w);
void node_snapshot_now(struct worker *w);

#endif
