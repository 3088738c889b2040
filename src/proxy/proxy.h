/*
 * proxy.h - Centrifugo's HTTP backend proxies (server-api.md §7): the
 * worker asks the application's backend, over HTTP, whether a connection,
 * subscription or publication is allowed, and routes RPC calls to it.
 *
 * Model: a proxy set is built from a config per worker (proxy_set_new) and
 * rebuilt on reload; it holds every configured proxy (the "default" ones of
 * client.proxy.*, channel.proxy.*, rpc.proxy and the named ones of
 * `proxies`). A call (proxy_call) POSTs one JSON request through the
 * worker's non-blocking HTTP client (upstream.h) and answers through its
 * callback exactly once, with the backend's result, error or disconnect,
 * or with PROXY_FAILED when the backend could not be asked (down, timeout,
 * non-200 status not mapped by status_to_code_transforms, a body that is
 * not JSON or is over PROXY_MAX_BODY). A cancelled call never answers.
 *
 * The kinds share this interface; each kind (src/proxy/<kind>.c) only
 * writes the fields of its request beyond the common ones (client,
 * transport, protocol, encoding, meta). Results are parsed by one parser:
 * a kind's caller reads the fields its kind has.
 */
#ifndef ROTOR_PROXY_H
#define ROTOR_PROXY_H

#include "rotor.h"
#include "proto.h"  /* struct pstr, enum proto_fmt */
#include "node.h"   /* struct chan_override */
#include "json.h"
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct conf;
struct conf_report;
struct ev_loop;
struct http_req;
struct stats_block;

enum proxy_kind {
	PROXY_CONNECT,
	PROXY_REFRESH,
	PROXY_SUBSCRIBE,
	PROXY_PUBLISH,
	PROXY_SUB_REFRESH,
	PROXY_RPC,
	PROXY_KINDS
};

/* A response body larger than this is a failure (a backend cannot make a
 * worker buffer without bound). */
#define PROXY_MAX_BODY (1u << 20)

/* What a kind's request carries beyond the common fields; each kind reads
 * the members its request has (server-api.md §7's table). */
struct proxy_req {
	const char *client;        /* connection id */
	const char *transport;     /* transport_ops.name */
	enum proto_fmt fmt;        /* protocol */
	const char *user;
	struct pstr meta;          /* connection meta (raw JSON); sent with include_connection_meta */
	const struct proxy_headers *headers; /* the client's HTTP headers kept at connect; NULL: none */
	struct pstr data;          /* connect, subscribe, publish, rpc payload */
	bool has_data;
	struct pstr channel;       /* subscribe, publish, sub_refresh */
	struct pstr token;         /* subscribe: the client's token, if any */
	struct pstr method;        /* rpc */
	struct pstr name, version; /* connect: SDK name and version */
	const struct pstr *channels; /* connect: the channels of the request's subs */
	size_t nchannels;
};

/* One server-side subscription a connect result asks for. */
struct proxy_sub {
	char *channel;
	struct pstr info, data;    /* owned; empty when none */
	struct chan_override ov;
};

enum proxy_outcome {
	PROXY_RESULT,      /* {"result":{...}}: the fields below */
	PROXY_NO_RESULT,   /* none of result/error/disconnect */
	PROXY_ERROR,       /* {"error":...} or a transform of the HTTP status: code, message, temporary */
	PROXY_DISCONNECT,  /* {"disconnect":...} or a transform: code, message (reason) */
	PROXY_FAILED,      /* the backend could not be asked, or its answer is unusable */
};

/* A backend's answer. Owned spans and strings are freed by proxy_answer_free. */
struct proxy_answer {
	enum proxy_outcome outcome;
	uint32_t code;
	char *message;             /* error message or disconnect reason; never NULL after a call */
	bool temporary;
	/* result fields, as present */
	char *user;                /* NULL when absent */
	int64_t expire_at;
	bool expired, skip_history;
	bool has_info, has_data, has_meta, has_override;
	struct pstr info, data, meta;
	struct chan_override ov;   /* subscribe: result override */
	struct proxy_sub *subs;    /* connect: channels then subs */
	size_t nsubs;
	struct tag *tags;          /* publish: tags of the publication (owned) */
	size_t ntags;
	struct pstr idempotency_key; /* publish (owned) */
};

void proxy_answer_free(struct proxy_answer *a);

struct proxy;
struct proxy_set;
struct proxy_call;
struct proxy_headers;

/* Builds the proxies of config C for a worker on LOOP. C was validated
 * (proxy_conf_check); an upstream that cannot be made (a name that does
 * not resolve) is logged and its calls fail until the next reload. Calls
 * are counted in CTR's proxy table (shm/stats.h; NULL: not counted): in
 * flight, their durations, and the ones that ended PROXY_FAILED. */
