/*
 * work: cport's worker pool (cport_work) and background lookups
 * (cport_resolve) under the scenarios of bench/work.sh (work_rtt,
 * work_burst, resolve; see work_common.h), one scenario per run. Its peer,
 * measured the same way, is peers/uv_work.c (libuv's uv_queue_work and
 * uv_getaddrinfo).
 *
 *   work --scenario work_rtt|work_burst|resolve [--n N] [--inflight K]
 *        [--pool P] [--warm W]
 *
 * One context with threadpool_size P, one queue, one thread that submits
 * and collects: cport_work(q, fn, &ran[id], &handle[id]) and cport_wait
 * (up to 256 messages per call); each completion (op CPORT_OP_WORK, status
 * CPORT_OK, user_ptr the arg, handle the one cport_work returned) lets the
 * next item be submitted, so K stay in flight. resolve: cport_resolve(q,
 * "localhost", "80", {IPv4, stream}, CPORT_NOWAIT) must answer
 * CPORT_COMPLETION (a name is never answered at once); its message (op
 * CPORT_OP_RESOLVE, CPORT_MSG_ALLOCATED) carries the list in msg.buf, whose
 * every entry must be IPv4 stream and one 127.0.0.1:80; the list is freed
 * with cport_addrinfo_free inside the measured phase (libuv's peer frees
 * its answers there too).
 *
 * Exit status 1 when a check failed (a call's result, a message missing,
 * duplicated, of the wrong kind or with a wrong answer, fn not run exactly
 * once per item, a message after the last one).
 */
#include "work_common.h"

#include <cport.h>

#define WAIT_BATCH 256

typedef struct bench {
  cport_queue *q;
  wb_ids ids;
  cport_handle *handle;      /* work: by id */
  cport_handle *slot_handle; /* resolve: by slot, 0 when free */
  uint32_t *slot_id;         /* resolve: the id in each slot */
  uint32_t nslots;           /* resolve */
  cport_resolve_hints hints; /* resolve */
  uint64_t received;         /* completions counted */
} bench;

static int fail(const char *what, int rc) {
  fprintf(stderr, "work: %s: %s\n", what, cport_errname(rc));
  return -1;
}

static int die(const char *what, int rc) {
  fail(what, rc);
  return 1;
}

static void bad_msg(bench *b, const cport_msg *m, const char *why) {
  if (b->ids.bad++ < 10)
    fprintf(stderr,
            "work: bad message (%s): tag %d op %d status %s handle %llx user_ptr %p buf %p "
            "flags %x\n",
            why, (int)m->tag, (int)m->op, cport_errname(m->status), (unsigned long long)m->handle,
            m->user_ptr, m->buf, m->flags);
}

/* ---- work ---------------------------------------------------------------- */

/* The empty work item: mark it ran (its own byte, see work_common.h). */
static void work_fn(void *arg) {
  uint8_t *ran = arg;
  (*ran)++;
}

static int submit_work(bench *b, uint32_t id) {
  int rc = cport_work(b->q, work_fn, &b->ids.ran[id], &b->handle[id]);
  return rc == CPORT_COMPLETION ? 0 : fail("cport_work", rc);
}

/* One message: 1 if it completed one of our items (even a wrong one: the
 * run then fails, but goes on), 0 if it names none of them. */
static int on_work(bench *b, const cport_msg *m) {
  const uint8_t *p = m->user_ptr;
  if (m->op != CPORT_OP_WORK || !p || p < b->ids.ran || p >= b->ids.ran + b->ids.total) {
    bad_msg(b, m, "not one of ours");
    return 0;
  }
  uint32_t id = (uint32_t)(p - b->ids.ran);
  if (m->tag != CPORT_TAG_COMPLETION || m->status != CPORT_OK)
    bad_msg(b, m, "not a CPORT_OK completion");
  else if (m->handle != b->handle[id])
    bad_msg(b, m, "handle");
  else if (m->flags & CPORT_MSG_MORE)
    bad_msg(b, m, "MORE on work");
  b->ids.done[id]++;
  b->received++;
  return 1;
}

