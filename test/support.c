/*
 * Shared helpers of the cport test suites. Everything platform-specific of
 * the tests lives here, behind #ifdef _WIN32, so the test bodies are plain
 * C11 plus cport.h.
 */
#if !defined(_WIN32) && !defined(_XOPEN_SOURCE)
#define _XOPEN_SOURCE 700 /* fork, pipe, poll, rlimits, getrusage, nanosleep */
#endif

#include "support.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
/* winsock2.h must come before windows.h (mingw-w64 warns otherwise). */
#include <winsock2.h>
#include <ws2tcpip.h>

#include <process.h>
#include <windows.h>
#else
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#endif

#if defined(_MSC_VER)
#define SUP_TLS __declspec(thread)
#else
#define SUP_TLS _Thread_local
#endif

/* ======================================================================== */
/* Threads and mutexes                                                      */
/* ======================================================================== */

struct sup_mutex {
#ifdef _WIN32
  SRWLOCK lock;
#else
  pthread_mutex_t lock;
#endif
};

sup_mutex *sup_mutex_new(void) {
  sup_mutex *m = (sup_mutex *)calloc(1, sizeof *m);
  if (!m) abort();
#ifdef _WIN32
  InitializeSRWLock(&m->lock);
#else
  pthread_mutex_init(&m->lock, NULL);
#endif
  return m;
}

void sup_mutex_free(sup_mutex *m) {
  if (!m) return;
#ifndef _WIN32
  pthread_mutex_destroy(&m->lock);
#endif
  free(m);
}

void sup_mutex_lock(sup_mutex *m) {
#ifdef _WIN32
  AcquireSRWLockExclusive(&m->lock);
#else
  pthread_mutex_lock(&m->lock);
#endif
}

void sup_mutex_unlock(sup_mutex *m) {
#ifdef _WIN32
  ReleaseSRWLockExclusive(&m->lock);
#else
  pthread_mutex_unlock(&m->lock);
#endif
}

/* The lock of the helpers' own shared state (stash, ended handles,
 * allocations), statically initialised so no set-up order matters. */
#ifdef _WIN32
static SRWLOCK g_lock = SRWLOCK_INIT;
static void g_lock_acquire(void) { AcquireSRWLockExclusive(&g_lock); }
static void g_lock_release(void) { ReleaseSRWLockExclusive(&g_lock); }
#else
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static void g_lock_acquire(void) { pthread_mutex_lock(&g_lock); }
static void g_lock_release(void) { pthread_mutex_unlock(&g_lock); }
#endif

struct sup_thread {
  void (*fn)(void *);
  void *arg;
  jmp_buf jb;
  int failed;
  char err[2048];
#ifdef _WIN32
  HANDLE h;
#else
  pthread_t t;
#endif
};

/* The worker this thread runs, so that sup_fail can end it instead of
 * longjmp-ing into cmocka's main-thread state. */
static SUP_TLS sup_thread *tl_worker;

static void thread_body(sup_thread *t) {
  tl_worker = t;
  if (setjmp(t->jb) == 0)
    t->fn(t->arg);
  else
    t->failed = 1;
  tl_worker = NULL;
}

#ifdef _WIN32
static unsigned __stdcall thread_main(void *p) {
  thread_body((sup_thread *)p);
  return 0;
}
#else
static void *thread_main(void *p) {
  thread_body((sup_thread *)p);
  return NULL;
}
#endif

sup_thread *sup_thread_start(void (*fn)(void *), void *arg) {
  sup_thread *t = (sup_thread *)calloc(1, sizeof *t);
  if (!t) SUP_FAIL("out of memory");
  t->fn = fn;
  t->arg = arg;
#ifdef _WIN32
  t->h = (HANDLE)_beginthreadex(NULL, 0, thread_main, t, 0, NULL);
  if (!t->h) SUP_FAIL("_beginthreadex failed");
#else
  if (pthread_create(&t->t, NULL, thread_main, t) != 0) SUP_FAIL("pthread_create failed");
#endif
  return t;
}

void sup_thread_join(sup_thread *t) {
  char err[sizeof t->err];
  int failed;
#ifdef _WIN32
  WaitForSingleObject(t->h, INFINITE);
  CloseHandle(t->h);
#else
  pthread_join(t->t, NULL);
#endif
  failed = t->failed;
  memcpy(err, t->err, sizeof err);
  free(t);
  if (failed) SUP_FAIL("worker thread failed: %s", err);
}

/* ---- watchdog ----------------------------------------------------------- */

static sup_mutex *g_wd_mu;
static int g_wd_stop;
static sup_thread *g_wd_thread;
static int g_wd_seconds;
static char g_wd_what[256];

static void watchdog_main(void *arg) {
  uint64_t deadline = sup_now_ms() + (uint64_t)g_wd_seconds * 1000u;
  (void)arg;
  for (;;) {
    int stop;
    sup_mutex_lock(g_wd_mu);
    stop = g_wd_stop;
    sup_mutex_unlock(g_wd_mu);
    if (stop) return;
    if (sup_now_ms() > deadline) {
      fprintf(stderr,
              "\nWATCHDOG: '%s' did not finish within %d s (a wait that should have "
              "woken did not); aborting.\n",
              g_wd_what, g_wd_seconds);
      fflush(stderr);
      abort();
    }
    sup_sleep_ms(20);
  }
}

void sup_watchdog_start(int seconds, const char *what) {
  if (!g_wd_mu) g_wd_mu = sup_mutex_new();
  g_wd_stop = 0;
  g_wd_seconds = seconds;
  snprintf(g_wd_what, sizeof g_wd_what, "%s", what);
  g_wd_thread = sup_thread_start(watchdog_main, NULL);
}

void sup_watchdog_stop(void) {
  if (!g_wd_thread) return;
  sup_mutex_lock(g_wd_mu);
  g_wd_stop = 1;
  sup_mutex_unlock(g_wd_mu);
  sup_thread_join(g_wd_thread);
  g_wd_thread = NULL;
}

/* ======================================================================== */
/* Time and randomness                                                      */
/* ======================================================================== */

uint64_t sup_now_ms(void) {
#ifdef _WIN32
  return (uint64_t)GetTickCount64();
#else
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
#endif
}

uint64_t sup_now_us(void) {
#ifdef _WIN32
  /* The clock the library's timers run on (QueryPerformanceCounter), not
   * GetTickCount64, whose steps are the system timer's (about 15.6 ms). */
  LARGE_INTEGER freq, now;
  if (QueryPerformanceFrequency(&freq) && freq.QuadPart > 0 && QueryPerformanceCounter(&now)) {
    uint64_t t = (uint64_t)now.QuadPart, f = (uint64_t)freq.QuadPart;
    return (t / f) * 1000000u + ((t % f) * 1000000u) / f;
  }
  return (uint64_t)GetTickCount64() * 1000u;
#else
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
#endif
}

void sup_sleep_ms(int ms) {
  if (ms <= 0) return;
#ifdef _WIN32
  Sleep((DWORD)ms);
#else
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
#endif
}

static SUP_TLS uint64_t tl_rand = 0x9e3779b97f4a7c15ull;

uint64_t sup_rand(void) {
  uint64_t x = tl_rand;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  tl_rand = x;
  return x * 0x2545f4914f6cdd1dull;
}

static uint64_t splitmix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static uint8_t pattern_byte(uint64_t offset, uint32_t seed, uint64_t *block, uint64_t *word) {
  uint64_t b = offset >> 3;
  if (b != *block) {
    *block = b;
    *word = splitmix(((uint64_t)seed << 40) ^ b);
  }
  return (uint8_t)(*word >> ((offset & 7u) * 8u));
}

void sup_pattern(void *buf, size_t len, uint64_t offset, uint32_t seed) {
  uint8_t *p = (uint8_t *)buf;
  uint64_t block = UINT64_MAX, word = 0;
  for (size_t i = 0; i < len; i++) p[i] = pattern_byte(offset + i, seed, &block, &word);
}

void sup_check_pattern(const void *buf, size_t len, uint64_t offset, uint32_t seed,
                       const char *what) {
  const uint8_t *p = (const uint8_t *)buf;
  uint64_t block = UINT64_MAX, word = 0;
  for (size_t i = 0; i < len; i++) {
    uint8_t want = pattern_byte(offset + i, seed, &block, &word);
    if (p[i] != want)
      SUP_FAIL("%s: byte %zu of %zu (stream offset %llu) is 0x%02x, expected 0x%02x", what, i, len,
               (unsigned long long)(offset + i), p[i], want);
  }
}

