/*
 * hub.h - the worker's index of its own subscribers: channel name -> the
 * local subscriptions of that channel. For each bus record the hub looks the
 * channel up; no local subscriber, nothing to do. A publication is encoded
 * once per protocol format and the same bytes are queued on every
 * subscriber of that format.
 *
 * One hub per worker process (file-static in hub.c), like the route table.
 */
#ifndef ROTOR_HUB_H
#define ROTOR_HUB_H

#include "rotor.h"
#include "proto.h"
#include "node.h"
#include <stdbool.h>
#include <stdint.h>

struct client;
struct hub_chan;

/* Subscription flags. */
#define CSUB_SERVER_SIDE 0x01  /* from the token, the API or the personal channel */
#define CSUB_POSITIONED  0x02
#define CSUB_RECOVERABLE 0x04
#define CSUB_JOIN_LEAVE  0x08  /* join/leave pushes go to this subscriber */
#define CSUB_PRESENCE    0x10  /* the channel keeps presence for it */
#define CSUB_EMIT_JOIN   0x20  /* its coming and going is published as join/leave */
#define CSUB_DELTA       0x40  /* negotiated fossil deltas (client-protocol.md 6.6) */
#define CSUB_DELTA_BASE  0x80  /* CSUB_DELTA, positioned: the client holds the
				* publication at `offset` as its delta base */

/* One client's subscription to one channel. Owned by the client (its subs
 * array), linked into the channel's list while subscribed. */
struct csub {
	struct csub *next, *prev;  /* the channel's subscribers */
	struct hub_chan *ch;
	struct client *c;
	uint8_t flags;             /* CSUB_* */
	int64_t expire_at;         /* unix seconds; 0 = never */
	int64_t close_at;          /* monotonic ms when it ends unless refreshed; 0 = never */
	uint64_t offset;           /* CSUB_POSITIONED: the last offset it got */
	char epoch[NODE_EPOCH_MAX + 1]; /* ... in this epoch ("" until known) */
	struct pstr chan_info;     /* owned copy; may be empty */
};

/* A channel's delta state, only while it has subscribers with CSUB_DELTA
 * (most channels never have one: they pay a pointer, not this). */
struct hub_delta {
	uint32_t n;                /* subscribers with CSUB_DELTA */
	/* The payload of the last publication delivered (or recovered) with
	 * an offset, the base of the next one's delta. */
	struct pstr prev;          /* owned */
	uint64_t prev_offset;      /* 0: none */
	char prev_epoch[NODE_EPOCH_MAX + 1];
};

struct hub_chan {
	struct hub_chan *hnext;    /* hash chain */
	struct csub *subs;
	struct hub_delta *delta;   /* NULL: no subscriber with CSUB_DELTA; owned */
	uint32_t hash;
	uint32_t nfmt[2];          /* subscribers per enum proto_fmt (hub_chan_nsubs: both) */
	uint32_t njoin;            /* subscribers with CSUB_JOIN_LEAVE */
	uint16_t len;
	char name[];               /* NUL-terminated */
};

/* CH's subscribers. */
static inline uint32_t hub_chan_nsubs(const struct hub_chan *ch)
{
	return ch->nfmt[0] + ch->nfmt[1];
}

/* The channel's record, or NULL when no local client is subscribed. */
struct hub_chan *hub_find(const char *name, size_t len);

/* Links S (fields c, flags, expire_at, chan_info set by the caller) into
 * channel NAME, creating the channel's record on first use. */
void hub_link(struct csub *s, const char *name, size_t len, enum proto_fmt f);
/* Unlinks S; the channel's record goes with its last subscriber. */
void hub_unlink(struct csub *s, enum proto_fmt f);

/* Fan-out of one publication / join / leave to the local subscribers of
 * CHANNEL. Encoded once per format; a JSON subscriber that cannot receive
 * the payload (not valid JSON) is disconnected with 3506. A positioned
 * subscriber gets a publication only when it is the next offset of its
 * epoch; an older one is skipped (it had it already), a gap or another
 * epoch ends the subscription (client_position).
 *
 * Subscribers with CSUB_DELTA get one of two more frames: the payload
 * whole (in JSON as a string), or, when the publisher asked for it
 * (DELTA), the subscriber holds the previous offset as its base and so
 * does the channel's record, a fossil delta of it, computed once. */
void hub_publication(struct pstr channel, const struct publication *p, struct pstr epoch, bool delta);

/* Makes P (offset and EPOCH, a recovered publication) the delta base of
 * CH unless CH already holds a later one. */
void hub_delta_base(struct hub_chan *ch, const struct publication *p, struct pstr epoch);

/* The recovered publications V[0..N) as a subscriber with CSUB_DELTA
 * gets them in its subscribe result: the first whole, each next one a
 * fossil delta of the one before when that is shorter; in JSON (JSON)
 * every payload as a string. OUT (N entries) points into BUF (the
 * caller's, reset here) and V. */
void hub_delta_chain(const struct publication *v, size_t n, bool json, struct publication *out,
		     struct jw *buf);
void hub_join_leave(struct pstr channel, const struct client_info *ci, bool join);

/* Number of channels with local subscribers, and of local subscriptions. */
size_t hub_nchannels(void);
size_t hub_nsubs(void);

/* A number that changes whenever a subscription is linked or unlinked. */
uint64_t hub_version(void);

/* Calls FN for each channel with local subscribers. */
void hub_each(void (*fn)(void *arg, const struct hub_chan *ch), void *arg);

#endif
