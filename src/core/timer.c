/* Timers: the user's (cport_timer_start) and the deadlines of pending
 * operations (cport_deadline, otp.recv_timeout, otp.send_timeout), in one
 * structure per context whose earliest deadline bounds the poller's wait
 * on every backend.
 *
 * The structure is a 4-ary min-heap of (deadline, slot) pairs over an
 * array of slots. A slot holds what a timer does when it fires; a handle
 * names a slot and its generation, so a stale or forged handle fails the
 * generation check instead of reaching memory it does not own. Start and
 * cancel are O(log n); a 4-ary heap is half as deep as a binary one and
 * its four children share a cache line, which is what start and cancel
 * pay for at a million timers.
 *
 * Locks: timers.mu is taken after a socket's (a deadline armed or removed
 * while its op is posted or delivered) and before a queue's (a firing user
 * timer pushes its message under timers.mu, so that a cancel can never
 * slip a final message in ahead of a MORE one). Deadlines fire with no
 * lock held: they take their socket's lock, which must come first. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#define NS_PER_MS 1000000u
#define ARITY 4u
#define NO_POS UINT32_MAX
#define HANDLE_TAG CP_QUEUE_HANDLE
#define GEN_MASK 0x3fffffffu /* below CP_JOB_HANDLE's bit */
#define FIRE_BATCH 64u

enum { SLOT_FREE = 0, SLOT_USER = 1, SLOT_DEADLINE = 2 };

typedef struct heap_entry {
  uint64_t at; /* deadline, ns on cp_now_ns's clock */
  uint32_t slot;
} heap_entry;

typedef struct timer_slot {
  uint32_t gen;
  uint32_t pos; /* index in the heap, NO_POS when free */
  uint8_t kind;
  uint64_t period; /* ns; 0 = one-shot (user timers) */
  union {
    struct {
      cport_queue *q;
      cp_op *final; /* the message that ends the handle, allocated at start */
    } user;
    struct {
      cport_socket sock;
      cport_handle op;
    } deadline;
  } u;
  uint32_t next_free;
} timer_slot;

struct cp_timers {
  const cport_ctx *ctx; /* its lock is skipped as the context's queues' are */
  cp_mutex mu;
  timer_slot *slots;
  uint32_t nslots, cap_slots, free_head;
  heap_entry *heap;
  uint32_t nheap, cap_heap;
  atomic_uint armed;     /* nheap, readable without mu: no timer, no cost */
  uint64_t poll_horizon; /* the deadline the poller last planned to wake for */
};

/* ---- the heap ------------------------------------------------------------ */

static void heap_set(cp_timers *t, uint32_t i, heap_entry e) {
  t->heap[i] = e;
  t->slots[e.slot].pos = i;
}

static void sift_up(cp_timers *t, uint32_t i) {
  heap_entry e = t->heap[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / ARITY;
    if (t->heap[parent].at <= e.at) break;
    heap_set(t, i, t->heap[parent]);
    i = parent;
  }
  heap_set(t, i, e);
}

static void sift_down(cp_timers *t, uint32_t i) {
  heap_entry e = t->heap[i];
  for (;;) {
    uint32_t first = i * ARITY + 1;
    if (first >= t->nheap) break;
    uint32_t last = first + ARITY < t->nheap ? first + ARITY : t->nheap;
    uint32_t min = first;
    for (uint32_t c = first + 1; c < last; c++)
      if (t->heap[c].at < t->heap[min].at) min = c;
    if (t->heap[min].at >= e.at) break;
    heap_set(t, i, t->heap[min]);
    i = min;
  }
  heap_set(t, i, e);
}

static void heap_remove(cp_timers *t, uint32_t slot) {
  uint32_t i = t->slots[slot].pos;
  t->slots[slot].pos = NO_POS;
  heap_entry last = t->heap[--t->nheap];
  if (i < t->nheap) {
    heap_set(t, i, last);
    if (i > 0 && t->heap[(i - 1) / ARITY].at > last.at)
      sift_up(t, i);
    else
      sift_down(t, i);
  }
  atomic_store_explicit(&t->armed, t->nheap, memory_order_relaxed);
  if (t->nheap == 0) t->poll_horizon = UINT64_MAX;
}

