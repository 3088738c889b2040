/*
 * test_proxy.c - the proxies' shared part (src/proxy/) on a real libev loop
 * against an HTTP server forked by the test on 127.0.0.1 (one process per
 * connection): the request envelope byte for byte, passed and static
 * headers, result / error / disconnect / no result, raw result fields
 * (data kept byte for byte, b64data decoded, bad base64 refused),
 * status_to_code_transforms, a non-200 status, invalid JSON, a call
 * cancelled in flight (never answered, nothing leaked: LeakSanitizer checks
 * this test in sanitizer builds), and a set freed while a call is in
 * flight.
 */
#include "config.h"
#include "proxy.h"
#include "conf.h"
#include "http.h"
#include "upstream.h"
#include "util.h"
#include "../tap.h"
#include "loop_wait.h"

#include <arpa/inet.h>
#include <ev.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static struct ev_loop *loop;
#define WAIT(cond, secs) LOOP_WAIT(loop, cond, secs)

/* ---- the server ------------------------------------------------------------- */

/* The value of header NAME in the head H, into OUT (N bytes); "" if none. */
static void header_of(const char *h, const char *name, char *out, size_t n)
{
	size_t nl = strlen(name);
	out[0] = '\0';
	for (const char *p = strstr(h, "\r\n"); p && p[2]; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, nl) == 0 && p[2 + nl] == ':') {
			const char *v = p + 3 + nl, *e = strstr(v, "\r\n");
			while (*v == ' ')
				v++;
			snprintf(out, n, "%.*s", (int)(e - v), v);
			return;
		}
	}
}

static void respond(int fd, int status, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
			 status, strlen(body));
	if (write(fd, head, (size_t)n) < 0 || write(fd, body, strlen(body)) < 0)
		_exit(1);
}

/* Serves one connection: each request answered by its path. */
static void serve(int fd)
{
	static char buf[1 << 16];
	size_t len = 0;

	for (;;) {
		char *end;
		while ((end = memmem(buf, len, "\r\n\r\n", 4)) == NULL) {
			ssize_t r = read(fd, buf + len, sizeof buf - len - 1);
			if (r <= 0)
				_exit(0);
			len += (size_t)r;
		}
		buf[len] = '\0';
		char cl[32], pass[128], st[128], path[64] = "";
		*end = '\0';
		header_of(buf, "Content-Length", cl, sizeof cl);
		header_of(buf, "X-Pass", pass, sizeof pass);
		header_of(buf, "X-Static", st, sizeof st);
		sscanf(buf, "POST %63s", path);
		size_t hl = (size_t)(end - buf) + 4, bl = (size_t)atol(cl);
		while (len < hl + bl) {
			ssize_t r = read(fd, buf + len, sizeof buf - len - 1);
			if (r <= 0)
				_exit(0);
			len += (size_t)r;
		}
		char *body = xstrndup(buf + hl, bl), out[8192];
		memmove(buf, buf + hl + bl, len - hl - bl);
		len -= hl + bl;
		if (strcmp(path, "/echo") == 0) {
			snprintf(out, sizeof out, "{\"result\":{\"data\":%s,\"user\":\"%s|%s\"}}", body, pass, st);
			respond(fd, 200, out);
		} else if (strcmp(path, "/fields") == 0) {
			respond(fd, 200, "{\"result\":{\"data\":{\"x\":1.10},\"expire_at\":5,\"expired\":true,"
					 "\"skip_history\":true,\"meta\":{\"m\":1},\"info\":[1, 2],"
					 "\"override\":{\"presence\":{\"value\":true},\"join_leave\":{\"value\":false}},"
					 "\"channels\":[\"a\",\"b\"],\"subs\":{\"c\":{\"b64info\":\"eyJpIjoxfQ==\"}}}}");
		} else if (strcmp(path, "/b64") == 0) {
			respond(fd, 200, "{\"result\":{\"b64data\":\"eyJhIjoxfQ==\"}}");
		} else if (strcmp(path, "/badb64") == 0) {
			respond(fd, 200, "{\"result\":{\"b64info\":\"!!!\"}}");
		} else if (strcmp(path, "/err") == 0) {
			respond(fd, 200, "{\"error\":{\"code\":1234,\"message\":\"m\",\"temporary\":true}}");
		} else if (strcmp(path, "/disc") == 0) {
			respond(fd, 200, "{\"disconnect\":{\"code\":4500,\"reason\":\"r\"},\"error\":{\"code\":1}}");
		} else if (strcmp(path, "/none") == 0) {
			respond(fd, 200, "{}");
		} else if (strcmp(path, "/bad") == 0) {
			respond(fd, 200, "not json");
		} else if (strcmp(path, "/s404") == 0 || strcmp(path, "/s500") == 0) {
			respond(fd, atoi(path + 2), "{}");
		} else if (strcmp(path, "/hang") == 0) {
			char c;
			while (read(fd, &c, 1) > 0)
				;
			_exit(0);
		}
		free(body);
	}
}

