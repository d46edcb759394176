/*
 * Conformance: the registry and socket info over the whole surface.
 * cport_which_sockets filters (protocol, family, type, a predicate that
 * itself calls into cport, so it must run with no lock held), sockets
 * opened with CPORT_OPEN_NO_REGISTRY, cport_info's counters after an echo,
 * and cport_print_sockets' table.
 */
#include "conformance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exactly the sockets want[0..nwant) match f (order free). */
static void check_listing(const cport_filter *f, const cport_socket *want, int nwant,
                          const char *what) {
  cport_socket out[64];
  int n = cport_which_sockets(f, out, 64);
  SUP_ASSERT(n == nwant, "%s: which_sockets found %d sockets, expected %d", what, n, nwant);
  for (int i = 0; i < nwant; i++) {
    int found = 0;
    for (int j = 0; j < n; j++) found |= out[j] == want[i];
    SUP_ASSERT(found, "%s: socket %d (%#llx) is not listed", what, i, (unsigned long long)want[i]);
  }
}

typedef struct pred_state {
  int calls, errors;
  int want_type;
} pred_state;

/* Keeps the sockets of one type, asking cport_info_get: if the registry
 * called this with a socket's lock (or its own) held, this would
 * deadlock, and the watchdog would end the run. */
static int pred_by_info(cport_socket s, void *arg) {
  pred_state *ps = (pred_state *)arg;
  cport_info i;
  cport_optval v;
  ps->calls++;
  if (cport_info_get(s, &i) != CPORT_OK) {
    ps->errors++;
    return 0;
  }
  if (cport_getopt(s, CPORT_LEVEL_SOCKET, CPORT_OPT_SOCKET_TYPE, &v) != CPORT_OK || v.v.i != i.type)
    ps->errors++;
  if (cport_number_of() < 1) ps->errors++; /* the registry's own lock */
  return i.type == ps->want_type;
}

