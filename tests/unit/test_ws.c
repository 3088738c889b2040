/*
 * test_ws.c - the WebSocket transport, driven through socketpairs on a real
 * libev loop with a hand-made worker, a real config and a fake clock: the
 * handshake (accept value, every refusal, subprotocols, query options,
 * origins), the frame parser (fragmentation, interleaved control frames,
 * 1002/1007/1009, close codes and reasons delivered whole, split and byte by
 * byte), batched output (shared buffers, several messages per frame, frame
 * caps), the queue limit (3008), the close handshake both ways, draining,
 * native ping/pong, the write timeout, and a transport's own limits (one
 * message per frame, its ping schedule, codes a close frame cannot carry,
 * ending without the close handshake).
 */
#include "config.h"
#include "ws.h"
#include "transport.h"
#include "http.h"
#include "conn.h"
#include "worker.h"
#include "conf.h"
#include "harness.h"
#include "../tap.h"
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct worker w;
static struct conf k;

/* Sends N bytes one write (and loop run) at a time. */
static void send_slowly(int fd, const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		send_bytes(fd, (const char *)p + i, 1);
		spin();
	}
}

/* ---- client frames ----------------------------------------------------- */

static const uint8_t MASK[4] = { 0x37, 0xfa, 0x21, 0x3d };

enum { OP_CONT = 0, OP_TEXT = 1, OP_BIN = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };
#define FIN 0x80

/* A client frame: B0 (FIN | RSV | opcode), LEN payload bytes (header only
 * when P is NULL), masked unless UNMASKED, with the length encoded in its
 * minimal form, or FORCE (126/127). Returns the size written to OUT. */
static size_t frame(uint8_t *out, int b0, const void *p, uint64_t len, bool unmasked, int force)
{
	size_t n = 0;

	out[n++] = (uint8_t)b0;
	if (len < 126 && !force) {
		out[n++] = (uint8_t)((unmasked ? 0 : 0x80) | len);
	} else if ((len <= 0xFFFF && force != 127) || force == 126) {
		out[n++] = (uint8_t)((unmasked ? 0 : 0x80) | 126);
		out[n++] = (uint8_t)(len >> 8);
		out[n++] = (uint8_t)len;
	} else {
		out[n++] = (uint8_t)((unmasked ? 0 : 0x80) | 127);
		for (int i = 0; i < 8; i++)
			out[n++] = (uint8_t)(len >> (56 - 8 * i));
	}
	if (!unmasked) {
		memcpy(out + n, MASK, 4);
		n += 4;
	}
	if (p) {
		for (uint64_t i = 0; i < len; i++)
			out[n + i] = ((const uint8_t *)p)[i] ^ (unmasked ? 0 : MASK[i & 3]);
		n += (size_t)len;
	}
	return n;
}

static void send_frame(int fd, int b0, const void *p, size_t len)
{
	uint8_t *buf = malloc(len + 14);
	size_t n = frame(buf, b0, p, len, false, 0);

	send_bytes(fd, buf, n);
	free(buf);
}

static void send_close(int fd, unsigned code, const char *reason)
{
	uint8_t pl[125];
	size_t n = 0;

	pl[n++] = (uint8_t)(code >> 8);
	pl[n++] = (uint8_t)code;
	if (reason) {
		memcpy(pl + n, reason, strlen(reason));
		n += strlen(reason);
	}
	send_frame(fd, FIN | OP_CLOSE, pl, n);
}

/* ---- server frames ----------------------------------------------------- */

struct sframe {
	int op;
	bool fin;
	size_t len;
	char *data;
};

struct frames {
	int n;
	struct sframe f[256];
	bool eof;
	bool bad;       /* a masked or malformed server frame, or trailing bytes */
	char *raw;
	size_t raw_len;
};

static void frames_free(struct frames *fs)
{
	free(fs->raw);
	memset(fs, 0, sizeof(*fs));
}

/* Parses server frames from BUF (server frames are never masked). */
static void parse_frames(struct frames *fs, char *buf, size_t len)
{
	size_t i = 0;

	while (i < len && fs->n < 256) {
		const uint8_t *p = (const uint8_t *)buf + i;
		size_t h = 2;
		uint64_t pl;

		if (len - i < 2)
			break;
		if (p[1] & 0x80 || p[0] & 0x70)
			fs->bad = true;
		pl = p[1] & 0x7F;
		if (pl == 126) {
			if (len - i < 4)
				break;
			pl = (uint64_t)p[2] << 8 | p[3];
			h = 4;
		} else if (pl == 127) {
			if (len - i < 10)
				break;
			pl = 0;
			for (int j = 0; j < 8; j++)
				pl = pl << 8 | p[2 + j];
			h = 10;
		}
		if (len - i - h < pl)
			break;
		fs->f[fs->n].op = p[0] & 0x0F;
		fs->f[fs->n].fin = p[0] & 0x80;
		fs->f[fs->n].len = (size_t)pl;
		fs->f[fs->n].data = buf + i + h;
		fs->n++;
		i += h + (size_t)pl;
	}
	if (i != len)
		fs->bad = true;
}

/* What the server sent since the last call, as frames. */
static void get_frames(int fd, struct frames *fs)
{
	frames_free(fs);
	fs->raw = recv_avail(fd, &fs->eof, &fs->raw_len);
	parse_frames(fs, fs->raw, fs->raw_len);
}

static unsigned close_code(const struct sframe *f)
{
	return f->op == OP_CLOSE && f->len >= 2 ?
	       (unsigned)(uint8_t)f->data[0] << 8 | (uint8_t)f->data[1] : 0;
}

/* The last frame is a close with CODE, and the server then closed TCP. */
static bool closed_with(struct frames *fs, unsigned code)
{
	return fs->n > 0 && close_code(&fs->f[fs->n - 1]) == code && fs->eof && !fs->bad;
}

/* ---- the test session ---------------------------------------------------- */

struct sess {
	struct ws *ws;
	int nmsg;
	char *last;
	size_t last_len;
	bool closed;
	uint16_t code;
	int drained;
	enum proto_fmt fmt;
	bool ping;
	char xtest[64];
	char query[128];
};

#define MAX_SESS 2000
static struct sess sess[MAX_SESS];
static int nsess;
static int in_api;          /* > 0 while the test is inside a ws_* call */
static int close_inside;    /* on_close ran inside a ws_* call */
static bool attach = true;  /* on_open attaches the handler */
static bool custom_drain;

static struct sess *cur(void)
{
	return &sess[nsess - 1];
}

static void s_message(struct ws *ws, void *ud, const char *data, size_t len)
{
	struct sess *s = ud;

	s->nmsg++;
	free(s->last);
	s->last = malloc(len + 1);
	memcpy(s->last, data, len);
	s->last[len] = '\0';
	s->last_len = len;
	if (len > 5 && memcmp(data, "echo:", 5) == 0)
		ws_send_copy(ws, data + 5, len - 5);
	else if (len == 5 && memcmp(data, "close", 5) == 0)
		ws_close(ws, 4000, "bye");
	else if (len == 8 && memcmp(data, "closenow", 8) == 0)
		ws_close_now(ws);
}

static void s_drain(struct ws *ws, void *ud)
{
	struct sess *s = ud;

	s->drained++;
	ws_close(ws, 3001, "custom shutdown");
}

static void s_close(struct ws *ws, void *ud)
{
	struct sess *s = ud;

	if (in_api)
		close_inside++;
	s->closed = true;
	s->code = ws_close_code(ws);
	s->ws = NULL;
}

static const struct ws_handler handler = {
	.on_message = s_message, .on_close = s_close,
};
static const struct ws_handler handler_drain = {
	.on_message = s_message, .on_close = s_close, .on_drain = s_drain,
};

static void s_open(struct ws *ws, const struct ws_open_info *info)
{
	struct sess *s = &sess[nsess++];
	const char *x = http_req_header(info->req, "x-test");

	memset(s, 0, sizeof(*s));
	s->ws = ws;
	s->fmt = info->fmt;
	s->ping = info->frame_ping_pong;
	snprintf(s->xtest, sizeof(s->xtest), "%s", x ? x : "");
	snprintf(s->query, sizeof(s->query), "%s", info->req->query);
	if (attach)
		ws_set_handler(ws, custom_drain ? &handler_drain : &handler, s);
}

