/* The IOCP backend: completion mode natively, select mode by AFD polls.
 *
 * One completion port per context. GetQueuedCompletionStatusEx drains it in
 * batches; a wake-up is a packet with WAKE_KEY (the port is never closed to
 * wake a waiter: Wine would not wake it, WINE.md pitfall 1).
 *
 * Completion mode (the default): accept, connect, send and recv are handed
 * to the OS as AcceptEx, ConnectEx, WSASend and WSARecv (WSASendTo and
 * WSARecvFrom for datagrams; WSASendMsg and WSARecvMsg for datagram
 * sendmsg/recvmsg, gathered WSASend/WSARecv for stream ones: msg.c) with
 * the caller's buffers. A stream recv of an otp.zero_read socket first
 * waits with a zero-byte WSARecv, so that no buffer is pinned while the
 * peer is idle (see cm_probe). Every OS operation
 * runs on a cp_io, allocated apart from the cp_op: the OS owns it until its
 * packet is dequeued, which may be after the op itself has ended (a success
 * reported at once while the port still gets a packet, a socket closed
 * while a send is blocked). A cp_io that serves an op holds one reference
 * on its socket slot (s->be_refs), so the slot outlives its packet. A cp_io
 * that serves nothing any more (a swallowed packet, the AcceptEx pool or an
 * AFD poll of a closed socket) is "detached": it holds no reference, so a
 * close never waits for packets nobody needs, and its packet only frees it.
 *
 * Where the provider allows it (an IFS provider, no layered provider in the
 * way), sockets get FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: an operation that
 * succeeds at once is done now and queues no packet. Elsewhere an immediate
 * success still queues one: the op is done now all the same and its cp_io
 * becomes an orphan whose packet is swallowed.
 *
 * Listeners keep AcceptEx posted ahead: cp_ctx_accepts_per_listener(), or
 * the listen backlog if smaller, counting connections accepted but not yet
 * claimed (so a small backlog still fills up as the user asked). An accept
 * call takes a connection that is already there (done now) or waits for the
 * next one; a reset before accept is retried, never reported; running out
 * of sockets is reported once per accept call, and the pool then waits for
 * the next call instead of retrying in a loop.
 *
 * Sends and recvs are all posted at once, so any number may be in flight
 * per socket; the core delivers their messages in posting order. A send
 * completes whole (a short completion is re-posted). A CPORT_WAITALL recv
 * re-posts until full, EOF or an error, so recvs posted after it wait until
 * it ends (otherwise they could take bytes from its middle).
 *
 * Select mode (CPORT_OPEN_SELECT): the socket is non-blocking; an op tries
 * the call once and, when it would block, waits for readiness through an
 * IOCTL_AFD_POLL on \Device\Afd (as wepoll does), attached to the same port.
 * A select op then ends with a select message; a completion op on such a
 * socket (a blocking call) retries the call, as the epoll backend does.
 *
 * Local close versus peer reset (DESIGN.md rule 3): an op of a socket we
 * closed, or one we cancelled, ends as "closed"/"cancelled" whatever code the
 * OS gives (995, 1236, 64, 676, 6, 0x8000000A...); the same codes without
 * our close are the peer's doing (64 is then ECONNRESET).
 *
 * AF_UNIX stream sockets (Windows 10 1803 and later) take the TCP paths
 * unchanged, AcceptEx and ConnectEx included; only their addresses differ
 * (sock.c), and they are too large to keep from the AcceptEx buffer, so
 * their sockname and peername ask the OS. */
#include "cp_win.h"

#include <stdlib.h>
#include <string.h>

/* ---- NT interface for AFD polls (resolved from ntdll at run time) ------- */

#define CP_STATUS_PENDING ((LONG)0x00000103L)
#define CP_STATUS_CANCELLED 0xC0000120u
#define CP_NT_SUCCESS(st) ((int32_t)(st) >= 0)

#define IOCTL_AFD_POLL 0x00012024u
#define AFD_POLL_RECEIVE 0x0001u
#define AFD_POLL_SEND 0x0004u
#define AFD_POLL_DISCONNECT 0x0008u
#define AFD_POLL_ABORT 0x0010u
#define AFD_POLL_LOCAL_CLOSE 0x0020u
#define AFD_POLL_ACCEPT 0x0080u
#define AFD_POLL_CONNECT_FAIL 0x0100u

typedef struct cp_afd_poll_handle_info {
  HANDLE handle;
  ULONG events;
  LONG status;
} cp_afd_poll_handle_info;

typedef struct cp_afd_poll_info {
  LARGE_INTEGER timeout;
  ULONG number_of_handles;
  ULONG exclusive;
  cp_afd_poll_handle_info handles[1];
} cp_afd_poll_info;

