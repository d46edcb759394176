/*
 * Conformance: multishot socket operations (rule 13 on sockets).
 * cport_accept_multi and cport_recv_multi: one call answers
 * CPORT_COMPLETION (in select mode too: the messages carry results, not
 * readiness), then one completion per result, each flagged CPORT_MSG_MORE,
 * and exactly one final message per handle (a completion without the flag,
 * or an abort). otp.rcv_outstanding bounds the chunks delivered and not yet
 * released; a multishot handle owns its direction (CPORT_EALREADY).
 *
 * The helpers' queue checks (support.c) already fail a test on an abort
 * flagged CPORT_MSG_MORE, on any message after a handle's final one, and
 * on a second final message.
 */
#include "conformance.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

static cport_optval int_val(int i) {
  cport_optval v;
  memset(&v, 0, sizeof v);
  v.type = CPORT_VAL_INT;
  v.v.i = i;
  return v;
}

/* A blocking send of all of buf (no message in the owner queue). */
static void send_blocking(cport_socket s, const void *buf, size_t len) {
  size_t n = 0;
  cport_handle h = 0;
  SUP_RC(cport_send(s, buf, len, 0, SUP_TIMEOUT, &n, &h), CPORT_OK);
  SUP_EQ(n, len);
}

/* A client connected to addr with a blocking connect (no message). */
static cport_socket connect_client(cport_queue *q, const cport_addr *addr) {
  cport_socket c = sup_open(q, addr->family);
  cport_handle h = 0;
  SUP_RC(cport_connect(c, addr, SUP_TIMEOUT, &h), CPORT_OK);
  return c;
}

/* One byte from a to b, blocking both ways. */
static void byte_across(cport_socket a, cport_socket b, unsigned char value) {
  unsigned char in = (unsigned char)~value;
  size_t n = 0;
  cport_handle h = 0;
  send_blocking(a, &value, 1);
  SUP_RC(cport_recv(b, &in, 1, CPORT_WAITALL, SUP_TIMEOUT, &n, &h), CPORT_OK);
  SUP_EQ(n, 1);
  SUP_EQ(in, value);
}

/* End a single-shot pending op (a plain recv or accept) by cancel: a select
 * handle ends silently, a completion handle with its abort. */
static void cancel_single(cport_queue *q, cport_socket s, cport_handle h) {
  char b[256];
  SUP_RC(cport_cancel(s, h), CPORT_OK);
  if (sup_select_mode()) {
    sup_mark_ended(s, h);
    return;
  }
  cport_msg m = expect_msg_for(q, s, h, SUP_TIMEOUT);
  SUP_ASSERT(m.tag == CPORT_TAG_ABORT && m.status == CPORT_ECANCELED, "cancelled op: %s",
             sup_msg_str(&m, b, sizeof b));
}

/* ------------------------------------------------------------------------ */
/* accept_multi helpers                                                     */
/* ------------------------------------------------------------------------ */

static cport_handle accept_multi(cport_socket l) {
  cport_handle h = 0;
  SUP_RC(cport_accept_multi(l, &h), CPORT_COMPLETION);
  SUP_ASSERT(h != 0, "cport_accept_multi answered CPORT_COMPLETION with handle 0");
  return h;
}

/* One result of an accept_multi: a completion flagged MORE, status OK, a
 * socket. */
static cport_socket check_accepted(const cport_msg *m, cport_socket l, cport_handle h) {
  char b[256];
  SUP_ASSERT(m->socket == l && m->handle == h, "a message of another handle: %s",
             sup_msg_str(m, b, sizeof b));
  SUP_ASSERT(m->tag == CPORT_TAG_COMPLETION && m->op == CPORT_OP_ACCEPT, "accept_multi result: %s",
             sup_msg_str(m, b, sizeof b));
  SUP_ASSERT(m->flags & CPORT_MSG_MORE, "accept_multi result without CPORT_MSG_MORE: %s",
             sup_msg_str(m, b, sizeof b));
  SUP_ASSERT(m->status == CPORT_OK && m->accepted != CPORT_INVALID_SOCKET,
             "accept_multi result: %s", sup_msg_str(m, b, sizeof b));
  return m->accepted;
}

static cport_socket expect_accepted(cport_queue *q, cport_socket l, cport_handle h) {
  cport_msg m = expect_msg_for(q, l, h, SUP_TIMEOUT);
  return check_accepted(&m, l, h);
}

/* The final message of an accept_multi whose every result was taken: an
 * abort with the given status, not flagged MORE. */
static void expect_accept_abort(cport_queue *q, cport_socket l, cport_handle h, int status) {
  char b[256];
  cport_msg m = expect_msg_for(q, l, h, SUP_TIMEOUT);
  SUP_ASSERT(m.tag == CPORT_TAG_ABORT && m.op == CPORT_OP_ACCEPT && m.status == status &&
                 !(m.flags & CPORT_MSG_MORE),
             "final message of accept_multi (expected an abort %s): %s", sup_rc_name(status),
             sup_msg_str(&m, b, sizeof b));
  SUP_EQ(m.accepted, CPORT_INVALID_SOCKET);
}

