/* Windows error codes to cport_err: one table for Win32 codes, Winsock codes
 * and NTSTATUS values. The same event gives the same cport_err as on POSIX
 * (docs/design.md rule 8): a peer reset is CPORT_ECONNRESET whether Windows
 * said WSAECONNRESET, ERROR_NETNAME_DELETED or STATUS_CONNECTION_RESET.
 *
 * Codes that mean "we closed it" (995, 1236, 676, 6, and 64 after a local
 * close) are listed with their plain meaning here; the backend decides, from
 * its own knowledge of what it closed or cancelled, whether an operation was
 * aborted (docs/wine.md pitfall 2, docs/design.md rule 3). */
#include "errmap.h"

#include "cport.h"

#include <stddef.h>

enum { K_W32 = 1, K_NT = 2 };

typedef struct {
  uint32_t code;
  uint8_t kind;
  int8_t err;
  uint8_t local_close; /* one of the ways an op ends after our close/cancel */
} cp_errrow;

static const cp_errrow table[] = {
    /* ---- Win32 and Winsock ---------------------------------------------- */
    {0, K_W32, CPORT_OK, 0},
    /* resets: WSAECONNRESET; ERROR_NETNAME_DELETED is what an overlapped op
     * on a reset connection ends with (but also what Windows reports for a
     * local close: the backend tells the two apart) */
    {10054, K_W32, CPORT_ECONNRESET, 0},   /* WSAECONNRESET */
    {64, K_W32, CPORT_ECONNRESET, 1},      /* ERROR_NETNAME_DELETED */
    {10052, K_W32, CPORT_ECONNRESET, 0},   /* WSAENETRESET (keep-alive failure; as libuv) */
    {59, K_W32, CPORT_ECONNRESET, 0},      /* ERROR_UNEXP_NET_ERR */
    {1236, K_W32, CPORT_ECONNABORTED, 1},  /* ERROR_CONNECTION_ABORTED */
    {10053, K_W32, CPORT_ECONNABORTED, 0}, /* WSAECONNABORTED */
    {1225, K_W32, CPORT_ECONNREFUSED, 0},  /* ERROR_CONNECTION_REFUSED */
    {10061, K_W32, CPORT_ECONNREFUSED, 0}, /* WSAECONNREFUSED */
    {1234, K_W32, CPORT_ECONNREFUSED, 0},  /* ERROR_PORT_UNREACHABLE (UDP ICMP) */
    {1233, K_W32, CPORT_ECONNREFUSED, 0},  /* ERROR_PROTOCOL_UNREACHABLE */
    {995, K_W32, CPORT_ECANCELED, 1},      /* ERROR_OPERATION_ABORTED (CancelIoEx) */
    {1235, K_W32, CPORT_ECANCELED, 1},     /* ERROR_REQUEST_ABORTED */
    {676, K_W32, CPORT_ECLOSED, 1},        /* ERROR_HANDLES_CLOSED (Wine, after closesocket) */
    {6, K_W32, CPORT_ECLOSED, 1},        /* ERROR_INVALID_HANDLE (Wine, blocked send after close) */
    {10038, K_W32, CPORT_EBADF, 0},      /* WSAENOTSOCK */
    {10009, K_W32, CPORT_EBADF, 0},      /* WSAEBADF */
    {10040, K_W32, CPORT_EMSGSIZE, 0},   /* WSAEMSGSIZE */
    {234, K_W32, CPORT_EMSGSIZE, 0},     /* ERROR_MORE_DATA (truncated datagram) */
    {10060, K_W32, CPORT_ETIMEDOUT, 0},  /* WSAETIMEDOUT */
    {121, K_W32, CPORT_ETIMEDOUT, 0},    /* ERROR_SEM_TIMEOUT */
    {258, K_W32, CPORT_ETIMEDOUT, 0},    /* WAIT_TIMEOUT */
    {1460, K_W32, CPORT_ETIMEDOUT, 0},   /* ERROR_TIMEOUT */
    {10048, K_W32, CPORT_EADDRINUSE, 0}, /* WSAEADDRINUSE */
    {1227, K_W32, CPORT_EADDRINUSE, 0},  /* ERROR_ADDRESS_ALREADY_ASSOCIATED */
    {10049, K_W32, CPORT_EADDRNOTAVAIL, 0}, /* WSAEADDRNOTAVAIL */
    {1214, K_W32, CPORT_EADDRNOTAVAIL, 0},  /* ERROR_INVALID_NETNAME */
    {10047, K_W32, CPORT_EAFNOSUPPORT, 0},  /* WSAEAFNOSUPPORT */
    {10046, K_W32, CPORT_EAFNOSUPPORT, 0},  /* WSAEPFNOSUPPORT */
    {10024, K_W32, CPORT_EMFILE, 0},        /* WSAEMFILE */
    {4, K_W32, CPORT_EMFILE, 0},            /* ERROR_TOO_MANY_OPEN_FILES */
    {10067, K_W32, CPORT_ENFILE, 0},        /* WSAEPROCLIM */
    {10055, K_W32, CPORT_ENOBUFS, 0},       /* WSAENOBUFS */
    {1450, K_W32, CPORT_ENOBUFS, 0},        /* ERROR_NO_SYSTEM_RESOURCES */
    {1451, K_W32, CPORT_ENOBUFS, 0},        /* ERROR_NONPAGED_SYSTEM_RESOURCES */
    {1453, K_W32, CPORT_ENOBUFS, 0},        /* ERROR_WORKING_SET_QUOTA */
    {8, K_W32, CPORT_ENOMEM, 0},            /* ERROR_NOT_ENOUGH_MEMORY, WSA_NOT_ENOUGH_MEMORY */
    {14, K_W32, CPORT_ENOMEM, 0},           /* ERROR_OUTOFMEMORY */
    {10051, K_W32, CPORT_ENETUNREACH, 0},   /* WSAENETUNREACH */
    {1231, K_W32, CPORT_ENETUNREACH, 0},    /* ERROR_NETWORK_UNREACHABLE */
    {10065, K_W32, CPORT_EHOSTUNREACH, 0},  /* WSAEHOSTUNREACH */
    {1232, K_W32, CPORT_EHOSTUNREACH, 0},   /* ERROR_HOST_UNREACHABLE */
    {10064, K_W32, CPORT_EHOSTUNREACH, 0},  /* WSAEHOSTDOWN */
    {10050, K_W32, CPORT_ENETDOWN, 0},      /* WSAENETDOWN */
    {10093, K_W32, CPORT_ENETDOWN, 0},      /* WSANOTINITIALISED */
    {10091, K_W32, CPORT_ENETDOWN, 0},      /* WSASYSNOTREADY */
    {10057, K_W32, CPORT_ENOTCONN, 0},      /* WSAENOTCONN */
    {10056, K_W32, CPORT_EISCONN, 0},       /* WSAEISCONN */
    {1230, K_W32, CPORT_EISCONN, 0},        /* ERROR_CONNECTION_ACTIVE */
    {10058, K_W32, CPORT_EPIPE, 0},         /* WSAESHUTDOWN */
    {1226, K_W32, CPORT_EPIPE, 0},          /* ERROR_GRACEFUL_DISCONNECT */
    {109, K_W32, CPORT_EPIPE, 0},           /* ERROR_BROKEN_PIPE */
    {10101, K_W32, CPORT_EPIPE, 0},         /* WSAEDISCON */
    {10037, K_W32, CPORT_EALREADY, 0},      /* WSAEALREADY */
    {10036, K_W32, CPORT_EALREADY, 0},      /* WSAEINPROGRESS (as EINPROGRESS on POSIX) */
    {10022, K_W32, CPORT_EINVAL, 0},        /* WSAEINVAL */
    {87, K_W32, CPORT_EINVAL, 0},           /* ERROR_INVALID_PARAMETER */
    {10014, K_W32, CPORT_EINVAL, 0},        /* WSAEFAULT */
    {998, K_W32, CPORT_EINVAL, 0},          /* ERROR_NOACCESS */
    {122, K_W32, CPORT_EINVAL, 0},          /* ERROR_INSUFFICIENT_BUFFER */
    {10039, K_W32, CPORT_EINVAL, 0},        /* WSAEDESTADDRREQ */
    {1228, K_W32, CPORT_EINVAL, 0},         /* ERROR_ADDRESS_NOT_ASSOCIATED */
    {10045, K_W32, CPORT_EOPNOTSUPP, 0},    /* WSAEOPNOTSUPP */
    {50, K_W32, CPORT_ENOTSUP, 0},          /* ERROR_NOT_SUPPORTED */
    {10042, K_W32, CPORT_ENOTSUP, 0},       /* WSAENOPROTOOPT */
    {10043, K_W32, CPORT_ENOTSUP, 0},       /* WSAEPROTONOSUPPORT */
    {10044, K_W32, CPORT_ENOTSUP, 0},       /* WSAESOCKTNOSUPPORT */
    {10041, K_W32, CPORT_ENOTSUP, 0},       /* WSAEPROTOTYPE */
    {10013, K_W32, CPORT_EACCES, 0},        /* WSAEACCES */
    {5, K_W32, CPORT_EACCES, 0},            /* ERROR_ACCESS_DENIED */
    {10004, K_W32, CPORT_EINTR, 0},         /* WSAEINTR */
    {1223, K_W32, CPORT_ECANCELED, 0},      /* ERROR_CANCELLED */

    /* name resolution (GetAddrInfoW, GetNameInfoW) */
    {11001, K_W32, CPORT_ENONAME, 0},  /* WSAHOST_NOT_FOUND: no such name */
    {11004, K_W32, CPORT_ENONAME, 0},  /* WSANO_DATA: the name has no address of that family */
    {10109, K_W32, CPORT_ENONAME, 0},  /* WSATYPE_NOT_FOUND: no such service */
    {11002, K_W32, CPORT_EAGAIN, 0},   /* WSATRY_AGAIN: no name server answered */
    {11003, K_W32, CPORT_EUNKNOWN, 0}, /* WSANO_RECOVERY: the name server refused for good */
    /* ---- NTSTATUS ------------------------------------------------------- */
    {0x00000000u, K_NT, CPORT_OK, 0},        /* STATUS_SUCCESS */
    {0x00000102u, K_NT, CPORT_ETIMEDOUT, 0}, /* STATUS_TIMEOUT */
    {0x80000005u, K_NT, CPORT_EMSGSIZE, 0},  /* STATUS_BUFFER_OVERFLOW: warning, not success */
    {0x8000000Au, K_NT, CPORT_ECLOSED,
     1}, /* STATUS_HANDLES_CLOSED: Wine's pending recv after closesocket */
    {0xC0000120u, K_NT, CPORT_ECANCELED, 1},     /* STATUS_CANCELLED */
    {0xC0000240u, K_NT, CPORT_ECANCELED, 1},     /* STATUS_REQUEST_ABORTED */
    {0xC0000008u, K_NT, CPORT_ECLOSED, 1},       /* STATUS_INVALID_HANDLE */
    {0xC000020Bu, K_NT, CPORT_ECLOSED, 1},       /* STATUS_ADDRESS_CLOSED */
    {0xC000020Du, K_NT, CPORT_ECONNRESET, 0},    /* STATUS_CONNECTION_RESET */
    {0xC000013Cu, K_NT, CPORT_ECONNRESET, 0},    /* STATUS_REMOTE_DISCONNECT */
    {0xC000020Cu, K_NT, CPORT_ECONNRESET, 0},    /* STATUS_CONNECTION_DISCONNECTED */
    {0xC00000C9u, K_NT, CPORT_ECONNRESET, 1},    /* STATUS_NETWORK_NAME_DELETED */
    {0xC000013Eu, K_NT, CPORT_ECONNRESET, 0},    /* STATUS_LINK_FAILED */
    {0xC0000237u, K_NT, CPORT_ECONNRESET, 0},    /* STATUS_GRACEFUL_DISCONNECT */
    {0xC000013Bu, K_NT, CPORT_ECONNABORTED, 1},  /* STATUS_LOCAL_DISCONNECT */
    {0xC0000241u, K_NT, CPORT_ECONNABORTED, 1},  /* STATUS_CONNECTION_ABORTED */
    {0xC0000236u, K_NT, CPORT_ECONNREFUSED, 0},  /* STATUS_CONNECTION_REFUSED */
    {0xC000023Fu, K_NT, CPORT_ECONNREFUSED, 0},  /* STATUS_PORT_UNREACHABLE */
    {0xC000023Eu, K_NT, CPORT_ECONNREFUSED, 0},  /* STATUS_PROTOCOL_UNREACHABLE */
    {0xC000023Cu, K_NT, CPORT_ENETUNREACH, 0},   /* STATUS_NETWORK_UNREACHABLE */
    {0xC000023Du, K_NT, CPORT_EHOSTUNREACH, 0},  /* STATUS_HOST_UNREACHABLE */
    {0xC0000350u, K_NT, CPORT_EHOSTUNREACH, 0},  /* STATUS_HOST_DOWN */
    {0xC00000B5u, K_NT, CPORT_ETIMEDOUT, 0},     /* STATUS_IO_TIMEOUT */
    {0xC000013Fu, K_NT, CPORT_ETIMEDOUT, 0},     /* STATUS_LINK_TIMEOUT */
    {0xC000020Au, K_NT, CPORT_EADDRINUSE, 0},    /* STATUS_ADDRESS_ALREADY_EXISTS */
    {0xC0000209u, K_NT, CPORT_EADDRINUSE, 0},    /* STATUS_TOO_MANY_ADDRESSES */
    {0xC0000238u, K_NT, CPORT_EADDRINUSE, 0},    /* STATUS_ADDRESS_ALREADY_ASSOCIATED */
    {0xC0000141u, K_NT, CPORT_EADDRNOTAVAIL, 0}, /* STATUS_INVALID_ADDRESS */
    {0xC0000207u, K_NT, CPORT_EADDRNOTAVAIL, 0}, /* STATUS_INVALID_ADDRESS_COMPONENT */
    {0xC0000140u, K_NT, CPORT_ENOTCONN, 0},      /* STATUS_INVALID_CONNECTION */
    {0xC000023Au, K_NT, CPORT_ENOTCONN, 0},      /* STATUS_CONNECTION_INVALID */
    {0xC000023Bu, K_NT, CPORT_EISCONN, 0},       /* STATUS_CONNECTION_ACTIVE */
    {0xC000014Bu, K_NT, CPORT_EPIPE, 0},         /* STATUS_PIPE_BROKEN */
    {0xC00000B0u, K_NT, CPORT_EPIPE, 0},         /* STATUS_PIPE_DISCONNECTED */
    {0xC0000017u, K_NT, CPORT_ENOMEM, 0},        /* STATUS_NO_MEMORY */
    {0xC000009Au, K_NT, CPORT_ENOBUFS, 0},       /* STATUS_INSUFFICIENT_RESOURCES */
    {0xC0000044u, K_NT, CPORT_ENOBUFS, 0},       /* STATUS_QUOTA_EXCEEDED */
    {0xC000012Du, K_NT, CPORT_ENOBUFS, 0},       /* STATUS_COMMITMENT_LIMIT */
    {0xC000011Fu, K_NT, CPORT_EMFILE, 0},        /* STATUS_TOO_MANY_OPENED_FILES */
    {0xC000000Du, K_NT, CPORT_EINVAL, 0},        /* STATUS_INVALID_PARAMETER */
    {0xC0000005u, K_NT, CPORT_EINVAL, 0},        /* STATUS_ACCESS_VIOLATION (bad buffer) */
    {0xC0000023u, K_NT, CPORT_EINVAL, 0},        /* STATUS_BUFFER_TOO_SMALL */
    {0xC0000010u, K_NT, CPORT_EOPNOTSUPP, 0},    /* STATUS_INVALID_DEVICE_REQUEST */
    {0xC00000BBu, K_NT, CPORT_ENOTSUP, 0},       /* STATUS_NOT_SUPPORTED */
    {0xC0000002u, K_NT, CPORT_ENOTSUP, 0},       /* STATUS_NOT_IMPLEMENTED */
    {0xC0000022u, K_NT, CPORT_EACCES, 0},        /* STATUS_ACCESS_DENIED */
    {0x00000101u, K_NT, CPORT_EINTR, 0},         /* STATUS_ALERTED */
    {0x000000C0u, K_NT, CPORT_EINTR, 0},         /* STATUS_USER_APC */
};

