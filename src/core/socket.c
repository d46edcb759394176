/* The socket calls: argument and state checks, then the backend. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

static bool valid_family(int family) {
  return family == CPORT_AF_INET || family == CPORT_AF_INET6 || family == CPORT_AF_UNIX;
}

int cport_family_supported(int family) {
  return valid_family(family) && cp_os_family_supported(family);
}

int cport_open(cport_queue *owner, int family, int type, unsigned flags, cport_socket *out) {
  const unsigned known = CPORT_OPEN_SELECT | CPORT_OPEN_REGISTRY | CPORT_OPEN_NO_REGISTRY;
  if (!owner || !out) return CPORT_EINVAL;
  *out = CPORT_INVALID_SOCKET;
  if (!valid_family(family)) return CPORT_EAFNOSUPPORT;
  if (type != CPORT_SOCK_STREAM && type != CPORT_SOCK_DGRAM) return CPORT_EINVAL;
  if (family == CPORT_AF_UNIX && type != CPORT_SOCK_STREAM) return CPORT_ENOTSUP;
  if ((flags & ~known) || (flags & CPORT_OPEN_REGISTRY && flags & CPORT_OPEN_NO_REGISTRY))
    return CPORT_EINVAL;
  cp_sock *s;
  int rc = cp_table_alloc(owner->ctx, owner, &s);
  if (rc != CPORT_OK) return rc;
  s->family = (uint8_t)family;
  s->type = (uint8_t)type;
  s->select_mode = (flags & CPORT_OPEN_SELECT) != 0;
  s->defer = (uint8_t)owner->ctx->defer;
  rc = owner->ctx->be->sock_open(s);
  if (rc != CPORT_OK) {
    s->state = CP_SOCK_ZOMBIE; /* nothing pending: unlock frees it */
    cp_sock_unlock(s);
    return rc;
  }
  bool listed = flags & CPORT_OPEN_REGISTRY      ? true
                : flags & CPORT_OPEN_NO_REGISTRY ? false
                                                 : cp_registry_default();
  cp_registry_add(s, listed);
  s->state = CP_SOCK_OPEN;
  *out = s->id;
  cp_sock_unlock(s);
  return CPORT_OK;
}

int cp_sock_adopt(cp_sock *listener, uintptr_t os, cport_socket *out) {
  cp_sock *s;
  int rc = cp_table_alloc(listener->ctx, listener->owner, &s);
  if (rc != CPORT_OK) return rc;
  s->family = listener->family;
  s->type = listener->type;
  s->select_mode = listener->select_mode;
  s->zero_read = listener->zero_read;
  s->defer = listener->defer;
  s->rcvbuf = listener->rcvbuf;
  s->rcv_max = listener->rcv_max;
  s->recv_timeout = listener->recv_timeout;
  s->send_timeout = listener->send_timeout;
  s->bound = s->connected = 1;
  s->os = os;
  rc = listener->ctx->be->sock_adopt(s);
  if (rc != CPORT_OK) {
    s->state = CP_SOCK_ZOMBIE;
    cp_sock_unlock(s);
    return rc;
  }
  cp_registry_add(s, listener->registered);
  s->state = CP_SOCK_OPEN;
  *out = s->id;
  cp_sock_unlock(s);
  return CPORT_OK;
}

/* s->mu held; the caller's unlock frees the slot once nothing is pending
 * (and sends the close_async message first). */
static void close_locked(cp_sock *s) {
  s->state = CP_SOCK_ZOMBIE;
  cp_registry_remove(s);
  for (int dir = CP_RD; dir <= CP_WR; dir++) {
    for (cp_op *op = s->dirs[dir].head; op; op = op->next) op->closed = 1;
    if (s->filtered)
      for (cp_op *op = s->filtered->dirs[dir].head; op; op = op->next) op->closed = 1;
  }
  if (s->filtered) s->filtered->ops->close(s);
  s->ctx->be->sock_close(s);
}

int cport_close(cport_socket id) {
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  close_locked(s);
  cp_sock_unlock(s);
  return CPORT_OK;
}

/* The close message is allocated before anything is closed, so that the
 * one failure close_async has leaves the socket as it was. */
int cport_close_async(cport_socket id, cport_handle *handle) {
  if (!handle) return CPORT_EINVAL;
  *handle = 0;
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  cp_op *op = cp_op_alloc_queue(s->owner, CPORT_OP_CLOSE, 0, NULL);
  if (!op) {
    cp_sock_unlock(s);
    return CPORT_ENOMEM;
  }
  op->tag = CPORT_TAG_COMPLETION;
  op->handle = *handle = s->next_handle++;
  s->close_op = op;
  close_locked(s);
  cp_sock_unlock(s);
  return CPORT_OK;
}

/* ---- synchronous calls --------------------------------------------------- */