static void test_registry_filters(void **state) {
  sup_env *e = (sup_env *)*state;
  const unsigned reg = CPORT_OPEN_REGISTRY;
  cport_socket t4 = sup_open_flags(e->q, CPORT_AF_INET, sup_mode_flags() | reg);
  cport_socket t6 = sup_open_flags(e->q, CPORT_AF_INET6, sup_mode_flags() | reg);
  cport_socket u4 = sup_udp(e->q, CPORT_AF_INET, reg, NULL);
  cport_socket u6 = sup_udp_open(e->q, CPORT_AF_INET6, reg);
  cport_addr na, u4a;
  cport_socket nr = sup_udp(e->q, CPORT_AF_INET, CPORT_OPEN_NO_REGISTRY, &na);
  cport_filter f;
  pred_state ps;
  char out[20], in[20];
  cport_recv_info ri;
  int base_all;

  SUP_RC(cport_sockname(u4, &u4a), CPORT_OK);
  memset(&f, 0, sizeof f);
  f.owner = e->q;
  {
    cport_socket all[] = {t4, t6, u4, u6};
    check_listing(&f, all, 4, "owner");
  }
  f.protocol = 6;
  {
    cport_socket w[] = {t4, t6};
    check_listing(&f, w, 2, "protocol 6 (TCP)");
  }
  f.protocol = 17;
  {
    cport_socket w[] = {u4, u6};
    check_listing(&f, w, 2, "protocol 17 (UDP)");
  }
  f.protocol = 0;
  f.family = CPORT_AF_INET;
  {
    cport_socket w[] = {t4, u4};
    check_listing(&f, w, 2, "family IPv4");
  }
  f.family = CPORT_AF_INET6;
  {
    cport_socket w[] = {t6, u6};
    check_listing(&f, w, 2, "family IPv6");
  }
  f.protocol = 17;
  {
    cport_socket w[] = {u6};
    check_listing(&f, w, 1, "family IPv6 and protocol 17");
  }
  f.protocol = 0;
  f.family = CPORT_AF_UNIX;
  check_listing(&f, NULL, 0, "family AF_UNIX");
  f.family = 0;
  f.type = CPORT_SOCK_DGRAM;
  {
    cport_socket w[] = {u4, u6};
    check_listing(&f, w, 2, "type datagram");
  }
  f.type = 0;

  /* A predicate that calls back into cport. */
  memset(&ps, 0, sizeof ps);
  ps.want_type = CPORT_SOCK_DGRAM;
  f.pred = pred_by_info;
  f.arg = &ps;
  sup_watchdog_start(30, "cport_which_sockets with a predicate that calls cport_info_get");
  {
    cport_socket w[] = {u4, u6};
    check_listing(&f, w, 2, "predicate on cport_info_get");
  }
  sup_watchdog_stop();
  SUP_EQ(ps.errors, 0);
  SUP_ASSERT(ps.calls >= 4, "the predicate ran %d times for 4 candidates", ps.calls);
  /* Predicate and fields together. */
  memset(&ps, 0, sizeof ps);
  ps.want_type = CPORT_SOCK_STREAM;
  f.family = CPORT_AF_INET6;
  sup_watchdog_start(30, "cport_which_sockets with a predicate and a family");
  {
    cport_socket w[] = {t6};
    check_listing(&f, w, 1, "predicate and family");
  }
  sup_watchdog_stop();
  SUP_EQ(ps.errors, 0);

  /* AF_UNIX sockets, where there are any, are a family of their own. */
  if (cport_family_supported(CPORT_AF_UNIX)) {
    cport_socket x = sup_open_flags(e->q, CPORT_AF_UNIX, sup_mode_flags() | reg);
    memset(&f, 0, sizeof f);
    f.owner = e->q;
    f.family = CPORT_AF_UNIX;
    check_listing(&f, &x, 1, "family AF_UNIX");
    SUP_RC(cport_close(x), CPORT_OK);
  }

  /* The unregistered socket: never listed, yet it works. */
  base_all = cport_which_sockets(NULL, NULL, 0);
  SUP_ASSERT(!sup_listed(nr, NULL), "a CPORT_OPEN_NO_REGISTRY socket is listed");
  sup_pattern(out, sizeof out, 0, 800);
  SUP_RC(sup_sendto(e->q, nr, out, sizeof out, &u4a), CPORT_OK);
  SUP_RC(sup_recvfrom(e->q, u4, in, sizeof in, &ri), CPORT_OK);
  SUP_EQ(ri.bytes, sizeof out);
  SUP_ASSERT(sup_addr_equal(&ri.from, &na), "sender %s", sup_addr_str(&ri.from, 0));
  SUP_RC(sup_sendto(e->q, u4, out, sizeof out, &na), CPORT_OK);
  SUP_RC(sup_recvfrom(e->q, nr, in, sizeof in, &ri), CPORT_OK);
  SUP_EQ(ri.bytes, sizeof out);
  sup_check_pattern(in, sizeof in, 0, 800, "datagram to an unregistered socket");
  SUP_EQ(cport_which_sockets(NULL, NULL, 0), base_all);
  SUP_RC(cport_close(nr), CPORT_OK);
  SUP_EQ(cport_which_sockets(NULL, NULL, 0), base_all);
  expect_no_msg(e->q, 20);
}

/* ------------------------------------------------------------------------ */
/* cport_info after an echo                                                 */
/* ------------------------------------------------------------------------ */

/* Receives exactly len bytes; returns the number of recv calls that
 * returned data (each one is a read in cport_info's count). */
static int recv_counting(cport_queue *q, cport_socket s, char *buf, size_t len) {
  size_t got = 0;
  int reads = 0;
  while (got < len) {
    size_t n = 0;
    SUP_RC(sup_recv(q, s, buf + got, len - got, &n), CPORT_OK);
    SUP_ASSERT(n > 0, "EOF after %zu of %zu bytes", got, len);
    got += n;
    reads++;
  }
  return reads;
}

