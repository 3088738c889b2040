/*
 * torture_pres.c - the presence table under fire, bounded in time: writer
 * processes, each a "worker" with its own owner slot, add, update and
 * remove entries of random clients in random channels in tight loops and
 * are SIGKILLed every few milliseconds, often holding the lock, then
 * respawned after the test releases the dead one's slot as the master
 * would. Two readers list presence all along, one through the lock, one
 * through a read-only mapping without it.
 *
 * The master alternates phases where writers mostly add (so the table
 * fills and refuses) and mostly remove.
 *
 * Every conn_info starts with "<client>/<user>/<version>/", so a reader
 * fails on an entry whose bytes are torn or mixed with another's, and on
 * an entry whose owner is not the writer its client id names. After each
 * kill the table must verify (pres_verify), and once the slot is released
 * no entry of the dead writer may be left, live or not. At the end the
 * writers stop by themselves and the table must hold exactly what they
 * believe they added, byte for byte, with the right presence_stats.
 *
 * Usage: torture_pres [seconds] (default $TORTURE_PRES_SECONDS, else 5; at
 * most 15). A sanitizer build sets TORTURE_PRES_SECONDS: each kill costs
 * a verify of the whole table, several times slower under ASan, and a
 * 5-second run then has too few kills for some to land in the lock.
 */
#include "pres.h"
#include "../../tests/tap.h"
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NW 4              /* writers */
#define NCH 32            /* channels */
#define NCL 96            /* clients per writer */
#define SLOT0 10          /* writer i owns slot SLOT0 + i */
#define NODES 8192
#define ARENA (2 << 20)   /* small enough to fill now and then */
#define NOW ((int64_t)5000000)
#define LEASE (NOW + 3600000)

/* What one writer believes it holds: the version and conn_info length of
 * each (channel, client) it added last, 0 when absent. */
struct want {
	uint32_t ver;
	uint16_t conn_len;
	uint16_t chan_len;
};

struct shared {
	struct want want[NW][NCH][NCL];
	uint64_t ops[NW];                 /* successful changes, kept across respawns */
	uint64_t enospc[NW];
	volatile int stop_writers, stop_readers;
	volatile int fill;                /* 1: writers mostly add (the table fills), 0: mostly remove */
	struct rstat {
		uint64_t reads, items, again, errors, violations;
		char first[200];
	} r[2];
};

static struct shared *sh;
static struct pres tab;
static char path[256];

static void client_of(char *buf, size_t n, unsigned w, unsigned k)
{
	snprintf(buf, n, "w%uc%u", w, k);
}

/* Client k's user: anonymous for one in five. */
static void user_of(char *buf, size_t n, unsigned k)
{
	if (k % 5 == 0)
		buf[0] = '\0';
	else
		snprintf(buf, n, "user%u", k % 13);
}

/* ---- writers ------------------------------------------------------------ */

static void writer(unsigned w)
{
	uint64_t rs = now_ns() ^ ((uint64_t)getpid() << 32) ^ w;
	char client[32], user[32], ch[32], conn[4200], chinfo[64];
	uint32_t ver = (uint32_t)(xs(&rs) & 0xffff) << 12;

	if (pres_touch_owner(&tab, SLOT0 + w, NOW, LEASE) < 0)
		_exit(10);
	while (!sh->stop_writers) {
		unsigned c = (unsigned)(xs(&rs) % NCH), k = (unsigned)(xs(&rs) % NCL);
		unsigned what = (unsigned)(xs(&rs) % 32), adds = sh->fill ? 26 : 10;
		struct want *wt = &sh->want[w][c][k];
		snprintf(ch, sizeof(ch), "room:%u", c);
		client_of(client, sizeof(client), w, k);
		user_of(user, sizeof(user), k);
		if (what < adds) {
			int n = snprintf(conn, sizeof(conn), "%s/%s/%u/", client, user, ++ver);
			size_t len = (size_t)n + xs(&rs) % (xs(&rs) % 16 == 0 ? 4000 : 300);
			memset(conn + n, 'a' + (int)(ver % 26), len - (size_t)n);
			int cl = xs(&rs) % 2 ? snprintf(chinfo, sizeof(chinfo), "{\"v\":%u}", ver) : 0;
			struct pres_item it = { .client = client, .user = user, .conn_info = conn, .conn_info_len = len,
						.chan_info = cl ? chinfo : NULL, .chan_info_len = (size_t)cl,
						.owner = SLOT0 + w };
			if (pres_add(&tab, ch, &it) == 0) {
				*wt = (struct want){ .ver = ver, .conn_len = (uint16_t)len, .chan_len = (uint16_t)cl };
				sh->ops[w]++;
			} else if (errno == ENOSPC) {
				sh->enospc[w]++;
			} else {
				_exit(11);
			}
		} else if (what < 31) {
			int rc = pres_remove(&tab, ch, client);
			if (rc < 0 && errno != ENOENT)
				_exit(12);
			if ((rc == 0) != (wt->ver != 0))
				_exit(13); /* removed what it never added, or missed what it did */
			wt->ver = 0;
			sh->ops[w] += rc == 0;
		} else {
			if (pres_sweep(&tab, NOW, 256) < 0 || pres_touch_owner(&tab, SLOT0 + w, NOW, LEASE) != 0)
				_exit(14);
		}
	}
	_exit(0);
}

