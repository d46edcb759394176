/*
 * timers: cport's timers under the three scenarios of bench/timers.sh
 * (startstop, churn, fire; see timers_common.h), one scenario per run.
 * Its peer, measured the same way with the same random numbers, is
 * peers/uv_timers.c (libuv's uv_timer_t).
 *
 *   timers --scenario startstop|churn|fire [--n N] [--live N] [--seed S]
 *
 * cport ends every handle with exactly one message: a cancelled timer's is
 * an abort (CPORT_ECANCELED), which cport_queue_cancel queues at once, so
 * the measured phase of startstop and churn includes draining those aborts
 * with cport_wait (after every TB_DRAIN_EVERY cancels, 256 messages per
 * call), as a program using cport must. A timer whose time came while the
 * phase ran (cport_wait drives the timers) fires instead: cancel says
 * CPORT_ENOTFOUND and its one message is the completion; the run counts
 * those ("fired") and checks each handle got exactly one final message of
 * the right kind.
 *
 * Exit status 1 when a check failed (a call's result, a message missing,
 * duplicated or of the wrong kind, a timer that fired early).
 */
#include "timers_common.h"

#include <cport.h>

#define WAIT_BATCH 256
/* fire: one CLOCK_MONOTONIC reading per this many starts, taken before
 * them; a timer must not fire before its block's reading + its timeout. */
#define FIRE_CLOCK_BLOCK 256u

enum { CANCEL_NONE = 0, CANCEL_OK = 1, CANCEL_NOTFOUND = 2 };
enum { FINAL_NONE = 0, FINAL_ABORT = 1, FINAL_FIRED = 2 };

typedef struct bench {
  cport_queue *q;
  uint32_t ntimers;     /* ids 0..ntimers-1 (msg.user) */
  cport_handle *handle; /* by id */
  uint8_t *cancel_rc;   /* by id: CANCEL_* */
  uint8_t *final;       /* by id: FINAL_* */
  uint32_t *after;      /* by id: the timeout, ms */
  uint64_t *ref_ns;     /* fire: by block, CLOCK_MONOTONIC before its starts */
  uint64_t loop_ns;     /* fire: CLOCK_MONOTONIC after the last start */
  uint64_t received;    /* final messages seen */
  uint64_t bad;         /* messages that broke a rule */
  tb_result r;
} bench;

static int fail(const char *what, int rc) {
  fprintf(stderr, "timers: %s: %s\n", what, cport_errname(rc));
  return -1;
}

static void bad_msg(bench *b, const cport_msg *m, const char *why) {
  if (b->bad++ < 10)
    fprintf(stderr,
            "timers: bad message (%s): tag %d op %d status %s user %llu handle %llx flags %x\n",
            why, (int)m->tag, (int)m->op, cport_errname(m->status), (unsigned long long)m->user,
            (unsigned long long)m->handle, m->flags);
}

/* One message: the final one of timer m->user. */
static void on_msg(bench *b, const cport_msg *m, uint64_t now_ns) {
  uint64_t id = m->user;
  if (m->op != CPORT_OP_TIMER || id >= b->ntimers) return bad_msg(b, m, "not one of ours");
  if (m->handle != b->handle[id]) return bad_msg(b, m, "handle");
  if (m->flags & CPORT_MSG_MORE) return bad_msg(b, m, "MORE on a one-shot timer");
  if (b->final[id] != FINAL_NONE) return bad_msg(b, m, "second final message");
  if (m->tag == CPORT_TAG_ABORT && m->status == CPORT_ECANCELED) {
    b->final[id] = FINAL_ABORT;
    b->r.cancelled++;
  } else if (m->tag == CPORT_TAG_COMPLETION && m->status == CPORT_OK) {
    b->final[id] = FINAL_FIRED;
    b->r.fired++;
    if (b->ref_ns) {
      uint64_t due = b->ref_ns[id / FIRE_CLOCK_BLOCK] + (uint64_t)b->after[id] * 1000000u;
      if (now_ns < due) {
        b->r.early_call++;
        if (b->r.early++ < 10)
          fprintf(stderr, "timers: timer %llu (%u ms) fired %.3f ms early\n",
                  (unsigned long long)id, b->after[id], (double)(due - now_ns) / 1e6);
      } else {
        /* Late: counted from when the loop could first run it (the starts
         * take a while, and none can fire before they are all made). */
        uint64_t from = due > b->loop_ns ? due : b->loop_ns;
        if (now_ns > from && (double)(now_ns - from) / 1e6 > b->r.max_late_ms)
          b->r.max_late_ms = (double)(now_ns - from) / 1e6;
      }
    }
  } else {
    return bad_msg(b, m, "neither ECANCELED abort nor completion");
  }
  b->received++;
}

