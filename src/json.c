/*
 * json.c - the validating JSON scanner that keeps raw byte spans, and the
 * JSON writer rotor's replies are built with.
 *
 * Scanner model: one pass over the text with an explicit state machine (no
 * recursion, so nesting costs no C stack). Every value becomes a token in
 * DOC->t, depth-first; while a container is open its token's `next` field
 * holds the index of the enclosing container, and is set to "one past my
 * subtree" when the container closes. A bit per nesting level remembers
 * whether that level is an object or an array, which bounds the depth at
 * JS_DEPTH_MAX. The same machine, minus the tokens, is js_valid.
 *
 * Invariants js_scan establishes, which the accessors rely on:
 *   - the text is RFC 8259 JSON, exactly one value, and valid UTF-8;
 *   - string tokens span their quotes, their escapes are well formed, and
 *     `escaped` is set iff a backslash occurs between the quotes;
 *   - number tokens match -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
 * so unescaping and integer parsing need no further error handling.
 *
 * Allocation: the token array is the only memory js_scan touches. It is
 * reused from one js_scan to the next on the same doc and grown with
 * xrealloc, so a caller that keeps one doc per connection or per worker
 * allocates only while its largest document so far grows.
 *
 * Writer: strings are escaped exactly like the reference server's JSON
 * writer (centrifugal/protocol encode_writer.go, easyjson's jwriter with
 * HTML escaping on): \" \\ \n \r \t, every other byte below 0x20 and the
 * characters < > & as \u00XX with lowercase hex, U+2028/U+2029 as \u2028/
 * \u2029, and each byte of invalid UTF-8 as \ufffd. (Go's encoding/json
 * since 1.22 writes \b and \f; the protocol's writer does not, and it is
 * the one clients see.)
 */
#include "config.h"
#include "json.h"
#include "utf8.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

/* ---- scanner ------------------------------------------------------------ */

/* What a byte means inside a string: 0 nothing special, 1 the closing quote,
 * 2 a backslash, 3 a control character (refused), 4 the start of a
 * multi-byte UTF-8 sequence (or garbage). */