/* ------------------------------------------------------------------------ */
/* recv_multi helpers: one handle's stream, checked against a pattern       */
/* ------------------------------------------------------------------------ */

typedef struct rm_state {
  cport_queue *q;
  cport_socket s;
  cport_handle h;
  uint32_t seed; /* the sender's sup_pattern */
  uint64_t base; /* stream offset of the handle's first byte */
  size_t max;    /* otp.rcvbuf when posted: no chunk is larger */
  size_t got;    /* bytes delivered so far (chunks and the final message) */
  int chunks;    /* messages flagged CPORT_MSG_MORE */
  int ended;
  cport_msg final;
} rm_state;

static void rm_start(rm_state *r, cport_queue *q, cport_socket s, uint32_t seed, uint64_t base) {
  memset(r, 0, sizeof *r);
  r->q = q;
  r->s = s;
  r->seed = seed;
  r->base = base;
  r->max = (size_t)sup_get_otp_int(s, CPORT_OPT_OTP_RCVBUF);
  SUP_RC(cport_recv_multi(s, &r->h), CPORT_COMPLETION);
  SUP_ASSERT(r->h != 0, "cport_recv_multi answered CPORT_COMPLETION with handle 0");
}

/* Check one message of r's handle and account for it. A data chunk (MORE)
 * or a final completion with data is checked against the pattern; the
 * final message is recorded. Returns the library's buffer, for the caller
 * to cport_free (NULL when the message carries none). */
static void *rm_take(rm_state *r, const cport_msg *m) {
  char b[256];
  SUP_ASSERT(m->socket == r->s && m->handle == r->h, "a message of another handle: %s",
             sup_msg_str(m, b, sizeof b));
  SUP_ASSERT(!r->ended, "a message after the final one: %s", sup_msg_str(m, b, sizeof b));
  SUP_ASSERT(m->op == CPORT_OP_RECV, "recv_multi message with op %s: %s", sup_op_name(m->op),
             sup_msg_str(m, b, sizeof b));
  if (m->flags & CPORT_MSG_MORE) {
    SUP_ASSERT(m->tag == CPORT_TAG_COMPLETION && m->status == CPORT_OK, "recv_multi chunk: %s",
               sup_msg_str(m, b, sizeof b));
    SUP_ASSERT(m->bytes > 0 && m->bytes <= r->max, "recv_multi chunk of %zu bytes (otp.rcvbuf %zu)",
               m->bytes, r->max);
    SUP_ASSERT(m->buf != NULL && (m->flags & CPORT_MSG_ALLOCATED),
               "recv_multi chunk without its allocated buffer: %s", sup_msg_str(m, b, sizeof b));
    sup_check_pattern(m->buf, m->bytes, r->base + r->got, r->seed, "recv_multi chunk");
    r->got += m->bytes;
    r->chunks++;
    return m->buf;
  }
  r->ended = 1;
  r->final = *m;
  if (m->tag == CPORT_TAG_ABORT) {
    /* A chunk that raced the end is a completion; an abort moved nothing. */
    SUP_ASSERT(m->bytes == 0, "recv_multi abort with %zu bytes: %s", m->bytes,
               sup_msg_str(m, b, sizeof b));
    SUP_ASSERT(m->buf == NULL || (m->flags & CPORT_MSG_ALLOCATED),
               "recv_multi abort with a buffer that is not the caller's: %s",
               sup_msg_str(m, b, sizeof b));
    return (m->flags & CPORT_MSG_ALLOCATED) ? m->buf : NULL;
  }
  SUP_ASSERT(m->tag == CPORT_TAG_COMPLETION, "recv_multi final message: %s",
             sup_msg_str(m, b, sizeof b));
  if (m->bytes > 0) {
    /* The chunk that raced a cancel or close ends the handle. */
    SUP_ASSERT(m->status == CPORT_OK && m->bytes <= r->max && m->buf != NULL &&
                   (m->flags & CPORT_MSG_ALLOCATED),
               "recv_multi final chunk: %s", sup_msg_str(m, b, sizeof b));
    sup_check_pattern(m->buf, m->bytes, r->base + r->got, r->seed, "recv_multi final chunk");
    r->got += m->bytes;
    return m->buf;
  }
  /* End of stream (status OK) or an error: no data, no buffer. */
  SUP_ASSERT(m->buf == NULL && !(m->flags & CPORT_MSG_ALLOCATED),
             "recv_multi final message without data carries a buffer: %s",
             sup_msg_str(m, b, sizeof b));
  return NULL;
}

/* The next message of r's handle. With a loop, the messages of its ops (a
 * send in progress) are fed to it meanwhile; without one, other messages
 * are stashed. */
