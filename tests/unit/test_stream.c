/*
 * test_stream.c - the HTTP stream writer (stream.c) through socketpairs on a
 * real libev loop with a hand-made worker: the head and the first chunk,
 * the messages of one loop iteration in one chunk (SSE and line framings),
 * one buffer's messages framed once and shared by several streams,
 * the queue limit with the transport's last message still queued after it
 * (a disconnect push), and the end of the response.
 */
#include "config.h"
#include "stream.h"
#include "transport.h"
#include "http.h"
#include "conn.h"
#include "worker.h"
#include "conf.h"
#include "harness.h"
#include "../tap.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

extern const struct transport_kind transport_stream;

static struct worker w;
static struct conf k;

#define QUEUE_MAX 1000

/* The test's transport: one stream per request to /lines or /sse. */
static struct {
	struct hs *hs;
	int slow, closed;
	bool last_refused;
} T;

static void t_slow(struct hs *s, void *ud)
{
	T.slow++;
	T.last_refused = hs_send_copy(s, "{\"bye\":1}", 9) != RT_OK;
	hs_end(s, false);
}

static void t_close(struct hs *s, void *ud)
{
	T.closed++;
	T.hs = NULL;
}

static const struct hs_ops lines_ops = { hs_frame_lines, NULL, t_slow, t_close };
static const struct hs_ops sse_ops = { hs_frame_sse, NULL, t_slow, t_close };

static void t_open(struct http_req *req, void *arg)
{
	bool sse = arg != NULL;

	T.hs = hs_start(req, sse ? "text/event-stream" : "text/plain", "X-Test: 1\r\n", sse ? "\r\n" : NULL,
			sse ? 2 : 0, QUEUE_MAX, sse ? &sse_ops : &lines_ops, NULL);
}

/* A stream on a new connection; returns the client end, the head read. */
static int open_stream(const char *path, char **head)
{
	int fd = client();
	char req[128];
	bool eof;

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path);
	send_str(fd, req);
	*head = recv_avail(fd, &eof, NULL);
	return fd;
}

static void test_framing(void)
{
	bool eof;
	char *r;
	int fd = open_stream("/sse", &r);

	is_str(r, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Test: 1\r\n"
	       "Transfer-Encoding: chunked\r\n\r\n2\r\n\r\n\r\n", "the head, then the prelude as the first chunk");
	free(r);
	hs_send_copy(T.hs, "{\"a\":1}", 7);
	hs_send_copy(T.hs, "{}", 2);
	spin();
	r = recv_avail(fd, &eof, NULL);
	is_str(r, "19\r\ndata: {\"a\":1}\n\ndata: {}\n\n\r\n", "SSE: the iteration's messages in one chunk");
	free(r);
	hs_end(T.hs, false);
	spin();
	r = recv_avail(fd, &eof, NULL);
	ok(strcmp(r, "0\r\n\r\n") == 0 && eof, "hs_end: the last chunk, then the connection closes");
	free(r);
	close(fd);
	spin();
	is_int(T.closed, 1, "on_close once");
}

/* One buffer's messages on three streams in one iteration: each framed
 * once per framing and shared, every stream's bytes its own framing's;
 * nothing of the buffer is held once the iteration is over. */
