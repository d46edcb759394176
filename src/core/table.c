/* The socket handle table and the registry.
 *
 * A socket handle is (generation << 32 | index + 1). Slots live in chunks
 * that are allocated once and never freed, so looking up any 64-bit value
 * reads valid memory; the generation check under the slot's mutex rejects
 * stale and forged handles.
 *
 * A single-thread context's slots skip their mutex: s->solo names the
 * context while it holds the slot, its thread uses the slot unlocked, and
 * every other thread treats the slot as absent (a handle of it answers
 * EBADF there, a walk over the table passes it by). The mutex still guards
 * the two moments a slot changes hands, its allocation and its release,
 * so a thread that takes it reads solo as it now is. */
#include "core.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK_BITS 10u
#define CHUNK_SIZE (1u << CHUNK_BITS)
#define MAX_CHUNKS 1024u /* a million sockets */

static _Atomic(cp_sock *) g_chunks[MAX_CHUNKS];
static cp_mutex g_table_mu = CP_MUTEX_INIT; /* slot count, free list */
static uint32_t g_slots;
static cp_sock *g_free_head, *g_free_tail;
static atomic_int g_registered;

static cp_sock *slot_at(uint32_t index) {
  if (index >= MAX_CHUNKS * CHUNK_SIZE) return NULL;
  cp_sock *chunk = atomic_load_explicit(&g_chunks[index >> CHUNK_BITS], memory_order_acquire);
  return chunk ? &chunk[index & (CHUNK_SIZE - 1)] : NULL;
}

/* Called with g_table_mu held. */
static cp_sock *grow(void) {
  uint32_t c = g_slots >> CHUNK_BITS;
  if (c >= MAX_CHUNKS) return NULL;
  cp_sock *chunk = cp_calloc(CHUNK_SIZE, sizeof *chunk);
  if (!chunk) return NULL;
  for (uint32_t i = 0; i < CHUNK_SIZE; i++) {
    if (cp_mutex_init(&chunk[i].mu) != 0) {
      while (i-- > 0) cp_mutex_destroy(&chunk[i].mu);
      cp_free(chunk);
      return NULL;
    }
    chunk[i].index = g_slots + i;
  }
  atomic_store_explicit(&g_chunks[c], chunk, memory_order_release);
  /* Slot 0 of the chunk is returned; the rest go on the free list. */
  for (uint32_t i = CHUNK_SIZE - 1; i > 0; i--) {
    chunk[i].next_free = g_free_head;
    if (!g_free_head) g_free_tail = &chunk[i];
    g_free_head = &chunk[i];
  }
  g_slots += CHUNK_SIZE;
  return &chunk[0];
}

static cp_sock *take_free_slot(void) {
  cp_mutex_lock(&g_table_mu);
  cp_sock *s = g_free_head;
  if (s) {
    g_free_head = s->next_free;
    if (!g_free_head) g_free_tail = NULL;
  } else {
    s = grow();
  }
  cp_mutex_unlock(&g_table_mu);
  return s;
}

/* Freed slots go to the tail, so a handle's index is reused as late as
 * possible: a stale handle then meets a new generation, not its own. */
static void put_free_slot(cp_sock *s) {
  cp_mutex_lock(&g_table_mu);
  s->next_free = NULL;
  if (g_free_tail)
    g_free_tail->next_free = s;
  else
    g_free_head = s;
  g_free_tail = s;
  cp_mutex_unlock(&g_table_mu);
}

int cp_table_alloc(cport_ctx *ctx, cport_queue *owner, cp_sock **out) {
  cp_sock *s = take_free_slot();
  if (!s) return CPORT_ENOMEM;
  cp_mutex_lock(&s->mu);
  memset(&s->state, 0, sizeof *s - offsetof(cp_sock, state));
  s->gen = s->gen + 1u ? s->gen + 1u : 1u;
  s->id = (uint64_t)s->gen << 32 | (uint64_t)(s->index + 1u);
  s->ctx = ctx;
  s->owner = owner;
  s->next_handle = 1;
  if (cp_queue_own(owner) != CPORT_OK) {
    s->state = CP_SOCK_FREE;
    cp_mutex_unlock(&s->mu);
    put_free_slot(s);
    return CPORT_EBADF;
  }
  if (ctx->single_thread) { /* held from now on by being the context's thread */
    atomic_store_explicit(&s->solo, atomic_load(&ctx->owner), memory_order_release);
    cp_mutex_unlock(&s->mu);
  }
  *out = s;
  return CPORT_OK;
}

static uintptr_t solo_of(cp_sock *s) {
  return atomic_load_explicit(&s->solo, memory_order_acquire);
}

