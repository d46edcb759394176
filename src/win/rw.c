/* The IOCP backend's sends and recvs (completion mode): WSASend and WSARecv
 * with the caller's buffers (WSASendTo and WSARecvFrom for datagrams;
 * sendmsg/recvmsg through msg.c), and the zero-byte reads that keep idle
 * connections from pinning receive buffers.
 *
 * Sends and recvs are all posted at once, so any number may be in flight
 * per socket; the core delivers their messages in posting order. A send
 * completes whole (a short completion is re-posted). A CPORT_WAITALL recv
 * re-posts until full, EOF or an error, so recvs posted after it wait until
 * it ends (otherwise they could take bytes from its middle). */
#include "iocp_int.h"

/* A send or recv that succeeded with more left to move: cm_post again.
 * Used only inside this file, never returned from it (positive, and not
 * CP_PENDING). */
#define RW_MORE 1

/* A datagram receive ended with bytes in the buffer: the sender, the
 * truncation flag and (recvmsg) the control data. overflow: the OS said
 * STATUS_BUFFER_OVERFLOW / WSAEMSGSIZE. */
static void dgram_result(cp_op *op, cp_io *io, size_t bytes, bool overflow) {
  if (io->msg) {
    cp_win_msg_recv_done(io->msg, op, bytes, overflow);
    return;
  }
  op->done = bytes;
  op->msg_flags = overflow ? CPORT_MSG_TRUNC : 0u;
  if (op->kind == CPORT_OP_RECVFROM)
    (void)cp_win_addr_from_os((struct sockaddr *)&io->u.from, io->fromlen, &op->addr);
}

/* Issues the OS call for the rest of op on io. Returns CPORT_OK when the
 * call was made (*wsa_err: 0 if it finished at once, else its Winsock
 * error, ERROR_IO_PENDING included), or a cport error that stopped it
 * before any call. */
static int cm_issue(cp_sock *s, cp_op *op, cp_io *io, DWORD *n, int *wsa_err) {
  bool recv = is_recv(op);
  bool dgram = is_dgram(s);
  int r;
  *n = 0;
  if (io->msg) {
    /* Datagrams go whole from the first byte; a stream resumes past
     * op->done. */
    const cport_msghdr *m = (const cport_msghdr *)(const void *)op->buf;
    size_t skip = dgram ? 0 : op->done;
    if (!recv) {
      int rc = cp_win_msg_prep_send(io->msg, s, m, skip);
      if (rc != CPORT_OK) return rc;
    } else {
      cp_win_msg_prep_recv(io->msg, m, skip);
    }
    r = cp_win_msg_call(s, op, io->msg, n, &io->flags, &io->ov);
    *wsa_err = r == 0 ? 0 : WSAGetLastError();
    return CPORT_OK;
  }
  /* Not a msg op: op->buf is the caller's one flat buffer. */
  WSABUF b = {(ULONG)(op->len - op->done), op->buf + op->done};
  if (recv && dgram) {
    io->fromlen = (INT)sizeof io->u.from;
    r = WSARecvFrom(SOCK(s), &b, 1, n, &io->flags, (struct sockaddr *)&io->u.from, &io->fromlen,
                    &io->ov, NULL);
  } else if (recv) {
    r = WSARecv(SOCK(s), &b, 1, n, &io->flags, &io->ov, NULL);
  } else if (op->kind == CPORT_OP_SENDTO) {
    struct sockaddr_storage ss;
    int len;
    int rc = cp_win_addr_to_os(&op->addr, &ss, &len);
    if (rc != CPORT_OK) return rc;
    r = WSASendTo(SOCK(s), &b, 1, n, 0, (struct sockaddr *)&ss, len, &io->ov, NULL);
  } else {
    r = WSASend(SOCK(s), &b, 1, n, 0, &io->ov, NULL);
  }
  *wsa_err = r == 0 ? 0 : WSAGetLastError();
  return CPORT_OK;
}

