/*
 * cport names suite: the worker pool (cport_work) and name resolution
 * (cport_resolve, cport_nameinfo), per backend and mode:
 *
 *   names --backend epoll|io_uring|iocp|auto --mode completion|select
 *
 * It runs under test/dns/testns, which gives the process a private network
 * namespace (loopback only) whose /etc/resolv.conf names a small name
 * server on 127.0.0.1 with a fixed table (test/dns/README.md): real DNS
 * answers and failures, and no lookup leaves the machine. A DNS case fails
 * when CPORT_TEST_DNS is not set rather than ask the real name server.
 * test_resolve_no_server runs alone, under `testns --no-server`.
 */
#include "support.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NAMES_TEST(f) cmocka_unit_test_setup_teardown(f, sup_setup, sup_teardown)

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

static void need_dns(void) {
  const char *v = getenv("CPORT_TEST_DNS");
  if (!v || strcmp(v, "1") != 0)
    SUP_FAIL("CPORT_TEST_DNS is not set: run this suite under test/dns/testns, which "
             "provides the test name server (no lookup may reach the real one)");
}

/* A context of its own with a pool of threads workers, and its queue. */
static cport_ctx *pool_ctx(int threads, cport_queue **q) {
  cport_ctx_options opts;
  cport_ctx *ctx;
  memset(&opts, 0, sizeof opts);
  opts.backend = sup_backend();
  opts.threadpool_size = threads;
  SUP_RC(cport_ctx_create(&ctx, &opts), CPORT_OK);
  SUP_RC(cport_queue_create(ctx, q), CPORT_OK);
  return ctx;
}

/* The final message of queue handle h (socket 0), checked: op, tag,
 * status. */
static cport_msg expect_job(cport_queue *q, cport_handle h, int op, int tag, int status) {
  char b[256];
  cport_msg m = expect_final_for(q, 0, h, SUP_TIMEOUT, NULL);
  SUP_ASSERT((int)m.op == op && (int)m.tag == tag && m.status == status,
             "message %s, expected %s %s %s", sup_msg_str(&m, b, sizeof b), sup_op_name(op),
             sup_tag_name(tag), sup_rc_name(status));
  SUP_EQ(m.socket, 0);
  SUP_ASSERT(m.meta == NULL, "job message with meta %p", m.meta);
  return m;
}

static int count_entries(const cport_addrinfo *ai) {
  int n = 0;
  for (; ai; ai = ai->next) n++;
  return n;
}

/* Whether list holds address text (no port) with port, of socket type. */
static int has_addr(const cport_addrinfo *ai, const char *ip, uint16_t port, int type) {
  cport_addr want;
  SUP_RC(cport_addr_init(&want, ip, port), CPORT_OK);
  for (; ai; ai = ai->next)
    if (sup_addr_equal(&ai->addr, &want) && (type == 0 || ai->type == type)) return 1;
  return 0;
}

/* Every entry is a stream or datagram entry with the matching protocol. */
static void check_entries(const cport_addrinfo *ai) {
  for (; ai; ai = ai->next) {
    SUP_ASSERT(ai->type == CPORT_SOCK_STREAM || ai->type == CPORT_SOCK_DGRAM, "entry type %d",
               ai->type);
    SUP_EQ(ai->protocol, ai->type == CPORT_SOCK_STREAM ? 6 : 17);
    SUP_ASSERT(ai->addr.family == CPORT_AF_INET || ai->addr.family == CPORT_AF_INET6,
               "entry family %d", ai->addr.family);
  }
}

/* A lookup in the background: its status, and its list in *out. */
static int resolve_async(cport_queue *q, const char *host, const char *service,
                         const cport_resolve_hints *hints, cport_addrinfo **out) {
  cport_handle h = 0;
  cport_addrinfo *now = NULL;
  int rc = cport_resolve(q, host, service, hints, CPORT_NOWAIT, &now, &h);
  if (rc != CPORT_COMPLETION) {
    *out = now;
    return rc;
  }
  SUP_ASSERT(h != 0 && now == NULL, "pending resolve: handle %llu, result %p",
             (unsigned long long)h, (void *)now);
  cport_msg m = expect_final_for(q, 0, h, SUP_TIMEOUT, NULL);
  SUP_EQ(m.op, CPORT_OP_RESOLVE);
  SUP_EQ(m.tag, CPORT_TAG_COMPLETION);
  *out = (cport_addrinfo *)m.buf;
  if (m.status == CPORT_OK) {
    SUP_ASSERT(m.buf != NULL && (m.flags & CPORT_MSG_ALLOCATED), "answer without a list");
    SUP_EQ(m.bytes, count_entries(*out));
  } else {
    SUP_ASSERT(m.buf == NULL && m.bytes == 0, "failed lookup with a list");
  }
  return m.status;
}

