/*
 * query.c - query strings as Go's url.Query().Get reads them (transport.h):
 * pairs split on '&', key and value form-decoded (%XX, '+' is a space), a
 * pair whose key or value does not decode skipped, the first match wins.
 * Pure (no worker, no config), so that fuzz targets link it alone.
 */
#include "config.h"
#include "transport.h"

#include <ctype.h>
#include <string.h>

static int hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Form-decodes S[0..N) (%XX, '+' is a space) into OUT (when not NULL).
 * Returns false when it does not decode (a bad escape). */
static bool form_decode(const char *s, size_t n, struct jw *out)
{
	for (size_t i = 0; i < n;) {
		int ch = (unsigned char)s[i];

		if (ch == '%') {
			int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval(s[i + 2]) : -1;

			if (hi < 0 || lo < 0)
				return false;
			ch = hi << 4 | lo;
			i += 3;
		} else {
			if (ch == '+')
				ch = ' ';
			i++;
		}
		if (out) {
			char c = (char)ch;
			jw_raw(out, &c, 1);
		}
	}
	return true;
}

/* Finds the first pair of QUERY whose key decodes to KEY and whose value
 * decodes; sets *V and *VN to the raw value. */
static bool query_find(const char *query, const char *key, const char **v, size_t *vn)
{
	const char *s = query;
	struct jw k = { 0 };
	bool found = false;

	while (*s && !found) {
		size_t n = strcspn(s, "&"), kn = strcspn(s, "=");

		if (kn > n)
			kn = n;
		*v = s + (kn < n ? kn + 1 : n);
		*vn = kn < n ? n - kn - 1 : 0;
		k.len = 0;
		if (form_decode(s, kn, &k) && form_decode(*v, *vn, NULL) && k.len == strlen(key) &&
		    memcmp(k.buf, key, k.len) == 0)
			found = true;
		s += n;
		if (*s == '&')
			s++;
	}
	jw_free(&k);
	return found;
}

bool transport_query_get(const char *query, const char *key, struct jw *out)
{
	const char *v;
	size_t vn;

	if (!query_find(query, key, &v, &vn))
		return false;
	form_decode(v, vn, out);
	return true;
}

bool transport_query_is(const char *query, const char *key, const char *val)
{
	struct jw out = { 0 };
	bool eq = transport_query_get(query, key, &out) && out.len == strlen(val) &&
		  (out.len == 0 || memcmp(out.buf, val, out.len) == 0); /* an empty jw has no buf */

	jw_free(&out);
	return eq;
}
