/*
 * Conformance: AF_UNIX. cport_family_supported(CPORT_AF_UNIX) is the truth
 * the tests check: where it says 1, a stream echo over a filesystem path in
 * both modes; where it says 0, cport_open answers CPORT_EAFNOSUPPORT. Linux
 * always has the family; Windows has it from Windows 10 1803 on; Wine 8
 * never does (docs/wine.md row "AF_UNIX"), so neither on Linux nor under Wine is
 * the answer left to chance, and nothing is skipped silently anywhere.
 * Datagram AF_UNIX sockets are not offered anywhere; cport_addr_unix
 * checks its path.
 */
#include "conformance.h"

#include <stdio.h>
#include <string.h>

static void check_unix_name(const cport_addr *a, const char *path, const char *what) {
  char buf[CPORT_PATH_MAX + 8], want[CPORT_PATH_MAX + 8];
  int n;
  SUP_ASSERT(a->family == CPORT_AF_UNIX, "%s: family %d, expected CPORT_AF_UNIX", what, a->family);
  SUP_ASSERT(strcmp(a->path, path) == 0, "%s: path '%.*s', expected '%s'", what,
             (int)sizeof a->path, a->path, path);
  snprintf(want, sizeof want, "unix:%s", path);
  n = cport_addr_format(a, buf, sizeof buf);
  SUP_ASSERT(n > 0 && strcmp(buf, want) == 0, "%s formats as '%s' (%s), expected '%s'", what,
             n > 0 ? buf : "", n > 0 ? "ok" : sup_rc_name(n), want);
  SUP_EQ(n, strlen(want));
}

/* The family exists: a stream echo over a fresh path. */
static void unix_echo(sup_env *e) {
  char path[CPORT_PATH_MAX];
  cport_addr ua, got;
  cport_socket l, other, c, s;
  cport_optval v;
  cport_info info;
  sup_loop lp;
  sup_op r;
  char *out = (char *)sup_alloc(65536), *in = (char *)sup_alloc(65536);
  size_t n = 0;

  sup_temp_path(path, sizeof path, "unix");
  sup_remove_file(path);
  SUP_RC(cport_addr_unix(&ua, path), CPORT_OK);
  l = sup_open(e->q, CPORT_AF_UNIX);
  SUP_RC(cport_bind(l, &ua), CPORT_OK);
  SUP_RC(cport_listen(l, 0), CPORT_OK);
  SUP_RC(cport_sockname(l, &got), CPORT_OK);
  check_unix_name(&got, path, "listener's sockname");
  SUP_RC(cport_info_get(l, &info), CPORT_OK);
  SUP_EQ(info.family, CPORT_AF_UNIX);
  SUP_EQ(info.type, CPORT_SOCK_STREAM);
  SUP_EQ(info.listening, 1);
  memset(&v, 0, sizeof v);
  SUP_RC(cport_getopt(l, CPORT_LEVEL_SOCKET, CPORT_OPT_SOCKET_DOMAIN, &v), CPORT_OK);
  SUP_EQ(v.v.i, CPORT_AF_UNIX);

  /* The path is taken. */
  other = sup_open(e->q, CPORT_AF_UNIX);
  SUP_RC(cport_bind(other, &ua), CPORT_EADDRINUSE);
  SUP_RC(cport_close(other), CPORT_OK);

  sup_connect_pair(e->q, l, &ua, 0, &c, &s);
  SUP_RC(cport_peername(c, &got), CPORT_OK);
  check_unix_name(&got, path, "client's peername");
  SUP_RC(cport_sockname(s, &got), CPORT_OK);
  check_unix_name(&got, path, "accepted socket's sockname");
  SUP_RC(cport_info_get(s, &info), CPORT_OK);
  SUP_EQ(info.family, CPORT_AF_UNIX);
  SUP_EQ(info.connected, 1);
  SUP_EQ(info.select_mode, sup_select_mode());

  /* A recv pending before the data, then 512 KiB each way in chunks. */
  sup_loop_init(&lp, e->q);
  sup_op_recv(&r, s, in, 100, 0);
  sup_loop_start(&lp, &r);
  SUP_RC(r.first_rc, sup_pending_rc());
  sup_pattern(out, 100, 0, 400);
  sup_send_all(e->q, c, out, 100);
  sup_loop_run_op(&lp, &r, SUP_TIMEOUT);
  sup_loop_free(&lp);
  SUP_RC(r.status, CPORT_OK);
  SUP_ASSERT(r.done >= 1 && r.done <= 100, "pending recv got %zu bytes", r.done);
  if (r.done < 100) sup_recv_exact(e->q, s, in + r.done, 100 - r.done);
  sup_check_pattern(in, 100, 0, 400, "AF_UNIX pending recv");
  for (int i = 0; i < 8; i++) {
    sup_pattern(out, 65536, (uint64_t)i * 65536u, 401);
    sup_send_all(e->q, c, out, 65536);
    sup_recv_exact(e->q, s, in, 65536);
    sup_check_pattern(in, 65536, (uint64_t)i * 65536u, 401, "AF_UNIX client to server");
    sup_pattern(out, 65536, (uint64_t)i * 65536u, 402);
    sup_send_all(e->q, s, out, 65536);
    sup_recv_exact(e->q, c, in, 65536);
    sup_check_pattern(in, 65536, (uint64_t)i * 65536u, 402, "AF_UNIX server to client");
  }
  /* EOF. */
  SUP_RC(cport_shutdown(c, CPORT_SHUT_WR), CPORT_OK);
  SUP_RC(sup_recv(e->q, s, in, 100, &n), CPORT_OK);
  SUP_EQ(n, 0);

  SUP_RC(cport_close(s), CPORT_OK);
  SUP_RC(cport_close(c), CPORT_OK);
  SUP_RC(cport_close(l), CPORT_OK);
  sup_remove_file(path);
  expect_no_msg(e->q, 50);
}

