/* Shared by the files of the IOCP backend (iocp.c is the overview): the
 * per-context state, the cp_io record of each overlapped operation, and the
 * entry points of each concern. Not installed.
 *
 *   iocp.c     context, sockets, start, cancel, close, packet dispatch
 *   afd.c      NT layer: \Device\Afd, IOCTL_AFD_POLL (afd.h)
 *   select.c   select mode: non-blocking calls, AFD polls for readiness
 *   accept.c   completion mode: the AcceptEx pool of a listener
 *   connect.c  completion mode: ConnectEx
 *   rw.c       completion mode: WSASend / WSARecv and zero-byte reads */
#ifndef CPORT_WIN_IOCP_INT_H
#define CPORT_WIN_IOCP_INT_H

#include "cp_win.h"

#include "afd.h"

#include <stdlib.h>

/* ---- state --------------------------------------------------------------- */

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

static inline iocp_ctx *iocp_state(cport_ctx *ctx) { return cp_ctx_backend(ctx); }

static inline bool is_recv(const cp_op *op) {
  return op->kind == CPORT_OP_RECV || op->kind == CPORT_OP_RECVFROM || op->kind == CPORT_OP_RECVMSG;
}

static inline bool is_dgram(const cp_sock *s) { return s->type == CPORT_SOCK_DGRAM; }

/* Error of a Winsock call in a recv: our own SD_RECEIVE reads as EOF. */
static inline bool recv_eof_error(int err) { return err == WSAESHUTDOWN || err == WSAEDISCON; }

/* Errors of one incoming connection, not of the listener (docs/design.md
 * rule 9). */
static inline bool retry_accept(int rc) {
  return rc == CPORT_ECONNRESET || rc == CPORT_ECONNABORTED || rc == CPORT_EINTR ||
         rc == CPORT_ECANCELED;
}

/* ---- the life of a cp_io (iocp.c) ---------------------------------------- */

/* A cp_io for op (NULL: the AcceptEx pool, an AFD poll), with room for a
 * cp_msgbuf when op is a sendmsg/recvmsg. NULL when out of memory. */
cp_io *cp_io_new(cp_sock *s, cp_op *op, uint8_t kind);

static inline void cp_io_free(cp_io *io) { cp_free(io); }

/* The OS now owns io until its packet is dequeued; until then io keeps its
 * socket's slot (s->be_refs). */
static inline void cp_io_to_os(cp_io *io) {
  io->sock->be_refs++;
  InterlockedIncrement(&iocp_state(io->sock->ctx)->in_os);
}

/* The OS owns io, but io no longer serves anything: its packet is only
 * swallowed (an operation reported done at once while a packet still
 * follows, a pool AcceptEx or an AFD poll of a closed socket). A detached io
 * holds no reference on the slot, so closing a socket never waits for
 * packets nobody needs. */
static inline void cp_io_detach(cp_io *io) {
  if (io->detached) return;
  io->detached = 1;
  io->op = NULL;
  io->sock->be_refs--;
}

/* The overlapped call on io finished at once (its results are written).
 * With FILE_SKIP_COMPLETION_PORT_ON_SUCCESS no packet comes and io is freed
 * now; without it a packet still follows, so io goes to the OS as an orphan
 * whose packet is swallowed. */
void cp_io_done_now(cp_sock *s, cp_io *io);

/* The overlapped call on io is pending (ERROR_IO_PENDING): its packet ends
 * op, which the OS now runs. */
void cp_io_in_flight(cp_op *op, cp_io *io);

/* Adopts an accepted OS socket (cp_sock_adopt) whose local ([0]) and remote
 * ([1]) addresses are known, or NULL: then sockname/peername ask the OS. */
int cp_iocp_adopt(cp_sock *listener, SOCKET os, const cp_win_sockaddr *names, cport_socket *out);

/* ---- select mode (select.c) ---------------------------------------------- */

int cp_iocp_sel_start(cp_sock *s, cp_op *op);
/* The backend's attempt (cp_backend.attempt) in select mode: a select op
 * ends on readiness (ready: an AFD poll just reported it; without it the
 * op waits for the next poll, so it never gets a spurious message); the
 * others try their call. Either arms the direction's AFD poll to wait. */
int cp_iocp_sel_attempt(cp_sock *s, cp_op *op, bool ready);
/* An AFD poll's packet. */
void cp_iocp_on_poll(cp_sock *s, cp_io *io);
/* sock_close: ends every op and lets the AFD polls go. */
void cp_iocp_sel_close(cp_sock *s);

/* ---- completion mode: the AcceptEx pool (accept.c) ----------------------- */

int cp_iocp_cm_accept(cp_sock *s, cp_op *op);
void cp_iocp_on_accept(cp_sock *s, cp_io *io);
/* listen(), then the AcceptEx pool is sized and filled. */
int cp_iocp_listen(cp_sock *s, int backlog);
/* sock_close: closes the connections never claimed, lets the AcceptEx in
 * flight go (their packets close their sockets). */
void cp_iocp_accept_close(cp_sock *s);

/* ---- completion mode: ConnectEx (connect.c) ------------------------------ */

int cp_iocp_cm_connect(cp_sock *s, cp_op *op);
void cp_iocp_on_connect(cp_sock *s, cp_io *io);

/* ---- completion mode: sends and recvs (rw.c) ----------------------------- */

int cp_iocp_cm_recv(cp_sock *s, cp_op *op);
int cp_iocp_cm_send(cp_sock *s, cp_op *op);
/* The packet of a send, a recv or a zero-byte probe. */
void cp_iocp_on_rw(cp_sock *s, cp_io *io, DWORD bytes);
/* Posts the recvs that waited behind a CPORT_WAITALL recv that ended or a
 * probe that completed. */
void cp_iocp_cm_kick(cp_sock *s);
/* Our shutdown(SD_RECEIVE): pending recvs end with EOF. */
void cp_iocp_cm_shut_rd(cp_sock *s);

#endif