typedef struct cp_unicode_string {
  USHORT length;
  USHORT maximum_length;
  PWSTR buffer;
} cp_unicode_string;

typedef struct cp_object_attributes {
  ULONG length;
  HANDLE root_directory;
  cp_unicode_string *object_name;
  ULONG attributes;
  PVOID security_descriptor;
  PVOID security_quality_of_service;
} cp_object_attributes;

typedef struct cp_iosb {
  union {
    LONG status;
    PVOID pointer;
  } u;
  ULONG_PTR information;
} cp_iosb;

typedef LONG(NTAPI *nt_create_file_fn)(HANDLE *, ACCESS_MASK, cp_object_attributes *, cp_iosb *,
                                       LARGE_INTEGER *, ULONG, ULONG, ULONG, ULONG, PVOID, ULONG);
typedef LONG(NTAPI *nt_device_io_control_file_fn)(HANDLE, HANDLE, PVOID, PVOID, cp_iosb *, ULONG,
                                                  PVOID, ULONG, PVOID, ULONG);

static nt_create_file_fn p_NtCreateFile;
static nt_device_io_control_file_fn p_NtDeviceIoControlFile;
static INIT_ONCE g_nt_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK nt_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  if (ntdll) {
    p_NtCreateFile = (nt_create_file_fn)(void (*)(void))GetProcAddress(ntdll, "NtCreateFile");
    p_NtDeviceIoControlFile = (nt_device_io_control_file_fn)(void (*)(void))GetProcAddress(
        ntdll, "NtDeviceIoControlFile");
  }
  return TRUE;
}

/* ---- state ------------------------------------------------------------- */

#define KEY_SOCK ((ULONG_PTR)1) /* packets of our sockets' overlapped I/O */
#define KEY_AFD ((ULONG_PTR)2)  /* packets of AFD polls */
#define KEY_WAKE ((ULONG_PTR)3) /* wake-ups: no OVERLAPPED */
#define MAX_ENTRIES 128

enum { IO_ACCEPT = 1, IO_CONNECT, IO_SEND, IO_RECV, IO_POLL };

/* AcceptEx wants room for each address plus 16 bytes. */
#define ACCEPT_ADDR_LEN ((DWORD)(sizeof(struct sockaddr_storage) + 16u))
_Static_assert(ACCEPT_ADDR_LEN >= sizeof(struct sockaddr_un) + 16u, "AcceptEx room for AF_UNIX");

struct cp_io {
  OVERLAPPED ov;    /* first: the packet's lpOverlapped, the AFD poll's IO_STATUS_BLOCK */
  cp_sock *sock;    /* the slot this I/O references (one s->be_refs while in the OS) */
  cp_op *op;        /* the op it serves; NULL for an orphan (its op has ended) */
  cp_io *next;      /* listener's ready list */
  uint8_t kind;     /* IO_* */
  uint8_t dir;      /* IO_POLL: the direction it serves */
  uint8_t detached; /* no longer serves its socket: the packet only frees it */
  uint8_t probe;    /* IO_RECV: a zero-byte WSARecv (readiness, no buffer) */
  SOCKET accepted;  /* IO_ACCEPT: the socket AcceptEx fills */
  DWORD flags;      /* WSARecv/WSARecvFrom flags (the OS writes them) */
  INT fromlen;      /* WSARecvFrom: the OS writes it at completion */
  cp_msgbuf *msg;   /* sendmsg/recvmsg: WSAMSG, WSABUFs, name, control (same block) */
  union {
    struct sockaddr_storage from;                         /* WSARecvFrom */
    char addrs[2 * sizeof(struct sockaddr_storage) + 32]; /* AcceptEx */
    cp_afd_poll_info poll;                                /* IOCTL_AFD_POLL */
  } u;
};

typedef struct iocp_ctx {
  HANDLE port;
  HANDLE afd; /* \Device\Afd\CPort attached to port; NULL if unavailable */
  LONG wake_pending;
  LONG in_os; /* cp_io the OS still holds (their packets are due) */
  int accepts_per_listener;
  bool zero_read_all;                    /* test hook: every stream socket acts as otp.zero_read */
  OVERLAPPED_ENTRY entries[MAX_ENTRIES]; /* used by the one poller only */
} iocp_ctx;

#define SOCK(s) ((SOCKET)(s)->os)
#define BS(s) cp_win_bs(s)
#define BO(op) cp_win_bo(op)

static iocp_ctx *state_of(cport_ctx *ctx) { return cp_ctx_backend(ctx); }

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

static cp_io *io_new(cp_sock *s, cp_op *op, uint8_t kind) {
  cp_io *io;
  if (is_msg(op)) {
    cp_io_msg *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    io = &b->io;
    io->msg = &b->mb;
  } else {
    io = calloc(1, sizeof *io);
    if (!io) return NULL;
  }
  io->sock = s;
  io->op = op;
  io->kind = kind;
  io->accepted = INVALID_SOCKET;
  return io;
}

