/*
 * engine.h - where a node's publications, history and presence live: one
 * interface, two members. The shared-memory engine (memory.c, the default)
 * keeps them in shm/ on this machine; the Redis engine (redis.c) in Redis,
 * shared by several nodes, with Centrifugo's layout. node.c calls these and
 * nothing else; the session and the API call node.h and never learn which
 * engine runs.
 *
 * The operations that answer complete through node.h's callbacks, exactly
 * once, at once or later from the worker's loop. The others are fire and
 * forget: a failure is logged, the session goes on.
 */
#ifndef ROTOR_ENGINE_H
#define ROTOR_ENGINE_H

#include "node.h"
#include "redis_link.h"

struct worker;
struct conf;

struct engine {
	const char *name;

	/* Per worker, after fork; RT_OK or RT_ERR (logged). stop frees what
	 * start made (pending callbacks answer RT_ERR first). */
	int (*start)(struct worker *w);
	void (*stop)(struct worker *w);

	void (*publish)(struct worker *w, const struct node_pub *p, node_pub_fn *done, void *arg);
	void (*history)(struct worker *w, struct pstr channel, const struct hist_query *q,
			node_history_fn *done, void *arg);
	void (*history_top)(struct worker *w, struct pstr channel, uint64_t meta_ttl_ms, node_top_fn *done,
			    void *arg);
	void (*history_remove)(struct worker *w, struct pstr channel, node_done_fn *done, void *arg);
	void (*presence)(struct worker *w, struct pstr channel, node_presence_fn *done, void *arg);
	void (*presence_stats)(struct worker *w, struct pstr channel, node_stats_fn *done, void *arg);

	/* CI enters (or is put back into) CHANNEL's presence, or leaves it. */
	void (*presence_add)(struct worker *w, struct pstr channel, const struct client_info *ci);
	void (*presence_remove)(struct worker *w, struct pstr channel, const struct client_info *ci);
	/* Called every client.presence_update_interval (FIRST: at start):
	 * keeps this worker's entries alive; true when the session must add
	 * all of them again. */
	bool (*presence_refresh)(struct worker *w, bool first);
	/* Tells CHANNEL's subscribers that receive join/leave pushes that CI
	 * joined (JOIN) or left. RT_OK or RT_ERR. */
	int (*join_leave)(struct worker *w, struct pstr channel, const struct client_info *ci, bool join);

	/* Has the node receive CHANNEL's publications before a client
	 * subscribes (then reads its position): DONE answers once it does. */
	void (*listen)(struct worker *w, struct pstr channel, node_done_fn *done, void *arg);

	/* node_channels_others (NULL: there are no other nodes). */
	void (*channels)(struct worker *w, struct pstr pattern, node_channel_fn fn, node_done_fn *done,
			 void *arg);

	/* node_emulate_remote (NULL: there are no other nodes). */
	void (*emulate)(struct worker *w, struct pstr node, struct pstr session, struct pstr data,
			node_emu_fn *done, void *arg);

	/* Whether the engine can serve; else WHY says what is wrong (NULL:
	 * always). */
	bool (*health)(struct worker *w, char *why, size_t n);

	/* The server-side actions reach the other nodes (NULL: there are
	 * none); node.c applies them on this node through the bus. */
	void (*disconnect)(struct worker *w, const struct node_target *t, const struct pstr *whitelist,
			   size_t nwhitelist, uint32_t code, struct pstr reason);
	void (*unsubscribe)(struct worker *w, const struct node_target *t, struct pstr channel);
	void (*subscribe)(struct worker *w, const struct node_target *t, const struct node_sub *s);
	void (*refresh)(struct worker *w, const struct node_target *t, bool expired, int64_t expire_at,
			struct pstr info);
};

extern const struct engine engine_memory;

/* node.c's side of the shared-memory engine: a publication appended to the
 * bus with its offset assigned under the bus lock (history kept in shm),
 * and a join or leave record. */
int node_bus_publish(struct worker *w, const struct node_pub *p, struct node_pub_result *res);
int node_bus_join_leave(struct worker *w, struct pstr channel, const struct client_info *ci, bool join);

