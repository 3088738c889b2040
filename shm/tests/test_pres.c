/*
 * test_pres.c - the presence table: add, update, remove, get and stats
 * (distinct users, the anonymous user counted once), argument and size
 * limits, owner leases (never touched, run out, refreshed, released, a
 * new process in a released slot), an entry's own expiry, the sweep, a
 * full table refusing without damage, read-only attachment, a writer
 * killed between any two steps of each kind of change (and a repairer
 * killed in turn) leaving the table exactly before or after the change,
 * writers killed at random, per-channel cost in a big table, and rates.
 */
#include "pres.h"
#include "../../tests/tap.h"
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char dir[] = "/tmp/rotor-test-pres-XXXXXX";
static char path[256];

#define NOW ((int64_t)1000000000)   /* a monotonic clock, in ms */
#define LONG_LEASE (NOW + 3600000)

static int add(struct pres *t, const char *ch, const char *client, const char *user, const char *conn,
	       unsigned owner)
{
	struct pres_item it = { .client = client, .user = user, .conn_info = conn,
				.conn_info_len = conn ? strlen(conn) : 0, .owner = owner };
	return pres_add(t, ch, &it);
}

/* ---- what pres_get shows, as one sorted string ---------------------------- */

struct dump {
	char *item[8192];
	int n;
	int bad;      /* items whose conn_info does not name their client (when checked) */
	bool check;
};

