/*
 * conf.c - builds rotor's effective configuration from the key table
 * (conf_keys.c): defaults, a JSON file in Centrifugo's v6 layout, ROTOR_* and
 * CENTRIFUGO_* environment variables, the command line; then cross-key rules.
 *
 * Model. The effective document c->doc is a nested JSON object that holds
 * every key of the table, always with a value of the key's type in one
 * canonical form: booleans, integers, strings, arrays of strings, and
 * durations as Go duration strings ("1m30s", "500ms"). Every source goes
 * through one door, set_value(), which converts the value to that form
 * (normalize()), runs the key's check function, and stores it only if all of
 * that succeeded; otherwise the old value stays and the report says
 * "key: problem". So the document is valid at all times, errors never stop a
 * pass, and the typed fields of struct conf can be filled from it blindly.
 *
 * Values are read with Centrifugo's leniency (it decodes with mapstructure's
 * weak typing): "8000" is a valid integer, "true" a valid boolean, a number a
 * valid string, a single string a one-element list, and a JSON number a
 * duration in nanoseconds.
 *
 * Namespaces. A key named S.namespaces is a list of {"name": ..., options}
 * whose options are the keys under S.without_namespace; each item is
 * validated and completed with those keys' defaults here, so channel options
 * are described once, in the table.
 */
#include "config.h"
#include "conf.h"
#include "proxy.h"
#include "admin.h"
#include "engine.h"
#include "token.h"
#include "log.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* ---- report ------------------------------------------------------------- */

static void report_add(char ***list, size_t *n, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int len = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	char *s = xmalloc((size_t)(len < 0 ? 0 : len) + 1);
	vsnprintf(s, (size_t)len + 1, fmt, ap);
	*list = xrealloc(*list, (*n + 1) * sizeof **list);
	(*list)[(*n)++] = s;
}

void conf_report_error(struct conf_report *rep, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_add(&rep->errors, &rep->nerrors, fmt, ap);
	va_end(ap);
}

void conf_report_warn(struct conf_report *rep, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	report_add(&rep->warnings, &rep->nwarnings, fmt, ap);
	va_end(ap);
}

void conf_report_free(struct conf_report *rep)
{
	for (size_t i = 0; i < rep->nerrors; i++)
		free(rep->errors[i]);
	for (size_t i = 0; i < rep->nwarnings; i++)
		free(rep->warnings[i]);
	free(rep->errors);
	free(rep->warnings);
	memset(rep, 0, sizeof *rep);
}

/* Prefixes the messages LIST[from..to) with "WHO: ". */
static void prefix_list(char **list, size_t from, size_t to, const char *who)
{
	for (size_t i = from; i < to; i++) {
		char *s = xasprintf("%s: %s", who, list[i]);
		free(list[i]);
		list[i] = s;
	}
}

/* Prefixes the errors from NE on and the warnings from NW on with "WHO: "
 * (the environment variable a value came from). */
static void report_prefix(struct conf_report *rep, size_t ne, size_t nw, const char *who)
{
	prefix_list(rep->errors, ne, rep->nerrors, who);
	prefix_list(rep->warnings, nw, rep->nwarnings, who);
}

/* ---- durations ---------------------------------------------------------- */

#define NS_LIMIT (1ULL << 63) /* Go durations are int64 nanoseconds */

static const struct {
	const char *name;
	unsigned long long ns;
} dur_units[] = {
	{ "ns", 1ULL },
	{ "us", 1000ULL },
	{ "\xc2\xb5s", 1000ULL }, /* U+00B5 micro sign */
	{ "\xce\xbcs", 1000ULL }, /* U+03BC Greek mu */
	{ "ms", 1000000ULL },
	{ "s", 1000000000ULL },
	{ "m", 60000000000ULL },
	{ "h", 3600000000000ULL },
};

#define MS_LIMIT ((long long)((NS_LIMIT - 1) / 1000000ULL)) /* longest Go duration in whole ms */

/* Converts a magnitude in nanoseconds to milliseconds, rounding any
 * sub-millisecond remainder up (away from zero once the sign is applied),
 * but never past MS_LIMIT, so that the result still reads back as a Go
 * duration. */
static long long ns_to_ms(unsigned long long ns, bool neg)
{
	long long ms = (long long)(ns / 1000000ULL + (ns % 1000000ULL != 0));
	if (ms > MS_LIMIT)
		ms = MS_LIMIT;
	return neg ? -ms : ms;
}

/* Parses a Go duration ("300ms", "-1.5h", "2h45m", "0") exactly as Go's
 * time.ParseDuration accepts it, including its int64-nanosecond range, into
 * milliseconds. Returns RT_OK or RT_INVAL. */
static int dur_parse(const char *s, long long *ms)
{
	unsigned long long total = 0;
	bool neg = false;

	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (strcmp(s, "0") == 0) {
		*ms = 0;
		return RT_OK;
	}
	if (*s == '\0')
		return RT_INVAL;
	while (*s) {
		unsigned long long v = 0, f = 0, scale = 1, unit = 0;
		bool vdigits = false, fdigits = false, fover = false;
		size_t ulen;

		for (; *s >= '0' && *s <= '9'; s++, vdigits = true) {
			if (v > NS_LIMIT / 10)
				return RT_INVAL;
			v = v * 10 + (unsigned long long)(*s - '0');
			if (v > NS_LIMIT)
				return RT_INVAL;
		}
		if (*s == '.') {
			for (s++; *s >= '0' && *s <= '9'; s++, fdigits = true) {
				if (fover || f > (NS_LIMIT - 1) / 10 ||
				    f * 10 + (unsigned long long)(*s - '0') > NS_LIMIT) {
					fover = true; /* further digits are below precision */
					continue;
				}
				f = f * 10 + (unsigned long long)(*s - '0');
				scale *= 10;
			}
		}
		if (!vdigits && !fdigits)
			return RT_INVAL;
		ulen = strcspn(s, "0123456789.");
		for (size_t i = 0; i < ROTOR_ARRAY_LEN(dur_units); i++)
			if (strlen(dur_units[i].name) == ulen && strncmp(s, dur_units[i].name, ulen) == 0)
				unit = dur_units[i].ns;
		if (unit == 0)
			return RT_INVAL; /* missing or unknown unit */
		s += ulen;
		if (v > NS_LIMIT / unit)
			return RT_INVAL;
		v *= unit;
		if (f > 0) {
			v += (unsigned long long)((double)f * ((double)unit / (double)scale));
			if (v > NS_LIMIT)
				return RT_INVAL;
		}
		total += v;
		if (total > NS_LIMIT)
			return RT_INVAL;
	}
	if (!neg && total > NS_LIMIT - 1)
		return RT_INVAL;
	*ms = ns_to_ms(total, neg);
	return RT_OK;
}

