/* Windows primitives for the core: a mutex (SRWLOCK), a condition variable
 * (CONDITION_VARIABLE), a monotonic millisecond clock and getenv. The twin of
 * src/posix/cp_platform.h: same names, same contracts.
 *
 * Include order matters on Windows: winsock2.h must come before windows.h
 * (windows.h would otherwise pull in the old winsock.h), and
 * WIN32_LEAN_AND_MEAN keeps windows.h from doing so at all. */
#ifndef CPORT_WIN_PLATFORM_H
#define CPORT_WIN_PLATFORM_H

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#if !defined(_WIN32_WINNT) || _WIN32_WINNT < 0x0600
#undef _WIN32_WINNT
#define _WIN32_WINNT 0x0600 /* Vista: SRWLOCK, CONDITION_VARIABLE, CancelIoEx, GQCSEx */
#endif

#include <winsock2.h>
#include <windows.h>

#include <stdint.h>

typedef SRWLOCK cp_mutex;
typedef CONDITION_VARIABLE cp_cond;

/* A statically initialised mutex. */
#define CP_MUTEX_INIT SRWLOCK_INIT

/* Thread-local storage class. */
#if defined(_MSC_VER) && !defined(__clang__)
#define CP_THREAD_LOCAL __declspec(thread)
#else
#define CP_THREAD_LOCAL _Thread_local
#endif

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
