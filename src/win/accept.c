/* The IOCP backend's AcceptEx pool (completion mode). A listener keeps
 * AcceptEx posted ahead: cp_ctx_accepts_per_listener(), or the listen
 * backlog if smaller, counting connections accepted but not yet claimed (so
 * a small backlog still fills up as the user asked). Those in flight are on
 * the posted list, those done on the ready list. An accept call takes a
 * connection that is already there (done now) or waits for the next one; a
 * reset before accept is retried, never reported; running out of sockets is
 * reported once per accept call, and the pool then waits for the next call
 * instead of retrying in a loop. */
#include "iocp_int.h"

#include <string.h>

static void ready_push(iocp_sock *bs, cp_io *io) {
  io->next = NULL;
  if (bs->ready_tail)
    bs->ready_tail->next = io;
  else
    bs->ready_head = io;
  bs->ready_tail = io;
  bs->accepts_ready++;
}

static cp_io *ready_pop(iocp_sock *bs) {
  cp_io *io = bs->ready_head;
  if (io) {
    bs->ready_head = io->next;
    if (!bs->ready_head) bs->ready_tail = NULL;
    io->next = NULL;
    bs->accepts_ready--;
  }
  return io;
}

/* The AcceptEx in flight, so that closing the listener can let them go. */
static void posted_add(iocp_sock *bs, cp_io *io) {
  io->next = bs->posted;
  bs->posted = io;
  bs->accepts_posted++;
}

static void posted_remove(iocp_sock *bs, cp_io *io) {
  for (cp_io **p = &bs->posted; *p; p = &(*p)->next)
    if (*p == io) {
      *p = io->next;
      io->next = NULL;
      bs->accepts_posted--;
      return;
    }
}

/* SO_UPDATE_ACCEPT_CONTEXT, so that shutdown, the socket options and the
 * rest work on the accepted socket (its sockname and peername come from the
 * AcceptEx buffer, but other Winsock calls still need the context). */
static int update_accept(cp_sock *listener, SOCKET a) {
  SOCKET ls = SOCK(listener);
  if (setsockopt(a, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (const char *)&ls, sizeof ls) != 0)
    return cp_win_last();
  return CPORT_OK;
}

/* Posts one AcceptEx on io. CPORT_OK: on the posted list (its packet is on
 * the way), or on the ready list (accepted at once, and with the skip mode
 * no packet comes). An error leaves io and io->accepted to the caller. */
static int accept_post(cp_sock *s, LPFN_ACCEPTEX acceptex, cp_io *io) {
  iocp_sock *bs = BS(s);
  DWORD bytes = 0;
  if (acceptex(SOCK(s), io->accepted, io->u.addrs, 0, ACCEPT_ADDR_LEN, ACCEPT_ADDR_LEN, &bytes,
               &io->ov)) {
    if (!bs->skip) { /* its packet is on the way: take it from there */
      cp_io_to_os(io);
      posted_add(bs, io);
      return CPORT_OK;
    }
    if (update_accept(s, io->accepted) == CPORT_OK) {
      ready_push(bs, io);
      return CPORT_OK;
    }
    return CPORT_ECONNABORTED; /* that connection's problem: try another */
  }
  int err = WSAGetLastError();
  if (err == ERROR_IO_PENDING) {
    cp_io_to_os(io);
    posted_add(bs, io);
    return CPORT_OK;
  }
  return cp_win_err((uint32_t)err);
}

/* Posts AcceptEx until the listener holds its quota of connections, in
 * flight or ready (so the library never takes more unclaimed connections
 * than the backlog asked for). Returns the first error (or CPORT_OK). A
 * connection accepted at once goes to the ready list. */
static int accept_top_up(cp_sock *s) {
  iocp_sock *bs = BS(s);
  if (bs->accepts_posted + bs->accepts_ready >= bs->accept_target) return CPORT_OK;
  LPFN_ACCEPTEX acceptex = cp_win_acceptex(SOCK(s), s->family);
  if (!acceptex) return cp_win_last();
  int tries = 2 * bs->accept_target; /* bounded, even if every try is reset */
  while (bs->accepts_posted + bs->accepts_ready < bs->accept_target && tries-- > 0) {
    SOCKET a;
    int rc = cp_win_socket(s->family, s->type, &a);
    if (rc != CPORT_OK) return rc;
    cp_io *io = cp_io_new(s, NULL, IO_ACCEPT);
    if (!io) {
      closesocket(a);
      return CPORT_ENOMEM;
    }
    io->accepted = a;
    rc = accept_post(s, acceptex, io);
    if (rc == CPORT_OK) continue;
    closesocket(a);
    cp_io_free(io);
    if (!retry_accept(rc)) return rc;
  }
  return CPORT_OK;
}

/* The first accept op still waiting for a connection, before stop. */
static cp_op *waiting_accept(cp_sock *s, cp_op *stop) {
  for (cp_op *op = s->dirs[CP_RD].head; op && op != stop; op = op->next)
    if (op->state == CP_OP_PENDING && op->kind == CPORT_OP_ACCEPT) return op;
  return NULL;
}

/* Copies one address GetAcceptExSockaddrs pointed at; false if it is not
 * a whole IPv4 or IPv6 address (an AF_UNIX one does not fit names[]). */