static pid_t server_start(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &al) != 0)
		abort();
	*port = ntohs(a.sin_port);
	pid_t pid = fork();
	if (pid == 0) {
		signal(SIGCHLD, SIG_IGN);
		for (;;) {
			int c = accept(fd, NULL, NULL);
			if (c < 0)
				continue;
			if (fork() == 0) {
				close(fd);
				serve(c);
			}
			close(c);
		}
	}
	close(fd);
	return pid;
}

/* ---- calls --------------------------------------------------------------------- */

static struct proxy_answer *got;
static int ncalls;

static void done(void *arg, struct proxy_answer *a)
{
	(void)arg;
	got = a;
	ncalls++;
}

/* Calls the named proxy NAME (an RPC) with data DATA and waits. */
static struct proxy_answer *call(struct proxy_set *set, const char *name, const char *data,
				 const struct proxy_headers *h)
{
	struct proxy_req q = { .client = "c1", .transport = "websocket", .fmt = PROTO_JSON, .user = "u",
			       .method = PSTR("m"), .data = pstr_c(data), .has_data = true, .headers = h };
	const struct proxy *p = proxy_find(set, PROXY_RPC, name);
	got = NULL;
	if (p == NULL)
		return NULL;
	proxy_call(p, PROXY_RPC, &q, done, NULL);
	ok(got == NULL, "%s: not answered from within proxy_call", name);
	WAIT(got != NULL, 5);
	return got;
}

