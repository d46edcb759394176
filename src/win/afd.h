/* The NT layer under the IOCP backend's select mode: the NTSTATUS values
 * the backend tests, and IOCTL_AFD_POLL on a \Device\Afd handle (as wepoll
 * does), through NtCreateFile and NtDeviceIoControlFile resolved from ntdll
 * at run time. Not installed. */
#ifndef CPORT_WIN_AFD_H
#define CPORT_WIN_AFD_H

#include "cp_platform.h" /* winsock2.h, then windows.h */

#include <stdint.h>

/* ---- NTSTATUS (OVERLAPPED.Internal, IO_STATUS_BLOCK.Status) ------------- */

#define CP_STATUS_SUCCESS ((LONG)0x00000000L)
#define CP_STATUS_PENDING ((LONG)0x00000103L)
/* A warning, not a success: a datagram longer than the buffer, whose start
 * the buffer holds (WSAEMSGSIZE). */
#define CP_STATUS_BUFFER_OVERFLOW 0x80000005u
#define CP_STATUS_CANCELLED 0xC0000120u
#define CP_NT_SUCCESS(st) ((int32_t)(st) >= 0)

/* ---- IOCTL_AFD_POLL ------------------------------------------------------ */

#define AFD_POLL_RECEIVE 0x0001u
#define AFD_POLL_SEND 0x0004u
#define AFD_POLL_DISCONNECT 0x0008u
#define AFD_POLL_ABORT 0x0010u
#define AFD_POLL_LOCAL_CLOSE 0x0020u
#define AFD_POLL_ACCEPT 0x0080u
#define AFD_POLL_CONNECT_FAIL 0x0100u

typedef struct cp_afd_poll_handle_info {
  HANDLE handle;
  ULONG events;
  LONG status;
} cp_afd_poll_handle_info;

typedef struct cp_afd_poll_info {
  LARGE_INTEGER timeout;
  ULONG number_of_handles;
  ULONG exclusive;
  cp_afd_poll_handle_info handles[1];
} cp_afd_poll_info;

/* Opens \Device\Afd\CPort and attaches it to port with key; NULL if ntdll
 * lacks the NT calls or the device cannot be opened (select mode is then
 * unavailable). Every poll on it queues a packet, even one done at once. */
HANDLE cp_afd_open(HANDLE port, ULONG_PTR key);

/* Starts an IOCTL_AFD_POLL on afd (from cp_afd_open) for one base socket
 * handle and events, with no time limit. info and ov (its IO_STATUS_BLOCK,
 * and the packet's lpOverlapped) belong to the OS until the packet is
 * dequeued. Returns the NTSTATUS: CP_STATUS_PENDING, a success (done at
 * once), or an error (no packet comes). */
LONG cp_afd_poll(HANDLE afd, SOCKET base, ULONG events, cp_afd_poll_info *info, OVERLAPPED *ov);

#endif
