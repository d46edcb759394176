/*
 * Conformance: connect (rule 10), accept (rule 9) and hygiene (rule 11).
 * Refused and timed-out connects, RST before accept, what accepted sockets
 * inherit, and running out of descriptors (EMFILE) without spinning.
 */
#include "conformance.h"

#include <stdlib.h>
#include <string.h>

/* A loopback port with nothing listening on it. */
static cport_addr closed_port(sup_env *e, int family) {
  cport_addr a;
  cport_socket l = sup_listener(e->q, family, 0, 0, &a);
  SUP_RC(cport_close(l), CPORT_OK);
  return a;
}

/* ------------------------------------------------------------------------ */
/* Refused                                                                  */
/* ------------------------------------------------------------------------ */

static void test_connect_refused(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr a4 = closed_port(e, CPORT_AF_INET), a6 = closed_port(e, CPORT_AF_INET6);
  cport_socket c;
  cport_handle h = 0;
  sup_loop l;
  sup_op op;

  /* nowait: the completion's status, or select then connect again. */
  c = sup_open(e->q, CPORT_AF_INET);
  sup_loop_init(&l, e->q);
  sup_op_connect(&op, c, &a4);
  sup_loop_start(&l, &op);
  sup_loop_run_op(&l, &op, SUP_TIMEOUT);
  SUP_RC(op.status, CPORT_ECONNREFUSED);
  if (op.first_rc != CPORT_ECONNREFUSED) SUP_RC(op.first_rc, sup_pending_rc());
  SUP_RC(cport_close(c), CPORT_OK);

  c = sup_open(e->q, CPORT_AF_INET6);
  SUP_RC(sup_connect(e->q, c, &a6), CPORT_ECONNREFUSED);
  SUP_RC(cport_close(c), CPORT_OK);

  /* blocking (a new socket each time: docs/wine.md pitfall 6) */
  c = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(cport_connect(c, &a4, SUP_TIMEOUT, &h), CPORT_ECONNREFUSED);
  SUP_RC(cport_close(c), CPORT_OK);
  c = sup_open(e->q, CPORT_AF_INET6);
  SUP_RC(cport_connect(c, &a6, CPORT_INFINITY, &h), CPORT_ECONNREFUSED);
  SUP_RC(cport_close(c), CPORT_OK);
  sup_loop_free(&l);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Timeout                                                                  */
/* ------------------------------------------------------------------------ */

static void test_connect_timeout(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr addr;
  /* A listener whose backlog (1) is filled with connections nobody
   * accepts: further SYNs are dropped, so connects neither succeed nor
   * fail. (Under Wine the sockets are the Linux host's, so it drops them
   * the same way; native Windows answers a full backlog with RSTs that
   * its connect retries for about 2 s, which also outlasts the timeout.) */
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 1, 0, &addr), c;
  cport_handle h = 0;
  int filled = 0, rc = CPORT_OK;
  sup_loop lp;
  sup_op op;

  for (int i = 0; i < 16; i++) {
    c = sup_open(e->q, CPORT_AF_INET);
    rc = cport_connect(c, &addr, 500, &h);
    if (rc == CPORT_ETIMEDOUT) break;
    SUP_RC(rc, CPORT_OK);
    filled++;
  }
  SUP_RC(rc, CPORT_ETIMEDOUT);
  SUP_ASSERT(filled >= 1, "the backlog took %d connections", filled);

  /* The test proper: 200 ms. */
  c = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(cport_connect(c, &addr, 200, &h), CPORT_ETIMEDOUT);
  /* The timed-out attempt was cancelled: no message for it, ever. */
  expect_no_msg(e->q, SUP_QUIET);
  SUP_RC(cport_close(c), CPORT_OK);
  expect_no_msg(e->q, 50);

  /* A nowait connect to the same full backlog stays pending until
   * cancelled, and then ends once. */
  c = sup_open(e->q, CPORT_AF_INET);
  sup_loop_init(&lp, e->q);
  sup_op_connect(&op, c, &addr);
  sup_loop_start(&lp, &op);
  SUP_RC(op.first_rc, sup_pending_rc());
  expect_no_msg(e->q, SUP_QUIET);
  SUP_RC(cport_cancel(c, op.handle), CPORT_OK);
  if (sup_select_mode()) {
    sup_mark_ended(c, op.handle);
  } else {
    cport_msg m = expect_msg_for(e->q, c, op.handle, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_EQ(m.op, CPORT_OP_CONNECT);
    SUP_RC(m.status, CPORT_ECANCELED);
  }
  sup_loop_free(&lp);
  SUP_RC(cport_close(c), CPORT_OK);
  SUP_RC(cport_close(l), CPORT_OK);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Rule 9: RST before accept                                                */
/* ------------------------------------------------------------------------ */

/* Accept until the connection from good_port comes; every accept must
 * succeed (a reset connection is either skipped by the library or handed
 * over as a socket that is simply dead). */
static cport_socket accept_the_good_one(sup_env *e, cport_socket l, uint16_t good_port) {
  for (int attempt = 0; attempt < 4; attempt++) {
    cport_socket s = 0;
    cport_addr peer;
    int rc = sup_accept(e->q, l, &s);
    SUP_RC(rc, CPORT_OK); /* no error surfaces */
    memset(&peer, 0, sizeof peer);
    if (cport_peername(s, &peer) == CPORT_OK && peer.port == good_port) return s;
    SUP_RC(cport_close(s), CPORT_OK);
  }
  SUP_FAIL("the good connection was never accepted");
}

static void rst_then_good(sup_env *e, int accept_first) {
  cport_addr addr, cname;
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &addr), c, s;
  sup_loop lp;
  sup_op pre;
  char out[32], in[32];

  sup_loop_init(&lp, e->q);
  if (accept_first) {
    sup_op_accept(&pre, l);
    sup_loop_start(&lp, &pre);
    SUP_RC(pre.first_rc, sup_pending_rc());
  }
  for (int i = 0; i < 3; i++) {
    sup_raw r = sup_raw_connect(&addr);
    SUP_ASSERT(r != -1, "raw connect");
    sup_raw_reset(r);
  }
  sup_settle(e->q, 50);
  c = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(sup_connect(e->q, c, &addr), CPORT_OK);
  SUP_RC(cport_sockname(c, &cname), CPORT_OK);
  if (accept_first) {
    /* The accept that was pending must end without an error. */
    cport_addr peer;
    sup_loop_run_op(&lp, &pre, SUP_TIMEOUT);
    SUP_RC(pre.status, CPORT_OK);
    memset(&peer, 0, sizeof peer);
    if (cport_peername(pre.accepted, &peer) == CPORT_OK && peer.port == cname.port)
      s = pre.accepted;
    else {
      SUP_RC(cport_close(pre.accepted), CPORT_OK);
      s = accept_the_good_one(e, l, cname.port);
    }
  } else {
    s = accept_the_good_one(e, l, cname.port);
  }
  sup_loop_free(&lp);
  sup_pattern(out, sizeof out, 0, 60);
  sup_send_all(e->q, c, out, sizeof out);
  sup_recv_exact(e->q, s, in, sizeof in);
  sup_check_pattern(in, sizeof in, 0, 60, "good connection after RSTs");
  sup_send_all(e->q, s, in, sizeof in);
  sup_recv_exact(e->q, c, out, sizeof out);
  sup_check_pattern(out, sizeof out, 0, 60, "echo on the good connection");
  /* Nothing about the resets reached the queue. */
  expect_no_msg(e->q, SUP_QUIET);
}

static void test_rst_before_accept(void **state) {
  sup_env *e = (sup_env *)*state;
  rst_then_good(e, 0);
  rst_then_good(e, 1);
}

/* ------------------------------------------------------------------------ */
/* Rule 11: what accepted sockets inherit; nothing is inheritable by exec   */
/* ------------------------------------------------------------------------ */

static void inherit_case(sup_env *e, unsigned listener_mode) {
  cport_queue *q2 = NULL;
  cport_addr addr;
  cport_socket l, c, s = 0;
  cport_info info;
  sup_loop lc, ls;
  sup_op cop, aop;
  char out[100], in[100];

  SUP_RC(cport_queue_create(e->ctx, &q2), CPORT_OK);
  l = sup_open_flags(q2, CPORT_AF_INET, listener_mode);
  addr = sup_loopback(CPORT_AF_INET, 0);
  SUP_RC(cport_bind(l, &addr), CPORT_OK);
  SUP_RC(cport_listen(l, 0), CPORT_OK);
  SUP_RC(cport_sockname(l, &addr), CPORT_OK);
  /* The client lives in e->q, the listener in q2. */
  c = sup_open(e->q, CPORT_AF_INET);
  sup_loop_init(&lc, e->q);
  sup_loop_init(&ls, q2);
  sup_op_connect(&cop, c, &addr);
  sup_loop_start(&lc, &cop);
  sup_op_accept(&aop, l);
  sup_loop_start(&ls, &aop);
  sup_loop_run_op(&ls, &aop, SUP_TIMEOUT); /* waiting on q2 drives the poller for both */
  sup_loop_run_op(&lc, &cop, SUP_TIMEOUT);
  SUP_RC(aop.status, CPORT_OK);
  SUP_RC(cop.status, CPORT_OK);
  s = aop.accepted;
  SUP_RC(cport_info_get(s, &info), CPORT_OK);
  SUP_ASSERT(info.owner == q2, "the accepted socket belongs to the listener's owner");
  SUP_EQ(info.select_mode, (listener_mode & CPORT_OPEN_SELECT) ? 1 : 0);
  SUP_EQ(info.family, CPORT_AF_INET);
  SUP_EQ(info.type, CPORT_SOCK_STREAM);
  SUP_EQ(info.connected, 1);
  /* Its messages go to q2, in its own mode. */
  sup_pattern(out, sizeof out, 0, 61);
  sup_send_all(e->q, c, out, sizeof out);
  sup_recv_exact(q2, s, in, sizeof in);
  sup_check_pattern(in, sizeof in, 0, 61, "data on the accepted socket");
  sup_send_all(q2, s, in, sizeof in);
  sup_recv_exact(e->q, c, out, sizeof out);
  sup_check_pattern(out, sizeof out, 0, 61, "echo from the accepted socket");
  expect_no_msg(e->q, 20);
  expect_no_msg(q2, 20);
  sup_loop_free(&lc);
  sup_loop_free(&ls);
  SUP_RC(cport_close(s), CPORT_OK);
  SUP_RC(cport_close(l), CPORT_OK);
  SUP_RC(cport_queue_destroy(q2), CPORT_OK);
}

static void test_accept_inherits(void **state) {
  sup_env *e = (sup_env *)*state;
#ifndef _WIN32
  int before = sup_inheritable_fds();
#endif
  /* The listener in this run's mode, then in the other mode. */
  inherit_case(e, sup_mode_flags());
  inherit_case(e, sup_mode_flags() ^ CPORT_OPEN_SELECT);
#ifndef _WIN32
  {
    /* Every descriptor the library made (poller, listener, client,
     * accepted socket) is close-on-exec. Windows sockets are checked for
     * WSA_FLAG_NO_HANDLE_INHERIT by the backend's own tests: a SOCKET is
     * not reachable through cport.h. */
    sup_pair p;
    sup_make_pair(e->q, CPORT_AF_INET6, &p);
    SUP_EQ(sup_inheritable_fds(), before);
  }
#endif
}

/* ------------------------------------------------------------------------ */
/* Rule 9: EMFILE is reported once per attempt and never spins the poller.  */
/* POSIX only: it needs a per-process descriptor limit (RLIMIT_NOFILE) and  */
/* fork. Windows has no per-process socket limit to run into, so there is   */
/* no EMFILE to provoke there.                                              */
/* ------------------------------------------------------------------------ */

#ifndef _WIN32
#define CK(cond, code, ...)                                                                        \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "emfile child (%s mode), check %d failed: ", sup_mode_name(), code);         \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
      return code;                                                                                 \
    }                                                                                              \
  } while (0)

