/* Socket options on POSIX: each portable option's OS level and name, where
 * this system has one. Types and ranges were checked by the core. */
#define _GNU_SOURCE
#include "posix.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <string.h>
#include <sys/socket.h>

typedef struct os_opt {
  cport_option opt;
  int level, name;
} os_opt;

static const os_opt k_os_opts[] = {
    {CPORT_OPT_SOCKET_REUSEADDR, SOL_SOCKET, SO_REUSEADDR},
#ifdef SO_REUSEPORT
    {CPORT_OPT_SOCKET_REUSEPORT, SOL_SOCKET, SO_REUSEPORT},
#endif
    {CPORT_OPT_SOCKET_KEEPALIVE, SOL_SOCKET, SO_KEEPALIVE},
    {CPORT_OPT_SOCKET_LINGER, SOL_SOCKET, SO_LINGER},
    {CPORT_OPT_SOCKET_RCVBUF, SOL_SOCKET, SO_RCVBUF},
    {CPORT_OPT_SOCKET_SNDBUF, SOL_SOCKET, SO_SNDBUF},
    {CPORT_OPT_SOCKET_RCVLOWAT, SOL_SOCKET, SO_RCVLOWAT},
    {CPORT_OPT_SOCKET_BROADCAST, SOL_SOCKET, SO_BROADCAST},
    {CPORT_OPT_SOCKET_ERROR, SOL_SOCKET, SO_ERROR},
    {CPORT_OPT_IP_TOS, IPPROTO_IP, IP_TOS},
    {CPORT_OPT_IP_TTL, IPPROTO_IP, IP_TTL},
    {CPORT_OPT_IP_MULTICAST_IF, IPPROTO_IP, IP_MULTICAST_IF},
    {CPORT_OPT_IP_MULTICAST_TTL, IPPROTO_IP, IP_MULTICAST_TTL},
    {CPORT_OPT_IP_MULTICAST_LOOP, IPPROTO_IP, IP_MULTICAST_LOOP},
    {CPORT_OPT_IP_ADD_MEMBERSHIP, IPPROTO_IP, IP_ADD_MEMBERSHIP},
    {CPORT_OPT_IP_DROP_MEMBERSHIP, IPPROTO_IP, IP_DROP_MEMBERSHIP},
    {CPORT_OPT_IP_RECVTOS, IPPROTO_IP, IP_RECVTOS},
    {CPORT_OPT_IP_PKTINFO, IPPROTO_IP, IP_PKTINFO},
    {CPORT_OPT_IPV6_V6ONLY, IPPROTO_IPV6, IPV6_V6ONLY},
    {CPORT_OPT_IPV6_UNICAST_HOPS, IPPROTO_IPV6, IPV6_UNICAST_HOPS},
    {CPORT_OPT_IPV6_MULTICAST_HOPS, IPPROTO_IPV6, IPV6_MULTICAST_HOPS},
    {CPORT_OPT_IPV6_MULTICAST_LOOP, IPPROTO_IPV6, IPV6_MULTICAST_LOOP},
    {CPORT_OPT_IPV6_ADD_MEMBERSHIP, IPPROTO_IPV6, IPV6_ADD_MEMBERSHIP},
    {CPORT_OPT_IPV6_DROP_MEMBERSHIP, IPPROTO_IPV6, IPV6_DROP_MEMBERSHIP},
    {CPORT_OPT_IPV6_RECVPKTINFO, IPPROTO_IPV6, IPV6_RECVPKTINFO},
    {CPORT_OPT_TCP_NODELAY, IPPROTO_TCP, TCP_NODELAY},
    {CPORT_OPT_TCP_MAXSEG, IPPROTO_TCP, TCP_MAXSEG},
#ifdef TCP_KEEPIDLE
    {CPORT_OPT_TCP_KEEPIDLE, IPPROTO_TCP, TCP_KEEPIDLE},
    {CPORT_OPT_TCP_KEEPINTVL, IPPROTO_TCP, TCP_KEEPINTVL},
    {CPORT_OPT_TCP_KEEPCNT, IPPROTO_TCP, TCP_KEEPCNT},
#endif
#ifdef TCP_CORK
    {CPORT_OPT_TCP_CORK, IPPROTO_TCP, TCP_CORK},
#endif
#ifdef TCP_NOPUSH
    {CPORT_OPT_TCP_NOPUSH, IPPROTO_TCP, TCP_NOPUSH},
#endif
#ifdef UDP_CORK
    {CPORT_OPT_UDP_CORK, IPPROTO_UDP, UDP_CORK},
#endif
};

