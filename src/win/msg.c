/* sendmsg and recvmsg on Windows: the caller's iovecs as WSABUFs (past what
 * already went), and portable control data (pktinfo, TOS) in and out of
 * WSACMSGHDRs. The twin of src/posix/msg.c.
 *
 * Datagram sockets use WSASendMsg and WSARecvMsg (the latter is an
 * extension function, fetched per family). Windows has those for datagram
 * and raw sockets only, so stream sockets use WSASend/WSARecv with the
 * gathered buffers: a stream has no per-message address or control data.
 *
 * Wine 8 notes (checked against its source, dlls/ws2_32/socket.c): its
 * WSASendMsg ignores the control buffer (it is a plain WSASendTo), so a
 * sendmsg with has_pktinfo leaves from the default address there; received
 * control data (IP_PKTINFO, IPV6_PKTINFO, IP_TOS as an INT) matches
 * Windows. Its truncation signal is the status (STATUS_BUFFER_OVERFLOW /
 * WSAEMSGSIZE), not MSG_TRUNC in dwFlags; Windows sets both, and we take
 * either. */
#include "cp_win.h"

#include <string.h>

ULONG cp_win_msg_bufs(const cport_msghdr *m, size_t skip, WSABUF *out) {
  ULONG n = 0;
  for (int i = 0; i < m->iovcnt; i++) {
    size_t len = m->iov[i].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    /* The core capped the total at CP_MAX_IO_LEN, so each fits a ULONG. */
    out[n].buf = (char *)m->iov[i].base + skip;
    out[n].len = (ULONG)(len - skip);
    skip = 0;
    n++;
  }
  return n;
}

/* WSA_CMSGHDR_ALIGN and WSA_CMSG_SPACE, in unsigned arithmetic (mingw's
 * macros mix in a signed mask, which -Wsign-conversion rejects). */
#define CMSG_ALIGN_TO ((size_t) _Alignof(WSACMSGHDR))
static size_t cmsg_align(size_t len) { return (len + CMSG_ALIGN_TO - 1) & ~(CMSG_ALIGN_TO - 1); }
static size_t cmsg_space(size_t len) { return cmsg_align(WSA_CMSG_LEN(0)) + cmsg_align(len); }

/* One control header at *off in mb's control buffer; returns its space. */
static size_t put_cmsg(cp_msgbuf *mb, size_t off, INT level, INT type, const void *data,
                       size_t len) {
  WSACMSGHDR *c = (WSACMSGHDR *)(void *)(mb->control.bytes + off);
  c->cmsg_len = WSA_CMSG_LEN(len);
  c->cmsg_level = level;
  c->cmsg_type = type;
  memcpy(WSA_CMSG_DATA(c), data, len);
  return cmsg_space(len);
}

int cp_win_msg_prep_send(cp_msgbuf *mb, const cp_sock *s, const cport_msghdr *m, size_t skip) {
  memset(&mb->wm, 0, sizeof mb->wm);
  mb->wm.lpBuffers = mb->bufs;
  mb->wm.dwBufferCount = cp_win_msg_bufs(m, skip, mb->bufs);
  if (s->type != CPORT_SOCK_DGRAM) return CPORT_OK; /* WSASend: buffers only */
  if (m->addr.family) {
    int len;
    int rc = cp_win_addr_to_os(&m->addr, &mb->name, &len);
    if (rc != CPORT_OK) return rc;
    mb->wm.name = (struct sockaddr *)&mb->name;
    mb->wm.namelen = len;
  }
  if (m->has_pktinfo) {
    /* Send from m->local (port ignored) and/or out of m->ifindex, as POSIX
     * does with ipi_spec_dst / ipi6_addr. */
    memset(&mb->control, 0, sizeof mb->control);
    size_t used;
    if (s->family == CPORT_AF_INET6) {
      IN6_PKTINFO pi;
      memset(&pi, 0, sizeof pi);
      if (m->local.family == CPORT_AF_INET6) memcpy(&pi.ipi6_addr, m->local.ip, 16);
      pi.ipi6_ifindex = m->ifindex;
      used = put_cmsg(mb, 0, IPPROTO_IPV6, IPV6_PKTINFO, &pi, sizeof pi);
    } else {
      IN_PKTINFO pi;
      memset(&pi, 0, sizeof pi);
      if (m->local.family == CPORT_AF_INET) memcpy(&pi.ipi_addr, m->local.ip, 4);
      pi.ipi_ifindex = m->ifindex;
      used = put_cmsg(mb, 0, IPPROTO_IP, IP_PKTINFO, &pi, sizeof pi);
    }
    mb->wm.Control.buf = mb->control.bytes;
    mb->wm.Control.len = (ULONG)used;
  }
  return CPORT_OK;
}