/* ---- zero-byte reads ------------------------------------------------------
 *
 * A stream recv that would wait with its buffer in the OS first waits with
 * a zero-byte WSARecv (a "probe"): it completes when data, EOF or an error
 * is there, and the kernel locks no pages of the caller's buffer meanwhile,
 * so a server with many idle connections pins no receive buffers (the
 * classic IOCP technique; libuv does it for every TCP read). When the probe
 * completes, the real WSARecv is posted, and nearly always finishes at
 * once. The op's contract is unchanged: at least one byte, or 0 for EOF.
 *
 * Order: only the first pending recv of a socket probes; recvs posted behind
 * a probing one are deferred (as behind a CPORT_WAITALL recv) until it has
 * its real WSARecv posted, since two probes completing on two threads could
 * otherwise post their real recvs in the wrong order. Datagram sockets never
 * probe: a zero-byte receive would take and truncate the datagram.
 *
 * Switched per socket by otp.zero_read (s->zero_read, inherited by accepted
 * sockets), read each time a recv goes to the OS, so setting the option
 * on a live socket applies from its next recv. CPORT_IOCP_ZERO_READ=1 is a
 * test hook that forces it for every stream socket (see iocp_ctx_init in
 * iocp.c). */

static bool wants_probe(cp_sock *s, cp_op *op) {
  return (s->zero_read || iocp_state(s->ctx)->zero_read_all) && !is_dgram(s) && is_recv(op) &&
         cp_dir_active(s, CP_RD) == op;
}

/* Posts a probe for op. CP_PENDING: in the OS (BO(op)->io, probing);
 * CPORT_OK: data (or EOF, or an error) is there now: post the real recv,
 * which reports it; or CPORT_ENOMEM. */
static int cm_probe(cp_sock *s, cp_op *op) {
  static char no_bytes[1];                 /* a zero-length WSABUF still wants a valid pointer */
  cp_io *io = cp_io_new(s, NULL, IO_RECV); /* no cp_msgbuf: the probe has no buffers */
  if (!io) return CPORT_ENOMEM;
  io->op = op;
  io->probe = 1;
  WSABUF b = {0, no_bytes};
  DWORD n = 0;
  if (WSARecv(SOCK(s), &b, 1, &n, &io->flags, &io->ov, NULL) == 0) {
    cp_io_done_now(s, io);
    return CPORT_OK;
  }
  int err = WSAGetLastError();
  if (err == ERROR_IO_PENDING) {
    cp_io_in_flight(op, io);
    BO(op)->probing = 1;
    return CP_PENDING;
  }
  /* Failed at once: the real recv meets the same condition and reports it
   * with the usual mapping (our SD_RECEIVE as EOF, a reset...). */
  cp_io_free(io);
  return CPORT_OK;
}

/* ---- posting ------------------------------------------------------------- */

/* The call on io finished at once with n bytes (cut: a datagram cut short,
 * its buffers full): counts them and lets io go. CPORT_OK if op is
 * finished, RW_MORE if the rest must be posted, or an error. */
static int post_done_now(cp_sock *s, cp_op *op, cp_io *io, DWORD n, bool cut) {
  bool recv = is_recv(op);
  bool dgram = is_dgram(s);
  if (recv && dgram)
    dgram_result(op, io, cut ? op->len : n, cut);
  else
    op->done += n;
  cp_io_done_now(s, io);
  if (dgram) return CPORT_OK;
  if (recv && (n == 0 || !(op->flags & CPORT_WAITALL) || op->done == op->len)) return CPORT_OK;
  if (!recv && op->done == op->len) return CPORT_OK;
  if (!recv && n == 0) return CPORT_EUNKNOWN; /* no progress: never loop forever */
  return RW_MORE;
}

/* Posts the rest of a send or recv. CP_PENDING: in the OS (BO(op)->io);
 * CPORT_OK: finished now; or an error (op->done keeps any partial count).
 * ready: a probe just said data is there, so the first round skips it. */
static int cm_post(cp_sock *s, cp_op *op, bool ready) {
  bool recv = is_recv(op);
  for (;; ready = false) {
    if (!ready && wants_probe(s, op)) {
      int prc = cm_probe(s, op);
      if (prc != CPORT_OK) return prc;
    }
    cp_io *io = cp_io_new(s, op, recv ? IO_RECV : IO_SEND);
    if (!io) return CPORT_ENOMEM;
    DWORD n = 0;
    int err = 0;
    int rc = cm_issue(s, op, io, &n, &err);
    if (rc != CPORT_OK) {
      cp_io_free(io);
      return rc;
    }
    /* A datagram cut short at once (WSAEMSGSIZE, NT's warning
     * STATUS_BUFFER_OVERFLOW) completed synchronously just like a success:
     * the skip mode skips the packet for any synchronous status that is not
     * an error (FO_SKIP_COMPLETION_PORT in the WDK; Wine's server tests
     * !NT_ERROR alike), and without it a packet follows (docs/wine.md pitfall
     * 8, measured without the skip mode). Its buffers are full. */
    bool cut = recv && is_dgram(s) && err == WSAEMSGSIZE;
    if (err == 0 || cut) {
      /* Done at once (results already written). Without the skip mode a
       * packet follows: swallow it. */
      rc = post_done_now(s, op, io, n, cut);
      if (rc != RW_MORE) return rc;
      continue;
    }
    if (err == ERROR_IO_PENDING) {
      cp_io_in_flight(op, io);
      return CP_PENDING;
    }
    cp_io_free(io);
    if (recv && recv_eof_error(err)) return CPORT_OK; /* our SD_RECEIVE: EOF */
    return cp_win_err((uint32_t)err);
  }
}

