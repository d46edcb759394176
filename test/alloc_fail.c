/*
 * Allocation failure, injected (issue 16): the suite installs a counting
 * allocator with cport_set_allocator, then runs one scenario (a context,
 * two queues, a user message, a listener, connect and accept, an echo
 * both ways, a pending recv cancelled, close and close_async, destroy)
 * once per N, with the Nth allocation of the library failing (or every
 * allocation from the Nth on), N from 1 until a run meets no failure.
 *
 *   alloc_fail --backend epoll|io_uring|iocp --mode completion|select
 *
 * Each run checks that every failure reaches the caller as CPORT_ENOMEM or
 * a connection-level error (a call's result or a message's status), that
 * every pending handle still ends with exactly one final message (every
 * wait is bounded: a lost message fails the run, it does not hang it), that
 * allocation working again makes the sockets work again (the streams of a
 * connection that survived go on where they were, and a new connection
 * echoes on the same context), and that once the context is destroyed
 * every allocation was freed (the allocator's own count; LSan at exit).
 */
#include "support.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#ifdef ALLOC_FAIL_TRACE
#include <execinfo.h>
#endif

/* ======================================================================== */
/* The counting allocator                                                   */
/* ======================================================================== */

static atomic_long g_calls;    /* allocations asked for since arm() */
static atomic_long g_fail_at;  /* the first to fail, counted from 1; 0: none fails */
static atomic_int g_fail_rest; /* 1: every one from g_fail_at on fails, until disarm() */
static atomic_long g_injected; /* failures injected since arm() */
static atomic_long g_live;     /* allocations not yet freed */

static int should_fail(void) {
  long n = atomic_fetch_add(&g_calls, 1) + 1;
  long at = atomic_load(&g_fail_at);
  if (at == 0 || n < at || (n > at && !atomic_load(&g_fail_rest))) return 0;
  atomic_fetch_add(&g_injected, 1);
#ifdef ALLOC_FAIL_TRACE /* glibc, by hand: -DALLOC_FAIL_TRACE -rdynamic, ALLOC_FAIL_TRACE=N */
  if (getenv("ALLOC_FAIL_TRACE") && atol(getenv("ALLOC_FAIL_TRACE")) == n) {
    void *bt[16];
    fprintf(stderr, "injected failure %ld:\n", n);
    backtrace_symbols_fd(bt, backtrace(bt, 16), 2);
  }
#endif
  return 1;
}

static void *t_malloc(size_t size) {
  void *p = should_fail() ? NULL : malloc(size);
  if (p) atomic_fetch_add(&g_live, 1);
  return p;
}

static void *t_calloc(size_t count, size_t size) {
  void *p = should_fail() ? NULL : calloc(count, size);
  if (p) atomic_fetch_add(&g_live, 1);
  return p;
}

static void *t_realloc(void *ptr, size_t size) {
  void *p = should_fail() ? NULL : realloc(ptr, size);
  if (p && !ptr) atomic_fetch_add(&g_live, 1);
  return p;
}

static void t_free(void *ptr) {
  if (!ptr) return;
  atomic_fetch_sub(&g_live, 1);
  free(ptr);
}

static void arm(long at, int rest) {
  atomic_store(&g_fail_at, 0);
  atomic_store(&g_calls, 0);
  atomic_store(&g_injected, 0);
  atomic_store(&g_fail_rest, rest);
  atomic_store(&g_fail_at, at);
}

static void disarm(void) { atomic_store(&g_fail_at, 0); }

/* ======================================================================== */
/* One run                                                                  */
/* ======================================================================== */

#define ECHO_LEN 1000
#define MAX_TRIES 100 /* select-mode calls per operation before giving up */

typedef struct ended_key {
  cport_socket s;
  cport_handle h;
} ended_key;

