/*
 * echo_client: load and check an echo server, with cport.
 *
 *   echo_client --port N [--host NAME|ADDRESS] [--connections C] [--bytes B]
 *               [--chunk K] [--mode completion|select]
 *               [--backend auto|epoll|iocp] [--timeout-ms T]
 *
 * Opens C connections at once. Each sends B bytes of its own deterministic
 * pattern in chunks of K, shuts down its write side, and checks every byte
 * of the echo against the pattern until EOF. Sending and receiving run side
 * by side, so a server that echoes while it reads never deadlocks with us.
 *
 * Exit 0 only if every connection got exactly B correct bytes and then EOF;
 * otherwise the first error of each failed connection goes to stderr and
 * the exit code is 1. Either way one summary line goes to stdout (with the
 * number of connect attempts made).
 *
 * One handler loop serves both modes: a nowait call finishes at once
 * (CPORT_OK, handled inline) or leaves a handle; its completion message
 * carries the result, its select message means "call it again".
 *
 * --host takes a name or an address. A name is resolved in the background
 * (cport_resolve); each connection then tries the addresses in turn,
 * starting the next one whenever the current attempts have not connected
 * within 250 ms (a light "Happy Eyeballs", RFC 8305), and keeps the first
 * that connects.
 */
#ifndef _WIN32
#define _POSIX_C_SOURCE 200809L
#endif

#include "example_util.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

#define WAIT_BATCH 64
/* Done-now calls one connection may make per direction before it lets the
 * others run (and the deadline be checked). */
#define INLINE_ROUNDS 16
#define MAX_CHUNK (16u * 1024 * 1024)
/* Happy Eyeballs: the next address is tried after this long, and at most
 * this many attempts race per connection. */
#define ATTEMPT_DELAY_MS 250
#define MAX_ATTEMPTS 8

typedef struct client_conn {
  uint32_t id;                           /* selects the pattern */
  cport_socket sock;                     /* the connected socket, once one won */
  cport_socket attempts[MAX_ATTEMPTS];   /* connects racing (0: free slot) */
  size_t next_addr;                      /* the next address to try */
  cport_handle attempt_timer;            /* starts the next attempt, or 0 */
  int last_error;                        /* of the last attempt that failed */
  cport_handle send_handle, recv_handle; /* pending ops, or 0 */
  int connected, write_shut, eof;
  int finished, failed; /* finished: closed, successfully or not */
  int resume_posted;    /* a user message will call conn_pump again */
  uint64_t sent;        /* pattern bytes sent */
  uint64_t received;    /* echoed bytes received and checked */
  uint64_t chunk_start; /* send_buf holds pattern bytes [chunk_start, +chunk_len) */
  size_t chunk_len;
  size_t send_request;                /* length of the pending completion send */
  unsigned char *send_buf, *recv_buf; /* chunk bytes each */
} client_conn;

typedef struct client {
  cport_queue *queue;
  cport_addrinfo *addrs; /* the server's addresses, in the resolver's order */
  size_t addr_count;
  size_t attempts; /* connects started, all connections together */
  unsigned open_flags;
  uint64_t bytes; /* per connection */
  size_t chunk;
  client_conn *conns;
  size_t conn_count;
  size_t unfinished;
  socket_map by_socket; /* open socket -> client_conn */
} client;

/* ------------------------------------------------------------------------ */
/* The pattern                                                              */
/* ------------------------------------------------------------------------ */

/* splitmix64: cheap, and any shifted, dropped or foreign byte shows. */
static uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15u;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
  return x ^ (x >> 31);
}

static unsigned char pattern_byte(uint32_t conn_id, uint64_t offset) {
  uint64_t word = mix64(((uint64_t)conn_id << 40) ^ (offset >> 3));
  return (unsigned char)(word >> ((offset & 7) * 8));
}

/* ------------------------------------------------------------------------ */
/* Ending a connection                                                      */
/* ------------------------------------------------------------------------ */

