/*
 * tls_echo_client: check a TLS echo server, with cport.
 *
 *   tls_echo_client --port N [--host NAME|ADDRESS] [--ca ca.pem]
 *                   [--server-name NAME] [--cert client.pem --key client.key]
 *                   [--count N] [--size BYTES] [--mode completion|select]
 *                   [--backend auto|epoll|io_uring|iocp]
 *                   [--engine default|openssl|schannel] [--verify peer|none]
 *                   [--alpn P1,P2] [--min-version 1.2|1.3] [--timeout-ms T]
 *
 * Connects, upgrades the connection with cport_tls_start as a client
 * (trusting --ca's roots instead of the system's, and checking the server's
 * certificate names --server-name, by default --host), then sends --count
 * messages of --size bytes one at a time and checks that each echo is
 * exactly what was sent. Then it sends close_notify (cport_tls_shutdown),
 * expects the server's close_notify or end of stream and nothing else, and
 * closes. Messages are printable lines ending in '\n', so line-based peers
 * (`openssl s_server` with its stdin and stdout looped) echo them intact.
 *
 * On success it prints the session (version, cipher, ALPN, the server's
 * subject) and "OK" on stdout and exits 0. On any failure it prints why on
 * stderr (for a TLS failure, cport_tls_error's reason) and "FAIL" on stdout,
 * and exits 1. The whole run is bounded by --timeout-ms (30 s by default).
 *
 * One handler loop serves both modes, as in echo_client: a nowait call
 * finishes at once (CPORT_OK, handled inline) or leaves a handle; its
 * completion message carries the result, its select message means "call
 * it again". The handshake and the shutdown are completion operations in
 * both modes. A name given as --host is resolved first (a blocking
 * cport_resolve bounded by the timeout); each address is tried in turn.
 */
#ifndef _WIN32
#define _POSIX_C_SOURCE 200809L
#endif

#include "example_util.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>

#define WAIT_BATCH 16
#define MAX_SIZE (16u * 1024 * 1024)
#define MAX_ALPN 16

typedef enum phase {
  PHASE_CONNECT,   /* connecting to the current address */
  PHASE_HANDSHAKE, /* cport_tls_start */
  PHASE_EXCHANGE,  /* sending a message and reading its echo */
  PHASE_SHUTDOWN,  /* cport_tls_shutdown: our close_notify */
  PHASE_DRAIN,     /* waiting for the server's close_notify or EOF */
  PHASE_DONE
} phase;

typedef struct client {
  cport_queue *queue;
  cport_tls_config *tls;
  unsigned open_flags;
  const cport_addrinfo *addr; /* the address being tried */
  cport_socket sock;
  phase phase;
  int connecting;       /* select mode: the connect was started, ask for its result */
  cport_handle pending; /* the one operation pending, or 0 */
  int last_error;       /* of the last connect attempt that failed */
  int failed;           /* set with the first failure's report */
  unsigned long long count, size, done; /* messages: wanted, bytes each, echoed */
  size_t sent, received;                /* of the current message */
  unsigned char *send_buf, *recv_buf;
  cport_tls_session info;
} client;

/* ------------------------------------------------------------------------ */
/* Failing                                                                  */
/* ------------------------------------------------------------------------ */

static void fail(client *cl, const char *format, ...) {
  if (cl->failed) return;
  cl->failed = 1;
  va_list args;
  va_start(args, format);
  fprintf(stderr, "tls_echo_client: ");
  vfprintf(stderr, format, args);
  fputc('\n', stderr);
  va_end(args);
}

/* A failed call or message: for CPORT_ETLS with the session's reason. */
static void fail_op(client *cl, const char *what, int err) {
  char reason[256] = "";
  if (cl->sock != CPORT_INVALID_SOCKET && err == CPORT_ETLS &&
      cport_tls_error(cl->sock, reason, sizeof reason) != CPORT_OK)
    reason[0] = '\0';
  fail(cl, "%s: %s%s%s", what, cport_strerror(err), reason[0] ? ": " : "", reason);
}

static const char *phase_name(phase p) {
  switch (p) {
  case PHASE_CONNECT: return "connect";
  case PHASE_HANDSHAKE: return "handshake";
  case PHASE_EXCHANGE: return "echo";
  case PHASE_SHUTDOWN: return "shutdown";
  case PHASE_DRAIN: return "waiting for close_notify";
  default: return "done";
  }
}

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