/* The OS now owns io until its packet is dequeued; until then io keeps its
 * socket's slot (s->be_refs). */
static void io_to_os(cp_io *io) {
  io->sock->be_refs++;
  InterlockedIncrement(&state_of(io->sock->ctx)->in_os);
}

/* The OS owns io, but io no longer serves anything: its packet is only
 * swallowed (an operation reported done at once while a packet still
 * follows, a pool AcceptEx or an AFD poll of a closed socket). A detached io
 * holds no reference on the slot, so closing a socket never waits for
 * packets nobody needs. */
static void io_detach(cp_io *io) {
  if (io->detached) return;
  io->detached = 1;
  io->op = NULL;
  io->sock->be_refs--;
}

static void io_orphan_to_os(cp_io *io) {
  io_to_os(io);
  io_detach(io);
}

static void io_free(cp_io *io) { free(io); }

static bool is_recv(const cp_op *op) {
  return op->kind == CPORT_OP_RECV || op->kind == CPORT_OP_RECVFROM || op->kind == CPORT_OP_RECVMSG;
}

static bool is_dgram(const cp_sock *s) { return s->type == CPORT_SOCK_DGRAM; }

/* Error of a Winsock call in a recv: our own SD_RECEIVE reads as EOF. */
static bool recv_eof_error(int err) { return err == WSAESHUTDOWN || err == WSAEDISCON; }

/* Errors of one incoming connection, not of the listener (DESIGN rule 9). */
static bool retry_accept(int rc) {
  return rc == CPORT_ECONNRESET || rc == CPORT_ECONNABORTED || rc == CPORT_EINTR ||
         rc == CPORT_ECANCELED;
}

/* ======================================================================== */
/* Context                                                                  */
/* ======================================================================== */

static HANDLE open_afd(HANDLE port) {
  InitOnceExecuteOnce(&g_nt_once, nt_init, NULL, NULL);
  if (!p_NtCreateFile || !p_NtDeviceIoControlFile) return NULL;
  static WCHAR name[] = L"\\Device\\Afd\\CPort";
  cp_unicode_string us = {(USHORT)(sizeof name - sizeof name[0]), (USHORT)sizeof name, name};
  cp_object_attributes attr = {sizeof attr, NULL, &us, 0x40 /* OBJ_CASE_INSENSITIVE */, NULL, NULL};
  cp_iosb iosb;
  HANDLE h = NULL;
  LONG st = p_NtCreateFile(&h, SYNCHRONIZE, &attr, &iosb, NULL, 0,
                           FILE_SHARE_READ | FILE_SHARE_WRITE, 1 /* FILE_OPEN */, 0, NULL, 0);
  if (st != 0) return NULL;
  if (!CreateIoCompletionPort(h, port, KEY_AFD, 0)) {
    CloseHandle(h);
    return NULL;
  }
  /* No SKIP_COMPLETION_PORT_ON_SUCCESS here: every poll queues a packet. */
  (void)SetFileCompletionNotificationModes(h, FILE_SKIP_SET_EVENT_ON_HANDLE);
  return h;
}

