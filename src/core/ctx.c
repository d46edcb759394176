/* Contexts: choosing a backend, creating and destroying its state. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_ACCEPTS_PER_LISTENER 32
/* How long cport_ctx_destroy waits for the OS to hand back buffers of
 * operations that were cancelled by closing their sockets. */
#define DESTROY_DRAIN_MS 5000u

/* Contexts created and not yet destroyed, counted from before a context's
 * first allocation to after its last free (cport_set_allocator). */
static atomic_int g_live;

int cp_ctx_live(void) { return atomic_load(&g_live); }

CP_THREAD_LOCAL char cp_thread_mark;

static const cp_backend *backend_for(cport_backend_id id) {
  switch (id) {
#ifdef _WIN32
  case CPORT_BACKEND_IOCP: return &cp_backend_iocp;
#else
  case CPORT_BACKEND_EPOLL: return &cp_backend_epoll;
#endif
#ifdef CPORT_HAVE_IO_URING
  case CPORT_BACKEND_IO_URING: return &cp_backend_io_uring;
#endif
  default: return NULL;
  }
}

static cport_backend_id default_backend(void) {
  const char *env = cp_getenv("CPORT_BACKEND");
  if (env) {
    for (int id = CPORT_BACKEND_EPOLL; id <= CPORT_BACKEND_IOCP; id++)
      if (strcmp(env, cport_backend_name((cport_backend_id)id)) == 0) return (cport_backend_id)id;
  }
#ifdef _WIN32
  return CPORT_BACKEND_IOCP;
#else
  return CPORT_BACKEND_EPOLL;
#endif
}

const char *cport_backend_name(cport_backend_id id) {
  switch (id) {
  case CPORT_BACKEND_AUTO: return "auto";
  case CPORT_BACKEND_EPOLL: return "epoll";
  case CPORT_BACKEND_IO_URING: return "io_uring";
  case CPORT_BACKEND_IOCP: return "iocp";
  }
  return "unknown";
}

/* Compiled in is not enough: io_uring may be disabled by the kernel or a
 * seccomp policy, so availability is a real context that starts. */
int cport_backend_available(cport_backend_id id) {
  if (id == CPORT_BACKEND_AUTO) return 1;
  cport_ctx_options opts = {.backend = id};
  cport_ctx *ctx;
  if (cport_ctx_create(&ctx, &opts) != CPORT_OK) return 0;
  cport_ctx_destroy(ctx);
  return 1;
}

int cport_ctx_create(cport_ctx **out, const cport_ctx_options *opts) {
  if (!out) return CPORT_EINVAL;
  *out = NULL;
  cport_ctx_options defaults = {0};
  if (!opts) opts = &defaults;
  unsigned threads = cp_jobs_threads(opts->threadpool_size);
  if (opts->accepts_per_listener < 0 || threads == 0) return CPORT_EINVAL;
  cport_backend_id id = opts->backend == CPORT_BACKEND_AUTO ? default_backend() : opts->backend;
  const cp_backend *be = backend_for(id);
  if (!be) return CPORT_ENOTSUP;
  atomic_fetch_add(&g_live, 1);
  cport_ctx *ctx = cp_calloc(1, sizeof *ctx);
  if (!ctx) {
    atomic_fetch_sub(&g_live, 1);
    return CPORT_ENOMEM;
  }
  ctx->be = be;
  ctx->defer = opts->defer != 0;
  ctx->single_thread = opts->single_thread != 0;
  atomic_init(&ctx->owner, cp_thread_token());
  ctx->accepts_per_listener =
      opts->accepts_per_listener ? opts->accepts_per_listener : DEFAULT_ACCEPTS_PER_LISTENER;
  int rc = cp_timers_create(&ctx->timers, ctx);
  if (rc == CPORT_OK) rc = cp_jobs_create(&ctx->jobs, threads);
  if (rc == CPORT_OK && cp_mutex_init(&ctx->mu) != 0) rc = CPORT_ENOMEM;
  if (rc == CPORT_OK && cp_mutex_init(&ctx->inbox_mu) != 0) {
    cp_mutex_destroy(&ctx->mu);
    rc = CPORT_ENOMEM;
  }
  if (rc == CPORT_OK && (rc = be->ctx_init(ctx)) != CPORT_OK) {
    cp_mutex_destroy(&ctx->inbox_mu);
    cp_mutex_destroy(&ctx->mu);
  }
  if (rc != CPORT_OK) {
    cp_jobs_free(ctx->jobs);
    cp_timers_free(ctx->timers);
    cp_free(ctx);
    atomic_fetch_sub(&g_live, 1);
    return rc;
  }
  *out = ctx;
  return CPORT_OK;
}

/* Polls until every socket of ctx has released its slot, or the bound. */
static void drain(cport_ctx *ctx) {
  cport_queue *q;
  if (cp_queue_create(ctx, &q) != CPORT_OK) return;
  uint64_t deadline = cp_now_ms() + DESTROY_DRAIN_MS;
  cport_msg discard[64];
  while (cp_table_count_ctx(ctx) > 0 && cp_now_ms() < deadline) {
    int n = cport_wait(q, discard, 64, 50);
    for (int i = 0; i < n; i++)
      if (discard[i].flags & CPORT_MSG_ALLOCATED) cport_free(discard[i].buf);
  }
  cp_queue_free(q);
}

void cport_ctx_destroy(cport_ctx *ctx) {
  if (!ctx) return;
  /* Destroy belongs on a single-thread context's own thread, like every
   * call. Should another one destroy it, that thread takes the sockets
   * over, so that none is left pointing at the freed context (io_uring's
   * single-issuer ring still refuses that thread: the drain then runs to
   * its bound). */
  if (ctx->single_thread && !cp_ctx_owned_here(ctx)) {
    atomic_store_explicit(&ctx->owner, cp_thread_token(), memory_order_relaxed);
    cp_table_adopt_ctx(ctx);
  }
  cp_jobs_free(ctx->jobs); /* first: running work may still use sockets and queues */
  cp_inbox_drain(ctx);     /* what the workers ended meanwhile, to its queues */
  cp_table_close_ctx(ctx);
  drain(ctx);
  ctx->be->ctx_free(ctx);
  cp_table_reap_ctx(ctx);
  cp_timers_free(ctx->timers); /* armed timers' messages go nowhere now */
  while (ctx->queues) cp_queue_free(ctx->queues);
  cp_mutex_destroy(&ctx->inbox_mu);
  cp_mutex_destroy(&ctx->mu);
  cp_free(ctx);
  atomic_fetch_sub(&g_live, 1);
}

cport_backend_id cport_ctx_backend(const cport_ctx *ctx) {
  return ctx ? ctx->be->id : CPORT_BACKEND_AUTO;
}

void *cp_ctx_backend(cport_ctx *ctx) { return ctx->be_state; }
void cp_ctx_set_backend(cport_ctx *ctx, void *state) { ctx->be_state = state; }
int cp_ctx_accepts_per_listener(cport_ctx *ctx) { return ctx->accepts_per_listener; }
bool cp_ctx_single_thread(cport_ctx *ctx) { return ctx->single_thread; }
