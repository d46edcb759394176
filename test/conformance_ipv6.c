/*
 * Conformance: IPv6. Dual stack (a v6 socket with ipv6.v6only = 0 talks to
 * IPv4 peers, which it sees as ::ffff:a.b.c.d), the v6only default (set,
 * as on Windows, on every platform), and the address text forms: parsing
 * and RFC 5952 formatting, the same on every platform.
 */
#include "conformance.h"

#include <stdio.h>
#include <string.h>

static cport_optval bool_val(int b) {
  cport_optval v;
  memset(&v, 0, sizeof v);
  v.type = CPORT_VAL_BOOL;
  v.v.b = b;
  return v;
}

static int get_v6only(cport_socket s) {
  cport_optval v;
  memset(&v, 0x5a, sizeof v);
  SUP_RC(cport_getopt(s, CPORT_LEVEL_IPV6, CPORT_OPT_IPV6_V6ONLY, &v), CPORT_OK);
  SUP_EQ(v.type, CPORT_VAL_BOOL);
  SUP_ASSERT(v.v.b == 0 || v.v.b == 1, "ipv6.v6only reads back %d", v.v.b);
  return v.v.b;
}

static void set_v6only(cport_socket s, int on) {
  cport_optval v = bool_val(on);
  SUP_RC(cport_setopt(s, CPORT_LEVEL_IPV6, CPORT_OPT_IPV6_V6ONLY, &v), CPORT_OK);
  SUP_EQ(get_v6only(s), on);
}

static cport_addr any6(uint16_t port) {
  cport_addr a;
  SUP_RC(cport_addr_init(&a, "::", port), CPORT_OK);
  return a;
}

/* addr must be ::ffff:127.0.0.1 with port, and format as such. */
static void check_mapped_loopback(const cport_addr *a, uint16_t port, const char *what) {
  static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1};
  char want[CPORT_ADDR_STRLEN], got[CPORT_ADDR_STRLEN];
  int n;
  SUP_ASSERT(a->family == CPORT_AF_INET6, "%s: family %d, expected IPv6 (%s)", what, a->family,
             sup_addr_str(a, 0));
  SUP_ASSERT(memcmp(a->ip, mapped, 16) == 0, "%s: %s is not ::ffff:127.0.0.1", what,
             sup_addr_str(a, 0));
  SUP_EQ(a->port, port);
  snprintf(want, sizeof want, "[::ffff:127.0.0.1]:%u", (unsigned)port);
  n = cport_addr_format(a, got, sizeof got);
  SUP_ASSERT(n > 0 && strcmp(got, want) == 0, "%s formats as '%s' (%s), expected '%s'", what,
             n > 0 ? got : "", sup_rc_name(n < 0 ? n : 0), want);
  SUP_EQ(n, strlen(want));
}

/* ------------------------------------------------------------------------ */
/* Dual stack                                                               */
/* ------------------------------------------------------------------------ */