static cport_msg rm_next(rm_state *r, sup_loop *l, int timeout_ms) {
  char b[256];
  uint64_t deadline = sup_now_ms() + (uint64_t)timeout_ms;
  if (!l) return expect_msg_for(r->q, r->s, r->h, timeout_ms);
  for (;;) {
    cport_msg m;
    uint64_t now = sup_now_ms();
    if (now >= deadline)
      SUP_FAIL("no recv_multi message within %d ms (%zu bytes, %d chunks so far)", timeout_ms,
               r->got, r->chunks);
    int step = deadline - now > 100 ? 100 : (int)(deadline - now);
    if (!sup_wait_msg(r->q, step, &m)) continue;
    if (m.tag != CPORT_TAG_USER && m.socket == r->s && m.handle == r->h) return m;
    if (!sup_loop_feed(l, &m)) SUP_FAIL("unexpected message: %s", sup_msg_str(&m, b, sizeof b));
  }
}

/* Take chunks, releasing each at once, until total bytes have come. */
static void rm_collect(rm_state *r, sup_loop *l, size_t total) {
  char b[256];
  while (r->got < total) {
    cport_msg m = rm_next(r, l, SUP_TIMEOUT);
    cport_free(rm_take(r, &m));
    if (r->ended)
      SUP_FAIL("recv_multi ended after %zu of %zu bytes: %s", r->got, total,
               sup_msg_str(&r->final, b, sizeof b));
  }
  SUP_EQ(r->got, total);
}

/* Take messages, releasing each buffer, until the final one; return it. */
static cport_msg rm_finish(rm_state *r, sup_loop *l) {
  while (!r->ended) {
    cport_msg m = rm_next(r, l, SUP_TIMEOUT);
    cport_free(rm_take(r, &m));
  }
  return r->final;
}

static void check_eof_final(const rm_state *r) {
  char b[256];
  SUP_ASSERT(r->final.tag == CPORT_TAG_COMPLETION && r->final.status == CPORT_OK &&
                 r->final.bytes == 0,
             "final message at the peer's end of stream: %s", sup_msg_str(&r->final, b, sizeof b));
}

/* ------------------------------------------------------------------------ */
/* accept_multi                                                             */
/* ------------------------------------------------------------------------ */

/* One call, twenty connections: twenty completions of the one handle, each
 * flagged MORE, each a working socket; cancel ends it with one abort. */
static void test_multi_accept(void **state) {
  sup_env *e = (sup_env *)*state;
  enum { N = 20 };
  cport_addr addr;
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &addr);
  cport_socket cli[N], acc[N];
  uint16_t cli_port[N];
  int peer_of[N], matched[N];
  cport_handle h = accept_multi(l);

  expect_no_msg(e->q, 50); /* nothing before a connection comes */
  for (int i = 0; i < N; i++) {
    cport_addr a;
    cli[i] = connect_client(e->q, &addr);
    SUP_RC(cport_sockname(cli[i], &a), CPORT_OK);
    cli_port[i] = a.port;
    matched[i] = 0;
  }
  /* Every message in the queue is the handle's (the connects blocked). */
  for (int i = 0; i < N; i++) {
    cport_msg m = expect_msg(e->q, SUP_TIMEOUT);
    acc[i] = check_accepted(&m, l, h);
    for (int j = 0; j < i; j++)
      SUP_ASSERT(acc[j] != acc[i], "accepted socket %#llx handed out twice",
                 (unsigned long long)acc[i]);
  }
  /* Each accepted socket is the peer of exactly one client, in the
   * listener's mode, owned by the listener's owner. */
  for (int i = 0; i < N; i++) {
    cport_addr name, peer;
    cport_info info;
    SUP_RC(cport_sockname(acc[i], &name), CPORT_OK);
    SUP_EQ(name.port, addr.port);
    SUP_RC(cport_peername(acc[i], &peer), CPORT_OK);
    peer_of[i] = -1;
    for (int j = 0; j < N; j++)
      if (cli_port[j] == peer.port) peer_of[i] = j;
    SUP_ASSERT(peer_of[i] >= 0, "accepted socket %d's peer port %u is no client's", i,
               (unsigned)peer.port);
    SUP_ASSERT(!matched[peer_of[i]], "client %d accepted twice", peer_of[i]);
    matched[peer_of[i]] = 1;
    memset(&info, 0, sizeof info);
    SUP_RC(cport_info_get(acc[i], &info), CPORT_OK);
    SUP_ASSERT(info.owner == e->q, "accepted socket's owner");
    SUP_EQ(info.select_mode, sup_select_mode());
    SUP_EQ(info.connected, 1);
  }
  /* A byte each way on a few. */
  for (int k = 0; k < 3; k++) {
    int i = k == 0 ? 0 : k == 1 ? N / 2 : N - 1;
    byte_across(cli[peer_of[i]], acc[i], (unsigned char)(0x40 + i));
    byte_across(acc[i], cli[peer_of[i]], (unsigned char)(0x80 + i));
  }
  /* Cancel: exactly one final message, an abort, and nothing after it. */
  SUP_RC(cport_cancel(l, h), CPORT_OK);
  {
    char b[256];
    cport_msg m = expect_msg(e->q, SUP_TIMEOUT);
    SUP_ASSERT(m.socket == l && m.handle == h, "a message of another handle: %s",
               sup_msg_str(&m, b, sizeof b));
    SUP_ASSERT(m.tag == CPORT_TAG_ABORT && m.op == CPORT_OP_ACCEPT && m.status == CPORT_ECANCELED &&
                   !(m.flags & CPORT_MSG_MORE),
               "final message after cancel: %s", sup_msg_str(&m, b, sizeof b));
  }
  expect_no_msg(e->q, SUP_QUIET);
  SUP_RC(cport_cancel(l, h), CPORT_ENOTFOUND);
  for (int i = 0; i < N; i++) {
    SUP_RC(cport_close(cli[i]), CPORT_OK);
    SUP_RC(cport_close(acc[i]), CPORT_OK);
  }
  SUP_RC(cport_close(l), CPORT_OK);
  expect_no_msg(e->q, 50);
}

