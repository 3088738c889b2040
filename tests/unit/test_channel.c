/*
 * test_channel.c - channel names, namespaces, options and the client-side
 * permission rules (src/channel.c), each built from a real config through
 * conf.c; and the glob patterns of the `channels` API method.
 */
#include "config.h"
#include "channel.h"
#include "conf.h"
#include "log.h"
#include "util.h"
#include "../tap.h"

#include <stdlib.h>
#include <unistd.h>

#define S(s) pstr_c(s)
#define NOUSER ((struct pstr){ "", 0 })

/* A chan_cfg from JSON config text (validated as rotord would). */
/* Builds a chan_cfg from JSON; with CHECKED the config must pass
 * conf_check (the normal path), without it conf_check's verdict is ignored
 * (to test the channel module's own defences). */
static struct chan_cfg *cfg_build(const char *json, bool checked, struct conf_report *out)
{
	struct conf c;
	struct conf_report rep = { 0 };
	char path[] = "/tmp/test_channel_XXXXXX";
	int fd = mkstemp(path);
	static char *no_env[] = { NULL };
	struct chan_cfg *cfg;

	if (fd < 0 || write(fd, json, strlen(json)) != (ssize_t)strlen(json))
		abort();
	close(fd);
	conf_init(&c);
	conf_apply_file(&c, path, &rep);
	unlink(path);
	conf_apply_env(&c, no_env, &rep);
	if (conf_check(&c, &rep) != RT_OK && checked) {
		for (size_t i = 0; i < rep.nerrors; i++)
			printf("# config error: %s\n", rep.errors[i]);
		fflush(stdout);
		abort();
	}
	if (out)
		*out = rep;
	else
		conf_report_free(&rep);
	cfg = chan_cfg_new(&c);
	conf_free(&c); /* the chan_cfg must not point into it */
	return cfg;
}

static struct chan_cfg *cfg_from(const char *json)
{
	return cfg_build(json, true, NULL);
}

/* A chan_cfg whose namespaces enable a proxy: rotord refuses such a config
 * (conf.c: proxies are never ignored), and channel.c still fails closed on
 * one (108) should it ever get there; built without conf_check's verdict. */
static struct chan_cfg *cfg_proxied(const char *json)
{
	return cfg_build(json, false, NULL);
}

static bool span_is(struct pstr s, const char *want)
{
	return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

/* ---- lookup ------------------------------------------------------------- */

static void test_lookup(void)
{
	struct chan_cfg *cfg = cfg_from(
		"{\"channel\":{\"namespaces\":[{\"name\":\"chat\",\"presence\":true},"
		"{\"name\":\"zz\"},{\"name\":\"ab\"},{\"name\":\"chat2\"}]}}");
	const struct chan_opts *o;
	struct pstr rest;

	o = chan_lookup(cfg, S("news"), &rest);
	ok(o && o->name[0] == '\0' && !o->presence, "no boundary: without_namespace");
	ok(span_is(rest, "news"), "rest is the whole channel");
	o = chan_lookup(cfg, S("chat:room"), &rest);
	ok(o && strcmp(o->name, "chat") == 0 && o->presence, "chat:room is in namespace chat");
	ok(span_is(rest, "room"), "rest after the boundary");
	o = chan_lookup(cfg, S("$chat:room"), &rest);
	ok(o && strcmp(o->name, "chat") == 0, "$chat:room: the private prefix is stripped first");
	ok(span_is(rest, "room"), "$chat:room rest");
	o = chan_lookup(cfg, S("chat:a:b"), &rest);
	ok(o && strcmp(o->name, "chat") == 0 && span_is(rest, "a:b"), "split at the first boundary");
	ok(chan_lookup(cfg, S("nope:x"), &rest) == NULL, "unknown namespace: NULL");
	ok(chan_lookup(cfg, S("cha:x"), NULL) == NULL, "a prefix of a namespace name is not it");
	o = chan_lookup(cfg, S("chat2:x"), NULL);
	ok(o && strcmp(o->name, "chat2") == 0, "chat2 found next to chat");
	o = chan_lookup(cfg, S("ab:x"), NULL);
	ok(o && strcmp(o->name, "ab") == 0, "first of the sorted names");
	o = chan_lookup(cfg, S("zz:x"), NULL);
	ok(o && strcmp(o->name, "zz") == 0, "last of the sorted names");
	o = chan_lookup(cfg, S(":x"), &rest);
	ok(o && o->name[0] == '\0' && span_is(rest, "x"), ":x: empty namespace means without_namespace");
	o = chan_lookup(cfg, S("$news"), &rest);
	ok(o && o->name[0] == '\0' && span_is(rest, "$news"), "$news: rest keeps the prefix, as Centrifugo");
	o = chan_lookup(cfg, S("Chat:x"), NULL);
	ok(o == NULL, "namespace names match exactly (case)");
	o = chan_lookup(cfg, S("$$chat:x"), NULL);
	ok(o == NULL, "only one private prefix is stripped");
	chan_cfg_free(cfg);

	/* Configurable boundaries. */
	cfg = cfg_from("{\"channel\":{\"namespace_boundary\":\"::\",\"private_prefix\":\"\","
		       "\"namespaces\":[{\"name\":\"chat\"}]}}");
	o = chan_lookup(cfg, S("chat::x"), &rest);
	ok(o && strcmp(o->name, "chat") == 0 && span_is(rest, "x"), "two-byte namespace boundary");
	o = chan_lookup(cfg, S("chat:x"), &rest);
	ok(o && o->name[0] == '\0', "':' alone is no boundary any more");
	o = chan_lookup(cfg, S("$chat::x"), NULL);
	ok(o == NULL, "empty private prefix: '$' is part of the namespace name");
	ok(!chan_is_private(cfg, S("$chat::x")), "empty private prefix: nothing is private");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"channel\":{\"namespace_boundary\":\"\",\"namespaces\":[{\"name\":\"chat\"}]}}");
	o = chan_lookup(cfg, S("chat:x"), &rest);
	ok(o && o->name[0] == '\0' && span_is(rest, "chat:x"), "empty boundary: no namespaces used");
	chan_cfg_free(cfg);
}

