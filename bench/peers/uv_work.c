/*
 * uv_work: libuv's worker pool (uv_queue_work) and uv_getaddrinfo under the
 * scenarios of bench/work.sh, the peer of bench/work.c (same command line,
 * same checks, same result line; see work_common.h).
 *
 *   uv_work --scenario work_rtt|work_burst|resolve [--n N] [--inflight K]
 *           [--pool P] [--warm W]
 *
 * The pool's size is UV_THREADPOOL_SIZE, which libuv reads at its first
 * work item: the program sets it to P before any libuv call. One loop, K
 * requests (uv_work_t or uv_getaddrinfo_t, the caller's memory, allocated
 * before the phase); each after-work callback (on the loop thread) checks
 * its item and submits the next on the same request, so K stay in flight;
 * uv_run(UV_RUN_DEFAULT) returns when the last has completed.
 *  - work_rtt, work_burst: work_cb (on a pool thread) is the empty item,
 *    as cport's fn; after_work_cb must get status 0.
 *  - resolve: uv_getaddrinfo("localhost", "80", {AF_INET, SOCK_STREAM});
 *    the callback checks the answer (every entry IPv4 stream, one of them
 *    127.0.0.1:80) and frees it with uv_freeaddrinfo. libuv runs lookups
 *    as "slow I/O": at most half its pool threads ((P + 1) / 2) at once.
 */
#include "../work_common.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

typedef struct bench {
  uv_loop_t *loop;
  wb_ids ids;
  uv_work_t *work;       /* work: by slot */
  uv_getaddrinfo_t *gai; /* resolve: by slot */
  uint32_t nslots;
  uint32_t next, end;    /* the phase's next id to submit, and its end */
  uint64_t received;     /* completions counted */
  struct addrinfo hints; /* resolve */
  int err;               /* a submission failed: the phase stops */
} bench;

static bench g;

static int fail(const char *what, int rc) {
  fprintf(stderr, "uv_work: %s: %s\n", what, uv_strerror(rc));
  return -1;
}

static int die(const char *what, int rc) {
  fail(what, rc);
  return 1;
}

static void bad(const char *why, uint32_t id, int status) {
  if (g.ids.bad++ < 10)
    fprintf(stderr, "uv_work: bad completion (%s): id %u status %s\n", why, id,
            status ? uv_strerror(status) : "0");
}

/* ---- work ---------------------------------------------------------------- */

/* The empty work item: mark it ran (its own byte, see work_common.h). */
static void work_cb(uv_work_t *req) {
  uint8_t *ran = req->data;
  (*ran)++;
}

static void after_work_cb(uv_work_t *req, int status);

static int submit_work(uv_work_t *req, uint32_t id) {
  req->data = &g.ids.ran[id];
  int rc = uv_queue_work(g.loop, req, work_cb, after_work_cb);
  if (rc != 0) {
    g.err = 1;
    uv_stop(g.loop);
    return fail("uv_queue_work", rc);
  }
  return 0;
}

static void after_work_cb(uv_work_t *req, int status) {
  const uint8_t *p = req->data;
  if (!p || p < g.ids.ran || p >= g.ids.ran + g.ids.total) {
    bad("not one of ours", 0, status);
    return;
  }
  uint32_t id = (uint32_t)(p - g.ids.ran);
  if (status != 0) bad("status", id, status);
  g.ids.done[id]++;
  g.received++;
  if (g.next < g.end && !g.err) submit_work(req, g.next++);
}

/* ---- resolve ------------------------------------------------------------- */

/* Every entry IPv4 stream, and one of them 127.0.0.1:80. */
static int good_answer(const struct addrinfo *res) {
  int found = 0;
  if (!res) return 0;
  for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    if (ai->ai_family != AF_INET || ai->ai_socktype != SOCK_STREAM) return 0;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
    if (ntohs(sin->sin_port) == WB_PORT && ntohl(sin->sin_addr.s_addr) == INADDR_LOOPBACK)
      found = 1;
  }
  return found;
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res);