/* ---- readers ------------------------------------------------------------ */

struct rctx {
	struct rstat *st;
	unsigned items;
};

static void violation(struct rstat *st, const char *what, const char *client)
{
	if (st->violations++ == 0)
		snprintf(st->first, sizeof(st->first), "%s (client %s)", what, client);
}

/* An entry holds together: its client names its writer, who is its owner,
 * its user is the client's, its conn_info names both. */
static int check_item(void *arg, const struct pres_item *it)
{
	struct rctx *x = arg;
	unsigned w, k;
	char user[32], pre[96];
	int n;

	x->items++;
	if (sscanf(it->client, "w%uc%u", &w, &k) != 2 || w >= NW || k >= NCL) {
		violation(x->st, "a client id no writer uses", it->client);
		return 0;
	}
	if (it->owner != SLOT0 + w)
		violation(x->st, "an entry owned by another slot than its writer's", it->client);
	user_of(user, sizeof(user), k);
	if (strcmp(it->user, user) != 0)
		violation(x->st, "an entry with another client's user", it->client);
	n = snprintf(pre, sizeof(pre), "%s/%s/", it->client, user);
	if (it->conn_info_len < (size_t)n + 2 || memcmp(it->conn_info, pre, (size_t)n) != 0) {
		violation(x->st, "a torn or foreign conn_info", it->client);
		return 0;
	}
	/* The filler is one letter, set by the version. */
	const char *p = (const char *)it->conn_info + n, *end = (const char *)it->conn_info + it->conn_info_len;
	unsigned ver = (unsigned)strtoul(p, (char **)&p, 10);
	if (p >= end || *p != '/') {
		violation(x->st, "a conn_info without its version", it->client);
		return 0;
	}
	for (p++; p < end; p++)
		if (*p != 'a' + (int)(ver % 26)) {
			violation(x->st, "a conn_info whose filler is torn", it->client);
			break;
		}
	if (it->chan_info_len > 0) {
		char ci[64];
		int cl = snprintf(ci, sizeof(ci), "{\"v\":%u}", ver);
		if (it->chan_info_len != (size_t)cl || memcmp(it->chan_info, ci, (size_t)cl) != 0)
			violation(x->st, "a chan_info from another version", it->client);
	}
	return 0;
}

static void reader(unsigned id, bool readonly)
{
	struct pres ro, *t = &tab;
	struct rstat *st = &sh->r[id];
	uint64_t rs = now_ns() ^ id;
	char ch[32];

	if (readonly) {
		if (pres_attach(&ro, path, true) < 0)
			_exit(20);
		t = &ro;
	}
	while (!sh->stop_readers) {
		struct rctx x = { .st = st };
		snprintf(ch, sizeof(ch), "room:%u", (unsigned)(xs(&rs) % NCH));
		int n;
		if (xs(&rs) % 4 == 0) {
			uint32_t nc, nu;
			n = pres_stats(t, ch, NOW, &nc, &nu);
			if (n == 0 && (nu > nc || (nc > 0 && nu == 0) || nc > NW * NCL))
				violation(st, "stats that cannot be", ch);
		} else {
			n = pres_get(t, ch, NOW, check_item, &x);
			if (n >= 0 && (unsigned)n != x.items)
				violation(st, "a count that is not the entries delivered", ch);
		}
		if (n < 0 && errno == EAGAIN) {
			st->again++;
		} else if (n < 0) {
			if (st->errors++ == 0)
				snprintf(st->first, sizeof(st->first), "%s: %s", ch, strerror(errno));
		} else {
			st->reads++;
			st->items += x.items;
		}
	}
	_exit(0);
}

/* ---- the master --------------------------------------------------------- */

struct scan {
	unsigned owner;
	unsigned found;
};

static int scan_owner(void *arg, const struct pres_item *it)
{
	struct scan *s = arg;
	s->found += it->owner == s->owner;
	return 0;
}

/* What the end state must be, entry by entry. */
struct final {
	unsigned c, items, missing_or_wrong;
};