struct proxy_set *proxy_set_new(struct ev_loop *loop, const struct conf *c, struct stats_block *ctr);
/* Frees SET. Calls in flight keep what they need and still answer. */
void proxy_set_free(struct proxy_set *set);

/* The proxy of KIND: connect and refresh take the default one only (NAME
 * ignored); the others the one named NAME ("default" or "": the kind's own
 * section). NULL when the kind is not enabled / has no endpoint. */
const struct proxy *proxy_find(const struct proxy_set *set, enum proxy_kind kind, const char *name);
/* client.proxy.connect.enabled / client.proxy.refresh.enabled, with an endpoint. */
bool proxy_enabled(const struct proxy_set *set, enum proxy_kind kind);
/* The RPC proxy for METHOD: rpc.namespaces by the part before
 * rpc.namespace_boundary, else rpc.without_namespace; NULL when that has
 * proxy_enabled false (the caller answers 104). */
const struct proxy *proxy_for_rpc(const struct proxy_set *set, struct pstr method);

/* Whether any RPC proxy is enabled (rpc.without_namespace or a namespace). */
bool proxy_rpc_configured(const struct proxy_set *set);

typedef void proxy_done_fn(void *arg, struct proxy_answer *a);

/* Asks proxy P (of KIND) with request Q. DONE(ARG, answer) is called
 * exactly once, later, never from within this call, unless the call is
 * cancelled first; the answer is the callee's to free with
 * proxy_answer_free. Nothing of Q is referenced after the return. */
struct proxy_call *proxy_call(const struct proxy *p, enum proxy_kind kind, const struct proxy_req *q,
			      proxy_done_fn *done, void *arg);
/* Forgets CALL: DONE is never called; what it held is freed. */
void proxy_cancel(struct proxy_call *call);

/* The headers of REQ that any proxy of SET passes on (http_headers), kept
 * for the connection's lifetime; NULL when none. */
struct proxy_headers *proxy_headers_keep(const struct proxy_set *set, const struct http_req *req);
/* Headers emulation (ConnectRequest.headers, V, N): the entries whose name
 * some proxy of SET lists in emulated_headers join *H (made when NULL),
 * replacing the emulated ones a previous call added; a proxy sends one
 * only when no real header of that name passes (Centrifugo v6.9's
 * emulated_headers: http_headers never takes client-supplied values). An
 * entry that cannot be written into a request (a name that is not an HTTP
 * token, a value with CR, LF, NUL or another control character) is
 * dropped; returns how many were. */
int proxy_headers_emulate(const struct proxy_set *set, struct proxy_headers **h, const struct connect_hdr *v,
			  size_t n);
void proxy_headers_free(struct proxy_headers *h);

/* Cross-key checks at config load (rotord -t): endpoints are http(s)://
 * (grpc:// is refused: rotor has HTTP proxies only), an enabled proxy has
 * an endpoint, gRPC-only options and subscribe stream proxies are refused,
 * http.static_headers and http.status_to_code_transforms are well formed. */
void proxy_conf_check(const struct conf *c, struct conf_report *rep);
/* Calls FN(ARG, name, value) for each header of a proxy's
 * http.static_headers ST (NULL: none), in either of Centrifugo's forms: an
 * object of strings, or an array of {"key", "value"} objects (its
 * recommended form); ${CENTRIFUGO_VAR_NAME} in a value is replaced by that
 * environment variable. Returns NULL, or what is wrong, written into ERR
 * (N bytes): a caller that checked the config first gets NULL. */
typedef void proxy_header_fn(void *arg, const char *name, const char *value);
const char *proxy_static_headers(const json_t *st, proxy_header_fn *fn, void *arg, char *err, size_t n);

/* The value at dotted PATH (object keys) under ROOT, or NULL. */
const json_t *proxy_json_at(const json_t *root, const char *path);

/* One kind's request writer: the members beyond the common fields, each
 * written as ,"name":value (the object is open). */
struct proxy_kind_ops {
	const char *name;          /* "connect"... (logs, metrics) */
	void (*write)(struct jw *w, const struct proxy_req *q, bool b64);
	bool data_first;           /* a result's data wins over its b64data (publish) */
};

/* Writes DATA as "data" (raw JSON) or, with B64 or when not JSON, "b64data". */
void proxy_write_data(struct jw *w, struct pstr data, bool b64);

extern const struct proxy_kind_ops proxy_kind_connect, proxy_kind_refresh, proxy_kind_subscribe,
	proxy_kind_publish, proxy_kind_sub_refresh, proxy_kind_rpc;

#endif
