/* sendmsg and recvmsg on POSIX: the caller's iovecs (past what already
 * went) and portable control data (pktinfo, TOS) in and out of cmsgs. */
#define _GNU_SOURCE /* struct in6_pktinfo */
#include "posix.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#define CONTROL_SPACE 256

/* The iovecs of m from byte offset skip on; returns how many. */
static int remaining_iov(const cport_msghdr *m, size_t skip, struct iovec out[CPORT_IOV_MAX]) {
  int n = 0;
  for (int i = 0; i < m->iovcnt; i++) {
    size_t len = m->iov[i].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    out[n].iov_base = (char *)m->iov[i].base + skip;
    out[n].iov_len = len - skip;
    skip = 0;
    n++;
  }
  return n;
}

static size_t put_pktinfo(const cp_sock *s, const cport_msghdr *m, char *control) {
  struct cmsghdr *c = (struct cmsghdr *)control;
  if (s->family == CPORT_AF_INET) {
    struct in_pktinfo pi = {.ipi_ifindex = (int)m->ifindex};
    memcpy(&pi.ipi_spec_dst, m->local.ip, 4);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof pi);
    memcpy(CMSG_DATA(c), &pi, sizeof pi);
    return CMSG_SPACE(sizeof pi);
  }
  struct in6_pktinfo pi = {.ipi6_ifindex = m->ifindex};
  memcpy(&pi.ipi6_addr, m->local.ip, 16);
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof pi);
  memcpy(CMSG_DATA(c), &pi, sizeof pi);
  return CMSG_SPACE(sizeof pi);
}

int cp_posix_sendmsg(cp_sock *s, cp_op *op) {
  const cport_msghdr *m = (const cport_msghdr *)op->buf;
  struct iovec iov[CPORT_IOV_MAX];
  struct sockaddr_storage ss;
  _Alignas(struct cmsghdr) char control[CONTROL_SPACE];
  struct msghdr mh = {0};
  if (m->addr.family) {
    int rc = cp_addr_to_os(&m->addr, &ss, &mh.msg_namelen);
    if (rc != CPORT_OK) return rc;
    mh.msg_name = &ss;
  }
  if (m->has_pktinfo && s->type == CPORT_SOCK_DGRAM) {
    memset(control, 0, sizeof control);
    mh.msg_control = control;
    mh.msg_controllen = put_pktinfo(s, m, control);
  }
  while (op->done < op->len) {
    mh.msg_iov = iov;
    mh.msg_iovlen = (size_t)remaining_iov(m, op->done, iov);
    ssize_t n = sendmsg((int)s->os, &mh, MSG_NOSIGNAL);
    if (n >= 0) {
      op->done += (size_t)n;
      if (s->type == CPORT_SOCK_DGRAM) return CPORT_OK;
      continue;
    }
    if (errno == EINTR) continue;
    return cp_posix_blocked(s, CP_WR, errno) ? CP_PENDING : cp_errno_to_err(errno);
  }
  return CPORT_OK;
}

static void read_control(struct msghdr *mh, cport_msghdr *m) {
  m->has_pktinfo = 0;
  m->tos = -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      struct in_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      memset(&m->local, 0, sizeof m->local);
      m->local.family = CPORT_AF_INET;
      memcpy(m->local.ip, &pi.ipi_addr, 4);
      m->ifindex = (uint32_t)pi.ipi_ifindex;
      m->has_pktinfo = 1;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      struct in6_pktinfo pi;
      memcpy(&pi, CMSG_DATA(c), sizeof pi);
      memset(&m->local, 0, sizeof m->local);
      m->local.family = CPORT_AF_INET6;
      memcpy(m->local.ip, &pi.ipi6_addr, 16);
      m->ifindex = pi.ipi6_ifindex;
      m->has_pktinfo = 1;
    } else if (c->cmsg_level == IPPROTO_IP &&
               (c->cmsg_type == IP_TOS || c->cmsg_type == IP_RECVTOS)) {
      m->tos = *(const unsigned char *)CMSG_DATA(c);
    }
  }
}

int cp_posix_recvmsg(cp_sock *s, cp_op *op) {
  cport_msghdr *m = (cport_msghdr *)op->buf;
  struct iovec iov[CPORT_IOV_MAX];
  struct sockaddr_storage ss;
  _Alignas(struct cmsghdr) char control[CONTROL_SPACE];
  bool dgram = s->type == CPORT_SOCK_DGRAM;
  ss.ss_family = AF_UNSPEC; /* an unnamed sender leaves it untouched */
  for (;;) {
    struct msghdr mh = {.msg_name = dgram ? &ss : NULL,
                        .msg_namelen = dgram ? sizeof ss : 0,
                        .msg_iov = iov,
                        .msg_iovlen = (size_t)remaining_iov(m, op->done, iov),
                        .msg_control = dgram ? control : NULL,
                        .msg_controllen = dgram ? sizeof control : 0};
    size_t want = op->len - op->done;
    ssize_t n = recvmsg((int)s->os, &mh, 0);
    if (n >= 0) {
      op->done += (size_t)n;
      if (dgram) {
        cp_addr_from_os(&ss, &m->addr);
        m->flags = op->msg_flags = mh.msg_flags & MSG_TRUNC ? CPORT_MSG_TRUNC : 0;
        read_control(&mh, m);
        return CPORT_OK;
      }
      m->flags = 0;
      if (n > 0 && (size_t)n < want) cp_posix_exhaust(s, CP_RD); /* emptied the queue */
      if (n == 0 || !(op->flags & CPORT_WAITALL) || op->done == op->len) return CPORT_OK;
      continue;
    }
    if (errno == EINTR) continue;
    if (cp_posix_blocked(s, CP_RD, errno))
      return op->done > 0 && !(op->flags & CPORT_WAITALL) ? CPORT_OK : CP_PENDING;
    return cp_errno_to_err(errno);
  }
}
