/*
 * rpc.c - the RPC proxy's request: the user, the method and the call's
 * payload; the result's data is the RPC reply.
 */
#include "config.h"
#include "proxy.h"

#include <string.h>

static void write_rpc(struct jw *w, const struct proxy_req *q, bool b64)
{
	jw_lit(w, ",\"user\":");
	jw_str(w, q->user, strlen(q->user));
	jw_lit(w, ",\"method\":");
	jw_str(w, q->method.p, q->method.n);
	if (q->data.n > 0)
		proxy_write_data(w, q->data, b64);
}

const struct proxy_kind_ops proxy_kind_rpc = { "rpc", write_rpc, false };