/* ---- options ------------------------------------------------------------ */

static void test_options(void)
{
	struct chan_cfg *cfg = cfg_proxied(
		"{\"channel\":{\"history_meta_ttl\":\"100h\",\"without_namespace\":{\"history_size\":10,"
		"\"history_ttl\":\"5m\",\"force_recovery\":true,\"force_recovery_mode\":\"cache\","
		"\"allowed_delta_types\":[\"fossil\"],\"delta_publish\":true},"
		"\"namespaces\":[{\"name\":\"mm\",\"history_size\":1,\"history_ttl\":\"1s\","
		"\"history_meta_ttl\":\"2h\",\"subscribe_proxy_enabled\":true}]}}");
	const struct chan_opts *o = chan_lookup(cfg, S("x"), NULL);

	is_int(o->history_size, 10, "history_size");
	is_int(o->history_ttl_ms, 300000, "history_ttl in ms");
	is_int(o->history_meta_ttl_ms, 100 * 3600000LL, "history_meta_ttl 0 takes channel.history_meta_ttl");
	ok(o->force_recovery && o->force_recovery_mode == CHAN_RECOVERY_CACHE, "force_recovery, cache mode");
	ok(o->delta_fossil && o->delta_publish, "fossil deltas, delta_publish");
	ok(chan_has_history(o), "history on");
	o = chan_lookup(cfg, S("mm:x"), NULL);
	is_int(o->history_meta_ttl_ms, 2 * 3600000LL, "a namespace's own history_meta_ttl");
	ok(o->subscribe_proxy && !o->publish_proxy, "proxy flags");
	ok(o->force_recovery_mode == CHAN_RECOVERY_STREAM && !o->delta_fossil, "defaults in a namespace");
	chan_cfg_free(cfg);

	cfg = cfg_from("{}");
	o = chan_lookup(cfg, S("x"), NULL);
	ok(!chan_has_history(o) && !o->presence && !o->regex && o->channel_regex[0] == '\0',
	   "defaults: nothing on");
	chan_cfg_free(cfg);
}

/* ---- names -------------------------------------------------------------- */

static void test_names(void)
{
	struct chan_cfg *cfg = cfg_from(
		"{\"channel\":{\"max_length\":12,\"namespaces\":["
		"{\"name\":\"re\",\"channel_regex\":\"^[a-z]+$\",\"allow_subscribe_for_client\":true},"
		"{\"name\":\"num\",\"channel_regex\":\"^\\\\d+$\"},"
		"{\"name\":\"grp\",\"channel_regex\":\"^(?P<id>[0-9]+)-(?:x|y)$\"}],"
		"\"without_namespace\":{\"allow_subscribe_for_client\":true}}}");
	const struct chan_opts *o = NULL;
	struct chan_sub_req q = { .user = S("42") };

	is_int(chan_check_name(cfg, S("news"), &o), CHAN_OK, "ASCII name");
	ok(o && o->name[0] == '\0', "opts set");
	is_int(chan_check_name(cfg, S("n\xc3\xa9ws"), NULL), CHAN_ERR_BAD_REQUEST, "non-ASCII name: 107");
	is_int(chan_check_name(cfg, S("n\x7f"), NULL), CHAN_OK, "DEL is ASCII");
	is_int(chan_check_name(cfg, S("nope:x"), NULL), CHAN_ERR_UNKNOWN_CHANNEL, "unknown namespace 102");
	is_int(chan_check_name(cfg, S("re:abc"), NULL), CHAN_OK, "regex matches the rest");
	is_int(chan_check_name(cfg, S("re:ab1"), NULL), CHAN_ERR_BAD_REQUEST, "regex does not match: 107");
	is_int(chan_check_name(cfg, S("$re:abc"), NULL), CHAN_OK, "regex sees the rest after $ns:");
	is_int(chan_check_name(cfg, S("re:\xc3\xa9"), NULL), CHAN_ERR_BAD_REQUEST, "regex instead of ASCII");
	is_int(chan_check_name(cfg, S("num:123"), NULL), CHAN_OK, "\\d is translated");
	is_int(chan_check_name(cfg, S("num:12a"), NULL), CHAN_ERR_BAD_REQUEST, "\\d refuses a letter");
	is_int(chan_check_name(cfg, S("grp:42-y"), NULL), CHAN_OK, "(?P<name>) and (?:) are translated");
	is_int(chan_check_name(cfg, S("grp:42-z"), NULL), CHAN_ERR_BAD_REQUEST, "... and still match strictly");
	{
		/* conf_check refuses a regex that does not compile, naming it;
		 * should one get through anyway, its namespace refuses every name. */
		struct conf_report rep;
		struct chan_cfg *bad = cfg_build("{\"channel\":{\"namespaces\":["
						 "{\"name\":\"bad\",\"channel_regex\":\"^(?=x)\"}]}}", false, &rep);
		ok(rep.nerrors == 1 && strstr(rep.errors[0], "channel.namespaces[bad].channel_regex") != NULL,
		   "conf_check names the channel_regex that does not compile");
		conf_report_free(&rep);
		is_int(chan_check_name(bad, S("bad:x"), NULL), CHAN_ERR_BAD_REQUEST,
		       "a regex that does not compile refuses every name");
		chan_cfg_free(bad);
	}

	/* Length: subscribe only. */
	is_int(chan_check_subscribe(cfg, S("abcdefghijkl"), &q, NULL), CHAN_OK, "12 bytes: at the limit");
	is_int(chan_check_subscribe(cfg, S("abcdefghijklm"), &q, NULL), CHAN_ERR_BAD_REQUEST,
	       "13 bytes: over channel.max_length, 107");
	is_int(chan_check_subscribe(cfg, S("nope:abcdefghijklm"), &q, NULL), CHAN_ERR_BAD_REQUEST,
	       "length is checked before the namespace");
	is_int(chan_check_name(cfg, S("abcdefghijklm"), NULL), CHAN_OK, "publish/presence/history: no length check");
	is_int(chan_check_subscribe(cfg, S("re:ab1"), &q, NULL), CHAN_ERR_BAD_REQUEST, "subscribe: regex 107");
	is_int(chan_check_subscribe(cfg, S("\xc3\xa9"), &q, NULL), CHAN_ERR_BAD_REQUEST, "subscribe: ASCII 107");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"channel\":{\"max_length\":0,\"without_namespace\":{\"allow_subscribe_for_client\":true}}}");
	{
		char big[2000];

		memset(big, 'a', sizeof(big));
		is_int(chan_check_subscribe(cfg, (struct pstr){ big, sizeof(big) }, &q, NULL), CHAN_OK,
		       "max_length 0: no limit");
	}
	chan_cfg_free(cfg);
}

