/* cport_addr <-> struct sockaddr, shared by src/posix/sock.c and
 * src/win/sock.c. The BSD socket structures have the same fields on both
 * platforms; each includer brings its own OS headers first (sockaddr_in,
 * sockaddr_in6, sockaddr_un, htons). Not installed. */
#ifndef CPORT_SOCKADDR_H
#define CPORT_SOCKADDR_H

#include "internal.h"

#include <stddef.h>
#include <string.h>

/* Fills *ss for a; *len is the length to pass to the OS. A path is passed
 * as the whole NUL-padded structure, which both Linux and Windows read up
 * to its NUL. */
static inline int cp_sockaddr_from_addr(const cport_addr *a, struct sockaddr_storage *ss,
                                        size_t *len) {
  memset(ss, 0, sizeof *ss);
  if (a->family == CPORT_AF_UNIX) {
    struct sockaddr_un *sun = (struct sockaddr_un *)(void *)ss;
    size_t n = strnlen(a->path, sizeof a->path);
    if (n == 0 || n >= sizeof sun->sun_path) return CPORT_EINVAL;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, a->path, n);
    *len = sizeof *sun;
    return CPORT_OK;
  }
  if (a->family == CPORT_AF_INET) {
    struct sockaddr_in *sin = (struct sockaddr_in *)(void *)ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(a->port);
    memcpy(&sin->sin_addr, a->ip, 4);
    *len = sizeof *sin;
    return CPORT_OK;
  }
  if (a->family == CPORT_AF_INET6) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)ss;
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(a->port);
    memcpy(&sin6->sin6_addr, a->ip, 16);
    sin6->sin6_scope_id = a->scope_id;
    sin6->sin6_flowinfo = htonl(a->flowinfo);
    *len = sizeof *sin6;
    return CPORT_OK;
  }
  return CPORT_EINVAL;
}

/* Reads the len bytes the OS returned at sa into *a. An unnamed AF_UNIX
 * socket (the family alone, or an all-zero path) reads as path "". */
static inline int cp_sockaddr_to_addr(const struct sockaddr *sa, size_t len, cport_addr *a) {
  memset(a, 0, sizeof *a);
  if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
    const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
    a->family = CPORT_AF_INET;
    a->port = ntohs(sin->sin_port);
    memcpy(a->ip, &sin->sin_addr, 4);
    return CPORT_OK;
  }
  if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
    a->family = CPORT_AF_INET6;
    a->port = ntohs(sin6->sin6_port);
    memcpy(a->ip, &sin6->sin6_addr, 16);
    a->scope_id = sin6->sin6_scope_id;
    a->flowinfo = ntohl(sin6->sin6_flowinfo);
    return CPORT_OK;
  }
  if (sa->sa_family == AF_UNIX) {
    const struct sockaddr_un *sun = (const struct sockaddr_un *)(const void *)sa;
    size_t head = offsetof(struct sockaddr_un, sun_path);
    a->family = CPORT_AF_UNIX;
    if (len > head) {
      size_t room = len - head < sizeof a->path - 1 ? len - head : sizeof a->path - 1;
      memcpy(a->path, sun->sun_path, strnlen(sun->sun_path, room));
    }
    return CPORT_OK;
  }
  return CPORT_EAFNOSUPPORT;
}

#endif
