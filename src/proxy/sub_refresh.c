/*
 * sub_refresh.c - the sub_refresh proxy's request: asked when a
 * subscription made through a namespace with sub_refresh_proxy_enabled
 * expires; the user and the channel.
 */
#include "config.h"
#include "proxy.h"

#include <string.h>

static void write_sub_refresh(struct jw *w, const struct proxy_req *q, bool b64)
{
	(void)b64;
	jw_lit(w, ",\"user\":");
	jw_str(w, q->user, strlen(q->user));
	jw_lit(w, ",\"channel\":");
	jw_str(w, q->channel.p, q->channel.n);
}

const struct proxy_kind_ops proxy_kind_sub_refresh = { "sub_refresh", write_sub_refresh, false };