static int iocp_ctx_init(cport_ctx *ctx) {
  int rc = cp_win_startup();
  if (rc != CPORT_OK) return rc;
  iocp_ctx *st = calloc(1, sizeof *st);
  if (!st) return CPORT_ENOMEM;
  st->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
  if (!st->port) {
    rc = cp_win_err(GetLastError());
    free(st);
    return rc;
  }
  st->afd = open_afd(st->port); /* NULL: select mode answers ENOTSUP */
  st->accepts_per_listener = cp_ctx_accepts_per_listener(ctx);
  if (st->accepts_per_listener <= 0) st->accepts_per_listener = 32;
  /* Zero-byte reads are switched per socket by otp.zero_read (see
   * wants_probe). CPORT_IOCP_ZERO_READ=1 is only a test hook: it forces them
   * on for every stream socket of the context, as CPORT_IOCP_NO_SKIP turns
   * the skip mode off, so that ctest can run the whole suite that way
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
  iocp_ctx *st = state_of(ctx);
  uint64_t deadline = cp_now_ms() + CTX_FREE_DRAIN_MS;
  while (InterlockedCompareExchange(&st->in_os, 0, 0) > 0 && cp_now_ms() < deadline)
    (void)iocp_poll(ctx, 50);
  if (st->afd) CloseHandle(st->afd);
  CloseHandle(st->port);
  free(st);
}

static void iocp_wake(cport_ctx *ctx) {
  iocp_ctx *st = state_of(ctx);
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
  iocp_ctx *st = state_of(s->ctx);
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
 * accept_take around cp_sock_adopt, which gives the backend no other way to
 * reach them), or NULL: then sockname/peername ask the OS. */
static _Thread_local const cp_win_sockaddr *t_adopt_names;

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

/* ======================================================================== */
/* Select mode: non-blocking calls, AFD polls for readiness                 */
/* ======================================================================== */

static ULONG poll_events(int dir) {
  ULONG always = AFD_POLL_ABORT | AFD_POLL_CONNECT_FAIL | AFD_POLL_LOCAL_CLOSE;
  return dir == CP_RD ? always | AFD_POLL_RECEIVE | AFD_POLL_ACCEPT | AFD_POLL_DISCONNECT
                      : always | AFD_POLL_SEND;
}

/* Makes sure an AFD poll for dir is in flight. */
static int sel_arm(cp_sock *s, int dir) {
  iocp_sock *bs = BS(s);
  if (bs->polls[dir]) return CPORT_OK;
  iocp_ctx *st = state_of(s->ctx);
  cp_io *io = io_new(s, NULL, IO_POLL);
  if (!io) return CPORT_ENOMEM;
  io->dir = (uint8_t)dir;
  io->u.poll.timeout.QuadPart = INT64_MAX;
  io->u.poll.number_of_handles = 1;
  io->u.poll.exclusive = FALSE;
  io->u.poll.handles[0].handle = (HANDLE)bs->base;
  io->u.poll.handles[0].events = poll_events(dir);
  io->ov.Internal = (ULONG_PTR)CP_STATUS_PENDING;
  LONG status = p_NtDeviceIoControlFile(st->afd, NULL, NULL, &io->ov, (cp_iosb *)(void *)&io->ov,
                                        IOCTL_AFD_POLL, &io->u.poll, sizeof io->u.poll, &io->u.poll,
                                        sizeof io->u.poll);
  if (status != CP_STATUS_PENDING && !CP_NT_SUCCESS(status)) {
    io_free(io);
    return cp_win_nterr((uint32_t)status);
  }
  /* Pending or done at once: the AFD handle has no skip mode, so a packet
   * comes either way. */
  io_to_os(io);
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

/* Progresses a direction in order until an op must wait. ready: an AFD poll
 * just reported readiness (a select op ends on it; without it a select op
 * waits for the next poll, so it never gets a spurious message). */
static void sel_run(cp_sock *s, int dir, bool ready) {
  cp_op *op;
  while ((op = cp_dir_active(s, dir)) != NULL) {
    int rc = op->select ? (ready ? CPORT_OK : CP_PENDING) : sel_try(s, op);
    if (rc == CP_PENDING) {
      rc = sel_arm(s, dir);
      if (rc == CPORT_OK) return;
    }
    cp_op_done(op, rc);
  }
}

static int sel_start(cp_sock *s, cp_op *op) {
  if (cp_dir_active(s, op->dir) != op) return CP_PENDING; /* behind others: FIFO */
  int rc = sel_try(s, op);
  if (rc == CP_PENDING) {
    int arc = sel_arm(s, op->dir);
    if (arc != CPORT_OK) return arc;
  }
  return rc;
}

static void on_poll(cp_sock *s, cp_io *io) {
  iocp_sock *bs = BS(s);
  int dir = io->dir;
  uint32_t status = (uint32_t)io->ov.Internal;
  ULONG handles = io->u.poll.number_of_handles;
  if (bs->polls[dir] == io) bs->polls[dir] = NULL;
  io_free(io);
  if (bs->closed || status == CP_STATUS_CANCELLED) return;
  /* Readiness, or an error the calls themselves will report. A poll that
   * timed out (no handle) only re-arms. */
  sel_run(s, dir, CP_NT_SUCCESS(status) ? handles > 0 : true);
}

/* ======================================================================== */
/* Completion mode: AcceptEx                                                */
/* ======================================================================== */

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
    cp_io *io = io_new(s, NULL, IO_ACCEPT);
    if (!io) {
      closesocket(a);
      return CPORT_ENOMEM;
    }
    io->accepted = a;
    DWORD bytes = 0;
    if (acceptex(SOCK(s), a, io->u.addrs, 0, ACCEPT_ADDR_LEN, ACCEPT_ADDR_LEN, &bytes, &io->ov)) {
      if (!bs->skip) { /* its packet is on the way: take it from there */
        io_to_os(io);
        posted_add(bs, io);
        continue;
      }
      if (update_accept(s, a) == CPORT_OK) {
        ready_push(bs, io);
        continue;
      }
      rc = CPORT_ECONNABORTED; /* that connection's problem: try another */
    } else {
      int err = WSAGetLastError();
      if (err == ERROR_IO_PENDING) {
        io_to_os(io);
        posted_add(bs, io);
        continue;
      }
      rc = cp_win_err((uint32_t)err);
    }
    closesocket(a);
    io_free(io);
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
  t_adopt_names = accept_names(s, io, names) ? names : NULL;
  int rc = cp_sock_adopt(s, (uintptr_t)io->accepted, &op->accepted);
  t_adopt_names = NULL;
  if (rc != CPORT_OK) closesocket(io->accepted);
  io_free(io);
  return rc;
}

/* Gives ready connections to waiting accept ops (those before stop). */
static void accept_match(cp_sock *s, cp_op *stop) {
  cp_op *op;
  while (BS(s)->ready_head && (op = waiting_accept(s, stop)) != NULL)
    cp_op_done(op, accept_take(s, op));
}

static int cm_accept(cp_sock *s, cp_op *op) {
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

static void on_accept(cp_sock *s, cp_io *io) {
  iocp_sock *bs = BS(s);
  uint32_t status = (uint32_t)io->ov.Internal;
  posted_remove(bs, io);
  if (bs->closed) { /* not expected: close detaches the pool */
    closesocket(io->accepted);
    io_free(io);
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
    io_free(io);
    if (!retry_accept(rc)) {
      /* Not one connection's fault: tell one waiting accept, and stop
       * refilling until the next accept call (no spinning). */
      cp_op *op = waiting_accept(s, NULL);
      if (op) cp_op_done(op, rc);
      bs->accept_failed = 1;
    }
  }
  accept_match(s, NULL);
  if (!bs->accept_failed) {
    rc = accept_top_up(s);
    if (rc != CPORT_OK && bs->accepts_posted == 0 && !bs->ready_head) {
      /* Out of sockets (EMFILE/ENOBUFS): once per accept call. */
      cp_op *op = waiting_accept(s, NULL);
      if (op) cp_op_done(op, rc);
      bs->accept_failed = 1;
    }
    accept_match(s, NULL);
  }
}

/* ======================================================================== */
/* Completion mode: ConnectEx                                               */
/* ======================================================================== */

static int update_connect(cp_sock *s) {
  if (setsockopt(SOCK(s), SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) != 0)
    return cp_win_last();
  return CPORT_OK;
}

static int cm_connect(cp_sock *s, cp_op *op) {
  struct sockaddr_storage ss;
  int len;
  int rc = cp_win_addr_to_os(&op->addr, &ss, &len);
  if (rc != CPORT_OK) return rc;
  if (is_dgram(s)) /* a datagram connect only sets the peer */
    return connect(SOCK(s), (struct sockaddr *)&ss, len) == 0 ? CPORT_OK : cp_win_last();
  if (!s->bound) { /* ConnectEx needs a bound socket (AF_UNIX: unnamed) */
    struct sockaddr_storage any;
    int any_len;
    cp_win_wildcard(s->family, &any, &any_len);
    if (bind(SOCK(s), (struct sockaddr *)&any, any_len) != 0) return cp_win_last();
    s->bound = 1;
  }
  LPFN_CONNECTEX connectex = cp_win_connectex(SOCK(s), s->family);
  if (!connectex) return cp_win_last();
  cp_io *io = io_new(s, op, IO_CONNECT);
  if (!io) return CPORT_ENOMEM;
  if (connectex(SOCK(s), (struct sockaddr *)&ss, len, NULL, 0, NULL, &io->ov)) {
    if (BS(s)->skip)
      io_free(io);
    else
      io_orphan_to_os(io); /* done now; its packet is swallowed */
    return update_connect(s);
  }
  int err = WSAGetLastError();
  if (err != ERROR_IO_PENDING) {
    io_free(io);
    return cp_win_err((uint32_t)err);
  }
  io_to_os(io);
  BO(op)->io = io;
  op->started = 1;
  s->connecting = 1;
  return CP_PENDING;
}

/* ======================================================================== */
/* Completion mode: WSASend / WSARecv                                       */
/* ======================================================================== */

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
 * test hook that forces it for every stream socket (see iocp_ctx_init). */

static bool wants_probe(cp_sock *s, cp_op *op) {
  return (s->zero_read || state_of(s->ctx)->zero_read_all) && !is_dgram(s) && is_recv(op) &&
         cp_dir_active(s, CP_RD) == op;
}

/* Posts a probe for op. CP_PENDING: in the OS (BO(op)->io, probing);
 * CPORT_OK: data (or EOF, or an error) is there now: post the real recv,
 * which reports it; or CPORT_ENOMEM. */
static int cm_probe(cp_sock *s, cp_op *op) {
  static char no_bytes[1];              /* a zero-length WSABUF still wants a valid pointer */
  cp_io *io = io_new(s, NULL, IO_RECV); /* no cp_msgbuf: the probe has no buffers */
  if (!io) return CPORT_ENOMEM;
  io->op = op;
  io->probe = 1;
  WSABUF b = {0, no_bytes};
  DWORD n = 0;
  if (WSARecv(SOCK(s), &b, 1, &n, &io->flags, &io->ov, NULL) == 0) {
    if (BS(s)->skip)
      io_free(io);
    else
      io_orphan_to_os(io); /* its packet is swallowed */
    return CPORT_OK;
  }
  int err = WSAGetLastError();
  if (err == ERROR_IO_PENDING) {
    io_to_os(io);
    BO(op)->io = io;
    BO(op)->probing = 1;
    op->started = 1;
    return CP_PENDING;
  }
  /* Failed at once: the real recv meets the same condition and reports it
   * with the usual mapping (our SD_RECEIVE as EOF, a reset...). */
  io_free(io);
  return CPORT_OK;
}

/* Posts the rest of a send or recv. CP_PENDING: in the OS (BO(op)->io);
 * CPORT_OK: finished now; or an error (op->done keeps any partial count).
 * ready: a probe just said data is there, so the first round skips it. */
static int cm_post(cp_sock *s, cp_op *op, bool ready) {
  bool recv = is_recv(op);
  bool dgram = is_dgram(s);
  for (;; ready = false) {
    if (!ready && wants_probe(s, op)) {
      int prc = cm_probe(s, op);
      if (prc != CPORT_OK) return prc;
    }
    cp_io *io = io_new(s, op, recv ? IO_RECV : IO_SEND);
    if (!io) return CPORT_ENOMEM;
    DWORD n = 0;
    int err = 0;
    int rc = cm_issue(s, op, io, &n, &err);
    if (rc != CPORT_OK) {
      io_free(io);
      return rc;
    }
    /* A datagram cut short at once (WSAEMSGSIZE, NT's warning
     * STATUS_BUFFER_OVERFLOW) completed synchronously just like a success:
     * the skip mode skips the packet for any synchronous status that is not
     * an error (FO_SKIP_COMPLETION_PORT in the WDK; Wine's server tests
     * !NT_ERROR alike), and without it a packet follows (WINE.md pitfall 8,
     * measured without the skip mode). Its buffers are full. */
    bool cut = recv && dgram && err == WSAEMSGSIZE;
    if (err == 0 || cut) {
      /* Done at once (results already written). Without the skip mode a
       * packet follows: swallow it. */
      if (recv && dgram)
        dgram_result(op, io, cut ? op->len : n, cut);
      else
        op->done += n;
      if (BS(s)->skip)
        io_free(io);
      else
        io_orphan_to_os(io);
      if (dgram) return CPORT_OK;
      if (recv && (n == 0 || !(op->flags & CPORT_WAITALL) || op->done == op->len)) return CPORT_OK;
      if (!recv && op->done == op->len) return CPORT_OK;
      if (!recv && n == 0) return CPORT_EUNKNOWN; /* no progress: never loop forever */
      continue;
    }
    if (err == ERROR_IO_PENDING) {
      io_to_os(io);
      BO(op)->io = io;
      op->started = 1;
      return CP_PENDING;
    }
    io_free(io);
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

/* Posts the recvs that waited behind a CPORT_WAITALL recv that ended or a
 * probe that completed. */
static void cm_kick(cp_sock *s) {
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

/* Whether a send posted after op is already in the OS. */
static bool later_send_posted(cp_op *op) {
  for (cp_op *o = op->next; o; o = o->next)
    if (o->state == CP_OP_PENDING && BO(o)->io) return true;
  return false;
}

static void cm_finish(cp_sock *s, cp_op *op, int rc) {
  bool kick = is_recv(op) && (op->flags & CPORT_WAITALL);
  cp_op_done(op, rc);
  if (kick && !BS(s)->closed) cm_kick(s);
}

/* A probe's packet: data, EOF or an error is there (or we stopped it). The
 * probe took no data, so an op cancelled or closed meanwhile ends as an
 * abort and loses nothing. */
static void on_probe(cp_sock *s, cp_io *io) {
  cp_op *op = io->op;
  uint32_t status = (uint32_t)io->ov.Internal;
  io_free(io);
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
      cm_kick(s); /* the recvs behind it may go to the OS now, in order */
      return;
    }
  } else {
    rc = cp_win_nterr(status);            /* as a recv's: 64 here is the peer's reset */
    if (rc == CPORT_EPIPE) rc = CPORT_OK; /* shut down for receiving: EOF */
  }
  cp_op_done(op, rc);
  if (!BS(s)->closed) cm_kick(s);
}

static void on_rw(cp_sock *s, cp_io *io, DWORD bytes) {
  cp_op *op = io->op;
  uint32_t status = (uint32_t)io->ov.Internal;
  if (!op) { /* an orphan: its op was done at once */
    io_free(io);
    return;
  }
  if (io->probe) {
    on_probe(s, io);
    return;
  }
  BO(op)->io = NULL;
  op->started = 0;
  bool recv = is_recv(op);
  bool closed = BS(s)->closed || op->closed;
  if (recv && is_dgram(s)) {
    op->done = bytes;
    if (CP_NT_SUCCESS(status) || status == 0x80000005u /* STATUS_BUFFER_OVERFLOW */) {
      dgram_result(op, io, bytes, !CP_NT_SUCCESS(status));
      status = 0;
    }
  } else {
    op->done += bytes;
  }
  io_free(io);
  int rc;
  if (CP_NT_SUCCESS(status)) {
    bool more =
        !is_dgram(s) && (recv ? bytes > 0 && (op->flags & CPORT_WAITALL) && op->done < op->len
                              : op->done < op->len);
    if (!more) {
      rc = CPORT_OK;
    } else if (closed) {
      rc = CPORT_ECLOSED;
    } else if (op->cancelled) {
      rc = CPORT_ECANCELED; /* the partial count goes with the abort */
    } else if (!recv && (bytes == 0 || later_send_posted(op))) {
      /* A short send with later sends already in the OS cannot be fixed
       * without reordering the stream. Windows completes overlapped stream
       * sends whole unless the connection fails, so this is that failure. */
      rc = CPORT_ECONNABORTED;
    } else {
      rc = cm_post(s, op, false);
      if (rc == CP_PENDING) return;
    }
  } else if (recv && BO(op)->shut_eof && (status == CP_STATUS_CANCELLED)) {
    rc = CPORT_OK; /* cancelled by our shutdown(SHUT_RD): EOF after what came */
  } else if (closed) {
    rc = CPORT_ECLOSED; /* 995/1236/64/676/6... after our close */
  } else if (op->cancelled && status == CP_STATUS_CANCELLED) {
    rc = CPORT_ECANCELED;
  } else {
    rc = cp_win_nterr(status); /* 64 here, without our close, is the peer's reset */
    if (recv && rc == CPORT_EPIPE) rc = CPORT_OK; /* shut down for receiving: EOF */
  }
  cm_finish(s, op, rc);
}

static void on_connect(cp_sock *s, cp_io *io) {
  cp_op *op = io->op;
  uint32_t status = (uint32_t)io->ov.Internal;
  io_free(io);
  if (!op) return;
  BO(op)->io = NULL;
  op->started = 0;
  int rc;
  if (CP_NT_SUCCESS(status))
    rc = BS(s)->closed ? CPORT_OK : update_connect(s);
  else if (BS(s)->closed || op->closed)
    rc = CPORT_ECLOSED;
  else if (op->cancelled && status == CP_STATUS_CANCELLED)
    rc = CPORT_ECANCELED;
  else
    rc = cp_win_nterr(status); /* 0xC0000236: ECONNREFUSED */
  cp_op_done(op, rc);
}

static int cm_start(cp_sock *s, cp_op *op) {
  switch (op->kind) {
  case CPORT_OP_ACCEPT: return cm_accept(s, op);
  case CPORT_OP_CONNECT: return cm_connect(s, op);
  case CPORT_OP_RECVMSG:
    /* A stream has no per-message flags; a datagram's are set at its end. */
    if (!is_dgram(s)) ((cport_msghdr *)(void *)op->buf)->flags = 0;
    /* fall through */
  case CPORT_OP_RECV:
  case CPORT_OP_RECVFROM:
    if (s->shut_rd && !is_dgram(s)) return CPORT_OK; /* EOF after our own SHUT_RD */
    if (behind_waitall(s, op)) {
      BO(op)->deferred = 1;
      return CP_PENDING;
    }
    return cm_post(s, op, false);
  case CPORT_OP_SEND:
  case CPORT_OP_SENDTO:
  case CPORT_OP_SENDMSG: return cm_post(s, op, false);
  default: return CPORT_EINVAL;
  }
}

/* ======================================================================== */
/* The backend interface                                                    */
/* ======================================================================== */

static int iocp_start(cp_sock *s, cp_op *op) {
  memset(BO(op), 0, sizeof(iocp_op)); /* cp_op_record leaves be[] as it was */
  return s->select_mode ? sel_start(s, op) : cm_start(s, op);
}

static void iocp_cancel(cp_sock *s, cp_op *op) {
  if (s->select_mode) {
    int dir = op->dir; /* op is freed once delivered */
    cp_op_done(op, CPORT_ECANCELED);
    sel_run(s, dir, false); /* the next op may run now */
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
  if (kick) cm_kick(s);
}

static void iocp_sock_close(cp_sock *s) {
  iocp_sock *bs = BS(s);
  iocp_ctx *st = state_of(s->ctx);
  bs->closed = 1;
  if (s->select_mode) {
    for (int dir = CP_RD; dir <= CP_WR; dir++) {
      cp_op *op;
      while ((op = cp_dir_active(s, dir)) != NULL) cp_op_done(op, CPORT_ECLOSED);
      /* Its packet still comes (cancelled, or LOCAL_CLOSE) and is swallowed. */
      cp_io *poll = bs->polls[dir];
      if (poll) {
        bs->polls[dir] = NULL;
        io_detach(poll);
        (void)CancelIoEx(st->afd, &poll->ov);
      }
    }
    closesocket(SOCK(s));
    return;
  }
  /* Connections accepted but never claimed; the pool's AcceptEx (their
   * packets, cancelled below, close their sockets). */
  cp_io *io;
  while ((io = ready_pop(bs)) != NULL) {
    closesocket(io->accepted);
    io_free(io);
  }
  while ((io = bs->posted) != NULL) {
    bs->posted = io->next;
    io->next = NULL;
    io_detach(io);
  }
  bs->accepts_posted = 0;
  /* Ops the OS does not hold end now; the others end with their packets. */
  for (int dir = CP_RD; dir <= CP_WR; dir++) {
    bool again = true;
    while (again) {
      again = false;
      for (cp_op *op = s->dirs[dir].head; op; op = op->next) {
        if (op->state == CP_OP_PENDING && !BO(op)->io) {
          BO(op)->deferred = 0;
          cp_op_done(op, CPORT_ECLOSED);
          again = true;
          break;
        }
      }
    }
  }
  /* Cancel first: under Wine a blocked send survives closesocket (WINE.md
   * pitfall 3). ERROR_NOT_FOUND: nothing was pending. */
  (void)CancelIoEx((HANDLE)SOCK(s), NULL);
  closesocket(SOCK(s));
}

static void handle_packet(iocp_ctx *st, cp_io *io, DWORD bytes) {
  InterlockedDecrement(&st->in_os);
  cp_sock *s = io->sock;
  /* Slots are never freed, so the mutex is always there. A detached io
   * holds no reference: its slot may be free or reused by now, so it is
   * locked only to read io->detached (written under it) and not touched. */
  cp_mutex_lock(&s->mu);
  if (io->detached) {
    if (io->kind == IO_ACCEPT) closesocket(io->accepted);
    io_free(io);
    cp_mutex_unlock(&s->mu);
    return;
  }
  /* Otherwise the slot cannot have been freed or reused: io holds a
   * reference. */
  s->be_refs--;
  switch (io->kind) {
  case IO_ACCEPT: on_accept(s, io); break;
  case IO_CONNECT: on_connect(s, io); break;
  case IO_SEND:
  case IO_RECV: on_rw(s, io, bytes); break;
  case IO_POLL: on_poll(s, io); break;
  default: io_free(io); break;
  }
  cp_sock_unlock(s); /* frees a drained zombie */
}

static int iocp_poll(cport_ctx *ctx, int timeout_ms) {
  iocp_ctx *st = state_of(ctx);
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
    handle_packet(st, (cp_io *)(void *)e->lpOverlapped, e->dwNumberOfBytesTransferred);
  }
  return CPORT_OK;
}

static int iocp_listen(cp_sock *s, int backlog) {
  int rc = cp_win_listen_os(s, backlog);
  if (rc != CPORT_OK || s->select_mode) return rc;
  /* The AcceptEx pool: accepts_per_listener, but never more connections
   * held than the backlog asked for (a listener with backlog 1 must fill
   * up as it would without the pool). Posted now, so connections are taken
   * as they come; a failure here (out of sockets) is reported by the next
   * accept call. Listening again only changes the quota. */
  iocp_sock *bs = BS(s);
  int n = state_of(s->ctx)->accepts_per_listener;
  bs->accept_target = backlog > 0 && backlog < n ? backlog : n;
  (void)accept_top_up(s);
  return CPORT_OK;
}

static int iocp_shutdown(cp_sock *s, int how) {
  int rc = cp_win_shutdown_os(s, how);
  if (rc != CPORT_OK || !(how & CPORT_SHUT_RD) || is_dgram(s)) return rc;
  /* Our own SD_RECEIVE does not end pending recvs (WINE.md pitfall 10, and
   * Windows agrees): they end now with EOF, as on POSIX. */
  if (s->select_mode) {
    s->shut_rd = 1; /* the core sets it too; the retries below must see it */
    sel_run(s, CP_RD, true);
    return CPORT_OK;
  }
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
    .cancel = iocp_cancel,
    .poll = iocp_poll,
    .wake = iocp_wake,
    .bind = cp_win_bind,
    .listen = iocp_listen,
    .shutdown = iocp_shutdown,
    .sockname = iocp_sockname,
    .peername = iocp_peername,
};
