/* Multishot handles (docs/design.md, "Multishot handles"): cport_accept_multi
 * and cport_recv_multi.
 *
 * A multishot op is one record that stays at the head of its direction,
 * alone there (io.c refuses anything else in that direction meanwhile), and
 * runs on every backend through the backend's ordinary start: each result
 * it gets that lets the handle go on (a connection, a chunk of bytes) is
 * copied into a message of its own flagged CPORT_MSG_MORE, and the op is
 * armed again. Any other result (EOF, an error, a cancel or close, or a
 * result that raced one) ends it like any op: that is the final message.
 * Results that come at once are taken in a loop, never by recursion, so a
 * flood of data cannot grow the stack.
 *
 * A recv's chunks are buffers with a header naming its cp_bufs (ubuf.c).
 * While otp.rcv_outstanding of them are with the user, the op pauses
 * (no buffer, not armed, skipped by the ordering loop); the release that
 * brings the count under the limit arms it again. The pause flag and the
 * count are read in opposite orders by the two sides (Dekker): either the
 * pausing op sees the release, or the release sees the pause.
 *
 * Where the OS can receive many chunks on one request, into buffers it
 * picks from a set the backend lends it (io_uring's buffer ring: op->kbuf),
 * the backend hands each chunk to cp_multi_chunk with a message record it
 * reserved along with the buffer, so no chunk the OS took can be lost for
 * want of memory; a pause then stops the OS's request, and the release
 * arms a new one. Where the OS keeps one readiness request armed for an
 * accept (io_uring's multishot poll: op->os_multi), the backend accepts
 * with a record reserved first and hands each connection to
 * cp_multi_result, so the op never ends while the OS still holds it. */
#include "core.h"

#include <stdlib.h>

struct cp_bufs {
  atomic_uint refs;        /* the op's, and one per chunk not yet released */
  atomic_uint outstanding; /* chunks with the user */
  atomic_int paused;       /* the op waits for a release */
  cport_socket sock;       /* to find the op again: handles fail cleanly */
  cport_handle handle;
};

void cp_bufs_ref(cp_bufs *b) { atomic_fetch_add(&b->refs, 1u); }

static void bufs_unref(cp_bufs *b) {
  if (atomic_fetch_sub(&b->refs, 1u) == 1u) cp_free(b);
}

void cp_bufs_handed(cp_bufs *b) { atomic_fetch_add(&b->outstanding, 1u); }

int cp_multi_begin(cp_sock *s, cp_op *op) {
  op->kbuf = 0;
  op->os_multi = 0;
  if (op->kind != CPORT_OP_RECV) return CPORT_OK;
  cp_bufs *b = cp_malloc(sizeof *b);
  if (!b) return CPORT_ENOMEM;
  atomic_init(&b->refs, 1u);
  atomic_init(&b->outstanding, 0u);
  atomic_init(&b->paused, 0);
  b->sock = s->id;
  b->handle = op->handle;
  op->bufs = b;
  const cp_backend *be = s->ctx->be;
  op->kbuf = !s->filtered && be->kernel_buffers && be->kernel_buffers(s, op);
  return CPORT_OK;
}

/* Whether a recv must wait for the user to release chunks. */
static bool must_pause(cp_sock *s, cp_op *op) {
  cp_bufs *b = op->bufs;
  unsigned limit = cp_rcv_outstanding(s);
  if (atomic_load(&b->outstanding) < limit) return false;
  atomic_store(&b->paused, 1);
  if (atomic_load(&b->outstanding) < limit) { /* a release came meanwhile */
    atomic_store(&b->paused, 0);
    return false;
  }
  op->paused = 1;
  return true;
}

/* Makes op new again for its next result. false: it pauses, or it ended
 * (no memory for a buffer). */