void cp_win_msg_prep_recv(cp_msgbuf *mb, const cport_msghdr *m, size_t skip) {
  memset(&mb->wm, 0, sizeof mb->wm);
  mb->wm.lpBuffers = mb->bufs;
  mb->wm.dwBufferCount = cp_win_msg_bufs(m, skip, mb->bufs);
  /* Zeroed so that a field the OS leaves alone reads as "nothing": an
   * unnamed sender (family 0), the end of the control data (a header with
   * cmsg_len 0). */
  memset(&mb->name, 0, sizeof mb->name);
  memset(&mb->control, 0, sizeof mb->control);
  mb->wm.name = (struct sockaddr *)&mb->name;
  mb->wm.namelen = (INT)sizeof mb->name;
  mb->wm.Control.buf = mb->control.bytes;
  mb->wm.Control.len = (ULONG)sizeof mb->control;
  mb->wm.dwFlags = 0;
}

/* The control headers the OS wrote, in portable form. Walked by hand with
 * bounds checks: Control.len is trusted only up to the buffer's size, and a
 * header with a bad length ends the walk. */
static void read_control(const cp_msgbuf *mb, cport_msghdr *m) {
  m->has_pktinfo = 0;
  m->tos = -1;
  size_t total = mb->wm.Control.len;
  if (total > sizeof mb->control) total = sizeof mb->control;
  const size_t hdr = WSA_CMSG_LEN(0); /* header, aligned: where data starts */
  size_t off = 0;
  while (off + hdr <= total) {
    const WSACMSGHDR *c = (const WSACMSGHDR *)(const void *)(mb->control.bytes + off);
    if (c->cmsg_len < hdr || c->cmsg_len > total - off) break;
    const unsigned char *data = (const unsigned char *)c + hdr;
    size_t dlen = c->cmsg_len - hdr;
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && dlen >= sizeof(IN_PKTINFO)) {
      IN_PKTINFO pi;
      memcpy(&pi, data, sizeof pi);
      memset(&m->local, 0, sizeof m->local);
      m->local.family = CPORT_AF_INET;
      memcpy(m->local.ip, &pi.ipi_addr, 4);
      m->ifindex = pi.ipi_ifindex;
      m->has_pktinfo = 1;
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
               dlen >= sizeof(IN6_PKTINFO)) {
      IN6_PKTINFO pi;
      memcpy(&pi, data, sizeof pi);
      memset(&m->local, 0, sizeof m->local);
      m->local.family = CPORT_AF_INET6;
      memcpy(m->local.ip, &pi.ipi6_addr, 16);
      m->ifindex = pi.ipi6_ifindex;
      m->has_pktinfo = 1;
    } else if (c->cmsg_level == IPPROTO_IP &&
               (c->cmsg_type == IP_TOS || c->cmsg_type == IP_RECVTOS) && dlen >= 1) {
      /* Windows and Wine hand the TOS over as an INT; a single byte is
       * accepted too (as Linux sends it). */
      if (dlen >= sizeof(INT)) {
        INT v;
        memcpy(&v, data, sizeof v);
        m->tos = v & 0xff;
      } else {
        m->tos = data[0];
      }
    }
    size_t step = cmsg_align(c->cmsg_len);
    if (step == 0) break;
    off += step;
  }
}

void cp_win_msg_recv_done(cp_msgbuf *mb, cp_op *op, size_t bytes, bool overflow) {
  cport_msghdr *m = (cport_msghdr *)(void *)op->buf;
  op->done = bytes;
  /* A too-small control buffer also reads as an overflow under Wine
   * (MSG_CTRUNC with STATUS_BUFFER_OVERFLOW): only a full data buffer then
   * means the datagram itself was cut. */
  bool trunc = (mb->wm.dwFlags & MSG_TRUNC) != 0 ||
               (overflow && (!(mb->wm.dwFlags & MSG_CTRUNC) || bytes >= op->len));
  op->msg_flags = trunc ? CPORT_MSG_TRUNC : 0u;
  m->flags = op->msg_flags;
  INT namelen = mb->wm.namelen;
  if (namelen < 0 || namelen > (INT)sizeof mb->name) namelen = (INT)sizeof mb->name;
  /* No sender (family 0) leaves m->addr zeroed, as on POSIX. */
  (void)cp_win_addr_from_os((const struct sockaddr *)&mb->name, namelen, &m->addr);
  read_control(mb, m);
}

