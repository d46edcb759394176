/* POSIX socket helpers shared by the Linux backends. */
#ifndef CPORT_POSIX_H
#define CPORT_POSIX_H

#include "internal.h"

#include <sys/socket.h>

/* errno value -> cport_err. */
int cp_errno_to_err(int e);

/* cport_addr <-> struct sockaddr. */
int cp_addr_to_os(const cport_addr *a, struct sockaddr_storage *ss, socklen_t *len);
void cp_addr_from_os(const struct sockaddr_storage *ss, cport_addr *a);

/* A non-blocking, close-on-exec socket for s->family/s->type in s->os. */
int cp_posix_socket(cp_sock *s);

/* The synchronous calls of the backend interface. */
int cp_posix_bind(cp_sock *s, const cport_addr *addr);
int cp_posix_listen(cp_sock *s, int backlog);
int cp_posix_shutdown(cp_sock *s, int how);
int cp_posix_sockname(cp_sock *s, cport_addr *addr);
int cp_posix_peername(cp_sock *s, cport_addr *addr);

/* What the POSIX layer keeps of a socket, whichever POSIX backend runs:
 * the first bytes of s->be, which each backend's own per-socket struct
 * begins with (zeroed when a slot is reused). */
typedef struct cp_posix_sock {
  /* Per cp_dir: the last attempt found the OS side exhausted (EAGAIN, or a
   * stream recv that emptied the receive queue). epoll clears it on the
   * next edge of that direction and makes no attempt before. */
  uint8_t exhausted[2];
} cp_posix_sock;
_Static_assert(sizeof(cp_posix_sock) <= CP_BACKEND_SOCK_SIZE, "cp_posix_sock fits in cp_sock.be");

static inline cp_posix_sock *cp_posix_sock_of(cp_sock *s) { return (cp_posix_sock *)(void *)s->be; }

/* An attempt found direction dir of s exhausted. */
static inline void cp_posix_exhaust(cp_sock *s, int dir) {
  cp_posix_sock_of(s)->exhausted[dir] = 1;
}

/* Both directions may make progress again (an option or a connect
 * changed what the OS will do). */
static inline void cp_posix_refresh(cp_sock *s) {
  cp_posix_sock_of(s)->exhausted[CP_RD] = cp_posix_sock_of(s)->exhausted[CP_WR] = 0;
}

/* Whether errno value e means "would block"; if so, marks direction dir
 * of s exhausted (cp_posix_sock). */
bool cp_posix_blocked(cp_sock *s, int dir, int e);

/* One non-blocking attempt to progress op: CPORT_OK when it ended well,
 * CP_PENDING when it would block, or an error. */
int cp_posix_try(cp_sock *s, cp_op *op);

/* The same for sendmsg and recvmsg (op->buf is the cport_msghdr). */
int cp_posix_sendmsg(cp_sock *s, cp_op *op);
int cp_posix_recvmsg(cp_sock *s, cp_op *op);

#endif