/* The WebSocket layer's settings, and a route that follows
 * websocket.handler_prefix and websocket.disabled like websocket.c's, but
 * opens a test session instead of a client session. */
extern const struct transport_kind transport_ws;
static struct transport_route route;

static void t_upgrade(struct http_req *req, void *arg)
{
	static const struct ws_upgrade u = { .admit = true, .centrifuge = true };
	struct ws_open_info info;
	struct ws *ws = ws_upgrade(req, &u, &info);

	if (ws)
		s_open(ws, &info);
}

/* A transport with limits of its own (as uni_websocket has): route /own. */
static struct ws_limits own = {
	.msg_limit = 100, .write_timeout = 1000, .ping_interval = 3000, .pong_timeout = 1000,
	.one_per_frame = true,
};

static void t_upgrade_own(struct http_req *req, void *arg)
{
	static const struct ws_upgrade u = { .frame_ping = true, .limits = &own };
	struct ws_open_info info;
	struct ws *ws = ws_upgrade(req, &u, &info);

	if (ws)
		s_open(ws, &info);
}

static void routes(void)
{
	const char *want = json_string_value(conf_get(&k, "websocket.handler_prefix"));

	if (json_is_true(conf_get(&k, "websocket.disabled")))
		want = NULL;
	transport_route_set(&route, "websocket.handler_prefix", want, HTTP_ROUTE_EXACT, HTTP_METHOD_BIT(HTTP_GET),
			    t_upgrade, NULL);
}

/* ---- handshake helpers ------------------------------------------------- */

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

/* An upgrade of TARGET with EXTRA header lines; the 101 (or refusal) goes
 * to *RESP (caller frees) when RESP is not NULL. Returns the client fd. */
static int upgrade(const char *target, const char *extra, char **resp)
{
	char req[4096];
	int fd = client();
	bool eof;
	char *r;

	snprintf(req, sizeof(req),
		 "GET %s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		 "Sec-WebSocket-Key: " KEY "\r\nSec-WebSocket-Version: 13\r\n%s\r\n",
		 target, extra ? extra : "");
	send_str(fd, req);
	r = recv_avail(fd, &eof, NULL);
	if (resp)
		*resp = r;
	else
		free(r);
	return fd;
}

/* A connection that upgraded; its session is cur(). */
static int ws_open(const char *target)
{
	char *r;
	int fd = upgrade(target ? target : "/connection/websocket", NULL, &r);

	if (status_of(r) != 101)
		printf("# upgrade failed: %s\n", r);
	free(r);
	return fd;
}

/* Sends REQ as is; returns the status of the answer. */
static int raw_status(const char *req, char **resp)
{
	int fd = client();
	bool eof;
	char *r;
	int st;

	send_str(fd, req);
	r = recv_avail(fd, &eof, NULL);
	st = status_of(r);
	if (resp)
		*resp = r;
	else
		free(r);
	close(fd);
	spin();
	return st;
}

#define GOOD_HEAD "Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"

static void setup(void)
{
	struct conf_report rep = { 0 };

	signal(SIGPIPE, SIG_IGN);
	w.loop = ev_default_loop(0);
	w.now_ms = 1000000;
	conf_init(&k);
	conf_set(&k, "client.allowed_origins", "https://*.example.com http://localhost:3000", &rep);
	if (rep.nerrors)
		printf("# conf: %s\n", rep.errors[0]);
	conf_report_free(&rep);
	w.conf = &k;
	wheel_init(&w.wheel, w.now_ms, 100);
	conn_init(&w);
	http_init(&w);
	transport_ws.init(&w);
	routes();
	http_route_add("/own", HTTP_ROUTE_EXACT, HTTP_METHOD_BIT(HTTP_GET), t_upgrade_own, NULL);
	harness_init(&w, ws_flush_all);
}

static void set_conf(const char *key, const char *text)
{
	struct conf_report rep = { 0 };

	if (conf_set(&k, key, text, &rep) != RT_OK)
		printf("# conf_set %s: %s\n", key, rep.nerrors ? rep.errors[0] : "?");
	conf_report_free(&rep);
	transport_ws.reconfigure(&w);
	routes();
}

/* ---- tests: handshake --------------------------------------------------- */

static void test_accept_key(void)
{
	char out[29];

	ws_accept_key(KEY, out);
	is_str(out, ACCEPT, "RFC 6455 example key gives the example accept value");
}

static void test_handshake_ok(void)
{
	char *r;
	int fd = upgrade("/connection/websocket?a=1", "X-Test: hello\r\n", &r);

	is_int(status_of(r), 101, "upgrade answered 101");
	ok(strstr(r, "\r\nUpgrade: websocket\r\n") != NULL, "Upgrade: websocket");
	ok(strstr(r, "\r\nConnection: Upgrade\r\n") != NULL, "Connection: Upgrade");
	ok(strstr(r, "\r\nSec-WebSocket-Accept: " ACCEPT "\r\n") != NULL, "Sec-WebSocket-Accept");
	ok(!strstr(r, "Sec-WebSocket-Protocol"), "no subprotocol when none was offered");
	ok(strstr(r, "\r\n\r\n") && strstr(r, "\r\n\r\n")[4] == '\0', "nothing after the 101 head");
	is_int(cur()->fmt, PROTO_JSON, "JSON by default");
	ok(!cur()->ping, "protocol pings by default");
	is_str(cur()->xtest, "hello", "on_open sees the request headers");
	is_str(cur()->query, "a=1", "and the query");
	free(r);
	close(fd);
	spin();
	ok(cur()->closed, "peer gone: on_close");
	is_int(cur()->code, 1006, "close code 1006 without a close frame");

	/* Firefox's Connection list, mixed case tokens, and an extension offer
	 * that is not taken. */
	fd = upgrade("/connection/websocket", NULL, NULL);
	close(fd);
	fd = client();
	send_str(fd, "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: WebSocket\r\n"
		 "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: " KEY "\r\n"
		 "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n");
	{
		bool eof;
		char *rr = recv_avail(fd, &eof, NULL);

		is_int(status_of(rr), 101, "Upgrade: WebSocket, Connection: keep-alive, Upgrade accepted");
		ok(!strstr(rr, "Sec-WebSocket-Extensions"), "permessage-deflate not negotiated");
		free(rr);
	}
	close(fd);
	spin();
}

static void expect_status(const char *name, const char *req, int want, const char *hdr)
{
	char *r;
	int st = raw_status(req, &r);

	is_int(st, want, "%s", name);
	if (hdr)
		ok(strstr(r, hdr) != NULL, "%s: with the expected header", name);
	free(r);
}

