/*
 * test_sockjs_frame.c - the SockJS codec against the protocol suite's
 * expectations, byte for byte: URL routing (every 404 the suite checks),
 * methods and content types, message quoting (the suite's JSONEncoding
 * code point lists), frames and per-transport wrappings, the preludes and
 * the htmlfile head, payload decoding (escapes, surrogates, broken and
 * non-array input), forms, callbacks, /info, the iframe page and its ETag.
 */
#include "config.h"
#include "sockjs_frame.h"
#include "http.h"
#include "utf8.h"
#include "../tap.h"
#include "util.h"

#include <stdlib.h>

#define S(lit) lit, sizeof(lit) - 1

/* Whether W holds exactly the N bytes WANT; prints both when not. */
static int jw_is(const struct jw *w, const char *want, size_t n, const char *name)
{
	int pass = ok(w->len == n && memcmp(w->buf, want, n) == 0, "%s", name);

	if (!pass)
		printf("#   got  [%.*s] (%zu)\n#   want [%.*s] (%zu)\n", (int)w->len, w->buf, w->len,
		       (int)n, want, n);
	return pass;
}
#define JW_IS(w, lit, name) jw_is((w), lit, sizeof(lit) - 1, (name))

/* S[0..N) printable on one TAP line: bytes outside printable ASCII as \xHH.
 * The result lives until the next call. */
static const char *vis(const char *s, size_t n)
{
	static char buf[512];
	size_t o = 0;

	for (size_t i = 0; i < n && o + 5 < sizeof(buf); i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c < 0x7F && c != '\\')
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, sizeof(buf) - o, "\\x%02x", c);
	}
	buf[o] = '\0';
	return buf;
}

/* ---- routing ---------------------------------------------------------------- */

static const char *const not_found[] = {
	/* BaseUrlGreeting.test_notFound */
	"/a", "/a.html", "//", "///", "/a/a", "/a/a/", "/a/",
	/* SessionURLs.test_invalidPaths, + "/xhr" */
	"///xhr", "/a./a/xhr", "/a/a./xhr", "/././xhr", "//xhr", "////xhr",
	/* IframePage.test_invalidUrl */
	"/iframe.htm", "/iframe", "/IFRAME.HTML", "/IFRAME", "/iframe.HTML", "/iframe.xml", "/iframe-/.html",
	/* ours: no trailing slash, exact names, three segments */
	"/info/", "/INFO", "/info.json", "/websocket/", "/WEBSOCKET", "/iframeA.html", "/iframe.html/",
	"/iframe .html", "/a/a/xhr/", "/a/a/XHR", "/a/a/foo", "/a/a/", "/a/b/c/xhr", "/a/a/xhr_sendx",
	"/a/a/xhr?x", "a/a/xhr", "/a/a//xhr", "/a/a/xhr_", "/a/a/websocke", "/a.b/c/xhr", "/a/b.c/xhr",
	"/a b/c/xhr", "/a/\tb/xhr", "/a\x7f/c/xhr", "/a/b\x01/xhr", " /", "//info", "/./info",
};

static void test_route(void)
{
	struct sjf_route r;
	int bad = 0;

	is_int(sjf_route("", 0, &r), SJF_GREETING, "\"\" is the greeting");
	is_int(sjf_route(NULL, 0, &r), SJF_GREETING, "NULL, 0 is the greeting");
	is_int(sjf_route(S("/"), &r), SJF_GREETING, "\"/\" is the greeting");
	ok(r.transport == SJF_T_NONE && r.server == NULL && r.session_len == 0, "greeting has no session");
	is_int(sjf_route(S("/info"), &r), SJF_INFO, "/info");
	is_int(sjf_route(S("/websocket"), &r), SJF_RAW_WEBSOCKET, "/websocket is raw WebSocket");

	static const char *const iframes[] = {
		"/iframe.html", "/iframe-a.html", "/iframe-.html", "/iframe-0.1.2.html",
		"/iframe-0.1.2abc-dirty.2144.html", "/iframe-1.6.1.html", "/iframe_x.y-z.html",
		"/iframe..html", "/iframe.html.html",
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(iframes); i++)
		is_int(sjf_route(iframes[i], strlen(iframes[i]), &r), SJF_IFRAME, "%s is the iframe", iframes[i]);

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(not_found); i++) {
		struct sjf_route z;
		memset(&z, 0xAB, sizeof(z));
		if (sjf_route(not_found[i], strlen(not_found[i]), &z) != SJF_NOT_FOUND) {
			bad++;
			printf("#   routed: \"%s\"\n", vis(not_found[i], strlen(not_found[i])));
		}
		if (z.kind != SJF_NOT_FOUND || z.transport != SJF_T_NONE || z.server != NULL ||
		    z.session != NULL || z.server_len || z.session_len)
			bad++;
		if (sjf_methods(&z) != 0 || sjf_content_type(&z) != NULL)
			bad++;
	}
	is_int(bad, 0, "%zu paths are 404 with an empty route, no methods", ROTOR_ARRAY_LEN(not_found));
	/* Each suite 404 path on its own line, as the suite lists them. */
	for (size_t i = 0; i < 20; i++)
		is_int(sjf_route(not_found[i], strlen(not_found[i]), &r), SJF_NOT_FOUND, "404 %s",
		       not_found[i]);

	static const struct {
		const char *name;
		enum sjf_transport t;
	} names[] = {
		{ "websocket", SJF_T_WEBSOCKET }, { "xhr", SJF_T_XHR },
		{ "xhr_streaming", SJF_T_XHR_STREAMING }, { "xhr_send", SJF_T_XHR_SEND },
		{ "eventsource", SJF_T_EVENTSOURCE }, { "htmlfile", SJF_T_HTMLFILE },
		{ "jsonp", SJF_T_JSONP }, { "jsonp_send", SJF_T_JSONP_SEND },
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(names); i++) {
		char path[64];
		int n = snprintf(path, sizeof(path), "/000/abcdefgh/%s", names[i].name);
		ok(sjf_route(path, (size_t)n, &r) == SJF_SESSION && r.transport == names[i].t &&
		   r.server == path + 1 && r.server_len == 3 && r.session == path + 5 && r.session_len == 8,
		   "%s: session, transport, spans", path);
		is_str(sjf_transport_name(names[i].t), names[i].name, "transport name %s", names[i].name);
	}
	is_str(sjf_transport_name(SJF_T_NONE), "", "SJF_T_NONE has no name");
	is_str(sjf_transport_name((enum sjf_transport)99), "", "out-of-range transport has no name");

	/* SessionURLs.test_anyValue */
	static const char *const any[] = { "/a/a123/xhr", "/_/_123/xhr", "/1/123/xhr",
					   "/abcdefgh_i-j%20/abcdefg_i-j%20123/xhr", "/%2e/%2E/xhr",
					   "/\xc3\xa9/\xff\x80/xhr" };
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(any); i++)
		ok(sjf_route(any[i], strlen(any[i]), &r) == SJF_SESSION && r.transport == SJF_T_XHR,
		   "any value: %s", vis(any[i], strlen(any[i])));
	sjf_route(S("/abcdefgh_i-j%20/abcdefg_i-j%20123/xhr"), &r);
	ok(r.server_len == 15 && memcmp(r.server, "abcdefgh_i-j%20", 15) == 0, "server kept as sent");
	ok(r.session_len == 17 && memcmp(r.session, "abcdefg_i-j%20123", 17) == 0,
	   "session kept as sent, escapes not decoded");

	/* The 128-byte cap on each segment. */
	char path[400], id[200];
	memset(id, 'x', sizeof(id));
	snprintf(path, sizeof(path), "/%.*s/s/xhr", SJF_ID_MAX, id);
	is_int(sjf_route(path, strlen(path), &r), SJF_SESSION, "a 128-byte server is accepted");
	snprintf(path, sizeof(path), "/%.*s/s/xhr", SJF_ID_MAX + 1, id);
	is_int(sjf_route(path, strlen(path), &r), SJF_NOT_FOUND, "a 129-byte server is 404");
	snprintf(path, sizeof(path), "/000/%.*s/xhr", SJF_ID_MAX, id);
	ok(sjf_route(path, strlen(path), &r) == SJF_SESSION && r.session_len == SJF_ID_MAX,
	   "a 128-byte session is accepted");
	snprintf(path, sizeof(path), "/000/%.*s/xhr", SJF_ID_MAX + 1, id);
	is_int(sjf_route(path, strlen(path), &r), SJF_NOT_FOUND, "a 129-byte session is 404");

	/* PATH is not NUL-terminated: only N bytes count. */
	is_int(sjf_route("/infox", 5, &r), SJF_INFO, "only N bytes are read");
	is_int(sjf_route("/0/0/xhr_send", 8, &r), SJF_SESSION, "/0/0/xhr of a longer buffer");
	is_int(r.transport, SJF_T_XHR, "... is xhr");
}

