/* POSIX implementation of cp_platform.h. Failures of these calls mean
 * memory corruption, so they are not reported. */
#define _GNU_SOURCE   /* accept4, pthread_condattr_setclock */
#include "internal.h" /* the prototypes this file implements */

#include <stdlib.h>
#include <time.h>

int cp_mutex_init(cp_mutex *m) { return pthread_mutex_init(m, NULL) == 0 ? 0 : -1; }
void cp_mutex_destroy(cp_mutex *m) { pthread_mutex_destroy(m); }
void cp_mutex_lock(cp_mutex *m) { pthread_mutex_lock(m); }
void cp_mutex_unlock(cp_mutex *m) { pthread_mutex_unlock(m); }

int cp_cond_init(cp_cond *c) {
  pthread_condattr_t attr;
  if (pthread_condattr_init(&attr) != 0) return -1;
  pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
  int rc = pthread_cond_init(c, &attr);
  pthread_condattr_destroy(&attr);
  return rc == 0 ? 0 : -1;
}

void cp_cond_destroy(cp_cond *c) { pthread_cond_destroy(c); }
void cp_cond_signal(cp_cond *c) { pthread_cond_signal(c); }
void cp_cond_broadcast(cp_cond *c) { pthread_cond_broadcast(c); }

void cp_cond_wait_until(cp_cond *c, cp_mutex *m, uint64_t deadline_ms) {
  if (deadline_ms == UINT64_MAX) {
    pthread_cond_wait(c, m);
    return;
  }
  struct timespec ts;
  ts.tv_sec = (time_t)(deadline_ms / 1000u);
  ts.tv_nsec = (long)(deadline_ms % 1000u) * 1000000L;
  pthread_cond_timedwait(c, m, &ts);
}

static pthread_key_t exit_key;
static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
static int exit_key_made;

static void make_exit_key(void) {
  exit_key_made = pthread_key_create(&exit_key, cp_thread_exit) == 0;
}

int cp_thread_exit_register(void *arg) {
  pthread_once(&exit_once, make_exit_key);
  return exit_key_made && pthread_setspecific(exit_key, arg) == 0 ? 0 : -1;
}

uint64_t cp_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

const char *cp_getenv(const char *name) { return getenv(name); }
