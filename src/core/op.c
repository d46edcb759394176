/* Operations: their memory, their per-direction FIFO lists, and turning
 * their ends into messages in posting order. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Only connects and datagram ops carry an address; a stream socket's other
 * ops are allocated without that tail, which is half of a cp_op. */
#define OP_SIZE_NO_ADDR offsetof(cp_op, addr)

/* A call that finishes at once needs no record on a backend with try_now
 * (io.c); records of the others recycle without malloc in two places. Each
 * socket keeps one spare, under its own lock: the record of an op that
 * made no message (IOCP's calls that finished at once, cancelled select
 * waits) serves the socket's next call. Each queue keeps the ops whose messages cport_wait
 * took, under the queue's lock, which cport_wait holds anyway. Delivering
 * a message refills its socket's spare from that cache in the same locked
 * step, since a socket that gets a message usually makes its next call; a
 * socket without a spare takes one from the queue (a lock) or malloc.
 * malloc's own per-thread cache holds 7 chunks of a size, fewer than one
 * batch of messages; a per-thread cache would need a hook at thread exit,
 * which a library that may be unloaded cannot leave behind. */
#define QUEUE_CACHE_MAX 64

static bool wants_addr(const cp_sock *s, uint8_t kind) {
  return s->type == CPORT_SOCK_DGRAM || kind == CPORT_OP_CONNECT;
}

cp_op *cp_op_take_cached(cport_queue *q, bool has_addr) {
  cp_op *op = q->free_ops[has_addr];
  if (op) {
    q->free_ops[has_addr] = op->next;
    q->free_op_count[has_addr]--;
  }
  return op;
}

static cp_op *pop_cached(cport_queue *q, bool has_addr) {
  cp_ctx_lock(q->ctx, &q->mu);
  cp_op *op = cp_op_take_cached(q, has_addr);
  cp_ctx_unlock(q->ctx, &q->mu);
  return op;
}

/* Memory for an op: the socket's spare, q's cache, or malloc. */
static cp_op *op_get(cp_sock *s, cport_queue *q, bool has_addr) {
  cp_op *op = s ? s->spare_op : NULL;
  if (op && op->has_addr == has_addr)
    s->spare_op = NULL;
  else if ((op = pop_cached(q, has_addr)) == NULL &&
           (op = cp_malloc(has_addr ? sizeof *op : OP_SIZE_NO_ADDR)) == NULL)
    return NULL;
  return op;
}

/* Everything a prepared op carries, from kind up to be: the fields a
 * record copies from its stack-built prototype. */
#define OP_BODY_START offsetof(cp_op, kind)
#define OP_BODY_LEN (offsetof(cp_op, be) - OP_BODY_START)
_Static_assert(offsetof(cp_op, handle) < OP_BODY_START && offsetof(cp_op, socket) < OP_BODY_START,
               "links and identity come before an op's body");

/* A record of s holding proto's body, with the given handle. */
static cp_op *record_of(cp_sock *s, const cp_op *proto, cport_handle handle) {
  bool has_addr = wants_addr(s, proto->kind);
  cp_op *op = op_get(s, proto->dest ? proto->dest : s->owner, has_addr);
  if (!op) return NULL;
  memcpy((char *)op + OP_BODY_START, (const char *)proto + OP_BODY_START, OP_BODY_LEN);
  op->has_addr = has_addr;
  op->sock = s;
  op->handle = handle;
  if (has_addr) op->addr = proto->addr;
  return op;
}

cp_op *cp_op_record(cp_sock *s, const cp_op *proto) {
  cp_op *op = record_of(s, proto, s->next_handle);
  if (op) s->next_handle++;
  return op;
}

cp_op *cp_op_copy(cp_sock *s, const cp_op *op) { return record_of(s, op, op->handle); }

cp_op *cp_op_blank(void) {
  cp_op *op = cp_malloc(OP_SIZE_NO_ADDR);
  if (op) op->has_addr = 0;
  return op;
}

/* Short, without addr: an armed timer holds one until it ends, and a
 * million timers would otherwise pin twice the memory. */