static void test_handshake_refusals(void)
{
	expect_status("POST is 405",
		      "POST /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n"
		      "Content-Length: 0\r\n\r\n", 405, "Allow: GET");
	expect_status("HEAD is 405",
		      "HEAD /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n\r\n",
		      405, NULL);
	expect_status("HTTP/1.0 is 400",
		      "GET /connection/websocket HTTP/1.0\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n\r\n",
		      400, NULL);
	expect_status("plain GET is 400",
		      "GET /connection/websocket HTTP/1.1\r\nHost: x\r\n\r\n", 400, NULL);
	expect_status("Upgrade: h2c is 400",
		      "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
		      "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n", 400, NULL);
	expect_status("no Connection: upgrade is 400",
		      "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
		      "Connection: keep-alive\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " KEY "\r\n\r\n",
		      400, NULL);
	expect_status("version 8 is 426",
		      "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		      "Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: " KEY "\r\n\r\n",
		      426, "\r\nSec-WebSocket-Version: 13\r\n");
	expect_status("missing version is 426",
		      "GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
		      "Sec-WebSocket-Key: " KEY "\r\n\r\n", 426, "\r\nSec-WebSocket-Version: 13\r\n");
	expect_status("missing key is 400",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "\r\n", 400, NULL);
	expect_status("key not base64 is 400",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n\r\n",
		      400, NULL);
	expect_status("key of 15 bytes is 400",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n\r\n",
		      400, NULL);
	expect_status("key of 17 bytes is 400",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
		      400, NULL);
	expect_status("two keys are 400",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n"
		      "Sec-WebSocket-Key: " KEY "\r\n\r\n", 400, NULL);
	expect_status("Origin not allowed is 403",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n"
		      "Origin: https://evil.com\r\n\r\n", 403, NULL);
	expect_status("Origin on the pattern's bare domain is 403",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n"
		      "Origin: https://example.com\r\n\r\n", 403, NULL);
	expect_status("Origin matching a pattern, any case, is 101",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n"
		      "Origin: HTTPS://App.Example.COM\r\n\r\n", 101, NULL);
	expect_status("exact Origin is 101",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n"
		      "Origin: http://localhost:3000\r\n\r\n", 101, NULL);
	expect_status("other port is 403",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n"
		      "Origin: http://localhost:3001\r\n\r\n", 403, NULL);
	expect_status("other path is 404",
		      "GET /connection/websocketx HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n\r\n",
		      404, NULL);

	set_conf("client.allowed_origins", "[]");
	expect_status("empty allowed_origins: any Origin is 403",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n"
		      "Origin: http://localhost:3000\r\n\r\n", 403, NULL);
	expect_status("empty allowed_origins: no Origin is 101",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n\r\n",
		      101, NULL);
	set_conf("client.allowed_origins", "*");
	expect_status("allowed_origins *: any Origin is 101",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n"
		      "Origin: https://evil.com\r\n\r\n", 101, NULL);
	set_conf("client.allowed_origins", "https://*.example.com http://localhost:3000");
}

static void check_proto(const char *name, const char *target, const char *extra,
			enum proto_fmt fmt, const char *echo)
{
	char *r, want[128];
	int fd = upgrade(target, extra, &r);

	is_int(status_of(r), 101, "%s: 101", name);
	is_int(cur()->fmt, fmt, "%s: %s", name, fmt == PROTO_PB ? "protobuf" : "JSON");
	if (echo) {
		snprintf(want, sizeof(want), "\r\nSec-WebSocket-Protocol: %s\r\n", echo);
		ok(strstr(r, want) != NULL, "%s: echoes %s", name, echo);
	} else {
		ok(!strstr(r, "Sec-WebSocket-Protocol"), "%s: no subprotocol echoed", name);
	}
	free(r);
	close(fd);
	spin();
}

static void test_subprotocols(void)
{
	check_proto("centrifuge-protobuf", "/connection/websocket",
		    "Sec-WebSocket-Protocol: centrifuge-protobuf\r\n", PROTO_PB, "centrifuge-protobuf");
	check_proto("centrifuge-json", "/connection/websocket",
		    "Sec-WebSocket-Protocol: centrifuge-json\r\n", PROTO_JSON, "centrifuge-json");
	check_proto("unknown then protobuf", "/connection/websocket",
		    "Sec-WebSocket-Protocol: chat, centrifuge-protobuf\r\n", PROTO_PB, "centrifuge-protobuf");
	check_proto("json listed first wins", "/connection/websocket",
		    "Sec-WebSocket-Protocol: centrifuge-json, centrifuge-protobuf\r\n", PROTO_JSON, "centrifuge-json");
	check_proto("protocol in a second header", "/connection/websocket",
		    "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: centrifuge-protobuf\r\n",
		    PROTO_PB, "centrifuge-protobuf");
	check_proto("only unknown subprotocols", "/connection/websocket",
		    "Sec-WebSocket-Protocol: chat\r\n", PROTO_JSON, NULL);
	check_proto("?format=protobuf", "/connection/websocket?format=protobuf", NULL, PROTO_PB, NULL);
	check_proto("?cf_protocol=protobuf", "/connection/websocket?x=1&cf_protocol=protobuf", NULL, PROTO_PB, NULL);
	check_proto("percent-encoded query key", "/connection/websocket?cf%5Fprotocol=protobuf", NULL, PROTO_PB, NULL);
	check_proto("first value counts", "/connection/websocket?format=json&format=protobuf", NULL, PROTO_JSON, NULL);
	check_proto("?format=protobuf with centrifuge-json", "/connection/websocket?format=protobuf",
		    "Sec-WebSocket-Protocol: centrifuge-json\r\n", PROTO_PB, "centrifuge-json");

	int fd = ws_open("/connection/websocket?cf_ws_frame_ping_pong=true");
	ok(cur()->ping, "?cf_ws_frame_ping_pong=true: frame ping/pong");
	close(fd);
	fd = ws_open("/connection/websocket?cf_ws_frame_ping_pong=1");
	ok(!cur()->ping, "?cf_ws_frame_ping_pong=1 is not true");
	close(fd);
	spin();
}

/* H6: the first frame in the same write as the handshake. */
static void test_frame_with_handshake(void)
{
	char buf[1024];
	int n = snprintf(buf, sizeof(buf), "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD
			 "Sec-WebSocket-Key: " KEY "\r\n\r\n");
	int fd = client();
	bool eof;
	char *r;

	n += (int)frame((uint8_t *)buf + n, FIN | OP_TEXT, "first", 5, false, 0);
	send_bytes(fd, buf, (size_t)n);
	r = recv_avail(fd, &eof, NULL);
	is_int(status_of(r), 101, "handshake with a frame behind it: 101");
	is_int(cur()->nmsg, 1, "the frame behind the handshake is delivered");
	is_str(cur()->last, "first", "with its payload");
	free(r);
	close(fd);
	spin();
}

/* ---- tests: frames in ---------------------------------------------------- */

static void test_messages(void)
{
	int fd = ws_open(NULL);
	struct sess *s = cur();
	struct frames fs = { 0 };
	uint8_t big[20000];

	send_frame(fd, FIN | OP_TEXT, "hello", 5);
	spin();
	is_int(s->nmsg, 1, "text frame delivered");
	is_str(s->last, "hello", "payload unmasked");

	send_frame(fd, FIN | OP_BIN, "\x00\xff\x80", 3);
	spin();
	ok(s->nmsg == 2 && s->last_len == 3 && memcmp(s->last, "\x00\xff\x80", 3) == 0,
	   "binary frame delivered as is (no UTF-8 check)");

	send_frame(fd, FIN | OP_TEXT, "", 0);
	spin();
	ok(s->nmsg == 3 && s->last_len == 0, "empty text message delivered");

	/* Fragments with a ping and a pong between them. */
	send_frame(fd, OP_TEXT, "hel", 3);
	send_frame(fd, FIN | OP_PING, "pp", 2);
	send_frame(fd, OP_CONT, "", 0);
	send_frame(fd, FIN | OP_PONG, "x", 1);
	send_frame(fd, FIN | OP_CONT, "lo \xc3\xa9", 5);
	get_frames(fd, &fs);
	ok(s->nmsg == 4 && strcmp(s->last, "hello \xc3\xa9") == 0, "fragmented message reassembled");
	ok(fs.n == 1 && fs.f[0].op == OP_PONG && fs.f[0].len == 2 && memcmp(fs.f[0].data, "pp", 2) == 0,
	   "ping between fragments answered with a pong, same payload");
	ok(!fs.bad && !fs.eof, "connection stays open");

	/* Multi-byte characters split across fragments. */
	send_frame(fd, OP_TEXT, "\xf0\x9f", 2);
	send_frame(fd, OP_CONT, "\x98", 1);
	send_frame(fd, FIN | OP_CONT, "\x80!", 2);
	spin();
	is_str(s->last, "\xf0\x9f\x98\x80!", "a 4-byte character split over three fragments");

	/* 16-bit and 64-bit lengths, a message larger than one read. */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)('a' + i % 26);
	send_frame(fd, FIN | OP_TEXT, big, 300);
	spin();
	ok(s->last_len == 300 && memcmp(s->last, big, 300) == 0, "16-bit length");
	send_frame(fd, FIN | OP_TEXT, big, sizeof(big));
	spin();
	ok(s->last_len == sizeof(big) && memcmp(s->last, big, sizeof(big)) == 0,
	   "20000-byte message (more than one read)");
	{
		uint8_t b[100];
		size_t n = frame(b, FIN | OP_TEXT, "abc", 3, false, 0);

		send_slowly(fd, b, n);
		is_str(s->last, "abc", "frame delivered byte by byte");
	}

	/* Several frames in one write. */
	{
		uint8_t b[256];
		size_t n = 0;

		n += frame(b + n, FIN | OP_TEXT, "one", 3, false, 0);
		n += frame(b + n, FIN | OP_TEXT, "two", 3, false, 0);
		n += frame(b + n, FIN | OP_TEXT, "three", 5, false, 0);
		int before = s->nmsg;

		send_bytes(fd, b, n);
		spin();
		ok(s->nmsg == before + 3 && strcmp(s->last, "three") == 0, "three frames in one write: three messages");
	}
	ok(w.conns && w.conns->in == NULL && w.conns->out == NULL,
	   "an idle WebSocket connection holds no input or output buffer");
	frames_free(&fs);
	close(fd);
	spin();
}

