/*
 * sockjs_frame.c - the SockJS 0.3 codec: URL routing, the quoting of
 * messages, frames and their per-transport wrappings, client payload
 * decoding, htmlfile/JSONP callbacks, /info and the iframe page.
 *
 * Model: functions of their arguments. Builders append to a caller's
 * struct jw (grown with xrealloc, so allocation failure is handled in
 * util.c); readers return spans into their input or decoded bytes in a
 * caller's buffer. What differs between transports (URL segment, methods,
 * content type, role) is one table, so the transport code asks instead of
 * naming members.
 *
 * Invariants the rest of rotor may rely on:
 *   - sjf_quote_ex writes valid UTF-8 and never a byte below 0x20; with its
 *     quotes it is one valid JSON string. Hence no frame built here holds a
 *     raw CR, LF or NUL, which the xhr ("\n"-separated) and eventsource
 *     framings need;
 *   - sjf_decode's messages are valid UTF-8, and sjf_decode of "[" +
 *     sjf_quote(m) + "]" gives back m for every valid UTF-8 m.
 */
#include "config.h"
#include "sockjs_frame.h"
#include "http.h"
#include "log.h"
#include "utf8.h"
#include "util.h"

#include <assert.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#define CT_JS "application/javascript; charset=UTF-8"
#define CT_HTML "text/html; charset=UTF-8"
#define CT_JSON "application/json; charset=UTF-8"

#define M_GET HTTP_METHOD_BIT(HTTP_GET)
#define M_POST HTTP_METHOD_BIT(HTTP_POST)
#define M_OPTIONS HTTP_METHOD_BIT(HTTP_OPTIONS)

/* The facts of each session transport (§1, §2.1, §2.3). */
static const struct {
	const char *name;
	uint64_t methods;
	unsigned flags;
	const char *ctype;
} transports[SJF_T_COUNT] = {
	[SJF_T_NONE] = { "", 0, 0, NULL },
	[SJF_T_WEBSOCKET] = { "websocket", M_GET, SJF_TF_RECEIVE | SJF_TF_UPGRADE, NULL },
	[SJF_T_XHR] = { "xhr", M_POST | M_OPTIONS, SJF_TF_RECEIVE | SJF_TF_CORS, CT_JS },
	[SJF_T_XHR_STREAMING] = { "xhr_streaming", M_POST | M_OPTIONS,
				  SJF_TF_RECEIVE | SJF_TF_STREAMING | SJF_TF_CORS, CT_JS },
	[SJF_T_XHR_SEND] = { "xhr_send", M_POST | M_OPTIONS, SJF_TF_SEND | SJF_TF_CORS, SJF_CTYPE_TEXT },
	[SJF_T_EVENTSOURCE] = { "eventsource", M_GET,
				SJF_TF_RECEIVE | SJF_TF_STREAMING | SJF_TF_CORS, "text/event-stream" },
	[SJF_T_HTMLFILE] = { "htmlfile", M_GET,
			     SJF_TF_RECEIVE | SJF_TF_STREAMING | SJF_TF_CALLBACK, CT_HTML },
	[SJF_T_JSONP] = { "jsonp", M_GET | M_OPTIONS, SJF_TF_RECEIVE | SJF_TF_CALLBACK, CT_JS },
	[SJF_T_JSONP_SEND] = { "jsonp_send", M_POST, SJF_TF_SEND, SJF_CTYPE_TEXT },
};

/* ---- URLs ---------------------------------------------------------------- */

static bool span_is(const char *p, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	return n == l && memcmp(p, lit, l) == 0;
}

/* Whether byte C may be part of <server> or <session>. */
static inline bool id_byte(unsigned char c)
{
	return c > 0x20 && c != 0x7F && c != '/' && c != '.';
}

/* Length of the <server>/<session> segment at P (before END): 1..SJF_ID_MAX
 * id bytes followed by '/'; 0 when there is none. */
