/*
 * gen.c - one generator process: its share of the subscriber connections,
 * and the publisher when it has that role, on one libev loop.
 *
 * Shares: global connection i (0 <= i < conns) belongs to process
 * i % procs, subscribes to channel i % channels, connects from source
 * address i, and speaks protobuf when --format says so (mixed: odd i).
 * The publisher is process 0, or every process in the api scenario.
 * Connections go over --transport (tp.h), opened with one frame: connect
 * (id 1) and subscribe (id 2); they are set up when both replies came.
 *
 * The handshake scenario opens bare sockets (sock.h) instead: a
 * connection is done, and closed, as soon as its TCP connect and, with
 * --tls, its TLS handshake are.
 *
 * The command scenarios have no publisher: from t_start every connection
 * sends one command (emulation: presence_stats on its channel; rpc: an RPC
 * call) with ids 3, 4, ..., and the next as soon as the reply came, until
 * t_end: commands per second and their round trip.
 *
 * Phases: SETUP (subscribers connect, --concurrency handshakes at a time;
 * READY goes to the parent when every one has succeeded or failed) ->
 * WAIT (for the parent's GO with absolute instants) -> RUN (from t_start:
 * publishing or the connect storm; counting from t_measure; until t_end)
 * -> DRAIN (publishers wait for their responses, then everyone waits until
 * the shared delivered count reaches the expected one, at most --drain
 * seconds) -> DONE (RESULT to the parent, every connection closed and
 * freed, exit). A 1 ms tick drives the phases and a paced publisher; an
 * ev_prepare also pumps the publisher after every batch of I/O (an
 * ev_check would run before the I/O callbacks of its iteration).
 *
 * The payload of every publication is a JSON object of exactly --size
 * bytes: {"bt":<send time ns>,"bs":<sequence in its channel>,"p":"xxx..."}.
 */
#include "bench.h"
#include "cfp.h"
#include "fossil.h"
#include "hcli.h"
#include "tp.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

enum phase { PH_SETUP, PH_WAIT, PH_RUN, PH_DRAIN, PH_DONE };
enum sub_state { SB_IDLE, SB_OPENING, SB_READY, SB_DEAD };

struct sub {
	struct tp_conn *c;
	uint64_t t0;            /* connect started */
	uint64_t cmd_t;         /* the command in flight was sent (emulation) */
	uint32_t gi;            /* global index */
	uint32_t last_seq;
	uint32_t cmd_id;        /* the last command's id */
	uint8_t st;
	uint8_t replies;        /* bit 0: connect, bit 1: subscribe */
	bool cmd_busy;          /* a command awaits its reply */
	uint32_t prev_len;      /* --delta: the last payload's length, */
	char *prev;             /* ... and its bytes (O->size + 1) */
};

#define PIPE_MAX 256

struct pubc {
	struct hcli h;          /* first */
	uint64_t sent[PIPE_MAX];        /* send times of requests in flight, FIFO */
	uint32_t head;
	uint64_t retry_at;
	bool connected;                 /* on_ready came since the last connect */
};

static const struct bench_opts *O;
static struct bench_shared *SH;
static int G_proc, G_res_fd;
static struct ev_loop *L;
static struct bench_result R;
static struct bench_go GO;
static enum phase G_phase;
static bool G_measuring, G_pub_stopped;
static struct rusage G_ru0;

static struct sub *G_subs;
static long G_nsubs, G_next, G_active;
static long G_cmds_inflight;    /* emulation */
static bool G_cmds_started;

static struct pubc *G_pubs;
static int G_npubs, G_nproc_publishers;
static uint32_t *G_chan_seq;
static uint64_t G_next_chan, G_window, G_req; /* G_req: deliveries one request brings */
static double G_rate;           /* this process's publications per second */
static char *G_body;            /* request body scratch */
static size_t G_body_cap;

static ev_timer G_tick;
static ev_prepare G_prep;
static ev_io G_ctl;

static void finish(void);

/* ---- shared counters ---------------------------------------------------- */

