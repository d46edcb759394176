/*
 * tls_echo_server: echo_server over TLS, with cport.
 *
 *   tls_echo_server --cert server.pem --key server.key [--ca ca.pem]
 *                   [--port N] [--host 127.0.0.1|::1|0.0.0.0]
 *                   [--mode completion|select] [--backend auto|epoll|io_uring|iocp]
 *                   [--engine default|openssl|schannel] [--verify peer|optional|none]
 *                   [--alpn PROTO[,PROTO...]] [--handshake-timeout MS]
 *
 * Every accepted connection is upgraded with cport_tls_start, then echoes
 * the plaintext it receives, exactly like echo_server: one buffer per
 * connection, receive into it, send it all back, receive again.
 *
 * One handler loop serves both modes: every nowait call may finish at once
 * (CPORT_OK, handled inline) or leave a handle whose message comes later;
 * a completion message carries the result, a select message means "call
 * it again". The handshake is a completion operation in both modes (op
 * CPORT_OP_TLS_HANDSHAKE); it gets a deadline (--handshake-timeout, 10 s
 * by default) so a client that never finishes cannot hold a connection.
 * A handshake that fails is reported with cport_tls_error's reason and
 * only that connection is closed: the server goes on serving.
 *
 * --ca asks each client for a certificate and checks it against those
 * roots (verify "peer": one is required); --verify optional accepts a
 * client without one. --engine picks the TLS engine (CPORT_ENOTSUP, e.g.
 * schannel on Linux, is reported and the server exits 1).
 *
 * When the client has sent everything (its close_notify, or end of
 * stream) and its echo is out, the server sends its own close_notify
 * (cport_tls_shutdown) and closes. Connections end with cport_close_async:
 * their state is freed on the CPORT_OP_CLOSE message, after every other
 * message about them.
 *
 * Prints "listening on HOST:PORT" (stdout, flushed) once it listens, so a
 * script can start it with --port 0 and read the port chosen.
 */
#ifndef _WIN32
#define _POSIX_C_SOURCE 200809L
#endif

#include "example_util.h"

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

#define CONN_BUFFER_SIZE (16 * 1024)
#define WAIT_BATCH 64
/* Rounds of done-now I/O one connection may do before it lets others run. */
#define INLINE_ROUNDS 16
/* After EMFILE/ENFILE, wait this long before accepting again. */
#define ACCEPT_RETRY_MS 100
#define MAX_ALPN 16

typedef struct conn {
  struct conn *prev, *next; /* the server's connections, for shutting down */
  cport_socket sock;
  unsigned long long id;               /* accept order, for the log */
  cport_handle handshake_handle;       /* pending cport_tls_start, or 0 */
  cport_handle shutdown_handle;        /* pending cport_tls_shutdown, or 0 */
  cport_handle recv_handle;            /* pending recv (select or completion), or 0 */
  cport_handle send_handle;            /* pending send, or 0 */
  int secure;                          /* the handshake is done */
  size_t filled;                       /* bytes in buf waiting to be echoed */
  size_t sent;                         /* of those, bytes already sent */
  int peer_done;                       /* the peer sent close_notify (or EOF) */
  int closed;                          /* being closed; kept until its messages end */
  int close_pending;                   /* cport_close_async called: its CPORT_OP_CLOSE is to come */
  int posted;                          /* a user message carrying this conn is queued */
  unsigned char buf[CONN_BUFFER_SIZE]; /* the plaintext being echoed */
} conn;

typedef struct server {
  cport_ctx *ctx;
  cport_queue *queue;
  cport_socket listener;
  cport_tls_config *tls;      /* the server configuration, shared by every connection */
  int handshake_timeout_ms;   /* deadline of each handshake */
  cport_handle accept_handle; /* the multishot accept, or 0 */
  uint64_t accept_retry_at;   /* nonzero: accepting paused until then (ms) */
  conn *conns;                /* every connection not yet freed */
  unsigned long long accepted, handshakes_ok, handshakes_failed;
} server;

