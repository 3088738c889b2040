/*
 * test_upstream.c - the worker's HTTP/1.1 client on a real libev loop
 * against real servers forked by the test on 127.0.0.1 (one process per
 * connection, counting connections in shared memory): keep-alive reuse,
 * the pool bound under 150 parallel requests, Content-Length, chunked and
 * read-to-EOF bodies, max_body, Connection: close and HTTP/1.0, the
 * one retry of a pooled connection the server closed, a hanging server,
 * one that closes mid-response, garbage, a refused port, bad headers,
 * cancel in flight, https with a self-signed certificate made here, and
 * host names (the machine's own, one that does not resolve) looked up
 * without blocking when a connection is needed.
 * No callback ever runs inside upstream_request.
 */
#include "config.h"
#include "upstream.h"
#include "dns.h"
#include "log.h"
#include "../tap.h"
#include "loop_wait.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct ev_loop *loop;

#define WAIT(cond, secs) LOOP_WAIT(loop, cond, secs)

static void spin(double secs)
{
	double t0 = ev_time();

	while (ev_time() - t0 < secs)
		ev_run(loop, EVRUN_ONCE);
}

/* ---- the test server ---------------------------------------------------- */

struct stats {
	atomic_int accepts, cur, maxcur, requests;
};

struct server {
	pid_t pid;
	int port;
	struct stats *st;
};

static SSL_CTX *server_tls; /* set before server_start for an https server */

struct sconn {
	int fd;
	SSL *ssl;
	char buf[65536];
	size_t len;
};

static ssize_t s_read(struct sconn *s, char *p, size_t n)
{
	if (s->ssl)
		return SSL_read(s->ssl, p, (int)n);
	return read(s->fd, p, n);
}

static void s_write(struct sconn *s, const char *p, size_t n)
{
	if (s->ssl)
		(void)SSL_write(s->ssl, p, (int)n);
	else
		while (n > 0) {
			ssize_t k = write(s->fd, p, n);
			if (k <= 0)
				return;
			p += k;
			n -= (size_t)k;
		}
}

static void s_puts(struct sconn *s, const char *str)
{
	s_write(s, str, strlen(str));
}

/* Reads one request; its path in PATH, its head and body in S->buf (the
 * head's length in *HEADLEN). false at EOF. */
static bool s_request(struct sconn *s, char *path, size_t pathsize, size_t *headlen, size_t *bodylen)
{
	char *end, *cl;
	size_t need;
	ssize_t k;

	while ((end = memmem(s->buf, s->len, "\r\n\r\n", 4)) == NULL) {
		if ((k = s_read(s, s->buf + s->len, sizeof(s->buf) - 1 - s->len)) <= 0)
			return false;
		s->len += (size_t)k;
	}
	s->buf[s->len] = '\0';
	*headlen = (size_t)(end + 4 - s->buf);
	*bodylen = 0;
	*end = '\0';
	if ((cl = strcasestr(s->buf, "\r\ncontent-length:")) != NULL)
		*bodylen = strtoul(cl + 17, NULL, 10);
	*end = '\r';
	need = *headlen + *bodylen;
	while (s->len < need) {
		if ((k = s_read(s, s->buf + s->len, sizeof(s->buf) - 1 - s->len)) <= 0)
			return false;
		s->len += (size_t)k;
	}
	sscanf(s->buf, "%*s %255s", path);
	(void)pathsize;
	return true;
}

static void s_consume(struct sconn *s, size_t n)
{
	memmove(s->buf, s->buf + n, s->len - n);
	s->len -= n;
}

