/*
 * channel.h - channel names, namespaces, channel options and the
 * client-side permission rules of Centrifugo (server-api.md §3), compiled
 * once per config.
 *
 * Use: the worker builds a struct chan_cfg from its struct conf with
 * chan_cfg_new and rebuilds it on every reload. Everything a chan_cfg hands
 * out (struct chan_opts pointers, names) lives until chan_cfg_free. A session
 * must not keep such pointers across loop iterations: after a reload the
 * worker frees the old chan_cfg, so look options up again (cheap: no
 * allocation) each time they are needed.
 *
 * The checks return a client protocol error code (client-protocol.md §5.1),
 * or CHAN_OK. They never log and never allocate.
 */
#ifndef ROTOR_CHANNEL_H
#define ROTOR_CHANNEL_H

#include "rotor.h"
#include "node.h"   /* struct chan_override */
#include "proto.h"  /* struct pstr */
#include <regex.h>
#include <stdbool.h>
#include <stdint.h>

struct conf;

/* Results of the checks: CHAN_OK, CHAN_NEED_TOKEN, or the client protocol
 * error code to answer with. */
enum {
	CHAN_OK = 0,
	CHAN_NEED_TOKEN = 1,             /* not an error: see chan_check_subscribe */
	CHAN_ERR_UNKNOWN_CHANNEL = 102,
	CHAN_ERR_PERMISSION_DENIED = 103,
	CHAN_ERR_ALREADY_SUBSCRIBED = 105,
	CHAN_ERR_LIMIT_EXCEEDED = 106,
	CHAN_ERR_BAD_REQUEST = 107,
	CHAN_ERR_NOT_AVAILABLE = 108,
};

enum chan_recovery_mode {
	CHAN_RECOVERY_STREAM = 0,  /* force_recovery_mode "" or "stream" */
	CHAN_RECOVERY_CACHE,       /* "cache": only the latest publication */
};

/* The options of one namespace (or of channels without namespace), typed.
 * Names follow the config keys (server-api.md §3.2). */
struct chan_opts {
	const char *name;                /* namespace name; "" for without_namespace */
	bool presence;
	bool join_leave;
	bool force_push_join_leave;
	int64_t history_size;
	int64_t history_ttl_ms;
	int64_t history_meta_ttl_ms;     /* effective: the option, or channel.history_meta_ttl when 0 */
	bool force_positioning, allow_positioning;
	bool force_recovery, allow_recovery;
	enum chan_recovery_mode force_recovery_mode;
	bool delta_fossil;               /* allowed_delta_types holds "fossil" */
	bool delta_publish;
	bool allow_subscribe_for_client, allow_subscribe_for_anonymous;
	bool allow_publish_for_client, allow_publish_for_subscriber, allow_publish_for_anonymous;
	bool allow_presence_for_client, allow_presence_for_subscriber, allow_presence_for_anonymous;
	bool allow_history_for_client, allow_history_for_subscriber, allow_history_for_anonymous;
	bool allow_user_limited_channels;
	const char *channel_regex;       /* as configured (Go syntax); "" for none */
	regex_t *regex;                  /* compiled; NULL without channel_regex */
	bool regex_broken;               /* channel_regex did not compile: every name is refused */
	/* Proxies: rotor has none yet, so an enabled proxy means "not available". */
	bool subscribe_proxy, publish_proxy, sub_refresh_proxy;
	bool subscribe_stream_proxy, subscribe_stream_bidirectional;
};

/* True when the namespace keeps history (both size and ttl set). */
static inline bool chan_has_history(const struct chan_opts *o)
{
	return o->history_size > 0 && o->history_ttl_ms > 0;
}

struct chan_cfg;

/* Puts the history options of a channel with options O into a
 * publication, and delta_publish. */
static inline void chan_pub_history(const struct chan_opts *o, struct node_pub *p)
{
	p->delta = o->delta_publish;
	p->history_size = chan_has_history(o) ? (uint32_t)o->history_size : 0;
	p->history_ttl_ms = chan_has_history(o) ? (uint64_t)o->history_ttl_ms : 0;
	p->history_meta_ttl_ms = (uint64_t)o->history_meta_ttl_ms;
}

