/*
 * pb.h - the protobuf wire format, both directions, shared by the client
 * protocol (proto.c) and Centrifugo's Redis layout (engine/redis_wire.c).
 *
 * Writers (pb_) append to a struct jw. A nested message is written with
 * pb_hold (a one-byte length placeholder) and closed with pb_fix, which
 * widens the placeholder when the body reaches 128 bytes.
 *
 * Readers (pbr_) walk a struct pbr over a buffer the caller keeps alive;
 * spans point into it. They return RT_OK, or RT_INVAL for a truncated or
 * over-long varint, a length past the end, field number 0 or a wire type
 * that does not exist.
 */
#ifndef ROTOR_PB_H
#define ROTOR_PB_H

#include "json.h"
#include "proto.h"
#include <stddef.h>
#include <stdint.h>

void pb_varint(struct jw *w, uint64_t v);
void pb_tag(struct jw *w, unsigned num, unsigned wt);
/* A one-byte length placeholder; returns where the body starts. */
size_t pb_hold(struct jw *w);
/* Writes the length of the body that started at START (after its
 * placeholder), widening the placeholder if the length needs it. */
void pb_fix(struct jw *w, size_t start);
/* Field NUM of wire type 2 holding P[0..N). */
void pb_lenfield(struct jw *w, unsigned num, const char *p, size_t n);
/* Proto3 scalars: field NUM as a varint, or S as a length-delimited
 * field; nothing when V is 0 or S empty (the default is left out). */
void pb_varfield(struct jw *w, unsigned num, uint64_t v);
void pb_optfield(struct jw *w, unsigned num, struct pstr s);

struct pbr {
	const uint8_t *p, *end;
};

static inline struct pbr pbr_of(const char *b, size_t n)
{
	struct pbr r = { (const uint8_t *)b, (const uint8_t *)b + n };
	return r;
}

int pbr_varint(struct pbr *r, uint64_t *out);
/* A field key: its number (≥ 1) and wire type. */
int pbr_tag(struct pbr *r, uint64_t *num, unsigned *wt);
/* A length-delimited value. */
int pbr_span(struct pbr *r, struct pstr *out);
/* Steps over N bytes (fixed32/fixed64). */
int pbr_fixed(struct pbr *r, size_t n);
/* Skips the value of a field of wire type WT, groups included. */
int pbr_skip(struct pbr *r, unsigned wt);

#endif
