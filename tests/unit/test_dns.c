/*
 * test_dns.c - the non-blocking resolver on a real libev loop: numeric
 * addresses and "localhost" without a lookup, the machine's host name
 * (through /etc/hosts, compared with a blocking getaddrinfo of the same
 * name), a name that does not exist, a deadline, and cancels (before the
 * answer, and many at once while glibc runs them: nothing is called back,
 * and every request glibc held is freed once it is done). No callback
 * ever runs inside dns_lookup.
 */
#include "config.h"
#include "dns.h"
#include "../tap.h"
#include "loop_wait.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct ev_loop *loop;

#define WAIT(cond, secs) LOOP_WAIT(loop, cond, secs)

struct answer {
	int calls;
	struct dns_result r;
};

static void done_cb(void *arg, const struct dns_result *r)
{
	struct answer *a = arg;

	a->calls++;
	a->r = *r;
}

/* "a.b.c.d:port" or "[v6]:port" of A's I-th address. */
static const char *addr_str(const struct dns_result *r, unsigned i)
{
	static char buf[80];
	char h[INET6_ADDRSTRLEN];
	const struct sockaddr *sa = (const struct sockaddr *)&r->addr[i].sa;

	if (i >= r->n)
		return "(none)";
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;
		inet_ntop(AF_INET, &s4->sin_addr, h, sizeof(h));
		snprintf(buf, sizeof(buf), "%s:%d", h, ntohs(s4->sin_port));
	} else {
		const struct sockaddr_in6 *s6 = (const void *)sa;
		inet_ntop(AF_INET6, &s6->sin6_addr, h, sizeof(h));
		snprintf(buf, sizeof(buf), "[%s]:%d", h, ntohs(s6->sin6_port));
	}
	return buf;
}

static void test_numeric(void)
{
	struct dns_result r;

	is_int(dns_numeric("127.0.0.1", 6379, &r), 0, "127.0.0.1 is numeric");
	is_int(r.n, 1, "one address");
	is_str(addr_str(&r, 0), "127.0.0.1:6379", "with the port");
	is_int(dns_numeric("[::1]", 80, &r), 0, "[::1] is numeric");
	is_str(addr_str(&r, 0), "[::1]:80", "IPv6 without brackets, with the port");
	is_int(dns_numeric("::1", 81, &r), 0, "::1 is numeric");
	is_str(addr_str(&r, 0), "[::1]:81", "IPv6");
	is_int(dns_numeric("LocalHost", 9, &r), 0, "localhost needs no lookup");
	is_str(addr_str(&r, 0), "127.0.0.1:9", "localhost is 127.0.0.1");
	ok(dns_numeric("localhost.", 9, &r) != 0, "localhost. is a name to look up");
	ok(dns_numeric("redis", 9, &r) != 0, "redis is a name to look up");
	ok(dns_numeric("", 9, &r) != 0, "an empty host is not numeric");
}

static void test_lookup_numeric(void)
{
	struct answer a = {0};

	dns_lookup(loop, "10.1.2.3", 443, 1000, done_cb, &a);
	is_int(a.calls, 0, "numeric: no callback inside dns_lookup");
	is_int(dns_inflight(), 0, "numeric: glibc is not asked");
	ok(WAIT(a.calls > 0, 2), "numeric: answered from the loop");
	is_int(a.calls, 1, "numeric: once");
	is_int(a.r.err, 0, "numeric: no error");
	is_str(addr_str(&a.r, 0), "10.1.2.3:443", "numeric: the address");

	struct answer b = {0};
	dns_lookup(loop, "localhost", 6379, 1000, done_cb, &b);
	ok(WAIT(b.calls > 0, 2), "localhost: answered");
	is_str(addr_str(&b.r, 0), "127.0.0.1:6379", "localhost: 127.0.0.1");
}

static void test_lookup_name(void)
{
	char name[256];
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	struct dns_result want;
	struct answer a = {0};

	if (gethostname(name, sizeof(name)) != 0 || getaddrinfo(name, "6379", &hints, &res) != 0) {
		ok(0, "the machine's host name resolves (blocking getaddrinfo, for comparison)");
		return;
	}
	want.n = 0;
	for (struct addrinfo *ai = res; ai && want.n < DNS_ADDRS_MAX; ai = ai->ai_next) {
		memcpy(&want.addr[want.n].sa, ai->ai_addr, ai->ai_addrlen);
		want.addr[want.n++].len = ai->ai_addrlen;
	}
	freeaddrinfo(res);
	printf("# host name %s\n", name);

	dns_lookup(loop, name, 6379, 3000, done_cb, &a);
	is_int(a.calls, 0, "name: no callback inside dns_lookup");
	ok(WAIT(a.calls > 0, 5), "name: answered");
	is_int(a.calls, 1, "name: once");
	is_int(a.r.err, 0, "name: no error");
	is_int(a.r.n, want.n, "name: as many addresses as getaddrinfo gives");
	char first[80];
	snprintf(first, sizeof(first), "%s", addr_str(&want, 0));
	is_str(addr_str(&a.r, 0), first, "name: the same first address as getaddrinfo");
	is_int(dns_inflight(), 0, "name: glibc holds nothing any more");
}

