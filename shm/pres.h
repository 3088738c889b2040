/*
 * pres.h - the presence table: for each channel, the clients subscribed to
 * it with presence on (client id -> user, conn_info, chan_info), shared by
 * every process of rotord in one transient segment (under the run
 * directory, e.g. /dev/shm). The master creates it before forking; workers
 * add, refresh and remove their own clients' entries; the master releases a
 * dead worker's entries; rotorctl may attach read-only.
 *
 * Liveness: every entry names its owner, the bus slot (0 .. PRES_SLOTS - 1)
 * of the worker holding the connection. Each slot has a lease in the
 * header: an expiry time and a generation. An entry is live while its
 * owner's lease runs (now < until_ms), the lease's generation is still the
 * one the entry was added under, and the entry's own expiry (if it has
 * one) has not passed. So a worker refreshes its thousands of entries with
 * one store (pres_touch_owner), a dead worker's entries vanish at once
 * when the master releases its slot (which bumps the generation, so a new
 * worker in that slot does not bring them back), and a hung worker's
 * entries vanish when its lease runs out. Dead entries are reclaimed by
 * pres_release_slot and pres_sweep; readers never show them.
 *
 * Segment layout (seg kind SEG_KIND_PRES, layout PRES_VERSION), all
 * offsets from the payload base (seg_payload), never pointers, every part
 * on 64 bytes:
 *
 *   0     +------------------------------------------------------------+
 *         | struct seg_hdr                                       64 B  |
 *   64    +------------------------------------------------------------+
 *         | struct pres_hdr                                     384 B  |
 *         |   0-1  identity: magic, version, geometry, offsets, key    |
 *         |   2    the robust mutex, owner pid                         |
 *         |   3    state: write version, free lists, counts, sweep hand|
 *         |   4-5  counters                                            |
 *         +------------------------------------------------------------+
 *         | leases: struct pres_lease[PRES_SLOTS]        16 B each     |
 *         +------------------------------------------------------------+
 *         | buckets: uint32_t[nbuckets], node + 1 heading each chain   |
 *         +------------------------------------------------------------+
 *         | nodes: struct pres_node[nnodes]              64 B each     |
 *         +------------------------------------------------------------+
 *         | nmap: one bit per node    (scratch for repair and verify)  |
 *         | bmap: one bit per block   (scratch for repair and verify)  |
 *         +------------------------------------------------------------+
 *         | arena: struct pres_blk[nblocks]              64 B each     |
 *   size  +------------------------------------------------------------+
 *
 * A node is a channel (its name in the arena) or a client entry (client
 * id, user, conn_info and chan_info, one after the other, in the arena),
 * both kinds chained in the one hash table: a channel by a keyed hash of
 * its name, an entry by a keyed hash of (its channel node, client id).
 * Variable-length bytes live in chains of 64-byte blocks (a 4-byte link
 * and 60 bytes), one size class with a free list: no fragmentation, and
 * an entry of up to PRES_ENTRY_MAX bytes fits wherever there are enough
 * free blocks.
 *
 * What is authoritative: the hash chains and the immutable fields of the
 * nodes in them (guarded by a check). A node is filled in while it is
 * unreachable and made part of the table by one store (the link that
 * points to it); it leaves the table by one store. Everything else is
 * derived and rebuilt from the chains by whoever takes the lock after a
 * holder died (EOWNERDEAD): each channel's doubly linked member list and
 * count, the free lists of nodes and blocks, the counts. So a process
 * killed at any instruction leaves the table as it was before or after
 * its change, never in between.
 *
 * Invariants (checked by pres_verify):
 *   every chained node is a channel or an entry, its check holds, it
 *     hangs in the bucket of its hash, its blocks are its alone;
 *   an entry's channel is a chained channel node; each channel's member
 *     list holds exactly its entries, and no channel has none;
 *   a node or block is either in the table or on its free list, once.
 */
#ifndef ROTOR_PRES_H
#define ROTOR_PRES_H

