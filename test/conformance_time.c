/*
 * Conformance: time. Timers (cport_timer_start, cport_queue_cancel),
 * deadlines of pending operations (cport_deadline, otp.recv_timeout,
 * otp.send_timeout), rule 16 (an op ended by cancel, deadline or close
 * before it moved a byte ends at once, whatever is pending before it) and
 * cport_close_async.
 *
 * Times are only ever lower bounds ("never early"), measured on the
 * library's own clock (sup_now_us), with no slack; no test asserts that
 * something happens within a wall-clock bound, only counts and statuses.
 */
#include "conformance.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define BIG_SEND ((size_t)32 << 20) /* more than loopback buffers hold */
#define CHUNK 65536

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* at - start must be at least ms: the event did not come early. */
static void check_not_early(uint64_t start_us, uint64_t at_us, uint64_t ms, const char *what) {
  SUP_ASSERT(at_us - start_us >= ms * 1000u, "%s came after %llu us, before its %llu ms", what,
             (unsigned long long)(at_us - start_us), (unsigned long long)ms);
}

/* A timer message of handle h: tag, status, CPORT_MSG_MORE or not, the
 * user values, socket 0 and no meta. */
static void check_timer_msg(const cport_msg *m, cport_handle h, int tag, int status, int more,
                            uint64_t user, void *user_ptr) {
  char b[256];
  SUP_ASSERT((int)m->tag == tag && m->status == status, "timer message %s, expected %s %s",
             sup_msg_str(m, b, sizeof b), sup_tag_name(tag), sup_rc_name(status));
  SUP_EQ(m->op, CPORT_OP_TIMER);
  SUP_EQ(m->socket, 0);
  SUP_EQ(m->handle, h);
  SUP_ASSERT(((m->flags & CPORT_MSG_MORE) != 0) == (more != 0), "MORE flag: %s",
             sup_msg_str(m, b, sizeof b));
  SUP_EQ(m->user, user);
  SUP_ASSERT(m->user_ptr == user_ptr, "timer message user_ptr %p, expected %p", m->user_ptr,
             user_ptr);
  SUP_ASSERT(m->meta == NULL, "timer message with meta %p", m->meta);
}

/* Read from s until nothing arrives for quiet_ms; check the pattern from
 * offset; returns the byte count. */
static size_t drain(cport_socket s, uint64_t offset, uint32_t seed, int quiet_ms) {
  char *in = (char *)sup_alloc(CHUNK);
  size_t total = 0;
  cport_handle h = 0;
  for (;;) {
    size_t got = 0;
    int rc = cport_recv(s, in, CHUNK, 0, quiet_ms, &got, &h);
    if (rc == CPORT_ETIMEDOUT && got == 0) return total;
    SUP_RC(rc, CPORT_OK);
    SUP_ASSERT(got > 0, "EOF while draining");
    sup_check_pattern(in, got, offset + total, seed, "drained data");
    total += got;
  }
}

/* Leaves a send of s pending against a peer that does not read; buf holds
 * BIG_SEND bytes. Completion mode: one big send (returns 0, the bytes
 * move later). Select mode: sends of CHUNK until one returns CPORT_SELECT
 * (returns the bytes that went). *h gets the pending handle. */
static size_t pend_send(cport_socket s, const char *buf, cport_handle *h) {
  size_t n = 0, sent = 0;
  int rc = CPORT_OK;
  if (!sup_select_mode()) {
    SUP_RC(cport_send(s, buf, BIG_SEND, 0, CPORT_NOWAIT, &n, h), CPORT_COMPLETION);
    return 0;
  }
  while (sent + CHUNK <= BIG_SEND) {
    n = 0;
    rc = cport_send(s, buf + sent, CHUNK, 0, CPORT_NOWAIT, &n, h);
    sent += n;
    if (rc == CPORT_SELECT) break;
    SUP_RC(rc, CPORT_OK);
  }
  SUP_RC(rc, CPORT_SELECT);
  return sent;
}

/* A listener whose backlog (1) is full of connections nobody accepts, so
 * that a connect to it stays pending (conformance_connect.c,
 * test_connect_timeout, explains why on every platform). */
static cport_socket full_listener(sup_env *e, cport_addr *addr) {
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 1, 0, addr);
  cport_handle h = 0;
  int filled = 0, rc = CPORT_OK;
  for (int i = 0; i < 16; i++) {
    cport_socket c = sup_open(e->q, CPORT_AF_INET);
    rc = cport_connect(c, addr, 500, &h);
    if (rc == CPORT_ETIMEDOUT) break;
    SUP_RC(rc, CPORT_OK);
    filled++;
  }
  SUP_RC(rc, CPORT_ETIMEDOUT);
  SUP_ASSERT(filled >= 1, "the backlog took %d connections", filled);
  return l;
}

static void set_int(cport_socket s, cport_option opt, int v, int want) {
  cport_optval o;
  memset(&o, 0, sizeof o);
  o.type = CPORT_VAL_INT;
  o.v.i = v;
  SUP_RC(cport_setopt(s, CPORT_LEVEL_OTP, opt, &o), want);
}

static int get_int(cport_socket s, cport_option opt) {
  cport_optval o;
  memset(&o, 0, sizeof o);
  SUP_RC(cport_getopt(s, CPORT_LEVEL_OTP, opt, &o), CPORT_OK);
  SUP_EQ(o.type, CPORT_VAL_INT);
  return o.v.i;
}

/* The abort of a pending op stopped by its deadline. */
static cport_msg expect_timedout(sup_env *e, cport_socket s, cport_handle h, int op) {
  char b[256];
  cport_msg m = expect_msg_for(e->q, s, h, SUP_TIMEOUT);
  SUP_ASSERT(m.tag == CPORT_TAG_ABORT && m.status == CPORT_ETIMEDOUT,
             "expected an abort ETIMEDOUT, got %s", sup_msg_str(&m, b, sizeof b));
  SUP_EQ(m.op, op);
  SUP_ASSERT(!(m.flags & CPORT_MSG_MORE), "abort flagged MORE");
  return m;
}

/* ------------------------------------------------------------------------ */
/* Timers                                                                   */
/* ------------------------------------------------------------------------ */

static void test_timer_one_shot(void **state) {
  sup_env *e = (sup_env *)*state;
  int mark = 0;
  cport_handle h = 0;
  uint64_t t0 = sup_now_us();
  SUP_RC(cport_timer_start(e->q, 50, 0, 0x1234abcdull, &mark, &h), CPORT_OK);
  SUP_ASSERT(h != 0, "timer handle 0");
  cport_msg m = expect_msg_for(e->q, 0, h, SUP_TIMEOUT);
  check_not_early(t0, sup_now_us(), 50, "a 50 ms timer");
  check_timer_msg(&m, h, CPORT_TAG_COMPLETION, CPORT_OK, 0, 0x1234abcdull, &mark);
  SUP_EQ(m.bytes, 0);
  /* Once: nothing more, and it has ended. */
  expect_no_msg(e->q, SUP_QUIET);
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_ENOTFOUND);
}

static void test_timer_zero_fires_on_next_wait(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_handle h = 0, hr = 0;
  cport_msg m;
  /* Already due: the very next wait, even a nowait one, delivers it. */
  SUP_RC(cport_timer_start(e->q, 0, 0, 7, NULL, &h), CPORT_OK);
  SUP_EQ(sup_wait_msg(e->q, CPORT_NOWAIT, &m), 1);
  check_timer_msg(&m, h, CPORT_TAG_COMPLETION, CPORT_OK, 0, 7, NULL);
  /* The first tick of a repeating timer with no delay, too. */
  SUP_RC(cport_timer_start(e->q, 0, 100000, 8, e, &hr), CPORT_OK);
  SUP_EQ(sup_wait_msg(e->q, CPORT_NOWAIT, &m), 1);
  check_timer_msg(&m, hr, CPORT_TAG_COMPLETION, CPORT_OK, 1, 8, e);
  SUP_RC(cport_queue_cancel(e->q, hr), CPORT_OK);
  m = expect_msg_for(e->q, 0, hr, SUP_TIMEOUT);
  check_timer_msg(&m, hr, CPORT_TAG_ABORT, CPORT_ECANCELED, 0, 8, e);
  expect_no_msg(e->q, 50);
}

