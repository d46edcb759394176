/*
 * cport conformance suite: every rule of DESIGN.md §2 that applies to TCP,
 * written once and run per backend and mode:
 *
 *   conformance --backend epoll|iocp|auto --mode completion|select
 *
 * The tests themselves are in test/conformance_*.c, grouped by topic; this
 * file assembles them into one cmocka group.
 */
#include "conformance.h"

#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
  const struct CMUnitTest *parts[4];
  size_t counts[4], total = 0, at = 0;
  struct CMUnitTest *all;
  int rc = sup_parse_args(argc, argv);
  if (rc != 0) return rc;

  parts[0] = conf_api_tests(&counts[0]);
  parts[1] = conf_io_tests(&counts[1]);
  parts[2] = conf_cancel_tests(&counts[2]);
  parts[3] = conf_connect_tests(&counts[3]);
  for (int i = 0; i < 4; i++) total += counts[i];
  all = (struct CMUnitTest *)calloc(total, sizeof *all);
  if (!all) return 1;
  for (int i = 0; i < 4; i++) {
    memcpy(all + at, parts[i], counts[i] * sizeof *all);
    at += counts[i];
  }
  rc = _cmocka_run_group_tests(sup_group_name("conformance"), all, total, NULL, NULL);
  free(all);
  return rc;
}