/* Take every message already there (cport_wait also runs due timers). */
static int drain(bench *b) {
  cport_msg msgs[WAIT_BATCH];
  for (;;) {
    int n = cport_wait(b->q, msgs, WAIT_BATCH, CPORT_NOWAIT);
    if (n < 0) return fail("wait", n);
    for (int i = 0; i < n; i++) on_msg(b, &msgs[i], 0);
    if (n < WAIT_BATCH) return 0;
  }
}

/* Wait (1 s at most between messages) until `want` final messages came. */
static int drain_until(bench *b, uint64_t want) {
  cport_msg msgs[WAIT_BATCH];
  while (b->received < want) {
    int n = cport_wait(b->q, msgs, WAIT_BATCH, 1000);
    if (n < 0) return fail("wait", n);
    if (n == 0) {
      fprintf(stderr, "timers: %llu of %llu final messages, then nothing for 1 s\n",
              (unsigned long long)b->received, (unsigned long long)want);
      return -1;
    }
    for (int i = 0; i < n; i++) on_msg(b, &msgs[i], 0);
  }
  return 0;
}

static int start(bench *b, uint32_t id) {
  int rc = cport_timer_start(b->q, b->after[id], 0, id, NULL, &b->handle[id]);
  return rc == CPORT_OK ? 0 : fail("cport_timer_start", rc);
}

static int cancel(bench *b, uint32_t id) {
  int rc = cport_queue_cancel(b->q, b->handle[id]);
  if (rc == CPORT_OK)
    b->cancel_rc[id] = CANCEL_OK;
  else if (rc == CPORT_ENOTFOUND)
    b->cancel_rc[id] = CANCEL_NOTFOUND; /* it fired meanwhile */
  else
    return fail("cport_queue_cancel", rc);
  return 0;
}

/* After the phase: every id exactly one final message, of the kind its
 * cancel's result calls for, and nothing more in the queue. */
static int verify(bench *b) {
  int ok = b->bad == 0;
  uint64_t wrong = 0;
  for (uint32_t id = 0; id < b->ntimers; id++) {
    uint8_t want = b->cancel_rc[id] == CANCEL_OK ? FINAL_ABORT : FINAL_FIRED;
    if (b->final[id] != want && wrong++ < 10) {
      fprintf(stderr, "timers: timer %u: cancel %s, final message %s\n", id,
              b->cancel_rc[id] == CANCEL_OK         ? "OK"
              : b->cancel_rc[id] == CANCEL_NOTFOUND ? "ENOTFOUND"
                                                    : "not called",
              b->final[id] == FINAL_ABORT   ? "abort"
              : b->final[id] == FINAL_FIRED ? "fired"
                                            : "none");
    }
  }
  cport_msg extra;
  int n = cport_wait(b->q, &extra, 1, 50);
  if (n != 0) {
    fprintf(stderr, "timers: a message after the last final one (wait returned %d)\n", n);
    if (n > 0) bad_msg(b, &extra, "extra");
    ok = 0;
  }
  if (wrong) ok = 0;
  if (b->r.early) ok = 0;
  return ok;
}

static int alloc_ids(bench *b, uint32_t n) {
  b->ntimers = n;
  b->handle = calloc(n, sizeof *b->handle);
  b->cancel_rc = calloc(n, 1);
  b->final = calloc(n, 1);
  b->after = malloc((size_t)n * sizeof *b->after);
  if (!b->handle || !b->cancel_rc || !b->final || !b->after) return fail("alloc", CPORT_ENOMEM);
  /* Touch every page now, so the measured phase pays for cport's memory
   * only (libuv's peer does the same with its handles). */
  memset(b->handle, 0, (size_t)n * sizeof *b->handle);
  memset(b->cancel_rc, 0, n);
  memset(b->final, 0, n);
  return 0;
}

/* ---- scenarios ----------------------------------------------------------- */

static int run_startstop(bench *b, const tb_opts *o, tb_meter *m) {
  uint64_t rng = o->seed;
  if (alloc_ids(b, o->n)) return -1;
  for (uint32_t i = 0; i < o->n; i++)
    b->after[i] = (uint32_t)tb_uniform(&rng, TB_STARTSTOP_MIN_MS, TB_STARTSTOP_MAX_MS);
  uint32_t *order = tb_permutation(o->n, &rng);
  if (!order) return fail("alloc", CPORT_ENOMEM);

  tb_meter_start(m);
  for (uint32_t i = 0; i < o->n; i++)
    if (start(b, i)) return -1;
  for (uint32_t k = 0; k < o->n; k++) {
    if (cancel(b, order[k])) return -1;
    if ((k + 1) % TB_DRAIN_EVERY == 0 && drain(b)) return -1;
  }
  if (drain_until(b, o->n)) return -1;
  tb_meter_stop(m);

  b->r.ops = o->n;
  free(order);
  return 0;
}

