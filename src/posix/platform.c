/* POSIX implementation of cp_platform.h: the futex slow paths of the mutex,
 * a futex condition variable, and the clock. */
#define _GNU_SOURCE   /* syscall */
#include "internal.h" /* the prototypes this file implements */

#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* Errors are the protocol's (EAGAIN: the word changed; EINTR; ETIMEDOUT):
 * every caller re-checks its word after a wait. */
static void futex_wait(void *word, unsigned expected, const struct timespec *deadline) {
  syscall(SYS_futex, word, FUTEX_WAIT_BITSET_PRIVATE, expected, deadline, NULL,
          FUTEX_BITSET_MATCH_ANY); /* deadline: absolute, CLOCK_MONOTONIC */
}

static void futex_wake(void *word, int count) {
  syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
}

int cp_mutex_init(cp_mutex *m) {
  atomic_init(&m->word, 0);
  return 0;
}
void cp_mutex_destroy(cp_mutex *m) { (void)m; }

/* Mark the word contended (2) and sleep until a release hands it over; a
 * thread that takes it this way also wakes the next sleeper on release. */
void cp_mutex_wait(cp_mutex *m) {
  while (atomic_exchange_explicit(&m->word, 2, memory_order_acquire) != 0)
    futex_wait(&m->word, 2u, NULL);
}

void cp_mutex_wake(cp_mutex *m) { futex_wake(&m->word, 1); }

int cp_cond_init(cp_cond *c) {
  atomic_init(&c->seq, 0u);
  atomic_init(&c->waiters, 0u);
  return 0;
}
void cp_cond_destroy(cp_cond *c) { (void)c; }

/* Signallers hold the mutex, and a waiter counts itself before it lets
 * the mutex go: a signaller sees every waiter that could miss its signal,
 * and a signal sent between reading seq and sleeping changes seq, so the
 * sleep returns at once. With no waiter a signal is two atomics, no
 * syscall. */
void cp_cond_signal(cp_cond *c) {
  atomic_fetch_add_explicit(&c->seq, 1u, memory_order_relaxed);
  if (atomic_load_explicit(&c->waiters, memory_order_relaxed) > 0) futex_wake(&c->seq, 1);
}

void cp_cond_broadcast(cp_cond *c) {
  atomic_fetch_add_explicit(&c->seq, 1u, memory_order_relaxed);
  if (atomic_load_explicit(&c->waiters, memory_order_relaxed) > 0) futex_wake(&c->seq, INT_MAX);
}

void cp_cond_wait_until(cp_cond *c, cp_mutex *m, uint64_t deadline_ms) {
  unsigned seq = atomic_load_explicit(&c->seq, memory_order_relaxed);
  struct timespec ts, *deadline = NULL;
  if (deadline_ms != UINT64_MAX) {
    ts.tv_sec = (time_t)(deadline_ms / 1000u);
    ts.tv_nsec = (long)(deadline_ms % 1000u) * 1000000L;
    deadline = &ts;
  }
  atomic_fetch_add_explicit(&c->waiters, 1u, memory_order_relaxed);
  cp_mutex_unlock(m);
  futex_wait(&c->seq, seq, deadline);
  atomic_fetch_sub_explicit(&c->waiters, 1u, memory_order_relaxed);
  /* Threads woken with this one that find the mutex taken mark it
   * contended themselves, so an uncontended take is safe here. */
  cp_mutex_lock(m);
}

uint64_t cp_now_ms(void) { return cp_now_ns() / 1000000u; }

uint64_t cp_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *cp_getenv(const char *name) { return getenv(name); }

/* The affinity mask, not the machine: a container or taskset may allow
 * fewer processors than the host has. */
unsigned cp_cpu_count(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
    return (unsigned)CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1u;
}