/* Sends BYTES (N) on a fresh connection and checks the server fails it
 * with CODE (close frame, then TCP close). */
static void expect_fail(const char *name, const void *bytes, size_t n, unsigned code, int how)
{
	int fd = ws_open(NULL);
	struct sess *s = cur();
	struct frames fs = { 0 };

	if (how == 0)
		send_bytes(fd, bytes, n);
	else if (how == 1) {
		/* split after 9 bytes */
		send_bytes(fd, bytes, n < 9 ? n : 9);
		spin();
		if (n > 9)
			send_bytes(fd, (const char *)bytes + 9, n - 9);
	} else {
		send_slowly(fd, bytes, n);
	}
	get_frames(fd, &fs);
	if (!ok(closed_with(&fs, code), "%s: close %u", name, code))
		printf("#   frames %d, last code %u, eof %d, bad %d\n", fs.n,
		       fs.n ? close_code(&fs.f[fs.n - 1]) : 0, fs.eof, fs.bad);
	frames_free(&fs);
	close(fd);
	spin();
	ok(s->closed, "%s: session closed", name);
}

static void fail_frame(const char *name, int b0, const void *p, size_t len, bool unmasked,
		       int force, unsigned code)
{
	uint8_t *b = malloc(len + 14);
	size_t n = frame(b, b0, p, len, unmasked, force);

	expect_fail(name, b, n, code, 0);
	free(b);
}

static void test_protocol_errors(void)
{
	uint8_t b[512], pl[200];
	size_t n;

	memset(pl, 'x', sizeof(pl));
	fail_frame("unmasked frame", FIN | OP_TEXT, "hi", 2, true, 0, 1002);
	fail_frame("RSV1", FIN | 0x40 | OP_TEXT, "hi", 2, false, 0, 1002);
	fail_frame("RSV2", FIN | 0x20 | OP_TEXT, "hi", 2, false, 0, 1002);
	fail_frame("RSV3", FIN | 0x10 | OP_BIN, "hi", 2, false, 0, 1002);
	fail_frame("opcode 3", FIN | 3, "hi", 2, false, 0, 1002);
	fail_frame("opcode 7", FIN | 7, "", 0, false, 0, 1002);
	fail_frame("opcode 0xB", FIN | 0xB, "", 0, false, 0, 1002);
	fail_frame("opcode 0xF", FIN | 0xF, "hi", 2, false, 0, 1002);
	fail_frame("ping of 126 bytes", FIN | OP_PING, pl, 126, false, 0, 1002);
	fail_frame("fragmented ping", OP_PING, "hi", 2, false, 0, 1002);
	fail_frame("fragmented close", OP_CLOSE, "\x03\xe8", 2, false, 0, 1002);
	fail_frame("continuation without a message", FIN | OP_CONT, "hi", 2, false, 0, 1002);
	fail_frame("16-bit length for 5 bytes", FIN | OP_TEXT, "hello", 5, false, 126, 1002);
	fail_frame("64-bit length for 5 bytes", FIN | OP_TEXT, "hello", 5, false, 127, 1002);
	fail_frame("64-bit length for 300 bytes", FIN | OP_TEXT, pl, 200, false, 127, 1002);

	n = frame(b, FIN | OP_TEXT, NULL, 0, false, 0);
	b[1] = 0x80 | 127;
	memcpy(b + 2, "\x80\0\0\0\0\0\0\x01", 8);
	memcpy(b + 10, MASK, 4);
	expect_fail("64-bit length with the top bit set", b, 14, 1002, 0);

	n = frame(b, OP_TEXT, "a", 1, false, 0);
	n += frame(b + n, FIN | OP_TEXT, "b", 1, false, 0);
	expect_fail("new text frame inside a fragmented message", b, n, 1002, 0);
	n = frame(b, OP_BIN, "a", 1, false, 0);
	n += frame(b + n, OP_TEXT, "b", 1, false, 0);
	expect_fail("new text frame inside a fragmented binary message", b, n, 1002, 0);

	/* garbage */
	expect_fail("garbage bytes", "GET / HTTP/1.1\r\n\r\n", 18, 1002, 0);
	{
		static const char http_again[] = "\x81\x05hello"; /* unmasked */
		expect_fail("unmasked, byte by byte", http_again, sizeof(http_again) - 1, 1002, 2);
	}
}

static void close_frame_bytes(uint8_t *b, size_t *n, unsigned code, const char *reason, size_t rlen)
{
	uint8_t pl[125];

	pl[0] = (uint8_t)(code >> 8);
	pl[1] = (uint8_t)code;
	memcpy(pl + 2, reason, rlen);
	*n = frame(b, FIN | OP_CLOSE, pl, 2 + rlen, false, 0);
}

static void test_close_frames_in(void)
{
	static const unsigned bad[] = { 0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535 };
	char name[64];
	uint8_t b[200];
	size_t n;

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(bad); i++) {
		snprintf(name, sizeof(name), "close code %u", bad[i]);
		close_frame_bytes(b, &n, bad[i], "", 0);
		expect_fail(name, b, n, 1002, 0);
	}
	fail_frame("close with a 1-byte payload", FIN | OP_CLOSE, "\x03", 1, false, 0, 1002);

	/* Invalid UTF-8 in the reason, delivered whole, split after 9 bytes
	 * (wslay's bug), and byte by byte. */
	close_frame_bytes(b, &n, 1000, "ok\xff", 3);
	expect_fail("invalid close reason", b, n, 1007, 0);
	expect_fail("invalid close reason split after 9 bytes", b, n, 1007, 1);
	expect_fail("invalid close reason byte by byte", b, n, 1007, 2);
	close_frame_bytes(b, &n, 1000, "ab\xed\xa0\x80", 5);
	expect_fail("surrogate in the close reason", b, n, 1007, 0);
	close_frame_bytes(b, &n, 1000, "abc\xc3", 4);
	expect_fail("truncated sequence ending the close reason", b, n, 1007, 0);

	/* A valid reason, however it arrives, is accepted and the code echoed. */
	close_frame_bytes(b, &n, 1000, "ok\xc3\xa9", 4);
	expect_fail("valid close reason", b, n, 1000, 0);
	expect_fail("valid close reason split after 9 bytes", b, n, 1000, 1);
	expect_fail("valid close reason byte by byte", b, n, 1000, 2);
	close_frame_bytes(b, &n, 4001, "", 0);
	expect_fail("close 4001 echoed", b, n, 4001, 0);
	close_frame_bytes(b, &n, 1012, "", 0);
	expect_fail("close 1012 (IANA: service restart) echoed", b, n, 1012, 0);
	n = frame(b, FIN | OP_CLOSE, "", 0, false, 0);
	expect_fail("empty close answered with 1000", b, n, 1000, 0);
	ok(cur()->code == 1005, "empty close: ws_close_code says 1005");

	/* 1000 with a session message queued just before: it goes out first. */
	{
		int fd = ws_open(NULL);
		struct sess *s = cur();
		struct frames fs = { 0 };

		send_frame(fd, FIN | OP_TEXT, "echo:pending", 12);
		send_close(fd, 1000, "bye");
		get_frames(fd, &fs);
		ok(fs.n == 2 && fs.f[0].op == OP_TEXT && fs.f[0].len == 7 &&
		   memcmp(fs.f[0].data, "pending", 7) == 0, "reply queued before the client's close goes out");
		ok(closed_with(&fs, 1000), "then the close echo, then TCP close");
		frames_free(&fs);
		close(fd);
		spin();
		ok(s->closed && s->code == 1000, "session closed, code 1000");
	}
}