/* Message i: printable bytes that differ from message to message, then
 * '\n'. Any dropped, shifted or foreign byte shows. */
static void fill_message(client *cl) {
  size_t n = (size_t)cl->size;
  for (size_t j = 0; j + 1 < n; j++)
    cl->send_buf[j] = (unsigned char)('a' + (cl->done * 7 + j * 31 + j / 26) % 26);
  cl->send_buf[n - 1] = '\n';
  cl->sent = cl->received = 0;
}

/* The echo of the current message is whole: check it. */
static void check_echo(client *cl) {
  for (size_t j = 0; j < cl->size; j++) {
    if (cl->recv_buf[j] != cl->send_buf[j]) {
      fail(cl, "message %llu byte %zu is 0x%02x, sent 0x%02x", cl->done, j, cl->recv_buf[j],
           cl->send_buf[j]);
      return;
    }
  }
  cl->done++;
  if (cl->done < cl->count)
    fill_message(cl);
  else
    cl->phase = PHASE_SHUTDOWN;
}

static void on_received(client *cl, size_t n) {
  if (cl->phase == PHASE_DRAIN) {
    if (n == 0)
      cl->phase = PHASE_DONE;
    else
      fail(cl, "%zu bytes came after the last echo", n);
    return;
  }
  if (n == 0) {
    fail(cl, "end of stream after %llu of %llu messages (%zu bytes of the next)", cl->done,
         cl->count, cl->received);
    return;
  }
  cl->received += n;
  if (cl->received == cl->size) check_echo(cl);
}

/* ------------------------------------------------------------------------ */
/* The steps                                                                */
/* ------------------------------------------------------------------------ */

/* The attempt on the current address failed: on to the next one. */
static void connect_failed(client *cl, int err) {
  cl->last_error = err;
  if (cl->sock != CPORT_INVALID_SOCKET) cport_close(cl->sock);
  cl->sock = CPORT_INVALID_SOCKET;
  cl->connecting = 0;
  cl->addr = cl->addr->next;
  if (cl->addr == NULL) fail_op(cl, "connect", err);
}

static void on_secure(client *cl) {
  int rc = cport_tls_info(cl->sock, &cl->info);
  if (rc != CPORT_OK) {
    fail_op(cl, "tls info", rc);
    return;
  }
  cl->phase = PHASE_EXCHANGE;
  if (cl->count > 0)
    fill_message(cl);
  else
    cl->phase = PHASE_SHUTDOWN;
}

static void step_connect(client *cl) {
  cport_handle h = 0;
  int rc = CPORT_OK;
  if (cl->sock == CPORT_INVALID_SOCKET)
    rc = cport_open(cl->queue, cl->addr->addr.family, CPORT_SOCK_STREAM, cl->open_flags, &cl->sock);
  if (rc != CPORT_OK) {
    cl->sock = CPORT_INVALID_SOCKET;
    connect_failed(cl, rc);
    return;
  }
  /* Select mode: after the select message, a call with no address gives the result. */
  rc = cport_connect(cl->sock, cl->connecting ? NULL : &cl->addr->addr, CPORT_NOWAIT, &h);
  cl->connecting = 1;
  if (rc == CPORT_OK)
    cl->phase = PHASE_HANDSHAKE;
  else if (rc < 0)
    connect_failed(cl, rc);
  else
    cl->pending = h;
}

static void step_handshake(client *cl) {
  cport_handle h = 0;
  int rc = cport_tls_start(cl->sock, cl->tls, CPORT_NOWAIT, &h);
  if (rc == CPORT_OK)
    on_secure(cl);
  else if (rc == CPORT_COMPLETION)
    cl->pending = h;
  else
    fail_op(cl, "handshake", rc);
}

static void step_exchange(client *cl) {
  size_t n = 0;
  cport_handle h = 0;
  int rc;
  if (cl->sent < cl->size) { /* the rest of the message */
    rc = cport_send(cl->sock, cl->send_buf + cl->sent, (size_t)cl->size - cl->sent, 0, CPORT_NOWAIT,
                    &n, &h);
    if (rc < 0) {
      fail_op(cl, "send", rc);
      return;
    }
    if (rc != CPORT_OK) cl->pending = h;
    if (rc != CPORT_COMPLETION) cl->sent += n; /* done now, or select: n went out */
    return;
  }
  /* Its echo: never more than the rest of it, so each message is checked alone. */
  rc = cport_recv(cl->sock, cl->recv_buf + cl->received, (size_t)cl->size - cl->received, 0,
                  CPORT_NOWAIT, &n, &h);
  if (rc < 0)
    fail_op(cl, "recv", rc);
  else if (rc == CPORT_OK)
    on_received(cl, n);
  else
    cl->pending = h;
}