static void test_info_counters(void **state) {
  sup_env *e = (sup_env *)*state;
  sup_pair p;
  char out[300], in[300];
  cport_info ic, is, il;
  int server_reads, client_reads;

  sup_make_pair(e->q, CPORT_AF_INET, &p);
  SUP_RC(cport_info_get(p.client, &ic), CPORT_OK);
  SUP_ASSERT(ic.bytes_in == 0 && ic.bytes_out == 0 && ic.reads == 0 && ic.writes == 0,
             "a new connection has counted nothing");
  sup_pattern(out, sizeof out, 0, 810);
  for (int i = 0; i < 3; i++) sup_send_all(e->q, p.client, out + i * 100, 100);
  server_reads = recv_counting(e->q, p.server, in, 300);
  sup_check_pattern(in, 300, 0, 810, "echo request");
  sup_send_all(e->q, p.server, in, 300);
  client_reads = recv_counting(e->q, p.client, in, 300);
  sup_check_pattern(in, 300, 0, 810, "echo reply");

  SUP_RC(cport_info_get(p.client, &ic), CPORT_OK);
  SUP_RC(cport_info_get(p.server, &is), CPORT_OK);
  SUP_RC(cport_info_get(p.listener, &il), CPORT_OK);
  SUP_EQ(ic.bytes_out, 300);
  SUP_EQ(ic.writes, 3);
  SUP_EQ(ic.bytes_in, 300);
  SUP_EQ(ic.reads, client_reads);
  SUP_EQ(is.bytes_in, 300);
  SUP_EQ(is.reads, server_reads);
  SUP_EQ(is.bytes_out, 300);
  SUP_EQ(is.writes, 1);
  /* Accepts and connects move no data. */
  SUP_EQ(il.bytes_in, 0);
  SUP_EQ(il.bytes_out, 0);
  SUP_EQ(il.writes, 0);
  SUP_EQ(ic.pending_reads, 0);
  SUP_EQ(ic.pending_writes, 0);
  SUP_EQ(is.bound, 1);
  SUP_EQ(ic.bound, 1);
  expect_no_msg(e->q, 20);
}

/* ------------------------------------------------------------------------ */
/* cport_print_sockets                                                      */
/* ------------------------------------------------------------------------ */

/* Whether text holds the decimal number v as a whole word. */
static int has_number(const char *text, unsigned long long v) {
  char num[32];
  size_t len;
  snprintf(num, sizeof num, "%llu", v);
  len = strlen(num);
  for (const char *p = strstr(text, num); p; p = strstr(p + 1, num)) {
    int before = p == text || p[-1] < '0' || p[-1] > '9';
    int after = p[len] < '0' || p[len] > '9';
    if (before && after) return 1;
  }
  return 0;
}

static void test_print_sockets(void **state) {
  sup_env *e = (sup_env *)*state;
  cport_socket t = sup_open_flags(e->q, CPORT_AF_INET, sup_mode_flags() | CPORT_OPEN_REGISTRY);
  cport_socket u = sup_udp(e->q, CPORT_AF_INET6, CPORT_OPEN_REGISTRY, NULL);
  cport_socket nr = sup_udp(e->q, CPORT_AF_INET, CPORT_OPEN_NO_REGISTRY, NULL);
  FILE *tf = tmpfile();
  char *text;
  long size;

  SUP_ASSERT(tf != NULL, "tmpfile");
  cport_print_sockets(tf);
  fflush(tf);
  fseek(tf, 0, SEEK_END);
  size = ftell(tf);
  SUP_ASSERT(size > 0, "cport_print_sockets wrote nothing");
  text = (char *)sup_alloc((size_t)size + 1);
  rewind(tf);
  SUP_EQ(fread(text, 1, (size_t)size, tf), size);
  text[size] = 0;
  fclose(tf);
  SUP_ASSERT(has_number(text, (unsigned long long)t), "the table does not list socket %llu:\n%s",
             (unsigned long long)t, text);
  SUP_ASSERT(has_number(text, (unsigned long long)u), "the table does not list socket %llu:\n%s",
             (unsigned long long)u, text);
  SUP_ASSERT(!has_number(text, (unsigned long long)nr),
             "the table lists unregistered socket %llu:\n%s", (unsigned long long)nr, text);

  /* A closed socket leaves the table. */
  SUP_RC(cport_close(t), CPORT_OK);
  tf = tmpfile();
  SUP_ASSERT(tf != NULL, "tmpfile");
  cport_print_sockets(tf);
  fflush(tf);
  fseek(tf, 0, SEEK_END);
  size = ftell(tf);
  text = (char *)sup_alloc((size_t)size + 1);
  rewind(tf);
  SUP_EQ(fread(text, 1, (size_t)size, tf), size);
  text[size] = 0;
  fclose(tf);
  SUP_ASSERT(!has_number(text, (unsigned long long)t), "the table lists closed socket %llu",
             (unsigned long long)t);
  SUP_ASSERT(has_number(text, (unsigned long long)u), "the table lost socket %llu",
             (unsigned long long)u);
}

static const struct CMUnitTest tests[] = {
    CONF_TEST(test_registry_filters),
    CONF_TEST(test_info_counters),
    CONF_TEST(test_print_sockets),
};

const struct CMUnitTest *conf_registry_tests(size_t *count) {
  *count = sizeof tests / sizeof tests[0];
  return tests;
}