/* Close the socket; its buffers stay until the context is gone, so aborts
 * of ops still pending never touch freed memory. */
static void close_attempts(client *cl, client_conn *c);

static void conn_finish(client *cl, client_conn *c) {
  if (c->finished) return;
  c->finished = 1;
  cl->unfinished--;
  close_attempts(cl, c);
  if (c->attempt_timer != 0) cport_queue_cancel(cl->queue, c->attempt_timer);
  if (c->sock == CPORT_INVALID_SOCKET) return;
  socket_map_remove(&cl->by_socket, c->sock); /* later aborts find nothing */
  int rc = cport_close(c->sock);
  if (rc != CPORT_OK) fprintf(stderr, "echo_client: close: %s\n", cport_strerror(rc));
}

/* Report the first error of a connection, and end it. */
static void conn_fail(client *cl, client_conn *c, const char *format, ...) {
  if (c->finished) return;
  va_list args;
  va_start(args, format);
  fprintf(stderr, "echo_client: connection %u: ", (unsigned)c->id);
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
  c->failed = 1;
  conn_finish(cl, c);
}

/* ------------------------------------------------------------------------ */
/* Sending and receiving                                                    */
/* ------------------------------------------------------------------------ */

static void fill_next_chunk(client *cl, client_conn *c) {
  uint64_t left = cl->bytes - c->sent;
  c->chunk_start = c->sent;
  c->chunk_len = left < cl->chunk ? (size_t)left : cl->chunk;
  for (size_t i = 0; i < c->chunk_len; i++) c->send_buf[i] = pattern_byte(c->id, c->sent + i);
}

/* One nowait send of the rest of the chunk; after the last, shut down. */
static void send_step(client *cl, client_conn *c) {
  if (c->sent == c->chunk_start + c->chunk_len) {
    if (c->sent == cl->bytes) {
      int rc = cport_shutdown(c->sock, CPORT_SHUT_WR);
      if (rc != CPORT_OK) conn_fail(cl, c, "shutdown: %s", cport_strerror(rc));
      c->write_shut = 1;
      return;
    }
    fill_next_chunk(cl, c);
  }
  size_t offset = (size_t)(c->sent - c->chunk_start), len = c->chunk_len - offset, n = 0;
  cport_handle h = 0;
  int rc = cport_send(c->sock, c->send_buf + offset, len, 0, CPORT_NOWAIT, &n, &h);
  if (rc < 0) {
    conn_fail(cl, c, "send: %s", cport_strerror(rc));
    return;
  }
  if (rc != CPORT_OK) c->send_handle = h;
  if (rc == CPORT_COMPLETION)
    c->send_request = len;
  else
    c->sent += n; /* done now, or select: n is what went out */
}

/* Check newly received bytes against the pattern; at EOF check the count. */
static void on_received(client *cl, client_conn *c, size_t n) {
  if (n == 0) {
    c->eof = 1;
    if (c->received != cl->bytes)
      conn_fail(cl, c, "EOF after %llu of %llu bytes", (unsigned long long)c->received,
                (unsigned long long)cl->bytes);
    return;
  }
  for (size_t i = 0; i < n; i++, c->received++) {
    if (c->received >= cl->bytes) {
      conn_fail(cl, c, "more than the %llu bytes sent came back", (unsigned long long)cl->bytes);
      return;
    }
    unsigned char expected = pattern_byte(c->id, c->received);
    if (c->recv_buf[i] != expected) {
      conn_fail(cl, c, "byte %llu is 0x%02x, expected 0x%02x", (unsigned long long)c->received,
                c->recv_buf[i], expected);
      return;
    }
  }
}

static void recv_step(client *cl, client_conn *c) {
  size_t n = 0;
  cport_handle h = 0;
  int rc = cport_recv(c->sock, c->recv_buf, cl->chunk, 0, CPORT_NOWAIT, &n, &h);
  if (rc < 0)
    conn_fail(cl, c, "recv: %s", cport_strerror(rc));
  else if (rc == CPORT_OK)
    on_received(cl, c, n);
  else
    c->recv_handle = h;
}

