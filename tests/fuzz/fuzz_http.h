/*
 * fuzz_http.h - the harness of the fuzz targets that drive the real HTTP
 * layer (llhttp in strict mode, http.c, conn.c) and the transports behind
 * it in one hand-made worker, as the worker's loop would: a client on a
 * socketpair writes the input in pieces, each followed by a loop iteration
 * and a flush point; then the client leaves and the clock jumps until every
 * connection is gone. Included by one target each (static functions).
 *
 * Invariants (CHECK): whatever the server writes first on a connection is
 * an HTTP/1.1 status line; once the client left, no connection is held.
 *
 * A target that defines FUZZ_HTTP_BARE before including this drives the
 * HTTP layer alone, without the transports (it links none of them).
 */
#ifndef ROTOR_FUZZ_HTTP_H
#define ROTOR_FUZZ_HTTP_H

#include "fuzz.h"
#include "conf.h"
#include "conn.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "wheel.h"
#ifndef FUZZ_HTTP_BARE
#include "transport.h"
#endif
#include "worker.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct worker *worker_self;

static struct worker FW;
static struct conf FC;
/* When not NULL, everything the server writes is appended to it. */
static struct jw *fuzz_http_capture;

/* A worker on KEYS (key, value, ..., NULL: conf_set text) with every
 * transport of the list initialised. */
static void fuzz_http_setup(const char *const *keys)
{
	struct conf_report rep = { 0 };

	log_set_level(LOG_NONE);
	conf_init(&FC);
	for (; keys && keys[0]; keys += 2)
		conf_set(&FC, keys[0], keys[1], &rep);
	CHECK(conf_check(&FC, &rep) == RT_OK);
	conf_report_free(&rep);
	FW.conf = &FC;
	FW.loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOENV);
	FW.now_ms = 1000;
	FW.handoff_fd = -1;
	for (int i = 0; i < BUS_SLOTS_MAX; i++)
		FW.handoff_fds[i] = FW.wake_fds[i] = -1;
	FW.secret[0] = 0x0123456789abcdefULL;
	FW.secret[1] = 0xfedcba9876543210ULL;
	worker_self = &FW;
	wheel_init(&FW.wheel, FW.now_ms, 100);
	conn_init(&FW);
	http_init(&FW);
#ifndef FUZZ_HTTP_BARE
	transport_init(&FW);
#endif
}

/* One loop iteration without blocking, the timers due, the flush point. */
static void fuzz_http_step(void)
{
	ev_run(FW.loop, EVRUN_NOWAIT);
	wheel_advance(&FW.wheel, FW.now_ms);
#ifndef FUZZ_HTTP_BARE
	transport_flush(&FW);
#endif
	conn_flush_all(&FW);
}

/* A step, then whatever the server wrote is read from PEER: the first
 * bytes of a connection must be a status line (*SEEN: some came). */
static void fuzz_http_pump(int peer, bool *seen)
{
	char buf[65536];
	ssize_t k;

	fuzz_http_step();
	while ((k = read(peer, buf, sizeof(buf))) > 0) {
		if (!*seen)
			CHECK(k >= 9 && memcmp(buf, "HTTP/1.1 ", 9) == 0);
		*seen = true;
		if (fuzz_http_capture)
			jw_raw(fuzz_http_capture, buf, (size_t)k);
	}
}

/* A connected pair: SV[0] for the server, SV[1] the client's. */
static void fuzz_http_pair(int sv[2])
{
	CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
}

/* The client of PEER waits a little for what answers later, then leaves;
 * the clock jumps past lingering and close waits until no connection is
 * left. */
static void fuzz_http_leave(int peer, bool *seen)
{
	for (int i = 0; i < 4; i++)
		fuzz_http_pump(peer, seen);
	shutdown(peer, SHUT_WR);
	fuzz_http_pump(peer, seen);
	close(peer);
	for (int i = 0; i < 8 && FW.nconns; i++) {
		FW.now_ms += 3000;
		fuzz_http_step();
	}
	CHECK(FW.nconns == 0);
}

/* D[0..N) written on a fresh connection in pieces of PIECE bytes, each
 * followed by a pump; then the client leaves. */
static void fuzz_http_client(const uint8_t *d, size_t n, size_t piece)
{
	bool seen = false;
	int sv[2];

	fuzz_http_pair(sv);
	http_accept(&FW, sv[0], false);
	for (size_t off = 0; off < n; off += piece) {
		size_t m = n - off < piece ? n - off : piece;

		if (write(sv[1], d + off, m) != (ssize_t)m)
			break; /* the server stopped reading: its buffer is full */
		fuzz_http_pump(sv[1], &seen);
	}
	fuzz_http_leave(sv[1], &seen);
}

#endif
