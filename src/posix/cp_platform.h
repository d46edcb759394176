/* POSIX primitives for the core: a mutex, a condition variable on the
 * monotonic clock, and a millisecond clock. */
#ifndef CPORT_POSIX_PLATFORM_H
#define CPORT_POSIX_PLATFORM_H

#include <pthread.h>
#include <stdint.h>

typedef pthread_mutex_t cp_mutex;
typedef pthread_cond_t cp_cond;
#define CP_MUTEX_INIT PTHREAD_MUTEX_INITIALIZER
#define CP_THREAD_LOCAL _Thread_local

int cp_mutex_init(cp_mutex *m);
void cp_mutex_destroy(cp_mutex *m);
void cp_mutex_lock(cp_mutex *m);
void cp_mutex_unlock(cp_mutex *m);

int cp_cond_init(cp_cond *c);
void cp_cond_destroy(cp_cond *c);
void cp_cond_signal(cp_cond *c);
void cp_cond_broadcast(cp_cond *c);
/* Wait until signalled or until the monotonic clock reaches deadline_ms
 * (UINT64_MAX: no deadline). Spurious wake-ups are allowed. */
void cp_cond_wait_until(cp_cond *c, cp_mutex *m, uint64_t deadline_ms);

/* Milliseconds on a monotonic clock. */
uint64_t cp_now_ms(void);

/* The value of an environment variable, or NULL. */
const char *cp_getenv(const char *name);

#endif