static void test_lookup_missing(void)
{
	struct answer a = {0};

	dns_lookup(loop, "nonexistent.invalid", 80, 4000, done_cb, &a);
	ok(WAIT(a.calls > 0, 6), "missing: answered");
	is_int(a.calls, 1, "missing: once");
	ok(a.r.err != 0, "missing: an error (%s)", dns_strerror(a.r.err));
	is_int(a.r.n, 0, "missing: no address");
	ok(strlen(dns_strerror(a.r.err)) > 0, "missing: the error has a text");
	is_str(dns_strerror(DNS_ETIMEDOUT), "timed out", "DNS_ETIMEDOUT's text");
}

static void test_cancel(void)
{
	char name[256];
	struct answer a = {0}, b = {0}, many[20];
	struct dns_req *q;

	gethostname(name, sizeof(name));
	q = dns_lookup(loop, "127.0.0.1", 80, 1000, done_cb, &a);
	dns_cancel(q);
	q = dns_lookup(loop, name, 80, 1000, done_cb, &b);
	dns_cancel(q);
	memset(many, 0, sizeof(many));
	for (int i = 0; i < 20; i++) {
		char n[64];
		snprintf(n, sizeof(n), "nonexistent-%d.invalid", i);
		q = dns_lookup(loop, n, 80, 3000, done_cb, &many[i]);
		if (i % 2 == 0)
			dns_cancel(q); /* queued or already running in glibc */
	}
	WAIT(dns_inflight() == 0, 5);
	is_int(dns_inflight(), 0, "cancel: every request glibc held is freed once it is done");
	WAIT(false, 0.2);
	is_int(a.calls, 0, "cancel: a numeric answer is not called back");
	is_int(b.calls, 0, "cancel: a name's answer is not called back");
	int calls = 0;
	for (int i = 0; i < 20; i++)
		calls += many[i].calls;
	is_int(calls, 10, "cancel: only the requests not cancelled are answered");
	for (int i = 1; i < 20; i += 2)
		if (many[i].calls != 1 || many[i].r.err == 0)
			ok(0, "cancel: request %d answered once with an error", i);
}

#define NSLOW 64

static void test_deadline(void)
{
	static struct answer a[NSLOW];
	int timedout = 0, other = 0, all;
	double t0;

	/* 1 ms: the first poll (2 ms) comes after the deadline. glibc runs a
	 * few lookups at a time (each a round trip to the name server) and
	 * queues the rest: those not done by then are answered "timed out"
	 * (queued ones cancelled, running ones left to finish as orphans),
	 * those done with their result: never both, never twice. */
	memset(a, 0, sizeof(a));
	t0 = ev_time();
	for (int i = 0; i < NSLOW; i++) {
		char n[64];
		snprintf(n, sizeof(n), "slow-%d.nonexistent.invalid", i);
		dns_lookup(loop, n, 80, 1, done_cb, &a[i]);
	}
	do {
		ev_run(loop, EVRUN_ONCE);
		for (all = 0; all < NSLOW && a[all].calls; all++)
			;
	} while (all < NSLOW && ev_time() - t0 < 3);
	for (int i = 0; i < NSLOW; i++) {
		timedout += a[i].calls == 1 && a[i].r.err == DNS_ETIMEDOUT;
		other += a[i].calls == 1 && a[i].r.err != 0 && a[i].r.err != DNS_ETIMEDOUT;
	}
	is_int(timedout + other, NSLOW, "deadline: each answered once, with an error");
	ok(timedout > 0, "deadline: lookups not done in time are answered \"timed out\" (%d of %d)", timedout, NSLOW);
	ok(ev_time() - t0 < 0.5, "deadline: all answered soon after it (%.3f s)", ev_time() - t0);
	WAIT(dns_inflight() == 0, 10);
	is_int(dns_inflight(), 0, "deadline: lookups that timed out are freed once glibc is done");
	WAIT(false, 0.3);
	for (int i = 0; i < NSLOW; i++)
		if (a[i].calls != 1)
			ok(0, "deadline: request %d answered %d times", i, a[i].calls);
}

int main(void)
{
	loop = ev_default_loop(0);
	loop_tick(loop, 0.05);
	test_numeric();
	test_lookup_numeric();
	test_lookup_name();
	test_lookup_missing();
	test_cancel();
	test_deadline();
	return tap_done();
}