/* ======================================================================== */
/* Configuration                                                            */
/* ======================================================================== */

static cport_backend_id g_backend = CPORT_BACKEND_AUTO;
static int g_select;
static char g_group[128];

static int parse_backend(const char *v, cport_backend_id *out) {
  if (!strcmp(v, "auto"))
    *out = CPORT_BACKEND_AUTO;
  else if (!strcmp(v, "epoll"))
    *out = CPORT_BACKEND_EPOLL;
  else if (!strcmp(v, "iocp"))
    *out = CPORT_BACKEND_IOCP;
  else if (!strcmp(v, "io_uring") || !strcmp(v, "uring"))
    *out = CPORT_BACKEND_IO_URING;
  else
    return -1;
  return 0;
}

static int parse_mode(const char *v, int *select) {
  if (!strcmp(v, "completion"))
    *select = 0;
  else if (!strcmp(v, "select"))
    *select = 1;
  else
    return -1;
  return 0;
}

static void usage(const char *prog) {
  fprintf(stderr,
          "usage: %s [--backend epoll|iocp|io_uring|auto] [--mode completion|select] "
          "[--filter PATTERN] [--skip PATTERN]\n",
          prog);
}

int sup_parse_args(int argc, char **argv) {
  const char *prog = argc > 0 ? argv[0] : "test";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = NULL;
    char name[32];
    const char *eq = strchr(a, '=');
    if (eq && (size_t)(eq - a) < sizeof name) {
      memcpy(name, a, (size_t)(eq - a));
      name[eq - a] = 0;
      v = eq + 1;
    } else {
      snprintf(name, sizeof name, "%s", a);
      if (i + 1 < argc) v = argv[i + 1], i++;
    }
    if (!v) {
      usage(prog);
      return 2;
    }
    if (!strcmp(name, "--backend")) {
      if (parse_backend(v, &g_backend) != 0) {
        fprintf(stderr, "unknown backend '%s'\n", v);
        usage(prog);
        return 2;
      }
    } else if (!strcmp(name, "--mode")) {
      if (parse_mode(v, &g_select) != 0) {
        fprintf(stderr, "unknown mode '%s'\n", v);
        usage(prog);
        return 2;
      }
    } else if (!strcmp(name, "--filter")) {
      cmocka_set_test_filter(v);
    } else if (!strcmp(name, "--skip")) {
      cmocka_set_skip_filter(v);
    } else {
      usage(prog);
      return 2;
    }
  }
  if (g_backend != CPORT_BACKEND_AUTO && !cport_backend_available(g_backend)) {
    fprintf(stderr, "backend '%s' is not available in this build/system\n",
            cport_backend_name(g_backend));
    return 1;
  }
  setvbuf(stdout, NULL, _IONBF, 0); /* piped output under Wine (docs/wine.md pitfall 11) */
  return 0;
}

cport_backend_id sup_backend(void) { return g_backend; }
int sup_select_mode(void) { return g_select; }

int sup_single_thread(void) { return getenv("CPORT_TEST_SINGLE_THREAD") != NULL; }
unsigned sup_mode_flags(void) { return g_select ? CPORT_OPEN_SELECT : 0u; }

int sup_pending_rc(void) { return sup_select_mode() ? CPORT_SELECT : CPORT_COMPLETION; }
const char *sup_mode_name(void) { return g_select ? "select" : "completion"; }

const char *sup_group_name(const char *suite) {
  snprintf(g_group, sizeof g_group, "%s/%s/%s%s", suite,
           g_backend == CPORT_BACKEND_AUTO ? "auto" : cport_backend_name(g_backend),
           sup_mode_name(), sup_on_wine() ? "/wine" : "");
  return g_group;
}

int sup_on_wine(void) {
#ifdef _WIN32
  HMODULE ntdll = GetModuleHandleA("ntdll.dll");
  return ntdll && GetProcAddress(ntdll, "wine_get_version") != NULL;
#else
  return 0;
#endif
}

int sup_is_windows(void) {
#ifdef _WIN32
  return 1;
#else
  return 0;
#endif
}

int sup_scale(int native_count, int win_count) {
  return sup_is_windows() ? win_count : native_count;
}

/* ======================================================================== */
/* Assertions and names                                                     */
/* ======================================================================== */

void sup_fail(const char *file, int line, const char *fmt, ...) {
  char msg[1536];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (tl_worker) {
    snprintf(tl_worker->err, sizeof tl_worker->err, "%s:%d: %s", file, line, msg);
    longjmp(tl_worker->jb, 1);
  }
  print_error("%s:%d: %s\n", file, line, msg);
  _fail(file, line);
  abort(); /* not reached */
}

void sup_assert_fail(const char *file, int line, const char *cond, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  sup_fail(file, line, "assertion failed: %s: %s", cond, msg);
}

void sup_check_rc(int got, int want, const char *expr, const char *file, int line) {
  if (got != want)
    sup_fail(file, line, "%s returned %s (%d), expected %s (%d)", expr, sup_rc_name(got), got,
             sup_rc_name(want), want);
}

void sup_check_rc2(int got, int want1, int want2, const char *expr, const char *file, int line) {
  if (got != want1 && got != want2)
    sup_fail(file, line, "%s returned %s (%d), expected %s or %s", expr, sup_rc_name(got), got,
             sup_rc_name(want1), sup_rc_name(want2));
}

const char *sup_rc_name(int rc) {
  if (rc == CPORT_OK) return "CPORT_OK";
  if (rc == CPORT_SELECT) return "CPORT_SELECT";
  if (rc == CPORT_COMPLETION) return "CPORT_COMPLETION";
  return cport_errname(rc);
}

const char *sup_tag_name(int tag) {
  switch (tag) {
  case CPORT_TAG_SELECT: return "select";
  case CPORT_TAG_COMPLETION: return "completion";
  case CPORT_TAG_ABORT: return "abort";
  case CPORT_TAG_USER: return "user";
  default: return "?tag";
  }
}

const char *sup_op_name(int op) {
  switch (op) {
  case CPORT_OP_NONE: return "none";
  case CPORT_OP_ACCEPT: return "accept";
  case CPORT_OP_CONNECT: return "connect";
  case CPORT_OP_SEND: return "send";
  case CPORT_OP_RECV: return "recv";
  case CPORT_OP_SENDTO: return "sendto";
  case CPORT_OP_RECVFROM: return "recvfrom";
  case CPORT_OP_SENDMSG: return "sendmsg";
  case CPORT_OP_RECVMSG: return "recvmsg";
  case CPORT_OP_TIMER: return "timer";
  case CPORT_OP_CLOSE: return "close";
  case CPORT_OP_WORK: return "work";
  case CPORT_OP_RESOLVE: return "resolve";
  case CPORT_OP_NAMEINFO: return "nameinfo";
  default: return "?op";
  }
}

const char *sup_msg_str(const cport_msg *m, char *buf, size_t size) {
  snprintf(buf, size,
           "{%s %s socket=%#llx handle=%llu status=%s bytes=%zu accepted=%#llx user=%llu "
           "flags=%#x}",
           sup_tag_name(m->tag), sup_op_name(m->op), (unsigned long long)m->socket,
           (unsigned long long)m->handle, sup_rc_name(m->status), m->bytes,
           (unsigned long long)m->accepted, (unsigned long long)m->user, m->flags);
  return buf;
}

/* ======================================================================== */
/* Per-test state: allocations, stash, ended handles                        */
/* ======================================================================== */

typedef struct alloc_node {
  struct alloc_node *next;
  _Alignas(16) unsigned char data[];
} alloc_node;
static alloc_node *g_allocs;

void *sup_alloc(size_t n) {
  alloc_node *a = (alloc_node *)calloc(1, sizeof *a + (n ? n : 1));
  if (!a) SUP_FAIL("out of memory allocating %zu bytes", n);
  g_lock_acquire();
  a->next = g_allocs;
  g_allocs = a;
  g_lock_release();
  return a->data;
}

