/*
 * fossil.h - applying a Fossil delta (client-protocol.md §6.6), for the
 * generator's delta subscribers (--delta): each publication that arrives
 * as a delta is rebuilt from the one before, so that its send time and
 * sequence can be read as from a whole one, and a wrong delta is counted
 * as a protocol error.
 */
#ifndef FOSSIL_H
#define FOSSIL_H

#include <stddef.h>

/* Rebuilds into out (cap bytes) the target of delta (dlen bytes) applied
 * to src (slen bytes). Returns its length, or -1 when the delta is
 * malformed, copies from outside src, does not produce the length it
 * announced, fails its checksum, or goes on after it. tests/unit/
 * test_fossil.c checks rotord's encoder with it. */
long fossil_apply(const char *src, size_t slen, const char *delta, size_t dlen, char *out, size_t cap);

#endif
