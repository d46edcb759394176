/* POSIX socket calls shared by the Linux backends: addresses, the
 * synchronous calls, and one non-blocking attempt at each operation. */
#define _GNU_SOURCE /* accept4, pthread_condattr_setclock */
#include "posix.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "cp_sockaddr.h" /* after the OS headers it relies on */

#define FD(s) ((int)(s)->os)

int cp_addr_to_os(const cport_addr *a, struct sockaddr_storage *ss, socklen_t *len) {
  size_t n = 0;
  int rc = cp_sockaddr_from_addr(a, ss, &n);
  *len = (socklen_t)n;
  return rc;
}

/* Callers pass what the OS filled in; Linux ends an AF_UNIX path (or an
 * unnamed one) with a NUL, so the whole structure may be read. */
void cp_addr_from_os(const struct sockaddr_storage *ss, cport_addr *a) {
  (void)cp_sockaddr_to_addr((const struct sockaddr *)ss, sizeof *ss, a);
}

static int os_domain(int family) {
  return family == CPORT_AF_INET6 ? AF_INET6 : family == CPORT_AF_UNIX ? AF_UNIX : AF_INET;
}

int cp_os_family_supported(int family) {
  int fd = socket(os_domain(family), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  close(fd);
  return 1;
}

int cp_posix_socket(cp_sock *s) {
  int domain = os_domain(s->family);
  int type = s->type == CPORT_SOCK_DGRAM ? SOCK_DGRAM : SOCK_STREAM;
  int fd = socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return cp_errno_to_err(errno);
  /* IPv6 sockets start IPv6-only, as on Windows, so a program behaves the
   * same on both; ipv6.v6only = 0 gives dual stack. */
  int one = 1;
  if (domain == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) != 0) {
    int rc = cp_errno_to_err(errno);
    close(fd);
    return rc;
  }
  s->os = (uintptr_t)fd;
  return CPORT_OK;
}