/* ------------------------------------------------------------------------ */
/* Work                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct counter {
  atomic_int ran;
} counter;

static void count_fn(void *arg) { atomic_fetch_add(&((counter *)arg)->ran, 1); }

static void test_work_runs_once(void **state) {
  sup_env *e = (sup_env *)*state;
  counter c;
  cport_handle h = 0;
  atomic_init(&c.ran, 0);
  SUP_RC(cport_work(e->q, count_fn, &c, &h), CPORT_COMPLETION);
  SUP_ASSERT(h != 0, "no handle");
  cport_msg m = expect_job(e->q, h, CPORT_OP_WORK, CPORT_TAG_COMPLETION, CPORT_OK);
  SUP_ASSERT(m.user_ptr == &c, "user_ptr %p, expected %p", m.user_ptr, (void *)&c);
  SUP_ASSERT(m.buf == NULL && m.bytes == 0 && m.flags == 0, "work message with a buffer");
  SUP_EQ(atomic_load(&c.ran), 1);
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_ENOTFOUND);
  expect_no_msg(e->q, 50);
}

static void test_work_many(void **state) {
  sup_env *e = (sup_env *)*state;
  const int n = sup_scale(10000, 2000);
  counter c;
  atomic_init(&c.ran, 0);
  for (int i = 0; i < n; i++) {
    cport_handle h;
    SUP_RC(cport_work(e->q, count_fn, &c, &h), CPORT_COMPLETION);
  }
  /* The suite's tracker fails any second message of a handle. */
  for (int i = 0; i < n; i++) {
    cport_msg m = expect_msg(e->q, SUP_TIMEOUT);
    SUP_EQ(m.op, CPORT_OP_WORK);
    SUP_EQ(m.status, CPORT_OK);
  }
  SUP_EQ(atomic_load(&c.ran), n);
  expect_no_msg(e->q, 50);
}

/* Work that holds its worker until released (or 5 s pass). */
typedef struct gate {
  atomic_int started, release, ran;
} gate;

static void gate_init(gate *g) {
  atomic_init(&g->started, 0);
  atomic_init(&g->release, 0);
  atomic_init(&g->ran, 0);
}

static void gate_fn(void *arg) {
  gate *g = (gate *)arg;
  atomic_fetch_add(&g->started, 1);
  uint64_t until = sup_now_ms() + SUP_TIMEOUT;
  while (!atomic_load(&g->release) && sup_now_ms() < until) sup_sleep_ms(1);
  atomic_fetch_add(&g->ran, 1);
}

static void wait_started(gate *g, int n) {
  uint64_t until = sup_now_ms() + SUP_TIMEOUT;
  while (atomic_load(&g->started) < n && sup_now_ms() < until) sup_sleep_ms(1);
  SUP_ASSERT(atomic_load(&g->started) >= n, "%d of %d gated jobs started", atomic_load(&g->started),
             n);
}

static void test_work_cancel_before_start(void **state) {
  (void)state;
  cport_queue *q;
  cport_ctx *ctx = pool_ctx(1, &q);
  gate g;
  counter c;
  cport_handle hg, hc;
  gate_init(&g);
  atomic_init(&c.ran, 0);
  SUP_RC(cport_work(q, gate_fn, &g, &hg), CPORT_COMPLETION);
  wait_started(&g, 1);
  SUP_RC(cport_work(q, count_fn, &c, &hc), CPORT_COMPLETION);
  SUP_RC(cport_queue_cancel(q, hc), CPORT_OK);
  /* The abort comes at once, while the only worker is still busy. */
  cport_msg m = expect_job(q, hc, CPORT_OP_WORK, CPORT_TAG_ABORT, CPORT_ECANCELED);
  SUP_ASSERT(m.user_ptr == &c, "abort user_ptr %p", m.user_ptr);
  SUP_RC(cport_queue_cancel(q, hc), CPORT_ENOTFOUND);
  atomic_store(&g.release, 1);
  expect_job(q, hg, CPORT_OP_WORK, CPORT_TAG_COMPLETION, CPORT_OK);
  expect_no_msg(q, 100);
  SUP_EQ(atomic_load(&c.ran), 0);
  cport_ctx_destroy(ctx);
}

static void test_work_cancel_running(void **state) {
  (void)state;
  cport_queue *q;
  cport_ctx *ctx = pool_ctx(2, &q);
  gate g;
  cport_handle h;
  gate_init(&g);
  SUP_RC(cport_work(q, gate_fn, &g, &h), CPORT_COMPLETION);
  wait_started(&g, 1);
  /* Started work runs to its end: the cancel says so and does not wait. */
  SUP_RC(cport_queue_cancel(q, h), CPORT_EBUSY);
  expect_no_msg(q, 50);
  atomic_store(&g.release, 1);
  expect_job(q, h, CPORT_OP_WORK, CPORT_TAG_COMPLETION, CPORT_OK);
  SUP_EQ(atomic_load(&g.ran), 1);
  cport_ctx_destroy(ctx);
}

