/* Worker threads on Windows: a private system thread pool (Vista and
 * later) of the context's size, with one work object whose
 * callback the core's queue of jobs feeds: each submit is one callback.
 * The system starts and retires the threads; a private pool keeps a
 * context's slow lookups from starving the process's default pool. */
#include "cp_win.h"

#include <stdlib.h>

struct cp_pool {
  PTP_POOL pool;
  TP_CALLBACK_ENVIRON env;
  PTP_WORK work;
  void (*run)(void *arg);
  void *arg;
};

static VOID CALLBACK on_work(PTP_CALLBACK_INSTANCE instance, PVOID context, PTP_WORK work) {
  (void)instance, (void)work;
  cp_pool *p = context;
  p->run(p->arg);
}

static void release(cp_pool *p) {
  if (p->work) CloseThreadpoolWork(p->work);
  DestroyThreadpoolEnvironment(&p->env);
  if (p->pool) CloseThreadpool(p->pool);
  cp_free(p);
}

int cp_pool_create(cp_pool **out, unsigned max_threads, void (*run)(void *arg), void *arg) {
  cp_pool *p = cp_calloc(1, sizeof *p);
  if (!p) return CPORT_ENOMEM;
  InitializeThreadpoolEnvironment(&p->env);
  p->run = run;
  p->arg = arg;
  p->pool = CreateThreadpool(NULL);
  if (!p->pool) {
    int rc = cp_win_err(GetLastError());
    release(p);
    return rc;
  }
  /* The minimum too: the system adds threads to a busy pool only slowly
   * (under Wine, not at all while every thread is busy), and a pool of n
   * must run n blocking jobs at once. The pool itself starts with the
   * context's first job. */
  SetThreadpoolThreadMaximum(p->pool, (DWORD)max_threads);
  if (!SetThreadpoolThreadMinimum(p->pool, (DWORD)max_threads)) {
    int rc = cp_win_err(GetLastError());
    release(p);
    return rc;
  }
  SetThreadpoolCallbackPool(&p->env, p->pool);
  p->work = CreateThreadpoolWork(on_work, p, &p->env);
  if (!p->work) {
    int rc = cp_win_err(GetLastError());
    release(p);
    return rc;
  }
  *out = p;
  return CPORT_OK;
}

int cp_pool_submit(cp_pool *p) {
  SubmitThreadpoolWork(p->work); /* cannot fail once the work object exists */
  return CPORT_OK;
}

void cp_pool_destroy(cp_pool *p) {
  /* TRUE: callbacks not yet started are dropped; running ones finish. */
  WaitForThreadpoolWorkCallbacks(p->work, TRUE);
  release(p);
}