static void test_utf8(void)
{
	static const struct {
		const char *name, *s;
		size_t n;
	} bad[] = {
		{ "0xFF in the middle", "ab\xff" "cd", 5 },
		{ "truncated 2-byte sequence at the end", "abc\xc3", 4 },
		{ "truncated 3-byte sequence at the end", "abc\xe2\x82", 5 },
		{ "overlong C0 80", "\xc0\x80", 2 },
		{ "overlong E0 80 80", "\xe0\x80\x80", 3 },
		{ "overlong F0 80 80 80", "\xf0\x80\x80\x80", 4 },
		{ "surrogate ED A0 80", "\xed\xa0\x80", 3 },
		{ "above U+10FFFF", "\xf4\x90\x80\x80", 4 },
		{ "F5 lead byte", "\xf5\x80\x80\x80", 4 },
		{ "lone continuation byte", "a\x80", 2 },
	};
	uint8_t b[256];
	size_t n;

	for (size_t i = 0; i < ROTOR_ARRAY_LEN(bad); i++) {
		n = frame(b, FIN | OP_TEXT, bad[i].s, bad[i].n, false, 0);
		expect_fail(bad[i].name, b, n, 1007, 0);
	}
	n = frame(b, FIN | OP_TEXT, "abc\xc3", 4, false, 0);
	expect_fail("truncated sequence, byte by byte", b, n, 1007, 2);

	/* Across fragments: the end of the message is what counts. */
	n = frame(b, OP_TEXT, "ab\xc3", 3, false, 0);
	n += frame(b + n, FIN | OP_CONT, "", 0, false, 0);
	expect_fail("sequence cut by the end of the last fragment", b, n, 1007, 0);

	/* Fail fast: the first fragment's bad byte closes the connection
	 * before the message ends. */
	{
		int fd = ws_open(NULL);
		struct frames fs = { 0 };

		send_frame(fd, OP_TEXT, "ok \xff", 4);
		get_frames(fd, &fs);
		ok(closed_with(&fs, 1007), "invalid byte in a first fragment: 1007 at once");
		frames_free(&fs);
		close(fd);
		spin();
	}
	/* ... and in the middle of a frame whose rest has not arrived. */
	{
		int fd = ws_open(NULL);
		struct frames fs = { 0 };
		uint8_t big[3000];

		memset(big, 'a', sizeof(big));
		big[10] = 0xFE;
		n = frame(b, FIN | OP_TEXT, NULL, sizeof(big), false, 0);
		send_bytes(fd, b, n);
		for (size_t i = 0; i < 20; i++)
			b[i] = big[i] ^ MASK[i & 3];
		send_bytes(fd, b, 20);
		get_frames(fd, &fs);
		ok(closed_with(&fs, 1007), "invalid byte in a partly received frame: 1007 at once");
		frames_free(&fs);
		close(fd);
		spin();
	}
	/* Valid text in every split. */
	{
		int fd = ws_open(NULL);
		struct sess *s = cur();
		const char *t = "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80";

		n = frame(b, FIN | OP_TEXT, t, strlen(t), false, 0);
		send_slowly(fd, b, n);
		is_str(s->last, t, "valid multi-byte text delivered byte by byte");
		n = frame(b, OP_TEXT, t, 2, false, 0);
		n += frame(b + n, OP_CONT, t + 2, 5, false, 0);
		n += frame(b + n, FIN | OP_CONT, t + 7, strlen(t) - 7, false, 0);
		send_slowly(fd, b, n);
		is_str(s->last, t, "valid text split inside characters over fragments, byte by byte");
		close(fd);
		spin();
	}
	/* Protobuf connections still check text frames. */
	{
		char *r;
		int fd = upgrade("/connection/websocket?format=protobuf", NULL, &r);
		struct frames fs = { 0 };

		free(r);
		send_frame(fd, FIN | OP_TEXT, "\xff", 1);
		get_frames(fd, &fs);
		ok(closed_with(&fs, 1007), "protobuf connection: invalid text frame is 1007");
		frames_free(&fs);
		close(fd);
		spin();
	}
}

static void test_limits(void)
{
	uint8_t b[64];
	size_t n;
	uint8_t *big = malloc(65536 + 14);
	struct frames fs = { 0 };

	n = frame(b, FIN | OP_TEXT, NULL, 70000, false, 0);
	expect_fail("70000-byte frame header: 1009 before the payload", b, n, 1009, 0);
	n = frame(b, FIN | OP_BIN, NULL, UINT64_C(1) << 30, false, 0);
	expect_fail("1 GiB frame header: 1009", b, n, 1009, 0);
	expect_fail("1 GiB frame header byte by byte: 1009", b, n, 1009, 2);

	/* 100 fragments of 1 KiB: 1009 when the 65th crosses 64 KiB. */
	{
		int fd = ws_open(NULL);
		struct sess *s = cur();
		uint8_t kb[1024];
		int i;

		memset(kb, 'k', sizeof(kb));
		for (i = 0; i < 100 && !s->closed; i++) {
			uint8_t f[1100];

			n = frame(f, i == 0 ? OP_TEXT : OP_CONT, kb, sizeof(kb), false, 0);
			send_bytes(fd, f, n);
			spin();
			get_frames(fd, &fs);
			if (fs.n)
				break;
		}
		is_int(i, 64, "fragments: the 65th (over 64 KiB) is refused");
		ok(closed_with(&fs, 1009), "with 1009");
		is_int(s->nmsg, 0, "nothing delivered");
		frames_free(&fs);
		close(fd);
		spin();
	}
	/* Exactly the limit is fine. */
	{
		int fd = ws_open(NULL);
		struct sess *s = cur();

		memset(big, 'z', 65536);
		send_frame(fd, FIN | OP_BIN, big, 65536);
		spin();
		spin();
		ok(s->nmsg == 1 && s->last_len == 65536, "a 65536-byte message is delivered");
		close(fd);
		spin();
	}
	/* A smaller limit after a reload applies to open connections. */
	{
		int fd = ws_open(NULL);

		set_conf("websocket.message_size_limit", "100");
		send_frame(fd, FIN | OP_TEXT, big, 101);
		get_frames(fd, &fs);
		ok(closed_with(&fs, 1009), "after a reload to 100 bytes: 101 bytes is 1009");
		set_conf("websocket.message_size_limit", "65536");
		frames_free(&fs);
		close(fd);
		spin();
	}
	/* ... also to a message half received when the limit drops below it. */
	{
		int fd = ws_open(NULL);

		send_frame(fd, OP_TEXT, big, 500);
		spin();
		set_conf("websocket.message_size_limit", "100");
		send_frame(fd, FIN | OP_CONT, big, 1);
		get_frames(fd, &fs);
		ok(closed_with(&fs, 1009), "limit lowered below a message in progress: its next fragment is 1009");
		set_conf("websocket.message_size_limit", "65536");
		frames_free(&fs);
		close(fd);
		spin();
	}
	free(big);
}

/* ---- tests: output ------------------------------------------------------ */

