/*
 * harness.c - the loop harness shared by the connection-level unit tests;
 * see harness.h.
 */
#include "config.h"
#include "harness.h"
#include "conf.h"
#include "conn.h"
#include "http.h"
#include "worker.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct worker *hw;
static void (*hframe)(struct worker *);

/* The flush point, as the worker's on_prepare: frame, then write. */
static void flush_cb(struct ev_loop *loop, ev_prepare *p, int revents)
{
	if (hframe)
		hframe(hw);
	conn_flush_all(hw);
}

void harness_worker(struct worker *w, struct conf *k)
{
	signal(SIGPIPE, SIG_IGN);
	w->loop = ev_default_loop(0);
	w->now_ms = 1000000;
	conf_init(k);
	w->conf = k;
	wheel_init(&w->wheel, w->now_ms, 100);
	conn_init(w);
}

void harness_init(struct worker *w, void (*frame)(struct worker *))
{
	hw = w;
	hframe = frame;
	ev_prepare_init(&w->flush_w, flush_cb);
	ev_prepare_start(w->loop, &w->flush_w);
}

void spin(void)
{
	for (int i = 0; i < 6; i++)
		ev_run(hw->loop, EVRUN_NOWAIT);
}

void tick(int64_t ms)
{
	hw->now_ms += ms;
	wheel_advance(&hw->wheel, hw->now_ms);
	spin();
}

static void nonblock(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

int pair(struct conn **cp, const struct conn_ops *ops)
{
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		abort();
	nonblock(sv[0]);
	nonblock(sv[1]);
	if (ops)
		*cp = conn_new(hw, sv[0], ops, NULL);
	else
		http_accept(hw, sv[0], false);
	return sv[1];
}

int client(void)
{
	return pair(NULL, NULL);
}

size_t send_bytes(int fd, const void *p, size_t n)
{
	const char *s = p;
	size_t sent = 0;
	int stuck = 0;

	while (sent < n) {
		/* MSG_NOSIGNAL: a closed server is an answer, not a SIGPIPE. */
		ssize_t r = send(fd, s + sent, n - sent, MSG_NOSIGNAL);

		if (r < 0 && errno == EAGAIN) {
			/* Progress resets this: a slow reader is waited for,
			 * a server that takes nothing in 1000 runs is not. */
			if (++stuck > 1000)
				break;
			spin();
			continue;
		}
		if (r < 0 && (errno == EPIPE || errno == ECONNRESET))
			break; /* the server closed */
		if (r < 0)
			abort(); /* a bad fd: the test is wrong */
		sent += (size_t)r;
		stuck = 0;
	}
	return sent;
}

size_t send_str(int fd, const char *s)
{
	return send_bytes(fd, s, strlen(s));
}

char *recv_avail(int fd, bool *eof, size_t *lenp)
{
	size_t len = 0, cap = 65536;
	char *buf = malloc(cap);
	bool spun = false;
	ssize_t r;

	if (!buf)
		abort();
	spin();
	*eof = false;
	for (;;) {
		if (cap - len < 32768) {
			buf = realloc(buf, cap *= 2);
			if (!buf)
				abort();
		}
		r = read(fd, buf + len, cap - len - 1);
		if (r > 0) {
			len += (size_t)r;
			spun = false;
			continue;
		}
		if (r < 0 && errno == EAGAIN && !spun) {
			/* More may come after another loop run (a reply
			 * written in slices, a close at the next flush). */
			spin();
			spun = true;
			continue;
		}
		if (r == 0 || (r < 0 && errno != EAGAIN))
			*eof = true;
		break;
	}
	buf[len] = '\0';
	if (lenp)
		*lenp = len;
	return buf;
}

int status_of(const char *resp)
{
	return strncmp(resp, "HTTP/1.1 ", 9) == 0 ? atoi(resp + 9) : -1;
}