static void test_timer_args(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_handle h = 0;
  cport_msg m;
  SUP_RC(cport_timer_start(NULL, 10, 0, 0, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_timer_start(e->q, 10, 0, 0, NULL, NULL), CPORT_EINVAL);
  SUP_RC(cport_timer_start(e->q, CPORT_TIMER_MAX_MS + 1, 0, 0, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_timer_start(e->q, 10, CPORT_TIMER_MAX_MS + 1, 0, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_timer_start(e->q, UINT64_MAX, 0, 0, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_timer_start(e->q, 0, UINT64_MAX, 0, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_queue_cancel(NULL, 1), CPORT_EINVAL);
  /* None of them started a timer. */
  expect_no_msg(e->q, SUP_QUIET);
  /* The largest values are taken. */
  SUP_RC(cport_timer_start(e->q, CPORT_TIMER_MAX_MS, CPORT_TIMER_MAX_MS, 3, NULL, &h), CPORT_OK);
  expect_no_msg(e->q, 50);
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_OK);
  m = expect_msg_for(e->q, 0, h, SUP_TIMEOUT);
  check_timer_msg(&m, h, CPORT_TAG_ABORT, CPORT_ECANCELED, 0, 3, NULL);
  expect_no_msg(e->q, 50);
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static void test_timer_many(void **state) {
  sup_env *e = (sup_env *)*state;
  const int n = sup_scale(10000, 1000);
  cport_handle *h = (cport_handle *)sup_alloc((size_t)n * sizeof *h);
  cport_handle *sorted = (cport_handle *)sup_alloc((size_t)n * sizeof *sorted);
  uint64_t *start = (uint64_t *)sup_alloc((size_t)n * sizeof *start);
  uint64_t *after = (uint64_t *)sup_alloc((size_t)n * sizeof *after);
  int *seen = (int *)sup_alloc((size_t)n * sizeof *seen);

  for (int i = 0; i < n; i++) {
    after[i] = sup_rand() % 301;
    start[i] = sup_now_us();
    SUP_RC(cport_timer_start(e->q, after[i], 0, (uint64_t)i, &seen[i], &h[i]), CPORT_OK);
    SUP_ASSERT(h[i] != 0, "timer %d: handle 0", i);
  }
  /* Every handle is its own. */
  memcpy(sorted, h, (size_t)n * sizeof *h);
  qsort(sorted, (size_t)n, sizeof *sorted, cmp_u64);
  for (int i = 1; i < n; i++)
    SUP_ASSERT(sorted[i] != sorted[i - 1], "two timers share handle %llu",
               (unsigned long long)sorted[i]);
  /* Each fires once (the helpers check that no handle gets two), never
   * before its time. */
  for (int got = 0; got < n; got++) {
    cport_msg m = expect_msg(e->q, SUP_TIMEOUT);
    uint64_t now = sup_now_us();
    char b[256];
    SUP_ASSERT(m.op == CPORT_OP_TIMER && m.user < (uint64_t)n, "unexpected message %s",
               sup_msg_str(&m, b, sizeof b));
    int k = (int)m.user;
    check_timer_msg(&m, h[k], CPORT_TAG_COMPLETION, CPORT_OK, 0, (uint64_t)k, &seen[k]);
    check_not_early(start[k], now, after[k], "one of many timers");
    seen[k]++;
  }
  for (int i = 0; i < n; i++) SUP_EQ(seen[i], 1);
  expect_no_msg(e->q, SUP_QUIET);
  for (int i = 0; i < n; i += 97) SUP_RC(cport_queue_cancel(e->q, h[i]), CPORT_ENOTFOUND);
}

static void test_timer_repeat_then_cancel(void **state) {
  sup_env *e = (sup_env *)*state;
  const uint64_t after = 20, period = 20;
  const int ticks = 5;
  int mark = 0, more = 0;
  cport_handle h = 0;
  uint64_t t0 = sup_now_us();
  cport_msg m;

  SUP_RC(cport_timer_start(e->q, after, period, 99, &mark, &h), CPORT_OK);
  /* Tick k is due no earlier than after + (k - 1) periods. */
  for (int k = 1; k <= ticks; k++) {
    m = expect_msg_for(e->q, 0, h, SUP_TIMEOUT);
    check_not_early(t0, sup_now_us(), after + (uint64_t)(k - 1) * period, "a repeating tick");
    check_timer_msg(&m, h, CPORT_TAG_COMPLETION, CPORT_OK, 1, 99, &mark);
  }
  /* It never ends by itself; cancel ends it with one abort, after any
   * ticks already queued. */
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_OK);
  m = expect_final_for(e->q, 0, h, SUP_TIMEOUT, &more);
  check_timer_msg(&m, h, CPORT_TAG_ABORT, CPORT_ECANCELED, 0, 99, &mark);
  expect_no_msg_for(e->q, 0, h, SUP_QUIET);
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_ENOTFOUND);
  expect_no_msg(e->q, 50);
}

static void test_timer_late_fires_once(void **state) {
  sup_env *e = (sup_env *)*state;
  const uint64_t period = 10;
  cport_handle h = 0;
  cport_msg batch[64], m;
  int n, total;
  uint64_t woke, end;
  char b[256];

  SUP_RC(cport_timer_start(e->q, period, period, 5, NULL, &h), CPORT_OK);
  /* Nobody waits on the context for 20 periods. */
  sup_sleep_ms(200);
  /* One poll: the late timer fires once, not once per missed period. */
  woke = sup_now_us();
  n = cport_wait(e->q, batch, 64, 0);
  SUP_ASSERT(n == 1, "a timer late by 20 periods delivered %d messages at once", n);
  SUP_ASSERT(batch[0].handle == h && (batch[0].flags & CPORT_MSG_MORE), "%s",
             sup_msg_str(&batch[0], b, sizeof b));
  check_timer_msg(&batch[0], h, CPORT_TAG_COMPLETION, CPORT_OK, 1, 5, NULL);
  /* And it keeps its period from then: by any moment, no more ticks than
   * whole periods since it woke (plus that one). */
  total = 1;
  for (;;) {
    uint64_t now = sup_now_us();
    if (now - woke >= 100000u) break;
    if (sup_wait_msg(e->q, 10, &m)) {
      check_timer_msg(&m, h, CPORT_TAG_COMPLETION, CPORT_OK, 1, 5, NULL);
      total++;
    }
  }
  end = sup_now_us();
  SUP_ASSERT((uint64_t)total <= 1u + (end - woke) / (period * 1000u),
             "%d ticks in %llu us after a late tick: a burst", total,
             (unsigned long long)(end - woke));
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_OK);
  m = expect_final_for(e->q, 0, h, SUP_TIMEOUT, NULL);
  check_timer_msg(&m, h, CPORT_TAG_ABORT, CPORT_ECANCELED, 0, 5, NULL);
}

static void test_timer_cancel_before_fire(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_handle h = 0, hr = 0;
  int mark = 0;
  cport_msg m;

  SUP_RC(cport_timer_start(e->q, 1000, 0, 11, &mark, &h), CPORT_OK);
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_OK);
  m = expect_msg_for(e->q, 0, h, SUP_TIMEOUT);
  check_timer_msg(&m, h, CPORT_TAG_ABORT, CPORT_ECANCELED, 0, 11, &mark);
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_ENOTFOUND);
  /* A repeating timer cancelled before its first tick: just the abort. */
  SUP_RC(cport_timer_start(e->q, 1000, 10, 12, &mark, &hr), CPORT_OK);
  SUP_RC(cport_queue_cancel(e->q, hr), CPORT_OK);
  m = expect_msg_for(e->q, 0, hr, SUP_TIMEOUT);
  check_timer_msg(&m, hr, CPORT_TAG_ABORT, CPORT_ECANCELED, 0, 12, &mark);
  /* Nothing else, past the times they were set for either. */
  expect_no_msg(e->q, 1000 + SUP_QUIET);
}