static const unsigned char str_class[256] = {
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
	0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
	4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

static inline bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* P is at an opening quote. Returns the byte after the closing quote, or
 * NULL when the string is invalid. Sets *ESC when it holds an escape. */
static inline const unsigned char *scan_string(const unsigned char *p, const unsigned char *end,
					       bool *esc)
{
	p++;
	for (;;) {
		while (p < end && str_class[*p] == 0)
			p++;
		if (p == end)
			return NULL;
		switch (str_class[*p]) {
		case 1:
			return p + 1;
		case 2:
			*esc = true;
			if (end - p < 2)
				return NULL;
			switch (p[1]) {
			case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
				p += 2;
				break;
			case 'u':
				if (end - p < 6 || utf8_hexval(p[2]) < 0 || utf8_hexval(p[3]) < 0 ||
				    utf8_hexval(p[4]) < 0 || utf8_hexval(p[5]) < 0)
					return NULL;
				p += 6;
				break;
			default:
				return NULL;
			}
			break;
		case 3:
			return NULL;
		default: {
			size_t l = utf8_seq(p, end);
			if (l == 0)
				return NULL;
			p += l;
		}
		}
	}
}

/* P is at '-' or a digit. Returns the byte after the number, or NULL. */
static inline const unsigned char *scan_number(const unsigned char *p, const unsigned char *end)
{
	if (*p == '-')
		p++;
	if (p == end)
		return NULL;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (++p < end && is_digit(*p))
			;
	else
		return NULL;
	if (p < end && *p == '.') {
		if (++p == end || !is_digit(*p))
			return NULL;
		while (++p < end && is_digit(*p))
			;
	}
	if (p < end && (*p == 'e' || *p == 'E')) {
		if (++p < end && (*p == '+' || *p == '-'))
			p++;
		if (p == end || !is_digit(*p))
			return NULL;
		while (++p < end && is_digit(*p))
			;
	}
	return p;
}

/* Appends a token to D, growing the array; NONE when MAX tokens exist. */
static inline uint32_t new_tok(struct js_doc *d, uint32_t max, uint8_t type, size_t start)
{
	if (max && d->ntok >= max)
		return NONE;
	if (d->ntok == d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 64;
		if (max && cap > max)
			cap = max;
		d->t = xrealloc(d->t, (size_t)cap * sizeof(*d->t));
		d->cap = cap;
	}
	uint32_t i = d->ntok++;
	struct js_tok *t = &d->t[i];
	t->type = type;
	t->escaped = 0;
	t->start = (uint32_t)start;
	t->len = 0;
	t->size = 0;
	t->next = i + 1;
	return i;
}

/*
 * The machine behind js_scan (REC: tokens into D) and js_valid (D unused).
 * Returns RT_OK or RT_INVAL. Forced inline so each caller gets a copy with
 * REC constant-folded.
 */
static inline __attribute__((always_inline)) int
scan(struct js_doc *d, const char *text, size_t n, uint32_t max, int limit, const bool rec)
{
	const unsigned char *s = (const unsigned char *)text, *p = s, *end = s + n;
	uint64_t is_obj[JS_DEPTH_MAX / 64];
	int depth = 0;
	uint32_t cur = NONE, i;
	bool esc;

	p = skip_ws(p, end);
value:
	if (p == end)
		return RT_INVAL;
	switch (*p) {
	case '{':
	case '[': {
		bool obj = *p == '{';
		if (depth >= limit)
			return RT_INVAL;
		if (rec) {
			if ((i = new_tok(d, max, obj ? JS_OBJECT : JS_ARRAY, (size_t)(p - s))) == NONE)
				return RT_INVAL;
			d->t[i].next = cur;     /* the parent, until this one closes */
			cur = i;
		}
		if (obj)
			is_obj[depth / 64] |= (uint64_t)1 << (depth % 64);
		else
			is_obj[depth / 64] &= ~((uint64_t)1 << (depth % 64));
		depth++;
		p = skip_ws(p + 1, end);
		if (p < end && *p == (obj ? '}' : ']')) {
			p++;
			goto close;
		}
		if (obj)
			goto key;
		if (rec)
			d->t[cur].size++;
		goto value;
	}
	case '"':
		esc = false;
		if (rec && (i = new_tok(d, max, JS_STRING, (size_t)(p - s))) == NONE)
			return RT_INVAL;
		{
			const unsigned char *q = scan_string(p, end, &esc);
			if (q == NULL)
				return RT_INVAL;
			if (rec) {
				d->t[i].escaped = esc;
				d->t[i].len = (uint32_t)(q - p);
			}
			p = q;
		}
		goto after;
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9': {
		const unsigned char *q = scan_number(p, end);
		if (q == NULL)
			return RT_INVAL;
		if (rec) {
			if ((i = new_tok(d, max, JS_NUMBER, (size_t)(p - s))) == NONE)
				return RT_INVAL;
			d->t[i].len = (uint32_t)(q - p);
		}
		p = q;
		goto after;
	}
	case 't':
		if (end - p < 4 || memcmp(p, "true", 4) != 0)
			return RT_INVAL;
		i = JS_TRUE;
		goto literal;
	case 'f':
		if (end - p < 5 || memcmp(p, "false", 5) != 0)
			return RT_INVAL;
		i = JS_FALSE;
		goto literal;
	case 'n':
		if (end - p < 4 || memcmp(p, "null", 4) != 0)
			return RT_INVAL;
		i = JS_NULL;
		goto literal;
	default:
		return RT_INVAL;
	}

literal: {
		uint32_t len = i == JS_FALSE ? 5 : 4;
		if (rec) {
			if ((i = new_tok(d, max, (uint8_t)i, (size_t)(p - s))) == NONE)
				return RT_INVAL;
			d->t[i].len = len;
		}
		p += len;
		goto after;
	}

key:
	/* P is where an object member must start. */
	if (p == end || *p != '"')
		return RT_INVAL;
	if (rec)
		d->t[cur].size++;
	esc = false;
	if (rec && (i = new_tok(d, max, JS_STRING, (size_t)(p - s))) == NONE)
		return RT_INVAL;
	{
		const unsigned char *q = scan_string(p, end, &esc);
		if (q == NULL)
			return RT_INVAL;
		if (rec) {
			d->t[i].escaped = esc;
			d->t[i].len = (uint32_t)(q - p);
		}
		p = skip_ws(q, end);
	}
	if (p == end || *p != ':')
		return RT_INVAL;
	p = skip_ws(p + 1, end);
	goto value;

close:
	/* P is just past the bracket that closed the innermost container. */
	depth--;
	if (rec) {
		uint32_t parent = d->t[cur].next;
		d->t[cur].next = d->ntok;
		d->t[cur].len = (uint32_t)((size_t)(p - s) - d->t[cur].start);
		cur = parent;
	}
	/* fall through */
after:
	/* A value just ended at P. */
	if (depth == 0)
		return skip_ws(p, end) == end ? RT_OK : RT_INVAL;
	p = skip_ws(p, end);
	if (p == end)
		return RT_INVAL;
	if (is_obj[(depth - 1) / 64] & ((uint64_t)1 << ((depth - 1) % 64))) {
		if (*p == ',') {
			p = skip_ws(p + 1, end);
			goto key;
		}
		if (*p == '}') {
			p++;
			goto close;
		}
	} else {
		if (*p == ',') {
			p = skip_ws(p + 1, end);
			if (rec)
				d->t[cur].size++;
			goto value;
		}
		if (*p == ']') {
			p++;
			goto close;
		}
	}
	return RT_INVAL;
}

