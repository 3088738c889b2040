/*
 * fuzz_sockjs.c - a libFuzzer target for the SockJS codec
 * (src/transport/sockjs_frame.c). tests/fuzz/run.sh builds and runs it
 * briefly in make check; by hand, for a long run:
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *       -D_GNU_SOURCE -I. -Isrc -Isrc/transport -I/usr/share/include/llhttp \
 *       tests/fuzz/fuzz_sockjs.c src/transport/sockjs_frame.c src/json.c \
 *       src/util.c src/log.c -lcrypto -o /tmp/fuzz_sockjs
 *   /tmp/fuzz_sockjs -max_total_time=600 -max_len=4096 /tmp/corpus
 *
 * SOURCES: src/transport/sockjs_frame.c src/json.c src/util.c src/log.c
 * LIBS: -lcrypto
 *
 * The first input byte picks what is exercised (low 3 bits) and its flags
 * (the rest); the other bytes are the input:
 *   0: sjf_route; a session route's spans rebuild the path exactly;
 *   1: sjf_decode, with js_scan as the oracle: valid JSON arrays of strings
 *      decode, element for element, to what js_str makes of them; every
 *      message is valid UTF-8, re-quotes to valid JSON and round-trips;
 *      all of them framed as a[...] and wrapped for every receiver stay
 *      valid per each wrapping's grammar;
 *   2: sjf_form_d, then sjf_decode of the field;
 *   3: sjf_query_callback, then the htmlfile head and a JSONP wrapping;
 *   4: sjf_quote_ex of arbitrary bytes (valid JSON, no control byte, no
 *      < > & with SJF_Q_HTML, decodes back) and every wrapping of them as
 *      a frame;
 *   5: the close frame; 6: the iframe page and its ETag; 7: sjf_form_get.
 * Invariants are checked with __builtin_trap, so a violation is a crash.
 */
#include "config.h"
#include "fuzz.h"
#include "sockjs_frame.h"
#include "json.h"
#include "utf8.h"

#include <stdlib.h>
#include <string.h>

static struct sjf_msgs M, M2;
static struct js_doc D;
static struct jw W, Q, F, T;

/* S with every byte that does not begin a valid UTF-8 sequence replaced by
 * U+FFFD, into OUT (reset): what quoting then decoding must give. */
static void fffd(const char *s, size_t n, struct jw *out)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;

	out->len = 0;
	while (p < end) {
		size_t l = *p < 0x80 ? 1 : utf8_seq(p, end);
		if (l == 0) {
			jw_raw(out, "\xEF\xBF\xBD", 3);
			p++;
		} else {
			jw_raw(out, p, l);
			p += l;
		}
	}
}

static bool has_prefix(const struct jw *w, size_t from, const char *lit)
{
	size_t l = strlen(lit);
	return w->len - from >= l && memcmp(w->buf + from, lit, l) == 0;
}

static bool has_suffix(const struct jw *w, const char *lit)
{
	size_t l = strlen(lit);
	return w->len >= l && memcmp(w->buf + w->len - l, lit, l) == 0;
}

/* Whether the JSON string text S[0..N) (quotes included) decodes to
 * WANT[0..WN). */
static bool json_string_is(const char *s, size_t n, const char *want, size_t wn)
{
	size_t ml;
	const char *mp;

	if (sjf_decode(s, n, SJF_D_STRING, &M2) != SJF_DEC_OK || M2.n != 1)
		return false;
	mp = sjf_msg(&M2, 0, &ml);
	return ml == wn && (wn == 0 || memcmp(mp, want, wn) == 0);
}

/* Wraps FRAME for every receiving transport and checks each wrapping's
 * grammar and that the frame comes back out of it (with U+FFFD for bytes
 * that are not UTF-8 where it travels as a JSON string). */
