/* The NT layer of the IOCP backend's select mode: \Device\Afd and
 * IOCTL_AFD_POLL (see afd.h). NtCreateFile and NtDeviceIoControlFile are
 * not in the import libraries the build links, so they are resolved from
 * ntdll once per process. */
#include "afd.h"

#define IOCTL_AFD_POLL 0x00012024u

/* NtCreateFile arguments. */
#define CP_OBJ_CASE_INSENSITIVE 0x00000040u
#define CP_FILE_OPEN 0x00000001u

typedef struct cp_unicode_string {
  USHORT length;
  USHORT maximum_length;
  PWSTR buffer;
} cp_unicode_string;

typedef struct cp_object_attributes {
  ULONG length;
  HANDLE root_directory;
  cp_unicode_string *object_name;
  ULONG attributes;
  PVOID security_descriptor;
  PVOID security_quality_of_service;
} cp_object_attributes;

typedef struct cp_iosb {
  union {
    LONG status;
    PVOID pointer;
  } u;
  ULONG_PTR information;
} cp_iosb;

typedef LONG(NTAPI *nt_create_file_fn)(HANDLE *, ACCESS_MASK, cp_object_attributes *, cp_iosb *,
                                       LARGE_INTEGER *, ULONG, ULONG, ULONG, ULONG, PVOID, ULONG);
typedef LONG(NTAPI *nt_device_io_control_file_fn)(HANDLE, HANDLE, PVOID, PVOID, cp_iosb *, ULONG,
                                                  PVOID, ULONG, PVOID, ULONG);

static nt_create_file_fn p_NtCreateFile;
static nt_device_io_control_file_fn p_NtDeviceIoControlFile;
static INIT_ONCE g_nt_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK nt_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
  if (ntdll) {
    p_NtCreateFile = (nt_create_file_fn)(void (*)(void))GetProcAddress(ntdll, "NtCreateFile");
    p_NtDeviceIoControlFile = (nt_device_io_control_file_fn)(void (*)(void))GetProcAddress(
        ntdll, "NtDeviceIoControlFile");
  }
  return TRUE;
}

HANDLE cp_afd_open(HANDLE port, ULONG_PTR key) {
  if (!InitOnceExecuteOnce(&g_nt_once, nt_init, NULL, NULL)) return NULL;
  if (!p_NtCreateFile || !p_NtDeviceIoControlFile) return NULL;
  static WCHAR name[] = L"\\Device\\Afd\\CPort";
  cp_unicode_string us = {(USHORT)(sizeof name - sizeof name[0]), (USHORT)sizeof name, name};
  cp_object_attributes attr = {sizeof attr, NULL, &us, CP_OBJ_CASE_INSENSITIVE, NULL, NULL};
  cp_iosb iosb;
  HANDLE h = NULL;
  LONG st = p_NtCreateFile(&h, SYNCHRONIZE, &attr, &iosb, NULL, 0,
                           FILE_SHARE_READ | FILE_SHARE_WRITE, CP_FILE_OPEN, 0, NULL, 0);
  if (st != CP_STATUS_SUCCESS) return NULL;
  if (!CreateIoCompletionPort(h, port, key, 0)) {
    CloseHandle(h);
    return NULL;
  }
  /* No SKIP_COMPLETION_PORT_ON_SUCCESS here: every poll queues a packet. */
  (void)SetFileCompletionNotificationModes(h, FILE_SKIP_SET_EVENT_ON_HANDLE);
  return h;
}

/* p_NtDeviceIoControlFile is resolved: afd came from cp_afd_open. */
LONG cp_afd_poll(HANDLE afd, SOCKET base, ULONG events, cp_afd_poll_info *info, OVERLAPPED *ov) {
  info->timeout.QuadPart = INT64_MAX;
  info->number_of_handles = 1;
  info->exclusive = FALSE;
  info->handles[0].handle = (HANDLE)base;
  info->handles[0].events = events;
  ov->Internal = (ULONG_PTR)CP_STATUS_PENDING;
  return p_NtDeviceIoControlFile(afd, NULL, NULL, ov, (cp_iosb *)(void *)ov, IOCTL_AFD_POLL, info,
                                 sizeof *info, info, sizeof *info);
}