static bool span_is(struct pstr s, const char *want)
{
	return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

int main(void)
{
	int port;
	pid_t srv = server_start(&port);
	struct conf c;
	struct conf_report rep = { 0 };
	char path[] = "/tmp/test_proxy_XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fdopen(fd, "w");

	loop = ev_default_loop(0);
	loop_tick(loop, 0.05);
	fprintf(f, "{\"proxies\": ["
		"{\"name\": \"echo\", \"endpoint\": \"http://127.0.0.1:%d/echo\", \"http_headers\": [\"X-Pass\", \"x-static\"],"
		"  \"http\": {\"static_headers\": {\"X-Static\": \"st\"}}},"
		"{\"name\": \"b64\", \"endpoint\": \"http://127.0.0.1:%d/echo\", \"binary_encoding\": true},"
		"{\"name\": \"fields\", \"endpoint\": \"http://127.0.0.1:%d/fields\"},"
		"{\"name\": \"b64r\", \"endpoint\": \"http://127.0.0.1:%d/b64\"},"
		"{\"name\": \"badb64\", \"endpoint\": \"http://127.0.0.1:%d/badb64\"},"
		"{\"name\": \"err\", \"endpoint\": \"http://127.0.0.1:%d/err\"},"
		"{\"name\": \"disc\", \"endpoint\": \"http://127.0.0.1:%d/disc\"},"
		"{\"name\": \"none\", \"endpoint\": \"http://127.0.0.1:%d/none\"},"
		"{\"name\": \"bad\", \"endpoint\": \"http://127.0.0.1:%d/bad\"},"
		"{\"name\": \"s404\", \"endpoint\": \"http://127.0.0.1:%d/s404\", \"http\": {\"status_to_code_transforms\": ["
		"  {\"status_code\": 404, \"to_error\": {\"code\": 1404, \"message\": \"nf\", \"temporary\": true}}]}},"
		"{\"name\": \"s500\", \"endpoint\": \"http://127.0.0.1:%d/s500\"},"
		"{\"name\": \"hang\", \"endpoint\": \"http://127.0.0.1:%d/hang\", \"timeout\": \"300ms\"}]}",
		port, port, port, port, port, port, port, port, port, port, port, port);
	fclose(f);
	conf_init(&c);
	conf_apply_file(&c, path, &rep);
	unlink(path);
	ok(conf_check(&c, &rep) == RT_OK, "the config is valid");
	for (size_t i = 0; i < rep.nerrors; i++)
		printf("# %s\n", rep.errors[i]);
	struct proxy_set *set = proxy_set_new(loop, &c, NULL);
	ok(proxy_find(set, PROXY_RPC, "nope") == NULL, "an unknown name finds nothing");
	ok(proxy_find(set, PROXY_RPC, "default") == NULL, "no rpc.proxy: no default");

	/* The request, byte for byte, and the headers. */
	struct http_header hs[] = { { "x-pass", "p1" }, { "X-Static", "from-client" }, { "Cookie", "no" } };
	struct http_req hr = { .headers = hs, .nheaders = 3 };
	struct proxy_headers *kept = proxy_headers_keep(set, &hr);
	ok(kept != NULL, "listed headers are kept");
	struct proxy_answer *a = call(set, "echo", "{\"x\": 1.10}", kept);
	ok(a && a->outcome == PROXY_RESULT, "echo: a result");
	ok(a && span_is(a->data, "{\"client\":\"c1\",\"transport\":\"websocket\",\"protocol\":\"json\","
				 "\"encoding\":\"json\",\"user\":\"u\",\"method\":\"m\",\"data\":{\"x\": 1.10}}"),
	   "the request body: %.*s", a ? (int)a->data.n : 0, a ? a->data.p : "");
	ok(a && a->user && strcmp(a->user, "p1|from-client") == 0, "passed headers, over a static one: %s",
	   a && a->user ? a->user : "");
	proxy_answer_free(a);
	a = call(set, "echo", "{}", NULL);
	ok(a && a->user && strcmp(a->user, "|st") == 0, "a static header when the client has none: %s",
	   a && a->user ? a->user : "");
	proxy_answer_free(a);
	a = call(set, "b64", "{\"y\":2}", NULL);
	ok(a && strstr(a->data.p, "\"encoding\":\"binary\"") && strstr(a->data.p, "\"b64data\":\"eyJ5IjoyfQ==\""),
	   "binary_encoding: b64data in the request");
	proxy_answer_free(a);

	/* Result fields. */
	a = call(set, "fields", "{}", NULL);
	ok(a && span_is(a->data, "{\"x\":1.10}"), "data byte for byte");
	ok(a && span_is(a->info, "[1, 2]") && a->has_info, "info byte for byte");
	ok(a && span_is(a->meta, "{\"m\":1}") && a->has_meta, "meta");
	ok(a && a->expire_at == 5 && a->expired && a->skip_history, "expire_at, expired, skip_history");
	ok(a && a->has_override && a->ov.presence == 1 && a->ov.join_leave == 0 && a->ov.force_recovery == -1,
	   "override");
	ok(a && a->nsubs == 3 && strcmp(a->subs[0].channel, "a") == 0 && strcmp(a->subs[2].channel, "c") == 0 &&
	   span_is(a->subs[2].info, "{\"i\":1}"), "channels then subs, b64info decoded");
	proxy_answer_free(a);
	a = call(set, "b64r", "{}", NULL);
	ok(a && a->outcome == PROXY_RESULT && span_is(a->data, "{\"a\":1}"), "b64data decoded");
	proxy_answer_free(a);
	a = call(set, "badb64", "{}", NULL);
	ok(a && a->outcome == PROXY_FAILED && a->code == 100, "bad base64: failed");
	proxy_answer_free(a);

	/* Answers and faults. */
	a = call(set, "err", "{}", NULL);
	ok(a && a->outcome == PROXY_ERROR && a->code == 1234 && strcmp(a->message, "m") == 0 && a->temporary, "error");
	proxy_answer_free(a);
	a = call(set, "disc", "{}", NULL);
	ok(a && a->outcome == PROXY_DISCONNECT && a->code == 4500 && strcmp(a->message, "r") == 0,
	   "disconnect wins over error");
	proxy_answer_free(a);
	a = call(set, "none", "{}", NULL);
	ok(a && a->outcome == PROXY_NO_RESULT, "no result");
	proxy_answer_free(a);
	a = call(set, "bad", "{}", NULL);
	ok(a && a->outcome == PROXY_FAILED, "invalid JSON: failed");
	proxy_answer_free(a);
	a = call(set, "s404", "{}", NULL);
	ok(a && a->outcome == PROXY_ERROR && a->code == 1404 && strcmp(a->message, "nf") == 0 && a->temporary,
	   "404 transformed to an error");
	proxy_answer_free(a);
	a = call(set, "s500", "{}", NULL);
	ok(a && a->outcome == PROXY_FAILED && a->code == 100, "500 without a transform: failed");
	proxy_answer_free(a);
	double t0 = ev_time();
	a = call(set, "hang", "{}", NULL);
	ok(a && a->outcome == PROXY_FAILED && ev_time() - t0 >= 0.25, "a hang: failed at the timeout");
	proxy_answer_free(a);

	/* Cancelled in flight: never answered. */
	struct proxy_req q = { .client = "c1", .transport = "sse", .user = "", .method = PSTR("m") };
	ncalls = 0;
	struct proxy_call *pc = proxy_call(proxy_find(set, PROXY_RPC, "hang"), PROXY_RPC, &q, done, NULL);
	ev_run(loop, EVRUN_ONCE);
	proxy_cancel(pc);
	ev_now_update(loop);
	t0 = ev_time();
	while (ev_time() - t0 < 0.5)
		ev_run(loop, EVRUN_ONCE);
	ok(ncalls == 0, "a cancelled call is never answered");

	/* A set freed (a reload) while a call is in flight: the call still answers. */
	got = NULL;
	proxy_call(proxy_find(set, PROXY_RPC, "err"), PROXY_RPC, &q, done, NULL);
	proxy_set_free(set);
	WAIT(got != NULL, 5);
	ok(got && got->outcome == PROXY_ERROR, "answered after its set was freed");
	proxy_answer_free(got);

	proxy_headers_free(kept);
	conf_report_free(&rep);
	conf_free(&c);
	upstream_shutdown();
	kill(srv, SIGTERM);
	waitpid(srv, NULL, 0);
	ev_loop_destroy(loop);
	return tap_done();
}
