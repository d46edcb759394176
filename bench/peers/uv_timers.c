/*
 * uv_timers: libuv's uv_timer_t under the scenarios of bench/timers.sh, the
 * peer of bench/timers.c (same command line, same random numbers, same
 * result line; see timers_common.h).
 *
 *   uv_timers --scenario startstop|churn|fire [--n N] [--live N] [--seed S]
 *
 *  - startstop: uv_timer_init + uv_timer_start for each, then uv_timer_stop
 *    in a random order. libuv stops a timer with no message, so there is
 *    nothing to drain; but at the points where the cport program drains its
 *    queue (every TB_DRAIN_EVERY stops) this one turns the loop once
 *    (uv_run UV_RUN_NOWAIT), so that in both programs a timer whose time
 *    came during the phase fires. The handles' memory is the caller's
 *    (allocated and touched before the phase); uv_close of each comes after
 *    it, unmeasured (cport has no such step: its handles end with their
 *    message).
 *  - churn: the same, restarting a stopped handle with uv_timer_start (the
 *    idle-timeout idiom).
 *  - fire: uv_run(UV_RUN_DEFAULT) until every timer has fired. A timer must
 *    not fire before uv_now() at the start (after uv_update_time) + its
 *    timeout: libuv counts from its loop time, in whole milliseconds, not
 *    from the call, so that is the check ("early"); how many fired before
 *    (the clock just before its start call) + timeout is reported as
 *    early_call, for information.
 */
#include "../timers_common.h"

#include <uv.h>

#define FIRE_CLOCK_BLOCK 256u

typedef struct bench {
  uv_loop_t *loop;
  uv_timer_t *t;       /* startstop, fire: by id; churn: by slot */
  uint32_t ntimers;    /* ids */
  uint32_t *after;     /* by id, ms */
  uint8_t *stopped;    /* by id: 1 if uv_timer_stop found it active */
  uint8_t *fired;      /* by id: callbacks */
  uint64_t *ref_ns;    /* fire: by block of starts */
  uint64_t loop_start; /* fire: uv_now() at the start, ms */
  uint64_t loop_ns;    /* fire: CLOCK_MONOTONIC after the last start */
  tb_result r;
} bench;

static bench g;

static int fail(const char *what, int rc) {
  fprintf(stderr, "uv_timers: %s: %s\n", what, uv_strerror(rc));
  return -1;
}

static uint32_t id_of(const uv_timer_t *h) { return (uint32_t)(uintptr_t)h->data; }

static void on_timer(uv_timer_t *h) {
  uint32_t id = id_of(h);
  if (g.fired[id]++ != 0) fprintf(stderr, "uv_timers: timer %u fired twice\n", id);
  g.r.fired++;
  if (g.ref_ns) {
    uint64_t now = tb_mono_ns();
    uint64_t due = (g.loop_start + g.after[id]) * 1000000u;
    uint64_t due_call = g.ref_ns[id / FIRE_CLOCK_BLOCK] + (uint64_t)g.after[id] * 1000000u;
    if (now < due) {
      if (g.r.early++ < 10)
        fprintf(stderr, "uv_timers: timer %u (%u ms) fired %.3f ms early\n", id, g.after[id],
                (double)(due - now) / 1e6);
    }
    /* Late: counted from when the loop could first run it (as timers.c). */
    uint64_t from = due_call > g.loop_ns ? due_call : g.loop_ns;
    if (now < due_call) g.r.early_call++;
    if (now > from && (double)(now - from) / 1e6 > g.r.max_late_ms)
      g.r.max_late_ms = (double)(now - from) / 1e6;
  }
}

static int start(uv_timer_t *h, uint32_t id) {
  h->data = (void *)(uintptr_t)id;
  int rc = uv_timer_start(h, on_timer, g.after[id], 0);
  return rc == 0 ? 0 : fail("uv_timer_start", rc);
}

static void stop(uv_timer_t *h) {
  if (uv_is_active((uv_handle_t *)h)) g.stopped[id_of(h)] = 1;
  uv_timer_stop(h);
}

static int alloc(uint32_t nhandles, uint32_t nids) {
  g.ntimers = nids;
  g.t = malloc((size_t)nhandles * sizeof *g.t);
  g.after = malloc((size_t)nids * sizeof *g.after);
  g.stopped = calloc(nids, 1);
  g.fired = calloc(nids, 1);
  if (!g.t || !g.after || !g.stopped || !g.fired) return fail("alloc", UV_ENOMEM);
  /* Touch every page now: the measured phase pays for libuv only. */
  memset(g.t, 0, (size_t)nhandles * sizeof *g.t);
  memset(g.stopped, 0, nids);
  memset(g.fired, 0, nids);
  return 0;
}

/* Every id ended once: stopped while active, or fired once. */
static int verify(void) {
  uint64_t wrong = 0;
  for (uint32_t id = 0; id < g.ntimers; id++) {
    if (g.stopped[id] + g.fired[id] != 1 && wrong++ < 10)
      fprintf(stderr, "uv_timers: timer %u: stopped %d fired %d\n", id, g.stopped[id], g.fired[id]);
  }
  return wrong == 0 && g.r.early == 0;
}

