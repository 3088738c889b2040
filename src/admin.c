/*
 * admin.c - the admin web interface (admin.enabled), as Centrifugo v6
 * serves it (ref/operations.md §6.2), so that an operator may use rotor's
 * own UI or point admin.web_path at Centrifugo's.
 *
 * Model: under P = admin.handler_prefix (default "", the root), on the
 * internal listener unless admin.external:
 *   GET  P/admin/settings  {"insecure":bool,"edition":"oss"}
 *   GET  P/admin/init      the same plus "authenticated" (Centrifugo 6.5.2+)
 *   POST P/admin/auth      form field `password` (urlencoded or multipart)
 *                          -> {"token":"<session>"}; 400 when wrong
 *   POST P/admin/api       the legacy server API stream, run by api.c's own
 *                          code, with "Authorization: token <session>" (or
 *                          ?token=); 401 without a valid session
 *   GET  P/...             the UI's static files (P itself redirects to P/)
 * admin.insecure drops the session check (auth then answers the token
 * "insecure", as Centrifugo does).
 *
 * Sessions: a token is base64url(iat || HMAC-SHA256(admin.secret,
 * "rotor-admin-session" || iat || SHA-256(admin.password))), iat being the
 * issue time as 8 big-endian bytes of unix seconds. It is valid for
 * ADMIN_SESSION_S in every worker (nothing is stored), and no longer once
 * the secret or the password changes (a reload ends every session).
 * Comparisons of passwords and MACs are constant-time.
 *
 * Wrong passwords: each worker keeps a token bucket per remote address
 * (AUTH_BURST tries, one more every AUTH_REFILL_MS, AUTH_SLOTS addresses;
 * an address new to a full table inherits the fullest bucket's tokens);
 * an address whose bucket is empty gets 429 with Retry-After for every
 * auth request, right password included, until it refills. Every wrong
 * password is logged with the address; the start of a lockout too.
 *
 * Static files come from admin.web_path, else ROTOR_ADMINDIR (configure's
 * $(pkgdatadir)/admin). A request path is percent-decoded, then refused
 * (404) when it holds an empty, "." or ".." segment or one that starts
 * with a dot, a backslash or a NUL; the file's real path (symlinks
 * resolved) must lie inside the directory's, and it must be a regular
 * file of at most ADMIN_FILE_MAX bytes. Files are read whole with plain
 * read(2): they are a few small local files, read on demand. Every answer
 * carries X-Content-Type-Options: nosniff.
 *
 * Admin requests are ordinary requests of the worker's loop, like the
 * server API's: bodies over ADMIN_BODY_MAX get 413 and nothing here waits.
 */
#include "config.h"
#include "admin.h"
#include "api.h"
#include "conf.h"
#include "conn.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "b64.h"
#include "transport.h"
#include "util.h"
#include "worker.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_BODY_MAX (1 << 20)      /* auth and api request bodies */
#define ADMIN_FILE_MAX (16 << 20)     /* a static file */
#define ADMIN_SESSION_S (24 * 3600)   /* a session token's life */
#define ADMIN_SKEW_S 60               /* an iat this far ahead still passes */
#define AUTH_BURST 5
#define AUTH_REFILL_MS 12000
#define AUTH_SLOTS 64

#define MAC_LEN 32
#define TOKEN_RAW (8 + MAC_LEN)

/* Headers of every admin answer. */
#define SAFE_HDRS "X-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\n"

struct auth_slot {
	char addr[INET6_ADDRSTRLEN];
	double tokens;
	int64_t last_ms;
	bool locked; /* the lockout was logged */
};

static struct {
	struct worker *w;
	unsigned flags;    /* of every route registered */
	char **paths;      /* registered exact routes */
	size_t npaths;
	char *files;       /* registered prefix route of the static files */
	struct auth_slot slots[AUTH_SLOTS];
} AD;

/* ---- config ----------------------------------------------------------- */

/* The admin.* keys of the worker's current config. */
static struct admin_settings cur(void)
{
	struct admin_settings a;

