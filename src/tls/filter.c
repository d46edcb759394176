/* The TLS filter (docs/design.md §10): a socket's user ops carry plaintext,
 * its raw ops carry the records, and one loop (pump) moves bytes between
 * them through the engine.
 *
 * Outgoing: each user send is encrypted whole, in order, onto the end of
 * the outgoing stream (tx), and remembers the stream offset of its last
 * byte; one raw send at a time carries the unsent part of tx to the
 * backend; a completion send ends when the raw sends have passed its
 * offset (whole sends), a select send when its bytes are in tx.
 * Incoming: one raw recv at a time, posted only while something waits for
 * ciphertext, feeds the engine; user recvs take plaintext from it in order.
 * Plaintext decrypted ahead (for a select recv's readiness) waits in pt.
 *
 * Everything here runs under the socket's mutex. The loop is re-entered
 * from its own calls (a raw op that ends at once, a multishot recv that
 * re-arms): a nested call only asks the running loop to go round again. */
#include "tls.h"

#include <string.h>

#define RX_SIZE 17408u            /* one TLS record with its overhead */
#define PT_SIZE 16384u            /* plaintext decrypted ahead for a select recv */
#define TX_SELECT_MAX 65536u      /* unsent ciphertext past which a select send waits */
#define ENCRYPT_AHEAD_MAX 262144u /* unsent ciphertext past which queued sends wait */
#define BUF_KEEP_MAX 262144u      /* a buffer larger than this is let go once sent */

/* Per user send or shutdown, in op->be (the backend never sees a
 * filtered socket's user ops): where its last byte lies in the outgoing
 * stream, 0 while it is not yet encrypted. */
typedef struct send_mark {
  uint64_t end;
} send_mark;
_Static_assert(sizeof(send_mark) <= CP_BACKEND_OP_SIZE, "a send mark fits in cp_op.be");

static send_mark *mark_of(cp_op *op) { return (send_mark *)(void *)op->be; }
static tls_sock *tls_of(cp_sock *s) { return (tls_sock *)(void *)s->filtered; }

static void pump(cp_sock *s, tls_sock *t);

/* ---- the outgoing stream ------------------------------------------------- */

/* Two buffers: the engine's output gathers in tx while the raw send in
 * flight owns fly (the OS reads it until the send ends, so it never
 * moves); when fly is sent, they swap. */

/* Moves what the engine has to send onto tx. */
static int tx_collect(tls_sock *t) {
  if (t->eng->set_sink) { /* the engine wrote into tx itself */
    t->tx_total += t->tx.len - t->tx_seen;
    t->tx_seen = t->tx.len;
    return CPORT_OK;
  }
  size_t n;
  while ((n = t->eng->out_pending(t->sess)) > 0) {
    if (!tls_buf_reserve(&t->tx, n)) return CPORT_ENOMEM;
    size_t got = t->eng->take(t->sess, t->tx.data + t->tx.len, n);
    if (got == 0) break;
    t->tx.len += got;
    t->tx_total += got;
  }
  return CPORT_OK;
}

/* A session that failed in TLS itself (CPORT_ETLS) still sends what the
 * engine queued last: the alert that tells the peer why. */
static void post_tx(cp_sock *s, tls_sock *t) {
  bool sendable = !t->failed || t->failed == CPORT_ETLS;
  if (t->fly.len > 0 || t->tx.len == 0 || !sendable || s->state != CP_SOCK_OPEN) return;
  tls_buf b = t->fly;
  t->fly = t->tx;
  t->tx = b; /* empty */
  t->tx_seen = 0;
  cp_op proto;
  memset(&proto, 0, offsetof(cp_op, be));
  proto.sock = s;
  proto.kind = CPORT_OP_SEND;
  proto.dir = CP_WR;
  proto.buf = t->fly.data;
  proto.len = t->fly.len;
  if (cp_raw_post(s, &proto) != CPORT_OK) tls_fail(t, CPORT_ENOMEM, "no memory for a send");
}

/* ---- the incoming stream ------------------------------------------------- */