/* ---- slots --------------------------------------------------------------- */

static bool grow(void **array, uint32_t *cap, size_t elem) {
  uint32_t n = *cap ? *cap * 2 : 64;
  if (n <= *cap) return false;
  void *p = cp_realloc(*array, n * elem);
  if (!p) return false;
  *array = p;
  *cap = n;
  return true;
}

/* Room for one more armed timer, so that arming cannot fail half-way. */
static bool reserve(cp_timers *t) {
  if (t->free_head == NO_POS && t->nslots == t->cap_slots &&
      !grow((void **)&t->slots, &t->cap_slots, sizeof *t->slots))
    return false;
  return t->nheap < t->cap_heap || grow((void **)&t->heap, &t->cap_heap, sizeof *t->heap);
}

static uint32_t slot_take(cp_timers *t) {
  uint32_t i = t->free_head;
  if (i != NO_POS) {
    t->free_head = t->slots[i].next_free;
  } else {
    i = t->nslots++;
    t->slots[i].gen = 0;
  }
  t->slots[i].gen = (t->slots[i].gen + 1) & GEN_MASK;
  return i;
}

static void slot_release(cp_timers *t, uint32_t i) {
  t->slots[i].kind = SLOT_FREE;
  t->slots[i].next_free = t->free_head;
  t->free_head = i;
}

static cport_handle handle_of(const cp_timers *t, uint32_t i) {
  return HANDLE_TAG | (uint64_t)t->slots[i].gen << 32 | (uint64_t)(i + 1u);
}

/* The slot a handle names, if it is armed and of that kind; else NO_POS. */
static uint32_t slot_of(const cp_timers *t, cport_handle h, uint8_t kind) {
  uint32_t low = (uint32_t)(h & 0xffffffffu);
  if (!(h & HANDLE_TAG) || low == 0 || low > t->nslots) return NO_POS;
  const timer_slot *sl = &t->slots[low - 1u];
  if (sl->kind != kind || sl->gen != ((uint32_t)(h >> 32) & GEN_MASK)) return NO_POS;
  return low - 1u;
}

/* Arms slot i to fire at; the caller has reserved room. Returns whether
 * the poller must be woken to plan for an earlier deadline. */
static bool arm(cp_timers *t, uint32_t i, uint64_t at) {
  t->heap[t->nheap] = (heap_entry){at, i};
  sift_up(t, t->nheap++);
  atomic_store_explicit(&t->armed, t->nheap, memory_order_relaxed);
  if (at >= t->poll_horizon) return false;
  t->poll_horizon = at;
  return true;
}

static uint64_t deadline_after(uint64_t ms) { return cp_now_ns() + ms * NS_PER_MS; }

/* ---- context ------------------------------------------------------------- */

int cp_timers_create(cp_timers **out, const cport_ctx *ctx) {
  cp_timers *t = cp_calloc(1, sizeof *t);
  if (!t) return CPORT_ENOMEM;
  t->ctx = ctx;
  if (cp_mutex_init(&t->mu) != 0) {
    cp_free(t);
    return CPORT_ENOMEM;
  }
  t->free_head = NO_POS;
  t->poll_horizon = UINT64_MAX;
  *out = t;
  return CPORT_OK;
}

void cp_timers_free(cp_timers *t) {
  if (!t) return;
  for (uint32_t i = 0; i < t->nslots; i++)
    if (t->slots[i].kind == SLOT_USER) cp_op_free_cached(NULL, t->slots[i].u.user.final);
  cp_free(t->slots);
  cp_free(t->heap);
  cp_mutex_destroy(&t->mu);
  cp_free(t);
}

/* A queue that goes away takes its timers with it, without messages. */
void cp_timers_drop_queue(cp_timers *t, cport_queue *q) {
  cp_ctx_lock(t->ctx, &t->mu);
  for (uint32_t i = 0; i < t->nslots; i++) {
    timer_slot *sl = &t->slots[i];
    if (sl->kind != SLOT_USER || sl->u.user.q != q) continue;
    heap_remove(t, i);
    cp_op_free_cached(NULL, sl->u.user.final);
    slot_release(t, i);
  }
  cp_ctx_unlock(t->ctx, &t->mu);
}