static void test_methods(void)
{
	const uint64_t G = HTTP_METHOD_BIT(HTTP_GET), P = HTTP_METHOD_BIT(HTTP_POST),
		       O = HTTP_METHOD_BIT(HTTP_OPTIONS);
	const struct {
		const char *path;
		uint64_t methods;
		const char *ctype;
	} rows[] = {
		{ "", G, SJF_CTYPE_TEXT },
		{ "/", G, SJF_CTYPE_TEXT },
		{ "/info", G | O, "application/json; charset=UTF-8" },
		{ "/iframe.html", G, "text/html; charset=UTF-8" },
		{ "/websocket", G, NULL },
		{ "/0/0/websocket", G, NULL },
		{ "/0/0/xhr", P | O, "application/javascript; charset=UTF-8" },
		{ "/0/0/xhr_streaming", P | O, "application/javascript; charset=UTF-8" },
		{ "/0/0/xhr_send", P | O, "text/plain; charset=UTF-8" },
		{ "/0/0/eventsource", G, "text/event-stream" },
		{ "/0/0/htmlfile", G, "text/html; charset=UTF-8" },
		{ "/0/0/jsonp", G | O, "application/javascript; charset=UTF-8" },
		{ "/0/0/jsonp_send", P, "text/plain; charset=UTF-8" },
	};
	struct sjf_route r;

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(rows); i++) {
		sjf_route(rows[i].path, strlen(rows[i].path), &r);
		is_int(sjf_methods(&r), rows[i].methods, "methods of \"%s\"", rows[i].path);
		if (rows[i].ctype)
			is_str(sjf_content_type(&r), rows[i].ctype, "content type of \"%s\"", rows[i].path);
		else
			ok(sjf_content_type(&r) == NULL, "no content type for \"%s\"", rows[i].path);
	}
	sjf_route(S("/0/0/websocket"), &r);
	ok((sjf_methods(&r) & P) == 0, "POST on websocket is 405 (suite: Allow: GET)");

	is_int(sjf_transport_flags(SJF_T_WEBSOCKET), SJF_TF_RECEIVE | SJF_TF_UPGRADE, "websocket flags");
	is_int(sjf_transport_flags(SJF_T_XHR), SJF_TF_RECEIVE | SJF_TF_CORS, "xhr flags");
	is_int(sjf_transport_flags(SJF_T_XHR_STREAMING), SJF_TF_RECEIVE | SJF_TF_STREAMING | SJF_TF_CORS,
	       "xhr_streaming flags");
	is_int(sjf_transport_flags(SJF_T_XHR_SEND), SJF_TF_SEND | SJF_TF_CORS, "xhr_send flags");
	is_int(sjf_transport_flags(SJF_T_EVENTSOURCE), SJF_TF_RECEIVE | SJF_TF_STREAMING | SJF_TF_CORS,
	       "eventsource flags");
	is_int(sjf_transport_flags(SJF_T_HTMLFILE), SJF_TF_RECEIVE | SJF_TF_STREAMING | SJF_TF_CALLBACK,
	       "htmlfile flags");
	is_int(sjf_transport_flags(SJF_T_JSONP), SJF_TF_RECEIVE | SJF_TF_CALLBACK, "jsonp flags");
	is_int(sjf_transport_flags(SJF_T_JSONP_SEND), SJF_TF_SEND, "jsonp_send flags");
	is_int(sjf_transport_flags(SJF_T_NONE), 0, "no flags for SJF_T_NONE");
	is_int(sjf_transport_flags((enum sjf_transport)-1), 0, "no flags out of range");
}

/* ---- quoting ---------------------------------------------------------------- */

/* escapable_by_server of the suite: [\x00-\x1f\u200c-\u200f\u2028-\u202f
 * \u2060-\u206f\ufff0-\uffff]. */
static bool server_escapes(uint32_t cp)
{
	return cp <= 0x1F || (cp >= 0x200C && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202F) ||
	       (cp >= 0x2060 && cp <= 0x206F) || (cp >= 0xFFF0 && cp <= 0xFFFF);
}