/* Serves one connection, request after request, by path. */
static void serve(struct sconn *s, struct stats *st)
{
	char path[256], hdr[256], *big;
	size_t hl, bl;
	int i;

	while (s_request(s, path, sizeof(path), &hl, &bl)) {
		atomic_fetch_add(&st->requests, 1);
		if (strcmp(path, "/cl") == 0) {
			s_puts(s, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
		} else if (strcmp(path, "/echo") == 0) {
			/* the request's head and body as the body */
			snprintf(hdr, sizeof(hdr), "HTTP/1.1 201 Created\r\nContent-Length: %zu\r\n\r\n", hl + bl);
			s_puts(s, hdr);
			s_write(s, s->buf, hl + bl);
		} else if (strcmp(path, "/status") == 0) {
			s_puts(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope");
		} else if (strcmp(path, "/chunked") == 0) {
			s_puts(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
			s_puts(s, "3\r\nhel\r\n");
			usleep(20000);
			s_puts(s, "8\r\nlo world\r\n0\r\n\r\n");
		} else if (strcmp(path, "/big") == 0) {
			s_puts(s, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
			big = calloc(1, 100000);
			memset(big, 'x', 100000);
			s_write(s, big, 100000);
			free(big);
		} else if (strcmp(path, "/bigchunked") == 0) {
			s_puts(s, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
			big = calloc(1, 1000);
			memset(big, 'y', 1000);
			for (i = 0; i < 100; i++) {
				s_puts(s, "3e8\r\n");
				s_write(s, big, 1000);
				s_puts(s, "\r\n");
			}
			s_puts(s, "0\r\n\r\n");
			free(big);
		} else if (strcmp(path, "/slow") == 0) {
			usleep(100000);
			s_puts(s, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow");
		} else if (strcmp(path, "/hang") == 0) {
			char b;
			(void)read(s->fd, &b, 1); /* until the client gives up */
			return;
		} else if (strcmp(path, "/closemid") == 0) {
			s_puts(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc");
			return;
		} else if (strcmp(path, "/closehead") == 0) {
			s_puts(s, "HTTP/1.1 200 OK\r\nContent-Le");
			return;
		} else if (strcmp(path, "/garbage") == 0) {
			s_puts(s, "SSH-2.0-OpenSSH\r\n\r\n");
			return;
		} else if (strcmp(path, "/close") == 0) {
			s_puts(s, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok");
		} else if (strcmp(path, "/http10") == 0) {
			s_puts(s, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
		} else if (strcmp(path, "/eof") == 0) {
			s_puts(s, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end");
			return;
		} else if (strcmp(path, "/kaclose") == 0) {
			/* keep-alive promised, then closed: a server's idle timeout */
			s_puts(s, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nka");
			usleep(50000);
			return;
		} else if (strcmp(path, "/empty") == 0) {
			s_puts(s, "HTTP/1.1 204 No Content\r\n\r\n");
		} else {
			s_puts(s, "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
		}
		s_consume(s, hl + bl);
	}
}

/* Forks a server on a free port of 127.0.0.1 (https when server_tls). */
static void server_start(struct server *sv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;

	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 256) < 0 ||
	    getsockname(lfd, (struct sockaddr *)&a, &al) < 0) {
		perror("server");
		exit(1);
	}
	sv->port = ntohs(a.sin_port);
	sv->st = mmap(NULL, sizeof(*sv->st), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memset(sv->st, 0, sizeof(*sv->st));
	fflush(stdout);
	sv->pid = fork();
	if (sv->pid == 0) {
		setpgid(0, 0);
		signal(SIGCHLD, SIG_IGN);
		for (;;) {
			int fd = accept(lfd, NULL, NULL);
			if (fd < 0)
				continue;
			int c = atomic_fetch_add(&sv->st->cur, 1) + 1, m;
			atomic_fetch_add(&sv->st->accepts, 1);
			while ((m = atomic_load(&sv->st->maxcur)) < c &&
			       !atomic_compare_exchange_weak(&sv->st->maxcur, &m, c))
				;
			if (fork() == 0) {
				struct sconn *s = calloc(1, sizeof(*s));
				close(lfd);
				s->fd = fd;
				if (server_tls != NULL) {
					s->ssl = SSL_new(server_tls);
					SSL_set_fd(s->ssl, fd);
					if (SSL_accept(s->ssl) == 1)
						serve(s, sv->st);
				} else {
					serve(s, sv->st);
				}
				atomic_fetch_sub(&sv->st->cur, 1);
				_exit(0);
			}
			close(fd);
		}
	}
	close(lfd);
}

static void server_stop(struct server *sv)
{
	kill(-sv->pid, SIGKILL);
	kill(sv->pid, SIGKILL);
	waitpid(sv->pid, NULL, 0);
	munmap(sv->st, sizeof(*sv->st));
}

/* ---- answers ------------------------------------------------------------- */

static bool in_call;

struct got {
	int calls;
	bool sync;
	enum upstream_err err;
	int status;
	char body[256];
	size_t len;
	double at;
};

static void got_cb(void *arg, const struct upstream_resp *r)
{
	struct got *g = arg;

	g->calls++;
	g->sync |= in_call;
	g->err = r->err;
	g->status = r->status;
	g->len = r->len;
	g->at = ev_time();
	snprintf(g->body, sizeof(g->body), "%.*s", (int)(r->len < 255 ? r->len : 255), r->body ? r->body : "");
}

static struct upstream_req *req(struct upstream *u, const char *path, struct got *g, size_t max_body,
				uint64_t timeout_ms)
{
	struct upstream_req *q;

	memset(g, 0, sizeof(*g));
	in_call = true;
	q = upstream_request(u, "GET", path, NULL, 0, NULL, 0, max_body, timeout_ms, got_cb, g);
	in_call = false;
	return q;
}

/* One request, waited for (5 s at most). */
static void get(struct upstream *u, const char *path, struct got *g, size_t max_body, uint64_t timeout_ms)
{
	req(u, path, g, max_body, timeout_ms);
	WAIT(g->calls > 0, 5);
}

static const char *ename(enum upstream_err e)
{
	static const char *n[] = { "OK", "ETIMEDOUT", "ECONNECT", "ETLS", "ECLOSED", "ETOOBIG", "EPROTO",
				   "ESHUTDOWN" };
	return e <= UPSTREAM_ESHUTDOWN ? n[e] : "?";
}

#define is_err(g, want, name) do { \
	is_str(ename((g)->err), ename(want), "%s: %s", name, ename(want)); \
	is_int((g)->calls, 1, "%s: answered once", name); \
	ok(!(g)->sync, "%s: not from inside upstream_request", name); } while (0)

static unsigned conns_of(struct upstream *u)
{
	unsigned c;

	upstream_counts(u, &c, NULL);
	return c;
}

/* ---- plain http ----------------------------------------------------------- */

static void test_http(void)
{
	struct server sv;
	struct upstream *u, *u2;
	struct got g, gs[150];
	char url[128], err[256];
	struct upstream_header h[2] = { { "Content-Type", "application/json", 16 }, { "X-Bad", "a\r\nb: c", 7 } };
	unsigned maxconns = 0, c, q, maxq = 0;
	int i, okc;
	double t0;

	server_tls = NULL;
	server_start(&sv);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/base?x=1", sv.port);
	u = upstream_get(loop, url, NULL, err, sizeof(err));
	ok(u != NULL, "upstream_get %s", url);
	u2 = upstream_get(loop, url, NULL, err, sizeof(err));
	ok(u2 == u, "the same origin gives the same upstream");
	is_str(upstream_url_target(url), "/base?x=1", "upstream_url_target");

	/* keep-alive: five sequential requests on one connection */
	okc = 0;
	for (i = 0; i < 5; i++) {
		get(u, "/cl", &g, 1024, 2000);
		okc += g.err == UPSTREAM_OK && g.status == 200 && strcmp(g.body, "hello") == 0 && !g.sync;
	}
	is_int(okc, 5, "5 sequential requests answered 200 hello");
	is_int(atomic_load(&sv.st->accepts), 1, "keep-alive: one connection for 5 requests");
	is_int(conns_of(u), 1, "the connection is pooled");

	/* headers and body sent */
	memset(&g, 0, sizeof(g));
	in_call = true;
	upstream_request(u, "POST", "/echo", h, 1, "{\"a\":1}", 7, 4096, 2000, got_cb, &g);
	in_call = false;
	WAIT(g.calls > 0, 5);
	is_int(g.status, 201, "POST: status");
	snprintf(err, sizeof(err), "POST /echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
		 "Content-Length: 7\r\nConnection: keep-alive\r\n\r\n{\"a\":1}", sv.port);
	is_str(g.body, err, "POST: the request as sent");
	is_int(atomic_load(&sv.st->accepts), 1, "POST on the same connection");

	/* a header with CR LF is refused, later */
	memset(&g, 0, sizeof(g));
	in_call = true;
	upstream_request(u, "POST", "/echo", h, 2, NULL, 0, 4096, 2000, got_cb, &g);
	in_call = false;
	ok(g.calls == 0, "bad header: not answered inside the call");
	WAIT(g.calls > 0, 5);
	is_err(&g, UPSTREAM_EPROTO, "CR LF in a header value");
	is_int(atomic_load(&sv.st->requests), 6, "the bad request never reached the server");

	get(u, "/status", &g, 1024, 2000);
	ok(g.err == UPSTREAM_OK && g.status == 404 && strcmp(g.body, "nope") == 0, "a 404 is a response");
	get(u, "/empty", &g, 1024, 2000);
	ok(g.err == UPSTREAM_OK && g.status == 204 && g.len == 0, "204 without a body");

	get(u, "/chunked", &g, 1024, 2000);
	ok(g.err == UPSTREAM_OK && g.status == 200, "chunked: 200");
	is_str(g.body, "hello world", "chunked: the body dechunked");
	is_int(g.len, 11, "chunked: its length");
	is_int(atomic_load(&sv.st->accepts), 1, "still one connection");

	get(u, "/big", &g, 100000, 2000);
	ok(g.err == UPSTREAM_OK && g.len == 100000, "Content-Length 100000 with max_body 100000");
	get(u, "/big", &g, 99999, 2000);
	is_err(&g, UPSTREAM_ETOOBIG, "Content-Length over max_body");
	get(u, "/bigchunked", &g, 50000, 2000);
	is_err(&g, UPSTREAM_ETOOBIG, "chunked body over max_body");
	get(u, "/bigchunked", &g, 100000, 2000);
	ok(g.err == UPSTREAM_OK && g.len == 100000 && g.body[0] == 'y', "chunked body of exactly max_body");

	/* Connection: close and HTTP/1.0 are not reused */
	get(u, "/cl", &g, 1024, 2000);
	i = atomic_load(&sv.st->accepts);
	get(u, "/close", &g, 1024, 2000);
	ok(g.err == UPSTREAM_OK && strcmp(g.body, "ok") == 0, "Connection: close: answered");
	get(u, "/cl", &g, 1024, 2000);
	is_int(atomic_load(&sv.st->accepts), i + 1, "after Connection: close, a new connection");
	get(u, "/http10", &g, 1024, 2000);
	ok(g.err == UPSTREAM_OK && strcmp(g.body, "ok") == 0, "HTTP/1.0: answered");
	get(u, "/cl", &g, 1024, 2000);
	is_int(atomic_load(&sv.st->accepts), i + 2, "after an HTTP/1.0 response, a new connection");
	get(u, "/eof", &g, 1024, 2000);
	ok(g.err == UPSTREAM_OK && strcmp(g.body, "until the end") == 0, "a body delimited by EOF");

	/* a pooled connection the server closed: retried once, fresh */
	get(u, "/kaclose", &g, 1024, 2000);
	ok(g.err == UPSTREAM_OK && strcmp(g.body, "ka") == 0, "keep-alive then closed: answered");
	spin(0.01); /* the server closes 50 ms later: the request below goes on the pooled connection */
	i = atomic_load(&sv.st->accepts);
	usleep(100000); /* closed now, and the loop has not seen it */
	get(u, "/cl", &g, 1024, 2000);
	ok(g.err == UPSTREAM_OK && strcmp(g.body, "hello") == 0, "the closed pooled connection: retried, answered");
	is_int(atomic_load(&sv.st->accepts), i + 1, "retried on one fresh connection");

	/* faults */
	t0 = ev_time();
	get(u, "/hang", &g, 1024, 300);
	is_err(&g, UPSTREAM_ETIMEDOUT, "a server that hangs");
	ok(g.at - t0 >= 0.29 && g.at - t0 < 0.6, "timed out after 300 ms (%.3f s)", g.at - t0);
	get(u, "/closemid", &g, 1024, 2000);
	is_err(&g, UPSTREAM_ECLOSED, "closed mid-body");
	get(u, "/closehead", &g, 1024, 2000);
	is_err(&g, UPSTREAM_ECLOSED, "closed mid-head");
	get(u, "/garbage", &g, 1024, 2000);
	is_err(&g, UPSTREAM_EPROTO, "garbage");
	get(u, "/cl", &g, 1024, 2000);
	ok(g.err == UPSTREAM_OK && strcmp(g.body, "hello") == 0, "the upstream serves after all that");

	/* cancel in flight: no callback, connection closed */
	i = atomic_load(&sv.st->requests);
	struct upstream_req *r = req(u, "/slow", &g, 1024, 2000);
	WAIT(atomic_load(&sv.st->requests) > i, 2);
	upstream_cancel(r);
	is_int(conns_of(u), 0, "cancel mid-exchange closes its connection");
	spin(0.3);
	is_int(g.calls, 0, "a cancelled request gets no callback");
	r = req(u, "/cl", &g, 1024, 2000);
	upstream_cancel(r);
	spin(0.05);
	is_int(g.calls, 0, "cancelled right after the call: no callback");
	memset(&g, 0, sizeof(g));
	r = upstream_request(u, "GET", "/cl", h + 1, 1, NULL, 0, 1024, 2000, got_cb, &g);
	upstream_cancel(r);
	spin(0.05);
	is_int(g.calls, 0, "cancelled before its failure was answered: no callback");

	/* the pool bound: 150 parallel requests to a slow server */
	i = atomic_load(&sv.st->accepts);
	atomic_store(&sv.st->maxcur, atomic_load(&sv.st->cur));
	for (int k = 0; k < 150; k++)
		req(u, "/slow", &gs[k], 1024, 10000);
	t0 = ev_time();
	while (ev_time() - t0 < 10) {
		for (okc = 0, i = 0; i < 150; i++)
			okc += gs[i].calls;
		if (okc == 150)
			break;
		upstream_counts(u, &c, &q);
		if (c > maxconns)
			maxconns = c;
		if (q > maxq)
			maxq = q;
		ev_run(loop, EVRUN_ONCE);
	}
	for (okc = 0, i = 0; i < 150; i++)
		okc += gs[i].calls == 1 && gs[i].err == UPSTREAM_OK && strcmp(gs[i].body, "slow") == 0;
	is_int(okc, 150, "150 parallel requests all answered");
	is_int(maxconns, UPSTREAM_CONNS_MAX, "at most UPSTREAM_CONNS_MAX connections, and all of them used");
	ok(atomic_load(&sv.st->maxcur) <= UPSTREAM_CONNS_MAX, "the server saw at most %d at once (%d)",
	   UPSTREAM_CONNS_MAX, atomic_load(&sv.st->maxcur));
	is_int(maxq, 150 - UPSTREAM_CONNS_MAX, "the rest waited in the queue");
	upstream_counts(u, &c, &q);
	is_int(q, 0, "the queue is empty");

	/* a refused port */
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	bind(fd, (struct sockaddr *)&a, sizeof(a));
	getsockname(fd, (struct sockaddr *)&a, &al);
	close(fd);
	snprintf(url, sizeof(url), "http://localhost:%d", ntohs(a.sin_port));
	u2 = upstream_get(loop, url, NULL, err, sizeof(err));
	ok(u2 != NULL && u2 != u, "another origin, another upstream");
	get(u2, "/", &g, 1024, 2000);
	is_err(&g, UPSTREAM_ECONNECT, "a refused port");
	is_int(conns_of(u2), 0, "no connection left");

	server_stop(&sv);
}

static void test_urls(void)
{
	char err[256];
	struct upstream_opts o = { .ca_file = "/nonexistent.pem" };

	ok(upstream_get(loop, "ftp://x", NULL, err, sizeof(err)) == NULL && strstr(err, "http"), "ftp:// refused: %s", err);
	ok(upstream_get(loop, "http://:80/", NULL, err, sizeof(err)) == NULL, "no host refused: %s", err);
	ok(upstream_get(loop, "http://127.0.0.1:99999/", NULL, err, sizeof(err)) == NULL, "bad port refused: %s", err);
	ok(upstream_get(loop, "http://u:p@127.0.0.1/", NULL, err, sizeof(err)) == NULL, "userinfo refused: %s", err);
	ok(upstream_get(loop, "https://localhost/", &o, err, sizeof(err)) == NULL && strstr(err, "/nonexistent.pem"),
	   "missing CA file refused: %s", err);
	ok(upstream_get(loop, "http://[::1]:8080/x", NULL, err, sizeof(err)) != NULL, "IPv6 literal accepted");
	is_str(upstream_url_target("http://a:1"), "/", "target of a URL without a path");
	is_str(upstream_url_target("https://a/b/c?d#e"), "/b/c?d#e", "target with a query");
}

/* ---- host names ------------------------------------------------------------- */

static void test_names(void)
{
	struct server sv;
	struct upstream *u;
	struct got g, g2, g3;
	char host[128], url[256], err[256];
	int okc = 0;

	server_tls = NULL;
	server_start(&sv);
	gethostname(host, sizeof(host));
	snprintf(url, sizeof(url), "http://%s:%d/", host, sv.port);
	u = upstream_get(loop, url, NULL, err, sizeof(err));
	ok(u != NULL, "upstream_get %s", url);
	is_int(dns_inflight(), 0, "upstream_get looks nothing up");
	get(u, "/cl", &g, 1024, 3000);
	ok(g.err == UPSTREAM_OK && g.status == 200 && strcmp(g.body, "hello") == 0 && !g.sync,
	   "a request to a host name is answered (%s)", ename(g.err));
	for (int i = 0; i < 3; i++) {
		get(u, "/cl", &g, 1024, 3000);
		okc += g.err == UPSTREAM_OK && g.status == 200;
	}
	is_int(okc, 3, "more requests by name");
	is_int(atomic_load(&sv.st->accepts), 1, "on the one pooled connection");

	/* a request cancelled while the name is looked up: nothing called back */
	struct upstream *u3 = upstream_get(loop, "http://localhost.nonexistent.invalid:1/", NULL, err, sizeof(err));
	ok(u3 != NULL, "upstream_get of a name that does not resolve succeeds (nothing looked up yet)");
	upstream_cancel(req(u3, "/", &g3, 1024, 3000));
	get(u3, "/", &g2, 1024, 3000);
	is_err(&g2, UPSTREAM_ECONNECT, "a name that does not resolve");
	is_int(g3.calls, 0, "a request cancelled during the lookup is not answered");
	is_int(conns_of(u3), 0, "no connection");
	get(u3, "/", &g2, 1024, 3000);
	is_err(&g2, UPSTREAM_ECONNECT, "looked up again: still ECONNECT");
	ok(WAIT(dns_inflight() == 0, 5), "no lookup left in flight");
	server_stop(&sv);
}

/* ---- https ------------------------------------------------------------------ */

/* A self-signed certificate for DNS:localhost, written to CERT and KEY. */
static void make_cert(const char *cert, const char *key)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *n;
	X509_EXTENSION *ext;
	X509V3_CTX ctx;
	FILE *f;

	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), -60);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	n = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
	X509_set_issuer_name(x, n);
	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, "DNS:localhost");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints, "critical,CA:TRUE");
	X509_add_ext(x, ext, -1);
	X509_EXTENSION_free(ext);
	X509_sign(x, pk, EVP_sha256());
	f = fopen(cert, "w");
	PEM_write_X509(f, x);
	fclose(f);
	f = fopen(key, "w");
	PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pk);
}

static void test_https(void)
{
	char dir[] = "/tmp/test_upstream.XXXXXX", cert[64], key[64], url[128], err[256];
	struct upstream_opts with_ca = { .ca_file = cert }, insecure = { .tls_insecure = true };
	struct server sv;
	struct upstream *u;
	struct got g;

	if (mkdtemp(dir) == NULL)
		return;
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	make_cert(cert, key);
	server_tls = SSL_CTX_new(TLS_server_method());
	ok(SSL_CTX_use_certificate_file(server_tls, cert, SSL_FILETYPE_PEM) == 1 &&
	   SSL_CTX_use_PrivateKey_file(server_tls, key, SSL_FILETYPE_PEM) == 1, "the test's certificate");
	server_start(&sv);

	snprintf(url, sizeof(url), "https://localhost:%d/", sv.port);
	u = upstream_get(loop, url, NULL, err, sizeof(err));
	ok(u != NULL, "https upstream with the system's roots: %s", u ? "" : err);
	if (u != NULL) {
		get(u, "/cl", &g, 1024, 2000);
		is_err(&g, UPSTREAM_ETLS, "self-signed certificate without its CA");
		is_int(conns_of(u), 0, "no connection left");
	}
	u = upstream_get(loop, url, &with_ca, err, sizeof(err));
	ok(u != NULL, "https upstream with ca_file");
	if (u != NULL) {
		int okc = 0;
		for (int i = 0; i < 3; i++) {
			get(u, "/cl", &g, 1024, 2000);
			okc += g.err == UPSTREAM_OK && g.status == 200 && strcmp(g.body, "hello") == 0;
		}
		is_int(okc, 3, "https with ca_file: 3 requests answered");
		get(u, "/chunked", &g, 1024, 2000);
		is_str(g.body, "hello world", "https: chunked");
		is_int(atomic_load(&sv.st->accepts), 2, "https keep-alive: one connection for the 4 requests (and the refused one)");
		get(u, "/big", &g, 100000, 2000);
		ok(g.err == UPSTREAM_OK && g.len == 100000, "https: a 100000-byte body");
	}
	/* the certificate is for localhost, not 127.0.0.1: the name check */
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/", sv.port);
	u = upstream_get(loop, url, &with_ca, err, sizeof(err));
	if (u != NULL) {
		get(u, "/cl", &g, 1024, 2000);
		is_err(&g, UPSTREAM_ETLS, "the right CA but another host name");
	}
	u = upstream_get(loop, url, &insecure, err, sizeof(err));
	if (u != NULL) {
		get(u, "/cl", &g, 1024, 2000);
		ok(g.err == UPSTREAM_OK && strcmp(g.body, "hello") == 0, "tls_insecure: answered (%s)", ename(g.err));
	}
	/* plain http to the TLS port: not HTTP */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", sv.port);
	u = upstream_get(loop, url, NULL, err, sizeof(err));
	get(u, "/cl", &g, 1024, 1000);
	ok(g.err == UPSTREAM_EPROTO || g.err == UPSTREAM_ECLOSED, "http to an https port fails (%s)", ename(g.err));

	server_stop(&sv);
	SSL_CTX_free(server_tls);
	server_tls = NULL;
	unlink(cert);
	unlink(key);
	rmdir(dir);
}

/* upstream_shutdown answers what is in flight with ESHUTDOWN. */
static void test_shutdown(void)
{
	struct server sv;
	struct upstream *u;
	struct got g1, g2, g3;
	char url[128], err[256];

	server_start(&sv);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d", sv.port);
	u = upstream_get(loop, url, NULL, err, sizeof(err));
	req(u, "/hang", &g1, 1024, 5000);
	spin(0.05);
	req(u, "/cl", &g2, 1024, 5000);
	req(upstream_get(loop, "http://shutdown.nonexistent.invalid/", NULL, err, sizeof(err)), "/", &g3, 1024, 5000);
	upstream_shutdown();
	ok(g1.calls == 1 && g1.err == UPSTREAM_ESHUTDOWN, "shutdown: the request in flight gets ESHUTDOWN");
	ok(g2.calls == 1 && g2.err == UPSTREAM_ESHUTDOWN, "shutdown: the new request gets ESHUTDOWN");
	ok(g3.calls == 1 && g3.err == UPSTREAM_ESHUTDOWN, "shutdown: a request waiting for a lookup gets ESHUTDOWN");
	spin(0.05);
	ok(g1.calls == 1 && g2.calls == 1 && g3.calls == 1, "shutdown: answered once");
	ok(WAIT(dns_inflight() == 0, 5), "shutdown: the lookup is let go");
	server_stop(&sv);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	log_set_level(getenv("UPSTREAM_LOG") ? LOG_DEBUG : LOG_ERROR);
	loop = ev_default_loop(0);
	loop_tick(loop, 0.01);
	test_urls();
	test_http();
	test_https();
	test_names();
	test_shutdown();
	return tap_done();
}