static uint64_t delivered_sum(void)
{
	uint64_t s = 0;
	for (int i = 0; i < O->procs; i++)
		s += atomic_load_explicit(&SH->slot[i].delivered, memory_order_relaxed);
	return s;
}

static void note_code(uint32_t code)
{
	for (int i = 0; i < BENCH_NCODES; i++) {
		if (R.codes[i].code == code || R.codes[i].n == 0) {
			R.codes[i].code = code;
			R.codes[i].n++;
			return;
		}
	}
}

static bool in_window(uint64_t t)
{
	return G_phase >= PH_RUN && t >= GO.t_measure && t < GO.t_end;
}

/* ---- subscribers ---------------------------------------------------------- */

static bool is_storm(void)
{
	return bench_storm(O->scen);
}

static bool sub_protobuf(uint32_t gi)
{
	return O->fmt == FMT_PROTOBUF || (O->fmt == FMT_MIXED && (gi & 1));
}

static void start_more(void);

/* A subscriber that is neither ready nor will be: one handshake less. */
static void sub_failed(struct sub *s)
{
	s->st = SB_DEAD;
	G_active--;
	if (is_storm() || G_phase == PH_SETUP)
		R.setup_failed++;
	start_more();
}

/* A ready subscriber is gone. */
static void sub_gone(struct sub *s)
{
	atomic_fetch_sub(&SH->chan_subs[s->gi % (uint32_t)O->channels], 1);
	s->st = SB_DEAD;
	if (s->cmd_busy) {
		s->cmd_busy = false;
		G_cmds_inflight--;
	}
}

static void sub_ready(struct sub *s, uint64_t now)
{
	s->st = SB_READY;
	G_active--;
	R.subscribed++;
	atomic_fetch_add(&SH->chan_subs[s->gi % (uint32_t)O->channels], 1);
	if (is_storm()) {
		R.storm_done++;
		R.storm_last_ns = now;
		if (in_window(now)) {
			R.storm_win++;
			lat_add(&R.lat_conn, now - s->t0);
		}
		if (O->churn) {
			atomic_fetch_sub(&SH->chan_subs[s->gi % (uint32_t)O->channels], 1);
			if (O->scen != SC_HANDSHAKE)    /* a bare one closed itself */
				tp_close(s->c);
			s->st = SB_DEAD;
		}
	}
	start_more();
}

static void sub_channel(const struct sub *s, char *chan, size_t n)
{
	snprintf(chan, n, "%s%u", O->chan_prefix, s->gi % (uint32_t)O->channels);
}

/* ---- bare handshakes (the handshake scenario) ------------------------------ */

struct bare {
	struct sock k;          /* first */
	struct sub *s;
};

static struct bare *G_bare;     /* one per subscriber, in the handshake scenario */

static void on_bare_connect(struct sock *k)
{
	struct bare *b = (struct bare *)k;
	sock_close(k);
	sub_ready(b->s, bench_now());
}

static size_t on_bare_data(struct sock *k, uint8_t *p, size_t n, uint64_t now)
{
	(void)k, (void)p, (void)now;
	return n;
}

/* A failed connect, or (EPROTO) a failed TLS handshake. */
static void on_bare_error(struct sock *k, int err)
{
	struct bare *b = (struct bare *)k;
	if (err == EPROTO)
		R.err_handshake++;
	else
		R.err_connect++;
	sub_failed(b->s);
}

static const struct sock_ops bare_ops = { on_bare_connect, on_bare_data, on_bare_error };

/* Opens s with its first frame: connect (with a token when --token-secret
 * says so) and subscribe; in the handshake scenario, a bare socket.
 * Returns 0 or -1 (counted). */
static int sub_open(struct sub *s)
{
	if (G_bare) {
		struct bare *b = &G_bare[s - G_subs];
		b->s = s;
		if (sock_connect(&b->k, &O->dst, s->gi, &bare_ops) != 0) {
			R.err_connect++;
			return -1;
		}
		return 0;
	}
	char chan[128], token[600];
	uint8_t buf[1024];
	const char *tok = NULL;
	sub_channel(s, chan, sizeof(chan));
	if (O->token_secret) {
		char user[32];
		snprintf(user, sizeof(user), "bench%u", s->gi);
		if (cfp_token(O->token_secret, user, (long long)time(NULL) + 86400, token, sizeof(token)))
			tok = token;
	}
	bool pb = sub_protobuf(s->gi);
	size_t n = cfp_connect_subscribe(buf, sizeof(buf), pb, tok, chan, O->delta);
	if (n == 0 || tp_open(s->c, s->gi, pb, buf, n) != 0) {
		R.err_connect++;
		return -1;
	}
	return 0;
}