static size_t id_segment(const char *p, const char *end)
{
	size_t l = 0;

	while (p + l < end && id_byte((unsigned char)p[l]))
		if (++l > SJF_ID_MAX)
			return 0;
	return l > 0 && p + l < end && p[l] == '/' ? l : 0;
}

/* "/iframe" [0-9a-z._-]* ".html" */
static bool iframe_path(const char *p, size_t n)
{
	if (n < 12 || memcmp(p, "/iframe", 7) != 0 || memcmp(p + n - 5, ".html", 5) != 0)
		return false;
	for (size_t i = 7; i < n - 5; i++) {
		unsigned char c = (unsigned char)p[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || c == '.' || c == '_' || c == '-'))
			return false;
	}
	return true;
}

enum sjf_kind sjf_route(const char *path, size_t n, struct sjf_route *r)
{
	const char *end, *p;
	size_t sl, il;

	memset(r, 0, sizeof(*r));
	if (n == 0 || span_is(path, n, "/"))
		r->kind = SJF_GREETING;
	else if (span_is(path, n, "/info"))
		r->kind = SJF_INFO;
	else if (span_is(path, n, "/websocket"))
		r->kind = SJF_RAW_WEBSOCKET;
	else if (iframe_path(path, n))
		r->kind = SJF_IFRAME;
	if (r->kind != SJF_NOT_FOUND || path[0] != '/')
		return r->kind;

	end = path + n;
	p = path + 1;
	if ((sl = id_segment(p, end)) == 0)
		return SJF_NOT_FOUND;
	if ((il = id_segment(p + sl + 1, end)) == 0)
		return SJF_NOT_FOUND;
	p += sl + 1 + il + 1;
	for (int t = SJF_T_NONE + 1; t < SJF_T_COUNT; t++)
		if (span_is(p, (size_t)(end - p), transports[t].name)) {
			r->kind = SJF_SESSION;
			r->transport = (enum sjf_transport)t;
			r->server = path + 1;
			r->server_len = sl;
			r->session = path + 1 + sl + 1;
			r->session_len = il;
			break;
		}
	return r->kind;
}

uint64_t sjf_methods(const struct sjf_route *r)
{
	switch (r->kind) {
	case SJF_GREETING:
	case SJF_IFRAME:
	case SJF_RAW_WEBSOCKET:
		return M_GET;
	case SJF_INFO:
		return M_GET | M_OPTIONS;
	case SJF_SESSION:
		return transports[r->transport].methods;
	default:
		return 0;
	}
}

unsigned sjf_transport_flags(enum sjf_transport t)
{
	return (unsigned)t < SJF_T_COUNT ? transports[t].flags : 0;
}

const char *sjf_transport_name(enum sjf_transport t)
{
	return (unsigned)t < SJF_T_COUNT ? transports[t].name : "";
}

const char *sjf_content_type(const struct sjf_route *r)
{
	switch (r->kind) {
	case SJF_GREETING:
		return SJF_CTYPE_TEXT;
	case SJF_INFO:
		return CT_JSON;
	case SJF_IFRAME:
		return CT_HTML;
	case SJF_SESSION:
		return transports[r->transport].ctype;
	default:
		return NULL;
	}
}

/* ---- quoting ------------------------------------------------------------- */

static const char hexdig[] = "0123456789abcdef";

/* What sjf_quote_ex does with an ASCII byte: 0 copies it, 1 escapes it,
 * 2 escapes it with SJF_Q_HTML only. */
static const unsigned char q_ascii[128] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0,  /* " & */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2, 0,  /* < > */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,  /* \ */
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Writes \uXXXX for the BMP code unit U into B; returns 6. */
static size_t esc_unit(char *b, uint32_t u)
{
	b[0] = '\\';
	b[1] = 'u';
	b[2] = hexdig[u >> 12 & 0xF];
	b[3] = hexdig[u >> 8 & 0xF];
	b[4] = hexdig[u >> 4 & 0xF];
	b[5] = hexdig[u & 0xF];
	return 6;
}

