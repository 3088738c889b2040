/*
 * cfp.c - Centrifugo client protocol, the generator's side (cfp.h).
 *
 * Decoding is deliberately shallow. JSON: a message is a ping when it is
 * "{}", a reply when it opens with "id", a push when it opens with "push";
 * within a push the first of "pub", "unsubscribe", "disconnect" found names
 * its kind (our own payloads contain none of them). Protobuf: Reply fields
 * id (1), error (2: Error.code 1) and push (4: Push.pub 4 -> Publication.data
 * 4, Push.unsubscribe 7 and disconnect 11 -> code) are read properly; the
 * rest is skipped by wire type.
 */
#include "cfp.h"
#include "jstr.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- protobuf primitives ------------------------------------------------ */

static size_t put_varint(uint8_t *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Reads a varint at *p (below e). Returns 0, or -1 if it is cut or too long. */
static int get_varint(const uint8_t **p, const uint8_t *e, uint64_t *v)
{
	uint64_t r = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (*p >= e)
			return -1;
		uint8_t b = *(*p)++;
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return 0;
		}
	}
	return -1;
}

/* One field: its number, wire type and, for LEN fields, the bytes; for
 * varints the value. Returns 0, or -1 when cut. */
struct pbf {
	uint32_t num, wt;
	uint64_t v;
	const uint8_t *b;
	size_t len;
};

static int next_field(const uint8_t **p, const uint8_t *e, struct pbf *f)
{
	uint64_t tag;
	if (get_varint(p, e, &tag) < 0)
		return -1;
	f->num = (uint32_t)(tag >> 3);
	f->wt = (uint32_t)(tag & 7);
	switch (f->wt) {
	case 0:
		return get_varint(p, e, &f->v);
	case 1:
		if (e - *p < 8)
			return -1;
		*p += 8;
		return 0;
	case 5:
		if (e - *p < 4)
			return -1;
		*p += 4;
		return 0;
	case 2:
		if (get_varint(p, e, &f->v) < 0 || (uint64_t)(e - *p) < f->v)
			return -1;
		f->b = *p;
		f->len = (size_t)f->v;
		*p += f->len;
		return 0;
	default:
		return -1;
	}
}

/* The varint field `num` of the message [p, p+n), or 0. */
static uint64_t pb_uint(const uint8_t *p, size_t n, uint32_t num)
{
	const uint8_t *e = p + n;
	struct pbf f;
	while (p < e && next_field(&p, e, &f) == 0)
		if (f.num == num && f.wt == 0)
			return f.v;
	return 0;
}

/* The LEN field `num` of the message [p, p+n): 0 and *b, *len, or -1. */
static int pb_bytes(const uint8_t *p, size_t n, uint32_t num, const uint8_t **b, size_t *len)
{
	const uint8_t *e = p + n;
	struct pbf f;
	while (p < e && next_field(&p, e, &f) == 0)
		if (f.num == num && f.wt == 2) {
			*b = f.b;
			*len = f.len;
			return 0;
		}
	return -1;
}

static size_t pb_str(uint8_t *p, uint32_t num, const char *s, size_t n)
{
	size_t k = put_varint(p, (uint64_t)num << 3 | 2);
	k += put_varint(p + k, n);
	memcpy(p + k, s, n);
	return k + n;
}

/* ---- commands ------------------------------------------------------------ */

/* Command{id, field:{field 1: s}}, varint-delimited, at buf. */
/* Command{id, FIELD: request{SUB: S}} with its length prefix. */
static size_t pb_command(uint8_t *buf, uint32_t id, uint32_t field, uint32_t sub, const char *s)
{
	uint8_t req[1100], cmd[1200];
	size_t r = pb_str(req, sub, s, strlen(s));
	size_t c = put_varint(cmd, 1 << 3 | 0);
	c += put_varint(cmd + c, id);
	c += pb_str(cmd + c, field, (const char *)req, r);
	size_t off = put_varint(buf, c);
	memcpy(buf + off, cmd, c);
	return off + c;
}

#define CLIENT_NAME "rotor-bench"