static void step_shutdown(client *cl) {
  cport_handle h = 0;
  int rc = cport_tls_shutdown(cl->sock, CPORT_NOWAIT, &h);
  if (rc == CPORT_OK)
    cl->phase = PHASE_DRAIN;
  else if (rc == CPORT_COMPLETION)
    cl->pending = h;
  else
    fail_op(cl, "shutdown", rc);
}

static void step_drain(client *cl) {
  size_t n = 0;
  cport_handle h = 0;
  int rc = cport_recv(cl->sock, cl->recv_buf, (size_t)cl->size, 0, CPORT_NOWAIT, &n, &h);
  if (rc < 0)
    fail_op(cl, "recv after shutdown", rc);
  else if (rc == CPORT_OK)
    on_received(cl, n);
  else
    cl->pending = h;
}

/* Go as far as possible without waiting for a message. */
static void pump(client *cl) {
  while (!cl->failed && cl->pending == 0 && cl->phase != PHASE_DONE) {
    switch (cl->phase) {
    case PHASE_CONNECT: step_connect(cl); break;
    case PHASE_HANDSHAKE: step_handshake(cl); break;
    case PHASE_EXCHANGE: step_exchange(cl); break;
    case PHASE_SHUTDOWN: step_shutdown(cl); break;
    case PHASE_DRAIN: step_drain(cl); break;
    default: return;
    }
  }
}

/* ------------------------------------------------------------------------ */
/* Handler loop                                                             */
/* ------------------------------------------------------------------------ */

static void on_completion(client *cl, const cport_msg *m) {
  switch (m->op) {
  case CPORT_OP_CONNECT:
    if (m->status < 0)
      connect_failed(cl, m->status);
    else
      cl->phase = PHASE_HANDSHAKE;
    return;
  case CPORT_OP_TLS_HANDSHAKE:
    if (m->status < 0)
      fail_op(cl, "handshake", m->status);
    else
      on_secure(cl);
    return;
  case CPORT_OP_TLS_SHUTDOWN:
    if (m->status < 0)
      fail_op(cl, "shutdown", m->status);
    else
      cl->phase = PHASE_DRAIN;
    return;
  case CPORT_OP_SEND:
    if (m->status < 0)
      fail_op(cl, "send", m->status);
    else if (m->bytes != (size_t)cl->size - cl->sent) /* the contract says sends are whole */
      fail(cl, "send completed with %zu of %zu bytes", m->bytes, (size_t)cl->size - cl->sent);
    else
      cl->sent += m->bytes;
    return;
  case CPORT_OP_RECV:
    if (m->status < 0)
      fail_op(cl, cl->phase == PHASE_DRAIN ? "recv after shutdown" : "recv", m->status);
    else
      on_received(cl, m->bytes);
    return;
  default: return;
  }
}

static void dispatch(client *cl, const cport_msg *m) {
  if (m->socket != cl->sock || m->handle != cl->pending) return; /* a closed attempt's */
  cl->pending = 0;
  if (m->tag == CPORT_TAG_ABORT) {
    if (m->op == CPORT_OP_CONNECT)
      connect_failed(cl, m->status);
    else
      fail_op(cl, phase_name(cl->phase), m->status);
  } else if (m->tag == CPORT_TAG_COMPLETION) {
    on_completion(cl, m);
  }
  /* A select message just means: call again (pump does). */
  pump(cl);
}

