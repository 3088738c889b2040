/*
 * test_idem.c - the idempotent-publish results table: store and find, the
 * TTL (300 s in rotord) on a fake clock, pairs kept apart, the bound (a
 * full bucket gives up the result that expires first), attach by another
 * process, header validation, and a writer killed at each step of a store
 * (the next locker clears what it tore).
 */
#include "idem.h"
#include "../../tests/tap.h"
#include "testutil.h"

#include <errno.h>
#include <sys/wait.h>

static char dir[] = "/tmp/rotor-test-idem-XXXXXX";

static struct idem_result res(uint64_t off, const char *epoch)
{
	struct idem_result r = { .offset = off };
	snprintf(r.epoch, sizeof(r.epoch), "%s", epoch);
	return r;
}

static int get(struct idem *t, const char *ch, const char *key, int64_t now, struct idem_result *out)
{
	return idem_get(t, ch, strlen(ch), key, strlen(key), now, out);
}

static int put(struct idem *t, const char *ch, const char *key, uint64_t off, const char *epoch, int64_t now)
{
	struct idem_result r = res(off, epoch);
	return idem_put(t, ch, strlen(ch), key, strlen(key), &r, now, IDEM_TTL_MS);
}

static int crash_step;

static void crash_hook(struct idem *t, int step)
{
	(void)t;
	if (step == crash_step)
		kill(getpid(), SIGKILL);
}