static void free_allocs(void) {
  g_lock_acquire();
  alloc_node *a = g_allocs;
  g_allocs = NULL;
  g_lock_release();
  while (a) {
    alloc_node *n = a->next;
    free(a);
    a = n;
  }
}

typedef struct stash_item {
  cport_queue *q;
  cport_msg m;
} stash_item;
static stash_item *g_stash;
static int g_nstash, g_capstash;

static void stash_put(cport_queue *q, const cport_msg *m) {
  g_lock_acquire();
  if (g_nstash == g_capstash) {
    int cap = g_capstash ? g_capstash * 2 : 64;
    stash_item *n = (stash_item *)realloc(g_stash, (size_t)cap * sizeof *n);
    if (!n) abort();
    g_stash = n;
    g_capstash = cap;
  }
  g_stash[g_nstash].q = q;
  g_stash[g_nstash].m = *m;
  g_nstash++;
  g_lock_release();
}

/* Take the first stashed message of q accepted by match (NULL: any). */
static int stash_take(cport_queue *q, int (*match)(const cport_msg *, void *), void *arg,
                      cport_msg *out) {
  int found = 0;
  g_lock_acquire();
  for (int i = 0; i < g_nstash; i++) {
    if (g_stash[i].q != q) continue;
    if (match && !match(&g_stash[i].m, arg)) continue;
    *out = g_stash[i].m;
    memmove(&g_stash[i], &g_stash[i + 1], (size_t)(g_nstash - i - 1) * sizeof *g_stash);
    g_nstash--;
    found = 1;
    break;
  }
  g_lock_release();
  return found;
}

int sup_stash_count(cport_queue *q) {
  int n = 0;
  g_lock_acquire();
  for (int i = 0; i < g_nstash; i++)
    if (g_stash[i].q == q) n++;
  g_lock_release();
  return n;
}

int sup_stash_drop(cport_queue *q) {
  int n = 0;
  cport_msg m;
  while (stash_take(q, NULL, NULL, &m)) {
    if (m.flags & CPORT_MSG_ALLOCATED) cport_free(m.buf);
    n++;
  }
  return n;
}

/* The set of (socket, handle) pairs that already had their one message. */
typedef struct ended_key {
  cport_socket s;
  cport_handle h;
} ended_key;
static ended_key *g_ended;
static size_t g_ended_cap, g_ended_n;

static size_t ended_slot(const ended_key *tab, size_t cap, cport_socket s, cport_handle h) {
  size_t i = (size_t)(splitmix(s ^ (h * 0x9e3779b97f4a7c15ull)) & (cap - 1));
  while (tab[i].s != 0 && !(tab[i].s == s && tab[i].h == h)) i = (i + 1) & (cap - 1);
  return i;
}

/* Whether (s, h) has ended. Caller holds g_lock. */
static int ended_has(cport_socket s, cport_handle h) {
  if (s == 0) s = ~(cport_socket)0; /* as ended_insert stores it */
  if (g_ended_cap == 0) return 0;
  return g_ended[ended_slot(g_ended, g_ended_cap, s, h)].s != 0;
}

/* Inserts; returns 1 if it was already there. Caller holds g_lock.
 * Socket 0 (queue handles: timers) is a pair like any other. */
static int ended_insert(cport_socket s, cport_handle h) {
  if (s == 0) s = ~(cport_socket)0; /* keep 0 as the empty marker */
  if ((g_ended_n + 1) * 2 > g_ended_cap) {
    size_t cap = g_ended_cap ? g_ended_cap * 2 : 1024;
    ended_key *n = (ended_key *)calloc(cap, sizeof *n);
    if (!n) abort();
    for (size_t i = 0; i < g_ended_cap; i++)
      if (g_ended[i].s) n[ended_slot(n, cap, g_ended[i].s, g_ended[i].h)] = g_ended[i];
    free(g_ended);
    g_ended = n;
    g_ended_cap = cap;
  }
  size_t i = ended_slot(g_ended, g_ended_cap, s, h);
  if (g_ended[i].s) return 1;
  g_ended[i].s = s;
  g_ended[i].h = h;
  g_ended_n++;
  return 0;
}

void sup_mark_ended(cport_socket s, cport_handle h) {
  g_lock_acquire();
  ended_insert(s, h);
  g_lock_release();
}

static void reset_state(void) {
  g_lock_acquire();
  free(g_stash);
  g_stash = NULL;
  g_nstash = g_capstash = 0;
  free(g_ended);
  g_ended = NULL;
  g_ended_cap = g_ended_n = 0;
  g_lock_release();
}

/* ======================================================================== */
/* Fixture                                                                  */
/* ======================================================================== */

int sup_setup(void **state) {
  sup_env *e = (sup_env *)calloc(1, sizeof *e);
  cport_ctx_options opts;
  int rc;
  if (!e) return -1;
  reset_state();
  memset(&opts, 0, sizeof opts);
  opts.backend = g_backend;
  /* CMake's *.single variants: the suite is single-threaded throughout. */
  opts.single_thread = sup_single_thread();
  rc = cport_ctx_create(&e->ctx, &opts);
  if (rc != CPORT_OK) {
    print_error("cport_ctx_create(%s) failed: %s\n", cport_backend_name(g_backend),
                sup_rc_name(rc));
    free(e);
    return -1;
  }
  rc = cport_queue_create(e->ctx, &e->q);
  if (rc != CPORT_OK) {
    print_error("cport_queue_create failed: %s\n", sup_rc_name(rc));
    cport_ctx_destroy(e->ctx);
    free(e);
    return -1;
  }
  *state = e;
  return 0;
}

int sup_teardown(void **state) {
  sup_env *e = (sup_env *)*state;
  if (e) {
    cport_ctx_destroy(e->ctx);
    free(e);
  }
  *state = NULL;
  free_allocs();
  reset_state();
  return 0;
}

/* ======================================================================== */
/* Messages                                                                 */
/* ======================================================================== */

/* One message straight from the queue, checked against rule 2 (one final
 * message per (socket, handle); timers have socket 0) and rule 13 (a
 * message flagged CPORT_MSG_MORE does not end its handle, and none may
 * follow the final one). */
static int queue_next(cport_queue *q, int timeout_ms, cport_msg *out) {
  char b[256];
  int n = cport_wait(q, out, 1, timeout_ms);
  if (n < 0) SUP_FAIL("cport_wait failed: %s", sup_rc_name(n));
  if (n == 0) return 0;
  if (n != 1) SUP_FAIL("cport_wait(max 1) returned %d messages", n);
  if (out->tag == CPORT_TAG_USER) {
    if (out->socket != 0 || out->handle != 0)
      SUP_FAIL("user message with a socket or handle: %s", sup_msg_str(out, b, sizeof b));
    return 1;
  }
  if (out->tag != CPORT_TAG_SELECT && out->tag != CPORT_TAG_COMPLETION &&
      out->tag != CPORT_TAG_ABORT)
    SUP_FAIL("message with an unknown tag: %s", sup_msg_str(out, b, sizeof b));
  if (out->handle == 0) SUP_FAIL("message with handle 0: %s", sup_msg_str(out, b, sizeof b));
  if (out->tag == CPORT_TAG_ABORT && out->status != CPORT_ECANCELED &&
      out->status != CPORT_ECLOSED && out->status != CPORT_ETIMEDOUT)
    SUP_FAIL("abort whose status is not ECANCELED/ECLOSED/ETIMEDOUT: %s",
             sup_msg_str(out, b, sizeof b));
  if (out->flags & CPORT_MSG_MORE) {
    int ended;
    if (out->tag == CPORT_TAG_ABORT)
      SUP_FAIL("an abort flagged CPORT_MSG_MORE (an abort is final): %s",
               sup_msg_str(out, b, sizeof b));
    g_lock_acquire();
    ended = ended_has(out->socket, out->handle);
    g_lock_release();
    if (ended)
      SUP_FAIL("rule 13 broken: a CPORT_MSG_MORE message after its handle's final one: %s",
               sup_msg_str(out, b, sizeof b));
    return 1;
  }
  g_lock_acquire();
  int dup = ended_insert(out->socket, out->handle);
  g_lock_release();
  if (dup)
    SUP_FAIL("rule 2 broken: a second message for a handle that already ended: %s",
             sup_msg_str(out, b, sizeof b));
  return 1;
}