/* Close (and a deadline) end an accept_multi with one abort; the sockets it
 * accepted live on. */
static void test_multi_accept_close(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr addr;
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &addr);
  cport_handle h = accept_multi(l);
  cport_socket c = connect_client(e->q, &addr);
  cport_socket s = expect_accepted(e->q, l, h);

  SUP_RC(cport_close(l), CPORT_OK);
  expect_accept_abort(e->q, l, h, CPORT_ECLOSED);
  expect_no_msg(e->q, SUP_QUIET);
  SUP_RC(cport_cancel(l, h), CPORT_EBADF);
  byte_across(c, s, 0x5a);
  byte_across(s, c, 0xa5);
  SUP_RC(cport_close(c), CPORT_OK);
  SUP_RC(cport_close(s), CPORT_OK);

  /* A deadline ends it too: an abort with CPORT_ETIMEDOUT. */
  l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &addr);
  h = accept_multi(l);
  c = connect_client(e->q, &addr);
  s = expect_accepted(e->q, l, h);
  SUP_RC(cport_deadline(l, h, 50), CPORT_OK);
  expect_accept_abort(e->q, l, h, CPORT_ETIMEDOUT);
  SUP_RC(cport_cancel(l, h), CPORT_ENOTFOUND);
  SUP_RC(cport_close(l), CPORT_OK);
  expect_no_msg(e->q, SUP_QUIET);
  byte_across(c, s, 0x11);
}

/* ------------------------------------------------------------------------ */
/* recv_multi                                                               */
/* ------------------------------------------------------------------------ */

/* 1 MiB in order, chunk by chunk, each flagged MORE and released; the
 * peer's end of stream is the one final message. */
static void test_multi_recv_stream(void **state) {
  sup_env *e = (sup_env *)*state;
  const size_t total = (size_t)1 << 20, piece = 65536;
  char *out = (char *)sup_alloc(total);
  sup_pair p;
  rm_state r;
  size_t sent = 0, n = 99;
  char tmp[16];

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_EQ(sup_get_otp_int(p.server, CPORT_OPT_OTP_RCVBUF), 16384);
  sup_pattern(out, total, 0, 81);
  /* Data already waiting when the call is made: it still answers
   * CPORT_COMPLETION, and the data comes as messages. */
  send_blocking(p.client, out, piece);
  sent = piece;
  sup_settle(e->q, 20);
  rm_start(&r, e->q, p.server, 81, 0);
  rm_collect(&r, NULL, sent);
  while (sent < total) {
    send_blocking(p.client, out + sent, piece);
    sent += piece;
    rm_collect(&r, NULL, sent);
  }
  SUP_ASSERT(r.chunks >= (int)(total / r.max), "%d chunks for %zu bytes", r.chunks, total);
  /* End of stream: a completion, 0 bytes, no buffer, no MORE. */
  SUP_RC(cport_shutdown(p.client, CPORT_SHUT_WR), CPORT_OK);
  rm_finish(&r, NULL);
  check_eof_final(&r);
  SUP_EQ(r.got, total);
  expect_no_msg(e->q, SUP_QUIET);
  SUP_RC(cport_cancel(p.server, r.h), CPORT_ENOTFOUND);
  /* The direction is free again; the stream stays at its end (rule 7). */
  SUP_RC(sup_recv(e->q, p.server, tmp, sizeof tmp, &n), CPORT_OK);
  SUP_EQ(n, 0);
  expect_no_msg(e->q, 50);
}

/* Cancel: with nothing to read, one abort. Racing data, the handle ends
 * with one final message and no byte is lost: what it did not deliver is
 * still in the socket. A deadline ends it like a cancel. */
