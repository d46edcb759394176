/* Run-time probe for address families. AF_UNIX is answered 0: Windows 10
 * has it (Wine 8 does not: WINE.md, "AF_UNIX"), but this backend does not
 * map its paths yet, so cport_open refuses it on every Windows. */
#include "internal.h"

#include <ws2tcpip.h>

#ifndef AF_UNIX
#define AF_UNIX 1
#endif

int cp_os_family_supported(int family) {
  if (family == CPORT_AF_UNIX) return 0;
  int af = family == CPORT_AF_INET6 ? AF_INET6 : family == CPORT_AF_UNIX ? AF_UNIX : AF_INET;
  WSADATA wsa;
  if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return 0;
  SOCKET s = WSASocketW(af, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_NO_HANDLE_INHERIT);
  int ok = s != INVALID_SOCKET;
  if (ok) closesocket(s);
  WSACleanup(); /* balances the WSAStartup above, on success only */
  return ok;
}