/* Run until done or failed, or the deadline, or a stop signal. */
static void run(client *cl, uint64_t deadline) {
  cport_msg msgs[WAIT_BATCH];
  pump(cl);
  while (!cl->failed && cl->phase != PHASE_DONE) {
    uint64_t now = now_ms();
    if (now >= deadline || stop_requested()) {
      fail(cl, "%s during %s (%llu of %llu messages echoed)",
           now >= deadline ? "timed out" : "interrupted", phase_name(cl->phase), cl->done,
           cl->count);
      return;
    }
    uint64_t left = deadline - now;
    int n = cport_wait(cl->queue, msgs, WAIT_BATCH, left < STOP_POLL_MS ? (int)left : STOP_POLL_MS);
    if (n == CPORT_EINTR) continue;
    if (n < 0) {
      fail_op(cl, "wait", n);
      return;
    }
    for (int i = 0; i < n; i++) dispatch(cl, &msgs[i]);
  }
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct options {
  const char *host, *server_name, *ca, *cert, *key;
  uint16_t port;
  unsigned long long count, size, timeout_ms;
  unsigned open_flags;
  cport_backend_id backend;
  int engine, verify, min_version;
  const char *alpn[MAX_ALPN];
  int alpn_count;
} options;

static int usage(void) {
  fprintf(stderr, "usage: tls_echo_client --port N [--host NAME|ADDRESS] [--ca FILE]"
                  " [--server-name NAME] [--cert FILE --key FILE] [--count N] [--size BYTES]"
                  " [--mode completion|select] [--backend auto|epoll|io_uring|iocp]"
                  " [--engine default|openssl|schannel] [--verify peer|none] [--alpn P1,P2]"
                  " [--min-version 1.2|1.3] [--timeout-ms T]\n");
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

/* "a,b,c" -> up to MAX_ALPN names, split in place. Returns 0 or -1. */
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
  int have_port = 0;
  memset(o, 0, sizeof *o);
  o->host = "127.0.0.1";
  o->count = 10;
  o->size = 100;
  o->timeout_ms = 30000;
  o->backend = CPORT_BACKEND_AUTO;
  o->engine = CPORT_TLS_ENGINE_DEFAULT;
  o->verify = CPORT_TLS_VERIFY_PEER;
  o->min_version = CPORT_TLS_1_2;
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
    } else if (strcmp(name, "--server-name") == 0) {
      o->server_name = value;
      bad = value == NULL;
    } else if (strcmp(name, "--ca") == 0) {
      o->ca = value;
      bad = value == NULL;
    } else if (strcmp(name, "--cert") == 0) {
      o->cert = value;
      bad = value == NULL;
    } else if (strcmp(name, "--key") == 0) {
      o->key = value;
      bad = value == NULL;
    } else if (strcmp(name, "--count") == 0) {
      bad = parse_number(value, 0, 100000000, &o->count);
    } else if (strcmp(name, "--size") == 0) {
      bad = parse_number(value, 1, MAX_SIZE, &o->size);
    } else if (strcmp(name, "--timeout-ms") == 0) {
      bad = parse_number(value, 1, INT_MAX, &o->timeout_ms);
    } else if (strcmp(name, "--mode") == 0) {
      bad = parse_mode(value, &o->open_flags);
    } else if (strcmp(name, "--backend") == 0) {
      bad = parse_backend(value, &o->backend);
    } else if (strcmp(name, "--engine") == 0) {
      bad = parse_engine(value, &o->engine);
    } else if (strcmp(name, "--verify") == 0) {
      bad = value == NULL;
      if (!bad && strcmp(value, "peer") == 0)
        o->verify = CPORT_TLS_VERIFY_PEER;
      else if (!bad && strcmp(value, "none") == 0)
        o->verify = CPORT_TLS_VERIFY_NONE;
      else
        bad = 1;
    } else if (strcmp(name, "--alpn") == 0) {
      bad = value == NULL || parse_alpn(argv[i + 1], o->alpn, &o->alpn_count);
    } else if (strcmp(name, "--min-version") == 0) {
      bad = value == NULL;
      if (!bad && strcmp(value, "1.2") == 0)
        o->min_version = CPORT_TLS_1_2;
      else if (!bad && strcmp(value, "1.3") == 0)
        o->min_version = CPORT_TLS_1_3;
      else
        bad = 1;
    } else {
      bad = 1;
    }
    if (bad) return -1;
  }
  if ((o->cert == NULL) != (o->key == NULL)) return -1;
  if (o->server_name == NULL) o->server_name = o->host;
  return have_port ? 0 : -1;
}