typedef struct run {
  long n; /* the allocation that fails (0: none) */
  int rest;
  cport_ctx *ctx;
  cport_queue *q;
  cport_socket l, c, s; /* listener, client, accepted server (0: none) */
  cport_addr addr;
  int connected;     /* c's connect ended well */
  int failed;        /* a failure reached the caller */
  int conn_error;    /* ... and it was a connection-level one */
  const char *where; /* the first failure: what reported it */
  int rc;            /* ... and its code */
  /* The two streams of c <-> s: bytes sent (whole, confirmed) and taken. */
  uint64_t sent[2], taken[2];
  /* The first recv of each stream's echo, posted before the peer sends
   * (stream 0 with cport_recv_alloc), until it ends. */
  struct rx {
    int active;
    int rc; /* what the call returned */
    cport_handle h;
    size_t n;
    void *abuf; /* cport_recv_alloc's buffer */
    char buf[ECHO_LEN];
  } rx[2];
  struct { /* the listener's accept, posted before the connect, until it ends */
    int active;
    int rc;
    cport_handle h;
    cport_socket s;
  } acc;
  /* Messages waited for later (stashed) and handles that ended. */
  cport_msg stash[64];
  int nstash;
  ended_key ended[256];
  int nended;
  /* Pending handles whose final message the model expects at close. */
  ended_key pend[8];
  int npend;
} run;

static run *g_run; /* for failure messages */

#define RUN_FAIL(r, ...)                                                                           \
  do {                                                                                             \
    fprintf(stderr, "alloc_fail: N=%ld%s: ", (r)->n, (r)->rest ? " (and on)" : "");                \
    SUP_FAIL(__VA_ARGS__);                                                                         \
  } while (0)

static int conn_level(int rc) {
  return rc == CPORT_ECONNRESET || rc == CPORT_ECONNABORTED || rc == CPORT_ECONNREFUSED ||
         rc == CPORT_EPIPE || rc == CPORT_ENOTCONN || rc == CPORT_ENOBUFS;
}

/* The result of a call or a message's status: a failure must be ENOMEM or
 * connection-level, and only while a failure was injected; the first one
 * stops the scenario and ends the injection. */
static int outcome(run *r, int rc, const char *what) {
  if (rc >= 0) return rc;
  if (atomic_load(&g_injected) == 0 || (rc != CPORT_ENOMEM && !conn_level(rc)))
    RUN_FAIL(r, "%s: %s (%ld allocations injected to fail)", what, sup_rc_name(rc),
             atomic_load(&g_injected));
  if (!r->failed) {
    r->failed = 1;
    r->where = what;
    r->rc = rc;
    disarm();
  }
  if (conn_level(rc)) r->conn_error = 1;
  return rc;
}

static int ended_has(run *r, cport_socket s, cport_handle h) {
  for (int i = 0; i < r->nended; i++)
    if (r->ended[i].s == s && r->ended[i].h == h) return 1;
  return 0;
}

static void mark_ended(run *r, cport_socket s, cport_handle h) {
  if (r->nended == (int)(sizeof r->ended / sizeof r->ended[0])) RUN_FAIL(r, "too many handles");
  r->ended[r->nended].s = s;
  r->ended[r->nended].h = h;
  r->nended++;
}

/* One message of q, within the time left; 0 if none came. A cport_wait
 * that fails (ENOMEM) is a failure like another, and is asked again. */
static int next_msg(run *r, cport_queue *q, uint64_t deadline, cport_msg *out) {
  char b[256];
  for (;;) {
    uint64_t now = sup_now_ms();
    if (now >= deadline) return 0;
    int n = cport_wait(q, out, 1, (int)(deadline - now));
    if (n < 0) {
      outcome(r, n, "cport_wait");
      continue;
    }
    if (n == 0) continue;
    if (out->flags & CPORT_MSG_MORE)
      RUN_FAIL(r, "a MORE message: %s", sup_msg_str(out, b, sizeof b));
    if (out->tag != CPORT_TAG_USER) {
      if (out->handle == 0 || ended_has(r, out->socket, out->handle))
        RUN_FAIL(r, "a second message for a handle: %s", sup_msg_str(out, b, sizeof b));
      mark_ended(r, out->socket, out->handle);
    }
    return 1;
  }
}

static int matches(const cport_msg *m, cport_socket s, cport_handle h) {
  return s == 0 && h == 0 ? m->tag == CPORT_TAG_USER
                          : m->tag != CPORT_TAG_USER && m->socket == s && m->handle == h;
}

