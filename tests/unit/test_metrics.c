/*
 * test_metrics.c - the pieces of /metrics that integration tests cannot
 * reach: the text format's escaping (rotor's own label values never carry
 * a quote), the histogram slot of a duration at each bound, and the fold of
 * a reaped worker's block into the retired one: every counter added, no
 * gauge, nothing else touched.
 */
#include "config.h"
#include "json.h"
#include "metrics.h"
#include "stats.h"
#include "../tap.h"

#include <stdlib.h>
#include <string.h>

static char *escaped(const char *s, bool label)
{
	static struct jw out;
	out.len = 0;
	metrics_escape(&out, s, label);
	jw_raw(&out, "", 1);
	return out.buf;
}

static void test_escape(void)
{
	is_str(escaped("plain", true), "plain", "nothing to escape");
	is_str(escaped("a\"b\\c\nd", true), "a\\\"b\\\\c\\nd", "label value: quote, backslash, newline");
	is_str(escaped("a\"b\\c\nd", false), "a\"b\\\\c\\nd", "HELP: a quote stays");
	is_str(escaped("", true), "", "empty");
}

static void test_buckets(void)
{
	static const uint64_t bounds[STATS_BUCKETS] = STATS_BUCKET_BOUNDS_NS;

	is_int(stats_bucket(0), 0, "0 ns: the first bucket");
	for (unsigned i = 0; i < STATS_BUCKETS; i++) {
		is_int(stats_bucket(bounds[i]), i, "%llu ns is in le=%g (bounds are inclusive)",
		       (unsigned long long)bounds[i], (double)bounds[i] / 1e9);
		is_int(stats_bucket(bounds[i] + 1), i + 1, "%llu ns is past it", (unsigned long long)bounds[i] + 1);
		if (i > 0)
			ok(bounds[i] > bounds[i - 1], "bounds increase at %u", i);
	}
	is_int(stats_bucket(UINT64_MAX), STATS_BUCKETS, "anything longer: the +Inf slot");

	struct stats_hist h = { 0 };
	stats_observe(&h, 1500000);
	stats_observe(&h, 1500000);
	stats_observe(&h, 20000000000ull);
	is_int(h.bucket[stats_bucket(1500000)], 2, "two observations in their slot");
	is_int(h.bucket[STATS_BUCKETS], 1, "one past the last bound");
	is_int(h.sum_ns, 3000000 + 20000000000ull, "the sum in ns");
}

static void test_fold(void)
{
	struct stats_block *into = calloc(1, sizeof(*into)), *from = calloc(1, sizeof(*from));
	uint64_t *f = (uint64_t *)&from->n, *t = (uint64_t *)&into->n;
	size_t words = sizeof(from->n) / sizeof(uint64_t);

	for (size_t i = 0; i < words; i++) {
		f[i] = i + 1;
		t[i] = 1000;
	}
	from->pid = 1234;
	from->conns_accepted = 7;
	from->bus_lost = 3;
	from->accept_errors = 2;
	from->conns_current = 99;
	from->clients = 98;
	from->subs = 97;
	from->inflight[STATS_T_WEBSOCKET] = 96;
	into->conns_accepted = 10;
	stats_fold(into, from);
	size_t bad = 0;
	for (size_t i = 0; i < words; i++)
		bad += t[i] != 1000 + i + 1;
	is_int(bad, 0, "every one of the %zu counter words is added", words);
	is_int(into->conns_accepted, 17, "conns_accepted added");
	is_int(into->bus_lost, 3, "bus_lost added");
	is_int(into->accept_errors, 2, "accept_errors added");
	is_int(into->conns_current + into->clients + into->subs + into->inflight[STATS_T_WEBSOCKET], 0,
	       "gauges are not");
	is_int(into->pid, 0, "nor the identity");
	stats_fold(into, from);
	is_int(into->conns_accepted, 24, "a second fold adds again");
	free(into);
	free(from);
}

/* The proxy table: entries by name, taken on first use and kept; the fold
 * merges by name, whatever the entry's index, and leaves the gauges. */
static void test_fold_proxies(void)
{
	struct stats_block *into = calloc(1, sizeof(*into)), *from = calloc(1, sizeof(*from));
	char longname[STATS_PROXY_NAME_LEN + 1];

	is_int(stats_proxy_slot(from, "default", 7), 0, "the first name takes entry 0");
	is_int(stats_proxy_slot(from, "other", 5), 1, "a second name entry 1");
	is_int(stats_proxy_slot(from, "default", 7), 0, "a known name keeps its entry");
	is_int(stats_proxy_slot(from, "defaul", 6), 2, "a prefix of a name is another name");
	memset(longname, 'x', sizeof longname - 1);
	longname[sizeof longname - 1] = '\0';
	is_int(stats_proxy_slot(from, longname, strlen(longname)), -1, "a name too long is not counted");
	is_int(stats_proxy_slot(from, "", 0), -1, "nor an empty one");
	from->px[1].dur[5].bucket[3] = 4;
	from->px[1].dur[5].sum_ns = 40;
	from->px[1].errors[5] = 2;
	from->px[1].inflight[5] = 1;
	is_int(stats_proxy_slot(into, "other", 5), 0, "in INTO, \"other\" is entry 0");
	into->px[0].errors[5] = 10;
	stats_fold(into, from);
	is_int(into->px[0].dur[5].bucket[3], 4, "merged by name: buckets");
	is_int(into->px[0].dur[5].sum_ns, 40, "sum");
	is_int(into->px[0].errors[5], 12, "errors added");
	is_int(into->px[0].inflight[5], 0, "the gauge is not folded");
	ok(strcmp(into->px[1].name, "default") == 0 && strcmp(into->px[2].name, "defaul") == 0,
	   "the other names are taken in INTO");
	for (int i = 3; i < STATS_PROXY_NAMES; i++)
		stats_proxy_slot(into, (char[]){ (char)('a' + i), (char)('a' + i), 0 }, 2);
	is_int(stats_proxy_slot(into, "more", 4), -1, "a full table counts no new name");
	free(into);
	free(from);
}

int main(void)
{
	test_escape();
	test_buckets();
	test_fold();
	test_fold_proxies();
	return tap_done();
}