int main(void)
{
	struct idem t, a;
	struct idem_result r;
	char p[256];
	const int64_t T0 = 1700000000000;

	if (mkdtemp(dir) == NULL)
		return 99;
	path_of(p, sizeof(p), dir, "idem.seg");

	ok(idem_create(&t, p, 10) == -1 && errno == EINVAL, "fewer than IDEM_ENTRIES_MIN entries: EINVAL");
	ok(idem_create(&t, p, 64) == 0, "create a table of 64 entries");
	is_int(t.h->nbuckets, 8, "64 entries are 8 buckets of 8");
	is_int(t.seg.size, idem_seg_size(64), "the segment has idem_seg_size bytes");

	/* Store and find. */
	is_int(get(&t, "news", "k1", T0, &r), 0, "an unknown key is not found");
	ok(put(&t, "news", "k1", 7, "AbCdEfGh", T0) == 0, "store news/k1 -> 7, AbCdEfGh");
	is_int(get(&t, "news", "k1", T0 + 1, &r), 1, "news/k1 is found");
	ok(r.offset == 7 && strcmp(r.epoch, "AbCdEfGh") == 0, "with its offset and epoch");
	is_int(get(&t, "news", "k2", T0, &r), 0, "another key of the channel is not");
	is_int(get(&t, "sport", "k1", T0, &r), 0, "the same key in another channel is not");
	is_int(get(&t, "new", "sk1", T0, &r), 0, "nor a pair whose bytes run together the same");
	ok(put(&t, "plain", "k1", 0, "", T0) == 0, "store a result without history (offset 0, no epoch)");
	ok(get(&t, "plain", "k1", T0, &r) == 1 && r.offset == 0 && r.epoch[0] == '\0',
	   "it is found, empty");
	char big[] = "a-much-too-long-epoch-string";
	struct idem_result rb = res(1, "");
	memcpy(rb.epoch, big, IDEM_EPOCH_MAX + 1);
	ok(idem_put(&t, "x", 1, "k", 1, &rb, T0, IDEM_TTL_MS) == -1 && errno == EINVAL,
	   "an epoch over IDEM_EPOCH_MAX is refused");
	ok(idem_put(&t, "x", 1, "k", 1, &r, T0, 0) == -1 && errno == EINVAL, "a TTL of 0 is refused");

	/* The TTL, on a fake clock. */
	is_int(get(&t, "news", "k1", T0 + IDEM_TTL_MS - 1, &r), 1, "found 1 ms before the 300 s are up");
	is_int(get(&t, "news", "k1", T0 + IDEM_TTL_MS, &r), 0, "gone when they are");
	ok(put(&t, "news", "k1", 9, "AbCdEfGh", T0 + IDEM_TTL_MS) == 0, "store news/k1 again after expiry");
	ok(get(&t, "news", "k1", T0 + IDEM_TTL_MS, &r) == 1 && r.offset == 9, "the new result is found");
	ok(put(&t, "news", "k1", 11, "AbCdEfGh", T0 + IDEM_TTL_MS + 5) == 0, "a store over a live pair");
	ok(get(&t, "news", "k1", T0 + IDEM_TTL_MS + 5, &r) == 1 && r.offset == 11, "replaces its result");
	is_int(idem_verify(&t), 2, "two entries in use (news/k1 once), all valid");

	/* Attached by another process. */
	ok(idem_attach(&a, p, false) == 0, "attach the table");
	ok(get(&a, "news", "k1", T0 + IDEM_TTL_MS + 5, &r) == 1 && r.offset == 11, "the attacher finds it");
	pid_t pid = fork();
	if (pid == 0) {
		struct idem c;
		if (idem_attach(&c, p, false) < 0 || put(&c, "child", "k", 3, "ZZZZZZZZ", T0) < 0)
			_exit(1);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "another process stores a result");
	ok(get(&t, "child", "k", T0, &r) == 1 && r.offset == 3 && strcmp(r.epoch, "ZZZZZZZZ") == 0,
	   "which this one finds");
	idem_detach(&a);

	/* The bound: 64 entries; 1000 keys fill every bucket, and the results
	 * that expire first give way. */
	int64_t now = T0 + 2 * IDEM_TTL_MS;
	for (int i = 0; i < 1000; i++) {
		char k[32];
		snprintf(k, sizeof(k), "key-%d", i);
		put(&t, "flood", k, (uint64_t)i + 1, "EEEEEEEE", now + i);
	}
	int found = 0, newest = 0;
	for (int i = 0; i < 1000; i++) {
		char k[32];
		snprintf(k, sizeof(k), "key-%d", i);
		if (get(&t, "flood", k, now + 1000, &r) == 1) {
			found++;
			if (r.offset != (uint64_t)i + 1)
				found = -100000;
			if (i >= 1000 - 8)
				newest++;
		}
	}
	ok(found > 0 && found <= 64, "at most 64 of 1000 results are kept (%d), each right", found);
	is_int(newest, 8, "the 8 newest are all kept");
	struct idem_stats s;
	idem_stats(&t, now + 1000, &s);
	ok(s.capacity == 64 && s.live == (uint32_t)found && s.evictions >= 1000 - 64,
	   "stats: capacity 64, %u live, %llu evictions", s.live, (unsigned long long)s.evictions);
	is_int(idem_verify(&t), 64, "the full table verifies");

	/* A writer killed at each step of a store. */
	for (crash_step = 1; crash_step <= 3; crash_step++) {
		char k[32];
		snprintf(k, sizeof(k), "crash-%d", crash_step);
		ok(put(&t, "c", k, 1, "OLDOLDOL", now) == 0 && get(&t, "c", k, now, &r) == 1,
		   "step %d: a result stored", crash_step);
		pid = fork();
		if (pid == 0) {
			t.hook = crash_hook;
			put(&t, "c", k, 2, "NEWNEWNE", now);
			_exit(0);
		}
		waitpid(pid, &st, 0);
		ok(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "step %d: the writer died mid-store", crash_step);
		ok(t.h->writing != 0, "step %d: it left its mark", crash_step);
		is_int(get(&t, "c", k, now, &r), 0, "step %d: its torn entry is not believed", crash_step);
		ok(t.h->writing == 0 && idem_verify(&t) >= 0, "step %d: the next locker repaired it", crash_step);
		ok(put(&t, "c", k, 3, "NEWNEWNE", now) == 0 && get(&t, "c", k, now, &r) == 1 && r.offset == 3,
		   "step %d: the pair can be stored again", crash_step);
	}
	idem_stats(&t, now, &s);
	is_int(s.repairs, 3, "three repairs counted");

	/* Header validation. */
	idem_detach(&t);
	uint32_t bad = 3;
	poke(p, sizeof(struct seg_hdr) + offsetof(struct idem_hdr, nbuckets), &bad, sizeof(bad));
	ok(idem_attach(&a, p, true) == -1 && errno == EPROTO, "a header with a bad geometry: EPROTO");
	ok(idem_create(&t, p, 1000) == 0 && t.h->nbuckets == 128, "create anew: 1000 entries are 128 buckets");
	is_int(get(&t, "news", "k1", T0, &r), 0, "a new table knows nothing");
	idem_unlink(&t);
	idem_detach(&t);
	rmdir(dir);
	return tap_done();
}