size_t cfp_connect_subscribe(uint8_t *buf, size_t cap, bool protobuf,
			     const char *token, const char *channel, bool delta)
{
	size_t tl = token ? strlen(token) : 0, cl = strlen(channel);
	if (tl + cl + 128 > cap)
		return 0;
	if (!protobuf) {
		int n = snprintf((char *)buf, cap,
				 "{\"id\":1,\"connect\":{%s%s%s\"name\":\"" CLIENT_NAME "\"}}\n"
				 "{\"id\":2,\"subscribe\":{\"channel\":\"%s\"%s}}",
				 token ? "\"token\":\"" : "", token ? token : "", token ? "\"," : "",
				 channel, delta ? ",\"delta\":\"fossil\"" : "");
		return n > 0 && (size_t)n < cap ? (size_t)n : 0;
	}
	uint8_t req[1024 + 64], cmd[1024 + 96];
	if (tl + cl > 1024)
		return 0;
	size_t off = 0, r = 0, c;
	/* Command{id:1, connect:ConnectRequest{token, name}} */
	if (token)
		r += pb_str(req + r, 1, token, tl);
	r += pb_str(req + r, 4, CLIENT_NAME, strlen(CLIENT_NAME));
	c = put_varint(cmd, 1 << 3 | 0);
	c += put_varint(cmd + c, 1);
	c += pb_str(cmd + c, 4, (const char *)req, r);
	off += put_varint(buf + off, c);
	memcpy(buf + off, cmd, c);
	off += c;
	/* Command{id:2, subscribe:SubscribeRequest{channel, delta (12)}} */
	if (!delta)
		return off + pb_command(buf + off, 2, 5, 1, channel);
	r = pb_str(req, 1, channel, cl);
	r += pb_str(req + r, 12, "fossil", 6);
	c = put_varint(cmd, 1 << 3 | 0);
	c += put_varint(cmd + c, 2);
	c += pb_str(cmd + c, 5, (const char *)req, r);
	off += put_varint(buf + off, c);
	memcpy(buf + off, cmd, c);
	return off + c;
}

