/*
 * cport threaded tests, run under ThreadSanitizer:
 *
 *   threads --backend epoll|io_uring|iocp|auto --mode completion|select
 *
 * Every piece of state the test threads share is behind a sup_mutex (or is
 * written before a thread starts and read after it is joined), so the only
 * races TSan can find are the library's. Assertions on worker threads use
 * the SUP_* macros, which end the worker and fail the test at its join.
 * Waits with CPORT_INFINITY are guarded by a watchdog that aborts the
 * process instead of letting a lost wake-up hang it.
 */
#include "support.h"

#include <stdatomic.h>

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Two threads, each with its own queue on one context, each echoing        */
/* ------------------------------------------------------------------------ */

typedef struct echo_job {
  cport_ctx *ctx;
  int rounds;
  uint32_t seed;
  int family;
  size_t bytes; /* result, read after join */
} echo_job;

static void echo_worker(void *arg) {
  echo_job *job = (echo_job *)arg;
  cport_queue *q = NULL;
  sup_pair p;
  char *out = (char *)sup_alloc(4096), *in = (char *)sup_alloc(4096);
  char *back = (char *)sup_alloc(4096);
  uint64_t offset = 0;

  SUP_RC(cport_queue_create(job->ctx, &q), CPORT_OK);
  sup_make_pair(q, job->family, &p);
  for (int r = 0; r < job->rounds; r++) {
    size_t size = 1 + (size_t)((r * 97 + (int)job->seed) % 4000);
    sup_pattern(out, size, offset, job->seed);
    sup_send_all(q, p.client, out, size);
    sup_recv_exact(q, p.server, in, size);
    sup_send_all(q, p.server, in, size);
    sup_recv_exact(q, p.client, back, size);
    sup_check_pattern(back, size, offset, job->seed, "threaded echo");
    offset += size;
  }
  expect_no_msg(q, 20);
  SUP_RC(cport_close(p.client), CPORT_OK);
  SUP_RC(cport_close(p.server), CPORT_OK);
  SUP_RC(cport_close(p.listener), CPORT_OK);
  SUP_RC(cport_queue_destroy(q), CPORT_OK);
  job->bytes = (size_t)offset;
}

static void test_two_threads_own_queues_echo(void **state) {
  sup_env *e = (sup_env *)*state;
  echo_job jobs[2];
  sup_thread *t[2];
  for (int i = 0; i < 2; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    jobs[i].ctx = e->ctx;
    jobs[i].rounds = sup_scale(500, 50);
    jobs[i].seed = 70 + (uint32_t)i;
    jobs[i].family = i == 0 ? CPORT_AF_INET : CPORT_AF_INET6;
  }
  for (int i = 0; i < 2; i++) t[i] = sup_thread_start(echo_worker, &jobs[i]);
  for (int i = 0; i < 2; i++) sup_thread_join(t[i]);
  for (int i = 0; i < 2; i++) SUP_ASSERT(jobs[i].bytes > 0, "thread %d echoed nothing", i);
  expect_no_msg(e->q, 20);
}

/* ------------------------------------------------------------------------ */
/* cport_post from another thread wakes a CPORT_INFINITY waiter             */
/* ------------------------------------------------------------------------ */

typedef struct post_job {
  cport_queue *q;
  int count;
} post_job;

static void poster(void *arg) {
  post_job *job = (post_job *)arg;
  sup_sleep_ms(100); /* the waiter is blocked by now */
  for (int i = 0; i < job->count; i++) {
    if (i % 16 == 0) sup_sleep_ms(2);
    SUP_RC(cport_post(job->q, (uint64_t)i, job), CPORT_OK);
  }
}

static void test_post_wakes_infinite_waiter(void **state) {
  sup_env *e = (sup_env *)*state;
  post_job job;
  sup_thread *t;
  sup_pair p;
  char buf[16];
  size_t n = 0;
  cport_handle h = 0;

  /* An op pending too, so the waiter is deep in the poller, not idle. */
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_recv(p.server, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());

  job.q = e->q;
  job.count = 200;
  sup_watchdog_start(30, "post wakes an infinite waiter");
  t = sup_thread_start(poster, &job);
  for (int i = 0; i < job.count; i++) {
    cport_msg m;
    int got = cport_wait(e->q, &m, 1, CPORT_INFINITY);
    SUP_EQ(got, 1);
    SUP_EQ(m.tag, CPORT_TAG_USER);
    SUP_EQ(m.user, i); /* one poster: its messages arrive in order */
    SUP_ASSERT(m.user_ptr == &job, "user_ptr");
  }
  sup_thread_join(t);
  sup_watchdog_stop();
  SUP_RC(cport_cancel(p.server, h), CPORT_OK);
}

/* ------------------------------------------------------------------------ */
/* A queue destroyed while a thread waits on it                             */
/* ------------------------------------------------------------------------ */

typedef struct doomed_wait {
  cport_queue *q;
  int result;
} doomed_wait;

static void wait_on_doomed(void *arg) {
  doomed_wait *w = arg;
  cport_msg m;
  w->result = cport_wait(w->q, &m, 1, CPORT_INFINITY);
}

/* The waiter returns CPORT_EBADF at once, whether it drives the poller
 * (alone) or sleeps while another thread polls for the context. */
static void test_destroy_wakes_waiter(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_watchdog_start(30, "destroy wakes a waiter");
  for (int round = 0; round < 2; round++) {
    doomed_wait w = {NULL, 1};
    SUP_RC(cport_queue_create(e->ctx, &w.q), CPORT_OK);
    sup_thread *poller = NULL;
    doomed_wait other = {e->q, 1};
    if (round == 1) poller = sup_thread_start(wait_on_doomed, &other); /* polls for e->q */
    sup_thread *t = sup_thread_start(wait_on_doomed, &w);
    sup_sleep_ms(100); /* let it block */
    SUP_RC(cport_queue_destroy(w.q), CPORT_OK);
    sup_thread_join(t);
    SUP_EQ(w.result, CPORT_EBADF);
    if (poller) {
      SUP_RC(cport_post(e->q, 1, NULL), CPORT_OK);
      sup_thread_join(poller);
      SUP_EQ(other.result, 1);
    }
  }
  sup_watchdog_stop();
}

/* ------------------------------------------------------------------------ */
/* Several threads waiting on one queue                                     */
/* ------------------------------------------------------------------------ */

#define NWAITERS 4
#define NUSER 4000
#define NPAIRS 32

typedef struct shared_seen {
  sup_mutex *mu;
  int user_seen[NUSER];
  int user_total;
  cport_socket servers[NPAIRS];
  cport_handle handles[NPAIRS];
  int sock_seen[NPAIRS];
  int sock_total;
  int bad; /* a message nobody expected */
  char bad_msg[256];
  int done;
  int infinite_values[NWAITERS];
  int infinite_n;
} shared_seen;

typedef struct waiter_arg {
  shared_seen *s;
  cport_queue *q;
} waiter_arg;

static void one_infinite_wait(void *arg) {
  waiter_arg *w = (waiter_arg *)arg;
  cport_msg m;
  int got = cport_wait(w->q, &m, 1, CPORT_INFINITY);
  SUP_EQ(got, 1);
  SUP_EQ(m.tag, CPORT_TAG_USER);
  sup_mutex_lock(w->s->mu);
  if (w->s->infinite_n < NWAITERS) w->s->infinite_values[w->s->infinite_n++] = (int)m.user;
  sup_mutex_unlock(w->s->mu);
}

static void volume_waiter(void *arg) {
  waiter_arg *w = (waiter_arg *)arg;
  shared_seen *s = w->s;
  for (;;) {
    cport_msg m[8];
    int done;
    int got = cport_wait(w->q, m, 8, 50);
    SUP_ASSERT(got >= 0 && got <= 8, "cport_wait returned %d", got);
    sup_mutex_lock(s->mu);
    for (int i = 0; i < got; i++) {
      if (m[i].tag == CPORT_TAG_USER && m[i].user < NUSER) {
        s->user_seen[m[i].user]++;
        s->user_total++;
        continue;
      }
      int k = -1;
      for (int j = 0; j < NPAIRS; j++)
        if (s->servers[j] == m[i].socket && s->handles[j] == m[i].handle) k = j;
      if (k >= 0 && m[i].tag == (sup_select_mode() ? CPORT_TAG_SELECT : CPORT_TAG_COMPLETION) &&
          m[i].status == CPORT_OK) {
        s->sock_seen[k]++;
        s->sock_total++;
      } else if (!s->bad) {
        s->bad = 1;
        sup_msg_str(&m[i], s->bad_msg, sizeof s->bad_msg);
      }
    }
    done = s->done;
    sup_mutex_unlock(s->mu);
    if (done) return;
  }
}