int js_scan(struct js_doc *doc, const char *s, size_t n, uint32_t max)
{
	int limit = doc->depth_limit;
	int rc;

	if (limit <= 0)
		limit = 64;
	if (limit > JS_DEPTH_MAX)
		limit = JS_DEPTH_MAX;
	doc->s = s;
	doc->n = n;
	doc->ntok = 0;
	if (n >= UINT32_MAX)
		return RT_INVAL;
	rc = scan(doc, s, n, max, limit, true);
	if (rc != RT_OK)
		doc->ntok = 0;
	return rc;
}

bool js_valid(const char *s, size_t n)
{
	return n < UINT32_MAX && scan(NULL, s, n, 0, JS_DEPTH_MAX, false) == RT_OK;
}

void js_free(struct js_doc *doc)
{
	free(doc->t);
	doc->t = NULL;
	doc->ntok = doc->cap = 0;
}

/* ---- accessors ---------------------------------------------------------- */

/* Unescapes the content Q[0..N) of a string js_scan accepted into OUT (when
 * non-NULL) and returns the output length, which never exceeds N. Lone
 * surrogates become U+FFFD, as Go's decoder does; a high surrogate followed
 * by an escape that is not a low surrogate yields U+FFFD and the second
 * escape is decoded on its own. */
static size_t unescape(const char *q, size_t n, char *out)
{
	size_t i = 0, o = 0;

	while (i < n) {
		const char *bs = memchr(q + i, '\\', n - i);
		size_t run = bs ? (size_t)(bs - (q + i)) : n - i;
		char c;

		if (out)
			memcpy(out + o, q + i, run);
		o += run;
		i += run;
		if (bs == NULL)
			break;
		c = q[i + 1];
		i += 2;
		switch (c) {
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u': {
			const unsigned char *h = (const unsigned char *)q + i;
			uint32_t cp = (uint32_t)(utf8_hexval(h[0]) << 12 | utf8_hexval(h[1]) << 8 |
						 utf8_hexval(h[2]) << 4 | utf8_hexval(h[3]));
			i += 4;
			if (cp >= 0xD800 && cp < 0xDC00 && n - i >= 6 && q[i] == '\\' && q[i + 1] == 'u') {
				h += 6;
				uint32_t lo = (uint32_t)(utf8_hexval(h[0]) << 12 | utf8_hexval(h[1]) << 8 |
							 utf8_hexval(h[2]) << 4 | utf8_hexval(h[3]));
				if (lo >= 0xDC00 && lo < 0xE000) {
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					i += 6;
				} else {
					cp = 0xFFFD;
				}
			} else if (cp >= 0xD800 && cp < 0xE000) {
				cp = 0xFFFD;
			}
			o += utf8_put(out ? out + o : NULL, cp);
			continue;
		}
		default: /* '"', '\\', '/' stand for themselves */
			break;
		}
		if (out)
			out[o] = c;
		o++;
	}
	return o;
}

/* Whether string token I, unescaped, equals S[0..SN) (ASCII letters folded
 * when NOCASE). */
static bool tok_eq(const struct js_doc *d, uint32_t i, const char *s, size_t sn, bool nocase)
{
	const struct js_tok *t = &d->t[i];
	const char *q = d->s + t->start + 1;
	size_t n = t->len - 2;
	char stackbuf[256], *buf = NULL;
	bool eq;

	if (t->escaped) {
		if (sn > n)     /* unescaping only ever shortens */
			return false;
		buf = n <= sizeof(stackbuf) ? stackbuf : xmalloc(n);
		n = unescape(q, n, buf);
		q = buf;
	}
	if (n != sn) {
		eq = false;
	} else if (!nocase) {
		eq = memcmp(q, s, n) == 0;
	} else {
		eq = true;
		for (size_t k = 0; k < n && eq; k++) {
			unsigned char a = (unsigned char)q[k], b = (unsigned char)s[k];
			if (a >= 'A' && a <= 'Z')
				a |= 0x20;
			if (b >= 'A' && b <= 'Z')
				b |= 0x20;
			eq = a == b;
		}
	}
	if (buf && buf != stackbuf)
		free(buf);
	return eq;
}

