/*
 * wheel.c - hashed timer wheel.
 *
 * Model: time is cut into ticks of tick_ms; a timer due at `when` lives in
 * slot (when / tick_ms) mod WHEEL_SLOTS, on a doubly linked list threaded
 * through the timers themselves (next, pprev). A deadline more than one
 * revolution away shares its slot with nearer ones and is simply skipped
 * until its lap comes: each timer keeps its absolute deadline and a slot scan
 * fires only those with when <= now.
 *
 * Invariants:
 *  - every tick before `cur` has been scanned; a timer is never placed in a
 *    slot for a tick before `cur` (past deadlines go to slot `cur`), so the
 *    next advance sees it;
 *  - `count` is the number of timers with pprev != NULL, including due timers
 *    that wheel_advance has collected but not yet fired;
 *  - wheel_advance first collects every due timer onto a private list, then
 *    fires them: a callback's additions land in the slots and wait for the
 *    next advance, and its cancellations unlink from whichever list holds the
 *    timer.
 */
#include "config.h"
#include "wheel.h"
#include <assert.h>

#define WHEEL_MASK (WHEEL_SLOTS - 1)
_Static_assert((WHEEL_SLOTS & WHEEL_MASK) == 0, "WHEEL_SLOTS must be a power of two");

/* The tick that contains time MS (floor division, also below zero). */
static int64_t tick_of(const struct wheel *wh, int64_t ms)
{
	int64_t q = ms / wh->tick_ms;

	if (ms % wh->tick_ms < 0)
		q--;
	return q;
}

static void link_head(struct wheel_timer **head, struct wheel_timer *t)
{
	t->next = *head;
	if (t->next)
		t->next->pprev = &t->next;
	*head = t;
	t->pprev = head;
}

static void unlink_timer(struct wheel_timer *t)
{
	*t->pprev = t->next;
	if (t->next)
		t->next->pprev = t->pprev;
	t->next = NULL;
	t->pprev = NULL;
}

void wheel_init(struct wheel *wh, int64_t now_ms, int64_t tick_ms)
{
	assert(tick_ms > 0);
	*wh = (struct wheel){ .tick_ms = tick_ms };
	wh->cur = tick_of(wh, now_ms);
}

void wheel_timer_init(struct wheel_timer *t, void (*fn)(struct wheel_timer *t))
{
	*t = (struct wheel_timer){ .fn = fn };
}

void wheel_add(struct wheel *wh, struct wheel_timer *t, int64_t when_ms)
{
	int64_t tick;

	if (t->pprev)
		unlink_timer(t);
	else
		wh->count++;
	t->when = when_ms;
	tick = tick_of(wh, when_ms);
	if (tick < wh->cur)
		tick = wh->cur;
	link_head(&wh->slot[tick & WHEEL_MASK], t);
}

void wheel_cancel(struct wheel *wh, struct wheel_timer *t)
{
	if (!t->pprev)
		return;
	unlink_timer(t);
	assert(wh->count > 0);
	wh->count--;
}

void wheel_advance(struct wheel *wh, int64_t now_ms)
{
	struct wheel_timer *due = NULL, **tail = &due, *t, *next;
	int64_t target = tick_of(wh, now_ms), n, i;

	assert(!wh->advancing);
	if (target < wh->cur)
		target = wh->cur; /* the clock went back: rescan the current slot */
	if (wh->count == 0) {
		wh->cur = target;
		return;
	}

	/* Collect. More than a revolution since the last advance: every slot
	 * once is enough, since due timers are recognised by their deadline. */
	n = target - wh->cur + 1;
	if (n > WHEEL_SLOTS)
		n = WHEEL_SLOTS;
	for (i = 0; i < n; i++) {
		for (t = wh->slot[(wh->cur + i) & WHEEL_MASK]; t; t = next) {
			next = t->next;
			if (t->when > now_ms)
				continue;
			unlink_timer(t);
			*tail = t; /* append: earlier ticks fire first */
			t->pprev = tail;
			tail = &t->next;
		}
	}
	wh->cur = target;

	/* Fire. Each pass takes the head anew: callbacks may cancel any timer
	 * still on the list. */
	wh->advancing = true;
	while ((t = due) != NULL) {
		unlink_timer(t);
		wh->count--;
		t->fn(t);
	}
	wh->advancing = false;
}

int64_t wheel_next(const struct wheel *wh)
{
	int64_t best = -1, lap_best, i, tick;
	const struct wheel_timer *t;

	if (wh->count == 0)
		return -1;
	for (i = 0; i < WHEEL_SLOTS; i++) {
		tick = wh->cur + i;
		lap_best = -1;
		for (t = wh->slot[tick & WHEEL_MASK]; t; t = t->next) {
			if (best < 0 || t->when < best)
				best = t->when;
			/* Due within this lap of the slot (or already late). A
			 * later lap of an earlier slot is always later than this. */
			if (tick_of(wh, t->when) <= tick && (lap_best < 0 || t->when < lap_best))
				lap_best = t->when;
		}
		if (lap_best >= 0)
			return lap_best;
	}
	return best;
}
