/* Shared by the Windows files: Winsock set-up, address conversion, the
 * synchronous socket calls, extension functions, and the IOCP backend's
 * per-socket / per-operation state. Not installed. */
#ifndef CPORT_WIN_H
#define CPORT_WIN_H

#include "internal.h" /* includes cp_platform.h: winsock2.h, then windows.h */

#include <afunix.h> /* struct sockaddr_un (Windows SDK 17063 and later, mingw-w64) */
#include <mswsock.h>
#include <ws2tcpip.h>

#include "errmap.h"

/* ---- process-wide Winsock state (sock.c) ------------------------------- */

/* WSAStartup(2.2) once per process (InitOnce). CPORT_OK or an error. */
int cp_win_startup(void);

/* Whether FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is safe for sockets of this
 * family/type: only when the provider is an IFS one (no layered service
 * provider that hides the real handle), as libuv checks. The environment
 * variable CPORT_IOCP_NO_SKIP=1 turns it off (to exercise that path). */
int cp_win_skip_ok(int family, int type);

/* An overlapped, non-inheritable socket for a cport family/type. */
int cp_win_socket(int family, int type, SOCKET *out);

/* Sets FIONBIO on (select-mode sockets). */
int cp_win_nonblock(SOCKET s);

/* cport_addr <-> sockaddr. */
int cp_win_addr_to_os(const cport_addr *a, struct sockaddr_storage *ss, int *len);
int cp_win_addr_from_os(const struct sockaddr *sa, int len, cport_addr *a);
/* The wildcard address of a cport family: 0.0.0.0:0, [::]:0, or for
 * AF_UNIX the unnamed address (sun_family alone). */
void cp_win_wildcard(int family, struct sockaddr_storage *ss, int *len);

/* Extension functions, fetched once per address family. NULL on failure
 * (the Winsock error is left in WSAGetLastError). */
LPFN_ACCEPTEX cp_win_acceptex(SOCKET s, int family);
LPFN_CONNECTEX cp_win_connectex(SOCKET s, int family);
LPFN_WSARECVMSG cp_win_wsarecvmsg(SOCKET s, int family);
/* Parses the addresses out of an AcceptEx buffer (no system call). */
LPFN_GETACCEPTEXSOCKADDRS cp_win_getacceptexsockaddrs(SOCKET s, int family);

/* The base provider handle (SIO_BASE_HANDLE), for IOCTL_AFD_POLL. */
SOCKET cp_win_base_handle(SOCKET s);

/* The synchronous calls of the backend interface. */
int cp_win_bind(cp_sock *s, const cport_addr *addr);
int cp_win_listen_os(cp_sock *s, int backlog); /* listen() only */
int cp_win_shutdown_os(cp_sock *s, int how);   /* shutdown() only */
int cp_win_sockname(cp_sock *s, cport_addr *addr);
int cp_win_peername(cp_sock *s, cport_addr *addr);

/* ---- sendmsg / recvmsg (msg.c) ------------------------------------------ */

/* Room for the control data of one datagram: IP_PKTINFO or IPV6_PKTINFO
 * plus IP_TOS take under 100 bytes; the rest is headroom for headers we do
 * not ask for but a stack may add (hop limit, ECN...). */
#define CP_WIN_CONTROL_SPACE 256

/* Everything one WSASendMsg/WSARecvMsg (or gathered WSASend/WSARecv) needs,
 * kept alive until the OS is done with it: in the cp_io of a completion-mode
 * op (the OS writes namelen, Control.len and dwFlags at completion), on the
 * stack for a select-mode try. */
typedef struct cp_msgbuf {
  WSAMSG wm;
  WSABUF bufs[CPORT_IOV_MAX];
  struct sockaddr_storage name;
  union {
    WSACMSGHDR align;
    char bytes[CP_WIN_CONTROL_SPACE];
  } control;
} cp_msgbuf;

/* The WSABUFs of m's iovecs from byte offset skip on (a stream op resumes
 * past what already went); returns how many, 0 if nothing is left. */
ULONG cp_win_msg_bufs(const cport_msghdr *m, size_t skip, WSABUF *out);

/* Fills mb for a send of m from skip on: buffers, destination (m->addr, or
 * none for the connected peer) and, for datagram sockets with has_pktinfo,
 * an IP_PKTINFO / IPV6_PKTINFO control header. */
int cp_win_msg_prep_send(cp_msgbuf *mb, const cp_sock *s, const cport_msghdr *m, size_t skip);