/* Sends s's next command (bench_commands), or stops its loop after the window. */
static void cmd_next(struct sub *s, uint64_t now)
{
	char chan[128];
	uint8_t buf[512];
	if (G_phase != PH_RUN || now >= GO.t_end || s->st != SB_READY)
		return;
	sub_channel(s, chan, sizeof(chan));
	s->cmd_id = s->cmd_id < 3 ? 3 : s->cmd_id + 1;
	size_t n = O->scen == SC_RPC ? cfp_rpc(buf, sizeof(buf), s->c->protobuf, s->cmd_id, "bench") :
		   cfp_presence_stats(buf, sizeof(buf), s->c->protobuf, s->cmd_id, chan);
	if (n == 0)
		abort();
	s->cmd_t = now;
	s->cmd_busy = true;
	G_cmds_inflight++;
	if (tp_send(s->c, buf, n) != 0) {
		R.err_closed++;
		sub_gone(s);
	}
}

/* The reply to s's command came (error: with an error). */
static void cmd_done(struct sub *s, bool error, uint64_t now)
{
	s->cmd_busy = false;
	G_cmds_inflight--;
	if (error)
		return;         /* counted by the caller; that loop stops */
	R.cmds_all++;
	if (in_window(now))
		R.cmds_win++;
	if (s->cmd_t >= GO.t_measure && s->cmd_t < GO.t_end)
		lat_add(&R.lat_cmd, now - s->cmd_t);
	cmd_next(s, now);
}

/* Reads our payload: send time and sequence. Returns 0 or -1. */
static int payload_read(const uint8_t *p, size_t n, uint64_t *t, uint32_t *seq)
{
	const uint8_t *e = p + n, *q = memmem(p, n, "\"bt\":", 5);
	if (q == NULL)
		return -1;
	uint64_t v = 0;
	for (q += 5; q < e && *q >= '0' && *q <= '9'; q++)
		v = v * 10 + (uint64_t)(*q - '0');
	if (e - q < 6 || memcmp(q, ",\"bs\":", 6) != 0)
		return -1;
	uint32_t sq = 0;
	for (q += 6; q < e && *q >= '0' && *q <= '9'; q++)
		sq = sq * 10 + (uint32_t)(*q - '0');
	*t = v;
	*seq = sq;
	return 0;
}

/* Unescapes the JSON string at p (n bytes from its opening quote on) into
 * out (cap bytes). Returns its length, or -1. Only what rotord writes:
 * the short escapes and \u00XX. */
