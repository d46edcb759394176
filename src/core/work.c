/* Jobs: cport_work and the lookups (resolve.c), run on the context's
 * worker threads, each ending its handle with one message.
 *
 * A job waits in a FIFO until a worker takes it, runs with no lock held,
 * leaves the running list under jobs.mu, and is then delivered with no
 * lock held: once out of the list, no cancel or queue destruction can
 * reach it (they take jobs.mu to find it), and its queue, even destroyed,
 * stays in memory as a tombstone until the context goes, which joins the
 * workers first (a push into a destroyed queue frees the message). A job
 * the OS runs (cp_job_finish) is delivered under jobs.mu, because the
 * context's destruction waits for those only until in_os drops. Its final
 * message is allocated when it is submitted, so that a job that ran can
 * always say so (rule 3: nothing lost).
 *
 * Cancelling a job that waits removes it: it never runs, and its abort is
 * delivered at once. A running lookup is abandoned: its abort is delivered
 * at once and its answer freed when it comes, because a cancel never waits
 * (rule 16) and a lookup's answer is worth nothing late. Running work
 * cannot be abandoned: the user's fn has effects, so its completion is the
 * handle's end, and the cancel answers CPORT_EBUSY.
 *
 * Handles are a process-wide counter with CP_JOB_HANDLE set; a cancel looks for one in
 * the waiting and running lists, which is linear in the jobs of the
 * context. Lock order: jobs.mu -> pool (submit) and jobs.mu -> queue. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#define JOB_HANDLE_MASK (CP_JOB_HANDLE - 1u)
#define DEFAULT_MIN_THREADS 4u

enum { JOB_WAITING = 0, JOB_RUNNING = 1 };

struct cp_job {
  cp_job *next, *prev;
  cp_jobs *jobs;
  cport_handle handle;
  cport_queue *q; /* NULL once q is gone: the job ends with no message */
  cp_op *final;   /* the message that ends the handle */
  cp_job_fn run;
  void *user_ptr;
  uint8_t state;
  uint8_t abandoned; /* a cancelled lookup still running: its abort was delivered */
  _Alignas(16) unsigned char data[];
};

typedef struct job_list {
  cp_job *head, *tail;
} job_list;

struct cp_jobs {
  cp_mutex mu;
  job_list waiting, running;
  cp_pool *pool;   /* started by the first job */
  cp_cond os_idle; /* signalled when the last job the OS runs ends */
  unsigned in_os;  /* jobs the OS runs (cp_job_submit_os) */
  unsigned threads;
  bool stopping;
};

static void list_append(job_list *l, cp_job *j) {
  j->next = NULL;
  j->prev = l->tail;
  if (l->tail)
    l->tail->next = j;
  else
    l->head = j;
  l->tail = j;
}

static void list_remove(job_list *l, cp_job *j) {
  if (j->prev)
    j->prev->next = j->next;
  else
    l->head = j->next;
  if (j->next)
    j->next->prev = j->prev;
  else
    l->tail = j->prev;
  j->next = j->prev = NULL;
}

static cp_job *list_find(const job_list *l, cport_queue *q, cport_handle handle) {
  for (cp_job *j = l->head; j; j = j->next)
    if (j->handle == handle && j->q == q) return j;
  return NULL;
}

/* ---- the pool's side ------------------------------------------------------ */

/* Delivers a job that ran, out of every list (its abandoned and q can no
 * longer change). */
static void deliver(cp_job *j, int status, void *result, size_t count) {
  if (j->abandoned || !j->q) {
    cport_free(result);
    if (!j->abandoned) cp_op_free_cached(NULL, j->final);
    return;
  }
  cp_op *m = j->final;
  m->tag = CPORT_TAG_COMPLETION;
  m->status = status;
  m->done = count;
  if (result) {
    m->buf = result;
    m->msg_flags = CPORT_MSG_ALLOCATED;
  }
  cp_queue_push_remote(j->q, m); /* a worker's or the OS's thread, mostly */
}

/* One pool call: the oldest waiting job, if any is left (a cancel may have
 * taken it). */
static void worker(void *arg) {
  cp_jobs *jobs = arg;
  cp_mutex_lock(&jobs->mu);
  cp_job *j = jobs->waiting.head;
  if (!j) {
    cp_mutex_unlock(&jobs->mu);
    return;
  }
  list_remove(&jobs->waiting, j);
  j->state = JOB_RUNNING;
  list_append(&jobs->running, j);
  cp_mutex_unlock(&jobs->mu);
  void *result = NULL;
  size_t count = 0;
  int status = j->run(j, &result, &count);
  cp_mutex_lock(&jobs->mu);
  list_remove(&jobs->running, j);
  cp_mutex_unlock(&jobs->mu);
  deliver(j, status, result, count); /* out of the list: no cancel or destroy reaches j now */
  cp_free(j);
}

/* ---- the context's side --------------------------------------------------- */