	admin_settings_of(AD.w->conf, &a);
	return a;
}

/* admin.handler_prefix without trailing '/' ("" for the root); caller frees. */
static char *prefix_of(const struct admin_settings *a)
{
	const char *p = a->handler_prefix;
	size_t len = strlen(p);

	while (len > 0 && p[len - 1] == '/')
		len--;
	return xstrndup(p, len);
}

/* ---- sessions ------------------------------------------------------------ */

/* MAC of a session issued at IAT under A's secret and password. */
static void session_mac(const struct admin_settings *a, const unsigned char iat[8], unsigned char mac[MAC_LEN])
{
	static const char tag[] = "rotor-admin-session";
	const char *secret = a->secret, *pw = a->password;
	unsigned char msg[sizeof(tag) + 8 + SHA256_DIGEST_LENGTH];
	unsigned int n = MAC_LEN;

	memcpy(msg, tag, sizeof(tag));
	memcpy(msg + sizeof(tag), iat, 8);
	SHA256((const unsigned char *)pw, strlen(pw), msg + sizeof(tag) + 8);
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, sizeof(msg), mac, &n) == NULL || n != MAC_LEN) {
		log_error("admin: HMAC-SHA256 failed");
		abort(); /* OpenSSL out of memory: nothing sane to answer */
	}
}

/* A new session token under A; caller frees. */
static char *session_new(const struct admin_settings *a)
{
	unsigned char raw[TOKEN_RAW];
	uint64_t now = (uint64_t)time(NULL);

	for (int i = 0; i < 8; i++)
		raw[i] = (unsigned char)(now >> (56 - 8 * i));
	session_mac(a, raw, raw + 8);
	return b64_encode_alloc(raw, sizeof(raw), B64_URL | B64_NOPAD);
}

/* Whether the LEN bytes of TOKEN are a live session under A. */
static bool session_valid(const struct admin_settings *a, const char *token, size_t len)
{
	unsigned char raw[64], mac[MAC_LEN];
	size_t n = 0;
	uint64_t iat = 0;
	int64_t now = (int64_t)time(NULL);

	if (len == 0 || len > 80 || b64_decoded_max(len) > sizeof(raw) ||
	    b64_decode(raw, &n, token, len, B64_URL | B64_NOPAD) != RT_OK || n != TOKEN_RAW)
		return false;
	session_mac(a, raw, mac);
	if (CRYPTO_memcmp(mac, raw + 8, MAC_LEN) != 0)
		return false;
	for (int i = 0; i < 8; i++)
		iat = iat << 8 | raw[i];
	return (int64_t)iat <= now + ADMIN_SKEW_S && now - (int64_t)iat < ADMIN_SESSION_S;
}

/* Whether REQ carries a live session: "Authorization: token <t>" (exactly
 * two fields, the scheme in any case), else ?token=<t>. Always true with
 * admin.insecure; never without a secret. */
static bool session_ok(const struct http_req *req)
{
	struct admin_settings a = cur();
	const char *h = http_req_header(req, "Authorization"), *t;
	size_t n;
	bool ok = false;

	if (a.insecure)
		return true;
	if (!*a.secret)
		return false;
	if (h && http_auth_credentials(h, "token", &t, &n))
		ok = session_valid(&a, t, n);
	if (!ok && req->query && *req->query) {
		struct jw v = { 0 };

		if (transport_query_get(req->query, "token", &v))
			ok = session_valid(&a, v.buf ? v.buf : "", v.len);
		jw_free(&v);
	}
	return ok;
}

/* ---- wrong-password limiter ------------------------------------------- */

/* The remote address of REQ's connection as text, into BUF. */
static void peer_of(const struct http_req *req, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	snprintf(buf, size, "unknown");
	if (getpeername(req->conn->fd, (struct sockaddr *)&ss, &sl) != 0)
		return;
	if (ss.ss_family == AF_INET)
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, (socklen_t)size);
	else if (ss.ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, (socklen_t)size);
}

