/*
 * http_hello: an HTTP/1.1 server that answers every request with
 * "Hello, World!" (a fixed 13-byte body), keep-alive, with cport's
 * multishot calls.
 *
 *   http_hello --port N [--backend auto|epoll|io_uring|iocp] [--host 127.0.0.1|::1]
 *
 * One cport_accept_multi on the listener delivers a message per
 * connection; one cport_recv_multi per connection delivers a message per
 * chunk of the stream, in a library buffer that goes back with cport_free.
 * Requests are counted as they end (an empty line), so requests pipelined
 * in one chunk each get their response, and a request split across chunks
 * is one request. A response is one nowait cport_send of a constant: it
 * ends at once, or later with a message (completion sends are whole).
 * The connection closes after the peer's end of stream or a request with
 * "Connection: close", once the responses are sent.
 *
 * bench/peers/uv_http_hello.c is the same server on libuv; bench/run.sh
 * (scenario http) runs both under bench/loadgen's http mode.
 */
#include "example_util.h"

#include <ctype.h>

#define RESPONSE                                                                                   \
  "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!"

/* The request parser, the same in http_hello.c and uv_http_hello.c: it
 * keeps the start of the current line, lowercased, across reads. */
typedef struct parser {
  char line[18];   /* enough for "connection: close\r" */
  unsigned len;    /* bytes of the line kept */
  int close, done; /* "Connection: close" seen; the request that had it ended */
} parser;

/* Returns how many requests the bytes end; ignores what follows the one
 * that asked to close. */
static int feed(parser *p, const char *b, size_t n) {
  int requests = 0;
  for (size_t i = 0; i < n && !p->done; i++) {
    if (b[i] != '\n') {
      if (p->len < sizeof p->line) p->line[p->len++] = (char)tolower((unsigned char)b[i]);
      continue;
    }
    if (p->len <= 1) { /* an empty line ("\r\n"): the request ends */
      requests++;
      p->done = p->close;
    } else if (p->len >= 17 && memcmp(p->line, "connection: close\r", p->len) == 0) {
      p->close = 1;
    }
    p->len = 0;
  }
  return requests;
}

typedef struct conn {
  struct conn *prev, *next; /* every connection, to free them at exit */
  parser http;
  int sending, closing; /* sends pending; cport_close_async called */
} conn;

static cport_queue *q;
static cport_socket listener;
static conn *conns;

static void conn_close(conn *c, cport_socket s) {
  cport_handle h;
  if (c->closing) return;
  c->closing = 1;
  if (cport_close_async(s, &h) != CPORT_OK) cport_close(s); /* no memory: c is freed at exit */
}

static void conn_open(cport_socket s) {
  conn *c = calloc(1, sizeof *c);
  cport_optval meta = {.type = CPORT_VAL_PTR, .v.ptr = c};
  cport_handle h;
  if (!c) {
    cport_close(s);
    return;
  }
  c->next = conns;
  if (conns) conns->prev = c;
  conns = c;
  if (cport_setopt(s, CPORT_LEVEL_OTP, CPORT_OPT_OTP_META, &meta) != CPORT_OK ||
      cport_recv_multi(s, &h) != CPORT_COMPLETION)
    conn_close(c, s);
}

static void on_message(const cport_msg *m) {
  conn *c = m->meta; /* NULL for the listener */
  cport_handle h;
  if (m->op == CPORT_OP_ACCEPT && m->status == CPORT_OK) conn_open(m->accepted);
  if (m->op == CPORT_OP_ACCEPT && !(m->flags & CPORT_MSG_MORE)) /* stopped (out of fds?) */
    cport_timer_start(q, 100, 0, 0, NULL, &h);                  /* so accept again in 100 ms */
  if (m->op == CPORT_OP_TIMER) cport_accept_multi(listener, &h);
  if (!c) return;
  if (m->op == CPORT_OP_CLOSE) { /* the socket's last message */
    if (c->prev)
      c->prev->next = c->next;
    else
      conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c);
    return;
  }
  if (m->op == CPORT_OP_SEND) c->sending--;
  if (m->op == CPORT_OP_RECV) { /* a chunk (or the end: no CPORT_MSG_MORE) */
    for (int n = feed(&c->http, m->buf, m->bytes); n > 0 && !c->closing; n--) {
      size_t sent;
      int rc = cport_send(m->socket, RESPONSE, sizeof RESPONSE - 1, 0, CPORT_NOWAIT, &sent, &h);
      c->sending += rc == CPORT_COMPLETION; /* else sent now, or failed */
      if (rc < 0) conn_close(c, m->socket);
    }
    cport_free(m->buf);
    if (!(m->flags & CPORT_MSG_MORE)) c->http.done = 1;
  }
  if (m->status < 0 || (c->http.done && c->sending == 0)) conn_close(c, m->socket);
}

int main(int argc, char **argv) {
  unsigned long long port = 65536;
  const char *host = "127.0.0.1";
  cport_ctx_options opts = {.backend = CPORT_BACKEND_AUTO};
  int bad = argc % 2 == 0; /* every option takes a value */
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--host") == 0)
      host = argv[i + 1];
    else if (strcmp(argv[i], "--port") == 0)
      bad |= parse_number(argv[i + 1], 0, 65535, &port);
    else
      bad |= strcmp(argv[i], "--backend") != 0 || parse_backend(argv[i + 1], &opts.backend);
  }
  if (bad || port > 65535) {
    fprintf(stderr, "usage: http_hello --port N [--backend epoll|io_uring|iocp] [--host IP]\n");
    return 2;
  }
  cport_ctx *ctx = NULL;
  cport_addr addr;
  cport_handle h;
  int rc = cport_ctx_create(&ctx, &opts);
  if (rc == CPORT_OK) rc = cport_queue_create(ctx, &q);
  if (rc == CPORT_OK) rc = cport_addr_init(&addr, host, (uint16_t)port);
  if (rc == CPORT_OK) rc = cport_open(q, addr.family, CPORT_SOCK_STREAM, 0, &listener);
  if (rc == CPORT_OK) rc = cport_bind(listener, &addr);
  if (rc == CPORT_OK) rc = cport_listen(listener, 0);
  if (rc == CPORT_OK) rc = cport_sockname(listener, &addr);
  if (rc == CPORT_OK) rc = cport_accept_multi(listener, &h); /* a message per connection */
  if (rc != CPORT_COMPLETION || install_stop_handlers() != 0) {
    fprintf(stderr, "http_hello: %s\n", cport_strerror(rc));
    return 1;
  }
  printf("listening on %u\n", (unsigned)addr.port);
  fflush(stdout);
  cport_msg msgs[64];
  while (!stop_requested()) /* SIGINT, SIGTERM */
    for (int i = 0, n = cport_wait(q, msgs, 64, STOP_POLL_MS); i < n; i++) on_message(&msgs[i]);
  cport_ctx_destroy(ctx); /* closes every socket and drops their messages */
  for (conn *c = conns, *next; c; c = next) {
    next = c->next;
    free(c);
  }
  return 0;
}