static unsigned parse_threads(const char *text) {
  unsigned long n = 0;
  if (!text || !*text) return 0;
  for (const char *c = text; *c; c++) {
    if (*c < '0' || *c > '9' || n > CPORT_THREADPOOL_MAX) return 0;
    n = n * 10u + (unsigned long)(*c - '0');
  }
  return n <= CPORT_THREADPOOL_MAX ? (unsigned)n : 0;
}

unsigned cp_jobs_threads(int opt) {
  if (opt < 0 || opt > CPORT_THREADPOOL_MAX) return 0;
  if (opt > 0) return (unsigned)opt;
  unsigned env = parse_threads(cp_getenv("CPORT_THREADPOOL_SIZE"));
  if (env > 0) return env;
  unsigned cores = cp_cpu_count();
  return cores > DEFAULT_MIN_THREADS ? cores : DEFAULT_MIN_THREADS;
}

int cp_jobs_create(cp_jobs **out, unsigned threads) {
  cp_jobs *jobs = cp_calloc(1, sizeof *jobs);
  if (!jobs) return CPORT_ENOMEM;
  if (cp_mutex_init(&jobs->mu) != 0 || cp_cond_init(&jobs->os_idle) != 0) {
    cp_free(jobs);
    return CPORT_ENOMEM;
  }
  jobs->threads = threads;
  *out = jobs;
  return CPORT_OK;
}

static void job_discard(cp_job *j) {
  cp_op_free_cached(NULL, j->final);
  cp_free(j);
}

void cp_jobs_free(cp_jobs *jobs) {
  if (!jobs) return;
  cp_mutex_lock(&jobs->mu);
  jobs->stopping = true;
  cp_job *j = jobs->waiting.head;
  jobs->waiting.head = jobs->waiting.tail = NULL;
  cp_mutex_unlock(&jobs->mu);
  while (j) { /* no worker can reach them now */
    cp_job *next = j->next;
    job_discard(j);
    j = next;
  }
  if (jobs->pool) cp_pool_destroy(jobs->pool); /* the running ones deliver meanwhile */
  cp_mutex_lock(&jobs->mu);
  while (jobs->in_os > 0) cp_cond_wait_until(&jobs->os_idle, &jobs->mu, UINT64_MAX);
  cp_mutex_unlock(&jobs->mu);
  cp_cond_destroy(&jobs->os_idle);
  cp_mutex_destroy(&jobs->mu);
  cp_free(jobs);
}

static cp_job *job_new(cport_queue *q, uint8_t kind, cp_job_fn run, void *user_ptr,
                       const void *data, size_t data_len) {
  cp_job *j = cp_malloc(sizeof *j + data_len);
  if (!j) return NULL;
  j->final = cp_op_alloc_queue(q, kind, 0, user_ptr);
  if (!j->final) {
    cp_free(j);
    return NULL;
  }
  j->jobs = q->ctx->jobs;
  j->q = q;
  j->run = run;
  j->user_ptr = user_ptr;
  j->handle = 0;
  j->state = JOB_WAITING;
  j->abandoned = 0;
  if (data_len) memcpy(j->data, data, data_len);
  return j;
}

/* Job handles count for the whole process: a handle of a context that is
 * gone never names a job of another. */
static atomic_uint_fast64_t g_job_seq;

static void assign_handle(cp_job *j) {
  uint64_t seq = atomic_fetch_add_explicit(&g_job_seq, 1, memory_order_relaxed) + 1;
  j->handle = CP_QUEUE_HANDLE | CP_JOB_HANDLE | (seq & JOB_HANDLE_MASK);
  j->final->handle = j->handle;
}

/* Queues j for the pool; jobs.mu held. */
static int enqueue(cp_jobs *jobs, cp_job *j) {
  if (jobs->stopping) return CPORT_EINVAL;
  if (!jobs->pool) {
    int rc = cp_pool_create(&jobs->pool, jobs->threads, worker, jobs);
    if (rc != CPORT_OK) return rc;
  }
  if (!j->handle) assign_handle(j);
  j->state = JOB_WAITING;
  list_append(&jobs->waiting, j);
  int rc = cp_pool_submit(jobs->pool);
  if (rc != CPORT_OK) list_remove(&jobs->waiting, j);
  return rc;
}

int cp_job_submit(cport_queue *q, uint8_t kind, cp_job_fn run, void *user_ptr, const void *data,
                  size_t data_len, cport_handle *handle) {
  cp_jobs *jobs = q->ctx->jobs;
  cp_job *j = job_new(q, kind, run, user_ptr, data, data_len);
  if (!j) return CPORT_ENOMEM;
  cp_mutex_lock(&jobs->mu);
  int rc = enqueue(jobs, j);
  if (rc == CPORT_OK) *handle = j->handle;
  cp_mutex_unlock(&jobs->mu);
  if (rc != CPORT_OK) {
    job_discard(j);
    return rc;
  }
  return CPORT_COMPLETION;
}

/* ---- jobs the OS runs ------------------------------------------------------- */

/* The job is running before start sees it: the OS may end it (on another
 * thread) before start even returns. */
