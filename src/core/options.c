/* The option table: which level owns each option, its value type and
 * range, and which sockets it applies to. The core checks all of that, and
 * answers the otp level and the facts it already knows; the platform layer
 * (cp_os_*) talks to the OS. */
#include "core.h"

#include <stddef.h>

enum applies { ANY = 0, STREAM = 1, DGRAM = 2, INET = 4, INET6 = 8 };

typedef struct opt_def {
  cport_option opt;
  cport_level level;
  const char *name;
  cport_val_type type;
  int min, max; /* CPORT_VAL_INT range */
  bool readonly;
  unsigned applies;
} opt_def;

#define INT_ANY (-0x7fffffff - 1), 0x7fffffff
#define NOINT 0, 0

static const opt_def k_opts[] = {
    {CPORT_OPT_OTP_OWNER, CPORT_LEVEL_OTP, "otp.owner", CPORT_VAL_QUEUE, NOINT, false, ANY},
    {CPORT_OPT_OTP_DEBUG, CPORT_LEVEL_OTP, "otp.debug", CPORT_VAL_BOOL, NOINT, false, ANY},
    {CPORT_OPT_OTP_USE_REGISTRY, CPORT_LEVEL_OTP, "otp.use_registry", CPORT_VAL_BOOL, NOINT, false,
     ANY},
    {CPORT_OPT_OTP_FD, CPORT_LEVEL_OTP, "otp.fd", CPORT_VAL_U64, NOINT, true, ANY},
    {CPORT_OPT_OTP_META, CPORT_LEVEL_OTP, "otp.meta", CPORT_VAL_PTR, NOINT, false, ANY},
    {CPORT_OPT_OTP_ZERO_READ, CPORT_LEVEL_OTP, "otp.zero_read", CPORT_VAL_BOOL, NOINT, false,
     STREAM},
    {CPORT_OPT_OTP_RCVBUF, CPORT_LEVEL_OTP, "otp.rcvbuf", CPORT_VAL_INT, 1, CP_MAX_RCVBUF, false,
     ANY},
    {CPORT_OPT_OTP_RECV_TIMEOUT, CPORT_LEVEL_OTP, "otp.recv_timeout", CPORT_VAL_INT, 0, 0x7fffffff,
     false, ANY},
    {CPORT_OPT_OTP_SEND_TIMEOUT, CPORT_LEVEL_OTP, "otp.send_timeout", CPORT_VAL_INT, 0, 0x7fffffff,
     false, ANY},
    {CPORT_OPT_OTP_DEFER, CPORT_LEVEL_OTP, "otp.defer", CPORT_VAL_BOOL, NOINT, false, ANY},
    {CPORT_OPT_OTP_RCV_OUTSTANDING, CPORT_LEVEL_OTP, "otp.rcv_outstanding", CPORT_VAL_INT, 1,
     CP_MAX_RCV_OUTSTANDING, false, STREAM},

    {CPORT_OPT_SOCKET_REUSEADDR, CPORT_LEVEL_SOCKET, "socket.reuseaddr", CPORT_VAL_BOOL, NOINT,
     false, ANY},
    {CPORT_OPT_SOCKET_REUSEPORT, CPORT_LEVEL_SOCKET, "socket.reuseport", CPORT_VAL_BOOL, NOINT,
     false, ANY},
    {CPORT_OPT_SOCKET_EXCLUSIVEADDRUSE, CPORT_LEVEL_SOCKET, "socket.exclusiveaddruse",
     CPORT_VAL_BOOL, NOINT, false, ANY},
    {CPORT_OPT_SOCKET_KEEPALIVE, CPORT_LEVEL_SOCKET, "socket.keepalive", CPORT_VAL_BOOL, NOINT,
     false, STREAM},
    {CPORT_OPT_SOCKET_LINGER, CPORT_LEVEL_SOCKET, "socket.linger", CPORT_VAL_LINGER, NOINT, false,
     STREAM},
    {CPORT_OPT_SOCKET_RCVBUF, CPORT_LEVEL_SOCKET, "socket.rcvbuf", CPORT_VAL_INT, 0, 0x7fffffff,
     false, ANY},
    {CPORT_OPT_SOCKET_SNDBUF, CPORT_LEVEL_SOCKET, "socket.sndbuf", CPORT_VAL_INT, 0, 0x7fffffff,
     false, ANY},
    {CPORT_OPT_SOCKET_RCVLOWAT, CPORT_LEVEL_SOCKET, "socket.rcvlowat", CPORT_VAL_INT, 1, 0x7fffffff,
     false, ANY},
    {CPORT_OPT_SOCKET_BROADCAST, CPORT_LEVEL_SOCKET, "socket.broadcast", CPORT_VAL_BOOL, NOINT,
     false, DGRAM | INET},
    {CPORT_OPT_SOCKET_TYPE, CPORT_LEVEL_SOCKET, "socket.type", CPORT_VAL_INT, NOINT, true, ANY},
    {CPORT_OPT_SOCKET_PROTOCOL, CPORT_LEVEL_SOCKET, "socket.protocol", CPORT_VAL_INT, NOINT, true,
     ANY},
    {CPORT_OPT_SOCKET_DOMAIN, CPORT_LEVEL_SOCKET, "socket.domain", CPORT_VAL_INT, NOINT, true, ANY},
    {CPORT_OPT_SOCKET_ACCEPTCONN, CPORT_LEVEL_SOCKET, "socket.acceptconn", CPORT_VAL_BOOL, NOINT,
     true, ANY},
    {CPORT_OPT_SOCKET_ERROR, CPORT_LEVEL_SOCKET, "socket.error", CPORT_VAL_INT, NOINT, true, ANY},

    {CPORT_OPT_IP_TOS, CPORT_LEVEL_IP, "ip.tos", CPORT_VAL_INT, 0, 255, false, INET},
    {CPORT_OPT_IP_TTL, CPORT_LEVEL_IP, "ip.ttl", CPORT_VAL_INT, 1, 255, false, INET},
    {CPORT_OPT_IP_MULTICAST_IF, CPORT_LEVEL_IP, "ip.multicast_if", CPORT_VAL_ADDR, NOINT, false,
     DGRAM | INET},
    {CPORT_OPT_IP_MULTICAST_TTL, CPORT_LEVEL_IP, "ip.multicast_ttl", CPORT_VAL_INT, 0, 255, false,
     DGRAM | INET},
    {CPORT_OPT_IP_MULTICAST_LOOP, CPORT_LEVEL_IP, "ip.multicast_loop", CPORT_VAL_BOOL, NOINT, false,
     DGRAM | INET},
    {CPORT_OPT_IP_ADD_MEMBERSHIP, CPORT_LEVEL_IP, "ip.add_membership", CPORT_VAL_MREQ, NOINT, false,
     DGRAM | INET},
    {CPORT_OPT_IP_DROP_MEMBERSHIP, CPORT_LEVEL_IP, "ip.drop_membership", CPORT_VAL_MREQ, NOINT,
     false, DGRAM | INET},
    {CPORT_OPT_IP_RECVTOS, CPORT_LEVEL_IP, "ip.recvtos", CPORT_VAL_BOOL, NOINT, false,
     DGRAM | INET},
    {CPORT_OPT_IP_PKTINFO, CPORT_LEVEL_IP, "ip.pktinfo", CPORT_VAL_BOOL, NOINT, false,
     DGRAM | INET},

    {CPORT_OPT_IPV6_V6ONLY, CPORT_LEVEL_IPV6, "ipv6.v6only", CPORT_VAL_BOOL, NOINT, false, INET6},
    {CPORT_OPT_IPV6_UNICAST_HOPS, CPORT_LEVEL_IPV6, "ipv6.unicast_hops", CPORT_VAL_INT, -1, 255,
     false, INET6},
    {CPORT_OPT_IPV6_MULTICAST_HOPS, CPORT_LEVEL_IPV6, "ipv6.multicast_hops", CPORT_VAL_INT, -1, 255,
     false, DGRAM | INET6},
    {CPORT_OPT_IPV6_MULTICAST_LOOP, CPORT_LEVEL_IPV6, "ipv6.multicast_loop", CPORT_VAL_BOOL, NOINT,
     false, DGRAM | INET6},
    {CPORT_OPT_IPV6_ADD_MEMBERSHIP, CPORT_LEVEL_IPV6, "ipv6.add_membership", CPORT_VAL_MREQ, NOINT,
     false, DGRAM | INET6},
    {CPORT_OPT_IPV6_DROP_MEMBERSHIP, CPORT_LEVEL_IPV6, "ipv6.drop_membership", CPORT_VAL_MREQ,
     NOINT, false, DGRAM | INET6},
    {CPORT_OPT_IPV6_RECVPKTINFO, CPORT_LEVEL_IPV6, "ipv6.recvpktinfo", CPORT_VAL_BOOL, NOINT, false,
     DGRAM | INET6},

    {CPORT_OPT_TCP_NODELAY, CPORT_LEVEL_TCP, "tcp.nodelay", CPORT_VAL_BOOL, NOINT, false, STREAM},
    {CPORT_OPT_TCP_MAXSEG, CPORT_LEVEL_TCP, "tcp.maxseg", CPORT_VAL_INT, 1, 0xffff, false, STREAM},
    {CPORT_OPT_TCP_KEEPIDLE, CPORT_LEVEL_TCP, "tcp.keepidle", CPORT_VAL_INT, 1, 0x7fff, false,
     STREAM},
    {CPORT_OPT_TCP_KEEPINTVL, CPORT_LEVEL_TCP, "tcp.keepintvl", CPORT_VAL_INT, 1, 0x7fff, false,
     STREAM},
    {CPORT_OPT_TCP_KEEPCNT, CPORT_LEVEL_TCP, "tcp.keepcnt", CPORT_VAL_INT, 1, 127, false, STREAM},
    {CPORT_OPT_TCP_CORK, CPORT_LEVEL_TCP, "tcp.cork", CPORT_VAL_BOOL, NOINT, false, STREAM},
    {CPORT_OPT_TCP_NOPUSH, CPORT_LEVEL_TCP, "tcp.nopush", CPORT_VAL_BOOL, NOINT, false, STREAM},

    {CPORT_OPT_UDP_CORK, CPORT_LEVEL_UDP, "udp.cork", CPORT_VAL_BOOL, NOINT, false, DGRAM},
};