static void post_rx(cp_sock *s, tls_sock *t) {
  if (t->rx_busy || t->rx_eof || t->failed || s->state != CP_SOCK_OPEN) return;
  if (!t->rx && !(t->rx = cp_malloc(RX_SIZE))) {
    tls_fail(t, CPORT_ENOMEM, "no memory for a receive buffer");
    return;
  }
  if (t->eng->unlend && t->eng->unlend(t->sess) != TLS_OK) { /* t->rx is about to be written */
    tls_fail(t, CPORT_ENOMEM, "no memory for received records");
    return;
  }
  cp_op proto;
  memset(&proto, 0, offsetof(cp_op, be));
  proto.sock = s;
  proto.kind = CPORT_OP_RECV;
  proto.dir = CP_RD;
  proto.buf = t->rx;
  proto.len = RX_SIZE;
  t->rx_busy = true;
  if (cp_raw_post(s, &proto) != CPORT_OK) {
    t->rx_busy = false;
    tls_fail(t, CPORT_ENOMEM, "no memory for a receive");
  }
}

/* ---- user ops ------------------------------------------------------------ */

/* The handshake: CPORT_OK once done, CP_PENDING while it wants bytes. */
static int attempt_handshake(tls_sock *t) {
  if (t->failed) return t->failed;
  if (t->handshaken) return CPORT_OK;
  int rc = t->eng->handshake(t->sess);
  int crc = tx_collect(t);
  if (crc != CPORT_OK) return tls_fail(t, crc, "no memory for the handshake");
  if (rc == TLS_FAIL) return tls_fail(t, CPORT_ETLS, NULL);
  if (rc == TLS_OK) {
    t->handshaken = true;
    return CPORT_OK;
  }
  if (t->rx_eof) return tls_fail(t, CPORT_ETLS, "the peer closed during the handshake");
  t->want_rx = true;
  return CP_PENDING;
}

/* Plaintext into op's buffer: from pt first, then straight from the
 * engine. CPORT_OK when op may end (some bytes, or the end of the stream),
 * CP_PENDING when it waits for records. */
static int fill_recv(tls_sock *t, cp_op *op) {
  size_t want = op->len - op->done;
  if (t->pt_len > 0) {
    size_t n = t->pt_len < want ? t->pt_len : want;
    memcpy(op->buf + op->done, t->pt, n);
    memmove(t->pt, t->pt + n, t->pt_len - n);
    t->pt_len -= n;
    op->done += n;
    want -= n;
  }
  while (want > 0 && !t->closed_by_peer && !t->failed) {
    size_t got = 0;
    int rc = t->eng->decrypt(t->sess, op->buf + op->done, want, &got);
    if (tx_collect(t) != CPORT_OK) return tls_fail(t, CPORT_ENOMEM, "no memory");
    if (rc == TLS_OK) {
      op->done += got;
      want -= got;
      if (!(op->flags & CPORT_WAITALL)) break;
    } else if (rc == TLS_CLOSED) {
      t->closed_by_peer = true;
    } else if (rc == TLS_FAIL) {
      tls_fail(t, CPORT_ETLS, NULL);
    } else {
      break; /* TLS_WANT */
    }
  }
  bool whole = want == 0 || !(op->flags & CPORT_WAITALL);
  if (op->done > 0 && whole) return CPORT_OK;
  if (t->rx_eof && !t->closed_by_peer && !t->failed && t->eng->in_pending(t->sess) > 0)
    return tls_fail(t, CPORT_ETLS, "the peer's stream ended in the middle of a record");
  if (t->closed_by_peer || (t->rx_eof && !t->failed)) return CPORT_OK; /* the end: 0 or short */
  if (t->failed) return t->failed;
  t->want_rx = true;
  return CP_PENDING;
}

/* A select recv is ready once plaintext (or the stream's end) is there:
 * decrypt ahead into pt to know. */
static int ready_recv(tls_sock *t) {
  if (t->pt_len > 0 || t->closed_by_peer || t->failed || t->rx_eof) return CPORT_OK;
  if (!t->pt && !(t->pt = cp_malloc(PT_SIZE))) return tls_fail(t, CPORT_ENOMEM, "no memory");
  size_t got = 0;
  int rc = t->eng->decrypt(t->sess, t->pt, PT_SIZE, &got);
  if (tx_collect(t) != CPORT_OK) return tls_fail(t, CPORT_ENOMEM, "no memory");
  if (rc == TLS_OK) t->pt_len = got;
  if (rc == TLS_CLOSED) t->closed_by_peer = true;
  if (rc == TLS_FAIL) tls_fail(t, CPORT_ETLS, NULL);
  if (rc != TLS_WANT) return CPORT_OK;
  t->want_rx = true;
  return CP_PENDING;
}

