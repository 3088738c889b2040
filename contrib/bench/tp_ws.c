/*
 * tp_ws.c - the websocket transport (tp.h): /connection/websocket, JSON
 * text frames or, with subprotocol centrifuge-protobuf, binary frames.
 * The first frame goes out once the handshake is done; every message the
 * server sends is handed up as it is (inflated first with --deflate),
 * since a WebSocket message is already a batch of protocol messages.
 */
#include "tp.h"
#include "wsc.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

struct wsconn {
	struct tp_conn c;       /* first */
	struct wsc w;
	uint8_t *first;         /* until the handshake is done */
	uint32_t flen;
};

#define OF(w) ((struct wsconn *)((char *)(w) - offsetof(struct wsconn, w)))

static void setup(const struct tp_env *env)
{
	wsc_setup(&env->dst, env->host, env->deflate);
}

static void drop_first(struct wsconn *x)
{
	free(x->first);
	x->first = NULL;
	x->flen = 0;
}

static void on_open(struct wsc *w)
{
	struct wsconn *x = OF(w);
	int err = wsc_send(w, x->c.protobuf, x->first, x->flen);
	drop_first(x);
	if (err)
		x->c.ops->on_end(&x->c, TP_END_EOF, err);
}

static void on_message(struct wsc *w, const uint8_t *p, size_t n, uint64_t now)
{
	struct wsconn *x = OF(w);
	x->c.ops->on_message(&x->c, p, n, now);
}

static void on_end(struct wsc *w, enum wsc_end why, int detail)
{
	struct wsconn *x = OF(w);
	drop_first(x);
	x->c.ops->on_end(&x->c, tp_end_of_wsc(why), detail);
}

static const struct wsc_ops ws_ops = { on_open, on_message, on_end };

static int ws_open(struct tp_conn *c, unsigned k, const uint8_t *first, size_t n)
{
	struct wsconn *x = (struct wsconn *)c;
	drop_first(x);
	x->first = malloc(n ? n : 1);
	if (x->first == NULL)
		abort();
	memcpy(x->first, first, n);
	x->flen = (uint32_t)n;
	int err = wsc_connect(&x->w, k, "/connection/websocket", c->protobuf, &ws_ops);
	if (err)
		drop_first(x);
	return err;
}

static int ws_send(struct tp_conn *c, const uint8_t *p, size_t n)
{
	struct wsconn *x = (struct wsconn *)c;
	return wsc_send(&x->w, c->protobuf, p, n);
}

static void ws_close(struct tp_conn *c)
{
	struct wsconn *x = (struct wsconn *)c;
	wsc_close(&x->w);
	drop_first(x);
}

const struct tp_kind tp_websocket = {
	.name = "websocket", .protobuf = true, .rotord_conf = "",
	.size = sizeof(struct wsconn), .setup = setup,
	.open = ws_open, .send = ws_send, .close = ws_close,
};
