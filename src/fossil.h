/*
 * fossil.h - the encoder of fossil-scm's delta format, the one delta type
 * of Centrifugo's protocol (client-protocol.md 6.6). Prefix fossil_.
 *
 * A delta turns SOURCE into TARGET:
 *   <target length>\n  then  <count>@<offset>,  (copy from SOURCE)
 *                       or   <count>:<bytes>    (insert COUNT bytes)
 *   then <checksum>;
 * with every number written in base 64, most significant digit first, over
 * the alphabet 0-9 A-Z _ a-z ~. The checksum is the sum, modulo 2^32, of
 * TARGET read as big-endian 32-bit words (the last one padded with zeros).
 */
#ifndef ROTOR_FOSSIL_H
#define ROTOR_FOSSIL_H

#include <stddef.h>
#include <stdint.h>

struct jw;

/* Appends to OUT a delta that turns SRC[0..NSRC) into TGT[0..NTGT).
 * A match never starts or ends inside a UTF-8 sequence of TGT, so the
 * delta of a valid UTF-8 target is itself valid UTF-8 (a JSON subscriber
 * receives it as a JSON string). Returns the delta's length. */
size_t fossil_delta(const void *src, size_t nsrc, const void *tgt, size_t ntgt, struct jw *out);

/* The checksum of P[0..N), as above. */
uint32_t fossil_checksum(const void *p, size_t n);

#endif