static void test_work_pool_of_one(void **state) {
  (void)state;
  cport_queue *q;
  cport_ctx *ctx = pool_ctx(1, &q);
  counter c;
  atomic_init(&c.ran, 0);
  for (int i = 0; i < 200; i++) {
    cport_handle h;
    SUP_RC(cport_work(q, count_fn, &c, &h), CPORT_COMPLETION);
  }
  for (int i = 0; i < 200; i++) {
    cport_msg m = expect_msg(q, SUP_TIMEOUT);
    SUP_EQ(m.status, CPORT_OK);
  }
  SUP_EQ(atomic_load(&c.ran), 200);
  cport_ctx_destroy(ctx);
}

/* A pool of n runs n jobs at once (each waits until all n are running),
 * and never n + 1. */
typedef struct crowd {
  atomic_int running, peak, met;
  int want;
  int wait_ms;
} crowd;

static void crowd_fn(void *arg) {
  crowd *cr = (crowd *)arg;
  int now = atomic_fetch_add(&cr->running, 1) + 1;
  int peak = atomic_load(&cr->peak);
  while (now > peak && !atomic_compare_exchange_weak(&cr->peak, &peak, now)) {
  }
  uint64_t until = sup_now_ms() + (uint64_t)cr->wait_ms;
  while (atomic_load(&cr->running) < cr->want && sup_now_ms() < until) sup_sleep_ms(1);
  if (atomic_load(&cr->running) >= cr->want) atomic_fetch_add(&cr->met, 1);
  sup_sleep_ms(20); /* let the others see the crowd before it thins */
  atomic_fetch_sub(&cr->running, 1);
}

static int crowd_peak(cport_queue *q, int jobs, int want, int wait_ms, int *met) {
  crowd cr;
  atomic_init(&cr.running, 0);
  atomic_init(&cr.peak, 0);
  atomic_init(&cr.met, 0);
  cr.want = want;
  cr.wait_ms = wait_ms;
  for (int i = 0; i < jobs; i++) {
    cport_handle h;
    SUP_RC(cport_work(q, crowd_fn, &cr, &h), CPORT_COMPLETION);
  }
  for (int i = 0; i < jobs; i++) SUP_EQ(expect_msg(q, 3 * SUP_TIMEOUT).status, CPORT_OK);
  *met = atomic_load(&cr.met);
  return atomic_load(&cr.peak);
}

static void test_work_pool_size(void **state) {
  (void)state;
  cport_queue *q;
  cport_ctx *ctx = pool_ctx(3, &q);
  int met;
  /* Three at once: every one of them saw the other two. */
  SUP_EQ(crowd_peak(q, 3, 3, SUP_TIMEOUT, &met), 3);
  SUP_EQ(met, 3);
  /* Never a fourth, however many wait. */
  SUP_EQ(crowd_peak(q, 6, 4, 200, &met), 3);
  SUP_EQ(met, 0);
  cport_ctx_destroy(ctx);
  /* Bad sizes. */
  cport_ctx_options opts;
  memset(&opts, 0, sizeof opts);
  opts.backend = sup_backend();
  opts.threadpool_size = -1;
  SUP_RC(cport_ctx_create(&ctx, &opts), CPORT_EINVAL);
  opts.threadpool_size = CPORT_THREADPOOL_MAX + 1;
  SUP_RC(cport_ctx_create(&ctx, &opts), CPORT_EINVAL);
}

static void release_later(void *arg) {
  sup_sleep_ms(100);
  atomic_store(&((gate *)arg)->release, 1);
}

static void set_env(const char *name, const char *value) {
#ifdef _WIN32
  SUP_ASSERT(_putenv_s(name, value ? value : "") == 0, "_putenv_s %s", name);
#else
  SUP_ASSERT((value ? setenv(name, value, 1) : unsetenv(name)) == 0, "setenv %s", name);
#endif
}

/* CPORT_THREADPOOL_SIZE sizes a pool the options leave at 0; the option
 * wins over it; a bad value is ignored (the default: cores, at least 4). */
