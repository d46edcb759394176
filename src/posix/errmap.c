/* errno values and their portable names. */
#define _GNU_SOURCE /* accept4, pthread_condattr_setclock */
#include "posix.h"

#include <errno.h>

int cp_errno_to_err(int e) {
  switch (e) {
  case 0: return CPORT_OK;
  case EINVAL: return CPORT_EINVAL;
  case EBADF:
  case ENOTSOCK: return CPORT_EBADF;
  case ENOMEM: return CPORT_ENOMEM;
  case EOPNOTSUPP: return CPORT_EOPNOTSUPP;
  case ENOPROTOOPT:
  case EPROTONOSUPPORT: return CPORT_ENOTSUP;
  case EALREADY:
  case EINPROGRESS: return CPORT_EALREADY;
  case ENOTCONN: return CPORT_ENOTCONN;
  case EISCONN: return CPORT_EISCONN;
  case ECONNREFUSED: return CPORT_ECONNREFUSED;
  case ECONNRESET: return CPORT_ECONNRESET;
  case ECONNABORTED: return CPORT_ECONNABORTED;
  case ETIMEDOUT: return CPORT_ETIMEDOUT;
  case EPIPE: return CPORT_EPIPE;
  case EADDRINUSE: return CPORT_EADDRINUSE;
  case EADDRNOTAVAIL:
  case ENODEV: /* no such interface, e.g. a multicast join on a loopback-only host */
    return CPORT_EADDRNOTAVAIL;
  case EAFNOSUPPORT: return CPORT_EAFNOSUPPORT;
  case EMFILE: return CPORT_EMFILE;
  case ENFILE: return CPORT_ENFILE;
  case ENOBUFS: return CPORT_ENOBUFS;
  case EMSGSIZE: return CPORT_EMSGSIZE;
  case ENETUNREACH: return CPORT_ENETUNREACH;
  case EHOSTUNREACH: return CPORT_EHOSTUNREACH;
  case EACCES:
  case EPERM: return CPORT_EACCES;
  case ENETDOWN: return CPORT_ENETDOWN;
  case EINTR: return CPORT_EINTR;
  case EAGAIN: return CPORT_EAGAIN; /* never a socket's "would block": the callers catch that */
  default: return CPORT_EUNKNOWN;
  }
}