static const os_opt *find(cport_option opt) {
  for (size_t i = 0; i < sizeof k_os_opts / sizeof k_os_opts[0]; i++)
    if (k_os_opts[i].opt == opt) return &k_os_opts[i];
  return NULL;
}

int cp_os_opt_supported(cport_option opt) { return find(opt) != NULL; }

static int set_raw(cp_sock *s, const os_opt *o, const void *val, socklen_t len) {
  return setsockopt((int)s->os, o->level, o->name, val, len) == 0 ? CPORT_OK
                                                                  : cp_errno_to_err(errno);
}

static int set_membership(cp_sock *s, const os_opt *o, const cport_optval *v) {
  if (s->family == CPORT_AF_INET) {
    struct ip_mreq m;
    memcpy(&m.imr_multiaddr, v->v.mreq.group.ip, 4);
    memcpy(&m.imr_interface, v->v.mreq.iface.ip, 4); /* zeros: INADDR_ANY */
    return set_raw(s, o, &m, sizeof m);
  }
  struct ipv6_mreq m;
  memcpy(&m.ipv6mr_multiaddr, v->v.mreq.group.ip, 16);
  m.ipv6mr_interface = v->v.mreq.ifindex;
  return set_raw(s, o, &m, sizeof m);
}

int cp_os_setopt(cp_sock *s, cport_option opt, const cport_optval *v) {
  const os_opt *o = find(opt);
  if (!o) return CPORT_ENOTSUP;
  cp_posix_refresh(s); /* buffer sizes, low-water marks may change */
  switch (v->type) {
  case CPORT_VAL_BOOL:
  case CPORT_VAL_INT: {
    int i = v->type == CPORT_VAL_BOOL ? v->v.b : v->v.i;
    if (opt == CPORT_OPT_IP_MULTICAST_TTL || opt == CPORT_OPT_IP_MULTICAST_LOOP) {
      unsigned char c = (unsigned char)i; /* these two take a byte on BSDs */
      if (set_raw(s, o, &c, sizeof c) == CPORT_OK) return CPORT_OK;
    }
    return set_raw(s, o, &i, sizeof i);
  }
  case CPORT_VAL_LINGER: {
    struct linger l = {.l_onoff = v->v.linger.onoff, .l_linger = v->v.linger.seconds};
    return set_raw(s, o, &l, sizeof l);
  }
  case CPORT_VAL_ADDR: {
    struct in_addr a;
    memcpy(&a, v->v.addr.ip, 4);
    return set_raw(s, o, &a, sizeof a);
  }
  case CPORT_VAL_MREQ: return set_membership(s, o, v);
  default: return CPORT_EINVAL;
  }
}

int cp_os_getopt(cp_sock *s, cport_option opt, cport_optval *v) {
  const os_opt *o = find(opt);
  if (!o) return CPORT_ENOTSUP;
  union {
    int i;
    struct linger l;
    struct in_addr a;
    unsigned char c;
  } raw;
  memset(&raw, 0, sizeof raw);
  socklen_t len = sizeof raw;
  if (getsockopt((int)s->os, o->level, o->name, &raw, &len) != 0) return cp_errno_to_err(errno);
  switch (v->type) {
  case CPORT_VAL_BOOL: v->v.b = (len == 1 ? raw.c : raw.i) != 0; break;
  case CPORT_VAL_INT:
    v->v.i = len == 1 ? raw.c : raw.i;
    if (opt == CPORT_OPT_SOCKET_ERROR) v->v.i = cp_errno_to_err(v->v.i);
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
