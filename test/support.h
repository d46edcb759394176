/*
 * Shared helpers of the cport conformance suite (test/conformance*.c) and of
 * the threaded tests (test/threads*.c).
 *
 * The suite is written once and runs on every backend and in both modes:
 * `--backend epoll|io_uring|iocp|auto --mode completion|select`. Tests use only
 * cport.h and these helpers; everything platform-specific (raw OS sockets,
 * fork and rlimits, threads, clocks, Wine detection) lives in support.c.
 *
 * Assertions: use the SUP_* macros below, never cmocka's assert_* directly.
 * They print cport error names, and they also work on worker threads (a
 * failure there is recorded and reported by sup_thread_join on the main
 * thread, since cmocka's own failure path may only run on the main thread).
 *
 * Every wait is finite: a library bug fails a test, it never hangs it.
 */
#ifndef CPORT_TEST_SUPPORT_H
#define CPORT_TEST_SUPPORT_H

#if defined(__MINGW32__) && !defined(__USE_MINGW_ANSI_STDIO)
#define __USE_MINGW_ANSI_STDIO 1 /* C99 printf (%zu) on mingw-w64 */
#endif

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "cport.h"

#if defined(__MINGW32__)
#define SUP_PRINTF(a, b) __attribute__((format(gnu_printf, a, b)))
#elif defined(__GNUC__)
#define SUP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SUP_PRINTF(a, b)
#endif

#if defined(__GNUC__)
#define SUP_NORETURN __attribute__((noreturn))
#define SUP_UNUSED __attribute__((unused))
#elif defined(_MSC_VER)
#define SUP_NORETURN __declspec(noreturn)
#define SUP_UNUSED
#else
#define SUP_NORETURN
#define SUP_UNUSED
#endif

/* The usual finite timeout for something that must happen (ms). */
#define SUP_TIMEOUT 5000
/* How long to watch for a message that must NOT come (ms). */
#define SUP_QUIET 200

/* ------------------------------------------------------------------------ */
/* Configuration (command line)                                             */
/* ------------------------------------------------------------------------ */

/* Parse --backend epoll|iocp|io_uring|auto, --mode completion|select,
 * --filter PATTERN and --skip PATTERN (cmocka test-name filters). Returns 0, or an exit code
 * after printing the reason (bad arguments, backend not available). */
int sup_parse_args(int argc, char **argv);

cport_backend_id sup_backend(void); /* as requested on the command line */
int sup_select_mode(void);          /* 1 in --mode select */
int sup_single_thread(void);        /* 1 in the *.single variants: one thread makes every call */
unsigned sup_mode_flags(void);      /* CPORT_OPEN_SELECT or 0 */
int sup_pending_rc(void);           /* what a pending nowait call returns in this mode */
const char *sup_mode_name(void);    /* "completion" or "select" */
const char *sup_group_name(const char *suite); /* "suite/backend/mode" */

/* 1 when running under Wine (ntdll exports wine_get_version). */
int sup_on_wine(void);
/* 1 when compiled for Windows (natively or under Wine). */
int sup_is_windows(void);
/* Scale a count for the platform: native as is; on Windows (and so under
 * Wine, about 20x slower: docs/wine.md "Speed") use win_count instead. */
int sup_scale(int native_count, int win_count);

/* ------------------------------------------------------------------------ */
/* Assertions                                                               */
/* ------------------------------------------------------------------------ */

SUP_NORETURN void sup_fail(const char *file, int line, const char *fmt, ...) SUP_PRINTF(3, 4);
SUP_NORETURN void sup_assert_fail(const char *file, int line, const char *cond, const char *fmt,
                                  ...) SUP_PRINTF(4, 5);
void sup_check_rc(int got, int want, const char *expr, const char *file, int line);
void sup_check_rc2(int got, int want1, int want2, const char *expr, const char *file, int line);

