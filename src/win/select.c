/* The IOCP backend's select mode (CPORT_OPEN_SELECT): the socket is
 * non-blocking; an op tries the call once and, when it would block, waits
 * for readiness through an IOCTL_AFD_POLL (afd.c) whose packet comes to the
 * context's port. A select op then ends with a select message; a completion
 * op on such a socket (a blocking call) retries the call, as the epoll
 * backend does. */
#include "iocp_int.h"

#include <string.h>

static ULONG poll_events(int dir) {
  ULONG always = AFD_POLL_ABORT | AFD_POLL_CONNECT_FAIL | AFD_POLL_LOCAL_CLOSE;
  return dir == CP_RD ? always | AFD_POLL_RECEIVE | AFD_POLL_ACCEPT | AFD_POLL_DISCONNECT
                      : always | AFD_POLL_SEND;
}

/* Makes sure an AFD poll for dir is in flight, on io if given (it is
 * then used or freed). */
static int sel_arm(cp_sock *s, int dir, cp_io *io) {
  iocp_sock *bs = BS(s);
  if (bs->polls[dir]) {
    if (io) cp_io_free(io);
    return CPORT_OK;
  }
  iocp_ctx *st = iocp_state(s->ctx);
  if (!io) io = cp_io_new(s, NULL, IO_POLL);
  if (!io) return CPORT_ENOMEM;
  io->dir = (uint8_t)dir;
  LONG status = cp_afd_poll(st->afd, bs->base, poll_events(dir), &io->u.poll, &io->ov);
  if (status != CP_STATUS_PENDING && !CP_NT_SUCCESS(status)) {
    cp_io_free(io);
    return cp_win_nterr((uint32_t)status);
  }
  /* Pending or done at once: the AFD handle has no skip mode, so a packet
   * comes either way. */
  cp_io_to_os(io);
  bs->polls[dir] = io;
  return CPORT_OK;
}

static int sel_recvfrom(cp_sock *s, cp_op *op) {
  for (;;) {
    struct sockaddr_storage ss;
    int sl = (int)sizeof ss;
    memset(&ss, 0, sizeof ss);
    int n = recvfrom(SOCK(s), op->buf, (int)op->len, 0, (struct sockaddr *)&ss, &sl);
    int err = n >= 0 ? 0 : WSAGetLastError();
    if (n >= 0 || err == WSAEMSGSIZE) {
      /* WSAEMSGSIZE: the buffer holds the start of the datagram, the rest
       * is lost; POSIX says MSG_TRUNC. */
      op->done = n >= 0 ? (size_t)n : op->len;
      op->msg_flags = n >= 0 ? 0u : CPORT_MSG_TRUNC;
      if (op->kind == CPORT_OP_RECVFROM) cp_win_addr_from_os((struct sockaddr *)&ss, sl, &op->addr);
      return CPORT_OK;
    }
    if (err == WSAEINTR) continue;
    if (err == WSAEWOULDBLOCK) return CP_PENDING;
    return cp_win_err((uint32_t)err);
  }
}

static int sel_recv(cp_sock *s, cp_op *op) {
  if (is_dgram(s) || op->kind == CPORT_OP_RECVFROM) return sel_recvfrom(s, op);
  if (s->shut_rd) return CPORT_OK; /* EOF after our own SHUT_RD */
  bool all = (op->flags & CPORT_WAITALL) != 0;
  for (;;) {
    int n = recv(SOCK(s), op->buf + op->done, (int)(op->len - op->done), 0);
    if (n > 0) {
      op->done += (size_t)n;
      if (!all || op->done == op->len) return CPORT_OK;
      continue;
    }
    if (n == 0) return CPORT_OK; /* orderly shutdown: done holds what came before */
    int err = WSAGetLastError();
    if (err == WSAEINTR) continue;
    if (err == WSAEWOULDBLOCK) return op->done > 0 && !all ? CPORT_OK : CP_PENDING;
    if (recv_eof_error(err)) return CPORT_OK;
    return cp_win_err((uint32_t)err);
  }
}

static int sel_sendto(cp_sock *s, cp_op *op) {
  struct sockaddr_storage ss;
  int len = 0;
  if (op->kind == CPORT_OP_SENDTO) {
    int rc = cp_win_addr_to_os(&op->addr, &ss, &len);
    if (rc != CPORT_OK) return rc;
  }
  for (;;) {
    int n = sendto(SOCK(s), op->buf, (int)op->len, 0, len ? (struct sockaddr *)&ss : NULL, len);
    if (n >= 0) {
      op->done = (size_t)n;
      return CPORT_OK;
    }
    int err = WSAGetLastError();
    if (err == WSAEINTR) continue;
    return err == WSAEWOULDBLOCK ? CP_PENDING : cp_win_err((uint32_t)err);
  }
}

static int sel_send(cp_sock *s, cp_op *op) {
  if (is_dgram(s) || op->kind == CPORT_OP_SENDTO) return sel_sendto(s, op);
  while (op->done < op->len) {
    int n = send(SOCK(s), op->buf + op->done, (int)(op->len - op->done), 0);
    if (n >= 0) {
      op->done += (size_t)n;
      continue;
    }
    int err = WSAGetLastError();
    if (err == WSAEINTR) continue;
    if (err == WSAEWOULDBLOCK) return CP_PENDING;
    return cp_win_err((uint32_t)err);
  }
  return CPORT_OK;
}