/* Writes MS the way Go's Duration.String does ("0s", "500ms", "1.5s",
 * "1m30s", "720h0m0s"): the canonical form of durations in the document. */
static void dur_format(long long ms, char *buf, size_t size)
{
	unsigned long long u = ms < 0 ? 0ULL - (unsigned long long)ms : (unsigned long long)ms;
	const char *sign = ms < 0 ? "-" : "";
	char sec[32];

	if (u == 0) {
		snprintf(buf, size, "0s");
		return;
	}
	if (u < 1000) {
		snprintf(buf, size, "%s%llums", sign, u);
		return;
	}
	snprintf(sec, sizeof sec, "%llu.%03llu", u / 1000 % 60, u % 1000);
	char *end = sec + strlen(sec);
	while (end[-1] == '0')
		*--end = '\0';
	if (end[-1] == '.')
		end[-1] = '\0';
	if (u >= 3600000)
		snprintf(buf, size, "%s%lluh%llum%ss", sign, u / 3600000, u / 60000 % 60, sec);
	else if (u >= 60000)
		snprintf(buf, size, "%s%llum%ss", sign, u / 60000, sec);
	else
		snprintf(buf, size, "%s%ss", sign, sec);
}

/* ---- the document ------------------------------------------------------- */

/* Returns the object holding the last segment of dotted NAME in DOC and sets
 * *LEAF to that segment; creates missing objects when CREATE. NULL when a
 * segment is missing (and not CREATE) or not an object. */
static json_t *doc_parent(json_t *doc, const char *name, bool create, const char **leaf)
{
	const char *dot;
	json_t *o = doc;

	while ((dot = strchr(name, '.')) != NULL) {
		char *seg = xstrndup(name, (size_t)(dot - name));
		json_t *next = json_object_get(o, seg);
		if (next == NULL && create) {
			next = json_object();
			json_object_set_new(o, seg, next);
		}
		free(seg);
		if (!json_is_object(next))
			return NULL;
		o = next;
		name = dot + 1;
	}
	*leaf = name;
	return o;
}

/* Stores V (reference stolen) at dotted NAME in DOC. */
static void doc_set(json_t *doc, const char *name, json_t *v)
{
	const char *leaf;
	json_t *parent = doc_parent(doc, name, true, &leaf);
	if (parent == NULL) {
		/* Impossible: the table never puts a key under another key. */
		log_error("conf: %s cannot be stored", name);
		abort();
	}
	json_object_set_new(parent, leaf, v);
}

static json_t *doc_get(const json_t *doc, const char *name)
{
	const char *leaf;
	json_t *parent = doc_parent((json_t *)doc, name, false, &leaf);
	return parent ? json_object_get(parent, leaf) : NULL;
}

bool conf_internal_listener(const struct conf *c, const char **addr, long long *port)
{
	const char *a = c->internal_address[0] ? c->internal_address : c->address;
	long long p;

	if (c->internal_port[0] == '\0' || util_parse_int(c->internal_port, 1, 65535, &p) < 0)
		return false;
	if (p == c->port && strcmp(a, c->address) == 0)
		return false; /* the same listener */
	*addr = a;
	*port = p;
	return true;
}

const json_t *conf_get(const struct conf *c, const char *key)
{
	return c->doc ? doc_get(c->doc, key) : NULL;
}

/* Milliseconds of a canonical duration value (0 if V is not one). */
int conf_duration_ms(const char *s, long long *ms)
{
	return dur_parse(s, ms) == 0 ? RT_OK : RT_INVAL;
}

static long long dur_value(const json_t *v)
{
	long long ms = 0;
	if (json_is_string(v))
		dur_parse(json_string_value(v), &ms);
	return ms;
}

/* True when some table key lies under dotted PATH (PATH is a section). */
static bool is_section(const char *path)
{
	size_t len = strlen(path);
	for (size_t i = 0; i < conf_nkeys; i++)
		if (strncmp(conf_keys[i].name, path, len) == 0 && conf_keys[i].name[len] == '.')
			return true;
	return false;
}

/* For a key S.namespaces, writes "S.without_namespace." (the prefix of the
 * options its items may set) into BUF and returns true. */
static bool item_options(const struct conf_key *k, char *buf, size_t size)
{
	size_t len = strlen(k->name);
	const size_t tail = sizeof "namespaces" - 1;

	if (k->type != CONF_JSON || len <= tail || strcmp(k->name + len - tail, "namespaces") != 0 ||
	    k->name[len - tail - 1] != '.')
		return false;
	snprintf(buf, size, "%.*swithout_namespace", (int)(len - tail), k->name);
	if (!is_section(buf))
		return false;
	snprintf(buf, size, "%.*swithout_namespace.", (int)(len - tail), k->name);
	return true;
}

/* ---- values ------------------------------------------------------------- */

/* JSON text of V for a message, shortened; "<hidden>" for secrets. Caller frees. */
static char *value_text(const struct conf_key *k, const json_t *v)
{
	char *s;
	if (k && (k->flags & CONF_SECRET))
		return xstrdup("<hidden>");
	s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
	if (s == NULL)
		return xstrdup("?");
	if (strlen(s) > 64)
		strcpy(s + 60, "...");
	return s;
}

/* Go's strconv.ParseBool. */
static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const no[] = { "0", "f", "F", "FALSE", "false", "False" };
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(yes); i++) {
		if (strcmp(s, yes[i]) == 0) {
			*out = true;
			return RT_OK;
		}
		if (strcmp(s, no[i]) == 0) {
			*out = false;
			return RT_OK;
		}
	}
	return RT_INVAL;
}

