/* Queues: user mailboxes, and the wait that drives the poller.
 *
 * At most one thread at a time runs the backend's poll (the "poller"); it
 * is whichever thread waits on a queue and finds no poller running, so one
 * queue on one thread costs no thread hop. Other waiters sleep on their
 * queue's condition variable; the poller wakes them when it delivers to
 * them, and wakes them all when it stops polling so one can take over.
 *
 * Lock order: socket -> queue, and ctx -> queue. Nobody holding a queue
 * lock takes another lock.
 *
 * A single-thread context skips these locks (cp_ctx_lock): its one thread
 * is the only one that calls, waits and polls. Its workers' results and
 * other threads' posts wait in its inbox, under a lock of its own, and
 * its thread moves them to their queues whenever it waits. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

/* The queue (if any) whose thread is running poll on this thread. */
static CP_THREAD_LOCAL cport_queue *t_polling;

int cp_queue_create(cport_ctx *ctx, cport_queue **out) {
  cport_queue *q = cp_calloc(1, sizeof *q);
  if (!q) return CPORT_ENOMEM;
  if (cp_mutex_init(&q->mu) != 0) goto fail_mutex;
  if (cp_cond_init(&q->cv) != 0) goto fail_cond;
  q->ctx = ctx;
  cp_ctx_lock(ctx, &ctx->mu);
  q->next = ctx->queues;
  if (ctx->queues) ctx->queues->prev = q;
  ctx->queues = q;
  cp_ctx_unlock(ctx, &ctx->mu);
  *out = q;
  return CPORT_OK;
fail_cond:
  cp_mutex_destroy(&q->mu);
fail_mutex:
  cp_free(q);
  return CPORT_ENOMEM;
}

/* Frees a chain of ops linked by next, with the buffers their messages
 * carry. No lock held: releasing a multishot chunk may lock its socket. */
static void free_chain(cp_op *op) {
  while (op) {
    cp_op *next = op->next;
    if (op->msg_flags & CPORT_MSG_ALLOCATED) cport_free(op->buf);
    cp_op_free_cached(NULL, op);
    op = next;
  }
}

/* Unlinks q's messages and cached ops into one chain for free_chain;
 * q->mu held (or q private to the caller). */
static cp_op *take_all_ops(cport_queue *q) {
  cp_op *chain = q->head;
  if (q->tail) q->tail->next = NULL;
  cp_op **end = q->tail ? &q->tail->next : &chain;
  for (int i = 0; i < 2; i++) {
    *end = q->free_ops[i];
    for (; *end; end = &(*end)->next)
      (*end)->msg_flags = 0; /* their buffers went with their messages */
    q->free_ops[i] = NULL;
    q->free_op_count[i] = 0;
  }
  q->head = q->tail = NULL;
  q->count = 0;
  return chain;
}

void cp_queue_free(cport_queue *q) {
  cport_ctx *ctx = q->ctx;
  cp_ctx_lock(ctx, &ctx->mu);
  if (q->prev)
    q->prev->next = q->next;
  else
    ctx->queues = q->next;
  if (q->next) q->next->prev = q->prev;
  cp_ctx_unlock(ctx, &ctx->mu);
  free_chain(take_all_ops(q)); /* undelivered: nobody else will free these */
  cp_cond_destroy(&q->cv);
  cp_mutex_destroy(&q->mu);
  cp_free(q);
}

/* Blocking calls reuse their private queues: a blocking recv in a loop
 * would otherwise create and destroy a mutex and a condition variable per
 * call. Spare queues stay on ctx->queues and die with ctx. */
cport_queue *cp_queue_borrow(cport_ctx *ctx) {
  cp_ctx_lock(ctx, &ctx->mu);
  cport_queue *q = ctx->spare;
  if (q) ctx->spare = q->next_spare;
  cp_ctx_unlock(ctx, &ctx->mu);
  if (!q && cp_queue_create(ctx, &q) != CPORT_OK) return NULL;
  return q;
}

/* q is empty: its one op's one message was taken. */
void cp_queue_give_back(cport_queue *q) {
  cport_ctx *ctx = q->ctx;
  cp_ctx_lock(ctx, &ctx->mu);
  q->next_spare = ctx->spare;
  ctx->spare = q;
  cp_ctx_unlock(ctx, &ctx->mu);
}

int cport_queue_create(cport_ctx *ctx, cport_queue **out) {
  if (!ctx || !out) return CPORT_EINVAL;
  return cp_queue_create(ctx, out);
}

