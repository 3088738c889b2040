/*
 * test_json.c - the JSON scanner and writer: an accept/refuse corpus in the
 * manner of JSONTestSuite (structure, numbers, strings, escapes, UTF-8,
 * nesting, trailing garbage), token layout and raw spans, member lookup,
 * unescaping, integers, and the writer's escaping against the reference
 * server's output.
 */
#include "config.h"
#include "json.h"
#include "../tap.h"
#include "util.h"

#include <stdlib.h>

/* A text with explicit length, so corpus entries may hold NUL bytes. */
struct text {
	const char *s;
	size_t n;
};
#define T(lit) { lit, sizeof(lit) - 1 }

static const struct text valid[] = {
	T("{}"), T("[]"), T("0"), T("-0"), T("1"), T("-1"), T("1.5"), T("-0.0"), T("1e5"), T("1E+5"),
	T("1e-5"), T("0e0"), T("123456789012345678901234567890"), T("1.7976931348623157e309"),
	T("\"\""), T("\"a\""), T("true"), T("false"), T("null"), T(" \t\r\n{} \t\r\n"),
	T("{\"a\":1}"), T("{\"a\":{\"b\":[1,2,{\"c\":null}]}}"), T("[1,\"x\",true,false,null,{},[]]"),
	T("{\"a\":1,\"a\":2}"), T("[[[[[[[[[[]]]]]]]]]]"), T("{ \"a\" : [ 1 , 2 ] }"),
	T("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\""), T("\"\\u0000\""), T("\"\\u00e9\\u20AC\""),
	T("\"\\ud83d\\ude00\""),         /* surrogate pair */
	T("\"\\ud800\""),                /* lone high surrogate: accepted, like Go */
	T("\"\\udc00\""),                /* lone low surrogate */
	T("\"\\ud800\\u0041\""),         /* high surrogate then no low */
	T("\"\\ud800\\ud800\\udc00\""),
	T("\"\xc3\xa9\""),               /* U+00E9 */
	T("\"\xe2\x82\xac\""),           /* U+20AC */
	T("\"\xf0\x9f\x98\x80\""),       /* U+1F600 */
	T("\"\xef\xbb\xbf\""),           /* U+FEFF inside a string */
	T("\"\xf4\x8f\xbf\xbf\""),       /* U+10FFFF */
	T("\"\xed\x9f\xbf\""),           /* U+D7FF */
	T("\"\xee\x80\x80\""),           /* U+E000 */
	T("\"\x7f\""),                   /* DEL is not a control character for JSON */
	T("{\"\":\"\"}"),
};

static const struct text invalid[] = {
	T(""), T(" "), T("{"), T("}"), T("["), T("]"), T("[1,]"), T("[,1]"), T("{\"a\":1,}"),
	T("{,}"), T("{\"a\"}"), T("{\"a\":}"), T("{\"a\" 1}"), T("{a:1}"), T("{'a':1}"),
	T("{1:1}"), T("[1 2]"), T("{\"a\":1 \"b\":2}"), T("{}{}"), T("[]]"), T("{}x"), T("1 2"),
	T("01"), T("-01"), T("00"), T("1."), T(".1"), T("+1"), T("-"), T("1e"), T("1e+"),
	T("1.e1"), T("0x10"), T("NaN"), T("Infinity"), T("-Infinity"), T("1_000"),
	T("tru"), T("truex"), T("nul"), T("True"), T("NULL"), T("fals"),
	T("\""), T("\"abc"), T("'a'"), T("\"\\\""), T("\"\\x\""), T("\"\\u12\""), T("\"\\u12g4\""),
	T("\"\\U0041\""), T("\"\\a\""), T("\"\\'\""), T("\"\\\n\""),
	T("\"a\nb\""), T("\"a\tb\""), T("\"\x01\""), T("\"\x1f\""), T("\"a\0b\""),
	T("/* c */ 1"), T("1 // c"), T("[1] /**/"),
	T("\"\x80\""),                   /* lone continuation byte */
	T("\"\xbf\""),
	T("\"\xc0\xaf\""),               /* overlong '/' */
	T("\"\xc1\xbf\""),
	T("\"\xe0\x80\xaf\""),           /* overlong 3-byte */
	T("\"\xe0\x9f\xbf\""),
	T("\"\xf0\x80\x80\xaf\""),       /* overlong 4-byte */
	T("\"\xf0\x8f\xbf\xbf\""),
	T("\"\xed\xa0\x80\""),           /* UTF-8 encoded surrogate U+D800 */
	T("\"\xed\xbf\xbf\""),
	T("\"\xf4\x90\x80\x80\""),       /* U+110000 */
	T("\"\xf5\x80\x80\x80\""), T("\"\xf8\x88\x80\x80\x80\""), T("\"\xfe\""), T("\"\xff\""),
	T("\"\xc3\""),                   /* truncated sequences */
	T("\"\xe2\x82\""), T("\"\xf0\x9f\x98\""), T("\"\xc3\x28\""),
	T("\xef\xbb\xbf{}"),             /* a BOM is not whitespace */
	T("\xc3\xa9"),                   /* bytes outside strings */
	T("{\"a\":1}\0"), T("\0"), T("\x0c{}"), T("[\x0b]"),
	T("[\"a\",]"), T("{\"a\":[}"), T("[{]}"),
};