/* ---- user-limited channels --------------------------------------------- */

static void test_user_limited(void)
{
	struct chan_cfg *cfg = cfg_from("{}");

	ok(chan_has_user_part(cfg, S("dialog#42,43")), "dialog#42,43 has a user part");
	ok(!chan_has_user_part(cfg, S("dialog")), "dialog has none");
	ok(chan_user_allowed(cfg, S("dialog#42,43"), S("42")), "42 listed");
	ok(chan_user_allowed(cfg, S("dialog#42,43"), S("43")), "43 listed");
	ok(!chan_user_allowed(cfg, S("dialog#42,43"), S("4")), "4 is not 42");
	ok(!chan_user_allowed(cfg, S("dialog#42,43"), S("42,43")), "the whole list is no user");
	ok(!chan_user_allowed(cfg, S("dialog#42,43"), NOUSER), "anonymous not listed");
	ok(chan_user_allowed(cfg, S("personal:user#42"), S("42")), "personal:user#42");
	ok(chan_user_allowed(cfg, S("a#1#42"), S("42")) && !chan_user_allowed(cfg, S("a#1#42"), S("1")),
	   "users follow the last boundary");
	ok(chan_user_allowed(cfg, S("chan#"), NOUSER), "chan# lists the empty user (as Centrifugo)");
	ok(chan_user_allowed(cfg, S("chan"), S("7")), "no boundary: everyone");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"channel\":{\"user_boundary\":\"@@\",\"user_separator\":\";\"}}");
	ok(chan_user_allowed(cfg, S("d@@1;2"), S("2")), "configured boundary and separator");
	ok(!chan_has_user_part(cfg, S("d#1,2")) && chan_user_allowed(cfg, S("d#1,2"), S("3")),
	   "'#' means nothing then");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"channel\":{\"user_separator\":\"\"}}");
	ok(chan_user_allowed(cfg, S("d#1,2"), S("1,2")) && !chan_user_allowed(cfg, S("d#1,2"), S("1")),
	   "empty separator: the whole part is the one user");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"channel\":{\"user_boundary\":\"\"}}");
	ok(!chan_has_user_part(cfg, S("d#1")) && chan_user_allowed(cfg, S("d#1"), S("2")),
	   "empty user boundary: never user-limited");
	chan_cfg_free(cfg);
}

/* ---- subscribe ---------------------------------------------------------- */

static int sub(struct chan_cfg *cfg, const char *ch, const char *user, bool token)
{
	struct chan_sub_req q = { .user = S(user), .has_token = token };

	return chan_check_subscribe(cfg, S(ch), &q, NULL);
}

