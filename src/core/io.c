/* accept, connect, send, recv: one submit path gives the three outcomes of
 * a nowait call; blocking calls are the same path with a private queue. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

typedef struct request {
  uint8_t kind;
  bool alloc; /* cport_recv_alloc: the library allocates buf */
  bool multi; /* cport_accept_multi, cport_recv_multi (multi.c) */
  unsigned flags;
  char *buf;
  size_t len;
  const cport_addr *addr;
  const cp_attach *with; /* cp_io_call: a layer's attach */
} request;

typedef struct result {
  void *buf; /* cport_recv_alloc: the buffer handed to the user */
  size_t bytes;
  cport_socket accepted;
  cport_addr addr;
  unsigned flags;
} result;

/* cport_recv_alloc's buffer: otp.rcvbuf bytes, the op's to hand over. */
static bool alloc_buffer(cp_sock *s, cp_op *op) {
  op->len = cp_rcvbuf(s);
  op->buf = cp_ubuf_alloc(op->len, NULL);
  op->owns_buf = op->buf != NULL;
  return op->buf != NULL;
}

static int dir_of(uint8_t kind) {
  return kind == CPORT_OP_ACCEPT || kind == CPORT_OP_RECV || kind == CPORT_OP_RECVFROM ||
                 kind == CPORT_OP_RECVMSG || kind == CPORT_OP_TLS_HANDSHAKE
             ? CP_RD
             : CP_WR;
}

static bool tls_kind(uint8_t kind) {
  return kind == CPORT_OP_TLS_HANDSHAKE || kind == CPORT_OP_TLS_SHUTDOWN;
}

static bool select_pending(cp_sock *s, int dir) {
  for (const cp_op *op = cp_user_dirs(s)[dir].head; op; op = op->next)
    if (op->select && op->state == CP_OP_PENDING && !op->cancelled) return true;
  return false;
}

/* A multishot op has its direction to itself: its messages are the
 * direction's only ones, so they need no ordering against others. A
 * cancelled select op makes no message (io_uring keeps it until the kernel
 * lets go), so it is no conflict. Other calls pay one flag test. */
static bool multi_conflict(cp_sock *s, int dir, bool multi) {
  if (s->multi[dir] || !multi) return s->multi[dir];
  for (const cp_op *op = cp_user_dirs(s)[dir].head; op; op = op->next)
    if (!(op->select && op->cancelled) && !tls_kind(op->kind)) return true; /* a handshake first */
  return false;
}

static int check_target(const cp_sock *s, const cport_addr *addr) {
  if (!addr) return CPORT_EINVAL;
  if (!(addr->family == CPORT_AF_INET || addr->family == CPORT_AF_INET6 ||
        addr->family == CPORT_AF_UNIX))
    return CPORT_EINVAL;
  return addr->family == s->family ? CPORT_OK : CPORT_EAFNOSUPPORT;
}

static int check_connect(const cp_sock *s, const request *rq, bool select) {
  if (s->listening) return CPORT_EINVAL;
  if (s->connected) return CPORT_EISCONN;
  if (s->connecting) return select ? CPORT_OK : CPORT_EALREADY;
  return check_target(s, rq->addr);
}

static int check_sendto(const cp_sock *s, const request *rq) {
  if (s->type == CPORT_SOCK_STREAM) return s->connected ? CPORT_EISCONN : CPORT_ENOTCONN;
  return check_target(s, rq->addr);
}

/* Whether the call makes sense in the socket's state. A TLS socket's
 * filter carries sends, recvs and its own ops only. */