static void test_several_waiters_one_queue(void **state) {
  sup_env *e = (sup_env *)*state;
  shared_seen *s = (shared_seen *)sup_alloc(sizeof *s);
  waiter_arg w;
  sup_thread *t[NWAITERS];
  sup_pair *pairs = (sup_pair *)sup_alloc(NPAIRS * sizeof *pairs);
  char *bufs = (char *)sup_alloc(NPAIRS * 64);
  uint64_t deadline;
  int ok = 0;

  s->mu = sup_mutex_new();
  w.s = s;
  w.q = e->q;

  /* Part 1: NWAITERS threads blocked with CPORT_INFINITY; each post wakes
   * one of them; none is left asleep. */
  sup_watchdog_start(30, "several infinite waiters");
  for (int i = 0; i < NWAITERS; i++) t[i] = sup_thread_start(one_infinite_wait, &w);
  sup_sleep_ms(100);
  for (int i = 0; i < NWAITERS; i++) SUP_RC(cport_post(e->q, (uint64_t)i, NULL), CPORT_OK);
  for (int i = 0; i < NWAITERS; i++) sup_thread_join(t[i]);
  sup_watchdog_stop();
  SUP_EQ(s->infinite_n, NWAITERS);
  for (int v = 0; v < NWAITERS; v++) {
    int c = 0;
    for (int i = 0; i < NWAITERS; i++) c += s->infinite_values[i] == v;
    SUP_ASSERT(c == 1, "value %d taken %d times", v, c);
  }

  /* Part 2: socket messages and user messages, taken by NWAITERS threads:
   * every one exactly once. */
  for (int j = 0; j < NPAIRS; j++) {
    size_t n = 0;
    sup_make_pair(e->q, CPORT_AF_INET, &pairs[j]);
    s->servers[j] = pairs[j].server;
    SUP_RC(cport_recv(pairs[j].server, bufs + j * 64, 64, 0, CPORT_NOWAIT, &n, &s->handles[j]),
           sup_pending_rc());
  }
  for (int i = 0; i < NWAITERS; i++) t[i] = sup_thread_start(volume_waiter, &w);
  for (int i = 0; i < NUSER; i++) {
    SUP_RC(cport_post(e->q, (uint64_t)i, NULL), CPORT_OK);
    if (i % (NUSER / NPAIRS) == 0) {
      int j = i / (NUSER / NPAIRS);
      char out[8] = "ping";
      size_t n = 0;
      cport_handle h = 0;
      SUP_RC(cport_send(pairs[j].client, out, 4, 0, CPORT_NOWAIT, &n, &h), CPORT_OK);
    }
  }
  deadline = sup_now_ms() + 20000;
  while (sup_now_ms() < deadline) {
    sup_mutex_lock(s->mu);
    ok = s->user_total >= NUSER && s->sock_total >= NPAIRS;
    if (ok || s->bad) s->done = 1;
    sup_mutex_unlock(s->mu);
    if (ok || s->bad) break;
    sup_sleep_ms(5);
  }
  sup_mutex_lock(s->mu);
  s->done = 1;
  sup_mutex_unlock(s->mu);
  for (int i = 0; i < NWAITERS; i++) sup_thread_join(t[i]);
  SUP_ASSERT(!s->bad, "unexpected message: %s", s->bad_msg);
  SUP_ASSERT(ok, "after 20 s: %d of %d user messages, %d of %d socket messages", s->user_total,
             NUSER, s->sock_total, NPAIRS);
  for (int i = 0; i < NUSER; i++)
    SUP_ASSERT(s->user_seen[i] == 1, "user message %d seen %d times", i, s->user_seen[i]);
  for (int j = 0; j < NPAIRS; j++)
    SUP_ASSERT(s->sock_seen[j] == 1, "pair %d: %d messages", j, s->sock_seen[j]);
  /* The data is intact. */
  for (int j = 0; j < NPAIRS; j++) {
    char in[8];
    if (sup_select_mode()) {
      sup_recv_exact(e->q, pairs[j].server, in, 4);
      SUP_ASSERT(memcmp(in, "ping", 4) == 0, "pair %d data", j);
    }
  }
  SUP_EQ(s->user_total, NUSER);
  SUP_EQ(s->sock_total, NPAIRS);
  expect_no_msg(e->q, 50);
  sup_mutex_free(s->mu);
}

/* ------------------------------------------------------------------------ */
/* Order of 64 pending recvs / sends with two threads pumping the poller    */
/* ------------------------------------------------------------------------ */

typedef struct pump {
  sup_mutex *mu;
  cport_queue *q; /* an empty queue: waiting on it only drives the poller */
  int stop;
  int stray;
} pump;

static void pumper(void *arg) {
  pump *p = (pump *)arg;
  for (;;) {
    cport_msg m[4];
    int stop, got = cport_wait(p->q, m, 4, 10);
    sup_mutex_lock(p->mu);
    if (got != 0) p->stray += got;
    stop = p->stop;
    sup_mutex_unlock(p->mu);
    if (stop) return;
  }
}

/* Wait (without touching the owner queue) until info says no op of the
 * given direction is pending on s. */
static void wait_not_pending(cport_socket s, int writes) {
  uint64_t deadline = sup_now_ms() + 20000;
  for (;;) {
    cport_info i;
    SUP_RC(cport_info_get(s, &i), CPORT_OK);
    if ((writes ? i.pending_writes : i.pending_reads) == 0) return;
    if (sup_now_ms() > deadline)
      SUP_FAIL("%d ops still pending after 20 s of pumping",
               writes ? i.pending_writes : i.pending_reads);
    sup_sleep_ms(2);
  }
}

#define NORD 64

static void order_completion(sup_env *e, pump *pp) {
  sup_pair p;
  char *rb = (char *)sup_alloc(NORD * 100), *out = (char *)sup_alloc(NORD * 100);
  cport_handle h[NORD];
  const size_t chunk = 65536;
  char *big = (char *)sup_alloc(NORD * chunk), *in = (char *)sup_alloc(NORD * chunk);
  cport_msg *m = (cport_msg *)sup_alloc(NORD * sizeof *m);
  size_t n, total = 0;
  int first_pending = -1, got;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  for (int i = 0; i < NORD; i++)
    SUP_RC(cport_recv(p.server, rb + i * 100, 100, 0, CPORT_NOWAIT, &n, &h[i]), CPORT_COMPLETION);
  /* The pumpers run the poller while the data trickles in. */
  sup_pattern(out, NORD * 100, 0, 80);
  for (int i = 0; i < NORD; i++) {
    cport_handle hs = 0;
    SUP_RC(cport_send(p.client, out + i * 100, 100, 0, CPORT_NOWAIT, &n, &hs), CPORT_OK);
    if (i % 8 == 7) sup_sleep_ms(1);
  }
  wait_not_pending(p.server, 0);
  got = cport_wait(e->q, m, NORD, CPORT_NOWAIT);
  SUP_EQ(got, NORD);
  for (int i = 0; i < NORD; i++) {
    char b[256];
    SUP_ASSERT(m[i].handle == h[i] && m[i].socket == p.server && m[i].tag == CPORT_TAG_COMPLETION,
               "message %d out of posting order: %s", i, sup_msg_str(&m[i], b, sizeof b));
    SUP_RC(m[i].status, CPORT_OK);
    SUP_ASSERT(m[i].buf == rb + i * 100, "buffer of recv %d", i);
    SUP_ASSERT(m[i].bytes >= 1 && m[i].bytes <= 100, "bytes %zu", m[i].bytes);
    sup_check_pattern(m[i].buf, m[i].bytes, total, 80, "pumped recv data");
    total += m[i].bytes;
  }
  if (total < NORD * 100) {
    sup_recv_exact(e->q, p.server, rb, NORD * 100 - total);
    sup_check_pattern(rb, NORD * 100 - total, total, 80, "rest");
  }

  /* Sends: posted while nobody reads, then read with blocking recvs (which
   * leave the owner queue alone) while the pumpers deliver completions. */
  sup_pattern(big, NORD * chunk, 0, 81);
  for (int i = 0; i < NORD; i++) {
    int rc = cport_send(p.client, big + (size_t)i * chunk, chunk, 0, CPORT_NOWAIT, &n, &h[i]);
    if (rc == CPORT_OK) {
      SUP_ASSERT(first_pending < 0, "send %d done at once after a pending one", i);
    } else {
      SUP_RC(rc, CPORT_COMPLETION);
      if (first_pending < 0) first_pending = i;
    }
  }
  SUP_ASSERT(first_pending >= 0, "4 MiB to a peer that does not read must pend");
  for (size_t have = 0; have < NORD * chunk;) {
    cport_handle hr = 0;
    size_t want = NORD * chunk - have;
    SUP_RC(cport_recv(p.server, in + have, want > 65536 ? 65536 : want, 0, SUP_TIMEOUT, &n, &hr),
           CPORT_OK);
    SUP_ASSERT(n > 0, "EOF");
    have += n;
  }
  sup_check_pattern(in, NORD * chunk, 0, 81, "pumped send data");
  wait_not_pending(p.client, 1);
  got = cport_wait(e->q, m, NORD, CPORT_NOWAIT);
  SUP_EQ(got, NORD - first_pending);
  for (int i = 0; i < got; i++) {
    char b[256];
    SUP_ASSERT(m[i].handle == h[first_pending + i] && m[i].tag == CPORT_TAG_COMPLETION,
               "send message %d out of posting order: %s", i, sup_msg_str(&m[i], b, sizeof b));
    SUP_RC(m[i].status, CPORT_OK);
    SUP_EQ(m[i].bytes, chunk);
  }
  (void)pp;
}