static void test_timer_cancel_after_fire(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_queue *idle = NULL; /* waiting on it only drives the poller */
  cport_handle h = 0;
  cport_msg m;

  SUP_RC(cport_queue_create(e->ctx, &idle), CPORT_OK);
  /* Fired into the queue, not yet taken: it has ended. */
  SUP_RC(cport_timer_start(e->q, 0, 0, 21, NULL, &h), CPORT_OK);
  SUP_EQ(cport_wait(idle, &m, 1, CPORT_NOWAIT), 0);
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_ENOTFOUND);
  m = expect_msg_for(e->q, 0, h, SUP_TIMEOUT);
  check_timer_msg(&m, h, CPORT_TAG_COMPLETION, CPORT_OK, 0, 21, NULL);
  /* Taken. */
  SUP_RC(cport_timer_start(e->q, 0, 0, 22, NULL, &h), CPORT_OK);
  m = expect_msg_for(e->q, 0, h, SUP_TIMEOUT);
  check_timer_msg(&m, h, CPORT_TAG_COMPLETION, CPORT_OK, 0, 22, NULL);
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_ENOTFOUND);
  expect_no_msg(e->q, SUP_QUIET);
  SUP_RC(cport_queue_destroy(idle), CPORT_OK);
}

static void test_timer_cancel_race(void **state) {
  sup_env *e = (sup_env *)*state;
  const int iters = sup_scale(3000, 300);
  cport_queue *idle = NULL;
  int fired = 0, cancelled = 0;

  SUP_RC(cport_queue_create(e->ctx, &idle), CPORT_OK);
  for (int it = 0; it < iters; it++) {
    const int repeating = it % 5 == 4;
    cport_handle h = 0;
    cport_msg m;
    int cr, more = 0;
    SUP_RC(cport_timer_start(e->q, (uint64_t)(it % 3), repeating ? 1 : 0, (uint64_t)it, NULL, &h),
           CPORT_OK);
    /* Cancel at varied moments around the firing. */
    switch (it % 4) {
    case 1: SUP_EQ(cport_wait(idle, &m, 1, CPORT_NOWAIT), 0); break;
    case 2: SUP_EQ(cport_wait(idle, &m, 1, 1), 0); break;
    case 3:
      sup_sleep_ms(1);
      SUP_EQ(cport_wait(idle, &m, 1, CPORT_NOWAIT), 0);
      break;
    default: break;
    }
    cr = cport_queue_cancel(e->q, h);
    if (repeating)
      SUP_RC(cr, CPORT_OK); /* it never ends by itself */
    else
      SUP_RC2(cr, CPORT_OK, CPORT_ENOTFOUND);
    /* Exactly one final message, as cancel's answer says. */
    m = expect_final_for(e->q, 0, h, SUP_TIMEOUT, &more);
    if (cr == CPORT_OK) {
      check_timer_msg(&m, h, CPORT_TAG_ABORT, CPORT_ECANCELED, 0, (uint64_t)it, NULL);
      cancelled++;
    } else {
      check_timer_msg(&m, h, CPORT_TAG_COMPLETION, CPORT_OK, 0, (uint64_t)it, NULL);
      fired++;
    }
    if (!repeating) SUP_EQ(more, 0);
  }
  expect_no_msg(e->q, SUP_QUIET);
  print_message("timer cancel race: %d fired, %d cancelled\n", fired, cancelled);
  SUP_RC(cport_queue_destroy(idle), CPORT_OK);
}

static void test_timer_cancel_foreign_and_forged(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_queue *q2 = NULL;
  cport_handle h = 0, h2 = 0, hrecv = 0;
  cport_msg m;
  sup_pair p;
  char in[16];
  size_t n = 0;

  SUP_RC(cport_queue_create(e->ctx, &q2), CPORT_OK);
  SUP_RC(cport_timer_start(e->q, 100000, 0, 31, NULL, &h), CPORT_OK);
  SUP_RC(cport_timer_start(q2, 100000, 0, 32, NULL, &h2), CPORT_OK);
  /* Another queue's timer is not this queue's to cancel. */
  SUP_RC(cport_queue_cancel(e->q, h2), CPORT_ENOTFOUND);
  SUP_RC(cport_queue_cancel(q2, h), CPORT_ENOTFOUND);
  /* Forged values, and a socket operation's handle. */
  SUP_RC(cport_queue_cancel(e->q, 0), CPORT_ENOTFOUND);
  SUP_RC(cport_queue_cancel(e->q, h + 1), CPORT_ENOTFOUND);
  SUP_RC(cport_queue_cancel(e->q, h - 1), CPORT_ENOTFOUND);
  SUP_RC(cport_queue_cancel(e->q, h ^ ((uint64_t)1 << 32)), CPORT_ENOTFOUND);
  SUP_RC(cport_queue_cancel(e->q, h ^ ((uint64_t)1 << 63)), CPORT_ENOTFOUND);
  SUP_RC(cport_queue_cancel(e->q, UINT64_MAX), CPORT_ENOTFOUND);
  for (int i = 0; i < 64; i++) {
    cport_handle bogus = sup_rand();
    if (bogus == h || bogus == h2) continue;
    SUP_RC(cport_queue_cancel(e->q, bogus), CPORT_ENOTFOUND);
  }
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &hrecv), sup_pending_rc());
  if (hrecv != h) SUP_RC(cport_queue_cancel(e->q, hrecv), CPORT_ENOTFOUND);
  /* None of it disturbed the real ones. */
  expect_no_msg(e->q, 50);
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_OK);
  m = expect_msg_for(e->q, 0, h, SUP_TIMEOUT);
  check_timer_msg(&m, h, CPORT_TAG_ABORT, CPORT_ECANCELED, 0, 31, NULL);
  SUP_RC(cport_queue_cancel(q2, h2), CPORT_OK);
  m = expect_msg_for(q2, 0, h2, SUP_TIMEOUT);
  check_timer_msg(&m, h2, CPORT_TAG_ABORT, CPORT_ECANCELED, 0, 32, NULL);
  SUP_RC(cport_cancel(p.server, hrecv), CPORT_OK);
  if (sup_select_mode()) {
    sup_mark_ended(p.server, hrecv);
  } else {
    m = expect_msg_for(e->q, p.server, hrecv, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
  }
  expect_no_msg(e->q, 50);
  expect_no_msg(q2, 50);
  SUP_RC(cport_queue_destroy(q2), CPORT_OK);
}

