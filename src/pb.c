/*
 * pb.c - protobuf varints, keys and length-delimited fields, written into a
 * struct jw and read from a buffer (see pb.h). No allocation of its own:
 * writers grow the caller's jw, readers return spans into the input.
 */
#include "config.h"
#include "pb.h"
#include "rotor.h"

#include <string.h>

/* ---- writing ---- */

void pb_varint(struct jw *w, uint64_t v)
{
	uint8_t b[10];
	size_t n = 0;

	while (v >= 0x80) {
		b[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	b[n++] = (uint8_t)v;
	jw_raw(w, b, n);
}

void pb_tag(struct jw *w, unsigned num, unsigned wt)
{
	pb_varint(w, (uint64_t)num << 3 | wt);
}

/* A one-byte length placeholder; returns where the body starts. */
size_t pb_hold(struct jw *w)
{
	jw_reserve(w, 1);
	w->buf[w->len++] = 0;
	return w->len;
}

/* Writes the length of the body that started at START (after its
 * placeholder), widening the placeholder if the length needs it. */
void pb_fix(struct jw *w, size_t start)
{
	size_t n = w->len - start, vl = 1;
	uint8_t *q;

	for (size_t x = n; x >= 0x80; x >>= 7)
		vl++;
	if (vl > 1) {
		jw_reserve(w, vl - 1);
		memmove(w->buf + start + vl - 1, w->buf + start, n);
		w->len += vl - 1;
	}
	q = (uint8_t *)w->buf + start - 1;
	while (n >= 0x80) {
		*q++ = (uint8_t)(n | 0x80);
		n >>= 7;
	}
	*q = (uint8_t)n;
}

void pb_lenfield(struct jw *w, unsigned num, const char *p, size_t n)
{
	pb_tag(w, num, 2);
	pb_varint(w, n);
	jw_raw(w, p, n);
}

void pb_varfield(struct jw *w, unsigned num, uint64_t v)
{
	if (v == 0)
		return;
	pb_tag(w, num, 0);
	pb_varint(w, v);
}

void pb_optfield(struct jw *w, unsigned num, struct pstr s)
{
	if (s.n)
		pb_lenfield(w, num, s.p, s.n);
}

/* ---- reading ---- */

/* At most 10 bytes; the bits beyond 64 of a 10th byte are dropped, as Go's
 * decoders do. */
int pbr_varint(struct pbr *r, uint64_t *out)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 70; shift += 7) {
		uint8_t c;
		if (r->p == r->end)
			return RT_INVAL;
		c = *r->p++;
		v |= (uint64_t)(c & 0x7F) << shift;
		if (!(c & 0x80)) {
			*out = v;
			return RT_OK;
		}
	}
	return RT_INVAL;
}

int pbr_tag(struct pbr *r, uint64_t *num, unsigned *wt)
{
	uint64_t tag;

	if (pbr_varint(r, &tag) != RT_OK || tag > UINT32_MAX || tag >> 3 == 0)
		return RT_INVAL;
	*num = tag >> 3;
	*wt = tag & 7;
	return RT_OK;
}

int pbr_span(struct pbr *r, struct pstr *out)
{
	uint64_t n;

	if (pbr_varint(r, &n) != RT_OK || n > (uint64_t)(r->end - r->p))
		return RT_INVAL;
	out->p = (const char *)r->p;
	out->n = (size_t)n;
	r->p += n;
	return RT_OK;
}

int pbr_fixed(struct pbr *r, size_t n)
{
	if ((size_t)(r->end - r->p) < n)
		return RT_INVAL;
	r->p += n;
	return RT_OK;
}

/* Skips the value of a field of wire type WT, groups included (iteratively:
 * nesting costs no stack). */
int pbr_skip(struct pbr *r, unsigned wt)
{
	uint64_t v, num;
	struct pstr s;
	size_t depth = 0;

	for (;;) {
		switch (wt) {
		case 0:
			if (pbr_varint(r, &v) != RT_OK)
				return RT_INVAL;
			break;
		case 1:
			if (pbr_fixed(r, 8) != RT_OK)
				return RT_INVAL;
			break;
		case 2:
			if (pbr_span(r, &s) != RT_OK)
				return RT_INVAL;
			break;
		case 3:
			depth++;
			break;
		case 4:
			if (depth == 0)
				return RT_INVAL;        /* an end without a start */
			depth--;
			break;
		case 5:
			if (pbr_fixed(r, 4) != RT_OK)
				return RT_INVAL;
			break;
		default:
			return RT_INVAL;
		}
		if (depth == 0)
			return RT_OK;
		if (pbr_tag(r, &num, &wt) != RT_OK)
			return RT_INVAL;
	}
}
