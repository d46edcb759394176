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

/* Bytes of backend state in each socket slot (epoll: a flag) and in each
 * operation (unused: 8 keeps the array non-empty). */
#define CP_BACKEND_SOCK_SIZE 8
#define CP_BACKEND_OP_SIZE 8

/* The functions on these types are declared in src/core/internal.h. */

#endif
