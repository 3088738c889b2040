/*
 * smap.c - string -> count map (see smap.h). Chains, the table doubles
 * when it holds as many entries as slots. Keys may come from clients
 * (SockJS session ids), so the hash is SipHash under a key drawn once per
 * process: nobody can aim many keys at one chain.
 */
#include "config.h"
#include "smap.h"
#include "siphash.h"
#include "util.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct smap_ent {
	struct smap_ent *next;
	uint64_t count;
	uint32_t hash;
	uint32_t len;
	char key[];
};

static uint32_t hash(const char *s, size_t n)
{
	static uint64_t key[2];
	static bool keyed;

	if (!keyed) {
		if (util_random(key, sizeof(key)) != RT_OK)
			abort(); /* no randomness: the table could be flooded */
		keyed = true;
	}
	return (uint32_t)siphash24(key, s, n);
}

static struct smap_ent **slot(const struct smap *m, const char *key, size_t n, uint32_t h)
{
	struct smap_ent **pp = &m->tab[h & (m->cap - 1)];
	while (*pp && !((*pp)->hash == h && (*pp)->len == n && memcmp((*pp)->key, key, n) == 0))
		pp = &(*pp)->next;
	return pp;
}

static void grow(struct smap *m)
{
	size_t cap = m->cap ? m->cap * 2 : 16;
	struct smap_ent **tab = xcalloc(cap, sizeof(*tab));
	for (size_t i = 0; i < m->cap; i++) {
		for (struct smap_ent *e = m->tab[i], *next; e; e = next) {
			next = e->next;
			e->next = tab[e->hash & (cap - 1)];
			tab[e->hash & (cap - 1)] = e;
		}
	}
	free(m->tab);
	m->tab = tab;
	m->cap = cap;
}

void smap_add(struct smap *m, const char *key, size_t n, int64_t delta)
{
	if (m->n + 1 > m->cap)
		grow(m);
	uint32_t h = hash(key, n);
	struct smap_ent **pp = slot(m, key, n, h), *e = *pp;
	if (e == NULL) {
		if (delta <= 0)
			return;
		e = xmalloc(sizeof(*e) + n);
		e->next = NULL;
		e->count = 0;
		e->hash = h;
		e->len = (uint32_t)n;
		memcpy(e->key, key, n);
		*pp = e;
		m->n++;
	}
	if (delta < 0 && (uint64_t)-delta >= e->count) {
		*pp = e->next;
		free(e);
		m->n--;
		return;
	}
	e->count += (uint64_t)delta;
}

void smap_set(struct smap *m, const char *key, size_t n, uint64_t v)
{
	int64_t have = (int64_t)smap_get(m, key, n);

	if (have)
		smap_add(m, key, n, -have);
	if (v)
		smap_add(m, key, n, (int64_t)v);
}

uint64_t smap_get(const struct smap *m, const char *key, size_t n)
{
	if (m->cap == 0)
		return 0;
	struct smap_ent *e = *slot(m, key, n, hash(key, n));
	return e ? e->count : 0;
}

void smap_each(const struct smap *m, void (*fn)(void *arg, const char *key, size_t n, uint64_t count),
	       void *arg)
{
	for (size_t i = 0; i < m->cap; i++)
		for (struct smap_ent *e = m->tab[i]; e; e = e->next)
			fn(arg, e->key, e->len, e->count);
}

void smap_filter(struct smap *m, bool (*fn)(void *arg, const char *key, size_t n, uint64_t *count), void *arg)
{
	for (size_t i = 0; i < m->cap; i++) {
		for (struct smap_ent **pp = &m->tab[i], *e; (e = *pp) != NULL;) {
			if (fn(arg, e->key, e->len, &e->count) && e->count != 0) {
				pp = &e->next;
				continue;
			}
			*pp = e->next;
			free(e);
			m->n--;
		}
	}
}

void smap_clear(struct smap *m)
{
	for (size_t i = 0; i < m->cap; i++) {
		for (struct smap_ent *e = m->tab[i], *next; e; e = next) {
			next = e->next;
			free(e);
		}
	}
	free(m->tab);
	memset(m, 0, sizeof(*m));
}