static void test_quote(void)
{
	struct jw w = { 0 };

	sjf_quote(&w, S("abc"));
	JW_IS(&w, "\"abc\"", "plain ASCII");
	w.len = 0;
	sjf_quote(&w, NULL, 0);
	JW_IS(&w, "\"\"", "empty (NULL, 0)");
	w.len = 0;
	sjf_quote(&w, S("\"\\/\b\f\n\r\t"));
	JW_IS(&w, "\"\\\"\\\\/\\b\\f\\n\\r\\t\"", "short escapes as JSON.stringify writes them; '/' raw");
	w.len = 0;
	sjf_quote(&w, S("\x00\x01\x0b\x1f\x7f"));
	JW_IS(&w, "\"\\u0000\\u0001\\u000b\\u001f\x7f\"", "other controls as \\u00xx lowercase; DEL raw");
	w.len = 0;
	sjf_quote(&w, S("<a href='x'>&amp;</a>"));
	JW_IS(&w, "\"<a href='x'>&amp;</a>\"", "< > & raw without SJF_Q_HTML");
	w.len = 0;
	sjf_quote_ex(&w, S("</script>&"), SJF_Q_HTML);
	JW_IS(&w, "\"\\u003c/script\\u003e\\u0026\"", "< > & escaped with SJF_Q_HTML");
	w.len = 0;
	sjf_quote_ex(&w, S("a\"b\n"), SJF_Q_BARE);
	JW_IS(&w, "a\\\"b\\n", "SJF_Q_BARE leaves out the quotes");
	w.len = 0;
	sjf_quote_ex(&w, S("<\xe2\x80\xa8"), SJF_Q_BARE | SJF_Q_HTML);
	JW_IS(&w, "\\u003c\\u2028", "SJF_Q_BARE | SJF_Q_HTML");

	/* Joining replies inside one message, as Centrifugo batches them. */
	w.len = 0;
	jw_lit(&w, "a[\"");
	sjf_quote_ex(&w, S("{\"id\":1}"), SJF_Q_BARE);
	jw_lit(&w, "\\n");
	sjf_quote_ex(&w, S("{\"id\":2}"), SJF_Q_BARE);
	jw_lit(&w, "\"]");
	JW_IS(&w, "a[\"{\\\"id\\\":1}\\n{\\\"id\\\":2}\"]", "two replies joined by \\n in one message");
	ok(js_valid(w.buf + 1, w.len - 1), "... the frame's array is valid JSON");

	/* Non-ASCII: raw unless listed; astral as escaped surrogate pairs. */
	w.len = 0;
	sjf_quote(&w, S("\xc3\xa9\xe2\x82\xac\xe2\x80\x8b\xe2\x80\x8c\xe2\x80\xa8\xe2\x80\xa9\xe2\x81\xaf\xe2\x81\xb0"));
	JW_IS(&w, "\"\xc3\xa9\xe2\x82\xac\xe2\x80\x8b\\u200c\\u2028\\u2029\\u206f\xe2\x81\xb0\"",
	      "U+00E9 U+20AC U+200B raw; U+200C U+2028 U+2029 U+206F escaped; U+2070 raw");
	w.len = 0;
	sjf_quote(&w, S("\xef\xbf\xaf\xef\xbf\xb0\xef\xbf\xbd\xef\xbf\xbe\xef\xbf\xbf"));
	JW_IS(&w, "\"\xef\xbf\xaf\\ufff0\\ufffd\\ufffe\\uffff\"", "U+FFEF raw; U+FFF0..U+FFFF escaped");
	w.len = 0;
	sjf_quote(&w, S("\xf0\x9f\x98\x80"));
	JW_IS(&w, "\"\\ud83d\\ude00\"", "U+1F600 as \\ud83d\\ude00");
	w.len = 0;
	sjf_quote(&w, S("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"));
	JW_IS(&w, "\"\\ud800\\udc00\\udbff\\udfff\"", "U+10000 and U+10FFFF as surrogate pairs");

	/* Not UTF-8: U+FFFD per bad byte, escaped like the rest of U+FFF0-U+FFFF. */
	static const struct {
		const char *in;
		size_t n;
		const char *want;
	} bad[] = {
		{ S("\xff"), "\"\\ufffd\"" },
		{ S("a\xc3"), "\"a\\ufffd\"" },
		{ S("\xc3(x"), "\"\\ufffd(x\"" },
		{ S("\xc0\xaf"), "\"\\ufffd\\ufffd\"" },
		{ S("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"" },
		{ S("\xf4\x90\x80\x80"), "\"\\ufffd\\ufffd\\ufffd\\ufffd\"" },
		{ S("\xe2\x82"), "\"\\ufffd\\ufffd\"" },
		{ S("\x80\xe2\x82\xac"), "\"\\ufffd\xe2\x82\xac\"" },
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(bad); i++) {
		w.len = 0;
		sjf_quote(&w, bad[i].in, bad[i].n);
		jw_is(&w, bad[i].want, strlen(bad[i].want), "invalid UTF-8 becomes \\ufffd");
	}

	/*
	 * JSONEncoding.test_xhr_server_encodes: every code point from U+00FF to
	 * U+FFFF that escapable_by_server matches, sent raw, must come back as
	 * exactly \uxxxx (lowercase), in one message.
	 */
	struct jw in = { 0 }, want = { 0 };
	int nesc = 0, nraw = 0, wrong = 0;
	jw_raw(&want, "\"", 1);
	for (uint32_t cp = 255; cp <= 0xFFFF; cp++) {
		char u[8];
		if ((cp >= 0xD800 && cp <= 0xDFFF) || !server_escapes(cp))
			continue;
		jw_reserve(&in, 4);
		in.len += utf8_put(in.buf + in.len, cp);
		snprintf(u, sizeof(u), "\\u%04x", cp);
		jw_raw(&want, u, 6);
		nesc++;
	}
	jw_raw(&want, "\"", 1);
	w.len = 0;
	sjf_quote(&w, in.buf, in.len);
	is_int(nesc, 4 + 8 + 16 + 16, "the suite's server killer string has 44 code points");
	nesc = 0;
	jw_is(&w, want.buf, want.len, "server killer string comes back escaped, byte for byte");

	/* And one by one, over the whole BMP: listed ones escaped, the rest raw. */
	for (uint32_t cp = 0; cp <= 0xFFFF; cp++) {
		char u[8], raw[4];
		size_t rl;
		if (cp >= 0xD800 && cp <= 0xDFFF)
			continue;
		rl = utf8_put(raw, cp);
		w.len = 0;
		sjf_quote_ex(&w, raw, rl, SJF_Q_BARE);
		if (cp == '"' || cp == '\\' || cp == '\b' || cp == '\f' || cp == '\n' || cp == '\r' ||
		    cp == '\t') {
			wrong += !(w.len == 2 && w.buf[0] == '\\');
		} else if (server_escapes(cp)) {
			snprintf(u, sizeof(u), "\\u%04x", cp);
			wrong += !(w.len == 6 && memcmp(w.buf, u, 6) == 0);
			nesc++;
		} else {
			wrong += !(w.len == rl && memcmp(w.buf, raw, rl) == 0);
			nraw++;
		}
	}
	is_int(wrong, 0, "each BMP code point: escaped lowercase iff the suite lists it, else raw");
	is_int(nesc, 32 - 5 + 44, "\\u-escaped BMP code points (controls but the 5 short ones, + 44)");
	is_int(nraw, 0x10000 - 0x800 - 7 - (32 - 5) - 44, "all other BMP code points raw");

	/* Everything the quoting writes is valid JSON and decodes back. */
	struct sjf_msgs m = { 0 };
	struct jw arr = { 0 };
	jw_raw(&arr, "[", 1);
	sjf_quote(&arr, in.buf, in.len);
	jw_raw(&arr, "]", 1);
	ok(js_valid(arr.buf, arr.len), "quoted killer string is valid JSON");
	size_t ml;
	const char *mp;
	ok(sjf_decode(arr.buf, arr.len, 0, &m) == SJF_DEC_OK && m.n == 1 &&
	   (mp = sjf_msg(&m, 0, &ml)) && ml == in.len && memcmp(mp, in.buf, ml) == 0,
	   "... and decodes back to the raw characters");

	sjf_msgs_free(&m);
	jw_free(&arr);
	jw_free(&in);
	jw_free(&want);
	jw_free(&w);
}

/* ---- frames and wrappings ------------------------------------------------------- */

static void test_frames(void)
{
	struct jw w = { 0 }, list = { 0 };

	sjf_frame_open(&w);
	JW_IS(&w, "o", "open frame");
	w.len = 0;
	sjf_frame_heartbeat(&w);
	JW_IS(&w, "h", "heartbeat frame");
	w.len = 0;
	sjf_frame_close(&w, 3000, S("Go away!"));
	JW_IS(&w, "c[3000,\"Go away!\"]", "close frame 3000 Go away!");
	w.len = 0;
	sjf_frame_close(&w, 2010, S("Another connection still open"));
	JW_IS(&w, "c[2010,\"Another connection still open\"]", "close frame 2010");
	w.len = 0;
	sjf_frame_close(&w, 4509, S("say \"hi\"\n\xe2\x80\xa8"));
	JW_IS(&w, "c[4509,\"say \\\"hi\\\"\\n\\u2028\"]", "close reason quoted by the same rules");
	w.len = 0;
	sjf_frame_close(&w, 1000, NULL, 0);
	JW_IS(&w, "c[1000,\"\"]", "close with an empty reason");

	sjf_list_add(&list, S("x"));
	JW_IS(&list, "\"x\"", "list of one");
	sjf_list_add(&list, S("{\"id\":1}"));
	sjf_list_add(&list, NULL, 0);
	JW_IS(&list, "\"x\",\"{\\\"id\\\":1}\",\"\"", "list of three, comma-separated");
	w.len = 0;
	sjf_frame_msgs(&w, list.buf, list.len);
	JW_IS(&w, "a[\"x\",\"{\\\"id\\\":1}\",\"\"]", "message frame");
	ok(js_valid(w.buf + 1, w.len - 1), "message frame array is valid JSON");

	/* The wrappings of the suite's frames. */
	static const struct {
		enum sjf_transport t;
		const char *frame, *want;
	} wraps[] = {
		{ SJF_T_WEBSOCKET, "o", "o" },
		{ SJF_T_WEBSOCKET, "a[\"a\"]", "a[\"a\"]" },
		{ SJF_T_XHR, "o", "o\n" },
		{ SJF_T_XHR, "a[\"a\"]", "a[\"a\"]\n" },
		{ SJF_T_XHR, "c[2010,\"Another connection still open\"]",
		  "c[2010,\"Another connection still open\"]\n" },
		{ SJF_T_XHR_STREAMING, "a[\"x\"]", "a[\"x\"]\n" },
		{ SJF_T_EVENTSOURCE, "o", "data: o\r\n\r\n" },
		{ SJF_T_EVENTSOURCE, "a[\"x\"]", "data: a[\"x\"]\r\n\r\n" },
		{ SJF_T_EVENTSOURCE, "a[\"  \\u0000\\n\\r \"]", "data: a[\"  \\u0000\\n\\r \"]\r\n\r\n" },
		{ SJF_T_EVENTSOURCE, "a[\"100%\"]", "data: a[\"100%25\"]\r\n\r\n" },
		{ SJF_T_EVENTSOURCE, "%\r\n%", "data: %25%0D%0A%25\r\n\r\n" },
		{ SJF_T_HTMLFILE, "o", "<script>\np(\"o\");\n</script>\r\n" },
		{ SJF_T_HTMLFILE, "a[\"x\"]", "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n" },
		{ SJF_T_HTMLFILE, "a[\"</script>&\"]",
		  "<script>\np(\"a[\\\"\\u003c/script\\u003e\\u0026\\\"]\");\n</script>\r\n" },
		{ SJF_T_HTMLFILE, "a[\"\\u2028\\n\"]", "<script>\np(\"a[\\\"\\\\u2028\\\\n\\\"]\");\n</script>\r\n" },
		{ SJF_T_JSONP, "o", "/**/callback(\"o\");\r\n" },
		{ SJF_T_JSONP, "a[\"x\"]", "/**/callback(\"a[\\\"x\\\"]\");\r\n" },
		{ SJF_T_JSONP, "c[3000,\"Go away!\"]", "/**/callback(\"c[3000,\\\"Go away!\\\"]\");\r\n" },
		{ SJF_T_JSONP, "a[\"abc\",\"%61bc\"]", "/**/callback(\"a[\\\"abc\\\",\\\"%61bc\\\"]\");\r\n" },
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(wraps); i++) {
		w.len = 0;
		sjf_wrap(&w, wraps[i].t, S("callback"), wraps[i].frame, strlen(wraps[i].frame));
		jw_is(&w, wraps[i].want, strlen(wraps[i].want), sjf_transport_name(wraps[i].t));
	}
	/* A NUL byte in an eventsource frame. */
	w.len = 0;
	sjf_wrap(&w, SJF_T_EVENTSOURCE, NULL, 0, S("a\0b"));
	JW_IS(&w, "data: a%00b\r\n\r\n", "eventsource: NUL as %00");
	/* Wrapping appends. */
	w.len = 0;
	sjf_wrap(&w, SJF_T_XHR, NULL, 0, S("o"));
	sjf_wrap(&w, SJF_T_XHR, NULL, 0, S("h"));
	JW_IS(&w, "o\nh\n", "wrappings append");
	/* The suite's response-limit message through htmlfile. */
	char big[4096 + 16];
	struct jw f = { 0 };
	memset(big, 'x', 4096);
	list.len = 0;
	sjf_list_add(&list, big, 4096);
	sjf_frame_msgs(&f, list.buf, list.len);
	w.len = 0;
	sjf_wrap(&w, SJF_T_HTMLFILE, NULL, 0, f.buf, f.len);
	ok(w.len == 16 + 4096 + 18 && memcmp(w.buf, "<script>\np(\"a[\\\"", 16) == 0 &&
	   memcmp(w.buf + 16 + 4096, "\\\"]\");\n</script>\r\n", 18) == 0, "htmlfile: 4096-byte message");
	jw_free(&f);

	/* Preludes. */
	w.len = 0;
	sjf_prelude(&w, SJF_T_XHR_STREAMING, NULL, 0);
	ok(w.len == 2049 && w.len == SJF_XHR_PRELUDE_LEN && w.buf[2048] == '\n' &&
	   memchr(w.buf, '\n', 2048) == NULL && strspn(w.buf, "h") == 2048,
	   "xhr_streaming prelude: 2048 h and a newline");
	w.len = 0;
	sjf_prelude(&w, SJF_T_EVENTSOURCE, NULL, 0);
	JW_IS(&w, "\r\n", "eventsource prelude");
	for (int t = SJF_T_NONE; t < SJF_T_COUNT; t++) {
		if (t == SJF_T_XHR_STREAMING || t == SJF_T_EVENTSOURCE || t == SJF_T_HTMLFILE)
			continue;
		w.len = 0;
		sjf_prelude(&w, (enum sjf_transport)t, NULL, 0);
		is_int(w.len, 0, "no prelude for %s", sjf_transport_name((enum sjf_transport)t));
	}

	/* HtmlFile.test_transport: the head, stripped, is the template. */
	static const char head[] =
		"<!doctype html>\n"
		"<html><head>\n"
		"  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n"
		"  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n"
		"</head><body><h2>Don't panic!</h2>\n"
		"  <script>\n"
		"    document.domain = document.domain;\n"
		"    var c = parent.callback;\n"
		"    c.start();\n"
		"    function p(d) {c.message(d);};\n"
		"    window.onload = function() {c.stop();};\n"
		"  </script>";
	w.len = 0;
	sjf_prelude(&w, SJF_T_HTMLFILE, S("callback"));
	size_t hl = sizeof(head) - 1, k;
	ok(w.len > hl && memcmp(w.buf, head, hl) == 0, "htmlfile head: the template, callback substituted");
	for (k = hl; k < w.len && (w.buf[k] == ' ' || w.buf[k] == '\n' || w.buf[k] == '\r'); k++)
		;
	is_int(k, w.len, "htmlfile head: only whitespace after the template");
	ok(w.len > 1024, "htmlfile head is longer than 1024 bytes (Safari)");
	is_int(w.len, SJF_HTMLFILE_PAD + 4, "htmlfile head: padded to 1037 bytes, then CRLF CRLF");
	ok(memcmp(w.buf + w.len - 4, "\r\n\r\n", 4) == 0 && w.buf[w.len - 5] == ' ',
	   "htmlfile head ends with spaces and \\r\\n\\r\\n");
	w.len = 0;
	sjf_prelude(&w, SJF_T_HTMLFILE, S("_jp.abcdefghijklmnopqrstuvwxyz0"));
	is_int(w.len, SJF_HTMLFILE_PAD + 4, "htmlfile head with a 31-char callback: same length");

	jw_free(&list);
	jw_free(&w);
}

/* ---- decoding --------------------------------------------------------------------- */

static struct sjf_msgs dec_m;

/* Decodes IN and checks the result code and the messages (WANT: NULL-ended
 * list of expected messages; each a literal, so no NUL inside). */
static void dec_is(const char *in, size_t n, unsigned flags, enum sjf_decode_rc rc,
		   const char *const *want, const char *name)
{
	struct sjf_msgs *const mm = &dec_m;
	size_t cnt = 0, ml;
	bool same = true;

	enum sjf_decode_rc got = sjf_decode(in, n, flags, mm);
	for (; want && want[cnt]; cnt++)
		if (cnt >= mm->n || (ml = mm->v[cnt].len, ml != strlen(want[cnt])) ||
		    memcmp(sjf_msg(mm, cnt, &ml), want[cnt], ml) != 0 || mm->text.buf[mm->v[cnt].off + ml] != '\0')
			same = false;
	if (!ok(got == rc && mm->n == cnt && same, "decode %s", name ? name : vis(in, n)))
		printf("#   rc %d (want %d), %zu messages (want %zu)\n", got, rc, mm->n, cnt);
}
#define W(...) (const char *const[]){ __VA_ARGS__, NULL }

/* sjf_wrap_head/piece/tail give sjf_wrap's bytes for a frame cut into
 * pieces between characters: how the transport wraps a quoted message once
 * and shares it. */
static void test_wrap_pieces(void)
{
	static const enum sjf_transport ts[] = { SJF_T_WEBSOCKET, SJF_T_XHR, SJF_T_XHR_STREAMING,
						 SJF_T_EVENTSOURCE, SJF_T_HTMLFILE, SJF_T_JSONP };
	/* A frame of two quoted messages with everything the wrappings escape:
	 * quotes, backslashes, '%', '<' '>' '&', escapes, raw UTF-8. */
	static const char *const pieces[] = {
		"a[\"", "{\\\"data\\\":\\\"100% </script> & \\u2028\\\"}", "\\n",
		"h\xc3\xa9llo \xe2\x82\xac \\ud83d\\ude00", "\"]",
	};
	struct jw whole = { 0 }, frame = { 0 }, parts = { 0 };

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(pieces); i++)
		jw_lit(&frame, pieces[i]);
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(ts); i++) {
		whole.len = parts.len = 0;
		sjf_wrap(&whole, ts[i], S("cb"), frame.buf, frame.len);
		sjf_wrap_head(&parts, ts[i], S("cb"));
		for (size_t k = 0; k < ROTOR_ARRAY_LEN(pieces); k++)
			sjf_wrap_piece(&parts, ts[i], pieces[k], strlen(pieces[k]));
		sjf_wrap_tail(&parts, ts[i]);
		jw_is(&parts, whole.buf, whole.len, sjf_transport_name(ts[i]));
	}
	/* An empty piece adds nothing. */
	parts.len = 0;
	sjf_wrap_piece(&parts, SJF_T_JSONP, NULL, 0);
	ok(parts.len == 0, "an empty piece adds nothing");
	jw_free(&whole);
	jw_free(&frame);
	jw_free(&parts);
}