/* Whether op must wait before its recv goes to the OS: a recv before it is
 * still pending and deferred, waiting for all its bytes, or probing. */
static bool behind_waitall(cp_sock *s, cp_op *op) {
  for (cp_op *o = s->dirs[CP_RD].head; o && o != op; o = o->next)
    if (o->state == CP_OP_PENDING && is_recv(o) &&
        (BO(o)->deferred || (o->flags & CPORT_WAITALL) || BO(o)->probing))
      return true;
  return false;
}

int cp_iocp_cm_recv(cp_sock *s, cp_op *op) {
  /* A stream has no per-message flags; a datagram's are set at its end. */
  if (op->kind == CPORT_OP_RECVMSG && !is_dgram(s)) ((cport_msghdr *)(void *)op->buf)->flags = 0;
  if (s->shut_rd && !is_dgram(s)) return CPORT_OK; /* EOF after our own SHUT_RD */
  if (behind_waitall(s, op)) {
    BO(op)->deferred = 1;
    return CP_PENDING;
  }
  return cm_post(s, op, false);
}

int cp_iocp_cm_send(cp_sock *s, cp_op *op) { return cm_post(s, op, false); }

void cp_iocp_cm_kick(cp_sock *s) {
  bool again = true;
  while (again) {
    again = false;
    for (cp_op *op = s->dirs[CP_RD].head; op; op = op->next) {
      if (op->state != CP_OP_PENDING || !is_recv(op)) continue;
      if (BO(op)->deferred) {
        BO(op)->deferred = 0;
        int rc = cm_post(s, op, false);
        if (rc != CP_PENDING) {
          cp_op_done(op, rc); /* may free op: walk again */
          again = true;
          break;
        }
      }
      /* The rest waits for this one. */
      if ((op->flags & CPORT_WAITALL) || BO(op)->probing) return;
    }
  }
}

/* Our own SD_RECEIVE does not end pending recvs (docs/wine.md pitfall 10):
 * those in the OS are cancelled and their packets report EOF (shut_eof);
 * those not in the OS end now with EOF. */
void cp_iocp_cm_shut_rd(cp_sock *s) {
  bool again = true;
  while (again) {
    again = false;
    for (cp_op *op = s->dirs[CP_RD].head; op; op = op->next) {
      if (op->state != CP_OP_PENDING || !is_recv(op)) continue;
      iocp_op *bo = BO(op);
      if (bo->io) {
        if (!bo->shut_eof) {
          bo->shut_eof = 1;
          (void)CancelIoEx((HANDLE)SOCK(s), &bo->io->ov);
        }
      } else {
        bo->deferred = 0;
        cp_op_done(op, CPORT_OK);
        again = true;
        break;
      }
    }
  }
}

/* ---- packets ------------------------------------------------------------- */

/* Whether a send posted after op is already in the OS. */
static bool later_send_posted(cp_op *op) {
  for (cp_op *o = op->next; o; o = o->next)
    if (o->state == CP_OP_PENDING && BO(o)->io) return true;
  return false;
}

static void cm_finish(cp_sock *s, cp_op *op, int rc) {
  bool kick = is_recv(op) && (op->flags & CPORT_WAITALL);
  cp_op_done(op, rc);
  if (kick && !BS(s)->closed) cp_iocp_cm_kick(s);
}

/* A probe's packet: data, EOF or an error is there (or we stopped it). The
 * probe took no data, so an op cancelled or closed meanwhile ends as an
 * abort and loses nothing. */