static int can_send(const client_conn *c) {
  return !c->finished && !c->write_shut && c->send_handle == 0;
}

static int can_recv(const client_conn *c) { return !c->finished && !c->eof && c->recv_handle == 0; }

/* Drive both directions, a bounded number of done-now calls each. */
static void conn_pump(client *cl, client_conn *c) {
  for (int round = 0; round < INLINE_ROUNDS && can_send(c); round++) send_step(cl, c);
  for (int round = 0; round < INLINE_ROUNDS && can_recv(c); round++) recv_step(cl, c);
  if (!c->finished && c->eof && c->write_shut && c->send_handle == 0) {
    conn_finish(cl, c); /* all sent, all echoed and checked, EOF seen */
  } else if ((can_send(c) || can_recv(c)) && !c->resume_posted) {
    /* Still busy without waiting: continue after the others had a turn,
     * via a user message carrying the socket. */
    int rc = cport_post(cl->queue, c->sock, NULL);
    if (rc != CPORT_OK) conn_fail(cl, c, "post: %s", cport_strerror(rc));
    c->resume_posted = 1;
  }
}

/* ------------------------------------------------------------------------ */
/* Connecting                                                               */
/* ------------------------------------------------------------------------ */

/* Attempts that lost (or failed) are closed: their aborts find no entry. */
static void drop_attempt(client *cl, client_conn *c, size_t slot) {
  socket_map_remove(&cl->by_socket, c->attempts[slot]);
  cport_close(c->attempts[slot]);
  c->attempts[slot] = CPORT_INVALID_SOCKET;
}

static void close_attempts(client *cl, client_conn *c) {
  for (size_t i = 0; i < MAX_ATTEMPTS; i++)
    if (c->attempts[i] != CPORT_INVALID_SOCKET) drop_attempt(cl, c, i);
}

static size_t attempt_slot(const client_conn *c, cport_socket s) {
  for (size_t i = 0; i < MAX_ATTEMPTS; i++)
    if (c->attempts[i] == s) return i;
  return MAX_ATTEMPTS;
}

/* s connected first: it is the connection; the others go. */
static void attempt_won(client *cl, client_conn *c, cport_socket s) {
  c->attempts[attempt_slot(c, s)] = CPORT_INVALID_SOCKET;
  close_attempts(cl, c);
  if (c->attempt_timer != 0) cport_queue_cancel(cl->queue, c->attempt_timer);
  c->sock = s;
  c->connected = 1;
  conn_pump(cl, c);
}

static void try_next_address(client *cl, client_conn *c);

static int racing(const client_conn *c) {
  int n = 0;
  for (size_t i = 0; i < MAX_ATTEMPTS; i++) n += c->attempts[i] != CPORT_INVALID_SOCKET;
  return n;
}

/* An attempt failed: the next address goes at once if none is racing. */
static void attempt_failed(client *cl, client_conn *c, cport_socket s, int rc) {
  size_t slot = attempt_slot(c, s);
  if (slot < MAX_ATTEMPTS) drop_attempt(cl, c, slot);
  c->last_error = rc;
  if (racing(c) == 0) try_next_address(cl, c);
}

static void after_connect_call(client *cl, client_conn *c, cport_socket s, int rc) {
  if (rc == CPORT_OK)
    attempt_won(cl, c, s);
  else if (rc < 0)
    attempt_failed(cl, c, s, rc);
  /* else pending: its message comes */
}

/* Opens a socket for address a and starts its connect; the socket joins
 * the race even if the connect already ended (after_connect_call sorts). */