/* A times NA, then MID, then B times NB, in a new string. */
static char *repeat3(const char *a, int na, const char *mid, const char *b, int nb)
{
	size_t la = strlen(a), lm = strlen(mid), lb = strlen(b);
	char *s = xmalloc(la * (size_t)na + lm + lb * (size_t)nb + 1), *p = s;

	for (int i = 0; i < na; i++, p += la)
		memcpy(p, a, la);
	memcpy(p, mid, lm);
	p += lm;
	for (int i = 0; i < nb; i++, p += lb)
		memcpy(p, b, lb);
	*p = '\0';
	return s;
}

static char *repeat(const char *a, int na, const char *b, int nb)
{
	return repeat3(a, na, "", b, nb);
}

static void test_corpus(void)
{
	struct js_doc d = { 0 };

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(valid); i++) {
		ok(js_scan(&d, valid[i].s, valid[i].n, 0) == RT_OK, "valid #%zu accepted", i);
		ok(js_valid(valid[i].s, valid[i].n), "js_valid agrees on valid #%zu", i);
	}
	for (size_t i = 0; i < ROTOR_ARRAY_LEN(invalid); i++) {
		ok(js_scan(&d, invalid[i].s, invalid[i].n, 0) == RT_INVAL, "invalid #%zu refused", i);
		ok(d.ntok == 0, "invalid #%zu leaves no tokens", i);
		ok(!js_valid(invalid[i].s, invalid[i].n), "js_valid agrees on invalid #%zu", i);
	}
	/* Every proper prefix of a valid document is invalid. */
	const char *doc = "{\"a\":[1,-2.5e3,\"x\\u00e9\",true,null,{\"b\":false}]}";
	int bad = 0;
	for (size_t n = 0; n < strlen(doc); n++)
		bad += js_scan(&d, doc, n, 0) == RT_OK;
	is_int(bad, 0, "no proper prefix of a document is accepted");
	js_free(&d);
}