static int check_state(const cp_sock *s, const request *rq, bool select) {
  if (s->filtered && rq->kind != CPORT_OP_SEND && rq->kind != CPORT_OP_RECV && !tls_kind(rq->kind))
    return CPORT_EOPNOTSUPP;
  switch (rq->kind) {
  case CPORT_OP_ACCEPT: return s->listening ? CPORT_OK : CPORT_EINVAL;
  case CPORT_OP_CONNECT: return check_connect(s, rq, select);
  case CPORT_OP_SEND:
    if (!s->connected) return CPORT_ENOTCONN;
    return s->shut_wr ? CPORT_EPIPE : CPORT_OK;
  case CPORT_OP_SENDTO: return check_sendto(s, rq);
  case CPORT_OP_SENDMSG:
    if (rq->addr) return check_sendto(s, rq);
    if (!s->connected) return CPORT_ENOTCONN;
    return s->shut_wr ? CPORT_EPIPE : CPORT_OK;
  case CPORT_OP_RECVMSG:
    if (s->type == CPORT_SOCK_DGRAM)
      return rq->flags & CPORT_WAITALL  ? CPORT_EINVAL
             : s->bound || s->connected ? CPORT_OK
                                        : CPORT_EINVAL;
    return s->connected ? CPORT_OK : CPORT_ENOTCONN;
  case CPORT_OP_RECVFROM:
    if (s->type == CPORT_SOCK_STREAM) return CPORT_EOPNOTSUPP;
    return s->bound || s->connected ? CPORT_OK : CPORT_EINVAL;
  default:
    if (s->type == CPORT_SOCK_DGRAM && rq->multi) return CPORT_EOPNOTSUPP;
    if (s->type == CPORT_SOCK_DGRAM && rq->flags & CPORT_WAITALL) return CPORT_EINVAL;
    return s->connected ? CPORT_OK : CPORT_ENOTCONN;
  }
}

static void fill_result(const cp_op *op, result *res) {
  res->bytes = op->done;
  res->accepted = op->accepted;
  res->flags = op->msg_flags;
  if (op->kind == CPORT_OP_RECVFROM) res->addr = op->addr;
}

/* The op a request describes, built on the caller's stack: a call that
 * ends at once never needs a record (see cp_backend.try_now). */
static int prepare(cp_sock *s, const request *rq, cport_queue *dest, bool select, cp_op *op) {
  memset(op, 0, offsetof(cp_op, be));
  op->sock = s;
  op->kind = rq->kind;
  op->dir = (uint8_t)dir_of(rq->kind);
  op->select = select;
  op->multi = rq->multi;
  op->flags = rq->flags;
  op->buf = rq->buf;
  op->len = rq->len;
  op->dest = dest;
  if (rq->addr)
    op->addr = *rq->addr; /* check_state allows one only where the op keeps it */
  else if (rq->kind == CPORT_OP_RECVFROM)
    op->addr.family = 0; /* no sender yet */
  return rq->alloc && !alloc_buffer(s, op) ? CPORT_ENOMEM : CPORT_OK;
}

/* A call that ended now, rc its status: its result and its effects. Bytes
 * it moved are reported even with an error, and a cport_recv_alloc buffer
 * that holds any goes to the user. */
static void finish_now(cp_sock *s, cp_op *op, int rc, result *res) {
  op->status = rc;
  op->state = CP_OP_DONE;
  fill_result(op, res);
  cp_op_effects(s, op); /* in select mode too: a call that finished now did its work */
  if (op->owns_buf && op->done > 0)
    res->buf = op->buf;
  else if (op->owns_buf)
    cport_free(op->buf);
}

/* otp.recv_timeout or otp.send_timeout, for the sends and recvs they
 * cover (accept and connect take cport_deadline only). */
static int default_deadline(const cp_sock *s, const cp_op *op) {
  if (op->kind == CPORT_OP_ACCEPT || op->kind == CPORT_OP_CONNECT || tls_kind(op->kind)) return 0;
  return op->dir == CP_RD ? s->recv_timeout : s->send_timeout;
}

/* otp.defer: a completion-mode nowait call ends with a message, whatever
 * its outcome (a blocking call's private queue needs no such help). */
static bool deferred(const cp_sock *s, const cp_op *op) {
  return s->defer && !op->select && !op->dest;
}

/* Gives the op a record (and its default deadline, armed before the OS
 * sees the op so that failing to arm it leaves nothing to undo), queues it
 * behind its direction's others and starts it. Returns as submit does. */