static void test_multi_recv_cancel(void **state) {
  sup_env *e = (sup_env *)*state;
  const int iters = sup_scale(60, 15);
  char out[3000], rest[3000];
  sup_pair p;
  rm_state r;
  uint64_t offset = 0;
  int raced = 0, aborted = 0, chunked = 0;
  cport_queue *idle = NULL; /* waiting on it only drives the poller */

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  rm_start(&r, e->q, p.server, 82, 0);
  expect_no_msg(e->q, 50);
  SUP_RC(cport_cancel(p.server, r.h), CPORT_OK);
  rm_finish(&r, NULL);
  SUP_ASSERT(r.final.tag == CPORT_TAG_ABORT && r.final.status == CPORT_ECANCELED,
             "cancel of an idle recv_multi ends with an abort ECANCELED");
  SUP_EQ(r.chunks, 0);
  SUP_RC(cport_cancel(p.server, r.h), CPORT_ENOTFOUND);
  expect_no_msg(e->q, SUP_QUIET);

  SUP_RC(cport_queue_create(e->ctx, &idle), CPORT_OK);
  for (int it = 0; it < iters; it++) {
    size_t k = 1 + (size_t)((it * 397) % (int)sizeof out);
    cport_msg none;
    rm_start(&r, e->q, p.server, 83, offset);
    sup_pattern(out, k, offset, 83);
    send_blocking(p.client, out, k);
    /* Vary who wins: cancel at once, or let the poller run first. */
    if (it % 3 == 1) SUP_EQ(cport_wait(idle, &none, 1, CPORT_NOWAIT), 0);
    if (it % 3 == 2) SUP_EQ(cport_wait(idle, &none, 1, 1 + it % 4), 0);
    SUP_RC(cport_cancel(p.server, r.h), CPORT_OK);
    rm_finish(&r, NULL);
    if (r.final.tag == CPORT_TAG_ABORT) {
      SUP_RC(r.final.status, CPORT_ECANCELED);
      aborted++;
    } else {
      raced++; /* rm_take checked it: status OK, data, no MORE */
    }
    SUP_ASSERT(r.got <= k, "recv_multi delivered %zu bytes, %zu were sent", r.got, k);
    if (r.chunks > 0) chunked++;
    if (r.got < k) {
      sup_recv_exact(e->q, p.server, rest, k - r.got);
      sup_check_pattern(rest, k - r.got, offset + r.got, 83, "data left after the cancel");
    }
    offset += k;
  }
  print_message(
      "recv_multi cancel race: %d ended by a chunk, %d by an abort; %d had chunks first\n", raced,
      aborted, chunked);
  expect_no_msg(e->q, SUP_QUIET);
  SUP_RC(cport_queue_destroy(idle), CPORT_OK);

  /* A deadline: an abort with CPORT_ETIMEDOUT. */
  rm_start(&r, e->q, p.server, 84, 0);
  SUP_RC(cport_deadline(p.server, r.h, 50), CPORT_OK);
  rm_finish(&r, NULL);
  SUP_ASSERT(r.final.tag == CPORT_TAG_ABORT && r.final.status == CPORT_ETIMEDOUT,
             "a deadline ends recv_multi with an abort ETIMEDOUT");
  SUP_EQ(r.chunks, 0);
  expect_no_msg(e->q, SUP_QUIET);
}

/* Close racing data: every message before the last flagged MORE, the last
 * one not (an abort ECLOSED or a completion with data), nothing after. */
static void test_multi_recv_close_race(void **state) {
  sup_env *e = (sup_env *)*state;
  const int iters = sup_scale(30, 8);
  char out[3000];
  cport_addr addr;
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &addr);
  int raced = 0, aborted = 0, chunked = 0;
  cport_queue *idle = NULL;

  SUP_RC(cport_queue_create(e->ctx, &idle), CPORT_OK);
  for (int it = 0; it < iters; it++) {
    size_t k = 1 + (size_t)((it * 613) % (int)sizeof out);
    cport_socket c, s;
    cport_msg none;
    rm_state r;
    sup_connect_pair(e->q, l, &addr, 0, &c, &s);
    rm_start(&r, e->q, s, 85, 0);
    sup_pattern(out, k, 0, 85);
    send_blocking(c, out, k);
    if (it % 3 == 1) SUP_EQ(cport_wait(idle, &none, 1, CPORT_NOWAIT), 0);
    if (it % 3 == 2) SUP_EQ(cport_wait(idle, &none, 1, 1 + it % 4), 0);
    SUP_RC(cport_close(s), CPORT_OK);
    rm_finish(&r, NULL);
    if (r.final.tag == CPORT_TAG_ABORT) {
      SUP_RC(r.final.status, CPORT_ECLOSED);
      aborted++;
    } else {
      SUP_ASSERT(r.final.bytes > 0, "a completion ends a closed recv_multi only with data");
      raced++;
    }
    SUP_ASSERT(r.got <= k, "recv_multi delivered %zu bytes, %zu were sent", r.got, k);
    if (r.chunks > 0) chunked++;
    expect_no_msg_for(e->q, s, r.h, 20);
    SUP_RC(cport_close(c), CPORT_OK);
  }
  print_message("recv_multi close race: %d ended by a chunk, %d by an abort; %d had chunks first\n",
                raced, aborted, chunked);
  SUP_RC(cport_queue_destroy(idle), CPORT_OK);
  expect_no_msg(e->q, SUP_QUIET);
}

/* otp.rcv_outstanding 2: two chunks held, and the socket is not read; each
 * release lets exactly one more through; released as they come, the whole
 * stream arrives in order. Once with 1 KiB chunks, once with the default
 * size (on io_uring, the kernel then receives into its buffer ring and
 * keeps receiving after the pause until its request is stopped: what it
 * took meanwhile must still wait for the releases). */