int cp_queue_own(cport_queue *q) {
  cp_ctx_lock(q->ctx, &q->mu);
  int rc = q->dead ? CPORT_EBADF : CPORT_OK;
  if (rc == CPORT_OK) atomic_fetch_add(&q->owned, 1);
  cp_ctx_unlock(q->ctx, &q->mu);
  return rc;
}

/* A destroyed queue stays as a tombstone (its struct, on ctx->queues)
 * until the context goes, so every later call naming it, or a thread still
 * waiting on it, reads valid memory and answers CPORT_EBADF. Its timers
 * and jobs go first (they end with no message), then its messages. */
int cport_queue_destroy(cport_queue *q) {
  if (!q) return CPORT_EINVAL;
  if (cp_queue_dead(q)) return CPORT_EBADF;
  if (atomic_load(&q->owned) > 0) return CPORT_EBUSY;
  cp_timers_drop_queue(q->ctx->timers, q);
  cp_jobs_drop_queue(q->ctx->jobs, q);
  cp_op *gone = NULL;
  cp_ctx_lock(q->ctx, &q->mu);
  int rc = q->dead ? CPORT_EBADF : atomic_load(&q->owned) > 0 ? CPORT_EBUSY : CPORT_OK;
  if (rc == CPORT_OK) {
    atomic_store_explicit(&q->dead, true, memory_order_release);
    gone = take_all_ops(q);
    if (q->waiters > 0) cp_cond_broadcast(&q->cv);
  }
  cp_ctx_unlock(q->ctx, &q->mu);
  free_chain(gone);
  /* A thread polling for q returns to find it gone. */
  if (rc == CPORT_OK && atomic_load(&q->ctx->poller) == q) q->ctx->be->wake(q->ctx);
  return rc;
}

cport_ctx *cport_queue_ctx(const cport_queue *q) { return q ? q->ctx : NULL; }

void cp_queue_push(cport_queue *q, cp_op *op, cp_op **refill) {
  cport_ctx *ctx = q->ctx;
  op->next = NULL;
  cp_ctx_lock(q->ctx, &q->mu);
  if (q->dead) { /* a post that raced the destroy: nobody can take it */
    cp_ctx_unlock(q->ctx, &q->mu);
    if (op->msg_flags & CPORT_MSG_ALLOCATED) cport_free(op->buf);
    cp_op_free_cached(NULL, op);
    return;
  }
  if (refill) *refill = cp_op_take_cached(q, op->has_addr);
  if (q->tail)
    q->tail->next = op;
  else
    q->head = op;
  q->tail = op;
  q->count++;
  if (q->waiters > 0) cp_cond_signal(&q->cv);
  /* A thread polling for this queue sleeps in the OS, not on q->cv. */
  bool wake = atomic_load_explicit(&ctx->poller, memory_order_acquire) == q && t_polling != q;
  cp_ctx_unlock(q->ctx, &q->mu); /* q may be freed from here on: its waiter has its message */
  if (wake) ctx->be->wake(ctx);
}

void cp_queue_push_remote(cport_queue *q, cp_op *op) {
  cport_ctx *ctx = q->ctx;
  if (!ctx->single_thread) {
    cp_queue_push(q, op, NULL);
    return;
  }
  op->next = NULL;
  op->dest = q; /* such messages carry no meta, the other use of the field */
  cp_mutex_lock(&ctx->inbox_mu);
  if (ctx->inbox_tail)
    ctx->inbox_tail->next = op;
  else
    ctx->inbox_head = op;
  ctx->inbox_tail = op;
  atomic_store(&ctx->inbox_ready, true); /* seq_cst: against a skipped wake-up */
  cp_mutex_unlock(&ctx->inbox_mu);
  /* The poll that follows a missed wake-up finds inbox_ready set: each
   * backend's wake-up stays pending until a poll consumes it. */
  ctx->be->wake(ctx);
}

void cp_inbox_drain(cport_ctx *ctx) {
  if (!atomic_load(&ctx->inbox_ready)) return;
  cp_mutex_lock(&ctx->inbox_mu);
  cp_op *op = ctx->inbox_head;
  ctx->inbox_head = ctx->inbox_tail = NULL;
  atomic_store_explicit(&ctx->inbox_ready, false, memory_order_relaxed);
  cp_mutex_unlock(&ctx->inbox_mu);
  while (op) {
    cp_op *next = op->next;
    cp_queue_push(op->dest, op, NULL); /* a queue destroyed meanwhile frees it */
    op = next;
  }
}

