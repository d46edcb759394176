/* The IOCP backend's connects (completion mode): ConnectEx on stream
 * sockets, a plain connect() on datagram sockets (it only sets the peer). */
#include "iocp_int.h"

static int update_connect(cp_sock *s) {
  if (setsockopt(SOCK(s), SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) != 0)
    return cp_win_last();
  return CPORT_OK;
}

int cp_iocp_cm_connect(cp_sock *s, cp_op *op) {
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
  cp_io *io = cp_io_new(s, op, IO_CONNECT);
  if (!io) return CPORT_ENOMEM;
  if (connectex(SOCK(s), (struct sockaddr *)&ss, len, NULL, 0, NULL, &io->ov)) {
    cp_io_done_now(s, io);
    return update_connect(s);
  }
  int err = WSAGetLastError();
  if (err != ERROR_IO_PENDING) {
    cp_io_free(io);
    return cp_win_err((uint32_t)err);
  }
  cp_io_in_flight(op, io);
  s->connecting = 1;
  return CP_PENDING;
}

void cp_iocp_on_connect(cp_sock *s, cp_io *io) {
  cp_op *op = io->op;
  uint32_t status = (uint32_t)io->ov.Internal;
  cp_io_free(io);
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
    rc = cp_win_nterr(status); /* STATUS_CONNECTION_REFUSED: ECONNREFUSED */
  cp_op_done(op, rc);
}