#include "seg.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEG_KIND_PRES 0x53455250u                /* "PRES" */
#define PRES_VERSION 1
#define PRES_MAGIC UINT64_C(0x534552504f544f52)  /* "ROTOPRES" little-endian */

#define PRES_SLOTS 512                /* owner slots: the bus slots (BUS_SLOTS_MAX) */
#define PRES_BLOCK 64                 /* arena block: a link and PRES_BLOCK_DATA bytes */
#define PRES_BLOCK_DATA 60

/* What pres_add accepts (EMSGSIZE beyond). conn_info and chan_info are
 * each capped at 16 KiB: a connection's info comes from a token, and a few
 * KiB is already a large one; the cap keeps one entry from taking a
 * noticeable part of the arena. */
#define PRES_CHANNEL_MAX 4096         /* the longest channel_max_length accepted */
#define PRES_CLIENT_MAX 255
#define PRES_USER_MAX 1024
#define PRES_INFO_MAX 16384
#define PRES_ENTRY_MAX (PRES_CLIENT_MAX + PRES_USER_MAX + 2 * PRES_INFO_MAX)

#define PRES_NODES_MIN 16u
#define PRES_NODES_MAX ((uint32_t)1 << 26)
#define PRES_ARENA_MIN ((uint64_t)64 << 10)
#define PRES_ARENA_MAX ((uint64_t)16 << 30)

/* ---- shared-memory structs -------------------------------------------- */

enum { PRES_K_FREE = 0, PRES_K_CHAN = 1, PRES_K_CLIENT = 2 };

/* A channel or a client entry. Bytes 4 .. 52 never change while the node
 * is chained; check covers them. */
struct pres_node {
	uint32_t next;             /* hash chain (or free list): node + 1, 0 last */
	uint8_t kind;              /* PRES_K_* */
	uint8_t pad0;
	uint16_t owner;            /* entry: owner slot */
	uint64_t hash;             /* keyed hash: of the name, or of (chan, client) */
	uint32_t data;             /* first block + 1 of the bytes */
	uint32_t bytes;            /* channel: name length; entry: sum of the four lengths */
	uint32_t chan;             /* entry: its channel node + 1 */
	uint32_t owner_gen;        /* entry: the owner's lease generation at pres_add */
	int64_t expires_ms;        /* entry: its own expiry, 0 none */
	uint16_t client_len;
	uint16_t user_len;
	uint32_t conn_info_len;
	uint32_t chan_info_len;
	uint32_t check;            /* hash of bytes 4 .. 52 */
	union {                    /* derived, rebuilt after a dead holder */
		struct {
			uint32_t next, prev; /* entry: its channel's member list, node + 1 */
		} m;
		struct {
			uint32_t first;      /* channel: first member + 1 */
			uint32_t count;      /* channel: members */
		} c;
	} l;
};
_Static_assert(sizeof(struct pres_node) == 64, "pres_node is one cache line");

struct pres_blk {
	uint32_t next;             /* the chain's (or the free list's) next block + 1, 0 last */
	uint8_t data[PRES_BLOCK_DATA];
};
_Static_assert(sizeof(struct pres_blk) == PRES_BLOCK, "pres_blk is one block");

/* A slot's lease: written without the lock, by the slot's worker
 * (until_ms) and by the master (pres_release_slot). */
struct pres_lease {
	int64_t until_ms;          /* entries are live while now < until_ms */
	uint32_t gen;              /* bumped when the slot is released */
	int32_t pid;               /* who touched it last (advisory) */
};
_Static_assert(sizeof(struct pres_lease) == 16, "pres_lease is 16 bytes");

