/*
 * Conformance: the API surface. Errors and names, addresses, invalid and
 * stale handles (a stale or forged socket gets CPORT_EBADF, never a crash),
 * argument checks, calls in the wrong state, queues, the registry, info.
 */
#include "conformance.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------ */
/* Errors and names (rule 8: one error vocabulary)                          */
/* ------------------------------------------------------------------------ */

static void test_error_names(void **state) {
  (void)state;
  for (int e = CPORT_EUNKNOWN; e <= CPORT_COMPLETION; e++) {
    const char *s = cport_strerror(e), *n = cport_errname(e);
    SUP_ASSERT(s != NULL && s[0] != 0, "cport_strerror(%d) is empty", e);
    SUP_ASSERT(n != NULL && strncmp(n, "CPORT_", 6) == 0, "cport_errname(%d) = '%s'", e,
               n ? n : "(null)");
    for (int f = CPORT_EUNKNOWN; f < e; f++)
      SUP_ASSERT(strcmp(cport_errname(f), n) != 0, "errors %d and %d share the name %s", f, e, n);
  }
  SUP_ASSERT(strcmp(cport_errname(CPORT_ECONNRESET), "CPORT_ECONNRESET") == 0, "%s",
             cport_errname(CPORT_ECONNRESET));
  SUP_ASSERT(strcmp(cport_errname(CPORT_ETIMEDOUT), "CPORT_ETIMEDOUT") == 0, "%s",
             cport_errname(CPORT_ETIMEDOUT));
  SUP_ASSERT(strcmp(cport_errname(CPORT_OK), "CPORT_OK") == 0, "%s", cport_errname(CPORT_OK));
  /* Values outside the enum still get a string. */
  SUP_ASSERT(cport_strerror(-1000) != NULL && cport_strerror(1000) != NULL, "strerror NULL");
  SUP_ASSERT(cport_errname(-1000) != NULL && cport_errname(1000) != NULL, "errname NULL");
}

static void test_backend_and_context(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_backend_id id = cport_ctx_backend(e->ctx);
  cport_ctx *c2 = NULL;
  cport_ctx_options opts;
  SUP_ASSERT(id != CPORT_BACKEND_AUTO, "a context reports the backend it runs on");
  if (sup_backend() != CPORT_BACKEND_AUTO) SUP_EQ(id, sup_backend());
  SUP_ASSERT(cport_backend_available(id), "the running backend is available");
  SUP_ASSERT(cport_backend_name(id) != NULL, "backend name");
  SUP_ASSERT(strcmp(cport_backend_name(CPORT_BACKEND_EPOLL), "epoll") == 0, "%s",
             cport_backend_name(CPORT_BACKEND_EPOLL));
  SUP_ASSERT(strcmp(cport_backend_name(CPORT_BACKEND_IOCP), "iocp") == 0, "%s",
             cport_backend_name(CPORT_BACKEND_IOCP));
  SUP_ASSERT(cport_queue_ctx(e->q) == e->ctx, "cport_queue_ctx");
  if (sup_is_windows())
    SUP_ASSERT(!cport_backend_available(CPORT_BACKEND_EPOLL), "no epoll on Windows");
  else
    SUP_ASSERT(!cport_backend_available(CPORT_BACKEND_IOCP), "no IOCP off Windows");

  /* A backend this system lacks, and a bogus one. */
  memset(&opts, 0, sizeof opts);
  opts.backend = sup_is_windows() ? CPORT_BACKEND_EPOLL : CPORT_BACKEND_IOCP;
  SUP_RC(cport_ctx_create(&c2, &opts), CPORT_ENOTSUP);
  opts.backend = (cport_backend_id)77;
  SUP_RC2(cport_ctx_create(&c2, &opts), CPORT_EINVAL, CPORT_ENOTSUP);
  SUP_RC(cport_ctx_create(NULL, NULL), CPORT_EINVAL);

  /* Two contexts side by side; NULL options mean defaults. */
  SUP_RC(cport_ctx_create(&c2, NULL), CPORT_OK);
  SUP_ASSERT(c2 != NULL && c2 != e->ctx, "second context");
  cport_ctx_destroy(c2);
}

/* ------------------------------------------------------------------------ */
/* Addresses                                                                */
/* ------------------------------------------------------------------------ */

static void check_roundtrip(const char *text) {
  cport_addr a;
  char buf[CPORT_ADDR_STRLEN];
  int n;
  memset(&a, 0xa5, sizeof a);
  SUP_ASSERT(cport_addr_parse(&a, text) == CPORT_OK, "cport_addr_parse('%s')", text);
  n = cport_addr_format(&a, buf, sizeof buf);
  SUP_ASSERT(n > 0, "cport_addr_format of '%s' returned %s", text, sup_rc_name(n));
  SUP_ASSERT(strcmp(buf, text) == 0, "'%s' formats back as '%s'", text, buf);
  SUP_EQ(n, strlen(text));
}

static void check_parse_bad(const char *text) {
  cport_addr a;
  int rc = cport_addr_parse(&a, text);
  SUP_ASSERT(rc == CPORT_EINVAL, "cport_addr_parse('%s') returned %s, expected CPORT_EINVAL", text,
             sup_rc_name(rc));
}

static void check_init_bad(const char *text) {
  cport_addr a;
  int rc = cport_addr_init(&a, text, 80);
  SUP_ASSERT(rc == CPORT_EINVAL, "cport_addr_init('%s') returned %s, expected CPORT_EINVAL", text,
             sup_rc_name(rc));
}