static const opt_def *find(cport_level level, cport_option opt) {
  for (size_t i = 0; i < sizeof k_opts / sizeof k_opts[0]; i++)
    if (k_opts[i].opt == opt) return k_opts[i].level == level ? &k_opts[i] : NULL;
  return NULL;
}

const char *cport_option_name(cport_level level, cport_option opt) {
  const opt_def *d = find(level, opt);
  return d ? d->name : NULL;
}

/* Options the core answers from its own state, alike on every platform. */
static bool core_answers(cport_option opt) {
  return (opt >= CPORT_OPT_OTP_OWNER && opt <= CPORT_OPT_OTP_RCV_OUTSTANDING) ||
         opt == CPORT_OPT_SOCKET_TYPE || opt == CPORT_OPT_SOCKET_PROTOCOL ||
         opt == CPORT_OPT_SOCKET_DOMAIN || opt == CPORT_OPT_SOCKET_ACCEPTCONN;
}

int cport_is_supported(cport_level level, cport_option opt) {
  const opt_def *d = find(level, opt);
  if (!d) return 0;
  return core_answers(opt) || cp_os_opt_supported(opt);
}

/* Whether d applies to s: EOPNOTSUPP, like a call on the wrong socket. */
static int applies_to(const opt_def *d, const cp_sock *s) {
  if ((d->applies & STREAM) && s->type != CPORT_SOCK_STREAM) return CPORT_EOPNOTSUPP;
  if ((d->applies & DGRAM) && s->type != CPORT_SOCK_DGRAM) return CPORT_EOPNOTSUPP;
  if ((d->applies & INET6) && s->family != CPORT_AF_INET6) return CPORT_EOPNOTSUPP;
  if ((d->applies & INET) && s->family != CPORT_AF_INET) return CPORT_EOPNOTSUPP;
  return CPORT_OK;
}