/* Wait for one message; 1 if it came. */
static int child_wait(cport_queue *q, cport_msg *m, int ms) { return cport_wait(q, m, 1, ms) == 1; }

/* A child's context, queue and listener on a loopback port (*a): 0, or
 * the number of the check that failed. */
static int child_listener(cport_ctx **ctx, cport_queue **q, cport_socket *l, cport_addr *a) {
  cport_ctx_options opts;
  memset(&opts, 0, sizeof opts);
  opts.backend = sup_backend();
  CK(cport_ctx_create(ctx, &opts) == CPORT_OK, 1, "ctx");
  CK(cport_queue_create(*ctx, q) == CPORT_OK, 2, "queue");
  CK(cport_open(*q, CPORT_AF_INET, CPORT_SOCK_STREAM, sup_mode_flags(), l) == CPORT_OK, 3, "open");
  CK(cport_addr_init(a, "127.0.0.1", 0) == CPORT_OK, 4, "addr");
  CK(cport_bind(*l, a) == CPORT_OK && cport_listen(*l, 16) == CPORT_OK, 5, "bind/listen");
  CK(cport_sockname(*l, a) == CPORT_OK, 6, "sockname");
  return 0;
}

static int emfile_child(void *arg) {
  cport_ctx *ctx = NULL;
  cport_queue *q = NULL;
  cport_socket l = 0, acc = 0;
  cport_addr a;
  cport_handle h = 0, h2 = 0;
  cport_msg m;
  int rc, sel = sup_select_mode();
  double cpu0, cpu1;
  char byte = 0;
  size_t n = 0;
  (void)arg;

  rc = child_listener(&ctx, &q, &l, &a);
  if (rc != 0) return rc;
  /* Attempt 1 is pending before the table fills: the connection then
   * arrives at a full table. */
  rc = cport_accept(l, CPORT_NOWAIT, &acc, &h);
  CK(rc == (sel ? CPORT_SELECT : CPORT_COMPLETION), 10, "accept returned %s", sup_rc_name(rc));
  CK(sup_fill_fds() > 0, 7, "could not fill the descriptor table");
  CK(sup_child_report(a.port) == 0, 11, "report");
  CK(child_wait(q, &m, SUP_TIMEOUT), 12, "no message for the accept");
  CK(m.handle == h && m.socket == l && m.op == CPORT_OP_ACCEPT, 13, "wrong message");
  if (sel) {
    CK(m.tag == CPORT_TAG_SELECT, 14, "tag %s", sup_tag_name(m.tag));
    rc = cport_accept(l, CPORT_NOWAIT, &acc, &h);
    CK(rc == CPORT_EMFILE, 15, "accept after select returned %s", sup_rc_name(rc));
  } else {
    CK(m.tag == CPORT_TAG_COMPLETION && m.status == CPORT_EMFILE, 16, "completion %s %s",
       sup_tag_name(m.tag), sup_rc_name(m.status));
  }
  /* Reported once, and the poller idles while the connection waits. */
  cpu0 = sup_cpu_seconds();
  rc = cport_wait(q, &m, 1, 1000);
  cpu1 = sup_cpu_seconds();
  CK(rc == 0, 17, "a second message after EMFILE: %s %s", sup_tag_name(m.tag),
     sup_rc_name(m.status));
  CK(cpu1 - cpu0 < 0.3, 18, "%.3f s of CPU in 1 s of waiting with a full table: the poller spins",
     cpu1 - cpu0);

  /* Attempt 2, still full: reported again, once (at once, or by one
   * message). */
  rc = cport_accept(l, CPORT_NOWAIT, &acc, &h2);
  if (rc == sup_pending_rc()) {
    CK(child_wait(q, &m, SUP_TIMEOUT), 20, "no message for attempt 2");
    CK(m.handle == h2, 21, "wrong handle");
    if (sel) {
      CK(m.tag == CPORT_TAG_SELECT, 22, "tag");
      rc = cport_accept(l, CPORT_NOWAIT, &acc, &h2);
    } else {
      rc = m.status;
    }
  }
  CK(rc == CPORT_EMFILE, 23, "attempt 2 ended with %s", sup_rc_name(rc));
  cpu0 = sup_cpu_seconds();
  rc = cport_wait(q, &m, 1, 1000);
  cpu1 = sup_cpu_seconds();
  CK(rc == 0, 24, "a second message after EMFILE (attempt 2)");
  CK(cpu1 - cpu0 < 0.3, 25, "%.3f s of CPU in 1 s: the poller spins", cpu1 - cpu0);

  /* With descriptors free again the waiting connection is accepted. */
  sup_release_fds(16);
  rc = cport_accept(l, CPORT_NOWAIT, &acc, &h);
  if (rc == sup_pending_rc()) {
    CK(child_wait(q, &m, SUP_TIMEOUT), 30, "no message for attempt 3");
    if (sel)
      rc = cport_accept(l, CPORT_NOWAIT, &acc, &h);
    else {
      rc = m.status;
      acc = m.accepted;
    }
  }
  CK(rc == CPORT_OK && acc != 0, 31, "accept with free descriptors: %s", sup_rc_name(rc));
  rc = cport_recv(acc, &byte, 1, 0, SUP_TIMEOUT, &n, &h);
  CK(rc == CPORT_OK && n == 1 && byte == 'x', 32, "recv: %s", sup_rc_name(rc));
  return 0;
}

