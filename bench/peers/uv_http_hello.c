/*
 * uv_http_hello: examples/http_hello.c written with libuv, for the README's
 * side-by-side listing and bench/run.sh's http scenario. The same server:
 * every request gets "Hello, World!" (a fixed 13-byte body), keep-alive;
 * pipelined requests each get their response, a request split across
 * reads is one request; the connection closes after the peer's end of
 * stream or a request with "Connection: close", once the responses are
 * sent; SIGINT/SIGTERM close every handle and exit 0.
 *
 * Idiomatic libuv: uv_listen + uv_accept, uv_read_start with an alloc
 * callback (reads are consumed in the read callback, so one static buffer
 * serves every connection), a uv_write (its request malloc'd) per
 * response, uv_shutdown (which waits for the writes) then uv_close.
 *
 *   uv_http_hello --port N [--host 127.0.0.1]
 *
 * Self-contained (it does not use peer_util.h, as the other peers do), so
 * that it compares line for line with the cport version, which parses the
 * same options (and --backend) itself.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

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
  uv_tcp_t tcp; /* tcp.data: the conn */
  uv_shutdown_t shutdown;
  parser http;
} conn;

static char rbuf[65536]; /* on_read uses it up at once: one buffer serves every connection */

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf) {
  (void)h;
  (void)size;
  *buf = uv_buf_init(rbuf, sizeof rbuf);
}

static void on_close(uv_handle_t *h) { free(h->data); } /* data: NULL but for conns */

static void conn_close(uv_handle_t *h) {
  if (!uv_is_closing(h)) uv_close(h, on_close);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  conn_close((uv_handle_t *)req->handle);
}

static void on_write(uv_write_t *req, int status) {
  if (status < 0) conn_close((uv_handle_t *)req->handle);
  free(req);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  if (nread < 0 && nread != UV_EOF) {
    conn_close((uv_handle_t *)s);
    return;
  }
  for (int n = nread > 0 ? feed(&c->http, buf->base, (size_t)nread) : 0; n > 0; n--) {
    uv_write_t *req = malloc(sizeof *req);
    uv_buf_t out = uv_buf_init(RESPONSE, sizeof RESPONSE - 1);
    if (!req || uv_write(req, s, &out, 1, on_write) != 0) {
      free(req);
      conn_close((uv_handle_t *)s);
      return;
    }
  }
  if (nread == UV_EOF || c->http.done) { /* close once the responses are sent */
    uv_read_stop(s);
    if (uv_shutdown(&c->shutdown, s, on_shutdown) != 0) conn_close((uv_handle_t *)s);
  }
}

static void on_connection(uv_stream_t *server, int status) {
  conn *c = status < 0 ? NULL : calloc(1, sizeof *c);
  if (!c) return;
  uv_tcp_init(server->loop, &c->tcp);
  c->tcp.data = c;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
    conn_close((uv_handle_t *)&c->tcp);
}

static void on_signal(uv_signal_t *sig, int signum) {
  (void)signum;
  uv_stop(sig->loop);
}

static void close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  conn_close(h); /* any handle: on_close frees only what has data */
}

int main(int argc, char **argv) {
  static uv_tcp_t server; /* static: data NULL */
  static uv_signal_t sigint, sigterm;
  const char *host = "127.0.0.1";
  long port = -1;
  char *end = "";
  int bad = argc % 2 == 0; /* every option takes a value */
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--host") == 0)
      host = argv[i + 1];
    else if (strcmp(argv[i], "--port") == 0)
      port = strtol(argv[i + 1], &end, 10);
    else
      bad = 1;
  }
  if (bad || *end || port < 0 || port > 65535) {
    fprintf(stderr, "usage: uv_http_hello --port N [--host IP]\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN); /* libuv writes with write(2): a reset peer would kill us */
  uv_loop_t *loop = uv_default_loop();
  struct sockaddr_in addr;
  int len = sizeof addr;
  uv_signal_init(loop, &sigint);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  uv_tcp_init(loop, &server);
  int rc = uv_ip4_addr(host, (int)port, &addr);
  if (rc == 0) rc = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&server, SOMAXCONN, on_connection);
  if (rc == 0) rc = uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len);
  if (rc != 0) {
    fprintf(stderr, "uv_http_hello: %s\n", uv_strerror(rc));
    return 1;
  }
  printf("listening on %d\n", ntohs(addr.sin_port));
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);   /* until SIGINT or SIGTERM */
  uv_walk(loop, close_any, NULL); /* close every handle; the next run calls their callbacks */
  uv_run(loop, UV_RUN_DEFAULT);
  return uv_loop_close(loop) == 0 ? 0 : 1;
}
