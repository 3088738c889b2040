/*
 * rlock.c - the lock of a shared-memory structure: a robust, process-shared,
 * error-checking pthread mutex, and the pid of its holder stored beside it.
 *
 * A holder may be killed at any instruction. The next locker then gets
 * EOWNERDEAD and runs the structure's own repair while holding the mutex,
 * before marking it consistent: a repairer that dies too leaves the mutex
 * still inconsistent, so the one after it repairs again (repairs must be
 * idempotent). The owner pid is advisory: relaxed stores, never trusted
 * for correctness.
 */
#include "rlock.h"

#include <errno.h>
#include <stddef.h>
#include <unistd.h>

static pid_t cached_pid;

static void forget_pid(void)
{
	cached_pid = 0;
}

static void register_forget_pid(void)
{
	pthread_atfork(NULL, NULL, forget_pid);
}

/* getpid() is a system call since glibc 2.25 and the owner is stored at
 * every lock, so it is cached; an atfork handler forgets it in a child. */
pid_t rlock_pid(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	if (cached_pid == 0) {
		pthread_once(&once, register_forget_pid);
		cached_pid = getpid();
	}
	return cached_pid;
}

int rlock_init(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int err = pthread_mutexattr_init(&a);
	if (err == 0) {
		if ((err = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED)) == 0 &&
		    (err = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST)) == 0 &&
		    (err = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ERRORCHECK)) == 0)
			err = pthread_mutex_init(m, &a);
		pthread_mutexattr_destroy(&a);
	}
	return err;
}

int rlock_lock(pthread_mutex_t *m, int32_t *owner, void (*repair)(void *arg), void *arg)
{
	int err = pthread_mutex_lock(m);
	if (err == EOWNERDEAD) {
		if (repair != NULL)
			repair(arg);
		err = pthread_mutex_consistent(m);
		if (err != 0)
			pthread_mutex_unlock(m);
	}
	if (err != 0) {
		errno = err;
		return -1;
	}
	__atomic_store_n(owner, (int32_t)rlock_pid(), __ATOMIC_RELAXED);
	return 0;
}

void rlock_unlock(pthread_mutex_t *m, int32_t *owner)
{
	__atomic_store_n(owner, 0, __ATOMIC_RELAXED);
	pthread_mutex_unlock(m);
}