static void test_depth_and_limits(void)
{
	struct js_doc d = { 0 };
	char *s;

	s = repeat("[", 64, "]", 64);
	ok(js_scan(&d, s, strlen(s), 0) == RT_OK, "depth 64 accepted by default");
	free(s);
	s = repeat("[", 65, "]", 65);
	ok(js_scan(&d, s, strlen(s), 0) == RT_INVAL, "depth 65 refused by default");
	d.depth_limit = 100;
	ok(js_scan(&d, s, strlen(s), 0) == RT_OK, "depth 65 accepted with depth_limit 100");
	free(s);
	s = repeat3("{\"a\":", 100, "0", "}", 100);
	ok(js_scan(&d, s, strlen(s), 0) == RT_OK, "100 nested objects with depth_limit 100");
	free(s);
	s = repeat3("{\"a\":", 101, "0", "}", 101);
	ok(js_scan(&d, s, strlen(s), 0) == RT_INVAL, "101 nested objects refused");
	free(s);

	d.depth_limit = 100000;
	s = repeat("[", JS_DEPTH_MAX, "]", JS_DEPTH_MAX);
	ok(js_scan(&d, s, strlen(s), 0) == RT_OK, "JS_DEPTH_MAX levels accepted");
	ok(js_valid(s, strlen(s)), "js_valid: JS_DEPTH_MAX levels");
	free(s);
	s = repeat("[", JS_DEPTH_MAX + 1, "]", JS_DEPTH_MAX + 1);
	ok(js_scan(&d, s, strlen(s), 0) == RT_INVAL, "depth_limit is capped at JS_DEPTH_MAX");
	ok(!js_valid(s, strlen(s)), "js_valid: JS_DEPTH_MAX + 1 refused");
	free(s);
	s = repeat("[", 100000, "", 0);
	ok(js_scan(&d, s, strlen(s), 0) == RT_INVAL, "100000 unclosed brackets refused");
	free(s);

	/* Token cap. */
	d.depth_limit = 0;
	ok(js_scan(&d, "[1,2,3]", 7, 4) == RT_OK, "4 tokens within max 4");
	is_int(d.ntok, 4, "4 tokens");
	ok(js_scan(&d, "[1,2,3,4]", 9, 4) == RT_INVAL, "5 tokens over max 4");
	ok(js_scan(&d, "{\"a\":1}", 7, 2) == RT_INVAL, "keys count as tokens");

	/* Big arrays grow the token array; the doc is reused. */
	s = repeat("[", 1, "1,", 5000);
	s[strlen(s) - 1] = ']';
	ok(js_scan(&d, s, strlen(s), 0) == RT_OK, "5000-element array");
	is_int(d.ntok, 5001, "5001 tokens");
	is_int(d.t[0].size, 5000, "array size 5000");
	is_int(d.t[0].next, 5001, "array next past the end");
	free(s);
	ok(js_scan(&d, "7", 1, 0) == RT_OK && d.ntok == 1, "the doc is reused for a new text");
	js_free(&d);
	ok(d.t == NULL && d.cap == 0, "js_free releases the tokens");
}

static void test_tokens(void)
{
	struct js_doc d = { 0 };
	const char *s = " {\"a\" : 1.10, \"b\":[true, {\"c\":\"x\\ny\"}, []], \"d\":\"\"} ";
	uint32_t it = 0, k, v, n = 0;

	ok(js_scan(&d, s, strlen(s), 0) == RT_OK, "scan");
	is_int(d.t[0].type, JS_OBJECT, "root object");
	is_int(d.t[0].size, 3, "3 members");
	is_int(d.t[0].start, 1, "root starts after the space");
	is_int(d.t[0].len, strlen(s) - 2, "root spans to its brace");
	is_int(d.t[0].next, d.ntok, "root next = ntok");
	while (js_next_member(&d, 0, &it, &k, &v))
		n++;
	is_int(n, 3, "js_next_member visits 3 members");

	int64_t a = js_get(&d, 0, "a", false);
	ok(a > 0 && js_type(&d, (uint32_t)a) == JS_NUMBER, "a is a number");
	ok(js_rawlen(&d, (uint32_t)a) == 4 && memcmp(js_raw(&d, (uint32_t)a), "1.10", 4) == 0,
	   "1.10 stays \"1.10\"");
	int64_t b = js_get(&d, 0, "b", false);
	ok(b > 0 && js_type(&d, (uint32_t)b) == JS_ARRAY && d.t[b].size == 3, "b is a 3-array");
	ok(js_rawlen(&d, (uint32_t)b) == strlen("[true, {\"c\":\"x\\ny\"}, []]"), "b raw span");
	it = n = 0;
	uint32_t el[3];
	while (js_next_elem(&d, (uint32_t)b, &it, &v))
		el[n++ < 3 ? n - 1 : 2] = v;
	is_int(n, 3, "js_next_elem visits 3 elements");
	is_int(js_type(&d, el[0]), JS_TRUE, "element 0 true");
	is_int(js_type(&d, el[1]), JS_OBJECT, "element 1 object");
	is_int(js_type(&d, el[2]), JS_ARRAY, "element 2 array");
	int64_t c = js_get(&d, el[1], "c", false);
	char buf[16];
	ok(c > 0 && d.t[c].escaped, "c is escaped");
	is_int(js_str(&d, (uint32_t)c, buf, sizeof(buf)), 3, "c unescapes to 3 bytes");
	is_str(buf, "x\ny", "c value");
	ok(js_raw(&d, (uint32_t)c)[0] == '"' && js_rawlen(&d, (uint32_t)c) == 6, "string raw has quotes");
	int64_t dd = js_get(&d, 0, "d", false);
	is_int(js_str(&d, (uint32_t)dd, buf, sizeof(buf)), 0, "empty string");
	is_int(js_get(&d, 0, "z", false), -1, "missing key");
	is_int(js_get(&d, (uint32_t)b, "a", false), -1, "js_get on an array");
	ok(!js_next_member(&d, (uint32_t)b, &it, &k, &v), "js_next_member on an array");
	it = 0;
	ok(!js_next_elem(&d, 0, &it, &v), "js_next_elem on an object");
	it = 0;
	ok(!js_next_elem(&d, el[2], &it, &v), "empty array has no elements");
	js_free(&d);
}

