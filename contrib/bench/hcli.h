/*
 * hcli.h - keep-alive HTTP/1.1 client connections over sock.h: POST
 * requests, pipelined, responses matched in order (Content-Length bodies
 * only, which is what rotor sends), for the server API (with X-API-Key)
 * and for the POSTs of the HTTP client transports (hpool.h).
 */
#ifndef HCLI_H
#define HCLI_H

#include "sock.h"

#include <stdbool.h>
#include <stddef.h>

struct hcli;

/* The value of header `name` (lower case, with the colon) in the response
 * head [p, e), trimmed, its length in *len; NULL if absent. Also reads the
 * WebSocket handshake's reply (wsc.c). */
const char *hcli_header(const char *p, const char *e, const char *name, size_t *len);

struct hcli_ops {
	/* Connected: requests may be posted. */
	void (*on_ready)(struct hcli *h);
	/* The response to the oldest request in flight. body is valid during
	 * the call. The connection may have been closed by then (the server
	 * said Connection: close); hcli_post then fails. */
	void (*on_response)(struct hcli *h, int status, const uint8_t *body, size_t n, uint64_t now);
	/* The connection failed or ended (err: errno, 0 for end of file, -1
	 * for a response that could not be parsed); `lost` requests were in
	 * flight. Not called after hcli_close. */
	void (*on_end)(struct hcli *h, int err, unsigned lost);
};

struct hcli {
	struct sock s;          /* first */
	const struct hcli_ops *ops;
	uint32_t inflight;      /* requests posted and not answered */
	uint8_t state;
	bool api;               /* requests carry the API key */
};

/* Target, Host header and API key of every connection of the process. */
void hcli_setup(const struct sockaddr_in *dst, const char *host, const char *api_key);

/* Opens h from source address k; with `api` its requests carry the API
 * key. Returns 0 (on_ready or on_end follow) or an errno value. */
int hcli_connect(struct hcli *h, unsigned k, bool api, const struct hcli_ops *ops);

/* Sends POST path with the body, of Content-Type ctype (NULL:
 * application/json). Returns 0, or an errno value after which h is closed
 * (on_end is not called). */
int hcli_post(struct hcli *h, const char *path, const char *ctype, const void *body, size_t n);

/* 1 once connected and until closed: requests may be posted. */
bool hcli_ready(const struct hcli *h);

/* Closes h at once; on_end is not called. Safe on a closed hcli. */
void hcli_close(struct hcli *h);

#endif