static int wait_step(uint64_t deadline) {
  uint64_t now = sup_now_ms();
  if (now >= deadline) return -1;
  uint64_t left = deadline - now;
  return left > 100 ? 100 : (int)left;
}

int sup_wait_msg(cport_queue *q, int timeout_ms, cport_msg *out) {
  if (stash_take(q, NULL, NULL, out)) return 1;
  return queue_next(q, timeout_ms, out);
}

cport_msg expect_msg(cport_queue *q, int timeout_ms) {
  cport_msg m;
  if (!sup_wait_msg(q, timeout_ms, &m)) SUP_FAIL("no message within %d ms", timeout_ms);
  return m;
}

typedef struct sh_key {
  cport_socket s;
  cport_handle h;
} sh_key;

static int match_sh(const cport_msg *m, void *arg) {
  const sh_key *k = (const sh_key *)arg;
  return m->tag != CPORT_TAG_USER && m->socket == k->s && m->handle == k->h;
}

cport_msg expect_msg_for(cport_queue *q, cport_socket s, cport_handle h, int timeout_ms) {
  sh_key k = {s, h};
  cport_msg m;
  uint64_t deadline = sup_now_ms() + (uint64_t)timeout_ms;
  if (stash_take(q, match_sh, &k, &m)) return m;
  for (;;) {
    int step = wait_step(deadline);
    if (step < 0)
      SUP_FAIL("no message for socket %#llx handle %llu within %d ms", (unsigned long long)s,
               (unsigned long long)h, timeout_ms);
    if (!queue_next(q, step, &m)) continue;
    if (match_sh(&m, &k)) return m;
    stash_put(q, &m);
  }
}

cport_msg expect_final_for(cport_queue *q, cport_socket s, cport_handle h, int timeout_ms,
                           int *nmore) {
  uint64_t deadline = sup_now_ms() + (uint64_t)timeout_ms;
  int more = 0;
  for (;;) {
    uint64_t now = sup_now_ms();
    int left = now >= deadline ? 0 : (int)(deadline - now);
    cport_msg m;
    if (left == 0)
      SUP_FAIL("no final message for socket %#llx handle %llu within %d ms (%d MORE messages)",
               (unsigned long long)s, (unsigned long long)h, timeout_ms, more);
    m = expect_msg_for(q, s, h, left);
    if (!(m.flags & CPORT_MSG_MORE)) {
      if (nmore) *nmore = more;
      return m;
    }
    more++;
  }
}

void expect_no_msg(cport_queue *q, int timeout_ms) {
  cport_msg m;
  char b[256];
  if (sup_wait_msg(q, timeout_ms, &m))
    SUP_FAIL("unexpected message: %s", sup_msg_str(&m, b, sizeof b));
}

void expect_no_msg_for(cport_queue *q, cport_socket s, cport_handle h, int timeout_ms) {
  sh_key k = {s, h};
  cport_msg m;
  char b[256];
  uint64_t deadline = sup_now_ms() + (uint64_t)timeout_ms;
  if (stash_take(q, match_sh, &k, &m))
    SUP_FAIL("unexpected message: %s", sup_msg_str(&m, b, sizeof b));
  for (;;) {
    int step = wait_step(deadline);
    if (step < 0) return;
    if (!queue_next(q, step, &m)) continue;
    if (match_sh(&m, &k)) SUP_FAIL("unexpected message: %s", sup_msg_str(&m, b, sizeof b));
    stash_put(q, &m);
  }
}

void sup_settle(cport_queue *q, int ms) {
  cport_msg m;
  uint64_t deadline = sup_now_ms() + (uint64_t)ms;
  for (;;) {
    int step = wait_step(deadline);
    if (step < 0) return;
    if (queue_next(q, step, &m)) stash_put(q, &m);
  }
}

/* ======================================================================== */
/* Sockets                                                                  */
/* ======================================================================== */

cport_addr sup_loopback(int family, uint16_t port) {
  cport_addr a;
  memset(&a, 0, sizeof a);
  SUP_RC(cport_addr_init(&a, family == CPORT_AF_INET6 ? "::1" : "127.0.0.1", port), CPORT_OK);
  return a;
}

cport_socket sup_open_flags(cport_queue *q, int family, unsigned flags) {
  cport_socket s = CPORT_INVALID_SOCKET;
  SUP_RC(cport_open(q, family, CPORT_SOCK_STREAM, flags, &s), CPORT_OK);
  SUP_ASSERT(s != CPORT_INVALID_SOCKET, "cport_open returned socket 0");
  return s;
}

cport_socket sup_open(cport_queue *q, int family) {
  return sup_open_flags(q, family, sup_mode_flags());
}

cport_socket sup_listener(cport_queue *q, int family, int backlog, unsigned flags,
                          cport_addr *bound) {
  cport_socket l = sup_open_flags(q, family, sup_mode_flags() | flags);
  cport_addr a = sup_loopback(family, 0), got;
  SUP_RC(cport_bind(l, &a), CPORT_OK);
  SUP_RC(cport_listen(l, backlog), CPORT_OK);
  memset(&got, 0, sizeof got);
  SUP_RC(cport_sockname(l, &got), CPORT_OK);
  SUP_EQ(got.family, family);
  SUP_ASSERT(got.port != 0, "a listener bound to port 0 has a real port");
  if (bound) *bound = got;
  return l;
}

cport_socket sup_udp_open(cport_queue *q, int family, unsigned flags) {
  cport_socket s = CPORT_INVALID_SOCKET;
  SUP_RC(cport_open(q, family, CPORT_SOCK_DGRAM, sup_mode_flags() | flags, &s), CPORT_OK);
  SUP_ASSERT(s != CPORT_INVALID_SOCKET, "cport_open returned socket 0");
  return s;
}

cport_socket sup_udp(cport_queue *q, int family, unsigned flags, cport_addr *bound) {
  cport_socket s = sup_udp_open(q, family, flags);
  cport_addr a = sup_loopback(family, 0), got;
  SUP_RC(cport_bind(s, &a), CPORT_OK);
  memset(&got, 0, sizeof got);
  SUP_RC(cport_sockname(s, &got), CPORT_OK);
  SUP_EQ(got.family, family);
  SUP_ASSERT(got.port != 0, "a datagram socket bound to port 0 has a real port");
  if (bound) *bound = got;
  return s;
}

int sup_addr_equal(const cport_addr *a, const cport_addr *b) {
  if (a->family != b->family) return 0;
  if (a->family == CPORT_AF_UNIX) return strncmp(a->path, b->path, sizeof a->path) == 0;
  if (a->port != b->port) return 0;
  return memcmp(a->ip, b->ip, a->family == CPORT_AF_INET ? 4 : 16) == 0;
}

const char *sup_addr_str(const cport_addr *a, int slot) {
  static SUP_TLS char bufs[4][CPORT_PATH_MAX + 16];
  char *b = bufs[slot & 3];
  if (cport_addr_format(a, b, sizeof bufs[0]) < 0)
    snprintf(b, sizeof bufs[0], "(family %d port %u)", a->family, (unsigned)a->port);
  return b;
}

void sup_connect_pair(cport_queue *q, cport_socket listener, const cport_addr *addr,
                      unsigned client_flags, cport_socket *client, cport_socket *server) {
  sup_loop l;
  sup_op c, a;
  cport_socket cs = sup_open_flags(q, addr->family, sup_mode_flags() | client_flags);
  sup_loop_init(&l, q);
  sup_op_connect(&c, cs, addr);
  sup_op_accept(&a, listener);
  sup_loop_start(&l, &c);
  sup_loop_start(&l, &a);
  sup_loop_run(&l, NULL, 0, SUP_TIMEOUT);
  sup_loop_free(&l);
  if (c.status != CPORT_OK) SUP_FAIL("connect failed: %s", sup_rc_name(c.status));
  if (a.status != CPORT_OK) SUP_FAIL("accept failed: %s", sup_rc_name(a.status));
  *client = cs;
  *server = a.accepted;
}

void sup_make_pair(cport_queue *q, int family, sup_pair *p) {
  memset(p, 0, sizeof *p);
  p->listener = sup_listener(q, family, 0, 0, &p->addr);
  sup_connect_pair(q, p->listener, &p->addr, 0, &p->client, &p->server);
}

