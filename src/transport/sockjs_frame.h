/*
 * sockjs_frame.h - the SockJS 0.3 protocol as bytes: which URL is which,
 * the frames the server sends and their per-transport wrappings, the
 * payloads clients send, the htmlfile/JSONP callback, /info and the iframe
 * page. Prefix sjf_.
 *
 * Pure: no I/O, no sessions, no clock, no configuration. Every builder
 * appends bytes to a caller's struct jw and depends only on its arguments,
 * so the transport can build a frame once (sjf_frame_msgs) and reuse its
 * bytes for every connection and every transport (sjf_wrap). Nothing here
 * keeps a pointer past the call except where a result says it points into
 * the caller's input (sjf_route).
 *
 * The rules are those of the SockJS protocol suite's master branch (what
 * sockjs-node 0.3.24 passes and sockjs-client 1.x expects). The § numbers
 * are the sections of the project's SockJS reference notes (sockjs.md).
 */
#ifndef ROTOR_SOCKJS_FRAME_H
#define ROTOR_SOCKJS_FRAME_H

#include "rotor.h"
#include "json.h"
#include <stdbool.h>
#include <stdint.h>

/* ---- URLs ------------------------------------------------------------- */

/* What a path under the prefix names. */
enum sjf_kind {
	SJF_NOT_FOUND = 0,  /* anything else: 404 */
	SJF_GREETING,       /* "" and "/" */
	SJF_INFO,           /* "/info" */
	SJF_IFRAME,         /* "/iframe.html", "/iframe<[0-9a-z._-]*>.html" */
	SJF_RAW_WEBSOCKET,  /* "/websocket" */
	SJF_SESSION,        /* "/<server>/<session>/<transport>" */
};

/* The transports of a session URL, named by its last segment. */
enum sjf_transport {
	SJF_T_NONE = 0,
	SJF_T_WEBSOCKET,      /* websocket */
	SJF_T_XHR,            /* xhr */
	SJF_T_XHR_STREAMING,  /* xhr_streaming */
	SJF_T_XHR_SEND,       /* xhr_send */
	SJF_T_EVENTSOURCE,    /* eventsource */
	SJF_T_HTMLFILE,       /* htmlfile */
	SJF_T_JSONP,          /* jsonp */
	SJF_T_JSONP_SEND,     /* jsonp_send */
};
#define SJF_T_COUNT (SJF_T_JSONP_SEND + 1)

/* The longest <server> and <session> segment accepted, in bytes as sent
 * (percent escapes are not decoded). Longer is 404. */
#define SJF_ID_MAX 128

/* A route. For SJF_SESSION, SERVER and SESSION point into the PATH that
 * sjf_route was given (valid as long as it is) and hold 1..SJF_ID_MAX
 * bytes; otherwise they are empty and TRANSPORT is SJF_T_NONE. A session
 * is identified by SESSION alone: SERVER is for load balancers. */
struct sjf_route {
	enum sjf_kind kind;
	enum sjf_transport transport;
	const char *server, *session;
	size_t server_len, session_len;
};

/* Routes PATH[0..N), the request path after the prefix with the query
 * string removed (e.g. "", "/info", "/000/abcdefgh/xhr"), into *R and
 * returns R->kind. Matching is byte-exact and case-sensitive; there is no
 * trailing-slash tolerance except for the greeting ("/"). <server> and
 * <session> are each 1..SJF_ID_MAX bytes other than '/' and '.' (so "%2e"
 * is allowed, "." is not), and other than ASCII controls, space and DEL,
 * which no valid request-target holds anyway. */
enum sjf_kind sjf_route(const char *path, size_t n, struct sjf_route *r);

/* The methods R's URL answers, as a mask of HTTP_METHOD_BIT(HTTP_GET)...
 * (llhttp method numbers, see http.h); 0 for SJF_NOT_FOUND. A request with
 * another method is 405 with an Allow header made from this mask:
 *   greeting, iframe, raw websocket, websocket, eventsource, htmlfile: GET
 *   info: GET, OPTIONS      xhr, xhr_streaming, xhr_send: POST, OPTIONS
 *   jsonp: GET, OPTIONS     jsonp_send: POST */
uint64_t sjf_methods(const struct sjf_route *r);

