/* Operations: their memory, their per-direction FIFO lists, and turning
 * their ends into messages in posting order. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ops kept per socket for reuse, so the hot path does not allocate: a
 * recv and a send in flight, and the ones that replace them. More would
 * cost idle sockets memory (10,000 connections: about 1.3 MB per op). */
#define OP_CACHE_MAX 4

/* Only connects and datagram ops carry an address; a stream socket's other
 * ops are allocated without that tail, which is half of a cp_op. */
#define OP_SIZE_NO_ADDR offsetof(cp_op, addr)

static bool wants_addr(const cp_sock *s, uint8_t kind) {
  return s->type == CPORT_SOCK_DGRAM || kind == CPORT_OP_CONNECT;
}

cp_op *cp_op_alloc(cp_sock *s, uint8_t kind) {
  bool has_addr = wants_addr(s, kind);
  cp_op *op = s->free_ops;
  if (op && s->free_ops_have_addr == has_addr) {
    s->free_ops = op->next;
    s->free_op_count--;
  } else {
    op = malloc(has_addr ? sizeof *op : OP_SIZE_NO_ADDR);
    if (!op) return NULL;
  }
  memset(op, 0, offsetof(cp_op, be)); /* be and addr: set by their users */
  op->sock = s;
  op->handle = s->next_handle++;
  op->kind = kind;
  op->has_addr = has_addr;
  return op;
}

/* The cache holds one size; a slot reused by another type of socket
 * switches it once the old ones are gone. */
void cp_op_free(cp_sock *s, cp_op *op) {
  bool other_size = s->free_ops && s->free_ops_have_addr != op->has_addr;
  if (other_size || s->free_op_count >= OP_CACHE_MAX) {
    free(op);
    return;
  }
  s->free_ops_have_addr = op->has_addr;
  op->next = s->free_ops;
  s->free_ops = op;
  s->free_op_count++;
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

static void deliver(cp_sock *s, cp_op *op) {
  cport_msg m = {
      .tag = op->select ? CPORT_TAG_SELECT : CPORT_TAG_COMPLETION,
      .op = (cport_op)op->kind,
      .socket = s->id,
      .handle = op->handle,
      .status = op->status,
      .bytes = op->select ? 0 : op->done,
      .buf = op->buf,
      .accepted = op->accepted,
      .flags = op->msg_flags,
  };
  if (op->kind == CPORT_OP_RECVFROM) m.addr = op->addr;
  if (op->owns_buf) m.flags |= CPORT_MSG_ALLOCATED; /* the buffer is the user's now */
  if (op->select && op->cancelled) return;          /* cancel said no message follows */
  if (op->status < 0 && op->closed) {
    m.tag = CPORT_TAG_ABORT;
    m.status = CPORT_ECLOSED;
  } else if (op->status < 0 && op->cancelled) {
    m.tag = CPORT_TAG_ABORT;
    m.status = CPORT_ECANCELED;
  }
  if (s->debug)
    fprintf(stderr, "cport: socket %llu handle %llu op %d tag %d status %s bytes %zu\n",
            (unsigned long long)m.socket, (unsigned long long)m.handle, (int)m.op, (int)m.tag,
            cport_errname(m.status), m.bytes);
  cp_queue_push(op->dest ? op->dest : s->owner, &m);
}

static cp_op *pop_head(cp_list *l) {
  cp_op *op = l->head;
  l->head = op->next;
  if (l->head)
    l->head->prev = NULL;
  else
    l->tail = NULL;
  op->next = NULL;
  l->count--;
  return op;
}

void cp_deliver_ready(cp_sock *s, int dir) {
  cp_list *l = &s->dirs[dir];
  while (l->head && l->head->state == CP_OP_DONE) {
    cp_op *op = pop_head(l);
    deliver(s, op);
    cp_op_free(s, op);
  }
}

void cp_op_done(cp_op *op, int status) {
  cp_sock *s = op->sock;
  op->status = status;
  op->state = CP_OP_DONE;
  if (!op->select) cp_op_effects(s, op); /* a select op only waited */
  cp_deliver_ready(s, op->dir);
}
