/*
 * lat.c - the latency histogram of lat.h.
 *
 * Bucket i < 128 holds the value i exactly. Above, a value whose highest set
 * bit is b (b >= 7) is shifted right by s = b - 6 so that 64 <= v >> s < 128,
 * and lands in bucket 128 + (s - 1) * 64 + (v >> s) - 64: 64 buckets per
 * power of two, each 2^s wide.
 */
#include "lat.h"

static unsigned lat_index(uint64_t v)
{
	if (v < (1u << LAT_SUB_BITS))
		return (unsigned)v;
	unsigned b = 63u - (unsigned)__builtin_clzll(v);
	unsigned s = b - (LAT_SUB_BITS - 1);
	unsigned half = 1u << (LAT_SUB_BITS - 1);
	unsigned i = (1u << LAT_SUB_BITS) + (s - 1) * half + (unsigned)(v >> s) - half;
	return i < LAT_NBUCKETS ? i : LAT_NBUCKETS - 1;
}

/* The largest value that maps to bucket i. */
static uint64_t lat_upper(unsigned i)
{
	if (i < (1u << LAT_SUB_BITS))
		return i;
	unsigned half = 1u << (LAT_SUB_BITS - 1);
	unsigned k = i - (1u << LAT_SUB_BITS);
	unsigned s = k / half + 1;
	uint64_t m = k % half + half;
	return ((m + 1) << s) - 1;
}

void lat_add(struct lat *h, uint64_t ns)
{
	h->b[lat_index(ns)]++;
	h->n++;
	h->sum += ns;
	if (ns > h->max)
		h->max = ns;
}

void lat_merge(struct lat *dst, const struct lat *src)
{
	for (unsigned i = 0; i < LAT_NBUCKETS; i++)
		dst->b[i] += src->b[i];
	dst->n += src->n;
	dst->sum += src->sum;
	if (src->max > dst->max)
		dst->max = src->max;
}

uint64_t lat_quantile(const struct lat *h, double q)
{
	if (h->n == 0)
		return 0;
	uint64_t rank = (uint64_t)(q * (double)h->n + 0.5);
	if (rank < 1)
		rank = 1;
	if (rank > h->n)
		rank = h->n;
	uint64_t seen = 0;
	for (unsigned i = 0; i < LAT_NBUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank) {
			uint64_t u = lat_upper(i);
			return u < h->max ? u : h->max;
		}
	}
	return h->max;
}