/* The Redis engine's records (node.c writes and reads every record):
 * a publication received from Redis, with the offset and epoch of its
 * frame (DELTA: a d1 frame, or a raw Publication with its delta flag:
 * delivered as deltas where negotiated); a worker asking the broker to
 * have the node listen to CHANNEL (TAG comes back in the
 * acknowledgement, to the asking slot); the
 * broker's acknowledgement; and "lost": the broker's link was down, every
 * positioned subscription may have missed publications (client_lost_state
 * in every worker). RT_OK or RT_ERR (logged). */
int node_bus_deliver(struct worker *w, struct pstr channel, const struct publication *p, struct pstr epoch,
		     bool delta);
int node_bus_listen(struct worker *w, uint64_t tag, struct pstr channel);
int node_bus_listen_ack(struct worker *w, unsigned slot, uint64_t tag, bool ok);
int node_bus_lost(struct worker *w);
/* A survey's response from another node, forwarded by the broker to the
 * slot that asked (the high bits of ID): CODE 0 and the op's DATA, or an
 * error code. */
int node_bus_survey(struct worker *w, unsigned slot, uint64_t id, uint32_t code, struct pstr data);

/* Who receives those: the broker the listen requests, the engine of a
 * worker the acknowledgements addressed to its slot. */
typedef void node_listen_fn(struct worker *w, unsigned slot, uint64_t tag, struct pstr channel);
typedef void node_listen_ack_fn(struct worker *w, uint64_t tag, bool ok);
void node_on_listen(node_listen_fn *listen, node_listen_ack_fn *ack);
typedef void node_survey_fn(struct worker *w, uint64_t id, uint32_t code, struct pstr data);
void node_on_survey(node_survey_fn *fn);

extern const struct engine engine_redis;

/* The settings of one Redis connection block (engine.redis.*,
 * broker.redis.* or presence_manager.redis.*), as every process of a node
 * reads them. */
#define REDIS_SHARDS_MAX 16
struct redis_conf {
	char prefix[128];
	unsigned nshards;
	struct redis_addr shard[REDIS_SHARDS_MAX];
	uint64_t presence_ttl_s;
	bool user_mapping;
	bool wait_replicas;      /* sentinel_wait_replicas: publishes with history WAIT */
};

struct conf_report;
/* Loads RC from K's block SECTION ("engine.redis", "broker.redis" or
 * "presence_manager.redis"); errors name the full key (into REP when not
 * NULL): a bad address, and every key of the block rotor does not serve
 * yet. RT_OK or RT_INVAL. */
int redis_conf_load(const struct conf *k, const char *section, struct redis_conf *rc, struct conf_report *rep);

/* Where a node's broker side (publish, history, idempotency, join/leave,
 * listening, the control channel) and its presence live, resolved from
 * engine.*, broker.* and presence_manager.* (engine.c): in Redis with the
 * connection block named (NULL: this node's shared memory). */
struct engine_plan {
	bool broker_redis, presence_redis;
	const char *broker_section, *presence_section;
};
/* Fills P from K; RT_OK, or RT_INVAL with an error naming each type key
 * rotor does not serve (into REP when not NULL). */
int engine_plan(const struct conf *k, struct engine_plan *p, struct conf_report *rep);
/* Whether both sides are in Redis on the same connection block. */
bool engine_plan_shared(const struct engine_plan *p);
/* engine_plan, then every Redis block it uses loaded: what rotord -t
 * reports. RT_OK or RT_INVAL. */
int engine_check(const struct conf *k, struct conf_report *rep);

/* The broker process of a node with the Redis engine (broker.c): a worker
 * without listener whose loop runs these. */
int broker_start(struct worker *w);
void broker_stop(struct worker *w);
/* Whether every link of the broker is up and knows its mode; else WHY
 * names the first that is not. */
bool broker_health(char *why, size_t n);

/* The engine a worker of config K runs (engine_plan): a member, or the
 * broker member's table with the presence member's presence operations. */
const struct engine *engine_of(const struct conf *k);

#endif
