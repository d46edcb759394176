/* Winsock set-up, addresses, extension functions and the synchronous
 * socket calls of the IOCP backend. Every Winsock call is checked and every
 * error goes through errmap.c. */
#include "cp_win.h"

#include <string.h>

#include "cp_sockaddr.h" /* after the OS headers it relies on (cp_win.h) */

/* ---- WSAStartup, once per process ---------------------------------------- */

static INIT_ONCE g_wsa_once = INIT_ONCE_STATIC_INIT;
static int g_wsa_rc = CPORT_OK;

static BOOL CALLBACK wsa_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  WSADATA data;
  int rc = WSAStartup(MAKEWORD(2, 2), &data);
  if (rc != 0)
    g_wsa_rc = cp_win_err((uint32_t)rc);
  else if (LOBYTE(data.wVersion) != 2 || HIBYTE(data.wVersion) != 2)
    g_wsa_rc = CPORT_ENOTSUP;
  /* Never WSACleanup: other contexts, or the user, may still use Winsock;
   * the process exit releases it. */
  return TRUE;
}

int cp_win_startup(void) {
  if (!InitOnceExecuteOnce(&g_wsa_once, wsa_init, NULL, NULL)) return cp_win_err(GetLastError());
  return g_wsa_rc;
}

#ifndef AF_UNIX
#define AF_UNIX 1
#endif

/* AF_UNIX maps to itself, never to AF_INET: where the system lacks it
 * (Wine 8, Windows before 10 1803) WSASocketW says WSAEAFNOSUPPORT and so
 * does cport_open, as cport_family_supported foretold (family.c). */
static int os_family(int family) {
  return family == CPORT_AF_INET6 ? AF_INET6 : family == CPORT_AF_UNIX ? AF_UNIX : AF_INET;
}
static int os_type(int type) { return type == CPORT_SOCK_DGRAM ? SOCK_DGRAM : SOCK_STREAM; }
static int os_proto_of(int family, int type) {
  if (family == CPORT_AF_UNIX) return 0; /* AF_UNIX has no IP protocol */
  return type == CPORT_SOCK_DGRAM ? IPPROTO_UDP : IPPROTO_TCP;
}
/* Per-family caches (skip probe, extension functions): each family may
 * have its own provider. */
#define FAMILIES 3
static int fam_index(int family) {
  return family == CPORT_AF_INET6 ? 1 : family == CPORT_AF_UNIX ? 2 : 0;
}

/* ---- IFS probe: is FILE_SKIP_COMPLETION_PORT_ON_SUCCESS safe? ------------ */

/* [family][type]: 0 = not probed yet, 1 = safe, 2 = not safe */
static LONG g_skip[FAMILIES][2];

static int probe_ifs(int family, int type) {
  SOCKET s = WSASocketW(os_family(family), os_type(type), os_proto_of(family, type), NULL, 0, 0);
  if (s == INVALID_SOCKET) return 0;
  WSAPROTOCOL_INFOW info;
  int len = (int)sizeof info;
  int ok = 0;
  if (getsockopt(s, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &len) == 0)
    ok = (info.dwServiceFlags1 & XP1_IFS_HANDLES) != 0;
  closesocket(s);
  return ok;
}

int cp_win_skip_ok(int family, int type) {
  const char *env = cp_getenv("CPORT_IOCP_NO_SKIP");
  if (env && env[0] && strcmp(env, "0") != 0) return 0;
  LONG *slot = &g_skip[fam_index(family)][type == CPORT_SOCK_DGRAM ? 1 : 0];
  LONG v = InterlockedCompareExchange(slot, 0, 0);
  if (v == 0) {
    v = probe_ifs(family, type) ? 1 : 2;
    InterlockedExchange(slot, v); /* a racing prober computes the same value */
  }
  return v == 1;
}

/* ---- sockets ------------------------------------------------------------- */