/* The escape of ASCII byte C into B (room for 6); returns its length. */
static size_t esc_ascii(char *b, unsigned char c)
{
	static const char shortc[] = { ['"'] = '"', ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f',
				       ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't' };

	if (c < sizeof(shortc) && shortc[c]) {
		b[0] = '\\';
		b[1] = shortc[c];
		return 2;
	}
	return esc_unit(b, c);
}

/* Whether code point CP of a multi-byte sequence must go out as \u escapes
 * (§4.2). Everything above U+FFFF does: as a surrogate pair. */
static inline bool cp_escaped(uint32_t cp)
{
	return (cp >= 0x200C && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
	       (cp >= 0x2060 && cp <= 0x206F) || cp >= 0xFFF0;
}

void sjf_quote_ex(struct jw *w, const char *str, size_t n, unsigned flags)
{
	const unsigned char *s = (const unsigned char *)str, *end;
	const unsigned char stop = flags & SJF_Q_HTML ? 2 : 1;  /* classes up to this are escaped */
	size_t i = 0, start = 0;

	if (n == 0) {           /* STR may be NULL */
		if (!(flags & SJF_Q_BARE))
			jw_raw(w, "\"\"", 2);
		return;
	}
	end = s + n;
	jw_reserve(w, n + 2);
	if (!(flags & SJF_Q_BARE))
		w->buf[w->len++] = '"';
	while (i < n) {
		unsigned char c = s[i];
		char esc[12];
		size_t elen, l;

		if (c < 0x80) {
			if (q_ascii[c] == 0 || q_ascii[c] > stop) {
				i++;
				continue;
			}
			elen = esc_ascii(esc, c);
			l = 1;
		} else {
			uint32_t cp = 0xFFFD;

			if ((l = utf8_seq(s + i, end)) == 0) {
				l = 1;          /* not UTF-8: U+FFFD, escaped as U+FFF0-U+FFFF are */
			} else if (!cp_escaped(cp = utf8_cp(s + i, l))) {
				i += l;
				continue;
			}
			if (cp >= 0x10000) {
				cp -= 0x10000;
				elen = esc_unit(esc, 0xD800 + (cp >> 10));
				elen += esc_unit(esc + 6, 0xDC00 + (cp & 0x3FF));
			} else {
				elen = esc_unit(esc, cp);
			}
		}
		jw_raw(w, s + start, i - start);
		jw_raw(w, esc, elen);
		start = i += l;
	}
	jw_raw(w, s + start, n - start);
	if (!(flags & SJF_Q_BARE))
		jw_raw(w, "\"", 1);
}

void sjf_quote(struct jw *out, const char *p, size_t n)
{
	sjf_quote_ex(out, p, n, 0);
}

void sjf_list_add(struct jw *list, const char *p, size_t n)
{
	if (list->len)
		jw_raw(list, ",", 1);
	sjf_quote_ex(list, p, n, 0);
}

/* ---- frames and wrappings ------------------------------------------------ */

void sjf_frame_open(struct jw *out)
{
	jw_raw(out, "o", 1);
}

void sjf_frame_heartbeat(struct jw *out)
{
	jw_raw(out, "h", 1);
}

void sjf_frame_close(struct jw *out, unsigned code, const char *reason, size_t n)
{
	jw_raw(out, "c[", 2);
	jw_u64(out, code);
	jw_raw(out, ",", 1);
	sjf_quote_ex(out, reason, n, 0);
	jw_raw(out, "]", 1);
}

void sjf_frame_msgs(struct jw *out, const char *list, size_t n)
{
	jw_reserve(out, n + 3);
	jw_raw(out, "a[", 2);
	jw_raw(out, list, n);
	jw_raw(out, "]", 1);
}

/* FRAME with the bytes EventSource cannot carry (and '%', which the client's
 * decodeURI would eat) percent-escaped (§6.6). */
static void es_escape(struct jw *w, const char *f, size_t n)
{
	size_t start = 0;

	if (n == 0)
		return;
	jw_reserve(w, n);
	for (size_t i = 0; i < n; i++) {
		const char *e;

		switch (f[i]) {
		case '%': e = "%25"; break;
		case '\r': e = "%0D"; break;
		case '\n': e = "%0A"; break;
		case '\0': e = "%00"; break;
		default: continue;
		}
		jw_raw(w, f + start, i - start);
		jw_raw(w, e, 3);
		start = i + 1;
	}
	jw_raw(w, f + start, n - start);
}

void sjf_wrap_head(struct jw *out, enum sjf_transport t, const char *cb, size_t cbn)
{
	switch (t) {
	case SJF_T_WEBSOCKET:
	case SJF_T_XHR:
	case SJF_T_XHR_STREAMING:
		break;
	case SJF_T_EVENTSOURCE:
		jw_raw(out, "data: ", 6);
		break;
	case SJF_T_HTMLFILE:
		jw_lit(out, "<script>\np(\"");
		break;
	case SJF_T_JSONP:
		assert(sjf_callback_ok(cb, cbn));
		jw_raw(out, "/**/", 4);
		jw_raw(out, cb, cbn);
		jw_raw(out, "(\"", 2);
		break;
	default:
		assert(!"sjf_wrap_head: not a receiving transport");
	}
}

void sjf_wrap_piece(struct jw *out, enum sjf_transport t, const char *p, size_t n)
{
	switch (t) {
	case SJF_T_WEBSOCKET:
	case SJF_T_XHR:
	case SJF_T_XHR_STREAMING:
		jw_raw(out, p, n);
		break;
	case SJF_T_EVENTSOURCE:
		es_escape(out, p, n);
		break;
	case SJF_T_HTMLFILE:
		sjf_quote_ex(out, p, n, SJF_Q_BARE | SJF_Q_HTML);
		break;
	case SJF_T_JSONP:
		sjf_quote_ex(out, p, n, SJF_Q_BARE);
		break;
	default:
		assert(!"sjf_wrap_piece: not a receiving transport");
	}
}

void sjf_wrap_tail(struct jw *out, enum sjf_transport t)
{
	switch (t) {
	case SJF_T_WEBSOCKET:
		break;
	case SJF_T_XHR:
	case SJF_T_XHR_STREAMING:
		jw_raw(out, "\n", 1);
		break;
	case SJF_T_EVENTSOURCE:
		jw_raw(out, "\r\n\r\n", 4);
		break;
	case SJF_T_HTMLFILE:
		jw_lit(out, "\");\n</script>\r\n");
		break;
	case SJF_T_JSONP:
		jw_lit(out, "\");\r\n");
		break;
	default:
		assert(!"sjf_wrap_tail: not a receiving transport");
	}
}

void sjf_wrap(struct jw *out, enum sjf_transport t, const char *cb, size_t cbn,
	      const char *frame, size_t n)
{
	jw_reserve(out, n + cbn + 32);
	sjf_wrap_head(out, t, cb, cbn);
	sjf_wrap_piece(out, t, frame, n);
	sjf_wrap_tail(out, t);
}

/* The htmlfile page head (§6.7), split around the callback. */
static const char htmlfile_head1[] =
	"<!doctype html>\n"
	"<html><head>\n"
	"  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n"
	"  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n"
	"</head><body><h2>Don't panic!</h2>\n"
	"  <script>\n"
	"    document.domain = document.domain;\n"
	"    var c = parent.";
static const char htmlfile_head2[] =
	";\n"
	"    c.start();\n"
	"    function p(d) {c.message(d);};\n"
	"    window.onload = function() {c.stop();};\n"
	"  </script>\n";

void sjf_prelude(struct jw *out, enum sjf_transport t, const char *cb, size_t cbn)
{
	size_t start = out->len;

	switch (t) {
	case SJF_T_XHR_STREAMING:
		jw_reserve(out, SJF_XHR_PRELUDE_LEN);
		memset(out->buf + out->len, 'h', SJF_XHR_PRELUDE_LEN - 1);
		out->len += SJF_XHR_PRELUDE_LEN - 1;
		jw_raw(out, "\n", 1);
		break;
	case SJF_T_EVENTSOURCE:
		jw_raw(out, "\r\n", 2);
		break;
	case SJF_T_HTMLFILE:
		assert(sjf_callback_ok(cb, cbn));
		jw_reserve(out, SJF_HTMLFILE_PAD + 4);
		jw_raw(out, htmlfile_head1, sizeof(htmlfile_head1) - 1);
		jw_raw(out, cb, cbn);
		jw_raw(out, htmlfile_head2, sizeof(htmlfile_head2) - 1);
		if (out->len - start < SJF_HTMLFILE_PAD) {
			size_t pad = SJF_HTMLFILE_PAD - (out->len - start);
			jw_reserve(out, pad);
			memset(out->buf + out->len, ' ', pad);
			out->len += pad;
		}
		jw_raw(out, "\r\n\r\n", 4);
		break;
	default:
		break;
	}
}

/* ---- client payloads ----------------------------------------------------- */

void sjf_msgs_free(struct sjf_msgs *m)
{
	jw_free(&m->text);
	free(m->v);
	m->v = NULL;
	m->n = m->cap = 0;
}

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
		p++;
	return p;
}