static void test_timer_queue_destroy_armed(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_queue *q2 = NULL;
  cport_handle h = 0;

  /* Armed timers of every kind, and ticks already queued, go with their
   * queue: no message anywhere, no use of the freed queue (ASan). */
  SUP_RC(cport_queue_create(e->ctx, &q2), CPORT_OK);
  for (int i = 0; i < 100; i++) {
    uint64_t after = i % 4 == 0 ? 0 : i % 4 == 1 ? 20 : 100000;
    uint64_t repeat = i % 3 == 0 ? 5 : 0;
    SUP_RC(cport_timer_start(q2, after, repeat, (uint64_t)i, NULL, &h), CPORT_OK);
  }
  sup_settle(e->q, 30); /* the due ones fire into q2 */
  SUP_RC(cport_queue_destroy(q2), CPORT_OK);
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_ENOTFOUND);
  sup_settle(e->q, 100); /* when the dropped ones would have fired */
  expect_no_msg(e->q, 50);
  /* The context's teardown finds armed and fired timers of e->q. */
  for (int i = 0; i < 20; i++)
    SUP_RC(cport_timer_start(e->q, i % 2 ? 0 : 100000, i % 3 == 0 ? 5 : 0, (uint64_t)i, NULL, &h),
           CPORT_OK);
  sup_settle(e->q, 20);
}

/* ------------------------------------------------------------------------ */
/* Deadlines                                                                */
/* ------------------------------------------------------------------------ */

static void test_deadline_pending_recv(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[64], out[16];
  size_t n = 0;
  cport_handle h = 0;
  uint64_t t0;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  t0 = sup_now_us();
  SUP_RC(cport_deadline(p.server, h, 100), CPORT_OK);
  /* Select handles too get the abort (unlike a cancelled one). */
  m = expect_timedout(e, p.server, h, CPORT_OP_RECV);
  check_not_early(t0, sup_now_us(), 100, "a recv's deadline");
  SUP_EQ(m.bytes, 0);
  if (!sup_select_mode()) SUP_ASSERT(m.buf == in, "abort buffer");
  SUP_RC(cport_deadline(p.server, h, 100), CPORT_ENOTFOUND);
  SUP_RC(cport_cancel(p.server, h), CPORT_ENOTFOUND);
  /* The socket goes on: data sent afterwards arrives whole. */
  sup_pattern(out, sizeof out, 0, 120);
  sup_send_all(e->q, p.client, out, sizeof out);
  sup_recv_exact(e->q, p.server, in, sizeof out);
  sup_check_pattern(in, sizeof out, 0, 120, "data after a timed-out recv");
  expect_no_msg(e->q, 50);
}

static void test_deadline_waitall_partial(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char *in = (char *)sup_alloc(100), out[40];
  size_t n = 0;
  cport_handle h = 0;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_recv(p.server, in, 100, CPORT_WAITALL, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  if (sup_select_mode()) {
    /* A select wait carries no data: it times out with nothing. */
    SUP_RC(cport_deadline(p.server, h, 100), CPORT_OK);
    m = expect_timedout(e, p.server, h, CPORT_OP_RECV);
    SUP_EQ(m.bytes, 0);
    expect_no_msg(e->q, 50);
    return;
  }
  /* 30 of 100 bytes come; the deadline ends the recv with them. */
  sup_pattern(out, sizeof out, 0, 121);
  sup_send_all(e->q, p.client, out, 30);
  sup_settle(e->q, 100);
  SUP_RC(cport_deadline(p.server, h, 100), CPORT_OK);
  m = expect_timedout(e, p.server, h, CPORT_OP_RECV);
  SUP_ASSERT(m.buf == in, "abort buffer");
  SUP_EQ(m.bytes, 30);
  sup_check_pattern(in, 30, 0, 121, "bytes of a timed-out waitall recv");
  /* Nothing was lost or kept back: the stream goes on at byte 30. */
  sup_send_all(e->q, p.client, out + 30, 10);
  sup_recv_exact(e->q, p.server, in, 10);
  sup_check_pattern(in, 10, 30, 121, "data after a timed-out waitall recv");
  expect_no_msg(e->q, 50);
}

static void test_deadline_pending_send(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char *big = (char *)sup_alloc(BIG_SEND);
  cport_handle h = 0;
  size_t sent;
  uint64_t t0;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  sup_pattern(big, BIG_SEND, 0, 122);
  sent = pend_send(p.client, big, &h);
  sup_settle(e->q, 50); /* completion mode: let some bytes go */
  t0 = sup_now_us();
  SUP_RC(cport_deadline(p.client, h, 200), CPORT_OK);
  m = expect_timedout(e, p.client, h, CPORT_OP_SEND);
  check_not_early(t0, sup_now_us(), 200, "a send's deadline");
  if (sup_select_mode()) {
    SUP_EQ(m.bytes, 0); /* a select wait moved nothing */
  } else {
    SUP_ASSERT(m.buf == big, "abort buffer");
    SUP_ASSERT(m.bytes < BIG_SEND, "a timed-out send reports all %zu bytes", m.bytes);
    sent = m.bytes;
  }
  /* The peer gets exactly the bytes reported, none lost or doubled. */
  SUP_EQ(drain(p.server, 0, 122, 300), sent);
  expect_no_msg(e->q, 50);
}

static void test_deadline_pending_accept(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr addr;
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &addr), acc = 0, c, s;
  cport_handle h = 0;
  uint64_t t0;
  char buf[8];

  SUP_RC(cport_accept(l, CPORT_NOWAIT, &acc, &h), sup_pending_rc());
  t0 = sup_now_us();
  SUP_RC(cport_deadline(l, h, 100), CPORT_OK);
  expect_timedout(e, l, h, CPORT_OP_ACCEPT);
  check_not_early(t0, sup_now_us(), 100, "an accept's deadline");
  /* The listener stays usable. */
  sup_connect_pair(e->q, l, &addr, 0, &c, &s);
  sup_send_all(e->q, c, "deadline", 8);
  sup_recv_exact(e->q, s, buf, 8);
  SUP_ASSERT(memcmp(buf, "deadline", 8) == 0, "data");
  expect_no_msg(e->q, 50);
}

static void test_deadline_pending_connect(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr addr;
  cport_socket l = full_listener(e, &addr), c = sup_open(e->q, CPORT_AF_INET);
  cport_handle h = 0;
  uint64_t t0;

  SUP_RC(cport_connect(c, &addr, CPORT_NOWAIT, &h), sup_pending_rc());
  t0 = sup_now_us();
  SUP_RC(cport_deadline(c, h, 150), CPORT_OK);
  expect_timedout(e, c, h, CPORT_OP_CONNECT);
  check_not_early(t0, sup_now_us(), 150, "a connect's deadline");
  SUP_RC(cport_close(c), CPORT_OK);
  SUP_RC(cport_close(l), CPORT_OK);
  expect_no_msg(e->q, 50);
}

static void test_deadline_completion_wins(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[64], out[16];
  size_t n = 0;
  cport_handle h = 0;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  sup_pattern(out, sizeof out, 0, 123);
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  SUP_RC(cport_deadline(p.server, h, 500), CPORT_OK);
  sup_send_all(e->q, p.client, out, sizeof out);
  m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
  SUP_EQ(m.tag, sup_select_mode() ? CPORT_TAG_SELECT : CPORT_TAG_COMPLETION);
  SUP_RC(m.status, CPORT_OK);
  SUP_RC(cport_deadline(p.server, h, 500), CPORT_ENOTFOUND);
  /* The deadline went with the op: past it, nothing (a second message for
   * the handle would fail the helpers' rule 2 check). */
  expect_no_msg(e->q, 500 + SUP_QUIET);
  n = sup_select_mode() ? 0 : m.bytes;
  if (n < sizeof out) sup_recv_exact(e->q, p.server, in + n, sizeof out - n);
  sup_check_pattern(in, sizeof out, 0, 123, "data that beat the deadline");
}

