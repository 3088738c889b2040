/*
 * fcache.c - the per-flush cache of bytes derived from shared messages
 * (fcache.h).
 */
#include "config.h"
#include "fcache.h"
#include "conn.h"
#include "util.h"

#define PROBE 8

void fcache_init(struct fcache *c, unsigned bits)
{
	c->bits = bits;
	c->v = xcalloc((size_t)1 << bits, sizeof(*c->v));
	c->used = xcalloc((size_t)1 << bits, sizeof(*c->used));
	c->nused = 0;
}

struct fcache_entry *fcache_get(struct fcache *c, const struct rseg *m, uintptr_t tag)
{
	size_t mask = ((size_t)1 << c->bits) - 1;
	uint64_t h = ((uint64_t)(uintptr_t)m->b >> 4 ^ (uint64_t)m->off * 31 ^ m->len ^ (uint64_t)tag * 131) *
		     0x9E3779B97F4A7C15ull;

	h >>= 64 - c->bits;
	for (size_t k = 0; k < PROBE; k++) {
		struct fcache_entry *e = &c->v[(h + k) & mask];

		if (e->src == m->b && e->off == m->off && e->len == m->len && e->tag == tag)
			return e;
		if (e->src)
			continue;
		*e = (struct fcache_entry){ .src = rbuf_ref(m->b), .off = m->off, .len = m->len, .tag = tag };
		c->used[c->nused++] = (uint16_t)(e - c->v);
		return e;
	}
	return NULL;
}

void fcache_clear(struct fcache *c)
{
	for (size_t i = 0; i < c->nused; i++) {
		struct fcache_entry *e = &c->v[c->used[i]];

		rbuf_unref(e->src);
		rbuf_unref(e->out);
		*e = (struct fcache_entry){ 0 };
	}
	c->nused = 0;
}
