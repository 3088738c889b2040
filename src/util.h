/*
 * util.h - small helpers every part of rotor uses: allocation that cannot
 * fail silently, randomness, clocks, fd flags.
 */
#ifndef ROTOR_UTIL_H
#define ROTOR_UTIL_H

#include "rotor.h"
#include <stdbool.h>

/* Allocation failure is handled in one place: these log and abort the
 * process (the master restarts a worker that dies). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) ROTOR_PRINTF(1, 2);

/* An owned copy of a span (NULL, 0 for an empty one), and its release
 * (the span is emptied). */
struct pstr;
struct pstr pstr_dup(struct pstr s);
void pstr_free(struct pstr *s);

/* Percent-decodes N bytes at S into OUT (room for N bytes): %XX is a
 * byte, and '+' a space when PLUS_SPACE (Go's QueryUnescape). Returns the
 * length, or -1 for a bad escape. */
long util_unescape(const char *s, size_t n, char *out, bool plus_space);

/* Fills BUF with N bytes from the kernel's CSPRNG (getrandom). Returns RT_OK
 * or RT_ERR (logged). */
int util_random(void *buf, size_t n);

/* Writes the version 4 UUID made of the 16 random bytes B into OUT as 36
 * characters (no NUL); B's version and variant bits are overwritten. */
void util_uuid4(unsigned char b[16], char out[36]);

/* Wall clock in milliseconds and seconds since the epoch; monotonic clock in
 * milliseconds. */
int64_t util_wall_ms(void);
int64_t util_mono_ms(void);
int64_t util_mono_ns(void);

/* Sets O_NONBLOCK / FD_CLOEXEC on FD. Return RT_OK or RT_ERR (logged). */
int util_set_nonblock(int fd);
int util_set_cloexec(int fd);

/* Parses a whole decimal integer in [min, max]. Returns RT_OK or RT_INVAL. */
int util_parse_int(const char *s, long long min, long long max, long long *out);

#endif
