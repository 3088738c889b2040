/*
 * stats.h - the counters segment: one block of counters per worker process,
 * written only by that worker with relaxed atomic stores and read by anyone
 * (the master, /metrics and the info API, rotorctl stats).
 *
 *   seg_hdr | stats_hdr | stats_block[STATS_SLOTS] | stats_block retired
 *
 *   stats_block: identity and gauges (128 bytes) | struct stats_counts
 *
 * The header also says which workers serve now (route): the master's
 * current generation and its worker count, so that a worker can find the
 * block, and so the bus slot, of the worker of that generation that holds
 * a given listener slot (requests routed between workers, handoff.c).
 *
 * A block belongs to one worker process at a time: the master assigns a free
 * block before fork (writing pid, slot, gen) and zeroes it after the worker
 * is reaped. Before zeroing, it adds the block's monotonic counters (the
 * legacy ones named in stats_fold and all of struct stats_counts) into the
 * retired block, so node totals never go down when a worker dies or a
 * reload replaces a generation (Prometheus reads a decrease as a reset).
 * The fold is bracketed by fold_seq (odd while folding): a reader summing
 * every block retries when fold_seq moved, so it never counts a block twice
 * or not at all. Gauges (conns_current, clients, subs, inflight) come from
 * live blocks only and are not folded.
 */
#ifndef ROTOR_STATS_H
#define ROTOR_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define SEG_KIND_STATS 0x53544154u /* "STAT" */
#define STATS_VERSION 4            /* 4: the proxy table (stats_proxy) */
#define STATS_SLOTS 512            /* 256 workers, twice over during a rolling restart */

struct stats_hdr {
	uint32_t magic;            /* SEG_KIND_STATS */
	uint32_t nslots;
	int32_t master_pid;
	uint32_t pad;
	int64_t master_start_ms;
	char uid[36];              /* this rotord's UUID (info's node uid) */
	uint8_t pad2[4];
	uint64_t route;            /* STATS_ROUTE(gen, workers) once the workers of
	                            * generation gen all have their blocks; 0 before */
	uint64_t fold_seq;         /* odd while the master folds a block into
	                            * the retired one (stats_fold) */
	/* Binary upgrades (USR2) of this master, for rotorctl upgrade: each
	 * counter only grows; successor is the new master's pid while it runs.
	 * In what was padding: readers that predate them see zeros. */
	uint32_t upgrades_started;
	uint32_t upgrades_failed;  /* the new master exited before it served */
	uint32_t upgrades_refused; /* USR2 while one was in flight, or no path */
	int32_t successor;
	int32_t upgrade_status;    /* the last failed one's exit status (128 + signal) */
	uint8_t pad3[28];
};
_Static_assert(sizeof(struct stats_hdr) == 128, "stats_hdr is two cache lines");

/* The route word: written by the master with one atomic store, read with one
 * atomic load, so generation and count always belong together. */
#define STATS_ROUTE(gen, workers) ((uint64_t)(gen) << 32 | (uint32_t)(workers))
#define STATS_ROUTE_GEN(r) ((uint32_t)((r) >> 32))
#define STATS_ROUTE_WORKERS(r) ((uint32_t)(r))

/* The small enums the counter arrays are indexed by. */
enum stats_transport {     /* client transports (transport_ops.name) */
	STATS_T_WEBSOCKET,
	STATS_T_HTTP_STREAM,
	STATS_T_SSE,
	STATS_T_SOCKJS,
	STATS_T_UNI_WEBSOCKET,
	STATS_T_UNI_SSE,
	STATS_T_UNI_HTTP_STREAM,
	STATS_T_OTHER,
	STATS_TRANSPORTS
};

/* Client protocol commands: proto.h's CMD_CONNECT..CMD_SUB_REFRESH, minus 1. */
#define STATS_CMDS 11
/* Server API methods, in api.c's table order, then one for unknown ones. */
#define STATS_API_METHODS 14
/* Reply error codes 100..100+STATS_CODES-2; the last slot holds the others. */
#define STATS_CODES 16
#define STATS_CODE_OTHER (STATS_CODES - 1)
/* Histogram bounds in ns (STATS_BUCKET_BOUNDS_NS); slot STATS_BUCKETS
 * counts what is above the last. Buckets are not cumulative here. */
#define STATS_BUCKETS 16
#define STATS_BUCKET_BOUNDS_NS { 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, \
	25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000, 5000000000, \
	10000000000 }

enum stats_node_msg {      /* Centrifugo's node message types */
	STATS_MSG_PUBLICATION,
	STATS_MSG_JOIN,
	STATS_MSG_LEAVE,
	STATS_MSG_CONTROL,
	STATS_MSGS
};

/* A histogram: bucket counts (not cumulative) and the sum of observations. */
struct stats_hist {
	uint64_t bucket[STATS_BUCKETS + 1];
	uint64_t sum_ns;
};

/* A worker's monotonic counters: every member is a uint64_t (stats_fold
 * adds them word by word). */