static bool valid_mreq_addr(const cport_addr *a, int family) { return a->family == family; }

static int check_value(const opt_def *d, const cp_sock *s, const cport_optval *v) {
  if (v->type != d->type) return CPORT_EINVAL;
  switch (d->type) {
  case CPORT_VAL_BOOL: return v->v.b == 0 || v->v.b == 1 ? CPORT_OK : CPORT_EINVAL;
  case CPORT_VAL_INT: return v->v.i >= d->min && v->v.i <= d->max ? CPORT_OK : CPORT_EINVAL;
  case CPORT_VAL_LINGER:
    return (v->v.linger.onoff == 0 || v->v.linger.onoff == 1) && v->v.linger.seconds >= 0 &&
                   v->v.linger.seconds <= 0xffff
               ? CPORT_OK
               : CPORT_EINVAL;
  case CPORT_VAL_ADDR: return valid_mreq_addr(&v->v.addr, s->family) ? CPORT_OK : CPORT_EINVAL;
  case CPORT_VAL_MREQ:
    if (!valid_mreq_addr(&v->v.mreq.group, s->family)) return CPORT_EINVAL;
    return v->v.mreq.iface.family == 0 || v->v.mreq.iface.family == CPORT_AF_INET ? CPORT_OK
                                                                                  : CPORT_EINVAL;
  case CPORT_VAL_QUEUE: return v->v.queue && v->v.queue->ctx == s->ctx ? CPORT_OK : CPORT_EINVAL;
  default: return CPORT_OK;
  }
}

static int set_owner(cp_sock *s, cport_queue *q) {
  if (q == s->owner) return CPORT_OK;
  int rc = cp_queue_own(q);
  if (rc != CPORT_OK) return rc;
  atomic_fetch_sub(&s->owner->owned, 1);
  s->owner = q; /* messages already delivered stay where they are */
  return CPORT_OK;
}