/* The four hex digits at P as a code unit, or -1. */
static inline int32_t hex4(const unsigned char *p)
{
	int a = utf8_hexval(p[0]), b = utf8_hexval(p[1]), c = utf8_hexval(p[2]), d = utf8_hexval(p[3]);

	return (a | b | c | d) < 0 ? -1 : (int32_t)(a << 12 | b << 8 | c << 4 | d);
}

/* Bytes a JSON string holds as they are: printable ASCII but '"' and '\\'. */
static inline bool plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* P is at the opening quote of a JSON string. Appends its decoded text to
 * OUT (§4.3 rules, see sjf_decode) and returns the byte after the closing
 * quote, or NULL when it is not a valid JSON string (a raw control
 * character, a bad escape, no closing quote). */
static const unsigned char *dec_string(const unsigned char *p, const unsigned char *end,
				       struct jw *out)
{
	p++;
	for (;;) {
		const unsigned char *run = p;
		uint32_t cp;
		int32_t u;

		for (;;) {
			while (p < end && plain(*p))
				p++;
			if (p < end && *p >= 0x80) {
				size_t l = utf8_seq(p, end);
				if (l) {
					p += l;
					continue;
				}
			}
			break;
		}
		jw_raw(out, run, (size_t)(p - run));
		if (p == end)
			return NULL;
		if (*p == '"')
			return p + 1;
		if (*p >= 0x80) {               /* not UTF-8 */
			jw_raw(out, "\xEF\xBF\xBD", 3);
			p++;
			continue;
		}
		if (*p != '\\' || end - p < 2)
			return NULL;
		switch (p[1]) {
		case '"': case '\\': case '/': cp = p[1]; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			if (end - p < 6 || (u = hex4(p + 2)) < 0)
				return NULL;
			cp = (uint32_t)u;
			if (cp >= 0xD800 && cp < 0xDC00 && end - p >= 12 && p[6] == '\\' && p[7] == 'u' &&
			    (u = hex4(p + 8)) >= 0xDC00 && u < 0xE000) {
				cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)u - 0xDC00);
				p += 6;
			} else if (cp >= 0xD800 && cp < 0xE000) {
				cp = 0xFFFD;
			}
			jw_reserve(out, 4);
			out->len += utf8_put(out->buf + out->len, cp);
			p += 6;
			continue;
		default:
			return NULL;
		}
		jw_raw(out, &(char){ (char)cp }, 1);
		p += 2;
	}
}