int cp_posix_bind(cp_sock *s, const cport_addr *addr) {
  struct sockaddr_storage ss;
  socklen_t len;
  int rc = cp_addr_to_os(addr, &ss, &len);
  if (rc != CPORT_OK) return rc;
  if (s->type == CPORT_SOCK_STREAM && s->family != CPORT_AF_UNIX) {
    /* As libuv does: a restarted server can rebind a port in TIME_WAIT. */
    int one = 1;
    if (setsockopt(FD(s), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
      return cp_errno_to_err(errno);
  }
  return bind(FD(s), (struct sockaddr *)&ss, len) == 0 ? CPORT_OK : cp_errno_to_err(errno);
}

int cp_posix_listen(cp_sock *s, int backlog) {
  if (backlog <= 0) backlog = SOMAXCONN;
  return listen(FD(s), backlog) == 0 ? CPORT_OK : cp_errno_to_err(errno);
}

int cp_posix_shutdown(cp_sock *s, int how) {
  cp_posix_refresh(s); /* calls may now end at once */
  int os_how = how == CPORT_SHUT_RD ? SHUT_RD : how == CPORT_SHUT_WR ? SHUT_WR : SHUT_RDWR;
  return shutdown(FD(s), os_how) == 0 ? CPORT_OK : cp_errno_to_err(errno);
}

static int name_of(cp_sock *s, cport_addr *addr, bool peer) {
  struct sockaddr_storage ss;
  ss.ss_family = AF_UNSPEC; /* an unnamed AF_UNIX peer leaves it untouched */
  socklen_t len = sizeof ss;
  int rc = peer ? getpeername(FD(s), (struct sockaddr *)&ss, &len)
                : getsockname(FD(s), (struct sockaddr *)&ss, &len);
  if (rc != 0) return cp_errno_to_err(errno);
  cp_addr_from_os(&ss, addr);
  return CPORT_OK;
}

int cp_posix_sockname(cp_sock *s, cport_addr *addr) { return name_of(s, addr, false); }
int cp_posix_peername(cp_sock *s, cport_addr *addr) { return name_of(s, addr, true); }

/* ---- one attempt at each operation --------------------------------------- */

static bool would_block(int e) { return e == EAGAIN || e == EWOULDBLOCK; }

bool cp_posix_blocked(cp_sock *s, int dir, int e) {
  if (!would_block(e)) return false;
  cp_posix_exhaust(s, dir);
  return true;
}

static int try_recv(cp_sock *s, cp_op *op) {
  for (;;) {
    size_t want = op->len - op->done;
    ssize_t n = recv(FD(s), op->buf + op->done, want, 0);
    if (n > 0) {
      op->done += (size_t)n;
      if ((size_t)n < want) cp_posix_exhaust(s, CP_RD); /* a stream recv takes all there is */
      if (!(op->flags & CPORT_WAITALL) || op->done == op->len) return CPORT_OK;
      continue;
    }
    if (n == 0) return CPORT_OK; /* orderly shutdown: done holds what came before */
    if (errno == EINTR) continue;
    if (cp_posix_blocked(s, CP_RD, errno))
      return op->done > 0 && !(op->flags & CPORT_WAITALL) ? CPORT_OK : CP_PENDING;
    return cp_errno_to_err(errno);
  }
}

/* A short write means the send buffer is full (Linux then flags the socket
 * so that freed space raises an edge): wait for it instead of asking the
 * kernel again only to hear EAGAIN. */
static int try_send(cp_sock *s, cp_op *op) {
  while (op->done < op->len) {
    size_t want = op->len - op->done;
    ssize_t n = send(FD(s), op->buf + op->done, want, MSG_NOSIGNAL);
    if (n >= 0) {
      op->done += (size_t)n;
      if ((size_t)n < want) {
        cp_posix_exhaust(s, CP_WR);
        return CP_PENDING;
      }
      continue;
    }
    if (errno == EINTR) continue;
    if (cp_posix_blocked(s, CP_WR, errno)) return CP_PENDING;
    return cp_errno_to_err(errno);
  }
  return CPORT_OK;
}

/* One datagram, whole: a datagram socket never sends part of one. */
static int try_sendto(cp_sock *s, cp_op *op) {
  struct sockaddr_storage ss;
  socklen_t len = 0;
  if (op->kind == CPORT_OP_SENDTO) {
    int rc = cp_addr_to_os(&op->addr, &ss, &len);
    if (rc != CPORT_OK) return rc;
  }
  for (;;) {
    ssize_t n =
        sendto(FD(s), op->buf, op->len, MSG_NOSIGNAL, len ? (struct sockaddr *)&ss : NULL, len);
    if (n >= 0) {
      op->done = (size_t)n;
      return CPORT_OK;
    }
    if (errno == EINTR) continue;
    return cp_posix_blocked(s, CP_WR, errno) ? CP_PENDING : cp_errno_to_err(errno);
  }
}

/* One datagram; recvmsg tells truncation the same way for recv and
 * recvfrom. */
static int try_recvfrom(cp_sock *s, cp_op *op) {
  struct sockaddr_storage ss;
  ss.ss_family = AF_UNSPEC; /* an unnamed sender leaves it untouched */
  struct iovec iov = {.iov_base = op->buf, .iov_len = op->len};
  struct msghdr mh = {.msg_name = &ss, .msg_namelen = sizeof ss, .msg_iov = &iov, .msg_iovlen = 1};
  for (;;) {
    ssize_t n = recvmsg(FD(s), &mh, 0);
    if (n >= 0) {
      op->done = (size_t)n;
      op->msg_flags = mh.msg_flags & MSG_TRUNC ? CPORT_MSG_TRUNC : 0;
      cp_addr_from_os(&ss, &op->addr);
      return CPORT_OK;
    }
    if (errno == EINTR) continue;
    return cp_posix_blocked(s, CP_RD, errno) ? CP_PENDING : cp_errno_to_err(errno);
  }
}

/* Errors that concern one queued connection, not the listener. */
static bool retry_accept(int e) {
  return e == ECONNABORTED || e == EPROTO || e == EINTR || e == EPERM;
}

static int try_accept(cp_sock *s, cp_op *op) {
  for (;;) {
    int fd = accept4(FD(s), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      int rc = cp_sock_adopt(s, (uintptr_t)fd, &op->accepted);
      if (rc != CPORT_OK) close(fd);
      return rc;
    }
    if (retry_accept(errno)) continue;
    if (cp_posix_blocked(s, CP_RD, errno)) return CP_PENDING;
    return cp_errno_to_err(errno);
  }
}

static int begin_connect(cp_sock *s, cp_op *op) {
  struct sockaddr_storage ss;
  socklen_t len;
  int rc = cp_addr_to_os(&op->addr, &ss, &len);
  if (rc != CPORT_OK) return rc;
  while (connect(FD(s), (struct sockaddr *)&ss, len) != 0) {
    if (errno == EINTR) continue;
    if (errno != EINPROGRESS) return cp_errno_to_err(errno);
    s->connecting = 1;
    return CP_PENDING;
  }
  return CPORT_OK;
}

static int finish_connect(cp_sock *s) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(FD(s), SOL_SOCKET, SO_ERROR, &err, &len) != 0) return cp_errno_to_err(errno);
  if (err != 0) return cp_errno_to_err(err);
  struct sockaddr_storage ss;
  len = sizeof ss;
  if (getpeername(FD(s), (struct sockaddr *)&ss, &len) == 0) return CPORT_OK;
  return errno == ENOTCONN ? CP_PENDING : cp_errno_to_err(errno);
}

int cp_posix_try(cp_sock *s, cp_op *op) {
  if (op->kind == CPORT_OP_SENDMSG) return cp_posix_sendmsg(s, op);
  if (op->kind == CPORT_OP_RECVMSG) return cp_posix_recvmsg(s, op);
  if (s->type == CPORT_SOCK_DGRAM) {
    if (op->kind == CPORT_OP_SEND || op->kind == CPORT_OP_SENDTO) return try_sendto(s, op);
    if (op->kind == CPORT_OP_RECV || op->kind == CPORT_OP_RECVFROM) return try_recvfrom(s, op);
  }
  switch (op->kind) {
  case CPORT_OP_RECV: return try_recv(s, op);
  case CPORT_OP_SEND: return try_send(s, op);
  case CPORT_OP_ACCEPT: return try_accept(s, op);
  case CPORT_OP_CONNECT: return s->connecting ? finish_connect(s) : begin_connect(s, op);
  default: return CPORT_EINVAL;
  }
}