/* ADDR's bucket, refilled up to now. When every slot is taken, the
 * fullest (the least suspicious) makes room, its tokens kept. */
static struct auth_slot *slot_of(const char *addr, int64_t now)
{
	struct auth_slot *s = NULL, *victim = NULL;

	for (size_t i = 0; i < AUTH_SLOTS; i++) {
		struct auth_slot *x = &AD.slots[i];

		if (!x->addr[0]) {
			if (!victim || victim->addr[0])
				victim = x;
			continue;
		}
		x->tokens += (double)(now - x->last_ms) / AUTH_REFILL_MS;
		x->last_ms = now;
		if (x->tokens >= AUTH_BURST) {
			x->tokens = AUTH_BURST;
			x->locked = false;
		}
		if (strcmp(x->addr, addr) == 0)
			s = x;
		if (!victim || (victim->addr[0] && x->tokens > victim->tokens))
			victim = x;
	}
	if (s)
		return s;
	/* A newcomer takes over the slot with what it had left: when every
	 * slot is being punished, fresh addresses do not start with a full
	 * bucket (many addresses must not buy many tries). */
	if (!victim->addr[0])
		victim->tokens = AUTH_BURST;
	snprintf(victim->addr, sizeof(victim->addr), "%s", addr);
	victim->last_ms = now;
	victim->locked = false;
	return victim;
}

/* ---- answers ------------------------------------------------------------ */

static void answer(struct http_req *req, int status, const char *ctype, const char *extra,
		   const char *body, size_t len)
{
	char hdrs[512];

	snprintf(hdrs, sizeof(hdrs), SAFE_HDRS "Cache-Control: no-store\r\n%s", extra ? extra : "");
	http_respond_hdrs(req, status, ctype, hdrs, body, len);
}

static void answer_text(struct http_req *req, int status, const char *extra)
{
	char body[64];
	int n = snprintf(body, sizeof(body), "%d %s\n", status, http_reason(status));

	answer(req, status, "text/plain; charset=utf-8", extra, body, (size_t)n);
}

/* ---- GET settings / init ------------------------------------------------ */

static void handle_settings(struct http_req *req, void *arg)
{
	bool init = arg != NULL;
	bool insecure = cur().insecure;
	char body[128];
	int n = snprintf(body, sizeof(body), "{\"insecure\":%s,\"edition\":\"oss\"%s%s}",
			 insecure ? "true" : "false", init ? ",\"authenticated\":" : "",
			 init ? (session_ok(req) ? "true" : "false") : "");

	answer(req, 200, "application/json", NULL, body, (size_t)n);
}

/* ---- POST auth ---------------------------------------------------------- */

/* The value of form field NAME in an application/x-www-form-urlencoded
 * BODY, decoded into OUT. */
static bool form_field(const char *body, size_t len, const char *name, struct jw *out)
{
	char *q = xstrndup(body, len);
	bool ok = transport_query_get(q, name, out);

	free(q);
	return ok;
}

/* The boundary parameter of a multipart Content-Type CT, into B. */
static bool boundary_of(const char *ct, char *b, size_t size)
{
	const char *p = strcasestr(ct, "boundary=");
	size_t n;

	if (!p)
		return false;
	p += 9;
	if (*p == '"') {
		p++;
		n = strcspn(p, "\"");
	} else {
		n = strcspn(p, "; \t");
	}
	if (n == 0 || n + 1 > size)
		return false;
	memcpy(b, p, n);
	b[n] = '\0';
	return true;
}

/* The part named NAME of a multipart/form-data BODY with boundary B
 * (RFC 7578), its bytes appended to OUT. */
