/*
 * echo_server: echoes every byte on every connection, with cport.
 *
 *   echo_server --port N [--mode completion|select] [--backend auto|epoll|io_uring|iocp]
 *               [--host 127.0.0.1|::1] [--idle-timeout MS] [--defer 0|1]
 *               [--single-thread 0|1] [--recv-multi 0|1] [--mem-stats 0|1]
 *               [--trim-idle 0|1]
 *
 * One handler loop serves both modes, the way Erlang's socket module is used
 * with nowait: every call may finish at once (CPORT_OK, handled inline), or
 * leave a handle whose message arrives later. A completion message carries
 * the result; a select message means "call it again".
 *
 * Each connection has one buffer and alternates: receive into it, send it
 * all back, receive again. It never reads while its echo is unsent, so a
 * client that does not read its echo stalls only itself, and memory stays
 * at one buffer per connection.
 *
 * Each connection's state is the socket's otp.meta, so every message
 * carries it (msg.meta) and the loop needs no socket -> connection map.
 * Connections end with cport_close_async: their state is freed when the
 * CPORT_OP_CLOSE message comes, after every other message about them.
 *
 * --idle-timeout MS (0 = off, the default) sets otp.recv_timeout on the
 * listener, which accepted connections inherit: a recv (completion mode)
 * or a wait for data (select mode) that sees nothing for MS ends with an
 * abort whose status is CPORT_ETIMEDOUT, and the connection is closed. On
 * exit the server prints on stderr how many connections it accepted and
 * how many it closed as idle.
 *
 * --defer 1 sets cport_ctx_options.defer: every call answers pending and
 * its result comes as a message (the same loop serves; on io_uring the
 * sends and recvs then go through the ring, batched per poll).
 * --single-thread 1 sets cport_ctx_options.single_thread: this program
 * makes every call from its one thread, so the context skips its locks
 * (io_uring: a single-issuer ring too).
 * --recv-multi 1 (completion mode) reads each connection with one
 * cport_recv_multi instead: every chunk arrives in a library buffer, is
 * sent back from it, and goes back with cport_free when its send is done.
 * The library stops reading while MULTI_OUTSTANDING chunks are unreleased,
 * so a client that does not read its echo still stalls only itself.
 *
 * --mem-stats 1 counts the library's memory: the server installs a counting
 * allocator with cport_set_allocator before it creates its context, and
 * prints one line
 *   mem: rss_kb=N lib_bytes=N lib_blocks=N lib_peak_bytes=N conns=N
 * on stderr on SIGUSR2 (POSIX), at exit while everything is still open,
 * and once more after the context is destroyed (what the library holds
 * then is its socket table, which lives as long as the process).
 * rss_kb is the whole process's resident memory; lib_bytes what the
 * library holds from the allocator (usable sizes: what malloc really gave).
 * bench/memory.sh reads these lines.
 * --trim-idle 1 (glibc) calls malloc_trim(0) once the server goes idle (a
 * wait that met no message after some that did), which hands the pages of
 * freed memory in the middle of the heap back to the system: glibc itself
 * only returns the top of its heap.
 *
 * SIGUSR1 (a key press on Windows) prints the table of open sockets, like
 * Erlang's socket:i().
 */
#ifndef _WIN32
#define _POSIX_C_SOURCE 200809L
#endif

#include "example_util.h"

#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>

#include <malloc.h> /* malloc_usable_size, malloc_trim (glibc); _msize (Windows) */
#ifdef _WIN32
#define PSAPI_VERSION 2 /* GetProcessMemoryInfo is K32GetProcessMemoryInfo in kernel32 */
#include <psapi.h>
#else
#include <unistd.h> /* sysconf */
#endif

#define CONN_BUFFER_SIZE (64 * 1024)
#define WAIT_BATCH 64
/* Rounds of done-now I/O one connection may do before it lets others run. */
#define INLINE_ROUNDS 16
/* After EMFILE/ENFILE, wait this long before accepting again. */
#define ACCEPT_RETRY_MS 100
/* --recv-multi: chunks of one connection the user may hold at once. */
#define MULTI_OUTSTANDING 16