static void multi_recv_backpressure(sup_env *e, int rcvbuf, size_t total) {
  char *out = (char *)sup_alloc(total);
  void *held[2];
  sup_pair p;
  rm_state r;
  sup_loop l;
  sup_op snd;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  sup_set_otp_int(p.server, CPORT_OPT_OTP_RCV_OUTSTANDING, 2);
  if (rcvbuf) sup_set_otp_int(p.server, CPORT_OPT_OTP_RCVBUF, rcvbuf);
  rm_start(&r, e->q, p.server, 86, 0);
  SUP_EQ(r.max, rcvbuf ? (size_t)rcvbuf : 16384);
  /* The peer's send runs alongside (nowait; the loop carries it on). */
  sup_pattern(out, total, 0, 86);
  sup_loop_init(&l, e->q);
  sup_op_send(&snd, p.client, out, total);
  sup_loop_start(&l, &snd);

  for (int i = 0; i < 2; i++) {
    cport_msg m = rm_next(&r, &l, SUP_TIMEOUT);
    held[i] = rm_take(&r, &m);
    SUP_ASSERT(!r.ended, "recv_multi ended while data was coming");
  }
  expect_no_msg_for(e->q, p.server, r.h, SUP_QUIET);
  SUP_EQ(r.chunks, 2);
  for (int i = 0; i < 3; i++) {
    cport_free(held[0]);
    held[0] = held[1];
    cport_msg m = rm_next(&r, &l, SUP_TIMEOUT);
    held[1] = rm_take(&r, &m);
    SUP_ASSERT(!r.ended, "recv_multi ended while data was coming");
    expect_no_msg_for(e->q, p.server, r.h, SUP_QUIET);
    SUP_EQ(r.chunks, 3 + i);
  }
  SUP_ASSERT(r.got < total, "all %zu bytes in 5 chunks of at most %zu", r.got, r.max);
  cport_free(held[0]);
  cport_free(held[1]);
  rm_collect(&r, &l, total);
  sup_loop_run_op(&l, &snd, SUP_TIMEOUT);
  sup_loop_free(&l);
  SUP_RC(snd.status, CPORT_OK);
  SUP_EQ(snd.done, total);
  SUP_RC(cport_shutdown(p.client, CPORT_SHUT_WR), CPORT_OK);
  rm_finish(&r, NULL);
  check_eof_final(&r);
  SUP_EQ(r.got, total);
  expect_no_msg(e->q, SUP_QUIET);
}

static void test_multi_recv_backpressure(void **state) {
  multi_recv_backpressure((sup_env *)*state, 1024, 65536);
  multi_recv_backpressure((sup_env *)*state, 0, 1024 * 1024);
}

/* ------------------------------------------------------------------------ */
/* Arguments, states, and one multishot per direction                       */
/* ------------------------------------------------------------------------ */

