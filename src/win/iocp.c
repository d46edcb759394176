/* The IOCP backend: completion mode natively, select mode by AFD polls.
 *
 * One completion port per context. GetQueuedCompletionStatusEx drains it in
 * batches; a wake-up is a packet with KEY_WAKE (the port is never closed to
 * wake a waiter: Wine would not wake it, docs/wine.md pitfall 1).
 *
 * Completion mode (the default): accept, connect, send and recv are handed
 * to the OS as AcceptEx, ConnectEx, WSASend and WSARecv (WSASendTo and
 * WSARecvFrom for datagrams; WSASendMsg and WSARecvMsg for datagram
 * sendmsg/recvmsg, gathered WSASend/WSARecv for stream ones: msg.c) with the
 * caller's buffers. A stream recv of an otp.zero_read socket first waits
 * with a zero-byte WSARecv, so that no buffer is pinned while the peer is
 * idle (see cm_probe in rw.c). Every OS operation runs on a cp_io, allocated
 * apart from the cp_op: the OS owns it until its packet is dequeued, which
 * may be after the op itself has ended (a success reported at once while the
 * port still gets a packet, a socket closed while a send is blocked). A
 * cp_io that serves an op holds one reference on its socket slot
 * (s->be_refs), so the slot outlives its packet. A cp_io that serves nothing
 * any more (a swallowed packet, the AcceptEx pool or an AFD poll of a closed
 * socket) is "detached": it holds no reference, so a close never waits for
 * packets nobody needs, and its packet only frees it.
 *
 * Where the provider allows it (an IFS provider, no layered provider in the
 * way), sockets get FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: an operation that
 * succeeds at once is done now and queues no packet. Elsewhere an immediate
 * success still queues one: the op is done now all the same and its cp_io
 * becomes an orphan whose packet is swallowed (cp_io_done_now).
 *
 * Listeners keep AcceptEx posted ahead (accept.c):
 * cp_ctx_accepts_per_listener(), or the listen backlog if smaller, counting
 * connections accepted but not yet claimed (so a small backlog still fills
 * up as the user asked). An accept call takes a connection that is already
 * there (done now) or waits for the next one; a reset before accept is
 * retried, never reported; running out of sockets is reported once per
 * accept call, and the pool then waits for the next call instead of retrying
 * in a loop.
 *
 * Sends and recvs (rw.c) are all posted at once, so any number may be in
 * flight per socket; the core delivers their messages in posting order. A
 * send completes whole (a short completion is re-posted). A CPORT_WAITALL
 * recv re-posts until full, EOF or an error, so recvs posted after it wait
 * until it ends (otherwise they could take bytes from its middle).
 *
 * Select mode (CPORT_OPEN_SELECT, select.c): the socket is non-blocking; an
 * op tries the call once and, when it would block, waits for readiness
 * through an IOCTL_AFD_POLL on \Device\Afd (as wepoll does; afd.c), attached
 * to the same port. A select op then ends with a select message; a
 * completion op on such a socket (a blocking call) retries the call, as the
 * epoll backend does.
 *
 * Local close versus peer reset (docs/design.md rule 3): an op of a socket we
 * closed, or one we cancelled, ends as "closed"/"cancelled" whatever code the
 * OS gives (995, 1236, 64, 676, 6, 0x8000000A...); the same codes without
 * our close are the peer's doing (64 is then ECONNRESET).
 *
 * AF_UNIX stream sockets (Windows 10 1803 and later) take the TCP paths
 * unchanged, AcceptEx and ConnectEx included; only their addresses differ
 * (sock.c), and they are too large to keep from the AcceptEx buffer, so
 * their sockname and peername ask the OS.
 *
 * This file holds the context, the sockets' set-up, start, cancel, close
 * and the packet dispatch; iocp_int.h lists the other files. */
#include "iocp_int.h"

#include <string.h>

/* ======================================================================== */
/* The cp_io of an overlapped operation                                     */
/* ======================================================================== */

/* A msg op's cp_io carries its cp_msgbuf in the same allocation: the OS
 * writes into the WSAMSG (namelen, Control.len, dwFlags) until the packet
 * is dequeued, so it lives exactly as long as the cp_io. */
typedef struct cp_io_msg {
  cp_io io;
  cp_msgbuf mb;
} cp_io_msg;

static bool is_msg(const cp_op *op) {
  return op && (op->kind == CPORT_OP_SENDMSG || op->kind == CPORT_OP_RECVMSG);
}