static void close_all(uint32_t nhandles) {
  for (uint32_t i = 0; i < nhandles; i++) uv_close((uv_handle_t *)&g.t[i], NULL);
  uv_run(g.loop, UV_RUN_DEFAULT);
}

static int run_startstop(const tb_opts *o, tb_meter *m) {
  uint64_t rng = o->seed;
  if (alloc(o->n, o->n)) return -1;
  for (uint32_t i = 0; i < o->n; i++)
    g.after[i] = (uint32_t)tb_uniform(&rng, TB_STARTSTOP_MIN_MS, TB_STARTSTOP_MAX_MS);
  uint32_t *order = tb_permutation(o->n, &rng);
  if (!order) return fail("alloc", UV_ENOMEM);

  tb_meter_start(m);
  for (uint32_t i = 0; i < o->n; i++) {
    uv_timer_init(g.loop, &g.t[i]);
    if (start(&g.t[i], i)) return -1;
  }
  for (uint32_t k = 0; k < o->n; k++) {
    stop(&g.t[order[k]]);
    if ((k + 1) % TB_DRAIN_EVERY == 0) uv_run(g.loop, UV_RUN_NOWAIT);
  }
  tb_meter_stop(m);

  g.r.ops = o->n;
  g.r.cancelled = 0;
  for (uint32_t i = 0; i < o->n; i++) g.r.cancelled += g.stopped[i];
  close_all(o->n);
  free(order);
  return 0;
}

static int run_churn(const tb_opts *o, tb_meter *m) {
  uint64_t rng = o->seed;
  uint32_t live = o->live, total = o->live + o->n;
  if (alloc(live, total)) return -1;
  for (uint32_t i = 0; i < total; i++)
    g.after[i] = (uint32_t)tb_uniform(&rng, TB_STARTSTOP_MIN_MS, TB_STARTSTOP_MAX_MS);
  uint32_t *pick = malloc((size_t)o->n * sizeof *pick);
  if (!pick) return fail("alloc", UV_ENOMEM);
  for (uint32_t k = 0; k < o->n; k++) pick[k] = (uint32_t)(tb_rand(&rng) % live);

  tb_meter_start(m);
  for (uint32_t i = 0; i < live; i++) {
    uv_timer_init(g.loop, &g.t[i]);
    if (start(&g.t[i], i)) return -1;
  }
  for (uint32_t k = 0; k < o->n; k++) {
    uv_timer_t *h = &g.t[pick[k]];
    stop(h);
    if (start(h, live + k)) return -1;
    if ((k + 1) % TB_DRAIN_EVERY == 0) uv_run(g.loop, UV_RUN_NOWAIT);
  }
  tb_meter_stop(m);

  for (uint32_t i = 0; i < live; i++) stop(&g.t[i]); /* unmeasured: end the live ones */
  g.r.ops = o->n;
  for (uint32_t i = 0; i < total; i++) g.r.cancelled += g.stopped[i];
  close_all(live);
  free(pick);
  return 0;
}

static int run_fire(const tb_opts *o, tb_meter *m) {
  uint64_t rng = o->seed;
  if (alloc(o->n, o->n)) return -1;
  for (uint32_t i = 0; i < o->n; i++) g.after[i] = (uint32_t)tb_uniform(&rng, 0, TB_FIRE_MAX_MS);
  g.ref_ns = calloc(o->n / FIRE_CLOCK_BLOCK + 1, sizeof *g.ref_ns);
  if (!g.ref_ns) return fail("alloc", UV_ENOMEM);

  tb_meter_start(m);
  uv_update_time(g.loop);
  g.loop_start = uv_now(g.loop);
  for (uint32_t i = 0; i < o->n; i++) {
    if (i % FIRE_CLOCK_BLOCK == 0) g.ref_ns[i / FIRE_CLOCK_BLOCK] = tb_mono_ns();
    uv_timer_init(g.loop, &g.t[i]);
    if (start(&g.t[i], i)) return -1;
  }
  g.loop_ns = tb_mono_ns();
  uv_run(g.loop, UV_RUN_DEFAULT); /* returns when no timer is active */
  tb_meter_stop(m);

  g.r.ops = o->n;
  if (g.r.fired != o->n) {
    fprintf(stderr, "uv_timers: %llu of %u fired\n", (unsigned long long)g.r.fired, o->n);
    return -1;
  }
  close_all(o->n);
  return 0;
}

int main(int argc, char **argv) {
  tb_opts o;
  if (tb_parse(argc, argv, &o, "uv_timers") != 0) return 2;
  static uv_loop_t loop;
  int rc = uv_loop_init(&loop);
  if (rc != 0) {
    fail("uv_loop_init", rc);
    return 1;
  }
  g.loop = &loop;

  tb_meter m;
  memset(&m, 0, sizeof m);
  int err = o.scenario == TB_STARTSTOP ? run_startstop(&o, &m)
            : o.scenario == TB_CHURN   ? run_churn(&o, &m)
                                       : run_fire(&o, &m);
  g.r.ok = err == 0 && verify();
  tb_report(&o, "libuv", &m, &g.r);
  uv_loop_close(&loop);
  free(g.t);
  free(g.after);
  free(g.stopped);
  free(g.fired);
  free(g.ref_ns);
  return g.r.ok ? 0 : 1;
}
