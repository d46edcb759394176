/* The system resolver on Windows: GetAddrInfoW and GetNameInfoW, the wide
 * forms, so that names are UTF-8 in and out whatever the ANSI code page.
 * Blocking: the core calls these on a worker thread. Their WSA codes map
 * through errmap.c to the same cport_err as on POSIX. */
#include "cp_win.h"

#include <stdlib.h>
#include <string.h>

#include "cp_sockaddr.h" /* after the OS headers it relies on (cp_win.h) */

/* UTF-8 to a new wide string (NULL in, NULL out); CPORT_EINVAL for text
 * that is not UTF-8. */
static int to_wide(const char *utf8, wchar_t **out) {
  *out = NULL;
  if (!utf8) return CPORT_OK;
  int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, NULL, 0);
  if (n <= 0) return CPORT_EINVAL;
  *out = cp_malloc((size_t)n * sizeof **out);
  if (!*out) return CPORT_ENOMEM;
  if (MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, utf8, -1, *out, n) != n) {
    cp_free(*out);
    *out = NULL;
    return CPORT_EINVAL;
  }
  return CPORT_OK;
}

static int to_utf8(const wchar_t *wide, char *buf, size_t size) {
  int n = WideCharToMultiByte(CP_UTF8, 0, wide, -1, buf, (int)size, NULL, NULL);
  return n > 0 ? CPORT_OK : cp_win_err(GetLastError());
}

/* The hints' three fields, which ADDRINFOW and ADDRINFOEXW both have. */
static void os_hints(const cport_resolve_hints *h, int *family, int *socktype, int *flags) {
  *family = h->family == CPORT_AF_INET    ? AF_INET
            : h->family == CPORT_AF_INET6 ? AF_INET6
                                          : AF_UNSPEC;
  *socktype = h->type == CPORT_SOCK_STREAM  ? SOCK_STREAM
              : h->type == CPORT_SOCK_DGRAM ? SOCK_DGRAM
                                            : 0;
  *flags = 0;
  if (h->flags & CPORT_RESOLVE_NUMERIC_HOST) *flags |= AI_NUMERICHOST;
  if (h->flags & CPORT_RESOLVE_NUMERIC_SERV) *flags |= AI_NUMERICSERV;
  if (h->flags & CPORT_RESOLVE_PASSIVE) *flags |= AI_PASSIVE;
  if (h->flags & CPORT_RESOLVE_ADDRCONFIG) *flags |= AI_ADDRCONFIG;
  if (h->flags & CPORT_RESOLVE_CANONNAME) *flags |= AI_CANONNAME;
}

/* One entry of the OS's list as an item, if it is a stream or datagram
 * entry of an IP family (a lookup with no type asked for lists each
 * address once per type, as on POSIX). */
static void add_item(cp_ai_item *items, size_t *n, int socktype, const struct sockaddr *sa,
                     size_t len) {
  int type = socktype == SOCK_STREAM  ? CPORT_SOCK_STREAM
             : socktype == SOCK_DGRAM ? CPORT_SOCK_DGRAM
                                      : 0;
  cp_ai_item *it = &items[*n];
  if (type == 0 || cp_sockaddr_to_addr(sa, len, &it->addr) != CPORT_OK ||
      it->addr.family == CPORT_AF_UNIX)
    return;
  it->type = type;
  (*n)++;
}

/* The one-allocation answer; frees items. */
static int answer(cp_ai_item *items, size_t n, const wchar_t *canon, cport_addrinfo **out,
                  size_t *count) {
  char text[CPORT_NI_MAXHOST];
  bool has_canon = canon && to_utf8(canon, text, sizeof text) == CPORT_OK;
  int rc = cp_addrinfo_build(items, n, has_canon ? text : NULL, out);
  cp_free(items);
  *count = rc == CPORT_OK ? n : 0;
  return rc;
}

/* GetAddrInfoW's list and GetAddrInfoExW's are two types with the same
 * fields: one walk each. */
static int build(const ADDRINFOW *res, cport_addrinfo **out, size_t *count) {
  size_t cap = 0, n = 0;
  for (const ADDRINFOW *ai = res; ai; ai = ai->ai_next) cap++;
  cp_ai_item *items = cp_calloc(cap ? cap : 1, sizeof *items);
  if (!items) return CPORT_ENOMEM;
  for (const ADDRINFOW *ai = res; ai; ai = ai->ai_next)
    add_item(items, &n, ai->ai_socktype, ai->ai_addr, ai->ai_addrlen);
  return answer(items, n, res->ai_canonname, out, count);
}

/* mingw-w64 declares ADDRINFOEXW's ai_next as a pointer to a struct of
 * another spelling (addrinfoexW): the same layout, but a distinct type. */
static const ADDRINFOEXW *ex_next(const ADDRINFOEXW *ai) {
  return (const ADDRINFOEXW *)(const void *)ai->ai_next;
}

static int build_ex(const ADDRINFOEXW *res, cport_addrinfo **out, size_t *count) {
  size_t cap = 0, n = 0;
  for (const ADDRINFOEXW *ai = res; ai; ai = ex_next(ai)) cap++;
  cp_ai_item *items = cp_calloc(cap ? cap : 1, sizeof *items);
  if (!items) return CPORT_ENOMEM;
  for (const ADDRINFOEXW *ai = res; ai; ai = ex_next(ai))
    add_item(items, &n, ai->ai_socktype, ai->ai_addr, ai->ai_addrlen);
  return answer(items, n, res->ai_canonname, out, count);
}