static void test_work_pool_size_env(void **state) {
  (void)state;
  cport_queue *q;
  int met;
  set_env("CPORT_THREADPOOL_SIZE", "2");
  cport_ctx *ctx = pool_ctx(0, &q);
  SUP_EQ(crowd_peak(q, 2, 2, SUP_TIMEOUT, &met), 2);
  SUP_EQ(met, 2);
  SUP_EQ(crowd_peak(q, 4, 3, 200, &met), 2);
  cport_ctx_destroy(ctx);
  ctx = pool_ctx(3, &q);
  SUP_EQ(crowd_peak(q, 3, 3, SUP_TIMEOUT, &met), 3);
  cport_ctx_destroy(ctx);
  set_env("CPORT_THREADPOOL_SIZE", "lots");
  ctx = pool_ctx(0, &q);
  SUP_EQ(crowd_peak(q, 4, 4, SUP_TIMEOUT, &met), 4);
  SUP_EQ(met, 4);
  cport_ctx_destroy(ctx);
  set_env("CPORT_THREADPOOL_SIZE", NULL);
}

static void test_work_destroy_ctx(void **state) {
  (void)state;
  cport_queue *q;
  cport_ctx *ctx = pool_ctx(1, &q);
  gate g;
  counter c;
  cport_handle h;
  gate_init(&g);
  atomic_init(&c.ran, 0);
  SUP_RC(cport_work(q, gate_fn, &g, &h), CPORT_COMPLETION);
  wait_started(&g, 1);
  for (int i = 0; i < 50; i++) SUP_RC(cport_work(q, count_fn, &c, &h), CPORT_COMPLETION);
  /* The running job ends only after destroy has begun. */
  sup_thread *t = sup_thread_start(release_later, &g);
  cport_ctx_destroy(ctx); /* drops the 50 waiting, waits for the running one */
  sup_thread_join(t);
  SUP_EQ(atomic_load(&g.ran), 1);
  SUP_EQ(atomic_load(&c.ran), 0);
}

static void test_work_destroy_queue(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_queue *q2;
  gate g;
  counter c;
  cport_handle h;
  gate_init(&g);
  atomic_init(&c.ran, 0);
  SUP_RC(cport_queue_create(e->ctx, &q2), CPORT_OK);
  SUP_RC(cport_work(q2, gate_fn, &g, &h), CPORT_COMPLETION);
  wait_started(&g, 1);
  for (int i = 0; i < 20; i++) SUP_RC(cport_work(q2, count_fn, &c, &h), CPORT_COMPLETION);
  /* The queue goes with its jobs: the running one ends with no message. */
  SUP_RC(cport_queue_destroy(q2), CPORT_OK);
  atomic_store(&g.release, 1);
  SUP_RC(cport_work(e->q, count_fn, &c, &h), CPORT_COMPLETION);
  expect_job(e->q, h, CPORT_OP_WORK, CPORT_TAG_COMPLETION, CPORT_OK);
  expect_no_msg(e->q, 100);
}

static void test_work_bad_args(void **state) {
  sup_env *e = (sup_env *)*state;
  counter c;
  cport_handle h = 99;
  cport_queue *q2;
  SUP_RC(cport_work(NULL, count_fn, &c, &h), CPORT_EINVAL);
  SUP_EQ(h, 0);
  SUP_RC(cport_work(e->q, NULL, &c, &h), CPORT_EINVAL);
  SUP_RC(cport_work(e->q, count_fn, &c, NULL), CPORT_EINVAL);
  /* Forged handles, and another queue's. */
  SUP_RC(cport_queue_cancel(e->q, (cport_handle)3 << 62 | 12345u), CPORT_ENOTFOUND);
  SUP_RC(cport_queue_cancel(e->q, (cport_handle)1 << 62), CPORT_ENOTFOUND);
  SUP_RC(cport_queue_cancel(e->q, ~(cport_handle)0), CPORT_ENOTFOUND);
  SUP_RC(cport_queue_create(e->ctx, &q2), CPORT_OK);
  gate g;
  gate_init(&g);
  atomic_init(&c.ran, 0);
  SUP_RC(cport_work(e->q, gate_fn, &g, &h), CPORT_COMPLETION);
  SUP_RC(cport_queue_cancel(q2, h), CPORT_ENOTFOUND);
  atomic_store(&g.release, 1);
  expect_job(e->q, h, CPORT_OP_WORK, CPORT_TAG_COMPLETION, CPORT_OK);
  SUP_RC(cport_queue_destroy(q2), CPORT_OK);
}

/* ------------------------------------------------------------------------ */
/* Resolution: done now                                                     */
/* ------------------------------------------------------------------------ */