static int start_record(cp_sock *s, cp_op *proto, result *res, cport_handle *handle) {
  cp_op *op = cp_op_record(s, proto);
  int ms = default_deadline(s, proto);
  if (op && ms > 0 && cp_deadline_arm(s, op, ms) != CPORT_OK) {
    cp_op_free(s, op);
    op = NULL;
  }
  if (!op) {
    finish_now(s, proto, CPORT_ENOMEM, res); /* a partial try's bytes are reported */
    return CPORT_ENOMEM;
  }
  int dir = op->dir;
  cp_list *list = &cp_user_dirs(s)[dir];
  bool first = list->head == NULL;
  cp_list_append(list, op);
  int rc = cp_start(s, op);
  if ((rc == CPORT_OK && !first) || (rc != CP_PENDING && deferred(s, op))) {
    /* Finished, but ops posted before it have not (it waits its turn), or
     * the socket wants every end as a message. */
    *handle = op->handle;
    cp_op_done(op, rc);
    return CPORT_COMPLETION;
  }
  if (rc == CPORT_OK || rc < 0) {
    cp_list_remove(list, op);
    if (op->deadline) cp_deadline_disarm(s, op);
    finish_now(s, op, rc, res);
    cp_op_free(s, op);
    cp_deliver_ready(s, dir); /* ops behind it may have finished meanwhile */
    return rc;
  }
  *handle = op->handle;
  /* A completion op's message carries every byte it moves, those the
   * first attempt moved included: reporting them here too would count
   * them twice. A select op ends here: what it moved is the caller's. */
  res->bytes = op->select ? op->done : 0;
  if (op->select && op->dir == CP_RD) s->bytes_in += op->done;  /* a partial waitall recv */
  if (op->select && op->dir != CP_RD) s->bytes_out += op->done; /* a partial send went now */
  if (op->select && op->owns_buf && op->done > 0) {
    res->buf = op->buf; /* cport_recv_alloc: the bytes it read go to the user with it */
    op->buf = NULL;
    op->owns_buf = 0;
  } else if (op->select && op->owns_buf) { /* a readiness wait needs no buffer */
    cport_free(op->buf);
    op->buf = NULL;
    op->owns_buf = 0;
  }
  return op->select ? CPORT_SELECT : CPORT_COMPLETION;
}

/* A multishot op: every result, even the first, is a message. */
static int start_multi(cp_sock *s, const cp_op *proto, cport_handle *handle) {
  cp_op *op = cp_op_record(s, proto);
  if (!op) return CPORT_ENOMEM;
  int rc = cp_multi_begin(s, op);
  if (rc != CPORT_OK) {
    cp_op_free(s, op);
    return rc;
  }
  cp_list_append(&cp_user_dirs(s)[op->dir], op);
  s->multi[op->dir] = 1; /* until cp_multi_end */
  *handle = op->handle;
  cp_multi_arm(s, op);
  return CPORT_COMPLETION;
}

/* A connect is left out: it nearly always waits, and a socket must not be
 * left connecting with no op should its record fail to allocate. */
static bool can_try_now(const cp_sock *s, const cp_op *op) {
  return s->ctx->be->try_now && !s->filtered && !s->dirs[op->dir].head &&
         op->kind != CPORT_OP_CONNECT && !deferred(s, op);
}

static int try_first(cp_sock *s, cp_op *proto, result *res, cport_handle *handle) {
  int rc = s->ctx->be->try_now(s, proto);
  if (rc != CP_PENDING) {
    finish_now(s, proto, rc, res);
    return rc;
  }
  proto->tried = 1;
  return start_record(s, proto, res, handle);
}

/* Starts an op. Returns CPORT_OK (res filled), CPORT_SELECT or
 * CPORT_COMPLETION (*handle set; res->bytes holds a select-mode partial
 * count), or an error. dest: the queue for its message (NULL: owner). */
static int submit(cport_socket id, const request *rq, cport_queue *dest, result *res,
                  cport_handle *handle) {
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  /* A multishot op carries results, and so do TLS's own. */
  bool select = s->select_mode && !dest && !rq->multi && !tls_kind(rq->kind);
  int dir = dir_of(rq->kind);
  int rc = rq->with ? rq->with->attach(s, rq->with->arg) : CPORT_OK;
  bool attached = rq->with && rc == CPORT_OK;
  if (rc == CPORT_OK) rc = check_state(s, rq, select);
  if (rc == CPORT_OK && select && select_pending(s, dir)) rc = CPORT_EALREADY;
  if (rc == CPORT_OK && multi_conflict(s, dir, rq->multi)) rc = CPORT_EALREADY;
  cp_op proto;
  if (rc == CPORT_OK) rc = prepare(s, rq, dest, select, &proto);
  if (rc == CPORT_OK && rq->multi)
    rc = start_multi(s, &proto, handle);
  else if (rc == CPORT_OK)
    rc = can_try_now(s, &proto) ? try_first(s, &proto, res, handle)
                                : start_record(s, &proto, res, handle);
  if (attached && rc < 0) rq->with->undo(s, rq->with->arg);
  cp_sock_unlock(s);
  return rc;
}