static void check_wraps(const char *frame, size_t n)
{
	fffd(frame, n, &F);
	for (int t = SJF_T_NONE; t < SJF_T_COUNT; t++) {
		size_t before;

		if (!(sjf_transport_flags((enum sjf_transport)t) & SJF_TF_RECEIVE))
			continue;
		W.len = 0;
		jw_lit(&W, "X");        /* wrappings append */
		before = W.len;
		sjf_wrap(&W, (enum sjf_transport)t, "cb", 2, frame, n);
		CHECK(W.buf[0] == 'X');
		switch (t) {
		case SJF_T_WEBSOCKET:
			CHECK(W.len - before == n && memcmp(W.buf + before, frame, n) == 0);
			break;
		case SJF_T_XHR:
		case SJF_T_XHR_STREAMING:
			CHECK(W.len - before == n + 1 && memcmp(W.buf + before, frame, n) == 0 &&
			      W.buf[W.len - 1] == '\n');
			break;
		case SJF_T_EVENTSOURCE: {
			size_t i = before + 6, o = 0, end = W.len - 4;
			CHECK(has_prefix(&W, before, "data: ") && has_suffix(&W, "\r\n\r\n"));
			/* The payload: no CR, LF, NUL; '%' only in the four escapes; undoes to FRAME. */
			for (; i < end; o++) {
				char c = W.buf[i];
				CHECK(c != '\r' && c != '\n' && c != '\0');
				if (c == '%') {
					CHECK(end - i >= 3);
					if (memcmp(W.buf + i, "%25", 3) == 0)
						c = '%';
					else if (memcmp(W.buf + i, "%0D", 3) == 0)
						c = '\r';
					else if (memcmp(W.buf + i, "%0A", 3) == 0)
						c = '\n';
					else if (memcmp(W.buf + i, "%00", 3) == 0)
						c = '\0';
					else
						CHECK(0);
					i += 3;
				} else {
					i++;
				}
				CHECK(o < n && frame[o] == c);
			}
			CHECK(o == n);
			break;
		}
		case SJF_T_HTMLFILE: {
			const char *in = W.buf + before + 11;
			size_t inl = W.len - before - 11 - 14;
			CHECK(has_prefix(&W, before, "<script>\np(") && has_suffix(&W, ");\n</script>\r\n"));
			CHECK(js_valid(in, inl) && in[0] == '"');
			CHECK(!memchr(in, '<', inl) && !memchr(in, '>', inl) && !memchr(in, '&', inl));
			CHECK(json_string_is(in, inl, F.buf, F.len));
			break;
		}
		case SJF_T_JSONP: {
			const char *in = W.buf + before + 7;
			size_t inl = W.len - before - 7 - 4;
			CHECK(has_prefix(&W, before, "/**/cb(") && has_suffix(&W, ");\r\n"));
			CHECK(js_valid(in, inl) && in[0] == '"');
			CHECK(json_string_is(in, inl, F.buf, F.len));
			break;
		}
		default:
			CHECK(0);
		}
	}
}

static void fuzz_route(const char *s, size_t n)
{
	struct sjf_route r;
	enum sjf_kind k = sjf_route(s, n, &r);

	CHECK(k == r.kind && k <= SJF_SESSION);
	CHECK((sjf_methods(&r) == 0) == (k == SJF_NOT_FOUND));
	if (k != SJF_SESSION) {
		CHECK(r.transport == SJF_T_NONE && !r.server && !r.session);
		return;
	}
	CHECK(r.transport > SJF_T_NONE && r.transport < SJF_T_COUNT);
	CHECK(r.server_len >= 1 && r.server_len <= SJF_ID_MAX && r.session_len >= 1 &&
	      r.session_len <= SJF_ID_MAX);
	CHECK(!memchr(r.server, '/', r.server_len) && !memchr(r.server, '.', r.server_len));
	CHECK(!memchr(r.session, '/', r.session_len) && !memchr(r.session, '.', r.session_len));
	W.len = 0;
	jw_raw(&W, "/", 1);
	jw_raw(&W, r.server, r.server_len);
	jw_raw(&W, "/", 1);
	jw_raw(&W, r.session, r.session_len);
	jw_raw(&W, "/", 1);
	jw_lit(&W, sjf_transport_name(r.transport));
	CHECK(W.len == n && memcmp(W.buf, s, n) == 0);
	CHECK(r.server == s + 1);
}

/* Message I of M is what js_str makes of D's string token V. */
static void same_as_js_str(uint32_t v, size_t i)
{
	size_t ml;
	const char *mp;
	char *u;
	int64_t un;

	CHECK(i < M.n);
	mp = sjf_msg(&M, i, &ml);
	u = malloc(js_rawlen(&D, v));
	un = js_str(&D, v, u, js_rawlen(&D, v));
	CHECK(un >= 0 && (size_t)un == ml && memcmp(u, mp, ml) == 0);
	free(u);
}