static void test_resolve_numeric_now(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addrinfo *ai = NULL;
  cport_handle h = 7;
  /* No type asked for: one entry per type, as getaddrinfo gives. */
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "8080", NULL, CPORT_NOWAIT, &ai, &h), CPORT_OK);
  SUP_EQ(h, 0);
  SUP_EQ(count_entries(ai), 2);
  check_entries(ai);
  SUP_ASSERT(has_addr(ai, "127.0.0.1", 8080, CPORT_SOCK_STREAM) &&
                 has_addr(ai, "127.0.0.1", 8080, CPORT_SOCK_DGRAM),
             "numeric answer");
  SUP_ASSERT(ai->canonname == NULL, "canonname not asked for");
  cport_addrinfo_free(ai);
  cport_resolve_hints hints = {0, CPORT_SOCK_STREAM, 0};
  SUP_RC(cport_resolve(e->q, "::1", NULL, &hints, 1000, &ai, NULL), CPORT_OK);
  SUP_EQ(count_entries(ai), 1);
  SUP_ASSERT(has_addr(ai, "::1", 0, CPORT_SOCK_STREAM), "v6 numeric answer");
  cport_free(ai); /* one allocation: cport_free releases it too */
  /* The wildcard to bind, and loopback, for a NULL host. */
  hints.flags = CPORT_RESOLVE_PASSIVE;
  SUP_RC(cport_resolve(e->q, NULL, "9", &hints, CPORT_NOWAIT, &ai, &h), CPORT_OK);
  SUP_EQ(count_entries(ai), 2);
  SUP_ASSERT(has_addr(ai, "0.0.0.0", 9, 0) && has_addr(ai, "::", 9, 0), "passive answer");
  cport_addrinfo_free(ai);
  hints.flags = 0;
  hints.family = CPORT_AF_INET;
  SUP_RC(cport_resolve(e->q, NULL, "9", &hints, CPORT_NOWAIT, &ai, &h), CPORT_OK);
  SUP_EQ(count_entries(ai), 1);
  SUP_ASSERT(has_addr(ai, "127.0.0.1", 9, 0), "loopback answer");
  cport_addrinfo_free(ai);
  /* A numeric host of the other family is no address of this one. */
  SUP_RC(cport_resolve(e->q, "::1", "9", &hints, CPORT_NOWAIT, &ai, &h), CPORT_ENONAME);
  SUP_ASSERT(ai == NULL, "list on failure");
  /* A nowait caller may not want the list. */
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "1", NULL, CPORT_NOWAIT, NULL, &h), CPORT_OK);
  expect_no_msg(e->q, 50);
}

static void test_resolve_bad_args(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addrinfo *ai = (cport_addrinfo *)1;
  cport_handle h = 5;
  char longname[2000];
  memset(longname, 'a', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  cport_resolve_hints bad_family = {99, 0, 0}, bad_type = {0, 7, 0}, bad_flags = {0, 0, 0x8000};
  cport_resolve_hints numhost = {0, 0, CPORT_RESOLVE_NUMERIC_HOST};
  cport_resolve_hints numserv = {0, 0, CPORT_RESOLVE_NUMERIC_SERV};
  SUP_RC(cport_resolve(NULL, "127.0.0.1", "1", NULL, CPORT_NOWAIT, &ai, &h), CPORT_EINVAL);
  SUP_ASSERT(ai == NULL && h == 0, "outputs cleared on error");
  SUP_RC(cport_resolve(e->q, NULL, NULL, NULL, CPORT_NOWAIT, &ai, &h), CPORT_EINVAL);
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "1", &bad_family, CPORT_NOWAIT, &ai, &h),
         CPORT_EAFNOSUPPORT);
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "1", &bad_type, CPORT_NOWAIT, &ai, &h), CPORT_EINVAL);
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "1", &bad_flags, CPORT_NOWAIT, &ai, &h), CPORT_EINVAL);
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "70000", NULL, CPORT_NOWAIT, &ai, &h), CPORT_EINVAL);
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "http", &numserv, CPORT_NOWAIT, &ai, &h), CPORT_EINVAL);
  SUP_RC(cport_resolve(e->q, "test.cport", "1", &numhost, CPORT_NOWAIT, &ai, &h), CPORT_ENONAME);
  SUP_RC(cport_resolve(e->q, longname, "1", NULL, CPORT_NOWAIT, &ai, &h), CPORT_EINVAL);
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "1", NULL, CPORT_NOWAIT, &ai, NULL), CPORT_EINVAL);
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "1", NULL, 100, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "1", NULL, -3, &ai, &h), CPORT_EINVAL);
  cport_addrinfo_free(NULL);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Resolution: the system's resolver                                        */
/* ------------------------------------------------------------------------ */

static void test_resolve_localhost(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addrinfo *ai = NULL;
  cport_resolve_hints hints = {0, CPORT_SOCK_STREAM, 0};
  need_dns();
  SUP_RC(resolve_async(e->q, "localhost", "8080", &hints, &ai), CPORT_OK);
  check_entries(ai);
  SUP_ASSERT(has_addr(ai, "127.0.0.1", 8080, 0) || has_addr(ai, "::1", 8080, 0),
             "localhost: neither 127.0.0.1 nor ::1");
  cport_addrinfo_free(ai);
  /* The blocking forms, with a timeout and without. */
  SUP_RC(cport_resolve(e->q, "localhost", "80", &hints, SUP_TIMEOUT, &ai, NULL), CPORT_OK);
  SUP_ASSERT(has_addr(ai, "127.0.0.1", 80, 0) || has_addr(ai, "::1", 80, 0), "blocking");
  cport_addrinfo_free(ai);
  SUP_RC(cport_resolve(e->q, "localhost", "80", &hints, CPORT_INFINITY, &ai, NULL), CPORT_OK);
  SUP_ASSERT(ai != NULL && ai->addr.port == 80, "infinite timeout");
  cport_addrinfo_free(ai);
}