static int check_final(void *arg, const struct pres_item *it)
{
	struct final *f = arg;
	unsigned w, k, ver = 0;
	char pre[96], user[32];

	f->items++;
	if (sscanf(it->client, "w%uc%u", &w, &k) != 2 || w >= NW || k >= NCL) {
		f->missing_or_wrong++;
		return 0;
	}
	const struct want *wt = &sh->want[w][f->c][k];
	user_of(user, sizeof(user), k);
	int n = snprintf(pre, sizeof(pre), "%s/%s/%u/", it->client, user, wt->ver);
	if (wt->ver == 0 || it->conn_info_len != wt->conn_len || it->chan_info_len != wt->chan_len ||
	    memcmp(it->conn_info, pre, (size_t)n) != 0)
		f->missing_or_wrong++;
	(void)ver;
	return 0;
}

int main(int argc, char **argv)
{
	char dir[] = "/tmp/rotor-torture-pres-XXXXXX";
	const char *env = getenv("TORTURE_PRES_SECONDS");
	double seconds = argc > 1 ? atof(argv[1]) : env ? atof(env) : 5.0;
	pid_t wpid[NW], rpid[2];
	uint64_t rs = now_ns(), kills = 0, in_lock = 0, verify_fail = 0, left_after_release = 0, stale = 0;
	uint64_t purged = 0;
	char first_problem[200] = "";
	int st;

	if (seconds <= 0 || seconds > 15)
		seconds = 5.0;
	alarm((unsigned)seconds + 60); /* a hang fails the test rather than the CI */
	if (mkdtemp(dir) == NULL)
		return 99;
	snprintf(path, sizeof(path), "%s/presence.seg", dir);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 99;
	memset(sh, 0, sizeof(*sh));
	ok(pres_create(&tab, path, NODES, ARENA) == 0, "create %d nodes, a %d KiB arena", NODES, ARENA >> 10);

	for (unsigned i = 0; i < NW; i++)
		wpid[i] = spawn(writer, i);
	for (unsigned i = 0; i < 2; i++) {
		if ((rpid[i] = fork()) == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			reader(i, i == 1);
		}
	}

	uint64_t t0 = now_ns(), end = t0 + (uint64_t)(seconds * 1e9), phase_at = t0;
	while (now_ns() < end) {
		sleep_us(200 + (long)(xs(&rs) % 2300));
		if (now_ns() >= phase_at) {
			sh->fill = !sh->fill;
			phase_at = now_ns() + 500000000;
		}
		unsigned w = (unsigned)(xs(&rs) % NW);
		kill(wpid[w], SIGKILL);
		waitpid(wpid[w], &st, 0);
		if (!WIFSIGNALED(st)) {
			ok(0, "writer %u died by itself (status %d)", w, st);
			break;
		}
		kills++;
		if (__atomic_load_n(&tab.h->owner, __ATOMIC_RELAXED) == wpid[w])
			in_lock++;

		/* The table verifies (repairing after the dead holder first). */
		struct pres_counts vc;
		if (pres_verify(&tab, &vc) != 0 && verify_fail++ == 0)
			snprintf(first_problem, sizeof(first_problem), "after kill %llu: %s",
				 (unsigned long long)kills, vc.problem ? vc.problem : strerror(errno));

		/* As the master does: release the slot; nothing of it is left. */
		int n = pres_release_slot(&tab, SLOT0 + w);
		if (n > 0)
			purged += (uint64_t)n;
		for (unsigned c = 0; c < NCH; c++) {
			char ch[32];
			struct scan s = { .owner = SLOT0 + w };
			snprintf(ch, sizeof(ch), "room:%u", c);
			pres_get(&tab, ch, NOW, scan_owner, &s);
			left_after_release += s.found;
		}
		if (pres_verify(&tab, &vc) != 0 && verify_fail++ == 0)
			snprintf(first_problem, sizeof(first_problem), "after release %llu: %s",
				 (unsigned long long)kills, vc.problem ? vc.problem : strerror(errno));
		stale += vc.stale;

		memset(sh->want[w], 0, sizeof(sh->want[w]));
		wpid[w] = spawn(writer, w);
	}

	/* The writers stop by themselves: what they believe is then exact. */
	sh->stop_writers = 1;
	bool writers_ok = true;
	for (unsigned i = 0; i < NW; i++) {
		waitpid(wpid[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			writers_ok = false;
			printf("# writer %u ended with status %d\n", i, st);
		}
	}
	sh->stop_readers = 1;
	bool readers_ok = true;
	for (unsigned i = 0; i < 2; i++) {
		waitpid(rpid[i], &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			readers_ok = false;
	}
	double secs = (double)(now_ns() - t0) / 1e9;

	struct pres_counts vc;
	struct pres_info in;
	int vrc = pres_verify(&tab, &vc);
	pres_info(&tab, &in);
	uint64_t ops = 0, enospc = 0;
	for (unsigned i = 0; i < NW; i++) {
		ops += sh->ops[i];
		enospc += sh->enospc[i];
	}
	printf("# %.1f s: %llu changes (%.0f/s), %llu ENOSPC; %llu kills, %llu holding the lock\n", secs,
	       (unsigned long long)ops, ops / secs, (unsigned long long)enospc, (unsigned long long)kills,
	       (unsigned long long)in_lock);
	printf("# repairs %llu, dropped %llu, purged by release %llu, swept %llu; table at the end: "
	       "%u channels, %u entries, %u/%u blocks used\n",
	       (unsigned long long)in.repairs, (unsigned long long)in.dropped, (unsigned long long)purged,
	       (unsigned long long)in.swept, vc.channels, vc.clients, vc.blocks_used, in.blocks);
	ok(writers_ok, "every writer ran to its end and stopped by itself");
	ok(readers_ok, "both readers ran to the end");
	/* Floors any build reaches (ASan too): every step of every change is
	 * killed deterministically in test_pres; this is for interleavings. */
	ok(kills >= 20, "writers were killed %llu times", (unsigned long long)kills);
	/* The lock owner seen after a kill is a hint only: a live writer may
	 * have repaired and taken the lock before the master looks. */
	ok(in.repairs >= 3 && in.repairs >= in_lock,
	   "kills landed holding the lock: %llu repairs (%llu seen as the owner right after the kill)",
	   (unsigned long long)in.repairs, (unsigned long long)in_lock);
	ok(verify_fail == 0, "the table verified after every kill and every release%s%s",
	   verify_fail ? ": " : "", first_problem);
	ok(vrc == 0, "the table verifies at the end");
	ok(in.dropped == 0, "no repair ever found a damaged node to drop");
	ok(left_after_release == 0, "after each release no entry of the dead writer is listed (%llu)",
	   (unsigned long long)left_after_release);
	ok(stale == 0, "... nor left in the table");
	ok(enospc > 0, "the arena filled now and then (%llu refusals) without harm", (unsigned long long)enospc);

	for (unsigned i = 0; i < 2; i++) {
		struct rstat *r = &sh->r[i];
		printf("# reader %u (%s): %llu reads, %llu entries checked, %llu gave up (EAGAIN), %llu errors\n", i,
		       i ? "read-only, no lock" : "through the lock", (unsigned long long)r->reads,
		       (unsigned long long)r->items, (unsigned long long)r->again, (unsigned long long)r->errors);
		ok(r->violations == 0 && r->errors == 0, "reader %u: no torn, foreign or misowned entry%s%s", i,
		   r->violations || r->errors ? ": " : "", r->first);
		ok(r->reads > 100 && r->items > 1000, "reader %u listed %llu entries", i,
		   (unsigned long long)r->items);
	}

	/* Exactly what the writers believe, byte for byte, and the stats. */
	unsigned wrong = 0, listed = 0, expected = 0, bad_stats = 0;
	for (unsigned c = 0; c < NCH; c++) {
		char ch[32];
		struct final f = { .c = c };
		snprintf(ch, sizeof(ch), "room:%u", c);
		pres_get(&tab, ch, NOW, check_final, &f);
		wrong += f.missing_or_wrong;
		listed += f.items;
		unsigned want_n = 0, users = 0;
		bool seen[14] = { false };
		for (unsigned w = 0; w < NW; w++)
			for (unsigned k = 0; k < NCL; k++)
				if (sh->want[w][c][k].ver != 0) {
					want_n++;
					unsigned u = k % 5 == 0 ? 13 : k % 13;
					if (!seen[u]) {
						seen[u] = true;
						users++;
					}
				}
		expected += want_n;
		uint32_t nc, nu;
		if (pres_stats(&tab, ch, NOW, &nc, &nu) != 0 || nc != want_n || nu != users)
			bad_stats++;
	}
	ok(wrong == 0 && listed == expected, "the end state is exactly the writers' (%u entries listed, %u expected)",
	   listed, expected);
	ok(bad_stats == 0, "presence_stats agrees in every channel (distinct users, anonymous counted once)");

	unsigned released = 0;
	for (unsigned i = 0; i < NW; i++) {
		int n = pres_release_slot(&tab, SLOT0 + i);
		released += n > 0 ? (unsigned)n : 0;
	}
	ok(released == listed && pres_verify(&tab, &vc) == 0 && vc.clients == 0 && vc.channels == 0 &&
	   vc.nodes_free == NODES && vc.blocks_free == (uint32_t)(ARENA / PRES_BLOCK),
	   "releasing every slot empties the table, every node and block free again");
	pres_unlink(&tab);
	pres_detach(&tab);
	rmdir(dir);
	return tap_done();
}
