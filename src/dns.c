/*
 * dns.c - non-blocking host name lookups on a libev loop (see dns.h).
 *
 * Model. A request (struct dns_req) owns one struct gaicb, handed to
 * glibc's getaddrinfo_a with GAI_NOWAIT and SIGEV_NONE: glibc's helper
 * threads run the blocking getaddrinfo, and nothing signals us; the
 * request's timer polls gai_error, first after DNS_POLL_MIN_S, then at
 * twice the previous interval up to DNS_POLL_MAX_S, never past the
 * deadline. The loop thread is the only one that touches a request apart
 * from what glibc writes into its gaicb.
 *
 * Invariant: once getaddrinfo_a accepted a gaicb (req.started), glibc may
 * write into it, and read the name, service and hints it points to, until
 * gai_error says it is done or gai_cancel says EAI_CANCELED. A request is
 * therefore freed only then. A request whose caller no longer wants it
 * (dns_cancel, or its deadline passed) while glibc runs it and cannot stop
 * it becomes an orphan: its callback is gone, its timer polls slowly and
 * does not keep the loop alive (ev_unref), and it is freed, its answer
 * thrown away, once glibc is done.
 *
 * Answers without a lookup (numeric, "localhost") and failures to start
 * one come from the same timer, at once: a callback never runs inside
 * dns_lookup.
 */
#include "config.h"
#include "dns.h"
#include "util.h"

#include <ev.h>
#include <netdb.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DNS_POLL_MIN_S 0.002
#define DNS_POLL_MAX_S 0.064
#define DNS_ORPHAN_POLL_S 0.25
#define DNS_DEF_TIMEOUT_MS 5000

struct dns_req {
	struct ev_loop *loop;
	struct gaicb cb;               /* glibc's while started and not done */
	struct addrinfo hints;         /* cb.ar_request */
	char *name;                    /* cb.ar_name */
	char service[8];               /* cb.ar_service */
	int port;
	bool started;                  /* getaddrinfo_a took cb */
	bool orphan;                   /* nobody waits for the answer */
	struct dns_result res;         /* the answer when not started */
	ev_tstamp deadline;
	ev_tstamp interval;
	ev_timer w;
	dns_done_fn *done;
	void *arg;
};

/* Copies up to DNS_ADDRS_MAX stream addresses of AI into OUT; EAI_NONAME
 * when there is none. */
static void fill(struct dns_result *out, const struct addrinfo *ai)
{
	memset(out, 0, sizeof(*out));
	for (; ai != NULL && out->n < DNS_ADDRS_MAX; ai = ai->ai_next) {
		if (ai->ai_addrlen > sizeof(out->addr[0].sa))
			continue;
		memcpy(&out->addr[out->n].sa, ai->ai_addr, ai->ai_addrlen);
		out->addr[out->n++].len = ai->ai_addrlen;
	}
	if (out->n == 0)
		out->err = EAI_NONAME;
}

int dns_numeric(const char *host, int port, struct dns_result *out)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV }, *res;
	char name[64], service[8];
	size_t n = strlen(host);

	if (strcasecmp(host, "localhost") == 0) {
		host = "127.0.0.1";
	} else if (n >= 2 && host[0] == '[' && host[n - 1] == ']' && n - 2 < sizeof(name)) {
		memcpy(name, host + 1, n - 2);
		name[n - 2] = '\0';
		host = name;
	}
	snprintf(service, sizeof(service), "%d", port);
	if (getaddrinfo(host, service, &hints, &res) != 0)
		return -1;
	fill(out, res);
	freeaddrinfo(res);
	return 0;
}

static unsigned inflight; /* requests started and not yet done in glibc */

static void req_free(struct dns_req *r)
{
	if (r->started)
		inflight--;
	free(r->name);
	free(r);
}

/* R (not started, or done in glibc) is no longer polled. */
static void req_stop(struct dns_req *r)
{
	if (r->orphan)
		ev_ref(r->loop); /* undoes the orphan's ev_unref before the stop */
	ev_timer_stop(r->loop, &r->w);
}

/* Nobody waits for R any more, but glibc still runs it. */
static void req_orphan(struct dns_req *r)
{
	ev_timer_stop(r->loop, &r->w);
	r->orphan = true;
	r->done = NULL;
	ev_timer_set(&r->w, DNS_ORPHAN_POLL_S, DNS_ORPHAN_POLL_S);
	ev_timer_start(r->loop, &r->w);
	ev_unref(r->loop);
}