/* Encrypts a send whole onto tx (once). */
static int encrypt_send(tls_sock *t, cp_op *op) {
  if (mark_of(op)->end) return CPORT_OK;
  if (t->failed) return t->failed;
  if (t->shut_sent) return CPORT_EPIPE;
  if (t->eng->encrypt(t->sess, op->buf, op->len) != TLS_OK) return tls_fail(t, CPORT_ETLS, NULL);
  int rc = tx_collect(t);
  if (rc != CPORT_OK) return tls_fail(t, rc, "no memory for a send");
  mark_of(op)->end = t->tx_total;
  return CPORT_OK;
}

static bool tx_room(const tls_sock *t) { return t->tx.len + t->fly.len < TX_SELECT_MAX; }

/* first: the user's call itself. A select send then goes into the stream
 * if there is room (as the OS's buffer takes a send); later, its wait
 * ends when there is room again. */
static int attempt_send(tls_sock *t, cp_op *op, bool first) {
  if (!t->handshaken) return t->failed ? t->failed : CP_PENDING;
  if (op->select && !first) return t->failed || tx_room(t) ? CPORT_OK : CP_PENDING;
  if (op->select && !tx_room(t)) return t->failed ? t->failed : CP_PENDING;
  int rc = encrypt_send(t, op);
  if (rc == CPORT_OK && op->select) op->done = op->len;
  if (rc != CPORT_OK || op->select) return rc;
  if (rc != CPORT_OK) return rc;
  if (t->tx_sent < mark_of(op)->end) return t->failed ? t->failed : CP_PENDING;
  op->done = op->len;
  return CPORT_OK;
}

static int attempt_shutdown(tls_sock *t, cp_op *op) {
  if (!t->handshaken) return t->failed ? t->failed : CP_PENDING;
  if (!mark_of(op)->end) {
    if (t->failed) return t->failed;
    if (t->eng->close_notify(t->sess) != TLS_OK) return tls_fail(t, CPORT_ETLS, NULL);
    int rc = tx_collect(t);
    if (rc != CPORT_OK) return tls_fail(t, rc, "no memory");
    t->shut_sent = true;
    mark_of(op)->end = t->tx_total;
  }
  if (t->tx_sent < mark_of(op)->end) return t->failed ? t->failed : CP_PENDING;
  return CPORT_OK;
}

/* One user op, as a backend's attempt: CPORT_OK or an error if it ends,
 * CP_PENDING if it waits. first: the user's call itself, where a select
 * op does its work (a recv reads); afterwards it only waits for
 * readiness. */
static int attempt(tls_sock *t, cp_op *op, bool first) {
  switch (op->kind) {
  case CPORT_OP_TLS_HANDSHAKE: return attempt_handshake(t);
  case CPORT_OP_TLS_SHUTDOWN: return attempt_shutdown(t, op);
  case CPORT_OP_SEND: return attempt_send(t, op, first);
  default: /* CPORT_OP_RECV */
    if (!t->handshaken) return t->failed ? t->failed : CP_PENDING;
    return op->select && !first ? ready_recv(t) : fill_recv(t, op);
  }
}

static cp_op *first_pending(const tls_sock *t, const cp_list *l) {
  for (cp_op *op = l->head; op; op = op->next)
    if (op->state == CP_OP_PENDING && op != t->settling) return op;
  return NULL;
}

/* The ordering loop of one direction's user ops (as cp_dir_advance). */
static void advance(tls_sock *t, int dir) {
  cp_op *op;
  while ((op = first_pending(t, &t->head.dirs[dir])) != NULL) {
    if (op->paused) return; /* a multishot recv waits for its chunks' release */
    int rc = attempt(t, op, false);
    if (rc == CP_PENDING) return;
    cp_op_done(op, rc); /* may free op, or re-arm a multishot recv */
  }
}

/* Sends queued behind the head are encrypted ahead, so their records go
 * out together: up to a shutdown (what follows it is refused), and while
 * less than ENCRYPT_AHEAD_MAX waits unsent (memory stays bounded). */
static void encrypt_ahead(tls_sock *t) {
  if (!t->handshaken) return;
  for (cp_op *op = t->head.dirs[CP_WR].head; op; op = op->next) {
    if (op->kind != CPORT_OP_SEND) return;
    if (t->tx_total - t->tx_sent >= ENCRYPT_AHEAD_MAX) return;
    if (op->state == CP_OP_PENDING && !op->select && !op->cancelled &&
        encrypt_send(t, op) != CPORT_OK)
      return;
  }
}

