/*
 * The conformance suite: one cmocka group, assembled from the topic files
 * test/conformance_*.c. Each topic file exports its table of tests.
 */
#ifndef CPORT_TEST_CONFORMANCE_H
#define CPORT_TEST_CONFORMANCE_H

#include "support.h"

/* A test that runs with a fresh context and queue (sup_setup/sup_teardown). */
#define CONF_TEST(f) cmocka_unit_test_setup_teardown(f, sup_setup, sup_teardown)

const struct CMUnitTest *conf_api_tests(size_t *count);      /* conformance_api.c */
const struct CMUnitTest *conf_io_tests(size_t *count);       /* conformance_io.c */
const struct CMUnitTest *conf_cancel_tests(size_t *count);   /* conformance_cancel.c */
const struct CMUnitTest *conf_connect_tests(size_t *count);  /* conformance_connect.c */
const struct CMUnitTest *conf_udp_tests(size_t *count);      /* conformance_udp.c */
const struct CMUnitTest *conf_ipv6_tests(size_t *count);     /* conformance_ipv6.c */
const struct CMUnitTest *conf_unix_tests(size_t *count);     /* conformance_unix.c */
const struct CMUnitTest *conf_msg_tests(size_t *count);      /* conformance_msg.c */
const struct CMUnitTest *conf_options_tests(size_t *count);  /* conformance_options.c */
const struct CMUnitTest *conf_registry_tests(size_t *count); /* conformance_registry.c */
const struct CMUnitTest *conf_time_tests(size_t *count);     /* conformance_time.c */
const struct CMUnitTest *conf_multi_tests(size_t *count);    /* conformance_multi.c */

#endif
