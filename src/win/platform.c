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

/* Ticks of the counter in units per second (1000: ms, 1e9: ns). */
static uint64_t now_in(uint64_t units) {
  InitOnceExecuteOnce(&qpc_once, qpc_init, NULL, NULL);
  LARGE_INTEGER now;
  if (qpc_freq.QuadPart > 0 && QueryPerformanceCounter(&now)) {
    uint64_t t = (uint64_t)now.QuadPart, f = (uint64_t)qpc_freq.QuadPart;
    return (t / f) * units + ((t % f) * units) / f;
  }
  return (uint64_t)GetTickCount64() * (units / 1000u);
}

uint64_t cp_now_ms(void) { return now_in(1000u); }
uint64_t cp_now_ns(void) { return now_in(1000000000u); }

const char *cp_getenv(const char *name) { return getenv(name); }

unsigned cp_cpu_count(void) {
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  return si.dwNumberOfProcessors > 0 ? (unsigned)si.dwNumberOfProcessors : 1u;
}