static void pump(cp_sock *s, tls_sock *t) {
  if (t->pumping) {
    t->again = true;
    return;
  }
  t->pumping = true;
  do {
    t->again = false;
    t->want_rx = t->settle_rx;
    advance(t, CP_RD);
    encrypt_ahead(t);
    advance(t, CP_WR);
    post_tx(s, t);
    if (t->want_rx) post_rx(s, t);
  } while (t->again && s->state == CP_SOCK_OPEN);
  t->pumping = false;
}

/* ---- the filter table ---------------------------------------------------- */

/* The first op of l that waits, settling or not. */
static cp_op *head_pending(const cp_list *l) {
  for (cp_op *op = l->head; op; op = op->next)
    if (op->state == CP_OP_PENDING) return op;
  return NULL;
}

static int tls_start(cp_sock *s, cp_op *op) {
  tls_sock *t = tls_of(s);
  mark_of(op)->end = 0;
  t->started = true;
  if (t->pumping) { /* a multishot recv armed again by the running loop, which takes it */
    t->again = true;
    return CP_PENDING;
  }
  /* The core ends op itself when it hears this call's answer, so the pump
   * passes op by (settling: op is the last of its list, nothing waits
   * behind it), and while raw ops end within the pump, op is tried again
   * once it is its list's first: its answer is final when no more bytes
   * came (or the session failed: the next try says so). */
  t->settling = op;
  int rc = CP_PENDING;
  do {
    t->want_rx = false;
    t->settle_rx = false;
    if (head_pending(&t->head.dirs[op->dir]) == op) {
      rc = attempt(t, op, true);
      t->settle_rx = rc == CP_PENDING && t->want_rx;
    }
    t->progress = false;
    pump(s, t);
  } while (rc == CP_PENDING && (t->progress || t->failed) && s->state == CP_SOCK_OPEN);
  t->settling = NULL;
  t->settle_rx = false;
  return rc;
}

/* A cancel ends the op at once (rule 16). A send already encrypted is in
 * the stream for good: its abort reports all of its bytes. A handshake
 * cancelled leaves no usable session. */
static void tls_cancel(cp_sock *s, cp_op *op) {
  tls_sock *t = tls_of(s);
  if (op->kind == CPORT_OP_SEND && mark_of(op)->end) op->done = op->len;
  if (op->kind == CPORT_OP_TLS_HANDSHAKE && !t->handshaken)
    tls_fail(t, CPORT_ETLS, "the handshake was cancelled");
  cp_op_done(op, CPORT_ECANCELED);
  pump(s, t);
}

static void tls_close(cp_sock *s) {
  tls_sock *t = tls_of(s);
  for (int dir = CP_RD; dir <= CP_WR; dir++) {
    cp_op *op;
    while ((op = first_pending(t, &t->head.dirs[dir])) != NULL) cp_op_done(op, CPORT_ECLOSED);
  }
}

static void tls_raw_done(cp_sock *s, cp_op *op) {
  tls_sock *t = tls_of(s);
  t->progress = true;
  if (op->select) { /* a wait cancelled before the upgrade (api.c, lingering) */
    if (op->deadline) cp_deadline_disarm(s, op);
    cp_op_free(s, op);
    return;
  }
  int status = op->status;
  size_t done = op->done;
  bool recv = op->kind == CPORT_OP_RECV;
  cp_op_free(s, op);
  if (recv) {
    t->rx_busy = false;
    t->settle_rx = false; /* the settling op is tried again with what came */
    if (status == CPORT_OK && done > 0 && t->eng->feed(t->sess, t->rx, done) != TLS_OK)
      tls_fail(t, CPORT_ENOMEM, "no memory for received records");
    else if (status == CPORT_OK && done == 0)
      t->rx_eof = true; /* what the engine holds is read first (fill_recv) */
    else if (status != CPORT_OK && !op_was_stopped(status))
      tls_fail(t, status, NULL);
  } else {
    t->tx_sent += done;
    t->fly.len = 0;
    if (t->fly.cap > BUF_KEEP_MAX) { /* after a large send: not kept for good */
      cp_free(t->fly.data);
      t->fly.data = NULL;
      t->fly.cap = 0;
    }
    if (status != CPORT_OK && !op_was_stopped(status)) tls_fail(t, status, NULL);
  }
  if (s->state == CP_SOCK_OPEN) pump(s, t);
}

static void tls_release(cp_sock *s) { tls_sock_free(tls_of(s)); }

const cp_filter tls_filter = {
    .start = tls_start,
    .cancel = tls_cancel,
    .close = tls_close,
    .raw_done = tls_raw_done,
    .release = tls_release,
};