static int set_otp(cp_sock *s, cport_option opt, const cport_optval *v) {
  switch (opt) {
  case CPORT_OPT_OTP_OWNER: return set_owner(s, v->v.queue);
  case CPORT_OPT_OTP_DEBUG: s->debug = (uint8_t)v->v.b; return CPORT_OK;
  case CPORT_OPT_OTP_USE_REGISTRY:
    cp_registry_remove(s);
    cp_registry_add(s, v->v.b != 0);
    return CPORT_OK;
  case CPORT_OPT_OTP_META: s->meta = v->v.ptr; return CPORT_OK;
  case CPORT_OPT_OTP_ZERO_READ: s->zero_read = (uint8_t)v->v.b; return CPORT_OK;
  case CPORT_OPT_OTP_RCVBUF: s->rcvbuf = (uint32_t)v->v.i; return CPORT_OK;
  case CPORT_OPT_OTP_RECV_TIMEOUT: s->recv_timeout = v->v.i; return CPORT_OK;
  case CPORT_OPT_OTP_SEND_TIMEOUT: s->send_timeout = v->v.i; return CPORT_OK;
  case CPORT_OPT_OTP_DEFER: s->defer = (uint8_t)v->v.b; return CPORT_OK;
  case CPORT_OPT_OTP_RCV_OUTSTANDING: s->rcv_max = (uint32_t)v->v.i; return CPORT_OK;
  default: return CPORT_EINVAL;
  }
}

/* Options the core answers from what it knows, alike on every platform. */
static bool get_known(cp_sock *s, cport_option opt, cport_optval *v) {
  switch (opt) {
  case CPORT_OPT_OTP_OWNER: v->v.queue = s->owner; return true;
  case CPORT_OPT_OTP_DEBUG: v->v.b = s->debug; return true;
  case CPORT_OPT_OTP_USE_REGISTRY: v->v.b = s->registered; return true;
  case CPORT_OPT_OTP_FD: v->v.u64 = s->os; return true;
  case CPORT_OPT_OTP_META: v->v.ptr = s->meta; return true;
  case CPORT_OPT_OTP_ZERO_READ: v->v.b = s->zero_read; return true;
  case CPORT_OPT_OTP_RCVBUF: v->v.i = (int)cp_rcvbuf(s); return true;
  case CPORT_OPT_OTP_RECV_TIMEOUT: v->v.i = s->recv_timeout; return true;
  case CPORT_OPT_OTP_SEND_TIMEOUT: v->v.i = s->send_timeout; return true;
  case CPORT_OPT_OTP_DEFER: v->v.b = s->defer; return true;
  case CPORT_OPT_OTP_RCV_OUTSTANDING: v->v.i = (int)cp_rcv_outstanding(s); return true;
  case CPORT_OPT_SOCKET_TYPE: v->v.i = s->type; return true;
  case CPORT_OPT_SOCKET_DOMAIN: v->v.i = s->family; return true;
  case CPORT_OPT_SOCKET_PROTOCOL: v->v.i = cp_protocol(s); return true;
  case CPORT_OPT_SOCKET_ACCEPTCONN: v->v.b = s->listening; return true;
  default: return false;
  }
}

int cport_setopt(cport_socket id, cport_level level, cport_option opt, const cport_optval *value) {
  const opt_def *d = find(level, opt);
  if (!value || !d) return CPORT_EINVAL;
  if (d->readonly) return CPORT_EINVAL;
  if (level != CPORT_LEVEL_OTP && !cp_os_opt_supported(opt)) return CPORT_ENOTSUP;
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  int rc = applies_to(d, s);
  if (rc == CPORT_OK) rc = check_value(d, s, value);
  if (rc == CPORT_OK)
    rc = level == CPORT_LEVEL_OTP ? set_otp(s, opt, value) : cp_os_setopt(s, opt, value);
  cp_sock_unlock(s);
  return rc;
}

int cport_getopt(cport_socket id, cport_level level, cport_option opt, cport_optval *value) {
  const opt_def *d = find(level, opt);
  if (!value || !d) return CPORT_EINVAL;
  if (d->type == CPORT_VAL_MREQ) return CPORT_EINVAL; /* memberships are set-only */
  cp_sock *s = cp_sock_lock(id);
  if (!s) return CPORT_EBADF;
  value->type = d->type;
  /* A platform without the option says so first, whatever the socket. */
  int rc = core_answers(opt) || cp_os_opt_supported(opt) ? applies_to(d, s) : CPORT_ENOTSUP;
  if (rc == CPORT_OK && !get_known(s, opt, value)) rc = cp_os_getopt(s, opt, value);
  cp_sock_unlock(s);
  return rc;
}