/* What a session transport does, for code that must not name members. */
#define SJF_TF_RECEIVE   0x1u  /* a receiver: opens/attaches to the session, gets frames */
#define SJF_TF_STREAMING 0x2u  /* a receiver that keeps the response open (response limit) */
#define SJF_TF_SEND      0x4u  /* carries client messages in its body (xhr_send, jsonp_send) */
#define SJF_TF_CALLBACK  0x8u  /* needs a valid ?c= callback (htmlfile, jsonp) */
#define SJF_TF_CORS      0x10u /* gets CORS headers (§2.3) */
#define SJF_TF_UPGRADE   0x20u /* a WebSocket upgrade; its session is the socket (websocket) */
unsigned sjf_transport_flags(enum sjf_transport t);

/* The transport's URL segment ("xhr_streaming"), "" for SJF_T_NONE. */
const char *sjf_transport_name(enum sjf_transport t);

/* The Content-Type of a successful answer on R's URL (§2.1), NULL for
 * SJF_NOT_FOUND and the WebSocket kinds (nothing but 101/400 is sent).
 * 405, 304 and OPTIONS answers carry none; errors are SJF_CTYPE_TEXT. */
const char *sjf_content_type(const struct sjf_route *r);
#define SJF_CTYPE_TEXT "text/plain; charset=UTF-8"

/* Fixed texts: the greeting body and the phrases of the 500 answers. */
#define SJF_GREETING_BODY "Welcome to SockJS!\n"
#define SJF_ERR_PAYLOAD "Payload expected."
#define SJF_ERR_BROKEN "Broken JSON encoding."
#define SJF_ERR_CALLBACK_REQUIRED "\"callback\" parameter required"
#define SJF_ERR_CALLBACK_INVALID "invalid \"callback\" parameter"

/* ---- server -> client: quoting and frames ------------------------------ */

/* sjf_quote_ex flags. */
#define SJF_Q_BARE 0x1u  /* no surrounding quotes: the inside of a JSON string */
#define SJF_Q_HTML 0x2u  /* also '<' '>' '&' as \u003c \u003e \u0026 (htmlfile) */

/* Appends the bytes P[0..N) to OUT as a JSON string the way SockJS clients
 * need it (§4.2): '"' and '\\' escaped; \b \f \n \r \t; other U+0000-U+001F
 * as \u00XX; U+200C-U+200F, U+2028-U+202F, U+2060-U+206F and U+FFF0-U+FFFF
 * as \uXXXX; every character above U+FFFF as an escaped surrogate pair
 * (\ud83d\ude00, as sockjs-node sends it); hex digits lowercase. Other
 * characters are copied raw. Each byte that does not begin a valid UTF-8
 * sequence becomes \ufffd, so the output is always valid UTF-8 and valid
 * JSON, and never holds a raw control character. P may be NULL if N is 0.
 *
 * sjf_quote writes one complete JSON string, quotes included: one message
 * of an a[...] frame. With SJF_Q_BARE the quotes are left out, so pieces
 * can be joined inside one string: '"' + bare(r1) + "\\n" + bare(r2) + '"'
 * is the single message "r1\nr2" (how Centrifugo batches replies). */
void sjf_quote_ex(struct jw *out, const char *p, size_t n, unsigned flags);
void sjf_quote(struct jw *out, const char *p, size_t n);

/* Appends message P[0..N) to LIST, the comma-separated quoted messages of a
 * future a[...] frame: a ',' first unless LIST is empty, then sjf_quote.
 * A session's outgoing queue can be such a list; sjf_frame_msgs frames it. */
void sjf_list_add(struct jw *list, const char *p, size_t n);

/* The frames (§4.1), appended to OUT without any transport wrapping:
 * "o", "h", "c[CODE,\"REASON\"]" (REASON quoted by sjf_quote, no spaces),
 * and "a[" LIST "]" where LIST[0..N) is one or more quoted messages
 * separated by commas (as sjf_list_add builds it; not checked). */
void sjf_frame_open(struct jw *out);
void sjf_frame_heartbeat(struct jw *out);
void sjf_frame_close(struct jw *out, unsigned code, const char *reason, size_t n);
void sjf_frame_msgs(struct jw *out, const char *list, size_t n);

/* Appends FRAME[0..N) to OUT wrapped for one receiving transport T (§6):
 *   websocket            FRAME (one text message)
 *   xhr, xhr_streaming   FRAME "\n"
 *   eventsource          "data: " FRAME "\r\n\r\n", with '%' '\r' '\n' NUL
 *                        in FRAME written as %25 %0D %0A %00
 *   htmlfile             "<script>\np(" FRAME as a JSON string, SJF_Q_HTML
 *                        ");\n</script>\r\n"
 *   jsonp                "/ * * /" CB "(" FRAME as a JSON string ");\r\n"
 *                        (without the spaces)
 * CB[0..CBN) is the callback for jsonp (must pass sjf_callback_ok; it is
 * ignored otherwise and may be NULL). T must be a receiver (SJF_TF_RECEIVE);
 * anything else is a programming error (assert). The wrapped length is what
 * counts against a streaming response limit. */