static void test_dual_stack_tcp(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_socket l = sup_open(e->q, CPORT_AF_INET6), c, s, c6, s6;
  cport_addr a = any6(0), la, to4, cname, speer, sname, cpeer, to6;
  char out[200], in[200];

  set_v6only(l, 0);
  SUP_RC(cport_bind(l, &a), CPORT_OK);
  SUP_RC(cport_listen(l, 0), CPORT_OK);
  SUP_RC(cport_sockname(l, &la), CPORT_OK);
  SUP_EQ(la.family, CPORT_AF_INET6);
  SUP_ASSERT(la.port != 0, "bound to a real port");

  /* An IPv4 client reaches the IPv6 listener. */
  to4 = sup_loopback(CPORT_AF_INET, la.port);
  sup_connect_pair(e->q, l, &to4, 0, &c, &s);
  SUP_RC(cport_sockname(c, &cname), CPORT_OK);
  SUP_RC(cport_peername(c, &cpeer), CPORT_OK);
  SUP_EQ(cname.family, CPORT_AF_INET);
  SUP_ASSERT(sup_addr_equal(&cpeer, &to4), "client's peer %s", sup_addr_str(&cpeer, 0));
  /* The server side sees it as a v4-mapped IPv6 address. */
  SUP_RC(cport_peername(s, &speer), CPORT_OK);
  check_mapped_loopback(&speer, cname.port, "peername of the accepted v4 client");
  SUP_RC(cport_sockname(s, &sname), CPORT_OK);
  check_mapped_loopback(&sname, la.port, "sockname of the accepted v4 client");

  /* Data both ways. */
  sup_pattern(out, sizeof out, 0, 300);
  sup_send_all(e->q, c, out, sizeof out);
  sup_recv_exact(e->q, s, in, sizeof in);
  sup_check_pattern(in, sizeof in, 0, 300, "v4 client to v6 server");
  sup_pattern(out, sizeof out, 0, 301);
  sup_send_all(e->q, s, out, sizeof out);
  sup_recv_exact(e->q, c, in, sizeof in);
  sup_check_pattern(in, sizeof in, 0, 301, "v6 server to v4 client");

  /* An IPv6 client still works on the same listener. */
  to6 = sup_loopback(CPORT_AF_INET6, la.port);
  sup_connect_pair(e->q, l, &to6, 0, &c6, &s6);
  SUP_RC(cport_peername(s6, &speer), CPORT_OK);
  SUP_RC(cport_sockname(c6, &cname), CPORT_OK);
  SUP_ASSERT(sup_addr_equal(&speer, &cname), "v6 peer %s, client %s", sup_addr_str(&speer, 0),
             sup_addr_str(&cname, 1));
  expect_no_msg(e->q, 50);
}

static void test_dual_stack_udp(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_socket u6 = sup_udp_open(e->q, CPORT_AF_INET6, 0), u4;
  cport_addr a = any6(0), a6, a4, to4;
  char out[40], in[64];
  cport_recv_info ri;

  set_v6only(u6, 0);
  SUP_RC(cport_bind(u6, &a), CPORT_OK);
  SUP_RC(cport_sockname(u6, &a6), CPORT_OK);
  u4 = sup_udp(e->q, CPORT_AF_INET, 0, &a4);

  to4 = sup_loopback(CPORT_AF_INET, a6.port);
  sup_pattern(out, sizeof out, 0, 310);
  SUP_RC(sup_sendto(e->q, u4, out, sizeof out, &to4), CPORT_OK);
  SUP_RC(sup_recvfrom(e->q, u6, in, sizeof in, &ri), CPORT_OK);
  SUP_EQ(ri.bytes, sizeof out);
  check_mapped_loopback(&ri.from, a4.port, "sender of a v4 datagram on a dual-stack socket");
  sup_check_pattern(in, sizeof out, 0, 310, "v4 datagram on a v6 socket");

  /* The reply goes to the mapped address and arrives as plain IPv4. */
  sup_pattern(out, 15, 0, 311);
  SUP_RC(sup_sendto(e->q, u6, out, 15, &ri.from), CPORT_OK);
  SUP_RC(sup_recvfrom(e->q, u4, in, sizeof in, &ri), CPORT_OK);
  SUP_EQ(ri.bytes, 15);
  SUP_ASSERT(sup_addr_equal(&ri.from, &to4), "the v6 socket's reply comes from %s, expected %s",
             sup_addr_str(&ri.from, 0), sup_addr_str(&to4, 1));
  sup_check_pattern(in, 15, 0, 311, "reply to the mapped address");
  expect_no_msg(e->q, 50);
}

/* v6only is set by default on every platform (Windows' default; POSIX
 * systems default to 0 unless the library sets it), so a v6 socket does
 * not take IPv4 traffic unless asked. */
