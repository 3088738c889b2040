/*
 * json.h - a validating JSON scanner that keeps raw byte spans, and a small
 * JSON writer. Prefixes js_ (scanner) and jw_ (writer); json_ is jansson's.
 *
 * Why not jansson for the wire: Centrifugo passes `data`, `info` and the like
 * through byte for byte, and jansson re-serialises (1.10 becomes
 * 1.1000000000000001, key order and spacing change). js_scan validates the
 * whole text (RFC 8259, UTF-8 included) and records for every value its
 * type and its exact bytes, so a caller can copy a raw value as sent.
 *
 * Tokens are stored depth-first in one array: an object token is followed by
 * key, value, key, value...; an array by its elements. tok.next is the index
 * just past the token's subtree, so siblings are walked without recursion.
 */
#ifndef ROTOR_JSON_H
#define ROTOR_JSON_H

#include "rotor.h"
#include <stdbool.h>
#include <stdint.h>

enum js_type { JS_OBJECT = 1, JS_ARRAY, JS_STRING, JS_NUMBER, JS_TRUE, JS_FALSE, JS_NULL };

struct js_tok {
	uint8_t type;    /* enum js_type */
	uint8_t escaped; /* strings: the raw text holds at least one backslash escape */
	uint32_t start;  /* offset of the first byte (the quote, for strings and keys) */
	uint32_t len;    /* raw length, quotes included */
	uint32_t size;   /* objects: number of members; arrays: number of elements */
	uint32_t next;   /* index of the first token after this subtree */
};

/* A parsed document: the text (not copied; must outlive the doc) and its
 * tokens. */
struct js_doc {
	const char *s;
	size_t n;
	struct js_tok *t;
	uint32_t ntok, cap;
	int depth_limit;  /* default 64 */
};

/* Scans S[0..N) as exactly one JSON value (surrounding whitespace allowed).
 * Tokens go to DOC->t (grown with xrealloc up to MAX tokens; 0 = no limit).
 * Returns RT_OK, or RT_INVAL for invalid JSON, invalid UTF-8, nesting deeper
 * than depth_limit, trailing bytes or more than MAX tokens. js_free releases
 * the tokens. */
int js_scan(struct js_doc *doc, const char *s, size_t n, uint32_t max);
void js_free(struct js_doc *doc);

/* The raw bytes of token I (for a string: with its quotes). */
static inline const char *js_raw(const struct js_doc *d, uint32_t i) { return d->s + d->t[i].start; }
static inline size_t js_rawlen(const struct js_doc *d, uint32_t i) { return d->t[i].len; }
static inline int js_type(const struct js_doc *d, uint32_t i) { return d->t[i].type; }

/* Index of the value of KEY in object OBJ, or -1 (also when OBJ is not an
 * object). Keys are compared after unescaping; NOCASE compares ASCII letters
 * case-insensitively (the server API matches field names like Go does). With
 * duplicate keys the last one wins (Go's encoding/json). */
int64_t js_get(const struct js_doc *d, uint32_t obj, const char *key, bool nocase);

/* Iterates the members of object OBJ: *it starts at 0; each call sets *key
 * and *val to token indexes and returns true, false at the end. */
bool js_next_member(const struct js_doc *d, uint32_t obj, uint32_t *it, uint32_t *key, uint32_t *val);
/* Iterates the elements of array ARR the same way. */
bool js_next_elem(const struct js_doc *d, uint32_t arr, uint32_t *it, uint32_t *val);

/* The unescaped text of string token I into BUF (CAP bytes, NUL-terminated).
 * Returns its length, or -1 if I is not a string or it does not fit. */
int64_t js_str(const struct js_doc *d, uint32_t i, char *buf, size_t cap);
/* The same into a new xmalloc'ed string (NULL if I is not a string). */
char *js_strdup(const struct js_doc *d, uint32_t i);
/* Compares string token I with the NUL-terminated S (unescaped). */
bool js_str_eq(const struct js_doc *d, uint32_t i, const char *s);

/* Integer values: RT_OK and *out when token I is a JSON number that is an
 * integer within range (no fraction, no exponent beyond integer range), else
 * RT_INVAL. */
int js_int64(const struct js_doc *d, uint32_t i, int64_t *out);
int js_uint64(const struct js_doc *d, uint32_t i, uint64_t *out);
/* RT_OK and *out for true/false, else RT_INVAL. */
int js_bool(const struct js_doc *d, uint32_t i, bool *out);

/* ---- writer ----------------------------------------------------------- */

/* A growable output buffer. Zero-initialise; jw_free releases it. */
struct jw {
	char *buf;
	size_t len, cap;
};

void jw_free(struct jw *w);
void jw_reserve(struct jw *w, size_t more);
void jw_raw(struct jw *w, const void *p, size_t n);      /* bytes as they are */
void jw_lit(struct jw *w, const char *s);                /* a C string as it is */
void jw_str(struct jw *w, const char *s, size_t n);      /* a JSON string, quoted and escaped */
void jw_u64(struct jw *w, uint64_t v);
void jw_i64(struct jw *w, int64_t v);
/* A raw JSON value from the wire, with every '\n' byte removed (legal only as
 * insignificant whitespace) so a message never holds a newline, as the
 * reference server does. */
void jw_json(struct jw *w, const char *p, size_t n);

/* ---- additions -------------------------------------------------------- */

/* Nesting is bounded: depth_limit values above JS_DEPTH_MAX act as it. */
#define JS_DEPTH_MAX 1024

/* Whether S[0..N) is exactly one valid JSON value (the rules of js_scan,
 * nesting up to JS_DEPTH_MAX), without recording tokens or allocating.
 * For checking raw payloads before they are written into a JSON message. */
bool js_valid(const char *s, size_t n);

#endif
