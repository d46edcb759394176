/* The portable error vocabulary: one table, names and descriptions. */
#include "cport.h"

#include <stddef.h>

typedef struct err_text {
  int code;
  const char *name;
  const char *text;
} err_text;

static const err_text k_errors[] = {
    {CPORT_OK, "CPORT_OK", "success"},
    {CPORT_SELECT, "CPORT_SELECT", "pending (select mode)"},
    {CPORT_COMPLETION, "CPORT_COMPLETION", "pending (completion mode)"},
    {CPORT_EINVAL, "CPORT_EINVAL", "invalid argument or wrong state for this call"},
    {CPORT_EBADF, "CPORT_EBADF", "not an open socket (stale, forged or closed handle)"},
    {CPORT_ENOMEM, "CPORT_ENOMEM", "out of memory"},
    {CPORT_ENOTSUP, "CPORT_ENOTSUP", "not supported"},
    {CPORT_EALREADY, "CPORT_EALREADY", "an operation is already in progress"},
    {CPORT_ENOTCONN, "CPORT_ENOTCONN", "socket is not connected"},
    {CPORT_EISCONN, "CPORT_EISCONN", "socket is already connected"},
    {CPORT_ECONNREFUSED, "CPORT_ECONNREFUSED", "connection refused"},
    {CPORT_ECONNRESET, "CPORT_ECONNRESET", "connection reset by peer"},
    {CPORT_ECONNABORTED, "CPORT_ECONNABORTED", "connection aborted"},
    {CPORT_ETIMEDOUT, "CPORT_ETIMEDOUT", "timed out"},
    {CPORT_EPIPE, "CPORT_EPIPE", "connection shut down for sending"},
    {CPORT_EADDRINUSE, "CPORT_EADDRINUSE", "address already in use"},
    {CPORT_EADDRNOTAVAIL, "CPORT_EADDRNOTAVAIL", "address not available"},
    {CPORT_EAFNOSUPPORT, "CPORT_EAFNOSUPPORT", "address family not supported"},
    {CPORT_EMFILE, "CPORT_EMFILE", "too many open files in this process"},
    {CPORT_ENFILE, "CPORT_ENFILE", "too many open files in the system"},
    {CPORT_ENOBUFS, "CPORT_ENOBUFS", "no buffer space available"},
    {CPORT_EMSGSIZE, "CPORT_EMSGSIZE", "message too long"},
    {CPORT_ENETUNREACH, "CPORT_ENETUNREACH", "network unreachable"},
    {CPORT_EHOSTUNREACH, "CPORT_EHOSTUNREACH", "host unreachable"},
    {CPORT_EACCES, "CPORT_EACCES", "permission denied"},
    {CPORT_ECANCELED, "CPORT_ECANCELED", "operation cancelled"},
    {CPORT_ECLOSED, "CPORT_ECLOSED", "socket closed locally"},
    {CPORT_ENOTFOUND, "CPORT_ENOTFOUND", "no such pending operation"},
    {CPORT_EBUSY, "CPORT_EBUSY", "resource busy"},
    {CPORT_EOPNOTSUPP, "CPORT_EOPNOTSUPP", "operation not supported on this socket"},
    {CPORT_ENETDOWN, "CPORT_ENETDOWN", "network is down"},
    {CPORT_EINTR, "CPORT_EINTR", "interrupted"},
    {CPORT_EUNKNOWN, "CPORT_EUNKNOWN", "unknown system error"},
    {CPORT_ENONAME, "CPORT_ENONAME", "no such host or service name"},
    {CPORT_EAGAIN, "CPORT_EAGAIN", "temporary failure, try again"},
    {CPORT_ETLS, "CPORT_ETLS", "TLS failed"},
};

static const err_text *find(int err) {
  for (size_t i = 0; i < sizeof k_errors / sizeof k_errors[0]; i++)
    if (k_errors[i].code == err) return &k_errors[i];
  return NULL;
}

const char *cport_strerror(int err) {
  const err_text *e = find(err);
  return e ? e->text : "unknown error code";
}

const char *cport_errname(int err) {
  const err_text *e = find(err);
  return e ? e->name : "CPORT_E?";
}
