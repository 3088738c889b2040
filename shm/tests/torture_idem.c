/*
 * torture_idem.c - the idempotent-publish results table under fire, bounded
 * in time: writer processes store results for their own keys in tight
 * loops (each result names its key and a version) and are SIGKILLed every
 * few milliseconds, often holding the lock or halfway through an entry,
 * then respawned. A reader looks keys up all along.
 *
 * Before each store a writer notes the version it is about to store
 * (pending), after it the version stored (done), in memory the test
 * shares. Checked: every result found names the key looked up (a torn or
 * mixed entry would not); after each kill the table verifies (idem_verify:
 * the dead writer's torn entry cleared by the next locker); at the end
 * every key whose last store completed is found with exactly that
 * version, and a key whose store was cut short holds the old or the new
 * version, or nothing (a torn entry is forgotten, never believed). The
 * table is big enough that nothing is evicted, which the test checks.
 *
 * Usage: torture_idem [seconds] (default 3, at most 15).
 */
#include "idem.h"
#include "../../tests/tap.h"
#include "testutil.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define NW 3              /* writers */
#define NK 200            /* keys per writer */
#define ENTRIES 8192      /* 1024 buckets for 600 keys: no bucket overflows */
#define NOW ((int64_t)1700000000000)

struct shared {
	uint32_t pending[NW][NK];   /* version a store is being made with */
	uint32_t done[NW][NK];      /* version last stored, 0 never */
	uint64_t stores[NW];
	volatile int stop;
	uint64_t reads, found, violations;
	char first[200];
};

static struct shared *sh;
static char path[256];

static void key_of(char *buf, size_t n, unsigned w, unsigned k)
{
	snprintf(buf, n, "writer-%u-key-%u", w, k);
}

/* The result a store of version V of (W, K) makes: the offset names all
 * three, the epoch the key again. */
static struct idem_result result_of(unsigned w, unsigned k, uint32_t v)
{
	struct idem_result r = { .offset = (uint64_t)w << 48 | (uint64_t)k << 32 | v };
	snprintf(r.epoch, sizeof(r.epoch), "e%u.%u", w, k);
	return r;
}

static bool result_ok(const struct idem_result *r, unsigned w, unsigned k)
{
	char e[IDEM_EPOCH_MAX + 1];
	snprintf(e, sizeof(e), "e%u.%u", w, k);
	return r->offset >> 48 == w && (r->offset >> 32 & 0xffff) == k && strcmp(r->epoch, e) == 0;
}

static void violation(const char *what)
{
	if (__atomic_fetch_add(&sh->violations, 1, __ATOMIC_RELAXED) == 0)
		snprintf(sh->first, sizeof(sh->first), "%s", what);
}

static void writer(unsigned w)
{
	struct idem t;
	uint64_t rnd = now_ns() ^ (uint64_t)getpid() << 20;
	char key[64];

	if (idem_attach(&t, path, false) < 0)
		_exit(2);
	while (!sh->stop) {
		unsigned k = (unsigned)(xs(&rnd) % NK);
		uint32_t v = sh->done[w][k] + 1;
		struct idem_result r = result_of(w, k, v);
		key_of(key, sizeof(key), w, k);
		__atomic_store_n(&sh->pending[w][k], v, __ATOMIC_SEQ_CST);
		if (idem_put(&t, "chan", 4, key, strlen(key), &r, NOW, IDEM_TTL_MS) < 0)
			_exit(3);
		__atomic_store_n(&sh->done[w][k], v, __ATOMIC_SEQ_CST);
		sh->stores[w]++;
	}
	_exit(0);
}

