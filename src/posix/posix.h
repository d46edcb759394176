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

/* Whether errno value e means "would block"; if so, marks direction dir
 * of s exhausted (see cp_sock.exhausted). */
bool cp_posix_blocked(cp_sock *s, int dir, int e);

/* One non-blocking attempt to progress op: CPORT_OK when it ended well,
 * CP_PENDING when it would block, or an error. */
int cp_posix_try(cp_sock *s, cp_op *op);

/* The same for sendmsg and recvmsg (op->buf is the cport_msghdr). */
int cp_posix_sendmsg(cp_sock *s, cp_op *op);
int cp_posix_recvmsg(cp_sock *s, cp_op *op);

#endif