static void order_select(sup_env *e, pump *pp) {
  sup_pair *pairs = (sup_pair *)sup_alloc(NPAIRS * sizeof *pairs);
  cport_handle h[NPAIRS];
  int seen[NPAIRS];
  cport_msg m[NPAIRS + 1];
  char buf[8];
  int got;

  for (int j = 0; j < NPAIRS; j++) {
    size_t n = 0;
    sup_make_pair(e->q, CPORT_AF_INET, &pairs[j]);
    SUP_RC(cport_recv(pairs[j].server, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h[j]), CPORT_SELECT);
    seen[j] = 0;
  }
  for (int j = 0; j < NPAIRS; j++) {
    size_t n = 0;
    cport_handle hs = 0;
    SUP_RC(cport_send(pairs[j].client, "pong", 4, 0, CPORT_NOWAIT, &n, &hs), CPORT_OK);
    if (j % 8 == 7) sup_sleep_ms(1);
  }
  for (int j = 0; j < NPAIRS; j++) wait_not_pending(pairs[j].server, 0);
  got = cport_wait(e->q, m, NPAIRS + 1, CPORT_NOWAIT);
  SUP_EQ(got, NPAIRS);
  for (int i = 0; i < got; i++) {
    int k = -1;
    for (int j = 0; j < NPAIRS; j++)
      if (pairs[j].server == m[i].socket && h[j] == m[i].handle) k = j;
    SUP_ASSERT(k >= 0 && m[i].tag == CPORT_TAG_SELECT, "unexpected message");
    seen[k]++;
  }
  for (int j = 0; j < NPAIRS; j++) {
    SUP_ASSERT(seen[j] == 1, "pair %d: %d select messages", j, seen[j]);
    sup_recv_exact(e->q, pairs[j].server, buf, 4);
    SUP_ASSERT(memcmp(buf, "pong", 4) == 0, "data");
  }
  (void)pp;
}

