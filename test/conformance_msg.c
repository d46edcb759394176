/*
 * Conformance: sendmsg and recvmsg. Gather and scatter on TCP (bytes land
 * in order, sends are whole in completion mode, a completion's msg.buf is
 * the header), datagrams with control data (ip.pktinfo, ipv6.recvpktinfo,
 * ip.recvtos), truncation in the header's flags, and bad headers.
 */
#include "conformance.h"

#include <string.h>

static cport_optval bool_val(int b) {
  cport_optval v;
  memset(&v, 0, sizeof v);
  v.type = CPORT_VAL_BOOL;
  v.v.b = b;
  return v;
}

static void set_bool(cport_socket s, cport_level level, cport_option opt, int on) {
  cport_optval v = bool_val(on);
  SUP_RC(cport_setopt(s, level, opt, &v), CPORT_OK);
  memset(&v, 0, sizeof v);
  SUP_RC(cport_getopt(s, level, opt, &v), CPORT_OK);
  SUP_EQ(v.type, CPORT_VAL_BOOL);
  SUP_EQ(v.v.b, on);
}

/* A header over iov[0..cnt), with garbage in every output field so that the
 * test sees what the library wrote. */
static void hdr_init(cport_msghdr *m, cport_iovec *iov, int cnt) {
  memset(m, 0, sizeof *m);
  m->iov = iov;
  m->iovcnt = cnt;
  m->flags = 0xf0u;
  m->has_pktinfo = 7;
  m->ifindex = 0xdeadu;
  m->tos = 1234;
  m->local.family = 99;
  m->addr.family = 0;
}

/* The end of a recvmsg that pended: completion mode checks the message
 * (msg.buf is the header, which is filled by then); select mode calls
 * again after the select message. Returns the bytes received. */
static size_t finish_pending_recvmsg(cport_queue *q, cport_socket s, cport_handle h,
                                     cport_msghdr *m) {
  cport_msg msg = expect_msg_for(q, s, h, SUP_TIMEOUT);
  char b[256];
  SUP_ASSERT(msg.op == CPORT_OP_RECVMSG, "message for a pending recvmsg: %s",
             sup_msg_str(&msg, b, sizeof b));
  if (sup_select_mode()) {
    size_t n = 0;
    cport_handle h2 = 0;
    SUP_ASSERT(msg.tag == CPORT_TAG_SELECT, "select-mode recvmsg ended with %s",
               sup_msg_str(&msg, b, sizeof b));
    SUP_RC(cport_recvmsg(s, m, 0, CPORT_NOWAIT, &n, &h2), CPORT_OK);
    return n;
  }
  SUP_ASSERT(msg.tag == CPORT_TAG_COMPLETION, "completion-mode recvmsg ended with %s",
             sup_msg_str(&msg, b, sizeof b));
  SUP_RC(msg.status, CPORT_OK);
  SUP_ASSERT(msg.buf == (void *)m, "recvmsg completion: msg.buf %p is not the header %p", msg.buf,
             (void *)m);
  SUP_EQ(msg.flags, m->flags);
  return msg.bytes;
}

/* Receive exactly total bytes into the iovecs (stream), several recvmsg
 * calls, each with a header for what is still empty. */
static void recv_scatter_all(cport_queue *q, cport_socket s, const cport_iovec *iov, int cnt,
                             size_t total, size_t got) {
  cport_iovec rest[CPORT_IOV_MAX];
  cport_msghdr m;
  while (got < total) {
    size_t skip = got, n = 0;
    int k = 0;
    for (int i = 0; i < cnt; i++) {
      if (skip >= iov[i].len) {
        skip -= iov[i].len;
        continue;
      }
      rest[k].base = (char *)iov[i].base + skip;
      rest[k].len = iov[i].len - skip;
      skip = 0;
      k++;
    }
    hdr_init(&m, rest, k);
    SUP_RC(sup_recvmsg(q, s, &m, &n), CPORT_OK);
    SUP_ASSERT(n > 0, "recvmsg: EOF after %zu of %zu bytes", got, total);
    SUP_EQ(m.flags, 0);
    got += n;
  }
}