static void bad_value(const struct conf_key *k, const json_t *in, struct conf_report *rep)
{
	char *t = value_text(k, in), lo[32], hi[32];

	switch (k->type) {
	case CONF_BOOL:
		conf_report_error(rep, "%s: must be true or false, got %s", k->name, t);
		break;
	case CONF_INT:
		if (k->max == LLONG_MAX)
			conf_report_error(rep, "%s: must be an integer >= %lld, got %s", k->name, k->min, t);
		else
			conf_report_error(rep, "%s: must be an integer from %lld to %lld, got %s",
					  k->name, k->min, k->max, t);
		break;
	case CONF_DURATION:
		dur_format(k->min, lo, sizeof lo);
		dur_format(k->max, hi, sizeof hi);
		if (k->min == LLONG_MIN && k->max == LLONG_MAX)
			conf_report_error(rep, "%s: must be a duration such as \"25s\", \"1m30s\" or "
					  "\"500ms\", got %s", k->name, t);
		else if (k->max == LLONG_MAX)
			conf_report_error(rep, "%s: must be a duration of at least %s (such as \"25s\", "
					  "\"1m30s\" or \"500ms\"), got %s", k->name, lo, t);
		else
			conf_report_error(rep, "%s: must be a duration from %s to %s (such as \"25s\" "
					  "or \"500ms\"), got %s", k->name, lo, hi, t);
		break;
	case CONF_STRING:
		conf_report_error(rep, "%s: must be a string, got %s", k->name, t);
		break;
	case CONF_STRLIST:
		conf_report_error(rep, "%s: must be an array of strings, got %s", k->name, t);
		break;
	case CONF_JSON:
		conf_report_error(rep, "%s: must be JSON, got %s", k->name, t);
		break;
	}
	free(t);
}

/* Converts IN to K's type in the document's canonical form and checks K's
 * bounds. Returns a new reference, or NULL after reporting
 * "k->name: problem". Does not run K's check function. */
static json_t *normalize(const struct conf_key *k, const json_t *in, struct conf_report *rep)
{
	long long v;
	bool b;
	char buf[64];

	switch (k->type) {
	case CONF_BOOL:
		if (json_is_boolean(in))
			return json_boolean(json_is_true(in));
		if (json_is_integer(in))
			return json_boolean(json_integer_value(in) != 0);
		if (json_is_string(in) && parse_bool(json_string_value(in), &b) == RT_OK)
			return json_boolean(b);
		break;
	case CONF_INT:
		if (json_is_integer(in))
			v = json_integer_value(in);
		else if (json_is_real(in) && fabs(json_real_value(in)) < 9.2e18 &&
			 json_real_value(in) == (double)(long long)json_real_value(in))
			v = (long long)json_real_value(in);
		else if (!json_is_string(in) ||
			 util_parse_int(json_string_value(in), LLONG_MIN, LLONG_MAX, &v) < 0)
			break;
		if (v < k->min || v > k->max)
			break;
		return json_integer(v);
	case CONF_DURATION:
		if (json_is_string(in)) {
			if (dur_parse(json_string_value(in), &v) != RT_OK)
				break;
		} else if (json_is_integer(in) || json_is_real(in)) {
			/* Centrifugo decodes a JSON number into its Duration (int64
			 * nanoseconds) as it is: 25 is 25ns, not 25s. */
			double ns = json_number_value(in);
			if (ns >= 9.2233720368547758e18 || ns <= -9.2233720368547758e18)
				break;
			v = ns_to_ms((unsigned long long)(ns < 0 ? -ns : ns), ns < 0);
			if (ns != 0) {
				char *t = value_text(NULL, in);
				conf_report_warn(rep, "%s: the number %s is read as nanoseconds, as Centrifugo "
						 "does; write a string such as \"25s\"", k->name, t);
				free(t);
			}
		} else {
			break;
		}
		if (v < k->min || v > k->max)
			break;
		dur_format(v, buf, sizeof buf);
		return json_string(buf);
	case CONF_STRING:
		if (json_is_string(in))
			return json_string(json_string_value(in));
		if (json_is_integer(in)) {
			snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(in));
			return json_string(buf);
		}
		break;
	case CONF_STRLIST: {
		size_t i;
		json_t *e;
		if (json_is_string(in))
			return json_pack("[s]", json_string_value(in));
		if (!json_is_array(in))
			break;
		json_array_foreach(in, i, e)
			if (!json_is_string(e))
				goto bad;
		return json_deep_copy(in);
	}
	case CONF_JSON:
		return json_deep_copy(in);
	}
bad:
	bad_value(k, in, rep);
	return NULL;
}

static json_t *validate(const struct conf_key *k, const json_t *in, struct conf_report *rep);
static json_t *key_default(const struct conf_key *k);

/* Rebuilds every object item of ITEMS (an S.namespaces array) from its
 * "name" and the options under OPTS ("S.without_namespace."): each option
 * given is validated as that key under the label "S.namespaces[NAME].OPTION",
 * every other option takes its default, unknown fields are warned about and
 * dropped. Non-object items are left for the key's check function. */
static void normalize_items(const struct conf_key *k, json_t *items, const char *opts,
			    struct conf_report *rep)
{
	size_t i, plen = strlen(opts);
	json_t *item;

	json_array_foreach(items, i, item) {
		const char *name = json_string_value(json_object_get(item, "name"));
		const char *field;
		json_t *fv, *out;
		char *label;

		if (!json_is_object(item))
			continue;
		label = name ? xasprintf("%s[%s]", k->name, name) : xasprintf("%s[%zu]", k->name, i);
		out = json_object();
		if (json_object_get(item, "name"))
			json_object_set(out, "name", json_object_get(item, "name"));
		for (size_t j = 0; j < conf_nkeys; j++) {
			const char *oname = conf_keys[j].name + plen;
			json_t *v = NULL;
			if (strncmp(conf_keys[j].name, opts, plen) != 0)
				continue;
			fv = json_object_get(item, oname);
			if (fv && !json_is_null(fv)) {
				/* The option's key, named as this item's option. */
				struct conf_key opt = conf_keys[j];
				char *olabel = xasprintf("%s.%s", label, oname);
				opt.name = olabel;
				v = validate(&opt, fv, rep);
				free(olabel);
			}
			json_object_set_new(out, oname, v ? v : key_default(&conf_keys[j]));
		}
		json_object_foreach(item, field, fv) {
			if (strcmp(field, "name") != 0 && json_object_get(out, field) == NULL)
				conf_report_warn(rep, "%s.%s: unknown key", label, field);
		}
		json_array_set_new(items, i, out);
		free(label);
	}
}

/* Checks IN as a value of K: type and bounds, the key's check function and,
 * for S.namespaces, every item. Returns the canonical value (a new
 * reference), or NULL having reported every problem found. */