static void test_send_batched(void)
{
	int fds[3];
	struct sess *ss[3];
	struct frames fs = { 0 };
	struct rbuf *b = rbuf_new(16);

	memcpy(b->data, "{\"push\":\"one\"}xx", 16);
	for (int i = 0; i < 3; i++) {
		fds[i] = ws_open(NULL);
		ss[i] = cur();
	}
	for (int i = 0; i < 3; i++)
		is_int(ws_send(ss[i]->ws, b, 0, 14), RT_OK, "shared rbuf queued on connection %d", i);
	ok(b->refs == 4, "queued by reference (refs %u)", b->refs);
	for (int i = 0; i < 3; i++) {
		get_frames(fds[i], &fs);
		ok(fs.n == 1 && fs.f[0].op == OP_TEXT && fs.f[0].fin && fs.f[0].len == 14 &&
		   memcmp(fs.f[0].data, "{\"push\":\"one\"}", 14) == 0,
		   "connection %d received the shared message in one text frame", i);
	}
	is_int(b->refs, 1, "written: the connections' references are dropped");

	/* Several messages between flushes: one frame, joined by '\n'. */
	ws_send(ss[0]->ws, b, 0, 14);
	ws_send_copy(ss[0]->ws, "{}", 2);
	ws_send(ss[0]->ws, b, 1, 6);
	get_frames(fds[0], &fs);
	ok(fs.n == 1 && fs.f[0].op == OP_TEXT && fs.f[0].len == 14 + 1 + 2 + 1 + 6 &&
	   memcmp(fs.f[0].data, "{\"push\":\"one\"}\n{}\n\"push\"", 24) == 0,
	   "three messages in one text frame, joined by \\n, no trailing newline");

	/* Frame cap: 100 messages make a frame of 64 and one of 36. */
	for (int i = 0; i < 100; i++)
		ws_send(ss[1]->ws, b, 0, 14);
	get_frames(fds[1], &fs);
	ok(fs.n == 2 && fs.f[0].len == 64 * 14 + 63 && fs.f[1].len == 36 * 14 + 35 && !fs.bad,
	   "100 messages: frames of 64 and 36 messages");

	/* Byte cap: three 40000-byte messages make three frames; a message
	 * over the cap goes alone, with a 64-bit length. */
	{
		struct rbuf *m = rbuf_new(70000);

		memset(m->data, 'm', 70000);
		ws_send(ss[2]->ws, m, 0, 40000);
		ws_send(ss[2]->ws, m, 0, 20000);
		ws_send(ss[2]->ws, m, 0, 40000);
		ws_send(ss[2]->ws, m, 0, 70000);
		get_frames(fds[2], &fs);
		ok(fs.n == 3 && fs.f[0].len == 40000 + 1 + 20000 && fs.f[1].len == 40000 &&
		   fs.f[2].len == 70000 && !fs.bad,
		   "64 KiB frame cap: 40000+20000 | 40000 | 70000 (64-bit length)");
		rbuf_unref(m);
	}
	is_int(ws_send(ss[2]->ws, b, 0, 0), RT_OK, "an empty message is ignored");
	get_frames(fds[2], &fs);
	is_int(fs.n, 0, "and sends nothing");

	for (int i = 0; i < 3; i++)
		close(fds[i]);
	spin();
	rbuf_unref(b);
	frames_free(&fs);
}

static void test_send_protobuf(void)
{
	char *r;
	int fd = upgrade("/connection/websocket", "Sec-WebSocket-Protocol: centrifuge-protobuf\r\n", &r);
	struct sess *s = cur();
	struct frames fs = { 0 };

	free(r);
	ws_send_copy(s->ws, "\x00", 1);
	ws_send_copy(s->ws, "\x02\x08\x01", 3);
	get_frames(fd, &fs);
	ok(fs.n == 1 && fs.f[0].op == OP_BIN && fs.f[0].len == 4 &&
	   memcmp(fs.f[0].data, "\x00\x02\x08\x01", 4) == 0,
	   "protobuf: one binary frame, messages concatenated");
	/* A message arriving in a binary frame is delivered like a text one. */
	send_frame(fd, FIN | OP_BIN, "\x00", 1);
	spin();
	ok(s->nmsg == 1 && s->last_len == 1 && s->last[0] == 0, "binary frame delivered");
	frames_free(&fs);
	close(fd);
	spin();
}

static void test_queue_limit(void)
{
	struct frames fs = { 0 };
	struct rbuf *m = rbuf_new(1000);
	int fd, rc = RT_OK, i;
	struct sess *s;

	memset(m->data, 'q', 1000);
	set_conf("client.queue_max_size", "10000");

	/* Over the limit before anything is framed. */
	fd = ws_open(NULL);
	s = cur();
	for (i = 0; i < 20 && rc == RT_OK; i++)
		rc = ws_send(s->ws, m, 0, 1000);
	is_int(i, 11, "the 11th 1000-byte message crosses 10000 bytes");
	is_int(rc, RT_CLOSED, "and is refused");
	ok(ws_closing(s->ws), "the connection is closing");
	is_int(ws_send(s->ws, m, 0, 10), RT_CLOSED, "further sends are refused");
	get_frames(fd, &fs);
	ok(fs.n == 1 && close_code(&fs.f[0]) == 3008 && fs.f[0].len == 6 &&
	   memcmp(fs.f[0].data + 2, "slow", 4) == 0, "close 3008 \"slow\" (unframed messages dropped)");
	send_close(fd, 3008, NULL);
	get_frames(fd, &fs);
	ok(fs.eof && !s->closed, "the client's close: TCP closed by the server, lingering for the client's");
	close(fd);
	spin();
	ok(s->closed && s->code == 3008, "on_close once the client is gone, code 3008");

	/* Bytes the socket did not take count too. */
	fd = ws_open(NULL);
	s = cur();
	{
		int sz = 4096;
		struct conn *c = w.conns;

		setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof(sz));
		rc = RT_OK;
		for (i = 0; i < 1000 && rc == RT_OK; i++) {
			rc = ws_send(s->ws, m, 0, 1000);
			spin();
		}
		ok(rc == RT_CLOSED && i < 100, "a client that does not read is refused (after %d messages)", i);
		ok(c->out_bytes > 0, "while output was waiting in the conn queue (%zu bytes)", c->out_bytes);
		ok(m->refs > 1, "that output holds the shared buffer by reference");
	}
	/* The client now reads: whole frames, then 3008. */
	{
		char *all = malloc(1 << 20);
		size_t total = 0;
		bool eof = false;

		for (int round = 0; round < 2000 && !eof; round++) {
			size_t n;
			char *r = recv_avail(fd, &eof, &n);

			memcpy(all + total, r, n);
			total += n;
			free(r);
			if (total >= 2 && !eof && round == 10)
				send_close(fd, 1000, NULL);
		}
		frames_free(&fs);
		parse_frames(&fs, all, total);
		ok(fs.n >= 2 && !fs.bad && fs.f[0].op == OP_TEXT && close_code(&fs.f[fs.n - 1]) == 3008,
		   "the client gets whole data frames, then close 3008 (%d frames)", fs.n);
		ok(eof, "then TCP closes");
		fs.raw = NULL;
		free(all);
	}
	close(fd);
	spin();
	ok(s->closed, "on_close");
	is_int(m->refs, 1, "every reference to the shared buffer is dropped");

	/* A ping flood from a client that does not read. */
	fd = ws_open(NULL);
	s = cur();
	{
		int sz = 4096;
		uint8_t pings[1000 * 8];
		size_t n = 0;

		setsockopt(w.conns->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
		for (i = 0; i < 1000; i++)
			n += frame(pings + n, FIN | OP_PING, "p", 1, false, 0);
		for (i = 0; i < 20 && !ws_closing(s->ws); i++) {
			send_bytes(fd, pings, n);
			for (int j = 0; j < 20 && !ws_closing(s->ws); j++)
				spin();
		}
		ok(ws_closing(s->ws), "ping flood without reading: closed as slow (after %d000 pings)", i);
		tick(WS_CLOSE_WAIT_MS);
		tick(100);
		ok(s->closed, "and gone after the close wait");
	}
	close(fd);
	spin();
	set_conf("client.queue_max_size", "1048576");
	rbuf_unref(m);
	frames_free(&fs);
}

/* ---- tests: closing ------------------------------------------------------ */