/* The final message of (s, h) (0, 0: a user message); others are stashed.
 * Fails the run if it does not come. */
static cport_msg wait_for(run *r, cport_queue *q, cport_socket s, cport_handle h,
                          const char *what) {
  cport_msg m;
  for (int i = 0; i < r->nstash; i++) {
    if (!matches(&r->stash[i], s, h)) continue;
    m = r->stash[i];
    memmove(&r->stash[i], &r->stash[i + 1], (size_t)(r->nstash - i - 1) * sizeof m);
    r->nstash--;
    return m;
  }
  uint64_t deadline = sup_now_ms() + SUP_TIMEOUT;
  while (next_msg(r, q, deadline, &m)) {
    if (matches(&m, s, h)) return m;
    if (r->nstash == (int)(sizeof r->stash / sizeof r->stash[0])) RUN_FAIL(r, "stash full");
    r->stash[r->nstash++] = m;
  }
  RUN_FAIL(r, "%s: no message for socket %#llx handle %llu within %d ms (first failure: %s, %s)",
           what, (unsigned long long)s, (unsigned long long)h, SUP_TIMEOUT,
           r->where ? r->where : "none", sup_rc_name(r->rc));
}

/* ---- operations, carried to their end in either mode --------------------- */

/* An accept posted before the connect (it pends), and its end. */
static int accept_post(run *r) {
  if (r->acc.active) return CPORT_OK; /* posted by a run that failed: it still waits */
  r->acc.h = 0;
  r->acc.s = 0;
  r->acc.rc = outcome(r, cport_accept(r->l, CPORT_NOWAIT, &r->acc.s, &r->acc.h), "cport_accept");
  r->acc.active = r->acc.rc >= 0;
  return r->acc.rc;
}

static int accept_end(run *r, cport_socket *out) {
  int rc = r->acc.rc;
  cport_handle h = r->acc.h;
  r->acc.active = 0;
  for (int i = 0; i < MAX_TRIES; i++) {
    if (rc == CPORT_OK) *out = r->acc.s;
    if (rc <= 0) return rc;
    cport_msg m = wait_for(r, r->q, r->l, h, "accept");
    if (m.tag == CPORT_TAG_COMPLETION) {
      rc = outcome(r, m.status, "accept's completion");
      if (rc == CPORT_OK) *out = m.accepted;
      return rc;
    }
    if (m.tag != CPORT_TAG_SELECT) RUN_FAIL(r, "accept: tag %s", sup_tag_name(m.tag));
    rc = outcome(r, cport_accept(r->l, CPORT_NOWAIT, &r->acc.s, &h), "cport_accept again");
  }
  RUN_FAIL(r, "accept: no result after %d calls", MAX_TRIES);
}

static int do_accept(run *r, cport_socket *out) {
  int rc = accept_post(r);
  return rc < 0 ? rc : accept_end(r, out);
}

/* Connect: the first call (*h set when it pends), then its end. */
static int connect_start(run *r, cport_handle *h) {
  *h = 0;
  return outcome(r, cport_connect(r->c, &r->addr, CPORT_NOWAIT, h), "cport_connect");
}

static int connect_finish(run *r, int rc, cport_handle h) {
  for (int i = 0; i < MAX_TRIES && rc > 0; i++) {
    cport_msg m = wait_for(r, r->q, r->c, h, "connect");
    if (m.tag == CPORT_TAG_COMPLETION) return outcome(r, m.status, "connect's completion");
    if (m.tag != CPORT_TAG_SELECT) RUN_FAIL(r, "connect: tag %s", sup_tag_name(m.tag));
    rc = outcome(r, cport_connect(r->c, NULL, CPORT_NOWAIT, &h), "cport_connect again");
  }
  if (rc > 0) RUN_FAIL(r, "connect: no result after %d calls", MAX_TRIES);
  return rc;
}