static int os_begin(cp_jobs *jobs, cp_job *j) {
  cp_mutex_lock(&jobs->mu);
  int rc = jobs->stopping ? CPORT_EINVAL : CPORT_OK;
  if (rc == CPORT_OK) {
    assign_handle(j);
    j->state = JOB_RUNNING;
    list_append(&jobs->running, j);
    jobs->in_os++;
  }
  cp_mutex_unlock(&jobs->mu);
  return rc;
}

/* The job left the OS's hands; jobs.mu held. */
static void os_end(cp_jobs *jobs, cp_job *j) {
  list_remove(&jobs->running, j);
  if (--jobs->in_os == 0) cp_cond_broadcast(&jobs->os_idle);
}

int cp_job_submit_os(cport_queue *q, uint8_t kind, cp_job_start_fn start, cp_job_fn run,
                     const void *data, size_t data_len, cport_handle *handle) {
  cp_jobs *jobs = q->ctx->jobs;
  cp_job *j = job_new(q, kind, run, NULL, data, data_len);
  if (!j) return CPORT_ENOMEM;
  int rc = os_begin(jobs, j);
  if (rc != CPORT_OK) {
    job_discard(j);
    return rc;
  }
  cport_handle h = j->handle;
  void *result = NULL;
  size_t count = 0;
  rc = start(j, &result, &count);
  if (rc == CP_PENDING) {
    *handle = h; /* j may be gone already: the OS ends it */
    return CPORT_COMPLETION;
  }
  cp_mutex_lock(&jobs->mu);
  os_end(jobs, j);
  if (rc == CPORT_ENOTSUP) { /* no native form: a worker runs it */
    rc = enqueue(jobs, j);
    cp_mutex_unlock(&jobs->mu);
    if (rc != CPORT_OK) {
      job_discard(j);
      return rc;
    }
  } else { /* the OS answered at once */
    deliver(j, rc, result, count);
    cp_mutex_unlock(&jobs->mu);
    cp_free(j);
  }
  *handle = h;
  return CPORT_COMPLETION;
}

void cp_job_finish(cp_job *job, int status, void *result, size_t count) {
  cp_jobs *jobs = job->jobs;
  cp_mutex_lock(&jobs->mu);
  os_end(jobs, job);
  deliver(job, status, result, count);
  cp_mutex_unlock(&jobs->mu);
  cp_free(job);
}

void *cp_job_data(cp_job *job) { return job->data; }
void *cp_job_user_ptr(cp_job *job) { return job->user_ptr; }

/* Ends j's handle with an abort now; jobs.mu held. */
static void abort_now(cp_job *j) {
  cp_op *m = j->final;
  m->tag = CPORT_TAG_ABORT;
  m->status = CPORT_ECANCELED;
  cp_queue_push(j->q, m, NULL);
}

int cp_jobs_cancel(cport_queue *q, cport_handle handle) {
  cp_jobs *jobs = q->ctx->jobs;
  int rc = CPORT_ENOTFOUND;
  cp_mutex_lock(&jobs->mu);
  cp_job *j = list_find(&jobs->waiting, q, handle);
  if (j) {
    list_remove(&jobs->waiting, j);
    abort_now(j);
    cp_free(j);
    rc = CPORT_OK;
  } else if ((j = list_find(&jobs->running, q, handle)) != NULL && !j->abandoned) {
    if (j->final->kind == CPORT_OP_WORK) {
      rc = CPORT_EBUSY;
    } else {
      j->abandoned = 1;
      abort_now(j);
      rc = CPORT_OK;
    }
  }
  cp_mutex_unlock(&jobs->mu);
  return rc;
}

void cp_jobs_drop_queue(cp_jobs *jobs, cport_queue *q) {
  cp_mutex_lock(&jobs->mu);
  cp_job *j = jobs->waiting.head;
  while (j) {
    cp_job *next = j->next;
    if (j->q == q) {
      list_remove(&jobs->waiting, j);
      job_discard(j);
    }
    j = next;
  }
  for (j = jobs->running.head; j; j = j->next)
    if (j->q == q) j->q = NULL; /* an abandoned one's abort went with q */
  cp_mutex_unlock(&jobs->mu);
}

/* ---- cport_work ----------------------------------------------------------- */

typedef void (*work_fn)(void *arg);

static int run_work(cp_job *job, void **result, size_t *count) {
  (void)result;
  (void)count;
  work_fn fn;
  memcpy(&fn, cp_job_data(job), sizeof fn);
  fn(cp_job_user_ptr(job));
  return CPORT_OK;
}

int cport_work(cport_queue *q, void (*fn)(void *arg), void *arg, cport_handle *handle) {
  if (handle) *handle = 0;
  if (!q || !fn || !handle) return CPORT_EINVAL;
  if (cp_queue_dead(q)) return CPORT_EBADF;
  return cp_job_submit(q, CPORT_OP_WORK, run_work, arg, &fn, sizeof fn, handle);
}