static json_t *validate(const struct conf_key *k, const json_t *in, struct conf_report *rep)
{
	size_t n0 = rep->nerrors;
	char opts[128];
	json_t *v = normalize(k, in, rep);

	if (v == NULL)
		return NULL;
	if (k->check)
		k->check(k, v, rep);
	if (json_is_array(v) && item_options(k, opts, sizeof opts))
		normalize_items(k, v, opts, rep);
	if (rep->nerrors != n0) {
		json_decref(v);
		return NULL;
	}
	return v;
}

/* The default of K, in canonical form. The table's defaults are part of the
 * program: one that does not validate is a bug, and aborts. */
static json_t *key_default(const struct conf_key *k)
{
	struct conf_report rep = { 0 };
	json_error_t e;
	json_t *raw = json_loads(k->def, JSON_DECODE_ANY, &e);
	json_t *v = raw ? validate(k, raw, &rep) : NULL;

	if (v == NULL) {
		log_error("conf: bad default for %s: %s", k->name, rep.nerrors ? rep.errors[0] : e.text);
		abort();
	}
	json_decref(raw);
	conf_report_free(&rep);
	return v;
}

/* The one door into the document: validates IN for K and stores it, or
 * reports and leaves the current value. Returns RT_OK or RT_INVAL. */
static int set_value(struct conf *c, const struct conf_key *k, const json_t *in,
		     struct conf_report *rep)
{
	json_t *v;

	if (json_is_null(in))
		return RT_OK; /* null leaves the value as it is */
	v = validate(k, in, rep);
	if (v == NULL)
		return RT_INVAL;
	doc_set(c->doc, k->name, v);
	return RT_OK;
}

/* Converts command-line or environment TEXT to a JSON value for K: strings
 * for scalar types (normalize() reads them), space-separated words for
 * string lists, and for JSON keys JSON text, or else space-separated names
 * (list keys: [{"name": ...}]) or k1:v1,k2:v2 pairs (map keys). */
static json_t *text_value(const struct conf_key *k, const char *text, struct conf_report *rep)
{
	json_t *v;
	json_error_t e;
	const char *p = text + strspn(text, " \t\r\n");

	if (k->type == CONF_STRLIST) {
		v = json_array();
		while (*p) {
			size_t n = strcspn(p, " \t\r\n");
			char *w = xstrndup(p, n);
			json_array_append_new(v, json_string(w));
			free(w);
			p += n;
			p += strspn(p, " \t\r\n");
		}
		return v;
	}
	if (k->type != CONF_JSON)
		return json_string(text);
	if (*p == '[' || *p == '{' || *p == '"' || (k->def[0] != '[' && k->def[0] != '{')) {
		v = json_loads(text, JSON_DECODE_ANY, &e);
		if (v == NULL)
			conf_report_error(rep, "%s: invalid JSON: %s", k->name, e.text);
		return v;
	}
	v = k->def[0] == '[' ? json_array() : json_object();
	while (*p) {
		size_t n = strcspn(p, k->def[0] == '[' ? " \t\r\n" : ",");
		char *w = xstrndup(p, n);
		if (k->def[0] == '[') {
			json_array_append_new(v, json_pack("{s:s}", "name", w));
		} else {
			char *colon = strchr(w, ':');
			if (colon == NULL) {
				conf_report_error(rep, "%s: must be JSON or key:value pairs separated by "
						  "commas, got \"%s\"", k->name, text);
				free(w);
				json_decref(v);
				return NULL;
			}
			*colon = '\0';
			json_object_set_new(v, w, json_string(colon + 1));
		}
		free(w);
		p += n;
		p += strspn(p, k->def[0] == '[' ? " \t\r\n" : ",");
	}
	return v;
}

static int set_text(struct conf *c, const struct conf_key *k, const char *text,
		    struct conf_report *rep)
{
	json_t *v = text_value(k, text, rep);
	int r = v ? set_value(c, k, v, rep) : RT_INVAL;
	json_decref(v);
	return r;
}

int conf_set(struct conf *c, const char *key, const char *text, struct conf_report *rep)
{
	const struct conf_key *k = conf_key_find(key);
	if (k == NULL) {
		conf_report_error(rep, "%s: unknown key", key);
		return RT_INVAL;
	}
	return set_text(c, k, text, rep);
}

/* ---- defaults and the file ---------------------------------------------- */

/* Points the typed fields of C at the document's values. */
static void fill_fields(struct conf *c)
{
	for (size_t i = 0; i < conf_nkeys; i++) {
		const struct conf_key *k = &conf_keys[i];
		const json_t *v;
		void *f;

		if (k->off == CONF_NO_FIELD)
			continue;
		v = doc_get(c->doc, k->name);
		f = (char *)c + k->off;
		switch (k->type) {
		case CONF_BOOL:
			*(bool *)f = json_is_true(v);
			break;
		case CONF_INT:
			*(long long *)f = json_integer_value(v);
			break;
		case CONF_DURATION:
			*(long long *)f = dur_value(v);
			break;
		case CONF_STRING:
			*(const char **)f = json_string_value(v);
			break;
		case CONF_STRLIST:
		case CONF_JSON:
			*(const json_t **)f = v;
			break;
		}
	}
	enum log_level l = LOG_INFO;
	log_level_parse(c->log_level, &l);
	c->log_level_num = (int)l;
}

void conf_init(struct conf *c)
{
	memset(c, 0, sizeof *c);
	c->doc = json_object();
	for (size_t i = 0; i < conf_nkeys; i++)
		doc_set(c->doc, conf_keys[i].name, key_default(&conf_keys[i]));
	fill_fields(c);
}

void conf_free(struct conf *c)
{
	json_decref(c->doc);
	memset(c, 0, sizeof *c);
}

struct v5_map {
	const char *v5, *v6;
};

/* Centrifugo v5 flat names that differ from "v6 with the section dropped".
 * A v5 name is looked up here first, then through the prefix rules below. */