/* Every call on s answers CPORT_EBADF. */
void sup_check_ebadf(cport_socket s, const char *what) {
  cport_addr a = sup_loopback(CPORT_AF_INET, 9);
  char buf[16] = {0};
  size_t n = 0;
  cport_handle h = 0;
  cport_socket acc = 0;
  cport_info info;
  cport_addr out;
  struct {
    const char *expr;
    int rc;
  } r[20];
  int k = 0;
#define EB(call) (r[k].expr = #call, r[k].rc = (call), k++)
  EB(cport_bind(s, &a));
  EB(cport_listen(s, 1));
  EB(cport_accept(s, CPORT_NOWAIT, &acc, &h));
  EB(cport_accept(s, 50, &acc, &h));
  EB(cport_connect(s, &a, CPORT_NOWAIT, &h));
  EB(cport_connect(s, &a, 50, &h));
  EB(cport_send(s, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h));
  EB(cport_send(s, buf, sizeof buf, 0, 50, &n, &h));
  EB(cport_recv(s, buf, sizeof buf, 0, CPORT_NOWAIT, &n, &h));
  EB(cport_recv(s, buf, sizeof buf, 0, 50, &n, &h));
  EB(cport_shutdown(s, CPORT_SHUT_RDWR));
  EB(cport_sockname(s, &out));
  EB(cport_peername(s, &out));
  EB(cport_cancel(s, 1));
  EB(cport_deadline(s, 1, 100));
  EB(cport_info_get(s, &info));
  EB(cport_close_async(s, &h));
  EB(cport_close(s));
#undef EB
  for (int i = 0; i < k; i++)
    if (r[i].rc != CPORT_EBADF)
      SUP_FAIL("%s socket %#llx: %s returned %s, expected CPORT_EBADF", what, (unsigned long long)s,
               r[i].expr, sup_rc_name(r[i].rc));
}

int sup_listed(cport_socket s, const cport_filter *f) {
  cport_socket out[256];
  int n = cport_which_sockets(f, out, 256);
  SUP_ASSERT(n >= 0 && n <= 256, "which_sockets returned %d", n);
  for (int i = 0; i < n; i++)
    if (out[i] == s) return 1;
  return 0;
}

/* ======================================================================== */
/* Operation driver                                                         */
/* ======================================================================== */

static void op_init(sup_op *op, int kind, cport_socket s) {
  cport_info info;
  memset(op, 0, sizeof *op);
  op->kind = kind;
  op->s = s;
  op->first_rc = INT_MIN;
  memset(&info, 0, sizeof info);
  if (cport_info_get(s, &info) == CPORT_OK)
    op->select_mode = info.select_mode != 0;
  else
    op->select_mode = g_select;
}

void sup_op_accept(sup_op *op, cport_socket listener) { op_init(op, CPORT_OP_ACCEPT, listener); }

void sup_op_connect(sup_op *op, cport_socket s, const cport_addr *addr) {
  op_init(op, CPORT_OP_CONNECT, s);
  op->addr = *addr;
}

void sup_op_send(sup_op *op, cport_socket s, const void *buf, size_t len) {
  op_init(op, CPORT_OP_SEND, s);
  op->buf = (char *)(uintptr_t)buf; /* the library only reads it */
  op->len = len;
}

void sup_op_recv(sup_op *op, cport_socket s, void *buf, size_t len, unsigned flags) {
  op_init(op, CPORT_OP_RECV, s);
  op->buf = (char *)buf;
  op->len = len;
  op->flags = flags;
}

void sup_op_sendto(sup_op *op, cport_socket s, const void *buf, size_t len, const cport_addr *to) {
  op_init(op, CPORT_OP_SENDTO, s);
  op->buf = (char *)(uintptr_t)buf; /* the library only reads it */
  op->len = len;
  op->addr = *to;
}

void sup_op_recvfrom(sup_op *op, cport_socket s, void *buf, size_t len) {
  op_init(op, CPORT_OP_RECVFROM, s);
  op->buf = (char *)buf;
  op->len = len;
}

static size_t msg_total(const cport_msghdr *m) {
  size_t total = 0;
  if (m->iov)
    for (int i = 0; i < m->iovcnt && i < CPORT_IOV_MAX; i++) total += m->iov[i].len;
  return total;
}

void sup_op_sendmsg(sup_op *op, cport_socket s, cport_msghdr *m) {
  op_init(op, CPORT_OP_SENDMSG, s);
  op->msg = m;
  op->len = msg_total(m);
}

void sup_op_recvmsg(sup_op *op, cport_socket s, cport_msghdr *m, unsigned flags) {
  op_init(op, CPORT_OP_RECVMSG, s);
  op->msg = m;
  op->len = msg_total(m);
  op->flags = flags;
}

static int is_send_kind(int kind) {
  return kind == CPORT_OP_SEND || kind == CPORT_OP_SENDTO || kind == CPORT_OP_SENDMSG;
}

static int is_recv_kind(int kind) {
  return kind == CPORT_OP_RECV || kind == CPORT_OP_RECVFROM || kind == CPORT_OP_RECVMSG;
}

/* The header a sendmsg call uses: the caller's, or after a partial
 * select-mode send a copy whose iovecs start past what went. */
static cport_msghdr *sendmsg_header(sup_op *op) {
  size_t skip = op->done;
  int n = 0;
  if (skip == 0) return op->msg;
  if (!op->rest) {
    op->rest = (cport_msghdr *)sup_alloc(sizeof *op->rest);
    op->rest_iov = (cport_iovec *)sup_alloc(CPORT_IOV_MAX * sizeof *op->rest_iov);
  }
  *op->rest = *op->msg;
  for (int i = 0; i < op->msg->iovcnt; i++) {
    size_t len = op->msg->iov[i].len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    op->rest_iov[n].base = (char *)op->msg->iov[i].base + skip;
    op->rest_iov[n].len = len - skip;
    skip = 0;
    n++;
  }
  op->rest->iov = op->rest_iov;
  op->rest->iovcnt = n;
  return op->rest;
}

static void op_finish(sup_op *op, int status) {
  op->finished = 1;
  op->status = status;
  op->pending = 0;
  op->handle = 0;
}