static bool names(const cp_sock *s, cport_socket id) {
  return s->state == CP_SOCK_OPEN && s->gen == (uint32_t)(id >> 32);
}

cp_sock *cp_sock_lock(cport_socket id) {
  uint32_t low = (uint32_t)(id & 0xffffffffu);
  if (low == 0) return NULL;
  cp_sock *s = slot_at(low - 1u);
  if (!s) return NULL;
  uintptr_t solo = solo_of(s);
  if (solo) return solo == cp_thread_token() && names(s, id) ? s : NULL;
  cp_mutex_lock(&s->mu);
  /* solo again: a single-thread context may have taken the slot meanwhile. */
  if (atomic_load_explicit(&s->solo, memory_order_relaxed) || !names(s, id)) {
    cp_mutex_unlock(&s->mu);
    return NULL;
  }
  return s;
}

void cp_sock_relock(cp_sock *s) {
  if (!solo_of(s)) cp_mutex_lock(&s->mu);
}

/* A single-thread context's slot goes back: under its mutex, so the next
 * thread to take it sees it free and no longer solo. */
static void release_solo(cp_sock *s) {
  cp_mutex_lock(&s->mu);
  s->state = CP_SOCK_FREE;
  atomic_store_explicit(&s->solo, 0, memory_order_release);
  cp_mutex_unlock(&s->mu);
}

/* A closed socket's last message (cport_close_async), once no other can
 * come: nothing of it is pending any more. */
static void send_close_message(cp_sock *s) {
  cp_op *op = s->close_op;
  s->close_op = NULL;
  op->socket = s->id;
  op->meta = s->meta;
  cp_queue_push(s->owner, op, NULL);
}

/* A zombie with nothing pending goes back to the free list. */
void cp_sock_unlock(cp_sock *s) {
  bool idle = !s->dirs[CP_RD].head && !s->dirs[CP_WR].head &&
              (!s->filtered || (!s->filtered->dirs[CP_RD].head && !s->filtered->dirs[CP_WR].head));
  if (s->state == CP_SOCK_ZOMBIE && idle && s->close_op) send_close_message(s);
  bool drained = s->state == CP_SOCK_ZOMBIE && idle && s->be_refs == 0;
  cport_queue *owner = s->owner;
  cp_op *spare = drained ? s->spare_op : NULL;
  bool solo = solo_of(s) != 0;
  if (drained) {
    if (s->filtered) s->filtered->ops->release(s);
    s->filtered = NULL;
    s->spare_op = NULL;
    if (solo)
      release_solo(s);
    else
      s->state = CP_SOCK_FREE;
  }
  if (!solo) cp_mutex_unlock(&s->mu);
  if (drained) {
    cp_op_free_cached(NULL, spare);
    atomic_fetch_sub(&owner->owned, 1);
    put_free_slot(s);
  }
}

/* Locks the slot at index whatever its state; NULL past the end, or for
 * another thread's single-thread context's slot. */
static cp_sock *lock_index(uint32_t index) {
  cp_sock *s = slot_at(index);
  if (!s) return NULL;
  uintptr_t solo = solo_of(s);
  if (solo && solo == cp_thread_token()) return s;
  cp_mutex_lock(&s->mu);
  if (atomic_load_explicit(&s->solo, memory_order_relaxed)) {
    cp_mutex_unlock(&s->mu);
    return NULL;
  }
  return s;
}

/* Undoes lock_index (and cp_sock_lock) without freeing anything. */
static void unlock_slot(cp_sock *s) {
  if (!solo_of(s)) cp_mutex_unlock(&s->mu);
}

static uint32_t slot_count(void) {
  cp_mutex_lock(&g_table_mu);
  uint32_t n = g_slots;
  cp_mutex_unlock(&g_table_mu);
  return n;
}

void cp_table_adopt_ctx(cport_ctx *ctx) {
  uintptr_t me = cp_thread_token();
  for (uint32_t i = 0, n = slot_count(); i < n; i++) {
    cp_sock *s = slot_at(i);
    cp_mutex_lock(&s->mu);
    if (solo_of(s) && s->ctx == ctx) atomic_store_explicit(&s->solo, me, memory_order_release);
    cp_mutex_unlock(&s->mu);
  }
}

void cp_table_close_ctx(cport_ctx *ctx) {
  uint32_t n = slot_count();
  for (uint32_t i = 0; i < n; i++) {
    cp_sock *s = lock_index(i);
    if (!s) continue;
    cport_socket id = s->state == CP_SOCK_OPEN && s->ctx == ctx ? s->id : 0;
    unlock_slot(s);
    if (id) cport_close(id);
  }
}

/* After the backend is gone no completion can arrive: slots still waiting
 * for one are freed without messages (their queues die with ctx too). */