/* Compiles the channel settings of C (channel.*, client.insecure,
 * client.channel_limit, client.subscribe_to_user_personal_channel.*). C
 * was validated by conf_check; nothing of C is referenced afterwards, so C
 * may be freed first. Never fails (allocation failure aborts); a
 * channel_regex that does not compile is logged and makes its namespace
 * refuse every name with 107. */
struct chan_cfg *chan_cfg_new(const struct conf *c);
void chan_cfg_free(struct chan_cfg *cfg);

/* The options for CH, looked up as Centrifugo does: the private prefix is
 * stripped, the name is split at the first namespace boundary, the part
 * before it names the namespace (exact match); no boundary, or nothing
 * before it, means channel.without_namespace. Returns NULL for an unknown
 * namespace (error 102). *REST (when REST is not NULL) is set to the part
 * channel_regex is matched against: what follows the boundary, or the whole
 * of CH without a namespace. The server API needs nothing more than this. */
const struct chan_opts *chan_lookup(const struct chan_cfg *cfg, struct pstr ch, struct pstr *rest);

/* Namespace and name rules shared by client publish, presence, history:
 * unknown namespace 102; with channel_regex, REST must match it, else CH
 * must be ASCII, or 107. Sets *OPTS on CHAN_OK (OPTS may be NULL). No
 * length check: Centrifugo checks channel.max_length on subscribe only. */
int chan_check_name(const struct chan_cfg *cfg, struct pstr ch, const struct chan_opts **opts);

/* A client's subscribe request, as the session knows it. */
struct chan_sub_req {
	struct pstr user;        /* "" for anonymous */
	bool has_token;          /* the request carries a non-empty token */
	bool subscribed;         /* subscribed to CH already, or a subscribe to it is in progress */
	size_t nsubs;            /* channels the connection is subscribed to now */
};

/* The whole client-side subscribe decision (centrifuge core, then
 * Centrifugo's handler), in their order. The caller has answered an empty
 * channel with disconnect 3501 already (given one, this returns 102).
 *   length > channel.max_length (when > 0)                  107
 *   already subscribed (or subscribing)                      105
 *   nsubs >= client.channel_limit (when > 0)                 106
 *   unknown namespace                                        102
 *   channel_regex / ASCII                                    107
 *   private ($) without token                                103
 *   token present                                  CHAN_NEED_TOKEN
 *   user-limited channel listing USER                       CHAN_OK
 *   subscribe proxy / stream proxy (not user-limited)        108
 *   allow_subscribe_for_client && (user || _anonymous),
 *     not user-limited                                      CHAN_OK
 *   client.insecure                                         CHAN_OK
 *   otherwise                                                103
 * CHAN_NEED_TOKEN: the caller verifies the token (token.h); expired is
 * 109, invalid 103, a channel/user/client mismatch disconnect 3500; valid
 * means allowed, with the token's override. *OPTS is set whenever the
 * namespace is known (OPTS may be NULL). */
int chan_check_subscribe(const struct chan_cfg *cfg, struct pstr ch, const struct chan_sub_req *q,
			 const struct chan_opts **opts);

/* Client publish: name rules (chan_check_name), then publish proxy 108,
 * subscribe stream proxy 108, then allowed by allow_publish_for_client &&
 * (user || _anonymous), or allow_publish_for_subscriber && SUBSCRIBED &&
 * (user || _anonymous), or client.insecure; otherwise 103. */
int chan_check_publish(const struct chan_cfg *cfg, struct pstr ch, struct pstr user, bool subscribed,
		       const struct chan_opts **opts);

/* Client presence and presence_stats: name rules, presence off 108, then
 * the allow_presence_* rule (as publish) or client.insecure; else 103. */
int chan_check_presence(const struct chan_cfg *cfg, struct pstr ch, struct pstr user, bool subscribed,
			const struct chan_opts **opts);

/* Client history: name rules, no history (size or ttl 0) 108, then the
 * allow_history_* rule or client.insecure; else 103. */
int chan_check_history(const struct chan_cfg *cfg, struct pstr ch, struct pstr user, bool subscribed,
		       const struct chan_opts **opts);