/* A user message costs an allocation, which is why it can fail: the queue
 * holds its messages in the ops themselves and never grows. Any thread
 * may post, a single-thread context's included (through its inbox). */
int cport_post(cport_queue *q, uint64_t value, void *ptr) {
  if (!q) return CPORT_EINVAL;
  if (cp_queue_dead(q)) return CPORT_EBADF;
  if (!cp_ctx_on_thread(q->ctx)) {
    cp_op *op = cp_op_alloc_remote(CPORT_OP_NONE, value, ptr);
    if (!op) return CPORT_ENOMEM;
    cp_queue_push_remote(q, op);
    return CPORT_OK;
  }
  cp_op *op = cp_op_alloc_queue(q, CPORT_OP_NONE, value, ptr);
  if (!op) return CPORT_ENOMEM;
  cp_queue_push(q, op, NULL);
  return CPORT_OK;
}

/* Kinds whose op->buf holds the user's pointer, not a data buffer. */
static bool carries_user_ptr(uint8_t kind) {
  return kind == CPORT_OP_NONE || kind == CPORT_OP_TIMER || kind == CPORT_OP_WORK;
}

static void to_message(const cp_op *op, cport_msg *m) {
  /* The queue's own messages (posts, timers, jobs) are about no socket. */
  bool own =
      carries_user_ptr(op->kind) || op->kind == CPORT_OP_RESOLVE || op->kind == CPORT_OP_NAMEINFO;
  bool ptr = carries_user_ptr(op->kind);
  m->tag = (cport_tag)op->tag;
  m->op = (cport_op)op->kind;
  m->socket = own ? 0 : op->socket;
  m->handle = op->handle;
  m->status = op->status;
  m->bytes = op->done;
  m->buf = ptr ? NULL : op->buf;
  m->accepted = own ? 0 : op->accepted;
  m->user = own ? op->user : 0;
  m->user_ptr = ptr ? op->buf : NULL;
  m->meta = own ? NULL : op->meta;
  m->flags = op->msg_flags;
  if (op->kind == CPORT_OP_RECVFROM && op->has_addr)
    m->addr = op->addr;
  else
    memset(&m->addr, 0, sizeof m->addr);
}

/* Moves up to max messages out of q; q->mu held. Their ops go to q's cache. */
static int take(cport_queue *q, cport_msg *msgs, int max) {
  int n = 0;
  while (n < max && q->head) {
    cp_op *op = q->head;
    to_message(op, &msgs[n++]);
    q->head = op->next;
    q->count--;
    cp_op_free_cached(q, op);
  }
  if (!q->head) q->tail = NULL;
  if (n > 0) q->idle_since = 0;
  return n;
}

/* The cache of op records (op.c) is for traffic. A queue that has taken
 * no message for IDLE_TRIM_MS, as its waits see it, gives the cache back
 * to the allocator: its records were allocated at the height of the last
 * burst, and one of them left on top of the heap keeps the allocator
 * from returning all that the burst freed below it (an echo server's RSS
 * after 10,000 connections came and went grew 47 -> 136 MB over four
 * bursts). Nothing of this runs while messages come: take() clears
 * idle_since with a store, and the clock is read only after a wait that
 * brought nothing. */
#define IDLE_TRIM_MS 1000

static bool has_cache(const cport_queue *q) { return q->free_ops[0] || q->free_ops[1]; }

/* A wait on q (q->mu held) found it empty: the cache goes once that has
 * lasted IDLE_TRIM_MS. The records are freed under q->mu, a leaf lock
 * (the allocator takes none of ours). */
static void note_idle(cport_queue *q) {
  if (!has_cache(q)) return;
  uint64_t now = cp_now_ms();
  if (q->idle_since == 0) {
    q->idle_since = now ? now : 1;
    return;
  }
  if (now - q->idle_since < IDLE_TRIM_MS) return;
  q->idle_since = 0;
  for (int i = 0; i < 2; i++) {
    cp_op *op = q->free_ops[i];
    q->free_ops[i] = NULL;
    q->free_op_count[i] = 0;
    while (op) {
      cp_op *next = op->next;
      cp_free(op);
      op = next;
    }
  }
}

/* How long a wait may sleep at once: an endless one wakes after
 * IDLE_TRIM_MS while q holds a cache, so that an idle queue gives it
 * back; once it has, the wait sleeps for good. */
static int idle_cap(const cport_queue *q, int left) {
  return has_cache(q) && (left < 0 || left > IDLE_TRIM_MS) ? IDLE_TRIM_MS : left;
}