/* A multishot accept (either mode: its messages are completions) that
 * meets a full table ends with one final completion, CPORT_EMFILE without
 * CPORT_MSG_MORE, after the connections it could accept, and nothing
 * follows; posted again with room, it goes on. io_uring holds such an
 * accept in one multishot poll, which must let go first. */
static int emfile_multi_child(void *arg) {
  cport_ctx *ctx = NULL;
  cport_queue *q = NULL;
  cport_socket l = 0, cli = 0;
  cport_addr a;
  cport_handle h = 0, hc = 0;
  cport_msg m;
  char byte = 0;
  size_t n = 0;
  double cpu0, cpu1;
  int rc;
  (void)arg;

  rc = child_listener(&ctx, &q, &l, &a);
  if (rc != 0) return rc;
  CK(cport_accept_multi(l, &h) == CPORT_COMPLETION, 7, "accept_multi");
  /* One connection accepted while there is room. */
  CK(cport_open(q, CPORT_AF_INET, CPORT_SOCK_STREAM, 0, &cli) == CPORT_OK, 8, "client");
  rc = cport_connect(cli, &a, SUP_TIMEOUT, &hc);
  CK(rc == CPORT_OK, 9, "connect: %s", sup_rc_name(rc));
  CK(child_wait(q, &m, SUP_TIMEOUT), 10, "no message for the first connection");
  CK(m.op == CPORT_OP_ACCEPT && m.status == CPORT_OK && (m.flags & CPORT_MSG_MORE), 11,
     "first connection: %s %s", sup_tag_name(m.tag), sup_rc_name(m.status));
  CK(sup_fill_fds() > 0, 12, "could not fill the descriptor table");
  CK(sup_child_report(a.port) == 0, 13, "report");
  CK(child_wait(q, &m, SUP_TIMEOUT), 14, "no final message at a full table");
  CK(m.socket == l && m.op == CPORT_OP_ACCEPT && m.tag == CPORT_TAG_COMPLETION &&
         m.status == CPORT_EMFILE && !(m.flags & CPORT_MSG_MORE),
     15, "final message %s %s flags %#x", sup_tag_name(m.tag), sup_rc_name(m.status), m.flags);
  cpu0 = sup_cpu_seconds();
  rc = cport_wait(q, &m, 1, 1000);
  cpu1 = sup_cpu_seconds();
  CK(rc == 0, 16, "a message after the final one: %s %s", sup_tag_name(m.tag),
     sup_rc_name(m.status));
  CK(cpu1 - cpu0 < 0.3, 17, "%.3f s of CPU in 1 s: the poller spins", cpu1 - cpu0);
  CK(cport_cancel(l, h) == CPORT_ENOTFOUND, 18, "cancel after the final message");
  /* Room again: a new multishot accept takes the waiting connection. */
  sup_release_fds(16);
  CK(cport_accept_multi(l, &h) == CPORT_COMPLETION, 19, "accept_multi again");
  CK(child_wait(q, &m, SUP_TIMEOUT), 20, "no message for the waiting connection");
  CK(m.handle == h && m.status == CPORT_OK && (m.flags & CPORT_MSG_MORE) && m.accepted != 0, 21,
     "accepted: %s %s", sup_tag_name(m.tag), sup_rc_name(m.status));
  rc = cport_recv(m.accepted, &byte, 1, 0, SUP_TIMEOUT, &n, &h);
  CK(rc == CPORT_OK && n == 1 && byte == 'x', 22, "recv: %s", sup_rc_name(rc));
  return 0;
}