/* Decodes the string at P into M as one more message; see dec_string. */
static const unsigned char *dec_message(const unsigned char *p, const unsigned char *end,
					struct sjf_msgs *m)
{
	size_t off = m->text.len;

	if ((p = dec_string(p, end, &m->text)) == NULL)
		return NULL;
	if (m->n == m->cap) {
		m->cap = m->cap ? m->cap * 2 : 16;
		m->v = xrealloc(m->v, m->cap * sizeof(*m->v));
	}
	m->v[m->n].off = off;
	m->v[m->n].len = m->text.len - off;
	m->n++;
	jw_raw(&m->text, "", 1);        /* the NUL after each message */
	return p;
}

enum sjf_decode_rc sjf_decode(const char *text, size_t n, unsigned flags, struct sjf_msgs *m)
{
	const unsigned char *p = (const unsigned char *)text, *end;

	m->n = 0;
	m->text.len = 0;
	if (n == 0)
		return SJF_DEC_EMPTY;
	end = p + n;
	jw_reserve(&m->text, n);
	p = skip_ws(p, end);
	if (p < end && *p == '[') {
		p = skip_ws(p + 1, end);
		if (p < end && *p == ']') {
			p++;
			goto done;
		}
		for (;;) {
			if (p == end || *p != '"' || (p = dec_message(p, end, m)) == NULL)
				goto fail;
			p = skip_ws(p, end);
			if (p < end && *p == ']') {
				p++;
				goto done;
			}
			if (p == end || *p != ',')
				goto fail;
			p = skip_ws(p + 1, end);
		}
	} else if (p < end && *p == '"' && (flags & SJF_D_STRING)) {
		if ((p = dec_message(p, end, m)) == NULL)
			goto fail;
	} else {
		goto fail;
	}
done:
	if (skip_ws(p, end) == end)
		return SJF_DEC_OK;
fail:
	m->n = 0;
	m->text.len = 0;
	return js_valid(text, n) ? SJF_DEC_NOT_ARRAY : SJF_DEC_BROKEN;
}

