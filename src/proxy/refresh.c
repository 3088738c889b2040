/*
 * refresh.c - the refresh proxy's request: asked when a connection
 * expires (instead of a client-side refresh); beyond the common fields,
 * the user.
 */
#include "config.h"
#include "proxy.h"

#include <string.h>

static void write_refresh(struct jw *w, const struct proxy_req *q, bool b64)
{
	(void)b64;
	jw_lit(w, ",\"user\":");
	jw_str(w, q->user, strlen(q->user));
}

const struct proxy_kind_ops proxy_kind_refresh = { "refresh", write_refresh, false };