/* One nowait call. */
static void op_call(sup_op *op) {
  size_t n = 0;
  cport_handle h = 0;
  cport_socket acc = CPORT_INVALID_SOCKET;
  char *p = op->buf;
  int rc;
  const char *what = sup_op_name(op->kind);
  switch (op->kind) {
  case CPORT_OP_ACCEPT: rc = cport_accept(op->s, CPORT_NOWAIT, &acc, &h); break;
  case CPORT_OP_CONNECT:
    rc = cport_connect(op->s, op->calls == 0 ? &op->addr : NULL, CPORT_NOWAIT, &h);
    break;
  case CPORT_OP_SEND:
    p = op->buf + op->done;
    rc = cport_send(op->s, p, op->len - op->done, op->flags, CPORT_NOWAIT, &n, &h);
    break;
  case CPORT_OP_RECV: rc = cport_recv(op->s, p, op->len, op->flags, CPORT_NOWAIT, &n, &h); break;
  case CPORT_OP_SENDTO:
    rc = cport_sendto(op->s, p, op->len, 0, &op->addr, CPORT_NOWAIT, &n, &h);
    break;
  case CPORT_OP_RECVFROM: {
    cport_recv_info ri;
    memset(&ri, 0xa5, sizeof ri); /* the library must fill it */
    rc = cport_recvfrom(op->s, p, op->len, 0, CPORT_NOWAIT, &ri, &h);
    n = ri.bytes;
    if (rc == CPORT_OK) {
      op->from = ri.from;
      op->msg_flags = ri.flags;
    } else if (ri.bytes != 0) {
      SUP_FAIL("recvfrom returned %s with info.bytes %zu", sup_rc_name(rc), ri.bytes);
    }
    break;
  }
  case CPORT_OP_SENDMSG: {
    cport_msghdr *m = sendmsg_header(op);
    p = (char *)m;
    rc = cport_sendmsg(op->s, m, 0, CPORT_NOWAIT, &n, &h);
    break;
  }
  case CPORT_OP_RECVMSG:
    p = (char *)op->msg;
    rc = cport_recvmsg(op->s, op->msg, op->flags, CPORT_NOWAIT, &n, &h);
    if (rc == CPORT_OK) op->msg_flags = op->msg->flags;
    break;
  default: SUP_FAIL("bad op kind %d", op->kind);
  }
  if (op->calls == 0) {
    op->first_rc = rc;
    op->first_done = n;
  }
  op->calls++;
  switch (rc) {
  case CPORT_OK:
    if (is_send_kind(op->kind)) {
      if (n != op->len - op->done)
        SUP_FAIL("%s returned CPORT_OK having sent %zu of %zu bytes (rule 6)", what, n,
                 op->len - op->done);
      op->done += n;
    } else if (is_recv_kind(op->kind)) {
      if (n > op->len) SUP_FAIL("%s returned %zu bytes into a %zu-byte buffer", what, n, op->len);
      op->done = n;
    } else if (op->kind == CPORT_OP_ACCEPT) {
      if (acc == CPORT_INVALID_SOCKET) SUP_FAIL("accept returned CPORT_OK and socket 0");
      op->accepted = acc;
    }
    op_finish(op, CPORT_OK);
    return;
  case CPORT_SELECT:
    if (!op->select_mode) SUP_FAIL("%s on a completion-mode socket returned CPORT_SELECT", what);
    if (h == 0) SUP_FAIL("%s returned CPORT_SELECT with handle 0", what);
    if (op->kind == CPORT_OP_SENDTO && n != 0) {
      SUP_FAIL("sendto returned CPORT_SELECT having sent %zu bytes (datagrams go whole)", n);
    } else if (is_send_kind(op->kind)) {
      if (n >= op->len - op->done)
        SUP_FAIL("%s returned CPORT_SELECT having sent all %zu bytes", what, n);
      op->done += n;
    } else if (is_recv_kind(op->kind) && n != 0) {
      SUP_FAIL("%s returned CPORT_SELECT and %zu bytes", what, n);
    }
    op->pending = CPORT_SELECT;
    op->handle = h;
    return;
  case CPORT_COMPLETION:
    if (op->select_mode) SUP_FAIL("%s on a select-mode socket returned CPORT_COMPLETION", what);
    if (h == 0) SUP_FAIL("%s returned CPORT_COMPLETION with handle 0", what);
    op->pending = CPORT_COMPLETION;
    op->handle = h;
    op->posted_buf = p;
    return;
  default:
    if (rc >= 0) SUP_FAIL("%s returned %d, which is no cport result", what, rc);
    if (is_send_kind(op->kind)) op->done += n;
    op_finish(op, rc);
    return;
  }
}

static int op_matches(const sup_op *op, const cport_msg *m) {
  return op->pending && m->tag != CPORT_TAG_USER && m->socket == op->s && m->handle == op->handle;
}

static void op_on_msg(sup_op *op, const cport_msg *m) {
  char b[256];
  if (m->flags & CPORT_MSG_MORE)
    SUP_FAIL("socket op message flagged CPORT_MSG_MORE: %s", sup_msg_str(m, b, sizeof b));
  if ((int)m->op != op->kind)
    SUP_FAIL("message for a pending %s has op %s: %s", sup_op_name(op->kind), sup_op_name(m->op),
             sup_msg_str(m, b, sizeof b));
  switch (m->tag) {
  case CPORT_TAG_SELECT:
    if (op->pending != CPORT_SELECT)
      SUP_FAIL("select message for a completion handle: %s", sup_msg_str(m, b, sizeof b));
    op->n_select++;
    op->pending = 0;
    op->handle = 0;
    op_call(op);
    return;
  case CPORT_TAG_COMPLETION:
    if (op->pending != CPORT_COMPLETION)
      SUP_FAIL("completion message for a select handle: %s", sup_msg_str(m, b, sizeof b));
    op->n_completion++;
    if (is_send_kind(op->kind)) {
      const char *what = sup_op_name(op->kind);
      if (m->buf != op->posted_buf)
        SUP_FAIL("%s completion carries buf %p, the %s was posted with %p", what, m->buf, what,
                 (void *)op->posted_buf);
      if (m->status == CPORT_OK && m->bytes != op->len - op->done)
        SUP_FAIL("rule 6: %s completion reports %zu bytes, %zu were posted", what, m->bytes,
                 op->len - op->done);
      if (m->bytes > op->len - op->done)
        SUP_FAIL("%s completion reports %zu bytes, only %zu were posted", what, m->bytes,
                 op->len - op->done);
      op->done += m->bytes;
    } else if (is_recv_kind(op->kind)) {
      const char *what = sup_op_name(op->kind);
      if (m->buf != op->posted_buf)
        SUP_FAIL("%s completion carries buf %p, the %s was posted with %p", what, m->buf, what,
                 (void *)op->posted_buf);
      if (m->bytes > op->len)
        SUP_FAIL("%s completion reports %zu bytes into a %zu-byte buffer", what, m->bytes, op->len);
      if (m->status == CPORT_OK && (op->flags & CPORT_WAITALL) && m->bytes != op->len) {
        /* Only EOF may cut a waitall recv short; the caller checks that. */
      }
      op->done = m->bytes;
      op->msg_flags = m->flags;
      if (op->kind == CPORT_OP_RECVFROM) op->from = m->addr;
      if (op->kind == CPORT_OP_RECVMSG && m->status == CPORT_OK && op->msg->flags != m->flags)
        SUP_FAIL("recvmsg completion has flags %#x, its header %#x", m->flags, op->msg->flags);
    } else if (op->kind == CPORT_OP_ACCEPT && m->status == CPORT_OK) {
      if (m->accepted == CPORT_INVALID_SOCKET)
        SUP_FAIL("accept completion with status OK and no socket: %s", sup_msg_str(m, b, sizeof b));
      op->accepted = m->accepted;
    }
    op_finish(op, m->status);
    return;
  case CPORT_TAG_ABORT:
    op->n_abort++;
    if (is_send_kind(op->kind))
      op->done += m->bytes;
    else if (is_recv_kind(op->kind))
      op->done = m->bytes;
    op_finish(op, m->status);
    return;
  default: SUP_FAIL("unexpected message: %s", sup_msg_str(m, b, sizeof b));
  }
}

void sup_loop_init(sup_loop *l, cport_queue *q) {
  memset(l, 0, sizeof *l);
  l->q = q;
}

void sup_loop_free(sup_loop *l) { memset(l, 0, sizeof *l); }

static void loop_push_done(sup_loop *l, sup_op *op) {
  op->next_done = NULL;
  if (l->done_tail)
    l->done_tail->next_done = op;
  else
    l->done_head = op;
  l->done_tail = op;
}

static void loop_add_active(sup_loop *l, sup_op *op) {
  if (l->nactive == l->cap) {
    /* sup_alloc memory: a test that fails with a loop running leaks
     * nothing (it is freed at teardown). */
    int cap = l->cap ? l->cap * 2 : 16;
    sup_op **n = (sup_op **)sup_alloc((size_t)cap * sizeof *n);
    if (l->nactive) memcpy(n, l->active, (size_t)l->nactive * sizeof *n);
    l->active = n;
    l->cap = cap;
  }
  l->active[l->nactive++] = op;
}

void sup_loop_start(sup_loop *l, sup_op *op) {
  op_call(op);
  op->in_loop = 1;
  if (op->finished)
    loop_push_done(l, op);
  else
    loop_add_active(l, op);
}

int sup_loop_feed(sup_loop *l, const cport_msg *m) {
  for (int i = 0; i < l->nactive; i++) {
    sup_op *op = l->active[i];
    if (!op_matches(op, m)) continue;
    op_on_msg(op, m);
    if (op->finished) {
      l->active[i] = l->active[--l->nactive];
      loop_push_done(l, op);
    }
    return 1;
  }
  return 0;
}

static int match_loop(const cport_msg *m, void *arg) {
  sup_loop *l = (sup_loop *)arg;
  for (int i = 0; i < l->nactive; i++)
    if (op_matches(l->active[i], m)) return 1;
  return 0;
}

static void loop_fail(sup_loop *l, int timeout_ms) {
  char b[512];
  size_t off = 0;
  b[0] = 0;
  for (int i = 0; i < l->nactive && i < 6; i++) {
    const sup_op *op = l->active[i];
    int w = snprintf(b + off, sizeof b - off, " [%s socket=%#llx handle=%llu %s done=%zu/%zu]",
                     sup_op_name(op->kind), (unsigned long long)op->s,
                     (unsigned long long)op->handle, sup_rc_name(op->pending), op->done, op->len);
    if (w < 0 || (size_t)w >= sizeof b - off) break;
    off += (size_t)w;
  }
  SUP_FAIL("operations still pending after %d ms (%d active):%s", timeout_ms, l->nactive, b);
}