static void test_order_with_two_pumpers(void **state) {
  sup_env *e = (sup_env *)*state;
  pump pp;
  sup_thread *t[2];
  memset(&pp, 0, sizeof pp);
  pp.mu = sup_mutex_new();
  SUP_RC(cport_queue_create(e->ctx, &pp.q), CPORT_OK);
  for (int i = 0; i < 2; i++) t[i] = sup_thread_start(pumper, &pp);
  if (sup_select_mode())
    order_select(e, &pp);
  else
    order_completion(e, &pp);
  sup_mutex_lock(pp.mu);
  pp.stop = 1;
  sup_mutex_unlock(pp.mu);
  for (int i = 0; i < 2; i++) sup_thread_join(t[i]);
  SUP_EQ(pp.stray, 0);
  SUP_RC(cport_queue_destroy(pp.q), CPORT_OK);
  sup_mutex_free(pp.mu);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* A blocking recv with CPORT_INFINITY wakes when data arrives              */
/* ------------------------------------------------------------------------ */

typedef struct brecv_job {
  cport_socket s;
  char buf[100];
  size_t n;
  int rc;
} brecv_job;

static void blocking_receiver(void *arg) {
  brecv_job *j = (brecv_job *)arg;
  cport_handle h = 0;
  j->rc = cport_recv(j->s, j->buf, sizeof j->buf, CPORT_WAITALL, CPORT_INFINITY, &j->n, &h);
}

static void test_blocking_infinity_wakes(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  brecv_job j;
  sup_thread *t;
  char out[100];

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  memset(&j, 0, sizeof j);
  j.s = p.server;
  sup_pattern(out, sizeof out, 0, 90);
  sup_watchdog_start(30, "blocking recv with infinity");
  t = sup_thread_start(blocking_receiver, &j);
  sup_sleep_ms(100);
  sup_send_all(e->q, p.client, out, 40);
  sup_sleep_ms(50);
  sup_send_all(e->q, p.client, out + 40, 60);
  sup_thread_join(t);
  sup_watchdog_stop();
  SUP_RC(j.rc, CPORT_OK);
  SUP_EQ(j.n, 100);
  sup_check_pattern(j.buf, 100, 0, 90, "blocking recv data");
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Blocking calls completed by another thread's poll                        */
/* ------------------------------------------------------------------------ */

typedef struct feeder {
  sup_mutex *mu;
  cport_queue *q;
  cport_socket client;
  int want; /* the chunk the main thread waits for; -1: stop */
  int sent; /* chunks sent */
} feeder;

static void feed(void *arg) {
  feeder *f = (feeder *)arg;
  for (;;) {
    int want, sent;
    sup_mutex_lock(f->mu);
    want = f->want;
    sent = f->sent;
    sup_mutex_unlock(f->mu);
    if (want < 0) return;
    if (want < sent) {
      sup_sleep_ms(0);
      continue;
    }
    if (want % 2) sup_sleep_ms(1); /* often after the recv went pending */
    {
      char out[64];
      size_t n = 0;
      cport_handle h = 0;
      sup_pattern(out, sizeof out, (uint64_t)want * 64, 91);
      SUP_RC(cport_send(f->client, out, sizeof out, 0, SUP_TIMEOUT, &n, &h), CPORT_OK);
      SUP_EQ(n, sizeof out);
    }
    sup_mutex_lock(f->mu);
    f->sent = want + 1;
    sup_mutex_unlock(f->mu);
  }
}

static void test_blocking_calls_while_another_thread_pumps(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  pump pp;
  feeder f;
  sup_thread *tp, *tf;
  const int rounds = sup_scale(300, 30);
  char failure[256] = "";

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  memset(&pp, 0, sizeof pp);
  pp.mu = sup_mutex_new();
  SUP_RC(cport_queue_create(e->ctx, &pp.q), CPORT_OK);
  memset(&f, 0, sizeof f);
  f.mu = sup_mutex_new();
  f.client = p.client;
  tp = sup_thread_start(pumper, &pp);
  tf = sup_thread_start(feed, &f);
  for (int i = 0; i < rounds && !failure[0]; i++) {
    char in[64];
    size_t n = 0;
    cport_handle h = 0;
    int rc;
    sup_mutex_lock(f.mu);
    f.want = i;
    sup_mutex_unlock(f.mu);
    rc = cport_recv(p.server, in, sizeof in, CPORT_WAITALL, SUP_TIMEOUT, &n, &h);
    if (rc != CPORT_OK || n != sizeof in)
      snprintf(failure, sizeof failure, "round %d: blocking recv: %s, %zu bytes", i,
               sup_rc_name(rc), n);
    else
      sup_check_pattern(in, sizeof in, (uint64_t)i * 64, 91, "blocking recv data");
  }
  sup_mutex_lock(f.mu);
  f.want = -1;
  sup_mutex_unlock(f.mu);
  sup_thread_join(tf);
  sup_mutex_lock(pp.mu);
  pp.stop = 1;
  sup_mutex_unlock(pp.mu);
  sup_thread_join(tp);
  SUP_ASSERT(!failure[0], "%s", failure);
  SUP_EQ(pp.stray, 0);
  SUP_RC(cport_queue_destroy(pp.q), CPORT_OK);
  sup_mutex_free(pp.mu);
  sup_mutex_free(f.mu);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Close while another thread pumps the owner queue                          */
/* ------------------------------------------------------------------------ */

typedef struct collector {
  sup_mutex *mu;
  cport_queue *q;    /* the queue to pump; changed by the main thread */
  unsigned gen, ack; /* ack == gen: the collector no longer waits on an old q */
  cport_msg msgs[64];
  int n, overflow, stop;
} collector;

static void collect(void *arg) {
  collector *c = (collector *)arg;
  for (;;) {
    cport_msg m;
    cport_queue *q;
    int stop, got;
    sup_mutex_lock(c->mu);
    q = c->q;
    c->ack = c->gen;
    sup_mutex_unlock(c->mu);
    got = cport_wait(q, &m, 1, 10);
    sup_mutex_lock(c->mu);
    if (got == 1) {
      if (c->n < 64)
        c->msgs[c->n++] = m;
      else
        c->overflow++;
    }
    stop = c->stop;
    sup_mutex_unlock(c->mu);
    if (stop) return;
  }
}

static void stop_collector(collector *c, sup_thread *t) {
  sup_mutex_lock(c->mu);
  c->stop = 1;
  sup_mutex_unlock(c->mu);
  sup_thread_join(t);
}

static void test_close_while_other_thread_pumps(void **state) {
  sup_env *e = (sup_env *)*state;
  collector *c = (collector *)sup_alloc(sizeof *c);
  sup_thread *t;
  const int rounds = sup_scale(50, 10);
  char failure[512] = "";

  c->mu = sup_mutex_new();
  c->q = e->q;
  t = sup_thread_start(collect, c);
  for (int r = 0; r < rounds && !failure[0]; r++) {
    const int nr = sup_select_mode() ? 1 : 8;
    cport_handle h[8];
    char *bufs = (char *)sup_alloc(8 * 32);
    uint64_t deadline;
    int have = 0, rc;
    /* Each round on a private queue that the collector thread pumps while
     * this thread closes a socket with pending recvs. */
    cport_queue *mine = NULL;
    cport_socket l, cl = 0, sv = 0;
    cport_addr addr;
    SUP_RC(cport_queue_create(e->ctx, &mine), CPORT_OK);
    l = sup_listener(mine, CPORT_AF_INET, 0, 0, &addr);
    cl = sup_open(mine, CPORT_AF_INET);
    SUP_RC(cport_connect(cl, &addr, SUP_TIMEOUT, &h[0]), CPORT_OK);
    SUP_RC(cport_accept(l, SUP_TIMEOUT, &sv, &h[0]), CPORT_OK);
    sup_mutex_lock(c->mu);
    c->q = mine;
    c->gen++;
    c->n = 0;
    sup_mutex_unlock(c->mu);
    for (int i = 0; i < nr; i++) {
      size_t n = 0;
      rc = cport_recv(sv, bufs + i * 32, 32, 0, CPORT_NOWAIT, &n, &h[i]);
      if (rc != sup_pending_rc() && !failure[0])
        snprintf(failure, sizeof failure, "round %d: recv %d returned %s", r, i, sup_rc_name(rc));
    }
    rc = cport_close(sv);
    if (rc != CPORT_OK && !failure[0])
      snprintf(failure, sizeof failure, "round %d: close returned %s", r, sup_rc_name(rc));
    deadline = sup_now_ms() + SUP_TIMEOUT;
    while (sup_now_ms() < deadline) {
      sup_mutex_lock(c->mu);
      have = c->n;
      sup_mutex_unlock(c->mu);
      if (have >= nr) break;
      sup_sleep_ms(1);
    }
    sup_sleep_ms(20); /* room for a (wrong) extra message */
    sup_mutex_lock(c->mu);
    have = c->n;
    for (int i = 0; i < have && i < nr && !failure[0]; i++) {
      if (c->msgs[i].handle != h[i] || c->msgs[i].tag != CPORT_TAG_ABORT ||
          c->msgs[i].status != CPORT_ECLOSED) {
        char b[256];
        snprintf(failure, sizeof failure, "round %d, abort %d (posting order): %s", r, i,
                 sup_msg_str(&c->msgs[i], b, sizeof b));
      }
    }
    if (have != nr && !failure[0])
      snprintf(failure, sizeof failure, "round %d: %d messages after close, expected %d aborts", r,
               have, nr);
    c->q = e->q; /* park the collector on the (empty) main queue */
    c->gen++;
    sup_mutex_unlock(c->mu);
    cport_close(cl);
    cport_close(l);
    /* The collector may still be inside a wait on mine: destroy it only
     * once the collector has started a wait on the main queue. */
    for (;;) {
      int moved;
      sup_mutex_lock(c->mu);
      moved = c->ack == c->gen;
      sup_mutex_unlock(c->mu);
      if (moved) break;
      sup_sleep_ms(1);
    }
    rc = cport_queue_destroy(mine);
    if (rc != CPORT_OK && !failure[0])
      snprintf(failure, sizeof failure, "round %d: queue_destroy returned %s", r, sup_rc_name(rc));
  }
  stop_collector(c, t);
  SUP_ASSERT(!failure[0], "%s", failure);
  SUP_EQ(c->overflow, 0);
  sup_mutex_free(c->mu);
}

/* ------------------------------------------------------------------------ */
/* Timers started and cancelled on several threads while another pumps      */
/* ------------------------------------------------------------------------ */

#define NTIMER_THREADS 4

typedef struct timer_job {
  cport_queue *q; /* this worker's own queue */
  int count;
  int fired, cancelled; /* results, read after join */
} timer_job;

typedef struct timer_book {
  timer_job *job;
  cport_handle *h;
  int *cancel_rc; /* 1: not cancelled (yet) */
  unsigned char *ended;
  int nended;
} timer_book;

/* Every 16th timer repeats (every ms) until cancelled 8 timers later. */
static int timer_repeats(int k) { return k % 16 == 5; }

static void timer_take(timer_book *b, const cport_msg *m) {
  char s[256];
  int k;
  SUP_ASSERT(m->op == CPORT_OP_TIMER && m->socket == 0 && m->user < (uint64_t)b->job->count &&
                 m->user_ptr == b->job,
             "not one of this worker's timers: %s", sup_msg_str(m, s, sizeof s));
  k = (int)m->user;
  SUP_ASSERT(m->handle == b->h[k], "timer %d: handle of another: %s", k,
             sup_msg_str(m, s, sizeof s));
  SUP_ASSERT(!b->ended[k], "timer %d: a message after its final one: %s", k,
             sup_msg_str(m, s, sizeof s));
  if (m->flags & CPORT_MSG_MORE) {
    SUP_ASSERT(timer_repeats(k) && m->tag == CPORT_TAG_COMPLETION && m->status == CPORT_OK,
               "timer %d: %s", k, sup_msg_str(m, s, sizeof s));
    return;
  }
  b->ended[k] = 1;
  b->nended++;
  if (b->cancel_rc[k] == CPORT_OK) {
    SUP_ASSERT(m->tag == CPORT_TAG_ABORT && m->status == CPORT_ECANCELED,
               "timer %d: cancel said OK, then %s", k, sup_msg_str(m, s, sizeof s));
    b->job->cancelled++;
  } else {
    /* Not cancelled, or cancel said ENOTFOUND: it fired. */
    SUP_ASSERT(!timer_repeats(k) && m->tag == CPORT_TAG_COMPLETION && m->status == CPORT_OK,
               "timer %d (cancel: %s): %s", k, sup_rc_name(b->cancel_rc[k]),
               sup_msg_str(m, s, sizeof s));
    b->job->fired++;
  }
}

static void timer_drain(timer_book *b, int timeout) {
  cport_msg m[64];
  int got = cport_wait(b->job->q, m, 64, timeout);
  SUP_ASSERT(got >= 0 && got <= 64, "cport_wait returned %d", got);
  for (int i = 0; i < got; i++) timer_take(b, &m[i]);
}

static void timer_cancel(timer_book *b, int k) {
  int rc = cport_queue_cancel(b->job->q, b->h[k]);
  if (timer_repeats(k))
    SUP_RC(rc, CPORT_OK);
  else
    SUP_RC2(rc, CPORT_OK, CPORT_ENOTFOUND);
  b->cancel_rc[k] = rc;
}

static void timer_worker(void *arg) {
  timer_job *job = (timer_job *)arg;
  const int n = job->count;
  timer_book b;
  uint64_t deadline;

  b.job = job;
  b.h = (cport_handle *)sup_alloc((size_t)n * sizeof *b.h);
  b.cancel_rc = (int *)sup_alloc((size_t)n * sizeof *b.cancel_rc);
  b.ended = (unsigned char *)sup_alloc((size_t)n);
  b.nended = 0;
  for (int k = 0; k < n; k++) {
    b.cancel_rc[k] = 1;
    SUP_RC(cport_timer_start(job->q, (uint64_t)(k % 4), timer_repeats(k) ? 1 : 0, (uint64_t)k, job,
                             &b.h[k]),
           CPORT_OK);
    /* Half of the one-shots are cancelled at once, racing the pumper. */
    if (k % 2 == 0 && !timer_repeats(k)) timer_cancel(&b, k);
    if (k >= 8 && timer_repeats(k - 8)) timer_cancel(&b, k - 8);
    if (k % 64 == 63) timer_drain(&b, 0);
  }
  for (int k = n - 8 > 0 ? n - 8 : 0; k < n; k++)
    if (timer_repeats(k)) timer_cancel(&b, k);
  /* Every handle ends with exactly one final message. */
  deadline = sup_now_ms() + 30000;
  while (b.nended < n) {
    if (sup_now_ms() > deadline) SUP_FAIL("%d of %d timers ended after 30 s", b.nended, n);
    timer_drain(&b, 10);
  }
  /* And nothing follows. */
  deadline = sup_now_ms() + 50;
  while (sup_now_ms() < deadline) timer_drain(&b, 10);
}

static void test_timers_on_threads(void **state) {
  sup_env *e = (sup_env *)*state;
  timer_job jobs[NTIMER_THREADS];
  sup_thread *t[NTIMER_THREADS], *tp;
  pump pp;

  memset(&pp, 0, sizeof pp);
  pp.mu = sup_mutex_new();
  SUP_RC(cport_queue_create(e->ctx, &pp.q), CPORT_OK);
  for (int i = 0; i < NTIMER_THREADS; i++) {
    memset(&jobs[i], 0, sizeof jobs[i]);
    jobs[i].count = sup_scale(5000, 500);
    SUP_RC(cport_queue_create(e->ctx, &jobs[i].q), CPORT_OK);
  }
  tp = sup_thread_start(pumper, &pp);
  for (int i = 0; i < NTIMER_THREADS; i++) t[i] = sup_thread_start(timer_worker, &jobs[i]);
  for (int i = 0; i < NTIMER_THREADS; i++) sup_thread_join(t[i]);
  sup_mutex_lock(pp.mu);
  pp.stop = 1;
  sup_mutex_unlock(pp.mu);
  sup_thread_join(tp);
  SUP_EQ(pp.stray, 0);
  for (int i = 0; i < NTIMER_THREADS; i++) {
    print_message("timer thread %d: %d fired, %d cancelled\n", i, jobs[i].fired, jobs[i].cancelled);
    SUP_EQ(jobs[i].fired + jobs[i].cancelled, jobs[i].count);
    SUP_RC(cport_queue_destroy(jobs[i].q), CPORT_OK);
  }
  SUP_RC(cport_queue_destroy(pp.q), CPORT_OK);
  sup_mutex_free(pp.mu);
  expect_no_msg(e->q, 20);
}

/* Work and lookups submitted from several threads at once to one queue,
 * which the main thread drains: each handle ends once, each fn runs once.
 * The lookups ask the test name server (the suite runs under testns). */
#define NWORK_THREADS 4

typedef struct work_submitter {
  cport_queue *q;
  int count;
  int resolves;
  atomic_int *ran;
} work_submitter;

static void count_work(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

static void work_submitter_main(void *arg) {
  work_submitter *w = (work_submitter *)arg;
  cport_resolve_hints v4 = {CPORT_AF_INET, CPORT_SOCK_STREAM, 0};
  for (int i = 0; i < w->count; i++) {
    cport_handle h;
    SUP_RC(cport_work(w->q, count_work, w->ran, &h), CPORT_COMPLETION);
    if (i < w->resolves)
      SUP_RC(cport_resolve(w->q, "test.cport", "80", &v4, CPORT_NOWAIT, NULL, &h),
             CPORT_COMPLETION);
  }
}

static void test_work_from_threads(void **state) {
  sup_env *e = (sup_env *)*state;
  work_submitter w[NWORK_THREADS];
  sup_thread *t[NWORK_THREADS];
  atomic_int ran;
  const char *dns = getenv("CPORT_TEST_DNS");
  int resolves = dns && !strcmp(dns, "1") ? sup_scale(100, 20) : 0;
  SUP_ASSERT(resolves > 0, "CPORT_TEST_DNS is not set: run this suite under test/dns/testns");
  atomic_init(&ran, 0);
  for (int i = 0; i < NWORK_THREADS; i++) {
    w[i].q = e->q;
    w[i].count = sup_scale(2500, 250);
    w[i].resolves = resolves;
    w[i].ran = &ran;
    t[i] = sup_thread_start(work_submitter_main, &w[i]);
  }
  int total = NWORK_THREADS * (w[0].count + resolves), works = 0;
  for (int i = 0; i < total; i++) {
    cport_msg m = expect_msg(e->q, 4 * SUP_TIMEOUT);
    SUP_EQ(m.status, CPORT_OK);
    if (m.op == CPORT_OP_WORK) {
      works++;
    } else {
      SUP_EQ(m.op, CPORT_OP_RESOLVE);
      cport_addrinfo_free((cport_addrinfo *)m.buf);
    }
  }
  for (int i = 0; i < NWORK_THREADS; i++) sup_thread_join(t[i]);
  SUP_EQ(works, NWORK_THREADS * w[0].count);
  SUP_EQ(atomic_load(&ran), works);
  expect_no_msg(e->q, 20);
}

/* ------------------------------------------------------------------------ */
/* A single-thread context, and the threads that still reach it             */
/* ------------------------------------------------------------------------ */

/* cport_ctx_options.single_thread skips the locks of the context's
 * sockets, queues and timers. What other threads still do there must stay
 * safe: workers end jobs and other threads post (both through the
 * context's inbox), another thread's call on one of its sockets answers
 * CPORT_EBADF, and a walk of the socket table from another thread passes
 * its sockets by. Under TSan, an access that a skipped lock used to order
 * would be reported here. */
#define ST_POSTERS 4

typedef struct st_poster {
  cport_queue *q;
  cport_socket s; /* the context's socket, not this thread's to use */
  int posts;
} st_poster;

static void st_poster_main(void *arg) {
  st_poster *p = (st_poster *)arg;
  cport_socket ids[256];
  cport_info info;
  size_t n = 0;
  cport_handle h = 0;
  for (int i = 0; i < p->posts; i++) SUP_RC(cport_post(p->q, (uint64_t)i, p), CPORT_OK);
  SUP_RC(cport_send(p->s, "x", 1, 0, CPORT_NOWAIT, &n, &h), CPORT_EBADF);
  SUP_RC(cport_info_get(p->s, &info), CPORT_EBADF);
  int found = cport_which_sockets(NULL, ids, 256);
  SUP_ASSERT(found >= 0 && found <= 256, "cport_which_sockets: %d", found);
  for (int i = 0; i < found; i++)
    SUP_ASSERT(ids[i] != p->s, "another thread listed a single-thread context's socket");
}

static void st_count_work(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }

/* Takes the posts and work results waiting on q; returns how many. */
static int st_take(cport_queue *q, st_poster *posters, int *next_value, int wait_ms) {
  cport_msg m[64];
  int got = cport_wait(q, m, 64, wait_ms);
  SUP_ASSERT(got >= 0, "cport_wait: %s", sup_rc_name(got));
  for (int i = 0; i < got; i++) {
    if (m[i].op == CPORT_OP_WORK) {
      SUP_EQ(m[i].status, CPORT_OK);
      continue;
    }
    SUP_EQ(m[i].tag, CPORT_TAG_USER);
    int who = (int)((st_poster *)m[i].user_ptr - posters);
    SUP_ASSERT(who >= 0 && who < ST_POSTERS, "a post from nowhere");
    SUP_EQ(m[i].user, next_value[who]); /* each thread's posts in its order */
    next_value[who]++;
  }
  return got;
}

static void test_single_thread_context(void **state) {
  (void)state;
  cport_ctx_options opts;
  cport_ctx *ctx = NULL;
  cport_queue *q = NULL, *io = NULL;
  st_poster posters[ST_POSTERS];
  sup_thread *t[ST_POSTERS];
  int next_value[ST_POSTERS] = {0};
  atomic_int ran;
  sup_pair p;
  char out[512], in[512];
  const int works = sup_scale(2000, 200), posts = sup_scale(2000, 200);

  memset(&opts, 0, sizeof opts);
  opts.backend = sup_backend();
  opts.single_thread = 1;
  SUP_RC(cport_ctx_create(&ctx, &opts), CPORT_OK);
  SUP_RC(cport_queue_create(ctx, &q), CPORT_OK);
  SUP_RC(cport_queue_create(ctx, &io), CPORT_OK);
  sup_make_pair(io, CPORT_AF_INET, &p);
  atomic_init(&ran, 0);
  for (int i = 0; i < works; i++) {
    cport_handle h = 0;
    SUP_RC(cport_work(q, st_count_work, &ran, &h), CPORT_COMPLETION);
  }
  for (int i = 0; i < ST_POSTERS; i++) {
    posters[i].q = q;
    posters[i].s = p.server;
    posters[i].posts = posts;
    t[i] = sup_thread_start(st_poster_main, &posters[i]);
  }
  /* This thread echoes on its sockets meanwhile: their ops, unlocked,
   * run beside the workers and posters. */
  int taken = 0, total = works + ST_POSTERS * posts;
  for (int r = 0; r < 200 || taken < total; r++) {
    SUP_ASSERT(r < 200 + 10 * total, "%d of %d messages came", taken, total);
    size_t size = 1 + (size_t)(r * 37 % (int)sizeof out);
    sup_pattern(out, size, 0, (uint32_t)r);
    sup_send_all(io, p.client, out, size);
    sup_recv_exact(io, p.server, in, size);
    sup_check_pattern(in, size, 0, (uint32_t)r, "echo beside other threads");
    taken += st_take(q, posters, next_value, taken < total && r >= 200 ? 10 : CPORT_NOWAIT);
  }
  for (int i = 0; i < ST_POSTERS; i++) sup_thread_join(t[i]);
  SUP_EQ(taken, total);
  SUP_EQ(atomic_load(&ran), works);
  for (int i = 0; i < ST_POSTERS; i++) SUP_EQ(next_value[i], posts);
  SUP_EQ(st_take(q, posters, next_value, 20), 0);
  SUP_RC(cport_close(p.client), CPORT_OK);
  SUP_RC(cport_close(p.server), CPORT_OK);
  SUP_RC(cport_close(p.listener), CPORT_OK);
  cport_ctx_destroy(ctx);
}

/* ------------------------------------------------------------------------ */
/* Multishot handles across threads                                         */
/* ------------------------------------------------------------------------ */

/* Record the first failure seen on the main thread while workers still run
 * (the workers are stopped and joined before it is asserted). */
static void SUP_PRINTF(3, 4) note_failure(char *failure, size_t size, const char *fmt, ...) {
  va_list ap;
  if (failure[0]) return;
  va_start(ap, fmt);
  vsnprintf(failure, size, fmt, ap);
  va_end(ap);
}

/* A recv_multi pumped by the test thread (A), whose chunks are handed to
 * thread B (cport_post to a second queue), which checks them in order and
 * releases them: every cport_free, and so every resume of the paused recv,
 * runs on B. Thread C sends the stream with blocking sends (it never frees,
 * so it cannot hold up the reads it waits for) and then shuts down writing.
 *
 * The bound: A adds one to `held` when it takes a chunk from the queue; B
 * subtracts one just BEFORE cport_free. The library counts a chunk from
 * before its message is queued until inside cport_free, so `held` never
 * exceeds what the library counts, and that is at most otp.rcv_outstanding
 * (2). (Subtracting after cport_free would not do: the free can resume the
 * recv and A can take the next chunk before B's subtraction, so `held`
 * could read 3 with the library at 2.) Every 64th chunk B holds on to its
 * chunk until A has taken the next one (held == 2), then checks that no
 * third comes: so the recv pauses, and B's release resumes it. */
#define MR_TOTAL (256 * 1024)
#define MR_RCVBUF 512
#define MR_OUTSTANDING 2
#define MR_SEED 96u

typedef struct mr_shared {
  cport_queue *handoff; /* A posts (bytes, chunk) here; (0, NULL) means stop */
  atomic_int held;      /* chunks taken by A and not yet released by B */
  atomic_int abandon;   /* A gave up: B stops waiting for chunks */
  /* B's results, read after the join */
  size_t checked; /* bytes checked against the pattern, in order */
  int released;   /* chunks released */
  int holds;      /* times B held a chunk until the next one came */
} mr_shared;

typedef struct mr_sender {
  cport_socket s;
  const char *data;
  size_t sent;
  int rc; /* CPORT_OK, or the first call that failed (read after the join) */
} mr_sender;

static void mr_send(void *arg) {
  mr_sender *c = (mr_sender *)arg;
  c->rc = CPORT_OK;
  while (c->sent < MR_TOTAL && c->rc == CPORT_OK) {
    size_t piece = MR_TOTAL - c->sent, n = 0;
    cport_handle h = 0;
    if (piece > 16384) piece = 16384;
    c->rc = cport_send(c->s, c->data + c->sent, piece, 0, SUP_TIMEOUT, &n, &h);
    c->sent += n;
  }
  if (c->rc == CPORT_OK) c->rc = cport_shutdown(c->s, CPORT_SHUT_WR);
}

/* B, holding one chunk: the next one must still come (1 < 2 held), and no
 * third while two are held. */
static void mr_hold(mr_shared *sh) {
  uint64_t deadline = sup_now_ms() + SUP_TIMEOUT;
  while (atomic_load(&sh->held) < MR_OUTSTANDING) {
    if (atomic_load(&sh->abandon)) return;
    if (sup_now_ms() > deadline)
      SUP_FAIL("holding one chunk (%zu bytes checked), the next one did not come in %d ms",
               sh->checked, SUP_TIMEOUT);
    sup_sleep_ms(1);
  }
  sup_sleep_ms(20);
  SUP_ASSERT(atomic_load(&sh->held) == MR_OUTSTANDING, "%d chunks held, otp.rcv_outstanding 2",
             atomic_load(&sh->held));
  sh->holds++;
}

static void mr_release(void *arg) {
  mr_shared *sh = (mr_shared *)arg;
  for (;;) {
    cport_msg m;
    int got = cport_wait(sh->handoff, &m, 1, 100);
    SUP_ASSERT(got == 0 || got == 1, "cport_wait returned %s", sup_rc_name(got));
    if (got == 0) continue;
    SUP_EQ(m.tag, CPORT_TAG_USER);
    if (m.user_ptr == NULL) return;
    sup_check_pattern(m.user_ptr, (size_t)m.user, sh->checked, MR_SEED,
                      "recv_multi chunk checked on another thread");
    sh->checked += (size_t)m.user;
    if (sh->released % 64 == 7 && sh->checked < MR_TOTAL) mr_hold(sh);
    atomic_fetch_sub(&sh->held, 1);
    cport_free(m.user_ptr);
    sh->released++;
  }
}

static void test_multi_recv_freed_by_other_thread(void **state) {
  sup_env *e = (sup_env *)*state;
  char *data = (char *)sup_alloc(MR_TOTAL);
  char failure[512] = "";
  mr_shared sh;
  mr_sender snd;
  sup_thread *tb, *tc;
  sup_pair p;
  cport_handle h = 0;
  cport_msg final;
  cport_info info;
  size_t bytes = 0;
  int chunks = 0, max_held = 0, ended = 0;
  uint64_t last = sup_now_ms();

  memset(&sh, 0, sizeof sh);
  memset(&snd, 0, sizeof snd);
  memset(&final, 0, sizeof final);
  atomic_init(&sh.held, 0);
  atomic_init(&sh.abandon, 0);
  SUP_RC(cport_queue_create(e->ctx, &sh.handoff), CPORT_OK);
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  sup_set_otp_int(p.server, CPORT_OPT_OTP_RCV_OUTSTANDING, MR_OUTSTANDING);
  sup_set_otp_int(p.server, CPORT_OPT_OTP_RCVBUF, MR_RCVBUF);
  SUP_RC(cport_recv_multi(p.server, &h), CPORT_COMPLETION);
  sup_pattern(data, MR_TOTAL, 0, MR_SEED);
  snd.s = p.client;
  snd.data = data;
  tb = sup_thread_start(mr_release, &sh);
  tc = sup_thread_start(mr_send, &snd);

  /* A: pump the owner queue until the handle's final message. */
  while (!ended && !failure[0]) {
    cport_msg m[4];
    int got = cport_wait(e->q, m, 4, 100);
    if (got < 0) {
      note_failure(failure, sizeof failure, "cport_wait returned %s", sup_rc_name(got));
      break;
    }
    if (got == 0 && sup_now_ms() - last > SUP_TIMEOUT)
      note_failure(failure, sizeof failure,
                   "no recv_multi message for %d ms (%zu bytes, %d chunks)", SUP_TIMEOUT, bytes,
                   chunks);
    if (got > 0) last = sup_now_ms();
    for (int i = 0; i < got && !failure[0]; i++) {
      char b[256];
      int now, rc;
      if (m[i].socket != p.server || m[i].handle != h || m[i].op != CPORT_OP_RECV || ended) {
        note_failure(failure, sizeof failure, "%s: %s",
                     ended ? "a message after the final one" : "not the recv_multi's",
                     sup_msg_str(&m[i], b, sizeof b));
        break;
      }
      if (!(m[i].flags & CPORT_MSG_MORE)) {
        final = m[i];
        ended = 1;
        continue;
      }
      if (m[i].tag != CPORT_TAG_COMPLETION || m[i].status != CPORT_OK || m[i].bytes == 0 ||
          m[i].bytes > MR_RCVBUF || m[i].buf == NULL || !(m[i].flags & CPORT_MSG_ALLOCATED)) {
        note_failure(failure, sizeof failure, "recv_multi chunk: %s",
                     sup_msg_str(&m[i], b, sizeof b));
        break;
      }
      now = atomic_fetch_add(&sh.held, 1) + 1;
      if (now > max_held) max_held = now;
      if (now > MR_OUTSTANDING)
        note_failure(failure, sizeof failure, "%d chunks delivered and not released (limit %d)",
                     now, MR_OUTSTANDING);
      bytes += m[i].bytes;
      chunks++;
      rc = cport_post(sh.handoff, (uint64_t)m[i].bytes, m[i].buf);
      if (rc != CPORT_OK)
        note_failure(failure, sizeof failure, "cport_post to B: %s", sup_rc_name(rc));
    }
  }
  if (ended && !failure[0]) {
    cport_msg extra;
    int got = cport_wait(e->q, &extra, 1, 50);
    if (got != 0)
      note_failure(failure, sizeof failure, "cport_wait after the final message: %d", got);
  }
  /* Stop B after the chunks already handed over; C ends by itself (its
   * sends time out if nobody reads). Then the verdicts, main thread first. */
  atomic_store(&sh.abandon, failure[0] != 0);
  SUP_RC(cport_post(sh.handoff, 0, NULL), CPORT_OK);
  sup_thread_join(tc);
  sup_thread_join(tb);
  SUP_ASSERT(!failure[0], "%s", failure);
  SUP_RC(snd.rc, CPORT_OK);
  SUP_EQ(snd.sent, MR_TOTAL);
  {
    char b[256];
    SUP_ASSERT(final.tag == CPORT_TAG_COMPLETION && final.status == CPORT_OK && final.bytes == 0 &&
                   final.buf == NULL && !(final.flags & CPORT_MSG_ALLOCATED),
               "final message at the peer's end of stream: %s", sup_msg_str(&final, b, sizeof b));
  }
  SUP_EQ(bytes, MR_TOTAL);
  SUP_EQ(sh.checked, MR_TOTAL); /* every byte once, in order: B checked offsets */
  SUP_EQ(sh.released, chunks);
  SUP_EQ(atomic_load(&sh.held), 0);
  SUP_ASSERT(sh.holds > 0, "B never held a chunk while the next one came");
  SUP_EQ(max_held, MR_OUTSTANDING);
  SUP_RC(cport_info_get(p.server, &info), CPORT_OK);
  SUP_EQ(info.pending_reads, 0);
  print_message("recv_multi freed on another thread: %d chunks, %d holds, at most %d held\n",
                chunks, sh.holds, max_held);
  SUP_RC(cport_queue_destroy(sh.handoff), CPORT_OK);
  expect_no_msg(e->q, 20);
}

/* An accept_multi pumped by the test thread (A) while thread B connects 50
 * clients (blocking connects) and then cancels the handle. Every result
 * before the final message is flagged MORE and carries a socket; the final
 * one is an abort ECANCELED, or a completion with the connection that raced
 * the cancel; nothing follows it. Connections the handle did not take wait
 * in the backlog for a plain accept: each of the 50 clients is accepted
 * exactly once, none is lost. B cancels at one of three moments: */
#define AC_CLIENTS 50

typedef enum ac_when {
  AC_AFTER_ALL, /* once A has taken all 50 results: the end must be the abort */
  AC_AT_ONCE,   /* right after the last connect, while A pumps */
  AC_BACKLOG    /* B connects plain OS sockets (a cport blocking connect waits
                   on the poller, which would accept them at once), A starts
                   pumping only once all 50 have connected, and B cancels as
                   A starts: the cancel meets the accepts */
} ac_when;

static const char *ac_when_name(ac_when w) {
  return w == AC_AFTER_ALL ? "after all" : w == AC_AT_ONCE ? "at once" : "backlog";
}

typedef struct ac_round {
  cport_queue *client_q;
  cport_addr addr;
  cport_socket listener;
  cport_handle h;
  ac_when when;
  atomic_int connected; /* B: all clients connected */
  atomic_int pumping;   /* A: pumping starts */
  atomic_int taken;     /* results (flagged MORE) A has taken */
  atomic_int abandon;   /* A gave up: B stops waiting */
  /* B's, read after the join */
  cport_socket clients[AC_CLIENTS]; /* AC_BACKLOG: raw[] instead */
  sup_raw raw[AC_CLIENTS];
  uint16_t client_port[AC_CLIENTS];
  int cancel_rc;
} ac_round;

/* Wait until *flag >= value, sleeping a millisecond between looks (or
 * spinning: to act the moment it is set); 0 if the other side gave up (or
 * never set it within SUP_TIMEOUT). */
static int ac_wait_for(atomic_int *flag, int value, atomic_int *abandon, int spin) {
  uint64_t deadline = sup_now_ms() + SUP_TIMEOUT;
  while (atomic_load(flag) < value) {
    if ((abandon && atomic_load(abandon)) || sup_now_ms() > deadline) return 0;
    sup_sleep_ms(spin ? 0 : 1);
  }
  return 1;
}

static void ac_connect_then_cancel(void *arg) {
  ac_round *r = (ac_round *)arg;
  for (int i = 0; i < AC_CLIENTS; i++) {
    cport_addr a;
    cport_handle h = 0;
    if (r->when == AC_BACKLOG) {
      r->raw[i] = sup_raw_connect(&r->addr);
      SUP_ASSERT(r->raw[i] != -1, "plain connect %d failed", i);
      SUP_ASSERT(sup_raw_sockname(r->raw[i], &a) == 0, "getsockname");
    } else {
      r->clients[i] = sup_open(r->client_q, CPORT_AF_INET);
      SUP_RC(cport_connect(r->clients[i], &r->addr, SUP_TIMEOUT, &h), CPORT_OK);
      SUP_RC(cport_sockname(r->clients[i], &a), CPORT_OK);
    }
    r->client_port[i] = a.port;
  }
  atomic_store(&r->connected, 1);
  if (r->when == AC_AFTER_ALL && !ac_wait_for(&r->taken, AC_CLIENTS, &r->abandon, 0)) {
    SUP_ASSERT(atomic_load(&r->abandon), "%d of %d connections accepted after %d ms",
               atomic_load(&r->taken), AC_CLIENTS, SUP_TIMEOUT);
    return;
  }
  if (r->when == AC_BACKLOG && !ac_wait_for(&r->pumping, 1, &r->abandon, 1)) return;
  r->cancel_rc = cport_cancel(r->listener, r->h);
}

/* An accepted socket: note its peer's port, close it. */
static int ac_keep(cport_socket s, uint16_t *peers, int *npeers) {
  cport_addr a;
  int rc = cport_peername(s, &a);
  if (rc == CPORT_OK && *npeers < AC_CLIENTS + 1) peers[(*npeers)++] = a.port;
  if (rc == CPORT_OK) rc = cport_close(s);
  return rc;
}

static void test_multi_accept_cancel_from_other_thread(void **state) {
  sup_env *e = (sup_env *)*state;
  const int rounds = sup_scale(12, 6);
  ac_round *r = (ac_round *)sup_alloc(sizeof *r);
  int aborted = 0, raced = 0, taken_total = 0, left_total = 0;

  for (int round = 0; round < rounds; round++) {
    char failure[512] = "";
    uint16_t peers[AC_CLIENTS + 1];
    int npeers = 0, more = 0, ended = 0, left = 0;
    cport_msg final;
    uint64_t last;
    sup_thread *t;

    memset(r, 0, sizeof *r);
    for (int i = 0; i < AC_CLIENTS; i++) r->raw[i] = -1;
    memset(&final, 0, sizeof final);
    atomic_init(&r->connected, 0);
    atomic_init(&r->pumping, 0);
    atomic_init(&r->taken, 0);
    atomic_init(&r->abandon, 0);
    r->when = (ac_when)(round % 3);
    SUP_RC(cport_queue_create(e->ctx, &r->client_q), CPORT_OK);
    r->listener = sup_listener(e->q, CPORT_AF_INET, 0, 0, &r->addr);
    SUP_RC(cport_accept_multi(r->listener, &r->h), CPORT_COMPLETION);
    t = sup_thread_start(ac_connect_then_cancel, r);

    if (r->when == AC_BACKLOG && !ac_wait_for(&r->connected, 1, NULL, 0))
      note_failure(failure, sizeof failure, "B did not connect its clients");
    atomic_store(&r->pumping, 1);
    /* A: pump until the final message. */
    last = sup_now_ms();
    while (!ended && !failure[0]) {
      cport_msg m[8];
      int got = cport_wait(e->q, m, 8, 100);
      if (got < 0) {
        note_failure(failure, sizeof failure, "cport_wait returned %s", sup_rc_name(got));
        break;
      }
      if (got == 0 && sup_now_ms() - last > SUP_TIMEOUT)
        note_failure(failure, sizeof failure, "no accept_multi message for %d ms (%d taken)",
                     SUP_TIMEOUT, more);
      if (got > 0) last = sup_now_ms();
      for (int i = 0; i < got && !failure[0]; i++) {
        char b[256];
        int rc;
        if (m[i].socket != r->listener || m[i].handle != r->h || m[i].op != CPORT_OP_ACCEPT ||
            ended) {
          note_failure(failure, sizeof failure, "%s: %s",
                       ended ? "a message after the final one" : "not the accept_multi's",
                       sup_msg_str(&m[i], b, sizeof b));
          break;
        }
        if (!(m[i].flags & CPORT_MSG_MORE)) {
          final = m[i];
          ended = 1;
          continue;
        }
        if (m[i].tag != CPORT_TAG_COMPLETION || m[i].status != CPORT_OK ||
            m[i].accepted == CPORT_INVALID_SOCKET) {
          note_failure(failure, sizeof failure, "accept_multi result: %s",
                       sup_msg_str(&m[i], b, sizeof b));
          break;
        }
        rc = ac_keep(m[i].accepted, peers, &npeers);
        if (rc != CPORT_OK)
          note_failure(failure, sizeof failure, "accepted socket %d: %s", more, sup_rc_name(rc));
        more++;
        atomic_store(&r->taken, more);
      }
    }
    if (ended && !failure[0]) {
      cport_msg extra;
      int got = cport_wait(e->q, &extra, 1, 50);
      if (got != 0)
        note_failure(failure, sizeof failure, "cport_wait after the final message: %d", got);
    }
    atomic_store(&r->abandon, failure[0] != 0);
    sup_thread_join(t);
    SUP_ASSERT(!failure[0], "round %d (cancel %s): %s", round, ac_when_name(r->when), failure);
    SUP_RC(r->cancel_rc, CPORT_OK);

    /* The final message. */
    {
      char b[256];
      if (final.tag == CPORT_TAG_ABORT) {
        SUP_ASSERT(final.status == CPORT_ECANCELED && final.accepted == CPORT_INVALID_SOCKET,
                   "round %d: final abort: %s", round, sup_msg_str(&final, b, sizeof b));
        aborted++;
      } else {
        SUP_ASSERT(r->when != AC_AFTER_ALL,
                   "round %d: all %d were taken, yet the end is not an abort: %s", round,
                   AC_CLIENTS, sup_msg_str(&final, b, sizeof b));
        SUP_ASSERT(final.tag == CPORT_TAG_COMPLETION && final.status == CPORT_OK &&
                       final.accepted != CPORT_INVALID_SOCKET,
                   "round %d: a final completion carries the connection that raced the cancel: %s",
                   round, sup_msg_str(&final, b, sizeof b));
        SUP_RC(ac_keep(final.accepted, peers, &npeers), CPORT_OK);
        raced++;
      }
    }
    if (r->when == AC_AFTER_ALL) SUP_EQ(more, AC_CLIENTS);
    SUP_ASSERT(npeers <= AC_CLIENTS, "round %d: %d sockets for %d clients", round, npeers,
               AC_CLIENTS);
    /* The connections the handle did not take are still there, for a
     * plain accept; and there are no others. */
    while (npeers < AC_CLIENTS) {
      cport_socket s = CPORT_INVALID_SOCKET;
      cport_handle h = 0;
      int rc = cport_accept(r->listener, SUP_TIMEOUT, &s, &h);
      SUP_ASSERT(rc == CPORT_OK, "round %d (cancel %s): %d results, %d taken in all, the next: %s",
                 round, ac_when_name(r->when), more, npeers, sup_rc_name(rc));
      SUP_RC(ac_keep(s, peers, &npeers), CPORT_OK);
      left++;
    }
    {
      cport_socket s = CPORT_INVALID_SOCKET;
      cport_handle h = 0;
      SUP_RC(cport_accept(r->listener, 50, &s, &h), CPORT_ETIMEDOUT);
    }
    /* Each client was accepted exactly once. */
    for (int i = 0; i < AC_CLIENTS; i++) {
      int n = 0;
      for (int j = 0; j < npeers; j++) n += peers[j] == r->client_port[i];
      SUP_ASSERT(n == 1, "round %d: client %d (port %u) accepted %d times", round, i,
                 (unsigned)r->client_port[i], n);
    }
    taken_total += more;
    left_total += left;
    for (int i = 0; i < AC_CLIENTS; i++) {
      if (r->when == AC_BACKLOG)
        sup_raw_close(r->raw[i]);
      else
        SUP_RC(cport_close(r->clients[i]), CPORT_OK);
    }
    SUP_RC(cport_close(r->listener), CPORT_OK);
    SUP_RC(cport_queue_destroy(r->client_q), CPORT_OK);
  }
  print_message("accept_multi cancelled from another thread: %d rounds, %d ended by an abort, "
                "%d by a raced connection; %d results, %d connections left for a plain accept\n",
                rounds, aborted, raced, taken_total, left_total);
  expect_no_msg(e->q, 20);
}

static const struct CMUnitTest tests[] = {
    cmocka_unit_test_setup_teardown(test_two_threads_own_queues_echo, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_post_wakes_infinite_waiter, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_destroy_wakes_waiter, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_several_waiters_one_queue, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_order_with_two_pumpers, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_blocking_infinity_wakes, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_blocking_calls_while_another_thread_pumps, sup_setup,
                                    sup_teardown),
    cmocka_unit_test_setup_teardown(test_close_while_other_thread_pumps, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_timers_on_threads, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_work_from_threads, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_single_thread_context, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_multi_recv_freed_by_other_thread, sup_setup, sup_teardown),
    cmocka_unit_test_setup_teardown(test_multi_accept_cancel_from_other_thread, sup_setup,
                                    sup_teardown),
};

int main(int argc, char **argv) {
  int rc = sup_parse_args(argc, argv);
  if (rc != 0) return rc;
  return _cmocka_run_group_tests(sup_group_name("threads"), tests, sizeof tests / sizeof tests[0],
                                 NULL, NULL);
}