int64_t js_get(const struct js_doc *d, uint32_t obj, const char *key, bool nocase)
{
	uint32_t it = 0, k, v;
	size_t kn = strlen(key);
	int64_t found = -1;

	while (js_next_member(d, obj, &it, &k, &v))
		if (tok_eq(d, k, key, kn, nocase))
			found = v;
	return found;
}

bool js_next_member(const struct js_doc *d, uint32_t obj, uint32_t *it, uint32_t *key, uint32_t *val)
{
	uint32_t i;

	if (obj >= d->ntok || d->t[obj].type != JS_OBJECT)
		return false;
	i = *it ? *it : obj + 1;
	if (i >= d->t[obj].next)
		return false;
	*key = i;
	*val = i + 1;
	*it = d->t[i + 1].next;
	return true;
}

bool js_next_elem(const struct js_doc *d, uint32_t arr, uint32_t *it, uint32_t *val)
{
	uint32_t i;

	if (arr >= d->ntok || d->t[arr].type != JS_ARRAY)
		return false;
	i = *it ? *it : arr + 1;
	if (i >= d->t[arr].next)
		return false;
	*val = i;
	*it = d->t[i].next;
	return true;
}

int64_t js_str(const struct js_doc *d, uint32_t i, char *buf, size_t cap)
{
	const struct js_tok *t;
	const char *q;
	size_t n;

	if (i >= d->ntok || d->t[i].type != JS_STRING)
		return -1;
	t = &d->t[i];
	q = d->s + t->start + 1;
	n = t->len - 2;
	if (!t->escaped) {
		if (n >= cap)
			return -1;
		memcpy(buf, q, n);
		buf[n] = '\0';
		return (int64_t)n;
	}
	if (n >= cap && unescape(q, n, NULL) >= cap)
		return -1;
	n = unescape(q, n, buf);
	buf[n] = '\0';
	return (int64_t)n;
}

char *js_strdup(const struct js_doc *d, uint32_t i)
{
	char *s;

	if (i >= d->ntok || d->t[i].type != JS_STRING)
		return NULL;
	s = xmalloc(d->t[i].len - 1);
	js_str(d, i, s, d->t[i].len - 1);
	return s;
}

bool js_str_eq(const struct js_doc *d, uint32_t i, const char *s)
{
	if (i >= d->ntok || d->t[i].type != JS_STRING)
		return false;
	return tok_eq(d, i, s, strlen(s), false);
}

/* Parses number token I if it is a plain integer literal (no fraction, no
 * exponent: what Go's strconv.ParseInt accepts, and easyjson with it).
 * Sets *NEG and the magnitude; RT_INVAL otherwise or on overflow. */
static int int_lit(const struct js_doc *d, uint32_t i, bool *neg, uint64_t *mag)
{
	const char *p, *end;
	uint64_t v = 0;

	if (i >= d->ntok || d->t[i].type != JS_NUMBER)
		return RT_INVAL;
	p = js_raw(d, i);
	end = p + d->t[i].len;
	*neg = *p == '-';
	if (*neg)
		p++;
	for (; p < end; p++) {
		unsigned dg = (unsigned char)*p - '0';
		if (dg > 9)
			return RT_INVAL;
		if (v > (UINT64_MAX - dg) / 10)
			return RT_INVAL;
		v = v * 10 + dg;
	}
	*mag = v;
	return RT_OK;
}

int js_int64(const struct js_doc *d, uint32_t i, int64_t *out)
{
	bool neg;
	uint64_t m;

	if (int_lit(d, i, &neg, &m) != RT_OK)
		return RT_INVAL;
	if (neg) {
		if (m > (uint64_t)INT64_MAX + 1)
			return RT_INVAL;
		*out = m == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)m;
	} else {
		if (m > (uint64_t)INT64_MAX)
			return RT_INVAL;
		*out = (int64_t)m;
	}
	return RT_OK;
}