static void test_decode(void)
{
	struct sjf_msgs m = { 0 };
	size_t ml;
	const char *mp;

	dec_is(S("[\"a\"]"), 0, SJF_DEC_OK, W("a"), "[\"a\"]");
	dec_is(S("[]"), 0, SJF_DEC_OK, NULL, "[] (no messages)");
	dec_is(S(" \t\r\n[ \n]\n"), 0, SJF_DEC_OK, NULL, "[ ] with whitespace");
	dec_is(S(" [ \"a\" ,\"b\",\n\"\" ] "), 0, SJF_DEC_OK, W("a", "b", ""), "three with whitespace");
	dec_is(S("[\"{\\\"id\\\":1,\\\"connect\\\":{}}\"]"), 0, SJF_DEC_OK, W("{\"id\":1,\"connect\":{}}"),
	       "a Centrifugo command");
	dec_is(S("[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"]"), 0, SJF_DEC_OK, W("\"\\/\b\f\n\r\t"), "short escapes");
	dec_is(S("[\"\\u0041\\u00e9\\u00E9\\u20ac\\uFFFF\"]"), 0, SJF_DEC_OK,
	       W("A\xc3\xa9\xc3\xa9\xe2\x82\xac\xef\xbf\xbf"), "\\u escapes, either case");
	dec_is(S("[\"\\ud83d\\ude00\"]"), 0, SJF_DEC_OK, W("\xf0\x9f\x98\x80"), "surrogate pair -> U+1F600");
	dec_is(S("[\"\\uD800\\uDC00\\udbff\\udfff\"]"), 0, SJF_DEC_OK, W("\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"),
	       "surrogate pairs at both ends");
	dec_is(S("[\"\\ud800\"]"), 0, SJF_DEC_OK, W("\xef\xbf\xbd"), "lone high surrogate -> U+FFFD");
	dec_is(S("[\"\\udc00x\"]"), 0, SJF_DEC_OK, W("\xef\xbf\xbdx"), "lone low surrogate -> U+FFFD");
	dec_is(S("[\"\\ude00\\ud83d\"]"), 0, SJF_DEC_OK, W("\xef\xbf\xbd\xef\xbf\xbd"), "reversed pair -> 2 U+FFFD");
	dec_is(S("[\"\\ud800\\u0041\"]"), 0, SJF_DEC_OK, W("\xef\xbf\xbd" "A"), "high then non-surrogate");
	dec_is(S("[\"\\ud800\\ud800\\udc00\"]"), 0, SJF_DEC_OK, W("\xef\xbf\xbd\xf0\x90\x80\x80"),
	       "high, then a pair");
	dec_is(S("[\"\\ud800\\n\"]"), 0, SJF_DEC_OK, W("\xef\xbf\xbd\n"), "high then \\n");
	dec_is(S("[\"x\\ud83d\"]"), 0, SJF_DEC_OK, W("x\xef\xbf\xbd"), "high at the end of the string");
	dec_is(S("[\"\xc3\xa9\xf0\x9f\x98\x80\"]"), 0, SJF_DEC_OK, W("\xc3\xa9\xf0\x9f\x98\x80"), "raw UTF-8 kept");
	dec_is(S("[\"a\xff" "b\xc3\"]"), 0, SJF_DEC_OK, W("a\xef\xbf\xbd" "b\xef\xbf\xbd"),
	       "raw bytes that are not UTF-8 -> U+FFFD each");
	dec_is(S("[\"\xed\xa0\x80\"]"), 0, SJF_DEC_OK, W("\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"),
	       "a raw UTF-8 surrogate -> 3 U+FFFD");
	dec_is(S("[\"%61bc\"]"), 0, SJF_DEC_OK, W("%61bc"), "percent signs are not decoded");

	/* A message with a NUL in it. */
	ok(sjf_decode(S("[\"a\\u0000b\"]"), 0, &m) == SJF_DEC_OK && m.n == 1 &&
	   (mp = sjf_msg(&m, 0, &ml)) && ml == 3 && memcmp(mp, "a\0b", 3) == 0 && mp[3] == '\0',
	   "\\u0000 -> a NUL byte inside the message");

	/* Empty, broken, not an array (xhr_send / jsonp_send errors). */
	dec_is("", 0, 0, SJF_DEC_EMPTY, NULL, "empty body");
	dec_is(NULL, 0, SJF_D_STRING, SJF_DEC_EMPTY, NULL, "empty body (NULL)");
	static const char *const broken[] = {
		"[\"x", "[\"a\"", "[", "]", " ", "\n", "[\"a\",]", "[,]", "[,\"a\"]", "[\"a\" \"b\"]",
		"[\"a\"] x", "[\"a\"]]", "[\"a\"][]", "[\"\\x\"]", "[\"\\u12\"]", "[\"\\u12g4\"]",
		"[\"\\ud800\\u12\"]", "[\"\\ud800\\uzzzz\"]", "[\"a\nb\"]", "[\"\t\"]", "['a']", "[a]",
		"{", "nul", "[\"\\\"]", "[\"\\U0041\"]", "\xef\xbb\xbf[\"a\"]", "[\"a\"]\x00",
		"{\"a\":\"\xff\"}", "[\"\\", "[\"\\u",
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(broken); i++) {
		size_t n = strlen(broken[i]) + (i == 27);   /* the one with a NUL */
		dec_is(broken[i], n, SJF_D_STRING, SJF_DEC_BROKEN, NULL, NULL);
	}
	static const char *const not_array[] = {
		"{}", "{\"a\":[\"x\"]}", "1", "null", "true", "[1]", "[\"a\",1]", "[null]", "[[\"a\"]]",
		"[\"a\",{}]", "[{\"a\":\"b\"}]", "\"a\"", " \"a\" ", "[\"a\",[]]", "[\"a\", \"\\ud800\", false]",
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(not_array); i++)
		dec_is(not_array[i], strlen(not_array[i]), 0, SJF_DEC_NOT_ARRAY, NULL, NULL);

	/* A bare string, when the flag allows it (sockjs-node on WebSocket). */
	dec_is(S("\"a\""), SJF_D_STRING, SJF_DEC_OK, W("a"), "bare string with SJF_D_STRING");
	dec_is(S(" \"\\ud83d\\ude00\" "), SJF_D_STRING, SJF_DEC_OK, W("\xf0\x9f\x98\x80"), "bare string, spaces");
	dec_is(S("\"a\" \"b\""), SJF_D_STRING, SJF_DEC_BROKEN, NULL, "two bare strings");
	dec_is(S("[\"a\",\"b\"]"), SJF_D_STRING, SJF_DEC_OK, W("a", "b"), "arrays still work with SJF_D_STRING");
	dec_is(S("1"), SJF_D_STRING, SJF_DEC_NOT_ARRAY, NULL, "a number with SJF_D_STRING");

	/* A failure leaves no messages behind; the struct is reused. */
	ok(sjf_decode(S("[\"a\",\"b\"]"), 0, &m) == SJF_DEC_OK && m.n == 2, "two messages");
	ok(sjf_decode(S("[\"a\",\"b\",1]"), 0, &m) == SJF_DEC_NOT_ARRAY && m.n == 0 && m.text.len == 0,
	   "after NOT_ARRAY no messages remain");
	ok(sjf_decode(S("[\"a\",\"b"), 0, &m) == SJF_DEC_BROKEN && m.n == 0, "after BROKEN no messages remain");
	ok(sjf_decode(S("[\"c\"]"), 0, &m) == SJF_DEC_OK && m.n == 1 && (mp = sjf_msg(&m, 0, &ml)) &&
	   ml == 1 && *mp == 'c', "reuse after failures");

	/* Many messages grow the index. */
	struct jw big = { 0 };
	jw_raw(&big, "[", 1);
	for (int i = 0; i < 1000; i++) {
		char s[16];
		int l = snprintf(s, sizeof(s), "%s\"m%d\"", i ? "," : "", i);
		jw_raw(&big, s, (size_t)l);
	}
	jw_raw(&big, "]", 1);
	bool all = sjf_decode(big.buf, big.len, 0, &m) == SJF_DEC_OK && m.n == 1000;
	for (size_t i = 0; all && i < m.n; i++) {
		char s[32];
		snprintf(s, sizeof(s), "m%zu", i);
		mp = sjf_msg(&m, i, &ml);
		all = ml == strlen(s) && memcmp(mp, s, ml) == 0;
	}
	ok(all, "1000 messages, in order");
	jw_free(&big);

	/*
	 * JSONEncoding.test_xhr_server_decodes: every \uxxxx escape decodes, and
	 * the round trip with sjf_quote gives the same characters.
	 */
	int wrong = 0;
	for (uint32_t cp = 0; cp <= 0xFFFF; cp++) {
		char in[16], want[4];
		size_t wl;
		snprintf(in, sizeof(in), cp & 1 ? "[\"\\u%04x\"]" : "[\"\\u%04X\"]", cp);
		if (cp >= 0xD800 && cp <= 0xDFFF)
			wl = utf8_put(want, 0xFFFD);
		else
			wl = utf8_put(want, cp);
		if (sjf_decode(in, strlen(in), 0, &m) != SJF_DEC_OK || m.n != 1 ||
		    (mp = sjf_msg(&m, 0, &ml), ml != wl) || memcmp(mp, want, wl) != 0)
			wrong++;
	}
	is_int(wrong, 0, "every \\uXXXX decodes (surrogates alone to U+FFFD)");
	wrong = 0;
	for (uint32_t cp = 0; cp <= 0x10FFFF; cp += cp < 0x10000 ? 1 : 97) {
		char raw[4];
		size_t rl;
		struct jw q = { 0 };
		if (cp >= 0xD800 && cp <= 0xDFFF)
			continue;
		rl = utf8_put(raw, cp);
		jw_raw(&q, "[", 1);
		sjf_quote(&q, raw, rl);
		jw_raw(&q, "]", 1);
		if (!js_valid(q.buf, q.len) || sjf_decode(q.buf, q.len, 0, &m) != SJF_DEC_OK || m.n != 1 ||
		    (mp = sjf_msg(&m, 0, &ml), ml != rl) || memcmp(mp, raw, rl) != 0)
			wrong++;
		jw_free(&q);
	}
	is_int(wrong, 0, "decode(quote(c)) == c for every BMP and many astral characters");

	is_str(sjf_decode_error(SJF_DEC_EMPTY), "Payload expected.", "EMPTY -> Payload expected.");
	is_str(sjf_decode_error(SJF_DEC_NOT_ARRAY), "Payload expected.", "NOT_ARRAY -> Payload expected.");
	is_str(sjf_decode_error(SJF_DEC_BROKEN), "Broken JSON encoding.", "BROKEN -> Broken JSON encoding.");
	ok(sjf_decode_error(SJF_DEC_OK) == NULL, "OK has no error text");

	sjf_msgs_free(&m);
	ok(m.v == NULL && m.text.buf == NULL && m.n == 0, "sjf_msgs_free");
	sjf_msgs_free(&dec_m);
}