static long json_unstring(const uint8_t *p, size_t n, char *out, size_t cap)
{
	static const char esc[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
	size_t k = 0;
	if (n == 0 || *p != '"')
		return -1;
	for (size_t i = 1; i < n; i++) {
		char c = (char)p[i];
		if (c == '"')
			return (long)k;
		if (k == cap)
			return -1;
		if (c != '\\') {
			out[k++] = c;
			continue;
		}
		if (++i == n)
			return -1;
		if (p[i] == 'u') {
			unsigned v = 0;
			if (i + 4 >= n)
				return -1;
			for (int j = 1; j <= 4; j++) {
				int d = p[i + j];
				v = v << 4 | (unsigned)(d <= '9' ? d - '0' : (d | 32) - 'a' + 10);
			}
			if (v > 0x7f)
				return -1;
			out[k++] = (char)v;
			i += 4;
			continue;
		}
		const char *e = NULL;
		for (size_t j = 0; esc[j]; j += 2)
			if (esc[j] == (char)p[i])
				e = esc + j + 1;
		if (e == NULL)
			return -1;
		out[k++] = *e;
	}
	return -1;
}

/* The payload of publication m as the publisher wrote it, for a delta
 * subscriber s: its data (in JSON a string once delta was granted, the
 * object when it was not) with a delta applied to s's previous payload,
 * which it then replaces. Returns the length in out
 * (cap bytes), or -1. */
static long delta_payload(struct sub *s, const struct cfp_msg *m, char *out, size_t cap)
{
	static char raw[BENCH_MAX_SIZE * 2 + 64];
	const uint8_t *d = m->data;
	long n = (long)m->dlen;
	if (d == NULL)
		return -1;
	if (!s->c->protobuf && *d == '{') {
		/* Not granted: the object itself, which has no nested one. */
		const uint8_t *q = d;
		bool str = false;
		for (; q < d + m->dlen && (str || *q != '}'); q++)
			if (*q == '\\' && str)
				q++;
			else if (*q == '"')
				str = !str;
		if (q == d + m->dlen)
			return -1;
		n = q + 1 - d;
	} else if (!s->c->protobuf) {
		if ((n = json_unstring(d, m->dlen, raw, sizeof(raw))) < 0)
			return -1;
		d = (const uint8_t *)raw;
	}
	if (m->delta) {
		R.deltas++;
		n = fossil_apply(s->prev, s->prev_len, (const char *)d, (size_t)n, out, cap);
	} else if ((size_t)n <= cap)
		memcpy(out, d, (size_t)n);
	else
		n = -1;
	if (n < 0 || (size_t)n > (size_t)O->size)
		return -1;
	memcpy(s->prev, out, (size_t)n);
	s->prev_len = (uint32_t)n;
	return n;
}

struct msg_ctx {
	struct sub *s;
	uint64_t now;
};

static int on_proto_msg(void *arg, const struct cfp_msg *m)
{
	struct msg_ctx *c = arg;
	struct sub *s = c->s;
	size_t plen;
	const char *pong;
	switch (m->kind) {
	case CFP_PUB: {
		uint64_t t;
		uint32_t seq;
		R.deliveries_all++;
		if (in_window(c->now))
			R.deliveries_win++;
		static char whole[BENCH_MAX_SIZE];
		const uint8_t *d = m->data;
		long dn = (long)m->dlen;
		if (O->delta && (dn = delta_payload(s, m, whole, sizeof(whole))) >= 0)
			d = (const uint8_t *)whole;
		if (d == NULL || dn < 0 || payload_read(d, (size_t)dn, &t, &seq) < 0) {
			R.err_proto++;
			return 0;
		}
		if (t >= GO.t_measure && t < GO.t_end) {
			uint64_t a = sock_arrival();
			lat_add(&R.lat_deliv, c->now > t ? c->now - t : 0);
			if (a)
				lat_add(&R.lat_arrive, a > t ? a - t : 0);
		}
		if (seq <= s->last_seq)
			R.out_of_order++;
		s->last_seq = seq;
		return 0;
	}
	case CFP_PING:
		R.pings++;
		pong = cfp_pong(s->c->protobuf, &plen);
		if (tp_send(s->c, (const uint8_t *)pong, plen) != 0) {
			R.err_closed++;
			if (s->st == SB_READY)
				sub_gone(s);
			else
				sub_failed(s);
			return 1;
		}
		return 0;
	case CFP_REPLY:
		if (s->st == SB_READY && s->cmd_busy && m->id == s->cmd_id) {
			cmd_done(s, false, c->now);
			return s->st == SB_DEAD;
		}
		if (s->st != SB_OPENING || (m->id != 1 && m->id != 2))
			return 0;
		s->replies |= (uint8_t)m->id;
		if (s->replies == 3)
			sub_ready(s, c->now);
		return s->st == SB_DEAD;
	case CFP_ERROR:
		R.err_reply++;
		note_code(m->code);
		if (s->st == SB_OPENING) {
			tp_close(s->c);
			sub_failed(s);
			return 1;
		}
		if (s->cmd_busy && m->id == s->cmd_id)
			cmd_done(s, true, c->now);
		return 0;
	case CFP_UNSUB:
	case CFP_DISCONNECT:
		R.err_unsub++;
		note_code(m->code);
		return 0;
	case CFP_BAD:
		R.err_proto++;
		return 0;
	case CFP_OTHER:
		return 0;
	}
	return 0;
}

static void on_sub_message(struct tp_conn *tc, const uint8_t *p, size_t n, uint64_t now)
{
	struct msg_ctx c = { tc->ud, now };
	cfp_each(tc->protobuf, p, n, on_proto_msg, &c);
	atomic_store_explicit(&SH->slot[G_proc].delivered, R.deliveries_all, memory_order_relaxed);
}

static void on_sub_end(struct tp_conn *tc, enum tp_end why, int detail)
{
	struct sub *s = tc->ud;
	switch (why) {
	case TP_END_CONNECT:
		R.err_connect++;
		break;
	case TP_END_HANDSHAKE:
		R.err_handshake++;
		if (detail)
			note_code((uint32_t)detail);
		break;
	case TP_END_CLOSE:
		R.err_closed++;
		note_code((uint32_t)detail);
		break;
	case TP_END_EOF:
	case TP_END_PROTO:
		R.err_closed++;
		break;
	case TP_END_SEND:
		R.err_send++;
		if (detail)
			note_code((uint32_t)detail);
		break;
	}
	if (s->st == SB_OPENING)
		sub_failed(s);
	else if (s->st == SB_READY)
		sub_gone(s);
}

static const struct tp_ops sub_ops = { on_sub_message, on_sub_end };

static void write_all(int fd, const void *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(1);
		p = (const uint8_t *)p + w;
		n -= (size_t)w;
	}
}

