/*
 * Shared by bench/timers.c (cport) and bench/peers/uv_timers.c (libuv): the
 * command line, the seeded random numbers (the same sequence in both
 * programs), the clocks, and the one result line bench/timers.sh reads.
 *
 *   <prog> --scenario startstop|churn|fire [--n N] [--live N] [--seed S]
 *
 * Scenarios (defaults in brackets):
 *   startstop  start N [1,000,000] timers, timeouts uniform in 1..60,000 ms,
 *              then cancel them all in a random order;
 *   churn      start LIVE [10,000] timers, then N [1,000,000] times: cancel
 *              a random one of them and start a new one in its place;
 *   fire       N [100,000] one-shot timers, timeouts uniform in 0..1000 ms;
 *              run the loop until each has fired once, none early.
 *
 * Result: one line on stdout,
 *   scenario=.. impl=.. n=.. ops=.. cpu_s=.. user_s=.. sys_s=.. wall_s=..
 *   ns_per_op=.. fired=.. cancelled=.. early=.. early_call=.. max_late_ms=.. rss_kb=..
 *   ok=0|1
 * where cpu_s is CLOCK_PROCESS_CPUTIME_ID over the measured phase (every
 * thread, user + sys), user_s/sys_s the getrusage split of it, ops the
 * number the per-op figure divides by (startstop and fire: N timers;
 * churn: N cancel+start pairs), fired/cancelled how the timers ended (a
 * startstop or churn timer whose time came during the phase fires), early
 * the timers that fired before the time the implementation promises (any
 * fails the run), early_call (fire) those that fired before a clock
 * reading taken just before their start call + timeout, and max_late_ms
 * (fire) the latest firing after max(that time, the end of the starts).
 * Exit status 1 when a check failed.
 */
#ifndef BENCH_TIMERS_COMMON_H
#define BENCH_TIMERS_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#define TB_STARTSTOP_N 1000000u
#define TB_CHURN_N 1000000u
#define TB_CHURN_LIVE 10000u
#define TB_FIRE_N 100000u
#define TB_STARTSTOP_MIN_MS 1u
#define TB_STARTSTOP_MAX_MS 60000u
#define TB_FIRE_MAX_MS 1000u
/* Cancels between two drains of the queue (cport) / loop turns (libuv). */
#define TB_DRAIN_EVERY 4096u

enum { TB_STARTSTOP = 1, TB_CHURN = 2, TB_FIRE = 3 };

typedef struct tb_opts {
  int scenario;
  const char *name;
  uint32_t n;    /* timers (startstop, fire) or cancel+start pairs (churn) */
  uint32_t live; /* churn: timers alive at any time */
  uint64_t seed;
} tb_opts;

static inline int tb_parse(int argc, char **argv, tb_opts *o, const char *prog) {
  memset(o, 0, sizeof *o);
  o->seed = 0x5eed7133u;
  long long n = -1, live = -1;
  for (int i = 1; i < argc; i += 2) {
    const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) goto usage;
    if (strcmp(k, "--scenario") == 0) {
      o->name = v;
      if (strcmp(v, "startstop") == 0)
        o->scenario = TB_STARTSTOP;
      else if (strcmp(v, "churn") == 0)
        o->scenario = TB_CHURN;
      else if (strcmp(v, "fire") == 0)
        o->scenario = TB_FIRE;
      else
        goto usage;
    } else if (strcmp(k, "--n") == 0) {
      n = atoll(v);
    } else if (strcmp(k, "--live") == 0) {
      live = atoll(v);
    } else if (strcmp(k, "--seed") == 0) {
      o->seed = strtoull(v, NULL, 0);
    } else {
      goto usage;
    }
  }
  if (!o->scenario) goto usage;
  o->n = o->scenario == TB_FIRE ? TB_FIRE_N : o->scenario == TB_CHURN ? TB_CHURN_N : TB_STARTSTOP_N;
  if (n >= 0) o->n = (uint32_t)n;
  o->live = live > 0 ? (uint32_t)live : TB_CHURN_LIVE;
  if (o->n == 0 || n > 100000000 || live > 100000000) goto usage;
  return 0;
usage:
  fprintf(stderr, "usage: %s --scenario startstop|churn|fire [--n N] [--live N] [--seed S]\n",
          prog);
  return -1;
}

/* splitmix64: small, fast, and the same sequence everywhere. */
static inline uint64_t tb_rand(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15u);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return z ^ (z >> 31);
}

/* Uniform in lo..hi (inclusive); the modulo bias is irrelevant here. */
static inline uint64_t tb_uniform(uint64_t *state, uint64_t lo, uint64_t hi) {
  return lo + tb_rand(state) % (hi - lo + 1);
}

/* A random permutation of 0..n-1 (Fisher-Yates). NULL when out of memory. */
static inline uint32_t *tb_permutation(uint32_t n, uint64_t *state) {
  uint32_t *p = malloc((size_t)n * sizeof *p);
  if (!p) return NULL;
  for (uint32_t i = 0; i < n; i++) p[i] = i;
  for (uint32_t i = n - 1; i > 0; i--) {
    uint32_t j = (uint32_t)(tb_rand(state) % (i + 1u));
    uint32_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}

static inline uint64_t tb_clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t tb_mono_ns(void) { return tb_clock_ns(CLOCK_MONOTONIC); }

/* The measured phase: process CPU (every thread), its user/sys split and
 * the wall clock. */
typedef struct tb_meter {
  uint64_t cpu0, cpu1, wall0, wall1;
  struct rusage ru0, ru1;
} tb_meter;

static inline void tb_meter_start(tb_meter *m) {
  getrusage(RUSAGE_SELF, &m->ru0);
  m->wall0 = tb_mono_ns();
  m->cpu0 = tb_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
}

static inline void tb_meter_stop(tb_meter *m) {
  m->cpu1 = tb_clock_ns(CLOCK_PROCESS_CPUTIME_ID);
  m->wall1 = tb_mono_ns();
  getrusage(RUSAGE_SELF, &m->ru1);
}

static inline double tb_tv_diff(struct timeval a, struct timeval b) {
  return (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_usec - a.tv_usec) / 1e6;
}

typedef struct tb_result {
  uint64_t ops;
  uint64_t fired, cancelled;
  uint64_t early;      /* fired before the time the implementation promises (must be 0) */
  uint64_t early_call; /* fire: fired before (a clock reading taken just before the start
                          call) + timeout; informative (libuv counts from its loop time) */
  double max_late_ms;
  int ok;
} tb_result;

static inline void tb_report(const tb_opts *o, const char *impl, const tb_meter *m,
                             const tb_result *r) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)(m->cpu1 - m->cpu0) / 1e9;
  printf("scenario=%s impl=%s n=%u ops=%llu cpu_s=%.6f user_s=%.6f sys_s=%.6f wall_s=%.6f "
         "ns_per_op=%.1f fired=%llu cancelled=%llu early=%llu early_call=%llu max_late_ms=%.3f "
         "rss_kb=%ld ok=%d\n",
         o->name, impl, o->n, (unsigned long long)r->ops, cpu,
         tb_tv_diff(m->ru0.ru_utime, m->ru1.ru_utime), tb_tv_diff(m->ru0.ru_stime, m->ru1.ru_stime),
         (double)(m->wall1 - m->wall0) / 1e9, r->ops ? cpu * 1e9 / (double)r->ops : 0.0,
         (unsigned long long)r->fired, (unsigned long long)r->cancelled,
         (unsigned long long)r->early, (unsigned long long)r->early_call, r->max_late_ms,
         ru.ru_maxrss, r->ok);
  fflush(stdout);
}

#endif