struct stats_counts {
	struct stats_hist cmd[STATS_CMDS];          /* client command durations */
	uint64_t reply_err[STATS_CMDS][STATS_CODES]; /* client error replies by code */
	struct stats_hist api[STATS_API_METHODS];   /* server API command durations */
	uint64_t api_err[STATS_API_METHODS];        /* server API commands that failed */
	uint64_t t_sent[STATS_TRANSPORTS];          /* messages to clients, by transport */
	uint64_t t_sent_bytes[STATS_TRANSPORTS];
	uint64_t t_recv[STATS_TRANSPORTS];          /* commands from clients */
	uint64_t t_recv_bytes[STATS_TRANSPORTS];
	uint64_t node_sent[STATS_MSGS];             /* to the engine (node -> broker) */
	uint64_t node_recv[STATS_MSGS];             /* onto this node's bus (broker -> node) */
	uint64_t sessions[STATS_TRANSPORTS];        /* sessions opened, by transport */
};

/* The HTTP proxies' calls (server-api.md §6.3's centrifugo_proxy_*),
 * by proxy name and kind (proxy.h's enum proxy_kind: connect, refresh,
 * subscribe, publish, sub_refresh, rpc). Proxies are named in the config,
 * so a block holds a small table keyed by name: its owner writes a name
 * into a free entry the first time it builds a proxy of that name (at
 * start or at a reload) and never changes it while the block is its, so a
 * reload that adds or renames proxies takes new entries and never counts
 * one proxy's calls under another's name. The name is written before its
 * first byte, which readers load with acquire: an entry with name[0] == 0
 * is free. A name that does not fit (STATS_PROXY_NAMES in use, or longer
 * than STATS_PROXY_NAME_LEN - 1 bytes) is not counted. The fold and a
 * scrape merge tables by name. */
#define STATS_PROXY_NAMES 8
#define STATS_PROXY_NAME_LEN 64
#define STATS_PROXY_KINDS 6

struct stats_proxy {
	char name[STATS_PROXY_NAME_LEN];       /* "default" or a named proxy's; "" free */
	struct stats_hist dur[STATS_PROXY_KINDS]; /* calls answered, by how long they took */
	uint64_t errors[STATS_PROXY_KINDS];    /* calls without a usable answer */
	uint64_t inflight[STATS_PROXY_KINDS];  /* gauge: calls waiting (not folded) */
};
_Static_assert(sizeof(struct stats_proxy) == 1024, "stats_proxy is 16 cache lines");

/* One worker's counters. pid == 0 means the block is free. */
struct stats_block {
	int32_t pid;
	int32_t slot;              /* listener slot */
	uint32_t gen;              /* master generation */
	uint32_t state;            /* 0 starting or gone, 1 running, 2 draining */
	int64_t start_ms;
	uint64_t conns_current;    /* open client connections */
	uint64_t conns_accepted;
	uint64_t http_requests;
	uint64_t http_errors;      /* 4xx/5xx answered */
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t accept_errors;
	uint64_t bus_lost;         /* bus records lost to laps */
	uint64_t clients;          /* sessions that completed connect */
	uint64_t subs;             /* their subscriptions */
	uint32_t engine;           /* STATS_ENGINE_*: whether its engine serves,
	                            * as its last tick found (node_health) */
	uint8_t pad[20];
	uint64_t inflight[STATS_TRANSPORTS]; /* gauge: open sessions by transport */
	uint8_t pad2[64];
	struct stats_counts n;
	struct stats_proxy px[STATS_PROXY_NAMES];
};
_Static_assert(sizeof(struct stats_counts) % 64 == 0, "stats_counts is whole cache lines");
_Static_assert(sizeof(struct stats_block) == 256 + sizeof(struct stats_counts) + sizeof(struct stats_proxy) * STATS_PROXY_NAMES,
	       "stats_block: four cache lines of identity and gauges, then the counters, then the proxies'");
_Static_assert(sizeof(struct stats_block) == 13952, "a change of stats_block's size is a new STATS_VERSION");


/* The broker of the Redis engine holds the block whose slot is this (one
 * past the last listener slot); it has no listener. */
#define STATS_SLOT_BROKER 256

#define STATS_ENGINE_STARTING 0    /* not reported yet: not serving yet */
#define STATS_ENGINE_UP 1
#define STATS_ENGINE_DOWN 2

#define STATS_SEG_SIZE (64 + sizeof(struct stats_hdr) + (STATS_SLOTS + 1) * sizeof(struct stats_block))

static inline struct stats_block *stats_blocks(void *payload)
{
	return (struct stats_block *)((char *)payload + sizeof(struct stats_hdr));
}

/* The retired block: what reaped workers counted (pid 0, never served). */
static inline struct stats_block *stats_retired(void *payload)
{
	return stats_blocks(payload) + STATS_SLOTS;
}