/* Tells the parent this process is set up (the head of a bench_result). */
static void send_ready(void)
{
	R.type = MSG_READY;
	write_all(G_res_fd, &R, BENCH_READY_SIZE);
	G_phase = PH_WAIT;
}

/* Starts handshakes up to --concurrency; reports READY at the end of
 * setup, and ends a connect storm once every connection is done. Callbacks
 * of the connections it starts may call it again: those calls return at
 * once and the outermost one goes on. */
static void start_more(void)
{
	static bool busy;
	if (busy)
		return;
	busy = true;
	uint64_t now = bench_now();
	bool storm_open = is_storm() && G_phase == PH_RUN && now >= GO.t_start && now < GO.t_end;
	if (G_phase == PH_SETUP || storm_open) {
		while (G_active < O->concurrency && G_next < G_nsubs) {
			struct sub *s = &G_subs[G_next++];
			s->st = SB_OPENING;
			s->replies = 0;
			s->t0 = now;
			G_active++;
			if (sub_open(s) != 0)
				sub_failed(s);
		}
	}
	busy = false;
	if (G_phase == PH_SETUP && G_active == 0 && G_next == G_nsubs)
		send_ready();
	if (is_storm() && G_phase == PH_RUN && G_active == 0 && G_next == G_nsubs)
		finish();
}

/* ---- publisher ------------------------------------------------------------ */

static bool am_publisher(void)
{
	switch (O->scen) {
	case SC_FANOUT:
	case SC_CHANNELS:
	case SC_BURST:
		return G_proc == 0;
	case SC_API:
		return true;
	default:
		return false;
	}
}

static void body_reserve(size_t n)
{
	if (n <= G_body_cap)
		return;
	G_body = realloc(G_body, n);
	if (G_body == NULL)
		abort();
	G_body_cap = n;
}

/* Appends one publish request object for the next channel at b; returns
 * its length. Adds the channel's subscribers to *expect. */
static size_t one_publish(char *b, uint64_t now, uint64_t *expect)
{
	uint32_t ch = (uint32_t)(G_next_chan++ % (uint64_t)O->channels);
	uint32_t seq = ++G_chan_seq[ch];
	*expect += atomic_load_explicit(&SH->chan_subs[ch], memory_order_relaxed);
	int n = sprintf(b, "{\"channel\":\"%s%u\",\"data\":", O->chan_prefix, ch);
	char *d = b + n;
	int dn = sprintf(d, "{\"bt\":%llu,\"bs\":%u,\"p\":\"", (unsigned long long)now, seq);
	int pad = O->size - dn - 2;
	if (pad > 0) {
		memset(d + dn, 'x', (size_t)pad);
		dn += pad;
	}
	d[dn++] = '"';
	d[dn++] = '}';
	d[dn++] = '}';
	return (size_t)(n + dn);
}