static void test_resolve_dns_names(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addrinfo *ai = NULL;
  cport_resolve_hints stream = {0, CPORT_SOCK_STREAM, 0};
  cport_resolve_hints v6 = {CPORT_AF_INET6, CPORT_SOCK_STREAM, 0};
  cport_resolve_hints canon = {CPORT_AF_INET, CPORT_SOCK_STREAM, CPORT_RESOLVE_CANONNAME};
  need_dns();
  SUP_RC(resolve_async(e->q, "test.cport", "443", &stream, &ai), CPORT_OK);
  SUP_EQ(count_entries(ai), 1);
  SUP_ASSERT(has_addr(ai, "127.0.0.1", 443, CPORT_SOCK_STREAM), "test.cport");
  cport_addrinfo_free(ai);
  SUP_RC(resolve_async(e->q, "multi.test.cport", "1", &stream, &ai), CPORT_OK);
  SUP_EQ(count_entries(ai), 3);
  SUP_ASSERT(has_addr(ai, "127.0.0.1", 1, 0) && has_addr(ai, "127.0.0.2", 1, 0) &&
                 has_addr(ai, "127.0.0.3", 1, 0),
             "multi.test.cport");
  cport_addrinfo_free(ai);
  SUP_RC(resolve_async(e->q, "v6.test.cport", "1", &v6, &ai), CPORT_OK);
  SUP_ASSERT(count_entries(ai) == 1 && has_addr(ai, "::1", 1, 0), "v6.test.cport");
  cport_addrinfo_free(ai);
  SUP_RC(resolve_async(e->q, "TEST.cport", NULL, &canon, &ai), CPORT_OK);
  SUP_ASSERT(ai->canonname != NULL, "no canonname");
  cport_addrinfo_free(ai);
}

static void test_resolve_failures(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addrinfo *ai = (cport_addrinfo *)1;
  cport_resolve_hints v4 = {CPORT_AF_INET, CPORT_SOCK_STREAM, 0};
  need_dns();
  /* A name nobody knows, the same in the background and blocking. */
  SUP_RC(resolve_async(e->q, "nope.test.cport", "80", NULL, &ai), CPORT_ENONAME);
  SUP_ASSERT(ai == NULL, "list on failure");
  SUP_RC(cport_resolve(e->q, "nope.test.cport", "80", NULL, SUP_TIMEOUT, &ai, NULL), CPORT_ENONAME);
  /* A name with no address of the family asked for. */
  SUP_RC(resolve_async(e->q, "v6.test.cport", "80", &v4, &ai), CPORT_ENONAME);
  /* A server that fails: try again later. */
  SUP_RC(resolve_async(e->q, "servfail.test.cport", "80", &v4, &ai), CPORT_EAGAIN);
}

/* Run alone under `testns --no-server`, whose resolv.conf names a server
 * that is not there (Wine's resolver never reads a changed resolv.conf
 * again, so the case gets a process of its own). */
static void test_resolve_no_server(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addrinfo *ai = (cport_addrinfo *)1;
  cport_resolve_hints v4 = {CPORT_AF_INET, CPORT_SOCK_STREAM, 0};
  const char *v = getenv("CPORT_TEST_DNS");
  SUP_ASSERT(v && !strcmp(v, "none"), "run this case alone under test/dns/testns --no-server");
  SUP_RC(resolve_async(e->q, "test.cport", "80", &v4, &ai), CPORT_EAGAIN);
  SUP_ASSERT(ai == NULL, "list on failure");
  SUP_RC(cport_resolve(e->q, "other.test.cport", "80", &v4, SUP_TIMEOUT, &ai, NULL), CPORT_EAGAIN);
  /* Names the hosts file knows, and addresses, need no server. */
  SUP_RC(resolve_async(e->q, "localhost", "80", &v4, &ai), CPORT_OK);
  cport_addrinfo_free(ai);
  SUP_RC(cport_resolve(e->q, "127.0.0.1", "80", &v4, SUP_TIMEOUT, &ai, NULL), CPORT_OK);
  cport_addrinfo_free(ai);
  expect_no_msg(e->q, 50);
}