static void test_get(void)
{
	struct js_doc d = { 0 };
	const char *s = "{\"Channel\":1,\"channel\":2,\"CHANNEL\":3,\"ch\\u0061nnel\":4,\"x\":5}";
	int64_t v;
	int64_t i;

	ok(js_scan(&d, s, strlen(s), 0) == RT_OK, "scan");
	i = js_get(&d, 0, "channel", false);
	ok(i > 0 && js_int64(&d, (uint32_t)i, &v) == RT_OK && v == 4,
	   "exact match: the last duplicate wins, escapes compared unescaped");
	i = js_get(&d, 0, "Channel", false);
	ok(i > 0 && js_int64(&d, (uint32_t)i, &v) == RT_OK && v == 1, "exact match is case-sensitive");
	i = js_get(&d, 0, "cHaNnEl", true);
	ok(i > 0 && js_int64(&d, (uint32_t)i, &v) == RT_OK && v == 4, "nocase: the last match wins");
	i = js_get(&d, 0, "X", true);
	ok(i > 0 && js_int64(&d, (uint32_t)i, &v) == RT_OK && v == 5, "nocase single letter");
	is_int(js_get(&d, 0, "X", false), -1, "case matters without nocase");
	is_int(js_get(&d, 0, "chann", true), -1, "prefixes do not match");

	/* A long escaped key exercises the heap path of the comparison. */
	char big[700];
	size_t n = 0;
	n += (size_t)sprintf(big + n, "{\"");
	for (int k = 0; k < 100; k++)
		n += (size_t)sprintf(big + n, "\\u0041");
	n += (size_t)sprintf(big + n, "\":true}");
	char key[101];
	memset(key, 'A', 100);
	key[100] = '\0';
	ok(js_scan(&d, big, n, 0) == RT_OK, "long escaped key");
	ok(js_get(&d, 0, key, false) == 2, "long escaped key found");
	key[99] = 'B';
	is_int(js_get(&d, 0, key, false), -1, "long escaped key differs");
	js_free(&d);
}