/* Sends one request (one publication, or --burst of them through
 * /api/batch) on p. Returns 0 or -1. */
static int publish_on(struct pubc *p, uint64_t now)
{
	uint64_t expect = 0;
	size_t per = (size_t)O->size + strlen(O->chan_prefix) + 128;
	body_reserve(per * (size_t)O->burst + 64);
	size_t n;
	const char *path;
	if (O->burst == 1) {
		n = one_publish(G_body, now, &expect);
		path = "/api/publish";
	} else {
		n = (size_t)sprintf(G_body, "{\"commands\":[");
		for (int i = 0; i < O->burst; i++) {
			n += (size_t)sprintf(G_body + n, "%s{\"publish\":", i ? "," : "");
			n += one_publish(G_body + n, now, &expect);
			G_body[n++] = '}';
		}
		G_body[n++] = ']';
		G_body[n++] = '}';
		path = "/api/batch";
	}
	atomic_fetch_add(&SH->expected, expect);
	uint32_t slot = (p->head + p->h.inflight) % PIPE_MAX;
	if (hcli_post(&p->h, path, NULL, G_body, n) != 0) {
		R.err_connect++;
		p->retry_at = now + 100000000u;
		return -1;
	}
	p->sent[slot] = now;
	R.pubs_all += (uint64_t)O->burst;
	if (in_window(now)) {
		R.pubs_win += (uint64_t)O->burst;
		R.reqs_win++;
	}
	return 0;
}

static void on_pub_ready(struct hcli *h)
{
	((struct pubc *)h)->connected = true;
}

static void on_pub_response(struct hcli *h, int status, const uint8_t *body, size_t n, uint64_t now)
{
	struct pubc *p = (struct pubc *)h;
	uint64_t t = p->sent[p->head];
	p->head = (p->head + 1) % PIPE_MAX;
	if (status == 200 && memmem(body, n, "\"error\"", 7) == NULL) {
		R.resp_ok++;
	} else {
		R.resp_err++;
		if (status != 200)
			note_code((uint32_t)status);
	}
	if (t >= GO.t_measure && t < GO.t_end)
		lat_add(&R.lat_api, now - t);
}

static void on_pub_end(struct hcli *h, int err, unsigned lost)
{
	struct pubc *p = (struct pubc *)h;
	if (!p->connected)
		R.err_connect++;
	else if (err != 0 || lost > 0)
		R.err_closed++;
	p->head = 0;
	p->retry_at = bench_now() + (p->connected ? 10000000u : 100000000u);
	p->connected = false;
}

static const struct hcli_ops pub_ops = { on_pub_ready, on_pub_response, on_pub_end };

/* May the publisher send another request now? */
static bool may_publish(uint64_t now)
{
	if (G_rate > 0) {
		double due = (double)(now - GO.t_start) * G_rate / 1e9;
		return (double)R.pubs_all < due;
	}
	if (G_window == 0)
		return true;
	/* In flight: deliveries still due, in publications' worth; the next
	 * request must fit (or go alone when it is larger than the window). */
	uint64_t exp = atomic_load_explicit(&SH->expected, memory_order_relaxed);
	uint64_t got = delivered_sum();
	return exp <= got || exp - got + G_req <= G_window;
}

static void pub_pump(uint64_t now)
{
	if (G_npubs == 0 || G_phase != PH_RUN || G_pub_stopped || now < GO.t_start)
		return;
	bool progress = true;
	while (progress) {
		progress = false;
		for (int i = 0; i < G_npubs; i++) {
			struct pubc *p = &G_pubs[i];
			if (!sock_open(&p->h.s)) {
				if (now >= p->retry_at && hcli_connect(&p->h, (unsigned)(G_proc + i * O->procs), true, &pub_ops) != 0) {
					R.err_connect++;
					p->retry_at = now + 100000000u;
				}
				continue;
			}
			if (!hcli_ready(&p->h) || p->h.inflight >= (uint32_t)O->pipeline)
				continue;
			if (!may_publish(now))
				return;
			if (publish_on(p, now) == 0)
				progress = true;
		}
	}
}