static bool multipart_field(const char *body, size_t len, const char *b, const char *name, struct jw *out)
{
	char delim[128], want[160];
	const char *end = body + len, *p = body;
	size_t dlen = (size_t)snprintf(delim, sizeof(delim), "--%s", b);

	snprintf(want, sizeof(want), "name=\"%s\"", name);
	while ((p = memmem(p, (size_t)(end - p), delim, dlen)) != NULL) {
		const char *h = p + dlen, *hend, *v, *vend;

		if (end - h >= 2 && h[0] == '-' && h[1] == '-')
			return false; /* the closing delimiter */
		if (end - h < 2 || h[0] != '\r' || h[1] != '\n')
			return false;
		h += 2;
		if (!(hend = memmem(h, (size_t)(end - h), "\r\n\r\n", 4)))
			return false;
		v = hend + 4;
		if (!(vend = memmem(v, (size_t)(end - v), delim, dlen)) || vend - v < 2)
			return false;
		vend -= 2; /* the CRLF before the delimiter */
		/* Content-Disposition of this part names the field? */
		for (const char *l = h; l < hend;) {
			const char *le = memmem(l, (size_t)(hend - l), "\r\n", 2);
			size_t ll = le ? (size_t)(le - l) : (size_t)(hend - l);
			char line[512];

			if (ll < sizeof(line) && strncasecmp(l, "content-disposition:", 20) == 0) {
				memcpy(line, l, ll);
				line[ll] = '\0';
				if (strstr(line, want)) {
					jw_raw(out, v, (size_t)(vend - v));
					return true;
				}
			}
			l += ll + 2;
		}
		p = vend + 2;
	}
	return false;
}

/* The password REQ's body sends, into OUT. */
static bool password_of(const struct http_req *req, struct jw *out)
{
	const char *ct = http_req_header(req, "Content-Type");
	char b[72];

	if (ct && strncasecmp(ct, "multipart/form-data", 19) == 0)
		return boundary_of(ct, b, sizeof(b)) && multipart_field(req->body, req->body_len, b, "password", out);
	return form_field(req->body, req->body_len, "password", out);
}

static void handle_auth(struct http_req *req, void *arg)
{
	struct admin_settings a = cur();
	const char *pw = a.password;
	char addr[INET6_ADDRSTRLEN], retry[64];
	unsigned char want[SHA256_DIGEST_LENGTH], got[SHA256_DIGEST_LENGTH];
	struct auth_slot *s;
	struct jw given = { 0 };
	bool right;

	(void)arg;
	if (req->body_len > ADMIN_BODY_MAX) {
		answer_text(req, 413, NULL);
		return;
	}
	if (a.insecure) {
		static const char body[] = "{\"token\":\"insecure\"}";
		answer(req, 200, "application/json", NULL, body, sizeof(body) - 1);
		return;
	}
	if (!*pw || !*a.secret) {
		answer_text(req, 400, NULL); /* Centrifugo's answer: nothing to log in to */
		return;
	}
	peer_of(req, addr, sizeof(addr));
	s = slot_of(addr, AD.w->now_ms);
	if (s->tokens < 1) {
		int64_t wait_ms = (int64_t)((1 - s->tokens) * AUTH_REFILL_MS);

		if (!s->locked)
			log_warn("admin: too many wrong passwords from %s: auth refused (429) for %lld s",
				 addr, (long long)(wait_ms + 999) / 1000);
		s->locked = true;
		snprintf(retry, sizeof(retry), "Retry-After: %lld\r\n", (long long)(wait_ms + 999) / 1000);
		answer_text(req, 429, retry);
		return;
	}
	password_of(req, &given);
	SHA256((const unsigned char *)pw, strlen(pw), want);
	SHA256((const unsigned char *)(given.buf ? given.buf : ""), given.len, got);
	right = CRYPTO_memcmp(want, got, sizeof(want)) == 0;
	jw_free(&given);
	if (!right) {
		s->tokens -= 1;
		log_warn("admin: wrong password from %s (%d more before a pause)", addr, (int)s->tokens);
		answer_text(req, 400, NULL);
		return;
	}
	char *token = session_new(&a);
	struct jw out = { 0 };

	jw_lit(&out, "{\"token\":");
	jw_str(&out, token, strlen(token));
	jw_lit(&out, "}");
	log_info("admin: session opened from %s", addr);
	answer(req, 200, "application/json", NULL, out.buf, out.len);
	jw_free(&out);
	free(token);
}

