/* The epoll backend: select mode natively, completion mode emulated.
 *
 * Each socket is registered once, edge-triggered, for both directions, so
 * no operation costs an epoll_ctl. An operation is tried when it reaches
 * the head of its direction's FIFO (at once if the FIFO was empty); when it
 * would block it waits for the next edge. Select operations end on the
 * edge itself. An eventfd wakes a poller for cport_post.
 *
 * Once an attempt has found a direction exhausted (EAGAIN, or a stream
 * recv that emptied the queue), the next op of that direction waits for
 * an edge without asking the kernel: in request-response traffic that
 * saves the EAGAIN recv a message would otherwise cost (Asio keeps the
 * same hint). Any data that arrives later raises an edge, so nothing
 * waits for ever. A hang-up or an error seen on a socket turns the hint
 * off for good, because its edge may already have been consumed. */
#define _GNU_SOURCE /* accept4, pthread_condattr_setclock */
#include "posix.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 256
#define WAKE_KEY 0u /* never a socket handle */

typedef struct ep_ctx {
  int epfd;
  int wakefd;
  atomic_int wake_pending;               /* coalesces wake-ups into one eventfd write */
  struct epoll_event events[MAX_EVENTS]; /* used by the one poller only */
} ep_ctx;

static ep_ctx *state_of(cport_ctx *ctx) { return cp_ctx_backend(ctx); }

/* Per socket, in s->be (zeroed when a slot is reused). */
typedef struct ep_sock {
  cp_posix_sock px; /* first: the POSIX layer's exhausted hint */
  uint8_t hung_up;  /* EPOLLHUP, EPOLLERR or EPOLLRDHUP has been seen */
} ep_sock;
_Static_assert(sizeof(ep_sock) <= CP_BACKEND_SOCK_SIZE, "ep_sock fits in cp_sock.be");

static ep_sock *sock_state(cp_sock *s) { return (ep_sock *)s->be; }

static int ep_ctx_init(cport_ctx *ctx) {
  ep_ctx *ep = cp_calloc(1, sizeof *ep);
  if (!ep) return CPORT_ENOMEM;
  ep->epfd = epoll_create1(EPOLL_CLOEXEC);
  ep->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = WAKE_KEY};
  if (ep->epfd < 0 || ep->wakefd < 0 || epoll_ctl(ep->epfd, EPOLL_CTL_ADD, ep->wakefd, &ev) != 0) {
    int rc = cp_errno_to_err(errno);
    if (ep->epfd >= 0) close(ep->epfd);
    if (ep->wakefd >= 0) close(ep->wakefd);
    cp_free(ep);
    return rc;
  }
  cp_ctx_set_backend(ctx, ep);
  return CPORT_OK;
}

static void ep_ctx_free(cport_ctx *ctx) {
  ep_ctx *ep = state_of(ctx);
  close(ep->epfd);
  close(ep->wakefd);
  cp_free(ep);
}

/* EPOLL_CTL_ADD reports readiness the socket already has as an edge, so
 * a new socket's first read can wait for that edge like any other: a
 * freshly accepted connection's first recv then costs no EAGAIN. */
static int ep_register(cp_sock *s) {
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.u64 = s->id};
  if (epoll_ctl(state_of(s->ctx)->epfd, EPOLL_CTL_ADD, (int)s->os, &ev) != 0)
    return cp_errno_to_err(errno);
  cp_posix_exhaust(s, CP_RD);
  return CPORT_OK;
}

static int ep_sock_open(cp_sock *s) {
  int rc = cp_posix_socket(s);
  if (rc == CPORT_OK && (rc = ep_register(s)) != CPORT_OK) close((int)s->os);
  return rc;
}

/* Whether an attempt at op could make progress before the next edge. */
static bool may_try(cp_sock *s, const cp_op *op) {
  ep_sock *es = sock_state(s);
  if (!es->px.exhausted[op->dir] || es->hung_up) return true;
  return op->kind == CPORT_OP_CONNECT && !s->connecting; /* starts it: no edge to wait for */
}

/* Select ops end on the edge itself; the rest make one attempt each. */
static int ep_attempt(cp_sock *s, cp_op *op, bool ready) {
  (void)ready; /* the exhausted hint says more: it survives between edges */
  if (!may_try(s, op)) return CP_PENDING;
  return op->select ? CPORT_OK : cp_posix_try(s, op);
}

static void ep_sock_close(cp_sock *s) {
  cp_sock_drain(s);
  close((int)s->os); /* also removes it from the epoll set */
}

static int ep_try_now(cp_sock *s, cp_op *op) {
  return may_try(s, op) ? cp_posix_try(s, op) : CP_PENDING;
}

/* An op that try_now found blocked waits for the edge its EAGAIN (or its
 * exhausted direction) guarantees. */
static int ep_start(cp_sock *s, cp_op *op) {
  if (op->tried || cp_dir_active(s, op->dir) != op) return CP_PENDING;
  return ep_try_now(s, op);
}

static void handle_event(const struct epoll_event *ev) {
  cp_sock *s = cp_sock_lock(ev->data.u64);
  if (!s) return; /* closed since the event was queued */
  if (ev->events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) sock_state(s)->hung_up = 1;
  if (ev->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
    sock_state(s)->px.exhausted[CP_RD] = 0;
    cp_dir_advance(s, CP_RD, true);
  }
  if (ev->events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    sock_state(s)->px.exhausted[CP_WR] = 0;
    cp_dir_advance(s, CP_WR, true);
  }
  cp_sock_unlock(s);
}

/* Read, then clear: a wake-up that lands between the two skips its write,
 * which is fine because this poller is awake and returns to look at the
 * queues. Clearing first would let a write be consumed with the flag left
 * set, and every later wake-up would be skipped. */
static void drain_wake(ep_ctx *ep) {
  uint64_t count;
  while (read(ep->wakefd, &count, sizeof count) < 0 && errno == EINTR) {
  }
  atomic_store(&ep->wake_pending, 0);
}

static int ep_poll(cport_ctx *ctx, int timeout_ms) {
  ep_ctx *ep = state_of(ctx);
  int n = epoll_wait(ep->epfd, ep->events, MAX_EVENTS, timeout_ms);
  if (n < 0) return errno == EINTR ? CPORT_OK : cp_errno_to_err(errno);
  for (int i = 0; i < n; i++) {
    if (ep->events[i].data.u64 == WAKE_KEY)
      drain_wake(ep);
    else
      handle_event(&ep->events[i]);
  }
  return CPORT_OK;
}

static void ep_wake(cport_ctx *ctx) {
  ep_ctx *ep = state_of(ctx);
  if (atomic_exchange(&ep->wake_pending, 1)) return;
  uint64_t one = 1;
  while (write(ep->wakefd, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

const cp_backend cp_backend_epoll = {
    .id = CPORT_BACKEND_EPOLL,
    .name = "epoll",
    .ctx_init = ep_ctx_init,
    .ctx_free = ep_ctx_free,
    .sock_open = ep_sock_open,
    .sock_adopt = ep_register,
    .sock_close = ep_sock_close,
    .try_now = ep_try_now,
    .start = ep_start,
    .attempt = ep_attempt,
    .cancel = cp_op_cancel_now,
    .poll = ep_poll,
    .wake = ep_wake,
    .bind = cp_posix_bind,
    .listen = cp_posix_listen,
    .shutdown = cp_posix_shutdown,
    .sockname = cp_posix_sockname,
    .peername = cp_posix_peername,
};
