/*
 * smap.h - a map from byte strings to counts: chained hashing, keys copied.
 * An entry whose count falls to zero is removed. Used for per-user
 * connection counts, for merging the workers' snapshots, and (a pointer
 * as the count) for the transports' session ids.
 */
#ifndef ROTOR_SMAP_H
#define ROTOR_SMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct smap_ent;

struct smap {
	struct smap_ent **tab;
	size_t cap;   /* power of two, or 0 */
	size_t n;     /* entries */
};

/* Adds DELTA to the count of the N bytes at KEY (creating the entry); an
 * entry whose count reaches 0 or below is removed. */
void smap_add(struct smap *m, const char *key, size_t n, int64_t delta);
/* Sets the count of KEY to V (0 removes it). Values up to INT64_MAX,
 * which holds any pointer as (uintptr_t). */
void smap_set(struct smap *m, const char *key, size_t n, uint64_t v);
/* The count of KEY, 0 when absent. */
uint64_t smap_get(const struct smap *m, const char *key, size_t n);
/* Calls FN for each entry, in no particular order. FN must not change M. */
void smap_each(const struct smap *m, void (*fn)(void *arg, const char *key, size_t n, uint64_t count),
	       void *arg);
/* Calls FN for each entry, which may change its count; the entries for
 * which FN returns false (or leaves a count of 0) are removed. FN must not
 * change M otherwise. */
void smap_filter(struct smap *m, bool (*fn)(void *arg, const char *key, size_t n, uint64_t *count), void *arg);
/* Frees every entry; M is empty afterwards and may be used again. */
void smap_clear(struct smap *m);

#endif