/* Runs child in a process of its own, connects to the port it reports and
 * sends it one byte. */
static void run_emfile_child(int (*child_fn)(void *)) {
  sup_child child;
  uint32_t port = 0;
  cport_addr addr;
  sup_raw r[3];
  int rc;

  SUP_ASSERT(sup_child_start(&child, child_fn, NULL) == 0, "fork");
  if (sup_child_read(&child, &port, 10000) != 0) {
    rc = sup_child_wait(&child, 1000);
    SUP_FAIL("the child did not report its port (exit code %d)", rc);
  }
  /* One connection per accept attempt. Natively the first waits in the
   * backlog through both EMFILE attempts and the third attempt accepts it.
   * Under valgrind (the valgrind preset) the descriptor limit is
   * valgrind's own (its descriptors sit above it): accept4 succeeds in
   * the kernel and valgrind closes the new descriptor and answers EMFILE,
   * so each attempt consumes a connection; the third still finds one. */
  addr = sup_loopback(CPORT_AF_INET, (uint16_t)port);
  for (int i = 0; i < 3; i++) {
    r[i] = sup_raw_connect(&addr);
    SUP_ASSERT(r[i] != -1, "connect %d to the child", i);
    SUP_ASSERT(sup_raw_send(r[i], "x", 1) == 0, "send to the child");
  }
  rc = sup_child_wait(&child, 20000);
  for (int i = 0; i < 3; i++) sup_raw_close(r[i]);
  SUP_ASSERT(rc == 0, "the EMFILE child failed with code %d (see its stderr)", rc);
}

static void test_emfile_no_spin(void **state) {
  (void)state;
  run_emfile_child(emfile_child);
}

static void test_emfile_multi_accept(void **state) {
  (void)state;
  run_emfile_child(emfile_multi_child);
}
#endif

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_connect_refused),   CONF_TEST(test_connect_timeout),
    CONF_TEST(test_rst_before_accept), CONF_TEST(test_accept_inherits),
#ifndef _WIN32
    CONF_TEST(test_emfile_no_spin),    CONF_TEST(test_emfile_multi_accept),
#endif
};

const struct CMUnitTest *conf_connect_tests(size_t *count) {
  *count = sizeof tests / sizeof tests[0];
  return tests;
}