static void test_subscribe(void)
{
	struct chan_cfg *cfg = cfg_proxied(
		"{\"client\":{\"channel_limit\":2},\"channel\":{\"namespaces\":["
		"{\"name\":\"open\",\"allow_subscribe_for_client\":true,\"allow_user_limited_channels\":true},"
		"{\"name\":\"anon\",\"allow_subscribe_for_client\":true,\"allow_subscribe_for_anonymous\":true},"
		"{\"name\":\"anononly\",\"allow_subscribe_for_anonymous\":true},"
		"{\"name\":\"ul\",\"allow_user_limited_channels\":true},"
		"{\"name\":\"px\",\"subscribe_proxy_enabled\":true,\"allow_subscribe_for_client\":true,"
		"\"allow_user_limited_channels\":true},"
		"{\"name\":\"spx\",\"subscribe_stream_proxy_enabled\":true}]}}");
	struct chan_sub_req q = { .user = S("42") };
	const struct chan_opts *o = NULL;

	is_int(sub(cfg, "", "42", false), CHAN_ERR_UNKNOWN_CHANNEL, "empty channel: 102");
	q.nsubs = 2;
	is_int(chan_check_subscribe(cfg, S("open:x"), &q, NULL), CHAN_ERR_LIMIT_EXCEEDED,
	       "nsubs at client.channel_limit: 106");
	q.nsubs = 1;
	is_int(chan_check_subscribe(cfg, S("open:x"), &q, &o), CHAN_OK, "under the limit");
	ok(o && strcmp(o->name, "open") == 0, "opts set when allowed");
	q.subscribed = true;
	is_int(chan_check_subscribe(cfg, S("open:x"), &q, NULL), CHAN_ERR_ALREADY_SUBSCRIBED,
	       "already subscribed: 105");
	q.nsubs = 2;
	is_int(chan_check_subscribe(cfg, S("open:x"), &q, NULL), CHAN_ERR_ALREADY_SUBSCRIBED,
	       "already subscribed comes before the limit (centrifuge core)");
	q = (struct chan_sub_req){ .user = S("42"), .subscribed = true };
	is_int(chan_check_subscribe(cfg, S("nope:x"), &q, NULL), CHAN_ERR_ALREADY_SUBSCRIBED,
	       "already subscribed comes before the namespace");

	is_int(sub(cfg, "nope:x", "42", false), CHAN_ERR_UNKNOWN_CHANNEL, "unknown namespace: 102");
	is_int(sub(cfg, "nope:x", "42", true), CHAN_ERR_UNKNOWN_CHANNEL, "... even with a token");

	/* Private channels. */
	is_int(sub(cfg, "$open:x", "42", false), CHAN_ERR_PERMISSION_DENIED,
	       "$ without token: 103 even with allow_subscribe_for_client");
	is_int(sub(cfg, "$open:x", "42", true), CHAN_NEED_TOKEN, "$ with token: verify it");
	is_int(sub(cfg, "$x", "", true), CHAN_NEED_TOKEN, "$ without namespace, anonymous, token");

	/* Token. */
	is_int(sub(cfg, "x", "42", true), CHAN_NEED_TOKEN, "a token decides on any channel");
	is_int(sub(cfg, "px:x", "42", true), CHAN_NEED_TOKEN, "a token comes before the proxy");

	/* User-limited. */
	is_int(sub(cfg, "ul:d#42,43", "42", false), CHAN_OK, "user-limited, listed: allowed");
	is_int(sub(cfg, "ul:d#42,43", "43", false), CHAN_OK, "second listed user");
	is_int(sub(cfg, "ul:d#42,43", "44", false), CHAN_ERR_PERMISSION_DENIED, "not listed: 103");
	is_int(sub(cfg, "ul:d#42,43", "", false), CHAN_ERR_PERMISSION_DENIED, "anonymous not listed: 103");
	is_int(sub(cfg, "open:d#43", "42", false), CHAN_ERR_PERMISSION_DENIED,
	       "not listed: allow_subscribe_for_client does not apply to user-limited channels");
	is_int(sub(cfg, "anon:d#43", "42", false), CHAN_OK,
	       "'#' in a namespace without allow_user_limited_channels is an ordinary name");
	is_int(sub(cfg, "$ul:d#42", "42", false), CHAN_ERR_PERMISSION_DENIED, "private beats user-limited");

	/* Proxies: the subscribe proxy decides (the caller asks it); a
	 * subscribe stream proxy is refused by rotord -t, and 108 here. */
	is_int(sub(cfg, "px:x", "42", false), CHAN_PROXY, "subscribe proxy: the proxy decides");
	is_int(sub(cfg, "px:d#42", "42", false), CHAN_OK, "user-limited listed wins over the proxy");
	is_int(sub(cfg, "px:d#43", "42", false), CHAN_ERR_PERMISSION_DENIED,
	       "user-limited not listed skips the proxy");
	is_int(sub(cfg, "spx:x", "42", false), CHAN_ERR_NOT_AVAILABLE, "subscribe stream proxy: 108");

	/* allow_subscribe_for_client / _anonymous. */
	is_int(sub(cfg, "open:x", "42", false), CHAN_OK, "allow_subscribe_for_client, user");
	is_int(sub(cfg, "open:x", "", false), CHAN_ERR_PERMISSION_DENIED, "... anonymous: 103");
	is_int(sub(cfg, "anon:x", "", false), CHAN_OK, "... with allow_subscribe_for_anonymous");
	is_int(sub(cfg, "anononly:x", "", false), CHAN_ERR_PERMISSION_DENIED,
	       "allow_subscribe_for_anonymous alone allows nothing");
	is_int(sub(cfg, "x", "42", false), CHAN_ERR_PERMISSION_DENIED, "default: 103");
	chan_cfg_free(cfg);

	/* client.insecure */
	cfg = cfg_proxied("{\"client\":{\"insecure\":true},\"channel\":{\"namespaces\":["
		       "{\"name\":\"ul\",\"allow_user_limited_channels\":true},"
		       "{\"name\":\"px\",\"subscribe_proxy_enabled\":true}]}}");
	is_int(sub(cfg, "x", "", false), CHAN_OK, "insecure: anonymous anywhere");
	is_int(sub(cfg, "ul:d#43", "42", false), CHAN_OK, "insecure: user-limited not listed");
	is_int(sub(cfg, "$x", "", false), CHAN_ERR_PERMISSION_DENIED, "insecure: $ still needs a token");
	is_int(sub(cfg, "px:x", "", false), CHAN_PROXY, "insecure: the proxy still decides");
	is_int(sub(cfg, "nope:x", "", false), CHAN_ERR_UNKNOWN_CHANNEL, "insecure: unknown namespace 102");
	is_int(sub(cfg, "\xc3\xa9", "", false), CHAN_ERR_BAD_REQUEST, "insecure: names still checked");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"client\":{\"channel_limit\":0}}");
	q = (struct chan_sub_req){ .user = S("1"), .nsubs = 100000 };
	is_int(chan_check_subscribe(cfg, S("x"), &q, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "channel_limit 0: no limit");
	chan_cfg_free(cfg);
}