static void test_resolve_many(void **state) {
  sup_env *e = (sup_env *)*state;
  const int n = sup_scale(1000, 300);
  cport_resolve_hints v4 = {CPORT_AF_INET, CPORT_SOCK_STREAM, 0};
  cport_handle *hs = (cport_handle *)sup_alloc((size_t)n * sizeof *hs);
  need_dns();
  for (int i = 0; i < n; i++)
    SUP_RC(cport_resolve(e->q, i % 3 == 2 ? "nope.test.cport" : "test.cport", "80", &v4,
                         CPORT_NOWAIT, NULL, &hs[i]),
           CPORT_COMPLETION);
  int ok = 0, noname = 0;
  for (int i = 0; i < n; i++) {
    cport_msg m = expect_msg(e->q, 4 * SUP_TIMEOUT);
    SUP_EQ(m.op, CPORT_OP_RESOLVE);
    if (m.status == CPORT_OK) {
      ok++;
      SUP_ASSERT(has_addr((cport_addrinfo *)m.buf, "127.0.0.1", 80, 0), "answer");
      cport_addrinfo_free((cport_addrinfo *)m.buf);
    } else {
      SUP_RC(m.status, CPORT_ENONAME);
      noname++;
    }
  }
  SUP_EQ(noname, n / 3);
  SUP_EQ(ok, n - n / 3);
  expect_no_msg(e->q, 50);
}

static void test_resolve_cancel(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_resolve_hints v4 = {CPORT_AF_INET, CPORT_SOCK_STREAM, 0};
  cport_handle h;
  need_dns();
  /* A slow answer (1.5 s): the cancel ends it now, the answer is dropped. */
  SUP_RC(cport_resolve(e->q, "slow.test.cport", "80", &v4, CPORT_NOWAIT, NULL, &h),
         CPORT_COMPLETION);
  sup_sleep_ms(50); /* most likely running by now; waiting is fine too */
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_OK);
  cport_msg m = expect_job(e->q, h, CPORT_OP_RESOLVE, CPORT_TAG_ABORT, CPORT_ECANCELED);
  SUP_ASSERT(m.buf == NULL, "abort with a list");
  SUP_RC(cport_queue_cancel(e->q, h), CPORT_ENOTFOUND);
  expect_no_msg(e->q, 2000); /* the late answer makes no message */
  /* Races: whichever wins, exactly one message, the one the cancel says. */
  for (int i = 0; i < sup_scale(200, 50); i++) {
    SUP_RC(cport_resolve(e->q, "test.cport", "80", &v4, CPORT_NOWAIT, NULL, &h), CPORT_COMPLETION);
    if (i % 4) sup_sleep_ms(i % 3);
    int rc = cport_queue_cancel(e->q, h);
    SUP_RC2(rc, CPORT_OK, CPORT_ENOTFOUND);
    m = expect_final_for(e->q, 0, h, SUP_TIMEOUT, NULL);
    if (rc == CPORT_OK) {
      SUP_EQ(m.tag, CPORT_TAG_ABORT);
    } else {
      SUP_EQ(m.tag, CPORT_TAG_COMPLETION);
      cport_addrinfo_free((cport_addrinfo *)m.buf);
    }
  }
  expect_no_msg(e->q, 100);
}

static void test_resolve_blocking_timeout(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addrinfo *ai = (cport_addrinfo *)1;
  cport_resolve_hints v4 = {CPORT_AF_INET, CPORT_SOCK_STREAM, 0};
  need_dns();
  uint64_t t0 = sup_now_us();
  SUP_RC(cport_resolve(e->q, "slow.test.cport", "80", &v4, 200, &ai, NULL), CPORT_ETIMEDOUT);
  SUP_ASSERT(sup_now_us() - t0 >= 200000u, "timed out early");
  SUP_ASSERT(ai == NULL, "list after a timeout");
  SUP_RC(cport_resolve(e->q, "slow.test.cport", "80", &v4, SUP_TIMEOUT, &ai, NULL), CPORT_OK);
  SUP_ASSERT(has_addr(ai, "127.0.0.1", 80, 0), "slow answer");
  cport_addrinfo_free(ai);
  expect_no_msg(e->q, 50); /* a blocking call's messages stay its own */
}

static void test_resolve_destroy_pending(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_resolve_hints v4 = {CPORT_AF_INET, CPORT_SOCK_STREAM, 0};
  cport_queue *q2;
  cport_handle h;
  need_dns();
  SUP_RC(cport_queue_create(e->ctx, &q2), CPORT_OK);
  for (int i = 0; i < 8; i++)
    SUP_RC(cport_resolve(q2, "slow.test.cport", "80", &v4, CPORT_NOWAIT, NULL, &h),
           CPORT_COMPLETION);
  sup_sleep_ms(50);
  SUP_RC(cport_queue_destroy(q2), CPORT_OK); /* answers to come are dropped */
  /* The context goes while lookups still run: it waits for them. */
  SUP_RC(cport_resolve(e->q, "slow.test.cport", "80", &v4, CPORT_NOWAIT, NULL, &h),
         CPORT_COMPLETION);
}