static void test_multi_errors(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  cport_handle h = 0, h2 = 0;
  cport_socket closed, fresh, udp, udp2, acc = 0;
  cport_addr uaddr;
  char in[64], out[64];
  size_t n = 0;
  void *abuf = NULL;
  rm_state r;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  /* Arguments. */
  SUP_RC(cport_accept_multi(p.listener, NULL), CPORT_EINVAL);
  SUP_RC(cport_recv_multi(p.server, NULL), CPORT_EINVAL);
  SUP_RC(cport_accept_multi(CPORT_INVALID_SOCKET, &h), CPORT_EBADF);
  SUP_RC(cport_recv_multi(CPORT_INVALID_SOCKET, &h), CPORT_EBADF);
  SUP_RC(cport_accept_multi((cport_socket)0x7ead0000beef0001ull, &h), CPORT_EBADF);
  SUP_RC(cport_recv_multi((cport_socket)0x7ead0000beef0001ull, &h), CPORT_EBADF);
  closed = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(cport_close(closed), CPORT_OK);
  SUP_RC(cport_accept_multi(closed, &h), CPORT_EBADF);
  SUP_RC(cport_recv_multi(closed, &h), CPORT_EBADF);
  /* States. */
  fresh = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(cport_accept_multi(fresh, &h), CPORT_EINVAL);
  SUP_RC(cport_accept_multi(p.client, &h), CPORT_EINVAL);
  SUP_RC(cport_recv_multi(fresh, &h), CPORT_ENOTCONN);
  SUP_RC(cport_recv_multi(p.listener, &h), CPORT_ENOTCONN);
  udp = sup_udp(e->q, CPORT_AF_INET, 0, NULL);
  udp2 = sup_udp(e->q, CPORT_AF_INET, 0, &uaddr);
  SUP_RC(cport_recv_multi(udp, &h), CPORT_EOPNOTSUPP);
  SUP_RC(cport_connect(udp, &uaddr, SUP_TIMEOUT, &h), CPORT_OK);
  SUP_RC(cport_recv_multi(udp, &h), CPORT_EOPNOTSUPP);
  SUP_RC2(cport_accept_multi(udp2, &h), CPORT_EINVAL, CPORT_EOPNOTSUPP);
  expect_no_msg(e->q, 50); /* none of these left a message */

  /* A recv_multi owns the read direction. */
  rm_start(&r, e->q, p.server, 87, 0);
  SUP_RC(cport_recv_multi(p.server, &h2), CPORT_EALREADY);
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h2), CPORT_EALREADY);
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, 50, &n, &h2), CPORT_EALREADY);
  SUP_RC(cport_recv_alloc(p.server, 0, CPORT_NOWAIT, &abuf, &n, &h2), CPORT_EALREADY);
  SUP_ASSERT(abuf == NULL, "a refused recv_alloc handed out a buffer");
  /* ... and only that one: the socket still sends. */
  sup_pattern(out, sizeof out, 0, 88);
  sup_send_all(e->q, p.server, out, sizeof out);
  sup_recv_exact(e->q, p.client, in, sizeof in);
  sup_check_pattern(in, sizeof in, 0, 88, "sent while a recv_multi is pending");
  SUP_RC(cport_cancel(p.server, r.h), CPORT_OK);
  rm_finish(&r, NULL);
  SUP_ASSERT(r.final.tag == CPORT_TAG_ABORT && r.final.status == CPORT_ECANCELED,
             "cancelled recv_multi");
  /* Its final message taken, a plain recv works again. */
  sup_pattern(out, sizeof out, 0, 89);
  send_blocking(p.client, out, sizeof out);
  sup_recv_exact(e->q, p.server, in, sizeof in);
  sup_check_pattern(in, sizeof in, 0, 89, "recv after a recv_multi");

  /* A pending recv (select mode: a select op) refuses a recv_multi. */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h2), sup_pending_rc());
  SUP_RC(cport_recv_multi(p.server, &h), CPORT_EALREADY);
  cancel_single(e->q, p.server, h2);
  rm_start(&r, e->q, p.server, 90, 0);
  SUP_RC(cport_cancel(p.server, r.h), CPORT_OK);
  rm_finish(&r, NULL);
  SUP_EQ(r.final.tag, CPORT_TAG_ABORT);

  /* The same for accepts. */
  h = accept_multi(p.listener);
  SUP_RC(cport_accept_multi(p.listener, &h2), CPORT_EALREADY);
  SUP_RC(cport_accept(p.listener, CPORT_NOWAIT, &acc, &h2), CPORT_EALREADY);
  SUP_RC(cport_accept(p.listener, 50, &acc, &h2), CPORT_EALREADY);
  SUP_EQ(acc, CPORT_INVALID_SOCKET);
  SUP_RC(cport_cancel(p.listener, h), CPORT_OK);
  expect_accept_abort(e->q, p.listener, h, CPORT_ECANCELED);
  SUP_RC(cport_accept(p.listener, CPORT_NOWAIT, &acc, &h2), sup_pending_rc());
  SUP_RC(cport_accept_multi(p.listener, &h), CPORT_EALREADY);
  cancel_single(e->q, p.listener, h2);
  h = accept_multi(p.listener);
  SUP_RC(cport_cancel(p.listener, h), CPORT_OK);
  expect_accept_abort(e->q, p.listener, h, CPORT_ECANCELED);
  expect_no_msg(e->q, SUP_QUIET);
}

/* ------------------------------------------------------------------------ */
/* otp.rcv_outstanding                                                      */
/* ------------------------------------------------------------------------ */