/* ---- publish, presence, history ---------------------------------------- */

static void test_publish(void)
{
	struct chan_cfg *cfg = cfg_proxied(
		"{\"channel\":{\"namespaces\":["
		"{\"name\":\"cc\",\"allow_publish_for_client\":true},"
		"{\"name\":\"cca\",\"allow_publish_for_client\":true,\"allow_publish_for_anonymous\":true},"
		"{\"name\":\"ss\",\"allow_publish_for_subscriber\":true},"
		"{\"name\":\"ssa\",\"allow_publish_for_subscriber\":true,\"allow_publish_for_anonymous\":true},"
		"{\"name\":\"px\",\"publish_proxy_enabled\":true,\"allow_publish_for_client\":true},"
		"{\"name\":\"spx\",\"subscribe_stream_proxy_enabled\":true,\"allow_publish_for_client\":true},"
		"{\"name\":\"re\",\"channel_regex\":\"^a$\",\"allow_publish_for_client\":true}]}}");
	const struct chan_opts *o = NULL;

	is_int(chan_check_publish(cfg, S("nope:x"), S("1"), false, NULL), CHAN_ERR_UNKNOWN_CHANNEL, "publish 102");
	is_int(chan_check_publish(cfg, S("re:b"), S("1"), false, NULL), CHAN_ERR_BAD_REQUEST, "publish 107");
	is_int(chan_check_publish(cfg, S("cc:x"), S("1"), false, &o), CHAN_OK, "allow_publish_for_client");
	ok(o && strcmp(o->name, "cc") == 0, "publish opts set");
	is_int(chan_check_publish(cfg, S("cc:x"), NOUSER, false, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "... not anonymous");
	is_int(chan_check_publish(cfg, S("cca:x"), NOUSER, false, NULL), CHAN_OK, "... with _anonymous");
	is_int(chan_check_publish(cfg, S("ss:x"), S("1"), false, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "allow_publish_for_subscriber, not subscribed: 103");
	is_int(chan_check_publish(cfg, S("ss:x"), S("1"), true, NULL), CHAN_OK, "... subscribed");
	is_int(chan_check_publish(cfg, S("ss:x"), NOUSER, true, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "... subscribed anonymous: 103");
	is_int(chan_check_publish(cfg, S("ssa:x"), NOUSER, true, NULL), CHAN_OK, "... with _anonymous");
	is_int(chan_check_publish(cfg, S("px:x"), S("1"), true, NULL), CHAN_PROXY, "publish proxy: the proxy decides");
	is_int(chan_check_publish(cfg, S("spx:x"), S("1"), true, NULL), CHAN_ERR_NOT_AVAILABLE,
	       "subscribe stream proxy: publish 108");
	is_int(chan_check_publish(cfg, S("x"), S("1"), true, NULL), CHAN_ERR_PERMISSION_DENIED, "default 103");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"client\":{\"insecure\":true}}");
	is_int(chan_check_publish(cfg, S("x"), NOUSER, false, NULL), CHAN_OK, "insecure: publish anywhere");
	is_int(chan_check_publish(cfg, S("\xff"), NOUSER, false, NULL), CHAN_ERR_BAD_REQUEST,
	       "insecure: names still checked");
	chan_cfg_free(cfg);
}

static void test_presence_history(void)
{
	struct chan_cfg *cfg = cfg_from(
		"{\"channel\":{\"namespaces\":["
		"{\"name\":\"off\",\"allow_presence_for_client\":true,\"allow_history_for_client\":true},"
		"{\"name\":\"cc\",\"presence\":true,\"history_size\":5,\"history_ttl\":\"60s\","
		"\"allow_presence_for_client\":true,\"allow_history_for_client\":true},"
		"{\"name\":\"ss\",\"presence\":true,\"history_size\":5,\"history_ttl\":\"60s\","
		"\"allow_presence_for_subscriber\":true,\"allow_history_for_subscriber\":true},"
		"{\"name\":\"aa\",\"presence\":true,\"history_size\":5,\"history_ttl\":\"60s\","
		"\"allow_presence_for_client\":true,\"allow_presence_for_anonymous\":true,"
		"\"allow_history_for_subscriber\":true,\"allow_history_for_anonymous\":true},"
		"{\"name\":\"nn\",\"presence\":true,\"history_size\":5,\"history_ttl\":\"60s\"}]}}");

	is_int(chan_check_presence(cfg, S("nope:x"), S("1"), true, NULL), CHAN_ERR_UNKNOWN_CHANNEL, "presence 102");
	is_int(chan_check_presence(cfg, S("cc:\xc3\xa9"), S("1"), true, NULL), CHAN_ERR_BAD_REQUEST, "presence 107");
	is_int(chan_check_presence(cfg, S("off:x"), S("1"), true, NULL), CHAN_ERR_NOT_AVAILABLE,
	       "presence off: 108 whatever the permissions");
	is_int(chan_check_presence(cfg, S("cc:x"), S("1"), false, NULL), CHAN_OK, "allow_presence_for_client");
	is_int(chan_check_presence(cfg, S("cc:x"), NOUSER, false, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "... anonymous 103");
	is_int(chan_check_presence(cfg, S("ss:x"), S("1"), false, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "allow_presence_for_subscriber, not subscribed: 103");
	is_int(chan_check_presence(cfg, S("ss:x"), S("1"), true, NULL), CHAN_OK, "... subscribed");
	is_int(chan_check_presence(cfg, S("aa:x"), NOUSER, false, NULL), CHAN_OK, "... anonymous with _anonymous");
	is_int(chan_check_presence(cfg, S("nn:x"), S("1"), true, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "no allow_presence_*: 103");

	is_int(chan_check_history(cfg, S("nope:x"), S("1"), true, NULL), CHAN_ERR_UNKNOWN_CHANNEL, "history 102");
	is_int(chan_check_history(cfg, S("off:x"), S("1"), true, NULL), CHAN_ERR_NOT_AVAILABLE,
	       "no history: 108 whatever the permissions");
	is_int(chan_check_history(cfg, S("cc:x"), S("1"), false, NULL), CHAN_OK, "allow_history_for_client");
	is_int(chan_check_history(cfg, S("cc:x"), NOUSER, false, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "... anonymous 103");
	is_int(chan_check_history(cfg, S("ss:x"), S("1"), false, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "allow_history_for_subscriber, not subscribed: 103");
	is_int(chan_check_history(cfg, S("ss:x"), S("1"), true, NULL), CHAN_OK, "... subscribed");
	is_int(chan_check_history(cfg, S("aa:x"), NOUSER, true, NULL), CHAN_OK, "... anonymous subscribed");
	is_int(chan_check_history(cfg, S("aa:x"), NOUSER, false, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "... anonymous not subscribed 103");
	is_int(chan_check_history(cfg, S("nn:x"), S("1"), true, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "no allow_history_*: 103");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"client\":{\"insecure\":true},\"channel\":{\"namespaces\":["
		       "{\"name\":\"nn\",\"presence\":true,\"history_size\":5,\"history_ttl\":\"60s\"}]}}");
	is_int(chan_check_presence(cfg, S("nn:x"), NOUSER, false, NULL), CHAN_OK, "insecure: presence");
	is_int(chan_check_history(cfg, S("nn:x"), NOUSER, false, NULL), CHAN_OK, "insecure: history");
	is_int(chan_check_presence(cfg, S("x"), NOUSER, false, NULL), CHAN_ERR_NOT_AVAILABLE,
	       "insecure: presence off still 108");
	is_int(chan_check_history(cfg, S("x"), NOUSER, false, NULL), CHAN_ERR_NOT_AVAILABLE,
	       "insecure: no history still 108");
	chan_cfg_free(cfg);
}

static void test_connect_sub(void)
{
	struct chan_cfg *cfg = cfg_proxied(
		"{\"client\":{\"insecure\":true},\"channel\":{\"namespaces\":["
		"{\"name\":\"open\",\"allow_subscribe_for_client\":true},"
		"{\"name\":\"anon\",\"allow_subscribe_for_client\":true,\"allow_subscribe_for_anonymous\":true},"
		"{\"name\":\"ul\",\"allow_user_limited_channels\":true},"
		"{\"name\":\"px\",\"subscribe_proxy_enabled\":true,\"allow_subscribe_for_client\":true}]}}");

	is_int(chan_check_connect_sub(cfg, S("nope:x"), S("1"), NULL), CHAN_ERR_UNKNOWN_CHANNEL,
	       "connect subs: unknown namespace");
	is_int(chan_check_connect_sub(cfg, S("open:x"), S("1"), NULL), CHAN_OK, "connect subs: allowed for client");
	is_int(chan_check_connect_sub(cfg, S("open:x"), NOUSER, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "connect subs: anonymous skipped (insecure does not widen)");
	is_int(chan_check_connect_sub(cfg, S("anon:x"), NOUSER, NULL), CHAN_OK, "connect subs: anonymous allowed");
	is_int(chan_check_connect_sub(cfg, S("$open:x"), S("1"), NULL), CHAN_ERR_PERMISSION_DENIED,
	       "connect subs: private skipped");
	is_int(chan_check_connect_sub(cfg, S("px:x"), S("1"), NULL), CHAN_ERR_PERMISSION_DENIED,
	       "connect subs: proxied skipped");
	is_int(chan_check_connect_sub(cfg, S("ul:d#1"), S("1"), NULL), CHAN_OK, "connect subs: user-limited listed");
	is_int(chan_check_connect_sub(cfg, S("ul:d#"), NOUSER, NULL), CHAN_ERR_PERMISSION_DENIED,
	       "connect subs: user-limited needs a user");
	is_int(chan_check_connect_sub(cfg, S("x"), S("1"), NULL), CHAN_ERR_PERMISSION_DENIED,
	       "connect subs: default skipped");
	chan_cfg_free(cfg);
}

/* ---- grants ------------------------------------------------------------- */

static void test_grant(void)
{
	struct chan_cfg *cfg = cfg_from(
		"{\"channel\":{\"namespaces\":["
		"{\"name\":\"ff\",\"presence\":true,\"join_leave\":true,\"force_push_join_leave\":true,"
		"\"history_size\":5,\"history_ttl\":\"60s\",\"force_positioning\":true,\"force_recovery\":true,"
		"\"force_recovery_mode\":\"cache\",\"allowed_delta_types\":[\"fossil\"]},"
		"{\"name\":\"allow\",\"history_size\":5,\"history_ttl\":\"60s\",\"allow_positioning\":true,"
		"\"allow_recovery\":true,\"join_leave\":true},"
		"{\"name\":\"perm\",\"history_size\":5,\"history_ttl\":\"60s\",\"join_leave\":true,"
		"\"allow_history_for_subscriber\":true,\"allow_presence_for_subscriber\":true},"
		"{\"name\":\"pres\",\"allow_presence_for_client\":true},"
		"{\"name\":\"none\",\"history_size\":5,\"history_ttl\":\"60s\",\"join_leave\":true}]}}");
	struct chan_sub_opts g;
	struct chan_ask all = { true, true, true };
	struct chan_override ov = CHAN_OVERRIDE_NONE;

	chan_grant(cfg, chan_lookup(cfg, S("ff:x"), NULL), NULL, NULL, S("1"), &g);
	ok(g.emit_presence && g.emit_join_leave && g.push_join_leave && g.positioning && g.recovery,
	   "server-side: the namespace's force_* flags");
	ok(g.recovery_mode == CHAN_RECOVERY_CACHE && g.delta_fossil && g.history_meta_ttl_ms == 720 * 3600000LL,
	   "recovery mode, deltas, meta ttl carried");
	ov.presence = 0;
	ov.join_leave = 0;
	ov.force_push_join_leave = 0;
	ov.force_recovery = 0;
	ov.force_positioning = 0;
	chan_grant(cfg, chan_lookup(cfg, S("ff:x"), NULL), &ov, NULL, S("1"), &g);
	ok(!g.emit_presence && !g.emit_join_leave && !g.push_join_leave && !g.positioning && !g.recovery,
	   "overrides switch every flag off");
	ov = CHAN_OVERRIDE_NONE;
	ov.presence = 1;
	ov.force_recovery = 1;
	chan_grant(cfg, chan_lookup(cfg, S("none:x"), NULL), &ov, NULL, S("1"), &g);
	ok(g.emit_presence && g.recovery && !g.positioning && !g.push_join_leave && g.emit_join_leave,
	   "overrides switch flags on; unset ones keep the namespace's");

	chan_grant(cfg, chan_lookup(cfg, S("none:x"), NULL), NULL, &all, S("1"), &g);
	ok(!g.positioning && !g.recovery && !g.push_join_leave, "asked without any permission: nothing");
	chan_grant(cfg, chan_lookup(cfg, S("allow:x"), NULL), NULL, &all, S("1"), &g);
	ok(g.positioning && g.recovery, "allow_positioning / allow_recovery grant what is asked");
	ok(!g.push_join_leave, "join_leave push needs presence permission");
	chan_grant(cfg, chan_lookup(cfg, S("allow:x"), NULL), NULL, &(struct chan_ask){ 0 }, S("1"), &g);
	ok(!g.positioning && !g.recovery, "not asked: not granted");
	chan_grant(cfg, chan_lookup(cfg, S("perm:x"), NULL), NULL, &all, S("1"), &g);
	ok(g.positioning && g.recovery && g.push_join_leave,
	   "history / presence permission as a subscriber grants them");
	chan_grant(cfg, chan_lookup(cfg, S("perm:x"), NULL), NULL, &all, NOUSER, &g);
	ok(!g.positioning && !g.recovery && !g.push_join_leave, "... not for anonymous");
	chan_grant(cfg, chan_lookup(cfg, S("pres:x"), NULL), NULL, &all, S("1"), &g);
	ok(!g.push_join_leave, "join_leave push needs the namespace's join_leave");
	ov = CHAN_OVERRIDE_NONE;
	ov.join_leave = 1;
	chan_grant(cfg, chan_lookup(cfg, S("pres:x"), NULL), &ov, &all, S("1"), &g);
	ok(g.emit_join_leave && !g.push_join_leave, "... the namespace's, not the override's");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"client\":{\"insecure\":true},\"channel\":{\"without_namespace\":{\"join_leave\":true}}}");
	chan_grant(cfg, chan_lookup(cfg, S("x"), NULL), NULL, &all, NOUSER, &g);
	ok(g.positioning && g.recovery && g.push_join_leave, "insecure grants what is asked");
	chan_cfg_free(cfg);
}

/* ---- personal channel --------------------------------------------------- */

static void test_personal(void)
{
	struct chan_cfg *cfg = cfg_from("{}");
	char *s;

	ok(chan_personal(cfg, S("42")) == NULL, "personal channel off: NULL");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"client\":{\"subscribe_to_user_personal_channel\":{\"enabled\":true}}}");
	s = chan_personal(cfg, S("42"));
	is_str(s, "#42", "personal channel without namespace");
	free(s);
	ok(chan_personal(cfg, NOUSER) == NULL, "anonymous: none");
	ok(!chan_personal_single(cfg), "single_connection off");
	chan_cfg_free(cfg);

	cfg = cfg_from("{\"client\":{\"subscribe_to_user_personal_channel\":{\"enabled\":true,"
		       "\"personal_channel_namespace\":\"personal\",\"single_connection\":true}},"
		       "\"channel\":{\"user_boundary\":\"@\",\"namespace_boundary\":\"/\","
		       "\"namespaces\":[{\"name\":\"personal\",\"presence\":true}]}}");
	s = chan_personal(cfg, S("42"));
	is_str(s, "personal/@42", "personal channel in a namespace, configured boundaries");
	ok(chan_lookup(cfg, S(s), NULL) != NULL, "... which resolves to that namespace");
	free(s);
	ok(chan_personal_single(cfg), "single_connection on");
	chan_cfg_free(cfg);
}

/* ---- globs -------------------------------------------------------------- */

static bool gm(const char *pat, const char *s)
{
	struct chan_glob *g = chan_glob_new(pat, strlen(pat));
	bool r;

	if (g == NULL) {
		printf("# pattern %s did not compile\n", pat);
		return false;
	}
	r = chan_glob_match(g, S(s));
	chan_glob_free(g);
	return r;
}

static bool gbad(const char *pat)
{
	struct chan_glob *g = chan_glob_new(pat, strlen(pat));

	chan_glob_free(g);
	return g == NULL;
}

static void test_glob(void)
{
	ok(gm("news", "news") && !gm("news", "news1") && !gm("news", "new"), "literal, whole name");
	ok(gm("*", "") && gm("*", "anything:at#all"), "* matches everything");
	ok(gm("chat:*", "chat:1") && gm("chat:*", "chat:") && !gm("chat:*", "chats:1"), "prefix*");
	ok(gm("*:1", "a:1") && !gm("*:1", "a:12"), "*suffix");
	ok(gm("a*b*c", "abc") && gm("a*b*c", "axxbyyc") && !gm("a*b*c", "axxbyy"), "several *");
	ok(gm("a**c", "abbc"), "** as *");
	ok(gm("?", "x") && !gm("?", "") && !gm("?", "xy"), "? one character");
	ok(gm("?", "\xc3\xa9") && gm("a?c", "a\xe2\x82\xac" "c"), "? one UTF-8 character");
	ok(gm("[abc]", "b") && !gm("[abc]", "d"), "[abc]");
	ok(gm("[a-c]x", "bx") && !gm("[a-c]x", "dx"), "[a-c]");
	ok(gm("[!a-c]", "d") && !gm("[!a-c]", "a"), "[!a-c]");
	ok(gm("[!abc]", "d") && !gm("[!abc]", "c"), "[!abc]");
	ok(gm("[\\]]", "]") && gm("[a\\-]", "-"), "\\ inside a list");
	ok(gm("{chat,news}:*", "news:1") && gm("{chat,news}:*", "chat:2") && !gm("{chat,news}:*", "x:1"),
	   "{a,b}");
	ok(gm("{a,b{c,d}}", "bd") && gm("{a,b{c,d}}", "a") && !gm("{a,b{c,d}}", "b"), "nested alternatives");
	ok(gm("x{,y}", "x") && gm("x{,y}", "xy"), "empty alternative");
	ok(gm("{a*,*b}", "axx") && gm("{a*,*b}", "xxb") && !gm("{a*,*b}", "xxa"), "patterns inside alternatives");
	ok(gm("a,b}", "a,b}"), "',' and '}' outside braces are literal");
	ok(gm("\\*", "*") && !gm("\\*", "x"), "\\ quotes");
	ok(gm("\xc3\xa9*", "\xc3\xa9t\xc3\xa9"), "UTF-8 literals");
	ok(gbad("[abc") && gbad("[") && gbad("{a,b") && gbad("a\\") && gbad("[]") && gbad("[!]"),
	   "unclosed [ or {, trailing \\, empty set: not compiled");
	{
		/* Linear time: a pattern that makes backtracking matchers explode. */
		char name[4001];
		memset(name, 'a', 4000);
		name[4000] = '\0';
		ok(!gm("*a*a*a*a*a*a*a*a*a*a*a*a*b", name), "many stars against a long name, quickly");
	}
}

int main(void)
{
	log_set_level(LOG_NONE);
	test_lookup();
	test_options();
	test_names();
	test_user_limited();
	test_subscribe();
	test_publish();
	test_presence_history();
	test_connect_sub();
	test_grant();
	test_personal();
	test_glob();
	return tap_done();
}