int cp_os_getaddrinfo(const char *host, const char *service, const cport_resolve_hints *hints,
                      cport_addrinfo **out, size_t *count) {
  wchar_t *whost = NULL, *wservice = NULL;
  int rc = cp_win_startup();
  if (rc == CPORT_OK) rc = to_wide(host, &whost);
  if (rc == CPORT_OK) rc = to_wide(service, &wservice);
  if (rc == CPORT_OK) {
    ADDRINFOW want, *res = NULL;
    memset(&want, 0, sizeof want);
    os_hints(hints, &want.ai_family, &want.ai_socktype, &want.ai_flags);
    int err = GetAddrInfoW(whost, wservice, &want, &res);
    if (err != 0) { /* the code is the result: WSAGetLastError() may say 0 (Wine) */
      rc = cp_win_err((uint32_t)err);
    } else {
      rc = build(res, out, count);
      FreeAddrInfoW(res);
    }
  }
  cp_free(whost);
  cp_free(wservice);
  return rc;
}

int cp_os_getnameinfo(const cport_addr *addr, unsigned flags, cport_names *out) {
  struct sockaddr_storage ss;
  size_t len;
  int rc = cp_win_startup();
  if (rc == CPORT_OK) rc = cp_sockaddr_from_addr(addr, &ss, &len);
  if (rc != CPORT_OK) return rc;
  int ni = 0;
  if (flags & CPORT_NAMEINFO_NUMERIC_HOST) ni |= NI_NUMERICHOST;
  if (flags & CPORT_NAMEINFO_NUMERIC_SERV) ni |= NI_NUMERICSERV;
  if (flags & CPORT_NAMEINFO_NAME_REQUIRED) ni |= NI_NAMEREQD;
  if (flags & CPORT_NAMEINFO_DGRAM) ni |= NI_DGRAM;
  wchar_t host[CPORT_NI_MAXHOST], service[CPORT_NI_MAXSERV];
  int err = GetNameInfoW((const SOCKADDR *)&ss, (socklen_t)len, host, CPORT_NI_MAXHOST, service,
                         CPORT_NI_MAXSERV, ni);
  if (err != 0) return cp_win_err((uint32_t)err); /* as GetAddrInfoW */
  rc = to_utf8(host, out->host, sizeof out->host);
  return rc == CPORT_OK ? to_utf8(service, out->service, sizeof out->service) : rc;
}

/* ---- GetAddrInfoExW: the OS's own asynchronous lookup ---------------------- */

/* One lookup the OS runs; its completion routine gets the OVERLAPPED. */
typedef struct win_lookup {
  OVERLAPPED ov; /* first: the routine's pointer is the lookup's */
  cp_job *job;
  PADDRINFOEXW result;
  HANDLE cancel;
  wchar_t *host, *service;
} win_lookup;

/* Windows 7 has no asynchronous form: once a call says so, the pool runs
 * every lookup. */
static volatile LONG g_no_async;

static void lookup_free(win_lookup *wl) {
  if (wl->result) FreeAddrInfoExW(wl->result);
  cp_free(wl->host);
  cp_free(wl->service);
  cp_free(wl);
}

/* On a thread of the system's: the answer becomes the job's message. */
static void CALLBACK on_lookup(DWORD err, DWORD bytes, LPWSAOVERLAPPED ov) {
  (void)bytes;
  win_lookup *wl = (win_lookup *)(void *)ov;
  cport_addrinfo *list = NULL;
  size_t count = 0;
  int rc = err != 0 ? cp_win_err(err) : build_ex(wl->result, &list, &count);
  cp_job *job = wl->job;
  lookup_free(wl);
  cp_job_finish(job, rc, list, count);
}

static int lookup_call(win_lookup *wl, const cport_resolve_hints *hints) {
  ADDRINFOEXW want;
  memset(&want, 0, sizeof want);
  os_hints(hints, &want.ai_family, &want.ai_socktype, &want.ai_flags);
  return GetAddrInfoExW(wl->host, wl->service, NS_ALL, NULL, &want, &wl->result, NULL, &wl->ov,
                        on_lookup, &wl->cancel);
}

/* A cancel abandons the lookup (the core delivers its abort and drops the
 * answer): GetAddrInfoExCancel is not called, because Wine 8 hands out no
 * cancel handle (docs/wine.md, "Name resolution"), so that path could
 * never be tested here. */
int cp_os_resolve_start(cp_job *job, const char *host, const char *service,
                        const cport_resolve_hints *hints, cport_addrinfo **out, size_t *count) {
  if (InterlockedCompareExchange(&g_no_async, 0, 0)) return CPORT_ENOTSUP;
  int rc = cp_win_startup();
  win_lookup *wl = rc == CPORT_OK ? cp_calloc(1, sizeof *wl) : NULL;
  if (!wl) return rc == CPORT_OK ? CPORT_ENOMEM : rc;
  wl->job = job;
  rc = to_wide(host, &wl->host);
  if (rc == CPORT_OK) rc = to_wide(service, &wl->service);
  if (rc != CPORT_OK) {
    lookup_free(wl);
    return rc;
  }
  int err = lookup_call(wl, hints);
  if (err == WSA_IO_PENDING) return CP_PENDING;   /* on_lookup ends it */
  if (err == WSAEINVAL || err == WSAEOPNOTSUPP) { /* no asynchronous form here */
    InterlockedExchange(&g_no_async, 1);
    lookup_free(wl);
    return CPORT_ENOTSUP;
  }
  /* Answered at once: the routine is not called. */
  rc = err != 0 ? cp_win_err((uint32_t)err) : build_ex(wl->result, out, count);
  lookup_free(wl);
  return rc;
}
