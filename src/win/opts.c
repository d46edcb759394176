/* Socket options on Windows: each portable option's Winsock level and
 * name, where Windows has one. Types and ranges were checked by the core.
 *
 * TCP keepalive idle and interval go through SIO_KEEPALIVE_VALS, which
 * sets both at once and cannot be read back, so the socket remembers them
 * (Wine 8 has no TCP_KEEPIDLE/KEEPINTVL:
 * docs/wine.md, "TCP_NODELAY, ..."). */
#include "cp_win.h" /* iocp_sock: the keepalive values live there */
#include "errmap.h"

#include <mstcpip.h>
#include <string.h>
#include <ws2tcpip.h>

#define KEEPALIVE_IDLE_DEFAULT_S 7200u /* Windows' own defaults */
#define KEEPALIVE_INTVL_DEFAULT_S 1u

typedef struct os_opt {
  cport_option opt;
  int level, name;
} os_opt;

static const os_opt k_os_opts[] = {
    {CPORT_OPT_SOCKET_REUSEADDR, SOL_SOCKET, SO_REUSEADDR},
    {CPORT_OPT_SOCKET_EXCLUSIVEADDRUSE, SOL_SOCKET, SO_EXCLUSIVEADDRUSE},
    {CPORT_OPT_SOCKET_KEEPALIVE, SOL_SOCKET, SO_KEEPALIVE},
    {CPORT_OPT_SOCKET_LINGER, SOL_SOCKET, SO_LINGER},
    {CPORT_OPT_SOCKET_RCVBUF, SOL_SOCKET, SO_RCVBUF},
    {CPORT_OPT_SOCKET_SNDBUF, SOL_SOCKET, SO_SNDBUF},
    {CPORT_OPT_SOCKET_BROADCAST, SOL_SOCKET, SO_BROADCAST},
    {CPORT_OPT_SOCKET_ERROR, SOL_SOCKET, SO_ERROR},
    /* Answered by the core from its own state; Windows has the option. */
    {CPORT_OPT_SOCKET_ACCEPTCONN, SOL_SOCKET, SO_ACCEPTCONN},
    {CPORT_OPT_IP_TOS, IPPROTO_IP, IP_TOS},
    {CPORT_OPT_IP_TTL, IPPROTO_IP, IP_TTL},
    {CPORT_OPT_IP_MULTICAST_IF, IPPROTO_IP, IP_MULTICAST_IF},
    {CPORT_OPT_IP_MULTICAST_TTL, IPPROTO_IP, IP_MULTICAST_TTL},
    {CPORT_OPT_IP_MULTICAST_LOOP, IPPROTO_IP, IP_MULTICAST_LOOP},
    {CPORT_OPT_IP_ADD_MEMBERSHIP, IPPROTO_IP, IP_ADD_MEMBERSHIP},
    {CPORT_OPT_IP_DROP_MEMBERSHIP, IPPROTO_IP, IP_DROP_MEMBERSHIP},
#ifdef IP_RECVTOS
    {CPORT_OPT_IP_RECVTOS, IPPROTO_IP, IP_RECVTOS},
#endif
    {CPORT_OPT_IP_PKTINFO, IPPROTO_IP, IP_PKTINFO},
    {CPORT_OPT_IPV6_V6ONLY, IPPROTO_IPV6, IPV6_V6ONLY},
    {CPORT_OPT_IPV6_UNICAST_HOPS, IPPROTO_IPV6, IPV6_UNICAST_HOPS},
    {CPORT_OPT_IPV6_MULTICAST_HOPS, IPPROTO_IPV6, IPV6_MULTICAST_HOPS},
    {CPORT_OPT_IPV6_MULTICAST_LOOP, IPPROTO_IPV6, IPV6_MULTICAST_LOOP},
    {CPORT_OPT_IPV6_ADD_MEMBERSHIP, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP},
    {CPORT_OPT_IPV6_DROP_MEMBERSHIP, IPPROTO_IPV6, IPV6_DROP_MEMBERSHIP},
    {CPORT_OPT_IPV6_RECVPKTINFO, IPPROTO_IPV6, IPV6_PKTINFO},
    {CPORT_OPT_TCP_NODELAY, IPPROTO_TCP, TCP_NODELAY},
#ifdef TCP_MAXSEG
    {CPORT_OPT_TCP_MAXSEG, IPPROTO_TCP, TCP_MAXSEG},
#endif
    /* Set through SIO_KEEPALIVE_VALS; the name is unused. */
    {CPORT_OPT_TCP_KEEPIDLE, IPPROTO_TCP, 0},
    {CPORT_OPT_TCP_KEEPINTVL, IPPROTO_TCP, 0},
};