static void reader(unsigned unused)
{
	struct idem t;
	uint64_t rnd = now_ns();
	char key[64];

	(void)unused;
	if (idem_attach(&t, path, false) < 0)
		_exit(2);
	while (!sh->stop) {
		unsigned w = (unsigned)(xs(&rnd) % NW), k = (unsigned)(xs(&rnd) % NK);
		struct idem_result r;
		key_of(key, sizeof(key), w, k);
		int rc = idem_get(&t, "chan", 4, key, strlen(key), NOW, &r);
		if (rc < 0)
			violation("idem_get failed");
		else if (rc == 1 && !result_ok(&r, w, k))
			violation("a result found under another key's name");
		__atomic_fetch_add(&sh->reads, 1, __ATOMIC_RELAXED);
		__atomic_fetch_add(&sh->found, (uint64_t)rc, __ATOMIC_RELAXED);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	static char dir[] = "/tmp/rotor-torture-idem-XXXXXX";
	struct idem t;
	int seconds = argc > 1 ? atoi(argv[1]) : 3;
	uint64_t rnd = now_ns();

	if (seconds < 1 || seconds > 15)
		seconds = 3;
	if (mkdtemp(dir) == NULL)
		return 99;
	path_of(path, sizeof(path), dir, "idem.seg");
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED || idem_create(&t, path, ENTRIES) < 0)
		return 99;

	pid_t wp[NW], rp = spawn(reader, 0);
	for (unsigned i = 0; i < NW; i++)
		wp[i] = spawn(writer, i);
	uint64_t end = now_ns() + (uint64_t)seconds * 1000000000u;
	unsigned kills = 0, bad_verify = 0;
	while (now_ns() < end) {
		sleep_us((long)(500 + xs(&rnd) % 3000));
		unsigned i = (unsigned)(xs(&rnd) % NW);
		kill(wp[i], SIGKILL);
		waitpid(wp[i], NULL, 0);
		kills++;
		if (idem_verify(&t) < 0)
			bad_verify++;
		wp[i] = spawn(writer, i);
	}
	sh->stop = 1;
	int clean = 0;
	for (unsigned i = 0; i < NW; i++) {
		int st;
		waitpid(wp[i], &st, 0);
		clean += WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	int rst;
	waitpid(rp, &rst, 0);

	struct idem_stats s;
	idem_stats(&t, NOW, &s);
	printf("# %u kills, %llu stores, %llu repairs, %llu torn, %llu reads (%llu found)\n", kills,
	       (unsigned long long)(sh->stores[0] + sh->stores[1] + sh->stores[2]),
	       (unsigned long long)s.repairs, (unsigned long long)s.torn, (unsigned long long)sh->reads,
	       (unsigned long long)sh->found);
	ok(kills > 10 && clean == NW && WIFEXITED(rst) && WEXITSTATUS(rst) == 0,
	   "%u writers killed, the last ones and the reader stopped cleanly", kills);
	ok(s.repairs > 0, "some writers died holding the lock (%llu repairs)", (unsigned long long)s.repairs);
	is_int(bad_verify, 0, "the table verified after every kill");
	ok(sh->violations == 0, "every result found named its key (%llu violations%s%s)",
	   (unsigned long long)sh->violations, sh->violations ? ": " : "", sh->first);
	is_int(s.evictions, 0, "nothing was evicted");

	unsigned lost = 0, wrong = 0, cut = 0;
	for (unsigned w = 0; w < NW; w++) {
		for (unsigned k = 0; k < NK; k++) {
			char key[64];
			struct idem_result r;
			uint32_t d = sh->done[w][k], p = sh->pending[w][k];
			key_of(key, sizeof(key), w, k);
			int rc = idem_get(&t, "chan", 4, key, strlen(key), NOW, &r);
			uint32_t v = rc == 1 ? (uint32_t)r.offset : 0;
			if (rc == 1 && !result_ok(&r, w, k))
				wrong++;
			else if (p == d && d != 0 && v != d)
				lost++;
			else if (p != d && rc == 1 && v != d && v != p)
				wrong++;
			cut += p != d;
		}
	}
	is_int(lost, 0, "every completed store is found with its version");
	is_int(wrong, 0, "a store cut short left the old result, the new one, or none (%u cut)", cut);
	ok(idem_verify(&t) >= 0, "the table verifies at the end");
	idem_unlink(&t);
	idem_detach(&t);
	rmdir(dir);
	return tap_done();
}