static int pubs_inflight(void)
{
	int n = 0;
	for (int i = 0; i < G_npubs; i++)
		n += (int)G_pubs[i].h.inflight;
	return n;
}

/* ---- phases --------------------------------------------------------------- */

static double ru_secs(const struct rusage *r)
{
	return (double)r->ru_utime.tv_sec + (double)r->ru_utime.tv_usec / 1e6 +
	       (double)r->ru_stime.tv_sec + (double)r->ru_stime.tv_usec / 1e6;
}

static void finish(void)
{
	if (G_phase == PH_DONE)
		return;
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	if (G_measuring)
		R.cpu_s = ru_secs(&ru) - ru_secs(&G_ru0);
	if (am_publisher() && !G_pub_stopped) {
		G_pub_stopped = true;
		atomic_fetch_add(&SH->pub_done, 1);
	}
	G_phase = PH_DONE;
	ev_break(L, EVBREAK_ALL);
}

static void phase_step(uint64_t now)
{
	if (is_storm() && G_phase == PH_RUN && G_next == 0 && now >= GO.t_start)
		start_more();
	if (bench_commands(O->scen) && G_phase == PH_RUN && !G_cmds_started && now >= GO.t_start) {
		G_cmds_started = true;
		for (long j = 0; j < G_nsubs; j++)
			cmd_next(&G_subs[j], now);
	}
	if (G_phase == PH_RUN && !G_measuring && now >= GO.t_measure) {
		G_measuring = true;
		getrusage(RUSAGE_SELF, &G_ru0);
	}
	if (G_phase == PH_RUN && now >= GO.t_end) {
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		if (!G_measuring) {
			G_measuring = true;
			G_ru0 = ru;
		}
		R.cpu_s = ru_secs(&ru) - ru_secs(&G_ru0);
		G_measuring = false;
		G_phase = PH_DRAIN;
	}
	if (G_phase != PH_DRAIN)
		return;
	bool late = now >= GO.t_end + (uint64_t)(O->drain * 1e9);
	if (am_publisher() && !G_pub_stopped && (pubs_inflight() == 0 || late)) {
		G_pub_stopped = true;
		atomic_fetch_add(&SH->pub_done, 1);
	}
	uint32_t done = atomic_load(&SH->pub_done);
	if (late || ((int)done >= G_nproc_publishers && G_cmds_inflight == 0 &&
		     delivered_sum() >= atomic_load(&SH->expected)))
		finish();
}

static void on_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop, (void)w, (void)revents;
	uint64_t now = bench_now();
	phase_step(now);
	pub_pump(now);
}

static void on_prepare(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop, (void)w, (void)revents;
	if (G_phase == PH_RUN)
		pub_pump(bench_now());
}

static void on_ctl(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop, (void)revents;
	struct bench_go g;
	ssize_t n = read(w->fd, &g, sizeof(g));
	if (n <= 0) {                   /* the parent is gone */
		if (n < 0 && errno == EINTR)
			return;
		_exit(1);
	}
	if (n != sizeof(g))
		_exit(1);
	if (g.t_start == 0) {           /* stop now */
		if (G_phase == PH_RUN || G_phase == PH_DRAIN) {
			GO.t_end = bench_now();
			phase_step(GO.t_end);
		}
		finish();
		return;
	}
	if (G_phase != PH_WAIT && G_phase != PH_SETUP)
		return;
	GO = g;
	G_phase = PH_RUN;
	ev_timer_start(L, &G_tick);
}

/* ---- entry ---------------------------------------------------------------- */

