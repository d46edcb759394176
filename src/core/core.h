/* Core-private types: contexts, queues and the helpers the core's files
 * share. Backends use internal.h only. */
#ifndef CPORT_CORE_H
#define CPORT_CORE_H

#include "internal.h"

struct cport_queue {
  cport_ctx *ctx;
  cp_mutex mu;
  cp_cond cv;
  cp_op *head, *tail; /* ended ops and user posts: the messages, in order */
  uint32_t count;
  cp_op *free_ops[2]; /* taken messages' ops, for reuse (op.c); by has_addr */
  int free_op_count[2];
  uint64_t idle_since; /* cp_now_ms when a wait first found q empty with a cache; 0: not idle */
  int waiters;         /* threads blocked on cv */
  int backlog_skips;   /* cport_wait calls that skipped polling on a backlog */
  atomic_int owned;    /* sockets whose owner this is */
  atomic_bool dead;    /* destroyed: kept as a tombstone until the context goes */
  struct cport_queue *next, *prev;
  struct cport_queue *next_spare; /* ctx->spare list: a blocking call's, idle */
};

typedef struct cp_timers cp_timers;
typedef struct cp_jobs cp_jobs;

/* Queue handles (timers, work, lookups) have the top bit set, which a
 * socket op's handle, a per-socket count, never reaches; work and lookups
 * also have the next one. */
#define CP_QUEUE_HANDLE ((uint64_t)1 << 63)
#define CP_JOB_HANDLE ((uint64_t)1 << 62)

struct cport_ctx {
  const cp_backend *be;
  cp_timers *timers; /* timer.c */
  cp_jobs *jobs;     /* work.c: cport_work and lookups */
  void *be_state;
  int accepts_per_listener;
  bool defer;         /* cport_ctx_options.defer: otp.defer of new sockets */
  bool single_thread; /* cport_ctx_options.single_thread: see cp_ctx_lock */
  /* single_thread: cp_thread_token() of the thread that uses it (the
   * creating one; cport_ctx_destroy's, once destroy begins). */
  _Atomic(uintptr_t) owner;
  cp_mutex mu; /* the list of queues */
  cport_queue *queues;
  cport_queue *spare;            /* idle private queues of blocking calls (under mu) */
  _Atomic(cport_queue *) poller; /* the queue whose thread drives the backend */
  atomic_int waiters;            /* threads blocked in cport_wait, all queues */
  /* single_thread: messages made on other threads (workers' results,
   * posts), in order, until the context's thread moves them to their
   * queues (cp_queue_push_remote). inbox_mu is taken by those threads. */
  cp_mutex inbox_mu;
  cp_op *inbox_head, *inbox_tail;
  atomic_bool inbox_ready;
};

/* The locks of a context's queues, its list of queues and its timers exist
 * for several threads calling in and pumping. A single-thread context has
 * one such thread, so it skips them; what other threads still do in it
 * goes through locks of its own (the inbox, the worker pool's queue). */
static inline void cp_ctx_lock(const cport_ctx *ctx, cp_mutex *m) {
  if (!ctx->single_thread) cp_mutex_lock(m);
}
static inline void cp_ctx_unlock(const cport_ctx *ctx, cp_mutex *m) {
  if (!ctx->single_thread) cp_mutex_unlock(m);
}

/* A value that tells the calling thread from every other live thread:
 * the address of a thread-local byte (ctx.c), inline because a
 * single-thread context's socket calls each ask for it. */
extern CP_THREAD_LOCAL char cp_thread_mark;
static inline uintptr_t cp_thread_token(void) { return (uintptr_t)&cp_thread_mark; }

static inline bool cp_ctx_owned_here(const cport_ctx *ctx) {
  return atomic_load_explicit(&ctx->owner, memory_order_relaxed) == cp_thread_token();
}

/* Whether the calling thread may use ctx's queues and sockets directly:
 * any thread, unless ctx is single-thread and this is not its thread. */
static inline bool cp_ctx_on_thread(const cport_ctx *ctx) {
  return !ctx->single_thread || cp_ctx_owned_here(ctx);
}

/* The IP protocol number of a socket: 6 (TCP), 17 (UDP), 0 for AF_UNIX. */
static inline int cp_protocol(const cp_sock *s) {
  return s->family == CPORT_AF_UNIX ? 0 : s->type == CPORT_SOCK_STREAM ? 6 : 17;
}