const char *sjf_decode_error(enum sjf_decode_rc rc)
{
	switch (rc) {
	case SJF_DEC_OK:
		return NULL;
	case SJF_DEC_BROKEN:
		return SJF_ERR_BROKEN;
	default:
		return SJF_ERR_PAYLOAD;
	}
}

/* ---- forms and query strings --------------------------------------------- */

/* Decodes one byte of form text at *P (< END): '+' is a space, %XX that
 * byte, anything else (a lone '%' too) itself. Advances *P past it. */
static inline unsigned char form_byte(const char **p, const char *end)
{
	const char *q = *p;

	if (*q == '+') {
		*p = q + 1;
		return ' ';
	}
	if (*q == '%' && end - q >= 3) {
		int hi = utf8_hexval((unsigned char)q[1]), lo = utf8_hexval((unsigned char)q[2]);
		if (hi >= 0 && lo >= 0) {
			*p = q + 3;
			return (unsigned char)(hi << 4 | lo);
		}
	}
	*p = q + 1;
	return (unsigned char)*q;
}

/* The raw value of the first pair of S[0..N) whose decoded key is KEY:
 * true and *V, *VN (not decoded), or false. */
static bool form_find(const char *s, size_t n, const char *key, const char **v, size_t *vn)
{
	const char *end = n ? s + n : s, *p = s;
	size_t kn = strlen(key);

	while (p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *pe = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(pe - p));
		const char *ke = eq ? eq : pe, *q = p;
		size_t k = 0;

		while (q < ke && k < kn && form_byte(&q, ke) == (unsigned char)key[k])
			k++;
		if (q == ke && k == kn) {
			*v = eq ? eq + 1 : pe;
			*vn = (size_t)(pe - *v);
			return true;
		}
		if (amp == NULL)
			break;
		p = amp + 1;
	}
	return false;
}

bool sjf_form_get(const char *s, size_t n, const char *key, struct jw *out)
{
	const char *v, *end;
	size_t vn;

	if (!form_find(s, n, key, &v, &vn))
		return false;
	jw_reserve(out, vn);
	for (end = v + vn; v < end;)
		out->buf[out->len++] = (char)form_byte(&v, end);
	return true;
}

enum sjf_form_rc sjf_form_d(const char *body, size_t n, struct jw *out)
{
	size_t before = out->len;

	if (!sjf_form_get(body, n, "d", out))
		return SJF_FORM_MISSING;
	return out->len == before ? SJF_FORM_EMPTY : SJF_FORM_OK;
}