/* Fills mb for a receive into m from skip on (datagram sockets: with room
 * for the sender's address and control data, both zeroed). */
void cp_win_msg_prep_recv(cp_msgbuf *mb, const cport_msghdr *m, size_t skip);

/* A datagram recvmsg ended with bytes received: fills m (sender, flags,
 * pktinfo, TOS) and op->msg_flags. overflow: the OS reported a truncated
 * receive (STATUS_BUFFER_OVERFLOW / WSAEMSGSIZE). */
void cp_win_msg_recv_done(cp_msgbuf *mb, cp_op *op, size_t bytes, bool overflow);

/* Issues the OS call for a msg op: WSASendMsg/WSARecvMsg on datagram
 * sockets, WSASend/WSARecv with the gathered buffers on stream sockets
 * (Windows has WSASendMsg/WSARecvMsg for datagram and raw sockets only).
 * ov NULL: a synchronous (non-blocking) call. Returns 0 or SOCKET_ERROR
 * with WSAGetLastError set, like the calls it wraps. *flags: WSARecv's
 * in/out flags (stream recv only). */
int cp_win_msg_call(cp_sock *s, cp_op *op, cp_msgbuf *mb, DWORD *bytes, DWORD *flags,
                    OVERLAPPED *ov);

/* Select mode: one non-blocking attempt at a sendmsg / recvmsg. */
int cp_win_sel_sendmsg(cp_sock *s, cp_op *op);
int cp_win_sel_recvmsg(cp_sock *s, cp_op *op);

/* ---- the IOCP backend's per-socket and per-op state (rest: iocp_int.h) --- */

typedef struct cp_io cp_io;

/* An IPv4 or IPv6 address, as the OS writes it (28 bytes at most). */
typedef union cp_win_sockaddr {
  struct sockaddr sa;
  struct sockaddr_in in;
  struct sockaddr_in6 in6;
} cp_win_sockaddr;

/* In cp_sock.be (CP_BACKEND_SOCK_SIZE bytes, zeroed at open/adopt). */
typedef struct iocp_sock {
  SOCKET base;       /* base provider handle, for AFD polls (select mode) */
  cp_io *ready_head; /* listener: AcceptEx done, waiting for a user accept */
  cp_io *ready_tail;
  cp_io *posted;          /* listener: AcceptEx in flight (through cp_io.next) */
  cp_io *polls[2];        /* select mode: the AFD poll in flight per direction */
  int32_t accepts_posted; /* listener: AcceptEx in flight */
  int32_t accepts_ready;  /* listener: length of the ready list */
  int32_t accept_target;  /* listener: posted + ready kept up to this */
  uint8_t skip;           /* FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set */
  uint8_t closed;         /* sock_close ran: every error now means "closed" */
  uint8_t accept_failed;  /* listener: the pool could not be refilled */
  uint8_t has_names;      /* accepted by AcceptEx: names[] hold both ends */
  /* Accepted by AcceptEx: the local ([0]) and remote ([1]) address, parsed
   * from the AcceptEx buffer by GetAcceptExSockaddrs, so that sockname and
   * peername need no system call. Two sockaddr_in6 (56 bytes) fit here. */
  cp_win_sockaddr names[2];
  /* tcp.keepidle and tcp.keepintvl: SIO_KEEPALIVE_VALS sets both at once. */
  uint32_t keepalive_idle, keepalive_intvl;
} iocp_sock;

/* In cp_op.be (CP_BACKEND_OP_SIZE bytes, NOT zeroed by cp_op_record: start
 * initialises it). */
typedef struct iocp_op {
  cp_io *io;        /* the overlapped I/O in flight for this op, or NULL */
  uint8_t deferred; /* completion mode: waits behind a CPORT_WAITALL or probing recv */
  uint8_t shut_eof; /* cancelled by our shutdown(SD_RECEIVE): report EOF */
  uint8_t probing;  /* completion mode: a zero-byte WSARecv waits for data first */
} iocp_op;

_Static_assert(sizeof(iocp_sock) <= CP_BACKEND_SOCK_SIZE, "iocp_sock too large");
_Static_assert(sizeof(iocp_op) <= CP_BACKEND_OP_SIZE, "iocp_op too large");

static inline iocp_sock *cp_win_bs(cp_sock *s) { return (iocp_sock *)(void *)s->be; }
static inline iocp_op *cp_win_bo(cp_op *op) { return (iocp_op *)(void *)op->be; }

#endif