void gen_main(const struct bench_opts *o, struct bench_shared *sh, int proc,
	      int ctl_fd, int res_fd)
{
	O = o;
	SH = sh;
	G_proc = proc;
	G_res_fd = res_fd;
	R.proc = (uint32_t)proc;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, SIG_IGN);        /* the parent decides when to stop */
	L = ev_default_loop(EVBACKEND_EPOLL);
	if (L == NULL)
		L = ev_default_loop(0);
	sock_setup(L, o->src_addrs, o->uring);
	if (o->tls && sock_tls() < 0)
		_exit(1);
	if (o->api_host[0])
		hcli_setup(&o->api_dst, o->api_host, o->api_key);
	else
		hcli_setup(&o->dst, o->host, o->api_key);
	struct tp_env env = { .dst = o->dst, .host = o->host, .post_conns = o->post_conns,
				.post_depth = o->post_pipeline, .k0 = (unsigned)proc, .deflate = o->deflate };
	tp_setup(o->tp, &env);

	G_nsubs = o->conns / o->procs + (proc < o->conns % o->procs);
	G_subs = calloc((size_t)(G_nsubs ? G_nsubs : 1), sizeof(*G_subs));
	if (G_subs == NULL)
		abort();
	for (long j = 0; j < G_nsubs; j++) {
		G_subs[j].gi = (uint32_t)(j * o->procs + proc);
		G_subs[j].c = tp_new(o->tp, &sub_ops, &G_subs[j]);
		if (o->delta && (G_subs[j].prev = malloc((size_t)o->size + 1)) == NULL)
			abort();
	}
	if (o->scen == SC_HANDSHAKE && (G_bare = calloc((size_t)(G_nsubs ? G_nsubs : 1), sizeof(*G_bare))) == NULL)
		abort();

	G_nproc_publishers = o->scen == SC_API ? o->procs :
			     (o->scen == SC_IDLE || is_storm() || bench_commands(o->scen)) ? 0 : 1;
	if (am_publisher()) {
		G_npubs = o->pub_conns;
		G_pubs = calloc((size_t)G_npubs, sizeof(*G_pubs));
		G_chan_seq = calloc((size_t)o->channels, sizeof(*G_chan_seq));
		if (G_pubs == NULL || G_chan_seq == NULL)
			abort();
		G_rate = o->scen == SC_API ? o->rate / o->procs : o->rate;
		long per_chan = o->conns / o->channels;
		uint64_t fan = (uint64_t)(per_chan > 0 ? per_chan : 1); /* deliveries per publication */
		G_req = (uint64_t)o->burst * fan;
		G_window = o->window > 0 ? (uint64_t)o->window * fan : 0;
		G_next_chan = (uint64_t)proc;   /* api: processes start on different channels */
	}

	ev_timer_init(&G_tick, on_tick, 0.001, 0.001);
	ev_prepare_init(&G_prep, on_prepare);
	ev_prepare_start(L, &G_prep);
	ev_io_init(&G_ctl, on_ctl, ctl_fd, EV_READ);
	ev_io_start(L, &G_ctl);

	G_phase = PH_SETUP;
	if (is_storm())
		send_ready();           /* its connections are made in RUN */
	else
		start_more();
	while (G_phase != PH_DONE)
		sock_run(L, &G_tick);

	/* RESULT, then every connection closed and freed. */
	R.type = MSG_RESULT;
	struct sock_reads rs;
	sock_reads(&rs);
	R.reads.uring = rs.uring;
	R.reads.recvmsg = rs.recvmsg;
	R.reads.fallback = rs.fallback;
	R.reads.stalls = rs.stalls;
	R.reads.check_us = rs.check_us;
	write_all(res_fd, &R, sizeof(R));
	for (long j = 0; j < G_nsubs; j++) {
		tp_free(G_subs[j].c);
		free(G_subs[j].prev);
	}
	for (long j = 0; G_bare && j < G_nsubs; j++)
		sock_close(&G_bare[j].k);
	free(G_bare);
	tp_teardown(o->tp);
	for (int i = 0; i < G_npubs; i++)
		hcli_close(&G_pubs[i].h);
	free(G_subs);
	free(G_pubs);
	free(G_chan_seq);
	free(G_body);
	close(res_fd);
	close(ctl_fd);
	_exit(0);
}