/* ---- user timers --------------------------------------------------------- */

int cport_timer_start(cport_queue *q, uint64_t after_ms, uint64_t repeat_ms, uint64_t user,
                      void *user_ptr, cport_handle *handle) {
  if (handle) *handle = 0;
  if (!q || !handle || after_ms > CPORT_TIMER_MAX_MS || repeat_ms > CPORT_TIMER_MAX_MS)
    return CPORT_EINVAL;
  if (cp_queue_dead(q)) return CPORT_EBADF;
  cp_timers *t = q->ctx->timers;
  cp_op *final = cp_op_alloc_queue(q, CPORT_OP_TIMER, user, user_ptr);
  if (!final) return CPORT_ENOMEM;
  cp_ctx_lock(t->ctx, &t->mu);
  if (!reserve(t)) {
    cp_ctx_unlock(t->ctx, &t->mu);
    cp_op_free_cached(NULL, final);
    return CPORT_ENOMEM;
  }
  uint32_t i = slot_take(t);
  timer_slot *sl = &t->slots[i];
  sl->kind = SLOT_USER;
  sl->period = repeat_ms * NS_PER_MS;
  sl->u.user.q = q;
  sl->u.user.final = final;
  final->handle = *handle = handle_of(t, i);
  bool wake = arm(t, i, deadline_after(after_ms));
  cp_ctx_unlock(t->ctx, &t->mu);
  if (wake) q->ctx->be->wake(q->ctx);
  return CPORT_OK;
}

int cport_queue_cancel(cport_queue *q, cport_handle handle) {
  if (!q) return CPORT_EINVAL;
  if (cp_queue_dead(q)) return CPORT_EBADF;
  if ((handle & CP_QUEUE_HANDLE) && (handle & CP_JOB_HANDLE)) return cp_jobs_cancel(q, handle);
  cp_timers *t = q->ctx->timers;
  cp_ctx_lock(t->ctx, &t->mu);
  uint32_t i = slot_of(t, handle, SLOT_USER);
  bool found = i != NO_POS && t->slots[i].u.user.q == q;
  if (found) {
    cp_op *final = t->slots[i].u.user.final;
    heap_remove(t, i);
    slot_release(t, i);
    final->tag = CPORT_TAG_ABORT;
    final->status = CPORT_ECANCELED;
    cp_queue_push(q, final, NULL);
  }
  cp_ctx_unlock(t->ctx, &t->mu);
  return found ? CPORT_OK : CPORT_ENOTFOUND;
}

/* A repeating timer's next deadline: one period on, or one period from
 * now if it is late, so a stall never makes a burst. */
static uint64_t next_period(uint64_t at, uint64_t period, uint64_t now) {
  uint64_t next = at + period;
  return next > now ? next : now + period;
}

/* Fires user timer i (due at at); t->mu held. A tick whose message cannot
 * be allocated is skipped: the timer goes on and the final message, which
 * exists since the start, is never lost. */
static void fire_user(cp_timers *t, uint32_t i, uint64_t at, uint64_t now) {
  timer_slot *sl = &t->slots[i];
  cport_queue *q = sl->u.user.q;
  cp_op *final = sl->u.user.final;
  if (sl->period == 0) {
    heap_remove(t, i);
    slot_release(t, i);
    final->tag = CPORT_TAG_COMPLETION;
    final->status = CPORT_OK;
    cp_queue_push(q, final, NULL);
    return;
  }
  t->heap[sl->pos].at = next_period(at, sl->period, now);
  sift_down(t, sl->pos);
  cp_op *tick = cp_op_alloc_queue(q, CPORT_OP_TIMER, final->accepted, final->buf);
  if (!tick) return;
  tick->handle = final->handle;
  tick->tag = CPORT_TAG_COMPLETION;
  tick->msg_flags = CPORT_MSG_MORE;
  cp_queue_push(q, tick, NULL);
}

/* ---- deadlines ----------------------------------------------------------- */

