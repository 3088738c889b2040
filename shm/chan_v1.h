/*
 * chan_v1.h - the channel table's layout version 1, as releases before
 * layout 2 wrote it: read only by the migration in chan.c (and by the test
 * that writes such a file). Nothing here is ever written to a live
 * segment.
 *
 * Layout 1 is layout 2 (chan.h) without hist_meta's version and
 * version_epoch: the meta is 80 bytes, an entry 96, the journal 112 (the
 * header pads it to the same 512 bytes). Records (struct hist_blk), the
 * bucket array, the bitmaps, the geometry's rules, the meta check and the
 * record check are the same.
 */
#ifndef ROTOR_CHAN_V1_H
#define ROTOR_CHAN_V1_H

#include "chan.h"

#define CTAB_V1_VERSION 1

struct hist_meta_v1 {
	uint64_t top;
	uint64_t gen;
	uint32_t head;
	uint32_t tail;
	uint32_t count;
	uint32_t blocks;
	int64_t touch_ms;
	int64_t expire_ms;
	int64_t meta_expire_ms;
	int64_t head_ms;
	char epoch[HIST_EPOCH_LEN];
	uint32_t size;
	uint32_t check;            /* meta check over all fields before it */
};
_Static_assert(sizeof(struct hist_meta_v1) == 80, "layout 1: hist_meta is 80 bytes");

struct ctab_stream_v1 {
	uint32_t next;
	uint32_t name_len;
	uint64_t hash;
	struct hist_meta_v1 m;
};
_Static_assert(sizeof(struct ctab_stream_v1) == 96, "layout 1: ctab_stream is 96 bytes");

struct ctab_journal_v1 {
	uint32_t state;
	uint32_t stream;
	uint32_t link_blk;
	uint32_t link_val;
	uint32_t alloc_first;
	uint32_t alloc_count;
	uint32_t free_first;
	uint32_t free_count;
	struct hist_meta_v1 meta;
};
_Static_assert(sizeof(struct ctab_journal_v1) == 112, "layout 1: ctab_journal is 112 bytes");

struct ctab_hdr_v1 {
	uint64_t magic;
	uint32_t version;
	uint32_t hdr_size;
	uint32_t nstreams, nbuckets, nblocks, stride;
	uint32_t name_max, max_record, block_size, entry_size;
	uint32_t meta_size, journal_size;
	uint64_t buckets_off, streams_off, emap_off, bmap_off, blocks_off;
	uint64_t key[2];
	uint8_t pad0[16];
	union {
		pthread_mutex_t lock;
		uint8_t lock_space[56];
	};
	int32_t owner;
	uint32_t pad1;
	struct ctab_journal_v1 j;
	uint8_t pad2[16];
	uint32_t clean;
	uint32_t nused;
	uint32_t nfree;
	uint32_t bcursor;
	uint32_t ecursor;
	uint32_t sweep_hand;
	uint32_t evict_hand;
	uint32_t pad3;
	uint64_t next_gen;
	char boot_id[24];
	uint64_t counters[12];
	uint64_t pad4[4];
};
_Static_assert(sizeof(struct ctab_hdr_v1) == 512, "layout 1: ctab_hdr is 512 bytes");
_Static_assert(offsetof(struct ctab_hdr_v1, key) == offsetof(struct ctab_hdr, key) &&
		       offsetof(struct ctab_hdr_v1, j) == offsetof(struct ctab_hdr, j) &&
		       offsetof(struct ctab_hdr_v1, clean) == offsetof(struct ctab_hdr, clean),
	       "layout 1 and 2 headers differ only in the journal: the identity lines are read as one");

#endif