/* ---- forms and callbacks ------------------------------------------------------------ */

static void test_forms(void)
{
	struct jw w = { 0 };

	static const struct {
		const char *body;
		enum sjf_form_rc rc;
		const char *d;
	} forms[] = {
		{ "d=%5B%22x%22%5D", SJF_FORM_OK, "[\"x\"]" },
		{ "d=%5B%22x", SJF_FORM_OK, "[\"x" },
		{ "d=%5B%5D", SJF_FORM_OK, "[]" },
		{ "", SJF_FORM_MISSING, "" },
		{ "d=", SJF_FORM_EMPTY, "" },
		{ "p=p", SJF_FORM_MISSING, "" },
		{ "d", SJF_FORM_EMPTY, "" },
		{ "dd=1&xd=2", SJF_FORM_MISSING, "" },
		{ "a=1&d=%5b%5d&b=2", SJF_FORM_OK, "[]" },
		{ "d=a+b%2Bc", SJF_FORM_OK, "a b+c" },
		{ "d=%zz%4", SJF_FORM_OK, "%zz%4" },
		{ "d=%", SJF_FORM_OK, "%" },
		{ "%64=x", SJF_FORM_OK, "x" },
		{ "d=1&d=2", SJF_FORM_OK, "1" },
		{ "&&d=x&", SJF_FORM_OK, "x" },
		{ "d=a=b", SJF_FORM_OK, "a=b" },
		{ "d=%00", SJF_FORM_OK, "" },   /* one NUL byte, checked below */
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(forms); i++) {
		w.len = 0;
		enum sjf_form_rc rc = sjf_form_d(forms[i].body, strlen(forms[i].body), &w);
		size_t wl = strcmp(forms[i].body, "d=%00") == 0 ? 1 : strlen(forms[i].d);
		ok(rc == forms[i].rc && w.len == wl && memcmp(w.buf ? w.buf : "", forms[i].d, wl) == 0,
		   "form \"%s\"", forms[i].body);
	}
	/* The form then goes to sjf_decode: JsonPolling.test_invalid_json. */
	struct sjf_msgs m = { 0 };
	w.len = 0;
	ok(sjf_form_d(S("d=%5B%22x"), &w) == SJF_FORM_OK && sjf_decode(w.buf, w.len, 0, &m) == SJF_DEC_BROKEN,
	   "%s", "d=%5B%22x is broken JSON");
	w.len = 0;
	ok(sjf_form_d(S("d=%5B%22b%22%5D"), &w) == SJF_FORM_OK && sjf_decode(w.buf, w.len, 0, &m) == SJF_DEC_OK &&
	   m.n == 1, "%s", "d=%5B%22b%22%5D is one message");
	sjf_msgs_free(&m);
	/* sjf_form_d appends. */
	w.len = 0;
	jw_lit(&w, "X");
	ok(sjf_form_d(S("d="), &w) == SJF_FORM_EMPTY && w.len == 1, "empty d measured from OUT's length");
	ok(sjf_form_d(S("d=y"), &w) == SJF_FORM_OK && w.len == 2 && memcmp(w.buf, "Xy", 2) == 0, "appends");

	w.len = 0;
	ok(sjf_form_get(S("t=1&i=abc%20d&c=x"), "i", &w) && w.len == 5 && memcmp(w.buf, "abc d", 5) == 0,
	   "sjf_form_get of a query string");
	ok(!sjf_form_get(S("t=1&i=abc"), "c", &w), "sjf_form_get: absent key");
	ok(!sjf_form_get(NULL, 0, "c", &w), "sjf_form_get: empty text");
	jw_free(&w);
}