struct pres_hdr {
	/* lines 0-1: identity, written once by pres_create */
	uint64_t magic;            /* PRES_MAGIC, stored last */
	uint32_t version;          /* PRES_VERSION */
	uint32_t hdr_size;         /* sizeof(struct pres_hdr) */
	uint32_t node_size;        /* sizeof(struct pres_node) */
	uint32_t block_size;       /* sizeof(struct pres_blk) */
	uint32_t lease_size;       /* sizeof(struct pres_lease) */
	uint32_t nslots;           /* PRES_SLOTS */
	uint32_t nnodes;
	uint32_t nbuckets;         /* a power of two >= nnodes */
	uint32_t nblocks;
	uint32_t entry_max;        /* largest entry (or name) in bytes accepted */
	uint64_t lease_off, bucket_off, node_off, nmap_off, bmap_off, block_off;
	uint64_t key[2];           /* SipHash key: channel names come from clients */
	uint8_t pad0[16];

	/* line 2: the lock; pthread's type is the one non-fixed-width field,
	 * its size and layout fixed by the platform's ABI */
	union {
		pthread_mutex_t lock;  /* robust, process-shared, error-checking */
		uint8_t lock_space[56];
	};
	int32_t owner;             /* pid holding the lock, 0 when free (advisory) */
	uint32_t pad1;

	/* line 3: state, written under the lock; all but wver derived */
	uint64_t wver;             /* odd while the lock holder changes the table */
	uint32_t free_node;        /* node + 1 heading the free nodes */
	uint32_t nfree_nodes;
	uint32_t free_blk;         /* block + 1 heading the free blocks */
	uint32_t nfree_blks;
	uint32_t nclients;         /* entries chained, live or not */
	uint32_t nchannels;
	uint32_t sweep_hand;       /* the bucket pres_sweep looks at next */
	uint8_t pad3[28];

	/* lines 4-5: counters for monitoring; a process killed between an
	 * event and its count leaves it uncounted */
	uint64_t adds;             /* entries inserted */
	uint64_t updates;          /* entries replaced by pres_add */
	uint64_t removes;          /* entries removed by pres_remove */
	uint64_t swept;            /* dead entries reclaimed by pres_sweep */
	uint64_t purged;           /* entries reclaimed by pres_release_slot */
	uint64_t full;             /* pres_add refused: no room (ENOSPC) */
	uint64_t too_big;          /* pres_add refused: too big (EMSGSIZE) */
	uint64_t repairs;          /* locks taken over from a dead holder */
	uint64_t dropped;          /* chained nodes a repair found damaged and dropped */
	uint64_t reserved[7];
};
_Static_assert(sizeof(pthread_mutex_t) <= 56, "the mutex must fit its line");
_Static_assert(sizeof(struct pres_hdr) == 384, "pres_hdr is six cache lines");

/* ---- this process's view ---------------------------------------------- */

/* A mapping of the table in this process; a forked child may use its
 * parent's. */
struct pres {
	struct seg seg;
	struct pres_hdr *h;
	struct pres_lease *leases;
	uint32_t *buckets;
	struct pres_node *nodes;
	uint64_t *nmap, *bmap;
	struct pres_blk *blocks;
	uint32_t nnodes, nblocks, mask;
	bool readonly;
};

/* One entry, as given to pres_add and as delivered by pres_get. Strings
 * are NUL-terminated; conn_info and chan_info are bytes (raw JSON or
 * protobuf, passed through as they are), NULL when their length is 0. */
struct pres_item {
	const char *client;        /* 1 .. PRES_CLIENT_MAX bytes */
	const char *user;          /* 0 .. PRES_USER_MAX bytes; "" is the anonymous user */
	const void *conn_info;
	size_t conn_info_len;      /* 0 .. PRES_INFO_MAX */
	const void *chan_info;
	size_t chan_info_len;      /* 0 .. PRES_INFO_MAX */
	unsigned owner;            /* the owning worker's bus slot */
	int64_t expires_ms;        /* the entry's own expiry; 0: as long as the owner's lease */
};

/* Receives one live entry. IT and everything it points to are the caller's
 * private copy, valid until the callback returns; no lock is held, so it
 * may call pres_* itself. Return 0 to go on, anything else to stop. */
