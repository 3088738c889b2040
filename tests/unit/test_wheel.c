/*
 * test_wheel.c - the timer wheel: ordering, cancel, re-add from a callback,
 * deadlines beyond one revolution, clock jumps and many timers.
 */
#include "config.h"
#include "wheel.h"
#include "../tap.h"
#include <stdlib.h>
#include <stddef.h>

struct rec {
	struct wheel_timer t;
	int id;
	int fired;
	int64_t fired_at;
};

static struct wheel wh;
static int64_t now;
static int order[64], norder;

#define REC(tp) ((struct rec *)((char *)(tp) - offsetof(struct rec, t)))

static void on_fire(struct wheel_timer *t)
{
	struct rec *r = REC(t);

	r->fired++;
	r->fired_at = now;
	if (norder < (int)ROTOR_ARRAY_LEN(order))
		order[norder++] = r->id;
}

static void advance_to(int64_t t)
{
	now = t;
	wheel_advance(&wh, now);
}

/* Steps the clock by STEP up to T, advancing at each step (like a tick timer). */
static void run_to(int64_t t, int64_t step)
{
	while (now < t)
		advance_to(now + step > t ? t : now + step);
}

static void test_basic_order(void)
{
	struct rec r[4] = { 0 };
	int i;

	wheel_init(&wh, 0, 100);
	now = 0;
	norder = 0;
	for (i = 0; i < 4; i++) {
		r[i].id = i;
		wheel_timer_init(&r[i].t, on_fire);
	}
	wheel_add(&wh, &r[0].t, 950);
	wheel_add(&wh, &r[1].t, 250);
	wheel_add(&wh, &r[2].t, 520);
	wheel_add(&wh, &r[3].t, 251);
	is_int(wh.count, 4, "four timers pending");
	is_int(wheel_next(&wh), 250, "wheel_next gives the earliest deadline");
	advance_to(249);
	is_int(norder, 0, "nothing fires before its deadline");
	advance_to(251);
	is_int(norder, 2, "both 250 and 251 fired at 251");
	ok(!wheel_pending(&r[1].t) && !wheel_pending(&r[3].t), "fired timers are no longer pending");
	is_int(wheel_next(&wh), 520, "next deadline is 520");
	advance_to(2000);
	is_int(norder, 4, "the rest fired on a big step");
	is_int(order[2], 2, "520 fired before 950 within one advance");
	is_int(order[3], 0, "950 fired last");
	is_int(wh.count, 0, "wheel is empty");
	is_int(wheel_next(&wh), -1, "wheel_next of an empty wheel is -1");
	for (i = 0; i < 4; i++)
		is_int(r[i].fired, 1, "timer %d fired exactly once", i);
}

static void test_cancel(void)
{
	struct rec a = { .id = 1 }, b = { .id = 2 };

	wheel_init(&wh, 1000, 100);
	now = 1000;
	norder = 0;
	wheel_timer_init(&a.t, on_fire);
	wheel_timer_init(&b.t, on_fire);
	wheel_add(&wh, &a.t, 1300);
	wheel_add(&wh, &b.t, 1300);
	wheel_cancel(&wh, &a.t);
	wheel_cancel(&wh, &a.t); /* twice is harmless */
	ok(!wheel_pending(&a.t), "cancelled timer is not pending");
	run_to(2000, 100);
	is_int(a.fired, 0, "cancelled timer did not fire");
	is_int(b.fired, 1, "the other one did");
	/* Moving a pending timer. */
	wheel_add(&wh, &a.t, 2500);
	wheel_add(&wh, &a.t, 3500);
	is_int(wh.count, 1, "re-adding a pending timer moves it");
	run_to(3400, 100);
	is_int(a.fired, 0, "moved timer did not fire at its old deadline");
	run_to(3500, 100);
	is_int(a.fired, 1, "moved timer fired at its new deadline");
}

/* A callback that re-arms itself until it has fired five times, and one
 * that cancels a sibling due in the same advance. */
static struct rec rearm, killer, victim;

static void on_rearm(struct wheel_timer *t)
{
	struct rec *r = REC(t);

	r->fired++;
	r->fired_at = now;
	if (r->fired < 5)
		wheel_add(&wh, t, now + 200);
}

static void on_killer(struct wheel_timer *t)
{
	REC(t)->fired++;
	wheel_cancel(&wh, &victim.t);
}

static void on_immediate(struct wheel_timer *t)
{
	struct rec *r = REC(t);

	r->fired++;
	/* Due again at once: must wait for the next advance, not loop. */
	if (r->fired < 3)
		wheel_add(&wh, t, now);
}