static void test_callbacks(void)
{
	char cb[SJF_CALLBACK_MAX + 1];
	size_t n;

	ok(sjf_callback_ok(S("callback")), "callback ok");
	ok(sjf_callback_ok(S("_jp.a1b2c3")), "_jp.a1b2c3 ok");
	ok(sjf_callback_ok(S("a-b_c.D9")), "all allowed classes");
	ok(sjf_callback_ok(S("abcdefghijklmnopqrstuvwxyz012345")), "32 characters ok");
	ok(!sjf_callback_ok(S("abcdefghijklmnopqrstuvwxyz0123456")), "33 characters refused");
	ok(!sjf_callback_ok("", 0), "empty refused");
	ok(!sjf_callback_ok(NULL, 0), "NULL refused");
	static const char *const badcb[] = { " ", "*", "abc(", "a b", "a\"", "a<", "a;b", "a/b", "\xc3\xa9", "a\n" };
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(badcb); i++)
		ok(!sjf_callback_ok(badcb[i], strlen(badcb[i])), "callback \"%s\" refused",
		   vis(badcb[i], strlen(badcb[i])));

	static const struct {
		const char *query;
		enum sjf_callback_rc rc;
		const char *cb;
	} q[] = {
		{ "c=callback", SJF_CB_OK, "callback" },
		{ "c=%63allback", SJF_CB_OK, "callback" },
		{ "c=x", SJF_CB_OK, "x" },
		{ "t=1&c=_jp.abc&x=2", SJF_CB_OK, "_jp.abc" },
		{ "callback=cb1", SJF_CB_OK, "cb1" },
		{ "c=&callback=y", SJF_CB_OK, "y" },
		{ "c=a&callback=b", SJF_CB_OK, "a" },
		{ "c=abcdefghijklmnopqrstuvwxyz012345", SJF_CB_OK, "abcdefghijklmnopqrstuvwxyz012345" },
		{ "c=%61bcdefghijklmnopqrstuvwxyz012345", SJF_CB_OK, "abcdefghijklmnopqrstuvwxyz012345" },
		{ "", SJF_CB_MISSING, "" },
		{ "c=", SJF_CB_MISSING, "" },
		{ "c", SJF_CB_MISSING, "" },
		{ "x=1&cc=2", SJF_CB_MISSING, "" },
		{ "c=&callback=", SJF_CB_MISSING, "" },
		/* HtmlFile/JsonPolling.test_invalid_callback */
		{ "c=%20", SJF_CB_INVALID, "" },
		{ "c=*", SJF_CB_INVALID, "" },
		{ "c=abc(", SJF_CB_INVALID, "" },
		{ "c=abc%28", SJF_CB_INVALID, "" },
		{ "c=a+b", SJF_CB_INVALID, "" },
		{ "c=%zz", SJF_CB_INVALID, "" },
		{ "c=abcdefghijklmnopqrstuvwxyz0123456", SJF_CB_INVALID, "" },
		{ "c=abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop", SJF_CB_INVALID, "" },
		{ "c=a%00", SJF_CB_INVALID, "" },
	};
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(q); i++) {
		memset(cb, 'Z', sizeof(cb));
		enum sjf_callback_rc rc = sjf_query_callback(q[i].query, strlen(q[i].query), cb, &n);
		ok(rc == q[i].rc && n == strlen(q[i].cb) && strcmp(cb, q[i].cb) == 0,
		   "query \"%s\" -> %d \"%s\"", q[i].query, q[i].rc, q[i].cb);
	}
	ok(sjf_query_callback("c=abcdef", 5, cb, &n) == SJF_CB_OK && n == 3, "only N bytes of the query");
}