static const cp_errrow *find(uint32_t code, uint8_t kind) {
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
    if (table[i].code == code && table[i].kind == kind) return &table[i];
  return NULL;
}

int cp_win_err(uint32_t code) {
  const cp_errrow *r = find(code, K_W32);
  return r ? r->err : CPORT_EUNKNOWN;
}

int cp_win_last(void) { return cp_win_err((uint32_t)WSAGetLastError()); }

typedef ULONG(WINAPI *rtl_nt_to_dos_fn)(LONG);

static rtl_nt_to_dos_fn rtl_nt_to_dos;
static INIT_ONCE rtl_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK rtl_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  if (ntdll) {
    FARPROC p = GetProcAddress(ntdll, "RtlNtStatusToDosError");
    /* FARPROC -> specific prototype: through void* to keep -Wcast-function-type quiet */
    rtl_nt_to_dos = (rtl_nt_to_dos_fn)(void (*)(void))p;
  }
  return TRUE;
}

uint32_t cp_win_nt_to_win32(uint32_t status) {
  InitOnceExecuteOnce(&rtl_once, rtl_init, NULL, NULL);
  if (!rtl_nt_to_dos) return 317; /* ERROR_MR_MID_NOT_FOUND, as ntdll does for unknown */
  return (uint32_t)rtl_nt_to_dos((LONG)status);
}

int cp_win_nterr(uint32_t status) {
  const cp_errrow *r = find(status, K_NT);
  if (r) return r->err;
  if ((int32_t)status >= 0) return CPORT_OK; /* NT_SUCCESS: success or informational */
  return cp_win_err(cp_win_nt_to_win32(status));
}

int cp_win_is_local_close(uint32_t code) {
  const cp_errrow *r = find(code, K_W32);
  return r ? r->local_close : 0;
}

int cp_win_nt_is_local_close(uint32_t status) {
  const cp_errrow *r = find(status, K_NT);
  if (r) return r->local_close;
  return cp_win_is_local_close(cp_win_nt_to_win32(status));
}