void sjf_wrap(struct jw *out, enum sjf_transport t, const char *cb, size_t cbn,
	      const char *frame, size_t n);

/* sjf_wrap in three parts, for a frame assembled from pieces: FRAME wrapped
 * for T is exactly
 *   sjf_wrap_head(T, CB) + sjf_wrap_piece(T, P1) + ... + sjf_wrap_piece(T, Pk)
 *   + sjf_wrap_tail(T)
 * whenever FRAME = P1 + ... + Pk is cut between characters (never inside
 * a UTF-8 sequence): every wrapping transforms the frame character by
 * character. So a message quoted once per publication can be wrapped once
 * and its bytes shared by every connection whose frame holds it, with only
 * the frame's fixed parts around it. Head and tail hold no per-frame
 * bytes except the jsonp callback; for websocket, xhr and xhr_streaming a
 * piece is its bytes as they are. */
void sjf_wrap_head(struct jw *out, enum sjf_transport t, const char *cb, size_t cbn);
void sjf_wrap_piece(struct jw *out, enum sjf_transport t, const char *p, size_t n);
void sjf_wrap_tail(struct jw *out, enum sjf_transport t);

/* Appends what receiving transport T sends before its first frame:
 *   xhr_streaming  2048 'h' and "\n" (2049 bytes)
 *   eventsource    "\r\n"
 *   htmlfile       the page head of §6.7 with CB[0..CBN) as the callback
 *                  (must pass sjf_callback_ok, asserted), padded with
 *                  spaces to SJF_HTMLFILE_PAD bytes, then "\r\n\r\n"
 *   others         nothing.
 * Send it as its own chunk; it does not count against the response limit. */
void sjf_prelude(struct jw *out, enum sjf_transport t, const char *cb, size_t cbn);
#define SJF_XHR_PRELUDE_LEN 2049
#define SJF_HTMLFILE_PAD 1037  /* head bytes before "\r\n\r\n" (sockjs-node's figure; > 1024) */

/* ---- client -> server payloads ----------------------------------------- */

/* Decoded messages: all bytes back to back in TEXT, message I at
 * TEXT.buf + V[I].off for V[I].len bytes, each followed by a NUL that its
 * length does not count (messages may hold NUL bytes themselves). Zero-
 * initialise; sjf_decode resets and reuses it, so one per worker or
 * connection allocates only while its largest payload so far grows;
 * sjf_msgs_free releases it. */
struct sjf_msgs {
	struct jw text;
	struct sjf_msg {
		size_t off, len;
	} *v;
	size_t n, cap;
};
void sjf_msgs_free(struct sjf_msgs *m);
static inline const char *sjf_msg(const struct sjf_msgs *m, size_t i, size_t *len)
{
	*len = m->v[i].len;
	return m->text.buf + m->v[i].off;
}

/* sjf_decode results. */
enum sjf_decode_rc {
	SJF_DEC_OK = 0,      /* M holds 0..N messages ("[]" is valid: none) */
	SJF_DEC_EMPTY,       /* N == 0 -> 500 SJF_ERR_PAYLOAD */
	SJF_DEC_BROKEN,      /* not JSON -> 500 SJF_ERR_BROKEN; on WebSocket: close */
	SJF_DEC_NOT_ARRAY,   /* JSON, but not an array of strings -> 500 SJF_ERR_PAYLOAD */
};
/* sjf_decode flags. */
#define SJF_D_STRING 0x1u  /* also take a bare JSON string as one message (WebSocket) */

/* Decodes the body P[0..N) of xhr_send, jsonp_send or a WebSocket text
 * message (§4.3): a JSON array of strings, whitespace allowed around
 * tokens, each string one message, into M (reset first). Every escape is
 * decoded; an escaped surrogate pair becomes one 4-byte UTF-8 character,
 * a lone escaped surrogate U+FFFD (a high one followed by an escape that is
 * not a low one: U+FFFD, and that escape is decoded on its own); raw bytes
 * that are not UTF-8 inside a string become U+FFFD each, as both reference
 * servers do. So every message is valid UTF-8. Outside strings the text
 * must be JSON (js_valid decides BROKEN vs NOT_ARRAY). On any result but
 * SJF_DEC_OK, M holds no messages.
 *
 * Bounds are the caller's: limit N before calling (M->n is at most N/3 + 1;
 * M->text at most 3*N bytes, a bad byte growing to U+FFFD, plus the NULs).
 * A WebSocket transport should ignore an empty message (SJF_DEC_EMPTY)
 * rather than fail it. */