/* Counter updates: the owner is the only writer, readers tolerate staleness. */
#define STATS_ADD(b, field, n) __atomic_fetch_add(&(b)->field, (n), __ATOMIC_RELAXED)
#define STATS_SUB(b, field, n) __atomic_fetch_sub(&(b)->field, (n), __ATOMIC_RELAXED)
#define STATS_GET(b, field) __atomic_load_n(&(b)->field, __ATOMIC_RELAXED)
/* The owner's own increment: a relaxed load and store, no locked
 * instruction (the owner is the only writer). */
#define STATS_BUMP(b, field, n) \
	__atomic_store_n(&(b)->field, __atomic_load_n(&(b)->field, __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)

/* The histogram slot of a duration of NS nanoseconds. */
static inline unsigned stats_bucket(uint64_t ns)
{
	static const uint64_t bounds[STATS_BUCKETS] = STATS_BUCKET_BOUNDS_NS;
	unsigned i = 0;
	while (i < STATS_BUCKETS && ns > bounds[i])
		i++;
	return i;
}

/* Records one observation of NS nanoseconds in H, a histogram of the
 * caller's own block. */
static inline void stats_observe(struct stats_hist *h, uint64_t ns)
{
	STATS_BUMP(h, bucket[stats_bucket(ns)], 1);
	STATS_BUMP(h, sum_ns, ns);
}

/* The entry of B's proxy table named NAME (N bytes), written into a free
 * one when it is not there; B's only writer is the caller. -1 when it is
 * full or NAME does not fit. */
static inline int stats_proxy_slot(struct stats_block *b, const char *name, size_t n)
{
	int free_at = -1;
	if (n == 0 || n >= STATS_PROXY_NAME_LEN)
		return -1;
	for (int i = 0; i < STATS_PROXY_NAMES; i++) {
		struct stats_proxy *e = &b->px[i];
		if (__atomic_load_n(&e->name[0], __ATOMIC_ACQUIRE) == 0) {
			if (free_at < 0)
				free_at = i;
		} else if (strncmp(e->name, name, STATS_PROXY_NAME_LEN) == 0 && e->name[n] == 0) {
			return i;
		}
	}
	if (free_at >= 0) {
		struct stats_proxy *e = &b->px[free_at];
		memcpy(e->name + 1, name + 1, n - 1);
		e->name[n] = 0;
		__atomic_store_n(&e->name[0], name[0], __ATOMIC_RELEASE);
	}
	return free_at;
}

/* Adds FROM's proxy table into INTO's, by name (stats_fold's rules): the
 * counters and durations, or with GAUGES only the inflight gauges (a
 * scrape summing live blocks, whose counters came with stats_fold). */
static inline void stats_fold_proxies(struct stats_block *into, const struct stats_block *from, int gauges)
{
	for (int i = 0; i < STATS_PROXY_NAMES; i++) {
		const struct stats_proxy *f = &from->px[i];
		char name[STATS_PROXY_NAME_LEN];
		if (__atomic_load_n(&f->name[0], __ATOMIC_ACQUIRE) == 0)
			continue;
		memcpy(name, f->name, sizeof name);
		name[sizeof name - 1] = 0;
		int j = stats_proxy_slot(into, name, strlen(name));
		if (j < 0)
			continue;
		const uint64_t *src = gauges ? f->inflight : (const uint64_t *)(const void *)f->dur;
		uint64_t *dst = gauges ? into->px[j].inflight : (uint64_t *)(void *)into->px[j].dur;
		size_t words = (gauges ? sizeof(f->inflight) : sizeof(f->dur) + sizeof(f->errors)) / 8;
		for (size_t k = 0; k < words; k++)
			__atomic_store_n(&dst[k], dst[k] + __atomic_load_n(&src[k], __ATOMIC_RELAXED), __ATOMIC_RELAXED);
	}
}

/* Adds FROM's monotonic counters into INTO, whose only writer the caller
 * is: the master into the retired block, with FROM's worker reaped (it
 * brackets the fold with fold_seq), or a reader summing the node into a
 * block of its own while FROM's owner may be counting (relaxed loads). */
static inline void stats_fold(struct stats_block *into, const struct stats_block *from)
{
	const uint64_t *f = (const uint64_t *)&from->n;
	uint64_t *t = (uint64_t *)&into->n;
	for (size_t i = 0; i < sizeof(from->n) / sizeof(uint64_t); i++)
		__atomic_store_n(&t[i], t[i] + __atomic_load_n(&f[i], __ATOMIC_RELAXED), __ATOMIC_RELAXED);
	STATS_BUMP(into, conns_accepted, STATS_GET(from, conns_accepted));
	STATS_BUMP(into, http_requests, STATS_GET(from, http_requests));
	STATS_BUMP(into, http_errors, STATS_GET(from, http_errors));
	STATS_BUMP(into, bytes_in, STATS_GET(from, bytes_in));
	STATS_BUMP(into, bytes_out, STATS_GET(from, bytes_out));
	STATS_BUMP(into, accept_errors, STATS_GET(from, accept_errors));
	STATS_BUMP(into, bus_lost, STATS_GET(from, bus_lost));
	stats_fold_proxies(into, from, 0);
}

#endif
