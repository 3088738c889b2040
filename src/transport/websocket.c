/*
 * websocket.c - the bidirectional WebSocket transport, Centrifugo's default
 * (client-protocol.md §8.1): websocket.handler_prefix, unless
 * websocket.disabled. The WebSocket layer (ws.c) does the protocol; this
 * file joins one session to each connection: whole messages in are frames
 * of commands, queued replies and pushes leave in batched frames, and a
 * disconnect is a close frame with the code and reason.
 */
#include "config.h"
#include "client.h"
#include "conf.h"
#include "conn.h"
#include "http.h"
#include "transport.h"
#include "worker.h"
#include "ws.h"

#include <stdlib.h>

static struct transport_route route;

static int t_send(void *t, struct rbuf *b, size_t off, size_t len)
{
	return ws_send(t, b, off, len);
}

static int t_send_copy(void *t, const void *p, size_t n)
{
	return ws_send_copy(t, p, n);
}

static void t_close(void *t, uint32_t code, const char *reason)
{
	ws_close(t, code, reason);
}

static void t_answering(void *t)
{
	ws_answering(t);
}

static const struct transport_ops ops = { "websocket", t_send, t_send_copy, t_close, t_answering };

static void on_message(struct ws *ws, void *ud, const char *data, size_t len)
{
	client_frame(ud, data, len);
}

static void on_drain(struct ws *ws, void *ud)
{
	client_shutdown(ud);
}

static void on_slow(struct ws *ws, void *ud)
{
	client_disconnect(ud, 3008, "slow");
}

static void on_close(struct ws *ws, void *ud)
{
	client_transport_closed(ud);
}

static const struct ws_handler handler = {
	.on_message = on_message, .on_drain = on_drain, .on_slow = on_slow, .on_close = on_close,
};

static void upgrade(struct http_req *req, void *arg)
{
	static const struct ws_upgrade u = { .admit = true, .centrifuge = true, .deflate = true };
	struct ws_open_info info;
	struct ws *ws = ws_upgrade(req, &u, &info);

	if (!ws)
		return;
	struct client_opts o = { .fmt = info.fmt, .flags = info.frame_ping_pong ? CLIENT_NATIVE_PING : 0,
				 .req = req };
	ws_set_handler(ws, &handler, client_new(req->conn->w, &ops, ws, &o));
}

static void configure(struct worker *w)
{
	const struct conf *k = w->conf;
	const char *want = json_string_value(conf_get(k, "websocket.handler_prefix"));

	if (!want || !*want)
		want = "/connection/websocket";
	if (json_is_true(conf_get(k, "websocket.disabled")))
		want = NULL;
	transport_route_set(&route, "websocket.handler_prefix", want, HTTP_ROUTE_EXACT, HTTP_METHOD_BIT(HTTP_GET),
			    upgrade, NULL);
}

static void init(struct worker *w)
{
	free(route.path); /* a new route table (tests) */
	route.path = NULL;
	configure(w);
}

const struct transport_kind transport_websocket = {
	.name = "websocket",
	.init = init,
	.reconfigure = configure,
};
