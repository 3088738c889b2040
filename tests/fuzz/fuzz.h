/*
 * fuzz.h - what the libFuzzer targets share: invariants that crash when
 * they fail, and reading every byte of a decoded span (so that ASan sees a
 * span pointing outside its input).
 */
#ifndef ROTOR_FUZZ_H
#define ROTOR_FUZZ_H

#include "proto.h"

#include <stdbool.h>
#include <string.h>

/* An invariant: a violation is a crash, which libFuzzer keeps. */
#define CHECK(c) do { if (!(c)) __builtin_trap(); } while (0)

static volatile unsigned fuzz_sink;

/* Reads every byte of S. */
static inline void touch(struct pstr s)
{
	for (size_t i = 0; i < s.n; i++)
		fuzz_sink += (unsigned char)s.p[i];
}

/* Whether A and B hold the same bytes. */
static inline bool same(struct pstr a, struct pstr b)
{
	return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

#endif