cp_io *cp_io_new(cp_sock *s, cp_op *op, uint8_t kind) {
  cp_io *io;
  if (is_msg(op)) {
    cp_io_msg *b = cp_calloc(1, sizeof *b);
    if (!b) return NULL;
    io = &b->io;
    io->msg = &b->mb;
  } else {
    io = cp_calloc(1, sizeof *io);
    if (!io) return NULL;
  }
  io->sock = s;
  io->op = op;
  io->kind = kind;
  io->accepted = INVALID_SOCKET;
  return io;
}

void cp_io_done_now(cp_sock *s, cp_io *io) {
  if (BS(s)->skip) {
    cp_io_free(io);
    return;
  }
  cp_io_to_os(io);
  cp_io_detach(io);
}

void cp_io_in_flight(cp_op *op, cp_io *io) {
  cp_io_to_os(io);
  BO(op)->io = io;
  op->started = 1;
}

/* ======================================================================== */
/* Context                                                                  */
/* ======================================================================== */

static int iocp_ctx_init(cport_ctx *ctx) {
  int rc = cp_win_startup();
  if (rc != CPORT_OK) return rc;
  iocp_ctx *st = cp_calloc(1, sizeof *st);
  if (!st) return CPORT_ENOMEM;
  st->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
  if (!st->port) {
    rc = cp_win_err(GetLastError());
    cp_free(st);
    return rc;
  }
  st->afd = cp_afd_open(st->port, KEY_AFD); /* NULL: select mode answers ENOTSUP */
  /* Positive: the core applies the default (src/core/ctx.c) to a 0 option. */
  st->accepts_per_listener = cp_ctx_accepts_per_listener(ctx);
  /* Zero-byte reads are switched per socket by otp.zero_read (see wants_probe
   * in rw.c). CPORT_IOCP_ZERO_READ=1 is only a test hook: it forces them on
   * for every stream socket of the context, as CPORT_IOCP_NO_SKIP turns the
   * skip mode off, so that ctest can run the whole suite that way
   * (conformance.iocp.*.zeroread). Not an API: applications set the option. */
  const char *zr = cp_getenv("CPORT_IOCP_ZERO_READ");
  st->zero_read_all = zr && zr[0] && strcmp(zr, "0") != 0;
  cp_ctx_set_backend(ctx, st);
  return CPORT_OK;
}

static int iocp_poll(cport_ctx *ctx, int timeout_ms);

/* The core has drained the sockets (bounded). Packets still due (cancelled
 * pool AcceptEx, AFD polls, swallowed packets) are taken for a bounded time
 * so their memory is freed; a cp_io the OS still holds after that is
 * leaked on purpose, never freed under the kernel's feet. */
#define CTX_FREE_DRAIN_MS 2000u

static void iocp_ctx_free(cport_ctx *ctx) {
  iocp_ctx *st = iocp_state(ctx);
  uint64_t deadline = cp_now_ms() + CTX_FREE_DRAIN_MS;
  while (InterlockedCompareExchange(&st->in_os, 0, 0) > 0 && cp_now_ms() < deadline)
    (void)iocp_poll(ctx, 50);
  if (st->afd) CloseHandle(st->afd);
  CloseHandle(st->port);
  cp_free(st);
}

static void iocp_wake(cport_ctx *ctx) {
  iocp_ctx *st = iocp_state(ctx);
  if (InterlockedExchange(&st->wake_pending, 1)) return;
  if (!PostQueuedCompletionStatus(st->port, 0, KEY_WAKE, NULL))
    InterlockedExchange(&st->wake_pending, 0); /* out of memory: the next wake retries */
}

/* ======================================================================== */
/* Sockets                                                                  */
/* ======================================================================== */

/* Attaches s to the context: completion mode to the port (with the skip
 * modes where safe), select mode non-blocking with its base handle. */
static int attach(cp_sock *s) {
  iocp_ctx *st = iocp_state(s->ctx);
  iocp_sock *bs = BS(s);
  memset(bs, 0, sizeof *bs);
  if (s->select_mode) {
    if (!st->afd) return CPORT_ENOTSUP;
    int rc = cp_win_nonblock(SOCK(s));
    if (rc != CPORT_OK) return rc;
    bs->base = cp_win_base_handle(SOCK(s));
    return CPORT_OK;
  }
  if (!CreateIoCompletionPort((HANDLE)SOCK(s), st->port, KEY_SOCK, 0))
    return cp_win_err(GetLastError());
  if (cp_win_skip_ok(s->family, s->type)) {
    if (!SetFileCompletionNotificationModes((HANDLE)SOCK(s), FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                                 FILE_SKIP_SET_EVENT_ON_HANDLE))
      return cp_win_err(GetLastError());
    bs->skip = 1;
  }
  return CPORT_OK;
}