/* The client configuration. Reports and returns an error, or CPORT_OK. */
static int make_config(const options *o, cport_tls_config **out) {
  cport_tls_config *cfg = NULL;
  const char *what = "config";
  int rc = cport_tls_config_create(&cfg, CPORT_TLS_CLIENT);
  if (rc == CPORT_OK) {
    what = "--engine";
    rc = cport_tls_config_set_engine(cfg, o->engine);
  }
  if (rc == CPORT_OK && o->ca != NULL) {
    what = "--ca";
    rc = cport_tls_config_set_ca_file(cfg, o->ca);
  }
  if (rc == CPORT_OK && o->cert != NULL) {
    what = "--cert/--key";
    rc = cport_tls_config_set_cert_file(cfg, o->cert, o->key);
  }
  if (rc == CPORT_OK) {
    what = "--server-name";
    rc = cport_tls_config_set_server_name(cfg, o->server_name);
  }
  if (rc == CPORT_OK) {
    what = "--verify";
    rc = cport_tls_config_set_verify(cfg, o->verify);
  }
  if (rc == CPORT_OK) {
    what = "--min-version";
    rc = cport_tls_config_set_min_version(cfg, o->min_version);
  }
  if (rc == CPORT_OK && o->alpn_count > 0) {
    what = "--alpn";
    rc = cport_tls_config_set_alpn(cfg, o->alpn, o->alpn_count);
  }
  if (rc != CPORT_OK) {
    fprintf(stderr, "tls_echo_client: %s: %s\n", what, cport_strerror(rc));
    cport_tls_config_free(cfg);
    return rc;
  }
  *out = cfg;
  return CPORT_OK;
}

static void print_session(const cport_tls_session *info, const char *backend, unsigned open_flags) {
  printf("backend=%s mode=%s version=%s cipher=%s alpn=%s peer=%s\n", backend,
         (open_flags & CPORT_OPEN_SELECT) ? "select" : "completion",
         info->version == CPORT_TLS_1_3   ? "TLSv1.3"
         : info->version == CPORT_TLS_1_2 ? "TLSv1.2"
                                          : "?",
         info->cipher, info->alpn[0] ? info->alpn : "-",
         info->peer_subject[0] ? info->peer_subject : "-");
}

int main(int argc, char **argv) {
  options opts;
  client cl;
  memset(&cl, 0, sizeof cl);
  if (parse_options(argc, argv, &opts) != 0) return usage();
  install_stop_handlers(); /* optional here: without it Ctrl-C just kills us */
  if (make_config(&opts, &cl.tls) != CPORT_OK) {
    printf("FAIL\n");
    return 1;
  }
  cl.open_flags = opts.open_flags;
  cl.count = opts.count;
  cl.size = opts.size;
  cl.send_buf = malloc((size_t)opts.size);
  cl.recv_buf = malloc((size_t)opts.size);

  uint64_t deadline = now_ms() + opts.timeout_ms;
  cport_ctx_options ctx_opts = {.backend = opts.backend};
  cport_ctx *ctx = NULL;
  cport_addrinfo *addrs = NULL;
  int rc =
      cl.send_buf == NULL || cl.recv_buf == NULL ? CPORT_ENOMEM : cport_ctx_create(&ctx, &ctx_opts);
  if (rc == CPORT_OK) rc = cport_queue_create(ctx, &cl.queue);
  if (rc != CPORT_OK) {
    fail_op(&cl, "setup", rc);
  } else {
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)opts.port);
    cport_resolve_hints hints = {.type = CPORT_SOCK_STREAM};
    rc = cport_resolve(cl.queue, opts.host, service, &hints, (int)opts.timeout_ms, &addrs, NULL);
    if (rc != CPORT_OK) fail(&cl, "resolve %s: %s", opts.host, cport_strerror(rc));
  }
  if (!cl.failed) {
    cl.addr = addrs;
    if (cl.addr == NULL) fail(&cl, "resolve %s: no address", opts.host);
  }
  if (!cl.failed) run(&cl, deadline);

  if (!cl.failed) {
    print_session(&cl.info, cport_backend_name(cport_ctx_backend(ctx)), cl.open_flags);
    printf("OK %llu messages of %llu bytes\n", cl.done, cl.size);
  } else {
    printf("FAIL\n");
  }
  if (cl.sock != CPORT_INVALID_SOCKET) {
    rc = cport_close(cl.sock);
    if (rc != CPORT_OK) fprintf(stderr, "tls_echo_client: close: %s\n", cport_strerror(rc));
  }
  if (ctx != NULL) cport_ctx_destroy(ctx); /* only then may the buffers go */
  cport_addrinfo_free(addrs);
  cport_tls_config_free(cl.tls);
  free(cl.send_buf);
  free(cl.recv_buf);
  return cl.failed ? 1 : 0;
}