static const os_opt *find(cport_option opt) {
  for (size_t i = 0; i < sizeof k_os_opts / sizeof k_os_opts[0]; i++)
    if (k_os_opts[i].opt == opt) return &k_os_opts[i];
  return NULL;
}

int cp_os_opt_supported(cport_option opt) { return find(opt) != NULL; }

/* An AF_UNIX socket has no TCP level and no port for SO_EXCLUSIVEADDRUSE to
 * guard. Linux answers EOPNOTSUPP for its TCP level; so does this, whatever
 * code the AF_UNIX provider would have given. */
static bool not_for_unix(const cp_sock *s, const os_opt *o) {
  return s->family == CPORT_AF_UNIX &&
         (o->level == IPPROTO_TCP || o->opt == CPORT_OPT_SOCKET_EXCLUSIVEADDRUSE);
}

static SOCKET sock_of(const cp_sock *s) { return (SOCKET)s->os; }

static int set_raw(cp_sock *s, const os_opt *o, const void *val, int len) {
  return setsockopt(sock_of(s), o->level, o->name, (const char *)val, len) == 0 ? CPORT_OK
                                                                                : cp_win_last();
}

/* The keepalive idle time and interval in force, in seconds: what was set,
 * or the system's defaults (SIO_KEEPALIVE_VALS cannot be read back). */
static uint32_t keepalive_secs(cp_sock *s, cport_option opt) {
  const iocp_sock *bs = cp_win_bs(s);
  if (opt == CPORT_OPT_TCP_KEEPIDLE)
    return bs->keepalive_idle ? bs->keepalive_idle : KEEPALIVE_IDLE_DEFAULT_S;
  return bs->keepalive_intvl ? bs->keepalive_intvl : KEEPALIVE_INTVL_DEFAULT_S;
}

static int set_keepalive_vals(cp_sock *s, cport_option opt, int seconds) {
  uint32_t idle = keepalive_secs(s, CPORT_OPT_TCP_KEEPIDLE);
  uint32_t intvl = keepalive_secs(s, CPORT_OPT_TCP_KEEPINTVL);
  if (opt == CPORT_OPT_TCP_KEEPIDLE)
    idle = (uint32_t)seconds;
  else
    intvl = (uint32_t)seconds;
  struct tcp_keepalive ka = {
      .onoff = 1, .keepalivetime = idle * 1000u, .keepaliveinterval = intvl * 1000u};
  DWORD out = 0;
  if (WSAIoctl(sock_of(s), SIO_KEEPALIVE_VALS, &ka, sizeof ka, NULL, 0, &out, NULL, NULL) != 0)
    return cp_win_last();
  cp_win_bs(s)->keepalive_idle = idle;
  cp_win_bs(s)->keepalive_intvl = intvl;
  return CPORT_OK;
}