size_t cfp_presence_stats(uint8_t *buf, size_t cap, bool protobuf, uint32_t id, const char *channel)
{
	size_t cl = strlen(channel);
	if (cl > 1024 || cl + 64 > cap)
		return 0;
	if (protobuf)
		return pb_command(buf, id, 9, 1, channel);
	int n = snprintf((char *)buf, cap, "{\"id\":%u,\"presence_stats\":{\"channel\":\"%s\"}}", id, channel);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t cfp_rpc(uint8_t *buf, size_t cap, bool protobuf, uint32_t id, const char *method)
{
	size_t ml = strlen(method);
	if (ml > 1024 || ml + 64 > cap)
		return 0;
	if (protobuf)   /* Command.rpc = 13, RPCRequest.method = 2 */
		return pb_command(buf, id, 13, 2, method);
	int n = snprintf((char *)buf, cap, "{\"id\":%u,\"rpc\":{\"method\":\"%s\",\"data\":{}}}", id, method);
	return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

size_t cfp_first(bool protobuf, const uint8_t *p, size_t n, size_t *rest)
{
	if (protobuf) {
		const uint8_t *q = p, *e = p + n;
		uint64_t len;
		if (get_varint(&q, e, &len) < 0 || (uint64_t)(e - q) < len) {
			*rest = n;
			return n;
		}
		*rest = (size_t)(q - p) + (size_t)len;
		return *rest;
	}
	const uint8_t *nl = memchr(p, '\n', n);
	*rest = nl ? (size_t)(nl + 1 - p) : n;
	return nl ? (size_t)(nl - p) : n;
}

size_t cfp_complete(bool protobuf, const uint8_t *p, size_t n)
{
	if (!protobuf) {
		const uint8_t *nl = memrchr(p, '\n', n);
		return nl ? (size_t)(nl + 1 - p) : 0;
	}
	const uint8_t *q = p, *e = p + n;
	while (q < e) {
		const uint8_t *m = q;
		uint64_t len;
		if (get_varint(&m, e, &len) < 0 || (uint64_t)(e - m) < len)
			break;
		q = m + len;
	}
	return (size_t)(q - p);
}

/* Copies the JSON string value of key (with its quote: "\"session\":\"")
 * into out. Returns 0 or -1. */
static int json_str_after(const uint8_t *p, size_t n, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);
	const uint8_t *k = memmem(p, n, key, kl), *e = p + n;
	if (k == NULL)
		return -1;
	k += kl;
	const uint8_t *q = memchr(k, '"', (size_t)(e - k));
	if (q == NULL || (size_t)(q - k) >= cap)
		return -1;
	memcpy(out, k, (size_t)(q - k));
	out[q - k] = 0;
	return 0;
}

static int pb_str_field(const uint8_t *p, size_t n, uint32_t num, char *out, size_t cap)
{
	const uint8_t *b;
	size_t len;
	if (pb_bytes(p, n, num, &b, &len) < 0 || len >= cap)
		return -1;
	memcpy(out, b, len);
	out[len] = 0;
	return 0;
}

int cfp_session(bool protobuf, const uint8_t *p, size_t n, char *session, char *node, size_t cap)
{
	if (!protobuf)
		return json_str_after(p, n, "\"session\":\"", session, cap) < 0 ||
		       json_str_after(p, n, "\"node\":\"", node, cap) < 0 ? -1 : 0;
	const uint8_t *res;             /* Reply.connect (5): ConnectResult */
	size_t rl;
	if (pb_bytes(p, n, 5, &res, &rl) < 0 || pb_str_field(res, rl, 9, session, cap) < 0 ||
	    pb_str_field(res, rl, 10, node, cap) < 0)
		return -1;
	return 0;
}

size_t cfp_emulation(uint8_t *buf, size_t cap, bool protobuf, const char *node, const char *session,
		     const uint8_t *data, size_t n)
{
	size_t nl = strlen(node), sl = strlen(session);
	if (nl > 64 || sl > 64 || cap < CFP_EMULATION_MAX(n))
		return 0;
	if (protobuf) {                 /* EmulationRequest{node 1, session 2, data 3} */
		size_t off = pb_str(buf, 1, node, nl);
		off += pb_str(buf + off, 2, session, sl);
		return off + pb_str(buf + off, 3, (const char *)data, n);
	}
	int h = snprintf((char *)buf, cap, "{\"node\":\"%s\",\"session\":\"%s\",\"data\":\"", node, session);
	size_t off = (size_t)h + jstr_escape((char *)buf + h, data, n);
	buf[off++] = '"';
	buf[off++] = '}';
	return off;
}

const char *cfp_pong(bool protobuf, size_t *len)
{
	*len = protobuf ? 1 : 2;
	return protobuf ? "\0" : "{}";
}

/* ---- decoding -------------------------------------------------------------- */

static uint32_t json_uint_after(const uint8_t *p, size_t n, const char *key)
{
	const uint8_t *k = memmem(p, n, key, strlen(key));
	if (k == NULL)
		return 0;
	const uint8_t *e = p + n;
	uint32_t v = 0;
	for (k += strlen(key); k < e && *k >= '0' && *k <= '9'; k++)
		v = v * 10 + (uint32_t)(*k - '0');
	return v;
}

static void json_msg(const uint8_t *p, size_t n, struct cfp_msg *m)
{
	memset(m, 0, sizeof(*m));
	if (n == 2 && p[0] == '{' && p[1] == '}') {
		m->kind = CFP_PING;
		return;
	}
	if (n > 6 && memcmp(p, "{\"id\":", 6) == 0) {
		m->id = json_uint_after(p, n, "{\"id\":");
		if (memmem(p, n, "\"error\":{", 9)) {
			m->kind = CFP_ERROR;
			m->code = json_uint_after(p, n, "\"code\":");
		} else {
			m->kind = CFP_REPLY;
		}
		return;
	}
	if (n > 8 && memcmp(p, "{\"push\":", 8) == 0) {
		const uint8_t *pub = memmem(p, n, "\"pub\":{", 7);
		if (pub) {
			const uint8_t *d = memmem(pub, (size_t)(p + n - pub), "\"data\":", 7);
			m->kind = CFP_PUB;
			if (d) {
				m->data = d + 7;
				m->dlen = (size_t)(p + n - m->data);
			}
			m->delta = memmem(pub, (size_t)(p + n - pub), "\"delta\":true", 12) != NULL;
			return;
		}
		if (memmem(p, n, "\"unsubscribe\":{", 15)) {
			m->kind = CFP_UNSUB;
			m->code = json_uint_after(p, n, "\"code\":");
		} else if (memmem(p, n, "\"disconnect\":{", 14)) {
			m->kind = CFP_DISCONNECT;
			m->code = json_uint_after(p, n, "\"code\":");
		} else {
			m->kind = CFP_OTHER;
		}
		return;
	}
	m->kind = CFP_BAD;
}

static void pb_msg(const uint8_t *p, size_t n, struct cfp_msg *m)
{
	memset(m, 0, sizeof(*m));
	if (n == 0) {
		m->kind = CFP_PING;
		return;
	}
	const uint8_t *e = p + n, *q = p;
	struct pbf f;
	m->kind = CFP_REPLY;
	while (q < e) {
		if (next_field(&q, e, &f) < 0) {
			m->kind = CFP_BAD;
			return;
		}
		if (f.num == 1 && f.wt == 0) {
			m->id = (uint32_t)f.v;
		} else if (f.num == 2 && f.wt == 2) {
			m->kind = CFP_ERROR;
			m->code = (uint32_t)pb_uint(f.b, f.len, 1);
		} else if (f.num == 4 && f.wt == 2) {
			const uint8_t *b;
			size_t len;
			m->kind = CFP_OTHER;
			if (pb_bytes(f.b, f.len, 4, &b, &len) == 0) {
				m->kind = CFP_PUB;
				if (pb_bytes(b, len, 4, &m->data, &m->dlen) < 0)
					m->data = NULL;
				m->delta = pb_uint(b, len, 8) != 0;
			} else if (pb_bytes(f.b, f.len, 7, &b, &len) == 0) {
				m->kind = CFP_UNSUB;
				m->code = (uint32_t)pb_uint(b, len, 2);
			} else if (pb_bytes(f.b, f.len, 11, &b, &len) == 0) {
				m->kind = CFP_DISCONNECT;
				m->code = (uint32_t)pb_uint(b, len, 1);
			}
		}
	}
}

int cfp_each(bool protobuf, const uint8_t *p, size_t n,
	     int (*fn)(void *arg, const struct cfp_msg *m), void *arg)
{
	const uint8_t *e = p + n;
	struct cfp_msg m;
	while (p < e) {
		const uint8_t *q;
		if (protobuf) {
			uint64_t len;
			if (get_varint(&p, e, &len) < 0 || (uint64_t)(e - p) < len) {
				memset(&m, 0, sizeof(m));
				m.kind = CFP_BAD;
				fn(arg, &m);
				return -1;
			}
			q = p + len;
			pb_msg(p, (size_t)len, &m);
			m.raw = p;
			m.rawlen = (size_t)len;
		} else {
			q = memchr(p, '\n', (size_t)(e - p));
			if (q == NULL)
				q = e;
			const uint8_t *le = q;
			while (le > p && (le[-1] == '\r' || le[-1] == ' '))
				le--;
			if (le == p) {          /* an empty line */
				p = q + (q < e);
				continue;
			}
			json_msg(p, (size_t)(le - p), &m);
			m.raw = p;
			m.rawlen = (size_t)(le - p);
		}
		if (fn(arg, &m))
			return 0;
		p = q + (!protobuf && q < e);
	}
	return 0;
}

/* ---- tokens ---------------------------------------------------------------- */

/* base64url without padding of [p, p+n) into out; returns its length. */
static size_t b64url(const void *p, size_t n, char *out)
{
	int k = EVP_EncodeBlock((unsigned char *)out, p, (int)n);
	while (k > 0 && out[k - 1] == '=')
		k--;
	for (int i = 0; i < k; i++)
		out[i] = out[i] == '+' ? '-' : out[i] == '/' ? '_' : out[i];
	out[k] = 0;
	return (size_t)k;
}

size_t cfp_token(const char *secret, const char *user, long long exp, char *out, size_t cap)
{
	static const char head[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char body[256];
	int bl = snprintf(body, sizeof(body), "{\"sub\":\"%s\",\"exp\":%lld}", user, exp);
	if (bl <= 0 || (size_t)bl >= sizeof(body) || cap < 512)
		return 0;
	size_t n = b64url(head, sizeof(head) - 1, out);
	out[n++] = '.';
	n += b64url(body, (size_t)bl, out + n);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int ml = 0;
	HMAC(EVP_sha256(), secret, (int)strlen(secret), (unsigned char *)out, n, mac, &ml);
	out[n++] = '.';
	n += b64url(mac, ml, out + n);
	return n;
}