static void start_attempt(client *cl, client_conn *c, const cport_addr *a) {
  size_t slot = attempt_slot(c, CPORT_INVALID_SOCKET);
  cport_socket s;
  int rc = cport_open(cl->queue, a->family, CPORT_SOCK_STREAM, cl->open_flags, &s);
  if (rc == CPORT_OK && socket_map_put(&cl->by_socket, s, c) != 0) {
    cport_close(s);
    rc = CPORT_ENOMEM;
  }
  if (rc != CPORT_OK) {
    c->last_error = rc;
    return;
  }
  c->attempts[slot] = s;
  cl->attempts++;
  cport_handle h = 0;
  rc = cport_connect(s, a, CPORT_NOWAIT, &h);
  after_connect_call(cl, c, s, rc);
}

/* Starts the next address's attempt (and the timer for the one after);
 * with no address left and nothing racing, the connection has failed. */
static void try_next_address(client *cl, client_conn *c) {
  const cport_addrinfo *ai = cl->addrs;
  for (size_t i = 0; ai && i < c->next_addr; i++) ai = ai->next;
  if (ai == NULL || racing(c) == MAX_ATTEMPTS) {
    if (racing(c) == 0) conn_fail(cl, c, "connect: %s", cport_strerror(c->last_error));
    return;
  }
  c->next_addr++;
  if (ai->next != NULL && c->attempt_timer == 0 &&
      cport_timer_start(cl->queue, ATTEMPT_DELAY_MS, 0, c->id, c, &c->attempt_timer) != CPORT_OK)
    c->attempt_timer = 0; /* no timer: the next address waits for a failure */
  start_attempt(cl, c, &ai->addr);
}

static void conn_start(client *cl, client_conn *c) {
  c->send_buf = malloc(cl->chunk);
  c->recv_buf = malloc(cl->chunk);
  c->last_error = CPORT_ENONAME;
  if (c->send_buf == NULL || c->recv_buf == NULL) {
    conn_fail(cl, c, "out of memory");
    return;
  }
  try_next_address(cl, c);
}

static void on_attempt_timer(client *cl, client_conn *c, const cport_msg *m) {
  if (c->attempt_timer != m->handle) return;
  c->attempt_timer = 0;
  if (m->tag == CPORT_TAG_COMPLETION && !c->connected && !c->finished) try_next_address(cl, c);
}

/* ------------------------------------------------------------------------ */
/* Handler loop                                                             */
/* ------------------------------------------------------------------------ */

static void on_completion(client *cl, client_conn *c, const cport_msg *m) {
  if (m->op == CPORT_OP_CONNECT) {
    after_connect_call(cl, c, m->socket, m->status);
  } else if (m->status < 0) {
    conn_fail(cl, c, "%s: %s", m->op == CPORT_OP_SEND ? "send" : "recv", cport_strerror(m->status));
  } else if (m->op == CPORT_OP_RECV) {
    on_received(cl, c, m->bytes);
    conn_pump(cl, c);
  } else if (m->bytes != c->send_request) { /* the contract says sends are whole */
    conn_fail(cl, c, "send completed with %zu of %zu bytes", m->bytes, c->send_request);
  } else {
    c->sent += m->bytes;
    conn_pump(cl, c);
  }
}

static void on_select(client *cl, client_conn *c, const cport_msg *m) {
  if (m->op == CPORT_OP_CONNECT) {
    cport_handle h = 0;
    int rc = cport_connect(m->socket, NULL, CPORT_NOWAIT, &h); /* the result, or wait more */
    after_connect_call(cl, c, m->socket, rc);
  } else {
    conn_pump(cl, c);
  }
}

static void on_resolved(client *cl, cport_addrinfo *list);
static void fail_unfinished(client *cl, const char *why);