/* Calls R's callback with RES and frees R (its timer stopped). */
static void req_answer(struct dns_req *r, const struct dns_result *res)
{
	req_stop(r);
	r->done(r->arg, res);
	req_free(r);
}

static void poll_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct dns_req *r = w->data;
	struct dns_result res;
	ev_tstamp left;
	int rc;

	(void)revents;
	if (!r->started) {
		res = r->res;
		req_answer(r, &res);
		return;
	}
	if ((rc = gai_error(&r->cb)) != EAI_INPROGRESS) {
		if (rc == 0) {
			fill(&res, r->cb.ar_result);
			freeaddrinfo(r->cb.ar_result);
		} else {
			memset(&res, 0, sizeof(res));
			res.err = rc;
		}
		if (r->orphan) {
			req_stop(r);
			req_free(r);
		} else {
			req_answer(r, &res);
		}
		return;
	}
	if (r->orphan)
		return; /* the repeating timer polls again */
	if ((left = r->deadline - ev_now(loop)) <= 0) {
		memset(&res, 0, sizeof(res));
		res.err = DNS_ETIMEDOUT;
		switch (gai_cancel(&r->cb)) {
		case EAI_ALLDONE: /* finished meanwhile: take its answer */
			ev_timer_set(w, 0., 0.);
			ev_timer_start(loop, w);
			return;
		case EAI_CANCELED:
			req_answer(r, &res);
			return;
		default: { /* EAI_NOTCANCELED: glibc is running it */
			dns_done_fn *done = r->done;
			void *arg = r->arg;
			req_orphan(r);
			done(arg, &res);
			return;
		}
		}
	}
	r->interval = r->interval * 2 > DNS_POLL_MAX_S ? DNS_POLL_MAX_S : r->interval * 2;
	ev_timer_set(w, r->interval < left ? r->interval : left, 0.);
	ev_timer_start(loop, w);
}

struct dns_req *dns_lookup(struct ev_loop *loop, const char *host, int port, uint64_t timeout_ms,
			   dns_done_fn *done, void *arg)
{
	struct dns_req *r = xcalloc(1, sizeof(*r));
	struct sigevent sev = { .sigev_notify = SIGEV_NONE };
	struct gaicb *list[1];
	int rc;

	r->loop = loop;
	r->port = port;
	r->done = done;
	r->arg = arg;
	r->name = xstrdup(host);
	r->interval = DNS_POLL_MIN_S;
	r->deadline = ev_now(loop) + (timeout_ms ? timeout_ms : DNS_DEF_TIMEOUT_MS) / 1000.;
	ev_timer_init(&r->w, poll_cb, 0., 0.);
	r->w.data = r;
	if (dns_numeric(host, port, &r->res) == 0) {
		ev_timer_start(loop, &r->w);
		return r;
	}
	snprintf(r->service, sizeof(r->service), "%d", port);
	r->hints.ai_socktype = SOCK_STREAM;
	r->hints.ai_flags = AI_NUMERICSERV;
	r->cb.ar_name = r->name;
	r->cb.ar_service = r->service;
	r->cb.ar_request = &r->hints;
	list[0] = &r->cb;
	if ((rc = getaddrinfo_a(GAI_NOWAIT, list, 1, &sev)) != 0) {
		r->res.err = rc; /* EAI_AGAIN, EAI_MEMORY: answered at once */
		ev_timer_start(loop, &r->w);
		return r;
	}
	r->started = true;
	inflight++;
	ev_timer_set(&r->w, DNS_POLL_MIN_S, 0.);
	ev_timer_start(loop, &r->w);
	return r;
}

void dns_cancel(struct dns_req *r)
{
	if (r == NULL)
		return;
	if (!r->started) {
		req_stop(r);
		req_free(r);
		return;
	}
	switch (gai_cancel(&r->cb)) {
	case EAI_CANCELED:
		req_stop(r);
		req_free(r);
		return;
	case EAI_ALLDONE:
		if (gai_error(&r->cb) == 0)
			freeaddrinfo(r->cb.ar_result);
		req_stop(r);
		req_free(r);
		return;
	default: /* EAI_NOTCANCELED */
		req_orphan(r);
		return;
	}
}

unsigned dns_inflight(void)
{
	return inflight;
}

const char *dns_strerror(int err)
{
	return err == DNS_ETIMEDOUT ? "timed out" : gai_strerror(err);
}