/* Queues (queue.c). */
/* Appends an op made a message (cp_op.tag set); the queue owns it now. A
 * non-NULL refill gets an op from q's cache, if it has one (op.c). */
void cp_queue_push(cport_queue *q, cp_op *op, cp_op **refill);
/* The same from a thread that may not be a single-thread context's own (a
 * worker, a foreign cport_post): the message waits in the context's inbox
 * until that thread's next wait moves it to q. Only messages about no
 * socket (posts, work, lookups) come this way. */
void cp_queue_push_remote(cport_queue *q, cp_op *op);
/* Moves the inbox's messages to their queues; the context's thread. */
void cp_inbox_drain(cport_ctx *ctx);
int cp_queue_create(cport_ctx *ctx, cport_queue **out);
void cp_queue_free(cport_queue *q);
/* A private queue for one blocking call, and its return once empty. */
cport_queue *cp_queue_borrow(cport_ctx *ctx);
void cp_queue_give_back(cport_queue *q);
/* Whether q was destroyed (every call naming it answers CPORT_EBADF). */
static inline bool cp_queue_dead(const cport_queue *q) {
  return atomic_load_explicit(&q->dead, memory_order_acquire);
}
/* q becomes a socket's owner: CPORT_OK, or CPORT_EBADF if it was destroyed
 * (checked under q->mu, which destroy also takes). */
int cp_queue_own(cport_queue *q);

/* Contexts (ctx.c): how many exist, created and not yet destroyed
 * (cport_set_allocator refuses to run while any does). */
int cp_ctx_live(void);

/* Handle table (table.c). */
int cp_table_alloc(cport_ctx *ctx, cport_queue *owner, cp_sock **out); /* returns s locked */
void cp_table_close_ctx(cport_ctx *ctx);
void cp_table_reap_ctx(cport_ctx *ctx);
/* A single-thread context's slots become the calling thread's (a destroy
 * from another thread, once ctx's own has stopped using them). */
void cp_table_adopt_ctx(cport_ctx *ctx);
int cp_table_count_ctx(cport_ctx *ctx);
void cp_registry_add(cp_sock *s, bool listed);
void cp_registry_remove(cp_sock *s);
bool cp_registry_default(void);

/* Operations (op.c). */
/* The record of an op of s prepared on the stack (proto: its kind, dest
 * and the fields after them set, be[] excepted), with a new handle. Only
 * connects and datagram sockets' ops have room for addr. */
cp_op *cp_op_record(cp_sock *s, const cp_op *proto);
/* A message of q itself, as an op of that kind (CPORT_OP_NONE: a user
 * post, CPORT_OP_TIMER): value in user, ptr in buf, tag to be set. */
cp_op *cp_op_alloc_queue(cport_queue *q, uint8_t kind, uint64_t value, void *ptr);
/* The same from any thread: never from q's cache, which a single-thread
 * context's thread uses without a lock. */
cp_op *cp_op_alloc_remote(uint8_t kind, uint64_t value, void *ptr);
/* An op of s that made no message: kept as the socket's spare. s->mu held. */
void cp_op_free(cp_sock *s, cp_op *op);
/* An op from q's cache of that size, or NULL; q->mu held. */
cp_op *cp_op_take_cached(cport_queue *q, bool has_addr);
void cp_list_append(cp_list *l, cp_op *op);
void cp_list_remove(cp_list *l, cp_op *op);
void cp_deliver_ready(cp_sock *s, int dir);
/* A copy of op (a record of its own, same handle) to carry one result of a
 * multishot op as a message; NULL without memory. */
cp_op *cp_op_copy(cp_sock *s, const cp_op *op);
/* Makes op (ended, out of any list) a message and queues it. */
void cp_op_deliver(cp_sock *s, cp_op *op);
/* The end of an op for good: cp_op_done without the multishot step. */
void cp_op_end(cp_op *op, int status);
/* An op did its work (ended now, or by cp_op_done unless a select op). */
void cp_op_effects(cp_sock *s, const cp_op *op);

/* Buffers handed to users (ubuf.c; cp_ubuf_alloc is in internal.h), all
 * released by cport_free. The buffer goes to the user now: its release
 * counts (multi.c). */
void cp_ubuf_hand_over(void *buf);

/* Where a user's op goes: the socket's filter, or its backend. */
static inline int cp_start(cp_sock *s, cp_op *op) {
  return s->filtered ? s->filtered->ops->start(s, op) : s->ctx->be->start(s, op);
}

