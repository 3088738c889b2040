/*
 * connect.c - the connect proxy's request (server-api.md §7): asked when a
 * client connects without a token; beyond the common fields, the connect
 * payload, the SDK's name and version, and the channels of the request's
 * subs (those a unidirectional client asks for, or a bidirectional one
 * recovers).
 */
#include "config.h"
#include "proxy.h"

#include <string.h>

static void write_connect(struct jw *w, const struct proxy_req *q, bool b64)
{
	if (q->has_data && q->data.n > 0)
		proxy_write_data(w, q->data, b64);
	if (q->name.n > 0) {
		jw_lit(w, ",\"name\":");
		jw_str(w, q->name.p, q->name.n);
	}
	if (q->version.n > 0) {
		jw_lit(w, ",\"version\":");
		jw_str(w, q->version.p, q->version.n);
	}
	if (q->nchannels > 0) {
		jw_lit(w, ",\"channels\":[");
		for (size_t i = 0; i < q->nchannels; i++) {
			if (i)
				jw_lit(w, ",");
			jw_str(w, q->channels[i].p, q->channels[i].n);
		}
		jw_lit(w, "]");
	}
}

const struct proxy_kind_ops proxy_kind_connect = { "connect", write_connect, false };
