/*
 * tp.c - the list of client transports and the calls gen.c makes through
 * them (tp.h). This table is the only place that names the members.
 */
#include "tp.h"
#include "hsr.h"
#include "wsc.h"

#include <stdlib.h>
#include <string.h>

extern const struct tp_kind tp_websocket, tp_http_stream, tp_sse, tp_sockjs_websocket,
	tp_sockjs_xhr_streaming;

static const struct tp_kind *const kinds[] = {
	&tp_websocket, &tp_http_stream, &tp_sse, &tp_sockjs_websocket, &tp_sockjs_xhr_streaming,
};

#define NKINDS (sizeof(kinds) / sizeof(kinds[0]))

const struct tp_kind *tp_find(const char *name)
{
	for (size_t i = 0; i < NKINDS; i++)
		if (strcmp(kinds[i]->name, name) == 0)
			return kinds[i];
	return NULL;
}

const char *tp_names(void)
{
	static char names[256];
	if (names[0] == 0)
		for (size_t i = 0; i < NKINDS; i++) {
			if (i)
				strcat(names, ", ");
			strcat(names, kinds[i]->name);
		}
	return names;
}

void tp_setup(const struct tp_kind *k, const struct tp_env *env)
{
	k->setup(env);
}

void tp_teardown(const struct tp_kind *k)
{
	if (k->teardown)
		k->teardown();
}

struct tp_conn *tp_new(const struct tp_kind *k, const struct tp_ops *ops, void *ud)
{
	struct tp_conn *c = calloc(1, k->size);
	if (c == NULL)
		abort();
	c->kind = k;
	c->ops = ops;
	c->ud = ud;
	return c;
}

int tp_open(struct tp_conn *c, unsigned k, bool protobuf, const uint8_t *first, size_t n)
{
	c->protobuf = protobuf;
	return c->kind->open(c, k, first, n);
}

int tp_send(struct tp_conn *c, const uint8_t *p, size_t n)
{
	return c->kind->send(c, p, n);
}

void tp_close(struct tp_conn *c)
{
	c->kind->close(c);
}

void tp_free(struct tp_conn *c)
{
	if (c == NULL)
		return;
	c->kind->close(c);
	free(c);
}

enum tp_end tp_end_of_wsc(int why)
{
	switch ((enum wsc_end)why) {
	case WSC_END_CONNECT: return TP_END_CONNECT;
	case WSC_END_HANDSHAKE: return TP_END_HANDSHAKE;
	case WSC_END_CLOSE: return TP_END_CLOSE;
	case WSC_END_EOF: return TP_END_EOF;
	case WSC_END_PROTO: break;
	}
	return TP_END_PROTO;
}

enum tp_end tp_end_of_hsr(int why)
{
	switch ((enum hsr_end)why) {
	case HSR_END_CONNECT: return TP_END_CONNECT;
	case HSR_END_STATUS: return TP_END_HANDSHAKE;
	case HSR_END_EOF: return TP_END_EOF;
	case HSR_END_PROTO: break;
	}
	return TP_END_PROTO;
}
