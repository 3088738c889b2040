/*
 * redis_conf.c - the settings of one Redis connection block (engine.redis.*,
 * broker.redis.* or presence_manager.redis.*: engine.c says which block
 * serves which side), read the same way by rotord -t, the broker and every
 * worker: the shard addresses (redis_link.h parses them: servers, Sentinel
 * groups from sentinel_address, or Redis Clusters from cluster_address; as
 * in Centrifugo cluster_address wins over both others, sentinel_address
 * over address), the prefix, presence options, and an error naming each
 * key rotor does not serve yet.
 */
#include "config.h"
#include "engine.h"
#include "redis_link.h"
#include "redis_wire.h"
#include "conf.h"
#include "util.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

/* Keys of the connection block that rotor does not serve yet: set, they
 * stop rotord (where data lives and how it is protected are never
 * guessed). */
static const char *const refused_keys[] = {
	"tls.enabled", "sentinel_tls.enabled",
	"history_use_lists", "presence_hash_field_ttl",
};

static bool key_set(const json_t *v)
{
	if (v == NULL || json_is_null(v) || json_is_false(v))
		return false;
	if (json_is_array(v))
		return json_array_size(v) > 0;
	if (json_is_string(v))
		return json_string_length(v) > 0;
	return true;
}

static uint64_t dur_ms(const struct conf *k, const char *key, uint64_t dflt)
{
	const char *s = json_string_value(conf_get(k, key));
	long long ms;
	if (s == NULL || conf_duration_ms(s, &ms) != RT_OK || ms < 0)
		return dflt;
	return (uint64_t)ms;
}

static const char *str_of(const struct conf *k, const char *key)
{
	const char *s = json_string_value(conf_get(k, key));
	return s ? s : "";
}

/* The key SECTION.NAME, in a buffer of the caller's. */
#define KEY(buf, name) (snprintf((buf), sizeof(buf), "%s.%s", section, (name)), (buf))

int redis_conf_load(const struct conf *k, const char *section, struct redis_conf *rc, struct conf_report *rep)
{
	char key[128], err[256], key2[128];
	int bad = 0;

	memset(rc, 0, sizeof(*rc));
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(refused_keys); i++) {
		if (key_set(conf_get(k, KEY(key, refused_keys[i])))) {
			if (rep)
				conf_report_error(rep, "%s: not supported by rotor yet; refused (rotor serves Redis shards "
						  "without TLS, and no list-mode history or hash field TTL)", key);
			bad++;
		}
	}
	const char *prefix = str_of(k, KEY(key, "prefix"));
	if (*prefix == '\0' || strpbrk(prefix, "{}") || strlen(prefix) >= sizeof(rc->prefix)) {
		if (rep)
			conf_report_error(rep, "%s: \"%s\" cannot prefix Redis keys (empty, too long, "
					  "or with a brace)", key, prefix);
		bad++;
	} else {
		strcpy(rc->prefix, prefix);
	}

	struct redis_addr dflt = { 0 };
	dflt.connect_timeout_ms = dur_ms(k, KEY(key, "connect_timeout"), 1000);
	dflt.io_timeout_ms = dur_ms(k, KEY(key, "io_timeout"), 4000);
	json_int_t db = json_integer_value(conf_get(k, KEY(key, "db")));
	dflt.db = (int)db;
	snprintf(dflt.user, sizeof(dflt.user), "%s", str_of(k, KEY(key, "user")));
	snprintf(dflt.password, sizeof(dflt.password), "%s", str_of(k, KEY(key, "password")));
	snprintf(dflt.client_name, sizeof(dflt.client_name), "%s", str_of(k, KEY(key, "client_name")));
	static const struct {
		const char *key;
		size_t off, size;
	} sen_strs[] = {
		{ "sentinel_master_name", offsetof(struct redis_addr, master_name), sizeof(dflt.master_name) },
		{ "sentinel_user", offsetof(struct redis_addr, sentinel_user), sizeof(dflt.sentinel_user) },
		{ "sentinel_password", offsetof(struct redis_addr, sentinel_password),
		  sizeof(dflt.sentinel_password) },
		{ "sentinel_client_name", offsetof(struct redis_addr, sentinel_client_name),
		  sizeof(dflt.sentinel_client_name) },
	};
	for (size_t j = 0; j < ROTOR_ARRAY_LEN(sen_strs); j++) {
		const char *v = str_of(k, KEY(key, sen_strs[j].key));
		if (strlen(v) >= sen_strs[j].size) {
			if (rep)
				conf_report_error(rep, "%s: longer than %zu bytes", key, sen_strs[j].size - 1);
			bad++;
			continue;
		}
		strcpy((char *)&dflt + sen_strs[j].off, v);
	}

	/* cluster_address, when set, wins over the two others, sentinel_address
	 * over address (§7.3) */
	char cl[128], se[128], ad[128];
	bool cluster = key_set(conf_get(k, KEY(cl, "cluster_address")));
	bool sentinel = !cluster && key_set(conf_get(k, KEY(se, "sentinel_address")));
	const char *list = cluster ? cl : sentinel ? se : KEY(ad, "address");
	if (cluster)
		dflt.master_name[0] = '\0';
	if (sentinel && dflt.master_name[0] == '\0') {
		if (rep)
			conf_report_error(rep, "%s: required with %s (the name the sentinels monitor the master by)",
					  KEY(key2, "sentinel_master_name"), se);
		bad++;
	}
	size_t i;
	const json_t *a;
	json_array_foreach(conf_get(k, list), i, a) {
		if (sentinel && dflt.master_name[0] == '\0')
			break;
		const char *s = json_string_value(a);
		if (rc->nshards == REDIS_SHARDS_MAX) {
			if (rep)
				conf_report_error(rep, "%s: more than %d shards", list, REDIS_SHARDS_MAX);
			bad++;
			break;
		}
		int r = -1;
		if (s)
			r = cluster ? redis_addr_parse_cluster(s, &dflt, &rc->shard[rc->nshards], err, sizeof(err))
			    : sentinel ? redis_addr_parse_sentinels(s, &dflt, &rc->shard[rc->nshards], err, sizeof(err))
				       : redis_addr_parse(s, &dflt, &rc->shard[rc->nshards], err, sizeof(err));
		if (r != 0) {
			if (rep)
				conf_report_error(rep, "%s[%zu]: %s", list, i, s ? err : "not a string");
			bad++;
			continue;
		}
		rc->nshards++;
	}
	if (rc->nshards == 0 && bad == 0) {
		if (rep)
			conf_report_error(rep, "%s: no Redis address", list);
		bad++;
	}
	rc->presence_ttl_s = rw_secs(dur_ms(k, KEY(key, "presence_ttl"), 60000));
	if (rc->presence_ttl_s == 0)
		rc->presence_ttl_s = 1;
	rc->user_mapping = json_is_true(conf_get(k, KEY(key, "presence_user_mapping")));
	rc->wait_replicas = json_is_true(conf_get(k, KEY(key, "sentinel_wait_replicas")));
	return bad ? RT_INVAL : RT_OK;
}
#undef KEY