/* Datagram sockets: no WSAECONNRESET from an ICMP port unreachable on an
 * unconnected socket (as POSIX, and as libuv sets it). Best effort. */
static void dgram_setup(cp_sock *s) {
  if (!is_dgram(s)) return;
  BOOL off = FALSE;
  DWORD bytes = 0;
  (void)WSAIoctl(SOCK(s), SIO_UDP_CONNRESET, &off, sizeof off, NULL, 0, &bytes, NULL, NULL);
}

static int iocp_sock_open(cp_sock *s) {
  SOCKET sock;
  int rc = cp_win_socket(s->family, s->type, &sock);
  if (rc != CPORT_OK) return rc;
  s->os = (uintptr_t)sock;
  rc = attach(s);
  if (rc != CPORT_OK) {
    closesocket(sock);
    return rc;
  }
  dgram_setup(s);
  return CPORT_OK;
}

/* The addresses of the connection being adopted on this thread (set by
 * cp_iocp_adopt around cp_sock_adopt, which gives the backend no other way to
 * reach them), or NULL: then sockname/peername ask the OS. */
static CP_THREAD_LOCAL const cp_win_sockaddr *t_adopt_names;

int cp_iocp_adopt(cp_sock *listener, SOCKET os, const cp_win_sockaddr *names, cport_socket *out) {
  t_adopt_names = names;
  int rc = cp_sock_adopt(listener, (uintptr_t)os, out);
  t_adopt_names = NULL;
  return rc;
}

/* An accepted socket: the caller closes it if this fails. */
static int iocp_sock_adopt(cp_sock *s) {
  int rc = attach(s); /* zeroes BS(s) */
  if (rc == CPORT_OK && t_adopt_names) {
    memcpy(BS(s)->names, t_adopt_names, sizeof BS(s)->names);
    BS(s)->has_names = 1;
  }
  return rc;
}

/* An accepted socket's addresses never change: those AcceptEx gave. */
static int iocp_sockname(cp_sock *s, cport_addr *addr) {
  iocp_sock *bs = BS(s);
  if (bs->has_names) return cp_win_addr_from_os(&bs->names[0].sa, (int)sizeof bs->names[0], addr);
  return cp_win_sockname(s, addr);
}

static int iocp_peername(cp_sock *s, cport_addr *addr) {
  iocp_sock *bs = BS(s);
  if (bs->has_names) return cp_win_addr_from_os(&bs->names[1].sa, (int)sizeof bs->names[1], addr);
  return cp_win_peername(s, addr);
}

static int iocp_shutdown(cp_sock *s, int how) {
  int rc = cp_win_shutdown_os(s, how);
  if (rc != CPORT_OK || !(how & CPORT_SHUT_RD) || is_dgram(s)) return rc;
  /* Our own SD_RECEIVE does not end pending recvs (docs/wine.md pitfall 10,
   * and Windows agrees): they end now with EOF, as on POSIX. */
  if (s->select_mode) {
    s->shut_rd = 1; /* the core sets it too; the retries below must see it */
    cp_dir_advance(s, CP_RD, true);
    return CPORT_OK;
  }
  cp_iocp_cm_shut_rd(s);
  return CPORT_OK;
}

/* ======================================================================== */
/* Start, cancel, close                                                     */
/* ======================================================================== */

static int cm_start(cp_sock *s, cp_op *op) {
  switch (op->kind) {
  case CPORT_OP_ACCEPT: return cp_iocp_cm_accept(s, op);
  case CPORT_OP_CONNECT: return cp_iocp_cm_connect(s, op);
  case CPORT_OP_RECVMSG:
  case CPORT_OP_RECV:
  case CPORT_OP_RECVFROM: return cp_iocp_cm_recv(s, op);
  case CPORT_OP_SEND:
  case CPORT_OP_SENDTO:
  case CPORT_OP_SENDMSG: return cp_iocp_cm_send(s, op);
  default: return CPORT_EINVAL;
  }
}

static int iocp_start(cp_sock *s, cp_op *op) {
  memset(BO(op), 0, sizeof(iocp_op)); /* cp_op_record leaves be[] as it was */
  return s->select_mode ? cp_iocp_sel_start(s, op) : cm_start(s, op);
}

/* Completion mode orders its own ops (every send and recv may be in the
 * OS at once): only select mode has a one-op-per-direction loop. */
static int iocp_attempt(cp_sock *s, cp_op *op, bool ready) {
  return s->select_mode ? cp_iocp_sel_attempt(s, op, ready) : CP_PENDING;
}

