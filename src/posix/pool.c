/* Worker threads on POSIX: a counter of calls to make, and threads that
 * start only when every running one is busy, up to the pool's size.
 *
 * Workers block every signal: a process's handlers then run on its own
 * threads, as they would without cport (libuv's pool does the same). */
#include "internal.h"
#include "posix.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

struct cp_pool {
  cp_mutex mu;
  cp_cond cv;
  unsigned max_threads;
  unsigned started; /* threads created (all are joined at destroy) */
  unsigned idle;    /* threads waiting on cv */
  unsigned wakeups; /* signals sent to idle threads that have not woken yet */
  unsigned pending; /* calls of run not yet taken */
  bool stopping;
  void (*run)(void *arg);
  void *arg;
  pthread_t *threads;
};

static void *worker_main(void *arg) {
  cp_pool *p = arg;
  cp_mutex_lock(&p->mu);
  for (;;) {
    while (p->pending == 0 && !p->stopping) {
      p->idle++;
      cp_cond_wait_until(&p->cv, &p->mu, UINT64_MAX);
      p->idle--;
      if (p->wakeups > 0) p->wakeups--;
    }
    if (p->stopping) break;
    p->pending--;
    cp_mutex_unlock(&p->mu);
    p->run(p->arg);
    cp_mutex_lock(&p->mu);
  }
  cp_mutex_unlock(&p->mu);
  return NULL;
}

int cp_pool_create(cp_pool **out, unsigned max_threads, void (*run)(void *arg), void *arg) {
  cp_pool *p = cp_calloc(1, sizeof *p);
  if (!p) return CPORT_ENOMEM;
  p->threads = cp_calloc(max_threads, sizeof *p->threads);
  if (!p->threads || cp_mutex_init(&p->mu) != 0 || cp_cond_init(&p->cv) != 0) {
    cp_free(p->threads);
    cp_free(p);
    return CPORT_ENOMEM;
  }
  p->max_threads = max_threads;
  p->run = run;
  p->arg = arg;
  *out = p;
  return CPORT_OK;
}

/* One more thread, with every signal blocked; p->mu held. */
static int start_thread(cp_pool *p) {
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int err = pthread_create(&p->threads[p->started], NULL, worker_main, p);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (err != 0) return cp_errno_to_err(err);
  p->started++;
  return CPORT_OK;
}

/* A new thread only when the calls waiting outnumber the idle threads; a
 * pool that has threads goes on with them if another cannot start. An idle
 * thread is woken only if none already woken is on its way: a burst of
 * submits wakes each sleeper once, not once per call. */
int cp_pool_submit(cp_pool *p) {
  cp_mutex_lock(&p->mu);
  p->pending++;
  int rc = CPORT_OK;
  if (p->pending > p->idle && p->started < p->max_threads) {
    rc = start_thread(p);
    if (rc != CPORT_OK && p->started > 0) rc = CPORT_OK;
  }
  if (rc != CPORT_OK)
    p->pending--;
  else if (p->idle > p->wakeups) {
    p->wakeups++;
    cp_cond_signal(&p->cv);
  }
  cp_mutex_unlock(&p->mu);
  return rc;
}

void cp_pool_destroy(cp_pool *p) {
  cp_mutex_lock(&p->mu);
  p->stopping = true;
  p->pending = 0;
  cp_cond_broadcast(&p->cv);
  unsigned n = p->started;
  cp_mutex_unlock(&p->mu);
  for (unsigned i = 0; i < n; i++) pthread_join(p->threads[i], NULL);
  cp_cond_destroy(&p->cv);
  cp_mutex_destroy(&p->mu);
  cp_free(p->threads);
  cp_free(p);
}