static void test_callbacks(void)
{
	struct rec imm = { 0 };

	wheel_init(&wh, 0, 100);
	now = 0;
	rearm = (struct rec){ 0 };
	wheel_timer_init(&rearm.t, on_rearm);
	wheel_add(&wh, &rearm.t, 200);
	run_to(5000, 100);
	is_int(rearm.fired, 5, "self re-adding timer fired five times");
	is_int(rearm.fired_at, 1000, "last firing at 200 + 4 * 200");
	ok(!wheel_pending(&rearm.t), "and then stopped");

	/* Both due in one advance, the victim in a later tick so that the
	 * killer runs first and cancels it. */
	killer = (struct rec){ 0 };
	victim = (struct rec){ 0 };
	wheel_timer_init(&killer.t, on_killer);
	wheel_timer_init(&victim.t, on_fire);
	wheel_add(&wh, &killer.t, now + 100);
	wheel_add(&wh, &victim.t, now + 300);
	advance_to(now + 1000);
	is_int(killer.fired, 1, "killer fired");
	is_int(victim.fired, 0, "a due timer cancelled by an earlier callback did not fire");
	is_int(wh.count, 0, "no timer left");

	wheel_timer_init(&imm.t, on_immediate);
	wheel_add(&wh, &imm.t, now);
	advance_to(now);
	is_int(imm.fired, 1, "a timer re-added as due fires once per advance");
	advance_to(now + 1);
	advance_to(now + 1);
	is_int(imm.fired, 3, "and again on the following advances");
}

static void test_far_future(void)
{
	struct rec far = { .id = 1 }, near = { .id = 2 }, past = { .id = 3 };
	int64_t rev = (int64_t)WHEEL_SLOTS * 100;

	wheel_init(&wh, 0, 100);
	now = 0;
	wheel_timer_init(&far.t, on_fire);
	wheel_timer_init(&near.t, on_fire);
	wheel_timer_init(&past.t, on_fire);
	/* Same slot, three laps apart. */
	wheel_add(&wh, &far.t, 3 * rev + 500);
	wheel_add(&wh, &near.t, 500);
	is_int(wheel_next(&wh), 500, "wheel_next prefers this lap");
	run_to(600, 100);
	is_int(near.fired, 1, "near timer fired");
	is_int(far.fired, 0, "far timer in the same slot waits for its lap");
	is_int(wheel_next(&wh), 3 * rev + 500, "wheel_next finds a deadline laps ahead");
	run_to(3 * rev + 499, 100);
	is_int(far.fired, 0, "far timer not early");
	run_to(3 * rev + 600, 100);
	is_int(far.fired, 1, "far timer fired after three revolutions");
	ok(far.fired_at >= 3 * rev + 500 && far.fired_at < 3 * rev + 600,
	   "on the first advance after its deadline");

	/* A deadline in the past fires on the next advance. */
	wheel_add(&wh, &past.t, 5);
	is_int(wheel_next(&wh), 5, "a late deadline is still reported");
	advance_to(now);
	is_int(past.fired, 1, "a deadline in the past fires on the next advance");

	/* A clock jump over several revolutions fires everything due. */
	far.fired = 0;
	wheel_add(&wh, &far.t, now + 7 * rev + 30);
	wheel_add(&wh, &near.t, now + 10 * rev);
	advance_to(now + 8 * rev);
	is_int(far.fired, 1, "a jump over many revolutions fires what is due");
	ok(wheel_pending(&near.t), "and keeps what is not");
	wheel_cancel(&wh, &near.t);
}

static void on_count(struct wheel_timer *t)
{
	struct rec *r = REC(t);

	r->fired++;
	if (now < t->when)
		r->fired_at = -1; /* early: flagged below */
	else
		r->fired_at = now;
}

static void test_many(void)
{
	enum { N = 100000 };
	struct rec *r = calloc(N, sizeof(*r));
	int i, bad = 0, late = 0, fired = 0;

	wheel_init(&wh, 0, 100);
	now = 0;
	srand(42);
	for (i = 0; i < N; i++) {
		wheel_timer_init(&r[i].t, on_count);
		wheel_add(&wh, &r[i].t, rand() % 400000);
	}
	/* Cancel every tenth. */
	for (i = 0; i < N; i += 10)
		wheel_cancel(&wh, &r[i].t);
	is_int(wh.count, N - N / 10, "count after cancelling a tenth");
	run_to(400000 + 100, 100);
	for (i = 0; i < N; i++) {
		if (i % 10 == 0) {
			if (r[i].fired)
				bad++;
			continue;
		}
		if (r[i].fired != 1 || r[i].fired_at < 0)
			bad++;
		else if (r[i].fired_at - r[i].t.when >= 100)
			late++;
		fired += r[i].fired;
	}
	is_int(bad, 0, "every live timer fired once and never early; cancelled ones never");
	is_int(late, 0, "none later than one tick");
	is_int(fired, N - N / 10, "all fired");
	is_int(wh.count, 0, "wheel empty afterwards");
	free(r);
}

int main(void)
{
	test_basic_order();
	test_cancel();
	test_callbacks();
	test_far_future();
	test_many();
	return tap_done();
}