/* Send the next len bytes of stream dir (0: c to s, 1: s to c). */
static int send_stream(run *r, int dir, size_t len) {
  cport_socket from = dir == 0 ? r->c : r->s;
  char buf[ECHO_LEN];
  size_t done = 0;
  sup_pattern(buf, len, r->sent[dir], (uint32_t)dir + 1u);
  for (int i = 0; i < MAX_TRIES && done < len; i++) {
    cport_handle h = 0;
    size_t n = 0;
    int rc =
        outcome(r, cport_send(from, buf + done, len - done, 0, CPORT_NOWAIT, &n, &h), "cport_send");
    if (rc < 0) {
      r->sent[dir] += done + n;
      return rc;
    }
    if (rc == CPORT_OK) {
      if (!sup_select_mode() && n != len - done) RUN_FAIL(r, "a partial send done now");
      done += n;
      continue;
    }
    if (rc == CPORT_SELECT) {
      done += n;
      cport_msg m = wait_for(r, r->q, from, h, "send's select message");
      if (m.tag != CPORT_TAG_SELECT) RUN_FAIL(r, "send: tag %s", sup_tag_name(m.tag));
      continue;
    }
    size_t want = len - done;
    cport_msg m = wait_for(r, r->q, from, h, "send's completion");
    if (m.tag != CPORT_TAG_COMPLETION) RUN_FAIL(r, "send: tag %s", sup_tag_name(m.tag));
    done += m.bytes;
    rc = outcome(r, m.status, "send's completion");
    if (rc < 0) {
      r->sent[dir] += done;
      return rc;
    }
    if (m.bytes != want) RUN_FAIL(r, "a completion send not whole: %zu of %zu", m.bytes, want);
  }
  if (done < len) RUN_FAIL(r, "send: not done after %d calls", MAX_TRIES);
  r->sent[dir] += done;
  return CPORT_OK;
}

/* Receive len bytes of stream dir, checking each against the pattern. */
static int recv_stream(run *r, int dir, size_t len) {
  cport_socket to = dir == 0 ? r->s : r->c;
  char buf[ECHO_LEN];
  size_t done = 0;
  int err = CPORT_OK;
  for (int i = 0; i < MAX_TRIES && done < len; i++) {
    cport_handle h = 0;
    size_t n = 0;
    int rc =
        outcome(r, cport_recv(to, buf + done, len - done, 0, CPORT_NOWAIT, &n, &h), "cport_recv");
    if (rc == CPORT_SELECT) {
      cport_msg m = wait_for(r, r->q, to, h, "recv's select message");
      if (m.tag != CPORT_TAG_SELECT) RUN_FAIL(r, "recv: tag %s", sup_tag_name(m.tag));
      continue;
    }
    if (rc == CPORT_COMPLETION) {
      cport_msg m = wait_for(r, r->q, to, h, "recv's completion");
      if (m.tag != CPORT_TAG_COMPLETION) RUN_FAIL(r, "recv: tag %s", sup_tag_name(m.tag));
      rc = outcome(r, m.status, "recv's completion");
      n = m.bytes;
    }
    if (n > 0) sup_check_pattern(buf + done, n, r->taken[dir] + done, (uint32_t)dir + 1u, "echo");
    done += n;
    if (rc < 0) {
      err = rc;
      break;
    }
    if (n == 0)
      RUN_FAIL(r, "recv: end of stream (stream %d, %zu of %zu; first failure: %s, %s)", dir, done,
               len, r->where ? r->where : "none", sup_rc_name(r->rc));
  }
  r->taken[dir] += done;
  if (done < len && err == CPORT_OK) RUN_FAIL(r, "recv: not done after %d calls", MAX_TRIES);
  return err;
}

/* The first recv of stream dir, before its bytes are sent: it pends. */
static int recv_post(run *r, int dir) {
  struct rx *x = &r->rx[dir];
  if (x->active) return CPORT_OK; /* posted by a run that failed: it still waits */
  x->h = 0;
  x->n = 0;
  x->abuf = NULL;
  if (dir == 0)
    x->rc = outcome(r, cport_recv_alloc(r->s, 0, CPORT_NOWAIT, &x->abuf, &x->n, &x->h),
                    "cport_recv_alloc");
  else
    x->rc =
        outcome(r, cport_recv(r->c, x->buf, ECHO_LEN, 0, CPORT_NOWAIT, &x->n, &x->h), "cport_recv");
  x->active = x->rc >= 0;
  return x->rc;
}

