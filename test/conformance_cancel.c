/*
 * Conformance: cancel (rule 3) and close (rule 4). Exactly one message per
 * pending handle (rule 2) is checked by the helpers on every message.
 */
#include "conformance.h"

#include <stdlib.h>
#include <string.h>

/* Read from s until nothing arrives for quiet_ms; check the pattern from
 * offset; returns the byte count. */
static size_t drain(cport_socket s, uint64_t offset, uint32_t seed, int quiet_ms) {
  char *in = (char *)sup_alloc(65536);
  size_t total = 0;
  cport_handle h = 0;
  for (;;) {
    size_t got = 0;
    int rc = cport_recv(s, in, 65536, 0, quiet_ms, &got, &h);
    if (rc == CPORT_ETIMEDOUT && got == 0) return total;
    SUP_RC(rc, CPORT_OK);
    SUP_ASSERT(got > 0, "EOF while draining");
    sup_check_pattern(in, got, offset + total, seed, "drained data");
    total += got;
  }
}

/* ------------------------------------------------------------------------ */
/* Cancel racing a completion loses no byte                                 */
/* ------------------------------------------------------------------------ */

static void test_cancel_race_recv(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  const int iters = sup_scale(400, 60);
  char rbuf[256], out[256], rest[256];
  uint64_t offset = 0;
  int won = 0, cancelled = 0, notfound = 0;
  cport_queue *idle = NULL; /* waiting on it only drives the poller */

  SUP_RC(cport_queue_create(e->ctx, &idle), CPORT_OK);
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  for (int it = 0; it < iters; it++) {
    size_t k = 1 + (size_t)((it * 37) % 200), n = 0, delivered = 0;
    cport_handle h = 0;
    int cr;
    SUP_RC(cport_recv(p.server, rbuf, sizeof rbuf, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
    sup_pattern(out, k, offset, 50);
    n = 0;
    {
      cport_handle hs = 0;
      SUP_RC(cport_send(p.client, out, k, 0, CPORT_NOWAIT, &n, &hs), CPORT_OK);
    }
    /* Vary who wins: cancel at once; or first let the poller run (a
     * single-threaded emulation completes the recv only then), briefly or
     * until the message is surely queued. */
    if (it % 3 == 1) {
      cport_msg none;
      SUP_EQ(cport_wait(idle, &none, 1, CPORT_NOWAIT), 0);
    } else if (it % 3 == 2) {
      cport_msg none;
      SUP_EQ(cport_wait(idle, &none, 1, it % 2), 0);
    }
    cr = cport_cancel(p.server, h);
    SUP_RC2(cr, CPORT_OK, CPORT_ENOTFOUND);
    if (cr == CPORT_ENOTFOUND) notfound++;
    if (sup_select_mode()) {
      if (cr == CPORT_OK) {
        sup_mark_ended(p.server, h); /* no message may follow */
        cancelled++;
      } else {
        cport_msg m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
        SUP_EQ(m.tag, CPORT_TAG_SELECT);
        won++;
      }
    } else {
      cport_msg m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
      SUP_EQ(m.op, CPORT_OP_RECV);
      SUP_ASSERT(m.buf == rbuf, "recv message buffer");
      if (m.tag == CPORT_TAG_COMPLETION) {
        SUP_RC(m.status, CPORT_OK);
        SUP_ASSERT(m.bytes >= 1 && m.bytes <= k, "completion of %zu bytes, %zu were sent", m.bytes,
                   k);
        won++;
      } else {
        SUP_EQ(m.tag, CPORT_TAG_ABORT);
        SUP_RC(m.status, CPORT_ECANCELED);
        SUP_ASSERT(cr == CPORT_OK, "an abort after cancel answered ENOTFOUND");
        SUP_ASSERT(m.bytes <= k, "abort with %zu bytes", m.bytes);
        cancelled++;
      }
      delivered = m.bytes;
      sup_check_pattern(rbuf, delivered, offset, 50, "recv that raced cancel");
    }
    /* Whatever the cancelled recv did not deliver is still in the socket. */
    if (delivered < k) {
      sup_recv_exact(e->q, p.server, rest, k - delivered);
      sup_check_pattern(rest, k - delivered, offset + delivered, 50, "data after cancel");
    }
    offset += k;
  }
  /* Nothing more: every byte was accounted for above, and no handle got a
   * second message (nor a cancelled select handle any). */
  expect_no_msg(e->q, SUP_QUIET);
  SUP_EQ(drain(p.server, offset, 50, 50), 0);
  print_message("cancel race: %d completed, %d cancelled, %d not found\n", won, cancelled,
                notfound);
  SUP_EQ(won + cancelled, iters);
  SUP_RC(cport_queue_destroy(idle), CPORT_OK);
}

/* ------------------------------------------------------------------------ */
/* Cancel of pending ops that nothing races                                 */
/* ------------------------------------------------------------------------ */

static void test_cancel_pending(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[64], out[64];
  size_t n = 0;
  cport_handle h = 0;
  cport_socket acc = 0, c2, s2;
  cport_msg m;
  const size_t big = (size_t)64 << 20;
  char *bigbuf = (char *)sup_alloc(big);
  int rc;

  sup_make_pair(e->q, CPORT_AF_INET, &p);

  /* recv */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  SUP_RC(cport_cancel(p.server, h), CPORT_OK);
  if (sup_select_mode()) {
    sup_mark_ended(p.server, h);
  } else {
    m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_EQ(m.op, CPORT_OP_RECV);
    SUP_RC(m.status, CPORT_ECANCELED);
    SUP_EQ(m.bytes, 0);
  }
  SUP_RC(cport_cancel(p.server, h), CPORT_ENOTFOUND);
  /* Data sent afterwards is not swallowed by the cancelled recv. */
  sup_pattern(out, sizeof out, 0, 51);
  sup_send_all(e->q, p.client, out, sizeof out);
  expect_no_msg(e->q, SUP_QUIET);
  sup_recv_exact(e->q, p.server, in, sizeof in);
  sup_check_pattern(in, sizeof in, 0, 51, "data after a cancelled recv");

  /* accept: the listener stays usable. */
  SUP_RC(cport_accept(p.listener, CPORT_NOWAIT, &acc, &h), sup_pending_rc());
  SUP_RC(cport_cancel(p.listener, h), CPORT_OK);
  if (sup_select_mode()) {
    sup_mark_ended(p.listener, h);
  } else {
    m = expect_msg_for(e->q, p.listener, h, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_EQ(m.op, CPORT_OP_ACCEPT);
    SUP_RC(m.status, CPORT_ECANCELED);
  }
  expect_no_msg(e->q, 50);
  sup_connect_pair(e->q, p.listener, &p.addr, 0, &c2, &s2);
  sup_send_all(e->q, c2, out, 10);
  sup_recv_exact(e->q, s2, in, 10);

  /* send that cannot finish (nobody reads): cancel it; the peer gets
   * exactly the bytes the abort reports (completion mode) or that the
   * calls reported (select mode). */
  sup_pattern(bigbuf, big, 0, 52);
  if (sup_select_mode()) {
    size_t sent = 0;
    rc = CPORT_OK;
    while (sent + 65536 <= big) {
      n = 0;
      rc = cport_send(p.client, bigbuf + sent, 65536, 0, CPORT_NOWAIT, &n, &h);
      sent += n;
      if (rc == CPORT_SELECT) break;
      SUP_RC(rc, CPORT_OK);
    }
    SUP_RC(rc, CPORT_SELECT);
    SUP_RC(cport_cancel(p.client, h), CPORT_OK);
    sup_mark_ended(p.client, h);
    SUP_EQ(drain(p.server, 0, 52, 300), sent);
  } else {
    n = 0;
    SUP_RC(cport_send(p.client, bigbuf, big, 0, CPORT_NOWAIT, &n, &h), CPORT_COMPLETION);
    sup_settle(e->q, 50);
    SUP_RC(cport_cancel(p.client, h), CPORT_OK);
    m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_EQ(m.op, CPORT_OP_SEND);
    SUP_RC(m.status, CPORT_ECANCELED);
    SUP_ASSERT(m.bytes < big, "cancelled send reports all %zu bytes", m.bytes);
    SUP_EQ(drain(p.server, 0, 52, 300), m.bytes);
  }
  expect_no_msg(e->q, SUP_QUIET);
}

/* ------------------------------------------------------------------------ */
/* Cancel of ended and bogus handles                                        */
/* ------------------------------------------------------------------------ */

static void test_cancel_ended_and_bogus(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[64], out[64];
  size_t n = 0;
  cport_handle h = 0;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  /* A handle whose message was delivered. */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  sup_pattern(out, sizeof out, 0, 53);
  sup_send_all(e->q, p.client, out, 10);
  m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
  SUP_EQ(m.tag, sup_select_mode() ? CPORT_TAG_SELECT : CPORT_TAG_COMPLETION);
  SUP_RC(cport_cancel(p.server, h), CPORT_ENOTFOUND);
  if (sup_select_mode()) {
    sup_recv_exact(e->q, p.server, in, 10);
  } else {
    SUP_RC(m.status, CPORT_OK);
    if (m.bytes < 10) sup_recv_exact(e->q, p.server, in + m.bytes, 10 - m.bytes);
  }
  sup_check_pattern(in, 10, 0, 53, "data");
  SUP_RC(cport_cancel(p.server, h), CPORT_ENOTFOUND);

  /* A handle whose message is in the queue, not yet taken: still
   * "not found", and the message is there. */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  sup_send_all(e->q, p.client, out + 10, 10);
  sup_settle(e->q, 100); /* the message is now stashed (taken from the queue) or queued */
  m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
  SUP_RC(cport_cancel(p.server, h), CPORT_ENOTFOUND);
  if (sup_select_mode())
    sup_recv_exact(e->q, p.server, in, 10);
  else if (m.bytes < 10)
    sup_recv_exact(e->q, p.server, in + m.bytes, 10 - m.bytes);
  sup_check_pattern(in, 10, 10, 53, "data");

  /* Bogus handles on sockets with and without pending ops. */
  SUP_RC(cport_cancel(p.server, 0x7766554433221100ull), CPORT_ENOTFOUND);
  SUP_RC(cport_cancel(p.client, 0x7766554433221100ull), CPORT_ENOTFOUND);
  SUP_RC(cport_cancel(p.listener, 0x7766554433221100ull), CPORT_ENOTFOUND);
  SUP_RC2(cport_cancel(p.server, 0), CPORT_ENOTFOUND, CPORT_EINVAL);
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  for (int i = 0; i < 32; i++) {
    cport_handle bogus = sup_rand();
    if (bogus == h || bogus == 0) continue;
    SUP_RC(cport_cancel(p.server, bogus), CPORT_ENOTFOUND);
  }
  /* The real pending op was not disturbed. */
  sup_send_all(e->q, p.client, out + 20, 10);
  m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
  SUP_EQ(m.tag, sup_select_mode() ? CPORT_TAG_SELECT : CPORT_TAG_COMPLETION);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Rule 4: close with pending accept / recv / send                          */
/* ------------------------------------------------------------------------ */

#define NCLOSE 4

static void test_close_pending_ops(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  const int nr = sup_select_mode() ? 1 : NCLOSE; /* select: one per direction */
  const int ns = sup_select_mode() ? 1 : NCLOSE;
  cport_handle ha = 0, hr[NCLOSE], hs[NCLOSE];
  char *rbuf[NCLOSE];
  const size_t big = (size_t)16 << 20;
  char *sbuf = (char *)sup_alloc(big * NCLOSE);
  cport_socket acc = 0;
  size_t n = 0;
  int ir = 0, is = 0, got_accept = 0;
  cport_filter f;
  int base = cport_number_of();
  int rc;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_accept(p.listener, CPORT_NOWAIT, &acc, &ha), sup_pending_rc());
  for (int i = 0; i < nr; i++) {
    rbuf[i] = (char *)sup_alloc(64);
    SUP_RC(cport_recv(p.server, rbuf[i], 64, 0, CPORT_NOWAIT, &n, &hr[i]), sup_pending_rc());
  }
  if (sup_select_mode()) {
    size_t sent = 0;
    rc = CPORT_OK;
    while (sent + 65536 <= big * NCLOSE) {
      n = 0;
      rc = cport_send(p.server, sbuf + sent, 65536, 0, CPORT_NOWAIT, &n, &hs[0]);
      sent += n;
      if (rc == CPORT_SELECT) break;
      SUP_RC(rc, CPORT_OK);
    }
    SUP_RC(rc, CPORT_SELECT);
  } else {
    for (int i = 0; i < ns; i++)
      SUP_RC(cport_send(p.server, sbuf + (size_t)i * big, big, 0, CPORT_NOWAIT, &n, &hs[i]),
             CPORT_COMPLETION);
  }
  sup_settle(e->q, 50);
  SUP_EQ(sup_stash_count(e->q), 0);

  SUP_RC(cport_close(p.server), CPORT_OK);
  SUP_RC(cport_close(p.listener), CPORT_OK);

  /* Exactly one abort (ECLOSED) per pending op, in posting order per
   * direction, and nothing else. */
  for (int k = 0; k < 1 + nr + ns; k++) {
    char b[256];
    cport_msg m;
    if (!sup_wait_msg(e->q, SUP_TIMEOUT, &m))
      SUP_FAIL("after close: %d of %d aborts (accept %d/1, recv %d/%d, send %d/%d)", k, 1 + nr + ns,
               got_accept, ir, nr, is, ns);
    SUP_ASSERT(m.tag == CPORT_TAG_ABORT && m.status == CPORT_ECLOSED,
               "after close: %s (a local close is never a peer reset)",
               sup_msg_str(&m, b, sizeof b));
    if (m.socket == p.listener) {
      SUP_ASSERT(!got_accept && m.handle == ha && m.op == CPORT_OP_ACCEPT, "%s",
                 sup_msg_str(&m, b, sizeof b));
      got_accept = 1;
    } else if (m.op == CPORT_OP_RECV) {
      SUP_ASSERT(ir < nr && m.socket == p.server && m.handle == hr[ir],
                 "recv abort %d out of order: %s", ir, sup_msg_str(&m, b, sizeof b));
      SUP_EQ(m.bytes, 0);
      if (!sup_select_mode()) SUP_ASSERT(m.buf == rbuf[ir], "recv abort buffer");
      ir++;
    } else {
      SUP_ASSERT(is < ns && m.op == CPORT_OP_SEND && m.socket == p.server && m.handle == hs[is],
                 "send abort %d out of order: %s", is, sup_msg_str(&m, b, sizeof b));
      if (!sup_select_mode()) SUP_ASSERT(m.buf == sbuf + (size_t)is * big, "send abort buffer");
      is++;
    }
  }
  expect_no_msg(e->q, 2 * SUP_QUIET);

  /* The handles are dead everywhere, and the registry forgot them. */
  sup_check_ebadf(p.server, "closed with pending ops");
  sup_check_ebadf(p.listener, "closed listener with a pending accept");
  SUP_ASSERT(!sup_listed(p.server, NULL) && !sup_listed(p.listener, NULL), "still listed");
  memset(&f, 0, sizeof f);
  f.owner = e->q;
  SUP_ASSERT(cport_number_of() <= base + 1, "number_of after close");
  SUP_RC(cport_close(p.client), CPORT_OK);
  SUP_EQ(cport_which_sockets(&f, &acc, 1), 0);
  expect_no_msg(e->q, 50);
}

static void test_close_idle_and_reopen(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[16];
  size_t n = 0;
  cport_handle h = 0;
  int rc;

  /* Closing one end: the other end sees EOF (or a reset), never a hang. */
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_close(p.client), CPORT_OK);
  rc = sup_recv(e->q, p.server, in, sizeof in, &n);
  SUP_ASSERT((rc == CPORT_OK && n == 0) || rc == CPORT_ECONNRESET, "recv after peer close: %s %zu",
             sup_rc_name(rc), n);
  SUP_RC(cport_close(p.server), CPORT_OK);
  expect_no_msg(e->q, 50);
  /* A closed listener's port can be listened on again (SO_REUSEADDR on
   * POSIX; a fresh bind with no connection left on Windows). */
  SUP_RC(cport_close(p.listener), CPORT_OK);
  {
    cport_socket l2 = sup_open(e->q, CPORT_AF_INET);
    SUP_RC(cport_bind(l2, &p.addr), CPORT_OK);
    SUP_RC(cport_listen(l2, 0), CPORT_OK);
    SUP_RC(cport_accept(l2, CPORT_NOWAIT, &p.client, &h), sup_pending_rc());
    SUP_RC(cport_close(l2), CPORT_OK);
    cport_msg m = expect_msg_for(e->q, l2, h, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_RC(m.status, CPORT_ECLOSED);
  }
  expect_no_msg(e->q, 50);
}

/* A select handle that cport_cancel ended with CPORT_OK has ended: a
 * deadline on it answers CPORT_ENOTFOUND, as a second cancel does, and no
 * message follows (found by test/api_fuzz.c: io_uring, which keeps the op
 * until the kernel lets go of it, answered CPORT_OK). A completion handle
 * ends with its abort; after that too, CPORT_ENOTFOUND. */
static void test_deadline_after_cancel(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char buf[16];
  size_t n = 0;
  cport_handle h = 0;
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_recv(p.client, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  SUP_RC(cport_cancel(p.client, h), CPORT_OK);
  if (sup_select_mode()) {
    sup_mark_ended(p.client, h);
  } else {
    cport_msg m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_RC(m.status, CPORT_ECANCELED);
  }
  SUP_RC(cport_deadline(p.client, h, 1), CPORT_ENOTFOUND);
  SUP_RC(cport_deadline(p.client, h, CPORT_INFINITY), CPORT_ENOTFOUND);
  SUP_RC(cport_cancel(p.client, h), CPORT_ENOTFOUND);
  expect_no_msg_for(e->q, p.client, h, 50);
}

/* A socket closed with a send pending, whose descriptor number an accepted
 * socket takes at once: the old send must never run on the new socket
 * (found by test/api_fuzz.c: io_uring submitted the send, queued since the
 * last poll, after the close, on the number the accept had reused; and a
 * poll-driven op retried its system call on it after readiness). The peer
 * of the new socket receives nothing. Both stream send kinds. */
static void close_then_reuse(sup_env *e, int use_msg) {
  sup_pair p;
  const size_t len = 1u << 20;
  char *buf = (char *)sup_alloc(len);
  char in[64];
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  /* A connection waiting in the listener's backlog, to be accepted at once. */
  cport_socket c3 = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(sup_connect(e->q, c3, &p.addr), CPORT_OK);
  cport_optval v = {.type = CPORT_VAL_INT, .v.i = 4096};
  SUP_RC(cport_setopt(p.client, CPORT_LEVEL_SOCKET, CPORT_OPT_SOCKET_SNDBUF, &v), CPORT_OK);
  memset(buf, 'x', len);
  size_t sent = 0;
  cport_handle h = 0;
  cport_iovec iov = {buf, len};
  cport_msghdr m;
  memset(&m, 0, sizeof m);
  m.iov = &iov;
  m.iovcnt = 1;
  int rc = use_msg ? cport_sendmsg(p.client, &m, 0, CPORT_NOWAIT, &sent, &h)
                   : cport_send(p.client, buf, len, 0, CPORT_NOWAIT, &sent, &h);
  SUP_RC(rc, sup_pending_rc());
  SUP_RC(cport_close(p.client), CPORT_OK);
  cport_socket s3 = 0;
  cport_handle ah = 0;
  rc = cport_accept(p.listener, CPORT_NOWAIT, &s3, &ah);
  if (rc != CPORT_OK) { /* not at once here (IOCP posts its accepts ahead): wait for it */
    SUP_ASSERT(rc > 0, "accept: %s", sup_rc_name(rc));
    SUP_RC(sup_accept(e->q, p.listener, &s3), CPORT_OK);
  }
  /* the send's one message: its abort (or its completion, or readiness) */
  cport_msg msg = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
  SUP_ASSERT(msg.tag != CPORT_TAG_USER, "tag %s", sup_tag_name(msg.tag));
  size_t n = 0;
  cport_handle rh = 0;
  rc = cport_recv(c3, in, sizeof in, 0, CPORT_NOWAIT, &n, &rh);
  SUP_ASSERT(rc == sup_pending_rc(),
             "the new socket's peer got %s with %zu bytes: the closed "
             "socket's send ran on it",
             sup_rc_name(rc), n);
  expect_no_msg_for(e->q, c3, rh, 100);
  SUP_RC(cport_close(c3), CPORT_OK);
  SUP_RC(cport_close(s3), CPORT_OK);
  sup_stash_drop(e->q);
}

static void test_close_then_reuse_send(void **state) { close_then_reuse((sup_env *)*state, 0); }
static void test_close_then_reuse_sendmsg(void **state) { close_then_reuse((sup_env *)*state, 1); }

/* The same with a recv pending on the closed socket, and bytes waiting
 * for the socket that takes its number: they are that socket's, and the
 * old recv ends with its abort, not with them nor with an end of stream
 * (found by test/api_fuzz.c on io_uring: the old recv ran on the new
 * socket). */
static void test_close_then_reuse_recv(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char in[16], got[5];
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  cport_socket c3 = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(sup_connect(e->q, c3, &p.addr), CPORT_OK);
  sup_send_all(e->q, c3, "hello", 5); /* queued for the socket not yet accepted */
  size_t n = 0;
  cport_handle h = 0;
  SUP_RC(cport_recv(p.client, in, sizeof in, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  SUP_RC(cport_close(p.client), CPORT_OK);
  cport_socket s3 = 0;
  cport_handle ah = 0;
  int rc = cport_accept(p.listener, CPORT_NOWAIT, &s3, &ah);
  if (rc != CPORT_OK) {
    SUP_ASSERT(rc > 0, "accept: %s", sup_rc_name(rc));
    SUP_RC(sup_accept(e->q, p.listener, &s3), CPORT_OK);
  }
  cport_msg m = expect_msg_for(e->q, p.client, h, SUP_TIMEOUT);
  SUP_ASSERT(m.tag == CPORT_TAG_ABORT && m.status == CPORT_ECLOSED,
             "the closed socket's recv ended %s %s with %zu bytes (its peer sent nothing)",
             sup_tag_name(m.tag), sup_rc_name(m.status), m.bytes);
  sup_recv_exact(e->q, s3, got, sizeof got);
  SUP_ASSERT(memcmp(got, "hello", 5) == 0, "the new socket's bytes changed");
  SUP_RC(cport_close(c3), CPORT_OK);
  SUP_RC(cport_close(s3), CPORT_OK);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_cancel_race_recv),       CONF_TEST(test_cancel_pending),
    CONF_TEST(test_cancel_ended_and_bogus), CONF_TEST(test_close_pending_ops),
    CONF_TEST(test_close_idle_and_reopen),  CONF_TEST(test_deadline_after_cancel),
    CONF_TEST(test_close_then_reuse_send),  CONF_TEST(test_close_then_reuse_sendmsg),
    CONF_TEST(test_close_then_reuse_recv),
};

const struct CMUnitTest *conf_cancel_tests(size_t *count) {
  *count = sizeof tests / sizeof tests[0];
  return tests;
}
