/*
 * b64.h - base64 (RFC 4648 section 4) and base64url (section 5), with or
 * without '=' padding. Used by JWT, rotorctl genconfig, and the b64data /
 * b64info fields of the protocol.
 */
#ifndef ROTOR_B64_H
#define ROTOR_B64_H

#include "rotor.h"

/* Flags for every function below. */
#define B64_STD   0x0 /* alphabet A-Z a-z 0-9 + / */
#define B64_URL   0x1 /* alphabet A-Z a-z 0-9 - _ */
#define B64_NOPAD 0x2 /* encode: no '='; decode: refuse '=' */

/* Length of the encoding of N bytes, without the terminating NUL. */
size_t b64_encoded_len(size_t n, unsigned flags);

/* Encodes N bytes of SRC into DST, which has room for
 * b64_encoded_len(n, flags) + 1 bytes, and NUL-terminates it. Returns the
 * length written, without the NUL. */
size_t b64_encode(char *dst, const void *src, size_t n, unsigned flags);

/* Same, into a new string the caller frees (never NULL: allocation failure
 * aborts, see util.h). */
char *b64_encode_alloc(const void *src, size_t n, unsigned flags);

/* An upper bound of the decoded size of N encoded characters. */
size_t b64_decoded_max(size_t n);

/* Decodes N characters of SRC into DST (room for b64_decoded_max(n) bytes)
 * and stores the decoded length in *OUTLEN. Returns RT_OK, or RT_INVAL when
 * SRC is not valid for FLAGS; DST then holds garbage.
 *
 * Refused always: a character outside the alphabet (whitespace included),
 * '=' anywhere but at the end, more than two '=', a length that no encoding
 * has (4k+1 data characters). Padding rules:
 *   B64_STD            padding required (length a multiple of 4)
 *   B64_URL            padding optional, but correct when present
 *   B64_NOPAD (either) padding refused
 * Unused low bits of the last character are ignored, as Go's decoders do
 * (Centrifugo decodes b64info and b64data with Go's base64.StdEncoding). */
int b64_decode(void *dst, size_t *outlen, const char *src, size_t n, unsigned flags);

#endif