static int submit_resolve(uv_getaddrinfo_t *req, uint32_t id) {
  req->data = (void *)(uintptr_t)id;
  int rc = uv_getaddrinfo(g.loop, req, gai_cb, WB_HOST, WB_SERVICE, &g.hints);
  if (rc != 0) {
    g.err = 1;
    uv_stop(g.loop);
    return fail("uv_getaddrinfo", rc);
  }
  return 0;
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  uint32_t id = (uint32_t)(uintptr_t)req->data;
  if (id >= g.ids.total) {
    bad("not one of ours", id, status);
  } else {
    if (status != 0)
      bad("status", id, status);
    else if (!good_answer(res))
      bad("answer without 127.0.0.1:80, or not all IPv4 stream", id, status);
    else
      g.ids.ran[id]++;
    g.ids.done[id]++;
    g.received++;
  }
  if (res) uv_freeaddrinfo(res);
  if (g.next < g.end && !g.err) submit_resolve(req, g.next++);
}

/* ---- the run -------------------------------------------------------------- */

/* Ids first..first+count-1, inflight of them at a time; returns when all
 * completed. */
static int run_phase(int scenario, uint32_t first, uint32_t count, uint32_t inflight) {
  uint64_t want = g.received + count;
  g.next = first;
  g.end = first + count;
  if (inflight > g.nslots) inflight = g.nslots;
  for (uint32_t s = 0; s < inflight && g.next < g.end; s++) {
    int rc = scenario == WB_RESOLVE ? submit_resolve(&g.gai[s], g.next++)
                                    : submit_work(&g.work[s], g.next++);
    if (rc) return -1;
  }
  uv_run(g.loop, UV_RUN_DEFAULT); /* returns when no request is left */
  if (g.err) return -1;
  if (g.received != want) {
    fprintf(stderr, "uv_work: %llu of %u completions when the loop ran out of work\n",
            (unsigned long long)(g.received - (want - count)), count);
    return -1;
  }
  return 0;
}

int main(int argc, char **argv) {
  wb_opts o;
  if (wb_parse(argc, argv, &o, "uv_work") != 0) return 2;
  char pool[16];
  snprintf(pool, sizeof pool, "%u", o.pool);
  setenv("UV_THREADPOOL_SIZE", pool, 1); /* before libuv's first work item */

  uint32_t total = o.warm + o.n;
  uint32_t warm_inflight = o.scenario == WB_RESOLVE ? o.inflight : (o.warm ? o.warm : 1);
  g.nslots = o.inflight > warm_inflight ? o.inflight : warm_inflight;
  if (wb_ids_alloc(&g.ids, total)) return die("alloc", UV_ENOMEM);
  if (o.scenario == WB_RESOLVE) {
    g.gai = calloc(g.nslots, sizeof *g.gai);
    if (!g.gai) return die("alloc", UV_ENOMEM);
    memset(&g.hints, 0, sizeof g.hints);
    g.hints.ai_family = AF_INET;
    g.hints.ai_socktype = SOCK_STREAM;
  } else {
    g.work = calloc(g.nslots, sizeof *g.work);
    if (!g.work) return die("alloc", UV_ENOMEM);
  }

  static uv_loop_t loop;
  int rc = uv_loop_init(&loop);
  if (rc != 0) return die("uv_loop_init", rc);
  g.loop = &loop;

  wb_meter m;
  memset(&m, 0, sizeof m);
  wb_result r;
  memset(&r, 0, sizeof r);
  int err = o.warm ? run_phase(o.scenario, 0, o.warm, warm_inflight) : 0;
  if (!err) {
    wb_meter_start(&m);
    err = run_phase(o.scenario, o.warm, o.n, o.inflight);
    wb_meter_stop(&m);
  }
  r.ops = o.n;
  r.ok = wb_verify(&g.ids, &r, "uv_work") && err == 0;
  wb_report(&o, "libuv", &m, &r);
  uv_loop_close(&loop);
  wb_ids_free(&g.ids);
  free(g.work);
  free(g.gai);
  return r.ok ? 0 : 1;
}
