/*
 * cport conformance suite: every rule of docs/design.md §2, and the socket
 * surface of §3 (UDP, IPv6, AF_UNIX, msg calls, options, registry), written
 * once and run per backend and mode:
 *
 *   conformance --backend epoll|io_uring|iocp|auto --mode completion|select
 *
 * The tests themselves are in test/conformance_*.c, grouped by topic; this
 * file assembles them into one cmocka group.
 */
#include "conformance.h"

#include <stdlib.h>
#include <string.h>

typedef const struct CMUnitTest *(*conf_part)(size_t *count);

int main(int argc, char **argv) {
  static const conf_part parts[] = {
      conf_api_tests,     conf_io_tests,       conf_cancel_tests, conf_connect_tests,
      conf_udp_tests,     conf_ipv6_tests,     conf_unix_tests,   conf_msg_tests,
      conf_options_tests, conf_registry_tests, conf_time_tests,   conf_multi_tests,
  };
  const size_t nparts = sizeof parts / sizeof parts[0];
  size_t total = 0, at = 0;
  struct CMUnitTest *all;
  int rc = sup_parse_args(argc, argv);
  if (rc != 0) return rc;

  for (size_t i = 0; i < nparts; i++) {
    size_t count = 0;
    parts[i](&count);
    total += count;
  }
  all = (struct CMUnitTest *)calloc(total, sizeof *all);
  if (!all) return 1;
  for (size_t i = 0; i < nparts; i++) {
    size_t count = 0;
    const struct CMUnitTest *t = parts[i](&count);
    memcpy(all + at, t, count * sizeof *all);
    at += count;
  }
  rc = _cmocka_run_group_tests(sup_group_name("conformance"), all, total, NULL, NULL);
  free(all);
  return rc;
}
