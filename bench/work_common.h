/*
 * Shared by bench/work.c (cport) and bench/peers/uv_work.c (libuv): the
 * command line, the clocks, the checks of a finished run and the one
 * result line bench/work.sh reads.
 *
 *   <prog> --scenario work_rtt|work_burst|resolve [--n N] [--inflight K]
 *          [--pool P] [--warm W]
 *
 * Scenarios (defaults in brackets):
 *   work_rtt    one work item in flight: submit an empty item, wait for its
 *               completion, submit the next; N [200,000] round trips;
 *   work_burst  K [1,000] items in flight: submit K, then one more per
 *               completion, until N [1,000,000] have completed;
 *   resolve     K [64] lookups of "localhost", service "80", IPv4, stream,
 *               in flight until N [100,000] have completed (answered from
 *               /etc/hosts: no network). Each answer must hold 127.0.0.1:80.
 * P [4] is the worker pool's size (cport: cport_ctx_options.threadpool_size;
 * libuv: UV_THREADPOOL_SIZE, set by the program before libuv reads it).
 *
 * Before the measured phase, W warm-up items (work scenarios [1,000], all
 * in flight at once) or lookups (resolve [256], K in flight) run unmeasured:
 * every pool thread is then started (cport starts its threads as work
 * arrives, libuv all at its first item) and the resolver's files are
 * loaded. They are checked like the measured ones.
 *
 * An empty work item: fn(arg) adds one to the item's own counter (ran[id],
 * a byte no other item touches: no atomic, no shared cache line written by
 * two threads at once beyond what falls on the same line), so that the run
 * can prove every item ran exactly once.
 *
 * Result: one line on stdout,
 *   scenario=.. impl=.. n=.. ops=.. inflight=.. pool=.. warm=.. cpu_s=..
 *   user_s=.. sys_s=.. wall_s=.. rate=.. ns_per_op=.. vcsw=.. ivcsw=..
 *   csw_per_op=.. ran=.. done=.. missing=.. dup=.. bad=.. threads=..
 *   rss_kb=.. ok=0|1
 * where cpu_s is CLOCK_PROCESS_CPUTIME_ID over the measured phase (every
 * thread, user + sys), user_s/sys_s the getrusage split of it, wall_s the
 * CLOCK_MONOTONIC time of the phase, rate = ops / wall_s (round trips,
 * items or lookups per second), ns_per_op = CPU ns per op, vcsw/ivcsw the
 * process's voluntary/involuntary context switches over the phase
 * (getrusage, every thread) and csw_per_op their sum per op, ran the times
 * fn ran (resolve: the answers that held 127.0.0.1:80), done the
 * completions (both counted over warm-up + measured ids), missing/dup the
 * ids with no completion / more than one (or fn not run / run twice), bad
 * the completions that broke a rule (wrong status, op, handle, answer),
 * threads the process's threads at the end of the phase (1 + the pool
 * expected). Exit status 1 when a check failed, 2 on a usage error.
 */
#ifndef BENCH_WORK_COMMON_H
#define BENCH_WORK_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define WB_RTT_N 200000u
#define WB_BURST_N 1000000u
#define WB_BURST_INFLIGHT 1000u
#define WB_RESOLVE_N 100000u
#define WB_RESOLVE_INFLIGHT 64u
#define WB_POOL 4u
#define WB_WARM_WORK 1000u
#define WB_WARM_RESOLVE 256u
#define WB_HOST "localhost"
#define WB_SERVICE "80"
#define WB_PORT 80u
/* A run that sees no completion for this long has stalled: it fails. */
#define WB_STALL_MS 10000

enum { WB_RTT = 1, WB_BURST = 2, WB_RESOLVE = 3 };

typedef struct wb_opts {
  int scenario;
  const char *name;
  uint32_t n;        /* measured ops */
  uint32_t inflight; /* ops in flight during the measured phase */
  uint32_t pool;     /* worker threads */
  uint32_t warm;     /* unmeasured ops before the phase */
} wb_opts;

static inline int wb_parse(int argc, char **argv, wb_opts *o, const char *prog) {
  memset(o, 0, sizeof *o);
  long long n = -1, inflight = -1, pool = -1, warm = -1;
  for (int i = 1; i < argc; i += 2) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) goto usage;
    if (strcmp(k, "--scenario") == 0) {
      o->name = v;
      if (strcmp(v, "work_rtt") == 0)
        o->scenario = WB_RTT;
      else if (strcmp(v, "work_burst") == 0)
        o->scenario = WB_BURST;
      else if (strcmp(v, "resolve") == 0)
        o->scenario = WB_RESOLVE;
      else
        goto usage;
    } else if (strcmp(k, "--n") == 0) {
      n = atoll(v);
    } else if (strcmp(k, "--inflight") == 0) {
      inflight = atoll(v);
    } else if (strcmp(k, "--pool") == 0) {
      pool = atoll(v);
    } else if (strcmp(k, "--warm") == 0) {
      warm = atoll(v);
    } else {
      goto usage;
    }
  }
  if (!o->scenario) goto usage;
  o->n = o->scenario == WB_RTT ? WB_RTT_N : o->scenario == WB_BURST ? WB_BURST_N : WB_RESOLVE_N;
  o->inflight = o->scenario == WB_RTT     ? 1u
                : o->scenario == WB_BURST ? WB_BURST_INFLIGHT
                                          : WB_RESOLVE_INFLIGHT;
  o->pool = WB_POOL;
  o->warm = o->scenario == WB_RESOLVE ? WB_WARM_RESOLVE : WB_WARM_WORK;
  if (n > 100000000 || inflight > 1000000 || pool > 1024 || warm > 10000000) goto usage;
  if (n >= 0) o->n = (uint32_t)n;
  if (inflight >= 0) o->inflight = (uint32_t)inflight;
  if (pool >= 0) o->pool = (uint32_t)pool;
  if (warm >= 0) o->warm = (uint32_t)warm;
  if (o->scenario == WB_RTT && o->inflight != 1) goto usage;
  if (o->n == 0 || o->inflight == 0 || o->pool == 0) goto usage;
  return 0;
