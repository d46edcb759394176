/* One table from Windows error codes (Win32, WSA and NTSTATUS) to cport_err.
 * See errmap.c for the table and the reasoning behind each row. */
#ifndef CPORT_WIN_ERRMAP_H
#define CPORT_WIN_ERRMAP_H

#include "cp_platform.h"

#include <stdint.h>

/* A Win32 or Winsock error code (GetLastError/WSAGetLastError/GQCS) as a
 * cport_err. 0 maps to CPORT_OK; a code with no portable equivalent maps to
 * CPORT_EUNKNOWN. Never returns a positive value. */
int cp_win_err(uint32_t code);

/* An NTSTATUS (OVERLAPPED.Internal, IO_STATUS_BLOCK.Status) as a cport_err.
 * STATUS_SUCCESS maps to CPORT_OK. Warning-class statuses (0x8xxxxxxx, such
 * as Wine's STATUS_HANDLES_CLOSED 0x8000000A or a truncated datagram's
 * STATUS_BUFFER_OVERFLOW 0x80000005) are NOT success: NT_SUCCESS is false
 * for them. Unlisted statuses go through RtlNtStatusToDosError. */
int cp_win_nterr(uint32_t status);

/* cp_win_err(WSAGetLastError()). */
int cp_win_last(void);

/* Whether a Win32 code / NTSTATUS is one of the ways an operation ends when
 * the socket was closed (or cancelled) locally: 995, 1236, 64, 676, 6 and
 * their NTSTATUS forms (docs/wine.md pitfall 2). Only meaningful together
 * with "we closed it": 64 without a local close is a peer reset. */
int cp_win_is_local_close(uint32_t code);
int cp_win_nt_is_local_close(uint32_t status);

/* NTSTATUS to Win32 code (RtlNtStatusToDosError, resolved at run time). */
uint32_t cp_win_nt_to_win32(uint32_t status);

#endif