/* Its end, the bytes it took checked, then the rest of len bytes. */
static int recv_end(run *r, int dir, size_t len) {
  struct rx *x = &r->rx[dir];
  cport_socket to = dir == 0 ? r->s : r->c;
  int rc = x->rc;
  size_t n = x->n;
  void *data = dir == 0 ? x->abuf : x->buf;
  x->active = 0;
  if (rc == CPORT_SELECT) {
    cport_msg m = wait_for(r, r->q, to, x->h, "recv's select message");
    if (m.tag != CPORT_TAG_SELECT) RUN_FAIL(r, "recv: tag %s", sup_tag_name(m.tag));
    return recv_stream(r, dir, len);
  }
  if (rc == CPORT_COMPLETION) {
    cport_msg m = wait_for(r, r->q, to, x->h, "recv's completion");
    if (m.tag != CPORT_TAG_COMPLETION) RUN_FAIL(r, "recv: tag %s", sup_tag_name(m.tag));
    if (dir == 0 && !(m.flags & CPORT_MSG_ALLOCATED) && m.bytes > 0)
      RUN_FAIL(r, "recv_alloc's completion without its buffer");
    if (dir == 0) data = m.buf;
    rc = outcome(r, m.status, "recv's completion");
    n = m.bytes;
  }
  if (n > 0) sup_check_pattern(data, n, r->taken[dir], (uint32_t)dir + 1u, "echo");
  if (dir == 0) cport_free(data);
  r->taken[dir] += n;
  if (rc < 0) return rc;
  if (n == 0)
    RUN_FAIL(r, "first recv: end of stream (stream %d; first failure: %s, %s)", dir,
             r->where ? r->where : "none", sup_rc_name(r->rc));
  return n < len ? recv_stream(r, dir, len - n) : CPORT_OK;
}

/* The echo: each stream's recv posted first, then the bytes sent. */
static int echo(run *r) {
  int rc = recv_post(r, 0);
  if (rc >= 0) rc = send_stream(r, 0, ECHO_LEN);
  if (rc >= 0) rc = recv_end(r, 0, ECHO_LEN);
  if (rc >= 0) rc = recv_post(r, 1);
  if (rc >= 0) rc = send_stream(r, 1, ECHO_LEN);
  if (rc >= 0) rc = recv_end(r, 1, ECHO_LEN);
  return rc < 0 ? rc : CPORT_OK;
}

/* A listener on loopback, and a client connected to it and accepted. */
static int open_listener(run *r) {
  int rc = outcome(r, cport_open(r->q, CPORT_AF_INET, CPORT_SOCK_STREAM, sup_mode_flags(), &r->l),
                   "cport_open (listener)");
  if (rc < 0) {
    r->l = 0;
    return rc;
  }
  r->addr = sup_loopback(CPORT_AF_INET, 0);
  rc = outcome(r, cport_bind(r->l, &r->addr), "cport_bind");
  if (rc == CPORT_OK) rc = outcome(r, cport_listen(r->l, 0), "cport_listen");
  if (rc == CPORT_OK) rc = outcome(r, cport_sockname(r->l, &r->addr), "cport_sockname");
  return rc;
}

static int open_pair(run *r) {
  cport_handle h;
  memset(r->sent, 0, sizeof r->sent);
  memset(r->taken, 0, sizeof r->taken);
  int rc = outcome(r, cport_open(r->q, CPORT_AF_INET, CPORT_SOCK_STREAM, sup_mode_flags(), &r->c),
                   "cport_open (client)");
  if (rc < 0) {
    r->c = 0;
    return rc;
  }
  int arc = accept_post(r);
  if (arc < 0) return arc;
  rc = connect_start(r, &h);
  if (rc < 0) return rc; /* the accept stays pending, for the next connect */
  arc = accept_end(r, &r->s);
  if (arc < 0) r->s = 0;
  rc = connect_finish(r, rc, h); /* whatever the accept did: the connect's handle ends */
  r->connected = rc == CPORT_OK;
  return arc < 0 ? arc : rc;
}

