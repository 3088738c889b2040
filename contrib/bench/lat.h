/*
 * lat.h - latency histogram with log-linear buckets (HdrHistogram's layout
 * with 64 sub-buckets per power of two: at most 1.6% relative error), fixed
 * size so that it travels over a pipe as plain bytes and merges by adding.
 */
#ifndef LAT_H
#define LAT_H

#include <stdint.h>

#define LAT_SUB_BITS 7                  /* values below 128 are exact */
#define LAT_MAX_BITS 41                 /* up to 2^41 ns, about 36 minutes */
#define LAT_NBUCKETS ((1 << LAT_SUB_BITS) + (LAT_MAX_BITS - LAT_SUB_BITS) * (1 << (LAT_SUB_BITS - 1)))

struct lat {
	uint64_t n, sum, max;           /* ns */
	uint64_t b[LAT_NBUCKETS];
};

/* Adds one value in ns (values past the range land in the last bucket). */
void lat_add(struct lat *h, uint64_t ns);
/* dst += src. */
void lat_merge(struct lat *dst, const struct lat *src);
/* The value at quantile q (0..1): the upper edge of the bucket holding it,
 * never more than the recorded maximum; 0 when the histogram is empty. */
uint64_t lat_quantile(const struct lat *h, double q);

#endif