static void test_server_close(void)
{
	struct frames fs = { 0 };
	int fd = ws_open(NULL);
	struct sess *s = cur();

	ws_send_copy(s->ws, "{\"last\":1}", 10);
	in_api++;
	ws_close(s->ws, 3501, "bad request");
	in_api--;
	is_int(ws_send_copy(s->ws, "{}", 2), RT_CLOSED, "nothing may be sent after ws_close");
	get_frames(fd, &fs);
	ok(fs.n == 2 && fs.f[0].op == OP_TEXT && fs.f[0].len == 10, "queued message first");
	ok(fs.n == 2 && close_code(&fs.f[1]) == 3501 && fs.f[1].len == 2 + 11 &&
	   memcmp(fs.f[1].data + 2, "bad request", 11) == 0, "then the close frame, code and reason");
	ok(!fs.eof && !s->closed, "the server waits for the client's close");
	send_frame(fd, FIN | OP_TEXT, "late", 4);
	send_frame(fd, FIN | OP_PING, "late", 4);
	get_frames(fd, &fs);
	ok(s->nmsg == 0, "messages after our close are not delivered");
	ok(fs.n == 0, "pings after our close are not answered");
	send_close(fd, 3501, NULL);
	get_frames(fd, &fs);
	ok(fs.eof && fs.n == 0, "the client's close: TCP closed, no second close frame");
	close(fd);
	spin();
	ok(s->closed && s->code == 3501 && close_inside == 0, "on_close, code 3501, not from inside ws_close");

	/* No close from the client: TCP closed after WS_CLOSE_WAIT_MS. */
	fd = ws_open(NULL);
	s = cur();
	ws_close(s->ws, 4000, NULL);
	get_frames(fd, &fs);
	ok(fs.n == 1 && close_code(&fs.f[0]) == 4000 && fs.f[0].len == 2, "close 4000 without a reason");
	tick(WS_CLOSE_WAIT_MS - 200);
	ok(!s->closed, "still waiting before 5 s");
	tick(300);
	get_frames(fd, &fs);
	ok(fs.eof && s->closed, "closed after 5 s");
	close(fd);
	spin();

	/* The session closes from on_message. */
	fd = ws_open(NULL);
	s = cur();
	send_frame(fd, FIN | OP_TEXT, "close", 5);
	send_frame(fd, FIN | OP_TEXT, "echo:after", 10);
	get_frames(fd, &fs);
	ok(fs.n == 1 && close_code(&fs.f[0]) == 4000 && s->nmsg == 1,
	   "ws_close from on_message: close frame, the next message is ignored");
	close(fd);
	spin();
	ok(s->closed, "client vanished: on_close");

	/* A long reason is cut at 123 bytes, not inside a character. */
	fd = ws_open(NULL);
	s = cur();
	{
		char reason[200];

		memset(reason, 'r', 122);
		strcpy(reason + 122, "\xc3\xa9tail");
		ws_close(s->ws, 4001, reason);
		get_frames(fd, &fs);
		ok(fs.n == 1 && fs.f[0].len == 2 + 122, "reason cut to 122 bytes before a 2-byte character");
	}
	close(fd);
	spin();

	/* Closing now, from a callback and from outside. */
	fd = ws_open(NULL);
	s = cur();
	send_frame(fd, FIN | OP_TEXT, "closenow", 8);
	get_frames(fd, &fs);
	ok(fs.eof && fs.n == 0 && s->closed, "ws_close_now from on_message: TCP closed at once");
	close(fd);
	spin();
	fd = ws_open(NULL);
	s = cur();
	ws_send_copy(s->ws, "{}", 2);
	in_api++;
	ws_close_now(s->ws);
	ok(!s->closed, "ws_close_now: on_close is not called from inside it");
	in_api--;
	spin();
	ok(s->closed && close_inside == 0, "but at the flush point");
	get_frames(fd, &fs);
	ok(fs.eof && fs.n == 0, "queued output dropped");
	close(fd);
	spin();

	/* A connection without a session. */
	attach = false;
	{
		char *r;
		const char *body;

		fd = upgrade("/connection/websocket", NULL, &r);
		body = strstr(r, "\r\n\r\n");
		frames_free(&fs);
		if (body)
			parse_frames(&fs, (char *)body + 4, strlen(body + 4));
		ok(status_of(r) == 101 && fs.n == 1 && close_code(&fs.f[0]) == 1011,
		   "no handler attached: 101, then close 1011");
		free(r);
	}
	attach = true;
	close(fd);
	spin();
	frames_free(&fs);
}

static void test_drain(void)
{
	struct frames fs = { 0 };
	int fd1 = ws_open(NULL);
	struct sess *s1 = cur();
	int fd2;
	struct sess *s2;

	custom_drain = true;
	fd2 = ws_open(NULL);
	s2 = cur();
	custom_drain = false;
	conn_drain_all(&w);
	get_frames(fd1, &fs);
	ok(fs.n == 1 && close_code(&fs.f[0]) == 3001 && fs.f[0].len == 10 &&
	   memcmp(fs.f[0].data + 2, "shutdown", 8) == 0, "drain: close 3001 \"shutdown\" by default");
	get_frames(fd2, &fs);
	ok(s2->drained == 1 && fs.n == 1 && close_code(&fs.f[0]) == 3001 &&
	   memcmp(fs.f[0].data + 2, "custom", 6) == 0, "drain: the session's on_drain decides");
	send_close(fd1, 3001, NULL);
	send_close(fd2, 3001, NULL);
	get_frames(fd1, &fs);
	ok(fs.eof && fs.n == 0, "the client's close ends it");
	close(fd1);
	close(fd2);
	spin();
	ok(s1->closed && s2->closed, "both sessions closed");
	frames_free(&fs);
}

static void test_frame_ping_pong(void)
{
	struct frames fs = { 0 };
	int fd = ws_open("/connection/websocket?cf_ws_frame_ping_pong=true");
	struct sess *s = cur();

	tick(WS_PING_INTERVAL_MS - 500);
	get_frames(fd, &fs);
	is_int(fs.n, 0, "no ping before 25 s");
	tick(600);
	get_frames(fd, &fs);
	ok(fs.n == 1 && fs.f[0].op == OP_PING && fs.f[0].len == 0, "ping frame at 25 s");
	send_frame(fd, FIN | OP_PONG, "", 0);
	spin();
	tick(WS_PONG_TIMEOUT_MS + 1000);
	get_frames(fd, &fs);
	ok(fs.n == 0 && !s->closed, "pong in time: no close");
	tick(WS_PING_INTERVAL_MS - WS_PONG_TIMEOUT_MS - 1000);
	get_frames(fd, &fs);
	ok(fs.n == 1 && fs.f[0].op == OP_PING, "next ping 25 s after the last");
	tick(WS_PONG_TIMEOUT_MS + 200);
	get_frames(fd, &fs);
	ok(fs.n == 1 && close_code(&fs.f[0]) == 3012 && memcmp(fs.f[0].data + 2, "no pong", 7) == 0,
	   "no pong in 10 s: close 3012 \"no pong\"");
	send_close(fd, 3012, NULL);
	close(fd);
	spin();
	ok(s->closed, "closed");

	/* Without the option no ping frames are sent. */
	fd = ws_open(NULL);
	s = cur();
	tick(WS_PING_INTERVAL_MS + 1000);
	get_frames(fd, &fs);
	ok(fs.n == 0 && !s->closed, "protocol-ping mode: no ping frames");
	close(fd);
	spin();
	frames_free(&fs);
}