static int run_churn(bench *b, const tb_opts *o, tb_meter *m) {
  uint64_t rng = o->seed;
  uint32_t live = o->live, total = o->live + o->n;
  if (alloc_ids(b, total)) return -1;
  for (uint32_t i = 0; i < total; i++)
    b->after[i] = (uint32_t)tb_uniform(&rng, TB_STARTSTOP_MIN_MS, TB_STARTSTOP_MAX_MS);
  uint32_t *pick = malloc((size_t)o->n * sizeof *pick); /* the slot each round replaces */
  uint32_t *slot = malloc((size_t)live * sizeof *slot); /* the id live in each slot */
  if (!pick || !slot) return fail("alloc", CPORT_ENOMEM);
  for (uint32_t k = 0; k < o->n; k++) pick[k] = (uint32_t)(tb_rand(&rng) % live);
  for (uint32_t i = 0; i < live; i++) slot[i] = i;

  tb_meter_start(m);
  for (uint32_t i = 0; i < live; i++)
    if (start(b, i)) return -1;
  for (uint32_t k = 0; k < o->n; k++) {
    uint32_t s = pick[k], id = live + k;
    if (cancel(b, slot[s])) return -1;
    slot[s] = id;
    if (start(b, id)) return -1;
    if ((k + 1) % TB_DRAIN_EVERY == 0 && drain(b)) return -1;
  }
  if (drain_until(b, o->n)) return -1;
  tb_meter_stop(m);

  /* Not measured: end the timers still live, for the checks. */
  for (uint32_t i = 0; i < live; i++)
    if (cancel(b, slot[i])) return -1;
  if (drain_until(b, total)) return -1;
  b->r.ops = o->n;
  free(pick);
  free(slot);
  return 0;
}

static int run_fire(bench *b, const tb_opts *o, tb_meter *m) {
  uint64_t rng = o->seed;
  if (alloc_ids(b, o->n)) return -1;
  for (uint32_t i = 0; i < o->n; i++) b->after[i] = (uint32_t)tb_uniform(&rng, 0, TB_FIRE_MAX_MS);
  b->ref_ns = calloc(o->n / FIRE_CLOCK_BLOCK + 1, sizeof *b->ref_ns);
  if (!b->ref_ns) return fail("alloc", CPORT_ENOMEM);
  /* They all fire: no cancel, and each must end with its completion. */
  memset(b->cancel_rc, CANCEL_NOTFOUND, o->n);

  cport_msg msgs[WAIT_BATCH];
  tb_meter_start(m);
  for (uint32_t i = 0; i < o->n; i++) {
    if (i % FIRE_CLOCK_BLOCK == 0) b->ref_ns[i / FIRE_CLOCK_BLOCK] = tb_mono_ns();
    if (start(b, i)) return -1;
  }
  b->loop_ns = tb_mono_ns();
  while (b->received < o->n) {
    int n = cport_wait(b->q, msgs, WAIT_BATCH, 5000);
    if (n < 0) return fail("wait", n);
    if (n == 0) {
      fprintf(stderr, "timers: %llu of %u fired, then nothing for 5 s\n",
              (unsigned long long)b->received, o->n);
      return -1;
    }
    for (int i = 0; i < n; i++) on_msg(b, &msgs[i], tb_mono_ns());
  }
  tb_meter_stop(m);
  b->r.ops = o->n;
  return 0;
}

int main(int argc, char **argv) {
  tb_opts o;
  if (tb_parse(argc, argv, &o, "timers") != 0) return 2;
  cport_ctx *ctx = NULL;
  bench b;
  memset(&b, 0, sizeof b);
  int rc = cport_ctx_create(&ctx, NULL);
  if (rc == CPORT_OK) rc = cport_queue_create(ctx, &b.q);
  if (rc != CPORT_OK) {
    fail("setup", rc);
    return 1;
  }

  tb_meter m;
  memset(&m, 0, sizeof m);
  int err = o.scenario == TB_STARTSTOP ? run_startstop(&b, &o, &m)
            : o.scenario == TB_CHURN   ? run_churn(&b, &o, &m)
                                       : run_fire(&b, &o, &m);
  b.r.ok = err == 0 && verify(&b);
  fprintf(stderr, "timers: cport backend %s\n", cport_backend_name(cport_ctx_backend(ctx)));
  tb_report(&o, "cport", &m, &b.r);
  cport_ctx_destroy(ctx);
  free(b.handle);
  free(b.cancel_rc);
  free(b.final);
  free(b.after);
  free(b.ref_ns);
  return b.r.ok ? 0 : 1;
}
