/*
 * ws_deflate.h - permessage-deflate (RFC 7692) for the WebSocket layer
 * (ws.c): the Sec-WebSocket-Extensions negotiation, the worker's one
 * inflater for compressed client messages, and context-free deflate of one
 * outgoing message at a time, so that the compressed bytes of a shared
 * message serve every connection that carries it.
 */
#ifndef ROTOR_WS_DEFLATE_H
#define ROTOR_WS_DEFLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rbuf;

/* The largest response wsd_accept writes, with its NUL. */
#define WSD_RESPONSE_MAX 112

/*
 * Reads the offers of one Sec-WebSocket-Extensions header VALUE in order
 * and accepts the first permessage-deflate offer we can honour: parameters
 * only among server_no_context_takeover, client_no_context_takeover
 * (neither with a value), server_max_window_bits=9..15 and
 * client_max_window_bits[=8..15], each at most once (a quoted value is
 * unquoted first). An offer that breaks this is declined, and so is
 * server_max_window_bits=8, which zlib's raw deflate cannot honour (it
 * silently uses 9). Other extensions are skipped; a value that does not
 * parse as a list of extensions accepts nothing after the break.
 *
 * On acceptance writes the response header value (no name, no CRLF) into
 * RESP and the window (9..15) our output must keep to into *WBITS, and
 * returns true. The response always asks for both no_context_takeover
 * parameters (see ws_deflate.c); it never names client_max_window_bits.
 */
bool wsd_accept(const char *value, char resp[WSD_RESPONSE_MAX], uint8_t *wbits);

/*
 * Inflates one message's compressed payload IN (N bytes, without the
 * 00 00 ff ff that wsd_inflate appends itself) with no context from
 * earlier messages, into the worker's buffer: *OUT and *OUTLEN, valid
 * until the next wsd_inflate. At most LIMIT bytes are produced: RT_OK;
 * RT_AGAIN when the message would inflate to more than LIMIT (what was
 * allocated is bounded by LIMIT + 1, whatever the input claims); RT_INVAL
 * when IN is not a raw deflate stream.
 */
int wsd_inflate(const uint8_t *in, size_t n, size_t limit, const char **out, size_t *outlen);

/*
 * Deflates LEN bytes at P on their own (raw deflate at LEVEL 1..9 within a
 * 2^WBITS window, WBITS 9..15, ending with a sync flush: the last four
 * bytes are 00 00 ff ff). The result decodes without any context, so that
 * such chunks, the last one's four bytes cut off, concatenate into one
 * message. Returns a new rbuf (the caller's reference).
 */
struct rbuf *wsd_deflate(const void *p, size_t len, int level, unsigned wbits);

/* Frees the worker's zlib state (tests; a worker keeps it until it exits). */
void wsd_free(void);

#endif