int cp_win_socket(int family, int type, SOCKET *out) {
  int rc = cp_win_startup();
  if (rc != CPORT_OK) return rc;
  DWORD flags = WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT;
  int proto = os_proto_of(family, type);
  SOCKET s = WSASocketW(os_family(family), os_type(type), proto, NULL, 0, flags);
  if (s == INVALID_SOCKET && WSAGetLastError() == WSAEINVAL) {
    /* Before Windows 7 SP1 the flag is unknown: clear the bit by hand. */
    s = WSASocketW(os_family(family), os_type(type), proto, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (s != INVALID_SOCKET && !SetHandleInformation((HANDLE)s, HANDLE_FLAG_INHERIT, 0)) {
      rc = cp_win_err(GetLastError());
      closesocket(s);
      return rc;
    }
  }
  if (s == INVALID_SOCKET) return cp_win_last();
  *out = s;
  return CPORT_OK;
}

int cp_win_nonblock(SOCKET s) {
  u_long on = 1;
  return ioctlsocket(s, (long)FIONBIO, &on) == 0 ? CPORT_OK : cp_win_last();
}

static SOCKET ioctl_handle(SOCKET s, DWORD code) {
  SOCKET h = INVALID_SOCKET;
  DWORD bytes = 0;
  if (WSAIoctl(s, code, NULL, 0, &h, sizeof h, &bytes, NULL, NULL) != 0) return INVALID_SOCKET;
  return h;
}

/* As wepoll does: SIO_BASE_HANDLE, and when a layered provider wrongly
 * intercepts it, step down through SIO_BSP_HANDLE_POLL and try again. Wine
 * returns the socket itself (and 10045 for SIO_BSP_HANDLE_*). Failing all
 * that, the socket itself is the best guess. */
SOCKET cp_win_base_handle(SOCKET s) {
  SOCKET cur = s;
  for (int depth = 0; depth < 8; depth++) {
    SOCKET base = ioctl_handle(cur, SIO_BASE_HANDLE);
    if (base != INVALID_SOCKET) return base;
    SOCKET bsp = ioctl_handle(cur, SIO_BSP_HANDLE_POLL);
    if (bsp == INVALID_SOCKET || bsp == cur) break;
    cur = bsp;
  }
  return cur;
}

/* ---- addresses ----------------------------------------------------------- */

int cp_win_addr_to_os(const cport_addr *a, struct sockaddr_storage *ss, int *len) {
  size_t n = 0;
  int rc = cp_sockaddr_from_addr(a, ss, &n);
  *len = (int)n;
  return rc;
}

int cp_win_addr_from_os(const struct sockaddr *sa, int len, cport_addr *a) {
  return cp_sockaddr_to_addr(sa, len > 0 ? (size_t)len : 0u, a);
}

void cp_win_wildcard(int family, struct sockaddr_storage *ss, int *len) {
  if (family == CPORT_AF_UNIX) {
    /* Unnamed: what ConnectEx needs bound first, and what POSIX reports
     * as the name of an unbound AF_UNIX socket. */
    memset(ss, 0, sizeof *ss);
    ss->ss_family = AF_UNIX;
    *len = (int)offsetof(struct sockaddr_un, sun_path);
    return;
  }
  cport_addr any;
  memset(&any, 0, sizeof any);
  any.family = family == CPORT_AF_INET6 ? CPORT_AF_INET6 : CPORT_AF_INET;
  cp_win_addr_to_os(&any, ss, len);
}

/* ---- extension functions ------------------------------------------------- */

static SRWLOCK g_ext_lock = SRWLOCK_INIT;
static LPFN_ACCEPTEX g_acceptex[FAMILIES];
static LPFN_CONNECTEX g_connectex[FAMILIES];
static LPFN_WSARECVMSG g_wsarecvmsg[FAMILIES];
static LPFN_GETACCEPTEXSOCKADDRS g_getacceptexsockaddrs[FAMILIES];

static int get_ext(SOCKET s, GUID guid, void *fn, DWORD fn_size) {
  DWORD bytes = 0;
  return WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, fn, fn_size, &bytes,
                  NULL, NULL) == 0;
}

LPFN_ACCEPTEX cp_win_acceptex(SOCKET s, int family) {
  int i = fam_index(family);
  AcquireSRWLockExclusive(&g_ext_lock);
  if (!g_acceptex[i]) {
    LPFN_ACCEPTEX fn = NULL;
    if (get_ext(s, (GUID)WSAID_ACCEPTEX, &fn, sizeof fn)) g_acceptex[i] = fn;
  }
  LPFN_ACCEPTEX fn = g_acceptex[i];
  ReleaseSRWLockExclusive(&g_ext_lock);
  return fn;
}

LPFN_CONNECTEX cp_win_connectex(SOCKET s, int family) {
  int i = fam_index(family);
  AcquireSRWLockExclusive(&g_ext_lock);
  if (!g_connectex[i]) {
    LPFN_CONNECTEX fn = NULL;
    if (get_ext(s, (GUID)WSAID_CONNECTEX, &fn, sizeof fn)) g_connectex[i] = fn;
  }
  LPFN_CONNECTEX fn = g_connectex[i];
  ReleaseSRWLockExclusive(&g_ext_lock);
  return fn;
}

LPFN_GETACCEPTEXSOCKADDRS cp_win_getacceptexsockaddrs(SOCKET s, int family) {
  int i = fam_index(family);
  AcquireSRWLockExclusive(&g_ext_lock);
  if (!g_getacceptexsockaddrs[i]) {
    LPFN_GETACCEPTEXSOCKADDRS fn = NULL;
    if (get_ext(s, (GUID)WSAID_GETACCEPTEXSOCKADDRS, &fn, sizeof fn))
      g_getacceptexsockaddrs[i] = fn;
  }
  LPFN_GETACCEPTEXSOCKADDRS fn = g_getacceptexsockaddrs[i];
  ReleaseSRWLockExclusive(&g_ext_lock);
  return fn;
}