static void loop_run(sup_loop *l, const long *counter, long target, const sup_op *until_op,
                     int timeout_ms) {
  uint64_t deadline = sup_now_ms() + (uint64_t)timeout_ms;
  cport_msg m;
  for (;;) {
    while (l->done_head) {
      sup_op *op = l->done_head;
      l->done_head = op->next_done;
      if (!l->done_head) l->done_tail = NULL;
      op->in_loop = 0;
      if (op->on_done) op->on_done(op);
    }
    if (until_op) {
      if (until_op->finished && !until_op->in_loop) return;
    } else if (counter) {
      if (*counter >= target) return;
    } else if (l->nactive == 0) {
      return;
    }
    if (stash_take(l->q, match_loop, l, &m)) {
      sup_loop_feed(l, &m);
      continue;
    }
    int step = wait_step(deadline);
    if (step < 0) loop_fail(l, timeout_ms);
    if (!queue_next(l->q, step, &m)) continue;
    if (!sup_loop_feed(l, &m)) stash_put(l->q, &m);
  }
}

void sup_loop_run(sup_loop *l, const long *counter, long target, int timeout_ms) {
  loop_run(l, counter, target, NULL, timeout_ms);
}

void sup_loop_run_op(sup_loop *l, sup_op *op, int timeout_ms) {
  loop_run(l, NULL, 0, op, timeout_ms);
}

static void run_one(cport_queue *q, sup_op *op) {
  sup_loop l;
  sup_loop_init(&l, q);
  sup_loop_start(&l, op);
  sup_loop_run_op(&l, op, SUP_TIMEOUT);
  sup_loop_free(&l);
}

int sup_send(cport_queue *q, cport_socket s, const void *buf, size_t len, size_t *sent) {
  sup_op op;
  sup_op_send(&op, s, buf, len);
  run_one(q, &op);
  if (sent) *sent = op.done;
  return op.status;
}

int sup_recv(cport_queue *q, cport_socket s, void *buf, size_t len, size_t *received) {
  sup_op op;
  sup_op_recv(&op, s, buf, len, 0);
  run_one(q, &op);
  if (received) *received = op.done;
  return op.status;
}

int sup_accept(cport_queue *q, cport_socket listener, cport_socket *accepted) {
  sup_op op;
  sup_op_accept(&op, listener);
  run_one(q, &op);
  if (accepted) *accepted = op.accepted;
  return op.status;
}

int sup_connect(cport_queue *q, cport_socket s, const cport_addr *addr) {
  sup_op op;
  sup_op_connect(&op, s, addr);
  run_one(q, &op);
  return op.status;
}

int sup_sendto(cport_queue *q, cport_socket s, const void *buf, size_t len, const cport_addr *to) {
  sup_op op;
  sup_op_sendto(&op, s, buf, len, to);
  run_one(q, &op);
  if (op.status == CPORT_OK && op.done != len)
    SUP_FAIL("sendto of %zu bytes reported %zu (datagrams go whole)", len, op.done);
  return op.status;
}

int sup_recvfrom(cport_queue *q, cport_socket s, void *buf, size_t len, cport_recv_info *info) {
  sup_op op;
  sup_op_recvfrom(&op, s, buf, len);
  run_one(q, &op);
  if (info) {
    memset(info, 0, sizeof *info);
    info->bytes = op.done;
    info->from = op.from;
    info->flags = op.msg_flags;
  }
  return op.status;
}

int sup_sendmsg(cport_queue *q, cport_socket s, cport_msghdr *m, size_t *sent) {
  sup_op op;
  sup_op_sendmsg(&op, s, m);
  run_one(q, &op);
  if (sent) *sent = op.done;
  return op.status;
}

int sup_recvmsg(cport_queue *q, cport_socket s, cport_msghdr *m, size_t *received) {
  sup_op op;
  sup_op_recvmsg(&op, s, m, 0);
  run_one(q, &op);
  if (received) *received = op.done;
  return op.status;
}

void sup_recv_exact(cport_queue *q, cport_socket s, void *buf, size_t len) {
  size_t got = 0;
  while (got < len) {
    size_t n = 0;
    int rc = sup_recv(q, s, (char *)buf + got, len - got, &n);
    if (rc != CPORT_OK) SUP_FAIL("recv after %zu of %zu bytes: %s", got, len, sup_rc_name(rc));
    if (n == 0) SUP_FAIL("recv: EOF after %zu of %zu bytes", got, len);
    got += n;
  }
}

void sup_send_all(cport_queue *q, cport_socket s, const void *buf, size_t len) {
  size_t sent = 0;
  int rc = sup_send(q, s, buf, len, &sent);
  if (rc != CPORT_OK) SUP_FAIL("send of %zu bytes: %s after %zu", len, sup_rc_name(rc), sent);
  if (sent != len) SUP_FAIL("send of %zu bytes sent %zu", len, sent);
}

/* ======================================================================== */
/* Raw OS sockets                                                           */
/* ======================================================================== */

#ifdef _WIN32
typedef int sup_socklen;
static void raw_init(void) {
  static LONG done;
  if (InterlockedCompareExchange(&done, 1, 0) == 0) {
    WSADATA wsa;
    WSAStartup(MAKEWORD(2, 2), &wsa);
  }
}
static void raw_closesocket(sup_raw r) { closesocket((SOCKET)r); }
#else
typedef socklen_t sup_socklen;
static void raw_init(void) {}
static void raw_closesocket(sup_raw r) { close((int)r); }
#endif

static int to_sockaddr(const cport_addr *a, struct sockaddr_storage *ss, sup_socklen *len) {
  memset(ss, 0, sizeof *ss);
  if (a->family == CPORT_AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    s4->sin_port = htons(a->port);
    memcpy(&s4->sin_addr, a->ip, 4);
    *len = (sup_socklen)sizeof *s4;
    return 0;
  }
  if (a->family == CPORT_AF_INET6) {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(a->port);
    memcpy(&s6->sin6_addr, a->ip, 16);
    s6->sin6_scope_id = a->scope_id;
    *len = (sup_socklen)sizeof *s6;
    return 0;
  }
  return -1;
}

sup_raw sup_raw_connect(const cport_addr *addr) {
  struct sockaddr_storage ss;
  sup_socklen len;
  raw_init();
  if (to_sockaddr(addr, &ss, &len) != 0) return -1;
#ifdef _WIN32
  SOCKET s = socket(ss.ss_family, SOCK_STREAM, IPPROTO_TCP);
  if (s == INVALID_SOCKET) return -1;
  if (connect(s, (struct sockaddr *)&ss, len) != 0) {
    closesocket(s);
    return -1;
  }
  return (sup_raw)s;
#else
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  while (connect(fd, (struct sockaddr *)&ss, len) != 0) {
    if (errno == EINTR) continue;
    close(fd);
    return -1;
  }
  return (sup_raw)fd;
#endif
}

int sup_raw_sockname(sup_raw r, cport_addr *addr) {
  struct sockaddr_storage ss;
  sup_socklen len = (sup_socklen)sizeof ss;
  memset(addr, 0, sizeof *addr);
#ifdef _WIN32
  if (getsockname((SOCKET)r, (struct sockaddr *)&ss, &len) != 0) return -1;
#else
  if (getsockname((int)r, (struct sockaddr *)&ss, &len) != 0) return -1;
#endif
  if (ss.ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
    addr->family = CPORT_AF_INET;
    addr->port = ntohs(s4->sin_port);
    memcpy(addr->ip, &s4->sin_addr, 4);
    return 0;
  }
  if (ss.ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
    addr->family = CPORT_AF_INET6;
    addr->port = ntohs(s6->sin6_port);
    memcpy(addr->ip, &s6->sin6_addr, 16);
    addr->scope_id = s6->sin6_scope_id;
    return 0;
  }
  return -1;
}