static const struct v5_map v5_names[] = {
	{ "address", "http_server.address" },
	{ "port", "http_server.port" },
	{ "internal_address", "http_server.internal_address" },
	{ "internal_port", "http_server.internal_port" },
	{ "tls", "http_server.tls.enabled" },
	{ "tls_cert", "http_server.tls.cert_pem" },
	{ "tls_cert_pem", "http_server.tls.cert_pem" },
	{ "tls_key", "http_server.tls.key_pem" },
	{ "tls_key_pem", "http_server.tls.key_pem" },
	{ "tls_root_ca", "http_server.tls.server_ca_pem" },
	{ "tls_client_ca", "http_server.tls.client_ca_pem" },
	{ "tls_external", "http_server.tls_external" },
	{ "http3", "http_server.http3.enabled" },
	{ "log_level", "log.level" },
	{ "log_file", "log.file" },
	{ "engine", "engine.type" },
	{ "redis_use_lists", "engine.redis.history_use_lists" },
	{ "global_presence_ttl", "engine.redis.presence_ttl" },
	{ "global_redis_presence_user_mapping", "engine.redis.presence_user_mapping" },
	{ "nats_url", "broker.nats.url" },
	{ "nats_prefix", "broker.nats.prefix" },
	{ "allowed_origins", "client.allowed_origins" },
	{ "separate_subscription_token_config", "client.subscription_token.enabled" },
	{ "ping_interval", "client.ping_interval" },
	{ "pong_timeout", "client.pong_timeout" },
	{ "allow_anonymous_connect_without_token", "client.allow_anonymous_connect_without_token" },
	{ "disallow_anonymous_connection_tokens", "client.disallow_anonymous_connection_tokens" },
	{ "user_subscribe_to_personal", "client.subscribe_to_user_personal_channel.enabled" },
	{ "user_personal_channel_namespace",
	  "client.subscribe_to_user_personal_channel.personal_channel_namespace" },
	{ "user_personal_single_connection",
	  "client.subscribe_to_user_personal_channel.single_connection" },
	{ "namespaces", "channel.namespaces" },
	{ "global_history_meta_ttl", "channel.history_meta_ttl" },
	{ "rpc_namespaces", "rpc.namespaces" },
	{ "rpc_ping", "rpc.ping.enabled" },
	{ "rpc_ping_method", "rpc.ping.method" },
	{ "api_disable", "http_api.disabled" },
	{ "websocket_disable", "websocket.disabled" },
	{ "grpc_api", "grpc_api.enabled" },
	{ "admin", "admin.enabled" },
	{ "prometheus", "prometheus.enabled" },
	{ "health", "health.enabled" },
	{ "swagger", "swagger.enabled" },
	{ "debug", "debug.enabled" },
	{ "sse", "sse.enabled" },
	{ "http_stream", "http_stream.enabled" },
	{ "sockjs", "sockjs.enabled" },
	{ "webtransport", "webtransport.enabled" },
	{ "uni_websocket", "uni_websocket.enabled" },
	{ "uni_sse", "uni_sse.enabled" },
	{ "uni_http_stream", "uni_http_stream.enabled" },
	{ "uni_grpc", "uni_grpc.enabled" },
	{ "name", "node.name" },
	{ "node_info_metrics_aggregate_interval", "node.info_metrics_aggregate_interval" },
	{ "shutdown_timeout", "shutdown.timeout" },
	{ "usage_stats_disable", "usage_stats.disabled" },
};

/* v5 prefixes that became sections: token_hmac_secret_key ->
 * client.token.hmac_secret_key, client_channel_limit -> client.channel_limit. */
static const struct v5_map v5_prefixes[] = {
	{ "token_", "client.token." },
	{ "subscription_token_", "client.subscription_token." },
	{ "client_", "client." },
	{ "channel_", "channel." },
	{ "rpc_", "rpc." },
	{ "redis_", "engine.redis." },
	{ "nats_", "broker.nats." },
	{ "api_", "http_api." },
	{ "grpc_api_", "grpc_api." },
	{ "websocket_", "websocket." },
	{ "uni_websocket_", "uni_websocket." },
	{ "uni_sse_", "uni_sse." },
	{ "uni_http_stream_", "uni_http_stream." },
	{ "uni_grpc_", "uni_grpc." },
	{ "sse_", "sse." },
	{ "http_stream_", "http_stream." },
	{ "sockjs_", "sockjs." },
	{ "admin_", "admin." },
	{ "prometheus_", "prometheus." },
	{ "health_", "health." },
	{ "graphite_", "graphite." },
	{ "", "channel.without_namespace." }, /* v5 kept channel options at top level */
};

/* The key a top-level Centrifugo v5 NAME means, or NULL. */
static const struct conf_key *v5_key(const char *name)
{
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(v5_names); i++)
		if (strcmp(name, v5_names[i].v5) == 0)
			return conf_key_find(v5_names[i].v6);
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(v5_prefixes); i++) {
		size_t len = strlen(v5_prefixes[i].v5);
		if (strncmp(name, v5_prefixes[i].v5, len) == 0) {
			char *v6 = xasprintf("%s%s", v5_prefixes[i].v6, name + len);
			const struct conf_key *k = conf_key_find(v6);
			free(v6);
			if (k)
				return k;
		}
	}
	return NULL;
}

/* Applies the members of OBJ, which sits at dotted PREFIX (NULL: the top). */
static void apply_object(struct conf *c, const json_t *obj, const char *prefix,
			 struct conf_report *rep)
{
	const char *name;
	json_t *v;

	json_object_foreach((json_t *)obj, name, v) {
		char *path = prefix ? xasprintf("%s.%s", prefix, name) : xstrdup(name);
		const struct conf_key *k = conf_key_find(path);

		if (k) {
			set_value(c, k, v, rep);
		} else if (is_section(path) && json_is_object(v)) {
			apply_object(c, v, path, rep);
		} else if (prefix == NULL && (k = v5_key(name)) != NULL) {
			conf_report_warn(rep, "%s is a Centrifugo v5 name; use %s", name, k->name);
			set_value(c, k, v, rep);
		} else if (is_section(path)) {
			if (!json_is_null(v)) {
				char *t = value_text(NULL, v);
				conf_report_error(rep, "%s: must be an object, got %s", path, t);
				free(t);
			}
		} else {
			conf_report_warn(rep, "%s: unknown key", path);
		}
		free(path);
	}
}

int conf_apply_file(struct conf *c, const char *path, struct conf_report *rep)
{
	size_t n0 = rep->nerrors;
	json_error_t e;
	json_t *root;
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		conf_report_error(rep, "%s: cannot open: %s", path, strerror(errno));
		return RT_INVAL;
	}
	root = json_loadf(f, 0, &e);
	fclose(f);
	if (root == NULL) {
		conf_report_error(rep, "%s:%d:%d: invalid JSON: %s", path, e.line, e.column, e.text);
		return RT_INVAL;
	}
	if (json_is_object(root))
		apply_object(c, root, NULL, rep);
	else
		conf_report_error(rep, "%s: must hold a JSON object", path);
	json_decref(root);
	return rep->nerrors == n0 ? RT_OK : RT_INVAL;
}