static void test_multi_rcv_outstanding_option(void **state) {
  sup_env *e = (sup_env *)*state;
  const char *name = cport_option_name(CPORT_LEVEL_OTP, CPORT_OPT_OTP_RCV_OUTSTANDING);
  cport_socket t = sup_open(e->q, CPORT_AF_INET), c, s, c2, acc;
  cport_addr addr;
  cport_socket l;
  cport_optval v;
  cport_handle h;

  SUP_ASSERT(name != NULL && strcmp(name, "otp.rcv_outstanding") == 0, "option name '%s'",
             name ? name : "(null)");
  SUP_EQ(cport_is_supported(CPORT_LEVEL_OTP, CPORT_OPT_OTP_RCV_OUTSTANDING), 1);
  SUP_EQ(sup_get_otp_int(t, CPORT_OPT_OTP_RCV_OUTSTANDING), 16);
  sup_set_otp_int(t, CPORT_OPT_OTP_RCV_OUTSTANDING, 1);
  SUP_EQ(sup_get_otp_int(t, CPORT_OPT_OTP_RCV_OUTSTANDING), 1);
  sup_set_otp_int(t, CPORT_OPT_OTP_RCV_OUTSTANDING, 65536);
  SUP_EQ(sup_get_otp_int(t, CPORT_OPT_OTP_RCV_OUTSTANDING), 65536);
  v = int_val(0);
  SUP_RC(cport_setopt(t, CPORT_LEVEL_OTP, CPORT_OPT_OTP_RCV_OUTSTANDING, &v), CPORT_EINVAL);
  v = int_val(65537);
  SUP_RC(cport_setopt(t, CPORT_LEVEL_OTP, CPORT_OPT_OTP_RCV_OUTSTANDING, &v), CPORT_EINVAL);
  v = int_val(-1);
  SUP_RC(cport_setopt(t, CPORT_LEVEL_OTP, CPORT_OPT_OTP_RCV_OUTSTANDING, &v), CPORT_EINVAL);
  memset(&v, 0, sizeof v);
  v.type = CPORT_VAL_BOOL;
  v.v.b = 1;
  SUP_RC(cport_setopt(t, CPORT_LEVEL_OTP, CPORT_OPT_OTP_RCV_OUTSTANDING, &v), CPORT_EINVAL);
  v = int_val(4);
  SUP_RC(cport_setopt(t, CPORT_LEVEL_SOCKET, CPORT_OPT_OTP_RCV_OUTSTANDING, &v), CPORT_EINVAL);
  SUP_EQ(sup_get_otp_int(t, CPORT_OPT_OTP_RCV_OUTSTANDING),
         65536); /* refused values change nothing */

  /* Accepted sockets inherit it, by cport_accept and by cport_accept_multi. */
  l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &addr);
  sup_set_otp_int(l, CPORT_OPT_OTP_RCV_OUTSTANDING, 3);
  SUP_EQ(sup_get_otp_int(l, CPORT_OPT_OTP_RCV_OUTSTANDING), 3);
  sup_connect_pair(e->q, l, &addr, 0, &c, &s);
  SUP_EQ(sup_get_otp_int(s, CPORT_OPT_OTP_RCV_OUTSTANDING), 3);
  SUP_EQ(sup_get_otp_int(c, CPORT_OPT_OTP_RCV_OUTSTANDING), 16);
  h = accept_multi(l);
  c2 = connect_client(e->q, &addr);
  acc = expect_accepted(e->q, l, h);
  SUP_EQ(sup_get_otp_int(acc, CPORT_OPT_OTP_RCV_OUTSTANDING), 3);
  SUP_RC(cport_cancel(l, h), CPORT_OK);
  expect_accept_abort(e->q, l, h, CPORT_ECANCELED);
  (void)c2;
  expect_no_msg(e->q, SUP_QUIET);
}

/* ------------------------------------------------------------------------ */
/* otp.defer                                                                */
/* ------------------------------------------------------------------------ */

/* With otp.defer the multishot calls behave the same: CPORT_COMPLETION, then
 * results flagged MORE, then one final message. */
static void test_multi_defer(void **state) {
  sup_env *e = (sup_env *)*state;
  char out[4000];
  cport_addr addr;
  cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, 0, &addr), c, s;
  cport_handle h;
  rm_state r;

  sup_set_otp_bool(l, CPORT_OPT_OTP_DEFER, 1);
  h = accept_multi(l);
  c = connect_client(e->q, &addr);
  s = expect_accepted(e->q, l, h);
  SUP_EQ(sup_get_otp_bool(s, CPORT_OPT_OTP_DEFER), 1);
  SUP_RC(cport_cancel(l, h), CPORT_OK);
  expect_accept_abort(e->q, l, h, CPORT_ECANCELED);

  /* Data waiting before the call, then more after it. */
  sup_pattern(out, sizeof out, 0, 91);
  send_blocking(c, out, 1000);
  sup_settle(e->q, 20);
  rm_start(&r, e->q, s, 91, 0);
  rm_collect(&r, NULL, 1000);
  send_blocking(c, out + 1000, sizeof out - 1000);
  rm_collect(&r, NULL, sizeof out);
  SUP_ASSERT(r.chunks >= 1, "chunks");
  SUP_RC(cport_shutdown(c, CPORT_SHUT_WR), CPORT_OK);
  rm_finish(&r, NULL);
  check_eof_final(&r);
  SUP_EQ(r.got, sizeof out);

  /* And cancel still gives its one abort. */
  {
    sup_pair p;
    sup_make_pair(e->q, CPORT_AF_INET, &p);
    sup_set_otp_bool(p.server, CPORT_OPT_OTP_DEFER, 1);
    rm_start(&r, e->q, p.server, 92, 0);
    sup_pattern(out, 100, 0, 92);
    send_blocking(p.client, out, 100);
    rm_collect(&r, NULL, 100);
    SUP_RC(cport_cancel(p.server, r.h), CPORT_OK);
    rm_finish(&r, NULL);
    SUP_ASSERT(r.final.tag == CPORT_TAG_ABORT && r.final.status == CPORT_ECANCELED,
               "cancelled recv_multi under otp.defer");
  }
  expect_no_msg(e->q, SUP_QUIET);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_multi_accept),          CONF_TEST(test_multi_accept_close),
    CONF_TEST(test_multi_recv_stream),     CONF_TEST(test_multi_recv_cancel),
    CONF_TEST(test_multi_recv_close_race), CONF_TEST(test_multi_recv_backpressure),
    CONF_TEST(test_multi_errors),          CONF_TEST(test_multi_rcv_outstanding_option),
    CONF_TEST(test_multi_defer),
};

const struct CMUnitTest *conf_multi_tests(size_t *count) {
  *count = sizeof tests / sizeof tests[0];
  return tests;
}
