/*
 * snap.h - a worker's published snapshot: what it serves (channels with
 * their subscriber counts, distinct users, counts), written only by that
 * worker and read by anyone, for the server API's `info` and `channels`.
 *
 *   seg_hdr | snap_hdr | data[cap]
 *
 * The writer is the one owner; readers copy under a seqlock: seq is odd
 * while the writer rewrites, and a copy is good when seq was even and
 * unchanged across it. A snapshot whose pid is not the live worker of its
 * slot is stale and ignored.
 *
 * data: nchannels x (u16 len, name, u32 subscribers), then
 *       nusers x (u16 len, name, u32 sessions).
 */
#ifndef ROTOR_SNAP_H
#define ROTOR_SNAP_H

#include <stdint.h>

#define SEG_KIND_SNAP 0x50414e53u /* "SNAP" */
#define SNAP_VERSION 2
#define SNAP_DATA_MAX ((uint32_t)8 << 20)

struct snap_hdr {
	uint64_t seq;        /* odd while being written */
	int32_t pid;         /* the writer */
	uint32_t len;        /* bytes of data in use */
	uint32_t nclients;   /* sessions that completed connect */
	uint32_t nsubs;      /* their subscriptions */
	uint32_t nchannels;  /* entries in data */
	uint32_t nusers;     /* entries in data, after the channels */
	uint32_t truncated;  /* 1 when data did not fit in SNAP_DATA_MAX */
	uint8_t pad[28];
};
_Static_assert(sizeof(struct snap_hdr) == 64, "snap_hdr is one cache line");

#define SNAP_SEG_SIZE (64 + sizeof(struct snap_hdr) + SNAP_DATA_MAX)

#endif