int cp_win_msg_call(cp_sock *s, cp_op *op, cp_msgbuf *mb, DWORD *bytes, DWORD *flags,
                    OVERLAPPED *ov) {
  SOCKET sock = (SOCKET)s->os;
  bool dgram = s->type == CPORT_SOCK_DGRAM;
  *bytes = 0;
  if (op->kind == CPORT_OP_SENDMSG) {
    if (dgram) return WSASendMsg(sock, &mb->wm, 0, bytes, ov, NULL);
    return WSASend(sock, mb->bufs, mb->wm.dwBufferCount, bytes, 0, ov, NULL);
  }
  if (dgram) {
    LPFN_WSARECVMSG recvmsg_fn = cp_win_wsarecvmsg(sock, s->family);
    if (!recvmsg_fn) return SOCKET_ERROR; /* WSAGetLastError: the ioctl's error */
    return recvmsg_fn(sock, &mb->wm, bytes, ov, NULL);
  }
  *flags = 0;
  return WSARecv(sock, mb->bufs, mb->wm.dwBufferCount, bytes, flags, ov, NULL);
}

/* ---- select mode: one non-blocking attempt -------------------------------- */

int cp_win_sel_sendmsg(cp_sock *s, cp_op *op) {
  const cport_msghdr *m = (const cport_msghdr *)(const void *)op->buf;
  bool dgram = s->type == CPORT_SOCK_DGRAM;
  while (op->done < op->len) {
    cp_msgbuf mb;
    int rc = cp_win_msg_prep_send(&mb, s, m, dgram ? 0 : op->done);
    if (rc != CPORT_OK) return rc;
    DWORD n = 0, flags = 0;
    if (cp_win_msg_call(s, op, &mb, &n, &flags, NULL) == 0) {
      if (dgram) {
        op->done = n; /* one datagram, whole */
        return CPORT_OK;
      }
      op->done += n;
      continue;
    }
    int err = WSAGetLastError();
    if (err == WSAEINTR) continue;
    if (err == WSAEWOULDBLOCK) return CP_PENDING;
    return cp_win_err((uint32_t)err);
  }
  return CPORT_OK;
}

int cp_win_sel_recvmsg(cp_sock *s, cp_op *op) {
  cport_msghdr *m = (cport_msghdr *)(void *)op->buf;
  bool dgram = s->type == CPORT_SOCK_DGRAM;
  bool all = (op->flags & CPORT_WAITALL) != 0;
  if (!dgram && s->shut_rd) return CPORT_OK; /* EOF after our own SHUT_RD */
  for (;;) {
    cp_msgbuf mb;
    cp_win_msg_prep_recv(&mb, m, dgram ? 0 : op->done);
    DWORD n = 0, flags = 0;
    int r = cp_win_msg_call(s, op, &mb, &n, &flags, NULL);
    int err = r == 0 ? 0 : WSAGetLastError();
    if (dgram) {
      if (r == 0 || err == WSAEMSGSIZE) {
        /* WSAEMSGSIZE: the buffers hold the start of the datagram, the
         * rest is lost. */
        cp_win_msg_recv_done(&mb, op, r == 0 ? n : op->len, r != 0);
        return CPORT_OK;
      }
    } else if (r == 0) {
      m->flags = 0;
      if (n == 0) return CPORT_OK; /* orderly shutdown: done holds what came before */
      op->done += n;
      if (!all || op->done == op->len) return CPORT_OK;
      continue;
    }
    if (err == WSAEINTR) continue;
    if (err == WSAEWOULDBLOCK) return !dgram && op->done > 0 && !all ? CPORT_OK : CP_PENDING;
    if (!dgram && (err == WSAESHUTDOWN || err == WSAEDISCON)) return CPORT_OK; /* our SD_RECEIVE */
    return cp_win_err((uint32_t)err);
  }
}
