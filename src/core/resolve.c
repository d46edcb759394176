/* Names: cport_resolve and cport_nameinfo, on the context's workers.
 *
 * The system's resolver blocks (hosts file, then DNS with its retries), so
 * a lookup is a job (work.c) that calls it on a worker thread. Numeric
 * input needs no resolver and answers at once, with no thread: a program
 * that passes addresses pays nothing for names. A blocking call with a
 * finite timeout runs the job on a private queue and abandons it when the
 * time is up (rule 16); CPORT_INFINITY calls the resolver in the caller's
 * thread. Answers are one allocation each, so cport_free releases them
 * like any buffer the library hands out. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#define MAX_NAME_LEN (CPORT_NI_MAXHOST - 1)
#define KNOWN_FLAGS                                                                                \
  (CPORT_RESOLVE_NUMERIC_HOST | CPORT_RESOLVE_NUMERIC_SERV | CPORT_RESOLVE_PASSIVE |               \
   CPORT_RESOLVE_ADDRCONFIG | CPORT_RESOLVE_CANONNAME)
#define KNOWN_NI_FLAGS                                                                             \
  (CPORT_NAMEINFO_NUMERIC_HOST | CPORT_NAMEINFO_NUMERIC_SERV | CPORT_NAMEINFO_NAME_REQUIRED |      \
   CPORT_NAMEINFO_DGRAM)

/* ---- answers --------------------------------------------------------------- */

int cp_addrinfo_build(const cp_ai_item *items, size_t n, const char *canon, cport_addrinfo **out) {
  if (n == 0) return CPORT_ENONAME;
  size_t canon_len = canon ? strlen(canon) + 1 : 0;
  cport_addrinfo *list = cp_ubuf_alloc(n * sizeof *list + canon_len, NULL);
  if (!list) return CPORT_ENOMEM;
  for (size_t i = 0; i < n; i++) {
    list[i].next = i + 1 < n ? &list[i + 1] : NULL;
    list[i].addr = items[i].addr;
    list[i].type = items[i].type;
    list[i].protocol = items[i].type == CPORT_SOCK_STREAM ? 6 : 17;
    list[i].canonname = NULL;
  }
  if (canon) {
    list[0].canonname = (char *)(list + n);
    memcpy(list[0].canonname, canon, canon_len);
  }
  *out = list;
  return CPORT_OK;
}

void cport_addrinfo_free(cport_addrinfo *list) { cport_free(list); }

/* ---- the request ------------------------------------------------------------ */

/* What a lookup job carries: copies, since the caller's strings may go
 * before the worker runs. */
typedef struct lookup {
  cport_resolve_hints hints;
  bool has_host, has_service;
  char host[CPORT_NI_MAXHOST];
  char service[CPORT_NI_MAXSERV];
} lookup;

static bool copy_text(char *dst, size_t size, const char *src) {
  size_t n = strlen(src);
  if (n >= size) return false;
  memcpy(dst, src, n + 1);
  return true;
}

static int check_hints(const cport_resolve_hints *h) {
  if (h->family != 0 && h->family != CPORT_AF_INET && h->family != CPORT_AF_INET6)
    return CPORT_EAFNOSUPPORT;
  if (h->type != 0 && h->type != CPORT_SOCK_STREAM && h->type != CPORT_SOCK_DGRAM)
    return CPORT_EINVAL;
  return (h->flags & ~KNOWN_FLAGS) ? CPORT_EINVAL : CPORT_OK;
}

static int make_lookup(const char *host, const char *service, const cport_resolve_hints *hints,
                       lookup *lk) {
  memset(lk, 0, sizeof *lk);
  if (hints) lk->hints = *hints;
  int rc = check_hints(&lk->hints);
  if (rc != CPORT_OK) return rc;
  if (!host && !service) return CPORT_EINVAL;
  if (host && !copy_text(lk->host, sizeof lk->host, host)) return CPORT_EINVAL;
  if (service && !copy_text(lk->service, sizeof lk->service, service)) return CPORT_EINVAL;
  lk->has_host = host != NULL;
  lk->has_service = service != NULL;
  return CPORT_OK;
}

/* ---- numeric input: done now ------------------------------------------------ */

/* service as a port: 1 if it is a number (or absent), 0 if a name, -1 if a
 * number out of range. */
static int numeric_port(const lookup *lk, uint16_t *port) {
  unsigned long n = 0;
  *port = 0;
  if (!lk->has_service) return 1;
  if (!lk->service[0]) return 0;
  for (const char *c = lk->service; *c; c++) {
    if (*c < '0' || *c > '9') return 0;
    n = n * 10u + (unsigned long)(*c - '0');
    if (n > 65535u) return -1;
  }
  *port = (uint16_t)n;
  return 1;
}