/* ------------------------------------------------------------------------ */
/* Gather and scatter on TCP                                                */
/* ------------------------------------------------------------------------ */

static void test_msg_gather_scatter_tcp(void **state) {
  sup_env *e = (sup_env *)*state;
  enum { L0 = 3, L1 = 1000, L2 = 5000, TOTAL = L0 + L1 + L2, R0 = 4000, R1 = TOTAL - R0 };
  sup_pair p;
  char *pat = (char *)sup_alloc(TOTAL), *s0 = (char *)sup_alloc(L0), *s1 = (char *)sup_alloc(L1);
  char *s2 = (char *)sup_alloc(L2), *r0 = (char *)sup_alloc(R0), *r1 = (char *)sup_alloc(R1);
  char *big = (char *)sup_alloc(64 * 10), *bigin = (char *)sup_alloc(64 * 10);
  cport_iovec siov[3], riov[2], many[CPORT_IOV_MAX];
  cport_msghdr sm, rm;
  cport_handle h = 0;
  size_t n = 0, got;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  sup_pattern(pat, TOTAL, 0, 500);
  /* Three separate buffers: the receiver sees their bytes in iovec order. */
  memcpy(s0, pat, L0);
  memcpy(s1, pat + L0, L1);
  memcpy(s2, pat + L0 + L1, L2);
  siov[0].base = s0, siov[0].len = L0;
  siov[1].base = s1, siov[1].len = L1;
  siov[2].base = s2, siov[2].len = L2;
  riov[0].base = r0, riov[0].len = R0;
  riov[1].base = r1, riov[1].len = R1;
  memset(&sm, 0, sizeof sm); /* addr.family 0: the connected peer */
  sm.iov = siov;
  sm.iovcnt = 3;

  /* The recvmsg is pending before the data exists. */
  hdr_init(&rm, riov, 2);
  SUP_RC(cport_recvmsg(p.server, &rm, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  SUP_EQ(n, 0);
  SUP_RC(sup_sendmsg(e->q, p.client, &sm, &n), CPORT_OK);
  SUP_EQ(n, TOTAL);
  got = finish_pending_recvmsg(e->q, p.server, h, &rm);
  SUP_ASSERT(got >= 1 && got <= TOTAL, "pending recvmsg got %zu bytes", got);
  SUP_EQ(rm.flags, 0);
  recv_scatter_all(e->q, p.server, riov, 2, TOTAL, got);
  sup_check_pattern(r0, R0, 0, 500, "scatter, first iovec");
  sup_check_pattern(r1, R1, R0, 500, "scatter, second iovec");

  /* Blocking: sendmsg, and a waitall recvmsg that fills every iovec. */
  memset(r0, 0, R0);
  memset(r1, 0, R1);
  SUP_RC(cport_sendmsg(p.client, &sm, 0, SUP_TIMEOUT, &n, &h), CPORT_OK);
  SUP_EQ(n, TOTAL);
  hdr_init(&rm, riov, 2);
  SUP_RC(cport_recvmsg(p.server, &rm, CPORT_WAITALL, SUP_TIMEOUT, &n, &h), CPORT_OK);
  SUP_EQ(n, TOTAL);
  SUP_EQ(rm.flags, 0);
  sup_check_pattern(r0, R0, 0, 500, "blocking waitall scatter, first iovec");
  sup_check_pattern(r1, R1, R0, 500, "blocking waitall scatter, second iovec");

  /* The other direction, and the most iovecs a call takes. */
  sup_pattern(big, 64 * 10, 0, 501);
  for (int i = 0; i < CPORT_IOV_MAX; i++) {
    many[i].base = big + (size_t)i * 10;
    many[i].len = 10;
  }
  memset(&sm, 0, sizeof sm);
  sm.iov = many;
  sm.iovcnt = CPORT_IOV_MAX;
  SUP_RC(sup_sendmsg(e->q, p.server, &sm, &n), CPORT_OK);
  SUP_EQ(n, 64 * 10);
  for (int i = 0; i < CPORT_IOV_MAX; i++) {
    many[i].base = bigin + (size_t)(CPORT_IOV_MAX - 1 - i) * 10; /* scatter backwards */
    many[i].len = 10;
  }
  recv_scatter_all(e->q, p.client, many, CPORT_IOV_MAX, 64 * 10, 0);
  for (int i = 0; i < CPORT_IOV_MAX; i++)
    sup_check_pattern(bigin + (size_t)(CPORT_IOV_MAX - 1 - i) * 10, 10, (uint64_t)i * 10, 501,
                      "64-iovec scatter");
  expect_no_msg(e->q, 50);
}

/* A gathered stream send larger than the socket buffers: whole in
 * completion mode (one completion, msg.buf = the header), partial + select
 * in select mode. */
static void test_msg_sendmsg_large(void **state) {
  sup_env *e = (sup_env *)*state;
  const size_t part = (size_t)1 << 20, total = 3 * part, chunk = 65536;
  char *out = (char *)sup_alloc(total), *in = (char *)sup_alloc(total);
  cport_iovec iov[3];
  cport_msghdr sm;
  sup_pair p;
  sup_loop l;
  sup_op s, r;
  size_t got = 0;
  cport_optval v;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  memset(&v, 0, sizeof v);
  v.type = CPORT_VAL_INT;
  v.v.i = 16384;
  SUP_RC(cport_setopt(p.client, CPORT_LEVEL_SOCKET, CPORT_OPT_SOCKET_SNDBUF, &v), CPORT_OK);
  SUP_RC(cport_setopt(p.server, CPORT_LEVEL_SOCKET, CPORT_OPT_SOCKET_RCVBUF, &v), CPORT_OK);
  sup_pattern(out, total, 0, 510);
  for (int i = 0; i < 3; i++) {
    iov[i].base = out + (size_t)i * part;
    iov[i].len = part;
  }
  memset(&sm, 0, sizeof sm);
  sm.iov = iov;
  sm.iovcnt = 3;
  sup_loop_init(&l, e->q);
  sup_op_sendmsg(&s, p.client, &sm);
  sup_loop_start(&l, &s);
  while (got < total) {
    size_t want = total - got < chunk ? total - got : chunk;
    sup_op_recv(&r, p.server, in + got, want, 0);
    sup_loop_start(&l, &r);
    sup_loop_run_op(&l, &r, SUP_TIMEOUT);
    SUP_RC(r.status, CPORT_OK);
    SUP_ASSERT(r.done > 0, "EOF after %zu bytes", got);
    got += r.done;
  }
  sup_loop_run_op(&l, &s, SUP_TIMEOUT);
  sup_loop_free(&l);
  SUP_RC(s.status, CPORT_OK);
  SUP_EQ(s.done, total);
  sup_check_pattern(in, total, 0, 510, "3 MiB gathered");
  if (!sup_select_mode()) {
    /* The driver checked that the completion carried all the bytes and
     * the header as msg.buf. */
    SUP_EQ(s.calls, 1);
    SUP_RC(s.first_rc, CPORT_COMPLETION);
    SUP_EQ(s.n_completion, 1);
  } else {
    SUP_RC(s.first_rc, CPORT_SELECT);
    SUP_ASSERT(s.first_done > 0 && s.first_done < total, "first call sent %zu", s.first_done);
    SUP_ASSERT(s.n_select >= 1, "select messages: %d", s.n_select);
  }
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Datagrams with control data                                              */
/* ------------------------------------------------------------------------ */

static void pktinfo_family(sup_env *e, int family) {
  const cport_addr lo = sup_loopback(family, 0);
  cport_socket b, a;
  cport_addr any, ba, aa, to;
  char out[30], r0[10], r1[40];
  cport_iovec riov[2];
  cport_msghdr m;
  cport_handle h = 0;
  size_t n = 0;
  const int ip_len = family == CPORT_AF_INET ? 4 : 16;

  /* b on the wildcard address: pktinfo says which address a datagram was
   * sent to. */
  SUP_RC(cport_addr_init(&any, family == CPORT_AF_INET ? "0.0.0.0" : "::", 0), CPORT_OK);
  b = sup_udp_open(e->q, family, 0);
  SUP_RC(cport_bind(b, &any), CPORT_OK);
  SUP_RC(cport_sockname(b, &ba), CPORT_OK);
  a = sup_udp(e->q, family, 0, &aa);
  to = lo;
  to.port = ba.port;
  if (family == CPORT_AF_INET)
    set_bool(b, CPORT_LEVEL_IP, CPORT_OPT_IP_PKTINFO, 1);
  else
    set_bool(b, CPORT_LEVEL_IPV6, CPORT_OPT_IPV6_RECVPKTINFO, 1);
  riov[0].base = r0, riov[0].len = sizeof r0;
  riov[1].base = r1, riov[1].len = sizeof r1;

  for (int pass = 0; pass < 2; pass++) {
    /* Pass 0: the datagram is there first; pass 1: the recvmsg pends. */
    sup_pattern(out, sizeof out, 0, (uint32_t)(520 + pass));
    hdr_init(&m, riov, 2);
    if (pass == 0) {
      SUP_RC(sup_sendto(e->q, a, out, sizeof out, &to), CPORT_OK);
      SUP_RC(sup_recvmsg(e->q, b, &m, &n), CPORT_OK);
    } else {
      SUP_RC(cport_recvmsg(b, &m, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
      SUP_RC(sup_sendto(e->q, a, out, sizeof out, &to), CPORT_OK);
      n = finish_pending_recvmsg(e->q, b, h, &m);
    }
    SUP_EQ(n, sizeof out);
    SUP_EQ(m.flags, 0);
    SUP_ASSERT(sup_addr_equal(&m.addr, &aa), "recvmsg sender %s, expected %s",
               sup_addr_str(&m.addr, 0), sup_addr_str(&aa, 1));
    SUP_EQ(m.has_pktinfo, 1);
    SUP_EQ(m.local.family, family);
    SUP_ASSERT(memcmp(m.local.ip, lo.ip, (size_t)ip_len) == 0,
               "pktinfo local address %s, expected loopback", sup_addr_str(&m.local, 0));
    SUP_ASSERT(m.ifindex > 0, "pktinfo interface index %u", (unsigned)m.ifindex);
    SUP_EQ(m.tos, -1); /* ip.recvtos is off */
    sup_check_pattern(r0, sizeof r0, 0, (uint32_t)(520 + pass), "pktinfo datagram, first iovec");
    sup_check_pattern(r1, sizeof out - sizeof r0, sizeof r0, (uint32_t)(520 + pass),
                      "pktinfo datagram, second iovec");
  }

  /* Off again: no pktinfo. */
  if (family == CPORT_AF_INET)
    set_bool(b, CPORT_LEVEL_IP, CPORT_OPT_IP_PKTINFO, 0);
  else
    set_bool(b, CPORT_LEVEL_IPV6, CPORT_OPT_IPV6_RECVPKTINFO, 0);
  hdr_init(&m, riov, 2);
  SUP_RC(sup_sendto(e->q, a, out, 12, &to), CPORT_OK);
  SUP_RC(sup_recvmsg(e->q, b, &m, &n), CPORT_OK);
  SUP_EQ(n, 12);
  SUP_EQ(m.has_pktinfo, 0);
  SUP_EQ(m.flags, 0);
  SUP_ASSERT(sup_addr_equal(&m.addr, &aa), "recvmsg sender %s", sup_addr_str(&m.addr, 0));
  expect_no_msg(e->q, 50);
}

static void test_msg_pktinfo_ipv4(void **state) {
  pktinfo_family((sup_env *)*state, CPORT_AF_INET);
}

static void test_msg_pktinfo_ipv6(void **state) {
  pktinfo_family((sup_env *)*state, CPORT_AF_INET6);
}

static void test_msg_recvtos(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr aa, ba;
  cport_socket a = sup_udp(e->q, CPORT_AF_INET, 0, &aa), b = sup_udp(e->q, CPORT_AF_INET, 0, &ba);
  char out[16], in[32];
  cport_iovec iov = {in, sizeof in};
  cport_msghdr m;
  cport_optval v;
  size_t n = 0;
  int supported = cport_is_supported(CPORT_LEVEL_IP, CPORT_OPT_IP_RECVTOS);

  if (!sup_is_windows()) SUP_ASSERT(supported == 1, "Linux has IP_RECVTOS");
  if (!supported) {
    v = bool_val(1);
    print_message("ip.recvtos is not supported here: checking that setopt says so\n");
    SUP_RC(cport_setopt(b, CPORT_LEVEL_IP, CPORT_OPT_IP_RECVTOS, &v), CPORT_ENOTSUP);
    return;
  }
  set_bool(b, CPORT_LEVEL_IP, CPORT_OPT_IP_RECVTOS, 1);
  memset(&v, 0, sizeof v);
  v.type = CPORT_VAL_INT;
  v.v.i = 0x20;
  SUP_RC(cport_setopt(a, CPORT_LEVEL_IP, CPORT_OPT_IP_TOS, &v), CPORT_OK);
  sup_pattern(out, sizeof out, 0, 530);
  SUP_RC(sup_sendto(e->q, a, out, sizeof out, &ba), CPORT_OK);
  hdr_init(&m, &iov, 1);
  SUP_RC(sup_recvmsg(e->q, b, &m, &n), CPORT_OK);
  SUP_EQ(n, sizeof out);
  SUP_ASSERT(m.tos >= 0 && m.tos <= 255, "received TOS %d with ip.recvtos on", m.tos);
  SUP_EQ(m.has_pktinfo, 0); /* ip.pktinfo is off */
  sup_check_pattern(in, sizeof out, 0, 530, "recvtos datagram");
  /* Off: -1. */
  set_bool(b, CPORT_LEVEL_IP, CPORT_OPT_IP_RECVTOS, 0);
  SUP_RC(sup_sendto(e->q, a, out, 5, &ba), CPORT_OK);
  hdr_init(&m, &iov, 1);
  SUP_RC(sup_recvmsg(e->q, b, &m, &n), CPORT_OK);
  SUP_EQ(n, 5);
  SUP_EQ(m.tos, -1);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Truncation: the header's flags (and the completion's)                    */
/* ------------------------------------------------------------------------ */

static void test_msg_truncation(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_addr aa, ba;
  cport_socket a = sup_udp(e->q, CPORT_AF_INET, 0, &aa), b = sup_udp(e->q, CPORT_AF_INET, 0, &ba);
  char out[100], r0[4], r1[6];
  cport_iovec riov[2] = {{r0, sizeof r0}, {r1, sizeof r1}};
  cport_msghdr m;
  cport_handle h = 0;
  size_t n = 0;

  /* Done now. */
  sup_pattern(out, sizeof out, 0, 540);
  SUP_RC(sup_sendto(e->q, a, out, sizeof out, &ba), CPORT_OK);
  sup_settle(e->q, 50);
  hdr_init(&m, riov, 2);
  SUP_RC(cport_recvmsg(b, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_OK);
  SUP_EQ(n, 10);
  SUP_EQ(m.flags, CPORT_MSG_TRUNC);
  SUP_ASSERT(sup_addr_equal(&m.addr, &aa), "sender %s", sup_addr_str(&m.addr, 0));
  sup_check_pattern(r0, 4, 0, 540, "truncated, first iovec");
  sup_check_pattern(r1, 6, 4, 540, "truncated, second iovec");

  /* Pending. */
  sup_pattern(out, sizeof out, 0, 541);
  hdr_init(&m, riov, 2);
  SUP_RC(cport_recvmsg(b, &m, 0, CPORT_NOWAIT, &n, &h), sup_pending_rc());
  SUP_RC(sup_sendto(e->q, a, out, sizeof out, &ba), CPORT_OK);
  n = finish_pending_recvmsg(e->q, b, h, &m);
  SUP_EQ(n, 10);
  SUP_EQ(m.flags, CPORT_MSG_TRUNC);
  sup_check_pattern(r0, 4, 0, 541, "truncated pending, first iovec");
  sup_check_pattern(r1, 6, 4, 541, "truncated pending, second iovec");

  /* A datagram that fits is not flagged. */
  SUP_RC(sup_sendto(e->q, a, out, 10, &ba), CPORT_OK);
  hdr_init(&m, riov, 2);
  SUP_RC(sup_recvmsg(e->q, b, &m, &n), CPORT_OK);
  SUP_EQ(n, 10);
  SUP_EQ(m.flags, 0);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Bad headers                                                              */
/* ------------------------------------------------------------------------ */

static void test_msg_bad_input(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  cport_addr ua, v6 = sup_loopback(CPORT_AF_INET6, 9);
  cport_socket u = sup_udp(e->q, CPORT_AF_INET, 0, &ua);
  char buf[16] = {0}, in[16];
  cport_iovec iov[CPORT_IOV_MAX + 1];
  cport_msghdr m;
  cport_handle h = 0;
  size_t n = 0;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  for (int i = 0; i <= CPORT_IOV_MAX; i++) {
    iov[i].base = buf;
    iov[i].len = 1;
  }
  memset(&m, 0, sizeof m);
  m.iov = iov;

  m.iovcnt = 0;
  SUP_RC(cport_sendmsg(p.client, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recvmsg(p.server, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recvmsg(p.server, &m, 0, 100, &n, &h), CPORT_EINVAL);
  m.iovcnt = CPORT_IOV_MAX + 1;
  SUP_RC(cport_sendmsg(p.client, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recvmsg(p.server, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  m.iovcnt = -1;
  SUP_RC(cport_sendmsg(p.client, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  m.iov = NULL;
  m.iovcnt = 1;
  SUP_RC(cport_sendmsg(p.client, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recvmsg(p.server, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_sendmsg(u, &m, 0, 100, &n, &h), CPORT_EINVAL);
  /* A NULL buffer with a length. */
  m.iov = iov;
  iov[0].base = NULL;
  SUP_RC(cport_sendmsg(p.client, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recvmsg(p.server, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  iov[0].base = buf;
  /* No header, no count, unknown flags. */
  SUP_RC(cport_sendmsg(p.client, NULL, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recvmsg(p.server, NULL, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_sendmsg(p.client, &m, 0, CPORT_NOWAIT, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_recvmsg(p.server, &m, 0, CPORT_NOWAIT, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_sendmsg(p.client, &m, 0x100, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recvmsg(p.server, &m, 0x100, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  /* Destinations: as sendto. */
  SUP_RC(cport_sendmsg(u, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_ENOTCONN); /* no address */
  m.addr = v6;
  SUP_RC(cport_sendmsg(u, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EAFNOSUPPORT);
  m.addr = p.addr;
  SUP_RC(cport_sendmsg(p.client, &m, 0, CPORT_NOWAIT, &n, &h), CPORT_EISCONN);
  SUP_EQ(n, 0);

  /* Nothing happened: no message, and the sockets still work. */
  expect_no_msg(e->q, 50);
  sup_pattern(buf, sizeof buf, 0, 550);
  iov[0].base = buf;
  iov[0].len = sizeof buf;
  memset(&m, 0, sizeof m);
  m.iov = iov;
  m.iovcnt = 1;
  SUP_RC(sup_sendmsg(e->q, p.client, &m, &n), CPORT_OK);
  SUP_EQ(n, sizeof buf);
  sup_recv_exact(e->q, p.server, in, sizeof in);
  sup_check_pattern(in, sizeof in, 0, 550, "sendmsg after the errors");
  m.addr = ua; /* sendmsg with an address: one datagram to it */
  SUP_RC(sup_sendmsg(e->q, u, &m, &n), CPORT_OK);
  SUP_EQ(n, sizeof buf);
  iov[0].base = in;
  hdr_init(&m, iov, 1);
  SUP_RC(sup_recvmsg(e->q, u, &m, &n), CPORT_OK);
  SUP_EQ(n, sizeof buf);
  SUP_ASSERT(sup_addr_equal(&m.addr, &ua), "sender %s", sup_addr_str(&m.addr, 0));
  sup_check_pattern(in, sizeof in, 0, 550, "datagram sendmsg after the errors");
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_msg_gather_scatter_tcp),
    CONF_TEST(test_msg_sendmsg_large),
    CONF_TEST(test_msg_pktinfo_ipv4),
    CONF_TEST(test_msg_pktinfo_ipv6),
    CONF_TEST(test_msg_recvtos),
    CONF_TEST(test_msg_truncation),
    CONF_TEST(test_msg_bad_input),
};

const struct CMUnitTest *conf_msg_tests(size_t *count) {
  *count = sizeof tests / sizeof tests[0];
  return tests;
}