static cport_ctx *ctx_of(cport_socket id) {
  cp_sock *s = cp_sock_lock(id);
  if (!s) return NULL;
  cport_ctx *ctx = s->ctx;
  cp_sock_unlock(s);
  return ctx;
}

/* Waits for the one message of a pending op; a timeout cancels it (rule 3)
 * and still waits for that message, so data that arrived is returned. */
static int finish_blocking(cport_socket id, cport_queue *q, cport_handle h, int timeout,
                           result *res) {
  cport_msg m;
  bool timed_out = false;
  if (cport_wait(q, &m, 1, timeout) == 0) {
    timed_out = true;
    cport_cancel(id, h);
    while (cport_wait(q, &m, 1, CPORT_INFINITY) == 0) {
    }
  }
  res->bytes = m.bytes;
  res->accepted = m.accepted;
  if (m.flags & CPORT_MSG_ALLOCATED) res->buf = m.buf;
  res->flags = m.flags;
  if (m.op == CPORT_OP_RECVFROM) res->addr = m.addr;
  if (m.tag == CPORT_TAG_ABORT && m.status == CPORT_ECANCELED && timed_out) return CPORT_ETIMEDOUT;
  return m.status;
}

static int run(cport_socket id, const request *rq, int timeout, result *res, cport_handle *handle) {
  res->buf = NULL;
  res->bytes = 0;
  res->accepted = CPORT_INVALID_SOCKET;
  res->flags = 0;
  res->addr.family = 0; /* the rest of addr is read only for recvfrom */
  if (timeout < CPORT_NOWAIT) return CPORT_EINVAL;
  if (timeout == CPORT_NOWAIT) {
    if (!handle) return CPORT_EINVAL;
    *handle = 0;
    return submit(id, rq, NULL, res, handle);
  }
  cport_ctx *ctx = ctx_of(id);
  if (!ctx) return CPORT_EBADF;
  cport_queue *q = cp_queue_borrow(ctx);
  if (!q) return CPORT_ENOMEM;
  cport_handle h = 0;
  int rc = submit(id, rq, q, res, &h);
  if (rc == CPORT_COMPLETION) rc = finish_blocking(id, q, h, timeout, res);
  cp_queue_give_back(q);
  return rc;
}

static bool bad_length(const void *buf, size_t len) {
  return !buf || len == 0 || len > CP_MAX_IO_LEN;
}

int cport_accept(cport_socket listener, int timeout, cport_socket *accepted, cport_handle *handle) {
  if (!accepted) return CPORT_EINVAL;
  *accepted = CPORT_INVALID_SOCKET;
  request rq = {.kind = CPORT_OP_ACCEPT};
  result res;
  int rc = run(listener, &rq, timeout, &res, handle);
  if (rc == CPORT_OK) *accepted = res.accepted;
  return rc;
}

int cport_connect(cport_socket s, const cport_addr *addr, int timeout, cport_handle *handle) {
  request rq = {.kind = CPORT_OP_CONNECT, .addr = addr};
  result res;
  return run(s, &rq, timeout, &res, handle);
}

int cport_send(cport_socket s, const void *buf, size_t len, unsigned flags, int timeout,
               size_t *sent, cport_handle *handle) {
  if (sent) *sent = 0;
  if (bad_length(buf, len) || !sent || flags != 0) return CPORT_EINVAL;
  request rq = {.kind = CPORT_OP_SEND, .buf = (char *)(uintptr_t)buf, .len = len};
  result res;
  int rc = run(s, &rq, timeout, &res, handle);
  *sent = res.bytes;
  return rc;
}

int cport_recv(cport_socket s, void *buf, size_t len, unsigned flags, int timeout, size_t *received,
               cport_handle *handle) {
  if (received) *received = 0;
  if (bad_length(buf, len) || !received || (flags & ~CPORT_WAITALL)) return CPORT_EINVAL;
  request rq = {.kind = CPORT_OP_RECV, .flags = flags, .buf = buf, .len = len};
  result res;
  int rc = run(s, &rq, timeout, &res, handle);
  *received = res.bytes;
  return rc;
}

