/*
 * jstr.h - JSON strings for the transports that carry Centrifugo frames
 * inside one: /emulation's "data" (client-protocol.md §8.4) and SockJS
 * messages (sockjs.md §4), both ways.
 */
#ifndef JSTR_H
#define JSTR_H

#include <stddef.h>
#include <stdint.h>

/* The most bytes jstr_escape writes for n input bytes. */
#define JSTR_ESCAPED_MAX(n) (6 * (n))

/* Writes s[0, n) into out as the inside of a JSON string (no quotes): '"',
 * '\\' and control characters escaped, everything else as it is (the input
 * is UTF-8). out holds at least JSTR_ESCAPED_MAX(n) bytes. Returns the
 * length written. */
size_t jstr_escape(char *out, const uint8_t *s, size_t n);

/* Decodes the JSON string whose opening quote is at p[-1], up to its
 * closing quote before e, into out (which holds at least e - p bytes: the
 * result is never longer): every escape, \uXXXX surrogate pairs joined
 * into one UTF-8 character, a lone surrogate as U+FFFD. Returns the
 * decoded length and sets *end past the closing quote, or returns
 * (size_t)-1 when the string is cut or malformed. */
size_t jstr_unescape(const uint8_t *p, const uint8_t *e, uint8_t *out, const uint8_t **end);

#endif