static cp_op *queue_op_init(cp_op *op, uint8_t kind, uint64_t value, void *ptr) {
  memset(op, 0, offsetof(cp_op, be));
  op->has_addr = 0;
  op->kind = kind;
  op->tag = CPORT_TAG_USER;
  op->user = value;
  op->buf = ptr;
  return op;
}

cp_op *cp_op_alloc_queue(cport_queue *q, uint8_t kind, uint64_t value, void *ptr) {
  cp_op *op = op_get(NULL, q, false);
  return op ? queue_op_init(op, kind, value, ptr) : NULL;
}

cp_op *cp_op_alloc_remote(uint8_t kind, uint64_t value, void *ptr) {
  cp_op *op = cp_malloc(OP_SIZE_NO_ADDR);
  return op ? queue_op_init(op, kind, value, ptr) : NULL;
}

void cp_op_free(cp_sock *s, cp_op *op) {
  if (s->spare_op) cp_op_free_cached(NULL, s->spare_op);
  s->spare_op = op;
}

void cp_op_free_cached(cport_queue *q, cp_op *op) {
  if (!op) return;
  int i = op->has_addr;
  if (!q || q->free_op_count[i] >= QUEUE_CACHE_MAX) {
    cp_free(op);
    return;
  }
  op->next = q->free_ops[i];
  q->free_ops[i] = op;
  q->free_op_count[i]++;
}

void cp_list_append(cp_list *l, cp_op *op) {
  op->next = NULL;
  op->prev = l->tail;
  if (l->tail)
    l->tail->next = op;
  else
    l->head = op;
  l->tail = op;
  l->count++;
}

void cp_list_remove(cp_list *l, cp_op *op) {
  if (op->prev)
    op->prev->next = op->next;
  else
    l->head = op->next;
  if (op->next)
    op->next->prev = op->prev;
  else
    l->tail = op->prev;
  op->next = op->prev = NULL;
  l->count--;
}

cp_op *cp_dir_active(cp_sock *s, int dir) {
  for (cp_op *op = s->dirs[dir].head; op; op = op->next)
    if (op->state == CP_OP_PENDING) return op;
  return NULL;
}

void cp_dir_advance(cp_sock *s, int dir, bool ready) {
  const cp_backend *be = s->ctx->be;
  cp_op *op;
  if (s->state != CP_SOCK_OPEN) return;
  while ((op = cp_dir_active(s, dir)) != NULL && !op->started && !op->paused) {
    int rc = be->attempt(s, op, ready);
    if (rc == CP_PENDING) return;
    cp_op_done(op, rc); /* may free op */
  }
}

void cp_op_cancel_now(cp_sock *s, cp_op *op) {
  int dir = op->dir; /* op is freed once delivered */
  cp_op_done(op, CPORT_ECANCELED);
  if (s->ctx->be->attempt) cp_dir_advance(s, dir, false);
}

static cp_op *first_unheld(cp_sock *s, int dir) {
  for (cp_op *op = s->dirs[dir].head; op; op = op->next)
    if (op->state == CP_OP_PENDING && !op->started) return op;
  return NULL;
}

void cp_sock_drain(cp_sock *s) {
  for (int dir = CP_RD; dir <= CP_WR; dir++) {
    /* Rescan each time: delivery frees ops from the head. */
    cp_op *op;
    while ((op = first_unheld(s, dir)) != NULL) cp_op_done(op, CPORT_ECLOSED);
  }
}

cp_op *cp_op_find(cp_sock *s, cport_handle handle) {
  for (int dir = CP_RD; dir <= CP_WR; dir++)
    for (cp_op *op = cp_user_dirs(s)[dir].head; op; op = op->next)
      if (op->handle == handle && op->state == CP_OP_PENDING) return op;
  return NULL;
}

static void count_io(cp_sock *s, const cp_op *op) {
  if (op->kind == CPORT_OP_ACCEPT || op->kind == CPORT_OP_CONNECT || op->status < 0) return;
  if (op->dir == CP_RD) {
    s->bytes_in += op->done;
    s->reads++;
  } else {
    s->bytes_out += op->done;
    s->writes++;
  }
}

/* What an op that did its work changes in its socket: connect state, the
 * binding the OS made on connect or a first send, the counters. */