static void test_deadline_replace_and_remove(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[64], out[16];
  size_t n = 0;
  cport_handle h = 0;
  uint64_t t0;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  /* CPORT_INFINITY removes it; removing none is fine too. */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  SUP_RC(cport_deadline(p.server, h, 50), CPORT_OK);
  SUP_RC(cport_deadline(p.server, h, CPORT_INFINITY), CPORT_OK);
  SUP_RC(cport_deadline(p.server, h, CPORT_INFINITY), CPORT_OK);
  expect_no_msg_for(e->q, p.server, h, 50 + SUP_QUIET);
  sup_pattern(out, sizeof out, 0, 124);
  sup_send_all(e->q, p.client, out, sizeof out);
  m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
  SUP_EQ(m.tag, sup_select_mode() ? CPORT_TAG_SELECT : CPORT_TAG_COMPLETION);
  SUP_RC(m.status, CPORT_OK);
  n = sup_select_mode() ? 0 : m.bytes;
  if (n < sizeof out) sup_recv_exact(e->q, p.server, in + n, sizeof out - n);
  sup_check_pattern(in, sizeof out, 0, 124, "data after the deadline was removed");

  /* A later deadline replaces an earlier one: not before the new time. */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  SUP_RC(cport_deadline(p.server, h, 50), CPORT_OK);
  t0 = sup_now_us();
  SUP_RC(cport_deadline(p.server, h, 300), CPORT_OK);
  m = expect_timedout(e, p.server, h, CPORT_OP_RECV);
  check_not_early(t0, sup_now_us(), 300, "a replaced deadline");
  SUP_EQ(m.bytes, 0);

  /* An earlier one replaces a later one. */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  SUP_RC(cport_deadline(p.server, h, 600000), CPORT_OK);
  t0 = sup_now_us();
  SUP_RC(cport_deadline(p.server, h, 100), CPORT_OK);
  expect_timedout(e, p.server, h, CPORT_OP_RECV);
  check_not_early(t0, sup_now_us(), 100, "a shortened deadline");
  expect_no_msg(e->q, 50);
}