static bool renew(cp_sock *s, cp_op *op) {
  op->state = CP_OP_PENDING;
  op->status = 0;
  op->done = 0;
  op->msg_flags = 0;
  if (!op->os_multi) op->started = 0;
  op->tried = 0;
  if (op->kind == CPORT_OP_ACCEPT) {
    op->accepted = CPORT_INVALID_SOCKET;
    return true;
  }
  if (op->owns_buf) return true; /* still has its buffer */
  if (must_pause(s, op)) return false;
  op->len = cp_rcvbuf(s);
  if (op->kbuf) return true; /* the OS picks a buffer when data comes */
  op->buf = cp_ubuf_alloc(op->len, op->bufs);
  if (!op->buf) {
    cp_op_end(op, CPORT_ENOMEM);
    return false;
  }
  op->owns_buf = 1;
  return true;
}

/* Whether a result lets the handle go on: a connection or some bytes, with
 * nobody asking the op to stop. */
static bool goes_on(const cp_sock *s, const cp_op *op, int status) {
  if (status != CPORT_OK || op->cancelled || op->closed || s->state != CP_SOCK_OPEN) return false;
  return op->kind == CPORT_OP_ACCEPT || op->done > 0;
}

/* Delivers op's result as a CPORT_MSG_MORE message. false: no memory for
 * one, so this result must end the handle instead (nothing is lost). */
static bool deliver_more(cp_sock *s, cp_op *op) {
  cp_op *m = cp_op_copy(s, op);
  if (!m) return false;
  m->state = CP_OP_DONE;
  m->status = CPORT_OK;
  m->multi = 0;
  m->paused = 0;
  m->deadline = 0; /* the op keeps its deadline */
  m->bufs = NULL;
  m->msg_flags |= CPORT_MSG_MORE;
  if (op->owns_buf) { /* the chunk goes with the message */
    cp_ubuf_hand_over(op->buf);
    op->buf = NULL;
    op->owns_buf = 0;
  }
  cp_op_effects(s, m);
  cp_op_deliver(s, m);
  return true;
}

void cp_multi_arm(cp_sock *s, cp_op *op) {
  int rc;
  do {
    if (!renew(s, op)) return;
    rc = cp_start(s, op);
    if (rc == CP_PENDING) return;
  } while (goes_on(s, op, rc) && deliver_more(s, op));
  cp_op_end(op, rc);
}

bool cp_multi_go_on(cp_sock *s, cp_op *op, int status) {
  if (!goes_on(s, op, status) || !deliver_more(s, op)) return false;
  cp_multi_arm(s, op);
  return true;
}

void cp_multi_result(cp_sock *s, cp_op *op, cp_op *rec) {
  cp_op_free(s, rec); /* the spare that the message's copy takes */
  bool delivered = deliver_more(s, op);
  (void)delivered; /* a spare of the right size: it cannot fail */
  op->status = 0;
  op->done = 0;
  op->msg_flags = 0;
  if (op->kind == CPORT_OP_ACCEPT) op->accepted = CPORT_INVALID_SOCKET;
}

bool cp_multi_chunk(cp_sock *s, cp_op *op, cp_op *rec) {
  cp_multi_result(s, op, rec);
  return op->paused || must_pause(s, op);
}

void cp_multi_end(cp_op *op) {
  if (op->owns_buf && op->done == 0) { /* EOF, an error or an abort: no chunk */
    cport_free(op->buf);
    op->buf = NULL;
    op->owns_buf = 0;
  } else if (op->owns_buf) {
    cp_ubuf_hand_over(op->buf);
  }
  if (op->bufs) bufs_unref(op->bufs);
  op->bufs = NULL;
  op->multi = 0;
  op->paused = 0;
  op->sock->multi[op->dir] = 0;
}

/* A release brought a paused recv under its limit: arm it again, if it is
 * still there and still paused. */
static void resume(cp_bufs *b) {
  cp_sock *s = cp_sock_lock(b->sock);
  if (!s) return; /* closed: its op ended */
  cp_op *op = cp_op_find(s, b->handle);
  if (op && op->multi && op->paused) {
    op->paused = 0;
    atomic_store(&b->paused, 0);
    cp_multi_arm(s, op);
  }
  cp_sock_unlock(s);
}

void cp_bufs_release(cp_bufs *b, bool handed) {
  if (handed) {
    atomic_fetch_sub(&b->outstanding, 1u);
    if (atomic_load(&b->paused)) resume(b);
  }
  bufs_unref(b);
}