void cp_op_effects(cp_sock *s, const cp_op *op) {
  if (op->kind == CPORT_OP_CONNECT) {
    s->connecting = 0;
    if (op->status == CPORT_OK) s->connected = 1;
  }
  if (op->status == CPORT_OK && op->dir == CP_WR) s->bound = 1; /* the OS bound it */
  count_io(s, op);
}

/* The message an ended op makes, and whether it makes one at all. */
static bool make_message(const cp_sock *s, cp_op *op) {
  /* cport_cancel said no message follows; a deadline never did. */
  if (op->select && op->cancelled && !op->timed_out) return false;
  op->tag = op->select ? CPORT_TAG_SELECT : CPORT_TAG_COMPLETION;
  if (op->status < 0 && op->closed) {
    op->tag = CPORT_TAG_ABORT;
    op->status = CPORT_ECLOSED;
  } else if (op->status < 0 && op->cancelled) {
    op->tag = CPORT_TAG_ABORT;
    op->status = op->timed_out ? CPORT_ETIMEDOUT : CPORT_ECANCELED;
  }
  if (op->select) op->done = 0;
  if (op->owns_buf) op->msg_flags |= CPORT_MSG_ALLOCATED; /* the buffer is the user's now */
  if (s->debug)
    fprintf(stderr, "cport: socket %llu handle %llu op %d tag %d status %s bytes %zu\n",
            (unsigned long long)s->id, (unsigned long long)op->handle, (int)op->kind, (int)op->tag,
            cport_errname(op->status), op->done);
  return true;
}

/* Hands op to its queue, which frees it once the message is taken. */
void cp_op_deliver(cp_sock *s, cp_op *op) {
  if (op->raw) {
    s->filtered->ops->raw_done(s, op);
    return;
  }
  if (op->deadline) cp_deadline_disarm(s, op);
  if (!make_message(s, op)) {
    cp_op_free(s, op);
    return;
  }
  cport_queue *q = op->dest ? op->dest : s->owner;
  op->socket = s->id;
  op->meta = s->meta;
  cp_queue_push(q, op, s->spare_op ? NULL : &s->spare_op);
}

static void deliver_list(cp_sock *s, cp_list *l) {
  while (l->head && l->head->state == CP_OP_DONE) {
    cp_op *op = l->head;
    cp_list_remove(l, op);
    cp_op_deliver(s, op);
  }
}

/* A filtered socket has two lists per direction: its raw ops' ends go to
 * the filter, which may end user ops, so the raw list goes first. */
void cp_deliver_ready(cp_sock *s, int dir) {
  deliver_list(s, &s->dirs[dir]);
  if (s->filtered) deliver_list(s, &s->filtered->dirs[dir]);
}

int cp_raw_post(cp_sock *s, const cp_op *proto) {
  cp_op *op = cp_op_record(s, proto);
  if (!op) return CPORT_ENOMEM;
  op->raw = 1;
  op->select = 0;
  op->dest = NULL;
  cp_list_append(&s->dirs[op->dir], op);
  int rc = s->ctx->be->start(s, op);
  if (rc != CP_PENDING) cp_op_done(op, rc); /* to raw_done, in order */
  return CPORT_OK;
}

/* An op cancelled before it moved a byte carries nothing whose order could
 * matter, so its message need not wait for the ops posted before it
 * (rule 16): a blocking call's timeout, or a deadline, then ends it at
 * once. An op that moved bytes keeps its place, and so do the aborts of a
 * close, which end every op of the socket anyway. */
static bool carries_nothing(const cp_op *op) {
  return op->status < 0 && op->cancelled && !op->closed && op->done == 0;
}

void cp_op_done(cp_op *op, int status) {
  if (op->multi && cp_multi_go_on(op->sock, op, status)) return;
  cp_op_end(op, status);
}

void cp_op_end(cp_op *op, int status) {
  cp_sock *s = op->sock;
  if (op->multi) cp_multi_end(op);
  op->status = status;
  op->state = CP_OP_DONE;
  if (!op->select && !op->raw) cp_op_effects(s, op); /* a select op only waited */
  cp_list *l = cp_op_list(s, op);
  if (l->head != op && carries_nothing(op)) {
    cp_list_remove(l, op);
    cp_op_deliver(s, op);
    return;
  }
  cp_deliver_ready(s, op->dir);
}