static void iocp_cancel(cp_sock *s, cp_op *op) {
  if (s->select_mode) {
    cp_op_cancel_now(s, op);
    return;
  }
  iocp_op *bo = BO(op);
  if (bo->io) {
    /* The packet ends it: 995 if the cancel won, else its own result.
     * ERROR_NOT_FOUND means it already completed and its packet is on the
     * way (or being handled): nothing more to do either way. */
    (void)CancelIoEx((HANDLE)SOCK(s), &bo->io->ov);
    return;
  }
  /* Not in the OS: a deferred recv or an accept waiting for a connection. */
  bool kick = is_recv(op) && (bo->deferred || (op->flags & CPORT_WAITALL));
  bo->deferred = 0;
  cp_op_done(op, CPORT_ECANCELED);
  if (kick) cp_iocp_cm_kick(s);
}

static void iocp_sock_close(cp_sock *s) {
  BS(s)->closed = 1;
  if (s->select_mode) {
    cp_iocp_sel_close(s);
    closesocket(SOCK(s));
    return;
  }
  cp_iocp_accept_close(s);
  cp_sock_drain(s); /* the ops the OS holds end with their packets */
  /* Cancel first: under Wine a blocked send survives closesocket
   * (docs/wine.md pitfall 3). ERROR_NOT_FOUND: nothing was pending. */
  (void)CancelIoEx((HANDLE)SOCK(s), NULL);
  closesocket(SOCK(s));
}

/* ======================================================================== */
/* Packets                                                                  */
/* ======================================================================== */

static void handle_packet(cport_ctx *ctx, cp_io *io, DWORD bytes) {
  InterlockedDecrement(&iocp_state(ctx)->in_os);
  cp_sock *s = io->sock;
  /* Slots are never freed, so the mutex is always there. A detached io
   * holds no reference: its slot may be free or reused by now, so it is
   * locked only to read io->detached (written under it) and not touched.
   * A single-thread context detached it on this thread, unlocked. */
  bool locked = !cp_ctx_single_thread(ctx);
  if (locked) cp_mutex_lock(&s->mu);
  if (io->detached) {
    if (io->kind == IO_ACCEPT) closesocket(io->accepted);
    cp_io_free(io);
    if (locked) cp_mutex_unlock(&s->mu);
    return;
  }
  /* Otherwise the slot cannot have been freed or reused: io holds a
   * reference, and cp_sock_unlock below matches how it was locked. */
  s->be_refs--;
  switch (io->kind) {
  case IO_ACCEPT: cp_iocp_on_accept(s, io); break;
  case IO_CONNECT: cp_iocp_on_connect(s, io); break;
  case IO_SEND:
  case IO_RECV: cp_iocp_on_rw(s, io, bytes); break;
  case IO_POLL: cp_iocp_on_poll(s, io); break;
  default: cp_io_free(io); break;
  }
  cp_sock_unlock(s); /* frees a drained zombie */
}

static int iocp_poll(cport_ctx *ctx, int timeout_ms) {
  iocp_ctx *st = iocp_state(ctx);
  ULONG n = 0;
  DWORD wait = timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms;
  if (!GetQueuedCompletionStatusEx(st->port, st->entries, MAX_ENTRIES, &n, wait, FALSE)) {
    DWORD err = GetLastError();
    return err == WAIT_TIMEOUT ? CPORT_OK : cp_win_err(err);
  }
  for (ULONG i = 0; i < n; i++) {
    OVERLAPPED_ENTRY *e = &st->entries[i];
    if (e->lpCompletionKey == KEY_WAKE && !e->lpOverlapped) {
      InterlockedExchange(&st->wake_pending, 0);
      continue;
    }
    if (!e->lpOverlapped) continue; /* nothing of ours */
    handle_packet(ctx, (cp_io *)(void *)e->lpOverlapped, e->dwNumberOfBytesTransferred);
  }
  return CPORT_OK;
}

const cp_backend cp_backend_iocp = {
    .id = CPORT_BACKEND_IOCP,
    .name = "iocp",
    .ctx_init = iocp_ctx_init,
    .ctx_free = iocp_ctx_free,
    .sock_open = iocp_sock_open,
    .sock_adopt = iocp_sock_adopt,
    .sock_close = iocp_sock_close,
    .start = iocp_start,
    .attempt = iocp_attempt,
    .cancel = iocp_cancel,
    .poll = iocp_poll,
    .wake = iocp_wake,
    .bind = cp_win_bind,
    .listen = cp_iocp_listen,
    .shutdown = iocp_shutdown,
    .sockname = iocp_sockname,
    .peername = iocp_peername,
};