usage:
  fprintf(stderr,
          "usage: %s --scenario work_rtt|work_burst|resolve [--n N] [--inflight K] [--pool P] "
          "[--warm W]\n",
          prog);
  return -1;
}

static inline uint64_t wb_clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t wb_mono_ns(void) { return wb_clock_ns(CLOCK_MONOTONIC); }

/* The measured phase: process CPU (every thread), its user/sys split, the
 * wall clock, and the threads the process has at its end. */
typedef struct wb_meter {
  uint64_t cpu0, cpu1, wall0, wall1;
  struct rusage ru0, ru1;
  int threads;
} wb_meter;

/* Threads of this process now (/proc/self/status), -1 if unknown. */
static inline int wb_threads(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  int n = -1;
  while (fgets(line, sizeof line, f))
    if (strncmp(line, "Threads:", 8) == 0) {
      n = atoi(line + 8);
      break;
    }
  fclose(f);
  return n;
}

static inline void wb_meter_start(wb_meter *m) {
  getrusage(RUSAGE_SELF, &m->ru0);
  m->wall0 = wb_mono_ns();
  m->cpu0 = wb_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

static inline void wb_meter_stop(wb_meter *m) {
  m->cpu1 = wb_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
  m->wall1 = wb_mono_ns();
  getrusage(RUSAGE_SELF, &m->ru1);
  m->threads = wb_threads();
}

static inline double wb_tv_diff(struct timeval a, struct timeval b) {
  return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_usec - a.tv_usec) / 1e6;
}

/* Per-id bookkeeping, the same in both programs: ids 0..total-1, the
 * warm-up first. Allocated and touched before the phase. */
typedef struct wb_ids {
  uint32_t total;
  uint8_t *ran;  /* work: fn's runs, written by the worker; resolve: good answers */
  uint8_t *done; /* completions seen by the loop */
  uint64_t bad;  /* completions that broke a rule */
} wb_ids;

static inline int wb_ids_alloc(wb_ids *ids, uint32_t total) {
  ids->total = total;
  ids->ran = calloc(total, 1);
  ids->done = calloc(total, 1);
  ids->bad = 0;
  if (!ids->ran || !ids->done) return -1;
  memset(ids->ran, 0, total);
  memset(ids->done, 0, total);
  return 0;
}

static inline void wb_ids_free(wb_ids *ids) {
  free(ids->ran);
  free(ids->done);
}

typedef struct wb_result {
  uint64_t ops;
  uint64_t ran, done, missing, dup, bad;
  int ok;
} wb_result;

/* After the run: every id completed once and ran (or was answered) once. */
static inline int wb_verify(const wb_ids *ids, wb_result *r, const char *prog) {
  uint64_t reported = 0;
  r->ran = r->done = r->missing = r->dup = 0;
  for (uint32_t id = 0; id < ids->total; id++) {
    r->ran += ids->ran[id];
    r->done += ids->done[id];
    int wrong = ids->ran[id] != 1 || ids->done[id] != 1;
    if (ids->ran[id] == 0 || ids->done[id] == 0) r->missing++;
    if (ids->ran[id] > 1 || ids->done[id] > 1) r->dup++;
    if (wrong && reported++ < 10)
      fprintf(stderr, "%s: id %u: ran %u, completed %u (want 1 and 1)\n", prog, id, ids->ran[id],
              ids->done[id]);
  }
  r->bad = ids->bad;
  return r->missing == 0 && r->dup == 0 && r->bad == 0;
}

static inline void wb_report(const wb_opts *o, const char *impl, const wb_meter *m,
                             const wb_result *r) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)(m->cpu1 - m->cpu0) / 1e9;
  double wall = (double)(m->wall1 - m->wall0) / 1e9;
  long vcsw = m->ru1.ru_nvcsw - m->ru0.ru_nvcsw, ivcsw = m->ru1.ru_nivcsw - m->ru0.ru_nivcsw;
  printf("scenario=%s impl=%s n=%u ops=%llu inflight=%u pool=%u warm=%u cpu_s=%.6f user_s=%.6f "
         "sys_s=%.6f wall_s=%.6f rate=%.1f ns_per_op=%.1f vcsw=%ld ivcsw=%ld csw_per_op=%.3f "
         "ran=%llu done=%llu missing=%llu dup=%llu bad=%llu threads=%d rss_kb=%ld ok=%d\n",
         o->name, impl, o->n, (unsigned long long)r->ops, o->inflight, o->pool, o->warm, cpu,
         wb_tv_diff(m->ru0.ru_utime, m->ru1.ru_utime), wb_tv_diff(m->ru0.ru_stime, m->ru1.ru_stime),
         wall, wall > 0 ? (double)r->ops / wall : 0.0, r->ops ? cpu * 1e9 / (double)r->ops : 0.0,
         vcsw, ivcsw, r->ops ? (double)(vcsw + ivcsw) / (double)r->ops : 0.0,
         (unsigned long long)r->ran, (unsigned long long)r->done, (unsigned long long)r->missing,
         (unsigned long long)r->dup, (unsigned long long)r->bad, m->threads, ru.ru_maxrss, r->ok);
  fflush(stdout);
}

#endif
