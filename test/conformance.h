/*
 * The conformance suite: one cmocka group, assembled from the topic files
 * test/conformance_*.c. Each topic file exports its table of tests.
 */
#ifndef CPORT_TEST_CONFORMANCE_H
#define CPORT_TEST_CONFORMANCE_H

#include "support.h"

/* A test that runs with a fresh context and queue (sup_setup/sup_teardown). */
#define CONF_TEST(f) cmocka_unit_test_setup_teardown(f, sup_setup, sup_teardown)

const struct CMUnitTest *conf_api_tests(size_t *count);     /* conformance_api.c */
const struct CMUnitTest *conf_io_tests(size_t *count);      /* conformance_io.c */
const struct CMUnitTest *conf_cancel_tests(size_t *count);  /* conformance_cancel.c */
const struct CMUnitTest *conf_connect_tests(size_t *count); /* conformance_connect.c */

#endif
