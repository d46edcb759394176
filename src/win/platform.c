/* Windows implementation of cp_platform.h. SRW locks and condition
 * variables cannot fail to initialise; a failed wait only means the timeout
 * elapsed (callers re-check their predicate and the clock). */
#include "internal.h" /* the prototypes this file implements */

#include <stdlib.h>

int cp_mutex_init(cp_mutex *m) {
  InitializeSRWLock(m);
  return 0;
}
void cp_mutex_destroy(cp_mutex *m) { (void)m; /* SRW locks need no clean-up */ }
void cp_mutex_lock(cp_mutex *m) { AcquireSRWLockExclusive(m); }
void cp_mutex_unlock(cp_mutex *m) { ReleaseSRWLockExclusive(m); }

int cp_cond_init(cp_cond *c) {
  InitializeConditionVariable(c);
  return 0;
}
void cp_cond_destroy(cp_cond *c) { (void)c; }
void cp_cond_signal(cp_cond *c) { WakeConditionVariable(c); }
void cp_cond_broadcast(cp_cond *c) { WakeAllConditionVariable(c); }

void cp_cond_wait_until(cp_cond *c, cp_mutex *m, uint64_t deadline_ms) {
  DWORD wait = INFINITE;
  if (deadline_ms != UINT64_MAX) {
    uint64_t now = cp_now_ms();
    if (deadline_ms <= now) {
      wait = 0;
    } else {
      uint64_t left = deadline_ms - now;
      /* INFINITE is 0xFFFFFFFF: never pass it by accident. */
      wait = left >= (uint64_t)INFINITE ? INFINITE - 1u : (DWORD)left;
    }
  }
  /* FALSE with ERROR_TIMEOUT is the normal timeout; the caller re-checks. */
  (void)SleepConditionVariableSRW(c, m, wait, 0);
}

/* A fiber-local slot whose callback runs when a thread exits (FLS, unlike
 * TLS, has one), which is where the core frees its per-thread caches. */
static DWORD exit_slot = FLS_OUT_OF_INDEXES;
static INIT_ONCE exit_once = INIT_ONCE_STATIC_INIT;

static VOID WINAPI on_fls_exit(PVOID arg) {
  if (arg) cp_thread_exit(arg);
}

static BOOL CALLBACK make_exit_slot(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  exit_slot = FlsAlloc(on_fls_exit);
  return TRUE;
}

int cp_thread_exit_register(void *arg) {
  InitOnceExecuteOnce(&exit_once, make_exit_slot, NULL, NULL);
  if (exit_slot == FLS_OUT_OF_INDEXES) return -1;
  return FlsSetValue(exit_slot, arg) ? 0 : -1;
}

/* GetTickCount64 has the resolution of the system timer (about 15.6 ms on
 * Windows, 1 ms under Wine); QueryPerformanceCounter is exact, so use it and
 * fall back to the tick count if it is ever unavailable. */
static LARGE_INTEGER qpc_freq;
static INIT_ONCE qpc_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK qpc_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
  (void)once, (void)param, (void)ctx;
  if (!QueryPerformanceFrequency(&qpc_freq)) qpc_freq.QuadPart = 0;
  return TRUE;
}

uint64_t cp_now_ms(void) {
  InitOnceExecuteOnce(&qpc_once, qpc_init, NULL, NULL);
  LARGE_INTEGER now;
  if (qpc_freq.QuadPart > 0 && QueryPerformanceCounter(&now)) {
    uint64_t t = (uint64_t)now.QuadPart, f = (uint64_t)qpc_freq.QuadPart;
    return (t / f) * 1000u + ((t % f) * 1000u) / f;
  }
  return (uint64_t)GetTickCount64();
}

const char *cp_getenv(const char *name) { return getenv(name); }