static void on_probe(cp_sock *s, cp_io *io) {
  cp_op *op = io->op;
  uint32_t status = (uint32_t)io->ov.Internal;
  cp_io_free(io);
  iocp_op *bo = BO(op);
  bo->io = NULL;
  bo->probing = 0;
  op->started = 0;
  int rc;
  if (BS(s)->closed || op->closed) {
    rc = CPORT_ECLOSED;
  } else if (bo->shut_eof) {
    rc = CPORT_OK; /* our shutdown(SHUT_RD) stopped it: EOF after what came */
  } else if (op->cancelled) {
    rc = CPORT_ECANCELED;
  } else if (CP_NT_SUCCESS(status)) {
    rc = cm_post(s, op, true);
    if (rc == CP_PENDING) {
      cp_iocp_cm_kick(s); /* the recvs behind it may go to the OS now, in order */
      return;
    }
  } else {
    rc = cp_win_nterr(status);            /* as a recv's: 64 here is the peer's reset */
    if (rc == CPORT_EPIPE) rc = CPORT_OK; /* shut down for receiving: EOF */
  }
  cp_op_done(op, rc);
  if (!BS(s)->closed) cp_iocp_cm_kick(s);
}

/* Counts what a send or recv's packet moved (a datagram recv: fills in its
 * sender, flags and control data, whole or truncated). Returns the status
 * left to map: a datagram received, even cut short
 * (CP_STATUS_BUFFER_OVERFLOW), is a success. */
static uint32_t rw_account(cp_sock *s, cp_op *op, cp_io *io, DWORD bytes) {
  uint32_t status = (uint32_t)io->ov.Internal;
  if (!is_recv(op) || !is_dgram(s)) {
    op->done += bytes;
    return status;
  }
  op->done = bytes;
  if (CP_NT_SUCCESS(status) || status == CP_STATUS_BUFFER_OVERFLOW) {
    dgram_result(op, io, bytes, !CP_NT_SUCCESS(status));
    status = (uint32_t)CP_STATUS_SUCCESS;
  }
  return status;
}

/* Maps a send or recv's status: CPORT_OK or a cport error if op ends now,
 * RW_MORE if it succeeded with bytes left to move. */
static int rw_map(cp_sock *s, cp_op *op, uint32_t status, DWORD bytes) {
  bool recv = is_recv(op);
  if (CP_NT_SUCCESS(status)) {
    bool more =
        !is_dgram(s) && (recv ? bytes > 0 && (op->flags & CPORT_WAITALL) && op->done < op->len
                              : op->done < op->len);
    return more ? RW_MORE : CPORT_OK;
  }
  if (recv && BO(op)->shut_eof && status == CP_STATUS_CANCELLED)
    return CPORT_OK; /* cancelled by our shutdown(SHUT_RD): EOF after what came */
  if (BS(s)->closed || op->closed) return CPORT_ECLOSED; /* 995/1236/64/676/6... after our close */
  if (op->cancelled && status == CP_STATUS_CANCELLED) return CPORT_ECANCELED;
  int rc = cp_win_nterr(status); /* 64 here, without our close, is the peer's reset */
  if (recv && rc == CPORT_EPIPE) rc = CPORT_OK; /* shut down for receiving: EOF */
  return rc;
}

/* The next step of a send or recv with bytes left to move: an abort if it
 * was closed or cancelled meanwhile, a failure for a short send that cannot
 * be re-posted, or the rest posted (CP_PENDING, or what cm_post says). */
static int rw_next(cp_sock *s, cp_op *op, DWORD bytes) {
  if (BS(s)->closed || op->closed) return CPORT_ECLOSED;
  if (op->cancelled) return CPORT_ECANCELED; /* the partial count goes with the abort */
  if (!is_recv(op) && (bytes == 0 || later_send_posted(op))) {
    /* A short send with later sends already in the OS cannot be fixed
     * without reordering the stream. Windows completes overlapped stream
     * sends whole unless the connection fails, so this is that failure. */
    return CPORT_ECONNABORTED;
  }
  return cm_post(s, op, false);
}

void cp_iocp_on_rw(cp_sock *s, cp_io *io, DWORD bytes) {
  cp_op *op = io->op;
  if (!op) { /* an orphan: its op was done at once */
    cp_io_free(io);
    return;
  }
  if (io->probe) {
    on_probe(s, io);
    return;
  }
  BO(op)->io = NULL;
  op->started = 0;
  uint32_t status = rw_account(s, op, io, bytes);
  cp_io_free(io);
  int rc = rw_map(s, op, status, bytes);
  if (rc == RW_MORE) rc = rw_next(s, op, bytes);
  if (rc == CP_PENDING) return;
  cm_finish(s, op, rc);
}