/* A recv that pends, cancelled: one abort (completion mode) or nothing
 * (a select handle). If the cancel fails, the recv stays pending and the
 * close ends it. */
static int cancel_recv(run *r) {
  static char buf[16];
  cport_handle h = 0;
  size_t n = 0;
  int rc = outcome(r, cport_recv(r->c, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h), "cport_recv");
  if (rc < 0) return rc;
  if (rc == CPORT_OK) RUN_FAIL(r, "a recv with nothing sent ended at once (%zu bytes)", n);
  int crc = outcome(r, cport_deadline(r->c, h, 60000), "cport_deadline");
  if (crc == CPORT_OK) crc = outcome(r, cport_cancel(r->c, h), "cport_cancel");
  if (crc < 0) {
    r->pend[r->npend].s = r->c;
    r->pend[r->npend++].h = h;
    return crc;
  }
  if (rc == CPORT_SELECT) {
    mark_ended(r, r->c, h);
    return CPORT_OK;
  }
  cport_msg m = wait_for(r, r->q, r->c, h, "the cancelled recv");
  if (m.tag != CPORT_TAG_ABORT || m.status != CPORT_ECANCELED)
    RUN_FAIL(r, "cancelled recv: %s %s", sup_tag_name(m.tag), sup_rc_name(m.status));
  return CPORT_OK;
}

/* Close c with close_async (its CPORT_OP_CLOSE message after the aborts of
 * what was pending), or cport_close when that fails; s and l with
 * cport_close. */
/* A first recv still pending when its socket closes: its abort. */
static void rx_closed(run *r, int dir) {
  struct rx *x = &r->rx[dir];
  cport_socket to = dir == 0 ? r->s : r->c;
  if (!x->active) return;
  x->active = 0;
  if (x->rc == CPORT_OK) {
    if (dir == 0) cport_free(x->abuf);
    return;
  }
  cport_msg m = wait_for(r, r->q, to, x->h, "a pending recv's abort");
  if (m.flags & CPORT_MSG_ALLOCATED) cport_free(m.buf);
  if (m.tag != CPORT_TAG_ABORT || m.status != CPORT_ECLOSED)
    RUN_FAIL(r, "pending recv at close: %s %s", sup_tag_name(m.tag), sup_rc_name(m.status));
}

static void close_all(run *r) {
  if (r->c) {
    cport_handle h = 0;
    int rc = outcome(r, cport_close_async(r->c, &h), "cport_close_async");
    if (rc < 0) SUP_RC(cport_close(r->c), CPORT_OK);
    for (int i = 0; i < r->npend; i++) {
      cport_msg m = wait_for(r, r->q, r->pend[i].s, r->pend[i].h, "a pending op's abort");
      if (m.tag != CPORT_TAG_ABORT || m.status != CPORT_ECLOSED)
        RUN_FAIL(r, "pending op at close: %s %s", sup_tag_name(m.tag), sup_rc_name(m.status));
    }
    r->npend = 0;
    rx_closed(r, 1);
    if (rc == CPORT_OK) {
      cport_msg m = wait_for(r, r->q, r->c, h, "the close message");
      if (m.tag != CPORT_TAG_COMPLETION || m.op != CPORT_OP_CLOSE || m.status != CPORT_OK)
        RUN_FAIL(r, "close message: %s %s", sup_tag_name(m.tag), sup_op_name(m.op));
    }
    r->c = 0;
  }
  if (r->s) SUP_RC(cport_close(r->s), CPORT_OK);
  if (r->s) rx_closed(r, 0);
  if (r->l) SUP_RC(cport_close(r->l), CPORT_OK);
  if (r->l && r->acc.active && r->acc.rc > 0) { /* an accept left pending by a failure */
    cport_msg m = wait_for(r, r->q, r->l, r->acc.h, "a pending accept's abort");
    if (m.tag != CPORT_TAG_ABORT || m.status != CPORT_ECLOSED)
      RUN_FAIL(r, "pending accept at close: %s %s", sup_tag_name(m.tag), sup_rc_name(m.status));
  }
  if (r->l && r->acc.active && r->acc.rc == CPORT_OK) SUP_RC(cport_close(r->acc.s), CPORT_OK);
  if (r->l) r->acc.active = 0;
  r->s = r->l = 0;
}

