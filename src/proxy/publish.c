/*
 * publish.c - the publish proxy's request: the user, the channel and the
 * data the client publishes. Its result may replace the data (`data`
 * winning over `b64data`, as in Centrifugo), and add tags, an idempotency
 * key, skip_history.
 */
#include "config.h"
#include "proxy.h"

#include <string.h>

static void write_publish(struct jw *w, const struct proxy_req *q, bool b64)
{
	jw_lit(w, ",\"user\":");
	jw_str(w, q->user, strlen(q->user));
	jw_lit(w, ",\"channel\":");
	jw_str(w, q->channel.p, q->channel.n);
	proxy_write_data(w, q->data, b64);
}

const struct proxy_kind_ops proxy_kind_publish = { "publish", write_publish, true };