/* SUP_RC(call, CPORT_OK): call must return exactly want. */
#define SUP_RC(call, want) sup_check_rc((call), (want), #call, __FILE__, __LINE__)
/* SUP_RC2(call, a, b): call must return a or b. */
#define SUP_RC2(call, a, b) sup_check_rc2((call), (a), (b), #call, __FILE__, __LINE__)
#define SUP_ASSERT(cond, ...)                                                                      \
  do {                                                                                             \
    if (!(cond)) sup_assert_fail(__FILE__, __LINE__, #cond, __VA_ARGS__);                          \
  } while (0)
#define SUP_EQ(a, b)                                                                               \
  do {                                                                                             \
    long long sup_a_ = (long long)(a), sup_b_ = (long long)(b);                                    \
    if (sup_a_ != sup_b_)                                                                          \
      sup_fail(__FILE__, __LINE__, "%s == %lld, expected %s == %lld", #a, sup_a_, #b, sup_b_);     \
  } while (0)
#define SUP_FAIL(...) sup_fail(__FILE__, __LINE__, __VA_ARGS__)

/* A printable name for any cport result (errors, CPORT_SELECT, ...). */
const char *sup_rc_name(int rc);
const char *sup_tag_name(int tag);
const char *sup_op_name(int op);
/* Render a message into buf for diagnostics. */
const char *sup_msg_str(const cport_msg *m, char *buf, size_t size);

/* ------------------------------------------------------------------------ */
/* Per-test fixture                                                         */
/* ------------------------------------------------------------------------ */

typedef struct sup_env {
  cport_ctx *ctx; /* a fresh context on the selected backend */
  cport_queue *q; /* a fresh queue in it */
} sup_env;

/* cmocka setup/teardown: a new context and queue per test; teardown
 * destroys the context (closing whatever the test left open) and frees
 * what sup_alloc handed out, in that order. */
int sup_setup(void **state);
int sup_teardown(void **state);

/* Memory that lives until the test's teardown (after the context is gone,
 * so a buffer that a failed test left with a pending op stays valid). */
void *sup_alloc(size_t n);

/* ------------------------------------------------------------------------ */
/* Sockets                                                                  */
/* ------------------------------------------------------------------------ */

/* The loopback address of a family (CPORT_AF_INET: 127.0.0.1, CPORT_AF_INET6:
 * ::1) with a port. */
cport_addr sup_loopback(int family, uint16_t port);

/* Open a TCP socket in the selected mode (plus extra flags). Fails the test
 * on error. */
cport_socket sup_open(cport_queue *q, int family);
cport_socket sup_open_flags(cport_queue *q, int family, unsigned flags);

/* A listener on loopback port 0 in the selected mode (plus extra flags);
 * *bound (optional) receives its address. backlog <= 0: system maximum. */
cport_socket sup_listener(cport_queue *q, int family, int backlog, unsigned flags,
                          cport_addr *bound);

/* A connected pair: listener, client, and the server socket accepted from
 * the listener, all owned by q, all in the selected mode. */
typedef struct sup_pair {
  cport_socket listener, client, server;
  cport_addr addr; /* the listener's address */
} sup_pair;
void sup_make_pair(cport_queue *q, int family, sup_pair *p);
/* Connect a new client (mode flags as given) to an existing listener and
 * accept it; the listener's owner must be q, the client is owned by q. */
void sup_connect_pair(cport_queue *q, cport_socket listener, const cport_addr *addr,
                      unsigned client_flags, cport_socket *client, cport_socket *server);

/* A datagram socket in the selected mode (plus extra flags), unbound. */
cport_socket sup_udp_open(cport_queue *q, int family, unsigned flags);
/* The same, bound to loopback port 0; *bound (optional) receives its
 * address. */
cport_socket sup_udp(cport_queue *q, int family, unsigned flags, cport_addr *bound);
/* Whether two addresses name the same endpoint (family, port, IP bytes;
 * AF_UNIX: the path). */
int sup_addr_equal(const cport_addr *a, const cport_addr *b);
/* An address as text, for failure messages (a static buffer per call
 * slot: slot 0..3). */
const char *sup_addr_str(const cport_addr *a, int slot);

/* Every socket call on s (bind, listen, accept, connect, send, recv, in
 * nowait and blocking form, shutdown, sockname, peername, cancel, deadline,
 * info, close_async, close) must answer CPORT_EBADF; what names s in the
 * failure message. */
void sup_check_ebadf(cport_socket s, const char *what);
/* Whether which_sockets(f) lists s. */
int sup_listed(cport_socket s, const cport_filter *f);

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

/* Every message taken out of a queue by these helpers is checked against
 * rule 2: a (socket, handle) pair that already received its final message,
 * or that cport_cancel ended silently (sup_mark_ended), fails the test if
 * it gets another. Rule 13: a message flagged CPORT_MSG_MORE (a repeating
 * timer's tick) does not end its handle, but may not follow the final
 * one. Timers are pairs (0, handle) like any other; user messages
 * (CPORT_TAG_USER) are not tracked. Abort statuses: ECANCELED, ECLOSED,
 * ETIMEDOUT. Messages that a helper does not want now are kept ("stashed")
 * for a later helper call on the same queue. */

/* Next message (stash first): 1 and *out, or 0 after timeout_ms. */
int sup_wait_msg(cport_queue *q, int timeout_ms, cport_msg *out);
/* The next message; fails the test after timeout_ms. */
cport_msg expect_msg(cport_queue *q, int timeout_ms);
/* The message for (s, h); others are stashed. Fails after timeout_ms. */
cport_msg expect_msg_for(cport_queue *q, cport_socket s, cport_handle h, int timeout_ms);
/* The final message of (s, h), skipping (and counting in *nmore, which may
 * be NULL) its CPORT_MSG_MORE ones; others are stashed. Fails after
 * timeout_ms. */
cport_msg expect_final_for(cport_queue *q, cport_socket s, cport_handle h, int timeout_ms,
                           int *nmore);
/* No message at all for timeout_ms (stash included). */
void expect_no_msg(cport_queue *q, int timeout_ms);
/* No message for (s, h) within timeout_ms; others are stashed. */
void expect_no_msg_for(cport_queue *q, cport_socket s, cport_handle h, int timeout_ms);
/* Drive the poller for ms, stashing whatever arrives. */
void sup_settle(cport_queue *q, int ms);

/* Set an otp option of int or bool type, asserting CPORT_OK; read one
 * back, asserting its type. */
void sup_set_otp_int(cport_socket s, cport_option opt, int value);
int sup_get_otp_int(cport_socket s, cport_option opt);
void sup_set_otp_bool(cport_socket s, cport_option opt, int on);
int sup_get_otp_bool(cport_socket s, cport_option opt);
/* Number of stashed messages of q. */
int sup_stash_count(cport_queue *q);
/* Drop q's stashed messages (a queue about to go with its context),
 * releasing the buffers they carry; returns how many there were. */
int sup_stash_drop(cport_queue *q);
/* Record that (s, h) must never get a message (a select handle whose
 * cancel returned CPORT_OK). */
void sup_mark_ended(cport_socket s, cport_handle h);

/* ------------------------------------------------------------------------ */
/* Operation driver: one test body serves both modes                        */
/* ------------------------------------------------------------------------ */

/* A logical operation that the driver carries to its final result:
 *  - select mode: call nowait; on CPORT_SELECT wait for the select message
 *    and call again (send: with the remainder; connect: addr NULL);
 *  - completion mode: call nowait; on CPORT_COMPLETION wait for the
 *    completion (or abort) message.
 * Every step is checked against the contract (mode of the pending result,
 * message fields, whole sends, at most one message per handle). */
typedef struct sup_op sup_op;
typedef void (*sup_op_cb)(sup_op *op);

struct sup_op {
  int kind; /* CPORT_OP_ACCEPT, _CONNECT, _SEND, _RECV, _SENDTO, _RECVFROM,
               _SENDMSG or _RECVMSG */
  cport_socket s;
  cport_addr addr;   /* connect, sendto: the target */
  char *buf;         /* send/recv/sendto/recvfrom */
  size_t len;        /* sendmsg/recvmsg: the total of the header's iovecs */
  unsigned flags;    /* send/recv flags */
  int select_mode;   /* the socket's mode, read at init */
  cport_msghdr *msg; /* sendmsg/recvmsg: the caller's header */
  /* results */
  int finished;
  int status;  /* final: CPORT_OK or a negative cport_err */
  size_t done; /* bytes sent / received in total */
  cport_socket accepted;
  cport_addr from;    /* recvfrom: the sender (recvmsg: see msg->addr) */
  unsigned msg_flags; /* recvfrom/recvmsg: CPORT_MSG_TRUNC, from the info or message */
  /* progress */
  cport_handle handle; /* the pending handle, 0 when none */
  int pending;         /* CPORT_SELECT, CPORT_COMPLETION or 0 */
  char *posted_buf;    /* buffer pointer of the pending completion (msg ops:
                          the header) */
  cport_msghdr *rest;  /* select-mode sendmsg: a header for what is left */
  cport_iovec *rest_iov;
  /* statistics */
  int calls;         /* nowait calls made */
  int first_rc;      /* what the first call returned */
  size_t first_done; /* bytes the first call reported */
  int n_select, n_completion, n_abort;
  /* the caller's */
  sup_op_cb on_done; /* sup_loop: called once when finished */
  void *user;
  long idx;
  /* the loop's */
  sup_op *next_done;
  int in_loop;
};

void sup_op_accept(sup_op *op, cport_socket listener);
void sup_op_connect(sup_op *op, cport_socket s, const cport_addr *addr);
void sup_op_send(sup_op *op, cport_socket s, const void *buf, size_t len);
void sup_op_recv(sup_op *op, cport_socket s, void *buf, size_t len, unsigned flags);
void sup_op_sendto(sup_op *op, cport_socket s, const void *buf, size_t len, const cport_addr *to);
void sup_op_recvfrom(sup_op *op, cport_socket s, void *buf, size_t len);
/* The header (and its iovecs and buffers) must stay valid until the op is
 * finished. A select-mode stream sendmsg that goes out in parts continues
 * with a header for the rest, as cport_sendmsg's contract asks. */
void sup_op_sendmsg(sup_op *op, cport_socket s, cport_msghdr *m);
void sup_op_recvmsg(sup_op *op, cport_socket s, cport_msghdr *m, unsigned flags);

/* A set of operations on sockets owned by one queue. */
typedef struct sup_loop {
  cport_queue *q;
  sup_op **active;
  int nactive, cap;
  sup_op *done_head, *done_tail;
} sup_loop;

void sup_loop_init(sup_loop *l, cport_queue *q);
void sup_loop_free(sup_loop *l);
/* Make the first call of op; it either finishes (its on_done runs from
 * the next sup_loop_run) or becomes active. */
void sup_loop_start(sup_loop *l, sup_op *op);
/* Run until *counter >= target (counter NULL: until no op is active and no
 * callback is due). Fails the test after timeout_ms. */
void sup_loop_run(sup_loop *l, const long *counter, long target, int timeout_ms);
/* Run until op is finished. */
void sup_loop_run_op(sup_loop *l, sup_op *op, int timeout_ms);
/* Feed one message to the loop's ops; returns 1 if one took it. */
int sup_loop_feed(sup_loop *l, const cport_msg *m);

/* One-shot drivers (their own loop on q). They return the final status
 * and never fail the test on an error status: the caller asserts it. */
int sup_send(cport_queue *q, cport_socket s, const void *buf, size_t len, size_t *sent);
int sup_recv(cport_queue *q, cport_socket s, void *buf, size_t len, size_t *received);
int sup_accept(cport_queue *q, cport_socket listener, cport_socket *accepted);
int sup_connect(cport_queue *q, cport_socket s, const cport_addr *addr);
/* Datagrams and msg ops, the same way. recvfrom: *info (optional) gets the
 * bytes, the sender and the flags of the datagram. */
int sup_sendto(cport_queue *q, cport_socket s, const void *buf, size_t len, const cport_addr *to);
int sup_recvfrom(cport_queue *q, cport_socket s, void *buf, size_t len, cport_recv_info *info);
int sup_sendmsg(cport_queue *q, cport_socket s, cport_msghdr *m, size_t *sent);
int sup_recvmsg(cport_queue *q, cport_socket s, cport_msghdr *m, size_t *received);
/* Receive exactly len bytes (several recvs); fails the test on EOF, an
 * error or a timeout. */
void sup_recv_exact(cport_queue *q, cport_socket s, void *buf, size_t len);
/* Send all of buf; fails the test unless CPORT_OK and all bytes sent. */
void sup_send_all(cport_queue *q, cport_socket s, const void *buf, size_t len);

/* ------------------------------------------------------------------------ */
/* Data                                                                     */
/* ------------------------------------------------------------------------ */

/* A byte stream that is a function of (seed, offset): any window of it can
 * be produced and checked independently. */
void sup_pattern(void *buf, size_t len, uint64_t offset, uint32_t seed);
/* Fails the test at the first byte that differs from the pattern. */
void sup_check_pattern(const void *buf, size_t len, uint64_t offset, uint32_t seed,
                       const char *what);

/* A deterministic 64-bit pseudo-random sequence. */
uint64_t sup_rand(void);

/* ------------------------------------------------------------------------ */
/* Time                                                                     */
/* ------------------------------------------------------------------------ */

uint64_t sup_now_ms(void); /* monotonic */
/* Monotonic, in microseconds, on the clock the library's timers use
 * (CLOCK_MONOTONIC; QueryPerformanceCounter on Windows), so that "never
 * early" can be checked with no slack: (receipt - start) >= after * 1000. */
uint64_t sup_now_us(void);
void sup_sleep_ms(int ms);

/* ------------------------------------------------------------------------ */
/* Raw OS sockets (BSD sockets / Winsock), for what cport cannot do itself  */
/* ------------------------------------------------------------------------ */

typedef intptr_t sup_raw; /* an fd or a SOCKET; -1 = none */

/* Blocking connect of a plain OS TCP socket. Returns the socket or -1. */
sup_raw sup_raw_connect(const cport_addr *addr);
/* The local address of a raw socket. */
int sup_raw_sockname(sup_raw r, cport_addr *addr);
/* Blocking send of all bytes; 0 on success. */
int sup_raw_send(sup_raw r, const void *buf, size_t len);
/* Abortive close: SO_LINGER {1, 0} then close, so the peer gets an RST. */
void sup_raw_reset(sup_raw r);
void sup_raw_close(sup_raw r);
/* Send one datagram (len may be 0) from a new plain OS UDP socket of
 * to->family; *from (optional) gets that socket's port (and its family).
 * 0 on success. */
int sup_raw_udp_send(const cport_addr *to, const void *buf, size_t len, cport_addr *from);

/* ------------------------------------------------------------------------ */
/* Files                                                                    */
/* ------------------------------------------------------------------------ */

/* A path in the system's temporary directory that no other process or
 * earlier call uses (it holds the process id and a counter), for AF_UNIX
 * sockets; on Windows a name in the current directory instead when the
 * temporary directory's would be too long or not ASCII. Fails the test if
 * it does not fit size. */
void sup_temp_path(char *buf, size_t size, const char *tag);
/* Remove a file if it exists (AF_UNIX socket paths). */
void sup_remove_file(const char *path);

/* ------------------------------------------------------------------------ */
/* Threads                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct sup_thread sup_thread;
typedef struct sup_mutex sup_mutex;

/* Start fn(arg) on a new thread. SUP_* assertion failures on it end the
 * thread and are reported (as a test failure) by sup_thread_join. */
sup_thread *sup_thread_start(void (*fn)(void *), void *arg);
void sup_thread_join(sup_thread *t);

sup_mutex *sup_mutex_new(void);
void sup_mutex_free(sup_mutex *m);
void sup_mutex_lock(sup_mutex *m);
void sup_mutex_unlock(sup_mutex *m);

/* Abort the process (with a message) if sup_watchdog_stop is not called
 * within seconds: for tests that must wait with CPORT_INFINITY. */
void sup_watchdog_start(int seconds, const char *what);
void sup_watchdog_stop(void);

/* ------------------------------------------------------------------------ */
/* Child processes and descriptor limits (POSIX only)                       */
/* ------------------------------------------------------------------------ */

#ifndef _WIN32
typedef struct sup_child {
  long pid;
  int rfd; /* reads what the child reports */
} sup_child;

/* Run fn(arg) in a forked child; its return value is the exit code. */
int sup_child_start(sup_child *c, int (*fn)(void *), void *arg);
/* In the child: send a value to the parent. */
int sup_child_report(uint32_t value);
/* In the parent: read a reported value; 0 on success, -1 on timeout/EOF. */
int sup_child_read(sup_child *c, uint32_t *value, int timeout_ms);
/* In the parent: wait for the child's exit; returns its exit code, 128+sig
 * if killed by a signal, or -1 (after killing it) on timeout. */
int sup_child_wait(sup_child *c, int timeout_ms);

/* Lower RLIMIT_NOFILE to just above the descriptors in use and open
 * descriptors until none is left. Returns how many it opened, -1 on error. */
int sup_fill_fds(void);
/* Close n of the descriptors sup_fill_fds opened. */
void sup_release_fds(int n);
/* How many descriptors above stderr a child would inherit across exec. */
int sup_inheritable_fds(void);
/* CPU time (user + system) this process used, in seconds. */
double sup_cpu_seconds(void);
#endif

#endif