/* WSARecvMsg is only reachable as an extension function (WSASendMsg is a
 * plain export since Vista). Fetched lazily, per family, like AcceptEx. */
LPFN_WSARECVMSG cp_win_wsarecvmsg(SOCKET s, int family) {
  int i = fam_index(family);
  AcquireSRWLockExclusive(&g_ext_lock);
  if (!g_wsarecvmsg[i]) {
    LPFN_WSARECVMSG fn = NULL;
    if (get_ext(s, (GUID)WSAID_WSARECVMSG, &fn, sizeof fn)) g_wsarecvmsg[i] = fn;
  }
  LPFN_WSARECVMSG fn = g_wsarecvmsg[i];
  ReleaseSRWLockExclusive(&g_ext_lock);
  return fn;
}

/* ---- synchronous calls --------------------------------------------------- */

#define SOCK(s) ((SOCKET)(s)->os)

int cp_win_bind(cp_sock *s, const cport_addr *addr) {
  struct sockaddr_storage ss;
  int len;
  int rc = cp_win_addr_to_os(addr, &ss, &len);
  if (rc != CPORT_OK) return rc;
  bool ip = s->family != CPORT_AF_UNIX; /* a path has no port to guard */
  if (ip && s->type == CPORT_SOCK_STREAM) {
    /* No port stealing: nobody else may bind our port, even with
     * SO_REUSEADDR. Rebinding a port in TIME_WAIT still works. A user who
     * set SO_REUSEADDR asked for sharing: the two cannot be combined
     * (WSAEINVAL), so the user's choice wins. BOOL getsockopt may write a
     * single byte (docs/wine.md pitfall 8): start from zero. */
    BOOL reuse = FALSE;
    int len = (int)sizeof reuse;
    if (getsockopt(SOCK(s), SOL_SOCKET, SO_REUSEADDR, (char *)&reuse, &len) != 0)
      return cp_win_last();
    if (!reuse) {
      BOOL one = TRUE;
      if (setsockopt(SOCK(s), SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one, sizeof one) != 0)
        return cp_win_last();
    }
  }
  if (bind(SOCK(s), (struct sockaddr *)&ss, len) == 0) return CPORT_OK;
  int err = WSAGetLastError();
  /* A port held with SO_EXCLUSIVEADDRUSE (or reserved by the system) is
   * refused with WSAEACCES: for the user it is a port in use, as on POSIX.
   * For a path it means what it says (no write access to its directory);
   * a path that exists already is WSAEADDRINUSE. */
  if (err == WSAEACCES && ip) return CPORT_EADDRINUSE;
  return cp_win_err((uint32_t)err);
}

int cp_win_listen_os(cp_sock *s, int backlog) {
  if (!s->bound) {
    /* POSIX binds an unbound listener to an ephemeral port; Windows says
     * WSAEINVAL. Behave the same everywhere. */
    struct sockaddr_storage ss;
    int len;
    cp_win_wildcard(s->family, &ss, &len);
    if (bind(SOCK(s), (struct sockaddr *)&ss, len) != 0) return cp_win_last();
  }
  if (backlog <= 0) backlog = SOMAXCONN;
  return listen(SOCK(s), backlog) == 0 ? CPORT_OK : cp_win_last();
}

int cp_win_shutdown_os(cp_sock *s, int how) {
  int os_how = how == CPORT_SHUT_RD ? SD_RECEIVE : how == CPORT_SHUT_WR ? SD_SEND : SD_BOTH;
  return shutdown(SOCK(s), os_how) == 0 ? CPORT_OK : cp_win_last();
}

static int name_of(cp_sock *s, cport_addr *addr, int peer) {
  struct sockaddr_storage ss;
  int len = (int)sizeof ss;
  memset(&ss, 0, sizeof ss);
  int rc = peer ? getpeername(SOCK(s), (struct sockaddr *)&ss, &len)
                : getsockname(SOCK(s), (struct sockaddr *)&ss, &len);
  if (rc != 0) {
    int err = WSAGetLastError();
    if (!peer && err == WSAEINVAL && !s->bound) {
      /* Unbound: POSIX answers the wildcard address with port 0 (AF_UNIX:
       * the unnamed address). */
      cp_win_wildcard(s->family, &ss, &len);
    } else {
      return cp_win_err((uint32_t)err);
    }
  }
  /* An unnamed AF_UNIX end may come back with no family filled in. */
  if (s->family == CPORT_AF_UNIX && ss.ss_family == AF_UNSPEC) ss.ss_family = AF_UNIX;
  return cp_win_addr_from_os((struct sockaddr *)&ss, len, addr);
}

int cp_win_sockname(cp_sock *s, cport_addr *addr) { return name_of(s, addr, 0); }
int cp_win_peername(cp_sock *s, cport_addr *addr) { return name_of(s, addr, 1); }