int sup_raw_send(sup_raw r, const void *buf, size_t len) {
  const char *p = (const char *)buf;
  while (len > 0) {
    int chunk = len > 65536 ? 65536 : (int)len;
#ifdef _WIN32
    int n = send((SOCKET)r, p, chunk, 0);
    if (n <= 0) return -1;
#else
    ssize_t n = send((int)r, p, (size_t)chunk, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
#endif
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

void sup_raw_reset(sup_raw r) {
  struct linger lg;
  lg.l_onoff = 1;
  lg.l_linger = 0;
#ifdef _WIN32
  setsockopt((SOCKET)r, SOL_SOCKET, SO_LINGER, (const char *)&lg, (int)sizeof lg);
#else
  setsockopt((int)r, SOL_SOCKET, SO_LINGER, &lg, (socklen_t)sizeof lg);
#endif
  raw_closesocket(r);
}

void sup_raw_close(sup_raw r) {
  if (r != -1) raw_closesocket(r);
}

int sup_raw_udp_send(const cport_addr *to, const void *buf, size_t len, cport_addr *from) {
  struct sockaddr_storage ss;
  sup_socklen sl;
  int rc = -1;
  raw_init();
  if (to_sockaddr(to, &ss, &sl) != 0) return -1;
#ifdef _WIN32
  SOCKET s = socket(ss.ss_family, SOCK_DGRAM, IPPROTO_UDP);
  if (s == INVALID_SOCKET) return -1;
  if (sendto(s, (const char *)buf, (int)len, 0, (struct sockaddr *)&ss, sl) == (int)len) rc = 0;
#else
  int s = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return -1;
  if (sendto(s, buf, len, 0, (struct sockaddr *)&ss, sl) == (ssize_t)len) rc = 0;
#endif
  if (rc == 0 && from && sup_raw_sockname((sup_raw)s, from) != 0) rc = -1;
  raw_closesocket((sup_raw)s);
  return rc;
}

/* ======================================================================== */
/* Files                                                                    */
/* ======================================================================== */

void sup_temp_path(char *buf, size_t size, const char *tag) {
  static int counter;
  int n;
  g_lock_acquire();
  int k = ++counter;
  g_lock_release();
#ifdef _WIN32
  /* An AF_UNIX path must fit sun_path, and only ASCII reads the same
   * whether Windows takes sun_path as UTF-8 or in the ANSI code page. A
   * temporary directory with a long or non-ASCII name (a long or non-Latin
   * user name) gives way to a bare name, relative to the current directory
   * (ctest's build directory), which Windows accepts. */
  char dir[MAX_PATH + 1];
  unsigned long pid = (unsigned long)GetCurrentProcessId();
  DWORD len = GetTempPathA((DWORD)sizeof dir, dir);
  int ascii = len > 0 && len <= MAX_PATH;
  for (DWORD i = 0; ascii && i < len; i++) ascii = (unsigned char)dir[i] < 0x80;
  n = ascii ? snprintf(buf, size, "%scport-%s-%lu-%d.sock", dir, tag, pid, k) : -1;
  if (n < 0 || (size_t)n >= size) n = snprintf(buf, size, "cport-%s-%lu-%d.sock", tag, pid, k);
#else
  const char *dir = getenv("TMPDIR");
  if (!dir || !dir[0]) dir = "/tmp";
  n = snprintf(buf, size, "%s/cport-%s-%ld-%d.sock", dir, tag, (long)getpid(), k);
#endif
  if (n < 0 || (size_t)n >= size)
    SUP_FAIL("temporary path for '%s' does not fit %zu bytes", tag, size);
}

void sup_remove_file(const char *path) {
#ifdef _WIN32
  DeleteFileA(path);
#else
  unlink(path);
#endif
}

/* ======================================================================== */
/* Child processes and descriptor limits (POSIX)                            */
/* ======================================================================== */

#ifndef _WIN32
static int g_child_wfd = -1;
static int *g_fill_fds;
static int g_nfill;

int sup_child_start(sup_child *c, int (*fn)(void *), void *arg) {
  int p[2];
  pid_t pid;
  if (pipe(p) != 0) return -1;
  fflush(stdout);
  fflush(stderr);
  pid = fork();
  if (pid < 0) {
    close(p[0]);
    close(p[1]);
    return -1;
  }
  if (pid == 0) {
    close(p[0]);
    g_child_wfd = p[1];
    _exit(fn(arg) & 0xff);
  }
  close(p[1]);
  c->pid = (long)pid;
  c->rfd = p[0];
  return 0;
}

int sup_child_report(uint32_t value) {
  unsigned char b[4];
  b[0] = (unsigned char)(value >> 24);
  b[1] = (unsigned char)(value >> 16);
  b[2] = (unsigned char)(value >> 8);
  b[3] = (unsigned char)value;
  return write(g_child_wfd, b, 4) == 4 ? 0 : -1;
}

int sup_child_read(sup_child *c, uint32_t *value, int timeout_ms) {
  unsigned char b[4];
  size_t got = 0;
  uint64_t deadline = sup_now_ms() + (uint64_t)timeout_ms;
  while (got < 4) {
    struct pollfd pfd;
    uint64_t now = sup_now_ms();
    if (now >= deadline) return -1;
    pfd.fd = c->rfd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    int n = poll(&pfd, 1, (int)(deadline - now));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    ssize_t r = read(c->rfd, b + got, 4 - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  *value = ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
  return 0;
}

int sup_child_wait(sup_child *c, int timeout_ms) {
  uint64_t deadline = sup_now_ms() + (uint64_t)timeout_ms;
  int status = 0;
  for (;;) {
    pid_t r = waitpid((pid_t)c->pid, &status, WNOHANG);
    if (r == (pid_t)c->pid) break;
    if (r < 0 && errno != EINTR) {
      close(c->rfd);
      return -1;
    }
    if (sup_now_ms() >= deadline) {
      kill((pid_t)c->pid, SIGKILL);
      waitpid((pid_t)c->pid, &status, 0);
      close(c->rfd);
      return -1;
    }
    sup_sleep_ms(10);
  }
  close(c->rfd);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int sup_fill_fds(void) {
  struct rlimit rl;
  int highest = -1;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  int scan = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 65536 ? 65536 : (int)rl.rlim_cur;
  for (int fd = 0; fd < scan; fd++)
    if (fcntl(fd, F_GETFD) != -1) highest = fd;
  rl.rlim_cur = (rlim_t)(highest + 1 + 32);
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return -1;
  g_fill_fds = (int *)calloc((size_t)highest + 64, sizeof(int));
  if (!g_fill_fds) return -1;
  g_nfill = 0;
  for (;;) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      if (errno == EMFILE) break;
      return -1;
    }
    g_fill_fds[g_nfill++] = fd;
  }
  return g_nfill;
}

void sup_release_fds(int n) {
  while (n-- > 0 && g_nfill > 0) close(g_fill_fds[--g_nfill]);
}

int sup_inheritable_fds(void) {
  int count = 0;
  for (int fd = 3; fd < 65536; fd++) {
    int flags = fcntl(fd, F_GETFD);
    if (flags != -1 && !(flags & FD_CLOEXEC)) count++;
  }
  return count;
}

double sup_cpu_seconds(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
  return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
         (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}
#endif

static void set_otp(cport_socket s, cport_option opt, cport_val_type type, int value) {
  cport_optval v;
  memset(&v, 0, sizeof v);
  v.type = type;
  if (type == CPORT_VAL_INT)
    v.v.i = value;
  else
    v.v.b = value;
  SUP_RC(cport_setopt(s, CPORT_LEVEL_OTP, opt, &v), CPORT_OK);
}

static int get_otp(cport_socket s, cport_option opt, cport_val_type type) {
  cport_optval v;
  memset(&v, 0, sizeof v);
  SUP_RC(cport_getopt(s, CPORT_LEVEL_OTP, opt, &v), CPORT_OK);
  SUP_EQ(v.type, type);
  return type == CPORT_VAL_INT ? v.v.i : v.v.b;
}

void sup_set_otp_int(cport_socket s, cport_option opt, int value) {
  set_otp(s, opt, CPORT_VAL_INT, value);
}
int sup_get_otp_int(cport_socket s, cport_option opt) { return get_otp(s, opt, CPORT_VAL_INT); }
void sup_set_otp_bool(cport_socket s, cport_option opt, int on) {
  set_otp(s, opt, CPORT_VAL_BOOL, on);
}
int sup_get_otp_bool(cport_socket s, cport_option opt) { return get_otp(s, opt, CPORT_VAL_BOOL); }