/* The addresses a NULL host means: the wildcard to bind, else loopback;
 * IPv4 first, as getaddrinfo lists them. */
static size_t implied_hosts(const lookup *lk, cport_addr out[2]) {
  bool passive = lk->hints.flags & CPORT_RESOLVE_PASSIVE;
  size_t n = 0;
  if (lk->hints.family != CPORT_AF_INET6)
    cport_addr_init(&out[n++], passive ? "0.0.0.0" : "127.0.0.1", 0);
  if (lk->hints.family != CPORT_AF_INET) cport_addr_init(&out[n++], passive ? "::" : "::1", 0);
  return n;
}

/* Each address once per socket type asked for (both when none was). */
static int numeric_answer(const lookup *lk, const cport_addr *addrs, size_t n, uint16_t port,
                          cport_addrinfo **out) {
  cp_ai_item items[4];
  size_t count = 0;
  for (size_t i = 0; i < n; i++) {
    for (int type = CPORT_SOCK_STREAM; type <= CPORT_SOCK_DGRAM; type++) {
      if (lk->hints.type != 0 && lk->hints.type != type) continue;
      items[count].addr = addrs[i];
      items[count].addr.port = port;
      items[count++].type = type;
    }
  }
  return cp_addrinfo_build(items, count, NULL, out);
}

/* CPORT_OK or an error if lk answers without a resolver; CP_PENDING if it
 * needs one. */
static int resolve_now(const lookup *lk, cport_addrinfo **out) {
  uint16_t port;
  int num = numeric_port(lk, &port);
  if (num < 0) return CPORT_EINVAL;
  if (num == 0) return (lk->hints.flags & CPORT_RESOLVE_NUMERIC_SERV) ? CPORT_EINVAL : CP_PENDING;
  cport_addr addrs[2];
  size_t n = 0;
  if (!lk->has_host) {
    n = implied_hosts(lk, addrs);
  } else if (cport_addr_init(&addrs[0], lk->host, 0) == CPORT_OK) {
    if (lk->hints.family != 0 && addrs[0].family != lk->hints.family) return CPORT_ENONAME;
    n = 1;
  } else {
    return (lk->hints.flags & CPORT_RESOLVE_NUMERIC_HOST) ? CPORT_ENONAME : CP_PENDING;
  }
  if (lk->hints.flags & CPORT_RESOLVE_CANONNAME) return CP_PENDING; /* the resolver's to say */
  return numeric_answer(lk, addrs, n, port, out);
}

/* ---- the resolver, on a worker or the caller's thread ----------------------- */

static int os_resolve(const lookup *lk, cport_addrinfo **out, size_t *count) {
  return cp_os_getaddrinfo(lk->has_host ? lk->host : NULL, lk->has_service ? lk->service : NULL,
                           &lk->hints, out, count);
}

static int start_resolve(cp_job *job, void **result, size_t *count) {
  const lookup *lk = cp_job_data(job);
  cport_addrinfo *list = NULL;
  int rc = cp_os_resolve_start(job, lk->has_host ? lk->host : NULL,
                               lk->has_service ? lk->service : NULL, &lk->hints, &list, count);
  *result = list;
  return rc;
}

static int run_resolve(cp_job *job, void **result, size_t *count) {
  cport_addrinfo *list = NULL;
  int rc = os_resolve(cp_job_data(job), &list, count);
  *result = list;
  return rc;
}

typedef struct reverse {
  cport_addr addr;
  unsigned flags;
} reverse;

static int run_nameinfo(cp_job *job, void **result, size_t *count) {
  const reverse *rv = cp_job_data(job);
  cport_names *names = cp_ubuf_alloc(sizeof *names, NULL);
  if (!names) return CPORT_ENOMEM;
  int rc = cp_os_getnameinfo(&rv->addr, rv->flags, names);
  if (rc != CPORT_OK) {
    cport_free(names);
    return rc;
  }
  *result = names;
  *count = 1;
  return CPORT_OK;
}

/* ---- blocking calls with a finite timeout ---------------------------------- */

/* Runs a job on a private queue and waits up to timeout for its message;
 * at the timeout the job is abandoned (its abort is then the message). */