static void dispatch(client *cl, const cport_msg *m) {
  if (m->op == CPORT_OP_RESOLVE) {
    if (m->status == CPORT_OK)
      on_resolved(cl, (cport_addrinfo *)m->buf);
    else
      fail_unfinished(cl, cport_strerror(m->status));
    return;
  }
  if (m->op == CPORT_OP_TIMER) {
    on_attempt_timer(cl, &cl->conns[m->user], m);
    return;
  }
  cport_socket sock = m->tag == CPORT_TAG_USER ? (cport_socket)m->user : m->socket;
  client_conn *c = socket_map_get(&cl->by_socket, sock);
  if (c == NULL) return; /* a message for a connection we already closed */
  if (m->op == CPORT_OP_SEND) c->send_handle = 0;
  if (m->op == CPORT_OP_RECV) c->recv_handle = 0;

  if (m->tag == CPORT_TAG_COMPLETION) {
    on_completion(cl, c, m);
  } else if (m->tag == CPORT_TAG_SELECT) {
    on_select(cl, c, m);
  } else if (m->tag == CPORT_TAG_ABORT) {
    conn_fail(cl, c, "aborted: %s", cport_strerror(m->status));
  } else if (m->tag == CPORT_TAG_USER) {
    c->resume_posted = 0;
    conn_pump(cl, c);
  }
}

static void fail_unfinished(client *cl, const char *why) {
  for (size_t i = 0; i < cl->conn_count; i++) {
    client_conn *c = &cl->conns[i];
    conn_fail(cl, c, "%s (%s, sent %llu, received %llu of %llu bytes)", why,
              c->connected ? "connected" : "not connected", (unsigned long long)c->sent,
              (unsigned long long)c->received, (unsigned long long)cl->bytes);
  }
}

/* The server's addresses are known: every connection starts. */
static void on_resolved(client *cl, cport_addrinfo *list) {
  cl->addrs = list;
  for (const cport_addrinfo *ai = list; ai; ai = ai->next) cl->addr_count++;
  for (size_t i = 0; i < cl->conn_count; i++) conn_start(cl, &cl->conns[i]);
}

/* A name is looked up in the background; an address answers at once. */
static void start_lookup(client *cl, const char *host, uint16_t port) {
  char service[8];
  snprintf(service, sizeof service, "%u", (unsigned)port);
  cport_resolve_hints hints = {.type = CPORT_SOCK_STREAM};
  cport_addrinfo *list = NULL;
  cport_handle h = 0;
  int rc = cport_resolve(cl->queue, host, service, &hints, CPORT_NOWAIT, &list, &h);
  if (rc == CPORT_OK)
    on_resolved(cl, list);
  else if (rc < 0)
    fail_unfinished(cl, cport_strerror(rc));
}

