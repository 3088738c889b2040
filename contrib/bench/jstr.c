/*
 * jstr.c - JSON string escaping and unescaping (jstr.h).
 *
 * Both run once per transport frame, not per message, and write into
 * buffers the caller reuses: nothing here allocates.
 */
#include "jstr.h"

static const char hex[] = "0123456789abcdef";

size_t jstr_escape(char *out, const uint8_t *s, size_t n)
{
	char *o = out;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == '"' || c == '\\') {
			*o++ = '\\';
			*o++ = (char)c;
		} else if (c == '\n') {
			*o++ = '\\';
			*o++ = 'n';
		} else if (c < 0x20) {
			*o++ = '\\';
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		} else {
			*o++ = (char)c;
		}
	}
	return (size_t)(o - out);
}

/* Four hex digits at p (below e) into *v. Returns 0 or -1. */
static int hex4(const uint8_t *p, const uint8_t *e, unsigned *v)
{
	if (e - p < 4)
		return -1;
	unsigned r = 0;
	for (int i = 0; i < 4; i++) {
		uint8_t c = p[i];
		r <<= 4;
		if (c >= '0' && c <= '9')
			r |= (unsigned)(c - '0');
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			r |= (unsigned)((c | 0x20) - 'a' + 10);
		else
			return -1;
	}
	*v = r;
	return 0;
}

static uint8_t *put_utf8(uint8_t *o, unsigned cp)
{
	if (cp < 0x80) {
		*o++ = (uint8_t)cp;
	} else if (cp < 0x800) {
		*o++ = (uint8_t)(0xc0 | cp >> 6);
		*o++ = (uint8_t)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (uint8_t)(0xe0 | cp >> 12);
		*o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (uint8_t)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (uint8_t)(0xf0 | cp >> 18);
		*o++ = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (uint8_t)(0x80 | (cp & 0x3f));
	}
	return o;
}

size_t jstr_unescape(const uint8_t *p, const uint8_t *e, uint8_t *out, const uint8_t **end)
{
	uint8_t *o = out;
	while (p < e) {
		uint8_t c = *p++;
		if (c == '"') {
			*end = p;
			return (size_t)(o - out);
		}
		if (c != '\\') {
			*o++ = c;
			continue;
		}
		if (p == e)
			return (size_t)-1;
		c = *p++;
		switch (c) {
		case '"': case '\\': case '/': *o++ = c; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			unsigned cp, lo;
			if (hex4(p, e, &cp) < 0)
				return (size_t)-1;
			p += 4;
			/* A pair is 12 escaped bytes for 4 decoded; one lone
			 * surrogate 6 for 3 (U+FFFD): out never overtakes p. */
			if (cp >= 0xd800 && cp < 0xdc00 && e - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
			    hex4(p + 2, e, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
				p += 6;
			} else if (cp >= 0xd800 && cp < 0xe000) {
				cp = 0xfffd;
			}
			o = put_utf8(o, cp);
			break;
		}
		default:
			return (size_t)-1;
		}
	}
	return (size_t)-1;
}