/* Decodes S and checks everything said in the header, item 1. */
static void fuzz_decode(const char *s, size_t n, unsigned flags)
{
	enum sjf_decode_rc rc = sjf_decode(s, n, flags, &M);
	bool valid = js_valid(s, n);

	CHECK(rc <= SJF_DEC_NOT_ARRAY);
	CHECK((rc == SJF_DEC_EMPTY) == (n == 0));
	if (rc == SJF_DEC_NOT_ARRAY)
		CHECK(valid);
	if (rc == SJF_DEC_BROKEN)
		CHECK(!valid);
	if (rc != SJF_DEC_OK)
		CHECK(M.n == 0);
	CHECK(sjf_decode_error(rc) ? rc != SJF_DEC_OK : rc == SJF_DEC_OK);

	/* The oracle: js_scan's view of valid JSON. */
	if (valid) {
		bool strings = true;
		uint32_t it = 0, v;
		size_t cnt = 0;

		D.depth_limit = JS_DEPTH_MAX;
		CHECK(js_scan(&D, s, n, 0) == RT_OK);
		if (js_type(&D, 0) == JS_ARRAY) {
			while (js_next_elem(&D, 0, &it, &v))
				strings = strings && js_type(&D, v) == JS_STRING;
		} else {
			strings = js_type(&D, 0) == JS_STRING && (flags & SJF_D_STRING);
		}
		CHECK(strings ? rc == SJF_DEC_OK : rc == SJF_DEC_NOT_ARRAY);
		if (strings && js_type(&D, 0) == JS_STRING) {
			same_as_js_str(0, cnt++);
		} else if (strings) {
			it = 0;
			while (js_next_elem(&D, 0, &it, &v))
				same_as_js_str(v, cnt++);
		}
		if (strings)
			CHECK(cnt == M.n);
	}
	if (rc != SJF_DEC_OK)
		return;

	/* Every message: valid UTF-8, quotes to valid JSON, round-trips. */
	Q.len = 0;
	for (size_t i = 0; i < M.n; i++) {
		size_t ml;
		const char *mp = sjf_msg(&M, i, &ml);

		CHECK(mp[ml] == '\0');
		CHECK(utf8_valid((const unsigned char *)mp, ml));
		W.len = 0;
		sjf_quote(&W, mp, ml);
		CHECK(js_valid(W.buf, W.len));
		CHECK(json_string_is(W.buf, W.len, mp, ml));
		sjf_list_add(&Q, mp, ml);
	}
	/* All of them as one frame: a valid array that decodes to the same. */
	T.len = 0;
	sjf_frame_msgs(&T, Q.buf, Q.len);
	if (M.n) {
		CHECK(js_valid(T.buf + 1, T.len - 1));
		CHECK(sjf_decode(T.buf + 1, T.len - 1, 0, &M2) == SJF_DEC_OK && M2.n == M.n);
		for (size_t i = 0; i < M.n; i++)
			CHECK(M2.v[i].len == M.v[i].len &&
			      memcmp(M2.text.buf + M2.v[i].off, M.text.buf + M.v[i].off, M.v[i].len) == 0);
	}
	check_wraps(T.buf, T.len);
}

static void fuzz_form(const char *s, size_t n)
{
	struct jw d = { 0 };
	enum sjf_form_rc rc;

	jw_lit(&d, "X");
	rc = sjf_form_d(s, n, &d);
	CHECK(rc <= SJF_FORM_EMPTY && d.buf[0] == 'X');
	CHECK((rc == SJF_FORM_EMPTY) == (rc != SJF_FORM_MISSING && d.len == 1));
	if (rc == SJF_FORM_MISSING)
		CHECK(d.len == 1);
	CHECK(d.len - 1 <= n);
	if (rc == SJF_FORM_OK)
		fuzz_decode(d.buf + 1, d.len - 1, 0);
	jw_free(&d);
}

static void fuzz_callback(const char *s, size_t n)
{
	char cb[SJF_CALLBACK_MAX + 1];
	size_t len = 99;
	enum sjf_callback_rc rc = sjf_query_callback(s, n, cb, &len);

	CHECK(rc <= SJF_CB_INVALID);
	if (rc != SJF_CB_OK) {
		CHECK(len == 0 && cb[0] == '\0');
		return;
	}
	CHECK(len >= 1 && len <= SJF_CALLBACK_MAX && strlen(cb) == len && sjf_callback_ok(cb, len));
	W.len = 0;
	sjf_prelude(&W, SJF_T_HTMLFILE, cb, len);
	CHECK(W.len == SJF_HTMLFILE_PAD + 4 && has_prefix(&W, 0, "<!doctype html>\n") &&
	      has_suffix(&W, " \r\n\r\n") && memmem(W.buf, W.len, cb, len));
	W.len = 0;
	sjf_wrap(&W, SJF_T_JSONP, cb, len, "o", 1);
	CHECK(W.len == len + 12 && has_prefix(&W, 0, "/**/") && memcmp(W.buf + 4, cb, len) == 0 &&
	      has_suffix(&W, "(\"o\");\r\n"));
}