static int dump_cb(void *arg, const struct pres_item *it)
{
	struct dump *d = arg;
	const char *ci = it->conn_info ? it->conn_info : "", *hi = it->chan_info ? it->chan_info : "";
	int n = snprintf(NULL, 0, "%s=%s|%.*s|%.*s|%u", it->client, it->user, (int)it->conn_info_len, ci,
			 (int)it->chan_info_len, hi, it->owner);
	char *s = malloc((size_t)n + 1);
	if (n < 0 || s == NULL)
		abort();
	snprintf(s, (size_t)n + 1, "%s=%s|%.*s|%.*s|%u", it->client, it->user, (int)it->conn_info_len, ci,
		 (int)it->chan_info_len, hi, it->owner);
	if (d->check) {
		/* Torture payloads: conn_info begins with "<client>/<user>/". */
		char pre[600];
		int k = snprintf(pre, sizeof(pre), "%s/%s/", it->client, it->user);
		if (it->conn_info_len < (size_t)k || memcmp(it->conn_info, pre, (size_t)k) != 0)
			d->bad++;
	}
	if (d->n < 8192)
		d->item[d->n++] = s;
	else
		free(s);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "ch{a,b,c}ch2{...}" for the channels CHANS at time AT; a malloc'd string. */
static char *dump_at(struct pres *t, const char *const *chans, int nch, int64_t at)
{
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	out[0] = '\0';
	for (int i = 0; i < nch; i++) {
		struct dump d = { .n = 0 };
		if (pres_get(t, chans[i], at, dump_cb, &d) < 0)
			len += (size_t)snprintf(out + len, cap - len, "%s{ERROR %d}", chans[i], errno);
		qsort(d.item, (size_t)d.n, sizeof(char *), cmp_str);
		len += (size_t)snprintf(out + len, cap - len, "%s{", chans[i]);
		for (int j = 0; j < d.n; j++) {
			len += (size_t)snprintf(out + len, cap - len, "%s%s", j ? "," : "", d.item[j]);
			free(d.item[j]);
		}
		len += (size_t)snprintf(out + len, cap - len, "}");
	}
	return out;
}

static int count(struct pres *t, const char *ch, int64_t at)
{
	struct dump d = { .n = 0 };
	int n = pres_get(t, ch, at, dump_cb, &d);
	for (int j = 0; j < d.n; j++)
		free(d.item[j]);
	return n;
}

static bool verified(struct pres *t, struct pres_counts *c)
{
	struct pres_counts dummy;
	if (c == NULL)
		c = &dummy;
	if (pres_verify(t, c) == 0)
		return true;
	printf("#   pres_verify: %s\n", c->problem ? c->problem : strerror(errno));
	return false;
}

/* ---- basics --------------------------------------------------------------- */

static void test_create(void)
{
	struct pres t, ro;
	struct pres_info in;

	ok(pres_create(&t, path, 8, 1 << 20) < 0 && errno == EINVAL, "too few nodes: EINVAL");
	ok(pres_create(&t, path, 1024, 1 << 10) < 0 && errno == EINVAL, "too small an arena: EINVAL");
	ok(pres_create(&t, path, 1024, 1 << 20) == 0, "create 1024 nodes and a 1 MiB arena");
	pres_info(&t, &in);
	ok(in.nodes == 1024 && in.nodes_free == 1024 && in.blocks == 16384 && in.blocks_free == 16384 &&
	   in.channels == 0 && in.clients == 0 && in.leases == 0, "an empty table, every lease expired");
	ok(t.seg.size == pres_seg_size(1024, 1 << 20), "segment size as pres_seg_size says (%zu)", t.seg.size);
	ok(verified(&t, NULL), "an empty table verifies");
	ok(pres_attach(&ro, path, true) == 0, "attach read-only");
	ok(ro.readonly && ro.nnodes == 1024, "... with the same geometry");
	pres_detach(&ro);

	/* A segment of another kind, or a truncated one, does not attach. */
	char other[300];
	snprintf(other, sizeof(other), "%s/other.seg", dir);
	struct seg s;
	ok(seg_create(&s, other, 0x12345678u, 1, 4096) == 0, "a segment of another kind");
	ok(pres_attach(&ro, other, false) < 0 && errno == EPROTO, "... is refused with EPROTO");
	seg_detach(&s);
	unlink(other);
	snprintf(other, sizeof(other), "%s/small.seg", dir);
	ok(seg_create(&s, other, SEG_KIND_PRES, PRES_VERSION, 4096) == 0, "a presence segment without a table");
	ok(pres_attach(&ro, other, false) < 0 && errno == EPROTO, "... is refused with EPROTO");
	seg_detach(&s);
	unlink(other);
	pres_detach(&t);
}

static void test_basics(void)
{
	struct pres t;
	uint32_t nc, nu;
	struct pres_info in;
	const char *chans[] = { "chat", "news" };
	char *s;

	pres_create(&t, path, 1024, 1 << 20);
	ok(pres_touch_owner(&t, 0, NOW, LONG_LEASE) == 1, "the first touch of a lease says it had run out");
	ok(pres_touch_owner(&t, 0, NOW, LONG_LEASE) == 0, "the next says it was running");
	pres_touch_owner(&t, 1, NOW, LONG_LEASE);

	ok(add(&t, "chat", "c1", "alice", "{\"a\":1}", 0) == 0, "add c1 (alice) to chat");
	ok(add(&t, "chat", "c2", "bob", NULL, 0) == 0, "add c2 (bob)");
	ok(add(&t, "chat", "c3", "", NULL, 1) == 0, "add c3 (anonymous), another owner");
	ok(add(&t, "chat", "c4", "", NULL, 1) == 0, "add c4 (anonymous)");
	ok(add(&t, "chat", "c5", "alice", NULL, 1) == 0, "add c5 (alice again)");
	ok(add(&t, "news", "c1", "alice", "{\"n\":2}", 0) == 0, "the same client in news");
	struct pres_item ci = { .client = "c6", .user = "carol", .conn_info = "[1]", .conn_info_len = 3,
				.chan_info = "{\"room\":7}", .chan_info_len = 10, .owner = 1 };
	ok(pres_add(&t, "news", &ci) == 0, "add c6 with conn_info and chan_info");

	s = dump_at(&t, chans, 2, NOW);
	is_str(s, "chat{c1=alice|{\"a\":1}||0,c2=bob|||0,c3=|||1,c4=|||1,c5=alice|||1}"
		  "news{c1=alice|{\"n\":2}||0,c6=carol|[1]|{\"room\":7}|1}", "presence lists every entry");
	free(s);
	pres_stats(&t, "chat", NOW, &nc, &nu);
	ok(nc == 5 && nu == 3, "chat: 5 clients, 3 users (alice, bob, and the anonymous user once): %u %u", nc, nu);
	ok(pres_stats(&t, "news", NOW, &nc, &nu) == 0 && nc == 2 && nu == 2, "news: 2 clients, 2 users");
	ok(pres_stats(&t, "nobody", NOW, &nc, &nu) == 0 && nc == 0 && nu == 0, "a channel without entries: 0 0");
	is_int(count(&t, "nobody", NOW), 0, "... and an empty presence");
	ok(pres_get(&t, "", NOW, dump_cb, NULL) < 0 && errno == EINVAL, "presence of \"\": EINVAL");

	/* Update in place: new info, new owner; an identical add changes nothing. */
	ok(add(&t, "chat", "c2", "bob", "{\"v\":2}", 1) == 0, "add c2 again with new info and owner");
	pres_info(&t, &in);
	ok(in.updates == 1 && in.clients == 7 && in.channels == 2, "an update, still 7 entries in 2 channels");
	ok(add(&t, "chat", "c2", "bob", "{\"v\":2}", 1) == 0, "add c2 identically");
	pres_info(&t, &in);
	ok(in.updates == 1, "... is no update");
	s = dump_at(&t, chans, 1, NOW);
	is_str(s, "chat{c1=alice|{\"a\":1}||0,c2=bob|{\"v\":2}||1,c3=|||1,c4=|||1,c5=alice|||1}", "c2 updated");
	free(s);

	ok(verified(&t, NULL), "verifies");

	ok(pres_remove(&t, "chat", "c2") == 0, "remove c2");
	ok(pres_remove(&t, "chat", "c2") < 0 && errno == ENOENT, "remove it again: ENOENT");
	ok(pres_remove(&t, "nowhere", "c2") < 0 && errno == ENOENT, "remove from an unknown channel: ENOENT");
	ok(pres_stats(&t, "chat", NOW, &nc, &nu) == 0 && nc == 4 && nu == 2, "chat: 4 clients, 2 users");
	ok(pres_remove(&t, "news", "c1") == 0 && pres_remove(&t, "news", "c6") == 0, "empty news");
	pres_info(&t, &in);
	ok(in.channels == 1 && in.clients == 4, "a channel goes with its last entry");
	ok(verified(&t, NULL), "verifies");
	for (int i = 0; i < 5; i++) {
		char c[16];
		snprintf(c, sizeof(c), "c%d", i + 1);
		pres_remove(&t, "chat", c);
	}
	pres_info(&t, &in);
	ok(in.channels == 0 && in.clients == 0 && in.nodes_free == 1024 && in.blocks_free == 16384,
	   "all removed: every node and block free again");
	ok(verified(&t, NULL), "verifies");
	pres_detach(&t);
}

static void test_limits(void)
{
	struct pres t;
	struct pres_info in;
	static char big[PRES_INFO_MAX + 2], name[PRES_CHANNEL_MAX + 2], user[PRES_USER_MAX + 2],
		client[PRES_CLIENT_MAX + 2];

	pres_create(&t, path, 1024, 1 << 20);
	pres_touch_owner(&t, 0, NOW, LONG_LEASE);
	memset(big, 'x', sizeof(big) - 1);
	memset(name, 'n', sizeof(name) - 1);
	memset(user, 'u', sizeof(user) - 1);
	memset(client, 'c', sizeof(client) - 1);

	struct pres_item it = { .client = "c", .user = "u", .conn_info = big, .conn_info_len = PRES_INFO_MAX + 1 };
	ok(pres_add(&t, "ch", &it) < 0 && errno == EMSGSIZE, "conn_info of 16 KiB + 1: EMSGSIZE");
	it.conn_info_len = PRES_INFO_MAX;
	ok(pres_add(&t, "ch", &it) == 0, "conn_info of 16 KiB: accepted");
	it.conn_info_len = 0;
	it.chan_info = big;
	it.chan_info_len = PRES_INFO_MAX + 1;
	ok(pres_add(&t, "ch", &it) < 0 && errno == EMSGSIZE, "chan_info of 16 KiB + 1: EMSGSIZE");
	it.chan_info_len = 0;
	it.client = client;
	ok(pres_add(&t, "ch", &it) < 0 && errno == EMSGSIZE, "a client id of 256 bytes: EMSGSIZE");
	client[PRES_CLIENT_MAX] = '\0';
	ok(pres_add(&t, "ch", &it) == 0, "... of 255 accepted");
	it.client = "c2";
	it.user = user;
	ok(pres_add(&t, "ch", &it) < 0 && errno == EMSGSIZE, "a user id of 1025 bytes: EMSGSIZE");
	it.user = "u";
	ok(pres_add(&t, name, &it) < 0 && errno == EMSGSIZE, "a channel of 4097 bytes: EMSGSIZE");
	name[PRES_CHANNEL_MAX] = '\0';
	ok(pres_add(&t, name, &it) == 0, "... of 4096 accepted");
	pres_info(&t, &in);
	ok(in.too_big == 5, "5 refusals counted as too big");

	it.client = "";
	ok(pres_add(&t, "ch", &it) < 0 && errno == EINVAL, "an empty client id: EINVAL");
	it.client = "c3";
	ok(pres_add(&t, "", &it) < 0 && errno == EINVAL, "an empty channel: EINVAL");
	it.owner = PRES_SLOTS;
	ok(pres_add(&t, "ch", &it) < 0 && errno == EINVAL, "owner 512: EINVAL");
	it.owner = 0;
	it.conn_info = NULL;
	it.conn_info_len = 3;
	ok(pres_add(&t, "ch", &it) < 0 && errno == EINVAL, "a NULL conn_info with a length: EINVAL");
	ok(pres_touch_owner(&t, PRES_SLOTS, NOW, NOW) < 0 && errno == EINVAL, "touch slot 512: EINVAL");
	ok(pres_release_slot(&t, PRES_SLOTS) < 0 && errno == EINVAL, "release slot 512: EINVAL");

	struct dump d = { .n = 0 };
	ok(pres_get(&t, "ch", NOW, dump_cb, &d) == 2, "ch holds the 16 KiB entry and the long client id");
	bool intact = false;
	for (int i = 0; i < d.n; i++) {
		if (strncmp(d.item[i], "c=u|", 4) == 0 && strlen(d.item[i]) == 4 + PRES_INFO_MAX + 3)
			intact = true;
		free(d.item[i]);
	}
	ok(intact, "the 16 KiB conn_info comes back whole");
	ok(verified(&t, NULL), "verifies");
	pres_detach(&t);

	/* A small arena: an entry may take at most an eighth of it. */
	pres_create(&t, path, 64, 64 << 10);
	pres_touch_owner(&t, 0, NOW, LONG_LEASE);
	it = (struct pres_item){ .client = "c", .user = "u", .conn_info = big, .conn_info_len = 8000 };
	ok(pres_add(&t, "ch", &it) < 0 && errno == EMSGSIZE, "64 KiB arena: 8000 bytes is over an eighth");
	it.conn_info_len = 7000;
	ok(pres_add(&t, "ch", &it) == 0, "... 7000 is not");
	pres_detach(&t);
}

/* ---- leases, expiry, release, sweep ----------------------------------------- */

static void test_leases(void)
{
	struct pres t;
	struct pres_counts vc;
	struct pres_info in;
	uint32_t nc, nu;

	pres_create(&t, path, 4096, 1 << 20);
	ok(add(&t, "ch", "a", "u", NULL, 2) == 0, "add for slot 2, whose lease was never touched");
	is_int(count(&t, "ch", NOW), 0, "... it does not show");
	ok(pres_touch_owner(&t, 2, NOW, NOW + 1000) == 1, "touch slot 2 for a second");
	is_int(count(&t, "ch", NOW), 1, "... now it shows");
	is_int(count(&t, "ch", NOW + 999), 1, "... at 999 ms still");
	is_int(count(&t, "ch", NOW + 1000), 0, "... at 1000 ms no more");
	ok(pres_stats(&t, "ch", NOW + 1000, &nc, &nu) == 0 && nc == 0 && nu == 0, "... nor in the stats");
	ok(pres_touch_owner(&t, 2, NOW + 1500, NOW + 5000) == 1, "a touch after it ran out says so (re-add)");
	is_int(count(&t, "ch", NOW + 1500), 1, "... and the entry is back, not yet swept");

	/* An entry's own expiry. */
	pres_touch_owner(&t, 3, NOW, LONG_LEASE);
	struct pres_item it = { .client = "e", .user = "u", .owner = 3, .expires_ms = NOW + 100 };
	ok(pres_add(&t, "exp", &it) == 0, "an entry expiring in 100 ms");
	is_int(count(&t, "exp", NOW + 99), 1, "shows at 99 ms");
	is_int(count(&t, "exp", NOW + 100), 0, "not at 100 ms");

	/* Release: a dead worker's entries vanish at once, and stay gone for
	 * the next process in its slot. */
	pres_touch_owner(&t, 4, NOW, LONG_LEASE);
	pres_touch_owner(&t, 5, NOW, LONG_LEASE);
	for (int i = 0; i < 50; i++) {
		char c[16], ch[16];
		snprintf(c, sizeof(c), "r%d", i);
		snprintf(ch, sizeof(ch), "rel%d", i % 5);
		add(&t, ch, c, i % 2 ? "x" : "y", "{}", 4);
		snprintf(c, sizeof(c), "k%d", i);
		add(&t, ch, c, "z", NULL, 5);
	}
	is_int(count(&t, "rel0", NOW), 20, "rel0: 10 entries of slot 4, 10 of slot 5");
	pres_info(&t, &in);
	uint32_t before = in.clients;
	is_int(pres_release_slot(&t, 4), 50, "release slot 4: its 50 entries reclaimed");
	is_int(count(&t, "rel0", NOW), 10, "rel0 shows slot 5's 10");
	pres_info(&t, &in);
	ok(in.clients == before - 50 && in.purged == 50, "50 fewer entries, counted as purged");
	ok(verified(&t, &vc) && vc.stale == 0, "verifies, no stale entry");
	ok(pres_touch_owner(&t, 4, NOW, LONG_LEASE) == 1, "a new worker in slot 4 finds the lease ended");
	is_int(count(&t, "rel0", NOW), 10, "... and none of the old entries back");
	ok(add(&t, "rel0", "new", "n", NULL, 4) == 0 && count(&t, "rel0", NOW) == 11, "its own entries show");

	/* Sweep: slot 5's lease runs out (and slot 2's, and the entry's own
	 * expiry passes); small budgets go round the table. */
	pres_touch_owner(&t, 5, NOW, NOW + 10);
	int total = 0, calls = 0, n;
	while (calls < 10000 && total < 52) {
		n = pres_sweep(&t, NOW + 6000, 16);
		if (n < 0)
			break;
		total += n;
		calls++;
	}
	ok(total == 50 + 1 + 1, "sweeps of 16 reclaimed slot 5's 50, slot 2's and the expired one (%d in %d calls)",
	   total, calls);
	ok(calls > 1, "... over several calls");
	is_int(count(&t, "rel0", NOW + 6000), 1, "rel0 keeps slot 4's new entry");
	is_int(pres_sweep(&t, NOW + 6000, 1 << 20), 0, "a full sweep finds nothing more");
	pres_info(&t, &in);
	ok(in.clients == 1 && in.channels == 1 && in.swept == 52, "1 entry in 1 channel left, 52 swept");
	ok(verified(&t, NULL), "verifies");
	pres_detach(&t);
}

static void test_full(void)
{
	struct pres t;
	struct pres_info in;
	char c[16], conn[7001];

	/* Nodes run out: 16 nodes = 1 channel + 15 entries. */
	pres_create(&t, path, 16, 64 << 10);
	pres_touch_owner(&t, 0, NOW, LONG_LEASE);
	int added = 0;
	for (int i = 0; i < 16; i++) {
		snprintf(c, sizeof(c), "c%d", i);
		if (add(&t, "ch", c, "u", "{\"k\":1}", 0) == 0)
			added++;
	}
	ok(added == 15 && errno == ENOSPC, "16 nodes: a channel and 15 entries, then ENOSPC");
	ok(add(&t, "other", "z", "u", NULL, 0) < 0 && errno == ENOSPC, "a new channel: ENOSPC");
	ok(verified(&t, NULL), "the full table verifies");
	is_int(count(&t, "ch", NOW), 15, "all 15 entries there");
	ok(add(&t, "ch", "c3", "u2", NULL, 0) < 0 && errno == ENOSPC, "an update needs a node too: ENOSPC");
	ok(pres_remove(&t, "ch", "c0") == 0 && add(&t, "ch", "c3", "u2", NULL, 0) == 0, "room made, it goes");
	pres_info(&t, &in);
	ok(in.full == 3, "3 refusals counted as full");
	ok(verified(&t, NULL), "verifies");
	pres_detach(&t);

	/* Blocks run out: 7000-byte entries take 117 blocks of 1024. */
	pres_create(&t, path, 64, 64 << 10);
	pres_touch_owner(&t, 0, NOW, LONG_LEASE);
	added = 0;
	int err = 0;
	for (int i = 0; i < 20 && err == 0; i++) {
		snprintf(c, sizeof(c), "c%d", i);
		memset(conn, 'a' + i, 7000);
		conn[7000] = '\0';
		if (add(&t, "ch", c, "u", conn, 0) == 0)
			added++;
		else
			err = errno;
	}
	ok(added == 8 && err == ENOSPC, "8 entries of 7000 bytes fit in 64 KiB, the 9th: ENOSPC (%d)", added);
	ok(verified(&t, NULL), "the full table verifies");
	struct dump d = { .n = 0 };
	pres_get(&t, "ch", NOW, dump_cb, &d);
	int intact = 0;
	for (int i = 0; i < d.n; i++) {
		char *bar = strchr(d.item[i], '|');
		int k = atoi(d.item[i] + 1);
		size_t j = 1;
		while (j <= 7000 && bar[j] == 'a' + k)
			j++;
		intact += j == 7001 && bar[7001] == '|';
		free(d.item[i]);
	}
	is_int(intact, 8, "every entry's 7000 bytes intact");
	pres_detach(&t);
}

/* ---- read-only attachment ---------------------------------------------------- */

static void test_readonly(void)
{
	struct pres t, ro;
	uint32_t nc, nu;

	pres_create(&t, path, 4096, 4 << 20);
	pres_touch_owner(&t, 0, NOW, LONG_LEASE);
	add(&t, "ch", "c1", "u1", "c1/u1/", 0);
	add(&t, "ch", "c2", "", "c2//", 0);
	ok(pres_attach(&ro, path, true) == 0, "attach read-only");
	is_int(count(&ro, "ch", NOW), 2, "presence through the read-only mapping");
	ok(pres_stats(&ro, "ch", NOW, &nc, &nu) == 0 && nc == 2 && nu == 2, "stats too");
	ok(add(&ro, "ch", "c3", "u", NULL, 0) < 0 && errno == EROFS, "add: EROFS");
	ok(pres_remove(&ro, "ch", "c1") < 0 && errno == EROFS, "remove: EROFS");
	ok(pres_touch_owner(&ro, 0, NOW, NOW) < 0 && errno == EROFS, "touch: EROFS");
	ok(pres_release_slot(&ro, 0) < 0 && errno == EROFS, "release: EROFS");
	ok(pres_sweep(&ro, NOW, 10) < 0 && errno == EROFS, "sweep: EROFS");
	ok(pres_verify(&ro, NULL) < 0 && errno == EROFS, "verify: EROFS");

	/* Under a writer: every copy that validates holds together. */
	pid_t pid = fork();
	if (pid == 0) {
		uint64_t rs = (uint64_t)getpid() * 7919 + 1;
		char c[16], conn[1200];
		for (;;) {
			int k = (int)(xs(&rs) % 200);
			snprintf(c, sizeof(c), "w%d", k);
			int n = snprintf(conn, sizeof(conn), "%s/u%d/", c, k % 7);
			memset(conn + n, 'p', xs(&rs) % 1000);
			conn[n + (int)(xs(&rs) % 1000)] = '\0';
			char u[8];
			snprintf(u, sizeof(u), "u%d", k % 7);
			if (xs(&rs) % 3 == 0)
				pres_remove(&t, "ch", c);
			else
				add(&t, "ch", c, u, conn, 0);
		}
	}
	/* At least 300 ms of reads; on a loaded or sanitized build a writer that
	 * never pauses can starve the seqlock reader for a while, so go on (up to
	 * 20 s) until some copies have validated: what is checked is that none
	 * that validated is torn, and that validating happens at all. */
	uint64_t start = now_ns();
	int reads = 0, again = 0, bad = 0, errs = 0;
	while (now_ns() < start + 300000000 || (reads < 5 && now_ns() < start + 20000000000ull)) {
		struct dump d = { .n = 0, .check = true };
		int n = pres_get(&ro, "ch", NOW, dump_cb, &d);
		if (n < 0 && errno == EAGAIN)
			again++;
		else if (n < 0)
			errs++;
		else
			reads++;
		bad += d.bad;
		for (int j = 0; j < d.n; j++)
			free(d.item[j]);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ok(reads > 0 && bad == 0 && errs == 0,
	   "read-only copies under a writer: %d validated, %d gave up (EAGAIN), none torn", reads, again);
	ok(verified(&t, NULL), "verifies after the writer was killed");
	pres_detach(&ro);
	pres_detach(&t);
}

/* ---- a writer killed at each step ----------------------------------------- */

static const char *const CHANS[] = { "a", "b", "c", "d", "e" };
#define NCHANS 5

static char conn200[201], conn150[151];

/* a{c1,c2,c3} b{c1} c{c9} e{x1,x2} and x3 in a (slot 2). */
static void setup(struct pres *t)
{
	pres_touch_owner(t, 0, NOW, LONG_LEASE);
	pres_touch_owner(t, 1, NOW, LONG_LEASE);
	pres_touch_owner(t, 2, NOW, LONG_LEASE);
	add(t, "a", "c1", "u1", "{\"c\":1}", 0);
	add(t, "a", "c2", "u2", conn200, 0);
	add(t, "a", "c3", "", NULL, 1);
	add(t, "b", "c1", "u1", "{}", 0);
	add(t, "c", "c9", "u9", conn150, 1);
	add(t, "e", "x1", "ux", conn200, 2);
	add(t, "e", "x2", "ux", NULL, 2);
	add(t, "a", "x3", "ux", NULL, 2);
}

static int op_add_new_chan(struct pres *t)
{
	struct pres_item it = { .client = "c4", .user = "u4", .conn_info = conn150, .conn_info_len = 150,
				.chan_info = "{\"i\":1}", .chan_info_len = 7 };
	return pres_add(t, "d", &it);
}

static int op_add(struct pres *t)
{
	return add(t, "a", "c5", "u5", conn200, 1);
}

static int op_update(struct pres *t)
{
	return add(t, "a", "c2", "u2b", conn150, 1);
}

static int op_remove(struct pres *t)
{
	return pres_remove(t, "a", "c2");
}

static int op_remove_last(struct pres *t)
{
	return pres_remove(t, "c", "c9");
}

static int op_release(struct pres *t)
{
	return pres_release_slot(t, 2) == 3 ? 0 : -1;
}

static int op_sweep(struct pres *t)
{
	pres_touch_owner(t, 2, NOW, NOW - 1); /* slot 2's lease runs out */
	return pres_sweep(t, NOW, 1 << 20) == 3 ? 0 : -1;
}

struct scenario {
	const char *name;
	int (*op)(struct pres *t);
	int nodes_after;  /* nodes in use once done (setup: 12) */
};

static const struct scenario SCEN[] = {
	{ "an insert into a new channel", op_add_new_chan, 14 },
	{ "an insert into a channel", op_add, 13 },
	{ "an update", op_update, 12 },
	{ "a removal", op_remove, 11 },
	{ "a removal of a channel's last entry", op_remove_last, 10 },
	{ "a release of a slot", op_release, 8 },
	{ "a sweep", op_sweep, 8 },
};

/* Runs OP in a child killed at its step K (0: not killed). Returns 1 if the
 * child was killed, 0 if it finished (and OP succeeded), -1 on failure. */
static int run_killed(struct pres *t, int (*op)(struct pres *), unsigned long k)
{
	pid_t pid = fork();
	if (pid == 0) {
		pres_crash_countdown = k;
		_exit(op(t) == 0 ? 0 : 1);
	}
	int st;
	waitpid(pid, &st, 0);
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)
		return 1;
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

static void test_kill_each_step(void)
{
	struct pres t;
	struct pres_counts vc;

	memset(conn200, 'q', 200);
	memset(conn150, 'r', 150);
	for (size_t s = 0; s < sizeof(SCEN) / sizeof(SCEN[0]); s++) {
		const struct scenario *sc = &SCEN[s];
		char *before, *after;
		int killed = 0, as_before = 0, as_after = 0, bad = 0, repairs = 0;

		/* The states before and after, from a run nobody kills. */
		pres_create(&t, path, 64, 64 << 10);
		setup(&t);
		before = dump_at(&t, CHANS, NCHANS, NOW);
		ok(run_killed(&t, sc->op, 0) == 0, "%s: runs", sc->name);
		after = dump_at(&t, CHANS, NCHANS, NOW);
		pres_detach(&t);

		for (unsigned long k = 1; k < 1000; k++) {
			pres_create(&t, path, 64, 64 << 10);
			setup(&t);
			int rc = run_killed(&t, sc->op, k);
			struct pres_info in;
			if (rc < 0) {
				bad++;
				pres_detach(&t);
				break;
			}
			bool v = pres_verify(&t, &vc) == 0;
			char *now = dump_at(&t, CHANS, NCHANS, NOW);
			pres_info(&t, &in);
			repairs += (int)in.repairs;
			if (!v) {
				printf("#   %s, killed at step %lu: %s\n", sc->name, k, vc.problem);
				bad++;
			} else if (strcmp(now, after) == 0) {
				as_after++;
			} else if (strcmp(now, before) == 0) {
				as_before++;
			} else {
				printf("#   %s, killed at step %lu: %s\n", sc->name, k, now);
				bad++;
			}
			if (rc == 0) { /* not killed: K was past its last step */
				free(now);
				if (vc.channels + vc.clients != (uint32_t)sc->nodes_after)
					bad++;
				pres_detach(&t);
				break;
			}
			/* Finish what the dead one was doing, as its successors would. */
			if (sc->op == op_release)
				pres_release_slot(&t, 2);
			if (sc->op == op_sweep)
				pres_sweep(&t, NOW, 1 << 20);
			if (pres_verify(&t, &vc) != 0 || vc.stale != 0 ||
			    (sc->op == op_release && strcmp(now, after) != 0))
				bad++;
			free(now);
			killed++;
			pres_detach(&t);
		}
		ok(killed >= 5 && bad == 0 && repairs == killed,
		   "%s killed at each of its %d steps: each time repaired, verified, and as before (%d) or after (%d)",
		   sc->name, killed, as_before, as_after);
		ok(as_before > 0 && as_after > 0 ? 1 : sc->op == op_release || sc->op == op_sweep,
		   "%s: both sides of the commit point were hit", sc->name);
		free(before);
		free(after);
	}

	/* The repairer killed in turn, at each step of its repair. */
	int rounds = 0, bad = 0;
	for (unsigned long k1 = 1; k1 < 100; k1++) {
		for (unsigned long k2 = 1; k2 < 1000; k2++) {
			pres_create(&t, path, 64, 64 << 10);
			setup(&t);
			if (run_killed(&t, op_add, k1) != 1) {
				pres_detach(&t);
				break;
			}
			int rc = run_killed(&t, op_remove, k2); /* repairs first */
			if (pres_verify(&t, &vc) != 0) {
				printf("#   repair killed at %lu after an insert killed at %lu: %s\n", k2, k1, vc.problem);
				bad++;
			}
			pres_detach(&t);
			rounds++;
			if (rc != 1)
				break;
		}
	}
	ok(rounds > 20 && bad == 0, "a repairer killed at each step of its repair: %d rounds, all verify", rounds);
}

/* ---- writers killed at random ------------------------------------------------ */

static void random_writer(struct pres *t, unsigned slot)
{
	uint64_t rs = now_ns() ^ (uint64_t)getpid() << 20;
	char c[16], ch[16], conn[3000];

	pres_touch_owner(t, slot, NOW, LONG_LEASE);
	for (;;) {
		unsigned k = (unsigned)(xs(&rs) % 64), chn = (unsigned)(xs(&rs) % 8);
		snprintf(c, sizeof(c), "s%uc%u", slot, k);
		snprintf(ch, sizeof(ch), "ch%u", chn);
		unsigned what = (unsigned)(xs(&rs) % 16);
		if (what < 9) {
			int n = snprintf(conn, sizeof(conn), "%s/u%u/", c, k % 5);
			size_t len = (size_t)n + xs(&rs) % (xs(&rs) % 8 == 0 ? 2900 : 200);
			memset(conn + n, 'p', len - (size_t)n);
			conn[len] = '\0';
			char u[8];
			snprintf(u, sizeof(u), "u%u", k % 5);
			add(t, ch, c, u, conn, slot);
		} else if (what < 15) {
			pres_remove(t, ch, c);
		} else {
			pres_sweep(t, NOW, 64);
		}
	}
}

static void test_random_kills(void)
{
	struct pres t;
	struct pres_counts vc;
	struct pres_info in;
	uint64_t rs = now_ns();
	int kills = 0, in_lock = 0, bad = 0, bad_items = 0;

	pres_create(&t, path, 1024, 256 << 10);
	for (int i = 0; i < 300; i++) {
		unsigned slot = 7;
		pid_t pid = fork();
		if (pid == 0)
			random_writer(&t, slot);
		struct timespec ts = { 0, (long)(xs(&rs) % 2000000) };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		kills++;
		if (__atomic_load_n(&t.h->owner, __ATOMIC_RELAXED) == pid)
			in_lock++;
		if (pres_verify(&t, &vc) != 0) {
			if (bad++ == 0)
				printf("#   after kill %d: %s\n", kills, vc.problem);
		}
		for (int c = 0; c < 8; c++) {
			char ch[16];
			snprintf(ch, sizeof(ch), "ch%d", c);
			struct dump d = { .n = 0, .check = true };
			pres_get(&t, ch, NOW, dump_cb, &d);
			bad_items += d.bad;
			for (int j = 0; j < d.n; j++)
				free(d.item[j]);
		}
	}
	pres_info(&t, &in);
	ok(bad == 0 && bad_items == 0, "%d writers killed at random, %d holding the lock: the table verifies every time",
	   kills, in_lock);
	ok(in_lock > 10 && in.repairs >= (uint64_t)in_lock, "kills landed inside changes: %d, %llu repairs",
	   in_lock, (unsigned long long)in.repairs);
	ok(in.dropped == 0, "no repair ever had to drop a node");
	printf("# %llu adds, %llu updates, %llu removes, %llu full, %u entries left\n",
	       (unsigned long long)in.adds, (unsigned long long)in.updates, (unsigned long long)in.removes,
	       (unsigned long long)in.full, in.clients);
	is_int(pres_release_slot(&t, 7), (long long)in.clients, "releasing the slot reclaims every entry left");
	ok(verified(&t, &vc) && vc.clients == 0 && vc.channels == 0 && vc.nodes_free == 1024,
	   "... leaving an empty table");
	pres_detach(&t);
}

/* ---- cost ------------------------------------------------------------------ */

static int count_cb(void *arg, const struct pres_item *it)
{
	(*(int *)arg)++;
	return 0;
}

static void test_scale(void)
{
	struct pres t;
	char c[40], ch[32];
	const char *info = "{\"name\":\"Some User\",\"avatar\":\"https://example.com/a/123.png\"}";
	uint64_t t0;
	int n = 0;

	ok(pres_create(&t, path, 131072, 64 << 20) == 0, "a table of 128 Ki nodes and 64 MiB");
	pres_touch_owner(&t, 0, NOW, LONG_LEASE);
	/* 90 000 entries in one channel, 10 000 in 1000 channels of 10. */
	t0 = now_ns();
	for (int i = 0; i < 100000; i++) {
		snprintf(c, sizeof(c), "%08x-0000-4000-8000-%012d", i * 2654435761u, i);
		if (i < 90000)
			snprintf(ch, sizeof(ch), "big");
		else
			snprintf(ch, sizeof(ch), "room:%d", i % 1000);
		n += add(&t, ch, c, i % 3 ? "user" : "", info, 0) == 0;
	}
	double add_s = (double)(now_ns() - t0) / 1e9;
	ok(n == 100000, "100 000 entries added");
	printf("# bench: add %.0f/s (UUID client ids, %zu-byte conn_info)\n", 100000 / add_s, strlen(info));

	t0 = now_ns();
	int got = 0;
	for (int i = 0; i < 10000; i++) {
		snprintf(ch, sizeof(ch), "room:%d", i % 1000);
		int k = 0;
		pres_get(&t, ch, NOW, count_cb, &k);
		got += k;
	}
	double get_s = (double)(now_ns() - t0) / 1e9;
	ok(got == 100000, "10 000 presence calls on channels of 10 in a table of 100 000 entries");
	ok(get_s / 10000 < 200e-6, "... %.1f us each: the channel's cost, not the table's", get_s / 10000 * 1e6);
	printf("# bench: get %.0f/s on a 10-client channel\n", 10000 / get_s);

	uint32_t nc, nu;
	t0 = now_ns();
	pres_stats(&t, "big", NOW, &nc, &nu);
	double big_s = (double)(now_ns() - t0) / 1e9;
	ok(nc == 90000 && nu == 2, "stats of the 90 000-entry channel: %u clients, %u users", nc, nu);
	t0 = now_ns();
	int k = 0;
	pres_get(&t, "big", NOW, count_cb, &k);
	printf("# bench: stats of 90 000 entries %.1f ms, presence of them %.1f ms\n", big_s * 1e3,
	       (double)(now_ns() - t0) / 1e6);

	t0 = now_ns();
	for (int i = 0; i < 100000; i++)
		pres_touch_owner(&t, 0, NOW, LONG_LEASE);
	printf("# bench: touch %.0f/s (one refresh for all of a worker's entries)\n",
	       100000 / ((double)(now_ns() - t0) / 1e9));

	t0 = now_ns();
	for (int i = 90000; i < 100000; i++) {
		snprintf(c, sizeof(c), "%08x-0000-4000-8000-%012d", i * 2654435761u, i);
		snprintf(ch, sizeof(ch), "room:%d", i % 1000);
		add(&t, ch, c, "user2", info, 0);
	}
	printf("# bench: update %.0f/s\n", 10000 / ((double)(now_ns() - t0) / 1e9));

	t0 = now_ns();
	ok(verified(&t, NULL), "100 000 entries verify");
	printf("# bench: verify of 100 000 entries %.1f ms\n", (double)(now_ns() - t0) / 1e6);

	/* A repair of the whole table, as after a holder's death. */
	pid_t pid = fork();
	if (pid == 0) {
		pres_crash_countdown = 3;
		add(&t, "room:1", "crash", "u", info, 0);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	t0 = now_ns();
	ok(add(&t, "room:1", "after", "u", info, 0) == 0, "an add after a holder died");
	printf("# bench: repair of 100 000 entries %.1f ms\n", (double)(now_ns() - t0) / 1e6);
	pres_remove(&t, "room:1", "after");

	t0 = now_ns();
	n = 0;
	for (int i = 90000; i < 100000; i++) {
		snprintf(c, sizeof(c), "%08x-0000-4000-8000-%012d", i * 2654435761u, i);
		snprintf(ch, sizeof(ch), "room:%d", i % 1000);
		n += pres_remove(&t, ch, c) == 0;
	}
	double rm_s = (double)(now_ns() - t0) / 1e9;
	ok(n == 10000, "10 000 entries removed");
	printf("# bench: remove %.0f/s\n", 10000 / rm_s);
	t0 = now_ns();
	n = 0;
	for (int i = 0; i < 90000; i += 2) {
		snprintf(c, sizeof(c), "%08x-0000-4000-8000-%012d", i * 2654435761u, i);
		n += pres_remove(&t, "big", c) == 0;
	}
	printf("# bench: remove from the 90 000-entry channel %.0f/s\n", n / ((double)(now_ns() - t0) / 1e9));

	t0 = now_ns();
	int purged = pres_release_slot(&t, 0);
	ok(purged == 45000, "release reclaims the 45 000 left");
	printf("# bench: release of a slot with 45 000 entries %.1f ms\n", (double)(now_ns() - t0) / 1e6);
	ok(verified(&t, NULL), "verifies");
	pres_detach(&t);
}

int main(void)
{
	if (mkdtemp(dir) == NULL)
		return 99;
	snprintf(path, sizeof(path), "%s/presence.seg", dir);
	alarm(120);
	test_create();
	test_basics();
	test_limits();
	test_leases();
	test_full();
	test_readonly();
	test_kill_each_step();
	test_random_kills();
	test_scale();
	unlink(path);
	rmdir(dir);
	return tap_done();
}