/* ---- callbacks ------------------------------------------------------------ */

static inline bool callback_byte(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '.' || c == '-';
}

bool sjf_callback_ok(const char *cb, size_t n)
{
	if (cb == NULL || n == 0 || n > SJF_CALLBACK_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!callback_byte((unsigned char)cb[i]))
			return false;
	return true;
}

enum sjf_callback_rc sjf_query_callback(const char *query, size_t n,
					char out[SJF_CALLBACK_MAX + 1], size_t *len)
{
	const char *v, *end;
	size_t vn, o = 0;

	*len = 0;
	out[0] = '\0';
	if ((!form_find(query, n, "c", &v, &vn) || vn == 0) &&
	    (!form_find(query, n, "callback", &v, &vn) || vn == 0))
		return SJF_CB_MISSING;
	for (end = v + vn; v < end && o <= SJF_CALLBACK_MAX; o++)
		out[o] = (char)form_byte(&v, end);
	if (v < end || !sjf_callback_ok(out, o)) {
		out[0] = '\0';
		return SJF_CB_INVALID;
	}
	out[o] = '\0';
	*len = o;
	return SJF_CB_OK;
}

/* ---- /info and the iframe page -------------------------------------------- */

void sjf_info_json(struct jw *out, bool websocket, bool cookie_needed, uint32_t entropy)
{
	jw_lit(out, websocket ? "{\"websocket\": true" : "{\"websocket\": false");
	jw_lit(out, ", \"origins\": [\"*:*\"], \"cookie_needed\": ");
	jw_lit(out, cookie_needed ? "true" : "false");
	jw_lit(out, ", \"entropy\": ");
	jw_u64(out, entropy);
	jw_raw(out, "}", 1);
}

bool sjf_script_url_ok(const char *url, size_t n)
{
	const unsigned char *s = (const unsigned char *)url, *end = s + n;

	if (n == 0 || !(s[0] == '/' || (n >= 4 && memcmp(s, "http", 4) == 0)))
		return false;
	while (s < end) {
		if (*s >= 0x80) {
			size_t l = utf8_seq(s, end);
			if (l == 0)
				return false;
			s += l;
			continue;
		}
		if (*s <= 0x20 || *s == 0x7F || strchr("\"<>'`", *s))
			return false;
		s++;
	}
	return true;
}

/* The iframe page (§3), split around the script URL. */
static const char iframe1[] =
	"<!DOCTYPE html>\n"
	"<html>\n"
	"<head>\n"
	"  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n"
	"  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n"
	"  <script src=\"";
static const char iframe2[] =
	"\"></script>\n"
	"  <script>\n"
	"    document.domain = document.domain;\n"
	"    SockJS.bootstrap_iframe();\n"
	"  </script>\n"
	"</head>\n"
	"<body>\n"
	"  <h2>Don't panic!</h2>\n"
	"  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n"
	"</body>\n"
	"</html>\n";

void sjf_iframe_page(struct jw *out, const char *url, size_t n)
{
	assert(sjf_script_url_ok(url, n));
	jw_reserve(out, sizeof(iframe1) + n + sizeof(iframe2));
	jw_raw(out, iframe1, sizeof(iframe1) - 1);
	jw_raw(out, url, n);
	jw_raw(out, iframe2, sizeof(iframe2) - 1);
}

int sjf_etag(const char *body, size_t n, char out[SJF_ETAG_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(body, n, md, &mdlen, EVP_md5(), NULL) != 1 || mdlen != 16) {
		const char *why = ERR_reason_error_string(ERR_get_error());
		log_error("EVP_Digest(md5) failed: %s", why ? why : "unknown error");
		out[0] = '\0';
		return RT_ERR;
	}
	out[0] = '"';
	for (unsigned i = 0; i < 16; i++) {
		out[1 + 2 * i] = hexdig[md[i] >> 4];
		out[2 + 2 * i] = hexdig[md[i] & 0xF];
	}
	out[33] = '"';
	out[34] = '\0';
	return RT_OK;
}