/* Run until every connection finished, or the deadline, or a stop signal. */
static void run(client *cl, const char *host, uint16_t port, uint64_t deadline) {
  cport_msg msgs[WAIT_BATCH];
  start_lookup(cl, host, port);
  while (cl->unfinished > 0) {
    uint64_t now = now_ms();
    if (now >= deadline || stop_requested()) {
      fail_unfinished(cl, now >= deadline ? "timed out" : "interrupted");
      return;
    }
    uint64_t left = deadline - now;
    int n = cport_wait(cl->queue, msgs, WAIT_BATCH, left < STOP_POLL_MS ? (int)left : STOP_POLL_MS);
    if (n == CPORT_EINTR) continue;
    if (n < 0) {
      fprintf(stderr, "echo_client: wait: %s\n", cport_strerror(n));
      fail_unfinished(cl, "wait failed");
      return;
    }
    for (int i = 0; i < n; i++) dispatch(cl, &msgs[i]);
  }
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct options {
  const char *host;
  uint16_t port;
  unsigned long long connections, bytes, chunk, timeout_ms;
  unsigned open_flags;
  cport_backend_id backend;
} options;

static int usage(void) {
  fprintf(stderr, "usage: echo_client --port N [--host NAME|ADDRESS] [--connections C]"
                  " [--bytes B] [--chunk K] [--mode completion|select]"
                  " [--backend auto|epoll|io_uring|iocp] [--timeout-ms T]\n");
  return 2;
}

static int parse_options(int argc, char **argv, options *o) {
  int have_port = 0;
  *o = (options){"127.0.0.1", 0, 1, 100000, 16384, 60000, 0, CPORT_BACKEND_AUTO};
  for (int i = 1; i < argc; i += 2) { /* every option takes a value */
    const char *name = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
    unsigned long long port = 0;
    int bad = 0;
    if (strcmp(name, "--port") == 0) {
      bad = parse_number(value, 1, 65535, &port);
      o->port = (uint16_t)port;
      have_port = 1;
    } else if (strcmp(name, "--host") == 0) {
      o->host = value;
      bad = value == NULL;
    } else if (strcmp(name, "--connections") == 0) {
      bad = parse_number(value, 1, 1000000, &o->connections);
    } else if (strcmp(name, "--bytes") == 0) {
      bad = parse_number(value, 0, UINT64_MAX >> 24, &o->bytes);
    } else if (strcmp(name, "--chunk") == 0) {
      bad = parse_number(value, 1, MAX_CHUNK, &o->chunk);
    } else if (strcmp(name, "--timeout-ms") == 0) {
      bad = parse_number(value, 1, INT_MAX, &o->timeout_ms);
    } else if (strcmp(name, "--mode") == 0) {
      bad = parse_mode(value, &o->open_flags);
    } else if (strcmp(name, "--backend") == 0) {
      bad = parse_backend(value, &o->backend);
    } else {
      bad = 1;
    }
    if (bad) return -1;
  }
  return have_port ? 0 : -1;
}

/* Prints the summary line; returns the exit code. */
static int summarize(const client *cl, uint64_t elapsed_ms) {
  size_t failed = 0;
  unsigned long long total = 0;
  for (size_t i = 0; i < cl->conn_count; i++) {
    failed += cl->conns[i].failed != 0;
    total += cl->conns[i].received;
  }
  if (failed == 0)
    printf("ok connections=%zu bytes=%llu ms=%llu attempts=%zu\n", cl->conn_count, total,
           (unsigned long long)elapsed_ms, cl->attempts);
  else
    printf("failed connections=%zu failed=%zu bytes=%llu ms=%llu attempts=%zu\n", cl->conn_count,
           failed, total, (unsigned long long)elapsed_ms, cl->attempts);
  return failed == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  options opts = {0};
  client cl;
  memset(&cl, 0, sizeof cl);
  if (parse_options(argc, argv, &opts) != 0) return usage();
  install_stop_handlers(); /* optional here: without it Ctrl-C just kills us */
  cl.open_flags = opts.open_flags;
  cl.bytes = opts.bytes;
  cl.chunk = (size_t)opts.chunk;
  cl.conn_count = cl.unfinished = (size_t)opts.connections;
  cl.conns = calloc(cl.conn_count, sizeof *cl.conns);
  for (size_t i = 0; cl.conns != NULL && i < cl.conn_count; i++) cl.conns[i].id = (uint32_t)i;

  cport_ctx_options ctx_opts = {.backend = opts.backend};
  cport_ctx *ctx = NULL;
  int rc = cl.conns == NULL ? CPORT_ENOMEM : cport_ctx_create(&ctx, &ctx_opts);
  if (rc == CPORT_OK) rc = cport_queue_create(ctx, &cl.queue);
  if (rc != CPORT_OK) {
    fprintf(stderr, "echo_client: setup: %s\n", cport_strerror(rc));
    if (ctx != NULL) cport_ctx_destroy(ctx);
    free(cl.conns);
    return 1;
  }

  uint64_t start = now_ms();
  run(&cl, opts.host, opts.port, start + opts.timeout_ms);
  uint64_t elapsed = now_ms() - start;
  int exit_code = summarize(&cl, elapsed);

  cport_ctx_destroy(ctx); /* closes what is left; only then free the buffers */
  for (size_t i = 0; i < cl.conn_count; i++) {
    free(cl.conns[i].send_buf);
    free(cl.conns[i].recv_buf);
  }
  free(cl.conns);
  cport_addrinfo_free(cl.addrs);
  socket_map_free(&cl.by_socket);
  return exit_code;
}