/* Nothing left: no stashed message, none arriving. */
static void expect_quiet(run *r) {
  cport_msg m;
  char b[256];
  if (r->nstash > 0)
    RUN_FAIL(r, "%d unexpected messages, the first %s", r->nstash,
             sup_msg_str(&r->stash[0], b, sizeof b));
  if (next_msg(r, r->q, sup_now_ms() + 20, &m))
    RUN_FAIL(r, "an unexpected message: %s", sup_msg_str(&m, b, sizeof b));
}

static int create_ctx(run *r) {
  cport_ctx_options opts;
  memset(&opts, 0, sizeof opts);
  opts.backend = sup_backend();
  opts.single_thread = getenv("CPORT_TEST_SINGLE_THREAD") != NULL; /* the *.single variant */
  return outcome(r, cport_ctx_create(&r->ctx, &opts), "cport_ctx_create");
}

/* A second queue with a user message through it. */
static int second_queue(run *r) {
  cport_queue *q2 = NULL;
  int rc = outcome(r, cport_queue_create(r->ctx, &q2), "cport_queue_create (second)");
  if (rc < 0) return rc;
  rc = outcome(r, cport_post(q2, 42, r), "cport_post");
  if (rc == CPORT_OK) {
    cport_msg m = wait_for(r, q2, 0, 0, "the user message");
    if (m.user != 42 || m.user_ptr != r)
      RUN_FAIL(r, "user message: %llu", (unsigned long long)m.user);
  }
  SUP_RC(cport_queue_destroy(q2), CPORT_OK);
  return rc;
}

/* The scenario, up to its first failure. */
static void scenario(run *r) {
  if (create_ctx(r) < 0) return;
  if (outcome(r, cport_queue_create(r->ctx, &r->q), "cport_queue_create") < 0) return;
  if (second_queue(r) < 0) return;
  if (open_listener(r) < 0) return;
  if (open_pair(r) < 0) return;
  if (echo(r) < 0) return;
  if (cancel_recv(r) < 0) return;
}

/* After a failure, with allocation working again: the connection that
 * survived takes what was in flight and echoes again, then a new one
 * echoes, on the same context (a new one if none was created). */
static void recover(run *r) {
  disarm();
  if (!r->ctx) SUP_RC(create_ctx(r), CPORT_OK);
  if (!r->q) SUP_RC(cport_queue_create(r->ctx, &r->q), CPORT_OK);
  for (int i = 0; i < r->npend; i++) { /* the recv a failed cancel left pending */
    SUP_RC(cport_cancel(r->pend[i].s, r->pend[i].h), CPORT_OK);
    if (sup_select_mode()) {
      mark_ended(r, r->pend[i].s, r->pend[i].h);
      continue;
    }
    cport_msg m = wait_for(r, r->q, r->pend[i].s, r->pend[i].h, "the recv cancelled again");
    if (m.tag != CPORT_TAG_ABORT || m.status != CPORT_ECANCELED)
      RUN_FAIL(r, "cancelled recv: %s %s", sup_tag_name(m.tag), sup_rc_name(m.status));
  }
  r->npend = 0;
  /* An accept that failed left the client's connection to the next one. */
  if (r->c && !r->s && r->connected && !r->conn_error) SUP_RC(do_accept(r, &r->s), CPORT_OK);
  if (r->c && r->s && !r->conn_error) {
    for (int dir = 0; dir < 2; dir++) {
      size_t left = (size_t)(r->sent[dir] - r->taken[dir]);
      if (left > 0 && r->rx[dir].active)
        SUP_RC(recv_end(r, dir, left), CPORT_OK);
      else if (left > 0)
        SUP_RC(recv_stream(r, dir, left), CPORT_OK);
    }
    SUP_RC(echo(r), CPORT_OK);
  }
  if (r->c) {
    cport_socket l = r->l;
    r->l = 0; /* kept open for the new connection */
    close_all(r);
    r->l = l;
  }
  if (!r->l) {
    SUP_RC(open_listener(r), CPORT_OK);
  }
  SUP_RC(open_pair(r), CPORT_OK);
  SUP_RC(echo(r), CPORT_OK);
  SUP_RC(cancel_recv(r), CPORT_OK);
}