static int wait_job(cport_queue *q, uint8_t kind, cp_job_start_fn start, cp_job_fn run,
                    const void *data, size_t len, int timeout, void **result) {
  cport_queue *pq = cp_queue_borrow(q->ctx);
  if (!pq) return CPORT_ENOMEM;
  cport_handle h;
  int rc = start ? cp_job_submit_os(pq, kind, start, run, data, len, &h)
                 : cp_job_submit(pq, kind, run, NULL, data, len, &h);
  if (rc != CPORT_COMPLETION) {
    cp_queue_give_back(pq);
    return rc;
  }
  cport_msg m;
  bool timed_out = false;
  if (cport_wait(pq, &m, 1, timeout) == 0) {
    timed_out = cp_jobs_cancel(pq, h) == CPORT_OK;
    while (cport_wait(pq, &m, 1, CPORT_INFINITY) == 0) {
    }
  }
  cp_queue_give_back(pq);
  *result = m.buf;
  return timed_out ? CPORT_ETIMEDOUT : m.status;
}

/* ---- the calls ---------------------------------------------------------------- */

static int check_call(cport_queue *q, int timeout, void *result, cport_handle *handle) {
  if (!q || timeout < CPORT_NOWAIT) return CPORT_EINVAL;
  if (timeout == CPORT_NOWAIT ? !handle : !result) return CPORT_EINVAL;
  return cp_queue_dead(q) ? CPORT_EBADF : CPORT_OK;
}

int cport_resolve(cport_queue *q, const char *host, const char *service,
                  const cport_resolve_hints *hints, int timeout, cport_addrinfo **result,
                  cport_handle *handle) {
  if (result) *result = NULL;
  if (handle) *handle = 0;
  int rc = check_call(q, timeout, result, handle);
  lookup lk;
  if (rc == CPORT_OK) rc = make_lookup(host, service, hints, &lk);
  if (rc != CPORT_OK) return rc;
  cport_addrinfo *now = NULL;
  rc = resolve_now(&lk, &now);
  if (rc != CP_PENDING) {
    if (result)
      *result = now;
    else
      cport_addrinfo_free(now); /* a NOWAIT caller may pass no result */
    return rc;
  }
  if (timeout == CPORT_NOWAIT)
    return cp_job_submit_os(q, CPORT_OP_RESOLVE, start_resolve, run_resolve, &lk, sizeof lk,
                            handle);
  size_t count;
  if (timeout == CPORT_INFINITY) return os_resolve(&lk, result, &count);
  void *list = NULL;
  rc = wait_job(q, CPORT_OP_RESOLVE, start_resolve, run_resolve, &lk, sizeof lk, timeout, &list);
  if (rc == CPORT_OK) *result = list;
  return rc;
}

/* Numeric answers, and CPORT_INFINITY: in the caller's thread. */
static int nameinfo_here(const reverse *rv, cport_names **result) {
  cport_names *names = cp_ubuf_alloc(sizeof *names, NULL);
  if (!names) return CPORT_ENOMEM;
  int rc = cp_os_getnameinfo(&rv->addr, rv->flags, names);
  if (rc != CPORT_OK || !result) {
    cport_free(names);
    return rc;
  }
  *result = names;
  return CPORT_OK;
}

int cport_nameinfo(cport_queue *q, const cport_addr *addr, unsigned flags, int timeout,
                   cport_names **result, cport_handle *handle) {
  if (result) *result = NULL;
  if (handle) *handle = 0;
  int rc = check_call(q, timeout, result, handle);
  if (rc != CPORT_OK) return rc;
  const unsigned contradiction = CPORT_NAMEINFO_NUMERIC_HOST | CPORT_NAMEINFO_NAME_REQUIRED;
  if (!addr || (flags & ~KNOWN_NI_FLAGS) || (flags & contradiction) == contradiction)
    return CPORT_EINVAL;
  if (addr->family != CPORT_AF_INET && addr->family != CPORT_AF_INET6) return CPORT_EAFNOSUPPORT;
  reverse rv = {.addr = *addr, .flags = flags};
  bool local = (flags & CPORT_NAMEINFO_NUMERIC_HOST) && (flags & CPORT_NAMEINFO_NUMERIC_SERV);
  if (local || timeout == CPORT_INFINITY) return nameinfo_here(&rv, result);
  if (timeout == CPORT_NOWAIT)
    return cp_job_submit(q, CPORT_OP_NAMEINFO, run_nameinfo, NULL, &rv, sizeof rv, handle);
  void *names = NULL;
  rc = wait_job(q, CPORT_OP_NAMEINFO, NULL, run_nameinfo, &rv, sizeof rv, timeout, &names);
  if (rc == CPORT_OK) *result = names;
  return rc;
}
