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

#include <windows.h>
#include <winsock2.h>

#include <stdint.h>

typedef SRWLOCK cp_mutex;
typedef CONDITION_VARIABLE cp_cond;

/* Bytes of per-socket backend state in each socket slot (IOCP: the
 * accept pool, extension pointers, the names AcceptEx returned). */
#define CP_BACKEND_SOCK_SIZE 128
/* Bytes of backend state in each operation (IOCP: its I/O record). */
#define CP_BACKEND_OP_SIZE 32

/* A statically initialised mutex. */
#define CP_MUTEX_INIT SRWLOCK_INIT

/* Thread-local storage class. */
#if defined(_MSC_VER) && !defined(__clang__)
#define CP_THREAD_LOCAL __declspec(thread)
#else
#define CP_THREAD_LOCAL _Thread_local
#endif

static inline void cp_mutex_lock(cp_mutex *m) { AcquireSRWLockExclusive(m); }
static inline void cp_mutex_unlock(cp_mutex *m) { ReleaseSRWLockExclusive(m); }

/* The other functions on these types are declared in src/core/internal.h. */

#endif
