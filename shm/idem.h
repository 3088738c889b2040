/*
 * idem.h - the results of idempotent publishes: for each (channel,
 * idempotency key) published with the shared-memory engine, the stream
 * position the first publish got, kept for a while (Centrifugo's 300 s) so
 * that a repeat from any worker answers the same and publishes nothing. One
 * transient segment under the run directory (like presence), created by the
 * master before forking; lost with the daemon, as Centrifugo's memory
 * engine loses its cache.
 *
 * Model: a fixed table of buckets of IDEM_WAYS entries; a (channel, key)
 * pair is known by a 128-bit keyed hash and lives in one bucket. An entry is
 * self-contained and carries a check over all its fields: it is written
 * with its check cleared first and set last, so a process killed at any
 * instruction leaves every entry either whole or failing its check (then
 * it is a free entry; the next holder clears it). Nothing else is shared: no chains, no counts to
 * rebuild, nothing a dead holder can leave half done. Bounded: when a
 * bucket is full of live entries, the one that expires first gives way
 * (counted in evictions). Expired entries are free; there is no sweep.
 *
 * Segment layout (seg kind SEG_KIND_IDEM, layout IDEM_VERSION), offsets
 * from the payload base:
 *
 *   0     +------------------------------------------------------------+
 *         | struct seg_hdr                                       64 B  |
 *   64    +------------------------------------------------------------+
 *         | struct idem_hdr                                     256 B  |
 *         |   0  identity: magic, version, geometry, hash key          |
 *         |   1  the robust mutex, owner pid                           |
 *         |   2  counters                                              |
 *         +------------------------------------------------------------+
 *         | entries: nbuckets x IDEM_WAYS x struct idem_ent (64 B)     |
 *   size  +------------------------------------------------------------+
 *
 * Invariant (idem_verify), whenever the lock is free or held by a live
 * process: every entry either has check == 0 (free), or its check holds
 * and it sits in the bucket of its hash.
 */
#ifndef ROTOR_IDEM_H
#define ROTOR_IDEM_H

#include "seg.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEG_KIND_IDEM 0x4d454449u                /* "IDEM" */
#define IDEM_VERSION 1
#define IDEM_MAGIC UINT64_C(0x4d454449524f544f)  /* "OTORIDEM" little-endian */

#define IDEM_WAYS 8                              /* entries per bucket */
#define IDEM_EPOCH_MAX 16                        /* longest epoch kept */
#define IDEM_ENTRIES_MIN 64
#define IDEM_ENTRIES_MAX ((uint32_t)1 << 24)
#define IDEM_ENTRIES_DEFAULT 65536               /* 4 MiB */
#define IDEM_TTL_MS 300000                       /* Centrifugo's result TTL */

/* One remembered result. check covers every other field; 0 = free. */
struct idem_ent {
	uint64_t h[2];             /* keyed hash of (channel, key) */
	int64_t expire_ms;         /* free from then */
	uint64_t offset;           /* the first publish's offset, 0 none */
	char epoch[IDEM_EPOCH_MAX];/* its epoch, NUL-padded; "" none */
	uint64_t pad;
	uint64_t check;
};
_Static_assert(sizeof(struct idem_ent) == 64, "idem_ent is one cache line");

struct idem_hdr {
	/* line 0: identity, written once by idem_create */
	uint64_t magic;            /* IDEM_MAGIC, stored last */
	uint32_t version;          /* IDEM_VERSION */
	uint32_t hdr_size;         /* sizeof(struct idem_hdr) */
	uint32_t ent_size;         /* sizeof(struct idem_ent) */
	uint32_t nbuckets;         /* a power of two */
	uint64_t ent_off;          /* from the payload base */
	uint64_t key[2];           /* SipHash key: keys come from API callers */
	uint8_t pad0[16];

	/* line 1: the lock */
	union {
		pthread_mutex_t lock;  /* robust, process-shared, error-checking */
		uint8_t lock_space[56];
	};
	int32_t owner;             /* pid holding the lock, 0 when free (advisory) */
	uint32_t writing;          /* entry + 1 an idem_put is writing, 0 none:
	                            * the repair after a dead holder clears it */

