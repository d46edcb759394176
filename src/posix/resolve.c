/* The system resolver on POSIX: getaddrinfo and getnameinfo, with their
 * EAI_* codes mapped so that the same lookup fails the same way on every
 * platform. Blocking: the core calls these on a worker thread. */
#define _GNU_SOURCE /* EAI_NODATA, EAI_ADDRFAMILY */
#include "posix.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "cp_sockaddr.h"

static int eai_to_err(int rc) {
  switch (rc) {
  case 0: return CPORT_OK;
  case EAI_NONAME:
#ifdef EAI_NODATA
  case EAI_NODATA: /* the name exists, with no address of that family */
#endif
#ifdef EAI_ADDRFAMILY
  case EAI_ADDRFAMILY:
#endif
  case EAI_SERVICE: return CPORT_ENONAME;
  case EAI_AGAIN: return CPORT_EAGAIN; /* no server answered, or it said "try again" */
  case EAI_FAMILY: return CPORT_EAFNOSUPPORT;
  case EAI_MEMORY: return CPORT_ENOMEM;
  case EAI_SOCKTYPE:
  case EAI_BADFLAGS: return CPORT_EINVAL;
  case EAI_SYSTEM: return cp_errno_to_err(errno);
  default: return CPORT_EUNKNOWN; /* EAI_FAIL: the server refused for good */
  }
}

static void os_hints(const cport_resolve_hints *h, struct addrinfo *ai) {
  memset(ai, 0, sizeof *ai);
  ai->ai_family = h->family == CPORT_AF_INET    ? AF_INET
                  : h->family == CPORT_AF_INET6 ? AF_INET6
                                                : AF_UNSPEC;
  ai->ai_socktype = h->type == CPORT_SOCK_STREAM  ? SOCK_STREAM
                    : h->type == CPORT_SOCK_DGRAM ? SOCK_DGRAM
                                                  : 0;
  if (h->flags & CPORT_RESOLVE_NUMERIC_HOST) ai->ai_flags |= AI_NUMERICHOST;
  if (h->flags & CPORT_RESOLVE_NUMERIC_SERV) ai->ai_flags |= AI_NUMERICSERV;
  if (h->flags & CPORT_RESOLVE_PASSIVE) ai->ai_flags |= AI_PASSIVE;
  if (h->flags & CPORT_RESOLVE_ADDRCONFIG) ai->ai_flags |= AI_ADDRCONFIG;
  if (h->flags & CPORT_RESOLVE_CANONNAME) ai->ai_flags |= AI_CANONNAME;
}

/* The OS list as items: stream and datagram entries of IP families only
 * (getaddrinfo also lists raw sockets when no type is asked for). */
static int to_items(const struct addrinfo *res, cp_ai_item **items, size_t *n) {
  size_t cap = 0;
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) cap++;
  *items = cp_calloc(cap ? cap : 1, sizeof **items);
  if (!*items) return CPORT_ENOMEM;
  *n = 0;
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    int type = ai->ai_socktype == SOCK_STREAM  ? CPORT_SOCK_STREAM
               : ai->ai_socktype == SOCK_DGRAM ? CPORT_SOCK_DGRAM
                                               : 0;
    cp_ai_item *it = &(*items)[*n];
    if (type == 0 || cp_sockaddr_to_addr(ai->ai_addr, ai->ai_addrlen, &it->addr) != CPORT_OK ||
        it->addr.family == CPORT_AF_UNIX)
      continue;
    it->type = type;
    (*n)++;
  }
  return CPORT_OK;
}

int cp_os_getaddrinfo(const char *host, const char *service, const cport_resolve_hints *hints,
                      cport_addrinfo **out, size_t *count) {
  struct addrinfo want, *res = NULL;
  os_hints(hints, &want);
  int rc = eai_to_err(getaddrinfo(host, service, &want, &res));
  if (rc != CPORT_OK) return rc;
  cp_ai_item *items;
  size_t n = 0;
  rc = to_items(res, &items, &n);
  if (rc == CPORT_OK) {
    rc = cp_addrinfo_build(items, n, res->ai_canonname, out);
    cp_free(items);
  }
  freeaddrinfo(res);
  *count = rc == CPORT_OK ? n : 0;
  return rc;
}

int cp_os_getnameinfo(const cport_addr *addr, unsigned flags, cport_names *out) {
  struct sockaddr_storage ss;
  size_t len;
  int rc = cp_sockaddr_from_addr(addr, &ss, &len);
  if (rc != CPORT_OK) return rc;
  int ni = 0;
  if (flags & CPORT_NAMEINFO_NUMERIC_HOST) ni |= NI_NUMERICHOST;
  if (flags & CPORT_NAMEINFO_NUMERIC_SERV) ni |= NI_NUMERICSERV;
  if (flags & CPORT_NAMEINFO_NAME_REQUIRED) ni |= NI_NAMEREQD;
  if (flags & CPORT_NAMEINFO_DGRAM) ni |= NI_DGRAM;
  return eai_to_err(getnameinfo((struct sockaddr *)&ss, (socklen_t)len, out->host, sizeof out->host,
                                out->service, sizeof out->service, ni));
}

/* glibc's getaddrinfo_a runs on threads of its own: a worker does as well. */
int cp_os_resolve_start(cp_job *job, const char *host, const char *service,
                        const cport_resolve_hints *hints, cport_addrinfo **out, size_t *count) {
  (void)job, (void)host, (void)service, (void)hints, (void)out, (void)count;
  return CPORT_ENOTSUP;
}
