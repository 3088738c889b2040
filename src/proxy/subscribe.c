/*
 * subscribe.c - the subscribe proxy's request: the user, the channel, the
 * client's subscription token if it sent one, and its subscribe payload.
 */
#include "config.h"
#include "proxy.h"

#include <string.h>

static void write_subscribe(struct jw *w, const struct proxy_req *q, bool b64)
{
	jw_lit(w, ",\"user\":");
	jw_str(w, q->user, strlen(q->user));
	jw_lit(w, ",\"channel\":");
	jw_str(w, q->channel.p, q->channel.n);
	if (q->token.n > 0) {
		jw_lit(w, ",\"token\":");
		jw_str(w, q->token.p, q->token.n);
	}
	if (q->has_data && q->data.n > 0)
		proxy_write_data(w, q->data, b64);
}

const struct proxy_kind_ops proxy_kind_subscribe = { "subscribe", write_subscribe, false };