/* ---- environment -------------------------------------------------------- */

/* The environment being applied; USED marks variables that named a key. */
struct env {
	char **vars;
	size_t n;
	bool *used;
};

static const char *const env_prefixes[] = { "ROTOR_", "CENTRIFUGO_" }; /* by precedence */

/* The value of variable NAME (NULL if absent), marking it used. */
static const char *env_get(struct env *e, const char *name)
{
	size_t len = strlen(name);
	for (size_t i = 0; i < e->n; i++) {
		if (strncmp(e->vars[i], name, len) == 0 && e->vars[i][len] == '=') {
			e->used[i] = true;
			return e->vars[i] + len + 1;
		}
	}
	return NULL;
}

/* Upper-cases S and turns '.' and '-' into '_' (Centrifugo's env naming). */
static char *env_name(const char *s)
{
	char *r = xstrdup(s);
	for (char *p = r; *p; p++)
		*p = (*p == '.' || *p == '-') ? '_' : (char)toupper((unsigned char)*p);
	return r;
}

/* The first non-empty of ROTOR_<SUFFIX> and CENTRIFUGO_<SUFFIX>; sets *VAR
 * to its name (caller frees). NULL when neither is set: empty is unset. */
static const char *env_pick(struct env *e, const char *suffix, char **var)
{
	const char *val = NULL;
	*var = NULL;
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(env_prefixes); i++) {
		char *name = xasprintf("%s%s", env_prefixes[i], suffix);
		const char *v = env_get(e, name);
		if (val == NULL && v && *v) {
			val = v;
			*var = name;
		} else {
			free(name);
		}
	}
	return val;
}

/* Sets K from TEXT, naming variable VAR in whatever the report gains. */
static void env_set(struct conf *c, const struct conf_key *k, const char *var, const char *text,
		    struct conf_report *rep)
{
	size_t ne = rep->nerrors, nw = rep->nwarnings;
	set_text(c, k, text, rep);
	report_prefix(rep, ne, nw, var);
}

/* Per-item overrides of an S.namespaces key K:
 * <PREFIX>S_NAMESPACES_<NAME>_<OPTION>, NAME as env_name() writes it. */
static void env_items(struct conf *c, struct env *e, const struct conf_key *k, const char *opts,
		      struct conf_report *rep)
{
	json_t *items = json_deep_copy(doc_get(c->doc, k->name));
	char *base = env_name(k->name);
	bool changed = false;
	size_t i, plen = strlen(opts);
	json_t *item;

	json_array_foreach(items, i, item) {
		const char *name = json_string_value(json_object_get(item, "name"));
		char *ename;
		if (name == NULL)
			continue;
		ename = env_name(name);
		for (size_t j = 0; j < conf_nkeys; j++) {
			struct conf_key opt = conf_keys[j];
			char *oname, *suffix, *var;
			const char *text;
			if (strncmp(opt.name, opts, plen) != 0)
				continue;
			oname = env_name(opt.name + plen);
			suffix = xasprintf("%s_%s_%s", base, ename, oname);
			text = env_pick(e, suffix, &var);
			if (text) {
				size_t ne = rep->nerrors, nw = rep->nwarnings;
				char *label = xasprintf("%s[%s].%s", k->name, name, opt.name + plen);
				json_t *raw, *v;
				opt.name = label;
				raw = text_value(&opt, text, rep);
				v = raw ? validate(&opt, raw, rep) : NULL;
				if (v) {
					json_object_set_new(item, conf_keys[j].name + plen, v);
					changed = true;
				}
				report_prefix(rep, ne, nw, var);
				json_decref(raw);
				free(label);
				free(var);
			}
			free(suffix);
			free(oname);
		}
		free(ename);
	}
	if (changed)
		set_value(c, k, items, rep);
	json_decref(items);
	free(base);
}

/* True when NAME (after its prefix, up to '=') starts with the name of a
 * top-level section or key: a variable meant for rotor, not ROTOR_SRCDIR. */
static bool env_is_ours(const char *name)
{
	for (size_t i = 0; i < conf_nkeys; i++) {
		const char *k = conf_keys[i].name;
		size_t len = strcspn(k, ".");
		size_t j;
		for (j = 0; j < len; j++)
			if (name[j] != toupper((unsigned char)k[j]))
				break;
		if (j == len && (name[len] == '_' || name[len] == '='))
			return true;
	}
	return false;
}

/* Applies the unused CENTRIFUGO_<V5NAME> variables of E (Centrifugo v5 named
 * them after its flat keys: CENTRIFUGO_API_KEY) to keys that no v6-named
 * variable set (SET, by key index), with a warning. */