enum sjf_decode_rc sjf_decode(const char *p, size_t n, unsigned flags, struct sjf_msgs *m);

/* The 500 body text for a result other than SJF_DEC_OK (NULL for OK). */
const char *sjf_decode_error(enum sjf_decode_rc rc);

/* Looks KEY up in S[0..N), an application/x-www-form-urlencoded text (a
 * query string or a form body: "k=v&k2=v2"): the first pair whose key,
 * decoded, equals KEY. If found, appends its value decoded to OUT ('+' is
 * a space, %XX a byte, a '%' not followed by two hex digits stays as it
 * is; no UTF-8 check) and returns true, else false. A pair without '='
 * has an empty value. */
bool sjf_form_get(const char *s, size_t n, const char *key, struct jw *out);

/* sjf_form_d results. */
enum sjf_form_rc {
	SJF_FORM_OK = 0,   /* OUT holds the decoded d: pass it to sjf_decode */
	SJF_FORM_MISSING,  /* no d field ("p=p", "") -> 500 SJF_ERR_PAYLOAD */
	SJF_FORM_EMPTY,    /* "d=" -> 500 SJF_ERR_PAYLOAD */
};
/* Appends the `d` field of the jsonp_send form body BODY[0..N) to OUT,
 * decoded as by sjf_form_get (§6.9). */
enum sjf_form_rc sjf_form_d(const char *body, size_t n, struct jw *out);

/* ---- htmlfile / JSONP callback ------------------------------------------ */

/* The longest callback accepted, as sockjs-node has it; sockjs-client's are
 * "_jp." plus a short random id, far below. */
#define SJF_CALLBACK_MAX 32

/* Whether CB[0..N) may be a callback: 1..SJF_CALLBACK_MAX characters, all
 * of [a-zA-Z0-9_.-]. Such a name is safe raw in HTML and JavaScript. */
bool sjf_callback_ok(const char *cb, size_t n);

/* sjf_query_callback results. */
enum sjf_callback_rc {
	SJF_CB_OK = 0,     /* OUT holds the callback, NUL-terminated, *LEN its length */
	SJF_CB_MISSING,    /* no c/callback parameter, or empty -> 500 SJF_ERR_CALLBACK_REQUIRED */
	SJF_CB_INVALID,    /* fails sjf_callback_ok once decoded -> 500 SJF_ERR_CALLBACK_INVALID */
};
/* The callback of an htmlfile/jsonp request from its query string
 * QUERY[0..N) (without '?'): the first non-empty of the parameters `c` and
 * `callback`, percent-decoded, checked with sjf_callback_ok, into OUT. */
enum sjf_callback_rc sjf_query_callback(const char *query, size_t n,
					char out[SJF_CALLBACK_MAX + 1], size_t *len);

/* ---- /info and the iframe page ------------------------------------------ */

/* Appends the /info body (§3), exactly
 *   {"websocket": W, "origins": ["*:*"], "cookie_needed": C, "entropy": E}
 * with W, C true/false and ENTROPY in decimal. The caller supplies a fresh
 * random ENTROPY per request (util_random). */
void sjf_info_json(struct jw *out, bool websocket, bool cookie_needed, uint32_t entropy);

/* Whether URL[0..N) may be the iframe page's script URL: it starts with '/'
 * or "http" and holds no byte that would end or break the src="..."
 * attribute (controls, space, '"', '<', '>', '\'', '`', DEL). Configuration
 * checks the sockjs url with this. */
bool sjf_script_url_ok(const char *url, size_t n);

/* Appends the iframe page (§3) with URL[0..N) as the script (must pass
 * sjf_script_url_ok, asserted). The body is the template verbatim, lines
 * ended by "\n", the last one too. */
void sjf_iframe_page(struct jw *out, const char *url, size_t n);

/* The ETag of an iframe page BODY[0..N): '"' + MD5 in lowercase hex + '"',
 * NUL-terminated, into OUT. Compute it once per page (configuration load),
 * not per request. Returns RT_OK, or RT_ERR if libcrypto failed (logged). */
#define SJF_ETAG_LEN 34
int sjf_etag(const char *body, size_t n, char out[SJF_ETAG_LEN + 1]);

#endif
