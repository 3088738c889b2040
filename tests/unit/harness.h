/*
 * harness.h - the loop harness shared by the unit tests that drive the
 * connection layer (test_http.c, test_ws.c, test_stream.c, test_api.c): a hand-made worker
 * on a real libev loop with a fake clock, clients on socketpairs, and
 * helpers to send to the server and read what it answered.
 *
 * The test owns the worker (loop, clock, wheel, config, conn_init...);
 * harness_init() only remembers it and starts its flush point.
 */
#ifndef ROTOR_HARNESS_H
#define ROTOR_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct worker;
struct conf;
struct conn;
struct conn_ops;

/* Sets up the worker W of a test with default config K: SIGPIPE ignored,
 * the default loop, the fake clock at 1,000,000 ms, its wheel, conn_init. */
void harness_worker(struct worker *w, struct conf *k);

/* Remembers W (its loop must exist) and starts W->flush_w, which runs FRAME
 * (if not NULL; ws_flush_all for WebSocket tests, as in the worker), then
 * conn_flush_all. A test may stop and restart W->flush_w to flush by hand. */
void harness_init(struct worker *w, void (*frame)(struct worker *));

/* A few loop iterations: read, handle, flush (the flush runs before the
 * next poll, as in the worker). */
void spin(void);

/* Moves the fake clock by MS and fires what is due. */
void tick(int64_t ms);

/* A socketpair: one end becomes a server connection (conn_new with OPS,
 * or http_accept when OPS is NULL), the other is returned as the client. */
int pair(struct conn **cp, const struct conn_ops *ops);

/* A new HTTP connection; returns the client end. */
int client(void);

/* Writes N bytes to FD, running the loop while the socket is full. Stops
 * early when the server reads no more or closed: tests then look at what
 * came back. Returns how many bytes went out. */
size_t send_bytes(int fd, const void *p, size_t n);
size_t send_str(int fd, const char *s);

/* Everything the server sent so far (after running the loop until it is
 * quiet); *EOF is set when the server closed or shut down its side. The
 * length goes to *LENP if not NULL. Caller frees. */
char *recv_avail(int fd, bool *eof, size_t *lenp);

/* The status code of an HTTP/1.1 response, or -1. */
int status_of(const char *resp);

#endif