/* Ids first..first+count-1, at most inflight of them submitted and not yet
 * completed; returns when all completed. */
static int run_work(bench *b, uint32_t first, uint32_t count, uint32_t inflight) {
  cport_msg msgs[WAIT_BATCH];
  uint32_t next = first, end = first + count;
  uint64_t want = b->received + count;
  while (next < end && next - first < inflight)
    if (submit_work(b, next++)) return -1;
  while (b->received < want) {
    int n = cport_wait(b->q, msgs, WAIT_BATCH, WB_STALL_MS);
    if (n < 0) return fail("cport_wait", n);
    if (n == 0) {
      fprintf(stderr, "work: %llu of %llu completions, then nothing for %d ms\n",
              (unsigned long long)(b->received - (want - count)), (unsigned long long)count,
              WB_STALL_MS);
      return -1;
    }
    for (int i = 0; i < n; i++)
      if (on_work(b, &msgs[i]) && next < end && submit_work(b, next++)) return -1;
  }
  return 0;
}

/* ---- resolve ------------------------------------------------------------- */

/* Every entry IPv4 stream, and one of them 127.0.0.1:80. */
static int good_answer(const cport_addrinfo *list) {
  static const uint8_t loopback[4] = {127, 0, 0, 1};
  int found = 0;
  if (!list) return 0;
  for (const cport_addrinfo *ai = list; ai; ai = ai->next) {
    if (ai->addr.family != CPORT_AF_INET || ai->type != CPORT_SOCK_STREAM) return 0;
    if (ai->addr.port == WB_PORT && memcmp(ai->addr.ip, loopback, 4) == 0) found = 1;
  }
  return found;
}

static int submit_resolve(bench *b, uint32_t slot, uint32_t id) {
  cport_addrinfo *now = NULL;
  int rc = cport_resolve(b->q, WB_HOST, WB_SERVICE, &b->hints, CPORT_NOWAIT, &now,
                         &b->slot_handle[slot]);
  if (rc == CPORT_COMPLETION) {
    b->slot_id[slot] = id;
    return 0;
  }
  if (rc == CPORT_OK) {
    cport_addrinfo_free(now);
    fprintf(stderr, "work: cport_resolve(\"%s\") answered at once, not in the background\n",
            WB_HOST);
    return -1;
  }
  return fail("cport_resolve", rc);
}

/* One message: the slot it ended (freed: handle 0), or -1 if it names none. */
static int on_resolve(bench *b, const cport_msg *m) {
  uint32_t slot = 0;
  while (slot < b->nslots && (b->slot_handle[slot] == 0 || b->slot_handle[slot] != m->handle))
    slot++;
  if (slot == b->nslots || m->op != CPORT_OP_RESOLVE) {
    bad_msg(b, m, "not one of ours");
    if (m->buf && (m->flags & CPORT_MSG_ALLOCATED)) cport_addrinfo_free(m->buf);
    return -1;
  }
  uint32_t id = b->slot_id[slot];
  b->slot_handle[slot] = 0;
  if (m->tag != CPORT_TAG_COMPLETION || m->status != CPORT_OK)
    bad_msg(b, m, "not a CPORT_OK completion");
  else if (!(m->flags & CPORT_MSG_ALLOCATED) || (m->flags & CPORT_MSG_MORE))
    bad_msg(b, m, "flags");
  else if (!good_answer(m->buf))
    bad_msg(b, m, "answer without 127.0.0.1:80, or not all IPv4 stream");
  else
    b->ids.ran[id]++;
  if (m->buf) cport_addrinfo_free(m->buf);
  b->ids.done[id]++;
  b->received++;
  return (int)slot;
}