static void fuzz_quote(const char *s, size_t n, unsigned flags)
{
	W.len = 0;
	sjf_quote_ex(&W, s, n, flags & (SJF_Q_HTML | SJF_Q_BARE));
	if (flags & SJF_Q_BARE) {
		/* The inside of a string: put the quotes around it. */
		T.len = 0;
		jw_raw(&T, "\"", 1);
		jw_raw(&T, W.buf, W.len);
		jw_raw(&T, "\"", 1);
	} else {
		T.len = 0;
		jw_raw(&T, W.buf, W.len);
	}
	CHECK(js_valid(T.buf, T.len));
	for (size_t i = 0; i < T.len; i++)
		CHECK((unsigned char)T.buf[i] >= 0x20);
	if (flags & SJF_Q_HTML)
		CHECK(!memchr(T.buf, '<', T.len) && !memchr(T.buf, '>', T.len) && !memchr(T.buf, '&', T.len));
	fffd(s, n, &F);
	CHECK(json_string_is(T.buf, T.len, F.buf, F.len));
	check_wraps(s, n);
}

static void fuzz_close(const char *s, size_t n)
{
	unsigned code = n >= 2 ? (unsigned)((unsigned char)s[0] << 8 | (unsigned char)s[1]) : 1000;

	W.len = 0;
	sjf_frame_close(&W, code, s, n);
	CHECK(has_prefix(&W, 0, "c[") && js_valid(W.buf + 1, W.len - 1));
	CHECK(sjf_decode(W.buf + 1, W.len - 1, 0, &M2) == SJF_DEC_NOT_ARRAY);
	D.depth_limit = 0;
	CHECK(js_scan(&D, W.buf + 1, W.len - 1, 0) == RT_OK && D.t[0].size == 2);
	fffd(s, n, &F);
	CHECK(json_string_is(js_raw(&D, 2), js_rawlen(&D, 2), F.buf, F.len));
}

static void fuzz_iframe(const char *s, size_t n)
{
	char etag[SJF_ETAG_LEN + 1];

	if (!sjf_script_url_ok(s, n))
		return;
	CHECK(!memchr(s, '"', n) && !memchr(s, '<', n) && !memchr(s, '>', n) && utf8_valid((const unsigned char *)s, n));
	W.len = 0;
	sjf_iframe_page(&W, s, n);
	CHECK(has_prefix(&W, 0, "<!DOCTYPE html>\n") && has_suffix(&W, "</html>\n") && memmem(W.buf, W.len, s, n));
	CHECK(sjf_etag(W.buf, W.len, etag) == RT_OK && strlen(etag) == SJF_ETAG_LEN && etag[0] == '"' &&
	      etag[SJF_ETAG_LEN - 1] == '"' && strspn(etag + 1, "0123456789abcdef") == 32);
}

static void fuzz_form_get(const char *s, size_t n)
{
	char key[8];
	size_t kl = n < 3 ? n : 3;

	memcpy(key, s, kl);
	key[kl] = '\0';
	W.len = 0;
	if (sjf_form_get(s + kl, n - kl, key, &W))
		CHECK(W.len <= n - kl);
	else
		CHECK(W.len == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data + 1;
	size_t n;
	unsigned flags;

	if (size == 0)
		return 0;
	n = size - 1;
	flags = data[0] >> 3;
	switch (data[0] & 7) {
	case 0: fuzz_route(s, n); break;
	case 1: fuzz_decode(s, n, flags & SJF_D_STRING); break;
	case 2: fuzz_form(s, n); break;
	case 3: fuzz_callback(s, n); break;
	case 4: fuzz_quote(s, n, flags); break;
	case 5: fuzz_close(s, n); break;
	case 6: fuzz_iframe(s, n); break;
	default: fuzz_form_get(s, n); break;
	}
	return 0;
}