static void test_addresses(void **state) {
  cport_addr a, b;
  char buf[CPORT_ADDR_STRLEN];
  static const uint8_t v6_loop[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  (void)state;

  SUP_RC(cport_addr_init(&a, "127.0.0.1", 8080), CPORT_OK);
  SUP_EQ(a.family, CPORT_AF_INET);
  SUP_EQ(a.port, 8080);
  SUP_ASSERT(a.ip[0] == 127 && a.ip[1] == 0 && a.ip[2] == 0 && a.ip[3] == 1, "127.0.0.1 bytes");
  SUP_RC(cport_addr_init(&b, "::1", 443), CPORT_OK);
  SUP_EQ(b.family, CPORT_AF_INET6);
  SUP_EQ(b.port, 443);
  SUP_ASSERT(memcmp(b.ip, v6_loop, 16) == 0, "::1 bytes");
  SUP_RC(cport_addr_init(&a, "0.0.0.0", 0), CPORT_OK);
  SUP_EQ(a.family, CPORT_AF_INET);
  SUP_RC(cport_addr_init(&a, "10.1.2.3", 65535), CPORT_OK);
  SUP_EQ(a.port, 65535);
  SUP_ASSERT(a.ip[0] == 10 && a.ip[1] == 1 && a.ip[2] == 2 && a.ip[3] == 3, "10.1.2.3 bytes");

  check_init_bad("");
  check_init_bad("256.1.1.1");
  check_init_bad("1.2.3");
  check_init_bad("1.2.3.4.5");
  check_init_bad("localhost");
  check_init_bad("::g");
  check_init_bad("1:2:3:4:5:6:7:8:9");
  check_init_bad("127.0.0.1:80");

  check_roundtrip("127.0.0.1:8080");
  check_roundtrip("0.0.0.0:0");
  check_roundtrip("255.255.255.255:65535");
  check_roundtrip("[::1]:443");
  check_roundtrip("[::]:1");
  check_roundtrip("[2001:db8::1]:9");
  check_roundtrip("[fe80::1:2:3:4]:65535");

  SUP_RC(cport_addr_parse(&a, "[::1]:80"), CPORT_OK);
  SUP_EQ(a.family, CPORT_AF_INET6);
  SUP_EQ(a.port, 80);
  SUP_ASSERT(memcmp(a.ip, v6_loop, 16) == 0, "[::1] bytes");
  SUP_RC(cport_addr_parse(&a, "[fe80::1%3]:80"), CPORT_OK);
  SUP_EQ(a.scope_id, 3);
  SUP_EQ(a.port, 80);
  SUP_RC(cport_addr_parse(&a, "192.168.0.1:1"), CPORT_OK);
  SUP_RC(cport_addr_init(&b, "192.168.0.1", 1), CPORT_OK);
  SUP_ASSERT(a.family == b.family && a.port == b.port && memcmp(a.ip, b.ip, 4) == 0,
             "parse and init agree");

  check_parse_bad("");
  check_parse_bad("127.0.0.1");
  check_parse_bad("127.0.0.1:");
  check_parse_bad("127.0.0.1:65536");
  check_parse_bad("127.0.0.1:-1");
  check_parse_bad("127.0.0.1:abc");
  check_parse_bad("127.0.0.1:80x");
  check_parse_bad("127.0.0.1:80 ");
  check_parse_bad("256.0.0.1:80");
  check_parse_bad("::1:80");
  check_parse_bad("[::1]");
  check_parse_bad("[::1]:");
  check_parse_bad("[::1:80");
  check_parse_bad("[127.0.0.1]:80");
  check_parse_bad("[::zz]:80");
  check_parse_bad("host:80");

  /* Formatting: the length, a buffer too small, a bad address. */
  SUP_RC(cport_addr_parse(&a, "127.0.0.1:8080"), CPORT_OK);
  SUP_EQ(cport_addr_format(&a, buf, sizeof buf), 14);
  SUP_EQ(cport_addr_format(&a, buf, 15), 14); /* exactly enough with the NUL */
  SUP_RC(cport_addr_format(&a, buf, 14), CPORT_EINVAL);
  SUP_RC(cport_addr_format(&a, buf, 0), CPORT_EINVAL);
  memset(&a, 0, sizeof a);
  SUP_RC(cport_addr_format(&a, buf, sizeof buf), CPORT_EINVAL); /* family 0 */
  a.family = 99;
  SUP_RC(cport_addr_format(&a, buf, sizeof buf), CPORT_EINVAL);
}

/* ------------------------------------------------------------------------ */
/* Stale, forged and closed sockets: CPORT_EBADF on every call              */
/* ------------------------------------------------------------------------ */

static void test_stale_forged_closed_sockets(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  cport_socket s1, s2, ids[64];
  cport_info info;
  cport_addr a = sup_loopback(CPORT_AF_INET, 0);

  /* Forged: 0, all ones, and random 64-bit values. */
  sup_check_ebadf(CPORT_INVALID_SOCKET, "zero");
  sup_check_ebadf(~(cport_socket)0, "all-ones");
  for (int i = 0; i < 64; i++) sup_check_ebadf(sup_rand(), "random");

  /* Stale: the slot is reused by a new socket; the old handle stays dead
   * and closing it again must not close the new one. */
  s1 = sup_open(e->q, CPORT_AF_INET);
  SUP_RC(cport_close(s1), CPORT_OK);
  s2 = sup_open(e->q, CPORT_AF_INET);
  SUP_ASSERT(s2 != s1, "a new socket never reuses a closed socket's handle");
  sup_check_ebadf(s1, "stale");
  SUP_RC(cport_info_get(s2, &info), CPORT_OK);
  SUP_RC(cport_bind(s2, &a), CPORT_OK);
  SUP_RC(cport_close(s2), CPORT_OK);
  SUP_RC(cport_close(s2), CPORT_EBADF); /* double close */

  /* Many generations of the same slots: every handle distinct and dead. */
  for (int i = 0; i < 64; i++) {
    ids[i] = sup_open(e->q, i % 2 ? CPORT_AF_INET6 : CPORT_AF_INET);
    for (int j = 0; j < i; j++) SUP_ASSERT(ids[j] != ids[i], "handle %d reused as %d", j, i);
    SUP_RC(cport_close(ids[i]), CPORT_OK);
  }
  for (int i = 0; i < 64; i++) SUP_RC(cport_info_get(ids[i], &info), CPORT_EBADF);

  /* Closed: a listener, a client and an accepted socket. */
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_close(p.listener), CPORT_OK);
  SUP_RC(cport_close(p.client), CPORT_OK);
  SUP_RC(cport_close(p.server), CPORT_OK);
  sup_check_ebadf(p.listener, "closed listener");
  sup_check_ebadf(p.client, "closed client");
  sup_check_ebadf(p.server, "closed accepted");
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Argument checks                                                          */
/* ------------------------------------------------------------------------ */

static void test_null_pointers(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  cport_socket s = 0, fresh;
  cport_handle h = 0;
  size_t n = 0;
  char buf[32], echo[32];
  cport_msg msgs[2];
  cport_addr a = sup_loopback(CPORT_AF_INET, 1);
  cport_queue *q2 = NULL;
  cport_socket list[4];

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  fresh = sup_open(e->q, CPORT_AF_INET);
  memset(buf, 'x', sizeof buf);

  SUP_RC(cport_open(e->q, CPORT_AF_INET, CPORT_SOCK_STREAM, sup_mode_flags(), NULL), CPORT_EINVAL);
  SUP_RC(cport_open(NULL, CPORT_AF_INET, CPORT_SOCK_STREAM, sup_mode_flags(), &s), CPORT_EINVAL);
  SUP_RC(cport_bind(fresh, NULL), CPORT_EINVAL);
  SUP_RC(cport_connect(fresh, NULL, CPORT_NOWAIT, &h), CPORT_EINVAL); /* no connect under way */
  SUP_RC(cport_connect(fresh, &a, CPORT_NOWAIT, NULL), CPORT_EINVAL);
  SUP_RC(cport_accept(p.listener, CPORT_NOWAIT, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_accept(p.listener, CPORT_NOWAIT, &s, NULL), CPORT_EINVAL);
  SUP_RC(cport_send(p.client, NULL, 10, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_send(p.client, buf, 10, 0, CPORT_NOWAIT, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_send(p.client, buf, 10, 0, CPORT_NOWAIT, &n, NULL), CPORT_EINVAL);
  SUP_RC(cport_send(p.client, NULL, 10, 0, 100, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recv(p.server, NULL, 10, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recv(p.server, buf, 10, 0, CPORT_NOWAIT, NULL, &h), CPORT_EINVAL);
  SUP_RC(cport_recv(p.server, buf, 10, 0, CPORT_NOWAIT, &n, NULL), CPORT_EINVAL);
  SUP_RC(cport_recv(p.server, NULL, 10, 0, 100, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_sockname(p.client, NULL), CPORT_EINVAL);
  SUP_RC(cport_peername(p.client, NULL), CPORT_EINVAL);
  SUP_RC(cport_info_get(p.client, NULL), CPORT_EINVAL);
  SUP_RC(cport_wait(NULL, msgs, 1, CPORT_NOWAIT), CPORT_EINVAL);
  SUP_RC(cport_wait(e->q, NULL, 1, CPORT_NOWAIT), CPORT_EINVAL);
  SUP_RC(cport_post(NULL, 1, NULL), CPORT_EINVAL);
  SUP_RC(cport_queue_create(NULL, &q2), CPORT_EINVAL);
  SUP_RC(cport_queue_create(e->ctx, NULL), CPORT_EINVAL);
  SUP_RC(cport_queue_destroy(NULL), CPORT_EINVAL);
  SUP_RC(cport_addr_init(NULL, "127.0.0.1", 1), CPORT_EINVAL);
  SUP_RC(cport_addr_init(&a, NULL, 1), CPORT_EINVAL);
  SUP_RC(cport_addr_parse(NULL, "127.0.0.1:1"), CPORT_EINVAL);
  SUP_RC(cport_addr_parse(&a, NULL), CPORT_EINVAL);
  a = sup_loopback(CPORT_AF_INET, 1);
  SUP_RC(cport_addr_format(NULL, buf, sizeof buf), CPORT_EINVAL);
  SUP_RC(cport_addr_format(&a, NULL, 64), CPORT_EINVAL);
  SUP_RC(cport_which_sockets(NULL, NULL, 4), CPORT_EINVAL);
  SUP_ASSERT(cport_which_sockets(NULL, list, 0) >= 0, "max 0 with a buffer is a count query");

  /* None of that had an effect: no message, and the pair still works. */
  expect_no_msg(e->q, 50);
  sup_pattern(buf, sizeof buf, 0, 7);
  sup_send_all(e->q, p.client, buf, sizeof buf);
  sup_recv_exact(e->q, p.server, echo, sizeof echo);
  sup_check_pattern(echo, sizeof echo, 0, 7, "data after the EINVAL calls");
}

static void test_bad_lengths_flags_timeouts(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char buf[16] = {0};
  size_t n = 0;
  cport_handle h = 0;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_send(p.client, buf, 0, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recv(p.server, buf, 0, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_send(p.client, buf, 0, 0, 100, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recv(p.server, buf, 0, 0, 100, &n, &h), CPORT_EINVAL);
  /* len must fit in 2^31 - 1; the library must refuse before touching the
   * (small) buffer. */
  SUP_RC(cport_send(p.client, buf, (size_t)0x80000000u, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recv(p.server, buf, (size_t)0x80000000u, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_send(p.client, buf, SIZE_MAX, 0, CPORT_NOWAIT, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_recv(p.server, buf, SIZE_MAX, 0, 100, &n, &h), CPORT_EINVAL);
  /* Timeouts are CPORT_NOWAIT, CPORT_INFINITY or >= 0. */
  SUP_RC(cport_recv(p.server, buf, sizeof buf, 0, -3, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_send(p.client, buf, sizeof buf, 0, -100, &n, &h), CPORT_EINVAL);
  SUP_RC(cport_wait(e->q, &m, 1, -3), CPORT_EINVAL);
  SUP_RC(cport_wait(e->q, &m, 0, CPORT_NOWAIT), CPORT_EINVAL);
  SUP_RC(cport_wait(e->q, &m, -1, CPORT_NOWAIT), CPORT_EINVAL);
  /* Shutdown takes one of the three directions. */
  SUP_RC(cport_shutdown(p.client, 0), CPORT_EINVAL);
  SUP_RC(cport_shutdown(p.client, 4), CPORT_EINVAL);
  SUP_RC(cport_shutdown(p.client, -1), CPORT_EINVAL);
  expect_no_msg(e->q, 50);
  /* Still a working pair. */
  sup_pattern(buf, sizeof buf, 0, 3);
  sup_send_all(e->q, p.client, buf, sizeof buf);
  memset(buf, 0, sizeof buf);
  sup_recv_exact(e->q, p.server, buf, sizeof buf);
  sup_check_pattern(buf, sizeof buf, 0, 3, "data after the EINVAL calls");
}

/* ------------------------------------------------------------------------ */
/* Calls in the wrong state                                                 */
/* ------------------------------------------------------------------------ */

static void test_wrong_state(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  cport_socket fresh, other, s6, acc = 0;
  cport_handle h = 0;
  size_t n = 0;
  char buf[8] = {0};
  cport_addr a = sup_loopback(CPORT_AF_INET, 0), out, a6 = sup_loopback(CPORT_AF_INET6, 0);
  int rc;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  fresh = sup_open(e->q, CPORT_AF_INET);

  /* Data calls on a listener or an unconnected socket. */
  SUP_RC(cport_send(p.listener, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h), CPORT_ENOTCONN);
  SUP_RC(cport_recv(p.listener, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h), CPORT_ENOTCONN);
  SUP_RC(cport_send(fresh, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h), CPORT_ENOTCONN);
  SUP_RC(cport_recv(fresh, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h), CPORT_ENOTCONN);
  SUP_RC(cport_send(fresh, buf, sizeof buf, 0, 100, &n, &h), CPORT_ENOTCONN);
  SUP_RC(cport_shutdown(fresh, CPORT_SHUT_WR), CPORT_ENOTCONN);
  SUP_RC(cport_peername(fresh, &out), CPORT_ENOTCONN);
  SUP_RC(cport_peername(p.listener, &out), CPORT_ENOTCONN);

  /* Accept on something that is not listening (the library knows; it
   * must not rely on the OS, which under Wine lets AcceptEx pend: docs/wine.md
   * "AcceptEx argument checks"). */
  SUP_RC(cport_accept(fresh, CPORT_NOWAIT, &acc, &h), CPORT_EINVAL);
  SUP_RC(cport_accept(p.client, CPORT_NOWAIT, &acc, &h), CPORT_EINVAL);
  SUP_RC(cport_accept(p.server, CPORT_NOWAIT, &acc, &h), CPORT_EINVAL);
  SUP_RC(cport_accept(p.client, 100, &acc, &h), CPORT_EINVAL);

  /* Listen on a connected socket: a call wrong in this state. */
  SUP_RC(cport_listen(p.client, 5), CPORT_EINVAL);
  SUP_RC(cport_listen(p.server, 5), CPORT_EINVAL);
  /* Listen again on a listener only changes the backlog. */
  SUP_RC(cport_listen(p.listener, 7), CPORT_OK);

  /* Connect on a connected socket. */
  SUP_RC(cport_connect(p.client, &p.addr, CPORT_NOWAIT, &h), CPORT_EISCONN);
  SUP_RC(cport_connect(p.server, &p.addr, CPORT_NOWAIT, &h), CPORT_EISCONN);
  SUP_RC(cport_connect(p.client, &p.addr, 100, &h), CPORT_EISCONN);

  /* Bind: twice, a bad family, the other family, an address in use. */
  SUP_RC(cport_bind(fresh, &a), CPORT_OK);
  SUP_RC(cport_bind(fresh, &a), CPORT_EINVAL);
  other = sup_open(e->q, CPORT_AF_INET);
  out = a;
  out.family = 99;
  SUP_RC2(cport_bind(other, &out), CPORT_EINVAL, CPORT_EAFNOSUPPORT);
  SUP_RC2(cport_bind(other, &a6), CPORT_EINVAL, CPORT_EAFNOSUPPORT);
  s6 = sup_open(e->q, CPORT_AF_INET6);
  SUP_RC2(cport_bind(s6, &a), CPORT_EINVAL, CPORT_EAFNOSUPPORT);
  rc = cport_bind(other, &p.addr);
  if (sup_on_wine() && rc == CPORT_EACCES) {
    /* docs/wine.md "SO_REUSEADDR" / "SO_EXCLUSIVEADDRUSE": a second bind to a
     * listening port answers 10013 (WSAEACCES) under Wine. */
  } else {
    SUP_RC(rc, CPORT_EADDRINUSE);
  }

  /* Open: bad family and type. */
  SUP_RC2(cport_open(e->q, 99, CPORT_SOCK_STREAM, 0, &other), CPORT_EINVAL, CPORT_EAFNOSUPPORT);
  SUP_RC2(cport_open(e->q, 0, CPORT_SOCK_STREAM, 0, &other), CPORT_EINVAL, CPORT_EAFNOSUPPORT);
  SUP_RC2(cport_open(e->q, CPORT_AF_INET, 99, 0, &other), CPORT_EINVAL, CPORT_ENOTSUP);
  SUP_RC2(cport_open(e->q, CPORT_AF_INET, 0, 0, &other), CPORT_EINVAL, CPORT_ENOTSUP);
  SUP_RC(cport_open(e->q, CPORT_AF_INET, CPORT_SOCK_STREAM,
                    CPORT_OPEN_REGISTRY | CPORT_OPEN_NO_REGISTRY, &other),
         CPORT_EINVAL);

  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Queues and user messages                                                 */
/* ------------------------------------------------------------------------ */

static void test_queue_post_and_wait(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_msg m[16];
  int x = 0, y = 0;
  cport_queue *q2 = NULL;
  cport_socket s;

  /* An empty queue. */
  SUP_EQ(cport_wait(e->q, m, 16, CPORT_NOWAIT), 0);
  SUP_EQ(cport_wait(e->q, m, 16, 0), 0);
  SUP_EQ(cport_wait(e->q, m, 16, 30), 0);

  /* One user message, every field. */
  SUP_RC(cport_post(e->q, 42, &x), CPORT_OK);
  SUP_EQ(cport_wait(e->q, m, 16, CPORT_NOWAIT), 1);
  SUP_EQ(m[0].tag, CPORT_TAG_USER);
  SUP_EQ(m[0].user, 42);
  SUP_ASSERT(m[0].user_ptr == &x, "user_ptr");
  SUP_EQ(m[0].socket, 0);
  SUP_EQ(m[0].handle, 0);
  SUP_EQ(cport_wait(e->q, m, 16, CPORT_NOWAIT), 0);

  /* Several, in order, taken in batches of at most max. */
  for (int i = 0; i < 10; i++)
    SUP_RC(cport_post(e->q, 100 + (uint64_t)i, i % 2 ? &y : NULL), CPORT_OK);
  SUP_EQ(cport_wait(e->q, m, 4, CPORT_NOWAIT), 4);
  for (int i = 0; i < 4; i++) SUP_EQ(m[i].user, 100 + i);
  SUP_EQ(cport_wait(e->q, m, 16, 0), 6);
  for (int i = 0; i < 6; i++) {
    SUP_EQ(m[i].user, 104 + i);
    SUP_ASSERT(m[i].user_ptr == ((104 + i) % 2 ? (void *)&y : NULL), "user_ptr %d", i);
  }
  /* A waiter with a timeout gets a message posted before it waited. */
  SUP_RC(cport_post(e->q, UINT64_MAX, NULL), CPORT_OK);
  SUP_EQ(cport_wait(e->q, m, 1, SUP_TIMEOUT), 1);
  SUP_EQ(m[0].user, UINT64_MAX);

  /* A queue that owns a socket cannot be destroyed. */
  SUP_RC(cport_queue_create(e->ctx, &q2), CPORT_OK);
  SUP_ASSERT(q2 != NULL && q2 != e->q, "new queue");
  SUP_ASSERT(cport_queue_ctx(q2) == e->ctx, "queue ctx");
  s = sup_open(q2, CPORT_AF_INET);
  SUP_RC(cport_queue_destroy(q2), CPORT_EBUSY);
  /* ... and is still usable. */
  SUP_RC(cport_post(q2, 7, NULL), CPORT_OK);
  SUP_EQ(cport_wait(q2, m, 16, CPORT_NOWAIT), 1);
  SUP_EQ(m[0].user, 7);
  SUP_RC(cport_close(s), CPORT_OK);
  /* Unread messages do not keep it alive. */
  SUP_RC(cport_post(q2, 8, NULL), CPORT_OK);
  SUP_RC(cport_queue_destroy(q2), CPORT_OK);
  /* Messages of one queue never show up in another. */
  SUP_EQ(cport_wait(e->q, m, 16, CPORT_NOWAIT), 0);
}

static void noop_work(void *arg) { (void)arg; }

/* A destroyed queue answers CPORT_EBADF to every call that names it, as a
 * closed socket does, instead of being memory that was freed. */
static void test_destroyed_queue(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_msg m[4];
  cport_queue *dead = NULL;
  cport_handle h = 0;
  cport_socket s;
  SUP_RC(cport_queue_create(e->ctx, &dead), CPORT_OK);
  SUP_RC(cport_post(dead, 1, NULL), CPORT_OK); /* a message it drops */
  SUP_RC(cport_timer_start(dead, 60000, 0, 0, NULL, &h), CPORT_OK);
  SUP_RC(cport_queue_destroy(dead), CPORT_OK);

  SUP_RC(cport_queue_destroy(dead), CPORT_EBADF);
  SUP_EQ(cport_wait(dead, m, 4, CPORT_NOWAIT), CPORT_EBADF);
  SUP_EQ(cport_wait(dead, m, 4, 100), CPORT_EBADF);
  SUP_EQ(cport_wait(dead, m, 4, CPORT_INFINITY), CPORT_EBADF);
  SUP_RC(cport_post(dead, 2, NULL), CPORT_EBADF);
  SUP_RC(cport_timer_start(dead, 10, 0, 0, NULL, &h), CPORT_EBADF);
  SUP_EQ(h, 0);
  SUP_RC(cport_queue_cancel(dead, 1), CPORT_EBADF);
  SUP_RC(cport_work(dead, noop_work, NULL, &h), CPORT_EBADF);
  cport_addrinfo *ai = NULL;
  SUP_RC(cport_resolve(dead, "127.0.0.1", "80", NULL, CPORT_NOWAIT, &ai, &h), CPORT_EBADF);
  SUP_ASSERT(ai == NULL, "no answer");
  SUP_RC(cport_open(dead, CPORT_AF_INET, CPORT_SOCK_STREAM, 0, &s), CPORT_EBADF);
  SUP_EQ(s, CPORT_INVALID_SOCKET);
  /* A socket cannot be given to it either, and keeps its owner. */
  s = sup_open(e->q, CPORT_AF_INET);
  cport_optval v;
  memset(&v, 0, sizeof v);
  v.type = CPORT_VAL_QUEUE;
  v.v.queue = dead;
  SUP_RC(cport_setopt(s, CPORT_LEVEL_OTP, CPORT_OPT_OTP_OWNER, &v), CPORT_EBADF);
  SUP_RC(cport_getopt(s, CPORT_LEVEL_OTP, CPORT_OPT_OTP_OWNER, &v), CPORT_OK);
  SUP_ASSERT(v.v.queue == e->q, "owner unchanged");
  SUP_RC(cport_close(s), CPORT_OK);
  /* The timer and the message went with it: nothing shows up elsewhere. */
  SUP_EQ(cport_wait(e->q, m, 4, 50), 0);
}

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */
/* ------------------------------------------------------------------------ */

static int only_this(cport_socket s, void *arg) { return s == *(const cport_socket *)arg; }

static void test_registry(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_queue *q2 = NULL;
  cport_filter f;
  cport_socket a, b, c, d, nr, out[8];
  int base = cport_number_of();
  const unsigned reg = CPORT_OPEN_REGISTRY;
  FILE *tf;
  long size;

  SUP_ASSERT(base >= 0, "number_of %d", base);
  SUP_RC(cport_queue_create(e->ctx, &q2), CPORT_OK);
  a = sup_open_flags(e->q, CPORT_AF_INET, sup_mode_flags() | reg);
  SUP_EQ(cport_number_of(), base + 1);
  b = sup_open_flags(e->q, CPORT_AF_INET, sup_mode_flags() | reg);
  c = sup_open_flags(e->q, CPORT_AF_INET6, sup_mode_flags() | reg);
  d = sup_open_flags(q2, CPORT_AF_INET, sup_mode_flags() | reg);
  SUP_EQ(cport_number_of(), base + 4);
  nr = sup_open_flags(e->q, CPORT_AF_INET, sup_mode_flags() | CPORT_OPEN_NO_REGISTRY);
  SUP_EQ(cport_number_of(), base + 4);

  memset(&f, 0, sizeof f);
  f.owner = e->q;
  SUP_EQ(cport_which_sockets(&f, out, 8), 3);
  SUP_ASSERT(sup_listed(a, &f) && sup_listed(b, &f) && sup_listed(c, &f), "q's sockets listed");
  SUP_ASSERT(!sup_listed(d, &f), "q2's socket is not q's");
  SUP_ASSERT(!sup_listed(nr, &f), "an unregistered socket is not listed");
  f.owner = q2;
  SUP_EQ(cport_which_sockets(&f, out, 8), 1);
  SUP_EQ(out[0], d);
  f.owner = e->q;
  f.family = CPORT_AF_INET6;
  SUP_EQ(cport_which_sockets(&f, out, 8), 1);
  SUP_EQ(out[0], c);
  f.family = CPORT_AF_INET;
  SUP_EQ(cport_which_sockets(&f, out, 8), 2);
  f.family = 0;
  f.type = CPORT_SOCK_STREAM;
  SUP_EQ(cport_which_sockets(&f, out, 8), 3);
  f.type = CPORT_SOCK_DGRAM;
  SUP_EQ(cport_which_sockets(&f, out, 8), 0);
  f.type = 0;
  f.protocol = 6; /* TCP */
  SUP_EQ(cport_which_sockets(&f, out, 8), 3);
  f.protocol = 17; /* UDP */
  SUP_EQ(cport_which_sockets(&f, out, 8), 0);
  f.protocol = 0;
  f.pred = only_this;
  f.arg = &b;
  SUP_EQ(cport_which_sockets(&f, out, 8), 1);
  SUP_EQ(out[0], b);
  f.pred = NULL;
  f.arg = NULL;
  /* No filter: everything, and the count may exceed max. */
  SUP_ASSERT(sup_listed(a, NULL) && sup_listed(d, NULL) && !sup_listed(nr, NULL),
             "unfiltered listing");
  out[1] = 12345;
  SUP_ASSERT(cport_which_sockets(NULL, out, 1) >= base + 4, "count beyond max");
  SUP_EQ(out[1], 12345);
  SUP_ASSERT(cport_which_sockets(NULL, out, 0) >= base + 4, "count with max 0");

  /* The table prints something. */
  tf = tmpfile();
  SUP_ASSERT(tf != NULL, "tmpfile");
  cport_print_sockets(tf);
  fflush(tf);
  fseek(tf, 0, SEEK_END);
  size = ftell(tf);
  fclose(tf);
  SUP_ASSERT(size > 0, "cport_print_sockets wrote nothing");

  /* Closing removes. */
  SUP_RC(cport_close(a), CPORT_OK);
  SUP_EQ(cport_number_of(), base + 3);
  f.owner = e->q;
  f.type = 0;
  SUP_ASSERT(!sup_listed(a, &f), "a closed socket is not listed");
  SUP_RC(cport_close(d), CPORT_OK);
  SUP_RC(cport_close(nr), CPORT_OK);
  SUP_EQ(cport_number_of(), base + 2);

  /* Unregistered sockets work, and what they accept is unregistered too. */
  {
    cport_addr addr;
    cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, CPORT_OPEN_NO_REGISTRY, &addr);
    cport_socket cl, sv;
    char buf[100], got[100];
    sup_connect_pair(e->q, l, &addr, CPORT_OPEN_NO_REGISTRY, &cl, &sv);
    SUP_EQ(cport_number_of(), base + 2);
    SUP_ASSERT(!sup_listed(l, NULL) && !sup_listed(cl, NULL) && !sup_listed(sv, NULL),
               "not listed");
    sup_pattern(buf, sizeof buf, 0, 11);
    sup_send_all(e->q, cl, buf, sizeof buf);
    sup_recv_exact(e->q, sv, got, sizeof got);
    sup_check_pattern(got, sizeof got, 0, 11, "unregistered echo");
    SUP_RC(cport_close(sv), CPORT_OK);
    SUP_RC(cport_close(cl), CPORT_OK);
    SUP_RC(cport_close(l), CPORT_OK);
  }

  /* Accepted sockets of a registered listener are registered. */
  {
    cport_addr addr;
    cport_socket l = sup_listener(e->q, CPORT_AF_INET, 0, reg, &addr);
    cport_socket cl, sv;
    sup_connect_pair(e->q, l, &addr, reg, &cl, &sv);
    SUP_EQ(cport_number_of(), base + 5);
    SUP_ASSERT(sup_listed(sv, NULL), "accepted socket listed");
    SUP_RC(cport_close(sv), CPORT_OK);
    SUP_RC(cport_close(cl), CPORT_OK);
    SUP_RC(cport_close(l), CPORT_OK);
  }
  SUP_RC(cport_close(b), CPORT_OK);
  SUP_RC(cport_close(c), CPORT_OK);
  SUP_EQ(cport_number_of(), base);
  SUP_RC(cport_queue_destroy(q2), CPORT_OK);
}

/* ------------------------------------------------------------------------ */
/* Socket info                                                              */
/* ------------------------------------------------------------------------ */

static void test_info(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  cport_info i;
  cport_addr ca, sa, cp, sp;
  char buf[1000], got[1000];
  size_t n = 0;
  cport_handle h = 0;
  cport_msg m;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_info_get(p.listener, &i), CPORT_OK);
  SUP_EQ(i.family, CPORT_AF_INET);
  SUP_EQ(i.type, CPORT_SOCK_STREAM);
  SUP_EQ(i.select_mode, sup_select_mode());
  SUP_ASSERT(i.owner == e->q, "listener owner");
  SUP_EQ(i.listening, 1);
  SUP_EQ(i.connected, 0);
  SUP_RC(cport_info_get(p.client, &i), CPORT_OK);
  SUP_EQ(i.listening, 0);
  SUP_EQ(i.connected, 1);
  SUP_EQ(i.select_mode, sup_select_mode());
  SUP_RC(cport_info_get(p.server, &i), CPORT_OK);
  SUP_EQ(i.protocol, 6);
  SUP_EQ(i.connected, 1);
  SUP_EQ(i.select_mode, sup_select_mode());
  SUP_ASSERT(i.owner == e->q, "accepted socket owner");
  SUP_EQ(i.pending_reads, 0);
  SUP_EQ(i.pending_writes, 0);

  /* Addresses agree on both ends. */
  SUP_RC(cport_sockname(p.client, &ca), CPORT_OK);
  SUP_RC(cport_peername(p.client, &cp), CPORT_OK);
  SUP_RC(cport_sockname(p.server, &sa), CPORT_OK);
  SUP_RC(cport_peername(p.server, &sp), CPORT_OK);
  SUP_EQ(cp.port, p.addr.port);
  SUP_EQ(sa.port, p.addr.port);
  SUP_EQ(sp.port, ca.port);
  SUP_ASSERT(memcmp(cp.ip, p.addr.ip, 4) == 0 && memcmp(sp.ip, ca.ip, 4) == 0, "ips");

  /* Byte counters. */
  sup_pattern(buf, sizeof buf, 0, 5);
  sup_send_all(e->q, p.client, buf, sizeof buf);
  sup_recv_exact(e->q, p.server, got, sizeof got);
  SUP_RC(cport_info_get(p.client, &i), CPORT_OK);
  SUP_EQ(i.bytes_out, sizeof buf);
  SUP_EQ(i.bytes_in, 0);
  SUP_RC(cport_info_get(p.server, &i), CPORT_OK);
  SUP_EQ(i.bytes_in, sizeof buf);

  /* A pending recv is counted, and no longer once it ended. */
  int rc = cport_recv(p.server, got, sizeof got, 0, CPORT_NOWAIT, &n, &h);
  SUP_RC(rc, sup_select_mode() ? CPORT_SELECT : CPORT_COMPLETION);
  SUP_RC(cport_info_get(p.server, &i), CPORT_OK);
  SUP_EQ(i.pending_reads, 1);
  SUP_EQ(i.pending_writes, 0);
  rc = cport_cancel(p.server, h);
  SUP_RC(rc, CPORT_OK);
  if (sup_select_mode()) {
    sup_mark_ended(p.server, h);
  } else {
    m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
    SUP_EQ(m.tag, CPORT_TAG_ABORT);
    SUP_RC(m.status, CPORT_ECANCELED);
  }
  SUP_RC(cport_info_get(p.server, &i), CPORT_OK);
  SUP_EQ(i.pending_reads, 0);
  expect_no_msg(e->q, 50);
}

/* ------------------------------------------------------------------------ */
/* Owner (DESIGN §3): future messages go to the new owner; messages already  */
/* delivered stay where they are.                                           */
/* ------------------------------------------------------------------------ */

static void wait_not_pending(cport_queue *idle, cport_socket s) {
  uint64_t deadline = sup_now_ms() + SUP_TIMEOUT;
  for (;;) {
    cport_info i;
    cport_msg m;
    SUP_RC(cport_info_get(s, &i), CPORT_OK);
    if (i.pending_reads == 0) return;
    SUP_ASSERT(sup_now_ms() < deadline, "a recv still pending after %d ms", SUP_TIMEOUT);
    SUP_EQ(cport_wait(idle, &m, 1, 5), 0); /* drives the poller */
  }
}

static void test_owner_change(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_queue *q2 = NULL, *idle = NULL;
  sup_pair p;
  cport_optval v;
  cport_info info;
  cport_handle h = 0;
  size_t n = 0;
  char out[32], in[32];
  cport_msg m;

  SUP_RC(cport_queue_create(e->ctx, &q2), CPORT_OK);
  SUP_RC(cport_queue_create(e->ctx, &idle), CPORT_OK);
  sup_make_pair(e->q, CPORT_AF_INET, &p);
  sup_pattern(out, sizeof out, 0, 12);

  /* A message delivered to the old owner stays there. */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h),
         sup_select_mode() ? CPORT_SELECT : CPORT_COMPLETION);
  sup_send_all(e->q, p.client, out, 8);
  wait_not_pending(idle, p.server);
  memset(&v, 0, sizeof v);
  v.type = CPORT_VAL_QUEUE;
  v.v.queue = q2;
  SUP_RC(cport_setopt(p.server, CPORT_LEVEL_OTP, CPORT_OPT_OTP_OWNER, &v), CPORT_OK);
  memset(&v, 0, sizeof v);
  SUP_RC(cport_getopt(p.server, CPORT_LEVEL_OTP, CPORT_OPT_OTP_OWNER, &v), CPORT_OK);
  SUP_EQ(v.type, CPORT_VAL_QUEUE);
  SUP_ASSERT(v.v.queue == q2, "getopt owner");
  SUP_RC(cport_info_get(p.server, &info), CPORT_OK);
  SUP_ASSERT(info.owner == q2, "info owner");
  m = expect_msg_for(e->q, p.server, h, SUP_TIMEOUT);
  if (sup_select_mode())
    sup_recv_exact(q2, p.server, in, 8);
  else if (m.bytes < 8)
    sup_recv_exact(q2, p.server, in + m.bytes, 8 - m.bytes);
  sup_check_pattern(in, 8, 0, 12, "data before the owner change");
  expect_no_msg(q2, 20);

  /* Later messages go to the new owner, none to the old. */
  SUP_RC(cport_recv(p.server, in, sizeof in, 0, CPORT_NOWAIT, &n, &h),
         sup_select_mode() ? CPORT_SELECT : CPORT_COMPLETION);
  sup_send_all(e->q, p.client, out + 8, 8);
  m = expect_msg_for(q2, p.server, h, SUP_TIMEOUT);
  SUP_EQ(m.socket, p.server);
  expect_no_msg(e->q, 50);
  if (sup_select_mode())
    sup_recv_exact(q2, p.server, in, 8);
  else if (m.bytes < 8)
    sup_recv_exact(q2, p.server, in + m.bytes, 8 - m.bytes);
  sup_check_pattern(in, 8, 8, 12, "data after the owner change");

  /* The new owner is busy, the old one only with its other sockets. */
  SUP_RC(cport_queue_destroy(q2), CPORT_EBUSY);
  v.type = CPORT_VAL_QUEUE;
  v.v.queue = e->q;
  SUP_RC(cport_setopt(p.server, CPORT_LEVEL_OTP, CPORT_OPT_OTP_OWNER, &v), CPORT_OK);
  SUP_RC(cport_queue_destroy(q2), CPORT_OK);
  SUP_RC(cport_queue_destroy(idle), CPORT_OK);
  expect_no_msg(e->q, 20);
}

/* ------------------------------------------------------------------------ */
/* A context destroyed with everything still open                          */
/* ------------------------------------------------------------------------ */

/* The library's allocations not yet freed, counted by an allocator that
 * only counts. */
static atomic_long g_live_allocs;

static void *count_malloc(size_t n) {
  void *p = malloc(n);
  if (p) atomic_fetch_add(&g_live_allocs, 1);
  return p;
}

static void *count_calloc(size_t count, size_t n) {
  void *p = calloc(count, n);
  if (p) atomic_fetch_add(&g_live_allocs, 1);
  return p;
}

static void *count_realloc(void *ptr, size_t n) {
  void *p = realloc(ptr, n);
  if (p && !ptr) atomic_fetch_add(&g_live_allocs, 1);
  return p;
}

static void count_free(void *ptr) {
  if (ptr) atomic_fetch_sub(&g_live_allocs, 1);
  free(ptr);
}

static void slow_work(void *arg) {
  (void)arg;
  sup_sleep_ms(20);
}

/* One of everything a program may leave behind: queues (one destroyed, a
 * tombstone), a listener with a multishot accept, a connection with a
 * pending recv, a send the peer never reads, a multishot recv whose
 * chunks wait in a queue untaken, a datagram socket with a recv_alloc, a
 * close_async whose message is not taken, timers, a posted message and a
 * running job; then cport_ctx_destroy. Its sockets must answer
 * CPORT_EBADF after it. */
static void leave_everything_open(cport_ctx *ctx, char *small, char *big, size_t big_len) {
  cport_queue *q = NULL, *other = NULL, *dead = NULL;
  cport_handle h = 0;
  cport_socket u, gone;
  sup_pair p;
  size_t n = 0;
  void *abuf = NULL;
  SUP_RC(cport_queue_create(ctx, &q), CPORT_OK);
  SUP_RC(cport_queue_create(ctx, &other), CPORT_OK);
  SUP_RC(cport_queue_create(ctx, &dead), CPORT_OK);
  SUP_RC(cport_queue_destroy(dead), CPORT_OK);

  sup_make_pair(q, CPORT_AF_INET, &p);
  /* A second connection whose reader never reads: a send stays pending. */
  cport_socket reader = CPORT_INVALID_SOCKET, writer = CPORT_INVALID_SOCKET;
  sup_connect_pair(q, p.listener, &p.addr, sup_mode_flags(), &reader, &writer);
  SUP_RC(cport_accept_multi(p.listener, &h), CPORT_COMPLETION);
  int rc = cport_send(writer, big, big_len, 0, CPORT_NOWAIT, &n, &h);
  SUP_ASSERT(rc == CPORT_COMPLETION || rc == CPORT_SELECT, "a send the peer never reads: %s",
             sup_rc_name(rc));
  SUP_RC(cport_recv(p.server, small, 64, 0, CPORT_NOWAIT, &n, &h),
         sup_select_mode() ? CPORT_SELECT : CPORT_COMPLETION);
  /* Chunks that arrive as messages nobody takes: from here on only the
   * other queue is waited on, which drives the I/O without taking them. */
  SUP_RC(cport_recv_multi(p.client, &h), CPORT_COMPLETION);
  SUP_RC(cport_send(p.server, "chunk", 5, 0, CPORT_INFINITY, &n, NULL), CPORT_OK);

  cport_addr self;
  u = sup_udp(q, CPORT_AF_INET, 0, &self);
  SUP_RC(cport_connect(u, &self, CPORT_INFINITY, NULL), CPORT_OK); /* recv wants a peer */
  rc = cport_recv_alloc(u, 0, CPORT_NOWAIT, &abuf, &n, &h);
  SUP_ASSERT(rc == CPORT_COMPLETION || rc == CPORT_SELECT, "recv_alloc: %s", sup_rc_name(rc));
  gone = sup_open(q, CPORT_AF_INET);
  SUP_RC(cport_close_async(gone, &h), CPORT_OK);

  SUP_RC(cport_timer_start(q, 60000, 0, 1, NULL, &h), CPORT_OK);
  SUP_RC(cport_timer_start(other, 1, 1, 2, NULL, &h), CPORT_OK); /* fires every ms */
  SUP_RC(cport_post(q, 3, NULL), CPORT_OK);
  SUP_RC(cport_work(q, slow_work, NULL, &h), CPORT_COMPLETION);
  cport_msg m[4];
  SUP_ASSERT(cport_wait(dead, m, 4, 30) == CPORT_EBADF, "the tombstone answers EBADF");
  for (int i = 0; i < 5; i++) (void)cport_wait(other, m, 4, 10);

  sup_stash_drop(q); /* what the helpers above took and kept */
  cport_ctx_destroy(ctx);
  sup_check_ebadf(p.client, "a connection after cport_ctx_destroy");
  sup_check_ebadf(p.listener, "a listener after cport_ctx_destroy");
  sup_check_ebadf(u, "a datagram socket after cport_ctx_destroy");
}

static void test_ctx_destroy_with_everything_open(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_ctx_options opts;
  memset(&opts, 0, sizeof opts);
  opts.backend = cport_ctx_backend(e->ctx);
  opts.single_thread = getenv("CPORT_TEST_SINGLE_THREAD") != NULL;
  size_t big_len = 16u << 20;
  char *big = sup_alloc(big_len), *small = sup_alloc(64);
  memset(big, 'x', big_len);
  cport_ctx_destroy(e->ctx);
  e->ctx = NULL;
  SUP_RC(cport_set_allocator(count_malloc, count_realloc, count_calloc, count_free), CPORT_OK);
  /* Twice: what the first round leaves is the process's own (a socket
   * table chunk kept for the next context); the second must add nothing. */
  long after[2];
  for (int round = 0; round < 2; round++) {
    cport_ctx *ctx = NULL;
    SUP_RC(cport_ctx_create(&ctx, &opts), CPORT_OK);
    e->ctx = ctx; /* the teardown's, should the test fail half-way */
    leave_everything_open(ctx, small, big, big_len);
    e->ctx = NULL;
    after[round] = atomic_load(&g_live_allocs);
  }
  SUP_RC(cport_set_allocator(malloc, realloc, calloc, free), CPORT_OK);
  SUP_ASSERT(after[1] == after[0],
             "allocations still live after destroy: %ld after the first context, %ld after the"
             " second",
             after[0], after[1]);
  SUP_RC(cport_ctx_create(&e->ctx, &opts), CPORT_OK); /* for the teardown */
  SUP_RC(cport_queue_create(e->ctx, &e->q), CPORT_OK);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_error_names),
    CONF_TEST(test_backend_and_context),
    CONF_TEST(test_addresses),
    CONF_TEST(test_stale_forged_closed_sockets),
    CONF_TEST(test_null_pointers),
    CONF_TEST(test_bad_lengths_flags_timeouts),
    CONF_TEST(test_wrong_state),
    CONF_TEST(test_queue_post_and_wait),
    CONF_TEST(test_registry),
    CONF_TEST(test_owner_change),
    CONF_TEST(test_info),
    CONF_TEST(test_destroyed_queue),
    CONF_TEST(test_ctx_destroy_with_everything_open),
};

const struct CMUnitTest *conf_api_tests(size_t *count) {
  *count = sizeof tests / sizeof tests[0];
  return tests;
}
