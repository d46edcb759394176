/* Linux primitives for the core: a mutex, a condition variable on the
 * monotonic clock, and a millisecond clock.
 *
 * The mutex is one futex word (Drepper, "Futexes Are Tricky", mutex 3; the
 * same protocol as glibc's internal lock): 0 free, 1 locked, 2 locked with
 * sleepers. Taking and releasing a free one is one atomic instruction,
 * inline. The core takes a socket's mutex on every call and every event,
 * several times per message; pthread_mutex_lock costs a call and its type
 * dispatch each time, and a pthread_mutex_t is 40 bytes in every slot. */
#ifndef CPORT_POSIX_PLATFORM_H
#define CPORT_POSIX_PLATFORM_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct cp_mutex {
  atomic_int word;
} cp_mutex;

typedef struct cp_cond {
  atomic_uint seq;     /* bumped by each signal: a sleeper that saw an old value wakes */
  atomic_uint waiters; /* threads between the count and their wake: none, no syscall */
} cp_cond;

#define CP_MUTEX_INIT                                                                              \
  { 0 }
#define CP_THREAD_LOCAL _Thread_local

/* Slow paths (platform.c): sleep until the word can be taken; wake one. */
void cp_mutex_wait(cp_mutex *m);
void cp_mutex_wake(cp_mutex *m);

static inline void cp_mutex_lock(cp_mutex *m) {
  int expected = 0;
  if (!atomic_compare_exchange_strong_explicit(&m->word, &expected, 1, memory_order_acquire,
                                               memory_order_relaxed))
    cp_mutex_wait(m);
}

static inline void cp_mutex_unlock(cp_mutex *m) {
  if (atomic_exchange_explicit(&m->word, 0, memory_order_release) == 2) cp_mutex_wake(m);
}

/* Bytes of backend state in each socket slot (epoll: a flag) and in each
 * operation (unused: 8 keeps the array non-empty). */
#define CP_BACKEND_SOCK_SIZE 8
#define CP_BACKEND_OP_SIZE 8

/* The other functions on these types are declared in src/core/internal.h. */

#endif
