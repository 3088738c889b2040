/*
 * stats.h - the counters segment: one block of counters per worker process,
 * written only by that worker with relaxed atomic stores and read by anyone
 * (the master, /metrics and the info API, rotorctl stats).
 *
 *   seg_hdr | stats_hdr | stats_block[STATS_SLOTS]
 *
 * The header also says which workers serve now (route): the master's
 * current generation and its worker count, so that a worker can find the
 * block, and so the bus slot, of the worker of that generation that holds
 * a given listener slot (requests routed between workers, handoff.c).
 *
 * A block belongs to one worker process at a time: the master assigns a free
 * block before fork (writing pid, slot, gen) and zeroes it after the worker
 * is reaped, so a dead worker's counts vanish with it.
 */
#ifndef ROTOR_STATS_H
#define ROTOR_STATS_H

#include <stdint.h>

#define SEG_KIND_STATS 0x53544154u /* "STAT" */
#define STATS_VERSION 2
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
	/* Binary upgrades (USR2) of this master, for rotorctl upgrade: each
	 * counter only grows; successor is the new master's pid while it runs.
	 * In what was padding: readers that predate them see zeros. */
	uint32_t upgrades_started;
	uint32_t upgrades_failed;  /* the new master exited before it served */
	uint32_t upgrades_refused; /* USR2 while one was in flight, or no path */
	int32_t successor;
	int32_t upgrade_status;    /* the last failed one's exit status (128 + signal) */
	uint8_t pad3[36];
};
_Static_assert(sizeof(struct stats_hdr) == 128, "stats_hdr is two cache lines");

/* The route word: written by the master with one atomic store, read with one
 * atomic load, so generation and count always belong together. */
#define STATS_ROUTE(gen, workers) ((uint64_t)(gen) << 32 | (uint32_t)(workers))
#define STATS_ROUTE_GEN(r) ((uint32_t)((r) >> 32))
#define STATS_ROUTE_WORKERS(r) ((uint32_t)(r))

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
};
_Static_assert(sizeof(struct stats_block) == 128, "stats_block is two cache lines");

/* The broker of the Redis engine holds the block whose slot is this (one
 * past the last listener slot); it has no listener. */
#define STATS_SLOT_BROKER 256

#define STATS_ENGINE_STARTING 0    /* not reported yet: not serving yet */
#define STATS_ENGINE_UP 1
#define STATS_ENGINE_DOWN 2

#define STATS_SEG_SIZE (64 + sizeof(struct stats_hdr) + STATS_SLOTS * sizeof(struct stats_block))

static inline struct stats_block *stats_blocks(void *payload)
{
	return (struct stats_block *)((char *)payload + sizeof(struct stats_hdr));
}

/* Counter updates: the owner is the only writer, readers tolerate staleness. */
#define STATS_ADD(b, field, n) __atomic_fetch_add(&(b)->field, (n), __ATOMIC_RELAXED)
#define STATS_SUB(b, field, n) __atomic_fetch_sub(&(b)->field, (n), __ATOMIC_RELAXED)
#define STATS_GET(b, field) __atomic_load_n(&(b)->field, __ATOMIC_RELAXED)

#endif