typedef int pres_item_fn(void *arg, const struct pres_item *it);

/* Segment size for NODES nodes (channels + entries) and ARENA_BYTES of
 * arena (rounded down to whole blocks). */
size_t pres_seg_size(uint32_t nodes, uint64_t arena_bytes);

/* Creates the presence segment PATH (replacing any), with room for NODES
 * nodes (PRES_NODES_MIN .. PRES_NODES_MAX; each channel with presence
 * takes one, each entry one) and ARENA_BYTES of arena (PRES_ARENA_MIN ..
 * PRES_ARENA_MAX; an entry takes ceil(bytes / 60) blocks of 64, where
 * bytes = client + user + conn_info + chan_info, a channel ceil(name / 60)),
 * and maps it read-write. Every lease starts expired. Returns 0, or -1
 * with errno (EINVAL for a size out of range, else seg_create's). For the
 * master, before it forks. */
int pres_create(struct pres *t, const char *path, uint32_t nodes, uint64_t arena_bytes);

/* Attaches to the presence segment PATH and validates its header: magic,
 * version, struct sizes, geometry and offsets against the file size.
 * Returns 0, or -1 with errno ENOENT, EPROTO (does not validate) or
 * seg_attach's. READONLY (rotorctl): pres_get, pres_stats and pres_info
 * work, without the lock; everything else fails with EROFS. */
int pres_attach(struct pres *t, const char *path, bool readonly);

/* Unmaps T. */
void pres_detach(struct pres *t);

/* Removes T's file; the mapping stays valid until pres_detach. */
int pres_unlink(struct pres *t);

/* Inserts the entry (CHANNEL, IT->client), or replaces it if there is one
 * (whoever its owner was), with IT's user, infos, owner and expiry. The
 * bytes are copied. The entry shows only while IT->owner's lease runs:
 * touch the lease first. Replacing an entry with an identical one changes
 * nothing; replacing needs room for the new copy before the old one is
 * freed. Returns 0, or -1 with errno: EINVAL (empty channel or client,
 * owner >= PRES_SLOTS, a NULL info with a length), EMSGSIZE (a part over
 * its PRES_*_MAX, or the entry or name over an eighth of the arena),
 * ENOSPC (no free node or not enough free blocks: the table is full and
 * unchanged), EROFS, or the mutex's error. The caller logs EMSGSIZE and
 * ENOSPC and keeps the subscription, without presence.
 * For a worker: on subscribe to a channel with presence, and again when
 * the connection's info changes. */
int pres_add(struct pres *t, const char *channel, const struct pres_item *it);

/* Removes the entry (CHANNEL, CLIENT), and the channel with its last entry.
 * Returns 0, or -1 with errno ENOENT (no such entry), EROFS, or the
 * mutex's error. For a worker: on unsubscribe, and for each channel with
 * presence of a client that disconnects. ENOENT is no fault of the
 * caller's when its add had failed or its lease had run out (the sweep
 * may have reclaimed the entry): ignore it. */
int pres_remove(struct pres *t, const char *channel, const char *client);

/* Extends OWNER's lease to UNTIL_MS: every entry of OWNER is live until
 * then (unless released meanwhile). One store, no lock. Returns 1 if the
 * lease had run out (until <= NOW_MS) before this call, so pres_sweep may
 * have reclaimed some of OWNER's entries: the worker must pres_add all of
 * its entries again (identical ones cost a lookup). Returns 0 if the
 * lease was running; -1 with errno EINVAL (OWNER) or EROFS.
 * For a worker: once at start, before its first pres_add, then every
 * client.presence_update_interval (27 s) with UNTIL_MS = now +
 * pres_lease_ms(interval), 67.5 s by default: one late refresh keeps
 * everyone, two missed refreshes in a row drop the worker's entries. */
int pres_touch_owner(struct pres *t, unsigned owner, int64_t now_ms, int64_t until_ms);

