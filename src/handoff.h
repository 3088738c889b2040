/*
 * handoff.h - handing an HTTP connection to another worker of this node,
 * with the request already read from it, for transports whose state lives
 * in one worker but whose requests arrive on any (SockJS's HTTP sessions).
 *
 * Each worker has a handoff socket (a connected AF_UNIX SOCK_SEQPACKET
 * pair made by the master before fork): it reads from its end, and every
 * other worker holds a sending end to it, by bus slot. One record = one
 * connection: the socket travels as SCM_RIGHTS, the bytes are a small
 * header and then the request as http_req_serialize writes it followed by
 * the pipelined bytes the sender had read after it. The receiver serves it
 * as if it had accepted it and read those bytes itself.
 *
 * Which worker owns a key (a session id): SipHash of the key under the
 * node's secret (the same in every worker), modulo the worker count of the
 * generation that serves now (stats.h route), gives a listener slot; the
 * worker of that generation in that slot is found in the stats segment,
 * whose block index is its bus slot. No shared state beyond that: a worker
 * that died takes its sessions with it, its replacement starts empty.
 */
#ifndef ROTOR_HANDOFF_H
#define ROTOR_HANDOFF_H

#include "rotor.h"
#include <stddef.h>
#include <stdint.h>

struct worker;
struct http_req;

/* The largest record: header, request and pipelined bytes. A request that
 * does not fit is not handed over (the caller serves it itself). */
#define HANDOFF_MAX (256 * 1024)

/* Record header, then LEN bytes. */
#define HANDOFF_MAGIC 0x52484f31u /* "RHO1" */
struct handoff_hdr {
	uint32_t magic;
	uint32_t len;
};

/* Starts reading W's handoff socket (w->handoff_fd; nothing when -1). Once
 * per worker, after http_init. */
void handoff_init(struct worker *w);

/* Finds the worker that owns KEY[0..N): RT_OK with its bus slot in *SLOT
 * (which may be W's own); RT_ERR when there is no routing yet (no stats
 * segment, or the master has published no generation) or when the owner's
 * slot has no running worker now (it died and is being replaced). The
 * caller then serves the request itself. */
int handoff_owner(const struct worker *w, const void *key, size_t n, unsigned *slot);

/* Hands REQ's connection to the worker at bus slot SLOT, from inside REQ's
 * route handler. Returns
 *   RT_OK      handed over: the connection is no longer this worker's
 *              (REQ is gone; answer nothing);
 *   RT_AGAIN   not yet: answers to earlier pipelined requests are still
 *              being written; the handler runs again with REQ once they
 *              are (return without answering);
 *   RT_CLOSED  the owner is gone (its socket refused the record), or
 *   RT_ERR     the record could not be sent (too large, the socket full):
 *              REQ is untouched; the caller answers it itself.
 * A request marked handed (req->handed) must not be handed on again. */
int handoff_request(struct http_req *req, unsigned slot);

/* Checks one received record: BUF[0..N) as read, NFDS descriptors with it,
 * TRUNCATED if recvmsg reported MSG_TRUNC or MSG_CTRUNC. Returns RT_OK with
 * *DATA / *LEN the bytes to serve (within BUF) when it is well formed:
 * exactly one descriptor, a whole header with the magic, LEN matching, at
 * least one byte; else RT_INVAL (the caller closes what came). */
int handoff_parse(const char *buf, size_t n, int nfds, int truncated, const char **data,
		  size_t *len);

#endif