static long g_baseline; /* allocations the library keeps for good (its socket table) */

/* One run with allocation n failing (0: none); returns the allocations it
 * asked for and the failures injected. */
static void run_once(long n, int rest, long *calls, long *injected, int warmup) {
  static run storage; /* static: a failed run longjmps out, and leaks nothing */
  run *r = &storage;
  memset(r, 0, sizeof *r);
  g_run = r;
  r->n = n;
  r->rest = rest;
  arm(n, rest);
  scenario(r);
  *calls = atomic_load(&g_calls);
  *injected = atomic_load(&g_injected);
  if (r->failed || *injected > 0) recover(r);
  disarm();
  close_all(r);
  expect_quiet(r);
  SUP_RC(cport_queue_destroy(r->q), CPORT_OK);
  cport_ctx_destroy(r->ctx);
  if (warmup) g_baseline = atomic_load(&g_live);
  if (atomic_load(&g_live) != g_baseline)
    RUN_FAIL(r, "%ld allocations not freed after cport_ctx_destroy (first failure: %s, %s)",
             atomic_load(&g_live) - g_baseline, r->where ? r->where : "none", sup_rc_name(r->rc));
  g_run = NULL;
}

static void sweep(int rest) {
  long calls = 0, injected = 0, failures = 0, n;
  run_once(0, 0, &calls, &injected, 1); /* the socket table's first chunk stays */
  long total = calls;
  for (n = 1;; n++) {
    run_once(n, rest, &calls, &injected, 0);
    if (injected == 0) break;
    failures++;
    if (n > 100000) SUP_FAIL("the sweep does not end");
  }
  printf("alloc_fail %s: N 1..%ld (%ld allocations in a run without failure), %ld runs with a "
         "failure injected, every one recovered\n",
         rest ? "from N on" : "Nth only", n, total, failures);
}

static void test_fail_nth(void **state) {
  (void)state;
  sweep(0);
}

static void test_fail_from_nth(void **state) {
  (void)state;
  sweep(1);
}

static void test_set_allocator(void **state) {
  (void)state;
  cport_ctx *ctx = NULL;
  SUP_RC(cport_set_allocator(NULL, t_realloc, t_calloc, t_free), CPORT_EINVAL);
  SUP_RC(cport_set_allocator(t_malloc, NULL, t_calloc, t_free), CPORT_EINVAL);
  SUP_RC(cport_set_allocator(t_malloc, t_realloc, NULL, t_free), CPORT_EINVAL);
  SUP_RC(cport_set_allocator(t_malloc, t_realloc, t_calloc, NULL), CPORT_EINVAL);
  cport_ctx_options opts;
  memset(&opts, 0, sizeof opts);
  opts.backend = sup_backend();
  SUP_RC(cport_ctx_create(&ctx, &opts), CPORT_OK);
  SUP_RC(cport_set_allocator(malloc, realloc, calloc, free), CPORT_EBUSY);
  cport_ctx_destroy(ctx);
  SUP_RC(cport_set_allocator(t_malloc, t_realloc, t_calloc, t_free), CPORT_OK);
}

int main(int argc, char **argv) {
  static const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_set_allocator),
      cmocka_unit_test(test_fail_nth),
      cmocka_unit_test(test_fail_from_nth),
  };
  /* Before the first context, which sup_parse_args creates (to ask whether
   * the backend is there). */
  if (cport_set_allocator(t_malloc, t_realloc, t_calloc, t_free) != CPORT_OK) return 1;
  int rc = sup_parse_args(argc, argv);
  if (rc != 0) return rc;
  return _cmocka_run_group_tests(sup_group_name("alloc_fail"), tests,
                                 sizeof tests / sizeof tests[0], NULL, NULL);
}