typedef struct conn {
  struct conn *prev, *next; /* the server's connections, for shutting down */
  cport_socket sock;
  cport_handle recv_handle;            /* pending recv (select or completion), or 0 */
  cport_handle send_handle;            /* pending send, or 0 */
  size_t filled;                       /* bytes in buf waiting to be echoed */
  size_t sent;                         /* of those, bytes already sent */
  int peer_done;                       /* the peer shut down its sending side */
  int closed;                          /* being closed; kept until its messages end */
  int close_pending;                   /* cport_close_async called: its CPORT_OP_CLOSE is to come */
  int posted;                          /* a user message carrying this conn is queued */
  int sends;                           /* --recv-multi: chunks being sent back */
  void *chunks[MULTI_OUTSTANDING];     /* --recv-multi: those chunks, to free at exit */
  unsigned char buf[CONN_BUFFER_SIZE]; /* not allocated with --recv-multi */
} conn;

typedef struct server {
  cport_queue *queue;
  cport_socket listener;
  cport_handle accept_handle;     /* the multishot accept, or 0 */
  int recv_multi;                 /* --recv-multi */
  uint64_t accept_retry_at;       /* nonzero: accepting paused until then (ms) */
  conn *conns;                    /* every connection not yet freed */
  unsigned long long accepted;    /* connections accepted */
  unsigned long long idle_closed; /* connections closed by the idle timeout */
  unsigned long long open;        /* connections with state (not yet freed) */
  int mem_stats;                  /* --mem-stats */
  int trim_idle;                  /* --trim-idle */
} server;

static void report(const char *what, int err) {
  fprintf(stderr, "echo_server: %s: %s\n", what, cport_strerror(err));
}

/* ------------------------------------------------------------------------ */
/* Memory accounting (--mem-stats, --trim-idle)                             */
/* ------------------------------------------------------------------------ */

/* What the library holds from the allocator, counted by a wrapper of the C
 * library's allocator installed with cport_set_allocator. Sizes are the
 * usable sizes malloc really handed out; atomics, since the library may
 * allocate on its worker threads. */
static atomic_llong lib_bytes, lib_blocks, lib_peak;

static size_t block_size(void *p) {
#ifdef _WIN32
  return p ? _msize(p) : 0;
#else
  return p ? malloc_usable_size(p) : 0;
#endif
}

static void count_in(void *p) {
  if (p == NULL) return;
  long long now = atomic_fetch_add(&lib_bytes, (long long)block_size(p)) + (long long)block_size(p);
  atomic_fetch_add(&lib_blocks, 1);
  long long peak = atomic_load(&lib_peak);
  while (now > peak && !atomic_compare_exchange_weak(&lib_peak, &peak, now)) {
  }
}

static void count_out(void *p) {
  if (p == NULL) return;
  atomic_fetch_sub(&lib_bytes, (long long)block_size(p));
  atomic_fetch_sub(&lib_blocks, 1);
}

static void *counting_malloc(size_t size) {
  void *p = malloc(size);
  count_in(p);
  return p;
}

static void *counting_calloc(size_t count, size_t size) {
  void *p = calloc(count, size);
  count_in(p);
  return p;
}

static void *counting_realloc(void *old, size_t size) {
  size_t before = block_size(old);
  void *p = realloc(old, size);
  if (p == NULL) return NULL; /* old is untouched (or size was 0 and old freed: not used) */
  atomic_fetch_sub(&lib_bytes, (long long)before);
  if (old != NULL) atomic_fetch_sub(&lib_blocks, 1);
  count_in(p);
  return p;
}

static void counting_free(void *p) {
  count_out(p);
  free(p);
}

/* The process's resident set, in KiB (0 if unknown). */
static unsigned long long rss_kb(void) {
#ifdef _WIN32
  PROCESS_MEMORY_COUNTERS pmc;
  if (!GetProcessMemoryInfo(GetCurrentProcess(), &pmc, sizeof pmc)) return 0;
  return (unsigned long long)pmc.WorkingSetSize / 1024u;
#else
  unsigned long long pages_total = 0, pages_rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  int got = fscanf(f, "%llu %llu", &pages_total, &pages_rss);
  fclose(f);
  return got == 2 ? pages_rss * (unsigned long long)sysconf(_SC_PAGESIZE) / 1024u : 0;
#endif
}

