/* Run-time probe for address families: the truth is whether WSASocketW
 * makes a socket of the family. For AF_UNIX that is Windows 10 1803 and
 * later; Wine 8 says WSAEAFNOSUPPORT (docs/wine.md, "AF_UNIX"). cport_open
 * makes the same call, so it refuses exactly where this answers 0. */
#include "internal.h"

#include <ws2tcpip.h>

#ifndef AF_UNIX
#define AF_UNIX 1
#endif

int cp_os_family_supported(int family) {
  int af = family == CPORT_AF_INET6 ? AF_INET6 : family == CPORT_AF_UNIX ? AF_UNIX : AF_INET;
  WSADATA wsa;
  if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return 0;
  SOCKET s = WSASocketW(af, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_NO_HANDLE_INHERIT);
  int ok = s != INVALID_SOCKET;
  if (ok) closesocket(s);
  WSACleanup(); /* balances the WSAStartup above, on success only */
  return ok;
}