static void report(const char *what, int err) {
  fprintf(stderr, "tls_echo_server: %s: %s\n", what, cport_strerror(err));
}

/* ------------------------------------------------------------------------ */
/* Connections                                                              */
/* ------------------------------------------------------------------------ */

static void conn_link(server *srv, conn *c) {
  c->prev = NULL;
  c->next = srv->conns;
  if (srv->conns) srv->conns->prev = c;
  srv->conns = c;
}

static void conn_unlink(server *srv, conn *c) {
  if (c->prev)
    c->prev->next = c->next;
  else
    srv->conns = c->next;
  if (c->next) c->next->prev = c->prev;
}

/* A closed connection lives until every message naming it is seen: its
 * CPORT_OP_CLOSE (after all the others about the socket) and the user
 * message it may have posted to itself (not about the socket). */
static void conn_release_if_idle(server *srv, conn *c) {
  if (!c->closed || c->close_pending || c->recv_handle || c->send_handle || c->handshake_handle ||
      c->shutdown_handle || c->posted)
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
  report("close", rc);
  rc = cport_close(c->sock);
  if (rc != CPORT_OK) report("close", rc);
  conn_release_if_idle(srv, c);
}

/* The connection's last message about its socket. */
static void conn_on_closed(server *srv, conn *c) {
  c->close_pending = 0;
  c->recv_handle = c->send_handle = c->handshake_handle = c->shutdown_handle = 0;
  conn_release_if_idle(srv, c);
}

/* Reports err; for a TLS failure also the session's reason. */
static void conn_report(const conn *c, const char *what, int err) {
  char reason[256] = "";
  if (err == CPORT_ETLS && cport_tls_error(c->sock, reason, sizeof reason) != CPORT_OK)
    reason[0] = '\0';
  fprintf(stderr, "tls_echo_server: connection %llu: %s: %s%s%s\n", c->id, what,
          cport_strerror(err), reason[0] ? ": " : "", reason);
}