static int set_membership(cp_sock *s, const os_opt *o, const cport_optval *v) {
  int rc;
  if (s->family == CPORT_AF_INET) {
    struct ip_mreq m;
    memcpy(&m.imr_multiaddr, v->v.mreq.group.ip, 4);
    memcpy(&m.imr_interface, v->v.mreq.iface.ip, 4); /* zeros: INADDR_ANY */
    rc = set_raw(s, o, &m, (int)sizeof m);
  } else {
    struct ipv6_mreq m;
    memcpy(&m.ipv6mr_multiaddr, v->v.mreq.group.ip, 16);
    m.ipv6mr_interface = v->v.mreq.ifindex;
    rc = set_raw(s, o, &m, (int)sizeof m);
  }
  /* Leaving a group the socket is not in: POSIX says EADDRNOTAVAIL (Linux
   * for any group it does not find), Wine 8 WSAEINVAL (measured, v4 and
   * v6). A drop has no other argument to be invalid: the core checked the
   * value's type and families. */
  bool drop = o->opt == CPORT_OPT_IP_DROP_MEMBERSHIP || o->opt == CPORT_OPT_IPV6_DROP_MEMBERSHIP;
  if (drop && rc == CPORT_EINVAL) rc = CPORT_EADDRNOTAVAIL;
  return rc;
}

int cp_os_setopt(cp_sock *s, cport_option opt, const cport_optval *v) {
  const os_opt *o = find(opt);
  if (!o) return CPORT_ENOTSUP;
  if (not_for_unix(s, o)) return CPORT_EOPNOTSUPP;
  switch (v->type) {
  case CPORT_VAL_BOOL:
  case CPORT_VAL_INT: {
    int i = v->type == CPORT_VAL_BOOL ? v->v.b : v->v.i;
    if (opt == CPORT_OPT_TCP_KEEPIDLE || opt == CPORT_OPT_TCP_KEEPINTVL)
      return set_keepalive_vals(s, opt, i);
    DWORD d = (DWORD)i; /* Winsock's BOOL and int options are DWORD-sized */
    return set_raw(s, o, &d, (int)sizeof d);
  }
  case CPORT_VAL_LINGER: {
    struct linger l = {.l_onoff = (u_short)v->v.linger.onoff,
                       .l_linger = (u_short)v->v.linger.seconds};
    return set_raw(s, o, &l, (int)sizeof l);
  }
  case CPORT_VAL_ADDR: {
    struct in_addr a;
    memcpy(&a, v->v.addr.ip, 4);
    return set_raw(s, o, &a, (int)sizeof a);
  }
  case CPORT_VAL_MREQ: return set_membership(s, o, v);
  default: return CPORT_EINVAL;
  }
}

int cp_os_getopt(cp_sock *s, cport_option opt, cport_optval *v) {
  const os_opt *o = find(opt);
  if (!o) return CPORT_ENOTSUP;
  if (not_for_unix(s, o)) return CPORT_EOPNOTSUPP;
  if (opt == CPORT_OPT_TCP_KEEPIDLE || opt == CPORT_OPT_TCP_KEEPINTVL) {
    v->v.i = (int)keepalive_secs(s, opt);
    return CPORT_OK;
  }
  union {
    DWORD d;
    struct linger l;
    struct in_addr a;
  } raw;
  memset(&raw, 0, sizeof raw); /* BOOL options write only one byte */
  int len = (int)sizeof raw;
  if (getsockopt(sock_of(s), o->level, o->name, (char *)&raw, &len) != 0) return cp_win_last();
  switch (v->type) {
  case CPORT_VAL_BOOL: v->v.b = raw.d != 0; break;
  case CPORT_VAL_INT:
    v->v.i = (int)raw.d;
    if (opt == CPORT_OPT_SOCKET_ERROR) v->v.i = cp_win_err(raw.d);
    break;
  case CPORT_VAL_LINGER:
    v->v.linger.onoff = raw.l.l_onoff != 0;
    v->v.linger.seconds = raw.l.l_linger;
    break;
  case CPORT_VAL_ADDR:
    memset(&v->v.addr, 0, sizeof v->v.addr);
    v->v.addr.family = CPORT_AF_INET;
    memcpy(v->v.addr.ip, &raw.a, 4);
    break;
  default: return CPORT_EINVAL;
  }
  return CPORT_OK;
}