static void test_unix_stream(void **state) {
  sup_env *e = (sup_env *)*state;
  int supported = cport_family_supported(CPORT_AF_UNIX);
  SUP_ASSERT(supported == 0 || supported == 1, "cport_family_supported says %d", supported);
  if (!sup_is_windows())
    SUP_ASSERT(supported == 1, "every POSIX system this library runs on has AF_UNIX");
  if (sup_on_wine()) /* docs/wine.md row "AF_UNIX": WSASocketW(AF_UNIX) fails with 10047 */
    SUP_ASSERT(supported == 0, "Wine 8 has no AF_UNIX, yet the probe says it has");
  if (supported) {
    unix_echo(e);
  } else {
    cport_socket s = CPORT_INVALID_SOCKET;
    print_message("AF_UNIX is not supported here: checking that cport_open says so\n");
    SUP_RC(cport_open(e->q, CPORT_AF_UNIX, CPORT_SOCK_STREAM, sup_mode_flags(), &s),
           CPORT_EAFNOSUPPORT);
    SUP_EQ(s, CPORT_INVALID_SOCKET);
    expect_no_msg(e->q, 20);
  }
}

static void test_unix_dgram_not_supported(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_socket s = CPORT_INVALID_SOCKET;
  SUP_RC(cport_open(e->q, CPORT_AF_UNIX, CPORT_SOCK_DGRAM, sup_mode_flags(), &s), CPORT_ENOTSUP);
  SUP_EQ(s, CPORT_INVALID_SOCKET);
}

static void test_unix_addr(void **state) {
  char path[CPORT_PATH_MAX + 1], buf[CPORT_PATH_MAX + 8], want[CPORT_PATH_MAX + 8];
  cport_addr a;
  int n;
  (void)state;

  SUP_RC(cport_addr_unix(&a, ""), CPORT_EINVAL);
  SUP_RC(cport_addr_unix(&a, NULL), CPORT_EINVAL);
  SUP_RC(cport_addr_unix(NULL, "/tmp/x"), CPORT_EINVAL);
  /* CPORT_PATH_MAX counts the NUL: CPORT_PATH_MAX characters do not fit. */
  memset(path, 'p', CPORT_PATH_MAX);
  path[0] = '/';
  path[CPORT_PATH_MAX] = 0;
  SUP_RC(cport_addr_unix(&a, path), CPORT_EINVAL);
  /* One less does, and formats as "unix:PATH" into CPORT_PATH_MAX + 5. */
  path[CPORT_PATH_MAX - 1] = 0;
  SUP_RC(cport_addr_unix(&a, path), CPORT_OK);
  SUP_EQ(a.family, CPORT_AF_UNIX);
  SUP_ASSERT(strcmp(a.path, path) == 0, "path kept");
  snprintf(want, sizeof want, "unix:%s", path);
  n = cport_addr_format(&a, buf, CPORT_PATH_MAX + 5);
  SUP_EQ(n, CPORT_PATH_MAX + 4);
  SUP_ASSERT(strcmp(buf, want) == 0, "formats as '%s'", buf);
  SUP_RC(cport_addr_format(&a, buf, CPORT_ADDR_STRLEN), CPORT_EINVAL);
  /* A short one. */
  SUP_RC(cport_addr_unix(&a, "/tmp/s"), CPORT_OK);
  SUP_EQ(cport_addr_format(&a, buf, sizeof buf), 11);
  SUP_ASSERT(strcmp(buf, "unix:/tmp/s") == 0, "formats as '%s'", buf);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_unix_stream),
    CONF_TEST(test_unix_dgram_not_supported),
    CONF_TEST(test_unix_addr),
};

const struct CMUnitTest *conf_unix_tests(size_t *count) {
  *count = sizeof tests / sizeof tests[0];
  return tests;
}