/* A channel a connecting client asks for in its connect request (the keys
 * of ConnectRequest.subs). CHAN_OK: subscribe it server-side;
 * CHAN_ERR_UNKNOWN_CHANNEL: unknown namespace (Centrifugo disconnects with
 * 3501); CHAN_ERR_PERMISSION_DENIED: skip it silently. Allowed only when not
 * private, no subscribe proxy, a valid name, and either a user-limited
 * channel listing USER (not anonymous) or allow_subscribe_for_client &&
 * (user || _anonymous). client.insecure does not widen this. */
int chan_check_connect_sub(const struct chan_cfg *cfg, struct pstr ch, struct pstr user,
			   const struct chan_opts **opts);

/* What a client asks for in a subscribe request. */
struct chan_ask {
	bool positioned, recoverable, join_leave;
};

/* The options a subscription gets (centrifuge's SubscribeOptions). */
struct chan_sub_opts {
	bool emit_presence;     /* keep this subscriber in presence */
	bool emit_join_leave;   /* publish join/leave when it comes and goes */
	bool push_join_leave;   /* deliver join/leave events to it */
	bool positioning;       /* track the stream position (result `positioned`
				 * is positioning || recovery) */
	bool recovery;          /* recoverable; result `recoverable` */
	enum chan_recovery_mode recovery_mode;
	int64_t history_meta_ttl_ms;
	bool delta_fossil;      /* fossil deltas may be negotiated */
};

/* Computes the options of a subscription to a channel with options O:
 * the namespace's force_* and presence/join_leave flags, each replaced by
 * OV when OV sets it (server API `override`, token `override`; NULL for
 * none); then, for a client subscribe (ASK not NULL), what the client asked
 * for: positioning if allow_positioning or history permission, recovery if
 * allow_recovery or history permission, join/leave pushes if join_leave and
 * presence permission (permissions computed for USER as a subscriber, with
 * client.insecure). Server-side subscriptions pass ASK NULL. */
void chan_grant(const struct chan_cfg *cfg, const struct chan_opts *o, const struct chan_override *ov,
		const struct chan_ask *ask, struct pstr user, struct chan_sub_opts *out);

/* The personal channel of USER for client.subscribe_to_user_personal_channel:
 * "#<user>" or "<ns>:#<user>" with the configured boundaries, as a new
 * string the caller frees; NULL when that feature is off or USER is empty. */
char *chan_personal(const struct chan_cfg *cfg, struct pstr user);
/* client.subscribe_to_user_personal_channel.single_connection */
bool chan_personal_single(const struct chan_cfg *cfg);

/* True when CH starts with channel.private_prefix (and that is not ""). */
bool chan_is_private(const struct chan_cfg *cfg, struct pstr ch);
/* True when CH contains channel.user_boundary (and that is not ""); whether
 * it is user-limited also needs the namespace's allow_user_limited_channels. */
bool chan_has_user_part(const struct chan_cfg *cfg, struct pstr ch);
/* True when USER is one of the users after the last user boundary of CH
 * (split at channel.user_separator; "" separator: the whole part), or CH
 * has no user boundary. Like Centrifugo, "chan#" lists the empty user. */
bool chan_user_allowed(const struct chan_cfg *cfg, struct pstr ch, struct pstr user);

/* ---- channel patterns (gobwas/glob syntax) ----------------------------- */

/* A compiled pattern for the server API `channels` method: `*` and `**`
 * any text, `?` one character, `[abc]` `[a-z]` `[!...]` one character of
 * (not of) a set, `{a,b}` alternatives (nested, with patterns inside),
 * `\` quotes the next character. Characters are UTF-8; matching is linear
 * in the length of the name. */
struct chan_glob;

/* Compiles the LEN bytes of PAT. NULL when it is not a valid pattern (an
 * unclosed `[` or `{`, a `\` at the end, an empty `[]`). */
struct chan_glob *chan_glob_new(const char *pat, size_t len);
bool chan_glob_match(const struct chan_glob *g, struct pstr s);
void chan_glob_free(struct chan_glob *g);

#endif