static void env_v5(struct conf *c, struct env *e, const bool *set, struct conf_report *rep)
{
	const size_t plen = sizeof "CENTRIFUGO_" - 1;

	for (size_t i = 0; i < e->n; i++) {
		size_t len = strcspn(e->vars[i], "=");
		const struct conf_key *k;
		char *name, *var, *v6;

		if (e->used[i] || strncmp(e->vars[i], "CENTRIFUGO_", plen) != 0 || len == plen)
			continue;
		name = xstrndup(e->vars[i] + plen, len - plen);
		for (char *p = name; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		k = v5_key(name);
		free(name);
		if (k == NULL)
			continue;
		e->used[i] = true;
		var = xstrndup(e->vars[i], len);
		v6 = env_name(k->name);
		conf_report_warn(rep, "%s is a Centrifugo v5 name; use CENTRIFUGO_%s", var, v6);
		if (!set[k - conf_keys] && e->vars[i][len + 1] != '\0')
			env_set(c, k, var, e->vars[i] + len + 1, rep);
		free(v6);
		free(var);
	}
}

int conf_apply_env(struct conf *c, char **envp, struct conf_report *rep)
{
	size_t n0 = rep->nerrors;
	struct env e = { .vars = envp ? envp : environ };
	bool *set = xcalloc(conf_nkeys, sizeof *set);
	char opts[128];

	while (e.vars[e.n])
		e.n++;
	e.used = xcalloc(e.n, sizeof *e.used);
	for (size_t i = 0; i < conf_nkeys; i++) {
		const struct conf_key *k = &conf_keys[i];
		char *suffix = env_name(k->name), *var;
		const char *text = env_pick(&e, suffix, &var);
		if (text) {
			env_set(c, k, var, text, rep);
			set[i] = true;
			free(var);
		}
		free(suffix);
		if (item_options(k, opts, sizeof opts))
			env_items(c, &e, k, opts, rep);
	}
	env_v5(c, &e, set, rep);
	free(set);
	for (size_t i = 0; i < e.n; i++) {
		for (size_t p = 0; p < ROTOR_ARRAY_LEN(env_prefixes); p++) {
			size_t len = strlen(env_prefixes[p]);
			if (!e.used[i] && strncmp(e.vars[i], env_prefixes[p], len) == 0 &&
			    env_is_ours(e.vars[i] + len)) {
				conf_report_warn(rep, "%.*s: unknown environment variable",
						 (int)strcspn(e.vars[i], "="), e.vars[i]);
			}
		}
	}
	free(e.used);
	return rep->nerrors == n0 ? RT_OK : RT_INVAL;
}

/* ---- cross-key rules ---------------------------------------------------- */

/* Whether NAME is "default" or the name of an item of "proxies". */
static bool proxy_exists(const struct conf *c, const char *name)
{
	size_t i;
	json_t *p;
	if (strcmp(name, "default") == 0)
		return true;
	json_array_foreach(doc_get(c->doc, "proxies"), i, p) {
		const char *s = json_string_value(json_object_get(p, "name"));
		if (s && strcmp(s, name) == 0)
			return true;
	}
	return false;
}

/* Each *_proxy_name option of OPTS (an options object labelled LABEL) must
 * name a proxy. */
static void check_proxy_names(const struct conf *c, const char *label, const json_t *opts,
			      struct conf_report *rep)
{
	const char *field;
	json_t *v;
	json_object_foreach((json_t *)opts, field, v) {
		size_t len = strlen(field);
		const char *s = json_string_value(v);
		if (len > 10 && strcmp(field + len - 10, "proxy_name") == 0 && s && *s &&
		    !proxy_exists(c, s))
			conf_report_error(rep, "%s.%s: no proxy named \"%s\" in proxies", label, field, s);
	}
}

/* Centrifugo's rules for one set of channel options. */
/* A channel_regex must compile as the channel code will compile it. */
static void check_channel_regex(const char *label, const json_t *o, struct conf_report *rep)
{
	const char *re = json_string_value(json_object_get(o, "channel_regex"));
	regex_t compiled;
	if (re == NULL || *re == '\0')
		return;
	char *posix = tok_regex_from_go(re);
	int rc = regcomp(&compiled, posix, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		char why[128];
		regerror(rc, &compiled, why, sizeof(why));
		conf_report_error(rep, "%s.channel_regex: not a regular expression rotor can use (%s)", label, why);
	} else {
		regfree(&compiled);
	}
	free(posix);
}

static void check_channel_options(const struct conf *c, const char *label, const json_t *o,
				  struct conf_report *rep)
{
	check_channel_regex(label, o, rep);
	long long size = json_integer_value(json_object_get(o, "history_size"));
	long long ttl = dur_value(json_object_get(o, "history_ttl"));
	const json_t *meta = json_object_get(o, "history_meta_ttl");
	char *meta_key = xasprintf("%s.history_meta_ttl", label);

	if (dur_value(meta) == 0) {
		meta = doc_get(c->doc, "channel.history_meta_ttl");
		free(meta_key);
		meta_key = xstrdup("channel.history_meta_ttl");
	}
	if ((size != 0) != (ttl != 0))
		conf_report_error(rep, "%s: history_size and history_ttl must be set together", label);
	if (ttl > dur_value(meta))
		conf_report_error(rep, "%s.history_ttl (%s) must not exceed %s (%s)", label,
				  json_string_value(json_object_get(o, "history_ttl")), meta_key,
				  json_string_value(meta));
	free(meta_key);
	if (json_is_true(json_object_get(o, "force_recovery")) && (size == 0 || ttl == 0))
		conf_report_error(rep, "%s.force_recovery needs history_size and history_ttl", label);
	if (json_is_true(json_object_get(o, "subscribe_stream_proxy_enabled")) &&
	    (json_is_true(json_object_get(o, "subscribe_proxy_enabled")) ||
	     json_is_true(json_object_get(o, "publish_proxy_enabled")) ||
	     json_is_true(json_object_get(o, "sub_refresh_proxy_enabled"))))
		conf_report_error(rep, "%s.subscribe_stream_proxy_enabled cannot be combined with the "
				  "subscribe, publish or sub_refresh proxy", label);
	check_proxy_names(c, label, o, rep);
}

/* The channel and RPC rules: per option set, and the personal channel. */
static void check_channels(const struct conf *c, struct conf_report *rep)
{
	const char *pns = json_string_value(
		doc_get(c->doc, "client.subscribe_to_user_personal_channel.personal_channel_namespace"));
	bool personal = json_is_true(doc_get(c->doc, "client.subscribe_to_user_personal_channel.enabled"));
	bool single = json_is_true(
		doc_get(c->doc, "client.subscribe_to_user_personal_channel.single_connection"));
	const json_t *personal_opts = *pns ? NULL : doc_get(c->doc, "channel.without_namespace");
	const char *personal_label = "channel.without_namespace";
	size_t i;
	json_t *ns;

	check_channel_options(c, "channel.without_namespace", doc_get(c->doc, "channel.without_namespace"), rep);
	json_array_foreach(doc_get(c->doc, "channel.namespaces"), i, ns) {
		const char *name = json_string_value(json_object_get(ns, "name"));
		char *label = xasprintf("channel.namespaces[%s]", name);
		check_channel_options(c, label, ns, rep);
		if (strcmp(name, pns) == 0) {
			personal_opts = ns;
			personal_label = "the namespace";
		}
		free(label);
	}
	check_proxy_names(c, "rpc.without_namespace", doc_get(c->doc, "rpc.without_namespace"), rep);
	json_array_foreach(doc_get(c->doc, "rpc.namespaces"), i, ns) {
		char *label = xasprintf("rpc.namespaces[%s]", json_string_value(json_object_get(ns, "name")));
		check_proxy_names(c, label, ns, rep);
		free(label);
	}
	if (!personal)
		return;
	if (personal_opts == NULL)
		conf_report_error(rep, "client.subscribe_to_user_personal_channel.personal_channel_namespace: "
				  "no namespace \"%s\" in channel.namespaces", pns);
	else if (single && !json_is_true(json_object_get(personal_opts, "presence")))
		conf_report_error(rep, "client.subscribe_to_user_personal_channel.single_connection needs "
				  "presence in %s%s%s", personal_label, *pns ? " " : "", pns);
}

/* Builds the token keys of SECTION as connect and subscribe will, so that a
 * bad PEM, regex or claim name stops rotord at start and on reload. */
static void check_tokens(const struct conf *c, const char *section, struct conf_report *rep)
{
	struct tok_keys k;
	if (tok_keys_from_conf(&k, c, section, rep) >= 0)
		tok_keys_free(&k);
}

static void check_ping_pong(const struct conf *c, struct conf_report *rep)
{
	const json_t *ping = doc_get(c->doc, "client.ping_interval");
	const json_t *pong = doc_get(c->doc, "client.pong_timeout");
	long long ping_ms = dur_value(ping), pong_ms = dur_value(pong);

	if (ping_ms >= 0 && pong_ms >= 0 && pong_ms >= ping_ms)
		conf_report_error(rep, "client.pong_timeout (%s) must be less than client.ping_interval (%s); "
				  "a negative value disables either", json_string_value(pong), json_string_value(ping));
}

/* Reports a CONF_IGNORED key NAME (PREFIX, if not NULL, in front) that is
 * set: a warning, or for a CONF_REFUSED one an error, since running
 * without it would be less safe or keep data elsewhere than the user said. */
static void report_unsupported(const struct conf_key *k, const char *prefix, const char *name,
			       struct conf_report *rep)
{
	if (k->flags & CONF_REFUSED)
		conf_report_error(rep, "%s%s: not supported by rotor yet; refused (TLS, engines and proxies are "
				  "never ignored)", prefix ? prefix : "", name);
	else
		conf_report_warn(rep, "%s%s: not supported by rotor yet; ignored", prefix ? prefix : "", name);
}

/* Reports each CONF_IGNORED key, or namespace option, that differs from its
 * default (report_unsupported). */
static void report_unsupported_keys(const struct conf *c, struct conf_report *rep)
{
	char opts[128], where[192];

	engine_check(c, rep); /* the engine, broker and presence sections; errors name the key */
	for (size_t i = 0; i < conf_nkeys; i++) {
		const struct conf_key *k = &conf_keys[i];
		if (k->flags & CONF_IGNORED) {
			json_t *def = key_default(k);
			if (!json_equal(def, doc_get(c->doc, k->name)))
				report_unsupported(k, NULL, k->name, rep);
			json_decref(def);
		}
		if (item_options(k, opts, sizeof opts)) {
			size_t j, plen = strlen(opts);
			json_t *item;
			json_array_foreach(doc_get(c->doc, k->name), j, item) {
				for (size_t o = 0; o < conf_nkeys; o++) {
					const struct conf_key *ok = &conf_keys[o];
					json_t *def;
					if (!(ok->flags & CONF_IGNORED) || strncmp(ok->name, opts, plen) != 0)
						continue;
					def = key_default(ok);
					snprintf(where, sizeof where, "%s[%s].", k->name,
						 json_string_value(json_object_get(item, "name")));
					if (!json_equal(def, json_object_get(item, ok->name + plen)))
						report_unsupported(ok, where, ok->name + plen, rep);
					json_decref(def);
				}
			}
		}
	}
}

int conf_check(struct conf *c, struct conf_report *rep)
{
	const json_t *w = doc_get(c->doc, "workers");

	check_ping_pong(c, rep);
	check_tokens(c, "client.token", rep);
	if (json_is_true(doc_get(c->doc, "client.subscription_token.enabled")))
		check_tokens(c, "client.subscription_token", rep);
	check_channels(c, rep);
	admin_conf_check(c, rep);
	proxy_conf_check(c, rep);
	if (json_integer_value(w) == 0) {
		const struct conf_key *k = conf_key_find("workers");
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		if (n < 1)
			n = 1;
		if (n > k->max)
			n = (long)k->max;
		doc_set(c->doc, "workers", json_integer(n));
	}
	report_unsupported_keys(c, rep);
	fill_fields(c);
	return rep->nerrors == 0 ? RT_OK : RT_INVAL;
}

/* ---- dump, reload, diff ------------------------------------------------- */

char *conf_dump(const struct conf *c, bool redact)
{
	json_t *doc = redact ? json_deep_copy(c->doc) : json_incref(c->doc);
	char *s;

	for (size_t i = 0; redact && i < conf_nkeys; i++) {
		const struct conf_key *k = &conf_keys[i];
		const json_t *v = doc_get(doc, k->name);
		bool empty = json_is_string(v) ? *json_string_value(v) == '\0'
			   : json_is_array(v) ? json_array_size(v) == 0
			   : json_is_object(v) ? json_object_size(v) == 0 : false;
		if ((k->flags & CONF_SECRET) && !empty)
			doc_set(doc, k->name, json_string("<hidden>"));
	}
	s = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
	json_decref(doc);
	if (s == NULL) {
		log_error("conf: out of memory dumping the configuration");
		abort();
	}
	return s;
}

int conf_load_dump(struct conf *c, const char *text, size_t len, struct conf_report *rep)
{
	json_error_t e;
	json_t *root = json_loadb(text, len, 0, &e);

	conf_init(c);
	if (root == NULL) {
		conf_report_error(rep, "configuration dump:%d:%d: invalid JSON: %s", e.line, e.column, e.text);
		return RT_INVAL;
	}
	if (json_is_object(root))
		apply_object(c, root, NULL, rep);
	else
		conf_report_error(rep, "configuration dump: must hold a JSON object");
	json_decref(root);
	return conf_check(c, rep);
}

void conf_diff(const struct conf *a, const struct conf *b,
	       void (*fn)(const struct conf_key *k, const json_t *old, const json_t *new_, void *arg),
	       void *arg)
{
	for (size_t i = 0; i < conf_nkeys; i++) {
		const json_t *x = doc_get(a->doc, conf_keys[i].name);
		const json_t *y = doc_get(b->doc, conf_keys[i].name);
		if (!json_equal(x, y))
			fn(&conf_keys[i], x, y, arg);
	}
}