/* The lease a worker refreshing every INTERVAL_MS should take: 2.5
 * intervals. */
static inline int64_t pres_lease_ms(int64_t interval_ms)
{
	return interval_ms * 5 / 2;
}

/* Ends OWNER's lease and its generation: at once (one store each, no
 * lock) none of its entries is live any more, and none comes back when a
 * new process takes the slot. Then reclaims them all, taking the lock
 * once per few thousand buckets (repairing after a dead holder first).
 * Returns the number of entries reclaimed, or -1 with errno EINVAL, EROFS
 * or the mutex's error (the entries are dead all the same; pres_sweep
 * reclaims them). For the master, once the worker in OWNER is dead and
 * reaped, before the slot is given to a new worker. */
int pres_release_slot(struct pres *t, unsigned owner);

/* Calls FN for each live entry of CHANNEL (live at NOW_MS), in no
 * particular order, from a private copy made under the lock (read-only
 * mapping: made without it and validated, retried while writers change
 * the table). Costs the channel's entries, not the table's: the lock is
 * held for the copy alone, some 40-100 ns an entry (about 2 ms for a
 * channel of 90 000), its buffer sized and faulted in before. Returns the
 * number of entries delivered, or -1 with errno: ENOMEM, EAGAIN (read-only
 * and the writers never let a copy validate: try again), EPROTO (the
 * table is damaged), or the mutex's error. For the presence command and
 * API. */
int pres_get(struct pres *t, const char *channel, int64_t now_ms, pres_item_fn *fn, void *arg);

/* Counts the live entries of CHANNEL and their distinct users (the empty
 * anonymous user id is one user). Same cost, returns and errors as
 * pres_get (0 on success). For the presence_stats command and API. */
int pres_stats(struct pres *t, const char *channel, int64_t now_ms, uint32_t *num_clients,
	       uint32_t *num_users);

/* Reclaims dead entries (released owner, lease run out before NOW_MS, own
 * expiry passed) in the next part of the table: BUDGET buckets and nodes
 * looked at, from a hand kept in the header, so successive calls from any
 * process go round the whole table. Returns the number reclaimed, or -1
 * with errno EROFS or the mutex's error. For one process (the master, or
 * worker 0) about once a second with a budget of a few thousand:
 * pres_release_slot reclaims a dead worker's entries itself, so this only
 * catches hung workers and entries with their own expiry. */
int pres_sweep(struct pres *t, int64_t now_ms, unsigned budget);

struct pres_counts {
	uint32_t channels, clients;   /* chained nodes of each kind */
	uint32_t stale;               /* entries whose owner's generation has moved on */
	uint32_t nodes_free, blocks_used, blocks_free;
	const char *problem;          /* what failed, when pres_verify fails */
};

/* Takes the lock (repairing as needed) and checks every invariant of
 * pres.h: the chains, each node's check, hash and bucket, that blocks are
 * not shared, channels' member lists and counts, free lists and counts.
 * Fills *C (may be NULL). Returns 0, or -1 with errno EPROTO (damaged;
 * C->problem says where), EROFS, or the mutex's error. For tests and
 * rotorctl-style checks: it holds the lock for a walk of the whole table. */
int pres_verify(struct pres *t, struct pres_counts *c);

struct pres_info {
	uint32_t nodes, nodes_free, blocks, blocks_free, channels, clients;
	uint64_t adds, updates, removes, swept, purged, full, too_big, repairs, dropped;
	int32_t lock_owner;
	unsigned leases;              /* slots whose lease has ever been touched and not released */
};

/* A snapshot of T's counts and counters, each loaded alone, no lock:
 * works on a read-only mapping. */
void pres_info(const struct pres *t, struct pres_info *st);

/* Tests only: when non-zero, each step of a change to the table counts it
 * down, and the step that brings it to zero SIGKILLs the process with the
 * lock held, so a test can kill a writer between any two of its stores. */
extern unsigned long pres_crash_countdown;

#endif