void cp_table_reap_ctx(cport_ctx *ctx) {
  uint32_t n = slot_count();
  for (uint32_t i = 0; i < n; i++) {
    cp_sock *s = lock_index(i);
    if (!s) continue;
    if (s->state == CP_SOCK_ZOMBIE && s->ctx == ctx) {
      for (int dir = CP_RD; dir <= CP_WR; dir++) {
        cp_op *op;
        while ((op = s->dirs[dir].head) != NULL) {
          cp_list_remove(&s->dirs[dir], op);
          if (op->multi) cp_multi_end(op);
          if (op->owns_buf) cport_free(op->buf);
          cp_op_free(s, op);
        }
      }
      cp_op_free_cached(NULL, s->close_op); /* its queue dies with ctx */
      s->close_op = NULL;
      s->be_refs = 0;
    }
    cp_sock_unlock(s);
  }
}

int cp_table_count_ctx(cport_ctx *ctx) {
  uint32_t n = slot_count();
  int count = 0;
  for (uint32_t i = 0; i < n; i++) {
    cp_sock *s = lock_index(i);
    if (!s) continue;
    if (s->state != CP_SOCK_FREE && s->ctx == ctx) count++;
    unlock_slot(s);
  }
  return count;
}

/* ---- registry ------------------------------------------------------------ */

#ifndef CPORT_SOCKET_REGISTRY_DEFAULT
#define CPORT_SOCKET_REGISTRY_DEFAULT 1
#endif

bool cp_registry_default(void) {
  const char *env = cp_getenv("CPORT_USE_SOCKET_REGISTRY");
  if (env && (strcmp(env, "0") == 0 || strcmp(env, "false") == 0)) return false;
  if (env && (strcmp(env, "1") == 0 || strcmp(env, "true") == 0)) return true;
  return CPORT_SOCKET_REGISTRY_DEFAULT != 0;
}

void cp_registry_add(cp_sock *s, bool listed) {
  s->registered = listed;
  if (listed) atomic_fetch_add(&g_registered, 1);
}

void cp_registry_remove(cp_sock *s) {
  if (s->registered) atomic_fetch_sub(&g_registered, 1);
  s->registered = 0;
}

int cport_number_of(void) { return atomic_load(&g_registered); }

static bool matches(const cp_sock *s, const cport_filter *f) {
  if (s->state != CP_SOCK_OPEN || !s->registered) return false;
  if (!f) return true;
  return (!f->family || f->family == s->family) && (!f->type || f->type == s->type) &&
         (!f->protocol || f->protocol == cp_protocol(s)) && (!f->owner || f->owner == s->owner);
}

int cport_which_sockets(const cport_filter *filter, cport_socket *out, int max) {
  if (max < 0 || (max > 0 && !out)) return CPORT_EINVAL;
  uint32_t n = slot_count();
  int found = 0;
  for (uint32_t i = 0; i < n; i++) {
    cp_sock *s = lock_index(i);
    if (!s) continue;
    cport_socket id = matches(s, filter) ? s->id : 0;
    unlock_slot(s);
    /* The predicate runs unlocked: it may call back into cport. */
    if (!id || (filter && filter->pred && !filter->pred(id, filter->arg))) continue;
    if (found < max) out[found] = id;
    found++;
  }
  return found;
}

static const char *family_name(int family) {
  return family == CPORT_AF_INET6 ? "inet6" : family == CPORT_AF_UNIX ? "unix" : "inet";
}

static const char *state_name(const cp_sock *s) {
  if (s->listening) return "listening";
  if (s->connected) return "connected";
  if (s->connecting) return "connecting";
  return s->bound ? "bound" : "open";
}

void cport_print_sockets(FILE *f) {
  if (!f) return;
  fprintf(f, "%-20s %-6s %-6s %-10s %-10s %6s %6s %12s %12s\n", "socket", "family", "type", "mode",
          "state", "rd", "wr", "bytes_in", "bytes_out");
  uint32_t n = slot_count();
  for (uint32_t i = 0; i < n; i++) {
    cp_sock *s = lock_index(i);
    if (!s) continue;
    if (matches(s, NULL))
      fprintf(f, "%-20llu %-6s %-6s %-10s %-10s %6d %6d %12llu %12llu\n", (unsigned long long)s->id,
              family_name(s->family), s->type == CPORT_SOCK_DGRAM ? "dgram" : "stream",
              s->select_mode ? "select" : "completion", state_name(s), s->dirs[CP_RD].count,
              s->dirs[CP_WR].count, (unsigned long long)s->bytes_in,
              (unsigned long long)s->bytes_out);
    unlock_slot(s);
  }
}