static void test_deadline_errors(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[64];
  size_t n = 0;
  cport_handle h = 0, ht = 0;
  cport_socket dead;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  /* An ended handle. */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  sup_send_all(e->q, p.client, "x", 1);
  m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
  SUP_RC(m.status, CPORT_OK);
  SUP_RC(cport_deadline(p.server, h, 100), CPORT_ENOTFOUND);
  SUP_RC(cport_deadline(p.server, h, CPORT_INFINITY), CPORT_ENOTFOUND);
  if (sup_select_mode()) sup_recv_exact(e->q, p.server, in, 1);
  /* Handles that were never this socket's: bogus, a timer's. */
  SUP_RC(cport_deadline(p.server, 0x7766554433221100ull, 100), CPORT_ENOTFOUND);
  SUP_RC(cport_timer_start(e->q, 100000, 0, 0, NULL, &ht), CPORT_OK);
  SUP_RC(cport_deadline(p.server, ht, 100), CPORT_ENOTFOUND);
  SUP_RC(cport_queue_cancel(e->q, ht), CPORT_OK);
  m = expect_msg_for(e->q, 0, ht, SUP_TIMEOUT);
  SUP_EQ(m.tag, CPORT_TAG_ABORT);
  /* Below CPORT_INFINITY: EINVAL, and the pending op is untouched. */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  SUP_RC(cport_deadline(p.server, h, CPORT_NOWAIT), CPORT_EINVAL);
  SUP_RC(cport_deadline(p.server, h, -100), CPORT_EINVAL);
  SUP_RC(cport_deadline(p.server, h, INT_MIN), CPORT_EINVAL);
  expect_no_msg(e->q, SUP_QUIET);
  SUP_RC(cport_cancel(p.server, h), CPORT_OK);
  if (sup_select_mode()) {
    sup_mark_ended(p.server, h);
  } else {
    m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_RC(m.status, CPORT_ECANCELED);
  }
  /* Bad sockets. */
  dead = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(cport_close(dead), CPORT_OK);
  SUP_RC(cport_deadline(dead, h, 100), CPORT_EBADF);
  SUP_RC(cport_deadline(CPORT_INVALID_SOCKET, h, 100), CPORT_EBADF);
  SUP_RC(cport_deadline(p.server ^ 0x5a5a000000000000ull, h, 100), CPORT_EBADF);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* otp.recv_timeout and otp.send_timeout                                    */
/* ------------------------------------------------------------------------ */

static void test_otp_recv_timeout(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[64];
  size_t n = 0;
  cport_handle h = 0;
  uint64_t t0;
  cport_msg m;
  int rc;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_EQ(get_int(p.server, CPORT_OPT_OTP_RECV_TIMEOUT), 0);
  SUP_EQ(get_int(p.server, CPORT_OPT_OTP_SEND_TIMEOUT), 0);
  /* Range 0..INT_MAX, an int. */
  set_int(p.server, CPORT_OPT_OTP_RECV_TIMEOUT, -1, CPORT_EINVAL);
  set_int(p.server, CPORT_OPT_OTP_RECV_TIMEOUT, INT_MIN, CPORT_EINVAL);
  set_int(p.server, CPORT_OPT_OTP_SEND_TIMEOUT, -1, CPORT_EINVAL);
  {
    cport_optval o;
    memset(&o, 0, sizeof o);
    o.type = CPORT_VAL_BOOL;
    o.v.b = 1;
    SUP_RC(cport_setopt(p.server, CPORT_LEVEL_OTP, CPORT_OPT_OTP_RECV_TIMEOUT, &o), CPORT_EINVAL);
  }
  set_int(p.server, CPORT_OPT_OTP_RECV_TIMEOUT, INT_MAX, CPORT_OK);
  SUP_EQ(get_int(p.server, CPORT_OPT_OTP_RECV_TIMEOUT), INT_MAX);
  set_int(p.server, CPORT_OPT_OTP_RECV_TIMEOUT, 100, CPORT_OK);
  SUP_EQ(get_int(p.server, CPORT_OPT_OTP_RECV_TIMEOUT), 100);

  /* A recv posted now gets the deadline. */
  t0 = sup_now_us();
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  m = expect_timedout(e, p.server, h, CPORT_OP_RECV);
  check_not_early(t0, sup_now_us(), 100, "otp.recv_timeout");
  SUP_EQ(m.bytes, 0);

  /* So does a blocking one, even with CPORT_INFINITY. */
  sup_watchdog_start(60, "blocking recv with otp.recv_timeout");
  t0 = sup_now_us();
  n = 1;
  rc = cport_recv(p.server, in, sizeof in, 0, CPORT_INFINITY, &n, &h);
  sup_watchdog_stop();
  SUP_RC(rc, CPORT_ETIMEDOUT);
  SUP_EQ(n, 0);
  check_not_early(t0, sup_now_us(), 100, "otp.recv_timeout on a blocking recv");

  /* 0 turns it off for recvs posted afterwards. */
  set_int(p.server, CPORT_OPT_OTP_RECV_TIMEOUT, 0, CPORT_OK);
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  expect_no_msg(e->q, 100 + SUP_QUIET);
  sup_send_all(e->q, p.client, "abc", 3);
  m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
  SUP_EQ(m.tag, sup_select_mode() ? CPORT_TAG_SELECT : CPORT_TAG_COMPLETION);
  SUP_RC(m.status, CPORT_OK);
  expect_no_msg(e->q, 50);
}

static void test_otp_recv_timeout_datagram(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_socket u = sup_udp(e->q, CPORT_AF_INET, 0, NULL);
  char in[64];
  cport_recv_info info;
  cport_handle h = 0;
  uint64_t t0;
  cport_msg m;

  /* recvfrom is a recv too. */
  set_int(u, CPORT_OPT_OTP_RECV_TIMEOUT, 100, CPORT_OK);
  t0 = sup_now_us();
  SUP_RC(cport_recvfrom(u, in, sizeof in, 0, CPORT_NOWAIT, &info, &h), sup_pending_rc());
  m = expect_timedout(e, u, h, CPORT_OP_RECVFROM);
  check_not_early(t0, sup_now_us(), 100, "otp.recv_timeout on recvfrom");
  SUP_EQ(m.bytes, 0);
  expect_no_msg(e->q, 50);
}

static void test_otp_send_timeout(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char *big = (char *)sup_alloc(BIG_SEND);
  cport_handle h = 0;
  size_t sent, n = 0, total;
  uint64_t t0;
  cport_msg m;
  int rc;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  set_int(p.client, CPORT_OPT_OTP_SEND_TIMEOUT, 200, CPORT_OK);
  SUP_EQ(get_int(p.client, CPORT_OPT_OTP_SEND_TIMEOUT), 200);
  SUP_EQ(get_int(p.client, CPORT_OPT_OTP_RECV_TIMEOUT), 0);

  /* A send left pending by a peer that does not read. */
  sup_pattern(big, BIG_SEND, 0, 125);
  t0 = sup_now_us();
  sent = pend_send(p.client, big, &h);
  m = expect_timedout(e, p.client, h, CPORT_OP_SEND);
  check_not_early(t0, sup_now_us(), 200, "otp.send_timeout");
  if (sup_select_mode()) {
    SUP_EQ(m.bytes, 0);
  } else {
    SUP_ASSERT(m.bytes < BIG_SEND, "a timed-out send reports all %zu bytes", m.bytes);
    sent = m.bytes;
  }
  SUP_EQ(drain(p.server, 0, 125, 300), sent);
  total = sent;

  /* A blocking send, even with CPORT_INFINITY. */
  sup_pattern(big, BIG_SEND, total, 125);
  sup_watchdog_start(60, "blocking send with otp.send_timeout");
  t0 = sup_now_us();
  rc = cport_send(p.client, big, BIG_SEND, 0, CPORT_INFINITY, &n, &h);
  sup_watchdog_stop();
  SUP_RC(rc, CPORT_ETIMEDOUT);
  check_not_early(t0, sup_now_us(), 200, "otp.send_timeout on a blocking send");
  SUP_ASSERT(n < BIG_SEND, "a timed-out blocking send sent all %zu bytes", n);
  SUP_EQ(drain(p.server, total, 125, 300), n);
  expect_no_msg(e->q, 50);
}

static void test_otp_timeouts_inherited(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr addr;
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &addr), c, s;
  char in[16];
  size_t n = 0;
  cport_handle h = 0;
  uint64_t t0;
  cport_msg m;
  sup_loop lp;
  sup_op acc, con;

  set_int(l, CPORT_OPT_OTP_RECV_TIMEOUT, 100, CPORT_OK);
  set_int(l, CPORT_OPT_OTP_SEND_TIMEOUT, 250, CPORT_OK);
  /* The listener's own accepts do not use them. */
  sup_loop_init(&lp, e->q);
  sup_op_accept(&acc, l);
  sup_loop_start(&lp, &acc);
  SUP_RC(acc.first_rc, sup_pending_rc());
  expect_no_msg(e->q, 100 + SUP_QUIET);
  c = sup_open(e->q, CPORT_AF_INET);
  sup_op_connect(&con, c, &addr);
  sup_loop_start(&lp, &con);
  sup_loop_run(&lp, NULL, 0, SUP_TIMEOUT);
  sup_loop_free(&lp);
  SUP_RC(acc.status, CPORT_OK);
  SUP_RC(con.status, CPORT_OK);
  s = acc.accepted;
  /* The accepted socket has them; the connecting one does not. */
  SUP_EQ(get_int(s, CPORT_OPT_OTP_RECV_TIMEOUT), 100);
  SUP_EQ(get_int(s, CPORT_OPT_OTP_SEND_TIMEOUT), 250);
  SUP_EQ(get_int(c, CPORT_OPT_OTP_RECV_TIMEOUT), 0);
  t0 = sup_now_us();
  SUP_RC(cport_recv(s, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  m = expect_timedout(e, s, h, CPORT_OP_RECV);
  check_not_early(t0, sup_now_us(), 100, "an inherited otp.recv_timeout");
  SUP_EQ(m.bytes, 0);
  expect_no_msg(e->q, 50);
}

static void test_otp_timeouts_skip_connect(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr addr;
  cport_socket l = full_listener(e, &addr), c = sup_open(e->q, CPORT_AF_INET);
  cport_handle h = 0;
  cport_msg m;

  /* A connect does not use them: it stays pending past both. */
  set_int(c, CPORT_OPT_OTP_RECV_TIMEOUT, 50, CPORT_OK);
  set_int(c, CPORT_OPT_OTP_SEND_TIMEOUT, 50, CPORT_OK);
  SUP_RC(cport_connect(c, &addr, CPORT_NOWAIT, &h), sup_pending_rc());
  expect_no_msg(e->q, 50 + SUP_QUIET);
  SUP_RC(cport_cancel(c, h), CPORT_OK);
  if (sup_select_mode()) {
    sup_mark_ended(c, h);
  } else {
    m = expect_msg_for(e->q, c, h, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_RC(m.status, CPORT_ECANCELED);
  }
  SUP_RC(cport_close(c), CPORT_OK);
  SUP_RC(cport_close(l), CPORT_OK);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Rule 16: an op that moved nothing ends at once, whatever is before it    */
/* ------------------------------------------------------------------------ */

static void test_rule16_blocking_accept_behind_pending(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr addr;
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &addr), acc = 0, c;
  cport_handle h = 0, hb = 0;
  uint64_t t0;
  cport_msg m;
  int rc;

  SUP_RC(cport_accept(l, CPORT_NOWAIT, &acc, &h), sup_pending_rc());
  /* A blocking accept behind it times out (it used to wait forever). */
  sup_watchdog_start(60, "blocking accept behind a pending accept");
  t0 = sup_now_us();
  rc = cport_accept(l, 50, &acc, &hb);
  sup_watchdog_stop();
  SUP_RC(rc, CPORT_ETIMEDOUT);
  check_not_early(t0, sup_now_us(), 50, "a blocking accept's timeout");
  /* The pending accept still takes the next connection. */
  c = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(sup_connect(e->q, c, &addr), CPORT_OK);
  m = expect_msg_for(e->q, l, h, SUP_TIMEOUT);
  SUP_RC(m.status, CPORT_OK);
  if (sup_select_mode()) {
    SUP_EQ(m.tag, CPORT_TAG_SELECT);
    SUP_RC(sup_accept(e->q, l, &acc), CPORT_OK);
  } else {
    SUP_EQ(m.tag, CPORT_TAG_COMPLETION);
    acc = m.accepted;
  }
  SUP_ASSERT(acc != CPORT_INVALID_SOCKET, "accepted socket");
  SUP_RC(cport_close(acc), CPORT_OK);
  expect_no_msg(e->q, 50);
}

static void test_rule16_blocking_recv_behind_pending(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[64], in2[64], out[16];
  size_t n = 0, nb = 1;
  cport_handle h = 0, hb = 0;
  uint64_t t0;
  cport_msg m;
  int rc;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  sup_watchdog_start(60, "blocking recv behind a pending recv");
  t0 = sup_now_us();
  rc = cport_recv(p.server, in2, sizeof in2, 0, 50, &nb, &hb);
  sup_watchdog_stop();
  SUP_RC(rc, CPORT_ETIMEDOUT);
  SUP_EQ(nb, 0);
  check_not_early(t0, sup_now_us(), 50, "a blocking recv's timeout");
  /* The pending recv gets the data that comes next. */
  sup_pattern(out, sizeof out, 0, 126);
  sup_send_all(e->q, p.client, out, sizeof out);
  m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
  SUP_RC(m.status, CPORT_OK);
  SUP_EQ(m.tag, sup_select_mode() ? CPORT_TAG_SELECT : CPORT_TAG_COMPLETION);
  n = sup_select_mode() ? 0 : m.bytes;
  if (n < sizeof out) sup_recv_exact(e->q, p.server, in + n, sizeof out - n);
  sup_check_pattern(in, sizeof out, 0, 126, "data after a timed-out blocking recv");
  expect_no_msg(e->q, 50);
}

static void test_rule16_blocking_send_behind_pending(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char *big = (char *)sup_alloc(BIG_SEND + CHUNK), small[16];
  cport_handle h = 0, hb = 0;
  size_t sent, nb = 0;
  uint64_t t0;
  int rc, cr;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  sup_pattern(big, BIG_SEND + CHUNK, 0, 127);
  sent = pend_send(p.client, big, &h);
  sup_settle(e->q, 50);
  sup_watchdog_start(60, "blocking send behind a pending send");
  t0 = sup_now_us();
  if (sup_select_mode()) {
    /* It goes on from where the select-mode sends stopped. */
    rc = cport_send(p.client, big + sent, CHUNK, 0, 50, &nb, &hb);
  } else {
    memset(small, 'z', sizeof small);
    rc = cport_send(p.client, small, sizeof small, 0, 50, &nb, &hb);
  }
  sup_watchdog_stop();
  SUP_RC(rc, CPORT_ETIMEDOUT);
  check_not_early(t0, sup_now_us(), 50, "a blocking send's timeout");
  /* Completion mode: behind a pending send it cannot have moved a byte. */
  if (!sup_select_mode()) SUP_EQ(nb, 0);
  cr = cport_cancel(p.client, h);
  if (sup_select_mode()) {
    SUP_RC2(cr, CPORT_OK, CPORT_ENOTFOUND);
    if (cr == CPORT_OK)
      sup_mark_ended(p.client, h);
    else
      SUP_EQ(expect_msg_for(e->q, p.client, h, SUP_TIMEOUT).tag, CPORT_TAG_SELECT);
    sent += nb;
  } else {
    cport_msg m;
    SUP_RC(cr, CPORT_OK);
    m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_RC(m.status, CPORT_ECANCELED);
    sent = m.bytes;
  }
  SUP_EQ(drain(p.server, 0, 127, 300), sent);
  expect_no_msg(e->q, 50);
}

static void test_rule16_cancel_second_recv(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in1[64], in2[64], in3[64], out[16];
  size_t n = 0;
  cport_handle h1 = 0, h2 = 0, h3 = 0;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_recv(p.server, in1, sizeof in1, 0, CPORT_NOWAIT, &n, &h1), sup_pending_rc());
  if (sup_select_mode()) {
    /* One select op per direction: there is no second to cancel. */
    SUP_RC(cport_recv(p.server, in2, sizeof in2, 0, CPORT_NOWAIT, &n, &h2), CPORT_EALREADY);
    SUP_RC(cport_cancel(p.server, h1), CPORT_OK);
    sup_mark_ended(p.server, h1);
    expect_no_msg(e->q, 50);
    return;
  }
  SUP_RC(cport_recv(p.server, in2, sizeof in2, 0, CPORT_NOWAIT, &n, &h2), CPORT_COMPLETION);
  SUP_RC(cport_recv(p.server, in3, sizeof in3, 0, CPORT_NOWAIT, &n, &h3), CPORT_COMPLETION);
  /* The second ends now, by cancel, while the first waits for data. */
  SUP_RC(cport_cancel(p.server, h2), CPORT_OK);
  m = expect_msg_for(e->q, p.server, h2, SUP_TIMEOUT);
  SUP_EQ(m.tag, CPORT_TAG_ABORT);
  SUP_RC(m.status, CPORT_ECANCELED);
  SUP_EQ(m.bytes, 0);
  SUP_ASSERT(m.buf == in2, "abort buffer");
  /* The third by its deadline. */
  SUP_RC(cport_deadline(p.server, h3, 50), CPORT_OK);
  m = expect_timedout(e, p.server, h3, CPORT_OP_RECV);
  SUP_EQ(m.bytes, 0);
  SUP_ASSERT(m.buf == in3, "abort buffer");
  /* The first is still pending and gets the data. */
  SUP_ASSERT(sup_stash_count(e->q) == 0, "a message for the first recv already");
  sup_pattern(out, sizeof out, 0, 128);
  sup_send_all(e->q, p.client, out, sizeof out);
  m = expect_msg_for(e->q, p.server, h1, SUP_TIMEOUT);
  SUP_EQ(m.tag, CPORT_TAG_COMPLETION);
  SUP_RC(m.status, CPORT_OK);
  n = m.bytes;
  if (n < sizeof out) sup_recv_exact(e->q, p.server, in1 + n, sizeof out - n);
  sup_check_pattern(in1, sizeof out, 0, 128, "data of the first recv");
  expect_no_msg(e->q, 50);
}

static void test_rule16_cancel_second_send(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char *big = (char *)sup_alloc(BIG_SEND), small[16];
  cport_handle h1 = 0, h2 = 0;
  size_t n = 0;
  cport_msg m;

  if (sup_select_mode()) return; /* one select op per direction */
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  sup_pattern(big, BIG_SEND, 0, 129);
  pend_send(p.client, big, &h1);
  memset(small, 'y', sizeof small);
  SUP_RC(cport_send(p.client, small, sizeof small, 0, CPORT_NOWAIT, &n, &h2), CPORT_COMPLETION);
  SUP_RC(cport_cancel(p.client, h2), CPORT_OK);
  m = expect_msg_for(e->q, p.client, h2, SUP_TIMEOUT);
  SUP_EQ(m.tag, CPORT_TAG_ABORT);
  SUP_RC(m.status, CPORT_ECANCELED);
  SUP_EQ(m.bytes, 0);
  SUP_ASSERT(m.buf == small, "abort buffer");
  /* The first is still pending; its bytes, and only those, reach the peer. */
  SUP_RC(cport_cancel(p.client, h1), CPORT_OK);
  m = expect_msg_for(e->q, p.client, h1, SUP_TIMEOUT);
  SUP_EQ(m.tag, CPORT_TAG_ABORT);
  SUP_EQ(drain(p.server, 0, 129, 300), m.bytes);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* cport_close_async                                                        */
/* ------------------------------------------------------------------------ */

static void test_close_async_pending_ops(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  const int nr = sup_select_mode() ? 1 : 2;
  char *big = (char *)sup_alloc(BIG_SEND), *rb = (char *)sup_alloc(2 * 64);
  cport_handle hr[2], hs = 0, ha = 0, hc = 0, hlc = 0;
  cport_socket acc = 0;
  int meta_s = 0, meta_l = 0, got_r = 0, got_s = 0, got_a = 0;
  size_t n = 0;
  cport_optval o;
  char b[256];

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  memset(&o, 0, sizeof o);
  o.type = CPORT_VAL_PTR;
  o.v.ptr = &meta_s;
  SUP_RC(cport_setopt(p.server, CPORT_LEVEL_OTP, CPORT_OPT_OTP_META, &o), CPORT_OK);
  o.v.ptr = &meta_l;
  SUP_RC(cport_setopt(p.listener, CPORT_LEVEL_OTP, CPORT_OPT_OTP_META, &o), CPORT_OK);
  for (int i = 0; i < nr; i++)
    SUP_RC(cport_recv(p.server, rb + i * 64, 64, 0, CPORT_NOWAIT, &n, &hr[i]), sup_pending_rc());
  pend_send(p.server, big, &hs);
  SUP_RC(cport_accept(p.listener, CPORT_NOWAIT, &acc, &ha), sup_pending_rc());
  sup_settle(e->q, 50);
  SUP_EQ(sup_stash_count(e->q), 0);

  SUP_RC(cport_close_async(p.server, &hc), CPORT_OK);
  SUP_ASSERT(hc != 0, "close handle 0");
  SUP_RC(cport_close_async(p.listener, &hlc), CPORT_OK);
  /* Each socket: an abort (ECLOSED) per pending op, then its close
   * message, carrying its meta; nothing about it after that. */
  for (int closed = 0; closed < 2;) {
    cport_msg m = expect_msg(e->q, SUP_TIMEOUT);
    if (m.op == CPORT_OP_CLOSE) {
      SUP_EQ(m.tag, CPORT_TAG_COMPLETION);
      SUP_RC(m.status, CPORT_OK);
      SUP_ASSERT(!(m.flags & CPORT_MSG_MORE), "close message flagged MORE");
      if (m.socket == p.server) {
        SUP_EQ(m.handle, hc);
        SUP_ASSERT(m.meta == &meta_s, "close message meta %p", m.meta);
        SUP_ASSERT(got_r == nr && got_s == 1,
                   "close message before the aborts (%d/%d recv, %d send)", got_r, nr, got_s);
        got_r = got_s = 99; /* nothing more about it */
      } else {
        SUP_EQ(m.socket, p.listener);
        SUP_EQ(m.handle, hlc);
        SUP_ASSERT(m.meta == &meta_l, "close message meta %p", m.meta);
        SUP_ASSERT(got_a == 1, "close message before the accept's abort");
        got_a = 99;
      }
      closed++;
      continue;
    }
    SUP_ASSERT(m.tag == CPORT_TAG_ABORT && m.status == CPORT_ECLOSED, "after close: %s",
               sup_msg_str(&m, b, sizeof b));
    if (m.socket == p.listener) {
      SUP_ASSERT(got_a == 0 && m.handle == ha, "%s", sup_msg_str(&m, b, sizeof b));
      SUP_ASSERT(m.meta == &meta_l, "abort meta");
      got_a++;
    } else if (m.op == CPORT_OP_RECV) {
      SUP_ASSERT(got_r < nr && m.socket == p.server && m.handle == hr[got_r],
                 "recv abort out of order: %s", sup_msg_str(&m, b, sizeof b));
      SUP_ASSERT(m.meta == &meta_s, "abort meta");
      got_r++;
    } else {
      SUP_ASSERT(got_s == 0 && m.socket == p.server && m.handle == hs && m.op == CPORT_OP_SEND,
                 "%s", sup_msg_str(&m, b, sizeof b));
      SUP_ASSERT(m.meta == &meta_s, "abort meta");
      got_s++;
    }
  }
  expect_no_msg(e->q, SUP_QUIET);
  SUP_RC(cport_close_async(p.server, &hc), CPORT_EBADF);
  sup_check_ebadf(p.server, "closed by close_async");
  sup_check_ebadf(p.listener, "listener closed by close_async");
}

static void test_close_async_idle(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  cport_socket u = sup_udp(e->q, CPORT_AF_INET, 0, NULL), dead;
  cport_handle h = 0, hu = 0;
  cport_info info;
  cport_optval o;
  int meta = 0;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  memset(&o, 0, sizeof o);
  o.type = CPORT_VAL_PTR;
  o.v.ptr = &meta;
  SUP_RC(cport_setopt(p.client, CPORT_LEVEL_OTP, CPORT_OPT_OTP_META, &o), CPORT_OK);
  /* NULL handle: EINVAL, and the socket stays open. */
  SUP_RC(cport_close_async(p.client, NULL), CPORT_EINVAL);
  SUP_RC(cport_info_get(p.client, &info), CPORT_OK);
  /* Nothing pending: just the close message. */
  SUP_RC(cport_close_async(p.client, &h), CPORT_OK);
  m = expect_msg(e->q, SUP_TIMEOUT);
  SUP_EQ(m.tag, CPORT_TAG_COMPLETION);
  SUP_EQ(m.op, CPORT_OP_CLOSE);
  SUP_EQ(m.socket, p.client);
  SUP_EQ(m.handle, h);
  SUP_RC(m.status, CPORT_OK);
  SUP_ASSERT(m.meta == &meta, "close message meta %p", m.meta);
  SUP_RC(cport_close_async(u, &hu), CPORT_OK);
  m = expect_msg(e->q, SUP_TIMEOUT);
  SUP_EQ(m.op, CPORT_OP_CLOSE);
  SUP_EQ(m.socket, u);
  SUP_EQ(m.handle, hu);
  SUP_ASSERT(m.meta == NULL, "close message meta %p, none was set", m.meta);
  expect_no_msg(e->q, SUP_QUIET);
  /* Closed, stale and forged sockets. */
  SUP_RC(cport_close_async(p.client, &h), CPORT_EBADF);
  dead = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(cport_close(dead), CPORT_OK);
  SUP_RC(cport_close_async(dead, &h), CPORT_EBADF);
  SUP_RC(cport_close_async(CPORT_INVALID_SOCKET, &h), CPORT_EBADF);
  sup_check_ebadf(p.client, "closed by close_async");
  /* The peer sees the connection end. */
  {
    char in[8];
    size_t n = 0;
    int rc = sup_recv(e->q, p.server, in, sizeof in, &n);
    SUP_ASSERT((rc == CPORT_OK && n == 0) || rc == CPORT_ECONNRESET, "recv after close: %s %zu",
               sup_rc_name(rc), n);
  }
  expect_no_msg(e->q, 50);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_timer_one_shot),
    CONF_TEST(test_timer_zero_fires_on_next_wait),
    CONF_TEST(test_timer_args),
    CONF_TEST(test_timer_many),
    CONF_TEST(test_timer_repeat_then_cancel),
    CONF_TEST(test_timer_late_fires_once),
    CONF_TEST(test_timer_cancel_before_fire),
    CONF_TEST(test_timer_cancel_after_fire),
    CONF_TEST(test_timer_cancel_race),
    CONF_TEST(test_timer_cancel_foreign_and_forged),
    CONF_TEST(test_timer_queue_destroy_armed),
    CONF_TEST(test_deadline_pending_recv),
    CONF_TEST(test_deadline_waitall_partial),
    CONF_TEST(test_deadline_pending_send),
    CONF_TEST(test_deadline_pending_accept),
    CONF_TEST(test_deadline_pending_connect),
    CONF_TEST(test_deadline_completion_wins),
    CONF_TEST(test_deadline_replace_and_remove),
    CONF_TEST(test_deadline_errors),
    CONF_TEST(test_otp_recv_timeout),
    CONF_TEST(test_otp_recv_timeout_datagram),
    CONF_TEST(test_otp_send_timeout),
    CONF_TEST(test_otp_timeouts_inherited),
    CONF_TEST(test_otp_timeouts_skip_connect),
    CONF_TEST(test_rule16_blocking_accept_behind_pending),
    CONF_TEST(test_rule16_blocking_recv_behind_pending),
    CONF_TEST(test_rule16_blocking_send_behind_pending),
    CONF_TEST(test_rule16_cancel_second_recv),
    CONF_TEST(test_rule16_cancel_second_send),
    CONF_TEST(test_close_async_pending_ops),
    CONF_TEST(test_close_async_idle),
};

const struct CMUnitTest *conf_time_tests(size_t *count) {
  *count = sizeof tests / sizeof tests[0];
  return tests;
}