static void print_mem(unsigned long long conns, const char *when) {
  fprintf(
      stderr,
      "mem: rss_kb=%llu lib_bytes=%lld lib_blocks=%lld lib_peak_bytes=%lld conns=%llu when=%s\n",
      rss_kb(), atomic_load(&lib_bytes), atomic_load(&lib_blocks), atomic_load(&lib_peak), conns,
      when);
  fflush(stderr);
}

/* Gives the pages of free heap memory back to the system (glibc). */
static void trim_heap(void) {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

#ifndef _WIN32
static volatile sig_atomic_t mem_flag;

static void on_mem_signal(int signo) {
  (void)signo;
  mem_flag = 1;
}

static int install_mem_request(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_mem_signal;
  sigemptyset(&sa.sa_mask);
  return sigaction(SIGUSR2, &sa, NULL);
}

static int mem_requested(void) {
  if (!mem_flag) return 0;
  mem_flag = 0;
  return 1;
}
#else
static int install_mem_request(void) { return 0; }
static int mem_requested(void) { return 0; }
#endif

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

static void conn_link(server *srv, conn *c) {
  srv->open++;
  c->prev = NULL;
  c->next = srv->conns;
  if (srv->conns) srv->conns->prev = c;
  srv->conns = c;
}

static void conn_unlink(server *srv, conn *c) {
  srv->open--;
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
}

/* A closed connection's buffer belongs to the library until each pending op
 * has delivered its message (an abort, or a completion that raced ahead),
 * and the connection itself lives until every message naming it is seen:
 * its CPORT_OP_CLOSE, which comes after all the others about the socket,
 * and the user message it may have posted to itself, which is not about
 * the socket and so may come after that. */
static void conn_release_if_idle(server *srv, conn *c) {
  if (!c->closed || c->close_pending || c->recv_handle || c->send_handle || c->posted || c->sends)
    return;
  conn_unlink(srv, c);
  free(c);
}

static void conn_close(server *srv, conn *c) {
  if (c->closed) return;
  c->closed = 1;
  cport_handle h = 0;
  int rc = cport_close_async(c->sock, &h);
  if (rc == CPORT_OK) {
    c->close_pending = 1; /* free on its CPORT_OP_CLOSE */
    return;
  }
  /* Not closed (out of memory): close it the plain way; then the pending
   * ops' messages are the last ones, and the handles tell when they came. */
  report("close", rc);
  rc = cport_close(c->sock);
  if (rc != CPORT_OK) report("close", rc);
  conn_release_if_idle(srv, c);
}

/* The connection's last message about its socket. */
static void conn_on_closed(server *srv, conn *c) {
  c->close_pending = 0;
  c->recv_handle = c->send_handle = 0; /* every op's message came before this */
  c->sends = 0;
  conn_release_if_idle(srv, c);
}

static void conn_fail(server *srv, conn *c, const char *what, int err) {
  report(what, err);
  conn_close(srv, c);
}

/* One nowait send of what is left of the echo. Returns 0 or an error. */
static int conn_try_send(conn *c) {
  size_t n = 0;
  cport_handle h = 0;
  int rc = cport_send(c->sock, c->buf + c->sent, c->filled - c->sent, 0, CPORT_NOWAIT, &n, &h);
  if (rc < 0) return rc;
  if (rc != CPORT_OK) c->send_handle = h;
  if (rc != CPORT_COMPLETION) c->sent += n; /* done now, or select: a partial send */
  if (c->sent == c->filled) c->sent = c->filled = 0;
  return 0;
}

/* One nowait recv into the (empty) buffer. Returns 0 or an error. */
static int conn_try_recv(conn *c) {
  size_t n = 0;
  cport_handle h = 0;
  int rc = cport_recv(c->sock, c->buf, sizeof c->buf, 0, CPORT_NOWAIT, &n, &h);
  if (rc < 0) return rc;
  if (rc != CPORT_OK) {
    c->recv_handle = h;
  } else {
    c->filled = n;
    c->peer_done = (n == 0);
  }
  return 0;
}

/* Drive a connection as far as it goes without waiting for a message. */
static void conn_pump(server *srv, conn *c) {
  for (int round = 0;; round++) {
    if (c->closed || c->recv_handle || c->send_handle) return; /* a message will come */
    if (round == INLINE_ROUNDS) {
      /* Busy connection: let the others run, then continue via a user
       * message carrying the connection (kept alive until it arrives). */
      int rc = cport_post(srv->queue, 0, c);
      if (rc != CPORT_OK) {
        conn_fail(srv, c, "post", rc);
        return;
      }
      c->posted = 1;
      return;
    }
    if (c->filled == 0 && c->peer_done) {
      conn_close(srv, c); /* echo complete and nothing more will come */
      return;
    }
    int sending = c->filled > 0;
    int rc = sending ? conn_try_send(c) : conn_try_recv(c);
    if (rc < 0) {
      conn_fail(srv, c, sending ? "send" : "recv", rc);
      return;
    }
  }
}

static void conn_on_message(server *srv, conn *c, const cport_msg *m) {
  if (m->op == CPORT_OP_RECV) c->recv_handle = 0;
  if (m->op == CPORT_OP_SEND) c->send_handle = 0;
  if (c->closed) {
    conn_release_if_idle(srv, c);
    return;
  }
  if (m->status == CPORT_ETIMEDOUT) { /* otp.recv_timeout: nothing came for that long */
    srv->idle_closed++;
    conn_close(srv, c);
    return;
  }
  if (m->tag == CPORT_TAG_ABORT || m->status < 0) {
    conn_fail(srv, c, m->op == CPORT_OP_SEND ? "send" : "recv", m->status);
    return;
  }
  if (m->tag == CPORT_TAG_COMPLETION && m->op == CPORT_OP_RECV) {
    c->filled = m->bytes;
    c->peer_done = (m->bytes == 0);
  } else if (m->tag == CPORT_TAG_COMPLETION && m->op == CPORT_OP_SEND) {
    c->sent += m->bytes; /* always the whole rest: completion sends are whole */
    if (c->sent == c->filled) c->sent = c->filled = 0;
  }
  /* A select message just means: call again. */
  conn_pump(srv, c);
}

/* --recv-multi: remember a chunk being sent, or forget it once sent. */
static void chunk_track(conn *c, void *from, void *to) {
  for (int i = 0; i < MULTI_OUTSTANDING; i++) {
    if (c->chunks[i] == from) {
      c->chunks[i] = to;
      return;
    }
  }
}

/* --recv-multi: send a chunk back from its library buffer. */
static void multi_echo(server *srv, conn *c, void *chunk, size_t len) {
  size_t n = 0;
  cport_handle h = 0;
  int rc = cport_send(c->sock, chunk, len, 0, CPORT_NOWAIT, &n, &h);
  if (rc == CPORT_COMPLETION) {
    c->sends++;
    chunk_track(c, NULL, chunk);
    return;
  }
  cport_free(chunk);
  if (rc != CPORT_OK) conn_fail(srv, c, "send", rc);
}

static void multi_start(server *srv, conn *c) {
  int rc = cport_recv_multi(c->sock, &c->recv_handle);
  if (rc != CPORT_COMPLETION) conn_fail(srv, c, "recv", rc);
}

/* --recv-multi: a chunk (flagged CPORT_MSG_MORE until the last message), or
 * a chunk's send done. */
static void multi_on_message(server *srv, conn *c, const cport_msg *m) {
  void *chunk = (m->flags & CPORT_MSG_ALLOCATED) ? m->buf : NULL;
  if (m->op == CPORT_OP_SEND) {
    c->sends--;
    chunk_track(c, m->buf, NULL);
    cport_free(m->buf);
  } else if (!(m->flags & CPORT_MSG_MORE)) {
    c->recv_handle = 0;
    c->peer_done = 1; /* EOF, or an error handled below */
  }
  if (c->closed || m->status < 0 || m->tag == CPORT_TAG_ABORT) {
    cport_free(chunk);
    if (m->status == CPORT_ETIMEDOUT) srv->idle_closed++;
    if (m->status < 0 && m->status != CPORT_ETIMEDOUT && !c->closed)
      report(m->op == CPORT_OP_SEND ? "send" : "recv", m->status);
    conn_close(srv, c);
    conn_release_if_idle(srv, c);
    return;
  }
  if (chunk != NULL && m->bytes > 0)
    multi_echo(srv, c, chunk, m->bytes);
  else
    cport_free(chunk);
  if (c->peer_done && c->sends == 0) conn_close(srv, c);
}

/* A new socket we keep no state for: nothing pending on it, no meta, so its
 * CPORT_OP_CLOSE (msg.meta NULL) is ignored by dispatch. */
static void close_stateless(cport_socket sock) {
  cport_handle h = 0;
  int rc = cport_close_async(sock, &h);
  if (rc == CPORT_ENOMEM) rc = cport_close(sock);
  if (rc != CPORT_OK) report("close", rc);
}

static void conn_open(server *srv, cport_socket sock) {
  /* Only the header needs zeroing: clearing the 64 KiB buffer of every new
   * connection was 93% of the server's instructions under connect churn. */
  srv->accepted++;
  conn *c = malloc(srv->recv_multi ? offsetof(conn, buf) : sizeof *c);
  if (c == NULL) {
    report("accept", CPORT_ENOMEM);
    close_stateless(sock);
    return;
  }
  memset(c, 0, offsetof(conn, buf));
  cport_optval meta = {.type = CPORT_VAL_PTR, .v.ptr = c};
  int rc = cport_setopt(sock, CPORT_LEVEL_OTP, CPORT_OPT_OTP_META, &meta);
  if (rc != CPORT_OK) {
    free(c);
    report("accept", rc);
    close_stateless(sock);
    return;
  }
  c->sock = sock;
  conn_link(srv, c);
  if (srv->recv_multi)
    multi_start(srv, c);
  else
    conn_pump(srv, c);
}

/* ------------------------------------------------------------------------ */
/* Listener                                                                 */
/* ------------------------------------------------------------------------ */

static void accept_failed(server *srv, int err) {
  /* Typically out of descriptors: report it, and pause instead of spinning. */
  report("accept", err);
  srv->accept_retry_at = now_ms() + ACCEPT_RETRY_MS;
}

/* One multishot accept: a message per connection, flagged CPORT_MSG_MORE,
 * in either mode. An error (out of descriptors, say) ends it: pause, then
 * post it again. */
static void listener_pump(server *srv) {
  if (srv->accept_handle != 0 || srv->accept_retry_at != 0) return;
  cport_handle h = 0;
  int rc = cport_accept_multi(srv->listener, &h);
  if (rc == CPORT_COMPLETION)
    srv->accept_handle = h;
  else
    accept_failed(srv, rc);
}

static void listener_on_message(server *srv, const cport_msg *m) {
  if (!(m->flags & CPORT_MSG_MORE)) srv->accept_handle = 0; /* the handle's last message */
  if (m->tag == CPORT_TAG_ABORT) return;                    /* only when we close it */
  if (m->status < 0)
    accept_failed(srv, m->status);
  else
    conn_open(srv, m->accepted);
  listener_pump(srv);
}

static void listener_resume_if_due(server *srv) {
  if (srv->accept_retry_at != 0 && now_ms() >= srv->accept_retry_at) {
    srv->accept_retry_at = 0;
    listener_pump(srv);
  }
}

/* ------------------------------------------------------------------------ */
/* Handler loop                                                             */
/* ------------------------------------------------------------------------ */

static void dispatch(server *srv, const cport_msg *m) {
  if (m->tag == CPORT_TAG_USER) { /* a busy connection asked to continue */
    conn *c = m->user_ptr;
    c->posted = 0;
    if (c->closed)
      conn_release_if_idle(srv, c);
    else
      conn_pump(srv, c);
  } else if (m->op == CPORT_OP_CLOSE) { /* a connection's last message */
    if (m->meta != NULL) conn_on_closed(srv, m->meta);
  } else if (m->meta == NULL) { /* the listener has none */
    listener_on_message(srv, m);
  } else if (srv->recv_multi) {
    multi_on_message(srv, m->meta, m);
  } else {
    conn_on_message(srv, m->meta, m);
  }
}

static int serve(server *srv) {
  cport_msg msgs[WAIT_BATCH];
  int busy = 0; /* messages came since the last trim */
  listener_pump(srv);
  while (!stop_requested()) {
    int n = cport_wait(srv->queue, msgs, WAIT_BATCH, STOP_POLL_MS);
    if (srv->mem_stats && mem_requested()) print_mem(srv->open, "signal");
    if (n == CPORT_EINTR) continue; /* a signal: look at the stop flag */
    if (n < 0) {
      report("wait", n);
      return 1;
    }
    if (n > 0) {
      busy = 1;
    } else if (busy && srv->trim_idle) { /* idle for a whole wait after some work */
      busy = 0;
      trim_heap();
    }
    for (int i = 0; i < n; i++) dispatch(srv, &msgs[i]);
    listener_resume_if_due(srv);
    if (table_requested()) { /* SIGUSR1, or a key press on Windows */
      cport_print_sockets(stdout);
      fflush(stdout);
    }
  }
  return 0;
}

/* Close every socket, destroy the context (which discards the aborts and
 * waits for the OS to let go of our buffers), then free the buffers. */
static void shut_down(server *srv, cport_ctx *ctx) {
  for (conn *c = srv->conns; c != NULL; c = c->next) {
    if (!c->closed) {
      c->closed = 1;
      cport_close(c->sock);
    }
  }
  if (srv->listener != CPORT_INVALID_SOCKET) cport_close(srv->listener);
  cport_ctx_destroy(ctx);
  while (srv->conns != NULL) {
    conn *c = srv->conns;
    srv->conns = c->next;
    for (int i = 0; i < MULTI_OUTSTANDING; i++) cport_free(c->chunks[i]);
    free(c);
  }
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct options {
  uint16_t port;
  const char *host;
  unsigned open_flags;
  cport_backend_id backend;
  int idle_timeout_ms; /* otp.recv_timeout of every connection; 0 = none */
  int defer;           /* cport_ctx_options.defer */
  int single_thread;   /* cport_ctx_options.single_thread */
  int recv_multi;      /* --recv-multi */
  int mem_stats;       /* --mem-stats */
  int trim_idle;       /* --trim-idle */
} options;

static int usage(void) {
  fprintf(stderr, "usage: echo_server --port N [--mode completion|select]"
                  " [--backend auto|epoll|io_uring|iocp] [--host 127.0.0.1|::1]"
                  " [--idle-timeout MS] [--defer 0|1] [--single-thread 0|1]"
                  " [--recv-multi 0|1] [--mem-stats 0|1] [--trim-idle 0|1]\n");
  return 2;
}

static int parse_options(int argc, char **argv, options *o) {
  int have_port = 0;
  o->host = "127.0.0.1";
  o->open_flags = 0;
  o->backend = CPORT_BACKEND_AUTO;
  for (int i = 1; i < argc; i += 2) { /* every option takes a value */
    const char *name = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
    unsigned long long port = 0;
    int bad = 0;
    if (strcmp(name, "--port") == 0) {
      bad = parse_number(value, 0, 65535, &port);
      o->port = (uint16_t)port;
      have_port = 1;
    } else if (strcmp(name, "--host") == 0) {
      o->host = value;
      bad = value == NULL;
    } else if (strcmp(name, "--mode") == 0) {
      bad = parse_mode(value, &o->open_flags);
    } else if (strcmp(name, "--backend") == 0) {
      bad = parse_backend(value, &o->backend);
    } else if (strcmp(name, "--idle-timeout") == 0) {
      unsigned long long ms = 0;
      bad = parse_number(value, 0, INT_MAX, &ms);
      o->idle_timeout_ms = (int)ms;
    } else if (strcmp(name, "--defer") == 0) {
      unsigned long long on = 0;
      bad = parse_number(value, 0, 1, &on);
      o->defer = (int)on;
    } else if (strcmp(name, "--single-thread") == 0) {
      unsigned long long on = 0;
      bad = parse_number(value, 0, 1, &on);
      o->single_thread = (int)on;
    } else if (strcmp(name, "--recv-multi") == 0) {
      unsigned long long on = 0;
      bad = parse_number(value, 0, 1, &on);
      o->recv_multi = (int)on;
    } else if (strcmp(name, "--mem-stats") == 0) {
      unsigned long long on = 0;
      bad = parse_number(value, 0, 1, &on);
      o->mem_stats = (int)on;
    } else if (strcmp(name, "--trim-idle") == 0) {
      unsigned long long on = 0;
      bad = parse_number(value, 0, 1, &on);
      o->trim_idle = (int)on;
    } else {
      bad = 1;
    }
    if (bad) return -1;
  }
  if (o->recv_multi && (o->open_flags & CPORT_OPEN_SELECT)) return -1; /* sends are whole */
  return have_port ? 0 : -1;
}

/* Open, bind and listen; print the port actually bound. */
static int open_listener(server *srv, const options *o) {
  cport_addr addr;
  int rc = cport_addr_init(&addr, o->host, o->port);
  if (rc != CPORT_OK) {
    fprintf(stderr, "echo_server: bad --host %s\n", o->host);
    return rc;
  }
  rc = cport_open(srv->queue, addr.family, CPORT_SOCK_STREAM, o->open_flags, &srv->listener);
  if (rc == CPORT_OK && o->idle_timeout_ms > 0) { /* accepted connections inherit it */
    cport_optval idle = {.type = CPORT_VAL_INT, .v.i = o->idle_timeout_ms};
    rc = cport_setopt(srv->listener, CPORT_LEVEL_OTP, CPORT_OPT_OTP_RECV_TIMEOUT, &idle);
  }
  if (rc == CPORT_OK && o->recv_multi) {
    cport_optval most = {.type = CPORT_VAL_INT, .v.i = MULTI_OUTSTANDING};
    rc = cport_setopt(srv->listener, CPORT_LEVEL_OTP, CPORT_OPT_OTP_RCV_OUTSTANDING, &most);
  }
  if (rc == CPORT_OK) rc = cport_bind(srv->listener, &addr);
  if (rc == CPORT_OK) rc = cport_listen(srv->listener, 0);
  if (rc == CPORT_OK) rc = cport_sockname(srv->listener, &addr);
  if (rc != CPORT_OK) {
    report("listen", rc);
    return rc;
  }
  printf("listening on %u\n", (unsigned)addr.port);
  fflush(stdout);
  return CPORT_OK;
}

int main(int argc, char **argv) {
  options opts = {0};
  if (parse_options(argc, argv, &opts) != 0) return usage();
  if (install_stop_handlers() != 0 || install_table_request() != 0 ||
      (opts.mem_stats && install_mem_request() != 0)) {
    fprintf(stderr, "echo_server: cannot install signal handlers\n");
    return 1;
  }
  /* Before the first context: the allocator cannot change while one exists. */
  if (opts.mem_stats) {
    int arc =
        cport_set_allocator(counting_malloc, counting_realloc, counting_calloc, counting_free);
    if (arc != CPORT_OK) {
      report("allocator", arc);
      return 1;
    }
  }

  cport_ctx_options ctx_opts = {
      .backend = opts.backend, .defer = opts.defer, .single_thread = opts.single_thread};
  cport_ctx *ctx = NULL;
  int rc = cport_ctx_create(&ctx, &ctx_opts);
  if (rc != CPORT_OK) {
    report("context", rc);
    return 1;
  }
  server srv;
  memset(&srv, 0, sizeof srv);
  srv.recv_multi = opts.recv_multi;
  srv.mem_stats = opts.mem_stats;
  srv.trim_idle = opts.trim_idle;
  rc = cport_queue_create(ctx, &srv.queue);
  if (rc != CPORT_OK) report("queue", rc);
  if (rc == CPORT_OK) rc = open_listener(&srv, &opts);

  int exit_code = (rc == CPORT_OK) ? serve(&srv) : 1;
  fprintf(stderr, "echo_server: %llu connections accepted, %llu closed idle\n", srv.accepted,
          srv.idle_closed);
  if (srv.mem_stats) print_mem(srv.open, "exit");
  shut_down(&srv, ctx);
  /* What the library still holds now is its socket table, kept for the
   * life of the process by design (a stale handle must meet valid memory). */
  if (srv.mem_stats) print_mem(srv.open, "destroyed");
  return exit_code;
}