int cport_sendto(cport_socket s, const void *buf, size_t len, unsigned flags, const cport_addr *to,
                 int timeout, size_t *sent, cport_handle *handle) {
  if (sent) *sent = 0;
  /* An empty datagram is a datagram: len 0 is allowed here (buf may be NULL). */
  if ((len > 0 && bad_length(buf, len)) || !sent || flags != 0) return CPORT_EINVAL;
  request rq = {.kind = CPORT_OP_SENDTO, .buf = (char *)(uintptr_t)buf, .len = len, .addr = to};
  result res;
  int rc = run(s, &rq, timeout, &res, handle);
  *sent = res.bytes;
  return rc;
}

int cport_recvfrom(cport_socket s, void *buf, size_t len, unsigned flags, int timeout,
                   cport_recv_info *info, cport_handle *handle) {
  if (info) memset(info, 0, sizeof *info);
  if (bad_length(buf, len) || !info || flags != 0) return CPORT_EINVAL;
  request rq = {.kind = CPORT_OP_RECVFROM, .buf = buf, .len = len};
  result res;
  int rc = run(s, &rq, timeout, &res, handle);
  info->bytes = res.bytes;
  info->from = res.addr;
  info->flags = res.flags;
  return rc;
}

/* The total length of a header's iovecs, or 0 if the header is malformed. */
static size_t msghdr_length(const cport_msghdr *m) {
  if (!m->iov || m->iovcnt < 1 || m->iovcnt > CPORT_IOV_MAX) return 0;
  size_t total = 0;
  for (int i = 0; i < m->iovcnt; i++) {
    if (!m->iov[i].base && m->iov[i].len) return 0;
    if (m->iov[i].len > CP_MAX_IO_LEN - total) return 0;
    total += m->iov[i].len;
  }
  return total;
}

int cport_sendmsg(cport_socket s, const cport_msghdr *m, unsigned flags, int timeout, size_t *sent,
                  cport_handle *handle) {
  if (sent) *sent = 0;
  size_t len = m ? msghdr_length(m) : 0;
  if (!m || !sent || flags != 0 || len == 0) return CPORT_EINVAL;
  request rq = {.kind = CPORT_OP_SENDMSG,
                .buf = (char *)(uintptr_t)m,
                .len = len,
                .addr = m->addr.family ? &m->addr : NULL};
  result res;
  int rc = run(s, &rq, timeout, &res, handle);
  *sent = res.bytes;
  return rc;
}

int cport_recvmsg(cport_socket s, cport_msghdr *m, unsigned flags, int timeout, size_t *received,
                  cport_handle *handle) {
  if (received) *received = 0;
  size_t len = m ? msghdr_length(m) : 0;
  if (!m || !received || (flags & ~CPORT_WAITALL) || len == 0) return CPORT_EINVAL;
  request rq = {.kind = CPORT_OP_RECVMSG, .flags = flags, .buf = (char *)m, .len = len};
  result res;
  int rc = run(s, &rq, timeout, &res, handle);
  *received = res.bytes;
  return rc;
}

int cport_recv_alloc(cport_socket s, unsigned flags, int timeout, void **buf, size_t *received,
                     cport_handle *handle) {
  if (buf) *buf = NULL;
  if (received) *received = 0;
  if (!buf || !received || (flags & ~CPORT_WAITALL)) return CPORT_EINVAL;
  request rq = {.kind = CPORT_OP_RECV, .flags = flags, .alloc = true};
  result res;
  int rc = run(s, &rq, timeout, &res, handle);
  *received = res.bytes;
  if (res.bytes == 0)
    cport_free(res.buf); /* no bytes (EOF, timeout, error): no buffer */
  else
    *buf = res.buf;
  return rc;
}

int cp_io_call(cport_socket id, uint8_t kind, int timeout, cport_handle *handle,
               const cp_attach *with) {
  request rq = {.kind = kind, .with = with};
  result res;
  return run(id, &rq, timeout, &res, handle);
}

static int submit_multi(cport_socket id, uint8_t kind, cport_handle *handle) {
  if (!handle) return CPORT_EINVAL;
  *handle = 0;
  request rq = {.kind = kind, .multi = true};
  result res;
  return submit(id, &rq, NULL, &res, handle);
}

int cport_accept_multi(cport_socket listener, cport_handle *handle) {
  return submit_multi(listener, CPORT_OP_ACCEPT, handle);
}

int cport_recv_multi(cport_socket s, cport_handle *handle) {
  return submit_multi(s, CPORT_OP_RECV, handle);
}