static void test_v6only_default(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_socket t = sup_open(e->q, CPORT_AF_INET6), u = sup_udp_open(e->q, CPORT_AF_INET6, 0);
  cport_socket c4, u4, r;
  cport_addr a = any6(0), ta, ua, to4;
  char buf[16] = {0};
  cport_handle h = 0;
  cport_recv_info ri;
  cport_optval v;

  SUP_EQ(get_v6only(t), 1);
  SUP_EQ(get_v6only(u), 1);
  /* And it means it: IPv4 does not reach a v6 wildcard listener... */
  SUP_RC(cport_bind(t, &a), CPORT_OK);
  SUP_RC(cport_listen(t, 0), CPORT_OK);
  SUP_RC(cport_sockname(t, &ta), CPORT_OK);
  to4 = sup_loopback(CPORT_AF_INET, ta.port);
  /* The client is bound first, to a port other than the target's: an
   * unbound one may be given that very port and connect to itself. */
  for (;;) {
    cport_addr mine = sup_loopback(CPORT_AF_INET, 0);
    c4 = sup_open(e->q, CPORT_AF_INET);
    SUP_RC(cport_bind(c4, &mine), CPORT_OK);
    SUP_RC(cport_sockname(c4, &mine), CPORT_OK);
    if (mine.port != ta.port) break;
    SUP_RC(cport_close(c4), CPORT_OK);
  }
  SUP_RC(sup_connect(e->q, c4, &to4), CPORT_ECONNREFUSED);
  /* ... nor a v6 wildcard datagram socket. */
  SUP_RC(cport_bind(u, &a), CPORT_OK);
  SUP_RC(cport_sockname(u, &ua), CPORT_OK);
  u4 = sup_udp(e->q, CPORT_AF_INET, 0, NULL);
  to4 = sup_loopback(CPORT_AF_INET, ua.port);
  SUP_RC(sup_sendto(e->q, u4, buf, sizeof buf, &to4), CPORT_OK);
  sup_settle(e->q, 50);
  SUP_RC(cport_recvfrom(u, buf, sizeof buf, 0, CPORT_NOWAIT, &ri, &h), sup_pending_rc());
  expect_no_msg_for(e->q, u, h, SUP_QUIET);
  SUP_RC(cport_cancel(u, h), CPORT_OK);
  if (sup_select_mode()) {
    sup_mark_ended(u, h);
  } else {
    cport_msg m = expect_msg_for(e->q, u, h, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_RC(m.status, CPORT_ECANCELED);
  }

  /* It can only change before bind. */
  v = bool_val(0);
  SUP_RC(cport_setopt(t, CPORT_LEVEL_IPV6, CPORT_OPT_IPV6_V6ONLY, &v), CPORT_EINVAL);
  SUP_RC(cport_setopt(u, CPORT_LEVEL_IPV6, CPORT_OPT_IPV6_V6ONLY, &v), CPORT_EINVAL);
  SUP_EQ(get_v6only(t), 1);
  /* Before bind it goes both ways. */
  r = sup_open(e->q, CPORT_AF_INET6);
  set_v6only(r, 0);
  set_v6only(r, 1);
  set_v6only(r, 0);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Address text                                                             */
/* ------------------------------------------------------------------------ */

/* text parses, and formats as want (NULL: as text itself). */
static void check_text(const char *text, const char *want, cport_addr *out) {
  cport_addr a;
  char buf[CPORT_ADDR_STRLEN];
  int n;
  if (!want) want = text;
  memset(&a, 0xa5, sizeof a);
  n = cport_addr_parse(&a, text);
  SUP_ASSERT(n == CPORT_OK, "cport_addr_parse('%s') returned %s", text, sup_rc_name(n));
  n = cport_addr_format(&a, buf, sizeof buf);
  SUP_ASSERT(n > 0, "cport_addr_format of '%s' returned %s", text, sup_rc_name(n));
  SUP_ASSERT(strcmp(buf, want) == 0, "'%s' formats as '%s', expected '%s'", text, buf, want);
  SUP_EQ(n, strlen(want));
  if (out) *out = a;
}

static void check_bad_text(const char *text) {
  cport_addr a;
  int rc = cport_addr_parse(&a, text);
  SUP_ASSERT(rc == CPORT_EINVAL, "cport_addr_parse('%s') returned %s, expected CPORT_EINVAL", text,
             sup_rc_name(rc));
}

static void test_addr_text(void **state) {
  static const uint8_t loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  static const uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4};
  static const uint8_t doc[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  cport_addr a, b;
  (void)state;

  check_text("[::1]:80", NULL, &a);
  SUP_EQ(a.family, CPORT_AF_INET6);
  SUP_EQ(a.port, 80);
  SUP_EQ(a.scope_id, 0);
  SUP_ASSERT(memcmp(a.ip, loop6, 16) == 0, "[::1] bytes");

  check_text("[fe80::1%2]:9", NULL, &a);
  SUP_EQ(a.family, CPORT_AF_INET6);
  SUP_EQ(a.scope_id, 2);
  SUP_EQ(a.port, 9);
  SUP_ASSERT(a.ip[0] == 0xfe && a.ip[1] == 0x80 && a.ip[15] == 1, "fe80::1 bytes");

  check_text("1.2.3.4:65535", NULL, &a);
  SUP_EQ(a.family, CPORT_AF_INET);
  SUP_EQ(a.port, 65535);
  SUP_ASSERT(a.ip[0] == 1 && a.ip[1] == 2 && a.ip[2] == 3 && a.ip[3] == 4, "1.2.3.4 bytes");
  check_text("0.0.0.0:0", NULL, NULL);

  /* RFC 5952: lower case, no leading zeros, the longest run of zero words
   * (the first of equal ones, never a single word) as "::". */
  check_text("[2001:db8::1]:1", NULL, &a);
  SUP_ASSERT(memcmp(a.ip, doc, 16) == 0, "2001:db8::1 bytes");
  check_text("[2001:0db8:0000:0000:0000:0000:0000:0001]:1", "[2001:db8::1]:1", &b);
  SUP_ASSERT(memcmp(a.ip, b.ip, 16) == 0, "long and short forms are the same address");
  check_text("[2001:DB8::AbC]:1", "[2001:db8::abc]:1", NULL);
  check_text("[2001:db8:0:0:1:0:0:1]:2", "[2001:db8::1:0:0:1]:2", NULL);
  check_text("[2001:db8:0:1:1:1:1:1]:3", NULL, NULL);
  check_text("[2001:0:0:1:0:0:0:1]:4", "[2001:0:0:1::1]:4", NULL);
  check_text("[1:0:0:0:0:0:0:0]:5", "[1::]:5", NULL);
  check_text("[0:0:0:0:0:0:0:0]:6", "[::]:6", NULL);
  check_text("[1:2:3:4:5:6:7:8]:7", NULL, NULL);

  /* v4-mapped: both spellings, one canonical form. */
  check_text("[::ffff:1.2.3.4]:5", NULL, &a);
  SUP_EQ(a.family, CPORT_AF_INET6);
  SUP_ASSERT(memcmp(a.ip, mapped, 16) == 0, "::ffff:1.2.3.4 bytes");
  check_text("[::ffff:102:304]:5", "[::ffff:1.2.3.4]:5", &b);
  SUP_ASSERT(memcmp(b.ip, mapped, 16) == 0, "::ffff:102:304 bytes");
  check_text("[::FFFF:127.0.0.1]:80", "[::ffff:127.0.0.1]:80", NULL);

  /* init takes the same text without the port. */
  SUP_RC(cport_addr_init(&a, "2001:0db8::0001", 443), CPORT_OK);
  SUP_ASSERT(memcmp(a.ip, doc, 16) == 0 && a.port == 443, "cport_addr_init of 2001:0db8::0001");
  SUP_RC(cport_addr_init(&a, "::ffff:1.2.3.4", 1), CPORT_OK);
  SUP_ASSERT(memcmp(a.ip, mapped, 16) == 0, "cport_addr_init of ::ffff:1.2.3.4");

  check_bad_text("1.2.3:80");
  check_bad_text("[::1]");
  check_bad_text("::1:80");
  check_bad_text("256.1.1.1:1");
  check_bad_text("[1::2::3]:1");
  check_bad_text("1.2.3.4:65536");
  check_bad_text("[::1]:65536");
  check_bad_text("[1:2:3:4:5:6:7:8:9]:1");
  check_bad_text("[1:2:3:4:5:6:7]:1");
  check_bad_text("[12345::1]:1");
  check_bad_text("[::1%]:1");
  check_bad_text("[::1%x]:1");
  check_bad_text("[1.2.3.4]:1");
  check_bad_text("1.2.3.4:");
  check_bad_text(":80");
  check_bad_text("[]:80");
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_dual_stack_tcp),
    CONF_TEST(test_dual_stack_udp),
    CONF_TEST(test_v6only_default),
    CONF_TEST(test_addr_text),
};

const struct CMUnitTest *conf_ipv6_tests(size_t *count) {
  *count = sizeof tests / sizeof tests[0];
  return tests;
}