	/* lines 2-3: counters, relaxed; a process killed between an event and
	 * its count leaves it uncounted */
	uint64_t lookups;          /* idem_get calls */
	uint64_t hits;             /* ... that found a live result */
	uint64_t stores;           /* idem_put calls */
	uint64_t evictions;        /* live entries overwritten for room */
	uint64_t repairs;          /* locks taken over from a dead holder */
	uint64_t torn;             /* entries found failing their check */
	uint64_t pad2[10];
};
_Static_assert(sizeof(pthread_mutex_t) <= 56, "the mutex must fit its line");
_Static_assert(sizeof(struct idem_hdr) == 256, "idem_hdr is four cache lines");

/* This process's mapping. */
struct idem {
	struct seg seg;
	struct idem_hdr *h;
	struct idem_ent *ents;
	uint32_t mask;             /* nbuckets - 1 */
	/* Tests only: called between the stores of an idem_put with the lock
	 * held (step 1: check cleared, 2: half the fields written, 3: all
	 * written, check not set); a hook that kills the process simulates a
	 * crash there. */
	void (*hook)(struct idem *t, int step);
};

/* What a lookup finds. epoch is NUL-terminated. */
struct idem_result {
	uint64_t offset;
	char epoch[IDEM_EPOCH_MAX + 1];
};

/* Segment size for room for ENTRIES results (rounded up to a power of two
 * of buckets). */
size_t idem_seg_size(uint32_t entries);

/* Creates the table at PATH (replacing any file) with room for ENTRIES
 * (IDEM_ENTRIES_MIN .. MAX) results. Returns 0, or -1 with errno: EINVAL,
 * ENOSPC, or the failing call's. */
int idem_create(struct idem *t, const char *path, uint32_t entries);

/* Attaches to the table at PATH. Returns 0, or -1 with errno ENOENT, EPROTO
 * (the header does not validate) or the failing call's. */
int idem_attach(struct idem *t, const char *path, bool readonly);

void idem_detach(struct idem *t);
int idem_unlink(struct idem *t);

/* Looks up the result of (CHANNEL, KEY) live at NOW_MS: true with *OUT
 * filled, false when there is none (never stored, expired, evicted, or
 * torn by a dead writer). Takes the table's lock; -1 with errno (the
 * mutex's) on failure. A caller that must check and then publish and
 * store as one step across processes holds its own lock around the
 * three (node.c: the bus lock); lock order: the caller's, then this. */
int idem_get(struct idem *t, const char *channel, size_t channel_len, const char *key, size_t key_len,
	     int64_t now_ms, struct idem_result *out);

/* Remembers R as the result of (CHANNEL, KEY) from NOW_MS for TTL_MS,
 * replacing what the pair had; a bucket full of live results gives up the
 * one that expires first (counted in evictions). An epoch longer than
 * IDEM_EPOCH_MAX, or a TTL of 0, is refused (EINVAL). Returns 0 or -1 with
 * errno (EINVAL, the mutex's). */
int idem_put(struct idem *t, const char *channel, size_t channel_len, const char *key, size_t key_len,
	     const struct idem_result *r, int64_t now_ms, uint64_t ttl_ms);

struct idem_stats {
	uint32_t capacity;         /* entries */
	uint32_t live;             /* entries holding an unexpired result at NOW */
	uint64_t lookups, hits, stores, evictions, repairs, torn;
};

/* Counters and a count of live entries at NOW_MS, without the lock. */
void idem_stats(const struct idem *t, int64_t now_ms, struct idem_stats *st);

/* Takes the lock and checks the invariant: returns the number of entries
 * in use (check set), or -1 with errno EPROTO (an entry is in the wrong
 * bucket or has a check that neither holds nor is 0: a torn entry, which
 * the repair after a dead holder clears) or the mutex's. For tests. */
int idem_verify(struct idem *t);

#endif