/* ------------------------------------------------------------------------ */
/* Reverse lookups                                                          */
/* ------------------------------------------------------------------------ */

static void test_nameinfo(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_names *names = NULL;
  cport_handle h = 3;
  cport_addr a = sup_loopback(CPORT_AF_INET, 8080);
  need_dns();
  /* Numeric: done now. */
  SUP_RC(cport_nameinfo(e->q, &a, CPORT_NAMEINFO_NUMERIC_HOST | CPORT_NAMEINFO_NUMERIC_SERV,
                        CPORT_NOWAIT, &names, &h),
         CPORT_OK);
  SUP_EQ(h, 0);
  SUP_ASSERT(!strcmp(names->host, "127.0.0.1") && !strcmp(names->service, "8080"), "%s %s",
             names->host, names->service);
  cport_free(names);
  /* A name: in the background (127.0.0.1 is localhost in testns's hosts). */
  SUP_RC(cport_nameinfo(e->q, &a, CPORT_NAMEINFO_NUMERIC_SERV, CPORT_NOWAIT, &names, &h),
         CPORT_COMPLETION);
  cport_msg m = expect_job(e->q, h, CPORT_OP_NAMEINFO, CPORT_TAG_COMPLETION, CPORT_OK);
  SUP_ASSERT(m.flags & CPORT_MSG_ALLOCATED, "nameinfo answer not flagged allocated");
  names = (cport_names *)m.buf;
  SUP_ASSERT(!strcmp(names->host, "localhost") && !strcmp(names->service, "8080"), "%s %s",
             names->host, names->service);
  cport_free(names);
  /* An address with no name, when one is required. */
  cport_addr none;
  SUP_RC(cport_addr_init(&none, "127.0.0.9", 1), CPORT_OK);
  SUP_RC(cport_nameinfo(e->q, &none, CPORT_NAMEINFO_NAME_REQUIRED, SUP_TIMEOUT, &names, NULL),
         CPORT_ENONAME);
  /* Bad input. */
  cport_addr unix_addr;
  SUP_RC(cport_addr_unix(&unix_addr, "/tmp/x"), CPORT_OK);
  SUP_RC(cport_nameinfo(e->q, &unix_addr, 0, SUP_TIMEOUT, &names, NULL), CPORT_EAFNOSUPPORT);
  SUP_RC(cport_nameinfo(e->q, NULL, 0, SUP_TIMEOUT, &names, NULL), CPORT_EINVAL);
  SUP_RC(cport_nameinfo(e->q, &a, 0x100, SUP_TIMEOUT, &names, NULL), CPORT_EINVAL);
  SUP_RC(cport_nameinfo(e->q, &a, CPORT_NAMEINFO_NUMERIC_HOST | CPORT_NAMEINFO_NAME_REQUIRED,
                        SUP_TIMEOUT, &names, NULL),
         CPORT_EINVAL);
  SUP_RC(cport_nameinfo(NULL, &a, 0, CPORT_NOWAIT, NULL, &h), CPORT_EINVAL);
  expect_no_msg(e->q, 50);
}

static const struct CMUnitTest tests[] = {
    NAMES_TEST(test_work_runs_once),
    NAMES_TEST(test_work_many),
    NAMES_TEST(test_work_cancel_before_start),
    NAMES_TEST(test_work_cancel_running),
    NAMES_TEST(test_work_pool_of_one),
    NAMES_TEST(test_work_pool_size),
    NAMES_TEST(test_work_pool_size_env),
    NAMES_TEST(test_work_destroy_ctx),
    NAMES_TEST(test_work_destroy_queue),
    NAMES_TEST(test_work_bad_args),
    NAMES_TEST(test_resolve_numeric_now),
    NAMES_TEST(test_resolve_bad_args),
    NAMES_TEST(test_resolve_localhost),
    NAMES_TEST(test_resolve_dns_names),
    NAMES_TEST(test_resolve_failures),
    NAMES_TEST(test_resolve_no_server),
    NAMES_TEST(test_resolve_many),
    NAMES_TEST(test_resolve_cancel),
    NAMES_TEST(test_resolve_blocking_timeout),
    NAMES_TEST(test_resolve_destroy_pending),
    NAMES_TEST(test_nameinfo),
};

int main(int argc, char **argv) {
  int rc = sup_parse_args(argc, argv);
  if (rc != 0) return rc;
  return _cmocka_run_group_tests(sup_group_name("names"), tests, sizeof tests / sizeof tests[0],
                                 NULL, NULL);
}