static void test_write_timeout(void)
{
	int fd = ws_open(NULL);
	struct sess *s = cur();
	struct rbuf *m = rbuf_new(60000);
	int sz = 4096;

	memset(m->data, 'w', 60000);
	setsockopt(w.conns->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	ws_send(s->ws, m, 0, 60000);
	spin();
	ok(w.conns->out_bytes > 0, "output blocked");
	tick(500);
	ok(!s->closed, "not closed before websocket.write_timeout");
	tick(700);
	ok(s->closed && s->code == 1006, "write timeout (1000ms): connection closed, on_close");
	rbuf_unref(m);
	close(fd);
	spin();
}

static void test_reconfigure(void)
{
	char *r;
	int fd;

	set_conf("websocket.handler_prefix", "/ws2");
	fd = upgrade("/ws2", NULL, &r);
	is_int(status_of(r), 101, "handler_prefix moved: the new path upgrades");
	free(r);
	close(fd);
	expect_status("the old path is 404",
		      "GET /connection/websocket HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n\r\n",
		      404, NULL);
	set_conf("websocket.disabled", "true");
	expect_status("websocket.disabled: 404",
		      "GET /ws2 HTTP/1.1\r\n" GOOD_HEAD "Sec-WebSocket-Key: " KEY "\r\n\r\n", 404, NULL);
	set_conf("websocket.disabled", "false");
	set_conf("websocket.handler_prefix", "/connection/websocket");
	fd = upgrade("/connection/websocket", NULL, &r);
	is_int(status_of(r), 101, "back to the default path");
	free(r);
	close(fd);
	spin();
}

/* A connection with a transport's own limits (struct ws_limits), next to
 * one with websocket.*; the transport changes them in place. */
static void test_own_limits(void)
{
	struct frames fs = { 0 };
	uint8_t big[300];
	int fd = ws_open("/own"), fd2;
	struct sess *s = cur(), *s2;

	memset(big, 'o', sizeof(big));
	ok(s->ping, "frame_ping: ping frames without the query option");
	fd2 = ws_open(NULL);
	s2 = cur();
	send_frame(fd2, FIN | OP_TEXT, big, 101);
	send_frame(fd, FIN | OP_TEXT, big, 100);
	spin();
	ok(s2->nmsg == 1 && s->nmsg == 1, "100 bytes pass the own limit; 101 pass websocket.*");

	/* one_per_frame: three messages, three frames */
	ws_send_copy(s->ws, "{\"a\":1}", 7);
	ws_send_copy(s->ws, "{\"b\":2}", 7);
	ws_send_copy(s->ws, "{}", 2);
	get_frames(fd, &fs);
	ok(fs.n == 3 && fs.f[0].len == 7 && fs.f[1].len == 7 && fs.f[2].len == 2 &&
	   memcmp(fs.f[2].data, "{}", 2) == 0, "one_per_frame: one text frame per message");
	ws_send_copy(s2->ws, "{\"a\":1}", 7);
	ws_send_copy(s2->ws, "{}", 2);
	get_frames(fd2, &fs);
	ok(fs.n == 1 && fs.f[0].len == 10, "websocket.*: the same messages in one frame");

	/* The limits change in place; open connections follow. */
	own.msg_limit = 200;
	send_frame(fd, FIN | OP_TEXT, big, 200);
	spin();
	ok(s->nmsg == 2 && s->last_len == 200, "a raised limit applies to the open connection");
	own.msg_limit = 100;
	send_frame(fd, FIN | OP_TEXT, big, 101);
	get_frames(fd, &fs);
	ok(closed_with(&fs, 1009), "101 bytes over the own limit: 1009");
	close(fd);
	spin();

	/* Own ping schedule: a ping at 3 s, then 3012 one second without a pong. */
	fd = ws_open("/own");
	s = cur();
	tick(2500);
	get_frames(fd, &fs);
	is_int(fs.n, 0, "no ping before ping_interval");
	tick(600);
	get_frames(fd, &fs);
	ok(fs.n == 1 && fs.f[0].op == OP_PING, "a ping frame at ping_interval");
	tick(1100);
	get_frames(fd, &fs);
	ok(fs.n == 1 && close_code(&fs.f[0]) == 3012, "no pong within pong_timeout: 3012");
	close(fd);
	spin();

	/* A code no close frame may carry: a close frame without a status. */
	fd = ws_open("/own");
	s = cur();
	ws_close(s->ws, 5000, "application code");
	get_frames(fd, &fs);
	ok(fs.n == 1 && fs.f[0].op == OP_CLOSE && fs.f[0].len == 0, "close 5000: a close frame without a status");
	send_close(fd, 1000, NULL);
	get_frames(fd, &fs);
	ok(fs.eof, "the handshake completes");
	close(fd);
	spin();
	ok(s->closed && s->code == 1005, "ws_close_code: 1005 (no status)");

	/* ws_end: what is queued goes out, then TCP closes, no close frame. */
	fd = ws_open(NULL);
	s = cur();
	ws_send_copy(s->ws, "{\"last\":1}", 10);
	ws_end(s->ws);
	is_int(ws_send_copy(s->ws, "{}", 2), RT_CLOSED, "nothing may be sent after ws_end");
	get_frames(fd, &fs);
	ok(fs.n == 1 && fs.f[0].op == OP_TEXT && fs.f[0].len == 10 && fs.eof, "ws_end: the message, then the end");
	close(fd);
	close(fd2);
	spin();
	ok(s->closed && s2->closed, "both sessions closed");
	frames_free(&fs);
}

/* Byte-by-byte delivery of a mixed sequence gives the same results (F15). */
static void test_byte_by_byte(void)
{
	uint8_t b[512];
	size_t n = 0;
	int fd = ws_open(NULL);
	struct sess *s = cur();
	struct frames fs = { 0 };

	n += frame(b + n, OP_TEXT, "frag", 4, false, 0);
	n += frame(b + n, FIN | OP_PING, "ping!", 5, false, 0);
	n += frame(b + n, FIN | OP_CONT, "ment", 4, false, 0);
	n += frame(b + n, FIN | OP_BIN, "\x01\x02", 2, false, 0);
	n += frame(b + n, FIN | OP_CLOSE, "\x03\xe8ok", 4, false, 0);
	send_slowly(fd, b, n);
	get_frames(fd, &fs);
	ok(s->nmsg == 2 && s->last_len == 2, "two messages delivered");
	ok(fs.n == 2 && fs.f[0].op == OP_PONG && fs.f[0].len == 5 && closed_with(&fs, 1000),
	   "pong, then close echo, then TCP close");
	frames_free(&fs);
	close(fd);
	spin();
}

/* Random bytes after the handshake never crash the server. */
static void test_fuzz(void)
{
	unsigned seed = 12345;

	for (int round = 0; round < 200; round++) {
		int fd = ws_open(NULL);
		uint8_t buf[600];
		size_t n = 1 + (size_t)(rand_r(&seed) % sizeof(buf));
		struct frames fs = { 0 };

		for (size_t i = 0; i < n; i++)
			buf[i] = (uint8_t)rand_r(&seed);
		if (round % 2)
			buf[1] |= 0x80; /* masked: gets further into the parser */
		if (round % 4 == 1)
			buf[0] = (uint8_t)((buf[0] & 0x8F)); /* no RSV bits */
		send_bytes(fd, buf, n);
		get_frames(fd, &fs);
		frames_free(&fs);
		close(fd);
		spin();
	}
	ok(1, "200 random inputs survived");
}

static void test_many(void)
{
	int fds[500];
	struct rbuf *b = rbuf_new(2);
	size_t before = w.nconns;
	int good = 0;

	memcpy(b->data, "{}", 2);
	for (int i = 0; i < 500; i++)
		fds[i] = ws_open(NULL);
	for (int i = 0; i < 500; i++)
		ws_send(sess[nsess - 500 + i].ws, b, 0, 2);
	for (int i = 0; i < 500; i++) {
		struct frames fs = { 0 };

		get_frames(fds[i], &fs);
		good += fs.n == 1 && fs.f[0].len == 2;
		frames_free(&fs);
	}
	is_int(good, 500, "500 connections each got the broadcast");
	for (int i = 0; i < 500; i++)
		close(fds[i]);
	spin();
	is_int(w.nconns, before, "and all are gone after their clients left");
	rbuf_unref(b);
}

int main(void)
{
	setup();
	test_accept_key();
	test_handshake_ok();
	test_handshake_refusals();
	test_subprotocols();
	test_frame_with_handshake();
	test_messages();
	test_protocol_errors();
	test_close_frames_in();
	test_utf8();
	test_limits();
	test_send_batched();
	test_send_protobuf();
	test_queue_limit();
	test_server_close();
	test_drain();
	test_frame_ping_pong();
	test_write_timeout();
	test_reconfigure();
	test_own_limits();
	test_byte_by_byte();
	test_fuzz();
	test_many();
	spin();
	tick(3000); /* lingering closes end */
	is_int(w.nconns, 0, "no connection left at the end");
	is_int(close_inside, 0, "on_close never ran inside a ws_* call");
	for (int i = 0; i < MAX_SESS; i++)
		free(sess[i].last);
	http_routes_free();
	conf_free(&k);
	return tap_done();
}
