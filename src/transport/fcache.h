/*
 * fcache.h - the bytes a transport derives from a shared message (a
 * publication queued on many connections: framed, quoted, wrapped), made
 * once per flush point and found again by every connection that carries
 * the same message in that flush.
 *
 * An entry is keyed by the message's segment (rbuf, offset, length) and the
 * caller's TAG (which derivation). The cache holds a reference on the key's
 * rbuf, so that its address cannot come to name other bytes before
 * fcache_clear, which the transport calls at the end of its flush. Open
 * addressing with a short probe and no eviction: where the neighbourhood is
 * full the caller derives the bytes for that one connection.
 */
#ifndef ROTOR_FCACHE_H
#define ROTOR_FCACHE_H

#include <stddef.h>
#include <stdint.h>

struct rbuf;
struct rseg;

struct fcache_entry {
	struct rbuf *src;    /* the message's rbuf (referenced); NULL: free */
	struct rbuf *out;    /* the derived bytes (the cache's reference) */
	size_t off, len;
	uintptr_t tag;
	size_t aux;          /* the caller's, e.g. how many of OUT's bytes are what */
};

struct fcache {
	struct fcache_entry *v;
	uint16_t *used;      /* the filled entries' indexes */
	size_t nused;
	unsigned bits;       /* 1 << bits entries */
};

/* Allocates 1 << BITS entries (BITS <= 16). */
void fcache_init(struct fcache *c, unsigned bits);

/* The entry of message M under TAG: OUT set if it was made in this flush;
 * else a new one (OUT NULL) whose OUT and AUX the caller sets at once;
 * NULL when there is no room near its place. */
struct fcache_entry *fcache_get(struct fcache *c, const struct rseg *m, uintptr_t tag);

/* Empties every entry, dropping the references: the end of a flush. */
void fcache_clear(struct fcache *c);

#endif