static void conn_fail(server *srv, conn *c, const char *what, int err) {
  conn_report(c, what, err);
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

/* The echo is complete and nothing more will come: send close_notify,
 * then close (at once, or when the shutdown's message comes). */
static void conn_finish(server *srv, conn *c) {
  cport_handle h = 0;
  int rc = cport_tls_shutdown(c->sock, CPORT_NOWAIT, &h);
  if (rc == CPORT_COMPLETION) {
    c->shutdown_handle = h;
    return;
  }
  if (rc != CPORT_OK) conn_report(c, "shutdown", rc); /* the peer may be gone: close anyway */
  conn_close(srv, c);
}

/* Drive a connection as far as it goes without waiting for a message. */
static void conn_pump(server *srv, conn *c) {
  for (int round = 0;; round++) {
    if (c->closed || !c->secure || c->recv_handle || c->send_handle || c->shutdown_handle)
      return; /* a message will come */
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
      conn_finish(srv, c);
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

static void conn_secure(server *srv, conn *c) {
  c->secure = 1;
  srv->handshakes_ok++;
  cport_tls_session info;
  if (cport_tls_info(c->sock, &info) == CPORT_OK)
    fprintf(stderr, "tls_echo_server: connection %llu: %s %s alpn=%s peer=%s\n", c->id,
            info.version == CPORT_TLS_1_3 ? "TLSv1.3" : "TLSv1.2", info.cipher,
            info.alpn[0] ? info.alpn : "-", info.peer_subject[0] ? info.peer_subject : "-");
  conn_pump(srv, c);
}

static void conn_handshake_failed(server *srv, conn *c, int err) {
  srv->handshakes_failed++;
  conn_fail(srv, c, "handshake", err);
}

static void conn_on_message(server *srv, conn *c, const cport_msg *m) {
  if (m->op == CPORT_OP_RECV) c->recv_handle = 0;
  if (m->op == CPORT_OP_SEND) c->send_handle = 0;
  if (m->op == CPORT_OP_TLS_HANDSHAKE) c->handshake_handle = 0;
  if (m->op == CPORT_OP_TLS_SHUTDOWN) c->shutdown_handle = 0;
  if (c->closed) {
    conn_release_if_idle(srv, c);
    return;
  }
  if (m->op == CPORT_OP_TLS_HANDSHAKE) {
    if (m->status < 0 || m->tag == CPORT_TAG_ABORT)
      conn_handshake_failed(srv, c, m->status < 0 ? m->status : CPORT_ECANCELED);
    else
      conn_secure(srv, c);
    return;
  }
  if (m->op == CPORT_OP_TLS_SHUTDOWN) { /* close_notify went out (or could not) */
    if (m->status < 0) conn_report(c, "shutdown", m->status);
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

/* A new socket we keep no state for: nothing pending on it, no meta, so its
 * CPORT_OP_CLOSE (msg.meta NULL) is ignored by dispatch. */
static void close_stateless(cport_socket sock) {
  cport_handle h = 0;
  int rc = cport_close_async(sock, &h);
  if (rc == CPORT_ENOMEM) rc = cport_close(sock);
  if (rc != CPORT_OK) report("close", rc);
}

/* A new connection: its state, then the TLS handshake. */
static void conn_open(server *srv, cport_socket sock) {
  srv->accepted++;
  conn *c = malloc(sizeof *c);
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
  c->id = srv->accepted;
  conn_link(srv, c);

  cport_handle h = 0;
  rc = cport_tls_start(sock, srv->tls, CPORT_NOWAIT, &h);
  if (rc == CPORT_OK) {
    conn_secure(srv, c);
  } else if (rc == CPORT_COMPLETION) {
    c->handshake_handle = h;
    /* CPORT_ENOTFOUND: it has just ended, and its message is queued. */
    int drc = cport_deadline(sock, h, srv->handshake_timeout_ms);
    if (drc != CPORT_OK && drc != CPORT_ENOTFOUND) conn_report(c, "handshake deadline", drc);
  } else {
    conn_handshake_failed(srv, c, rc);
  }
}

/* ------------------------------------------------------------------------ */
/* Listener                                                                 */
/* ------------------------------------------------------------------------ */

static void accept_failed(server *srv, int err) {
  report("accept", err);
  srv->accept_retry_at = now_ms() + ACCEPT_RETRY_MS;
}

/* One multishot accept: a message per connection, flagged CPORT_MSG_MORE,
 * in either mode. An error ends it: pause, then post it again. */
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
  } else {
    conn_on_message(srv, m->meta, m);
  }
}

static int serve(server *srv) {
  cport_msg msgs[WAIT_BATCH];
  listener_pump(srv);
  while (!stop_requested()) {
    int n = cport_wait(srv->queue, msgs, WAIT_BATCH, STOP_POLL_MS);
    if (n == CPORT_EINTR) continue; /* a signal: look at the stop flag */
    if (n < 0) {
      report("wait", n);
      return 1;
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
    free(c);
  }
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct options {
  uint16_t port;
  const char *host, *cert, *key, *ca;
  unsigned open_flags;
  cport_backend_id backend;
  int engine; /* cport_tls_engine */
  int verify; /* cport_tls_verify, or -1: from --ca */
  int handshake_timeout_ms;
  char *alpn_text; /* --alpn, split in place */
  const char *alpn[MAX_ALPN];
  int alpn_count;
} options;

static int usage(void) {
  fprintf(stderr, "usage: tls_echo_server --cert FILE --key FILE [--ca FILE] [--port N]"
                  " [--host 127.0.0.1|::1] [--mode completion|select]"
                  " [--backend auto|epoll|io_uring|iocp] [--engine default|openssl|schannel]"
                  " [--verify peer|optional|none] [--alpn P1,P2] [--handshake-timeout MS]\n");
  return 2;
}

/* "default", "openssl" or "schannel". Returns 0 or -1. */
static int parse_engine(const char *text, int *engine) {
  if (text == NULL) return -1;
  if (strcmp(text, "default") == 0)
    *engine = CPORT_TLS_ENGINE_DEFAULT;
  else if (strcmp(text, "openssl") == 0)
    *engine = CPORT_TLS_ENGINE_OPENSSL;
  else if (strcmp(text, "schannel") == 0)
    *engine = CPORT_TLS_ENGINE_SCHANNEL;
  else
    return -1;
  return 0;
}

/* "peer", "optional" or "none". Returns 0 or -1. */
static int parse_verify(const char *text, int *verify) {
  if (text == NULL) return -1;
  if (strcmp(text, "peer") == 0)
    *verify = CPORT_TLS_VERIFY_PEER;
  else if (strcmp(text, "optional") == 0)
    *verify = CPORT_TLS_VERIFY_OPTIONAL;
  else if (strcmp(text, "none") == 0)
    *verify = CPORT_TLS_VERIFY_NONE;
  else
    return -1;
  return 0;
}

/* "a,b,c" -> up to MAX_ALPN names. Returns 0 or -1. */
static int parse_alpn(char *text, const char **names, int *count) {
  *count = 0;
  if (text == NULL) return -1;
  for (char *p = text; *p != '\0';) {
    char *comma = strchr(p, ',');
    if (comma != NULL) *comma = '\0';
    if (*p == '\0' || *count == MAX_ALPN) return -1;
    names[(*count)++] = p;
    if (comma == NULL) break;
    p = comma + 1;
  }
  return *count > 0 ? 0 : -1;
}

static int parse_options(int argc, char **argv, options *o) {
  o->host = "127.0.0.1";
  o->backend = CPORT_BACKEND_AUTO;
  o->engine = CPORT_TLS_ENGINE_DEFAULT;
  o->verify = -1;
  o->handshake_timeout_ms = 10000;
  for (int i = 1; i < argc; i += 2) { /* every option takes a value */
    const char *name = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
    unsigned long long number = 0;
    int bad = 0;
    if (strcmp(name, "--port") == 0) {
      bad = parse_number(value, 0, 65535, &number);
      o->port = (uint16_t)number;
    } else if (strcmp(name, "--host") == 0) {
      o->host = value;
      bad = value == NULL;
    } else if (strcmp(name, "--cert") == 0) {
      o->cert = value;
      bad = value == NULL;
    } else if (strcmp(name, "--key") == 0) {
      o->key = value;
      bad = value == NULL;
    } else if (strcmp(name, "--ca") == 0) {
      o->ca = value;
      bad = value == NULL;
    } else if (strcmp(name, "--mode") == 0) {
      bad = parse_mode(value, &o->open_flags);
    } else if (strcmp(name, "--backend") == 0) {
      bad = parse_backend(value, &o->backend);
    } else if (strcmp(name, "--engine") == 0) {
      bad = parse_engine(value, &o->engine);
    } else if (strcmp(name, "--verify") == 0) {
      bad = parse_verify(value, &o->verify);
    } else if (strcmp(name, "--alpn") == 0) {
      o->alpn_text = value != NULL ? argv[i + 1] : NULL;
      bad = value == NULL || parse_alpn(o->alpn_text, o->alpn, &o->alpn_count);
    } else if (strcmp(name, "--handshake-timeout") == 0) {
      bad = parse_number(value, 1, INT_MAX, &number);
      o->handshake_timeout_ms = (int)number;
    } else {
      bad = 1;
    }
    if (bad) return -1;
  }
  return o->cert != NULL && o->key != NULL ? 0 : -1;
}

/* The server configuration every connection shares. */
static int make_config(const options *o, cport_tls_config **out) {
  cport_tls_config *cfg = NULL;
  const char *what = "config";
  int rc = cport_tls_config_create(&cfg, CPORT_TLS_SERVER);
  if (rc == CPORT_OK) {
    what = "--engine";
    rc = cport_tls_config_set_engine(cfg, o->engine);
  }
  if (rc == CPORT_OK) {
    what = "--cert/--key";
    rc = cport_tls_config_set_cert_file(cfg, o->cert, o->key);
  }
  if (rc == CPORT_OK && o->ca != NULL) {
    what = "--ca";
    rc = cport_tls_config_set_ca_file(cfg, o->ca);
  }
  int verify = o->verify >= 0  ? o->verify
               : o->ca != NULL ? CPORT_TLS_VERIFY_PEER
                               : CPORT_TLS_VERIFY_NONE;
  if (rc == CPORT_OK) {
    what = "--verify";
    rc = cport_tls_config_set_verify(cfg, verify);
  }
  if (rc == CPORT_OK && o->alpn_count > 0) {
    what = "--alpn";
    rc = cport_tls_config_set_alpn(cfg, o->alpn, o->alpn_count);
  }
  if (rc != CPORT_OK) {
    report(what, rc);
    cport_tls_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return CPORT_OK;
}

/* Open, bind and listen; print the address actually bound. */
static int open_listener(server *srv, const options *o) {
  cport_addr addr;
  int rc = cport_addr_init(&addr, o->host, o->port);
  if (rc != CPORT_OK) {
    fprintf(stderr, "tls_echo_server: bad --host %s\n", o->host);
    return rc;
  }
  rc = cport_open(srv->queue, addr.family, CPORT_SOCK_STREAM, o->open_flags, &srv->listener);
  if (rc == CPORT_OK) rc = cport_bind(srv->listener, &addr);
  if (rc == CPORT_OK) rc = cport_listen(srv->listener, 0);
  if (rc == CPORT_OK) rc = cport_sockname(srv->listener, &addr);
  if (rc != CPORT_OK) {
    report("listen", rc);
    return rc;
  }
  printf("listening on %s:%u\n", o->host, (unsigned)addr.port);
  fflush(stdout);
  fprintf(stderr, "tls_echo_server: %s mode, %s backend\n",
          (o->open_flags & CPORT_OPEN_SELECT) ? "select" : "completion",
          cport_backend_name(cport_ctx_backend(srv->ctx)));
  return CPORT_OK;
}

int main(int argc, char **argv) {
  options opts;
  memset(&opts, 0, sizeof opts);
  if (parse_options(argc, argv, &opts) != 0) return usage();
  if (install_stop_handlers() != 0 || install_table_request() != 0) {
    fprintf(stderr, "tls_echo_server: cannot install signal handlers\n");
    return 1;
  }
  server srv;
  memset(&srv, 0, sizeof srv);
  srv.handshake_timeout_ms = opts.handshake_timeout_ms;
  if (make_config(&opts, &srv.tls) != CPORT_OK) return 1;

  cport_ctx_options ctx_opts = {.backend = opts.backend};
  cport_ctx *ctx = NULL;
  int rc = cport_ctx_create(&ctx, &ctx_opts);
  if (rc != CPORT_OK) {
    report("context", rc);
    cport_tls_config_free(srv.tls);
    return 1;
  }
  srv.ctx = ctx;
  rc = cport_queue_create(ctx, &srv.queue);
  if (rc != CPORT_OK) report("queue", rc);
  if (rc == CPORT_OK) rc = open_listener(&srv, &opts);

  int exit_code = (rc == CPORT_OK) ? serve(&srv) : 1;
  fprintf(stderr, "tls_echo_server: %llu connections accepted, %llu handshakes done, %llu failed\n",
          srv.accepted, srv.handshakes_ok, srv.handshakes_failed);
  shut_down(&srv, ctx);
  cport_tls_config_free(srv.tls);
  return exit_code;
}