/* ---- /info and the iframe page --------------------------------------------------------- */

static void test_info_iframe(void)
{
	struct jw w = { 0 };
	char etag[SJF_ETAG_LEN + 1];

	sjf_info_json(&w, true, false, 2803519127u);
	JW_IS(&w, "{\"websocket\": true, \"origins\": [\"*:*\"], \"cookie_needed\": false, \"entropy\": 2803519127}",
	      "/info body as in the reference");
	ok(js_valid(w.buf, w.len), "/info is valid JSON");
	w.len = 0;
	sjf_info_json(&w, false, true, 0);
	JW_IS(&w, "{\"websocket\": false, \"origins\": [\"*:*\"], \"cookie_needed\": true, \"entropy\": 0}",
	      "/info websocket off, cookie needed, entropy 0");
	w.len = 0;
	sjf_info_json(&w, true, true, UINT32_MAX);
	JW_IS(&w, "{\"websocket\": true, \"origins\": [\"*:*\"], \"cookie_needed\": true, \"entropy\": 4294967295}",
	      "/info entropy 2^32-1");

	static const char page[] =
		"<!DOCTYPE html>\n"
		"<html>\n"
		"<head>\n"
		"  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n"
		"  <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n"
		"  <script src=\"https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js\"></script>\n"
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
	const char *url = "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js";
	w.len = 0;
	sjf_iframe_page(&w, url, strlen(url));
	JW_IS(&w, page, "iframe page, Centrifugo's default script URL");
	is_int(sjf_etag(w.buf, w.len, etag), RT_OK, "ETag computed");
	is_str(etag, "\"f34bced828e3f0ed646f9750696ad5fe\"", "ETag is the quoted MD5 of the body (md5sum)");
	is_int(strlen(etag), SJF_ETAG_LEN, "ETag length");
	is_int(sjf_etag("", 0, etag), RT_OK, "ETag of nothing");
	is_str(etag, "\"d41d8cd98f00b204e9800998ecf8427e\"", "ETag of the empty body");
	w.len = 0;
	sjf_iframe_page(&w, S("/static/sockjs.js"));
	ok(w.len == sizeof(page) - 1 - strlen(url) + 17 &&
	   memmem(w.buf, w.len, S("<script src=\"/static/sockjs.js\"></script>")),
	   "iframe page with a local script");

	ok(sjf_script_url_ok(url, strlen(url)), "script URL https://... ok");
	ok(sjf_script_url_ok(S("/sockjs.js")), "script URL /... ok");
	ok(sjf_script_url_ok(S("http://x/a?b=1&c=2")), "script URL with a query ok");
	ok(sjf_script_url_ok(S("/\xc3\xa9.js")), "script URL with UTF-8 ok");
	static const char *const badurl[] = { "", "sockjs.js", "ftp://x/s.js", "//x/s.js\"", "/a b.js",
					      "/a\".js", "/a<b.js", "/a>", "/a'", "/a`", "/a\n", "/a\x7f", "/\xff",
					      "htt" };
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(badurl); i++)
		ok(!sjf_script_url_ok(badurl[i], strlen(badurl[i])), "script URL \"%s\" refused",
		   vis(badurl[i], strlen(badurl[i])));
	ok(sjf_script_url_ok(S("//cdn/s.js")), "protocol-relative //... starts with '/'");
	jw_free(&w);
}

int main(void)
{
	test_route();
	test_methods();
	test_quote();
	test_frames();
	test_wrap_pieces();
	test_decode();
	test_forms();
	test_callbacks();
	test_info_iframe();
	return tap_done();
}