static int run_resolve(bench *b, uint32_t first, uint32_t count, uint32_t inflight) {
  cport_msg msgs[WAIT_BATCH];
  uint32_t next = first, end = first + count;
  uint64_t want = b->received + count;
  if (inflight > b->nslots) inflight = b->nslots;
  for (uint32_t s = 0; s < inflight && next < end; s++)
    if (submit_resolve(b, s, next++)) return -1;
  while (b->received < want) {
    int n = cport_wait(b->q, msgs, WAIT_BATCH, WB_STALL_MS);
    if (n < 0) return fail("cport_wait", n);
    if (n == 0) {
      fprintf(stderr, "work: %llu of %llu lookups answered, then nothing for %d ms\n",
              (unsigned long long)(b->received - (want - count)), (unsigned long long)count,
              WB_STALL_MS);
      return -1;
    }
    for (int i = 0; i < n; i++) {
      int slot = on_resolve(b, &msgs[i]);
      if (slot >= 0 && next < end && submit_resolve(b, (uint32_t)slot, next++)) return -1;
    }
  }
  return 0;
}

/* ---- the run -------------------------------------------------------------- */

/* Nothing more may arrive after the last completion. */
static int no_extra(bench *b) {
  cport_msg extra;
  int n = cport_wait(b->q, &extra, 1, 50);
  if (n == 0) return 1;
  fprintf(stderr, "work: a message after the last completion (wait returned %d)\n", n);
  if (n > 0) bad_msg(b, &extra, "extra");
  return 0;
}

int main(int argc, char **argv) {
  wb_opts o;
  if (wb_parse(argc, argv, &o, "work") != 0) return 2;
  bench b;
  memset(&b, 0, sizeof b);
  uint32_t total = o.warm + o.n;
  if (wb_ids_alloc(&b.ids, total)) return die("alloc", CPORT_ENOMEM);
  if (o.scenario == WB_RESOLVE) {
    b.nslots = o.inflight;
    b.slot_handle = calloc(b.nslots, sizeof *b.slot_handle);
    b.slot_id = calloc(b.nslots, sizeof *b.slot_id);
    if (!b.slot_handle || !b.slot_id) return die("alloc", CPORT_ENOMEM);
    b.hints.family = CPORT_AF_INET;
    b.hints.type = CPORT_SOCK_STREAM;
  } else {
    b.handle = calloc(total, sizeof *b.handle);
    if (!b.handle) return die("alloc", CPORT_ENOMEM);
    memset(b.handle, 0, (size_t)total * sizeof *b.handle); /* touched before the phase */
  }

  cport_ctx_options opts;
  memset(&opts, 0, sizeof opts);
  opts.threadpool_size = (int)o.pool;
  cport_ctx *ctx = NULL;
  int rc = cport_ctx_create(&ctx, &opts);
  if (rc == CPORT_OK) rc = cport_queue_create(ctx, &b.q);
  if (rc != CPORT_OK) return die("setup", rc);

  int (*phase)(bench *, uint32_t, uint32_t, uint32_t) =
      o.scenario == WB_RESOLVE ? run_resolve : run_work;
  /* Warm-up: work all at once (every pool thread starts), lookups K at a
   * time. Unmeasured, checked. */
  uint32_t warm_inflight = o.scenario == WB_RESOLVE ? o.inflight : (o.warm ? o.warm : 1);
  wb_meter m;
  memset(&m, 0, sizeof m);
  wb_result r;
  memset(&r, 0, sizeof r);
  int err = o.warm ? phase(&b, 0, o.warm, warm_inflight) : 0;
  if (!err) {
    wb_meter_start(&m);
    err = phase(&b, o.warm, o.n, o.inflight);
    wb_meter_stop(&m);
  }
  r.ops = o.n;
  int extra_ok = err == 0 && no_extra(&b);
  r.ok = wb_verify(&b.ids, &r, "work") && err == 0 && extra_ok;
  fprintf(stderr, "work: cport backend %s\n", cport_backend_name(cport_ctx_backend(ctx)));
  wb_report(&o, "cport", &m, &r);
  cport_ctx_destroy(ctx);
  wb_ids_free(&b.ids);
  free(b.handle);
  free(b.slot_handle);
  free(b.slot_id);
  return r.ok ? 0 : 1;
}