static bool copy_name(cp_win_sockaddr *dst, const struct sockaddr *sa, INT len) {
  if (!sa || len <= 0 || (size_t)len > sizeof *dst) return false;
  if (!(sa->sa_family == AF_INET && (size_t)len >= sizeof(struct sockaddr_in)) &&
      !(sa->sa_family == AF_INET6 && (size_t)len >= sizeof(struct sockaddr_in6)))
    return false;
  memset(dst, 0, sizeof *dst);
  memcpy(dst, sa, (size_t)len);
  return true;
}

/* The local ([0]) and remote ([1]) addresses of a completed AcceptEx,
 * parsed from its buffer (issue 3). false: the caller lets sockname and
 * peername ask the OS instead. */
static bool accept_names(cp_sock *listener, cp_io *io, cp_win_sockaddr names[2]) {
  LPFN_GETACCEPTEXSOCKADDRS fn = cp_win_getacceptexsockaddrs(SOCK(listener), listener->family);
  if (!fn) return false;
  struct sockaddr *local = NULL, *remote = NULL;
  INT local_len = 0, remote_len = 0;
  fn(io->u.addrs, 0, ACCEPT_ADDR_LEN, ACCEPT_ADDR_LEN, &local, &local_len, &remote, &remote_len);
  return copy_name(&names[0], local, local_len) && copy_name(&names[1], remote, remote_len);
}

/* Hands a ready connection to an accept op. */
static int accept_take(cp_sock *s, cp_op *op) {
  cp_io *io = ready_pop(BS(s));
  cp_win_sockaddr names[2];
  bool named = accept_names(s, io, names);
  int rc = cp_iocp_adopt(s, io->accepted, named ? names : NULL, &op->accepted);
  if (rc != CPORT_OK) closesocket(io->accepted);
  cp_io_free(io);
  return rc;
}

/* Gives ready connections to waiting accept ops (those before stop). */
static void accept_match(cp_sock *s, cp_op *stop) {
  cp_op *op;
  while (BS(s)->ready_head && (op = waiting_accept(s, stop)) != NULL)
    cp_op_done(op, accept_take(s, op));
}

int cp_iocp_cm_accept(cp_sock *s, cp_op *op) {
  iocp_sock *bs = BS(s);
  bs->accept_failed = 0;
  accept_match(s, op); /* earlier accepts first */
  if (bs->ready_head) {
    int rc = accept_take(s, op);
    (void)accept_top_up(s); /* refill; an error shows on a later call */
    return rc;
  }
  int rc = accept_top_up(s);
  accept_match(s, op);
  if (bs->ready_head) return accept_take(s, op);
  if (bs->accepts_posted == 0) return rc != CPORT_OK ? rc : CPORT_EINVAL;
  return CP_PENDING; /* a coming AcceptEx completion is ours */
}

/* An error that is not one connection's fault: tell one waiting accept, and
 * stop refilling until the next accept call (no spinning). */
static void accept_fail(cp_sock *s, int rc) {
  cp_op *op = waiting_accept(s, NULL);
  if (op) cp_op_done(op, rc);
  BS(s)->accept_failed = 1;
}

void cp_iocp_on_accept(cp_sock *s, cp_io *io) {
  iocp_sock *bs = BS(s);
  uint32_t status = (uint32_t)io->ov.Internal;
  posted_remove(bs, io);
  if (bs->closed) { /* not expected: close detaches the pool */
    closesocket(io->accepted);
    cp_io_free(io);
    return;
  }
  int rc = cp_win_nterr(status);
  /* A connection that cannot take the listener's context (reset before we
   * got to it) is that connection's problem: retried, never reported. */
  if (rc == CPORT_OK && update_accept(s, io->accepted) != CPORT_OK) rc = CPORT_ECONNABORTED;
  if (rc == CPORT_OK) {
    ready_push(bs, io);
  } else {
    closesocket(io->accepted);
    cp_io_free(io);
    if (!retry_accept(rc)) accept_fail(s, rc);
  }
  accept_match(s, NULL);
  if (!bs->accept_failed) {
    rc = accept_top_up(s);
    /* Out of sockets (EMFILE/ENOBUFS): once per accept call. */
    if (rc != CPORT_OK && bs->accepts_posted == 0 && !bs->ready_head) accept_fail(s, rc);
    accept_match(s, NULL);
  }
}

int cp_iocp_listen(cp_sock *s, int backlog) {
  int rc = cp_win_listen_os(s, backlog);
  if (rc != CPORT_OK || s->select_mode) return rc;
  /* The AcceptEx pool: accepts_per_listener, but never more connections
   * held than the backlog asked for (a listener with backlog 1 must fill
   * up as it would without the pool). Posted now, so connections are taken
   * as they come; a failure here (out of sockets) is reported by the next
   * accept call. Listening again only changes the quota. */
  iocp_sock *bs = BS(s);
  int n = iocp_state(s->ctx)->accepts_per_listener;
  bs->accept_target = backlog > 0 && backlog < n ? backlog : n;
  (void)accept_top_up(s);
  return CPORT_OK;
}

void cp_iocp_accept_close(cp_sock *s) {
  iocp_sock *bs = BS(s);
  /* Connections accepted but never claimed; the pool's AcceptEx (their
   * packets, cancelled by the socket's close, close their sockets). */
  cp_io *io;
  while ((io = ready_pop(bs)) != NULL) {
    closesocket(io->accepted);
    cp_io_free(io);
  }
  while ((io = bs->posted) != NULL) {
    bs->posted = io->next;
    io->next = NULL;
    cp_io_detach(io);
  }
  bs->accepts_posted = 0;
}