static int sel_accept(cp_sock *s, cp_op *op) {
  for (;;) {
    SOCKET a = accept(SOCK(s), NULL, NULL);
    if (a != INVALID_SOCKET) {
      int rc = CPORT_OK;
      if (!SetHandleInformation((HANDLE)a, HANDLE_FLAG_INHERIT, 0)) rc = cp_win_err(GetLastError());
      if (rc == CPORT_OK) rc = cp_sock_adopt(s, (uintptr_t)a, &op->accepted);
      if (rc != CPORT_OK) closesocket(a);
      return rc;
    }
    int err = WSAGetLastError();
    if (err == WSAEWOULDBLOCK) return CP_PENDING;
    int rc = cp_win_err((uint32_t)err);
    if (retry_accept(rc) || err == WSAEINPROGRESS) continue;
    return rc;
  }
}

static int finish_connect(cp_sock *s) {
  int err = 0;
  int len = (int)sizeof err;
  if (getsockopt(SOCK(s), SOL_SOCKET, SO_ERROR, (char *)&err, &len) != 0) return cp_win_last();
  if (err != 0) return cp_win_err((uint32_t)err);
  struct sockaddr_storage ss;
  len = (int)sizeof ss;
  if (getpeername(SOCK(s), (struct sockaddr *)&ss, &len) == 0) return CPORT_OK;
  err = WSAGetLastError();
  return err == WSAENOTCONN ? CP_PENDING : cp_win_err((uint32_t)err);
}

static int sel_connect(cp_sock *s, cp_op *op) {
  if (s->connecting) return finish_connect(s);
  struct sockaddr_storage ss;
  int len;
  int rc = cp_win_addr_to_os(&op->addr, &ss, &len);
  if (rc != CPORT_OK) return rc;
  if (connect(SOCK(s), (struct sockaddr *)&ss, len) == 0) return CPORT_OK;
  int err = WSAGetLastError();
  if (err != WSAEWOULDBLOCK) return cp_win_err((uint32_t)err);
  s->connecting = 1;
  return CP_PENDING;
}

/* One non-blocking attempt: CPORT_OK, CP_PENDING or an error. */
static int sel_try(cp_sock *s, cp_op *op) {
  switch (op->kind) {
  case CPORT_OP_RECV:
  case CPORT_OP_RECVFROM: return sel_recv(s, op);
  case CPORT_OP_SEND:
  case CPORT_OP_SENDTO: return sel_send(s, op);
  case CPORT_OP_SENDMSG: return cp_win_sel_sendmsg(s, op);
  case CPORT_OP_RECVMSG: return cp_win_sel_recvmsg(s, op);
  case CPORT_OP_ACCEPT: return sel_accept(s, op);
  case CPORT_OP_CONNECT: return sel_connect(s, op);
  default: return CPORT_EINVAL;
  }
}

int cp_iocp_sel_attempt(cp_sock *s, cp_op *op, bool ready) {
  int rc = op->select ? (ready ? CPORT_OK : CP_PENDING) : sel_try(s, op);
  if (rc != CP_PENDING) return rc;
  int arc = sel_arm(s, op->dir, NULL);
  return arc == CPORT_OK ? CP_PENDING : arc;
}

int cp_iocp_sel_start(cp_sock *s, cp_op *op) {
  if (cp_dir_active(s, op->dir) != op) return CP_PENDING; /* behind others: FIFO */
  /* A connect that went out cannot be taken back, so the poll that waits
   * for it is allocated first: failing to allocate it then leaves the
   * socket as it was, not connecting with no op (the other calls report
   * the bytes they moved with the error). */
  cp_io *io = NULL;
  if (op->kind == CPORT_OP_CONNECT && !s->connecting && !BS(s)->polls[op->dir]) {
    io = cp_io_new(s, NULL, IO_POLL);
    if (!io) return CPORT_ENOMEM;
  }
  int rc = sel_try(s, op);
  if (rc == CP_PENDING) {
    int arc = sel_arm(s, op->dir, io);
    if (arc != CPORT_OK) return arc;
  } else if (io) {
    cp_io_free(io);
  }
  return rc;
}

void cp_iocp_on_poll(cp_sock *s, cp_io *io) {
  iocp_sock *bs = BS(s);
  int dir = io->dir;
  uint32_t status = (uint32_t)io->ov.Internal;
  ULONG handles = io->u.poll.number_of_handles;
  if (bs->polls[dir] == io) bs->polls[dir] = NULL;
  cp_io_free(io);
  if (bs->closed || status == CP_STATUS_CANCELLED) return;
  /* Readiness, or an error the calls themselves will report. A poll that
   * timed out (no handle) only re-arms. */
  cp_dir_advance(s, dir, CP_NT_SUCCESS(status) ? handles > 0 : true);
}

void cp_iocp_sel_close(cp_sock *s) {
  iocp_sock *bs = BS(s);
  iocp_ctx *st = iocp_state(s->ctx);
  cp_sock_drain(s);
  for (int dir = CP_RD; dir <= CP_WR; dir++) {
    /* Its packet still comes (cancelled, or LOCAL_CLOSE) and is swallowed. */
    cp_io *poll = bs->polls[dir];
    if (poll) {
      bs->polls[dir] = NULL;
      cp_io_detach(poll);
      (void)CancelIoEx(st->afd, &poll->ov);
    }
  }
}