static void test_shared_publication(void)
{
	struct rbuf *m = rbuf_copy("{\"a\":1}{\"b\":2}", 14);
	struct hs *one, *two, *sse;
	int f1, f2, f3;
	bool eof;
	char *r;

	f1 = open_stream("/lines", &r);
	free(r);
	one = T.hs;
	f2 = open_stream("/lines", &r);
	free(r);
	two = T.hs;
	f3 = open_stream("/sse", &r);
	free(r);
	sse = T.hs;
	hs_send(one, m, 0, 7);
	hs_send(two, m, 0, 7);
	hs_send(two, m, 7, 7);
	hs_send(sse, m, 0, 7);
	hs_send(sse, m, 7, 7);
	spin();
	r = recv_avail(f1, &eof, NULL);
	is_str(r, "8\r\n{\"a\":1}\n\r\n", "a lone message: one chunk");
	free(r);
	r = recv_avail(f2, &eof, NULL);
	is_str(r, "10\r\n{\"a\":1}\n{\"b\":2}\n\r\n", "the same message and the one after it in one chunk");
	free(r);
	r = recv_avail(f3, &eof, NULL);
	is_str(r, "1e\r\ndata: {\"a\":1}\n\ndata: {\"b\":2}\n\n\r\n", "SSE framing of the same messages");
	free(r);
	hs_send(one, m, 7, 7);
	spin();
	r = recv_avail(f1, &eof, NULL);
	is_str(r, "8\r\n{\"b\":2}\n\r\n", "the next iteration: the other message of the buffer");
	free(r);
	is_int(m->refs, 1, "the buffer is referenced by nothing once written");
	close(f1);
	close(f2);
	close(f3);
	spin();
	rbuf_unref(m);
}

static void test_slow_last_message(void)
{
	struct rbuf *m = rbuf_new(QUEUE_MAX);
	int sz = 4096, fd, rc = RT_OK, n = 0;
	size_t len, room;
	bool eof;
	char *r, *all;
	const char *tail;

	memset(m->data, 'm', QUEUE_MAX);
	fd = open_stream("/lines", &r);
	free(r);
	setsockopt(w.conns->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	/* Fill the socket until output stays queued. */
	while (w.conns->out_bytes == 0 && n++ < 1000) {
		hs_send(T.hs, m, 0, 900);
		spin();
	}
	ok(w.conns->out_bytes > 0, "output blocked");
	/* Then the queue up to its limit, framed: with the chunk framing the
	 * conn then holds more than the limit. */
	room = QUEUE_MAX - w.conns->out_bytes;
	if (w.conns->out_bytes < QUEUE_MAX)
		rc = hs_send(T.hs, m, 0, room);
	spin();
	ok(rc == RT_OK && w.conns->out_bytes > QUEUE_MAX - 9, "the queue is full");
	is_int(hs_send(T.hs, m, 0, 1), RT_CLOSED, "one more byte: refused");
	ok(T.slow == 1, "on_slow ran once");
	ok(!T.last_refused, "the transport's last message is queued all the same");
	/* The client reads again: the stream ends with that message. */
	all = recv_avail(fd, &eof, &len);
	for (int i = 0; i < 100 && !eof; i++) {
		spin();
		r = recv_avail(fd, &eof, NULL);
		all = realloc(all, len + strlen(r) + 1);
		strcpy(all + len, r);
		len += strlen(r);
		free(r);
	}
	tail = "{\"bye\":1}\n\r\n0\r\n\r\n";
	ok(eof && len > strlen(tail) && strcmp(all + len - strlen(tail), tail) == 0 &&
	   strspn(all, "m0123456789abcdef\r\n") == len - strlen(tail),
	   "what was queued, then the last message, the last chunk and the end");
	free(all);
	close(fd);
	spin();
	is_int(T.closed, 5, "on_close");
	rbuf_unref(m);
}

int main(void)
{
	harness_worker(&w, &k);
	http_init(&w);
	transport_stream.init(&w);
	http_route_add("/lines", HTTP_ROUTE_EXACT, HTTP_METHOD_BIT(HTTP_GET), t_open, NULL);
	http_route_add("/sse", HTTP_ROUTE_EXACT, HTTP_METHOD_BIT(HTTP_GET), t_open, "sse");
	harness_init(&w, transport_stream.flush);
	test_framing();
	test_shared_publication();
	test_slow_last_message();
	tick(3000); /* lingering closes end */
	is_int(w.nconns, 0, "no connection left");
	http_routes_free();
	conf_free(&k);
	return tap_done();
}