int js_uint64(const struct js_doc *d, uint32_t i, uint64_t *out)
{
	bool neg;
	uint64_t m;

	if (int_lit(d, i, &neg, &m) != RT_OK || neg)
		return RT_INVAL;
	*out = m;
	return RT_OK;
}

int js_bool(const struct js_doc *d, uint32_t i, bool *out)
{
	if (i >= d->ntok)
		return RT_INVAL;
	if (d->t[i].type == JS_TRUE)
		*out = true;
	else if (d->t[i].type == JS_FALSE)
		*out = false;
	else
		return RT_INVAL;
	return RT_OK;
}

/* ---- writer ------------------------------------------------------------- */

void jw_free(struct jw *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

void jw_reserve(struct jw *w, size_t more)
{
	size_t need, cap;

	if (w->cap - w->len >= more)
		return;
	need = w->len + more;
	if (need < w->len)
		xrealloc(w->buf, SIZE_MAX);     /* overflow: the out-of-memory path */
	cap = w->cap ? w->cap : 256;
	while (cap < need)
		cap = cap * 2 > cap ? cap * 2 : need;
	w->buf = xrealloc(w->buf, cap);
	w->cap = cap;
}

void jw_raw(struct jw *w, const void *p, size_t n)
{
	jw_reserve(w, n);
	if (n)
		memcpy(w->buf + w->len, p, n);
	w->len += n;
}

void jw_lit(struct jw *w, const char *s)
{
	jw_raw(w, s, strlen(s));
}

/* ASCII bytes that jw_str copies as they are: not a control character, not
 * '"' or '\\', not one of the HTML-sensitive < > &. */
static const unsigned char str_safe[128] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1,  /* " & */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, 1,  /* < > */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,  /* \ */
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
};

static const char hexdig[] = "0123456789abcdef";

void jw_str(struct jw *w, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str, *end;
	size_t i = 0, start = 0;

	if (n == 0) {           /* STR may then be NULL */
		jw_raw(w, "\"\"", 2);
		return;
	}
	end = s + n;
	jw_reserve(w, n + 2);
	w->buf[w->len++] = '"';
	while (i < n) {
		unsigned char c = s[i];
		char esc[6];
		size_t elen;

		if (c < 0x80) {
			if (str_safe[c]) {
				i++;
				continue;
			}
			esc[0] = '\\';
			switch (c) {
			case '"': case '\\': esc[1] = (char)c; elen = 2; break;
			case '\n': esc[1] = 'n'; elen = 2; break;
			case '\r': esc[1] = 'r'; elen = 2; break;
			case '\t': esc[1] = 't'; elen = 2; break;
			default:
				memcpy(esc + 1, "u00", 3);
				esc[4] = hexdig[c >> 4];
				esc[5] = hexdig[c & 0xF];
				elen = 6;
			}
			jw_raw(w, s + start, i - start);
			jw_raw(w, esc, elen);
			start = ++i;
			continue;
		}
		size_t l = utf8_seq(s + i, end);
		if (l == 0) {
			jw_raw(w, s + start, i - start);
			jw_raw(w, "\\ufffd", 6);
			start = ++i;
		} else if (l == 3 && c == 0xE2 && s[i + 1] == 0x80 && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9)) {
			jw_raw(w, s + start, i - start);
			jw_raw(w, s[i + 2] == 0xA8 ? "\\u2028" : "\\u2029", 6);
			start = i += 3;
		} else {
			i += l;
		}
	}
	jw_raw(w, s + start, n - start);
	jw_raw(w, "\"", 1);
}

void jw_u64(struct jw *w, uint64_t v)
{
	char b[20];
	size_t i = sizeof(b);

	do {
		b[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	jw_raw(w, b + i, sizeof(b) - i);
}

void jw_i64(struct jw *w, int64_t v)
{
	if (v < 0) {
		jw_raw(w, "-", 1);
		jw_u64(w, (uint64_t)0 - (uint64_t)v);
	} else {
		jw_u64(w, (uint64_t)v);
	}
}

void jw_json(struct jw *w, const char *p, size_t n)
{
	const char *end, *nl;

	if (n == 0)
		return;
	end = p + n;
	jw_reserve(w, n);
	while ((nl = memchr(p, '\n', (size_t)(end - p))) != NULL) {
		jw_raw(w, p, (size_t)(nl - p));
		p = nl + 1;
	}
	jw_raw(w, p, (size_t)(end - p));
}