static int check_addr(const cp_sock *s, const cport_addr *addr) {
  if (!addr) return CPORT_EINVAL;
  if (!valid_family(addr->family)) return CPORT_EINVAL;
  return addr->family == s->family ? CPORT_OK : CPORT_EAFNOSUPPORT;
}

int cport_bind(cport_socket id, const cport_addr *addr) {
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  int rc = check_addr(s, addr);
  if (rc == CPORT_OK && (s->bound || s->connecting || s->connected)) rc = CPORT_EINVAL;
  if (rc == CPORT_OK) rc = s->ctx->be->bind(s, addr);
  if (rc == CPORT_OK) s->bound = 1;
  cp_sock_unlock(s);
  return rc;
}

int cport_listen(cport_socket id, int backlog) {
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  int rc = CPORT_OK;
  if (s->type != CPORT_SOCK_STREAM)
    rc = CPORT_EOPNOTSUPP;
  else if (s->connected || s->connecting)
    rc = CPORT_EINVAL;
  if (rc == CPORT_OK) rc = s->ctx->be->listen(s, backlog);
  if (rc == CPORT_OK) s->listening = s->bound = 1;
  cp_sock_unlock(s);
  return rc;
}

int cport_shutdown(cport_socket id, int how) {
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  int rc = CPORT_OK;
  if (how < CPORT_SHUT_RD || how > CPORT_SHUT_RDWR)
    rc = CPORT_EINVAL;
  else if (!s->connected)
    rc = CPORT_ENOTCONN;
  if (rc == CPORT_OK) rc = s->ctx->be->shutdown(s, how);
  if (rc == CPORT_OK) {
    if (how & CPORT_SHUT_RD) s->shut_rd = 1;
    if (how & CPORT_SHUT_WR) s->shut_wr = 1;
  }
  cp_sock_unlock(s);
  return rc;
}

static int name_call(cport_socket id, cport_addr *addr, bool peer) {
  if (!addr) return CPORT_EINVAL;
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  int rc;
  if (peer)
    rc = s->connected ? s->ctx->be->peername(s, addr) : CPORT_ENOTCONN;
  else
    rc = s->ctx->be->sockname(s, addr);
  cp_sock_unlock(s);
  return rc;
}

int cport_sockname(cport_socket id, cport_addr *addr) { return name_call(id, addr, false); }
int cport_peername(cport_socket id, cport_addr *addr) { return name_call(id, addr, true); }

/* Ops whose handles the user still holds: a cancelled select op may wait
 * for the OS to let go of it, but for the user it has ended. */
static int live_ops(const cp_list *l) {
  int n = 0;
  for (const cp_op *op = l->head; op; op = op->next)
    n += !(op->select && op->cancelled && !op->timed_out);
  return n;
}

int cport_info_get(cport_socket id, cport_info *info) {
  if (!info) return CPORT_EINVAL;
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  *info = (cport_info){
      .family = s->family,
      .type = s->type,
      .protocol = cp_protocol(s),
      .select_mode = s->select_mode,
      .owner = s->owner,
      .listening = s->listening,
      .connected = s->connected,
      .bound = s->bound,
      .pending_reads = live_ops(&cp_user_dirs(s)[CP_RD]),
      .pending_writes = live_ops(&cp_user_dirs(s)[CP_WR]),
      .bytes_in = s->bytes_in,
      .bytes_out = s->bytes_out,
      .reads = s->reads,
      .writes = s->writes,
  };
  cp_sock_unlock(s);
  return CPORT_OK;
}

int cport_cancel(cport_socket id, cport_handle handle) {
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  cp_op *found = cp_op_find(s, handle);
  if (found && found->cancelled) found = NULL; /* its end is on the way */
  if (found) {
    found->cancelled = 1;
    cp_stop(s, found);
  }
  cp_sock_unlock(s);
  return found ? CPORT_OK : CPORT_ENOTFOUND;
}

int cport_deadline(cport_socket id, cport_handle handle, int ms) {
  if (ms < CPORT_INFINITY) return CPORT_EINVAL;
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  cp_op *op = cp_op_find(s, handle);
  int rc = CPORT_ENOTFOUND;
  if (op && op->cancelled && op->select && !op->timed_out) {
    rc = CPORT_ENOTFOUND; /* cancelled with no message: it has ended (io_uring keeps the record
                             until the kernel lets go of it) */
  } else if (op && op->cancelled) {
    rc = CPORT_OK; /* already stopping: its message comes, with no deadline to change it */
  } else if (op && ms == CPORT_INFINITY) {
    if (op->deadline) cp_deadline_disarm(s, op);
    rc = CPORT_OK;
  } else if (op) {
    rc = cp_deadline_arm(s, op, ms);
  }
  cp_sock_unlock(s);
  return rc;
}