int cp_deadline_arm(cp_sock *s, cp_op *op, int ms) {
  cp_timers *t = s->ctx->timers;
  cp_ctx_lock(t->ctx, &t->mu);
  uint32_t i = op->deadline ? slot_of(t, op->deadline, SLOT_DEADLINE) : NO_POS;
  if (i != NO_POS) { /* replace: same slot, new time */
    heap_remove(t, i);
  } else if (!reserve(t)) {
    cp_ctx_unlock(t->ctx, &t->mu);
    return CPORT_ENOMEM;
  } else {
    i = slot_take(t);
    t->slots[i].kind = SLOT_DEADLINE;
    t->slots[i].u.deadline.sock = s->id;
    t->slots[i].u.deadline.op = op->handle;
    op->deadline = handle_of(t, i);
  }
  bool wake = arm(t, i, deadline_after((uint64_t)ms));
  cp_ctx_unlock(t->ctx, &t->mu);
  if (wake) s->ctx->be->wake(s->ctx);
  return CPORT_OK;
}

void cp_deadline_disarm(cp_sock *s, cp_op *op) {
  cp_timers *t = s->ctx->timers;
  cp_ctx_lock(t->ctx, &t->mu);
  uint32_t i = slot_of(t, op->deadline, SLOT_DEADLINE);
  if (i != NO_POS) {
    heap_remove(t, i);
    slot_release(t, i);
  }
  cp_ctx_unlock(t->ctx, &t->mu);
  op->deadline = 0;
}

/* A deadline passed: stop its op as cport_cancel would, unless it ended
 * or was cancelled meanwhile (its message is on the way either way). */
static void expire(cport_socket id, cport_handle handle, cport_handle timer) {
  cp_sock *s = cp_sock_lock(id);
  if (!s) return;
  cp_op *op = cp_op_find(s, handle);
  if (op && op->deadline == timer && !op->cancelled) {
    op->deadline = 0;
    op->timed_out = 1;
    op->cancelled = 1;
    cp_stop(s, op);
  }
  cp_sock_unlock(s);
}

/* ---- the poller's side --------------------------------------------------- */

int cp_timers_timeout(cp_timers *t, int timeout_ms) {
  if (atomic_load_explicit(&t->armed, memory_order_relaxed) == 0) return timeout_ms;
  cp_ctx_lock(t->ctx, &t->mu);
  uint64_t at = t->nheap ? t->heap[0].at : UINT64_MAX;
  t->poll_horizon = at;
  cp_ctx_unlock(t->ctx, &t->mu);
  if (at == UINT64_MAX) return timeout_ms;
  uint64_t now = cp_now_ns();
  if (at <= now) return 0;
  /* Rounded up: a poller that wakes a little early would only wait again. */
  uint64_t ms = (at - now + NS_PER_MS - 1) / NS_PER_MS;
  if (timeout_ms >= 0 && (uint64_t)timeout_ms <= ms) return timeout_ms;
  return ms > 0x7fffffff ? 0x7fffffff : (int)ms;
}

typedef struct expired {
  cport_socket sock;
  cport_handle op, timer;
} expired;

/* Fires every timer that is due; at most a batch of deadlines per pass, so
 * the socket locks they need are taken with timers.mu released. */
void cp_timers_run(cp_timers *t) {
  if (atomic_load_explicit(&t->armed, memory_order_relaxed) == 0) return;
  uint64_t now = cp_now_ns();
  expired batch[FIRE_BATCH];
  for (;;) {
    unsigned n = 0;
    cp_ctx_lock(t->ctx, &t->mu);
    while (n < FIRE_BATCH && t->nheap > 0 && t->heap[0].at <= now) {
      uint32_t i = t->heap[0].slot;
      timer_slot *sl = &t->slots[i];
      if (sl->kind == SLOT_USER) {
        fire_user(t, i, t->heap[0].at, now);
        continue;
      }
      batch[n++] = (expired){sl->u.deadline.sock, sl->u.deadline.op, handle_of(t, i)};
      heap_remove(t, i);
      slot_release(t, i);
    }
    cp_ctx_unlock(t->ctx, &t->mu);
    for (unsigned k = 0; k < n; k++) expire(batch[k].sock, batch[k].op, batch[k].timer);
    if (n < FIRE_BATCH) return;
  }
}