/* ---- POST api ----------------------------------------------------------- */

static void handle_api(struct http_req *req, void *arg)
{
	(void)arg;
	if (req->body_len > ADMIN_BODY_MAX) {
		answer_text(req, 413, NULL);
		return;
	}
	if (!session_ok(req)) {
		log_debug("admin api: no valid session: 401");
		http_respond_hdrs(req, 401, NULL, SAFE_HDRS, NULL, 0);
		return;
	}
	api_serve_legacy(req);
}

/* ---- static files -------------------------------------------------------- */

static const char *content_type(const char *file)
{
	static const struct { const char *ext, *type; } types[] = {
		{ ".html", "text/html; charset=utf-8" }, { ".htm", "text/html; charset=utf-8" },
		{ ".js", "text/javascript; charset=utf-8" }, { ".mjs", "text/javascript; charset=utf-8" },
		{ ".css", "text/css; charset=utf-8" }, { ".json", "application/json" },
		{ ".map", "application/json" }, { ".webmanifest", "application/manifest+json" },
		{ ".txt", "text/plain; charset=utf-8" }, { ".svg", "image/svg+xml" },
		{ ".png", "image/png" }, { ".jpg", "image/jpeg" }, { ".jpeg", "image/jpeg" },
		{ ".gif", "image/gif" }, { ".webp", "image/webp" }, { ".ico", "image/x-icon" },
		{ ".woff", "font/woff" }, { ".woff2", "font/woff2" }, { ".ttf", "font/ttf" },
		{ ".wasm", "application/wasm" },
	};
	const char *dot = strrchr(file, '.');

	if (dot && !strchr(dot, '/'))
		for (size_t i = 0; i < ROTOR_ARRAY_LEN(types); i++)
			if (strcasecmp(dot, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

/* Whether the decoded relative path REL (LEN bytes) may name a file:
 * segments non-empty, not "." or "..", not hidden; no backslash, no NUL. */
static bool rel_ok(const char *rel, size_t len)
{
	const char *p = rel, *end = rel + len;

	if (memchr(rel, '\0', len) || memchr(rel, '\\', len))
		return false;
	while (p < end) {
		const char *e = memchr(p, '/', (size_t)(end - p));
		size_t n = e ? (size_t)(e - p) : (size_t)(end - p);

		if (n == 0 || p[0] == '.')
			return false; /* "", ".", "..", ".git" */
		p += n + 1;
	}
	return true;
}

/* Reads regular file FD of SIZE bytes whole; NULL on a short read. */
static char *read_all(int fd, size_t size)
{
	char *buf = xmalloc(size ? size : 1);
	size_t got = 0;

	while (got < size) {
		ssize_t n = read(fd, buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return NULL;
		}
		got += (size_t)n;
	}
	return buf;
}

static void handle_file(struct http_req *req, void *arg)
{
	struct admin_settings a = cur();
	const char *dir = *a.web_path ? a.web_path : ROTOR_ADMINDIR;
	char *prefix = prefix_of(&a), *rel = NULL, *full = NULL, *rdir = NULL, *rfile = NULL, *data = NULL;
	const char *raw = req->path + strlen(prefix) + 1; /* after "P/" */
	size_t rlen = strlen(raw);
	struct stat st;
	long n;
	int fd = -1;

	(void)arg;
	rel = xmalloc(rlen + sizeof("index.html"));
	if ((n = util_unescape(raw, rlen, rel, false)) < 0)
		goto not_found;
	if (n == 0 || rel[n - 1] == '/') {
		memcpy(rel + n, "index.html", sizeof("index.html"));
		n += (long)sizeof("index.html") - 1;
	}
	rel[n] = '\0';
	if (!rel_ok(rel, (size_t)n)) {
		log_debug("admin: refused path %s", req->path);
		goto not_found;
	}
	full = xasprintf("%s/%s", dir, rel);
	if (!(rdir = realpath(dir, NULL)) || !(rfile = realpath(full, NULL)))
		goto not_found;
	if (strncmp(rfile, rdir, strlen(rdir)) != 0 || rfile[strlen(rdir)] != '/') {
		log_warn("admin: %s resolves outside %s: refused", req->path, rdir);
		goto not_found;
	}
	if ((fd = open(rfile, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK)) < 0)
		goto not_found;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > ADMIN_FILE_MAX)
		goto not_found;
	if (!(data = read_all(fd, (size_t)st.st_size))) {
		log_syscall("read(%s)", rfile);
		goto not_found;
	}
	http_respond_hdrs(req, 200, content_type(rfile), SAFE_HDRS "Cache-Control: no-cache\r\n",
			  data, (size_t)st.st_size);
	goto out;
not_found:
	answer_text(req, 404, NULL);
out:
	if (fd >= 0)
		close(fd);
	free(data);
	free(rfile);
	free(rdir);
	free(full);
	free(rel);
	free(prefix);
}

/* P without the slash: to P/, where the UI's relative URLs work. */
static void handle_redirect(struct http_req *req, void *arg)
{
	char extra[PATH_MAX + 32];

	(void)arg;
	snprintf(extra, sizeof(extra), "Location: %s/\r\n", req->path);
	answer_text(req, 301, extra);
}

/* ---- routes -------------------------------------------------------------- */

static void route(const char *path, unsigned kind, uint64_t methods, http_handler_fn fn, void *arg)
{
	if (http_route_add(path, AD.flags | kind, methods, fn, arg) != RT_OK) {
		log_warn("admin: %s is taken by another handler", path);
		return;
	}
	if (kind == HTTP_ROUTE_PREFIX) {
		AD.files = xstrdup(path);
		return;
	}
	AD.paths = xrealloc(AD.paths, (AD.npaths + 1) * sizeof(*AD.paths));
	AD.paths[AD.npaths++] = xstrdup(path);
}

static void routes_remove(void)
{
	for (size_t i = 0; i < AD.npaths; i++) {
		http_route_remove(AD.paths[i], AD.flags | HTTP_ROUTE_EXACT);
		free(AD.paths[i]);
	}
	free(AD.paths);
	AD.paths = NULL;
	AD.npaths = 0;
	if (AD.files)
		http_route_remove(AD.files, AD.flags | HTTP_ROUTE_PREFIX);
	free(AD.files);
	AD.files = NULL;
}

static void routes_add(const struct conf *c)
{
	const uint64_t get = HTTP_METHOD_BIT(HTTP_GET) | HTTP_METHOD_BIT(HTTP_HEAD);
	const uint64_t post = HTTP_METHOD_BIT(HTTP_POST);
	struct admin_settings a;
	char *p, *path;

	admin_settings_of(c, &a);
	if (!a.enabled)
		return;
	AD.flags = a.external ? 0 : HTTP_ROUTE_INTERNAL;
	p = prefix_of(&a);
	path = xasprintf("%s/admin/settings", p);
	route(path, HTTP_ROUTE_EXACT, get, handle_settings, NULL);
	free(path);
	path = xasprintf("%s/admin/init", p);
	route(path, HTTP_ROUTE_EXACT, get, handle_settings, (void *)1);
	free(path);
	path = xasprintf("%s/admin/auth", p);
	route(path, HTTP_ROUTE_EXACT, post, handle_auth, NULL);
	free(path);
	path = xasprintf("%s/admin/api", p);
	route(path, HTTP_ROUTE_EXACT, post, handle_api, NULL);
	free(path);
	if (*p)
		route(p, HTTP_ROUTE_EXACT, get, handle_redirect, NULL);
	path = xasprintf("%s/", p);
	route(path, HTTP_ROUTE_PREFIX, get, handle_file, NULL);
	free(path);
	free(p);
}

void admin_init(struct worker *w)
{
	AD.w = w;
	routes_add(w->conf);
}

void admin_reconfigure(struct worker *w)
{
	AD.w = w;
	routes_remove();
	routes_add(w->conf);
}

void admin_free(void)
{
	routes_remove();
	AD.w = NULL;
}