/* Stops polling and wakes every waiter, so that one takes over. */
static void stop_polling(cport_ctx *ctx) {
  atomic_store_explicit(&ctx->poller, NULL, memory_order_release);
  if (atomic_load(&ctx->waiters) == 0) return;
  cp_ctx_lock(ctx, &ctx->mu);
  for (cport_queue *q = ctx->queues; q; q = q->next) {
    cp_ctx_lock(q->ctx, &q->mu);
    if (q->waiters > 0) cp_cond_broadcast(&q->cv);
    cp_ctx_unlock(q->ctx, &q->mu);
  }
  cp_ctx_unlock(ctx, &ctx->mu);
}

static int remaining_ms(uint64_t deadline) {
  if (deadline == UINT64_MAX) return -1;
  uint64_t now = cp_now_ms();
  if (now >= deadline) return 0;
  uint64_t left = deadline - now;
  return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

/* With a batch already queued, one cport_wait call in this many polls. */
#define BACKLOG_POLL_EVERY 4

/* Runs one poll on behalf of q, and the timers that are due, which bound
 * its wait; q->mu held on entry and on return. */
static void poll_once(cport_queue *q, int timeout) {
  cport_ctx *ctx = q->ctx;
  cp_ctx_unlock(q->ctx, &q->mu);
  cport_queue *outer = t_polling;
  t_polling = q;
  ctx->be->poll(ctx, cp_timers_timeout(ctx->timers, timeout));
  cp_timers_run(ctx->timers);
  cp_inbox_drain(ctx);
  t_polling = outer;
  stop_polling(ctx);
  cp_ctx_lock(q->ctx, &q->mu);
}

int cport_wait(cport_queue *q, cport_msg *msgs, int max, int timeout) {
  if (!q || !msgs || max <= 0 || timeout < CPORT_NOWAIT) return CPORT_EINVAL;
  cport_ctx *ctx = q->ctx;
  uint64_t deadline = timeout == CPORT_INFINITY ? UINT64_MAX
                      : timeout == CPORT_NOWAIT ? 0
                                                : cp_now_ms() + (uint64_t)timeout;
  bool polled_once = false;
  cp_inbox_drain(ctx);
  cp_ctx_lock(ctx, &q->mu);
  if (q->dead) {
    cp_ctx_unlock(q->ctx, &q->mu);
    return CPORT_EBADF;
  }
  /* Messages already queued must not starve the OS: a program that keeps
   * posting itself work would never see its I/O. One poll that does not
   * wait gives the OS its turn, unless another thread is polling anyway.
   * While the queue holds a whole batch, it gets that turn only every few
   * calls: polling on top of a backlog costs a system call per batch and
   * only lengthens the queue (a burst from 10,000 connections once queued
   * 8,192 messages). */
  if (q->count > 0 && (q->count < (uint32_t)max || ++q->backlog_skips >= BACKLOG_POLL_EVERY)) {
    q->backlog_skips = 0;
    cport_queue *none = NULL;
    if (atomic_compare_exchange_strong(&ctx->poller, &none, q)) poll_once(q, 0);
  }
  for (;;) {
    if (q->count > 0 || q->dead) break; /* dead: destroyed meanwhile by another thread */
    int left = remaining_ms(deadline);
    if (left == 0 && polled_once) break;
    cport_queue *none = NULL;
    if (atomic_compare_exchange_strong(&ctx->poller, &none, q)) {
      poll_once(q, idle_cap(q, left));
      polled_once = true;
      if (q->count == 0 && left != 0) note_idle(q);
      continue;
    }
    /* A single-thread context's poll is further up this thread's stack. */
    if (left == 0 || ctx->single_thread) break;
    /* Another thread polls; it signals q->cv when it delivers to q or
     * when it stops polling. */
    uint64_t until = deadline;
    if (deadline == UINT64_MAX && has_cache(q)) until = cp_now_ms() + IDLE_TRIM_MS;
    q->waiters++;
    atomic_fetch_add(&ctx->waiters, 1);
    cp_cond_wait_until(&q->cv, &q->mu, until);
    atomic_fetch_sub(&ctx->waiters, 1);
    q->waiters--;
    polled_once = true;
    if (q->count == 0) note_idle(q);
  }
  int n = q->dead ? CPORT_EBADF : take(q, msgs, max);
  cp_ctx_unlock(q->ctx, &q->mu);
  return n;
}