static void test_strings(void)
{
	struct js_doc d = { 0 };
	char buf[64];
	char *dup;
	static const struct { const char *in, *out; size_t outlen; } cases[] = {
		{ "\"plain\"", "plain", 5 },
		{ "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8 },
		{ "\"\\u0041\\u00e9\\u20ac\"", "A\xc3\xa9\xe2\x82\xac", 6 },
		{ "\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 4 },
		{ "\"\\ud800\"", "\xef\xbf\xbd", 3 },
		{ "\"\\udc00x\"", "\xef\xbf\xbdx", 4 },
		{ "\"\\ud800\\u0041\"", "\xef\xbf\xbd" "A", 4 },
		{ "\"\\ud800\\ud800\\udc00\"", "\xef\xbf\xbd\xf0\x90\x80\x80", 7 },
		{ "\"\\ud800\\n\"", "\xef\xbf\xbd\n", 4 },
		{ "\"a\\u0000b\"", "a\0b", 3 },
		{ "\"\xe2\x82\xac\"", "\xe2\x82\xac", 3 },
	};

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(cases); i++) {
		ok(js_scan(&d, cases[i].in, strlen(cases[i].in), 0) == RT_OK, "scan %s", cases[i].in);
		int64_t n = js_str(&d, 0, buf, sizeof(buf));
		ok(n == (int64_t)cases[i].outlen && memcmp(buf, cases[i].out, cases[i].outlen) == 0 &&
		   buf[n] == '\0', "js_str %s", cases[i].in);
		dup = js_strdup(&d, 0);
		ok(dup && memcmp(dup, cases[i].out, cases[i].outlen) == 0 && dup[cases[i].outlen] == '\0',
		   "js_strdup %s", cases[i].in);
		free(dup);
		if (strlen(cases[i].out) == cases[i].outlen)
			ok(js_str_eq(&d, 0, cases[i].out), "js_str_eq %s", cases[i].in);
	}

	ok(js_scan(&d, "\"\\u0041\\u0042\\u0043\"", 20, 0) == RT_OK, "scan escaped ABC");
	is_int(js_str(&d, 0, buf, 4), 3, "fits exactly after unescaping although the raw text does not");
	is_int(js_str(&d, 0, buf, 3), -1, "too small by one");
	ok(js_str_eq(&d, 0, "ABC") && !js_str_eq(&d, 0, "ABD") && !js_str_eq(&d, 0, "AB"),
	   "js_str_eq on escapes");
	ok(js_scan(&d, "\"abc\"", 5, 0) == RT_OK, "scan abc");
	is_int(js_str(&d, 0, buf, 3), -1, "no room for the NUL");
	is_int(js_str(&d, 0, buf, 4), 3, "room for the NUL");
	ok(js_scan(&d, "[1]", 3, 0) == RT_OK, "scan [1]");
	is_int(js_str(&d, 0, buf, sizeof(buf)), -1, "js_str on an array");
	ok(js_strdup(&d, 1) == NULL, "js_strdup on a number");
	ok(!js_str_eq(&d, 1, "1"), "js_str_eq on a number");
	js_free(&d);
}

static void test_numbers(void)
{
	struct js_doc d = { 0 };
	int64_t i;
	uint64_t u;
	bool b;
	static const struct { const char *in; int i_ok; int64_t i; int u_ok; uint64_t u; } cases[] = {
		{ "0", 1, 0, 1, 0 },
		{ "-0", 1, 0, 0, 0 },
		{ "42", 1, 42, 1, 42 },
		{ "-42", 1, -42, 0, 0 },
		{ "9223372036854775807", 1, INT64_MAX, 1, 9223372036854775807ULL },
		{ "9223372036854775808", 0, 0, 1, 9223372036854775808ULL },
		{ "-9223372036854775808", 1, INT64_MIN, 0, 0 },
		{ "-9223372036854775809", 0, 0, 0, 0 },
		{ "18446744073709551615", 0, 0, 1, UINT64_MAX },
		{ "18446744073709551616", 0, 0, 0, 0 },
		{ "99999999999999999999999", 0, 0, 0, 0 },
		{ "1.0", 0, 0, 0, 0 },
		{ "1e3", 0, 0, 0, 0 },
		{ "1E0", 0, 0, 0, 0 },
		{ "\"1\"", 0, 0, 0, 0 },
		{ "true", 0, 0, 0, 0 },
		{ "null", 0, 0, 0, 0 },
	};

	for (size_t k = 0; k < ROTOR_ARRAY_LEN(cases); k++) {
		ok(js_scan(&d, cases[k].in, strlen(cases[k].in), 0) == RT_OK, "scan %s", cases[k].in);
		int ri = js_int64(&d, 0, &i), ru = js_uint64(&d, 0, &u);
		ok(cases[k].i_ok ? ri == RT_OK && i == cases[k].i : ri == RT_INVAL, "js_int64 %s", cases[k].in);
		ok(cases[k].u_ok ? ru == RT_OK && u == cases[k].u : ru == RT_INVAL, "js_uint64 %s", cases[k].in);
	}
	ok(js_scan(&d, "[true,false,null,0]", 19, 0) == RT_OK, "scan bools");
	ok(js_bool(&d, 1, &b) == RT_OK && b, "true");
	ok(js_bool(&d, 2, &b) == RT_OK && !b, "false");
	ok(js_bool(&d, 3, &b) == RT_INVAL, "null is not a bool");
	ok(js_bool(&d, 4, &b) == RT_INVAL, "0 is not a bool");
	js_free(&d);
}

static void test_writer(void)
{
	struct jw w = { 0 };

#define W_IS(want, ...) do { w.len = 0; __VA_ARGS__; \
	ok(w.len == sizeof(want) - 1 && memcmp(w.buf, want, w.len) == 0, "writer: %s", want); \
	if (w.len != sizeof(want) - 1 || memcmp(w.buf, want, w.len) != 0) \
		printf("#   got %.*s\n", (int)w.len, w.buf); } while (0)

	W_IS("\"hello\"", jw_str(&w, "hello", 5));
	W_IS("\"\"", jw_str(&w, "", 0));
	/* What the reference server's writer produces, byte for byte. */
	W_IS("\"a\\\"b\\\\c\\nd\\re\\tf\"", jw_str(&w, "a\"b\\c\nd\re\tf", 11));
	W_IS("\"\\u0000\\u0001\\u0008\\u000c\\u001f\"", jw_str(&w, "\0\1\b\f\x1f", 5));
	W_IS("\"\\u003cscript\\u003e\\u0026\"", jw_str(&w, "<script>&", 9));
	W_IS("\"/\x7f'\"", jw_str(&w, "/\x7f'", 3));
	W_IS("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"", jw_str(&w, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
	W_IS("\"\\u2028\\u2029\"", jw_str(&w, "\xe2\x80\xa8\xe2\x80\xa9", 6));
	W_IS("\"a\\ufffdb\"", jw_str(&w, "a\xff" "b", 3));
	W_IS("\"\\ufffd\\ufffd\\ufffd\"", jw_str(&w, "\xed\xa0\x80", 3));   /* encoded surrogate */
	W_IS("\"\\ufffd\\ufffd\"", jw_str(&w, "\xc0\xaf", 2));                /* overlong */
	W_IS("\"\\ufffd\\ufffd\"", jw_str(&w, "\xe2\x82", 2));                /* truncated: one per byte */
	W_IS("\"\xef\xbf\xbd\"", jw_str(&w, "\xef\xbf\xbd", 3));              /* a real U+FFFD stays */
	W_IS("0", jw_u64(&w, 0));
	W_IS("18446744073709551615", jw_u64(&w, UINT64_MAX));
	W_IS("-9223372036854775808", jw_i64(&w, INT64_MIN));
	W_IS("9223372036854775807", jw_i64(&w, INT64_MAX));
	W_IS("-1", jw_i64(&w, -1));
	W_IS("{\"a\": [1,2]}", jw_json(&w, "{\"a\":\n [1,\n2]\n}\n", 16));
	W_IS("{}", jw_json(&w, "\n\n{}\n", 5));
	W_IS("[1]", jw_json(&w, "[1]", 3));
	W_IS("abc", jw_raw(&w, "abc", 3));
	W_IS("abcdef", jw_lit(&w, "abc"); jw_lit(&w, "def"));
	W_IS("", jw_raw(&w, NULL, 0));

	/* Growth keeps earlier content. */
	w.len = 0;
	for (int i = 0; i < 10000; i++)
		jw_raw(&w, "0123456789", 10);
	int same = 1;
	for (size_t i = 0; i < w.len; i++)
		same &= w.buf[i] == (char)('0' + i % 10);
	ok(w.len == 100000 && same, "100000 bytes written through growth");
	jw_free(&w);
	ok(w.buf == NULL && w.len == 0 && w.cap == 0, "jw_free");
}

/* Whatever jw_str writes, js_scan accepts and js_str turns back into the
 * input (for valid UTF-8 input). */
static void test_round_trip(void)
{
	struct js_doc d = { 0 };
	struct jw w = { 0 };
	char in[256], out[1024];
	int bad = 0;
	unsigned seed = 12345;

	for (int round = 0; round < 2000; round++) {
		size_t n = 0;
		while (n < 40) {
			seed = seed * 1103515245 + 12345;
			unsigned r = (seed >> 16) % 6;
			static const char *pieces[] = { "a", "\"", "\\", "\n", "\xc3\xa9", "\xe2\x80\xa8" };
			if ((seed >> 8) % 7 == 0) {
				in[n++] = (char)((seed >> 20) % 32);
				continue;
			}
			size_t l = strlen(pieces[r]);
			memcpy(in + n, pieces[r], l);
			n += l;
		}
		w.len = 0;
		jw_str(&w, in, n);
		if (js_scan(&d, w.buf, w.len, 0) != RT_OK || js_str(&d, 0, out, sizeof(out)) != (int64_t)n ||
		    memcmp(in, out, n) != 0)
			bad++;
		if (memchr(w.buf, '\n', w.len))
			bad++;
	}
	is_int(bad, 0, "jw_str / js_str round trips and never writes a newline");
	jw_free(&w);
	js_free(&d);
}

int main(void)
{
	test_corpus();
	test_depth_and_limits();
	test_tokens();
	test_get();
	test_strings();
	test_numbers();
	test_writer();
	test_round_trip();
	return tap_done();
}