static inline void cp_stop(cp_sock *s, cp_op *op) {
  if (s->filtered)
    s->filtered->ops->cancel(s, op);
  else
    s->ctx->be->cancel(s, op);
}

/* What a layer does to a socket under the same lock hold as the submit
 * of its own op (TLS: put its filter on), and undoes if that op could not
 * start; attach answers CPORT_OK or the call's error. */
typedef struct cp_attach {
  int (*attach)(cp_sock *s, void *arg);
  void (*undo)(cp_sock *s, void *arg);
  void *arg;
} cp_attach;

/* An op with no buffer (CPORT_OP_TLS_HANDSHAKE, CPORT_OP_TLS_SHUTDOWN)
 * through the one submit path, with its three outcomes (io.c); with: NULL
 * or a layer's attach. */
int cp_io_call(cport_socket id, uint8_t kind, int timeout, cport_handle *handle,
               const cp_attach *with);

/* Multishot ops (multi.c). */
/* Sets up a multishot op just recorded (a recv gets its cp_bufs). */
int cp_multi_begin(cp_sock *s, cp_op *op);
/* op got a result (status): if it lets the handle go on, delivers it as a
 * CPORT_MSG_MORE message, re-arms op and returns true. */
bool cp_multi_go_on(cp_sock *s, cp_op *op, int status);
/* op ends for good (s->mu held): an empty buffer is dropped, a full one
 * handed over; the op's hold on its cp_bufs goes. */
void cp_multi_end(cp_op *op);
/* Buffer accounting, for ubuf.c: a chunk of b is released (handed: it had
 * gone to the user). May resume a paused recv: no lock may be held. */
void cp_bufs_ref(cp_bufs *b);
void cp_bufs_release(cp_bufs *b, bool handed);
void cp_bufs_handed(cp_bufs *b);

/* Work and lookups on worker threads (work.c). A job runs run(job) on a
 * worker; its result is a status, and for lookups a buffer (msg.buf) of
 * count entries. */
typedef int (*cp_job_fn)(cp_job *job, void **result, size_t *count);
typedef int (*cp_job_start_fn)(cp_job *job, void **result, size_t *count);
int cp_jobs_create(cp_jobs **out, unsigned threads);
/* Drops jobs not started, waits for those running, frees everything. */
void cp_jobs_free(cp_jobs *jobs);
/* A job of q, with extra bytes of request data (cp_job_data); returns
 * CPORT_COMPLETION with *handle set, or an error (nothing submitted). */
int cp_job_submit(cport_queue *q, uint8_t kind, cp_job_fn run, void *user_ptr, const void *data,
                  size_t data_len, cport_handle *handle);
/* A job the OS can run itself: start (in the caller's thread) returns
 * CP_PENDING when the OS took it (it ends with cp_job_finish, from any
 * thread), CPORT_ENOTSUP to have a worker run it with run instead, or its
 * result at once. */
int cp_job_submit_os(cport_queue *q, uint8_t kind, cp_job_start_fn start, cp_job_fn run,
                     const void *data, size_t data_len, cport_handle *handle);
void *cp_job_data(cp_job *job);
void *cp_job_user_ptr(cp_job *job);
int cp_jobs_cancel(cport_queue *q, cport_handle handle);
/* A queue that goes away: its jobs end with no message. */
void cp_jobs_drop_queue(cp_jobs *jobs, cport_queue *q);
/* The worker threads a context gets: opt (0: CPORT_THREADPOOL_SIZE, else
 * cores, at least 4), or 0 for a bad value. */
unsigned cp_jobs_threads(int opt);

/* Timers (timer.c). */
int cp_timers_create(cp_timers **out, const cport_ctx *ctx);
void cp_timers_free(cp_timers *t);
void cp_timers_drop_queue(cp_timers *t, cport_queue *q);
/* The poller's wait: timeout_ms (-1: none) cut to the earliest deadline. */
int cp_timers_timeout(cp_timers *t, int timeout_ms);
/* Fires what is due; the poller's thread, no lock held. */
void cp_timers_run(cp_timers *t);
/* Give op (pending, s->mu held) a deadline ms from now, replacing its own. */
int cp_deadline_arm(cp_sock *s, cp_op *op, int ms);
void cp_deadline_disarm(cp_sock *s, cp_op *op);

#endif
